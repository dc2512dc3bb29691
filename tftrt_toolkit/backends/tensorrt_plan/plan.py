"""See the TensorRT conversion before you have a GPU: predict TF-TRT's engines from a frozen graph.

``plan_tensorrt_segments(graph_def, precision=..., minimum_segment_size=...)`` reads the
frozen, grappler-optimized GraphDef that TF-TRT would see and returns a ``SegmentPlan``:
the op histogram, a supported/unsupported verdict with a reason for every node, the
predicted TRTEngineOp segments, the unsupported ops ranked by how much of the graph they
keep out of TensorRT, a verdict a person can act on, and hints (e.g. engines built at run
time). ``compare_with_conversion(plan, converted_graph_def)`` reads the engines a real
TF-TRT conversion produced and sets them beside the prediction.

The rules come from TensorFlow 2.17's TF-TRT source, shipped as data in
``backends/data/tftrt_supported_ops_tf2.17.json`` (see its ``source`` and ``derivation``).

Modeled, as in ``segment/segment.cc`` and ``convert/convert_nodes.cc``:
  - candidate selection in TF-TRT's order: nodes pinned to CPU, graph outputs (the
    segmenter's exclude list), implicit batch mode (rank >= 2 inputs with a batch
    dimension; this is what keeps int32 shape arithmetic out), then the converter's
    validation: registered op type, quantization ops only in int8, every input
    convertible to a TensorRT tensor or weights (dtype, known rank, no scalars in implicit
    batch, no empty dims; Identity chains followed to constants), the dtype attribute, which
    inputs must be constants, explicit-batch-only converters, and per-op attribute rules
    (padding, data_format, batch-axis manipulation, reshape/broadcast limits, ...);
  - the segmenter itself: union of supported nodes along data edges from the outputs
    towards the inputs, cycle avoidance, implicit-batch batch-size compatibility, removal
    of constants that also feed nodes outside, ``minimum_segment_size`` counted without
    Identity/Snapshot/StopGradient, and the TF_TRT_MAX_ALLOWED_ENGINES cap (default 20);
  - engine node counts as ``trt_convert``'s ``summary()`` counts them (segment nodes plus
    the outside constants copied into the engine's function).

Choices of this module (not TF-TRT rules): "compute nodes" are all nodes except constants,
identities, graph inputs and no-ops; graph outputs default to the nodes nothing reads from;
``input_shapes`` only feed the run-time build hint, because TF-TRT segments with the graph's
own shapes (build shapes reach it later, through ``converter.build()``); CPU placements are
ignored when every node carries one (a graph frozen on a CPU-only machine).

Not modeled (the prediction can differ from a real conversion there):
  - grappler's own shape inference: shapes here come from TensorFlow's shape functions
    when the graph is imported, with every unknown dimension treated alike (grappler can
    tell two unknown dimensions apart, which can keep ops with different symbolic batch
    sizes apart); TF-TRT re-runs grappler (layout on a GPU cluster may add Transposes);
  - the fp16 Cast rewrite, TF_TRT_OP_DENYLIST, TensorRT plugins, and rules of converters
    that need values only known while building (e.g. broadcast shapes of dynamic dims,
    einsum equations, NMS parameters, batched constants in BatchMatMul);
  - whether TensorRT then builds each engine: a segment can still fall back to TensorFlow
    at build time (out of memory, unsupported layer for a given shape);
  - conversion inside functions (TF-TRT only converts the main graph unless asked).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import os
from importlib import resources
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Set, Tuple

from tftrt_toolkit.errors import ConfigError, ModelLoadError

OP_TABLE_FILE = "tftrt_supported_ops_tf2.17.json"
PRECISIONS = ("fp32", "fp16", "int8")

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
# Reason kinds that are not breakers: the graph's own inputs/outputs and control-only nodes.
NOT_A_BREAKER = frozenset({"graph_input", "graph_output", "no_data"})
# Constants larger than this are replaced by placeholders of the same shape while shapes are
# inferred: shape functions only need the values of small (shape-like) constants.
_LARGE_CONSTANT_ELEMENTS = 4096
_MAX_COUNTERFACTUALS = 8


# --------------------------------------------------------------------------------------
# The op table
# --------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class OpSupportTable:
    """TF-TRT's supported op types and their rules for one TensorFlow version, with provenance."""

    tensorflow_version: str
    tensorflow_release: str
    assumed_tensorrt_version: str
    source: Mapping[str, Any]
    segmenter: Mapping[str, Any]
    ops: Mapping[str, Mapping[str, Any]]

    def rule(self, op_type: str) -> Optional[Mapping[str, Any]]:
        return self.ops.get(op_type)


@functools.lru_cache(maxsize=None)
def load_op_table(file_name: str = OP_TABLE_FILE) -> OpSupportTable:
    """The shipped TF-TRT op table (read once per process)."""
    text = resources.files("tftrt_toolkit.backends").joinpath("data", file_name).read_text(encoding="utf-8")
    data = json.loads(text)
    return OpSupportTable(
        tensorflow_version=data["tensorflow_version"],
        tensorflow_release=data["tensorflow_release"],
        assumed_tensorrt_version=data["assumed_tensorrt_version"],
        source=data["source"],
        segmenter=data["segmenter"],
        ops=data["ops"],
    )


# --------------------------------------------------------------------------------------
# Public results
# --------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class NodeVerdict:
    """Whether one node can go into a TensorRT engine, and why not."""

    name: str
    op_type: str
    supported: bool
    reason: str  # "" when supported
    reason_kind: str  # "" when supported; e.g. unknown_op, dtype, implicit_batch, precision
    engine: Optional[int] = None  # index into SegmentPlan.engines when inside a predicted engine


@dataclasses.dataclass(frozen=True)
class PredictedEngine:
    """One predicted TRTEngineOp: the nodes it replaces and how big it is."""

    index: int
    node_names: Tuple[str, ...]
    node_count: int  # as trt_convert's summary() counts: segment nodes + constants copied in
    effective_node_count: int  # as minimum_segment_size counts: without Identity/Snapshot/StopGradient
    compute_node_count: int
    op_histogram: Tuple[Tuple[str, int], ...]


@dataclasses.dataclass(frozen=True)
class DroppedSegment:
    """A region of supported nodes that will not become an engine, and why."""

    node_names: Tuple[str, ...]
    effective_node_count: int
    reason: str


@dataclasses.dataclass(frozen=True)
class Breaker:
    """An unsupported op type that splits the graph or keeps compute out of TensorRT."""

    op_type: str
    node_count: int
    reason: str  # the most common reason for its nodes
    reason_kind: str
    boundaries: int  # (breaker node, adjacent engine) pairs: how often it cuts an engine off
    compute_nodes_gained_if_supported: int
    engines_if_supported: int
    example_nodes: Tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class SegmentPlan:
    """TF-TRT's predicted conversion of one graph: engines, unsupported ops, a verdict and hints."""

    tensorflow_version: str
    precision: str
    minimum_segment_size: int
    use_dynamic_shape: bool
    input_shapes: Optional[Tuple[Tuple[str, Tuple[Optional[int], ...]], ...]]
    graph_inputs: Tuple[Tuple[str, Optional[Tuple[Optional[int], ...]]], ...]
    op_histogram: Tuple[Tuple[str, int], ...]
    nodes: Tuple[NodeVerdict, ...]
    engines: Tuple[PredictedEngine, ...]
    dropped_segments: Tuple[DroppedSegment, ...]
    breakers: Tuple[Breaker, ...]
    compute_node_count: int
    compute_nodes_in_engines: int
    verdict: str
    hints: Tuple[str, ...]

    @property
    def coverage(self) -> float:
        """Share of compute nodes predicted to run inside TensorRT engines (0..1)."""
        return self.compute_nodes_in_engines / self.compute_node_count if self.compute_node_count else 0.0

    @property
    def largest_engine_share(self) -> float:
        """Share of all compute nodes inside the largest predicted engine (0..1)."""
        if not self.engines or not self.compute_node_count:
            return 0.0
        return max(e.compute_node_count for e in self.engines) / self.compute_node_count

    def node(self, name: str) -> NodeVerdict:
        for verdict in self.nodes:
            if verdict.name == name:
                return verdict
        raise KeyError(name)

    def to_json(self) -> dict:
        data = _plain(dataclasses.asdict(self))
        data["op_histogram"] = dict(self.op_histogram)
        data["coverage"] = round(self.coverage, 4)
        data["largest_engine_share"] = round(self.largest_engine_share, 4)
        for engine in data["engines"]:
            engine["op_histogram"] = dict(engine["op_histogram"])
        if self.input_shapes is not None:
            data["input_shapes"] = {name: list(shape) for name, shape in self.input_shapes}
        data["graph_inputs"] = {name: (None if shape is None else list(shape)) for name, shape in self.graph_inputs}
        return data

    def render_text(self, max_nodes_listed: int = 0) -> str:
        """A table for people: verdict, engines, breakers, op histogram and hints."""
        mode = "explicit batch (use_dynamic_shape=True)" if self.use_dynamic_shape else "implicit batch"
        supported_ops = collections.Counter(v.op_type for v in self.nodes if v.supported)
        lines = [
            f"TF-TRT segment plan (TensorFlow {self.tensorflow_version} rules; precision {self.precision}; "
            f"minimum_segment_size {self.minimum_segment_size}; {mode})",
            f"Verdict: {self.verdict}",
            "",
            "Engines:",
        ]
        if self.engines:
            lines.append(f"  {'#':>3}  {'nodes':>5}  {'compute':>7}  ops")
            for engine in self.engines:
                ops = ", ".join(f"{op} x{n}" for op, n in engine.op_histogram[:6])
                more = " ..." if len(engine.op_histogram) > 6 else ""
                lines.append(f"  {engine.index:>3}  {engine.node_count:>5}  {engine.compute_node_count:>7}  {ops}{more}")
        else:
            lines.append("  (none)")
        if self.dropped_segments:
            lines.append(f"  + {len(self.dropped_segments)} region(s) of supported nodes too small or over the engine cap "
                         f"(largest {max(d.effective_node_count for d in self.dropped_segments)} nodes)")
        lines += ["", "Breakers (unsupported ops, most harmful first):"]
        if self.breakers:
            lines.append(f"  {'op type':<28} {'nodes':>5} {'cuts':>5} {'gain':>5}  reason")
            for breaker in self.breakers:
                lines.append(f"  {breaker.op_type:<28} {breaker.node_count:>5} {breaker.boundaries:>5} "
                             f"{breaker.compute_nodes_gained_if_supported:>5}  {breaker.reason}")
            lines.append("  (cuts: engine boundaries next to it; gain: compute nodes TensorRT would take if it were supported)")
        else:
            lines.append("  (none)")
        lines += ["", "Op types:", f"  {'op type':<28} {'count':>6} {'in TF-TRT':>9}"]
        for op_type, count in self.op_histogram:
            lines.append(f"  {op_type:<28} {count:>6} {supported_ops.get(op_type, 0):>9}")
        if max_nodes_listed:
            lines += ["", "Unsupported nodes:"]
            unsupported = [v for v in self.nodes if not v.supported and v.reason_kind not in NOT_A_BREAKER]
            for verdict in unsupported[:max_nodes_listed]:
                lines.append(f"  {verdict.name} ({verdict.op_type}): {verdict.reason}")
        if self.hints:
            lines += ["", "Hints:"] + [f"  - {hint}" for hint in self.hints]
        return "\n".join(lines) + "\n"


