"""Where each tensor of a SavedModel's checkpoint lies on disk, so unchanged weights are copied, never loaded.

A TF2 checkpoint (``variables/variables.index`` + ``variables.data-NNNNN-of-MMMMM``) is a
tensor bundle: the index is a table (TF's ``lib/io/table``, LevelDB's format) from each
tensor's key to a ``BundleEntryProto`` (dtype, shape, shard, offset, size); the data files
hold the raw little-endian bytes. ``CheckpointSlice`` names one tensor's bytes there; the
streamed save (``backends/cpu/savedmodel_stream.py``) copies them into ``saved_model.pb`` in
bounded chunks with plain reads, so a weight the conversion does not change is never
resident (a memory map would be: touched pages count in RSS). Every read is checked against
the entry's CRC32C as TensorFlow's own reader checks it (with ``google_crc32c``, a
dependency of the toolkit: where it does not import, nothing is streamed and the weights are restored).

Mirrors tensorflow/core/lib/io/format.cc, block.cc and table.cc (reading only, no
compression: ``BundleWriter`` writes none) and tensorflow/core/util/tensor_bundle/.
"""

from __future__ import annotations

import dataclasses
import os
import struct
from typing import Dict, Iterator, Optional, Tuple

import numpy as np

_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_SIZE = 48  # two block handles padded to 40 bytes, then the 8-byte magic
_BLOCK_TRAILER_SIZE = 5  # compression type byte + masked crc32c
_HEADER_KEY = b""  # the BundleHeaderProto's key
CHUNK_BYTES = 8 * 1024 * 1024  # what one read copies into memory while streaming
_CRC_MASK_DELTA = 0xA282EAD8  # tensorflow/core/lib/hash/crc32c.h: Mask()


def streaming_available() -> bool:
    """Whether checkpoint bytes can be checked as TensorFlow checks them (CRC32C) while streamed."""
    try:
        import google_crc32c  # noqa: F401
    except ImportError:
        return False
    return True


def _masked(crc: int) -> int:
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _CRC_MASK_DELTA) & 0xFFFFFFFF


def _corrupt(path: str, detail: str):
    from tftrt_toolkit.models.loader import unreadable_variables_error

    return unreadable_variables_error(os.path.dirname(os.path.dirname(path)), f"{detail}: {os.path.basename(path)}")


