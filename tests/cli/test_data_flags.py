"""One way to say how images become inputs: --preprocess reaches run's and tune's validation and
int8 calibration, converted models record it, and later commands default to it."""

import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from tftrt_toolkit import artifacts
from tftrt_toolkit.errors import DataError
from tftrt_toolkit.shipped_files import SHIPPED_SAMPLES


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(4):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(folder / f"p{index}.png")
    return folder


@pytest.fixture
def calibration_spy(monkeypatch):
    """Records the preprocessing each int8 calibration source applies, then stops that conversion (a DataError)."""
    import tftrt_toolkit.data as data

    seen = []

    def spy(source, batch_size, steps, progress=None):
        seen.append(source.preprocess)
        raise DataError("calibration stopped by the test after seeing its inputs")

    monkeypatch.setattr(data, "calibration_input_fn", spy)
    return seen


def _metadata(path):
    return artifacts.read_metadata(str(path))


def test_run_preprocess_reaches_calibration_prediction_validation_and_the_models(
        run_cli, tiny_saved_model, photos, tmp_path, calibration_spy):
    out = tmp_path / "report"
    run_cli("run", f"--model={tiny_saved_model}", f"--data={photos}", "--preprocess=tf", "--precisions=fp32,int8",
            "--batch_sizes=1", "--duration=0.1", f"--output_dir={out}", expect_exit=4)
    assert calibration_spy == ["tf"]  # int8 calibrated on [-1, 1] inputs
    # The spy stops int8's calibration (a DataError); int8 was named, so the run says so in its exit,
    # after writing the report of the models that converted.
    predictions = json.loads((out / "predictions.json").read_text())
    assert {result["preprocess"] for result in predictions.values()} == {"tf"}
    validation = json.loads((out / "validation.json").read_text())
    assert [report["settings"]["preprocess"] for report in validation.values()] == ["tf"]
    assert json.loads((out / "benchmark.json").read_text())["settings"]["preprocess"] == "tf"
    assert _metadata(out / "models" / "fp32")["preprocess"] == "tf"


def test_run_without_preprocess_keeps_the_models_convention(run_cli, tiny_saved_model, photos, tmp_path):
    out = tmp_path / "report"
    run_cli("run", f"--model={tiny_saved_model}", f"--data={photos}", "--precisions=fp32", "--batch_sizes=1",
            "--duration=0.1", f"--output_dir={out}")
    predictions = json.loads((out / "predictions.json").read_text())
    assert {result["preprocess"] for result in predictions.values()} == {"none"}  # no hint: raw pixels
    assert _metadata(out / "models" / "fp32")["preprocess"] == "none"


def test_tune_preprocess_reaches_calibration_validation_and_the_chosen_model(
        run_cli, tiny_saved_model, photos, tmp_path, calibration_spy):
    out = tmp_path / "tuned"
    run_cli("tune", f"--model={tiny_saved_model}", f"--data={photos}", "--preprocess=tf",
            "--candidates=cpu-fp32,cpu-int8", "--duration=0.1", "--batch_size=2", f"--output={out}")
    assert calibration_spy == ["tf"]
    assert _metadata(out)["preprocess"] == "tf"


def test_a_converted_models_recorded_preprocessing_is_the_default_later(run_cli, tiny_saved_model, photos, tmp_path):
    converted = tmp_path / "converted"
    run_cli("convert", f"--model={tiny_saved_model}", f"--output={converted}", "--backend=cpu", "--preprocess=tf")
    assert _metadata(converted)["preprocess"] == "tf"
    assert json.loads(run_cli("predict", f"--model={converted}", f"--data={photos}").out)["preprocess"] == "tf"
    assert json.loads(run_cli("predict", f"--model={tiny_saved_model}", f"--data={photos}").out)["preprocess"] == "none"
    # An explicit flag still wins.
    assert json.loads(run_cli("predict", f"--model={converted}", f"--data={photos}",
                              "--preprocess=none").out)["preprocess"] == "none"
    # validate feeds both models what the converted one records, although the original records nothing.
    report = json.loads(run_cli("validate", f"--original={tiny_saved_model}", f"--optimized={converted}",
                                f"--data={photos}").out)
    assert report["settings"]["preprocess"] == "tf"
    bench = tmp_path / "bench"
    run_cli("benchmark", f"--model={converted}", f"--baseline={tiny_saved_model}", f"--data={photos}",
            "--batch_sizes=1", "--iterations=2", "--warmup=0", f"--output={bench}", "--noplot")
    assert json.loads((bench / "benchmark.json").read_text())["settings"]["preprocess"] == "tf"
    # run on the converted model: its predictions use the recorded mode too.
    out = tmp_path / "report"
    run_cli("run", f"--model={converted}", f"--data={photos}", "--precisions=fp32", "--batch_sizes=1",
            "--duration=0.1", f"--output_dir={out}")
    assert json.loads((out / "predictions.json").read_text())["original"]["preprocess"] == "tf"


def test_a_folders_readme_and_labels_are_not_reported_even_when_strict(run_cli, tiny_saved_model, tmp_path):
    samples = tmp_path / "samples"
    shutil.copytree(SHIPPED_SAMPLES, samples)
    assert {"SOURCES.md", "labels.csv"} <= set(os.listdir(samples))
    result = run_cli("run", f"--model={tiny_saved_model}", f"--data={samples}", "--strict_data", "--precisions=fp32",
                     "--batch_sizes=1", "--duration=0.1", f"--output_dir={tmp_path / 'report'}")
    assert "skipped" not in result.err and "skipped" not in result.out
    assert json.loads((tmp_path / "report" / "report.json").read_text()).get("skipped_files") in (None, [])
