"""ConversionConfig: the one place options are validated, and their translation to TF-TRT."""

import pytest

from tftrt_toolkit.config import Backend, ConversionConfig, Precision
from tftrt_toolkit.errors import ConfigError


def test_defaults_are_tf_trt_defaults():
    config = ConversionConfig()
    assert config.backend is Backend.AUTO and config.precision is Precision.FP32
    assert config.minimum_segment_size == 3 and config.maximum_cached_engines == 1


def test_strings_are_accepted_and_stored_as_enums():
    config = ConversionConfig(backend="CPU", precision="BF16")
    assert config.backend is Backend.CPU and config.precision is Precision.BF16


@pytest.mark.parametrize("field, value, fragment", [
    ("precision", "fp8", "precision='fp8' is not valid"),
    ("backend", "openvino", "backend='openvino' is not valid"),
    ("max_workspace_size_bytes", -1, "max_workspace_size_bytes=-1 is out of range"),
    ("max_workspace_size_bytes", 1 << 50, "is out of range"),
    ("minimum_segment_size", 0, "minimum_segment_size=0 is out of range"),
    ("maximum_cached_engines", 0, "maximum_cached_engines=0 is out of range"),
    ("maximum_cached_engines", 100000, "out of range"),
    ("batch_size", 0, "batch_size=0 is out of range"),
    ("calibration_steps", -3, "calibration_steps=-3 is out of range"),
    ("build_shapes", ((1, 0, 3),), "every dimension must be a positive integer"),
])
def test_bad_values_name_the_field(field, value, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace("[", r"\[")):
        ConversionConfig(**{field: value})


@pytest.mark.parametrize("backend, precision, fragment", [
    ("cpu", "fp16", "use --precision=bf16"),
    ("tensorrt", "bf16", "not supported by TF-TRT"),
])
def test_impossible_backend_precision_pairs_are_refused(backend, precision, fragment):
    with pytest.raises(ConfigError, match=fragment):
        ConversionConfig(backend=backend, precision=precision)


def test_profile_strategy_needs_dynamic_shape_and_a_known_name():
    with pytest.raises(ConfigError, match="needs use_dynamic_shape"):
        ConversionConfig(dynamic_shape_profile_strategy="Optimal")
    with pytest.raises(ConfigError, match="Range, Optimal"):
        ConversionConfig(use_dynamic_shape=True, dynamic_shape_profile_strategy="Fastest")
    ConversionConfig(use_dynamic_shape=True, dynamic_shape_profile_strategy="Range+Optimal")


def test_tensorrt_kwargs_use_tf_trt_names_and_upper_case_precision():
    kwargs = ConversionConfig(backend="tensorrt", precision="fp16", maximum_cached_engines=4,
                              max_workspace_size_bytes=1 << 30, use_dynamic_shape=True).tensorrt_converter_kwargs()
    assert kwargs == {
        "precision_mode": "FP16", "minimum_segment_size": 3, "maximum_cached_engines": 4,
        "use_calibration": True, "allow_build_at_runtime": True, "use_dynamic_shape": True,
        "max_workspace_size_bytes": 1 << 30, "dynamic_shape_profile_strategy": "Range",
    }


def test_json_round_trip():
    config = ConversionConfig(backend="cpu", precision="bf16", build_shapes=((1, 8, 8, 3),))
    assert ConversionConfig.from_json(config.to_json()) == config


def test_replace_validates_again():
    with pytest.raises(ConfigError):
        ConversionConfig(backend="cpu").replace(precision="fp16")


@pytest.mark.parametrize("switch", ["int8_fuse_residual_adds", "int8_bias_correction", "use_calibration",
                                    "allow_partial_precision"])
def test_a_switch_that_is_not_true_or_false_is_one_clear_error(switch):
    with pytest.raises(ConfigError, match=f"{switch}='no' is not valid; use True or False"):
        ConversionConfig(backend="cpu", precision="int8", **{switch: "no"})
