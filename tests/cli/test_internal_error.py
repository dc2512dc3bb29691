"""No traceback from any `tftrt` command: a bug is one line, exit 70, the trace in a file; --debug shows it.

The bug is injected after the converted SavedModel is written into the staging directory (the
metadata write, just before the rename), so the test also sees that nothing is left half-written.
"""

import os

import pytest

from tftrt_toolkit import artifacts
from tftrt_toolkit.errors import INTERNAL_ERROR_EXIT_CODE


@pytest.fixture
def buggy_metadata_write(monkeypatch, tmp_path):
    """Every metadata write raises a plain RuntimeError (no ToolkitError): a stand-in for a bug."""
    written = []

    def broken(saved_model_dir, metadata):
        written.extend(os.listdir(saved_model_dir))
        raise RuntimeError("injected bug: metadata writer broke\nsecond line of the message")

    monkeypatch.setattr(artifacts, "write_metadata", broken)
    traces = tmp_path / "traces"
    traces.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(traces))  # where the trace file goes
    return written, traces


def test_a_bug_is_one_line_naming_the_trace_file_and_nothing_is_left(tftrt, tiny_saved_model, tmp_path,
                                                                     buggy_metadata_write, tree_hash):
    written, traces = buggy_metadata_write
    output = tmp_path / "out" / "model"
    before = tree_hash(tiny_saved_model)
    code, out, err = tftrt("convert", f"--model={tiny_saved_model}", f"--output={output}", "--backend=cpu")

    assert code == INTERNAL_ERROR_EXIT_CODE == 70
    assert "saved_model.pb" in written, "the bug struck after a real write into the staging directory"
    (trace_file,) = os.listdir(traces)
    lines = [line for line in err.splitlines() if line.startswith("tftrt convert:") and "error" in line]
    assert lines == [f"tftrt convert: internal error: RuntimeError: injected bug: metadata writer broke; "
                     f"full trace in {traces / trace_file}"]
    assert "Traceback" not in err and "second line" not in err
    trace = (traces / trace_file).read_text()
    assert trace.startswith("tftrt convert --model=") and "Traceback (most recent call last)" in trace
    assert "second line of the message" in trace and "write_metadata" in trace
    assert trace_file.startswith("tftrt-convert-")
    assert not (tmp_path / "out").exists(), "no output, no staging directory, no created parent"
    assert tree_hash(tiny_saved_model) == before


def test_debug_puts_the_trace_on_stderr_instead(tftrt, tiny_saved_model, tmp_path, buggy_metadata_write):
    _, traces = buggy_metadata_write
    code, _, err = tftrt("convert", f"--model={tiny_saved_model}", f"--output={tmp_path / 'out'}", "--backend=cpu",
                         "--debug")
    assert code == 70
    assert "Traceback (most recent call last)" in err and "second line of the message" in err
    assert err.rstrip().splitlines()[-1] == "tftrt convert: internal error: RuntimeError: injected bug: metadata writer broke"
    assert os.listdir(traces) == []
    assert not (tmp_path / "out").exists()


def test_an_unwritable_temp_dir_still_gives_one_line(tftrt, tiny_saved_model, tmp_path, buggy_metadata_write,
                                                     monkeypatch):
    import tempfile

    def broken_with_temp_gone(saved_model_dir, metadata):
        # The conversion used the temp dir; it is gone by the time the trace would be written.
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no" / "such" / "dir"))
        raise RuntimeError("injected bug: metadata writer broke")

    monkeypatch.setattr(artifacts, "write_metadata", broken_with_temp_gone)
    code, _, err = tftrt("convert", f"--model={tiny_saved_model}", f"--output={tmp_path / 'out'}", "--backend=cpu")
    assert code == 70 and "Traceback" not in err
    assert [line for line in err.splitlines() if "internal error" in line] == [
        "tftrt convert: internal error: RuntimeError: injected bug: metadata writer broke; the trace could not be "
        "written (No such file or directory); rerun with --debug to see it"]


def test_a_bug_in_any_command_is_caught_the_same_way(tftrt, monkeypatch, tmp_path):
    """Not only conversions: here `doctor` itself breaks."""
    from tftrt_toolkit import environment

    def broken_probe(*args, **kwargs):
        raise KeyError("cpu_features")

    monkeypatch.setattr(environment, "probe", broken_probe)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    code, out, err = tftrt("doctor")
    assert code == 70 and "Traceback" not in err
    assert err.strip().startswith("tftrt doctor: internal error: KeyError: 'cpu_features'; full trace in ")
