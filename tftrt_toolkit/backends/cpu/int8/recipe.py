"""The cpu int8 recipe: the steps in order, and what the summary records of them.

1. our folds (``cpu/folds.py``): Keras 3 BatchNorm's ``Mul``/``AddV2`` into the conv weights
   and bias, and BatchNorm offsets out of residual sums (``fold_for_quantizing``);
2. Intel Neural Compressor static quantization (``quantize.py``);
3. 7-bit weights where 8-bit ones overflow int16 on CPUs without VNNI (``overflow_guard.py``);
4. residual adds with no ReLU after them fused into the int8 conv before them (``residual_sums.py``;
   the 1x1 convs that now read uint8 get the same int16 check);
5. bias correction (``bias_correction.py``);
6. a check against fp32 on held-out calibration samples (``fp32_check.py``).

Why these steps and not others (what was tried and measured): benchmarks/int8_cpu_notes.md.
"""

from __future__ import annotations

import logging
from typing import Dict, Tuple

from tftrt_toolkit.backends.cpu.int8 import fp32_check
from tftrt_toolkit.backends.cpu.int8.bias_correction import correct_weight_rounding_bias
from tftrt_toolkit.backends.cpu.int8.overflow_guard import narrow_for_shifted_inputs, narrow_overflowing_weights
from tftrt_toolkit.backends.cpu.int8.quantize import (
    QUANTIZABLE_OPS,
    collect_calibration_batches,
    count_quantized_layers,
    quantize_with_inc,
)
from tftrt_toolkit.backends.cpu.int8.residual_sums import fuse_residual_adds
from tftrt_toolkit.backends.frozen.freeze import FrozenSignature
from tftrt_toolkit.backends.graphdef import node_name
from tftrt_toolkit.errors import ConversionError
from tftrt_toolkit.steps import step

log = logging.getLogger(__name__)

METHOD = "inc_static_ptq_onednn"
QUANTIZER = "Intel Neural Compressor static post-training quantization, TF oneDNN int8 ops"
WEIGHTS = "int8 symmetric per-channel"
WEIGHTS_OVERFLOW_SAFE = ("int8 symmetric per-channel (depthwise per channel too); 7-bit in the output channels of "
                         "unsigned-input convolutions whose u8 x s8 pair sums overflow int16 on the calibration data")
ACTIVATIONS = "int8/uint8 per-tensor, ranges = min/max over the calibration samples"
RESIDUAL_ADDS = ("fused into the int8 conv before them as a uint8 sum of value + range (no fp32 add, "
                 "no Dequantize/QuantizeV2 around it)")
BIAS_CORRECTION = ("analytical: (int8 weights - fp32 weights) x the calibration data's input means, "
                   "subtracted from each conv's bias")
# Below this top-1 agreement with fp32 on the check samples the summary carries a warning. Eight
# calibration samples (crops, noise, unlabelled photos) often give flat outputs whose top-1 flips
# at the smallest change (benchmarks/int8_cpu_notes.md): only a check worse than even odds
# warns; the verdict on accuracy is validate's, on labelled data (tftrt run does it for every model).
AGREEMENT_WARNING_THRESHOLD = 0.5


def recipe(*, overflow_safe_weights: bool, bias_correction: bool, fuse_residual_adds: bool = True) -> Dict[str, object]:
    """What the recipe does with these options (recorded in each int8 model's metadata)."""
    return {
        "quantizer": QUANTIZER,
        "weights": WEIGHTS_OVERFLOW_SAFE if overflow_safe_weights else WEIGHTS,
        "activations": ACTIVATIONS,
        "int16_overflow_guard": overflow_safe_weights,
        "layers_kept_fp32": [],
        "residual_adds": RESIDUAL_ADDS if fuse_residual_adds else "fp32, between a Dequantize and a QuantizeV2",
        "bias_correction": BIAS_CORRECTION if bias_correction else False,
    }


def fold_for_quantizing(frozen: FrozenSignature) -> Tuple[FrozenSignature, int]:
    """Our folds on the frozen graph (every weight a constant in it): (the folded signature, ops rewritten).

    Without them every conv keeps a dequantize/requantize pair and a per-channel requantize
    path that loses accuracy.
    """
    from tftrt_toolkit.backends.cpu.folds import fold_affine_ops

    outputs = tuple(node_name(t) for t in frozen.output_tensor_names)
    graph_def, folded_ops, _ = fold_affine_ops(frozen.graph_def, keep=outputs)
    return frozen.with_graph(graph_def, frozen.held), folded_ops


