"""Precision coverage: the share of a converted graph's multiply-adds that run in the precision asked for.

Counting ops misleads (issue 25: an "int8" transformer quantized its 9 Dense MatMuls and left the
24 attention and projection matmuls in fp32, and said ``layers_quantized: 1 of 1``), so this
counts FLOPs: 2 per multiply-add of every op that does the model's dense arithmetic — Conv2D,
DepthwiseConv2dNative, MatMul, BatchMatMul(V2/V3), Einsum, and their fused (``_Fused*``,
``_Mkl*``) and quantized (``Quantized*``, ``_Quantized*``) forms — read from the converted
GraphDef's shapes at batch 1 (every unknown dimension counts as 1). Elementwise ops,
normalisations and softmax are not counted: they are memory-bound, and no precision pass is
judged by them.

Which precision an op runs in is read from its attributes: quantized op types (or qint8/quint8
inputs) are int8, ``T=bfloat16`` is bf16, ``T=half`` fp16, anything else fp32.

A bf16 or int8 conversion whose share is below ``MINIMUM_SHARE`` is refused
(``check_coverage``) naming the op types left behind, unless the caller accepts a partial one.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Dict, Optional, Tuple

from tftrt_toolkit.errors import ConversionError

# Below this share of FLOPs in the target precision, a bf16/int8 conversion is refused by default.
MINIMUM_SHARE = 0.5
# How the refusal is overridden, as a user types it (the config field has the same meaning).
OVERRIDE_FLAG = "--allow_partial"

# Op type (after stripping fusion/quantization decoration) -> how its multiply-adds are counted.
_CONV = "conv"
_DEPTHWISE = "depthwise"
_MATMUL = "matmul"
_BATCH_MATMUL = "batch_matmul"
_EINSUM = "einsum"
_KINDS = {
    "Conv2D": _CONV, "Conv3D": _CONV, "Conv2DWithBias": _CONV, "DepthwiseConv2dNative": _DEPTHWISE,
    "DepthwiseConv2D": _DEPTHWISE, "MatMul": _MATMUL, "BatchMatMul": _BATCH_MATMUL,
    "BatchMatMulV2": _BATCH_MATMUL, "BatchMatMulV3": _BATCH_MATMUL, "Einsum": _EINSUM,
}
# Longest first: "_QuantizedFusedBatchMatMulV2AndDequantize" must find BatchMatMulV2, not MatMul.
_KIND_PATTERN = re.compile("|".join(sorted(_KINDS, key=len, reverse=True)))


@dataclasses.dataclass(frozen=True)
class PrecisionCoverage:
    """How much of a graph's dense arithmetic runs in ``precision``; ``to_json()`` is the metadata record."""

    precision: str
    flops_by_precision: Dict[str, int]
    # Op types of the counted ops not in ``precision``: {op type: {"count", "flops", "precision"}}.
    ops_left_behind: Dict[str, dict]
    threshold: float = MINIMUM_SHARE

    @property
    def total_flops(self) -> int:
        return sum(self.flops_by_precision.values())

    @property
    def share(self) -> float:
        """The share of FLOPs in ``precision``: 1.0 for a graph with no counted op (nothing was left behind)."""
        total = self.total_flops
        return 1.0 if total == 0 else self.flops_by_precision.get(self.precision, 0) / total

    @property
    def below_threshold(self) -> bool:
        return self.share < self.threshold

    def describe(self) -> str:
        """One line: the share, the FLOPs and what was left behind."""
        line = (f"precision coverage: {self.share:.0%} of {_format_flops(self.total_flops)} FLOPs (batch 1) "
                f"run in {self.precision}")
        if self.ops_left_behind:
            line += "; left in " + ", ".join(
                f"{op} ×{entry['count']} ({entry['precision']}, {entry['flops'] / max(self.total_flops, 1):.0%})"
                for op, entry in self.ops_left_behind.items())
        return line

    def to_json(self) -> dict:
        return {
            "precision": self.precision,
            "share": round(self.share, 4),
            "threshold": self.threshold,
            "flops_by_precision": dict(self.flops_by_precision),
            "total_flops": self.total_flops,
            "ops_left_behind": {op: dict(entry) for op, entry in self.ops_left_behind.items()},
            "counted": "2 FLOPs per multiply-add of Conv2D, DepthwiseConv2dNative, MatMul, BatchMatMulV2, Einsum "
                       "(fused and quantized forms included) at batch 1",
        }

    @classmethod
    def from_json(cls, data: dict) -> "PrecisionCoverage":
        return cls(precision=data["precision"], flops_by_precision=dict(data["flops_by_precision"]),
                   ops_left_behind=dict(data.get("ops_left_behind") or {}),
                   threshold=float(data.get("threshold", MINIMUM_SHARE)))


