"""What tune found: the table, the chosen row and why; renders as text, markdown and JSON."""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional

from tftrt_toolkit.errors import ValidationFailed
from tftrt_toolkit.jobs.tune.choice import MEASURED, ORIGINAL, TABLE_COLUMNS, Budget
from tftrt_toolkit.report import tables


class NoCandidateInBudget(ValidationFailed):
    """No candidate met the accuracy budget (or none could be measured); ``result`` holds the table."""

    def __init__(self, message: str, result: "TuneResult"):
        super().__init__(message)
        self.result = result


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
    objective: str = "latency"  # what the choice maximised: "latency" (p50) or "throughput" (requests/s in flight)
    # How to serve the chosen model and the measured reason (runtime.serving_threads.serving_choice); None: nothing chosen.
    serving: Optional[dict] = None

    @property
    def chosen_model(self):
        """The chosen model as an ``OptimizedModel`` (None when nothing qualified)."""
        from tftrt_toolkit.pipeline import OptimizedModel

        return OptimizedModel.from_path(self.output) if self.output else None

    def _cells(self) -> List[List[str]]:
        quality = "top-1 drop [95% interval]" if self.budget.metric == "top1_drop" else "top-1 agreement"
        header = ["candidate", "status", quality, f"p50 bs{self.batch_size} (ms)", "samples/s", "speed-up", "note"]
        in_flight = next((row["concurrency"] for row in self.table if row.get("concurrency")), None)
        if in_flight:  # objective throughput: requests/s with N in flight, at 1 thread per request | TF's threads
            header.insert(-1, f"req/s x{in_flight}: 1 thread | TF threads")
        rows = [header]
        for row in self.table:
            value = row.get(self.budget.metric)
            if value is None:
                value_text = "-"
            elif self.budget.metric == "top1_drop":
                value_text = f"{value * 100:+.1f} pt" if row["status"] != ORIGINAL else "-"
                if row["status"] != ORIGINAL and row.get("top1_drop_low") is not None:
                    # The paired 95% interval: whether the drop is real or noise on this many images.
                    value_text += f" [{row['top1_drop_low'] * 100:+.1f}, {row['top1_drop_high'] * 100:+.1f}]"
            else:
                value_text = f"{value:.1%}"
            if row["status"] == ORIGINAL and self.budget.metric == "top1_drop" and row.get("accuracy") is not None:
                value_text = f"acc {row['accuracy']:.1%}" + (f" on {row['labelled_images']}" if row.get("labelled_images") else "")
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
            if in_flight:
                one, tf = row.get("requests_per_s_one_thread"), row.get("requests_per_s_tf_threads")
                rows[-1].insert(-1, "-" if one is None or tf is None else f"{one:.1f} | {tf:.1f}")
        return rows

    def table_lines(self) -> List[str]:
        return tables.aligned_lines(self._cells())

    def to_markdown(self) -> str:
        return tables.markdown(self._cells())

    def _repr_markdown_(self) -> str:
        head = f"chosen **{self.chosen['candidate']}**" if self.chosen is not None else "**nothing inside the budget**"
        return f"{head}: {self.reason}\n\n{self.to_markdown()}"

    def plot(self):
        """Latency against accuracy for every candidate (tune.png) as a matplotlib Figure; ConfigError without matplotlib."""
        from tftrt_toolkit.report.tune_plot import tune_figure

        return tune_figure(self)

    def to_json(self) -> dict:
        return {
            "model": self.model, "data": self.data, "batch_size": self.batch_size, "budget": self.budget.to_json(),
            "chosen": None if self.chosen is None else self.chosen["candidate"], "reason": self.reason,
            "output": self.output, "report_dir": self.report_dir, "files": self.files,
            "seconds": round(self.seconds, 1), "notes": self.notes, "objective": self.objective, "serving": self.serving,
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
