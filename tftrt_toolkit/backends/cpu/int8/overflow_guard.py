"""The int16 overflow guard: 7-bit weights where 8-bit ones overflow int16 on CPUs without VNNI.

CPUs without VNNI (AVX2, AVX-512 before Cascade Lake) multiply u8 activations by s8 weights with
vpmaddubsw, which adds the products of two neighbouring input channels in int16 and saturates.
oneDNN halves the weights itself for signed inputs (7-bit), not for unsigned ones (after a ReLU).
"""

from __future__ import annotations

from typing import Dict, Sequence, Tuple

import numpy as np

from tftrt_toolkit.backends.cpu.int8.probes import (
    STATISTICS_BATCH,
    output_type,
    runner,
    statistics_samples,
    with_dequantize_taps,
)
from tftrt_toolkit.backends.graphdef import node_name, reader_counts

INT16_MAX = 32767
# Pair products checked at once (int32 elements), to bound the check's memory.
OVERFLOW_CHECK_CHUNK = 4_000_000


def narrow_overflowing_weights(int8_graph, input_name: str, batches: Sequence[tuple]) -> Tuple[object, Dict[str, object]]:
    """7-bit weights in the output channels whose u8 x s8 pair sums overflow int16 on ``batches``.

    Without VNNI, oneDNN's int8 convolution adds the products of input channels 2k and 2k+1 in
    int16 (vpmaddubsw), which saturates above 32767: with unsigned 8-bit activations up to 255
    and weights up to 127 a pair can reach 64770. The calibration data says which output
    channels get there; only those lose a bit (weights halved, their filter range doubled, so
    the product stays the same number). On EfficientNet-Lite0 that is 365 of 1,808 projection
    channels, and int8's disagreement with fp32 fell by a third. Kernels with VNNI (and the
    depthwise kernels) add in int32: there the 7-bit channels cost a little precision, nothing else.
    Returns (graph_def, what was checked and narrowed).
    """
    from tensorflow.core.framework import types_pb2
    from tensorflow.python.framework import tensor_util

    graph = type(int8_graph)()
    graph.CopyFrom(int8_graph)
    nodes = {node.name: node for node in graph.node}
    readers = reader_counts(graph)
    # A fused conv + sum adds into its summand's buffer in place: a second reader would see that.
    summands = {node_name(node.input[9]) for node in graph.node if "Sum" in node.op and len(node.input) > 9}
    checked, unchecked = [], 0
    for node in graph.node:
        # QuantizedConv2DWithBias*: input, filter, bias, min/max input, min/max filter (5, 6), ...
        if not node.op.startswith("QuantizedConv2DWithBias") or len(node.input) < 7:
            continue
        source = nodes.get(node_name(node.input[0]))
        if source is None or output_type(source) != types_pb2.DT_QUINT8:
            continue
        weights, low, high = (nodes.get(node_name(node.input[i])) for i in (1, 5, 6))
        measurable = source.name not in summands and ":" not in node.input[0]
        own_constants = all(n is not None and "value" in n.attr and readers.get(n.name) == 1 for n in (weights, low, high))
        if measurable and own_constants:
            checked.append((source.name, weights, low, high))
        else:
            unchecked += 1
    report: Dict[str, object] = {"enabled": True, "layers_checked": len(checked), "layers_not_checked": unchecked,
                                 "layers_narrowed": 0, "channels_narrowed": 0}
    if not checked:
        return graph, report

    filters = [tensor_util.MakeNdarray(w.attr["value"].tensor).view(np.int8).astype(np.int32) for _, w, _, _ in checked]
    taps = {source: source + "/overflow_check_dequantize" for source, _, _, _ in checked}
    probe = with_dequantize_taps(graph, taps)
    fetches = [taps[source] + ":0" for source, _, _, _ in checked] + [source + ":2" for source, _, _, _ in checked]
    samples = statistics_samples(batches)
    overflowing = [np.zeros(f.shape[-1], dtype=bool) for f in filters]
    run = runner(probe, input_name, fetches)
    for start in range(0, len(samples), STATISTICS_BATCH):
        outputs = run(samples[start:start + STATISTICS_BATCH])
        for index in range(len(checked)):
            activations, top = outputs[index], float(np.max(outputs[len(checked) + index]))
            codes = np.round(activations.reshape(-1, activations.shape[-1]) * (255.0 / max(top, 1e-12)))
            overflowing[index] |= pair_sums_overflow(codes.astype(np.int32), filters[index])

    for (_, weights, low, high), quantized, over in zip(checked, filters, overflowing):
        if over.any():
            _narrow(weights, low, high, quantized, over)
            report["layers_narrowed"] += 1
            report["channels_narrowed"] += int(over.sum())
    report["channels_checked"] = int(sum(f.shape[-1] for f in filters))
    report["samples"] = int(len(samples))
    return graph, report


