"""Sparse-sensor field reconstruction: sensors, Voronoi encoding, the network's set behaviour,
kriging against the closed-form posterior, sample CRPS against the Gaussian closed form, and the
conditional sampler against the exact posterior of a Gaussian field (no training)."""

import math

import numpy as np
import pytest
import torch

from diffusio.core.model import DiffusionModel
from diffusio.core.processes import make_process
from diffusio.metrics.probabilistic import crps_ensemble, crps_gaussian
from diffusio.physics import fields as fr
from diffusio.physics.burgers import N_CELLS, X


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _rbf_cov(length: float = 0.1, var: float = 1.0) -> torch.Tensor:
    d = X[:, None] - X[None, :]
    return var * torch.exp(-0.5 * (d / length) ** 2)


def test_sensors_are_distinct_cells_with_exact_readings():
    u = torch.randn(4, N_CELLS, dtype=torch.float64, generator=_gen(1))
    s = fr.sample_sensors(u, torch.tensor([1, 5, 12, 40]), _gen(2), m_max=40)
    idx = fr.cells(s)
    assert s["pos"].shape == (4, 40, 1) and s["valid"].sum(1).tolist() == [1, 5, 12, 40]
    for i in range(4):
        ok = idx[i][s["valid"][i]]
        assert len(set(ok.tolist())) == len(ok)
        assert torch.equal(s["val"][i, s["valid"][i], 0], u[i, ok])  # noise 0: exact
    assert (idx[~s["valid"]] == -1).all()
    noisy = fr.sample_sensors(u, 40, _gen(2), noise=0.1)
    assert not torch.equal(noisy["val"], fr.sample_sensors(u, 40, _gen(2))["val"])
    assert torch.equal(fr.cells(noisy), fr.cells(fr.sample_sensors(u, 40, _gen(2))))
    with pytest.raises(ValueError, match="sensor counts"):
        fr.sample_sensors(u, 0, _gen(0))


def test_voronoi_is_the_nearest_reading():
    u = torch.randn(3, N_CELLS, dtype=torch.float64, generator=_gen(3))
    s = fr.sample_sensors(u, torch.tensor([1, 4, 9]), _gen(4), m_max=9)
    out = fr.voronoi(s["pos"], s["val"], s["valid"], X)
    for i in range(3):
        ok = s["valid"][i].numpy()
        p, v = s["pos"][i, ok, 0].numpy(), s["val"][i, ok, 0].numpy()
        near = np.abs(X.numpy()[:, None] - p[None]).argmin(1)
        assert np.allclose(out[i].numpy(), v[near])


def test_denoiser_ignores_padding_and_sensor_order():
    net = fr.FieldDenoiser(width=16, latents=4, depth=1, heads=2).double().eval()
    u = torch.randn(2, N_CELLS, dtype=torch.float64, generator=_gen(5))
    s = fr.sample_sensors(u, torch.tensor([3, 7]), _gen(6), m_max=10)
    x, t = (
        torch.randn(2, N_CELLS, dtype=torch.float64),
        torch.tensor([0.3, 0.7], dtype=torch.float64),
    )
    out = net(x, t, **s)
    assert out.shape == (2, N_CELLS)
    garbage = {**s, "val": torch.where(s["valid"][..., None], s["val"], 1e3)}
    assert torch.allclose(net(x, t, **garbage), out, atol=1e-10)
    perm = torch.randperm(10, generator=_gen(7))
    shuffled = {k: v[:, perm] if k != "noise" else v for k, v in s.items()}
    assert torch.allclose(net(x, t, **shuffled), out, atol=1e-10)


