"""The Python API the package exports: one call per step and per job, results that render in notebooks.

    import tftrt_toolkit as tt
    m = tt.convert("saved_models/efficientnet_lite0", "out/lite0-fp32", precision="fp32")
    v = m.validate(data="saved_models/samples")   # ValidationReport, truthy on pass
    b = m.benchmark(batch_sizes=[1, 8])           # against its source model, interleaved
    r = tt.run()                                  # the main job; tt.tune(...), tt.predict(...) likewise

Why this module exists: the layers run one way (cli -> jobs -> runtime, report -> pipeline;
see docs/architecture.md). ``runtime`` computes results and may not import ``report``, which
draws and writes them, and ``pipeline`` (which makes an OptimizedModel) may not import
``runtime``. This module sits beside ``jobs`` and joins them: its ``OptimizedModel``,
``ValidationReport``, ``BenchmarkReport`` and ``PredictionResult`` are the lower layers'
classes (subclasses, same fields, ``isinstance`` still holds) with the notebook methods added:
``_repr_markdown_`` (a table in Jupyter), ``plot()`` (a matplotlib Figure) and ``save()``
(the files the CLI writes). Every long call takes ``progress`` (default True: a bar in
terminals and notebooks; False: nothing drawn); nothing is printed.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional, Sequence

from tftrt_toolkit import pipeline
from tftrt_toolkit.config import Backend, ConversionConfig
from tftrt_toolkit.errors import ModelLoadError
from tftrt_toolkit.report import results as rendered
from tftrt_toolkit.runtime import benchmark as runtime_benchmark
from tftrt_toolkit.runtime import predict as runtime_predict
from tftrt_toolkit.runtime import validate as runtime_validate

_CONFIG_FIELDS = frozenset(field.name for field in dataclasses.fields(ConversionConfig))


def _as(cls, result):
    """``result`` (a lower layer's dataclass) as ``cls``, its subclass with the notebook methods."""
    return cls(**{field.name: getattr(result, field.name) for field in dataclasses.fields(result)})


# --------------------------------------------------------------------------- results

class ValidationReport(runtime_validate.ValidationReport):
    """``runtime.validate``'s report (truthy on pass) that renders as a table and saves as JSON."""

    def _repr_markdown_(self) -> str:
        return rendered.validation_markdown(self)

    def to_markdown(self) -> str:
        return rendered.validation_markdown(self)

    def save(self, path: str, *, overwrite: bool = False) -> str:
        """Write the report as JSON (what ``tftrt validate --output`` writes); returns the path."""
        return rendered.write_validation(self, path, overwrite=overwrite)


class BenchmarkReport(runtime_benchmark.BenchmarkReport):
    """``runtime.benchmark``'s report that renders as a table, plots, and saves the CLI's files."""

    def _repr_markdown_(self) -> str:
        return rendered.benchmark_markdown(self)

    def to_markdown(self) -> str:
        return rendered.benchmark_markdown(self)

    def plot(self, *, title: Optional[str] = None):
        """Latency and throughput per batch size (speed-ups over the baseline) as a matplotlib Figure.

        Raises ConfigError without matplotlib (``pip install -e ".[plot]"``).
        """
        from tftrt_toolkit.report.plots import benchmark_figure

        return benchmark_figure([self], title=title)

    def save(self, directory: str, *, plot: bool = True, overwrite: bool = False) -> dict:
        """Write benchmark.json, benchmark.csv and (``plot``) benchmark.png into ``directory``; {name: path}."""
        return rendered.write_benchmark(self, directory, plot=plot, overwrite=overwrite)


class PredictionResult(runtime_predict.PredictionResult):
    """``runtime.predict``'s result that renders as a table and saves as JSON, JSON Lines or CSV."""

    def _repr_markdown_(self) -> str:
        return rendered.predictions_markdown(self)

    def to_markdown(self) -> str:
        return rendered.predictions_markdown(self)

    def save(self, path: str, *, output_format: Optional[str] = None, overwrite: bool = False) -> str:
        """Write the predictions (format from ``output_format`` or the file's suffix: .csv, .jsonl, else json)."""
        if output_format is None:
            suffix = os.path.splitext(os.fspath(path))[1].lower()
            output_format = {".csv": "csv", ".jsonl": "jsonl"}.get(suffix, "json")
        return rendered.write_predictions(self, path, output_format=output_format, overwrite=overwrite)


# --------------------------------------------------------------------------- the converted model

class OptimizedModel(pipeline.OptimizedModel):
    """A converted model on disk (path-like) that can check and time itself against its source model."""

    def _source_or(self, other):
        if other is not None:
            return other
        source = self.source_spec
        if source is None:
            raise ModelLoadError(f"{self.path} does not record the model it was converted from; "
                                 "pass original=/baseline= explicitly.")
        if source.kind.value in ("saved_model", "keras_file") and not os.path.exists(source.location):
            raise ModelLoadError(f"the model {self.path} was converted from ({source.location}) is gone; "
                                 "pass original=/baseline= explicitly.")
        return source

    def validate(self, data="synthetic", *, original=None, progress: bool = True, **options) -> ValidationReport:
        """Compare with the model it was converted from (or ``original``) on ``data``; truthy on pass.

        ``options`` are ``runtime.validate.validate``'s (rtol, atol, labels_csv, top_k, samples, ...).
        """
        report = runtime_validate.validate(self._source_or(original), self.path, data=data, progress=progress,
                                           **options)
        return _as(ValidationReport, report)

    def benchmark(self, batch_sizes: Sequence[int] = runtime_benchmark.DEFAULT_BATCH_SIZES, *, baseline=None,
                  compare: bool = True, progress: bool = True, **options) -> BenchmarkReport:
        """Time this model at each batch size, interleaved with its source model (``compare=False``: alone).

        ``options`` are ``runtime.benchmark.benchmark``'s (duration, iterations, data, warmup, threads, ...).
        """
        baseline = self._source_or(baseline) if compare else None
        report = runtime_benchmark.benchmark(self.path, baseline=baseline, batch_sizes=batch_sizes,
                                             progress=progress, **options)
        return _as(BenchmarkReport, report)

    def predict(self, data, **options) -> PredictionResult:
        """Top-k labels (or raw outputs) for ``data``; ``options`` as ``runtime.predict.predict``'s."""
        return _as(PredictionResult, runtime_predict.predict(self.path, data, **options))


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
    result = pipeline.convert(model, output, config, progress=progress, **options)
    return OptimizedModel(result.path, result.metadata)


def validate(original, optimized, *, data="synthetic", progress: bool = True, **options) -> ValidationReport:
    """Compare ``optimized`` with ``original`` (specs, paths or OptimizedModels); see ``runtime.validate``."""
    return _as(ValidationReport, runtime_validate.validate(original, optimized, data=data, progress=progress, **options))


def benchmark(model, *, baseline=None, progress: bool = True, **options) -> BenchmarkReport:
    """Time ``model`` (and ``baseline``, interleaved); see ``runtime.benchmark``."""
    return _as(BenchmarkReport, runtime_benchmark.benchmark(model, baseline=baseline, progress=progress, **options))


def predict(model, data, **options) -> PredictionResult:
    """Top-k labels (or raw outputs) of ``model`` for ``data``; see ``runtime.predict``."""
    return _as(PredictionResult, runtime_predict.predict(model, data, **options))


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
