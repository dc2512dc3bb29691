"""Flag groups shared by the subcommands: one group per concern, each defined once, each with a ``*_from_flags`` builder.

A subcommand's ``define_flags()`` lists the groups it uses; its --help shows their flags.
absl flags are process-global, so every ``define_*`` is idempotent. A flag several commands
share has one definition, and a command can say what it means there (``--batch_size`` is
the calibration batch for convert, the timing batch for tune): ``define`` sets the help text
and default the running command gives.

Flags carry ``ConversionConfig``'s field names. Renamed flags keep their old spelling as an
alias until the next release (``RENAMED_FLAGS``; README "Renamed flags"; each one's --help).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

from absl import flags

from tftrt_toolkit.config import PROFILE_STRATEGIES, Backend, ConversionConfig, Precision
from tftrt_toolkit.data.shapes import parse_shape_list
from tftrt_toolkit.errors import ConfigError

FLAGS = flags.FLAGS

#: Old spelling -> today's flag. The old ones are absl aliases: they set the same value.
RENAMED_FLAGS: Dict[str, str] = {
    "max_cached_engines": "maximum_cached_engines",
    "dynamic_shape": "use_dynamic_shape",
    "profile_strategy": "dynamic_shape_profile_strategy",
    "seconds_per_measurement": "duration",  # run
    "seconds_per_candidate": "duration",  # tune
    "run_batch_sizes": "batch_sizes",  # run
}


def define(kind: str, name: str, default, help_text: str, enum_values=None, *,
           formerly: Optional[Sequence[str]] = None) -> str:
    """Define flag ``name`` once; when it exists, give it this command's help text and default. Returns ``name``.

    The flag's old spellings (``RENAMED_FLAGS``) become aliases; its help names ``formerly``
    (default: every old spelling), the ones this command had.
    """
    old_names = [old for old, new in RENAMED_FLAGS.items() if new == name]
    mentioned = old_names if formerly is None else list(formerly)
    if mentioned:
        spelled = ", ".join(f"--{old}" for old in mentioned)
        help_text = f"{help_text} (Formerly {spelled}: still accepted until the next release.)"
    if name not in FLAGS:
        if kind == "enum":
            flags.DEFINE_enum(name, default, enum_values, help_text)
        else:
            getattr(flags, f"DEFINE_{kind}")(name, default, help_text)
    else:
        FLAGS[name].help = help_text
        if FLAGS[name].default != default:
            FLAGS.set_default(name, default)
    for old in old_names:
        if old not in FLAGS:
            flags.DEFINE_alias(old, name)
        # absl's unparse_flags() resets an alias to the default it copied when it was made,
        # and so its flag: keep the copy equal to this command's default.
        FLAGS[old].default = FLAGS[name].default
    return name


def require(name: str) -> str:
    value = FLAGS[name].value
    if value in (None, "", []):
        raise ConfigError(f"--{name} is required; see --help.")
    return value


def _positive_ints(name: str, example: str) -> tuple:
    """A list flag's entries as positive ints; ConfigError naming the bad entry."""
    numbers = []
    for text in FLAGS[name].value or []:
        try:
            number = int(text)
        except ValueError:
            raise ConfigError(f"--{name} entry {text!r} is not a whole number; write e.g. {example}.") from None
        if number < 1:
            raise ConfigError(f"--{name} entry {number} is not valid; use 1 or more, e.g. {example}.")
        numbers.append(number)
    return tuple(numbers)


# --------------------------------------------------------------------------- the model

def define_model_flags() -> List[str]:
    """The model and how to load it: --model, --signature, --weights, --unsafe_deserialization, --custom_objects."""
    return (define_model_flag() + define_signature_flag() + define_weights_flag() + define_unsafe_deserialization_flag()
            + define_custom_objects_flag())


def define_model_flag() -> List[str]:
    return [define("string", "model", None,
                   "The model: a SavedModel dir, a .keras/.h5 file, keras:NAME (keras.applications) or hub:HANDLE / a Hub URL.")]


def define_signature_flag() -> List[str]:
    return [define("string", "signature", None, "Signature key to use (default: serving_default, or the only one).")]


