"""The model files users bring, built in fixtures: each converts on the cpu backend (fp32) and matches its source within 1e-4.

Sequential (.keras, .h5), functional multi-input/multi-output, dynamic spatial dims, integer
inputs, a custom layer, a subclassed model, Keras-2-written .h5 and .keras (tf_keras) and a
tf_keras SavedModel. The expected outputs are computed from the model in memory before it is saved,
so a loader that drops or re-initialises weights fails here.
"""

import os
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from tftrt_toolkit import ConversionConfig, convert
from tftrt_toolkit.errors import ConfigError, ModelLoadError
from tftrt_toolkit.models.keras_files import resolve_custom_objects
from tftrt_toolkit.models.loader import load_model

TOLERANCE = 1e-4

CUSTOM_LAYERS_SOURCE = textwrap.dedent('''
    """Custom Keras classes, not registered with Keras: only custom_objects can provide them."""
    import keras


    class ScaledDense(keras.layers.Layer):
        """A dense layer with its own weights and a config value (scale)."""

        def __init__(self, units, scale=2.0, **kwargs):
            super().__init__(**kwargs)
            self.units = units
            self.scale = scale

        def build(self, input_shape):
            self.kernel = self.add_weight(shape=(input_shape[-1], self.units), initializer="glorot_uniform", name="kernel")
            self.bias = self.add_weight(shape=(self.units,), initializer="random_normal", name="bias")

        def call(self, x):
            return self.scale * keras.ops.matmul(x, self.kernel) + self.bias

        def get_config(self):
            return {**super().get_config(), "units": self.units, "scale": self.scale}


    class TinySubclassed(keras.Model):
        """A subclassed model: no symbolic inputs, only the shape it was built with."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.hidden = keras.layers.Dense(8, activation="relu")
            self.head = keras.layers.Dense(3)

        def call(self, x):
            return self.head(self.hidden(x))
''')


@pytest.fixture(scope="module")
def custom_layers(tmp_path_factory):
    """(path of zoo_custom_layers.py, the imported module): the classes a custom-layer model needs."""
    path = tmp_path_factory.mktemp("custom") / "zoo_custom_layers.py"
    path.write_text(CUSTOM_LAYERS_SOURCE)
    return str(path), resolve_custom_objects(str(path))


