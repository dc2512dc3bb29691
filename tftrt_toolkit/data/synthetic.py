"""Synthetic inputs: seeded random arrays shaped and typed like each input of the signature."""

from __future__ import annotations

import itertools
from typing import Dict, Iterator, Optional

import numpy as np

from tftrt_toolkit.data.preprocess import preprocess_pixels
from tftrt_toolkit.data.samples import Sample, Source, numeric_dtype, pixel_mode
from tftrt_toolkit.data.shapes import Dims, ImageLayout, image_layout, looks_like_image, override_for, resolve_sample_shape
from tftrt_toolkit.errors import DataError
from tftrt_toolkit.signature import ModelSignature, TensorInfo

SYNTHETIC = "synthetic"

# Synthetic integer ids stay below this so they index any embedding table worth optimizing.
_SYNTHETIC_ID_LIMIT = 100


class SyntheticSource(Source):
    """Seeded random inputs matching each input's dtype and shape: unbounded, or ``num_samples``.

    Float image inputs get random 0..255 pixels put through the preprocess mode (so value
    ranges match what the model expects, which INT8 calibration depends on); other floats
    are uniform in [-1, 1). Integer image inputs get 0..255. Other integers: names with
    'mask' get 1s then 0s (at least one 1), names with 'type'/'segment' get 0s then 1s, the
    rest are ids in [0, 100). Bools are masks like the int ones.
    """

    def __init__(self, signature: ModelSignature, sample_shapes: Dict[str, Dims], preprocess: str, seed: int, num_samples: Optional[int], layouts: Dict[str, ImageLayout]):
        description = "synthetic data" if num_samples is None else f"synthetic data ({num_samples} samples)"
        super().__init__(signature, description, preprocess, sample_shapes)
        self.seed = seed
        self.num_samples = num_samples
        self.layouts = layouts  # image inputs only

    def count(self) -> Optional[int]:
        return self.num_samples

    def samples(self) -> Iterator[Sample]:
        rng = np.random.default_rng(self.seed)
        indices = itertools.count() if self.num_samples is None else range(self.num_samples)
        for index in indices:
            inputs = {
                info.name: synthetic_array(info, self.sample_shapes[info.name], rng, preprocess=self.preprocess, layout=self.layouts.get(info.name))
                for info in self.signature.inputs
            }
            yield Sample(inputs, f"synthetic[{index}]")


def synthetic_array(info: TensorInfo, shape: Dims, rng: np.random.Generator, *, preprocess: str = "none", layout: Optional[ImageLayout] = None) -> np.ndarray:
    """One random array of ``shape`` for ``info``'s dtype (see ``SyntheticSource`` for the ranges).

    ``layout`` marks an image input; its float pixels go through ``preprocess``.
    """
    dtype = numeric_dtype(info)
    name = info.name.lower()
    if layout is not None and dtype.kind in "fiu":
        pixels = rng.integers(0, 256, size=shape)
        if dtype.kind == "f":
            return preprocess_pixels(pixels, preprocess, channels_first=layout.channels_first).astype(dtype, copy=False)
        return pixels.astype(dtype)
    if dtype.kind == "f":
        return rng.uniform(-1.0, 1.0, size=shape).astype(dtype)
    if dtype.kind == "b" or ("mask" in name and dtype.kind in "iu"):
        return _prefix_pattern(shape, rng, first=1).astype(dtype)
    if dtype.kind in "iu":
        if "type" in name or "segment" in name:
            return _prefix_pattern(shape, rng, first=0).astype(dtype)
        high = min(_SYNTHETIC_ID_LIMIT, int(np.iinfo(dtype).max) + 1)
        return rng.integers(0, high, size=shape).astype(dtype)
    raise DataError(f"input {info.name!r} has dtype {info.dtype}, which synthetic data cannot make; pass --data=FILE.npy/.npz with real values")


def _prefix_pattern(shape: Dims, rng: np.random.Generator, *, first: int) -> np.ndarray:
    """``first`` for a random-length prefix (at least one) of the last axis, the other value after."""
    values = np.full(shape, 1 - first, dtype=np.int64)
    if not shape:
        values[...] = first
        return values
    length = int(rng.integers(1, shape[-1] + 1))
    values[..., :length] = first
    return values


def open_synthetic(text: str, signature: ModelSignature, preprocess: str, overrides, model_hint, seed: int) -> SyntheticSource:
    num_samples = None
    if text != SYNTHETIC:
        count = text[len(SYNTHETIC) + 1:]
        if not count.isdigit() or int(count) < 1:
            raise DataError(f"data {text!r}: write 'synthetic' or 'synthetic:N' with N a positive number of samples")
        num_samples = int(count)
    sample_shapes: Dict[str, Dims] = {}
    layouts: Dict[str, ImageLayout] = {}
    mode = "none"
    for info in signature.inputs:
        override = override_for(overrides, info.name)
        sample_shapes[info.name] = resolve_sample_shape(info, override)
        if looks_like_image(info):
            layouts[info.name] = image_layout(info, sample_shapes[info.name])
            if numeric_dtype(info).kind == "f":
                mode = pixel_mode(info, preprocess, model_hint, channels=layouts[info.name].channels)
    return SyntheticSource(signature, sample_shapes, mode, seed, num_samples, layouts)
