"""Conversion steps return fresh values: a step never changes the frozen signature it was given.

The cpu backend chains freeze → grappler stages → folds → rebuild; each takes a
``FrozenSignature`` and returns a new one (Polygraphy's loaders are the model), so a value
read twice means the same thing both times.
"""

import dataclasses

import numpy as np
import pytest

from tftrt_toolkit.backends.cpu import stages
from tftrt_toolkit.backends.frozen import held_weights
from tftrt_toolkit.backends.frozen.freeze import freeze_signature
from tftrt_toolkit.backends.frozen.grappler import optimize_graph
from tftrt_toolkit.backends.graphdef import op_histogram


@pytest.fixture
def frozen_with_held_weights(tiny_saved_model, monkeypatch):
    # The tiny model's weights are below the size held aside: lower it so they are held, as VGG16's are.
    monkeypatch.setattr(held_weights, "MIN_HELD_ELEMENTS", 100)
    frozen = freeze_signature(str(tiny_saved_model), "serving_default")
    assert len(frozen.held) >= 2, "the fixture should hold the convolution and dense weights aside"
    return frozen


@pytest.mark.parametrize("chosen", [stages.CPU_FP32_STAGES, stages.CPU_BF16_STAGES], ids=["fp32", "bf16"])
def test_the_stages_leave_the_signature_they_were_given_as_it_was(frozen_with_held_weights, chosen):
    frozen = frozen_with_held_weights
    graph_bytes = frozen.graph_def.SerializeToString(deterministic=True)
    weights = {name: value.copy() for name, value in frozen.held.values.items()}

    optimized, records = optimize_graph(frozen, chosen)

    assert [record.name for record in records] == [stage.name for stage in chosen]
    assert optimized is not frozen
    assert optimized.graph_def.SerializeToString(deterministic=True) != graph_bytes
    # The input still means what it meant: same graph, same weights, same values.
    assert frozen.graph_def.SerializeToString(deterministic=True) == graph_bytes
    assert sorted(frozen.held.values) == sorted(weights)
    for name, value in weights.items():
        np.testing.assert_array_equal(frozen.held.values[name], value)
    # Folded (fp32) or cast (bf16) weights are new values in the new record; the old keeps its own.
    assert all(value.dtype == np.float32 for value in frozen.held.values.values())
    assert any(optimized.held.values.get(name) is not value for name, value in frozen.held.values.items())


def test_a_frozen_signature_and_its_weights_cannot_be_changed(frozen_with_held_weights):
    frozen = frozen_with_held_weights
    with pytest.raises(dataclasses.FrozenInstanceError):
        frozen.graph_def = None
    with pytest.raises(TypeError):
        frozen.held.values[next(iter(frozen.held.values))] = np.zeros(1)


def test_optimize_graph_takes_a_loader_as_well_as_a_value(tiny_saved_model):
    # The backend passes a loader, so nothing outside holds the unoptimised graph while stages run.
    calls = []

    def load():
        calls.append(1)
        return freeze_signature(str(tiny_saved_model), "serving_default")

    from_loader, _ = optimize_graph(load, stages.PREQUANTIZE_STAGES)
    from_value, _ = optimize_graph(freeze_signature(str(tiny_saved_model), "serving_default"), stages.PREQUANTIZE_STAGES)
    assert calls == [1]
    # Two loads name some function-library nodes apart; the graphs they give are the same.
    assert op_histogram(from_loader.graph_def) == op_histogram(from_value.graph_def)
    assert from_loader.output_tensor_names == from_value.output_tensor_names


def test_a_stage_that_rewires_the_graph_without_changing_its_op_counts_is_reported_as_changing_it(tiny_saved_model):
    # gelu_ready on a model with real biases keeps every op count (a BiasAdd moves before the GELU):
    # the report said it changed nothing. A stage that only reorders nodes did change nothing.
    from tftrt_toolkit.backends.frozen.grappler import Stage
    from tftrt_toolkit.backends.graphdef import copy

    def swap_first_two_input_operands(graph_def, keep, held):
        rewired = copy(graph_def)
        node = next(node for node in rewired.node if len([i for i in node.input if not i.startswith("^")]) >= 2)
        node.input[0], node.input[1] = node.input[1], node.input[0]
        return rewired, held

    def reverse_node_order(graph_def, keep, held):
        reordered = copy(graph_def)
        del reordered.node[:]
        reordered.node.extend(reversed(graph_def.node))
        return reordered, held

    frozen = freeze_signature(str(tiny_saved_model), "serving_default")
    _, records = optimize_graph(frozen, (Stage("rewire", transform=swap_first_two_input_operands),
                                         Stage("reorder", transform=reverse_node_order)))
    rewire, reorder = records
    assert rewire.nodes_before == rewire.nodes_after and not rewire.ops_added and not rewire.ops_removed
    assert rewire.changed and rewire.to_json()["changed"] is True
    assert not reorder.changed
