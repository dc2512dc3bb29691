"""`tftrt run` never dies of one precision: a failure at any step is a row with its reason, and the run goes on.

The failures are injected (an exception from the conversion, the validation or the timing of
one precision); which precisions a CPU offers does not matter: ``stand_in_int8`` makes run
offer fp32 and int8 everywhere, int8 being an fp32 conversion under int8's name (no Intel
Neural Compressor, seconds), so the other precision really converts, validates and is timed.
"""

import json
import os

import pytest

from tftrt_toolkit.errors import ConversionError

RUN_ARGS = ("--data=synthetic:4", "--batch_sizes=1", "--duration=0.1")


@pytest.fixture
def stand_in_int8(monkeypatch):
    """run offers fp32 and int8 on any CPU; int8 converts as fp32. Returns {step: exception} to inject into int8."""
    from tftrt_toolkit import pipeline
    from tftrt_toolkit.backends import precisions
    from tftrt_toolkit.runtime import benchmark, validate

    inject = {}
    real_convert, real_validate, real_benchmark_many = pipeline.convert, validate.validate, benchmark.benchmark_many

    def convert(model, output, config, **kwargs):
        if config.precision.value != "int8":
            return real_convert(model, output, config, **kwargs)
        if "convert" in inject:
            raise inject["convert"]
        return real_convert(model, output, config.replace(precision="fp32"), **dict(kwargs, calibration_data=None))

    def validate_(original, optimized, **kwargs):
        if "validate" in inject and "int8" in optimized.name:
            raise inject["validate"]
        return real_validate(original, optimized, **kwargs)

    def benchmark_many(models, **kwargs):
        if "benchmark" in inject and any("int8" in name for name in models):
            raise inject["benchmark"]
        return real_benchmark_many(models, **kwargs)

    monkeypatch.setattr(precisions, "offered_precisions", lambda env, backend=None: ("fp32", "int8"))
    monkeypatch.setattr(pipeline, "convert", convert)
    monkeypatch.setattr(validate, "validate", validate_)
    monkeypatch.setattr(benchmark, "benchmark_many", benchmark_many)
    return inject


def read_report(out):
    return json.loads((out / "report.json").read_text())


@pytest.mark.parametrize("step, error, reason", [
    ("convert", RuntimeError("injected: int8 conversion broke\nsecond line of a long message"),
     "RuntimeError: injected: int8 conversion broke"),
    ("validate", ValueError("injected: int8 outputs unreadable"), "ValueError: injected: int8 outputs unreadable"),
    ("benchmark", RuntimeError("injected: int8 cannot be timed"), "RuntimeError: injected: int8 cannot be timed"),
])
def test_one_failing_precision_is_a_row_and_the_run_goes_on(stand_in_int8, run_cli, tiny_saved_model, tmp_path,
                                                            step, error, reason):
    stand_in_int8[step] = error
    out = tmp_path / "report"
    result = run_cli("run", f"--model={tiny_saved_model}", f"--output_dir={out}", *RUN_ARGS, expect_exit=0)
    assert "Traceback" not in result.err

    rows = {row["name"]: row for row in read_report(out)["rows"]}
    assert list(rows) == ["original", "cpu-fp32", "cpu-int8"]
    assert rows["cpu-int8"]["failure"] == {"step": step, "reason": reason, "error_type": type(error).__name__,
                                           "exit_code": 70}
    fp32 = rows["cpu-fp32"]
    assert fp32["failure"] is None and fp32["validation_passed"] and float(fp32["speedup"]["1"]) > 0
    # The summary table: a "failed" column with the step and the reason, on the int8 row only.
    table = result.out.splitlines()
    assert table[1].split()[-1] == "failed"
    assert next(line for line in table if line.startswith("cpu-int8")).endswith(f"at {step}: {reason}")
    assert next(line for line in table if line.startswith("cpu-fp32")).rstrip().endswith("-")
    # One stderr line says so as it happens; a note keeps it in the report.
    assert [line.strip() for line in result.err.splitlines() if "cpu-int8 failed" in line] == [
        f"cpu-int8 failed at {step}: {reason}; the run goes on without it"]
    assert f"cpu-int8: failed at {step}: {reason}; the run went on without it" in read_report(out)["notes"]
    # Only the models that passed ship with the report; benchmark.json times only them.
    assert sorted(os.listdir(out / "models")) == ["fp32"]
    assert {s["name"] for s in json.loads((out / "benchmark.json").read_text())["speedups"]} == {"cpu-fp32"}
    assert "**cpu-int8**: FAILED" in (out / "report.md").read_text()


