"""TF-TRT's per-op converter rules, run the way TF-TRT validates a node before converting it.

Mirrors the ``Convert*`` functions of ``tensorflow/compiler/tf2tensorrt/convert/convert_nodes.cc``
and ``convert/ops/*.cc`` (TF 2.17) in ``validation_only`` mode: each ``_check_*`` raises
``NotConvertible`` with the reason the converter gives, and ``CHECKS`` names them the way
the op table (``analysis/tensorrt_plan/data/tftrt_supported_ops_tf2.17.json``, each op's ``checks``)
refers to them. ``Operand`` is ``TRT_TensorOrWeights``; ``CandidateContext`` holds what
``OpConverterParams`` gives a converter (precision, batch mode) plus the segmenter's settings.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Dict, List, Mapping, Optional, Set

from tftrt_toolkit.analysis.tensorrt_plan.graph import (
    LARGE_CONSTANT_ELEMENTS,
    Node,
    NodeOutput,
    Shape,
    as_dims,
    constant_element_count,
    node_attr,
)
from tftrt_toolkit.analysis.tensorrt_plan.op_table import OpSupportTable


@dataclasses.dataclass(frozen=True)
class Operand:
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


class NotConvertible(Exception):
    """A node TF-TRT would not convert: ``kind`` groups reasons (dtype, implicit_batch, ...).

    Internal to the plan: the segmenter catches it and records it as the node's verdict.
    """

    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


@dataclasses.dataclass
class CandidateContext:
    """What the candidate checks know: the op table, the graph with its shapes, and the conversion's settings."""

    table: OpSupportTable
    nodes: Mapping[str, Node]
    tensors: Mapping[str, List[NodeOutput]]
    precision: str
    implicit_batch: bool
    ignore_devices: bool
    outputs: Set[str]
    constants: Dict[str, Any] = dataclasses.field(default_factory=dict)

    def constant_value(self, node: Node):
        """A Const node's value as a numpy array, None for big constants (read once per node)."""
        if node.name not in self.constants:
            from tensorflow.python.framework import tensor_util

            tensor = node.attr["value"].tensor
            value = None
            if constant_element_count(tensor) <= LARGE_CONSTANT_ELEMENTS:
                try:
                    value = tensor_util.MakeNdarray(tensor)
                except (TypeError, ValueError):
                    value = None
            self.constants[node.name] = value
        return self.constants[node.name]


def check_axis(node: Node, axis: Optional[int], tf_rank: Optional[int], implicit: bool) -> None:
    """convert_nodes.cc ConvertAxis: bounds, and never the batch axis in implicit batch mode."""
    if axis is None or tf_rank is None:
        return
    if axis < -tf_rank or axis >= tf_rank:
        raise NotConvertible("attribute", f"axis {axis} is out of bounds for rank {tf_rank}")
    if implicit and axis % tf_rank == 0:
        raise NotConvertible("implicit_batch", f"{node.op} on the batch axis: implicit batch mode cannot manipulate the "
                                               "batch dimension (use_dynamic_shape=True would allow it)")


def scalar_value(operand: Operand) -> Optional[int]:
    if operand.value is None or operand.value.size != 1:
        return None
    return int(operand.value.reshape(-1)[0])


def rank_of(operand: Operand) -> Optional[int]:
    return None if operand.shape is None else len(operand.shape)


def _check_not_all_constant(node, operands, ctx):
    if operands and all(o.is_weights for o in operands):
        raise NotConvertible("constant_input", "all inputs are constants (TF-TRT expects grappler to fold this)")


def _check_broadcast(node, operands, ctx):
    if node.op == "BiasAdd" and node_attr(node, "data_format", "NHWC") == "NCHW":
        return
    left, right = operands[0], operands[1]
    if not left.is_tensor and not right.is_tensor:
        raise NotConvertible("constant_input", "broadcasting needs at least one non-constant input")
    implicit = ctx.implicit_batch

    def trt_dims(operand):
        dims = as_dims(operand.shape)
        return dims[1:] if implicit and operand.is_tensor else dims

    ranks = [len(trt_dims(o)) + (1 if implicit and o.is_tensor else 0) for o in (left, right)]
    width = max(ranks)
    rows = []
    for operand in (left, right):
        dims = trt_dims(operand)
        row = [1] * (width - len(dims)) + dims
        if implicit and operand.is_tensor:
            if len(dims) + 1 < width:
                raise NotConvertible("implicit_batch", "broadcasting beyond the batch dimension is not supported in implicit "
                                                       "batch mode")
            row[0] = -1
        rows.append(row)
    for a, b in zip(*rows):
        if not implicit and (a == -1 or b == -1):
            continue
        if a != b and a != 1 and b != 1:
            raise NotConvertible("shape", f"infeasible broadcast for TensorRT ({rows[0]} vs {rows[1]})")


