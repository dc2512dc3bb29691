"""Decode image files with Pillow into RGB (or grayscale) pixel arrays of the model's size.

Only Pillow and numpy: this module is cheap to import in a Beam worker. Every way a file
can fail to be an image (empty, not an image, corrupt, a decompression bomb, unreadable)
comes out as one ``UnreadableImage`` (a ``DataError``) whose message names the file and
says what to do.

Pixels are what ``keras.utils.load_img(path, target_size=..., interpolation="bilinear")``
gives (Pillow's ``convert("RGB")`` of every mode, the first frame of a GIF or multi-page
TIFF), with two deliberate differences: EXIF orientation is applied (a phone photo comes
upright, as people see it, where load_img leaves it sideways), and 16-bit grayscale is
scaled to 8 bits (Pillow's conversion, and so load_img, clips it to white).
"""

from __future__ import annotations

import csv
import os
import struct
import warnings
import zlib
from pathlib import Path
from typing import Iterator, Optional, Tuple, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from tftrt_toolkit.data.skipped import HIDDEN, NOT_AN_IMAGE, SYMLINKED_DIRECTORY, SkippedFile
from tftrt_toolkit.errors import DataError

PathLike = Union[str, "os.PathLike[str]"]

#: File name endings (lower case) treated as images when reading a directory: Keras'
#: image_dataset_from_directory's (.bmp .gif .jpeg .jpg .png), WebP and TIFF.
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")

# Pillow may open only these formats, whatever the file name says. Restricting it keeps
# exotic decoders off untrusted files (EPS, for one, shells out to Ghostscript).
_ALLOWED_FORMATS = ("JPEG", "PNG", "BMP", "WEBP", "GIF", "TIFF")
_FORMAT_NAMES = "JPEG, PNG, GIF, TIFF, BMP or WebP"

# Pillow reports corrupt or hostile data as any of these, depending on the decoder
# and on where the damage is (header, EXIF block, compressed stream).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError, struct.error, zlib.error)

#: The columns of a labels CSV (``--labels_csv``): image file name or path, class id.
LABELS_CSV_COLUMNS = ("image", "class_id")

# A data folder's own description, kept beside its images (the shipped samples carry
# SOURCES.md and labels.csv): README/SOURCES/LICENSE text, by name without extension.
_FOLDER_TEXT_NAMES = ("readme", "sources", "license", "licence", "notice", "credits", "attribution")
_FOLDER_TEXT_EXTENSIONS = ("", ".md", ".txt", ".rst")


class UnreadableImage(DataError):
    """An image file that cannot be decoded; ``path`` and ``problem`` (short, for listings) as attributes."""

    def __init__(self, path: PathLike, problem: str, advice: str):
        super().__init__(f"{path} {problem}; {advice}")
        self.path = str(path)
        self.problem = problem


def is_image_file(path: PathLike) -> bool:
    """True when the file name ends in one of ``IMAGE_EXTENSIONS`` (case-insensitive)."""
    return os.fspath(path).lower().endswith(IMAGE_EXTENSIONS)


def is_folder_description(path: PathLike) -> bool:
    """True for a file that describes its data folder rather than being data: README/SOURCES/LICENSE
    text (``.md``, ``.txt``, ``.rst`` or no extension) or a labels CSV (columns image,class_id).

    Such files are neither used nor reported as skipped: they belong with the images.
    """
    stem, extension = os.path.splitext(os.path.basename(os.fspath(path)).lower())
    if stem in _FOLDER_TEXT_NAMES and extension in _FOLDER_TEXT_EXTENSIONS:
        return True
    if extension != ".csv":
        return False
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return False
    return set(LABELS_CSV_COLUMNS) <= {column.strip() for column in header}


def walk_directory(directory: PathLike) -> Iterator[Union[Path, SkippedFile]]:
    """Yield every entry under ``directory``: image files as Paths, everything else as a SkippedFile
    (except the folder's own description: see ``is_folder_description``).

    Order: depth-first, entries of each directory sorted by name. Hidden files and
    directories (name starting with '.', e.g. macOS '._x.jpg' resource forks, '.ipynb_checkpoints')
    are not used, nor read into; symlinked directories are not followed (no loops). Only one
    directory's entry names are held at a time, so this streams over folders of any size.
    """
    try:
        entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
    except OSError as error:
        raise DataError(f"cannot list directory {directory}: {error.strerror or error}; check that it exists and is readable") from error
    for entry in entries:
        if entry.name.startswith("."):
            yield SkippedFile(entry.path, HIDDEN)
        elif entry.is_dir(follow_symlinks=False):
            yield from walk_directory(entry.path)
        elif entry.is_dir():
            yield SkippedFile(entry.path, SYMLINKED_DIRECTORY)
        elif is_image_file(entry.name) and entry.is_file():
            yield Path(entry.path)
        elif not is_folder_description(entry.path):
            yield SkippedFile(entry.path, NOT_AN_IMAGE)


