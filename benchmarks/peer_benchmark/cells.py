"""How one row's numbers read, the same in the table (outputs.py) and the chart (chart.py)."""

from typing import Optional


# Below this top-1 agreement with plain TF a row is flagged in the table and the chart.
AGREEMENT_FLAG_BELOW = 0.9


def result_at(row: dict, batch_size: int) -> Optional[dict]:
    return next((r for r in row.get("results", []) if r["batch_size"] == batch_size), None)


def format_ms(value: float) -> str:
    return f"{value:.1f} ms" if value >= 10 else f"{value:.2f} ms" if value >= 0.1 else f"{value * 1000:.0f} µs"


def agreement_text(row: dict) -> str:
    found = row.get("agreement", {})
    if "top1_agreement" not in found:
        return f"max diff {found['max_abs_diff']:.2g}" if found.get("max_abs_diff") is not None else "?"
    text = f"{100 * found['top1_agreement']:.0f}%"
    return text + (" ⚠" if found["top1_agreement"] < AGREEMENT_FLAG_BELOW else "")


def onednn_text(row: dict) -> str:
    return row.get("process", {}).get("tf_onednn") or "–"


def model_title(report: dict) -> str:
    weights = f" (weights {report['weights']})" if report["model"].startswith("keras:") else ""
    return f"{report['model']}{weights}"
