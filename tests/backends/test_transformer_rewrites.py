"""Transformer rewrites of the cpu backend: projections as 2-D MatMuls (int8 quantizes them); bf16 with LayerNorm fused
and elementwise ops in fp32."""

import numpy as np
import pytest

from tests.extras import needs_inc
from tests.every_cpu import environment_offering_bf16, python_in_child, run_serving_default, smaller_cpu_env
from tests.graph_helpers import run_graph
from tftrt_toolkit.backends.cpu.projection_matmuls import projections_to_matmuls
from tftrt_toolkit.backends.cpu.static_reshapes import constant_reshape_shapes
from tftrt_toolkit.config import ConversionConfig
from tftrt_toolkit.pipeline import convert


def _tokens(batch=8, seq=64, seed=3):
    return np.random.default_rng(seed).integers(0, 100, size=(batch, seq)).astype(np.int32)


def _original_outputs(saved_model, tokens):
    import tensorflow as tf

    original = tf.saved_model.load(str(saved_model)).signatures["serving_default"]
    return next(iter(original(token_ids=tf.constant(tokens)).values())).numpy()


def _projection_graph(adj_y=False, weight_is_constant=True):
    """x [?, 5, 4] times a [4, 2, 3] weight reshaped to [4, 6] (EinsumDense's export), then a Reshape to heads."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    with tf.Graph().as_default() as graph:
        x = tf.compat.v1.placeholder(tf.float32, [None, 5, 4], name="x")
        if weight_is_constant:
            weight = tf.reshape(tf.constant(rng.normal(size=(4, 2, 3)).astype(np.float32)), [4, 6])
        else:
            weight = tf.reshape(x[0, :4, :], [4, 4])[:, :4]
        if adj_y:
            weight = tf.transpose(weight)
        product = tf.raw_ops.BatchMatMulV2(x=x, y=weight, adj_y=adj_y, name="projection")
        tf.reshape(product, [-1, 5, 2, product.shape[-1] // 2], name="out")
    return graph.as_graph_def()


def test_a_projection_by_a_constant_weight_becomes_a_matmul_with_the_same_product():
    graph_def = _projection_graph()
    rewritten, _, count = projections_to_matmuls(graph_def, keep=("out",))
    ops = [node.op for node in rewritten.node]
    assert count == 1 and "BatchMatMulV2" not in ops and ops.count("MatMul") == 1
    feed = np.random.default_rng(1).normal(size=(3, 5, 4)).astype(np.float32)  # any batch, not just 1 or 2
    np.testing.assert_allclose(run_graph(rewritten, feed), run_graph(graph_def, feed), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("case", [{"adj_y": True}, {"weight_is_constant": False}])
def test_a_batched_matmul_that_is_not_a_plain_projection_is_left_alone(case):
    graph_def = _projection_graph(**case)
    rewritten, _, count = projections_to_matmuls(graph_def, keep=("out",))
    assert count == 0 and rewritten is graph_def


def test_a_dense_on_tokens_gets_constant_reshape_shapes_and_the_same_answer_at_any_batch():
    import tensorflow as tf

    with tf.Graph().as_default() as graph:
        x = tf.compat.v1.placeholder(tf.float32, [None, 5, 4], name="x")
        weight = tf.constant(np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32))
        tf.identity(tf.tensordot(x, weight, axes=[[2], [0]]), name="out")  # what Keras 3's Dense exports
    graph_def = graph.as_graph_def()
    rewritten, _, count = constant_reshape_shapes(graph_def, keep=("out",))
    ops = [node.op for node in rewritten.node]
    assert count == 2 and "Shape" not in ops and "Prod" not in ops and "Pack" not in ops
    for batch in (1, 3):
        feed = np.random.default_rng(batch).normal(size=(batch, 5, 4)).astype(np.float32)
        np.testing.assert_allclose(run_graph(rewritten, feed), run_graph(graph_def, feed), rtol=1e-6, atol=1e-6)


@needs_inc
def test_int8_quantizes_the_attention_projections_and_answers_like_the_original(tiny_transformer_saved_model, tmp_path):
    result = convert(str(tiny_transformer_saved_model), str(tmp_path / "int8"),
                     ConversionConfig(backend="cpu", precision="int8", calibration_steps=4, batch_size=8,
                                      allow_partial_precision=True),  # attention's own Einsums stay fp32: 43%
                     calibration_data="synthetic", progress=False)
    summary = result.metadata["conversion_summary"]
    assert "projections_to_matmuls" in summary["stages_that_changed_the_graph"]
    histogram = summary["op_histogram"]
    # query, key, value, output projections + the two Dense of the block + the classifier: all int8.
    assert "BatchMatMulV2" not in histogram and histogram.get("MatMul", 0) == 0
    assert sum(count for op, count in histogram.items() if op.startswith("QuantizedMatMul")) == 7
    assert set(summary["precision_coverage"]["ops_left_behind"]) == {"Einsum"}
    assert histogram.get("_MklLayerNorm") == 2  # fused before quantizing; INC leaves it in fp32

    tokens = _tokens()
    expected = _original_outputs(tiny_transformer_saved_model, tokens)
    got = next(iter(run_serving_default(result.path, {"token_ids": tokens}).values()))
    assert np.abs(expected - got).max() < 0.05
    assert (expected.argmax(-1) == got.argmax(-1)).mean() >= 0.75


def test_bf16_fuses_each_layer_norm_and_answers_like_the_original(tiny_transformer_saved_model, tmp_path):
    # bf16 is converted and run on every CPU: where TF's oneDNN bf16 kernels cannot run, the model
    # runs on Eigen's bf16 kernels in a child process (tests/every_cpu.py); _MklLayerNorm runs in both.
    result = convert(str(tiny_transformer_saved_model), str(tmp_path / "bf16"),
                     ConversionConfig(backend="cpu", precision="bf16"), env=environment_offering_bf16(),
                     progress=False)
    summary = result.metadata["conversion_summary"]
    assert summary["op_histogram"].get("_MklLayerNorm") == 2
    assert "Shape" not in summary["op_histogram"] and "static_reshapes" in summary["stages_that_changed_the_graph"]
    assert "SquaredDifference" not in summary["op_histogram"] and "Rsqrt" not in summary["op_histogram"]
    assert summary["precision_coverage"]["share"] == 1.0
    # Its elementwise ops (GELU, residual adds, the attention scale) stay fp32, with the Softmax asked for.
    assert summary["kept_fp32_ops"] == ["Softmax", "Erf", "Mul", "AddV2"]

    tokens = _tokens()
    expected = _original_outputs(tiny_transformer_saved_model, tokens)
    got = next(iter(run_serving_default(result.path, {"token_ids": tokens}).values()))
    assert np.abs(expected - got).max() < 0.05

    # Where bf16 runs on Eigen (an AVX2 CPU, TF's oneDNN ops off), the fused LayerNorm runs too.
    script = ("import sys, json, numpy as np, tensorflow as tf; "
              "f = tf.saved_model.load(sys.argv[1]).signatures['serving_default']; "
              "out = next(iter(f(token_ids=tf.constant(np.load(sys.argv[2]))).values())).numpy(); "
              "print(json.dumps(out.tolist()))")
    np.save(tmp_path / "tokens.npy", tokens)
    on_eigen = np.array(python_in_child(script, result.path, tmp_path / "tokens.npy", env=smaller_cpu_env(False)))
    assert np.abs(expected - on_eigen).max() < 0.05
