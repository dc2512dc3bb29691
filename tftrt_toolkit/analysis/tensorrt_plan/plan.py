"""The plan: TF-TRT's predicted engines for one graph, with a verdict, ranked breakers and hints.

``plan_tensorrt_segments`` runs the steps of TF-TRT's ``ConvertGraph``
(``tensorflow/compiler/tf2tensorrt/convert/convert_graph.cc``) up to building engines --
read the graph (``graph.py``), mark candidates (``op_rules.py``), segment
(``segmenter.py``) -- and adds what TF-TRT does not: the unsupported ops ranked by what
they cost, a verdict a person can act on, hints, and a text rendering.
``plan_for_model`` first prepares a LoadedModel's graph the way ``trt_convert.py`` does.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Dict, List, Mapping, Optional, Sequence, Set, Tuple

from tftrt_toolkit.analysis.tensorrt_plan.graph import (
    CALL_OP_TYPES,
    NON_COMPUTE_OP_TYPES,
    REMAPPER_FUSED_OP_TYPES,
    UNFROZEN_OP_TYPES,
    Node,
    graph_for_model,
    infer_tensors,
    op_histogram,
    read_nodes,
)
from tftrt_toolkit.analysis.tensorrt_plan.op_converters import CandidateContext
from tftrt_toolkit.analysis.tensorrt_plan.op_table import PRECISIONS, load_op_table
from tftrt_toolkit.analysis.tensorrt_plan.segmenter import (
    build_segments,
    classify_node,
    explicitly_on_cpu,
    max_allowed_engines,
)
from tftrt_toolkit.backends.graphdef import node_name
from tftrt_toolkit.data.shapes import format_shape
from tftrt_toolkit.errors import ConfigError

# Reason kinds that are not breakers: the graph's own inputs/outputs and control-only nodes.
NOT_A_BREAKER = frozenset({"graph_input", "graph_output", "no_data"})
_MAX_COUNTERFACTUALS = 8


@dataclasses.dataclass(frozen=True)
class NodeVerdict:
    """Whether one node can go into a TensorRT engine, and why not."""

    name: str
    op_type: str
    supported: bool
    reason: str  # "" when supported
    reason_kind: str  # "" when supported; e.g. unknown_op, dtype, implicit_batch, precision
    engine: Optional[int] = None  # index into SegmentPlan.engines when inside a predicted engine


@dataclasses.dataclass(frozen=True)
class PredictedEngine:
    """One predicted TRTEngineOp: the nodes it replaces and how big it is."""

    index: int
    node_names: Tuple[str, ...]
    node_count: int  # as trt_convert's summary() counts: segment nodes + constants copied in
    effective_node_count: int  # as minimum_segment_size counts: without Identity/Snapshot/StopGradient
    compute_node_count: int
    op_histogram: Tuple[Tuple[str, int], ...]


@dataclasses.dataclass(frozen=True)
class DroppedSegment:
    """A region of supported nodes that will not become an engine, and why."""

    node_names: Tuple[str, ...]
    effective_node_count: int
    reason: str


@dataclasses.dataclass(frozen=True)
class Breaker:
    """An unsupported op type that splits the graph or keeps compute out of TensorRT."""

    op_type: str
    node_count: int
    reason: str  # the most common reason for its nodes
    reason_kind: str
    boundaries: int  # (breaker node, adjacent engine) pairs: how often it cuts an engine off
    compute_nodes_gained_if_supported: int
    engines_if_supported: int
    example_nodes: Tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class SegmentPlan:
    """TF-TRT's predicted conversion of one graph: engines, unsupported ops, a verdict and hints."""

    tensorflow_version: str
    precision: str
    minimum_segment_size: int
    use_dynamic_shape: bool
    input_shapes: Optional[Tuple[Tuple[str, Tuple[Optional[int], ...]], ...]]
    graph_inputs: Tuple[Tuple[str, Optional[Tuple[Optional[int], ...]]], ...]
    op_histogram: Tuple[Tuple[str, int], ...]
    nodes: Tuple[NodeVerdict, ...]
    engines: Tuple[PredictedEngine, ...]
    dropped_segments: Tuple[DroppedSegment, ...]
    breakers: Tuple[Breaker, ...]
    compute_node_count: int
    compute_nodes_in_engines: int
    verdict: str
    hints: Tuple[str, ...]

    @property
    def coverage(self) -> float:
        """Share of compute nodes predicted to run inside TensorRT engines (0..1)."""
        return self.compute_nodes_in_engines / self.compute_node_count if self.compute_node_count else 0.0

    @property
    def largest_engine_share(self) -> float:
        """Share of all compute nodes inside the largest predicted engine (0..1)."""
        if not self.engines or not self.compute_node_count:
            return 0.0
        return max(e.compute_node_count for e in self.engines) / self.compute_node_count

    def node(self, name: str) -> NodeVerdict:
        for verdict in self.nodes:
            if verdict.name == name:
                return verdict
        raise KeyError(name)

    def to_json(self) -> dict:
        data = to_plain_json(dataclasses.asdict(self))
        data["op_histogram"] = dict(self.op_histogram)
        data["coverage"] = round(self.coverage, 4)
        data["largest_engine_share"] = round(self.largest_engine_share, 4)
        for engine in data["engines"]:
            engine["op_histogram"] = dict(engine["op_histogram"])
        if self.input_shapes is not None:
            data["input_shapes"] = {name: list(shape) for name, shape in self.input_shapes}
        data["graph_inputs"] = {name: (None if shape is None else list(shape)) for name, shape in self.graph_inputs}
        return data

    def render_text(self, max_nodes_listed: int = 0) -> str:
        """A table for people: verdict, engines, breakers, op histogram and hints."""
        mode = "explicit batch (use_dynamic_shape=True)" if self.use_dynamic_shape else "implicit batch"
        supported_ops = collections.Counter(v.op_type for v in self.nodes if v.supported)
        lines = [
            f"TF-TRT segment plan (TensorFlow {self.tensorflow_version} rules; precision {self.precision}; "
            f"minimum_segment_size {self.minimum_segment_size}; {mode})",
            f"Verdict: {self.verdict}",
            "",
            "Engines:",
        ]
        if self.engines:
            lines.append(f"  {'#':>3}  {'nodes':>5}  {'compute':>7}  ops")
            for engine in self.engines:
                ops = ", ".join(f"{op} x{n}" for op, n in engine.op_histogram[:6])
                more = " ..." if len(engine.op_histogram) > 6 else ""
                lines.append(f"  {engine.index:>3}  {engine.node_count:>5}  {engine.compute_node_count:>7}  {ops}{more}")
        else:
            lines.append("  (none)")
        if self.dropped_segments:
            lines.append(f"  + {len(self.dropped_segments)} region(s) of supported nodes too small or over the engine cap "
                         f"(largest {max(d.effective_node_count for d in self.dropped_segments)} nodes)")
        lines += ["", "Breakers (unsupported ops, most harmful first):"]
        if self.breakers:
            lines.append(f"  {'op type':<28} {'nodes':>5} {'cuts':>5} {'gain':>5}  reason")
            for breaker in self.breakers:
                lines.append(f"  {breaker.op_type:<28} {breaker.node_count:>5} {breaker.boundaries:>5} "
                             f"{breaker.compute_nodes_gained_if_supported:>5}  {breaker.reason}")
            lines.append("  (cuts: engine boundaries next to it; gain: compute nodes TensorRT would take if it were supported)")
        else:
            lines.append("  (none)")
        lines += ["", "Op types:", f"  {'op type':<28} {'count':>6} {'in TF-TRT':>9}"]
        for op_type, count in self.op_histogram:
            lines.append(f"  {op_type:<28} {count:>6} {supported_ops.get(op_type, 0):>9}")
        if max_nodes_listed:
            lines += ["", "Unsupported nodes:"]
            unsupported = [v for v in self.nodes if not v.supported and v.reason_kind not in NOT_A_BREAKER]
            for verdict in unsupported[:max_nodes_listed]:
                lines.append(f"  {verdict.name} ({verdict.op_type}): {verdict.reason}")
        if self.hints:
            lines += ["", "Hints:"] + [f"  - {hint}" for hint in self.hints]
        return "\n".join(lines) + "\n"


