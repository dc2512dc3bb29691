"""TF Serving from the command line: inspect's warmup line, convert --warmup_*, serving-config."""

import json
import os
import shutil

import pytest

from tftrt_toolkit.errors import ModelLoadError
from tftrt_toolkit.serving.warmup import WARMUP_RELATIVE_PATH

pytest.importorskip("tensorflow_serving.apis.prediction_log_pb2", reason="needs the serving extra: pip install 'tftrt_toolkit[serving]'")


@pytest.fixture(scope="module")
def converted_with_warmup(tiny_saved_model, tmp_path_factory):
    from tftrt_toolkit.cli.main import main

    output = tmp_path_factory.mktemp("serving-cli") / "fp32"
    code = main(["tftrt", "convert", f"--model={tiny_saved_model}", f"--output={output}", "--backend=cpu",
                 "--warmup_data=synthetic", "--warmup_batch_sizes=1,3"])
    assert code == 0
    return str(output)


def test_convert_writes_the_warmup_records_asked_for(converted_with_warmup):
    with open(os.path.join(converted_with_warmup, "assets.extra", "tftrt_toolkit.json")) as handle:
        metadata = json.load(handle)
    assert metadata["serving_warmup"]["records"] == 2
    assert [r["batch_size"] for r in metadata["serving_warmup"]["requests"]] == [1, 3]


def test_inspect_says_how_many_records(run_cli, converted_with_warmup):
    result = run_cli("inspect", f"--model={converted_with_warmup}")
    assert ("TF Serving warmup: 2 record(s) in assets.extra/tf_serving_warmup_requests, all match the signatures; "
            "predict requests for 'serving_default' at batch sizes 1, 3") in result.out
    info = json.loads(run_cli("inspect", f"--model={converted_with_warmup}", "--json").out)
    assert info["serving_warmup"]["records"] == 2 and info["serving_warmup"]["checked"] is True


def test_inspect_of_a_model_without_warmup_says_so(run_cli, tiny_saved_model):
    result = run_cli("inspect", f"--model={tiny_saved_model}")
    assert "TF Serving warmup: none (no assets.extra/tf_serving_warmup_requests)" in result.out


@pytest.mark.parametrize("payload", [b"\x00" * 40, b"short"])
def test_inspect_of_a_corrupt_warmup_file_is_one_line(run_cli, converted_with_warmup, tmp_path, payload):
    damaged = tmp_path / "damaged"
    shutil.copytree(converted_with_warmup, damaged)
    (damaged / WARMUP_RELATIVE_PATH).write_bytes(payload)
    result = run_cli("inspect", f"--model={damaged}", expect_exit=ModelLoadError.exit_code)
    assert len(result.err.strip().splitlines()) == 1
    assert "warmup file" in result.err and "rewrite it with `tftrt convert --warmup_data=...` or delete it" in result.err


def test_inspect_of_a_mismatched_warmup_file_is_one_line(run_cli, converted_with_warmup, tmp_path):
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    mismatched = tmp_path / "mismatched"
    shutil.copytree(converted_with_warmup, mismatched)
    path = str(mismatched / WARMUP_RELATIVE_PATH)
    logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in tf.data.TFRecordDataset(path)]
    logs[0].predict_log.request.model_spec.signature_name = "predict_images"
    with tf.io.TFRecordWriter(path) as writer:
        for log in logs:
            writer.write(log.SerializeToString())
    result = run_cli("inspect", f"--model={mismatched}", expect_exit=ModelLoadError.exit_code)
    assert len(result.err.strip().splitlines()) == 1
    assert "record 1 asks for signature 'predict_images', which the model does not have (it has: serving_default)" in result.err


# ---------------------------------------------------------------- serving-config

@pytest.fixture
def serving_layout(tmp_path, converted_with_warmup):
    """BASE/1 holding the converted model, as `tftrt convert --output=BASE --version=auto` lays it out."""
    base = tmp_path / "models" / "tiny"
    base.mkdir(parents=True)
    shutil.copytree(converted_with_warmup, base / "1")
    return base


