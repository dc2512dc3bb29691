"""The offline graph pipeline: freeze a signature, run grappler passes, rebuild a servable function.

This is what TF-TRT does before it hands the graph to TensorRT (see
``TrtGraphConverterV2.convert``), without the TensorRT pass; the cpu backend saves its
result, and ``inspect --plan=tensorrt`` analyses it. Each grappler pass runs as its own
stage so we can report which ones actually changed the graph.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import os
import time
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from tftrt_toolkit.backends.held_weights import HeldWeights, write_into_saved_model
from tftrt_toolkit.steps import step
from tftrt_toolkit.errors import ConversionError, first_line


@dataclasses.dataclass(frozen=True)
class Stage:
    """One step of the pipeline: a grappler run of passes that work together (constant folding
    needs arithmetic and shape in the same run), or a rewrite of our own (``transform``)."""

    name: str
    passes: Tuple[str, ...] = ()
    # The remapper fuses only nodes placed on a CPU; placing them makes the saved graph CPU-specific.
    place_on_cpu: bool = False
    # (graph_def, names of nodes to keep, held weights) -> (graph_def, number of rewrites); None for grappler stages.
    transform: Optional[Callable] = None
    # (graph_def, records of the stages run so far) -> why this stage cannot change the graph, or "" to run it.
    skip_reason: Optional[Callable] = None


# Cleanup first, as TF-TRT does before its TensorRT pass (trt_convert._get_tensorrt_rewriter_config,
# plus "function" to inline calls so every later pass sees one graph).
CLEANUP = Stage("cleanup", ("function", "pruning", "debug_stripper", "constfold", "shape", "arithmetic",
                            "dependency", "common_subgraph_elimination", "loop"))


def _no_channels_first_ops(graph_def, records) -> str:
    # With no GPU, grappler's layout pass only turns NCHW/NCDHW ops into NHWC/NDHWC ones.
    formats = {node.attr["data_format"].s for node in graph_def.node if "data_format" in node.attr}
    return "" if any(f.startswith(b"NC") for f in formats) else "no channels-first (NCHW) ops to convert"


LAYOUT = Stage("layout", ("layout", "constfold"), skip_reason=_no_channels_first_ops)


def _fold_affine(graph_def, keep, held):
    from tftrt_toolkit.backends.affine_folds import fold_affine_ops

    return fold_affine_ops(graph_def, keep=tuple(keep), held=held)


def _previous_stage_changed_nothing(graph_def, records) -> str:
    # Cleanup already ran on this graph; it can only find new work where the fold rewrote something.
    return "" if records and records[-1].changed else f"{records[-1].name if records else 'nothing'} changed nothing"


# Keras 3 exports BatchNorm as Mul/AddV2 by constants that grappler never folds into the
# convolution; folding them (then cleaning up) lets oneDNN fuse conv + bias + activation.
FOLD_BATCHNORM = Stage("fold_batchnorm", transform=_fold_affine)
CLEANUP_AFTER_FOLD = dataclasses.replace(CLEANUP, name="cleanup_after_fold", skip_reason=_previous_stage_changed_nothing)
# BF16: grappler's oneDNN mixed-precision pass, then constant folding so weights are stored as
# bf16 constants instead of fp32 constants cast at every call.
BF16_PASS = "auto_mixed_precision_onednn_bfloat16"
BF16 = Stage("bf16", (BF16_PASS, "constfold", "arithmetic", "dependency"))


def _fold_weight_casts(graph_def, keep, held):
    from tftrt_toolkit.backends.held_weights import fold_weight_casts

    return fold_weight_casts(graph_def, held)


# Constant folding stored bf16 weights when they were graph constants; held aside, we cast them.
FOLD_WEIGHT_CASTS = Stage("fold_weight_casts", transform=_fold_weight_casts)
def _fuse_layer_norms(graph_def, keep, held):
    from tftrt_toolkit.backends.layer_norm_fusion import fuse_layer_norms

    return fuse_layer_norms(graph_def, keep=tuple(keep), held=held)


def _no_layer_norm_ops(graph_def, records) -> str:
    return "" if any(node.op == "SquaredDifference" for node in graph_def.node) else "no LayerNorm (SquaredDifference) ops"


# Keras 3's ten-op LayerNorm → one oneDNN _MklLayerNorm (the remapper knows only tf.keras's pattern).
FUSE_LAYER_NORM = Stage("fuse_layer_norm", transform=_fuse_layer_norms, skip_reason=_no_layer_norm_ops)
# Conv/MatMul + BiasAdd + activation → oneDNN fused kernels.
FUSION = Stage("fusion", ("remap", "constfold", "dependency"), place_on_cpu=True)

CPU_FP32_STAGES = (CLEANUP, FOLD_BATCHNORM, CLEANUP_AFTER_FOLD, LAYOUT, FUSE_LAYER_NORM, FUSION)
# No offline fusion under bf16: grappler's _FusedConv2D does not accept bfloat16 (the saved graph
# would not load), while at run time TF rewrites fusions into oneDNN kernels that do. Random-weight
# models hide this (zero biases fold away, leaving nothing to fuse); real weights do not.
CPU_BF16_STAGES = (CLEANUP, FOLD_BATCHNORM, CLEANUP_AFTER_FOLD, LAYOUT, BF16, FOLD_WEIGHT_CASTS)
# What TF-TRT's segmenter sees: no fusion (TF-TRT turns the remapper off).
TENSORRT_PREPASS_STAGES = (CLEANUP, LAYOUT)


@dataclasses.dataclass
class FrozenSignature:
    """A signature with its variables folded into the graph, plus what is needed to rebuild it.

    ``graph_def`` holds the small constants; the large weights are Placeholders whose values
    are in ``held`` (see held_weights.py): ``held.restored(graph_def)`` is the classic frozen graph.
    """

    loaded: object  # keeps the SavedModel's resources alive (the held arrays keep their own buffers)
    original_function: object
    graph_def: object
    input_tensor_names: List[str]
    output_tensor_names: List[str]
    held: HeldWeights = dataclasses.field(default_factory=HeldWeights)


@dataclasses.dataclass(frozen=True)
class StageRecord:
    """What one grappler stage did: nodes before/after and which op types appeared or vanished."""

    name: str
    nodes_before: int
    nodes_after: int
    seconds: float
    ops_added: Tuple[Tuple[str, int], ...]
    ops_removed: Tuple[Tuple[str, int], ...]
    grappler_errors: Tuple[str, ...] = ()  # error lines grappler logged (it skips a failing pass silently)
    skipped: str = ""  # why the stage did not run (it could not have changed the graph)

    @property
    def changed(self) -> bool:
        return self.nodes_before != self.nodes_after or bool(self.ops_added or self.ops_removed)

    def to_json(self) -> dict:
        return {
            "name": self.name, "changed": self.changed, "nodes_before": self.nodes_before,
            "nodes_after": self.nodes_after, "seconds": round(self.seconds, 3),
            "ops_added": dict(self.ops_added), "ops_removed": dict(self.ops_removed),
            "grappler_errors": list(self.grappler_errors),
        } | ({"skipped": self.skipped} if self.skipped else {})


def op_histogram(graph_def) -> Dict[str, int]:
    """Op type -> count over the graph and its function library."""
    counts = collections.Counter(node.op for node in graph_def.node)
    for function in graph_def.library.function:
        counts.update(node.op for node in function.node_def)
    return dict(counts.most_common())


def freeze_signature(saved_model_dir: str, signature_key: str) -> FrozenSignature:
    """Load a SavedModel signature and fold its variables into the graph, large weights held aside.

    Like TF's ``convert_variables_to_constants_v2`` (whose steps it reuses), without putting the
    large values into the GraphDef or building a frozen function from it: both copied the
    whole model several times.
    """
    from tftrt_toolkit.models.loader import load_signature_function

    loaded, function = load_signature_function(saved_model_dir, signature_key)
    held = HeldWeights()
    try:
        with _captured_native_stderr([]):  # freezing runs grappler, whose INFO lines bypass TF's log level
            graph_def, input_names = _freeze_holding_weights(function, held)
    except Exception as error:
        first = first_line(error, limit=200)
        raise ConversionError(
            f"could not freeze signature {signature_key!r} ({type(error).__name__}: {first}); "
            "models with control flow over variables or hash tables may need --backend=tensorrt or re-export."
        ) from error
    # Device pins from the training machine (e.g. /GPU:0) must not follow the graph to the server.
    for node in graph_def.node:
        node.device = ""
    return FrozenSignature(loaded=loaded, original_function=function, graph_def=graph_def,
                           input_tensor_names=input_names, output_tensor_names=[t.name for t in function.outputs],
                           held=held)


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


def _freeze_holding_weights(function, held: HeldWeights):
    """(frozen graph_def with large weights as held Placeholders, the remaining input tensor names)."""
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
    for node in graph_def.node:
        if node.name in held_now:
            held.hold(node, held_now[node.name])
    # Models whose functions kept their own copies of variables, or that carried large constants.
    held.hold_large_constants(graph_def)
    captured = {id(function.graph.internal_captures[index]) for index in converted_indices}
    return graph_def, [t.name for t in function.inputs if id(t) not in captured]


@contextlib.contextmanager
def _mixed_precision_denylist(op_types: Sequence[str]) -> Iterator[None]:
    """Keep ``op_types`` in fp32 during the mixed-precision pass.

    Grappler's lists are edited through environment variables read when the pass runs.
    An op may sit in only one list ("Op lists have conflicting entries" otherwise), so it
    is removed from the other three as it is added to the deny list. Restored afterwards
    so nothing leaks into the user's process.
    """
    prefix = "TF_AUTO_MIXED_PRECISION_GRAPH_REWRITE_"
    settings = {}
    if op_types:
        value = ",".join(op_types)
        settings = {prefix + "DENYLIST_ADD": value, prefix + "ALLOWLIST_REMOVE": value,
                    prefix + "INFERLIST_REMOVE": value, prefix + "CLEARLIST_REMOVE": value}
    previous = {key: os.environ.get(key) for key in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _run_grappler(graph_def, frozen: FrozenSignature, stage: Stage):
    from tensorflow.core.protobuf import config_pb2, meta_graph_pb2, rewriter_config_pb2
    from tensorflow.python.framework import importer, ops
    from tensorflow.python.grappler import tf_optimizer
    from tensorflow.python.training import saver

    graph_def = frozen.held.for_grappler(graph_def) if len(frozen.held) else _copy(graph_def)
    if stage.place_on_cpu:
        for node in graph_def.node:
            node.device = "/device:CPU:0"
    with ops.Graph().as_default() as graph:
        importer.import_graph_def(graph_def, name="")
        meta_graph = saver.export_meta_graph(graph_def=graph.as_graph_def(), graph=graph)
    # Grappler keeps only what feeds the 'train_op' collection: name inputs and outputs there.
    fetch = meta_graph_pb2.CollectionDef()
    for name in frozen.input_tensor_names + frozen.output_tensor_names:
        fetch.node_list.value.append(name)
    meta_graph.collection_def["train_op"].CopyFrom(fetch)

    config = config_pb2.ConfigProto()
    rewrite = config.graph_options.rewrite_options
    rewrite.min_graph_nodes = -1  # optimise tiny graphs too (tests, small heads)
    rewrite.meta_optimizer_iterations = rewriter_config_pb2.RewriterConfig.TWO
    rewrite.optimizers.extend(stage.passes)
    native_log: List[str] = []
    with _captured_native_stderr(native_log):
        optimized = tf_optimizer.OptimizeGraph(config, meta_graph, graph_id=b"tftrt_toolkit")
    errors = tuple(line.split("] ", 1)[-1] for line in native_log if " E " in line[:40] or line.startswith("E"))
    if stage.place_on_cpu:
        for node in optimized.node:
            node.device = ""  # leave placement to the server; fused ops only have CPU kernels anyway
    if len(frozen.held):
        frozen.held.from_grappler(optimized)
    return optimized, errors


@contextlib.contextmanager
def _captured_native_stderr(lines: List[str]) -> Iterator[None]:
    """Collect what TF's C++ side writes to fd 2 during a grappler run (it bypasses Python's sys.stderr).

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