def quantize(frozen: FrozenSignature, signature, calibration_input_fn, *, ops_folded: int = 0,
             overflow_safe_weights: bool = True, bias_correction: bool = True,
             fuse_residual_adds: bool = True) -> Tuple[object, Dict[str, object]]:
    """Quantize ``frozen.graph_def`` (cleaned, folded, unfused, weights as constants) to int8; returns (graph_def, summary).

    ``ops_folded``: what ``fold_for_quantizing`` rewrote, for the summary.
    ``overflow_safe_weights``: 7-bit weights where 8-bit ones overflow int16 on the calibration
    data on CPUs without VNNI (``overflow_guard``); ``bias_correction``: each conv's bias absorbs
    the mean its weight rounding adds (``bias_correction``); ``fuse_residual_adds``: residual adds
    without a ReLU after them run inside the conv before them (``residual_sums``). All three are
    the recipe's defaults.

    Raises BackendUnavailable (INC missing), DataError (too few or malformed calibration
    samples), ConversionError (nothing quantizable, or the quantizer failed).
    """
    input_names = [node_name(t) for t in frozen.input_tensor_names]
    output_names = [node_name(t) for t in frozen.output_tensor_names]
    if len(input_names) != 1:
        raise ConversionError(
            f"cpu int8 handles single-input models only; this signature has {len(input_names)} inputs "
            f"({', '.join(input_names)}). Use --precision=bf16 for it."
        )
    batches, samples = collect_calibration_batches(calibration_input_fn, len(input_names))
    graph_def = frozen.graph_def
    layers_total = sum(1 for node in graph_def.node if node.op in QUANTIZABLE_OPS)
    if layers_total == 0:
        raise ConversionError(
            "the model has no Conv2D, DepthwiseConv2dNative or MatMul ops to quantize; int8 would change "
            "nothing. Use --precision=fp32 or bf16."
        )

    check_batch = fp32_check.check_batch(batches)
    with step("quantize"):
        int8_graph = quantize_with_inc(graph_def, input_names, output_names, batches)
    layers_quantized = count_quantized_layers(int8_graph)
    if layers_quantized == 0:
        raise ConversionError(
            f"none of the {layers_total} conv/matmul layers could be quantized (no pattern the int8 kernels "
            "support); use --precision=bf16."
        )
    if overflow_safe_weights:
        with step("int16_overflow_guard"):
            int8_graph, guard = narrow_overflowing_weights(int8_graph, input_names[0], batches)
    else:
        guard = {"enabled": False}
    if fuse_residual_adds:
        with step("fuse_residual_adds"):
            int8_graph, residual = _fuse_residual_adds(int8_graph, input_names[0], output_names, batches,
                                                       overflow_safe_weights)
    else:
        residual = {"enabled": False}
    if bias_correction:
        with step("bias_correction"):
            int8_graph, corrected = correct_weight_rounding_bias(graph_def, int8_graph, input_names[0], batches)
    else:
        corrected = {"enabled": False}
    done = recipe(overflow_safe_weights=overflow_safe_weights, bias_correction=bias_correction,
                  fuse_residual_adds=fuse_residual_adds)
    summary: Dict[str, object] = {
        "method": METHOD,
        "weights": done["weights"],
        "activations": done["activations"],
        "recipe": done,
        "layers_quantized": layers_quantized,
        "layers_total": layers_total,
        "calibration_samples": samples,
        "calibration_batches": len(batches),
        "ops_folded_before_quantizing": ops_folded,
        "int16_overflow_guard": guard,
        "residual_adds": residual,
        "bias_correction": corrected,
    }
    with step("int8_check"):
        summary.update(fp32_check.compare_with_fp32(graph_def, int8_graph, input_names[0], output_names, check_batch))
    agreement = summary["top1_agreement"]
    if agreement is not None and agreement < AGREEMENT_WARNING_THRESHOLD:
        summary["warning"] = (
            f"top-1 agreement with fp32 on {summary['check_samples']} calibration samples is only {agreement:.2%}; "
            "see worst_layers, validate on labelled data (tftrt validate --data=DIR --labels_csv=FILE), "
            "or use --precision=bf16."
        )
        log.warning("int8: %s", summary["warning"])
    elif agreement is not None and agreement < 1.0:
        log.info("int8: top-1 agreement with fp32 on %d calibration samples is %.2f%% (too few to judge: "
                 "validate on labelled data)", summary["check_samples"], 100 * agreement)
    return int8_graph, summary


def _fuse_residual_adds(int8_graph, input_name: str, output_names, batches, overflow_safe_weights: bool):
    """``residual_sums.fuse_residual_adds``, then the int16 check of the convs it made read uint8."""
    fused, report, shifted = fuse_residual_adds(int8_graph, output_names)
    report = {"enabled": True, **report}
    if overflow_safe_weights and shifted:
        fused, report["int16_overflow_guard"] = narrow_for_shifted_inputs(int8_graph, fused, input_name, batches, shifted)
    return fused, report
