"""Flag groups: each adds its flags and parses them in one class; a command declares exactly the groups it reads.

Polygraphy's ``tools/args/`` is the model. A ``FlagGroup`` defines its flags (``add``) and
reads every one of them into plain attributes (``parse``); ``requires`` names the groups
whose parsed values it reads. A command lists its groups (``flag_groups()`` in
``cli/<command>.py``, its own flags in a group of its own beside the code that reads them),
and ``CommandFlags`` defines them in a ``FlagValues`` of that command's alone: a flag the
command does not read is unknown there, so ``tftrt run --output=X`` is an error at once,
with one line naming the flag, instead of parsing and doing nothing.

Flags carry ``ConversionConfig``'s field names. Renamed flags keep their old spelling as an
alias until the next release (``RENAMED_FLAGS``; README "Renamed flags"; each one's --help).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, Type, TypeVar

from absl import flags as absl_flags

from tftrt_toolkit.config import PROFILE_STRATEGIES, Backend, ConversionConfig, Precision
from tftrt_toolkit.data.shapes import parse_shape_list
from tftrt_toolkit.errors import ConfigError

#: Old spelling -> today's flag. The old ones are absl aliases: they set the same value.
RENAMED_FLAGS: Dict[str, str] = {
    "max_cached_engines": "maximum_cached_engines",
    "dynamic_shape": "use_dynamic_shape",
    "profile_strategy": "dynamic_shape_profile_strategy",
    "seconds_per_measurement": "duration",  # run
    "seconds_per_candidate": "duration",  # tune
    "run_batch_sizes": "batch_sizes",  # run
}

Group = TypeVar("Group", bound="FlagGroup")


class FlagGroup:
    """One concern's flags: ``add`` defines them, ``parse`` reads every one of them into attributes.

    ``requires``: the groups whose parsed values ``parse`` reads (a command that declares this
    group must declare them too, earlier in its list).
    """

    requires: Tuple[Type["FlagGroup"], ...] = ()

    def add(self, flags: "CommandFlags") -> None:
        raise NotImplementedError

    def parse(self, flags: "CommandFlags") -> None:
        raise NotImplementedError


class CommandFlags:
    """One command's flags: its groups, defined in a ``FlagValues`` of its own, parsed together.

    ``flags[ModelFlags]`` is the parsed group. ``names`` lists the flags in the order --help
    shows them; ``read`` the ones the groups have read (every one, after ``parse``).
    """

    def __init__(self, command: str, groups: Sequence[FlagGroup]):
        self.command = command
        self.values = absl_flags.FlagValues()
        self.names: List[str] = []
        self.read: set = set()
        self._groups: Dict[type, FlagGroup] = {}
        for group in groups:
            missing = [needed.__name__ for needed in group.requires if needed not in self._groups]
            if missing:
                raise TypeError(f"{type(group).__name__} needs {', '.join(missing)} declared before it")
            self._groups[type(group)] = group
            group.add(self)

    def __getitem__(self, group_type: Type[Group]) -> Group:
        return self._groups[group_type]

    def define(self, kind: str, name: str, default, help_text: str, enum_values=None, *,
               formerly: Optional[Sequence[str]] = None) -> str:
        """Define flag ``name`` for this command. Its old spellings ``formerly`` (default: every one in
        ``RENAMED_FLAGS``) become aliases, named in its help. Returns ``name``."""
        old_names = [old for old, new in RENAMED_FLAGS.items() if new == name]
        if formerly is not None:
            old_names = [old for old in old_names if old in formerly]
        if old_names:
            spelled = ", ".join(f"--{old}" for old in old_names)
            help_text = f"{help_text} (Formerly {spelled}: still accepted until the next release.)"
        if kind == "enum":
            absl_flags.DEFINE_enum(name, default, enum_values, help_text, flag_values=self.values)
        else:
            getattr(absl_flags, f"DEFINE_{kind}")(name, default, help_text, flag_values=self.values)
        for old in old_names:
            absl_flags.DEFINE_alias(old, name, flag_values=self.values)
        self.names.append(name)
        return name

    def value(self, name: str):
        """The parsed value of flag ``name`` (a group reads its flags through here)."""
        self.read.add(name)
        return self.values[name].value

    def present(self, name: str) -> bool:
        """Whether ``name`` was given on the command line (or a flagfile), not left at its default."""
        self.read.add(name)
        return bool(self.values[name].present)

    def parse(self, argv: Sequence[str], *, known_only: bool = False) -> List[str]:
        """Parse ``argv`` (argv[0] is the program) into the groups; returns what absl left (with ``known_only``).

        absl's ``flags.Error`` for an unknown or malformed flag; ConfigError for a value a group refuses.
        """
        remaining = self.values(list(argv), known_only=known_only)
        for group in self._groups.values():
            group.parse(self)
        return remaining

    def require(self, name: str):
        value = self.value(name)
        if value in (None, "", []):
            raise ConfigError(f"--{name} is required; see `tftrt {self.command} --help`.")
        return value

    def positive_ints(self, name: str, example: str) -> tuple:
        """A list flag's entries as positive ints; ConfigError naming the bad entry."""
        numbers = []
        for text in self.value(name) or []:
            try:
                number = int(text)
            except ValueError:
                raise ConfigError(f"--{name} entry {text!r} is not a whole number; write e.g. {example}.") from None
            if number < 1:
                raise ConfigError(f"--{name} entry {number} is not valid; use 1 or more, e.g. {example}.")
            numbers.append(number)
        return tuple(numbers)


