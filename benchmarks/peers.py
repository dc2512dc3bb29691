"""Peer benchmark: our cpu SavedModels against the runtimes users would pick instead, in one process run.

    python benchmarks/peers.py --model=keras:ResNet50 --weights=none --batch_sizes=1,8 \\
        --output=benchmarks/results/resnet50-peers --overwrite
    python benchmarks/peers.py --model=saved_models/efficientnet_lite0 --batch_sizes=1,8 \\
        --output=benchmarks/results/efficientnet_lite0-peers --overwrite

Writes OUTPUT.json (everything), OUTPUT.md (the table) and OUTPUT.png (the chart; needs
matplotlib). Rows, in order; a row whose package is missing, or whose conversion or first run
fails, is listed as skipped with the reason and not timed:

  tf              plain TF: ``tf.saved_model.load`` of the original, as the user runs it by default
                  (TF's own oneDNN default for this CPU): the 1.00x reference
  tf_onednn       the same with TF's oneDNN ops on (``TF_ENABLE_ONEDNN_OPTS=1``), where that is not
                  the default (AVX2-only CPUs); skipped where the tf row already has them on
  cpu_fp32/bf16/int8   tftrt_toolkit ``convert(..., ConversionConfig(backend="cpu", precision=...))``,
                  run with oneDNN on, as the toolkit runs them (int8 models need it)
  onnxruntime     ONNX Runtime fp32 on tf2onnx's export of the SavedModel
  onnxruntime_int8     the same after ``onnxruntime.quantization.quantize_static`` (QDQ, per-channel)
  openvino_f32/bf16    OpenVINO CPU on ``ov.convert_model(SavedModel)``, inference precision hint f32 / bf16
  openvino_int8   the same after NNCF post-training quantization (``nncf.quantize``)
  tflite_fp32     TFLite (XNNPACK) on ``TFLiteConverter.from_concrete_functions``
  tflite_int8     the same with ``Optimize.DEFAULT`` (dynamic-range int8 weights)
  tflite_full_int8     the same with a representative dataset and int8 ops only (full-integer)

Every int8 row (ours and the peers') is calibrated on the same arrays: ``--calibration_data``
read through tftrt_toolkit.data as our int8 conversion reads it, in its default batches.

Rows that need TF's oneDNN on where this process has it off (tf_onednn, cpu_*) are built and
timed in a worker process started with ``TF_ENABLE_ONEDNN_OPTS=1`` (TF reads the switch once,
at import), on this process's cue, block by block, so they stay in the interleaved rounds. Each
row records the process setting it ran with (the table's "TF oneDNN" column).

Only the tf and cpu_* rows leave a TF SavedModel (``tf.saved_model.load`` / TF Serving run it);
the table says so per row.

Honesty rules (what is and is not on the clock):
- every runtime runs in this one process on the same input arrays, with intra-op threads =
  ``--threads`` (default: the cores this process may use): TF via tf.config.threading before
  TF starts, ORT ``intra_op_num_threads``, OpenVINO ``INFERENCE_NUM_THREADS``, TFLite ``num_threads``;
- inputs are put in each runtime's own form before the clock (a TF tensor, TFLite's input
  tensor set once, OpenVINO sharing the numpy buffer); a timed run is one inference plus
  copying every output to a host numpy array; the first call and ``--warmup`` runs are excluded;
- runtimes are INTERLEAVED: each round gives every runtime, in turn, one block (the first
  runtime rotating round by round), so drifting machine load hits all alike; a block is an
  untimed pause (the previous runtime's spinning worker threads go idle), one untimed call
  (wakes this runtime's threads), then ~0.2 s of timed back-to-back calls: each runtime is timed
  in its steady state, as when it runs alone, and gets the same share of every round;
- speed-up = plain TF's median latency / the runtime's median latency, per batch size;
- before timing, every runtime's first output is compared with plain TF's on the same
  ``--agreement_samples`` inputs (top-1 agreement, max abs difference), so a broken conversion
  shows in the table instead of being timed as a win. For image models these are random crops,
  flips and brightness changes of real photos (``--agreement_data``): on random pixels most
  classifiers answer one class for every input, and agreeing on it proves little.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import importlib
import importlib.metadata
import io
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# The reference is plain TF as users run it: with TF's own oneDNN default for this CPU (or the
# user's TF_ENABLE_ONEDNN_OPTS). Importing tftrt_toolkit turns oneDNN on before TensorFlow is
# imported (toolkit processes want it), so TensorFlow comes first here and keeps what it reads;
# rows that need oneDNN on run in a worker process when it is off here.
import tensorflow  # noqa: E402,F401  (imported for its side effect: TF fixes its oneDNN switch now)

from tftrt_toolkit.errors import ConfigError, ToolkitError, first_line  # noqa: E402
from tftrt_toolkit.report import tables  # noqa: E402



class Runtime(NamedTuple):
    """One row of the table: what it is called, whose it is, and how it must run."""

    label: str
    family: str  # "reference", "tftrt_toolkit" or "peer"
    stays_tf_saved_model: bool
    packages: Tuple[str, ...]  # needed besides TensorFlow
    # Runs TF kernels with TF's oneDNN ops on (in a worker process where they are off here).
    # ONNX Runtime, OpenVINO and TFLite have their own kernels: the switch does not apply to them.
    onednn_on: Optional[bool]


RUNTIMES = {
    "tf": Runtime("plain TF (tf.saved_model.load)", "reference", True, (), False),
    "tf_onednn": Runtime("plain TF, oneDNN on", "reference", True, (), True),
    "cpu_fp32": Runtime("tftrt_toolkit cpu fp32", "tftrt_toolkit", True, (), True),
    "cpu_bf16": Runtime("tftrt_toolkit cpu bf16", "tftrt_toolkit", True, (), True),
    "cpu_int8": Runtime("tftrt_toolkit cpu int8", "tftrt_toolkit", True, (), True),
    "onnxruntime": Runtime("ONNX Runtime fp32 (tf2onnx)", "peer", False, ("tf2onnx", "onnxruntime"), None),
    "onnxruntime_int8": Runtime("ONNX Runtime int8 (static, QDQ)", "peer", False, ("tf2onnx", "onnxruntime"), None),
    "openvino_f32": Runtime("OpenVINO f32", "peer", False, ("openvino",), None),
    "openvino_bf16": Runtime("OpenVINO bf16", "peer", False, ("openvino",), None),
    "openvino_int8": Runtime("OpenVINO int8 (NNCF PTQ)", "peer", False, ("openvino", "nncf"), None),
    "tflite_fp32": Runtime("TFLite XNNPACK fp32", "peer", False, (), None),
    "tflite_int8": Runtime("TFLite dynamic-range int8", "peer", False, (), None),
    "tflite_full_int8": Runtime("TFLite full-integer int8", "peer", False, (), None),
}
# Version lines in the report: the packages any row may use.
VERSIONED_PACKAGES = ("tensorflow", "keras", "numpy", "neural-compressor-tf", "tf2onnx", "onnx", "onnxruntime",
                      "openvino", "nncf")
PEERS_INSTALL_HINT = "pip install 'tftrt_toolkit[peers]'"
DEFAULT_SECONDS = 5.0
DEFAULT_WARMUP = 5
MIN_ROUNDS = 5  # fewer rounds leave a runtime exposed to too few moments of machine noise
# One round gives each runtime a block of about this many seconds of timed calls (at most
# MAX_CALLS_PER_BLOCK calls), so each is timed in its steady state, as when it runs alone.
BLOCK_S = 0.2
MAX_CALLS_PER_BLOCK = 100
# Untimed pause before each block. After a run, ONNX Runtime's worker threads spin on a core
# for ~25 ms and TFLite's for ~8 ms (measured: process CPU time in 10 ms windows after a call);
# a runtime started inside that window shares its cores with them and was measured up to
# 100x slower on a tiny model. 50 ms lets them go idle; the block's first call (untimed) then
# wakes the runtime's own threads.
SETTLE_S = 0.05
ONNX_OPSET = 17
# cpu_int8 calibrates on ConversionConfig's default 8 batches of 8.
CALIBRATION_SAMPLES = 64
# Below this top-1 agreement with plain TF a row is flagged in the table and the chart.
AGREEMENT_FLAG_BELOW = 0.9

RunFn = Callable[[], List[np.ndarray]]


class Skipped(Exception):
    """A row cannot be measured here; the message says why (and what to install)."""


# --------------------------------------------------------------------------- the runtimes
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

    def close(self) -> None:
        self.runner.close()


class OnnxRuntimeRunner:
    """An ONNX file on ONNX Runtime's CPU provider, ``threads`` intra-op threads, sequential execution."""

    def __init__(self, onnx_path: str, output_names: Sequence[str], threads: int):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = onnxruntime.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
        produced = [output.name for output in self.session.get_outputs()]
        missing = [name for name in output_names if name not in produced]
        if missing:
            raise Skipped(f"the ONNX model has outputs {produced}, not the signature's {missing}")
        self.output_names = list(output_names)

    def bind(self, inputs: Dict[str, np.ndarray]) -> RunFn:
        feed = {name: np.ascontiguousarray(value) for name, value in inputs.items()}
        return lambda: self.session.run(self.output_names, feed)  # numpy arrays on the host

    def close(self) -> None:
        self.session = None


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
            in_force = compiled.get_property("INFERENCE_PRECISION_HINT")
            in_force = in_force.get_type_name() if hasattr(in_force, "get_type_name") else str(in_force)
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

    def describe_compiled(self) -> dict:
        """The settings OpenVINO applied (from the first compiled model)."""
        if not self.compiled:
            return {}
        compiled = next(iter(self.compiled.values()))
        facts = {}
        for key in ("INFERENCE_PRECISION_HINT", "INFERENCE_NUM_THREADS", "NUM_STREAMS", "PERFORMANCE_HINT"):
            with contextlib.suppress(RuntimeError):
                facts[key] = str(compiled.get_property(key))
        return facts

    def close(self) -> None:
        self.compiled.clear()


