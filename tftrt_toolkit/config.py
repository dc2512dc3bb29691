"""The conversion config: the one source of conversion options and their validation.

``ConversionConfig`` is frozen; build a variant with ``config.replace(precision="bf16")``.
TensorRT fields keep TF-TRT's own names (``max_workspace_size_bytes``,
``minimum_segment_size``, ``maximum_cached_engines``, ``use_dynamic_shape``,
``allow_build_at_runtime``) so the translation to ``TrtGraphConverterV2`` is one
obvious function, ``tensorrt_converter_kwargs``.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Dict, Optional, Tuple

from tftrt_toolkit.errors import ConfigError


class Precision(str, enum.Enum):
    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"
    INT8 = "int8"


class Backend(str, enum.Enum):
    AUTO = "auto"
    TENSORRT = "tensorrt"
    CPU = "cpu"


# TF-TRT's profile strategies in TF 2.17 (trt_convert.supported_profile_strategies()).
# Kept as literals so validation never imports TF; a contract test checks they match.
PROFILE_STRATEGIES = ("Range", "Optimal", "Range+Optimal", "ImplicitBatchModeCompatible")

# Which precisions each concrete backend can produce. fp16 on CPU is refused: oneDNN
# has no fast fp16 path on most CPUs, and bf16 keeps fp32's range for the same saving.
SUPPORTED_PRECISIONS = {
    Backend.TENSORRT: (Precision.FP32, Precision.FP16, Precision.INT8),
    Backend.CPU: (Precision.FP32, Precision.BF16, Precision.INT8),
}

# TF-TRT's default workspace when TensorRT < 8.4 or absent (trt_convert.DEFAULT_TRT_MAX_WORKSPACE_SIZE_BYTES);
# with TensorRT >= 8.4 TF-TRT itself defaults to "as much as needed", which we pass when the user gives nothing.
DEFAULT_MAX_WORKSPACE_SIZE_BYTES = 1 << 30
_MAX_REASONABLE_WORKSPACE_BYTES = 1 << 40  # 1 TiB: larger is a typo, not a GPU
_MAX_REASONABLE_CACHED_ENGINES = 1024
_MAX_REASONABLE_BATCH = 1 << 16
_MAX_REASONABLE_DIM = 1 << 16
_MAX_TOKEN_BRANCHES = 64  # one per core of a large server; more is a typo


def _enum_value(enum_cls, value, field_name):
    if isinstance(value, enum_cls):
        return value
    try:
        return enum_cls(str(value).lower())
    except ValueError:
        allowed = ", ".join(m.value for m in enum_cls)
        raise ConfigError(f"{field_name}={value!r} is not valid; use one of: {allowed}.") from None


@dataclasses.dataclass(frozen=True)
class ConversionConfig:
    """Everything that decides how a model is converted; validated on construction.

    Fields:
      backend: "auto" (TensorRT where TF has it and a GPU is visible, else cpu), "tensorrt", "cpu".
      precision: "fp32", "fp16" (TensorRT), "bf16" (cpu), "int8" (both; needs calibration data).
      signature_key: which signature to convert; None = "serving_default", or the only one.
      max_workspace_size_bytes, minimum_segment_size, maximum_cached_engines,
      use_calibration, use_dynamic_shape, dynamic_shape_profile_strategy,
      allow_build_at_runtime: passed to TrtGraphConverterV2 unchanged (TensorRT only).
      build_shapes: input shapes to build TensorRT engines for ahead of time, e.g. ((1,224,224,3),).
      calibration_steps, batch_size: how many batches of calibration data to feed (int8).
      save_gpu_specific_engines: TF-TRT's save() flag; False lets an INT8 model move to another GPU.
      bf16_keep_fp32_ops: op types the cpu backend keeps in fp32 under bf16 (numerically sensitive ops).
      int8_overflow_safe_weights: cpu int8: 7-bit weights in the output channels whose 8-bit products
        would overflow int16 on the calibration data on CPUs without VNNI (which saturate them there).
      int8_bias_correction: cpu int8: each conv's bias absorbs the mean shift its weight rounding causes
        on the calibration data.
      int8_fuse_residual_adds: cpu int8: residual adds with no ReLU after them (MobileNet/EfficientNet blocks)
        fused into the int8 conv before them, instead of an fp32 add between a Dequantize and a QuantizeV2.
      token_branches: cpu fp32/bf16, sequence models (token ids [?, T]): the per-token work split into this many
        branches that TF's inter-op threads run side by side; served best at 1 intra-op thread and this many
        inter-op threads, which the metadata records (backends/cpu/token_branches.py). 0 or 1: one branch.
      allow_partial_precision: accept a bf16/int8 conversion that leaves most of the model's multiply-adds in
        fp32 (backends/precision_coverage.py: below 50% of FLOPs is refused by default).
      warmup_data: data spec for TF Serving warmup records (image dir, .npy/.npz, "synthetic");
        None = the calibration or build data when the conversion has some, "none" = no warmup file.
      warmup_batch_sizes: one warmup request per batch size; () = the build shapes' batch sizes, else 1.
    """

    backend: Backend = Backend.AUTO
    precision: Precision = Precision.FP32
    signature_key: Optional[str] = None
    # --- TensorRT (TF-TRT's own names) ---
    max_workspace_size_bytes: Optional[int] = None
    minimum_segment_size: int = 3
    maximum_cached_engines: int = 1
    use_calibration: bool = True
    use_dynamic_shape: bool = False
    dynamic_shape_profile_strategy: Optional[str] = None
    allow_build_at_runtime: bool = True
    save_gpu_specific_engines: bool = True
    build_shapes: Tuple[Tuple[int, ...], ...] = ()
    # --- calibration (int8, both backends) ---
    calibration_steps: int = 8
    batch_size: int = 8
    # --- cpu ---
    bf16_keep_fp32_ops: Tuple[str, ...] = ("Softmax",)
    int8_overflow_safe_weights: bool = True
    int8_bias_correction: bool = True
    int8_fuse_residual_adds: bool = True
    token_branches: int = 0
    allow_partial_precision: bool = False
    # --- TF Serving warmup records (assets.extra/tf_serving_warmup_requests) ---
    warmup_data: Optional[str] = None
    warmup_batch_sizes: Tuple[int, ...] = ()

    def __post_init__(self):
        # Accept plain strings from callers and flags; store enums.
        object.__setattr__(self, "backend", _enum_value(Backend, self.backend, "backend"))
        object.__setattr__(self, "precision", _enum_value(Precision, self.precision, "precision"))
        object.__setattr__(self, "build_shapes", tuple(tuple(int(d) for d in s) for s in self.build_shapes))
        object.__setattr__(self, "bf16_keep_fp32_ops", tuple(self.bf16_keep_fp32_ops))
        object.__setattr__(self, "warmup_batch_sizes", _whole_numbers(self.warmup_batch_sizes, "warmup_batch_sizes"))
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError naming the first bad field and its allowed values."""
        if self.max_workspace_size_bytes is not None and not (
            0 < self.max_workspace_size_bytes <= _MAX_REASONABLE_WORKSPACE_BYTES
        ):
            raise ConfigError(
                f"max_workspace_size_bytes={self.max_workspace_size_bytes} is out of range; "
                f"give a positive byte count up to {_MAX_REASONABLE_WORKSPACE_BYTES} (e.g. 1073741824 for 1 GiB)."
            )
        if not 1 <= self.minimum_segment_size <= 10_000:
            raise ConfigError(
                f"minimum_segment_size={self.minimum_segment_size} is out of range; use 1..10000 (TF-TRT's default is 3)."
            )
        if not 1 <= self.maximum_cached_engines <= _MAX_REASONABLE_CACHED_ENGINES:
            raise ConfigError(
                f"maximum_cached_engines={self.maximum_cached_engines} is out of range; "
                f"use 1..{_MAX_REASONABLE_CACHED_ENGINES} (TF-TRT's default is 1)."
            )
        if not 1 <= self.batch_size <= _MAX_REASONABLE_BATCH:
            raise ConfigError(f"batch_size={self.batch_size} is out of range; use 1..{_MAX_REASONABLE_BATCH}.")
        if not 1 <= self.calibration_steps <= 100_000:
            raise ConfigError(f"calibration_steps={self.calibration_steps} is out of range; use 1..100000.")
        if self.dynamic_shape_profile_strategy is not None:
            if self.dynamic_shape_profile_strategy not in PROFILE_STRATEGIES:
                raise ConfigError(
                    f"dynamic_shape_profile_strategy={self.dynamic_shape_profile_strategy!r} is not one TF-TRT supports; "
                    f"use one of: {', '.join(PROFILE_STRATEGIES)}."
                )
            if not self.use_dynamic_shape:
                raise ConfigError(
                    "dynamic_shape_profile_strategy needs use_dynamic_shape=True (--use_dynamic_shape); "
                    "TF-TRT ignores profiles in implicit-batch mode."
                )
        for shape in self.build_shapes:
            if not shape or any(d <= 0 for d in shape):
                raise ConfigError(f"build shape {shape} is invalid; every dimension must be a positive integer, e.g. 1x224x224x3.")
            # TF-TRT's build() allocates these inputs on the GPU: a typo must not become a 400 GB tensor.
            if shape[0] > _MAX_REASONABLE_BATCH or any(d > _MAX_REASONABLE_DIM for d in shape[1:]):
                raise ConfigError(
                    f"build shape {'x'.join(map(str, shape))} is out of range; batch up to {_MAX_REASONABLE_BATCH}, "
                    f"other dims up to {_MAX_REASONABLE_DIM}."
                )
        for field in dataclasses.fields(self):
            # A switch given as "no" or 0 would otherwise pass as truthy or falsy without a word.
            if field.type == "bool" and not isinstance(getattr(self, field.name), bool):
                raise ConfigError(f"{field.name}={getattr(self, field.name)!r} is not valid; use True or False.")
        if isinstance(self.token_branches, bool) or not isinstance(self.token_branches, int) \
                or not 0 <= self.token_branches <= _MAX_TOKEN_BRANCHES:
            raise ConfigError(f"token_branches={self.token_branches!r} is not valid; use a whole number 0..{_MAX_TOKEN_BRANCHES} "
                              "(2 for a 2-core server at batch 1; 0 = no split).")
        if self.token_branches > 1 and self.backend is Backend.TENSORRT:
            raise ConfigError(f"token_branches={self.token_branches} applies to the cpu backend; use --backend=cpu "
                              "with it, or --token_branches=0 with tensorrt.")
        if self.token_branches > 1 and self.precision not in (Precision.FP32, Precision.BF16):
            raise ConfigError(f"token_branches={self.token_branches} applies to cpu fp32 and bf16 conversions; "
                              f"use --precision=bf16 or fp32 with it, or --token_branches=0 for {self.precision.value}.")
        if self.warmup_data is not None and not (isinstance(self.warmup_data, str) and self.warmup_data.strip()):
            raise ConfigError(f"warmup_data={self.warmup_data!r} is not valid; give a data spec (an image directory, "
                              "FILE.npy/.npz, 'synthetic') or 'none' for no warmup file.")
        for size in self.warmup_batch_sizes:
            if not 1 <= size <= _MAX_REASONABLE_BATCH:
                raise ConfigError(f"warmup batch size {size} is out of range; use 1..{_MAX_REASONABLE_BATCH}, e.g. 1,8.")
        if len(set(self.warmup_batch_sizes)) != len(self.warmup_batch_sizes):
            raise ConfigError(f"warmup_batch_sizes {list(self.warmup_batch_sizes)} repeats a value; list each batch size once.")
        if self.backend is not Backend.AUTO:
            self.check_backend_supports_precision(self.backend)

    def check_backend_supports_precision(self, backend: Backend) -> None:
        """Raise ConfigError when ``backend`` cannot produce ``self.precision``, saying what can."""
        allowed = SUPPORTED_PRECISIONS[backend]
        if self.precision in allowed:
            return
        if backend is Backend.CPU and self.precision is Precision.FP16:
            raise ConfigError(
                "precision=fp16 is not supported on the cpu backend (no fast fp16 kernels on CPUs); "
                "use --precision=bf16, which keeps fp32's range and runs on AVX512-BF16/AMX CPUs."
            )
        if backend is Backend.TENSORRT and self.precision is Precision.BF16:
            raise ConfigError(
                "precision=bf16 is not supported by TF-TRT in TF 2.17; use --precision=fp16 or int8 with "
                "--backend=tensorrt, or bf16 with --backend=cpu."
            )
        names = ", ".join(p.value for p in allowed)
        raise ConfigError(f"precision={self.precision.value} is not supported on the {backend.value} backend; use one of: {names}.")

    def replace(self, **changes: Any) -> "ConversionConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    @property
    def needs_calibration(self) -> bool:
        return self.precision is Precision.INT8 and self.use_calibration

    def tensorrt_converter_kwargs(self) -> Dict[str, Any]:
        """The keyword arguments for ``TrtGraphConverterV2(...)``, minus the input model fields."""
        kwargs: Dict[str, Any] = dict(
            precision_mode=self.precision.value.upper(),
            minimum_segment_size=self.minimum_segment_size,
            maximum_cached_engines=self.maximum_cached_engines,
            use_calibration=self.use_calibration,
            allow_build_at_runtime=self.allow_build_at_runtime,
            use_dynamic_shape=self.use_dynamic_shape,
        )
        if self.max_workspace_size_bytes is not None:
            kwargs["max_workspace_size_bytes"] = self.max_workspace_size_bytes
        if self.use_dynamic_shape:
            kwargs["dynamic_shape_profile_strategy"] = self.dynamic_shape_profile_strategy or "Range"
        return kwargs

    def to_json(self) -> Dict[str, Any]:
        data = dataclasses.asdict(self)
        data["backend"] = self.backend.value
        data["precision"] = self.precision.value
        data["build_shapes"] = [list(s) for s in self.build_shapes]
        data["bf16_keep_fp32_ops"] = list(self.bf16_keep_fp32_ops)
        data["warmup_batch_sizes"] = list(self.warmup_batch_sizes)
        return data

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "ConversionConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _whole_numbers(values, field_name: str) -> Tuple[int, ...]:
    """A tuple of ints from ints or digit strings ('1', '8'); ConfigError naming the field for anything else."""
    numbers = []
    for value in values or ():
        try:
            if isinstance(value, bool) or float(value) != int(value):
                raise ValueError
            numbers.append(int(value))
        except (TypeError, ValueError):
            raise ConfigError(f"{field_name} entry {value!r} is not a whole number; write e.g. 1,8.") from None
    return tuple(numbers)
