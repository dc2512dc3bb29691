"""Accuracy against ground truth, and how sure we are that an optimized model lost any.

Both models classify the same labelled images, so their accuracies are *paired*: an image
both get right or both get wrong says nothing about the difference; only the images exactly
one of them gets right decide it. With ``n`` images, ``b`` that only the original gets right
and ``c`` that only the optimized model gets right, the drop is ``(b - c) / n``.

Its 95% interval is Newcombe's square-and-add interval for a difference of paired
proportions (Newcombe 1998, "Improved confidence intervals for the difference between
binomial proportions based on paired data", Statistics in Medicine 17:2635, method 10):
Wilson score intervals for each accuracy, combined with the estimated correlation between
the two (with Newcombe's continuity adjustment of that correlation). It stays inside
[-1, 1], behaves at 0% and 100% accuracy and with no discordant images, and is the interval
the ``contingencytables`` R package implements (its worked example is a test here). The
exact McNemar test (a two-sided binomial test of ``b`` against ``b + c`` at one half) is
reported alongside as a p-value for "no change".

Ranking, ties and 1001-class models: classes are ranked by score, ties broken towards the
lower class id (a stable sort, the rule agreement uses too), so a model that gives several
classes the same top score is right only if the true class has the lowest id among them.
A model with 1001 outputs has "background" at 0; its output ``i`` is ImageNet class
``i - 1`` and background never matches a label.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from typing import Dict, Sequence, Tuple

import numpy as np

from tftrt_toolkit.data.labels import ImageLabels
from tftrt_toolkit.errors import ConfigError, DataError

CONFIDENCE = 0.95
INTERVAL_METHOD = "Newcombe (1998) square-and-add interval for paired proportions (method 10, Wilson score)"
_BACKGROUND_MODEL_CLASSES = 1001


def ranked_classes(scores: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` best class ids per row of ``scores`` [batch, classes], best first, ties to the lower id.

    For 1001-output models the ids are shifted to ImageNet's 1000 (background becomes -1).
    """
    scores = np.asarray(scores)
    k = min(k, scores.shape[-1])
    ranked = np.argsort(-scores.astype(np.float64), axis=-1, kind="stable")[..., :k]
    if scores.shape[-1] == _BACKGROUND_MODEL_CLASSES:
        ranked = ranked - 1
    return ranked


def wilson_interval(successes: int, n: int, confidence: float = CONFIDENCE) -> Tuple[float, float]:
    """Wilson's score interval for a proportion ``successes / n`` (Wilson 1927); (0, 1) when n is 0."""
    if n == 0:
        return 0.0, 1.0
    z = _z(confidence)
    p = successes / n
    centre = (2 * n * p + z * z) / (2 * (n + z * z))
    half = z * math.sqrt(z * z + 4 * n * p * (1 - p)) / (2 * (n + z * z))
    return max(0.0, centre - half), min(1.0, centre + half)


def paired_difference_interval(both_right: int, only_first: int, only_second: int, both_wrong: int,
                               confidence: float = CONFIDENCE) -> Tuple[float, float]:
    """The interval for accuracy(first) - accuracy(second) on the same images (Newcombe method 10; see module doc)."""
    n = both_right + only_first + only_second + both_wrong
    if n == 0:
        return -1.0, 1.0
    first_right, second_right = both_right + only_first, both_right + only_second
    p1, p2 = first_right / n, second_right / n
    l1, u1 = wilson_interval(first_right, n, confidence)
    l2, u2 = wilson_interval(second_right, n, confidence)
    margins = (first_right, n - first_right, second_right, n - second_right)
    if 0 in margins:
        phi = 0.0
    else:
        cross = both_right * both_wrong - only_first * only_second
        # Newcombe's adjustment: a positive correlation is reduced by n/2 (never below 0).
        if cross > n / 2:
            cross -= n / 2
        elif cross >= 0:
            cross = 0.0
        phi = cross / math.sqrt(math.prod(float(m) for m in margins))
    difference = p1 - p2
    lower = difference - math.sqrt(max(0.0, (p1 - l1) ** 2 + (u2 - p2) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2)))
    upper = difference + math.sqrt(max(0.0, (p2 - l2) ** 2 + (u1 - p1) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1)))
    return max(-1.0, lower), min(1.0, upper)


def mcnemar_exact_p(only_first: int, only_second: int) -> float:
    """Two-sided exact McNemar p-value: how surprising the split of discordant images is if neither model is better."""
    discordant = only_first + only_second
    if discordant == 0:
        return 1.0
    tail = sum(math.comb(discordant, i) for i in range(min(only_first, only_second) + 1)) / 2.0 ** discordant
    return min(1.0, 2 * tail)


