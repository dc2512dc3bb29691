"""A servable function from a frozen signature's optimised graph, and saving it.

Mirrors trt_convert._construct_function_from_graph_def: the function runs the graph with the
original signature's input and output names, and its structure is copied from the original
(taken when it was frozen) so saving writes the same SignatureDef.
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from tftrt_toolkit.backends.cpu.savedmodel_stream import write_into_saved_model
from tftrt_toolkit.backends.frozen.freeze import FrozenSignature


def rebuild_function(frozen: FrozenSignature):
    """A ConcreteFunction running ``frozen.graph_def`` with the original signature's input and output names.

    Held weights become one-element stand-in constants of their shape (``save_function`` writes
    the real values).
    """
    from tensorflow.python.eager import wrap_function

    graph_def = frozen.held.with_stand_ins(frozen.graph_def) if len(frozen.held) else frozen.graph_def
    function = wrap_function.function_from_graph_def(
        graph_def, list(frozen.input_tensor_names), list(frozen.output_tensor_names))
    return frozen.structure.apply_to(function)


def rebuild_function_reading_variables(frozen: FrozenSignature,
                                       weights: Dict[str, np.ndarray]) -> Tuple[object, List[object]]:
    """Like ``rebuild_function``, but each weight in ``weights`` becomes a variable the function reads.

    For weights past protobuf's 2 GB, which cannot all be constants of one graph: the saved
    model keeps them in its checkpoint (variables/), as TF-TRT does when it does not freeze.
    ``frozen.graph_def`` has a Placeholder for each. Returns (function, variables).

    ``weights`` is handed over, not lent: each array leaves the dict as it moves into its
    variable, so the model's memory is not held twice (pass a dict nothing else reads, and a
    ``frozen`` that no longer holds them).
    """
    import tensorflow as tf
    from tensorflow.core.framework import types_pb2
    from tensorflow.python.eager import wrap_function

    from tftrt_toolkit.backends.graphdef import copy

    rebuilt = copy(frozen.graph_def)
    variables, captures = [], {}
    for node in list(rebuilt.node):
        if node.op != "Placeholder" or node.name not in weights:
            continue
        name, dtype = node.name, node.attr["dtype"].type
        value = weights.pop(name)
        variable = tf.Variable(value, trainable=False, name=name.replace("/", "_"))
        del value
        # The weight's Placeholder becomes a read of the variable, whose handle the function captures.
        handle = rebuilt.node.add()
        handle.name, handle.op = name + "/tftrt_variable", "Placeholder"
        handle.attr["dtype"].type = types_pb2.DT_RESOURCE
        node.Clear()
        node.name, node.op = name, "ReadVariableOp"
        node.input.append(handle.name)
        node.attr["dtype"].type = dtype
        variables.append(variable)
        captures[handle.name] = variable.handle
    function = wrap_function.function_from_graph_def(
        rebuilt, list(frozen.input_tensor_names), list(frozen.output_tensor_names), captures)
    return frozen.structure.apply_to(function), variables


def save_function(function, output_dir: str, signature_key: str, weights: Optional[Mapping[str, object]] = None,
                  variables: Sequence[object] = ()) -> None:
    """Save one function as a SavedModel signature, with nothing else tracked but ``variables``.

    With ``weights`` (node name → array or source-checkpoint slice), the function holds stand-ins for those weights and
    their values are streamed into the saved graph afterwards (savedmodel_stream). With
    ``variables`` (weights past 2 GB), the function reads them and they are saved in the checkpoint.
    """
    import tensorflow as tf

    root = tf.Module()
    if variables:
        root.weights = list(variables)
    tf.saved_model.save(root, output_dir, signatures={signature_key: function})
    if weights:
        write_into_saved_model(output_dir, weights)