# --------------------------------------------------------------------------- the model

class ModelFlags(FlagGroup):
    """--model and how to load it: --signature, and for Keras files and keras:NAME --weights,
    --unsafe_deserialization, --custom_objects.

    ``spec_flag=False``: no --model (validate names its two models itself); ``loading=False``:
    --model and --signature only (batch-predict's workers load a SavedModel directory as it is).
    """

    def __init__(self, *, required: bool = True, spec_flag: bool = True, loading: bool = True):
        self.required, self.spec_flag, self.loading = required, spec_flag, loading

    def add(self, flags):
        if self.spec_flag:
            flags.define("string", "model", None,
                         "The model: a SavedModel dir, a .keras/.h5 file, keras:NAME (keras.applications) or hub:HANDLE / a Hub URL.")
        flags.define("string", "signature", None, "Signature key to use (default: serving_default, or the only one).")
        if self.loading:
            flags.define("string", "weights", "imagenet",
                         "For keras:NAME: imagenet (downloaded on first use), none (random), or a weights file.")
            flags.define("bool", "unsafe_deserialization", False,
                         "Allow Keras files to run Lambda-layer code when loading. Only for files you trust.")
            flags.define("list", "custom_objects", None,
                         "Keras files with custom layers (or subclassed models): the module(s) defining those classes, "
                         "as module.path or FILE.py.")

    def parse(self, flags):
        self.spec: Optional[str] = None
        if self.spec_flag:
            self.spec = flags.require("model") if self.required else flags.value("model")
        self.signature: Optional[str] = flags.value("signature")
        #: ``load_model``'s options besides the signature (weights, unsafe deserialization, custom objects).
        self.file_options: dict = {}
        if self.loading:
            weights = flags.value("weights")
            self.file_options = {
                "weights": None if (weights or "").lower() == "none" else weights,
                "unsafe_deserialization": flags.value("unsafe_deserialization"),
                "custom_objects": flags.value("custom_objects") or None,
            }

    @property
    def load_options(self) -> dict:
        """Every ``load_model`` option the flags give: ``file_options`` and ``signature_key``."""
        return {**self.file_options, "signature_key": self.signature}


# --------------------------------------------------------------------------- input data

