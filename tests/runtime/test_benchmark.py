"""benchmark: report fields, interleaved runs, speed-up ratios, settings recorded; never timing assertions."""

import pytest

from tftrt_toolkit.errors import ConfigError, DataError
from tftrt_toolkit.runtime.benchmark import CSV_COLUMNS, MIN_RUNS, benchmark, latency_stats
from tftrt_toolkit.runtime.session import ModelRunner
from tftrt_toolkit.runtime.validate import SignatureMismatch


class RecordingRunner(ModelRunner):
    """A real runner that also logs each call's role and batch size, to check the order of runs."""

    def __init__(self, model, role, log):
        super().__init__(model)
        self.role, self.log = role, log

    def run_prepared(self, tensors):
        outputs = super().run_prepared(tensors)
        self.log.append((self.role, tensors["images"].shape[0]))
        return outputs


@pytest.fixture(scope="module")
def report_with_baseline(tiny_saved_model, tiny_fp32_conversion):
    return benchmark(tiny_fp32_conversion, baseline=str(tiny_saved_model), batch_sizes=(1, 2), warmup=1,
                     iterations=3, progress=False, baseline_at_tf_default=False)


def test_the_baseline_is_also_timed_as_plain_tf_runs_it_by_default(tiny_saved_model, tiny_fp32_conversion):
    # tftrt turns oneDNN on in its processes; plain TF leaves it off by default on AVX2-only CPUs. The
    # baseline is then also timed in a subprocess at TF's default, interleaved, and both ratios reported.
    report = benchmark(tiny_fp32_conversion, baseline=str(tiny_saved_model), batch_sizes=(1, 2), warmup=1,
                       iterations=3, progress=False, baseline_at_tf_default=True)
    assert [(m.role, m.batch_size) for m in report.results] == [
        ("baseline", 1), ("optimized", 1), ("baseline_tf_default", 1),
        ("baseline", 2), ("optimized", 2), ("baseline_tf_default", 2)]
    for batch_size in (1, 2):
        default, optimized = report.result("baseline_tf_default", batch_size), report.result("optimized", batch_size)
        assert default.runs == 3 and default.first_call_ms is None
        speedup = report.speedup(batch_size)
        assert speedup["p50_speedup_vs_tf_default"] == pytest.approx(
            default.latency_ms["p50"] / optimized.latency_ms["p50"], rel=1e-3)
    onednn = report.settings["onednn"]
    assert onednn["baseline_tf_default_measured"] is True and isinstance(onednn["tf_default"], bool)
    assert any("plain TF's default here is oneDNN" in line for line in report.table_lines())
    assert len(report.csv_rows()) == 6


def test_a_baseline_that_needs_onednn_is_not_timed_where_tf_default_has_it_off(tiny_fp32_conversion, tmp_path,
                                                                               monkeypatch):
    # Benchmarking one converted model against another: plain TF at its default (oneDNN off on
    # AVX2-only CPUs) cannot run a baseline that needs oneDNN, so that row is left out, not fatal.
    import dataclasses
    import json
    import shutil

    from tftrt_toolkit import environment

    baseline = tmp_path / "needs_onednn"
    shutil.copytree(tiny_fp32_conversion, baseline)
    metadata_path = baseline / "assets.extra" / "tftrt_toolkit.json"
    metadata = json.loads(metadata_path.read_text())
    metadata["runtime"] = {"requires_onednn": True, "why": "oneDNN-only fusions"}
    metadata_path.write_text(json.dumps(metadata))
    plain = environment.probe()
    monkeypatch.setattr(environment, "probe", lambda *a, **k: dataclasses.replace(plain, onednn_default=False))
    report = benchmark(tiny_fp32_conversion, baseline=str(baseline), batch_sizes=(1,), warmup=1, iterations=3,
                       progress=False, baseline_at_tf_default=True)
    assert [m.role for m in report.results] == ["baseline", "optimized"]
    assert report.settings["onednn"]["baseline_tf_default_measured"] is False


def test_report_has_every_field_for_each_model_and_batch_size(report_with_baseline):
    report = report_with_baseline
    assert [(m.role, m.batch_size) for m in report.results] == [
        ("baseline", 1), ("optimized", 1), ("baseline", 2), ("optimized", 2)]
    for m in report.results:
        assert m.runs == 3
        assert set(m.latency_ms) == {"min", "mean", "p50", "p90", "p99", "max"}
        assert m.latency_ms["min"] <= m.latency_ms["p50"] <= m.latency_ms["p90"] <= m.latency_ms["p99"] <= m.latency_ms["max"]
        assert m.first_call_ms > 0 and m.throughput > 0
        assert m.peak_rss_mb is None or m.peak_rss_mb > 0


def test_speedups_are_the_ratios_of_the_measurements(report_with_baseline):
    report = report_with_baseline
    for batch_size in (1, 2):
        base, opt = report.result("baseline", batch_size), report.result("optimized", batch_size)
        speedup = report.speedup(batch_size)
        assert speedup["p50_speedup"] == pytest.approx(base.latency_ms["p50"] / opt.latency_ms["p50"], rel=1e-3)
        assert speedup["throughput_speedup"] == pytest.approx(opt.throughput / base.throughput, rel=1e-3)


