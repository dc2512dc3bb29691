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
import shutil
import time
from typing import Dict, List, Optional, Sequence

from tftrt_toolkit import artifacts
from tftrt_toolkit.config import ConversionConfig
from tftrt_toolkit.errors import ConfigError, DataError, ToolkitError, ValidationFailed
from tftrt_toolkit.jobs.attempts import Failure, attempt, together_then_each
from tftrt_toolkit.progress import ProgressOption, reports_progress
from tftrt_toolkit.data.sources import names_images
from tftrt_toolkit.report.run_report import ModelRow, RunReport, markdown_report
from tftrt_toolkit.runtime.accuracy_rule import Budget
from tftrt_toolkit.shipped_files import SHIPPED_CALIBRATION, SHIPPED_MODEL as DEFAULT_MODEL, SHIPPED_SAMPLES as DEFAULT_SAMPLES

DEFAULT_OUTPUT_DIR = "tftrt-report"


class RunFailed(ToolkitError):
    """The run wrote its report, but a precision named in ``precisions`` failed, or no optimized model passed.

    ``report`` is the RunReport (written whole to its ``output_dir``); ``exit_code`` is that of
    the failure that decided it (6 conversion, 8 validation, 70 an internal error, ...).
    """

    def __init__(self, message: str, report: RunReport, exit_code: int):
        super().__init__(message)
        self.report = report
        self.exit_code = exit_code


