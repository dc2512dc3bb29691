"""The one progress mechanism: bars where someone watches, step messages to logging, off with progress=False."""

import io
import logging
import sys

import pytest

from tftrt_toolkit import progress
from tftrt_toolkit.cli.main import main


@pytest.fixture
def terminal(monkeypatch):
    """Call it in the test (pytest's capture replaces sys.stderr after fixtures run): stderr becomes a
    stream that says it is a terminal, which is returned."""

    def replace_stderr():
        stream = io.StringIO()
        stream.isatty = lambda: True
        monkeypatch.setattr(sys, "stderr", stream)
        return stream

    return replace_stderr


def test_a_bar_is_drawn_on_a_terminal_when_asked(terminal):
    terminal = terminal()
    with progress.progress_bar(description="benchmark", total=4, progress=True, unit="%") as bar:
        bar.update(4)
    assert "benchmark" in terminal.getvalue()


def test_nothing_is_drawn_with_progress_false_even_on_a_terminal(terminal):
    terminal = terminal()
    with progress.progress_bar(description="benchmark", total=4, progress=False) as bar:
        bar.update(4)
    with progress.Progress("run", False, total=2) as job:
        job("[1/2] doctor")
        job.advance()
    assert terminal.getvalue() == ""


def test_nothing_is_drawn_into_logs_and_pipes(capsys):
    # progress=True, but stderr is captured (a pipe, a CI log): no bar.
    assert not progress.shows_bar(True)
    with progress.Progress("run", True, total=2) as job:
        job("[1/2] doctor")
        job.advance()
    assert capsys.readouterr().err == ""


def test_a_callable_gets_every_message_and_no_bar(terminal):
    terminal = terminal()
    messages = []
    with progress.Progress("convert", messages.append) as job:
        job("load …")
        job("load done in 0.1 s")
    assert messages == ["load …", "load done in 0.1 s"]
    assert terminal.getvalue() == ""


def test_step_messages_are_logged_at_info_and_at_debug_when_off(caplog):
    caplog.set_level(logging.DEBUG, logger="tftrt_toolkit")
    with progress.Progress("run", True) as job:
        job("[2/6] convert: fp32")
    with progress.Progress("convert", False) as job:
        job("freeze …")
    levels = {record.getMessage(): record.levelno for record in caplog.records}
    assert levels == {"[2/6] convert: fp32": logging.INFO, "freeze …": logging.DEBUG}


def test_reports_progress_hands_the_job_a_progress_and_closes_its_bar(terminal):
    terminal = terminal()
    seen = {}

    @progress.reports_progress("job", total=1)
    def job(*, progress=True):
        seen["progress"] = progress
        progress("working")
        progress.advance()
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError):
        job()
    assert isinstance(seen["progress"], progress.Progress) and seen["progress"].bar_requested
    # Drawn, and closed on the way out: tqdm ends a bar it leaves with a newline.
    assert "job" in terminal.getvalue() and "working" in terminal.getvalue()
    assert terminal.getvalue().endswith("\n")
    job_off = progress.reports_progress("job")(lambda *, progress=False: progress.bar_requested)
    assert job_off() is False and job_off(progress=True) is True


def test_the_cli_shows_the_step_lines_on_stderr(capsys, tiny_saved_model, tmp_path):
    code = main(["tftrt", "convert", f"--model={tiny_saved_model}", f"--output={tmp_path / 'fp32'}", "--backend=cpu"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "tftrt convert: backend cpu" in err and f"tftrt convert: saved {tmp_path / 'fp32'}" in err
    # The handler is the command's only: nothing is left behind on the library's logger.
    assert not [h for h in logging.getLogger("tftrt_toolkit").handlers if isinstance(h, progress._TqdmWriteHandler)]