def define_weights_flag() -> List[str]:
    return [define("string", "weights", "imagenet",
                   "For keras:NAME: imagenet (downloaded on first use), none (random), or a weights file.")]


def define_unsafe_deserialization_flag() -> List[str]:
    return [define("bool", "unsafe_deserialization", False,
                   "Allow Keras files to run Lambda-layer code when loading. Only for files you trust.")]


def define_custom_objects_flag() -> List[str]:
    return [define("list", "custom_objects", None,
                   "Keras files with custom layers (or subclassed models): the module(s) defining those classes, "
                   "as module.path or FILE.py.")]


def weights_from_flags() -> Optional[str]:
    """--weights, with 'none' meaning random weights (None)."""
    return None if (FLAGS.weights or "").lower() == "none" else FLAGS.weights


def model_load_options_from_flags() -> dict:
    """The ``load_model`` options the model flags describe (weights, signature, unsafe deserialization, custom objects)."""
    return {
        "weights": weights_from_flags(),
        "signature_key": FLAGS.signature,
        "unsafe_deserialization": FLAGS.unsafe_deserialization,
        "custom_objects": FLAGS.custom_objects or None,
    }


# --------------------------------------------------------------------------- where results go

def define_output_flags(meaning: str = "Where to write the results.") -> List[str]:
    """--output (``meaning``: what this command writes there) and --overwrite."""
    return [
        define("string", "output", None, meaning),
        define("bool", "overwrite", False, "Replace an existing output (atomically)."),
    ]


def define_version_flag() -> List[str]:
    """--version: TF Serving's BASE/N layout for a written model."""
    return [define("string", "version", None, "TF Serving layout: write to OUTPUT/N; 'auto' takes the next free integer.")]


def define_format_flags() -> List[str]:
    return [define("bool", "json", False, "Print machine-readable JSON instead of text.")]


# --------------------------------------------------------------------------- input data

def define_data_flags() -> List[str]:
    """--data, how it becomes model inputs (--preprocess, --input_shape), and --strict_data about files left out."""
    return define_data_flag() + define_input_flags() + define_strict_data_flag()


def define_data_flag() -> List[str]:
    return [define("list", "data", None, "Input data: an image directory, image files, FILE.npy/.npz, or 'synthetic'.")]


def define_input_flags() -> List[str]:
    """How data becomes the model's inputs: --preprocess, --input_shape."""
    return [
        define("string", "preprocess", "auto", "Image preprocessing: auto | caffe | tf | torch | none (keras.applications meanings)."),
        define("string", "input_shape", None,
               "Fill dims the signature leaves unknown: HxW (or HxWxC) for images, e.g. 224x224; per input: ids=128,mask=128."),
    ]


def define_strict_data_flag() -> List[str]:
    return [define("bool", "strict_data", False,
                   "Fail (exit 4, listing them) when image folders hold files that would be skipped: not images, unreadable, hidden.")]


def data_from_flags(default: Optional[str] = None):
    """--data as one spec (a single entry) or a list of paths; ``default`` when not given."""
    data = FLAGS.data
    if not data:
        return default
    return data[0] if len(data) == 1 else list(data)


def data_options_from_flags() -> dict:
    """How --data becomes inputs, as the keyword arguments predict/validate/benchmark/convert take."""
    return {"preprocess": FLAGS.preprocess, "input_shape": FLAGS.input_shape}


def define_batch_size_flag(meaning: str, default: int = 8) -> List[str]:
    """--batch_size, with what it means for this command (calibration batches, model calls, timing)."""
    return [define("integer", "batch_size", default, meaning)]


# --------------------------------------------------------------------------- conversion

def define_calibration_flags() -> List[str]:
    return [
        define("string", "calibration_data", None, "int8 calibration data (same forms as --data)."),
        define("integer", "calibration_steps", 8, "int8: batches of calibration data to feed."),
    ]


