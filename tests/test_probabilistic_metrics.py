"""Probabilistic forecast metrics against closed forms, scoringrules and written-out definitions.

Tolerances: float64 round-off where the two sides compute the same number, otherwise a
Monte-Carlo standard error computed from the draws in the test (5 se; 4 se for binomials).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from diffusio.metrics import probabilistic
from diffusio.metrics.probabilistic import (
    CSDI_LEVELS,
    crps_ensemble,
    crps_gaussian,
    crps_quantile,
    crps_sum_quantile,
    energy_score,
    interval_coverage,
    median_errors,
    sample_quantiles,
)

sr = pytest.importorskip("scoringrules")
stats = pytest.importorskip("scipy.stats")
integrate = pytest.importorskip("scipy.integrate")

LEVELS = np.arange(1, 20) / 20


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _pinball2(y: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """2 rho_q(y - Q) per level (axis 0), written from the definition."""
    q = LEVELS.reshape((-1,) + (1,) * y.ndim)
    u = y[None] - quantiles
    return 2.0 * np.where(u >= 0, q * u, (q - 1.0) * u)


# ------------------------------------------------------------------ quantile rule
@pytest.mark.parametrize("s", [1, 2, 5, 100])
def test_sample_quantiles_follow_torch_quantile(s):
    x = torch.as_tensor(_rng(s).standard_normal((s, 7, 3)))
    ours = sample_quantiles(x, CSDI_LEVELS)
    ref = torch.quantile(x, torch.tensor(CSDI_LEVELS, dtype=torch.float64), dim=0)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-15)
    np.testing.assert_allclose(ours.numpy(), np.quantile(x.numpy(), LEVELS, axis=0), atol=1e-14)


# ------------------------------------------------------------------ exact ensemble CRPS
def _crps_pairs(x: np.ndarray, y: np.ndarray, fair: bool) -> np.ndarray:
    """E|X - y| - 1/2 E|X - X'|, the O(S^2) pair sum written out (samples on axis 0)."""
    s = x.shape[0]
    pair = np.abs(x[:, None] - x[None, :]).sum(axis=(0, 1))
    return np.abs(x - y).mean(0) - pair / (2 * (s * (s - 1) if fair else s * s))


@pytest.mark.parametrize("s", [2, 7, 50])
def test_crps_ensemble_matches_scoringrules_and_pair_sum(s):
    rng = _rng(10 + s)
    x = 2.0 + 3.0 * rng.standard_normal((s, 4, 6))
    y = 2.0 + 3.0 * rng.standard_normal((4, 6))
    for fair, estimator in ((False, "nrg"), (True, "fair")):
        ours = crps_ensemble(x, y, fair=fair).numpy()
        ref = sr.crps_ensemble(y, x, m_axis=0, estimator=estimator, backend="numpy")
        np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(ours, _crps_pairs(x, y, fair), rtol=1e-10, atol=1e-12)


def test_crps_ensemble_single_sample_is_absolute_error():
    x, y = _rng(1).standard_normal((1, 5)), _rng(2).standard_normal(5)
    np.testing.assert_allclose(crps_ensemble(x, y).numpy(), np.abs(x[0] - y), rtol=0, atol=0)
    with pytest.raises(ValueError, match="at least 2 samples"):
        crps_ensemble(x, y, fair=True)


# ------------------------------------------------------------------ Gaussian closed form
def _crps_by_quadrature(mu: float, sigma: float, y: float) -> float:
    """int (F(t) - 1{t >= y})^2 dt, split at y."""
    left, _ = integrate.quad(lambda t: stats.norm.cdf(t, mu, sigma) ** 2, -np.inf, y,
                             epsabs=1e-13, epsrel=1e-12)  # fmt: skip
    right, _ = integrate.quad(lambda t: stats.norm.sf(t, mu, sigma) ** 2, y, np.inf,
                              epsabs=1e-13, epsrel=1e-12)  # fmt: skip
    return left + right


