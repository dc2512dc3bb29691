"""Absurd sizes given on the command line: one line naming the flag and its range, before any work.

tests/test_config.py checks ConversionConfig itself; these go through absl parsing and the
commands, which is where a user's typo arrives (and where absl's int parsing can overflow).
"""

import os

import pytest

from tftrt_toolkit.cli.main import main

HUGE = "99999999999999999999"  # beyond int64: absl parses it to a Python int


@pytest.mark.parametrize("command, flag, fragment", [
    ("convert", "--calibration_steps=1000000", "calibration_steps=1000000 is out of range; use 1..100000."),
    ("convert", "--calibration_steps=0", "calibration_steps=0 is out of range"),
    ("convert", "--batch_size=100000000", "batch_size=100000000 is out of range; use 1..65536."),
    ("convert", f"--batch_size={HUGE}", f"batch_size={HUGE} is out of range"),
    ("convert", "--batch_size=lots", "flag --batch_size=lots: invalid literal for int()"),
    ("convert", "--max_cached_engines=100000", "maximum_cached_engines=100000 is out of range"),
    ("convert", f"--max_workspace_size_bytes={1 << 50}", f"max_workspace_size_bytes={1 << 50} is out of range"),
    ("convert", "--minimum_segment_size=1000000", "minimum_segment_size=1000000 is out of range"),
    ("convert", "--build_shapes=-1", "--build_shapes entry '-1' is not a shape"),
    ("convert", "--build_shapes=100000000", "build shape 100000000 is out of range"),
    ("convert", "--build_shapes=1x224x224x3000000", "is out of range; batch up to 65536"),
    ("predict", "--intra_op_threads=-1", "--intra_op_threads=-1 is out of range; use 0 (TF's choice) to 1024."),
    ("predict", "--inter_op_threads=100000", "--inter_op_threads=100000 is out of range"),
])
def test_absurd_sizes_are_one_line_exit_2(capsys, tiny_saved_model, tmp_path, tree_hash, command, flag, fragment):
    output = tmp_path / ("out" if command == "convert" else "predictions.json")
    args = {"convert": ["--backend=cpu"], "predict": ["--data=synthetic"]}[command]
    before = tree_hash(tiny_saved_model)
    code = main(["tftrt", command, f"--model={tiny_saved_model}", f"--output={output}", *args, flag])
    _, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.startswith(f"tftrt {command}: error:")]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert fragment in lines[0]
    assert os.listdir(tmp_path) == []
    assert tree_hash(tiny_saved_model) == before
