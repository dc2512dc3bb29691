"""INT8 post-training quantization for the cpu backend (not available yet: refused clearly)."""

from __future__ import annotations

from tftrt_toolkit.environment import Environment
from tftrt_toolkit.errors import BackendUnavailable


def check_available(env: Environment) -> None:
    raise BackendUnavailable(
        "precision=int8 is not supported on the cpu backend yet; use --precision=bf16 (or fp32) with --backend=cpu, "
        "or int8 with --backend=tensorrt on a GPU machine."
    )


def quantize(frozen, signature, calibration_input_fn):
    check_available(None)
