"""tftrt convert as users run it: one line per error, exit codes, nothing left behind."""

import os

import pytest

from tftrt_toolkit.environment import probe

from tests.extras import needs_inc

def test_convert_cpu_fp32_then_refuses_to_overwrite(tftrt, tiny_saved_model, tmp_path):
    out_dir = tmp_path / "fp32"
    code, out, err = tftrt("convert", f"--model={tiny_saved_model}", f"--output={out_dir}",
                           "--backend=cpu", "--precision=fp32")
    assert code == 0, err
    assert "backend=cpu precision=fp32" in out
    assert (out_dir / "assets.extra" / "tftrt_toolkit.json").exists()
    code, _, err = tftrt("convert", f"--model={tiny_saved_model}", f"--output={out_dir}", "--backend=cpu")
    assert code == 7 and "already exists; pass --overwrite" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.skipif(probe().tensorrt_loaded_version is not None, reason="TensorRT's libraries load here")
def test_convert_tensorrt_here_is_one_line_and_no_output(tftrt, tiny_saved_model, tmp_path):
    code, out, err = tftrt("convert", f"--model={tiny_saved_model}", f"--output={tmp_path / 'trt'}",
                           "--backend=tensorrt")
    assert code == 5
    assert len(err.strip().splitlines()) == 1 and err.startswith("tftrt convert: error: ")
    if probe().tensorflow_built_with_tensorrt:  # pip's TF 2.17.1: built with TensorRT 8.6.1, libraries absent
        assert "built without TensorRT" not in err
        assert f"libnvinfer.so.{probe().tensorrt_linked_version}" in err
    else:
        assert "built without TensorRT" in err
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("args, code, fragment", [
    (["--output=OUT"], 2, "--model is required"),
    (["--model=MODEL"], 2, "--output is required"),
    (["--model=/nonexistent/model", "--output=OUT"], 3, "does not exist"),
    (["--model=keras:VGG61", "--weights=none", "--output=OUT"], 3, "Did you mean keras:VGG19, keras:VGG16?"),
    (["--model=MODEL", "--output=OUT", "--backend=cpu", "--precision=fp16"], 2, "use --precision=bf16"),
    (["--model=MODEL", "--output=OUT", "--precision=fp64"], 2, "--precision='fp64' is not valid"),
    (["--model=MODEL", "--output=OUT", "--maximum_cached_engines=0"], 2, "maximum_cached_engines=0 is out of range"),
    (["--model=MODEL", "--output=OUT", "--minimum_segment_size=-1"], 2, "minimum_segment_size=-1"),
    (["--model=MODEL", "--output=OUT", "--max_workspace_size_bytes=-5"], 2, "max_workspace_size_bytes=-5"),
    (["--model=MODEL", "--output=OUT", "--batch_size=0"], 2, "batch_size=0"),
    (["--model=MODEL", "--output=MODEL/inside"], 7, "inside the input model"),
    (["--model=MODEL", "--output=MODEL"], 7, "is the input model"),
    (["--model=MODEL", "--output=OUT", "--dynamic_shape_profile_strategy=Fast", "--use_dynamic_shape"], 2, "Range, Optimal"),
    (["--model=MODEL", "--output=OUT", "--no_such_flag=1"], 2, "no_such_flag"),
    (["--flagfile=/nonexistent.flags"], 2, "nonexistent.flags"),
    (["--model=MODEL", "--output=OUT", "--version=latest"], 7, "--version='latest' is not valid"),
])
def test_convert_errors_are_one_line_with_exit_codes(tftrt, tiny_saved_model, tmp_path, args, code, fragment):
    args = [a.replace("MODEL", str(tiny_saved_model)).replace("OUT", str(tmp_path / "out")) for a in args]
    before = sorted(os.listdir(tiny_saved_model))
    got, _, err = tftrt("convert", *args)
    assert got == code, err
    assert fragment in err
    error_lines = [line for line in err.splitlines() if line.startswith("tftrt convert: error:") or "Error" in line]
    assert "Traceback" not in err and len(error_lines) == 1, err
    assert fragment in error_lines[0]
    assert not (tmp_path / "out").exists()
    assert sorted(os.listdir(tiny_saved_model)) == before


def test_flagfile_recipe(tftrt, tiny_saved_model, tmp_path):
    flagfile = tmp_path / "recipe.flags"
    flagfile.write_text("--backend=cpu\n--precision=fp32\n")
    code, out, err = tftrt("convert", f"--flagfile={flagfile}", f"--model={tiny_saved_model}",
                           f"--output={tmp_path / 'out'}")
    assert code == 0, err and "backend=cpu" in out


@needs_inc
def test_int8_under_half_the_multiply_adds_fails_in_one_line_and_allow_partial_accepts_it(
        run_cli, tiny_transformer_saved_model, tmp_path):
    common = [f"--model={tiny_transformer_saved_model}", "--backend=cpu", "--precision=int8",
              "--calibration_data=synthetic", "--calibration_steps=4"]
    refused = run_cli("convert", *common, f"--output={tmp_path / 'refused'}", expect_exit=6)
    last = refused.err.strip().splitlines()[-1]
    assert "int8 covers only 43% of the model's multiply-adds" in last
    assert "left in fp32: Einsum ×2." in last and "--allow_partial" in last
    assert not (tmp_path / "refused").exists()

    accepted = run_cli("convert", *common, f"--output={tmp_path / 'int8'}", "--allow_partial")
    assert "precision coverage: 43% of 459 k FLOPs (batch 1) run in int8" in accepted.out
    inspected = run_cli("inspect", f"--model={tmp_path / 'int8'}")
    assert "precision coverage: 43% of" in inspected.out and "Einsum ×2 (fp32," in inspected.out