@dataclasses.dataclass(frozen=True)
class ActualEngine:
    """One TRTEngineOp found in a converted graph."""

    name: str
    node_count: int  # len(function.node_def), as trt_convert's summary() counts
    op_histogram: Tuple[Tuple[str, int], ...]
    node_names: Tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class EngineMatch:
    """A real engine beside the predicted engine that shares most nodes with it."""

    actual_name: str
    actual_node_count: int
    predicted_index: Optional[int]
    predicted_node_count: Optional[int]
    shared_nodes: int


@dataclasses.dataclass(frozen=True)
class ConversionComparison:
    """Predicted vs actual TF-TRT engines for one conversion."""

    predicted_engine_count: int
    actual_engine_count: int
    predicted_node_counts: Tuple[int, ...]
    actual_node_counts: Tuple[int, ...]
    matches: Tuple[EngineMatch, ...]
    unmatched_predicted: Tuple[int, ...]
    actual_engines: Tuple[ActualEngine, ...]

    @property
    def engine_count_matches(self) -> bool:
        return self.predicted_engine_count == self.actual_engine_count

    @property
    def node_counts_match(self) -> bool:
        return sorted(self.predicted_node_counts) == sorted(self.actual_node_counts)

    def to_json(self) -> dict:
        data = _plain(dataclasses.asdict(self))
        data["engine_count_matches"] = self.engine_count_matches
        data["node_counts_match"] = self.node_counts_match
        for engine in data["actual_engines"]:
            engine["op_histogram"] = dict(engine["op_histogram"])
        return data

    def render_text(self) -> str:
        agree = "as predicted" if self.engine_count_matches and self.node_counts_match else "differs from the prediction"
        lines = [
            f"TF-TRT conversion: {self.actual_engine_count} engine(s), predicted {self.predicted_engine_count} ({agree})",
            f"  {'engine':<28} {'nodes':>6} {'predicted':>10} {'shared':>7}",
        ]
        for match in self.matches:
            predicted = "-" if match.predicted_index is None else f"#{match.predicted_index}: {match.predicted_node_count}"
            lines.append(f"  {match.actual_name:<28} {match.actual_node_count:>6} {predicted:>10} {match.shared_nodes:>7}")
        for index in self.unmatched_predicted:
            lines.append(f"  {'(not created)':<28} {'-':>6} {f'#{index}: {self.predicted_node_counts[index]}':>10} {'-':>7}")
        return "\n".join(lines) + "\n"


def _plain(value):
    """Tuples -> lists recursively so the result is what json.dumps writes back."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# --------------------------------------------------------------------------------------
# Reading the graph
# --------------------------------------------------------------------------------------

@dataclasses.dataclass
class _Node:
    name: str
    op: str
    attr: Any  # the NodeDef's attr map
    inputs: List[Tuple[str, int]]  # data inputs (producer, output port), in order
    control_inputs: List[str]
    device: str
    node_def: Any


Shape = Optional[Tuple[Optional[int], ...]]


@dataclasses.dataclass(frozen=True)
class _Tensor:
    dtype: Optional[str]
    shape: Shape


def _parse_input(text: str) -> Tuple[str, int, bool]:
    if text.startswith("^"):
        return text[1:], -1, True
    name, _, port = text.rpartition(":")
    if name and port.isdigit():
        return name, int(port), False
    return text, 0, False


def _read_nodes(graph_def) -> Dict[str, _Node]:
    if not hasattr(graph_def, "node"):
        raise ModelLoadError(
            f"expected a tf.compat.v1.GraphDef, got {type(graph_def).__name__}: pass the frozen graph "
            "(e.g. concrete_function.graph.as_graph_def() after convert_variables_to_constants_v2)")
    nodes: Dict[str, _Node] = {}
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
        nodes[node_def.name] = _Node(node_def.name, node_def.op, node_def.attr, inputs, controls,
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


def _attr_dtype_name(attr_value) -> Optional[str]:
    from tensorflow.python.framework import dtypes

    try:
        return dtypes.as_dtype(attr_value.type).name
    except TypeError:
        return None


def _infer_tensors(graph_def, nodes: Mapping[str, _Node]) -> Dict[str, List[_Tensor]]:
    """Output dtypes and shapes of every node, from TensorFlow's shape functions.

    Ops TensorFlow does not know (custom ops) cannot be imported: each of their outputs
    becomes a placeholder, shaped by the node's ``_output_shapes`` when it has them and
    otherwise assumed to look like the op's first input (the common elementwise case),
    so that one custom op does not hide the shapes of everything after it.
    """
    import tensorflow as tf
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

    def describe(tensor) -> _Tensor:
        shape = None if tensor.shape.rank is None else tuple(tensor.shape.as_list())
        return _Tensor(tensor.dtype.name, shape)

    tensors: Dict[str, List[_Tensor]] = {}
    for node in nodes.values():
        if (node.name, 0) in stand_ins:
            ports = sorted(port for (name, port) in stand_ins if name == node.name)
            outputs = {port: describe(graph.get_operation_by_name(stand_ins[(node.name, port)]).outputs[0]) for port in ports}
            tensors[node.name] = [outputs.get(i, _Tensor(None, None)) for i in range(max(ports) + 1)]
        else:
            tensors[node.name] = [describe(t) for t in graph.get_operation_by_name(node.name).outputs]
    return tensors


def _import_for_shapes(graph_def, nodes: Mapping[str, _Node], assumed: Mapping[Tuple[str, int], Any]):
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
            elements = 1
            for dim in tensor.tensor_shape.dim:
                elements *= max(dim.size, 0)
            if elements > _LARGE_CONSTANT_ELEMENTS:
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
            f"TensorFlow cannot read this GraphDef ({str(error).splitlines()[0]}); "
            "pass the frozen graph the model's signature produces") from error
    return graph, stand_ins


# --------------------------------------------------------------------------------------
# Candidate selection: TF-TRT's segmenter checks, then TrtNodeValidator
# --------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Operand:
    """What the validator sees for one input: a run-time tensor, constant weights or a resource."""

    kind: str  # "tensor", "weights", "resource"
    dtype: Optional[str]
    shape: Shape
    value: Any = None  # numpy value of small constants

    @property
    def is_weights(self) -> bool:
        return self.kind == "weights"

    @property
    def is_tensor(self) -> bool:
        return self.kind == "tensor"


class _Reject(Exception):
    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


@dataclasses.dataclass
class _Context:
    table: OpSupportTable
    nodes: Mapping[str, _Node]
    tensors: Mapping[str, List[_Tensor]]
    precision: str
    implicit_batch: bool
    ignore_devices: bool
    outputs: Set[str]
    constants: Dict[str, Any] = dataclasses.field(default_factory=dict)

    def constant_value(self, node: _Node):
        if node.name not in self.constants:
            from tensorflow.python.framework import tensor_util

            tensor = node.attr["value"].tensor
            elements = 1
            for dim in tensor.tensor_shape.dim:
                elements *= max(dim.size, 0)
            value = None
            if elements <= _LARGE_CONSTANT_ELEMENTS:
                try:
                    value = tensor_util.MakeNdarray(tensor)
                except (TypeError, ValueError):
                    value = None
            self.constants[node.name] = value
        return self.constants[node.name]


def _dims(shape: Shape) -> List[int]:
    return [-1 if d is None else int(d) for d in shape] if shape is not None else []


def _find_leading_shape(shapes: Sequence[Tuple[int, ...]]) -> Optional[Tuple[int, ...]]:
    """segment.cc FindLeadingShape: the input shape that decides an op's batch size."""
    result = shapes[0]
    max_batch = 1 if len(result) < 1 else result[0]
    for shape in shapes[1:]:
        if len(shape) < len(result):
            continue
        if len(shape) > len(result):
            result = shape
            max_batch = 1 if len(shape) < 1 else shape[0]
            continue
        if len(result) < 1:
            continue
        if shape[0] < 0 or result[0] < 0:
            if shape[0] < 0 and result[0] >= 0:
                result = shape
            else:
                max_batch = max(max_batch, shape[0])
            continue
        if shape[0] > result[0]:
            result = shape
            max_batch = result[0]
    if len(result) > 0 and result[0] < 0:
        return result if max_batch <= 1 else None
    return result


