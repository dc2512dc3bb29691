"""serving-config's files parse as TF Serving's own messages, and their values follow the measurements given.

models.config is parsed with tensorflow_serving.config.model_server_config_pb2 (the serving extra).
batching_parameters.txt is parsed against TF Serving's BatchingParameters message, built here from
its field list as read from tensorflow/serving, tensorflow_serving/servables/tensorflow/
session_bundle_config.proto at commit 03f8b6b5fceec0df896da1e85d02b101b4ff2b7a (message
BatchingParameters; the pip package ships no Python module for that file).
"""

import json
import os

import pytest

from tftrt_toolkit.errors import ConfigError
from tftrt_toolkit.serving.model_config import (BATCHING_PARAMETERS_FILE, DEFAULT_BATCH_TIMEOUT_MICROS,
                                                DEFAULT_MAX_BATCH_SIZE, MIN_THROUGHPUT_GAIN, serving_config)

model_server_config_pb2 = pytest.importorskip("tensorflow_serving.config.model_server_config_pb2",
                                              reason="needs the serving extra: pip install 'tftrt_toolkit[serving]'")

# BatchingParameters in session_bundle_config.proto (tensorflow/serving @ 03f8b6b5): (name, number, type, label).
BATCHING_PARAMETERS_FIELDS = (
    ("max_batch_size", 1, ".google.protobuf.Int64Value", "optional"),
    ("batch_timeout_micros", 2, ".google.protobuf.Int64Value", "optional"),
    ("max_enqueued_batches", 3, ".google.protobuf.Int64Value", "optional"),
    ("num_batch_threads", 4, ".google.protobuf.Int64Value", "optional"),
    ("thread_pool_name", 5, ".google.protobuf.StringValue", "optional"),
    ("allowed_batch_sizes", 6, "int64", "repeated"),
    ("pad_variable_length_inputs", 7, "bool", "optional"),
)


