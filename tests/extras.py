"""The optional extras tests may skip for (the only skips besides a GPU/TensorRT): one answer each."""

import pytest

from tftrt_toolkit.backends.cpu.int8.quantize import INSTALL_HINT, _import_inc
from tftrt_toolkit.errors import BackendUnavailable


def have_inc() -> bool:
    """Whether Intel Neural Compressor (the cpu-int8 extra) imports here, as int8 conversion imports it."""
    try:
        _import_inc()
    except BackendUnavailable:
        return False
    return True


HAVE_INC = have_inc()
needs_inc = pytest.mark.skipif(not HAVE_INC, reason=f"Intel Neural Compressor missing: {INSTALL_HINT}")

# google-crc32c (a dependency; the code falls back without it): weights are streamed from the source checkpoint, each
# checked as it is copied; without it they are restored (the tests of that path need nothing).
from tftrt_toolkit.backends.frozen.checkpoint_bundle import streaming_available  # noqa: E402

needs_streaming = pytest.mark.skipif(not streaming_available(),
                                     reason="google-crc32c missing: pip install -e . (it is a dependency)")
