"""What this machine can run: TensorFlow/TensorRT/GPU facts, CPU features, the backend ``auto`` picks.

Probing must never crash the user's process. In TF builds without TensorRT,
``_pywrap_py_utils.get_loaded_tensorrt_version()`` aborts the interpreter, so every
TensorRT question asks ``is_tensorrt_enabled()`` first and stops there when it says no.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import platform
from typing import Dict, List, Optional, Tuple

from tftrt_toolkit import __version__


@dataclasses.dataclass(frozen=True)
class Environment:
    """One snapshot of the facts that decide which backend and precision can run here."""

    toolkit_version: str
    python_version: str
    platform: str
    tensorflow_version: str
    keras_version: Optional[str]
    tensorflow_built_with_tensorrt: bool
    tensorrt_linked_version: Optional[str]
    tensorrt_loaded_version: Optional[str]
    gpus: Tuple[str, ...]
    cpu_model: Optional[str]
    cpu_features: Tuple[str, ...]  # the ones that matter for our kernels: avx512f, avx512_bf16, amx_bf16, ...
    cpu_count: int
    onednn_enabled: bool

    @property
    def tensorrt_usable(self) -> bool:
        return self.tensorflow_built_with_tensorrt and bool(self.gpus) and self.tensorrt_loaded_version is not None

    @property
    def cpu_has_bf16(self) -> bool:
        # avx512_bf16 gives native bf16 dot products; AMX tiles do it faster still. oneDNN
        # on AVX512 without either emulates bf16, which is slower than fp32.
        return "avx512_bf16" in self.cpu_features or "amx_bf16" in self.cpu_features

    @property
    def cpu_has_int8_dot(self) -> bool:
        return any(f in self.cpu_features for f in ("avx512_vnni", "avx_vnni", "amx_int8"))

    def recommended_backend(self) -> Tuple[str, str]:
        """(backend, why) — the choice ``--backend=auto`` makes, and the reason in one sentence."""
        if self.tensorrt_usable:
            return "tensorrt", f"TensorFlow has TensorRT {self.tensorrt_loaded_version} and a GPU is visible ({self.gpus[0]})"
        if not self.tensorflow_built_with_tensorrt:
            why = f"TensorFlow {self.tensorflow_version} here was built without TensorRT"
        elif self.tensorrt_loaded_version is None:
            why = "TensorFlow was built with TensorRT but the TensorRT libraries could not be loaded"
        else:
            why = "no GPU is visible to TensorFlow"
        return "cpu", why + "; using the cpu backend (oneDNN)"

    def recommended_precisions(self) -> Tuple[str, ...]:
        """Precisions worth trying on the recommended backend, best first."""
        backend, _ = self.recommended_backend()
        if backend == "tensorrt":
            return ("int8", "fp16", "fp32")
        precisions = ["fp32"]
        if self.cpu_has_bf16:
            precisions.insert(0, "bf16")
        return tuple(precisions)

    def one_line(self) -> str:
        backend, why = self.recommended_backend()
        return f"TF {self.tensorflow_version}, backend {backend}: {why}."

    def to_json(self) -> Dict[str, object]:
        data = dataclasses.asdict(self)
        data["gpus"] = list(self.gpus)
        data["cpu_features"] = list(self.cpu_features)
        backend, why = self.recommended_backend()
        data["recommended_backend"] = backend
        data["recommended_backend_reason"] = why
        data["recommended_precisions"] = list(self.recommended_precisions())
        data["cpu_has_bf16"] = self.cpu_has_bf16
        data["cpu_has_int8_dot"] = self.cpu_has_int8_dot
        return data


_INTERESTING_CPU_FLAGS = (
    "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
    "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8",
)


def _read_cpuinfo() -> Tuple[Optional[str], Tuple[str, ...]]:
    model, flags = None, set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model is None:
                    model = value.strip()
                elif key == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass  # not Linux: report no features rather than guess
    return model, tuple(f for f in _INTERESTING_CPU_FLAGS if f in flags)


def tensorrt_versions() -> Tuple[bool, Optional[str], Optional[str]]:
    """(built_with_tensorrt, linked_version, loaded_version) without ever aborting the process."""
    from tensorflow.python.compiler.tensorrt import trt_convert

    pywrap = trt_convert._pywrap_py_utils  # pylint: disable=protected-access
    if not pywrap.is_tensorrt_enabled():
        # Stop here: get_loaded_tensorrt_version() aborts in builds without TensorRT.
        return False, None, None

    def as_text(version):
        return ".".join(str(v) for v in version) if version and any(version) else None

    linked = as_text(pywrap.get_linked_tensorrt_version())
    loaded = as_text(pywrap.get_loaded_tensorrt_version())
    return True, linked, loaded


@functools.lru_cache(maxsize=1)
def probe() -> Environment:
    """Probe once per process (TF import included); later calls return the same snapshot."""
    import tensorflow as tf

    try:
        import keras

        keras_version = keras.__version__
    except ImportError:
        keras_version = None
    built, linked, loaded = tensorrt_versions()
    gpus = tuple(d.name for d in tf.config.list_physical_devices("GPU"))
    cpu_model, features = _read_cpuinfo()
    onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") != "0"
    return Environment(
        toolkit_version=__version__,
        python_version=platform.python_version(),
        platform=platform.platform(),
        tensorflow_version=tf.__version__,
        keras_version=keras_version,
        tensorflow_built_with_tensorrt=built,
        tensorrt_linked_version=linked,
        tensorrt_loaded_version=loaded,
        gpus=gpus,
        cpu_model=cpu_model,
        cpu_features=features,
        cpu_count=os.cpu_count() or 1,
        onednn_enabled=onednn,
    )


def environment_lines(env: Environment) -> List[str]:
    """The doctor report as aligned 'key: value' lines."""
    backend, why = env.recommended_backend()
    rows = [
        ("tftrt_toolkit", env.toolkit_version),
        ("python", env.python_version),
        ("platform", env.platform),
        ("tensorflow", env.tensorflow_version),
        ("keras", env.keras_version or "not installed"),
        ("tf built with TensorRT", "yes" if env.tensorflow_built_with_tensorrt else "no"),
        ("TensorRT linked", env.tensorrt_linked_version or "-"),
        ("TensorRT loaded", env.tensorrt_loaded_version or "-"),
        ("GPUs", ", ".join(env.gpus) or "none"),
        ("CPU", f"{env.cpu_model or 'unknown'} ({env.cpu_count} cores)"),
        ("CPU features", " ".join(env.cpu_features) or "none detected"),
        ("oneDNN", "on" if env.onednn_enabled else "off (TF_ENABLE_ONEDNN_OPTS=0)"),
        ("recommended backend", f"{backend} — {why}"),
        ("recommended precisions", ", ".join(env.recommended_precisions())),
    ]
    width = max(len(k) for k, _ in rows)
    return [f"{k.ljust(width)}  {v}" for k, v in rows]
