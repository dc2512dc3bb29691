"""The TF-TRT segment plan on tiny frozen graphs with known answers, and on real CNNs (slow)."""

import configparser
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import graph_pb2
from tensorflow.core.protobuf import config_pb2, meta_graph_pb2, rewriter_config_pb2
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
from tensorflow.python.grappler import tf_optimizer
from tensorflow.python.training import saver

from tftrt_toolkit.analysis import tensorrt_plan
from tftrt_toolkit.analysis.tensorrt_plan import (
    compare_with_conversion,
    engines_in_converted_graph,
    load_op_table,
    plan_tensorrt_segments,
)
from tftrt_toolkit.errors import ConfigError, ModelLoadError

REPO_ROOT = Path(__file__).resolve().parents[2]
IMAGE = tf.TensorSpec((None, 8, 8, 3), tf.float32, name="images")


def freeze(function, *input_specs, optimize=True):
    """The graph TF-TRT sees: variables frozen to constants, then grappler as trt_convert runs it."""
    concrete = function.get_concrete_function(*input_specs)
    frozen = convert_variables_to_constants_v2(concrete)
    graph_def = frozen.graph.as_graph_def()
    if not optimize:
        return graph_def
    meta_graph = saver.export_meta_graph(graph_def=graph_def, graph=frozen.graph)
    fetch = meta_graph_pb2.CollectionDef()
    for tensor in frozen.outputs:
        fetch.node_list.value.append(tensor.name)
    meta_graph.collection_def["train_op"].CopyFrom(fetch)
    config = config_pb2.ConfigProto()
    rewrite = config.graph_options.rewrite_options
    # trt_convert's own grappler list, with the remapper off as TF-TRT sets it.
    rewrite.optimizers.extend(["pruning", "debug_stripper", "layout", "dependency", "constfold",
                               "common_subgraph_elimination"])
    rewrite.remapping = rewriter_config_pb2.RewriterConfig.OFF
    rewrite.meta_optimizer_iterations = rewriter_config_pb2.RewriterConfig.ONE
    return tf_optimizer.OptimizeGraph(config, meta_graph, graph_id=b"tf_graph")


class ConvStack(tf.Module):
    """conv+relu blocks with an optional op between them: the shape of a real CNN, tiny."""

    def __init__(self, blocks=4, middle=None, seed=0):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.filters = [tf.Variable(rng.normal(size=(3, 3, 3, 3)).astype("float32")) for _ in range(blocks)]
        self.middle = middle

    @tf.function
    def __call__(self, images):
        x = images
        for i, kernel in enumerate(self.filters):
            if self.middle is not None and i == len(self.filters) // 2:
                x = self.middle(x)
            x = tf.nn.relu(tf.nn.conv2d(x, kernel, strides=1, padding="SAME"))
        return x


def chain_graph(middle=None, blocks=4, spec=IMAGE):
    module = ConvStack(blocks, middle)  # a tf.function method holds its module only weakly
    return freeze(module.__call__, spec)


def engine_of(plan, op_type):
    return {v.engine for v in plan.nodes if v.op_type == op_type}


# ------------------------------------------------------------------- known answers


def test_all_supported_chain_is_one_engine_covering_everything():
    plan = plan_tensorrt_segments(chain_graph())

    assert len(plan.engines) == 1
    assert plan.coverage == 1.0
    assert plan.breakers == ()
    assert plan.verdict.startswith("1 engine covering 100% of compute nodes")
    assert dict(plan.engines[0].op_histogram)["Conv2D"] == 4


def test_unsupported_op_in_the_middle_splits_the_chain_and_is_named_the_breaker():
    plan = plan_tensorrt_segments(chain_graph(middle=tf.nn.local_response_normalization))

    assert len(plan.engines) == 2
    lrn = next(v for v in plan.nodes if v.op_type == "LRN")
    assert not lrn.supported and lrn.reason_kind == "unknown_op"
    assert "no TF-TRT 2.17 converter" in lrn.reason
    assert plan.breakers[0].op_type == "LRN"
    assert plan.breakers[0].boundaries == 2
    assert "LRN" in plan.verdict


