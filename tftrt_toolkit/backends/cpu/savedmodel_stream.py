"""Write a SavedModel's held weights into its ``saved_model.pb`` as a stream, and its fingerprint.

The cpu backend saves the model with each large weight as a one-element stand-in constant
(``frozen/held_weights.py``); this rewrites ``saved_model.pb`` with the real bytes streamed
from the arrays into the file, in protobuf's deterministic order, so memory never holds a
serialised copy of the whole model. The result is the same plain SavedModel, weights as
graph constants, as a classic save writes.
"""

from __future__ import annotations

import os
from typing import Dict, List, Mapping, Tuple

import numpy as np

from tftrt_toolkit.backends.cpu import farmhash
from tftrt_toolkit.backends.cpu.farmhash import fingerprint64
from tftrt_toolkit.backends.frozen.checkpoint_bundle import CheckpointSlice
from tftrt_toolkit.backends.frozen.held_weights import Weight

__all__ = ["fingerprint64", "write_into_saved_model"]

_TENSOR_CONTENT_FIELD = 4  # TensorProto.tensor_content
# Files larger than this are hashed as they are written (farmhash.StreamingFingerprint64:
# a compiled loop, ~0.5 s to build); smaller ones are read back and hashed in one piece.
STREAMED_CHECKSUM_BYTES = 64 * 1024 * 1024

def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field_header(number: int, length: int) -> bytes:
    return _varint(number << 3 | 2) + _varint(length)


class _Chunks:
    """Serialised bytes, numpy arrays and checkpoint slices to write in order, with their total size known up front.

    A checkpoint slice is copied from the source checkpoint in bounded reads as it is written.
    """

    def __init__(self):
        self.parts: List[object] = []
        self.size = 0

    def add(self, part) -> "_Chunks":
        if isinstance(part, _Chunks):
            self.parts.extend(part.parts)
            self.size += part.size
        else:
            self.parts.append(part)
            self.size += part.nbytes if isinstance(part, (np.ndarray, CheckpointSlice)) else len(part)
        return self

    def field(self, number: int, inner: "_Chunks") -> "_Chunks":
        return self.add(_field_header(number, inner.size)).add(inner)

    def pieces(self):
        """The bytes to write, in order, each piece small or an array's own buffer (never a copy of the whole)."""
        for part in self.parts:
            if isinstance(part, CheckpointSlice):
                yield from part.chunks()
            elif isinstance(part, np.ndarray):
                # As raw bytes: the buffer protocol has no format for ml_dtypes' bfloat16 (nor for
                # the quantized types), so memoryview(...).cast("B") refuses those arrays.
                yield memoryview(np.ascontiguousarray(part).reshape(-1).view(np.uint8))
            else:
                yield part

    def write_to(self, handle) -> None:
        for piece in self.pieces():
            handle.write(piece)


def _field_range_bytes(message, low: int, high: int) -> bytes:
    """Deterministic bytes of ``message``'s fields numbered ``low``..``high`` (a slice of its serialisation)."""
    part = type(message)()
    part.CopyFrom(message)
    for field in message.DESCRIPTOR.fields:
        if not low <= field.number <= high:
            part.ClearField(field.name)
    return part.SerializeToString(deterministic=True)


_LAST_FIELD = 2 ** 29 - 1