def _z(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence={confidence!r} is not valid; use a share between 0 and 1 (e.g. 0.95)")
    return statistics.NormalDist().inv_cdf(0.5 + confidence / 2)


@dataclasses.dataclass
class _Hits:
    top1: list = dataclasses.field(default_factory=list)
    topk: list = dataclasses.field(default_factory=list)


class LabelledAccuracy:
    """Top-1/top-k accuracy of several models on the same labelled images, kept per image so they can be paired.

    ``add(sources, {"original": scores, "optimized": scores})`` per batch; images without a
    label are skipped. ``compare("original", "optimized")`` gives the JSON the reports show.
    """

    def __init__(self, labels: ImageLabels, top_k: int = 5):
        self.labels = labels
        self.top_k = top_k
        self.hits: Dict[str, _Hits] = {}
        self.labelled = 0

    def add(self, sources: Sequence[str], scores: Dict[str, np.ndarray]) -> None:
        rows, class_ids = [], []
        for row, source in enumerate(sources):
            class_id = self.labels.class_of(source)
            if class_id is not None:
                rows.append(row)
                class_ids.append(class_id)
        if not rows:
            return
        truth = np.asarray(class_ids)
        for role, values in scores.items():
            values = np.asarray(values)[rows]
            classes = values.shape[-1] - (1 if values.shape[-1] == _BACKGROUND_MODEL_CLASSES else 0)
            if truth.max() >= classes:
                bad = int(np.argmax(truth >= classes))
                raise DataError(
                    f"image {sources[rows[bad]]} is labelled class {int(truth[bad])} ({self.labels.origin}) but the "
                    f"model has {classes} classes; fix the label or compare a model with those classes"
                )
            ranked = ranked_classes(values, self.top_k)
            hits = self.hits.setdefault(role, _Hits())
            hits.top1.extend((ranked[:, 0] == truth).tolist())
            hits.topk.extend((ranked == truth[:, None]).any(axis=1).tolist())
        self.labelled += len(rows)

    def accuracy(self, role: str) -> Dict[str, float]:
        hits = self.hits[role]
        n = max(len(hits.top1), 1)
        return {"top1": sum(hits.top1) / n, "topk": sum(hits.topk) / n}

    def compare(self, reference: str = "original", candidate: str = "optimized",
                confidence: float = CONFIDENCE) -> dict:
        """Both accuracies, the drop (reference - candidate, a share) and its paired interval, for top-1 and top-k."""
        result = {
            "labels": self.labels.origin,
            "labels_csv": self.labels.labels_csv,
            "labelled_samples": self.labelled,
            "top_k": self.top_k,
            reference: self.accuracy(reference),
            candidate: self.accuracy(candidate),
            "confidence": confidence,
            "interval_method": INTERVAL_METHOD,
        }
        for name in ("top1", "topk"):
            result.update(paired_drop(getattr(self.hits[reference], name), getattr(self.hits[candidate], name),
                                      prefix=name, confidence=confidence))
        return result


def paired_drop(reference_right: Sequence[bool], candidate_right: Sequence[bool], *, prefix: str = "top1",
                confidence: float = CONFIDENCE) -> dict:
    """``{prefix}_drop``, its interval, the discordant counts and McNemar's p for two per-image right/wrong lists."""
    reference_right = np.asarray(reference_right, dtype=bool)
    candidate_right = np.asarray(candidate_right, dtype=bool)
    if reference_right.shape != candidate_right.shape:
        raise DataError("both models must be scored on the same images to pair their accuracies")
    both_right = int(np.sum(reference_right & candidate_right))
    only_reference = int(np.sum(reference_right & ~candidate_right))
    only_candidate = int(np.sum(~reference_right & candidate_right))
    both_wrong = int(np.sum(~reference_right & ~candidate_right))
    n = max(reference_right.size, 1)
    lower, upper = paired_difference_interval(both_right, only_reference, only_candidate, both_wrong, confidence)
    return {
        f"{prefix}_drop": (only_reference - only_candidate) / n,
        f"{prefix}_drop_interval": [lower, upper],
        f"{prefix}_only_original_right": only_reference,
        f"{prefix}_only_optimized_right": only_candidate,
        f"{prefix}_mcnemar_exact_p": mcnemar_exact_p(only_reference, only_candidate),
    }
