"""Dense + GELU shaped so TF's own remapper fuses them when the model is loaded with oneDNN on, and only then.

Keras 3's ``Dense(N, activation="gelu")`` on a [B, T, C] input exports ``Tensordot``:

    Reshape(x, [-1, C]) ─ MatMul(W) ─ Reshape(·, [B, T, N]) ─ AddV2(bias) ─ GELU (Mul, Erf, AddV2, Mul, Mul)

TF 2.17's remapper (``remapper.cc``, ``FindMatMulBiasAddAndGelu``: oneDNN builds only) fuses
``MatMul ─ BiasAdd ─ GELU`` (exact, with Erf; or approximate, with Tanh; operands in any order)
into one ``_FusedMatMul[BiasAdd, GeluExact]``, which oneDNN runs as ``_MklNativeFusedMatMul``.
Here it never matches: the Reshape sits between the MatMul and the rest, the bias is an
``AddV2``, and a random-weight model's zero bias is folded away. So this rewrite leaves plain ops
of that shape in the saved graph:

    Reshape(x, [-1, C]) ─ MatMul(W) ─ BiasAdd(bias) ─ the same GELU ops on [B·T, N] ─ Reshape(·, [B, T, N])

Exact: the bias and GELU's ops are elementwise along the last axis with scalar constants, so
they give the same values on the [B·T, N] matrix as on [B, T, N]; the final Reshape takes the
GELU output's name, so readers and fetches are unchanged. Where the model has no bias (or a zero
one), the BiasAdd adds zeros from a ``PlaceholderWithDefault``: grappler's constant folding drops
``x + 0`` for a ``Const`` zero, not for a placeholder's default, so the pattern survives until the
remapper. A fused GELU has only a oneDNN kernel; nothing here fuses it, so the saved graph runs on
TF's Eigen kernels as well (TF_ENABLE_ONEDNN_OPTS=0, CPUs without AVX512): the fusion happens at
load time, in the process that runs the model, where oneDNN is on.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Sequence, Set, Tuple

import numpy as np

from tftrt_toolkit.backends.graphdef import consumers, empty_like, node_name, without_dead_nodes

# Ops that act elementwise with a scalar constant: GELU's, exact (Erf) and approximate (Tanh).
_ELEMENTWISE = frozenset({"Mul", "AddV2", "Add", "Sub", "RealDiv", "Erf", "Erfc", "Tanh", "Square", "Pow", "Neg"})
_GELU_CORE = frozenset({"Erf", "Erfc", "Tanh"})
_MAX_GELU_OPS = 16  # the approximate GELU is nine ops; anything bigger is not one
ZERO_BIAS_OP = "PlaceholderWithDefault"


def _data_inputs(node) -> List[str]:
    return [name for name in node.input if not name.startswith("^")]


def _output_0(tensor: str) -> bool:
    return ":" not in tensor or tensor.endswith(":0")


class _Graph:
    def __init__(self, graph_def, held):
        self.nodes = {node.name: node for node in graph_def.node}
        self.held = held
        self.readers: Dict[str, List[str]] = consumers(graph_def)

    def constant(self, tensor: str) -> Optional[np.ndarray]:
        node = self.nodes.get(node_name(tensor))
        if node is None or not _output_0(tensor):
            return None
        if node.op == "Const":
            from tensorflow.python.framework import tensor_util

            return tensor_util.MakeNdarray(node.attr["value"].tensor)
        if node.op == "Placeholder" and self.held is not None and node.name in self.held:
            return self.held.values[node.name]
        return None

    def only_reader(self, name: str):
        readers = self.readers.get(name, [])
        return self.nodes[readers[0]] if len(readers) == 1 else None

    def columns(self, matmul) -> Optional[int]:
        """N of a MatMul by a constant (or held) weight; None when the weight's shape is unknown."""
        weight = self.nodes.get(node_name(_data_inputs(matmul)[1]))
        if weight is None:
            return None
        if weight.op == "Const":
            shape = [d.size for d in weight.attr["value"].tensor.tensor_shape.dim]
        elif weight.op == "Placeholder" and "shape" in weight.attr:
            shape = [d.size for d in weight.attr["shape"].shape.dim]
        else:
            return None
        if len(shape) != 2 or min(shape) < 0:
            return None
        return shape[0] if matmul.attr["transpose_b"].b else shape[1]


def _bias(graph: _Graph, node, start: str, columns: int) -> Optional[str]:
    """The bias tensor when ``node`` adds a [N] constant to ``start``'s output, else None."""
    if node.op not in ("AddV2", "Add", "BiasAdd") or len(_data_inputs(node)) != 2:
        return None
    inputs = _data_inputs(node)
    for index in ((0, 1) if node.op != "BiasAdd" else (0,)):
        if node_name(inputs[index]) == start and _output_0(inputs[index]):
            bias = graph.constant(inputs[1 - index])
            if bias is not None and bias.shape == (columns,):
                return inputs[1 - index]
    return None


