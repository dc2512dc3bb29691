"""benchmarks/per_op_cost.py: kernel time, TF op time and wall per call, per thread count, on the tiny model."""

import json

import pytest


@pytest.fixture(scope="module")
def per_op_cost(benchmark_script):
    with benchmark_script("per_op_cost.py") as module:
        yield module


def test_tiny_model_cost_names_ops_and_splits_wall_time(per_op_cost, tiny_saved_model, tmp_path):
    report = per_op_cost.main([f"--model={tiny_saved_model}", "--threads=1,2", "--calls=3", "--traced_calls=2",
                               f"--output={tmp_path / 'tiny'}"])

    assert [run["threads"] for run in report["runs"]] == [1, 2]
    for run in report["runs"]:
        assert run["signature_ms"] > 0 and run["session_ms"] > 0 and run["cpu_ms_per_call"] > 0
        assert any("Conv2D" in op for op in run["op_types"]), run["op_types"]
        # The parts are what they say: wall = kernels + the rest; TF's op times sit inside the traced span.
        assert run["outside_kernels_ms"] == pytest.approx(run["signature_ms"] - run["onednn_ms_per_call"])
        assert 0 < run["tf_op_ms_per_call"]
    written = json.loads((tmp_path / "tiny.json").read_text())
    assert written["runs"][1]["op_types"].keys() == report["runs"][1]["op_types"].keys()
    text = (tmp_path / "tiny.md").read_text()
    assert "| 1 thread(s), ms | 2 thread(s), ms | 2/1 |" in text and "per_op_cost.py --model=" in text


def test_primitives_are_summed_per_kind(per_op_cost):
    primitives = [{"kind": "convolution", "implementation": "brgconv:avx512_core_amx", "per_call": 3, "ms_per_call": 0.5},
                  {"kind": "reorder", "implementation": "jit:uni", "per_call": 2, "ms_per_call": 0.1},
                  {"kind": "convolution", "implementation": "jit_dw:avx512_core", "per_call": 1, "ms_per_call": 0.25}]

    kinds = per_op_cost.per_kind(primitives)

    assert list(kinds) == ["convolution", "reorder"]
    assert kinds["convolution"] == {"per_call": 4, "ms_per_call": 0.75}


def test_a_directory_that_is_not_a_saved_model_is_one_clear_error(per_op_cost, tmp_path):
    with pytest.raises(SystemExit, match="is not a SavedModel directory"):
        per_op_cost.main([f"--model={tmp_path}"])


def test_repeats_combine_into_medians_with_shares_from_the_medians(per_op_cost):
    def repeat(wall, kernels, conv_ms):
        return {"threads": 2, "inter": 1, "signature_ms": wall, "signature_ms_with_verbose": wall, "session_ms": wall,
                "signature_mean_ms": wall, "cpu_ms_per_call": wall / 2,
                "onednn_ms_per_call": kernels, "tf_op_ms_per_call": wall, "traced_span_ms": wall,
                "op_types": {"Conv2D": {"nodes_per_call": 1.0, "ms_per_call": conv_ms}},
                "onednn_kinds": {"convolution": {"per_call": 1.0, "ms_per_call": kernels}},
                "onednn_primitives": [{"kind": "convolution", "implementation": "x", "per_call": 1.0,
                                       "ms_per_call": kernels}]}

    combined = per_op_cost.combine([repeat(10.0, 4.0, 3.0), repeat(30.0, 6.0, 5.0), repeat(20.0, 5.0, 4.0)])

    assert combined["repeats"] == 3 and combined["threads"] == 2
    assert combined["signature_ms"] == 20.0 and combined["onednn_ms_per_call"] == 5.0
    assert combined["outside_kernels_ms"] == 15.0 and combined["kernel_share_of_wall"] == 0.25
    assert combined["op_types"]["Conv2D"]["ms_per_call"] == 4.0
    assert combined["onednn_primitives"][0]["ms_per_call"] == 5.0
    assert combined["cpu_over_wall"] == 0.5
    assert [r["signature_ms"] for r in combined["each_repeat"]] == [10.0, 30.0, 20.0]
