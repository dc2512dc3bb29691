"""Validation, benchmark and prediction results as markdown tables and as files.

The runtime computes these results (``ValidationReport``, ``BenchmarkReport``,
``PredictionResult``); this module renders what it is given (it reads their attributes and
``to_json()``, and imports no runtime code), for the CLI and the Python API alike:

    write_benchmark(report, "bench/")        # benchmark.json, benchmark.csv, benchmark.png
    write_validation(report, "validation.json")
    benchmark_markdown(report)               # what a notebook shows for the result
"""

from __future__ import annotations

import os
from typing import Dict, List

from tftrt_toolkit.report import tables, writers

BENCHMARK_FILES = ("benchmark.json", "benchmark.csv", "benchmark.png")


# --------------------------------------------------------------------------- markdown

def _percent(value) -> str:
    return "-" if value is None else f"{value:.2%}"


def validation_markdown(report) -> str:
    """The verdict, one row per output (errors, share within tolerance, agreement), accuracy and failures."""
    verdict = "**PASS**" if report.passed else "**FAIL**"
    lines = [f"{verdict}: `{report.optimized['model']}` ({report.precision or 'unknown precision'}) against "
             f"`{report.original['model']}` on {report.samples} samples of {report.data}", ""]
    criteria = report.criteria
    rows = [["output", "max abs error", "mean abs error", "max rel error",
             f"within atol={criteria.atol:g} rtol={criteria.rtol:g}", "top-1 agreement", f"top-{report.top_k} agreement"]]
    for name, stats in report.outputs.items():
        rows.append([name, f"{stats['max_abs_error']:.3g}", f"{stats['mean_abs_error']:.3g}",
                     f"{stats['max_rel_error']:.3g}", _percent(stats["within_tolerance"]),
                     _percent(stats.get("top1_agreement")), _percent(stats.get("topk_agreement"))])
    lines.append(tables.markdown(rows))
    if report.accuracy:
        accuracy = report.accuracy
        lines += ["", f"Accuracy on {accuracy['labelled_samples']} labelled images ({accuracy['labels']}):", ""]
        lines.append(tables.markdown([
            ["model", "top-1", f"top-{report.top_k}"],
            ["original", _percent(accuracy["original"]["top1"]), _percent(accuracy["original"].get("topk"))],
            ["optimized", _percent(accuracy["optimized"]["top1"]), _percent(accuracy["optimized"].get("topk"))],
        ]))
    if report.failures:
        lines += [""] + [f"- failed: {failure}" for failure in report.failures]
    return "\n".join(lines)


def benchmark_cells(report) -> List[List[str]]:
    """Rows of strings (header first): per batch size, latency, throughput and, with a baseline, speed-ups."""
    with_baseline = report.has_baseline
    header = ["batch size"] + (["baseline p50 (ms)"] if with_baseline else [])
    header += ["p50 (ms)", "p90 (ms)", "p99 (ms)", "samples/s"] + (["speed-up p50", "speed-up samples/s"]
                                                                   if with_baseline else []) + ["runs"]
    rows = [header]
    for batch_size in report.settings["batch_sizes"]:
        measured = report.result("optimized", batch_size)
        latency = measured.latency_ms
        cells = [str(batch_size)]
        if with_baseline:
            cells.append(f"{report.result('baseline', batch_size).latency_ms['p50']:.2f}")
        cells += [f"{latency['p50']:.2f}", f"{latency['p90']:.2f}", f"{latency['p99']:.2f}", f"{measured.throughput:.1f}"]
        if with_baseline:
            speedup = report.speedup(batch_size)
            cells += [f"{speedup['p50_speedup']:.2f}x", f"{speedup['throughput_speedup']:.2f}x"]
        rows.append(cells + [str(measured.runs)])
    return rows


def benchmark_markdown(report) -> str:
    """What was measured, then ``benchmark_cells`` as a markdown table."""
    optimized = report.models["optimized"]
    head = f"`{optimized['model']}`"
    if report.has_baseline:
        head += f" against `{report.models['baseline']['model']}` (interleaved)"
    settings = report.settings
    where = settings.get("cpu_model") or "unknown CPU"
    return (f"{head} on {where}, TF {settings.get('tensorflow_version', '?')}, data: {settings.get('data', '?')}\n\n"
            + tables.markdown(benchmark_cells(report)))


