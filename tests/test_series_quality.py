"""Synthetic-series metrics (diffusio.timeseries.quality): TimeGAN's discriminative and
predictive scores on pairs whose answer is known, the unbiased MMD against a brute-force sum and
its zero mean under the null, the autocorrelation of an AR(1) against a^k, the spectral entropy
of white noise against its closed form (Dirichlet entropy) and of a pure sinusoid (0), the
marginal gap against sorted differences, the memorisation ratio for copies and fresh draws, the
embedding figure, and the one-line errors.

Tolerances: float64 round-off where both sides compute the same number, otherwise a standard
error computed in the test from the draws (5 se; 4 se for the binomial accuracy). Training runs
use a few hundred iterations at a larger learning rate than TimeGAN's: the tests check
properties of the scores, not the protocol's constants.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import digamma

from diffusio.timeseries.quality import (
    DiscriminativeScore,
    autocorrelation,
    autocorrelation_gap,
    discriminative_score,
    embed,
    embedding_figure,
    marginal_gap,
    median_bandwidth,
    memorisation,
    mmd_windows,
    predictive_score,
    reference_scores,
    spectral_entropy,
    spectral_entropy_gap,
)
from diffusio.timeseries.sources import sines

FAST = dict(iterations=100, batch_size=64, lr=1e-2)


def _sines(n: int, seed: int, features: int = 5, length: int = 24) -> np.ndarray:
    """TimeGAN's sines as (n, length, features)."""
    gen = torch.Generator().manual_seed(seed)
    return sines(n, length, features, gen).transpose(1, 2).numpy()


def _ar1(n: int, length: int, a: float, seed: int, features: int = 1) -> np.ndarray:
    """Stationary AR(1) windows x_t = a x_{t-1} + sqrt(1 - a^2) e_t, x_0 ~ N(0, 1): unit
    variance and autocorrelation a^k at lag k."""
    rng = np.random.default_rng(seed)
    x = np.empty((n, length, features))
    x[:, 0] = rng.standard_normal((n, features))
    for t in range(1, length):
        x[:, t] = a * x[:, t - 1] + math.sqrt(1 - a * a) * rng.standard_normal((n, features))
    return x


def _lagged(n: int, seed: int, length: int = 24) -> np.ndarray:
    """Two features in (0, 1) where the second is the first one step later: x[t+1, 1] =
    x[t, 0], so TimeGAN's predictor (last feature from the others' past) can be exact."""
    s = 1.0 / (1.0 + np.exp(-_ar1(n, length + 1, 0.8, seed)[..., 0]))
    return np.stack([s[:, 1:], s[:, :-1]], axis=-1)


def _shuffle_time(x: np.ndarray, seed: int) -> np.ndarray:
    """Each window's steps in a random order (the same order for all its features)."""
    rng = np.random.default_rng(seed)
    return np.stack([w[rng.permutation(len(w))] for w in x])


# ------------------------------------------------------------------ discriminative score
def test_discriminative_same_distribution_is_within_its_error_of_zero():
    s = discriminative_score(_sines(400, 1), _sines(400, 2), **FAST)
    assert isinstance(s, DiscriminativeScore) and float(s) == s.score
    assert (s.n_real, s.n_fake) == (80, 80)  # TimeGAN's 80/20 split of each set
    # the reported error is the stratified binomial one of the balanced accuracy
    se = 0.5 * math.sqrt(s.real_accuracy * (1 - s.real_accuracy) / 80
                         + s.fake_accuracy * (1 - s.fake_accuracy) / 80)  # fmt: skip
    assert s.se == pytest.approx(se, abs=1e-15)
    assert s.accuracy == pytest.approx(0.5 * (s.real_accuracy + s.fake_accuracy), abs=1e-15)
    assert s.score <= 4 * s.se  # 0 when the classifier is constant (se = 0)


def test_discriminative_tells_sines_from_noise():
    noise = np.random.default_rng(0).uniform(size=(400, 24, 5))
    s = discriminative_score(_sines(400, 1), noise, **FAST)
    # 0.45 = 95% balanced accuracy on 160 test windows: more than 10 null se (~0.04) from 0
    assert s.score > 0.45 and s.z > 10


