"""The graph TF-TRT sees: read a frozen GraphDef's nodes, attributes and output shapes.

Mirrors what ``tensorflow/python/compiler/tensorrt/trt_convert.py`` does before converting
(``TrtGraphConverterV2``: freeze the variables with ``convert_variables_to_constants_v2``,
then run grappler with the remapper off; here through ``backends/frozen/grappler.py``), and
the output shapes ``segment/segment.cc`` reads from grappler's ``GraphProperties`` (here
TensorFlow's own shape functions, run when the graph is imported).
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any, Dict, Iterable, List, Mapping, Optional, Set, Tuple

from tftrt_toolkit.errors import ModelLoadError, first_line

# Nodes that do no arithmetic: they are neither "compute" nor breakers.
NON_COMPUTE_OP_TYPES = frozenset({
    "Const", "Identity", "IdentityN", "Snapshot", "StopGradient", "NoOp", "Placeholder",
    "PlaceholderWithDefault", "_Arg", "_Retval",
})
# Grappler's remapper fuses these for CPU/GPU kernels; TF-TRT turns the remapper off, so a
# graph containing them was optimized differently from what TF-TRT sees.
REMAPPER_FUSED_OP_TYPES = frozenset({
    "_FusedConv2D", "_FusedMatMul", "_FusedBatchNormEx", "_FusedDepthwiseConv2dNative",
    "_FusedConv3D", "_MklFusedConv2D", "_MklFusedMatMul", "_MklFusedDepthwiseConv2dNative",
    "_MklNativeFusedConv2D", "_MklNativeFusedMatMul", "_FusedBatchMatMulV2",
})
# Ops that only exist when variables are not frozen or functions not inlined.
UNFROZEN_OP_TYPES = frozenset({"VarHandleOp", "ReadVariableOp", "VariableV2", "AssignVariableOp"})
CALL_OP_TYPES = frozenset({"PartitionedCall", "StatefulPartitionedCall"})
# Constants larger than this are replaced by placeholders of the same shape while shapes are
# inferred: shape functions only need the values of small (shape-like) constants.
LARGE_CONSTANT_ELEMENTS = 4096


@dataclasses.dataclass
class Node:
    """One NodeDef, its data and control inputs parsed."""

    name: str
    op: str
    attr: Any  # the NodeDef's attr map
    inputs: List[Tuple[str, int]]  # data inputs (producer, output port), in order
    control_inputs: List[str]
    device: str
    node_def: Any


Shape = Optional[Tuple[Optional[int], ...]]


@dataclasses.dataclass(frozen=True)
class NodeOutput:
    """The dtype and shape of one output of a node (None where TensorFlow cannot tell)."""

    dtype: Optional[str]
    shape: Shape


def _parse_input(text: str) -> Tuple[str, int, bool]:
    if text.startswith("^"):
        return text[1:], -1, True
    name, _, port = text.rpartition(":")
    if name and port.isdigit():
        return name, int(port), False
    return text, 0, False


def read_nodes(graph_def) -> Dict[str, Node]:
    """The graph's nodes by name, in graph order; ModelLoadError unless it is a complete GraphDef."""
    if not hasattr(graph_def, "node"):
        raise ModelLoadError(
            f"expected a tf.compat.v1.GraphDef, got {type(graph_def).__name__}: pass the frozen graph "
            "(e.g. concrete_function.graph.as_graph_def() after convert_variables_to_constants_v2)")
    nodes: Dict[str, Node] = {}
    for node_def in graph_def.node:
        if node_def.name in nodes:
            raise ModelLoadError(f"the graph has two nodes named {node_def.name!r}; pass a valid GraphDef")
        inputs, controls = [], []
        for text in node_def.input:
            name, port, is_control = _parse_input(text)
            if is_control:
                controls.append(name)
            else:
                inputs.append((name, port))
        nodes[node_def.name] = Node(node_def.name, node_def.op, node_def.attr, inputs, controls,
                                    node_def.device, node_def)
    for node in nodes.values():
        for producer in [name for name, _ in node.inputs] + node.control_inputs:
            if producer not in nodes:
                raise ModelLoadError(
                    f"node {node.name!r} reads from {producer!r}, which is not in the graph; "
                    "pass a complete frozen GraphDef (all functions inlined)")
    if not nodes:
        raise ModelLoadError("the GraphDef has no nodes: pass the frozen graph of a model")
    return nodes


