"""Value guidance (Diffuser, Janner et al. 2022, Sec. 3.2) against exact answers.

Data ``x0 ~ N(m, diag(S))`` (a one-component GaussianMixture: its oracle is the exact model).

One step. ValueGuidance moves the DDPM/DDIM kernel mean by ``Delta``, the displacement of
Diffuser's state updates ``x <- x + scale Var_post grad J``; for a linear value ``J(x) = c.x``
the gradient is c everywhere, so ``Delta = n_guide_steps * scale * Var_post * c`` with
``Var_post = (s_s^2 / s_t^2)(s_t^2 - (a_t / a_s)^2 s_s^2)``, whatever the kernel (ddpm posterior
or beta variance, ddim with any eta), and the kernel's std is unchanged.

End to end. Tilting the data by ``exp(c.x0)`` gives ``N(m + S c, S)``. Its noised marginal is
``p~_t(x) ∝ p_t(x) E[exp(c.x0) | x_t = x]``, and with the Gaussian posterior
``x0 | x_t ~ N(m + a S (x - a m) / (a^2 S + s^2), Sigma)`` (Sigma free of x),
``log E[exp(c.x0) | x_t] = sum_d c_d a S_d x_d / (a^2 S_d + s^2) + const``. So with that
noise-conditional value, ``J_t(x) = sum_d c_d a S_d x_d / (a^2 S_d + s^2)``, and scale 1 the
score shift ``score + grad J_t`` is exactly the tilted distribution's noised score: a sampler
with the exact score samples ``N(m + S c, S)``, and the posterior-variance mean shift (first-order
equal to the score shift in the step size) does so as the steps shrink.
"""

from __future__ import annotations

import math

import pytest
import torch

from diffusio.core.oracle import GaussianMixture
from diffusio.core.processes import make_process
from diffusio.core.samplers import SamplingContext, reverse_step, sample
from diffusio.core.value_guidance import ValueGuidance

M = torch.tensor([0.5, -1.0], dtype=torch.float64)
S = torch.tensor([0.6, 1.4], dtype=torch.float64) ** 2  # diagonal variance
DATA = GaussianMixture(M[None], S.sqrt()[None])
C = torch.tensor([0.8, -0.5], dtype=torch.float64)


def linear_value(x, t):
    return (x * C.to(x)).sum(-1)


def points(n=16, seed=0):
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def step_variance(process, t, s):
    tt = torch.tensor([t, s], dtype=torch.float64)
    (a_t, a_s), (s_t, s_s) = process.alpha(tt).tolist(), process.sigma(tt).tolist()
    transition = s_t**2 - (a_t / a_s) ** 2 * s_s**2
    return s_s**2 / s_t**2 * transition, transition


STEP_OPTIONS = [
    {"kernel_variance": "posterior"},
    {"kernel_variance": "beta"},
    {"eta": 0.0},
    {"eta": 0.5},
]


@pytest.mark.parametrize("options", STEP_OPTIONS)
@pytest.mark.parametrize("n_guide_steps", [1, 3])
def test_one_step_mean_moves_by_scale_times_posterior_variance_times_gradient(
    options, n_guide_steps
):
    process = make_process("vp-linear")
    model = DATA.model(process)
    x, z = points(), points(seed=1)
    t, s, scale = 0.5, 0.45, 3.0
    var_post, _ = step_variance(process, t, s)
    guide = ValueGuidance(linear_value, scale, n_guide_steps=n_guide_steps)
    plain = reverse_step(model, x, t, s, noise=z, **options)
    guided = reverse_step(model, x, t, s, noise=z, guidance=[guide], **options)
    expected = plain.mean + n_guide_steps * scale * var_post * C
    torch.testing.assert_close(guided.mean, expected, rtol=1e-10, atol=1e-10)
    assert float(guided.std) == float(plain.std)
    torch.testing.assert_close(guided.x_next - guided.mean, plain.x_next - plain.mean)
    # scale_by="none": the state moves by scale * grad, and so does the mean
    bare = ValueGuidance(linear_value, scale, n_guide_steps, scale_by="none")
    got = reverse_step(model, x, t, s, noise=z, guidance=[bare], **options).mean
    torch.testing.assert_close(got, plain.mean + n_guide_steps * scale * C, rtol=1e-10, atol=1e-10)


