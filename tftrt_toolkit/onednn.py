"""TensorFlow's oneDNN switch: what TF does here by default, what it does in this process, and turning it on.

TF 2.17 (tensorflow/core/util/util.cc, ``IsMklEnabled``) turns its oneDNN ops on by default
on Linux only for CPUs with AVX512-VNNI, AVX512-BF16, AVX-VNNI or AMX; elsewhere (AVX2
machines: AMD Zen 2/3, older Xeons, most laptops) they are off and Eigen kernels run.
``TF_ENABLE_ONEDNN_OPTS=0/1`` overrides that, read once when TensorFlow is imported.

Measured on a 2-core AMD EPYC with AVX2+FMA only, where the default is off: the cpu fp32
conversion of EfficientNet-Lite0 ran 1.13x over plain TF with oneDNN off and 1.44x with
it on; cpu int8 ResNet50 ran 2.9x (bs1) / 2.6x (bs8) with it on, and int8 models fail with
an InternalError at their first call with it off. So every toolkit process turns it on
before TensorFlow is imported, unless the user set the variable, and records that it did:
every ``tftrt`` command but ``doctor`` (which reports what a plain TF process here gets),
``convert``/``run``/``tune`` and ``ModelRunner`` in the Python API when TF is not imported
yet, and Beam's workers. A process that imported TensorFlow first keeps what TF read.

This module imports no TensorFlow until ``enabled_in_this_process`` is asked.
"""

from __future__ import annotations

import os
import sys
from typing import Iterable, Optional

SWITCH = "TF_ENABLE_ONEDNN_OPTS"
# Set when the toolkit (not the user) set SWITCH, so reports can say who chose.
SET_BY_TOOLKIT = "TFTRT_TOOLKIT_SET_ONEDNN"
# CPU flags (as /proc/cpuinfo names them) for which TF 2.17 turns oneDNN on by default on Linux.
DEFAULT_ON_CPU_FLAGS = ("avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")
_FALSE = ("0", "false")


def default_for(cpu_flags: Iterable[str], system: str = sys.platform) -> bool:
    """Whether TF 2.17 turns oneDNN on by default for a CPU with ``cpu_flags`` (what it does without the variable)."""
    return system.startswith("linux") and any(flag in set(cpu_flags) for flag in DEFAULT_ON_CPU_FLAGS)


def turn_on_before_tensorflow(environ=None) -> str:
    """Turn TF's oneDNN ops on for this process, if TF is not imported yet and the user did not choose.

    Returns who decides the switch: "toolkit" (set here, or by a toolkit parent process),
    "user" (the variable was set), or "too-late" (TensorFlow was imported first; it keeps
    what it read then).
    """
    environ = os.environ if environ is None else environ
    if environ.get(SET_BY_TOOLKIT):
        return "toolkit"  # a toolkit process started this one (tune's workers, Beam workers)
    if SWITCH in environ:
        return "user"
    if "tensorflow" in sys.modules:
        return "too-late"
    environ[SWITCH] = "1"
    environ[SET_BY_TOOLKIT] = "1"
    return "toolkit"


# With oneDNN on, TensorFlow's CPU allocator keeps every large tensor's memory in a pool it
# never hands back (measured: VGG16's 528 MB of weights stay resident after they are freed, and
# the next step's buffers are added on top). oneDNN's own switch sends allocations to the system
# allocator instead, which returns freed memory.
SYSTEM_ALLOCATOR = "TF_ONEDNN_USE_SYSTEM_ALLOCATOR"


def return_freed_memory_before_tensorflow(environ=None) -> bool:
    """For a process that converts: freed tensors go back to the system, so each step's peak is its own.

    Only ``tftrt convert`` asks for it (its steps each hold the weights once, then free
    them); processes that time models keep TensorFlow's default pool. Does nothing when the
    user set the variable or TensorFlow is already imported. Returns whether it was set.
    """
    environ = os.environ if environ is None else environ
    if SYSTEM_ALLOCATOR in environ or "tensorflow" in sys.modules:
        return False
    environ[SYSTEM_ALLOCATOR] = "1"
    return True


def in_toolkit_commands(environ=None) -> bool:
    """Whether ``tftrt`` commands run with oneDNN on here: yes, unless the user set the switch off."""
    environ = os.environ if environ is None else environ
    if environ.get(SET_BY_TOOLKIT) or SWITCH not in environ:
        return True
    return environ[SWITCH].strip().lower() not in _FALSE


def who_set_it(environ=None) -> str:
    """"toolkit", "user" or "default": where this process's oneDNN setting came from."""
    environ = os.environ if environ is None else environ
    if environ.get(SET_BY_TOOLKIT):
        return "toolkit"
    return "user" if SWITCH in environ else "default"


def enabled_in_this_process() -> bool:
    """What TensorFlow actually does in this process (``IsMklEnabled``), never a reading of the variable."""
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled())


def environment_with(enabled: Optional[bool], environ=None) -> dict:
    """A copy of the environment for a child process with oneDNN on (True), off (False), or at TF's default (None)."""
    environ = dict(os.environ if environ is None else environ)
    environ.pop(SET_BY_TOOLKIT, None)
    if enabled is None:
        environ.pop(SWITCH, None)
    else:
        environ[SWITCH] = "1" if enabled else "0"
    return environ


def off_message(what: str) -> str:
    """One line for a model or step that needs oneDNN in a process where it is off."""
    return (f"{what} needs TensorFlow's oneDNN ops, which are off in this process (TF turns them on by default only "
            f"on CPUs with AVX512-VNNI/BF16, AVX-VNNI or AMX); start Python with {SWITCH}=1 set before TensorFlow is "
            "imported (tftrt commands do this themselves)")


def bf16_without_avx512_message(what: str, needs_onednn: bool) -> str:
    """One line for a bf16 model in a process whose oneDNN ops are on, on a CPU without AVX512."""
    if needs_onednn:
        return (f"{what} needs TF's oneDNN ops, and oneDNN runs bf16 only on CPUs with AVX512 (natively with "
                "AVX512-BF16 or AMX), which this CPU lacks; serve it on such a CPU, or convert with --precision=fp32")
    return (f"{what} cannot run with TF's oneDNN ops on this CPU: oneDNN runs bf16 only on CPUs with AVX512 "
            f"(natively with AVX512-BF16 or AMX); start Python with {SWITCH}=0 set before TensorFlow is imported to "
            "run it on TF's Eigen bf16 kernels (slowly), or serve it on a CPU with AVX512-BF16/AMX")

