"""The streamed save writes a held weight of every dtype a frozen graph can hold, byte for byte.

Held weights are streamed from their numpy arrays into saved_model.pb; a dtype the buffer
protocol cannot describe (ml_dtypes' bfloat16) once crashed every bf16 conversion.
"""

import os

import numpy as np
import pytest
import tensorflow as tf

from tftrt_toolkit.backends.cpu.rebuild import save_function
from tftrt_toolkit.backends.frozen.held_weights import HeldWeights, make_placeholder


def _values():
    rng = np.random.default_rng(0)
    floats = rng.normal(size=(3, 5)).astype(np.float32)
    return {
        "bfloat16": (tf.bfloat16, floats.astype(tf.bfloat16.as_numpy_dtype)),
        "float16": (tf.float16, floats.astype(np.float16)),
        "float32": (tf.float32, floats),
        "float64": (tf.float64, floats.astype(np.float64)),
        "qint8": (tf.qint8, rng.integers(-128, 128, (4, 3), dtype=np.int8).view(tf.qint8.as_numpy_dtype)),
        "quint8": (tf.quint8, rng.integers(0, 256, (4, 3), dtype=np.uint8).view(tf.quint8.as_numpy_dtype)),
        "qint32": (tf.qint32, rng.integers(-2 ** 31, 2 ** 31, (2, 3), dtype=np.int32).view(tf.qint32.as_numpy_dtype)),
        "int8": (tf.int8, rng.integers(-128, 128, (7,), dtype=np.int8)),
        "int16": (tf.int16, rng.integers(-2 ** 15, 2 ** 15, (2, 2), dtype=np.int16)),
        "int64": (tf.int64, rng.integers(-2 ** 62, 2 ** 62, (3,), dtype=np.int64)),
        "bool": (tf.bool, rng.integers(0, 2, (2, 4)).astype(bool)),
        "scalar": (tf.float32, np.array(1.25, np.float32)),  # 0-d
    }


def _graph_with_held_constants(values):
    """A GraphDef returning each value (an Identity of a Const), every Const held aside as the passes hold weights."""
    from tensorflow.python.framework import tensor_util

    graph_def = tf.compat.v1.GraphDef()
    held = {}
    for name, (dtype, value) in values.items():
        const = graph_def.node.add(name=f"{name}_weight", op="Const")
        const.attr["dtype"].type = dtype.as_datatype_enum
        const.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(value, dtype=dtype))
        out = graph_def.node.add(name=name, op="Identity", input=[const.name])
        out.attr["T"].type = dtype.as_datatype_enum
        make_placeholder(const, value)
        held[const.name] = value
    return graph_def, HeldWeights(held)


def test_every_dtype_streams_into_saved_model_and_loads_back_byte_identical(tmp_path):
    from tensorflow.python.eager import wrap_function

    values = _values()
    graph_def, held = _graph_with_held_constants(values)
    names = list(values)
    function = wrap_function.function_from_graph_def(held.with_stand_ins(graph_def), [], [f"{n}:0" for n in names])
    output = tmp_path / "saved"
    save_function(function, str(output), "serving_default", held.values)

    loaded = tf.saved_model.load(str(output))
    outputs = loaded.signatures["serving_default"]()
    assert len(outputs) == len(names)
    for index, name in enumerate(names):
        dtype, expected = values[name]
        got = outputs[f"output_{index}"]
        assert got.dtype == dtype, name
        assert got.shape == expected.shape, name
        assert np.asarray(got.numpy()).tobytes() == np.ascontiguousarray(expected).tobytes(), name
    assert os.path.exists(output / "fingerprint.pb")


@pytest.mark.parametrize("name", ["bfloat16", "qint8", "bool", "scalar"])
def test_the_file_written_is_what_tensorflow_would_write(tmp_path, name):
    """The streamed file parses to the same SavedModel as TF's own save of the real constant."""
    from tensorflow.core.protobuf import saved_model_pb2
    from tensorflow.python.eager import wrap_function

    values = {name: _values()[name]}
    graph_def, held = _graph_with_held_constants(values)
    streamed, classic = tmp_path / "streamed", tmp_path / "classic"
    stand_ins = wrap_function.function_from_graph_def(held.with_stand_ins(graph_def), [], [f"{name}:0"])
    real = wrap_function.function_from_graph_def(held.restored(graph_def), [], [f"{name}:0"])
    save_function(real, str(classic), "serving_default")
    save_function(stand_ins, str(streamed), "serving_default", held.values)

    def constant_tensor(path):
        saved = saved_model_pb2.SavedModel.FromString((path / "saved_model.pb").read_bytes())
        consts = [node.attr["value"].tensor for function in saved.meta_graphs[0].graph_def.library.function
                  for node in function.node_def if node.op == "Const" and node.name.startswith(name)]
        assert len(consts) == 1
        return tf.make_ndarray(consts[0])

    np.testing.assert_array_equal(constant_tensor(streamed), constant_tensor(classic))