def _rng_inputs(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _convert_and_compare(model_path, tmp_path, inputs, expected, **load_options):
    """Convert on cpu/fp32, run the output with plain TF, compare each output with ``expected`` {name: array}."""
    with load_model(str(model_path), **load_options) as loaded:
        result = convert(loaded, str(tmp_path / "converted"), ConversionConfig(backend="cpu", precision="fp32"),
                         progress=lambda message: None)
    serving = tf.saved_model.load(result.path)
    outputs = serving.signatures["serving_default"](**{name: tf.constant(value) for name, value in inputs.items()})
    assert sorted(outputs) == sorted(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(outputs[name].numpy(), value, atol=TOLERANCE, rtol=TOLERANCE, err_msg=name)
    return result


def _sequential():
    import keras

    keras.utils.set_random_seed(1)
    return keras.Sequential([
        keras.Input((8, 8, 3)),
        keras.layers.Conv2D(4, 3, activation="relu"),
        keras.layers.BatchNormalization(),
        keras.layers.Flatten(),
        keras.layers.Dense(5, name="scores"),
    ], name="small_sequential")


@pytest.mark.parametrize("suffix", [".keras", ".h5", ".hdf5"])
def test_sequential_model_file(tmp_path, suffix):
    model = _sequential()
    x = _rng_inputs((3, 8, 8, 3))
    expected = {"scores": model(x).numpy()}
    path = tmp_path / f"small{suffix}"
    model.save(str(path))
    with load_model(str(path)) as loaded:
        assert loaded.signature.output_names == ("scores",)  # the last layer's name, as for functional models
    _convert_and_compare(path, tmp_path, {loaded.signature.input_names[0]: x}, expected)


def test_sequential_built_by_calling_it_takes_any_batch_size(tmp_path):
    import keras

    keras.utils.set_random_seed(2)
    model = keras.Sequential([keras.layers.Dense(4, activation="relu"), keras.layers.Dense(2, name="out")])
    model(np.zeros((1, 6), np.float32))  # built on a batch of 1: its recorded input shape is (1, 6)
    x = _rng_inputs((5, 6))
    expected = {"out": model(x).numpy()}
    model.save(str(tmp_path / "lazy.keras"))
    with load_model(str(tmp_path / "lazy.keras")) as loaded:
        assert loaded.signature.inputs[0].shape == (None, 6)
        name = loaded.signature.input_names[0]
    _convert_and_compare(tmp_path / "lazy.keras", tmp_path, {name: x}, expected)


def test_functional_multi_input_multi_output(tmp_path):
    import keras

    keras.utils.set_random_seed(3)
    image = keras.Input((6, 6, 2), name="image")
    meta = keras.Input((4,), name="meta")
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(3, 3, padding="same")(image))
    joined = keras.layers.Concatenate()([x, meta])
    model = keras.Model([image, meta], [keras.layers.Dense(2, name="label")(joined),
                                        keras.layers.Dense(1, activation="sigmoid", name="score")(joined)])
    inputs = {"image": _rng_inputs((2, 6, 6, 2)), "meta": _rng_inputs((2, 4), seed=1)}
    label, score = model([inputs["image"], inputs["meta"]])
    model.save(str(tmp_path / "multi.keras"))
    _convert_and_compare(tmp_path / "multi.keras", tmp_path, inputs, {"label": label.numpy(), "score": score.numpy()})


def test_functional_with_dict_inputs_and_outputs(tmp_path):
    import keras

    keras.utils.set_random_seed(4)
    a, b = keras.Input((3,), name="a"), keras.Input((2,), name="b")
    joined = keras.layers.Concatenate()([a, b])
    model = keras.Model({"a": a, "b": b}, {"sum": keras.layers.Dense(1, name="sum_layer")(joined),
                                           "code": keras.layers.Dense(4, name="code_layer")(joined)})
    inputs = {"a": _rng_inputs((2, 3)), "b": _rng_inputs((2, 2), seed=1)}
    expected = {name: value.numpy() for name, value in model(inputs).items()}
    model.save(str(tmp_path / "dicts.keras"))
    _convert_and_compare(tmp_path / "dicts.keras", tmp_path, inputs, expected)


def test_dynamic_spatial_dims(tmp_path):
    import keras

    keras.utils.set_random_seed(5)
    inputs = keras.Input((None, None, 3), name="pixels")
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    outputs = keras.layers.Dense(2, name="logits")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    model.save(str(tmp_path / "dynamic.keras"))
    converted = None
    for size in (7, 12):  # one converted model serves every image size
        x = _rng_inputs((2, size, size + 3, 3), seed=size)
        expected = {"logits": model(x).numpy()}
        if converted is None:
            converted = _convert_and_compare(tmp_path / "dynamic.keras", tmp_path, {"pixels": x}, expected)
            assert converted.metadata["signature"]["inputs"][0]["shape"] == [None, None, None, 3]
        else:
            serving = tf.saved_model.load(converted.path).signatures["serving_default"]
            np.testing.assert_allclose(serving(pixels=tf.constant(x))["logits"].numpy(), expected["logits"], atol=TOLERANCE)


def test_integer_inputs(tmp_path):
    import keras

    keras.utils.set_random_seed(6)
    ids = keras.Input((5,), dtype="int32", name="token_ids")
    x = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(20, 4)(ids))
    model = keras.Model(ids, keras.layers.Dense(3, name="classes")(x))
    tokens = np.random.default_rng(0).integers(0, 20, size=(4, 5)).astype(np.int32)
    expected = {"classes": model(tokens).numpy()}
    model.save(str(tmp_path / "ints.keras"))
    with load_model(str(tmp_path / "ints.keras")) as loaded:
        assert loaded.signature.inputs[0].dtype == "int32"
    _convert_and_compare(tmp_path / "ints.keras", tmp_path, {"token_ids": tokens}, expected)


@pytest.fixture(scope="module")
def custom_layer_model(custom_layers, tmp_path_factory):
    """(a .keras file whose model has a ScaledDense layer, an input batch, the expected outputs)."""
    import keras

    _, objects = custom_layers
    keras.utils.set_random_seed(7)
    inputs = keras.Input((4,), name="features")
    outputs = objects["ScaledDense"](3, scale=0.5, name="scaled")(keras.layers.Dense(6, activation="relu")(inputs))
    model = keras.Model(inputs, outputs)
    x = _rng_inputs((3, 4))
    path = tmp_path_factory.mktemp("custom_model") / "custom.keras"
    model.save(str(path))
    return path, x, {"scaled": model(x).numpy()}