def iter_image_files(directory: PathLike) -> Iterator[Path]:
    """Yield the image files under ``directory`` (see ``walk_directory`` for order and what is left out)."""
    for item in walk_directory(directory):
        if isinstance(item, Path):
            yield item


def first_non_image_file(directory: PathLike) -> Optional[Path]:
    """The first (in walk order) visible file that is not an image, for error messages."""
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and not is_image_file(name) and not is_folder_description(Path(root) / name):
                return Path(root) / name
    return None


def decode_image(path: PathLike, *, size: Tuple[int, int], channels: int = 3) -> np.ndarray:
    """Decode one image file to a uint8 array of shape (height, width, channels).

    The image is turned upright by its EXIF orientation, converted to RGB (``channels=3``:
    grayscale, palette, RGBA, CMYK and 16-bit images all handled; alpha is dropped like
    ``keras.utils.load_img`` does) or to grayscale (``channels=1``), and resized to
    ``size=(height, width)`` with bilinear filtering when it is not that size already.
    Animated GIFs and multi-page TIFFs give their first frame (``decode_image_file`` says so).

    Raises UnreadableImage, a DataError naming the file, when it is empty, not a
    JPEG/PNG/GIF/TIFF/BMP/WebP image, corrupt or truncated, unreadable, or larger than
    Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``).
    """
    return decode_image_file(path, size=size, channels=channels)[0]


def decode_image_file(path: PathLike, *, size: Tuple[int, int], channels: int = 3) -> Tuple[np.ndarray, Optional[str]]:
    """(pixels, note) for one image file: ``decode_image``'s pixels, and a note when only part of the file was used.

    The note is e.g. "animated GIF, 12 frames: the first frame used"; None for ordinary images.
    """
    if channels not in (1, 3):
        raise DataError(f"images decode to 1 (grayscale) or 3 (RGB) channels, not {channels}; check the model's input shape")
    path = Path(path)
    note = None
    try:
        if path.stat().st_size == 0:
            raise UnreadableImage(path, "is empty (0 bytes)", "remove it or replace it with the real image")
        with warnings.catch_warnings():
            # Pillow only warns between 1x and 2x its pixel limit; treat both as a bomb
            # because decoding such a file can take gigabytes.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=_ALLOWED_FORMATS) as image:
                frames = getattr(image, "n_frames", 1)
                if frames > 1:
                    kind = "animated GIF" if image.format == "GIF" else f"multi-frame {image.format}"
                    note = f"{kind}, {frames} frames: the first frame used"
                image = ImageOps.exif_transpose(image)
                image = _to_mode(image, "RGB" if channels == 3 else "L")
                height, width = size
                if image.size != (width, height):
                    image = image.resize((width, height), Image.Resampling.BILINEAR)
                pixels = np.asarray(image, dtype=np.uint8)
    except DataError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise UnreadableImage(
            path, f"is too large to decode safely ({error})", "resize it, or raise PIL.Image.MAX_IMAGE_PIXELS if you trust the file"
        ) from error
    except UnidentifiedImageError as error:
        raise UnreadableImage(
            path, f"is not a {_FORMAT_NAMES} image (Pillow cannot identify it)", "remove it or replace it with a real image"
        ) from error
    except PermissionError as error:
        raise UnreadableImage(path, "cannot be read: permission denied", "make it readable or remove it from the data") from error
    except FileNotFoundError as error:
        raise UnreadableImage(path, "does not exist (removed while reading?)", "check the data path") from error
    except _DECODE_ERRORS as error:
        raise UnreadableImage(path, f"is a corrupt or truncated image ({error})", "re-export it or remove it") from error
    if pixels.ndim == 2:
        pixels = pixels[:, :, np.newaxis]
    return pixels, note


def _to_mode(image: Image.Image, mode: str) -> Image.Image:
    """Convert to 'RGB' or 'L'; 16/32-bit grayscale is scaled down, not clipped at 255."""
    if image.mode == mode:
        return image
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        # Pillow's convert() clips these at 255, which turns 16-bit photos white.
        wide = np.asarray(image, dtype=np.float64)
        gray = Image.fromarray(np.clip(np.rint(wide / 257.0), 0, 255).astype(np.uint8), "L")
        return gray if mode == "L" else gray.convert(mode)
    return image.convert(mode)
