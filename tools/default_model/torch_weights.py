"""Read the tensors of an old-style PyTorch ``.pth`` weight file without installing PyTorch.

``torch.save(..., _use_new_zipfile_serialization=False)`` (the only format before
torch 1.6) writes five pickles back to back, then the raw bytes of every storage:

1. a magic number, 2. the protocol version, 3. a dict describing the saving machine,
4. the object itself (here a state dict), whose tensors point at storages by
   *persistent id* ``('storage', <torch.FloatStorage>, key, location, numel, view)``,
5. the list of storage keys, in the order their data follows;

then, for each key: a little-endian int64 element count and that many elements.

All five pickles go through one restricted unpickler, which resolves only the handful
of globals a state dict needs (tensor rebuild functions, storage types, ``OrderedDict``)
and refuses everything else, so reading a weight file never runs code from it.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
from typing import Any, Dict, List, Tuple

import numpy as np

from tftrt_toolkit.errors import ModelLoadError, first_line

# torch/serialization.py: MAGIC_NUMBER and PROTOCOL_VERSION of the legacy format.
_LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL_VERSION = 1001

_STORAGE_DTYPES = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class _StorageType:
    """Stands in for a ``torch.<X>Storage`` class: only its element dtype matters here."""

    def __init__(self, name: str, dtype: np.dtype):
        self.name = name
        self.dtype = dtype


class _TensorRef:
    """A tensor whose storage bytes come after the pickle; filled in once they are read."""

    def __init__(self, storage: "_StorageRef", storage_offset: int, shape: Tuple[int, ...], stride: Tuple[int, ...]):
        self.storage = storage
        self.storage_offset = storage_offset
        self.shape = tuple(shape)
        self.stride = tuple(stride)


class _StorageRef:
    """What a persistent id resolves to: a storage key, plus an element offset for old views."""

    def __init__(self, key: str, dtype: np.dtype, numel: int, offset: int = 0):
        self.key = key
        self.dtype = dtype
        self.numel = numel
        self.offset = offset


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *extra):
    # An nn.Parameter is its data for inference purposes.
    return data


class _RestrictedUnpickler(pickle.Unpickler):
    """The only unpickler used on a weight file: it builds plain values, dicts and tensor placeholders.

    A pickle reaches code only through ``find_class`` (GLOBAL, STACK_GLOBAL, INST and the
    copyreg extension codes all resolve their callable there), so allowing just the globals
    a torch state dict needs refuses a crafted file before anything from it runs. Tensors
    become ``_TensorRef`` placeholders; their storages are collected in ``storages``.
    """

    _ALLOWED_GLOBALS = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    }

    def __init__(self, file, path: str):
        super().__init__(file)
        self.path = path
        self.storages: Dict[str, _StorageRef] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED_GLOBALS:
            return self._ALLOWED_GLOBALS[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name, _STORAGE_DTYPES[name])
        raise ModelLoadError(
            f"{self.path} was refused: it asks to call '{module}.{name}', which is not part of a plain tensor state dict "
            "and could run code; load only .pth files saved with torch.save(model.state_dict(), path) from a source you trust"
        )

    def persistent_load(self, saved_id: Any) -> _StorageRef:
        if not (isinstance(saved_id, tuple) and saved_id and saved_id[0] == "storage"):
            raise ModelLoadError(
                f"{self.path} refers to a {saved_id[0] if isinstance(saved_id, tuple) and saved_id else saved_id!r} object; "
                "only tensor storages are supported. Save a state dict and try again"
            )
        _, storage_type, root_key, _location, numel, view_metadata = saved_id
        if not isinstance(storage_type, _StorageType):
            raise ModelLoadError(f"{self.path} has a storage of unsupported type {storage_type!r}")
        root = self.storages.setdefault(root_key, _StorageRef(root_key, storage_type.dtype, numel))
        if view_metadata is None:
            return root
        # Views (torch < 0.4) share the root's bytes from an element offset.
        _view_key, view_offset, view_numel = view_metadata
        return _StorageRef(root_key, storage_type.dtype, view_numel, offset=view_offset)


def _next_pickle(unpickler: _RestrictedUnpickler, path: str, *, header: bool) -> Any:
    """The file's next pickle; ModelLoadError if it is refused or cannot be read.

    A header that does not unpickle means the file is not this format; a later pickle
    that does not means the file is damaged.
    """
    try:
        return unpickler.load()
    except ModelLoadError:
        raise
    except Exception as error:  # a malformed pickle fails in many ways (EOFError, UnpicklingError, ValueError, ...)
        cause = f"{type(error).__name__}: {first_line(error)}"
        if header:
            raise ModelLoadError(
                f"{path} is not a legacy PyTorch weight file ({cause}); "
                "pass a .pth written by torch.save(..., _use_new_zipfile_serialization=False)"
            ) from error
        raise ModelLoadError(f"{path} is truncated or corrupt ({cause}); reinstall or re-download it") from error


def read_torch_state_dict(path: str | os.PathLike) -> Dict[str, np.ndarray]:
    """Read a legacy (non-zip) PyTorch ``.pth`` state dict into numpy arrays, without torch.

    Args:
        path: the ``.pth`` file, as written by ``torch.save(state_dict, path)`` before
            torch 1.6 or with ``_use_new_zipfile_serialization=False``.

    Returns:
        ``{tensor name: np.ndarray}`` in the file's order, with torch's shapes (e.g. a
        conv weight is ``[out, in, kh, kw]``). Arrays own their memory and are writable.

    Raises:
        ModelLoadError: the file is missing, is a zip-format or other non-legacy file,
            is truncated, or pickles anything besides tensors in (nested) dicts.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as error:
        raise ModelLoadError(f"cannot read weight file {path}: {error.strerror}; check the path") from error

    if data[:2] == b"PK":
        raise ModelLoadError(
            f"{path} is a zip-format PyTorch file (torch >= 1.6 default); this reader handles the legacy format. "
            "Re-save it with torch.save(state_dict, path, _use_new_zipfile_serialization=False)"
        )
    stream = io.BytesIO(data)
    unpickler = _RestrictedUnpickler(stream, path)
    magic_number = _next_pickle(unpickler, path, header=True)
    if magic_number != _LEGACY_MAGIC_NUMBER:
        raise ModelLoadError(
            f"{path} is a pickle but not a PyTorch weight file (no torch magic number); "
            "pass a .pth written by torch.save"
        )
    protocol_version = _next_pickle(unpickler, path, header=True)
    if protocol_version != _LEGACY_PROTOCOL_VERSION:
        raise ModelLoadError(
            f"{path} uses PyTorch serialization protocol {protocol_version!r}, expected {_LEGACY_PROTOCOL_VERSION}"
        )
    sys_info = _next_pickle(unpickler, path, header=True)
    if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
        raise ModelLoadError(f"{path} was saved on a big-endian machine, which this reader does not support")

    state = _next_pickle(unpickler, path, header=False)
    storage_keys: List[str] = _next_pickle(unpickler, path, header=False)
    if not isinstance(storage_keys, list) or not all(isinstance(key, str) for key in storage_keys):
        raise ModelLoadError(f"{path} has no list of storage keys after the state dict; the file is corrupt")

    storage_arrays = _read_storages(stream, storage_keys, unpickler.storages, path)
    return _resolve_tensors(state, storage_arrays, path)


