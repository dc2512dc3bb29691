"""The accuracy rule: is an optimized model accurate enough? One module, used by validate, run and tune.

Two questions, each with its defaults here and nowhere else (README, "The accuracy rule"):

1. Does the model compute the same thing (``Criteria``, validate's pass/fail)? Per precision,
   element tolerances, the share of elements that must meet them, and the share of samples
   whose top-1 class must match the original's (``DEFAULT_CRITERIA``; the table is in the README).
2. Is it accurate enough to use instead of the original (``Budget``)? With labelled images
   the top-1 accuracy drop must stay <= ``DEFAULT_MAX_TOP1_DROP`` (0.005 = half a point);
   without labels, top-1 agreement with the original must be >= ``DEFAULT_MIN_TOP1_AGREEMENT``.
   ``tune`` chooses inside it, ``run`` rejects an int8 model outside it, and ``validate``
   fails a model outside the budget it is given (``max_top1_drop``/``min_top1_agreement``).

The defaults are read when a rule is made (``Budget.for_data``), so changing them here
changes every job that judges accuracy.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Optional

from tftrt_toolkit.errors import ConfigError

# The budget when none is given: with labels, the accuracy drop; without, agreement with the original.
DEFAULT_MAX_TOP1_DROP = 0.005
DEFAULT_MIN_TOP1_AGREEMENT = 0.99
# Agreement and accuracy are ratios of counts; this absorbs float error (e.g. 0.99 vs 99/100).
EPSILON = 1e-9


@dataclasses.dataclass(frozen=True)
class Criteria:
    """What passing means: element tolerances, the share of elements that must meet them, top-1 agreement."""

    rtol: float
    atol: float
    min_within_tolerance: float  # share of output elements, 0..1
    min_top1_agreement: float  # share of samples, 0..1; classifier outputs only

    def __post_init__(self):
        for name in ("rtol", "atol"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
                raise ConfigError(f"{name}={value!r} is not valid; use a number >= 0 (e.g. 1e-4).")
        for name in ("min_within_tolerance", "min_top1_agreement"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name}={value!r} is not valid; use a share between 0 and 1 (e.g. 0.99).")

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


DEFAULT_CRITERIA: Dict[str, Criteria] = {
    "fp32": Criteria(rtol=1e-4, atol=1e-4, min_within_tolerance=1.0, min_top1_agreement=1.0),
    "fp16": Criteria(rtol=1e-2, atol=1e-2, min_within_tolerance=0.99, min_top1_agreement=0.99),
    "bf16": Criteria(rtol=5e-2, atol=5e-2, min_within_tolerance=0.95, min_top1_agreement=0.9),
    "int8": Criteria(rtol=1e-1, atol=1e-1, min_within_tolerance=0.9, min_top1_agreement=0.9),
}


def criteria_for(precision: Optional[str], *, rtol: Optional[float] = None, atol: Optional[float] = None,
                 min_within_tolerance: Optional[float] = None, min_top1_agreement: Optional[float] = None) -> Criteria:
    """The precision's default criteria with any given values in place (see the module docstring)."""
    base = DEFAULT_CRITERIA.get((precision or "fp32").lower(), DEFAULT_CRITERIA["fp32"])
    if min_within_tolerance is None:
        # Tolerances the user chose are meant as a hard limit on every element.
        min_within_tolerance = 1.0 if (rtol is not None or atol is not None) else base.min_within_tolerance
    return Criteria(
        rtol=base.rtol if rtol is None else rtol,
        atol=base.atol if atol is None else atol,
        min_within_tolerance=min_within_tolerance,
        min_top1_agreement=base.min_top1_agreement if min_top1_agreement is None else min_top1_agreement,
    )


