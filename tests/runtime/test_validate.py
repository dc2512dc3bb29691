"""validate: a faithful conversion passes, a broken one fails with the numbers, mismatches stop before running."""

import os

import numpy as np
import pytest

from tftrt_toolkit.errors import ConfigError, DataError, ModelLoadError, ValidationFailed
from tftrt_toolkit.report.writers import json_text
from tftrt_toolkit.runtime.validate import (DEFAULT_CRITERIA, Criteria, SignatureMismatch, _OutputComparison,
                                            criteria_for, validate)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_MODEL = os.path.join(ROOT, "saved_models", "efficientnet_lite0")
SAMPLES = os.path.join(ROOT, "saved_models", "samples")


def test_fp32_conversion_passes_at_1e4(tiny_saved_model, tiny_fp32_conversion):
    report = validate(str(tiny_saved_model), tiny_fp32_conversion, data="synthetic", samples=16, atol=1e-4, rtol=0.0)
    assert report, report.failures
    assert report.precision == "fp32" and report.criteria.min_within_tolerance == 1.0
    stats = report.outputs["probabilities"]
    assert stats["within_tolerance"] == 1.0 and stats["max_abs_error"] <= 1e-4
    assert stats["top1_agreement"] == 1.0 and stats["topk_agreement"] == 1.0
    assert report.samples == 16
    for field in ("max_abs_error", "mean_abs_error", "max_rel_error", "mean_rel_error", "needed_atol", "needed_rtol"):
        assert field in stats
    assert '"passed": true' in json_text(report)


def test_fp32_defaults_come_from_the_recorded_precision(tiny_saved_model, tiny_fp32_conversion):
    report = validate(str(tiny_saved_model), tiny_fp32_conversion, samples=8)
    assert report.criteria == DEFAULT_CRITERIA["fp32"]
    assert report.criteria.atol == 1e-4


def test_broken_model_fails_and_says_by_how_much(tiny_saved_model, tiny_other_weights):
    report = validate(str(tiny_saved_model), str(tiny_other_weights), samples=16, atol=1e-4)
    assert not report
    stats = report.outputs["probabilities"]
    assert stats["needed_atol"] > 1e-4 and stats["within_tolerance"] < 1.0
    assert any("within atol=0.0001" in failure for failure in report.failures)
    with pytest.raises(ValidationFailed, match="differs from"):
        report.raise_if_failed()


def test_mismatched_input_shape_errors_before_running(tiny_saved_model, tiny_16px):
    with pytest.raises(SignatureMismatch, match=r"input 'images' shape \?x32x32x3 vs \?x16x16x3"):
        validate(str(tiny_saved_model), str(tiny_16px))


def test_mismatched_output_errors_before_running(tiny_saved_model, tiny_five_classes):
    with pytest.raises(SignatureMismatch, match=r"output 'probabilities' shape \?x10 vs \?x5"):
        validate(str(tiny_saved_model), str(tiny_five_classes))


def test_accuracy_with_ground_truth_labels():
    # The shipped model against itself: the numbers are exact, and accuracy is measured for both.
    report = validate(DEFAULT_MODEL, DEFAULT_MODEL, data=SAMPLES, labels_csv=os.path.join(SAMPLES, "labels.csv"), top_k=5)
    assert report
    assert report.accuracy["labelled_samples"] == 4
    assert report.accuracy["original"] == report.accuracy["optimized"] == {"top1": 1.0, "topk": 1.0}