def attr_dtype_name(attr_value) -> Optional[str]:
    """A ``type`` attribute as a dtype name ("float32"), None when TensorFlow has no name for it."""
    from tensorflow.python.framework import dtypes

    try:
        return dtypes.as_dtype(attr_value.type).name
    except TypeError:
        return None


def infer_tensors(graph_def, nodes: Mapping[str, Node]) -> Dict[str, List[NodeOutput]]:
    """Output dtypes and shapes of every node, from TensorFlow's shape functions.

    Ops TensorFlow does not know (custom ops) cannot be imported: each of their outputs
    becomes a placeholder, shaped by the node's ``_output_shapes`` when it has them and
    otherwise assumed to look like the op's first input (the common elementwise case),
    so that one custom op does not hide the shapes of everything after it.
    """
    from tensorflow.python.framework import op_def_registry

    custom = [n for n in graph_def.node if op_def_registry.get(n.op) is None]
    assumed: Dict[Tuple[str, int], Any] = {}
    # A chain of custom ops needs one more round per link; a few rounds cover real graphs.
    for _ in range(4):
        graph, stand_ins = _import_for_shapes(graph_def, nodes, assumed)
        changed = False
        for node_def in custom:
            if "_output_shapes" in node_def.attr or not nodes[node_def.name].inputs:
                continue
            producer, port = nodes[node_def.name].inputs[0]
            source = graph.get_operation_by_name(stand_ins.get((producer, port), producer))
            tensor = source.outputs[0 if (producer, port) in stand_ins else port]
            if tensor.shape.rank is not None and assumed.get((node_def.name, 0)) != tensor.shape:
                assumed[(node_def.name, 0)] = tensor.shape
                changed = True
        if not changed:
            break

    def describe(tensor) -> NodeOutput:
        shape = None if tensor.shape.rank is None else tuple(tensor.shape.as_list())
        return NodeOutput(tensor.dtype.name, shape)

    tensors: Dict[str, List[NodeOutput]] = {}
    for node in nodes.values():
        if (node.name, 0) in stand_ins:
            ports = sorted(port for (name, port) in stand_ins if name == node.name)
            outputs = {port: describe(graph.get_operation_by_name(stand_ins[(node.name, port)]).outputs[0]) for port in ports}
            tensors[node.name] = [outputs.get(i, NodeOutput(None, None)) for i in range(max(ports) + 1)]
        else:
            tensors[node.name] = [describe(t) for t in graph.get_operation_by_name(node.name).outputs]
    return tensors


def _import_for_shapes(graph_def, nodes: Mapping[str, Node], assumed: Mapping[Tuple[str, int], Any]):
    """Import a light copy of the graph (big constants as placeholders, custom ops stood in for)."""
    import tensorflow as tf
    from tensorflow.core.framework import graph_pb2, tensor_shape_pb2
    from tensorflow.python.framework import op_def_registry

    shadow = graph_pb2.GraphDef()
    shadow.versions.CopyFrom(graph_def.versions)
    shadow.library.CopyFrom(graph_def.library)
    ports_used: Dict[str, Set[int]] = collections.defaultdict(set)
    for node in nodes.values():
        for producer, port in node.inputs:
            ports_used[producer].add(port)
    stand_ins: Dict[Tuple[str, int], str] = {}
    for node_def in graph_def.node:
        copy = shadow.node.add()
        if op_def_registry.get(node_def.op) is None:
            ports = sorted(ports_used.get(node_def.name, {0}) | {0})
            output_shapes = list(node_def.attr["_output_shapes"].list.shape) if "_output_shapes" in node_def.attr else []
            dtype_attr = next((node_def.attr[key] for key in ("T", "dtype", "out_type") if key in node_def.attr), None)
            for port in ports:
                target = copy if port == 0 else shadow.node.add()
                target.name = node_def.name if port == 0 else f"{node_def.name}/__tftrt_plan_output_{port}"
                target.op = "Placeholder"
                target.attr["dtype"].type = dtype_attr.type if dtype_attr is not None and dtype_attr.type else tf.float32.as_datatype_enum
                if port < len(output_shapes):
                    shape = output_shapes[port]
                elif (node_def.name, port) in assumed:
                    shape = assumed[(node_def.name, port)].as_proto()
                else:
                    shape = tensor_shape_pb2.TensorShapeProto(unknown_rank=True)
                target.attr["shape"].shape.CopyFrom(shape)
                stand_ins[(node_def.name, port)] = target.name
            continue
        copy.CopyFrom(node_def)
        copy.ClearField("device")
        if node_def.op == "Const":
            tensor = node_def.attr["value"].tensor
            if constant_element_count(tensor) > LARGE_CONSTANT_ELEMENTS:
                copy.ClearField("attr")
                copy.op = "Placeholder"
                copy.attr["dtype"].type = tensor.dtype
                copy.attr["shape"].shape.CopyFrom(tensor.tensor_shape)
    if stand_ins:
        for copy in shadow.node:
            for i, text in enumerate(copy.input):
                name, port, is_control = _parse_input(text)
                if not is_control and port > 0 and (name, port) in stand_ins:
                    copy.input[i] = stand_ins[(name, port)]
    graph = tf.Graph()
    try:
        with graph.as_default():
            tf.graph_util.import_graph_def(shadow, name="")
    except (ValueError, tf.errors.OpError) as error:
        raise ModelLoadError(
            f"TensorFlow cannot read this GraphDef ({first_line(error)}); "
            "pass the frozen graph the model's signature produces") from error
    return graph, stand_ins


