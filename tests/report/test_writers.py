"""Writers: JSON-safe values, atomic files, no overwrite by accident; the benchmark chart."""

import json
import os

import numpy as np
import pytest

from tftrt_toolkit.errors import ConfigError, OutputError
from tftrt_toolkit.report import writers


def test_json_text_converts_numpy_and_non_finite_values():
    data = {"a": np.float32(0.5), "b": np.int64(3), "c": np.arange(3), "d": (1, 2), "e": float("nan"),
            "f": np.float64("inf"), "g": np.bool_(True)}
    parsed = json.loads(writers.json_text(data))
    assert parsed == {"a": 0.5, "b": 3, "c": [0, 1, 2], "d": [1, 2], "e": None, "f": None, "g": True}


def test_objects_with_to_json_are_asked():
    class Report:
        def to_json(self):
            return {"passed": np.bool_(False)}

    assert json.loads(writers.json_text({"report": Report()})) == {"report": {"passed": False}}


def test_csv_text_has_header_and_json_encodes_lists():
    text = writers.csv_text([{"image": "a,b.jpg", "rank": 1, "values": [1.0, 2.0]}], ("image", "rank", "values"))
    assert text.splitlines() == ["image,rank,values", '"a,b.jpg",1,"[1.0, 2.0]"']


def test_write_json_is_atomic_and_refuses_to_overwrite_by_default(tmp_path):
    path = tmp_path / "report.json"
    writers.write_json(str(path), {"x": 1})
    assert json.loads(path.read_text()) == {"x": 1}
    with pytest.raises(OutputError, match="already exists; pass --overwrite"):
        writers.write_json(str(path), {"x": 2})
    assert json.loads(path.read_text()) == {"x": 1}
    writers.write_json(str(path), {"x": 2}, overwrite=True)
    assert json.loads(path.read_text()) == {"x": 2}
    assert os.listdir(tmp_path) == ["report.json"]  # no temporary files left


def test_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "rows.csv"
    path.write_text("old\n")

    def fail(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OutputError, match="No space left on device"):
        writers.write_csv(str(path), [{"a": 1}], ("a",), overwrite=True)
    assert path.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["rows.csv"]


def test_unusable_outputs_are_output_errors(tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        writers.write_text(str(tmp_path / "missing" / "x.json"), "{}")
    with pytest.raises(OutputError, match="is a directory"):
        writers.write_text(str(tmp_path), "{}")
    writers.check_writable([str(tmp_path / "new" / "x.json")], make_dirs=True)
    assert (tmp_path / "new").is_dir()


def test_emit_writes_to_stdout_without_an_output(capsys, tmp_path):
    assert writers.emit("hello\n") is None
    assert capsys.readouterr().out == "hello\n"
    assert writers.emit("hi\n", str(tmp_path / "out.txt")) == str(tmp_path / "out.txt")


# --------------------------------------------------------------------------- plots

def _report(with_baseline=True):
    from tftrt_toolkit.runtime.benchmark import BenchmarkReport, Measurement, _speedup

    def measurement(role, batch_size, p50):
        lat = {"min": p50 * 0.9, "mean": p50, "p50": p50, "p90": p50 * 1.1, "p99": p50 * 1.2, "max": p50 * 1.3}
        return Measurement(role, f"models/{role}", batch_size, 10, 300.0, lat, batch_size * 1000.0 / p50, 900.0)

    results = []
    for batch_size, p50 in ((1, 20.0), (8, 120.0)):
        if with_baseline:
            results.append(measurement("baseline", batch_size, p50))
        results.append(measurement("optimized", batch_size, p50 / 1.8))
    models = {"optimized": {"model": "out/bf16", "backend": "cpu", "precision": "bf16"}}
    if with_baseline:
        models["baseline"] = {"model": "saved_models/efficientnet_lite0", "backend": None, "precision": None}
    settings = {"batch_sizes": [1, 8], "warmup": 5, "iterations": 10, "duration_s": None, "interleaved": with_baseline,
                "threads": {"in_force": {"intra_op_threads": 0, "inter_op_threads": 0}},
                "tensorflow_version": "2.17.1", "cpu_model": "Test CPU", "cpu_count": 2, "gpus": [], "data": "synthetic data"}
    report = BenchmarkReport(settings, models, results, [])
    if with_baseline:
        report.speedups = [_speedup(report.result("baseline", b), report.result("optimized", b)) for b in (1, 8)]
    return report


@pytest.mark.parametrize("with_baseline", [True, False])
def test_plot_benchmark_writes_a_png(tmp_path, with_baseline):
    pytest.importorskip("matplotlib", reason="matplotlib (the 'plot' extra) is not installed")
    from tftrt_toolkit.report.plots import plot_benchmark

    path = plot_benchmark(_report(with_baseline), str(tmp_path / "benchmark.png"))
    with open(path, "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(OutputError, match="already exists"):
        plot_benchmark(_report(with_baseline), path)


def test_without_matplotlib_the_error_says_what_to_install(tmp_path, monkeypatch):
    import sys

    from tftrt_toolkit.report import plots

    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)  # import of a None entry raises ImportError
    with pytest.raises(ConfigError, match=r"pip install tftrt_toolkit\[plot\]"):
        plots.plot_benchmark(_report(), str(tmp_path / "b.png"))
    assert not (tmp_path / "b.png").exists()