def _node_chunks(node, value: Weight) -> _Chunks:
    """NodeDef with attr "value" = TensorProto(dtype, shape, tensor_content=value bytes), fields in order."""
    from tensorflow.core.framework import node_def_pb2, tensor_pb2

    chunks = _Chunks().add(_field_range_bytes(node, 1, 4))  # name, op, input, device
    for key in sorted(node.attr):  # NodeDef.attr (5): map entries in key order, as deterministic output has them
        if key == "value":
            stand_in = node.attr["value"].tensor
            header = tensor_pb2.TensorProto(dtype=stand_in.dtype, tensor_shape=stand_in.tensor_shape).SerializeToString()
            if isinstance(value, np.ndarray) and value.dtype.byteorder == ">":
                value = value.astype(value.dtype.newbyteorder("<"))
            tensor = _Chunks().add(header).field(_TENSOR_CONTENT_FIELD, _Chunks().add(value))
            attr_value = _Chunks().field(8, tensor)  # AttrValue.tensor
            chunks.field(5, _Chunks().field(1, _Chunks().add(b"value")).field(2, attr_value))  # entry: key, value
        else:
            single = node_def_pb2.NodeDef()
            single.attr[key].CopyFrom(node.attr[key])
            chunks.add(single.SerializeToString(deterministic=True))
    return chunks.add(_field_range_bytes(node, 6, _LAST_FIELD))


def _integer_map_chunks(number: int, mapping, value_bytes) -> _Chunks:
    # C++ writes a map entry's key and value even when they are 0; Python's protobuf leaves
    # them out. TensorFlow fingerprints the C++ bytes, so integer-keyed maps are written here.
    chunks = _Chunks()
    for key in sorted(mapping):
        chunks.field(number, _Chunks().add(b"\x08" + _varint(key)).add(value_bytes(mapping[key])))
    return chunks


def _message_value_bytes(message) -> bytes:
    data = message.SerializeToString(deterministic=True)
    return _field_header(2, len(data)) + data


def _function_chunks(function, weights: Mapping[str, Weight], found: Dict[str, int]) -> _Chunks:
    """FunctionDef in field order: signature 1, node_def 3, ret 4, attr 5, control_ret 6, arg_attr 7,
    resource_arg_unique_id 8 (protobuf's deterministic order, which TensorFlow's fingerprint hashes)."""
    chunks = _Chunks().add(_field_range_bytes(function, 1, 2))
    for node in function.node_def:
        if node.op == "Const" and node.name in weights:
            found[node.name] = found.get(node.name, 0) + 1
            chunks.field(3, _node_chunks(node, weights[node.name]))
        else:
            chunks.field(3, _Chunks().add(node.SerializeToString(deterministic=True)))
    chunks.add(_field_range_bytes(function, 4, 6))
    chunks.add(_integer_map_chunks(7, function.arg_attr, _message_value_bytes))
    chunks.add(_integer_map_chunks(8, function.resource_arg_unique_id, lambda uid: b"\x10" + _varint(uid)))
    return chunks.add(_field_range_bytes(function, 9, _LAST_FIELD))


def _saved_model_chunks(saved_model, weights: Mapping[str, Weight]) -> Tuple[_Chunks, Dict[str, int]]:
    """The whole SavedModel as protobuf's deterministic serialisation writes it, held weights included.

    SavedModel.meta_graphs(2) → MetaGraphDef.graph_def(2) → GraphDef.library(2) →
    FunctionDefLibrary.function(1) → FunctionDef.node_def(3): each level is written as its
    fields before the one that leads down, that field, then the fields after it.
    """
    found: Dict[str, int] = {}
    chunks = _Chunks().add(_field_range_bytes(saved_model, 1, 1))
    for meta_graph in saved_model.meta_graphs:
        graph_def = meta_graph.graph_def
        graph = _Chunks().add(_field_range_bytes(graph_def, 1, 1))
        if graph_def.HasField("library"):
            library = _Chunks()
            for function in graph_def.library.function:
                library.field(1, _function_chunks(function, weights, found))
            library.add(_field_range_bytes(graph_def.library, 2, _LAST_FIELD))
            graph.field(2, library)
        graph.add(_field_range_bytes(graph_def, 3, _LAST_FIELD))
        meta = _Chunks().add(_field_range_bytes(meta_graph, 1, 1))
        if meta_graph.HasField("graph_def"):
            meta.field(2, graph)
        meta.add(_field_range_bytes(meta_graph, 3, _LAST_FIELD))
        chunks.field(2, meta)
    return chunks.add(_field_range_bytes(saved_model, 3, _LAST_FIELD)), found


