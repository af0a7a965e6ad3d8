"""The shared statistics, against hand computations."""

import math

import pytest

from diffusio.metrics.stats import (
    NoiseFloor,
    binomial_se,
    difference_se,
    mean_se,
    paired_difference,
)


def test_mean_se_matches_the_formula():
    mean, se = mean_se([1.0, 2.0, 3.0, 6.0])
    assert mean == 3.0
    assert se == pytest.approx(math.sqrt((4 + 1 + 0 + 9) / 3 / 4), rel=1e-15)
    assert math.isnan(mean_se([5.0])[1])
    with pytest.raises(ValueError, match="at least one"):
        mean_se([])


def test_binomial_and_difference_se():
    assert binomial_se(0.25, 100) == pytest.approx(math.sqrt(0.25 * 0.75 / 100), rel=1e-15)
    assert binomial_se(1.0, 10) == 0.0
    with pytest.raises(ValueError, match="proportion"):
        binomial_se(1.5, 10)
    assert difference_se(3.0, 4.0) == 5.0


def test_paired_difference_removes_shared_noise():
    a, b = [10.0, 20.0, 30.0], [9.0, 19.5, 28.5]
    mean, se = paired_difference(a, b)
    assert mean == pytest.approx(1.0) and se == pytest.approx(mean_se([1.0, 0.5, 1.5])[1])
    with pytest.raises(ValueError, match="equal lengths"):
        paired_difference([1.0], [1.0, 2.0])


def test_noise_floor_z_ratio_and_at_floor():
    floor = NoiseFloor.from_draws([1.0, 3.0], n=100)
    assert floor.mean == 2.0 and floor.sd == pytest.approx(math.sqrt(2.0)) and floor.n == 100
    assert floor.z(2.0 + 2 * math.sqrt(2.0)) == pytest.approx(2.0)
    assert floor.at_floor(4.0, threshold=2.0) and not floor.at_floor(5.0, threshold=2.0)
    single = NoiseFloor(8.0)  # no spread known: the ratio decides
    assert math.isnan(single.z(9.0)) and single.ratio(10.0) == 1.25
    assert single.at_floor(10.0, threshold=2.0, tolerance=0.25)
    assert not single.at_floor(10.1, threshold=2.0, tolerance=0.25)
    with pytest.raises(ValueError, match="cannot be a ratio"):  # would make every value "at floor"
        NoiseFloor(-1e-4).at_floor(5.0, threshold=2.0)