def to_plain_json(value):
    """Tuples -> lists recursively so the result is what json.dumps writes back."""
    if isinstance(value, dict):
        return {k: to_plain_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain_json(v) for v in value]
    return value


def _normalize_precision(precision) -> str:
    value = getattr(precision, "value", precision)
    if not isinstance(value, str) or value.lower() not in PRECISIONS:
        raise ConfigError(f"precision={precision!r} is not a TF-TRT precision; use one of {', '.join(PRECISIONS)}")
    return value.lower()


def _normalize_input_shapes(input_shapes, nodes, tensors) -> Optional[Tuple[Tuple[str, Tuple[Optional[int], ...]], ...]]:
    if input_shapes is None:
        return None
    if not isinstance(input_shapes, Mapping):
        raise ConfigError("input_shapes must map input names to shapes, e.g. {'images': (8, 224, 224, 3)}")
    placeholders = sorted(n.name for n in nodes.values() if n.op == "Placeholder")
    normalized = []
    for key, shape in input_shapes.items():
        name = key.split(":")[0]
        if name not in placeholders:
            raise ConfigError(f"input_shapes names {key!r}, which is not an input of the graph; its inputs are: "
                              f"{', '.join(placeholders) or '(none)'}")
        try:
            dims = tuple(None if d is None or d == -1 else int(d) for d in shape)
        except (TypeError, ValueError):
            raise ConfigError(f"input_shapes[{key!r}]={shape!r} is not a sequence of ints (or None)") from None
        declared = tensors[name][0].shape
        if declared is not None:
            if len(declared) != len(dims):
                raise ConfigError(f"input_shapes[{key!r}] has rank {len(dims)} but the graph's input has rank "
                                  f"{len(declared)} {list(declared)}")
            for i, (want, have) in enumerate(zip(dims, declared)):
                if have is not None and want is not None and want != have:
                    raise ConfigError(f"input_shapes[{key!r}] dim {i} is {want} but the graph fixes it to {have}")
        normalized.append((name, dims))
    return tuple(sorted(normalized))