@dataclasses.dataclass(frozen=True)
class Budget:
    """The accuracy budget: top-1 agreement with the original >= limit, or top-1 accuracy drop <= limit (labels)."""

    metric: str  # "top1_agreement" or "top1_drop"
    limit: float

    @classmethod
    def from_args(cls, max_top1_drop: Optional[float] = None, min_top1_agreement: Optional[float] = None) -> "Budget":
        """Exactly one of the two, a share between 0 and 1; ConfigError otherwise."""
        if (max_top1_drop is None) == (min_top1_agreement is None):
            raise ConfigError("give exactly one accuracy budget: max_top1_drop (needs labels, e.g. 0.005) "
                              "or min_top1_agreement (e.g. 0.99).")
        name, value = (("max_top1_drop", max_top1_drop) if max_top1_drop is not None
                       else ("min_top1_agreement", min_top1_agreement))
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise ConfigError(f"{name}={value!r} is not valid; use a share between 0 and 1 (e.g. 0.005 = half a point, 0.99 = 99%).")
        return cls("top1_drop" if name == "max_top1_drop" else "top1_agreement", float(value))

    @classmethod
    def for_data(cls, labelled: bool, *, max_top1_drop: Optional[float] = None,
                 min_top1_agreement: Optional[float] = None) -> "Budget":
        """The budget given (at most one of the two), else the default for the data.

        Default: ``DEFAULT_MAX_TOP1_DROP`` when the images are ``labelled`` (the question is
        accuracy), else ``DEFAULT_MIN_TOP1_AGREEMENT``. A drop needs labels: ConfigError otherwise.
        """
        if max_top1_drop is None and min_top1_agreement is None:
            if labelled:
                max_top1_drop = DEFAULT_MAX_TOP1_DROP
            else:
                min_top1_agreement = DEFAULT_MIN_TOP1_AGREEMENT
        budget = cls.from_args(max_top1_drop, min_top1_agreement)
        if budget.metric == "top1_drop" and not labelled:
            raise ConfigError("max_top1_drop needs ground truth: pass labels_csv (image,class_id) or a data folder whose "
                              "image names carry ImageNet WordNet ids, or use min_top1_agreement to compare with the "
                              "original's answers instead.")
        return budget

    def within(self, values: dict) -> Optional[bool]:
        """Whether ``values`` (``{"top1_agreement": ..., "top1_drop": ...}``) are inside; None when there is nothing to judge."""
        shortfall = self.shortfall(values)
        return None if shortfall is None else shortfall <= EPSILON

    def failure(self, values: dict) -> Optional[str]:
        """Why ``values`` are outside the budget, in one line; None when inside or not judged."""
        if self.within(values) is not False:
            return None
        return f"{value_text(self, values)} is outside the budget ({self.describe()})"

    @property
    def higher_is_better(self) -> bool:
        return self.metric == "top1_agreement"

    def shortfall(self, row: dict) -> Optional[float]:
        """How far ``row`` misses the budget (<= 0: inside); None when the row has no value to judge."""
        value = row.get(self.metric)
        if value is None:
            return None
        return self.limit - value if self.higher_is_better else value - self.limit

    def quality(self, row: dict) -> Optional[float]:
        """Higher is better: agreement, or minus the drop."""
        value = row.get(self.metric)
        return None if value is None else (value if self.higher_is_better else -value)

    def describe(self) -> str:
        if self.higher_is_better:
            return f"top-1 agreement >= {self.limit:.1%}"
        return f"top-1 accuracy drop <= {self.limit * 100:.2g} points"

    def as_kwargs(self) -> dict:
        """The budget as ``choose``'s keyword argument."""
        return {"min_top1_agreement" if self.higher_is_better else "max_top1_drop": self.limit}

    def to_json(self) -> dict:
        return {"metric": self.metric, "limit": self.limit, "text": self.describe()}


def value_text(budget: Budget, row: dict) -> str:
    value = row.get(budget.metric)
    if value is None:
        return "no value"
    if budget.higher_is_better:
        return f"top-1 agreement {value:.1%}"
    return f"top-1 drop {value * 100:.2g} points"


