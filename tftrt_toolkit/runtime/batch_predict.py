"""Batch predict: run a model over many image files with Apache Beam, writing sharded predictions.

    result = batch_predict("saved_models/efficientnet_lite0", "photos/*.jpg", "out/predictions",
                           pipeline_args=["--direct_num_workers=2", "--direct_running_mode=multi_processing"])
    result.prediction_files   # out/predictions-00000-of-00002.jsonl, ...
    result.error_files        # out/predictions-errors-00000-of-00001.jsonl (one record per bad file)

The same pipeline runs on any Beam runner (DirectRunner here; Dataflow, Flink, Spark with
their pipeline options):

    MatchFiles(globs) -> Reshuffle -> ReadMatches -> read + decode + preprocess ──> dead letter
      -> RunInference(SavedModelHandler, batched by BatchElements) -> records -> WriteToText shards

- Records have exactly ``tftrt predict``'s fields (``runtime.predict`` builds them):
  ``{"image": PATH, "predictions": [{"rank", "class_id", "label", "probability"}, ...]}`` for
  classifiers, ``{"image": PATH, "outputs": {name: values}}`` otherwise. CSV has predict's
  columns, one row per image x rank. Softmax is applied when the scores are logits, decided
  per image (predict decides over all its rows at once; Beam's batches change from run to
  run, so a per-image decision keeps each record independent of how it was batched).
- Decoding and preprocessing are the data module's (``decode_image``, ``preprocess_pixels``,
  the mode resolved from the model card like ``open_source`` does), so a file gives the same
  input here as in ``tftrt predict``.
- A file that cannot be read or decoded never fails the pipeline: it goes to the dead-letter
  output ``PREFIX-errors-SSSSS-of-NNNNN.EXT`` as ``{"image", "stage", "error"}``.
- Beam counters (namespace ``tftrt_batch_predict``): ``images_read``, ``images_predicted``,
  ``images_failed``; the distribution ``batch_size`` holds the sizes RunInference ran.

Why a model handler of our own and not Beam's ``TFModelHandlerTensor``: Beam's loads the
model with ``tf.keras.models.load_model``, which Keras 3 (TF 2.16+) refuses for plain
SavedModels — and plain SavedModels are what this toolkit writes (a TF-TRT conversion is
not a Keras model at all). Setting ``TF_USE_LEGACY_KERAS=1`` makes Beam's handler load it,
but ties every worker to tf-keras and calls the Keras object rather than the serving
signature the model was converted for. ``SavedModelHandler`` calls ``tf.saved_model.load``
and the signature function, the same path as ``tftrt predict`` and TF Serving, once per
worker process (RunInference shares the loaded model between the threads of a process).

Beam is optional (``pip install -e ".[beam]"``): this module imports without it, and
``batch_predict`` raises ``BackendUnavailable`` saying how to install it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from tftrt_toolkit.data.images import decode_image
from tftrt_toolkit.data.preprocess import preprocess_pixels
from tftrt_toolkit.data.samples import pixel_mode
from tftrt_toolkit.data.shapes import ImageLayout, image_layout, override_for, parse_input_shape
from tftrt_toolkit.errors import BackendUnavailable, ConfigError, DataError, OutputError
from tftrt_toolkit.models.loader import load_signature_function, read_model_info, read_signatures, select_signature
from tftrt_toolkit.report.writers import csv_cell, json_line
from tftrt_toolkit.runtime.predict import (
    CLASSIFICATION_CSV_COLUMNS,
    RAW_CSV_COLUMNS,
    class_names,
    looks_like_logits,
    softmax,
    top_k_predictions,
)

try:  # Beam is an optional extra; without it the classes below are inert and batch_predict() says how to install it.
    import apache_beam as beam
    from apache_beam.ml.inference.base import ModelHandler as _BeamModelHandler
    from apache_beam.ml.inference.base import PredictionResult as _BeamPredictionResult
except ImportError:
    beam = None
    _BeamModelHandler = object
    _BeamPredictionResult = None

_BeamDoFn = beam.DoFn if beam is not None else object

INSTALL_HINT = 'pip install -e ".[beam]"'
OUTPUT_FORMATS = ("jsonl", "csv")
METRICS_NAMESPACE = "tftrt_batch_predict"
ERRORS_SUFFIX = "-errors"
ERROR_CSV_COLUMNS = ("image", "stage", "error")
# Beam's default shard names: PREFIX-00000-of-00004.jsonl; errors go to PREFIX-errors-00000-of-00001.jsonl.
SHARD_NAME_TEMPLATE = "-SSSSS-of-NNNNN"


def require_beam():
    """The ``apache_beam`` module; BackendUnavailable (one line: how to install it) when missing."""
    try:
        import apache_beam
    except ImportError as error:
        raise BackendUnavailable(f"batch-predict needs Apache Beam, which is not installed here; run: {INSTALL_HINT}") from error
    return apache_beam


# --------------------------------------------------------------------------- what the pipeline needs to know

@dataclasses.dataclass(frozen=True)
class ModelPlan:
    """Everything the workers need about the model, decided once on the launcher (cheap to pickle)."""

    saved_model_dir: str
    signature_key: str
    input_name: str
    input_dtype: str
    layout: ImageLayout
    preprocess: str
    output_names: Tuple[str, ...]
    classifier_output: Optional[str]  # None: raw outputs
    class_names: Optional[Tuple[str, ...]]
    labels: Optional[str]  # where class names came from ("imagenet1000", "file:PATH")


def plan_model(saved_model_dir: str, *, signature_key: Optional[str] = None, preprocess: str = "auto",
               input_shape=None, labels: Optional[str] = None) -> ModelPlan:
    """Read a SavedModel's signature and card (no weights loaded) and decide how to feed and read it.

    Raises ModelLoadError (not a SavedModel, no such signature), DataError (not a single
    image input, unknown preprocess mode), ConfigError (labels that do not fit).
    """
    saved_model_dir = os.fspath(saved_model_dir)
    signatures = read_signatures(saved_model_dir)
    signature = select_signature(signatures, signature_key, repr(saved_model_dir))
    if len(signature.inputs) != 1:
        raise DataError(
            f"batch-predict feeds images to single-input models; {saved_model_dir!r} takes "
            f"{len(signature.inputs)} inputs ({', '.join(signature.input_names)})"
        )
    info = signature.inputs[0]
    layout = image_layout(info, override_for(parse_input_shape(input_shape), info.name))
    mode = pixel_mode(info, preprocess, read_model_info(saved_model_dir), channels=layout.channels)
    output, names, labels_source = class_names(signature, labels)
    return ModelPlan(saved_model_dir, signature.key, info.name, info.dtype, layout, mode,
                     signature.output_names, output, names, labels_source)


# --------------------------------------------------------------------------- pipeline steps

def image_to_input(pixels: np.ndarray, plan: ModelPlan) -> np.ndarray:
    """Decoded uint8 pixels (H, W, C) -> one model input, exactly as ``open_source`` builds it for predict."""
    if plan.layout.channels_first:
        pixels = np.transpose(pixels, (2, 0, 1))
    return preprocess_pixels(pixels, plan.preprocess, channels_first=plan.layout.channels_first).astype(plan.input_dtype, copy=False)


class ReadAndDecodeFn(_BeamDoFn):
    """ReadableFile -> (path, model input); unreadable or undecodable files -> the 'failed' output."""

    FAILED = "failed"

    def __init__(self, plan: ModelPlan):
        self._plan = plan

    def setup(self):
        self._read = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "images_read")
        self._failed = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "images_failed")
        self._spool_dir = tempfile.mkdtemp(prefix="tftrt-batch-predict-")

    def teardown(self):
        if getattr(self, "_spool_dir", None) and os.path.isdir(self._spool_dir):
            for name in os.listdir(self._spool_dir):
                os.remove(os.path.join(self._spool_dir, name))
            os.rmdir(self._spool_dir)

    def process(self, readable_file):
        path = readable_file.metadata.path
        self._read.inc()
        try:
            data = readable_file.read()
        # Each Beam filesystem (local, gs://, s3://, hdfs://) raises its own error types. The
        # contract is that one bad file never fails the pipeline, and nothing is swallowed:
        # the type and message go to the dead-letter record.
        except Exception as error:  # noqa: BLE001
            self._failed.inc()
            reason = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
            yield beam.pvalue.TaggedOutput(self.FAILED, {"image": path, "stage": "read",
                                                         "error": f"cannot read {path}: {type(error).__name__}: {reason}"})
            return
        try:
            pixels = self._decode(path, data)
        except DataError as error:
            self._failed.inc()
            yield beam.pvalue.TaggedOutput(self.FAILED, {"image": path, "stage": "decode", "error": str(error)})
            return
        yield path, image_to_input(pixels, self._plan)

    def _decode(self, path: str, data: bytes) -> np.ndarray:
        # decode_image reads a local path (its checks need the file), and Beam hands us bytes
        # from any filesystem: spool them to a local file, then name the real path in errors.
        handle, spooled = tempfile.mkstemp(dir=self._spool_dir)
        try:
            with os.fdopen(handle, "wb") as spool:
                spool.write(data)
            layout = self._plan.layout
            try:
                return decode_image(spooled, size=(layout.height, layout.width), channels=layout.channels)
            except DataError as error:
                raise DataError(str(error).replace(spooled, path)) from None
        finally:
            os.remove(spooled)


class _LoadedSignature:
    """The object tf.saved_model.load returned and its signature function, kept together.

    TF-TRT pitfall: the signature function does not own the variables; they are freed with
    the loaded object, so the object must live as long as the function is used.
    """

    def __init__(self, saved_model_dir: str, signature_key: str):
        self.saved_model_object, self.function = load_signature_function(saved_model_dir, signature_key)


class SavedModelHandler(_BeamModelHandler):
    """A RunInference model handler for a plain SavedModel: ``tf.saved_model.load`` + one signature.

    Examples are single model inputs (numpy arrays of the signature's dtype, without the
    batch dim); results are PredictionResults whose ``inference`` is {output name: array}.
    ``min_batch_size``/``max_batch_size`` go to Beam's BatchElements.
    """

    def __init__(self, saved_model_dir: str, signature_key: str, input_name: str, *,
                 min_batch_size: int = 1, max_batch_size: int = 32):
        require_beam()
        super().__init__(min_batch_size=min_batch_size, max_batch_size=max_batch_size)
        self._saved_model_dir = saved_model_dir
        self._signature_key = signature_key
        self._input_name = input_name

    def load_model(self) -> _LoadedSignature:
        return _LoadedSignature(self._saved_model_dir, self._signature_key)

    def run_inference(self, batch: Sequence[np.ndarray], model: _LoadedSignature,
                      inference_args: Optional[dict] = None) -> Iterable:
        import tensorflow as tf

        beam.metrics.Metrics.distribution(METRICS_NAMESPACE, "batch_size").update(len(batch))
        outputs = model.function(**{self._input_name: tf.constant(np.stack(batch))})
        arrays = {name: value.numpy() for name, value in outputs.items()}
        # The example (the preprocessed pixels, 600 KB for a 224x224 image) is not carried
        # downstream: records need only the key and the outputs.
        return [_BeamPredictionResult(None, {name: values[index] for name, values in arrays.items()})
                for index in range(len(batch))]

    def get_num_bytes(self, batch: Sequence[np.ndarray]) -> int:
        # Beam's default pickles the whole batch just to count its bytes.
        return int(sum(example.nbytes for example in batch))

    def get_metrics_namespace(self) -> str:
        return METRICS_NAMESPACE


def prediction_record(image: str, inference: Dict[str, np.ndarray], plan: ModelPlan, top_k: int) -> dict:
    """One image's record with ``tftrt predict``'s fields (see the module docstring)."""
    if plan.classifier_output is None:
        return {"image": image, "outputs": {name: np.asarray(inference[name]).tolist() for name in plan.output_names}}
    scores = np.asarray(inference[plan.classifier_output], dtype=np.float64)
    probabilities = softmax(scores) if looks_like_logits(scores[np.newaxis]) else scores
    return {"image": image, "predictions": top_k_predictions(probabilities, plan.class_names, top_k)}


class RecordLinesFn(_BeamDoFn):
    """(image, PredictionResult) -> the record's text lines; counts images predicted."""

    def __init__(self, plan: ModelPlan, top_k: int, output_format: str):
        self._plan = plan
        self._top_k = top_k
        self._output_format = output_format

    def setup(self):
        self._predicted = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "images_predicted")

    def process(self, keyed_result):
        image, result = keyed_result
        self._predicted.inc()
        yield from format_record(prediction_record(image, result.inference, self._plan, self._top_k), self._output_format)