def test_sensor_transform_is_reproducible():
    from diffusio.data.batch import Batch

    tf = fr.SensorTransform((2, 6), (0.0, 0.1))
    batch = Batch(torch.randn(8, N_CELLS))
    a, b = tf(batch, _gen(9)), tf(batch, _gen(9))
    assert all(torch.equal(a.cond[k], b.cond[k]) for k in ("pos", "val", "valid", "noise"))
    counts = a.cond["valid"].sum(1)
    assert a.cond["valid"].shape == (8, 6) and counts.min() >= 2 and counts.max() <= 6
    noise = a.cond["noise"].flatten()
    assert (
        torch.isclose(noise, torch.tensor(0.0))
        .logical_or(torch.isclose(noise, torch.tensor(0.1 / fr.SCALE)))
        .all()
    )
    with pytest.raises(ValueError, match="m_range"):
        fr.SensorTransform((0, 4))


def test_interpolation_is_exact_at_readings_and_boundaries():
    u = torch.sin(torch.pi * X)[None].expand(2, -1).clone()
    s = fr.sample_sensors(u, 12, _gen(10))
    for kind in ("linear", "cubic"):
        pred = fr.interpolate(s, kind)
        idx = fr.cells(s)
        assert torch.allclose(pred.gather(1, idx), u.gather(1, idx), atol=1e-12)
    lin = fr.interpolate({**s, "val": 2 * s["pos"], "valid": s["valid"]}, "linear")  # a line
    assert lin.shape == (2, N_CELLS)
    with pytest.raises(ValueError, match="kind"):
        fr.interpolate(s, "quadratic")


def test_kriging_matches_the_closed_form_posterior():
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    krig = fr.Kriging()
    krig.mean_ = 0.1 * np.sin(np.pi * X.numpy())
    krig.kernel_ = ConstantKernel(0.5, "fixed") * RBF(0.15, "fixed") + WhiteKernel(1e-3, "fixed")
    u = torch.zeros(1, N_CELLS, dtype=torch.float64)
    s = fr.sample_sensors(u + torch.randn(1, N_CELLS, generator=_gen(11)), 6, _gen(12), noise=0.05)
    mean, std = krig.predict(s)
    ok = s["valid"][0]
    xs = np.concatenate([[0.0, 1.0], s["pos"][0, ok, 0].numpy()])
    ys = np.concatenate([[0.0, 0.0], s["val"][0, ok, 0].numpy()])
    k = lambda a, b: 0.5 * np.exp(-0.5 * ((a[:, None] - b[None]) / 0.15) ** 2)  # noqa: E731
    m_obs = np.interp(xs, np.r_[0.0, X.numpy(), 1.0], np.r_[0.0, krig.mean_, 0.0])
    noise = np.r_[1e-10, 1e-10, np.full(len(xs) - 2, 0.05**2 + 1e-10)]
    k_oo = k(xs, xs) + np.diag(noise + 1e-3)
    k_go, g = k(X.numpy(), xs), X.numpy()
    want = krig.mean_ + k_go @ np.linalg.solve(k_oo, ys - m_obs)
    var = 0.5 + 1e-3 - np.einsum("ij,ji->i", k_go, np.linalg.solve(k_oo, k_go.T))
    assert np.allclose(mean[0].numpy(), want, atol=1e-8)
    assert np.allclose(std[0].numpy(), np.sqrt(var), atol=1e-7)
    assert g.shape == (N_CELLS,)


def test_kriging_fit_recovers_a_known_kernel():
    cov = _rbf_cov(0.08, 0.3) + 1e-6 * torch.eye(N_CELLS, dtype=torch.float64)
    draws = torch.distributions.MultivariateNormal(torch.zeros(N_CELLS, dtype=torch.float64), cov)
    torch.manual_seed(0)
    krig = fr.Kriging(n_fit=64, restarts=0).fit(draws.sample((64,)))
    # the rational quadratic holds the RBF as its alpha -> infinity limit: either may win
    assert krig.family_ in ("rbf", "rational-quadratic"), krig.lml_
    assert krig.lml_["rbf"] > max(krig.lml_["matern32"], krig.lml_["matern52"])
    params = krig.kernel_.get_params()
    # 64 fields x 128 correlated cells: the length scale is pinned to a few percent
    assert abs(params["k1__k2__length_scale"] / 0.08 - 1) < 0.05
    assert abs(params["k1__k1__constant_value"] / 0.3 - 1) < 0.3


