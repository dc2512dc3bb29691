"""benchmarks/peers.py on the tiny model: the table's rows, skipped peers with their reasons, the three files."""

import os
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


# --------------------------------------------------------------------------- the peers' int8 rows, the oneDNN rows
PEER_INT8_PACKAGES = {
    "openvino_int8": ("openvino", "nncf"),
    "onnxruntime_int8": ("tf2onnx", "onnxruntime", "sympy"),
    "tflite_full_int8": (),  # TFLite comes with TensorFlow
}


def _missing(packages):
    return [name for name in packages if importlib.util.find_spec(name) is None]


def _onednn_on_in_this_process() -> bool:
    from tftrt_toolkit import onednn

    return onednn.enabled_in_this_process()


@pytest.fixture(scope="module")
def int8_peers_report(peers, tiny_saved_model, tmp_path_factory):
    """One short run of the tiny model with plain TF, the oneDNN row and every peer int8 row."""
    import tensorflow as tf

    threads = tf.config.threading.get_intra_op_parallelism_threads() or peers.usable_cores()
    output = tmp_path_factory.mktemp("peers") / "tiny-int8"
    return peers.main([
        f"--model={tiny_saved_model}", "--batch_sizes=1,2", f"--output={output}", "--rounds=1", "--warmup=1",
        "--agreement_samples=4", "--noplot", f"--threads={threads}",
        "--runtimes=tf,tf_onednn,openvino_bf16," + ",".join(PEER_INT8_PACKAGES),
    ])


@pytest.mark.parametrize("key", list(PEER_INT8_PACKAGES))
def test_peer_int8_rows_calibrate_on_our_calibration_samples(int8_peers_report, key):
    missing = _missing(PEER_INT8_PACKAGES[key])
    if missing:
        pytest.skip(f"{key} needs {missing}: pip install 'tftrt_toolkit[peers]'")
    rows = {row["key"]: row for row in int8_peers_report["rows"]}
    row = rows[key]
    assert row["status"] == "measured", row
    # The same 64 samples (8 batches of 8) our cpu int8 conversion draws from --calibration_data.
    assert "64 calibration samples" in row["converted_with"]
    assert int8_peers_report["settings"]["int8_calibration"].startswith("64 samples (8 batches)")
    assert [cell["batch_size"] for cell in row["results"]] == [1, 2]
    assert all(cell["runs"] >= 1 and cell["latency_ms"]["p50"] > 0 for cell in row["results"])
    assert row["agreement"]["samples"] == 4 and row["agreement"]["max_abs_diff"] is not None
    assert row["process"]["tf_onednn"] is None  # its own kernels: TF's switch is not its setting
    assert not row["stays_tf_saved_model"]


def test_onednn_row_is_skipped_where_plain_tf_already_has_it(int8_peers_report):
    rows = {row["key"]: row for row in int8_peers_report["rows"]}
    if not _onednn_on_in_this_process():
        pytest.skip("oneDNN is off in this test process: the row ran in a worker (the subprocess test covers it)")
    assert rows["tf_onednn"]["status"] == "skipped"
    assert "already runs with oneDNN on in this process" in rows["tf_onednn"]["reason"]
    assert rows["tf"]["process"]["tf_onednn"].startswith("on (")


def test_openvino_bf16_row_is_never_an_f32_row_in_disguise(int8_peers_report):
    if _missing(["openvino"]):
        pytest.skip("needs openvino: pip install 'tftrt_toolkit[peers]'")
    row = {row["key"]: row for row in int8_peers_report["rows"]}["openvino_bf16"]
    if row["status"] == "measured":  # a CPU with native bf16
        assert "bf16" in row["settings_in_force"]["INFERENCE_PRECISION_HINT"]
    elif "ONEDNN_MAX_CPU_ISA" in os.environ and row["reason"].startswith("first run failed"):
        pass  # a bf16 CPU capped to AVX2: OpenVINO's CPU plugin promises bf16 (cpuid), then cannot run it
    else:
        assert row["reason"].startswith("OpenVINO runs f32, not bf16, on this CPU")


