"""CSDI on the platform (Tashiro et al. 2021): the exact Gaussian-window oracle against the
Kalman/RTS smoother, the samplers' exact output distributions, the training transform, and a
tiny trained CSDINet through training, imputation and resume.

Tolerances. With the oracle every sampler step is linear-Gaussian, so the output distribution of
:func:`impute` is Gaussian with moments computed here in closed form, independently of the
sampler code (DDPM, Ho et al. 2020, eq. 6-7 and Alg. 2; DPM-Solver++(2M), Lu et al. 2022,
Alg. 2; replacement inpainting, Song et al. 2021, App. I.2). The samples are then compared with
those moments within 5 Monte-Carlo standard errors per entry (mean: sqrt(var / S); unbiased
variance of Gaussian draws: var sqrt(2 / (S - 1))), and with the smoother's exact predictive
within those 5 standard errors plus the sampler's own discretisation gap (exact propagated
moments minus the smoother's). P(|z| > 5) = 5.7e-7 per comparison, a few hundred comparisons.
"""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch

from diffusio.core.processes import make_process
from diffusio.core.samplers.base import time_grid
from diffusio.data.batch import Batch
from diffusio.nets.csdi import CSDINet
from diffusio.timeseries.csdi import (
    CSDI_DEFAULTS,
    CSDITargets,
    GaussianWindowOracle,
    csdi_config,
    impute,
    load_csdi_run,
    train_csdi,
    training_set,
    window_moments,
)
from diffusio.timeseries.statespace import LinearGaussianSSM, default_ssm, predictive, simulate

K, L = 3, 8
Z = 5.0  # standard errors per comparison (module docstring)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def problem():
    """Three windows of a default SSM: two with half their entries missing at random, one
    with its last three steps missing (a forecast)."""
    ssm = default_ssm(features=K, latent=4, seed=0)
    y = simulate(ssm, 3, L, generator=1)
    observed = np.random.default_rng(2).random(y.shape) < 0.5
    observed[2] = True
    observed[2, :, L - 3 :] = False
    mean, cov = window_moments(ssm, L)
    return ssm, y, observed, mean, cov


def _posterior(mean, cov, y, c):
    """Dense Gaussian conditioning of one flattened window on the entries c."""
    u = ~c
    gain = cov[np.ix_(u, c)] @ np.linalg.inv(cov[np.ix_(c, c)])
    m = mean[u] + gain @ (y[c] - mean[c])
    return m, cov[np.ix_(u, u)] - gain @ cov[np.ix_(c, u)]


# -- the exact answer --------------------------------------------------------------------------


def test_window_moments_give_the_smoothers_predictive(problem):
    ssm, y, observed, mean, cov = problem
    # also a non-stationary start (m0 != 0, P0 != the stationary covariance)
    moved = LinearGaussianSSM(A=ssm.A, Q=ssm.Q, C=ssm.C, R=ssm.R, m0=np.full(ssm.latent, 0.7),
                              P0=0.3 * np.eye(ssm.latent))  # fmt: skip
    for model in (ssm, moved):
        mu, S = window_moments(model, L)
        pm, pv = predictive(model, y, observed)
        for n in range(len(y)):
            c = observed[n].reshape(-1)
            m, sigma = _posterior(mu, S, y[n].reshape(-1), c)
            np.testing.assert_allclose(m, pm[n].reshape(-1)[~c], rtol=0, atol=1e-10)
            np.testing.assert_allclose(np.diag(sigma), pv[n].reshape(-1)[~c], rtol=0, atol=1e-10)
    # stationary: the blocks depend on |t - s| only, C A^|t-s| P0 C^T + diag(R)
    block = cov.reshape(K, L, K, L)
    lag2 = ssm.C @ np.linalg.matrix_power(ssm.A, 2) @ ssm.P0 @ ssm.C.T
    np.testing.assert_allclose(block[:, 5, :, 3], lag2, rtol=0, atol=1e-12)
    np.testing.assert_allclose(block[:, 3, :, 5], lag2.T, rtol=0, atol=1e-12)
    np.testing.assert_allclose(block[:, 4, :, 4], ssm.C @ ssm.P0 @ ssm.C.T + np.diag(ssm.R),
                               rtol=0, atol=1e-12)  # fmt: skip


