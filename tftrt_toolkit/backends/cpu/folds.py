"""Fold per-channel affine ops (inference BatchNorm) into the convolution before them.

Used by every cpu precision: fp32 and bf16 so grappler's remapper and oneDNN fuse
conv + bias + activation (EfficientNet-Lite0 bf16 bs8 went from 1.58x to 3.24x), int8 so
each convolution quantizes as one fused kernel.

Keras 3 exports BatchNormalization as plain ``Mul``/``AddV2`` by constants, not as
``FusedBatchNormV3``, and grappler does not fold those into the convolution's weights.
Left in place they sit between every convolution and its activation, so neither the
fp32 remapper nor an INT8 quantizer can fuse conv + bias + relu (each convolution then
needs its own dequantize/requantize pair). Folding them first turns
``Conv2D → BiasAdd → Mul(c) → AddV2(d)`` into ``Conv2D(W·c) → BiasAdd(b·c + d)``: exact in
real arithmetic, a float rounding difference in practice.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from tftrt_toolkit.backends.graphdef import consumers as _consumers
from tftrt_toolkit.backends.graphdef import empty_like
from tftrt_toolkit.backends.graphdef import node_name as _name

CONV_OPS = ("Conv2D", "DepthwiseConv2dNative")


def _const_value(node, held=None) -> Optional[np.ndarray]:
    """A Const's value, or a held weight's (see held_weights.py); None for anything else."""
    if held is not None:
        return held.value(node)
    from tensorflow.python.framework import tensor_util

    if node is None or node.op != "Const":
        return None
    return tensor_util.MakeNdarray(node.attr["value"].tensor)


def _per_channel(value: Optional[np.ndarray], channels: int) -> Optional[np.ndarray]:
    """``value`` as a (channels,) vector when it broadcasts along the last (channel) axis only."""
    if value is None or value.dtype != np.float32:
        return None
    if value.size == 1:
        return np.full((channels,), value.reshape(()), np.float32)
    if value.size == channels and value.shape[-1] == channels:
        return value.reshape((channels,))
    return None


def _const_operand(node, nodes) -> Tuple[Optional[np.ndarray], Optional[str]]:
    """For a binary op with one Const operand: (its value, the other input's tensor name)."""
    if len(node.input) != 2:
        return None, None
    for const_index in (0, 1):
        value = _const_value(nodes.get(_name(node.input[const_index])))
        if value is not None:
            return value, node.input[1 - const_index]
    return None, None


def fold_affine_into_conv(graph_def, keep: Tuple[str, ...] = (), held=None) -> Tuple[object, int, object]:
    """Return (new graph_def, how many Mul/Add/BiasAdd ops were folded into convolutions, new held weights).

    ``keep`` names nodes that must survive (the signature's outputs). Only folds through
    nodes with a single consumer, on NHWC convolutions whose filter is a Const or a weight
    in ``held`` (a new HeldWeights carries its folded value; None stays None).
    """
    from tensorflow.python.framework import tensor_util

    nodes = {node.name: node for node in graph_def.node}
    consumers = _consumers(graph_def)
    removed = set()
    new_consts = {}
    new_held = {}
    rewritten_conv = {}
    folded = 0

    for conv in list(graph_def.node):
        if conv.op not in CONV_OPS or conv.attr["data_format"].s not in (b"", b"NHWC"):
            continue
        filter_node = nodes.get(_name(conv.input[1]))
        weights = _const_value(filter_node, held)
        if weights is None or weights.dtype != np.float32 or len(consumers.get(filter_node.name, [])) != 1:
            continue
        channels = weights.shape[2] * weights.shape[3] if conv.op == "DepthwiseConv2dNative" else weights.shape[3]
        scale = np.ones((channels,), np.float32)
        bias = np.zeros((channels,), np.float32)
        tail = conv
        chain = []
        while True:
            users = consumers.get(tail.name, [])
            if len(users) != 1 or tail.name in keep:
                break
            user = nodes[users[0]]
            if user.op == "BiasAdd" and _name(user.input[0]) == tail.name:
                value = _per_channel(_const_value(nodes.get(_name(user.input[1]))), channels)
                if value is None:
                    break
                bias = bias + value
            elif user.op == "Mul":
                value, other = _const_operand(user, nodes)
                value = _per_channel(value, channels)
                if value is None or _name(other) != tail.name:
                    break
                scale, bias = scale * value, bias * value
            elif user.op in ("AddV2", "Add"):
                value, other = _const_operand(user, nodes)
                value = _per_channel(value, channels)
                if value is None or _name(other) != tail.name:
                    break
                bias = bias + value
            elif user.op == "Sub" and _name(user.input[0]) == tail.name:
                value = _per_channel(_const_value(nodes.get(_name(user.input[1]))), channels)
                if value is None:
                    break
                bias = bias - value
            else:
                break
            chain.append(user)
            tail = user
        # A lone BiasAdd is already what we want; fold only when something changes.
        if not chain or (len(chain) == 1 and chain[0].op == "BiasAdd"):
            continue
        if conv.op == "DepthwiseConv2dNative":
            new_weights = weights * scale.reshape(weights.shape[2], weights.shape[3])
        else:
            new_weights = weights * scale
        if held is not None and filter_node.name in held:
            new_held[filter_node.name] = new_weights.astype(np.float32)
        else:
            new_consts[filter_node.name] = new_weights.astype(np.float32)
        bias_name = conv.name + "/folded_bias"
        new_consts[bias_name] = bias.astype(np.float32)
        rewritten_conv[conv.name] = (chain[-1].name, bias_name)
        for node in chain:
            removed.add(node.name)
        folded += len(chain)

    if not rewritten_conv:
        return graph_def, 0, held

    result = empty_like(graph_def)
    for node in graph_def.node:
        if node.name in removed:
            continue
        new = result.node.add()
        new.CopyFrom(node)
        if node.name in new_consts:
            new.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(new_consts[node.name]))
        if node.name in rewritten_conv:
            last, bias_name = rewritten_conv[node.name]
            # The conv keeps its name for error messages; the BiasAdd takes the chain's last
            # name so every consumer (and the signature's outputs) still finds its input.
            new.name = node.name
            bias_const = result.node.add()
            bias_const.name = bias_name
            bias_const.op = "Const"
            bias_const.attr["dtype"].type = node.attr["T"].type
            bias_const.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(new_consts[bias_name]))
            bias_add = result.node.add()
            bias_add.name = last
            bias_add.op = "BiasAdd"
            bias_add.input.extend([node.name, bias_name])
            bias_add.attr["T"].CopyFrom(node.attr["T"])
            bias_add.attr["data_format"].s = b"NHWC"
    return result, folded, (held.with_values(new_held) if new_held else held)


