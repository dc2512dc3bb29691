"""Fixtures for runtime tests: an fp32 conversion of the tiny model and models with mismatched signatures."""

import numpy as np
import pytest


def export(model, path):
    from tftrt_toolkit.models.keras_export import export_keras_model

    export_keras_model(model, str(path))
    return path


def small_classifier(image_size: int, num_classes: int):
    import keras

    inputs = keras.Input(shape=(image_size, image_size, 3), name="images")
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs)


@pytest.fixture(scope="session")
def tiny_fp32_conversion(tiny_saved_model, tmp_path_factory):
    """tiny_saved_model converted by the cpu backend at fp32 (records precision fp32 in its metadata)."""
    from tftrt_toolkit import ConversionConfig, convert

    out = tmp_path_factory.mktemp("converted") / "fp32"
    return convert(str(tiny_saved_model), str(out), ConversionConfig(backend="cpu", precision="fp32")).path


@pytest.fixture(scope="session")
def tiny_five_classes(tmp_path_factory):
    """Same input as tiny_saved_model but 5 classes: probabilities [None,5]."""
    return export(small_classifier(32, 5), tmp_path_factory.mktemp("models") / "tiny_five_classes")


@pytest.fixture(scope="session")
def tiny_16px(tmp_path_factory):
    """Same output as tiny_saved_model but another input shape: images [None,16,16,3]."""
    return export(small_classifier(16, 10), tmp_path_factory.mktemp("models") / "tiny_16px")
