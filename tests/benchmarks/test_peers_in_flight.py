"""benchmarks/peers.py --concurrency: requests/s with N in flight for every row, and a run that leaves no stray files."""

import importlib.util
import json
import os

import pytest


@pytest.fixture(scope="module")
def peers(benchmark_script):
    with benchmark_script("peers.py") as module:
        yield module


def _threads(peers) -> int:
    import tensorflow as tf

    # TF's pools are fixed once an earlier test started it; give every runtime what TF has.
    return tf.config.threading.get_intra_op_parallelism_threads() or peers.usable_cores()


def _installed(*modules) -> bool:
    return all(importlib.util.find_spec(module) is not None for module in modules)


def test_every_row_reports_requests_in_flight_in_its_serving_mode(peers, tiny_saved_model, tmp_path):
    output = tmp_path / "tiny-in-flight"
    runtimes = ["tf", "cpu_fp32", "tflite_fp32"]
    runtimes += ["onnxruntime"] if _installed("tf2onnx", "onnxruntime") else []
    runtimes += ["openvino_f32"] if _installed("openvino") else []
    report = peers.main([f"--model={tiny_saved_model}", "--batch_sizes=1", f"--output={output}", "--rounds=1",
                         "--warmup=1", "--agreement_samples=2", "--noplot", f"--threads={_threads(peers)}",
                         "--concurrency=2", f"--runtimes={','.join(runtimes)}"])
    rows = {row["key"]: row for row in json.loads((tmp_path / "tiny-in-flight.json").read_text())["rows"]}
    assert report["settings"]["concurrency"]["clients"] == 2
    for key in runtimes:
        found = rows[key]["concurrent"]
        assert found["clients"] == 2 and all(rate > 0 for rate in found["requests_per_second"].values()), found
        assert found["setting"] == max(found["requests_per_second"], key=found["requests_per_second"].get)
    # TF SavedModels at both threadings; the peers in their own serving mode.
    for key in ("tf", "cpu_fp32"):
        assert set(rows[key]["concurrent"]["requests_per_second"]) == {"tf_threads", "one_thread_per_request"}
        assert "intra-op 1, inter-op 2" in rows[key]["concurrent"]["modes"]["one_thread_per_request"]
    assert rows["tflite_fp32"]["concurrent"]["modes"]["served"].startswith("2 interpreters, one per request thread")
    if "onnxruntime" in rows:
        assert rows["onnxruntime"]["concurrent"]["modes"]["served"].startswith("2 sessions, one per request thread")
    if "openvino_f32" in rows:
        assert "PERFORMANCE_HINT=THROUGHPUT, NUM_STREAMS=2" in rows["openvino_f32"]["concurrent"]["modes"]["served"]

    markdown = (tmp_path / "tiny-in-flight.md").read_text()
    table = markdown.split("## Throughput: requests in flight")[1]
    tf_rates = rows["tf"]["concurrent"]["requests_per_second"]
    assert f"| plain TF (tf.saved_model.load) | TF's threads | {tf_rates['tf_threads']:.1f} | 1.00× |" in table
    assert f"| plain TF (tf.saved_model.load) | 1 intra-op thread per request | {tf_rates['one_thread_per_request']:.1f} |" in table
    assert "| **tftrt_toolkit cpu fp32** |" in table and "| TFLite XNNPACK fp32 |" in table


def test_bad_concurrency_is_a_config_error(peers, tmp_path):
    from tftrt_toolkit.errors import ConfigError

    with pytest.raises(ConfigError, match="--concurrency=0 is not valid"):
        peers.main([f"--output={tmp_path / 'x'}", "--concurrency=0"])


def test_a_run_leaves_the_current_directory_as_it_was(peers, tiny_saved_model, tmp_path, monkeypatch):
    """ONNX Runtime's pre-processing writes its leftovers into the current directory; they must go to the work dir."""
    if not _installed("tf2onnx", "onnxruntime", "sympy"):
        pytest.skip("onnxruntime_int8 needs the peers extra: pip install 'tftrt_toolkit[peers]'")
    import onnxruntime.quantization.shape_inference as shape_inference

    real = shape_inference.quant_pre_process
    seen = []

    def leaves_files_like_a_transformer_does(*args, **kwargs):
        # What symbolic shape inference does when it cannot infer every shape: sym_shape_infer_temp.onnx
        # and its weights under a UUID name, written to the current directory and left there.
        for name in ("sym_shape_infer_temp.onnx", "0f4e2c1a-5b6d-11ef-9c3a-0242ac120002"):
            with open(name, "wb") as handle:
                handle.write(b"leftover")
        seen.append(os.getcwd())
        return real(*args, **kwargs)

    monkeypatch.setattr(shape_inference, "quant_pre_process", leaves_files_like_a_transformer_does)
    here = tmp_path / "cwd"
    here.mkdir()
    (here / "mine.txt").write_text("the user's file")
    monkeypatch.chdir(here)
    work = tmp_path / "work"
    peers.main([f"--model={tiny_saved_model}", "--batch_sizes=1", f"--output={tmp_path / 'out' / 'tiny'}",
                "--rounds=1", "--warmup=1", "--agreement_samples=2", "--noplot", f"--threads={_threads(peers)}",
                "--runtimes=tf,onnxruntime_int8", f"--work_dir={work}"])
    assert seen, "the pre-processing step did not run"
    assert sorted(os.listdir(here)) == ["mine.txt"]
    assert os.path.commonpath([seen[0], str(work)]) == str(work)  # the leftovers went to the work dir
    assert (work / "onnxruntime-scratch" / "sym_shape_infer_temp.onnx").exists()
