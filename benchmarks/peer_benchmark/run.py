"""One run of the peer benchmark: build every row, check it against plain TF, time them interleaved, write the files."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import shlex
import shutil
import sys
import tempfile
import time
from typing import Dict, Optional

import numpy as np

from tftrt_toolkit.errors import ConfigError, ToolkitError, first_line

from .builders import build_row
from .building import Context
from .flags import parse_args
from .inputs import CALIBRATION_SAMPLES, batches_of, calibration_batches, photo_inputs
from .measure import BLOCK_S, MAX_CALLS_PER_BLOCK, SETTLE_S, agreement, first_call_ms, interleaved_latencies
from .onednn_worker import OneDNNWorker
from .openvino_rows import OpenVINORunner
from .outputs import write_outputs
from .rows import ONEDNN_SWITCH, OWN_THREADS_ROWS, RUNTIMES, VERSIONED_PACKAGES, Skipped
from .threads import pin_tf_threads, usable_cores


def main(argv=None) -> dict:
    """Run the peer benchmark; writes OUTPUT.json/.md/.png and returns the report (the JSON's content)."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tftrt_toolkit.report.writers import check_writable

    paths = {ext: f"{args.output}.{ext}" for ext in ("json", "md", "png")}
    check_writable([paths["json"], paths["md"]] + ([] if args.noplot else [paths["png"]]),
                   overwrite=args.overwrite, make_dirs=True)

    def log(message: str) -> None:
        print(f"[peers] {message}", file=sys.stderr, flush=True)

    # Before anything starts TF's runtime: its thread pools are fixed at that point.
    tf_threads = pin_tf_threads(args.threads)
    from tftrt_toolkit.data import open_source
    from tftrt_toolkit.environment import probe
    from tftrt_toolkit.models.loader import load_model

    started_at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    env = probe()
    # Absolute: some steps run from a scratch directory inside it (their stray files stay in the work dir).
    work_dir = os.path.abspath(args.work_dir) if args.work_dir else tempfile.mkdtemp(prefix="tftrt-peers-")
    os.makedirs(work_dir, exist_ok=True)
    from models.transformer import saved_model_for  # benchmarks/models/, beside this package

    # transformer:SIZE (benchmarks/models/transformer.py) is built and exported into the work dir first.
    loaded = load_model(saved_model_for(args.model, work_dir),
                        weights=None if args.weights.lower() == "none" else args.weights)
    rows: Dict[str, dict] = {}
    runners = {}
    context = None
    try:
        calibration_inputs = photo_inputs(args.calibration_data, loaded, os.path.join(work_dir, "calibration_photos"),
                                          count=CALIBRATION_SAMPLES, seed=123) or (args.data, args.data)
        agreement_inputs = photo_inputs(args.agreement_data, loaded, os.path.join(work_dir, "agreement_photos"),
                                        count=args.agreement_samples, seed=7)
        context = Context(loaded, args.threads, work_dir, calibration_inputs[0], log,
                          calibration_batches=calibration_batches(calibration_inputs[0], loaded),
                          cpu_has_int8_dot=env.cpu_has_int8_dot, onednn_here=env.onednn_enabled)
        process_settings = {"this process": describe_onednn(env.onednn_enabled, in_worker=False)}

        def worker(threads: int, inter_op_threads=None, *, onednn_on: bool) -> OneDNNWorker:
            # A worker loads this process's SavedModel of the model, never the spec again: keras:NAME
            # with --weights=none would build another random network there (agreement 0%, measured).
            return OneDNNWorker({"model": loaded.saved_model_dir, "weights": "none", "threads": threads,
                                 "inter_op_threads": inter_op_threads, "work_dir": work_dir,
                                 "calibration_data": context.calibration_data}, log, onednn_on=onednn_on)

        if not context.onednn_here and any(RUNTIMES[key].onednn_on for key in args.runtimes):
            process_settings["worker process"] = describe_onednn(True, in_worker=True)
            log(f"TF's oneDNN ops are off in this process: rows that need them run in a worker process "
                f"started with {ONEDNN_SWITCH}=1")
            context.worker = worker(args.threads, onednn_on=True)
            try:
                context.worker.start()
            except (Skipped, ToolkitError) as why:  # its rows are skipped with the reason
                log(f"  the worker did not start: {why}")
                context.worker.close()
                context.worker = None
        def start_threads_worker(intra: int, inter: int):
            started = worker(intra, inter, onednn_on=False)  # this process's oneDNN setting, its own threads
            try:
                return started.start()
            except (Skipped, ToolkitError):
                started.close()
                raise

        context.start_worker = start_threads_worker
        for key in args.runtimes:
            label, family, stays_saved_model, _, onednn_on = RUNTIMES[key]
            row = rows[key] = {"key": key, "label": label, "family": family, "stays_tf_saved_model": stays_saved_model}
            in_worker = bool(onednn_on) and not context.onednn_here
            # The process setting the row runs with; peers have their own kernels, TF's switch is not theirs.
            row["process"] = {"runs_in": "worker process" if in_worker else "this process",
                              "tf_onednn": None if onednn_on is None else process_settings[
                                  "worker process" if in_worker else "this process"]}
            if key in OWN_THREADS_ROWS:
                intra, inter = OWN_THREADS_ROWS[key]
                row["process"] = {"runs_in": f"worker process at intra-op {intra}, inter-op {inter} threads "
                                             "(the threads the conversion records)",
                                  # The worker keeps this process's environment, so its oneDNN setting too.
                                  "tf_onednn": process_settings["this process"],
                                  "tf_threads": {"intra_op_threads": intra, "inter_op_threads": inter}}
            log(f"building {label}")
            start = time.perf_counter()
            try:
                runners[key], facts = build_row(context, key)
            except Skipped as why:
                if key == "tf":
                    raise ConfigError(f"plain TF cannot run {args.model!r}: {why}") from None
                row.update(status="skipped", reason=str(why))
                log(f"  skipped: {why}")
                continue
            except Exception as error:  # a peer's converter raises its own types; the row records it
                if key == "tf":
                    raise
                row.update(status="skipped", reason=f"conversion failed: {type(error).__name__}: {first_line(error)}")
                log(f"  skipped: {row['reason']}")
                continue
            row.update(status="measured", convert_s=round(time.perf_counter() - start, 1), **facts)

        # Same inputs for everyone: agreement samples, then one batch per batch size for timing.
        source = open_source(args.data, loaded.signature, model_hint=loaded.model_info, seed=0)
        agreement_source = source
        if agreement_inputs:
            agreement_source = open_source(agreement_inputs[0], loaded.signature, model_hint=loaded.model_info, seed=1)
            agreement_source.description = agreement_inputs[1]
        agreement_batch = max(args.batch_sizes)
        samples = batches_of(agreement_source, args.agreement_samples, agreement_batch)
        reference = None
        for key in list(runners):
            try:
                outputs = np.concatenate([runners[key].bind(batch)()[0] for batch in samples])
            except Exception as error:  # a runtime failing on the model is a finding, reported in its row
                if key == "tf":
                    raise
                _drop(rows, runners, key, str(error) if isinstance(error, Skipped) else
                      f"first run failed: {type(error).__name__}: {first_line(error)}", log)
                continue
            if key == "tf":
                reference = outputs
            rows[key]["agreement"] = agreement(reference, outputs)
        if reference.ndim >= 2 and reference.shape[-1] > 1:
            # A model that gives most inputs the same class makes top-1 agreement a weak check; say so.
            rows["tf"]["agreement"]["distinct_top1_classes"] = int(len(np.unique(reference.argmax(-1))))
        for key in runners:
            rows[key]["agreement"]["samples"] = len(reference)

        settings = _settings(args, env, tf_threads, source, started_at, agreement_batch, agreement_source,
                             calibration_inputs[1])
        settings.update(
            onednn_default=env.onednn_default,
            # TF's oneDNN switch in each process that ran rows (TF reads it once, at import).
            tf_onednn_by_process=process_settings,
            int8_calibration=(f"{sum(len(next(iter(b.values()))) for b in context.calibration_batches)} samples "
                              f"({len(context.calibration_batches)} batches) for every int8 row, ours and the peers'"))
        for batch_size in args.batch_sizes:
            inputs = batches_of(source, batch_size, batch_size)[0]
            calls = {}
            for key in list(runners):
                try:
                    calls[key] = runners[key].bind(inputs)
                    first_ms = first_call_ms(calls[key])
                except Exception as error:  # as above: the row says what failed
                    if key == "tf":
                        raise
                    calls.pop(key, None)
                    reason = f"batch {batch_size} failed: {type(error).__name__}: {first_line(error)}"
                    _drop(rows, runners, key, reason, log)
                    continue
                rows[key].setdefault("results", []).append(
                    {"batch_size": batch_size, "first_call_ms": round(first_ms, 3)})
            log(f"timing batch size {batch_size}: {', '.join(calls)}")
            latencies = interleaved_latencies(calls, warmup=args.warmup, rounds=args.rounds)
            from tftrt_toolkit.runtime.benchmark import latency_stats

            tf_median = latency_stats(latencies["tf"])["p50"]
            for key, times in latencies.items():
                stats = latency_stats(times)
                rows[key]["results"][-1].update(
                    runs=len(times), latency_ms=stats, throughput=round(batch_size * len(times) / sum(times), 3),
                    speedup_vs_tf=round(tf_median / stats["p50"], 3))
                log(f"  {rows[key]['label']}: {stats['p50']:.2f} ms ({tf_median / stats['p50']:.2f}x)")
        if args.concurrency:
            _measure_in_flight(args, runners, rows, context, loaded, source, settings, log)
        if hasattr(os, "getloadavg"):
            settings["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
        for key, runner in runners.items():
            if isinstance(runner, OpenVINORunner):
                rows[key]["settings_in_force"] = runner.describe_compiled()
    finally:
        for runner in runners.values():
            runner.close()
        if context is not None and context.worker is not None:
            context.worker.close()
        for worker in (context.threads_workers.values() if context is not None else ()):
            worker.close()
        loaded.close()
        if args.work_dir is None:
            shutil.rmtree(work_dir, ignore_errors=True)

    report = {
        "model": args.model,
        "weights": args.weights,
        "signature": loaded.signature.to_json(),
        "command": "python benchmarks/peers.py " + " ".join(
            shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)),
        "settings": settings,
        "versions": package_versions(),
        "rows": list(rows.values()),
    }
    return write_outputs(report, paths, overwrite=args.overwrite, plot=not args.noplot, log=log)


def _measure_in_flight(args, runners, rows, context, loaded, source, settings, log) -> None:
    """--concurrency: every row's requests/s at batch 1 with N requests in flight (peer_benchmark/concurrency.py)."""
    from .concurrency import BLOCKS, measure_concurrency

    inputs = batches_of(source, 1, 1)[0]
    saved_models = {}
    for key in runners:
        if RUNTIMES[key].stays_tf_saved_model:
            path = loaded.saved_model_dir if key in ("tf", "tf_onednn") else os.path.join(context.work_dir, key)
            needs_onednn = bool(RUNTIMES[key].onednn_on) and not context.onednn_here
            saved_models[key] = (path, "on" if needs_onednn else "inherit")
    seconds = args.seconds or args.rounds * BLOCK_S
    log(f"requests in flight: {args.concurrency} at batch 1, ~{seconds:g} s per row and setting, {BLOCKS} blocks each")
    found = measure_concurrency(runners, saved_models, inputs, clients=args.concurrency, threads=args.threads,
                                seconds=seconds, data=args.data, log=log)
    for key, result in found.items():
        rows[key]["concurrent"] = result
    settings["concurrency"] = {
        "clients": args.concurrency, "batch_size": 1, "seconds_per_row_and_setting": seconds,
        "how": f"{args.concurrency} client threads send requests back to back (runtime.timing.run_clients), "
               f"{BLOCKS} interleaved blocks per row; requests/s = timed requests / wall time"}


def describe_onednn(enabled: bool, *, in_worker: bool) -> str:
    """How TF's oneDNN ops were set in a process, in words: on/off and who decided."""
    if in_worker:
        return f"on ({ONEDNN_SWITCH}=1, worker process)"
    value = os.environ.get(ONEDNN_SWITCH)
    state = "on" if enabled else "off"
    return f"{state} (TF's default on this CPU)" if value is None else f"{state} ({ONEDNN_SWITCH}={value})"


def _drop(rows, runners, key, reason, log) -> None:
    rows[key].update(status="skipped", reason=reason)
    rows[key].pop("results", None)
    runners.pop(key).close()
    log(f"  {rows[key]['label']} dropped: {reason}")


def _settings(args, env, tf_threads, source, started_at, agreement_batch, agreement_source,
              calibration_description: str) -> dict:
    return {
        "batch_sizes": args.batch_sizes,
        "threads": args.threads,
        "tf_threads_in_force": tf_threads,
        "warmup_calls": args.warmup,
        "rounds": args.rounds,
        "seconds_per_runtime_and_batch": args.seconds,
        "interleaved": f"{args.rounds} rounds; each gives every runtime in turn (first one rotating) a block: "
                       f"{SETTLE_S * 1000:g} ms pause, 1 untimed call, then ~{BLOCK_S:g} s of timed calls "
                       f"(1..{MAX_CALLS_PER_BLOCK})",
        "timed_region": "one inference + every output copied to a host numpy array; inputs placed before the clock; "
                        "first call and warm-up excluded",
        "speedup": "plain TF median latency / runtime median latency, same batch size",
        "data": source.description,
        "agreement": f"first output vs plain TF on {args.agreement_samples}+ samples in batches of {agreement_batch}",
        "agreement_data": agreement_source.description,
        "int8_calibration_data": calibration_description,
        "cpu_model": env.cpu_model,
        "cpu_count": env.cpu_count,
        "usable_cores": usable_cores(),
        "cpu_features": list(env.cpu_features),
        "onednn_enabled": env.onednn_enabled,
        "platform": env.platform,
        "started_at": started_at,
        # Other processes share the cores: the 1-minute load average when timing began.
        "load_average_1min_at_start": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }


def package_versions() -> Dict[str, Optional[str]]:
    versions = {}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions
