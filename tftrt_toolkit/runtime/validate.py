"""Validate: does the optimized model give the original's answers, within tolerance?

    report = validate("saved_models/efficientnet_lite0", "out/bf16", data="saved_models/samples")
    bool(report)          # True on pass; report.failures says why not
    report.to_json()

Both models run on the same inputs, batch by batch. For every output the report gives the
max/mean absolute and relative error, the share of elements within tolerance and the
tolerance that *would* have been needed; for classifier outputs ([batch, classes]) top-1
agreement (same argmax) and top-k agreement (the original's top-1 class is among the
optimized model's top k). Where the images are labelled (``labels_csv`` with columns
image,class_id, or a folder whose names carry ImageNet WordNet ids, see ``data.labels``)
it also gives each model's top-1/top-k accuracy, the drop and its 95% paired interval
(``runtime.accuracy``).

An element is within tolerance when ``|optimized - original| <= atol + rtol * |original|``
(numpy's ``allclose`` rule, the original as reference).

What passing means is the one accuracy rule (``runtime.accuracy_rule``, README "The accuracy
rule"): per precision the optimized model records in its toolkit metadata (models without it
are judged as fp32), element tolerances, the share of elements that must meet them and the
top-1 agreement (``DEFAULT_CRITERIA``); with ``max_top1_drop``, also the accuracy budget run
and tune judge by. Reduced precisions change every intermediate value, so there the gate is
mostly agreement on the answer, with a loose element check that still catches a broken model.
Agreement on random (synthetic) inputs is harsher than on real data, because noise makes
near-ties between classes: validate on real images where you have them.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Union

import numpy as np

from tftrt_toolkit.data import open_source
from tftrt_toolkit.data.labels import open_labels, read_labels_csv  # noqa: F401  (read_labels_csv: today's import path)
from tftrt_toolkit.data.shapes import format_shape
from tftrt_toolkit.data.preprocess import hint_of_pair
from tftrt_toolkit.data.sources import DataSpec
from tftrt_toolkit.errors import ConfigError, DataError, ValidationFailed
from tftrt_toolkit.signature import ModelSignature
from tftrt_toolkit.progress import progress_bar
from tftrt_toolkit.report import results as rendered
from tftrt_toolkit.runtime.accuracy import LabelledAccuracy
from tftrt_toolkit.runtime.accuracy_rule import DEFAULT_CRITERIA, Budget, Criteria, criteria_for  # noqa: F401
from tftrt_toolkit.runtime.predict import classifier_output
from tftrt_toolkit.runtime.session import ModelLike, ModelRunner, Threads, configure_threads, current_threads, open_runner

# Synthetic data is unbounded; compare on this many samples unless told otherwise.
DEFAULT_SYNTHETIC_SAMPLES = 32


class SignatureMismatch(ValidationFailed):
    """The optimized model does not take/return what the original does, so it is no drop-in replacement."""


def check_same_signature(original: ModelSignature, optimized: ModelSignature, original_name: str = "original",
                         optimized_name: str = "optimized") -> None:
    """Raise SignatureMismatch unless both take the same inputs (names, dtypes, shapes) and return the same outputs.

    Outputs must have the same names, and no dimension known on both sides may differ.
    """
    problems: List[str] = []
    if original.input_names != optimized.input_names:
        problems.append(f"inputs {list(original.input_names)} vs {list(optimized.input_names)}")
    else:
        for a, b in zip(original.inputs, optimized.inputs):
            if a.dtype != b.dtype:
                problems.append(f"input {a.name!r} dtype {a.dtype} vs {b.dtype}")
            if a.shape != b.shape:
                problems.append(f"input {a.name!r} shape {format_shape(a.shape)} vs {format_shape(b.shape)}")
    if set(original.output_names) != set(optimized.output_names):
        problems.append(f"outputs {list(original.output_names)} vs {list(optimized.output_names)}")
    else:
        for a in original.outputs:
            b = next(t for t in optimized.outputs if t.name == a.name)
            # Converters may leave output dims unknown; only dims both sides know can conflict.
            if a.shape is not None and b.shape is not None and (
                    len(a.shape) != len(b.shape)
                    or any(x is not None and y is not None and x != y for x, y in zip(a.shape, b.shape))):
                problems.append(f"output {a.name!r} shape {format_shape(a.shape)} vs {format_shape(b.shape)}")
    if problems:
        raise SignatureMismatch(
            f"{optimized_name} does not match {original_name}'s signature ({'; '.join(problems)}); "
            "compare a converted model with the model it was converted from."
        )


# --------------------------------------------------------------------------- statistics

class _OutputComparison:
    """Streaming error statistics of one output over all batches."""

    def __init__(self, name: str, criteria: Criteria, top_k: int, classifier: bool):
        self.name = name
        self.criteria = criteria
        self.top_k = top_k
        self.elements = 0
        self.within = 0
        self.non_finite = 0
        self.sum_abs = 0.0
        self.max_abs = 0.0
        self.rel_elements = 0
        self.sum_rel = 0.0
        self.max_rel = 0.0
        self.needed_atol = 0.0
        self.needed_rtol: Optional[float] = 0.0
        self.classifier = classifier  # class scores [batch, classes]: agreement is measured
        self.samples = 0
        self.top1_agree = 0
        self.topk_agree = 0

    def add(self, reference: np.ndarray, candidate: np.ndarray) -> None:
        if reference.shape != candidate.shape:
            raise ValidationFailed(
                f"output {self.name!r} has shape {format_shape(candidate.shape)} from the optimized model but "
                f"{format_shape(reference.shape)} from the original on the same inputs"
            )
        ref = reference.astype(np.float64, copy=False).ravel()
        cand = candidate.astype(np.float64, copy=False).ravel()
        rtol, atol = self.criteria.rtol, self.criteria.atol
        finite = np.isfinite(ref) & np.isfinite(cand)
        diff = np.where(finite, np.abs(cand - ref), np.inf)
        magnitude = np.abs(np.where(finite, ref, 0.0))
        self.elements += diff.size
        self.non_finite += int((~finite).sum())
        self.within += int((diff <= atol + rtol * magnitude).sum())
        if diff.size:
            self.max_abs = max(self.max_abs, float(diff.max()))
            self.sum_abs += float(diff[finite].sum())
            # The smallest atol that passes every element at this rtol, and vice versa.
            self.needed_atol = max(self.needed_atol, float(np.max(np.maximum(diff - rtol * magnitude, 0.0))))
            excess = np.maximum(diff - atol, 0.0)
            if np.any((excess > 0) & (magnitude == 0)) or not np.all(finite):
                self.needed_rtol = None  # no relative tolerance covers an error on an exact zero
            elif self.needed_rtol is not None:
                with np.errstate(divide="ignore", invalid="ignore"):
                    ratio = np.where(excess > 0, excess / np.where(magnitude > 0, magnitude, 1.0), 0.0)
                self.needed_rtol = max(self.needed_rtol, float(ratio.max()))
        nonzero = finite & (magnitude > 0)
        if np.any(nonzero):
            rel = diff[nonzero] / magnitude[nonzero]
            self.rel_elements += rel.size
            self.sum_rel += float(rel.sum())
            self.max_rel = max(self.max_rel, float(rel.max()))
        if self.classifier and reference.ndim == 2:
            self.samples += reference.shape[0]
            original_top1 = np.argmax(reference, axis=1)
            self.top1_agree += int((original_top1 == np.argmax(candidate, axis=1)).sum())
            k = min(self.top_k, reference.shape[1])
            candidate_topk = np.argsort(-candidate, axis=1, kind="stable")[:, :k]
            self.topk_agree += int((candidate_topk == original_top1[:, None]).any(axis=1).sum())

    @property
    def within_tolerance(self) -> float:
        return self.within / self.elements if self.elements else 1.0

    @property
    def top1_agreement(self) -> Optional[float]:
        return self.top1_agree / self.samples if self.classifier and self.samples else None

    @property
    def topk_agreement(self) -> Optional[float]:
        return self.topk_agree / self.samples if self.classifier and self.samples else None

    def to_json(self) -> dict:
        data = {
            "elements": self.elements,
            "max_abs_error": self.max_abs,
            "mean_abs_error": self.sum_abs / max(self.elements - self.non_finite, 1),
            "max_rel_error": self.max_rel,
            "mean_rel_error": self.sum_rel / self.rel_elements if self.rel_elements else 0.0,
            "within_tolerance": self.within_tolerance,
            "needed_atol": self.needed_atol,
            "needed_rtol": self.needed_rtol,
            "non_finite": self.non_finite,
        }
        if self.classifier:
            data.update(top1_agreement=self.top1_agreement, topk_agreement=self.topk_agreement)
        return data


# --------------------------------------------------------------------------- the report

@dataclasses.dataclass
class ValidationReport:
    """The comparison's result: truthy on pass; ``failures`` lists each unmet criterion."""

    passed: bool
    failures: List[str]
    original: dict
    optimized: dict
    precision: Optional[str]
    criteria: Criteria
    top_k: int
    data: str
    samples: int
    outputs: Dict[str, dict]
    accuracy: Optional[dict]
    settings: dict
    skipped_files: List[dict] = dataclasses.field(default_factory=list)  # data files not compared: {path, reason, detail}
    budget: Optional[dict] = None  # the accuracy budget judged (``max_top1_drop``), with "within"

    def __bool__(self) -> bool:
        return self.passed

    @property
    def top1_agreement(self) -> Optional[float]:
        """The lowest top-1 agreement over classifier outputs (None when there are none)."""
        values = [o["top1_agreement"] for o in self.outputs.values() if o.get("top1_agreement") is not None]
        return min(values) if values else None

    @property
    def topk_agreement(self) -> Optional[float]:
        values = [o["topk_agreement"] for o in self.outputs.values() if o.get("topk_agreement") is not None]
        return min(values) if values else None

    @property
    def max_abs_error(self) -> float:
        return max((o["max_abs_error"] for o in self.outputs.values()), default=0.0)

    def raise_if_failed(self) -> "ValidationReport":
        """Raise ValidationFailed (its message lists the failures) unless the report passed."""
        if not self.passed:
            raise ValidationFailed(f"{self.optimized['model']} differs from {self.original['model']}: " + "; ".join(self.failures))
        return self

    def to_json(self) -> dict:
        return {
            "passed": self.passed,
            "failures": self.failures,
            "original": self.original,
            "optimized": self.optimized,
            "precision": self.precision,
            "criteria": self.criteria.to_json(),
            "top_k": self.top_k,
            "data": self.data,
            "samples": self.samples,
            "top1_agreement": self.top1_agreement,
            "topk_agreement": self.topk_agreement,
            "max_abs_error": self.max_abs_error,
            "outputs": self.outputs,
            "accuracy": self.accuracy,
            "settings": self.settings,
            "skipped_files": self.skipped_files,
            "budget": self.budget,
        }

    # ------------------------------------------------------------------ rendering (report.results)

    def summary_lines(self) -> List[str]:
        """A few human-readable lines: verdict, per-output errors, agreement, accuracy."""
        return rendered.validation_lines(self)

    def to_markdown(self) -> str:
        return rendered.validation_markdown(self)

    def _repr_markdown_(self) -> str:
        return rendered.validation_markdown(self)

    def save(self, path: str, *, overwrite: bool = False) -> str:
        """Write the report as JSON (what ``tftrt validate --output`` writes); returns the path."""
        return rendered.write_validation(self, path, overwrite=overwrite)


