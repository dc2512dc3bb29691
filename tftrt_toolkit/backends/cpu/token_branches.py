"""A sequence model's per-token work split into independent branches along the token axis.

At batch 1 a transformer's ops are small ([128, 256] matmuls): TF's oneDNN ops gain nothing
from a second intra-op thread (each op hands its work to the pool and waits), while OpenVINO's
spinning threads do (issue 25: ours 6.0 ms at one thread and at two, OpenVINO 3.9 → 2.6 ms).
Work on separate tokens is independent up to attention, so this rewrite gives each of ``count``
branches its slice of the tokens: embedding, projections, LayerNorm, the feed-forward layers
and the residual adds run per branch, and TF's inter-op scheduler runs the branches on
separate cores, each op on one thread, without a hand-off per op. Attention joins them where
it must: every branch's queries read the keys and values of all tokens, so K and V are
concatenated (one ConcatV2 each per layer), and a reduction over the tokens (mean pooling)
reads the joined tensor. The answers are the same sums in the same order, per token.

The rewrite follows each split tensor through the graph by rules it knows (elementwise ops
with broadcast partners, Reshape, MatMul, BiasAdd, GatherV2, LayerNorm, Softmax, Einsum);
any other op reads the joined tensor. Where a tensor's token axis cannot be told (a Reshape
that mixes it with another axis, rows of a flattened [B·T, C] tensor that something other
than a row-wise op reads), nothing is rewritten.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from tftrt_toolkit.backends.graphdef import (data_inputs, empty_like, node_name, nodes_by_name, shapes_at_batch,
                                            without_dead_nodes)

# Ops that act on each element (or each row, for BiasAdd on its last axis): per branch, with
# partners that broadcast along the token axis shared and partners that span it split.
ELEMENTWISE_OPS = frozenset({
    "Cast", "Identity", "Relu", "Relu6", "Erf", "Tanh", "Sigmoid", "Neg", "Rsqrt", "Sqrt", "Square", "Exp",
    "Add", "AddV2", "Sub", "Mul", "RealDiv", "SquaredDifference", "Maximum", "Minimum", "BiasAdd",
    "Less", "LessEqual", "Greater", "GreaterEqual", "Equal", "SelectV2",
})
# Ops that normalise the last axis: per branch while the token axis is another one.
LAST_AXIS_OPS = frozenset({"Softmax", "_MklLayerNorm"})

# A split tensor's state: ("axis", k) — the token axis is axis k; ("rows",) — a [B·T, C] tensor
# whose rows are (batch, token) pairs: row-wise ops may read it, nothing may join it.
AXIS, ROWS = "axis", "rows"


class _CannotSplit(Exception):
    """The graph holds something the rules cannot follow: it is left as it was."""


def _tensor(name: str) -> str:
    return name if ":" in name else f"{name}:0"


class _Rewriter:
    def __init__(self, graph_def, count: int, tokens: int, shapes_1, shapes_2):
        self.nodes = nodes_by_name(graph_def)
        self.count = count
        self.tokens = tokens  # T, the sequence length the branches share
        self.shapes_1, self.shapes_2 = shapes_1, shapes_2
        self.out = empty_like(graph_def)
        self.split: Dict[str, Tuple[tuple, List[str]]] = {}  # full tensor -> (state, branch tensors)
        self.joined: Dict[str, str] = {}
        self.split_nodes: set = set()  # Split nodes made for full tensors

    # -- helpers ---------------------------------------------------------------------------
    def shape(self, tensor: str):
        return self.shapes_1.get(_tensor(tensor)), self.shapes_2.get(_tensor(tensor))

    def const(self, name: str, value: np.ndarray, device: str) -> str:
        import tensorflow as tf

        node = self.out.node.add()
        node.name, node.op, node.device = name, "Const", device
        node.attr["dtype"].type = tf.as_dtype(value.dtype).as_datatype_enum
        node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))
        return name

    def dtype_of(self, tensor: str):
        node = self.nodes[node_name(tensor)]
        for key in ("T", "DstT", "Tparams", "dtype"):
            if key in node.attr:
                return node.attr[key]
        raise _CannotSplit(f"no dtype for {tensor}")

    def split_full(self, tensor: str, axis: int, device: str) -> List[str]:
        """Split a full tensor along ``axis`` into the branches' slices."""
        base = node_name(tensor) + ("" if tensor.endswith(":0") or ":" not in tensor else "_" + tensor.split(":")[1])
        name = f"{base}/token_split_{axis}"
        if name not in self.split_nodes:
            self.split_nodes.add(name)
            axis_name = self.const(f"{name}/axis", np.array(axis, np.int32), device)
            node = self.out.node.add()
            node.name, node.op, node.device = name, "Split", device
            node.input.extend([axis_name, tensor])
            node.attr["T"].CopyFrom(self.dtype_of(tensor))
            node.attr["num_split"].i = self.count
        return [f"{name}:{index}" for index in range(self.count)]

    def join(self, tensor: str, device: str) -> str:
        """The full tensor for a split one: its branches concatenated along the token axis."""
        if tensor in self.joined:
            return self.joined[tensor]
        state, branches = self.split[tensor]
        if state[0] != AXIS:
            raise _CannotSplit(f"{tensor}'s rows (batch × token) cannot be joined in order")
        name = f"{node_name(tensor)}/tokens_joined"
        axis_name = self.const(f"{name}/axis", np.array(state[1], np.int32), device)
        node = self.out.node.add()
        node.name, node.op, node.device = name, "ConcatV2", device
        node.input.extend(branches + [axis_name])
        node.attr["T"].CopyFrom(self.dtype_of(tensor))
        node.attr["N"].i = self.count
        node.attr["Tidx"].type = 3  # DT_INT32
        self.joined[tensor] = name
        return name

    def controls(self, node) -> List[str]:
        """``node``'s control edges, an edge from a node now in branches made one from each branch."""
        edges = []
        for name in (i for i in node.input if i.startswith("^")):
            branched = self.split.get(f"{name[1:]}:0")
            edges += [f"^{node_name(branch)}" for branch in branched[1]] if branched else [name]
        return edges

    def copy_with_inputs(self, node, inputs: Sequence[str], name: str):
        new = self.out.node.add()
        new.CopyFrom(node)
        new.name = name
        del new.input[:]
        new.input.extend(list(inputs) + self.controls(node))
        return new

    def emit_branches(self, node, per_branch_inputs: List[List[str]], state: tuple) -> None:
        names = [self.copy_with_inputs(node, inputs, f"{node.name}/token_branch_{index}").name
                 for index, inputs in enumerate(per_branch_inputs)]
        self.split[f"{node.name}:0"] = (state, [f"{name}:0" for name in names])

    # -- the rules -------------------------------------------------------------------------
    def partner_slices(self, tensor: str, state: tuple, rank: int, device: str) -> Optional[List[str]]:
        """A full elementwise partner of a split tensor: None when it broadcasts along the token axis, else its slices."""
        one, two = self.shape(tensor)
        if one is None or two is None:
            raise _CannotSplit(f"{tensor}'s shape is unknown")
        if state[0] == ROWS:
            if len(one) < 2 or one[-2] == 1 == two[-2]:
                return None
            raise _CannotSplit(f"{tensor} spans the rows of a flattened tensor")
        aligned = state[1] - (rank - len(one))
        if aligned < 0 or (one[aligned] == 1 and two[aligned] == 1):
            return None
        if one[aligned] == self.tokens == two[aligned]:
            return self.split_full(tensor, aligned, device)
        raise _CannotSplit(f"{tensor} neither broadcasts nor spans the token axis")

    def elementwise(self, node, inputs: List[str]) -> None:
        if node.op == "BiasAdd" and node.attr["data_format"].s.startswith(b"NC"):
            raise _CannotSplit(f"{node.name} adds its bias along axis 1")
        split_inputs = [t for t in inputs if _tensor(t) in self.split]
        states = {self.split[_tensor(t)][0] for t in split_inputs}
        if any(self.shape(t)[0] is None for t in split_inputs):
            raise _CannotSplit(f"{node.name} reads a tensor of unknown rank")
        ranks = {len(self.shape(t)[0]) for t in split_inputs}
        if len(states) != 1 or len(ranks) != 1:
            raise _CannotSplit(f"{node.name} mixes token layouts")
        state, rank = states.pop(), ranks.pop()
        per_input = []
        for tensor in inputs:
            if _tensor(tensor) in self.split:
                per_input.append(self.split[_tensor(tensor)][1])
            else:
                slices = self.partner_slices(tensor, state, rank, node.device)
                per_input.append(slices if slices is not None else [tensor] * self.count)
        self.emit_branches(node, [list(column) for column in zip(*per_input)], state)

    def reshape(self, node, inputs: List[str]) -> None:
        source, shape_tensor = inputs
        shape_node = self.nodes.get(node_name(shape_tensor))
        if _tensor(shape_tensor) in self.split or shape_node is None or shape_node.op != "Const":
            raise _CannotSplit(f"{node.name}'s shape is not a constant")
        from tensorflow.python.framework import tensor_util

        target = tensor_util.MakeNdarray(shape_node.attr["value"].tensor).astype(np.int64).ravel()
        state, branches = self.split[_tensor(source)]
        in_1, in_2 = self.shape(source)
        out_1, out_2 = self.shape(f"{node.name}:0")
        if None in (in_1, in_2, out_1, out_2):
            raise _CannotSplit(f"{node.name}'s shapes are unknown")
        lead_in = (lambda s: int(np.prod(s[:state[1]]))) if state[0] == AXIS else None
        new_state, new_target = None, target
        if state[0] == AXIS:
            for k in range(len(out_1)):
                if (out_1[k] == self.tokens == out_2[k] and int(np.prod(out_1[:k])) == lead_in(in_1)
                        and int(np.prod(out_2[:k])) == lead_in(in_2)):
                    new_state = (AXIS, k)
                    break
            k = state[1]
            if new_state is None and len(out_1) == 2 and all(
                    list(out) == [int(np.prod(full[:k + 1])), int(np.prod(full[k + 1:]))]
                    for out, full in ((out_1, in_1), (out_2, in_2))):
                new_state = (ROWS,)  # [B, T, ...] -> [B·T, prod(...)]
        elif len(out_1) >= 2:
            for k in range(len(out_1)):
                if (out_1[k] == self.tokens == out_2[k] and int(np.prod(out_1[k + 1:])) == in_1[-1]
                        and all(int(np.prod(out[:k + 1])) == rows[0] for out, rows in ((out_1, in_1), (out_2, in_2)))):
                    new_state = (AXIS, k)  # [B·T, C] -> [B, T, ...]
                    break
        if new_state is None:
            raise _CannotSplit(f"{node.name} moves the token axis")
        if new_state[0] == AXIS:
            if target.size != len(out_1) or target[new_state[1]] != self.tokens:
                raise _CannotSplit(f"{node.name}'s shape does not name the token count")
            new_target = target.copy()
            new_target[new_state[1]] = self.tokens // self.count
        elif (target == self.tokens).any() and -1 not in target:
            raise _CannotSplit(f"{node.name}'s flattened shape names the token count")
        shape_name = self.const(f"{node.name}/token_branch_shape", new_target.astype(
            np.int64 if shape_node.attr["dtype"].type == 9 else np.int32), node.device)
        self.emit_branches(node, [[branch, shape_name] for branch in branches], new_state)

    def matmul(self, node, inputs: List[str]) -> None:
        a, b = inputs
        if _tensor(b) in self.split or node.attr["transpose_a"].b:
            raise _CannotSplit(f"{node.name} reads split weights or a transposed input")
        state, branches = self.split[_tensor(a)]
        if state != (ROWS,):
            raise _CannotSplit(f"{node.name} reads tokens that are not rows")
        self.emit_branches(node, [[branch, b] for branch in branches], state)

    def batch_matmul(self, node, inputs: List[str]) -> None:
        a, b = inputs
        b_shape = self.shape(b)[0]
        state, branches = self.split[_tensor(a)]
        rank = len(self.shape(a)[0] or ())
        if (_tensor(b) in self.split or node.attr["adj_x"].b or b_shape is None or len(b_shape) != 2
                or state[0] != AXIS or state[1] != rank - 2):
            raise _CannotSplit(f"{node.name} is not a projection of split tokens by one weight")
        self.emit_branches(node, [[branch, b] for branch in branches], state)

    def gather(self, node, inputs: List[str]) -> None:
        params, indices, axis = inputs
        from tensorflow.python.framework import tensor_util

        axis_node = self.nodes.get(node_name(axis))
        if (_tensor(params) in self.split or _tensor(axis) in self.split or axis_node is None
                or axis_node.op != "Const" or int(tensor_util.MakeNdarray(axis_node.attr["value"].tensor)) != 0
                or node.attr["batch_dims"].i != 0):
            raise _CannotSplit(f"{node.name} is not a lookup by split indices")
        state, branches = self.split[_tensor(indices)]
        self.emit_branches(node, [[params, branch, axis] for branch in branches], state)

    def last_axis(self, node, inputs: List[str]) -> None:
        state, branches = self.split[_tensor(inputs[0])]
        rank = len(self.shape(inputs[0])[0] or ())
        if any(_tensor(t) in self.split for t in inputs[1:]) or (state[0] == AXIS and state[1] == rank - 1):
            raise _CannotSplit(f"{node.name} normalises along the token axis")
        self.emit_branches(node, [[branch] + inputs[1:] for branch in branches], state)

    def einsum(self, node, inputs: List[str]) -> None:
        equation = node.attr["equation"].s.decode()
        if len(inputs) != 2 or "->" not in equation or "." in equation:
            raise _CannotSplit(f"{node.name}: einsum {equation!r}")
        (left, right), output = equation.split("->")[0].split(","), equation.split("->")[1]
        first, second = inputs
        if _tensor(first) not in self.split or self.split[_tensor(first)][0][0] != AXIS:
            raise _CannotSplit(f"{node.name}: its first operand is not split by tokens")
        letter = left[self.split[_tensor(first)][0][1]]
        if letter in right or letter not in output:
            raise _CannotSplit(f"{node.name}: the token axis is contracted or shared")
        full_second = self.join(_tensor(second), node.device) if _tensor(second) in self.split else second
        self.emit_branches(node, [[branch, full_second] for branch in self.split[_tensor(first)][1]],
                           (AXIS, output.index(letter)))

    def rewrite(self, node) -> None:
        inputs = data_inputs(node)
        if not any(_tensor(t) in self.split for t in inputs):
            self.copy_with_inputs(node, inputs, node.name)
            return
        if node.op in ELEMENTWISE_OPS:
            self.elementwise(node, inputs)
        elif node.op == "Reshape":
            self.reshape(node, inputs)
        elif node.op == "MatMul":
            self.matmul(node, inputs)
        elif node.op == "BatchMatMulV2":
            self.batch_matmul(node, inputs)
        elif node.op == "GatherV2":
            self.gather(node, inputs)
        elif node.op in LAST_AXIS_OPS:
            self.last_axis(node, inputs)
        elif node.op == "Einsum":
            self.einsum(node, inputs)
        else:  # anything else reads the joined tensors
            joined = [self.join(_tensor(t), node.device) if _tensor(t) in self.split else t for t in inputs]
            self.copy_with_inputs(node, joined, node.name)


