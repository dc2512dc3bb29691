"""A model's large weights, held aside while its graph is frozen, optimised and saved.

Each held weight is a ``Placeholder`` in the GraphDef (same name, dtype and shape) and a
numpy array here. Grappler serialises and copies the whole graph several times per run;
with the weights inside, a 528 MB VGG16 cost 40-60 s and gigabytes of RSS per stage. The
passes we run never need a large weight's value (constant folding works on shape-like and
per-channel constants, which stay in the graph); our own folds read and replace values here.

The values go back once, as the model is written: the SavedModel is saved with each weight
as a one-element stand-in constant of the right shape, then ``saved_model.pb`` is rewritten
with the real bytes streamed from the arrays into the file (``write_into_saved_model``), so
no serialised copy of the whole model is ever held in memory. The result is the same plain
SavedModel, weights as graph constants, as before.
"""

from __future__ import annotations

import os
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np

# Float weights with more elements than this are held aside. Per-channel constants (BatchNorm
# scales, biases: a few thousand channels at most) stay in the graph for grappler to fold.
MIN_HELD_ELEMENTS = 16384
# protobuf cannot parse a message past 2 GiB, and a SavedModel with graph constants is one message.
PROTOBUF_LIMIT_BYTES = 2 ** 31 - 1
# Room left for everything else in saved_model.pb (the graph itself, the object graph, metadata).
GRAPH_CONSTANTS_BUDGET_BYTES = PROTOBUF_LIMIT_BYTES - 64 * 1024 * 1024

_TENSOR_CONTENT_FIELD = 4  # TensorProto.tensor_content
_DEFAULT_SUFFIX = "/tftrt_held_default"


def _float_dtypes():
    from tensorflow.core.framework import types_pb2

    return {types_pb2.DT_FLOAT, types_pb2.DT_HALF, types_pb2.DT_BFLOAT16, types_pb2.DT_DOUBLE}


