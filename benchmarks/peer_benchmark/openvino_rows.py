"""The OpenVINO rows: ``openvino.convert_model`` of the SavedModel, f32, bf16, and int8 after NNCF's quantization.

One conversion serves all three; each is compiled for CPU per batch size (a static shape).
"""

from __future__ import annotations

import contextlib
from typing import Dict, List, Sequence

import numpy as np

from tftrt_toolkit.errors import first_line

from .building import Context, require
from .rows import RunFn, Skipped


class OpenVINORunner:
    """An OpenVINO model compiled for CPU per input shape (a static batch, as OpenVINO recommends)."""

    def __init__(self, model, output_names: Sequence[str], precision: str, threads: int):
        import openvino

        self.core = openvino.Core()
        self.model = model
        self.config = {
            "INFERENCE_PRECISION_HINT": precision,  # explicit: on AMX/bf16 CPUs OpenVINO defaults to bf16
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
            "INFERENCE_NUM_THREADS": threads,
        }
        self.output_names = list(output_names)
        self.output_index = _match_outputs([set(output.get_names()) for output in model.outputs], self.output_names)
        self.input_names = [_ov_port_name(port) for port in model.inputs]
        self.compiled: Dict[tuple, object] = {}

    def _request(self, inputs: Dict[str, np.ndarray]):
        shapes = tuple((name, tuple(np.shape(inputs[name]))) for name in self.input_names)
        if shapes not in self.compiled:
            import openvino

            model = self.model.clone()
            model.reshape({name: openvino.PartialShape(list(shape)) for name, shape in shapes})
            compiled = self.core.compile_model(model, "CPU", self.config)
            # OpenVINO quietly runs f32 where the CPU has no bf16 (AVX2): a row labelled bf16 would be an f32 row.
            in_force = _text(compiled.get_property("INFERENCE_PRECISION_HINT"))
            if in_force != self.config["INFERENCE_PRECISION_HINT"]:
                raise Skipped(f"OpenVINO runs {in_force}, not {self.config['INFERENCE_PRECISION_HINT']}, on this CPU "
                              "(no native support): the row would repeat another")
            self.compiled[shapes] = compiled
        return self.compiled[shapes].create_infer_request()

    def bind(self, inputs: Dict[str, np.ndarray]) -> RunFn:
        request = self._request(inputs)
        feed = {name: np.ascontiguousarray(inputs[name]) for name in self.input_names}
        order = self.output_index

        def run():
            # share_outputs=False (the default) copies the outputs into fresh numpy arrays.
            results = request.infer(feed, share_inputs=True)
            return [np.asarray(results[index]) for index in order]
        return run

    def concurrent(self, inputs: Dict[str, np.ndarray], clients: int, threads: int):
        """OpenVINO's throughput mode: PERFORMANCE_HINT=THROUGHPUT, ``clients`` streams, one infer request per client."""
        import openvino

        model = self.model.clone()
        model.reshape({name: openvino.PartialShape(list(np.shape(inputs[name]))) for name in self.input_names})
        config = dict(self.config, PERFORMANCE_HINT="THROUGHPUT", NUM_STREAMS=clients, INFERENCE_NUM_THREADS=threads)
        self.throughput_compiled = self.core.compile_model(model, "CPU", config)
        feed = {name: np.ascontiguousarray(inputs[name]) for name in self.input_names}
        order = self.output_index

        def call(request):
            def run():
                results = request.infer(feed, share_inputs=True)  # each client its own request: safe in parallel
                return [np.asarray(results[index]) for index in order]
            return run
        streams = self.throughput_compiled.get_property("NUM_STREAMS")
        return ([call(self.throughput_compiled.create_infer_request()) for _ in range(clients)],
                f"PERFORMANCE_HINT=THROUGHPUT, NUM_STREAMS={streams}, INFERENCE_NUM_THREADS={threads}, "
                f"{clients} infer requests, one per client")

    def describe_compiled(self) -> dict:
        """The settings OpenVINO applied (from the first compiled model)."""
        if not self.compiled:
            return {}
        compiled = next(iter(self.compiled.values()))
        facts = {}
        for key in ("INFERENCE_PRECISION_HINT", "INFERENCE_NUM_THREADS", "NUM_STREAMS", "PERFORMANCE_HINT"):
            with contextlib.suppress(RuntimeError):
                facts[key] = _text(compiled.get_property(key))
        return facts

    def close(self) -> None:
        self.compiled.clear()
        self.throughput_compiled = None


