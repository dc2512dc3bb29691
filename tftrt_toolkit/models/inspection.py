"""What a model is, read without running it: signatures, shapes, parameter count, op histogram."""

from __future__ import annotations

import collections
import os
from typing import Dict

from tftrt_toolkit.data.shapes import format_shape
from tftrt_toolkit.models.loader import LoadedModel

# Wrapper ops Keras/TF put around the real work; counting them hides the model's make-up.
_PLUMBING_OPS = {"StatefulPartitionedCall", "PartitionedCall", "Identity", "IdentityN", "NoOp",
                 "Placeholder", "_Arg", "_Retval", "ReadVariableOp", "VarHandleOp", "Const",
                 "RestoreV2", "SaveV2", "MergeV2Checkpoints", "StringJoin", "ShardedFilename",
                 "StaticRegexFullMatch", "Select", "AssignVariableOp", "Pack"}


def _saved_graph_op_histogram(saved_model_dir: str) -> Dict[str, int]:
    from tensorflow.python.saved_model import loader_impl

    saved_model = loader_impl.parse_saved_model(saved_model_dir)
    counts = collections.Counter()
    for meta_graph in saved_model.meta_graphs:
        graph_def = meta_graph.graph_def
        counts.update(n.op for n in graph_def.node)
        for function in graph_def.library.function:
            if "saver" in function.signature.name.lower() or "restore" in function.signature.name.lower():
                continue  # checkpoint plumbing, not the model
            counts.update(n.op for n in function.node_def)
    return {op: n for op, n in counts.most_common() if op not in _PLUMBING_OPS}


def parameter_count(saved_model_dir: str) -> Dict[str, int]:
    """Elements held in variables (trainable or not) and in large graph constants (frozen models)."""
    import numpy as np
    import tensorflow as tf

    variables = 0
    prefix = os.path.join(saved_model_dir, "variables", "variables")
    if os.path.exists(prefix + ".index"):
        for name, shape in tf.train.list_variables(prefix):
            if "OPTIMIZER" in name or name.startswith("_CHECKPOINTABLE") or name == "save_counter/.ATTRIBUTES/VARIABLE_VALUE":
                continue
            variables += int(np.prod(shape)) if shape else 1
    return {"variables": variables}


def describe(model: LoadedModel) -> dict:
    """A JSON-ready description of a loaded model."""
    from tftrt_toolkit.models.loader import read_signatures

    signatures = read_signatures(model.saved_model_dir)
    info = {
        "model": model.spec.to_json(),
        "saved_model_dir": model.saved_model_dir if not model.is_temporary_export else "(temporary export)",
        "selected_signature": model.signature.key,
        "signatures": {key: sig.to_json() for key, sig in sorted(signatures.items())},
        "parameters": parameter_count(model.saved_model_dir),
        "op_histogram": _saved_graph_op_histogram(model.saved_model_dir),
        "model_info": {k: v for k, v in model.model_info.items() if k != "tftrt_toolkit"},
    }
    if model.toolkit_metadata:
        meta = model.toolkit_metadata
        info["converted_by_tftrt_toolkit"] = {k: meta.get(k) for k in ("backend", "precision", "toolkit_version",
                                                                       "tensorflow_version", "created_at")}
        info["runtime"] = meta.get("runtime")
        info["precision_coverage"] = (meta.get("conversion_summary") or {}).get("precision_coverage")
    return info


def describe_lines(info: dict) -> list:
    lines = [f"model: {info['model']['text']} ({info['model']['kind']})"]
    converted = info.get("converted_by_tftrt_toolkit")
    if converted:
        lines.append(f"converted by tftrt_toolkit {converted['toolkit_version']}: backend={converted['backend']} "
                     f"precision={converted['precision']} on {converted['created_at']}")
        runtime = info.get("runtime") or {}
        if runtime.get("requires_onednn"):
            lines.append(f"runtime: needs TensorFlow's oneDNN ops ({runtime.get('why')}); they are on by default only on "
                         "CPUs with AVX512-VNNI/BF16, AVX-VNNI or AMX: elsewhere serve it with TF_ENABLE_ONEDNN_OPTS=1 "
                         "set before TensorFlow starts (tftrt commands set it themselves)")
        elif runtime:
            lines.append("runtime: plain TensorFlow, oneDNN on or off")
    for key, sig in info["signatures"].items():
        marker = " (selected)" if key == info["selected_signature"] else ""
        lines.append(f"signature {key!r}{marker}:")
        for direction in ("inputs", "outputs"):
            for tensor in sig[direction]:
                shape = format_shape(tensor["shape"])
                lines.append(f"  {direction[:-1]:6} {tensor['name']}: {tensor['dtype']} [{shape}]")
    params = info["parameters"]["variables"]
    lines.append(f"parameters: {params:,}" + ("" if params else " (none in variables: weights are graph constants)"))
    ops = info["op_histogram"]
    lines.append(f"ops ({sum(ops.values())} nodes, {len(ops)} types): " +
                 ", ".join(f"{op}×{n}" for op, n in list(ops.items())[:15]) + (" …" if len(ops) > 15 else ""))
    return lines
