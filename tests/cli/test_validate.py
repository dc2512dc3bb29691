"""tftrt validate as users run it: the report, the exit code that gates CI, accuracy on labelled images."""

import json

import numpy as np
from PIL import Image

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


def test_cli_validate_prints_both_accuracies_the_drop_and_its_interval(run_cli, tiny_saved_model, tiny_other_weights,
                                                                      tmp_path):
    # Noise images named with the WordNet ids of classes 0..3 (the tiny model has ten classes).
    rng = np.random.default_rng(0)
    for i, wordnet_id in enumerate(["n01440764", "n01443537", "n01484850", "n01491361"]):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / f"{wordnet_id}_{i}.png")
    result = run_cli("validate", f"--original={tiny_saved_model}", f"--optimized={tiny_other_weights}",
                     f"--data={tmp_path}", "--min_top1_agreement=0", "--min_within_tolerance=0", "--atol=1e9")
    assert "accuracy on 4 labelled images" in result.err
    assert "top-1" in result.err and "drop" in result.err and "95% interval" in result.err
