"""The Python API the package exports: one call per step and per job, results that render in notebooks.

    import tftrt_toolkit as tt
    m = tt.convert("saved_models/efficientnet_lite0", "out/lite0-fp32", precision="fp32")
    v = m.validate(data="saved_models/samples")   # ValidationReport, truthy on pass
    b = m.benchmark(batch_sizes=[1, 8])           # against its source model, interleaved
    r = tt.run()                                  # the main job; tt.tune(...), tt.predict(...) likewise

Each result is one class, defined where it is computed, with its rendering on it
(``_repr_markdown_`` a table in Jupyter, ``to_json()``, ``save()`` the files the CLI
writes, ``plot()`` a matplotlib Figure): ``OptimizedModel`` (runtime/optimized_model.py),
``ValidationReport``, ``BenchmarkReport``, ``PredictionResult``, ``ThroughputReport``
(runtime/), ``RunReport`` (report/run_report.py), ``TuneResult`` (jobs/tune/result.py).
This module only gathers one call per step and per job. Every long call takes ``progress``
(default True: a bar in terminals and notebooks; False: nothing drawn); nothing is printed.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from tftrt_toolkit import pipeline
from tftrt_toolkit.config import Backend, ConversionConfig
from tftrt_toolkit.runtime import benchmark as runtime_benchmark
from tftrt_toolkit.runtime import predict as runtime_predict
from tftrt_toolkit.runtime import throughput as runtime_throughput
from tftrt_toolkit.runtime import validate as runtime_validate
from tftrt_toolkit.runtime.benchmark import BenchmarkReport, read_benchmarks  # noqa: F401  (tt.BenchmarkReport)
from tftrt_toolkit.runtime.optimized_model import OptimizedModel
from tftrt_toolkit.runtime.predict import PredictionResult  # noqa: F401  (tt.PredictionResult)
from tftrt_toolkit.runtime.throughput import ThroughputReport  # noqa: F401  (tt.ThroughputReport)
from tftrt_toolkit.runtime.validate import ValidationReport  # noqa: F401  (tt.ValidationReport)

_CONFIG_FIELDS = frozenset(field.name for field in dataclasses.fields(ConversionConfig))


# --------------------------------------------------------------------------- one call per step and job

def convert(model, output: str, config: Optional[ConversionConfig] = None, *, progress: bool = True,
            **options) -> OptimizedModel:
    """Convert ``model`` and save it at ``output``; ConversionConfig fields may be given as keywords.

        tt.convert("saved_models/efficientnet_lite0", "out/bf16", precision="bf16", backend="cpu")
        tt.convert(model, "out/int8", ConversionConfig(precision="int8"), calibration_data="photos/")

    Keywords naming ConversionConfig fields (precision, backend, minimum_segment_size, ...)
    change ``config`` (default ``ConversionConfig()``); the rest are ``pipeline.convert``'s
    (overwrite, version, weights, calibration_data, ...). Returns an OptimizedModel.
    """
    # ``backend`` is a config field when it names one ("cpu"); pipeline.convert also takes a backend object.
    fields = {name: options.pop(name) for name in list(options)
              if name in _CONFIG_FIELDS and (name != "backend" or isinstance(options[name], (str, Backend)))}
    if fields:
        config = (config or ConversionConfig()).replace(**fields)
    record = pipeline.convert(model, output, config, progress=progress, **options)
    return OptimizedModel(record.path, record.metadata)


def validate(original, optimized, *, data="synthetic", progress: bool = True, **options) -> ValidationReport:
    """Compare ``optimized`` with ``original`` (specs, paths or OptimizedModels); see ``runtime.validate``."""
    return runtime_validate.validate(original, optimized, data=data, progress=progress, **options)


def benchmark(model, *, baseline=None, progress: bool = True, **options) -> BenchmarkReport:
    """Time ``model`` (and ``baseline``, interleaved); see ``runtime.benchmark``."""
    return runtime_benchmark.benchmark(model, baseline=baseline, progress=progress, **options)


def throughput(model, *, progress: bool = True, **options) -> ThroughputReport:
    """Requests/s and latency of ``model`` with concurrent clients; see ``runtime.throughput.throughput``.

    ``.save(dir)`` writes throughput.json/.csv/.png (what ``tftrt benchmark --concurrency --output`` writes).
    """
    return runtime_throughput.throughput(model, progress=progress, **options)


def predict(model, data, **options) -> PredictionResult:
    """Top-k labels (or raw outputs) of ``model`` for ``data``; see ``runtime.predict``."""
    return runtime_predict.predict(model, data, **options)


def run(model: Optional[str] = None, *, progress: bool = True, **options):
    """The main job (convert at the best precisions here, predict, validate, benchmark, report); a RunReport.

    Default: the shipped EfficientNet-Lite0 and sample photos, into ./tftrt-report. ``options``
    are ``jobs.run.run_job``'s (output_dir, data, precisions, batch_sizes, duration, overwrite, ...),
    among them the data options every image-reading call takes: ``preprocess`` ('auto', 'caffe',
    'tf', 'torch', 'none'), ``input_shape``, ``strict_data``, ``labels_csv``; e.g.
    ``tt.run("mobilenet_savedmodel", data="photos", preprocess="tf")``.
    """
    from tftrt_toolkit.jobs.run import run_job

    return run_job(model, progress=progress, **options)


def tune(model, data, output: str, *, progress: bool = True, **options):
    """The fastest conversion inside an accuracy budget, written to ``output``; a TuneResult (see ``jobs.tune``).

    ``options`` are ``jobs.tune.tune``'s, among them the data options every image-reading call
    takes: ``preprocess``, ``input_shape``, ``strict_data``, ``labels_csv``.
    """
    from tftrt_toolkit.jobs.tune import tune as tune_job

    return tune_job(model, data, output, progress=progress, **options)