def test_oracle_eps_is_tweedie_of_the_noised_conditional(problem):
    # eps_u = -sigma grad log p(x_u | y_c) of N(a m, a^2 Sigma + s^2 I), by autograd of
    # torch's MultivariateNormal; eps_c = (x_c - a y_c) / s.
    ssm, y, observed, mean, cov = problem
    process = make_process("vp-quadratic")
    oracle = GaussianWindowOracle(mean, cov, K, L, process)
    x = torch.randn(3, K, L, generator=gen(3), dtype=torch.float64)
    t = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    yt, ct = torch.as_tensor(y), torch.as_tensor(observed)
    eps = oracle(x, t, observed=yt * ct, cond_mask=ct.double())
    for n in range(3):
        a, s = float(process.alpha(t[n])), float(process.sigma(t[n]))
        c = observed[n].reshape(-1)
        m, sigma = _posterior(mean, cov, y[n].reshape(-1), c)
        dist = torch.distributions.MultivariateNormal(
            a * torch.as_tensor(m), torch.as_tensor(a * a * sigma + s * s * np.eye(len(m)))
        )
        xu = x[n].reshape(-1)[~c].clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(dist.log_prob(xu), xu)
        flat = eps[n].reshape(-1)
        torch.testing.assert_close(flat[~c], -s * grad, rtol=1e-9, atol=1e-9)
        expect_c = (x[n].reshape(-1)[c] - a * torch.as_tensor(y[n].reshape(-1)[c])) / s
        torch.testing.assert_close(flat[c], expect_c, rtol=1e-12, atol=1e-12)


# -- the samplers' exact output distributions --------------------------------------------------


def _table():
    """CSDI's 'quad' table from its definition: beta = linspace(sqrt(1e-4), sqrt(0.5), 50)^2."""
    beta = np.linspace(math.sqrt(1e-4), math.sqrt(0.5), 50) ** 2
    abar = np.cumprod(1.0 - beta)
    return np.sqrt(abar), np.sqrt(1.0 - abar)


def _ddpm_filter(lam):
    """Ancestral sampling (Ho et al. 2020, Alg. 2; posterior variance beta-tilde, eq. 7) of
    one eigen-direction of N(mu, lam) with the exact eps = s (x - a mu) / (a^2 lam + s^2),
    from x_T ~ N(0, 1): the output is N(p mu, q). Returns (p, q)."""
    alphas, sigmas = _table()
    p, q = np.zeros_like(lam), np.ones_like(lam)
    for i in range(49, -1, -1):
        a, s = alphas[i], sigmas[i]
        e = s / (a * a * lam + s * s)
        x0_x, x0_mu = (1 - s * e) / a, s * e  # x0 = x0_x x + x0_mu mu
        if i == 0:  # the last step returns x0 (z = 0)
            return x0_x * p + x0_mu, x0_x**2 * q
        a_s, s_s = alphas[i - 1], sigmas[i - 1]
        var = s_s**2 / s**2 * (s**2 - (a / a_s) ** 2 * s_s**2)  # beta-tilde
        c = math.sqrt(s_s**2 - var)  # the posterior mean = a_s x0 + c eps
        gain = a_s * x0_x + c * e
        p, q = gain * p + a_s * x0_mu - c * e * a, gain**2 * q + var
    raise AssertionError("unreachable")


def _dpm_filter(lam, process, steps):
    """DPM-Solver++(2M) (Lu et al. 2022, Alg. 2; first order at the first step, and at the last
    when fewer than 15) of one eigen-direction, on diffusio's default grid for the process: the
    output is N(p mu, r^2) with x = p mu + r x_T tracked exactly. Returns (p, r^2)."""
    grid = time_grid(process, steps, process.solver_spacing)
    tt = torch.tensor(grid, dtype=torch.float64)
    alphas, sigmas = process.alpha(tt).numpy(), process.sigma(tt).numpy()
    lams = np.log(alphas / sigmas)
    p, r = np.zeros_like(lam), np.ones_like(lam)
    prev, h_prev = None, None
    for i in range(steps):
        a, s, a_next, s_next = alphas[i], sigmas[i], alphas[i + 1], sigmas[i + 1]
        h = lams[i + 1] - lams[i]
        e = s / (a * a * lam + s * s)
        x0 = (((1 - s * e) * p + s * e * a) / a, (1 - s * e) * r / a)
        if prev is None or (steps < 15 and i == steps - 1):
            d = x0
        else:
            w = 0.5 * h / h_prev
            d = tuple((1 + w) * now - w * old for now, old in zip(x0, prev, strict=True))
        p, r = (s_next / s * v - a_next * math.expm1(-h) * dv for v, dv in zip((p, r), d,
                                                                              strict=True))
        prev, h_prev = x0, h
    return p, r**2