def test_crps_gaussian_matches_scoringrules_and_quadrature():
    mu = np.array([0.0, 1.0, -2.0, 5.0, 0.3])
    sigma = np.array([1.0, 0.5, 2.0, 3.0, 0.1])
    y = np.array([0.0, 2.5, -2.1, -4.0, 0.9])  # includes a 6-sigma miss
    ours = crps_gaussian(mu, sigma, y).numpy()
    np.testing.assert_allclose(ours, sr.crps_normal(y, mu, sigma, backend="numpy"), rtol=1e-12)
    quad = [_crps_by_quadrature(*args) for args in zip(mu, sigma, y, strict=True)]
    np.testing.assert_allclose(ours, quad, rtol=0, atol=1e-8)
    # the std -> 0 limit is the absolute error; broadcasting works
    np.testing.assert_array_equal(crps_gaussian(1.0, 0.0, y).numpy(), np.abs(y - 1.0))
    with pytest.raises(ValueError, match="non-negative"):
        crps_gaussian(0.0, -1.0, 0.0)


def test_fair_crps_is_unbiased_and_plain_biased_by_spread_over_2s():
    # E fair = CRPS(F, y); E plain = CRPS + E|X - X'| / (2 S) = CRPS + sigma / (sqrt(pi) S)
    s, reps, mu, sigma = 4, 20_000, 1.0, 2.0
    y = np.array([-3.0, 0.0, 1.0, 2.5, 7.0])
    x = mu + sigma * _rng(3).standard_normal((s, reps, y.size))
    target = np.broadcast_to(y, (reps, y.size))
    exact = crps_gaussian(mu, sigma, y).numpy()
    for fair, offset in ((True, 0.0), (False, sigma / (math.sqrt(math.pi) * s))):
        scores = crps_ensemble(x, target, fair=fair).numpy()
        mean, se = scores.mean(0), scores.std(0, ddof=1) / math.sqrt(reps)
        assert np.all(np.abs(mean - exact - offset) <= 5 * se), (fair, mean, exact, se)


# ------------------------------------------------------------------ energy score
def test_energy_score_matches_scoringrules(monkeypatch):
    s, b = 9, 6
    rng = _rng(4)
    x, y = rng.standard_normal((s, b, 3, 4)), rng.standard_normal((b, 3, 4))
    fct = np.moveaxis(x.reshape(s, b, 12), 0, 1)  # (B, M, D)
    for fair, estimator in ((False, "nrg"), (True, "fair")):
        ref = sr.es_ensemble(y.reshape(b, 12), fct, estimator=estimator, backend="numpy")
        ours = energy_score(x, y, fair=fair, reduction="none").numpy()
        np.testing.assert_allclose(ours, ref, rtol=1e-10)
        assert energy_score(x, y, fair=fair) == pytest.approx(ref.mean(), rel=1e-10)
    # with a mask: each window's vector is its masked entries (different lengths per window)
    mask = rng.random((b, 3, 4)) < 0.4
    mask[0] = False
    mask[1, 0, 0] = True
    ours = energy_score(x, y, mask, reduction="none").numpy()
    assert np.isnan(ours[0])
    ref = [sr.es_ensemble(y[i][mask[i]], x[:, i][:, mask[i]], backend="numpy")
           for i in range(1, b)]  # fmt: skip
    np.testing.assert_allclose(ours[1:], ref, rtol=1e-10)
    assert energy_score(x, y, mask) == pytest.approx(np.mean(ref), rel=1e-10)
    # the pair sums in blocks of one window give the same numbers
    whole = energy_score(x, y, mask, reduction="none")
    monkeypatch.setattr(probabilistic, "_PAIR_ELEMENTS", 1)
    torch.testing.assert_close(energy_score(x, y, mask, reduction="none"), whole,
                               rtol=1e-15, atol=0, equal_nan=True)  # fmt: skip