def test_custom_op_unknown_to_tensorflow_is_planned_as_a_breaker():
    graph_def = chain_graph(middle=tf.nn.local_response_normalization)
    for node in graph_def.node:
        if node.op == "LRN":
            node.op = "MyCustomOp"  # not registered anywhere: the graph cannot even be imported as is

    plan = plan_tensorrt_segments(graph_def)

    assert len(plan.engines) == 2
    assert plan.breakers[0].op_type == "MyCustomOp"


def test_segment_smaller_than_minimum_segment_size_makes_no_engine():
    graph_def = freeze(tf.function(lambda x: tf.nn.relu(x)), IMAGE)

    plan = plan_tensorrt_segments(graph_def, minimum_segment_size=3)
    assert plan.engines == ()
    assert plan.verdict.startswith("No TensorRT engine")

    # The same graph with a threshold of 1 does make the engine: the size rule dropped it.
    assert len(plan_tensorrt_segments(graph_def, minimum_segment_size=1).engines) == 1


def test_minimum_segment_size_does_not_count_identity_nodes():
    graph_def = freeze(tf.function(lambda x: tf.identity(tf.identity(tf.nn.relu(x)))), IMAGE, optimize=False)

    assert plan_tensorrt_segments(graph_def, minimum_segment_size=2).engines == ()


def test_segments_avoid_cycles_through_unsupported_nodes():
    # a -> LRN -> add and a -> add: merging a with add would put the LRN path in a cycle.
    rng = np.random.default_rng(1)
    k1, k2 = (tf.constant(rng.normal(size=(3, 3, 3, 3)).astype("float32")) for _ in range(2))

    @tf.function
    def model(images):
        a = tf.nn.relu(tf.nn.conv2d(images, k1, 1, "SAME"))
        b = tf.nn.local_response_normalization(a)
        return tf.nn.relu(tf.nn.conv2d(a + b, k2, 1, "SAME"))

    plan = plan_tensorrt_segments(freeze(model, IMAGE))

    first_relu, add = plan.node("Relu"), next(v for v in plan.nodes if v.op_type == "AddV2")
    assert first_relu.supported and add.supported
    assert first_relu.engine is not None and add.engine is not None
    assert first_relu.engine != add.engine


def test_quantization_ops_are_taken_only_in_int8():
    graph_def = chain_graph(middle=lambda x: tf.quantization.fake_quant_with_min_max_args(x, -6.0, 6.0))

    fp32 = plan_tensorrt_segments(graph_def, precision="fp32")
    fake_quant = next(v for v in fp32.nodes if v.op_type == "FakeQuantWithMinMaxArgs")
    assert fake_quant.reason_kind == "precision"
    assert len(fp32.engines) == 2

    int8 = plan_tensorrt_segments(graph_def, precision="int8")
    assert len(int8.engines) == 1
    assert any("calibration" in hint for hint in int8.hints)


def test_float64_ops_are_unsupported_for_their_dtype():
    spec = tf.TensorSpec((None, 4, 4), tf.float64, name="x")
    plan = plan_tensorrt_segments(freeze(tf.function(lambda x: tf.nn.relu(x) * 2.0 + 1.0), spec))

    relu = next(v for v in plan.nodes if v.op_type == "Relu")
    assert not relu.supported and relu.reason_kind == "dtype"
    assert "float64" in relu.reason


def test_shape_arithmetic_breaks_implicit_batch_but_not_explicit_batch():
    rng = np.random.default_rng(2)
    kernel = tf.constant(rng.normal(size=(3, 3, 3, 4)).astype("float32"))
    dense = tf.constant(rng.normal(size=(8 * 8 * 4, 5)).astype("float32"))

    @tf.function
    def model(images):
        x = tf.nn.relu(tf.nn.conv2d(images, kernel, 1, "SAME"))
        x = tf.reshape(x, tf.stack([tf.shape(x)[0], -1]))  # Keras' Flatten with a dynamic batch
        return tf.nn.softmax(tf.matmul(x, dense))

    graph_def = freeze(model, IMAGE)
    implicit = plan_tensorrt_segments(graph_def)
    reshape = next(v for v in implicit.nodes if v.op_type == "Reshape")
    assert reshape.reason_kind == "implicit_batch"
    assert {b.op_type for b in implicit.breakers} >= {"Reshape", "Shape"}
    assert any("use_dynamic_shape=True" in hint for hint in implicit.hints)

    explicit = plan_tensorrt_segments(graph_def, use_dynamic_shape=True)
    assert len(explicit.engines) == 1
    assert explicit.coverage == 1.0


