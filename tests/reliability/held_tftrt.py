"""`tftrt ARGS` that stops at a known point and waits there for the test's signal, whatever the machine's speed.

    python held_tftrt.py HOLD MARKER ARGS...

HOLD is ``step:NAME`` (the end of the job's step NAME, still inside it: ``step:freeze`` is
"converting, the graph frozen, the staging directory there") or ``MODULE:FUNCTION`` (right
after FUNCTION returns, e.g. ``tftrt_toolkit.models.keras_export:export_keras_model``). There
the child creates MARKER and sleeps until a signal interrupts it; with no signal after
HOLD_S seconds it raises, so a broken test fails instead of hanging. The real work before the
hold has been done; a signal sent once MARKER exists always lands at that point, which the
tests could not promise by sending it "while" a step of unknown length runs.
"""

import contextlib
import importlib
import os
import sys
import time

HOLD_S = 300


def wait_for_signal(marker: str) -> None:
    with open(marker, "w"):
        pass
    deadline = time.monotonic() + HOLD_S
    while time.monotonic() < deadline:
        time.sleep(0.05)  # a signal's Python handler runs here, in the main thread
    raise RuntimeError(f"held at the test's point for {HOLD_S} s and no signal came")


def hold_at_step(name: str, marker: str) -> None:
    from tftrt_toolkit import steps

    real_step = steps.StepLog.step

    @contextlib.contextmanager
    def step(self, step_name):
        with real_step(self, step_name):
            yield
            if step_name == name:
                wait_for_signal(marker)

    steps.StepLog.step = step


def hold_after(target: str, marker: str) -> None:
    module_name, _, function_name = target.partition(":")
    module = importlib.import_module(module_name)
    real_function = getattr(module, function_name)

    def held(*args, **kwargs):
        result = real_function(*args, **kwargs)
        wait_for_signal(marker)
        return result

    setattr(module, function_name, held)


def main() -> int:
    hold, marker, *args = sys.argv[1:]
    # A re-executed tftrt (TensorRT's libraries found off the loader's path) would lose the hold.
    from tftrt_toolkit.tensorrt_libraries import RESTARTED_MARKER

    os.environ[RESTARTED_MARKER] = "1"
    if hold.startswith("step:"):
        hold_at_step(hold[len("step:"):], marker)
    else:
        hold_after(hold, marker)
    from tftrt_toolkit.cli.main import main as tftrt

    return tftrt(["tftrt", *args])


if __name__ == "__main__":
    sys.exit(main())