def _read_storages(
    stream: io.BytesIO, storage_keys: List[str], storages: Dict[str, _StorageRef], path: str
) -> Dict[str, np.ndarray]:
    buffer = stream.getbuffer()
    position = stream.tell()
    arrays: Dict[str, np.ndarray] = {}
    for key in storage_keys:
        if key not in storages:
            raise ModelLoadError(f"{path} lists storage {key!r} that no tensor uses; the file is corrupt")
        dtype = storages[key].dtype
        if position + 8 > len(buffer):
            raise ModelLoadError(f"{path} is truncated (storage {key!r} missing); reinstall or re-download it")
        (numel,) = struct.unpack_from("<q", buffer, position)
        position += 8
        nbytes = numel * dtype.itemsize
        if position + nbytes > len(buffer):
            raise ModelLoadError(f"{path} is truncated inside storage {key!r}; reinstall or re-download it")
        arrays[key] = np.frombuffer(buffer, dtype=dtype, count=numel, offset=position)
        position += nbytes
    return arrays


def _resolve_tensors(value: Any, storage_arrays: Dict[str, np.ndarray], path: str) -> Any:
    if isinstance(value, _TensorRef):
        storage = value.storage
        if storage.key not in storage_arrays:
            raise ModelLoadError(f"{path} has no data for storage {storage.key!r}; the file is corrupt")
        flat = storage_arrays[storage.key]
        start = storage.offset + value.storage_offset
        itemsize = flat.dtype.itemsize
        if value.shape:
            last_element = start + sum((n - 1) * s for n, s in zip(value.shape, value.stride) if n > 0)
            if min(value.shape) > 0 and last_element >= flat.size:
                raise ModelLoadError(f"{path} has a tensor reaching past its storage; the file is corrupt")
        view = np.lib.stride_tricks.as_strided(
            flat[start:],
            shape=value.shape,
            strides=tuple(s * itemsize for s in value.stride),
            writeable=False,
        )
        # Copy so the result owns C-ordered memory rather than pinning the whole file.
        return np.array(view, copy=True, order="C")
    if isinstance(value, dict):
        return collections.OrderedDict((key, _resolve_tensors(item, storage_arrays, path)) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return type(value)(_resolve_tensors(item, storage_arrays, path) for item in value)
    return value
