"""The tensorrt backend: TF-TRT's ``TrtGraphConverterV2`` (convert, calibrate, build, save).

Imports nothing from ``backends.cpu`` (tests/test_architecture.py); the segment plan it
reports comes from ``analysis.tensorrt_plan``.
"""

from tftrt_toolkit.backends.tensorrt.backend import TensorRTBackend
from tftrt_toolkit.backends.tensorrt.converter import NOT_BUILT_WITH_TENSORRT

__all__ = ["NOT_BUILT_WITH_TENSORRT", "TensorRTBackend"]
