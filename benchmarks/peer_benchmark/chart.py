"""OUTPUT.png: a bar per measured row and batch size, speed-up over plain TF with the median beside it."""

import io

from .cells import AGREEMENT_FLAG_BELOW, agreement_text, format_ms, model_title, onednn_text, result_at


def plot_peers(report: dict, path: str, *, overwrite: bool) -> str:
    """A horizontal bar per measured row and batch size: speed-up over plain TF, median ms beside it."""
    from tftrt_toolkit.report.plots import (BASELINE_COLOR, OPTIMIZED_COLOR, SLOWDOWN_COLOR, require_matplotlib)
    from tftrt_toolkit.report.writers import write_bytes

    Figure, FigureCanvasAgg = require_matplotlib()
    colors = {"reference": BASELINE_COLOR, "tftrt_toolkit": OPTIMIZED_COLOR, "peer": "#e08a1e"}
    measured = [row for row in report["rows"] if row["status"] == "measured"]
    skipped = [row for row in report["rows"] if row["status"] != "measured"]
    batch_sizes = report["settings"]["batch_sizes"]
    height = 1.4 + 0.42 * len(measured) + 0.22 * len(skipped)
    figure = Figure(figsize=(5.2 * len(batch_sizes) + 1.8, height + 1.3), dpi=110)
    FigureCanvasAgg(figure)
    axes_list = figure.subplots(1, len(batch_sizes), sharey=True, squeeze=False)[0]
    reference_onednn = onednn_text(report["rows"][0])[:3]
    labels = [row["label"] + ("" if row["stays_tf_saved_model"] else " *")
              + (" (oneDNN on)" if row["key"] != "tf_onednn" and onednn_text(row)[:3] not in (reference_onednn, "–")
                 else "") for row in measured]
    positions = list(range(len(measured)))[::-1]  # first row on top
    largest = max((c["speedup_vs_tf"] for row in measured for c in row["results"]), default=1.0)
    for axes, batch_size in zip(axes_list, batch_sizes):
        speedups, texts, bar_colors = [], [], []
        for row in measured:
            cell = result_at(row, batch_size)
            speedups.append(cell["speedup_vs_tf"] if cell else 0.0)
            flagged = row.get("agreement", {}).get("top1_agreement", 1.0) < AGREEMENT_FLAG_BELOW
            texts.append(f"{cell['speedup_vs_tf']:.2f}×  {format_ms(cell['latency_ms']['p50'])}" if cell else "–")
            texts[-1] += "  ⚠ top-1 " + agreement_text(row).rstrip(" ⚠") if flagged else ""
            bar_colors.append(colors[row["family"]])
        bars = axes.barh(positions, speedups, color=bar_colors, height=0.7)
        for bar, row in zip(bars, measured):
            if row.get("agreement", {}).get("top1_agreement", 1.0) < AGREEMENT_FLAG_BELOW:
                bar.set_hatch("///")
                bar.set_edgecolor(SLOWDOWN_COLOR)
        axes.bar_label(bars, labels=texts, padding=3, fontsize=8.5)
        axes.axvline(1.0, color="#333333", linewidth=0.9, linestyle="--")
        axes.set_xlim(0, largest * 1.45)
        axes.set_title(f"batch {batch_size}", fontsize=11)
        axes.set_xlabel("speed-up over plain TF (median latency) — higher is better")
        axes.grid(axis="x", alpha=0.3)
        axes.set_axisbelow(True)
        axes.spines[["top", "right"]].set_visible(False)
    axes_list[0].set_yticks(positions, labels, fontsize=9)
    for tick, row in zip(axes_list[0].get_yticklabels(), measured):
        if row["family"] == "tftrt_toolkit":
            tick.set_fontweight("bold")
    settings = report["settings"]
    runs = min((c["runs"] for row in measured for c in row["results"]), default=0)
    figure.suptitle(f"{model_title(report)}: tftrt_toolkit cpu vs peer runtimes", fontsize=12.5, fontweight="bold")
    load = settings.get("load_average_1min_at_start")
    footer = [f"{settings['cpu_model']}, {settings['usable_cores']} cores; {settings['threads']} intra-op threads for "
              f"every runtime; {settings['data']}; median of ≥{runs} timed runs from "
              f"{settings['rounds']} interleaved rounds, warm-up excluded; TF {report['versions']['tensorflow']}"
              + (f"; load average {load:g} at start" if load is not None else ""),
              f"plain TF: TF's oneDNN {onednn_text(report['rows'][0])}; "
              "* result is not a TF SavedModel (ONNX / OpenVINO / TFLite); bold = tftrt_toolkit (stays a SavedModel); "
              f"hatched = top-1 agreement with plain TF below {AGREEMENT_FLAG_BELOW:.0%}"]
    footer += [f"skipped {row['label']}: {row['reason'][:150]}" for row in skipped]
    from matplotlib.patches import Patch

    legend = [Patch(color=colors[family], label=text) for family, text in (
        ("reference", "plain TF (1.00×)"), ("tftrt_toolkit", "tftrt_toolkit: a TF SavedModel"),
        ("peer", "peer runtime: another format")) if any(row["family"] == family for row in measured)]
    figure.legend(handles=legend, loc="upper center", ncol=len(legend), fontsize=8.5, frameon=False,
                  bbox_to_anchor=(0.5, 1 - 0.5 / (height + 1.3)))
    figure.text(0.01, 0.01, "\n".join(footer), fontsize=7.5, color="#444444", va="bottom")
    bottom = (0.15 + 0.15 * len(footer)) / (height + 1.3)
    figure.tight_layout(rect=(0, bottom, 1, 1 - 0.75 / (height + 1.3)))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return write_bytes(path, buffer.getvalue(), overwrite=overwrite)
