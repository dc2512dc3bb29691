"""What `tftrt doctor` prints: the machine's facts and the precisions the toolkit's commands can run, with fixes.

``environment`` reads the facts, ``backends.precisions`` decides what can run; this renders
them, as aligned text lines and as the JSON ``--json`` prints (field names scripts rely on:
``tensorrt_build``, ``tensorrt_linked``, ``tensorrt_loaded``, ``tensorrt_missing_libraries``,
``onednn_enabled``, ``onednn_default``, ``cpu_features``, ``precisions``).
"""

from __future__ import annotations

from typing import Dict, List, Tuple

from tftrt_toolkit.backends.precisions import offered_precisions, precision_offers
from tftrt_toolkit.environment import Environment


def doctor_json(env: Environment) -> Dict[str, object]:
    """The facts plus ``precisions``: the cpu precisions tftrt's commands can run here, in the order run tries them."""
    data = env.to_json()
    commands = env.as_in_tftrt_commands()
    data["precisions"] = list(offered_precisions(commands, "cpu"))
    data["precision_offers"] = [offer.to_json() for offer in precision_offers(commands)]
    data["recommended_precisions"] = list(offered_precisions(commands))
    return data


def _onednn_text(env: Environment) -> str:
    default = "on" if env.onednn_default else "off"
    state = "on" if env.onednn_enabled else "off"
    if env.onednn_set_by == "toolkit":
        return f"{state} in this process (tftrt turned it on; TF's default on this CPU is {default})"
    if env.onednn_set_by == "user":
        return f"{state} in this process (TF_ENABLE_ONEDNN_OPTS is set; TF's default on this CPU is {default})"
    hint = "" if env.onednn_enabled or not env.onednn_in_tftrt_commands else (
        "; tftrt's other commands turn it on for themselves (int8 models need it, fp32 runs faster with it)")
    return f"{state} (TF's default on this CPU){hint}"


def _tensorrt_rows(env: Environment) -> List[Tuple[str, str]]:
    if not env.tensorflow_built_with_tensorrt:
        return [("TensorRT", "TensorFlow here was built without TensorRT (TF-TRT needs a TensorRT build, TF <= 2.17)")]
    rows = [("TensorRT build", f"yes, linked against TensorRT {env.tensorrt_linked_version or '?'}")]
    if env.tensorrt_loaded_version:
        return rows + [("TensorRT loaded", env.tensorrt_loaded_version)]
    search = env.tensorrt_libraries
    rows.append(("TensorRT loaded", "no: " + (", ".join(search.missing) if search else "libnvinfer") + " not found"))
    if search:
        rows.append(("  looked in", ", ".join(search.searched) or "no folders exist"))
        rows.append(("  to fix", search.fix()))
    return rows


def doctor_lines(env: Environment) -> List[str]:
    """The doctor report as aligned 'key: value' lines, with the fix for each missing piece."""
    backend, why = env.recommended_backend()
    offers = precision_offers(env.as_in_tftrt_commands())
    rows = [
        ("tftrt_toolkit", env.toolkit_version),
        ("python", env.python_version),
        ("platform", env.platform),
        ("tensorflow", env.tensorflow_version),
        ("keras", env.keras_version or "not installed"),
        *_tensorrt_rows(env),
        ("GPUs", ", ".join(env.gpus) or "none"),
        ("CPU", f"{env.cpu_model or 'unknown'} ({env.cpu_count} cores)"),
        ("CPU features", " ".join(env.cpu_features) or "none detected"),
        ("oneDNN", _onednn_text(env)),
        ("recommended backend", f"{backend} — {why}"),
        ("cpu precisions (tftrt)", ", ".join(o.precision for o in offers if o.available) or "none"),
    ]
    rows += [(f"  {offer.precision}", ("yes: " if offer.available else "no: ") + offer.reason) for offer in offers]
    width = max(len(k) for k, _ in rows)
    return [f"{k.ljust(width)}  {v}" for k, v in rows]
