"""Projections by a constant weight, exported as ``BatchMatMulV2``, rewritten as 2-D ``MatMul``s.

Keras 3 exports ``EinsumDense`` (MultiHeadAttention's query/key/value/output projections) as
``BatchMatMulV2(x [B, T, K], Reshape(W, [K, N]))`` followed by a Reshape: a batched matmul that
broadcasts one weight over the batch, with the weight reshaped at every call (a held weight is a
Placeholder, which constant folding cannot fold). TF's int8 quantizer (Intel Neural Compressor)
quantizes ``MatMul`` but not ``BatchMatMulV2``, so an int8 transformer left these projections,
a third of its multiply-adds, in fp32 (issue 25). The same product as a plain matmul:

    BatchMatMulV2(x, W)  ==  Reshape(MatMul(Reshape(x, [-1, K]), W), [-1, T, N])

with ``W`` reshaped once, here, and the output shape a constant (the batch, the one dimension
that varies, is its ``-1``). The node keeps its name (it becomes the final Reshape), so readers
and fetches are unchanged; the next cleanup merges the Reshape into the Reshape that follows it.

Only rewritten where it is exactly the same product: float32, no adjoints, a constant rank-2
weight (or a Reshape of one by a constant shape), and an input whose shape is known but for one
dimension that follows the batch (found by shape inference at batch 1 and at batch 2).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from tftrt_toolkit.backends.graphdef import (batch_free_shape, data_inputs, empty_like, node_name, shapes_at_batch,
                                            without_dead_nodes)

REWRITTEN_OP = "BatchMatMulV2"


def _constant(nodes, held, tensor: str) -> Optional[np.ndarray]:
    """The value of ``tensor`` when it is output 0 of a Const or a held weight, else None."""
    if ":" in tensor and not tensor.endswith(":0"):
        return None
    node = nodes.get(node_name(tensor))
    if node is None:
        return None
    if node.op == "Const":
        from tensorflow.python.framework import tensor_util

        return tensor_util.MakeNdarray(node.attr["value"].tensor)
    if node.op == "Placeholder" and held is not None and node.name in held:
        return held.values[node.name]
    return None


def _weight(nodes, held, tensor: str) -> Optional[np.ndarray]:
    """The rank-2 weight ``tensor`` holds: a constant, or a Reshape of a constant by a constant shape."""
    value = _constant(nodes, held, tensor)
    if value is None:
        node = nodes.get(node_name(tensor))
        if node is None or node.op != "Reshape" or (":" in tensor and not tensor.endswith(":0")):
            return None
        inputs = data_inputs(node)
        source, shape = _constant(nodes, held, inputs[0]), _constant(nodes, None, inputs[1])
        if source is None or shape is None:
            return None
        try:
            value = source.reshape([int(d) for d in shape.ravel()])
        except ValueError:
            return None
    return value if value.ndim == 2 and value.dtype == np.float32 else None


def projections_to_matmuls(graph_def, keep: Sequence[str] = (), held=None):
    """(graph, held weights, number rewritten): each ``BatchMatMulV2`` by a constant rank-2 weight as a 2-D MatMul.

    The rewritten weights are held (or stay Consts when small) in their [K, N] shape; weights
    and weight Reshapes nothing reads any more are dropped (with ``keep``, the fetched nodes).
    """
    import tensorflow as tf
    from tftrt_toolkit.backends.frozen.held_weights import HeldWeights, make_placeholder

    nodes = {node.name: node for node in graph_def.node}
    candidates = {}
    for node in graph_def.node:
        if (node.op != REWRITTEN_OP or node.attr["T"].type != tf.float32.as_datatype_enum
                or node.attr["adj_x"].b or node.attr["adj_y"].b or len(data_inputs(node)) != 2):
            continue
        weight = _weight(nodes, held, data_inputs(node)[1])
        if weight is not None:
            candidates[node.name] = weight
    if not candidates:
        return graph_def, held, 0
    at_1, at_2 = shapes_at_batch(graph_def, held, 1), shapes_at_batch(graph_def, held, 2)
    rewrites = {}
    for name, weight in candidates.items():
        x_shape = batch_free_shape(data_inputs(nodes[name])[0], at_1, at_2)
        if x_shape is None or len(x_shape) < 3 or x_shape[-1] != weight.shape[0] or -1 in x_shape[-1:]:
            continue
        rewrites[name] = (weight, x_shape[:-1] + (weight.shape[1],))
    if not rewrites:
        return graph_def, held, 0

    new_held = {}
    rewritten = empty_like(graph_def)

    def constant(name, value, device):
        node = rewritten.node.add()
        node.name, node.device = name, device
        if HeldWeights.worth_holding(value) and held is not None:
            make_placeholder(node, value)
            new_held[name] = value
        else:
            node.op = "Const"
            node.attr["dtype"].type = tf.as_dtype(value.dtype).as_datatype_enum
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))
        return name

    for node in graph_def.node:
        if node.name not in rewrites:
            rewritten.node.add().CopyFrom(node)
            continue
        weight, out_shape = rewrites[node.name]
        x_tensor = data_inputs(node)[0]
        controls = [name for name in node.input if name.startswith("^")]
        flat_shape = constant(f"{node.name}/flat_shape", np.array([-1, weight.shape[0]], np.int32), node.device)
        flat = rewritten.node.add()
        flat.name, flat.op, flat.device = f"{node.name}/flat", "Reshape", node.device
        flat.input.extend([x_tensor, flat_shape] + controls)
        flat.attr["T"].type = node.attr["T"].type
        flat.attr["Tshape"].type = tf.int32.as_datatype_enum
        weights = constant(f"{node.name}/weights", np.ascontiguousarray(weight), node.device)
        matmul = rewritten.node.add()
        matmul.name, matmul.op, matmul.device = f"{node.name}/matmul", "MatMul", node.device
        matmul.input.extend([flat.name, weights])
        matmul.attr["T"].type = node.attr["T"].type
        matmul.attr["transpose_a"].b = False
        matmul.attr["transpose_b"].b = False
        out_shape_name = constant(f"{node.name}/out_shape", np.array(out_shape, np.int32), node.device)
        output = rewritten.node.add()
        output.name, output.op, output.device = node.name, "Reshape", node.device
        output.input.extend([matmul.name, out_shape_name])
        output.attr["T"].type = node.attr["T"].type
        output.attr["Tshape"].type = tf.int32.as_datatype_enum

    rewritten = without_dead_nodes(rewritten, keep, () if held is None else held)
    if held is not None:
        held = held.with_values(new_held).used_by(rewritten)
    return rewritten, held, len(rewrites)
