"""A model's large weights, held aside while its graph is frozen, optimised and saved.

Each held weight is a ``Placeholder`` in the GraphDef (same name, dtype and shape) and here
either a numpy array (a weight some step computed or changed) or a ``CheckpointSlice``: where
the weight's bytes lie in the source model's checkpoint, read only by a step that changes it
and otherwise copied from there to the output file in bounded chunks. Grappler serialises and copies the whole graph several times per run;
with the weights inside, a 528 MB VGG16 cost 40-60 s and gigabytes of RSS per stage. The
passes we run never need a large weight's value (constant folding works on shape-like and
per-channel constants, which stay in the graph); our own folds read the values here and
return new ones.

The values go back once, as the model is written: the cpu backend saves the SavedModel with
each weight as a one-element stand-in constant of the right shape, then streams the real
bytes into ``saved_model.pb`` (``backends/cpu/savedmodel_stream.py``), so no serialised copy
of the whole model is ever held in memory.

A ``HeldWeights`` is a value: nothing changes it after it is made; each step that changes
the weights returns a new one (sharing the arrays it did not change).
"""

from __future__ import annotations

import types
from typing import Dict, Iterator, Mapping, Optional, Tuple, Union

import numpy as np

from tftrt_toolkit.backends.frozen.checkpoint_bundle import CheckpointSlice
from tftrt_toolkit.backends.graphdef import empty_like

# A held weight's value: in memory, or still in the source checkpoint.
Weight = Union[np.ndarray, CheckpointSlice]

# Float weights with more elements than this are held aside. Per-channel constants (BatchNorm
# scales, biases: a few thousand channels at most) stay in the graph for grappler to fold.
MIN_HELD_ELEMENTS = 16384

_DEFAULT_SUFFIX = "/tftrt_held_default"


def _float_dtypes():
    from tensorflow.core.framework import types_pb2

    return {types_pb2.DT_FLOAT, types_pb2.DT_HALF, types_pb2.DT_BFLOAT16, types_pb2.DT_DOUBLE}


def as_array(weight: Weight) -> np.ndarray:
    """The weight's value in memory (read from the checkpoint when it is still there)."""
    return weight.read() if isinstance(weight, CheckpointSlice) else weight


def cast_to(weight: Weight, dtype) -> np.ndarray:
    """The weight's value cast to the numpy ``dtype``; from the checkpoint a chunk at a time, so
    the uncast value is never whole in memory (bf16 of VGG16's 411 MB fc1 kernel: 205 MB, not 616)."""
    if isinstance(weight, CheckpointSlice):
        return weight.read_as(dtype)
    return weight.astype(dtype)


class _ArraysView(Mapping):
    """Name → array, reading a checkpoint slice only when that weight is asked for."""

    def __init__(self, weights: Mapping[str, Weight]):
        self._weights = weights

    def __getitem__(self, name: str) -> np.ndarray:
        return as_array(self._weights[name])

    def __iter__(self) -> Iterator[str]:
        return iter(self._weights)

    def __len__(self) -> int:
        return len(self._weights)


