"""Charts of benchmark results (matplotlib, an optional extra: ``pip install tftrt_toolkit[plot]``).

``plot_benchmark(report, path)`` draws latency (p50, whisker to p90) and throughput per
batch size, baseline beside optimized, each speed-up written above the optimized bar,
with the run's settings under the title. Uses matplotlib's object API with the Agg
canvas, so it never opens a window or touches pyplot's global state.
"""

from __future__ import annotations

import io
import math
import os
from typing import Optional

from tftrt_toolkit.errors import ConfigError
from tftrt_toolkit.report.writers import write_bytes

BASELINE_COLOR = "#9aa5b1"
OPTIMIZED_COLOR = "#2a7ab9"
SPEEDUP_COLOR = "#1b7f3b"
SLOWDOWN_COLOR = "#b3261e"


def require_matplotlib():
    """(Figure, FigureCanvasAgg) from matplotlib; ConfigError with the install command when it is missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ConfigError("plots need matplotlib; run: pip install tftrt_toolkit[plot] (or pass --noplot)") from error
    return Figure, FigureCanvasAgg


def _short_name(model: str) -> str:
    """The last path component of a model spec ('out/bf16/' -> 'bf16'), or the spec itself."""
    name = os.path.basename(os.path.normpath(model)) if model else model
    return name or model


def _model_label(description: dict) -> str:
    label = _short_name(description["model"])
    details = " ".join(v for v in (description.get("backend"), description.get("precision")) if v)
    return f"{label} ({details})" if details else label


def _subtitle(settings: dict, runs: int) -> str:
    threads = settings.get("threads", {}).get("in_force", {})
    intra = threads.get("intra_op_threads") or "auto"
    inter = threads.get("inter_op_threads") or "auto"
    cpu = settings.get("cpu_model") or "unknown CPU"
    gpus = settings.get("gpus") or []
    device = gpus[0] if gpus else f"{cpu}, {settings.get('cpu_count', '?')} cores"
    timing = f"{runs} timed runs" if settings.get("iterations") else f"~{settings.get('duration_s'):g} s per point ({runs}+ runs)"
    return (f"TF {settings.get('tensorflow_version', '?')} on {device}; threads intra={intra} inter={inter}; "
            f"{timing}, {settings.get('warmup', 0)} warm-up; {settings.get('data', '')}"
            + ("; interleaved" if settings.get("interleaved") else ""))


def _minor_log_label(value: float, _position) -> str:
    """Label the 2x and 5x minor ticks of a log axis (20, 50, 200...): enough to read values, not crowded."""
    if value <= 0:
        return ""
    leading = value / 10 ** math.floor(math.log10(value))
    return f"{value:g}" if round(leading, 6) in (2.0, 5.0) else ""


def plot_benchmark(report, path: str, *, overwrite: bool = False, title: Optional[str] = None) -> str:
    """Draw ``report`` (a BenchmarkReport) as a PNG at ``path`` (written atomically); returns the path.

    Raises ConfigError without matplotlib, OutputError when the file cannot be written.
    """
    Figure, FigureCanvasAgg = require_matplotlib()
    from matplotlib.ticker import FuncFormatter
    settings = report.settings
    batch_sizes = list(settings["batch_sizes"])
    roles = ["baseline", "optimized"] if report.has_baseline else ["optimized"]
    colors = {"baseline": BASELINE_COLOR, "optimized": OPTIMIZED_COLOR}
    labels = {role: (f"{role}: " if report.has_baseline else "") + _model_label(report.models[role]) for role in roles}

    figure = Figure(figsize=(12, 5.2), dpi=110)
    FigureCanvasAgg(figure)
    latency_axes, throughput_axes = figure.subplots(1, 2)
    positions = list(range(len(batch_sizes)))
    width = 0.38 if len(roles) == 2 else 0.55
    offsets = {"baseline": -width / 2, "optimized": width / 2} if len(roles) == 2 else {"optimized": 0.0}

    for role in roles:
        measurements = [report.result(role, b) for b in batch_sizes]
        xs = [p + offsets[role] for p in positions]
        p50 = [m.latency_ms["p50"] for m in measurements]
        p90 = [m.latency_ms["p90"] for m in measurements]
        whiskers = [[0] * len(p50), [max(hi - lo, 0.0) for lo, hi in zip(p50, p90)]]
        bars = latency_axes.bar(xs, p50, width, color=colors[role], label=labels[role],
                                yerr=whiskers, capsize=3, error_kw={"elinewidth": 0.8, "ecolor": "#333333"})
        latency_axes.bar_label(bars, labels=[f"{v:.1f}" for v in p50], label_type="center", fontsize=8, color="white")
        throughput = [m.throughput for m in measurements]
        bars = throughput_axes.bar(xs, throughput, width, color=colors[role], label=labels[role])
        throughput_axes.bar_label(bars, labels=[f"{v:.0f}" for v in throughput], label_type="center", fontsize=8, color="white")

    # Latency spans orders of magnitude across batch sizes: a log axis keeps bs1 visible,
    # with its floor well below the smallest bar so bar heights still read as values.
    latency_axes.set_yscale("log")
    smallest = min(m.latency_ms["p50"] for m in report.results)
    largest = max(m.latency_ms["p90"] for m in report.results)
    latency_axes.set_ylim(smallest / 4, largest * (2.5 if report.has_baseline else 1.5))
    latency_axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    latency_axes.yaxis.set_minor_formatter(FuncFormatter(_minor_log_label))
    latency_axes.set_ylabel("ms per batch (log scale)")
    latency_axes.set_title("Latency p50, whisker to p90 — lower is better", fontsize=11)
    throughput_axes.set_ylabel("samples per second")
    throughput_axes.set_title("Throughput — higher is better", fontsize=11)
    for axes in (latency_axes, throughput_axes):
        axes.set_xticks(positions, [f"batch {b}" for b in batch_sizes])
        axes.set_xlabel("batch size")
        axes.grid(axis="y", alpha=0.3, which="both")
        axes.set_axisbelow(True)
        axes.spines[["top", "right"]].set_visible(False)

    if report.has_baseline:
        for position, batch_size in zip(positions, batch_sizes):
            speedup = report.speedup(batch_size)
            optimized = report.result("optimized", batch_size)
            for axes, ratio, top in (
                (latency_axes, speedup["p50_speedup"], optimized.latency_ms["p90"]),
                (throughput_axes, speedup["throughput_speedup"], optimized.throughput),
            ):
                text = f"{ratio:.2f}×\nfaster" if ratio >= 1.0 else f"{1.0 / ratio:.2f}×\nslower"
                axes.annotate(text, (position + offsets["optimized"], top), xytext=(0, 4),
                              textcoords="offset points", ha="center", va="bottom", fontsize=9, fontweight="bold",
                              color=SPEEDUP_COLOR if ratio >= 1.0 else SLOWDOWN_COLOR)
    throughput_axes.set_ylim(0, throughput_axes.get_ylim()[1] * 1.2)

    handles, legend_labels = latency_axes.get_legend_handles_labels()
    figure.legend(handles, legend_labels, loc="lower center", ncol=len(roles), frameon=False, fontsize=9)
    runs = min(m.runs for m in report.results)
    if title is None:
        optimized_label = _model_label(report.models["optimized"])
        title = (f"{optimized_label} vs {_model_label(report.models['baseline'])}: speed-up by batch size"
                 if report.has_baseline else f"{optimized_label}: latency and throughput by batch size")
    figure.suptitle(title, fontsize=13, fontweight="bold", y=0.985)
    figure.text(0.5, 0.915, _subtitle(settings, runs), ha="center", fontsize=8, color="#444444", wrap=True)
    figure.tight_layout(rect=(0, 0.07, 1, 0.9))

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return write_bytes(path, buffer.getvalue(), overwrite=overwrite)
