"""TF-TRT's segmenter: which nodes are candidates, and how candidates merge into engines.

Mirrors ``tensorflow/compiler/tf2tensorrt/segment/segment.cc`` (``SegmentGraph``: the
candidate checks in its order -- device, the exclude list of fetched nodes, implicit batch
(``FindLeadingShape``) -- then the validator; the union of candidates along data edges with
cycle avoidance; removal of constant outputs; ``minimum_segment_size`` and the
``TF_TRT_MAX_ALLOWED_ENGINES`` cap) and ``segment/union_find.cc`` (``ClusterBatchSize``).
"""

from __future__ import annotations

import collections
import os
from typing import Dict, List, Mapping, Optional, Sequence, Set, Tuple

from tftrt_toolkit.analysis.tensorrt_plan.graph import NON_COMPUTE_OP_TYPES, Node, Shape, as_dims
from tftrt_toolkit.analysis.tensorrt_plan.op_converters import CandidateContext, NotConvertible
from tftrt_toolkit.analysis.tensorrt_plan.op_rules import validate_node
from tftrt_toolkit.analysis.tensorrt_plan.op_table import OpSupportTable
from tftrt_toolkit.errors import ConfigError


def _find_leading_shape(shapes: Sequence[Tuple[int, ...]]) -> Optional[Tuple[int, ...]]:
    """segment.cc FindLeadingShape: the input shape that decides an op's batch size."""
    result = shapes[0]
    max_batch = 1 if len(result) < 1 else result[0]
    for shape in shapes[1:]:
        if len(shape) < len(result):
            continue
        if len(shape) > len(result):
            result = shape
            max_batch = 1 if len(shape) < 1 else shape[0]
            continue
        if len(result) < 1:
            continue
        if shape[0] < 0 or result[0] < 0:
            if shape[0] < 0 and result[0] >= 0:
                result = shape
            else:
                max_batch = max(max_batch, shape[0])
            continue
        if shape[0] > result[0]:
            result = shape
            max_batch = result[0]
    if len(result) > 0 and result[0] < 0:
        return result if max_batch <= 1 else None
    return result


def _batch_inputs(node: Node, input_shapes: List[Shape], broadcast_ops: Set[str]) -> List[Shape]:
    if node.op in ("Conv2DBackpropInput", "Conv3DBackpropInputV2"):
        return input_shapes[2:3]
    if node.op in broadcast_ops:
        return input_shapes
    return input_shapes[:1]


def _implicit_batch_size(node: Node, ctx: CandidateContext) -> Tuple[bool, Optional[int], str]:
    """(translatable to implicit batch, batch size, why not) as segment.cc decides it."""
    if not node.inputs:
        return True, None, ""
    shapes = [ctx.tensors[producer][port].shape if port < len(ctx.tensors[producer]) else None
              for producer, port in node.inputs]
    relevant = _batch_inputs(node, shapes, set(ctx.table.segmenter["broadcast_batch_ops"]))
    if any(shape is None for shape in relevant):
        return False, None, "dynamic_rank"
    leading = _find_leading_shape([tuple(as_dims(s)) for s in relevant])
    if leading is None or len(leading) < 2:
        return False, None, "implicit_batch"
    return True, leading[0], ""


def explicitly_on_cpu(device: str) -> bool:
    """Whether a node's device string pins it to a CPU (TF-TRT only takes nodes that can run on the GPU)."""
    lowered = device.lower()
    return "device:cpu" in lowered or "/cpu:" in lowered


def classify_node(node: Node, ctx: CandidateContext) -> Tuple[bool, str, str, Optional[int]]:
    """(supported, reason_kind, reason, batch size) in the order segment.cc applies its checks."""
    batch: Optional[int] = None
    try:
        if not ctx.ignore_devices and node.device and explicitly_on_cpu(node.device):
            raise NotConvertible("device", f"placed on {node.device}; TF-TRT only takes nodes that can run on the GPU")
        if node.name in ctx.outputs:
            raise NotConvertible("graph_output", "a graph output: TF-TRT's segmenter keeps fetched nodes out of engines")
        if ctx.implicit_batch:
            translatable, batch, why = _implicit_batch_size(node, ctx)
            if not translatable:
                if why == "dynamic_rank":
                    raise NotConvertible("dynamic_rank", "an input has unknown rank (dynamic rank); implicit batch mode needs "
                                                         "known ranks")
                raise NotConvertible("implicit_batch", "implicit batch mode needs inputs of rank >= 2 with a batch dimension; "
                                                       "this node works on scalars or vectors such as int32 shape tensors "
                                                       "(use_dynamic_shape=True would allow it)")
        validate_node(node, ctx)
    except NotConvertible as rejected:
        kind = rejected.kind
        if node.op in ("Placeholder", "PlaceholderWithDefault") and kind == "unknown_op":
            return False, "graph_input", "a graph input", None
        if kind == "unknown_op" and node.op == "NoOp":
            return False, "no_data", "a control-only node", None
        return False, kind, rejected.reason, None
    return True, "", "", batch


