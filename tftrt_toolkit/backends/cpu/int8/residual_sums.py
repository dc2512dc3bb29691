"""Residual adds into the int8 convolutions: no fp32 island between MobileNet-style blocks.

INC fuses a residual add into the conv before it only when a ReLU follows the add
(``QuantizedConv2DWithBiasSumAndReluAndRequantize``, ResNet's blocks); TF 2.17's int8 conv
kernels accept a sum post-op in no other combination (``MklQuantizedConvOp``'s supported
fusions: ``BiasAdd, Sum, Relu[, Requantize]`` only). MobileNet/EfficientNet blocks have no ReLU
after the add, so INC leaves ``Dequantize -> AddV2 -> QuantizeV2`` around every one of them.

The rewrite makes the ReLU a no-op instead: each tensor on the residual path (an add's result,
and a projection conv's output that is the next add's skip) is kept as uint8 codes of
``value + c`` with ``c`` its calibrated symmetric range ``R`` (codes over ``[0, 2R]``: the same
step as int8's ``[-R, R]``, the same clipping). Then

- the projection conv before an add becomes ``...BiasSumAndReluAndRequantize`` with the skip as
  its uint8 summand, bias ``+ offsets + c_out - c_skip``, output range ``[0, 2 R_out]``;
- a projection conv whose output is a skip becomes ``...BiasAndReluAndRequantize`` with bias
  ``+ c`` and output range ``[0, 2R]``;
- each 1x1 conv reading a shifted tensor reads the uint8 codes directly and subtracts
  ``c * sum(W)`` from its bias (exact: a 1x1 kernel reads no padding).

Up to float rounding the graph computes what INC's did, with one rounding fewer per add. A fused
sum writes into its summand's buffer: every other reader of the summand must run before it
(an ancestor of the fused conv), which is checked; adds that fail any check keep their island.
The 1x1 convs now reading uint8 get the int16 overflow check (``overflow_guard``; the recipe runs it).

On EfficientNet-Lite0 (Sapphire Rapids): 9 adds fused, QuantizeV2/Dequantize 11/15 -> 2/1, p50
latency x0.92-0.94 at one thread and x0.81-0.83 at two (batch 1), top-1 on 750 ImageNet photos unchanged
within noise, also capped to AVX2 (benchmarks/int8_cpu_notes.md, "Residual adds inside the int8 convs").
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Set, Tuple

import numpy as np

from tftrt_toolkit.backends.graphdef import consumers, node_name, nodes_by_name

SUM_OPS = ("AddV2", "Add", "AddN")
PLAIN_CONV = "QuantizedConv2DWithBiasAndRequantize"
RELU_CONV = "QuantizedConv2DWithBiasAndReluAndRequantize"
SUM_CONV = "QuantizedConv2DWithBiasSumAndReluAndRequantize"
# Convs that may read a shifted tensor (their bias takes the shift back).
READER_CONVS = (PLAIN_CONV, RELU_CONV)
# The output range constants of the convs whose uint8 codes hold value + c (``shifted_outputs``).
SHIFTED_MIN_SUFFIX = "/residual_shifted_min"
_CONV_ATTRS = ("Tinput", "Tfilter", "Tbias", "strides", "padding", "dilations", "padding_list")


class _Graph:
    """The int8 graph being rewritten, with its readers and constants at hand."""

    def __init__(self, graph_def):
        self.graph = graph_def
        self.nodes = nodes_by_name(graph_def)
        self.readers = consumers(graph_def)

    def const(self, name: str) -> Optional[np.ndarray]:
        from tensorflow.python.framework import tensor_util

        node = self.nodes.get(node_name(name))
        if node is None or node.op not in ("Const", "HostConst") or "value" not in node.attr:
            return None
        return tensor_util.MakeNdarray(node.attr["value"].tensor)

    def is_float_sum(self, node) -> bool:
        from tensorflow.core.framework import types_pb2

        # Attrs read only where present: indexing a protobuf map inserts an empty value.
        return node.op in SUM_OPS and "T" in node.attr and node.attr["T"].type == types_pb2.DT_FLOAT

    def readers_of(self, name: str) -> List[str]:
        return self.readers.get(name, [])

    def ancestors(self, name: str) -> Set[str]:
        seen: Set[str] = set()
        stack = [node_name(t) for t in self.nodes[name].input]
        while stack:
            current = stack.pop()
            if current in seen or current not in self.nodes:
                continue
            seen.add(current)
            stack.extend(node_name(t) for t in self.nodes[current].input)
        return seen


class _Sum:
    """One residual add as INC left it: ``dequantized conv + skip + constant offsets``."""

    def __init__(self, name: str, conv: str, skip: str, skip_is_sum: bool, offset: np.ndarray,
                 quantize: str, range_: float):
        self.name, self.conv, self.skip, self.skip_is_sum = name, conv, skip, skip_is_sum
        self.offset, self.quantize, self.range = offset, quantize, range_


def _symmetric_range(g: _Graph, low: str, high: str) -> Optional[float]:
    values = [g.const(low), g.const(high)]
    if any(v is None or v.size != 1 for v in values):
        return None
    return float(max(abs(float(values[0].reshape(-1)[0])), abs(float(values[1].reshape(-1)[0]))))


def _scaled(node) -> bool:
    return "mode" in node.attr and node.attr["mode"].s == b"SCALED"


def _plain_conv_of(g: _Graph, dequantize: str) -> Optional[str]:
    """The ``QuantizedConv2DWithBiasAndRequantize`` a SCALED Dequantize reads whole (outputs 0, 1, 2), or None."""
    node = g.nodes.get(dequantize)
    if node is None or node.op != "Dequantize" or not _scaled(node) or len(node.input) < 3:
        return None
    conv = node_name(node.input[0])
    expected = [conv, conv + ":1", conv + ":2"]
    if [node.input[0] if ":" in node.input[0] else conv] + list(node.input[1:3]) != expected:
        return None
    if g.nodes[conv].op != PLAIN_CONV:
        return None
    return conv


def _is_one_by_one_reader(g: _Graph, reader: str, tensor: str) -> bool:
    """``reader`` is a conv reading ``tensor``'s codes and range (inputs 0, 3, 4) with a constant 1x1 filter and bias."""
    node = g.nodes.get(reader)
    if node is None or node.op not in READER_CONVS or len(node.input) < 9:
        return False
    source = node_name(tensor)
    if node_name(node.input[0]) != source or any(node_name(node.input[i]) != source for i in (3, 4)):
        return False
    if any(node_name(node.input[i]) == source for i in (1, 2, 5, 6, 7, 8)):
        return False
    filter_ = g.const(node.input[1])
    return filter_ is not None and filter_.ndim == 4 and filter_.shape[:2] == (1, 1) and g.const(node.input[2]) is not None


