"""tune.png: each candidate's latency against its accuracy, the budget line, the Pareto front and the choice.

``tune_figure(result)`` (a Figure; ``TuneResult.plot()``) and ``plot_tune(result, path)`` (a PNG) read a ``jobs.tune.TuneResult`` (its table rows and budget):
x is p50 latency at the tuned batch size (left is faster), y is top-1 agreement with the
original, or top-1 accuracy when the budget is an accuracy drop. Filled markers are inside
the budget, hollow ones outside; squares were timed in a separate process (another thread
setting); the original is a grey diamond; the chosen candidate is ringed in gold. Failed
and skipped candidates are listed under the chart. Same conventions as ``plots``
(object API on the Agg canvas, atomic write).
"""

from __future__ import annotations

import os

from tftrt_toolkit.report.plots import BASELINE_COLOR, SLOWDOWN_COLOR, require_matplotlib, save_png

PRECISION_COLORS = {"fp32": "#2a7ab9", "fp16": "#e08a1e", "bf16": "#1b9e77", "int8": "#6a3d9a"}
CHOSEN_COLOR = "#f2b705"
_RANKED = 8  # candidates listed beside the chart
PARETO_COLOR = "#555555"
# Alternating label offsets (points) so names of candidates with similar latency do not overprint.
# A thin leader line ties each label to its point.
_LABEL_OFFSETS = ((0, 18), (0, -26), (0, 38), (0, -46))


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _y_value(row: dict, budget, original: dict):
    if budget.metric == "top1_agreement":
        return row.get("top1_agreement")
    if row is original:
        return row.get("accuracy")
    return row.get("accuracy") if row.get("top1_drop") is not None else None


def plot_tune(result, path: str, *, overwrite: bool = False) -> str:
    """Draw ``result`` (a TuneResult) as a PNG at ``path`` (written atomically); returns the path.

    Raises ConfigError without matplotlib, OutputError when the file cannot be written.
    """
    return save_png(tune_figure(result), path, overwrite=overwrite)


