"""The batch-predict pipeline and its driver: build it, run it, count what it did."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from tftrt_toolkit.errors import ConfigError, DataError
from tftrt_toolkit.jobs.batch_predict.options import (
    DataFiles, check_data, check_pipeline_args, matching_files, prepare_output, shard_pattern, split_data,
)
from tftrt_toolkit.runtime.predict import CLASSIFICATION_CSV_COLUMNS, RAW_CSV_COLUMNS
from tftrt_toolkit.jobs.batch_predict.steps import (
    ERROR_CSV_COLUMNS, ERRORS_SUFFIX, METRICS_NAMESPACE, OUTPUT_FORMATS, SHARD_NAME_TEMPLATE, ModelPlan, ReadAndDecodeFn, RecordLinesFn,
    SavedModelHandler, format_error, plan_model, require_beam,
)


@dataclasses.dataclass
class BatchPredictResult:
    """What a batch-predict run wrote and counted.

    ``prediction_files``/``error_files``: the shards written; ``images_read`` = files the
    pipeline opened, ``images_predicted`` + ``images_failed`` = ``images_read`` on success;
    ``batch_sizes``: {"count", "min", "max", "mean"} of the batches RunInference ran
    (None where the runner reports no metrics); ``seconds``: wall time of the run;
    ``skipped_files``: files of local ``data`` folders that were not images (never read).
    """

    model: str
    data: Tuple[str, ...]
    output_prefix: str
    output_format: str
    prediction_files: List[str]
    error_files: List[str]
    images_read: Optional[int]
    images_predicted: Optional[int]
    images_failed: Optional[int]
    batch_sizes: Optional[dict]
    preprocess: str
    labels: Optional[str]
    seconds: float
    pipeline_args: Tuple[str, ...]
    skipped_files: Tuple[dict, ...] = ()

    @property
    def skipped_summary(self) -> str:
        """One line about the folder files left out ("" when none), as predict says it."""
        from tftrt_toolkit.data.skipped import SkippedFile, skipped_summary

        return skipped_summary(SkippedFile(**entry) for entry in self.skipped_files)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def _metric_results(pipeline_result) -> dict:
    from apache_beam.metrics.metric import MetricsFilter

    found = {}
    try:
        metrics = pipeline_result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))
    except NotImplementedError:  # some runners report no metrics
        return found
    for counter in metrics.get("counters", []):
        found[counter.key.metric.name] = found.get(counter.key.metric.name, 0) + int(counter.result or 0)
    for distribution in metrics.get("distributions", []):
        data = distribution.result
        if data is not None and data.count:
            found[distribution.key.metric.name] = {"count": data.count, "min": data.min, "max": data.max,
                                                   "mean": round(data.sum / data.count, 3)}
    return found


# --------------------------------------------------------------------------- the pipeline

def build_pipeline(pipeline, plan: ModelPlan, data: Union[DataFiles, Sequence[str]], output_prefix: str, *, top_k: int,
                   output_format: str, min_batch_size: int, max_batch_size: int, num_shards: int) -> None:
    """Add batch-predict's transforms to ``pipeline`` (a ``beam.Pipeline``); see the module docstring.

    ``data``: globs, or ``DataFiles`` (globs plus the image files listed from local folders).
    """
    beam = require_beam()
    from apache_beam.io import fileio
    from apache_beam.io.fileio import EmptyMatchTreatment
    from apache_beam.ml.inference.base import KeyedModelHandler, RunInference

    handler = KeyedModelHandler(SavedModelHandler(plan.saved_model_dir, plan.signature_key, plan.input_name,
                                                  min_batch_size=min_batch_size, max_batch_size=max_batch_size))
    if not isinstance(data, DataFiles):
        data = DataFiles(tuple(data), (), ())
    matched = (pipeline
               | "Globs" >> beam.Create(list(data.globs))
               | "MatchFiles" >> fileio.MatchAll(EmptyMatchTreatment.ALLOW))
    # A folder's images are listed on the launcher, as every command lists a folder: a path each
    # (ReadMatches takes paths as well as matched metadata).
    listed = pipeline | "FolderImages" >> beam.Create(list(data.folder_images))
    decoded = (
        (matched, listed)
        | "AllFiles" >> beam.Flatten()
        # Matching happens in one bundle; reshuffle the (small) file names so reading,
        # decoding and inference spread over all workers.
        | "Spread" >> beam.Reshuffle()
        | "ReadMatches" >> fileio.ReadMatches()
        | "Decode" >> beam.ParDo(ReadAndDecodeFn(plan)).with_outputs(ReadAndDecodeFn.FAILED, main="images")
    )
    as_csv = output_format == "csv"
    suffix = f".{output_format}"
    columns = CLASSIFICATION_CSV_COLUMNS if plan.classifier_output else RAW_CSV_COLUMNS
    (
        decoded.images
        | "RunInference" >> RunInference(handler)
        | "Records" >> beam.ParDo(RecordLinesFn(plan, top_k, output_format))
        | "WritePredictions" >> beam.io.WriteToText(output_prefix, file_name_suffix=suffix, num_shards=num_shards,
                                                    shard_name_template=SHARD_NAME_TEMPLATE,
                                                    header=",".join(columns) if as_csv else None)
    )
    (
        decoded[ReadAndDecodeFn.FAILED]
        | "FormatErrors" >> beam.Map(format_error, output_format)
        # Always written, empty when nothing failed: its presence says the run checked every file.
        | "WriteErrors" >> beam.io.WriteToText(output_prefix + ERRORS_SUFFIX, file_name_suffix=suffix, num_shards=1,
                                               shard_name_template=SHARD_NAME_TEMPLATE,
                                               header=",".join(ERROR_CSV_COLUMNS) if as_csv else None)
    )


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return int(value)


def batch_predict(model_dir: str, data_glob: Union[str, Sequence[str]], output_prefix: str, *, top_k: int = 5,
                  output_format: str = "jsonl", min_batch_size: int = 1, max_batch_size: int = 32,
                  num_shards: int = 0, overwrite: bool = False, signature_key: Optional[str] = None,
                  preprocess: str = "auto", input_shape=None, labels: Optional[str] = None,
                  strict_data: bool = False, pipeline_args: Sequence[str] = ()) -> BatchPredictResult:
    """Predict every file matching ``data_glob`` with a Beam pipeline; returns what was written and counted.

    Args:
      model_dir: a SavedModel directory (an original or a ``tftrt convert`` output), readable
        by the launcher and every worker.
      data_glob: a local image folder (read as every command reads one: recursive, non-images
        left out and listed in ``skipped_files``), or a glob any Beam filesystem understands
        ('photos/*.jpg', 'gs://bucket/images/**'), or a list of those. Every file a glob matches
        is an input; non-images among them are dead-lettered.
      output_prefix: shards go to PREFIX-SSSSS-of-NNNNN.{jsonl,csv}, failures to PREFIX-errors-....
      top_k, labels: as for ``predict``. output_format: "jsonl" or "csv".
      min_batch_size, max_batch_size: the bounds of Beam's adaptive batching for RunInference.
      num_shards: prediction shards (0: the runner decides). overwrite: replace shards an
        earlier run wrote under this prefix (otherwise OutputError).
      signature_key, preprocess, input_shape: as for ``predict`` ('auto' follows the model card).
      strict_data: refuse (DataError) a local folder holding files that would be skipped.
      pipeline_args: Beam pipeline options, e.g. ["--runner=DirectRunner", "--direct_num_workers=2"].

    Raises BackendUnavailable (Beam not installed), ConfigError (bad option or unknown Beam
    option), ModelLoadError, DataError (no file matches a glob, the model does not take
    images), OutputError (shards from an earlier run exist). Bad individual files are not
    errors: they are counted and written to the dead-letter output.
    """
    require_beam()
    top_k = _check_int("top_k", top_k, 1)
    min_batch_size = _check_int("min_batch_size", min_batch_size, 1)
    max_batch_size = _check_int("max_batch_size", max_batch_size, 1)
    num_shards = _check_int("num_shards", num_shards, 0)
    if min_batch_size > max_batch_size:
        raise ConfigError(f"min_batch_size={min_batch_size} is larger than max_batch_size={max_batch_size}")
    if output_format not in OUTPUT_FORMATS:
        raise ConfigError(f"output format {output_format!r} is not valid; use {' or '.join(OUTPUT_FORMATS)}")
    data_globs = (data_glob,) if isinstance(data_glob, (str, os.PathLike)) else tuple(data_glob)
    data_globs = tuple(os.fspath(glob) for glob in data_globs)
    if not data_globs or not all(data_globs):
        raise DataError("no data given: pass an image folder or a glob of image files, e.g. --data='photos/*.jpg'")
    output_prefix = os.fspath(output_prefix)
    pipeline_args = check_pipeline_args(pipeline_args)
    plan = plan_model(model_dir, signature_key=signature_key, preprocess=preprocess, input_shape=input_shape, labels=labels)
    data = split_data(data_globs, strict=strict_data)
    if data.globs:
        check_data(data.globs)
    prepare_output(output_prefix, output_format, overwrite)

    beam = require_beam()
    from apache_beam.options.pipeline_options import PipelineOptions

    start = time.perf_counter()
    pipeline = beam.Pipeline(options=PipelineOptions(pipeline_args))
    build_pipeline(pipeline, plan, data, output_prefix, top_k=top_k, output_format=output_format,
                   min_batch_size=min_batch_size, max_batch_size=max_batch_size, num_shards=num_shards)
    pipeline_result = pipeline.run()
    pipeline_result.wait_until_finish()
    seconds = time.perf_counter() - start
    metrics = _metric_results(pipeline_result)
    if metrics:  # the runner reports metrics: a counter never incremented (no failures) is 0, not unknown
        for name in ("images_read", "images_predicted", "images_failed"):
            metrics.setdefault(name, 0)
    return BatchPredictResult(
        model=os.fspath(model_dir), data=data_globs, output_prefix=output_prefix, output_format=output_format,
        prediction_files=matching_files(shard_pattern(output_prefix, output_format, errors=False)),
        error_files=matching_files(shard_pattern(output_prefix, output_format, errors=True)),
        images_read=metrics.get("images_read"), images_predicted=metrics.get("images_predicted"),
        images_failed=metrics.get("images_failed"), batch_sizes=metrics.get("batch_size"),
        preprocess=plan.preprocess, labels=plan.labels, seconds=round(seconds, 3), pipeline_args=tuple(pipeline_args),
        skipped_files=tuple(file.to_json() for file in data.skipped_files),
    )


def read_records(files: Sequence[str]) -> Iterator[dict]:
    """The JSON records in JSONL shards (for tests and quick checks; CSV shards are plain CSV)."""
    for path in files:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    yield json.loads(line)
