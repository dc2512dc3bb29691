"""Validation, benchmark, prediction and tune results as text, markdown tables and files.

The runtime and the jobs compute these results (``ValidationReport``, ``BenchmarkReport``,
``PredictionResult``, ``TuneResult``); each result class renders itself with the functions
here, which read only what they are given (attributes and ``to_json()``; this module
imports no runtime or job code). One place per result's text:

    validation_lines(report), validation_markdown(report)
    benchmark_lines(report), benchmark_markdown(report), write_benchmark_files(...)
    predictions_markdown(result), write_predictions(result, path)
    tune_cells(result)                        # TuneResult.table_lines() / to_markdown()
"""

from __future__ import annotations

import os
from typing import Dict, List

from tftrt_toolkit import benchmark_schema
from tftrt_toolkit.report import tables, writers

BENCHMARK_FILES = ("benchmark.json", "benchmark.csv", "benchmark.png")


# --------------------------------------------------------------------------- markdown

def _percent(value) -> str:
    return "-" if value is None else f"{value:.2%}"


def conversion_seconds(metadata: dict) -> float:
    """The seconds a conversion took in all, from the timings its metadata records."""
    return sum(v for v in metadata.get("timings", {}).values() if isinstance(v, (int, float)))


def optimized_model_markdown(model) -> str:
    """A converted model (``path`` and ``metadata``) as a one-row markdown table."""
    metadata = model.metadata
    return tables.markdown([["path", "backend", "precision", "signature", "converted in"],
                            [model.path, metadata["backend"], metadata["precision"], metadata["signature"]["key"],
                             f"{conversion_seconds(metadata):.1f} s"]])


def validation_lines(report) -> List[str]:
    """A few terminal lines: verdict, per-output errors, agreement, accuracy, failures."""
    verdict = "PASS" if report.passed else "FAIL"
    lines = [f"{verdict}: {report.optimized['model']} ({report.precision or 'unknown precision'}) vs "
             f"{report.original['model']} on {report.samples} samples of {report.data}"]
    criteria = report.criteria
    for name, stats in report.outputs.items():
        line = (f"  {name}: max abs {stats['max_abs_error']:.3g}, mean abs {stats['mean_abs_error']:.3g}, "
                f"max rel {stats['max_rel_error']:.3g}, within atol={criteria.atol:g} rtol={criteria.rtol:g}: "
                f"{stats['within_tolerance']:.2%}")
        if stats.get("top1_agreement") is not None:
            line += f", top-1 agreement {stats['top1_agreement']:.2%}, top-{report.top_k} {stats['topk_agreement']:.2%}"
        lines.append(line)
    if report.accuracy:
        accuracy = report.accuracy
        lines.append(f"  accuracy on {accuracy['labelled_samples']} labelled images ({accuracy['labels']}):")
        lines.append(f"    {drop_text(accuracy, 'top1')}")
        lines.append(f"    {drop_text(accuracy, 'topk')}")
    lines.extend(f"  failed: {failure}" for failure in report.failures)
    return lines


def drop_text(accuracy: dict, metric: str = "top1") -> str:
    """One line: both accuracies, the drop in points and its interval, the images that decide it."""
    lower, upper = accuracy[f"{metric}_drop_interval"]
    label = "top-1" if metric == "top1" else f"top-{accuracy.get('top_k', 5)}"
    return (f"{label} {accuracy['original'][metric]:.2%} -> {accuracy['optimized'][metric]:.2%}, drop "
            f"{100 * accuracy[f'{metric}_drop']:+.2f} points ({accuracy['confidence']:.0%} interval "
            f"{100 * lower:+.2f} to {100 * upper:+.2f}; only the original right on "
            f"{accuracy[f'{metric}_only_original_right']}, only the optimized on "
            f"{accuracy[f'{metric}_only_optimized_right']})")


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


def benchmark_lines(report) -> List[str]:
    """A compact fixed-width table: per batch size, p50 latency and throughput (and speed-ups), then footnotes."""
    if report.has_baseline:
        header = f"{'batch':>5}  {'baseline p50':>13}  {'optimized p50':>13}  {'speed-up':>8}  " \
                 f"{'baseline /s':>11}  {'optimized /s':>12}  {'speed-up':>8}  {'runs':>4}"
    else:
        header = f"{'batch':>5}  {'p50 ms':>9}  {'p90 ms':>9}  {'p99 ms':>9}  {'samples/s':>9}  {'first call':>10}  {'runs':>4}"
    lines = [header]
    for batch_size in report.settings["batch_sizes"]:
        optimized = report.result("optimized", batch_size)
        if report.has_baseline:
            baseline = report.result("baseline", batch_size)
            speedup = report.speedup(batch_size)
            lines.append(
                f"{batch_size:>5}  {baseline.latency_ms['p50']:>10.2f} ms  {optimized.latency_ms['p50']:>10.2f} ms  "
                f"{speedup['p50_speedup']:>7.2f}x  {baseline.throughput:>11.1f}  {optimized.throughput:>12.1f}  "
                f"{speedup['throughput_speedup']:>7.2f}x  {optimized.runs:>4}")
        else:
            lat = optimized.latency_ms
            first_call = "-" if optimized.first_call_ms is None else f"{optimized.first_call_ms:.0f}"
            lines.append(f"{batch_size:>5}  {lat['p50']:>9.2f}  {lat['p90']:>9.2f}  {lat['p99']:>9.2f}  "
                         f"{optimized.throughput:>9.1f}  {first_call:>7} ms  {optimized.runs:>4}")
    return lines + _tf_default_lines(report)


