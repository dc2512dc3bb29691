"""The cpu backend's stage lists: TF-TRT's cleanup plus our folds, oneDNN fusion and bf16.

Each stage takes a ``FrozenSignature`` and returns a new one (``frozen.grappler.optimize_graph``).
"""

from __future__ import annotations

import dataclasses

from tftrt_toolkit.backends.frozen.grappler import BF16_PASS, CLEANUP, LAYOUT, Stage


def _fold_affine(graph_def, keep, held):
    from tftrt_toolkit.backends.cpu.folds import fold_affine_ops

    graph_def, _, held = fold_affine_ops(graph_def, keep=tuple(keep), held=held)
    return graph_def, held


def _previous_stage_changed_nothing(graph_def, records) -> str:
    # Cleanup already ran on this graph; it can only find new work where the fold rewrote something.
    return "" if records and records[-1].changed else f"{records[-1].name if records else 'nothing'} changed nothing"


# Keras 3 exports BatchNorm as Mul/AddV2 by constants that grappler never folds into the
# convolution; folding them (then cleaning up) lets oneDNN fuse conv + bias + activation.
FOLD_BATCHNORM = Stage("fold_batchnorm", transform=_fold_affine)
CLEANUP_AFTER_FOLD = dataclasses.replace(CLEANUP, name="cleanup_after_fold", skip_reason=_previous_stage_changed_nothing)
# BF16: grappler's oneDNN mixed-precision pass, then constant folding so weights are stored as
# bf16 constants instead of fp32 constants cast at every call.
BF16 = Stage("bf16", (BF16_PASS, "constfold", "arithmetic", "dependency"))


def _fold_weight_casts(graph_def, keep, held):
    from tftrt_toolkit.backends.cpu.folds import fold_weight_casts

    graph_def, _, held = fold_weight_casts(graph_def, held)
    return graph_def, held


# Constant folding stored bf16 weights when they were graph constants; held aside, we cast them.
FOLD_WEIGHT_CASTS = Stage("fold_weight_casts", transform=_fold_weight_casts)


def _fuse_layer_norms(graph_def, keep, held):
    from tftrt_toolkit.backends.cpu.layer_norm_fusion import fuse_layer_norms

    graph_def, _ = fuse_layer_norms(graph_def, keep=tuple(keep), held=held)
    return graph_def, held


def _no_layer_norm_ops(graph_def, records) -> str:
    return "" if any(node.op == "SquaredDifference" for node in graph_def.node) else "no LayerNorm (SquaredDifference) ops"


# Keras 3's ten-op LayerNorm → one oneDNN _MklLayerNorm (the remapper knows only tf.keras's pattern).
FUSE_LAYER_NORM = Stage("fuse_layer_norm", transform=_fuse_layer_norms, skip_reason=_no_layer_norm_ops)


def _projections_to_matmuls(graph_def, keep, held):
    from tftrt_toolkit.backends.cpu.projection_matmuls import projections_to_matmuls

    graph_def, held, _ = projections_to_matmuls(graph_def, keep=tuple(keep), held=held)
    return graph_def, held


def _no_batch_matmuls(graph_def, records) -> str:
    return "" if any(node.op == "BatchMatMulV2" for node in graph_def.node) else "no BatchMatMulV2 ops"


# Keras 3's EinsumDense projections (BatchMatMulV2 by a reshaped constant weight) → 2-D MatMuls,
# which the int8 quantizer takes; cleanup then merges the Reshapes. Only before int8: in fp32 and
# bf16 it measured neutral (benchmarks/transformer_cpu_notes.md).
PROJECTIONS_TO_MATMULS = Stage("projections_to_matmuls", transform=_projections_to_matmuls,
                               skip_reason=_no_batch_matmuls)
CLEANUP_AFTER_PROJECTIONS = dataclasses.replace(CLEANUP, name="cleanup_after_projections",
                                                skip_reason=_previous_stage_changed_nothing)


def _constant_reshape_shapes(graph_def, keep, held):
    from tftrt_toolkit.backends.cpu.static_reshapes import constant_reshape_shapes

    graph_def, held, _ = constant_reshape_shapes(graph_def, keep=tuple(keep), held=held)
    return graph_def, held


def _no_dynamic_reshapes(graph_def, records) -> str:
    return "" if any(node.op == "Shape" for node in graph_def.node) else "no shapes computed at run time (Shape ops)"


# Keras 3's Tensordot (Dense on [B, T, C]) computes its Reshapes' shapes at every call: made constants.
STATIC_RESHAPES = Stage("static_reshapes", transform=_constant_reshape_shapes, skip_reason=_no_dynamic_reshapes)
# Conv/MatMul + BiasAdd + activation → oneDNN fused kernels.
FUSION = Stage("fusion", ("remap", "constfold", "dependency"), place_on_cpu=True)


