"""The tune job: convert every candidate, validate, benchmark them in one interleaved run, write the winner.

See the package docstring (``tftrt_toolkit.jobs.tune``) for what is tried, how it is judged and what is written.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from typing import Dict, Iterable, List, Optional, Union

from tftrt_toolkit import artifacts
from tftrt_toolkit.config import ConversionConfig
from tftrt_toolkit.data.sources import names_images
from tftrt_toolkit.errors import ConfigError
from tftrt_toolkit.jobs.attempts import Failure, attempt, together_then_each
from tftrt_toolkit.jobs.tune.candidates import Candidate, Threads, default_candidates
from tftrt_toolkit.jobs.tune.choice import FAILED, MEASURED, ORIGINAL, SKIPPED, TABLE_COLUMNS, choose, mark_pareto
from tftrt_toolkit.runtime.accuracy_rule import EPSILON, Budget, value_text
from tftrt_toolkit.jobs.tune.result import NoCandidateInBudget, TuneResult
from tftrt_toolkit.jobs.tune.throughput_choice import choose_by_throughput
from tftrt_toolkit.runtime.serving_threads import check_objective
from tftrt_toolkit.runtime.process_worker import ProcessWorker
from tftrt_toolkit.progress import ProgressOption, reports_progress

DEFAULT_TIME_BUDGET_S = 600.0
# Seconds of timed runs per candidate in the benchmark (interleaved, so a run with N candidates takes ~(N+1)x).
DEFAULT_DURATION_S = 3.0
REPORT_SUFFIX = ".tune"
# Starting Python + TensorFlow and loading the models in a thread subprocess, before its timed runs.
_SUBPROCESS_START_S = 20.0

@reports_progress("tune")
def tune(model, data, output: str, *, labels_csv: Optional[str] = None, max_top1_drop: Optional[float] = None,
         min_top1_agreement: Optional[float] = None, batch_size: int = 8,
         time_budget: float = DEFAULT_TIME_BUDGET_S, candidates: Optional[Iterable[Union[Candidate, str]]] = None,
         progress: ProgressOption = True, duration: float = DEFAULT_DURATION_S, report_dir: Optional[str] = None,
         calibration_data=None, overwrite: bool = False, weights: Optional[str] = "imagenet",
         signature_key: Optional[str] = None, unsafe_deserialization: bool = False, custom_objects=None,
         strict_data: bool = False, preprocess: str = "auto", input_shape=None,
         objective: Optional[str] = None) -> TuneResult:
    """Find the fastest conversion of ``model`` inside an accuracy budget; write it to ``output``.

    Args:
      model: any model spec ``load_model`` takes, or a ``LoadedModel``; a classifier
        (one [batch, classes] output), since the budget is about top-1.
      data: what to validate and benchmark on (image dir, .npy/.npz, "synthetic:N").
      labels_csv: image,class_id ground truth; makes the budget an accuracy drop. A ``data``
        folder whose image names carry ImageNet WordNet ids is labelled without it.
      max_top1_drop / min_top1_agreement: the budget, at most one (default: a drop of
        0.005 with labels, else agreement >= 0.99). A drop needs labels.
      batch_size: the batch size latency and throughput are measured at.
      time_budget: seconds for the whole search (remaining candidates are skipped, with a note).
      candidates: Candidates or "backend-precision" strings instead of ``default_candidates``.
      duration: seconds of timed runs per candidate (shortened to fit ``time_budget``).
      report_dir: where tune.json/csv/png go (default ``OUTPUT.tune`` beside ``output``).
      calibration_data: int8 calibration data (default ``data``).
      weights, signature_key, unsafe_deserialization, custom_objects: how to load ``model``
        (``load_model``'s options).
      strict_data: refuse (DataError) image folders with files that are not used, before any
        conversion, instead of leaving them out with a note.
      preprocess, input_shape: how images become the model's inputs (as for ``open_source``),
        for validation, timing and int8 calibration alike; the chosen model records the mode.
      objective: "latency" (the lowest p50, one request at a time) or "throughput" (the most
        requests/s with one request per core in flight, each conversion served at TF's threads
        and at one intra-op thread per request, the better kept); default throughput at
        batch_size 1, latency otherwise. The chosen threading and its measured reason go to
        ``result.serving`` and the model's ``chosen_by.serving`` (serving-config reads it).
      progress: a bar in a terminal or notebook (False: none); each step's message is logged at
        INFO either way (the CLI shows them).

    Returns a TuneResult. Raises NoCandidateInBudget (a ValidationFailed; ``.result`` has the
    table, whose files are written) when nothing qualifies; ConfigError, OutputError,
    ModelLoadError, DataError before any conversion for unusable options, outputs, models or data.
    """
    from tftrt_toolkit.environment import probe
    from tftrt_toolkit.models.loader import LoadedModel, load_model
    from tftrt_toolkit.runtime.predict import classifier_output
    from tftrt_toolkit.runtime.session import ModelRunner
    from tftrt_toolkit.data.labels import open_labels

    started = time.monotonic()
    if labels_csv and not names_images(data):
        raise ConfigError("labels_csv needs image data (e.g. --data=saved_models/samples); "
                          f"{data!r} has no file names to look labels up by.")
    # A bad CSV or a misnamed image is refused before any work; a WordNet-named folder is labelled too.
    labels = open_labels(data, labels_csv) if names_images(data) else None
    # The one accuracy rule (runtime.accuracy_rule): given, or the default for labelled/unlabelled data.
    budget = Budget.for_data(labels is not None, max_top1_drop=max_top1_drop, min_top1_agreement=min_top1_agreement)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r} is not valid; use a whole number >= 1.")
    objective = check_objective(objective, batch_size)
    for name, value in (("time_budget", time_budget), ("duration", duration)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ConfigError(f"{name}={value!r} is not valid; give seconds > 0.")
    env = probe()
    candidate_list = list(default_candidates(env, batch_size) if candidates is None else
                          (c if isinstance(c, Candidate) else Candidate.parse(c, env) for c in candidates))
    if not candidate_list:
        raise ConfigError("no candidates to try; give at least one (e.g. cpu-fp32).")
    names = [c.name for c in candidate_list]
    if len(set(names)) != len(names):
        raise ConfigError(f"candidates repeat a name ({', '.join(sorted({n for n in names if names.count(n) > 1}))}); list each once.")

    target = artifacts.resolve_output(output)
    report_target = artifacts.resolve_output(report_dir) if report_dir else target + REPORT_SUFFIX
    model_text = getattr(getattr(model, "spec", None), "text", None) or str(model)
    input_paths = [str(model)] if isinstance(model, (str, os.PathLike)) and os.path.exists(model) else []
    artifacts.check_output(target, input_paths, overwrite)
    artifacts.check_output(report_target, input_paths + [target], overwrite)
    calibration_data = data if calibration_data is None else calibration_data
    data_options = {"preprocess": preprocess, "input_shape": input_shape}  # how images become inputs, everywhere

    def over_time(needed: float) -> bool:
        return time.monotonic() - started + needed > time_budget

    owns_model = not isinstance(model, LoadedModel)
    loaded = load_model(model, weights=weights, signature_key=signature_key,
                        unsafe_deserialization=unsafe_deserialization,
                        custom_objects=custom_objects) if owns_model else model
    runners: Dict[object, ModelRunner] = {}  # "original", then one per converted ConversionConfig
    notes: List[str] = []
    try:
        if strict_data:  # every file checked now, not after the conversions
            from tftrt_toolkit.data import refuse_skipped_files

            refuse_skipped_files([data, calibration_data], loaded.signature, model_hint=loaded.model_info,
                                 input_shape=input_shape)
        if classifier_output(loaded.signature) is None:
            raise ConfigError("tune's budget is about top-1 answers, so it needs a classifier (one output of "
                              f"shape [batch, classes]); this model returns {', '.join(loaded.signature.output_names)}.")
        if candidates is None:  # a sequence model also tries token branches (the signature says so)
            candidate_list = default_candidates(env, batch_size, loaded.signature)
        progress(f"tune: {len(candidate_list)} candidates at batch size {batch_size}, budget {budget.describe()}, "
                 f"objective {objective}, time budget {time_budget:g} s")
        original = ModelRunner(loaded, name="original").load()
        runners["original"] = original
        original_row = _row("original", backend="-", precision=(loaded.toolkit_metadata or {}).get("precision", "fp32"),
                            status=ORIGINAL, top1_agreement=1.0, top1_drop=0.0)
        table = [original_row]
        rows = {c.name: _candidate_row(c) for c in candidate_list}
        table += list(rows.values())

        with artifacts.staged_output(report_target, overwrite=overwrite) as report_stage, \
                artifacts.staged_output(target, overwrite=overwrite) as model_stage:
            work = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.tune-work-", dir=os.path.dirname(target))
            try:
                conversions = _convert_and_validate(candidate_list, rows, loaded, original, original_row, runners, work,
                                                    env=env, data=data, labels_csv=labels_csv, budget=budget,
                                                    batch_size=batch_size, calibration_data=calibration_data,
                                                    duration=duration, over_time=over_time, progress=progress,
                                                    data_options=data_options)
                benchmarks = _benchmark(candidate_list, rows, original_row, runners, conversions, loaded, data=data,
                           batch_size=batch_size, duration=duration, time_left=lambda: time_budget - (time.monotonic() - started),
                           notes=notes, progress=progress, data_options=data_options)
                measured = {}
                if objective == "throughput":
                    measured = _measure_threading(candidate_list, rows, original_row, runners, conversions, data=data,
                                                  batch_size=batch_size, duration=duration, budget=budget,
                                                  time_left=lambda: time_budget - (time.monotonic() - started),
                                                  notes=notes, progress=progress)
                for runner in runners.values():
                    runner.close()
                runners.clear()

                mark_pareto(table, budget)
                chosen, reason = choose_by_throughput(table, budget) if measured else (None, "")
                if chosen is None:
                    chosen, reason = choose(table, **budget.as_kwargs())
                progress(("chosen: " if chosen else "nothing chosen: ") + reason)
                serving = _serving(chosen, reason, measured, objective) if chosen is not None else None
                if serving is not None:
                    progress(f"serve it with: {serving['reason']}")
                result = TuneResult(output=target if chosen else None, report_dir=report_target, table=table,
                                    chosen=chosen, reason=reason, budget=budget, batch_size=batch_size,
                                    model=model_text, data=str(data), files={}, seconds=0.0, notes=notes,
                                    objective=objective, serving=serving)
                if chosen is not None:
                    config_of = {c.name: c.config for c in candidate_list}
                    _write_chosen(chosen, conversions[config_of[chosen["candidate"]]], model_stage.path, result,
                                  time_budget)
                    model_stage.commit()
                result.seconds = time.monotonic() - started
                if benchmarks:  # the interleaved run, in the schema tftrt benchmark and run write
                    from tftrt_toolkit.runtime.benchmark import write_benchmarks

                    result.files.update({name: name for name in write_benchmarks(benchmarks, report_stage.path,
                                                                                 plot=False)})
                _write_report(result, report_stage.path, time_budget)
                report_stage.commit()
            finally:
                shutil.rmtree(work, ignore_errors=True)
    finally:
        for runner in runners.values():
            runner.close()
        if owns_model:
            loaded.close()
    progress(f"tune: report in {report_target} ({result.seconds:.0f} s)")
    if chosen is None:
        raise NoCandidateInBudget(f"{reason}. Table: {os.path.join(report_target, 'tune.csv')}", result)
    return result


def _row(candidate: str, **values) -> dict:
    row = {column: None for column in TABLE_COLUMNS}
    row.update(candidate=candidate, settings="", reason="", measured_in="", pareto=False)
    row.update(values)
    return row


def _candidate_row(candidate: Candidate) -> dict:
    threads = candidate.threads
    return _row(candidate.name, backend=candidate.config.backend.value, precision=candidate.config.precision.value,
                settings=candidate.settings, status=SKIPPED,
                intra_op_threads=None if threads is None else threads[0],
                inter_op_threads=None if threads is None else threads[1])


def _convert_and_validate(candidate_list, rows, loaded, original, original_row, runners, work, *, env, data,
                          labels_csv, budget, batch_size, calibration_data, duration, over_time, progress, data_options):
    """Convert each distinct config once, validate it; fill the rows. Returns {config: converted path}.

    ``runners`` gains a loaded ModelRunner per converted config (keyed by the config), reused by the benchmark.
    """
    from tftrt_toolkit.pipeline import calibration_sized_to, convert
    from tftrt_toolkit.runtime.session import ModelRunner
    from tftrt_toolkit.runtime.validate import validate

    configs: List[ConversionConfig] = []
    for candidate in candidate_list:
        if candidate.config not in configs:
            configs.append(candidate.config)
    conversions: Dict[ConversionConfig, str] = {}
    slowest_step = 0.0
    for number, config in enumerate(configs, start=1):
        mine = [rows[c.name] for c in candidate_list if c.config == config]
        label = mine[0]["candidate"]
        # Leave time to time every conversion so far, this one and the original.
        if over_time(slowest_step + duration * (len(conversions) + 2)):
            for row in mine:
                row.update(status=SKIPPED, reason="time budget: not reached")
            progress(f"[{number}/{len(configs)}] {label}: skipped (time budget)")
            continue
        key = config
        step_started = time.monotonic()
        path = os.path.join(work, f"{number:02d}-{config.backend.value}-{config.precision.value}")
        # Whatever one candidate raises (a ToolkitError or a bug) fails its row only; the search goes on.
        with attempt("convert") as tried:
            if config.needs_calibration:
                config = calibration_sized_to(config, calibration_data, loaded, input_shape=data_options["input_shape"])
            convert(loaded, path, config, calibration_data=calibration_data if config.needs_calibration else None,
                    env=env, progress=False, **data_options)
            convert_s = time.monotonic() - step_started
            tried.step = "load"
            runner = ModelRunner(path, name=label).load()
            runners[key] = runner
            tried.step = "validate"
            report = validate(original, runner, data=data, labels_csv=labels_csv, batch_size=batch_size, progress=False,
                              **data_options)
        if tried.failure:
            for row in mine:
                row.update(status=FAILED, reason=tried.failure.reason)
            progress(f"[{number}/{len(configs)}] {label}: {tried.failure.describe()}")
            slowest_step = max(slowest_step, time.monotonic() - step_started)
            continue
        slowest_step = max(slowest_step, time.monotonic() - step_started)
        values = {"top1_agreement": report.top1_agreement, "convert_s": round(convert_s, 1)}
        if report.accuracy:
            accuracy = report.accuracy
            original_row.update(accuracy=accuracy["original"]["top1"], labelled_images=accuracy["labelled_samples"])
            low, high = accuracy["top1_drop_interval"]
            values.update(accuracy=accuracy["optimized"]["top1"], top1_drop=accuracy["top1_drop"],
                          top1_drop_low=low, top1_drop_high=high, labelled_images=accuracy["labelled_samples"])
        non_finite = sum(stats.get("non_finite", 0) for stats in report.outputs.values())
        for row in mine:
            row.update(values)
            if non_finite:
                row.update(status=FAILED, reason=f"{non_finite} NaN/inf output value(s)")
            else:
                conversions[key] = path
                shortfall = budget.shortfall(row)
                row["within_budget"] = shortfall is not None and shortfall <= EPSILON
                row.update(status=SKIPPED, reason="converted, not timed yet")
        verdict = "inside" if mine[0].get("within_budget") else "OUTSIDE"
        samples = f"{report.samples} samples" + (f", {report.accuracy['labelled_samples']} labelled" if report.accuracy else "")
        progress(f"[{number}/{len(configs)}] {label}: converted in {convert_s:.1f} s; {value_text(budget, mine[0])} "
                 f"on {samples} ({verdict} the budget)")
    return conversions


def _benchmark(candidate_list, rows, original_row, runners, conversions, loaded, *, data, batch_size, duration,
               time_left, notes, progress, data_options):
    """Time the conversions in ONE interleaved run: this process's rounds alternate with each thread worker's.

    Returns {candidate: BenchmarkReport} of the candidates timed in this process (for benchmark.json).
    """
    from tftrt_toolkit.runtime.benchmark import benchmark_many
    from tftrt_toolkit.runtime.session import current_threads

    main = [c for c in candidate_list if c.threads is None and c.config in conversions]
    by_threads: Dict[Threads, List[Candidate]] = {}
    for candidate in candidate_list:
        row = rows[candidate.name]
        if candidate.threads is None or candidate.config not in conversions:
            continue
        if not row["within_budget"]:
            row.update(status=SKIPPED, reason="outside the accuracy budget; other threads not timed")
            progress(f"  {candidate.name}: skipped (its conversion is outside the accuracy budget)")
            continue
        by_threads.setdefault(candidate.threads, []).append(candidate)
    if not main and not by_threads:
        return {}

    workers: Dict[Threads, ProcessWorker] = {}
    try:
        for threads, group in by_threads.items():
            setting = f"intra={threads[0]} inter={threads[1]}"
            if time_left() < _SUBPROCESS_START_S + duration * (len(main) + len(group) + 2):
                for candidate in group:
                    rows[candidate.name].update(status=SKIPPED, reason="time budget: thread setting not timed")
                progress(f"threads {setting}: skipped (time budget)")
                continue
            progress(f"threads {setting}: loading {len(group)} candidate(s) + the original in a subprocess "
                     "(TF sets threads once per process)")
            worker = ProcessWorker({c.name: conversions[c.config] for c in group}, loaded.saved_model_dir,
                                  threads=threads, data=data, batch_size=batch_size, **data_options)
            with attempt("benchmark") as tried:
                worker.start(timeout=max(1.0, time_left()))
            if tried.failure:
                worker.close()
                _fail(group, rows, tried.failure, progress)
                continue
            workers[threads] = worker

        def between_rounds(_batch_size: int) -> None:
            for threads, worker in list(workers.items()):
                with attempt("benchmark") as tried:
                    worker.round()
                if tried.failure:  # this setting is lost; the others go on
                    worker.close()
                    del workers[threads]
                    _fail(by_threads[threads], rows, tried.failure, progress)

        # Each model (and each original) gets about ``seconds`` of timed runs; every round runs all of them.
        in_process = len(main) + 1
        everyone = in_process + sum(len(by_threads[t]) + 1 for t in workers)
        seconds = max(0.05, min(duration, 0.8 * time_left() / everyone))
        if seconds < duration:
            notes.append(f"timed runs shortened to {seconds:.2f} s per model to fit the time budget")
        threads_text = ", ".join(f"{key.split('_')[0]}={value or 'auto'}" for key, value in current_threads().items())
        progress(f"benchmark: {len(main) + sum(len(by_threads[t]) for t in workers)} candidate(s) + the original at "
                 f"batch {batch_size}, ~{seconds:.1f} s each, in one interleaved run"
                 + (f" across {len(workers) + 1} processes" if workers else ""))
        # With no candidate at TF's threads, the original alone paces the rounds.
        models = {c.name: runners[c.config] for c in main} or {"original": runners["original"]}
        # A candidate that cannot be timed is found with one call of each alone, and the others timed together.
        reports, failures = together_then_each(
            list(models),
            lambda names: benchmark_many({name: models[name] for name in names},
                                         baseline=runners["original"] if main else None, batch_sizes=(batch_size,),
                                         duration=seconds * everyone / in_process, data=data, progress=False,
                                         **data_options, between_rounds=between_rounds if workers else None,
                                         # tune ranks candidates against each other, all at this process's oneDNN setting.
                                         baseline_at_tf_default=False),
            lambda name: benchmark_many({name: models[name]}, batch_sizes=(batch_size,), iterations=1, warmup=0,
                                        data=data, progress=False, baseline_at_tf_default=False, **data_options),
            "benchmark")
        for candidate in main:
            if candidate.name in failures:
                _fail([candidate], rows, failures[candidate.name], progress)
        where = f"this process (threads {threads_text}), interleaved with the original"
        for candidate in main:
            if candidate.name in failures:
                continue
            report = reports[candidate.name]
            measurement = report.result("optimized", batch_size)
            _fill_timing(rows[candidate.name], measurement.latency_ms["p50"], measurement.throughput,
                         report.speedup(batch_size)["p50_speedup"], where)
            progress(f"  {_timing_text(rows[candidate.name])}")
        if reports:
            first = next(iter(reports.values()))
            baseline = first.result("baseline" if main else "optimized", batch_size)
            _fill_timing(original_row, baseline.latency_ms["p50"], baseline.throughput, 1.0,
                         f"this process (threads {threads_text})")
        original_row["status"] = ORIGINAL
        timed_here = {c.name: reports[c.name] for c in main if c.name not in failures}

        for threads, worker in workers.items():
            with attempt("benchmark") as tried:
                measured = worker.finish()
            if tried.failure:
                _fail(by_threads[threads], rows, tried.failure, progress)
                continue
            where = (f"subprocess at intra={threads[0]} inter={threads[1]}, its rounds interleaved with this "
                     "process's; speed-up vs the original at those threads")
            for candidate in by_threads[threads]:
                timing = measured[candidate.name]
                _fill_timing(rows[candidate.name], timing["p50_ms"], timing["throughput"], timing["speedup"], where)
                progress(f"  {_timing_text(rows[candidate.name])}")
    finally:
        for worker in workers.values():
            worker.close()
    return timed_here


def _measure_threading(candidate_list, rows, original_row, runners, conversions, *, data, batch_size, duration, budget,
                       time_left, notes, progress) -> Dict[object, object]:
    """Objective throughput: each conversion inside the budget (and the original) with N requests in flight.

    Fills the THROUGHPUT_COLUMNS of the original's row and of each conversion's first row; returns
    {that row's candidate name: ThreadingMeasurement} ({} when nothing could be measured, with a note).
    """
    from tftrt_toolkit.runtime.serving_threads import ONE_THREAD, TF_THREADS, measure_threading, serving_cores

    first_rows = {}
    for candidate in candidate_list:
        row = rows[candidate.name]
        if (candidate.config in conversions and candidate.config in runners and candidate.config not in first_rows
                and row["status"] == MEASURED and row.get("within_budget")):
            first_rows[candidate.config] = row
    if not first_rows:
        notes.append("objective throughput: no conversion inside the budget was timed; chosen by latency")
        return {}
    cores = serving_cores()
    seconds = max(0.1, min(duration, 0.5 * (time_left() - _SUBPROCESS_START_S) / (2 * (len(first_rows) + 1))))
    if time_left() < _SUBPROCESS_START_S + 2 * seconds * (len(first_rows) + 1):
        notes.append("objective throughput: no time left to measure requests in flight (time budget); chosen by latency")
        progress("threading: skipped (time budget)")
        return {}
    models = {"original": runners["original"], **{config: runners[config] for config in first_rows}}
    names = {key: (key if key == "original" else first_rows[key]["candidate"]) for key in models}
    with attempt("threading") as tried:  # any failure here costs the objective only: tune chooses by latency
        measured = measure_threading({names[key]: runner for key, runner in models.items()}, batch_size=batch_size,
                                     concurrency=cores, duration=seconds, data=data, baseline="original",
                                     start_timeout=max(1.0, time_left()), progress=progress)
    if tried.failure:
        notes.append(f"objective throughput: requests in flight not measured ({tried.failure.reason}); chosen by latency")
        progress(f"threading: failed: {tried.failure.reason}")
        return {}
    by_key = {}
    for key in models:
        measurement = measured[names[key]]
        row = original_row if key == "original" else first_rows[key]
        row.update(concurrency=measurement.concurrency,
                   requests_per_s_one_thread=measurement.requests_per_second[ONE_THREAD],
                   requests_per_s_tf_threads=measurement.requests_per_second[TF_THREADS])
        by_key[row["candidate"]] = measurement
    return by_key


def _serving(chosen: dict, reason: str, measured: Dict[str, object], objective: str) -> dict:
    """What the chosen model is served with (``chosen_by.serving``): threads, requests in flight, batch, and why."""
    from tftrt_toolkit.runtime.serving_threads import serving_choice

    measurement = measured.get(chosen["candidate"])
    if objective == "throughput" and measurement is not None:
        return serving_choice(measurement, objective="throughput")
    threads = {"intra_op_threads": chosen.get("intra_op_threads"), "inter_op_threads": chosen.get("inter_op_threads")}
    return serving_choice(measurement, objective="latency", latency_threads=threads, latency_reason=(
        f"objective {objective}: the chosen model's threads, one request at a time ({reason})"))


def _fail(candidates, rows, failure: Failure, progress) -> None:
    for candidate in candidates:
        rows[candidate.name].update(status=FAILED, reason=failure.reason)
        progress(f"  {candidate.name}: {failure.describe()}")


def _fill_timing(row: dict, p50_ms: float, throughput: float, speedup: float, where: str) -> None:
    row.update(status=MEASURED, reason="", p50_ms=round(p50_ms, 3), throughput=round(throughput, 2),
               speedup=round(speedup, 3), measured_in=where)


def _timing_text(row: dict) -> str:
    speedup = f", {row['speedup']:.2f}x the original" if row.get("speedup") else ""
    return f"{row['candidate']}: p50 {row['p50_ms']:.2f} ms, {row['throughput']:.1f} samples/s{speedup}"


def _public(row: dict) -> dict:
    return {column: row.get(column) for column in TABLE_COLUMNS}


def _write_chosen(chosen: dict, path: str, stage_path: str, result: TuneResult, time_budget: float) -> None:
    """Move the chosen conversion into the staged output and record why it was chosen in its metadata."""
    os.rename(path, stage_path)  # same directory, so a rename; stage_path is an empty directory
    metadata = artifacts.read_metadata(stage_path) or {}
    threads = None
    if chosen.get("intra_op_threads") is not None:
        threads = {"intra_op_threads": chosen["intra_op_threads"], "inter_op_threads": chosen["inter_op_threads"]}
    serving = result.serving or {}
    if serving.get("objective") == "throughput":
        threads = {"intra_op_threads": serving["intra_op_threads"], "inter_op_threads": serving["inter_op_threads"]}
    metadata["chosen_by"] = {
        "tool": "tune",
        "candidate": chosen["candidate"],
        "budget": result.budget.to_json(),
        "batch_size": result.batch_size,
        "time_budget_s": time_budget,
        "reason": result.reason,
        # A serving setting, not part of the graph: set these TF thread pools where the model runs.
        "threads": threads,
        # How to serve it, and the measured reason: read by serving-config, ModelRunner and batch-predict's workers.
        "serving": result.serving,
        "data": result.data,
        "table": [_public(row) for row in result.table],
    }
    artifacts.write_metadata(stage_path, metadata)


def _write_report(result: TuneResult, stage_path: str, time_budget: float) -> None:
    from tftrt_toolkit.report.writers import write_csv, write_json

    result.files = {"tune.json": "tune.json", "tune.csv": "tune.csv", **result.files}
    try:
        from tftrt_toolkit.report.tune_plot import plot_tune

        plot_tune(result, os.path.join(stage_path, "tune.png"))
        result.files["tune.png"] = "tune.png"
    except ConfigError as error:  # matplotlib is an optional extra
        result.notes.append(f"tune.png not drawn: {error}")
    data = result.to_json()
    data["time_budget_s"] = time_budget
    write_json(os.path.join(stage_path, "tune.json"), data)
    write_csv(os.path.join(stage_path, "tune.csv"), [_public(row) for row in result.table], TABLE_COLUMNS)