def _copy(graph_def):
    copy = type(graph_def)()
    copy.CopyFrom(graph_def)
    return copy


def _histogram_delta(before: Dict[str, int], after: Dict[str, int]):
    added = tuple((op, after[op] - before.get(op, 0)) for op in sorted(after) if after[op] > before.get(op, 0))
    removed = tuple((op, before[op] - after.get(op, 0)) for op in sorted(before) if before[op] > after.get(op, 0))
    return added, removed


def optimize_graph(frozen: FrozenSignature, stages: Sequence[Stage], *,
                   keep_fp32_ops: Sequence[str] = ()) -> Tuple[object, List[StageRecord]]:
    """Run each stage over the frozen graph in turn; returns the graph and a record per stage.

    Stages that cannot change the graph (``Stage.skip_reason``) are recorded as skipped, not run.
    """
    graph_def = frozen.graph_def
    records: List[StageRecord] = []
    for stage in stages:
        before = op_histogram(graph_def)
        skipped = stage.skip_reason(graph_def, records) if stage.skip_reason else ""
        if skipped:
            nodes = sum(before.values())
            records.append(StageRecord(stage.name, nodes, nodes, 0.0, (), (), (), skipped))
            continue
        start = time.perf_counter()
        try:
            with step(stage.name):
                if stage.transform is not None:
                    outputs = [name.split(":")[0] for name in frozen.output_tensor_names]
                    graph_def, _ = stage.transform(graph_def, outputs, frozen.held)
                    grappler_errors = ()
                else:
                    with _mixed_precision_denylist(keep_fp32_ops if BF16_PASS in stage.passes else ()):
                        graph_def, grappler_errors = _run_grappler(graph_def, frozen, stage)
        except Exception as error:
            raise ConversionError(f"grappler stage {stage.name!r} failed: {first_line(error, limit=200)}") from error
        after = op_histogram(graph_def)
        added, removed = _histogram_delta(before, after)
        records.append(StageRecord(stage.name, sum(before.values()), sum(after.values()),
                                   time.perf_counter() - start, added, removed, grappler_errors))
    return graph_def, records