def _batch_inputs(node: _Node, input_shapes: List[Shape], broadcast_ops: Set[str]) -> List[Shape]:
    if node.op in ("Conv2DBackpropInput", "Conv3DBackpropInputV2"):
        return input_shapes[2:3]
    if node.op in broadcast_ops:
        return input_shapes
    return input_shapes[:1]


def _implicit_batch_size(node: _Node, ctx: _Context) -> Tuple[bool, Optional[int], str]:
    """(translatable to implicit batch, batch size, why not) as segment.cc decides it."""
    if not node.inputs:
        return True, None, ""
    shapes = [ctx.tensors[producer][port].shape if port < len(ctx.tensors[producer]) else None
              for producer, port in node.inputs]
    relevant = _batch_inputs(node, shapes, set(ctx.table.segmenter["broadcast_batch_ops"]))
    if any(shape is None for shape in relevant):
        return False, None, "dynamic_rank"
    leading = _find_leading_shape([tuple(_dims(s)) for s in relevant])
    if leading is None or len(leading) < 2:
        return False, None, "implicit_batch"
    return True, leading[0], ""


def _resolve_identity(ctx: _Context, producer: str) -> _Node:
    node = ctx.nodes[producer]
    # TrtNodeValidator walks up Identity chains so that Const -> Identity still counts as weights.
    while node.op == "Identity" and node.inputs:
        node = ctx.nodes[node.inputs[0][0]]
    return node


def _operand(ctx: _Context, producer: str, port: int) -> _Operand:
    """ConvertToTensorOrWeights: how TF-TRT sees one input, or _Reject if it cannot."""
    table = ctx.table.segmenter
    source = _resolve_identity(ctx, producer)
    if source.op in ("VarHandleOp", "Placeholder") and "dtype" in source.attr and _attr_dtype_name(source.attr["dtype"]) == "resource":
        return _Operand("resource", "resource", None)
    if source.op in ("Const", "VariableV2", "ReadVariableOp"):
        if port != 0:
            raise _Reject("input", f"input {producer}:{port}: {source.op} node should only have one output")
        dtype = _attr_dtype_name(source.attr["dtype"]) if "dtype" in source.attr else None
        if source.op == "Const":
            if dtype not in table["constant_dtypes"]:
                raise _Reject("dtype", f"input {producer}: a {dtype} constant cannot become TensorRT weights")
            value = ctx.constant_value(source)
            if value is not None and dtype in ("int64", "uint64", "uint32") and value.size and (
                    value.max() > 2**31 - 1 or value.min() < -2**31):
                raise _Reject("dtype", f"input {producer}: integer constant outside the int32 range")
            shape = tuple(d.size for d in source.attr["value"].tensor.tensor_shape.dim)
            return _Operand("weights", "int32" if dtype and "int" in dtype else dtype, shape, value)
        if dtype not in ("float32", "float16"):
            raise _Reject("dtype", f"input {producer}: {source.op} of {dtype} is not converted")
        return _Operand("weights", dtype, None)
    outputs = ctx.tensors.get(source.name, [])
    tensor = outputs[port] if port < len(outputs) else _Tensor(None, None)
    if tensor.dtype is None:
        raise _Reject("input", f"input {producer}:{port}: shape and dtype are unknown")
    if tensor.dtype not in table["tensor_dtypes"]:
        raise _Reject("dtype", f"input {producer}:{port} is {tensor.dtype}, which TensorRT tensors cannot hold "
                               f"(allowed: {', '.join(table['tensor_dtypes'])})")
    if tensor.shape is None:
        raise _Reject("dynamic_rank", f"input {producer}:{port} has unknown rank (dynamic rank)")
    max_rank = table["max_rank_explicit_batch"] + (1 if ctx.implicit_batch else 0)
    if len(tensor.shape) > max_rank:
        raise _Reject("input", f"input {producer}:{port} has rank {len(tensor.shape)} > {max_rank}")
    if ctx.implicit_batch and len(tensor.shape) < 1:
        raise _Reject("implicit_batch", f"input {producer}:{port} is a scalar; implicit batch mode treats the first "
                                        "dimension as the batch (use_dynamic_shape=True would allow it)")
    first = 1 if ctx.implicit_batch else 0
    if any(d == 0 for d in tensor.shape[first:]):
        raise _Reject("input", f"input {producer}:{port} is an empty tensor {list(tensor.shape)}")
    return _Operand("tensor", tensor.dtype, tensor.shape)


def _attr(node: _Node, key: str, default=None):
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
        return _attr_dtype_name(value)
    return getattr(value, kind) if kind else default


def _axis_check(node: _Node, axis: Optional[int], tf_rank: Optional[int], implicit: bool) -> None:
    """convert_nodes.cc ConvertAxis: bounds, and never the batch axis in implicit batch mode."""
    if axis is None or tf_rank is None:
        return
    if axis < -tf_rank or axis >= tf_rank:
        raise _Reject("attribute", f"axis {axis} is out of bounds for rank {tf_rank}")
    if implicit and axis % tf_rank == 0:
        raise _Reject("implicit_batch", f"{node.op} on the batch axis: implicit batch mode cannot manipulate the "
                                        "batch dimension (use_dynamic_shape=True would allow it)")


def _scalar(operand: _Operand) -> Optional[int]:
    if operand.value is None or operand.value.size != 1:
        return None
    return int(operand.value.reshape(-1)[0])


def _rank(operand: _Operand) -> Optional[int]:
    return None if operand.shape is None else len(operand.shape)


def _check_not_all_constant(node, operands, ctx):
    if operands and all(o.is_weights for o in operands):
        raise _Reject("constant_input", "all inputs are constants (TF-TRT expects grappler to fold this)")


def _check_broadcast(node, operands, ctx):
    if node.op == "BiasAdd" and _attr(node, "data_format", "NHWC") == "NCHW":
        return
    left, right = operands[0], operands[1]
    if not left.is_tensor and not right.is_tensor:
        raise _Reject("constant_input", "broadcasting needs at least one non-constant input")
    implicit = ctx.implicit_batch

    def trt_dims(operand):
        dims = _dims(operand.shape)
        return dims[1:] if implicit and operand.is_tensor else dims

    ranks = [len(trt_dims(o)) + (1 if implicit and o.is_tensor else 0) for o in (left, right)]
    width = max(ranks)
    rows = []
    for operand in (left, right):
        dims = trt_dims(operand)
        row = [1] * (width - len(dims)) + dims
        if implicit and operand.is_tensor:
            if len(dims) + 1 < width:
                raise _Reject("implicit_batch", "broadcasting beyond the batch dimension is not supported in implicit "
                                                "batch mode")
            row[0] = -1
        rows.append(row)
    for a, b in zip(*rows):
        if not implicit and (a == -1 or b == -1):
            continue
        if a != b and a != 1 and b != 1:
            raise _Reject("shape", f"infeasible broadcast for TensorRT ({rows[0]} vs {rows[1]})")


def _check_addn(node, operands, ctx):
    if len(operands) < 2:
        raise _Reject("attribute", "AddN needs at least two inputs")
    for operand in operands:
        if operand.is_weights and operand.shape and operand.shape[0] != 1:
            raise _Reject("shape", "constant inputs to AddN need batch dimension 1")


def _check_cast(node, operands, ctx):
    allowed = ("float32", "float16")
    destination = _attr(node, "DstT")
    if operands and operands[0].dtype not in allowed:
        raise _Reject("dtype", f"Cast from {operands[0].dtype}: TF-TRT only converts float32/float16 casts")
    if destination not in allowed:
        raise _Reject("dtype", f"Cast to {destination}: TF-TRT only converts float32/float16 casts")


def _check_concat(node, operands, ctx):
    values, axis = operands[:-1], operands[-1]
    if ctx.implicit_batch and any(o.is_weights for o in values):
        raise _Reject("constant_input", "ConcatV2 with a constant input is not converted in implicit batch mode")
    if not axis.is_weights:
        raise _Reject("needs_constant", "the axis of ConcatV2 must be a constant")
    _axis_check(node, _scalar(axis), _rank(values[0]), ctx.implicit_batch)


def _check_const_dtype(node, operands, ctx):
    dtype = _attr(node, "dtype")
    if dtype not in ctx.table.segmenter["constant_dtypes"]:
        raise _Reject("dtype", f"a {dtype} constant cannot become TensorRT weights")