class DataFlags(FlagGroup):
    """Images (or arrays) in, the same flags on every command that reads them: --data, --preprocess,
    --input_shape, --strict_data, and --labels_csv where accuracy is measured.

    ``source_flag=False``: no --data (convert reads --calibration_data); ``default``: the data when
    --data is not given (None with ``required``: an error); ``labels``: add --labels_csv, with
    ``labels_help``.
    """

    def __init__(self, *, source_flag: bool = True, required: bool = False, default: Optional[str] = None,
                 data_help: str = "Input data: an image directory, image files, FILE.npy/.npz, or 'synthetic'.",
                 labels: bool = False,
                 labels_help: str = "Ground truth, a CSV with columns image,class_id: reports each model's accuracy."):
        self.source_flag, self.required, self.default, self.data_help = source_flag, required, default, data_help
        self.labels, self.labels_help = labels, labels_help

    def add(self, flags):
        if self.source_flag:
            flags.define("list", "data", None, self.data_help)
        flags.define("string", "preprocess", "auto",
                     "Image preprocessing: auto (the model's recorded or keras.applications convention, else raw pixels) "
                     "| caffe | tf | torch | none (keras.applications meanings).")
        flags.define("string", "input_shape", None,
                     "Fill dims the signature leaves unknown: HxW (or HxWxC) for images, e.g. 224x224; per input: ids=128,mask=128.")
        flags.define("bool", "strict_data", False,
                     "Fail (exit 4, listing them) when image folders hold files that would be skipped: not images, unreadable, "
                     "hidden (a folder's README/SOURCES text and labels CSV are not data, and not skipped).")
        if self.labels:
            flags.define("string", "labels_csv", None, self.labels_help)

    def parse(self, flags):
        self.data = None
        if self.source_flag:
            data = flags.require("data") if self.required else flags.value("data")
            #: --data as one spec (a single entry) or a list of paths; ``default`` when not given.
            self.data = self.default if not data else (data[0] if len(data) == 1 else list(data))
        self.preprocess: str = flags.value("preprocess")
        self.input_shape: Optional[str] = flags.value("input_shape")
        self.strict: bool = flags.value("strict_data")
        self.labels_csv: Optional[str] = flags.value("labels_csv") if self.labels else None

    @property
    def options(self) -> dict:
        """How the data becomes inputs, as the keyword arguments predict/validate/benchmark/convert/run/tune take."""
        return {"preprocess": self.preprocess, "input_shape": self.input_shape}


# --------------------------------------------------------------------------- where results go

class OutputFlags(FlagGroup):
    """Where the command writes (--output, or ``name``), --overwrite, and with ``version`` TF Serving's --version."""

    def __init__(self, meaning: str = "Where to write the results.", *, name: str = "output",
                 default: Optional[str] = None, required: bool = False, version: bool = False):
        self.meaning, self.name, self.default, self.required, self.version = meaning, name, default, required, version

    def add(self, flags):
        flags.define("string", self.name, self.default, self.meaning)
        flags.define("bool", "overwrite", False, "Replace an existing output (atomically).")
        if self.version:
            flags.define("string", "version", None, "TF Serving layout: write to OUTPUT/N; 'auto' takes the next free integer.")

    def parse(self, flags):
        self.path: Optional[str] = flags.require(self.name) if self.required else flags.value(self.name)
        self.overwrite: bool = flags.value("overwrite")
        self.serving_version: Optional[str] = flags.value("version") if self.version else None


class JsonFlag(FlagGroup):
    """--json: machine-readable output."""

    def add(self, flags):
        flags.define("bool", "json", False, "Print machine-readable JSON instead of text.")

    def parse(self, flags):
        self.json: bool = flags.value("json")


class ThreadingFlags(FlagGroup):
    """TensorFlow's thread pools: --intra_op_threads, --inter_op_threads."""

    def add(self, flags):
        flags.define("integer", "intra_op_threads", None, "TensorFlow intra-op threads (default: TF's choice).")
        flags.define("integer", "inter_op_threads", None, "TensorFlow inter-op threads (default: TF's choice).")

    def parse(self, flags):
        values = []
        for name in ("intra_op_threads", "inter_op_threads"):
            value = flags.value(name)
            if value is not None and not 0 <= value <= 1024:
                raise ConfigError(f"--{name}={value} is out of range; use 0 (TF's choice) to 1024.")
            values.append(value)
        #: (intra, inter); None is TF's choice.
        self.threads: Tuple[Optional[int], Optional[int]] = tuple(values)


# --------------------------------------------------------------------------- single flags several groups share

def define_backend(flags: CommandFlags) -> str:
    return flags.define("enum", "backend", "auto",
                        "Conversion backend: auto picks tensorrt where TF has TensorRT and a GPU, else cpu.",
                        enum_values=[b.value for b in Backend])


def define_calibration_data(flags: CommandFlags, meaning: str = "int8 calibration data (same forms as --data).") -> str:
    return flags.define("string", "calibration_data", None, meaning)


