"""The verdict rules every reproduction uses, with one significance constant.

A claim's verdict is one of :data:`VERDICTS`. The shared rule: **a difference within the noise
is not a win**. A measured difference ``d`` with standard error ``se`` counts when
``|d| > SIGNIFICANCE * se``; where the error is unknown (``nan``) no difference counts as clear.

* :func:`compare` -- +1 / 0 / -1: clearly better, within the noise, clearly worse;
* :func:`win_verdict` -- "A beats B": clearly (reproduced), or not shown (not reproduced; a
  difference within the noise is never a partial win);
* :func:`tally_verdict` -- many comparisons of one claim: all clear wins (reproduced), some wins
  and no clear loss (partly), else not;
* :func:`threshold_verdict` -- a lower-is-better quantity against a "good" and a "fair" bound;
* :func:`floor_verdict` -- a metric against its :class:`~diffusio.metrics.stats.NoiseFloor`: at
  the floor (reproduced), within :data:`FLOOR_PARTLY` times it (partly), or not.

Statistics (means, standard errors, floors) live in :mod:`diffusio.metrics.stats`. A headline
measured over seeds is their mean with its standard error (:func:`~diffusio.metrics.stats.mean_se`,
at least :data:`MIN_SEEDS` seeds), and the difference of two such estimates has the standard error
``sqrt(se_a**2 + se_b**2)`` (:func:`~diffusio.metrics.stats.difference_se`): for two single seeds
of equal spread ``sd`` that is ``sqrt(2) sd``, so a clear difference exceeds ``2 sqrt(2) sd``.

**Every claim's rule can fail.** A reproduction judges each claim with a :class:`Rule`: a pure
function of named numbers, registered with :func:`claim_rule` together with numbers that support
the claim and numbers that contradict it. ``tests/test_claim_rules.py`` checks that every
registered rule returns :data:`REPRODUCED` on the first and :data:`NOT` on the second, and the
contract test that every claim in a report was judged by a registered rule (the verdict a rule
returns is a :class:`Verdict`, which remembers the rule's name).

:func:`overall_status` turns a report's claims into the reproduction's status (what
``diffusio list`` shows): reproduced only when every main claim is.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # keeps this module (and `diffusio list`, which reads statuses) free of torch
    from ..metrics.stats import NoiseFloor

__all__ = [
    "FLOOR_PARTLY", "FLOOR_RATIO", "MIN_SEEDS", "NOT", "PARTLY", "REPRODUCED", "RULES",
    "SIGNIFICANCE", "VERDICTS", "Rule", "Verdict", "at_floor", "claim_rule", "clear", "compare",
    "floor_verdict", "noise_margin", "overall_status", "seed_mean", "shown", "tally_verdict",
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
#: The fewest seeds a seed spread (a headline's standard error) is measured from.
MIN_SEEDS = 5


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
    """The claimed winner is better by ``better_by`` (standard error ``se`` of the difference):
    clearly (reproduced), or not shown -- within the noise or worse (not reproduced)."""
    return REPRODUCED if compare(better_by, se) == 1 else NOT


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


def seed_mean(values: Sequence[float]) -> tuple[float, float]:
    """A headline over seeds: their mean and its standard error, the error nan (no spread is
    known, so nothing is judged on it) below :data:`MIN_SEEDS` seeds."""
    from ..metrics.stats import mean_se

    mean, se = mean_se(values)
    return mean, se if len(values) >= MIN_SEEDS else math.nan


def shown(diff: float, se: float) -> str:
    """How a claimed improvement ``diff`` (standard error ``se``) reads against the noise:
    "clear", "not shown (within noise)", "the opposite, clearly" or "not shown (noise unknown)"."""
    words = ("not shown (within noise)", "clear", "the opposite, clearly")
    return words[compare(diff, se)] if math.isfinite(float(se)) else "not shown (noise unknown)"


# --------------------------------------------------------------------------- claim rules
class Verdict(str):
    """A verdict string that remembers which registered :class:`Rule` produced it."""

    rule: str | None = None

    def __new__(cls, value: str, rule: str | None = None) -> Verdict:
        if value not in VERDICTS:
            raise ValueError(f"unknown verdict {value!r}; valid: {', '.join(VERDICTS)}")
        out = super().__new__(cls, value)
        out.rule = rule
        return out


@dataclass(frozen=True)
class Rule:
    """A claim's verdict as a pure function of named numbers (``judge``), registered under
    ``name`` (``"<reproduction>/<claim>"``) with numbers that ``supports`` the claim and numbers
    that ``contradicts`` it: the rule must return reproduced on the first and not reproduced on
    the second, so it can both pass and fail."""

    name: str
    judge: Callable[..., str]
    supports: Mapping[str, Any] = field(default_factory=dict)
    contradicts: Mapping[str, Any] = field(default_factory=dict)

    def __call__(self, **numbers: Any) -> Verdict:
        return Verdict(self.judge(**numbers), self.name)


#: Every registered claim rule by name (filled when the paper modules are imported).
RULES: dict[str, Rule] = {}


def claim_rule(
    name: str, *, supports: Mapping[str, Any], contradicts: Mapping[str, Any]
) -> Callable[[Callable[..., str]], Rule]:
    """Register the decorated verdict function as the :class:`Rule` ``name``."""

    def register(judge: Callable[..., str]) -> Rule:
        rule = Rule(name, judge, dict(supports), dict(contradicts))
        RULES[name] = rule
        return rule

    return register


def overall_status(claims: Iterable[Mapping[str, Any]]) -> str:
    """A reproduction's status from its report's claims (dicts with ``verdict`` and ``main``,
    default True): reproduced when every main claim is, not reproduced when none is even
    partly, else partly; ``missing`` when there are no main claims."""
    main = [c["verdict"] for c in claims if c.get("main", True)]
    if not main:
        return "missing"
    if all(v == REPRODUCED for v in main):
        return REPRODUCED
    if all(v == NOT for v in main):
        return NOT
    return PARTLY
