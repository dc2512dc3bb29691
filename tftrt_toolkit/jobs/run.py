"""The main job: load → convert with the best precisions here → predict → validate → benchmark → report.

    import tftrt_toolkit as tt
    report = tt.run()                  # the shipped EfficientNet-Lite0 and sample photos
    report                             # RunReport('tftrt-report', original + 2 optimized: ...)
    print(report.to_markdown())        # the summary table, no pandas needed

Everything lands in ``output_dir`` at once (a staged directory renamed into place), so a
half-finished run leaves nothing behind.
"""

from __future__ import annotations

import os
import time
from typing import Dict, List, Optional, Sequence

from tftrt_toolkit import artifacts
from tftrt_toolkit.config import ConversionConfig
from tftrt_toolkit.errors import ConfigError, DataError, ToolkitError
from tftrt_toolkit.progress import ProgressOption, reports_progress
from tftrt_toolkit.data.sources import names_images
from tftrt_toolkit.report.run_report import ModelRow, RunReport, markdown_report
from tftrt_toolkit.shipped_files import SHIPPED_CALIBRATION, SHIPPED_MODEL as DEFAULT_MODEL, SHIPPED_SAMPLES as DEFAULT_SAMPLES

DEFAULT_OUTPUT_DIR = "tftrt-report"
# int8 must keep at least this top-1 agreement with the original, or the run falls back to the others.
INT8_MIN_TOP1_AGREEMENT = 0.99
# With labelled images, int8 may lose at most this much top-1 accuracy (a share: 0.01 = one point).
INT8_MAX_TOP1_DROP = 0.01