def define_allow_partial(flags: CommandFlags) -> str:
    """--allow_partial_precision (--allow_partial for short): accept a bf16/int8 conversion with under half its FLOPs converted."""
    name = flags.define("bool", "allow_partial_precision", False,
                        "Accept a bf16/int8 conversion that leaves over half of the model's multiply-adds in fp32 "
                        "(refused by default, naming the op types left behind). --allow_partial for short.")
    absl_flags.DEFINE_alias("allow_partial", name, flag_values=flags.values)
    return name


def define_batch_sizes(flags: CommandFlags, default: List[str], meaning: str = "Batch sizes to measure.", *,
                       formerly: Sequence[str] = ()) -> str:
    return flags.define("list", "batch_sizes", default, meaning, formerly=formerly)


def batch_sizes(flags: CommandFlags) -> tuple:
    """--batch_sizes as a tuple of positive ints; ConfigError naming the bad entry."""
    sizes = flags.positive_ints("batch_sizes", "1,8,32")
    if not sizes:
        raise ConfigError("--batch_sizes is empty; write e.g. 1,8,32.")
    return sizes


def define_duration(flags: CommandFlags, default: Optional[float], meaning: str, *, formerly: Sequence[str] = ()) -> str:
    """--duration: seconds of timed runs per model and batch size (run's --seconds_per_measurement, tune's --seconds_per_candidate)."""
    return flags.define("float", "duration", default, meaning, formerly=formerly)


def define_top_k(flags: CommandFlags) -> str:
    return flags.define("integer", "top_k", 5,
                        "How many classes per sample (predict), or the k of top-k agreement and accuracy (validate).")


def define_class_names(flags: CommandFlags) -> str:
    return flags.define("string", "labels", None,
                        "Class names, one per line (line i = class i), for classifiers whose outputs are not ImageNet's 1000/1001.")


def define_output_format(flags: CommandFlags) -> str:
    return flags.define("enum", "format", "json",
                        "Output format: json, jsonl (one record per line) or csv (default json; csv when --output ends in .csv).",
                        enum_values=["json", "jsonl", "csv"])


# --------------------------------------------------------------------------- conversion

def _define_tensorrt(flags: CommandFlags, names: Optional[Sequence[str]] = None) -> None:
    """TF-TRT's conversion parameters (``names``: only these), named as ConversionConfig (and TrtGraphConverterV2) names them."""
    every = (
        ("integer", "max_workspace_size_bytes", None, "TensorRT: GPU scratch memory per engine (TF-TRT default if unset)."),
        ("integer", "minimum_segment_size", 3, "TensorRT: smallest subgraph turned into an engine."),
        ("integer", "maximum_cached_engines", 1, "TensorRT: engines cached per TRTEngineOp."),
        ("bool", "use_calibration", True, "TensorRT int8: calibrate (False expects fake-quant nodes in the graph)."),
        ("bool", "use_dynamic_shape", False, "TensorRT: explicit-batch dynamic shapes with optimization profiles."),
        ("string", "dynamic_shape_profile_strategy", None,
         f"TensorRT dynamic-shape profile strategy: {', '.join(PROFILE_STRATEGIES)}."),
        ("bool", "allow_build_at_runtime", True, "TensorRT: build engines at run time for unseen shapes."),
        ("string", "build_shapes", None,
         "Build engines ahead of time for these input shapes (1x224x224x3,8x224x224x3) or batch sizes (1,8)."),
    )
    for kind, name, default, help_text in every:
        if names is None or name in names:
            flags.define(kind, name, default, help_text)