def test_rows_that_need_onednn_run_in_a_worker_where_it_is_off(peers, tiny_saved_model, tmp_path):
    """TF_ENABLE_ONEDNN_OPTS=0 for the script: plain TF runs with oneDNN off, the oneDNN rows in a worker with it on."""
    import os
    import subprocess

    from tftrt_toolkit import onednn

    runtimes = "tf,tf_onednn,cpu_fp32" + (",cpu_int8" if not _missing(["neural_compressor"]) else "")
    output = tmp_path / "tiny-onednn"
    completed = subprocess.run(
        [sys.executable, peers.__file__, f"--model={tiny_saved_model}", "--batch_sizes=1,2", f"--output={output}",
         "--rounds=1", "--warmup=1", "--agreement_samples=4", "--noplot", "--threads=1", f"--runtimes={runtimes}"],
        env=onednn.environment_with(False), capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr[-2000:]

    written = json.loads((tmp_path / "tiny-onednn.json").read_text())
    rows = {row["key"]: row for row in written["rows"]}
    assert rows["tf"]["process"] == {"runs_in": "this process", "tf_onednn": "off (TF_ENABLE_ONEDNN_OPTS=0)"}
    assert written["settings"]["onednn_enabled"] is False
    for key in runtimes.split(",")[1:]:
        row = rows[key]
        assert row["status"] == "measured", row
        assert row["process"] == {"runs_in": "worker process", "tf_onednn": "on (TF_ENABLE_ONEDNN_OPTS=1, worker process)"}
        assert [cell["batch_size"] for cell in row["results"]] == [1, 2]
        assert all(cell["runs"] >= 1 and cell["latency_ms"]["p50"] > 0 for cell in row["results"])
        assert row["agreement"]["top1_agreement"] == 1.0 and row["agreement"]["samples"] == 4
    markdown = (tmp_path / "tiny-onednn.md").read_text()
    assert "| runtime | stays a TF SavedModel | top-1 vs plain TF | TF oneDNN |" in markdown
    assert "| plain TF, oneDNN on | yes | 100% | on (TF_ENABLE_ONEDNN_OPTS=1, worker process) |" in markdown
    assert "rows marked 'worker process' ran in a second process" in markdown
    assert not [name for name in os.listdir(tmp_path) if name.startswith("worker-")]


def test_a_transformer_spec_is_built_and_measured_on_token_ids(peers, tmp_path):
    import tensorflow as tf

    threads = tf.config.threading.get_intra_op_parallelism_threads() or peers.usable_cores()
    report = peers.main([
        "--model=transformer:tiny", "--runtimes=tf,cpu_fp32,cpu_fp32_branches", "--batch_sizes=1", "--rounds=1",
        "--warmup=1",
        "--agreement_samples=4", "--data=synthetic", "--agreement_data=synthetic", "--calibration_data=synthetic",
        f"--threads={threads}", f"--output={tmp_path / 'transformer'}", "--noplot",
    ])
    assert [tensor["dtype"] for tensor in report["signature"]["inputs"]] == ["int32"]
    rows = {row["key"]: row for row in report["rows"]}
    assert rows["cpu_fp32"]["status"] == "measured", rows["cpu_fp32"]
    assert rows["cpu_fp32"]["agreement"]["top1_agreement"] == 1.0
    assert rows["cpu_fp32"]["precision_coverage"]["share"] == 1.0
    # The token-branches row runs where it is served as its conversion records: 1 intra-op, 2 inter-op threads.
    branches = rows["cpu_fp32_branches"]
    assert branches["status"] == "measured", branches
    assert branches["process"]["tf_threads"] == {"intra_op_threads": 1, "inter_op_threads": 2}
    assert "token_branches=2" in branches["converted_with"] and branches["agreement"]["top1_agreement"] == 1.0
    assert "which ran as its conversion records it is served" in (tmp_path / "transformer.md").read_text()


def test_an_unknown_transformer_size_is_one_line(peers, tmp_path):
    from tftrt_toolkit.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown transformer size 'huge'; use one of: issue25, bert_base, tiny"):
        peers.main(["--model=transformer:huge", f"--output={tmp_path / 'x'}", "--rounds=1", "--noplot"])
