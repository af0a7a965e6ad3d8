"""The verdict rules every reproduction uses, with one significance constant.

A claim's verdict is one of :data:`VERDICTS`. The shared rule: **a difference within the noise
is not a win**. A measured difference ``d`` with standard error ``se`` counts when
``|d| > SIGNIFICANCE * se``; where the error is unknown (``nan``) no difference counts as clear.

* :func:`compare` -- +1 / 0 / -1: clearly better, within the noise, clearly worse;
* :func:`win_verdict` -- "A beats B": clearly (reproduced), in the right direction but within
  the noise (partly), or not;
* :func:`tally_verdict` -- many comparisons of one claim: all clear wins (reproduced), some wins
  and no clear loss (partly), else not;
* :func:`threshold_verdict` -- a lower-is-better quantity against a "good" and a "fair" bound;
* :func:`floor_verdict` -- a metric against its :class:`~diffusio.metrics.stats.NoiseFloor`: at
  the floor (reproduced), within :data:`FLOOR_PARTLY` times it (partly), or not.

Statistics (means, standard errors, floors) live in :mod:`diffusio.metrics.stats`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..metrics.stats import NoiseFloor

__all__ = [
    "FLOOR_PARTLY", "FLOOR_RATIO", "NOT", "PARTLY", "REPRODUCED", "SIGNIFICANCE", "VERDICTS",
    "at_floor", "clear", "compare", "floor_verdict", "noise_margin", "tally_verdict",
    "threshold_verdict", "win_verdict",
]  # fmt: skip

REPRODUCED, PARTLY, NOT = "reproduced", "partly reproduced", "not reproduced"
#: How a measured result relates to the paper's claim.
VERDICTS = (REPRODUCED, PARTLY, NOT)

#: A difference is clear beyond this many standard errors (of the difference itself).
SIGNIFICANCE = 2.0
#: With no known spread of the floor, a value within this factor of it is "at the floor".
FLOOR_RATIO = 1.25
#: ... and within this factor "near" it (partly reproduced).
FLOOR_PARTLY = 2.0


def _se(se: float) -> float:
    return float(se) if math.isfinite(float(se)) else math.inf


def noise_margin(se: float) -> float:
    """How far a difference may go against a claim and still be "within the noise":
    ``SIGNIFICANCE * se``, or 0 when the error is unknown (nothing is excused by it)."""
    return SIGNIFICANCE * float(se) if math.isfinite(float(se)) else 0.0


def clear(diff: float, se: float) -> bool:
    """Whether ``|diff|`` exceeds :data:`SIGNIFICANCE` standard errors (unknown se: never)."""
    return abs(float(diff)) > SIGNIFICANCE * _se(se)


def compare(better_by: float, se: float) -> int:
    """+1 if ``better_by`` (the amount by which the claimed winner is better) is a clear
    positive difference, -1 a clear negative one, 0 within the noise."""
    if not clear(better_by, se):
        return 0
    return 1 if better_by > 0 else -1


def win_verdict(better_by: float, se: float) -> str:
    """The claimed winner is better by ``better_by`` (standard error ``se``): clearly
    (reproduced), within the noise but in the right direction (partly), or not at all."""
    if compare(better_by, se) == 1:
        return REPRODUCED
    return PARTLY if better_by > 0 else NOT


def tally_verdict(outcomes: Sequence[int]) -> str:
    """Outcomes of :func:`compare` for one claim: all clear wins, some wins and no clear loss,
    or anything else."""
    if outcomes and all(o == 1 for o in outcomes):
        return REPRODUCED
    if any(o == 1 for o in outcomes) and not any(o == -1 for o in outcomes):
        return PARTLY
    return NOT


def threshold_verdict(value: float, good: float, fair: float) -> str:
    """A lower-is-better ``value``: at most ``good`` (reproduced), ``fair`` (partly), else not."""
    if value <= good:
        return REPRODUCED
    return PARTLY if value <= fair else NOT


def at_floor(value: float, floor: NoiseFloor) -> bool:
    """Whether a lower-is-better ``value`` is indistinguishable from what exact samples score:
    within :data:`SIGNIFICANCE` floor sds, or :data:`FLOOR_RATIO` times the floor when no
    spread is known."""
    return floor.at_floor(value, SIGNIFICANCE, FLOOR_RATIO - 1.0)


def floor_verdict(value: float, floor: NoiseFloor) -> str:
    """A lower-is-better metric against what exact samples score: at the floor (within
    :data:`SIGNIFICANCE` floor sds, or :data:`FLOOR_RATIO` times it when no spread is known),
    within :data:`FLOOR_PARTLY` times it, or farther."""
    if at_floor(value, floor):
        return REPRODUCED
    return PARTLY if floor.ratio(value) <= FLOOR_PARTLY else NOT
