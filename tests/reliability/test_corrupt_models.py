"""Bad models and a full disk through `tftrt convert`: one line saying what to do, input untouched, nothing left.

Runs the CLI in-process (main()), so the real loader, cpu backend and writer are exercised
without a process start per case.
"""

import errno
import os
import shutil
import subprocess

import numpy as np
import pytest

from tftrt_toolkit.artifacts import staged_output
from tftrt_toolkit.cli.main import main
from tftrt_toolkit.errors import OutputError


def tftrt_convert(capsys, *args):
    code = main(["tftrt", "convert", *args])
    out, err = capsys.readouterr()
    return code, out, err


def the_error_line(err):
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("tftrt convert: error:")]
    assert len(lines) == 1, err
    return lines[0]


# --------------------------------------------------------------------------- corrupt variables

def _truncate_data(variables):
    data = variables / "variables.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 3])


def _flip_data(variables):
    data = variables / "variables.data-00000-of-00001"
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2: len(raw) // 2 + 16] = bytes(b ^ 0xFF for b in raw[len(raw) // 2: len(raw) // 2 + 16])
    data.write_bytes(bytes(raw))  # same size: only the index's CRC32C catches it


def _truncate_index(variables):
    index = variables / "variables.index"
    index.write_bytes(index.read_bytes()[:100])


def _remove_data(variables):
    (variables / "variables.data-00000-of-00001").unlink()


@pytest.mark.parametrize("corrupt, detail", [
    (_truncate_data, "Read less bytes than requested"),
    (_flip_data, "Checksum does not match"),
    (_truncate_index, "sstable"),
    (_remove_data, "No such file or directory"),
], ids=["truncated-data", "flipped-data", "truncated-index", "missing-data"])
def test_corrupt_variables_one_line_says_re_export(capsys, tiny_saved_model, tmp_path, tree_hash, corrupt, detail):
    model = tmp_path / "model"
    shutil.copytree(tiny_saved_model, model)
    corrupt(model / "variables")
    before = tree_hash(model)
    code, out, err = tftrt_convert(capsys, f"--model={model}", f"--output={tmp_path / 'out'}", "--backend=cpu")
    assert code == 3, err
    line = the_error_line(err)
    assert f"the variables (weights) of the SavedModel in '{model}' are missing, truncated or corrupt" in line
    assert detail in line and line.endswith("re-export the model, or copy it again from where it came from.")
    assert out == ""
    assert sorted(os.listdir(tmp_path)) == ["model"]
    assert tree_hash(model) == before


# --------------------------------------------------------------------------- string inputs

@pytest.fixture(scope="module")
def string_input_saved_model(tmp_path_factory):
    """serving_default: text string [None] -> value float32 (parsed number x a variable), length int32."""
    import tensorflow as tf

    class Parser(tf.Module):
        def __init__(self):
            super().__init__()
            self.scale = tf.Variable(2.5)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def serve(self, text):
            return {"value": tf.strings.to_number(text) * self.scale, "length": tf.strings.length(text)}

    module = Parser()
    path = tmp_path_factory.mktemp("models") / "string_input"
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def test_string_inputs_convert_on_cpu_and_answer_the_same(capsys, string_input_saved_model, tmp_path, tree_hash):
    """Freezing and grappler handle string tensors, so this works: same signature, same answers."""
    import tensorflow as tf

    before = tree_hash(string_input_saved_model)
    code, out, err = tftrt_convert(capsys, f"--model={string_input_saved_model}", f"--output={tmp_path / 'out'}",
                                   "--backend=cpu")
    assert code == 0, err
    text = tf.constant(["1.5", "-4", "1e3"])
    original = tf.saved_model.load(str(string_input_saved_model)).signatures["serving_default"](text=text)
    converted = tf.saved_model.load(str(tmp_path / "out")).signatures["serving_default"](text=text)
    assert sorted(converted) == ["length", "value"]
    np.testing.assert_array_equal(converted["value"].numpy(), original["value"].numpy())
    np.testing.assert_array_equal(converted["length"].numpy(), [3, 2, 3])
    assert tree_hash(string_input_saved_model) == before


def test_string_inputs_cannot_get_generated_build_data(capsys, string_input_saved_model, tmp_path):
    """--build_shapes needs generated numeric inputs; for strings that is one clear DataError line."""
    code, _, err = tftrt_convert(capsys, f"--model={string_input_saved_model}", f"--output={tmp_path / 'out'}",
                                 "--backend=cpu", "--build_shapes=1,4")
    assert code == 4, err
    assert "input 'text' takes strings" in the_error_line(err)
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------- disk full

@pytest.fixture
def small_disk(tmp_path):
    """A 16 KiB tmpfs: the tiny model's converted saved_model.pb alone (~20 KiB) does not fit."""
    mount_point = tmp_path / "small_disk"
    mount_point.mkdir()
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mount_point)],
                                 capture_output=True, text=True)
    except FileNotFoundError:
        pytest.skip("no mount command here to make a small tmpfs")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root/CAP_SYS_ADMIN): {mounted.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)


@pytest.mark.parametrize("relative_output", ["out", os.path.join("new", "parents", "out")])
def test_disk_full_mid_write_through_tensorflows_writer(capsys, tiny_saved_model, small_disk, tree_hash,
                                                        relative_output):
    """TensorFlow reports ENOSPC as ResourceExhaustedError, not OSError; it still becomes the one-liner."""
    output = small_disk / relative_output
    before = tree_hash(tiny_saved_model)
    code, out, err = tftrt_convert(capsys, f"--model={tiny_saved_model}", f"--output={output}", "--backend=cpu")
    assert code == 7, err
    assert the_error_line(err) == (f"tftrt convert: error: disk full while writing '{output}'; free space or "
                                   "choose another --output. Nothing was written.")
    assert out == ""
    assert os.listdir(small_disk) == [], "no staging dir, no created parents"
    assert tree_hash(tiny_saved_model) == before


def test_disk_quota_exceeded_is_disk_full(tmp_path):
    with pytest.raises(OutputError, match="disk full while writing"):
        with staged_output(str(tmp_path / "out")):
            raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))
    assert os.listdir(tmp_path) == []
