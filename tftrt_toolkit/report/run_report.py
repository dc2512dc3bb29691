"""The run job's report: one row per model, rendered as an aligned table, markdown and JSON."""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Sequence

from tftrt_toolkit.report import tables


@dataclasses.dataclass
class ModelRow:
    """One line of the summary: a model, what it is, and how it did."""

    name: str
    path: str
    backend: str
    precision: str
    top1: Optional[dict] = None  # rank-1 prediction on the first sample (cat.jpg for the defaults)
    top1_agreement: Optional[float] = None
    topk_agreement: Optional[float] = None
    max_abs_error: Optional[float] = None
    validation_passed: Optional[bool] = None
    # Against ground truth where the images are labelled: validate's accuracy record for an
    # optimized row (both accuracies, the drop and its paired interval); top1/topk/labelled_samples
    # for the original.
    accuracy: Optional[dict] = None
    p50_ms: Dict[int, float] = dataclasses.field(default_factory=dict)
    throughput: Dict[int, float] = dataclasses.field(default_factory=dict)
    speedup: Dict[int, float] = dataclasses.field(default_factory=dict)
    # Against the original as plain TF runs it by default, where that oneDNN setting differs
    # from the run's own (AVX2-only CPUs: TF leaves oneDNN off, tftrt turns it on).
    speedup_vs_tf_default: Dict[int, float] = dataclasses.field(default_factory=dict)
    note: str = ""
    # Set when a step raised for this model: {"step", "reason", "error_type", "exit_code"} (jobs.attempts.Failure).
    failure: Optional[dict] = None
    # The conversion's precision_coverage record (backends/precision_coverage.py); None for the original.
    precision_coverage: Optional[dict] = None

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        for key in ("p50_ms", "throughput", "speedup", "speedup_vs_tf_default"):
            data[key] = {str(k): v for k, v in data[key].items()}
        return data


@dataclasses.dataclass
class RunReport:
    """What the job did; ``to_markdown()`` and ``table_lines()`` read well in a notebook or terminal."""

    output_dir: str
    model: str
    data: str
    environment: str
    batch_sizes: Sequence[int]
    rows: List[ModelRow]
    files: Dict[str, str]
    seconds: float
    notes: List[str] = dataclasses.field(default_factory=list)
    # The interleaved benchmark's reports (one per optimized model, sharing the original's
    # measurements), for plot(); benchmark.json holds the same numbers.
    benchmarks: list = dataclasses.field(default_factory=list, repr=False, compare=False)
    # Files of the data folder that were not used ({path, reason, detail}); a note sums them up.
    skipped_files: List[dict] = dataclasses.field(default_factory=list)

    @property
    def original(self) -> ModelRow:
        return self.rows[0]

    @property
    def optimized(self) -> List[ModelRow]:
        return self.rows[1:]

    def _table(self) -> List[List[str]]:
        image = self.original.top1["image"] if self.original.top1 else "first input"
        labelled = any(row.accuracy for row in self.rows)
        header = ["model", "backend", "precision", f"top-1 on {image}", "top-1 agreement"]
        if labelled:
            header.append(f"top-1 accuracy (n={self.original.accuracy['labelled_samples']})" if self.original.accuracy
                          else "top-1 accuracy")
        header += [f"p50 bs{b} (ms)" for b in self.batch_sizes] + [f"speed-up bs{b}" for b in self.batch_sizes]
        against_default = any(row.speedup_vs_tf_default for row in self.rows)
        if against_default:
            header += [f"vs plain TF default bs{b}" for b in self.batch_sizes]
        covered = any(row.precision_coverage for row in self.rows)
        if covered:
            header.append("FLOPs in precision")
        any_failed = any(row.failure for row in self.rows)
        if any_failed:
            header.append("failed")
        rows = [header]
        for row in self.rows:
            top1 = f"{row.top1['label']} ({row.top1['probability']:.2f})" if row.top1 else "-"
            agreement = "-" if row.top1_agreement is None else f"{row.top1_agreement:.0%}"
            cells = [row.name, row.backend, row.precision, top1, agreement]
            if labelled:
                cells.append(_accuracy_cell(row))
            cells += [f"{row.p50_ms[b]:.1f}" if b in row.p50_ms else "-" for b in self.batch_sizes]
            cells += [f"{row.speedup[b]:.2f}x" if b in row.speedup else ("1.00x" if row is self.original else "-")
                      for b in self.batch_sizes]
            if against_default:
                cells += [f"{row.speedup_vs_tf_default[b]:.2f}x" if b in row.speedup_vs_tf_default else "-"
                          for b in self.batch_sizes]
            if covered:
                cells.append(f"{row.precision_coverage['share']:.0%}" if row.precision_coverage else "-")
            if any_failed:
                cells.append(f"at {row.failure['step']}: {row.failure['reason']}" if row.failure else "-")
            rows.append(cells)
        return rows

    def table_lines(self) -> List[str]:
        return tables.aligned_lines(self._table())

    def to_markdown(self) -> str:
        return tables.markdown(self._table())

    def _repr_markdown_(self) -> str:
        lines = [f"`{self.output_dir}`: `{self.model}` on {self.data} ({self.seconds:.0f} s; {self.environment})", "",
                 self.to_markdown()]
        lines += [""] + [f"- note: {note}" for note in self.notes] if self.notes else []
        return "\n".join(lines)

    def plot(self):
        """The benchmark chart (benchmark.png) as a matplotlib Figure; ConfigError without matplotlib."""
        from tftrt_toolkit.errors import ConfigError
        from tftrt_toolkit.report.plots import benchmark_figure

        if not self.benchmarks:
            raise ConfigError("this run benchmarked no optimized model (see its notes); there is nothing to plot.")
        return benchmark_figure(self.benchmarks, names=[row.name for row in self.optimized if not row.failure])

    def to_json(self) -> dict:
        return {
            "output_dir": self.output_dir, "model": self.model, "data": self.data, "environment": self.environment,
            "batch_sizes": list(self.batch_sizes), "rows": [r.to_json() for r in self.rows],
            "files": self.files, "seconds": round(self.seconds, 1), "notes": self.notes,
            "skipped_files": self.skipped_files,
        }

    def __repr__(self) -> str:
        parts = []
        for row in self.optimized:
            speed = ", ".join(f"bs{b} {row.speedup[b]:.2f}x" for b in self.batch_sizes if b in row.speedup)
            parts.append(f"{row.backend}-{row.precision} ({speed or row.note or 'not benchmarked'})")
        return f"RunReport({self.output_dir!r}, original + {len(self.optimized)} optimized: {'; '.join(parts)})"