def _tf_default_lines(report) -> List[str]:
    """Footnotes: the speed-ups over the baseline as plain TF runs it by default, where that setting differs."""
    onednn = report.settings.get("onednn") or {}
    if not onednn.get("baseline_tf_default_measured"):
        return []
    state = lambda on: "on" if on else "off"  # noqa: E731
    lines = [f"rows above: oneDNN {state(onednn['this_process'])} (set by {onednn['set_by']}); plain TF's default "
             f"here is oneDNN {state(onednn['tf_default'])}, against which (baseline timed in a subprocess, interleaved):"]
    for batch_size in report.settings["batch_sizes"]:
        speedup = report.speedup(batch_size) or {}
        default = report.result(benchmark_schema.TF_DEFAULT_BASELINE, batch_size)
        lines.append(f"{batch_size:>5}  baseline p50 {default.latency_ms['p50']:.2f} ms, {default.throughput:.1f}/s; "
                     f"speed-up {speedup['p50_speedup_vs_tf_default']:.2f}x (p50), "
                     f"{speedup['throughput_speedup_vs_tf_default']:.2f}x (throughput)")
    return lines


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


def tune_cells(result) -> List[List[str]]:
    """Rows of strings (header first) of a TuneResult's table: each candidate's status, accuracy, speed and note."""
    quality = "top-1 drop [95% interval]" if result.budget.metric == "top1_drop" else "top-1 agreement"
    header = ["candidate", "status", quality, f"p50 bs{result.batch_size} (ms)", "samples/s", "speed-up", "note"]
    in_flight = next((row["concurrency"] for row in result.table if row.get("concurrency")), None)
    if in_flight:  # objective throughput: requests/s with N in flight, at 1 thread per request | TF's threads
        header.insert(-1, f"req/s x{in_flight}: 1 thread | TF threads")
    rows = [header]
    for row in result.table:
        value = row.get(result.budget.metric)
        if value is None:
            value_text = "-"
        elif result.budget.metric == "top1_drop":
            value_text = f"{value * 100:+.1f} pt" if row["status"] != "original" else "-"
            if row["status"] != "original" and row.get("top1_drop_low") is not None:
                # The paired 95% interval: whether the drop is real or noise on this many images.
                value_text += f" [{row['top1_drop_low'] * 100:+.1f}, {row['top1_drop_high'] * 100:+.1f}]"
        else:
            value_text = f"{value:.1%}"
        if row["status"] == "original" and result.budget.metric == "top1_drop" and row.get("accuracy") is not None:
            value_text = f"acc {row['accuracy']:.1%}" + (f" on {row['labelled_images']}" if row.get("labelled_images") else "")
        status = row["status"]
        if result.chosen is not None and row is result.chosen:
            status = "CHOSEN"
        elif status == "measured":
            status = "inside" if row.get("within_budget") else "outside"
        note = row.get("reason") or ("timed in a subprocess, interleaved" if row["status"] == "measured"
                                      and row.get("intra_op_threads") is not None else "") or ""
        rows.append([
            row["candidate"], status, value_text,
            "-" if row.get("p50_ms") is None else f"{row['p50_ms']:.2f}",
            "-" if row.get("throughput") is None else f"{row['throughput']:.1f}",
            "-" if row.get("speedup") is None else f"{row['speedup']:.2f}x",
            note if len(note) <= 90 else note[:89].rstrip() + "…",
        ])
        if in_flight:
            one, tf = row.get("requests_per_s_one_thread"), row.get("requests_per_s_tf_threads")
            rows[-1].insert(-1, "-" if one is None or tf is None else f"{one:.1f} | {tf:.1f}")
    return rows


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


def write_benchmark_files(document: dict, csv_rows, csv_columns, reports, directory: str, *,
                          names=None, plot: bool = True, overwrite: bool = False) -> Dict[str, str]:
    """Write benchmark.json (``document``), benchmark.csv and (``plot``) benchmark.png of ``reports`` into ``directory``.

    Every file is checked before the first is written, and each is written atomically;
    returns {file name: path}. Raises OutputError, ConfigError (``plot`` without matplotlib).
    """
    check_benchmark_output(directory, plot=plot, overwrite=overwrite)
    paths = benchmark_paths(directory, plot=plot)
    writers.write_json(paths["benchmark.json"], document, overwrite=overwrite)
    writers.write_csv(paths["benchmark.csv"], csv_rows, csv_columns, overwrite=overwrite)
    if plot:
        from tftrt_toolkit.report.plots import plot_benchmarks

        # tftrt benchmark's one model is labelled by its path; run's and tune's by their names.
        named = names and list(names) != [benchmark_schema.SINGLE_MODEL_NAME]
        plot_benchmarks(list(reports), paths["benchmark.png"], overwrite=overwrite, names=list(names) if named else None)
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
