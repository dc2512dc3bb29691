"""Both sides of the pipe to the worker process that runs the rows needing TF's oneDNN ops on.

This side: ``OneDNNWorker`` (the process), ``RemoteRunner``/``RemoteCall`` (a row in it, used
like any other runner). The worker's side: ``worker_main``, which ``benchmarks/peers.py``
runs when started with ``WORKER_FLAG``.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from typing import Callable, Dict, List, Optional

import numpy as np

from tftrt_toolkit.errors import ToolkitError, first_line

from . import ROOT
from .builders import BUILDERS
from .building import Context
from .rows import ONEDNN_SWITCH, Skipped
from .threads import pin_tf_threads


WORKER_FLAG = "--onednn_worker"
# The worker is the benchmark's own command line, started with WORKER_FLAG alone.
ENTRY_SCRIPT = os.path.join(ROOT, "benchmarks", "peers.py")


class OneDNNWorker:
    """A process with TF's oneDNN ops on that builds, runs and times rows on this process's cue.

    TF reads ``TF_ENABLE_ONEDNN_OPTS`` once, at import, so rows that need oneDNN on where this
    process has it off (AVX2-only CPUs) run in a second process. ``build(key)`` converts and
    loads the row there; its runner's ``bind`` sends inputs, a call returns the outputs (for the
    agreement check), and ``time_calls`` runs a block of calls timed *there* while this process
    waits: the pipe is never on the clock, and the row takes its turn in the interleaved rounds
    like any other. Requests and replies are JSON lines; arrays travel as .npz files in the work dir.
    """

    def __init__(self, request: dict, log: Callable[[str], None], *, onednn_on: bool = True):
        self.request_fields = request
        self.log = log
        # False: the worker keeps this process's oneDNN setting (a worker for its threads only).
        self.onednn_on = onednn_on
        self.process: Optional[subprocess.Popen] = None
        self.onednn_enabled: Optional[bool] = None
        self.files = 0

    def start(self) -> "OneDNNWorker":
        from tftrt_toolkit import onednn

        environment = onednn.environment_with(True) if self.onednn_on else dict(os.environ)
        environment.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        # stderr is shared: the worker's conversion messages appear in this run's log.
        self.process = subprocess.Popen([sys.executable, ENTRY_SCRIPT, WORKER_FLAG],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
                                        env=environment)
        self.onednn_enabled = self.ask("start", **self.request_fields)["onednn_enabled"]
        if self.onednn_on and not self.onednn_enabled:
            raise Skipped(f"the worker started with {ONEDNN_SWITCH}=1 still has oneDNN off (IsMklEnabled() is False)")
        return self

    def ask(self, command: str, **fields):
        """Send one request; the worker's answer, Skipped for a row it cannot run, ToolkitError when it failed."""
        if self.process is None or self.process.poll() is not None:
            raise Skipped("the oneDNN-on worker process is not running"
                          + (f" (it exited with {self.process.returncode})" if self.process else ""))
        try:
            self.process.stdin.write(json.dumps({"command": command, **fields}) + "\n")
            self.process.stdin.flush()
            line = self.process.stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        if not line:
            raise Skipped(f"the oneDNN-on worker process ended (exit {self.process.wait()}); its messages are above")
        reply = json.loads(line)
        if "skipped" in reply:
            raise Skipped(reply["skipped"])
        if "error" in reply:
            raise ToolkitError(reply["error"])
        return reply["ok"]

    def build(self, key: str):
        facts = self.ask("build", key=key)
        return RemoteRunner(self, key), facts

    def new_file(self, what: str) -> str:
        self.files += 1
        return os.path.join(self.request_fields["work_dir"], f"worker-{what}-{self.files}.npz")

    def close(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(Exception):
            self.ask("stop")
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            stream.close()
        self.process = None


class RemoteRunner:
    """A row that lives in the oneDNN-on worker; ``bind`` gives a ``RemoteCall`` on those inputs."""

    def __init__(self, worker: OneDNNWorker, key: str):
        self.worker = worker
        self.key = key

    def bind(self, inputs: Dict[str, np.ndarray]) -> "RemoteCall":
        path = self.worker.new_file("inputs")
        np.savez(path, **inputs)
        self.worker.ask("bind", key=self.key, inputs=path)
        os.remove(path)
        return RemoteCall(self.worker, self.key)

    def concurrent(self, inputs, clients: int, threads: int):
        # Its TF-threads side would need client threads in the worker; its 1-thread side is still measured.
        raise Skipped("runs in the oneDNN worker process: timed in flight at 1 intra-op thread per request only")

    def close(self) -> None:
        with contextlib.suppress(Skipped, ToolkitError):
            self.worker.ask("drop", key=self.key)


class RemoteCall:
    """One bound row in the worker: call it for its outputs; ``time_calls`` for latencies measured there.

    ``runtime.timing`` asks a call with a ``time_calls`` method to time itself: the worker runs
    the same loop, so the pipe between the processes is never on the clock.
    """

    def __init__(self, worker: OneDNNWorker, key: str):
        self.worker = worker
        self.key = key

    def __call__(self) -> List[np.ndarray]:
        path = self.worker.new_file("outputs")
        self.worker.ask("call", key=self.key, output=path)
        with np.load(path) as saved:
            outputs = [saved[f"arr_{index}"] for index in range(len(saved.files))]
        os.remove(path)
        return outputs

    def time_calls(self, count: Optional[int] = None, duration: Optional[float] = None, warmup: int = 0,
                   min_count: int = 1) -> List[float]:
        return self.worker.ask("time", key=self.key, count=count, duration=duration, warmup=warmup, min_count=min_count)


def worker_main() -> int:
    """The worker's side of ``OneDNNWorker``: JSON requests on stdin, one JSON reply line each on stdout."""
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # what libraries print goes to stderr, never into the replies

    def log(message: str) -> None:
        print(f"[peers worker] {message}", file=sys.stderr, flush=True)

    state = {"runners": {}, "calls": {}}

    def start(model, weights, threads, work_dir, calibration_data, inter_op_threads=None):
        from tftrt_toolkit import onednn
        from tftrt_toolkit.models.loader import load_model

        state["tf_threads"] = pin_tf_threads(threads, inter_op_threads)
        loaded = load_model(model, weights=None if weights.lower() == "none" else weights)
        state["context"] = Context(loaded, threads, work_dir, calibration_data, log, in_worker=True)
        return {"onednn_enabled": onednn.enabled_in_this_process()}

    def build(key):
        runner, facts = BUILDERS[key](state["context"], key)
        state["runners"][key] = runner
        return facts

    def bind(key, inputs):
        with np.load(inputs) as saved:
            state["calls"][key] = state["runners"][key].bind({name: saved[name] for name in saved.files})

    def call(key, output):
        np.savez(output, *state["calls"][key]())

    def time_calls(key, count, duration, warmup, min_count):
        from tftrt_toolkit.runtime.timing import time_calls as timed

        return timed(state["calls"][key], count=count, duration=duration, warmup=warmup, min_count=min_count)

    def drop(key):
        state["calls"].pop(key, None)
        runner = state["runners"].pop(key, None)
        if runner is not None:
            runner.close()

    def stop():
        for key in list(state["runners"]):
            drop(key)
        if "context" in state:
            state["context"].loaded.close()

    commands = {"start": start, "build": build, "bind": bind, "call": call, "time": time_calls, "drop": drop,
                "stop": stop}
    for line in sys.stdin:
        request = json.loads(line)
        command = request.pop("command")
        try:
            reply = {"ok": commands[command](**request)}
        except Skipped as why:
            reply = {"skipped": str(why)}
        except Exception as error:  # the parent records it in the row; the worker keeps serving the others
            reply = {"error": f"{type(error).__name__}: {first_line(error)}"}
        protocol.write(json.dumps(reply) + "\n")
        if command == "stop":
            break
    return 0
