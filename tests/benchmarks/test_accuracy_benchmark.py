"""benchmarks/accuracy.py on the tiny model and a WordNet-named folder: disjoint split, table and JSON written."""

import json

import numpy as np
import pytest
from PIL import Image

WORDNET_IDS = ["n01440764", "n01443537", "n01484850", "n01491361", "n01494475"]  # classes 0..4


@pytest.fixture(scope="module")
def accuracy_script(benchmark_script):
    with benchmark_script("accuracy.py") as module:
        yield module


def test_split_keeps_calibration_and_evaluation_apart(accuracy_script, tmp_path):
    for i in range(9):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / f"{WORDNET_IDS[i % 5]}_{i}.png")
    evaluation, calibration, text = accuracy_script.split_images(str(tmp_path), None, 4)
    assert len(calibration) == 3 and len(evaluation) == 6 and not set(calibration) & set(evaluation)
    same, elsewhere, _ = accuracy_script.split_images(str(tmp_path), "other_dir", 4)
    assert same == evaluation and elsewhere == "other_dir"  # a given calibration set, the same images evaluated
    assert "every 4th image" in text


def test_tiny_model_fp32_row_has_accuracy_drop_and_interval(accuracy_script, tiny_saved_model, tmp_path):
    images = tmp_path / "labelled"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(10):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(images / f"{WORDNET_IDS[i % 5]}_{i}.png")
    report = accuracy_script.main([f"--data={images}", f"--model={tiny_saved_model}", "--precisions=fp32",
                                   f"--output={tmp_path / 'tiny-accuracy'}"])
    [row] = report["rows"]
    assert report["evaluated_images"] == 7 and row["accuracy"]["labelled_samples"] == 7
    assert row["accuracy"]["top1_drop"] == 0.0 and row["top1_agreement"] == 1.0  # fp32 changes no answer
    written = json.loads((tmp_path / "tiny-accuracy.json").read_text())
    assert written["command"].startswith("python benchmarks/accuracy.py --data=")
    assert written["machine"]["cpu_model"] == report["machine"]["cpu_model"]
    table = (tmp_path / "tiny-accuracy.md").read_text()
    assert "| original |" in table and "| cpu-fp32 |" in table and "95% interval" in table