class HeldWeights:
    """Node name → value of every weight held out of the graph (the graph has a Placeholder there)."""

    def __init__(self, values: Optional[Mapping[str, Weight]] = None):
        self._values: Dict[str, Weight] = dict(values or {})

    @property
    def values(self) -> Mapping[str, np.ndarray]:
        """The held weights by node name as arrays (read-only; each read from the checkpoint when asked for)."""
        return _ArraysView(types.MappingProxyType(self._values))

    @property
    def sources(self) -> Mapping[str, Weight]:
        """The held weights by node name as they are held: arrays, or slices of the source checkpoint (read-only)."""
        return types.MappingProxyType(self._values)

    def __contains__(self, name: str) -> bool:
        return name in self._values

    def __len__(self) -> int:
        return len(self._values)

    @property
    def nbytes(self) -> int:
        return sum(value.nbytes for value in self._values.values())

    @staticmethod
    def worth_holding(value: Weight) -> bool:
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
        if node.op == "Placeholder" and node.name in self._values:
            return as_array(self._values[node.name])
        if node.op == "Const":
            from tensorflow.python.framework import tensor_util

            return tensor_util.MakeNdarray(node.attr["value"].tensor)
        return None

    def with_values(self, changes: Mapping[str, Weight]) -> "HeldWeights":
        """These weights with ``changes`` (name → new value) added or replacing the old values."""
        return HeldWeights({**self._values, **changes})

    def used_by(self, graph_def) -> "HeldWeights":
        """Only the weights whose Placeholder is still in ``graph_def`` (a pass may have pruned some)."""
        present = {node.name for node in graph_def.node if node.op == "Placeholder"}
        return HeldWeights({name: value for name, value in self._values.items() if name in present})

    def holding_large_constants(self, graph_def) -> "HeldWeights":
        """These weights plus the large float Consts of ``graph_def``, which become their Placeholders.

        Edits ``graph_def`` in place: call it on a graph being built (freezing), not on one
        another step still reads.
        """
        from tensorflow.python.framework import tensor_util

        floats, found = _float_dtypes(), {}
        for node in graph_def.node:
            if node.op != "Const" or node.attr["value"].tensor.dtype not in floats:
                continue
            elements = int(np.prod([d.size for d in node.attr["value"].tensor.tensor_shape.dim]))
            if elements > MIN_HELD_ELEMENTS:
                found[node.name] = tensor_util.MakeNdarray(node.attr["value"].tensor)
                make_placeholder(node, found[node.name])
        return self.with_values(found) if found else self

    def for_grappler(self, graph_def):
        """A copy of ``graph_def`` for a grappler run: each held weight a ``PlaceholderWithDefault`` of its shape.

        Grappler allocates a zero-filled feed tensor of full size for every plain Placeholder
        (grappler_item_builder.cc, UpdatePlaceholderShape): seconds and the model's size in
        memory per run. It skips PlaceholderWithDefault, whose default here is a one-value
        stand-in constant; grappler cannot fold through it, so it never sees the zeros.
        """
        result = empty_like(graph_def)
        for number, node in enumerate(graph_def.node, start=1):
            new = result.node.add()
            new.CopyFrom(node)
            if node.op == "Placeholder" and node.name in self._values:
                default = result.node.add()
                default.name, default.op = node.name + _DEFAULT_SUFFIX, "Const"
                default.attr["dtype"].CopyFrom(node.attr["dtype"])
                # A different value for each: equal stand-ins would let common-subgraph
                # elimination merge them, and then the weights that read them.
                default.attr["value"].tensor.CopyFrom(
                    _stand_in(self._values[node.name], node.attr["dtype"].type, fill=number))
                new.op = "PlaceholderWithDefault"
                new.input.append(default.name)
        return result

    def from_grappler(self, optimized) -> Tuple[object, "HeldWeights"]:
        """Undo ``for_grappler`` on grappler's output: (the graph with plain Placeholders again, the weights it still reads).

        ``optimized`` is grappler's fresh output and is edited in place. RuntimeError if a pass
        rewrote a held weight.
        """
        rewritten = [node.name for node in optimized.node if node.name in self._values
                     and (node.op != "PlaceholderWithDefault" or list(node.input) != [node.name + _DEFAULT_SUFFIX])]
        if rewritten:
            raise RuntimeError(f"grappler rewrote held weights {rewritten[:3]}")
        keep = []
        for node in optimized.node:
            if node.name.endswith(_DEFAULT_SUFFIX) and node.name[:-len(_DEFAULT_SUFFIX)] in self._values:
                continue
            if node.name in self._values:
                del node.input[:]
                node.op = "Placeholder"
            keep.append(node)
        del optimized.node[:]
        optimized.node.extend(keep)
        return optimized, self.used_by(optimized)

    def _replaced(self, graph_def, make_tensor):
        result = empty_like(graph_def)
        for node in graph_def.node:
            new = result.node.add()
            if node.op == "Placeholder" and node.name in self._values:
                value = self._values[node.name]
                new.name, new.op = node.name, "Const"
                new.attr["dtype"].type = node.attr["dtype"].type
                new.attr["value"].tensor.CopyFrom(make_tensor(value, node.attr["dtype"].type))
            else:
                new.CopyFrom(node)
        return result

    def with_stand_ins(self, graph_def):
        """A copy of ``graph_def`` where each held weight is a Const of its dtype and shape holding one
        repeated zero: a few bytes, enough for importing, shape inference and saving."""
        return self._replaced(graph_def, _stand_in)

    def restored(self, graph_def):
        """A copy of ``graph_def`` with every held weight back as a real Const (for consumers that read
        the graph's values themselves, e.g. the int8 quantizer)."""
        from tensorflow.python.framework import tensor_util

        return self._replaced(graph_def, lambda value, dtype: tensor_util.make_tensor_proto(as_array(value)))


def make_placeholder(node, value: Weight) -> None:
    """Make ``node`` (in a GraphDef being built) the Placeholder of a held weight ``value``."""
    from tensorflow.python.framework import dtypes, tensor_shape

    name = node.name
    node.Clear()
    node.name, node.op = name, "Placeholder"
    node.attr["dtype"].type = dtypes.as_dtype(value.dtype).as_datatype_enum
    node.attr["shape"].shape.CopyFrom(tensor_shape.TensorShape(value.shape).as_proto())


def _stand_in(value, dtype, fill: int = 0):
    from tensorflow.core.framework import tensor_pb2
    from tensorflow.python.framework import tensor_shape

    tensor = tensor_pb2.TensorProto(dtype=dtype, tensor_shape=tensor_shape.TensorShape(value.shape).as_proto())
    _append_value(tensor, value.dtype, fill)
    return tensor


def _append_value(tensor, numpy_dtype, fill: int) -> None:
    # A TensorProto with one value and a larger shape means "every element is this value".
    from tensorflow.python.framework import dtypes, tensor_util

    dtype = dtypes.as_dtype(tensor.dtype)
    if numpy_dtype == np.float64:
        tensor.double_val.append(float(fill))
    elif numpy_dtype == np.float32:
        tensor.float_val.append(float(fill))
    elif dtype.is_floating:  # half and bfloat16 travel as int bit patterns
        tensor.half_val.append(fill & 0x7BFF)
    else:  # integers, bool, the quantized types: the passes hold only floats, but the writer streams any dtype
        one = np.array(bool(fill % 2) if dtype == dtypes.bool else fill % 128, dtype=dtype.as_numpy_dtype)
        tensor.MergeFrom(tensor_util.make_tensor_proto(one, dtype=dtype, shape=[]))
