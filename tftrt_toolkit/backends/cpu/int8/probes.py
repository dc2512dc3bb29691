"""Run an fp32 or int8 graph on calibration samples and read its int8 tensors (for the steps after INC).

Fetching an int8 kernel's raw outputs crashes the oneDNN layout pass (segfault in TF 2.17);
a ``Dequantize`` reading them, added for the probe only, is the form it supports.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np

# Calibration samples the overflow check and the bias correction run the graph on, a batch at a
# time (the activations of every layer they look at are held for one batch).
STATISTICS_SAMPLES = 64
STATISTICS_BATCH = 8
# The attr naming the quantized type a node emits: requantizing convolutions say out_type, the
# quantized MatMuls Toutput (a Dense + ReLU head, e.g. VGG16's fc1) or Tout, QuantizeV2 and pooling T.
_OUTPUT_TYPE_ATTRS = ("out_type", "Toutput", "Tout", "T")


def statistics_samples(batches: Sequence[tuple]) -> np.ndarray:
    """The first STATISTICS_SAMPLES calibration samples (of the first input), as one array."""
    return np.concatenate([batch[0] for batch in batches])[:STATISTICS_SAMPLES]


def output_type(node) -> Optional[int]:
    # Read attrs only where present: indexing a protobuf map inserts an empty value.
    return next((node.attr[name].type for name in _OUTPUT_TYPE_ATTRS if name in node.attr), None)


def with_dequantize_taps(int8_graph, taps: Dict[str, str]):
    """A copy of ``int8_graph`` with a Dequantize named ``taps[source]`` reading each int8 tensor ``source``.

    Fetching an int8 kernel's raw outputs directly crashes the oneDNN layout pass (segfault
    in TF 2.17); a Dequantize consumer is the form it supports.
    """
    from tensorflow.core.framework import types_pb2

    graph = type(int8_graph)()
    graph.CopyFrom(int8_graph)
    out_types = {node.name: output_type(node) for node in graph.node}
    for source, tap in taps.items():
        node = graph.node.add()
        node.name = tap
        node.op = "Dequantize"
        node.input.extend([source, source + ":1", source + ":2"])
        node.attr["T"].type = out_types[source]
        node.attr["mode"].s = b"SCALED"
        node.attr["dtype"].type = types_pb2.DT_FLOAT
    return graph


def run(graph_def, input_name: str, fetches: Sequence[str], inputs: np.ndarray) -> List[np.ndarray]:
    return runner(graph_def, input_name, fetches)(inputs)


def runner(graph_def, input_name: str, fetches: Sequence[str]):
    """A callable running ``graph_def`` on a batch; build it once per graph (importing costs seconds)."""
    import tensorflow as tf
    from tensorflow.python.eager import wrap_function

    function = wrap_function.function_from_graph_def(graph_def, [input_name + ":0"], list(fetches))
    return lambda inputs: [value.numpy() for value in function(tf.constant(inputs))]