@reports_progress("run", total=6)
def run_job(model: Optional[str] = None, *, output_dir: str = DEFAULT_OUTPUT_DIR, data: Optional[str] = None,
            labels_csv: Optional[str] = None, precisions: Optional[Sequence[str]] = None, backend: str = "auto",
            weights: Optional[str] = "imagenet", batch_sizes: Sequence[int] = (1, 8), duration: float = 3.0,
            top_k: int = 5, overwrite: bool = False, threads=(None, None),
            calibration_data: Optional[str] = None, custom_objects=None, strict_data: bool = False,
            signature_key: Optional[str] = None, unsafe_deserialization: bool = False,
            allow_partial_precision: bool = False, progress: ProgressOption = True) -> RunReport:
    """Run the whole job on ``model`` (default: the shipped EfficientNet-Lite0 and its samples).

    Converts with each precision in ``precisions`` (default: the best this machine offers),
    predicts ``data`` before and after, validates each optimized model against the original,
    benchmarks them (interleaved with the original, at each batch size for ``duration``
    seconds), and writes report.md/.json, predictions.json/.csv, benchmark.json/.csv/.png and
    the converted models under ``output_dir``. A precision that fails to convert, or an int8
    model that loses too much (with labels: top-1 accuracy drop > INT8_MAX_TOP1_DROP; without:
    top-1 agreement < INT8_MIN_TOP1_AGREEMENT), is reported with its reason and the run goes on.

    int8 calibrates on ``calibration_data`` (default: for the shipped model, the shipped
    calibration crops of free photos, disjoint from the samples; otherwise ``data``). Where the
    images are labelled (``labels_csv``, or WordNet ids in the file names) every row reports
    top-1/top-k accuracy and each optimized model the drop with its paired 95% interval; the
    accuracy is also recorded in each converted model's metadata.

    Files of an image folder that are not used are listed in the report (``skipped_files``)
    and summed up in a note; ``strict_data`` refuses them (DataError) before any conversion.
    ``custom_objects``, ``signature_key`` and ``unsafe_deserialization`` are ``load_model``'s
    (a Keras file's custom classes, which signature, Lambda layers).

    A bf16/int8 conversion leaving most of the multiply-adds in fp32 is not converted (a note
    says which op types), unless ``allow_partial_precision``; each row reports its share.

    ``progress``: a bar over the six steps in a terminal or notebook (False: none); the step
    messages ("[2/6] convert: fp32") are logged at INFO either way (the CLI shows them).

    Raises ConfigError/OutputError before any work when the options or output are unusable.
    """
    from tftrt_toolkit.backends.precisions import offered_precisions
    from tftrt_toolkit.environment import probe
    from tftrt_toolkit.models.loader import load_model
    from tftrt_toolkit.pipeline import calibration_sized_to, convert
    from tftrt_toolkit.runtime.benchmark import benchmark_many
    from tftrt_toolkit.runtime.predict import predict
    from tftrt_toolkit.runtime.session import ModelRunner, configure_threads
    from tftrt_toolkit.runtime.validate import validate

    started = time.perf_counter()
    model = model or DEFAULT_MODEL
    using_defaults = model == DEFAULT_MODEL
    if data is None:
        data = DEFAULT_SAMPLES if using_defaults else "synthetic:8"
    if labels_csv is None and data == DEFAULT_SAMPLES:
        labels_csv = os.path.join(DEFAULT_SAMPLES, "labels.csv")
    if calibration_data is None:
        # ImageNet photos cannot ship; the shipped crops calibrate as well (benchmarks/int8_cpu_notes.md).
        calibration_data = SHIPPED_CALIBRATION if using_defaults else data
    if not batch_sizes or any(int(b) < 1 for b in batch_sizes):
        raise ConfigError(f"batch sizes {list(batch_sizes)} are not valid; give positive integers, e.g. 1,8.")
    if duration <= 0:
        raise ConfigError(f"duration={duration} is not valid; give seconds > 0.")

    env = probe()
    progress(f"[1/6] doctor: {env.one_line()}")
    progress.advance()
    precisions = list(precisions or offered_precisions(env))
    base_config = ConversionConfig(backend=backend, allow_partial_precision=allow_partial_precision)
    for precision in precisions:  # refuse impossible combinations before any work
        base_config.replace(precision=precision)
    target = artifacts.resolve_output(output_dir)
    artifacts.check_output(target, [model] if os.path.exists(model) else [], overwrite)
    configure_threads(*threads)

    notes: List[str] = []
    files: Dict[str, str] = {}
    skipped_files: List[dict] = []
    with load_model(model, weights=weights, custom_objects=custom_objects, signature_key=signature_key,
                    unsafe_deserialization=unsafe_deserialization) as loaded, \
            artifacts.staged_output(target, overwrite=overwrite) as stage:
        if strict_data:  # every file checked now, not after the conversions
            from tftrt_toolkit.data import refuse_skipped_files

            # The shipped folders keep their provenance (SOURCES.md, labels.csv) beside the photos.
            refuse_skipped_files([spec for spec in (data, calibration_data)
                                  if spec not in (DEFAULT_SAMPLES, SHIPPED_CALIBRATION)],
                                 loaded.signature, model_hint=loaded.model_info)
        # ---- 2. convert
        rows = [ModelRow(name="original", path=model, backend="-", precision=_source_precision(loaded))]
        for precision in precisions:
            progress(f"[2/6] convert: {precision}")
            config = base_config.replace(precision=precision)
            if precision == "int8":
                config = calibration_sized_to(config, calibration_data, loaded)
            try:
                result = convert(loaded, os.path.join(stage.path, "models", precision), config,
                                 calibration_data=calibration_data if precision == "int8" else None, progress=False)
            except ToolkitError as error:
                if precision == "int8" and isinstance(error, DataError):
                    error = (f"{error} (tftrt run calibrates int8 on {calibration_data}: pass "
                             "--calibration_data=DIR with 32+ images to try int8)")
                notes.append(f"{precision}: not converted, the run goes on without it: {error}")
                progress(f"      {precision} skipped: {error}")
                continue
            rows.append(ModelRow(name=f"{result.backend}-{precision}",
                                 path=os.path.join(os.path.basename(target), "models", precision),
                                 backend=result.backend, precision=precision,
                                 precision_coverage=result.metadata["conversion_summary"].get("precision_coverage")))

        runners = {row.name: ModelRunner(loaded if row.name == "original" else
                                         os.path.join(stage.path, "models", row.precision)).load()
                   for row in rows}
        try:
            # ---- 3. predict
            progress.advance()
            progress(f"[3/6] predict: {len(rows)} model(s) on {data}")
            predictions = {}
            for row in rows:
                result = predict(runners[row.name], data, top_k=top_k)
                predictions[row.name] = result
                if row.name == "original" and result.skipped_files:
                    skipped_files = result.skipped_files
                    notes.append(f"{data}: {result.skipped_summary}")
                if result.kind == "classification" and result.records:
                    record = _headline_record(result.records)
                    row.top1 = dict(record["predictions"][0], image=os.path.basename(record["image"]))
            _write_predictions(stage.path, predictions, files)

            # ---- 4. validate
            progress.advance()
            progress("[4/6] validate: each optimized model against the original")
            validations = {}
            for row in rows[1:]:
                report = validate(runners["original"], runners[row.name], data=data, top_k=top_k,
                                  labels_csv=labels_csv if names_images(data) else None, progress=False)
                validations[row.name] = report.to_json()
                row.top1_agreement, row.topk_agreement = report.top1_agreement, report.topk_agreement
                row.max_abs_error, row.validation_passed = report.max_abs_error, bool(report)
                if report.accuracy:
                    row.accuracy = report.accuracy
                    rows[0].accuracy = dict(report.accuracy["original"], labelled_samples=report.accuracy["labelled_samples"])
                    _record_accuracy(os.path.join(stage.path, "models", row.precision), report.accuracy)
                if not report:
                    row.note = "validation failed: " + "; ".join(report.failures)
            for row in [r for r in rows[1:] if r.precision == "int8"]:
                # Against labels the question is accuracy; without them, agreement with the original.
                if row.accuracy and row.accuracy["top1_drop"] > INT8_MAX_TOP1_DROP:
                    notes.append(f"int8: top-1 accuracy drop {100 * row.accuracy['top1_drop']:.2f} points is above "
                                 f"{100 * INT8_MAX_TOP1_DROP:.1f}; falling back to the other precisions.")
                    row.note = "rejected: below the int8 accuracy threshold"
                elif not row.accuracy and row.top1_agreement is not None and row.top1_agreement < INT8_MIN_TOP1_AGREEMENT:
                    notes.append(f"int8: top-1 agreement {row.top1_agreement:.1%} is below "
                                 f"{INT8_MIN_TOP1_AGREEMENT:.0%}; falling back to the other precisions.")
                    row.note = "rejected: below the int8 accuracy threshold"
            _write(stage.path, "validation.json", validations, files)

            # ---- 5. benchmark
            progress.advance()
            progress(f"[5/6] benchmark: batch sizes {', '.join(map(str, batch_sizes))}, interleaved with the original")
            # One interleaved run for all models: they share the original's measurements, so the
            # speed-ups (and the chart's baseline bars) are comparable across precisions.
            reports = benchmark_many({row.name: runners[row.name] for row in rows[1:]}, baseline=runners["original"],
                                     batch_sizes=batch_sizes, duration=duration, data=data,
                                     progress=False) if len(rows) > 1 else {}
            benchmarks = [(row, reports[row.name]) for row in rows[1:]]
            for row, bench in benchmarks:
                for batch_size in batch_sizes:
                    row.p50_ms[batch_size] = bench.result("optimized", batch_size).latency_ms["p50"]
                    row.throughput[batch_size] = bench.result("optimized", batch_size).throughput
                    row.speedup[batch_size] = bench.speedup(batch_size)["p50_speedup"]
                    if "p50_speedup_vs_tf_default" in bench.speedup(batch_size):
                        row.speedup_vs_tf_default[batch_size] = bench.speedup(batch_size)["p50_speedup_vs_tf_default"]
            if benchmarks:  # every report holds the same baseline measurements
                shared = benchmarks[0][1]
                for batch_size in batch_sizes:
                    rows[0].p50_ms[batch_size] = shared.result("baseline", batch_size).latency_ms["p50"]
                    rows[0].throughput[batch_size] = shared.result("baseline", batch_size).throughput
                onednn_setting = shared.settings.get("onednn") or {}
                if onednn_setting.get("baseline_tf_default_measured"):
                    for batch_size in batch_sizes:
                        default = shared.result("baseline_tf_default", batch_size).latency_ms["p50"]
                        rows[0].speedup_vs_tf_default[batch_size] = default / rows[0].p50_ms[batch_size]
                    notes.append(
                        f"every model here ran with TF's oneDNN ops {'on' if env.onednn_enabled else 'off'} "
                        f"(set by {env.onednn_set_by}); plain TF's default on this CPU is "
                        f"{'on' if env.onednn_default else 'off'}, so the original was also timed that way in a "
                        "subprocess, interleaved: the 'vs plain TF default' columns compare against it")
            _write_benchmarks(stage.path, benchmarks, files, notes)
        finally:
            for runner in runners.values():
                runner.close()

        # ---- 6. report
        report = RunReport(output_dir=target, model=model, data=data, environment=env.one_line(),
                           batch_sizes=list(batch_sizes), rows=rows, files=files,
                           seconds=time.perf_counter() - started, notes=notes,
                           benchmarks=[bench for _, bench in benchmarks], skipped_files=skipped_files)
        _write_text(stage.path, "report.md", markdown_report(report, env), files)
        _write(stage.path, "report.json", report.to_json(), files)
        stage.commit()
    progress.advance()
    progress(f"[6/6] report: {target}/report.md ({report.seconds:.0f} s)")
    progress.advance()
    return report


