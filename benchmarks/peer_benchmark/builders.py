"""Which builder makes each row, and where it runs: here, or in the oneDNN-on worker process."""

from __future__ import annotations

from .building import Context
from .onnxruntime_rows import build_onnxruntime
from .openvino_rows import build_openvino
from .rows import ONEDNN_SWITCH, OWN_THREADS_ROWS, RUNTIMES, Skipped
from .tf_rows import build_tf, build_toolkit
from .tflite_rows import build_tflite


BUILDERS = {
    "tf": build_tf, "tf_onednn": build_tf,
    "cpu_fp32": build_toolkit, "cpu_bf16": build_toolkit, "cpu_int8": build_toolkit, "cpu_fp32_branches": build_toolkit,
    "cpu_bf16_branches": build_toolkit,
    "onnxruntime": build_onnxruntime, "onnxruntime_int8": build_onnxruntime,
    "openvino_f32": build_openvino, "openvino_bf16": build_openvino, "openvino_int8": build_openvino,
    "tflite_fp32": build_tflite, "tflite_int8": build_tflite, "tflite_full_int8": build_tflite,
}


def build_row(context: Context, key: str):
    """(runner, facts) for row ``key``: built here, or in the oneDNN-on worker when it needs oneDNN off here."""
    if key in OWN_THREADS_ROWS and not context.in_worker:
        return context.threads_worker(key).build(key)
    if RUNTIMES[key].onednn_on and not context.onednn_here:
        if context.worker is None:
            raise Skipped("needs TF's oneDNN ops on, which are off in this process, and no worker process was started")
        return context.worker.build(key)
    if key == "tf_onednn":
        raise Skipped("plain TF already runs with oneDNN on in this process (TF's default on this CPU, or "
                      f"{ONEDNN_SWITCH}=1 was set): the plain TF row is this row")
    return BUILDERS[key](context, key)