def _csv_line(cells: Sequence[object]) -> str:
    import csv
    import io

    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow([csv_cell(cell) for cell in cells])
    return buffer.getvalue()


def format_record(record: dict, output_format: str) -> List[str]:
    """A prediction record as text lines: one JSON line, or CSV rows with predict's columns."""
    if output_format == "jsonl":
        return [json_line(record)]
    if "predictions" in record:
        return [_csv_line([record["image"], *(p[column] for column in CLASSIFICATION_CSV_COLUMNS[1:])])
                for p in record["predictions"]]
    return [_csv_line([record["image"], name, "x".join(str(d) for d in np.shape(values)) or "scalar", values])
            for name, values in record["outputs"].items()]


def format_error(record: dict, output_format: str) -> str:
    if output_format == "jsonl":
        return json_line(record)
    return _csv_line([record[column] for column in ERROR_CSV_COLUMNS])


# --------------------------------------------------------------------------- options and outputs

def check_pipeline_args(pipeline_args: Sequence[str], *, other_flags: Sequence[str] = ()) -> List[str]:
    """The Beam pipeline options as a list; ConfigError for anything Beam would silently drop.

    Beam's PipelineOptions ignores options it does not know (with a log line), so a typo such
    as ``--direct_num_worker=2`` would run with the default; here it is an error instead,
    suggesting the closest Beam option or one of ``other_flags`` (the caller's own flag names).
    """
    require_beam()
    from apache_beam.options import pipeline_options

    # `--` only separates our flags from Beam's on a command line; Beam would stop parsing at it.
    args = [str(arg) for arg in pipeline_args if str(arg) != "--"]
    # The parser PipelineOptions.get_all_options builds: every options class's arguments,
    # aliases (--worker_machine_type) included; what it leaves over is what Beam would drop.
    parser = pipeline_options._BeamArgumentParser(allow_abbrev=False)
    for options_class in {str(cls): cls for cls in pipeline_options.PipelineOptions.__subclasses__()}.values():
        options_class._add_argparse_args(parser)  # pylint: disable=protected-access
    _, leftovers = parser.parse_known_args(args)
    unknown = []
    for index, arg in enumerate(leftovers):
        if arg.startswith("-"):
            unknown.append(arg.split("=", 1)[0])
        elif not (index and leftovers[index - 1].startswith("--") and "=" not in leftovers[index - 1]):
            raise ConfigError(f"unexpected argument {arg!r}; Beam pipeline options are --name=value")
    if unknown:
        import difflib

        candidates = sorted(set(pipeline_options.PipelineOptions([]).get_all_options()) | set(other_flags))
        hints = [match for flag in unknown for match in difflib.get_close_matches(
            flag.lstrip("-").replace("-", "_"), candidates, n=1, cutoff=0.75)]
        suggestion = f" (did you mean {', '.join('--' + hint for hint in hints)}?)" if hints else ""
        raise ConfigError(f"{', '.join(unknown)}: not a batch-predict flag or Beam pipeline option{suggestion}; see --help")
    return args