def test_discriminative_is_deterministic_and_takes_unequal_sets():
    real, fake = _sines(150, 1), _sines(90, 2)
    a = discriminative_score(real, fake, iterations=10, batch_size=32, seed=3)
    b = discriminative_score(real, fake, iterations=10, batch_size=32, seed=3)
    assert a == b and (a.n_real, a.n_fake) == (30, 18)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    discriminative_score(real, fake, iterations=2, batch_size=8)
    assert torch.equal(state, torch.get_rng_state())  # the global RNG is left alone


# ------------------------------------------------------------------ predictive score
@pytest.mark.parametrize("features", [2, 1])
def test_predictive_real_beats_shuffled_in_time(features):
    # D = 2: the last feature is the first one a step later; D = 1: the series predicts itself
    real, train = _lagged(300, 1)[..., :features], _lagged(300, 2)[..., :features]
    good = predictive_score(real, train, **FAST)
    bad = predictive_score(real, _shuffle_time(train, 3), **FAST)
    assert good.n == bad.n == 300
    assert good.score + 5 * math.hypot(good.se, bad.se) < bad.score


# ------------------------------------------------------------------ MMD
def _gauss(x: np.ndarray, y: np.ndarray, h: float) -> float:
    return math.exp(-float(np.sum((x - y) ** 2)) / (2 * h * h))


def test_mmd_equals_the_brute_force_u_statistic():
    rng = np.random.default_rng(0)
    x, y = rng.uniform(size=(7, 3, 2)), rng.uniform(size=(5, 3, 2)) + 0.2
    h = 0.7
    fx, fy = x.reshape(7, -1), y.reshape(5, -1)
    kxx = sum(_gauss(a, b, h) for i, a in enumerate(fx) for j, b in enumerate(fx) if i != j)
    kyy = sum(_gauss(a, b, h) for i, a in enumerate(fy) for j, b in enumerate(fy) if i != j)
    kxy = sum(_gauss(a, b, h) for a in fx for b in fy)
    brute = kxx / 42 + kyy / 20 - 2 * kxy / 35
    assert mmd_windows(x, y, bandwidth=h) == pytest.approx(brute, abs=1e-10)
    pool = np.concatenate([fx, fy])
    med = float(np.median([np.linalg.norm(pool[i] - pool[j])
                           for i in range(12) for j in range(i + 1, 12)]))  # fmt: skip
    assert median_bandwidth(x, y) == pytest.approx(med, abs=1e-12)
    assert mmd_windows(x, y) == pytest.approx(mmd_windows(x, y, bandwidth=med), abs=1e-14)


def test_mmd_has_zero_mean_for_identical_distributions():
    draws = np.array([mmd_windows(_sines(30, 2 * r), _sines(30, 2 * r + 1)) for r in range(40)])
    sd = draws.std(ddof=1)
    assert abs(draws.mean()) < 5 * sd / math.sqrt(len(draws))
    noise = np.random.default_rng(0).uniform(size=(30, 24, 5))
    assert mmd_windows(_sines(30, 0), noise) > 10 * sd


def test_reference_scores_split_real_into_disjoint_halves():
    real = np.arange(11 * 2 * 1, dtype=float).reshape(11, 2, 1)
    seen = reference_scores(real, lambda a, b: (a[:, 0, 0], b[:, 0, 0]), seed=5, repeats=3)
    assert len(seen) == 3
    for a, b in seen:
        assert len(a) == len(b) == 5 and not set(a) & set(b)
        assert set(a) | set(b) <= set(real[:, 0, 0])
    assert not np.array_equal(seen[0][0], seen[1][0])
    again = reference_scores(real, lambda a, b: (a[:, 0, 0], b[:, 0, 0]), seed=5, repeats=1)
    np.testing.assert_array_equal(again[0][0], seen[0][0])


# ------------------------------------------------------------------ autocorrelation
def _acf_with_se(x: np.ndarray, k: int) -> tuple[float, float]:
    """The pooled lag-k autocorrelation of one feature and its delta-method standard error
    over windows (each window contributes its own lag-k and lag-0 means)."""
    c = x[..., 0] - x[..., 0].mean()
    ck = (c[:, : c.shape[1] - k] * c[:, k:]).mean(1)
    c0 = (c * c).mean(1)
    r = ck.mean() / c0.mean()
    return r, (ck - r * c0).std(ddof=1) / (math.sqrt(len(c)) * c0.mean())


