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

from tftrt_toolkit.backends.frozen.held_weights import HeldWeights, make_placeholder
from tftrt_toolkit.errors import ConversionError, first_line


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
    whole model several times. The loaded model is not kept: its variables were a second copy
    of the weights (the held arrays keep the buffers they share with them alive on their own),
    so it goes when this returns (collect garbage then to free it at once: TF's objects form
    reference cycles). Raises ConversionError when the signature cannot be frozen.
    """
    from tftrt_toolkit.models.loader import load_signature_function

    loaded, function = load_signature_function(saved_model_dir, signature_key)
    try:
        with captured_native_stderr([]):  # freezing runs grappler, whose INFO lines bypass TF's log level
            graph_def, input_names, held = _freeze_holding_weights(function)
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


def _converter_data_class():
    from tensorflow.python.framework import convert_to_constants

    class ConverterDataSharingBuffers(convert_to_constants._FunctionConverterDataInEager):  # pylint: disable=protected-access
        """TF's converter data, reading each variable without copying it.

        ``Variable.numpy()`` and ``EagerTensor.numpy()`` copy; ``_numpy()`` of the value read
        shares the variable's buffer, which stays alive as long as the array does.
        """

        def _eval(self, tensor):
            return tensor.value()._numpy() if hasattr(tensor, "value") else tensor._numpy()  # pylint: disable=protected-access

    return ConverterDataSharingBuffers


def _ConverterDataSharingBuffers(**kwargs):  # pylint: disable=invalid-name
    return _converter_data_class()(**kwargs)


def _freeze_holding_weights(function) -> Tuple[object, List[str], HeldWeights]:
    """(frozen graph_def with large weights as held Placeholders, the remaining input tensor names, the held weights)."""
    import numpy as np
    from tensorflow.python.framework import convert_to_constants

    # TF's own steps: inline the signature's functions, read every captured variable, then turn
    # each variable read into a constant (also inside control flow, which the converter follows).
    data = _ConverterDataSharingBuffers(func=function, lower_control_flow=True, aggressive_inlining=False)
    held_now = {}
    if not data.graph_def.library.function:
        # Everything is inlined: each variable is one node of the top-level graph. Hand the
        # converter a one-element stand-in and make that node our Placeholder afterwards.
        for name, tensor_data in list(data.tensor_data.items()):
            if HeldWeights.worth_holding(tensor_data.numpy):
                held_now[name] = tensor_data.numpy
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
