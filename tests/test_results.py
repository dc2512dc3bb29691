"""One class per result, one benchmark.json, one accuracy rule: what every job returns and writes, read back.

- whichever job made it, a converted model is the one ``OptimizedModel`` and a benchmark the one
  ``BenchmarkReport``, so notebook calls chain: ``tt.tune(...).chosen_model.benchmark().plot()``,
  ``tt.run().benchmarks[0].plot()``;
- the benchmark.json that ``benchmark``, ``run`` and ``tune`` write is read back by ``serving-config``
  and by the plots (``tt.read_benchmarks``);
- ``run`` and ``tune`` judge accuracy by the same rule, with the same defaults.
"""

import json
import os
import shutil

import pytest

import tftrt_toolkit as tt
from tftrt_toolkit import benchmark_schema
from tftrt_toolkit.runtime import accuracy_rule

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def tuned(tiny_saved_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("results") / "tuned"
    return tt.tune(str(tiny_saved_model), "synthetic:8", str(out), candidates=["cpu-fp32"], duration=0.1,
                   progress=False)


@pytest.fixture(scope="module")
def ran(tiny_saved_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("results") / "report"
    return tt.run(str(tiny_saved_model), output_dir=str(out), data="synthetic:4", precisions=["fp32"],
                  batch_sizes=(1, 2), duration=0.1, progress=False)


@pytest.fixture(scope="module")
def benchmarked(tiny_saved_model, tmp_path_factory):
    """What `tftrt benchmark --output=DIR` writes (BenchmarkReport.save), for a converted model."""
    base = tmp_path_factory.mktemp("results")
    model = tt.convert(str(tiny_saved_model), str(base / "fp32"), backend="cpu", progress=False)
    report = model.benchmark(batch_sizes=[1, 2], iterations=3, warmup=0, progress=False)
    report.save(str(base / "bench"), plot=False)
    return model, str(base / "bench" / "benchmark.json")


# --------------------------------------------------------------------------- one class per name

def test_the_chosen_model_of_tune_is_the_optimized_model_and_chains(tuned):
    from matplotlib.figure import Figure

    model = tuned.chosen_model
    assert type(model) is tt.OptimizedModel and model.precision == "fp32"
    report = model.benchmark(batch_sizes=[1], iterations=3, warmup=0, progress=False)
    assert type(report) is tt.BenchmarkReport and report.has_baseline
    assert isinstance(report.plot(), Figure)
    assert model.validate(data="synthetic:4", progress=False)
    assert "| path | backend | precision |" in model._repr_markdown_()


def test_the_benchmarks_of_run_are_benchmark_reports_that_plot(ran):
    from matplotlib.figure import Figure

    first = ran.benchmarks[0]
    assert type(first) is tt.BenchmarkReport
    assert isinstance(first.plot(), Figure)
    assert "| batch size | baseline p50 (ms) |" in first._repr_markdown_()
    assert first.table_lines()[0].split()[:3] == ["batch", "baseline", "p50"]


def test_convert_returns_the_same_class_as_from_path(benchmarked):
    model, _ = benchmarked
    assert type(model) is tt.OptimizedModel
    assert tt.OptimizedModel.from_path(model.path) == model


# --------------------------------------------------------------------------- one benchmark.json

def _writers(benchmarked, ran, tuned):
    return {"benchmark": benchmarked[1], "run": os.path.join(ran.output_dir, "benchmark.json"),
            "tune": os.path.join(tuned.report_dir, "benchmark.json")}


@pytest.mark.parametrize("writer", ["benchmark", "run", "tune"])
def test_every_benchmark_json_is_the_one_schema_and_plots(writer, benchmarked, ran, tuned):
    from matplotlib.figure import Figure

    path = _writers(benchmarked, ran, tuned)[writer]
    document = json.load(open(path))
    assert document["schema"] == benchmark_schema.SCHEMA
    assert {r["role"] for r in document["results"]} <= {"baseline", "baseline_tf_default", "optimized"}
    expected = {"benchmark": ["optimized"], "run": ["cpu-fp32"], "tune": ["cpu-fp32"]}[writer]
    assert benchmark_schema.model_names(document) == expected
    assert {s["name"] for s in document["speedups"]} == set(expected)
    reports = tt.read_benchmarks(path)
    assert list(reports) == expected
    report = reports[expected[0]]
    assert report.has_baseline and report.speedups
    assert isinstance(report.plot(), Figure)


@pytest.mark.parametrize("writer", ["benchmark", "run", "tune"])
def test_serving_config_reads_every_benchmark_json(writer, benchmarked, ran, tuned, tmp_path):
    from tftrt_toolkit.serving.model_config import serving_config

    base = tmp_path / "models" / "tiny"
    base.mkdir(parents=True)
    shutil.copytree(benchmarked[0].path, base / "1")
    path = _writers(benchmarked, ran, tuned)[writer]
    config = serving_config(str(base), "tiny", benchmark_report=path)
    measured = benchmark_schema.points(benchmark_schema.read(path), benchmark_schema.model_names(
        benchmark_schema.read(path))[0])
    smallest = min(measured)
    assert config.batching.batch_timeout_micros == max(1, round(measured[smallest]["p50_ms"] * 1000))
    assert "benchmark.json" in config.batching.reasons["batch_timeout_micros"]


def test_tftrt_serving_config_reads_the_benchmark_json_of_tftrt_run(ran, benchmarked, tmp_path):
    from tftrt_toolkit.cli.main import main

    base = tmp_path / "models" / "tiny"
    base.mkdir(parents=True)
    shutil.copytree(os.path.join(ran.output_dir, "models", "fp32"), base / "1")
    code = main(["tftrt", "serving-config", f"--model_base_path={base}", "--name=tiny", f"--output={tmp_path / 'cfg'}",
                 f"--benchmark_report={os.path.join(ran.output_dir, 'benchmark.json')}"])
    assert code == 0
    batching = (tmp_path / "cfg" / "batching_parameters.txt").read_text()
    assert "the largest batch size whose throughput beats" in batching or "the batch size measured in" in batching


def test_a_benchmark_json_of_several_models_picks_the_served_one(tmp_path):
    from tftrt_toolkit.errors import ConfigError
    from tftrt_toolkit.serving.model_config import _benchmark_points

    def measurement(name, p50):
        return {"role": "optimized", "name": name, "model": name, "batch_size": 1, "runs": 5, "first_call_ms": 1.0,
                "latency_ms": {"p50": p50}, "throughput": 1000.0 / p50, "peak_rss_mb": None}

    document = benchmark_schema.compose(
        {"batch_sizes": [1]}, {"cpu-fp32": {"backend": "cpu", "precision": "fp32"},
                               "cpu-bf16": {"backend": "cpu", "precision": "bf16"}},
        None, [], {"cpu-fp32": [measurement("cpu-fp32", 4.0)], "cpu-bf16": [measurement("cpu-bf16", 2.0)]}, {})
    points, note = _benchmark_points(document, "benchmark.json", {"backend": "cpu", "precision": "bf16"})
    assert points == {1: {"throughput": 500.0, "p50_ms": 2.0}} and "cpu-bf16" in note
    # A model tune chose names its candidate: that row, whatever else matches.
    chosen = {"backend": "cpu", "precision": "bf16", "chosen_by": {"candidate": "cpu-fp32"}}
    assert _benchmark_points(document, "benchmark.json", chosen)[0] == {1: {"throughput": 250.0, "p50_ms": 4.0}}
    with pytest.raises(ConfigError, match="measured cpu-fp32, cpu-bf16 and none is the served model"):
        _benchmark_points(document, "benchmark.json", {"backend": "cpu", "precision": "int8"})


def test_a_benchmark_json_from_before_the_schema_is_still_read():
    # run's files named the model in "role" and keyed the speed-ups by name.
    old = {"settings": {"batch_sizes": [1]}, "models": {"baseline": {"model": "m"}, "cpu-bf16": {"model": "b"}},
           "results": [{"role": "baseline", "batch_size": 1, "throughput": 10.0, "latency_ms": {"p50": 100.0}},
                       {"role": "cpu-bf16", "batch_size": 1, "throughput": 20.0, "latency_ms": {"p50": 50.0}}],
           "speedups": {"cpu-bf16": [{"batch_size": 1, "p50_speedup": 2.0, "throughput_speedup": 2.0}]}}
    document = benchmark_schema.normalize(old)
    assert benchmark_schema.model_names(document) == ["cpu-bf16"]
    assert benchmark_schema.points(document, "cpu-bf16") == {1: {"throughput": 20.0, "p50_ms": 50.0}}
    assert document["speedups"][0]["name"] == "cpu-bf16"


# --------------------------------------------------------------------------- one accuracy rule

def test_run_and_tune_judge_by_the_same_rule():
    from tftrt_toolkit.jobs import run as run_module
    from tftrt_toolkit.jobs.tune import choice, search

    assert run_module.Budget is search.Budget is choice.Budget is accuracy_rule.Budget
    assert choice.DEFAULT_MAX_TOP1_DROP == accuracy_rule.DEFAULT_MAX_TOP1_DROP


def _int8_row(agreement=None, drop=None):
    from tftrt_toolkit.report.run_report import ModelRow

    row = ModelRow(name="cpu-int8", path="m", backend="cpu", precision="int8", top1_agreement=agreement)
    if drop is not None:
        row.accuracy = {"top1_drop": drop}
    return row


def test_changing_the_default_budget_changes_how_run_and_tune_judge(monkeypatch, tiny_saved_model, tmp_path):
    from tftrt_toolkit.jobs.run import reject_outside_budget
    from tftrt_toolkit.jobs.tune import choose

    table = [{"candidate": "original", "status": "original", "p50_ms": 9.0, "top1_agreement": 1.0},
             {"candidate": "cpu-int8", "precision": "int8", "status": "measured", "p50_ms": 3.0, "throughput": 300.0,
              "top1_agreement": 0.97},
             {"candidate": "cpu-fp32", "precision": "fp32", "status": "measured", "p50_ms": 6.0, "throughput": 150.0,
              "top1_agreement": 1.0}]

    def judged():
        notes = []
        rows = [_int8_row(agreement=0.97), _int8_row(drop=0.008)]
        reject_outside_budget(rows, notes)
        result = tt.tune(str(tiny_saved_model), "synthetic:8", str(tmp_path / f"tuned-{len(os.listdir(tmp_path))}"),
                         candidates=["cpu-fp32"], duration=0.05, progress=False)
        chosen, _ = choose(table, **result.budget.as_kwargs())
        return [row.note for row in rows], result.budget.limit, chosen["candidate"]

    # The defaults: agreement >= 99% without labels, a drop <= half a point with them.
    assert judged() == (["rejected: outside the accuracy budget"] * 2, 0.99, "cpu-fp32")
    monkeypatch.setattr(accuracy_rule, "DEFAULT_MIN_TOP1_AGREEMENT", 0.95)
    monkeypatch.setattr(accuracy_rule, "DEFAULT_MAX_TOP1_DROP", 0.01)
    assert judged() == (["", ""], 0.95, "cpu-int8")


def test_validate_fails_a_model_outside_the_budget_it_is_given(tiny_saved_model, tmp_path):
    from PIL import Image
    import numpy as np

    from tftrt_toolkit.errors import ConfigError

    images = tmp_path / "labelled"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i, wordnet_id in enumerate(["n01440764", "n01443537"] * 2):  # classes 0 and 1
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(images / f"{wordnet_id}_{i}.png")
    report = tt.validate(str(tiny_saved_model), str(tiny_saved_model), data=str(images), max_top1_drop=0.0,
                         progress=False)
    assert report and report.budget["within"] is True and report.budget["metric"] == "top1_drop"
    with pytest.raises(ConfigError, match="max_top1_drop needs ground truth"):
        tt.validate(str(tiny_saved_model), str(tiny_saved_model), data="synthetic:4", max_top1_drop=0.01,
                    progress=False)
