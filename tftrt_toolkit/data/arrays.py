"""Array sources: a .npy for single-input models, or a .npz keyed by input name."""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path
from typing import Dict, Iterator, Tuple

import numpy as np

from tftrt_toolkit.data.preprocess import preprocess_pixels
from tftrt_toolkit.data.samples import Sample, Source
from tftrt_toolkit.data.shapes import Dims, ImageLayout, format_shape, image_layout, looks_like_image
from tftrt_toolkit.errors import DataError
from tftrt_toolkit.signature import ModelSignature


class ArraySource(Source):
    """Arrays from a .npy (single-input models) or a .npz keyed by input name, row by row.

    Shapes and dtypes are checked from the file headers when opened, so opening is cheap.
    A .npy and the arrays of an uncompressed .npz (``numpy.savez``) are memory-mapped, so
    memory stays flat however large they are; ``numpy.savez_compressed`` arrays are read
    into memory when iterated.
    """

    def __init__(self, signature: ModelSignature, path: Path, keys: Dict[str, str], num_samples: int, preprocess: str, layouts: Dict[str, ImageLayout], sample_shapes: Dict[str, Dims]):
        super().__init__(signature, str(path), preprocess, sample_shapes)
        self.path = path
        self.keys = keys  # input name -> array name in the file
        self.num_samples = num_samples
        self.layouts = layouts  # the image inputs ``preprocess`` applies to

    def count(self) -> int:
        return self.num_samples

    def samples(self) -> Iterator[Sample]:
        arrays = self._load()
        for index in range(self.num_samples):
            inputs = {}
            for info in self.signature.inputs:
                row = np.asarray(arrays[info.name][index])
                if info.name in self.layouts:
                    row = preprocess_pixels(row, self.preprocess, channels_first=self.layouts[info.name].channels_first)
                inputs[info.name] = row.astype(info.np_dtype, copy=False)
            yield Sample(inputs, f"{self.path}[{index}]")

    def _load(self) -> Dict[str, np.ndarray]:
        try:
            if self.path.suffix.lower() == ".npy":
                return {next(iter(self.keys)): np.load(self.path, mmap_mode="r", allow_pickle=False)}
            arrays = {}
            with zipfile.ZipFile(self.path) as archive:
                for name, key in self.keys.items():
                    arrays[name] = _memmap_stored_member(self.path, archive.getinfo(key + ".npy"))
                    if arrays[name] is None:
                        with archive.open(key + ".npy") as stream:
                            arrays[name] = np.lib.format.read_array(stream, allow_pickle=False)
            return arrays
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as error:
            raise DataError(f"cannot read {self.path}: {error}; was it changed while in use? Save it again with numpy") from error


def _memmap_stored_member(path: Path, member: zipfile.ZipInfo):
    """Memory-map an uncompressed .npz member in place; None when it is compressed.

    A stored zip member is the plain .npy bytes after its local file header, whose name and
    extra-field lengths are read from that header (they may differ from the central directory's).
    """
    if member.compress_type != zipfile.ZIP_STORED:
        return None
    with open(path, "rb") as handle:
        handle.seek(member.header_offset)
        local_header = handle.read(30)
        if len(local_header) != 30 or local_header[:4] != b"PK\x03\x04":
            raise ValueError(f"bad zip entry for {member.filename}")
        name_length, extra_length = struct.unpack("<HH", local_header[26:30])
        handle.seek(member.header_offset + 30 + name_length + extra_length)
        version = np.lib.format.read_magic(handle)
        shape, fortran_order, dtype = _read_npy_header(handle, version)
        offset = handle.tell()
    if dtype.hasobject:
        raise ValueError(f"{member.filename} holds Python objects")
    if not shape or 0 in shape:
        return np.zeros(shape, dtype)
    return np.memmap(path, dtype=dtype, mode="r", shape=shape, order="F" if fortran_order else "C", offset=offset)


def _read_npy_header(stream, version):
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran_order, dtype = read_header(stream)
    return tuple(shape), fortran_order, dtype


