"""The linear-Gaussian state-space oracle (diffusio.timeseries.statespace): the Kalman/RTS
smoother against pykalman, the predictive distribution against dense Gaussian conditioning,
the posterior samples against the exact moments, and EM against the true model."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from diffusio.timeseries.statespace import (
    LinearGaussianSSM,
    default_ssm,
    fit_em,
    log_likelihood,
    predictive,
    predictive_samples,
    simulate,
    smooth,
)


def _tiny() -> LinearGaussianSSM:
    """D = 2, K = 3, with a non-zero, non-stationary start so nothing relies on stationarity."""
    return LinearGaussianSSM(
        A=np.array([[0.8, -0.3], [0.25, 0.7]]),
        Q=np.array([[0.3, 0.05], [0.05, 0.2]]),
        C=np.array([[1.0, 0.2], [-0.4, 0.9], [0.6, 0.6]]),
        R=np.array([0.1, 0.2, 0.05]),
        m0=np.array([0.5, -1.0]),
        P0=np.array([[1.5, 0.3], [0.3, 0.8]]),
    )


def _joint(ssm: LinearGaussianSSM, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of all entries of one window, flattened in (K, L) order (k major),
    built from the model: E x_t = A^t m0, P_t = A P_{t-1} A^T + Q, Cov(x_t, x_s) = A^(t-s) P_s
    for t >= s, and Cov(y_t, y_s) = C Cov(x_t, x_s) C^T + [t = s] diag(R)."""
    d, k = ssm.latent, ssm.features
    means = [ssm.m0]
    covs = [ssm.P0]
    for _ in range(1, length):
        means.append(ssm.A @ means[-1])
        covs.append(ssm.A @ covs[-1] @ ssm.A.T + ssm.Q)
    x_cov = np.zeros((length, length, d, d))
    for s in range(length):
        block = covs[s]
        for t in range(s, length):
            x_cov[t, s] = block
            x_cov[s, t] = block.T
            block = ssm.A @ block
    y_cov = np.einsum("kd,tsde,je->ktjs", ssm.C, x_cov, ssm.C)  # (K, L, K, L)
    y_cov = y_cov + np.einsum("kj,ts->ktjs", np.diag(ssm.R), np.eye(length))
    y_mean = (np.array(means) @ ssm.C.T).T  # (K, L)
    return y_mean.reshape(-1), y_cov.reshape(k * length, k * length)


def _condition(mean, cov, y, obs):
    """Dense Gaussian conditioning of the unobserved entries on the observed ones."""
    o, u = obs.reshape(-1), ~obs.reshape(-1)
    gain = np.linalg.solve(cov[np.ix_(o, o)], cov[np.ix_(o, u)]).T
    cond_mean = mean[u] + gain @ (y.reshape(-1)[o] - mean[o])
    cond_cov = cov[np.ix_(u, u)] - gain @ cov[np.ix_(o, u)]
    return cond_mean, cond_cov


def _masked_windows(ssm, n=3, length=9, seed=0):
    """Windows with scattered missing entries, a fully missing step (3) in every window and a
    fully missing window (the last)."""
    rng = np.random.default_rng(seed)
    y = simulate(ssm, n, length, rng)
    observed = rng.random(y.shape) > 0.35
    observed[:, :, 3] = False
    observed[-1] = False
    y = np.where(observed, y, np.nan)  # unobserved entries must never be read
    return y, observed


# -- against pykalman ----------------------------------------------------------------------


def _pykalman(ssm, C):
    pykalman = pytest.importorskip("pykalman")
    return pykalman.KalmanFilter(
        transition_matrices=ssm.A,
        observation_matrices=C,
        transition_covariance=ssm.Q,
        observation_covariance=np.diag(ssm.R),
        initial_state_mean=ssm.m0,
        initial_state_covariance=ssm.P0,
    )