def _check_addn(node, operands, ctx):
    if len(operands) < 2:
        raise NotConvertible("attribute", "AddN needs at least two inputs")
    for operand in operands:
        if operand.is_weights and operand.shape and operand.shape[0] != 1:
            raise NotConvertible("shape", "constant inputs to AddN need batch dimension 1")


def _check_cast(node, operands, ctx):
    allowed = ("float32", "float16")
    destination = node_attr(node, "DstT")
    if operands and operands[0].dtype not in allowed:
        raise NotConvertible("dtype", f"Cast from {operands[0].dtype}: TF-TRT only converts float32/float16 casts")
    if destination not in allowed:
        raise NotConvertible("dtype", f"Cast to {destination}: TF-TRT only converts float32/float16 casts")


def _check_concat(node, operands, ctx):
    values, axis = operands[:-1], operands[-1]
    if ctx.implicit_batch and any(o.is_weights for o in values):
        raise NotConvertible("constant_input", "ConcatV2 with a constant input is not converted in implicit batch mode")
    if not axis.is_weights:
        raise NotConvertible("needs_constant", "the axis of ConcatV2 must be a constant")
    check_axis(node, scalar_value(axis), rank_of(values[0]), ctx.implicit_batch)


def _check_const_dtype(node, operands, ctx):
    dtype = node_attr(node, "dtype")
    if dtype not in ctx.table.segmenter["constant_dtypes"]:
        raise NotConvertible("dtype", f"a {dtype} constant cannot become TensorRT weights")


def _check_conv2d(node, operands, ctx):
    data_format = node_attr(node, "data_format", "NHWC")
    channel = 3 if data_format == "NHWC" else 1
    padding = node_attr(node, "padding", "SAME")
    if padding not in ("SAME", "VALID"):
        raise NotConvertible("attribute", f"padding {padding} is not supported (only SAME and VALID)")
    for key, label in (("dilations", "dilation"), ("strides", "stride")):
        values = node_attr(node, key, [1, 1, 1, 1])
        if len(values) != 4:
            raise NotConvertible("attribute", f"{key} must have 4 values")
        if values[0] != 1 or values[channel] != 1:
            raise NotConvertible("attribute", f"{label} must be 1 on the batch and channel dimensions")
    filter_operand = operands[1]
    if filter_operand.shape is not None and len(filter_operand.shape) != 4:
        raise NotConvertible("shape", "the filter must be 4-D")
    data = operands[2] if node.op == "Conv2DBackpropInput" else operands[0]
    if not ctx.implicit_batch and data.shape is not None and len(data.shape) == 4 and data.shape[channel] is None:
        raise NotConvertible("shape", "the channel dimension must be static")


def _check_conv2d_transpose(node, operands, ctx):
    dilations = node_attr(node, "dilations", [1, 1, 1, 1])
    if any(d != 1 for d in dilations):
        raise NotConvertible("attribute", "dilation is not supported with Conv2DBackpropInput")
    data = operands[2]
    spatial = (1, 2) if node_attr(node, "data_format", "NHWC") == "NHWC" else (2, 3)
    if data.shape is not None and any(data.shape[i] is None for i in spatial if i < len(data.shape)):
        raise NotConvertible("shape", "Conv2DBackpropInput needs static spatial dimensions")