def _check_conv2d(node, operands, ctx):
    data_format = _attr(node, "data_format", "NHWC")
    channel = 3 if data_format == "NHWC" else 1
    padding = _attr(node, "padding", "SAME")
    if padding not in ("SAME", "VALID"):
        raise _Reject("attribute", f"padding {padding} is not supported (only SAME and VALID)")
    for key, label in (("dilations", "dilation"), ("strides", "stride")):
        values = _attr(node, key, [1, 1, 1, 1])
        if len(values) != 4:
            raise _Reject("attribute", f"{key} must have 4 values")
        if values[0] != 1 or values[channel] != 1:
            raise _Reject("attribute", f"{label} must be 1 on the batch and channel dimensions")
    filter_operand = operands[1]
    if filter_operand.shape is not None and len(filter_operand.shape) != 4:
        raise _Reject("shape", "the filter must be 4-D")
    data = operands[2] if node.op == "Conv2DBackpropInput" else operands[0]
    if not ctx.implicit_batch and data.shape is not None and len(data.shape) == 4 and data.shape[channel] is None:
        raise _Reject("shape", "the channel dimension must be static")


def _check_conv2d_transpose(node, operands, ctx):
    dilations = _attr(node, "dilations", [1, 1, 1, 1])
    if any(d != 1 for d in dilations):
        raise _Reject("attribute", "dilation is not supported with Conv2DBackpropInput")
    data = operands[2]
    spatial = (1, 2) if _attr(node, "data_format", "NHWC") == "NHWC" else (2, 3)
    if data.shape is not None and any(data.shape[i] is None for i in spatial if i < len(data.shape)):
        raise _Reject("shape", "Conv2DBackpropInput needs static spatial dimensions")


def _check_conv3d(node, operands, ctx):
    channel = 4 if _attr(node, "data_format", "NDHWC") == "NDHWC" else 1
    if _attr(node, "padding", "SAME") not in ("SAME", "VALID"):
        raise _Reject("attribute", "padding must be SAME or VALID")
    for key in ("dilations", "strides"):
        values = _attr(node, key, [1] * 5)
        if len(values) != 5 or values[0] != 1 or values[channel] != 1:
            raise _Reject("attribute", f"{key} must be 1 on the batch and channel dimensions")
    data = operands[2] if node.op == "Conv3DBackpropInputV2" else operands[0]
    if data.shape is not None and len(data.shape) == 5 and data.shape[channel] is None:
        raise _Reject("shape", "the channel dimension must be static")


def _check_depth_space(node, operands, ctx):
    if _attr(node, "data_format", "NHWC") not in ("NHWC", "NCHW"):
        raise _Reject("attribute", f"data_format {_attr(node, 'data_format')} is not supported")
    if (_attr(node, "block_size", 2) or 0) < 2:
        raise _Reject("attribute", "block_size must be 2 or greater")
    if _rank(operands[0]) not in (None, 4):
        raise _Reject("shape", "the input must be rank 4")


def _check_axis_not_batch(node, operands, ctx):
    spec = ctx.table.rule(node.op).get("axis", {})
    axis = _attr(node, spec["attr"]) if "attr" in spec else _scalar(operands[spec.get("input", 1)])
    rank = _rank(operands[0])
    _axis_check(node, axis, None if rank is None else rank + spec.get("rank_offset", 0), ctx.implicit_batch)


def _check_gather(node, operands, ctx):
    if _attr(node, "Tindices") != "int32":
        raise _Reject("dtype", f"GatherV2 indices are {_attr(node, 'Tindices')}; TF-TRT needs int32")
    params, indices, axis_operand = operands[0], operands[1], operands[2]
    axis = _scalar(axis_operand)
    batch_dims = _attr(node, "batch_dims", 0) or 0
    if ctx.implicit_batch:
        if params.is_tensor:
            _axis_check(node, axis, _rank(params), True)
        elif axis not in (None, 0):
            raise _Reject("implicit_batch", "a constant params tensor can only be gathered on axis 0 in implicit batch mode")
        if batch_dims:
            raise _Reject("implicit_batch", "batch_dims must be 0 in implicit batch mode")
        if params.is_tensor == indices.is_tensor and params.is_tensor and (
                (params.shape or [None])[0] != 1 or (indices.shape or [None])[0] != 1):
            raise _Reject("implicit_batch", "params and indices both computed at run time need batch size 1 "
                                            "in implicit batch mode")
    elif batch_dims > 1:
        raise _Reject("attribute", "batch_dims cannot exceed 1")


def _check_matmul(node, operands, ctx):
    if not ctx.implicit_batch:
        return
    a, b = operands[0], operands[1]

    def trt_rank(operand):
        rank = _rank(operand) or 0
        return rank - 1 if operand.is_tensor else rank

    transpose_a = bool(_attr(node, "transpose_a", False))
    if (trt_rank(a) < 2 and (transpose_a or not b.is_weights)) or trt_rank(b) < 2:
        raise _Reject("implicit_batch", "MatMul of rank-2 tensors needs a constant B and transpose_a=False in "
                                        "implicit batch mode (use_dynamic_shape=True would allow it)")


def _check_pack(node, operands, ctx):
    if ctx.implicit_batch and any(o.is_weights for o in operands):
        raise _Reject("constant_input", "Pack with a constant input is not converted in implicit batch mode")
    _check_axis_not_batch(node, operands, ctx)


def _check_pad(node, operands, ctx):
    rank = _rank(operands[0])
    if rank is not None and rank < 4:
        raise _Reject("shape", "Pad needs an input of rank >= 4")
    if _attr(node, "Tpaddings", "int32") != "int32":
        raise _Reject("dtype", "Tpaddings must be int32")
    paddings = operands[1].value
    if paddings is None:
        return
    padded = [i for i, (before, after) in enumerate(paddings.reshape(-1, 2).tolist()) if before or after]
    if len(padded) > 2:
        raise _Reject("shape", "TensorRT pads at most 2 dimensions")
    if ctx.implicit_batch and padded and padded[0] == 0:
        raise _Reject("implicit_batch", "padding on the batch dimension is not supported in implicit batch mode")


def _check_reshape(node, operands, ctx):
    data, shape = operands[0], operands[1]
    if not shape.is_weights:
        if ctx.implicit_batch:
            raise _Reject("implicit_batch", "the target shape is computed at run time; implicit batch mode needs a "
                                            "constant shape (use_dynamic_shape=True, or a static batch size, would allow it)")
        if _rank(shape) == 0:
            raise _Reject("shape", "a dynamic reshape needs a 1-D shape tensor")
        return
    if shape.value is None or not ctx.implicit_batch:
        return
    target = [int(v) for v in shape.value.reshape(-1)]
    if not target:
        raise _Reject("shape", "reshape to shape=[] is not supported")
    input_dims = _dims(data.shape)
    input_batch, output_batch = input_dims[0], target[0]
    if input_batch != -1 and output_batch != -1:
        changes_batch = input_batch != output_batch
    else:
        input_rest, output_rest = input_dims[1:], target[1:]
        static = all(d >= 0 for d in input_rest) and all(d >= 0 for d in output_rest)
        volume = lambda dims: functools.reduce(lambda x, y: x * y, dims, 1)  # noqa: E731
        changes_batch = not (static and volume(input_rest) == volume(output_rest))
    if changes_batch:
        raise _Reject("implicit_batch", "the reshape may change the batch dimension, which implicit batch mode forbids")


def _check_resize(node, operands, ctx):
    size = operands[1]
    if size.is_weights:
        if size.value is not None and size.value.size != 2:
            raise _Reject("shape", "Resize needs 2 size values")
    elif ctx.implicit_batch:
        raise _Reject("implicit_batch", "Resize needs a constant size in implicit batch mode")
    if node.op == "ResizeBilinear" and not _attr(node, "align_corners", False):
        raise _Reject("attribute", "ResizeBilinear with align_corners=False is not converted (TensorRT >= 7.1)")


def _check_pool(node, operands, ctx):
    if _attr(node, "padding", "VALID") not in ("SAME", "VALID"):
        raise _Reject("attribute", f"padding {_attr(node, 'padding')} is not supported")


def _check_slice(node, operands, ctx):
    begin, size = operands[1].value, operands[2].value
    if begin is None or size is None:
        return
    begin, size = begin.reshape(-1).tolist(), size.reshape(-1).tolist()
    if any(b < 0 for b in begin) or any(s < -1 for s in size):
        raise _Reject("attribute", "Slice begin/size out of range")
    if ctx.implicit_batch and begin:
        dim0 = _dims(operands[0].shape)[0] if operands[0].shape else -1
        if begin[0] != 0 or (size[0] != -1 and size[0] != dim0):
            raise _Reject("implicit_batch", "Slice changes the batch dimension, which implicit batch mode forbids")


def _check_split(node, operands, ctx):
    axis, value = _scalar(operands[0]), operands[1]
    _split_dim_check(node, axis, value, _attr(node, "num_split", 1), ctx, exact=False)


def _check_unpack(node, operands, ctx):
    _split_dim_check(node, _attr(node, "axis", 0), operands[0], _attr(node, "num", 1), ctx, exact=True)


def _split_dim_check(node, axis, value, parts, ctx, exact):
    rank = _rank(value)
    _axis_check(node, axis, rank, ctx.implicit_batch)
    if axis is None or rank is None:
        return
    size = value.shape[axis % rank]
    if size is None:
        raise _Reject("shape", f"{node.op} needs a static size on axis {axis}")
    if (exact and size != parts) or (parts and size % parts):
        raise _Reject("shape", f"axis {axis} of size {size} cannot be split into {parts}")


