"""Throughput under concurrent requests, rendered: an aligned table, a markdown table, a chart.

Takes the ``ThroughputReport`` that ``runtime.throughput.throughput`` returns (any object
with its ``settings``, ``results``, ``to_json()`` and ``csv_rows()``); computes nothing itself.
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence

from tftrt_toolkit.report import tables, writers
from tftrt_toolkit.report.plots import require_matplotlib, save_png

THROUGHPUT_FILES = ("throughput.json", "throughput.csv", "throughput.png")

_COLORS = ("#2a7ab9", "#e08a1e", "#1b9e77", "#6a3d9a", "#d95f02")


def _threads_text(settings: dict) -> str:
    in_force = (settings.get("threads") or {}).get("in_force") or {}
    intra = in_force.get("intra_op_threads") or "auto"
    inter = in_force.get("inter_op_threads") or "auto"
    return f"intra={intra} inter={inter}"


def _cells(report) -> List[List[str]]:
    rows = [["batch", "clients", "requests/s", "samples/s", "p50 ms", "p90 ms", "p99 ms", "requests"]]
    for r in report.results:
        lat = r.latency_ms
        rows.append([str(r.batch_size), str(r.concurrency), f"{r.requests_per_second:.1f}", f"{r.samples_per_second:.1f}",
                     f"{lat['p50']:.2f}", f"{lat['p90']:.2f}", f"{lat['p99']:.2f}", str(r.requests)])
    return rows


def table_lines(report) -> List[str]:
    """The CLI's table: per batch size and number of clients, requests/s, samples/s, latency percentiles."""
    settings = report.settings
    head = (f"concurrent requests ({settings.get('clients', 'client threads')}); TF threads {_threads_text(settings)}; "
            f"{settings.get('cpu_model') or 'unknown CPU'}, {settings.get('cpu_count', '?')} cores")
    return [head] + tables.aligned_lines(_cells(report))


def to_markdown(report) -> str:
    return tables.markdown(_cells(report))


def throughput_paths(directory: str, *, plot: bool = True) -> Dict[str, str]:
    """{file name: path} of what ``write_throughput_files`` writes into ``directory``."""
    names = THROUGHPUT_FILES if plot else THROUGHPUT_FILES[:2]
    return {name: os.path.join(os.fspath(directory), name) for name in names}


def write_throughput_files(report, directory: str, csv_columns: Sequence[str], *, plot: bool = True,
                           overwrite: bool = False) -> Dict[str, str]:
    """Write throughput.json, throughput.csv and (``plot``) throughput.png into ``directory``; {file: path}.

    Every file is checked before the first is written. Raises OutputError, ConfigError (``plot`` without matplotlib).
    """
    paths = throughput_paths(directory, plot=plot)
    writers.check_writable(list(paths.values()), overwrite=overwrite, make_dirs=True)
    if plot:
        require_matplotlib()
    writers.write_json(paths["throughput.json"], report, overwrite=overwrite)
    writers.write_csv(paths["throughput.csv"], report.csv_rows(), csv_columns, overwrite=overwrite)
    if plot:
        plot_throughput(report, paths["throughput.png"], overwrite=overwrite)
    return paths


def plot_throughput(report, path: str, *, overwrite: bool = False, title: Optional[str] = None) -> str:
    """Requests/s and p99 latency against the number of clients, one line per batch size, as a PNG at ``path``.

    Raises ConfigError without matplotlib, OutputError when the file cannot be written.
    """
    return save_png(throughput_figure(report, title=title), path, overwrite=overwrite)


def throughput_figure(report, *, title: Optional[str] = None):
    """Requests/s and p99 latency against the number of clients, one line per batch size, as a matplotlib Figure."""
    Figure, FigureCanvasAgg = require_matplotlib()
    figure = Figure(figsize=(11, 4.6), dpi=110)
    FigureCanvasAgg(figure)
    rate_axes, latency_axes = figure.subplots(1, 2)
    batch_sizes = sorted({r.batch_size for r in report.results})
    for index, batch_size in enumerate(batch_sizes):
        rows = sorted((r for r in report.results if r.batch_size == batch_size), key=lambda r: r.concurrency)
        clients = [r.concurrency for r in rows]
        color = _COLORS[index % len(_COLORS)]
        rate_axes.plot(clients, [r.requests_per_second for r in rows], "o-", color=color, label=f"batch {batch_size}")
        for r in rows:
            rate_axes.annotate(f"{r.requests_per_second:.1f}", (r.concurrency, r.requests_per_second), xytext=(0, 5),
                               textcoords="offset points", ha="center", fontsize=8, color=color)
        latency_axes.plot(clients, [r.latency_ms["p99"] for r in rows], "o-", color=color, label=f"batch {batch_size} p99")
        latency_axes.plot(clients, [r.latency_ms["p50"] for r in rows], "o--", color=color, alpha=0.6,
                          label=f"batch {batch_size} p50")
    levels = sorted({r.concurrency for r in report.results})
    rate_axes.set_title("Requests per second — higher is better", fontsize=11)
    rate_axes.set_ylabel("requests / s")
    latency_axes.set_title("Latency per request — lower is better", fontsize=11)
    latency_axes.set_ylabel("ms")
    for axes in (rate_axes, latency_axes):
        axes.set_xticks(levels)
        axes.set_xlabel("concurrent clients")
        axes.set_ylim(bottom=0)
        axes.grid(alpha=0.3)
        axes.spines[["top", "right"]].set_visible(False)
        axes.legend(fontsize=8, frameon=False)
    settings = report.settings
    model = (report.model or {}).get("model", "")
    figure.suptitle(title or f"Throughput under concurrent requests: {model}", fontsize=12)
    figure.text(0.5, 0.005, f"TF {settings.get('tensorflow_version', '?')} on {settings.get('cpu_model') or 'unknown CPU'} "
                            f"({settings.get('cpu_count', '?')} cores); TF threads {_threads_text(settings)}; "
                            f"~{settings.get('duration_s', '?')} s per point; client threads in one process",
                ha="center", va="bottom", fontsize=8, color="#555555")
    figure.tight_layout(rect=(0, 0.04, 1, 0.95))
    return figure