def batching_parameters_class():
    """TF Serving's tensorflow.serving.BatchingParameters as a Python message class."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    file_proto = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/servables/tensorflow/session_bundle_config.proto", package="tensorflow.serving",
        syntax="proto3", dependency=["google/protobuf/wrappers.proto"])
    message = file_proto.message_type.add(name="BatchingParameters")
    field_types = descriptor_pb2.FieldDescriptorProto
    for name, number, type_name, label in BATCHING_PARAMETERS_FIELDS:
        field = message.field.add(name=name, number=number, json_name=name)
        field.label = field_types.LABEL_REPEATED if label == "repeated" else field_types.LABEL_OPTIONAL
        if type_name.startswith("."):
            field.type, field.type_name = field_types.TYPE_MESSAGE, type_name
        else:
            field.type = {"int64": field_types.TYPE_INT64, "bool": field_types.TYPE_BOOL}[type_name]
    pool.Add(file_proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters"))


def parse_batching(text):
    from google.protobuf import text_format

    return text_format.Parse(text, batching_parameters_class()())


def parse_models_config(text):
    from google.protobuf import text_format

    return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())


@pytest.fixture
def base_path(tmp_path):
    """A serving layout with one version: BASE/1/saved_model.pb (empty: only the layout matters here)."""
    version = tmp_path / "models" / "lite0" / "1"
    version.mkdir(parents=True)
    (version / "saved_model.pb").write_bytes(b"")
    return version.parent


def _write_metadata(version_dir, metadata):
    (version_dir / "assets.extra").mkdir(exist_ok=True)
    (version_dir / "assets.extra" / "tftrt_toolkit.json").write_text(json.dumps(metadata))


def _benchmark_json(path, points, cpu_count=2, intra=0):
    """A benchmark.json as `tftrt benchmark --output` writes it: {batch size: (samples/s, p50 ms)}."""
    results = [{"role": "optimized", "model": "m", "batch_size": b, "runs": 20, "first_call_ms": 50.0,
                "latency_ms": {"min": p50, "mean": p50, "p50": p50, "p90": p50, "p99": p50, "max": p50},
                "throughput": rate, "peak_rss_mb": 1.0} for b, (rate, p50) in points.items()]
    settings = {"batch_sizes": list(points), "cpu_count": cpu_count,
                "threads": {"intra_op_threads": intra or None, "inter_op_threads": None,
                            "in_force": {"intra_op_threads": intra, "inter_op_threads": 0}}}
    path.write_text(json.dumps({"settings": settings, "models": {}, "results": results, "speedups": []}))
    return path


def test_defaults_parse_as_tf_serving_messages(base_path):
    config = serving_config(str(base_path), "lite0", cpu_count=2)
    models = parse_models_config(config.models_config_text())
    (model,) = models.model_config_list.config
    assert (model.name, model.base_path, model.model_platform) == ("lite0", str(base_path), "tensorflow")
    assert model.model_version_policy.WhichOneof("policy_choice") == "latest"
    assert model.model_version_policy.latest.num_versions == 1
    batching = parse_batching(config.batching_parameters_text())
    assert batching.max_batch_size.value == DEFAULT_MAX_BATCH_SIZE
    assert batching.batch_timeout_micros.value == DEFAULT_BATCH_TIMEOUT_MICROS
    assert batching.num_batch_threads.value == 2 == batching.max_enqueued_batches.value
    # TF Serving's rules: increasing, and the last one equals max_batch_size.
    assert list(batching.allowed_batch_sizes) == [1, 2, 4, 8]


def test_every_field_written_is_one_tf_serving_defines(base_path):
    import re

    text = serving_config(str(base_path), "lite0").batching_parameters_text()
    written = {re.match(r"(\w+)", line).group(1) for line in text.splitlines() if line and not line.startswith("#")}
    assert written == {"max_batch_size", "batch_timeout_micros", "num_batch_threads", "max_enqueued_batches",
                       "allowed_batch_sizes"}
    assert written <= {name for name, *_ in BATCHING_PARAMETERS_FIELDS}


def test_batching_follows_a_benchmark_report(base_path, tmp_path):
    # Throughput climbs to batch 8 and then flattens (+1.7% at 32, under the 5% that counts as better).
    report = _benchmark_json(tmp_path / "benchmark.json", {1: (100.0, 9.87), 8: (300.0, 26.0), 32: (305.0, 105.0)}, cpu_count=4)
    config = serving_config(str(base_path), "lite0", benchmark_report=str(report))
    batching = parse_batching(config.batching_parameters_text())
    assert batching.max_batch_size.value == 8
    assert list(batching.allowed_batch_sizes) == [1, 8]
    assert batching.batch_timeout_micros.value == 9870  # the measured p50 at batch 1
    assert batching.num_batch_threads.value == 4  # the measured machine's CPUs
    assert "benchmark.json" in config.batching.reasons["max_batch_size"]
    assert 305.0 / 300.0 < 1 + MIN_THROUGHPUT_GAIN


def test_concurrency_measurement_sets_the_batch_threads(base_path, tmp_path):
    report = _benchmark_json(tmp_path / "benchmark.json", {1: (100.0, 10.0), 8: (300.0, 26.0)})
    rows = [{"role": "optimized", "batch_size": 8, "concurrency": c, "samples_per_second": rate, "requests_per_second": rate / 8}
            for c, rate in ((1, 300.0), (2, 410.0), (4, 420.0))]
    (tmp_path / "throughput.json").write_text(json.dumps({"settings": {"concurrency": [1, 2, 4]}, "results": rows}))
    config = serving_config(str(base_path), "lite0", benchmark_report=str(report))
    assert config.batching.num_batch_threads == 2  # 410/s is within 5% of the best (420/s) with half the threads
    assert config.batching.max_enqueued_batches == 2


def test_tune_report_gives_threads_and_latency(base_path, tmp_path):
    tune = {"batch_size": 1, "chosen": "cpu-fp32@1x1", "table": [
        {"candidate": "original", "p50_ms": 20.0},
        {"candidate": "cpu-fp32@1x1", "p50_ms": 12.5, "throughput": 80.0, "intra_op_threads": 1, "inter_op_threads": 1}]}
    (tmp_path / "tune.json").write_text(json.dumps(tune))
    config = serving_config(str(base_path), "lite0", tune_report=str(tmp_path / "tune.json"))
    assert config.batching.batch_timeout_micros == 12500
    cpu_line = config.docker_commands(str(tmp_path / "config"))["cpu"]
    assert "--tensorflow_intra_op_parallelism=1" in cpu_line and "--tensorflow_inter_op_parallelism=1" in cpu_line


def test_a_tensorrt_model_batches_at_its_build_sizes(base_path):
    _write_metadata(base_path / "1", {"backend": "tensorrt", "config": {"build_shapes": [[1, 224, 224, 3], [8, 224, 224, 3]]},
                                      "serving_warmup": {"records": 2, "requests": [{"batch_size": 1}, {"batch_size": 8}]}})
    config = serving_config(str(base_path), "lite0")
    assert config.batching.allowed_batch_sizes == (1, 8) and config.batching.max_batch_size == 8
    assert config.backend == "tensorrt" and config.notes == ()


def test_a_note_when_warmup_does_not_cover_the_allowed_batch_sizes(base_path):
    _write_metadata(base_path / "1", {"backend": "cpu", "serving_warmup": {"records": 1, "requests": [{"batch_size": 1}]}})
    (note,) = serving_config(str(base_path), "lite0").notes
    assert "first requests at 2, 4, 8 will be slow" in note and "--warmup_batch_sizes=1,2,4,8" in note


@pytest.mark.parametrize("name", ["", "my model", "a/b", "-x"])
def test_unusable_names_are_refused(base_path, name):
    with pytest.raises(ConfigError, match="model name"):
        serving_config(str(base_path), name)


def test_a_base_path_without_versions_is_refused(tmp_path):
    (tmp_path / "model").mkdir()
    with pytest.raises(ConfigError, match="no version directory"):
        serving_config(str(tmp_path / "model"), "m")


def test_a_base_path_elsewhere_is_written_as_given():
    config = serving_config("/models/on/the/server", "m")
    assert parse_models_config(config.models_config_text()).model_config_list.config[0].base_path == "/models/on/the/server"
    assert any("not a directory here" in note for note in config.notes)


@pytest.mark.parametrize("content, fragment", [(None, "does not exist"), ("{not json", "not readable JSON"),
                                               ("[]", "not a tftrt report"), ('{"results": []}', "no benchmark results")])
def test_bad_reports_are_one_clear_error(base_path, tmp_path, content, fragment):
    path = tmp_path / "report.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=fragment):
        serving_config(str(base_path), "m", benchmark_report=str(path))


def test_file_names_are_the_documented_ones(tmp_path):
    from tftrt_toolkit.serving.model_config import output_paths

    assert [os.path.basename(p) for p in output_paths(str(tmp_path))] == ["models.config", BATCHING_PARAMETERS_FILE]
    assert BATCHING_PARAMETERS_FILE == "batching_parameters.txt"


def test_a_model_that_needs_onednn_gets_the_switch_in_its_docker_lines(base_path, tmp_path):
    _write_metadata(base_path / "1", {"backend": "cpu", "runtime": {"requires_onednn": True, "why": "fused ops"},
                                      "serving_warmup": {"records": 4, "requests": [{"batch_size": b} for b in (1, 2, 4, 8)]}})
    config = serving_config(str(base_path), "lite0")
    commands = config.docker_commands(str(tmp_path))
    assert "-e TF_ENABLE_ONEDNN_OPTS=1" in commands["cpu"] and "-e TF_ENABLE_ONEDNN_OPTS=1" in commands["gpu"]
    assert config.notes == ("the model needs TF's oneDNN ops (fused ops): the docker lines set TF_ENABLE_ONEDNN_OPTS=1",)
    _write_metadata(base_path / "1", {"backend": "cpu"})
    assert "TF_ENABLE_ONEDNN_OPTS" not in serving_config(str(base_path), "lite0").docker_commands(str(tmp_path))["cpu"]


def test_a_report_of_batch_size_1_only_says_so(base_path, tmp_path):
    report = _benchmark_json(tmp_path / "benchmark.json", {1: (100.0, 10.0)})
    config = serving_config(str(base_path), "lite0", benchmark_report=str(report))
    assert config.batching.max_batch_size == DEFAULT_MAX_BATCH_SIZE
    assert "benchmark.json measured batch size 1 only" in config.batching.reasons["max_batch_size"]
    assert config.batching.batch_timeout_micros == 10000


def test_a_model_split_into_token_branches_is_served_at_the_threads_it_records(base_path, tmp_path):
    # No tune: the conversion's own record (runtime.serving_threads) sets TF Serving's pools.
    _write_metadata(base_path / "1", {"backend": "cpu", "runtime": {"requires_onednn": False, "serving_threads": {
        "objective": "latency", "intra_op_threads": 1, "inter_op_threads": 2,
        "reason": "the conversion split the per-token work into 2 branches"}}})
    config = serving_config(str(base_path), "lite0")
    cpu_line = config.docker_commands(str(tmp_path / "config"))["cpu"]
    assert "--tensorflow_intra_op_parallelism=1" in cpu_line and "--tensorflow_inter_op_parallelism=2" in cpu_line
