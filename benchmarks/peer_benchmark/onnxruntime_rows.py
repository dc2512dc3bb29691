"""The ONNX Runtime rows: tf2onnx's export of the SavedModel, fp32 and statically quantized int8.

The export runs once (tf2onnx's own command line, in a child process); both rows share it.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Dict, Sequence, Tuple

import numpy as np

from tftrt_toolkit.errors import first_line

from .building import Context, require, run_converter, size_mb
from .rows import RunFn, Skipped


ONNX_OPSET = 17


class OnnxRuntimeRunner:
    """An ONNX file on ONNX Runtime's CPU provider, ``threads`` intra-op threads, sequential execution."""

    def __init__(self, onnx_path: str, output_names: Sequence[str], threads: int):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = onnxruntime.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
        produced = [output.name for output in self.session.get_outputs()]
        missing = [name for name in output_names if name not in produced]
        if missing:
            raise Skipped(f"the ONNX model has outputs {produced}, not the signature's {missing}")
        self.output_names = list(output_names)
        self.onnx_path = onnx_path
        self.serving: list = []

    def concurrent(self, inputs: Dict[str, np.ndarray], clients: int, threads: int):
        """One session per request thread, 1 intra-op thread each: ONNX Runtime's shape for serving many requests."""
        self.serving = [OnnxRuntimeRunner(self.onnx_path, self.output_names, 1) for _ in range(clients)]
        return ([session.bind(inputs) for session in self.serving],
                f"{clients} sessions, one per request thread, intra_op_num_threads=1 each")

    def bind(self, inputs: Dict[str, np.ndarray]) -> RunFn:
        feed = {name: np.ascontiguousarray(value) for name, value in inputs.items()}
        return lambda: self.session.run(self.output_names, feed)  # numpy arrays on the host

    def close(self) -> None:
        self.session = None
        self.serving = []


def build_onnxruntime(context: Context, key: str):
    require("tf2onnx", "onnxruntime")
    path = _onnx_model(context)
    facts = {"artifact": f"ONNX (opset {ONNX_OPSET})", "converted_with": "python -m tf2onnx.convert --saved-model"}
    if key == "onnxruntime_int8":
        path, how = _quantize_onnx(context, path)
        facts = {"artifact": f"ONNX (opset {ONNX_OPSET}), int8 QDQ",
                 "converted_with": facts["converted_with"] + "; " + how}
    runner = OnnxRuntimeRunner(path, context.loaded.signature.output_names, context.threads)
    return runner, {**facts, "artifact_mb": size_mb(path),
                    "settings": {"intra_op_num_threads": context.threads, "inter_op_num_threads": 1,
                                 "execution_mode": "sequential", "graph_optimization_level": "all",
                                 "providers": runner.session.get_providers()}}


def _onnx_model(context: Context) -> str:
    """tf2onnx's export of the original (once; the fp32 and int8 rows share it)."""
    path = os.path.join(context.work_dir, "model.onnx")
    if "onnx_model" not in context.cache:
        # tf2onnx's own command line, as users run it; in a child process so its graph-mode TF
        # session and logging stay out of this process.
        command = [sys.executable, "-m", "tf2onnx.convert", "--saved-model", context.loaded.saved_model_dir,
                   "--signature_def", context.loaded.signature.key, "--opset", str(ONNX_OPSET), "--output", path]
        run_converter("tf2onnx", command, path)
        context.cache["onnx_model"] = path
    return context.cache["onnx_model"]


def _quantize_onnx(context: Context, fp32_path: str) -> Tuple[str, str]:
    """ONNX Runtime's static int8 quantization of ``fp32_path`` on the shared calibration batches; (path, how).

    QDQ format (ORT's recommendation for CPU), per-channel int8 weights, uint8 activations,
    min/max calibration. Without VNNI, ORT's x86 U8S8 kernels can saturate (vpmaddubsw adds
    pairs of products in 16 bits); ORT's documentation prescribes ``reduce_range`` (7-bit
    weights) there, so it is on exactly when the CPU has no VNNI/AMX.
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Batches(CalibrationDataReader):
        def __init__(self, batches):
            self.remaining = iter(batches)

        def get_next(self):
            return next(self.remaining, None)

    prepared = os.path.abspath(os.path.join(context.work_dir, "model-preprocessed.onnx"))
    source, how = os.path.abspath(fp32_path), []
    path = os.path.abspath(os.path.join(context.work_dir, "model-int8.onnx"))
    reduce_range = not context.cpu_has_int8_dot
    # Where ORT's symbolic shape inference cannot infer every shape (a transformer did this), it
    # saves "sym_shape_infer_temp.onnx" and its weights (a UUID-named file, 20 MB there) into the
    # current directory and leaves them: run both steps from a scratch directory in the work dir.
    scratch = os.path.join(context.work_dir, "onnxruntime-scratch")
    os.makedirs(scratch, exist_ok=True)
    with contextlib.chdir(scratch):
        try:  # shape inference and graph cleanup first, as ORT's quantization guide recommends
            quant_pre_process(source, prepared)
            source = prepared
            how.append("quant_pre_process")
        except Exception as error:  # optional step: quantize the plain export and record why
            how.append(f"quant_pre_process failed ({first_line(error)[:120]}), quantized the plain export")
        quantize_static(source, path, Batches(context.calibration_batches), quant_format=QuantFormat.QDQ,
                        per_channel=True, reduce_range=reduce_range, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8)
    samples = sum(len(next(iter(batch.values()))) for batch in context.calibration_batches)
    how.append(f"quantize_static(QDQ, per_channel, QUInt8 activations, QInt8 weights, reduce_range={reduce_range}, "
               f"MinMax on {samples} calibration samples)")
    return path, "; ".join(how)
