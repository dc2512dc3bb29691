"""Loading every model spec kind into a SavedModel dir + discovered signature, and each load error."""

import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from tftrt_toolkit.errors import ModelLoadError
from tftrt_toolkit.models.loader import load_model, read_signatures
from tftrt_toolkit.models.spec import ModelKind, parse_model_spec


def _assert_tiny_signature(model, input_name="images"):
    sig = model.signature
    assert sig.key == "serving_default"
    assert sig.input_names == (input_name,)
    assert sig.inputs[0].shape == (None, 32, 32, 3) and sig.inputs[0].dtype == "float32"
    assert sig.outputs[0].shape == (None, 10)
    assert os.path.exists(os.path.join(model.saved_model_dir, "saved_model.pb"))


def test_saved_model_dir_is_used_in_place(tiny_saved_model):
    with load_model(str(tiny_saved_model)) as model:
        assert model.spec.kind is ModelKind.SAVED_MODEL
        assert model.saved_model_dir == str(tiny_saved_model)  # the user's dir is used as is, not copied
        _assert_tiny_signature(model)
        assert model.signature.output_names == ("probabilities",)


def test_keras3_model_export_dir(tmp_path, tiny_keras_model):
    tiny_keras_model.export(str(tmp_path / "exported"))
    with load_model(str(tmp_path / "exported")) as model:
        _assert_tiny_signature(model)
        assert model.signature.output_names == ("output_0",)  # Keras 3's own naming, discovered as is


def test_tf_module_saved_with_signature(tmp_path):
    class Scale(tf.Module):
        def __init__(self):
            self.w = tf.Variable(2.0)

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x"),
                                      tf.TensorSpec([None], tf.int32, name="ids")])
        def serve(self, x, ids):
            return {"y": x * self.w, "n": ids + 1}

    module = Scale()
    tf.saved_model.save(module, str(tmp_path / "m"), signatures={"serving_default": module.serve})
    with load_model(str(tmp_path / "m")) as model:
        assert model.signature.input_names == ("ids", "x")  # sorted: TF's positional order
        assert [t.dtype for t in model.signature.inputs] == ["int32", "float32"]
        assert model.signature.output_names == ("n", "y")


def test_tf_keras_saved_model_format(tmp_path):
    import tf_keras

    inputs = tf_keras.Input((6,), name="features")
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(3, name="scores")(inputs))
    model.save(str(tmp_path / "tfk"), save_format="tf")
    with load_model(str(tmp_path / "tfk")) as loaded:
        assert loaded.signature.input_names == ("features",)
        assert loaded.signature.inputs[0].shape == (None, 6)


def test_keras_file(tiny_keras_file):
    with load_model(str(tiny_keras_file)) as model:
        assert model.spec.kind is ModelKind.KERAS_FILE
        assert model.is_temporary_export
        _assert_tiny_signature(model)
        export_dir = model.saved_model_dir
    assert not os.path.exists(export_dir), "the temporary export is removed on close"


def test_h5_file(tmp_path, tiny_keras_model):
    path = tmp_path / "tiny.h5"
    tiny_keras_model.save(str(path))
    with load_model(str(path)) as model:
        _assert_tiny_signature(model)


def test_keras_application_by_name_case_insensitive():
    with load_model("keras:mobilenetv3small", weights="none") as model:
        assert model.spec.location == "MobileNetV3Small"
        assert model.model_info["keras_application"] == "MobileNetV3Small"
        assert model.signature.input_names == ("input_layer",)  # the InputLayer's name, not "keras_tensor"
        assert model.signature.outputs[0].shape == (None, 1000)


def test_unknown_keras_name_suggests_close_names():
    with pytest.raises(ModelLoadError, match="keras:ResNet50"):
        load_model("keras:ResNet05", weights="none")


def test_imagenet_weights_offline_say_what_to_do(monkeypatch):
    import keras

    def offline(*args, **kwargs):
        raise OSError("URL fetch failure: no network")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    monkeypatch.setattr("keras.src.utils.file_utils.get_file", offline)
    with pytest.raises(ModelLoadError, match="needs network access or a Keras cache"):
        load_model("keras:MobileNetV3Small", weights="imagenet")