def _check_squeeze(node, operands, ctx):
    squeeze_dims = _attr(node, "squeeze_dims", []) or []
    data = operands[0]
    if not squeeze_dims:
        if ctx.implicit_batch or data.shape is None or any(d is None for d in data.shape):
            raise _Reject("attribute", "Squeeze without squeeze_dims is only converted in explicit batch mode with static shapes")
        return
    rank = _rank(data)
    for axis in squeeze_dims:
        _axis_check(node, axis, rank, ctx.implicit_batch)
        if rank is not None and data.shape[axis % rank] not in (None, 1):
            raise _Reject("shape", f"dimension {axis} is not of size 1")


def _check_strided_slice(node, operands, ctx):
    if _attr(node, "new_axis_mask", 0):
        raise _Reject("attribute", "StridedSlice with new_axis_mask is not supported")
    if not ctx.implicit_batch:
        return
    if _attr(node, "shrink_axis_mask", 0) & 1:
        raise _Reject("implicit_batch", "StridedSlice removes the batch dimension, which implicit batch mode forbids")
    if _attr(node, "ellipsis_mask", 0) & 1:
        return
    begin, end = operands[1].value, operands[2].value
    if begin is None or end is None or not begin.size:
        return
    dim0 = _dims(operands[0].shape)[0] if operands[0].shape else -1
    full_begin = bool(_attr(node, "begin_mask", 0) & 1) or int(begin.reshape(-1)[0]) == 0
    full_end = bool(_attr(node, "end_mask", 0) & 1) or (dim0 >= 0 and int(end.reshape(-1)[0]) >= dim0)
    if not (full_begin and full_end):
        raise _Reject("implicit_batch", "StridedSlice slices the batch dimension, which implicit batch mode forbids")


def _check_topk(node, operands, ctx):
    if not _attr(node, "sorted", True):
        raise _Reject("attribute", "TopKV2 needs sorted=True")
    rank = _rank(operands[0])
    if rank is not None and rank - (1 if ctx.implicit_batch else 0) == 0:
        raise _Reject("implicit_batch", "TopKV2 cannot run on the batch dimension")


def _check_transpose(node, operands, ctx):
    perm = operands[1].value
    if ctx.implicit_batch and perm is not None and perm.size and int(perm.reshape(-1)[0]) != 0:
        raise _Reject("implicit_batch", "Transpose moves the batch dimension, which implicit batch mode forbids")


def _check_fused_batch_norm(node, operands, ctx):
    if _attr(node, "is_training", False):
        raise _Reject("attribute", f"{node.op} with is_training=True (call the Keras model with training=False)")
    data = operands[0]
    channel = 1 if _attr(node, "data_format", "NHWC") == "NCHW" else 3
    if not ctx.implicit_batch and data.shape is not None and len(data.shape) > channel and data.shape[channel] is None:
        raise _Reject("shape", "the channel dimension must be static")


def _check_reduce(node, operands, ctx):
    if _attr(node, "Tidx", "int32") != "int32":
        raise _Reject("dtype", "Tidx must be int32")
    axes = operands[1].value
    if axes is None:
        return
    axes = axes.reshape(-1).tolist()
    if not axes:
        raise _Reject("attribute", "reducing over all dimensions (including the batch) is not supported")
    for axis in axes:
        _axis_check(node, int(axis), _rank(operands[0]), ctx.implicit_batch)


def _check_argminmax(node, operands, ctx):
    if _attr(node, "output_type", "int64") != "int32":
        raise _Reject("dtype", f"{node.op} output_type {_attr(node, 'output_type', 'int64')} is not supported (int32 only)")
    _axis_check(node, _scalar(operands[1]), _rank(operands[0]), ctx.implicit_batch)


def _check_softmax(node, operands, ctx):
    rank = _rank(operands[0])
    if ctx.implicit_batch and rank is not None and rank <= 1:
        raise _Reject("implicit_batch", f"{node.op} over the batch dimension is not supported in implicit batch mode")


def _check_tile(node, operands, ctx):
    multiples = operands[1]
    if ctx.implicit_batch and multiples.is_tensor:
        raise _Reject("implicit_batch", "Tile needs constant multiples in implicit batch mode")
    if ctx.implicit_batch and operands[0].is_tensor and multiples.value is not None and multiples.value.size and \
            int(multiples.value.reshape(-1)[0]) > 1:
        raise _Reject("implicit_batch", "Tile on the batch dimension is not supported in implicit batch mode")


CHECKS: Dict[str, Callable[[_Node, List[_Operand], _Context], None]] = {
    "not_all_constant": _check_not_all_constant,
    "broadcast": _check_broadcast,
    "addn": _check_addn,
    "cast": _check_cast,
    "concat": _check_concat,
    "const_dtype": _check_const_dtype,
    "conv2d": _check_conv2d,
    "conv2d_transpose": _check_conv2d_transpose,
    "conv3d": _check_conv3d,
    "depth_space": _check_depth_space,
    "axis_not_batch": _check_axis_not_batch,
    "gather": _check_gather,
    "matmul": _check_matmul,
    "pack": _check_pack,
    "pad": _check_pad,
    "reshape": _check_reshape,
    "resize": _check_resize,
    "pool": _check_pool,
    "slice": _check_slice,
    "split": _check_split,
    "unpack": _check_unpack,
    "squeeze": _check_squeeze,
    "strided_slice": _check_strided_slice,
    "topk": _check_topk,
    "transpose": _check_transpose,
    "fused_batch_norm": _check_fused_batch_norm,
    "reduce": _check_reduce,
    "argminmax": _check_argminmax,
    "softmax": _check_softmax,
    "tile": _check_tile,
}


def _explicitly_on_cpu(device: str) -> bool:
    lowered = device.lower()
    return "device:cpu" in lowered or "/cpu:" in lowered


def _validate_node(node: _Node, ctx: _Context) -> None:
    """TrtNodeValidator::IsTensorRTCandidate; raises _Reject with TF-TRT's reason."""
    table = ctx.table
    rule = table.rule(node.op)
    if node.op in table.segmenter["quantization_op_types"] and ctx.precision != "int8":
        raise _Reject("precision", f"{node.op} is only taken into TensorRT in int8 mode, where its ranges are used")
    if rule is None:
        if node.op in REMAPPER_FUSED_OP_TYPES:
            raise _Reject("fused_op", f"{node.op} comes from grappler's remapper, which TF-TRT turns off; plan the graph "
                                      "optimized without remapping")
        if node.op in CALL_OP_TYPES:
            raise _Reject("unknown_op", f"{node.op}: a function call; inline functions before planning")
        raise _Reject("unknown_op", f"op type {node.op} has no TF-TRT {table.tensorflow_version} converter")
    if ctx.precision not in rule["precisions"]:
        raise _Reject("precision", f"{node.op} is only converted in {', '.join(rule['precisions'])} mode")
    operands = [_operand(ctx, producer, port) for producer, port in node.inputs]
    dtype_attr = rule.get("dtype_attr")
    if dtype_attr:
        dtype = _attr(node, dtype_attr)
        if dtype is None:
            raise _Reject("attribute", f"attribute {dtype_attr} not found")
        if rule["dtypes"] is not None and dtype not in rule["dtypes"]:
            raise _Reject("dtype", f"{node.op} on {dtype} is not supported (allowed: {', '.join(rule['dtypes'])})")
    if ctx.implicit_batch and not rule["implicit_batch"]:
        raise _Reject("implicit_batch", f"{node.op} is only converted in explicit batch mode (use_dynamic_shape=True)")
    for index, role in enumerate(rule.get("inputs") or []):
        if index >= len(operands):
            break
        operand = operands[index]
        producer = node.inputs[index][0]
        if role == "weights" and not operand.is_weights:
            raise _Reject("needs_constant", f"input {index} ({producer}) of {node.op} must be a constant, but it is "
                                            "computed at run time")
        if role == "tensor" and operand.is_weights:
            raise _Reject("constant_input", f"input {index} ({producer}) of {node.op} must be computed at run time, "
                                            "but it is a constant")
        if role == "resource" and operand.kind != "resource":
            raise _Reject("input", f"input {index} ({producer}) of {node.op} must be a resource handle")
    for check in rule.get("checks") or []:
        CHECKS[check](node, operands, ctx)


def _classify(node: _Node, ctx: _Context) -> Tuple[bool, str, str, Optional[int]]:
    """(supported, reason_kind, reason, batch size) in the order segment.cc applies its checks."""
    batch: Optional[int] = None
    try:
        if not ctx.ignore_devices and node.device and _explicitly_on_cpu(node.device):
            raise _Reject("device", f"placed on {node.device}; TF-TRT only takes nodes that can run on the GPU")
        if node.name in ctx.outputs:
            raise _Reject("graph_output", "a graph output: TF-TRT's segmenter keeps fetched nodes out of engines")
        if ctx.implicit_batch:
            translatable, batch, why = _implicit_batch_size(node, ctx)
            if not translatable:
                if why == "dynamic_rank":
                    raise _Reject("dynamic_rank", "an input has unknown rank (dynamic rank); implicit batch mode needs "
                                                  "known ranks")
                raise _Reject("implicit_batch", "implicit batch mode needs inputs of rank >= 2 with a batch dimension; "
                                                "this node works on scalars or vectors such as int32 shape tensors "
                                                "(use_dynamic_shape=True would allow it)")
        _validate_node(node, ctx)
    except _Reject as rejected:
        kind = rejected.kind
        if node.op in ("Placeholder", "PlaceholderWithDefault") and kind == "unknown_op":
            return False, "graph_input", "a graph input", None
        if kind == "unknown_op" and node.op == "NoOp":
            return False, "no_data", "a control-only node", None
        return False, kind, rejected.reason, None
    return True, "", "", batch


