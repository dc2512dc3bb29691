"""The check after quantizing: int8 against fp32 on held-out calibration samples.

Output error, top-1 agreement and the layers whose outputs drifted most, for the summary.
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np

from tftrt_toolkit.backends.cpu.int8.probes import output_type, run, with_dequantize_taps
from tftrt_toolkit.backends.cpu.int8.residual_sums import shifted_outputs
from tftrt_toolkit.backends.graphdef import consumers, nodes_by_name, node_name

# Calibration samples int8 and fp32 are compared on (the summary's error and drift figures).
CHECK_SAMPLES = 8
WORST_LAYERS_REPORTED = 5
TAP_SUFFIX = "/check_dequantize"


def check_batch(batches: Sequence[tuple]) -> np.ndarray:
    """Up to CHECK_SAMPLES samples, taken from the last batches (the same data calibration saw)."""
    arrays = [b[0] for b in reversed(batches)]
    stacked = np.concatenate(arrays[: max(1, -(-CHECK_SAMPLES // arrays[0].shape[0]))])
    return stacked[:CHECK_SAMPLES]


def compare_with_fp32(fp32_graph, int8_graph, input_name: str, output_names: Sequence[str],
                      inputs: np.ndarray) -> Dict[str, object]:
    """Run both graphs on ``inputs``: output error, top-1 agreement and the layers that drifted most.

    A layer's error is ``|int8 - fp32| / |fp32|`` (L2 norms) of its output, read through a
    Dequantize added for the check only; it includes what earlier layers contributed.
    """
    taps = _layer_taps(fp32_graph, int8_graph)
    probe_graph = with_dequantize_taps(int8_graph, {tap[: -len(TAP_SUFFIX)]: tap for _, tap, _ in taps})
    fp32_fetches = [name + ":0" for name in output_names] + [fp32 + ":0" for fp32, _, _ in taps]
    int8_fetches = [name + ":0" for name in output_names] + [tap + ":0" for _, tap, _ in taps]
    fp32_values = run(fp32_graph, input_name, fp32_fetches, inputs)
    int8_values = run(probe_graph, input_name, int8_fetches, inputs)
    outputs = len(output_names)
    reference, result = fp32_values[0], int8_values[0]
    agreement = None
    if reference.ndim == 2 and reference.shape[1] > 1:
        agreement = float(np.mean(reference.argmax(1) == result.argmax(1)))
    layers = []
    for (fp32_name, _, op), expected, actual in zip(taps, fp32_values[outputs:], int8_values[outputs:]):
        layers.append({"layer": fp32_name, "op": op, "relative_error": round(_relative_error(expected, actual), 5)})
    layers.sort(key=lambda item: -item["relative_error"])
    return {
        "check_samples": int(inputs.shape[0]),
        "output_relative_error": round(_relative_error(reference, result), 5),
        "output_max_abs_error": float(np.max(np.abs(reference - result))),
        "top1_agreement": agreement,
        "worst_layers": layers[:WORST_LAYERS_REPORTED],
    }


def _relative_error(expected: np.ndarray, actual: np.ndarray) -> float:
    expected = expected.astype(np.float64)
    return float(np.linalg.norm(actual - expected) / max(np.linalg.norm(expected), 1e-12))


def _layer_taps(fp32_graph, int8_graph) -> List[Tuple[str, str, str]]:
    """(fp32 tensor node, tap node to add, int8 op) for each int8 layer with a requantized (int8) output."""
    fp32_nodes = nodes_by_name(fp32_graph)
    readers = {name: [fp32_nodes[reader] for reader in names] for name, names in consumers(fp32_graph).items()}
    taps = []
    suffix = "_eightbit_requantize"
    # A fused conv + sum writes its result into the summand's buffer (oneDNN in-place sum), so
    # a second reader of the summand - our Dequantize - sees it overwritten or crashes TF 2.17
    # (segfault). Those tensors are not tapped.
    summands = {node_name(tensor) for node in int8_graph.node if "Sum" in node.op for tensor in node.input}
    # The residual path's uint8 codes hold value + range (residual_sums): not comparable as they are.
    summands |= shifted_outputs(int8_graph)
    for node in int8_graph.node:
        if not node.name.endswith(suffix) or "Requantize" not in node.op or "Dequantize" in node.op:
            continue
        if node.name in summands or output_type(node) is None:
            continue
        fp32 = fp32_nodes.get(node.name[: -len(suffix)])
        if fp32 is None:
            continue
        # The int8 op fused conv + bias [+ sum] [+ relu]: compare with the end of that fp32 chain.
        fused = ("BiasAdd",) + (("AddV2", "AddN", "Add") if "Sum" in node.op else ()) + \
                (("Relu", "Relu6") if "Relu" in node.op else ())
        while len(readers.get(fp32.name, [])) == 1 and readers[fp32.name][0].op in fused:
            fp32 = readers[fp32.name][0]
        taps.append((fp32.name, node.name + TAP_SUFFIX, node.op))
    return taps