def _topological(graph_def) -> list:
    nodes = nodes_by_name(graph_def)
    order, state = [], {}
    for root in graph_def.node:
        stack = [(root.name, False)]
        while stack:
            name, expanded = stack.pop()
            if state.get(name) == 2 or name not in nodes:
                continue
            if expanded:
                state[name] = 2
                order.append(nodes[name])
                continue
            if state.get(name) == 1:
                continue
            state[name] = 1
            stack.append((name, True))
            stack.extend((node_name(i), False) for i in nodes[name].input if state.get(node_name(i)) != 2)
    return order


def tokens_split(tokens: Optional[int], count: int) -> bool:
    """Whether a fixed sequence length ``tokens`` splits into ``count`` branches of at least 2 tokens each."""
    return bool(tokens) and tokens % count == 0 and tokens >= 2 * count


def token_sequence_input(graph_def, shapes_1, shapes_2, count: int, held=()) -> Optional[Tuple[str, int]]:
    """(the input Placeholder of token ids [?, T], T) when the graph has one whose T splits ``count`` ways."""
    for node in graph_def.node:
        if node.op != "Placeholder" or node.name in held or node.attr["dtype"].type not in (3, 9):  # int32, int64
            continue
        one, two = shapes_1.get(f"{node.name}:0"), shapes_2.get(f"{node.name}:0")
        if one and two and len(one) == 2 and one[0] == 1 and two[0] == 2 and one[1] == two[1] \
                and tokens_split(one[1], count):
            return node.name, int(one[1])
    return None


