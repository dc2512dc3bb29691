"""What tune found: the table, the chosen row and why; renders as text, markdown and JSON."""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional

from tftrt_toolkit.errors import ValidationFailed
from tftrt_toolkit.jobs.tune.choice import ORIGINAL, TABLE_COLUMNS
from tftrt_toolkit.report import results as rendered
from tftrt_toolkit.report import tables
from tftrt_toolkit.runtime.accuracy_rule import Budget
from tftrt_toolkit.runtime.optimized_model import OptimizedModel


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
        """The chosen model as an ``OptimizedModel`` (``.validate()``, ``.benchmark()``, ``.predict()``); None when nothing qualified."""
        return OptimizedModel.from_path(self.output) if self.output else None

    def table_lines(self) -> List[str]:
        return tables.aligned_lines(rendered.tune_cells(self))

    def to_markdown(self) -> str:
        return tables.markdown(rendered.tune_cells(self))

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