def _check_conv3d(node, operands, ctx):
    channel = 4 if node_attr(node, "data_format", "NDHWC") == "NDHWC" else 1
    if node_attr(node, "padding", "SAME") not in ("SAME", "VALID"):
        raise NotConvertible("attribute", "padding must be SAME or VALID")
    for key in ("dilations", "strides"):
        values = node_attr(node, key, [1] * 5)
        if len(values) != 5 or values[0] != 1 or values[channel] != 1:
            raise NotConvertible("attribute", f"{key} must be 1 on the batch and channel dimensions")
    data = operands[2] if node.op == "Conv3DBackpropInputV2" else operands[0]
    if data.shape is not None and len(data.shape) == 5 and data.shape[channel] is None:
        raise NotConvertible("shape", "the channel dimension must be static")


def _check_depth_space(node, operands, ctx):
    if node_attr(node, "data_format", "NHWC") not in ("NHWC", "NCHW"):
        raise NotConvertible("attribute", f"data_format {node_attr(node, 'data_format')} is not supported")
    if (node_attr(node, "block_size", 2) or 0) < 2:
        raise NotConvertible("attribute", "block_size must be 2 or greater")
    if rank_of(operands[0]) not in (None, 4):
        raise NotConvertible("shape", "the input must be rank 4")


def _check_axis_not_batch(node, operands, ctx):
    spec = ctx.table.rule(node.op).get("axis", {})
    axis = node_attr(node, spec["attr"]) if "attr" in spec else scalar_value(operands[spec.get("input", 1)])
    rank = rank_of(operands[0])
    check_axis(node, axis, None if rank is None else rank + spec.get("rank_offset", 0), ctx.implicit_batch)


def _check_gather(node, operands, ctx):
    if node_attr(node, "Tindices") != "int32":
        raise NotConvertible("dtype", f"GatherV2 indices are {node_attr(node, 'Tindices')}; TF-TRT needs int32")
    params, indices, axis_operand = operands[0], operands[1], operands[2]
    axis = scalar_value(axis_operand)
    batch_dims = node_attr(node, "batch_dims", 0) or 0
    if ctx.implicit_batch:
        if params.is_tensor:
            check_axis(node, axis, rank_of(params), True)
        elif axis not in (None, 0):
            raise NotConvertible("implicit_batch", "a constant params tensor can only be gathered on axis 0 in implicit batch mode")
        if batch_dims:
            raise NotConvertible("implicit_batch", "batch_dims must be 0 in implicit batch mode")
        if params.is_tensor == indices.is_tensor and params.is_tensor and (
                (params.shape or [None])[0] != 1 or (indices.shape or [None])[0] != 1):
            raise NotConvertible("implicit_batch", "params and indices both computed at run time need batch size 1 "
                                                   "in implicit batch mode")
    elif batch_dims > 1:
        raise NotConvertible("attribute", "batch_dims cannot exceed 1")


def _check_matmul(node, operands, ctx):
    if not ctx.implicit_batch:
        return
    a, b = operands[0], operands[1]

    def trt_rank(operand):
        rank = rank_of(operand) or 0
        return rank - 1 if operand.is_tensor else rank

    transpose_a = bool(node_attr(node, "transpose_a", False))
    if (trt_rank(a) < 2 and (transpose_a or not b.is_weights)) or trt_rank(b) < 2:
        raise NotConvertible("implicit_batch", "MatMul of rank-2 tensors needs a constant B and transpose_a=False in "
                                               "implicit batch mode (use_dynamic_shape=True would allow it)")


def _check_pack(node, operands, ctx):
    if ctx.implicit_batch and any(o.is_weights for o in operands):
        raise NotConvertible("constant_input", "Pack with a constant input is not converted in implicit batch mode")
    _check_axis_not_batch(node, operands, ctx)


def _check_pad(node, operands, ctx):
    rank = rank_of(operands[0])
    if rank is not None and rank < 4:
        raise NotConvertible("shape", "Pad needs an input of rank >= 4")
    if node_attr(node, "Tpaddings", "int32") != "int32":
        raise NotConvertible("dtype", "Tpaddings must be int32")
    paddings = operands[1].value
    if paddings is None:
        return
    padded = [i for i, (before, after) in enumerate(paddings.reshape(-1, 2).tolist()) if before or after]
    if len(padded) > 2:
        raise NotConvertible("shape", "TensorRT pads at most 2 dimensions")
    if ctx.implicit_batch and padded and padded[0] == 0:
        raise NotConvertible("implicit_batch", "padding on the batch dimension is not supported in implicit batch mode")