def split_into_token_branches(graph_def, count: int, keep: Sequence[str] = (), held=None):
    """(graph, why not): ``graph_def`` with its per-token work in ``count`` branches; the reason it is unchanged, or ""."""
    if count < 2:
        return graph_def, "one branch asked for"
    shapes_1, shapes_2 = shapes_at_batch(graph_def, held, 1), shapes_at_batch(graph_def, held, 2)
    found = token_sequence_input(graph_def, shapes_1, shapes_2, count, () if held is None else held)
    if found is None:
        return graph_def, f"no token-id input [?, T] with a fixed T that is a multiple of {count}"
    input_name, tokens = found
    rewriter = _Rewriter(graph_def, count, tokens, shapes_1, shapes_2)
    try:
        for node in _topological(graph_def):
            rewriter.rewrite(node)
            if node.name == input_name:
                rewriter.split[f"{input_name}:0"] = ((AXIS, 1), rewriter.split_full(f"{input_name}:0", 1, node.device))
        for name in keep:
            if f"{name}:0" in rewriter.split:
                raise _CannotSplit(f"output {name} is split")  # outputs come after a reduction here
    except _CannotSplit as reason:
        return graph_def, str(reason)
    return without_dead_nodes(rewriter.out, keep, () if held is None else held), ""


