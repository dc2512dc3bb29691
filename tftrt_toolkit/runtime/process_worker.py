"""Models timed in another process, one round at a time on this process's cue.

TensorFlow fixes its thread pools and its oneDNN switch once per process, so timing a model
at another thread setting (tune) or as plain TF runs it by default (oneDNN off on AVX2-only
CPUs, while toolkit processes turn it on) needs another process. The rounds interleave with
this process's own, so both see the same machine drift without competing for cores.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Tuple

from tftrt_toolkit.errors import ConfigError, ToolkitError, first_line
from tftrt_toolkit import onednn

Threads = Tuple[int, int]
# The worker's oneDNN switch: as this process has it, TF's default for the CPU, on, or off.
ONEDNN_SETTINGS = ("inherit", "default", "on", "off")


class ProcessWorker:
    """Models timed in a subprocess at another TF thread or oneDNN setting, one round at a time, on this process's cue.

    TensorFlow fixes its thread pools once per process, so another setting needs another
    process. ``start()`` loads the models there (at ``threads``) with the original as
    baseline, and makes each one's first call and ``warmup`` runs; each ``round()`` runs
    every model once, timed in the subprocess while this process waits (so the two never
    compete for cores, and machine drift hits both alike); ``finish()`` returns
    {name: {"p50_ms", "throughput", "speedup", "runs"}} ("baseline" included). Failures raise
    ToolkitError with the subprocess's message; ``close()`` always ends the subprocess.
    """

    def __init__(self, models: Dict[str, str], baseline: str, *, threads: Threads, data, batch_size: int,
                 warmup: int = 5, onednn_setting: str = "inherit", preprocess: str = "auto", input_shape=None):
        if onednn_setting not in ONEDNN_SETTINGS:
            raise ConfigError(f"onednn_setting={onednn_setting!r} is not valid; use one of {', '.join(ONEDNN_SETTINGS)}.")
        self.request = {"models": models, "baseline": baseline, "threads": list(threads), "warmup": warmup,
                        "data": data if isinstance(data, (str, list)) else str(data), "batch_size": batch_size,
                        "preprocess": preprocess, "input_shape": input_shape}
        self.threads = threads
        self.onednn_setting = onednn_setting
        self._process: Optional[subprocess.Popen] = None
        self._stderr = None

    def start(self, timeout: float) -> "ProcessWorker":
        self._stderr = tempfile.TemporaryFile(mode="w+")
        environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"))
        if self.onednn_setting != "inherit":
            switch = {"default": None, "on": True, "off": False}[self.onednn_setting]
            environment = onednn.environment_with(switch, environment)
        self._process = subprocess.Popen([sys.executable, "-m", "tftrt_toolkit.runtime.process_worker", "--worker"],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                                         text=True, bufsize=1, env=environment)
        self._send(json.dumps(self.request))
        self._receive("ready", timeout)
        return self

    def round(self) -> None:
        self._send("round")
        self._receive("ok", None)

    def concurrent(self, seconds: float, clients: int) -> None:
        """One block per model of ``clients`` concurrent requests for ``seconds`` (``runtime.timing.run_clients``).

        ``finish()`` then also holds, per model, ``"concurrent"``: {"requests", "wall_s",
        "clients", "latency_ms"}, summed over the blocks.
        """
        self._send(json.dumps({"concurrent": {"seconds": float(seconds), "clients": int(clients)}}))
        self._receive("ok", None)

    def finish(self) -> Dict[str, dict]:
        self._send("finish")
        return self._receive("results", None)

    def close(self) -> None:
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            self._process.wait()
            for stream in (self._process.stdin, self._process.stdout):
                if stream:
                    stream.close()
            self._process = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def _send(self, line: str) -> None:
        try:
            self._process.stdin.write(line + "\n")
            self._process.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._failure("it stopped") from None

    def _receive(self, key: str, timeout: Optional[float]):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if deadline is not None:
                ready, _, _ = select.select([self._process.stdout], [], [], max(0.0, deadline - time.monotonic()))
                if not ready:
                    raise ToolkitError(f"timing {self.describe()}: the subprocess "
                                       f"did not load its models within the time budget ({timeout:.0f} s left)")
            line = self._process.stdout.readline()
            if not line:
                raise self._failure("it ended")
            if not line.startswith("{"):
                continue  # a library's print, not ours
            message = json.loads(line)
            if "error" in message:
                raise self._failure(message["error"])
            if key in message:
                return message[key]

    def _failure(self, what: str) -> ToolkitError:
        detail = what
        if self._stderr is not None and what in ("it ended", "it stopped"):
            self._stderr.seek(0)
            lines = [line for line in self._stderr.read().splitlines() if line.strip()]
            detail = f"{what}: {lines[-1][:300]}" if lines else what
        return ToolkitError(f"timing {self.describe()} in a subprocess failed ({detail})")

    def describe(self) -> str:
        """The worker's process setting in words, e.g. "threads intra=1 inter=1, oneDNN at TF's default"."""
        parts = [f"threads intra={self.threads[0]} inter={self.threads[1]}"]
        if self.onednn_setting != "inherit":
            parts.append({"default": "oneDNN at TF's default", "on": "oneDNN on", "off": "oneDNN off"}[self.onednn_setting])
        return ", ".join(parts)


