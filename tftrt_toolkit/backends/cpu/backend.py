"""The cpu backend: TF-TRT's offline pipeline without TensorRT, for oneDNN on CPUs.

freeze variables → grappler passes (inlining, constant folding, arithmetic, layout,
remapping/fusion) → optionally BF16 compute baked in by grappler's oneDNN mixed-precision
pass → a plain SavedModel with the original signature. Measured on ResNet50 (2-core
Sapphire Rapids): fp32 ≈1.36×, bf16 ≈2× over plain ``tf.saved_model.load``.

Each step takes a ``FrozenSignature`` and returns a new one; the ``frozen`` name below is
rebound as each step returns, so the value before it (the graph and the weights it held)
is freed at once.
"""

from __future__ import annotations

import gc
import time
from typing import Optional

from tftrt_toolkit.backends import graphdef, weights_size
from tftrt_toolkit.backends.base import Conversion, ConversionBackend, InputFn
from tftrt_toolkit.backends.cpu import rebuild, stages
from tftrt_toolkit.backends.frozen.freeze import freeze_signature
from tftrt_toolkit.backends.frozen.grappler import optimize_graph
from tftrt_toolkit.config import Backend, ConversionConfig, Precision
from tftrt_toolkit.environment import Environment
from tftrt_toolkit.errors import BackendUnavailable, ConfigError, ConversionError
from tftrt_toolkit.models.loader import LoadedModel
from tftrt_toolkit.steps import step


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
            from tftrt_toolkit.backends.cpu import int8

            int8.check_available(env)

    def convert(self, model: LoadedModel, config: ConversionConfig, *,
                calibration_input_fn: Optional[InputFn] = None,
                build_input_fn: Optional[InputFn] = None) -> Conversion:
        timings, summary, frozen_at = {}, {}, []
        if config.precision is Precision.INT8:
            _check_weights_fit_in_one_graph(model)

        def freeze():
            start = time.perf_counter()
            with step("freeze"):
                frozen = freeze_signature(model.saved_model_dir, model.signature.key)
            timings["freeze_s"] = time.perf_counter() - start
            summary["nodes_frozen"] = len(frozen.graph_def.node)
            # The loaded model went as freezing returned: its variables are a second copy of the
            # weights (which the int8 quantizer copies again). TF's objects form reference
            # cycles: collect them now, before the stages run.
            gc.collect()
            frozen_at.append(time.perf_counter())
            return frozen

        chosen = stages.CPU_FP32_STAGES
        if config.precision is Precision.INT8:
            # The int8 quantizer matches plain Conv2D/BiasAdd/Relu, not the remapper's _FusedConv2D.
            chosen = stages.PREQUANTIZE_STAGES
        # A loader, not a value (Polygraphy's way): nothing here holds the unoptimised graph
        # and its weights while the stages run.
        kept_fp32_ops = config.bf16_keep_fp32_ops
        if config.precision is Precision.BF16:
            # Which ops stay fp32 depends on the prepared graph (a transformer keeps its elementwise ops).
            prepared, records = optimize_graph(freeze, stages.CPU_BF16_PREPARE_STAGES)
            kept_fp32_ops = stages.bf16_fp32_ops(prepared.graph_def, config.bf16_keep_fp32_ops)
            handoff = [prepared]  # handed over, not held here while the pass runs
            del prepared
            frozen, pass_records = optimize_graph(handoff.pop, stages.CPU_BF16_PASS_STAGES, keep_fp32_ops=kept_fp32_ops)
            records += pass_records
        else:
            frozen, records = optimize_graph(freeze, chosen)
        if config.token_branches > 1 and config.precision in (Precision.FP32, Precision.BF16):
            from tftrt_toolkit.backends.cpu.token_branches import split_tokens

            with step("token_branches"):
                frozen, summary["token_branches"] = split_tokens(frozen, config.token_branches,
                                                                 config.precision.value)
        if config.precision is Precision.BF16 and _count_bf16_nodes(frozen.graph_def) == 0:
            # Grappler logs a failed pass and returns the graph unchanged; never save that as "bf16".
            logged = [e for r in records for e in r.grappler_errors]
            raise ConversionError(
                f"the bf16 pass converted no ops ({'; '.join(logged[:2]) or 'grappler skipped it'}); "
                "check --bf16_keep_fp32_ops names real op types, or use --precision=fp32."
            )
        timings["optimize_s"] = time.perf_counter() - frozen_at[0]

        summary.update({
            "nodes_optimized": len(frozen.graph_def.node),
            "stages": [r.to_json() for r in records],
            "stages_that_changed_the_graph": [r.name for r in records if r.changed],
            "op_histogram": graphdef.op_histogram(frozen.graph_def),
        })
        if config.precision is Precision.BF16:
            summary["bf16_nodes"] = _count_bf16_nodes(frozen.graph_def)
            summary["kept_fp32_ops"] = list(kept_fp32_ops)

        if config.precision is Precision.INT8:
            from tftrt_toolkit.backends.cpu import int8

            if calibration_input_fn is None:
                raise ConfigError("precision=int8 needs calibration data; pass --calibration_data=DIR|FILE.npz|synthetic.")
            start = time.perf_counter()
            # The quantizer reads and rewrites the weights itself: they go back in the graph (the
            # held copies go with the record before), then our folds (the unfolded graph goes as
            # they return, before INC copies the folded one).
            frozen = frozen.with_weights_in_graph()
            frozen, folded_ops = int8.fold_for_quantizing(frozen)
            # quantize() reports its own steps (quantize, int16_overflow_guard, bias_correction, int8_check).
            int8_graph, summary["int8"] = int8.quantize(
                frozen, model.signature, calibration_input_fn, ops_folded=folded_ops,
                overflow_safe_weights=config.int8_overflow_safe_weights,
                bias_correction=config.int8_bias_correction,
                fuse_residual_adds=config.int8_fuse_residual_adds)
            frozen = frozen.with_graph(int8_graph)
            del int8_graph
            timings["quantize_s"] = time.perf_counter() - start
            summary["op_histogram"] = graphdef.op_histogram(frozen.graph_def)

        from tftrt_toolkit.backends.precision_coverage import check_coverage, precision_coverage

        # Share of the multiply-adds in the precision asked for; too small a share is refused
        # before the rebuild, nothing written.
        coverage = precision_coverage(frozen.graph_def, config.precision.value)
        summary["precision_coverage"] = coverage.to_json()
        check_coverage(coverage, allow_partial=config.allow_partial_precision)

        variables = ()
        with step("rebuild"):
            if not weights_size.fit_in_one_graph(frozen.held.nbytes):
                # Past protobuf's 2 GB the weights cannot all be constants of one graph: they
                # become variables the graph reads, saved in the checkpoint. They are handed over
                # (the record keeps none), each array freed as it moves into its variable.
                summary["weights_stored_as"] = "variables"
                weights = dict(frozen.held.values)
                frozen = frozen.with_graph(frozen.graph_def)
                function, variables = rebuild.rebuild_function_reading_variables(frozen, weights)
            else:
                summary["weights_stored_as"] = "graph constants"
                function = rebuild.rebuild_function(frozen)

        def write(output_dir: str) -> None:
            if variables:
                rebuild.save_function(function, output_dir, model.signature.key, variables=variables)
                return
            try:
                rebuild.save_function(function, output_dir, model.signature.key, frozen.held.sources)
            except RuntimeError:
                # A stand-in did not survive saving as one constant (never seen): save with the
                # weights in the graph, the slow way.
                classic = rebuild.rebuild_function(frozen.with_weights_in_graph())
                rebuild.save_function(classic, output_dir, model.signature.key)

        from tftrt_toolkit.backends.runtime_requirements import runtime_requirements

        summary["runtime"] = runtime_requirements(frozen.graph_def, config.precision.value)
        if summary.get("token_branches", {}).get("serving_threads"):
            summary["runtime"]["serving_threads"] = summary["token_branches"]["serving_threads"]
        return Conversion(backend=self.name, precision=config.precision.value, write=write,
                          summary=summary, timings=timings)


def _check_weights_fit_in_one_graph(model: LoadedModel) -> None:
    """Refuse, before any heavy work, int8 for a model whose weights cannot be graph constants (protobuf's 2 GB).

    fp32 and bf16 keep such weights as variables; the int8 quantizer rewrites every weight as a
    constant of the one graph it quantizes.
    """
    weight_bytes = weights_size.saved_weight_bytes(model.saved_model_dir)
    if not weights_size.fit_in_one_graph(weight_bytes):
        raise ConversionError(
            f"the model's weights take {weight_bytes / 1e9:.2f} GB, and int8 conversion rewrites them as constants "
            "of one graph, which protobuf limits to 2 GB; convert it with --precision=fp32 or bf16 (weights past "
            "2 GB stay variables), or shrink its weights below 2 GB before converting to int8."
        )


def _count_bf16_nodes(graph_def) -> int:
    from tensorflow.core.framework import types_pb2

    return sum(1 for node in graph_def.node
               if "T" in node.attr and node.attr["T"].type == types_pb2.DT_BFLOAT16)