class TFLiteRunner:
    """A .tflite flatbuffer on tf.lite.Interpreter (XNNPACK by default), inputs resized to each batch."""

    def __init__(self, tflite_content: bytes, output_names: Sequence[str], threads: int):
        import tensorflow as tf

        self.interpreter = tf.lite.Interpreter(model_content=tflite_content, num_threads=threads)
        signatures = self.interpreter.get_signature_list()
        key = "serving_default" if "serving_default" in signatures else next(iter(signatures))
        runner = self.interpreter.get_signature_runner(key)
        self.input_index = {name: detail["index"] for name, detail in runner.get_input_details().items()}
        outputs = runner.get_output_details()
        missing = [name for name in output_names if name not in outputs]
        if missing:
            raise Skipped(f"the TFLite model has outputs {sorted(outputs)}, not the signature's {missing}")
        self.output_index = [outputs[name]["index"] for name in output_names]
        self.shapes: Dict[str, tuple] = {}

    def bind(self, inputs: Dict[str, np.ndarray]) -> RunFn:
        interpreter = self.interpreter
        shapes = {name: tuple(np.shape(inputs[name])) for name in self.input_index}
        if shapes != self.shapes:
            for name, shape in shapes.items():
                interpreter.resize_tensor_input(self.input_index[name], list(shape))
            interpreter.allocate_tensors()
            self.shapes = shapes
        for name, index in self.input_index.items():
            interpreter.set_tensor(index, np.ascontiguousarray(inputs[name]))
        order = self.output_index

        def run():
            interpreter.invoke()
            return [interpreter.get_tensor(index) for index in order]  # get_tensor copies to a new array
        return run

    def close(self) -> None:
        self.interpreter = None


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


# --------------------------------------------------------------------------- building each row
@dataclasses.dataclass
class Context:
    """What every row's builder needs: the original model, threads, where to write, how to log."""

    loaded: object  # LoadedModel of the original
    threads: int
    work_dir: str
    calibration_data: str  # the data spec our int8 conversion calibrates on
    log: Callable[[str], None]
    # The same calibration, as arrays: the batches our int8 conversion draws from calibration_data
    # (tftrt_toolkit.data, ConversionConfig's default steps and batch size); the peers' int8 rows use these.
    calibration_batches: List[Dict[str, np.ndarray]] = dataclasses.field(default_factory=list)
    cpu_has_int8_dot: bool = False  # VNNI/AMX: ONNX Runtime's int8 needs reduce_range without them
    onednn_here: bool = True  # TF's oneDNN ops are on in this process (IsMklEnabled)
    worker: Optional["OneDNNWorker"] = None  # runs the oneDNN-on rows when onednn_here is False
    cache: dict = dataclasses.field(default_factory=dict)  # conversions shared by several rows


def _require(*modules: str) -> None:
    """Import a peer's packages or raise Skipped naming every missing one and how to install them."""
    missing = []
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as error:
            missing.append(f"{module} ({error})")
    if missing:
        raise Skipped(f"not installed: {'; '.join(missing)}; install the peers with: {PEERS_INSTALL_HINT}")


def _size_mb(path: str) -> float:
    if os.path.isfile(path):
        return round(os.path.getsize(path) / 2 ** 20, 1)
    total = sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path) for name in names)
    return round(total / 2 ** 20, 1)


def build_tf(context: Context, key: str):
    return TFSavedModelRunner(context.loaded.saved_model_dir), {"artifact": "the original SavedModel"}


def build_toolkit(context: Context, key: str):
    from tftrt_toolkit import pipeline
    from tftrt_toolkit.config import ConversionConfig

    precision = key.split("_", 1)[1]
    output = os.path.join(context.work_dir, key)
    calibration_data = context.calibration_data if precision == "int8" else None
    try:
        pipeline.convert(context.loaded, output, ConversionConfig(backend="cpu", precision=precision), overwrite=True,
                         calibration_data=calibration_data, progress=context.log)
    except ToolkitError as error:
        raise Skipped(f"{type(error).__name__}: {error}") from None
    return TFSavedModelRunner(output), {
        "artifact": "TF SavedModel", "artifact_mb": _size_mb(output),
        "converted_with": f"tftrt_toolkit.convert(ConversionConfig(backend='cpu', precision='{precision}'))"
                          + (", calibrated on --calibration_data" if calibration_data else "")}


def build_onnxruntime(context: Context, key: str):
    _require("tf2onnx", "onnxruntime")
    path = _onnx_model(context)
    facts = {"artifact": f"ONNX (opset {ONNX_OPSET})", "converted_with": "python -m tf2onnx.convert --saved-model"}
    if key == "onnxruntime_int8":
        path, how = _quantize_onnx(context, path)
        facts = {"artifact": f"ONNX (opset {ONNX_OPSET}), int8 QDQ",
                 "converted_with": facts["converted_with"] + "; " + how}
    runner = OnnxRuntimeRunner(path, context.loaded.signature.output_names, context.threads)
    return runner, {**facts, "artifact_mb": _size_mb(path),
                    "settings": {"intra_op_num_threads": context.threads, "inter_op_num_threads": 1,
                                 "execution_mode": "sequential", "graph_optimization_level": "all",
                                 "providers": runner.session.get_providers()}}


