"""csdi-2021's own logic: the per-window score sums against the metric functions they pool, the
exact-Gaussian scores against their closed forms, the paired margins, and the claim rules'
boundaries. (The smoke run is the contract test's.)"""

import math

import numpy as np
import pytest
import torch

from diffusio.metrics.probabilistic import (
    crps_ensemble,
    crps_quantile,
    interval_coverage,
    median_errors,
)
from diffusio.papers import csdi_2021 as paper
from diffusio.papers.base import parse_overrides
from diffusio.papers.verdicts import NOT, PARTLY, REPRODUCED, RULES


def _problem(seed=0, s=7, n=5, k=3, length=6):
    g = torch.Generator().manual_seed(seed)
    truth = torch.randn(n, k, length, generator=g, dtype=torch.float64) + 0.3
    samples = truth + torch.randn(s, n, k, length, generator=g, dtype=torch.float64)
    targets = torch.rand(n, k, length, generator=g) < 0.5
    return samples, truth, targets


def test_window_sums_pool_to_the_metrics():
    samples, truth, targets = _problem()
    w = paper.score_windows(samples, truth, targets)
    t = paper.totals(w)
    assert math.isclose(t["crps"], crps_quantile(samples, truth, targets), rel_tol=1e-12)
    fair = crps_ensemble(samples, truth, fair=True)[targets].sum() / truth[targets].abs().sum()
    assert math.isclose(t["fair"], float(fair), rel_tol=1e-12)
    assert math.isclose(t["mae"], median_errors(samples, truth, targets)["mae"], rel_tol=1e-12)
    assert math.isclose(t["coverage"], interval_coverage(samples, truth, targets), rel_tol=1e-12)
    assert w["n"].tolist() == targets.sum(dim=(1, 2)).tolist()  # one sum per window


def test_exact_gaussian_scores_have_the_closed_form_ratio():
    """For y ~ N(mu, sd^2) the 19-level CRPS of the exact quantiles over the exact CRPS is
    1.0483 in expectation (probabilistic.crps_quantile's docstring); the coverage of the exact
    90% interval is 0.9. Tolerances: 4 standard errors of each estimate."""
    g = torch.Generator().manual_seed(1)
    n, k, length = 400, 5, 50
    mu = torch.randn(n, k, length, generator=g, dtype=torch.float64)
    sd = 0.5 + torch.rand(n, k, length, generator=g, dtype=torch.float64)
    y = mu + sd * torch.randn(n, k, length, generator=g, dtype=torch.float64)
    w = paper.gaussian_windows(mu, sd, y, torch.ones_like(y).bool())
    levels = torch.tensor(paper.CSDI_LEVELS, dtype=torch.float64)
    expected = math.sqrt(math.pi) * 2 / 19 * float(torch.exp(-0.5 * torch.special.ndtri(levels) ** 2)
                                                   .sum() / math.sqrt(2 * math.pi))  # fmt: skip
    assert abs(expected - 1.0483) < 1e-4
    ratio = w["q"].sum() / w["fair"].sum()
    d = w["q"] - expected * w["fair"]  # per window; mean 0 when the ratio is `expected`
    se = d.std(ddof=1) * math.sqrt(n) / w["fair"].sum()
    assert abs(ratio - expected) < 4 * se
    cover = w["cover"].sum() / w["n"].sum()
    assert abs(cover - 0.9) < 4 * math.sqrt(0.09 / (n * k * length))
    assert np.allclose(w["abs"], (mu - y).abs().sum(dim=(1, 2)).numpy())


def test_margin_is_the_paired_difference_of_pooled_scores():
    samples, truth, targets = _problem(n=9)
    a = paper.score_windows(samples, truth, targets)
    b = paper.score_windows(samples * 1.3, truth, targets)
    m, se = paper.margin(a, b, "q", 0.8)
    assert math.isclose(m, (0.8 * b["q"].sum() - a["q"].sum()) / a["den"].sum(), rel_tol=1e-12)
    d = 0.8 * b["q"] - a["q"]
    assert math.isclose(se, d.std(ddof=1) * math.sqrt(len(d)) / a["den"].sum(), rel_tol=1e-9)
    m_abs, _ = paper.margin(a, b, "abs")  # MAE margins are per target, not per sum |y|
    assert math.isclose(m_abs, (b["abs"].sum() - a["abs"].sum()) / a["n"].sum(), rel_tol=1e-12)
    assert paper.margin(a, a) == (0.0, 0.0)


def test_bounded_rules_count_the_noise():
    rule = RULES["csdi-2021/oracle"]
    assert rule(values=[1.15], ses=[0.1], bounds=[1.15]) == REPRODUCED  # at the bound
    assert rule(values=[1.3], ses=[0.1], bounds=[1.15]) == NOT  # within 2 se of it is no pass,
    assert rule(values=[1.1, 1.3], ses=[0.1, 0.1], bounds=[1.15] * 2) == PARTLY  # but no clear miss
    assert rule(values=[1.4], ses=[0.1], bounds=[1.15]) == NOT
    assert rule(values=[1.1, 1.4], ses=[0.1, 0.1], bounds=[1.15, 1.15]) == NOT  # one clear miss
    coverage = RULES["csdi-2021/coverage"]  # the distance outside [0.85, 0.95]
    assert coverage(values=[-0.05, 0.01], ses=[0.01, 0.01], bounds=[0.0, 0.0]) == PARTLY


def test_tally_rules():
    rule = RULES["csdi-2021/mean"]
    assert rule(margins=[0.1, 0.1], ses=[0.01, 0.01]) == REPRODUCED
    assert rule(margins=[0.1, 0.01], ses=[0.01, 0.01]) == PARTLY  # one within the noise
    assert rule(margins=[0.1, -0.1], ses=[0.01, 0.01]) == NOT
    assert {f"csdi-2021/{k.replace(' ', '-')}" for k in paper.TALLY} <= set(RULES)


def test_sampler_and_weather_settings_parse():
    values = parse_overrides(paper.Settings, ['sampler=["ddpm",50]', "weather={}"])
    assert values == {"sampler": ("ddpm", 50), "weather": {}}
    with pytest.raises(ValueError, match="sampler"):
        parse_overrides(paper.Settings, ['sampler=["ddpm"]'])
    quick = paper.CSDI2021.settings(True)
    assert not quick.weather and not quick.ablation and quick.rates == (0.5,)