def test_energy_score_in_one_dimension_is_crps():
    x, y = _rng(5).standard_normal((11, 30)), _rng(6).standard_normal(30)
    for fair in (False, True):
        crps = crps_ensemble(x, y, fair=fair).numpy()
        np.testing.assert_allclose(energy_score(x, y, fair=fair, reduction="none").numpy(), crps,
                                   rtol=1e-10, atol=1e-13)  # fmt: skip
        assert energy_score(x[..., None], y[:, None], fair=fair) == pytest.approx(crps.mean(),
                                                                                  rel=1e-10)


# ------------------------------------------------------------------ CSDI's CRPS
def test_crps_quantile_is_the_written_out_definition():
    rng = _rng(7)
    x, y = rng.standard_normal((20, 5, 8)), rng.standard_normal((5, 8))
    mask = rng.random((5, 8)) < 0.5
    quantiles = np.quantile(x, LEVELS, axis=0)  # numpy's "linear" rule = torch.quantile's
    per_level = (_pinball2(y, quantiles) * mask).sum(axis=(1, 2)) / np.abs(y * mask).sum()
    assert crps_quantile(x, y, mask) == pytest.approx(per_level.mean(), rel=1e-12)


def _calibrated_gaussian(n: int, s: int, seed: int, mu: float = 3.0, sigma: float = 1.5):
    """Targets on a stratified grid of N(mu, sigma) (so sums over them are near-exact
    expectations) and S independent exact predictive samples per target."""
    y = mu + sigma * stats.norm.ppf((np.arange(n) + 0.5) / n)
    x = mu + sigma * _rng(seed).standard_normal((s, n))
    exact_q = mu + sigma * stats.norm.ppf(LEVELS)[:, None]
    # second-order excess of sample quantiles: mean_q f(Q_q) Var(Q^_q), Var = q(1-q)/(S f^2)
    f_q = stats.norm.pdf(stats.norm.ppf(LEVELS)) / sigma
    excess = float(np.mean(LEVELS * (1 - LEVELS) / (s * f_q)))
    return x, y, exact_q, excess


def test_crps_quantile_approaches_the_exact_quantile_discretisation():
    n, s = 8000, 1000
    x, y, exact_q, excess = _calibrated_gaussian(n, s, seed=8)
    ours = crps_quantile(x, y) * np.abs(y).sum() / n
    exact_loss = _pinball2(y, exact_q).mean(0)  # per entry, exact Gaussian quantiles
    sample_loss = _pinball2(y, np.quantile(x, LEVELS, axis=0)).mean(0)
    assert ours == pytest.approx(sample_loss.mean(), rel=1e-12)
    d = sample_loss - exact_loss  # paired: only the quantile estimation differs
    se = d.std(ddof=1) / math.sqrt(n)
    assert abs(d.mean() - excess) <= 5 * se, (d.mean(), excess, se)


def test_csdi_crps_overstates_the_exact_gaussian_crps_by_the_closed_form_ratio():
    # E_y 2 rho_q(y - F^-1(q)) = 2 sigma phi(z_q) for y ~ N(mu, sigma); E_y CRPS = sigma/sqrt(pi)
    z = stats.norm.ppf(LEVELS)
    for zq, q in zip(z, LEVELS, strict=True):  # check the per-level closed form by integration
        def loss(t, zq=zq, q=q):
            return max(q * (t - zq), (q - 1) * (t - zq)) * stats.norm.pdf(t)

        num = integrate.quad(loss, -np.inf, zq)[0] + integrate.quad(loss, zq, np.inf)[0]
        assert num == pytest.approx(stats.norm.pdf(zq), abs=1e-10)
    ratio = math.sqrt(math.pi) * 2.0 * stats.norm.pdf(z).mean()
    assert ratio == pytest.approx(1.0483, abs=5e-5)  # the value quoted in the docstring

    n, s, sigma = 8000, 1000, 1.5
    x, y, exact_q, excess = _calibrated_gaussian(n, s, seed=9, sigma=sigma)
    exact_crps = crps_gaussian(3.0, sigma, y).numpy().mean()
    grid_error = abs(_pinball2(y, exact_q).mean() - ratio * exact_crps)  # stratification error
    d = (_pinball2(y, np.quantile(x, LEVELS, axis=0)) - _pinball2(y, exact_q)).mean(0)
    se = d.std(ddof=1) / math.sqrt(n)
    measured = crps_quantile(x, y) * np.abs(y).sum() / n / exact_crps
    expected = ratio + excess / exact_crps
    assert abs(measured - expected) <= (5 * se + grid_error) / exact_crps, (measured, expected)


