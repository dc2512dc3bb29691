"""Which precisions can run here: the one answer, used by doctor, run, tune, the cpu backend and the tests.

Decided by capability, from the facts ``environment`` reads off TensorFlow and the CPU,
never by a guess about speed (where it is unclear which is faster, ``tftrt tune`` measures):

- cpu fp32: everywhere.
- cpu bf16: only where the CPU computes bf16 natively (AVX512-BF16 or AMX-BF16) and TF's
  oneDNN ops are on in this process (grappler's bf16 pass is a oneDNN pass). The models run
  anywhere: with oneDNN on AVX512 CPUs, with TF's Eigen kernels (TF_ENABLE_ONEDNN_OPTS=0) on
  any CPU, slowly — so tests prove bf16 everywhere, but users are offered it only where it pays.
- cpu int8: wherever TF's oneDNN int8 kernels run: an x86 CPU with AVX2 (oneDNN's int8
  convolutions have AVX2, VNNI and AMX implementations), TF's oneDNN ops on in this process
  (int8 graphs use oneDNN-only ops), and Intel Neural Compressor installed to convert.
  Measured on an AVX2-only AMD EPYC with oneDNN on: ResNet50 int8 2.9x (bs1) / 2.6x (bs8)
  over plain TF, the fastest thing that machine ran.
- tensorrt fp32, fp16, int8: where TF has TensorRT loaded and sees a GPU.

The order is the order ``tftrt run`` converts them in: the safe choice first.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from typing import List, Optional, Tuple

from tftrt_toolkit.environment import Environment
from tftrt_toolkit.errors import ConfigError

CPU_PRECISIONS = ("fp32", "bf16", "int8")
TENSORRT_PRECISIONS = ("fp32", "fp16", "int8")
INC_INSTALL_HINT = "pip install -e \".[cpu-int8]\""


@dataclasses.dataclass(frozen=True)
class PrecisionOffer:
    """One backend x precision: whether it can run here, why (or why not), and what its models need at run time."""

    backend: str
    precision: str
    available: bool
    reason: str
    requires_onednn: bool = False

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def _inc_installed() -> bool:
    return importlib.util.find_spec("neural_compressor") is not None


def _cpu_offers(env: Environment, inc_installed: Optional[bool] = None) -> List[PrecisionOffer]:
    inc_installed = _inc_installed() if inc_installed is None else inc_installed
    features = set(env.cpu_features)
    offers = [PrecisionOffer("cpu", "fp32", True, "every CPU")]
    if "amx_bf16" not in features and "avx512_bf16" not in features:
        offers.append(PrecisionOffer("cpu", "bf16", False, "this CPU has neither AVX512-BF16 nor AMX-BF16 "
                                     "(bf16 would run emulated or on Eigen's kernels, slower than fp32)"))
    elif not env.onednn_enabled:
        # Measured: with oneDNN off grappler's bf16 pass (auto_mixed_precision_onednn_bfloat16) changes nothing.
        offers.append(PrecisionOffer("cpu", "bf16", False, "converting to bf16 uses grappler's oneDNN pass, and TF's "
                                     "oneDNN ops are off in this process: start it with TF_ENABLE_ONEDNN_OPTS=1 set "
                                     "before TensorFlow is imported"))
    else:
        native = "AMX-BF16" if "amx_bf16" in features else "AVX512-BF16"
        offers.append(PrecisionOffer("cpu", "bf16", True, f"this CPU computes bf16 natively ({native})"))
    int8_kernels = ("AMX-INT8" if "amx_int8" in features else "AVX512-VNNI" if "avx512_vnni" in features
                    else "AVX-VNNI" if "avx_vnni" in features else "AVX2" if "avx2" in features else None)
    if int8_kernels is None:
        reason, available = "oneDNN's int8 kernels need at least AVX2, which this CPU lacks", False
    elif not env.onednn_enabled:
        reason, available = ("TF's oneDNN ops are off in this process (int8 graphs need them): start it with "
                             "TF_ENABLE_ONEDNN_OPTS=1 set before TensorFlow is imported"), False
    elif not inc_installed:
        reason, available = f"converting needs Intel Neural Compressor: {INC_INSTALL_HINT}", False
    else:
        reason, available = f"TF's oneDNN int8 kernels run here ({int8_kernels}); models need oneDNN on", True
    offers.append(PrecisionOffer("cpu", "int8", available, reason, requires_onednn=True))
    return offers


def _tensorrt_offers(env: Environment) -> List[PrecisionOffer]:
    if env.tensorrt_usable:
        why = f"TensorRT {env.tensorrt_loaded_version} is loaded and a GPU is visible"
        return [PrecisionOffer("tensorrt", p, True, why) for p in TENSORRT_PRECISIONS]
    _, why = env.recommended_backend()
    why = why.split(";")[0]
    return [PrecisionOffer("tensorrt", p, False, why) for p in TENSORRT_PRECISIONS]


def precision_offers(env: Environment, backend: str = "cpu", *, inc_installed: Optional[bool] = None) -> List[PrecisionOffer]:
    """Every precision of ``backend`` ("cpu" or "tensorrt"), available or not, with the reason, in run's order."""
    if backend == "tensorrt":
        return _tensorrt_offers(env)
    if backend != "cpu":
        raise ConfigError(f"backend {backend!r} has no precisions; use cpu or tensorrt.")
    return _cpu_offers(env, inc_installed)


def offered_precisions(env: Environment, backend: Optional[str] = None) -> Tuple[str, ...]:
    """The precisions that can run here on ``backend`` (default: the one ``auto`` picks), in run's order."""
    backend = backend or env.recommended_backend()[0]
    return tuple(offer.precision for offer in precision_offers(env, backend) if offer.available)


def offer_for(env: Environment, backend: str, precision: str) -> PrecisionOffer:
    """The offer for one backend x precision (``available`` False with the reason when it cannot run here)."""
    for offer in precision_offers(env, backend):
        if offer.precision == precision:
            return offer
    return PrecisionOffer(backend, precision, False, f"the {backend} backend has no precision {precision!r}")
