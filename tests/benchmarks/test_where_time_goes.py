"""benchmarks/where_time_goes.py on the tiny model: per-op and per-primitive times per thread count."""

import json

import pytest


@pytest.fixture(scope="module")
def where_time_goes(benchmark_script):
    with benchmark_script("where_time_goes.py") as module:
        yield module


def test_tiny_model_profile_names_the_ops_that_ran(where_time_goes, tiny_saved_model, tmp_path):
    report = where_time_goes.main([f"--model={tiny_saved_model}", "--threads=1", "--calls=3", "--traced_calls=2",
                                   f"--output={tmp_path / 'tiny'}"])

    [run] = report["runs"]
    assert run["threads"] == 1 and run["median_ms"] > 0
    # The tiny model is conv -> BN -> ReLU: TF ran a convolution kernel (oneDNN's or Eigen's).
    assert any("Conv2D" in op for op in run["op_types"]), run["op_types"]
    assert all(v["ms_per_call"] >= 0 for v in run["op_types"].values())
    written = json.loads((tmp_path / "tiny.json").read_text())
    assert written["runs"][0]["op_types"].keys() == run["op_types"].keys()
    assert "| 1 |" in (tmp_path / "tiny.md").read_text()


def test_onednn_verbose_lines_are_summed_between_the_marks(where_time_goes):
    mark = where_time_goes.MARK
    conv = "onednn_verbose,primitive,exec,cpu,convolution,brgconv:avx512_core_amx,forward_training,src,,,mb1,0.5"
    stdout = "\n".join([conv, mark, conv, conv, mark.replace("start", "end"), conv])  # warm-up and after: not counted

    [primitive] = where_time_goes.onednn_primitive_times(stdout, calls=2)

    assert primitive == {"kind": "convolution", "implementation": "brgconv:avx512_core_amx",
                         "per_call": 1.0, "ms_per_call": 0.5}


def test_a_directory_that_is_not_a_saved_model_is_one_clear_error(where_time_goes, tmp_path):
    with pytest.raises(SystemExit, match="is not a SavedModel directory"):
        where_time_goes.main([f"--model={tmp_path}"])


def test_openvino_int8_layers_are_summed_per_call_next_to_tf(where_time_goes, tiny_saved_model, tmp_path):
    """The peer's floor beside ours: NNCF int8 layers, their per-call sum and its share of OpenVINO's wall."""
    try:
        import nncf  # noqa: F401
        import openvino  # noqa: F401  (both: the peers extra)
    except ImportError:
        pytest.skip("OpenVINO int8 needs the peers extra: pip install 'tftrt_toolkit[peers]'")
    report = where_time_goes.main([f"--model={tiny_saved_model}", f"--openvino_model={tiny_saved_model}",
                                   "--openvino_precision=int8", "--calibration_data=synthetic", "--threads=1",
                                   "--calls=3", "--traced_calls=3", f"--output={tmp_path / 'tiny'}"])

    peer = report["runs"][0]["openvino"]
    assert peer["precision"] == "int8" and 0 < peer["layers_ms_per_call"]
    assert any("i8" in layer["implementation"].lower() for layer in peer["layers"]), peer["layers"]
    text = (tmp_path / "tiny.md").read_text()
    assert "OpenVINO layers (share of its wall)" in text and "Regenerate: `python benchmarks/where_time_goes.py" in text
