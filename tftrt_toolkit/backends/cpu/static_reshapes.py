"""Reshapes whose target shape is computed at every call, given a constant one where only the batch varies.

Keras 3's Dense on a [B, T, C] input exports ``Tensordot``: ``Reshape(x, Pack(Prod(Gather(Shape(x))),
...))``, a MatMul, and ``Reshape(y, ConcatV2(Gather(Shape(x)), [N]))``, seven small ops per Dense that
compute the shapes at every call (grappler cannot fold them: the batch is unknown). When shape
inference at batch 1 and at batch 2 shows the Reshape's output varies in one dimension only, in
step with the batch, that dimension is ``-1`` and the rest are constants: the same result for
every batch. The shape ops nothing else reads are dropped.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from tftrt_toolkit.backends.graphdef import batch_free_shape, data_inputs, shapes_at_batch
from tftrt_toolkit.backends.graphdef import empty_like, node_name, without_dead_nodes


def constant_reshape_shapes(graph_def, keep: Sequence[str] = (), held=None):
    """(graph, held weights, number of Reshapes given a constant shape)."""
    import tensorflow as tf
    nodes = {node.name: node for node in graph_def.node}
    dynamic = [node for node in graph_def.node
               if node.op == "Reshape" and len(data_inputs(node)) == 2
               and nodes.get(node_name(data_inputs(node)[1])) is not None
               and nodes[node_name(data_inputs(node)[1])].op != "Const"]
    if not dynamic:
        return graph_def, held, 0
    at_1, at_2 = shapes_at_batch(graph_def, held, 1), shapes_at_batch(graph_def, held, 2)
    shapes = {}
    for node in dynamic:
        shape = batch_free_shape(f"{node.name}:0", at_1, at_2)
        if shape is not None:
            shapes[node.name] = shape
    if not shapes:
        return graph_def, held, 0
    rewritten = empty_like(graph_def)
    for node in graph_def.node:
        copy = rewritten.node.add()
        copy.CopyFrom(node)
        if node.name not in shapes:
            continue
        constant = rewritten.node.add()
        constant.name, constant.op, constant.device = f"{node.name}/static_shape", "Const", node.device
        constant.attr["dtype"].type = tf.int32.as_datatype_enum
        constant.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(np.array(shapes[node.name], np.int32)))
        data = data_inputs(node)
        controls = [name for name in node.input if name.startswith("^")]
        del copy.input[:]
        copy.input.extend([data[0], constant.name] + controls)
        copy.attr["Tshape"].type = tf.int32.as_datatype_enum
    rewritten = without_dead_nodes(rewritten, keep, () if held is None else held)
    if held is not None:
        held = held.used_by(rewritten)
    return rewritten, held, len(shapes)