def _spectral(filter_fn, m, sigma):
    """Output mean and variances of a sampler whose action on each eigen-direction of the
    posterior covariance is (p, q): mean V diag(p) V^T m, variances diag(V diag(q) V^T)."""
    lam, V = np.linalg.eigh(sigma)
    p, q = filter_fn(np.clip(lam, 0.0, None))
    return V @ (p * (V.T @ m)), (V**2) @ q


def test_the_propagators_are_exact_in_their_limits():
    # The table above is diffusio's vp-quadratic table; DPM-Solver++ with many steps solves the
    # probability-flow ODE, whose map from t_max to t_min is affine in closed form:
    # x_min = a_min mu + g (x_T - a_T mu), g = sqrt((a_min^2 lam + s_min^2)/(a_T^2 lam + s_T^2)).
    process = make_process("vp-quadratic")
    alphas, sigmas = _table()
    table = process.discrete()
    np.testing.assert_allclose(alphas, table.alphas.numpy(), rtol=1e-13)
    np.testing.assert_allclose(sigmas, table.sigmas.numpy(), rtol=1e-13)
    lam = np.array([0.01, 0.1, 0.5, 1.0])
    ends = process.alpha(torch.tensor([process.t_max, process.t_min], dtype=torch.float64))
    (a_T, a_min) = ends.numpy()
    s_T, s_min = math.sqrt(1 - a_T**2), math.sqrt(1 - a_min**2)
    g = np.sqrt((a_min**2 * lam + s_min**2) / (a_T**2 * lam + s_T**2))
    p, q = _dpm_filter(lam, process, 2000)
    np.testing.assert_allclose(p, a_min - g * a_T, rtol=1e-6)
    np.testing.assert_allclose(q, g**2, rtol=1e-5)


def _moments(samples, n, c):
    flat = samples[:, n].reshape(samples.shape[0], -1)[:, ~c]
    return flat.mean(0).numpy(), flat.var(0).numpy()


@pytest.mark.parametrize("sampler, steps", [("ddpm", 50), ("dpm-solver++", 10)])
def test_impute_with_the_oracle_samples_the_smoothers_predictive(problem, sampler, steps):
    ssm, y, observed, mean, cov = problem
    process = make_process("vp-quadratic")
    model = GaussianWindowOracle(mean, cov, K, L, process).model()
    S = 2000
    samples = impute(model, torch.as_tensor(y), torch.as_tensor(observed), n_samples=S,
                     sampler=sampler, steps=steps, batch_size=1500, seed=0)  # fmt: skip
    assert samples.shape == (S, 3, K, L) and samples.dtype == torch.float64
    ct = torch.as_tensor(observed)
    assert torch.equal(samples[:, ct], torch.as_tensor(y)[ct].expand(S, -1))  # exact
    pm, pv = predictive(ssm, y, observed)
    filter_fn = _ddpm_filter if sampler == "ddpm" else lambda lam: _dpm_filter(lam, process, 10)
    for n in range(3):
        c = observed[n].reshape(-1)
        m, sigma = _posterior(mean, cov, y[n].reshape(-1), c)
        exact_mean, exact_var = pm[n].reshape(-1)[~c], pv[n].reshape(-1)[~c]
        out_mean, out_var = _spectral(filter_fn, m, sigma)  # the sampler's exact output
        got_mean, got_var = _moments(samples, n, c)
        se_mean, se_var = np.sqrt(out_var / S), out_var * math.sqrt(2 / (S - 1))
        assert np.all(np.abs(got_mean - out_mean) <= Z * se_mean)
        assert np.all(np.abs(got_var - out_var) <= Z * se_var)
        # against the smoother: Monte-Carlo error plus the sampler's discretisation gap
        assert np.all(np.abs(got_mean - exact_mean) <= Z * se_mean + np.abs(out_mean - exact_mean))
        assert np.all(np.abs(got_var - exact_var) <= Z * se_var + np.abs(out_var - exact_var))
    # reproducible: the same seed and batch size give the same draws
    again = impute(model, torch.as_tensor(y[:1]), torch.as_tensor(observed[:1]), n_samples=4,
                   sampler=sampler, steps=steps, seed=5)  # fmt: skip
    same = impute(model, torch.as_tensor(y[:1]), torch.as_tensor(observed[:1]), n_samples=4,
                  sampler=sampler, steps=steps, seed=5)  # fmt: skip
    assert torch.equal(again, same)


