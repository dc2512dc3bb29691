"""The tensorrt backend: a wrapper of TF-TRT's ``TrtGraphConverterV2`` (TensorFlow ≤ 2.17 with TensorRT).

convert (with INT8 calibration when asked) → optional ``build()`` for chosen shapes →
``summary()`` captured into the metadata → ``save()``. Nothing here runs on a machine
without TensorRT: ``check_available`` refuses first, using only probes that cannot abort.

TF-TRT facts this code relies on (from TF 2.17's trt_convert.py and NVIDIA's benchmark harness):
- with use_dynamic_shape, calibration happens inside build(), so INT8 + dynamic shape needs build inputs;
  one input function serves both calibration and build();
- save() serialises the engines and clears TF-TRT's engine cache: reload the saved model to run it;
- the converter keeps the loaded SavedModel alive; we keep the converter until the write is done;
- convert() freezes the signature with convert_variables_to_constants_v2: every weight becomes a
  constant of one GraphDef, which protobuf limits to 2 GB. Only with use_dynamic_shape=True and
  TF_TRT_EXPERIMENTAL_FEATURES=disable_graph_freezing does it keep the variables (and save() then
  saves them); for larger models we refuse before any work unless both are set.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

from tftrt_toolkit.backends import weights_size
from tftrt_toolkit.backends.base import Conversion, ConversionBackend, InputFn
from tftrt_toolkit.backends.tensorrt.converter import (
    NOT_BUILT_WITH_TENSORRT,
    default_converter_factory,
    parse_summary,
    tensorrt_libraries_missing,
)
from tftrt_toolkit.config import Backend, ConversionConfig
from tftrt_toolkit.environment import Environment
from tftrt_toolkit.errors import BackendUnavailable, ConfigError, ConversionError, first_line
from tftrt_toolkit.models.loader import LoadedModel


class TensorRTBackend(ConversionBackend):
    """TF-TRT conversion. ``converter_factory`` is injectable so orchestration can be tested without a GPU."""

    name = "tensorrt"

    def __init__(self, converter_factory: Callable[..., object] = default_converter_factory):
        self._converter_factory = converter_factory

    def check_available(self, config: ConversionConfig, env: Environment) -> None:
        config.check_backend_supports_precision(Backend.TENSORRT)
        if not env.tensorflow_built_with_tensorrt:
            raise BackendUnavailable(NOT_BUILT_WITH_TENSORRT)
        if env.tensorrt_loaded_version is None:
            raise BackendUnavailable(tensorrt_libraries_missing(env))
        if not env.gpus:
            raise BackendUnavailable("TF-TRT needs a GPU and TensorFlow sees none; check the CUDA driver, or use --backend=cpu.")

    def convert(self, model: LoadedModel, config: ConversionConfig, *,
                calibration_input_fn: Optional[InputFn] = None,
                build_input_fn: Optional[InputFn] = None) -> Conversion:
        if config.needs_calibration and calibration_input_fn is None:
            raise ConfigError("precision=int8 with TensorRT needs calibration data; pass --calibration_data=DIR|FILE.npz|synthetic.")
        if config.needs_calibration and config.use_dynamic_shape and build_input_fn is None:
            # TF-TRT calibrates inside build() in dynamic-shape mode; the calibration inputs build too.
            build_input_fn = calibration_input_fn
        _check_weights_fit_tftrt(model, config)
        timings = {}
        start = time.perf_counter()
        plan = _predict_segments(model, config)
        timings["plan_s"] = time.perf_counter() - start
        try:
            converter = self._converter_factory(
                input_saved_model_dir=model.saved_model_dir,
                input_saved_model_signature_key=model.signature.key,
                **config.tensorrt_converter_kwargs(),
            )
            start = time.perf_counter()
            if config.needs_calibration:
                converter.convert(calibration_input_fn=calibration_input_fn)
            else:
                converter.convert()
            timings["convert_s"] = time.perf_counter() - start

            if build_input_fn is not None:
                start = time.perf_counter()
                converter.build(input_fn=build_input_fn)
                timings["build_s"] = time.perf_counter() - start

            summary_lines = []
            converter.summary(line_length=160, detailed=True, print_fn=summary_lines.append)
        except (RuntimeError, ValueError, TypeError) as error:
            first = first_line(error, limit=240)
            if "not been built with TensorRT" in first:
                # TF says this both for non-TensorRT builds and when the libraries did not load.
                from tftrt_toolkit.environment import probe

                env = probe()
                reason = tensorrt_libraries_missing(env) if env.tensorflow_built_with_tensorrt else NOT_BUILT_WITH_TENSORRT
                raise BackendUnavailable(reason) from error
            raise ConversionError(f"TF-TRT conversion failed: {first}") from error

        summary = {
            "converter_summary": "\n".join(str(line) for line in summary_lines),
            "engines_built_ahead_of_time": build_input_fn is not None,
            "converter_kwargs": config.tensorrt_converter_kwargs(),
        }
        summary.update(parse_summary(summary_lines))
        if plan is not None:
            summary["segment_plan"] = _compact_plan(plan)
            # TF-TRT keeps the converted GraphDef after convert(); set the real engines beside the prediction.
            converted_graph_def = getattr(converter, "_converted_graph_def", None)
            if converted_graph_def is not None:
                from tftrt_toolkit.analysis.tensorrt_plan import compare_with_conversion

                summary["segment_plan_vs_conversion"] = compare_with_conversion(plan, converted_graph_def).to_json()

        def write(output_dir: str) -> None:
            converter.save(output_dir, save_gpu_specific_engines=config.save_gpu_specific_engines)

        return Conversion(backend=self.name, precision=config.precision.value, write=write,
                          summary=summary, timings=timings)


def _check_weights_fit_tftrt(model: LoadedModel, config: ConversionConfig) -> None:
    """Refuse a model whose weights TF-TRT would freeze past protobuf's 2 GB, before any heavy work."""
    import os

    keeps_variables = config.use_dynamic_shape and "disable_graph_freezing" in os.environ.get(
        "TF_TRT_EXPERIMENTAL_FEATURES", "").split(",")
    weight_bytes = weights_size.saved_weight_bytes(model.saved_model_dir)
    if not weights_size.fit_in_one_graph(weight_bytes) and not keeps_variables:
        raise ConversionError(
            f"the model's weights take {weight_bytes / 1e9:.2f} GB, and TF-TRT freezes them into one graph, which "
            "protobuf limits to 2 GB; pass --use_dynamic_shape and set TF_TRT_EXPERIMENTAL_FEATURES=disable_graph_freezing "
            "so TF-TRT keeps them as variables, or shrink the weights below 2 GB."
        )


def _predict_segments(model: LoadedModel, config: ConversionConfig):
    """The segment plan for this conversion, or None when the graph can't be planned (never fatal)."""
    from tftrt_toolkit.analysis.tensorrt_plan import plan_for_model
    from tftrt_toolkit.errors import ToolkitError

    try:
        return plan_for_model(model, precision=config.precision.value, minimum_segment_size=config.minimum_segment_size,
                              use_dynamic_shape=config.use_dynamic_shape, build_shapes=config.build_shapes or None)
    except ToolkitError:
        return None


def _compact_plan(plan) -> dict:
    # The full plan lists every node; metadata keeps what a person reads.
    data = plan.to_json()
    return {key: data[key] for key in ("verdict", "hints", "breakers", "coverage", "largest_engine_share",
                                       "compute_node_count", "compute_nodes_in_engines")
            } | {"engines": [{k: v for k, v in e.items() if k != "nodes"} for e in data["engines"]]}
