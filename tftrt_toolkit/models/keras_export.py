"""Export an in-memory Keras model as a SavedModel whose signature keeps the model's own names.

Keras 3's ``model.export`` names inputs after internal tensors (``keras_tensor``) and outputs
``output_0``; users' data and reports speak of the layer names (``images``, ``predictions``),
so we save a serving function with input specs and an output dict named after the model.
A plain ``tf.Module`` holds the model: Keras' ``ExportArchive.track`` stored every weight
twice (VGG16's checkpoint listed 276.7M parameters instead of 138M).
"""

from __future__ import annotations

import re
from typing import List


def _clean_name(name: str, fallback: str) -> str:
    # Signature keys must be valid op names; Keras tensor names can carry ':0' or '/'.
    name = re.sub(r"[^A-Za-z0-9_.\-]", "_", (name or "").split(":")[0])
    return name if name and name[0].isalpha() else fallback


def _unique(names: List[str]) -> List[str]:
    seen = {}
    result = []
    for name in names:
        count = seen.get(name, 0)
        seen[name] = count + 1
        result.append(name if count == 0 else f"{name}_{count}")
    return result


def _input_names(model) -> List[str]:
    # Keras 3 auto-names input tensors "keras_tensor_N"; the InputLayer's name ("input_layer",
    # or what the author passed to keras.Input(name=...)) is the one users know.
    names = []
    for i, tensor in enumerate(model.inputs):
        name = tensor.name
        if name.startswith("keras_tensor"):
            history = getattr(tensor, "_keras_history", None)
            layer = getattr(history, "operation", None) if history is not None else None
            name = getattr(layer, "name", None) or f"input_{i}"
        names.append(name)
    return names


def export_keras_model(model, output_dir: str, signature_key: str = "serving_default") -> None:
    """Write ``model`` to ``output_dir`` as a SavedModel with one signature named ``signature_key``.

    Inputs are named after the model's Input layers, outputs after its output layers.
    """
    import tensorflow as tf

    input_names = _unique([_clean_name(name, f"input_{i}") for i, name in enumerate(_input_names(model))])
    output_names = _unique([_clean_name(n, f"output_{i}") for i, n in enumerate(model.output_names)])
    specs = [tf.TensorSpec(shape=t.shape, dtype=t.dtype, name=n) for t, n in zip(model.inputs, input_names)]

    def serve(*args):
        outputs = model(list(args) if len(args) > 1 else args[0], training=False)
        if isinstance(outputs, dict):
            return {_clean_name(k, k): v for k, v in outputs.items()}
        outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        return dict(zip(output_names, outputs))

    holder = tf.Module()
    holder.model = model  # tracks the weights once, under the model's own structure
    holder.serve = tf.function(serve, input_signature=specs)
    tf.saved_model.save(holder, output_dir, signatures={signature_key: holder.serve.get_concrete_function()})
