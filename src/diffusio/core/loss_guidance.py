"""Loss guidance: DPS and LGD-MC (Song et al. 2023, "Loss-Guided Diffusion Models for
Plug-and-Play Controllable Generation", ICML 2023).

A differentiable per-sample loss ``l(x0)`` defines a likelihood ``p(y | x0) ∝ exp(-l(x0))``.
The guided score is ``grad log p_t(x) + scale * grad_x log p_t(y | x)``, with the intractable
``p_t(y | x_t) = E[exp(-l(x0)) | x_t]`` approximated

* by DPS (Chung et al. 2023; LGD's eq. 4), ``exp(-l(x0_hat(x_t)))``: the posterior collapsed to
  its mean ``x0_hat = E[x0 | x_t]``, the model's x0 prediction;
* by LGD-MC (LGD's eq. 8 and Alg. 1), ``mean_i exp(-l(x0_hat + r_t eps_i))``, eps_i ~ N(0, I):
  the posterior replaced by a Gaussian ``N(x0_hat, r_t^2 I)`` and integrated by Monte Carlo.

Either way the gradient goes through the denoiser (``x0_hat`` is differentiated with respect to
``x_t``), so the guidance re-evaluates the model with gradients enabled: one more counted
network call per step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .parameterization import Prediction

if TYPE_CHECKING:
    from .samplers.base import SamplingContext

__all__ = ["LossGuidance", "lgd_radius"]

Radius = str | float | Callable[[Tensor | float, Tensor | float], Tensor | float]


def lgd_radius(alpha: Tensor | float, sigma: Tensor | float) -> Tensor | float:
    """LGD's ``r_t`` in diffusio's ``x_t = alpha x0 + sigma eps`` units.

    The paper (Sec. 4.1) uses the variance-exploding form ``x_t = x0 + s_t eps`` with data of
    unit variance and sets ``r_t = s_t / sqrt(1 + s_t^2)``. Dividing diffusio's state by alpha
    gives that form with ``s_t = sigma / alpha``, so

        r_t = (sigma / alpha) / sqrt(1 + sigma^2 / alpha^2) = sigma / sqrt(alpha^2 + sigma^2).

    It is exactly ``sqrt(Var(x0_d | x_t))`` when the prior is N(0, I): then
    ``Var(x0 | x_t) = 1 - alpha^2 / (alpha^2 + sigma^2) = sigma^2 / (alpha^2 + sigma^2)``.
    """
    if isinstance(alpha, Tensor) or isinstance(sigma, Tensor):
        return sigma / torch.sqrt(torch.as_tensor(alpha**2 + sigma**2))
    return sigma / math.sqrt(alpha**2 + sigma**2)


class LossGuidance:
    """Loss-guided diffusion (Song et al. 2023, ICML; DPS eq. 4, LGD-MC eq. 8 / Alg. 1).

    ``loss_fn(x0) -> (N,)`` is the per-sample loss ``l(x0)``, ``p(y | x0) ∝ exp(-l(x0))``. At
    each step the model is re-evaluated at the state with gradients enabled (one more counted
    network call, through ``ctx.evaluate`` with the sampler's ``cond``) to get ``x0_hat(x_t)``,
    and

        g = grad_{x_t} log (1/n) sum_i exp(-l(x0_hat(x_t) + r_t eps_i)),   eps_i ~ N(0, I)

    (a logsumexp). ``radius=0`` is DPS, ``g = -grad_{x_t} l(x0_hat(x_t))`` (then one loss call,
    whatever ``n_samples``); ``radius="auto"`` is LGD's ``r_t`` (:func:`lgd_radius`,
    ``sigma / sqrt(alpha^2 + sigma^2)``, derived for standardised, unit-variance data); a float
    is a constant radius and a callable ``(alpha, sigma) -> r`` any schedule. ``n_samples=1``
    with a positive radius is LGD-MC with a single draw (not DPS).

    The guidance is a score shift, ``score <- score + scale * g``, i.e.
    ``eps <- eps - sigma * scale * g`` (as :class:`~diffusio.core.steering.ClassifierGuidance`
    with ``mode="score"``), so it works in every sampler. The gradient is taken through the plain
    model (with the sampler's ``cond``), not through the modifiers before this one in the
    ``guidance`` list; the shift is applied to the prediction it receives. ``eps_i`` are drawn
    from ``generator`` or, without one, from the sampler's generator (seeded runs stay
    reproducible); a generator must live on the samples' device.
    """

    def __init__(
        self,
        loss_fn: Callable[[Tensor], Tensor],
        scale: float = 1.0,
        n_samples: int = 1,
        radius: Radius = "auto",
        generator: torch.Generator | None = None,
    ):
        if not callable(loss_fn):
            raise TypeError("loss_fn must be callable: loss_fn(x0) -> per-sample losses (N,)")
        if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
        if not math.isfinite(scale):
            raise ValueError(f"loss guidance scale must be finite, got {scale}")
        if isinstance(radius, str):
            if radius != "auto":
                raise ValueError(f"radius must be 'auto', a float or a callable, got {radius!r}")
        elif not callable(radius):
            radius = float(radius)
            if not (math.isfinite(radius) and radius >= 0):
                raise ValueError(f"radius must be finite and non-negative, got {radius}")
        self.loss_fn, self.scale, self.n_samples = loss_fn, float(scale), n_samples
        self.radius, self.generator = radius, generator

    def radius_at(self, alpha: Tensor | float, sigma: Tensor | float) -> Tensor | float:
        """r_t at coefficients (alpha, sigma)."""
        if self.radius == "auto":
            return lgd_radius(alpha, sigma)
        if callable(self.radius):
            return self.radius(alpha, sigma)
        return self.radius

    def _losses(self, x0: Tensor) -> Tensor:
        loss = self.loss_fn(x0)
        if not isinstance(loss, Tensor) or loss.shape != (x0.shape[0],):
            shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
            raise ValueError(
                f"loss_fn must return one loss per sample, shape ({x0.shape[0]},); got {shape}"
            )
        if not bool(torch.isfinite(loss).all()):
            raise ValueError("loss_fn returned NaN or Inf")
        if not loss.requires_grad:
            raise ValueError("loss_fn's output does not depend on x0 (is it detached?)")
        return loss

    def log_likelihood(self, x0: Tensor, r: Tensor | float, ctx: SamplingContext) -> Tensor:
        """The per-sample estimate of ``log p_t(y | x_t)`` from x0_hat (N, ...): DPS's
        ``-l(x0_hat)`` for ``r = 0``, else ``logsumexp_i(-l(x0_hat + r eps_i)) - log n``."""
        if not bool(r.any()) if isinstance(r, Tensor) else r == 0:  # DPS
            return -self._losses(x0)
        n, N = self.n_samples, x0.shape[0]
        gen = self.generator if self.generator is not None else ctx.generator
        shape = (n, *x0.shape)
        eps = torch.randn(shape, generator=gen, dtype=x0.dtype, device=x0.device)
        draws = (x0.unsqueeze(0) + r * eps).reshape(n * N, *x0.shape[1:])
        neg = -self._losses(draws).reshape(n, N)
        return torch.logsumexp(neg, dim=0) - math.log(n)

    def gradient(self, x: Tensor, t: Tensor, ctx: SamplingContext) -> Tensor:
        """``g = grad_x log p_t(y | x)`` (the estimate above) at state x, time t."""
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            pred = ctx.evaluate(x_in, t, **ctx.cond)
            r = self.radius_at(pred.alpha, pred.sigma)
            (grad,) = torch.autograd.grad(self.log_likelihood(pred.x0, r, ctx).sum(), x_in)
        return grad.to(x.dtype)

    def __call__(self, pred: Prediction, t: Tensor, ctx: SamplingContext) -> Prediction:
        if self.scale == 0:
            return pred
        grad = self.gradient(pred.x, t, ctx)
        return pred.with_eps(pred.eps - pred.sigma * self.scale * grad)