def _check_reshape(node, operands, ctx):
    data, shape = operands[0], operands[1]
    if not shape.is_weights:
        if ctx.implicit_batch:
            raise NotConvertible("implicit_batch", "the target shape is computed at run time; implicit batch mode needs a "
                                                   "constant shape (use_dynamic_shape=True, or a static batch size, would allow it)")
        if rank_of(shape) == 0:
            raise NotConvertible("shape", "a dynamic reshape needs a 1-D shape tensor")
        return
    if shape.value is None or not ctx.implicit_batch:
        return
    target = [int(v) for v in shape.value.reshape(-1)]
    if not target:
        raise NotConvertible("shape", "reshape to shape=[] is not supported")
    input_dims = as_dims(data.shape)
    input_batch, output_batch = input_dims[0], target[0]
    if input_batch != -1 and output_batch != -1:
        changes_batch = input_batch != output_batch
    else:
        input_rest, output_rest = input_dims[1:], target[1:]
        static = all(d >= 0 for d in input_rest) and all(d >= 0 for d in output_rest)
        volume = lambda dims: functools.reduce(lambda x, y: x * y, dims, 1)  # noqa: E731
        changes_batch = not (static and volume(input_rest) == volume(output_rest))
    if changes_batch:
        raise NotConvertible("implicit_batch", "the reshape may change the batch dimension, which implicit batch mode forbids")


def _check_resize(node, operands, ctx):
    size = operands[1]
    if size.is_weights:
        if size.value is not None and size.value.size != 2:
            raise NotConvertible("shape", "Resize needs 2 size values")
    elif ctx.implicit_batch:
        raise NotConvertible("implicit_batch", "Resize needs a constant size in implicit batch mode")
    if node.op == "ResizeBilinear" and not node_attr(node, "align_corners", False):
        raise NotConvertible("attribute", "ResizeBilinear with align_corners=False is not converted (TensorRT >= 7.1)")


def _check_pool(node, operands, ctx):
    if node_attr(node, "padding", "VALID") not in ("SAME", "VALID"):
        raise NotConvertible("attribute", f"padding {node_attr(node, 'padding')} is not supported")


def _check_slice(node, operands, ctx):
    begin, size = operands[1].value, operands[2].value
    if begin is None or size is None:
        return
    begin, size = begin.reshape(-1).tolist(), size.reshape(-1).tolist()
    if any(b < 0 for b in begin) or any(s < -1 for s in size):
        raise NotConvertible("attribute", "Slice begin/size out of range")
    if ctx.implicit_batch and begin:
        dim0 = as_dims(operands[0].shape)[0] if operands[0].shape else -1
        if begin[0] != 0 or (size[0] != -1 and size[0] != dim0):
            raise NotConvertible("implicit_batch", "Slice changes the batch dimension, which implicit batch mode forbids")


def _check_split(node, operands, ctx):
    axis, value = scalar_value(operands[0]), operands[1]
    _split_dim_check(node, axis, value, node_attr(node, "num_split", 1), ctx, exact=False)


def _check_unpack(node, operands, ctx):
    _split_dim_check(node, node_attr(node, "axis", 0), operands[0], node_attr(node, "num", 1), ctx, exact=True)


def _split_dim_check(node, axis, value, parts, ctx, exact):
    rank = rank_of(value)
    check_axis(node, axis, rank, ctx.implicit_batch)
    if axis is None or rank is None:
        return
    size = value.shape[axis % rank]
    if size is None:
        raise NotConvertible("shape", f"{node.op} needs a static size on axis {axis}")
    if (exact and size != parts) or (parts and size % parts):
        raise NotConvertible("shape", f"axis {axis} of size {size} cannot be split into {parts}")


def _check_squeeze(node, operands, ctx):
    squeeze_dims = node_attr(node, "squeeze_dims", []) or []
    data = operands[0]
    if not squeeze_dims:
        if ctx.implicit_batch or data.shape is None or any(d is None for d in data.shape):
            raise NotConvertible("attribute", "Squeeze without squeeze_dims is only converted in explicit batch mode with static shapes")
        return
    rank = rank_of(data)
    for axis in squeeze_dims:
        check_axis(node, axis, rank, ctx.implicit_batch)
        if rank is not None and data.shape[axis % rank] not in (None, 1):
            raise NotConvertible("shape", f"dimension {axis} is not of size 1")