def test_constant_filter_must_be_weights_for_conv2d():
    @tf.function
    def model(images, kernel):
        return tf.nn.relu(tf.nn.conv2d(images, kernel, 1, "SAME")) + 1.0

    plan = plan_tensorrt_segments(freeze(model, IMAGE, tf.TensorSpec((3, 3, 3, 3), tf.float32, name="kernel")))

    conv = next(v for v in plan.nodes if v.op_type == "Conv2D")
    assert conv.reason_kind == "needs_constant"


# ------------------------------------------------------------------- hints, outputs, errors


def test_dynamic_inputs_without_build_shapes_warn_about_run_time_builds():
    graph_def = chain_graph()

    without = plan_tensorrt_segments(graph_def)
    assert any("built at run time" in hint for hint in without.hints)

    with_shapes = plan_tensorrt_segments(graph_def, input_shapes={"images": (8, 8, 8, 3)})
    assert not any("built at run time" in hint for hint in with_shapes.hints)
    assert any("converter.build()" in hint for hint in with_shapes.hints)
    assert with_shapes.to_json()["input_shapes"] == {"images": [8, 8, 8, 3]}


def test_plan_serialises_to_plain_json_and_renders_a_table():
    plan = plan_tensorrt_segments(chain_graph(middle=tf.nn.local_response_normalization))

    data = json.loads(json.dumps(plan.to_json()))
    assert data["verdict"] == plan.verdict
    assert len(data["engines"]) == 2
    assert data["op_histogram"]["Conv2D"] == 4
    assert data["breakers"][0]["op_type"] == "LRN"

    text = plan.render_text(max_nodes_listed=5)
    assert plan.verdict in text
    assert "LRN" in text and "Engines:" in text and "Breakers" in text