def _record_accuracy(model_dir: str, accuracy: dict) -> None:
    """Keep the measured accuracy with the converted model (its metadata), so it travels with the model."""
    metadata = artifacts.read_metadata(model_dir) or {}
    metadata["accuracy"] = accuracy
    artifacts.write_metadata(model_dir, metadata)


def _headline_record(records: List[dict]) -> dict:
    """The record the summary quotes: the cat photo when there is one (the toolkit's promise), else the first."""
    for record in records:
        if os.path.splitext(os.path.basename(str(record["image"])))[0].lower() == "cat":
            return record
    return records[0]


def _source_precision(loaded) -> str:
    meta = loaded.toolkit_metadata
    return meta["precision"] if meta else "fp32"


def _write(stage_dir: str, name: str, data, files: Dict[str, str]) -> str:
    from tftrt_toolkit.report.writers import write_json

    write_json(os.path.join(stage_dir, name), data)
    files[name] = name
    return name


def _write_text(stage_dir: str, name: str, text: str, files: Dict[str, str]) -> str:
    from tftrt_toolkit.report.writers import write_text

    write_text(os.path.join(stage_dir, name), text)
    files[name] = name
    return name


def _write_predictions(stage_dir: str, predictions, files: Dict[str, str]) -> None:
    from tftrt_toolkit.report.writers import write_csv

    _write(stage_dir, "predictions.json", {name: result.to_json() for name, result in predictions.items()}, files)
    first = next(iter(predictions.values()))
    rows = [{"model": name, **row} for name, result in predictions.items() for row in result.csv_rows()]
    write_csv(os.path.join(stage_dir, "predictions.csv"), rows, ("model",) + tuple(first.csv_columns))
    files["predictions.csv"] = "predictions.csv"


