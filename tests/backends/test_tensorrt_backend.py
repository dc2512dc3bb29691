"""The tensorrt backend: contract tests against TF 2.17's real trt_convert, a recording double for the
orchestration, and gpu-marked tests that run only where TensorRT and a GPU exist.

Nothing here runs TensorRT on this machine; the double records calls, it does not pretend to convert.
"""

import dataclasses
import inspect

import numpy as np
import pytest
from tensorflow.python.compiler.tensorrt import trt_convert

from tftrt_toolkit import ConversionConfig, convert
from tftrt_toolkit.backends.tensorrt import NOT_BUILT_WITH_TENSORRT, TensorRTBackend
from tftrt_toolkit.config import PROFILE_STRATEGIES
from tftrt_toolkit.environment import probe
from tftrt_toolkit.errors import BackendUnavailable, ConfigError

# ---------------------------------------------------------------- contract with trt_convert


def _parameters(function):
    return inspect.signature(function).parameters


def test_every_kwarg_we_pass_is_a_trt_graph_converter_v2_parameter():
    accepted = set(_parameters(trt_convert.TrtGraphConverterV2.__init__))
    config = ConversionConfig(backend="tensorrt", precision="int8", max_workspace_size_bytes=1 << 28,
                              use_dynamic_shape=True, dynamic_shape_profile_strategy="Optimal")
    passed = set(config.tensorrt_converter_kwargs()) | {"input_saved_model_dir", "input_saved_model_signature_key"}
    assert passed <= accepted, passed - accepted


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_precision_values_are_ones_trt_convert_accepts(precision):
    mode = ConversionConfig(backend="tensorrt", precision=precision).tensorrt_converter_kwargs()["precision_mode"]
    assert mode in trt_convert.TrtPrecisionMode.supported_precision_modes()


def test_profile_strategies_match_tf():
    assert tuple(trt_convert.supported_profile_strategies()) == PROFILE_STRATEGIES


def test_method_signatures_we_call():
    assert list(_parameters(trt_convert.TrtGraphConverterV2.convert)) == ["self", "calibration_input_fn"]
    assert list(_parameters(trt_convert.TrtGraphConverterV2.build)) == ["self", "input_fn"]
    assert {"output_saved_model_dir", "save_gpu_specific_engines"} <= set(_parameters(trt_convert.TrtGraphConverterV2.save))
    assert {"line_length", "detailed", "print_fn"} <= set(_parameters(trt_convert.TrtGraphConverterV2.summary))


def test_tf_defaults_match_our_defaults():
    defaults = trt_convert.TrtConversionParams()
    ours = ConversionConfig()
    assert (ours.minimum_segment_size, ours.maximum_cached_engines, ours.use_calibration, ours.allow_build_at_runtime) == (
        defaults.minimum_segment_size, defaults.maximum_cached_engines, defaults.use_calibration,
        defaults.allow_build_at_runtime)


@pytest.mark.skipif(probe().tensorrt_loaded_version is not None, reason="TensorRT's libraries load here")
def test_real_converter_here_fails_the_way_we_expect():
    # The failure our backend maps to BackendUnavailable: constructing the converter without TensorRT.
    with pytest.raises(RuntimeError, match="not been built with TensorRT"):
        trt_convert.TrtGraphConverterV2(input_saved_model_dir="/nonexistent")


# ---------------------------------------------------------------- orchestration, with a recording double

