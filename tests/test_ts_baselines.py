"""The imputation baselines (diffusio.timeseries.baselines): the common interface for every
imputer, the mean imputer's moments, linear interpolation against np.interp and its calibrated
bands against the closed-form error variance, the oracle's samples against the exact
predictive, EM-Kalman against the oracle on CRPS, the deterministic backbone's training, and
the one-line errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from diffusio.metrics.probabilistic import crps_ensemble
from diffusio.timeseries.baselines import (
    DeterministicImputer,
    Imputer,
    InterpolationImputer,
    KalmanImputer,
    MeanImputer,
    OracleImputer,
    check_windows,
    linear_interpolation,
)
from diffusio.timeseries.statespace import default_ssm, predictive, simulate
from diffusio.timeseries.windows import Normalizer, hide_at_rate, random_targets

Z95 = float(norm.ppf(0.95))  # the 5-95% band is mean +- Z95 std
TINY_NET = dict(channels=8, layers=1, heads=2, ff_dim=8, diffusion_embedding_dim=8,
                time_embedding_dim=4, feature_embedding_dim=2)  # fmt: skip


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _ssm_data(n, length, seed, ssm, rate=0.1):
    """Simulated windows (float64) with a fraction ``rate`` of entries not observed."""
    y = torch.as_tensor(simulate(ssm, n, length, seed))
    observed = torch.rand(y.shape, generator=_gen(seed + 100)) >= rate
    return torch.where(observed, y, 0.0), observed


SSM = default_ssm(features=3, latent=2, seed=0)


@pytest.fixture(scope="module")
def fitted() -> dict[str, Imputer]:
    """Every imputer fitted on the same small state-space training set."""
    y, obs = _ssm_data(48, 10, 1, SSM)
    imputers = [
        MeanImputer(),
        InterpolationImputer(min_count=20),
        KalmanImputer(latent=2, iterations=5),
        OracleImputer(SSM),
        DeterministicImputer(steps=4, batch_size=8, net_options=TINY_NET),
    ]
    return {imp.name: imp.fit(y, obs) for imp in imputers}


NAMES = ["mean", "interpolation", "kalman-em", "oracle", "deterministic"]


# -- the interface -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_contract(fitted, name, dtype):
    imp = fitted[name]
    assert isinstance(imp, Imputer) and imp.name == name
    y, obs = _ssm_data(5, 10, 7, SSM)
    cond = obs & ~hide_at_rate(obs, 0.5, _gen(2))
    windows = torch.where(cond, y, math.nan).to(dtype)  # nothing outside cond_mask is read
    s = imp.sample(windows, cond, 6, _gen(3))
    assert s.shape == (6, *windows.shape) and s.dtype == dtype
    assert torch.isfinite(s).all()
    assert torch.equal(s[:, cond], windows[cond].expand(6, -1))  # conditioned entries exact
    assert torch.equal(s, imp.sample(windows, cond, 6, _gen(3)))  # reproducible
    other = imp.sample(windows, cond, 6, _gen(4))
    if name == "deterministic":
        assert torch.equal(other, s) and torch.equal(s[0], s[5])  # S copies of one estimate
    else:
        assert not torch.equal(other[:, ~cond], s[:, ~cond])
        assert not torch.equal(s[0][~cond], s[1][~cond])


@pytest.mark.parametrize("name", ["mean", "interpolation"])
def test_gaussian_samples_are_predictive(fitted, name):
    """Mean and interpolation samples are exactly mean + std * N(0, 1) from the generator."""
    imp = fitted[name]
    y, obs = _ssm_data(4, 10, 8, SSM)
    mean, std = imp.predictive(y, obs)
    assert (std[obs] == 0).all() and (std[~obs] > 0).all()
    noise = torch.randn((3, *y.shape), generator=_gen(5), dtype=torch.float64)
    expected = torch.where(obs, y, mean + std * noise)
    assert torch.allclose(imp.sample(y, obs, 3, _gen(5)), expected, rtol=0, atol=1e-15)


# -- mean --------------------------------------------------------------------------------------


def test_mean_imputer_moments():
    y, obs = _ssm_data(30, 9, 3, SSM, rate=0.3)
    imp = MeanImputer().fit(y, obs)
    for k in range(3):
        values = y[:, k][obs[:, k]].numpy()
        assert float(imp.mean[k]) == pytest.approx(values.mean(), rel=0, abs=1e-14)
        assert float(imp.std[k]) == pytest.approx(values.std(ddof=0), rel=1e-13)


# -- interpolation -----------------------------------------------------------------------------


def _piecewise_linear(n, k, length, seed):
    """Rows equal to np.interp through random knots (the conditioned entries): linear between
    them, constant outside; every row has at least one knot."""
    rng = np.random.default_rng(seed)
    cond = rng.random((n, k, length)) < 0.35
    for i in range(n):
        for j in range(k):
            if not cond[i, j].any():
                cond[i, j, rng.integers(length)] = True
    knots = rng.normal(size=(n, k, length)) * 3.0
    y = np.empty((n, k, length))
    for i in range(n):
        for j in range(k):
            t = np.flatnonzero(cond[i, j])
            y[i, j] = np.interp(np.arange(length), t, knots[i, j, t])
    return torch.as_tensor(y), torch.as_tensor(cond)


def test_linear_interpolation_matches_np_interp():
    y, cond = _piecewise_linear(20, 3, 15, 0)
    cond[0, 1] = False  # a row with nothing conditioned: the fill value
    values, dist, two = linear_interpolation(torch.where(cond, y, math.nan), cond,
                                             torch.tensor([1.0, -2.0, 3.0]))  # fmt: skip
    assert torch.allclose(values[cond], y[cond], rtol=0, atol=0)
    keep = cond.any(-1, keepdim=True).expand_as(cond)
    assert torch.allclose(values[keep], y[keep], rtol=0, atol=1e-12)
    assert (values[0, 1] == -2.0).all() and (dist[0, 1] == 15).all() and not two[0, 1].any()
    for i, j in [(1, 0), (5, 2), (19, 1)]:
        t = np.flatnonzero(cond[i, j].numpy())
        steps = np.arange(15)
        gaps = np.abs(steps[:, None] - t[None, :])
        assert (dist[i, j].numpy() == gaps.min(1)).all()
        assert (two[i, j].numpy() == ((steps > t.min()) & (steps < t.max())) | cond[i, j].numpy()
                ).all()  # fmt: skip


def test_interpolation_imputer_exact_when_interpolation_is():
    """Calibrated on windows that are constant per row (interpolation is exact there: every
    residual 0, so std 0), the imputer returns the interpolation itself, which is exact on
    piecewise-linear rows with their knots conditioned."""
    train = torch.randn(200, 3, 1, generator=_gen(0), dtype=torch.float64).expand(200, 3, 15)
    imp = InterpolationImputer(min_count=10).fit(train.contiguous(), torch.ones(200, 3, 15,
                                                                                 dtype=torch.bool))
    assert imp.counts.sum() > 0 and (imp.std_table == 0).all()
    y, cond = _piecewise_linear(10, 3, 15, 1)
    s = imp.sample(y, cond, 4, _gen(1))
    assert torch.allclose(s, y.expand(4, -1, -1, -1), rtol=0, atol=1e-12)


def _level_noise(n, seed, sigma=(0.5, 1.5), length=12):
    """A random level per row (N(0, 2^2)) plus iid N(0, sigma_k^2) noise: interpolation is
    unbiased and its error is exactly Gaussian given where the conditioned entries are."""
    g = _gen(seed)
    level = 2.0 * torch.randn(n, len(sigma), 1, generator=g, dtype=torch.float64)
    noise = torch.randn(n, len(sigma), length, generator=g, dtype=torch.float64)
    return level + torch.tensor(sigma, dtype=torch.float64)[:, None] * noise


def test_interpolation_bands_cover_90_percent():
    """The 5-95% band of the calibrated imputer on held-out windows of level + noise data.

    The error variance of a hidden entry is known in closed form: with conditioned entries a
    steps before and b after, the interpolation (b y_p + a y_n) / (a + b) misses by
    e_t - (b e_p + a e_n) / (a + b), variance v = sigma^2 (1 + (a^2 + b^2) / (a + b)^2); past
    the last conditioned entry, v = 2 sigma^2. So each hidden entry is covered with probability
    p_i = 2 Phi(Z95 s_i / sqrt(v_i)) - 1 given the imputer's std s_i.

    (a) The count of covered entries against sum p_i: rows are independent (entries within a
        row are not), so Var(count) <= sum over rows of (sum_i sd_i)^2, sd_i = sqrt(p_i (1-p_i));
        allowed: 4 of that sd.
    (b) The calibration, mean p_i against 0.90: the std of a bin is estimated from m >= the
        bin's count residuals; log s has sd ~ sqrt(kappa / (4 m)) with kappa = E r^4 / (E r^2)^2 -
        1 <= 3 (a + b)^2 / (4 a b) - 1 (Kantorovich, v in [1.5, 2] sigma^2) and a factor 2 for
        residuals sharing endpoint noise; a change of log s moves p_i by 2 z_i phi(z_i). Allowed:
        4 of that sd (an upper bound: a sum of sds), plus the bias of pooling unequal v in one
        bin, bounded by the extreme two-point mixtures of v on [1.5, 2] sigma^2.
    """
    sigma = (0.5, 1.5)
    imp = InterpolationImputer(min_count=4000).fit(_level_noise(12000, 0), torch.ones(
        12000, 2, 12, dtype=torch.bool))  # fmt: skip
    y = _level_noise(6000, 1)
    hidden = random_targets(torch.ones_like(y, dtype=torch.bool), _gen(2))
    cond = ~hidden
    mean, std = imp.predictive(y, cond)
    covered = ((y - mean).abs() <= Z95 * std).numpy()
    std, cond_np = std.numpy(), cond.numpy()
    counts = imp.counts.numpy()
    p_all, bound_rows, sens = [], 0.0, []
    for i in range(y.shape[0]):
        for k in range(2):
            t = np.flatnonzero(cond_np[i, k])
            if len(t) == 0:
                continue  # no conditioned entry: the marginal, not the interpolation
            miss = np.flatnonzero(~cond_np[i, k])
            if len(miss) == 0:
                continue
            a = miss[:, None] - t[None, :]
            before = np.where(a > 0, a, 99).min(1)
            after = np.where(a < 0, -a, 99).min(1)
            two = (before < 99) & (after < 99)
            v = np.where(two, 1.0 + (before**2 + after**2) / (before + after) ** 2, 2.0)
            v = v * sigma[k] ** 2
            zi = Z95 * std[i, k, miss] / np.sqrt(v)
            p = 2.0 * norm.cdf(zi) - 1.0
            d = np.minimum(before, after)
            m = np.maximum(counts[k, two.astype(int), d], imp.min_count)
            sens.append(2.0 * zi * norm.pdf(zi) / np.sqrt(m))
            bound_rows += np.sqrt(p * (1.0 - p)).sum() ** 2
            p_all.append(np.stack([p, covered[i, k, miss]]))
    p, hit = np.concatenate(p_all, axis=1)
    n = len(p)
    assert abs(hit.sum() - p.sum()) <= 4.0 * math.sqrt(bound_rows)  # (a)
    kappa = 3.0 * 3.5**2 / (4 * 1.5 * 2.0) - 1.0
    cal_sd = math.sqrt(2.0 * kappa / 4.0) * np.concatenate(sens).sum() / n

    def f(ratio):  # coverage of a band fitted to the mean variance, for variance ratio * mean
        return 2.0 * norm.cdf(Z95 / np.sqrt(ratio)) - 1.0

    # extremes of E f(v / mean v) over distributions of v on [1.5, 2] with a given mean are
    # two-point mixtures (Richter-Rogosinski): search mean m and points v1 <= m <= v2 on a grid
    g = np.linspace(1.5, 2.0, 101)
    m, v1, v2 = np.meshgrid(g, g, g, indexing="ij")
    ok = (v1 < m) & (m < v2)
    w = (v2[ok] - m[ok]) / (v2[ok] - v1[ok])  # the weight on v1
    dev = w * f(v1[ok] / m[ok]) + (1 - w) * f(v2[ok] / m[ok]) - 0.9
    bias = 2.0 * float(np.abs(dev).max())  # x2 for the grid
    assert abs(p.mean() - 0.90) <= bias + 4.0 * cal_sd  # (b)
    # together: about +-0.03 here (a: 0.013, b: 0.015; observed 0.8998 over ~63,000 entries)
    assert abs(hit.mean() - 0.90) <= 4.0 * math.sqrt(bound_rows) / n + bias + 4.0 * cal_sd


def test_interpolation_bands_widen_in_long_gaps():
    """On a random walk with unit steps, constant extrapolation d steps past the last
    conditioned entry misses by a sum of d independent steps: variance exactly d. The table
    (past-the-end regime) matches d within 5 standard errors d sqrt(2 / m) of a mean of m
    squared independent N(0, d) residuals (one per window end; rounds=1)."""
    walk = torch.randn(3000, 2, 16, generator=_gen(3), dtype=torch.float64).cumsum(-1)
    imp = InterpolationImputer(min_count=300).fit(walk, torch.ones_like(walk, dtype=torch.bool))
    table, counts = imp.std_table.square(), imp.counts
    checked = 0
    for k in range(2):
        # bins are single distances while each holds min_count residuals; the last such bin
        # may have absorbed the tail, so it is left out
        full = 1
        while full < 15 and counts[k, 0, full] >= 300:
            full += 1
        for d in range(1, full - 1):
            se = d * math.sqrt(2.0 / float(counts[k, 0, d]))
            assert abs(float(table[k, 0, d]) - d) <= 5.0 * se
            checked += 1
    assert checked >= 12
    # the band widens: std sqrt(7) = 2.65x at 7 steps (estimates within ~5% each)
    assert (imp.std_table[:, 0, 7] > 2.0 * imp.std_table[:, 0, 1]).all()


# -- state-space models ------------------------------------------------------------------------


def test_oracle_samples_match_exact_predictive():
    ssm = default_ssm(features=3, latent=4, seed=1)
    y, obs = _ssm_data(4, 12, 5, ssm, rate=0.5)
    s = OracleImputer(ssm).sample(y, obs, 4000, _gen(0)).numpy()
    mean, var = predictive(ssm, y, obs)
    miss = ~obs.numpy()
    n = s.shape[0]
    se_mean = np.sqrt(var[miss] / n)
    se_var = var[miss] * math.sqrt(2.0 / (n - 1))  # Gaussian sample variance
    assert (np.abs(s.mean(0)[miss] - mean[miss]) <= 5 * se_mean).all()
    assert (np.abs(s.var(0, ddof=1)[miss] - var[miss]) <= 5 * se_var).all()


def test_oracle_with_normalizer_is_the_raw_oracle_rescaled():
    ssm = default_ssm(features=3, latent=2, seed=2)
    y, obs = _ssm_data(6, 8, 9, ssm, rate=0.4)
    norm_ = Normalizer(torch.tensor([1.0, -2.0, 0.5]), torch.tensor([2.0, 0.5, 3.0]))
    z = norm_.transform(y, obs)
    raw = OracleImputer(ssm).sample(y, obs, 5, _gen(1))
    scaled = OracleImputer(ssm, norm_).sample(z, obs, 5, _gen(1))
    assert torch.allclose(scaled, norm_.transform(raw), rtol=0, atol=1e-12)
    m_raw, s_raw = OracleImputer(ssm).predictive(y, obs)
    m_z, s_z = OracleImputer(ssm, norm_).predictive(z, obs)
    assert torch.allclose(m_z[~obs], norm_.transform(m_raw)[~obs], atol=1e-12)
    assert torch.allclose(s_z, s_raw / norm_.std[:, None], atol=1e-12)


def test_kalman_em_close_to_oracle_and_far_better_than_mean():
    """CRPS (fair ensemble, 64 samples, mean over the hidden half of 100 test windows) of
    EM-Kalman within 3% + 4 paired standard errors of the oracle's. The margin: the fitted
    model's excess is of order (parameters / observations) = 60 / 19,200 = 0.3% for a
    well-converged EM, so 3% leaves room for 30 iterations not being the optimum; the paired
    se (per-window differences, same sampler seed for both) covers the Monte Carlo part. The
    mean imputer's CRPS is at least 1.5x larger (the oracle's predictive std here is about
    0.4 of the marginal std)."""
    ssm = default_ssm(features=4, latent=4, seed=0)
    y = torch.as_tensor(simulate(ssm, 200, 24, 1))
    full = torch.ones_like(y, dtype=torch.bool)
    kalman = KalmanImputer(latent=4, iterations=30).fit(y, full)
    lls = kalman.log_likelihoods
    assert (np.diff(lls) >= -1e-9 * abs(lls[0])).all()  # EM never decreases it (round-off)
    yt = torch.as_tensor(simulate(ssm, 100, 24, 2))
    hidden = hide_at_rate(torch.ones_like(yt, dtype=torch.bool), 0.5, _gen(3))
    crps = {}
    for imp in (kalman, OracleImputer(ssm), MeanImputer().fit(y, full)):
        c = crps_ensemble(imp.sample(yt, ~hidden, 64, _gen(7)), yt, fair=True)
        crps[imp.name] = torch.where(hidden, c, 0.0).sum((1, 2)) / hidden.sum((1, 2))
    diff = crps["kalman-em"] - crps["oracle"]
    se = float(diff.std()) / math.sqrt(len(diff))
    kal, ora, mean = (float(crps[k].mean()) for k in ("kalman-em", "oracle", "mean"))
    assert kal <= 1.03 * ora + 4 * se
    assert mean >= 1.5 * kal


# -- deterministic backbone --------------------------------------------------------------------


def test_deterministic_imputer_trains_and_is_reproducible():
    y, obs = _ssm_data(64, 12, 4, SSM)
    net = dict(TINY_NET, channels=16, ff_dim=16)
    options = dict(steps=60, batch_size=16, lr=1e-2, net_options=net, seed=3)
    state = torch.get_rng_state()
    imp = DeterministicImputer(**options).fit(y, obs)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is left alone
    again = DeterministicImputer(**options).fit(y, obs)
    assert len(imp.losses) == 60 and imp.losses == again.losses
    assert np.mean(imp.losses[-15:]) < np.mean(imp.losses[:15])  # noisy batches: see below
    targets = hide_at_rate(obs, 0.5, _gen(1))
    cond = obs & ~targets
    s = imp.sample(y, cond, 3)
    assert torch.equal(s, again.sample(y, cond, 3))
    assert torch.equal(s[0], s[1]) and torch.equal(s[0], s[2])
    # the loss on fixed targets: the untrained network predicts 0 (its output layer is
    # zero-initialised), whose MSE is exactly the mean of y^2 there
    mse = float((s[0] - y)[targets].square().mean())
    assert mse < 0.8 * float(y[targets].square().mean())
    untrained = DeterministicImputer(**dict(options, steps=1, lr=1e-12, progress=True))
    untrained.fit(y, obs)
    assert untrained.sample(y, cond, 1)[0][targets].abs().max() < 1e-6


# -- bad input ---------------------------------------------------------------------------------


def _bad_cases(fitted):
    y, obs = _ssm_data(4, 10, 6, SSM)
    nan_y = y.clone()
    nan_y[1, 2, 3] = math.nan
    never = obs.clone()
    never[:, 1] = False
    imp = fitted["mean"]
    return {
        "2-D windows": (lambda: MeanImputer().fit(y[0], obs[0]), "windows must be"),
        "float observed": (lambda: MeanImputer().fit(y, obs.double()), "observed must be"),
        "fit shapes": (lambda: MeanImputer().fit(y, obs[:, :, :5]), "observed has shape"),
        "nan observed": (lambda: MeanImputer().fit(nan_y, obs | True), "window 1, feature 2"),
        "never observed": (lambda: KalmanImputer(2, 1).fit(y, never), "feature 1 has no"),
        "cond shape": (lambda: imp.sample(y, obs[:3], 2), "cond_mask has shape"),
        "cond not bool": (lambda: imp.sample(y, obs.float(), 2), "cond_mask must be a bool"),
        "n_samples 0": (lambda: imp.sample(y, obs, 0), "n_samples must be at least 1"),
        "n_samples float": (lambda: imp.sample(y, obs, 2.5), "n_samples must be an integer"),
        "features": (lambda: imp.sample(y[:, :2], obs[:, :2], 2), "fitted on 3"),
        "int windows": (lambda: imp.sample(obs.long(), obs, 2), "windows must be a float"),
        "not subset": (lambda: check_windows(y, obs | True, within=obs), "unobserved entry"),
        "min_count": (lambda: InterpolationImputer(min_count=0), "min_count"),
        "latent": (lambda: KalmanImputer(latent=0), "latent must be"),
        "steps": (lambda: DeterministicImputer(steps=0), "steps >= 1"),
        "ssm": (lambda: OracleImputer("model"), "LinearGaussianSSM"),
        "oracle features": (lambda: OracleImputer(SSM).fit(y[:, :2], obs[:, :2]), "has 3"),
        "cond nan": (lambda: fitted["kalman-em"].sample(nan_y, obs | True, 2), "non-finite"),
    }


@pytest.mark.parametrize("case", [
    "2-D windows", "float observed", "fit shapes", "nan observed", "never observed",
    "cond shape", "cond not bool", "n_samples 0", "n_samples float", "features", "int windows",
    "not subset", "min_count", "latent", "steps", "ssm", "oracle features", "cond nan",
])  # fmt: skip
def test_bad_input_one_line_value_error(fitted, case):
    call, match = _bad_cases(fitted)[case]
    with pytest.raises(ValueError, match=match) as err:
        call()
    assert "\n" not in str(err.value)


def test_sample_before_fit():
    y, obs = _ssm_data(2, 6, 0, SSM)
    for imp in (MeanImputer(), InterpolationImputer(), KalmanImputer(2, 1),
                DeterministicImputer(steps=1)):  # fmt: skip
        with pytest.raises(RuntimeError, match="not fitted"):
            imp.sample(y, obs, 1)
