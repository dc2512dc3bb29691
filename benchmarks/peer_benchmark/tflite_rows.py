"""The TFLite rows: the converter on the serving signature (fp32, dynamic-range int8, full-integer int8), XNNPACK.

The converter runs in a child process: on Keras 3 exports it can abort the process instead of raising.
"""

from __future__ import annotations

import os
import sys
from typing import Dict, Sequence

import numpy as np

from .building import Context, run_converter, size_mb
from .rows import RunFn, Skipped


class TFLiteRunner:
    """A .tflite flatbuffer on tf.lite.Interpreter (XNNPACK by default), inputs resized to each batch."""

    def __init__(self, tflite_content: bytes, output_names: Sequence[str], threads: int):
        import tensorflow as tf

        self.interpreter = tf.lite.Interpreter(model_content=tflite_content, num_threads=threads)
        signatures = self.interpreter.get_signature_list()
        key = "serving_default" if "serving_default" in signatures else next(iter(signatures))
        runner = self.interpreter.get_signature_runner(key)
        self.input_index = {name: detail["index"] for name, detail in runner.get_input_details().items()}
        outputs = runner.get_output_details()
        missing = [name for name in output_names if name not in outputs]
        if missing:
            raise Skipped(f"the TFLite model has outputs {sorted(outputs)}, not the signature's {missing}")
        self.output_index = [outputs[name]["index"] for name in output_names]
        self.shapes: Dict[str, tuple] = {}
        self.content, self.output_names = tflite_content, list(output_names)
        self.serving: list = []

    def concurrent(self, inputs: Dict[str, np.ndarray], clients: int, threads: int):
        """One interpreter per request thread, 1 thread each (an Interpreter is not safe to share between threads)."""
        self.serving = [TFLiteRunner(self.content, self.output_names, 1) for _ in range(clients)]
        return ([interpreter.bind(inputs) for interpreter in self.serving],
                f"{clients} interpreters, one per request thread, num_threads=1 each (XNNPACK)")

    def bind(self, inputs: Dict[str, np.ndarray]) -> RunFn:
        interpreter = self.interpreter
        shapes = {name: tuple(np.shape(inputs[name])) for name in self.input_index}
        if shapes != self.shapes:
            for name, shape in shapes.items():
                interpreter.resize_tensor_input(self.input_index[name], list(shape))
            interpreter.allocate_tensors()
            self.shapes = shapes
        for name, index in self.input_index.items():
            interpreter.set_tensor(index, np.ascontiguousarray(inputs[name]))
        order = self.output_index

        def run():
            interpreter.invoke()
            return [interpreter.get_tensor(index) for index in order]  # get_tensor copies to a new array
        return run

    def close(self) -> None:
        self.interpreter = None
        self.serving = []


# TFLiteConverter.from_saved_model aborts the process in TF 2.17 on Keras 3 exports (the shipped
# model, keras:NAME): "missing attribute 'value'" at BatchNorm's Cast/ReadVariableOp, then
# "LLVM ERROR: Failed to infer result type(s)". Converting the loaded serving signature works
# and keeps its input/output names. A child process, because the converter aborts rather than raises.
TFLITE_CONVERT_SCRIPT = """
import sys
import tensorflow as tf
import numpy as np
saved_model_dir, signature_key, variant, output, calibration = sys.argv[1:]
loaded = tf.saved_model.load(saved_model_dir)
converter = tf.lite.TFLiteConverter.from_concrete_functions([loaded.signatures[signature_key]], loaded)
if variant == "tflite_int8":
    # No representative dataset: dynamic-range quantization (int8 weights, activations quantized on the fly).
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
if variant == "tflite_full_int8":
    # Full-integer: a representative dataset (one sample at a time, inputs in sorted-name order)
    # and int8 ops only; input and output stay float32, quantized at the model's edges, so the
    # row takes the same inputs as every other row.
    arrays = np.load(calibration)
    names = sorted(arrays.files)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([arrays[name][i:i + 1] for name in names]
                                                for i in range(len(arrays[names[0]])))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
with open(output, "wb") as handle:
    handle.write(converter.convert())
"""


TFLITE_QUANTIZATION = {
    "tflite_fp32": "",
    "tflite_int8": " + Optimize.DEFAULT (dynamic range)",
    "tflite_full_int8": " + Optimize.DEFAULT, representative_dataset ({samples} calibration samples), "
                        "supported_ops=TFLITE_BUILTINS_INT8 (full-integer; float32 input/output)",
}


def build_tflite(context: Context, key: str):
    path = os.path.join(context.work_dir, f"{key}.tflite")
    calibration = os.path.join(context.work_dir, "calibration.npz")
    samples = _save_calibration(context, calibration) if key == "tflite_full_int8" else 0
    run_converter("TFLite converter", [sys.executable, "-c", TFLITE_CONVERT_SCRIPT, context.loaded.saved_model_dir,
                                        context.loaded.signature.key, key, path, calibration], path)
    with open(path, "rb") as handle:
        runner = TFLiteRunner(handle.read(), context.loaded.signature.output_names, context.threads)
    return runner, {"artifact": "TFLite flatbuffer", "artifact_mb": size_mb(path),
                    "converted_with": "tf.lite.TFLiteConverter.from_concrete_functions(serving signature)"
                                      + TFLITE_QUANTIZATION[key].format(samples=samples),
                    "settings": {"num_threads": context.threads, "delegate": "XNNPACK (tf.lite default)"}}


def _save_calibration(context: Context, path: str) -> int:
    """The shared calibration batches as one .npz (input name -> all samples); returns the sample count."""
    if not context.calibration_batches:
        raise Skipped("no calibration data for the int8 rows (see --calibration_data)")
    names = list(context.calibration_batches[0])
    arrays = {name: np.concatenate([batch[name] for batch in context.calibration_batches]) for name in names}
    np.savez(path, **arrays)
    return len(arrays[names[0]])