# --------------------------------------------------------------------------------------
# The segmenter (segment/segment.cc SegmentGraph)
# --------------------------------------------------------------------------------------

class _BatchSize:
    """segment/union_find.cc ClusterBatchSize: an optional batch size and max batch size."""

    __slots__ = ("batch", "max_batch")

    def __init__(self, batch: Optional[int] = None, max_batch: Optional[int] = None):
        self.batch = batch
        self.max_batch = max_batch
        if batch is not None and batch >= 0:
            self.max_batch = batch if max_batch is None else max_batch

    def copy(self) -> "_BatchSize":
        clone = _BatchSize()
        clone.batch, clone.max_batch = self.batch, self.max_batch
        return clone

    def merge_if_compatible(self, other: "_BatchSize") -> bool:
        def compatible(a, b):
            return a is None or b is None or a == b

        if not compatible(self.batch, other.batch) or not compatible(self.max_batch, other.max_batch):
            return False
        if self.batch is None:
            self.batch = other.batch
        if self.batch is not None and self.batch >= 0 and self.max_batch is None:
            self.max_batch = self.batch
        if self.max_batch is None:
            self.max_batch = other.max_batch
        return True


class _SegmentGraph:
    """segment.cc SimpleGraph: a mutable copy of the graph whose edges get contracted."""

    def __init__(self, names: Sequence[str], nodes: Mapping[str, _Node]):
        self.names = list(names)
        self.index = {name: i for i, name in enumerate(self.names)}
        self.edges: List[Optional[Tuple[int, int, bool]]] = []
        self.in_edges: List[List[int]] = [[] for _ in self.names]
        self.out_edges: List[List[int]] = [[] for _ in self.names]
        for name in self.names:
            node = nodes[name]
            for producer, _ in node.inputs:
                self.add_edge(self.index[producer], self.index[name], False)
            for producer in node.control_inputs:
                self.add_edge(self.index[producer], self.index[name], True)

    def add_edge(self, src: int, dst: int, control: bool) -> int:
        edge_id = len(self.edges)
        self.edges.append((src, dst, control))
        self.out_edges[src].append(edge_id)
        self.in_edges[dst].append(edge_id)
        return edge_id

    def remove_edge(self, edge_id: int) -> None:
        src, dst, _ = self.edges[edge_id]
        self.out_edges[src].remove(edge_id)
        self.in_edges[dst].remove(edge_id)

    def in_nodes(self, node: int) -> List[int]:
        return [self.edges[e][0] for e in self.in_edges[node]]

    def can_contract(self, edge_id: int) -> bool:
        """False if another path leads from src to dst: merging them would make a cycle."""
        src, dst, _ = self.edges[edge_id]
        stack = [n for n in self.in_nodes(dst) if n != src]
        seen = set(stack)
        while stack:
            node = stack.pop()
            if node == src:
                return False
            for parent in self.in_nodes(node):
                if parent not in seen:
                    seen.add(parent)
                    stack.append(parent)
        return True

    def contract(self, edge_id: int) -> List[int]:
        src, dst, _ = self.edges[edge_id]
        for e in list(self.in_edges[dst]):
            e_src, _, control = self.edges[e]
            if e_src != src:
                self.add_edge(e_src, src, control)
        for e in list(self.out_edges[dst]):
            _, e_dst, control = self.edges[e]
            self.add_edge(src, e_dst, control)
        return list(self.in_edges[dst]) + list(self.out_edges[dst])

    def post_order(self) -> List[int]:
        """StableDFS from the graph's roots, children in name order; nodes listed when left."""
        roots = sorted((i for i in range(len(self.names)) if not self.in_edges[i]), key=lambda i: self.names[i])
        order, visited = [], [False] * len(self.names)
        # segment.cc starts at the source node, whose children are the roots in name order.
        stack = [(root, False) for root in roots]
        while stack:
            node, leaving = stack.pop()
            if leaving:
                order.append(node)
                continue
            if visited[node]:
                continue
            visited[node] = True
            stack.append((node, True))
            children = sorted((self.edges[e][1] for e in self.out_edges[node]), key=lambda i: self.names[i])
            stack.extend((child, False) for child in children if not visited[child])
        return order


def _segment(names: Sequence[str], nodes: Mapping[str, _Node], candidate: Mapping[str, bool],
             batch: Mapping[str, Optional[int]]) -> List[Set[str]]:
    """Union supported nodes along data edges as SegmentGraph step 1 does; returns the raw clusters."""
    graph = _SegmentGraph(names, nodes)
    parent = list(range(len(names)))
    props = [_BatchSize(batch.get(name)) for name in names]

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for node in graph.post_order():
        if not candidate[names[node]]:
            continue
        expected = props[root(node)].copy()
        while True:
            contract: List[int] = []
            for edge_id in graph.out_edges[node]:
                _, dst, control = graph.edges[edge_id]
                if control or not candidate[names[dst]]:
                    continue
                merged = expected.copy()
                if not merged.merge_if_compatible(props[root(dst)]):
                    continue
                if graph.can_contract(edge_id):
                    contract.append(edge_id)
                    expected = merged
            if not contract:
                break
            pending = sorted(set(contract))
            while pending:
                edge_id = pending.pop(0)
                src, dst, _ = graph.edges[edge_id]
                a, b = root(src), root(dst)
                if a != b:
                    merged = props[a].copy()
                    merged.merge_if_compatible(props[b])
                    parent[b] = a
                    props[a] = merged
                for removed in graph.contract(edge_id):
                    if removed in pending:
                        pending.remove(removed)
                    graph.remove_edge(removed)
    clusters: Dict[int, Set[str]] = collections.defaultdict(set)
    for i, name in enumerate(names):
        if candidate[name]:
            clusters[root(i)].add(name)
    # sg_map in segment.cc is keyed by the root's name: engines are numbered in that order.
    return [clusters[r] for r in sorted(clusters, key=lambda r: names[r])]


def _remove_constant_outputs(segment: Set[str], nodes: Mapping[str, _Node], consumers: Mapping[str, List[str]]) -> None:
    """Step 2: a Const that also feeds nodes outside cannot be a segment output, so it leaves."""
    while True:
        leaving = [name for name in sorted(segment)
                   if nodes[name].op == "Const" and any(c not in segment for c in consumers[name])]
        if not leaving:
            return
        queue = collections.deque(leaving)
        while queue:
            name = queue.popleft()
            if name not in segment:
                continue
            segment.discard(name)
            node = nodes[name]
            queue.extend(p for p in [p for p, _ in node.inputs] + node.control_inputs if p in segment)


def _build_segments(names, nodes, candidate, batch, consumers, minimum_segment_size, noop_types, max_engines):
    clusters = _segment(names, nodes, candidate, batch)
    kept, dropped = [], []
    for cluster in clusters:
        _remove_constant_outputs(cluster, nodes, consumers)
        effective = sum(1 for n in cluster if nodes[n].op not in noop_types)
        if effective == 0 or effective < minimum_segment_size:
            # Lone constants are not worth reporting: only regions that hold some compute.
            if any(nodes[n].op not in NON_COMPUTE_OP_TYPES for n in cluster):
                dropped.append((cluster, effective, f"{effective} node(s) < minimum_segment_size {minimum_segment_size}"))
            continue
        kept.append((cluster, effective))
    if max_engines > 0 and len(kept) > max_engines:
        order = sorted(range(len(kept)), key=lambda i: -kept[i][1])  # stable, like std::stable_sort
        keep = set(order[:max_engines])
        dropped += [(kept[i][0], kept[i][1], f"over TF_TRT_MAX_ALLOWED_ENGINES={max_engines} (only the largest are kept)")
                    for i in range(len(kept)) if i not in keep]
        kept = [kept[i] for i in range(len(kept)) if i in keep]
    return kept, dropped


# --------------------------------------------------------------------------------------
# The plan
# --------------------------------------------------------------------------------------

def _normalize_precision(precision) -> str:
    value = getattr(precision, "value", precision)
    if not isinstance(value, str) or value.lower() not in PRECISIONS:
        raise ConfigError(f"precision={precision!r} is not a TF-TRT precision; use one of {', '.join(PRECISIONS)}")
    return value.lower()


