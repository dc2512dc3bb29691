"""Shapes as users write them, and concrete input shapes for a signature.

The one parser and formatter of shape text: dims joined by 'x', as TF-TRT users write them
("224x224", "1x224x224x3"), unknown dims as '?'. ``parse_shape`` reads what ``format_shape``
writes (for known dims). A *sample shape* is an input's shape without the batch dim; unknown
dims are filled from ``--input_shape``.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Dict, Mapping, Optional, Sequence, Tuple, Type, Union

from tftrt_toolkit.errors import DataError, ToolkitError
from tftrt_toolkit.signature import TensorInfo

Dims = Tuple[int, ...]
InputShapeSpec = Union[None, str, Sequence[int], Mapping[str, Union[str, Sequence[int]]]]


def parse_shape(text: Union[str, Sequence[int]], *, what: str = "shape", error: Type[ToolkitError] = DataError) -> Dims:
    """'224x224x3' (or a sequence of ints) -> (224, 224, 3).

    Raises ``error`` (DataError by default; a config option's parser passes ConfigError),
    naming ``what``, unless every dim is a positive int.
    """
    if isinstance(text, str):
        parts = text.strip().lower().split("x")
        if not all(re.fullmatch(r"\d+", part.strip()) for part in parts):
            raise error(f"{what} {text!r} is not a shape; write dims joined by 'x', e.g. 224x224 or 1x224x224x3")
        dims = tuple(int(part) for part in parts)
    else:
        try:
            dims = tuple(int(dim) for dim in text)
        except (TypeError, ValueError) as bad:
            raise error(f"{what} {text!r} is not a shape; give a sequence of positive ints or a string like 224x224") from bad
    if not dims or any(dim <= 0 for dim in dims):
        raise error(f"{what} {text!r} must have positive dims, e.g. 224x224")
    return dims


def parse_shape_list(text: str, *, what: str = "shape", error: Type[ToolkitError] = DataError) -> Tuple[Dims, ...]:
    """'1x224x224x3,8x224x224x3' -> ((1, 224, 224, 3), (8, 224, 224, 3)); '1,8' -> ((1,), (8,)).

    Items are separated by commas or spaces; each is read by ``parse_shape`` (same errors).
    """
    return tuple(parse_shape(item, what=what, error=error) for item in re.split(r"[,\s]+", text.strip()) if item)


def format_shape(shape: Optional[Sequence[Optional[int]]], *, batch: str = "?") -> str:
    """(None, 224, None, 3) -> '?x224x?x3', the form ``parse_shape`` reads; () -> 'scalar'.

    ``batch`` names an unknown leading dim (e.g. 'N' where the message explains N).
    """
    if shape is None:
        return "(unknown rank)"
    if len(shape) == 0:
        return "scalar"
    return "x".join(batch if index == 0 and dim is None else "?" if dim is None else str(dim) for index, dim in enumerate(shape))


def parse_input_shape(value: InputShapeSpec) -> Union[None, Dims, Dict[str, Dims]]:
    """Parse an ``input_shape`` override: one shape for every input, or a shape per input name.

    Forms: None; "224x224" / (224, 224); "ids=128,mask=128" / {"ids": "128", "mask": (128,)}.
    A shape may be the sample shape, include the batch dim (ignored), or for images be
    just HxW.
    """
    if value is None:
        return None
    if isinstance(value, Mapping):
        return {str(name): parse_shape(dims, what=f"input_shape for {name!r}") for name, dims in value.items()}
    if isinstance(value, str) and "=" in value:
        per_input = {}
        for item in value.split(","):
            name, sep, dims = item.partition("=")
            if not sep or not name.strip():
                raise DataError(f"input_shape {value!r} mixes forms; write NAME=SHAPE,NAME=SHAPE (e.g. ids=128,mask=128) or one SHAPE")
            per_input[name.strip()] = parse_shape(dims, what=f"input_shape for {name.strip()!r}")
        return per_input
    return parse_shape(value, what="input_shape")


def override_for(input_shape: Union[None, Dims, Dict[str, Dims]], name: str) -> Optional[Dims]:
    """The override that applies to input ``name`` (a per-name entry, or the shared shape)."""
    if isinstance(input_shape, dict):
        return input_shape.get(name)
    return input_shape


def sample_shape(info: TensorInfo, override: Optional[Dims] = None) -> Dims:
    """The input's shape without the batch dim, every dim known.

    Unknown dims come from ``override`` (a sample shape, or a full shape whose batch dim
    is ignored); known dims must agree with it. Raises DataError when a dim stays unknown
    or the override does not fit.
    """
    if info.shape is None:
        if override is None:
            raise DataError(f"input {info.name!r} has unknown rank; pass --input_shape with its shape without the batch dim")
        return override
    if len(info.shape) == 0:
        raise DataError(f"input {info.name!r} is a scalar, not a batch; this toolkit feeds batched inputs, export a signature with a batch dim")
    known = tuple(info.shape[1:])
    if override is not None:
        if len(override) == len(info.shape):
            override = override[1:]
        if len(override) != len(known):
            raise DataError(
                f"input_shape {format_shape(override)} does not fit input {info.name!r} of shape {format_shape(info.shape)}; "
                f"give {len(known)} dims without the batch dim"
            )
        for dim, wanted in zip(known, override):
            if dim is not None and dim != wanted:
                raise DataError(
                    f"input_shape {format_shape(override)} contradicts input {info.name!r} of shape {format_shape(info.shape)}; "
                    "only its unknown (?) dims can be set"
                )
        return tuple(override)
    if any(dim is None for dim in known):
        raise DataError(
            f"input {info.name!r} has unknown dims {format_shape(info.shape)}; pass --input_shape with its shape without the batch dim "
            f"(e.g. {_example(known)})"
        )
    return tuple(int(dim) for dim in known)


@dataclasses.dataclass(frozen=True)
class ImageLayout:
    """How images fill a 4-D input: its height, width, channels (1 or 3), and channel position."""

    height: int
    width: int
    channels: int
    channels_first: bool = False

    @property
    def sample_shape(self) -> Dims:
        if self.channels_first:
            return (self.channels, self.height, self.width)
        return (self.height, self.width, self.channels)


def looks_like_image(info: TensorInfo) -> bool:
    """True for a 4-D input with 1 or 3 channels first or last (or unknown channels)."""
    if info.shape is None or len(info.shape) != 4:
        return False
    first, last = info.shape[1], info.shape[3]
    return last in (1, 3, None) or first in (1, 3)


def image_layout(info: TensorInfo, override: Optional[Dims] = None) -> ImageLayout:
    """Where images go in ``info``: NHWC, or NCHW when channels (1 or 3) come first.

    ``override`` may be HxW, the sample shape (HxWxC / CxHxW), or the full shape. Unknown
    channels default to 3 (RGB). Raises DataError when the input is not 4-D, has a channel
    count images cannot give, or its height/width stay unknown.
    """
    shape = info.shape
    if shape is None:
        if override is None:
            raise DataError(f"input {info.name!r} has unknown rank; pass --input_shape=HxW (e.g. 224x224) so images can be resized")
        shape = (None, None, None, None)
    if len(shape) != 4:
        raise DataError(
            f"input {info.name!r} has shape {format_shape(shape)}, not (N, height, width, channels); "
            "images cannot feed it: use --data=FILE.npy/.npz or synthetic"
        )
    per_sample = tuple(shape[1:])
    channels_first = per_sample[2] not in (1, 3, None) and per_sample[0] in (1, 3)
    if override is not None:
        if len(override) == 4:
            override = override[1:]
        if len(override) == 2:
            override = (None,) + override if channels_first else override + (None,)
        if len(override) != 3:
            raise DataError(f"input_shape {format_shape(override)} does not fit image input {info.name!r}; give HxW, e.g. 224x224")
        if shape == (None, None, None, None) and override[2] not in (1, 3, None) and override[0] in (1, 3):
            channels_first = True
        merged = []
        for dim, wanted in zip(per_sample, override):
            if dim is not None and wanted is not None and dim != wanted:
                raise DataError(
                    f"input_shape {format_shape(override)} contradicts input {info.name!r} of shape {format_shape(shape)}; "
                    "only its unknown (?) dims can be set"
                )
            merged.append(dim if dim is not None else wanted)
        per_sample = tuple(merged)
    if channels_first:
        channels, height, width = per_sample
    else:
        height, width, channels = per_sample
    channels = 3 if channels is None else channels
    if channels not in (1, 3):
        raise DataError(
            f"input {info.name!r} has shape {format_shape(shape)} with {channels} channels; images give 1 (grayscale) or 3 (RGB): "
            "use --data=FILE.npy/.npz or synthetic"
        )
    if height is None or width is None:
        raise DataError(
            f"input {info.name!r} has unknown height/width {format_shape(shape)}; pass --input_shape=HxW (e.g. 224x224) to resize images to"
        )
    return ImageLayout(height=int(height), width=int(width), channels=int(channels), channels_first=channels_first)


def resolve_sample_shape(info: TensorInfo, override: Optional[Dims] = None) -> Dims:
    """``sample_shape`` for any input; image inputs with unknown dims also take HxW (channels default to 3)."""
    if looks_like_image(info) and (info.has_dynamic_dims or (override is not None and len(override) == 2)):
        return image_layout(info, override).sample_shape
    return sample_shape(info, override)


def _example(known: Sequence[Optional[int]]) -> str:
    return format_shape(tuple(128 if dim is None else dim for dim in known)) if known else "128"
