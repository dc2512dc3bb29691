"""Which nodes TF-TRT can convert: TF 2.17's op table and its node validator.

Mirrors ``tensorflow/compiler/tf2tensorrt/convert/convert_nodes.cc``: ``TrtNodeValidator::
IsTensorRTCandidate`` (``validate_node``) and ``ConvertToTensorOrWeights``
(``to_tensor_or_weights``), with the op converter registry (``convert/op_converter_registry.cc``)
as data: the registered op types, their dtypes, precisions and input roles are shipped in
``analysis/tensorrt_plan/data/tftrt_supported_ops_tf2.17.json`` (see its ``source`` and ``derivation``).
The table is read by ``op_table.py``; the per-op converter rules it names live in ``op_converters.py``.
"""

from __future__ import annotations

from typing import Optional

from tftrt_toolkit.analysis.tensorrt_plan.graph import (
    CALL_OP_TYPES,
    REMAPPER_FUSED_OP_TYPES,
    Node,
    NodeOutput,
    attr_dtype_name,
    node_attr,
)
from tftrt_toolkit.analysis.tensorrt_plan.op_converters import CHECKS, CandidateContext, NotConvertible, Operand


def _resolve_identity(ctx: CandidateContext, producer: str) -> Node:
    node = ctx.nodes[producer]
    # TrtNodeValidator walks up Identity chains so that Const -> Identity still counts as weights.
    while node.op == "Identity" and node.inputs:
        node = ctx.nodes[node.inputs[0][0]]
    return node


def to_tensor_or_weights(ctx: CandidateContext, producer: str, port: int) -> Operand:
    """ConvertToTensorOrWeights: how TF-TRT sees one input, or NotConvertible if it cannot."""
    table = ctx.table.segmenter
    source = _resolve_identity(ctx, producer)
    if source.op in ("VarHandleOp", "Placeholder") and "dtype" in source.attr and attr_dtype_name(source.attr["dtype"]) == "resource":
        return Operand("resource", "resource", None)
    if source.op in ("Const", "VariableV2", "ReadVariableOp"):
        if port != 0:
            raise NotConvertible("input", f"input {producer}:{port}: {source.op} node should only have one output")
        dtype = attr_dtype_name(source.attr["dtype"]) if "dtype" in source.attr else None
        if source.op == "Const":
            if dtype not in table["constant_dtypes"]:
                raise NotConvertible("dtype", f"input {producer}: a {dtype} constant cannot become TensorRT weights")
            value = ctx.constant_value(source)
            if value is not None and dtype in ("int64", "uint64", "uint32") and value.size and (
                    value.max() > 2**31 - 1 or value.min() < -2**31):
                raise NotConvertible("dtype", f"input {producer}: integer constant outside the int32 range")
            shape = tuple(d.size for d in source.attr["value"].tensor.tensor_shape.dim)
            return Operand("weights", "int32" if dtype and "int" in dtype else dtype, shape, value)
        if dtype not in ("float32", "float16"):
            raise NotConvertible("dtype", f"input {producer}: {source.op} of {dtype} is not converted")
        return Operand("weights", dtype, None)
    outputs = ctx.tensors.get(source.name, [])
    tensor = outputs[port] if port < len(outputs) else NodeOutput(None, None)
    if tensor.dtype is None:
        raise NotConvertible("input", f"input {producer}:{port}: shape and dtype are unknown")
    if tensor.dtype not in table["tensor_dtypes"]:
        raise NotConvertible("dtype", f"input {producer}:{port} is {tensor.dtype}, which TensorRT tensors cannot hold "
                                      f"(allowed: {', '.join(table['tensor_dtypes'])})")
    if tensor.shape is None:
        raise NotConvertible("dynamic_rank", f"input {producer}:{port} has unknown rank (dynamic rank)")
    max_rank = table["max_rank_explicit_batch"] + (1 if ctx.implicit_batch else 0)
    if len(tensor.shape) > max_rank:
        raise NotConvertible("input", f"input {producer}:{port} has rank {len(tensor.shape)} > {max_rank}")
    if ctx.implicit_batch and len(tensor.shape) < 1:
        raise NotConvertible("implicit_batch", f"input {producer}:{port} is a scalar; implicit batch mode treats the first "
                                               "dimension as the batch (use_dynamic_shape=True would allow it)")
    first = 1 if ctx.implicit_batch else 0
    if any(d == 0 for d in tensor.shape[first:]):
        raise NotConvertible("input", f"input {producer}:{port} is an empty tensor {list(tensor.shape)}")
    return Operand("tensor", tensor.dtype, tensor.shape)


def validate_node(node: Node, ctx: CandidateContext) -> None:
    """TrtNodeValidator::IsTensorRTCandidate; raises NotConvertible with TF-TRT's reason."""
    table = ctx.table
    rule = table.rule(node.op)
    if node.op in table.segmenter["quantization_op_types"] and ctx.precision != "int8":
        raise NotConvertible("precision", f"{node.op} is only taken into TensorRT in int8 mode, where its ranges are used")
    if rule is None:
        if node.op in REMAPPER_FUSED_OP_TYPES:
            raise NotConvertible("fused_op", f"{node.op} comes from grappler's remapper, which TF-TRT turns off; plan the graph "
                                             "optimized without remapping")
        if node.op in CALL_OP_TYPES:
            raise NotConvertible("unknown_op", f"{node.op}: a function call; inline functions before planning")
        raise NotConvertible("unknown_op", f"op type {node.op} has no TF-TRT {table.tensorflow_version} converter")
    if ctx.precision not in rule["precisions"]:
        raise NotConvertible("precision", f"{node.op} is only converted in {', '.join(rule['precisions'])} mode")
    operands = [to_tensor_or_weights(ctx, producer, port) for producer, port in node.inputs]
    dtype_attr = rule.get("dtype_attr")
    if dtype_attr:
        dtype = node_attr(node, dtype_attr)
        if dtype is None:
            raise NotConvertible("attribute", f"attribute {dtype_attr} not found")
        if rule["dtypes"] is not None and dtype not in rule["dtypes"]:
            raise NotConvertible("dtype", f"{node.op} on {dtype} is not supported (allowed: {', '.join(rule['dtypes'])})")
    if ctx.implicit_batch and not rule["implicit_batch"]:
        raise NotConvertible("implicit_batch", f"{node.op} is only converted in explicit batch mode (use_dynamic_shape=True)")
    for index, role in enumerate(rule.get("inputs") or []):
        if index >= len(operands):
            break
        operand = operands[index]
        producer = node.inputs[index][0]
        if role == "weights" and not operand.is_weights:
            raise NotConvertible("needs_constant", f"input {index} ({producer}) of {node.op} must be a constant, but it is "
                                                   "computed at run time")
        if role == "tensor" and operand.is_weights:
            raise NotConvertible("constant_input", f"input {index} ({producer}) of {node.op} must be computed at run time, "
                                                   "but it is a constant")
        if role == "resource" and operand.kind != "resource":
            raise NotConvertible("input", f"input {index} ({producer}) of {node.op} must be a resource handle")
    for check in rule.get("checks") or []:
        CHECKS[check](node, operands, ctx)
