"""Quantize with Intel Neural Compressor: static post-training quantization to TF's oneDNN int8 ops.

Per-channel symmetric int8 weights, activations calibrated (min/max) on the calibration
batches, rewritten to TF's own ``QuantizedConv2DWithBias*AndRequantize`` / ``QuantizedMatMul*``
ops so consecutive convolutions stay in int8.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import tempfile
import warnings
from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np

from tftrt_toolkit.environment import Environment
from tftrt_toolkit.errors import BackendUnavailable, ConversionError, DataError, first_line

INSTALL_HINT = "pip install 'neural-compressor-tf==3.10' 'setuptools<81'"
# Fewer samples than this give min/max ranges set by a handful of images: a few outliers
# decide the scale of every layer. TF-TRT's INT8 examples calibrate on ~500; 32 is the floor.
MIN_CALIBRATION_SAMPLES = 32
# The ops a quantized layer comes from, and the ops INC turns them into.
QUANTIZABLE_OPS = ("Conv2D", "DepthwiseConv2dNative", "MatMul")


def check_available(env: Optional[Environment]) -> None:
    """Raise BackendUnavailable when int8 cannot be converted here, saying what to do.

    Whether int8 runs here is ``backends.precisions``' answer (``env`` None: skip that and
    check only that Intel Neural Compressor imports).
    """
    if env is not None:
        from tftrt_toolkit.backends.precisions import offer_for

        offer = offer_for(env, "cpu", "int8")
        if not offer.available:
            raise BackendUnavailable(f"precision=int8 on the cpu backend cannot run here: {offer.reason}.")
    _import_inc()


def _import_inc():
    try:
        # INC 3.10 imports pkg_resources, whose deprecation warning would land in users' terminals.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
            from neural_compressor.tensorflow import StaticQuantConfig, quantize_model
            from neural_compressor.tensorflow.utils import Model
    except ImportError as error:
        raise BackendUnavailable(
            f"precision=int8 on the cpu backend needs Intel Neural Compressor for TensorFlow "
            f"({error}); install it with: {INSTALL_HINT}  (only conversion needs it; the saved model "
            "runs on plain TensorFlow)."
        ) from error
    return StaticQuantConfig, quantize_model, Model


def collect_calibration_batches(calibration_input_fn, input_count: int) -> Tuple[List[tuple], int]:
    """Draw every batch from ``calibration_input_fn()``; returns (batches, samples). DataError when unusable."""
    batches = []
    samples = 0
    for batch in calibration_input_fn():
        if not isinstance(batch, (tuple, list)):
            batch = (batch,)
        if len(batch) != input_count:
            raise DataError(
                f"calibration batch has {len(batch)} arrays but the signature has {input_count} inputs; "
                "give one array per input, in signature order (sorted by input name)."
            )
        arrays = tuple(np.asarray(a) for a in batch)
        sizes = {a.shape[0] if a.ndim else 0 for a in arrays}
        if len(sizes) != 1 or 0 in sizes:
            raise DataError(f"calibration batch arrays disagree on batch size or are empty (shapes "
                            f"{[a.shape for a in arrays]}); every input needs the same leading batch dimension.")
        batches.append(arrays)
        samples += sizes.pop()
    if samples < MIN_CALIBRATION_SAMPLES:
        raise DataError(
            f"int8 calibration got {samples} samples; at least {MIN_CALIBRATION_SAMPLES} are needed for "
            "stable activation ranges (more is better, a few hundred is typical). Give more "
            "--calibration_data or raise --calibration_steps/--batch_size."
        )
    return batches, samples


def quantize_with_inc(graph_def, input_names: Sequence[str], output_names: Sequence[str],
                      batches: Sequence[tuple]):
    """INC's int8 graph of ``graph_def`` (folded, unfused), calibrated on ``batches``.

    Raises ConversionError when INC fails, returns nothing, loses the signature's tensors or
    quantizes no layer.
    """
    StaticQuantConfig, quantize_model, Model = _import_inc()
    config = StaticQuantConfig(weight_granularity="per_channel", weight_sym=True, act_algorithm="minmax")
    with tempfile.TemporaryDirectory(prefix="tftrt_int8_") as workspace, _inc_session():
        # INC writes scratch files to its workspace (default ./nc_workspace in the caller's cwd).
        model = Model(graph_def, conf={"workspace_path": workspace})
        model.input_tensor_names = list(input_names)
        model.output_tensor_names = list(output_names)
        try:
            quantized = quantize_model(model, config, _CalibrationLoader(batches), calib_iteration=len(batches))
        except Exception as error:  # INC raises bare exceptions of many kinds; say which step failed
            first = first_line(error, limit=200)
            raise ConversionError(f"int8 quantization failed ({type(error).__name__}: {first}); "
                                  "use --precision=bf16 for this model.") from error
        if quantized is None:
            raise ConversionError("int8 quantization produced no model (INC returned None); use --precision=bf16.")
        int8_graph = quantized.graph_def
    _check_names(int8_graph, list(input_names) + list(output_names))
    return int8_graph


class _CalibrationLoader:
    """The data loader INC calibrates with: ``batch_size`` and (inputs, label) pairs."""

    def __init__(self, batches: Sequence[tuple]):
        self.batches = batches
        self.batch_size = int(batches[0][0].shape[0])

    def __iter__(self):
        for batch in self.batches:
            yield batch[0], np.zeros((batch[0].shape[0],), np.int64)


def count_quantized_layers(graph_def) -> int:
    """Conv/matmul layers running as int8 kernels (each fused ``Quantized*`` op is one layer)."""
    return sum(1 for node in graph_def.node
               if node.op.lstrip("_").startswith("Quantized") and ("Conv" in node.op or "MatMul" in node.op))


def _check_names(graph_def, names: Iterable[str]) -> None:
    present = {node.name for node in graph_def.node}
    missing = [name for name in names if name not in present]
    if missing:
        raise ConversionError(f"the int8 graph lost the signature's tensors {missing}; use --precision=bf16 "
                              "and report this model.")


@contextlib.contextmanager
def _inc_session():
    """Run INC quietly, and make its calibration read the real stderr.

    INC calibrates by adding Print ops and parsing what TensorFlow's C++ runtime writes to
    file descriptor 2. Its capture helper redirects ``sys.stderr.fileno()`` as it was when
    INC was imported; under pytest, Jupyter or any host that swaps ``sys.stderr`` that is
    not fd 2, the capture comes back empty and calibration fails ("list index out of range").
    """
    import functools

    from neural_compressor.tensorflow.quantization.utils import graph_converter

    # INC sets its logger to INFO when imported and warns about node names it guessed; the TF v1
    # APIs it calls log deprecation warnings through TF's logger: a page of text per conversion,
    # nothing the user can act on. Only errors show; our own summary says what was quantized.
    quieted = {logging.getLogger("neural_compressor"): logging.ERROR, logging.getLogger("tensorflow"): logging.ERROR}
    previous_levels = [logger.level for logger in quieted]
    for logger, level in quieted.items():
        logger.setLevel(max(logger.level, level))
    original_capture = graph_converter.CaptureOutputToFile
    real_stderr = sys.__stderr__ if sys.__stderr__ is not None else sys.stderr
    graph_converter.CaptureOutputToFile = functools.partial(original_capture, stream=real_stderr)
    try:
        yield
    finally:
        graph_converter.CaptureOutputToFile = original_capture
        for logger, level in zip(quieted, previous_levels):
            logger.setLevel(level)
