"""Shared by the reliability tests: a model that takes seconds to convert, and real `tftrt` processes."""

import glob
import os
import signal
import subprocess
import sys
import time

import pytest

# Every wait on a child process is bounded; these are generous because two engineers' test
# runs may share the machine's two cores.
START_TIMEOUT_S = 180
FINISH_TIMEOUT_S = 180
HELD_TFTRT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "held_tftrt.py")


@pytest.fixture(autouse=True)
def ctrl_c_raises_keyboard_interrupt():
    """SIGINT raises KeyboardInterrupt here and in the `tftrt` children, however pytest was started.

    A shell starts a background job (`pytest &`, `nohup pytest &`, many CI and agent runners)
    with SIGINT ignored, and Python then leaves it ignored instead of installing its
    KeyboardInterrupt handler: a test's SIGINT would do nothing at all (this, not the CPU, made
    test_sigint_during_calibration_leaves_nothing fail on one machine and pass on another).
    With Python's handler installed in this process, children start with SIGINT at its default
    (exec resets handled signals, not ignored ones), so their Python installs it too.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture(scope="session")
def mid_size_saved_model(tmp_path_factory):
    """MobileNetV2 (random weights) as a SavedModel: ~4 s to convert on the cpu backend, long enough to interrupt."""
    import keras

    from tftrt_toolkit.models.keras_export import export_keras_model

    keras.utils.set_random_seed(0)
    path = tmp_path_factory.mktemp("models") / "mobilenet_v2"
    # A named input: an auto-named one would take "input_layer" from Keras's process-wide name
    # counter and make later tests' models "input_layer_1".
    images = keras.Input((224, 224, 3), name="images")
    export_keras_model(keras.applications.MobileNetV2(weights=None, input_tensor=images), str(path))
    return path


class TftrtProcess:
    """`python -m tftrt_toolkit.cli.main ARGS` as a child process with its own TMPDIR.

    With ``hold`` (see held_tftrt.py) the child stops at that point and waits for a signal;
    ``wait_until_held()`` returns once it is there.
    """

    def __init__(self, args, temp_dir, hold=None, marker=None):
        env = dict(os.environ, TMPDIR=str(temp_dir), TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
        self.args = list(args)
        self.marker = marker
        command = [HELD_TFTRT, hold, str(marker)] if hold else ["-m", "tftrt_toolkit.cli.main"]
        self.popen = subprocess.Popen([sys.executable, *command, *self.args],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)

    def wait_until_held(self, timeout: float = START_TIMEOUT_S) -> None:
        self.wait_for(lambda: os.path.exists(self.marker), f"the hold point ({self.marker})", timeout)

    def wait_for(self, condition, what: str, timeout: float = START_TIMEOUT_S) -> None:
        """Poll ``condition()`` until true; fail (with the child's stderr) if the child ends first or time runs out."""
        deadline = time.monotonic() + timeout
        while not condition():
            if self.popen.poll() is not None:
                _, err = self.popen.communicate()
                pytest.fail(f"tftrt ended (exit {self.popen.returncode}) before {what}:\n{err}")
            if time.monotonic() > deadline:
                self.popen.kill()
                self.popen.communicate()
                pytest.fail(f"no {what} within {timeout} s")
            time.sleep(0.02)

    def finish(self, timeout: float = FINISH_TIMEOUT_S):
        """(exit code, stdout, stderr) once the child ends; killed and failed after ``timeout``."""
        try:
            out, err = self.popen.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            out, err = self.popen.communicate()
            pytest.fail(f"tftrt {' '.join(self.args)} did not end within {timeout} s:\n{err}")
        return self.popen.returncode, out, err


@pytest.fixture
def start_tftrt(tmp_path, tmp_path_factory):
    """Start `tftrt ARGS...` processes; each gets TMPDIR=tmp_path/tmp (checked empty by the tests).

    ``start(*args, hold="step:freeze")`` starts one that stops there (held_tftrt.py); its marker
    file lives outside tmp_path, which the tests check for leftovers.
    """
    temp_dir = tmp_path / "tmp"
    temp_dir.mkdir()
    started = []

    def start(*args, hold=None):
        marker = tmp_path_factory.mktemp("held") / "reached" if hold else None
        process = TftrtProcess(args, temp_dir, hold, marker)
        started.append(process)
        return process

    yield start
    for process in started:  # a failed assertion must not leave a child converting
        if process.popen.poll() is None:
            process.popen.kill()
            process.popen.communicate()


def _staging_dirs(output) -> list:
    """The atomic writer's temporary directories beside ``output`` (``.NAME.tftrt-tmp-*``)."""
    output = str(output)
    return glob.glob(os.path.join(os.path.dirname(output), f".{os.path.basename(output)}.tftrt-tmp-*"))


@pytest.fixture
def staging_dirs():
    return _staging_dirs