def _default_outputs(nodes: Mapping[str, Node], consumers: Mapping[str, List[str]]) -> Set[str]:
    """Fetched nodes: those nothing reads from (what trt_convert passes as the grappler fetch)."""
    controlled = {p for n in nodes.values() for p in n.control_inputs}
    return {name for name, node in nodes.items()
            if not consumers[name] and name not in controlled and node.op not in ("NoOp", "Const")}


def plan_tensorrt_segments(graph_def, *, precision="fp32", minimum_segment_size: int = 3,
                           use_dynamic_shape: bool = False,
                           input_shapes: Optional[Mapping[str, Sequence[Optional[int]]]] = None,
                           output_names: Optional[Sequence[str]] = None) -> SegmentPlan:
    """Predict which parts of a frozen graph TF-TRT (TF 2.17) will turn into TensorRT engines.

    Args:
      graph_def: the frozen, grappler-optimized GraphDef TF-TRT would see.
      precision: "fp32", "fp16" or "int8" (or a Precision enum with those values).
      minimum_segment_size: TF-TRT's minimum_segment_size (>= 1).
      use_dynamic_shape: TrtGraphConverterV2's use_dynamic_shape (False: implicit batch mode).
      input_shapes: the shapes engines will be built for (converter.build), by input name;
        they only inform the run-time build hint: TF-TRT segments with the graph's own shapes.
      output_names: fetched nodes; default: the nodes nothing reads from.

    Returns a SegmentPlan. Raises ConfigError for bad options, ModelLoadError for a graph
    that is not a readable GraphDef.
    """
    precision = _normalize_precision(precision)
    if isinstance(minimum_segment_size, bool) or not isinstance(minimum_segment_size, int) or minimum_segment_size < 1:
        raise ConfigError(f"minimum_segment_size={minimum_segment_size!r} must be an integer >= 1 "
                          "(TF-TRT's default is 3)")
    table = load_op_table()
    nodes = read_nodes(graph_def)
    tensors = infer_tensors(graph_def, nodes)
    shapes = _normalize_input_shapes(input_shapes, nodes, tensors)
    consumers: Dict[str, List[str]] = {name: [] for name in nodes}
    for node in nodes.values():
        for producer, _ in node.inputs:
            consumers[producer].append(node.name)
    if output_names is None:
        outputs = _default_outputs(nodes, consumers)
    else:
        outputs = {node_name(name) for name in output_names}
        unknown = sorted(outputs - set(nodes))
        if unknown:
            raise ConfigError(f"output_names {unknown} are not nodes of the graph")
    devices = {n.device for n in nodes.values()}
    # A graph frozen on a CPU-only machine carries CPU placements everywhere; that says
    # nothing about the GPU machine, so only a mix of devices is taken as the author's intent.
    ignore_devices = not any(d and not explicitly_on_cpu(d) for d in devices)
    names = list(nodes)
    noop_types = set(table.segmenter["noop_op_types_not_counted"])
    max_engines = max_allowed_engines(table)

    def predict(implicit_batch: bool):
        ctx = CandidateContext(table, nodes, tensors, precision, implicit_batch, ignore_devices, outputs)
        verdicts: Dict[str, Tuple[bool, str, str]] = {}
        batch: Dict[str, Optional[int]] = {}
        for name, node in nodes.items():
            supported, kind, reason, batch_size = classify_node(node, ctx)
            verdicts[name] = (supported, kind, reason)
            batch[name] = batch_size
        candidate = {name: verdicts[name][0] for name in names}
        kept, dropped = build_segments(names, nodes, candidate, batch, consumers, minimum_segment_size,
                                       noop_types, max_engines)
        return verdicts, batch, candidate, kept, dropped

    verdicts, batch, candidate, kept, dropped = predict(implicit_batch=not use_dynamic_shape)
    engines = []
    engine_of: Dict[str, int] = {}
    for index, (cluster, effective) in enumerate(kept):
        outside_constants = {p for n in cluster for p, _ in nodes[n].inputs if p not in cluster and nodes[p].op == "Const"}
        engines.append(PredictedEngine(
            index=index,
            node_names=tuple(sorted(cluster)),
            node_count=len(cluster) + len(outside_constants),
            effective_node_count=effective,
            compute_node_count=sum(1 for n in cluster if nodes[n].op not in NON_COMPUTE_OP_TYPES),
            op_histogram=op_histogram(nodes[n].op for n in cluster),
        ))
        for n in cluster:
            engine_of[n] = index
    compute_nodes = [n for n in names if nodes[n].op not in NON_COMPUTE_OP_TYPES]
    covered = _compute_nodes_in(kept, nodes)

    breakers = _rank_breakers(names, nodes, verdicts, engine_of, consumers, candidate, batch, minimum_segment_size,
                              noop_types, max_engines, covered)
    graph_inputs = tuple(sorted((n.name, tensors[n.name][0].shape) for n in nodes.values() if n.op == "Placeholder"))
    plan_engines = tuple(engines)
    verdict = _verdict(plan_engines, len(compute_nodes), covered, breakers, minimum_segment_size, dropped, max_engines)
    hints = _hints(nodes, graph_inputs, shapes, precision, use_dynamic_shape, plan_engines, dropped, max_engines)
    coverage = covered / len(compute_nodes) if compute_nodes else 0.0
    if not use_dynamic_shape and compute_nodes and (len(kept) != 1 or coverage < 0.9):
        # The most common fix for implicit-batch breakers is explicit batch: say what it would give.
        _, _, _, alternative, _ = predict(implicit_batch=False)
        alternative_covered = _compute_nodes_in(alternative, nodes)
        hints += (f"With use_dynamic_shape=True (explicit batch, needs optimization profiles from converter.build()) "
                  f"the plan is {len(alternative)} engine(s) covering {alternative_covered / len(compute_nodes):.0%} "
                  "of compute nodes.",)
    return SegmentPlan(
        tensorflow_version=table.tensorflow_version,
        precision=precision,
        minimum_segment_size=minimum_segment_size,
        use_dynamic_shape=use_dynamic_shape,
        input_shapes=shapes,
        graph_inputs=graph_inputs,
        op_histogram=op_histogram(n.op for n in nodes.values()),
        nodes=tuple(NodeVerdict(name=name, op_type=nodes[name].op, supported=verdicts[name][0],
                                reason=verdicts[name][2], reason_kind=verdicts[name][1], engine=engine_of.get(name))
                    for name in names),
        engines=plan_engines,
        dropped_segments=tuple(DroppedSegment(tuple(sorted(c)), e, why) for c, e, why in dropped),
        breakers=breakers,
        compute_node_count=len(compute_nodes),
        compute_nodes_in_engines=covered,
        verdict=verdict,
        hints=hints,
    )