@reports_progress("run", total=6)
def run_job(model: Optional[str] = None, *, output_dir: str = DEFAULT_OUTPUT_DIR, data: Optional[str] = None,
            labels_csv: Optional[str] = None, precisions: Optional[Sequence[str]] = None, backend: str = "auto",
            weights: Optional[str] = "imagenet", batch_sizes: Sequence[int] = (1, 8), duration: float = 3.0,
            top_k: int = 5, overwrite: bool = False, threads=(None, None),
            calibration_data: Optional[str] = None, custom_objects=None, strict_data: bool = False,
            signature_key: Optional[str] = None, unsafe_deserialization: bool = False,
            preprocess: str = "auto", input_shape=None, allow_partial_precision: bool = False,
            progress: ProgressOption = True) -> RunReport:
    """Run the whole job on ``model`` (default: the shipped EfficientNet-Lite0 and its samples).

    Converts with each precision in ``precisions`` (default: the best this machine offers),
    predicts ``data`` before and after, validates each optimized model against the original,
    benchmarks them (interleaved with the original, at each batch size for ``duration``
    seconds), and writes report.md/.json, predictions.json/.csv, benchmark.json/.csv/.png and
    the converted models under ``output_dir``. A precision whose conversion, loading,
    prediction, validation or timing raises anything gets a row with the step and the error's
    first line (``row.failure``, a note, a progress line) and the run goes on with the others
    (``jobs.attempts``); an int8 model outside the accuracy budget (``runtime.accuracy_rule.Budget``,
    tune's rule: with labels the top-1 accuracy drop, without them top-1 agreement with the
    original) is reported with its reason. int8 offered by default but without enough
    calibration images is left out with a one-line note.

    int8 calibrates on ``calibration_data`` (default: for the shipped model, the shipped
    calibration crops of free photos, disjoint from the samples; otherwise ``data``). Where the
    images are labelled (``labels_csv``, or WordNet ids in the file names) every row reports
    top-1/top-k accuracy and each optimized model the drop with its paired 95% interval; the
    accuracy is also recorded in each converted model's metadata.

    ``preprocess`` and ``input_shape`` say how images become the model's inputs (as for
    ``open_source``: 'auto' follows what the model records, its keras.applications family, else
    raw pixels) for predicting, validating, benchmarking and int8 calibration alike; the
    converted models record the concrete mode, so later commands on them default to it.

    Files of an image folder that are not used are listed in the report (``skipped_files``)
    and summed up in a note; ``strict_data`` refuses them (DataError) before any conversion.
    ``custom_objects``, ``signature_key`` and ``unsafe_deserialization`` are ``load_model``'s
    (a Keras file's custom classes, which signature, Lambda layers).

    A bf16/int8 conversion leaving most of the multiply-adds in fp32 is not converted (a note
    says which op types), unless ``allow_partial_precision``; each row reports its share.

    ``progress``: a bar over the six steps in a terminal or notebook (False: none); the step
    messages ("[2/6] convert: fp32") are logged at INFO either way (the CLI shows them).

    Raises ConfigError/OutputError before any work when the options or output are unusable;
    RunFailed, after writing the report, when a precision named in ``precisions`` failed or no
    optimized model passed validation.
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
    named = list(precisions or [])  # asked for by name: their failure fails the run
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

            refuse_skipped_files([data, calibration_data], loaded.signature, model_hint=loaded.model_info,
                                 input_shape=input_shape)
        # ---- 2. convert
        rows = [ModelRow(name="original", path=model, backend="-", precision=_source_precision(loaded))]
        failed: List[ModelRow] = []  # precisions that failed at some step: in the report, out of later steps
        for precision in precisions:
            progress(f"[2/6] convert: {precision}")
            with attempt("convert") as tried:
                config = base_config.replace(precision=precision)
                if precision == "int8":
                    config = calibration_sized_to(config, calibration_data, loaded, input_shape=input_shape)
                result = convert(loaded, os.path.join(stage.path, "models", precision), config,
                                 calibration_data=calibration_data if precision == "int8" else None,
                                 preprocess=preprocess, input_shape=input_shape, progress=False)
            if tried.failure and precision == "int8" and precision not in named \
                    and tried.failure.exit_code == DataError.exit_code:
                # Too few (or unreadable) calibration images: int8 was only offered, so leave it out.
                reason = tried.failure.reason.split(". ")[0].rstrip(".")
                notes.append(f"int8 left out: {reason}; tftrt run calibrates int8 on {calibration_data}: "
                             "pass --calibration_data=DIR with 32+ images to try it")
                progress("      int8 skipped: not enough usable calibration images (see the notes)")
                continue
            backend_name = result.backend if not tried.failure else (
                base_config.backend.value if base_config.backend.value != "auto" else env.recommended_backend()[0])
            rows.append(ModelRow(name=f"{backend_name}-{precision}",
                                 path=os.path.join(os.path.basename(target), "models", precision),
                                 backend=backend_name, precision=precision,
                                 precision_coverage=None if tried.failure else
                                 result.metadata["conversion_summary"].get("precision_coverage")))
            if tried.failure:
                _fail(rows[-1], tried.failure, rows, failed, notes, progress)

        runners = {"original": ModelRunner(loaded).load()}
        try:
            for row in list(rows[1:]):
                with attempt("load") as tried:
                    runners[row.name] = ModelRunner(os.path.join(stage.path, "models", row.precision)).load()
                if tried.failure:
                    _fail(row, tried.failure, rows, failed, notes, progress)
            # ---- 3. predict
            progress.advance()
            progress(f"[3/6] predict: {len(rows)} model(s) on {data}")
            predictions = {}
            for row in list(rows):
                if row.name == "original":  # its failure (the data, the model itself) stops the run
                    result = predict(runners[row.name], data, top_k=top_k, preprocess=preprocess,
                                     input_shape=input_shape)
                else:
                    with attempt("predict") as tried:
                        result = predict(runners[row.name], data, top_k=top_k, preprocess=preprocess,
                                         input_shape=input_shape)
                    if tried.failure:
                        _fail(row, tried.failure, rows, failed, notes, progress)
                        continue
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
            for row in list(rows[1:]):
                with attempt("validate") as tried:
                    report = validate(runners["original"], runners[row.name], data=data, top_k=top_k,
                                      labels_csv=labels_csv if names_images(data) else None, preprocess=preprocess,
                                      input_shape=input_shape, progress=False)
                    validations[row.name] = report.to_json()
                    row.top1_agreement, row.topk_agreement = report.top1_agreement, report.topk_agreement
                    row.max_abs_error, row.validation_passed = report.max_abs_error, bool(report)
                    if report.accuracy:
                        row.accuracy = report.accuracy
                        rows[0].accuracy = dict(report.accuracy["original"], labelled_samples=report.accuracy["labelled_samples"])
                        _record_accuracy(os.path.join(stage.path, "models", row.precision), report.accuracy)
                if tried.failure:
                    _fail(row, tried.failure, rows, failed, notes, progress)
                    continue
                if not report:
                    row.note = "validation failed: " + "; ".join(report.failures)
            reject_outside_budget(rows[1:], notes)
            _write(stage.path, "validation.json", validations, files)

            # ---- 5. benchmark
            progress.advance()
            progress(f"[5/6] benchmark: batch sizes {', '.join(map(str, batch_sizes))}, interleaved with the original")
            # One interleaved run for all models: they share the original's measurements, so the
            # speed-ups (and the chart's baseline bars) are comparable across precisions.
            # A model that cannot be timed is found by a single call at each batch size, and left out.
            reports, benchmark_failures = together_then_each(
                [row.name for row in rows[1:]],
                lambda names: benchmark_many({name: runners[name] for name in names}, baseline=runners["original"],
                                             batch_sizes=batch_sizes, duration=duration, data=data,
                                             preprocess=preprocess, input_shape=input_shape, progress=False),
                lambda name: benchmark_many({name: runners[name]}, batch_sizes=batch_sizes, iterations=1, warmup=0,
                                            data=data, preprocess=preprocess, input_shape=input_shape,
                                            progress=False, baseline_at_tf_default=False),
                "benchmark")
            for row in list(rows[1:]):
                if row.name in benchmark_failures:
                    _fail(row, benchmark_failures[row.name], rows, failed, notes, progress)
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
            if benchmarks:
                _serving_threading(runners, rows, min(batch_sizes), duration, data, stage.path, files, notes, progress)
        finally:
            for runner in runners.values():
                runner.close()

        # ---- 6. report
        for row in failed:  # a model that failed after it was saved is not shipped with the report
            shutil.rmtree(os.path.join(stage.path, "models", row.precision), ignore_errors=True)
            row.path = "-"
        rows[1:] = sorted(rows[1:] + failed, key=lambda row: precisions.index(row.precision))
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
    _check_outcome(report, named)
    return report


def _fail(row: ModelRow, failure: Failure, rows: List[ModelRow], failed: List[ModelRow], notes: List[str],
          progress) -> None:
    """Record ``failure`` on ``row`` (the table, report.json, a note, a progress line) and take it out of later steps."""
    row.failure = failure.to_json()
    row.note = failure.describe()
    rows.remove(row)
    failed.append(row)
    notes.append(f"{row.name}: {failure.describe()}; the run went on without it")
    progress(f"      {row.name} {failure.describe()}; the run goes on without it")


def _check_outcome(report: RunReport, named: List[str]) -> None:
    """Raise RunFailed when a precision asked for by name failed, or when no optimized model passed."""
    failed_named = [row for row in report.optimized if row.failure and row.precision in named]
    if failed_named:
        row = failed_named[0]
        raise RunFailed(f"{row.precision} was asked for (--precisions) and {row.note}; "
                        f"the report is in {report.output_dir}/report.md", report, row.failure["exit_code"])
    if not any(row.failure is None and row.validation_passed for row in report.optimized):
        first = next((row for row in report.optimized if row.failure), None)
        what = "; ".join(f"{row.name} {row.note or 'not validated'}" for row in report.optimized) or "none converted"
        raise RunFailed(f"no optimized model passed ({what}); the report is in {report.output_dir}/report.md", report,
                        first.failure["exit_code"] if first else ValidationFailed.exit_code)


def reject_outside_budget(rows: Sequence[ModelRow], notes: List[str]) -> None:
    """Mark each validated int8 row outside the accuracy budget as rejected (with a note); the run goes on.

    The one accuracy rule (``runtime.accuracy_rule.Budget``, tune's too): with labelled images
    the top-1 accuracy drop, without them top-1 agreement with the original, at the defaults.
    """
    for row in rows:
        if row.precision != "int8":
            continue
        budget = Budget.for_data(bool(row.accuracy))
        outside = budget.failure({"top1_agreement": row.top1_agreement,
                                  "top1_drop": (row.accuracy or {}).get("top1_drop")})
        if outside:
            notes.append(f"int8: {outside}; falling back to the other precisions.")
            row.note = "rejected: outside the accuracy budget"
def _serving_threading(runners, rows, batch_size: int, duration: float, data, stage_dir: str, files: Dict[str, str],
                       notes: List[str], progress) -> None:
    """Each model served with one request per core in flight, at TF's threads and at 1 intra-op thread per request.

    Which setting won per model goes to the notes, the measurements to threading.json
    (``runtime.serving_threads``); a failure is a note, the run goes on.
    """
    from tftrt_toolkit.runtime.serving_threads import measure_threading

    progress(f"      threading: each model with requests in flight at batch {batch_size}, TF's threads against "
             "1 intra-op thread per request")
    with attempt("threading") as tried:  # whatever it raises costs the threading notes only, not the report
        measured = measure_threading({row.name: runners[row.name] for row in rows}, batch_size=batch_size,
                                     duration=duration, data=data, baseline="original")
    if tried.failure:
        notes.append(f"threading not measured: {tried.failure.reason}")
        return
    for row in rows:
        notes.append(f"serving threading, {measured[row.name].describe()}")
    default = measured["original"].requests_per_second["tf_threads"]
    best = max(rows[1:], key=lambda row: measured[row.name].best_requests_per_second, default=None)
    if best is not None:
        rate = measured[best.name].best_requests_per_second
        notes.append(f"serving threading: {best.name} at its best threading serves {rate:.1f} requests/s against "
                     f"{default:.1f} for the original at TF's default threads ({rate / default:.2f}x)")
    _write(stage_dir, "threading.json", {name: measurement.to_json() for name, measurement in measured.items()}, files)


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
    """benchmark.json/.csv/.png in the one schema ``tftrt benchmark`` writes, each model under its row's name."""
    from tftrt_toolkit.runtime.benchmark import write_benchmarks

    if not benchmarks:
        return
    reports = {row.name: bench for row, bench in benchmarks}
    try:
        written = write_benchmarks(reports, stage_dir)
    except ConfigError as error:  # matplotlib is an optional extra
        written = write_benchmarks(reports, stage_dir, plot=False)
        notes.append(f"benchmark.png not drawn: {error}")
    files.update({name: name for name in written})