def test_guide_steps_re_evaluate_the_gradient_at_the_moved_state():
    """J(x) = -|x - b|^2 / 2 has gradient b - x, so k updates x <- x + w (b - x) (w = scale *
    Var_post) give x_k = b + (1 - w)^k (x - b): the mean moves by (1 - (1 - w)^k)(b - x)."""
    process = make_process("vp-cosine")
    model = DATA.model(process)
    b = torch.tensor([1.0, 2.0], dtype=torch.float64)
    x, t, s, scale, k = points(8, seed=2), 0.6, 0.5, 4.0, 4
    w, _ = step_variance(process, t, s)
    w *= scale
    guide = ValueGuidance(lambda y, tt: -0.5 * ((y - b) ** 2).sum(-1), scale, n_guide_steps=k)
    plain = reverse_step(model, x, t, s, eta=1.0).mean
    guided = reverse_step(model, x, t, s, eta=1.0, guidance=[guide]).mean
    torch.testing.assert_close(guided - plain, (1 - (1 - w) ** k) * (b - x), rtol=1e-10, atol=1e-10)


def test_stopgrad_fallback_and_network_calls():
    process = make_process("vp-linear")
    model = DATA.model(process)
    x, t, s = points(6, seed=3), 0.3, 0.25
    # below t_stopgrad: no guidance
    stopped = ValueGuidance(linear_value, 2.0, t_stopgrad=0.31)
    plain = reverse_step(model, x, t, s, eta=1.0).mean
    torch.testing.assert_close(
        reverse_step(model, x, t, s, eta=1.0, guidance=[stopped]).mean, plain
    )
    # no step target (continuous samplers, the last step to clean data): the score shift
    ctx = SamplingContext(model, guidance=[ValueGuidance(linear_value, 2.0, n_guide_steps=5)])
    got = ctx.predict(x, t)
    assert ctx.nfe == 1  # no extra network call
    torch.testing.assert_close(got.score, model.predict(x, t).score + 2.0 * C)
    ctx.next_time = s
    ctx.predict(x, t)
    assert ctx.nfe == 2


def noise_conditional_value(process):
    """The exact J_t(x) = log E[exp(c.x0) | x_t = x] up to a constant (module docstring)."""

    def value(x, t):
        a = process.alpha(t).to(x)[:, None]
        s = process.sigma(t).to(x)[:, None]
        return (C * a * S / (a**2 * S + s**2) * x).sum(-1)

    return value


@pytest.mark.parametrize(("sampler", "steps"), [("ode-heun", 40), ("ddpm", 1000)])
def test_exact_value_samples_the_tilted_distribution(sampler, steps):
    """With the exact noise-conditional value and scale 1, samples follow N(m + S c, S): with
    4,000 samples the mean lies within 4 standard errors (sqrt(S / n)) and the std within 4
    standard errors of a sample std (about std / sqrt(2 n)). ode-heun uses the score shift (exact
    guided score, Heun's error at 40 steps as in tests/test_guidance.py); ddpm on the full
    1000-step table the posterior-variance mean shift (exact to first order in the step)."""
    process = make_process("vp-linear")
    model = DATA.model(process)
    n = 4000
    guide = ValueGuidance(noise_conditional_value(process), 1.0)
    x = sample(model, (n, 2), sampler, steps, seed=5, guidance=[guide])
    target_mean, target_std = M + S * C, S.sqrt()
    mean_err = (x.mean(0) - target_mean).abs() / (target_std / math.sqrt(n))
    assert float(mean_err.max()) < 4.0, (x.mean(0), target_mean)
    std_err = (x.std(0) - target_std).abs() / (target_std / math.sqrt(2 * (n - 1)))
    assert float(std_err.max()) < 4.0, (x.std(0), target_std)


def test_value_guidance_errors():
    process = make_process("vp-linear")
    model = DATA.model(process)
    with pytest.raises(ValueError, match="finite"):
        ValueGuidance(linear_value, float("nan"))
    with pytest.raises(ValueError, match="n_guide_steps"):
        ValueGuidance(linear_value, 1.0, n_guide_steps=0)
    with pytest.raises(ValueError, match="scale_by"):
        ValueGuidance(linear_value, 1.0, scale_by="std")
    x = points(4)
    for fn, match in [(lambda y, t: y.sum(), "one value per sample"),
                      (lambda y, t: y.detach().sum(-1), "detached")]:  # fmt: skip
        with pytest.raises(ValueError, match=match):
            SamplingContext(model, guidance=[ValueGuidance(fn, 1.0)]).predict(x, 0.5)
    frames = torch.zeros(4, 3, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="per-frame"):
        ctx = SamplingContext(model, guidance=[ValueGuidance(linear_value, 1.0)])
        ctx.predict(frames, torch.full((4, 3), 0.5, dtype=torch.float64))
