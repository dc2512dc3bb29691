"""The cpu backend: TF-TRT's offline pipeline without TensorRT, for oneDNN on CPUs.

freeze variables → grappler passes (inlining, constant folding, arithmetic, layout,
remapping/fusion) → optionally BF16 compute baked in by grappler's oneDNN mixed-precision
pass → a plain SavedModel with the original signature. Measured on ResNet50 (2-core
Sapphire Rapids): fp32 ≈1.36×, bf16 ≈2× over plain ``tf.saved_model.load``.
"""

from __future__ import annotations

import dataclasses
import gc
import time
from typing import Optional

from tftrt_toolkit.backends import graph_passes
from tftrt_toolkit.backends import held_weights
from tftrt_toolkit.backends.held_weights import HeldWeights
from tftrt_toolkit.backends.base import Conversion, ConversionBackend, InputFn
from tftrt_toolkit.config import Backend, ConversionConfig, Precision
from tftrt_toolkit.steps import step
from tftrt_toolkit.environment import Environment
from tftrt_toolkit.errors import BackendUnavailable, ConfigError, ConversionError
from tftrt_toolkit.models.loader import LoadedModel


class CpuBackend(ConversionBackend):
    name = "cpu"

    def check_available(self, config: ConversionConfig, env: Environment) -> None:
        from tftrt_toolkit.backends.precisions import offer_for, offered_precisions

        config.check_backend_supports_precision(Backend.CPU)
        offer = offer_for(env, "cpu", config.precision.value)
        if not offer.available:
            here = ", ".join(offered_precisions(env, "cpu"))
            raise BackendUnavailable(f"precision={config.precision.value} on the cpu backend cannot run here: "
                                     f"{offer.reason}; this machine offers {here}.")
        if config.precision is Precision.INT8:
            from tftrt_toolkit.backends import cpu_int8

            cpu_int8.check_available(env)

    def convert(self, model: LoadedModel, config: ConversionConfig, *,
                calibration_input_fn: Optional[InputFn] = None,
                build_input_fn: Optional[InputFn] = None) -> Conversion:
        timings = {}
        if config.precision is Precision.INT8:
            _check_weights_fit_in_one_graph(model)
        start = time.perf_counter()
        with step("freeze"):
            frozen = graph_passes.freeze_signature(model.saved_model_dir, model.signature.key)
        timings["freeze_s"] = time.perf_counter() - start
        nodes_frozen = len(frozen.graph_def.node)
        # What the rebuilt function copies from the original: taken now, so the loaded model can
        # go. Its variables are a second copy of the weights the int8 quantizer copies again, and
        # nothing below reads it; the held weights' arrays keep their own buffers alive.
        structure = graph_passes.SignatureStructure.of(frozen.original_function)
        frozen.loaded = frozen.original_function = None
        gc.collect()

        start = time.perf_counter()
        stages = graph_passes.CPU_BF16_STAGES if config.precision is Precision.BF16 else graph_passes.CPU_FP32_STAGES
        if config.precision is Precision.INT8:
            from tftrt_toolkit.backends import cpu_int8

            # The int8 quantizer matches plain Conv2D/BiasAdd/Relu, not the remapper's _FusedConv2D.
            stages = cpu_int8.PREQUANTIZE_STAGES
        graph_def, records = graph_passes.optimize_graph(frozen, stages, keep_fp32_ops=config.bf16_keep_fp32_ops)
        if config.precision is Precision.BF16 and _count_bf16_nodes(graph_def) == 0:
            # Grappler logs a failed pass and returns the graph unchanged; never save that as "bf16".
            logged = [e for r in records for e in r.grappler_errors]
            raise ConversionError(
                f"the bf16 pass converted no ops ({'; '.join(logged[:2]) or 'grappler skipped it'}); "
                "check --bf16_keep_fp32_ops names real op types, or use --precision=fp32."
            )
        timings["optimize_s"] = time.perf_counter() - start

        summary = {
            "nodes_frozen": nodes_frozen,
            "nodes_optimized": len(graph_def.node),
            "stages": [r.to_json() for r in records],
            "stages_that_changed_the_graph": [r.name for r in records if r.changed],
            "op_histogram": graph_passes.op_histogram(graph_def),
        }
        if config.precision is Precision.BF16:
            summary["bf16_nodes"] = _count_bf16_nodes(graph_def)
            summary["kept_fp32_ops"] = list(config.bf16_keep_fp32_ops)

        if config.precision is Precision.INT8:
            from tftrt_toolkit.backends import cpu_int8

            if calibration_input_fn is None:
                raise ConfigError("precision=int8 needs calibration data; pass --calibration_data=DIR|FILE.npz|synthetic.")
            start = time.perf_counter()
            # The quantizer reads and rewrites the weights itself: it gets them back in the graph.
            frozen = dataclasses.replace(frozen, graph_def=frozen.held.restored(graph_def), held=HeldWeights())
            # quantize() reports its own steps (quantize, int16_overflow_guard, bias_correction, int8_check).
            graph_def, int8_summary = cpu_int8.quantize(
                frozen, model.signature, calibration_input_fn,
                overflow_safe_weights=config.int8_overflow_safe_weights,
                bias_correction=config.int8_bias_correction)
            timings["quantize_s"] = time.perf_counter() - start
            summary["int8"] = int8_summary
            summary["op_histogram"] = graph_passes.op_histogram(graph_def)

        variables = ()
        with step("rebuild"):
            if frozen.held.nbytes > held_weights.GRAPH_CONSTANTS_BUDGET_BYTES:
                # Past protobuf's 2 GB the weights cannot all be constants of one graph: they
                # become variables the graph reads, saved in the checkpoint.
                summary["weights_stored_as"] = "variables"
                function, variables = graph_passes.rebuild_function_reading_variables(frozen, graph_def, structure)
            else:
                summary["weights_stored_as"] = "graph constants"
                function = graph_passes.rebuild_function(frozen, graph_def, structure)

        def write(output_dir: str) -> None:
            if variables:
                graph_passes.save_function(function, output_dir, model.signature.key, variables=variables)
                return
            try:
                graph_passes.save_function(function, output_dir, model.signature.key, frozen.held)
            except RuntimeError:
                # A stand-in did not survive saving as one constant (never seen): save with the
                # weights in the graph, the slow way.
                classic = graph_passes.rebuild_function(frozen, frozen.held.restored(graph_def), structure)
                graph_passes.save_function(classic, output_dir, model.signature.key)

        from tftrt_toolkit.analysis.precision_coverage import check_coverage, precision_coverage
        from tftrt_toolkit.backends.runtime_requirements import runtime_requirements

        # Share of the multiply-adds in the precision asked for; too small a share is refused, nothing written.
        coverage = precision_coverage(graph_def, config.precision.value)
        summary["precision_coverage"] = coverage.to_json()
        check_coverage(coverage, allow_partial=config.allow_partial_precision)
        summary["runtime"] = runtime_requirements(graph_def, config.precision.value)
        return Conversion(backend=self.name, precision=config.precision.value, write=write,
                          summary=summary, timings=timings)


def _check_weights_fit_in_one_graph(model: LoadedModel) -> None:
    """Refuse, before any heavy work, int8 for a model whose weights cannot be graph constants (protobuf's 2 GB).

    fp32 and bf16 keep such weights as variables; the int8 quantizer rewrites every weight as a
    constant of the one graph it quantizes.
    """
    weight_bytes = held_weights.saved_weight_bytes(model.saved_model_dir)
    if weight_bytes > held_weights.GRAPH_CONSTANTS_BUDGET_BYTES:
        raise ConversionError(
            f"the model's weights take {weight_bytes / 1e9:.2f} GB, and int8 conversion rewrites them as constants "
            "of one graph, which protobuf limits to 2 GB; convert it with --precision=fp32 or bf16 (weights past "
            "2 GB stay variables), or shrink its weights below 2 GB before converting to int8."
        )


def _count_bf16_nodes(graph_def) -> int:
    from tensorflow.core.framework import types_pb2

    return sum(1 for node in graph_def.node
               if "T" in node.attr and node.attr["T"].type == types_pb2.DT_BFLOAT16)
