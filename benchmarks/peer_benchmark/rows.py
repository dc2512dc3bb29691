"""The table's rows: what each runtime is called, whose it is, which packages it needs, how it must run.

The one list every other module reads (flags check ``--runtimes`` against it, the run builds its
rows in its order, the outputs print its labels).
"""

from typing import Callable, List, NamedTuple, Optional, Tuple

import numpy as np


class Runtime(NamedTuple):
    """One row of the table: what it is called, whose it is, and how it must run."""

    label: str
    family: str  # "reference", "tftrt_toolkit" or "peer"
    stays_tf_saved_model: bool
    packages: Tuple[str, ...]  # needed besides TensorFlow
    # Runs TF kernels with TF's oneDNN ops on (in a worker process where they are off here).
    # ONNX Runtime, OpenVINO and TFLite have their own kernels: the switch does not apply to them.
    onednn_on: Optional[bool]


RUNTIMES = {
    "tf": Runtime("plain TF (tf.saved_model.load)", "reference", True, (), False),
    "tf_onednn": Runtime("plain TF, oneDNN on", "reference", True, (), True),
    "cpu_fp32": Runtime("tftrt_toolkit cpu fp32", "tftrt_toolkit", True, (), True),
    "cpu_bf16": Runtime("tftrt_toolkit cpu bf16", "tftrt_toolkit", True, (), True),
    "cpu_int8": Runtime("tftrt_toolkit cpu int8", "tftrt_toolkit", True, (), True),
    "cpu_fp32_branches": Runtime("tftrt_toolkit cpu fp32, 2 token branches", "tftrt_toolkit", True, (), True),
    "cpu_bf16_branches": Runtime("tftrt_toolkit cpu bf16, 2 token branches", "tftrt_toolkit", True, (), True),
    "onnxruntime": Runtime("ONNX Runtime fp32 (tf2onnx)", "peer", False, ("tf2onnx", "onnxruntime"), None),
    "onnxruntime_int8": Runtime("ONNX Runtime int8 (static, QDQ)", "peer", False, ("tf2onnx", "onnxruntime"), None),
    "openvino_f32": Runtime("OpenVINO f32", "peer", False, ("openvino",), None),
    "openvino_bf16": Runtime("OpenVINO bf16", "peer", False, ("openvino",), None),
    "openvino_int8": Runtime("OpenVINO int8 (NNCF PTQ)", "peer", False, ("openvino", "nncf"), None),
    "tflite_fp32": Runtime("TFLite XNNPACK fp32", "peer", False, (), None),
    "tflite_int8": Runtime("TFLite dynamic-range int8", "peer", False, (), None),
    "tflite_full_int8": Runtime("TFLite full-integer int8", "peer", False, (), None),
}
# Rows served at the threads their conversion records (runtime.serving_threads), not this run's:
# they run in a worker process started with those threads. {key: (intra-op, inter-op threads)}.
OWN_THREADS_ROWS = {"cpu_fp32_branches": (1, 2), "cpu_bf16_branches": (1, 2)}
# Version lines in the report: the packages any row may use.
VERSIONED_PACKAGES = ("tensorflow", "keras", "numpy", "neural-compressor-tf", "tf2onnx", "onnx", "onnxruntime",
                      "openvino", "nncf")
PEERS_INSTALL_HINT = "pip install 'tftrt_toolkit[peers]'"


RunFn = Callable[[], List[np.ndarray]]


class Skipped(Exception):
    """A row cannot be measured here; the message says why (and what to install)."""


# TF reads this switch once, at import: rows that need it on run in a worker process where it is off.


ONEDNN_SWITCH = "TF_ENABLE_ONEDNN_OPTS"
