"""Flag groups shared by the subcommands, each defined once with a ``*_from_flags`` builder.

absl flags are process-global, so every ``define_*`` is idempotent and each subcommand
lists the flags it uses (``FLAG_NAMES``) for its --help. Flags that several commands share
(``--model``, ``--output``, ``--data``) have one meaning-neutral definition here.
"""

from __future__ import annotations

from typing import List, Optional

from absl import flags

from tftrt_toolkit.config import PROFILE_STRATEGIES, Backend, ConversionConfig, Precision
from tftrt_toolkit.data.shapes import parse_shape_list
from tftrt_toolkit.errors import ConfigError

FLAGS = flags.FLAGS


def define(kind: str, name: str, default, help_text: str, enum_values=None) -> str:
    if name not in FLAGS:
        if kind == "enum":
            flags.DEFINE_enum(name, default, enum_values, help_text)
        else:
            getattr(flags, f"DEFINE_{kind}")(name, default, help_text)
    return name


def define_model_flags() -> List[str]:
    return [
        define("string", "model", None,
                "The model: a SavedModel dir, a .keras/.h5 file, keras:NAME (keras.applications) or hub:HANDLE / a Hub URL."),
        define("string", "weights", "imagenet",
                "For keras:NAME: imagenet (downloaded on first use), none (random), or a weights file."),
        define("string", "signature", None, "Signature key to use (default: serving_default, or the only one)."),
        define("bool", "unsafe_deserialization", False,
                "Allow Keras files to run Lambda-layer code when loading. Only for files you trust."),
    ]


def define_output_flags() -> List[str]:
    return [
        define("string", "output", None,
                "Where to write: a directory for convert/benchmark/tune, a file for predict (default stdout)."),
        define("bool", "overwrite", False, "Replace an existing output (atomically)."),
        define("string", "version", None,
                "TF Serving layout: write to OUTPUT/N; 'auto' takes the next free integer."),
    ]


def define_conversion_flags() -> List[str]:
    return [
        define("enum", "backend", "auto", "Conversion backend: auto picks tensorrt where TF has TensorRT and a GPU, else cpu.",
                enum_values=[b.value for b in Backend]),
        define("string", "precision", "fp32", "fp32 | fp16 (tensorrt) | bf16 (cpu) | int8 (needs --calibration_data)."),
        define("integer", "max_workspace_size_bytes", None, "TensorRT: GPU scratch memory per engine (TF-TRT default if unset)."),
        define("integer", "minimum_segment_size", 3, "TensorRT: smallest subgraph turned into an engine."),
        define("integer", "max_cached_engines", 1, "TensorRT: engines cached per TRTEngineOp (maximum_cached_engines)."),
        define("bool", "use_calibration", True, "TensorRT int8: calibrate (False expects fake-quant nodes in the graph)."),
        define("bool", "dynamic_shape", False, "TensorRT: explicit-batch dynamic shapes with optimization profiles."),
        define("string", "profile_strategy", None, f"TensorRT dynamic-shape profile strategy: {', '.join(PROFILE_STRATEGIES)}."),
        define("bool", "allow_build_at_runtime", True, "TensorRT: build engines at run time for unseen shapes."),
        define("string", "build_shapes", None,
                "Build engines ahead of time for these input shapes (1x224x224x3,8x224x224x3) or batch sizes (1,8)."),
        define("integer", "calibration_steps", 8, "int8: batches of calibration data to feed."),
        define("integer", "batch_size", 8, "Batch size for calibration (and for commands that batch)."),
        define("list", "bf16_keep_fp32_ops", ["Softmax"], "cpu bf16: op types kept in fp32."),
        define("string", "warmup_data", None,
               "TF Serving warmup records (assets.extra/tf_serving_warmup_requests) from this data: an image directory, "
               "FILE.npy/.npz or 'synthetic'; default: the calibration or build data when there is some; 'none': no file."),
        define("list", "warmup_batch_sizes", None,
               "One warmup request per batch size, e.g. 1,8 (default: the build shapes' batch sizes, else 1)."),
    ]


