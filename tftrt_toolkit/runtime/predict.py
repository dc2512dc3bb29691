"""Predict: run a model on images or arrays and read its outputs as top-k labels (or raw values).

    result = predict("saved_models/efficientnet_lite0", "saved_models/samples/cat.jpg")
    result.records[0]   # {"image": ".../cat.jpg", "predictions": [{"rank": 1, "class_id": 285,
                        #   "label": "Egyptian cat", "probability": 0.83}, ...]}
    result.to_json(); result.csv_rows()

How outputs are read:
- A *classifier* is a model with one output of shape [batch, classes] (or, with several
  outputs, the one the labels fit). With 1000 classes it gets the ImageNet names shipped
  with the package (1001: "background" at 0, then the 1000); any other number of classes
  needs ``labels=FILE`` (one name per line, line i = class i).
- Softmax is applied only when the outputs are logits: some value outside [0, 1], or a row
  that does not sum to 1 (within ``PROBABILITY_SUM_TOLERANCE``). What was done is recorded
  as ``softmax_applied``.
- Anything else gets raw outputs: ``{"image": ..., "outputs": {output name: values}}``.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from tftrt_toolkit.data import open_source
from tftrt_toolkit.data.shapes import format_shape
from tftrt_toolkit.data.skipped import SkippedFile, skipped_summary
from tftrt_toolkit.data.sources import DataSpec
from tftrt_toolkit.errors import ConfigError, DataError
from tftrt_toolkit.data.imagenet_labels import IMAGENET_OUTPUT_SIZES, imagenet_labels
from tftrt_toolkit.report import results as rendered
from tftrt_toolkit.signature import ModelSignature
from tftrt_toolkit.runtime.session import ModelLike, ModelRunner, Threads, configure_threads, current_threads, open_runner

# Rows of a softmax sum to 1 up to float rounding; bf16/fp16 models drift by up to ~1e-3.
# Logits summing to 1 within 1% while all lying in [0, 1] do not happen in practice.
PROBABILITY_SUM_TOLERANCE = 1e-2

# Columns of the CSV form: one row per image x rank.
CLASSIFICATION_CSV_COLUMNS = ("image", "rank", "class_id", "label", "probability")
# Raw outputs: one row per image x output, values as a JSON list.
RAW_CSV_COLUMNS = ("image", "output", "shape", "values")

# Synthetic data is unbounded; predict on this many samples when no count is given.
DEFAULT_SYNTHETIC_SAMPLES = 8


@dataclasses.dataclass
class PredictionResult:
    """What predict found: one record per input sample, and how outputs were read.

    ``records``: for classifiers ``{"image", "predictions": [{"rank", "class_id", "label",
    "probability"}, ...]}``; otherwise ``{"image", "outputs": {name: nested list}}``.
    ``kind`` is "classification" or "raw"; ``output`` names the classifier output;
    ``softmax_applied`` is None for raw outputs; ``labels`` says where names came from
    ("imagenet1000", "imagenet1001", "file:PATH"). A record gets a ``note`` when only part of
    its file was used (the first frame of an animated GIF). ``skipped_files`` lists the data's
    files that were not used (``{"path", "reason", "detail"}``); ``skipped_summary`` sums them
    up in one line.
    """

    model: str
    records: List[dict]
    kind: str
    output: Optional[str]
    softmax_applied: Optional[bool]
    labels: Optional[str]
    top_k: int
    preprocess: str
    data: str
    settings: dict = dataclasses.field(default_factory=dict)
    skipped_files: List[dict] = dataclasses.field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def skipped_summary(self) -> str:
        """``skipped 2 files: 1 not an image (.txt), 1 unreadable (broken.jpg)``; "" when every file was used."""
        return skipped_summary(SkippedFile(**entry) for entry in self.skipped_files)

    def top1(self, image: Optional[str] = None) -> dict:
        """The rank-1 prediction of ``image`` (a path, or its file name; default the first record)."""
        if self.kind != "classification":
            raise ConfigError("top1() needs a classifier's result; this model's outputs were reported raw.")
        for record in self.records:
            if image is None or record["image"] == image or os.path.basename(record["image"]) == image:
                return record["predictions"][0]
        raise KeyError(image)

    def to_json(self) -> dict:
        return {
            "model": self.model,
            "kind": self.kind,
            "output": self.output,
            "labels": self.labels,
            "softmax_applied": self.softmax_applied,
            "top_k": self.top_k,
            "preprocess": self.preprocess,
            "data": self.data,
            "settings": self.settings,
            "results": self.records,
            "skipped_files": self.skipped_files,
        }

    @property
    def csv_columns(self) -> Tuple[str, ...]:
        return CLASSIFICATION_CSV_COLUMNS if self.kind == "classification" else RAW_CSV_COLUMNS

    def csv_rows(self) -> List[dict]:
        """Rows for ``csv_columns``: one per image x rank (classifiers) or image x output (raw)."""
        return [row for record in self.records for row in record_csv_rows(record)]

    # ------------------------------------------------------------------ rendering (report.results)

    def to_markdown(self) -> str:
        return rendered.predictions_markdown(self)

    def _repr_markdown_(self) -> str:
        return rendered.predictions_markdown(self)

    def save(self, path: str, *, output_format: Optional[str] = None, overwrite: bool = False) -> str:
        """Write the predictions (format from ``output_format`` or the file's suffix: .csv, .jsonl, else json)."""
        if output_format is None:
            suffix = os.path.splitext(os.fspath(path))[1].lower()
            output_format = {".csv": "csv", ".jsonl": "jsonl"}.get(suffix, "json")
        return rendered.write_predictions(self, path, output_format=output_format, overwrite=overwrite)

    def __repr__(self) -> str:
        if self.kind == "classification" and self.records:
            first = self.records[0]["predictions"][0]
            summary = f", first={first['label']!r} p={first['probability']:.3f}"
        else:
            summary = ""
        return f"PredictionResult({self.model!r}, {len(self.records)} record(s), kind={self.kind!r}{summary})"


def record_csv_rows(record: dict) -> List[dict]:
    """One prediction record as CSV rows: image x rank (CLASSIFICATION_CSV_COLUMNS) or image x output (RAW_CSV_COLUMNS)."""
    if "predictions" in record:
        return [{"image": record["image"], **prediction} for prediction in record["predictions"]]
    return [{"image": record["image"], "output": name, "shape": format_shape(np.shape(values)), "values": values}
            for name, values in record["outputs"].items()]


def read_labels_file(path: str) -> Tuple[str, ...]:
    """Class names from a text file, one per line (trailing blank lines ignored). DataError if unreadable or empty."""
    try:
        with open(path, encoding="utf-8") as handle:
            names = [line.rstrip("\r\n").strip() for line in handle]
    except OSError as error:
        raise DataError(f"labels file {path!r} cannot be read ({error.strerror or error}); pass a text file with one class name per line") from error
    while names and not names[-1]:
        names.pop()
    if not names:
        raise DataError(f"labels file {path!r} is empty; put one class name per line")
    return tuple(names)


def classifier_output(signature: ModelSignature, num_labels: Optional[int] = None) -> Optional[str]:
    """The output that holds class scores, or None: the one [batch, classes] float output (classes > 1).

    With several such outputs, the one with ``num_labels`` classes (or 1000/1001) when unique.
    """
    candidates = [t for t in signature.outputs
                  if t.shape is not None and len(t.shape) == 2 and (t.shape[1] is None or t.shape[1] > 1)
                  and t.dtype in ("float16", "bfloat16", "float32", "float64")]
    if len(candidates) == 1:
        return candidates[0].name
    sizes = (num_labels,) if num_labels else IMAGENET_OUTPUT_SIZES
    fitting = [t for t in candidates if t.shape[1] in sizes]
    return fitting[0].name if len(fitting) == 1 else None


def looks_like_logits(scores: np.ndarray) -> bool:
    """True when ``scores`` [n, classes] are not probabilities: a value outside [0, 1] or a row not summing to 1."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        return False
    if not np.all(np.isfinite(scores)) or scores.min() < 0.0 or scores.max() > 1.0:
        return True
    return bool(np.any(np.abs(scores.sum(axis=-1) - 1.0) > PROBABILITY_SUM_TOLERANCE))


def softmax(scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    shifted = scores - scores.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def top_k_predictions(probabilities: np.ndarray, names: Sequence[str], top_k: int) -> List[dict]:
    """The ``top_k`` classes of one row as [{"rank", "class_id", "label", "probability"}, ...], best first."""
    k = min(top_k, probabilities.shape[-1])
    # argsort is stable on the negated scores, so ties keep the lower class id first.
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [
        {"rank": rank, "class_id": int(class_id), "label": names[class_id],
         "probability": round(float(probabilities[class_id]), 6)}
        for rank, class_id in enumerate(order, start=1)
    ]


def class_names(signature: ModelSignature, labels: Optional[str]) -> Tuple[Optional[str], Optional[Tuple[str, ...]], Optional[str]]:
    """(classifier output, names, where names came from) — (None, None, None) for raw outputs."""
    if labels is not None:
        names = read_labels_file(labels)
        output = classifier_output(signature, len(names))
        if output is None:
            shapes = ", ".join(f"{t.name}{list(t.shape) if t.shape else '[?]'}" for t in signature.outputs)
            raise ConfigError(f"--labels was given but no output has shape [batch, {len(names)}] to name (outputs: {shapes})")
        classes = signature.outputs[signature.output_names.index(output)].shape[1]
        if classes is not None and classes != len(names):
            raise ConfigError(f"labels file {labels!r} has {len(names)} names but output {output!r} has {classes} classes; give one name per class")
        return output, names, f"file:{labels}"
    output = classifier_output(signature)
    if output is None:
        return None, None, None
    classes = signature.outputs[signature.output_names.index(output)].shape[1]
    if classes in IMAGENET_OUTPUT_SIZES:
        return output, imagenet_labels(classes), f"imagenet{classes}"
    return None, None, None


def predict(model: Union[ModelLike, ModelRunner], data: DataSpec, *, top_k: int = 5, labels: Optional[str] = None,
            preprocess: str = "auto", input_shape=None, batch_size: int = 8, limit: Optional[int] = None,
            threads: Threads = (None, None), strict_data: bool = False) -> PredictionResult:
    """Run ``model`` on ``data`` and return labelled top-k predictions (or raw outputs) per sample.

    Args:
      model: a model spec, ``LoadedModel`` or ``ModelRunner`` (see ``ModelRunner``).
      data: image file(s)/directory, FILE.npy/.npz, or 'synthetic:N' (see ``open_source``).
      top_k: how many classes per sample (clipped to the number of classes).
      labels: a text file of class names, for classifiers whose outputs are not ImageNet's.
      preprocess, input_shape: as for ``open_source``; 'auto' follows the model card.
      batch_size: samples per model call; limit: read at most this many samples.
      threads: (intra, inter) TF thread counts, set before the model loads (see ``configure_threads``).
      strict_data: refuse data with files that would be skipped (DataError listing them)
        instead of skipping them; the result's ``skipped_files`` lists them otherwise.

    Raises ModelLoadError (model), DataError (data, labels file, skipped files when
    ``strict_data``), ConfigError (top_k < 1,
    labels that do not fit the model, threads set too late).
    """
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ConfigError(f"top_k must be a whole number >= 1, got {top_k!r}")
    configure_threads(*threads)
    runner, owns_runner = open_runner(model)
    try:
        signature = runner.signature
        output, names, labels_source = class_names(signature, labels)
        source = open_source(data, signature, preprocess=preprocess, input_shape=input_shape, model_hint=runner.model_info,
                             strict=strict_data)
        if limit is None and source.count() is None:
            limit = DEFAULT_SYNTHETIC_SAMPLES
        sources: List[str] = []
        outputs: Dict[str, List[np.ndarray]] = {}
        for batch in source.batches(batch_size, limit=limit):
            result = runner.run(batch.inputs)
            sources.extend(batch.sources)
            for name in signature.output_names:
                outputs.setdefault(name, []).append(result[name])
        if not sources:
            raise DataError(f"{source.description} gave no samples; nothing to predict")
        settings = {"batch_size": batch_size, **current_threads()}
        skipped = [file.to_json() for file in source.skipped_files]
        if output is None:
            stacked = {name: np.concatenate(chunks) for name, chunks in outputs.items()}
            records = [_with_note({"image": where, "outputs": {name: values[i].tolist() for name, values in stacked.items()}},
                                  source.notes) for i, where in enumerate(sources)]
            return PredictionResult(runner.name, records, "raw", None, None, None, top_k, source.preprocess,
                                    source.description, settings, skipped)
        # Decide logits vs probabilities on all rows at once, so every record is read the same way.
        scores = np.concatenate(outputs[output]).astype(np.float64)
        if len(names) != scores.shape[-1]:
            raise ConfigError(f"{len(names)} class names for output {output!r} with {scores.shape[-1]} classes; give one name per class")
        softmax_applied = looks_like_logits(scores)
        probabilities = softmax(scores) if softmax_applied else scores
        records = [_with_note({"image": where, "predictions": top_k_predictions(row, names, top_k)}, source.notes)
                   for where, row in zip(sources, probabilities)]
        return PredictionResult(runner.name, records, "classification", output, softmax_applied, labels_source,
                                top_k, source.preprocess, source.description, settings, skipped)
    finally:
        if owns_runner:
            runner.close()


def _with_note(record: dict, notes: Dict[str, str]) -> dict:
    """``record`` with a "note" when only part of its file was used (the first frame of an animated GIF)."""
    if record["image"] in notes:
        record["note"] = notes[record["image"]]
    return record
