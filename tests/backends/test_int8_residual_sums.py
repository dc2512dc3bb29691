"""cpu int8: residual adds with no ReLU after them (MobileNet/EfficientNet blocks) run inside the int8 convs."""

import numpy as np
import pytest

from tftrt_toolkit import pipeline
from tftrt_toolkit.config import ConversionConfig

from tests.backends.test_cpu_int8 import CALIBRATION_BATCH, CALIBRATION_STEPS, IMAGE_SIZE, _calibration_fn, _images, \
    _serve, needs_int8
from tests.every_cpu import python_in_child, smaller_cpu_env
from tests.graph_helpers import give_batchnorms_trained_statistics
from tests.extras import needs_inc

FUSED_SUM_OP = "QuantizedConv2DWithBiasSumAndReluAndRequantize"


def _build_inverted_residual_cnn():
    """A stem, three MobileNetV2 blocks (the 2nd and 3rd add their input back, with no ReLU after) and a head."""
    import keras

    keras.utils.set_random_seed(2)
    inputs = keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE, 3), name="images")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU(6.0)(x)

    def block(x, channels, residual):
        y = keras.layers.Conv2D(channels * 3, 1, use_bias=False)(x)
        y = keras.layers.BatchNormalization()(y)
        y = keras.layers.ReLU(6.0)(y)
        y = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False)(y)
        y = keras.layers.BatchNormalization()(y)
        y = keras.layers.ReLU(6.0)(y)
        y = keras.layers.Conv2D(channels, 1, use_bias=False)(y)
        y = keras.layers.BatchNormalization()(y)
        return keras.layers.Add()([y, x]) if residual else y

    x = block(x, 24, residual=False)
    x = block(x, 24, residual=True)
    x = block(x, 24, residual=True)
    x = keras.layers.Conv2D(64, 1, activation="relu6")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(10, name="logits")(x)
    model = keras.Model(inputs, outputs, name="inverted_residual_cnn")
    give_batchnorms_trained_statistics(model, seed=2)
    return model


@pytest.fixture(scope="module")
def inverted_residual_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("int8_models") / "inverted_residual_cnn"
    _build_inverted_residual_cnn().export(str(path))
    return path


def _convert(model_dir, output, **options):
    return pipeline.convert(str(model_dir), str(output), ConversionConfig(backend="cpu", precision="int8", **options),
                            calibration_input_fn=_calibration_fn(CALIBRATION_BATCH * CALIBRATION_STEPS), progress=False)


@pytest.fixture(scope="module")
def fused_model(inverted_residual_model, tmp_path_factory):
    return _convert(inverted_residual_model, tmp_path_factory.mktemp("int8_out") / "fused")


@pytest.fixture(scope="module")
def islands_model(inverted_residual_model, tmp_path_factory):
    return _convert(inverted_residual_model, tmp_path_factory.mktemp("int8_out") / "islands",
                    int8_fuse_residual_adds=False)


def _agreement(expected, actual):
    relative = float(np.linalg.norm(actual - expected) / np.linalg.norm(expected))
    return relative, float(np.mean(actual.argmax(1) == expected.argmax(1)))


@needs_int8
@needs_inc
def test_residual_adds_leave_no_fp32_add_between_int8_convs(fused_model, islands_model):
    fused = fused_model.metadata["conversion_summary"]
    islands = islands_model.metadata["conversion_summary"]
    # Without the rewrite, INC adds both residuals in fp32, between Dequantize and QuantizeV2 ops.
    assert islands["int8"]["residual_adds"] == {"enabled": False}
    assert FUSED_SUM_OP not in islands["op_histogram"]
    assert islands["op_histogram"]["Dequantize"] >= 4 and islands["op_histogram"]["QuantizeV2"] >= 3
    report = fused["int8"]["residual_adds"]
    assert report["residual_adds_fused"] == 2 and report["fp32_adds_of_int8_values_left"] == 0
    assert fused["op_histogram"][FUSED_SUM_OP] == 2
    # Left: the QuantizeV2 of the image and of the dense head's input, the Dequantize before the pooling.
    assert fused["op_histogram"]["QuantizeV2"] == 2 and fused["op_histogram"]["Dequantize"] == 1
    assert "AddN" not in fused["op_histogram"]
    assert fused["int8"]["recipe"]["residual_adds"].startswith("fused into the int8 conv")
    assert fused["int8"]["layers_quantized"] == islands["int8"]["layers_quantized"] == fused["int8"]["layers_total"]


@needs_int8
@needs_inc
def test_fused_residual_adds_keep_the_outputs(fused_model, islands_model, inverted_residual_model):
    images = _images(32, seed=99)
    original = _serve(inverted_residual_model, images)
    fused, islands = _serve(fused_model.path, images), _serve(islands_model.path, images)
    fused_error, fused_agreement = _agreement(original, fused)
    islands_error, islands_agreement = _agreement(original, islands)
    assert fused_error < 0.1 and fused_agreement >= 0.9
    # No worse than adding in fp32 (one rounding fewer per add), up to noise.
    assert fused_error < islands_error * 1.25
    assert _agreement(islands, fused)[0] < 0.1


@needs_int8
@needs_inc
def test_fused_residual_adds_run_on_an_avx2_cpu_with_onednn(fused_model, inverted_residual_model, tmp_path):
    # No VNNI: u8 x s8 products are added in int16 there (the guard checked the convs now reading uint8).
    images = _images(8, seed=7)
    np.save(tmp_path / "images.npy", images)
    script = (
        "import json, sys, numpy as np, tensorflow as tf\n"
        "loaded = tf.saved_model.load(sys.argv[1])\n"
        "out = loaded.signatures['serving_default'](images=tf.constant(np.load(sys.argv[2])))\n"
        "print(json.dumps(next(iter(out.values())).numpy().tolist()))\n"
    )
    result = np.asarray(python_in_child(script, fused_model.path, tmp_path / "images.npy", env=smaller_cpu_env(True)))
    error, agreement = _agreement(_serve(inverted_residual_model, images), result)
    assert result.shape == (8, 10) and error < 0.15 and agreement >= 0.75


def test_a_summand_read_after_its_in_place_sum_is_refused():
    from tensorflow.core.framework import graph_pb2

    from tftrt_toolkit.backends.cpu.int8.residual_sums import check_in_place_sums
    from tftrt_toolkit.errors import ConversionError

    graph = graph_pb2.GraphDef()
    for name, op, inputs in [("images", "Placeholder", []), ("skip", "QuantizeV2", ["images"]),
                             ("conv", "QuantizedConv2DWithBiasAndReluAndRequantize", ["skip"]),
                             ("sum", FUSED_SUM_OP, ["conv"] * 9 + ["skip", "skip:1", "skip:2"]),
                             ("head", "QuantizedConv2DWithBiasAndReluAndRequantize", ["sum"])]:
        graph.node.add(name=name, op=op, input=inputs)
    check_in_place_sums(graph)  # "conv" reads the summand before the sum: safe

    graph.node.add(name="late", op="Dequantize", input=["skip", "skip:1", "skip:2"])
    with pytest.raises(ConversionError, match="summand skip is also read by \\['late'\\].*int8_fuse_residual_adds=false"):
        check_in_place_sums(graph)
