"""INT8 post-training quantization for the cpu backend: oneDNN's fused INT8 kernels in stock TensorFlow.

How (see benchmarks/int8_cpu_notes.md for the measured comparison that chose this):

1. the frozen graph, cleaned by grappler but *not* fused (the quantizer matches plain
   ``Conv2D → BiasAdd → Relu`` patterns, not ``_FusedConv2D``);
2. our folds (``affine_folds``): Keras 3 BatchNorm's ``Mul``/``AddV2`` into the conv
   weights and bias, and BatchNorm offsets out of residual sums — without them every conv
   keeps a dequantize/requantize pair and a per-channel requantize path that loses accuracy;
3. Intel Neural Compressor (``neural-compressor-tf``) static quantization: per-channel
   symmetric int8 weights, activations calibrated (min/max) on ``calibration_input_fn``,
   rewritten to TF's own ``QuantizedConv2DWithBias*AndRequantize`` / ``QuantizedMatMul*`` ops
   so consecutive convolutions stay in int8;
4. 7-bit weights for the output channels of unsigned-input convolutions whose int8 products
   would overflow int16 on CPUs without VNNI (``narrow_overflowing_weights``, measured on the
   calibration data);
5. bias correction: each conv's bias absorbs the mean its weight rounding adds
   (``correct_weight_rounding_bias``);
6. a check against fp32 on a held-out calibration batch: output error, top-1 agreement
   and the layers whose outputs drifted most, for the summary.

The result is a plain GraphDef: the saved model needs only ``tf.saved_model.load`` with
TensorFlow's oneDNN build (the default on x86 Linux), not this toolkit and not INC.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import tempfile
import warnings
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from tftrt_toolkit.backends.frozen import grappler as graph_passes
from tftrt_toolkit.environment import Environment
from tftrt_toolkit.errors import BackendUnavailable, ConversionError, DataError, first_line
from tftrt_toolkit.steps import step

log = logging.getLogger(__name__)

METHOD = "inc_static_ptq_onednn"
# The recipe, chosen by accuracy on real labelled photos (benchmarks/int8_cpu_notes.md, "Accuracy on
# real labelled photos" and "Closing the gap"). On EfficientNet-Lite0 two changes moved more than
# noise: the int16 overflow guard and analytical bias correction (together: KL divergence from fp32
# on held-out calibration-split photos 0.065 -> 0.023, agreement with the original on 750 ImageNet
# photos 91.3% -> 95%). None of the others measured beat min/max beyond noise: more calibration
# images, quantile ranges, asymmetric activations, the 1, 2 or 4 layers that drift most (or whose
# drift grows most) kept in fp32, the stem, the first depthwise convs or the classifier in fp32;
# bias correction from measured output shifts hurt (-5.2 points); INC's KL calibration did not
# finish in 10 minutes and INC offers no percentile calibration for static quantization.
# Depthwise weights are per channel in any case (INC quantizes DepthwiseConv2dNative per output
# channel whatever the granularity).
RECIPE = {
    "quantizer": "Intel Neural Compressor static post-training quantization, TF oneDNN int8 ops",
    "weights": "int8 symmetric per-channel (depthwise per channel too); 7-bit in the output channels of "
               "unsigned-input convolutions whose u8 x s8 pair sums overflow int16 on the calibration data",
    "activations": "int8/uint8 per-tensor, ranges = min/max over the calibration samples",
    "calibration_samples_default": 64,
    "int16_overflow_guard": True,
    "layers_kept_fp32": [],
    "bias_correction": "analytical: (int8 weights - fp32 weights) x the calibration data's input means, "
                       "subtracted from each conv's bias",
}
# What the recipe measured, so every int8 model carries the evidence its conversion rests on.
RECIPE_MEASURED = {
    "model": "EfficientNet-Lite0 (the shipped model)",
    "data": "750 ImageNet sample photos (one per class, 3 of every 4 classes); calibrated on 64 other ones",
    "top1_original": 0.8067,
    "top1_int8": 0.8067,
    "top1_drop_points": 0.0,
    "top1_drop_interval_95_points": [-1.29, 1.29],
    "only_original_right_only_int8_right": [11, 11],
    "top1_agreement_with_original": 0.9547,
    "machine": "2-core AMD EPYC, AVX2+FMA (no VNNI), TensorFlow 2.17.1 with oneDNN on",
    "source": "benchmarks/results/efficientnet_lite0-accuracy.md",
}
# Fewer samples than this give min/max ranges set by a handful of images: a few outliers
# decide the scale of every layer. TF-TRT's INT8 examples calibrate on ~500; 32 is the floor.
MIN_CALIBRATION_SAMPLES = 32
# Calibration samples int8 and fp32 are compared on (the summary's error and drift figures).
CHECK_SAMPLES = 8
WORST_LAYERS_REPORTED = 5
# Below this top-1 agreement with fp32 on the check samples the summary carries a warning. Eight
# calibration samples (crops, noise, unlabelled photos) often give flat outputs whose top-1 flips
# at the smallest change: on the shipped crops int8 agreed 5 of 8 while it agreed 95.5% with
# fp32 and lost no top-1 on 750 ImageNet photos. So only a check worse than even odds warns;
# the verdict on accuracy is validate's, on labelled data (tftrt run does it for every model).
AGREEMENT_WARNING_THRESHOLD = 0.5
INSTALL_HINT = "pip install 'neural-compressor-tf==3.10' 'setuptools<81'"
# The ops a quantized layer comes from, and the ops INC turns them into.
QUANTIZABLE_OPS = ("Conv2D", "DepthwiseConv2dNative", "MatMul")
TAP_SUFFIX = "/check_dequantize"
# Grappler stages before quantizing: cleanup and layout, no remapper fusion (INC fuses itself).
PREQUANTIZE_STAGES = (graph_passes.CLEANUP, graph_passes.LAYOUT)
# CPUs without VNNI (AVX2, AVX-512 before Cascade Lake) multiply u8 activations by s8 weights with
# vpmaddubsw, which adds the products of two neighbouring input channels in int16 and saturates.
# oneDNN halves the weights itself for signed inputs (7-bit), not for unsigned ones (after a ReLU).
INT16_MAX = 32767
# Calibration samples the overflow check and the bias correction run the graph on, a batch at a
# time (the activations of every layer they look at are held for one batch).
STATISTICS_SAMPLES = 64
STATISTICS_BATCH = 8
# Pair products checked at once (int32 elements), to bound the check's memory.
OVERFLOW_CHECK_CHUNK = 4_000_000


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


def quantize(frozen, signature, calibration_input_fn, *, overflow_safe_weights: bool = True,
             bias_correction: bool = True) -> Tuple[object, Dict[str, object]]:
    """Quantize ``frozen.graph_def`` (cleaned, unfused) to int8; returns (graph_def, summary).

    ``overflow_safe_weights``: 7-bit weights where 8-bit ones overflow int16 on the calibration
    data on CPUs without VNNI (``narrow_overflowing_weights``); ``bias_correction``: each conv's
    bias absorbs the mean its weight rounding adds (``correct_weight_rounding_bias``). Both are
    the recipe's defaults.

    Raises BackendUnavailable (INC missing), DataError (too few or malformed calibration
    samples), ConversionError (nothing quantizable, or the quantizer failed).
    """
    from tftrt_toolkit.backends.cpu.folds import fold_affine_ops

    StaticQuantConfig, quantize_model, Model = _import_inc()
    input_names = [_node_name(t) for t in frozen.input_tensor_names]
    output_names = [_node_name(t) for t in frozen.output_tensor_names]
    if len(input_names) != 1:
        raise ConversionError(
            f"cpu int8 handles single-input models only; this signature has {len(input_names)} inputs "
            f"({', '.join(input_names)}). Use --precision=bf16 for it."
        )
    batches, samples = collect_calibration_batches(calibration_input_fn, len(input_names))

    graph_def, folded_ops = fold_affine_ops(frozen.graph_def, keep=tuple(output_names))
    frozen.graph_def = None  # the unfolded graph (every weight a constant) goes before INC copies this one
    layers_total = sum(1 for node in graph_def.node if node.op in QUANTIZABLE_OPS)
    if layers_total == 0:
        raise ConversionError(
            "the model has no Conv2D, DepthwiseConv2dNative or MatMul ops to quantize; int8 would change "
            "nothing. Use --precision=fp32 or bf16."
        )

    check_batch = _check_batch(batches)
    config = StaticQuantConfig(weight_granularity="per_channel", weight_sym=True, act_algorithm="minmax")
    with step("quantize"), tempfile.TemporaryDirectory(prefix="tftrt_int8_") as workspace, _inc_session():
        # INC writes scratch files to its workspace (default ./nc_workspace in the caller's cwd).
        model = Model(graph_def, conf={"workspace_path": workspace})
        model.input_tensor_names = input_names
        model.output_tensor_names = output_names
        try:
            quantized = quantize_model(model, config, _CalibrationLoader(batches), calib_iteration=len(batches))
        except Exception as error:  # INC raises bare exceptions of many kinds; say which step failed
            first = first_line(error, limit=200)
            raise ConversionError(f"int8 quantization failed ({type(error).__name__}: {first}); "
                                  "use --precision=bf16 for this model.") from error
        if quantized is None:
            raise ConversionError("int8 quantization produced no model (INC returned None); use --precision=bf16.")
        int8_graph = quantized.graph_def

    _check_names(int8_graph, input_names + output_names)
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
    if bias_correction:
        with step("bias_correction"):
            int8_graph, corrected = correct_weight_rounding_bias(graph_def, int8_graph, input_names[0], batches)
    else:
        corrected = {"enabled": False}
    summary: Dict[str, object] = {
        "method": METHOD,
        "weights": RECIPE["weights"] if overflow_safe_weights else "int8 symmetric per-channel",
        "activations": RECIPE["activations"],
        "recipe": RECIPE,
        "recipe_measured": RECIPE_MEASURED,
        "layers_quantized": layers_quantized,
        "layers_total": layers_total,
        "calibration_samples": samples,
        "calibration_batches": len(batches),
        "ops_folded_before_quantizing": folded_ops,
        "int16_overflow_guard": guard,
        "bias_correction": corrected,
    }
    with step("int8_check"):
        summary.update(compare_with_fp32(graph_def, int8_graph, input_names[0], output_names, check_batch))
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


class _CalibrationLoader:
    """The data loader INC calibrates with: ``batch_size`` and (inputs, label) pairs."""

    def __init__(self, batches: Sequence[tuple]):
        self.batches = batches
        self.batch_size = int(batches[0][0].shape[0])

    def __iter__(self):
        for batch in self.batches:
            yield batch[0], np.zeros((batch[0].shape[0],), np.int64)


def _check_batch(batches: Sequence[tuple]) -> np.ndarray:
    """Up to CHECK_SAMPLES samples, taken from the last batches (the same data calibration saw)."""
    arrays = [b[0] for b in reversed(batches)]
    stacked = np.concatenate(arrays[: max(1, -(-CHECK_SAMPLES // arrays[0].shape[0]))])
    return stacked[:CHECK_SAMPLES]


def count_quantized_layers(graph_def) -> int:
    """Conv/matmul layers running as int8 kernels (each fused ``Quantized*`` op is one layer)."""
    return sum(1 for node in graph_def.node
               if node.op.lstrip("_").startswith("Quantized") and ("Conv" in node.op or "MatMul" in node.op))


def narrow_overflowing_weights(int8_graph, input_name: str, batches: Sequence[tuple]) -> Tuple[object, Dict[str, object]]:
    """7-bit weights in the output channels whose u8 x s8 pair sums overflow int16 on ``batches``.

    Without VNNI, oneDNN's int8 convolution adds the products of input channels 2k and 2k+1 in
    int16 (vpmaddubsw), which saturates above 32767: with unsigned 8-bit activations up to 255
    and weights up to 127 a pair can reach 64770. The calibration data says which output
    channels get there; only those lose a bit (weights halved, their filter range doubled, so
    the product stays the same number). On EfficientNet-Lite0 that is 365 of 1,808 projection
    channels, and int8's disagreement with fp32 fell by a third. Kernels with VNNI (and the
    depthwise kernels) add in int32: there the 7-bit channels cost a little precision, nothing else.
    Returns (graph_def, what was checked and narrowed).
    """
    from tensorflow.core.framework import types_pb2
    from tensorflow.python.framework import tensor_util

    graph = type(int8_graph)()
    graph.CopyFrom(int8_graph)
    nodes = {node.name: node for node in graph.node}
    readers = _reader_counts(graph)
    # A fused conv + sum adds into its summand's buffer in place: a second reader would see that.
    summands = {_node_name(node.input[9]) for node in graph.node if "Sum" in node.op and len(node.input) > 9}
    checked, unchecked = [], 0
    for node in graph.node:
        # QuantizedConv2DWithBias*: input, filter, bias, min/max input, min/max filter (5, 6), ...
        if not node.op.startswith("QuantizedConv2DWithBias") or len(node.input) < 7:
            continue
        source = nodes.get(_node_name(node.input[0]))
        if source is None or _output_type(source) != types_pb2.DT_QUINT8:
            continue
        weights, low, high = (nodes.get(_node_name(node.input[i])) for i in (1, 5, 6))
        measurable = source.name not in summands and ":" not in node.input[0]
        own_constants = all(n is not None and "value" in n.attr and readers.get(n.name) == 1 for n in (weights, low, high))
        if measurable and own_constants:
            checked.append((source.name, weights, low, high))
        else:
            unchecked += 1
    report: Dict[str, object] = {"enabled": True, "layers_checked": len(checked), "layers_not_checked": unchecked,
                                 "layers_narrowed": 0, "channels_narrowed": 0}
    if not checked:
        return graph, report

    filters = [tensor_util.MakeNdarray(w.attr["value"].tensor).view(np.int8).astype(np.int32) for _, w, _, _ in checked]
    taps = {source: source + "/overflow_check_dequantize" for source, _, _, _ in checked}
    probe = _with_dequantize_taps(graph, taps)
    fetches = [taps[source] + ":0" for source, _, _, _ in checked] + [source + ":2" for source, _, _, _ in checked]
    samples = np.concatenate([batch[0] for batch in batches])[:STATISTICS_SAMPLES]
    overflowing = [np.zeros(f.shape[-1], dtype=bool) for f in filters]
    run = _runner(probe, input_name, fetches)
    for start in range(0, len(samples), STATISTICS_BATCH):
        outputs = run(samples[start:start + STATISTICS_BATCH])
        for index in range(len(checked)):
            activations, top = outputs[index], float(np.max(outputs[len(checked) + index]))
            codes = np.round(activations.reshape(-1, activations.shape[-1]) * (255.0 / max(top, 1e-12)))
            overflowing[index] |= pair_sums_overflow(codes.astype(np.int32), filters[index])

    for (_, weights, low, high), quantized, over in zip(checked, filters, overflowing):
        if not over.any():
            continue
        ranges = [tensor_util.MakeNdarray(n.attr["value"].tensor).astype(np.float32) for n in (low, high)]
        if ranges[0].ndim == 0:
            over[:] = True  # one range for the whole filter: all channels or none
        quantized[..., over] = np.round(quantized[..., over] / 2.0)
        weights.attr["value"].tensor.CopyFrom(
            tensor_util.make_tensor_proto(quantized.astype(np.int8), dtype=types_pb2.DT_QINT8))
        for range_node, value in zip((low, high), ranges):
            value = np.where(over, value * 2, value) if value.ndim else value * 2
            range_node.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(value.astype(np.float32)))
        report["layers_narrowed"] += 1
        report["channels_narrowed"] += int(over.sum())
    report["channels_checked"] = int(sum(f.shape[-1] for f in filters))
    report["samples"] = int(len(samples))
    return graph, report


def correct_weight_rounding_bias(fp32_graph, int8_graph, input_name: str,
                                 batches: Sequence[tuple]) -> Tuple[object, Dict[str, object]]:
    """Subtract from each int8 conv's bias the mean output shift its weight rounding causes.

    Rounding weights to 8 bits shifts a conv's output by ``(W_int8 - W) . E[x]`` on average
    (E[x]: the mean of each input channel, over the calibration samples, in fp32); the bias
    takes it back (Nagel et al., "Data-Free Quantization", 2019: analytical bias correction).
    Only weights' own error is corrected, not what earlier layers pass on (correcting measured
    output shifts, which include those, over-corrected: -5.2 points on EfficientNet-Lite0).
    On EfficientNet-Lite0 it cut int8's KL divergence from fp32 on held-out calibration-split photos
    from 0.040 to 0.023 (after the int16 overflow guard).
    Borders where the kernel reads padding are treated like the interior.
    Returns (graph_def, what was corrected).
    """
    from tensorflow.core.framework import types_pb2
    from tensorflow.python.framework import tensor_util

    graph = type(int8_graph)()
    graph.CopyFrom(int8_graph)
    nodes = {node.name: node for node in graph.node}
    fp32_nodes = {node.name: node for node in fp32_graph.node}
    readers = _reader_counts(graph)
    suffix = "_eightbit_requantize"
    layers = []
    for node in graph.node:
        if not (node.op.startswith(("QuantizedConv2DWithBias", "QuantizedDepthwiseConv2DWithBias"))
                and node.name.endswith(suffix) and len(node.input) >= 7):
            continue
        conv = fp32_nodes.get(node.name[: -len(suffix)])
        if conv is None or conv.op not in ("Conv2D", "DepthwiseConv2dNative"):
            continue
        fp32_filter = fp32_nodes.get(_node_name(conv.input[1]))
        constants = [nodes.get(_node_name(node.input[i])) for i in (1, 2, 5, 6)]
        if fp32_filter is None or "value" not in fp32_filter.attr or any(
                c is None or "value" not in c.attr for c in constants):
            continue
        bias = constants[1]
        if bias.attr["value"].tensor.dtype != types_pb2.DT_FLOAT:
            continue  # a pre-quantized (int32) bias cannot take a float correction
        if readers.get(bias.name) != 1:
            # Convs without a bias of their own share one of zeros (affine_folds.add_missing_bias).
            own = graph.node.add()
            own.CopyFrom(bias)
            own.name = f"{node.name}/corrected_bias"
            node.input[2] = own.name
            constants[1] = own
        layers.append((conv, fp32_filter, *constants))
    report: Dict[str, object] = {"enabled": True, "layers_corrected": 0}
    if not layers:
        return graph, report

    fetches = [conv.input[0] if ":" in conv.input[0] else conv.input[0] + ":0" for conv, *_ in layers]
    samples = np.concatenate([batch[0] for batch in batches])[:STATISTICS_SAMPLES]
    sums, rows = [0.0] * len(layers), [0] * len(layers)
    run = _runner(fp32_graph, input_name, fetches)
    for start in range(0, len(samples), STATISTICS_BATCH):
        outputs = run(samples[start:start + STATISTICS_BATCH])
        for index, value in enumerate(outputs):
            flat = value.astype(np.float64).reshape(-1, value.shape[-1])
            sums[index] = sums[index] + flat.sum(axis=0)
            rows[index] += flat.shape[0]
    largest_shift = 0.0
    for index, (conv, fp32_filter, quantized, bias, low, high) in enumerate(layers):
        weights = tensor_util.MakeNdarray(fp32_filter.attr["value"].tensor).astype(np.float64)
        codes = tensor_util.MakeNdarray(quantized.attr["value"].tensor).view(np.int8).astype(np.float64)
        ranges = np.maximum(np.abs(tensor_util.MakeNdarray(low.attr["value"].tensor)),
                            np.abs(tensor_util.MakeNdarray(high.attr["value"].tensor))).astype(np.float64)
        if codes.shape != weights.shape:
            continue
        means = sums[index] / max(rows[index], 1)
        if conv.op == "DepthwiseConv2dNative":
            scales = ranges.reshape(weights.shape[2], weights.shape[3]) / 127.0 if ranges.ndim else ranges / 127.0
            shift = np.einsum("hwim,i->im", codes * scales - weights, means).reshape(-1)
        else:
            shift = np.einsum("hwio,i->o", codes * (ranges / 127.0) - weights, means)
        values = tensor_util.MakeNdarray(bias.attr["value"].tensor).astype(np.float64)
        if values.shape != shift.shape:
            continue
        bias.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto((values - shift).astype(np.float32)))
        report["layers_corrected"] += 1
        largest_shift = max(largest_shift, float(np.max(np.abs(shift))))
    report["largest_shift"] = round(largest_shift, 6)
    report["samples"] = int(len(samples))
    return graph, report


def pair_sums_overflow(codes: np.ndarray, filter_codes: np.ndarray) -> np.ndarray:
    """Per output channel: does ``a[2k]*w[2k] + a[2k+1]*w[2k+1]`` leave int16 for some row and tap?

    ``codes``: (rows, in channels) unsigned 8-bit activation codes; ``filter_codes``: (kh, kw,
    in channels, out channels) int8 codes. Every row meets every kernel tap: a superset of the
    pairs the convolution forms, so no overflow is missed.
    """
    taps = filter_codes.reshape(-1, filter_codes.shape[-2], filter_codes.shape[-1])  # (taps, in, out)
    over = np.zeros(taps.shape[2], dtype=bool)
    # A pair can only overflow where its two activations add up to more than INT16_MAX / max|w|.
    threshold = INT16_MAX // max(1, int(np.abs(filter_codes).max()))
    chunk = max(1, OVERFLOW_CHECK_CHUNK // (taps.shape[0] * taps.shape[2]))
    for k in range(0, taps.shape[1] - 1, 2):
        first, second = codes[:, k], codes[:, k + 1]
        rows = np.nonzero(first + second > threshold)[0]
        for start in range(0, rows.size, chunk):
            picked = rows[start:start + chunk]
            sums = first[picked, None, None] * taps[None, :, k, :] + second[picked, None, None] * taps[None, :, k + 1, :]
            over |= (np.abs(sums) > INT16_MAX).any(axis=(0, 1))
    return over


def compare_with_fp32(fp32_graph, int8_graph, input_name: str, output_names: Sequence[str],
                      inputs: np.ndarray) -> Dict[str, object]:
    """Run both graphs on ``inputs``: output error, top-1 agreement and the layers that drifted most.

    A layer's error is ``|int8 - fp32| / |fp32|`` (L2 norms) of its output, read through a
    Dequantize added for the check only; it includes what earlier layers contributed.
    """
    taps = _layer_taps(fp32_graph, int8_graph)
    probe_graph = _with_dequantize_taps(int8_graph, {tap[: -len(TAP_SUFFIX)]: tap for _, tap, _ in taps})
    fp32_fetches = [name + ":0" for name in output_names] + [fp32 + ":0" for fp32, _, _ in taps]
    int8_fetches = [name + ":0" for name in output_names] + [tap + ":0" for _, tap, _ in taps]
    fp32_values = _run(fp32_graph, input_name, fp32_fetches, inputs)
    int8_values = _run(probe_graph, input_name, int8_fetches, inputs)
    outputs = len(output_names)
    reference, result = fp32_values[0], int8_values[0]
    agreement = None
    if reference.ndim == 2 and reference.shape[1] > 1:
        agreement = float(np.mean(reference.argmax(1) == result.argmax(1)))
    layers = []
    for (fp32_name, _, op), expected, actual in zip(taps, fp32_values[outputs:], int8_values[outputs:]):
        layers.append({"layer": fp32_name, "op": op, "relative_error": round(_relative_error(expected, actual), 5)})
    layers.sort(key=lambda item: -item["relative_error"])
    return {
        "check_samples": int(inputs.shape[0]),
        "output_relative_error": round(_relative_error(reference, result), 5),
        "output_max_abs_error": float(np.max(np.abs(reference - result))),
        "top1_agreement": agreement,
        "worst_layers": layers[:WORST_LAYERS_REPORTED],
    }


def _relative_error(expected: np.ndarray, actual: np.ndarray) -> float:
    expected = expected.astype(np.float64)
    return float(np.linalg.norm(actual - expected) / max(np.linalg.norm(expected), 1e-12))


def _layer_taps(fp32_graph, int8_graph) -> List[Tuple[str, str, str]]:
    """(fp32 tensor node, tap node to add, int8 op) for each int8 layer with a requantized (int8) output."""
    fp32_nodes = {node.name: node for node in fp32_graph.node}
    consumers: Dict[str, List[object]] = {}
    for node in fp32_graph.node:
        for tensor in node.input:
            consumers.setdefault(_node_name(tensor), []).append(node)
    taps = []
    suffix = "_eightbit_requantize"
    # A fused conv + sum writes its result into the summand's buffer (oneDNN in-place sum), so
    # a second reader of the summand - our Dequantize - sees it overwritten or crashes TF 2.17
    # (segfault). Those tensors are not tapped.
    summands = {_node_name(tensor) for node in int8_graph.node if "Sum" in node.op for tensor in node.input}
    for node in int8_graph.node:
        if not node.name.endswith(suffix) or "Requantize" not in node.op or "Dequantize" in node.op:
            continue
        if node.name in summands or _output_type(node) is None:
            continue
        fp32 = fp32_nodes.get(node.name[: -len(suffix)])
        if fp32 is None:
            continue
        # The int8 op fused conv + bias [+ sum] [+ relu]: compare with the end of that fp32 chain.
        fused = ("BiasAdd",) + (("AddV2", "AddN", "Add") if "Sum" in node.op else ()) + \
                (("Relu", "Relu6") if "Relu" in node.op else ())
        while len(consumers.get(fp32.name, [])) == 1 and consumers[fp32.name][0].op in fused:
            fp32 = consumers[fp32.name][0]
        taps.append((fp32.name, node.name + TAP_SUFFIX, node.op))
    return taps


# The attr naming the quantized type a node emits: requantizing convolutions say out_type, the
# quantized MatMuls Toutput (a Dense + ReLU head, e.g. VGG16's fc1) or Tout, QuantizeV2 and pooling T.
_OUTPUT_TYPE_ATTRS = ("out_type", "Toutput", "Tout", "T")


def _output_type(node) -> Optional[int]:
    # Read attrs only where present: indexing a protobuf map inserts an empty value.
    return next((node.attr[name].type for name in _OUTPUT_TYPE_ATTRS if name in node.attr), None)


def _reader_counts(graph_def) -> Dict[str, int]:
    """Node name -> how many inputs in ``graph_def`` read one of its outputs."""
    readers: Dict[str, int] = {}
    for node in graph_def.node:
        for tensor in node.input:
            readers[_node_name(tensor)] = readers.get(_node_name(tensor), 0) + 1
    return readers


def _with_dequantize_taps(int8_graph, taps: Dict[str, str]):
    """A copy of ``int8_graph`` with a Dequantize named ``taps[source]`` reading each int8 tensor ``source``.

    Fetching an int8 kernel's raw outputs directly crashes the oneDNN layout pass (segfault
    in TF 2.17); a Dequantize consumer is the form it supports.
    """
    from tensorflow.core.framework import types_pb2

    graph = type(int8_graph)()
    graph.CopyFrom(int8_graph)
    out_types = {node.name: _output_type(node) for node in graph.node}
    for source, tap in taps.items():
        node = graph.node.add()
        node.name = tap
        node.op = "Dequantize"
        node.input.extend([source, source + ":1", source + ":2"])
        node.attr["T"].type = out_types[source]
        node.attr["mode"].s = b"SCALED"
        node.attr["dtype"].type = types_pb2.DT_FLOAT
    return graph


def _run(graph_def, input_name: str, fetches: Sequence[str], inputs: np.ndarray) -> List[np.ndarray]:
    return _runner(graph_def, input_name, fetches)(inputs)


def _runner(graph_def, input_name: str, fetches: Sequence[str]):
    """A callable running ``graph_def`` on a batch; build it once per graph (importing costs seconds)."""
    import tensorflow as tf
    from tensorflow.python.eager import wrap_function

    function = wrap_function.function_from_graph_def(graph_def, [input_name + ":0"], list(fetches))
    return lambda inputs: [value.numpy() for value in function(tf.constant(inputs))]


def _check_names(graph_def, names: Iterable[str]) -> None:
    present = {node.name for node in graph_def.node}
    missing = [name for name in names if name not in present]
    if missing:
        raise ConversionError(f"the int8 graph lost the signature's tensors {missing}; use --precision=bf16 "
                              "and report this model.")


def _node_name(tensor: str) -> str:
    return tensor.lstrip("^").split(":")[0]


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
