"""Dense + GELU shaped for TF's remapper (backends/cpu/matmul_gelu.py): same answers, plain ops in the saved graph,
fused by TF at load time where oneDNN is on, and run on Eigen where it is off, on an AVX2-only CPU too."""

import numpy as np
import pytest

from tests.every_cpu import environment_offering_bf16, python_in_child, smaller_cpu_env
from tests.graph_helpers import run_graph
from tftrt_toolkit.backends.cpu.matmul_gelu import ZERO_BIAS_OP, fuse_ready_gelus
from tftrt_toolkit.config import ConversionConfig
from tftrt_toolkit.pipeline import convert

# The op names TF ran, from the run metadata of one call (after grappler's remapper and oneDNN's rewrite).
_RUN_AND_LIST_KERNELS = """
import sys, json, numpy as np, tensorflow as tf
from tensorflow.python.eager import context
function = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
context.context().enable_run_metadata()
out = next(iter(function(token_ids=tf.constant(np.load(sys.argv[2]))).values())).numpy()
metadata = context.context().export_run_metadata()
ran = [[node.op] + [s.decode() for s in node.attr["fused_ops"].list.s]
       for graph in metadata.function_graphs for partition in graph.partition_graphs for node in partition.node]
print(json.dumps({"outputs": out.tolist(), "ran": ran}))
"""


def _dense_gelu_graph(bias: bool, approximate: bool):
    """Keras 3's Dense(6, gelu) on [?, 5, 4] tokens as it exports it: Tensordot, AddV2(bias), GELU's ops."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    with tf.Graph().as_default() as graph:
        x = tf.compat.v1.placeholder(tf.float32, [None, 5, 4], name="x")
        y = tf.tensordot(x, tf.constant(rng.normal(size=(4, 6)).astype(np.float32)), axes=[[2], [0]])
        if bias:
            y = y + tf.constant(rng.normal(size=(6,)).astype(np.float32))
        tf.identity(tf.nn.gelu(y, approximate=approximate), name="out")
    return graph.as_graph_def()


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("approximate", [False, True], ids=["exact", "approximate"])
def test_a_dense_gelu_becomes_matmul_biasadd_gelu_reshape_with_the_same_answers(bias, approximate):
    graph_def = _dense_gelu_graph(bias, approximate)
    rewritten, count = fuse_ready_gelus(graph_def, keep=("out",))
    assert count == 1
    nodes = {node.name: node for node in rewritten.node}
    bias_add = next(node for node in rewritten.node if node.op == "BiasAdd")
    assert nodes[bias_add.input[0]].op == "MatMul"  # nothing between the MatMul and the bias
    # The GELU reads the BiasAdd (the remapper's pattern), and a Reshape gives back [?, 5, 6].
    readers = {node.op for node in rewritten.node if bias_add.name in node.input}
    assert readers and readers <= {"Mul", "RealDiv", "Pow", "AddV2"}
    assert (nodes[bias_add.input[1]].op == ZERO_BIAS_OP) is (not bias)  # a zero bias the constant folding keeps
    assert not any(node.op.startswith("_") for node in rewritten.node)  # plain ops, which Eigen runs
    for batch in (1, 3):
        feed = np.random.default_rng(batch).normal(size=(batch, 5, 4)).astype(np.float32)
        np.testing.assert_allclose(run_graph(rewritten, feed), run_graph(graph_def, feed), rtol=1e-5, atol=1e-6)


_RUN_GRAPHS = """
import sys, json, numpy as np, tensorflow as tf
from tensorflow.core.framework import graph_pb2
feed = np.load(sys.argv[1])
outputs = []
for path in sys.argv[2:]:
    graph_def = graph_pb2.GraphDef.FromString(open(path, "rb").read())
    with tf.Graph().as_default() as graph:
        tf.graph_util.import_graph_def(graph_def, name="")
        with tf.compat.v1.Session(graph=graph) as session:
            outputs.append(session.run("out:0", {"x:0": feed}).tolist())
