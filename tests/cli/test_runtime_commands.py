"""tftrt predict / validate / benchmark as users run them: outputs, exit codes, one-line errors."""

import csv
import io
import json
import os

import numpy as np
import pytest

from tftrt_toolkit.cli.main import main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_MODEL = os.path.join(ROOT, "saved_models", "efficientnet_lite0")
SAMPLES = os.path.join(ROOT, "saved_models", "samples")
CAT = os.path.join(SAMPLES, "cat.jpg")


@pytest.fixture(scope="module")
def fp32_conversion(tiny_saved_model, tmp_path_factory):
    """tiny_saved_model converted with `tftrt convert --backend=cpu --precision=fp32`."""
    out = tmp_path_factory.mktemp("cli") / "fp32"
    assert main(["tftrt", "convert", f"--model={tiny_saved_model}", f"--output={out}", "--backend=cpu", "--precision=fp32"]) == 0
    return out


@pytest.mark.parametrize("command,flag", [("predict", "--labels"), ("validate", "--min_top1_agreement"),
                                          ("benchmark", "--batch_sizes")])
def test_help_shows_docstring_and_flags(run_cli, command, flag):
    result = run_cli(command, "--help")
    assert result.out.startswith(f"tftrt {command}:")
    assert flag in result.out and "--intra_op_threads" in result.out and "--output" in result.out


# --------------------------------------------------------------------------- predict

def test_predict_cat_on_the_shipped_model_json(run_cli):
    result = run_cli("predict", f"--model={DEFAULT_MODEL}", f"--data={CAT}", "--top_k=3")
    data = json.loads(result.out)
    assert data["softmax_applied"] is False and data["labels"] == "imagenet1000"
    (record,) = data["results"]
    assert record["image"] == CAT
    top1 = record["predictions"][0]
    assert 281 <= top1["class_id"] <= 285 and top1["label"] in ("tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat")
    assert [p["rank"] for p in record["predictions"]] == [1, 2, 3]


def test_predict_csv_file_one_row_per_image_and_rank(run_cli, tmp_path):
    out = tmp_path / "predictions.csv"
    run_cli("predict", f"--model={DEFAULT_MODEL}", f"--data={SAMPLES}", f"--output={out}")  # .csv picks the format
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 4 * 5
    assert list(rows[0]) == ["image", "rank", "class_id", "label", "probability"]
    # An existing output is not replaced silently.
    result = run_cli("predict", f"--model={DEFAULT_MODEL}", f"--data={CAT}", f"--output={out}", expect_exit=7)
    assert "--overwrite" in result.err
    run_cli("predict", f"--model={DEFAULT_MODEL}", f"--data={CAT}", f"--output={out}", "--overwrite", "--format=json")
    assert json.loads(out.read_text())["results"][0]["image"] == CAT


def test_predict_errors(run_cli, tmp_path, tiny_saved_model):
    result = run_cli("predict", f"--model={tmp_path / 'no_such_model'}", f"--data={CAT}", expect_exit=3)
    assert len(result.err.strip().splitlines()) == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_cli("predict", f"--model={tiny_saved_model}", f"--data={empty}", expect_exit=4)
    assert "no images" in result.err and len(result.err.strip().splitlines()) == 1
    run_cli("predict", f"--model={tiny_saved_model}", expect_exit=2)  # --data is required


def test_predict_records_threads_and_refuses_late_changes(run_cli, tiny_saved_model):
    result = run_cli("predict", f"--model={tiny_saved_model}", "--data=synthetic:2", "--intra_op_threads=0")
    assert json.loads(result.out)["settings"]["intra_op_threads"] == 0
    # TF's runtime already started in this test process, so other values cannot apply any more.
    result = run_cli("predict", f"--model={tiny_saved_model}", "--data=synthetic:2", "--intra_op_threads=7", expect_exit=2)
    assert "intra_op_threads=7" in result.err


# --------------------------------------------------------------------------- validate

def test_validate_fp32_conversion_passes_at_1e4(run_cli, tiny_saved_model, fp32_conversion, tmp_path):
    out = tmp_path / "validation.json"
    result = run_cli("validate", f"--original={tiny_saved_model}", f"--optimized={fp32_conversion}",
                     "--atol=1e-4", "--rtol=0", "--samples=16", f"--output={out}")
    report = json.loads(out.read_text())
    assert report["passed"] is True and report["precision"] == "fp32"
    assert report["criteria"]["atol"] == 1e-4 and report["outputs"]["probabilities"]["within_tolerance"] == 1.0
    assert result.out.startswith("PASS")