def test_crps_sum_matches_the_official_definition_on_horizon_masks():
    rng = _rng(11)
    s, b, l, k = 15, 3, 10, 4
    x, y = rng.standard_normal((s, b, l, k)) + 1.0, rng.standard_normal((b, l, k)) + 1.0
    mask = np.zeros((b, l, k), dtype=bool)
    mask[:, 7:] = True  # the forecast horizon: all features of the last 3 steps
    # official: weights = mask mean over features, sums over all features
    w = mask.mean(-1)
    y_sum, q_sum = y.sum(-1), np.quantile(x.sum(-1), LEVELS, axis=0)
    per_level = (_pinball2(y_sum, q_sum) * w).sum(axis=(1, 2)) / np.abs(y_sum * w).sum()
    assert crps_sum_quantile(x, y, mask, feature_dim=-1) == pytest.approx(per_level.mean(),
                                                                         rel=1e-12)
    # feature axis given positively and placed elsewhere
    xt, yt, mt = np.swapaxes(x, 2, 3), np.swapaxes(y, 1, 2), np.swapaxes(mask, 1, 2)
    assert crps_sum_quantile(xt, yt, mt, feature_dim=1) == pytest.approx(per_level.mean(),
                                                                        rel=1e-12)
    # one feature: CRPS-sum is CRPS
    assert crps_sum_quantile(x[..., :1], y[..., :1], mask[..., :1]) == pytest.approx(
        crps_quantile(x[..., :1], y[..., :1], mask[..., :1]), rel=1e-12)


# ------------------------------------------------------------------ calibration, point errors
def test_coverage_of_exact_samples():
    # y and its S samples are exchangeable: P(X_(a+1) <= y <= X_(b+1)) = (b - a) / (S + 1) for
    # 0-based positions a = 0.05 (S-1), b = 0.95 (S-1) (whole numbers for S = 401) -> 0.90
    n, s = 5000, 401
    rng = _rng(12)
    mu, sigma = rng.standard_normal(n), np.exp(rng.standard_normal(n))
    x = mu + sigma * rng.standard_normal((s, n))
    y = mu + sigma * rng.standard_normal(n)
    p = (0.95 * (s - 1) - 0.05 * (s - 1)) / (s + 1)
    se = math.sqrt(p * (1 - p) / n)
    cov = interval_coverage(x, y)
    assert abs(cov - p) <= 4 * se, (cov, p, se)
    assert abs(cov - 0.90) <= 4 * se + (0.90 - p)


def test_median_errors():
    rng = _rng(13)
    y, c = rng.standard_normal((6, 5)), rng.standard_normal((6, 5))
    mask = rng.random((6, 5)) < 0.6
    err = (c - y)[mask]
    got = median_errors(np.broadcast_to(c, (8, 6, 5)), y, mask)
    assert got["mae"] == pytest.approx(np.abs(err).mean(), rel=1e-14)
    assert got["rmse"] == pytest.approx(np.sqrt((err**2).mean()), rel=1e-14)
    x = rng.standard_normal((9, 6, 5))  # odd S: the ordinary median
    med_err = (np.median(x, axis=0) - y)[mask]
    assert median_errors(x, y, mask)["mae"] == pytest.approx(np.abs(med_err).mean(), rel=1e-14)
    x = rng.standard_normal((4, 6, 5))  # even S: the lower middle sample, as torch.median
    low_err = (np.sort(x, axis=0)[1] - y)[mask]
    assert median_errors(x, y, mask)["rmse"] == pytest.approx(np.sqrt((low_err**2).mean()),
                                                              rel=1e-14)


