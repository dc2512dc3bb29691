"""What this machine is: TensorFlow/TensorRT/GPU facts, oneDNN's state, CPU features, the backend ``auto`` picks.

Every fact comes from its source of truth, once per process:
- TensorRT: ``tf.sysconfig.get_build_info()["is_tensorrt_build"]`` (the pip wheel of TF 2.17
  *is* a TensorRT build), ``get_linked_tensorrt_version()`` (safe to call), and only when
  ``is_tensorrt_enabled()`` says the libraries loaded, ``get_loaded_tensorrt_version()``
  (it aborts the interpreter when they did not). Which library files are missing, and where
  we looked, comes from ``tensorrt_libraries``.
- oneDNN: ``IsMklEnabled()`` for this process; TF's default rule for the CPU (``onednn``).
Which precisions can run here is ``backends.precisions``' answer, from these facts;
``report/doctor.py`` renders both for ``tftrt doctor``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import platform
from typing import Dict, Optional, Tuple

from tftrt_toolkit import onednn, tensorrt_libraries
from tftrt_toolkit.version import __version__
from tftrt_toolkit.tensorrt_libraries import LibrarySearch


@dataclasses.dataclass(frozen=True)
class Environment:
    """One snapshot of the facts that decide which backend and precision can run here."""

    toolkit_version: str
    python_version: str
    platform: str
    tensorflow_version: str
    keras_version: Optional[str]
    tensorflow_built_with_tensorrt: bool  # get_build_info()["is_tensorrt_build"]
    tensorrt_linked_version: Optional[str]  # the TensorRT TF was linked against, e.g. "8.6.1"
    tensorrt_loaded_version: Optional[str]  # None unless TF loaded TensorRT's libraries
    gpus: Tuple[str, ...]
    cpu_model: Optional[str]
    cpu_features: Tuple[str, ...]  # the ones our kernels use: avx2, avx512_bf16, amx_bf16, ... (ONEDNN_MAX_CPU_ISA caps them)
    cpu_count: int
    onednn_enabled: bool  # IsMklEnabled(): what TF does in this process
    onednn_default: bool = False  # what TF does on this CPU when TF_ENABLE_ONEDNN_OPTS is not set
    onednn_set_by: str = "default"  # "default", "user" (the variable) or "toolkit" (tftrt turned it on)
    onednn_in_tftrt_commands: bool = True  # tftrt commands turn it on unless the user set it off
    tensorrt_libraries: Optional[LibrarySearch] = None  # None when TF is not linked with TensorRT

    @property
    def tensorrt_missing_libraries(self) -> Tuple[str, ...]:
        return self.tensorrt_libraries.missing if self.tensorrt_libraries else ()

    @property
    def tensorrt_usable(self) -> bool:
        return self.tensorflow_built_with_tensorrt and bool(self.gpus) and self.tensorrt_loaded_version is not None

    @property
    def cpu_has_bf16(self) -> bool:
        # avx512_bf16 gives native bf16 dot products; AMX tiles do it faster still. oneDNN
        # on AVX512 without either emulates bf16, which is slower than fp32.
        return "avx512_bf16" in self.cpu_features or "amx_bf16" in self.cpu_features

    @property
    def cpu_has_avx512(self) -> bool:
        # What TF's oneDNN ops need to run bf16 at all (AVX512 emulates it; AVX2 has no bf16 kernels).
        return "avx512f" in self.cpu_features and "avx512bw" in self.cpu_features

    @property
    def cpu_has_int8_dot(self) -> bool:
        # VNNI/AMX make int8 dot products one instruction; oneDNN's int8 kernels also run on
        # AVX2 (three instructions), where they were still the fastest thing measured.
        return any(f in self.cpu_features for f in ("avx512_vnni", "avx_vnni", "amx_int8"))

    def recommended_backend(self) -> Tuple[str, str]:
        """(backend, why) — the choice ``--backend=auto`` makes, and the reason in one sentence."""
        if self.tensorrt_usable:
            return "tensorrt", f"TensorFlow has TensorRT {self.tensorrt_loaded_version} and a GPU is visible ({self.gpus[0]})"
        if not self.tensorflow_built_with_tensorrt:
            why = f"TensorFlow {self.tensorflow_version} here was built without TensorRT"
        elif self.tensorrt_loaded_version is None:
            missing = ", ".join(self.tensorrt_missing_libraries) or "libnvinfer"
            why = (f"TensorFlow is built with TensorRT {self.tensorrt_linked_version or ''}".rstrip()
                   + f" but its libraries are not installed or not on the loader's path ({missing})")
        else:
            why = "no GPU is visible to TensorFlow"
        return "cpu", why + "; using the cpu backend (oneDNN)"

    def as_in_tftrt_commands(self) -> "Environment":
        """These facts as a ``tftrt`` command here sees them: oneDNN as those commands set it.

        ``tftrt doctor`` probes a plain process (oneDNN at TF's default), but reports which
        precisions the toolkit's commands can run, and they turn oneDNN on first.
        """
        if self.onednn_enabled == self.onednn_in_tftrt_commands or self.onednn_set_by != "default":
            return self
        return dataclasses.replace(self, onednn_enabled=self.onednn_in_tftrt_commands)

    def one_line(self) -> str:
        backend, why = self.recommended_backend()
        return f"TF {self.tensorflow_version}, backend {backend}: {why}."

    def to_json(self) -> Dict[str, object]:
        """The facts, with the field names `tftrt doctor --json` promises (scripts read them)."""
        data = dataclasses.asdict(self)
        data["gpus"] = list(self.gpus)
        data["cpu_features"] = list(self.cpu_features)
        data["tensorrt_libraries"] = self.tensorrt_libraries.to_json() if self.tensorrt_libraries else None
        data["tensorrt_build"] = self.tensorflow_built_with_tensorrt
        data["tensorrt_linked"] = self.tensorrt_linked_version
        data["tensorrt_loaded"] = self.tensorrt_loaded_version
        data["tensorrt_missing_libraries"] = list(self.tensorrt_missing_libraries)
        backend, why = self.recommended_backend()
        data["recommended_backend"] = backend
        data["recommended_backend_reason"] = why
        data["cpu_has_bf16"] = self.cpu_has_bf16
        data["cpu_has_avx512"] = self.cpu_has_avx512
        data["cpu_has_int8_dot"] = self.cpu_has_int8_dot
        return data


_INTERESTING_CPU_FLAGS = (
    "sse4_1", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
    "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8",
)


# ONEDNN_MAX_CPU_ISA caps the instruction sets oneDNN's kernels use (and is how to imitate a
# smaller CPU on a bigger one); the features our kernels can use are the CPU's, capped alike.
_ISA_CAPS = (
    ("SSE41", ("sse4_1",)),
    ("AVX", ("avx",)),
    ("AVX2", ("avx2", "fma")),
    ("AVX2_VNNI", ("avx_vnni",)),
    ("AVX2_VNNI_2", ()),
    ("AVX512_CORE", ("avx512f", "avx512bw", "avx512vl")),
    ("AVX512_CORE_VNNI", ("avx512_vnni",)),
    ("AVX512_CORE_BF16", ("avx512_bf16",)),
    ("AVX10_1_512", ("avx512_fp16",)),
    ("AVX512_CORE_FP16", ("avx512_fp16",)),
    ("AVX512_CORE_AMX", ("amx_tile", "amx_bf16", "amx_int8")),
)


def _isa_cap(flags, cap: Optional[str]):
    if not cap or cap.upper() in ("ALL", "DEFAULT"):
        return flags
    allowed = set()
    for isa, features in _ISA_CAPS:
        allowed.update(features)
        if isa == cap.upper():
            return frozenset(f for f in flags if f in allowed or f not in _INTERESTING_CPU_FLAGS)
    return flags  # a value oneDNN does not know: it ignores it too


def _read_cpuinfo() -> Tuple[Optional[str], Tuple[str, ...]]:
    model, flags = _read_cpuinfo_raw()
    flags = _isa_cap(flags, os.environ.get("ONEDNN_MAX_CPU_ISA"))
    return model, tuple(f for f in _INTERESTING_CPU_FLAGS if f in flags)


def _read_cpu_flags() -> Tuple[str, ...]:
    return tuple(sorted(_read_cpuinfo_raw()[1]))


@functools.lru_cache(maxsize=1)
def _read_cpuinfo_raw():
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
    return model, frozenset(flags)


def tensorrt_versions() -> Tuple[bool, Optional[str], Optional[str]]:
    """(built_with_tensorrt, linked_version, loaded_version) without ever aborting the process."""
    import tensorflow as tf
    from tensorflow.python.compiler.tensorrt import trt_convert

    pywrap = trt_convert._pywrap_py_utils  # pylint: disable=protected-access

    def as_text(version):
        return ".".join(str(v) for v in version) if version and any(version) else None

    built = bool(tf.sysconfig.get_build_info().get("is_tensorrt_build", False))
    linked = as_text(pywrap.get_linked_tensorrt_version()) if built else None
    # is_tensorrt_enabled() is True only when the libraries were dlopened; ask for the loaded
    # version only then: get_loaded_tensorrt_version() aborts the interpreter otherwise.
    loaded = as_text(pywrap.get_loaded_tensorrt_version()) if built and pywrap.is_tensorrt_enabled() else None
    return built, linked, loaded


def probe(*, toolkit_process: bool = True) -> Environment:
    """Probe once per process (TF import included); later calls return the same snapshot.

    ``toolkit_process``: first turn TF's oneDNN ops on for this process when TensorFlow is
    not imported yet and the user did not set TF_ENABLE_ONEDNN_OPTS (see ``onednn``);
    ``tftrt doctor`` passes False to report what a plain TF process here gets.
    """
    if toolkit_process:
        onednn.turn_on_before_tensorflow()
    return _probe()


@functools.lru_cache(maxsize=1)
def _probe() -> Environment:
    import tensorflow as tf

    try:
        import keras

        keras_version = keras.__version__
    except ImportError:
        keras_version = None
    built, linked, loaded = tensorrt_versions()
    gpus = tuple(d.name for d in tf.config.list_physical_devices("GPU"))
    cpu_model, features = _read_cpuinfo()
    libraries = tensorrt_libraries.search(linked) if built and loaded is None else None
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
        onednn_enabled=onednn.enabled_in_this_process(),
        onednn_default=onednn.default_for(_read_cpu_flags()),
        onednn_set_by=onednn.who_set_it(),
        onednn_in_tftrt_commands=onednn.in_toolkit_commands(),
        tensorrt_libraries=libraries,
    )
