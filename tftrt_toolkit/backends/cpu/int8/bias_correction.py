"""Bias correction: each int8 conv's bias absorbs the mean output shift its weight rounding causes."""

from __future__ import annotations

from typing import Dict, Sequence, Tuple

import numpy as np

from tftrt_toolkit.backends.cpu.int8.probes import STATISTICS_BATCH, runner, statistics_samples
from tftrt_toolkit.backends.graphdef import node_name, reader_counts


def correct_weight_rounding_bias(fp32_graph, int8_graph, input_name: str,
                                 batches: Sequence[tuple]) -> Tuple[object, Dict[str, object]]:
    """Subtract from each int8 conv's bias the mean output shift its weight rounding causes.

    Rounding weights to 8 bits shifts a conv's output by ``(W_int8 - W) . E[x]`` on average
    (E[x]: the mean of each input channel, over the calibration samples, in fp32); the bias
    takes it back (Nagel et al., "Data-Free Quantization", 2019: analytical bias correction).
    Only weights' own error is corrected, not what earlier layers pass on (correcting measured
    output shifts, which include those, over-corrected: -5.2 points on EfficientNet-Lite0).
    On EfficientNet-Lite0 it cut int8's KL divergence from fp32 on held-out calibration-split photos
    from 0.040 to 0.023 (after the int16 overflow guard).
    Borders where the kernel reads padding are treated like the interior.
    Returns (graph_def, what was corrected).
    """
    from tensorflow.core.framework import types_pb2
    from tensorflow.python.framework import tensor_util

    graph = type(int8_graph)()
    graph.CopyFrom(int8_graph)
    nodes = {node.name: node for node in graph.node}
    fp32_nodes = {node.name: node for node in fp32_graph.node}
    readers = reader_counts(graph)
    suffix = "_eightbit_requantize"
    layers = []
    for node in graph.node:
        if not (node.op.startswith(("QuantizedConv2DWithBias", "QuantizedDepthwiseConv2DWithBias"))
                and node.name.endswith(suffix) and len(node.input) >= 7):
            continue
        conv = fp32_nodes.get(node.name[: -len(suffix)])
        if conv is None or conv.op not in ("Conv2D", "DepthwiseConv2dNative"):
            continue
        fp32_filter = fp32_nodes.get(node_name(conv.input[1]))
        constants = [nodes.get(node_name(node.input[i])) for i in (1, 2, 5, 6)]
        if fp32_filter is None or "value" not in fp32_filter.attr or any(
                c is None or "value" not in c.attr for c in constants):
            continue
        bias = constants[1]
        if bias.attr["value"].tensor.dtype != types_pb2.DT_FLOAT:
            continue  # a pre-quantized (int32) bias cannot take a float correction
        if readers.get(bias.name) != 1:
            # Convs without a bias of their own share one of zeros (folds.add_missing_bias).
            own = graph.node.add()
            own.CopyFrom(bias)
            own.name = f"{node.name}/corrected_bias"
            node.input[2] = own.name
            constants[1] = own
        layers.append((conv, fp32_filter, *constants))
    report: Dict[str, object] = {"enabled": True, "layers_corrected": 0}
    if not layers:
        return graph, report

    fetches = [conv.input[0] if ":" in conv.input[0] else conv.input[0] + ":0" for conv, *_ in layers]
    samples = statistics_samples(batches)
    sums, rows = [0.0] * len(layers), [0] * len(layers)
    run = runner(fp32_graph, input_name, fetches)
    for start in range(0, len(samples), STATISTICS_BATCH):
        outputs = run(samples[start:start + STATISTICS_BATCH])
        for index, value in enumerate(outputs):
            flat = value.astype(np.float64).reshape(-1, value.shape[-1])
            sums[index] = sums[index] + flat.sum(axis=0)
            rows[index] += flat.shape[0]
    largest_shift = 0.0
    for index, (conv, fp32_filter, quantized, bias, low, high) in enumerate(layers):
        weights = tensor_util.MakeNdarray(fp32_filter.attr["value"].tensor).astype(np.float64)
        codes = tensor_util.MakeNdarray(quantized.attr["value"].tensor).view(np.int8).astype(np.float64)
        ranges = np.maximum(np.abs(tensor_util.MakeNdarray(low.attr["value"].tensor)),
                            np.abs(tensor_util.MakeNdarray(high.attr["value"].tensor))).astype(np.float64)
        if codes.shape != weights.shape:
            continue
        means = sums[index] / max(rows[index], 1)
        if conv.op == "DepthwiseConv2dNative":
            scales = ranges.reshape(weights.shape[2], weights.shape[3]) / 127.0 if ranges.ndim else ranges / 127.0
            shift = np.einsum("hwim,i->im", codes * scales - weights, means).reshape(-1)
        else:
            shift = np.einsum("hwio,i->o", codes * (ranges / 127.0) - weights, means)
        values = tensor_util.MakeNdarray(bias.attr["value"].tensor).astype(np.float64)
        if values.shape != shift.shape:
            continue
        bias.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto((values - shift).astype(np.float32)))
        report["layers_corrected"] += 1
        largest_shift = max(largest_shift, float(np.max(np.abs(shift))))
    report["largest_shift"] = round(largest_shift, 6)
    report["samples"] = int(len(samples))
    return graph, report
