"""Data sources: a data spec (image folder, image files, .npy, .npz, 'synthetic') -> model inputs.

A ``Source`` streams ``Sample``s (one example per input, plus where it came from) and
groups them into ``Batch``es; nothing holds all the data at once, so memory stays flat for
folders of any size. Every source checks what it can when it is opened (the path exists,
array shapes and dtypes fit the signature, the folder has images) so a bad spec fails
before a long conversion starts.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterator, List, Sequence, Union

import numpy as np

from tftrt_toolkit.data.arrays import open_npy, open_npz
from tftrt_toolkit.data.images import IMAGE_EXTENSIONS, decode_image, first_non_image_file, is_image_file, iter_image_files
from tftrt_toolkit.data.preprocess import ModelHint, check_preprocess_mode, preprocess_pixels
from tftrt_toolkit.data.samples import Sample, Source, numeric_dtype, pixel_mode
from tftrt_toolkit.data.shapes import ImageLayout, InputShapeSpec, image_layout, override_for, parse_input_shape
from tftrt_toolkit.data.synthetic import SYNTHETIC, open_synthetic
from tftrt_toolkit.errors import DataError
from tftrt_toolkit.models.signature import ModelSignature

logger = logging.getLogger(__name__)

DataSpec = Union[str, "os.PathLike[str]", Sequence[Union[str, "os.PathLike[str]"]]]

# How many undecodable files to remember (for the warning) before the first good image.
_FAILURES_KEPT = 20


def open_source(
    spec: DataSpec,
    signature: ModelSignature,
    *,
    preprocess: str = "auto",
    input_shape: InputShapeSpec = None,
    model_hint: ModelHint = None,
    seed: int = 0,
) -> Source:
    """Open a data spec as a ``Source`` of inputs for ``signature``.

    ``spec`` is a directory of images (.jpg/.jpeg/.png/.bmp/.webp, recursive, sorted), one
    image path or a list of image paths/directories, ``FILE.npy`` (single-input models;
    shape (N, ...)), ``FILE.npz`` keyed by input name, ``'synthetic'`` (unbounded) or
    ``'synthetic:N'``. ``preprocess`` is one of PREPROCESS_MODES; ``auto`` uses
    ``model_hint`` (see ``resolve_preprocess_mode``) for images and synthetic pixels and
    means "as stored" for arrays; integer (e.g. uint8) image inputs always get raw pixels.
    ``input_shape`` fills dims the signature leaves unknown (see ``parse_input_shape``).
    ``seed`` makes synthetic data reproducible.

    Raises DataError when the spec cannot feed the signature: missing path, unsupported
    file type, empty folder, string inputs, arrays of the wrong shape/dtype, an npz without
    an input's name, unknown dims images need, an unknown preprocess mode.
    """
    check_preprocess_mode(preprocess)
    if not signature.inputs:
        raise DataError(f"signature {signature.key!r} has no inputs; there is nothing to feed")
    for info in signature.inputs:
        numeric_dtype(info)
    overrides = parse_input_shape(input_shape)
    if isinstance(spec, (str, os.PathLike)):
        text = os.fspath(spec)
        if text == SYNTHETIC or text.startswith(SYNTHETIC + ":"):
            return open_synthetic(text, signature, preprocess, overrides, model_hint, seed)
        path = Path(text)
        if not path.exists():
            raise DataError(f"data {text!r} does not exist; pass a directory of images, image files, FILE.npy, FILE.npz or 'synthetic'")
        suffix = path.suffix.lower()
        if path.is_dir():
            return _open_images(signature, [path], f"directory {path}", preprocess, overrides, model_hint)
        if suffix == ".npy":
            return open_npy(path, signature, preprocess)
        if suffix == ".npz":
            return open_npz(path, signature, preprocess)
        if is_image_file(path):
            return _open_images(signature, [path], f"image {path}", preprocess, overrides, model_hint)
        raise DataError(
            f"data {text!r} is not a directory, image ({', '.join(IMAGE_EXTENSIONS)}), .npy or .npz file; convert it to one of those"
        )
    paths = [Path(os.fspath(item)) for item in spec]
    if not paths:
        raise DataError("no data given: pass a directory of images, image files, FILE.npy, FILE.npz or 'synthetic'")
    for path in paths:
        if not path.exists():
            raise DataError(f"image {str(path)!r} does not exist; check the path")
        if not path.is_dir() and not is_image_file(path):
            raise DataError(f"{path} is not an image file ({', '.join(IMAGE_EXTENSIONS)}) or directory; a list of data paths holds images only")
    return _open_images(signature, paths, f"{len(paths)} image path(s) starting with {paths[0]}", preprocess, overrides, model_hint)


def _open_images(signature, paths, description, preprocess, overrides, model_hint) -> ImageSource:
    if len(signature.inputs) != 1:
        raise DataError(
            f"the model has {len(signature.inputs)} inputs ({', '.join(signature.input_names)}); images feed single-input models: "
            "use --data=FILE.npz keyed by input name"
        )
    info = signature.inputs[0]
    layout = image_layout(info, override_for(overrides, info.name))
    mode = pixel_mode(info, preprocess, model_hint, channels=layout.channels)
    for path in paths:
        if path.is_dir() and next(iter_image_files(path), None) is None:
            other = first_non_image_file(path)
            found = f"; it holds other files, e.g. {other}" if other else ""
            raise DataError(f"no images in directory {path} ({', '.join(IMAGE_EXTENSIONS)}, searched recursively){found}; add images or point --data elsewhere")
    return ImageSource(signature, paths, description, mode, layout)


class ImageSource(Source):
    """Images from files and/or directories (recursive, sorted), decoded one at a time."""

    def __init__(self, signature: ModelSignature, roots: Sequence[Path], description: str, preprocess: str, layout: ImageLayout):
        info = signature.inputs[0]
        super().__init__(signature, description, preprocess, {info.name: layout.sample_shape})
        self.roots = tuple(roots)
        self.layout = layout
        self._input = info
        self._warned = set()  # warn once per bad file, not on every pass over the data

    def image_paths(self) -> Iterator[Path]:
        """The candidate image files, in the order samples come."""
        for root in self.roots:
            if root.is_dir():
                yield from iter_image_files(root)
            else:
                yield root

    def count(self) -> int:
        return sum(1 for _ in self.image_paths())

    def samples(self) -> Iterator[Sample]:
        # Undecodable files are skipped with a warning once a good image shows the data is
        # usable; until then failures are held back so an all-bad folder gives one error.
        held_back: List[DataError] = []
        failures = 0
        decoded = 0
        layout = self.layout
        for path in self.image_paths():
            try:
                pixels = decode_image(path, size=(layout.height, layout.width), channels=layout.channels)
            except DataError as error:
                failures += 1
                if decoded:
                    self._warn_skipped(error)
                elif len(held_back) < _FAILURES_KEPT:
                    held_back.append(error)
                continue
            if not decoded:
                for error in held_back:
                    self._warn_skipped(error)
                if failures > len(held_back):
                    self._warn_skipped(DataError(f"{failures - len(held_back)} more undecodable image(s) before {path}"))
            decoded += 1
            yield Sample({self._input.name: self._to_input(pixels)}, str(path))
        if not decoded:
            if failures == 1:
                raise held_back[0]
            if failures:
                raise DataError(f"no decodable images in {self.description} ({failures} tried); first: {held_back[0]}")
            raise DataError(f"no images in {self.description}; add {'/'.join(IMAGE_EXTENSIONS)} files")

    def _warn_skipped(self, error: DataError) -> None:
        if str(error) not in self._warned:
            self._warned.add(str(error))
            logger.warning("skipping undecodable image: %s", error)

    def _to_input(self, pixels: np.ndarray) -> np.ndarray:
        if self.layout.channels_first:
            pixels = np.transpose(pixels, (2, 0, 1))
        if self.preprocess == "none":
            return pixels.astype(self._input.np_dtype)
        return preprocess_pixels(pixels, self.preprocess, channels_first=self.layout.channels_first).astype(self._input.np_dtype, copy=False)


def names_images(spec: DataSpec) -> bool:
    """Whether a data spec names images (so samples have file names to look labels up by), not arrays or synthetic data."""
    if isinstance(spec, (list, tuple)):
        return True  # several paths are images (arrays come one file at a time)
    text = os.fspath(spec)
    return not (text == SYNTHETIC or text.startswith(SYNTHETIC + ":")) and not text.endswith((".npy", ".npz"))