def narrow_for_shifted_inputs(before, graph, input_name: str, batches: Sequence[tuple],
                              shifted: Dict[str, Tuple[str, float]]) -> Tuple[object, Dict[str, object]]:
    """The guard for the 1x1 convs ``residual_sums`` made read uint8 codes of ``value + c`` (they read int8 before).

    ``before``: the graph before that rewrite, where each such conv's input values are an fp32
    tensor (``shifted[conv] = (that tensor, c)``): fetching it is safe, tapping the uint8 codes
    (a fused sum's summand) is not. The codes are ``round((value + c) * 255 / 2c)``. A narrowed
    conv's bias takes back the change of ``c * sum(W)`` its halved weights make.
    """
    from tensorflow.python.framework import tensor_util

    result = type(graph)()
    result.CopyFrom(graph)
    nodes = {node.name: node for node in result.node}
    readers = reader_counts(result)
    checked, unchecked = [], 0
    for conv_name, (value_tensor, c) in sorted(shifted.items()):
        conv = nodes.get(conv_name)
        constants = [nodes.get(node_name(conv.input[i])) for i in (1, 2, 5, 6)] if conv is not None else [None]
        if any(n is None or "value" not in n.attr or readers.get(n.name) != 1 for n in constants):
            unchecked += 1
            continue
        checked.append((conv, value_tensor, c, *constants))
    report: Dict[str, object] = {"layers_checked": len(checked), "layers_not_checked": unchecked,
                                 "layers_narrowed": 0, "channels_narrowed": 0}
    if not checked:
        return result, report

    filters = [tensor_util.MakeNdarray(w.attr["value"].tensor).view(np.int8).astype(np.int32)
               for _, _, _, w, _, _, _ in checked]
    fetches = [value if ":" in value else value + ":0" for _, value, _, _, _, _, _ in checked]
    overflowing = [np.zeros(f.shape[-1], dtype=bool) for f in filters]
    samples = statistics_samples(batches)
    run = runner(before, input_name, fetches)
    for start in range(0, len(samples), STATISTICS_BATCH):
        outputs = run(samples[start:start + STATISTICS_BATCH])
        for index, (_, _, c, _, _, _, _) in enumerate(checked):
            values = outputs[index].reshape(-1, outputs[index].shape[-1]).astype(np.float64)
            codes = np.clip(np.round((values + c) * (127.5 / c)), 0, 255).astype(np.int32)
            overflowing[index] |= pair_sums_overflow(codes, filters[index])

    for (conv, _, c, weights, bias, low, high), quantized, over in zip(checked, filters, overflowing):
        if not over.any():
            continue
        before_sum = _real_weight_sums(quantized, low, high)
        _narrow(weights, low, high, quantized, over)
        change = before_sum - _real_weight_sums(quantized, low, high)
        values = tensor_util.MakeNdarray(bias.attr["value"].tensor).astype(np.float64)
        bias.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto((values + c * change).astype(np.float32)))
        report["layers_narrowed"] += 1
        report["channels_narrowed"] += int(over.sum())
    report["channels_checked"] = int(sum(f.shape[-1] for f in filters))
    return result, report


def _real_weight_sums(quantized: np.ndarray, low, high) -> np.ndarray:
    """Per output channel, the sum of a conv's dequantized weights (int8 codes x range / 127)."""
    from tensorflow.python.framework import tensor_util

    ranges = np.maximum(np.abs(tensor_util.MakeNdarray(low.attr["value"].tensor)),
                        np.abs(tensor_util.MakeNdarray(high.attr["value"].tensor))).astype(np.float64)
    return quantized.astype(np.float64).sum(axis=(0, 1, 2)) * ranges / 127.0


def pair_sums_overflow(codes: np.ndarray, filter_codes: np.ndarray) -> np.ndarray:
    """Per output channel: does ``a[2k]*w[2k] + a[2k+1]*w[2k+1]`` leave int16 for some row and tap?

    ``codes``: (rows, in channels) unsigned 8-bit activation codes; ``filter_codes``: (kh, kw,
    in channels, out channels) int8 codes. Every row meets every kernel tap: a superset of the
    pairs the convolution forms, so no overflow is missed.
    """
    taps = filter_codes.reshape(-1, filter_codes.shape[-2], filter_codes.shape[-1])  # (taps, in, out)
    over = np.zeros(taps.shape[2], dtype=bool)
    # A pair can only overflow where its two activations add up to more than INT16_MAX / max|w|.
    threshold = INT16_MAX // max(1, int(np.abs(filter_codes).max()))
    chunk = max(1, OVERFLOW_CHECK_CHUNK // (taps.shape[0] * taps.shape[2]))
    for k in range(0, taps.shape[1] - 1, 2):
        first, second = codes[:, k], codes[:, k + 1]
        rows = np.nonzero(first + second > threshold)[0]
        for start in range(0, rows.size, chunk):
            picked = rows[start:start + chunk]
            sums = first[picked, None, None] * taps[None, :, k, :] + second[picked, None, None] * taps[None, :, k + 1, :]
            over |= (np.abs(sums) > INT16_MAX).any(axis=(0, 1))
    return over


def _narrow(weights, low, high, quantized: np.ndarray, over: np.ndarray) -> None:
    """Halve the int8 weights of the ``over`` output channels and double their filter range, in place."""
    from tensorflow.core.framework import types_pb2
    from tensorflow.python.framework import tensor_util

    ranges = [tensor_util.MakeNdarray(n.attr["value"].tensor).astype(np.float32) for n in (low, high)]
    if ranges[0].ndim == 0:
        over[:] = True  # one range for the whole filter: all channels or none
    quantized[..., over] = np.round(quantized[..., over] / 2.0)
    weights.attr["value"].tensor.CopyFrom(
        tensor_util.make_tensor_proto(quantized.astype(np.int8), dtype=types_pb2.DT_QINT8))
    for range_node, value in zip((low, high), ranges):
        value = np.where(over, value * 2, value) if value.ndim else value * 2
        range_node.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(value.astype(np.float32)))