def test_sample_crps_matches_the_gaussian_closed_form():
    g = _gen(13)
    n, s = 400, 2000
    mu, sd = (
        torch.randn(n, generator=g, dtype=torch.float64),
        0.5 + torch.rand(n, generator=g, dtype=torch.float64),
    )
    y = mu + sd * torch.randn(n, generator=g, dtype=torch.float64) * 1.5
    draws = mu + sd * torch.randn(s, n, generator=g, dtype=torch.float64)
    diff = crps_ensemble(draws, y, fair=True) - crps_gaussian(mu, sd, y)
    se = float(diff.std()) / math.sqrt(n)  # entries independent: the Monte Carlo error of the mean
    assert abs(float(diff.mean())) < 4 * se
    per_entry = (draws - y).abs().std(0) / math.sqrt(s)  # the first term's Monte Carlo error
    assert (diff.abs() < 5 * per_entry).all()
    truth = torch.zeros(1, n, dtype=torch.float64)
    mask = torch.ones(1, n, dtype=torch.bool)
    got = fr.score_gaussian(
        torch.zeros(1, n), torch.ones(1, n), truth + torch.randn(1, n, generator=g), mask, mask
    )
    assert abs(got["cover"][0] - 0.9) < 4 * math.sqrt(
        0.09 / n
    )  # exact 90% interval, binomial noise
    assert abs(got["crps"][0] - 1 / math.sqrt(math.pi)) < 4 * 0.6 / math.sqrt(
        n
    )  # E CRPS = sd / sqrt(pi)


def test_conditional_sampler_recovers_the_gaussian_posterior():
    """The exact noised posterior of a Gaussian field through :func:`reconstruct`: the samples'
    mean and variance must be the kriging posterior's (the oracle's, checked against sklearn)."""
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel

    process = make_process("vp-cosine")
    cov = _rbf_cov(0.1)
    oracle = fr.GaussianFieldOracle(torch.zeros(N_CELLS), cov, process)
    field = torch.distributions.MultivariateNormal(torch.zeros(N_CELLS, dtype=torch.float64),
                                                   cov + 1e-8 * torch.eye(N_CELLS)).sample((1,))  # fmt: skip
    s = fr.sample_sensors(field, 6, _gen(14), noise=0.1)
    ok = s["valid"][0]
    m, c = oracle.posterior(fr.cells(s)[0, ok], s["val"][0, ok, 0], 0.1)
    gp = GaussianProcessRegressor(
        ConstantKernel(1.0, "fixed") * RBF(0.1, "fixed"), alpha=0.01, optimizer=None
    )
    gm, gs = gp.fit(s["pos"][0, ok].numpy(), s["val"][0, ok, 0].numpy()).predict(
        X.numpy()[:, None], return_std=True
    )
    assert np.allclose(m.numpy(), gm, atol=1e-8) and np.allclose(
        c.diag().sqrt().numpy(), gs, atol=1e-6
    )
    model = DiffusionModel(oracle, process, prediction="eps")
    n = 2000
    x = fr.reconstruct(model, s, n, sampler="dpm-solver++", steps=50, seed=3, scale=1.0)[:, 0]
    sd = c.diag().clamp(min=0).sqrt()
    # Monte Carlo: mean error sd / sqrt(n) per cell, variance relative error sqrt(2 / n) = 3.2%;
    # 50 DPM-Solver++ steps add well under that on a Gaussian
    assert ((x.mean(0) - m).abs() <= 4.5 * sd / math.sqrt(n) + 1e-3).all()
    ratio = x.var(0)[sd > 0.1] / sd[sd > 0.1] ** 2
    assert abs(float(ratio.mean()) - 1) < 0.05 and float((ratio - 1).abs().max()) < 0.2
