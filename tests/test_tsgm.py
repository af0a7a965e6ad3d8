"""Lim et al.'s TSGM and its comparisons (diffusio.timeseries.tsgm): TimeGAN's min-max windows;
shapes and dtypes of every generator; the recursive sampler conditions step t on the latent it
drew at t - 1 (h_0 = 0), through a recording mock; with the exact conditional score of a
linear-Gaussian AR(1) latent the recursive generator reproduces the AR(1)'s coefficient and
variances; the Gaussian baseline reproduces the training covariance and the VAR fit recovers a
known VAR(1), each within a Monte-Carlo standard error computed here; a few training steps
lower both TSGM losses and DataDDPM's; save/load round trips; the one-line errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.linalg import solve_discrete_lyapunov
from torch import nn

from diffusio.core.model import DiffusionModel
from diffusio.core.processes import make_process
from diffusio.timeseries.sources import sines
from diffusio.timeseries.tsgm import (
    TSGM,
    DataDDPM,
    GaussianBaseline,
    VARBaseline,
    generate_latents,
    load,
    minmax_inverse,
    minmax_windows,
    save,
)

Z = 5.0  # Monte-Carlo tolerance in standard errors (a false failure has odds < 1e-6 per check)
TINY = dict(latent_dim=6, hidden=32, depth=2, embed_dim=16)


def _sines(n: int, length: int, features: int, seed: int = 0) -> torch.Tensor:
    """TimeGAN's sines in TimeGAN's layout (N, L, D)."""
    return sines(n, length, features, torch.Generator().manual_seed(seed)).permute(0, 2, 1)


@pytest.fixture(scope="module")
def data() -> torch.Tensor:
    return _sines(64, 6, 2)


@pytest.fixture(scope="module")
def fitted(data) -> dict[str, object]:
    """Every generator fitted (briefly) on the same windows."""
    tsgm = TSGM(2, length=6, sde="sub-vp", use_alt=True, **TINY)
    ddpm = DataDDPM(2, length=6, hidden=32, depth=2, embed_dim=16)
    return {
        "TSGM": tsgm.fit(data, steps_ae=3, steps_score=3, batch_size=16),
        "DataDDPM": ddpm.fit(data, steps=3, batch_size=16),
        "GaussianBaseline": GaussianBaseline().fit(data),
        "VARBaseline": VARBaseline(p=2).fit(data),
    }


def _generate(name: str, model, n: int, seed: int) -> torch.Tensor:
    if name in ("TSGM", "DataDDPM"):
        return model.generate(n, steps=4, seed=seed)
    return model.generate(n, seed=seed)


# -- data --------------------------------------------------------------------------------------


def test_minmax_windows_timegan_scaling_skips_nan_windows():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(40, 3)) * [1.0, 10.0, 0.1] + [0.0, 5.0, -2.0]
    values[10, 1] = np.nan
    windows, (lo, hi) = minmax_windows(values, length=5)
    assert windows.shape == (36 - 5, 5, 3) and windows.dtype == torch.float64
    lo_ref, hi_ref = np.nanmin(values, 0), np.nanmax(values, 0)
    np.testing.assert_array_equal(lo.numpy(), lo_ref)
    scaled = (values - lo_ref) / (hi_ref - lo_ref + 1e-7)  # TimeGAN's MinMaxScaler
    kept = [s for s in range(36) if not 6 <= s <= 10]  # windows holding row 10 are skipped
    np.testing.assert_array_equal(windows.numpy(), scaled[np.array(kept)[:, None] + np.arange(5)])
    assert float(windows.min()) >= 0 and float(windows.max()) < 1
    back = minmax_inverse(windows, (lo, hi))
    np.testing.assert_allclose(back.numpy(), values[np.array(kept)[:, None] + np.arange(5)],
                               rtol=0, atol=1e-12)
    # stride 4: starts 0, 4, .., 32, of which only 8 holds row 10
    assert minmax_windows(values, length=5, stride=4)[0].shape[0] == 9 - 1


def test_minmax_windows_errors():
    with pytest.raises(ValueError, match="2-D"):
        minmax_windows(np.zeros(30))
    with pytest.raises(ValueError, match="fewer than the window length 24"):
        minmax_windows(np.zeros((10, 2)))
    bad = np.zeros((30, 2))
    bad[:, 1] = np.nan
    with pytest.raises(ValueError, match="column 1 has no observed value"):
        minmax_windows(bad)


# -- shapes, dtypes, errors --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["TSGM", "DataDDPM", "GaussianBaseline", "VARBaseline"])
def test_generate_shapes_and_dtypes(fitted, name):
    x = _generate(name, fitted[name], 5, seed=1)
    assert x.shape == (5, 6, 2) and x.dtype == torch.float64 and x.device.type == "cpu"
    assert torch.isfinite(x).all()
    if name in ("TSGM", "DataDDPM"):  # sigmoid decoder / clamped DDPM: inside [0, 1]
        assert float(x.min()) >= 0 and float(x.max()) <= 1
    assert torch.equal(x, _generate(name, fitted[name], 5, seed=1))  # seeded


def test_errors(data, tmp_path):
    with pytest.raises(ValueError, match=r"expects \(N, 6, 3\)"):
        TSGM(3, length=6, **TINY).fit(data, steps_ae=1, steps_score=1)
    with pytest.raises(ValueError, match=r"min-max scaled to \[0, 1\]"):
        TSGM(2, length=6, **TINY).fit(data * 3, steps_ae=1, steps_score=1)
    with pytest.raises(RuntimeError, match="before fit"):
        TSGM(2, length=6, **TINY).generate(2)
    with pytest.raises(RuntimeError, match="before fit"):
        VARBaseline().generate(2)
    with pytest.raises(ValueError, match="unknown sde 've'"):
        TSGM(2, sde="ve")
    with pytest.raises(ValueError, match="unknown sampler"):
        generate_latents(_mock_model(torch.float32), 2, 3, 4, sampler="nope")
    with pytest.raises(ValueError, match="windows longer than 6"):
        VARBaseline(p=6).fit(data)
    (tmp_path / "generator.json").write_text('{"class": "os.system", "options": {}}')
    with pytest.raises(ValueError, match="not a saved generator"):
        load(tmp_path)


# -- the recursive sampler ---------------------------------------------------------------------


class _RecordingNet(nn.Module):
    """An x0-predicting mock: returns 0.5 prev + 0.25 and records every prev it receives."""

    def __init__(self, dtype: torch.dtype):
        super().__init__()
        self.register_buffer("anchor", torch.zeros((), dtype=dtype))  # sets the model's dtype
        self.prevs: list[torch.Tensor] = []

    def forward(self, x, t, *, prev):
        self.prevs.append(prev.clone())
        return 0.5 * prev + 0.25 + 0 * x


def _mock_model(dtype: torch.dtype) -> DiffusionModel:
    return DiffusionModel(_RecordingNet(dtype), make_process("vp-linear"), prediction="x0")


def _recursion(n: int, length: int, dim: int, dtype: torch.dtype) -> torch.Tensor:
    """h_t = 0.5 h_{t-1} + 0.25 from h_0 = 0: what DDIM returns when x0 is predicted exactly."""
    h, out = torch.zeros(n, dim, dtype=dtype), []
    for _ in range(length):
        h = 0.5 * h + 0.25
        out.append(h)
    return torch.stack(out, 1)


def test_recursive_generation_conditions_on_the_previous_latent():
    model = _mock_model(torch.float64)
    latents = generate_latents(model, 3, 5, 4, sampler="ddim", steps=2, seed=0)
    assert latents.shape == (3, 5, 4) and latents.dtype == torch.float64
    torch.testing.assert_close(latents, _recursion(3, 5, 4, torch.float64), rtol=0, atol=1e-12)
    prevs = model.net.prevs
    assert len(prevs) == 5 * 2  # two DDIM evaluations per time step
    assert all(bool((p == 0).all()) for p in prevs[:2])  # h_0 = 0
    for t in range(1, 5):  # every evaluation at step t sees the latent drawn at t - 1
        for p in prevs[2 * t : 2 * t + 2]:
            assert torch.equal(p, latents[:, t - 1])


def test_tsgm_generate_runs_the_recursion_then_decodes():
    tsgm = TSGM(2, length=5, **TINY)
    tsgm.model = _mock_model(torch.float32)  # the x0-predicting mock in place of the score net
    tsgm.trained_steps[1] = 1  # generate refuses an untrained model
    x = tsgm.generate(3, sampler="ddim", steps=2, seed=0)
    expected = tsgm.autoencoder.decode(_recursion(3, 5, 6, torch.float32))
    torch.testing.assert_close(x, expected.detach().double(), rtol=0, atol=1e-6)
    assert all(p.shape == (3, 6) for p in tsgm.model.net.prevs)


class _AR1Score(nn.Module):
    """The exact conditional score of h_t^s given h_{t-1} for the latent AR(1)
    h_t = a h_{t-1} + q w_t: h_t^s = alpha h_t + sigma eps | h_{t-1} ~ N(alpha a h_{t-1},
    alpha^2 q^2 + sigma^2), so grad log p = -(x - alpha a prev) / (alpha^2 q^2 + sigma^2)."""

    def __init__(self, process, a: float, q: float):
        super().__init__()
        self.process, self.a, self.q = process, a, q
        self.register_buffer("anchor", torch.zeros((), dtype=torch.float64))

    def forward(self, x, t, *, prev):
        alpha = self.process.alpha(t)[:, None]
        var = alpha**2 * self.q**2 + self.process.sigma(t)[:, None] ** 2
        return -(x - alpha * self.a * prev) / var


@pytest.mark.parametrize(("sampler", "sde", "options"),
                         [("pc", "vp-linear", {"snr": 0.04}), ("euler", "sub-vp", {})])
def test_recursive_generation_with_the_exact_score_reproduces_the_ar1(sampler, sde, options):
    """400 steps keep the samplers' own discretisation bias well below the Monte-Carlo error
    (1.8% on a variance here); pc's corrector is unadjusted Langevin, which inflates a
    Gaussian's variance by about snr^2 / (1 - snr^2), so snr 0.04 instead of 0.16."""
    a, q, n, length, dim = 0.8, 0.5, 3000, 6, 2
    process = make_process(sde)
    model = DiffusionModel(_AR1Score(process, a, q), process, prediction="score")
    h = generate_latents(model, n, length, dim, sampler=sampler, steps=400, seed=0, **options)
    # lag-1 regression coefficient pooled over t >= 2: given h_{t-1}, its error is
    # q sum(w h_{t-1}) / sum(h_{t-1}^2), of standard deviation q / sqrt(sum h_{t-1}^2)
    past, now = h[:, :-1], h[:, 1:]
    a_hat = float((now * past).sum() / (past**2).sum())
    assert abs(a_hat - a) < Z * q / math.sqrt(float((past**2).sum())), a_hat
    # per-step variances q^2 (1 - a^2t) / (1 - a^2); a sample variance of m Gaussian values
    # has standard error var * sqrt(2 / m)
    for t in range(length):
        exact = q**2 * (1 - a ** (2 * (t + 1))) / (1 - a**2)
        got = float(h[:, t].pow(2).mean())  # the mean is 0 exactly
        assert abs(got - exact) < Z * exact * math.sqrt(2 / (n * dim)), (t, got, exact)


