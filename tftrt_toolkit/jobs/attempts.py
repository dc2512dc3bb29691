"""One piece of a job's work tried on its own: whatever it raises becomes a recorded failure, and the job goes on.

``tftrt run`` converts, validates and times each precision; ``tftrt tune`` each candidate. One
precision's failure, a ToolkitError (too few calibration images) or anything else (a bug, a
TensorFlow error), must cost that precision only: the job records the step and the reason in
its table and carries on with the others. Both jobs use this one mechanism:

    with attempt("convert") as tried:
        convert(...)
        tried.step = "validate"          # the step a failure is charged to, as the work goes on
        validate(...)
    if tried.failure:                    # Failure(step="validate", reason="ValueError: ...", ...)
        row.failure = tried.failure.to_json()

Ctrl-C and SIGTERM (KeyboardInterrupt, SystemExit) are not one piece's failure: they pass
through and stop the job, whose staged outputs are then discarded. The traceback of an
error that is not a ToolkitError goes to the log at DEBUG (``tftrt --debug`` shows it); the
recorded reason is its first line (``errors.first_line``), with its type.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Callable, Dict, Optional, Sequence, Tuple, TypeVar

from tftrt_toolkit.errors import INTERNAL_ERROR_EXIT_CODE, ToolkitError, first_line

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Failure:
    """Why one piece of work failed: the step, the error's first line, its type and the exit code it stands for."""

    step: str
    reason: str
    error_type: str
    # A ToolkitError's own code; INTERNAL_ERROR_EXIT_CODE for anything else (a bug, a foreign library's error).
    exit_code: int

    @classmethod
    def from_error(cls, step: str, error: BaseException) -> "Failure":
        if isinstance(error, ToolkitError):
            return cls(step, first_line(error), type(error).__name__, error.exit_code)
        # A foreign error's message alone ("boom", "'NoneType' object ...") does not say what happened.
        reason = first_line(error)
        reason = reason if reason == type(error).__name__ else f"{type(error).__name__}: {reason}"
        return cls(step, reason, type(error).__name__, INTERNAL_ERROR_EXIT_CODE)

    @property
    def internal(self) -> bool:
        """True when the error was not one of the toolkit's own (a bug or an unexpected library error)."""
        return self.exit_code == INTERNAL_ERROR_EXIT_CODE

    def describe(self) -> str:
        """One line: "failed at convert: RuntimeError: boom"."""
        return f"failed at {self.step}: {self.reason.rstrip('.')}"  # callers go on after it with "; ..."

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


class Attempt:
    """A context manager that turns any Exception raised inside it into ``self.failure``; see the module docstring."""

    def __init__(self, step: str):
        self.step = step
        self.failure: Optional[Failure] = None

    def __enter__(self) -> "Attempt":
        return self

    def __exit__(self, kind, error, trace) -> bool:
        if error is None or not isinstance(error, Exception):
            return False  # success, or Ctrl-C/SIGTERM/exit: not ours to record
        self.failure = Failure.from_error(self.step, error)
        if self.failure.internal:
            logger.debug("%s: %s", self.step, self.failure.reason, exc_info=(kind, error, trace))
        return True


def attempt(step: str) -> Attempt:
    """``with attempt("convert") as tried: ...``; afterwards ``tried.failure`` is None or the Failure."""
    return Attempt(step)


def together_then_each(names: Sequence[str], run: Callable[[Sequence[str]], T], probe: Callable[[str], object],
                       step: str) -> Tuple[Optional[T], Dict[str, Failure]]:
    """``run(names)`` once for all of them; when that fails, find which of them fail and run the others together.

    For work that must be done in one go (an interleaved benchmark, so every model meets the same
    machine load) but can fail because of one participant. On a failure each name is tried alone
    with ``probe(name)`` (something cheap that fails the same way); those that fail get their
    own Failure, and ``run`` is tried once more with the rest. If that fails too, every remaining
    name is charged with its failure. Returns (``run``'s result or None, {name: Failure}).
    """
    names = list(names)
    failures: Dict[str, Failure] = {}
    if not names:
        return None, failures
    with attempt(step):
        return run(names), failures
    for name in names:
        with attempt(step) as alone:
            probe(name)
        if alone.failure:
            failures[name] = alone.failure
    rest = [name for name in names if name not in failures]
    if rest:
        with attempt(step) as again:
            return run(rest), failures
        failures.update({name: again.failure for name in rest})
    return None, failures