def _gelu(graph: _Graph, start: str, dtype: int) -> Optional[Tuple[List[str], str]]:
    """(the ops, in graph order, the output op) of a GELU-like elementwise region reading ``start``; else None.

    Every op of the region is elementwise (``_ELEMENTWISE``) on ``start``, the region's own ops and
    scalar constants; only the output op is read outside the region; and the region holds an Erf or
    a Tanh (a GELU, not some other chain of scalar ops).
    """
    region: Set[str] = set()
    frontier = list(graph.readers.get(start, []))
    while frontier:
        name = frontier.pop()
        if name in region:
            continue
        node = graph.nodes[name]
        if node.op not in _ELEMENTWISE or node.attr["T"].type != dtype or any(t.startswith("^") for t in node.input):
            continue
        inside = [t for t in node.input if node_name(t) in region or node_name(t) == start]
        others = [t for t in node.input if t not in inside]
        if not inside or not all(_output_0(t) for t in inside):
            continue
        if any((value := graph.constant(t)) is None or value.size != 1 for t in others):
            continue
        region.add(name)  # an op seen before all its inputs joined is seen again from the last one
        if len(region) > _MAX_GELU_OPS:
            return None
        frontier.extend(graph.readers.get(name, []))
    if any(reader not in region for reader in graph.readers.get(start, [])):
        return None
    outputs = [name for name in region if any(r not in region for r in graph.readers.get(name, []))]
    if len(outputs) != 1 or not any(graph.nodes[name].op in _GELU_CORE for name in region):
        return None
    order = [node.name for node in graph.nodes.values() if node.name in region]
    return order, outputs[0]


@dataclasses.dataclass(frozen=True)
class _DenseGelu:
    matmul: str
    reshape: object      # the Tensordot's trailing Reshape (NodeDef)
    cast: Optional[str]  # the bf16 pass's Cast to fp32 before the GELU, if any
    bias: Optional[str]  # the [N] bias tensor added before the GELU, if any
    start: str           # the node the GELU reads
    ops: List[str]       # the GELU's ops, in graph order
    output: str          # the GELU's last op
    columns: int         # N
    dtype: int           # the MatMul's dtype, the fused op's


def _match(graph: _Graph, matmul):
    """The parts of one Dense + GELU reading ``matmul``, or None (see ``_DenseGelu``)."""
    import tensorflow as tf

    dtype = matmul.attr["T"].type
    if dtype not in (tf.float32.as_datatype_enum, tf.bfloat16.as_datatype_enum):
        return None
    reshape = graph.only_reader(matmul.name)
    if reshape is None or reshape.op != "Reshape" or _data_inputs(reshape)[0] not in (matmul.name, f"{matmul.name}:0"):
        return None
    columns = graph.columns(matmul)
    if columns is None:
        return None
    start, cast, bias, gelu_dtype = reshape.name, None, None, dtype
    after = graph.only_reader(start)
    # A bf16 graph whose GELU the bf16 pass kept in fp32: MatMul (bf16) ─ Reshape ─ Cast to fp32 ─ GELU.
    if (after is not None and after.op == "Cast" and dtype == tf.bfloat16.as_datatype_enum
            and after.attr["SrcT"].type == dtype and after.attr["DstT"].type == tf.float32.as_datatype_enum):
        start, cast, gelu_dtype = after.name, after.name, tf.float32.as_datatype_enum
        after = graph.only_reader(start)
    if after is not None:
        bias = _bias(graph, after, start, columns)
        if bias is not None:
            start = after.name
    gelu = _gelu(graph, start, gelu_dtype)
    if gelu is None:
        return None
    return _DenseGelu(matmul.name, reshape, cast, bias, start, gelu[0], gelu[1], columns, dtype)


