"""Big models: weights held out of the graph while it is optimised, and the 2 GB protobuf limit.

The tiny fixture model's weights are all below the size that is held aside, so the
conversions here lower that size to hold its convolution and dense weights: the same code
path VGG16's 528 MB takes, on a model that converts in seconds.
"""

import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from tftrt_toolkit import ConversionConfig, convert
from tftrt_toolkit.backends import weights_size
from tftrt_toolkit.backends.cpu import savedmodel_stream
from tftrt_toolkit.backends.frozen import held_weights
from tftrt_toolkit.errors import ConversionError


def _run(saved_model_dir, images):
    loaded = tf.saved_model.load(str(saved_model_dir))
    return loaded.signatures["serving_default"](images=tf.constant(images))["probabilities"].numpy()


def _saved_graph_ops(saved_model_dir):
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as handle:
        saved_model.ParseFromString(handle.read())
    graph = saved_model.meta_graphs[0].graph_def
    return [node for function in graph.library.function for node in function.node_def]


@pytest.fixture(scope="module")
def held_conversion(tiny_saved_model, tmp_path_factory):
    """The tiny model converted with every weight above 100 elements held aside (its convolutions and dense)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(held_weights, "MIN_HELD_ELEMENTS", 100)
        out = tmp_path_factory.mktemp("held") / "fp32"
        messages = []
        result = convert(str(tiny_saved_model), str(out), ConversionConfig(backend="cpu", precision="fp32"),
                         progress=messages.append)
    return result, messages


def test_held_weights_come_back_as_constants_with_the_same_answers(held_conversion, tiny_saved_model,
                                                                  random_images):
    result, _ = held_conversion
    np.testing.assert_allclose(_run(result.path, random_images), _run(tiny_saved_model, random_images),
                               atol=1e-4, rtol=0)
    nodes = _saved_graph_ops(result.path)
    # Every weight is a real constant again (the 3x3x8x16 conv kernel among them), no stand-in is left.
    kernels = [n for n in nodes if n.op == "Const" and [d.size for d in n.attr["value"].tensor.tensor_shape.dim]
               == [3, 3, 8, 16]]
    assert kernels and all(len(n.attr["value"].tensor.tensor_content) == 3 * 3 * 8 * 16 * 4 for n in kernels)
    assert not any(n.op == "Placeholder" for n in nodes)


def _fingerprints(saved_model_dir):
    from tensorflow.core.protobuf import fingerprint_pb2
    from tensorflow.python.saved_model.pywrap_saved_model import fingerprinting

    with open(os.path.join(saved_model_dir, "fingerprint.pb"), "rb") as handle:
        stored = fingerprint_pb2.FingerprintDef.FromString(handle.read())
    return stored, fingerprint_pb2.FingerprintDef.FromString(fingerprinting.CreateFingerprintDef(saved_model_dir))


def test_streamed_weights_get_the_fingerprint_tensorflow_computes(tiny_saved_model, tmp_path, monkeypatch):
    # TensorFlow's way parses the whole file (2x the model in memory): it must not be needed.
    monkeypatch.setattr(held_weights, "MIN_HELD_ELEMENTS", 100)

    def must_not_parse(saved_model_dir):
        raise AssertionError("recomputed the fingerprint by parsing the whole saved_model.pb")

    monkeypatch.setattr(savedmodel_stream, "_write_fingerprint_by_parsing", must_not_parse)
    result = convert(str(tiny_saved_model), str(tmp_path / "out"), ConversionConfig(backend="cpu", precision="fp32"))
    stored, recomputed = _fingerprints(result.path)
    assert stored == recomputed and stored.saved_model_checksum != 0
    assert not [name for name in os.listdir(result.path) if "partial" in name]


def test_fingerprint64_is_tensorflows_hash(tiny_saved_model):
    # TensorFlow hashes the checkpoint index with the same Fingerprint64 into checkpoint_hash.
    from tensorflow.python.saved_model.pywrap_saved_model import fingerprinting
    from tensorflow.core.protobuf import fingerprint_pb2

    expected = fingerprint_pb2.FingerprintDef.FromString(
        fingerprinting.CreateFingerprintDef(str(tiny_saved_model))).checkpoint_hash
    with open(os.path.join(str(tiny_saved_model), "variables", "variables.index"), "rb") as handle:
        assert savedmodel_stream.fingerprint64(handle.read()) == expected


def test_batchnorm_is_folded_into_held_convolution_weights(held_conversion):
    result, _ = held_conversion
    summary = result.metadata["conversion_summary"]
    assert "fold_batchnorm" in summary["stages_that_changed_the_graph"]
    assert "Mul" not in summary["op_histogram"]


def test_stages_that_cannot_change_the_graph_are_skipped_and_say_why(held_conversion):
    result, _ = held_conversion
    stages = {s["name"]: s for s in result.metadata["conversion_summary"]["stages"]}
    # The tiny model is NHWC throughout: the layout pass has nothing to convert on a CPU.
    assert "NCHW" in stages["layout"]["skipped"] and not stages["layout"]["changed"]
    assert "skipped" not in stages["fusion"]


def test_each_step_is_reported_as_it_starts_and_ends(held_conversion):
    _, messages = held_conversion
    ends = [m.name for m in messages if getattr(m, "phase", None) == "end"]
    assert ends[:3] == ["load", "freeze", "cleanup"] and ends[-2:] == ["rebuild", "save"]
    assert all(m.seconds >= 0 for m in messages if getattr(m, "phase", None) == "end")
    assert "freeze …" in messages and any(m.startswith("save done in ") for m in messages)


def _saved_variable_shapes(saved_model_dir):
    reader = tf.train.load_checkpoint(os.path.join(saved_model_dir, "variables", "variables"))
    return sorted(tuple(shape) for name, shape in reader.get_variable_to_shape_map().items()
                  if not name.startswith("_CHECKPOINTABLE_OBJECT_GRAPH"))


def test_weights_past_the_graph_limit_stay_variables_with_the_same_answers(tiny_saved_model, tmp_path, monkeypatch,
                                                                          random_images):
    # The tiny model stands in for a > 2 GB one: the limit is lowered below its held weights.
    monkeypatch.setattr(held_weights, "MIN_HELD_ELEMENTS", 100)
    monkeypatch.setattr(weights_size, "GRAPH_CONSTANTS_BUDGET_BYTES", 1000)
    result = convert(str(tiny_saved_model), str(tmp_path / "out"), ConversionConfig(backend="cpu", precision="fp32"))
    assert result.metadata["conversion_summary"]["weights_stored_as"] == "variables"
    np.testing.assert_allclose(_run(result.path, random_images), _run(tiny_saved_model, random_images),
                               atol=1e-4, rtol=0)
    # The weights are in the checkpoint (the 3x3x8x16 conv kernel among them), not graph constants.
    assert (3, 3, 8, 16) in _saved_variable_shapes(result.path)
    assert not any(n.op == "Const" and len(n.attr["value"].tensor.tensor_content) >= 3 * 3 * 8 * 16 * 4
                   for n in _saved_graph_ops(result.path))


def test_int8_past_the_graph_limit_is_refused_before_freezing(tiny_saved_model, tmp_path, monkeypatch):
    monkeypatch.setattr(weights_size, "GRAPH_CONSTANTS_BUDGET_BYTES", 1000)
    from tftrt_toolkit.backends.cpu import backend as cpu_backend
    from tftrt_toolkit.backends.cpu.backend import CpuBackend
    from tftrt_toolkit.models.loader import load_model

    def must_not_freeze(*args, **kwargs):
        raise AssertionError("froze a model it should have refused")

    monkeypatch.setattr(cpu_backend, "freeze_signature", must_not_freeze)
    with load_model(str(tiny_saved_model)) as model:
        with pytest.raises(ConversionError, match="limits to 2 GB") as caught:
            CpuBackend().convert(model, ConversionConfig(backend="cpu", precision="int8"),
                                 calibration_input_fn=lambda: iter(()))
    assert "\n" not in str(caught.value) and "--precision=fp32" in str(caught.value)


def _free_memory_bytes() -> int:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


BIG_LAYER_SHAPE = (16384, 12288)  # 805 MB of float32 each; three of them pass 2 GiB
BIG_MODEL_BYTES = 3 * BIG_LAYER_SHAPE[0] * BIG_LAYER_SHAPE[1] * 4


@pytest.fixture(scope="module")
def model_past_2gb(tmp_path_factory):
    """A SavedModel of three large random Dense layers (2.4 GB of float32 weights), built here."""
    directory = tmp_path_factory.mktemp("big")
    # Converting holds the original and the converted weights, and the check loads both again.
    if _free_memory_bytes() < 3 * BIG_MODEL_BYTES + 4 * 2 ** 30:
        pytest.skip(f"converting the > 2 GB model needs {3 * BIG_MODEL_BYTES / 2 ** 30 + 4:.1f} GiB of free memory")
    if shutil.disk_usage(directory).free < BIG_MODEL_BYTES + 2 ** 30:
        pytest.skip(f"the > 2 GB model needs {BIG_MODEL_BYTES / 2 ** 30 + 1:.1f} GiB of free disk")

    class ThreeDense(tf.Module):
        def __init__(self):
            super().__init__()
            rows, columns = BIG_LAYER_SHAPE
            # Scaled so activations stay near 1 through three layers (zeros would make any answer match).
            self.kernels = [tf.Variable(tf.random.normal(shape, stddev=shape[0] ** -0.5, seed=index))
                            for index, shape in enumerate([(rows, columns), (columns, rows), (rows, columns)])]

        @tf.function(input_signature=[tf.TensorSpec([None, BIG_LAYER_SHAPE[0]], tf.float32, name="features")])
        def serve(self, features):
            x = features
            for kernel in self.kernels:
                x = tf.nn.relu(tf.matmul(x, kernel))
            return {"scores": x}

    module = ThreeDense()
    path = str(directory / "three_dense")
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    del module
    return path


@pytest.mark.slow
def test_model_past_2gb_converts_with_its_weights_as_variables(model_past_2gb, tmp_path):
    result = convert(model_past_2gb, str(tmp_path / "out"), ConversionConfig(backend="cpu", precision="fp32"))
    assert result.metadata["conversion_summary"]["weights_stored_as"] == "variables"
    features = np.random.default_rng(0).standard_normal((2, BIG_LAYER_SHAPE[0])).astype(np.float32)
    answers = []
    for path in (model_past_2gb, result.path):
        loaded = tf.saved_model.load(str(path))
        answers.append(loaded.signatures["serving_default"](features=tf.constant(features))["scores"].numpy())
        del loaded
    assert np.abs(answers[0]).max() > 0
    np.testing.assert_allclose(answers[1], answers[0], rtol=1e-4, atol=1e-3)


def test_tensorrt_backend_refuses_weights_tftrt_would_freeze_past_2gb(tiny_saved_model, monkeypatch):
    from tftrt_toolkit.backends.tensorrt import TensorRTBackend
    from tftrt_toolkit.models.loader import load_model

    monkeypatch.setattr(weights_size, "GRAPH_CONSTANTS_BUDGET_BYTES", 1000)
    built = []

    def converter_factory(**kwargs):
        built.append(kwargs)
        raise RuntimeError("stop here: the double only records that TF-TRT would have been called")

    backend = TensorRTBackend(converter_factory=converter_factory)
    with load_model(str(tiny_saved_model)) as model:
        with pytest.raises(ConversionError, match="TF-TRT freezes them into one graph") as caught:
            backend.convert(model, ConversionConfig(backend="tensorrt", precision="fp16"))
        assert "\n" not in str(caught.value) and built == []
        # TF-TRT keeps variables in dynamic-shape mode with graph freezing disabled: then it is its call.
        monkeypatch.setenv("TF_TRT_EXPERIMENTAL_FEATURES", "disable_graph_freezing")
        with pytest.raises(ConversionError, match="TF-TRT conversion failed"):
            backend.convert(model, ConversionConfig(backend="tensorrt", precision="fp16", use_dynamic_shape=True))
        assert len(built) == 1