class HeldWeights:
    """Node name → value of every weight held out of the graph (the graph has a Placeholder there)."""

    def __init__(self):
        self.values: Dict[str, np.ndarray] = {}

    def __contains__(self, name: str) -> bool:
        return name in self.values

    def __len__(self) -> int:
        return len(self.values)

    @property
    def nbytes(self) -> int:
        return sum(value.nbytes for value in self.values.values())

    @staticmethod
    def worth_holding(value: np.ndarray) -> bool:
        from tensorflow.python.framework import dtypes

        try:
            is_float = dtypes.as_dtype(value.dtype).is_floating
        except TypeError:
            return False
        return is_float and value.size > MIN_HELD_ELEMENTS

    def value(self, node) -> Optional[np.ndarray]:
        """The value of a Const node or of a held weight's Placeholder; None for anything else."""
        if node is None:
            return None
        if node.op == "Placeholder" and node.name in self.values:
            return self.values[node.name]
        if node.op == "Const":
            from tensorflow.python.framework import tensor_util

            return tensor_util.MakeNdarray(node.attr["value"].tensor)
        return None

    def hold(self, node, value: np.ndarray) -> None:
        """Make ``node`` (in its GraphDef) the Placeholder of held weight ``value``."""
        from tensorflow.python.framework import dtypes, tensor_shape

        self.values[node.name] = value
        name = node.name
        node.Clear()
        node.name, node.op = name, "Placeholder"
        node.attr["dtype"].type = dtypes.as_dtype(value.dtype).as_datatype_enum
        node.attr["shape"].shape.CopyFrom(tensor_shape.TensorShape(value.shape).as_proto())

    def hold_large_constants(self, graph_def) -> int:
        """Hold aside the large float Consts already in ``graph_def`` (edited in place); returns how many."""
        from tensorflow.python.framework import tensor_util

        floats, held = _float_dtypes(), 0
        for node in graph_def.node:
            if node.op != "Const" or node.attr["value"].tensor.dtype not in floats:
                continue
            elements = int(np.prod([d.size for d in node.attr["value"].tensor.tensor_shape.dim]))
            if elements > MIN_HELD_ELEMENTS:
                self.hold(node, tensor_util.MakeNdarray(node.attr["value"].tensor))
                held += 1
        return held

    def drop_unused(self, graph_def) -> None:
        """Forget held weights whose Placeholder is no longer in the graph (pruned by a pass)."""
        present = {node.name for node in graph_def.node if node.op == "Placeholder"}
        for name in [name for name in self.values if name not in present]:
            del self.values[name]

    def for_grappler(self, graph_def):
        """A copy of ``graph_def`` for a grappler run: each held weight a ``PlaceholderWithDefault`` of its shape.

        Grappler allocates a zero-filled feed tensor of full size for every plain Placeholder
        (grappler_item_builder.cc, UpdatePlaceholderShape): seconds and the model's size in
        memory per run. It skips PlaceholderWithDefault, whose default here is a one-value
        stand-in constant; grappler cannot fold through it, so it never sees the zeros.
        """
        from tensorflow.core.framework import graph_pb2

        result = graph_pb2.GraphDef()
        result.versions.CopyFrom(graph_def.versions)
        result.library.CopyFrom(graph_def.library)
        for number, node in enumerate(graph_def.node, start=1):
            new = result.node.add()
            new.CopyFrom(node)
            if node.op == "Placeholder" and node.name in self.values:
                default = result.node.add()
                default.name, default.op = node.name + _DEFAULT_SUFFIX, "Const"
                default.attr["dtype"].CopyFrom(node.attr["dtype"])
                # A different value for each: equal stand-ins would let common-subgraph
                # elimination merge them, and then the weights that read them.
                default.attr["value"].tensor.CopyFrom(
                    self._stand_in(self.values[node.name], node.attr["dtype"].type, fill=number))
                new.op = "PlaceholderWithDefault"
                new.input.append(default.name)
        return result

    def from_grappler(self, graph_def):
        """Undo ``for_grappler`` on grappler's output (edited in place). RuntimeError if a pass rewrote a held weight."""
        rewritten = [node.name for node in graph_def.node if node.name in self.values
                     and (node.op != "PlaceholderWithDefault" or list(node.input) != [node.name + _DEFAULT_SUFFIX])]
        if rewritten:
            raise RuntimeError(f"grappler rewrote held weights {rewritten[:3]}")
        keep = []
        for node in graph_def.node:
            if node.name.endswith(_DEFAULT_SUFFIX) and node.name[:-len(_DEFAULT_SUFFIX)] in self.values:
                continue
            if node.name in self.values:
                del node.input[:]
                node.op = "Placeholder"
            keep.append(node)
        del graph_def.node[:]
        graph_def.node.extend(keep)
        self.drop_unused(graph_def)
        return graph_def

    @staticmethod
    def _stand_in(value, dtype, fill: int = 0):
        from tensorflow.core.framework import tensor_pb2
        from tensorflow.python.framework import tensor_shape

        tensor = tensor_pb2.TensorProto(dtype=dtype, tensor_shape=tensor_shape.TensorShape(value.shape).as_proto())
        _append_value(tensor, value.dtype, fill)
        return tensor

    def _replaced(self, graph_def, make_tensor):
        from tensorflow.core.framework import graph_pb2

        result = graph_pb2.GraphDef()
        result.versions.CopyFrom(graph_def.versions)
        result.library.CopyFrom(graph_def.library)
        for node in graph_def.node:
            new = result.node.add()
            if node.op == "Placeholder" and node.name in self.values:
                value = self.values[node.name]
                new.name, new.op = node.name, "Const"
                new.attr["dtype"].type = node.attr["dtype"].type
                new.attr["value"].tensor.CopyFrom(make_tensor(value, node.attr["dtype"].type))
            else:
                new.CopyFrom(node)
        return result

    def with_stand_ins(self, graph_def):
        """A copy of ``graph_def`` where each held weight is a Const of its dtype and shape holding one
        repeated zero: a few bytes, enough for importing, shape inference and saving."""
        return self._replaced(graph_def, self._stand_in)

    def restored(self, graph_def):
        """A copy of ``graph_def`` with every held weight back as a real Const (for consumers that read
        the graph's values themselves, e.g. the int8 quantizer)."""
        from tensorflow.python.framework import tensor_util

        return self._replaced(graph_def, lambda value, dtype: tensor_util.make_tensor_proto(value))


def _append_value(tensor, numpy_dtype, fill: int) -> None:
    # A TensorProto with one value and a larger shape means "every element is this value".
    if numpy_dtype == np.float64:
        tensor.double_val.append(float(fill))
    elif numpy_dtype == np.float32:
        tensor.float_val.append(float(fill))
    else:  # half and bfloat16 travel as int bit patterns
        tensor.half_val.append(fill & 0x7BFF)