def hoist_offsets_out_of_sums(graph_def, held=None) -> Tuple[object, int]:
    """Move a constant added after a residual sum onto the convolution branch of that sum.

    Grappler's arithmetic pass turns ``conv_bn + shortcut`` into
    ``AddV2(AddN(conv, shortcut), offset)``: the BatchNorm offset ends up after the sum,
    where no fused conv kernel can take it. ``AddN(BiasAdd(conv, offset), shortcut)`` is
    the same sum and has the conv + bias + sum shape the INT8 kernels fuse.
    Returns (new graph_def, how many sums were rewritten).
    """
    from tensorflow.python.framework import tensor_util

    nodes = {node.name: node for node in graph_def.node}
    consumers = _consumers(graph_def)
    plans = {}  # offset AddV2 name -> (sum name, conv name, offset const name)
    for add in graph_def.node:
        if add.op not in ("AddV2", "Add"):
            continue
        offset, other = _const_operand(add, nodes)
        total = nodes.get(_name(other)) if other is not None else None
        if offset is None or total is None or total.op not in ("AddN", "AddV2", "Add") or len(total.input) != 2:
            continue
        if len(consumers.get(total.name, [])) != 1 or ":" in other:
            continue
        for tensor in total.input:
            conv = nodes.get(_name(tensor))
            if conv is None or conv.op not in CONV_OPS or len(consumers.get(conv.name, [])) != 1 or ":" in tensor:
                continue
            filter_value = _const_value(nodes.get(_name(conv.input[1])), held)
            if filter_value is None:
                continue
            channels = filter_value.shape[2] * filter_value.shape[3] if conv.op == "DepthwiseConv2dNative" \
                else filter_value.shape[3]
            if _per_channel(offset, channels) is None:
                continue
            plans[add.name] = (total.name, conv.name, _per_channel(offset, channels))
            break
    if not plans:
        return graph_def, 0
    sums = {total: (add, conv, offset) for add, (total, conv, offset) in plans.items()}
    convs = {conv: (add, offset) for add, (total, conv, offset) in plans.items()}

    result = empty_like(graph_def)
    for node in graph_def.node:
        if node.name in plans:
            continue  # the offset add: its sum takes its name below
        new = result.node.add()
        new.CopyFrom(node)
        if node.name in sums:
            add_name, conv_name, _ = sums[node.name]
            new.name = add_name  # consumers of the old offset add now read the sum
            new.op = "AddV2"
            if "N" in new.attr:
                del new.attr["N"]
            del new.input[:]
            new.input.extend([conv_name + "/hoisted_offset" if _name(t) == conv_name else t for t in node.input])
        if node.name in convs:
            _, offset = convs[node.name]
            const = result.node.add()
            const.name = node.name + "/hoisted_offset_value"
            const.op = "Const"
            const.attr["dtype"].type = node.attr["T"].type
            const.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(offset.astype(np.float32)))
            bias_add = result.node.add()
            bias_add.name = node.name + "/hoisted_offset"
            bias_add.op = "BiasAdd"
            bias_add.input.extend([node.name, const.name])
            bias_add.attr["T"].CopyFrom(node.attr["T"])
            bias_add.attr["data_format"].s = b"NHWC"
    return result, len(plans)