# -- classical baselines -----------------------------------------------------------------------


def test_gaussian_baseline_reproduces_the_training_covariance():
    noise = torch.randn(400, 4, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    train = _sines(400, 4, 2, seed=3) + 0.05 * noise  # sines alone have a near-singular covariance
    flat = train.reshape(400, -1)
    mean, cov = flat.mean(0), torch.cov(flat.T)
    model = GaussianBaseline().fit(train)
    torch.testing.assert_close(model.cov, cov, rtol=0, atol=1e-12)
    n = 20000
    gen = model.generate(n, seed=5).reshape(n, -1)
    # standard errors of a Gaussian sample's mean and covariance entries:
    # Var(m_i) = S_ii / n, Var(S_ij) = (S_ii S_jj + S_ij^2) / n
    var = torch.diagonal(cov)
    assert ((gen.mean(0) - mean).abs() < Z * (var / n).sqrt()).all()
    se = ((var[:, None] * var[None, :] + cov**2) / n).sqrt()
    assert ((torch.cov(gen.T) - cov).abs() < Z * se).all()


def test_var_least_squares_recovers_a_known_var1():
    A = np.array([[0.5, 0.1, 0.0], [-0.2, 0.4, 0.1], [0.0, 0.2, 0.3]])
    c = np.array([0.1, 0.0, -0.1])
    Q = np.array([[0.04, 0.01, 0.0], [0.01, 0.03, 0.0], [0.0, 0.0, 0.02]])
    rng = np.random.default_rng(0)
    T, length = 10_100, 25
    e = rng.multivariate_normal(np.zeros(3), Q, size=T)
    x = np.zeros((T, 3))
    for t in range(1, T):
        x[t] = c + A @ x[t - 1] + e[t]
    windows = x[100:].reshape(-1, length, 3)  # 400 non-overlapping windows, burn-in dropped
    model = VARBaseline(p=1).fit(windows)
    m = windows.shape[0] * (length - 1)  # regression pairs
    # OLS asymptotics: Cov(vec A_hat) = Q (x) Gamma^{-1} / m, Gamma = Var(x_t) solving
    # Gamma = A Gamma A^T + Q; so sd(A_hat[j, i]) = sqrt(Q_jj (Gamma^{-1})_ii / m)
    gamma_inv = np.linalg.inv(solve_discrete_lyapunov(A, Q))
    se = np.sqrt(np.outer(np.diag(Q), np.diag(gamma_inv)) / m)
    err = np.abs(model.coef[0].numpy() - A)
    assert (err < Z * se).all(), err / se
    # residual covariance: Var(Q_hat_jk) ~ (Q_jj Q_kk + Q_jk^2) / m
    se_q = np.sqrt((np.outer(np.diag(Q), np.diag(Q)) + Q**2) / m)
    assert (np.abs(model.noise_cov.numpy() - Q) < Z * se_q).all()
    sims = model.generate(5, seed=0)
    assert sims.shape == (5, length, 3)


# -- training and persistence ------------------------------------------------------------------


def test_a_few_training_steps_lower_both_losses():
    train = _sines(128, 6, 2, seed=7)
    tsgm = TSGM(2, length=6, **TINY)
    before = tsgm.losses(train, seed=0)
    assert abs(before["score"] - 1) < 0.2  # zero-initialised output: eps-MSE ~ E[eps^2] = 1
    tsgm.fit(train, steps_ae=30, steps_score=30, batch_size=32, lr=3e-3, seed=0)
    after = tsgm.losses(train, seed=0)
    assert after["ae"] < before["ae"] and after["score"] < before["score"], (before, after)
    assert len(tsgm.history["ae"]) == 30 and len(tsgm.history["score"]) == 30
    ddpm = DataDDPM(2, length=6, hidden=32, depth=2, embed_dim=16)
    loss0 = ddpm.losses(train)["score"]
    ddpm.fit(train, steps=30, batch_size=32, lr=3e-3)
    assert ddpm.losses(train)["score"] < loss0


def test_use_alt_keeps_training_the_autoencoder(data):
    tsgm = TSGM(2, length=6, use_alt=True, **TINY).fit(data, steps_ae=2, steps_score=3,
                                                      batch_size=8)
    assert len(tsgm.history["ae"]) == 2 + 3 and tsgm.trained_steps.tolist() == [5, 3]


@pytest.mark.parametrize("name", ["TSGM", "DataDDPM", "GaussianBaseline", "VARBaseline"])
def test_save_load_round_trip(fitted, name, tmp_path):
    model = fitted[name]
    save(model, tmp_path / name)
    assert sorted(p.name for p in (tmp_path / name).iterdir()) == ["generator.json",
                                                                   "model.safetensors"]
    loaded = load(tmp_path / name)
    assert type(loaded) is type(model) and loaded.options() == model.options()
    assert torch.equal(_generate(name, loaded, 4, seed=2), _generate(name, model, 4, seed=2))


def test_save_refuses_an_unfitted_baseline(tmp_path):
    with pytest.raises(RuntimeError, match="fit before saving"):
        save(GaussianBaseline(), tmp_path)
