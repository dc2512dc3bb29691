"""The one timing loop: how the toolkit, tune and the benchmark scripts time a model.

    call = prepared_call(runner, inputs)               # inputs become tensors here, off the clock
    latencies = time_calls(call, count=50, warmup=5)   # seconds per timed call
    rounds = time_rounds({"original": a, "bf16": b}, duration=3.0)   # interleaved: {name: seconds}
    per_client, wall = run_clients([call, call], duration=3.0)         # concurrent clients, one thread each

What is on the clock: one call, then every output copied to host memory (``.numpy()`` on
each tensor), so the work is finished when the clock stops; TF's dispatch is asynchronous
for GPU tensors, and a runtime that returned device handles would look faster than it is.
What is not: turning inputs into tensors (``prepared_call`` does it before), warm-up calls,
pauses, progress, and whatever a caller does between rounds.

A call that lives in another process (e.g. a model timed at another thread setting) brings
its own ``time_calls(count, warmup)`` that runs this same loop there: the pipe between the
processes is never on the clock.

Imports no TensorFlow: any zero-argument callable can be timed (ONNX Runtime, OpenVINO, TFLite).
"""

from __future__ import annotations

import numbers
import threading
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from tftrt_toolkit.errors import ConfigError

Call = Callable[[], Any]
# Percentiles need a few runs to mean anything, whatever the duration.
MIN_ROUNDS = 5


def to_host(outputs: Any) -> Any:
    """``outputs`` with every tensor copied to a numpy array (dicts, lists and tuples kept); numpy arrays as they are."""
    if hasattr(outputs, "numpy"):
        return outputs.numpy()
    if isinstance(outputs, Mapping):
        return {key: to_host(value) for key, value in outputs.items()}
    if isinstance(outputs, (list, tuple)):
        return type(outputs)(to_host(value) for value in outputs)
    return outputs


def prepared_call(model, inputs: Optional[Mapping[str, Any]] = None) -> Call:
    """One run of ``model`` as a zero-argument call, its inputs prepared now so the clock never sees them.

    ``model`` is a ``ModelRunner`` (inputs: {input name: array}, turned into tensors here) or any
    callable, called as ``model(**inputs)`` (or ``model()`` without inputs). The call returns the
    outputs in host memory.
    """
    if hasattr(model, "prepare") and hasattr(model, "run_prepared"):
        tensors = model.prepare(inputs or {})
        return lambda: model.run_prepared(tensors)  # run_prepared ends with .numpy() on every output
    if not callable(model):
        raise ConfigError(f"cannot time {model!r}: give a ModelRunner or a callable.")
    if inputs is None:
        return lambda: to_host(model())
    arguments = dict(inputs)
    return lambda: to_host(model(**arguments))


def time_calls(call: Call, *, count: Optional[int] = None, duration: Optional[float] = None, warmup: int = 0,
               min_count: int = 1) -> List[float]:
    """Seconds of each timed call of ``call``, back to back, after ``warmup`` untimed calls.

    ``count`` calls, or calls until ``duration`` seconds have passed (at least ``min_count``).
    Outputs are copied to host memory inside the clock. A call with its own ``time_calls``
    method (one that runs in another process) is asked to time itself there.
    """
    _check_amount(count, duration)
    if hasattr(call, "time_calls"):
        return call.time_calls(count=count, duration=duration, warmup=warmup, min_count=min_count)
    for _ in range(warmup):
        to_host(call())
    latencies: List[float] = []
    started = time.perf_counter()
    while True:
        start = time.perf_counter()
        to_host(call())
        end = time.perf_counter()
        latencies.append(end - start)
        if count is not None:
            if len(latencies) >= count:
                return latencies
        elif end - started >= duration and len(latencies) >= min_count:
            return latencies