def _inpaint_moments(mean, cov, y, c):
    """The exact output of ancestral sampling with the *unconditional* oracle and replacement
    (Inpaint) on the whole window: after each step the conditioned entries are set to
    a_s y_c + s_s z (fresh z), at the end to y_c; mean and covariance propagated linearly."""
    alphas, sigmas = _table()
    d = len(mean)
    M, C = np.zeros(d), np.eye(d)

    def replace(M, C, a, s):
        M, C = M.copy(), C.copy()
        M[c] = a * y[c]
        C[c, :], C[:, c] = 0.0, 0.0
        C[c, c] = s * s
        return M, C

    M, C = replace(M, C, alphas[49], sigmas[49])  # the constraint on the prior draw
    for i in range(49, -1, -1):
        a, s = alphas[i], sigmas[i]
        E = s * np.linalg.inv(a * a * cov + s * s * np.eye(d))  # eps = E (x - a mean)
        X = (np.eye(d) - s * E) / a  # x0 = X x + s E mean
        if i == 0:
            M, C = X @ M + s * E @ mean, X @ C @ X.T
            M[c] = y[c]
            return M[~c], np.diag(C)[~c]
        a_s, s_s = alphas[i - 1], sigmas[i - 1]
        var = s_s**2 / s**2 * (s**2 - (a / a_s) ** 2 * s_s**2)
        k = math.sqrt(s_s**2 - var)
        B = a_s * X + k * E
        M = B @ M + (a_s * s - k * a) * E @ mean
        C = B @ C @ B.T + var * np.eye(d)
        M, C = replace(M, C, a_s, s_s)
    raise AssertionError("unreachable")


def test_unconditional_model_with_inpaint_matches_its_exact_output(problem):
    # The paper's ablation: the same oracle, unconditional, observed entries imposed by
    # replacement at every step. Its output is exactly computable, and it is not the
    # posterior: replacement only approximates conditioning.
    ssm, y, observed, mean, cov = problem
    process = make_process("vp-quadratic")
    model = GaussianWindowOracle(mean, cov, K, L, process, conditional=False).model()
    S = 2000
    samples = impute(model, torch.as_tensor(y), torch.as_tensor(observed), n_samples=S,
                     sampler="ddpm", steps=50, seed=1)  # fmt: skip
    ct = torch.as_tensor(observed)
    assert torch.equal(samples[:, ct], torch.as_tensor(y)[ct].expand(S, -1))
    worse = []
    for n in range(3):
        c = observed[n].reshape(-1)
        out_mean, out_var = _inpaint_moments(mean, cov, y[n].reshape(-1), c)
        got_mean, got_var = _moments(samples, n, c)
        assert np.all(np.abs(got_mean - out_mean) <= Z * np.sqrt(out_var / S))
        assert np.all(np.abs(got_var - out_var) <= Z * out_var * math.sqrt(2 / (S - 1)))
        m, sigma = _posterior(mean, cov, y[n].reshape(-1), c)
        cond_mean, _ = _spectral(_ddpm_filter, m, sigma)
        sd = np.sqrt(np.diag(sigma))
        worse.append((np.abs(out_mean - m) / sd).max() > 10 * (np.abs(cond_mean - m) / sd).max())
    assert all(worse)  # conditioning beats replacement, exactly (the paper's control)


