"""benchmarks/int8_residual_sums.py: after/before latency ratios from interleaved tftrt benchmark processes."""

import json

import pytest


@pytest.fixture(scope="module")
def residual_sums(benchmark_script):
    with benchmark_script("int8_residual_sums.py") as module:
        yield module


def test_one_process_per_thread_count_gives_a_ratio_per_batch_size(residual_sums, tiny_saved_model, tmp_path):
    # The same model as before and after: the ratio is the run's noise around 1.
    result = residual_sums.main([f"--before={tiny_saved_model}", f"--after={tiny_saved_model}", "--threads=1,2",
                                 "--batch_sizes=1,2", "--repeats=1", "--duration=0.3", f"--output={tmp_path / 'r'}"])

    assert [run["threads"] for run in result["runs"]] == [1, 2]
    assert [(row["threads"], row["batch_size"]) for row in result["summary"]] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    for row in result["summary"]:
        assert row["before_p50_ms"] > 0 and row["after_p50_ms"] > 0
        assert row["after_over_before"] == pytest.approx(row["after_p50_ms"] / row["before_p50_ms"], rel=1e-3)
    assert json.loads((tmp_path / "r.json").read_text())["summary"] == result["summary"]
    text = (tmp_path / "r.md").read_text()
    assert "| intra-op threads | batch | before p50 | after p50 | after / before |" in text
    assert "int8_residual_sums.py --before=" in text


def test_a_directory_that_is_not_a_saved_model_is_one_clear_error(residual_sums, tiny_saved_model, tmp_path):
    with pytest.raises(SystemExit, match="--before=.* is not a SavedModel directory"):
        residual_sums.main([f"--before={tmp_path}", f"--after={tiny_saved_model}", f"--output={tmp_path / 'r'}"])