def precision_coverage(graph_def, precision: str, *, threshold: float = MINIMUM_SHARE) -> PrecisionCoverage:
    """Count ``graph_def``'s dense-arithmetic FLOPs by the precision each op runs in.

    ``graph_def`` is a converted, frozen graph (held weights as Placeholders with shape attrs
    are fine); its shapes come from TensorFlow's shape inference with every unknown dimension
    of a Placeholder set to 1. Ops whose shapes stay unknown count their unknown dims as 1.
    """
    shapes, nodes = _inferred_shapes(graph_def)
    flops: Dict[str, int] = {}
    left: Dict[str, dict] = {}
    for node in nodes:
        kind = _kind(node.op)
        if kind is None:
            continue
        count = 2 * _multiply_adds(kind, node, shapes)
        node_precision = _precision_of(node)
        flops[node_precision] = flops.get(node_precision, 0) + count
        if node_precision != precision:
            entry = left.setdefault(node.op, {"count": 0, "flops": 0, "precision": node_precision})
            entry["count"] += 1
            entry["flops"] += count
    left = dict(sorted(left.items(), key=lambda item: -item[1]["flops"]))
    return PrecisionCoverage(precision=precision, flops_by_precision=dict(sorted(flops.items())),
                             ops_left_behind=left, threshold=threshold)


def check_coverage(coverage: PrecisionCoverage, *, allow_partial: bool) -> None:
    """ConversionError (one line, naming the op types left behind) for a bf16/int8 conversion below the threshold.

    fp32 is never refused: it is the precision everything already runs in.
    """
    if coverage.precision == "fp32" or allow_partial or not coverage.below_threshold:
        return
    left = ", ".join(f"{op} ×{entry['count']}" for op, entry in coverage.ops_left_behind.items())
    raise ConversionError(
        f"{coverage.precision} covers only {coverage.share:.0%} of the model's multiply-adds (the threshold is "
        f"{coverage.threshold:.0%}); left in {_left_precisions(coverage)}: {left}. Pass {OVERRIDE_FLAG} "
        f"(allow_partial_precision=True) to accept it, or convert with --precision=fp32."
    )


def _left_precisions(coverage: PrecisionCoverage) -> str:
    return "/".join(sorted({entry["precision"] for entry in coverage.ops_left_behind.values()})) or "fp32"


def _kind(op: str) -> Optional[str]:
    match = _KIND_PATTERN.search(op)
    if match is None:
        return None
    # Not dense arithmetic despite the name: backprop ops never appear in a serving graph, and
    # Conv2DBackpropInput (a transposed conv) does the same multiply-adds as a conv of its output.
    if "Backprop" in op and "Conv2DBackpropInput" not in op:
        return None
    return _KINDS[match.group(0)]


def _precision_of(node) -> str:
    from tensorflow.core.framework import types_pb2

    int8_types = {types_pb2.DT_QINT8, types_pb2.DT_QUINT8}
    if "Quantized" in node.op or any(node.attr[key].type in int8_types
                                     for key in ("T1", "Tinput", "Tfilter", "T") if key in node.attr):
        return "int8"
    dtype = node.attr["T"].type if "T" in node.attr else None
    return {types_pb2.DT_BFLOAT16: "bf16", types_pb2.DT_HALF: "fp16"}.get(dtype, "fp32")


