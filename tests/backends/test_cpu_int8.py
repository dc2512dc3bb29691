"""cpu int8: a tiny conv model through tftrt_toolkit.pipeline.convert, checked against fp32 and plain TF."""

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tftrt_toolkit import pipeline
from tftrt_toolkit import onednn
from tftrt_toolkit.backends.cpu import int8 as cpu_int8
from tftrt_toolkit.backends.cpu.int8 import fp32_check
from tftrt_toolkit.backends.cpu.int8.overflow_guard import pair_sums_overflow
from tftrt_toolkit.backends.precisions import offer_for
from tftrt_toolkit.config import ConversionConfig
from tftrt_toolkit.environment import probe
from tftrt_toolkit.errors import BackendUnavailable, DataError

from tests.extras import needs_inc
from tests.graph_helpers import give_batchnorms_trained_statistics

IMAGE_SIZE = 32
CALIBRATION_BATCH = 8
CALIBRATION_STEPS = 8  # 64 samples, above cpu_int8.MIN_CALIBRATION_SAMPLES

_INT8 = offer_for(probe(), "cpu", "int8")
needs_int8 = pytest.mark.skipif(not _INT8.available, reason=f"cpu int8 cannot run here: {_INT8.reason}")


def _build_residual_cnn():
    """Conv + BatchNorm + ReLU, a residual block and a dense head: the patterns ResNets have."""
    import keras

    keras.utils.set_random_seed(1)
    inputs = keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE, 3), name="images")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.Conv2D(16, 3, padding="same")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    shortcut = x
    x = keras.layers.Conv2D(16, 3, padding="same", use_bias=False)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(16, 1)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(keras.layers.Add()([x, shortcut]))
    x = keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(10, name="logits")(x)
    model = keras.Model(inputs, outputs, name="residual_cnn")
    give_batchnorms_trained_statistics(model, seed=1)
    return model


