"""Named, timed steps of a long job (load, freeze, each graph stage, save), reported as they happen.

The pipeline opens a ``StepLog`` over its progress callable; code deep inside a backend marks
its work with ``with step("freeze"):`` without every interface passing the callable down.
Each step sends two messages through the job's progress mechanism (tftrt_toolkit.progress):
``freeze …`` as it starts and ``freeze done in 48.1 s`` as it ends. The messages are
``StepEvent`` strings, so a plain ``print`` shows them and a tool that measures steps
(``benchmarks/conversion_cost.py``) reads their fields. Imports no TensorFlow.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from typing import Callable, Dict, Iterator, Optional


class StepEvent(str):
    """A progress message about one step of a long job; ``name``, ``phase`` ("start"/"end"), ``seconds``.

    It is a ``str`` so any progress callable (``print``, ``log.info``) shows it as is, while
    tools that want the structure (``benchmarks/conversion_cost.py``) read the attributes.
    """

    name: str
    phase: str
    seconds: Optional[float]

    def __new__(cls, name: str, phase: str, seconds: Optional[float] = None) -> "StepEvent":
        text = f"{name} …" if phase == "start" else f"{name} done in {seconds:.1f} s"
        event = super().__new__(cls, text)
        event.name, event.phase, event.seconds = name, phase, seconds
        return event


# The step log of the job running in this context; steps deep inside a backend report
# through it without every interface passing a progress callable down.
_current_steps: contextvars.ContextVar[Optional["StepLog"]] = contextvars.ContextVar("tftrt_steps", default=None)


class StepLog:
    """Times the named steps of a long job and reports each as it starts and ends.

    ``timings`` maps step name → seconds. Use ``with StepLog(progress).active():`` around the
    job, then ``with step("freeze"):`` anywhere inside it (a no-op outside any job).
    """

    def __init__(self, progress: Optional[Callable[[str], None]] = None):
        self.progress = progress or (lambda message: None)
        self.timings: Dict[str, float] = {}

    @contextlib.contextmanager
    def active(self) -> Iterator["StepLog"]:
        token = _current_steps.set(self)
        try:
            yield self
        finally:
            _current_steps.reset(token)

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.progress(StepEvent(name, "start"))
        start = time.perf_counter()
        yield
        seconds = time.perf_counter() - start
        self.timings[name] = self.timings.get(name, 0.0) + seconds
        self.progress(StepEvent(name, "end", seconds))


@contextlib.contextmanager
def step(name: str) -> Iterator[None]:
    """Time and report step ``name`` through the job's StepLog, if one is active."""
    steps = _current_steps.get()
    if steps is None:
        yield
        return
    with steps.step(name):
        yield
