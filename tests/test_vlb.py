"""The variational bound against exact answers: Gaussian data has exactly Gaussian reverse
kernels, so a model whose kernels are exact (mean *and* variance) has a bound whose expectation is
the data's entropy plus KL(q(x_T) || p(x_T)), and its ancestral chain samples the data exactly."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from diffusio.core.model import DiffusionModel
from diffusio.core.processes import make_process
from diffusio.core.samplers import sample
from diffusio.core.vlb import (
    normal_kl,
    prior_kl,
    step_coefficients,
    time_indices,
    vlb,
    vlb_term,
)

MEAN, STD = 0.7, 0.4  # data N(MEAN, STD^2) in every dimension


def exact_reverse_variance(c):
    """Variance of the true reverse kernel q(x_{i-1} | x_i) of N(MEAN, STD^2) data."""
    var_prev = c.alpha_prev**2 * STD**2 + c.sigma_prev**2
    var_now = c.alpha**2 * STD**2 + c.sigma**2
    return var_prev - (c.alpha / c.alpha_prev) ** 2 * var_prev**2 / var_now


class ExactKernel(nn.Module):
    """Outputs (x0-prediction, v) that make the model's p(x_{i-1} | x_i) equal the true reverse
    kernel q(x_{i-1} | x_i) of Gaussian data: mean and variance from the joint Gaussian. With
    ``fixed=True`` only the x0-prediction: the exact mean with the fixed beta-tilde variance."""

    def __init__(self, process, fixed=False):
        super().__init__()
        self.process, self.fixed = process, fixed

    def forward(self, x, t):
        index = time_indices(self.process, t)
        c = step_coefficients(self.process, index, x)
        var_prev = c.alpha_prev**2 * STD**2 + c.sigma_prev**2
        var_now = c.alpha**2 * STD**2 + c.sigma**2
        a = c.alpha / c.alpha_prev
        mean = c.alpha_prev * MEAN + a * var_prev / var_now * (x - c.alpha * MEAN)
        # posterior_mean(x0_hat, x) = A x + B x0_hat  ->  solve for x0_hat
        big_a = a * c.sigma_prev**2 / c.sigma**2
        big_b = c.alpha_prev * c.beta / c.sigma**2
        x0_hat = (mean - big_a * x) / big_b
        if self.fixed:
            return x0_hat
        log_beta, log_tilde = torch.log(c.beta), c.log_beta_tilde_clipped
        v = 2.0 * (torch.log(exact_reverse_variance(c)) - log_tilde) / (log_beta - log_tilde) - 1
        return torch.cat([x0_hat, v.expand_as(x)], dim=1)


def exact_model(num_steps=40, fixed=False):
    process = make_process("vp-linear", num_steps=num_steps)
    head = "fixed" if fixed else "learned"
    return DiffusionModel(ExactKernel(process, fixed), process, "x0", variance_head=head)


def test_exact_kernels_make_the_bound_the_entropy_plus_prior_mismatch():
    model = exact_model()
    dim, n = 2, 4000
    gen = torch.Generator().manual_seed(0)
    x0 = MEAN + STD * torch.randn(n, dim, generator=gen, dtype=torch.float64)
    out = vlb(model, x0, generator=gen)
    entropy = dim * 0.5 * math.log(2 * math.pi * math.e * STD**2)
    table = model.process.discrete()
    a_T, s_T = float(table.alphas[-1]), float(table.sigmas[-1])
    var_T = a_T**2 * STD**2 + s_T**2
    mismatch = dim * 0.5 * (var_T + (a_T * MEAN) ** 2 - 1.0 - math.log(var_T))
    total = out["total"]
    stderr = float(total.std()) / math.sqrt(n)
    assert abs(float(total.mean()) - (entropy + mismatch)) < 4 * stderr
    assert out["terms"].shape == (n, 40) and out["prior"].shape == (n,)

    # The same means with the fixed beta-tilde variance: each step adds, in expectation, exactly
    # KL(N(m, W) || N(m, beta-tilde)) per dimension (W the true reverse variance), because
    # E_{x0 | x_i} KL(q(. | x_i, x0) || p) = E KL(q(. | x_i, x0) || q(. | x_i)) + KL(q(. | x_i) || p).
    fixed = vlb(exact_model(fixed=True), x0, generator=torch.Generator().manual_seed(0))["total"]
    c = step_coefficients(model.process, torch.arange(40), torch.zeros(40, 1, dtype=torch.float64))
    ratio = exact_reverse_variance(c) / torch.exp(c.log_beta_tilde_clipped)
    excess = dim * float((0.5 * (ratio - 1 - torch.log(ratio))).sum())
    fixed_se = float(fixed.std()) / math.sqrt(n)
    assert abs(float(fixed.mean()) - (entropy + mismatch + excess)) < 4 * fixed_se
    assert excess > 8 * max(stderr, fixed_se)  # the check above can tell the two apart


def test_exact_learned_variance_chain_samples_the_data():
    model = exact_model()
    table = model.process.discrete()
    a_T, s_T = float(table.alphas[-1]), float(table.sigmas[-1])
    n = 20_000
    gen = torch.Generator().manual_seed(1)
    x_T = a_T * MEAN + math.sqrt(a_T**2 * STD**2 + s_T**2) * torch.randn(
        n, 1, generator=gen, dtype=torch.float64
    )  # the exact q(x_T), so the exact chain ends exactly at the data distribution
    x = sample(model, (n, 1), "ddpm", seed=2, x_init=x_T)
    # mean within 4 standard errors; variance within 4 of its standard error sqrt(2/n) var
    assert abs(float(x.mean()) - MEAN) < 4 * STD / math.sqrt(n)
    assert abs(float(x.var()) / STD**2 - 1.0) < 4 * math.sqrt(2.0 / n)
    fixed = sample(model, (n, 1), "ddpm", seed=2, x_init=x_T, kernel_variance="posterior")
    assert abs(float(fixed.var()) / STD**2 - 1.0) > 8 * math.sqrt(2.0 / n)  # beta-tilde: wrong


def test_vlb_terms_are_kls_and_the_decoder():
    model = exact_model(num_steps=25)
    x0 = torch.full((3, 2), MEAN, dtype=torch.float64)
    noise = torch.zeros_like(x0)
    index = torch.tensor([0, 1, 24])
    terms = vlb_term(model, x0, index, noise=noise)
    assert torch.isfinite(terms).all()
    kl = normal_kl(torch.zeros(2), torch.zeros(2), torch.ones(2), torch.zeros(2))
    assert torch.allclose(kl, torch.full((2,), 0.5))
    # KL(N(a x0, s^2) || N(0, 1)) in closed form
    table = model.process.discrete()
    a, s = float(table.alphas[-1]), float(table.sigmas[-1])
    expected = 2 * 0.5 * (s**2 + (a * MEAN) ** 2 - 1 - 2 * math.log(s))
    assert torch.allclose(prior_kl(model.process, x0), torch.full((3,), expected).double())


def test_learned_variance_errors_are_clear():
    with pytest.raises(ValueError, match="num_steps > 20"):
        make_process("vp-linear", num_steps=10)  # its betas would exceed 1
    process = make_process("vp-linear", num_steps=25)
    with pytest.raises(ValueError, match="variance head"):
        DiffusionModel(nn.Identity(), process, "eps", variance_head="guess")
    model = DiffusionModel(lambda x, t: x, process, "eps", variance_head="learned")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="twice the input"):
        model.predict(torch.zeros(2, 3), 0.5)
    with pytest.raises(ValueError, match="discrete grid"):
        time_indices(process, torch.tensor([0.123456]))
    fixed = DiffusionModel(nn.Identity(), process, "eps")
    with pytest.raises(ValueError, match="learned"):
        sample(fixed, (2, 2), "ddpm", kernel_variance="learned")
    with pytest.raises(ValueError, match="kernel variance 'guess'; valid: posterior, beta"):
        sample(fixed, (2, 2), "ddpm", kernel_variance="guess")


def test_a_learned_variance_run_trains_saves_and_samples(tmp_path):
    from diffusio.train.config import load_config, load_run
    from diffusio.train.trainer import Trainer

    config = load_config(
        "toy-swissroll", steps=20, n_data=512, batch_size=64, save_every=0,
        variance_head="learned", weighting="vlb", time_distribution="discrete",
        process_options={"num_steps": 40},
    )  # fmt: skip
    Trainer(config, tmp_path, progress=False).fit()
    model, _, _ = load_run(tmp_path)
    assert model.variance_head == "learned" and model.net.out_dim == 4
    x = sample(model, (16, 2), "ddpm", seed=0)  # the learned variance by default
    assert x.shape == (16, 2) and torch.isfinite(x).all()
    bound = vlb(model, torch.zeros(4, 2))["total"]
    assert bound.shape == (4,) and torch.isfinite(bound).all()


# --------------------------------------------------------------------------- 8-bit decoder
def test_discretized_decoder_is_a_distribution_over_the_bins():
    """exp(-nll) over all 256 bins sums to 1 for any Gaussian, and a wide Gaussian gives each
    inner bin its density times the bin width (2/255)."""
    from diffusio.core.vlb import discretized_gaussian_nll, quantize

    grid = torch.linspace(-1, 1, 256, dtype=torch.float64)
    for mean, std in [(0.0, 0.3), (0.95, 0.01), (-1.3, 0.2), (0.2, 3e-4)]:
        m = torch.full_like(grid, mean)
        logvar = torch.full_like(grid, 2 * math.log(std))
        p = torch.exp(-discretized_gaussian_nll(grid, m, logvar))
        assert abs(float(p.sum()) - 1.0) < 1e-9
    m, logvar = torch.zeros(3, dtype=torch.float64), torch.full((3,), 2 * math.log(0.5))
    x = grid[[100, 128, 160]]
    density = torch.exp(-0.5 * x**2 / 0.25) / math.sqrt(2 * math.pi * 0.25)
    p = torch.exp(-discretized_gaussian_nll(x, m, logvar.to(x)))
    torch.testing.assert_close(p, density * 2 / 255, rtol=1e-4, atol=0)
    torch.testing.assert_close(quantize(grid), grid, rtol=0, atol=1e-12)
    assert float((quantize(grid + 0.003) - grid).abs().max()) < 1e-12


class TwoHead(nn.Module):
    """eps = a * x (mean head), v = b (variance head)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(0.3))
        self.b = nn.Parameter(torch.tensor(0.1))

    def forward(self, x, t):
        return torch.cat([self.a * x, self.b.expand_as(x)], dim=1)