def _compute_nodes_in(segments, nodes: Mapping[str, Node]) -> int:
    """How many compute nodes the kept segments ((nodes, effective size) pairs) hold."""
    return sum(1 for cluster, _ in segments for n in cluster if nodes[n].op not in NON_COMPUTE_OP_TYPES)


def _rank_breakers(names, nodes, verdicts, engine_of, consumers, candidate, batch, minimum_segment_size,
                   noop_types, max_engines, covered) -> Tuple[Breaker, ...]:
    by_type: Dict[str, List[str]] = collections.defaultdict(list)
    for name in names:
        supported, kind, _ = verdicts[name]
        if not supported and kind not in NOT_A_BREAKER:
            by_type[nodes[name].op].append(name)
    if not by_type:
        return ()
    boundaries: Dict[str, int] = {}
    for op_type, members in by_type.items():
        count = 0
        for name in members:
            neighbours = [p for p, _ in nodes[name].inputs] + consumers[name]
            count += len({engine_of[n] for n in neighbours if n in engine_of})
        boundaries[op_type] = count
    # Counterfactual: segment again as if this op type were supported, to measure what it costs.
    ordered = sorted(by_type, key=lambda t: (-boundaries[t], -len(by_type[t]), t))
    gains: Dict[str, Tuple[int, int]] = {}
    for op_type in ordered[:_MAX_COUNTERFACTUALS]:
        what_if = dict(candidate)
        for name in by_type[op_type]:
            what_if[name] = True
        kept, _ = build_segments(names, nodes, what_if, batch, consumers, minimum_segment_size, noop_types, max_engines)
        now_covered = _compute_nodes_in(kept, nodes)
        gains[op_type] = (max(now_covered - covered, 0), len(kept))
    breakers = []
    for op_type, members in by_type.items():
        reasons = collections.Counter((verdicts[n][1], verdicts[n][2]) for n in members)
        (kind, reason), _ = reasons.most_common(1)[0]
        gain, engines_if = gains.get(op_type, (0, -1))
        breakers.append(Breaker(op_type, len(members), reason, kind, boundaries[op_type], gain, engines_if,
                                tuple(members[:3])))
    breakers.sort(key=lambda b: (-b.compute_nodes_gained_if_supported, -b.boundaries, -b.node_count, b.op_type))
    return tuple(breakers)