def _onnx_model(context: Context) -> str:
    """tf2onnx's export of the original (once; the fp32 and int8 rows share it)."""
    path = os.path.join(context.work_dir, "model.onnx")
    if "onnx_model" not in context.cache:
        # tf2onnx's own command line, as users run it; in a child process so its graph-mode TF
        # session and logging stay out of this process.
        command = [sys.executable, "-m", "tf2onnx.convert", "--saved-model", context.loaded.saved_model_dir,
                   "--signature_def", context.loaded.signature.key, "--opset", str(ONNX_OPSET), "--output", path]
        _run_converter("tf2onnx", command, path)
        context.cache["onnx_model"] = path
    return context.cache["onnx_model"]


def _quantize_onnx(context: Context, fp32_path: str) -> Tuple[str, str]:
    """ONNX Runtime's static int8 quantization of ``fp32_path`` on the shared calibration batches; (path, how).

    QDQ format (ORT's recommendation for CPU), per-channel int8 weights, uint8 activations,
    min/max calibration. Without VNNI, ORT's x86 U8S8 kernels can saturate (vpmaddubsw adds
    pairs of products in 16 bits); ORT's documentation prescribes ``reduce_range`` (7-bit
    weights) there, so it is on exactly when the CPU has no VNNI/AMX.
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Batches(CalibrationDataReader):
        def __init__(self, batches):
            self.remaining = iter(batches)

        def get_next(self):
            return next(self.remaining, None)

    prepared = os.path.join(context.work_dir, "model-preprocessed.onnx")
    source, how = fp32_path, []
    try:  # shape inference and graph cleanup first, as ORT's quantization guide recommends
        quant_pre_process(fp32_path, prepared)
        source = prepared
        how.append("quant_pre_process")
    except Exception as error:  # optional step: quantize the plain export and record why
        how.append(f"quant_pre_process failed ({first_line(error)[:120]}), quantized the plain export")
    path = os.path.join(context.work_dir, "model-int8.onnx")
    reduce_range = not context.cpu_has_int8_dot
    quantize_static(source, path, Batches(context.calibration_batches), quant_format=QuantFormat.QDQ,
                    per_channel=True, reduce_range=reduce_range, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8)
    samples = sum(len(next(iter(batch.values()))) for batch in context.calibration_batches)
    how.append(f"quantize_static(QDQ, per_channel, QUInt8 activations, QInt8 weights, reduce_range={reduce_range}, "
               f"MinMax on {samples} calibration samples)")
    return path, "; ".join(how)


def build_openvino(context: Context, key: str):
    _require("openvino")
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
    _require("nncf")
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


# TFLiteConverter.from_saved_model aborts the process in TF 2.17 on Keras 3 exports (the shipped
# model, keras:NAME): "missing attribute 'value'" at BatchNorm's Cast/ReadVariableOp, then
# "LLVM ERROR: Failed to infer result type(s)". Converting the loaded serving signature works
# and keeps its input/output names. A child process, because the converter aborts rather than raises.
TFLITE_CONVERT_SCRIPT = """
import sys
import tensorflow as tf
import numpy as np
saved_model_dir, signature_key, variant, output, calibration = sys.argv[1:]
loaded = tf.saved_model.load(saved_model_dir)
converter = tf.lite.TFLiteConverter.from_concrete_functions([loaded.signatures[signature_key]], loaded)
if variant == "tflite_int8":
    # No representative dataset: dynamic-range quantization (int8 weights, activations quantized on the fly).
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
if variant == "tflite_full_int8":
    # Full-integer: a representative dataset (one sample at a time, inputs in sorted-name order)
    # and int8 ops only; input and output stay float32, quantized at the model's edges, so the
    # row takes the same inputs as every other row.
    arrays = np.load(calibration)
    names = sorted(arrays.files)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([arrays[name][i:i + 1] for name in names]
                                                for i in range(len(arrays[names[0]])))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
with open(output, "wb") as handle:
    handle.write(converter.convert())
