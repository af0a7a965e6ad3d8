"""The shared verdict rules: one significance constant, a difference within the noise is not a
clear win."""

import math

import pytest

from diffusio.metrics.stats import NoiseFloor
from diffusio.papers.verdicts import (
    FLOOR_PARTLY,
    NOT,
    PARTLY,
    REPRODUCED,
    SIGNIFICANCE,
    compare,
    floor_verdict,
    noise_margin,
    tally_verdict,
    threshold_verdict,
    win_verdict,
)


def test_compare_and_win_verdict_at_the_significance_boundary():
    se = 0.5
    edge = SIGNIFICANCE * se
    assert compare(edge * 1.01, se) == 1 and compare(-edge * 1.01, se) == -1
    assert compare(edge, se) == 0  # exactly at the boundary is within the noise
    assert compare(10.0, math.nan) == 0  # unknown error: nothing is clear
    assert win_verdict(edge * 1.01, se) == REPRODUCED
    assert win_verdict(edge * 0.5, se) == NOT  # within the noise: not shown, never partly
    assert win_verdict(-0.1, se) == NOT


def test_tally_and_threshold():
    assert tally_verdict([1, 1]) == REPRODUCED
    assert tally_verdict([1, 0]) == PARTLY
    assert tally_verdict([1, -1]) == NOT and tally_verdict([]) == NOT
    assert threshold_verdict(1.0, 1.0, 2.0) == REPRODUCED
    assert threshold_verdict(1.5, 1.0, 2.0) == PARTLY
    assert threshold_verdict(2.5, 1.0, 2.0) == NOT


def test_floor_verdict_uses_the_spread_when_known():
    spread = NoiseFloor(10.0, sd=1.0)
    assert floor_verdict(10.0 + SIGNIFICANCE, spread) == REPRODUCED
    assert floor_verdict(10.0 + SIGNIFICANCE + 0.1, spread) == PARTLY
    assert floor_verdict(10.0 * FLOOR_PARTLY + 0.1, spread) == NOT
    single = NoiseFloor(8.0)
    assert floor_verdict(10.0, single) == REPRODUCED  # 1.25x
    assert floor_verdict(12.0, single) == PARTLY
    assert floor_verdict(16.1, single) == NOT


def test_noise_margin_excuses_nothing_when_the_error_is_unknown():
    assert noise_margin(0.5) == SIGNIFICANCE * 0.5
    assert noise_margin(math.nan) == 0.0


def test_overall_status_counts_main_claims_only():
    from diffusio.papers.verdicts import overall_status

    main = {"verdict": REPRODUCED}
    ours = {"verdict": NOT, "main": False}
    assert overall_status([main, ours]) == REPRODUCED
    assert overall_status([main, {"verdict": PARTLY}]) == PARTLY
    assert overall_status([main, {"verdict": NOT}]) == PARTLY
    assert overall_status([{"verdict": NOT}, ours]) == NOT
    assert overall_status([ours]) == "missing"


def test_seeded_difference_uses_both_spreads():
    import math

    from diffusio.metrics.stats import unpaired_difference

    diff, se = unpaired_difference([1.0, 2.0, 3.0], [0.0, 1.0, 2.0])
    assert diff == pytest.approx(1.0)
    assert se == pytest.approx(math.sqrt(2) * (1.0 / math.sqrt(3)))  # sd 1, 3 seeds, each side
