"""TF Serving warmup records: what TF Serving replays when it loads a converted model.

The file is parsed here with TF Serving's own protos (tensorflow-serving-api, the serving extra),
record by record, checked against the SavedModel's SignatureDef, and replayed through
tf.saved_model.load(...).signatures[...] the way TF Serving's warmup runs it.
"""

import errno
import os

import numpy as np
import pytest

from tftrt_toolkit import ConversionConfig, convert
from tftrt_toolkit.errors import ConfigError, DataError, ModelLoadError, OutputError
from tftrt_toolkit.serving import warmup

prediction_log_pb2 = pytest.importorskip("tensorflow_serving.apis.prediction_log_pb2",
                                         reason="needs the serving extra: pip install 'tftrt_toolkit[serving]'")


def _records(model_dir):
    import tensorflow as tf

    path = os.path.join(model_dir, "assets.extra", "tf_serving_warmup_requests")
    logs = []
    for data in tf.data.TFRecordDataset(path):
        log = prediction_log_pb2.PredictionLog()
        log.ParseFromString(data.numpy())
        logs.append(log)
    return logs


def _signature_def(model_dir, key="serving_default"):
    from tensorflow.python.saved_model import loader_impl

    return loader_impl.parse_saved_model(str(model_dir)).meta_graphs[0].signature_def[key]


@pytest.fixture(scope="module")
def converted_with_warmup(tiny_saved_model, tmp_path_factory):
    output = tmp_path_factory.mktemp("warmup") / "fp32"
    return convert(str(tiny_saved_model), str(output),
                   ConversionConfig(backend="cpu", warmup_data="synthetic", warmup_batch_sizes=(1, 3)))


def test_records_parse_match_the_signature_and_replay(converted_with_warmup):
    import tensorflow as tf

    path = converted_with_warmup.path
    signature = _signature_def(path)
    logs = _records(path)
    assert len(logs) == 2
    for log, batch_size in zip(logs, (1, 3)):
        assert log.WhichOneof("log_type") == "predict_log"
        request = log.predict_log.request
        assert request.model_spec.signature_name == "serving_default"
        assert set(request.inputs) == set(signature.inputs) == {"images"}
        tensor = request.inputs["images"]
        assert tensor.dtype == signature.inputs["images"].dtype  # the DataType enum, exactly
        assert [d.size for d in tensor.tensor_shape.dim] == [batch_size, 32, 32, 3]
    # Replay every request the way TF Serving's warmup does: the model's own signature function.
    loaded = tf.saved_model.load(path)
    function = loaded.signatures["serving_default"]
    for log in logs:
        request = log.predict_log.request
        outputs = function(**{name: tf.constant(tf.make_ndarray(t)) for name, t in request.inputs.items()})
        assert outputs["probabilities"].shape == (request.inputs["images"].tensor_shape.dim[0].size, 10)
    assert warmup.replay_warmup_file(path) == 2


def test_metadata_records_the_warmup(converted_with_warmup):
    record = converted_with_warmup.metadata["serving_warmup"]
    assert record["records"] == 2 and record["file"] == "assets.extra/tf_serving_warmup_requests"
    assert [r["batch_size"] for r in record["requests"]] == [1, 3]
    assert record["data"] == "synthetic data"
    assert converted_with_warmup.metadata["config"]["warmup_batch_sizes"] == [1, 3]


def test_image_directory_feeds_the_records(tiny_saved_model, tmp_path):
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    for index in range(2):
        Image.fromarray(np.full((40, 40, 3), 60 * index, np.uint8)).save(images / f"{index}.png")
    result = convert(str(tiny_saved_model), str(tmp_path / "out"),
                     ConversionConfig(backend="cpu", warmup_data=str(images), warmup_batch_sizes=(4,)))
    (log,) = _records(result.path)
    import tensorflow as tf

    values = tf.make_ndarray(log.predict_log.request.inputs["images"])
    assert values.shape == (4, 32, 32, 3)
    np.testing.assert_array_equal(values[2], values[0])  # two images repeated to fill the batch of 4
    assert "directory" in result.metadata["serving_warmup"]["data"]


