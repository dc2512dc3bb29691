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
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from tftrt_toolkit.data.arrays import open_npy, open_npz
from tftrt_toolkit.data.images import (IMAGE_EXTENSIONS, UnreadableImage, decode_image_file, first_non_image_file, is_image_file,
                                       iter_image_files, walk_directory)
from tftrt_toolkit.data.preprocess import ModelHint, check_preprocess_mode, preprocess_pixels
from tftrt_toolkit.data.samples import Sample, Source, numeric_dtype, pixel_mode
from tftrt_toolkit.data.shapes import ImageLayout, InputShapeSpec, image_layout, looks_like_image, override_for, parse_input_shape
from tftrt_toolkit.data.skipped import UNREADABLE, SkippedFile, skipped_listing, skipped_summary
from tftrt_toolkit.data.synthetic import SYNTHETIC, open_synthetic
from tftrt_toolkit.errors import DataError
from tftrt_toolkit.signature import ModelSignature

logger = logging.getLogger(__name__)

DataSpec = Union[str, "os.PathLike[str]", Sequence[Union[str, "os.PathLike[str]"]]]

# How many undecodable files to remember (for the error) before the first good image.
_FAILURES_KEPT = 20

# Summary lines already logged, with the data they describe: a job reads one folder many
# times (predict and validate per model, calibration), and the user needs the line once.
_SUMMARIES_LOGGED: set = set()