@dataclasses.dataclass(frozen=True)
class CheckpointSlice:
    """One tensor's raw bytes in a checkpoint data file: enough to stream it or read it once.

    Looks like a numpy array where the held weights need it to (``dtype``, ``shape``,
    ``size``, ``nbytes``); ``read()`` loads the whole value, ``chunks()`` yields it in pieces.
    """

    path: str
    offset: int
    nbytes: int
    dtype: np.dtype
    shape: Tuple[int, ...]
    masked_crc32c: int  # the entry's checksum of these bytes, masked as TensorFlow stores it

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def read(self) -> np.ndarray:
        """The whole value as a new array (for a step that changes it)."""
        return self.read_as(self.dtype)

    def read_as(self, dtype) -> np.ndarray:
        """The value cast to ``dtype`` (numpy's casting, e.g. round to nearest even for bfloat16),
        read a chunk at a time: the value in its own type is never whole in memory."""
        result = np.empty(self.size, dtype=dtype)
        position = 0
        for chunk in self.chunks(CHUNK_BYTES - CHUNK_BYTES % self.dtype.itemsize):
            values = np.frombuffer(chunk, dtype=self.dtype)
            result[position:position + values.size] = values.astype(dtype)
            position += values.size
        return result.reshape(self.shape)

    def chunks(self, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
        """The raw bytes, at most ``chunk_bytes`` at a time; ModelLoadError (after the last
        chunk) when they are not the bytes the checkpoint's index has a checksum of."""
        import google_crc32c

        crc = 0
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                left = self.nbytes
                while left:
                    data = handle.read(min(left, chunk_bytes))
                    if not data:
                        raise _corrupt(self.path, "Read less bytes than requested")
                    left -= len(data)
                    crc = google_crc32c.extend(crc, data)
                    if not left and _masked(crc) != self.masked_crc32c:
                        raise _corrupt(self.path, "Checksum does not match")
                    yield data
        except OSError as error:
            raise _corrupt(self.path, f"{type(error).__name__}: {error.strerror or error}") from error


def _varint(data: bytes, position: int) -> Tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7


def _block_handle(data: bytes, position: int) -> Tuple[Tuple[int, int], int]:
    offset, position = _varint(data, position)
    size, position = _varint(data, position)
    return (offset, size), position


def _read_block(handle, block: Tuple[int, int]) -> bytes:
    offset, size = block
    handle.seek(offset)
    data = handle.read(size + _BLOCK_TRAILER_SIZE)
    if len(data) != size + _BLOCK_TRAILER_SIZE:
        raise ValueError("truncated table block")
    if data[size] != 0:
        raise ValueError(f"compressed table block (type {data[size]})")
    return data[:size]


def _block_entries(block: bytes) -> Iterator[Tuple[bytes, bytes]]:
    """(key, value) of every entry of one block (keys are prefix-compressed against the previous one)."""
    (restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    end = len(block) - 4 - 4 * restarts
    position, key = 0, b""
    while position < end:
        shared, position = _varint(block, position)
        unshared, position = _varint(block, position)
        value_length, position = _varint(block, position)
        key = key[:shared] + block[position:position + unshared]
        position += unshared
        yield key, block[position:position + value_length]
        position += value_length


def read_index(index_path: str) -> Dict[bytes, bytes]:
    """Every (key → serialised entry) of a tensor bundle's index, the header under key b""."""
    with open(index_path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        handle.seek(handle.tell() - _FOOTER_SIZE)
        footer = handle.read(_FOOTER_SIZE)
        (magic,) = struct.unpack_from("<Q", footer, _FOOTER_SIZE - 8)
        if magic != _TABLE_MAGIC:
            raise ValueError(f"{index_path} is not a tensor bundle index (bad magic)")
        _, position = _block_handle(footer, 0)  # the metaindex block: empty in bundles
        index_block, _ = _block_handle(footer, position)
        entries = {}
        for _, handle_bytes in _block_entries(_read_block(handle, index_block)):
            data_block, _ = _block_handle(handle_bytes, 0)
            entries.update(_block_entries(_read_block(handle, data_block)))
    return entries


class CheckpointBundle:
    """The tensors of one checkpoint (prefix ``.../variables/variables``) and where their bytes are."""

    def __init__(self, prefix: str):
        from tensorflow.core.protobuf import tensor_bundle_pb2

        self.prefix = prefix
        raw = read_index(prefix + ".index")
        header = tensor_bundle_pb2.BundleHeaderProto.FromString(raw.pop(_HEADER_KEY, b""))
        self.num_shards = header.num_shards
        self.little_endian = header.endianness == tensor_bundle_pb2.BundleHeaderProto.LITTLE
        # Slices of a split tensor are stored under binary keys (``checkpoint::EncodeTensorNameSlice``):
        # they are read through the entry that names them, never here.
        self.entries = {key.decode("utf-8"): tensor_bundle_pb2.BundleEntryProto.FromString(value)
                        for key, value in raw.items() if not key.startswith(b"\0")}

    @classmethod
    def of_saved_model(cls, saved_model_dir: str) -> Optional["CheckpointBundle"]:
        """The SavedModel's checkpoint, or None when it has none or it cannot be read this way
        (or its bytes cannot be checked while streamed: ``streaming_available``)."""
        prefix = os.path.join(saved_model_dir, "variables", "variables")
        if not os.path.exists(prefix + ".index") or not streaming_available():
            return None
        try:
            return cls(prefix)
        except (ValueError, IndexError, struct.error, OSError):
            return None  # a format this reader does not know: the caller loads the weights instead

    def slice(self, key: str) -> Optional[CheckpointSlice]:
        """Where tensor ``key``'s bytes are, or None when they are not one plain run of bytes
        (partitioned or sliced variables, strings, a big-endian checkpoint)."""
        from tensorflow.python.framework import dtypes, tensor_shape

        entry = self.entries.get(key)
        if entry is None or entry.slices or not self.little_endian:
            return None
        dtype = dtypes.as_dtype(entry.dtype)
        if dtype in (dtypes.string, dtypes.resource, dtypes.variant):
            return None
        numpy_dtype = np.dtype(dtype.as_numpy_dtype)
        shape = tuple(tensor_shape.TensorShape(entry.shape).as_list())
        if None in shape or entry.size != numpy_dtype.itemsize * int(np.prod(shape, dtype=np.int64)):
            return None
        path = f"{self.prefix}.data-{entry.shard_id:05d}-of-{self.num_shards:05d}"
        try:
            if os.path.getsize(path) < entry.offset + entry.size:
                return None  # truncated: TensorFlow's reader says so when it restores
        except OSError:
            return None  # missing: likewise
        return CheckpointSlice(path, entry.offset, entry.size, numpy_dtype, shape, entry.crc32c)
