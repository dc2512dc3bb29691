"""Choosing a backend: ``auto`` takes tensorrt where TF has TensorRT and a GPU, else cpu, and says why."""

from __future__ import annotations

from typing import List, Tuple

from tftrt_toolkit.backends.base import ConversionBackend
from tftrt_toolkit.config import Backend, ConversionConfig
from tftrt_toolkit.environment import Environment
from tftrt_toolkit.errors import ToolkitError


def backend_named(name: Backend) -> ConversionBackend:
    if name is Backend.TENSORRT:
        from tftrt_toolkit.backends.tensorrt import TensorRTBackend

        return TensorRTBackend()
    from tftrt_toolkit.backends.cpu import CpuBackend

    return CpuBackend()


def choose_backend(config: ConversionConfig, env: Environment) -> Tuple[ConversionConfig, ConversionBackend, str]:
    """Resolve ``auto``; returns the config with a concrete backend, the backend, and why it was picked.

    Checks availability before any work, so a refusal costs nothing and writes nothing.
    """
    if config.backend is Backend.AUTO:
        name, why = env.recommended_backend()
        chosen = Backend(name)
    else:
        chosen, why = config.backend, f"--backend={config.backend.value} was asked for"
    resolved = config.replace(backend=chosen)
    backend = backend_named(chosen)
    backend.check_available(resolved, env)
    return resolved, backend, why


def usable_cpu_precisions(env: Environment) -> List[str]:
    """The cpu backend's precisions worth running here, simplest first: fp32 always, bf16, int8.

    bf16 only on CPUs with native BF16 (AVX512-BF16/AMX; elsewhere oneDNN emulates it, slower
    than fp32); int8 only when ``cpu_int8.check_available`` passes (VNNI/AMX, oneDNN on, INC installed).
    """
    precisions = ["fp32"]
    if env.cpu_has_bf16:
        precisions.append("bf16")
    try:
        from tftrt_toolkit.backends import cpu_int8

        cpu_int8.check_available(env)
        precisions.append("int8")
    except ToolkitError:
        pass  # int8 cannot run (fast) here; callers say so where it matters
    return precisions