def define_data_flags() -> List[str]:
    return [
        define("list", "data", None, "Input data: an image directory, image files, FILE.npy/.npz, or 'synthetic'."),
        define("string", "calibration_data", None, "int8 calibration data (same forms as --data)."),
        define("string", "preprocess", "auto", "Image preprocessing: auto | caffe | tf | torch | none (keras.applications meanings)."),
        define("string", "input_shape", None,
               "Fill dims the signature leaves unknown: HxW (or HxWxC) for images, e.g. 224x224; per input: ids=128,mask=128."),
        define("bool", "strict_data", False,
               "Fail (exit 4, listing them) when image folders hold files that would be skipped: not images, unreadable, hidden."),
    ]


def define_threading_flags() -> List[str]:
    return [
        define("integer", "intra_op_threads", None, "TensorFlow intra-op threads (default: TF's choice)."),
        define("integer", "inter_op_threads", None, "TensorFlow inter-op threads (default: TF's choice)."),
    ]


def define_format_flags() -> List[str]:
    return [define("bool", "json", False, "Print machine-readable JSON instead of text.")]


def require(name: str) -> str:
    value = FLAGS[name].value
    if value in (None, "", []):
        raise ConfigError(f"--{name} is required; see --help.")
    return value


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
        maximum_cached_engines=FLAGS.max_cached_engines,
        use_calibration=FLAGS.use_calibration,
        use_dynamic_shape=FLAGS.dynamic_shape,
        dynamic_shape_profile_strategy=FLAGS.profile_strategy,
        allow_build_at_runtime=FLAGS.allow_build_at_runtime,
        build_shapes=build_shapes,
        calibration_steps=FLAGS.calibration_steps,
        batch_size=FLAGS.batch_size,
        bf16_keep_fp32_ops=tuple(FLAGS.bf16_keep_fp32_ops or ()),
        warmup_data=FLAGS.warmup_data,
        warmup_batch_sizes=tuple(FLAGS.warmup_batch_sizes or ()),
    )


def threading_from_flags():
    """(intra, inter) thread counts; ConfigError when out of range."""
    values = []
    for name in ("intra_op_threads", "inter_op_threads"):
        value = FLAGS[name].value
        if value is not None and not 0 <= value <= 1024:
            raise ConfigError(f"--{name}={value} is out of range; use 0 (TF's choice) to 1024.")
        values.append(value)
    return tuple(values)


# --------------------------------------------------------------------------- predict / validate / benchmark

def model_load_options_from_flags() -> dict:
    """The ``load_model`` options the model flags describe (weights, signature, unsafe deserialization)."""
    return {
        "weights": None if (FLAGS.weights or "").lower() == "none" else FLAGS.weights,
        "signature_key": FLAGS.signature,
        "unsafe_deserialization": FLAGS.unsafe_deserialization,
    }


def define_top_k_flag() -> List[str]:
    return [define("integer", "top_k", 5, "How many classes per sample (predict), or the k of top-k agreement and accuracy (validate).")]


def define_predict_flags() -> List[str]:
    return define_top_k_flag() + [
        define("enum", "format", "json",
               "Output format: json, jsonl (one record per line) or csv (default json; csv when --output ends in .csv).",
               enum_values=["json", "jsonl", "csv"]),
        define("string", "labels", None,
               "Class names, one per line (line i = class i), for classifiers whose outputs are not ImageNet's 1000/1001."),
        define("integer", "batch_size", 8, "Batch size for calibration (and for commands that batch)."),
    ]


def define_validate_flags() -> List[str]:
    return define_top_k_flag() + [
        define("string", "original", None, "The original model (any --model form)."),
        define("string", "optimized", None, "The optimized model to check (a SavedModel dir, e.g. tftrt convert's output)."),
        define("float", "rtol", None, "Relative tolerance per element (default by precision: fp32 1e-4, bf16 5e-2, ...)."),
        define("float", "atol", None, "Absolute tolerance per element (default by precision: fp32 1e-4, bf16 5e-2, ...)."),
        define("float", "min_within_tolerance", None,
               "Share of output elements that must be within tolerance (default: 1.0 for fp32 or explicit tolerances)."),
        define("float", "min_top1_agreement", None, "Share of samples whose top-1 class must match (default by precision)."),
        define("string", "labels_csv", None, "Ground truth, a CSV with columns image,class_id: reports each model's accuracy."),
        define("integer", "samples", None, "Compare on at most this many samples (default: all; 32 for synthetic data)."),
        define("integer", "batch_size", 8, "Batch size for calibration (and for commands that batch)."),
    ]