def open_npy(path: Path, signature: ModelSignature, preprocess: str) -> ArraySource:
    if len(signature.inputs) != 1:
        raise DataError(
            f"{path} holds one array but the model has {len(signature.inputs)} inputs ({', '.join(signature.input_names)}); "
            "save them with numpy.savez(path, **{name: array}) as FILE.npz"
        )
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise DataError(f"{path} is not a readable .npy file ({error}); save it with numpy.save") from error
    info = signature.inputs[0]
    return _array_source(path, signature, {info.name: info.name}, {info.name: (tuple(array.shape), array.dtype)}, preprocess)


def open_npz(path: Path, signature: ModelSignature, preprocess: str) -> ArraySource:
    headers = _npz_headers(path)
    keys = {}
    for info in signature.inputs:
        if info.name in headers:
            keys[info.name] = info.name
        elif len(signature.inputs) == 1 and len(headers) == 1:
            keys[info.name] = next(iter(headers))  # numpy.savez(path, array) names it arr_0
        else:
            raise DataError(
                f"{path} has no array for input {info.name!r} (it has: {', '.join(sorted(headers)) or 'none'}); "
                "save it with numpy.savez(path, **{input_name: array}) for every input"
            )
    return _array_source(path, signature, keys, {name: headers[key] for name, key in keys.items()}, preprocess)


def _npz_headers(path: Path) -> Dict[str, Tuple[Tuple[int, ...], np.dtype]]:
    """Array name -> (shape, dtype) from each member's .npy header, without reading the data."""
    headers = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                if not member.endswith(".npy"):
                    continue
                with archive.open(member) as stream:
                    shape, _, dtype = _read_npy_header(stream, np.lib.format.read_magic(stream))
                headers[member[: -len(".npy")]] = (shape, dtype)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DataError(f"{path} is not a readable .npz file ({error}); save it with numpy.savez") from error
    return headers


def _array_source(path: Path, signature: ModelSignature, keys: Dict[str, str], headers, preprocess: str) -> ArraySource:
    lengths = {}
    sample_shapes = {}
    for info in signature.inputs:
        shape, dtype = headers[info.name]
        what = f"{path}" if len(keys) == 1 else f"{path}[{keys[info.name]!r}]"
        expected = f"{info.dtype} of shape {format_shape(info.shape, batch='N')}"
        if dtype.hasobject or not np.can_cast(dtype, info.np_dtype, casting="same_kind"):
            raise DataError(f"{what} holds {dtype} of shape {format_shape(shape)}; input {info.name!r} expects {expected}: save it as {info.dtype}")
        fits = info.shape is None or (len(shape) == len(info.shape) and all(want is None or want == got for want, got in zip(info.shape[1:], shape[1:])))
        if not fits or not shape:
            raise DataError(f"{what} holds {dtype} of shape {format_shape(shape)}; input {info.name!r} expects {expected} (N = number of samples)")
        if shape[0] == 0:
            raise DataError(f"{what} holds no samples (shape {format_shape(shape)}); save at least one row")
        lengths[info.name] = shape[0]
        sample_shapes[info.name] = tuple(shape[1:])
    if len(set(lengths.values())) > 1:
        counts = ", ".join(f"{name}: {count}" for name, count in lengths.items())
        raise DataError(f"{path} holds different numbers of samples per input ({counts}); every input needs the same number of rows")
    # Arrays are fed as stored unless a mode is asked for explicitly ('auto' cannot know
    # whether the file holds raw pixels or already preprocessed ones).
    layouts: Dict[str, ImageLayout] = {}
    if preprocess not in ("auto", "none"):
        for info in signature.inputs:
            if looks_like_image(info) and info.np_dtype.kind == "f":
                layouts[info.name] = image_layout(info, sample_shapes[info.name])
                if layouts[info.name].channels != 3 and preprocess != "tf":
                    raise DataError(f"preprocess {preprocess!r} needs RGB, but input {info.name!r} takes {layouts[info.name].channels} channel(s); use --preprocess=tf or none")
        if not layouts:
            raise DataError(f"preprocess {preprocess!r} applies to float image inputs, and this model has none; use --preprocess=none")
    mode = preprocess if layouts else "none"
    return ArraySource(signature, path, keys, next(iter(lengths.values())), mode, layouts, sample_shapes)
