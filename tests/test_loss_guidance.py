"""Loss guidance (DPS and LGD-MC, Song et al. 2023) against exact answers.

Prior N(0, I) in 2-D (a one-component GaussianMixture: its oracle is the exact model) and the
quadratic loss ``l(x0) = |x0 - y|^2 / (2 s^2)``, so ``p(y | x0) = N(y; x0, s^2 I)`` and the exact
posterior is ``N(y / (1 + s^2), s^2 / (1 + s^2) I)``. Under ``x_t = alpha x0 + sigma eps``:

* ``x0_hat(x) = E[x0 | x_t = x] = alpha x / (alpha^2 + sigma^2)`` and
  ``p(x0 | x_t) = N(x0_hat, r_t^2 I)`` with ``r_t^2 = sigma^2 / (alpha^2 + sigma^2)``: LGD's
  "auto" radius is the exact posterior spread for this prior.
* DPS: ``g = -grad_x l(x0_hat(x)) = -(alpha / (alpha^2 + sigma^2)) (x0_hat - y) / s^2``.
* LGD-MC as n -> infinity: ``E[exp(-l(x0_hat + r eps))] ∝ N(y; x0_hat, (s^2 + r^2) I)``, so
  ``g = -(alpha / (alpha^2 + sigma^2)) (x0_hat - y) / (s^2 + r^2)``, which is exactly
  ``grad log p_t(y | x)``: the guided score is the noised posterior's score.
"""

from __future__ import annotations

import math

import pytest
import torch

from diffusio.core.loss_guidance import LossGuidance, lgd_radius
from diffusio.core.oracle import GaussianMixture
from diffusio.core.processes import make_process
from diffusio.core.samplers import SamplingContext, sample

PRIOR = GaussianMixture([[0.0, 0.0]], [1.0])
Y = torch.tensor([1.5, -1.0], dtype=torch.float64)
S = 0.8  # the loss's scale s
POST_MEAN = Y / (1 + S**2)
POST_VAR = S**2 / (1 + S**2)
POSTERIOR = GaussianMixture(POST_MEAN[None], [math.sqrt(POST_VAR)])


def quadratic_loss(x0):
    return ((x0 - Y.to(x0)) ** 2).sum(-1) / (2 * S**2)


def coefficients(process, t):
    tt = torch.tensor(t, dtype=torch.float64)
    return float(process.alpha(tt)), float(process.sigma(tt))


def points(n=16, seed=0):
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def guided_score(model, guide, x, t):
    return SamplingContext(model, guidance=[guide]).predict(x, t).score


@pytest.mark.parametrize("t", [0.05, 0.3, 0.7, 0.95])
@pytest.mark.parametrize("scale", [1.0, 2.5])
def test_dps_is_its_closed_form_on_a_gaussian_prior(t, scale):
    process = make_process("vp-linear")
    model = PRIOR.model(process)
    x = points() * 2
    a, s = coefficients(process, t)
    guide = LossGuidance(quadratic_loss, scale, radius=0.0)
    x0_hat = a * x / (a**2 + s**2)
    g = -(a / (a**2 + s**2)) * (x0_hat - Y) / S**2
    ctx = SamplingContext(model, guidance=[guide])
    got = ctx.predict(x, t).score
    assert ctx.nfe == 2  # the re-evaluation with gradients is counted
    torch.testing.assert_close(got, PRIOR.noised_score(x, a, s) + scale * g, rtol=1e-10, atol=1e-10)