def _find_sums(g: _Graph) -> Dict[str, _Sum]:
    """Every fp32 residual add INC left that the rewrite could take, before the cross-checks."""
    found: Dict[str, _Sum] = {}
    float_sums = {n.name for n in g.graph.node if g.is_float_sum(n)}

    def is_top(name: str) -> bool:
        readers = g.readers_of(name)
        return not (len(readers) == 1 and readers[0] in float_sums)

    for name in sorted(float_sums):
        if not is_top(name):
            continue
        dequantized, sums, offsets, ok = [], [], [], True
        stack = list(g.nodes[name].input)
        while stack and ok:
            tensor = stack.pop()
            source = node_name(tensor)
            if tensor.startswith("^") or (":" in tensor and not tensor.endswith(":0")):
                ok = False
            elif source in float_sums:
                if is_top(source):
                    sums.append(source)
                else:
                    stack.extend(g.nodes[source].input)
            elif g.nodes[source].op == "Dequantize":
                dequantized.append(source)
            elif g.const(source) is not None:
                offsets.append(g.const(source).astype(np.float64))
            else:
                ok = False
        if not ok or len(dequantized) + len(sums) != 2 or len(sums) > 1:
            continue
        convs = [_plain_conv_of(g, d) for d in dequantized]
        if any(c is None for c in convs):
            continue
        if sums:
            conv, skip, skip_is_sum = convs[0], sums[0], True
        else:
            first, second = convs
            if first in g.ancestors(second):
                conv, skip = second, first
            elif second in g.ancestors(first):
                conv, skip = first, second
            else:
                continue
            skip_is_sum = False
            if not _symmetric_range(g, g.nodes[skip].input[7], g.nodes[skip].input[8]):
                continue
        channels = int(g.const(g.nodes[conv].input[2]).size)
        try:
            offset = sum((np.broadcast_to(o.reshape(-1) if o.size > 1 else o.reshape(()), (channels,))
                          for o in offsets), np.zeros(channels))
        except ValueError:
            continue
        quantizes = [r for r in g.readers_of(name) if g.nodes[r].op == "QuantizeV2"]
        if len(quantizes) != 1:
            continue
        quantize = g.nodes[quantizes[0]]
        if not _scaled(quantize) or node_name(quantize.input[0]) != name:
            continue
        range_ = _symmetric_range(g, quantize.input[1], quantize.input[2])
        if not range_:
            continue
        found[name] = _Sum(name, conv, skip, skip_is_sum, offset, quantize.name, range_)
    return found