def test_settings_and_models_are_recorded(report_with_baseline):
    settings = report_with_baseline.settings
    assert settings["batch_sizes"] == [1, 2] and settings["iterations"] == 3 and settings["warmup"] == 1
    assert settings["interleaved"] is True
    assert set(settings["threads"]["in_force"]) == {"intra_op_threads", "inter_op_threads"}
    for key in ("tensorflow_version", "cpu_model", "cpu_count", "data", "timed_region"):
        assert key in settings
    assert report_with_baseline.models["optimized"]["precision"] == "fp32"
    assert report_with_baseline.models["baseline"]["precision"] is None


def test_csv_rows_and_table(report_with_baseline):
    rows = report_with_baseline.csv_rows()
    assert len(rows) == 4 and all(set(row) == set(CSV_COLUMNS) for row in rows)
    assert [row["p50_speedup"] is None for row in rows] == [True, False, True, False]
    table = report_with_baseline.table_lines()
    assert "speed-up" in table[0] and len(table) == 3


def test_runs_are_interleaved_with_the_same_count(tiny_saved_model, tiny_fp32_conversion):
    log = []
    with RecordingRunner(tiny_fp32_conversion, "optimized", log) as optimized, \
            RecordingRunner(str(tiny_saved_model), "baseline", log) as baseline:
        benchmark(optimized, baseline=baseline, batch_sizes=(2,), warmup=0, iterations=4, progress=False)
    # first calls (one each), then 4 rounds alternating baseline/optimized
    assert [role for role, _ in log] == ["baseline", "optimized"] * 5
    assert {size for _, size in log} == {2}


def test_duration_mode_runs_at_least_the_minimum(tiny_saved_model):
    report = benchmark(str(tiny_saved_model), batch_sizes=(1,), warmup=0, duration=0.001, progress=False)
    assert report.result("optimized", 1).runs >= MIN_RUNS
    assert report.speedups == [] and not report.has_baseline
    assert "speed-up" not in report.table_lines()[0]


def test_bad_settings_are_config_errors(tiny_saved_model):
    model = str(tiny_saved_model)
    with pytest.raises(ConfigError, match="either iterations or duration"):
        benchmark(model, iterations=2, duration=1.0)
    with pytest.raises(ConfigError, match="empty"):
        benchmark(model, batch_sizes=())
    with pytest.raises(ConfigError, match="batch size"):
        benchmark(model, batch_sizes=(0,))
    with pytest.raises(ConfigError, match="repeats"):
        benchmark(model, batch_sizes=(1, 1))


def test_baseline_with_another_signature_is_refused(tiny_saved_model, tiny_16px):
    with pytest.raises(SignatureMismatch):
        benchmark(str(tiny_saved_model), baseline=str(tiny_16px), batch_sizes=(1,), iterations=1, progress=False)


def test_small_image_sets_are_repeated_to_fill_a_batch(tiny_saved_model, tmp_path):
    from PIL import Image

    Image.new("RGB", (40, 30), (200, 10, 10)).save(tmp_path / "one.png")
    report = benchmark(str(tiny_saved_model), data=str(tmp_path), batch_sizes=(4,), warmup=0, iterations=1, progress=False)
    assert report.result("optimized", 4).runs == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError):
        benchmark(str(tiny_saved_model), data=str(empty), batch_sizes=(1,), iterations=1, progress=False)


def test_latency_stats_in_milliseconds():
    stats = latency_stats([0.001, 0.002, 0.003, 0.004])
    assert stats["min"] == 1.0 and stats["max"] == 4.0 and stats["mean"] == 2.5 and stats["p50"] == 2.5


def test_benchmark_many_shares_one_interleaved_baseline(tiny_saved_model):
    from tftrt_toolkit.runtime.benchmark import benchmark_many

    reports = benchmark_many({"a": str(tiny_saved_model), "b": str(tiny_saved_model)}, baseline=str(tiny_saved_model),
                             batch_sizes=(1,), iterations=3, warmup=0, progress=False, baseline_at_tf_default=False)
    assert list(reports) == ["a", "b"]
    base_a, base_b = reports["a"].result("baseline", 1), reports["b"].result("baseline", 1)
    assert base_a == base_b  # the same measurements, so speed-ups compare across models
    for report in reports.values():
        assert [m.role for m in report.results] == ["baseline", "optimized"]
        assert report.result("optimized", 1).runs == base_a.runs == 3
        assert report.speedup(1)["p50_speedup"] == base_a.latency_ms["p50"] / report.result("optimized", 1).latency_ms["p50"]


def test_benchmark_many_refuses_a_model_named_baseline(tiny_saved_model):
    from tftrt_toolkit.runtime.benchmark import benchmark_many

    with pytest.raises(ConfigError, match="none named 'baseline'"):
        benchmark_many({"baseline": str(tiny_saved_model)})
