"""tftrt convert on a Keras file with a custom layer: one line naming the class without it, a correct conversion with --custom_objects."""

import textwrap

import numpy as np
import pytest
import tensorflow as tf

LAYERS_SOURCE = textwrap.dedent('''
    import keras


    class Offset(keras.layers.Layer):
        """Adds a learned offset: a custom layer with a weight of its own."""

        def build(self, input_shape):
            self.offset = self.add_weight(shape=(input_shape[-1],), initializer="random_normal", name="offset")

        def call(self, x):
            return x + self.offset
''')


@pytest.fixture(scope="module")
def custom_model(tmp_path_factory):
    """(the .keras file, the layers module file, an input batch, the expected output)."""
    import importlib.util

    import keras

    folder = tmp_path_factory.mktemp("custom_cli")
    layers_file = folder / "cli_custom_layers.py"
    layers_file.write_text(LAYERS_SOURCE)
    spec = importlib.util.spec_from_file_location("cli_custom_layers_build", layers_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    keras.utils.set_random_seed(12)
    inputs = keras.Input((5,), name="values")
    model = keras.Model(inputs, module.Offset(name="shifted")(keras.layers.Dense(3)(inputs)))
    x = np.random.default_rng(0).normal(size=(2, 5)).astype(np.float32)
    model.save(str(folder / "custom.keras"))
    return folder / "custom.keras", layers_file, x, model(x).numpy()


def test_without_the_class_convert_fails_in_one_line_naming_it(run_cli, custom_model, tmp_path):
    path, _, _, _ = custom_model
    result = run_cli("convert", f"--model={path}", f"--output={tmp_path / 'out'}", "--backend=cpu", expect_exit=3)
    errors = [line for line in result.err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "'Offset'" in errors[0] and "--custom_objects=module.path" in errors[0]
    assert not (tmp_path / "out").exists()


def test_with_custom_objects_convert_gives_the_same_outputs(run_cli, custom_model, tmp_path):
    path, layers_file, x, expected = custom_model
    run_cli("convert", f"--model={path}", f"--output={tmp_path / 'out'}", "--backend=cpu", "--precision=fp32",
            f"--custom_objects={layers_file}")
    serving = tf.saved_model.load(str(tmp_path / "out")).signatures["serving_default"]
    np.testing.assert_allclose(serving(values=tf.constant(x))["shifted"].numpy(), expected, atol=1e-4, rtol=1e-4)


def test_custom_objects_module_that_cannot_be_imported_is_a_config_error(run_cli, custom_model, tmp_path):
    path, _, _, _ = custom_model
    result = run_cli("convert", f"--model={path}", f"--output={tmp_path / 'out'}", "--backend=cpu",
                     "--custom_objects=no_such_layers_module", expect_exit=2)
    assert "'no_such_layers_module' cannot be imported" in result.err