def test_labels_csv_problems(tiny_saved_model, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("file,label\ncat.jpg,cat\n")
    with pytest.raises(DataError, match="needs columns image,class_id"):
        validate(str(tiny_saved_model), str(tiny_saved_model), labels_csv=str(bad))
    good = tmp_path / "good.csv"
    good.write_text("image,class_id\ncat.jpg,3\n")
    with pytest.raises(ConfigError, match="needs image data"):
        validate(str(tiny_saved_model), str(tiny_saved_model), labels_csv=str(good))


def test_errors_missing_model_empty_data(tiny_saved_model, tmp_path):
    with pytest.raises(ModelLoadError):
        validate(str(tiny_saved_model), str(tmp_path / "missing"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no images"):
        validate(str(tiny_saved_model), str(tiny_saved_model), data=str(empty))


def test_criteria_defaults_and_overrides():
    assert criteria_for(None) == DEFAULT_CRITERIA["fp32"]
    bf16 = criteria_for("bf16")
    assert bf16.atol > DEFAULT_CRITERIA["fp32"].atol and bf16.min_within_tolerance < 1.0
    # Tolerances chosen by the user are a hard limit on every element, unless a share is given too.
    assert criteria_for("bf16", atol=1e-2).min_within_tolerance == 1.0
    assert criteria_for("bf16", atol=1e-2, min_within_tolerance=0.5).min_within_tolerance == 0.5
    assert criteria_for("int8", min_top1_agreement=0.99).min_top1_agreement == 0.99
    with pytest.raises(ConfigError, match="min_top1_agreement"):
        Criteria(rtol=0, atol=0, min_within_tolerance=1.0, min_top1_agreement=1.5)
    with pytest.raises(ConfigError, match="atol"):
        criteria_for("fp32", atol=-1.0)


def test_error_statistics_on_known_numbers():
    criteria = Criteria(rtol=0.1, atol=0.01, min_within_tolerance=1.0, min_top1_agreement=1.0)
    comparison = _OutputComparison("y", criteria, top_k=2, classifier=True)
    reference = np.array([[1.0, 0.0, 3.0]])
    candidate = np.array([[1.05, 0.02, 2.0]])
    comparison.add(reference, candidate)
    stats = comparison.to_json()
    assert stats["max_abs_error"] == pytest.approx(1.0)
    assert stats["within_tolerance"] == pytest.approx(1 / 3)  # 0.05 <= 0.01+0.1; 0.02 > 0.01; 1.0 > 0.31
    assert stats["needed_atol"] == pytest.approx(0.7)  # 1.0 - 0.1*3
    assert stats["needed_rtol"] is None  # 0.02 error on an exact zero: no rtol covers it
    assert stats["top1_agreement"] == 1.0 and stats["topk_agreement"] == 1.0


def test_nan_outputs_fail():
    criteria = DEFAULT_CRITERIA["bf16"]
    comparison = _OutputComparison("y", criteria, top_k=5, classifier=False)
    comparison.add(np.ones((2, 3)), np.array([[1.0, np.nan, 1.0], [1.0, 1.0, 1.0]]))
    assert comparison.non_finite == 1 and comparison.within_tolerance < 1.0
    assert '"max_abs_error": null' in json_text(comparison)


def test_bf16_conversion_reports_its_errors_and_is_gated_by_agreement(tiny_saved_model, tmp_path):
    """On every CPU: converted past the capability check; validated here, or with Eigen's bf16 kernels in a child."""
    import json

    from tftrt_toolkit import ConversionConfig, convert
    from tests.every_cpu import environment_offering_bf16, model_process_env, runs_here, tftrt_in_child

    bf16 = convert(str(tiny_saved_model), str(tmp_path / "bf16"), ConversionConfig(backend="cpu", precision="bf16"),
                   env=environment_offering_bf16())
    # A random-weight tiny model has near-ties between classes, so gate at 75% as the backend test does.
    if runs_here(bf16.path):
        report = validate(str(tiny_saved_model), bf16.path, samples=16, min_top1_agreement=0.75).to_json()
    else:
        done = tftrt_in_child("validate", f"--original={tiny_saved_model}", f"--optimized={bf16.path}", "--samples=16",
                              "--min_top1_agreement=0.75", env=model_process_env(bf16.path))
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
    assert report["precision"] == "bf16"
    assert report["criteria"]["atol"] == DEFAULT_CRITERIA["bf16"].atol
    stats = report["outputs"]["probabilities"]
    assert 0 < stats["max_abs_error"] <= 0.05  # reduced precision shows, within bf16's tolerance
    assert report["passed"], report["failures"]