class _HubStyle(tf.Module):
    """A TF2 Hub-style model: a traced __call__, no signatures."""

    def __init__(self):
        self.w = tf.Variable([[1.0], [2.0]])

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="inputs")])
    def __call__(self, inputs):
        return tf.matmul(inputs, self.w)


@pytest.mark.parametrize("prefix", ["hub:", ""])
def test_signatureless_model_gets_serving_default_from_call(tmp_path, prefix):
    tf.saved_model.save(_HubStyle(), str(tmp_path / "hub"), signatures={})  # no signatures, like many Hub models
    assert read_signatures(str(tmp_path / "hub")) == {}
    with load_model(prefix + str(tmp_path / "hub")) as model:
        assert model.spec.kind is (ModelKind.HUB if prefix else ModelKind.SAVED_MODEL)
        assert model.signature.input_names == ("inputs",)
        assert model.signature.output_names == ("output_0",)
        loaded = tf.saved_model.load(model.saved_model_dir)
        out = loaded.signatures["serving_default"](inputs=tf.constant([[1.0, 1.0]]))
        np.testing.assert_allclose(out["output_0"].numpy(), [[3.0]])


def test_hub_handle_unreachable_says_offline(monkeypatch):
    import tensorflow_hub as hub

    def unreachable(handle):
        raise OSError("Name or service not known")

    monkeypatch.setattr(hub, "resolve", unreachable)
    with pytest.raises(ModelLoadError, match="needs network access or a cached copy"):
        load_model("https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/classification/5")


def test_lambda_layer_refused_in_safe_mode_and_allowed_on_opt_in(tmp_path):
    import keras

    inputs = keras.Input((3,), name="x")
    model = keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2.0)(inputs))
    path = tmp_path / "lambda.keras"
    model.save(str(path))
    with pytest.raises(ModelLoadError, match="--unsafe_deserialization"):
        load_model(str(path))
    with load_model(str(path), unsafe_deserialization=True) as loaded:
        assert loaded.signature.input_names == ("x",)


def test_custom_layer_error_names_the_missing_object(tmp_path):
    import keras

    @keras.saving.register_keras_serializable(package="tests")
    class Doubler(keras.layers.Layer):
        def call(self, x):
            return x * 2

    inputs = keras.Input((3,), name="x")
    keras.Model(inputs, Doubler()(inputs)).save(str(tmp_path / "custom.keras"))
    keras.saving.get_custom_objects().clear()
    with pytest.raises(ModelLoadError, match="custom class 'Doubler'.*--custom_objects=module.path") as raised:
        load_model(str(tmp_path / "custom.keras"))
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("make, fragment", [
    (lambda p: p / "missing", "does not exist"),
    (lambda p: (p / "notes.txt").write_text("hi") and p / "notes.txt", "is a file"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "empty directory"),
    (lambda p: (p / "other").mkdir() or (p / "other" / "x.bin").write_bytes(b"1") and p / "other", "no saved_model.pb"),
])
def test_bad_paths(tmp_path, make, fragment):
    with pytest.raises(ModelLoadError, match=fragment):
        load_model(str(make(tmp_path)))


def test_saved_model_pb_path_suggests_its_directory(tiny_saved_model):
    with pytest.raises(ModelLoadError, match="pass its directory instead"):
        load_model(str(tiny_saved_model / "saved_model.pb"))


def test_corrupt_saved_model_pb(tmp_path, tiny_saved_model):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_saved_model, broken)
    data = (broken / "saved_model.pb").read_bytes()
    (broken / "saved_model.pb").write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelLoadError, match="truncated or corrupt"):
        load_model(str(broken))


def test_unknown_signature_lists_the_available_ones(tiny_saved_model):
    with pytest.raises(ModelLoadError, match="available: serving_default"):
        load_model(str(tiny_saved_model), signature_key="predict")


def test_spec_parsing_kinds(tmp_path):
    assert parse_model_spec("keras:VGG16", weights="none").weights is None
    assert parse_model_spec("keras:VGG16").weights == "imagenet"
    assert parse_model_spec("https://tfhub.dev/x/1").kind is ModelKind.HUB
    with pytest.raises(ModelLoadError, match="no model given"):
        parse_model_spec("")