def test_hybrid_loss_is_simple_plus_weighted_bits_with_the_mean_frozen():
    """L_hybrid = L_simple + lambda T L_i (bits/dim) in value; the mean's gradient comes from
    L_simple alone (improved DDPM Sec. 3.1); the variance gets lambda T dL_i/dv."""
    from diffusio.core.losses import diffusion_loss
    from diffusio.core.timesteps import make_time_distribution

    process = make_process("vp-cosine", num_steps=50)
    model = DiffusionModel(TwoHead(), process, "eps", variance_head="learned")
    x0 = torch.rand(16, 1, 4, 4, dtype=torch.float64) * 2 - 1
    model = model.double()
    sampler = make_time_distribution("discrete", process)

    def run(weighting, **kw):
        model.zero_grad()
        gen = torch.Generator().manual_seed(5)
        loss = diffusion_loss(
            model, x0, weighting=weighting, time_distribution=sampler, generator=gen,
            reduce="none", **kw,
        )  # fmt: skip
        loss.sum().backward()
        return loss.detach(), model.net.a.grad.clone(), model.net.b.grad.clone()

    hybrid, ga_h, gb_h = run("hybrid", vlb_weight=0.001, decoder="discretized")
    simple, ga_s, gb_s = run("simple")
    assert float(gb_s) == 0.0
    torch.testing.assert_close(ga_h, ga_s)  # the mean is trained by L_simple only
    assert float(gb_h.abs()) > 0
    # the value: recompute L_i with the same t and noise
    gen = torch.Generator().manual_seed(5)
    t, _ = sampler.sample(16, generator=gen, dtype=torch.float64)
    eps = torch.randn(x0.shape, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        nats = vlb_term(model, x0, time_indices(process, t), noise=eps, decoder="discretized")
    expected = simple + 0.001 * 50 * nats / (16 * math.log(2))
    torch.testing.assert_close(hybrid, expected)
    with pytest.raises(ValueError, match="learned variance"):
        diffusion_loss(DiffusionModel(nn.Identity(), process, "eps"), x0, weighting="hybrid")


def test_older_variance_names_still_work():
    """The three variances have one name each now (``variance_head`` of the model,
    ``kernel_variance`` of a reverse step, ``Prediction.variance_interp``); the older
    ``variance`` spelling of each still works, as callers use it."""
    from diffusio.core.model import VARIANCE_HEADS, VARIANCES
    from diffusio.core.samplers import reverse_step

    assert VARIANCES == VARIANCE_HEADS == ("fixed", "learned")
    process = make_process("vp-linear", num_steps=40)
    net = ExactKernel(process, fixed=False)
    old = DiffusionModel(net, process, "x0", variance="learned")
    new = DiffusionModel(net, process, "x0", variance_head="learned")
    assert old.variance_head == new.variance_head == new.variance == "learned"
    assert DiffusionModel(net, process, "x0", "learned").variance_head == "learned"
    assert DiffusionModel(net, process, "x0").variance_head == "fixed"
    assert DiffusionModel(net, process, "x0", variance="learned", variance_head="learned")
    with pytest.raises(ValueError, match="older name"):
        DiffusionModel(net, process, "x0", variance="fixed", variance_head="learned")
    with pytest.raises(AttributeError):
        new.variance = "fixed"  # read-only alias

    fixed = DiffusionModel(ExactKernel(process, fixed=True), process, "x0")
    times = process.discrete().times
    t, s = float(times[20]), float(times[19])
    x = torch.randn(6, 1, dtype=torch.float64)
    pred = new.predict(x, torch.full((6,), t, dtype=torch.float64))
    assert pred.variance_interp is not None and pred.variance is pred.variance_interp
    assert pred.with_eps(pred.eps).variance_interp is pred.variance_interp
    with pytest.raises(AttributeError):
        pred.variance = None  # read-only alias
    assert fixed.variance_head == "fixed" and fixed.predict(x, torch.full((6,), t)).variance is None

    for kernel in ("posterior", "beta", "learned"):
        a = sample(new, (8, 1), "ddpm", steps=10, seed=3, kernel_variance=kernel)
        b = sample(new, (8, 1), "ddpm", steps=10, seed=3, variance=kernel)
        assert torch.equal(a, b)
        z = torch.randn(6, 1, dtype=torch.float64)
        s_new = reverse_step(new, x, t, s, kernel_variance=kernel, noise=z)
        s_old = reverse_step(new, x, t, s, variance=kernel, noise=z)
        assert torch.equal(s_new.x_next, s_old.x_next) and torch.equal(
            torch.as_tensor(s_new.std), torch.as_tensor(s_old.std)
        )
    with pytest.raises(ValueError, match="older name"):
        sample(new, (8, 1), "ddpm", steps=10, variance="beta", kernel_variance="posterior")
    valid = "valid: kernel_variance, timesteps, discrete, spacing, noise_scale$"
    with pytest.raises(ValueError, match=valid):
        sample(new, (8, 1), "ddpm", steps=10, eta=1.0)  # the older name is not advertised
    with pytest.raises(ValueError, match="variance_head='learned'"):
        reverse_step(fixed, x, t, s, kernel_variance="learned")
