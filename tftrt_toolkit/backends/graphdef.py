"""Graph helpers every graph rewrite here needs: one answer each, for the cpu backend, its int8
steps, its folds and the TensorRT segment plan.

A GraphDef names its edges by strings: ``"conv"`` (output 0), ``"conv:1"`` (output 1) and
``"^conv"`` (a control edge); these helpers read them the same way everywhere.
"""

from __future__ import annotations

import collections
from typing import Container, Dict, List, Sequence


def node_name(tensor: str) -> str:
    """The producing node's name of an input string (``"^a"``, ``"a:1"`` and ``"a"`` all name ``a``)."""
    return tensor.lstrip("^").split(":")[0]


def nodes_by_name(graph_def) -> Dict[str, object]:
    """Node name -> NodeDef of the top-level graph."""
    return {node.name: node for node in graph_def.node}


def consumers(graph_def) -> Dict[str, List[str]]:
    """Node name -> names of the nodes reading one of its outputs (once per input that reads it, control edges too)."""
    result: Dict[str, List[str]] = {}
    for node in graph_def.node:
        for tensor in node.input:
            result.setdefault(node_name(tensor), []).append(node.name)
    return result


def reader_counts(graph_def) -> Dict[str, int]:
    """Node name -> how many inputs in ``graph_def`` read one of its outputs."""
    return {name: len(readers) for name, readers in consumers(graph_def).items()}


def copy(graph_def):
    """A deep copy of ``graph_def`` (rewrites return a new graph and leave their input as it was)."""
    result = type(graph_def)()
    result.CopyFrom(graph_def)
    return result


def empty_like(graph_def):
    """A GraphDef with ``graph_def``'s versions and function library and no nodes: what each rewrite fills."""
    from tensorflow.core.framework import graph_pb2

    result = graph_pb2.GraphDef()
    result.versions.CopyFrom(graph_def.versions)
    result.library.CopyFrom(graph_def.library)
    return result


def op_histogram(graph_def) -> Dict[str, int]:
    """Op type -> count over the graph and its function library."""
    counts = collections.Counter(node.op for node in graph_def.node)
    for function in graph_def.library.function:
        counts.update(node.op for node in function.node_def)
    return dict(counts.most_common())


def without_dead_nodes(graph_def, keep: Sequence[str], held: Container[str] = ()):
    """Only the nodes ``keep`` (the outputs) reads, directly or not; without ``keep``, ``graph_def`` unchanged.

    The signature's inputs (Placeholders) stay, read or not; a held weight's Placeholder (its
    name in ``held``) goes when nothing reads it any more. For rewrites that leave the ops they
    replaced behind.
    """
    if not keep:
        return graph_def
    nodes = nodes_by_name(graph_def)
    live = set()
    stack = [name for name in keep if name in nodes]
    stack += [node.name for node in graph_def.node if node.op == "Placeholder" and node.name not in held]
    while stack:
        name = stack.pop()
        if name in live or name not in nodes:
            continue
        live.add(name)
        stack.extend(node_name(tensor) for tensor in nodes[name].input)
    pruned = empty_like(graph_def)
    pruned.node.extend(node for node in graph_def.node if node.name in live)
    return pruned