def test_default_comes_from_build_shapes_and_none_turns_it_off(tiny_saved_model, tmp_path):
    built = convert(str(tiny_saved_model), str(tmp_path / "built"), ConversionConfig(backend="cpu", build_shapes=((2, 32, 32, 3),)))
    assert [r["shapes"]["images"] for r in built.metadata["serving_warmup"]["requests"]] == [[2, 32, 32, 3]]
    off = convert(str(tiny_saved_model), str(tmp_path / "off"),
                  ConversionConfig(backend="cpu", build_shapes=((2, 32, 32, 3),), warmup_data="none"))
    assert off.metadata["serving_warmup"]["records"] == 0
    assert not os.path.exists(os.path.join(off.path, warmup.WARMUP_RELATIVE_PATH))
    plain = convert(str(tiny_saved_model), str(tmp_path / "plain"), ConversionConfig(backend="cpu"))
    assert plain.metadata["serving_warmup"] == {"records": 0, "reason": "no warmup data: pass --warmup_data=SPEC or --warmup_batch_sizes"}


def test_data_that_cannot_feed_the_model_leaves_nothing(tiny_saved_model, tmp_path):
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(DataError):
        convert(str(tiny_saved_model), str(tmp_path / "out"), ConversionConfig(backend="cpu", warmup_data=str(wrong)))
    assert sorted(os.listdir(tmp_path)) == ["wrong.npy"]