def define_benchmark_flags() -> List[str]:
    return [
        define("string", "baseline", None, "Also measure this model (usually the original), interleaved, and report speed-ups."),
        define("list", "batch_sizes", ["1", "8", "32"], "Batch sizes to measure."),
        define("integer", "warmup", 5, "Untimed runs per model and batch size (after the first call, which is timed apart)."),
        define("integer", "iterations", None, "Timed runs per model and batch size."),
        define("float", "duration", None, "Or: about this many seconds of timed runs per model and batch size (default 5)."),
        define("bool", "plot", True, "Write benchmark.png into --output (needs matplotlib: pip install tftrt_toolkit[plot])."),
        define("list", "concurrency", None,
               "Also measure throughput with this many concurrent client threads, e.g. 1,4: requests/s, samples/s and "
               "latency p50/p90/p99 per batch size (throughput.json/csv/png in --output)."),
    ]


def concurrency_from_flags() -> tuple:
    """--concurrency as a tuple of positive ints (empty when not given); ConfigError naming the bad entry."""
    levels = []
    for text in FLAGS.concurrency or []:
        try:
            level = int(text)
        except ValueError:
            raise ConfigError(f"--concurrency entry {text!r} is not a whole number; write e.g. 1,4.") from None
        if level < 1:
            raise ConfigError(f"--concurrency entry {level} is not valid; use 1 or more clients.")
        levels.append(level)
    return tuple(levels)


def batch_sizes_from_flags() -> tuple:
    """--batch_sizes as a tuple of positive ints; ConfigError naming the bad entry."""
    sizes = []
    for text in FLAGS.batch_sizes or []:
        try:
            size = int(text)
        except ValueError:
            raise ConfigError(f"--batch_sizes entry {text!r} is not a whole number; write e.g. 1,8,32.") from None
        if size < 1:
            raise ConfigError(f"--batch_sizes entry {size} is not valid; batch sizes are >= 1.")
        sizes.append(size)
    if not sizes:
        raise ConfigError("--batch_sizes is empty; write e.g. 1,8,32.")
    return tuple(sizes)


def data_from_flags(default: Optional[str] = None):
    """--data as one spec (a single entry) or a list of paths; ``default`` when not given."""
    data = FLAGS.data
    if not data:
        return default
    return data[0] if len(data) == 1 else list(data)


# --------------------------------------------------------------------------- batch-predict (Apache Beam)

def define_batch_predict_flags() -> List[str]:
    """batch-predict's own flags; --top_k, --format and --labels are predict's (shards are JSON Lines for json/jsonl)."""
    shared = [name for name in define_predict_flags() if name in ("format", "labels")]
    return define_top_k_flag() + shared + [
        define("integer", "min_batch_size", 1, "Smallest batch Beam's adaptive batching gives RunInference."),
        define("integer", "max_batch_size", 32, "Largest batch Beam's adaptive batching gives RunInference."),
        define("integer", "num_shards", 0, "Prediction files to write (0: the Beam runner decides)."),
    ]


def batch_predict_format_from_flags() -> str:
    """--format as batch-predict's output format: jsonl (and json) -> JSON Lines shards, csv -> CSV shards."""
    return "csv" if FLAGS.format == "csv" else "jsonl"


# --------------------------------------------------------------------------- tune

def define_tune_flags() -> List[str]:
    """tune's own flags; --labels_csv, --min_top1_agreement and --batch_size keep validate's names."""
    return [
        define("string", "labels_csv", None, "Ground truth, a CSV with columns image,class_id: reports each model's accuracy."),
        define("float", "max_top1_drop", None,
               "Accuracy budget with --labels_csv: the largest top-1 accuracy drop allowed, as a share (0.005 = half a point; "
               "the default with labels)."),
        define("float", "min_top1_agreement", None,
               "Share of samples whose top-1 class must match the original's (validate: default by precision; "
               "tune: the budget without labels, default 0.99)."),
        define("integer", "batch_size", 8, "Batch size for calibration (and for commands that batch)."),
        define("float", "time_budget", 600.0, "tune: seconds for the whole search; candidates not reached are skipped."),
        define("float", "seconds_per_candidate", 3.0, "tune: seconds of timed runs per candidate (interleaved with the original)."),
        define("list", "candidates", None,
               "tune: what to try instead of the defaults: backend-precision[@INTRAxINTER], e.g. cpu-fp32,cpu-bf16,cpu-bf16@2x1."),
        define("string", "report_dir", None, "tune: where tune.json/csv/png go (default: OUTPUT.tune beside --output)."),
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
