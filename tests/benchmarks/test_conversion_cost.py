"""benchmarks/conversion_cost.py on the tiny model: time and peak RSS per conversion step, before beside after."""

import json

import pytest


@pytest.fixture(scope="module")
def conversion_cost(benchmark_script):
    with benchmark_script("conversion_cost.py") as module:
        yield module


def test_tiny_model_cost_per_step_and_comparison(conversion_cost, tiny_saved_model, tmp_path):
    kept = tmp_path / "kept"
    first = conversion_cost.main([f"--model={tiny_saved_model}", f"--keep_output={kept}",
                                  f"--output={tmp_path / 'first'}"])
    [run] = first["runs"]
    steps = {s["step"]: s for s in run["steps"]}
    assert {"load", "freeze", "cleanup", "rebuild", "save"} <= set(steps)
    assert all(s["peak_rss_mb"] > 0 and s["seconds"] >= 0 for s in run["steps"])
    assert run["peak_rss_mb"] >= max(s["peak_rss_mb"] for s in run["steps"]) and run["output_mb"] is not None
    assert (kept / "saved_model.pb").exists()
    # TensorFlow's own load + save of the same SavedModel, measured in the same run, and the ratios.
    load_save = run["tensorflow_load_save"]
    assert load_save["load_save_s"] > 0 and load_save["peak_rss_mb"] > 0 and load_save["input_mb"] > 0
    assert run["convert_s_over_load_save_s"] > 0 and run["peak_rss_over_input"] > 0
    assert "TensorFlow load + save" in (tmp_path / "first.md").read_text()

    second = conversion_cost.main([f"--model={tiny_saved_model}", f"--reference={kept}",
                                   f"--before={tmp_path / 'first.json'}", f"--output={tmp_path / 'second'}"])
    [again] = second["runs"]
    assert again["max_abs_diff"] <= 1e-6  # the same model converted twice gives the same answers
    markdown = (tmp_path / "second.md").read_text()
    assert "| step | before s | after s |" in markdown and "Regenerate: `python benchmarks/conversion_cost.py" in markdown
    assert json.loads((tmp_path / "second.json").read_text())["runs"][0]["before"]["steps"]