def _images(count: int, seed: int) -> np.ndarray:
    """Smooth random images (low-frequency patterns plus noise), closer to photos than white noise."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, size=(count, 4, 4, 3))
    smooth = np.repeat(np.repeat(coarse, IMAGE_SIZE // 4, axis=1), IMAGE_SIZE // 4, axis=2)
    return np.clip(smooth + rng.normal(0, 20, smooth.shape), 0, 255).astype(np.float32)


def _calibration_fn(samples: int, seed: int = 0):
    images = _images(samples, seed)

    def calibration_input_fn():
        for start in range(0, samples, CALIBRATION_BATCH):
            yield (images[start:start + CALIBRATION_BATCH],)

    return calibration_input_fn


@pytest.fixture(scope="module")
def residual_saved_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("int8_models") / "residual_cnn"
    _build_residual_cnn().export(str(path))
    return path


@pytest.fixture(scope="module")
def int8_model(residual_saved_model, tmp_path_factory):
    output = tmp_path_factory.mktemp("int8_out") / "int8"
    return pipeline.convert(str(residual_saved_model), str(output),
                            ConversionConfig(backend="cpu", precision="int8"),
                            calibration_input_fn=_calibration_fn(CALIBRATION_BATCH * CALIBRATION_STEPS))


def _serve(path, images):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    outputs = loaded.signatures["serving_default"](images=tf.constant(images))
    return next(iter(outputs.values())).numpy()


@needs_int8
@needs_inc
def test_int8_output_is_close_to_fp32(int8_model, residual_saved_model):
    # Data like the calibration data, but images calibration never saw.
    images = _images(16, seed=99)
    expected = _serve(residual_saved_model, images)
    actual = _serve(int8_model.path, images)
    # Tolerance: 4 quantized layers with 8-bit activations and weights give ~1-2% relative
    # error each (step = range/255); 10% on the logits leaves room for accumulation while a
    # wrong scale, sign or layout (errors of 50-100%+) still fails.
    relative_error = np.linalg.norm(actual - expected) / np.linalg.norm(expected)
    assert relative_error < 0.10, f"int8 logits differ from fp32 by {relative_error:.1%} (L2)"
    assert np.mean(actual.argmax(1) == expected.argmax(1)) >= 0.8


@needs_int8
@needs_inc
def test_int8_runs_int8_kernels_and_reports_what_it_did(int8_model):
    summary = int8_model.metadata["conversion_summary"]["int8"]
    assert summary["method"] == cpu_int8.METHOD
    assert summary["calibration_samples"] == CALIBRATION_BATCH * CALIBRATION_STEPS
    assert summary["layers_total"] == 5  # four convolutions and the dense head
    assert summary["layers_quantized"] == summary["layers_total"]
    assert 0 <= summary["output_relative_error"] < 0.10
    assert summary["worst_layers"] and all("relative_error" in layer for layer in summary["worst_layers"])
    histogram = int8_model.metadata["conversion_summary"]["op_histogram"]
    assert any(op.startswith("QuantizedConv2D") for op in histogram)
    assert "Conv2D" not in histogram and "_FusedConv2D" not in histogram


@needs_int8
@needs_inc
def test_int8_saved_model_loads_with_plain_tensorflow(int8_model, tmp_path):
    images_path = tmp_path / "images.npy"
    np.save(images_path, _images(2, seed=5))
    script = textwrap.dedent(f"""
        import json, sys
        import numpy as np
        import tensorflow as tf
        loaded = tf.saved_model.load({str(int8_model.path)!r})
        outputs = loaded.signatures["serving_default"](images=tf.constant(np.load({str(images_path)!r})))
        value = next(iter(outputs.values())).numpy()
        foreign = sorted(m for m in sys.modules if m.split(".")[0] in ("tftrt_toolkit", "neural_compressor"))
        print(json.dumps({{"shape": list(value.shape), "finite": bool(np.isfinite(value).all()), "foreign": foreign}}))
    """)
    # Plain TF with its oneDNN ops on (the default on VNNI/AMX CPUs; TF_ENABLE_ONEDNN_OPTS=1 elsewhere).
    env = onednn.environment_with(True, dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    env.pop("PYTHONPATH", None)
    done = subprocess.run([sys.executable, "-c", script], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"shape": [2, 10], "finite": True, "foreign": []}


@needs_int8
@needs_inc
def test_int8_model_records_that_it_needs_onednn_and_a_process_without_it_gets_one_line(int8_model, tmp_path):
    assert int8_model.metadata["runtime"]["requires_onednn"] is True
    images_path = tmp_path / "images.npy"
    np.save(images_path, _images(2, seed=5))
    env = onednn.environment_with(False, dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    done = subprocess.run([sys.executable, "-m", "tftrt_toolkit.cli.main", "predict", f"--model={int8_model.path}",
                           f"--data={images_path}"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 5, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "oneDNN" in lines[0] and "TF_ENABLE_ONEDNN_OPTS=1" in lines[0], done.stderr
    assert "InternalError" not in done.stderr and "Traceback" not in done.stderr
    done = subprocess.run([sys.executable, "-m", "tftrt_toolkit.cli.main", "inspect", f"--model={int8_model.path}"],
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "runtime: needs TensorFlow's oneDNN ops" in done.stdout


@needs_int8
@needs_inc
def test_too_few_calibration_samples_is_a_clear_error_and_writes_nothing(residual_saved_model, tmp_path):
    output = tmp_path / "int8"
    with pytest.raises(DataError, match=r"got 8 samples; at least 32"):
        pipeline.convert(str(residual_saved_model), str(output), ConversionConfig(backend="cpu", precision="int8"),
                         calibration_input_fn=_calibration_fn(8))
    assert not output.exists()


def test_int8_is_refused_where_onednn_int8_kernels_cannot_run():
    no_avx2 = dataclasses.replace(probe(), cpu_features=("sse4_1", "avx"))
    with pytest.raises(BackendUnavailable, match="AVX2"):
        cpu_int8.check_available(no_avx2)
    onednn_off = dataclasses.replace(probe(), cpu_features=("avx2", "fma"), onednn_enabled=False)
    with pytest.raises(BackendUnavailable, match="TF_ENABLE_ONEDNN_OPTS=1"):
        cpu_int8.check_available(onednn_off)


def test_missing_quantizer_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "neural_compressor", None)  # makes `import neural_compressor...` fail
    monkeypatch.setitem(sys.modules, "neural_compressor.tensorflow", None)
    with pytest.raises(BackendUnavailable, match="neural-compressor-tf"):
        cpu_int8.check_available(None)


def test_pair_sums_overflow_flags_exactly_the_channels_whose_int16_pair_sums_saturate():
    # One row of unsigned codes: input channels 0 and 1 both at 255, channels 2 and 3 small.
    codes = np.array([[255, 255, 10, 10]], dtype=np.int32)
    weights = np.zeros((1, 1, 4, 4), dtype=np.int32)
    weights[0, 0, :2, 0] = 127    # 255*127*2 = 64770: overflows
    weights[0, 0, :2, 1] = 64     # 255*64*2 = 32640: just fits
    weights[0, 0, :2, 2] = (127, -127)  # the pair cancels
    weights[0, 0, :2, 3] = -127   # -64770: overflows the other way
    weights[0, 0, 2:, :] = 127    # small activations: no overflow whatever the weights
    assert pair_sums_overflow(codes, weights).tolist() == [True, False, False, True]
    # Channels 1 and 2 are not a pair (pairs are 0-1 and 2-3): large values there never add up.
    assert not pair_sums_overflow(np.array([[0, 255, 255, 0]], dtype=np.int32), weights[..., 1:2] * 0 + 127).any()
    # A 3x3 filter: one kernel tap is enough.
    spatial = np.zeros((3, 3, 2, 1), dtype=np.int32)
    spatial[2, 1, :, 0] = 127
    assert pair_sums_overflow(np.array([[200, 200]], dtype=np.int32), spatial).tolist() == [True]
    assert pair_sums_overflow(np.array([[100, 100]], dtype=np.int32), spatial).tolist() == [False]


def _build_overflowing_cnn():
    """A ReLU layer then a 1x1 conv whose weights are all equal: its 8-bit pair sums leave int16."""
    import keras

    keras.utils.set_random_seed(2)
    inputs = keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE, 3), name="images")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)  # signed: the first conv is not checked
    x = keras.layers.Conv2D(8, 1, activation="relu", kernel_initializer="ones", bias_initializer="zeros")(x)
    x = keras.layers.Conv2D(4, 1, kernel_initializer=keras.initializers.Constant(0.5),
                            bias_initializer=keras.initializers.Constant(0.1))(x)
    outputs = keras.layers.GlobalAveragePooling2D(name="pooled")(x)
    return keras.Model(inputs, outputs, name="overflowing_cnn")


@needs_int8
@needs_inc
def test_int8_narrows_the_weights_whose_products_overflow_int16_and_keeps_the_output(tmp_path):
    saved = tmp_path / "overflowing_cnn"
    _build_overflowing_cnn().export(str(saved))
    images = _images(16, seed=7)
    expected = _serve(saved, images)

    guarded = pipeline.convert(str(saved), str(tmp_path / "guarded"), ConversionConfig(backend="cpu", precision="int8"),
                               calibration_input_fn=_calibration_fn(64))
    guard = guarded.metadata["conversion_summary"]["int8"]["int16_overflow_guard"]
    # The second conv reads the ReLU's unsigned codes; equal weights are all 127, so every pair of
    # bright pixels' channels reaches 2*255*127 > 32767: all 4 output channels get 7-bit weights.
    assert guard["enabled"] is True and guard["layers_checked"] == 1
    assert guard["layers_narrowed"] == 1 and guard["channels_narrowed"] == guard["channels_checked"] == 4
    actual = _serve(guarded.path, images)
    relative_error = np.linalg.norm(actual - expected) / np.linalg.norm(expected)
    # Halved weights with doubled ranges are the same numbers to 7 bits: a wrong range would be 2x off.
    assert relative_error < 0.05, f"int8 with narrowed weights differs from fp32 by {relative_error:.1%}"

    plain = pipeline.convert(str(saved), str(tmp_path / "plain"),
                             ConversionConfig(backend="cpu", precision="int8", int8_overflow_safe_weights=False),
                             calibration_input_fn=_calibration_fn(64))
    assert plain.metadata["conversion_summary"]["int8"]["int16_overflow_guard"] == {"enabled": False}


def _build_pooled_cnn():
    """Two convs after ReLUs, then the spatial mean: the output is each channel's mean, so a
    systematic shift from weight rounding shows while rounding noise averages out."""
    import keras

    keras.utils.set_random_seed(3)
    inputs = keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE, 3), name="images")
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(32, 1, activation="relu", bias_initializer=keras.initializers.Constant(0.5))(x)
    # One weight of 1.0 per output channel sets the 8-bit step to 1/127; the others sit 0.4 step
    # above a code (25.4/127), so each rounds down by 0.4 step and 31 positive inputs add that up.
    weights = np.full((1, 1, 32, 4), 25.4 / 127, dtype=np.float32)
    weights[0, 0, 0, :] = 1.0
    x = keras.layers.Conv2D(4, 1, kernel_initializer=keras.initializers.Constant(weights))(x)
    outputs = keras.layers.GlobalAveragePooling2D(name="pooled")(x)
    return keras.Model(inputs, outputs, name="pooled_cnn")


@needs_int8
@needs_inc
def test_int8_bias_correction_takes_back_the_mean_shift_of_weight_rounding(tmp_path):
    saved = tmp_path / "pooled_cnn"
    _build_pooled_cnn().export(str(saved))
    images = _images(16, seed=11)
    expected = _serve(saved, images)
    errors = {}
    for corrected in (True, False):
        config = ConversionConfig(backend="cpu", precision="int8", int8_bias_correction=corrected)
        model = pipeline.convert(str(saved), str(tmp_path / f"int8_{corrected}"), config,
                                 calibration_input_fn=_calibration_fn(64))
        report = model.metadata["conversion_summary"]["int8"]["bias_correction"]
        assert report["enabled"] is corrected
        if corrected:
            assert report["layers_corrected"] == 2 and report["largest_shift"] > 0
        errors[corrected] = float(np.mean(np.abs(_serve(model.path, images) - expected)))
    # Weight rounding shifts every pooled output down; the correction takes most of that back.
    assert errors[True] < 0.5 * errors[False], errors


@needs_int8
@needs_inc
def test_dense_relu_layers_are_quantized_and_checked(tmp_path):
    # VGG-style heads (Dense + ReLU) become quantized MatMuls whose output type attr is not
    # the convolutions' out_type; the drift check once crashed on them with a KeyError.
    import keras

    keras.utils.set_random_seed(2)
    inputs = keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE, 3), name="images")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(32, activation="relu", name="fc1")(x)
    outputs = keras.layers.Dense(10, name="logits")(x)
    source = tmp_path / "dense_relu"
    keras.Model(inputs, outputs, name="dense_relu").export(str(source))
    result = pipeline.convert(str(source), str(tmp_path / "int8"), ConversionConfig(backend="cpu", precision="int8"),
                              calibration_input_fn=_calibration_fn(CALIBRATION_BATCH * CALIBRATION_STEPS))
    summary = result.metadata["conversion_summary"]["int8"]
    assert summary["layers_quantized"] == summary["layers_total"] == 3
    assert any("fc1" in layer["layer"] for layer in summary["worst_layers"])


@needs_int8
@needs_inc
@pytest.mark.parametrize("agreement, warns", [(0.625, False), (0.25, True)])
def test_only_a_check_worse_than_even_odds_warns(residual_saved_model, tmp_path, monkeypatch, agreement, warns):
    # Eight calibration samples cannot tell noise from loss: 5 of 8 is what the shipped crops give
    # a model that keeps every top-1 on 750 ImageNet photos. Only a broken-looking check warns.
    real = fp32_check.compare_with_fp32

    def with_agreement(*args, **kwargs):
        return {**real(*args, **kwargs), "top1_agreement": agreement}

    monkeypatch.setattr(fp32_check, "compare_with_fp32", with_agreement)
    result = pipeline.convert(str(residual_saved_model), str(tmp_path / "int8"),
                              ConversionConfig(backend="cpu", precision="int8"),
                              calibration_input_fn=_calibration_fn(CALIBRATION_BATCH * CALIBRATION_STEPS))
    summary = result.metadata["conversion_summary"]["int8"]
    assert ("warning" in summary) is warns
    if warns:
        assert "25.00%" in summary["warning"] and "--labels_csv" in summary["warning"]
