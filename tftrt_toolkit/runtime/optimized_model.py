"""OptimizedModel: a converted model on disk that can check, time and use itself against its source model.

    m = OptimizedModel.from_path("out/bf16")     # or what tt.convert / tt.tune(...).chosen_model return
    m.validate(data="saved_models/samples")      # ValidationReport, truthy on pass
    m.benchmark(batch_sizes=[1, 8]).plot()       # BenchmarkReport against the model it was converted from
    m.predict("saved_models/samples/cat.jpg")    # PredictionResult

One class, whichever job made the model: ``tt.convert`` wraps ``pipeline.convert``'s record,
``tune``'s ``chosen_model`` and ``from_path`` read the metadata back. It lives in ``runtime``
because its methods use the model (``pipeline`` sits below ``runtime`` and returns a plain
``ConversionRecord``).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional, Sequence

from tftrt_toolkit import artifacts
from tftrt_toolkit.errors import ModelLoadError
from tftrt_toolkit.models.spec import ModelKind, ModelSpec
from tftrt_toolkit.pipeline import ConversionRecord
from tftrt_toolkit.report import results as rendered
from tftrt_toolkit.runtime import benchmark as runtime_benchmark
from tftrt_toolkit.runtime import predict as runtime_predict
from tftrt_toolkit.runtime import throughput as runtime_throughput
from tftrt_toolkit.runtime import validate as runtime_validate


@dataclasses.dataclass(frozen=True)
class OptimizedModel(ConversionRecord):
    """A converted model on disk (path-like) and the record of how it was made (``pipeline.ConversionRecord``),
    with the methods that use it."""

    @classmethod
    def from_path(cls, path) -> "OptimizedModel":
        """The converted model at ``path``; ModelLoadError when tftrt_toolkit did not write it."""
        path = os.fspath(path)
        metadata = artifacts.read_metadata(path)
        if metadata is None:
            raise ModelLoadError(f"{path!r} was not written by tftrt_toolkit (no {artifacts.METADATA_RELATIVE_PATH}).")
        return cls(path, metadata)

    @property
    def signature_key(self) -> str:
        return self.metadata["signature"]["key"]

    @property
    def source_spec(self) -> Optional[ModelSpec]:
        """The model this one was converted from, as recorded in its metadata (None when not recorded)."""
        source = self.metadata.get("source")
        if not source:
            return None
        return ModelSpec(ModelKind(source["kind"]), source["location"], source.get("weights"))

    # ------------------------------------------------------------------ using it

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

    def validate(self, data="synthetic", *, original=None, progress: bool = True, **options):
        """Compare with the model it was converted from (or ``original``) on ``data``; a ValidationReport, truthy on pass.

        ``options`` are ``runtime.validate.validate``'s (rtol, atol, labels_csv, top_k, samples, ...).
        """
        return runtime_validate.validate(self._source_or(original), self.path, data=data, progress=progress, **options)

    def benchmark(self, batch_sizes: Sequence[int] = runtime_benchmark.DEFAULT_BATCH_SIZES, *, baseline=None, compare: bool = True,
                  progress: bool = True, **options):
        """Time this model at each batch size, interleaved with its source model (``compare=False``: alone).

        ``options`` are ``runtime.benchmark.benchmark``'s (duration, iterations, data, warmup, threads, ...).
        Returns a BenchmarkReport.
        """
        baseline = self._source_or(baseline) if compare else None
        return runtime_benchmark.benchmark(self.path, baseline=baseline, batch_sizes=batch_sizes, progress=progress,
                                           **options)

    def throughput(self, **options):
        """Requests/s and latency with concurrent clients; a ThroughputReport (``runtime.throughput.throughput``'s options)."""
        return runtime_throughput.throughput(self.path, **options)

    def predict(self, data, **options):
        """Top-k labels (or raw outputs) for ``data``; a PredictionResult (``runtime.predict.predict``'s options)."""
        return runtime_predict.predict(self.path, data, **options)

    # ------------------------------------------------------------------ rendering

    def to_markdown(self) -> str:
        return rendered.optimized_model_markdown(self)

    def _repr_markdown_(self) -> str:
        return self.to_markdown()

    def __repr__(self) -> str:
        total = rendered.conversion_seconds(self.metadata)
        return (f"OptimizedModel({self.path!r}, backend={self.backend!r}, precision={self.precision!r}, "
                f"signature={self.signature_key!r}, converted_in={total:.1f}s)")
