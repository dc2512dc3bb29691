"""tune's objective throughput: the pure rule that picks the conversion serving the most requests per second.

Each conversion inside the budget is measured with N requests in flight (N = cores) two ways,
at TF's threads and at one intra-op thread per request (``runtime.serving_threads``); a row's
number is the better of the two, and the chosen row's winning setting is what it is served with.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

from tftrt_toolkit.jobs.tune.choice import EPSILON, MEASURED, PRECISION_ORDER, THROUGHPUT_COLUMNS, Budget, value_text
# The table's own rounding: values equal at this precision are ties.
_RATE_DECIMALS = 1


def best_rate(row: dict) -> Optional[float]:
    """The row's requests/s at its better setting (None when it was not measured so)."""
    rates = [row.get(column) for column in THROUGHPUT_COLUMNS[1:] if row.get(column) is not None]
    return max(rates) if rates else None


def setting_text(row: dict) -> str:
    one, tf = row.get("requests_per_s_one_thread"), row.get("requests_per_s_tf_threads")
    if one is not None and tf is not None and one > tf:
        return f"1 intra-op thread per request ({one:.1f}/s against {tf:.1f}/s at TF's threads, {one / tf:.2f}x)"
    return f"TF's threads ({tf:.1f}/s against {one:.1f}/s at 1 intra-op thread per request)"


def choose_by_throughput(table: Sequence[dict], budget: Budget) -> Tuple[Optional[dict], str]:
    """(the row to pick, why): most requests/s inside the budget; (None, "") when no row inside was measured so.

    Ties (equal at 0.1/s) go to the lower p50, then the simpler precision, then the earlier row.
    """
    inside = [(index, row) for index, row in enumerate(table)
              if row.get("status") == MEASURED and best_rate(row) is not None
              and budget.shortfall(row) is not None and budget.shortfall(row) <= EPSILON]
    if not inside:
        return None, ""

    def key(item):
        index, row = item
        precision = row.get("precision")
        return (-round(best_rate(row), _RATE_DECIMALS), row.get("p50_ms") or 0.0,
                PRECISION_ORDER.index(precision) if precision in PRECISION_ORDER else len(PRECISION_ORDER), index)

    ranked = [row for _, row in sorted(inside, key=key)]
    best = ranked[0]
    reason = (f"{best['candidate']}: most requests/s inside the budget ({budget.describe()}) with {best['concurrency']} "
              f"requests in flight: {best_rate(best):.1f}/s at {setting_text(best)}, {value_text(budget, best)}")
    if len(ranked) > 1:
        reason += f"; next: {ranked[1]['candidate']} at {best_rate(ranked[1]):.1f}/s"
    more = [row for row in table if row.get("status") == MEASURED and best_rate(row) is not None
            and best_rate(row) > best_rate(best) and not (budget.shortfall(row) is not None
                                                          and budget.shortfall(row) <= EPSILON)]
    if more:
        reason += "; more requests/s but outside the budget: " + ", ".join(
            f"{row['candidate']} ({best_rate(row):.1f}/s, {value_text(budget, row)})" for row in more[:3])
    return best, reason