def _fuse_ready_gelus(graph_def, keep, held):
    from tftrt_toolkit.backends.cpu.matmul_gelu import fuse_ready_gelus

    graph_def, _ = fuse_ready_gelus(graph_def, keep=tuple(keep), held=held)
    if held is not None:
        held = held.used_by(graph_def)
    return graph_def, held


def _no_gelu_ops(graph_def, records) -> str:
    return "" if any(node.op in ("Erf", "Tanh") for node in graph_def.node) else "no GELU (Erf, Tanh) ops"


# Keras 3's Dense + GELU reshaped to MatMul ─ BiasAdd ─ GELU ─ Reshape (backends/cpu/matmul_gelu.py):
# plain ops in the saved graph, which TF's remapper fuses into one oneDNN kernel when the model is
# loaded with oneDNN on (and Eigen runs as they are with it off). After FUSION, so that our own
# remapper run (oneDNN on here) does not fuse it into a _FusedMatMul that only oneDNN can run; in
# bf16 after the pass, which kept the GELU in fp32 (TRANSFORMER_FP32_OPS): the rewrite puts it in
# bf16 with its MatMul, the one dtype the remapper fuses. On the 4x256 transformer: fp32 1.05x at
# bs1, 1.18x at bs8; bf16 1.28x, 1.17x (benchmarks/transformer_cpu_notes.md).
GELU_READY = Stage("gelu_ready", transform=_fuse_ready_gelus, skip_reason=_no_gelu_ops)

CPU_FP32_STAGES = (CLEANUP, FOLD_BATCHNORM, CLEANUP_AFTER_FOLD, LAYOUT, FUSE_LAYER_NORM, FUSION, GELU_READY)
# No offline fusion under bf16: grappler's _FusedConv2D does not accept bfloat16 (the saved graph
# would not load), while at run time TF rewrites fusions into oneDNN kernels that do. Random-weight
# models hide this (zero biases fold away, leaving nothing to fuse); real weights do not.
# LayerNorm is fused before the bf16 pass, which leaves _MklLayerNorm in fp32 between two Casts:
# the ten ops in bf16 were a third of a bf16 transformer's time (Eigen's elementwise bf16 is slow).
# Constant Reshape shapes measured 1.04-1.10x at bs1 in bf16 (fewer ops per call), neutral in fp32 and int8.
CPU_BF16_STAGES = (CLEANUP, FOLD_BATCHNORM, CLEANUP_AFTER_FOLD, LAYOUT, FUSE_LAYER_NORM, STATIC_RESHAPES, BF16,
                   FOLD_WEIGHT_CASTS, GELU_READY)
# The bf16 stages in two runs: what prepares the graph, then the pass, whose fp32 ops depend on that graph.
CPU_BF16_PREPARE_STAGES = CPU_BF16_STAGES[:CPU_BF16_STAGES.index(BF16)]
CPU_BF16_PASS_STAGES = CPU_BF16_STAGES[CPU_BF16_STAGES.index(BF16):]

# A transformer's elementwise ops between its matmuls (GELU's Erf/Mul/AddV2, residual adds, the
# attention scale): Eigen runs them in bf16 element by element, in fp32 vectorized; kept in fp32 they
# measured 1.15-1.25x faster over the whole 4-layer model of issue 25 (benchmarks/transformer_cpu_notes.md).
# Only where the graph holds a fused LayerNorm: a CNN's residual adds stay bf16, fused into convolutions.
TRANSFORMER_FP32_OPS = ("Erf", "Mul", "AddV2")


def bf16_fp32_ops(graph_def, asked) -> tuple:
    """The op types the bf16 pass keeps in fp32 for ``graph_def``: ``asked`` plus, in a transformer, its elementwise ops."""
    from tftrt_toolkit.backends.cpu.layer_norm_fusion import FUSED_OP

    asked = tuple(asked)
    if not any(node.op == FUSED_OP for node in graph_def.node):
        return asked
    return asked + tuple(op for op in TRANSFORMER_FP32_OPS if op not in asked)
# Before quantizing: cleanup and layout, no remapper fusion (the int8 quantizer matches plain
# Conv2D/BiasAdd/Relu, not _FusedConv2D, and fuses itself), projections made MatMuls it quantizes,
# LayerNorm fused (INC leaves the op as it is; 1.2x at bs8, 1.02x at bs1 on the 4x256 transformer).
# No GELU_READY: INC fuses MatMul + BiasAdd + GELU only from a single Gelu op (made by Intel's TF
# 1.15 builds alone), and TF's remapper fuses no quantized MatMul with a GELU: measured neutral.
PREQUANTIZE_STAGES = (CLEANUP, LAYOUT, PROJECTIONS_TO_MATMULS, CLEANUP_AFTER_PROJECTIONS, FUSE_LAYER_NORM)
