"""The statistics every report uses: means with standard errors, binomial errors, paired
differences and one noise-floor object. Numbers only -- the verdicts built on them live in
:mod:`diffusio.papers.verdicts`.

* :func:`mean_se` -- mean and standard error of the mean (sample std with ``ddof=1`` over
  ``sqrt(n)``);
* :func:`binomial_se` -- ``sqrt(p (1 - p) / n)``, the standard error of a proportion;
* :func:`paired_difference` -- mean and standard error of ``a_i - b_i`` over matched pairs
  (same seeds, same data), which removes the noise the two sides share;
* :func:`difference_se` -- the standard error of the difference of two independent estimates,
  ``sqrt(se_a^2 + se_b^2)``;
* :class:`NoiseFloor` -- what an exact model scores on a metric (mean, sd over draws, n): a
  measured value's z-score against it and whether it is "at the floor".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = [
    "NoiseFloor", "binomial_se", "difference_se", "mean_se", "paired_difference",
    "unpaired_difference",
]  # fmt: skip


def _floats(values: Iterable[Any]) -> list[float]:
    out = [float(v) for v in values]
    if not out:
        raise ValueError("need at least one value")
    return out


def mean_se(values: Iterable[Any]) -> tuple[float, float]:
    """``(mean, standard error of the mean)``; the error is ``nan`` for a single value."""
    xs = _floats(values)
    n = len(xs)
    mean = math.fsum(xs) / n
    if n == 1:
        return mean, math.nan
    var = math.fsum((x - mean) ** 2 for x in xs) / (n - 1)
    return mean, math.sqrt(var / n)


def binomial_se(p: float, n: int) -> float:
    """Standard error ``sqrt(p (1 - p) / n)`` of a proportion ``p`` measured on ``n`` trials."""
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"a proportion must lie in [0, 1], got {p}")
    return math.sqrt(p * (1.0 - p) / n)


def difference_se(se_a: float, se_b: float) -> float:
    """Standard error of ``a - b`` for independent estimates: ``sqrt(se_a^2 + se_b^2)``."""
    return math.hypot(float(se_a), float(se_b))


def unpaired_difference(a: Sequence[Any], b: Sequence[Any]) -> tuple[float, float]:
    """``mean(a) - mean(b)`` and its standard error for independent seeds of each (each side's
    error from its own spread, combined by :func:`difference_se`)."""
    (mean_a, se_a), (mean_b, se_b) = mean_se(a), mean_se(b)
    return mean_a - mean_b, difference_se(se_a, se_b)


def paired_difference(a: Sequence[Any], b: Sequence[Any]) -> tuple[float, float]:
    """Mean and standard error of ``a_i - b_i`` over matched pairs (equal lengths)."""
    if len(a) != len(b):
        raise ValueError(f"paired samples need equal lengths, got {len(a)} and {len(b)}")
    return mean_se(float(x) - float(y) for x, y in zip(a, b, strict=True))


@dataclass(frozen=True)
class NoiseFloor:
    """What an exact model scores on a metric at sample size ``n``: ``mean`` (and ``sd``) over
    independent draws of exact sample sets (the held-out data for FID, pairs of exact sets for
    MMD). ``sd = 0`` means one draw (no spread known).

    A measured value is compared by :meth:`z` (how many floor sds above the floor's mean) and
    :meth:`ratio` (value / floor mean); :meth:`at_floor` is ``z <= threshold`` when the spread is
    known, else ``ratio <= 1 + tolerance``.
    """

    mean: float
    sd: float = 0.0
    n: int | None = None

    @classmethod
    def from_draws(cls, draws: Iterable[Any], n: int | None = None) -> NoiseFloor:
        """The floor from independent draws of the metric between exact sets."""
        xs = _floats(draws)
        mean, se = mean_se(xs)
        sd = 0.0 if len(xs) == 1 else se * math.sqrt(len(xs))
        return cls(mean, sd, n)

    def z(self, value: float) -> float:
        """``(value - mean) / sd``; ``nan`` when the spread is unknown."""
        return (float(value) - self.mean) / self.sd if self.sd > 0 else math.nan

    def ratio(self, value: float) -> float:
        """``value / mean``; a floor whose mean is not positive (an unbiased MMD^2 from one pair
        can be) has no meaningful ratio: ValueError."""
        if not self.mean > 0:
            raise ValueError(f"a noise floor of mean {self.mean:g} cannot be a ratio's denominator")
        return float(value) / self.mean

    def at_floor(self, value: float, threshold: float, tolerance: float = 0.25) -> bool:
        """Whether ``value`` is indistinguishable from the floor: ``z <= threshold`` with a
        known spread, else ``ratio <= 1 + tolerance``."""
        if self.sd > 0:
            return self.z(value) <= threshold
        return self.ratio(value) <= 1.0 + tolerance

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
