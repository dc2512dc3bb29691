"""Ctrl-C and SIGTERM while converting: exit 130/143, one line saying nothing was written, nothing left behind.

Nothing here depends on the machine's speed. The subprocess tests start a real `tftrt convert`
that stops at a known point after real work (held_tftrt.py: the graph frozen inside the staged
output, or the Keras export written) and signal it only once it is there; before, they
signalled "once the staging directory exists" and hoped the conversion would still be running.
The in-process tests raise real signals from inside the save and calibration phases with
``signal.raise_signal``: directed at the calling (main) thread, whose Python handler runs before
the call returns. ``os.kill(os.getpid(), ...)`` is directed at the process, which the kernel may
hand to any of TensorFlow's threads, the handler then running later in the main thread. The
``ctrl_c_raises_keyboard_interrupt`` fixture (conftest.py) makes SIGINT raise KeyboardInterrupt
even where pytest was started as a background job (SIGINT ignored).
"""

import os
import signal
import threading

import numpy as np
import pytest

from tftrt_toolkit import ConversionConfig, convert
from tftrt_toolkit.backends.cpu import rebuild
from tftrt_toolkit.backends.base import Conversion, ConversionBackend
from tftrt_toolkit.cli.main import main

INTERRUPTED = "tftrt convert: interrupted; nothing was written."
TERMINATED = "tftrt convert: terminated (SIGTERM); nothing was written."


def assert_one_line_and_nothing_left(err, expected_line, output, tmp_path, staging_dirs):
    """``output`` lies under ``tmp_path``, whose only entry should be the child's TMPDIR, now empty."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    assert [line for line in lines if "nothing was written" in line] == [expected_line], err
    assert not any(line.startswith("tftrt convert: error:") for line in lines), err
    assert not os.path.exists(output)
    assert staging_dirs(output) == []
    assert os.listdir(tmp_path) == ["tmp"], "no staging dir, no created parents"
    assert os.listdir(tmp_path / "tmp") == [], "temporary exports removed"


@pytest.mark.parametrize("signum, code, line", [
    pytest.param(signal.SIGTERM, 143, TERMINATED, id="SIGTERM"),
    pytest.param(signal.SIGINT, 130, INTERRUPTED, id="SIGINT", marks=pytest.mark.slow),
])
def test_signal_while_converting(mid_size_saved_model, start_tftrt, tree_hash, staging_dirs, tmp_path,
                                 signum, code, line):
    output = tmp_path / "serving" / "out"
    before = tree_hash(mid_size_saved_model)
    process = start_tftrt("convert", f"--model={mid_size_saved_model}", f"--output={output}", "--backend=cpu",
                          hold="step:freeze")
    process.wait_until_held()  # converting: the graph is frozen, inside the staged output
    assert staging_dirs(output), "the staging directory beside the output exists"
    process.popen.send_signal(signum)
    got, out, err = process.finish()
    assert got == code, err
    assert out == ""
    assert_one_line_and_nothing_left(err, line, output, tmp_path, staging_dirs)
    assert tree_hash(mid_size_saved_model) == before


@pytest.mark.slow
def test_sigint_while_loading_removes_the_temporary_export(start_tftrt, staging_dirs, tmp_path):
    """keras:NAME is exported to a temporary SavedModel first; Ctrl-C during that export removes it."""
    output = tmp_path / "out"
    process = start_tftrt("convert", "--model=keras:MobileNetV2", "--weights=none", f"--output={output}",
                          "--backend=cpu", hold="tftrt_toolkit.models.keras_export:export_keras_model")
    process.wait_until_held()  # Keras has written the export; the model is still loading
    assert any(name.startswith("tftrt-export-") for name in os.listdir(tmp_path / "tmp")), "temporary Keras export"
    process.popen.send_signal(signal.SIGINT)
    got, _, err = process.finish()
    assert got == 130, err
    assert_one_line_and_nothing_left(err, INTERRUPTED, output, tmp_path, staging_dirs)


def test_sigterm_while_saving_leaves_nothing(tiny_saved_model, tmp_path, monkeypatch, capsys, tree_hash):
    """A real SIGTERM after TensorFlow has written the SavedModel into the staging dir, before the rename."""
    output = tmp_path / "out"
    real_save = rebuild.save_function
    written = []

    def save_then_sigterm(function, output_dir, signature_key, *held):
        real_save(function, output_dir, signature_key, *held)
        written.extend(os.listdir(output_dir))
        signal.raise_signal(signal.SIGTERM)  # main()'s handler raises here, in this thread

    monkeypatch.setattr(rebuild, "save_function", save_then_sigterm)
    before = tree_hash(tiny_saved_model)
    previous = signal.getsignal(signal.SIGTERM)
    code = main(["tftrt", "convert", f"--model={tiny_saved_model}", f"--output={output}", "--backend=cpu"])
    _, err = capsys.readouterr()
    assert "saved_model.pb" in written, "the signal came after a real write"
    assert code == 143, err
    assert [line for line in err.splitlines() if "nothing was written" in line] == [TERMINATED]
    assert "error:" not in err
    assert os.listdir(tmp_path) == []
    assert tree_hash(tiny_saved_model) == before
    assert signal.getsignal(signal.SIGTERM) == previous, "main() restores the SIGTERM handler"


class CalibratingBackend(ConversionBackend):
    """Feeds itself calibration batches like TF-TRT's calibrate step; Ctrl-C arrives after the first."""

    name = "cpu"

    def __init__(self):
        self.batches = []

    def check_available(self, config, env):
        pass

    def convert(self, model, config, *, calibration_input_fn=None, build_input_fn=None):
        for batch in calibration_input_fn():
            self.batches.append(batch)
            # raise_signal runs the handler (KeyboardInterrupt) before it returns, but only in the main thread.
            assert threading.current_thread() is threading.main_thread(), "calibration moved off the main thread"
            signal.raise_signal(signal.SIGINT)
            raise AssertionError("Python's SIGINT handler did not raise KeyboardInterrupt")
        raise AssertionError("calibration gave no batch")


def test_sigint_during_calibration_leaves_nothing(tiny_saved_model, tmp_path, tree_hash):
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, "see ctrl_c_raises_keyboard_interrupt"
    backend = CalibratingBackend()
    before = tree_hash(tiny_saved_model)
    with pytest.raises(KeyboardInterrupt):
        convert(str(tiny_saved_model), str(tmp_path / "deep" / "out"),
                ConversionConfig(backend="cpu", precision="int8", calibration_steps=4, batch_size=2),
                backend=backend, calibration_data="synthetic")
    assert len(backend.batches) == 1
    assert np.asarray(backend.batches[0][0]).shape == (2, 32, 32, 3)
    assert os.listdir(tmp_path) == []
    assert tree_hash(tiny_saved_model) == before