# ------------------------------------------------------------------ masks, S = 1, bad input
def test_entries_outside_the_mask_never_count():
    rng = _rng(14)
    s, b, l, k = 12, 4, 6, 3
    x, y = rng.standard_normal((s, b, l, k)), rng.standard_normal((b, l, k))
    mask = rng.random((b, l, k)) < 0.5
    mask[0, 0] = True
    garbage = np.where(rng.random((b, l, k)) < 0.5, np.nan, 1e30)
    xg, yg = np.where(mask, x, garbage), np.where(mask, y, -garbage)
    for fn in (crps_quantile, crps_sum_quantile, energy_score, interval_coverage):
        assert fn(xg, yg, mask) == fn(x, y, mask), fn.__name__
    assert median_errors(xg, yg, mask) == median_errors(x, y, mask)
    assert energy_score(xg, yg, mask, fair=True) == energy_score(x, y, mask, fair=True)
    m = torch.as_tensor(mask)
    assert torch.equal(crps_ensemble(xg, yg)[m], crps_ensemble(x, y)[m])
    # 0/1 float masks (CSDI's eval_points) mean the same
    assert crps_quantile(x, y, mask.astype(np.float32)) == crps_quantile(x, y, mask)


def test_single_sample():
    rng = _rng(15)
    x, y = rng.standard_normal((1, 4, 5)), rng.standard_normal((4, 5))
    mask = rng.random((4, 5)) < 0.7
    err = np.abs(x[0] - y)[mask]
    # all quantiles are the sample; mean_q 2 rho_q(u) = |u| since the levels average to 1/2
    assert crps_quantile(x, y, mask) == pytest.approx(err.sum() / np.abs(y[mask]).sum(),
                                                      rel=1e-13)
    assert median_errors(x, y, mask)["mae"] == pytest.approx(err.mean(), rel=1e-14)
    assert interval_coverage(x, y, mask) == 0.0
    norms = np.sqrt(((x[0] - y) ** 2 * mask).sum(axis=1))
    assert energy_score(x, y, mask) == pytest.approx(norms[mask.any(1)].mean(), rel=1e-13)
    with pytest.raises(ValueError, match="at least 2 samples"):
        energy_score(x, y, fair=True)


def test_bad_input_is_one_clear_value_error():
    x, y = np.zeros((3, 4, 5)) + 1.0, np.ones((4, 5))
    with pytest.raises(ValueError, match=r"samples must have shape \(S, 4, 5\)"):
        crps_quantile(x[:, :3], y)
    with pytest.raises(ValueError, match="mask must have the target's shape"):
        crps_quantile(x, y, np.ones((4, 4), dtype=bool))
    with pytest.raises(ValueError, match="mask selects no entries"):
        interval_coverage(x, y, np.zeros((4, 5), dtype=bool))
    with pytest.raises(ValueError, match="only 0 and 1"):
        median_errors(x, y, np.full((4, 5), 0.5))
    bad = y.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="target has non-finite values"):
        crps_quantile(x, bad)
    with pytest.raises(ValueError, match="normaliser"):
        crps_quantile(x, np.zeros((4, 5)))
    with pytest.raises(ValueError, match="levels must lie in"):
        crps_quantile(x, y, levels=[0.5, 1.5])
    with pytest.raises(ValueError, match="feature_dim 2 is out of range"):
        crps_sum_quantile(x, y, feature_dim=2)
    with pytest.raises(ValueError, match="lower < upper"):
        interval_coverage(x, y, lower=0.9, upper=0.1)
    with pytest.raises(ValueError, match="reduction"):
        energy_score(x, y, reduction="sum")
