"""Guidance against exact answers: with each mixture component a class, the oracle knows the
conditional scores and the noise-aware classifier p(k | x_t) in closed form, so Bayes' rule
grad log p_t(x | k) = grad log p_t(x) + grad log p_t(k | x) makes classifier guidance at scale 1
*equal* the conditional model, and classifier-free guidance with weight w equal classifier
guidance with scale 1 + w (Ho & Salimans 2021, Sec. 3.2)."""

from __future__ import annotations

import math

import pytest
import torch

from diffusio.core.oracle import GaussianMixture
from diffusio.core.processes import make_process
from diffusio.core.samplers import SamplingContext, sample
from diffusio.core.steering import ClassifierFreeGuidance, ClassifierGuidance

MIX = GaussianMixture([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.5]], [0.5, 0.3, 0.6], [0.5, 0.3, 0.2])


@pytest.mark.parametrize("t", [0.05, 0.4, 0.9])
def test_classifier_guidance_at_scale_one_is_the_conditional_model(t):
    process = make_process("vp-linear")
    uncond = MIX.model(process)
    cond = MIX.model(process, conditional=True)
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2
    y = torch.arange(64) % 3
    guide = ClassifierGuidance(MIX.classifier(process), y, 1.0)
    guided = SamplingContext(uncond, guidance=[guide]).predict(x, t)
    exact = cond.predict(x, t, y=y)
    torch.testing.assert_close(guided.eps, exact.eps, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("w", [0.0, 1.5, 4.0])
def test_classifier_free_guidance_is_classifier_guidance_with_scale_one_plus_w(w):
    process = make_process("vp-cosine")
    cond = MIX.model(process, conditional=True)
    uncond = MIX.model(process)
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2
    y = torch.arange(50) % 3
    ctx = SamplingContext(cond, guidance=[ClassifierFreeGuidance(w, null_label=3)], cond={"y": y})
    cfg = ctx.predict(x, 0.3)
    assert ctx.nfe == (1 if w == 0 else 2)  # the unconditional call is counted
    cg = SamplingContext(uncond, guidance=[ClassifierGuidance(MIX.classifier(process), y, 1 + w)])
    torch.testing.assert_close(cfg.eps, cg.predict(x, 0.3).eps, rtol=1e-9, atol=1e-9)
    # the null class is the whole mixture
    torch.testing.assert_close(cond.eps(x, 0.3, y=torch.full_like(y, 3)), uncond.eps(x, 0.3))


def test_guided_samplers_draw_the_chosen_class():
    """Guidance in the samplers: scale-1 classifier guidance on the unconditional oracle samples
    component k exactly (mean within 4 standard errors), with DDIM and the ODE alike; the
    ancestral mean-shift form (Alg. 1) too, up to its O(step) difference from the score."""
    process = make_process("vp-linear")
    model = MIX.model(process)
    n, k = 4000, 1
    classifier = MIX.classifier(process)
    target = MIX.means[k]
    std = MIX.stds[k]
    for sampler, steps, mode in [("ddim", 100, "score"), ("ode-heun", 40, "score"),
                                 ("ddpm", 250, "mean")]:  # fmt: skip
        guide = ClassifierGuidance(classifier, k, 1.0, mode=mode)
        x = sample(model, (n, 2), sampler, steps, seed=3, guidance=[guide])
        err = (x.mean(0) - target).abs() / (std / math.sqrt(n))
        assert float(err.max()) < 4.0, (sampler, x.mean(0), target)
        assert float((x.std(0) / std - 1).abs().max()) < 0.08, (sampler, x.std(0))


def test_mean_mode_shifts_the_ancestral_mean_by_sigma_times_the_gradient():
    """Alg. 1: mu <- mu + s * Sigma * g, with Sigma the posterior variance of the step."""
    process = make_process("vp-linear")
    model = MIX.model(process)
    classifier = MIX.classifier(process)
    x = torch.randn(20, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    t, s, scale = 0.5, 0.49, 2.0
    guide = ClassifierGuidance(classifier, 0, scale, mode="mean")
    ctx = SamplingContext(model, guidance=[guide])
    ctx.next_time = s
    guided, plain = ctx.predict(x, t), SamplingContext(model).predict(x, t)
    a_t, s_t = ctx.coefficients(t)
    a_s, s_s = ctx.coefficients(s)
    transition = s_t**2 - (a_t / a_s) ** 2 * s_s**2
    variance = s_s**2 * transition / s_t**2

    def posterior_mean(p):
        return (a_t / a_s) * s_s**2 / s_t**2 * x + a_s * transition / s_t**2 * p.x0

    shift = posterior_mean(guided) - posterior_mean(plain)
    torch.testing.assert_close(shift, scale * variance * guide.gradient(x, torch.full((20,), t)))


def test_guidance_errors():
    process = make_process("vp-linear")
    model = MIX.model(process, conditional=True)
    with pytest.raises(ValueError, match="cond"):
        SamplingContext(model, guidance=[ClassifierFreeGuidance(1.0, 3)]).predict(
            torch.zeros(2, 2, dtype=torch.float64), 0.5
        )
    with pytest.raises(ValueError, match="mode"):
        ClassifierGuidance(MIX.classifier(process), 0, 1.0, mode="other")
    with pytest.raises(ValueError, match="finite"):
        ClassifierFreeGuidance(float("nan"), 3)
    with pytest.raises(ValueError, match="labels"):
        model.eps(torch.zeros(2, 2, dtype=torch.float64), 0.5, y=torch.tensor([0, 7]))


def test_guidance_takes_per_frame_times():
    """Classifier-free and classifier guidance on a (N, L, D) state with (N, L) times equal the
    one-frame guided predictions at each frame's time."""
    process = make_process("vp-linear")
    cond = MIX.model(process, conditional=True)
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(24, 2, 2, generator=gen, dtype=torch.float64) * 2
    t = torch.rand(24, 2, generator=gen, dtype=torch.float64) * 0.8 + 0.1
    y = torch.arange(24) % 3
    for guide in (
        ClassifierFreeGuidance(2.0, 3),
        ClassifierGuidance(MIX.classifier(process), y, 1.5),
    ):
        ctx = SamplingContext(cond, guidance=[guide], cond={"y": y})
        frames = ctx.predict(x, t).eps
        for k in range(2):
            alone = ctx.predict(x[:, k].contiguous(), t[:, k].contiguous()).eps
            torch.testing.assert_close(frames[:, k], alone, rtol=1e-10, atol=1e-10)