def fold_weight_casts(graph_def, held: HeldWeights) -> Tuple[object, int]:
    """Cast held weights ahead of time: ``Cast(W)`` becomes a held weight of the cast's type.

    Grappler's constant folding did this when the weights were constants (bf16 stores its
    weights as bf16); with the weights held aside we do it, with numpy's rounding to nearest
    even, as TensorFlow's Cast does. Returns (graph_def, casts folded); edits in place.
    """
    from tensorflow.python.framework import dtypes

    folded = 0
    for node in list(graph_def.node):
        if node.op != "Cast" or not node.input or node.input[0] not in held:
            continue
        source = held.values[node.input[0]]
        value = source.astype(dtypes.as_dtype(node.attr["DstT"].type).as_numpy_dtype)
        held.hold(node, value)
        folded += 1
    if folded:
        # A weight read only through its casts is no longer needed in its original type.
        still_used = {tensor.lstrip("^").split(":")[0] for node in graph_def.node for tensor in node.input}
        keep = [node for node in graph_def.node
                if not (node.op == "Placeholder" and node.name in held and node.name not in still_used)]
        del graph_def.node[:]
        graph_def.node.extend(keep)
        held.drop_unused(graph_def)
    return graph_def, folded


# --------------------------------------------------------------------------- writing the values back

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
    """Serialised bytes and numpy arrays to write in order, with their total size known up front."""

    def __init__(self):
        self.parts: List[object] = []
        self.size = 0

    def add(self, part) -> "_Chunks":
        if isinstance(part, _Chunks):
            self.parts.extend(part.parts)
            self.size += part.size
        else:
            self.parts.append(part)
            self.size += part.nbytes if isinstance(part, np.ndarray) else len(part)
        return self

    def field(self, number: int, inner: "_Chunks") -> "_Chunks":
        return self.add(_field_header(number, inner.size)).add(inner)

    def write_to(self, handle) -> None:
        for part in self.parts:
            if isinstance(part, np.ndarray):
                # As raw bytes: the buffer protocol has no format for ml_dtypes' bfloat16 (nor for
                # the quantized types), so memoryview(...).cast("B") refuses those arrays.
                handle.write(memoryview(np.ascontiguousarray(part).reshape(-1).view(np.uint8)))
            else:
                handle.write(part)


def _field_range_bytes(message, low: int, high: int) -> bytes:
    """Deterministic bytes of ``message``'s fields numbered ``low``..``high`` (a slice of its serialisation)."""
    part = type(message)()
    part.CopyFrom(message)
    for field in message.DESCRIPTOR.fields:
        if not low <= field.number <= high:
            part.ClearField(field.name)
    return part.SerializeToString(deterministic=True)


_LAST_FIELD = 2 ** 29 - 1


def _node_chunks(node, value: np.ndarray) -> _Chunks:
    """NodeDef with attr "value" = TensorProto(dtype, shape, tensor_content=value bytes), fields in order."""
    from tensorflow.core.framework import node_def_pb2, tensor_pb2

    chunks = _Chunks().add(_field_range_bytes(node, 1, 4))  # name, op, input, device
    for key in sorted(node.attr):  # NodeDef.attr (5): map entries in key order, as deterministic output has them
        if key == "value":
            stand_in = node.attr["value"].tensor
            header = tensor_pb2.TensorProto(dtype=stand_in.dtype, tensor_shape=stand_in.tensor_shape).SerializeToString()
            if value.dtype.byteorder == ">":
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


def _function_chunks(function, held: HeldWeights, found: Dict[str, int]) -> _Chunks:
    """FunctionDef in field order: signature 1, node_def 3, ret 4, attr 5, control_ret 6, arg_attr 7,
    resource_arg_unique_id 8 (protobuf's deterministic order, which TensorFlow's fingerprint hashes)."""
    chunks = _Chunks().add(_field_range_bytes(function, 1, 2))
    for node in function.node_def:
        if node.op == "Const" and node.name in held:
            found[node.name] = found.get(node.name, 0) + 1
            chunks.field(3, _node_chunks(node, held.values[node.name]))
        else:
            chunks.field(3, _Chunks().add(node.SerializeToString(deterministic=True)))
    chunks.add(_field_range_bytes(function, 4, 6))
    chunks.add(_integer_map_chunks(7, function.arg_attr, _message_value_bytes))
    chunks.add(_integer_map_chunks(8, function.resource_arg_unique_id, lambda uid: b"\x10" + _varint(uid)))
    return chunks.add(_field_range_bytes(function, 9, _LAST_FIELD))


def _saved_model_chunks(saved_model, held: HeldWeights) -> Tuple[_Chunks, Dict[str, int]]:
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
                library.field(1, _function_chunks(function, held, found))
            library.add(_field_range_bytes(graph_def.library, 2, _LAST_FIELD))
            graph.field(2, library)
        graph.add(_field_range_bytes(graph_def, 3, _LAST_FIELD))
        meta = _Chunks().add(_field_range_bytes(meta_graph, 1, 1))
        if meta_graph.HasField("graph_def"):
            meta.field(2, graph)
        meta.add(_field_range_bytes(meta_graph, 3, _LAST_FIELD))
        chunks.field(2, meta)
    return chunks.add(_field_range_bytes(saved_model, 3, _LAST_FIELD)), found


