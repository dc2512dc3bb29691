"""Preprocess modes must equal keras.applications' preprocess_input on the same pixels."""

import importlib

import numpy as np
import pytest
from PIL import Image

from tftrt_toolkit.data.preprocess import PREPROCESS_MODES, preprocess_mode_for_keras_application, preprocess_pixels, resolve_preprocess_mode
from tftrt_toolkit.errors import DataError

keras = pytest.importorskip("keras")


@pytest.fixture(scope="module")
def photo_batch(photo):
    """Two real 224x224 photos (the cat and its mirror image) as uint8."""
    cat = np.asarray(Image.fromarray(photo).resize((224, 224)))
    return np.stack([cat, cat[:, ::-1]])


@pytest.mark.parametrize("mode", ["caffe", "tf", "torch"])
def test_modes_equal_keras_imagenet_utils_bit_for_bit(photo_batch, mode):
    from keras.applications import imagenet_utils

    expected = imagenet_utils.preprocess_input(photo_batch.astype(np.float32), mode=mode)
    ours = preprocess_pixels(photo_batch, mode)
    assert ours.dtype == np.float32
    np.testing.assert_array_equal(ours, expected)


@pytest.mark.parametrize("mode", ["caffe", "tf", "torch"])
def test_channels_first_equals_keras_channels_first(photo_batch, mode):
    from keras.applications import imagenet_utils

    chw = np.ascontiguousarray(np.transpose(photo_batch, (0, 3, 1, 2)))
    expected = imagenet_utils.preprocess_input(chw.astype(np.float32), data_format="channels_first", mode=mode)
    np.testing.assert_array_equal(preprocess_pixels(chw, mode, channels_first=True), expected)
    np.testing.assert_array_equal(preprocess_pixels(chw[0], mode, channels_first=True), expected[0])


@pytest.mark.parametrize(
    "module, mode",
    [("vgg16", "caffe"), ("resnet50", "caffe"), ("mobilenet_v2", "tf"), ("inception_v3", "tf"), ("densenet", "torch")],
)
def test_modes_equal_the_application_modules_own_preprocess_input(photo_batch, module, mode):
    keras_module = importlib.import_module(f"keras.applications.{module}")
    expected = keras_module.preprocess_input(photo_batch.astype(np.float32))
    np.testing.assert_array_equal(preprocess_pixels(photo_batch, mode), expected)


def test_none_feeds_raw_pixels_as_float32(photo_batch):
    ours = preprocess_pixels(photo_batch, "none")
    assert ours.dtype == np.float32
    np.testing.assert_array_equal(ours, photo_batch)


def test_preprocessing_does_not_modify_its_input(photo_batch):
    before = photo_batch.copy()
    for mode in ("caffe", "tf", "torch", "none"):
        preprocess_pixels(photo_batch, mode)
    np.testing.assert_array_equal(photo_batch, before)


def _application_names(package):
    return sorted(name for name in dir(package) if name[0].isupper())


def _check_mapping_matches_module(package, name, sample):
    module = importlib.import_module(getattr(package, name).__module__)
    mode = preprocess_mode_for_keras_application(name)
    assert mode is not None, f"{name} is not mapped"
    expected = module.preprocess_input(sample.copy())
    np.testing.assert_allclose(preprocess_pixels(sample, mode), expected, rtol=0, atol=1e-6, err_msg=name)


def test_every_keras_application_maps_to_what_its_preprocess_input_does(photo_batch):
    """Keras 3 applications: the mapping is checked against each model's own module, not a hand list."""
    names = _application_names(keras.applications)
    assert len(names) >= 40
    sample = photo_batch[:1, :32, :32].astype(np.float32)
    for name in names:
        _check_mapping_matches_module(keras.applications, name, sample)


def test_every_tf_keras_application_maps_too(photo_batch):
    """tf_keras still ships RegNet and ResNetRS (both normalize inside the model)."""
    tf_keras = pytest.importorskip("tf_keras")
    names = _application_names(tf_keras.applications)
    assert any(name.startswith("RegNet") for name in names) and any(name.startswith("ResNetRS") for name in names)
    sample = photo_batch[:1, :32, :32].astype(np.float32)
    for name in names:
        _check_mapping_matches_module(tf_keras.applications, name, sample)


@pytest.mark.parametrize(
    "name, mode",
    [
        ("keras:VGG16", "caffe"),
        ("ResNet152", "caffe"),
        ("resnet_v2", "tf"),
        ("keras:ResNet50V2", "tf"),
        ("MobileNet", "tf"),
        ("MobileNetV3Small", "none"),
        ("keras.applications.Xception", "tf"),
        ("NASNetLarge", "tf"),
        ("InceptionResNetV2", "tf"),
        ("DenseNet201", "torch"),
        ("EfficientNetB3", "none"),
        ("EfficientNetV2S", "none"),
        ("ConvNeXtTiny", "none"),
        ("RegNetY032", "none"),
        ("ResNetRS50", "none"),
        ("my_classifier", None),
        ("/models/resnet50_finetuned/saved_model", None),
    ],
)
def test_keras_application_names(name, mode):
    assert preprocess_mode_for_keras_application(name) == mode


def test_auto_follows_a_keras_spec_hint():
    assert resolve_preprocess_mode("auto", model_hint="keras:ResNet50")[0] == "caffe"


def test_auto_follows_a_mode_recorded_by_a_model_card():
    assert resolve_preprocess_mode("auto", model_hint="none")[0] == "none"
    assert resolve_preprocess_mode("auto", model_hint={"preprocess": "torch", "keras_application": "VGG16"})[0] == "torch"


def test_auto_reads_model_info_mappings():
    assert resolve_preprocess_mode("auto", model_hint={"keras_application": "MobileNetV2", "name": "MobileNetV2"})[0] == "tf"
    assert resolve_preprocess_mode("auto", model_hint={"tftrt_toolkit": {"preprocess": "caffe"}})[0] == "caffe"


def test_auto_without_a_useful_hint_feeds_raw_pixels_and_says_so():
    mode, why = resolve_preprocess_mode("auto", model_hint="/path/to/saved_model")
    assert mode == "none" and "--preprocess" in why
    assert resolve_preprocess_mode("auto", model_hint={"name": "tiny_cnn"})[0] == "none"


def test_explicit_mode_wins_over_the_hint():
    assert resolve_preprocess_mode("tf", model_hint="keras:VGG16") == ("tf", "as requested")


def test_unknown_mode_is_a_data_error_listing_the_modes():
    with pytest.raises(DataError, match=r"unknown preprocess mode 'inception'; use one of auto, caffe, tf, torch, none"):
        resolve_preprocess_mode("inception")
    with pytest.raises(DataError, match="unknown preprocess mode"):
        preprocess_pixels(np.zeros((2, 2, 3)), "Caffe")
    assert PREPROCESS_MODES == ("auto", "caffe", "tf", "torch", "none")


def test_a_bad_mode_in_a_model_card_is_a_data_error():
    with pytest.raises(DataError, match="model's card records preprocess 'imagenet'"):
        resolve_preprocess_mode("auto", model_hint={"preprocess": "imagenet"})


def test_auto_must_be_resolved_before_use():
    with pytest.raises(DataError, match="resolve_preprocess_mode"):
        preprocess_pixels(np.zeros((2, 2, 3)), "auto")


@pytest.mark.parametrize("mode", ["caffe", "torch"])
def test_rgb_modes_refuse_grayscale(mode):
    with pytest.raises(DataError, match="needs 3-channel RGB"):
        preprocess_pixels(np.zeros((4, 4, 1)), mode)