def fuse_ready_gelus(graph_def, keep: Sequence[str] = (), held=None):
    """(graph, number rewritten): each Dense + GELU as MatMul ─ BiasAdd ─ GELU ─ Reshape, the remapper's pattern.

    Outputs are unchanged in fp32 (elementwise ops moved before a Reshape). In a bf16 graph whose
    GELU the bf16 pass kept in fp32 (a Cast between the MatMul and the GELU), the bias and GELU
    go to bf16 with the MatMul, which the remapper fuses only in one dtype: oneDNN then computes
    them on the fp32 accumulator and rounds once (on TF's Eigen kernels they round op by op). Ops
    nothing reads any more are dropped (with ``keep``, the fetched nodes).
    """
    import tensorflow as tf
    graph = _Graph(graph_def, held)
    matches: Dict[str, _DenseGelu] = {}
    taken: Set[str] = set()
    for node in graph_def.node:
        if node.op != "MatMul" or len(_data_inputs(node)) != 2:
            continue
        found = _match(graph, node)
        if found is None or found.output in keep or taken & set(found.ops):
            continue
        matches[node.name] = found
        taken.update(found.ops)
    if not matches:
        return graph_def, 0

    by_output = {match.output: match for match in matches.values()}
    region_of = {name: match for match in matches.values() for name in match.ops}
    rewritten = empty_like(graph_def)
    converted_constants: Dict[Tuple[str, int], str] = {}

    def add(name, op, device, inputs=(), dtype=None):
        node = rewritten.node.add()
        node.name, node.op, node.device = name, op, device
        node.input.extend(inputs)
        if dtype is not None:
            node.attr["T"].type = dtype
        return node

    def constant_as(tensor, dtype, device):
        """``tensor`` (a scalar constant) as a Const of ``dtype``."""
        key = (tensor, dtype)
        if key not in converted_constants:
            name = f"{node_name(tensor)}/as_{tf.as_dtype(dtype).name}"
            node = add(name, "Const", device)
            node.attr["dtype"].type = dtype
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(graph.constant(tensor), dtype=tf.as_dtype(dtype)))
            converted_constants[key] = name
        return converted_constants[key]

    def flat_gelu_op(node, match):
        copy = rewritten.node.add()
        copy.CopyFrom(node)
        if node.name == match.output:
            copy.name = f"{node.name}/flat"
        copy.attr["T"].type = match.dtype
        for index, tensor in enumerate(node.input):
            name = node_name(tensor)
            if name == match.start:
                copy.input[index] = f"{match.matmul}/bias_add"
            elif name == match.output:
                copy.input[index] = f"{name}/flat"
            elif name not in region_of and node.attr["T"].type != match.dtype:
                copy.input[index] = constant_as(tensor, match.dtype, node.device)

    def bias_add(node, match):
        bias = match.bias
        if bias is not None and (graph.nodes[node_name(bias)].attr["dtype"].type != match.dtype
                                 or graph.nodes[node_name(bias)].op != "Const"):
            bias = constant_as(bias, match.dtype, node.device)
        if bias is None:
            zeros = add(f"{node.name}/zero_bias/value", "Const", node.device)
            zeros.attr["dtype"].type = match.dtype
            zeros.attr["value"].tensor.CopyFrom(
                tf.make_tensor_proto(np.zeros([match.columns], np.float32), dtype=tf.as_dtype(match.dtype)))
            placeholder = add(f"{node.name}/zero_bias", ZERO_BIAS_OP, node.device, [zeros.name])
            placeholder.attr["dtype"].type = match.dtype
            placeholder.attr["shape"].shape.dim.add().size = match.columns
            bias = placeholder.name
        add(f"{node.name}/bias_add", "BiasAdd", node.device, [node.name, bias], match.dtype).attr[
            "data_format"].s = b"NHWC"

    def reshape_back(node, match):
        """The GELU's output back in [B, T, N], under its name; fp32 where the graph read fp32 there."""
        back = rewritten.node.add()
        back.CopyFrom(match.reshape)
        back.name = node.name if match.cast is None else f"{node.name}/{tf.as_dtype(match.dtype).name}"
        del back.input[:]
        back.input.extend([f"{node.name}/flat", _data_inputs(match.reshape)[1]]
                          + [t for t in match.reshape.input if t.startswith("^")])
        if match.cast is not None:
            cast = add(node.name, "Cast", node.device, [back.name])
            cast.attr["SrcT"].type, cast.attr["DstT"].type = match.dtype, node.attr["T"].type
            cast.attr["Truncate"].b = False

    casts_back = {}  # a bf16 pass Cast reading a GELU output (back to the MatMul's dtype) → the GELU's match
    for name, match in by_output.items():
        if match.cast is not None:
            for reader in graph.readers.get(name, []):
                node = graph.nodes[reader]
                if (node.op == "Cast" and node.attr["DstT"].type == match.dtype and len(node.input) == 1
                        and node.input[0] in (name, f"{name}:0")):
                    casts_back[reader] = match

    for node in graph_def.node:
        if node.name in region_of:
            flat_gelu_op(node, region_of[node.name])
        elif node.name in casts_back:
            # Cast(Cast(x, fp32), bf16) is x: read the bf16 result directly.
            match = casts_back[node.name]
            add(node.name, "Identity", node.device, [f"{match.output}/{tf.as_dtype(match.dtype).name}"], match.dtype)
        else:
            rewritten.node.add().CopyFrom(node)
        if node.name in matches:
            bias_add(node, matches[node.name])
        if node.name in by_output:
            reshape_back(node, by_output[node.name])
    return without_dead_nodes(rewritten, keep, () if held is None else held), len(matches)
