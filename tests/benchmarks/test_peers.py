"""benchmarks/peers.py on the tiny model: the table's rows, skipped peers with their reasons, the three files."""

import importlib.util
import json
import sys

import pytest


@pytest.fixture(scope="module")
def peers(benchmark_script):
    with benchmark_script("peers.py") as module:
        yield module


def _has_matplotlib() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def test_tiny_model_rows_skips_and_files(peers, tiny_saved_model, tmp_path, monkeypatch):
    # None in sys.modules makes `import onnxruntime` / `import openvino` fail: the packages look missing.
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    monkeypatch.setitem(sys.modules, "openvino", None)
    output = tmp_path / "results" / "tiny-peers"
    # TF's pools are fixed once an earlier test started it; give every runtime what TF has.
    import tensorflow as tf

    threads = tf.config.threading.get_intra_op_parallelism_threads() or peers.usable_cores()

    report = peers.main([
        f"--model={tiny_saved_model}", "--batch_sizes=1,2", f"--output={output}", "--rounds=2", "--warmup=1",
        "--agreement_samples=4", "--runtimes=tf,cpu_fp32,onnxruntime,openvino_f32,tflite_fp32", f"--threads={threads}",
    ])

    written = json.loads((tmp_path / "results" / "tiny-peers.json").read_text())
    assert written["rows"] == json.loads(json.dumps(report["rows"]))
    rows = {row["key"]: row for row in written["rows"]}
    assert list(rows) == ["tf", "cpu_fp32", "onnxruntime", "openvino_f32", "tflite_fp32"]
    for key in ("tf", "cpu_fp32", "tflite_fp32"):
        row = rows[key]
        assert row["status"] == "measured", row
        assert [cell["batch_size"] for cell in row["results"]] == [1, 2]
        assert all(cell["runs"] >= 2 and cell["latency_ms"]["p50"] > 0 for cell in row["results"])
        assert row["agreement"]["top1_agreement"] == 1.0 and row["agreement"]["samples"] == 4
    assert [cell["speedup_vs_tf"] for cell in rows["tf"]["results"]] == [1.0, 1.0]
    assert rows["tf"]["stays_tf_saved_model"] and rows["cpu_fp32"]["stays_tf_saved_model"]
    assert not rows["tflite_fp32"]["stays_tf_saved_model"]
    for key, package in (("onnxruntime", "onnxruntime"), ("openvino_f32", "openvino")):
        assert rows[key]["status"] == "skipped"
        assert f"not installed: {package}" in rows[key]["reason"] or f"; {package} (" in rows[key]["reason"]
        assert "tftrt_toolkit[peers]" in rows[key]["reason"]
        assert "results" not in rows[key]
    assert written["settings"]["threads"] == threads and written["settings"]["batch_sizes"] == [1, 2]

    markdown = (tmp_path / "results" / "tiny-peers.md").read_text()
    assert "| plain TF (tf.saved_model.load) | yes | 100% |" in markdown
    assert "| **tftrt_toolkit cpu fp32** | yes |" in markdown
    assert "| TFLite XNNPACK fp32 | no |" in markdown
    assert "**ONNX Runtime fp32 (tf2onnx)** skipped: not installed:" in markdown
    assert "**OpenVINO f32** skipped: not installed: openvino" in markdown
    png = tmp_path / "results" / "tiny-peers.png"
    if _has_matplotlib():
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert written["outputs"]["png"] == str(png)
    else:
        assert not png.exists() and "matplotlib" in written["outputs"]["png_skipped"]


def test_existing_results_are_kept_without_overwrite(peers, tiny_saved_model, tmp_path):
    (tmp_path / "old.md").write_text("keep me")
    from tftrt_toolkit.errors import OutputError

    with pytest.raises(OutputError, match="already exists"):
        peers.main([f"--model={tiny_saved_model}", f"--output={tmp_path / 'old'}", "--rounds=1"])
    assert (tmp_path / "old.md").read_text() == "keep me"


@pytest.mark.parametrize("flag, message", [
    ("--runtimes=tf,tensorrt", "unknown ['tensorrt']"),
    ("--batch_sizes=1,1", "distinct"),
    ("--rounds=0", "--rounds must be >= 1"),
])
def test_bad_flags_are_config_errors(peers, tmp_path, flag, message):
    from tftrt_toolkit.errors import ConfigError

    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        peers.main([f"--output={tmp_path / 'x'}", flag])