def test_autocorrelation_of_ar1_is_a_to_the_k():
    a, x = 0.7, _ar1(2000, 24, 0.7, seed=0)
    r = autocorrelation(x, max_lag=6)
    assert r.shape == (7, 1) and r[0, 0] == 1.0
    for k in range(1, 7):
        ref, se = _acf_with_se(x, k)
        assert r[k, 0] == pytest.approx(ref, abs=1e-12)
        # the bias of centring on the estimated mean is O(1 / (N L (1 - a))) ~ 1e-4 << 5 se
        assert abs(r[k, 0] - a**k) < 5 * se


def test_autocorrelation_gap_is_exact_and_zero_for_identical_sets():
    x, y = _ar1(2000, 24, 0.9, seed=1), _ar1(1500, 24, 0.3, seed=2)
    assert autocorrelation_gap(x, x) == 0.0
    exact = np.mean([abs(0.9**k - 0.3**k) for k in range(1, 6)])
    se = np.mean([math.hypot(_acf_with_se(x, k)[1], _acf_with_se(y, k)[1]) for k in range(1, 6)])
    assert abs(autocorrelation_gap(x, y, max_lag=5) - exact) < 5 * se


def test_autocorrelation_of_a_constant_feature_is_zero():
    x = np.concatenate([_ar1(50, 10, 0.5, 0), np.full((50, 10, 1), 0.3)], axis=-1)
    r = autocorrelation(x)
    assert r.shape == (6, 2) and np.all(r[1:, 1] == 0.0) and np.all(r[0] == 1.0)


# ------------------------------------------------------------------ spectral entropy
@pytest.mark.parametrize("length", [25, 201])
def test_spectral_entropy_of_white_noise_matches_the_dirichlet_entropy(length):
    # Odd L: the M = (L - 1) / 2 nonzero Fourier coefficients of Gaussian white noise are iid
    # complex Gaussians, so the normalised periodogram is Dirichlet(1, ..., 1) with expected
    # entropy psi(M + 1) - psi(2) nats; it tends to log M (normalised: 1) as L grows.
    m = (length - 1) // 2
    h = spectral_entropy(np.random.default_rng(length).standard_normal((1000, length, 2)))
    assert h.shape == (1000, 2)
    exact = (digamma(m + 1) - digamma(2)) / math.log(m)
    assert abs(h.mean() - exact) < 5 * h.std(ddof=1) / math.sqrt(h.size)
    assert exact > (0.78 if length == 25 else 0.9)


def test_spectral_entropy_of_a_sinusoid_is_zero():
    t = np.arange(24)
    x = np.stack([0.5 + 0.4 * np.sin(2 * np.pi * k * t / 24 + 0.3 * k) for k in (1, 3, 12)])
    h = spectral_entropy(np.concatenate([x[..., None], np.full((3, 24, 1), 0.7)], axis=-1))
    np.testing.assert_allclose(h, 0.0, atol=1e-10)  # one frequency bin; constants score 0
    noise = np.random.default_rng(0).standard_normal((50, 24, 3))
    assert spectral_entropy_gap(noise, noise) == 0.0


# ------------------------------------------------------------------ marginals
def test_marginal_gap_is_the_mean_wasserstein_distance():
    rng = np.random.default_rng(0)
    x, y = rng.uniform(size=(40, 6, 3)), rng.beta(2, 5, size=(40, 6, 3))
    sorted_diff = [np.abs(np.sort(x[..., d].ravel()) - np.sort(y[..., d].ravel())).mean()
                   for d in range(3)]  # fmt: skip
    assert marginal_gap(x, y) == pytest.approx(np.mean(sorted_diff), abs=1e-12)
    # unequal sizes: the area between the empirical CDFs, summed over the merged sample
    a, b = x[..., 0].ravel(), y[:25, :, 0].ravel()
    grid = np.sort(np.concatenate([a, b]))
    cdf = lambda v: np.searchsorted(np.sort(v), grid[:-1], side="right") / v.size  # noqa: E731
    area = float(np.sum(np.abs(cdf(a) - cdf(b)) * np.diff(grid)))
    assert marginal_gap(x[..., :1], y[:25, :, :1]) == pytest.approx(area, abs=1e-12)
    assert marginal_gap(x, x + 0.1) == pytest.approx(0.1, abs=1e-12)