def test_a_failed_warmup_write_leaves_nothing(tiny_saved_model, tmp_path, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(warmup, "write_warmup_file", disk_full)
    with pytest.raises(OutputError, match="disk full"):
        convert(str(tiny_saved_model), str(tmp_path / "out"), ConversionConfig(backend="cpu", warmup_data="synthetic"))
    assert os.listdir(tmp_path) == []


def test_asking_for_warmup_without_the_serving_extra_is_refused_before_work(tiny_saved_model, tmp_path, monkeypatch):
    monkeypatch.setattr(warmup, "serving_api_available", lambda: False)
    monkeypatch.setattr(warmup, "_serving_protos", lambda: (_ for _ in ()).throw(ConfigError("needs tftrt_toolkit[serving]")))
    with pytest.raises(ConfigError, match="serving"):
        convert(str(tiny_saved_model), str(tmp_path / "out"), ConversionConfig(backend="cpu", warmup_batch_sizes=(1,)))
    assert os.listdir(tmp_path) == []
    # A default warmup (build shapes, nothing asked) is skipped and the metadata says why.
    result = convert(str(tiny_saved_model), str(tmp_path / "built"), ConversionConfig(backend="cpu", build_shapes=((1, 32, 32, 3),)))
    assert result.metadata["serving_warmup"]["records"] == 0
    assert "tensorflow-serving-api" in result.metadata["serving_warmup"]["reason"]


@pytest.mark.parametrize("changes, fragment", [
    ({"warmup_batch_sizes": (0,)}, "warmup batch size 0"),
    ({"warmup_batch_sizes": (8, 8)}, "repeats"),
    ({"warmup_batch_sizes": ("x",)}, "not a whole number"),
    ({"warmup_data": ""}, "warmup_data"),
])
def test_bad_warmup_options_name_the_field(changes, fragment):
    with pytest.raises(ConfigError, match=fragment):
        ConversionConfig(**changes)


# ---------------------------------------------------------------- reading back: corrupt and mismatched files

def _copy_with_warmup(source_dir, target_dir, payload: bytes):
    import shutil

    shutil.copytree(source_dir, target_dir)
    path = os.path.join(target_dir, warmup.WARMUP_RELATIVE_PATH)
    with open(path, "wb") as handle:
        handle.write(payload)
    return target_dir


def _write_records(model_dir, logs):
    import tensorflow as tf

    path = os.path.join(model_dir, warmup.WARMUP_RELATIVE_PATH)
    with tf.io.TFRecordWriter(path) as writer:
        for log in logs:
            writer.write(log.SerializeToString())


def test_truncated_file_is_one_clear_error(converted_with_warmup, tmp_path):
    with open(os.path.join(converted_with_warmup.path, warmup.WARMUP_RELATIVE_PATH), "rb") as handle:
        data = handle.read()
    damaged = _copy_with_warmup(converted_with_warmup.path, tmp_path / "damaged", data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="not a readable TFRecord file"):
        warmup.read_warmup_file(str(damaged))


@pytest.mark.parametrize("mutate, fragment", [
    (lambda request: setattr(request.model_spec, "signature_name", "classify"), "asks for signature 'classify'"),
    (lambda request: request.inputs["images"].__setattr__("dtype", 3), "as int32, but signature 'serving_default' takes float32"),
    (lambda request: request.inputs["pixels"].CopyFrom(request.inputs.pop("images")), "lacks input(s) images"),
    (lambda request: request.inputs["images"].tensor_shape.dim[1].__setattr__("size", 64), "takes ?x32x32x3"),
])
def test_mismatched_record_is_one_clear_error(converted_with_warmup, tmp_path, mutate, fragment):
    logs = _records(converted_with_warmup.path)
    mutate(logs[1].predict_log.request)
    mismatched = _copy_with_warmup(converted_with_warmup.path, tmp_path / "mismatched", b"")
    _write_records(str(mismatched), logs)
    with pytest.raises(ModelLoadError) as error:
        warmup.read_warmup_file(str(mismatched))
    message = str(error.value)
    assert "record 2" in message and fragment in message and "\n" not in message


def test_a_record_that_is_not_a_prediction_log(converted_with_warmup, tmp_path):
    import tensorflow as tf

    damaged = _copy_with_warmup(converted_with_warmup.path, tmp_path / "junk", b"")
    with tf.io.TFRecordWriter(os.path.join(str(damaged), warmup.WARMUP_RELATIVE_PATH)) as writer:
        writer.write(b"\xff\xff\xff not a proto")
    with pytest.raises(ModelLoadError, match="record 1 is not a tensorflow.serving.PredictionLog"):
        warmup.read_warmup_file(str(damaged))


# ---------------------------------------------------------------- tensorrt: every build shape is warmed up

def _recording_converter():
    """The recording TrtGraphConverterV2 double of tests/backends/test_tensorrt_backend.py (one double, not two)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "backends" / "test_tensorrt_backend.py"
    spec = importlib.util.spec_from_file_location("tensorrt_backend_tests", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.RecordingConverter


def test_tensorrt_warmup_records_cover_every_build_shape(tiny_saved_model, tmp_path):
    # TF Serving replays the warmup file before a version takes traffic: every engine the conversion
    # prepared (one per build shape) must be loaded by some record, whatever batch sizes were asked for.
    import dataclasses

    from tftrt_toolkit.backends.tensorrt import TensorRTBackend
    from tftrt_toolkit.environment import probe

    recording = _recording_converter()
    recording.instances.clear()
    # This machine's facts with TensorRT and a GPU present: only for driving the double (nothing runs TensorRT).
    env = dataclasses.replace(probe(), tensorflow_built_with_tensorrt=True, tensorrt_linked_version="8.6.1",
                              tensorrt_loaded_version="8.6.1", gpus=("/physical_device:GPU:0",))
    result = convert(str(tiny_saved_model), str(tmp_path / "trt"),
                     ConversionConfig(backend="tensorrt", precision="fp16", build_shapes=((1, 32, 32, 3), (4, 32, 32, 3)),
                                      warmup_data="synthetic", warmup_batch_sizes=(2,)),
                     env=env, backend=TensorRTBackend(converter_factory=recording))
    assert sorted(recording.instances[0].fed) == [(((1, 32, 32, 3), np.float32),), (((4, 32, 32, 3), np.float32),)]
    checked = warmup.read_warmup_file(result.path)
    assert sorted(tuple(r["shapes"]["images"]) for r in checked.requests) == [(1, 32, 32, 3), (2, 32, 32, 3), (4, 32, 32, 3)]
    origins = {r["batch_size"]: r["origin"] for r in result.metadata["serving_warmup"]["requests"]}
    assert origins == {2: "data", 1: "build shape", 4: "build shape"}
    # Without warmup options the build shapes alone are the records (TF-TRT's default for serving).
    default = convert(str(tiny_saved_model), str(tmp_path / "trt-default"),
                      ConversionConfig(backend="tensorrt", precision="fp16", build_shapes=((1, 32, 32, 3), (4, 32, 32, 3))),
                      env=env, backend=TensorRTBackend(converter_factory=recording))
    assert [r["batch_size"] for r in default.metadata["serving_warmup"]["requests"]] == [1, 4]