def fingerprint64(data) -> int:
    """TensorFlow's ``Fingerprint64`` (farmhash) of ``data`` (bytes or a scalar string tensor).

    TF's Python API has no op returning it whole; ``to_hash_bucket_fast`` returns it modulo
    any bucket count: modulo 2**62 gives the low 62 bits, modulo 5 picks the top two.
    """
    import tensorflow as tf

    low = int(tf.strings.to_hash_bucket_fast(data, 2 ** 62).numpy())
    residue = int(tf.strings.to_hash_bucket_fast(data, 5).numpy())
    return next(candidate for candidate in (low + top * 2 ** 62 for top in range(4)) if candidate % 5 == residue)


def _chunks_fingerprint64(chunks: _Chunks) -> int:
    import io

    buffer = io.BytesIO()
    chunks.write_to(buffer)
    return fingerprint64(buffer.getvalue())


def write_into_saved_model(saved_model_dir: str, held: HeldWeights) -> None:
    """Replace each held weight's stand-in constant in ``saved_model_dir`` by its real value.

    Streams the values from the arrays into a new ``saved_model.pb`` (then renamed over the old
    one), so memory never holds a serialised copy of the model; ``held`` is emptied. Raises
    RuntimeError when a held weight is not exactly one constant in the saved functions (the
    caller then saves the slow way).

    ``fingerprint.pb`` is brought up to date: only its ``saved_model_checksum`` (a hash of the
    whole file) depends on the weights — the other hashes cover the top-level graph,
    signatures, object graph and checkpoint, none of which hold them. The new file is written
    in protobuf's deterministic order, so its checksum is the hash of the file's bytes. The
    stand-in file is re-serialised the same way first and must hash to the checksum TensorFlow
    wrote for it; if not (a protobuf detail this code does not reproduce), TensorFlow
    recomputes the fingerprint from the written file, parsing it whole.
    """
    from tensorflow.core.protobuf import fingerprint_pb2, saved_model_pb2

    path = os.path.join(saved_model_dir, "saved_model.pb")
    saved_model = saved_model_pb2.SavedModel()
    with open(path, "rb") as handle:
        saved_model.ParseFromString(handle.read())
    chunks, found = _saved_model_chunks(saved_model, held)
    misplaced = sorted(name for name in held.values if found.get(name) != 1)
    if misplaced:
        raise RuntimeError(f"held weights not found once in the saved functions: {misplaced[:3]}")
    fingerprint_path = os.path.join(saved_model_dir, "fingerprint.pb")
    fingerprint = None
    if os.path.exists(fingerprint_path):
        with open(fingerprint_path, "rb") as handle:
            fingerprint = fingerprint_pb2.FingerprintDef.FromString(handle.read())
        stand_in_chunks, _ = _saved_model_chunks(saved_model, HeldWeights())
        if _chunks_fingerprint64(stand_in_chunks) != fingerprint.saved_model_checksum:
            fingerprint = None
        os.remove(fingerprint_path)  # it describes the stand-in file
    del saved_model
    partial = path + ".tftrt-partial"
    try:
        with open(partial, "wb") as handle:
            chunks.write_to(handle)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    held.values.clear()  # written: the caller frees the buffers they shared
    del chunks
    if fingerprint is None:
        _write_fingerprint_by_parsing(saved_model_dir)
        return
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


def saved_weight_bytes(saved_model_dir: str) -> int:
    """Bytes of the variables stored with a SavedModel, read from its checkpoint index (no values loaded)."""
    import tensorflow as tf

    prefix = os.path.join(saved_model_dir, "variables", "variables")
    if not os.path.exists(prefix + ".index"):
        return 0
    try:
        reader = tf.train.load_checkpoint(prefix)
    except Exception:  # noqa: BLE001  (an unreadable checkpoint is reported, in one line, by loading it)
        return 0
    dtypes = reader.get_variable_to_dtype_map()
    total = 0
    for name, shape in reader.get_variable_to_shape_map().items():
        dtype = dtypes.get(name)
        if dtype is None or dtype == tf.string or name.startswith("_CHECKPOINTABLE_OBJECT_GRAPH"):
            continue
        total += int(np.prod(shape, dtype=np.int64)) * dtype.size
    return total