class ConversionFlags(FlagGroup):
    """Every ConversionConfig field: backend, precision, TensorRT's parameters, cpu bf16/int8, calibration, warmup records.

    Reads --signature from ``ModelFlags`` (the config carries the signature key).
    """

    requires = (ModelFlags,)

    def add(self, flags):
        define_backend(flags)
        flags.define("string", "precision", "fp32", "fp32 | fp16 (tensorrt) | bf16 (cpu) | int8 (needs --calibration_data).")
        _define_tensorrt(flags)
        flags.define("list", "bf16_keep_fp32_ops", ["Softmax"], "cpu bf16: op types kept in fp32.")
        flags.define("bool", "int8_overflow_safe_weights", True,
                     "cpu int8: 7-bit weights where 8-bit ones overflow int16 on the calibration data (CPUs without VNNI).")
        flags.define("bool", "int8_bias_correction", True,
                     "cpu int8: each conv's bias absorbs the mean shift its weight rounding causes on the calibration data.")
        flags.define("bool", "int8_fuse_residual_adds", True,
                     "cpu int8: residual adds without a ReLU after them run inside the int8 conv before them, "
                     "not in fp32 between a Dequantize and a QuantizeV2.")
        flags.define("integer", "token_branches", 0,
                     "cpu fp32/bf16, sequence models (token ids [?, T]): split the per-token work into this many branches "
                     "that run side by side at batch 1 (2 on a 2-core server); served at 1 intra-op thread and this many "
                     "inter-op threads, which the model records. 0: no split.")
        define_allow_partial(flags)
        define_calibration_data(flags)
        flags.define("integer", "calibration_steps", 8, "int8: batches of calibration data to feed.")
        flags.define("integer", "batch_size", 8,
                     "int8 calibration: samples per calibration batch (--calibration_steps batches are fed).")
        flags.define("string", "warmup_data", None,
                     "TF Serving warmup records (assets.extra/tf_serving_warmup_requests) from this data: an image directory, "
                     "FILE.npy/.npz or 'synthetic'; default: the calibration or build data when there is some; 'none': no file.")
        flags.define("list", "warmup_batch_sizes", None,
                     "One warmup request per batch size, e.g. 1,8 (default: the build shapes' batch sizes, else 1).")

    def parse(self, flags):
        """``config``: the ConversionConfig the flags describe (validated: ConfigError names the bad flag)."""
        text = flags.value("precision")
        try:
            precision = Precision(text.lower())
        except ValueError:
            raise ConfigError(f"--precision={text!r} is not valid; use fp32, fp16, bf16 or int8.") from None
        build_shapes = flags.value("build_shapes")
        self.calibration_data: Optional[str] = flags.value("calibration_data")
        self.config = ConversionConfig(
            backend=flags.value("backend"),
            precision=precision,
            signature_key=flags[ModelFlags].signature,
            max_workspace_size_bytes=flags.value("max_workspace_size_bytes"),
            minimum_segment_size=flags.value("minimum_segment_size"),
            maximum_cached_engines=flags.value("maximum_cached_engines"),
            use_calibration=flags.value("use_calibration"),
            use_dynamic_shape=flags.value("use_dynamic_shape"),
            dynamic_shape_profile_strategy=flags.value("dynamic_shape_profile_strategy"),
            allow_build_at_runtime=flags.value("allow_build_at_runtime"),
            build_shapes=parse_shape_list(build_shapes, what="--build_shapes entry", error=ConfigError) if build_shapes else (),
            calibration_steps=flags.value("calibration_steps"),
            batch_size=flags.value("batch_size"),
            bf16_keep_fp32_ops=tuple(flags.value("bf16_keep_fp32_ops") or ()),
            int8_overflow_safe_weights=flags.value("int8_overflow_safe_weights"),
            int8_bias_correction=flags.value("int8_bias_correction"),
            int8_fuse_residual_adds=flags.value("int8_fuse_residual_adds"),
            token_branches=flags.value("token_branches"),
            allow_partial_precision=flags.value("allow_partial_precision"),
            warmup_data=flags.value("warmup_data"),
            warmup_batch_sizes=tuple(flags.value("warmup_batch_sizes") or ()),
        )


class TensorRTPlanFlags(FlagGroup):
    """--plan=tensorrt and the settings the predicted plan depends on: --precision, --minimum_segment_size,
    --use_dynamic_shape, --build_shapes."""

    def add(self, flags):
        flags.define("enum", "plan", None, "Predict a backend's conversion: tensorrt.", enum_values=["tensorrt"])
        flags.define("string", "precision", "fp32", "The precision the plan is predicted for: fp32 | fp16 | int8.")
        _define_tensorrt(flags, ("minimum_segment_size", "use_dynamic_shape", "build_shapes"))

    def parse(self, flags):
        self.plan: Optional[str] = flags.value("plan")
        self.settings = {
            "precision": flags.value("precision"),
            "minimum_segment_size": flags.value("minimum_segment_size"),
            "use_dynamic_shape": flags.value("use_dynamic_shape"),
            "build_shapes": flags.value("build_shapes"),
        }