def validate(original: Union[ModelLike, ModelRunner], optimized: Union[ModelLike, ModelRunner], *,
             data: DataSpec = "synthetic", rtol: Optional[float] = None, atol: Optional[float] = None,
             top_k: int = 5, labels_csv: Optional[str] = None, min_top1_agreement: Optional[float] = None,
             min_within_tolerance: Optional[float] = None, max_top1_drop: Optional[float] = None, batch_size: int = 8, samples: Optional[int] = None,
             preprocess: str = "auto", input_shape=None, threads: Threads = (None, None), seed: int = 0,
             progress: bool = True, strict_data: bool = False) -> ValidationReport:
    """Compare ``optimized`` with ``original`` on the same inputs; return a report (truthy on pass).

    Args:
      original, optimized: model specs, ``LoadedModel``s or ``ModelRunner``s.
      data: any data spec ``open_source`` takes; default random inputs.
      rtol, atol, min_top1_agreement, min_within_tolerance: override the precision's
        defaults (``DEFAULT_CRITERIA``, keyed by the optimized model's recorded precision).
      max_top1_drop: the accuracy budget (``runtime.accuracy_rule.Budget``, the rule run and
        tune judge by): fail when the top-1 accuracy drop on the labelled images is larger.
      top_k: k for top-k agreement and accuracy.
      labels_csv: CSV with columns image,class_id (image = file name or path as listed;
        class_id an index or an ImageNet WordNet id) to measure each model's accuracy; needs
        image data. Without it, a ``data`` folder whose image names carry WordNet ids
        (``n01440764_tench.JPEG``, ``n01440764/x.JPEG``) is labelled by those.
      samples: compare on at most this many samples (default: all; 32 for synthetic).
      progress: show a bar over the samples compared (in a terminal or notebook; False: none).
      strict_data: refuse image folders with files that would be skipped (DataError listing
        them); otherwise the report's ``skipped_files`` lists them.

    Returns a ValidationReport; it does not raise on failure (call ``raise_if_failed()``).
    Raises SignatureMismatch (a ValidationFailed) before running when inputs (names,
    dtypes, shapes) or output names differ; ModelLoadError, DataError, ConfigError for
    unusable models, data or options.
    """
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ConfigError(f"top_k must be a whole number >= 1, got {top_k!r}")
    if samples is not None and (isinstance(samples, bool) or not isinstance(samples, int) or samples < 1):
        raise ConfigError(f"samples must be a whole number >= 1, got {samples!r}")
    labels = open_labels(data, labels_csv)
    budget = None
    if max_top1_drop is not None:
        budget = Budget.for_data(labels is not None, max_top1_drop=max_top1_drop)
    configure_threads(*threads)
    original_runner, owns_original = open_runner(original)
    optimized_runner = owns_optimized = None
    try:
        optimized_runner, owns_optimized = open_runner(optimized)
        check_same_signature(original_runner.signature, optimized_runner.signature,
                             f"original {original_runner.name!r}", f"optimized {optimized_runner.name!r}")
        metadata = optimized_runner.toolkit_metadata or {}
        precision = metadata.get("precision")
        criteria = criteria_for(precision, rtol=rtol, atol=atol, min_within_tolerance=min_within_tolerance,
                                min_top1_agreement=min_top1_agreement)
        # The mode the optimized model records (chosen when it was converted), else the original's conventions.
        source = open_source(data, original_runner.signature, preprocess=preprocess, input_shape=input_shape,
                             model_hint=hint_of_pair(original_runner.model_info, optimized_runner.model_info),
                             seed=seed, strict=strict_data)
        scores_output = classifier_output(original_runner.signature)
        if labels_csv and scores_output is None:
            raise ConfigError("labels_csv needs a classifier (one output of shape [batch, classes]); this model has none")
        if labels_csv and source.count() is None:
            raise ConfigError("labels_csv needs image data (e.g. --data=saved_models/samples); synthetic inputs have no labels")
        limit = samples if samples is not None else (DEFAULT_SYNTHETIC_SAMPLES if source.count() is None else None)

        comparisons = {name: _OutputComparison(name, criteria, top_k, classifier=name == scores_output)
                       for name in original_runner.signature.output_names}
        # Labels read from the folder's names apply only where there is a classifier to score.
        accuracy = LabelledAccuracy(labels, top_k) if labels is not None and scores_output is not None else None
        seen = 0
        total = limit if source.count() is None else min(source.count(), limit or source.count())
        bar = progress_bar(description="validate", total=total, progress=progress, unit="sample")
        for batch in source.batches(batch_size, limit=limit):
            # Both models get the very same tensors.
            tensors = original_runner.prepare(batch.inputs)
            reference = original_runner.run_prepared(tensors)
            candidate = optimized_runner.run_prepared(tensors)
            for name, comparison in comparisons.items():
                comparison.add(reference[name], candidate[name])
            if accuracy is not None:
                accuracy.add(batch.sources, {"original": reference[scores_output], "optimized": candidate[scores_output]})
            seen += len(batch)
            bar.update(len(batch))
        bar.close()
        if not seen:
            raise DataError(f"{source.description} gave no samples; nothing to compare")
        if accuracy is not None and not accuracy.labelled:
            raise DataError(f"none of the {seen} images is listed in {labels_csv!r} (matched by path or file name); "
                            "check the CSV's image column")

        failures = _failures(comparisons, criteria)
        accuracy_record = accuracy.compare("original", "optimized") if accuracy is not None else None
        budget_record = None
        if budget is not None:
            values = {"top1_drop": (accuracy_record or {}).get("top1_drop")}
            budget_record = dict(budget.to_json(), within=budget.within(values))
            if budget.failure(values):
                failures.append(budget.failure(values))
        return ValidationReport(
            passed=not failures,
            failures=failures,
            original=original_runner.describe(),
            optimized=optimized_runner.describe(),
            precision=precision,
            criteria=criteria,
            top_k=top_k,
            data=source.description,
            samples=seen,
            outputs={name: c.to_json() for name, c in comparisons.items()},
            accuracy=accuracy_record,
            settings={"batch_size": batch_size, "preprocess": source.preprocess, "seed": seed, **current_threads()},
            skipped_files=[file.to_json() for file in source.skipped_files],
            budget=budget_record,
        )
    finally:
        if owns_optimized:
            optimized_runner.close()
        if owns_original:
            original_runner.close()


def _failures(comparisons: Dict[str, _OutputComparison], criteria: Criteria) -> List[str]:
    failures = []
    for name, comparison in comparisons.items():
        if comparison.non_finite:
            failures.append(f"output {name!r} has {comparison.non_finite} NaN/inf value(s)")
        if comparison.within_tolerance < criteria.min_within_tolerance:
            failures.append(
                f"output {name!r}: {comparison.within_tolerance:.2%} of elements within atol={criteria.atol:g} "
                f"rtol={criteria.rtol:g}, need {criteria.min_within_tolerance:.2%} "
                f"(max abs error {comparison.max_abs:.3g}; atol={comparison.needed_atol:.3g} at this rtol would pass)"
            )
        agreement = comparison.top1_agreement
        if agreement is not None and agreement < criteria.min_top1_agreement:
            failures.append(f"output {name!r}: top-1 agreement {agreement:.2%}, need {criteria.min_top1_agreement:.2%}")
    return failures