def test_impute_rejects_bad_arguments(problem):
    ssm, y, observed, mean, cov = problem
    model = GaussianWindowOracle(mean, cov, K, L, make_process("vp-quadratic")).model()
    args = (model, torch.as_tensor(y), torch.as_tensor(observed))
    with pytest.raises(ValueError, match="n_samples"):
        impute(*args, n_samples=0)
    with pytest.raises(ValueError, match="unknown sampler"):
        impute(*args, n_samples=2, sampler="heun")
    with pytest.raises(ValueError, match="same shape"):
        impute(model, torch.as_tensor(y), torch.as_tensor(observed[:, :2]), n_samples=2)
    nan = torch.as_tensor(y).clone()
    nan[0, 0, 0] = math.nan
    cond = torch.as_tensor(observed).clone()
    cond[0, 0, 0] = True
    with pytest.raises(ValueError, match="NaN"):
        impute(model, nan, cond, n_samples=2)


# -- training: the transform, the set, the config ----------------------------------------------


def _windows(n=24, k=2, length=10, seed=0):
    g = gen(seed)
    phase = 6.28 * torch.rand(n, k, 1, generator=g)
    x = torch.sin(phase + 0.6 * torch.arange(length)) + 0.05 * torch.randn(n, k, length,
                                                                             generator=g)
    observed = torch.rand(n, k, length, generator=g) < 0.8
    return torch.where(observed, x, torch.nan), observed


@pytest.mark.parametrize("strategy", ["random", "historical", "mix", "forecast"])
def test_targets_transform_draws_csdi_training_batches(strategy):
    x, observed = _windows()
    data = training_set(x, observed, strategy, horizon=3)
    assert torch.isfinite(data.x0).all() and torch.equal(data.mask.bool(), observed)
    assert data.net_options == {"n_features": 2}
    batch = data.batch(torch.arange(len(data)), gen(7))
    assert set(batch.cond) == {"observed", "cond_mask"}  # only what CSDINet takes
    targets, cond = batch.mask.bool(), batch.cond["cond_mask"].bool()
    assert not (targets & ~observed).any()  # targets are observed entries
    assert torch.equal(cond, observed & ~targets)
    assert torch.equal(batch.cond["observed"], torch.where(cond, data.x0, 0.0))
    assert all(torch.isfinite(v).all() for v in (batch.x0, *batch.cond.values()))
    if strategy == "forecast":
        assert torch.equal(targets[..., :-3], torch.zeros_like(targets[..., :-3]))
        assert torch.equal(targets[..., -3:], observed[..., -3:])
    else:
        assert targets.any() and cond.any()
    again = data.batch(torch.arange(len(data)), gen(7))  # deterministic given the generator
    assert torch.equal(again.mask, batch.mask)
    if strategy != "forecast":
        assert not torch.equal(data.batch(torch.arange(len(data)), gen(8)).mask, batch.mask)


def test_forecast_fraction_and_bad_transforms():
    x, observed = _windows(n=400)
    stamps = torch.arange(10.0).expand(400, 10)
    batch = Batch(torch.nan_to_num(x), {"stale": torch.zeros(400), "timestamps": stamps},
                  observed.float())  # fmt: skip
    forecast = CSDITargets("forecast", 2).targets(observed, gen(0))
    out = CSDITargets("random", horizon=2, forecast_fraction=1.0)(batch, gen(1))
    assert torch.equal(out.mask.bool(), forecast)
    # an unknown key never reaches the network; timestamps, which CSDINet takes, pass
    assert set(out.cond) == {"observed", "cond_mask", "timestamps"}
    half = CSDITargets("random", horizon=2, forecast_fraction=0.5)(batch, gen(1)).mask.bool()
    share = (half == forecast).flatten(1).all(1).double().mean()
    # 1/2 of the windows (a random draw equal to the forecast pattern has probability < 1e-3):
    # within 4 binomial standard errors of 400 windows
    assert abs(float(share) - 0.5) <= 4 * math.sqrt(0.25 / 400) + 1e-3
    with pytest.raises(ValueError, match="horizon"):
        CSDITargets("forecast")
    with pytest.raises(ValueError, match="strategy"):
        CSDITargets("block")
    with pytest.raises(ValueError, match="observed mask"):
        CSDITargets()(Batch(torch.zeros(2, 2, 3)), gen(0))
    with pytest.raises(ValueError, match="observed but not finite"):
        training_set(torch.full((2, 2, 3), torch.nan), torch.ones(2, 2, 3, dtype=torch.bool))


