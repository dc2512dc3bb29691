"""Keras 3's LayerNorm (ten ops) becomes one _MklLayerNorm in cpu fp32 conversions, with the same outputs."""

import numpy as np
import pytest

from tftrt_toolkit.backends.cpu.layer_norm_fusion import FUSED_OP, fuse_layer_norms
from tftrt_toolkit.config import ConversionConfig
from tftrt_toolkit.pipeline import convert


@pytest.fixture(scope="module")
def fp32_transformer(tiny_transformer_saved_model, tmp_path_factory):
    return convert(str(tiny_transformer_saved_model), str(tmp_path_factory.mktemp("ln") / "fp32"),
                   ConversionConfig(backend="cpu", precision="fp32"), progress=False)


def test_each_keras_layer_norm_becomes_one_op_and_the_answers_stay(fp32_transformer, tiny_transformer_saved_model):
    import tensorflow as tf

    summary = fp32_transformer.metadata["conversion_summary"]
    histogram = summary["op_histogram"]
    assert histogram.get(FUSED_OP) == 2  # one block: after attention and after the feed-forward
    assert "SquaredDifference" not in histogram and "Rsqrt" not in histogram
    assert "fuse_layer_norm" in summary["stages_that_changed_the_graph"]
    # _MklLayerNorm calls oneDNN whether TF's oneDNN ops are on or not: the model runs anywhere, with no setting
    assert summary["runtime"]["requires_onednn"] is False and "_MklLayerNorm" not in summary["runtime"].get("onednn_only_ops", {})

    tokens = tf.constant(np.random.default_rng(3).integers(0, 100, size=(8, 64)).astype(np.int32))
    original = tf.saved_model.load(str(tiny_transformer_saved_model)).signatures["serving_default"]
    fused = tf.saved_model.load(fp32_transformer.path).signatures["serving_default"]
    expected = next(iter(original(token_ids=tokens).values())).numpy()
    got = next(iter(fused(token_ids=tokens).values())).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_a_graph_without_layer_norm_is_left_alone():
    import tensorflow as tf

    with tf.Graph().as_default() as graph:
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        mean = tf.reduce_mean(x, -1, keepdims=True)
        tf.identity(x - mean + tf.math.rsqrt(mean * mean + 1.0), name="out")  # normalisation-like, not LayerNorm
    graph_def = graph.as_graph_def()
    fused, count = fuse_layer_norms(graph_def, keep=("out",))
    assert count == 0 and fused is graph_def