class RecordingConverter:
    """Stands in for TrtGraphConverterV2: records calls and runs the input functions it is given."""

    instances = []

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.calls = []
        self.fed = []
        RecordingConverter.instances.append(self)

    def _drain(self, input_fn):
        for item in input_fn():
            assert isinstance(item, tuple), "TF-TRT is fed tuples in signature order"
            self.fed.append(tuple((a.shape, a.dtype) for a in item))

    def convert(self, calibration_input_fn=None):
        self.calls.append(("convert", calibration_input_fn is not None))
        if self.kwargs.get("precision_mode") == "FP32":
            # Like TF-TRT, keep the converted graph; this one has no engines, so the plan must disagree.
            from tftrt_toolkit.backends.frozen.freeze import freeze_signature

            self._converted_graph_def = freeze_signature(
                self.kwargs["input_saved_model_dir"], self.kwargs["input_saved_model_signature_key"]).graph_def
        if calibration_input_fn is not None:
            self._drain(calibration_input_fn)

    def build(self, input_fn):
        self.calls.append(("build",))
        self._drain(input_fn)

    def summary(self, line_length=160, detailed=True, print_fn=None):
        self.calls.append(("summary",))
        print_fn("[*] Total number of TensorRT engines: 1")
        print_fn("[*] % of OPs Converted: 96.30% [26/27]")

    def save(self, output_saved_model_dir, save_gpu_specific_engines=True, options=None):
        self.calls.append(("save", save_gpu_specific_engines))
        # Write a real (unconverted) SavedModel so the artifact writer has something whole to move.
        import shutil

        shutil.copytree(self.kwargs["input_saved_model_dir"], output_saved_model_dir, dirs_exist_ok=True)


@pytest.fixture
def tensorrt_env():
    """This machine's facts with TensorRT and a GPU present: only for driving the double."""
    return dataclasses.replace(probe(), tensorflow_built_with_tensorrt=True, tensorrt_linked_version="8.6.1",
                               tensorrt_loaded_version="8.6.1", gpus=("/physical_device:GPU:0",))


@pytest.fixture
def recording_backend():
    RecordingConverter.instances.clear()
    return TensorRTBackend(converter_factory=RecordingConverter)


def _images_fn(count, batch=2):
    def input_fn():
        for _ in range(count):
            yield (np.zeros((batch, 32, 32, 3), np.float32),)
    return input_fn


def test_fp16_orchestration_and_metadata(tiny_saved_model, tmp_path, tensorrt_env, recording_backend):
    result = convert(str(tiny_saved_model), str(tmp_path / "trt"),
                     ConversionConfig(backend="tensorrt", precision="fp16", maximum_cached_engines=2),
                     env=tensorrt_env, backend=recording_backend, build_input_fn=_images_fn(2))
    converter = RecordingConverter.instances[0]
    assert converter.kwargs["input_saved_model_dir"] == str(tiny_saved_model)
    assert converter.kwargs["input_saved_model_signature_key"] == "serving_default"
    assert converter.kwargs["precision_mode"] == "FP16" and converter.kwargs["maximum_cached_engines"] == 2
    assert converter.calls == [("convert", False), ("build",), ("summary",), ("save", True)]
    summary = result.metadata["conversion_summary"]
    assert summary["tensorrt_engines"] == 1 and summary["ops_converted_percent"] == 96.3
    assert summary["engines_built_ahead_of_time"] is True
    assert result.metadata["backend"] == "tensorrt"
    # The prediction is recorded beside TF-TRT's own summary.
    assert summary["segment_plan"]["verdict"].startswith("1 engine")


def test_int8_feeds_calibration_tuples(tiny_saved_model, tmp_path, tensorrt_env, recording_backend):
    convert(str(tiny_saved_model), str(tmp_path / "trt"), ConversionConfig(backend="tensorrt", precision="int8"),
            env=tensorrt_env, backend=recording_backend, calibration_input_fn=_images_fn(3))
    converter = RecordingConverter.instances[0]
    assert converter.calls[0] == ("convert", True)
    assert converter.fed == [(((2, 32, 32, 3), np.float32),)] * 3


def test_int8_dynamic_shape_calibrates_in_build(tiny_saved_model, tmp_path, tensorrt_env, recording_backend):
    # TF-TRT calibrates inside build() in dynamic-shape mode, so the calibration inputs also build.
    convert(str(tiny_saved_model), str(tmp_path / "trt"),
            ConversionConfig(backend="tensorrt", precision="int8", use_dynamic_shape=True,
                             dynamic_shape_profile_strategy="Optimal"),
            env=tensorrt_env, backend=recording_backend, calibration_input_fn=_images_fn(2))
    converter = RecordingConverter.instances[0]
    assert converter.kwargs["dynamic_shape_profile_strategy"] == "Optimal"
    assert ("build",) in converter.calls


