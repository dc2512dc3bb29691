"""The one timing loop: what is on the clock, how many calls, in which order; never how fast."""

import numpy as np
import pytest

from tftrt_toolkit.errors import ConfigError
from tftrt_toolkit.runtime.timing import prepared_call, time_calls, time_rounds, to_host


class FakeTensor:
    """Stands for a device tensor: records when its value is copied to the host."""

    def __init__(self, log, name):
        self.log, self.name = log, name

    def numpy(self):
        self.log.append(("numpy", self.name))
        return np.zeros(2)


def recording_call(log, name):
    def call():
        log.append(("call", name))
        return {"out": FakeTensor(log, name)}
    return call


def test_time_calls_counts_timed_calls_after_untimed_warmup_and_fetches_outputs():
    log = []
    latencies = time_calls(recording_call(log, "a"), count=3, warmup=2)
    assert len(latencies) == 3 and all(seconds >= 0 for seconds in latencies)
    # every call, warm-up included, has its outputs copied to host right after it
    assert log == [("call", "a"), ("numpy", "a")] * 5


def test_time_calls_by_duration_makes_at_least_the_minimum():
    latencies = time_calls(lambda: None, duration=1e-9, min_count=4)
    assert len(latencies) == 4


@pytest.mark.parametrize("amount", [{}, {"count": 2, "duration": 1.0}, {"count": 0}, {"count": 1.5}, {"duration": -1}])
def test_time_calls_needs_exactly_one_valid_amount(amount):
    with pytest.raises(ConfigError):
        time_calls(lambda: None, **amount)


def test_time_rounds_interleaves_and_gives_every_call_the_same_turns():
    log = []
    calls = {"base": recording_call(log, "base"), "opt": recording_call(log, "opt")}
    done = []
    latencies = time_rounds(calls, rounds=3, between_rounds=lambda: log.append(("between", None)),
                            after_round=lambda rounds, elapsed: done.append(rounds))
    assert {name: len(values) for name, values in latencies.items()} == {"base": 3, "opt": 3}
    order = [name for kind, name in log if kind != "numpy"]
    assert order == ["base", "opt", None] * 3
    assert done == [1, 2, 3]


def test_time_rounds_rotates_and_times_blocks_per_call():
    log = []
    calls = {name: recording_call(log, name) for name in ("a", "b", "c")}
    latencies = time_rounds(calls, rounds=3, rotate=True, calls_per_turn={"a": 2, "b": 1, "c": 1}, warmup_per_turn=1)
    assert {name: len(values) for name, values in latencies.items()} == {"a": 6, "b": 3, "c": 3}
    turns = [name for kind, name in log if kind == "call"]
    # round 1 starts with a, round 2 with b, round 3 with c; each turn: one warm-up call, then the block
    assert turns == ["a"] * 3 + ["b"] * 2 + ["c"] * 2 + ["b"] * 2 + ["c"] * 2 + ["a"] * 3 + ["c"] * 2 + ["a"] * 3 + ["b"] * 2


def test_time_rounds_by_duration_runs_the_minimum_rounds():
    latencies = time_rounds({"only": lambda: None}, duration=1e-9, min_rounds=5)
    assert len(latencies["only"]) == 5


def test_a_call_in_another_process_times_itself():
    class Remote:
        def __call__(self):
            raise AssertionError("a remote call is never timed from here")

        def time_calls(self, count, duration, warmup, min_count):
            return [0.5] * count

    assert time_rounds({"remote": Remote()}, rounds=2, calls_per_turn=3) == {"remote": [0.5] * 6}


def test_prepared_call_prepares_inputs_once_off_the_clock():
    class Runner:
        prepared = 0

        def prepare(self, inputs):
            Runner.prepared += 1
            return {name: value * 2 for name, value in inputs.items()}

        def run_prepared(self, tensors):
            return dict(tensors)

    call = prepared_call(Runner(), {"x": np.ones(2)})
    time_calls(call, count=4)
    assert Runner.prepared == 1
    assert call()["x"].tolist() == [2.0, 2.0]


def test_prepared_call_of_a_function_passes_inputs_by_name_and_fetches_outputs():
    log = []
    call = prepared_call(lambda images: [FakeTensor(log, images)], {"images": "batch"})
    outputs = call()
    assert log == [("numpy", "batch")] and isinstance(outputs[0], np.ndarray)
    assert to_host((np.ones(1), {"k": FakeTensor(log, "k")}))[1]["k"].shape == (2,)