def _shard_pattern(output_prefix: str, output_format: str, *, errors: bool) -> str:
    # [0-9] keeps PREFIX-errors-* out of the predictions' pattern.
    return f"{output_prefix}{ERRORS_SUFFIX if errors else ''}-[0-9]*-of-[0-9]*.{output_format}"


def _matching_files(pattern: str) -> List[str]:
    from apache_beam.io.filesystems import FileSystems

    return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)


def _prepare_output(output_prefix: str, output_format: str, overwrite: bool) -> None:
    """Refuse (or, with ``overwrite``, delete) shards an earlier run left under this prefix.

    Stale shards would mix with new ones: a run with 4 shards after one with 8 leaves 4 old files.
    """
    from apache_beam.io.filesystems import FileSystems

    if output_prefix.endswith(("/", os.sep)) or not os.path.basename(output_prefix):
        raise OutputError(f"--output={output_prefix!r} is a directory; give a file name prefix, e.g. {output_prefix.rstrip('/')}/predictions")
    existing = []
    for format_ in OUTPUT_FORMATS:
        for errors in (False, True):
            existing += _matching_files(_shard_pattern(output_prefix, format_, errors=errors))
    if existing and not overwrite:
        raise OutputError(
            f"{len(existing)} output file(s) from an earlier run exist under {output_prefix!r} (e.g. {existing[0]}); "
            "pass --overwrite to replace them, or choose another --output prefix"
        )
    if existing:
        FileSystems.delete(existing)