def test_dps_differentiates_through_a_mixture_denoiser():
    """On a bimodal prior x0_hat is non-linear; its Jacobian is Tweedie's
    ``d x0_hat / d x_t = (alpha / sigma^2) Cov(x0 | x_t)`` (symmetric), with the mixture's
    posterior covariance in closed form: per component k (diagonal variance v_k, mean mu_k) the
    posterior has variance ``pv = 1 / (1 / v_k + alpha^2 / sigma^2)`` and mean
    ``pm = pv (mu_k / v_k + alpha x / sigma^2)``, mixed with the responsibilities p(k | x_t).
    So DPS's gradient is ``-(alpha / sigma^2) Cov(x0 | x_t) (x0_hat - y) / s^2``."""
    mix = GaussianMixture([[-1.5, 0.5], [1.0, -1.0]], [[0.5, 0.7], [0.4, 0.3]], [0.6, 0.4])
    process = make_process("vp-cosine")
    model = mix.model(process)
    x, t = points(12, seed=1) * 1.5, 0.4
    a, s = coefficients(process, t)
    guide = LossGuidance(quadratic_loss, 1.0, radius=0.0)
    got = guide.gradient(x, torch.full((12,), t, dtype=torch.float64), SamplingContext(model))
    resp = mix.class_log_probs(x, a, s).exp()  # (N, K)
    v = mix.stds**2  # (K, D)
    pv = 1 / (1 / v + a**2 / s**2)
    pm = pv * (mix.means / v + a * x[:, None, :] / s**2)  # (N, K, D)
    mean = (resp[:, :, None] * pm).sum(1)
    second = torch.einsum("nk,nkd,nke->nde", resp, pm, pm) + torch.diag_embed(
        (resp[:, :, None] * pv).sum(1)
    )
    cov = second - mean[:, :, None] * mean[:, None, :]
    torch.testing.assert_close(mean, model.predict(x, t).x0, rtol=1e-10, atol=1e-10)
    expected = -(a / s**2) * torch.einsum("nde,ne->nd", cov, (mean - Y) / S**2)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-10)


def _mc_standard_error(a_vec, r, n):
    """Delta-method standard error of LGD-MC's self-normalised mean of eps_i, per dimension.

    The estimator's x0-gradient is ``-(a + r e_w) / s^2`` with ``a = x0_hat - y`` and
    ``e_w = sum_i w_i eps_i / sum_i w_i``, ``w_i = exp(-|a + r eps_i|^2 / (2 s^2))``,
    eps_i ~ q = N(0, I). Its variance is ``E_q[w^2 (eps_d - mu_d)^2] / (n E_q[w]^2)`` to first
    order, with ``mu = -r a / (s^2 + r^2)`` (the tilted mean). w factorises over dimensions and
    every expectation is Gaussian: ``E_q[w_j] = sqrt(s^2 / (s^2 + r^2)) exp(-a_j^2 / (2 (s^2 +
    r^2)))``; ``w^2`` is w with ``s^2 / 2``, and under ``w_d^2 q`` eps_d has mean
    ``-r a_d / (s^2 / 2 + r^2)`` and variance ``(s^2 / 2) / (s^2 / 2 + r^2)``.
    """
    s2, h2 = S**2, S**2 / 2

    def moment(var, a):
        return math.sqrt(var / (var + r**2)) * torch.exp(-(a**2) / (2 * (var + r**2)))

    m1, m2 = moment(s2, a_vec), moment(h2, a_vec)  # (N, D)
    ratio = m2 / m1**2
    mu, mu2, v2 = -r * a_vec / (s2 + r**2), -r * a_vec / (h2 + r**2), h2 / (h2 + r**2)
    own = ratio * (v2 + (mu2 - mu) ** 2)
    others = ratio.prod(-1, keepdim=True) / ratio
    return torch.sqrt(others * own / n)


@pytest.mark.parametrize("t", [0.1, 0.5, 0.9])
def test_lgd_mc_converges_to_the_exact_posterior_score(t):
    """With 20,000 draws the guided score equals the noised posterior's exact score within 5
    Monte-Carlo standard errors (delta method, :func:`_mc_standard_error`; the self-normalised
    estimator's O(1/n) bias is ~100x below that). DPS misses by far more than that tolerance
    wherever r_t is not small (the test can tell them apart)."""
    process = make_process("vp-linear")
    model = PRIOR.model(process)
    x = points(8, seed=2) * 1.5
    a, s = coefficients(process, t)
    n = 20_000
    guide = LossGuidance(quadratic_loss, 1.0, n, "auto", torch.Generator().manual_seed(7))
    got = guided_score(model, guide, x, t)
    exact = POSTERIOR.noised_score(x, a, s)
    r = s / math.sqrt(a**2 + s**2)
    assert lgd_radius(a, s) == pytest.approx(r, rel=1e-15)
    x0_hat = a * x / (a**2 + s**2)
    se = (a / (a**2 + s**2)) * (r / S**2) * _mc_standard_error(x0_hat - Y, r, n)
    assert bool(((got - exact).abs() <= 5 * se + 1e-12).all()), ((got - exact) / se).abs().max()
    dps = guided_score(model, LossGuidance(quadratic_loss, 1.0, radius=0), x, t)
    if r > 0.5:
        assert float(((dps - exact).abs() / se).min()) > 20


