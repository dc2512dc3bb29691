"""predict: ImageNet names on the shipped model, softmax only on logits, --labels, raw outputs, errors."""

import os

import numpy as np
import pytest

from tftrt_toolkit.errors import ConfigError, DataError, ModelLoadError
from tftrt_toolkit.data.imagenet_labels import imagenet_labels
from tftrt_toolkit.runtime.predict import (CLASSIFICATION_CSV_COLUMNS, looks_like_logits, predict, softmax)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_MODEL = os.path.join(ROOT, "saved_models", "efficientnet_lite0")
SAMPLES = os.path.join(ROOT, "saved_models", "samples")
CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.fixture(scope="module")
def samples_result():
    return predict(DEFAULT_MODEL, SAMPLES, top_k=5)


def test_shipped_model_says_cat_for_the_cat_photo():
    result = predict(DEFAULT_MODEL, os.path.join(SAMPLES, "cat.jpg"))
    top1 = result.top1()
    assert top1["class_id"] in CAT_CLASSES, top1
    assert top1["label"] == imagenet_labels()[top1["class_id"]]
    assert result.labels == "imagenet1000" and result.softmax_applied is False  # the model ends in softmax


def test_shipped_model_gets_every_sample_right(samples_result):
    import csv

    with open(os.path.join(SAMPLES, "labels.csv"), newline="") as handle:
        expected = {row["image"]: int(row["class_id"]) for row in csv.DictReader(handle)}
    got = {os.path.basename(r["image"]): r["predictions"][0]["class_id"] for r in samples_result.records}
    assert got == expected


def test_records_have_exactly_the_documented_shape(samples_result):
    for record in samples_result.records:
        assert set(record) == {"image", "predictions"}
        predictions = record["predictions"]
        assert [p["rank"] for p in predictions] == [1, 2, 3, 4, 5]
        assert all(set(p) == {"rank", "class_id", "label", "probability"} for p in predictions)
        probabilities = [p["probability"] for p in predictions]
        assert probabilities == sorted(probabilities, reverse=True)
    data = samples_result.to_json()
    assert data["softmax_applied"] is False and data["top_k"] == 5 and len(data["results"]) == 4
    assert "intra_op_threads" in data["settings"]


def test_csv_rows_are_image_by_rank(samples_result):
    rows = samples_result.csv_rows()
    assert samples_result.csv_columns == CLASSIFICATION_CSV_COLUMNS == ("image", "rank", "class_id", "label", "probability")
    assert len(rows) == 4 * 5
    assert all(tuple(row) == CLASSIFICATION_CSV_COLUMNS for row in rows)


def test_logit_detection():
    probabilities = softmax(np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]))
    assert not looks_like_logits(probabilities)
    assert looks_like_logits(np.array([[2.0, -1.0, 0.5]]))  # outside [0, 1]
    assert looks_like_logits(np.array([[0.2, 0.2, 0.2]]))  # in [0, 1] but does not sum to 1


@pytest.fixture(scope="module")
def logits_model(tmp_path_factory):
    """A 10-class model without softmax: images [None,32,32,3] -> logits [None,10]."""
    import keras

    from tftrt_toolkit.models.keras_export import export_keras_model

    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(32, 32, 3), name="images")
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
    outputs = keras.layers.Dense(10, name="logits")(x)
    path = tmp_path_factory.mktemp("models") / "logits"
    export_keras_model(keras.Model(inputs, outputs), str(path))
    return path


@pytest.fixture
def ten_labels(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("\n".join(f"class {i}" for i in range(10)) + "\n\n")
    return str(path)


@pytest.fixture
def npy_images(tmp_path, random_images):
    path = tmp_path / "images.npy"
    np.save(path, random_images)
    return str(path)


def test_logits_get_softmax_and_it_is_recorded(logits_model, ten_labels, npy_images):
    result = predict(str(logits_model), npy_images, labels=ten_labels, top_k=10)
    assert result.softmax_applied is True
    for record in result.records:
        assert sum(p["probability"] for p in record["predictions"]) == pytest.approx(1.0, abs=1e-4)
        assert record["predictions"][0]["label"].startswith("class ")


def test_probabilities_are_reported_as_given(tiny_saved_model, ten_labels, npy_images, random_images):
    from tftrt_toolkit.runtime.session import ModelRunner

    result = predict(str(tiny_saved_model), npy_images, labels=ten_labels, top_k=3)
    assert result.softmax_applied is False and result.labels == f"file:{ten_labels}"
    with ModelRunner(str(tiny_saved_model)) as runner:
        raw = runner.run({"images": random_images})["probabilities"]
    top = result.records[0]["predictions"][0]
    assert top["class_id"] == int(np.argmax(raw[0]))
    assert top["probability"] == pytest.approx(float(raw[0].max()), abs=1e-6)


def test_unnamed_classes_get_raw_outputs(tiny_saved_model, npy_images):
    result = predict(str(tiny_saved_model), npy_images)
    assert result.kind == "raw" and result.softmax_applied is None
    assert set(result.records[0]) == {"image", "outputs"}
    assert len(result.records[0]["outputs"]["probabilities"]) == 10
    rows = result.csv_rows()
    assert len(rows) == 4 and rows[0]["output"] == "probabilities" and rows[0]["shape"] == "10"


def test_1001_class_models_get_background_first(tmp_path, npy_images):
    import keras

    from tftrt_toolkit.models.keras_export import export_keras_model

    inputs = keras.Input(shape=(32, 32, 3), name="images")
    outputs = keras.layers.Dense(1001, activation="softmax")(keras.layers.GlobalAveragePooling2D()(inputs))
    export_keras_model(keras.Model(inputs, outputs), str(tmp_path / "m1001"))
    result = predict(str(tmp_path / "m1001"), npy_images, top_k=3)
    names = imagenet_labels(1001)
    assert result.labels == "imagenet1001" and names[0] == "background"
    assert all(p["label"] == names[p["class_id"]] for r in result.records for p in r["predictions"])


def test_labels_file_that_does_not_fit_is_a_config_error(tiny_saved_model, tmp_path, npy_images):
    labels = tmp_path / "three.txt"
    labels.write_text("a\nb\nc\n")
    with pytest.raises(ConfigError, match="has 3 names but output .probabilities. has 10 classes"):
        predict(str(tiny_saved_model), npy_images, labels=str(labels))


def test_errors_missing_model_empty_data_bad_top_k(tmp_path, tiny_saved_model):
    with pytest.raises(ModelLoadError):
        predict(str(tmp_path / "no_model"), SAMPLES)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no images"):
        predict(str(tiny_saved_model), str(empty))
    with pytest.raises(ConfigError, match="top_k"):
        predict(str(tiny_saved_model), "synthetic:2", top_k=0)
