"""Graph helpers every graph rewrite here needs: one answer each, for the cpu backend, its int8
steps, its folds and the TensorRT segment plan.

A GraphDef names its edges by strings: ``"conv"`` (output 0), ``"conv:1"`` (output 1) and
``"^conv"`` (a control edge); these helpers read them the same way everywhere.
"""

from __future__ import annotations

import collections
from typing import Container, Dict, List, Optional, Sequence, Tuple


def node_name(tensor: str) -> str:
    """The producing node's name of an input string (``"^a"``, ``"a:1"`` and ``"a"`` all name ``a``)."""
    return tensor.lstrip("^").split(":")[0]


def data_inputs(node) -> List[str]:
    """The node's data inputs, as written (control edges ``^name`` left out)."""
    return [name for name in node.input if not name.startswith("^")]


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


def shapes_at_batch(graph_def, held, batch: int) -> Dict[str, Optional[Tuple[Optional[int], ...]]]:
    """{tensor name: static shape} from TF's shape inference with every unknown input dimension = ``batch``."""
    import tensorflow as tf

    light = held.with_stand_ins(graph_def) if held is not None and len(held) else graph_def
    light = type(graph_def).FromString(light.SerializeToString())
    for node in light.node:
        if node.op == "Placeholder" and "shape" in node.attr:
            for dim in node.attr["shape"].shape.dim:
                if dim.size < 0:
                    dim.size = batch
    shapes: Dict[str, Optional[Tuple[Optional[int], ...]]] = {}
    with tf.Graph().as_default() as graph:
        tf.graph_util.import_graph_def(light, name="")
    for operation in graph.get_operations():
        for output in operation.outputs:
            shape = output.shape
            shapes[output.name] = None if shape.rank is None else tuple(shape.as_list())
    return shapes


def batch_free_shape(tensor: str, at_1, at_2) -> Optional[Tuple[int, ...]]:
    """``tensor``'s shape with -1 for the one dimension that grows with the batch; None when that is not so."""
    name = tensor if ":" in tensor else f"{tensor}:0"
    one, two = at_1.get(name), at_2.get(name)
    if one is None or two is None or len(one) != len(two) or None in one or None in two:
        return None
    varying = [index for index, (a, b) in enumerate(zip(one, two)) if a != b]
    if len(varying) != 1 or two[varying[0]] != 2 * one[varying[0]]:
        return None
    return tuple(-1 if index == varying[0] else size for index, size in enumerate(one))
