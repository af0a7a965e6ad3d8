"""Low-temperature ancestral sampling: ``noise_scale`` multiplies the std of the noise that
ddpm / ddim / :func:`reverse_step` inject and leaves the kernel mean alone (Decision Diffuser's
code samples with 0.5, Ajay et al. 2023)."""

from __future__ import annotations

import math

import pytest
import torch

from diffusio.core.oracle import GaussianMixture
from diffusio.core.processes import make_process
from diffusio.core.samplers import grid_times, reverse_step, sample

MIX = GaussianMixture([[-1.0, 0.5], [1.5, -0.5]], [0.4, 0.6])


@pytest.fixture(scope="module")
def model():
    return MIX.model(make_process("vp-linear"))


@pytest.mark.parametrize(("sampler", "options"), [("ddpm", {}), ("ddim", {"eta": 0.7})])
def test_noise_scale_one_is_unchanged_bit_for_bit(model, sampler, options):
    plain = sample(model, (64, 2), sampler, 12, seed=3, **options)
    ones = sample(model, (64, 2), sampler, 12, seed=3, noise_scale=1.0, **options)
    assert torch.equal(plain, ones)
    lower = sample(model, (64, 2), sampler, 12, seed=3, noise_scale=0.5, **options)
    assert not torch.equal(plain, lower)


@pytest.mark.parametrize("kernel_variance", ["posterior", "beta"])
def test_noise_scale_zero_walks_the_chain_of_kernel_means(model, kernel_variance):
    """ddpm with noise_scale=0 from x_T is the chain x <- mean(x), each mean from the plain
    (noise_scale=1) reverse step, down to the final x0 prediction."""
    x_T = torch.randn(32, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    steps = 15
    out = sample(model, (32, 2), "ddpm", steps, x_init=x_T, noise_scale=0.0,
                 kernel_variance=kernel_variance)  # fmt: skip
    times = grid_times(model.process, steps)
    x = x_T
    for i, t in enumerate(times):
        s = times[i + 1] if i + 1 < len(times) else None
        x = reverse_step(model, x, t, s, kernel_variance=kernel_variance).mean
    torch.testing.assert_close(out, x, rtol=0, atol=1e-12)
    # and the chain is deterministic: no seed needed, no noise drawn
    again = sample(model, (32, 2), "ddpm", steps, x_init=x_T, noise_scale=0.0, seed=9,
                   kernel_variance=kernel_variance)  # fmt: skip
    torch.testing.assert_close(out, again, rtol=0, atol=0)


@pytest.mark.parametrize("scale", [0.0, 0.5, 2.0])
def test_one_step_std_is_scaled_and_mean_kept(model, scale):
    """On the Gaussian-mixture oracle, a step t -> s has std ``scale * sqrt(var_post)`` with
    ``var_post = (s_s^2 / s_t^2)(s_t^2 - (a_t / a_s)^2 s_s^2)`` (eta = 1, ddpm "posterior") or
    ``scale * sqrt(s_t^2 - (a_t / a_s)^2 s_s^2)`` (ddpm "beta"), computed here from the process;
    the mean is the unscaled step's and the draw is ``mean + std z``."""
    process = model.process
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    z = torch.randn(16, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    t, s = 0.6, 0.5
    tt = torch.tensor([t, s], dtype=torch.float64)
    (a_t, a_s), (s_t, s_s) = process.alpha(tt).tolist(), process.sigma(tt).tolist()
    transition = s_t**2 - (a_t / a_s) ** 2 * s_s**2
    var_post = s_s**2 / s_t**2 * transition
    for options, std in [({"eta": 1.0}, math.sqrt(var_post)),
                         ({"kernel_variance": "posterior"}, math.sqrt(var_post)),
                         ({"kernel_variance": "beta"}, math.sqrt(transition))]:  # fmt: skip
        plain = reverse_step(model, x, t, s, noise=z, **options)
        cold = reverse_step(model, x, t, s, noise=z, noise_scale=scale, **options)
        assert float(cold.std) == pytest.approx(scale * std, rel=1e-12, abs=1e-15)
        torch.testing.assert_close(cold.mean, plain.mean, rtol=0, atol=0)
        torch.testing.assert_close(cold.x_next, cold.mean + scale * std * z)


def test_noise_scale_errors(model):
    x = torch.zeros(2, 2, dtype=torch.float64)
    for bad in (-0.1, float("nan"), float("inf")):
        for sampler in ("ddpm", "ddim"):
            with pytest.raises(ValueError, match="noise_scale"):
                sample(model, (2, 2), sampler, 3, noise_scale=bad)
        with pytest.raises(ValueError, match="noise_scale"):
            reverse_step(model, x, 0.5, 0.4, noise_scale=bad)
    with pytest.raises(ValueError, match="no option"):
        sample(model, (2, 2), "euler-maruyama", 3, noise_scale=0.5)
