"""Every precision on every CPU: how tests convert and run a precision this CPU does not offer.

The toolkit offers a precision only where it pays (bf16 where the CPU computes it natively);
tests prove every precision's path on every x86-64 machine all the same:

- ``environment_offering_bf16()``: the test-only way past the cpu backend's bf16 capability
  check (``convert(..., env=...)``); users still get the refusal.
- ``model_process_env(model_dir)``: the environment a child process needs to run a converted
  model on this CPU. A bf16 model runs with TF's oneDNN ops only on AVX512 CPUs; elsewhere it
  runs on TF's Eigen bf16 kernels, in a process started with TF_ENABLE_ONEDNN_OPTS=0.
- ``run_serving_default(model_dir, feeds)``: the model's outputs, computed in this process where
  it can run here, else in such a child process.
- ``smaller_cpu_env(onednn)``: imitate an AVX2-only CPU on a bigger one (ONEDNN_MAX_CPU_ISA=AVX2),
  with TF's oneDNN ops on or off; both are read once, when TensorFlow is imported, so only in a
  child process.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from typing import Dict, Optional

import numpy as np

from tftrt_toolkit import artifacts, onednn
from tftrt_toolkit.environment import probe

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHILD_TIMEOUT_S = 900  # generous: the machine's two cores may be shared with another test run


def environment_offering_bf16():
    """This machine's facts, except that its CPU computes bf16 natively (unchanged where it does)."""
    env = probe()
    if env.cpu_has_bf16:
        return env
    return dataclasses.replace(env, cpu_features=env.cpu_features + ("avx512_bf16",))


def runs_here(model_dir) -> bool:
    """Whether this process (oneDNN as it is, CPU as capped) can run the converted model."""
    runtime = (artifacts.read_metadata(str(model_dir)) or {}).get("runtime") or {}
    on = onednn.enabled_in_this_process()
    if runtime.get("requires_onednn") and not on:
        return False
    return not (runtime.get("onednn_needs_cpu") == "AVX512" and on and not probe().cpu_has_avx512)


def child_env(onednn_on: Optional[bool] = None, *, max_isa: Optional[str] = None) -> Dict[str, str]:
    """A child process's environment: this checkout first on the path, oneDNN as asked, the ISA capped."""
    env = onednn.environment_with(onednn_on)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if max_isa:
        env["ONEDNN_MAX_CPU_ISA"] = max_isa
    return env


def smaller_cpu_env(onednn_on: bool) -> Dict[str, str]:
    """An AVX2-only CPU (the class of AMD EPYC Zen 2/3 and most laptops), oneDNN on or off."""
    return child_env(onednn_on, max_isa="AVX2")


def model_process_env(model_dir) -> Dict[str, str]:
    """The environment for a child process that runs ``model_dir`` on this CPU (as capped in this process)."""
    if runs_here(model_dir):
        return child_env(onednn.enabled_in_this_process(), max_isa=os.environ.get("ONEDNN_MAX_CPU_ISA"))
    return child_env(False, max_isa=os.environ.get("ONEDNN_MAX_CPU_ISA"))  # Eigen's bf16 kernels


_RUN_IN_CHILD = """
import sys, numpy as np, tensorflow as tf
model_dir, feeds_path, out_path = sys.argv[1:4]
feeds = dict(np.load(feeds_path))
loaded = tf.saved_model.load(model_dir)
outputs = loaded.signatures["serving_default"](**{k: tf.constant(v) for k, v in feeds.items()})
np.savez(out_path, **{k: v.numpy() for k, v in outputs.items()})
"""


def run_serving_default(model_dir, feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """``serving_default``'s outputs for ``feeds``: in this process where the model runs here, else in a child."""
    if runs_here(model_dir):
        import tensorflow as tf

        loaded = tf.saved_model.load(str(model_dir))
        outputs = loaded.signatures["serving_default"](**{k: tf.constant(v) for k, v in feeds.items()})
        return {k: v.numpy() for k, v in outputs.items()}
    with tempfile.TemporaryDirectory(prefix="tftrt-test-") as work:
        feeds_path, out_path = os.path.join(work, "feeds.npz"), os.path.join(work, "outputs.npz")
        np.savez(feeds_path, **feeds)
        done = subprocess.run([sys.executable, "-c", _RUN_IN_CHILD, str(model_dir), feeds_path, out_path],
                              env=model_process_env(model_dir), capture_output=True, text=True,
                              timeout=CHILD_TIMEOUT_S)
        assert done.returncode == 0, done.stderr[-3000:]
        with np.load(out_path) as outputs:
            return dict(outputs)


def tftrt_in_child(*args, env: Dict[str, str], cwd=None) -> subprocess.CompletedProcess:
    """`tftrt ARGS` as a user runs it, in a child process with ``env``."""
    return subprocess.run([sys.executable, "-m", "tftrt_toolkit.cli.main", *map(str, args)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)


def python_in_child(script: str, *args, env: Dict[str, str]) -> dict:
    """Run ``script`` (which prints one JSON line last) in a child process; its parsed last line."""
    done = subprocess.run([sys.executable, "-c", script, *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=CHILD_TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