def _chunks_fingerprint64(chunks: _Chunks) -> int:
    import io

    buffer = io.BytesIO()
    chunks.write_to(buffer)
    return fingerprint64(buffer.getvalue())


def write_into_saved_model(saved_model_dir: str, weights: Mapping[str, Weight]) -> None:
    """Replace each weight's stand-in constant in ``saved_model_dir`` by its real value (``weights``: node name →
    array, or slice of the source checkpoint).

    Streams the values from the arrays and the checkpoint into a new ``saved_model.pb`` (then renamed over the old
    one), so memory never holds a serialised copy of the model. Raises RuntimeError when a
    weight is not exactly one constant in the saved functions (the caller then saves the slow way).

    ``fingerprint.pb`` is brought up to date: only its ``saved_model_checksum`` (a hash of the
    whole file) depends on the weights — the other hashes cover the top-level graph,
    signatures, object graph and checkpoint, none of which hold them. The new file is written
    in protobuf's deterministic order, so its checksum is the hash of the file's bytes. The
    stand-in file is re-serialised the same way first and must hash to the checksum TensorFlow
    wrote for it; the new file is hashed as it is written (``farmhash``); if not (a protobuf detail this code does not reproduce), TensorFlow
    recomputes the fingerprint from the written file, parsing it whole.
    """
    from tensorflow.core.protobuf import fingerprint_pb2, saved_model_pb2

    path = os.path.join(saved_model_dir, "saved_model.pb")
    saved_model = saved_model_pb2.SavedModel()
    with open(path, "rb") as handle:
        saved_model.ParseFromString(handle.read())
    chunks, found = _saved_model_chunks(saved_model, weights)
    misplaced = sorted(name for name in weights if found.get(name) != 1)
    if misplaced:
        raise RuntimeError(f"held weights not found once in the saved functions: {misplaced[:3]}")
    fingerprint_path = os.path.join(saved_model_dir, "fingerprint.pb")
    fingerprint = None
    if os.path.exists(fingerprint_path):
        with open(fingerprint_path, "rb") as handle:
            fingerprint = fingerprint_pb2.FingerprintDef.FromString(handle.read())
        stand_in_chunks, _ = _saved_model_chunks(saved_model, {})
        if _chunks_fingerprint64(stand_in_chunks) != fingerprint.saved_model_checksum:
            fingerprint = None
        os.remove(fingerprint_path)  # it describes the stand-in file
    del saved_model
    # Hashed as written when large: reading the file back into one buffer to hash it would
    # hold the whole model in memory once more.
    checksum = None
    if fingerprint and chunks.size > STREAMED_CHECKSUM_BYTES and farmhash.streaming_available():
        checksum = farmhash.StreamingFingerprint64(chunks.size)
    partial = path + ".tftrt-partial"
    try:
        with open(partial, "wb") as handle:
            for piece in chunks.pieces():
                handle.write(piece)
                if checksum is not None:
                    checksum.update(piece)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    del chunks
    if fingerprint is None:
        _write_fingerprint_by_parsing(saved_model_dir)
        return
    if checksum is not None:
        fingerprint.saved_model_checksum = checksum.digest()
    else:
        import tensorflow as tf

        fingerprint.saved_model_checksum = fingerprint64(tf.io.read_file(path))
    _write_atomically(fingerprint_path, fingerprint.SerializeToString())


def _write_atomically(path: str, data: bytes) -> None:
    partial = path + ".tftrt-partial"
    with open(partial, "wb") as handle:
        handle.write(data)
    os.replace(partial, path)


def _write_fingerprint_by_parsing(saved_model_dir: str) -> None:
    # TensorFlow's own way: parses the whole saved_model.pb (twice the model's size in memory).
    from tensorflow.python.saved_model.pywrap_saved_model import fingerprinting

    _write_atomically(os.path.join(saved_model_dir, "fingerprint.pb"),
                      fingerprinting.CreateFingerprintDef(saved_model_dir))