def add_missing_bias(graph_def, keep: Tuple[str, ...] = (), held=None) -> Tuple[object, int]:
    """Give every conv with a Const filter a BiasAdd (of zeros when it had none).

    Convolutions without bias (``use_bias=False`` before a BatchNorm whose offset is zero, or
    any random-weight model) otherwise become INC's unfused ``QuantizedConv2DPerChannel`` +
    ``RequantizePerChannel``: slower, and measured 5-10x less accurate than the fused
    ``QuantizedConv2DWithBias*`` kernels. Returns (new graph_def, biases added).
    """
    from tensorflow.python.framework import tensor_util

    nodes = {node.name: node for node in graph_def.node}
    consumers = _consumers(graph_def)
    targets = {}
    for conv in graph_def.node:
        if conv.op not in CONV_OPS or conv.attr["data_format"].s not in (b"", b"NHWC") or conv.name in keep:
            continue
        weights = _const_value(nodes.get(_name(conv.input[1])), held)
        users = consumers.get(conv.name, [])
        if weights is None or (len(users) == 1 and nodes[users[0]].op == "BiasAdd"):
            continue
        channels = weights.shape[2] * weights.shape[3] if conv.op == "DepthwiseConv2dNative" else weights.shape[3]
        targets[conv.name] = channels
    if not targets:
        return graph_def, 0
    renamed = {name: name + "/zero_bias_add" for name in targets}
    result = empty_like(graph_def)
    for node in graph_def.node:
        new = result.node.add()
        new.CopyFrom(node)
        if node.name not in targets:
            inputs = [renamed[_name(t)] if _name(t) in renamed and not t.startswith("^") and ":" not in t else t
                      for t in node.input]
            del new.input[:]
            new.input.extend(inputs)
            continue
        const = result.node.add()
        const.name = node.name + "/zero_bias"
        const.op = "Const"
        const.attr["dtype"].type = node.attr["T"].type
        const.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(np.zeros((targets[node.name],), np.float32)))
        bias_add = result.node.add()
        bias_add.name = renamed[node.name]
        bias_add.op = "BiasAdd"
        bias_add.input.extend([node.name, const.name])
        bias_add.attr["T"].CopyFrom(node.attr["T"])
        bias_add.attr["data_format"].s = b"NHWC"
    return result, len(targets)


def fold_affine_ops(graph_def, keep: Tuple[str, ...] = (), held=None) -> Tuple[object, int, object]:
    """All the folds above, in order: (new graph_def, ops rewritten, new held weights).

    ``held``: the weights held out of the graph (frozen.held_weights.HeldWeights), read there;
    the folded values come back in the new HeldWeights returned (None when ``held`` is None).
    """
    graph_def, hoisted = hoist_offsets_out_of_sums(graph_def, held)
    graph_def, folded, held = fold_affine_into_conv(graph_def, keep, held)
    graph_def, biased = add_missing_bias(graph_def, keep, held)
    return graph_def, hoisted + folded + biased, held


def fold_weight_casts(graph_def, held) -> Tuple[object, int, object]:
    """Cast held weights ahead of time: ``Cast(W)`` becomes a held weight of the cast's type.

    Grappler's constant folding did this when the weights were constants (bf16 stores its
    weights as bf16); with the weights held aside we do it, with numpy's rounding to nearest
    even, as TensorFlow's Cast does. Returns (new graph_def, casts folded, new held weights).
    """
    from tensorflow.python.framework import dtypes

    from tftrt_toolkit.backends.frozen.held_weights import cast_to, make_placeholder
    from tftrt_toolkit.backends.graphdef import copy

    graph_def = copy(graph_def)
    cast_values = {}
    for node in graph_def.node:
        if node.op != "Cast" or not node.input or not (node.input[0] in held or node.input[0] in cast_values):
            continue
        source = cast_values[node.input[0]] if node.input[0] in cast_values else held.sources[node.input[0]]
        cast_values[node.name] = cast_to(source, dtypes.as_dtype(node.attr["DstT"].type).as_numpy_dtype)
        make_placeholder(node, cast_values[node.name])
    if not cast_values:
        return graph_def, 0, held
    held = held.with_values(cast_values)
    # A weight read only through its casts is no longer needed in its original type.
    still_used = {_name(tensor) for node in graph_def.node for tensor in node.input}
    keep = [node for node in graph_def.node
            if not (node.op == "Placeholder" and node.name in held and node.name not in still_used)]
    del graph_def.node[:]
    graph_def.node.extend(keep)
    return graph_def, len(cast_values), held.used_by(graph_def)
