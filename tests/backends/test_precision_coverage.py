"""Precision coverage: the share of a conversion's multiply-adds in its precision, reported and enforced.

The tiny transformer (tests/conftest.py) holds 57% of its multiply-adds in attention's own
Einsums, which int8 leaves in fp32: its int8 conversion is refused in one line naming them, and accepted with allow_partial_precision, the share recorded. A CNN's int8 and
bf16 conversions cover (nearly) everything.
"""

import dataclasses

import numpy as np
import pytest

from tftrt_toolkit.backends.precision_coverage import PrecisionCoverage, check_coverage, precision_coverage
from tftrt_toolkit.config import ConversionConfig
from tftrt_toolkit.environment import probe
from tftrt_toolkit.errors import ConfigError, ConversionError
from tftrt_toolkit.pipeline import convert

from tests.extras import needs_inc




def _graph_def(build):
    """The GraphDef of the ops ``build()`` adds to a fresh graph."""
    import tensorflow as tf

    with tf.Graph().as_default() as graph:
        build(tf)
    return graph.as_graph_def()


def test_flops_are_counted_from_shapes_with_the_batch_as_one():
    def build(tf):
        tokens = tf.compat.v1.placeholder(tf.float32, [None, 16, 8], name="tokens")
        weight = tf.compat.v1.placeholder(tf.float32, [8, 4], name="held_weight")  # a held weight's stand-in
        projected = tf.linalg.matmul(tf.reshape(tokens, [-1, 8]), weight)  # MatMul [16, 8] x [8, 4]
        scores = tf.einsum("btd,bsd->bts", tokens, tokens)  # 16 * 16 * 8
        mixed = tf.linalg.matmul(scores, tokens)  # BatchMatMulV2 [1,16,16] x [1,16,8]
        images = tf.compat.v1.placeholder(tf.bfloat16, [None, 10, 10, 3], name="images")
        kernel = tf.constant(np.ones((3, 3, 3, 5)), tf.bfloat16)
        tf.nn.conv2d(images, kernel, 1, "SAME")  # 10*10*5 outputs x 27
        tf.identity(projected + 0.0), tf.identity(mixed)

    coverage = precision_coverage(_graph_def(build), "bf16")
    fp32 = 2 * (16 * 8 * 4 + 16 * 16 * 8 + 16 * 16 * 8)
    bf16 = 2 * (10 * 10 * 5 * 27)
    assert coverage.flops_by_precision == {"bf16": bf16, "fp32": fp32}
    assert coverage.share == pytest.approx(bf16 / (bf16 + fp32))
    assert set(coverage.ops_left_behind) == {"MatMul", "Einsum", "BatchMatMulV2"}
    assert coverage.ops_left_behind["Einsum"] == {"count": 1, "flops": 2 * 16 * 16 * 8, "precision": "fp32"}
    # Back from the metadata as written, the same record.
    assert PrecisionCoverage.from_json(coverage.to_json()).to_json() == coverage.to_json()


def test_a_share_below_the_threshold_is_refused_unless_partial_is_allowed():
    partial = PrecisionCoverage("int8", {"int8": 30, "fp32": 70},
                                {"BatchMatMulV2": {"count": 4, "flops": 70, "precision": "fp32"}})
    with pytest.raises(ConversionError, match=r"int8 covers only 30% .* left in fp32: BatchMatMulV2 ×4\. "
                                              r"Pass --allow_partial"):
        check_coverage(partial, allow_partial=False)
    check_coverage(partial, allow_partial=True)
    check_coverage(dataclasses.replace(partial, precision="fp32"), allow_partial=False)  # fp32 is never refused
    assert "30% of 100 FLOPs" in partial.describe() and "BatchMatMulV2 ×4 (fp32, 70%)" in partial.describe()


def test_allow_partial_precision_is_validated():
    assert ConversionConfig(allow_partial_precision=True).to_json()["allow_partial_precision"] is True
    with pytest.raises(ConfigError, match="allow_partial_precision='yes' is not valid"):
        ConversionConfig(allow_partial_precision="yes")


@needs_inc
def test_tiny_transformer_int8_under_half_is_refused_then_accepted(tiny_transformer_saved_model, tmp_path):
    config = ConversionConfig(backend="cpu", precision="int8", calibration_steps=4, batch_size=8)
    refused = tmp_path / "refused"
    with pytest.raises(ConversionError) as caught:
        convert(str(tiny_transformer_saved_model), str(refused), config, calibration_data="synthetic", progress=False)
    message = str(caught.value)
    assert "\n" not in message
    assert "int8 covers only 43% of the model's multiply-adds" in message
    assert "left in fp32: Einsum ×2." in message and "--allow_partial" in message  # the projections are int8
    assert not refused.exists()

    accepted = convert(str(tiny_transformer_saved_model), str(tmp_path / "accepted"),
                       config.replace(allow_partial_precision=True), calibration_data="synthetic", progress=False)
    coverage = accepted.metadata["conversion_summary"]["precision_coverage"]
    assert coverage["precision"] == "int8" and coverage["share"] == pytest.approx(0.43, abs=0.01)
    assert set(coverage["ops_left_behind"]) == {"Einsum"}
    assert coverage["flops_by_precision"]["int8"] > 0
    # The model it wrote serves, and still answers like the original.
    import tensorflow as tf

    tokens = np.random.default_rng(0).integers(0, 100, size=(4, 64)).astype(np.int32)
    original = tf.saved_model.load(str(tiny_transformer_saved_model)).signatures["serving_default"]
    served = tf.saved_model.load(accepted.path).signatures["serving_default"]
    expected = next(iter(original(token_ids=tf.constant(tokens)).values())).numpy()
    got = next(iter(served(token_ids=tf.constant(tokens)).values())).numpy()
    assert np.abs(expected - got).max() < 0.05


@needs_inc
def test_a_cnn_reports_all_its_multiply_adds_in_int8(tiny_saved_model, tmp_path):
    result = convert(str(tiny_saved_model), str(tmp_path / "int8"),
                     ConversionConfig(backend="cpu", precision="int8", calibration_steps=4, batch_size=8),
                     calibration_data="synthetic", progress=False)
    coverage = result.metadata["conversion_summary"]["precision_coverage"]
    assert coverage["share"] >= 0.9, coverage


def test_a_cnn_reports_all_its_multiply_adds_in_bf16(tiny_saved_model, tmp_path):
    # The bf16 pass rewrites the graph on any CPU; only running it fast needs AVX512-BF16/AMX, so a CPU
    # without them is described as one with them here (the converted model is not run).
    env = probe()
    if not env.cpu_has_bf16:
        env = dataclasses.replace(env, cpu_features=tuple(env.cpu_features) + ("avx512_bf16", "amx_bf16"))
    result = convert(str(tiny_saved_model), str(tmp_path / "bf16"), ConversionConfig(backend="cpu", precision="bf16"),
                     env=env, progress=False)
    coverage = result.metadata["conversion_summary"]["precision_coverage"]
    assert coverage["share"] == 1.0 and coverage["ops_left_behind"] == {}, coverage
    assert coverage["flops_by_precision"]["bf16"] > 0
