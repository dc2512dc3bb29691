"""Charts of benchmark results (matplotlib, an optional extra: ``pip install tftrt_toolkit[plot]``).

``benchmark_figure(reports)`` returns a Figure (``BenchmarkReport.plot()`` in notebooks);
``plot_benchmark(report, path)`` writes it as a PNG. It draws latency (p50, whisker to p90) and throughput per
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
        raise ConfigError('plots need matplotlib; run: pip install -e ".[plot]" (or pip install tftrt_toolkit[plot]; '
                          "the CLI's --noplot skips the chart)") from error
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
            f"{timing}, {settings.get('warmup', 0)} warm-up; {_short_data(settings.get('data', ''))}"
            + ("; interleaved" if settings.get("interleaved") else ""))


def _short_data(description: str) -> str:
    """'directory /long/path/samples' -> 'directory samples': the subtitle must fit on one line."""
    kind, _, path = str(description).partition(" ")
    return f"{kind} {os.path.basename(path.rstrip(os.sep))}" if os.sep in path else str(description)


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
    return plot_benchmarks([report], path, overwrite=overwrite, title=title)


def save_png(figure, path: str, *, overwrite: bool = False) -> str:
    """Write ``figure`` as a PNG at ``path`` atomically; returns the path."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return write_bytes(path, buffer.getvalue(), overwrite=overwrite)


# Optimized models after the first get further blues/greens so several read apart beside the baseline.
_EXTRA_COLORS = ("#e08a1e", "#6a3d9a", "#1b9e77", "#d95f02")


def plot_benchmarks(reports, path: str, *, overwrite: bool = False, title: Optional[str] = None,
                    names: Optional[list] = None) -> str:
    """Draw one or more BenchmarkReports that share a baseline as a PNG at ``path`` (see ``benchmark_figure``).

    Raises ConfigError without matplotlib, OutputError when the file cannot be written.
    """
    return save_png(benchmark_figure(reports, title=title, names=names), path, overwrite=overwrite)


def benchmark_figure(reports, *, title: Optional[str] = None, names: Optional[list] = None):
    """A matplotlib Figure of one or more BenchmarkReports that share a baseline (e.g. fp32, bf16 vs the original).

    Bars per batch size: the baseline (from the first report) then each report's optimized model,
    each with its speed-up over the baseline above it. ``names`` labels the optimized models.
    Raises ConfigError without matplotlib.
    """
    Figure, FigureCanvasAgg = require_matplotlib()
    from matplotlib.ticker import FuncFormatter
    first = reports[0]
    settings = first.settings
    batch_sizes = list(settings["batch_sizes"])
    has_baseline = first.has_baseline
    # One series per bar group member: (label, colour, measurement per batch size, speed-up per batch size or None).
    series = []
    if has_baseline:
        series.append((f"baseline: {_model_label(first.models['baseline'])}", BASELINE_COLOR,
                       [first.result("baseline", b) for b in batch_sizes], None))
    for index, report in enumerate(reports):
        label = names[index] if names else _model_label(report.models["optimized"])
        color = OPTIMIZED_COLOR if index == 0 else _EXTRA_COLORS[(index - 1) % len(_EXTRA_COLORS)]
        speedups = [report.speedup(b) for b in batch_sizes] if report.has_baseline else None
        series.append(((f"optimized: {label}" if has_baseline and len(reports) == 1 else label), color,
                       [report.result("optimized", b) for b in batch_sizes], speedups))

    figure = Figure(figsize=(12 if len(series) <= 2 else 13.5, 5.2), dpi=110)
    FigureCanvasAgg(figure)
    latency_axes, throughput_axes = figure.subplots(1, 2)
    positions = list(range(len(batch_sizes)))
    width = min(0.38, 0.8 / len(series)) if len(series) > 1 else 0.55
    offsets = [(i - (len(series) - 1) / 2) * width for i in range(len(series))]
    measured = [m for _, _, measurements, _ in series for m in measurements]

    for (label, color, measurements, _), offset in zip(series, offsets):
        xs = [p + offset for p in positions]
        p50 = [m.latency_ms["p50"] for m in measurements]
        p90 = [m.latency_ms["p90"] for m in measurements]
        whiskers = [[0] * len(p50), [max(hi - lo, 0.0) for lo, hi in zip(p50, p90)]]
        bars = latency_axes.bar(xs, p50, width, color=color, label=label,
                                yerr=whiskers, capsize=3, error_kw={"elinewidth": 0.8, "ecolor": "#333333"})
        latency_axes.bar_label(bars, labels=[f"{v:.1f}" for v in p50], label_type="center", fontsize=8, color="white")
        throughput = [m.throughput for m in measurements]
        bars = throughput_axes.bar(xs, throughput, width, color=color, label=label)
        throughput_axes.bar_label(bars, labels=[f"{v:.0f}" for v in throughput], label_type="center", fontsize=8, color="white")

    # Latency spans orders of magnitude across batch sizes: a log axis keeps bs1 visible,
    # with its floor well below the smallest bar so bar heights still read as values.
    latency_axes.set_yscale("log")
    smallest = min(m.latency_ms["p50"] for m in measured)
    largest = max(m.latency_ms["p90"] for m in measured)
    latency_axes.set_ylim(smallest / 4, largest * (2.5 if has_baseline else 1.5))
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

    compact = len(series) > 2  # several bars per group: one-line labels keep them apart
    for (_, _, measurements, speedups), offset in zip(series, offsets):
        if speedups is None:
            continue
        for position, measurement, speedup in zip(positions, measurements, speedups):
            for axes, ratio, top in (
                (latency_axes, speedup["p50_speedup"], measurement.latency_ms["p90"]),
                (throughput_axes, speedup["throughput_speedup"], measurement.throughput),
            ):
                if compact:
                    text = f"{ratio:.2f}×"
                else:
                    text = f"{ratio:.2f}×\nfaster" if ratio >= 1.0 else f"{1.0 / ratio:.2f}×\nslower"
                axes.annotate(text, (position + offset, top), xytext=(0, 4),
                              textcoords="offset points", ha="center", va="bottom", fontsize=8 if compact else 9,
                              fontweight="bold", color=SPEEDUP_COLOR if ratio >= 1.0 else SLOWDOWN_COLOR)
    throughput_axes.set_ylim(0, throughput_axes.get_ylim()[1] * 1.2)

    handles, legend_labels = latency_axes.get_legend_handles_labels()
    figure.legend(handles, legend_labels, loc="lower center", ncol=len(series), frameon=False, fontsize=9)
    runs = min(m.runs for m in measured)
    if title is None:
        if len(reports) > 1:
            title = f"{len(reports)} optimized models vs {_model_label(first.models['baseline'])}: speed-up by batch size"
        elif has_baseline:
            title = (f"{_model_label(first.models['optimized'])} vs {_model_label(first.models['baseline'])}: "
                     "speed-up by batch size")
        else:
            title = f"{_model_label(first.models['optimized'])}: latency and throughput by batch size"
    figure.suptitle(title, fontsize=13, fontweight="bold", y=0.985)
    subtitle = _subtitle(settings, runs) + ("; speed-up = baseline p50 / model p50 (throughput ratio on the right)"
                                            if compact else "")
    figure.text(0.5, 0.915, subtitle, ha="center", fontsize=8, color="#444444", wrap=True)
    figure.tight_layout(rect=(0, 0.07, 1, 0.9))
    return figure
