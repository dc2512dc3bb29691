"""tftrt doctor / inspect / convert as users run them: one line per error, exit codes, nothing left behind."""

import json
import os

import pytest

from tftrt_toolkit.cli.main import main
from tftrt_toolkit.environment import probe


def tftrt(capsys, *args):
    code = main(["tftrt", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_top_level_help_lists_commands(capsys):
    code, out, _ = tftrt(capsys, "--help")
    assert code == 0 and "convert" in out and "doctor" in out


def test_unknown_command(capsys):
    code, _, err = tftrt(capsys, "frobnicate")
    assert code == 2 and "unknown command 'frobnicate'" in err


def test_command_help_shows_docstring_and_flags(capsys):
    code, out, _ = tftrt(capsys, "convert", "--help")
    assert code == 0
    assert "tftrt convert: optimize a model" in out
    for flag in ("--max_cached_engines", "--minimum_segment_size", "--max_workspace_size_bytes", "--signature",
                 "--overwrite", "--backend", "--precision"):
        assert flag in out


def test_doctor_text_and_json(capsys):
    code, out, _ = tftrt(capsys, "doctor")
    assert code == 0 and "recommended backend" in out and "tf built with TensorRT" in out
    code, out, _ = tftrt(capsys, "doctor", "--json")
    report = json.loads(out)
    assert report["tensorflow_version"].startswith("2.17")
    assert report["recommended_backend"] in ("cpu", "tensorrt")


def test_inspect_text_and_json(capsys, tiny_saved_model):
    code, out, _ = tftrt(capsys, "inspect", f"--model={tiny_saved_model}")
    assert code == 0
    assert "input  images: float32 [?x32x32x3]" in out and "output probabilities: float32 [?x10]" in out
    assert "Conv2D" in out
    code, out, _ = tftrt(capsys, "inspect", f"--model={tiny_saved_model}", "--json")
    info = json.loads(out)
    assert info["signatures"]["serving_default"]["inputs"][0]["name"] == "images"
    assert info["parameters"]["variables"] > 0


def test_convert_cpu_fp32_then_refuses_to_overwrite(capsys, tiny_saved_model, tmp_path):
    out_dir = tmp_path / "fp32"
    code, out, err = tftrt(capsys, "convert", f"--model={tiny_saved_model}", f"--output={out_dir}",
                           "--backend=cpu", "--precision=fp32")
    assert code == 0, err
    assert "backend=cpu precision=fp32" in out
    assert (out_dir / "assets.extra" / "tftrt_toolkit.json").exists()
    code, _, err = tftrt(capsys, "convert", f"--model={tiny_saved_model}", f"--output={out_dir}", "--backend=cpu")
    assert code == 7 and "already exists; pass --overwrite" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.skipif(probe().tensorrt_loaded_version is not None, reason="TensorRT's libraries load here")
def test_convert_tensorrt_here_is_one_line_and_no_output(capsys, tiny_saved_model, tmp_path):
    code, out, err = tftrt(capsys, "convert", f"--model={tiny_saved_model}", f"--output={tmp_path / 'trt'}",
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
    (["--model=MODEL", "--output=OUT", "--max_cached_engines=0"], 2, "maximum_cached_engines=0 is out of range"),
    (["--model=MODEL", "--output=OUT", "--minimum_segment_size=-1"], 2, "minimum_segment_size=-1"),
    (["--model=MODEL", "--output=OUT", "--max_workspace_size_bytes=-5"], 2, "max_workspace_size_bytes=-5"),
    (["--model=MODEL", "--output=OUT", "--batch_size=0"], 2, "batch_size=0"),
    (["--model=MODEL", "--output=MODEL/inside"], 7, "inside the input model"),
    (["--model=MODEL", "--output=MODEL"], 7, "is the input model"),
    (["--model=MODEL", "--output=OUT", "--profile_strategy=Fast", "--dynamic_shape"], 2, "Range, Optimal"),
    (["--model=MODEL", "--output=OUT", "--no_such_flag=1"], 2, "no_such_flag"),
    (["--flagfile=/nonexistent.flags"], 2, "nonexistent.flags"),
    (["--model=MODEL", "--output=OUT", "--version=latest"], 7, "--version='latest' is not valid"),
])
def test_convert_errors_are_one_line_with_exit_codes(capsys, tiny_saved_model, tmp_path, args, code, fragment):
    args = [a.replace("MODEL", str(tiny_saved_model)).replace("OUT", str(tmp_path / "out")) for a in args]
    before = sorted(os.listdir(tiny_saved_model))
    got, _, err = tftrt(capsys, "convert", *args)
    assert got == code, err
    assert fragment in err
    error_lines = [line for line in err.splitlines() if line.startswith("tftrt convert: error:") or "Error" in line]
    assert "Traceback" not in err and len(error_lines) == 1, err
    assert fragment in error_lines[0]
    assert not (tmp_path / "out").exists()
    assert sorted(os.listdir(tiny_saved_model)) == before


def test_flagfile_recipe(capsys, tiny_saved_model, tmp_path):
    flagfile = tmp_path / "recipe.flags"
    flagfile.write_text("--backend=cpu\n--precision=fp32\n")
    code, out, err = tftrt(capsys, "convert", f"--flagfile={flagfile}", f"--model={tiny_saved_model}",
                           f"--output={tmp_path / 'out'}")
    assert code == 0, err and "backend=cpu" in out


def test_inspect_plan_tensorrt(capsys, tiny_saved_model):
    code, out, err = tftrt(capsys, "inspect", f"--model={tiny_saved_model}", "--plan=tensorrt", "--precision=fp16")
    assert code == 0, err
    assert "TF-TRT segment plan" in out and "Verdict: 1 engine" in out
    code, out, _ = tftrt(capsys, "inspect", f"--model={tiny_saved_model}", "--plan=tensorrt", "--json")
    plan = json.loads(out)["tensorrt_plan"]
    assert len(plan["engines"]) == 1 and plan["precision"] == "fp32"