def _checked(g: _Graph, found: Dict[str, _Sum]) -> Dict[str, _Sum]:
    """The sums whose every neighbour the rewrite can carry, to a fixed point."""
    sums = dict(found)
    while True:
        dropped = set()
        skips: Dict[str, List[str]] = {}
        for s in sums.values():
            skips.setdefault(s.skip, []).append(s.name)
        for s in sums.values():
            # The conv fused here: its output read by the island's Dequantize only.
            dequantize_readers = g.readers_of(s.conv)
            if len(set(dequantize_readers)) != 1 or s.conv in skips or s.conv in sums:
                dropped.add(s.name)
                continue
            if skips.get(s.skip, []) != [s.name]:
                dropped.add(s.name)  # a skip may be one add's summand only (written in place)
                continue
            # The island's Dequantizes go with it: nothing outside may read the (now shifted) values.
            members = _island_members(g, s.name)
            if any(reader not in members for member in members if g.nodes[member].op == "Dequantize"
                   for reader in g.readers_of(member)):
                dropped.add(s.name)
                continue
            if s.skip_is_sum and s.skip not in sums:
                dropped.add(s.name)
                continue
            # This add's result: read by its QuantizeV2 (whose readers must all be 1x1 convs) and
            # by at most one later add that takes it as its skip.
            for reader in set(g.readers_of(s.name)):
                if reader == s.quantize:
                    if not all(_is_one_by_one_reader(g, r, s.quantize) for r in set(g.readers_of(s.quantize))):
                        dropped.add(s.name)
                elif not (reader in _island_of(g, sums, skips.get(s.name, []))):
                    dropped.add(s.name)
            if not s.skip_is_sum:
                # A projection conv as the skip: its other readers are 1x1 convs, plus the island's Dequantize.
                for reader in set(g.readers_of(s.skip)):
                    node = g.nodes[reader]
                    if node.op == "Dequantize" and reader in _island_members(g, s.name):
                        continue
                    if not _is_one_by_one_reader(g, reader, s.skip):
                        dropped.add(s.name)
        if not dropped:
            return sums
        for name in dropped:
            sums.pop(name, None)


def _island_members(g: _Graph, top: str) -> Set[str]:
    """The fp32 sums and Dequantizes one top sum flattens over."""
    members, stack = set(), [top]
    while stack:
        name = stack.pop()
        if name in members:
            continue
        members.add(name)
        for tensor in g.nodes[name].input:
            source = g.nodes.get(node_name(tensor))
            if source is not None and (source.op == "Dequantize" or
                                       (g.is_float_sum(source) and len(g.readers_of(source.name)) == 1)):
                stack.append(source.name)
    return members


def _island_of(g: _Graph, sums: Dict[str, _Sum], names: Sequence[str]) -> Set[str]:
    members: Set[str] = set()
    for name in names:
        if name in sums:
            members |= _island_members(g, name)
    return members