print(json.dumps(outputs))
"""


def test_a_bf16_dense_whose_gelu_the_bf16_pass_kept_fp32_fuses_in_bf16_with_its_bias(tmp_path):
    import tensorflow as tf

    # What the bf16 pass leaves: MatMul (bf16) ─ Reshape ─ Cast to fp32 ─ AddV2(bias) ─ GELU (fp32) ─ Cast to bf16.
    rng = np.random.default_rng(0)
    with tf.Graph().as_default() as graph:
        x = tf.compat.v1.placeholder(tf.float32, [None, 5, 4], name="x")
        flat = tf.cast(tf.reshape(x, [-1, 4]), tf.bfloat16)
        product = tf.linalg.matmul(flat, tf.constant(rng.normal(size=(4, 6)).astype(np.float32), tf.bfloat16))
        hidden = tf.cast(tf.reshape(product, [-1, 5, 6]), tf.float32) + rng.normal(size=(6,)).astype(np.float32)
        gelu = 0.5 * hidden * (1.0 + tf.math.erf(hidden * 0.7071067811865476))
        tf.cast(tf.cast(gelu, tf.bfloat16), tf.float32, name="out")
    graph_def = graph.as_graph_def()
    rewritten, count = fuse_ready_gelus(graph_def, keep=("out",))
    assert count == 1
    nodes = {node.name: node for node in rewritten.node}
    bias_add = next(node for node in rewritten.node if node.op == "BiasAdd")
    assert nodes[bias_add.input[0]].op == "MatMul" and bias_add.attr["T"].type == tf.bfloat16.as_datatype_enum
    assert nodes[bias_add.input[1]].op == "Const"  # the model's bias, as bf16
    assert {node.attr["T"].type for node in rewritten.node if node.op == "Erf"} == {tf.bfloat16.as_datatype_enum}

    # Run on TF's Eigen kernels (oneDNN off, AVX2), as on any CPU: the same answers within bf16's rounding.
    feed = rng.normal(size=(3, 5, 4)).astype(np.float32)
    np.save(tmp_path / "feed.npy", feed)
    for name, value in (("before.pb", graph_def), ("after.pb", rewritten)):
        (tmp_path / name).write_bytes(value.SerializeToString())
    before, after = python_in_child(_RUN_GRAPHS, tmp_path / "feed.npy", tmp_path / "before.pb", tmp_path / "after.pb",
                                    env=smaller_cpu_env(False))
    assert np.array(after).shape == (3, 5, 6)
    np.testing.assert_allclose(np.array(after), np.array(before), rtol=0.05, atol=0.05)


def test_a_matmul_without_a_gelu_is_left_alone():
    import tensorflow as tf

    with tf.Graph().as_default() as graph:
        x = tf.compat.v1.placeholder(tf.float32, [None, 5, 4], name="x")
        y = tf.tensordot(x, tf.constant(np.ones((4, 6), np.float32)), axes=[[2], [0]])
        tf.identity(tf.nn.relu(y) * 2.0, name="out")
    graph_def = graph.as_graph_def()
    rewritten, count = fuse_ready_gelus(graph_def, keep=("out",))
    assert count == 0 and rewritten is graph_def


def _fused_gelus(ran):
    return [entry for entry in ran if any(op.startswith("Gelu") for op in entry[1:])]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_converted_transformer_keeps_plain_gelu_ops_that_tf_fuses_at_load_time_and_eigen_runs(
        precision, tiny_transformer_saved_model, tmp_path):
    import tensorflow as tf

    result = convert(str(tiny_transformer_saved_model), str(tmp_path / precision),
                     ConversionConfig(backend="cpu", precision=precision), env=environment_offering_bf16(),
                     progress=False)
    summary = result.metadata["conversion_summary"]
    assert "gelu_ready" in summary["stages_that_changed_the_graph"]
    histogram = summary["op_histogram"]
    # The saved graph holds the pattern as plain ops: MatMul, BiasAdd (of zeros here), the GELU's Erf.
    assert histogram.get("BiasAdd") == 1 and histogram.get(ZERO_BIAS_OP) == 1 and histogram.get("Erf") == 1
    assert not any(op.startswith("_Fused") or op.startswith("_MklFused") for op in histogram)

    tokens = np.random.default_rng(3).integers(0, 100, size=(8, 64)).astype(np.int32)
    np.save(tmp_path / "tokens.npy", tokens)
    original = tf.saved_model.load(str(tiny_transformer_saved_model)).signatures["serving_default"]
    expected = next(iter(original(token_ids=tf.constant(tokens)).values())).numpy()
    tolerance = 1e-5 if precision == "fp32" else 0.05

    # An AVX2-only CPU with TF's oneDNN ops off: Eigen runs every op, the GELU's as plain ops.
    on_eigen = python_in_child(_RUN_AND_LIST_KERNELS, result.path, tmp_path / "tokens.npy", env=smaller_cpu_env(False))
    assert np.abs(np.array(on_eigen["outputs"]) - expected).max() < tolerance
    assert not _fused_gelus(on_eigen["ran"]) and ["Erf"] in on_eigen["ran"]
    if precision == "bf16":
        return  # bf16 with oneDNN on needs AVX512 (the runtime record says so); on AVX2 it runs on Eigen, above
    # The same CPU with oneDNN on: TF's remapper fuses MatMul + BiasAdd + GELU into one oneDNN kernel.
    on_onednn = python_in_child(_RUN_AND_LIST_KERNELS, result.path, tmp_path / "tokens.npy", env=smaller_cpu_env(True))
    assert np.abs(np.array(on_onednn["outputs"]) - expected).max() < tolerance
    assert _fused_gelus(on_onednn["ran"]) == [["_MklNativeFusedMatMul", "BiasAdd", "GeluExact"]]
    assert ["Erf"] not in on_onednn["ran"]
