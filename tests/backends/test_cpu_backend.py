"""The cpu backend: converted models give the original's answers and load with plain TensorFlow."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tftrt_toolkit import ConversionConfig, convert
from tftrt_toolkit.environment import probe
from tftrt_toolkit.errors import BackendUnavailable, ConversionError
from tests.every_cpu import environment_offering_bf16, run_serving_default


def _run(saved_model_dir, images):
    loaded = tf.saved_model.load(str(saved_model_dir))
    outputs = loaded.signatures["serving_default"](images=tf.constant(images))
    return {k: v.numpy() for k, v in outputs.items()}


@pytest.fixture(scope="module")
def fp32_model(tiny_saved_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("cpu") / "fp32"
    return convert(str(tiny_saved_model), str(out), ConversionConfig(backend="cpu", precision="fp32"))


def test_fp32_matches_original_within_1e4(fp32_model, tiny_saved_model, random_images):
    original = _run(tiny_saved_model, random_images)
    optimized = _run(fp32_model.path, random_images)
    assert optimized.keys() == original.keys() == {"probabilities"}
    np.testing.assert_allclose(optimized["probabilities"], original["probabilities"], atol=1e-4, rtol=0)


def test_output_keeps_signature_and_has_no_variables(fp32_model):
    from tftrt_toolkit.models.loader import read_signatures

    sig = read_signatures(fp32_model.path)["serving_default"]
    assert sig.input_names == ("images",) and sig.inputs[0].shape == (None, 32, 32, 3)
    assert sig.output_names == ("probabilities",)
    assert not os.path.exists(os.path.join(fp32_model.path, "variables", "variables.index")) or \
        os.path.getsize(os.path.join(fp32_model.path, "variables", "variables.data-00000-of-00001")) < 1024


def test_metadata_records_what_was_done(fp32_model, tiny_saved_model):
    with open(os.path.join(fp32_model.path, "assets.extra", "tftrt_toolkit.json")) as handle:
        meta = json.load(handle)
    assert meta["backend"] == "cpu" and meta["precision"] == "fp32"
    assert meta["tensorflow_version"] == tf.__version__
    assert meta["source"]["location"] == str(tiny_saved_model)
    assert meta["signature"]["inputs"] == [{"name": "images", "shape": [None, 32, 32, 3], "dtype": "float32"}]
    assert meta["config"]["backend"] == "cpu" and meta["config"]["minimum_segment_size"] == 3
    assert meta["conversion_summary"]["nodes_optimized"] < meta["conversion_summary"]["nodes_frozen"]
    assert [s["name"] for s in meta["conversion_summary"]["stages"]] == [
        "cleanup", "fold_batchnorm", "cleanup_after_fold", "layout", "fuse_layer_norm", "fusion", "gelu_ready"]
    assert {"load_s", "convert_s", "save_s"} <= set(meta["timings"])
    # Keras 3 BatchNorm (Mul/AddV2 by constants) is folded into the conv, so oneDNN can fuse it.
    assert "fold_batchnorm" in meta["conversion_summary"]["stages_that_changed_the_graph"]
    assert "Mul" not in meta["conversion_summary"]["op_histogram"]


def test_loads_in_a_process_without_the_toolkit_and_with_saved_model_cli(fp32_model, tmp_path):
    script = (
        "import sys, numpy as np, tensorflow as tf\n"
        "assert 'tftrt_toolkit' not in sys.modules\n"
        f"m = tf.saved_model.load({fp32_model.path!r})\n"
        "out = m.signatures['serving_default'](images=tf.zeros([2, 32, 32, 3]))\n"
        "print(sorted(out), out['probabilities'].shape)\n"
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "['probabilities'] (2, 10)" in result.stdout
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    shown = subprocess.run([cli, "show", "--all", "--dir", fp32_model.path], capture_output=True, text=True,
                           env=env, timeout=300)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "signature_def['serving_default']" in shown.stdout and "probabilities" in shown.stdout


def test_bf16_bakes_bf16_ops_and_keeps_top1(tiny_saved_model, tmp_path, random_images):
    # On every CPU: where bf16 is not offered, past the capability check, run on Eigen's bf16 kernels.
    result = convert(str(tiny_saved_model), str(tmp_path / "bf16"), ConversionConfig(backend="cpu", precision="bf16"),
                     env=environment_offering_bf16())
    summary = result.metadata["conversion_summary"]
    assert summary["bf16_nodes"] > 0
    assert "bf16" in summary["stages_that_changed_the_graph"]
    assert summary["kept_fp32_ops"] == ["Softmax"]  # a CNN's adds stay bf16 (only a transformer's go fp32)
    assert result.metadata["runtime"]["onednn_needs_cpu"] == "AVX512"
    original = _run(tiny_saved_model, random_images)["probabilities"]
    optimized = run_serving_default(result.path, {"images": random_images})["probabilities"]
    assert optimized.dtype == np.float32  # the signature's dtypes do not change
    np.testing.assert_allclose(optimized, original, atol=0.05)
    assert (optimized.argmax(1) == original.argmax(1)).mean() >= 0.75


def test_bf16_refused_on_cpus_without_bf16(tiny_saved_model, tmp_path):
    import dataclasses

    no_bf16 = dataclasses.replace(probe(), cpu_features=("avx2", "avx512f"))
    with pytest.raises(BackendUnavailable, match="neither AVX512-BF16 nor AMX-BF16.*offers fp32"):
        convert(str(tiny_saved_model), str(tmp_path / "x"), ConversionConfig(backend="cpu", precision="bf16"), env=no_bf16)
    assert not (tmp_path / "x").exists()


def test_bf16_that_converts_nothing_is_an_error_not_a_mislabelled_model(tiny_saved_model, tmp_path):
    keep_everything = ("Conv2D", "DepthwiseConv2dNative", "Relu", "MatMul", "BiasAdd", "Mean", "Softmax",
                       "AddV2", "Mul", "Sub", "Rsqrt", "FusedBatchNormV3")
    with pytest.raises(ConversionError, match="converted no ops"):
        convert(str(tiny_saved_model), str(tmp_path / "x"),
                ConversionConfig(backend="cpu", precision="bf16", bf16_keep_fp32_ops=keep_everything),
                env=environment_offering_bf16())
    assert not (tmp_path / "x").exists()


SHIPPED_MODEL = os.path.join(os.path.dirname(__file__), "..", "..", "saved_models", "efficientnet_lite0")
CAT = os.path.join(os.path.dirname(__file__), "..", "..", "saved_models", "samples", "cat.jpg")


def test_bf16_on_real_weights_keeps_the_cat(tmp_path):
    # Real biases survive constant folding, so fusion patterns exist: random-weight models miss this.
    # Its weights are held aside and streamed into saved_model.pb as bf16 (that write once crashed).
    from PIL import Image

    result = convert(SHIPPED_MODEL, str(tmp_path / "bf16"), ConversionConfig(backend="cpu", precision="bf16"),
                     env=environment_offering_bf16())
    image = np.asarray(Image.open(CAT).convert("RGB"), np.float32)[None]
    probabilities = run_serving_default(result.path, {"images": image})["probabilities"]
    assert probabilities.argmax() == 285  # Egyptian cat, as the fp32 original says
