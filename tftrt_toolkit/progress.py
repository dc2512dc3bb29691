"""Progress of long work: the toolkit's one mechanism, tqdm bars in terminals and notebooks.

Every API that takes a while takes ``progress: bool`` (default True; False turns it off): a
bar on stderr when stderr is a terminal, in Jupyter a widget when ipywidgets is installed
(else the text bar, which Jupyter redraws in place), and nothing in logs, pipes and CI.
Library code never prints: the bar is the only thing drawn. What a job is doing
("convert: bf16", "freeze …") is logged to the ``tftrt_toolkit`` loggers at INFO and, with a
bar, shown beside it (with ``progress=False`` at DEBUG: the job reports nothing); the CLI
prints those log lines on stderr (``log_to_stderr``).

    with Progress("run", progress=True, total=6) as job:
        job("convert: bf16")          # a step message: logged, and shown on the bar
        job.advance()                 # one of the 6 steps done
    for batch in progress_bar(batches, "calibration", progress=True): ...

A callable given as ``progress`` (the form some functions took before) still receives every
step message, with no bar; tools that want the messages themselves (a step timer) use that.
Imports no TensorFlow.
"""

from __future__ import annotations

import functools
import inspect
import logging
import sys
from typing import Callable, Iterable, Optional, Union

ProgressOption = Union[bool, Callable[[str], None], None]

# Marks a log record as a job's step message: the CLI shows those lines, not the library's other INFO logs.
STEP_RECORD = "tftrt_step"
# Step messages longer than this are cut on the bar (the log keeps them whole).
_BAR_MESSAGE_WIDTH = 70


def shows_bar(progress: ProgressOption) -> bool:
    """Whether to draw a bar: ``progress`` is True and someone watches (stderr is a terminal, or Jupyter).

    Callables get messages, not bars; logs and CI output (stderr a file or pipe) stay clean.
    """
    return progress is True and (_is_terminal(sys.stderr) or "ipykernel" in sys.modules)


def _is_terminal(stream) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def _tqdm_class():
    """tqdm's notebook widget inside a Jupyter kernel with ipywidgets, else the text bar."""
    if "ipykernel" in sys.modules:
        try:
            import ipywidgets  # noqa: F401  (the widget bar needs it; without it the text bar works in Jupyter too)
            from tqdm.notebook import tqdm

            return tqdm
        except ImportError:
            pass
    from tqdm import tqdm

    return tqdm


def progress_bar(iterable: Optional[Iterable] = None, description: str = "", *, progress: ProgressOption = False,
                 total: Optional[int] = None, unit: str = "it", leave: bool = False):
    """A tqdm bar over ``iterable`` (or ``total`` steps), disabled unless ``progress`` is True.

    Always returns a tqdm object, so callers use one code path (``update``, ``set_postfix_str``,
    ``close``, iteration) whether or not anything is drawn.
    """
    return _tqdm_class()(iterable, desc=description, total=total, unit=unit, leave=leave,
                         disable=not shows_bar(progress), file=sys.stderr, dynamic_ncols=True)


class Progress:
    """What a long job says as it goes: each message to the log, to a callable, and on a bar.

    A ``Progress`` is itself a ``Callable[[str], None]``: hand it to code that reports step
    messages. ``advance()`` moves the bar when the job knows its number of steps (``total``);
    without a total the bar counts messages. Use it as a context manager (or ``close()``).
    """

    def __init__(self, description: str, progress: ProgressOption = False, *, total: Optional[int] = None,
                 logger: Optional[logging.Logger] = None):
        self.description = description
        self.logger = logger or logging.getLogger("tftrt_toolkit")
        self.callback = progress if callable(progress) and not isinstance(progress, bool) else None
        # Inner bars of the job (calibration, benchmark rounds) follow the same choice.
        self.bar_requested = progress is True
        # progress=False: the job reports nothing, so its messages go to DEBUG (a job run inside
        # another job, e.g. run's conversions, stays out of the outer job's step lines).
        self.level = logging.DEBUG if progress is False else logging.INFO
        self.total = total
        self._bar = None  # drawn at the first message, so a job refused up front draws nothing

    @property
    def bar(self):
        if self._bar is None:
            self._bar = progress_bar(description=self.description, progress=self.bar_requested, total=self.total,
                                     unit="step", leave=True)
        return self._bar

    def __call__(self, message: str) -> None:
        self.logger.log(self.level, message, extra={STEP_RECORD: True})
        if self.callback is not None:
            self.callback(message)
        text = str(message)
        self.bar.set_postfix_str(text if len(text) <= _BAR_MESSAGE_WIDTH else text[: _BAR_MESSAGE_WIDTH - 1] + "…",
                                 refresh=self.total is not None)
        if self.total is None:
            self.bar.update(1)  # no known number of steps: count the messages

    def advance(self, steps: int = 1) -> None:
        if self.total is not None:
            self.bar.update(steps)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def reports_progress(description: str, *, total: Optional[int] = None):
    """Decorate a job whose ``progress`` argument (a bool, or a callable) becomes a ``Progress`` inside it.

    The job calls ``progress("message")`` and ``progress.advance()``; the bar is closed when it
    returns or raises. The job's own default for ``progress`` applies when the caller gives none.
    """
    def decorate(job):
        default = inspect.signature(job).parameters["progress"].default

        @functools.wraps(job)
        def run(*args, **kwargs):
            option = kwargs.pop("progress", default)
            with Progress(description, option, total=total, logger=logging.getLogger(job.__module__)) as reporter:
                return job(*args, progress=reporter, **kwargs)

        return run

    return decorate


class _TqdmWriteHandler(logging.Handler):
    """Writes log lines with ``tqdm.write``, so they appear above a bar instead of through it."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001  (logging's contract: a handler reports its own failures)
            self.handleError(record)


def log_to_stderr(prefix: str = "", *, debug: bool = False) -> logging.Handler:
    """Show the toolkit's step messages (and its warnings) on stderr, one line each, ``prefix`` first.

    ``debug``: every record down to DEBUG, tracebacks included (``tftrt --debug``).
    The CLI calls this once per command; returns the handler (``remove_log_handler`` undoes it).
    """
    handler = _TqdmWriteHandler()
    if not debug:
        handler.addFilter(lambda record: getattr(record, STEP_RECORD, False) or record.levelno >= logging.WARNING)
    handler.setFormatter(logging.Formatter(prefix.replace("%", "%%") + "%(message)s"))
    logger = logging.getLogger("tftrt_toolkit")
    # What to put back when the command ends (in-process callers: tests, notebooks).
    handler.previous_settings = (logger.level, logger.propagate)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if debug else logging.INFO)
    # Not to the root logger too: libraries we import (Intel Neural Compressor) call
    # logging.basicConfig, which would print every line a second time as "INFO:tftrt_toolkit...".
    logger.propagate = False
    return handler


def remove_log_handler(handler: logging.Handler) -> None:
    logger = logging.getLogger("tftrt_toolkit")
    logger.removeHandler(handler)
    level, propagate = getattr(handler, "previous_settings", (logging.NOTSET, True))
    logger.setLevel(level)
    logger.propagate = propagate