def test_lgd_mc_radius_options_and_no_draws_for_dps():
    process = make_process("vp-linear")
    model = PRIOR.model(process)
    x, t = points(4, seed=3), 0.6
    a, s = coefficients(process, t)
    gen = torch.Generator().manual_seed(1)
    auto = LossGuidance(quadratic_loss, 1.0, 64, "auto", torch.Generator().manual_seed(1))
    fixed = LossGuidance(quadratic_loss, 1.0, 64, s / math.sqrt(a**2 + s**2), gen)
    fn = LossGuidance(
        quadratic_loss, 1.0, 64, lambda al, sg: sg / (al**2 + sg**2) ** 0.5,
        torch.Generator().manual_seed(1),
    )  # fmt: skip
    ref = guided_score(model, auto, x, t)
    torch.testing.assert_close(guided_score(model, fixed, x, t), ref, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(guided_score(model, fn, x, t), ref, rtol=1e-6, atol=1e-8)
    # radius 0 with many samples is DPS (no noise drawn)
    dps_gen = torch.Generator().manual_seed(5)
    state = dps_gen.get_state()
    many = LossGuidance(quadratic_loss, 1.0, 50, 0.0, dps_gen)
    one = LossGuidance(quadratic_loss, 1.0, 1, 0.0)
    torch.testing.assert_close(guided_score(model, many, x, t), guided_score(model, one, x, t))
    assert torch.equal(dps_gen.get_state(), state)


@pytest.mark.parametrize(("sampler", "steps"), [("ddim", 100), ("ddpm", 200)])
def test_lgd_mc_samples_the_exact_posterior(sampler, steps):
    """Sampling with LGD-MC (64 draws) on the exact prior model draws the exact posterior
    N(y / (1 + s^2), s^2 / (1 + s^2) I): with 2,000 samples the mean lies within 4 standard
    errors (sqrt(var / n)) and the variance within 4 standard errors of a sample variance
    (var sqrt(2 / (n - 1))). The guided score is exact up to the Monte-Carlo error of 64
    draws (bias O(1/64) of the guidance term, noise averaged over the steps), and DDIM with
    100 / DDPM with 200 steps on a Gaussian target add a discretisation error well below these
    tolerances (as in tests/test_guidance.py)."""
    process = make_process("vp-linear")
    model = PRIOR.model(process)
    n = 2000
    guide = LossGuidance(quadratic_loss, 1.0, 64, "auto", torch.Generator().manual_seed(11))
    x, stats = sample(model, (n, 2), sampler, steps, seed=4, guidance=[guide], return_stats=True)
    assert stats["nfe"] == 2 * steps
    mean_err = (x.mean(0) - POST_MEAN).abs() / math.sqrt(POST_VAR / n)
    assert float(mean_err.max()) < 4.0, x.mean(0)
    var_err = (x.var(0) - POST_VAR).abs() / (POST_VAR * math.sqrt(2 / (n - 1)))
    assert float(var_err.max()) < 4.0, x.var(0)


def test_loss_guidance_errors():
    process = make_process("vp-linear")
    model = PRIOR.model(process)
    x = points(3)
    with pytest.raises(ValueError, match="n_samples"):
        LossGuidance(quadratic_loss, n_samples=0)
    with pytest.raises(ValueError, match="n_samples"):
        LossGuidance(quadratic_loss, n_samples=2.5)
    with pytest.raises(ValueError, match="finite"):
        LossGuidance(quadratic_loss, scale=float("inf"))
    with pytest.raises(ValueError, match="radius"):
        LossGuidance(quadratic_loss, radius="paper")
    with pytest.raises(ValueError, match="radius"):
        LossGuidance(quadratic_loss, radius=-1.0)
    bad = [
        (lambda x0: (x0**2).sum(), "one loss per sample"),
        (lambda x0: x0**2, "one loss per sample"),
        (lambda x0: (x0**2).sum(-1) * float("nan"), "NaN"),
        (lambda x0: (x0.detach() ** 2).sum(-1), "detached"),
    ]
    for fn, match in bad:
        with pytest.raises(ValueError, match=match):
            SamplingContext(model, guidance=[LossGuidance(fn, radius=0)]).predict(x, 0.5)
    # scale 0: the prediction unchanged and no extra call
    ctx = SamplingContext(model, guidance=[LossGuidance(quadratic_loss, 0.0)])
    torch.testing.assert_close(ctx.predict(x, 0.5).eps, model.eps(x, 0.5))
    assert ctx.nfe == 1