def predictions_markdown(result, *, limit: int = 50) -> str:
    """One row per input: its top-1 label and probability (classifiers), or its output shapes (raw)."""
    if result.kind == "classification":
        rows = [["input", "top-1", "probability", f"top-{result.top_k}"]]
        for record in result.records[:limit]:
            best = record["predictions"][0]
            others = ", ".join(p["label"] for p in record["predictions"][1:])
            rows.append([os.path.basename(str(record["image"])), best["label"], f"{best['probability']:.3f}", others or "-"])
    else:
        rows = [["input", "outputs"]]
        for record in result.records[:limit]:
            shapes = ", ".join(f"{name} {list(_shape(values))}" for name, values in record["outputs"].items())
            rows.append([os.path.basename(str(record["image"])), shapes])
    text = f"`{result.model}` on {result.data}\n\n" + tables.markdown(rows)
    if len(result.records) > limit:
        text += f"\n\n… and {len(result.records) - limit} more (``to_json()`` has them all)"
    return text


def _shape(values) -> tuple:
    shape = []
    while isinstance(values, list):
        shape.append(len(values))
        values = values[0] if values else None
    return tuple(shape)


# --------------------------------------------------------------------------- files

def benchmark_paths(directory: str, *, plot: bool = True) -> Dict[str, str]:
    """{file name: path} of what ``write_benchmark`` writes into ``directory``."""
    names = BENCHMARK_FILES if plot else BENCHMARK_FILES[:2]
    return {name: os.path.join(os.fspath(directory), name) for name in names}


def check_benchmark_output(directory: str, *, plot: bool = True, overwrite: bool = False) -> None:
    """Refuse, before minutes of measuring, a directory whose files exist (without overwrite) or a missing matplotlib.

    Creates ``directory`` when it does not exist. Raises OutputError, ConfigError.
    """
    writers.check_writable(list(benchmark_paths(directory, plot=plot).values()), overwrite=overwrite, make_dirs=True)
    if plot:
        from tftrt_toolkit.report.plots import require_matplotlib

        require_matplotlib()


def write_benchmark(report, directory: str, *, plot: bool = True, overwrite: bool = False) -> Dict[str, str]:
    """Write benchmark.json, benchmark.csv and (``plot``) benchmark.png into ``directory``; {name: path}.

    Each file is written atomically. Raises OutputError, ConfigError (``plot`` without matplotlib).
    """
    check_benchmark_output(directory, plot=plot, overwrite=overwrite)
    paths = benchmark_paths(directory, plot=plot)
    writers.write_json(paths["benchmark.json"], report, overwrite=overwrite)
    writers.write_csv(paths["benchmark.csv"], report.csv_rows(), report.csv_columns, overwrite=overwrite)
    if plot:
        from tftrt_toolkit.report.plots import plot_benchmark

        plot_benchmark(report, paths["benchmark.png"], overwrite=overwrite)
    return paths


def write_validation(report, path: str, *, overwrite: bool = False) -> str:
    """Write the validation report as JSON at ``path`` (atomically); returns the path. Raises OutputError."""
    return writers.write_json(os.fspath(path), report, overwrite=overwrite)


def write_predictions(result, path: str, *, output_format: str = "json", overwrite: bool = False) -> str:
    """Write predictions at ``path`` as json (one document), jsonl (a record per line) or csv; returns the path."""
    return writers.write_text(os.fspath(path), predictions_text(result, output_format), overwrite=overwrite)


def predictions_text(result, output_format: str = "json") -> str:
    """Predictions as ``tftrt predict`` prints them: json, jsonl or csv text."""
    if output_format == "csv":
        return writers.csv_text(result.csv_rows(), result.csv_columns)
    if output_format == "jsonl":
        return "".join(writers.json_line(record) + "\n" for record in result.records)
    if output_format == "json":
        return writers.json_text(result)
    from tftrt_toolkit.errors import ConfigError

    raise ConfigError(f"format {output_format!r} is not valid; use json, jsonl or csv.")
