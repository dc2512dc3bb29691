"""tftrt_toolkit: optimize an existing TensorFlow model for inference and save a plain SavedModel.

    from tftrt_toolkit import convert, ConversionConfig
    optimized = convert("keras:ResNet50", "resnet50-bf16", ConversionConfig(backend="cpu", precision="bf16"), weights=None)

Importing the package is cheap; TensorFlow is imported when a function needs it.
"""

__version__ = "0.1.0"

from tftrt_toolkit.config import Backend, ConversionConfig, Precision  # noqa: E402
from tftrt_toolkit.errors import (  # noqa: E402
    BackendUnavailable, ConfigError, ConversionError, DataError, ModelLoadError, OutputError, ToolkitError,
    ValidationFailed,
)


def __getattr__(name):
    # Lazy public API: these import TensorFlow-heavy modules on first use only.
    if name in ("convert", "OptimizedModel"):
        from tftrt_toolkit import pipeline

        return getattr(pipeline, name)
    if name in ("load_model", "LoadedModel"):
        from tftrt_toolkit.models import loader

        return getattr(loader, name)
    if name == "doctor":
        from tftrt_toolkit.environment import probe

        return probe
    raise AttributeError(f"module 'tftrt_toolkit' has no attribute {name!r}")


__all__ = [
    "Backend", "BackendUnavailable", "ConfigError", "ConversionConfig", "ConversionError", "DataError",
    "LoadedModel", "ModelLoadError", "OptimizedModel", "OutputError", "Precision", "ToolkitError",
    "ValidationFailed", "convert", "doctor", "load_model",
]