@dataclasses.dataclass(frozen=True)
class SignatureStructure:
    """What a rebuilt function copies from the original one so saving writes the same SignatureDef.

    Holds no tensors of the original (its outputs' nesting only), so the loaded model, whose
    variables hold the weights, can be freed before the rebuilt function is saved.
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
        from tensorflow.python.util import nest

        function.graph.structured_outputs = nest.pack_sequence_as(
            self.structured_outputs, function.graph.structured_outputs)
        # TF 2.17 packs outputs through the function type: without it outputs become output_0..N.
        function._function_type = self.function_type  # pylint: disable=protected-access
        function.graph.structured_input_signature = self.structured_input_signature
        return function


def rebuild_function(frozen: FrozenSignature, graph_def, structure: Optional[SignatureStructure] = None):
    """A ConcreteFunction running ``graph_def`` with the original signature's input and output names.

    Held weights become one-element stand-in constants of their shape (``save_function`` writes
    the real values). Mirrors trt_convert._construct_function_from_graph_def: the structured
    signature is copied from the original function (or ``structure``, taken from it before it
    was freed) so saving produces the same SignatureDef.
    """
    from tensorflow.python.eager import wrap_function

    if len(frozen.held):
        graph_def = frozen.held.with_stand_ins(graph_def)
    function = wrap_function.function_from_graph_def(
        graph_def, frozen.input_tensor_names, frozen.output_tensor_names)
    return (structure or SignatureStructure.of(frozen.original_function)).apply_to(function)


def rebuild_function_reading_variables(frozen: FrozenSignature, graph_def,
                                       structure: Optional[SignatureStructure] = None):
    """Like ``rebuild_function``, but each held weight becomes a variable the function reads.

    For weights past protobuf's 2 GB, which cannot all be constants of one graph: the saved
    model keeps them in its checkpoint (variables/), as TF-TRT does when it does not freeze.
    Returns (function, variables); ``frozen.held`` is emptied, weight by weight, as each moves
    into its variable, so the model's memory is not held twice.
    """
    import tensorflow as tf
    from tensorflow.core.framework import graph_pb2, types_pb2
    from tensorflow.python.eager import wrap_function

    rebuilt = graph_pb2.GraphDef()
    rebuilt.CopyFrom(graph_def)
    variables, captures = [], {}
    for node in list(rebuilt.node):
        if node.op != "Placeholder" or node.name not in frozen.held:
            continue
        name, dtype = node.name, node.attr["dtype"].type
        value = frozen.held.values.pop(name)
        variable = tf.Variable(value, trainable=False, name=name.replace("/", "_"))
        del value
        # The weight's Placeholder becomes a read of the variable, whose handle the function captures.
        handle = rebuilt.node.add()
        handle.name, handle.op = name + "/tftrt_variable", "Placeholder"
        handle.attr["dtype"].type = types_pb2.DT_RESOURCE
        node.Clear()
        node.name, node.op = name, "ReadVariableOp"
        node.input.append(handle.name)
        node.attr["dtype"].type = dtype
        variables.append(variable)
        captures[handle.name] = variable.handle
    function = wrap_function.function_from_graph_def(
        rebuilt, frozen.input_tensor_names, frozen.output_tensor_names, captures)
    return (structure or SignatureStructure.of(frozen.original_function)).apply_to(function), variables


def save_function(function, output_dir: str, signature_key: str, held: Optional[HeldWeights] = None,
                  variables: Sequence[object] = ()) -> None:
    """Save one function as a SavedModel signature, with nothing else tracked but ``variables``.

    With ``held``, the function holds stand-ins for those weights and their values are streamed
    into the saved graph afterwards (held_weights.write_into_saved_model). With ``variables``
    (weights past 2 GB), the function reads them and they are saved in the checkpoint.
    """
    import tensorflow as tf

    root = tf.Module()
    if variables:
        root.weights = list(variables)
    tf.saved_model.save(root, output_dir, signatures={signature_key: function})
    if held is not None and len(held):
        write_into_saved_model(output_dir, held)


def graph_for_inspection(saved_model_dir: str, signature_key: str,
                         stages: Sequence[Stage] = TENSORRT_PREPASS_STAGES) -> Tuple[object, FrozenSignature]:
    """The frozen, grappler-optimised graph TF-TRT would segment (for ``inspect --plan``)."""
    frozen = freeze_signature(saved_model_dir, signature_key)
    graph_def, _ = optimize_graph(frozen, stages)
    # The plan reads shapes, and values only of small constants: stand-ins serve for the weights.
    return frozen.held.with_stand_ins(graph_def), frozen


def count_compute_nodes(graph_def, ignore: Optional[Sequence[str]] = None) -> int:
    """Nodes that do work (not Const/Placeholder/Identity/NoOp)."""
    skip = set(ignore or ("Const", "Placeholder", "Identity", "NoOp", "IdentityN"))
    return sum(1 for node in graph_def.node if node.op not in skip)
