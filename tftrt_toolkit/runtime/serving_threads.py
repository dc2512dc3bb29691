"""The threading that fits the serving shape: TF's thread pools on each request, or one thread per request.

    measured = measure_threading({"original": original_runner, "cpu-int8": int8_runner}, batch_size=1)
    measured["cpu-int8"].requests_per_second   # {"one_thread_per_request": 410.2, "tf_threads": 251.7}
    choice = serving_choice(measured["cpu-int8"])   # what to serve it with, and the measured reason

A server answers many requests at once, so its number is requests per second with N requests
in flight, not the latency of one. Two ways to run N concurrent requests on N cores:

- ``tf_threads``: the N requests share TF's pools as this process has them (TF's default: an
  intra-op thread per core, so every op of every request is split across all cores);
- ``one_thread_per_request``: intra-op 1, inter-op N, so each request runs on one core. TF's
  executor schedules each costly kernel on the inter-op pool, so N requests in flight need N
  inter-op threads, or they queue behind one another.

At batch 1 TF's oneDNN kernels gain little or even lose from a second intra-op thread
(benchmarks/int8_cpu_notes.md), where one thread per request keeps every core busy with no
hand-off; at large batches the split pays. Which wins is measured, never assumed: both run
with N client threads (``runtime.timing.run_clients``) on the same inputs, TF's threads in
this process and one thread per request in a subprocess (TF fixes its pools once per
process), their blocks alternating so machine drift hits both alike and they never compete
for cores.

The choice is written by ``tune`` into the chosen model's metadata (``chosen_by.serving``),
where ``serving-config`` (TF Serving's flags and batching), ``ModelRunner`` and the Beam
workers read it (``artifacts.serving_threads``).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, Mapping, Optional

from tftrt_toolkit.errors import ConfigError

ONE_THREAD = "one_thread_per_request"
TF_THREADS = "tf_threads"
OBJECTIVES = ("latency", "throughput")
# Seconds of concurrent requests per model and setting, split into blocks that alternate between the processes.
DEFAULT_DURATION_S = 2.0
_BLOCKS = 3
# Starting Python + TensorFlow and loading the models in the one-thread subprocess.
START_TIMEOUT_S = 300.0


def default_objective(batch_size: int) -> str:
    """Throughput at batch 1 (a server's many single requests), latency otherwise."""
    return "throughput" if batch_size == 1 else "latency"


def check_objective(objective: Optional[str], batch_size: int) -> str:
    """``objective`` checked (None: ``default_objective``); ConfigError names the allowed values."""
    if objective is None:
        return default_objective(batch_size)
    if objective not in OBJECTIVES:
        raise ConfigError(f"objective={objective!r} is not valid; use latency (one request at a time) or throughput "
                          "(requests/s with one request per core in flight).")
    return objective


def serving_cores() -> int:
    """How many cores this process may use: the N concurrent requests, and the inter-op threads they need."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclasses.dataclass
class ThreadingMeasurement:
    """One model served with ``concurrency`` requests in flight at ``batch_size``, both ways (see the module docstring)."""

    model: str
    batch_size: int
    concurrency: int
    tf_threads: Dict[str, int]  # this process's pools (0 = TF's choice: a thread per core)
    requests_per_second: Dict[str, float]  # {ONE_THREAD: ..., TF_THREADS: ...}
    latency_p50_ms: Dict[str, float]  # per request, under that concurrency

    @property
    def winner(self) -> str:
        """The setting with more requests/s (TF's threads on a tie: nothing to change)."""
        rates = self.requests_per_second
        return ONE_THREAD if rates[ONE_THREAD] > rates[TF_THREADS] else TF_THREADS

    @property
    def best_requests_per_second(self) -> float:
        return self.requests_per_second[self.winner]

    def threads_of(self, setting: str) -> Dict[str, int]:
        if setting == ONE_THREAD:
            return {"intra_op_threads": 1, "inter_op_threads": self.concurrency}
        return dict(self.tf_threads)

    def describe(self) -> str:
        """One line: both settings' requests/s and which won, e.g. for a report's notes."""
        one, tf = self.requests_per_second[ONE_THREAD], self.requests_per_second[TF_THREADS]
        ratio = one / tf if tf else float("inf")
        winner = "1 thread per request" if self.winner == ONE_THREAD else "TF's threads"
        return (f"{self.model}: {one:.1f} requests/s at 1 intra-op thread per request against {tf:.1f} at TF's threads "
                f"({_threads_text(self.tf_threads)}), {self.concurrency} requests in flight at batch {self.batch_size} "
                f"({ratio:.2f}x): {winner} won")

    def to_json(self) -> dict:
        return dict(dataclasses.asdict(self), winner=self.winner)


def _threads_text(threads: Mapping[str, int]) -> str:
    return " ".join(f"{key.split('_')[0]}={value or 'auto'}" for key, value in threads.items())


def serving_choice(measurement: ThreadingMeasurement, *, objective: str = "throughput",
                   latency_threads: Optional[Mapping[str, Optional[int]]] = None,
                   latency_reason: str = "") -> dict:
    """What to serve a model with, and why, as ``chosen_by.serving`` records it (pure).

    ``throughput``: the setting with more requests/s in ``measurement``; its threads, N request
    threads (TF Serving's ``num_batch_threads``) and batches of ``batch_size``. ``latency``:
    ``latency_threads`` (the latency-timed threads; None values: TF's choice), one request at a time.
    """
    if objective == "latency":
        threads = {key: (latency_threads or {}).get(key) or 0 for key in ("intra_op_threads", "inter_op_threads")}
        return {"objective": "latency", "setting": "latency", "batch_size": measurement.batch_size if measurement else None,
                "concurrency": 1, **threads,
                "reason": latency_reason or "objective latency: the threads the chosen model was fastest at, one request at a time",
                "measured": None if measurement is None else measurement.to_json()}
    setting = measurement.winner
    threads = measurement.threads_of(setting)
    return {"objective": "throughput", "setting": setting, "batch_size": measurement.batch_size,
            "concurrency": measurement.concurrency, **threads,
            "reason": f"objective throughput: {measurement.describe()}", "measured": measurement.to_json()}


def measure_threading(runners: Mapping[str, object], *, batch_size: int, concurrency: Optional[int] = None,
                      duration: float = DEFAULT_DURATION_S, data="synthetic", baseline: Optional[str] = None,
                      start_timeout: float = START_TIMEOUT_S, progress=None) -> Dict[str, ThreadingMeasurement]:
    """Requests/s of each loaded model with ``concurrency`` requests in flight, at TF's threads and at one thread each.

    ``runners``: {name: loaded ModelRunner} in this process (their SavedModels are loaded again
    in the one-thread subprocess); ``baseline``: which of them paces the subprocess (default the
    first). ``concurrency`` defaults to the cores this process may use; ``duration`` is the
    seconds per model and setting. Raises ToolkitError when the subprocess fails.
    """
    from tftrt_toolkit.data import open_source
    from tftrt_toolkit.data.samples import filled_batch
    from tftrt_toolkit.runtime.benchmark import latency_stats
    from tftrt_toolkit.runtime.process_worker import ProcessWorker
    from tftrt_toolkit.runtime.session import current_threads
    from tftrt_toolkit.runtime.timing import run_clients
    from tftrt_toolkit.runtime.timing import prepared_call

    if not runners:
        raise ConfigError("measure_threading needs at least one loaded model.")
    concurrency = concurrency or serving_cores()
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigError(f"concurrency={concurrency!r} is not valid; use a whole number >= 1 (the requests in flight).")
    baseline = baseline or next(iter(runners))
    report = progress or (lambda message: None)
    paths = {name: runner.saved_model_dir for name, runner in runners.items()}
    worker = ProcessWorker({name: path for name, path in paths.items() if name != baseline}, paths[baseline],
                           threads=(1, concurrency), data=data, batch_size=batch_size, warmup=1)
    source = open_source(data, runners[baseline].signature, model_hint=runners[baseline].model_info)
    inputs = filled_batch(source, batch_size)
    seconds = max(0.05, duration / _BLOCKS)
    here: Dict[str, dict] = {name: {"requests": 0, "wall_s": 0.0, "seconds": []} for name in runners}
    report(f"threading: {len(runners)} model(s), {concurrency} requests in flight at batch {batch_size}: TF's threads "
           f"here, 1 intra-op thread per request in a subprocess (intra=1 inter={concurrency})")
    try:
        worker.start(timeout=start_timeout)
        for block in range(_BLOCKS):
            names = list(runners)
            names = names[block % len(names):] + names[:block % len(names)]  # each model leads a block in turn
            for name in names:
                calls = [prepared_call(runners[name], inputs) for _ in range(concurrency)]
                per_client, wall = run_clients(calls, duration=seconds, warmup=1)
                here[name]["requests"] += sum(len(values) for values in per_client)
                here[name]["wall_s"] += wall
                here[name]["seconds"].extend(value for values in per_client for value in values)
            worker.concurrent(seconds, concurrency)
        there = worker.finish()
    finally:
        worker.close()
    tf_threads = current_threads()
    measured = {}
    for name in runners:
        other = there["baseline" if name == baseline else name]["concurrent"]
        measured[name] = ThreadingMeasurement(
            model=name, batch_size=batch_size, concurrency=concurrency, tf_threads=tf_threads,
            requests_per_second={ONE_THREAD: round(other["requests"] / other["wall_s"], 2),
                                 TF_THREADS: round(here[name]["requests"] / here[name]["wall_s"], 2)},
            latency_p50_ms={ONE_THREAD: other["latency_ms"]["p50"],
                            TF_THREADS: latency_stats(here[name]["seconds"])["p50"]})
        report(f"  {measured[name].describe()}")
    return measured


__all__ = ["DEFAULT_DURATION_S", "ONE_THREAD", "OBJECTIVES", "TF_THREADS", "ThreadingMeasurement",
           "check_objective", "default_objective", "measure_threading", "serving_choice", "serving_cores"]