def define_tensorrt_flags() -> List[str]:
    """TF-TRT's conversion parameters, named as ConversionConfig (and TrtGraphConverterV2) names them."""
    return [
        define("integer", "max_workspace_size_bytes", None, "TensorRT: GPU scratch memory per engine (TF-TRT default if unset)."),
        define("integer", "minimum_segment_size", 3, "TensorRT: smallest subgraph turned into an engine."),
        define("integer", "maximum_cached_engines", 1, "TensorRT: engines cached per TRTEngineOp."),
        define("bool", "use_calibration", True, "TensorRT int8: calibrate (False expects fake-quant nodes in the graph)."),
        define("bool", "use_dynamic_shape", False, "TensorRT: explicit-batch dynamic shapes with optimization profiles."),
        define("string", "dynamic_shape_profile_strategy", None,
               f"TensorRT dynamic-shape profile strategy: {', '.join(PROFILE_STRATEGIES)}."),
        define("bool", "allow_build_at_runtime", True, "TensorRT: build engines at run time for unseen shapes."),
        define("string", "build_shapes", None,
               "Build engines ahead of time for these input shapes (1x224x224x3,8x224x224x3) or batch sizes (1,8)."),
    ]


def define_serving_warmup_flags() -> List[str]:
    return [
        define("string", "warmup_data", None,
               "TF Serving warmup records (assets.extra/tf_serving_warmup_requests) from this data: an image directory, "
               "FILE.npy/.npz or 'synthetic'; default: the calibration or build data when there is some; 'none': no file."),
        define("list", "warmup_batch_sizes", None,
               "One warmup request per batch size, e.g. 1,8 (default: the build shapes' batch sizes, else 1)."),
    ]


def define_backend_flag() -> List[str]:
    return [define("enum", "backend", "auto", "Conversion backend: auto picks tensorrt where TF has TensorRT and a GPU, else cpu.",
                   enum_values=[b.value for b in Backend])]


def define_precision_flag() -> List[str]:
    return [define("string", "precision", "fp32", "fp32 | fp16 (tensorrt) | bf16 (cpu) | int8 (needs --calibration_data).")]


def define_conversion_flags() -> List[str]:
    """Every ConversionConfig field: backend, precision, TensorRT's parameters, cpu bf16, int8 calibration, warmup records."""
    return [
        *define_backend_flag(),
        *define_precision_flag(),
        *define_tensorrt_flags(),
        define("list", "bf16_keep_fp32_ops", ["Softmax"], "cpu bf16: op types kept in fp32."),
        define("bool", "int8_overflow_safe_weights", True,
               "cpu int8: 7-bit weights where 8-bit ones overflow int16 on the calibration data (CPUs without VNNI)."),
        define("bool", "int8_bias_correction", True,
               "cpu int8: each conv's bias absorbs the mean shift its weight rounding causes on the calibration data."),
        *define_allow_partial_flag(),
        *define_calibration_flags(),
        *define_batch_size_flag("int8 calibration: samples per calibration batch (--calibration_steps batches are fed)."),
        *define_serving_warmup_flags(),
    ]


def define_allow_partial_flag() -> List[str]:
    name = define("bool", "allow_partial_precision", False,
                  "Accept a bf16/int8 conversion that leaves over half of the model's multiply-adds in fp32 "
                  "(refused by default, naming the op types left behind). --allow_partial for short.")
    if "allow_partial" not in FLAGS:
        flags.DEFINE_alias("allow_partial", name)
    return [name]


def conversion_config_from_flags() -> ConversionConfig:
    """The ConversionConfig the conversion flags describe (validated: ConfigError names the bad flag)."""
    try:
        precision = Precision(FLAGS.precision.lower())
    except ValueError:
        raise ConfigError(f"--precision={FLAGS.precision!r} is not valid; use fp32, fp16, bf16 or int8.") from None
    build_shapes = parse_shape_list(FLAGS.build_shapes, what="--build_shapes entry", error=ConfigError) if FLAGS.build_shapes else ()
    return ConversionConfig(
        backend=FLAGS.backend,
        precision=precision,
        signature_key=FLAGS.signature,
        max_workspace_size_bytes=FLAGS.max_workspace_size_bytes,
        minimum_segment_size=FLAGS.minimum_segment_size,
        maximum_cached_engines=FLAGS.maximum_cached_engines,
        use_calibration=FLAGS.use_calibration,
        use_dynamic_shape=FLAGS.use_dynamic_shape,
        dynamic_shape_profile_strategy=FLAGS.dynamic_shape_profile_strategy,
        allow_build_at_runtime=FLAGS.allow_build_at_runtime,
        build_shapes=build_shapes,
        calibration_steps=FLAGS.calibration_steps,
        batch_size=FLAGS.batch_size,
        bf16_keep_fp32_ops=tuple(FLAGS.bf16_keep_fp32_ops or ()),
        int8_overflow_safe_weights=FLAGS.int8_overflow_safe_weights,
        int8_bias_correction=FLAGS.int8_bias_correction,
        allow_partial_precision=FLAGS.allow_partial_precision,
        warmup_data=FLAGS.warmup_data,
        warmup_batch_sizes=tuple(FLAGS.warmup_batch_sizes or ()),
    )