def test_serving_config_writes_both_files_and_prints_what_to_run(run_cli, serving_layout, tmp_path):
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    output = tmp_path / "config"
    result = run_cli("serving-config", f"--model_base_path={serving_layout}", "--name=tiny", f"--output={output}")
    models = text_format.Parse((output / "models.config").read_text(), model_server_config_pb2.ModelServerConfig())
    assert models.model_config_list.config[0].base_path == str(serving_layout)
    assert (output / "batching_parameters.txt").read_text().count("{ value:") == 4
    assert "no TF Serving server was run on this machine" in result.out
    assert "tensorflow/serving:2.17.1 --model_config_file=/config/models.config" in result.out
    assert "--gpus all" in result.out and "tensorflow/serving:2.17.1-gpu" in result.out
    # The model's warmup covers batch sizes 1 and 3, not the default allowed sizes: say so.
    assert "first requests at 2, 4, 8 will be slow" in result.out
    again = run_cli("serving-config", f"--model_base_path={serving_layout}", "--name=tiny", f"--output={output}", expect_exit=7)
    assert "already exists; pass --overwrite" in again.err


def test_serving_config_from_a_real_benchmark(run_cli, serving_layout, tmp_path):
    bench = tmp_path / "bench"
    run_cli("benchmark", f"--model={serving_layout / '1'}", "--batch_sizes=1,4", "--iterations=5", "--warmup=1",
            f"--output={bench}", "--noplot")
    result = run_cli("serving-config", f"--model_base_path={serving_layout}", "--name=tiny", f"--output={tmp_path / 'cfg'}",
                     f"--benchmark_report={bench / 'benchmark.json'}", "--json")
    config = json.loads(result.out)
    assert config["batching"]["max_batch_size"] in (1, 4)  # whichever the measurement favoured
    assert config["batching"]["allowed_batch_sizes"][-1] == config["batching"]["max_batch_size"]
    assert "benchmark.json" in config["batching"]["reasons"]["batch_timeout_micros"]
    assert config["run_here"] is False


@pytest.mark.parametrize("args, code, fragment", [
    (["--name=tiny"], 2, "--model_base_path is required"),
    (["--model_base_path=/nonexistent/base"], 2, "--name is required"),
    (["--model_base_path=/nonexistent/base", "--name=a b"], 2, "not a usable model name"),
])
def test_serving_config_errors_are_one_line(run_cli, tmp_path, args, code, fragment):
    result = run_cli("serving-config", *args, f"--output={tmp_path / 'cfg'}", expect_exit=code)
    assert fragment in result.err and len(result.err.strip().splitlines()) == 1
    assert not (tmp_path / "cfg").exists()


# ---------------------------------------------------------------- benchmark --concurrency

def test_benchmark_concurrency_writes_the_throughput_table_then_sizes_batch_threads(run_cli, serving_layout, tmp_path):
    pytest.importorskip("matplotlib")
    import subprocess
    import sys

    bench = tmp_path / "bench"
    # A process of its own: TF's thread pools are fixed once this test process has run a model.
    result = subprocess.run(
        [sys.executable, "-m", "tftrt_toolkit.cli.main", "benchmark", f"--model={serving_layout / '1'}", "--batch_sizes=1,2",
         "--duration=0.3", "--warmup=1", "--concurrency=1,2", "--intra_op_threads=1", f"--output={bench}"],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "clients" in result.stdout and "requests/s" in result.stdout and "intra=1" in result.stdout
    for name in ("benchmark.json", "throughput.json", "throughput.csv", "throughput.png"):
        assert (bench / name).exists(), name
    throughput = json.loads((bench / "throughput.json").read_text())
    assert [(r["batch_size"], r["concurrency"]) for r in throughput["results"]] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert throughput["settings"]["threads"]["in_force"]["intra_op_threads"] == 1
    assert (bench / "throughput.csv").read_text().count("\n") == 5
    config = json.loads(run_cli("serving-config", f"--model_base_path={serving_layout}", "--name=tiny",
                                f"--output={tmp_path / 'cfg'}", f"--benchmark_report={bench / 'benchmark.json'}", "--json").out)
    assert config["batching"]["num_batch_threads"] in (1, 2)
    assert "concurrent requests" in config["batching"]["reasons"]["num_batch_threads"]
    assert config["intra_op_threads"] == 1
    assert "--tensorflow_intra_op_parallelism=1" in config["docker_commands"]["cpu"]


def test_benchmark_concurrency_entries_are_checked(run_cli, tiny_saved_model):
    result = run_cli("benchmark", f"--model={tiny_saved_model}", "--concurrency=1,x", expect_exit=2)
    assert "--concurrency entry 'x' is not a whole number" in result.err