def _worker_main() -> int:
    """The subprocess side of ``ProcessWorker``: a JSON request, then "round"/"finish" lines on stdin; JSON lines back."""
    from tftrt_toolkit.data import open_source
    from tftrt_toolkit.data.samples import filled_batch
    from tftrt_toolkit.runtime.timing import latency_stats
    from tftrt_toolkit.runtime.session import ModelRunner, configure_threads
    from tftrt_toolkit.runtime.timing import run_clients
    from tftrt_toolkit.runtime.timing import prepared_call, time_rounds

    def reply(**message) -> None:
        print(json.dumps(message), flush=True)

    request = json.loads(sys.stdin.readline())
    batch_size = request["batch_size"]
    runners: Dict[str, ModelRunner] = {}
    try:
        configure_threads(*request["threads"])  # first: before TF's runtime starts
        # This process's threads are the request's, whatever a model's metadata says tune chose.
        runners["baseline"] = ModelRunner(request["baseline"], name="original", tuned_threads=False).load()
        for name, path in request["models"].items():
            runners[name] = ModelRunner(path, name=name, tuned_threads=False).load()
        # The same inputs benchmark_many uses in the main process (same source, preprocessing, seed).
        source = open_source(request["data"], runners["baseline"].signature, model_hint=runners["baseline"].model_info,
                             preprocess=request.get("preprocess", "auto"), input_shape=request.get("input_shape"))
        inputs = filled_batch(source, batch_size)
        calls = {role: prepared_call(runner, inputs) for role, runner in runners.items()}
        time_rounds(calls, rounds=1 + request["warmup"])  # the first call (graph optimization) and warm-up, off the record
        reply(ready=True)
        latencies: Dict[str, List[float]] = {role: [] for role in runners}
        concurrent: Dict[str, dict] = {}
        for line in sys.stdin:
            if line.strip() == "finish":
                break
            if line.startswith("{"):  # a block of concurrent requests per model (serving-shaped throughput)
                block = json.loads(line)["concurrent"]
                for role, runner in runners.items():
                    # Each client its own prepared tensors, as runtime.throughput does.
                    clients = [prepared_call(runner, inputs) for _ in range(block["clients"])]
                    per_client, wall = run_clients(clients, duration=block["seconds"], warmup=1)
                    total = concurrent.setdefault(role, {"requests": 0, "wall_s": 0.0, "clients": block["clients"],
                                                         "seconds": []})
                    total["requests"] += sum(len(values) for values in per_client)
                    total["wall_s"] += wall
                    total["seconds"].extend(value for values in per_client for value in values)
                reply(ok=True)
                continue
            for role, seconds in time_rounds(calls, rounds=1).items():  # one interleaved round per cue
                latencies[role].extend(seconds)
            reply(ok=True)
    except ToolkitError as error:
        reply(error=first_line(error))
        return error.exit_code
    finally:
        for runner in runners.values():
            runner.close()
    if not latencies["baseline"] and not concurrent:
        reply(error="no rounds were run")
        return 1
    results = {role: {} for role in runners}
    if latencies["baseline"]:
        baseline_p50 = latency_stats(latencies["baseline"])["p50"]
        for role, values in latencies.items():
            p50 = latency_stats(values)["p50"]
            results[role] = {"p50_ms": p50, "throughput": batch_size * len(values) / sum(values), "runs": len(values),
                             "speedup": baseline_p50 / p50, "latency_ms": latency_stats(values)}
    for role, total in concurrent.items():
        results[role]["concurrent"] = {"requests": total["requests"], "wall_s": total["wall_s"],
                                       "clients": total["clients"], "latency_ms": latency_stats(total["seconds"])}
    reply(results=results)
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        sys.exit(_worker_main())
    sys.exit("usage: python -m tftrt_toolkit.runtime.process_worker --worker  (the timing subprocess of tune and "
             "benchmark; use `tftrt tune` or `tftrt benchmark` instead)")
