"""The tune table's columns and the pure rule that picks a row from it (the budget is ``runtime.accuracy_rule``'s)."""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

from tftrt_toolkit.runtime.accuracy_rule import (  # noqa: F401  (the defaults: today's import path)
    DEFAULT_MAX_TOP1_DROP, DEFAULT_MIN_TOP1_AGREEMENT, EPSILON, Budget, value_text,
)

# The tie-break's "simpler first" order: fewer numeric surprises and nothing to calibrate.
PRECISION_ORDER = ("fp32", "fp16", "bf16", "int8")
# The table's own rounding: values equal at this precision are ties.
_P50_DECIMALS = 2
_THROUGHPUT_DECIMALS = 1

TABLE_COLUMNS = (
    "candidate", "backend", "precision", "settings", "intra_op_threads", "inter_op_threads", "status",
    "within_budget", "pareto", "top1_agreement", "accuracy", "top1_drop", "top1_drop_low", "top1_drop_high",
    "labelled_images", "p50_ms", "throughput", "speedup",
    "measured_in", "convert_s", "reason",
)
# Objective throughput: N requests in flight at 1 intra-op thread each and at TF's threads (jobs/tune/throughput_choice.py).
THROUGHPUT_COLUMNS = ("concurrency", "requests_per_s_one_thread", "requests_per_s_tf_threads")
TABLE_COLUMNS += THROUGHPUT_COLUMNS
# Row statuses: the original (reference, never chosen), timed candidates, and the rest.
ORIGINAL, MEASURED, FAILED, SKIPPED = "original", "measured", "failed", "skipped"


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
              if budget.shortfall(row) is not None and budget.shortfall(row) <= EPSILON]

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
                  f"{value_text(budget, best)}")
        if len(ranked) > 1:
            runner_up = ranked[1][1]
            decided_by = _tie_break(speed_key(ranked[0]), speed_key(ranked[1]))
            reason += (f"; tied on p50 with {runner_up['candidate']}, chosen for its {decided_by}" if decided_by
                       else f"; next: {runner_up['candidate']} at {runner_up['p50_ms']:.2f} ms")
        faster = [row for _, row in sorted(measured, key=lambda item: item[1]["p50_ms"]) if row["p50_ms"] < best["p50_ms"]
                  and (budget.shortfall(row) is None or budget.shortfall(row) > EPSILON)]
        if faster:
            reason += "; faster but outside the budget: " + ", ".join(
                f"{row['candidate']} ({row['p50_ms']:.2f} ms, {value_text(budget, row)})" for row in faster[:3])
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
                  f"{value_text(budget, closest)}{speed}")


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
        if budget.quality(row) > best_quality + EPSILON:
            row["pareto"] = True
            best_quality = budget.quality(row)
