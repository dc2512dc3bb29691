"""Tune: the fastest conversion of a model that stays inside an accuracy budget.

    from tftrt_toolkit.runtime.tune import tune
    result = tune("saved_models/efficientnet_lite0", "saved_models/samples", "out/tuned",
                  labels_csv="saved_models/samples/labels.csv")          # budget: top-1 drop <= 0.5 points
    result              # TuneResult(chosen 'cpu-bf16': p50 41.2 ms at batch 8 (1.31x the original); ...)
    result.table        # one dict per candidate (TABLE_COLUMNS); print(result.to_markdown())
    result.chosen_model # the OptimizedModel written to out/tuned

What is tried (``default_candidates``), simplest first so a short ``time_budget`` still
measures the safe choices:
- every backend x precision this machine can run: TensorRT fp32/fp16/int8 (only where
  ``env.tensorrt_usable``), then cpu fp32, bf16 (native-BF16 CPUs), int8 (when
  ``cpu_int8.check_available`` passes; calibrated on ``calibration_data``, default ``data``);
- TensorRT settings per precision: ``minimum_segment_size=10`` (fewer, larger engines) and
  explicit-batch dynamic shapes with the "Optimal" profile built for ``batch_size``.
  ``maximum_cached_engines`` is not searched: engines are cached per input shape and tune
  measures one batch size, where 1 or N cached engines run the very same engine;
- cpu thread pools: each cpu precision again with intra-op = all cores, inter-op = 1 (the
  usual setting for serving one model; TF's default gives inter-op a thread per core too),
  and at batch size 1 also with one thread in each pool (measured faster on small batches).

How each is judged:
- one conversion per distinct ConversionConfig (thread variants reuse it); a candidate that
  fails to convert, load or validate gets a row with the reason and the search goes on;
- validate against the original on ``data``: top-1 agreement, and with ``labels_csv`` each
  model's top-1 accuracy (the budget is then the accuracy drop); thread variants inherit
  their conversion's numbers (threads change summation order, not the answers);
- benchmark: every candidate in ONE ``benchmark_many`` run, interleaved with the original,
  at ``batch_size`` (p50 latency, throughput, speed-up). TensorFlow fixes its thread pools
  once per process, so each other thread setting gets a subprocess (``ThreadWorker``) that
  loads its candidates and the original at those threads; after every round in this
  process, each subprocess runs one round while this one waits. All settings thus share
  the same rounds and the same machine drift, without competing for cores, and their p50s
  are comparable. Thread variants are timed only for conversions inside the budget;
- ``time_budget`` seconds bound the whole search: a conversion is skipped (with a note)
  when it would not leave time to benchmark, and the benchmark is shortened to fit.

The choice is ``choose``, a pure function of the table: the lowest p50 inside the budget;
ties (p50 equal to 0.01 ms, as the table shows it) go to the higher throughput, then the
better agreement or accuracy, then the simpler precision (fp32 > fp16 > bf16 > int8), then
the earlier candidate. When nothing qualifies it returns None and names the candidate that
came closest (smallest shortfall, then fastest).

What is written (each appears whole or not at all):
- ``output``: the chosen SavedModel, renamed into place (a plain SavedModel; its
  ``assets.extra/tftrt_toolkit.json`` gains ``"chosen_by": {"tool": "tune", "budget",
  "reason", "threads", "table", ...}``; threads are a serving setting, not in the graph);
- ``report_dir`` (default ``OUTPUT.tune`` beside it): tune.json, tune.csv, tune.png. It is
  written even when nothing qualifies; then there is no model and ``NoCandidateInBudget``
  (a ValidationFailed, exit 8) is raised, carrying the result.
The other candidates' conversions live in a work directory beside ``output`` that is
removed at the end.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from tftrt_toolkit import artifacts
from tftrt_toolkit.report import tables
from tftrt_toolkit.config import Backend, ConversionConfig
from tftrt_toolkit.errors import ConfigError, ToolkitError, ValidationFailed

DEFAULT_MIN_TOP1_AGREEMENT = 0.99
DEFAULT_MAX_TOP1_DROP = 0.005
DEFAULT_TIME_BUDGET_S = 600.0
# Seconds of timed runs per candidate in the benchmark (interleaved, so a run with N candidates takes ~(N+1)x).
DEFAULT_DURATION_S = 3.0
# The tie-break's "simpler first" order: fewer numeric surprises and nothing to calibrate.
PRECISION_ORDER = ("fp32", "fp16", "bf16", "int8")
TRT_LARGE_SEGMENT = 10
REPORT_SUFFIX = ".tune"
# Starting Python + TensorFlow and loading the models in a thread subprocess, before its timed runs.
_SUBPROCESS_START_S = 20.0
# The table's own rounding: values equal at this precision are ties.
_P50_DECIMALS = 2
_THROUGHPUT_DECIMALS = 1
# Agreement and accuracy are ratios of counts; this absorbs float error (e.g. 0.99 vs 99/100).
_EPSILON = 1e-9

TABLE_COLUMNS = (
    "candidate", "backend", "precision", "settings", "intra_op_threads", "inter_op_threads", "status",
    "within_budget", "pareto", "top1_agreement", "accuracy", "top1_drop", "p50_ms", "throughput", "speedup",
    "measured_in", "convert_s", "reason",
)
# Row statuses: the original (reference, never chosen), timed candidates, and the rest.
ORIGINAL, MEASURED, FAILED, SKIPPED = "original", "measured", "failed", "skipped"

Progress = Callable[[str], None]
Threads = Tuple[int, int]


class NoCandidateInBudget(ValidationFailed):
    """No candidate met the accuracy budget (or none could be measured); ``result`` holds the table."""

    def __init__(self, message: str, result: "TuneResult"):
        super().__init__(message)
        self.result = result


# --------------------------------------------------------------------------- candidates

@dataclasses.dataclass(frozen=True)
class Candidate:
    """One thing to try: a conversion config, the TF threads to serve it with (None: TF's choice), and its settings in words."""

    config: ConversionConfig
    threads: Optional[Threads] = None
    settings: str = ""

    def __post_init__(self):
        if self.config.backend is Backend.AUTO:
            raise ConfigError("a tune candidate needs a concrete backend (cpu or tensorrt), not auto.")
        if self.threads is not None:
            threads = tuple(self.threads)
            if len(threads) != 2 or any(isinstance(t, bool) or not isinstance(t, int) or t < 0 for t in threads):
                raise ConfigError(f"threads={self.threads!r} is not valid; give (intra_op, inter_op) whole numbers >= 0.")
            object.__setattr__(self, "threads", threads)

    @property
    def name(self) -> str:
        parts = [f"{self.config.backend.value}-{self.config.precision.value}"]
        if self.settings:
            parts.append(self.settings)
        if self.threads is not None:
            parts.append(f"intra={self.threads[0]} inter={self.threads[1]}")
        return " ".join(parts)

    @classmethod
    def parse(cls, text: str, env) -> "Candidate":
        """'cpu-bf16', 'bf16' (on the backend ``auto`` picks here), 'cpu-bf16@2x1' (intra x inter threads) -> Candidate.

        Raises ConfigError for anything else, or a backend/precision pair that cannot exist.
        """
        spec, _, threads_text = text.strip().lower().partition("@")
        backend, _, precision = spec.rpartition("-")
        if not backend:
            backend, _ = env.recommended_backend()
        threads = None
        if threads_text:
            intra, _, inter = threads_text.partition("x")
            if not (intra.isdigit() and inter.isdigit()):
                raise ConfigError(f"candidate {text!r}: threads {threads_text!r} are not valid; write INTRAxINTER, "
                                  "e.g. cpu-bf16@2x1 (0 = TF's choice).")
            threads = (int(intra), int(inter))
        return cls(ConversionConfig(backend=backend, precision=precision), threads=threads)


def default_candidates(env, batch_size: int = 8) -> List[Candidate]:
    """Every backend x precision this machine can run, plus the settings worth trying, simplest first.

    See the module docstring for what and why. ``env`` is an ``environment.Environment``.
    """
    from tftrt_toolkit.backends.select import usable_cpu_precisions

    candidates: List[Candidate] = []
    if env.tensorrt_usable:
        precisions = ("fp32", "fp16", "int8")
        candidates += [Candidate(ConversionConfig(backend="tensorrt", precision=p)) for p in precisions]
        for precision in ("fp16", "int8", "fp32"):  # the likely winners' settings first
            candidates.append(Candidate(ConversionConfig(backend="tensorrt", precision=precision,
                                                         minimum_segment_size=TRT_LARGE_SEGMENT),
                                        settings=f"min-segment={TRT_LARGE_SEGMENT}"))
            candidates.append(Candidate(ConversionConfig(backend="tensorrt", precision=precision, use_dynamic_shape=True,
                                                         dynamic_shape_profile_strategy="Optimal",
                                                         build_shapes=((batch_size,),)),
                                        settings=f"dynamic-shape(Optimal, bs{batch_size})"))
    cpu = usable_cpu_precisions(env)
    candidates += [Candidate(ConversionConfig(backend="cpu", precision=p)) for p in cpu]
    # TF's default gives both pools a thread per core; serving one model at a time usually wants
    # every core on each op and no concurrent ops competing for them.
    candidates += [Candidate(ConversionConfig(backend="cpu", precision=p), threads=(env.cpu_count, 1)) for p in cpu]
    if batch_size == 1 and env.cpu_count > 1:
        # At batch 1 TF's oneDNN kernels can run slower on several threads than on one: on 2 cores
        # the int8 ResNet50's convolutions took 9.7 ms on 2 threads against 7.9 ms on 1, and the
        # whole call 15 ms against 10 (benchmarks/int8_cpu_notes.md, "Where the time goes").
        candidates += [Candidate(ConversionConfig(backend="cpu", precision=p), threads=(1, 1)) for p in cpu]
    return candidates


# --------------------------------------------------------------------------- the budget and the choice

@dataclasses.dataclass(frozen=True)
class Budget:
    """The accuracy budget: top-1 agreement with the original >= limit, or top-1 accuracy drop <= limit (labels)."""

    metric: str  # "top1_agreement" or "top1_drop"
    limit: float

    @classmethod
    def from_args(cls, max_top1_drop: Optional[float] = None, min_top1_agreement: Optional[float] = None) -> "Budget":
        """Exactly one of the two, a share between 0 and 1; ConfigError otherwise."""
        if (max_top1_drop is None) == (min_top1_agreement is None):
            raise ConfigError("give exactly one accuracy budget: max_top1_drop (needs labels, e.g. 0.005) "
                              "or min_top1_agreement (e.g. 0.99).")
        name, value = (("max_top1_drop", max_top1_drop) if max_top1_drop is not None
                       else ("min_top1_agreement", min_top1_agreement))
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise ConfigError(f"{name}={value!r} is not valid; use a share between 0 and 1 (e.g. 0.005 = half a point, 0.99 = 99%).")
        return cls("top1_drop" if name == "max_top1_drop" else "top1_agreement", float(value))

    @property
    def higher_is_better(self) -> bool:
        return self.metric == "top1_agreement"

    def shortfall(self, row: dict) -> Optional[float]:
        """How far ``row`` misses the budget (<= 0: inside); None when the row has no value to judge."""
        value = row.get(self.metric)
        if value is None:
            return None
        return self.limit - value if self.higher_is_better else value - self.limit

    def quality(self, row: dict) -> Optional[float]:
        """Higher is better: agreement, or minus the drop."""
        value = row.get(self.metric)
        return None if value is None else (value if self.higher_is_better else -value)

    def describe(self) -> str:
        if self.higher_is_better:
            return f"top-1 agreement >= {self.limit:.1%}"
        return f"top-1 accuracy drop <= {self.limit * 100:.2g} points"

    def as_kwargs(self) -> dict:
        """The budget as ``choose``'s keyword argument."""
        return {"min_top1_agreement" if self.higher_is_better else "max_top1_drop": self.limit}

    def to_json(self) -> dict:
        return {"metric": self.metric, "limit": self.limit, "text": self.describe()}


def _value_text(budget: Budget, row: dict) -> str:
    value = row.get(budget.metric)
    if value is None:
        return "no value"
    if budget.higher_is_better:
        return f"top-1 agreement {value:.1%}"
    return f"top-1 drop {value * 100:.2g} points"


def choose(table: Sequence[dict], *, max_top1_drop: Optional[float] = None,
           min_top1_agreement: Optional[float] = None) -> Tuple[Optional[dict], str]:
    """(the row to pick, why) from a tune table; (None, which came closest) when nothing qualifies.

    Considers rows with status "measured" and a p50. Inside the budget: lowest ``p50_ms``;
    ties (equal at 0.01 ms) -> higher ``throughput`` (at 0.1/s) -> better agreement or
    accuracy -> simpler precision (fp32 > fp16 > bf16 > int8) -> earlier row. Nothing inside:
    the row with the smallest shortfall (then the fastest) is named. Pure: reads ``table`` only.
    Raises ConfigError unless exactly one budget is given.
    """
    budget = Budget.from_args(max_top1_drop, min_top1_agreement)
    measured = [(index, row) for index, row in enumerate(table)
                if row.get("status") == MEASURED and row.get("p50_ms") is not None]
    inside = [(index, row) for index, row in measured
              if budget.shortfall(row) is not None and budget.shortfall(row) <= _EPSILON]

    def speed_key(item):
        index, row = item
        precision = row.get("precision")
        return (round(row["p50_ms"], _P50_DECIMALS), -round(row.get("throughput") or 0.0, _THROUGHPUT_DECIMALS),
                -budget.quality(row), PRECISION_ORDER.index(precision) if precision in PRECISION_ORDER else len(PRECISION_ORDER),
                index)

    if inside:
        ranked = sorted(inside, key=speed_key)
        best = ranked[0][1]
        reason = (f"{best['candidate']}: fastest inside the budget ({budget.describe()}): p50 {best['p50_ms']:.2f} ms, "
                  f"{_value_text(budget, best)}")
        if len(ranked) > 1:
            runner_up = ranked[1][1]
            decided_by = _tie_break(speed_key(ranked[0]), speed_key(ranked[1]))
            reason += (f"; tied on p50 with {runner_up['candidate']}, chosen for its {decided_by}" if decided_by
                       else f"; next: {runner_up['candidate']} at {runner_up['p50_ms']:.2f} ms")
        faster = [row for _, row in sorted(measured, key=lambda item: item[1]["p50_ms"]) if row["p50_ms"] < best["p50_ms"]
                  and (budget.shortfall(row) is None or budget.shortfall(row) > _EPSILON)]
        if faster:
            reason += "; faster but outside the budget: " + ", ".join(
                f"{row['candidate']} ({row['p50_ms']:.2f} ms, {_value_text(budget, row)})" for row in faster[:3])
        return best, reason

    # Rows validated but not timed still say how close their conversion came.
    judged = [(index, row) for index, row in enumerate(table)
              if row.get("status") in (MEASURED, SKIPPED) and budget.shortfall(row) is not None]
    if not judged:
        by_reason: Dict[str, List[str]] = {}
        for row in table:
            if row.get("status") in (FAILED, SKIPPED):
                by_reason.setdefault(row.get("reason") or row["status"], []).append(row["candidate"])
        details = "; ".join(f"{', '.join(names[:3])}{f' (+{len(names) - 3} more)' if len(names) > 3 else ''}: {reason}"
                            for reason, names in by_reason.items())
        return None, f"no candidate could be measured ({details or 'no candidates'})"
    closest_index, closest = min(judged, key=lambda item: (budget.shortfall(item[1]), item[1].get("p50_ms") or math.inf,
                                                           item[0]))
    speed = f", p50 {closest['p50_ms']:.2f} ms" if closest.get("p50_ms") is not None else ""
    return None, (f"no candidate is inside the budget ({budget.describe()}); closest: {closest['candidate']} with "
                  f"{_value_text(budget, closest)}{speed}")


def _tie_break(first: tuple, second: tuple) -> Optional[str]:
    """What separated two equally fast candidates' sort keys; None when p50 alone did."""
    if first[0] != second[0]:
        return None
    for position, label in ((1, "higher throughput"), (2, "better accuracy/agreement"), (3, "simpler precision"),
                            (4, "earlier place in the candidate list")):
        if first[position] != second[position]:
            return label
    return "earlier place in the candidate list"


def mark_pareto(table: Sequence[dict], budget: Budget) -> None:
    """Set ``row["pareto"]``: True for measured rows no other row beats on both p50 and quality."""
    measured = [row for row in table if row.get("status") == MEASURED and row.get("p50_ms") is not None
                and budget.quality(row) is not None]
    for row in table:
        row["pareto"] = False
    best_quality = -math.inf
    for row in sorted(measured, key=lambda r: (r["p50_ms"], -budget.quality(r))):
        if budget.quality(row) > best_quality + _EPSILON:
            row["pareto"] = True
            best_quality = budget.quality(row)


# --------------------------------------------------------------------------- the result

@dataclasses.dataclass
class TuneResult:
    """What tune found: the table, the chosen row (None when nothing qualified), why, and where things went."""

    output: Optional[str]  # the chosen SavedModel; None when nothing qualified
    report_dir: str
    table: List[dict]
    chosen: Optional[dict]
    reason: str
    budget: Budget
    batch_size: int
    model: str
    data: str
    files: Dict[str, str]
    seconds: float
    notes: List[str] = dataclasses.field(default_factory=list)

    @property
    def chosen_model(self):
        """The chosen model as an ``OptimizedModel`` (None when nothing qualified)."""
        from tftrt_toolkit.pipeline import OptimizedModel

        return OptimizedModel.from_path(self.output) if self.output else None

    def _cells(self) -> List[List[str]]:
        quality = "top-1 drop" if self.budget.metric == "top1_drop" else "top-1 agreement"
        header = ["candidate", "status", quality, f"p50 bs{self.batch_size} (ms)", "samples/s", "speed-up", "note"]
        rows = [header]
        for row in self.table:
            value = row.get(self.budget.metric)
            if value is None:
                value_text = "-"
            elif self.budget.metric == "top1_drop":
                value_text = f"{value * 100:+.1f} pt" if row["status"] != ORIGINAL else "-"
            else:
                value_text = f"{value:.1%}"
            if row["status"] == ORIGINAL and self.budget.metric == "top1_drop" and row.get("accuracy") is not None:
                value_text = f"acc {row['accuracy']:.1%}"
            status = row["status"]
            if self.chosen is not None and row is self.chosen:
                status = "CHOSEN"
            elif status == MEASURED:
                status = "inside" if row.get("within_budget") else "outside"
            note = row.get("reason") or ("timed in a subprocess, interleaved" if row["status"] == MEASURED
                                          and row.get("intra_op_threads") is not None else "") or ""
            rows.append([
                row["candidate"], status, value_text,
                "-" if row.get("p50_ms") is None else f"{row['p50_ms']:.2f}",
                "-" if row.get("throughput") is None else f"{row['throughput']:.1f}",
                "-" if row.get("speedup") is None else f"{row['speedup']:.2f}x",
                note if len(note) <= 90 else note[:89].rstrip() + "…",
            ])
        return rows

    def table_lines(self) -> List[str]:
        return tables.aligned_lines(self._cells())

    def to_markdown(self) -> str:
        return tables.markdown(self._cells())

    def to_json(self) -> dict:
        return {
            "model": self.model, "data": self.data, "batch_size": self.batch_size, "budget": self.budget.to_json(),
            "chosen": None if self.chosen is None else self.chosen["candidate"], "reason": self.reason,
            "output": self.output, "report_dir": self.report_dir, "files": self.files,
            "seconds": round(self.seconds, 1), "notes": self.notes,
            "table": [{column: row.get(column) for column in TABLE_COLUMNS} for row in self.table],
        }

    def __repr__(self) -> str:
        tried = sum(1 for row in self.table if row["status"] != ORIGINAL)
        if self.chosen is None:
            head = "nothing inside the budget"
        else:
            speedup = f" ({self.chosen['speedup']:.2f}x the original)" if self.chosen.get("speedup") else ""
            head = f"chosen {self.chosen['candidate']!r}: p50 {self.chosen['p50_ms']:.2f} ms at batch {self.batch_size}{speedup}"
        return f"TuneResult({head}; {tried} candidates; budget {self.budget.describe()}; output={self.output!r})"


# --------------------------------------------------------------------------- the search

def tune(model, data, output: str, *, labels_csv: Optional[str] = None, max_top1_drop: Optional[float] = None,
         min_top1_agreement: Optional[float] = None, batch_size: int = 8,
         time_budget: float = DEFAULT_TIME_BUDGET_S, candidates: Optional[Iterable[Union[Candidate, str]]] = None,
         progress: Progress = print, duration: float = DEFAULT_DURATION_S, report_dir: Optional[str] = None,
         calibration_data=None, overwrite: bool = False, weights: Optional[str] = "imagenet") -> TuneResult:
    """Find the fastest conversion of ``model`` inside an accuracy budget; write it to ``output``.

    Args:
      model: any model spec ``load_model`` takes, or a ``LoadedModel``; a classifier
        (one [batch, classes] output), since the budget is about top-1.
      data: what to validate and benchmark on (image dir, .npy/.npz, "synthetic:N").
      labels_csv: image,class_id ground truth; makes the budget an accuracy drop.
      max_top1_drop / min_top1_agreement: the budget, at most one (default: a drop of
        0.005 with labels, else agreement >= 0.99). A drop needs labels.
      batch_size: the batch size latency and throughput are measured at.
      time_budget: seconds for the whole search (remaining candidates are skipped, with a note).
      candidates: Candidates or "backend-precision" strings instead of ``default_candidates``.
      duration: seconds of timed runs per candidate (shortened to fit ``time_budget``).
      report_dir: where tune.json/csv/png go (default ``OUTPUT.tune`` beside ``output``).
      calibration_data: int8 calibration data (default ``data``).

    Returns a TuneResult. Raises NoCandidateInBudget (a ValidationFailed; ``.result`` has the
    table, whose files are written) when nothing qualifies; ConfigError, OutputError,
    ModelLoadError, DataError before any conversion for unusable options, outputs, models or data.
    """
    from tftrt_toolkit.environment import probe
    from tftrt_toolkit.models.loader import LoadedModel, load_model
    from tftrt_toolkit.runtime.predict import classifier_output
    from tftrt_toolkit.runtime.session import ModelRunner
    from tftrt_toolkit.runtime.validate import read_labels_csv

    started = time.monotonic()
    if max_top1_drop is None and min_top1_agreement is None:
        if labels_csv:
            max_top1_drop = DEFAULT_MAX_TOP1_DROP
        else:
            min_top1_agreement = DEFAULT_MIN_TOP1_AGREEMENT
    budget = Budget.from_args(max_top1_drop, min_top1_agreement)
    if budget.metric == "top1_drop" and not labels_csv:
        raise ConfigError("max_top1_drop needs ground truth: pass labels_csv (image,class_id), "
                          "or use min_top1_agreement to compare with the original's answers instead.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r} is not valid; use a whole number >= 1.")
    for name, value in (("time_budget", time_budget), ("duration", duration)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ConfigError(f"{name}={value!r} is not valid; give seconds > 0.")
    if labels_csv:
        if not _is_image_data(data):
            raise ConfigError("labels_csv needs image data (e.g. --data=saved_models/samples); "
                              f"{data!r} has no file names to look labels up by.")
        read_labels_csv(labels_csv)  # a bad CSV is refused before any work
    env = probe()
    candidate_list = list(default_candidates(env, batch_size) if candidates is None else
                          (c if isinstance(c, Candidate) else Candidate.parse(c, env) for c in candidates))
    if not candidate_list:
        raise ConfigError("no candidates to try; give at least one (e.g. cpu-fp32).")
    names = [c.name for c in candidate_list]
    if len(set(names)) != len(names):
        raise ConfigError(f"candidates repeat a name ({', '.join(sorted({n for n in names if names.count(n) > 1}))}); list each once.")

    target = artifacts.resolve_output(output)
    report_target = artifacts.resolve_output(report_dir) if report_dir else target + REPORT_SUFFIX
    model_text = getattr(getattr(model, "spec", None), "text", None) or str(model)
    input_paths = [str(model)] if isinstance(model, (str, os.PathLike)) and os.path.exists(model) else []
    artifacts.check_output(target, input_paths, overwrite)
    artifacts.check_output(report_target, input_paths + [target], overwrite)
    calibration_data = data if calibration_data is None else calibration_data

    def over_time(needed: float) -> bool:
        return time.monotonic() - started + needed > time_budget

    progress(f"tune: {len(candidate_list)} candidates at batch size {batch_size}, budget {budget.describe()}, "
             f"time budget {time_budget:g} s")
    owns_model = not isinstance(model, LoadedModel)
    loaded = load_model(model, weights=weights) if owns_model else model
    runners: Dict[object, ModelRunner] = {}  # "original", then one per converted ConversionConfig
    notes: List[str] = []
    try:
        if classifier_output(loaded.signature) is None:
            raise ConfigError("tune's budget is about top-1 answers, so it needs a classifier (one output of "
                              f"shape [batch, classes]); this model returns {', '.join(loaded.signature.output_names)}.")
        original = ModelRunner(loaded, name="original").load()
        runners["original"] = original
        original_row = _row("original", backend="-", precision=(loaded.toolkit_metadata or {}).get("precision", "fp32"),
                            status=ORIGINAL, top1_agreement=1.0, top1_drop=0.0)
        table = [original_row]
        rows = {c.name: _candidate_row(c) for c in candidate_list}
        table += list(rows.values())

        with artifacts.staged_output(report_target, overwrite=overwrite) as report_stage, \
                artifacts.staged_output(target, overwrite=overwrite) as model_stage:
            work = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.tune-work-", dir=os.path.dirname(target))
            try:
                conversions = _convert_and_validate(candidate_list, rows, loaded, original, original_row, runners, work,
                                                    env=env, data=data, labels_csv=labels_csv, budget=budget,
                                                    batch_size=batch_size, calibration_data=calibration_data,
                                                    duration=duration, over_time=over_time, progress=progress)
                _benchmark(candidate_list, rows, original_row, runners, conversions, loaded, data=data,
                           batch_size=batch_size, duration=duration, time_left=lambda: time_budget - (time.monotonic() - started),
                           notes=notes, progress=progress)
                for runner in runners.values():
                    runner.close()
                runners.clear()

                mark_pareto(table, budget)
                chosen, reason = choose(table, **budget.as_kwargs())
                progress(("chosen: " if chosen else "nothing chosen: ") + reason)
                result = TuneResult(output=target if chosen else None, report_dir=report_target, table=table,
                                    chosen=chosen, reason=reason, budget=budget, batch_size=batch_size,
                                    model=model_text, data=str(data), files={}, seconds=0.0, notes=notes)
                if chosen is not None:
                    config_of = {c.name: c.config for c in candidate_list}
                    _write_chosen(chosen, conversions[config_of[chosen["candidate"]]], model_stage.path, result,
                                  time_budget)
                    model_stage.commit()
                result.seconds = time.monotonic() - started
                _write_report(result, report_stage.path, time_budget)
                report_stage.commit()
            finally:
                shutil.rmtree(work, ignore_errors=True)
    finally:
        for runner in runners.values():
            runner.close()
        if owns_model:
            loaded.close()
    progress(f"tune: report in {report_target} ({result.seconds:.0f} s)")
    if chosen is None:
        raise NoCandidateInBudget(f"{reason}. Table: {os.path.join(report_target, 'tune.csv')}", result)
    return result


def _row(candidate: str, **values) -> dict:
    row = {column: None for column in TABLE_COLUMNS}
    row.update(candidate=candidate, settings="", reason="", measured_in="", pareto=False)
    row.update(values)
    return row


def _candidate_row(candidate: Candidate) -> dict:
    threads = candidate.threads
    return _row(candidate.name, backend=candidate.config.backend.value, precision=candidate.config.precision.value,
                settings=candidate.settings, status=SKIPPED,
                intra_op_threads=None if threads is None else threads[0],
                inter_op_threads=None if threads is None else threads[1])


def _is_image_data(data) -> bool:
    if isinstance(data, (list, tuple)):
        return True
    return not str(data).startswith("synthetic") and not str(data).endswith((".npy", ".npz"))


def _convert_and_validate(candidate_list, rows, loaded, original, original_row, runners, work, *, env, data,
                          labels_csv, budget, batch_size, calibration_data, duration, over_time, progress):
    """Convert each distinct config once, validate it; fill the rows. Returns {config: converted path}.

    ``runners`` gains a loaded ModelRunner per converted config (keyed by the config), reused by the benchmark.
    """
    from tftrt_toolkit.pipeline import calibration_sized_to, convert
    from tftrt_toolkit.runtime.session import ModelRunner
    from tftrt_toolkit.runtime.validate import validate

    configs: List[ConversionConfig] = []
    for candidate in candidate_list:
        if candidate.config not in configs:
            configs.append(candidate.config)
    conversions: Dict[ConversionConfig, str] = {}
    slowest_step = 0.0
    for number, config in enumerate(configs, start=1):
        mine = [rows[c.name] for c in candidate_list if c.config == config]
        label = mine[0]["candidate"]
        # Leave time to time every conversion so far, this one and the original.
        if over_time(slowest_step + duration * (len(conversions) + 2)):
            for row in mine:
                row.update(status=SKIPPED, reason="time budget: not reached")
            progress(f"[{number}/{len(configs)}] {label}: skipped (time budget)")
            continue
        key = config
        step_started = time.monotonic()
        path = os.path.join(work, f"{number:02d}-{config.backend.value}-{config.precision.value}")
        try:
            if config.needs_calibration:
                config = calibration_sized_to(config, calibration_data, loaded)
            convert(loaded, path, config, calibration_data=calibration_data if config.needs_calibration else None,
                    env=env, progress=lambda message: None)
            convert_s = time.monotonic() - step_started
            runner = ModelRunner(path, name=label).load()
            runners[key] = runner
            report = validate(original, runner, data=data, labels_csv=labels_csv, batch_size=batch_size)
        except ToolkitError as error:
            for row in mine:
                row.update(status=FAILED, reason=_one_line(error))
            progress(f"[{number}/{len(configs)}] {label}: failed: {_one_line(error)}")
            slowest_step = max(slowest_step, time.monotonic() - step_started)
            continue
        slowest_step = max(slowest_step, time.monotonic() - step_started)
        values = {"top1_agreement": report.top1_agreement, "convert_s": round(convert_s, 1)}
        if report.accuracy:
            original_row["accuracy"] = report.accuracy["original"]["top1"]
            values["accuracy"] = report.accuracy["optimized"]["top1"]
            values["top1_drop"] = report.accuracy["original"]["top1"] - report.accuracy["optimized"]["top1"]
        non_finite = sum(stats.get("non_finite", 0) for stats in report.outputs.values())
        for row in mine:
            row.update(values)
            if non_finite:
                row.update(status=FAILED, reason=f"{non_finite} NaN/inf output value(s)")
            else:
                conversions[key] = path
                shortfall = budget.shortfall(row)
                row["within_budget"] = shortfall is not None and shortfall <= _EPSILON
                row.update(status=SKIPPED, reason="converted, not timed yet")
        verdict = "inside" if mine[0].get("within_budget") else "OUTSIDE"
        samples = f"{report.samples} samples" + (f", {report.accuracy['labelled_samples']} labelled" if report.accuracy else "")
        progress(f"[{number}/{len(configs)}] {label}: converted in {convert_s:.1f} s; {_value_text(budget, mine[0])} "
                 f"on {samples} ({verdict} the budget)")
    return conversions


def _benchmark(candidate_list, rows, original_row, runners, conversions, loaded, *, data, batch_size, duration,
               time_left, notes, progress):
    """Time the conversions in ONE interleaved run: this process's rounds alternate with each thread worker's."""
    from tftrt_toolkit.runtime.benchmark import benchmark_many
    from tftrt_toolkit.runtime.session import current_threads

    main = [c for c in candidate_list if c.threads is None and c.config in conversions]
    by_threads: Dict[Threads, List[Candidate]] = {}
    for candidate in candidate_list:
        row = rows[candidate.name]
        if candidate.threads is None or candidate.config not in conversions:
            continue
        if not row["within_budget"]:
            row.update(status=SKIPPED, reason="outside the accuracy budget; other threads not timed")
            progress(f"  {candidate.name}: skipped (its conversion is outside the accuracy budget)")
            continue
        by_threads.setdefault(candidate.threads, []).append(candidate)
    if not main and not by_threads:
        return

    workers: Dict[Threads, ThreadWorker] = {}
    try:
        for threads, group in by_threads.items():
            setting = f"intra={threads[0]} inter={threads[1]}"
            if time_left() < _SUBPROCESS_START_S + duration * (len(main) + len(group) + 2):
                for candidate in group:
                    rows[candidate.name].update(status=SKIPPED, reason="time budget: thread setting not timed")
                progress(f"threads {setting}: skipped (time budget)")
                continue
            progress(f"threads {setting}: loading {len(group)} candidate(s) + the original in a subprocess "
                     "(TF sets threads once per process)")
            worker = ThreadWorker({c.name: conversions[c.config] for c in group}, loaded.saved_model_dir,
                                  threads=threads, data=data, batch_size=batch_size)
            try:
                worker.start(timeout=max(1.0, time_left()))
            except ToolkitError as error:
                worker.close()
                _fail(group, rows, error, progress)
                continue
            workers[threads] = worker

        def between_rounds(_batch_size: int) -> None:
            for threads, worker in list(workers.items()):
                try:
                    worker.round()
                except ToolkitError as error:  # this setting is lost; the others go on
                    worker.close()
                    del workers[threads]
                    _fail(by_threads[threads], rows, error, progress)

        # Each model (and each original) gets about ``seconds`` of timed runs; every round runs all of them.
        in_process = len(main) + 1
        everyone = in_process + sum(len(by_threads[t]) + 1 for t in workers)
        seconds = max(0.05, min(duration, 0.8 * time_left() / everyone))
        if seconds < duration:
            notes.append(f"timed runs shortened to {seconds:.2f} s per model to fit the time budget")
        threads_text = ", ".join(f"{key.split('_')[0]}={value or 'auto'}" for key, value in current_threads().items())
        progress(f"benchmark: {len(main) + sum(len(by_threads[t]) for t in workers)} candidate(s) + the original at "
                 f"batch {batch_size}, ~{seconds:.1f} s each, in one interleaved run"
                 + (f" across {len(workers) + 1} processes" if workers else ""))
        # With no candidate at TF's threads, the original alone paces the rounds.
        models = {c.name: runners[c.config] for c in main} or {"original": runners["original"]}
        reports = benchmark_many(models, baseline=runners["original"] if main else None, batch_sizes=(batch_size,),
                                 duration=seconds * everyone / in_process, data=data, progress=False,
                                 between_rounds=between_rounds if workers else None)
        where = f"this process (threads {threads_text}), interleaved with the original"
        for candidate in main:
            report = reports[candidate.name]
            measurement = report.result("optimized", batch_size)
            _fill_timing(rows[candidate.name], measurement.latency_ms["p50"], measurement.throughput,
                         report.speedup(batch_size)["p50_speedup"], where)
            progress(f"  {_timing_text(rows[candidate.name])}")
        first = next(iter(reports.values()))
        baseline = first.result("baseline" if main else "optimized", batch_size)
        _fill_timing(original_row, baseline.latency_ms["p50"], baseline.throughput, 1.0, f"this process (threads {threads_text})")
        original_row["status"] = ORIGINAL

        for threads, worker in workers.items():
            try:
                measured = worker.finish()
            except ToolkitError as error:
                _fail(by_threads[threads], rows, error, progress)
                continue
            where = (f"subprocess at intra={threads[0]} inter={threads[1]}, its rounds interleaved with this "
                     "process's; speed-up vs the original at those threads")
            for candidate in by_threads[threads]:
                timing = measured[candidate.name]
                _fill_timing(rows[candidate.name], timing["p50_ms"], timing["throughput"], timing["speedup"], where)
                progress(f"  {_timing_text(rows[candidate.name])}")
    finally:
        for worker in workers.values():
            worker.close()


def _fail(candidates, rows, error: BaseException, progress) -> None:
    for candidate in candidates:
        rows[candidate.name].update(status=FAILED, reason=_one_line(error))
        progress(f"  {candidate.name}: failed: {_one_line(error)}")


def _fill_timing(row: dict, p50_ms: float, throughput: float, speedup: float, where: str) -> None:
    row.update(status=MEASURED, reason="", p50_ms=round(p50_ms, 3), throughput=round(throughput, 2),
               speedup=round(speedup, 3), measured_in=where)


def _timing_text(row: dict) -> str:
    speedup = f", {row['speedup']:.2f}x the original" if row.get("speedup") else ""
    return f"{row['candidate']}: p50 {row['p50_ms']:.2f} ms, {row['throughput']:.1f} samples/s{speedup}"


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:300]


# --------------------------------------------------------------------------- other thread settings: a subprocess per setting

class ThreadWorker:
    """Models timed at another TF thread setting in a subprocess, one round at a time, on this process's cue.

    TensorFlow fixes its thread pools once per process, so another setting needs another
    process. ``start()`` loads the models there (at ``threads``) with the original as
    baseline, and makes each one's first call and ``warmup`` runs; each ``round()`` runs
    every model once, timed in the subprocess while this process waits (so the two never
    compete for cores, and machine drift hits both alike); ``finish()`` returns
    {name: {"p50_ms", "throughput", "speedup", "runs"}} ("baseline" included). Failures raise
    ToolkitError with the subprocess's message; ``close()`` always ends the subprocess.
    """

    def __init__(self, models: Dict[str, str], baseline: str, *, threads: Threads, data, batch_size: int,
                 warmup: int = 5):
        self.request = {"models": models, "baseline": baseline, "threads": list(threads), "warmup": warmup,
                        "data": data if isinstance(data, (str, list)) else str(data), "batch_size": batch_size}
        self.threads = threads
        self._process: Optional[subprocess.Popen] = None
        self._stderr = None

    def start(self, timeout: float) -> "ThreadWorker":
        self._stderr = tempfile.TemporaryFile(mode="w+")
        environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"))
        self._process = subprocess.Popen([sys.executable, "-m", "tftrt_toolkit.runtime.tune", "--thread-worker"],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                                         text=True, bufsize=1, env=environment)
        self._send(json.dumps(self.request))
        self._receive("ready", timeout)
        return self

    def round(self) -> None:
        self._send("round")
        self._receive("ok", None)

    def finish(self) -> Dict[str, dict]:
        self._send("finish")
        return self._receive("results", None)

    def close(self) -> None:
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            self._process.wait()
            for stream in (self._process.stdin, self._process.stdout):
                if stream:
                    stream.close()
            self._process = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def _send(self, line: str) -> None:
        try:
            self._process.stdin.write(line + "\n")
            self._process.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._failure("it stopped") from None

    def _receive(self, key: str, timeout: Optional[float]):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if deadline is not None:
                ready, _, _ = select.select([self._process.stdout], [], [], max(0.0, deadline - time.monotonic()))
                if not ready:
                    raise ToolkitError(f"timing threads intra={self.threads[0]} inter={self.threads[1]}: the subprocess "
                                       f"did not load its models within the time budget ({timeout:.0f} s left)")
            line = self._process.stdout.readline()
            if not line:
                raise self._failure("it ended")
            if not line.startswith("{"):
                continue  # a library's print, not ours
            message = json.loads(line)
            if "error" in message:
                raise self._failure(message["error"])
            if key in message:
                return message[key]

    def _failure(self, what: str) -> ToolkitError:
        detail = what
        if self._stderr is not None and what in ("it ended", "it stopped"):
            self._stderr.seek(0)
            lines = [line for line in self._stderr.read().splitlines() if line.strip()]
            detail = f"{what}: {lines[-1][:300]}" if lines else what
        return ToolkitError(f"timing threads intra={self.threads[0]} inter={self.threads[1]} in a subprocess failed ({detail})")


def _thread_worker_main() -> int:
    """The subprocess side of ``ThreadWorker``: a JSON request, then "round"/"finish" lines on stdin; JSON lines back."""
    from tftrt_toolkit.data import open_source
    from tftrt_toolkit.runtime.benchmark import _batch_inputs, latency_stats
    from tftrt_toolkit.runtime.session import ModelRunner, configure_threads

    def reply(**message) -> None:
        print(json.dumps(message), flush=True)

    request = json.loads(sys.stdin.readline())
    batch_size = request["batch_size"]
    runners: Dict[str, ModelRunner] = {}
    try:
        configure_threads(*request["threads"])  # first: before TF's runtime starts
        runners["baseline"] = ModelRunner(request["baseline"], name="original").load()
        for name, path in request["models"].items():
            runners[name] = ModelRunner(path, name=name).load()
        # The same inputs benchmark_many uses in the main process (same source, preprocessing, seed).
        source = open_source(request["data"], runners["baseline"].signature, model_hint=runners["baseline"].model_info)
        inputs = _batch_inputs(source, batch_size)
        tensors = {role: runner.prepare(inputs) for role, runner in runners.items()}
        for _ in range(1 + request["warmup"]):  # the first call (graph optimization) and warm-up, off the clock
            for role, runner in runners.items():
                runner.run_prepared(tensors[role])
        reply(ready=True)
        latencies: Dict[str, List[float]] = {role: [] for role in runners}
        for line in sys.stdin:
            if line.strip() == "finish":
                break
            for role, runner in runners.items():
                start = time.perf_counter()
                runner.run_prepared(tensors[role])  # ends with .numpy(): the result is on the host
                latencies[role].append(time.perf_counter() - start)
            reply(ok=True)
    except ToolkitError as error:
        reply(error=_one_line(error))
        return error.exit_code
    finally:
        for runner in runners.values():
            runner.close()
    if not latencies["baseline"]:
        reply(error="no rounds were run")
        return 1
    baseline_p50 = latency_stats(latencies["baseline"])["p50"]
    results = {}
    for role, values in latencies.items():
        p50 = latency_stats(values)["p50"]
        results[role] = {"p50_ms": p50, "throughput": batch_size * len(values) / sum(values), "runs": len(values),
                         "speedup": baseline_p50 / p50}
    reply(results=results)
    return 0


# --------------------------------------------------------------------------- writing

def _public(row: dict) -> dict:
    return {column: row.get(column) for column in TABLE_COLUMNS}


def _write_chosen(chosen: dict, path: str, stage_path: str, result: TuneResult, time_budget: float) -> None:
    """Move the chosen conversion into the staged output and record why it was chosen in its metadata."""
    os.rename(path, stage_path)  # same directory, so a rename; stage_path is an empty directory
    metadata = artifacts.read_metadata(stage_path) or {}
    threads = None
    if chosen.get("intra_op_threads") is not None:
        threads = {"intra_op_threads": chosen["intra_op_threads"], "inter_op_threads": chosen["inter_op_threads"]}
    metadata["chosen_by"] = {
        "tool": "tune",
        "candidate": chosen["candidate"],
        "budget": result.budget.to_json(),
        "batch_size": result.batch_size,
        "time_budget_s": time_budget,
        "reason": result.reason,
        # A serving setting, not part of the graph: set these TF thread pools where the model runs.
        "threads": threads,
        "data": result.data,
        "table": [_public(row) for row in result.table],
    }
    artifacts.write_metadata(stage_path, metadata)


def _write_report(result: TuneResult, stage_path: str, time_budget: float) -> None:
    from tftrt_toolkit.report.writers import write_csv, write_json

    result.files = {"tune.json": "tune.json", "tune.csv": "tune.csv"}
    try:
        from tftrt_toolkit.report.tune_plot import plot_tune

        plot_tune(result, os.path.join(stage_path, "tune.png"))
        result.files["tune.png"] = "tune.png"
    except ConfigError as error:  # matplotlib is an optional extra
        result.notes.append(f"tune.png not drawn: {error}")
    data = result.to_json()
    data["time_budget_s"] = time_budget
    write_json(os.path.join(stage_path, "tune.json"), data)
    write_csv(os.path.join(stage_path, "tune.csv"), [_public(row) for row in result.table], TABLE_COLUMNS)


if __name__ == "__main__":
    if sys.argv[1:] == ["--thread-worker"]:
        sys.exit(_thread_worker_main())
    sys.exit("usage: python -m tftrt_toolkit.runtime.tune --thread-worker  (tune's thread-timing subprocess; "
             "use `tftrt tune` or tune() instead)")