# ------------------------------------------------------------------ memorisation
def _median_se(d: np.ndarray) -> float:
    """Distribution-free standard error of a median: half the width between the quantiles
    0.5 -+ 1 / (2 sqrt n) (Var(median) ~ 1 / (4 n f^2))."""
    delta = 0.5 / math.sqrt(len(d))
    return float(np.quantile(d, 0.5 + delta) - np.quantile(d, 0.5 - delta)) / 2


def test_memorisation_flags_copies_and_passes_fresh_draws():
    train, held_out = _lagged(400, 1), _lagged(300, 2)
    copies = memorisation(train[:200], train, held_out)
    assert copies["median"] == 0.0 and copies["ratio"] < 1e-6 and copies["below_test_p5"] == 1.0
    fresh = _lagged(300, 3)
    m = memorisation(fresh, train, held_out)
    from diffusio.metrics.neighbours import nearest_distances

    tr = torch.as_tensor(train)
    d_fake = nearest_distances(torch.as_tensor(fresh), tr).numpy()
    d_test = nearest_distances(torch.as_tensor(held_out), tr).numpy()
    assert m["median"] == pytest.approx(np.sort(d_fake)[149], abs=1e-12)  # torch's lower median
    se = m["ratio"] * math.hypot(_median_se(d_fake) / m["median"],
                                 _median_se(d_test) / m["test_median"])  # fmt: skip
    assert abs(m["ratio"] - 1.0) < 5 * se


# ------------------------------------------------------------------ embedding figure
def test_embedding_pca_projects_on_the_real_principal_axes():
    real, fake = _sines(300, 1, features=2), _sines(50, 2, features=2)
    xa, xb = embed(real, fake, "pca", max_points=200)
    assert xa.shape == (200, 2) and xb.shape == (50, 2)
    np.testing.assert_allclose(xa.mean(0), 0.0, atol=1e-12)  # centred on the real mean
    assert xa[:, 0].var() >= xa[:, 1].var()
    assert abs(np.corrcoef(xa.T)[0, 1]) < 1e-10  # principal axes: uncorrelated coordinates


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_embedding_figure_is_written(tmp_path, method):
    path = embedding_figure(_sines(120, 1), _sines(100, 2), tmp_path / f"{method}.png", method)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == [f"{method}.png"]  # no temporary left


# ------------------------------------------------------------------ bad input
GOOD = np.full((6, 5, 2), 0.5)
NAN = GOOD.copy()
NAN[3, 2, 1] = np.nan


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: mmd_windows(GOOD, np.full((6, 5, 3), 0.5)), r"differ in shape"),
        (lambda: autocorrelation_gap(GOOD, NAN), r"fake has 1 NaN.*window 3, step 2, feature 1"),
        (lambda: discriminative_score(NAN, GOOD, iterations=1), r"real has 1 NaN"),
        (lambda: predictive_score(GOOD[:, :1], GOOD[:, :1], iterations=1), r"at least 2 steps"),
        (lambda: marginal_gap(GOOD[0], GOOD), r"shape \(N, L, D\), got shape \(5, 2\)"),
        (lambda: spectral_entropy(GOOD[:, :3]), r"at least 4 steps"),
        (lambda: memorisation(GOOD, GOOD[:, :4], GOOD), r"fake and train windows differ"),
        (lambda: autocorrelation(GOOD, max_lag=5), r"max_lag must lie in 1..L-1"),
        (lambda: embed(GOOD, GOOD, "umap"), r"method must be 'pca' or 'tsne'"),
        (lambda: mmd_windows(GOOD, GOOD, bandwidth="mean"), r"bandwidth must be"),
        (lambda: discriminative_score(GOOD[:1], GOOD, iterations=1), r"at least 2 windows"),
    ],
)
def test_bad_input_is_one_line_value_error(call, match):
    with pytest.raises(ValueError, match=match) as err:
        call()
    assert "\n" not in str(err.value)