def test_custom_layer_without_its_class_is_one_line_naming_it(custom_layer_model):
    path, _, _ = custom_layer_model
    with pytest.raises(ModelLoadError) as raised:
        load_model(str(path))
    message = str(raised.value)
    assert "'ScaledDense'" in message and "--custom_objects=module.path" in message and "custom_objects=" in message
    assert "\n" not in message


@pytest.mark.parametrize("form", ["file", "module path", "dict"])
def test_custom_layer_with_custom_objects_converts(custom_layer_model, custom_layers, tmp_path, monkeypatch, form):
    path, x, expected = custom_layer_model
    layers_file, objects = custom_layers
    if form == "file":
        custom_objects = layers_file
    elif form == "module path":
        monkeypatch.syspath_prepend(os.path.dirname(layers_file))
        custom_objects = "zoo_custom_layers"
    else:
        custom_objects = {"ScaledDense": objects["ScaledDense"]}
    _convert_and_compare(path, tmp_path, {"features": x}, expected, custom_objects=custom_objects)


def test_custom_objects_that_cannot_be_imported_say_so(tmp_path):
    with pytest.raises(ConfigError, match="'no_such_module_zoo' cannot be imported"):
        resolve_custom_objects("no_such_module_zoo")
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_custom_objects(str(tmp_path / "missing.py"))


def test_subclassed_model(custom_layers, tmp_path):
    import keras

    _, objects = custom_layers
    keras.utils.set_random_seed(8)
    model = objects["TinySubclassed"]()
    model(np.zeros((1, 5), np.float32))  # built by a call on one sample, as users do
    x = _rng_inputs((4, 5))
    expected = {"output_0": model(x).numpy()}
    model.save(str(tmp_path / "subclassed.keras"))
    with pytest.raises(ModelLoadError, match="'TinySubclassed'"):
        load_model(str(tmp_path / "subclassed.keras"))
    _convert_and_compare(tmp_path / "subclassed.keras", tmp_path, {"input_0": x}, expected, custom_objects=objects)


@pytest.mark.parametrize("kind", ["sequential", "functional"])
def test_keras2_h5_written_by_tf_keras(tmp_path, kind):
    import tf_keras

    tf_keras.utils.set_random_seed(9)
    if kind == "sequential":
        model = tf_keras.Sequential([tf_keras.layers.Conv2D(3, 3, input_shape=(6, 6, 2), activation="relu"),
                                     tf_keras.layers.BatchNormalization(),
                                     tf_keras.layers.GlobalAveragePooling2D(), tf_keras.layers.Dense(2, name="head")])
    else:
        inputs = tf_keras.Input((6, 6, 2), name="image")
        x = tf_keras.layers.GlobalAveragePooling2D()(tf_keras.layers.Conv2D(3, 3)(inputs))
        model = tf_keras.Model(inputs, tf_keras.layers.Dense(2, name="head")(x))
    x = _rng_inputs((2, 6, 6, 2))
    expected = {"head": model(x).numpy()}
    model.save(str(tmp_path / "legacy.h5"))  # the Keras 2 HDF5 writer
    with load_model(str(tmp_path / "legacy.h5")) as loaded:
        name = loaded.signature.input_names[0]
    _convert_and_compare(tmp_path / "legacy.h5", tmp_path, {name: x}, expected)


def test_tf_keras_saved_model(tmp_path):
    import tf_keras

    tf_keras.utils.set_random_seed(10)
    inputs = tf_keras.Input((5,), name="features")
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(2, name="scores")(tf_keras.layers.Dense(4, activation="relu")(inputs)))
    x = _rng_inputs((3, 5))
    expected = {"scores": model(x).numpy()}
    model.save(str(tmp_path / "tfk"), save_format="tf")
    _convert_and_compare(tmp_path / "tfk", tmp_path, {"features": x}, expected)


def _rewrite_keras_weights(source, target, edit):
    """Copy a .keras file, applying ``edit(h5py.File)`` to its model.weights.h5."""
    import zipfile

    import h5py

    work = target.parent / (target.name + ".weights.h5")
    with zipfile.ZipFile(source) as archive:
        work.write_bytes(archive.read("model.weights.h5"))
        with h5py.File(work, "r+") as weights:
            edit(weights)
        with zipfile.ZipFile(target, "w") as damaged:
            for name in archive.namelist():
                damaged.writestr(name, work.read_bytes() if name == "model.weights.h5" else archive.read(name))