@pytest.mark.parametrize("error, code", [
    (RuntimeError("injected: int8 conversion broke"), 70),
    (ConversionError("int8 conversion refused this graph"), ConversionError.exit_code),
])
def test_a_named_precision_that_fails_fails_the_run_in_one_line(stand_in_int8, run_cli, tiny_saved_model, tmp_path,
                                                               error, code):
    stand_in_int8["convert"] = error
    out = tmp_path / "report"
    result = run_cli("run", f"--model={tiny_saved_model}", f"--output_dir={out}", "--precisions=fp32,int8",
                     *RUN_ARGS, expect_exit=code)
    errors = [line for line in result.err.splitlines() if line.startswith("tftrt run: error:")]
    assert len(errors) == 1 and "Traceback" not in result.err, result.err
    assert "int8 was asked for (--precisions) and failed at convert:" in errors[0]
    assert f"{out}/report.md" in errors[0]
    # The report is still written whole, and the table printed: fp32 passed.
    assert [row["name"] for row in read_report(out)["rows"]] == ["original", "cpu-fp32", "cpu-int8"]
    assert "cpu-fp32" in result.out


def test_only_the_named_precision_failing_exits_non_zero(stand_in_int8, run_cli, tiny_saved_model, tmp_path):
    stand_in_int8["convert"] = RuntimeError("injected: int8 conversion broke")
    out = tmp_path / "report"
    result = run_cli("run", f"--model={tiny_saved_model}", f"--output_dir={out}", "--precisions=int8", *RUN_ARGS,
                     expect_exit=70)
    assert [line for line in result.err.splitlines() if "error" in line] == [
        f"tftrt run: error: int8 was asked for (--precisions) and failed at convert: RuntimeError: injected: int8 "
        f"conversion broke; the report is in {out}/report.md"]
    assert [row["name"] for row in read_report(out)["rows"]] == ["original", "cpu-int8"]


def test_no_optimized_model_passing_is_a_failed_run(stand_in_int8, run_cli, tiny_saved_model, tmp_path, monkeypatch):
    from tftrt_toolkit import pipeline

    def broken(*args, **kwargs):
        raise RuntimeError("injected: nothing converts")

    monkeypatch.setattr(pipeline, "convert", broken)
    result = run_cli("run", f"--model={tiny_saved_model}", f"--output_dir={tmp_path / 'report'}", *RUN_ARGS,
                     expect_exit=70)
    assert "tftrt run: error: no optimized model passed (cpu-fp32 failed at convert: RuntimeError: injected" in result.err


def test_a_keras_model_and_four_photos_finish_without_int8_saying_why_in_one_line(run_cli, tiny_keras_file, tmp_path):
    """Too few photos for int8 calibration: the other precisions' rows, and one line on why int8 was left out."""
    import numpy as np
    from PIL import Image

    from tftrt_toolkit.backends.precisions import offered_precisions
    from tftrt_toolkit.environment import probe

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (40 + i, 48, 3), dtype=np.uint8)).save(photos / f"photo{i}.jpg")
    out = tmp_path / "report"
    result = run_cli("run", f"--model={tiny_keras_file}", f"--data={photos}", f"--output_dir={out}",
                     "--batch_sizes=1", "--duration=0.1", expect_exit=0)

    offered = offered_precisions(probe())
    rows = read_report(out)["rows"]
    assert [row["precision"] for row in rows[1:]] == [p for p in offered if p != "int8"]
    assert all(row["failure"] is None for row in rows)
    assert "fp32" in [row["precision"] for row in rows]
    said = [line for line in (result.out + result.err).splitlines() if "int8" in line]
    if "int8" in offered:
        why = [line for line in said if "left out:" in line]
        assert len(why) == 1, said
        assert "4" in why[0] and "32" in why[0] and "--calibration_data" in why[0]
        assert "--calibration_steps" not in why[0], "run has no such flag"
    assert "Traceback" not in result.err