# --------------------------------------------------------------------------- threads

def define_threading_flags() -> List[str]:
    return [
        define("integer", "intra_op_threads", None, "TensorFlow intra-op threads (default: TF's choice)."),
        define("integer", "inter_op_threads", None, "TensorFlow inter-op threads (default: TF's choice)."),
    ]


def threading_from_flags():
    """(intra, inter) thread counts; ConfigError when out of range."""
    values = []
    for name in ("intra_op_threads", "inter_op_threads"):
        value = FLAGS[name].value
        if value is not None and not 0 <= value <= 1024:
            raise ConfigError(f"--{name}={value} is out of range; use 0 (TF's choice) to 1024.")
        values.append(value)
    return tuple(values)


# --------------------------------------------------------------------------- measuring speed

def define_batch_sizes_flag(default: List[str], meaning: str = "Batch sizes to measure.", *,
                            formerly: Sequence[str] = ()) -> List[str]:
    return [define("list", "batch_sizes", default, meaning, formerly=formerly)]


def batch_sizes_from_flags() -> tuple:
    """--batch_sizes as a tuple of positive ints; ConfigError naming the bad entry."""
    sizes = _positive_ints("batch_sizes", "1,8,32")
    if not sizes:
        raise ConfigError("--batch_sizes is empty; write e.g. 1,8,32.")
    return sizes


def define_duration_flag(default: Optional[float], meaning: str, *, formerly: Sequence[str] = ()) -> List[str]:
    """--duration: seconds of timed runs per model and batch size (run's --seconds_per_measurement, tune's --seconds_per_candidate)."""
    return [define("float", "duration", default, meaning, formerly=formerly)]


def define_benchmark_flags() -> List[str]:
    return [
        define("string", "baseline", None, "Also measure this model (usually the original), interleaved, and report speed-ups."),
        *define_batch_sizes_flag(["1", "8", "32"]),
        define("integer", "warmup", 5, "Untimed runs per model and batch size (after the first call, which is timed apart)."),
        define("integer", "iterations", None, "Timed runs per model and batch size."),
        *define_duration_flag(None, "Or: about this many seconds of timed runs per model and batch size (default 5)."),
        define("bool", "plot", True, "Write benchmark.png into --output (needs matplotlib: pip install tftrt_toolkit[plot])."),
        define("list", "concurrency", None,
               "Also measure throughput with this many concurrent client threads, e.g. 1,4: requests/s, samples/s and "
               "latency p50/p90/p99 per batch size (throughput.json/csv/png in --output)."),
    ]


def concurrency_from_flags() -> tuple:
    """--concurrency as a tuple of positive ints (empty when not given); ConfigError naming the bad entry."""
    return _positive_ints("concurrency", "1,4")


# --------------------------------------------------------------------------- predict / validate

def define_top_k_flag() -> List[str]:
    return [define("integer", "top_k", 5, "How many classes per sample (predict), or the k of top-k agreement and accuracy (validate).")]


def define_predict_flags() -> List[str]:
    return define_top_k_flag() + define_batch_size_flag("Samples per model call.") + [
        define("enum", "format", "json",
               "Output format: json, jsonl (one record per line) or csv (default json; csv when --output ends in .csv).",
               enum_values=["json", "jsonl", "csv"]),
        define("string", "labels", None,
               "Class names, one per line (line i = class i), for classifiers whose outputs are not ImageNet's 1000/1001."),
    ]