def node_attr(node: Node, key: str, default=None):
    """A node attribute as a plain Python value (lists, decoded strings, dtype names), or ``default``."""
    if key not in node.attr:
        return default
    value = node.attr[key]
    kind = value.WhichOneof("value")
    if kind == "list":
        lst = value.list
        if lst.i:
            return list(lst.i)
        if lst.s:
            return [s.decode() for s in lst.s]
        return []
    if kind == "s":
        return value.s.decode()
    if kind == "type":
        return attr_dtype_name(value)
    return getattr(value, kind) if kind else default


def as_dims(shape: Shape) -> List[int]:
    """A shape as TF-TRT writes dims: -1 for an unknown dim, [] for an unknown rank."""
    return [-1 if d is None else int(d) for d in shape] if shape is not None else []


def constant_element_count(tensor) -> int:
    """Number of elements of a Const node's TensorProto (0 for empty or unknown dims)."""
    count = 1
    for dim in tensor.tensor_shape.dim:
        count *= max(dim.size, 0)
    return count


def op_histogram(op_types: Iterable[str]) -> Tuple[Tuple[str, int], ...]:
    """(op type, count) pairs, most frequent first, then by name."""
    counts = collections.Counter(op_types)
    return tuple(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def graph_for_model(model, build_shapes=None):
    """The frozen, cleaned GraphDef TF-TRT would convert for a LoadedModel, and what to plan it for.

    Returns ``(graph_def, input_shapes, output_names)``: ``input_shapes`` maps each graph
    input (its placeholder's name) to the largest of the ``build_shapes`` given for it
    (None without ``build_shapes``, e.g. "1,8" or ((1, 224, 224, 3),)); ``output_names`` are
    the frozen function's outputs, the nodes TF-TRT fetches.
    """
    from tftrt_toolkit.backends.frozen.grappler import graph_for_inspection
    from tftrt_toolkit.backends.graphdef import node_name

    graph_def, frozen = graph_for_inspection(model.saved_model_dir, model.signature.key)
    # The frozen function's inputs follow the signature's (sorted) input order.
    placeholder_for = {info.name: node_name(tensor)
                       for info, tensor in zip(model.signature.inputs, frozen.input_tensor_names)}
    input_shapes = None
    if build_shapes:
        from tftrt_toolkit.data import build_input_fn

        shapes = build_input_fn(model.signature, build_shapes).shapes
        input_shapes = {}
        for per_input in shapes:
            for name, dims in per_input.items():
                best = input_shapes.get(placeholder_for[name])
                if best is None or (dims[0] or 0) > (best[0] or 0):
                    input_shapes[placeholder_for[name]] = dims
    return graph_def, input_shapes, [node_name(t) for t in frozen.output_tensor_names]