def _accuracy_cell(row: ModelRow) -> str:
    """"80.7%" for the original; "79.1% (drop +1.6 pt [+0.1, +3.1])" for an optimized model: the drop, its 95% interval."""
    accuracy = row.accuracy
    if not accuracy:
        return "-"
    if "optimized" not in accuracy:
        return f"{accuracy['top1']:.1%}"
    low, high = accuracy["top1_drop_interval"]
    return (f"{accuracy['optimized']['top1']:.1%} (drop {100 * accuracy['top1_drop']:+.1f} pt "
            f"[{100 * low:+.1f}, {100 * high:+.1f}])")


def markdown_report(report: RunReport, env) -> str:
    """report.md: the summary table, accuracy against the original, notes and files; ``env`` names the machine."""
    lines = [
        "# tftrt_toolkit report", "",
        f"- model: `{report.model}`",
        f"- data: `{report.data}`",
        f"- machine: {env.cpu_model or 'unknown CPU'} ({env.cpu_count} cores; {' '.join(env.cpu_features) or 'no special features'}); "
        f"GPUs: {', '.join(env.gpus) or 'none'}",
        f"- {report.environment}",
        f"- TensorFlow {env.tensorflow_version}; run took {report.seconds:.0f} s", "",
        "## Summary", "", report.to_markdown(), "",
        "Speed-up: the original's median latency over the optimized model's, measured interleaved in one process "
        "(warm-up excluded, outputs fetched to host).", "",
    ]
    if "benchmark.png" in report.files:
        lines += ["![latency and throughput by batch size](benchmark.png)", ""]
    lines += ["## Accuracy against the original", ""]
    for row in report.optimized:
        agreement = "-" if row.top1_agreement is None else f"{row.top1_agreement:.1%}"
        topk = "-" if row.topk_agreement is None else f"{row.topk_agreement:.1%}"
        error = "-" if row.max_abs_error is None else f"{row.max_abs_error:.3g}"
        verdict = "FAILED" if row.failure else {True: "pass", False: "FAIL", None: "-"}[row.validation_passed]
        lines.append(f"- **{row.name}**: {verdict}; top-1 agreement {agreement}, top-5 {topk}, max abs error {error}"
                     + (f" — {row.note}" if row.note else ""))
    covered = [row for row in report.optimized if row.precision_coverage]
    if covered:
        from tftrt_toolkit.backends.precision_coverage import PrecisionCoverage

        lines += ["", "## Precision coverage", "",
                  "The share of the model's multiply-adds (Conv2D, MatMul, BatchMatMulV2, Einsum and their fused or "
                  "quantized forms, at batch 1) that run in each model's precision.", ""]
        lines += [f"- **{row.name}**: {PrecisionCoverage.from_json(row.precision_coverage).describe()}" for row in covered]
    labelled = [row for row in report.optimized if row.accuracy]
    if labelled:
        first = labelled[0].accuracy
        lines += ["", "## Accuracy on labelled images", "",
                  f"{first['labelled_samples']} images labelled by {first['labels']}; the original: top-1 "
                  f"{first['original']['top1']:.2%}, top-{first['top_k']} {first['original']['topk']:.2%}. "
                  "Drop = the original's top-1 minus the optimized model's, on the same images; the 95% interval "
                  "is paired (only images exactly one of the two gets right move it; Newcombe's square-and-add).", ""]
        for row in labelled:
            accuracy = row.accuracy
            low, high = accuracy["top1_drop_interval"]
            lines.append(f"- **{row.name}**: top-1 {accuracy['optimized']['top1']:.2%}, top-{accuracy['top_k']} "
                         f"{accuracy['optimized']['topk']:.2%}; drop {100 * accuracy['top1_drop']:+.2f} points "
                         f"(95% interval {100 * low:+.2f} to {100 * high:+.2f}; only the original right on "
                         f"{accuracy['top1_only_original_right']}, only this model on "
                         f"{accuracy['top1_only_optimized_right']})")
    if report.notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in report.notes]
    lines += ["", "## Files", ""] + [f"- `{name}`" for name in sorted(report.files)]
    lines += ["- `models/<precision>/`: the optimized SavedModels (plain `tf.saved_model.load`)", ""]
    return "\n".join(lines)