def test_config_is_csdis_recipe_on_the_platform():
    cfg = csdi_config(5, steps=100, net_options={"channels": 16})
    assert (cfg.process, cfg.time_distribution, cfg.prediction, cfg.net) == (
        "vp-quadratic", "discrete", "eps", "csdi")
    assert (cfg.batch_size, cfg.lr, cfg.weight_decay, cfg.steps) == (16, 1e-3, 1e-6, 100)
    assert cfg.net_options == {"channels": 16, "n_features": 5} and not cfg.normalize
    process = make_process(cfg.process, **cfg.process_options)
    beta = torch.linspace(1e-2, math.sqrt(0.5), 50, dtype=torch.float64) ** 2
    torch.testing.assert_close(process.discrete().betas, beta, rtol=1e-12, atol=1e-15)
    assert csdi_config(steps=10, lr=5e-4).lr == 5e-4 and CSDI_DEFAULTS["lr"] == 1e-3


# -- a tiny trained CSDINet ---------------------------------------------------------------------

TINY = dict(channels=8, layers=1, heads=2, ff_dim=8, diffusion_embedding_dim=8,
            time_embedding_dim=8, feature_embedding_dim=2)  # fmt: skip


def _weights(run):
    from diffusio.io import read_safetensors

    return read_safetensors(run / "ema.safetensors")[0]


def test_tiny_csdinet_trains_imputes_and_resumes(tmp_path):
    x, observed = _windows()
    model, summary = train_csdi(x, observed, tmp_path / "a", steps=12, net_options=TINY,
                                progress=False, metadata={"note": "tiny"})  # fmt: skip
    assert summary["step"] == 12 and math.isfinite(summary["loss"])
    assert isinstance(model.net, CSDINet) and model.net.conditional
    loaded, info = load_csdi_run(tmp_path / "a")
    assert (info["n_features"], info["window"], info["note"]) == (2, 10, "tiny")
    samples = impute(loaded, x[:5], observed[:5], n_samples=3, sampler="ddpm", seed=0)
    assert samples.shape == (3, 5, 2, 10) and torch.isfinite(samples).all()
    assert torch.equal(samples[:, observed[:5]], x[:5][observed[:5]].expand(3, -1))
    missing = ~observed[:5]
    assert not torch.equal(samples[0][missing], samples[1][missing])  # the samples differ
    fast = impute(loaded, x[:5], observed[:5], n_samples=3, sampler="dpm-solver++", steps=5,
                  batch_size=4, seed=0)  # fmt: skip
    assert torch.equal(fast, impute(loaded, x[:5], observed[:5], n_samples=3,
                                    sampler="dpm-solver++", steps=5, batch_size=4, seed=0))
    assert not torch.equal(fast, impute(loaded, x[:5], observed[:5], n_samples=3,
                                        sampler="dpm-solver++", steps=5, batch_size=4, seed=1))
    # resume: a run "killed" after its step-6 checkpoint and resumed ends with the weights of
    # the uninterrupted run (the targets are drawn from the trainer's checkpointed generator)
    train_csdi(x, observed, tmp_path / "b", steps=12, net_options=TINY, progress=False,
               save_every=6)  # fmt: skip
    shutil.rmtree(tmp_path / "b" / "checkpoint-12")
    (tmp_path / "b" / "latest").unlink()
    train_csdi(x, observed, tmp_path / "b", steps=12, net_options=TINY, progress=False,
               save_every=6, resume=True)  # fmt: skip
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_unconditional_ablation_trains_and_imputes_by_inpainting(tmp_path):
    x, observed = _windows(n=8)
    model, _ = train_csdi(x, observed, tmp_path, steps=4, progress=False,
                          net_options={**TINY, "conditional": False})  # fmt: skip
    assert not model.net.conditional and model.net.input.in_features == 1
    samples = impute(model, x, observed, n_samples=2, sampler="ddim", steps=5, seed=0)
    assert torch.equal(samples[:, observed], x[observed].expand(2, -1))
    assert torch.isfinite(samples).all()