def _match_outputs(port_names: List[set], wanted: Sequence[str]) -> List[int]:
    """Index of each wanted output among ports (by name; by position when names are graph-internal)."""
    order = []
    for position, name in enumerate(wanted):
        found = [i for i, names in enumerate(port_names) if name in names or f"{name}:0" in names]
        if found:
            order.append(found[0])
        elif len(port_names) == len(wanted):
            order.append(position)  # e.g. "Identity:0": TF flattens outputs in the signature's (sorted) order
        else:
            raise Skipped(f"cannot tell which of the converted model's outputs {port_names} is {name!r}")
    return order


def _ov_port_name(port) -> str:
    names = port.get_names()
    return port.get_any_name() if len(names) <= 1 else sorted(names, key=len)[0]


def build_openvino(context: Context, key: str):
    require("openvino")
    if "openvino_model" not in context.cache:  # one conversion serves f32 and bf16
        context.cache["openvino_model"] = _convert_openvino(context)
    model, converted_with = context.cache["openvino_model"]
    precision = key.split("_", 1)[1]
    if precision == "int8":
        model, how = _quantize_openvino(context, model)
        converted_with += "; " + how
        precision = "f32"  # the quantized layers run int8 whatever the hint; the rest stays f32
    runner = OpenVINORunner(model, context.loaded.signature.output_names, precision, context.threads)
    return runner, {"artifact": "OpenVINO model (in memory; IR if saved)", "converted_with": converted_with,
                    "settings": runner.config}


def _quantize_openvino(context: Context, model):
    """NNCF post-training int8 quantization of the OpenVINO model on the shared calibration samples; (model, how)."""
    require("nncf")
    import logging

    import nncf

    nncf.set_log_level(logging.ERROR)  # its progress lines would bury ours
    input_names = [_ov_port_name(port) for port in model.inputs]
    # One sample per item, as NNCF's examples give it: its statistics are then per image.
    samples = [{name: batch[name][index:index + 1] for name in input_names}
               for batch in context.calibration_batches for index in range(len(batch[input_names[0]]))]
    quantized = nncf.quantize(model, nncf.Dataset(samples), subset_size=len(samples))
    return quantized, (f"nncf.quantize (default preset: performance, symmetric; subset_size={len(samples)}) on "
                       f"{len(samples)} calibration samples, compiled with INFERENCE_PRECISION_HINT=f32")


def _convert_openvino(context: Context):
    """(ov.Model, how it was made): ``convert_model`` on the SavedModel dir, else on its loaded serving signature.

    OpenVINO's TF frontend reads SavedModel files itself and fails on Keras 3 exports
    ("VarHandleOp ... Cannot find requested variable"); given the loaded signature function it
    lets TF resolve the variables and converts the same graph.
    """
    import openvino
    import tensorflow as tf

    try:
        return openvino.convert_model(context.loaded.saved_model_dir), "openvino.convert_model(SavedModel dir)"
    except Exception as error:  # OpenVINO raises its own OpConversionFailure; the fallback records why
        first_failure = first_line(error)
        for line in str(error).splitlines():
            if line.startswith("-- Conversion is failed for:"):
                first_failure = line[3:].strip()
    saved_model = tf.saved_model.load(context.loaded.saved_model_dir)
    model = openvino.convert_model(saved_model.signatures[context.loaded.signature.key])
    return model, f"openvino.convert_model(loaded serving signature); on the SavedModel dir it failed: {first_failure}"


def _text(value) -> str:
    """A property as OpenVINO spells it in its config ("bf16", not str()'s "<Type: 'bfloat16'>")."""
    return value.get_type_name() if hasattr(value, "get_type_name") else str(value)
