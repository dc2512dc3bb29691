"""jobs.attempts: the one mechanism run and tune use so that one precision's (candidate's) failure is a row, not the end."""

import logging

import pytest

from tftrt_toolkit.errors import ConversionError, DataError
from tftrt_toolkit.jobs.attempts import Failure, attempt, together_then_each


def test_a_toolkit_error_is_recorded_with_its_own_exit_code():
    with attempt("convert") as tried:
        raise DataError("calibration needs 32 samples but photos/ has 4\nsecond line")
    assert tried.failure == Failure("convert", "calibration needs 32 samples but photos/ has 4", "DataError", 4)
    assert not tried.failure.internal
    assert tried.failure.describe() == "failed at convert: calibration needs 32 samples but photos/ has 4"


def test_any_other_exception_is_an_internal_failure_named_by_its_type(caplog):
    with caplog.at_level(logging.DEBUG, logger="tftrt_toolkit"):
        with attempt("convert") as tried:
            tried.step = "validate"  # the step moves on with the work
            {}["missing key"]
    assert tried.failure == Failure("validate", "KeyError: 'missing key'", "KeyError", 70)
    assert tried.failure.internal and tried.failure.to_json()["exit_code"] == 70
    (record,) = [r for r in caplog.records if r.name == "tftrt_toolkit.jobs.attempts"]
    assert record.levelno == logging.DEBUG and record.exc_info[0] is KeyError, "the traceback is kept for --debug"


def test_an_exception_without_a_message_is_named_by_its_type():
    with attempt("benchmark") as tried:
        raise RuntimeError()
    assert tried.failure.reason == "RuntimeError"


def test_success_records_nothing():
    with attempt("convert") as tried:
        pass
    assert tried.failure is None


@pytest.mark.parametrize("stop", [KeyboardInterrupt, SystemExit])
def test_interrupts_are_not_one_pieces_failure(stop):
    with pytest.raises(stop):
        with attempt("convert"):
            raise stop()


def test_together_then_each_finds_the_one_that_fails_and_runs_the_rest_together():
    runs = []

    def run(names):
        runs.append(list(names))
        if "b" in names:
            raise RuntimeError("b cannot be timed")
        return {name: len(names) for name in names}

    def probe(name):
        if name == "b":
            raise ConversionError("b is broken")

    result, failures = together_then_each(["a", "b", "c"], run, probe, "benchmark")
    assert runs == [["a", "b", "c"], ["a", "c"]], "all together, then the others together again"
    assert result == {"a": 2, "c": 2}
    assert failures == {"b": Failure("benchmark", "b is broken", "ConversionError", 6)}


def test_together_then_each_charges_everyone_when_none_fails_alone_but_together_fails():
    def run(names):
        raise MemoryError("too many at once")

    result, failures = together_then_each(["a", "b"], run, lambda name: None, "benchmark")
    assert result is None
    assert failures == {name: Failure("benchmark", "MemoryError: too many at once", "MemoryError", 70) for name in "ab"}


def test_together_then_each_runs_once_when_all_is_well():
    runs = []
    result, failures = together_then_each(["a"], lambda names: runs.append(names) or "ok", lambda name: 1 / 0, "x")
    assert (result, failures, runs) == ("ok", {}, [["a"]])


# ---------------------------------------------------------------- tune, with the same mechanism

@pytest.fixture
def stand_in_bf16(monkeypatch):
    """bf16 converts as fp32 (on any CPU); returns {step: exception} to inject into bf16."""
    from tftrt_toolkit import pipeline
    from tftrt_toolkit.runtime import benchmark

    inject = {}
    real_convert, real_benchmark_many = pipeline.convert, benchmark.benchmark_many

    def convert(model, output, config, **kwargs):
        if config.precision.value != "bf16":
            return real_convert(model, output, config, **kwargs)
        if "convert" in inject:
            raise inject["convert"]
        return real_convert(model, output, config.replace(precision="fp32"), **kwargs)

    def benchmark_many(models, **kwargs):
        if "benchmark" in inject and "cpu-bf16" in models:
            raise inject["benchmark"]
        return real_benchmark_many(models, **kwargs)

    monkeypatch.setattr(pipeline, "convert", convert)
    monkeypatch.setattr(benchmark, "benchmark_many", benchmark_many)
    return inject


@pytest.mark.parametrize("step", ["convert", "benchmark"])
def test_tune_records_any_exception_of_one_candidate_and_chooses_among_the_others(stand_in_bf16, tiny_saved_model,
                                                                                 tmp_path, step):
    from tftrt_toolkit.jobs.tune import tune

    stand_in_bf16[step] = RuntimeError(f"injected: bf16 {step} broke")
    lines = []
    result = tune(str(tiny_saved_model), "synthetic:8", str(tmp_path / "tuned"), candidates=["cpu-fp32", "cpu-bf16"],
                  duration=0.1, progress=lines.append)
    rows = {row["candidate"]: row for row in result.table}
    assert rows["cpu-bf16"]["status"] == "failed"
    assert rows["cpu-bf16"]["reason"] == f"RuntimeError: injected: bf16 {step} broke"
    assert any(line.endswith(f"cpu-bf16: failed at {step}: RuntimeError: injected: bf16 {step} broke") for line in lines)
    assert rows["cpu-fp32"]["status"] == "measured" and rows["cpu-fp32"]["p50_ms"] > 0
    assert rows["original"]["p50_ms"] > 0
    assert result.chosen["candidate"] == "cpu-fp32"
