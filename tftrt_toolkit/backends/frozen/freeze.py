"""Freeze a SavedModel signature: its variables become constants, its large weights held aside.

This is what TF-TRT does first (``TrtGraphConverterV2.convert`` freezes with
``convert_variables_to_constants_v2``), without putting the large values into the GraphDef:
the cpu backend and the TensorRT segment plan both start from the result.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import Iterator, List, Optional, Tuple

import numpy as np

from tftrt_toolkit.backends.frozen.held_weights import HeldWeights, make_placeholder
from tftrt_toolkit.errors import ConversionError, ModelLoadError, first_line


@dataclasses.dataclass(frozen=True)
class SignatureStructure:
    """What a rebuilt function copies from the original one so saving writes the same SignatureDef.

    Holds no tensors of the original (its outputs' nesting only), so the loaded model, whose
    variables hold the weights, can be freed as soon as the signature is frozen.
    """

    structured_outputs: object
    function_type: object
    structured_input_signature: object

    @classmethod
    def of(cls, function) -> "SignatureStructure":
        from tensorflow.python.util import nest

        skeleton = nest.map_structure(lambda _: None, function.graph.structured_outputs)
        return cls(skeleton, function.function_type, function.structured_input_signature)

    def apply_to(self, function):
        """Give ``function`` (just built from a GraphDef) the original's signature; returns it."""
        from tensorflow.python.util import nest

        function.graph.structured_outputs = nest.pack_sequence_as(
            self.structured_outputs, function.graph.structured_outputs)
        # TF 2.17 packs outputs through the function type: without it outputs become output_0..N.
        function._function_type = self.function_type  # pylint: disable=protected-access
        function.graph.structured_input_signature = self.structured_input_signature
        return function


@dataclasses.dataclass(frozen=True)
class FrozenSignature:
    """A signature with its variables folded into the graph, plus what is needed to rebuild it.

    ``graph_def`` holds the small constants; the large weights are Placeholders whose values
    are in ``held``: ``held.restored(graph_def)`` is the classic frozen graph. A value: each
    step (grappler stages, folds, int8) returns a new one.
    """

    graph_def: object
    input_tensor_names: Tuple[str, ...]
    output_tensor_names: Tuple[str, ...]
    held: HeldWeights = dataclasses.field(default_factory=HeldWeights)
    # The original signature's structure (None where nothing will be rebuilt from this graph).
    structure: Optional[SignatureStructure] = None

    def with_graph(self, graph_def, held: Optional[HeldWeights] = None) -> "FrozenSignature":
        """The same signature running ``graph_def``, reading ``held`` (default: no held weights)."""
        return dataclasses.replace(self, graph_def=graph_def, held=held if held is not None else HeldWeights())

    def with_weights_in_graph(self) -> "FrozenSignature":
        """The same signature with every held weight back in the graph as a constant."""
        return self.with_graph(self.held.restored(self.graph_def))


def freeze_signature(saved_model_dir: str, signature_key: str) -> FrozenSignature:
    """Load a SavedModel signature and fold its variables into the graph, large weights held aside.

    Like TF's ``convert_variables_to_constants_v2`` (whose steps it reuses), without putting the
    large values into the GraphDef or building a frozen function from it: both copied the
    whole model several times. Where the model's checkpoint can be read in place
    (``checkpoint_bundle``), the variables are not restored at all: each large weight is held
    as a ``CheckpointSlice`` of the source checkpoint (read only by a step that changes it),
    each small one is read alone. Otherwise the variables are restored and the held arrays
    share their buffers. The loaded model is not kept: it goes when this returns (collect
    garbage then to free it at once: TF's objects form reference cycles). Raises
    ConversionError when the signature cannot be frozen.
    """
    from tftrt_toolkit.backends.frozen.checkpoint_bundle import CheckpointBundle
    from tftrt_toolkit.models.loader import load_signature_function

    bundle = CheckpointBundle.of_saved_model(saved_model_dir)
    checkpoint = None
    if bundle is not None:
        loaded, function = load_signature_function(saved_model_dir, signature_key, restore_variables=False)
        checkpoint = _CheckpointValues.of(loaded, function, bundle)
        if checkpoint is None:  # something the checkpoint restores is not a plain variable
            del loaded, function
    if checkpoint is None:
        loaded, function = load_signature_function(saved_model_dir, signature_key)
    try:
        with captured_native_stderr([]):  # freezing runs grappler, whose INFO lines bypass TF's log level
            graph_def, input_names, held = _freeze_holding_weights(function, checkpoint)
    except ModelLoadError:
        raise  # a checkpoint that does not read back: the model's fault, said as loading says it
    except Exception as error:
        first = first_line(error, limit=200)
        raise ConversionError(
            f"could not freeze signature {signature_key!r} ({type(error).__name__}: {first}); "
            "models with control flow over variables or hash tables may need --backend=tensorrt or re-export."
        ) from error
    # Device pins from the training machine (e.g. /GPU:0) must not follow the graph to the server.
    for node in graph_def.node:
        node.device = ""
    frozen = FrozenSignature(graph_def=graph_def, input_tensor_names=tuple(input_names),
                             output_tensor_names=tuple(t.name for t in function.outputs), held=held,
                             structure=SignatureStructure.of(function))
    del loaded, function
    return frozen


class _CheckpointValues:
    """Each variable of a model loaded without its checkpoint → where its value is in that checkpoint."""

    def __init__(self, bundle, keys):
        self.bundle = bundle
        self._keys = keys  # id(variable) → checkpoint key
        self._reader = None

    @classmethod
    def of(cls, loaded, function, bundle) -> Optional["_CheckpointValues"]:
        """Match the checkpoint's object graph to ``loaded`` as TF's restore does (by child names
        from the root); None when anything but a plain variable would have been restored, or a
        variable the function reads was not matched."""
        import tensorflow as tf
        from tensorflow.core.protobuf import trackable_object_graph_pb2

        try:
            reader = _checkpoint_reader(bundle.prefix)
            graph = trackable_object_graph_pb2.TrackableObjectGraph.FromString(
                reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
        except (tf.errors.OpError, IndexError, ValueError):  # what TF's checkpoint reader raises
            return None  # restoring says what is wrong with the checkpoint
        keys, objects, visit = {}, {0: loaded}, [0]
        while visit:
            node_id = visit.pop()
            node = graph.nodes[node_id]
            for child in node.children:
                if child.node_id in objects:
                    continue
                found = objects[node_id]._lookup_dependency(child.local_name)  # pylint: disable=protected-access
                if found is not None:
                    objects[child.node_id] = found
                    visit.append(child.node_id)
            for attribute in node.attributes:
                if attribute.name != "VARIABLE_VALUE" or node.registered_saver.name or not hasattr(
                        objects[node_id], "handle"):
                    return None
                keys[id(objects[node_id])] = attribute.checkpoint_key
        if any(node.attributes and index not in objects for index, node in enumerate(graph.nodes)):
            return None
        if any(id(variable) not in keys for variable in function.graph.variables):
            return None
        values = cls(bundle, keys)
        values._reader = reader
        return values

    def key(self, variable) -> str:
        return self._keys[id(variable)]

    def read(self, variable) -> np.ndarray:
        """The variable's value, read alone from the checkpoint (TF's reader checks its checksum);
        ModelLoadError when it does not read back."""
        import tensorflow as tf

        try:
            return self._reader.get_tensor(self.key(variable))
        except (tf.errors.OpError, IndexError, ValueError) as error:  # what TF's checkpoint reader raises
            from tftrt_toolkit.models.loader import unreadable_variables_error

            model = os.path.dirname(os.path.dirname(self.bundle.prefix))
            raise unreadable_variables_error(model, first_line(error, limit=160)) from error


def _checkpoint_reader(prefix: str):
    from tensorflow.python.training import py_checkpoint_reader

    return py_checkpoint_reader.NewCheckpointReader(prefix)


def _converter_data_class():
    from tensorflow.python.framework import convert_to_constants

    class ConverterDataSharingBuffers(convert_to_constants._FunctionConverterDataInEager):  # pylint: disable=protected-access
        """TF's converter data, reading each variable without copying it, or not at all.

        ``Variable.numpy()`` and ``EagerTensor.numpy()`` copy; ``_numpy()`` of the value read
        shares the variable's buffer, which stays alive as long as the array does. With a
        checkpoint (variables not restored), a large weight the checkpoint holds as one run
        of bytes is a one-element array broadcast to its shape (its slice is in ``slices``,
        by the array's id), every other one is read alone from the checkpoint.
        """

        def __init__(self, checkpoint=None, **kwargs):
            self.checkpoint, self.slices = checkpoint, {}
            super().__init__(**kwargs)

        def _eval(self, tensor):
            if self.checkpoint is None or not hasattr(tensor, "handle"):
                return tensor.value()._numpy() if hasattr(tensor, "value") else tensor._numpy()  # pylint: disable=protected-access
            where = self.checkpoint.bundle.slice(self.checkpoint.key(tensor))
            if where is None or not HeldWeights.worth_holding(where):
                return self.checkpoint.read(tensor)
            stand_in = np.broadcast_to(np.zeros((), where.dtype), where.shape)
            self.slices[id(stand_in)] = where
            return stand_in

    return ConverterDataSharingBuffers


def _ConverterDataSharingBuffers(**kwargs):  # pylint: disable=invalid-name
    return _converter_data_class()(**kwargs)


def _freeze_holding_weights(function, checkpoint: Optional[_CheckpointValues] = None
                             ) -> Tuple[object, List[str], HeldWeights]:
    """(frozen graph_def with large weights as held Placeholders, the remaining input tensor names, the held weights)."""
    from tensorflow.python.framework import convert_to_constants

    # TF's own steps: inline the signature's functions, read every captured variable, then turn
    # each variable read into a constant (also inside control flow, which the converter follows).
    data = _ConverterDataSharingBuffers(func=function, lower_control_flow=True, aggressive_inlining=False,
                                        checkpoint=checkpoint)
    held_now = {}
    inlined = not data.graph_def.library.function
    for name, tensor_data in list(data.tensor_data.items()):
        where = data.slices.get(id(tensor_data.numpy))
        if where is not None and not inlined:  # the converter will write this value into a function
            data.tensor_data[name] = tensor_data._replace(numpy=where.read())
        elif inlined and HeldWeights.worth_holding(tensor_data.numpy):
            # Everything is inlined: each variable is one node of the top-level graph. Hand the
            # converter a one-element stand-in and make that node our Placeholder afterwards.
            held_now[name] = where if where is not None else tensor_data.numpy
            data.tensor_data[name] = tensor_data._replace(numpy=np.zeros((), tensor_data.numpy.dtype))
    graph_def, converted_indices = convert_to_constants._replace_variables_by_constants(  # pylint: disable=protected-access
        converter_data=data)
    held = {}
    for node in graph_def.node:
        if node.name in held_now:
            held[node.name] = held_now[node.name]
            make_placeholder(node, held[node.name])
    # Models whose functions kept their own copies of variables, or that carried large constants.
    weights = HeldWeights(held).holding_large_constants(graph_def)
    captured = {id(function.graph.internal_captures[index]) for index in converted_indices}
    return graph_def, [t.name for t in function.inputs if id(t) not in captured], weights


@contextlib.contextmanager
def captured_native_stderr(lines: List[str]) -> Iterator[None]:
    """Collect what TF's C++ side writes to fd 2 meanwhile (it bypasses Python's sys.stderr).

    Grappler reports a failed pass only as a log line (then returns the graph unchanged), so
    the lines are kept for the stage record; the per-call INFO chatter stays off the terminal.
    """
    import sys
    import tempfile

    try:
        sys.stderr.flush()
        saved_fd = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (some notebooks): nothing to capture
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
            capture.seek(0)
            lines.extend(capture.read().decode("utf-8", "replace").splitlines())