def _normalize_input_shapes(input_shapes, nodes, tensors) -> Optional[Tuple[Tuple[str, Tuple[Optional[int], ...]], ...]]:
    if input_shapes is None:
        return None
    if not isinstance(input_shapes, Mapping):
        raise ConfigError("input_shapes must map input names to shapes, e.g. {'images': (8, 224, 224, 3)}")
    placeholders = sorted(n.name for n in nodes.values() if n.op == "Placeholder")
    normalized = []
    for key, shape in input_shapes.items():
        name = key.split(":")[0]
        if name not in placeholders:
            raise ConfigError(f"input_shapes names {key!r}, which is not an input of the graph; its inputs are: "
                              f"{', '.join(placeholders) or '(none)'}")
        try:
            dims = tuple(None if d is None or d == -1 else int(d) for d in shape)
        except (TypeError, ValueError):
            raise ConfigError(f"input_shapes[{key!r}]={shape!r} is not a sequence of ints (or None)") from None
        declared = tensors[name][0].shape
        if declared is not None:
            if len(declared) != len(dims):
                raise ConfigError(f"input_shapes[{key!r}] has rank {len(dims)} but the graph's input has rank "
                                  f"{len(declared)} {list(declared)}")
            for i, (want, have) in enumerate(zip(dims, declared)):
                if have is not None and want is not None and want != have:
                    raise ConfigError(f"input_shapes[{key!r}] dim {i} is {want} but the graph fixes it to {have}")
        normalized.append((name, dims))
    return tuple(sorted(normalized))


def _default_outputs(nodes: Mapping[str, _Node], consumers: Mapping[str, List[str]]) -> Set[str]:
    """Fetched nodes: those nothing reads from (what trt_convert passes as the grappler fetch)."""
    controlled = {p for n in nodes.values() for p in n.control_inputs}
    return {name for name, node in nodes.items()
            if not consumers[name] and name not in controlled and node.op not in ("NoOp", "Const")}


def plan_tensorrt_segments(graph_def, *, precision="fp32", minimum_segment_size: int = 3,
                           use_dynamic_shape: bool = False,
                           input_shapes: Optional[Mapping[str, Sequence[Optional[int]]]] = None,
                           output_names: Optional[Sequence[str]] = None) -> SegmentPlan:
    """Predict which parts of a frozen graph TF-TRT (TF 2.17) will turn into TensorRT engines.

    Args:
      graph_def: the frozen, grappler-optimized GraphDef TF-TRT would see.
      precision: "fp32", "fp16" or "int8" (or a Precision enum with those values).
      minimum_segment_size: TF-TRT's minimum_segment_size (>= 1).
      use_dynamic_shape: TrtGraphConverterV2's use_dynamic_shape (False: implicit batch mode).
      input_shapes: the shapes engines will be built for (converter.build), by input name;
        they only inform the run-time build hint: TF-TRT segments with the graph's own shapes.
      output_names: fetched nodes; default: the nodes nothing reads from.

    Returns a SegmentPlan. Raises ConfigError for bad options, ModelLoadError for a graph
    that is not a readable GraphDef.
    """
    precision = _normalize_precision(precision)
    if isinstance(minimum_segment_size, bool) or not isinstance(minimum_segment_size, int) or minimum_segment_size < 1:
        raise ConfigError(f"minimum_segment_size={minimum_segment_size!r} must be an integer >= 1 "
                          "(TF-TRT's default is 3)")
    table = load_op_table()
    nodes = _read_nodes(graph_def)
    tensors = _infer_tensors(graph_def, nodes)
    shapes = _normalize_input_shapes(input_shapes, nodes, tensors)
    consumers: Dict[str, List[str]] = {name: [] for name in nodes}
    for node in nodes.values():
        for producer, _ in node.inputs:
            consumers[producer].append(node.name)
    if output_names is None:
        outputs = _default_outputs(nodes, consumers)
    else:
        outputs = {name.split(":")[0].lstrip("^") for name in output_names}
        unknown = sorted(outputs - set(nodes))
        if unknown:
            raise ConfigError(f"output_names {unknown} are not nodes of the graph")
    devices = {n.device for n in nodes.values()}
    # A graph frozen on a CPU-only machine carries CPU placements everywhere; that says
    # nothing about the GPU machine, so only a mix of devices is taken as the author's intent.
    ignore_devices = not any(d and not _explicitly_on_cpu(d) for d in devices)
    names = list(nodes)
    noop_types = set(table.segmenter["noop_op_types_not_counted"])
    max_engines = _max_allowed_engines(table)

    def predict(implicit_batch: bool):
        ctx = _Context(table, nodes, tensors, precision, implicit_batch, ignore_devices, outputs)
        verdicts: Dict[str, Tuple[bool, str, str]] = {}
        batch: Dict[str, Optional[int]] = {}
        for name, node in nodes.items():
            supported, kind, reason, batch_size = _classify(node, ctx)
            verdicts[name] = (supported, kind, reason)
            batch[name] = batch_size
        candidate = {name: verdicts[name][0] for name in names}
        kept, dropped = _build_segments(names, nodes, candidate, batch, consumers, minimum_segment_size,
                                        noop_types, max_engines)
        return verdicts, batch, candidate, kept, dropped

    verdicts, batch, candidate, kept, dropped = predict(implicit_batch=not use_dynamic_shape)
    engines = []
    engine_of: Dict[str, int] = {}
    for index, (cluster, effective) in enumerate(kept):
        outside_constants = {p for n in cluster for p, _ in nodes[n].inputs if p not in cluster and nodes[p].op == "Const"}
        histogram = collections.Counter(nodes[n].op for n in cluster)
        engines.append(PredictedEngine(
            index=index,
            node_names=tuple(sorted(cluster)),
            node_count=len(cluster) + len(outside_constants),
            effective_node_count=effective,
            compute_node_count=sum(1 for n in cluster if nodes[n].op not in NON_COMPUTE_OP_TYPES),
            op_histogram=tuple(sorted(histogram.items(), key=lambda kv: (-kv[1], kv[0]))),
        ))
        for n in cluster:
            engine_of[n] = index
    compute_nodes = [n for n in names if nodes[n].op not in NON_COMPUTE_OP_TYPES]
    covered = sum(1 for n in compute_nodes if n in engine_of)

    breakers = _rank_breakers(names, nodes, verdicts, engine_of, consumers, candidate, batch, minimum_segment_size,
                              noop_types, max_engines, covered)
    histogram = collections.Counter(n.op for n in nodes.values())
    graph_inputs = tuple(sorted((n.name, tensors[n.name][0].shape) for n in nodes.values() if n.op == "Placeholder"))
    plan_engines = tuple(engines)
    verdict = _verdict(plan_engines, len(compute_nodes), covered, breakers, minimum_segment_size, dropped, max_engines)
    hints = _hints(nodes, graph_inputs, shapes, precision, use_dynamic_shape, plan_engines, dropped, max_engines)
    coverage = covered / len(compute_nodes) if compute_nodes else 0.0
    if not use_dynamic_shape and compute_nodes and (len(kept) != 1 or coverage < 0.9):
        # The most common fix for implicit-batch breakers is explicit batch: say what it would give.
        _, _, _, alternative, _ = predict(implicit_batch=False)
        alternative_covered = sum(1 for cluster, _ in alternative for n in cluster if nodes[n].op not in NON_COMPUTE_OP_TYPES)
        hints += (f"With use_dynamic_shape=True (explicit batch, needs optimization profiles from converter.build()) "
                  f"the plan is {len(alternative)} engine(s) covering {alternative_covered / len(compute_nodes):.0%} "
                  "of compute nodes.",)
    return SegmentPlan(
        tensorflow_version=table.tensorflow_version,
        precision=precision,
        minimum_segment_size=minimum_segment_size,
        use_dynamic_shape=use_dynamic_shape,
        input_shapes=shapes,
        graph_inputs=graph_inputs,
        op_histogram=tuple(sorted(histogram.items(), key=lambda kv: (-kv[1], kv[0]))),
        nodes=tuple(NodeVerdict(name=name, op_type=nodes[name].op, supported=verdicts[name][0],
                                reason=verdicts[name][2], reason_kind=verdicts[name][1], engine=engine_of.get(name))
                    for name in names),
        engines=plan_engines,
        dropped_segments=tuple(DroppedSegment(tuple(sorted(c)), e, why) for c, e, why in dropped),
        breakers=breakers,
        compute_node_count=len(compute_nodes),
        compute_nodes_in_engines=covered,
        verdict=verdict,
        hints=hints,
    )


def _max_allowed_engines(table: OpSupportTable) -> int:
    # TF-TRT reads the same variable at conversion time; honouring it keeps the plan comparable.
    raw = os.environ.get(table.segmenter["max_allowed_engines_env"], "")
    try:
        return int(raw) if raw.strip() else int(table.segmenter["max_allowed_engines_default"])
    except ValueError:
        raise ConfigError(f"{table.segmenter['max_allowed_engines_env']}={raw!r} is not an integer; unset it or "
                          "give a number") from None


