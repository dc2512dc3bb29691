"""What every row's builder shares: the Context it builds from, package checks, converter processes, sizes.

Each runtime's module (tf_rows, onnxruntime_rows, openvino_rows, tflite_rows) builds its rows
from a ``Context``; the oneDNN-on worker builds the same rows from its own.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import subprocess
from typing import Callable, Dict, List, Optional

import numpy as np

from .rows import PEERS_INSTALL_HINT, Skipped


@dataclasses.dataclass
class Context:
    """What every row's builder needs: the original model, threads, where to write, how to log."""

    loaded: object  # LoadedModel of the original
    threads: int
    work_dir: str
    calibration_data: str  # the data spec our int8 conversion calibrates on
    log: Callable[[str], None]
    # The same calibration, as arrays: the batches our int8 conversion draws from calibration_data
    # (tftrt_toolkit.data, ConversionConfig's default steps and batch size); the peers' int8 rows use these.
    calibration_batches: List[Dict[str, np.ndarray]] = dataclasses.field(default_factory=list)
    cpu_has_int8_dot: bool = False  # VNNI/AMX: ONNX Runtime's int8 needs reduce_range without them
    onednn_here: bool = True  # TF's oneDNN ops are on in this process (IsMklEnabled)
    # An onednn_worker.OneDNNWorker, which runs the oneDNN-on rows when onednn_here is False (not
    # imported here: the worker builds rows from a Context, so onednn_worker imports this module).
    worker: Optional[object] = None
    cache: dict = dataclasses.field(default_factory=dict)  # conversions shared by several rows
    in_worker: bool = False  # this is a worker process's context: it builds every row it is asked for
    # (intra-op, inter-op threads) -> a started worker at those threads (rows.OWN_THREADS_ROWS); run.py
    # gives the starter, which this module cannot import (the workers import it).
    start_worker: Optional[Callable[[int, int], object]] = None
    threads_workers: dict = dataclasses.field(default_factory=dict)

    def threads_worker(self, key: str):
        """The worker process that serves row ``key`` at the threads its conversion records, started once."""
        from .rows import OWN_THREADS_ROWS, Skipped

        threads = OWN_THREADS_ROWS[key]
        if threads not in self.threads_workers:
            if self.start_worker is None:
                raise Skipped(f"needs its own TF threads (intra-op {threads[0]}, inter-op {threads[1]}) and no worker "
                              "process can be started here")
            self.threads_workers[threads] = self.start_worker(*threads)
        return self.threads_workers[threads]


def require(*modules: str) -> None:
    """Import a peer's packages or raise Skipped naming every missing one and how to install them."""
    missing = []
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as error:
            missing.append(f"{module} ({error})")
    if missing:
        raise Skipped(f"not installed: {'; '.join(missing)}; install the peers with: {PEERS_INSTALL_HINT}")


def size_mb(path: str) -> float:
    if os.path.isfile(path):
        return round(os.path.getsize(path) / 2 ** 20, 1)
    total = sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path) for name in names)
    return round(total / 2 ** 20, 1)


def run_converter(name: str, command: List[str], output: str) -> None:
    """Run a converter's child process; Skipped with its last error line when it fails or writes nothing."""
    completed = subprocess.run(command, capture_output=True, text=True,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if completed.returncode != 0 or not os.path.exists(output):
        lines = [line for line in completed.stderr.strip().splitlines() if line.strip()]
        errors = [line for line in lines if "error" in line.lower()] or lines
        raise Skipped(f"{name} failed (exit {completed.returncode}): {errors[-1][:300] if errors else 'no message'}")