def tune_figure(result):
    """``result`` (a TuneResult) as a matplotlib Figure (``TuneResult.plot()``); ConfigError without matplotlib."""
    Figure, FigureCanvasAgg = require_matplotlib()
    from matplotlib.lines import Line2D
    from matplotlib.ticker import PercentFormatter

    budget = result.budget
    table = result.table
    original = table[0]
    drop_mode = budget.metric == "top1_drop"
    points = [row for row in table[1:] if row["status"] == "measured" and row.get("p50_ms") is not None
              and _y_value(row, budget, original) is not None]
    unplotted = [row for row in table[1:] if row not in points]

    figure = Figure(figsize=(12, 6.6), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_axes((0.08, 0.24, 0.57, 0.62))

    # The budget: a line at the limit, the region outside it shaded.
    ys = [_y_value(row, budget, original) for row in points]
    original_y = _y_value(original, budget, original)
    if drop_mode:
        limit_y = None if original_y is None else original_y - budget.limit
    else:
        limit_y = budget.limit
    known = ys + [v for v in (original_y, limit_y) if v is not None]
    low, high = (min(known), max(known)) if known else (0.0, 1.0)
    span = max(high - low, 0.04)
    # Room above and below the points for the staggered labels.
    y_min, y_max = max(0.0, low - 0.45 * span), min(1.0, high) + 0.45 * span
    axes.set_ylim(y_min, y_max)

    xs = [row["p50_ms"] for row in points]
    if original.get("p50_ms") is not None:
        xs.append(original["p50_ms"])
    x_low, x_high = (min(xs), max(xs)) if xs else (0.0, 1.0)
    x_span = max(x_high - x_low, 0.1 * max(x_high, 1e-3))
    axes.set_xlim(max(0.0, x_low - 0.25 * x_span), x_high + 0.25 * x_span)

    if limit_y is not None:
        axes.axhspan(y_min, limit_y, color=SLOWDOWN_COLOR, alpha=0.07, zorder=0)
        axes.axhline(limit_y, color=SLOWDOWN_COLOR, linestyle="--", linewidth=1.3, zorder=1)
        axes.annotate(f"budget: {budget.describe()}", (1.0, limit_y), xycoords=("axes fraction", "data"),
                      xytext=(-4, -12), textcoords="offset points", ha="right", fontsize=9, color=SLOWDOWN_COLOR)

    # The Pareto front as a staircase: from each point, nothing to its left is higher.
    front = sorted((row for row in points if row.get("pareto")), key=lambda r: r["p50_ms"])
    if len(front) > 1:
        fx, fy = [], []
        for row in front:
            y = _y_value(row, budget, original)
            if fx:
                fx.append(row["p50_ms"])
                fy.append(fy[-1])
            fx.append(row["p50_ms"])
            fy.append(y)
        axes.plot(fx, fy, color=PARETO_COLOR, linestyle=":", linewidth=1.5, zorder=2)
    for row in front:
        axes.scatter([row["p50_ms"]], [_y_value(row, budget, original)], s=260, facecolors="none",
                     edgecolors=PARETO_COLOR, linewidths=1.0, linestyle=":", zorder=2)

    if original.get("p50_ms") is not None and original_y is not None:
        axes.scatter([original["p50_ms"]], [original_y], marker="D", s=70, color=BASELINE_COLOR, zorder=3)
        axes.annotate("original", (original["p50_ms"], original_y), xytext=(0, 11), textcoords="offset points",
                      ha="center", fontsize=8.5, color="#444444")

    for index, row in enumerate(sorted(points, key=lambda r: r["p50_ms"])):
        y = _y_value(row, budget, original)
        color = PRECISION_COLORS.get(row["precision"], "#333333")
        separate = row.get("intra_op_threads") is not None
        inside = bool(row.get("within_budget"))
        axes.scatter([row["p50_ms"]], [y], marker="s" if separate else "o", s=55, zorder=4, alpha=0.9,
                     facecolors=color if inside else "white", edgecolors=color, linewidths=1.8)
        chosen = result.chosen is not None and row is result.chosen
        dx, dy = _LABEL_OFFSETS[index % len(_LABEL_OFFSETS)]
        axes.annotate(row["candidate"], (row["p50_ms"], y), xytext=(dx, dy), textcoords="offset points",
                      ha="center", va="center", fontsize=8.5, color="#222222",
                      fontweight="bold" if chosen else "normal", zorder=5,
                      arrowprops={"arrowstyle": "-", "color": "#999999", "linewidth": 0.7, "shrinkA": 2, "shrinkB": 6})
        if chosen:
            axes.scatter([row["p50_ms"]], [y], s=380, facecolors="none", edgecolors=CHOSEN_COLOR, linewidths=3, zorder=3)

    axes.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0 if span >= 0.1 else 1))
    # The headroom above 100% is for labels only: no ticks promise more than 100%.
    axes.set_yticks([tick for tick in axes.get_yticks() if y_min <= tick <= 1.0 + 1e-9])
    axes.set_xlabel(f"p50 latency at batch {result.batch_size} (ms)  —  left is faster")
    axes.set_ylabel("top-1 accuracy on the labelled data" if drop_mode else "top-1 agreement with the original")
    axes.grid(alpha=0.3)
    axes.set_axisbelow(True)
    axes.spines[["top", "right"]].set_visible(False)

    # Legend beside the chart: what markers mean, then one entry per precision present.
    handles = [
        Line2D([], [], marker="o", linestyle="", markerfacecolor="#777777", markeredgecolor="#777777",
               label="inside the budget"),
        Line2D([], [], marker="o", linestyle="", markerfacecolor="white", markeredgecolor="#777777",
               markeredgewidth=1.8, label="outside the budget"),
        Line2D([], [], marker="s", linestyle="", color="#777777", label="other threads (subprocess, interleaved)"),
        Line2D([], [], marker="D", linestyle="", color=BASELINE_COLOR, label="original"),
        Line2D([], [], marker="o", linestyle="", markersize=14, markerfacecolor="none", markeredgecolor=CHOSEN_COLOR,
               markeredgewidth=3, label="chosen"),
        Line2D([], [], color=PARETO_COLOR, linestyle=":", label="Pareto front"),
        Line2D([], [], color=SLOWDOWN_COLOR, linestyle="--", label="accuracy budget"),
    ]
    for precision in ("fp32", "fp16", "bf16", "int8"):
        if any(row["precision"] == precision for row in points):
            handles.append(Line2D([], [], marker="o", linestyle="", color=PRECISION_COLORS[precision], label=precision))
    figure.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.67, 0.86), frameon=False, fontsize=9)

    # Close latencies overlap on the chart; the ranking beside it reads them apart.
    ranking = sorted(points, key=lambda r: r["p50_ms"])
    lines = []
    width = max((len(_clip(row["candidate"], 26)) for row in ranking[:_RANKED]), default=0)
    for place, row in enumerate(ranking[:_RANKED], start=1):
        mark = "  <- chosen" if result.chosen is not None and row is result.chosen else (
            "" if row.get("within_budget") else "  (outside)")
        lines.append(f"{place}. {_clip(row['candidate'], 26).ljust(width)} {row['p50_ms']:7.1f} ms{mark}")
    if len(ranking) > _RANKED:
        lines.append(f"... {len(ranking) - _RANKED} more in tune.csv")
    if lines:
        figure.text(0.68, 0.47, f"fastest first (p50, batch {result.batch_size}):\n" + "\n".join(lines),
                    fontsize=8.5, va="top", family="monospace", color="#222222")

    chosen = result.chosen
    if chosen is not None:
        headline = (f"chosen: {chosen['candidate']} — p50 {chosen['p50_ms']:.1f} ms"
                    + (f", {chosen['speedup']:.2f}x the original" if chosen.get("speedup") else ""))
    else:
        headline = "nothing inside the budget"
    model = os.path.basename(os.path.normpath(result.model)) or result.model
    figure.suptitle(f"tune {model}: {headline}", fontsize=13, fontweight="bold", x=0.08, ha="left", y=0.965)
    figure.text(0.08, 0.905, f"{len(table) - 1} candidates on {result.data}; budget {budget.describe()}; "
                f"filled = inside the budget, hollow = outside", fontsize=9, color="#444444")

    footer = []
    for row in unplotted:
        footer.append(f"{row['candidate']}: {row['status']}" + (f" — {row['reason']}" if row.get("reason") else ""))
    if footer:
        shown = footer[:6] + ([f"... and {len(footer) - 6} more (see tune.csv)"] if len(footer) > 6 else [])
        figure.text(0.08, 0.14, "Not plotted:\n" + "\n".join(_clip(line, 130) for line in shown), fontsize=8,
                    color="#444444", va="top")
    return figure