def test_smoother_matches_pykalman_with_partially_missing_steps():
    # pykalman drops a whole step when any entry is masked, so a partially observed step is
    # given to it exactly as: the missing rows of C zeroed (time-varying C) and the value 0.
    # Such a row is independent noise N(0, R_kk) with zero gain, so the smoother is unchanged
    # and the log-likelihood gains exactly sum log N(0; 0, R_kk) over those rows.
    ssm = default_ssm(features=5, latent=3, seed=1)
    y, observed = _masked_windows(ssm)
    means, covs, ll = smooth(ssm, y, observed)
    length = y.shape[2]
    for n in range(y.shape[0]):
        o = observed[n].T  # (L, K), pykalman's layout
        full_step = ~o.any(1)
        C_t = o[:, :, None] * ssm.C  # (L, K, D)
        z = np.ma.masked_array(np.where(o, y[n].T, 0.0), mask=np.zeros_like(o))
        z.mask[full_step] = True
        kf = _pykalman(ssm, C_t)
        ref_means, ref_covs = kf.smooth(z)
        np.testing.assert_allclose(means[n].T, ref_means, rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(covs[n].transpose(2, 0, 1), ref_covs, rtol=1e-8, atol=1e-12)
        dummies = ~o & ~full_step[:, None]
        extra = -0.5 * np.sum(np.log(2 * np.pi * np.broadcast_to(ssm.R, (length, 5))[dummies]))
        ref_ll = kf.loglikelihood(z) - extra
        assert ll[n] == pytest.approx(ref_ll, rel=1e-10, abs=1e-10)
    assert ll[-1] == 0.0  # nothing observed: log p() = 0


def test_smoother_matches_pykalman_with_whole_missing_steps():
    ssm = default_ssm(features=4, latent=4, seed=2)
    y = simulate(ssm, 1, 12, 3)
    observed = np.ones_like(y, dtype=bool)
    observed[:, :, [0, 5, 6, 11]] = False  # the first, two middle and the last step
    z = np.ma.masked_array(y[0].T, mask=~observed[0].T)
    kf = _pykalman(ssm, ssm.C)
    ref_means, ref_covs = kf.smooth(z)
    means, covs, ll = smooth(ssm, y, observed)
    np.testing.assert_allclose(means[0].T, ref_means, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(covs[0].transpose(2, 0, 1), ref_covs, rtol=1e-8, atol=1e-12)
    assert ll[0] == pytest.approx(kf.loglikelihood(z), rel=1e-10)
    np.testing.assert_array_equal(log_likelihood(ssm, y, observed), ll)


# -- the oracle against dense conditioning --------------------------------------------------


def test_predictive_equals_dense_gaussian_conditioning():
    ssm = _tiny()
    y, observed = _masked_windows(ssm, n=3, length=6, seed=4)
    mean, var = predictive(ssm, y, observed)
    _, _, ll = smooth(ssm, y, observed)
    j_mean, j_cov = _joint(ssm, 6)
    for n in range(3):
        o = observed[n]
        if o.any():
            c_mean, c_cov = _condition(j_mean, j_cov, y[n], o)
            ref_ll = multivariate_normal(j_mean[o.reshape(-1)], j_cov[np.ix_(*[o.reshape(-1)] * 2)])
            assert ll[n] == pytest.approx(ref_ll.logpdf(y[n][o]), rel=1e-10)
        else:  # the fully missing window: the prior
            c_mean, c_cov = j_mean, j_cov
        np.testing.assert_allclose(mean[n][~o], c_mean, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(var[n][~o], np.diag(c_cov), rtol=1e-9, atol=1e-12)
        np.testing.assert_array_equal(mean[n][o], y[n][o])
        assert np.all(var[n][o] == 0.0)


def test_predictive_samples_have_the_exact_joint_moments():
    ssm = _tiny()
    y, observed = _masked_windows(ssm, n=2, length=6, seed=5)
    S = 20_000
    samples = predictive_samples(ssm, y, observed, S, generator=6)
    assert samples.shape == (S, *y.shape)
    np.testing.assert_array_equal(samples[:, observed], np.tile(y[observed], (S, 1)))
    again = predictive_samples(ssm, y, observed, 3, generator=7)
    np.testing.assert_array_equal(again, predictive_samples(ssm, y, observed, 3, generator=7))
    j_mean, j_cov = _joint(ssm, 6)
    for n in range(2):
        o = observed[n]
        c_mean, c_cov = _condition(j_mean, j_cov, y[n], o)
        draws = samples[:, n][:, ~o]  # (S, missing), flattened in the same (K, L) order
        sd = np.sqrt(np.diag(c_cov))
        # 5 Monte-Carlo standard errors: of the mean sd / sqrt(S); of a Gaussian sample
        # covariance sqrt((S_ii S_jj + S_ij^2) / S), which on the diagonal is var sqrt(2 / S)
        assert np.all(np.abs(draws.mean(0) - c_mean) < 5 * sd / math.sqrt(S))
        emp = np.cov(draws, rowvar=False)
        se = np.sqrt((np.outer(sd**2, sd**2) + c_cov**2) / S)
        assert np.all(np.abs(emp - c_cov) < 5 * se)


# -- EM --------------------------------------------------------------------------------------


def test_em_approaches_the_true_model():
    true = default_ssm(features=6, latent=4, seed=0)
    rng = np.random.default_rng(0)
    n, length = 150, 40
    y_train = simulate(true, n, length, rng)
    obs_train = rng.random(y_train.shape) > 0.3
    y_test = simulate(true, n, length, rng)
    obs_test = rng.random(y_test.shape) > 0.3
    fitted, history = fit_em(y_train, obs_train, latent=4, iterations=80)
    assert len(history) == 81
    assert np.all(np.diff(history) > -1e-9 * abs(history[-1]))  # EM never decreases
    # p = free parameters modulo the state basis: A D^2, Q and P0 D(D+1)/2, C KD, R K, m0 D,
    # less D^2 for x -> T x. At the MLE the training log-likelihood beats the truth's (by about
    # p/2); on an equal-sized held-out set the MLE loses about p/2 in expectation with a
    # standard deviation of about sqrt(p/2 + p) (the quadratic and the linear term of the
    # expansion around the truth), so p = p/2 + 3 standard deviations is the margin.
    d, k = 4, 6
    p = d * d + d * (d + 1) + k * d + k + d - d * d
    assert history[-1] > log_likelihood(true, y_train, obs_train).sum()
    ll_true = log_likelihood(true, y_test, obs_test).sum()
    assert ll_true - log_likelihood(fitted, y_test, obs_test).sum() < p
    # imputing held-out entries: the fitted model's MSE within 10% of the true posterior mean's
    hide = obs_test & (rng.random(y_test.shape) < 0.3)
    cond = obs_test & ~hide
    mse_true = np.mean((predictive(true, y_test, cond)[0] - y_test)[hide] ** 2)
    mse_fit = np.mean((predictive(fitted, y_test, cond)[0] - y_test)[hide] ** 2)
    assert mse_fit < 1.10 * mse_true


def test_em_from_a_given_start_is_monotone():
    true = default_ssm(features=3, latent=2, seed=3)
    y = simulate(true, 20, 30, 1)
    observed = np.random.default_rng(2).random(y.shape) > 0.5
    start = default_ssm(features=3, latent=2, seed=9)
    fitted, history = fit_em(y, observed, latent=2, iterations=15, init=start)
    assert history[0] == pytest.approx(log_likelihood(start, y, observed).sum(), rel=1e-12)
    assert np.all(np.diff(history) > -1e-9 * abs(history[-1]))
    assert history[-1] > history[0]


# -- the model and its inputs -----------------------------------------------------------------


def test_default_ssm_is_stationary_and_scaled():
    ssm = default_ssm(features=8, latent=5, seed=0)
    assert np.max(np.abs(np.linalg.eigvals(ssm.A))) == pytest.approx(0.95)
    np.testing.assert_allclose(ssm.A @ ssm.P0 @ ssm.A.T + ssm.Q, ssm.P0, atol=1e-12)
    np.testing.assert_allclose(np.diag(ssm.C @ ssm.P0 @ ssm.C.T) + ssm.R, 1.0, rtol=1e-12)
    with pytest.raises(ValueError):
        ssm.A[0, 0] = 1.0  # read-only


def _replace(**changes) -> dict:
    ssm = _tiny()
    fields = {name: getattr(ssm, name) for name in ("A", "Q", "C", "R", "m0", "P0")}
    fields.update(changes)
    return fields


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"A": np.ones((2, 3))}, "A must be square"),
        ({"C": np.ones((3, 3))}, "C must be"),
        ({"R": np.ones(2)}, "R must have shape"),
        ({"m0": np.zeros(3)}, "m0 must have shape"),
        ({"Q": np.array([[1.0, 0.5], [0.0, 1.0]])}, "Q is not symmetric"),
        ({"P0": np.array([[1.0, 2.0], [2.0, 1.0]])}, "P0 is not positive definite"),
        ({"R": np.array([0.1, 0.0, 0.1])}, "R\\[1\\]"),
        ({"A": np.array([[np.nan, 0.0], [0.0, 0.5]])}, "A has non-finite"),
    ],
)
def test_invalid_models_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        LinearGaussianSSM(**_replace(**changes))


def test_invalid_windows_are_refused():
    ssm = _tiny()
    y = simulate(ssm, 2, 5, 0)
    observed = np.ones_like(y, dtype=bool)
    with pytest.raises(ValueError, match="observed mask has shape"):
        smooth(ssm, y, observed[:, :, :4])
    with pytest.raises(ValueError, match="features but the model has K = 3"):
        predictive(ssm, y[:, :2], observed[:, :2])
    with pytest.raises(ValueError, match="must be \\(N windows"):
        log_likelihood(ssm, y[0], observed[0])
    bad = y.copy()
    bad[1, 2, 3] = np.inf
    with pytest.raises(ValueError, match="window 1, feature 2, step 3"):
        smooth(ssm, bad, observed)
    with pytest.raises(ValueError, match="boolean"):
        smooth(ssm, y, observed * 2)
    never = observed.copy()
    never[:, 1] = False
    with pytest.raises(ValueError, match="feature 1 has no observed entry"):
        fit_em(y, never, latent=2, iterations=1)
    with pytest.raises(ValueError, match="init has D = 2"):
        fit_em(y, observed, latent=3, iterations=1, init=ssm)