@pytest.mark.parametrize("kwargs, message", [
    ({"precision": "bf16"}, "not a TF-TRT precision"),
    ({"minimum_segment_size": 0}, "minimum_segment_size=0"),
    ({"input_shapes": {"pixels": (1, 8, 8, 3)}}, "its inputs are: images"),
    ({"input_shapes": {"images": (1, 8, 8)}}, "rank 3"),
    ({"input_shapes": {"images": (1, 9, 8, 3)}}, "fixes it to 8"),
    ({"output_names": ["nope"]}, "not nodes of the graph"),
])
def test_bad_options_raise_config_errors_that_say_what_to_do(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        plan_tensorrt_segments(chain_graph(blocks=1), **kwargs)


def test_something_that_is_not_a_graph_def_is_a_model_load_error():
    with pytest.raises(ModelLoadError, match="expected a tf.compat.v1.GraphDef"):
        plan_tensorrt_segments(b"not a graph")
    broken = graph_pb2.GraphDef()
    broken.node.add(name="relu", op="Relu", input=["missing"])
    with pytest.raises(ModelLoadError, match="not in the graph"):
        plan_tensorrt_segments(broken)


def test_precision_accepts_the_config_enum_values():
    class FakePrecision:
        value = "FP16"

    assert plan_tensorrt_segments(chain_graph(blocks=1), precision=FakePrecision()).precision == "fp16"


# ------------------------------------------------------------------- the op table


def test_op_table_tensorflow_version_matches_the_pin_in_setup_cfg():
    config = configparser.ConfigParser()
    config.read(REPO_ROOT / "setup.cfg")
    requirements = [line.strip() for line in config["options"]["install_requires"].splitlines() if line.strip()]
    pinned = next(req.split("==", 1)[1] for req in requirements if req.startswith("tensorflow=="))

    table = load_op_table()
    assert table.tensorflow_release == pinned
    assert pinned.startswith(table.tensorflow_version + ".")


def test_op_table_records_provenance_and_only_rules_the_planner_implements():
    table = load_op_table()

    assert "3c92ac03cab816044f7b18a86eb86aa01a294d95" in table.source["release_commit"]
    assert table.source["files"]
    for op_type, rule in table.ops.items():
        assert rule["source"].startswith("convert/"), op_type
        assert set(rule["precisions"]) <= set(tensorrt_plan.PRECISIONS), op_type
        for check in rule["checks"]:
            assert check in tensorrt_plan.CHECKS, f"{op_type} names unknown check {check}"
    # Facts read from the converters, spot-checked.
    assert table.ops["Conv2D"]["dtypes"] == ["float16", "float32"]
    assert table.ops["Shape"]["implicit_batch"] is False
    assert table.ops["FakeQuantWithMinMaxArgs"]["precisions"] == ["int8"]
    assert "LRN" not in table.ops


def _load_extraction_tool():
    spec = importlib.util.spec_from_file_location("extract_tftrt_op_table", REPO_ROOT / "tools" / "extract_tftrt_op_table.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


def test_extraction_tool_reads_registrations_from_a_source_tree(tmp_path):
    convert = tmp_path / "tensorflow/compiler/tf2tensorrt/convert"
    (convert / "ops").mkdir(parents=True)
    (convert / "convert_nodes.cc").write_text(
        'Status ConvertRelu(const OpConverterParams* params) {\n'
        '  TF_RETURN_IF_ERROR(AllowDataTypes(*params, {DataType::DT_FLOAT, DataType::DT_HALF}));\n'
        '  return OkStatus();\n}\n'
        'REGISTER_DEFAULT_TRT_OP_CONVERTER(ConvertRelu, {"Relu", "Relu6"});\n')
    (convert / "ops" / "unary.cc").write_text(
        'const UnaryOperationMapType* UnaryOperationMap() {\n'
        '  static auto* const m = new UnaryOperationMapType({\n'
        '    {"Exp", nvinfer1::UnaryOperation::kEXP},\n'
        '#if IS_TRT_VERSION_GE(8, 2, 0, 0)\n'
        '    {"Sign", nvinfer1::UnaryOperation::kSIGN},\n'
        '#endif\n'
        '  });\n  return m;\n}\n'
        'class ConvertUnary : public OpConverterBase<ConvertUnary> {\n public:\n'
        '  explicit ConvertUnary(const OpConverterParams* params)\n'
        '      : OpConverterBase<ConvertUnary>(params, {DataType::DT_FLOAT, DataType::DT_INT8}) {}\n};\n'
        'REGISTER_DEFAULT_TRT_OP_CONVERTER(MakeConverterFunction<ConvertUnary>(),\n'
        '                                  GetOperationNames(*UnaryOperationMap()));\n')
    tool = _load_extraction_tool()

    found = {r.op_type: r for r in tool.extract_registrations(tool.read_sources(tmp_path))}

    assert set(found) == {"Relu", "Relu6", "Exp", "Sign"}
    assert found["Relu"].dtypes == ["float16", "float32"]
    assert found["Exp"].dtypes == ["float32", "int8"]
    assert found["Sign"].trt_version_guard == "8.2.0.0" and found["Exp"].trt_version_guard is None
    assert found["Relu6"].source == "convert/convert_nodes.cc:5"

    table, added, removed = tool.merge({"ops": {"Relu": {"dtypes": ["float32"]}, "Gone": {}}}, list(found.values()))
    assert added == ["Exp", "Relu6", "Sign"] and removed == ["Gone"]
    assert table["ops"]["Relu"]["dtypes"] == ["float32"]  # curated value kept


# ------------------------------------------------------------------- vs a real conversion


def _converted_graph(plan, engine_nodes, extra_engine=None):
    """A GraphDef shaped like TF-TRT's output: TRTEngineOps whose segments live in the function library."""
    converted = graph_pb2.GraphDef()
    converted.node.add(name="images", op="Placeholder")
    for index, names in enumerate(engine_nodes):
        engine_name = f"TRTEngineOp_000_{index:03d}"
        engine = converted.node.add(name=engine_name, op="TRTEngineOp", input=["images"])
        engine.attr["segment_func"].func.name = f"{engine_name}_native_segment"
        function = converted.library.function.add()
        function.signature.name = f"{engine_name}_native_segment"
        for name in names:
            function.node_def.add(name=name, op=plan.node(name).op_type if name in {v.name for v in plan.nodes} else "Const")
    if extra_engine:
        converted.node.add(name=extra_engine, op="TRTEngineOp")
        function = converted.library.function.add()
        function.signature.name = f"{extra_engine}_native_segment"
        function.node_def.add(name="somewhere_else", op="Relu")
    converted.node.add(name="Identity", op="Identity", input=["TRTEngineOp_000_000"])
    return converted


def test_compare_with_conversion_matches_engines_by_their_nodes():
    plan = plan_tensorrt_segments(chain_graph(middle=tf.nn.local_response_normalization))
    # As ConvertSegmentToGraphDef does: the segment's nodes plus the outside constants it reads.
    engine_nodes = []
    for engine in plan.engines:
        nodes = list(engine.node_names)
        while len(nodes) < engine.node_count:
            nodes.append(f"outside_const_{len(nodes)}")
        engine_nodes.append(nodes)

    comparison = compare_with_conversion(plan, _converted_graph(plan, engine_nodes))

    assert comparison.engine_count_matches and comparison.node_counts_match
    assert [m.predicted_index for m in comparison.matches] == [0, 1]
    assert comparison.unmatched_predicted == ()
    assert "as predicted" in comparison.render_text()
    assert json.loads(json.dumps(comparison.to_json()))["engine_count_matches"] is True


def test_compare_with_conversion_reports_missing_and_unexpected_engines():
    plan = plan_tensorrt_segments(chain_graph(middle=tf.nn.local_response_normalization))
    only_first = [list(plan.engines[0].node_names)[:2]]

    comparison = compare_with_conversion(plan, _converted_graph(plan, only_first, extra_engine="TRTEngineOp_000_009"))

    assert not comparison.engine_count_matches or not comparison.node_counts_match
    assert comparison.actual_node_counts == (2, 1)
    unexpected = next(m for m in comparison.matches if m.actual_name == "TRTEngineOp_000_009")
    assert unexpected.predicted_index is None
    assert comparison.unmatched_predicted == (1,)
    assert "differs from the prediction" in comparison.render_text()


def test_engine_node_counts_agree_with_trt_convert_summary_counting():
    from tensorflow.python.compiler.tensorrt import utils as trt_utils

    plan = plan_tensorrt_segments(chain_graph())
    converted = _converted_graph(plan, [list(plan.engines[0].node_names)])

    (engine,) = engines_in_converted_graph(converted)
    expected_count, expected_ops = trt_utils.get_trtengineop_node_op_count(converted, engine.name)
    assert engine.node_count == expected_count
    assert dict(engine.op_histogram) == dict(expected_ops)


# ------------------------------------------------------------------- real CNNs


@pytest.mark.slow
@pytest.mark.parametrize("application", ["VGG16", "ResNet50", "MobileNetV2", "EfficientNetB0"])
def test_keras_applications_have_one_dominant_engine(application):
    import keras

    model = getattr(keras.applications, application)(weights=None)
    graph_def = freeze(tf.function(lambda x: model(x, training=False)),
                       tf.TensorSpec((None, 224, 224, 3), tf.float32, name="images"))
    started = time.perf_counter()
    plan = plan_tensorrt_segments(graph_def)
    explicit = plan_tensorrt_segments(graph_def, use_dynamic_shape=True)
    print(f"\n{application}: planned in {time.perf_counter() - started:.2f}s (both modes)\n"
          f"  implicit batch: {plan.verdict}\n  use_dynamic_shape=True: {explicit.verdict}")

    assert explicit.largest_engine_share >= 0.9
    if application == "EfficientNetB0":
        # Its squeeze-excite blocks reshape with the run-time batch size (Shape -> Pack -> Reshape),
        # which implicit batch mode cannot convert: each block becomes its own engine.
        assert {"Reshape", "Shape"} <= {b.op_type for b in plan.breakers[:3]}
        assert any("use_dynamic_shape=True" in hint and "1 engine(s)" in hint for hint in plan.hints)
    else:
        assert plan.largest_engine_share >= 0.75
