"""What a converted graph needs from the TensorFlow that runs it: today, whether TF's oneDNN ops must be on.

TF registers some kernels only in its oneDNN build path, used only where ``IsMklEnabled()``
is true: the int8 ops INC writes (``QuantizedConv2DWithBias*AndRequantize``, ...), bf16
compute, and fusions grappler's remapper makes only with oneDNN on (e.g. ``_FusedConv2D``
with ``BiasAdd,Add``: measured, an EfficientNet-Lite0 converted with oneDNN on fails in a
oneDNN-off process with "Fusion is not implemented: [BiasAdd,Add]"). On CPUs where TF
leaves oneDNN off by default (AVX2-only), a plain TF user must set TF_ENABLE_ONEDNN_OPTS=1
to serve such a model; the toolkit records it so ``predict``/``validate``/``benchmark`` and
``inspect`` can say so in one line instead of an InternalError.
"""

from __future__ import annotations

from typing import Dict, Iterable, Tuple

# The fusions TF's Eigen (non-oneDNN) kernels implement for _FusedConv2D/_FusedMatMul/
# _FusedDepthwiseConv2dNative (tensorflow/core/kernels/conv_ops_fused_impl.h,
# matmul_op_fused.cc, depthwise_conv_op.cc in TF 2.17); anything else needs oneDNN.
EIGEN_FUSIONS = frozenset({
    ("BiasAdd",), ("BiasAdd", "Relu"), ("BiasAdd", "Relu6"), ("BiasAdd", "Elu"), ("BiasAdd", "LeakyRelu"),
    ("FusedBatchNorm",), ("FusedBatchNorm", "Relu"), ("FusedBatchNorm", "Relu6"), ("FusedBatchNorm", "Elu"),
    ("FusedBatchNorm", "LeakyRelu"),
})
ONEDNN_OP_PREFIXES = ("_Mkl", "Quantized", "_Quantized")
# oneDNN ops whose CPU kernels TF registers without the oneDNN label (mkl_layer_norm_op.cc): they call
# oneDNN directly, whether TF's oneDNN ops are on or not. Measured: a bf16 transformer holding
# _MklLayerNorm ran in a TF_ENABLE_ONEDNN_OPTS=0 process under ONEDNN_MAX_CPU_ISA=AVX2.
RUN_WITH_ONEDNN_OFF = frozenset({"_MklLayerNorm"})


def _nodes(graph_def) -> Iterable:
    yield from graph_def.node
    for function in graph_def.library.function:
        yield from function.node_def


def onednn_only_ops(graph_def) -> Dict[str, int]:
    """{op (with its fusion, e.g. "_FusedConv2D[BiasAdd,Add]"): count} of the nodes only oneDNN kernels run."""
    found: Dict[str, int] = {}
    for node in _nodes(graph_def):
        name = None
        if node.op in RUN_WITH_ONEDNN_OFF:
            continue
        if node.op.startswith(ONEDNN_OP_PREFIXES):
            name = node.op
        elif "fused_ops" in node.attr:
            fusion: Tuple[str, ...] = tuple(op.decode() for op in node.attr["fused_ops"].list.s)
            if fusion not in EIGEN_FUSIONS:
                name = f"{node.op}[{','.join(fusion)}]"
        if name:
            found[name] = found.get(name, 0) + 1
    return found


# bf16 graphs run in two ways, measured on a Sapphire Rapids Xeon capped with ONEDNN_MAX_CPU_ISA:
# with TF's oneDNN ops on, oneDNN needs AVX512 (natively AVX512-BF16/AMX, emulated on plain
# AVX512) and a bf16 Conv2D aborts on an AVX2 cap; with them off (TF_ENABLE_ONEDNN_OPTS=0), TF's
# Eigen bf16 kernels run them on any x86-64 CPU, slowly, with the same top-1.
BF16_ONEDNN_NEEDS = "AVX512"


def runtime_requirements(graph_def, precision: str) -> dict:
    """The ``runtime`` record of a converted model's metadata: {"requires_onednn", "why", ...}.

    bf16 models also carry ``onednn_needs_cpu`` ("AVX512"): what TF's oneDNN ops need to run
    them, so a process with oneDNN on and a smaller CPU can say so in one line.
    """
    ops = onednn_only_ops(graph_def)
    if precision == "int8":
        record = {"requires_onednn": True, "why": "int8 compute runs only in TF's oneDNN kernels", "onednn_only_ops": ops}
    elif ops:
        listed = ", ".join(f"{op} x{count}" for op, count in sorted(ops.items(), key=lambda item: -item[1])[:3])
        record = {"requires_onednn": True, "why": f"fused ops only TF's oneDNN kernels implement: {listed}",
                  "onednn_only_ops": ops}
    elif precision == "bf16":
        record = {"requires_onednn": False,
                  "why": "bf16 runs in TF's oneDNN kernels on AVX512 CPUs (natively with AVX512-BF16 or AMX), and in "
                         "TF's Eigen kernels (slowly) on any CPU with TF_ENABLE_ONEDNN_OPTS=0"}
    else:
        return {"requires_onednn": False, "why": "every op has a kernel with oneDNN on or off"}
    if precision == "bf16":
        record["onednn_needs_cpu"] = BF16_ONEDNN_NEEDS
    return record