def _verdict(engines, compute_total, covered, breakers, minimum_segment_size, dropped, max_engines) -> str:
    harmful = [b for b in breakers if b.compute_nodes_gained_if_supported > 0 or b.boundaries > 0] or list(breakers)
    named = ", ".join(b.op_type for b in harmful[:3])
    breakers_text = f"; the breakers are {named}" if named else ""
    if not engines:
        return (f"No TensorRT engine: no region of >= {minimum_segment_size} supported nodes{breakers_text}. "
                "TF-TRT would leave the whole graph in TensorFlow.")
    coverage = covered / compute_total if compute_total else 0.0
    largest = max(e.compute_node_count for e in engines)
    share = largest / compute_total if compute_total else 0.0
    if len(engines) == 1:
        if coverage >= 0.9:
            return f"1 engine covering {coverage:.0%} of compute nodes: expect the full TF-TRT speed-up."
        return f"1 engine covering {coverage:.0%} of compute nodes; the rest stays in TensorFlow{breakers_text}."
    if share >= 0.75:
        return (f"{len(engines)} engines, one dominant ({largest} compute nodes, {share:.0%} of compute); "
                f"{coverage:.0%} of compute nodes in TensorRT{breakers_text}.")
    # Many small engines: each boundary is a TensorFlow <-> TensorRT hand-off and no fusion across it.
    return (f"{len(engines)} engines covering {coverage:.0%} of compute nodes, largest {largest} compute nodes "
            f"({share:.0%}): expect little speed-up{breakers_text}.")