class _BatchSize:
    """segment/union_find.cc ClusterBatchSize: an optional batch size and max batch size."""

    __slots__ = ("batch", "max_batch")

    def __init__(self, batch: Optional[int] = None, max_batch: Optional[int] = None):
        self.batch = batch
        self.max_batch = max_batch
        if batch is not None and batch >= 0:
            self.max_batch = batch if max_batch is None else max_batch

    def copy(self) -> "_BatchSize":
        clone = _BatchSize()
        clone.batch, clone.max_batch = self.batch, self.max_batch
        return clone

    def merge_if_compatible(self, other: "_BatchSize") -> bool:
        def compatible(a, b):
            return a is None or b is None or a == b

        if not compatible(self.batch, other.batch) or not compatible(self.max_batch, other.max_batch):
            return False
        if self.batch is None:
            self.batch = other.batch
        if self.batch is not None and self.batch >= 0 and self.max_batch is None:
            self.max_batch = self.batch
        if self.max_batch is None:
            self.max_batch = other.max_batch
        return True


class _SegmentGraph:
    """segment.cc SimpleGraph: a mutable copy of the graph whose edges get contracted."""

    def __init__(self, names: Sequence[str], nodes: Mapping[str, Node]):
        self.names = list(names)
        self.index = {name: i for i, name in enumerate(self.names)}
        self.edges: List[Optional[Tuple[int, int, bool]]] = []
        self.in_edges: List[List[int]] = [[] for _ in self.names]
        self.out_edges: List[List[int]] = [[] for _ in self.names]
        for name in self.names:
            node = nodes[name]
            for producer, _ in node.inputs:
                self.add_edge(self.index[producer], self.index[name], False)
            for producer in node.control_inputs:
                self.add_edge(self.index[producer], self.index[name], True)

    def add_edge(self, src: int, dst: int, control: bool) -> int:
        edge_id = len(self.edges)
        self.edges.append((src, dst, control))
        self.out_edges[src].append(edge_id)
        self.in_edges[dst].append(edge_id)
        return edge_id

    def remove_edge(self, edge_id: int) -> None:
        src, dst, _ = self.edges[edge_id]
        self.out_edges[src].remove(edge_id)
        self.in_edges[dst].remove(edge_id)

    def in_nodes(self, node: int) -> List[int]:
        return [self.edges[e][0] for e in self.in_edges[node]]

    def can_contract(self, edge_id: int) -> bool:
        """False if another path leads from src to dst: merging them would make a cycle."""
        src, dst, _ = self.edges[edge_id]
        stack = [n for n in self.in_nodes(dst) if n != src]
        seen = set(stack)
        while stack:
            node = stack.pop()
            if node == src:
                return False
            for parent in self.in_nodes(node):
                if parent not in seen:
                    seen.add(parent)
                    stack.append(parent)
        return True

    def contract(self, edge_id: int) -> List[int]:
        src, dst, _ = self.edges[edge_id]
        for e in list(self.in_edges[dst]):
            e_src, _, control = self.edges[e]
            if e_src != src:
                self.add_edge(e_src, src, control)
        for e in list(self.out_edges[dst]):
            _, e_dst, control = self.edges[e]
            self.add_edge(src, e_dst, control)
        return list(self.in_edges[dst]) + list(self.out_edges[dst])

    def post_order(self) -> List[int]:
        """StableDFS from the graph's roots, children in name order; nodes listed when left."""
        roots = sorted((i for i in range(len(self.names)) if not self.in_edges[i]), key=lambda i: self.names[i])
        order, visited = [], [False] * len(self.names)
        # segment.cc starts at the source node, whose children are the roots in name order.
        stack = [(root, False) for root in roots]
        while stack:
            node, leaving = stack.pop()
            if leaving:
                order.append(node)
                continue
            if visited[node]:
                continue
            visited[node] = True
            stack.append((node, True))
            children = sorted((self.edges[e][1] for e in self.out_edges[node]), key=lambda i: self.names[i])
            stack.extend((child, False) for child in children if not visited[child])
        return order