def time_rounds(calls: Mapping[str, Call], *, rounds: Optional[int] = None, duration: Optional[float] = None,
                min_rounds: int = MIN_ROUNDS, calls_per_turn: Union[int, Mapping[str, int]] = 1, warmup_per_turn: int = 0,
                pause_s: float = 0.0, rotate: bool = False,
                between_rounds: Optional[Callable[[], None]] = None,
                after_round: Optional[Callable[[int, float], None]] = None) -> Dict[str, List[float]]:
    """Interleaved timing: each round gives every call a turn, so machine drift hits them all alike.

    A turn is ``time_calls(call, count=calls_per_turn[name], warmup=warmup_per_turn)`` after a
    ``pause_s`` sleep (both off the clock). ``rotate`` starts each round with the next call, so
    none always runs right after another. Stops after ``rounds`` rounds, or once ``duration``
    seconds have passed (at least ``min_rounds``); ``between_rounds()`` runs after each round and
    its time counts toward ``duration``; ``after_round(rounds_done, elapsed_s)`` reports progress.
    Returns {name: seconds of each timed call}; every call gets the same number of turns.
    """
    _check_amount(rounds, duration)
    names = list(calls)
    if not names:
        raise ConfigError("time_rounds needs at least one call to time.")
    per_turn = calls_per_turn if isinstance(calls_per_turn, Mapping) else {name: calls_per_turn for name in names}
    latencies: Dict[str, List[float]] = {name: [] for name in names}
    started = time.perf_counter()
    done = 0
    while True:
        for offset in range(len(names)):
            name = names[(done + offset) % len(names)] if rotate else names[offset]
            if pause_s:
                time.sleep(pause_s)
            latencies[name].extend(time_calls(calls[name], count=per_turn[name], warmup=warmup_per_turn))
        done += 1
        if between_rounds is not None:
            between_rounds()
        elapsed = time.perf_counter() - started
        if after_round is not None:
            after_round(done, elapsed)
        if rounds is not None:
            if done >= rounds:
                return latencies
        elif elapsed >= duration and done >= min_rounds:
            return latencies


def _check_amount(count: Optional[int], duration: Optional[float]) -> None:
    if (count is None) == (duration is None):
        raise ConfigError("give either a number of timed calls or a duration in seconds (one of them).")
    if count is not None and (isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 1):
        raise ConfigError(f"{count!r} timed calls is not valid; use a whole number >= 1.")
    if duration is not None and (isinstance(duration, bool) or not isinstance(duration, numbers.Real) or not duration > 0):
        raise ConfigError(f"duration={duration!r} is not valid; use a number of seconds > 0.")


def latency_stats(latencies_s: Sequence[float]) -> Dict[str, float]:
    """min/mean/p50/p90/p99/max in milliseconds of per-run latencies given in seconds."""
    import numpy as np

    ms = np.asarray(latencies_s, dtype=np.float64) * 1000.0
    stats = {
        "min": ms.min(),
        "mean": ms.mean(),
        "p50": np.percentile(ms, 50),
        "p90": np.percentile(ms, 90),
        "p99": np.percentile(ms, 99),
        "max": ms.max(),
    }
    return {name: round(float(value), 4) for name, value in stats.items()}


def run_clients(calls: Sequence[Call], *, duration: float, warmup: int = 5) -> Tuple[List[List[float]], float]:
    """Run every call in its own client thread for ``duration`` seconds, all starting together.

    Each client makes ``warmup`` untimed calls, waits for the others, then times its calls with
    ``time_calls`` (at least ``MIN_ROUNDS``). Returns (seconds per call, per client; wall seconds
    from the common start to the last client's end). A client's exception is raised here.
    """
    count = len(calls)
    start_line = threading.Barrier(count + 1)
    latencies: List[Optional[List[float]]] = [None] * count
    ends = [0.0] * count
    errors: List[BaseException] = []

    def client(index: int) -> None:
        try:
            if warmup:
                time_calls(calls[index], count=warmup)
            start_line.wait()
            latencies[index] = time_calls(calls[index], duration=duration, min_count=MIN_ROUNDS)
            ends[index] = time.perf_counter()
        except threading.BrokenBarrierError:
            pass  # another client failed; its error is the one raised
        except BaseException as error:  # noqa: B902 - re-raised in the caller's thread below
            errors.append(error)
            start_line.abort()

    workers = [threading.Thread(target=client, args=(index,), name=f"tftrt-client-{index}", daemon=True)
               for index in range(count)]
    for worker in workers:
        worker.start()
    started = None
    try:
        start_line.wait()
        started = time.perf_counter()
    except threading.BrokenBarrierError:
        pass
    for worker in workers:
        worker.join()
    if errors:
        raise errors[0]
    return [list(l or ()) for l in latencies], max(ends) - started
