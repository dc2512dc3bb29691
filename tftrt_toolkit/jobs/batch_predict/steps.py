"""The pipeline's steps: what the model needs (ModelPlan), decoding DoFns, the SavedModel handler, record lines.

Beam is optional: without it these classes are inert, and ``require_beam()`` says how to install it.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from tftrt_toolkit.data.images import decode_image
from tftrt_toolkit.data.preprocess import preprocess_pixels
from tftrt_toolkit.data.samples import pixel_mode
from tftrt_toolkit.data.shapes import ImageLayout, image_layout, override_for, parse_input_shape
from tftrt_toolkit.errors import BackendUnavailable, DataError, first_line
from tftrt_toolkit.models.loader import load_signature_function, read_model_info, read_signatures, select_signature
from tftrt_toolkit.report.writers import csv_cell, json_line
from tftrt_toolkit.runtime.predict import (
    CLASSIFICATION_CSV_COLUMNS,
    RAW_CSV_COLUMNS,
    class_names,
    looks_like_logits,
    record_csv_rows,
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
            yield beam.pvalue.TaggedOutput(self.FAILED, {"image": path, "stage": "read",
                                                         "error": f"cannot read {path}: {type(error).__name__}: {first_line(error)}"})
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
        from tftrt_toolkit.artifacts import read_metadata
        from tftrt_toolkit.runtime.session import apply_tuned_threads

        # Each worker process serves the model with the threading tune chose for it (e.g. one
        # intra-op thread per request at batch 1), unless its pools were set or TF already ran.
        self.threads_note = apply_tuned_threads(read_metadata(self._saved_model_dir))[1]
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
    columns = CLASSIFICATION_CSV_COLUMNS if "predictions" in record else RAW_CSV_COLUMNS
    return [_csv_line([row[column] for column in columns]) for row in record_csv_rows(record)]


def format_error(record: dict, output_format: str) -> str:
    if output_format == "jsonl":
        return json_line(record)
    return _csv_line([record[column] for column in ERROR_CSV_COLUMNS])