def test_int8_without_calibration_data_is_refused_before_converting(tiny_saved_model, tmp_path, tensorrt_env,
                                                                    recording_backend):
    with pytest.raises(ConfigError, match="--calibration_data"):
        convert(str(tiny_saved_model), str(tmp_path / "trt"), ConversionConfig(backend="tensorrt", precision="int8"),
                env=tensorrt_env, backend=recording_backend)
    assert not (tmp_path / "trt").exists()


def test_plan_is_compared_with_the_converted_graph(tiny_saved_model, tmp_path, tensorrt_env, recording_backend):
    result = convert(str(tiny_saved_model), str(tmp_path / "trt"), ConversionConfig(backend="tensorrt"),
                     env=tensorrt_env, backend=recording_backend)
    comparison = result.metadata["conversion_summary"]["segment_plan_vs_conversion"]
    assert comparison["engine_count_matches"] is False  # predicted 1 engine, the double's graph has none


def test_save_gpu_specific_engines_is_passed_through(tiny_saved_model, tmp_path, tensorrt_env, recording_backend):
    convert(str(tiny_saved_model), str(tmp_path / "trt"),
            ConversionConfig(backend="tensorrt", save_gpu_specific_engines=False),
            env=tensorrt_env, backend=recording_backend)
    assert RecordingConverter.instances[0].calls[-1] == ("save", False)


# ---------------------------------------------------------------- availability on this machine

@pytest.mark.skipif(probe().tensorrt_loaded_version is not None, reason="TensorRT's libraries load here")
def test_tensorrt_here_is_one_clear_refusal_naming_what_is_missing_and_nothing_written(tiny_saved_model, tmp_path):
    env = probe()
    with pytest.raises(BackendUnavailable) as error:
        convert(str(tiny_saved_model), str(tmp_path / "trt"), ConversionConfig(backend="tensorrt"))
    message = str(error.value)
    if env.tensorflow_built_with_tensorrt:  # the pip wheel: a TensorRT build without TensorRT's libraries
        assert "is a TensorRT build" in message and "built without TensorRT" not in message
        assert f"libnvinfer.so.{env.tensorrt_linked_version}" in message
        assert "--backend=cpu" in message
    else:
        assert message == NOT_BUILT_WITH_TENSORRT
    assert "\n" not in message
    assert list(tmp_path.iterdir()) == []


def test_auto_picks_cpu_here_and_says_why(tiny_saved_model, tmp_path):
    messages = []
    result = convert(str(tiny_saved_model), str(tmp_path / "auto"), ConversionConfig(), progress=messages.append)
    if not probe().tensorrt_usable:
        assert result.backend == "cpu"
        reason = result.metadata["backend_reason"]
        assert any(why in reason for why in ("built without TensorRT", "libnvinfer.so", "no GPU")), reason
        assert reason.endswith("using the cpu backend (oneDNN)")
        assert any("backend cpu" in m for m in messages)


# ---------------------------------------------------------------- real TensorRT (GPU machines only)

@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_real_tensorrt_conversion_matches_original(tiny_saved_model, tmp_path, precision, random_images):
    import tensorflow as tf

    result = convert(str(tiny_saved_model), str(tmp_path / precision), ConversionConfig(backend="tensorrt", precision=precision))
    assert result.metadata["conversion_summary"]["tensorrt_engines"] >= 1
    original = tf.saved_model.load(str(tiny_saved_model)).signatures["serving_default"]
    converted = tf.saved_model.load(result.path).signatures["serving_default"]
    a = original(images=tf.constant(random_images))["probabilities"].numpy()
    b = converted(images=tf.constant(random_images))["probabilities"].numpy()
    np.testing.assert_allclose(a, b, atol=1e-3 if precision == "fp32" else 2e-2)