def _hints(nodes, graph_inputs, shapes, precision, use_dynamic_shape, engines, dropped, max_engines) -> Tuple[str, ...]:
    hints: List[str] = []
    dynamic = [(name, shape) for name, shape in graph_inputs if shape is None or any(d is None for d in shape)]
    if engines:
        if dynamic and shapes is None:
            listed = ", ".join(f"{name} {format_shape(shape)}" for name, shape in dynamic)
            profile = (" and, with use_dynamic_shape=True, the optimization profiles come from those build inputs"
                       if use_dynamic_shape else "")
            hints.append(
                f"Engines will be built at run time: inputs have dynamic dims ({listed}) and no build shapes were given. "
                "The first request (and each new batch size beyond maximum_cached_engines) waits for a TensorRT build, "
                f"seconds to minutes. Call converter.build(input_fn) with your serving shapes before save(){profile}; "
                "pass input_shapes=... to plan for them.")
        elif shapes is not None:
            listed = ", ".join(f"{name} {format_shape(shape)}" for name, shape in shapes)
            unknown = [name for name, shape in shapes if any(d is None for d in shape)]
            if unknown:
                hints.append(f"input_shapes still leave dims unknown for {', '.join(unknown)}: engines for them are "
                             "built at run time.")
            else:
                hints.append(f"Build the engines ahead with converter.build() for {listed}, then save(); other shapes "
                             "still trigger a build at run time.")
        elif not dynamic:
            hints.append("Input shapes are static: converter.build() before save() avoids building engines on the "
                         "first request.")
    if precision == "int8":
        hints.append("int8 needs calibration data (calibration_input_fn) unless the graph has quantization ops; "
                     "without either TF-TRT builds fp16 engines.")
    ops = {n.op for n in nodes.values()}
    if ops & REMAPPER_FUSED_OP_TYPES:
        hints.append("The graph has remapper-fused ops (" + ", ".join(sorted(ops & REMAPPER_FUSED_OP_TYPES)) +
                     "); TF-TRT runs grappler without remapping, so plan the graph optimized without it.")
    if ops & UNFROZEN_OP_TYPES:
        hints.append("The graph still reads variables; TF-TRT freezes them first: plan the frozen graph.")
    if ops & CALL_OP_TYPES:
        hints.append("The graph calls functions (PartitionedCall); TF-TRT plans the inlined graph: inline them first.")
    over_cap = [d for d in dropped if "MAX_ALLOWED" in d[2]]
    if over_cap:
        hints.append(f"{len(over_cap)} more segment(s) exceed TF_TRT_MAX_ALLOWED_ENGINES={max_engines} and stay in "
                     "TensorFlow.")
    return tuple(hints)


def plan_for_model(model, *, precision="fp32", minimum_segment_size: int = 3, use_dynamic_shape: bool = False,
                   build_shapes=None) -> SegmentPlan:
    """The plan for a LoadedModel: freeze and clean its graph the way TF-TRT does, then predict.

    ``build_shapes`` (e.g. "1,8" or ((1, 224, 224, 3),)) feeds only the run-time build hint,
    taking the largest shape given for each input.
    """
    graph_def, input_shapes, output_names = graph_for_model(model, build_shapes)
    return plan_tensorrt_segments(
        graph_def, precision=precision, minimum_segment_size=minimum_segment_size,
        use_dynamic_shape=use_dynamic_shape, input_shapes=input_shapes, output_names=output_names)