def test_keras_file_with_damaged_weight_names_is_refused_and_nothing_is_written(tmp_path):
    model = _sequential()
    model.save(str(tmp_path / "good.keras"))
    damaged = tmp_path / "damaged.keras"
    _rewrite_keras_weights(tmp_path / "good.keras", damaged, lambda weights: weights.move("layers/dense", "layers/dxnse"))
    with pytest.raises(ModelLoadError, match="weights did not load: scores") as raised:
        convert(str(damaged), str(tmp_path / "out"), ConversionConfig(backend="cpu", precision="fp32"),
                progress=lambda message: None)
    assert "\n" not in str(raised.value)
    assert not os.path.exists(tmp_path / "out")


def test_h5_file_with_damaged_weight_names_is_refused(tmp_path):
    import h5py

    model = _sequential()
    model.save(str(tmp_path / "damaged.h5"))
    with h5py.File(tmp_path / "damaged.h5", "r+") as weights:
        weights.move("model_weights/scores", "model_weights/sxores")
    with pytest.raises(ModelLoadError, match="weights did not load.*'scores'"):
        load_model(str(tmp_path / "damaged.h5"))


def test_weights_keras_skips_with_only_a_warning_are_refused_too(custom_layers, tmp_path):
    """Keras loads a layer nested in a list whose weights group is missing, warns, and keeps random weights."""
    import keras

    class Nested(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.groups = [[keras.layers.Dense(4)], [keras.layers.Dense(4)]]

        def build(self, input_shape):
            for group in self.groups:
                group[0].build(input_shape)

        def call(self, x):
            for group in self.groups:
                x = group[0](x)
            return x

    inputs = keras.Input((4,), name="x")
    keras.Model(inputs, Nested(name="nested")(inputs)).save(str(tmp_path / "nested.keras"))
    damaged = tmp_path / "nested_damaged.keras"
    _rewrite_keras_weights(tmp_path / "nested.keras", damaged,
                           lambda weights: weights.move("layers/nested/groups/container_1", "layers/nested/groups/cx_1"))
    with pytest.raises(ModelLoadError, match="weights did not load.*layers/nested/groups/container_1 kept freshly initialised"):
        load_model(str(damaged), custom_objects={"Nested": Nested})


def test_keras_file_written_by_tf_keras(tmp_path):
    import tf_keras

    tf_keras.utils.set_random_seed(11)
    model = tf_keras.Sequential([tf_keras.layers.Dense(4, input_shape=(6,), activation="relu"),
                                 tf_keras.layers.Dense(2, name="head")])
    x = _rng_inputs((3, 6))
    expected = {"head": model(x).numpy()}
    model.save(str(tmp_path / "tfk.keras"))  # tf_keras' own .keras writer
    with load_model(str(tmp_path / "tfk.keras")) as loaded:
        name = loaded.signature.input_names[0]
    _convert_and_compare(tmp_path / "tfk.keras", tmp_path, {name: x}, expected)


def test_tf_keras_custom_layer_is_named_when_missing_and_loads_when_given(tmp_path):
    import sys

    import tf_keras

    layers_file = tmp_path / "zoo_tf_keras_layers.py"
    layers_file.write_text(textwrap.dedent('''
        import tf_keras


        class Tripler(tf_keras.layers.Layer):
            def call(self, x):
                return x * 3.0
    '''))
    tripler = resolve_custom_objects(str(layers_file))["Tripler"]
    inputs = tf_keras.Input((3,), name="x")
    tf_keras.Model(inputs, tripler(name="tripled")(inputs)).save(str(tmp_path / "tfk_custom.keras"))
    sys.modules.pop("zoo_tf_keras_layers")  # as on a machine where the module is not importable
    with pytest.raises(ModelLoadError, match="custom class 'Tripler'.*--custom_objects=module.path"):
        load_model(str(tmp_path / "tfk_custom.keras"))
    x = _rng_inputs((2, 3))
    _convert_and_compare(tmp_path / "tfk_custom.keras", tmp_path, {"x": x}, {"tripled": 3.0 * x},
                         custom_objects=str(layers_file))