def fuse_residual_adds(int8_graph, keep: Sequence[str]) -> Tuple[object, Dict[str, object], Dict[str, Tuple[str, float]]]:
    """INC's int8 graph with its fp32 residual adds fused into the convs before them.

    ``keep``: the signature's output node names (the dead island nodes are pruned).
    Returns (graph_def, report, shifted): ``shifted`` maps each 1x1 conv that now reads uint8
    codes of ``value + c`` to (the tensor it read before: an fp32 add or a Dequantize, whose
    values the calibration data gives, and ``c``), for the int16 overflow check.
    """
    from tensorflow.core.framework import types_pb2
    from tensorflow.python.framework import tensor_util

    from tftrt_toolkit.backends.graphdef import copy, without_dead_nodes

    graph = copy(int8_graph)
    g = _Graph(graph)
    sums = _checked(g, _find_sums(g))
    report: Dict[str, object] = {"residual_adds_fused": len(sums), "fp32_adds_of_int8_values_left": _fp32_adds(graph)}
    shifted: Dict[str, Tuple[str, float]] = {}
    if not sums:
        return graph, report, shifted

    def new_const(name: str, value: np.ndarray, host: bool = False) -> str:
        node = graph.node.add()
        node.name = name
        node.op = "HostConst" if host else "Const"
        node.attr["dtype"].type = types_pb2.DT_FLOAT
        node.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(np.asarray(value, np.float32)))
        g.nodes[name] = node
        return name

    def set_bias(conv, delta: np.ndarray) -> None:
        bias = g.const(conv.input[2]).astype(np.float64)
        conv.input[2] = new_const(conv.name + "/residual_shifted_bias", (bias + delta).astype(np.float32))

    def shift_readers(source_tensor: str, value_tensor: str, c: float, producer: str) -> None:
        """The 1x1 convs reading ``source_tensor`` now read ``producer``'s uint8 codes of value + c."""
        for reader in sorted(set(g.readers_of(node_name(source_tensor)))):
            node = g.nodes[reader]
            if node.op not in READER_CONVS or node_name(node.input[0]) != node_name(source_tensor):
                continue
            filter_codes = g.const(node.input[1]).view(np.int8).astype(np.float64)
            ranges = np.maximum(np.abs(g.const(node.input[5])), np.abs(g.const(node.input[6]))).astype(np.float64)
            weights = filter_codes * (ranges / 127.0)
            set_bias(node, -c * weights.sum(axis=(0, 1, 2)))
            node.input[0], node.input[3], node.input[4] = producer, producer + ":1", producer + ":2"
            node.attr["Tinput"].type = types_pb2.DT_QUINT8
            shifted[reader] = (value_tensor, c)

    skip_ranges: Dict[str, float] = {}
    for s in sums.values():
        if not s.skip_is_sum:
            conv = g.nodes[s.skip]
            skip_ranges[s.skip] = _symmetric_range(g, conv.input[7], conv.input[8])
    # Projection convs whose output is a skip: ReLU over value + R, uint8 over [0, 2R].
    for conv_name, r in skip_ranges.items():
        conv = g.nodes[conv_name]
        dequantize = next(x for x in g.readers_of(conv_name) if g.nodes[x].op == "Dequantize")
        shift_readers(conv_name, dequantize, r, conv_name)
        set_bias(conv, np.full(g.const(conv.input[2]).shape, r))
        conv.input[7] = new_const(conv_name + SHIFTED_MIN_SUFFIX, 0.0, host=True)
        conv.input[8] = new_const(conv_name + "/residual_shifted_max", 2 * r, host=True)
        conv.op = RELU_CONV
        conv.attr["out_type"].type = types_pb2.DT_QUINT8
    for s in sums.values():
        conv = g.nodes[s.conv]
        skip_c = sums[s.skip].range if s.skip_is_sum else skip_ranges[s.skip]
        skip_producer = sums[s.skip].conv if s.skip_is_sum else s.skip
        shift_readers(s.quantize, s.name, s.range, s.conv)
        set_bias(conv, s.offset + s.range - skip_c)
        conv.input[7] = new_const(s.conv + SHIFTED_MIN_SUFFIX, 0.0, host=True)
        conv.input[8] = new_const(s.conv + "/residual_shifted_max", 2 * s.range, host=True)
        del conv.input[9:]
        conv.input.extend([skip_producer, skip_producer + ":1", skip_producer + ":2"])
        conv.op = SUM_CONV
        conv.attr["out_type"].type = types_pb2.DT_QUINT8
        conv.attr["Tsummand"].type = types_pb2.DT_QUINT8
        for attr in list(conv.attr):
            if attr not in _CONV_ATTRS + ("out_type", "Tsummand"):
                del conv.attr[attr]
    # The islands (Dequantize, fp32 adds, QuantizeV2) have no readers left.
    graph = without_dead_nodes(graph, keep)
    check_in_place_sums(graph)
    report["fp32_adds_of_int8_values_left"] = _fp32_adds(graph)
    return graph, report, shifted


def _fp32_adds(graph_def) -> int:
    """fp32 adds reading a Dequantize: the residual adds still computed in an fp32 island."""
    g = _Graph(graph_def)
    return sum(1 for n in graph_def.node if g.is_float_sum(n)
               and any(node_name(t) in g.nodes and g.nodes[node_name(t)].op == "Dequantize" for t in n.input))


def check_in_place_sums(graph_def) -> None:
    """Every fused sum's summand is read by nothing that can run after it (it is written in place)."""
    from tftrt_toolkit.errors import ConversionError

    g = _Graph(graph_def)
    for node in graph_def.node:
        if "Sum" not in node.op or len(node.input) < 10:
            continue
        summand = node_name(node.input[9])
        before = g.ancestors(node.name)
        late = [r for r in set(g.readers_of(summand)) if r != node.name and r not in before]
        if late:
            raise ConversionError(f"int8 residual fusion: {node.name}'s summand {summand} is also read by {late}, "
                                  "which could run after the in-place sum; rerun with --int8_fuse_residual_adds=false "
                                  "and report this model.")


def shifted_outputs(graph_def) -> Set[str]:
    """The convs whose uint8 output holds ``value + c``, not the value (a Dequantize of it reads the shifted value)."""
    return {node.name for node in graph_def.node
            if node.op.startswith("QuantizedConv2D") and len(node.input) > 7 and node.input[7].endswith(SHIFTED_MIN_SUFFIX)}