def _check_data(data_globs: Sequence[str]) -> None:
    """DataError naming each glob that matches nothing (checked with a 1-file listing, cheap on object stores)."""
    from apache_beam.io.filesystems import FileSystems

    try:
        results = FileSystems.match(list(data_globs), limits=[1] * len(data_globs))
    except Exception as error:  # BeamIOError wraps per-pattern errors (bad scheme, no credentials)
        raise DataError(f"cannot list {', '.join(data_globs)}: {str(error).splitlines()[0][:300]}") from error
    empty = [glob for glob, result in zip(data_globs, results) if not result.metadata_list]
    if empty:
        raise DataError(f"no files match {', '.join(repr(g) for g in empty)}; check the path and quote the glob so the shell leaves it alone")


@dataclasses.dataclass
class BatchPredictResult:
    """What a batch-predict run wrote and counted.

    ``prediction_files``/``error_files``: the shards written; ``images_read`` = files the
    pipeline opened, ``images_predicted`` + ``images_failed`` = ``images_read`` on success;
    ``batch_sizes``: {"count", "min", "max", "mean"} of the batches RunInference ran
    (None where the runner reports no metrics); ``seconds``: wall time of the run.
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

def build_pipeline(pipeline, plan: ModelPlan, data_globs: Sequence[str], output_prefix: str, *, top_k: int,
                   output_format: str, min_batch_size: int, max_batch_size: int, num_shards: int) -> None:
    """Add batch-predict's transforms to ``pipeline`` (a ``beam.Pipeline``); see the module docstring."""
    from apache_beam.io import fileio
    from apache_beam.io.fileio import EmptyMatchTreatment
    from apache_beam.ml.inference.base import KeyedModelHandler, RunInference

    handler = KeyedModelHandler(SavedModelHandler(plan.saved_model_dir, plan.signature_key, plan.input_name,
                                                  min_batch_size=min_batch_size, max_batch_size=max_batch_size))
    decoded = (
        pipeline
        | "Globs" >> beam.Create(list(data_globs))
        | "MatchFiles" >> fileio.MatchAll(EmptyMatchTreatment.ALLOW)
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
                  pipeline_args: Sequence[str] = ()) -> BatchPredictResult:
    """Predict every file matching ``data_glob`` with a Beam pipeline; returns what was written and counted.

    Args:
      model_dir: a SavedModel directory (an original or a ``tftrt convert`` output), readable
        by the launcher and every worker.
      data_glob: a glob or list of globs any Beam filesystem understands ('photos/*.jpg',
        'gs://bucket/images/**'). Every matched file is an input; non-images are dead-lettered.
      output_prefix: shards go to PREFIX-SSSSS-of-NNNNN.{jsonl,csv}, failures to PREFIX-errors-....
      top_k, labels: as for ``predict``. output_format: "jsonl" or "csv".
      min_batch_size, max_batch_size: the bounds of Beam's adaptive batching for RunInference.
      num_shards: prediction shards (0: the runner decides). overwrite: replace shards an
        earlier run wrote under this prefix (otherwise OutputError).
      signature_key, preprocess, input_shape: as for ``predict`` ('auto' follows the model card).
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
        raise DataError("no data given: pass a glob of image files, e.g. --data='photos/*.jpg'")
    output_prefix = os.fspath(output_prefix)
    pipeline_args = check_pipeline_args(pipeline_args)
    plan = plan_model(model_dir, signature_key=signature_key, preprocess=preprocess, input_shape=input_shape, labels=labels)
    _check_data(data_globs)
    _prepare_output(output_prefix, output_format, overwrite)

    from apache_beam.options.pipeline_options import PipelineOptions

    start = time.perf_counter()
    pipeline = beam.Pipeline(options=PipelineOptions(pipeline_args))
    build_pipeline(pipeline, plan, data_globs, output_prefix, top_k=top_k, output_format=output_format,
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
        prediction_files=_matching_files(_shard_pattern(output_prefix, output_format, errors=False)),
        error_files=_matching_files(_shard_pattern(output_prefix, output_format, errors=True)),
        images_read=metrics.get("images_read"), images_predicted=metrics.get("images_predicted"),
        images_failed=metrics.get("images_failed"), batch_sizes=metrics.get("batch_size"),
        preprocess=plan.preprocess, labels=plan.labels, seconds=round(seconds, 3), pipeline_args=tuple(pipeline_args),
    )


def read_records(files: Sequence[str]) -> Iterator[dict]:
    """The JSON records in JSONL shards (for tests and quick checks; CSV shards are plain CSV)."""
    for path in files:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    yield json.loads(line)