def _inferred_shapes(graph_def):
    """({tensor name: dims (None for unknown)}, the graph's nodes) from TF's shape inference at batch 1.

    Large constants become Placeholders of their shape first, so the import copies no weights.
    """
    import tensorflow as tf
    from tensorflow.core.framework import graph_pb2, node_def_pb2

    light = graph_pb2.GraphDef()
    light.versions.CopyFrom(graph_def.versions)
    light.library.CopyFrom(graph_def.library)
    for node in graph_def.node:
        if node.op in ("Const", "HostConst") and len(node.attr["value"].tensor.tensor_content) > 4096:
            stand_in = node_def_pb2.NodeDef(name=node.name, op="Placeholder", device=node.device)
            stand_in.attr["dtype"].type = node.attr["dtype"].type
            stand_in.attr["shape"].shape.CopyFrom(node.attr["value"].tensor.tensor_shape)
            light.node.append(stand_in)
            continue
        copy = light.node.add()
        copy.CopyFrom(node)
        if copy.op == "Placeholder" and "shape" in copy.attr:
            for dim in copy.attr["shape"].shape.dim:
                if dim.size < 0:
                    dim.size = 1  # the batch (or any free) dimension counts as 1
    with tf.Graph().as_default() as graph:
        tf.graph_util.import_graph_def(light, name="")
    shapes: Dict[str, Tuple[Optional[int], ...]] = {}
    for operation in graph.get_operations():
        for tensor in operation.outputs:
            shapes[tensor.name] = None if tensor.shape.rank is None else tuple(tensor.shape.as_list())
    return shapes, graph_def.node


def _dims(shapes, name: str) -> Tuple[int, ...]:
    """The dims of input ``name`` (``node:index`` or ``node``) with unknown ones as 1; () when unknown rank."""
    name = name.lstrip("^")
    if ":" not in name:
        name += ":0"
    dims = shapes.get(name)
    return tuple(1 if d is None or d < 0 else int(d) for d in dims) if dims else ()


def _product(values) -> int:
    result = 1
    for value in values:
        result *= int(value)
    return result


def _multiply_adds(kind: str, node, shapes) -> int:
    output = _dims(shapes, node.name + ":0")
    data_inputs = [name for name in node.input if not name.startswith("^")]
    if len(data_inputs) < 2:
        return 0
    left, right = _dims(shapes, data_inputs[0]), _dims(shapes, data_inputs[1])
    if kind == _CONV:
        # Each output element sums over the filter's window and input channels (filter: [..., in, out]).
        return _product(output) * _product(right[:-1]) if right else 0
    if kind == _DEPTHWISE:
        # Filter [h, w, in, multiplier]: each output element sums over one channel's window.
        return _product(output) * _product(right[:-2]) if right else 0
    if kind == _MATMUL:
        transpose = node.attr["transpose_b"].b if "transpose_b" in node.attr else False
        depth = (right[-1] if transpose else right[0]) if len(right) == 2 else (left[-1] if left else 1)
        return _product(output) * depth
    if kind == _BATCH_MATMUL:
        adjoint = node.attr["adj_x"].b if "adj_x" in node.attr else False
        depth = (left[-2] if adjoint else left[-1]) if len(left) >= 2 else 1
        return _product(output) * depth
    return _einsum_multiply_adds(node.attr["equation"].s.decode() if "equation" in node.attr else "", left, right)


def _einsum_multiply_adds(equation: str, left: Tuple[int, ...], right: Tuple[int, ...]) -> int:
    """One multiply-add per combination of every index the two operands name (contracted ones included)."""
    operands = equation.replace(" ", "").split("->")[0].split(",")
    if len(operands) != 2:
        return 0
    sizes: Dict[str, int] = {}
    for labels, dims in zip(operands, (left, right)):
        if "..." in labels:
            head, tail = labels.split("...")
            # Broadcast dims get labels of their own: digits, which an equation never uses.
            middle = "".join(str(i % 10) for i in range(len(dims) - len(head) - len(tail)))
            labels = head + middle + tail
        for label, size in zip(labels, dims):
            sizes[label] = max(sizes.get(label, 1), size)
    return _product(sizes.values())


def _format_flops(count: int) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if count >= scale:
            return f"{count / scale:.3g} {unit}"
    return str(count)