def define_labels_csv_flag() -> List[str]:
    return [define("string", "labels_csv", None, "Ground truth, a CSV with columns image,class_id: reports each model's accuracy.")]


def define_validate_flags() -> List[str]:
    return define_top_k_flag() + define_labels_csv_flag() + define_batch_size_flag("Samples per call of each model.") + [
        define("string", "original", None, "The original model (any --model form)."),
        define("string", "optimized", None, "The optimized model to check (a SavedModel dir, e.g. tftrt convert's output)."),
        define("float", "rtol", None, "Relative tolerance per element (default by precision: fp32 1e-4, bf16 5e-2, ...)."),
        define("float", "atol", None, "Absolute tolerance per element (default by precision: fp32 1e-4, bf16 5e-2, ...)."),
        define("float", "min_within_tolerance", None,
               "Share of output elements that must be within tolerance (default: 1.0 for fp32 or explicit tolerances)."),
        define("float", "min_top1_agreement", None, "Share of samples whose top-1 class must match (default by precision)."),
        define("integer", "samples", None, "Compare on at most this many samples (default: all; 32 for synthetic data)."),
    ]


# --------------------------------------------------------------------------- batch-predict (Apache Beam)

def define_batch_predict_flags() -> List[str]:
    """batch-predict's own flags; --top_k, --format and --labels are predict's (shards are JSON Lines for json/jsonl)."""
    shared = [name for name in define_predict_flags() if name in ("top_k", "format", "labels")]
    return shared + [
        define("integer", "min_batch_size", 1, "Smallest batch Beam's adaptive batching gives RunInference."),
        define("integer", "max_batch_size", 32, "Largest batch Beam's adaptive batching gives RunInference."),
        define("integer", "num_shards", 0, "Prediction files to write (0: the Beam runner decides)."),
    ]


def batch_predict_format_from_flags() -> str:
    """--format as batch-predict's output format: jsonl (and json) -> JSON Lines shards, csv -> CSV shards."""
    return "csv" if FLAGS.format == "csv" else "jsonl"


# --------------------------------------------------------------------------- tune

def define_tune_flags() -> List[str]:
    """tune's own flags; --labels_csv and --min_top1_agreement keep validate's names."""
    return define_labels_csv_flag() + [
        *define_batch_size_flag("The batch size candidates are timed at (and validated with); at 1, one-thread settings "
                                "are tried too."),
        define("float", "max_top1_drop", None,
               "Accuracy budget with --labels_csv: the largest top-1 accuracy drop allowed, as a share (0.005 = half a point; "
               "the default with labels)."),
        define("float", "min_top1_agreement", None,
               "Accuracy budget without labels: the share of samples whose top-1 class must match the original's "
               "(default 0.99)."),
        define("float", "time_budget", 600.0, "Seconds for the whole search; candidates not reached are skipped."),
        define("list", "candidates", None,
               "What to try instead of the defaults: backend-precision[@INTRAxINTER], e.g. cpu-fp32,cpu-bf16,cpu-bf16@2x1."),
        define("string", "report_dir", None, "Where tune.json/csv/png go (default: OUTPUT.tune beside --output)."),
    ]


def tune_budget_from_flags() -> dict:
    """--max_top1_drop / --min_top1_agreement as tune()'s keyword arguments (tune checks that at most one is given)."""
    return {"max_top1_drop": FLAGS.max_top1_drop, "min_top1_agreement": FLAGS.min_top1_agreement}


# --------------------------------------------------------------------------- serving-config

def define_serving_config_flags() -> List[str]:
    return [
        define("string", "model_base_path", None,
               "serving-config: the directory holding the model's version directories (BASE/1, BASE/2, ...)."),
        define("string", "name", None, "serving-config: the model's name in TF Serving (/v1/models/NAME)."),
        define("string", "benchmark_report", None,
               "serving-config: a benchmark.json (tftrt benchmark --output; a throughput.json beside it is read too) "
               "to size batching from."),
        define("string", "tune_report", None, "serving-config: a tune.json (OUTPUT.tune/tune.json): its chosen threads and latency."),
    ]