def open_source(
    spec: DataSpec,
    signature: ModelSignature,
    *,
    preprocess: str = "auto",
    input_shape: InputShapeSpec = None,
    model_hint: ModelHint = None,
    seed: int = 0,
    strict: bool = False,
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

    Files in image folders that are not used (not images, unreadable, hidden) are listed in
    ``Source.skipped_files`` as a pass finds them, and one summary line is logged at the end of
    the pass. ``strict=True`` (the CLI's --strict_data) checks every file when the source is
    opened and raises DataError listing those that would be skipped.

    Raises DataError when the spec cannot feed the signature: missing path, unsupported
    file type, empty folder, string inputs, arrays of the wrong shape/dtype, an npz without
    an input's name, unknown dims images need, an unknown preprocess mode; with ``strict``,
    any file that would be skipped.
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
            return _open_images(signature, [path], f"directory {path}", preprocess, overrides, model_hint, strict)
        if suffix == ".npy":
            return open_npy(path, signature, preprocess)
        if suffix == ".npz":
            return open_npz(path, signature, preprocess)
        if is_image_file(path):
            return _open_images(signature, [path], f"image {path}", preprocess, overrides, model_hint, strict)
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
    return _open_images(signature, paths, f"{len(paths)} image path(s) starting with {paths[0]}", preprocess, overrides,
                        model_hint, strict)


def _open_images(signature, paths, description, preprocess, overrides, model_hint, strict) -> ImageSource:
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
    source = ImageSource(signature, paths, description, mode, layout)
    if strict:
        source.check_every_file()
    return source


class ImageSource(Source):
    """Images from files and/or directories (recursive, sorted), decoded one at a time.

    Files it does not use are collected, in the order found, in ``skipped_files``; notes on
    files only partly used (the first frame of an animated GIF) in ``notes`` {path: note}.
    """

    def __init__(self, signature: ModelSignature, roots: Sequence[Path], description: str, preprocess: str, layout: ImageLayout):
        info = signature.inputs[0]
        super().__init__(signature, description, preprocess, {info.name: layout.sample_shape})
        self.roots = tuple(roots)
        self.layout = layout
        self._input = info
        # Kept across passes (calibration reads the data more than once), so each file is
        # reported once and the summary line is logged again only when it changes.
        self._skipped: Dict[str, SkippedFile] = {}

    @property
    def skipped_files(self) -> Tuple[SkippedFile, ...]:
        return tuple(self._skipped.values())

    def _entries(self) -> Iterator[Union[Path, SkippedFile]]:
        for root in self.roots:
            if root.is_dir():
                yield from walk_directory(root)
            else:
                yield root

    def image_paths(self) -> Iterator[Path]:
        """The candidate image files, in the order samples come."""
        for entry in self._entries():
            if isinstance(entry, Path):
                yield entry

    def count(self) -> int:
        return sum(1 for _ in self.image_paths())

    def _decode(self, path: Path) -> np.ndarray:
        pixels, note = decode_image_file(path, size=(self.layout.height, self.layout.width), channels=self.layout.channels)
        if note and str(path) not in self.notes:
            self.notes[str(path)] = note
            logger.warning("%s: %s", path, note)
        return pixels

    def _skip(self, file: SkippedFile) -> None:
        if file.path not in self._skipped:
            self._skipped[file.path] = file
            logger.debug("skipped %s (%s%s)", file.path, file.reason, f": {file.detail}" if file.detail else "")

    def skipped_summary(self) -> str:
        """The one line about the files skipped so far ("" when none): ``skipped 2 files: 1 not an image (.txt), ...``."""
        return skipped_summary(self.skipped_files)

    def check_every_file(self) -> None:
        """Decode every file now; DataError listing every file that would be skipped (the strict mode)."""
        for entry in self._entries():
            if isinstance(entry, SkippedFile):
                self._skip(entry)
                continue
            try:
                self._decode(entry)
            except UnreadableImage as error:
                self._skip(SkippedFile(str(entry), UNREADABLE, error.problem))
        if self._skipped:
            raise DataError(
                f"strict data: {self.skipped_summary()} in {self.description}: {skipped_listing(self.skipped_files)}; "
                "fix or remove them, or run without --strict_data (strict=False) to skip them"
            )

    def samples(self) -> Iterator[Sample]:
        # Undecodable files are skipped, listed and summed up in one line at the end of the
        # pass; an all-bad folder is one error instead.
        held_back: List[DataError] = []
        failures = 0
        decoded = 0
        try:
            for entry in self._entries():
                if isinstance(entry, SkippedFile):
                    self._skip(entry)
                    continue
                try:
                    pixels = self._decode(entry)
                except DataError as error:
                    failures += 1
                    if len(held_back) < _FAILURES_KEPT:
                        held_back.append(error)
                    self._skip(SkippedFile(str(entry), UNREADABLE, getattr(error, "problem", str(error))))
                    continue
                decoded += 1
                yield Sample({self._input.name: self._to_input(pixels)}, str(entry))
        finally:
            # Also when the consumer stops early (a sample limit): what was seen so far is said.
            summary = self.skipped_summary()
            if decoded and summary and (self.roots, summary) not in _SUMMARIES_LOGGED:
                _SUMMARIES_LOGGED.add((self.roots, summary))
                logger.warning("%s", summary)
        if not decoded:
            if failures == 1:
                raise held_back[0]
            if failures:
                raise DataError(f"no decodable images in {self.description} ({failures} tried); first: {held_back[0]}")
            raise DataError(f"no images in {self.description}; add {'/'.join(IMAGE_EXTENSIONS)} files")

    def _to_input(self, pixels: np.ndarray) -> np.ndarray:
        if self.layout.channels_first:
            pixels = np.transpose(pixels, (2, 0, 1))
        if self.preprocess == "none":
            return pixels.astype(self._input.np_dtype)
        return preprocess_pixels(pixels, self.preprocess, channels_first=self.layout.channels_first).astype(self._input.np_dtype, copy=False)


def refuse_skipped_files(specs: Sequence[DataSpec], signature, *, model_hint=None, input_shape: InputShapeSpec = None) -> None:
    """--strict_data for a job that reads several sources: DataError listing the files any of
    ``specs`` (each distinct spec once) would skip, before the job does any work."""
    for spec in {str(spec): spec for spec in specs}.values():
        open_source(spec, signature, model_hint=model_hint, input_shape=input_shape, strict=True)


def image_preprocess_mode(signature: ModelSignature, preprocess: str = "auto", *, model_hint: ModelHint = None) -> Optional[str]:
    """The concrete preprocessing images for ``signature`` get (``preprocess`` with 'auto' resolved from
    ``model_hint``), or None when the model takes no images (several inputs, not 4-D). A converted
    model records it, so later commands feed it the same way. DataError when the mode cannot apply."""
    if len(signature.inputs) != 1 or not looks_like_image(signature.inputs[0]):
        return None
    info = signature.inputs[0]
    check_preprocess_mode(preprocess)
    shape = info.shape
    channels = shape[3] if shape[3] in (1, 3) else (shape[1] if shape[1] in (1, 3) else 3)
    return pixel_mode(info, preprocess, model_hint, channels=channels)


def names_images(spec: DataSpec) -> bool:
    """Whether a data spec names images (so samples have file names to look labels up by), not arrays or synthetic data."""
    if isinstance(spec, (list, tuple)):
        return True  # several paths are images (arrays come one file at a time)
    text = os.fspath(spec)
    return not (text == SYNTHETIC or text.startswith(SYNTHETIC + ":")) and not text.endswith((".npy", ".npz"))