"""


TFLITE_QUANTIZATION = {
    "tflite_fp32": "",
    "tflite_int8": " + Optimize.DEFAULT (dynamic range)",
    "tflite_full_int8": " + Optimize.DEFAULT, representative_dataset ({samples} calibration samples), "
                        "supported_ops=TFLITE_BUILTINS_INT8 (full-integer; float32 input/output)",
}


def build_tflite(context: Context, key: str):
    path = os.path.join(context.work_dir, f"{key}.tflite")
    calibration = os.path.join(context.work_dir, "calibration.npz")
    samples = _save_calibration(context, calibration) if key == "tflite_full_int8" else 0
    _run_converter("TFLite converter", [sys.executable, "-c", TFLITE_CONVERT_SCRIPT, context.loaded.saved_model_dir,
                                        context.loaded.signature.key, key, path, calibration], path)
    with open(path, "rb") as handle:
        runner = TFLiteRunner(handle.read(), context.loaded.signature.output_names, context.threads)
    return runner, {"artifact": "TFLite flatbuffer", "artifact_mb": _size_mb(path),
                    "converted_with": "tf.lite.TFLiteConverter.from_concrete_functions(serving signature)"
                                      + TFLITE_QUANTIZATION[key].format(samples=samples),
                    "settings": {"num_threads": context.threads, "delegate": "XNNPACK (tf.lite default)"}}


def _save_calibration(context: Context, path: str) -> int:
    """The shared calibration batches as one .npz (input name -> all samples); returns the sample count."""
    if not context.calibration_batches:
        raise Skipped("no calibration data for the int8 rows (see --calibration_data)")
    names = list(context.calibration_batches[0])
    arrays = {name: np.concatenate([batch[name] for batch in context.calibration_batches]) for name in names}
    np.savez(path, **arrays)
    return len(arrays[names[0]])


def _run_converter(name: str, command: List[str], output: str) -> None:
    """Run a converter's child process; Skipped with its last error line when it fails or writes nothing."""
    completed = subprocess.run(command, capture_output=True, text=True,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if completed.returncode != 0 or not os.path.exists(output):
        lines = [line for line in completed.stderr.strip().splitlines() if line.strip()]
        errors = [line for line in lines if "error" in line.lower()] or lines
        raise Skipped(f"{name} failed (exit {completed.returncode}): {errors[-1][:300] if errors else 'no message'}")


BUILDERS = {
    "tf": build_tf, "tf_onednn": build_tf,
    "cpu_fp32": build_toolkit, "cpu_bf16": build_toolkit, "cpu_int8": build_toolkit,
    "onnxruntime": build_onnxruntime, "onnxruntime_int8": build_onnxruntime,
    "openvino_f32": build_openvino, "openvino_bf16": build_openvino, "openvino_int8": build_openvino,
    "tflite_fp32": build_tflite, "tflite_int8": build_tflite, "tflite_full_int8": build_tflite,
}


def build_row(context: Context, key: str):
    """(runner, facts) for row ``key``: built here, or in the oneDNN-on worker when it needs oneDNN off here."""
    if RUNTIMES[key].onednn_on and not context.onednn_here:
        if context.worker is None:
            raise Skipped("needs TF's oneDNN ops on, which are off in this process, and no worker process was started")
        return context.worker.build(key)
    if key == "tf_onednn":
        raise Skipped("plain TF already runs with oneDNN on in this process (TF's default on this CPU, or "
                      f"{ONEDNN_SWITCH}=1 was set): the plain TF row is this row")
    return BUILDERS[key](context, key)


# --------------------------------------------------------------------------- the oneDNN-on worker process
ONEDNN_SWITCH = "TF_ENABLE_ONEDNN_OPTS"
WORKER_FLAG = "--onednn_worker"


class OneDNNWorker:
    """A process with TF's oneDNN ops on that builds, runs and times rows on this process's cue.

    TF reads ``TF_ENABLE_ONEDNN_OPTS`` once, at import, so rows that need oneDNN on where this
    process has it off (AVX2-only CPUs) run in a second process. ``build(key)`` converts and
    loads the row there; its runner's ``bind`` sends inputs, a call returns the outputs (for the
    agreement check), and ``time_calls`` runs a block of calls timed *there* while this process
    waits: the pipe is never on the clock, and the row takes its turn in the interleaved rounds
    like any other. Requests and replies are JSON lines; arrays travel as .npz files in the work dir.
    """

    def __init__(self, request: dict, log: Callable[[str], None]):
        self.request_fields = request
        self.log = log
        self.process: Optional[subprocess.Popen] = None
        self.onednn_enabled: Optional[bool] = None
        self.files = 0

    def start(self) -> "OneDNNWorker":
        from tftrt_toolkit import onednn

        environment = onednn.environment_with(True)
        environment.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        # stderr is shared: the worker's conversion messages appear in this run's log.
        self.process = subprocess.Popen([sys.executable, os.path.abspath(__file__), WORKER_FLAG],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
                                        env=environment)
        self.onednn_enabled = self.ask("start", **self.request_fields)["onednn_enabled"]
        if not self.onednn_enabled:
            raise Skipped(f"the worker started with {ONEDNN_SWITCH}=1 still has oneDNN off (IsMklEnabled() is False)")
        return self

    def ask(self, command: str, **fields):
        """Send one request; the worker's answer, Skipped for a row it cannot run, ToolkitError when it failed."""
        if self.process is None or self.process.poll() is not None:
            raise Skipped("the oneDNN-on worker process is not running"
                          + (f" (it exited with {self.process.returncode})" if self.process else ""))
        try:
            self.process.stdin.write(json.dumps({"command": command, **fields}) + "\n")
            self.process.stdin.flush()
            line = self.process.stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        if not line:
            raise Skipped(f"the oneDNN-on worker process ended (exit {self.process.wait()}); its messages are above")
        reply = json.loads(line)
        if "skipped" in reply:
            raise Skipped(reply["skipped"])
        if "error" in reply:
            raise ToolkitError(reply["error"])
        return reply["ok"]

    def build(self, key: str):
        facts = self.ask("build", key=key)
        return RemoteRunner(self, key), facts

    def new_file(self, what: str) -> str:
        self.files += 1
        return os.path.join(self.request_fields["work_dir"], f"worker-{what}-{self.files}.npz")

    def close(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(Exception):
            self.ask("stop")
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            stream.close()
        self.process = None


class RemoteRunner:
    """A row that lives in the oneDNN-on worker; ``bind`` gives a ``RemoteCall`` on those inputs."""

    def __init__(self, worker: OneDNNWorker, key: str):
        self.worker = worker
        self.key = key

    def bind(self, inputs: Dict[str, np.ndarray]) -> "RemoteCall":
        path = self.worker.new_file("inputs")
        np.savez(path, **inputs)
        self.worker.ask("bind", key=self.key, inputs=path)
        os.remove(path)
        return RemoteCall(self.worker, self.key)

    def close(self) -> None:
        with contextlib.suppress(Skipped, ToolkitError):
            self.worker.ask("drop", key=self.key)


class RemoteCall:
    """One bound row in the worker: call it for its outputs; ``time_calls`` for latencies measured there.

    ``runtime.timing`` asks a call with a ``time_calls`` method to time itself: the worker runs
    the same loop, so the pipe between the processes is never on the clock.
    """

    def __init__(self, worker: OneDNNWorker, key: str):
        self.worker = worker
        self.key = key

    def __call__(self) -> List[np.ndarray]:
        path = self.worker.new_file("outputs")
        self.worker.ask("call", key=self.key, output=path)
        with np.load(path) as saved:
            outputs = [saved[f"arr_{index}"] for index in range(len(saved.files))]
        os.remove(path)
        return outputs

    def time_calls(self, count: Optional[int] = None, duration: Optional[float] = None, warmup: int = 0,
                   min_count: int = 1) -> List[float]:
        return self.worker.ask("time", key=self.key, count=count, duration=duration, warmup=warmup, min_count=min_count)


def _worker_main() -> int:
    """The worker's side of ``OneDNNWorker``: JSON requests on stdin, one JSON reply line each on stdout."""
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # what libraries print goes to stderr, never into the replies

    def log(message: str) -> None:
        print(f"[peers worker] {message}", file=sys.stderr, flush=True)

    state = {"runners": {}, "calls": {}}

    def start(model, weights, threads, work_dir, calibration_data):
        from tftrt_toolkit import onednn
        from tftrt_toolkit.models.loader import load_model

        state["tf_threads"] = pin_tf_threads(threads)
        loaded = load_model(model, weights=None if weights.lower() == "none" else weights)
        state["context"] = Context(loaded, threads, work_dir, calibration_data, log)
        return {"onednn_enabled": onednn.enabled_in_this_process()}

    def build(key):
        runner, facts = BUILDERS[key](state["context"], key)
        state["runners"][key] = runner
        return facts

    def bind(key, inputs):
        with np.load(inputs) as saved:
            state["calls"][key] = state["runners"][key].bind({name: saved[name] for name in saved.files})

    def call(key, output):
        np.savez(output, *state["calls"][key]())

    def time_calls(key, count, duration, warmup, min_count):
        from tftrt_toolkit.runtime.timing import time_calls as timed

        return timed(state["calls"][key], count=count, duration=duration, warmup=warmup, min_count=min_count)

    def drop(key):
        state["calls"].pop(key, None)
        runner = state["runners"].pop(key, None)
        if runner is not None:
            runner.close()

    def stop():
        for key in list(state["runners"]):
            drop(key)
        if "context" in state:
            state["context"].loaded.close()

    commands = {"start": start, "build": build, "bind": bind, "call": call, "time": time_calls, "drop": drop,
                "stop": stop}
    for line in sys.stdin:
        request = json.loads(line)
        command = request.pop("command")
        try:
            reply = {"ok": commands[command](**request)}
        except Skipped as why:
            reply = {"skipped": str(why)}
        except Exception as error:  # the parent records it in the row; the worker keeps serving the others
            reply = {"error": f"{type(error).__name__}: {first_line(error)}"}
        protocol.write(json.dumps(reply) + "\n")
        if command == "stop":
            break
    return 0


# --------------------------------------------------------------------------- threads
def pin_tf_threads(threads: int) -> dict:
    """Give TF ``threads`` intra-op threads; returns what is in force. ConfigError when TF already runs otherwise.

    TF fixes its pools when its runtime starts. Its default (0) is one thread per schedulable
    CPU (``port::MaxParallelism``) unless TF_NUM_INTRAOP_THREADS says otherwise, so an already
    started TF with 0 has exactly ``threads`` when that is the schedulable CPU count.
    """
    from tftrt_toolkit.runtime.session import configure_threads, current_threads

    try:
        return configure_threads(threads, None)
    except ConfigError:
        in_force = current_threads()
        default_is_same = (in_force["intra_op_threads"] == 0 and not os.environ.get("TF_NUM_INTRAOP_THREADS")
                           and threads == len(os.sched_getaffinity(0)))
        if not default_is_same:
            raise
        return {**in_force, "note": f"TF had started with its default (0 = {threads} schedulable CPUs)"}


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# --------------------------------------------------------------------------- measuring
def _first_call_ms(run: RunFn) -> float:
    from tftrt_toolkit.runtime.timing import time_calls

    return time_calls(run, count=1)[0] * 1000.0


def interleaved_latencies(calls: Dict[str, RunFn], *, warmup: int, rounds: int) -> Dict[str, List[float]]:
    """Per runtime, the seconds of each timed run, from ``rounds`` interleaved rounds (the toolkit's timing loop).

    Each round gives every runtime, in turn (the first one rotating round by round), one
    block: a pause, one untimed call, then about ``BLOCK_S`` of timed back-to-back calls.
    A row in the oneDNN-on worker (``RemoteCall``) times its blocks there.
    """
    from tftrt_toolkit.runtime.timing import time_calls, time_rounds

    per_call = {key: float(np.median(time_calls(call, count=max(warmup, 1)))) for key, call in calls.items()}
    calls_per_block = {key: int(min(MAX_CALLS_PER_BLOCK, max(1, round(BLOCK_S / per_call[key])))) for key in calls}
    return time_rounds(calls, rounds=rounds, calls_per_turn=calls_per_block, warmup_per_turn=1, pause_s=SETTLE_S,
                       rotate=True)


def agreement(reference: np.ndarray, values: np.ndarray) -> dict:
    """Top-1 agreement (class scores: last axis) and max abs difference of one output vs plain TF's."""
    reference = np.asarray(reference, np.float64)
    values = np.asarray(values, np.float64)
    if values.shape != reference.shape:
        return {"top1_agreement": 0.0, "max_abs_diff": None,
                "problem": f"output shape {list(values.shape)} differs from plain TF's {list(reference.shape)}"}
    result = {"max_abs_diff": float(np.max(np.abs(values - reference))) if values.size else 0.0}
    if reference.ndim >= 2 and reference.shape[-1] > 1:
        result["top1_agreement"] = float(np.mean(values.argmax(-1) == reference.argmax(-1)))
        top5 = np.argsort(-values, axis=-1)[..., :5]
        result["top5_contains_tf_top1"] = float(np.mean(np.any(top5 == reference.argmax(-1)[..., None], axis=-1)))
    return result


PHOTOS_PREFIX = "photos:"


def photo_inputs(spec: str, loaded, directory: str, count: int, seed: int) -> Optional[Tuple[str, str]]:
    """(data spec, description) for ``photos:DIR``: ``count`` augmented photos written to ``directory``.

    None when ``spec`` is another data spec, or the model does not take one NHWC RGB image
    (then callers use ``--data``). Random pixels make most classifiers answer one class for
    every input, so agreeing on them proves little, and they calibrate int8 ranges no real
    input has; crops of real photos spread over many classes.
    """
    if not spec.startswith(PHOTOS_PREFIX):
        return spec, spec
    inputs = loaded.signature.inputs
    if len(inputs) != 1 or inputs[0].shape is None or len(inputs[0].shape) != 4 or inputs[0].shape[-1] != 3:
        return None
    photos = spec[len(PHOTOS_PREFIX):]
    if not os.path.isdir(photos):
        photos = os.path.join(ROOT, photos)  # checked by parse_args: the default, run from another directory
    write_augmented_photos(photos, directory, count, seed)
    return directory, (f"{count} random crops/flips/brightness changes (seed {seed}) of the photos in "
                       f"{spec[len(PHOTOS_PREFIX):]}")


def write_augmented_photos(source_dir: str, output_dir: str, count: int, seed: int) -> None:
    """``count`` JPEGs: random 40-100% crops of ``source_dir``'s photos, maybe mirrored, brightness/contrast changed."""
    from PIL import Image

    names = sorted(n for n in os.listdir(source_dir) if n.lower().endswith((".jpg", ".jpeg", ".png")))
    if not names:
        raise ConfigError(f"--agreement_data: no .jpg/.png photos in {source_dir!r}; pass photos:DIR with some, "
                          "or a --data spec")
    photos = [np.asarray(Image.open(os.path.join(source_dir, name)).convert("RGB")) for name in names]
    rng = np.random.default_rng(seed)
    os.makedirs(output_dir, exist_ok=True)
    for index in range(count):
        photo = photos[index % len(photos)]
        height, width = photo.shape[:2]
        scale = rng.uniform(0.4, 1.0)
        crop_h, crop_w = max(8, int(height * scale)), max(8, int(width * scale))
        top, left = int(rng.integers(0, height - crop_h + 1)), int(rng.integers(0, width - crop_w + 1))
        pixels = photo[top:top + crop_h, left:left + crop_w].astype(np.float32)
        if rng.random() < 0.5:
            pixels = pixels[:, ::-1]
        pixels = np.clip(pixels * rng.uniform(0.75, 1.25) + rng.uniform(-25, 25), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(os.path.join(output_dir, f"{index:04d}.jpg"), quality=92)


def _batches(source, count: int, batch_size: int) -> List[Dict[str, np.ndarray]]:
    """``count`` samples (rounded up to whole batches) as batches of exactly ``batch_size``."""
    from tftrt_toolkit.data.samples import filled_batch

    batches = []
    for batch in source.batches(batch_size, limit=-(-count // batch_size) * batch_size):
        if len(batch) < batch_size:
            break
        batches.append(batch.inputs)
    return batches or [filled_batch(source, batch_size)]


# --------------------------------------------------------------------------- the run
def parse_args(argv):
    parser = argparse.ArgumentParser(prog="benchmarks/peers.py", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="saved_models/efficientnet_lite0",
                        help="anything tftrt accepts: SavedModel dir, .keras file, keras:NAME, hub:HANDLE")
    parser.add_argument("--weights", default="imagenet", help="keras:NAME weights: imagenet or none")
    parser.add_argument("--batch_sizes", default="1,8")
    parser.add_argument("--output", required=True, help="path prefix: writes OUTPUT.json, OUTPUT.md, OUTPUT.png")
    parser.add_argument("--runtimes", default=",".join(RUNTIMES),
                        help=f"rows to run, from {','.join(RUNTIMES)} (tf, the reference, is always run)")
    parser.add_argument("--seconds", type=float, default=None,
                        help="about this many seconds of timed runs per runtime and batch size "
                             f"(default {DEFAULT_SECONDS:g})")
    parser.add_argument("--rounds", type=int, default=None,
                        help="exactly this many interleaved rounds instead of --seconds "
                             "(each round: one block per runtime)")
    parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP,
                        help="untimed calls per runtime and batch size before the rounds (they also size its blocks)")
    parser.add_argument("--threads", type=int, default=None,
                        help="intra-op threads for every runtime (default: the cores this process may use)")
    parser.add_argument("--data", default="synthetic",
                        help="timing inputs (values do not change the work done): synthetic, an image dir, .npy/.npz")
    parser.add_argument("--agreement_data", default="photos:saved_models/samples",
                        help="inputs for the agreement check: photos:DIR (random crops, flips and brightness changes "
                             "of DIR's photos; image models only, others use --data) or a --data spec")
    parser.add_argument("--calibration_data", default="photos:saved_models/samples",
                        help="cpu_int8's calibration inputs, as --agreement_data (other crops of the photos)")
    parser.add_argument("--agreement_samples", type=int, default=64)
    parser.add_argument("--work_dir", default=None, help="keep converted models here (default: a temp dir, removed)")
    parser.add_argument("--noplot", action="store_true", help="skip the PNG")
    parser.add_argument("--overwrite", action="store_true", help="replace existing OUTPUT.* files")
    args = parser.parse_args(argv)

    try:
        args.batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    except ValueError:
        raise ConfigError(f"--batch_sizes={args.batch_sizes!r} is not a list of whole numbers, e.g. 1,8") from None
    if not args.batch_sizes or min(args.batch_sizes) < 1 or len(set(args.batch_sizes)) != len(args.batch_sizes):
        raise ConfigError(f"--batch_sizes={args.batch_sizes} must list distinct whole numbers >= 1, e.g. 1,8")
    runtimes = [r.strip() for r in args.runtimes.split(",") if r.strip()]
    unknown = [r for r in runtimes if r not in RUNTIMES]
    if unknown:
        raise ConfigError(f"--runtimes: unknown {unknown}; choose from {','.join(RUNTIMES)}")
    args.runtimes = [key for key in RUNTIMES if key == "tf" or key in runtimes]
    if args.seconds is not None and args.rounds is not None:
        raise ConfigError("give --seconds or --rounds, not both")
    if args.rounds is None and args.seconds is None:
        args.seconds = DEFAULT_SECONDS
    if (args.rounds is not None and args.rounds < 1) or (args.seconds is not None and args.seconds <= 0):
        raise ConfigError("--rounds must be >= 1 and --seconds > 0")
    if args.rounds is None:
        args.rounds = max(MIN_ROUNDS, math.ceil(args.seconds / BLOCK_S))
    if args.warmup < 0 or args.agreement_samples < 1:
        raise ConfigError("--warmup must be >= 0 and --agreement_samples >= 1")
    for flag in ("agreement_data", "calibration_data"):
        spec = getattr(args, flag)
        if spec.startswith(PHOTOS_PREFIX):
            photos = spec[len(PHOTOS_PREFIX):]
            if not os.path.isdir(photos) and os.path.isdir(os.path.join(ROOT, photos)):
                photos = os.path.join(ROOT, photos)  # the default, run from another directory
            if not os.path.isdir(photos):
                raise ConfigError(f"--{flag}={spec}: {photos!r} is not a directory; "
                                  "pass photos:DIR with .jpg/.png photos, or a --data spec")
    args.threads = args.threads or usable_cores()
    return args


def main(argv=None) -> dict:
    """Run the peer benchmark; writes OUTPUT.json/.md/.png and returns the report (the JSON's content)."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tftrt_toolkit.report.writers import check_writable

    paths = {ext: f"{args.output}.{ext}" for ext in ("json", "md", "png")}
    check_writable([paths["json"], paths["md"]] + ([] if args.noplot else [paths["png"]]),
                   overwrite=args.overwrite, make_dirs=True)

    def log(message: str) -> None:
        print(f"[peers] {message}", file=sys.stderr, flush=True)

    # Before anything starts TF's runtime: its thread pools are fixed at that point.
    tf_threads = pin_tf_threads(args.threads)
    from tftrt_toolkit.data import open_source
    from tftrt_toolkit.environment import probe
    from tftrt_toolkit.models.loader import load_model

    started_at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    env = probe()
    work_dir = args.work_dir or tempfile.mkdtemp(prefix="tftrt-peers-")
    os.makedirs(work_dir, exist_ok=True)
    loaded = load_model(args.model, weights=None if args.weights.lower() == "none" else args.weights)
    rows: Dict[str, dict] = {}
    runners = {}
    context = None
    try:
        calibration_inputs = photo_inputs(args.calibration_data, loaded, os.path.join(work_dir, "calibration_photos"),
                                          count=CALIBRATION_SAMPLES, seed=123) or (args.data, args.data)
        agreement_inputs = photo_inputs(args.agreement_data, loaded, os.path.join(work_dir, "agreement_photos"),
                                        count=args.agreement_samples, seed=7)
        context = Context(loaded, args.threads, work_dir, calibration_inputs[0], log,
                          calibration_batches=calibration_batches(calibration_inputs[0], loaded),
                          cpu_has_int8_dot=env.cpu_has_int8_dot, onednn_here=env.onednn_enabled)
        process_settings = {"this process": describe_onednn(env.onednn_enabled, in_worker=False)}
        if not context.onednn_here and any(RUNTIMES[key].onednn_on for key in args.runtimes):
            process_settings["worker process"] = describe_onednn(True, in_worker=True)
            log(f"TF's oneDNN ops are off in this process: rows that need them run in a worker process "
                f"started with {ONEDNN_SWITCH}=1")
            # The worker loads this process's SavedModel of the model, never the spec again: keras:NAME
            # with --weights=none would build another random network there (agreement 0%, measured).
            context.worker = OneDNNWorker({"model": loaded.saved_model_dir, "weights": "none", "threads": args.threads,
                                           "work_dir": work_dir, "calibration_data": context.calibration_data}, log)
            try:
                context.worker.start()
            except (Skipped, ToolkitError) as why:  # its rows are skipped with the reason
                log(f"  the worker did not start: {why}")
                context.worker.close()
                context.worker = None
        for key in args.runtimes:
            label, family, stays_saved_model, _, onednn_on = RUNTIMES[key]
            row = rows[key] = {"key": key, "label": label, "family": family, "stays_tf_saved_model": stays_saved_model}
            in_worker = bool(onednn_on) and not context.onednn_here
            # The process setting the row runs with; peers have their own kernels, TF's switch is not theirs.
            row["process"] = {"runs_in": "worker process" if in_worker else "this process",
                              "tf_onednn": None if onednn_on is None else process_settings[
                                  "worker process" if in_worker else "this process"]}
            log(f"building {label}")
            start = time.perf_counter()
            try:
                runners[key], facts = build_row(context, key)
            except Skipped as why:
                if key == "tf":
                    raise ConfigError(f"plain TF cannot run {args.model!r}: {why}") from None
                row.update(status="skipped", reason=str(why))
                log(f"  skipped: {why}")
                continue
            except Exception as error:  # a peer's converter raises its own types; the row records it
                if key == "tf":
                    raise
                row.update(status="skipped", reason=f"conversion failed: {type(error).__name__}: {first_line(error)}")
                log(f"  skipped: {row['reason']}")
                continue
            row.update(status="measured", convert_s=round(time.perf_counter() - start, 1), **facts)

        # Same inputs for everyone: agreement samples, then one batch per batch size for timing.
        source = open_source(args.data, loaded.signature, model_hint=loaded.model_info, seed=0)
        agreement_source = source
        if agreement_inputs:
            agreement_source = open_source(agreement_inputs[0], loaded.signature, model_hint=loaded.model_info, seed=1)
            agreement_source.description = agreement_inputs[1]
        agreement_batch = max(args.batch_sizes)
        samples = _batches(agreement_source, args.agreement_samples, agreement_batch)
        reference = None
        for key in list(runners):
            try:
                outputs = np.concatenate([runners[key].bind(batch)()[0] for batch in samples])
            except Exception as error:  # a runtime failing on the model is a finding, reported in its row
                if key == "tf":
                    raise
                _drop(rows, runners, key, str(error) if isinstance(error, Skipped) else
                      f"first run failed: {type(error).__name__}: {first_line(error)}", log)
                continue
            if key == "tf":
                reference = outputs
            rows[key]["agreement"] = agreement(reference, outputs)
        if reference.ndim >= 2 and reference.shape[-1] > 1:
            # A model that gives most inputs the same class makes top-1 agreement a weak check; say so.
            rows["tf"]["agreement"]["distinct_top1_classes"] = int(len(np.unique(reference.argmax(-1))))
        for key in runners:
            rows[key]["agreement"]["samples"] = len(reference)

        settings = _settings(args, env, tf_threads, source, started_at, agreement_batch, agreement_source,
                             calibration_inputs[1])
        settings.update(
            onednn_default=env.onednn_default,
            # TF's oneDNN switch in each process that ran rows (TF reads it once, at import).
            tf_onednn_by_process=process_settings,
            int8_calibration=(f"{sum(len(next(iter(b.values()))) for b in context.calibration_batches)} samples "
                              f"({len(context.calibration_batches)} batches) for every int8 row, ours and the peers'"))
        for batch_size in args.batch_sizes:
            inputs = _batches(source, batch_size, batch_size)[0]
            calls = {}
            for key in list(runners):
                try:
                    calls[key] = runners[key].bind(inputs)
                    first_ms = _first_call_ms(calls[key])
                except Exception as error:  # as above: the row says what failed
                    if key == "tf":
                        raise
                    calls.pop(key, None)
                    reason = f"batch {batch_size} failed: {type(error).__name__}: {first_line(error)}"
                    _drop(rows, runners, key, reason, log)
                    continue
                rows[key].setdefault("results", []).append(
                    {"batch_size": batch_size, "first_call_ms": round(first_ms, 3)})
            log(f"timing batch size {batch_size}: {', '.join(calls)}")
            latencies = interleaved_latencies(calls, warmup=args.warmup, rounds=args.rounds)
            from tftrt_toolkit.runtime.benchmark import latency_stats

            tf_median = latency_stats(latencies["tf"])["p50"]
            for key, times in latencies.items():
                stats = latency_stats(times)
                rows[key]["results"][-1].update(
                    runs=len(times), latency_ms=stats, throughput=round(batch_size * len(times) / sum(times), 3),
                    speedup_vs_tf=round(tf_median / stats["p50"], 3))
                log(f"  {rows[key]['label']}: {stats['p50']:.2f} ms ({tf_median / stats['p50']:.2f}x)")
        if hasattr(os, "getloadavg"):
            settings["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
        for key, runner in runners.items():
            if isinstance(runner, OpenVINORunner):
                rows[key]["settings_in_force"] = runner.describe_compiled()
    finally:
        for runner in runners.values():
            runner.close()
        if context is not None and context.worker is not None:
            context.worker.close()
        loaded.close()
        if args.work_dir is None:
            shutil.rmtree(work_dir, ignore_errors=True)

    report = {
        "model": args.model,
        "weights": args.weights,
        "signature": loaded.signature.to_json(),
        "command": "python benchmarks/peers.py " + " ".join(
            shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)),
        "settings": settings,
        "versions": package_versions(),
        "rows": list(rows.values()),
    }
    return write_outputs(report, paths, overwrite=args.overwrite, plot=not args.noplot, log=log)


def calibration_batches(data: str, loaded) -> List[Dict[str, np.ndarray]]:
    """The batches our int8 conversion calibrates on, as arrays: the same reader, preprocessing, steps and batch size.

    ``pipeline.convert`` draws its calibration through ``calibration_input_fn(open_source(...))``
    with ConversionConfig's defaults; the peers' int8 rows get exactly these arrays.
    """
    from tftrt_toolkit.config import ConversionConfig
    from tftrt_toolkit.data import calibration_input_fn, open_source

    config = ConversionConfig(backend="cpu", precision="int8")
    source = open_source(data, loaded.signature, model_hint=loaded.model_info)
    names = [spec.name for spec in loaded.signature.inputs]
    inputs = calibration_input_fn(source, batch_size=config.batch_size, steps=config.calibration_steps, progress=False)
    return [dict(zip(names, (np.asarray(array) for array in batch))) for batch in inputs()]


def describe_onednn(enabled: bool, *, in_worker: bool) -> str:
    """How TF's oneDNN ops were set in a process, in words: on/off and who decided."""
    if in_worker:
        return f"on ({ONEDNN_SWITCH}=1, worker process)"
    value = os.environ.get(ONEDNN_SWITCH)
    state = "on" if enabled else "off"
    return f"{state} (TF's default on this CPU)" if value is None else f"{state} ({ONEDNN_SWITCH}={value})"


def _drop(rows, runners, key, reason, log) -> None:
    rows[key].update(status="skipped", reason=reason)
    rows[key].pop("results", None)
    runners.pop(key).close()
    log(f"  {rows[key]['label']} dropped: {reason}")


def _settings(args, env, tf_threads, source, started_at, agreement_batch, agreement_source,
              calibration_description: str) -> dict:
    return {
        "batch_sizes": args.batch_sizes,
        "threads": args.threads,
        "tf_threads_in_force": tf_threads,
        "warmup_calls": args.warmup,
        "rounds": args.rounds,
        "seconds_per_runtime_and_batch": args.seconds,
        "interleaved": f"{args.rounds} rounds; each gives every runtime in turn (first one rotating) a block: "
                       f"{SETTLE_S * 1000:g} ms pause, 1 untimed call, then ~{BLOCK_S:g} s of timed calls "
                       f"(1..{MAX_CALLS_PER_BLOCK})",
        "timed_region": "one inference + every output copied to a host numpy array; inputs placed before the clock; "
                        "first call and warm-up excluded",
        "speedup": "plain TF median latency / runtime median latency, same batch size",
        "data": source.description,
        "agreement": f"first output vs plain TF on {args.agreement_samples}+ samples in batches of {agreement_batch}",
        "agreement_data": agreement_source.description,
        "int8_calibration_data": calibration_description,
        "cpu_model": env.cpu_model,
        "cpu_count": env.cpu_count,
        "usable_cores": usable_cores(),
        "cpu_features": list(env.cpu_features),
        "onednn_enabled": env.onednn_enabled,
        "platform": env.platform,
        "started_at": started_at,
        # Other processes share the cores: the 1-minute load average when timing began.
        "load_average_1min_at_start": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }


def package_versions() -> Dict[str, Optional[str]]:
    versions = {}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


# --------------------------------------------------------------------------- writing
def _cell(row: dict, batch_size: int) -> Optional[dict]:
    return next((r for r in row.get("results", []) if r["batch_size"] == batch_size), None)


def _ms(value: float) -> str:
    return f"{value:.1f} ms" if value >= 10 else f"{value:.2f} ms" if value >= 0.1 else f"{value * 1000:.0f} µs"


def _agreement_text(row: dict) -> str:
    found = row.get("agreement", {})
    if "top1_agreement" not in found:
        return f"max diff {found['max_abs_diff']:.2g}" if found.get("max_abs_diff") is not None else "?"
    text = f"{100 * found['top1_agreement']:.0f}%"
    return text + (" ⚠" if found["top1_agreement"] < AGREEMENT_FLAG_BELOW else "")


def _onednn_cell(row: dict) -> str:
    return row.get("process", {}).get("tf_onednn") or "–"


def _model_title(report: dict) -> str:
    weights = f" (weights {report['weights']})" if report["model"].startswith("keras:") else ""
    return f"{report['model']}{weights}"


def markdown_table(report: dict) -> str:
    batch_sizes = report["settings"]["batch_sizes"]
    settings = report["settings"]
    header = ["runtime", "stays a TF SavedModel", "top-1 vs plain TF", "TF oneDNN"]
    for b in batch_sizes:
        header += [f"bs{b} median", f"bs{b} speed-up"]
    table = [header]
    skipped = []
    for row in report["rows"]:
        if row["status"] != "measured":
            skipped.append(f"- **{row['label']}** skipped: {row['reason']}")
            continue
        cells = [row["label"] if row["family"] != "tftrt_toolkit" else f"**{row['label']}**",
                 "yes" if row["stays_tf_saved_model"] else "no", _agreement_text(row), _onednn_cell(row)]
        for b in batch_sizes:
            cell = _cell(row, b)
            cells += [_ms(cell["latency_ms"]["p50"]), f"{cell['speedup_vs_tf']:.2f}×"] if cell else ["–", "–"]
        table.append(cells)
    runs = sorted({cell["runs"] for row in report["rows"] for cell in row.get("results", [])})
    tf_agreement = report["rows"][0].get("agreement", {})
    notes = [
        f"Model {_model_title(report)}; {settings['cpu_model']}, {settings['usable_cores']} cores, "
        f"{settings['threads']} intra-op threads for every runtime; timing inputs: {settings['data']}.",
        f"Median latency per batch over {runs[0]}{'' if runs[0] == runs[-1] else '–' + str(runs[-1])} timed runs "
        "per runtime and batch size, "
        f"from {settings['rounds']} interleaved rounds (first calls, warm-up and each block's wake-up call "
        f"excluded); speed-up = plain TF median / row median. "
        f"Top-1 vs plain TF on the same {tf_agreement.get('samples', '?')} inputs ({settings['agreement_data']})"
        + (f", where plain TF predicted {tf_agreement['distinct_top1_classes']} distinct "
           f"class{'es' if tf_agreement['distinct_top1_classes'] != 1 else ''}"
           if "distinct_top1_classes" in tf_agreement else "")
        + f" (⚠ below {AGREEMENT_FLAG_BELOW:.0%}); max |difference| of the output per row is in the JSON.",
        "TF oneDNN: whether TF's oneDNN ops were on in the process that ran the row, and who decided "
        f"({ONEDNN_SWITCH} is read once, when TF is imported). Plain TF is the reference as users run it by default"
        + (f"; rows marked 'worker process' ran in a second process started with {ONEDNN_SWITCH}=1, "
           "built and timed there block by block in the same interleaved rounds"
           if "worker process" in settings.get("tf_onednn_by_process", {}) else "")
        + ". ONNX Runtime, OpenVINO and TFLite have their own kernels: the switch does not apply to them (–).",
        *([f"Int8 calibration: {settings['int8_calibration']}, from {settings['int8_calibration_data']}."]
          if settings.get("int8_calibration") else []),
        "Versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items() if v) + ".",
        f"Regenerate: `{report['command']}`",
    ]
    return "\n".join([tables.markdown(table)] + ([""] + skipped if skipped else []) + [""] + notes) + "\n"


def write_outputs(report: dict, paths: Dict[str, str], *, overwrite: bool, plot: bool, log) -> dict:
    from tftrt_toolkit.report.writers import write_json, write_text

    title = f"# Peer benchmark: {_model_title(report)}\n\n"
    report["outputs"] = {"json": paths["json"], "markdown": paths["md"], "png": None}
    if plot:
        try:
            plot_peers(report, paths["png"], overwrite=overwrite)
            report["outputs"]["png"] = paths["png"]
        except ConfigError as error:  # matplotlib missing: the numbers still get written
            report["outputs"]["png_skipped"] = str(error)
            log(str(error))
    write_text(paths["md"], title + markdown_table(report), overwrite=overwrite)
    write_json(paths["json"], report, overwrite=overwrite)
    log(f"wrote {', '.join(p for p in (paths['json'], paths['md'], report['outputs']['png']) if p)}")
    print(markdown_table(report))
    return report


def plot_peers(report: dict, path: str, *, overwrite: bool) -> str:
    """A horizontal bar per measured row and batch size: speed-up over plain TF, median ms beside it."""
    from tftrt_toolkit.report.plots import (BASELINE_COLOR, OPTIMIZED_COLOR, SLOWDOWN_COLOR, require_matplotlib)
    from tftrt_toolkit.report.writers import write_bytes

    Figure, FigureCanvasAgg = require_matplotlib()
    colors = {"reference": BASELINE_COLOR, "tftrt_toolkit": OPTIMIZED_COLOR, "peer": "#e08a1e"}
    measured = [row for row in report["rows"] if row["status"] == "measured"]
    skipped = [row for row in report["rows"] if row["status"] != "measured"]
    batch_sizes = report["settings"]["batch_sizes"]
    height = 1.4 + 0.42 * len(measured) + 0.22 * len(skipped)
    figure = Figure(figsize=(5.2 * len(batch_sizes) + 1.8, height + 1.3), dpi=110)
    FigureCanvasAgg(figure)
    axes_list = figure.subplots(1, len(batch_sizes), sharey=True, squeeze=False)[0]
    reference_onednn = _onednn_cell(report["rows"][0])[:3]
    labels = [row["label"] + ("" if row["stays_tf_saved_model"] else " *")
              + (" (oneDNN on)" if row["key"] != "tf_onednn" and _onednn_cell(row)[:3] not in (reference_onednn, "–")
                 else "") for row in measured]
    positions = list(range(len(measured)))[::-1]  # first row on top
    largest = max((c["speedup_vs_tf"] for row in measured for c in row["results"]), default=1.0)
    for axes, batch_size in zip(axes_list, batch_sizes):
        speedups, texts, bar_colors = [], [], []
        for row in measured:
            cell = _cell(row, batch_size)
            speedups.append(cell["speedup_vs_tf"] if cell else 0.0)
            flagged = row.get("agreement", {}).get("top1_agreement", 1.0) < AGREEMENT_FLAG_BELOW
            texts.append(f"{cell['speedup_vs_tf']:.2f}×  {_ms(cell['latency_ms']['p50'])}" if cell else "–")
            texts[-1] += "  ⚠ top-1 " + _agreement_text(row).rstrip(" ⚠") if flagged else ""
            bar_colors.append(colors[row["family"]])
        bars = axes.barh(positions, speedups, color=bar_colors, height=0.7)
        for bar, row in zip(bars, measured):
            if row.get("agreement", {}).get("top1_agreement", 1.0) < AGREEMENT_FLAG_BELOW:
                bar.set_hatch("///")
                bar.set_edgecolor(SLOWDOWN_COLOR)
        axes.bar_label(bars, labels=texts, padding=3, fontsize=8.5)
        axes.axvline(1.0, color="#333333", linewidth=0.9, linestyle="--")
        axes.set_xlim(0, largest * 1.45)
        axes.set_title(f"batch {batch_size}", fontsize=11)
        axes.set_xlabel("speed-up over plain TF (median latency) — higher is better")
        axes.grid(axis="x", alpha=0.3)
        axes.set_axisbelow(True)
        axes.spines[["top", "right"]].set_visible(False)
    axes_list[0].set_yticks(positions, labels, fontsize=9)
    for tick, row in zip(axes_list[0].get_yticklabels(), measured):
        if row["family"] == "tftrt_toolkit":
            tick.set_fontweight("bold")
    settings = report["settings"]
    runs = min((c["runs"] for row in measured for c in row["results"]), default=0)
    figure.suptitle(f"{_model_title(report)}: tftrt_toolkit cpu vs peer runtimes", fontsize=12.5, fontweight="bold")
    load = settings.get("load_average_1min_at_start")
    footer = [f"{settings['cpu_model']}, {settings['usable_cores']} cores; {settings['threads']} intra-op threads for "
              f"every runtime; {settings['data']}; median of ≥{runs} timed runs from "
              f"{settings['rounds']} interleaved rounds, warm-up excluded; TF {report['versions']['tensorflow']}"
              + (f"; load average {load:g} at start" if load is not None else ""),
              f"plain TF: TF's oneDNN {_onednn_cell(report['rows'][0])}; "
              "* result is not a TF SavedModel (ONNX / OpenVINO / TFLite); bold = tftrt_toolkit (stays a SavedModel); "
              f"hatched = top-1 agreement with plain TF below {AGREEMENT_FLAG_BELOW:.0%}"]
    footer += [f"skipped {row['label']}: {row['reason'][:150]}" for row in skipped]
    from matplotlib.patches import Patch

    legend = [Patch(color=colors[family], label=text) for family, text in (
        ("reference", "plain TF (1.00×)"), ("tftrt_toolkit", "tftrt_toolkit: a TF SavedModel"),
        ("peer", "peer runtime: another format")) if any(row["family"] == family for row in measured)]
    figure.legend(handles=legend, loc="upper center", ncol=len(legend), fontsize=8.5, frameon=False,
                  bbox_to_anchor=(0.5, 1 - 0.5 / (height + 1.3)))
    figure.text(0.01, 0.01, "\n".join(footer), fontsize=7.5, color="#444444", va="bottom")
    bottom = (0.15 + 0.15 * len(footer)) / (height + 1.3)
    figure.tight_layout(rect=(0, bottom, 1, 1 - 0.75 / (height + 1.3)))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return write_bytes(path, buffer.getvalue(), overwrite=overwrite)


if __name__ == "__main__":
    if sys.argv[1:] == [WORKER_FLAG]:
        sys.exit(_worker_main())
    try:
        main()
    except ToolkitError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