def _segment(names: Sequence[str], nodes: Mapping[str, Node], candidate: Mapping[str, bool],
             batch: Mapping[str, Optional[int]]) -> List[Set[str]]:
    """Union supported nodes along data edges as SegmentGraph step 1 does; returns the raw clusters."""
    graph = _SegmentGraph(names, nodes)
    parent = list(range(len(names)))
    props = [_BatchSize(batch.get(name)) for name in names]

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for node in graph.post_order():
        if not candidate[names[node]]:
            continue
        expected = props[root(node)].copy()
        while True:
            contract: List[int] = []
            for edge_id in graph.out_edges[node]:
                _, dst, control = graph.edges[edge_id]
                if control or not candidate[names[dst]]:
                    continue
                merged = expected.copy()
                if not merged.merge_if_compatible(props[root(dst)]):
                    continue
                if graph.can_contract(edge_id):
                    contract.append(edge_id)
                    expected = merged
            if not contract:
                break
            pending = sorted(set(contract))
            while pending:
                edge_id = pending.pop(0)
                src, dst, _ = graph.edges[edge_id]
                a, b = root(src), root(dst)
                if a != b:
                    merged = props[a].copy()
                    merged.merge_if_compatible(props[b])
                    parent[b] = a
                    props[a] = merged
                for removed in graph.contract(edge_id):
                    if removed in pending:
                        pending.remove(removed)
                    graph.remove_edge(removed)
    clusters: Dict[int, Set[str]] = collections.defaultdict(set)
    for i, name in enumerate(names):
        if candidate[name]:
            clusters[root(i)].add(name)
    # sg_map in segment.cc is keyed by the root's name: engines are numbered in that order.
    return [clusters[r] for r in sorted(clusters, key=lambda r: names[r])]


def _remove_constant_outputs(segment: Set[str], nodes: Mapping[str, Node], consumers: Mapping[str, List[str]]) -> None:
    """Step 2: a Const that also feeds nodes outside cannot be a segment output, so it leaves."""
    while True:
        leaving = [name for name in sorted(segment)
                   if nodes[name].op == "Const" and any(c not in segment for c in consumers[name])]
        if not leaving:
            return
        queue = collections.deque(leaving)
        while queue:
            name = queue.popleft()
            if name not in segment:
                continue
            segment.discard(name)
            node = nodes[name]
            queue.extend(p for p in [p for p, _ in node.inputs] + node.control_inputs if p in segment)


def build_segments(names, nodes, candidate, batch, consumers, minimum_segment_size, noop_types, max_engines):
    """The segments that become engines, as (nodes, effective size), and those dropped, as (nodes, size, why)."""
    clusters = _segment(names, nodes, candidate, batch)
    kept, dropped = [], []
    for cluster in clusters:
        _remove_constant_outputs(cluster, nodes, consumers)
        effective = sum(1 for n in cluster if nodes[n].op not in noop_types)
        if effective == 0 or effective < minimum_segment_size:
            # Lone constants are not worth reporting: only regions that hold some compute.
            if any(nodes[n].op not in NON_COMPUTE_OP_TYPES for n in cluster):
                dropped.append((cluster, effective, f"{effective} node(s) < minimum_segment_size {minimum_segment_size}"))
            continue
        kept.append((cluster, effective))
    if max_engines > 0 and len(kept) > max_engines:
        order = sorted(range(len(kept)), key=lambda i: -kept[i][1])  # stable, like std::stable_sort
        keep = set(order[:max_engines])
        dropped += [(kept[i][0], kept[i][1], f"over TF_TRT_MAX_ALLOWED_ENGINES={max_engines} (only the largest are kept)")
                    for i in range(len(kept)) if i not in keep]
        kept = [kept[i] for i in range(len(kept)) if i in keep]
    return kept, dropped


def max_allowed_engines(table: OpSupportTable) -> int:
    """TF_TRT_MAX_ALLOWED_ENGINES as TF-TRT reads it (the table's default, 20, when unset)."""
    # TF-TRT reads the same variable at conversion time; honouring it keeps the plan comparable.
    raw = os.environ.get(table.segmenter["max_allowed_engines_env"], "")
    try:
        return int(raw) if raw.strip() else int(table.segmenter["max_allowed_engines_default"])
    except ValueError:
        raise ConfigError(f"{table.segmenter['max_allowed_engines_env']}={raw!r} is not an integer; unset it or "
                          "give a number") from None