def _rank_breakers(names, nodes, verdicts, engine_of, consumers, candidate, batch, minimum_segment_size,
                   noop_types, max_engines, covered) -> Tuple[Breaker, ...]:
    by_type: Dict[str, List[str]] = collections.defaultdict(list)
    for name in names:
        supported, kind, _ = verdicts[name]
        if not supported and kind not in NOT_A_BREAKER:
            by_type[nodes[name].op].append(name)
    if not by_type:
        return ()
    boundaries: Dict[str, int] = {}
    for op_type, members in by_type.items():
        count = 0
        for name in members:
            neighbours = [p for p, _ in nodes[name].inputs] + consumers[name]
            count += len({engine_of[n] for n in neighbours if n in engine_of})
        boundaries[op_type] = count
    # Counterfactual: segment again as if this op type were supported, to measure what it costs.
    ordered = sorted(by_type, key=lambda t: (-boundaries[t], -len(by_type[t]), t))
    gains: Dict[str, Tuple[int, int]] = {}
    compute = {n for n in names if nodes[n].op not in NON_COMPUTE_OP_TYPES}
    for op_type in ordered[:_MAX_COUNTERFACTUALS]:
        what_if = dict(candidate)
        for name in by_type[op_type]:
            what_if[name] = True
        kept, _ = _build_segments(names, nodes, what_if, batch, consumers, minimum_segment_size, noop_types, max_engines)
        now_covered = sum(1 for cluster, _ in kept for n in cluster if n in compute)
        gains[op_type] = (max(now_covered - covered, 0), len(kept))
    breakers = []
    for op_type, members in by_type.items():
        reasons = collections.Counter((verdicts[n][1], verdicts[n][2]) for n in members)
        (kind, reason), _ = reasons.most_common(1)[0]
        gain, engines_if = gains.get(op_type, (0, -1))
        breakers.append(Breaker(op_type, len(members), reason, kind, boundaries[op_type], gain, engines_if,
                                tuple(members[:3])))
    breakers.sort(key=lambda b: (-b.compute_nodes_gained_if_supported, -b.boundaries, -b.node_count, b.op_type))
    return tuple(breakers)


def _verdict(engines, compute_total, covered, breakers, minimum_segment_size, dropped, max_engines) -> str:
    harmful = [b for b in breakers if b.compute_nodes_gained_if_supported > 0 or b.boundaries > 0] or list(breakers)
    named = ", ".join(b.op_type for b in harmful[:3])
    breakers_text = f"; the breakers are {named}" if named else ""
    if not engines:
        return (f"No TensorRT engine: no region of >= {minimum_segment_size} supported nodes{breakers_text}. "
                "TF-TRT would leave the whole graph in TensorFlow.")
    coverage = covered / compute_total if compute_total else 0.0
    largest = max(e.compute_node_count for e in engines)
    share = largest / compute_total if compute_total else 0.0
    if len(engines) == 1:
        if coverage >= 0.9:
            return f"1 engine covering {coverage:.0%} of compute nodes: expect the full TF-TRT speed-up."
        return f"1 engine covering {coverage:.0%} of compute nodes; the rest stays in TensorFlow{breakers_text}."
    if share >= 0.75:
        return (f"{len(engines)} engines, one dominant ({largest} compute nodes, {share:.0%} of compute); "
                f"{coverage:.0%} of compute nodes in TensorRT{breakers_text}.")
    # Many small engines: each boundary is a TensorFlow <-> TensorRT hand-off and no fusion across it.
    return (f"{len(engines)} engines covering {coverage:.0%} of compute nodes, largest {largest} compute nodes "
            f"({share:.0%}): expect little speed-up{breakers_text}.")


def _format_shape(shape) -> str:
    return "?" if shape is None else "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _hints(nodes, graph_inputs, shapes, precision, use_dynamic_shape, engines, dropped, max_engines) -> Tuple[str, ...]:
    hints: List[str] = []
    dynamic = [(name, shape) for name, shape in graph_inputs if shape is None or any(d is None for d in shape)]
    if engines:
        if dynamic and shapes is None:
            listed = ", ".join(f"{name} {_format_shape(shape)}" for name, shape in dynamic)
            profile = (" and, with use_dynamic_shape=True, the optimization profiles come from those build inputs"
                       if use_dynamic_shape else "")
            hints.append(
                f"Engines will be built at run time: inputs have dynamic dims ({listed}) and no build shapes were given. "
                "The first request (and each new batch size beyond maximum_cached_engines) waits for a TensorRT build, "
                f"seconds to minutes. Call converter.build(input_fn) with your serving shapes before save(){profile}; "
                "pass input_shapes=... to plan for them.")
        elif shapes is not None:
            listed = ", ".join(f"{name} {_format_shape(shape)}" for name, shape in shapes)
            unknown = [name for name, shape in shapes if any(d is None for d in shape)]
            if unknown:
                hints.append(f"input_shapes still leave dims unknown for {', '.join(unknown)}: engines for them are "
                             "built at run time.")
            else:
                hints.append(f"Build the engines ahead with converter.build() for {listed}, then save(); other shapes "
                             "still trigger a build at run time.")
        elif not dynamic:
            hints.append("Input shapes are static: converter.build() before save() avoids building engines on the "
                         "first request.")
    if precision == "int8":
        hints.append("int8 needs calibration data (calibration_input_fn) unless the graph has quantization ops; "
                     "without either TF-TRT builds fp16 engines.")
    ops = {n.op for n in nodes.values()}
    if ops & REMAPPER_FUSED_OP_TYPES:
        hints.append("The graph has remapper-fused ops (" + ", ".join(sorted(ops & REMAPPER_FUSED_OP_TYPES)) +
                     "); TF-TRT runs grappler without remapping, so plan the graph optimized without it.")
    if ops & UNFROZEN_OP_TYPES:
        hints.append("The graph still reads variables; TF-TRT freezes them first: plan the frozen graph.")
    if ops & CALL_OP_TYPES:
        hints.append("The graph calls functions (PartitionedCall); TF-TRT plans the inlined graph: inline them first.")
    over_cap = [d for d in dropped if "MAX_ALLOWED" in d[2]]
    if over_cap:
        hints.append(f"{len(over_cap)} more segment(s) exceed TF_TRT_MAX_ALLOWED_ENGINES={max_engines} and stay in "
                     "TensorFlow.")
    return tuple(hints)


# --------------------------------------------------------------------------------------
# Prediction vs a real conversion
# --------------------------------------------------------------------------------------

def engines_in_converted_graph(converted_graph_def) -> Tuple[ActualEngine, ...]:
    """The TRTEngineOps of a TF-TRT converted GraphDef, counted as trt_convert's summary() counts them."""
    if not hasattr(converted_graph_def, "node"):
        raise ModelLoadError(f"expected a converted GraphDef, got {type(converted_graph_def).__name__}")
    functions = {f.signature.name: f for f in converted_graph_def.library.function}
    engines = []
    for node in sorted((n for n in converted_graph_def.node if n.op == "TRTEngineOp"), key=lambda n: n.name):
        # utils.get_trtengineop_node_op_count looks the segment up by this name.
        function = functions.get(f"{node.name}_native_segment")
        if function is None and "segment_func" in node.attr:
            function = functions.get(node.attr["segment_func"].func.name)
        members = list(function.node_def) if function is not None else []
        histogram = collections.Counter(n.op for n in members)
        engines.append(ActualEngine(
            name=node.name,
            node_count=len(members),
            op_histogram=tuple(sorted(histogram.items(), key=lambda kv: (-kv[1], kv[0]))),
            node_names=tuple(sorted(n.name for n in members)),
        ))
    return tuple(engines)


def compare_with_conversion(plan: SegmentPlan, converted_graph_def) -> ConversionComparison:
    """Set the engines a real TF-TRT conversion produced beside the plan's predicted engines."""
    actual = engines_in_converted_graph(converted_graph_def)
    predicted_sets = [set(e.node_names) for e in plan.engines]
    pairs = []
    for engine in actual:
        names = set(engine.node_names)
        for index, predicted in enumerate(predicted_sets):
            shared = len(names & predicted)
            if shared:
                pairs.append((shared, engine.name, index))
    pairs.sort(key=lambda p: (-p[0], p[1], p[2]))
    matched_actual: Dict[str, Tuple[int, int]] = {}
    used = set()
    for shared, name, index in pairs:
        if name in matched_actual or index in used:
            continue
        matched_actual[name] = (index, shared)
        used.add(index)
    matches = []
    for engine in actual:
        index, shared = matched_actual.get(engine.name, (None, 0))
        matches.append(EngineMatch(engine.name, engine.node_count, index,
                                   None if index is None else plan.engines[index].node_count, shared))
    return ConversionComparison(
        predicted_engine_count=len(plan.engines),
        actual_engine_count=len(actual),
        predicted_node_counts=tuple(e.node_count for e in plan.engines),
        actual_node_counts=tuple(e.node_count for e in actual),
        matches=tuple(matches),
        unmatched_predicted=tuple(i for i in range(len(plan.engines)) if i not in used),
        actual_engines=actual,
    )


__all__ = [
    "ActualEngine", "Breaker", "ConversionComparison", "DroppedSegment", "EngineMatch", "NodeVerdict",
    "OpSupportTable", "PredictedEngine", "SegmentPlan", "compare_with_conversion", "engines_in_converted_graph",
    "load_op_table", "plan_tensorrt_segments",
]


def plan_for_model(model, *, precision="fp32", minimum_segment_size: int = 3, use_dynamic_shape: bool = False,
                   build_shapes=None) -> SegmentPlan:
    """The plan for a LoadedModel: freeze and clean its graph the way TF-TRT does, then predict.

    ``build_shapes`` (e.g. "1,8" or ((1, 224, 224, 3),)) feeds only the run-time build hint,
    taking the largest shape given for each input.
    """
    from tftrt_toolkit.backends import graph_passes

    graph_def, frozen = graph_passes.graph_for_inspection(model.saved_model_dir, model.signature.key)
    # The frozen function's inputs follow the signature's (sorted) input order.
    placeholder_for = {info.name: tensor.split(":")[0]
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
    return plan_tensorrt_segments(
        graph_def, precision=precision, minimum_segment_size=minimum_segment_size,
        use_dynamic_shape=use_dynamic_shape, input_shapes=input_shapes,
        output_names=[t.split(":")[0] for t in frozen.output_tensor_names])
