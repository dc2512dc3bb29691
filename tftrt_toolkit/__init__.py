"""tftrt_toolkit: optimize an existing TensorFlow model for inference and save a plain SavedModel.

    import tftrt_toolkit as tt
    m = tt.convert("saved_models/efficientnet_lite0", "out/lite0-fp32", precision="fp32")
    v = m.validate(data="saved_models/samples")   # ValidationReport, truthy on pass
    b = m.benchmark(batch_sizes=[1, 8])           # against its source model, interleaved
    r = tt.run()                                  # the main job; tt.tune(...), tt.predict(...) likewise

Results render as tables in Jupyter, have ``to_json()``, ``save()``, and charts ``plot()``
(see ``tftrt_toolkit.api``). Importing the package is cheap; TensorFlow is imported when a
function needs it.
"""

# The notebook API (tftrt_toolkit/api.py): a call per step and per job, results that render.
_API = ("convert", "OptimizedModel", "validate", "benchmark", "throughput", "predict", "run", "tune",
        "ValidationReport", "BenchmarkReport", "PredictionResult", "ThroughputReport", "read_benchmarks")

from tftrt_toolkit.version import __version__  # noqa: E402  (lives in a core module; re-exported here)

from tftrt_toolkit.config import Backend, ConversionConfig, Precision  # noqa: E402
from tftrt_toolkit.errors import (  # noqa: E402
    BackendUnavailable, ConfigError, ConversionError, DataError, ModelLoadError, OutputError, ToolkitError,
    ValidationFailed,
)


def __getattr__(name):
    # Lazy public API: these import TensorFlow-heavy modules on first use only.
    if name in _API:
        from tftrt_toolkit import api

        return getattr(api, name)
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
    "ValidationFailed", "convert", "doctor", "load_model", *_API,
]
