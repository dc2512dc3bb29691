"""Grappler stages over a frozen signature: the passes TF-TRT runs before its TensorRT pass.

This is what TF-TRT does before it hands the graph to TensorRT (see
``TrtGraphConverterV2.convert``), without the TensorRT pass; the cpu backend adds stages of
its own (``backends/cpu/stages.py``) and saves the result, and ``inspect --plan=tensorrt``
analyses it. Each grappler pass runs as its own stage so we can report which ones actually
changed the graph.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import time
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from tftrt_toolkit.backends.graphdef import copy as copy_graph
from tftrt_toolkit.backends.graphdef import node_name, op_histogram
from tftrt_toolkit.backends.frozen.freeze import FrozenSignature, captured_native_stderr, freeze_signature
from tftrt_toolkit.errors import ConversionError, first_line
from tftrt_toolkit.steps import step


@dataclasses.dataclass(frozen=True)
class Stage:
    """One step of the pipeline: a grappler run of passes that work together (constant folding
    needs arithmetic and shape in the same run), or a rewrite of our own (``transform``)."""

    name: str
    passes: Tuple[str, ...] = ()
    # The remapper fuses only nodes placed on a CPU; placing them makes the saved graph CPU-specific.
    place_on_cpu: bool = False
    # (graph_def, names of nodes to keep, held weights) -> (new graph_def, new held weights); None for grappler stages.
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
# Grappler's oneDNN mixed-precision pass (bf16); ``optimize_graph``'s keep_fp32_ops edit its op lists.
BF16_PASS = "auto_mixed_precision_onednn_bfloat16"
# What TF-TRT's segmenter sees: no fusion (TF-TRT turns the remapper off).
TENSORRT_PREPASS_STAGES = (CLEANUP, LAYOUT)


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
    # Whether the graph differs after the stage: a rewrite can keep every op count (reordered,
    # rewired or retyped nodes). None for records made without comparing the graphs.
    graph_differs: Optional[bool] = None

    @property
    def changed(self) -> bool:
        if self.graph_differs is not None:
            return self.graph_differs
        return self.nodes_before != self.nodes_after or bool(self.ops_added or self.ops_removed)

    def to_json(self) -> dict:
        return {
            "name": self.name, "changed": self.changed, "nodes_before": self.nodes_before,
            "nodes_after": self.nodes_after, "seconds": round(self.seconds, 3),
            "ops_added": dict(self.ops_added), "ops_removed": dict(self.ops_removed),
            "grappler_errors": list(self.grappler_errors),
        } | ({"skipped": self.skipped} if self.skipped else {})


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


def _run_grappler(frozen: FrozenSignature, stage: Stage) -> Tuple[FrozenSignature, Tuple[str, ...]]:
    """(``frozen`` after one grappler run of ``stage``'s passes, the error lines grappler logged)."""
    from tensorflow.core.protobuf import config_pb2, meta_graph_pb2, rewriter_config_pb2
    from tensorflow.python.framework import importer, ops
    from tensorflow.python.grappler import tf_optimizer
    from tensorflow.python.training import saver

    held = frozen.held
    graph_def = held.for_grappler(frozen.graph_def) if len(held) else copy_graph(frozen.graph_def)
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
    with captured_native_stderr(native_log):
        optimized = tf_optimizer.OptimizeGraph(config, meta_graph, graph_id=b"tftrt_toolkit")
    errors = tuple(line.split("] ", 1)[-1] for line in native_log if " E " in line[:40] or line.startswith("E"))
    if stage.place_on_cpu:
        for node in optimized.node:
            node.device = ""  # leave placement to the server; fused ops only have CPU kernels anyway
    if len(held):
        optimized, held = held.from_grappler(optimized)
    return frozen.with_graph(optimized, held), errors


def _graph_digest(graph_def) -> bytes:
    """A digest of the graph's nodes in any order (grappler may reorder what it leaves as it was).

    Held weights are Placeholders here, so this reads no weight values."""
    digest = hashlib.sha256()
    for node_digest in sorted(hashlib.sha256(node.SerializeToString(deterministic=True)).digest()
                              for node in graph_def.node):
        digest.update(node_digest)
    return digest.digest()


def _histogram_delta(before: Dict[str, int], after: Dict[str, int]):
    added = tuple((op, after[op] - before.get(op, 0)) for op in sorted(after) if after[op] > before.get(op, 0))
    removed = tuple((op, before[op] - after.get(op, 0)) for op in sorted(before) if before[op] > after.get(op, 0))
    return added, removed


def optimize_graph(frozen: Union[FrozenSignature, Callable[[], FrozenSignature]], stages: Sequence[Stage], *,
                   keep_fp32_ops: Sequence[str] = ()) -> Tuple[FrozenSignature, List[StageRecord]]:
    """Run each stage over the frozen signature in turn; returns (the optimised signature, a record per stage).

    ``frozen`` is the signature or, as Polygraphy's loaders take their input, a callable
    returning it: then nothing outside holds the unoptimised graph and its weights while the
    stages run, and each stage's input is freed as the next one starts. Stages that cannot
    change the graph (``Stage.skip_reason``) are recorded as skipped, not run.
    """
    if callable(frozen):
        frozen = frozen()
    records: List[StageRecord] = []
    # Each stage's "before" is the previous stage's "after": measured once per graph.
    before, digest_before = op_histogram(frozen.graph_def), _graph_digest(frozen.graph_def)
    for stage in stages:
        skipped = stage.skip_reason(frozen.graph_def, records) if stage.skip_reason else ""
        if skipped:
            nodes = sum(before.values())
            records.append(StageRecord(stage.name, nodes, nodes, 0.0, (), (), (), skipped))
            continue
        start = time.perf_counter()
        try:
            with step(stage.name):
                if stage.transform is not None:
                    outputs = [node_name(name) for name in frozen.output_tensor_names]
                    frozen = frozen.with_graph(*stage.transform(frozen.graph_def, outputs, frozen.held))
                    grappler_errors = ()
                else:
                    with _mixed_precision_denylist(keep_fp32_ops if BF16_PASS in stage.passes else ()):
                        frozen, grappler_errors = _run_grappler(frozen, stage)
        except Exception as error:
            raise ConversionError(f"grappler stage {stage.name!r} failed: {first_line(error, limit=200)}") from error
        after, digest_after = op_histogram(frozen.graph_def), _graph_digest(frozen.graph_def)
        added, removed = _histogram_delta(before, after)
        records.append(StageRecord(stage.name, sum(before.values()), sum(after.values()),
                                   time.perf_counter() - start, added, removed, grappler_errors,
                                   graph_differs=digest_after != digest_before))
        before, digest_before = after, digest_after
    return frozen, records


def graph_for_inspection(saved_model_dir: str, signature_key: str,
                         stages: Sequence[Stage] = TENSORRT_PREPASS_STAGES) -> Tuple[object, FrozenSignature]:
    """The frozen, grappler-optimised graph TF-TRT would segment (for ``inspect --plan``), and its signature."""
    frozen, _ = optimize_graph(lambda: freeze_signature(saved_model_dir, signature_key), stages)
    # The plan reads shapes, and values only of small constants: stand-ins serve for the weights.
    return frozen.held.with_stand_ins(frozen.graph_def), frozen
