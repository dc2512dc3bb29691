"""Protobuf's 2 GB: the one check of whether a model's weights fit in one graph, for both backends.

A SavedModel whose weights are graph constants is one protobuf message, and protobuf cannot
parse a message past 2 GiB. The cpu backend keeps larger weights as variables (fp32, bf16)
and refuses int8; TF-TRT freezes every weight into one graph unless told not to.
"""

from __future__ import annotations

import os

# protobuf cannot parse a message past 2 GiB, and a SavedModel with graph constants is one message.
PROTOBUF_LIMIT_BYTES = 2 ** 31 - 1
# Room left for everything else in saved_model.pb (the graph itself, the object graph, metadata).
GRAPH_CONSTANTS_BUDGET_BYTES = PROTOBUF_LIMIT_BYTES - 64 * 1024 * 1024


def fit_in_one_graph(weight_bytes: int) -> bool:
    """Whether ``weight_bytes`` of weights can all be constants of one saved graph."""
    return weight_bytes <= GRAPH_CONSTANTS_BUDGET_BYTES


def saved_weight_bytes(saved_model_dir: str) -> int:
    """Bytes of the variables stored with a SavedModel, read from its checkpoint index (no values loaded)."""
    import numpy as np
    import tensorflow as tf

    prefix = os.path.join(saved_model_dir, "variables", "variables")
    if not os.path.exists(prefix + ".index"):
        return 0
    try:
        reader = tf.train.load_checkpoint(prefix)
    except Exception:  # noqa: BLE001  (an unreadable checkpoint is reported, in one line, by loading it)
        return 0
    dtypes = reader.get_variable_to_dtype_map()
    total = 0
    for name, shape in reader.get_variable_to_shape_map().items():
        dtype = dtypes.get(name)
        if dtype is None or dtype == tf.string or name.startswith("_CHECKPOINTABLE_OBJECT_GRAPH"):
            continue
        total += int(np.prod(shape, dtype=np.int64)) * dtype.size
    return total