def test_validate_tiny_other_weights_exits_non_zero_and_still_writes_the_report(run_cli, tiny_saved_model, tiny_other_weights, tmp_path):
    out = tmp_path / "validation.json"
    result = run_cli("validate", f"--original={tiny_saved_model}", f"--optimized={tiny_other_weights}", "--samples=16",
                     f"--output={out}", expect_exit=8)
    assert "differs from" in result.err
    report = json.loads(out.read_text())
    assert report["passed"] is False and report["failures"]


def test_validate_json_goes_to_stdout_and_summary_to_stderr(run_cli, tiny_saved_model, fp32_conversion):
    result = run_cli("validate", f"--original={tiny_saved_model}", f"--optimized={fp32_conversion}", "--samples=4")
    assert json.loads(result.out)["samples"] == 4
    assert "PASS" in result.err


def test_validate_mismatched_signatures(run_cli, tiny_saved_model, tmp_path):
    import keras

    from tftrt_toolkit.models.keras_export import export_keras_model

    inputs = keras.Input(shape=(16, 16, 3), name="images")
    outputs = keras.layers.Dense(10, activation="softmax", name="probabilities")(keras.layers.GlobalAveragePooling2D()(inputs))
    export_keras_model(keras.Model(inputs, outputs), str(tmp_path / "other"))
    result = run_cli("validate", f"--original={tiny_saved_model}", f"--optimized={tmp_path / 'other'}", expect_exit=8)
    assert "signature" in result.err and "?x16x16x3" in result.err


def test_validate_missing_models(run_cli, tiny_saved_model, tmp_path):
    run_cli("validate", f"--original={tiny_saved_model}", f"--optimized={tmp_path / 'missing'}", expect_exit=3)
    run_cli("validate", f"--original={tiny_saved_model}", expect_exit=2)  # --optimized is required


# --------------------------------------------------------------------------- benchmark

def test_benchmark_with_baseline_writes_json_csv_png(run_cli, tiny_saved_model, fp32_conversion, tmp_path):
    plot = "--plot"
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        plot = "--noplot"
    out = tmp_path / "bench"
    result = run_cli("benchmark", f"--model={fp32_conversion}", f"--baseline={tiny_saved_model}", "--batch_sizes=1,2",
                     "--warmup=0", "--iterations=2", f"--output={out}", plot)
    assert "speed-up" in result.out.splitlines()[0]
    report = json.loads((out / "benchmark.json").read_text())
    assert [s["batch_size"] for s in report["speedups"]] == [1, 2]
    assert all(r["runs"] == 2 for r in report["results"])
    rows = list(csv.DictReader(io.StringIO((out / "benchmark.csv").read_text())))
    assert [(r["role"], r["batch_size"]) for r in rows] == [("baseline", "1"), ("optimized", "1"), ("baseline", "2"), ("optimized", "2")]
    if plot == "--plot":
        assert (out / "benchmark.png").read_bytes()[:4] == b"\x89PNG"
    # A second run into the same directory needs --overwrite, and is refused before measuring.
    run_cli("benchmark", f"--model={fp32_conversion}", "--batch_sizes=1", "--iterations=1", f"--output={out}", expect_exit=7)


def test_benchmark_json_to_stdout_without_output(run_cli, tiny_saved_model):
    result = run_cli("benchmark", f"--model={tiny_saved_model}", "--batch_sizes=1", "--warmup=0", "--iterations=1", "--json")
    data = json.loads(result.out)
    assert data["speedups"] == [] and data["results"][0]["runs"] == 1
    assert "p50 ms" in result.err  # the table goes to stderr when stdout carries JSON


def test_benchmark_flag_errors(run_cli, tiny_saved_model, tmp_path):
    run_cli("benchmark", f"--model={tiny_saved_model}", "--iterations=2", "--duration=1", expect_exit=2)
    result = run_cli("benchmark", f"--model={tiny_saved_model}", "--batch_sizes=1,x", expect_exit=2)
    assert "'x'" in result.err
    run_cli("benchmark", f"--model={tmp_path / 'missing'}", "--batch_sizes=1", "--iterations=1", expect_exit=3)


def test_predict_jsonl_prints_one_record_per_line(run_cli, tiny_saved_model):
    import json as json_module

    result = run_cli("predict", f"--model={tiny_saved_model}", "--data=synthetic:3", "--format=jsonl")
    lines = result.out.strip().splitlines()
    assert len(lines) == 3
    assert all("image" in json_module.loads(line) for line in lines)