def split_tokens(frozen, count: int, precision: str):
    """(the frozen signature with ``count`` token branches, or as it was; the summary's ``token_branches`` record).

    The record says how many branches the saved graph runs, why not ``count`` when it runs one,
    and (when split) the threads to serve it with: one intra-op thread per op and ``count``
    inter-op threads, so each branch has a core (what ``run``, ``benchmark`` and serving-config apply).
    """
    from tftrt_toolkit.backends.frozen.grappler import optimize_graph

    record = {"asked": count, "branches": 1}
    if precision == "fp32":
        # Keras' Dense computes its Reshape shapes at run time; the split follows constant ones
        # (the bf16 stages have made them constants already).
        from tftrt_toolkit.backends.cpu.stages import STATIC_RESHAPES

        frozen, _ = optimize_graph(frozen, (STATIC_RESHAPES,))
    outputs = [node_name(name) for name in frozen.output_tensor_names]
    graph_def, why_not = split_into_token_branches(frozen.graph_def, count, keep=outputs, held=frozen.held)
    if why_not:
        record["why_not"] = why_not
        return frozen, record
    record["branches"] = count
    record["serving_threads"] = {
        "objective": "latency", "intra_op_threads": 1, "inter_op_threads": count,
        "reason": f"the conversion split the per-token work into {count} branches: each runs its ops on one "
                  f"thread, the {count} inter-op threads run the branches side by side"}
    return frozen.with_graph(graph_def, frozen.held.used_by(graph_def)), record
