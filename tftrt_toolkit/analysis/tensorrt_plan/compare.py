"""Set a real TF-TRT conversion beside the prediction: its engines, matched to the plan's.

Mirrors how ``tensorflow/python/compiler/tensorrt/trt_convert.py`` (``TrtGraphConverterV2.summary()``)
and ``utils.py`` (``get_trtengineop_node_op_count``) count a TRTEngineOp's nodes: the nodes
of its ``<name>_native_segment`` function.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Optional, Tuple

from tftrt_toolkit.analysis.tensorrt_plan.graph import op_histogram
from tftrt_toolkit.analysis.tensorrt_plan.plan import SegmentPlan, to_plain_json
from tftrt_toolkit.errors import ModelLoadError


@dataclasses.dataclass(frozen=True)
class ActualEngine:
    """One TRTEngineOp found in a converted graph."""

    name: str
    node_count: int  # len(function.node_def), as trt_convert's summary() counts
    op_histogram: Tuple[Tuple[str, int], ...]
    node_names: Tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class EngineMatch:
    """A real engine beside the predicted engine that shares most nodes with it."""

    actual_name: str
    actual_node_count: int
    predicted_index: Optional[int]
    predicted_node_count: Optional[int]
    shared_nodes: int


@dataclasses.dataclass(frozen=True)
class ConversionComparison:
    """Predicted vs actual TF-TRT engines for one conversion."""

    predicted_engine_count: int
    actual_engine_count: int
    predicted_node_counts: Tuple[int, ...]
    actual_node_counts: Tuple[int, ...]
    matches: Tuple[EngineMatch, ...]
    unmatched_predicted: Tuple[int, ...]
    actual_engines: Tuple[ActualEngine, ...]

    @property
    def engine_count_matches(self) -> bool:
        return self.predicted_engine_count == self.actual_engine_count

    @property
    def node_counts_match(self) -> bool:
        return sorted(self.predicted_node_counts) == sorted(self.actual_node_counts)

    def to_json(self) -> dict:
        data = to_plain_json(dataclasses.asdict(self))
        data["engine_count_matches"] = self.engine_count_matches
        data["node_counts_match"] = self.node_counts_match
        for engine in data["actual_engines"]:
            engine["op_histogram"] = dict(engine["op_histogram"])
        return data

    def render_text(self) -> str:
        agree = "as predicted" if self.engine_count_matches and self.node_counts_match else "differs from the prediction"
        lines = [
            f"TF-TRT conversion: {self.actual_engine_count} engine(s), predicted {self.predicted_engine_count} ({agree})",
            f"  {'engine':<28} {'nodes':>6} {'predicted':>10} {'shared':>7}",
        ]
        for match in self.matches:
            predicted = "-" if match.predicted_index is None else f"#{match.predicted_index}: {match.predicted_node_count}"
            lines.append(f"  {match.actual_name:<28} {match.actual_node_count:>6} {predicted:>10} {match.shared_nodes:>7}")
        for index in self.unmatched_predicted:
            lines.append(f"  {'(not created)':<28} {'-':>6} {f'#{index}: {self.predicted_node_counts[index]}':>10} {'-':>7}")
        return "\n".join(lines) + "\n"


def engines_in_converted_graph(converted_graph_def) -> Tuple[ActualEngine, ...]:
    """The TRTEngineOps of a TF-TRT converted GraphDef, counted as trt_convert's summary() counts them."""
    if not hasattr(converted_graph_def, "node"):
        raise ModelLoadError(f"expected a converted GraphDef, got {type(converted_graph_def).__name__}")
    functions = {f.signature.name: f for f in converted_graph_def.library.function}
    engines = []
    for node in sorted((n for n in converted_graph_def.node if n.op == "TRTEngineOp"), key=lambda n: n.name):
        # utils.get_trtengineop_node_op_count looks the segment up by this name.
        function = functions.get(f"{node.name}_native_segment")
        if function is None and "segment_func" in node.attr:
            function = functions.get(node.attr["segment_func"].func.name)
        members = list(function.node_def) if function is not None else []
        engines.append(ActualEngine(
            name=node.name,
            node_count=len(members),
            op_histogram=op_histogram(n.op for n in members),
            node_names=tuple(sorted(n.name for n in members)),
        ))
    return tuple(engines)


def compare_with_conversion(plan: SegmentPlan, converted_graph_def) -> ConversionComparison:
    """Set the engines a real TF-TRT conversion produced beside the plan's predicted engines."""
    actual = engines_in_converted_graph(converted_graph_def)
    predicted_sets = [set(e.node_names) for e in plan.engines]
    pairs = []
    for engine in actual:
        names = set(engine.node_names)
        for index, predicted in enumerate(predicted_sets):
            shared = len(names & predicted)
            if shared:
                pairs.append((shared, engine.name, index))
    pairs.sort(key=lambda p: (-p[0], p[1], p[2]))
    matched_actual: Dict[str, Tuple[int, int]] = {}
    used = set()
    for shared, name, index in pairs:
        if name in matched_actual or index in used:
            continue
        matched_actual[name] = (index, shared)
        used.add(index)
    matches = []
    for engine in actual:
        index, shared = matched_actual.get(engine.name, (None, 0))
        matches.append(EngineMatch(engine.name, engine.node_count, index,
                                   None if index is None else plan.engines[index].node_count, shared))
    return ConversionComparison(
        predicted_engine_count=len(plan.engines),
        actual_engine_count=len(actual),
        predicted_node_counts=tuple(e.node_count for e in plan.engines),
        actual_node_counts=tuple(e.node_count for e in actual),
        matches=tuple(matches),
        unmatched_predicted=tuple(i for i in range(len(plan.engines)) if i not in used),
        actual_engines=actual,
    )