def _write_benchmarks(stage_dir: str, benchmarks, files: Dict[str, str], notes: List[str]) -> None:
    from tftrt_toolkit.report.writers import write_csv

    if not benchmarks:
        return
    first = benchmarks[0][1]
    _write(stage_dir, "benchmark.json", {
        "settings": first.settings,
        "models": {"baseline": first.models.get("baseline"), **{row.name: bench.models["optimized"] for row, bench in benchmarks}},
        "results": [m.to_json() for m in first.results if m.role == "baseline"]
                   + [dict(m.to_json(), role=row.name) for row, bench in benchmarks for m in bench.results if m.role == "optimized"],
        "speedups": {row.name: bench.speedups for row, bench in benchmarks},
    }, files)
    # The original once, then each optimized model with its speed-ups: one row per model x batch size.
    rows = [dict(r, role="original") for r in first.csv_rows() if r["role"] == "baseline"]
    rows += [dict(r, role=row.name) for row, bench in benchmarks for r in bench.csv_rows() if r["role"] == "optimized"]
    write_csv(os.path.join(stage_dir, "benchmark.csv"), rows, tuple(rows[0].keys()))
    files["benchmark.csv"] = "benchmark.csv"
    try:
        from tftrt_toolkit.report.plots import plot_benchmarks

        plot_benchmarks([bench for _, bench in benchmarks], os.path.join(stage_dir, "benchmark.png"),
                        names=[row.name for row, _ in benchmarks])
        files["benchmark.png"] = "benchmark.png"
    except ConfigError as error:  # matplotlib is an optional extra
        notes.append(f"benchmark.png not drawn: {error}")
