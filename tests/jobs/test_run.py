"""run_job: the whole job writes a complete report, or nothing (the command: tests/cli/test_run.py)."""

import csv
import json
import os

import pytest

from tftrt_toolkit.errors import ConfigError, OutputError
from tftrt_toolkit.jobs.run import run_job



@pytest.fixture(scope="module")
def tiny_run(tiny_saved_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "report"
    report = run_job(str(tiny_saved_model), output_dir=str(out), data="synthetic:4", precisions=["fp32"],
                     batch_sizes=(1, 2), duration=0.2, progress=lambda m: None)
    return report, out


def test_writes_every_file(tiny_run):
    report, out = tiny_run
    for name in ("report.md", "report.json", "predictions.json", "predictions.csv", "validation.json",
                 "benchmark.json", "benchmark.csv", "benchmark.png"):
        assert (out / name).is_file(), name
    assert (out / "models" / "fp32" / "saved_model.pb").is_file()
    assert sorted(os.listdir(out.parent)) == ["report"], "no temp dirs left beside it"


def test_summary_table_and_notebook_views(tiny_run):
    report, out = tiny_run
    assert [row.name for row in report.rows] == ["original", "cpu-fp32"]
    optimized = report.optimized[0]
    assert optimized.top1_agreement == 1.0 and optimized.validation_passed
    assert set(optimized.speedup) == {1, 2} and all(v > 0 for v in optimized.speedup.values())
    assert report.table_lines()[0].split()[:3] == ["model", "backend", "precision"]
    markdown = report.to_markdown()
    assert markdown.startswith("| model | backend | precision |") and "| cpu-fp32 | cpu | fp32 |" in markdown
    assert "cpu-fp32" in repr(report) and "bs1" in repr(report)
    saved = json.loads((out / "report.json").read_text())
    assert saved["rows"][1]["precision"] == "fp32" and saved["batch_sizes"] == [1, 2]
    text = (out / "report.md").read_text()
    assert "## Summary" in text and "![latency and throughput by batch size](benchmark.png)" in text


def test_predictions_csv_has_one_row_per_model_image_output(tiny_run):
    _, out = tiny_run
    with open(out / "predictions.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["model"] for r in rows} == {"original", "cpu-fp32"}
    # 10 classes and no --labels: not an ImageNet classifier, so outputs are reported raw.
    assert len(rows) == 2 * 4 and {r["output"] for r in rows} == {"probabilities"}


def test_existing_output_is_refused_before_any_work(tiny_saved_model, tiny_run):
    _, out = tiny_run
    before = sorted(os.listdir(out))
    with pytest.raises(OutputError, match="--overwrite"):
        run_job(str(tiny_saved_model), output_dir=str(out), data="synthetic:4", precisions=["fp32"],
                progress=lambda m: None)
    assert sorted(os.listdir(out)) == before


def test_impossible_precision_is_refused_before_any_work(tiny_saved_model, tmp_path):
    with pytest.raises(ConfigError, match="bf16"):
        run_job(str(tiny_saved_model), output_dir=str(tmp_path / "r"), precisions=["fp16"], backend="cpu",
                progress=lambda m: None)
    assert not (tmp_path / "r").exists()


def test_labelled_images_give_each_row_accuracy_and_the_model_keeps_it(tiny_saved_model, tmp_path):
    import numpy as np
    from PIL import Image

    from tftrt_toolkit import artifacts

    images = tmp_path / "labelled"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i, wordnet_id in enumerate(["n01440764", "n01443537", "n01484850", "n01491361"]):  # classes 0..3
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(images / f"{wordnet_id}_{i}.png")
    out = tmp_path / "report"
    report = run_job(str(tiny_saved_model), output_dir=str(out), data=str(images), precisions=["fp32"],
                     batch_sizes=(1,), duration=0.1, progress=False)
    original, fp32 = report.rows
    assert original.accuracy["labelled_samples"] == 4 and 0 <= original.accuracy["top1"] <= 1
    assert fp32.accuracy["top1_drop"] == 0.0 and len(fp32.accuracy["top1_drop_interval"]) == 2
    assert "top-1 accuracy (n=4)" in report.table_lines()[0]
    assert "## Accuracy on labelled images" in (out / "report.md").read_text()
    assert artifacts.read_metadata(str(out / "models" / "fp32"))["accuracy"]["labelled_samples"] == 4