def _check_strided_slice(node, operands, ctx):
    if node_attr(node, "new_axis_mask", 0):
        raise NotConvertible("attribute", "StridedSlice with new_axis_mask is not supported")
    if not ctx.implicit_batch:
        return
    if node_attr(node, "shrink_axis_mask", 0) & 1:
        raise NotConvertible("implicit_batch", "StridedSlice removes the batch dimension, which implicit batch mode forbids")
    if node_attr(node, "ellipsis_mask", 0) & 1:
        return
    begin, end = operands[1].value, operands[2].value
    if begin is None or end is None or not begin.size:
        return
    dim0 = as_dims(operands[0].shape)[0] if operands[0].shape else -1
    full_begin = bool(node_attr(node, "begin_mask", 0) & 1) or int(begin.reshape(-1)[0]) == 0
    full_end = bool(node_attr(node, "end_mask", 0) & 1) or (dim0 >= 0 and int(end.reshape(-1)[0]) >= dim0)
    if not (full_begin and full_end):
        raise NotConvertible("implicit_batch", "StridedSlice slices the batch dimension, which implicit batch mode forbids")


def _check_topk(node, operands, ctx):
    if not node_attr(node, "sorted", True):
        raise NotConvertible("attribute", "TopKV2 needs sorted=True")
    rank = rank_of(operands[0])
    if rank is not None and rank - (1 if ctx.implicit_batch else 0) == 0:
        raise NotConvertible("implicit_batch", "TopKV2 cannot run on the batch dimension")


def _check_transpose(node, operands, ctx):
    perm = operands[1].value
    if ctx.implicit_batch and perm is not None and perm.size and int(perm.reshape(-1)[0]) != 0:
        raise NotConvertible("implicit_batch", "Transpose moves the batch dimension, which implicit batch mode forbids")


def _check_fused_batch_norm(node, operands, ctx):
    if node_attr(node, "is_training", False):
        raise NotConvertible("attribute", f"{node.op} with is_training=True (call the Keras model with training=False)")
    data = operands[0]
    channel = 1 if node_attr(node, "data_format", "NHWC") == "NCHW" else 3
    if not ctx.implicit_batch and data.shape is not None and len(data.shape) > channel and data.shape[channel] is None:
        raise NotConvertible("shape", "the channel dimension must be static")


def _check_reduce(node, operands, ctx):
    if node_attr(node, "Tidx", "int32") != "int32":
        raise NotConvertible("dtype", "Tidx must be int32")
    axes = operands[1].value
    if axes is None:
        return
    axes = axes.reshape(-1).tolist()
    if not axes:
        raise NotConvertible("attribute", "reducing over all dimensions (including the batch) is not supported")
    for axis in axes:
        check_axis(node, int(axis), rank_of(operands[0]), ctx.implicit_batch)


def _check_argminmax(node, operands, ctx):
    if node_attr(node, "output_type", "int64") != "int32":
        raise NotConvertible("dtype", f"{node.op} output_type {node_attr(node, 'output_type', 'int64')} is not supported (int32 only)")
    check_axis(node, scalar_value(operands[1]), rank_of(operands[0]), ctx.implicit_batch)


def _check_softmax(node, operands, ctx):
    rank = rank_of(operands[0])
    if ctx.implicit_batch and rank is not None and rank <= 1:
        raise NotConvertible("implicit_batch", f"{node.op} over the batch dimension is not supported in implicit batch mode")


def _check_tile(node, operands, ctx):
    multiples = operands[1]
    if ctx.implicit_batch and multiples.is_tensor:
        raise NotConvertible("implicit_batch", "Tile needs constant multiples in implicit batch mode")
    if ctx.implicit_batch and operands[0].is_tensor and multiples.value is not None and multiples.value.size and \
            int(multiples.value.reshape(-1)[0]) > 1:
        raise NotConvertible("implicit_batch", "Tile on the batch dimension is not supported in implicit batch mode")


CHECKS: Dict[str, Callable[[Node, List[Operand], CandidateContext], None]] = {
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
