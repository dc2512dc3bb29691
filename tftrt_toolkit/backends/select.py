"""Choosing a backend: ``auto`` takes tensorrt where TF has TensorRT and a GPU, else cpu, and says why."""

from __future__ import annotations

from typing import Tuple

from tftrt_toolkit.backends.base import ConversionBackend
from tftrt_toolkit.config import Backend, ConversionConfig
from tftrt_toolkit.environment import Environment


def backend_named(name: Backend) -> ConversionBackend:
    if name is Backend.TENSORRT:
        from tftrt_toolkit.backends.tensorrt import TensorRTBackend

        return TensorRTBackend()
    from tftrt_toolkit.backends.cpu.backend import CpuBackend

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
