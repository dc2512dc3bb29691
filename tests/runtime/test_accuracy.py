"""Accuracy against labels and the paired interval for its drop: arithmetic, ties, 1001-class models, validate's report."""

import numpy as np
import pytest
from PIL import Image

from tftrt_toolkit.data.labels import ImageLabels
from tftrt_toolkit.errors import DataError
from tftrt_toolkit.runtime.accuracy import (LabelledAccuracy, mcnemar_exact_p, paired_difference_interval, paired_drop,
                                            ranked_classes, wilson_interval)
from tftrt_toolkit.runtime.validate import validate

# The first ten ImageNet WordNet ids: classes 0..9, the tiny fixture model's ten outputs.
WORDNET_IDS = ["n01440764", "n01443537", "n01484850", "n01491361", "n01494475",
               "n01496331", "n01498041", "n01514668", "n01514859", "n01518878"]


def test_newcombe_interval_matches_the_published_worked_example():
    # Cavo et al. (2012) as worked in Fagerland, Lydersen & Laake's "Statistical Analysis of Contingency
    # Tables" (R package contingencytables): estimate -0.0621, 95% CI -0.1186 to -0.0046.
    lower, upper = paired_difference_interval(both_right=59, only_first=6, only_second=16, both_wrong=80)
    assert (round(lower, 4), round(upper, 4)) == (-0.1186, -0.0046)


def test_wilson_interval_known_value_and_edges():
    lower, upper = wilson_interval(81, 263)  # Newcombe (1998, single proportion) example: 0.2553 to 0.3662
    assert (round(lower, 4), round(upper, 4)) == (0.2553, 0.3662)
    assert wilson_interval(0, 10)[0] == pytest.approx(0.0) and wilson_interval(10, 10)[1] == pytest.approx(1.0)


def test_only_discordant_images_move_the_drop():
    # 100 images: 80 both right, 6 only the original, 2 only the optimized, 12 both wrong.
    original = [True] * 80 + [True] * 6 + [False] * 2 + [False] * 12
    optimized = [True] * 80 + [False] * 6 + [True] * 2 + [False] * 12
    drop = paired_drop(original, optimized)
    assert drop["top1_drop"] == pytest.approx(0.04)
    assert drop["top1_only_original_right"] == 6 and drop["top1_only_optimized_right"] == 2
    lower, upper = drop["top1_drop_interval"]
    assert lower < 0.04 < upper and lower < 0  # 6 against 2 is not enough to call it a real drop
    assert drop["top1_mcnemar_exact_p"] == pytest.approx(2 * (1 + 8 + 28) / 256)
    # The same split on ten times the images is a real drop.
    assert paired_difference_interval(800, 60, 20, 120)[0] > 0


def test_identical_answers_give_zero_drop_and_an_interval_around_it():
    right = [True, True, False, True]
    drop = paired_drop(right, right)
    lower, upper = drop["top1_drop_interval"]
    assert drop["top1_drop"] == 0 and lower < 0 < upper and drop["top1_mcnemar_exact_p"] == 1.0
    assert mcnemar_exact_p(0, 0) == 1.0


def test_ties_go_to_the_lower_class_id():
    scores = np.array([[0.1, 0.4, 0.4, 0.1],    # classes 1 and 2 tie for first
                       [0.25, 0.25, 0.25, 0.25]])
    np.testing.assert_array_equal(ranked_classes(scores, 2), [[1, 2], [0, 1]])
    labels = ImageLabels({"a.jpg": 2, "b.jpg": 0}, origin="test")
    accuracy = LabelledAccuracy(labels, top_k=2)
    accuracy.add(["a.jpg", "b.jpg"], {"original": scores, "optimized": scores})
    assert accuracy.accuracy("original") == {"top1": 0.5, "topk": 1.0}


def test_1001_class_models_shift_by_the_background_class():
    labels = ImageLabels({"cat.jpg": 285, "fish.jpg": 0}, origin="test")
    scores_1000 = np.zeros((2, 1000))
    scores_1000[0, 285] = scores_1000[1, 0] = 1
    scores_1001 = np.zeros((2, 1001))
    scores_1001[0, 286] = 1          # output 286 is class 285
    scores_1001[1, 0] = 1            # background, then class 0 second
    scores_1001[1, 1] = 0.5
    accuracy = LabelledAccuracy(labels, top_k=5)
    accuracy.add(["cat.jpg", "fish.jpg"], {"original": scores_1000, "optimized": scores_1001})
    result = accuracy.compare()
    assert result["original"] == {"top1": 1.0, "topk": 1.0}
    assert result["optimized"] == {"top1": 0.5, "topk": 1.0}  # background is never a class
    assert result["top1_drop"] == 0.5 and result["labelled_samples"] == 2


def test_a_label_beyond_the_models_classes_is_one_clear_line():
    accuracy = LabelledAccuracy(ImageLabels({"a.jpg": 12}, origin="labels CSV x.csv"), top_k=1)
    with pytest.raises(DataError, match=r"image a.jpg is labelled class 12 \(labels CSV x.csv\) but the model has 10 classes"):
        accuracy.add(["a.jpg"], {"original": np.ones((1, 10))})


@pytest.fixture(scope="module")
def wordnet_folder(tmp_path_factory):
    """Twelve tiny noise images named with the WordNet ids of classes 0..9 (a labelled fixture, no photos)."""
    folder = tmp_path_factory.mktemp("labelled")
    rng = np.random.default_rng(0)
    for i in range(12):
        pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{WORDNET_IDS[i % 10]}_{i}.png")
    return folder


def test_validate_reports_accuracy_on_a_wordnet_named_folder(tiny_saved_model, tiny_other_weights, wordnet_folder):
    report = validate(str(tiny_saved_model), str(tiny_other_weights), data=str(wordnet_folder), top_k=3)
    accuracy = report.accuracy
    assert accuracy["labelled_samples"] == 12 and "WordNet ids" in accuracy["labels"]
    n = 12
    assert accuracy["top1_drop"] == pytest.approx(accuracy["original"]["top1"] - accuracy["optimized"]["top1"])
    assert accuracy["top1_drop"] * n == accuracy["top1_only_original_right"] - accuracy["top1_only_optimized_right"]
    lower, upper = accuracy["top1_drop_interval"]
    assert -1 <= lower <= accuracy["top1_drop"] <= upper <= 1
    assert any("drop" in line and "interval" in line for line in report.summary_lines())


def test_validate_labels_that_match_no_image_is_one_clear_line(tiny_saved_model, wordnet_folder, tmp_path):
    csv_file = tmp_path / "labels.csv"
    csv_file.write_text("image,class_id\nnot_here.png,3\n")
    with pytest.raises(DataError, match=r"none of the 12 images is listed in .*labels.csv"):
        validate(str(tiny_saved_model), str(tiny_saved_model), data=str(wordnet_folder), labels_csv=str(csv_file))
