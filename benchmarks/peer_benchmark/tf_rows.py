"""The rows that stay TF SavedModels: plain TF (the reference) and our cpu conversions.

Both run the way users serve a SavedModel: ``ModelRunner``, i.e. plain ``tf.saved_model.load``.
"""

from __future__ import annotations

import os
from typing import Dict

import numpy as np

from tftrt_toolkit.errors import ToolkitError

from .building import Context, size_mb
from .rows import RunFn, Skipped


class TFSavedModelRunner:
    """A SavedModel run the way users serve it: ``ModelRunner`` (plain ``tf.saved_model.load``)."""

    def __init__(self, model):
        from tftrt_toolkit.runtime.session import ModelRunner

        self.runner = ModelRunner(model).load()
        self.output_names = list(self.runner.signature.output_names)

    def bind(self, inputs: Dict[str, np.ndarray]) -> RunFn:
        tensors = self.runner.prepare(inputs)
        output_names = self.output_names

        def run():
            outputs = self.runner.run_prepared(tensors)  # ends with .numpy(): on the host
            return [outputs[name] for name in output_names]
        return run

    def concurrent(self, inputs: Dict[str, np.ndarray], clients: int, threads: int):
        """``clients`` calls sharing this loaded model, as TF Serving's request threads share a session."""
        return ([self.bind(inputs) for _ in range(clients)],
                f"{clients} client threads sharing one loaded model at this process's TF threads (intra-op {threads})")

    def close(self) -> None:
        self.runner.close()


def build_tf(context: Context, key: str):
    return TFSavedModelRunner(context.loaded.saved_model_dir), {"artifact": "the original SavedModel"}


def build_toolkit(context: Context, key: str):
    from tftrt_toolkit import pipeline
    from tftrt_toolkit.config import ConversionConfig

    precision = key.split("_")[1]
    # cpu_bf16_branches: the per-token work in 2 branches, served at the threads it records.
    branches = 2 if key.endswith("_branches") else 0
    output = os.path.join(context.work_dir, key)
    calibration_data = context.calibration_data if precision == "int8" else None
    try:
        converted = pipeline.convert(context.loaded, output,
                                     ConversionConfig(backend="cpu", precision=precision, token_branches=branches), overwrite=True,
                         calibration_data=calibration_data, progress=context.log)
    except ToolkitError as error:
        raise Skipped(f"{type(error).__name__}: {error}") from None
    return TFSavedModelRunner(output), {
        "artifact": "TF SavedModel", "artifact_mb": size_mb(output),
        # The share of the multiply-adds in the row's precision (a conversion below half is refused: skipped).
        "precision_coverage": converted.metadata["conversion_summary"].get("precision_coverage"),
        "converted_with": f"tftrt_toolkit.convert(ConversionConfig(backend='cpu', precision='{precision}'"
                          + (f", token_branches={branches}" if branches else "") + "))"
                          + (", calibrated on --calibration_data" if calibration_data else "")}
