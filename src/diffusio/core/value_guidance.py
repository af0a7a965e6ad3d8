"""Value guidance: Diffuser's guided sampling (Janner et al. 2022, "Planning with Diffusion for
Flexible Behavior Synthesis", Sec. 3.2, eq. 3; official ``n_step_guided_p_sample``).

A noise-conditional value ``J(x_t, t)`` (e.g. the ``temporal-value`` net, trained to predict a
trajectory's return from its noised version) tilts sampling toward ``p(x) exp(J(x))``: the
reverse kernel ``N(mu, Sigma)`` becomes ``N(mu + Sigma g, Sigma)``, ``g = grad_x J(x_t, t)``
(eq. 3, the form of classifier guidance, Dhariwal & Nichol 2021, Alg. 1).
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

__all__ = ["SCALE_BY", "ValueGuidance"]

SCALE_BY = ("posterior-variance", "none")
_HALF = (torch.float16, torch.bfloat16)


class ValueGuidance:
    """Diffuser's value guidance (Janner et al. 2022, Sec. 3.2 eq. 3; their
    ``n_step_guided_p_sample``).

    ``value_fn(x_t, t) -> (N,)`` is the noise-conditional value J (``t`` of shape (N,)). The
    official sampler moves the state before each denoiser call, ``n_guide_steps`` times,

        x <- x + scale * Var_post(t) * grad_x J(x, t)        (gradient zeroed where t < t_stopgrad)

    (``scale_by="posterior-variance"``, their ``scale_grad_by_std=True``; ``"none"`` drops the
    variance), then takes the DDPM step from the moved state. Here, as a prediction modifier, the
    same moves give the total displacement ``Delta = x_n - x_0`` (the gradient re-evaluated at
    each moved point) and the step's kernel mean is shifted by exactly ``Delta``: the prediction
    returned is the denoiser's eps at the *unmoved* state, attached to the state moved by
    ``(a_t / a_s) Delta`` (so ``x0`` moves by ``Delta / a_s``), and every DDPM/DDIM mean
    ``a_s x0 + c eps`` moves by ``Delta`` (ddpm with any kernel variance, ddim with any eta; the
    variance is DDPM's posterior variance of the step t -> ``ctx.next_time``). The official
    sampler instead re-runs the denoiser at the moved state, ``mu(x + Delta)``; the two agree
    to first order in the step (``d mu / d x = I + O(step)``) and this one costs no extra
    network call. Put it last in the ``guidance`` list: later modifiers see the moved state.

    Without a step target (the final step to clean data, and the continuous samplers) it falls
    back to the score shift ``score <- score + scale * g`` (``eps <- eps - sigma * scale * g``,
    g at the unmoved state, one gradient), the small-step limit of the posterior-variance mean
    shift (a DDPM step's mean is ``x + Var_post * score + O(step^2)`` in VP units);
    ``n_guide_steps`` and ``scale_by`` then have no effect.

    ``t_stopgrad`` is a diffusio time: Diffuser's integer step k is the process table's time
    ``process.discrete().times[k]``. Needs one time per example (no per-frame times).
    """

    def __init__(
        self,
        value_fn: Callable[[Tensor, Tensor], Tensor],
        scale: float,
        n_guide_steps: int = 1,
        t_stopgrad: float = 0.0,
        scale_by: str = "posterior-variance",
    ):
        if not callable(value_fn):
            raise TypeError("value_fn must be callable: value_fn(x_t, t) -> values (N,)")
        if not math.isfinite(scale):
            raise ValueError(f"value guidance scale must be finite, got {scale}")
        if isinstance(n_guide_steps, bool) or not isinstance(n_guide_steps, int):
            raise ValueError(f"n_guide_steps must be a positive integer, got {n_guide_steps!r}")
        if n_guide_steps < 1:
            raise ValueError(f"n_guide_steps must be a positive integer, got {n_guide_steps}")
        if not math.isfinite(t_stopgrad):
            raise ValueError(f"t_stopgrad must be finite, got {t_stopgrad}")
        if scale_by not in SCALE_BY:
            raise ValueError(f"unknown scale_by {scale_by!r}; valid: {', '.join(SCALE_BY)}")
        self.value_fn, self.scale, self.n_guide_steps = value_fn, float(scale), n_guide_steps
        self.t_stopgrad, self.scale_by = float(t_stopgrad), scale_by

    def gradient(self, x: Tensor, t: Tensor) -> Tensor:
        """``grad_x J(x, t)``, zero for the examples with ``t < t_stopgrad``."""
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            value = self.value_fn(x_in, t)
            if not isinstance(value, Tensor) or value.shape != (x.shape[0],):
                shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
                raise ValueError(
                    f"value_fn must return one value per sample, shape ({x.shape[0]},); got {shape}"
                )
            if not value.requires_grad:
                raise ValueError("value_fn's output does not depend on x (is it detached?)")
            total = value.sum(dtype=torch.float32 if value.dtype in _HALF else value.dtype)
            (grad,) = torch.autograd.grad(total, x_in)
        grad = grad.to(x.dtype)
        keep = (t >= self.t_stopgrad).to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))
        return grad * keep

    def __call__(self, pred: Prediction, t: Tensor, ctx: SamplingContext) -> Prediction:
        if self.scale == 0:
            return pred
        next_time = getattr(ctx, "next_time", None)
        if t.dim() > 1 or isinstance(next_time, Tensor):
            raise ValueError("value guidance needs one time per example (no per-frame times)")
        x = pred.x
        if next_time is None:
            return pred.with_eps(pred.eps - pred.sigma * self.scale * self.gradient(x, t))
        a_t, s_t = ctx.coefficients_like(t, x)
        a_s, s_s = ctx.coefficients_like(torch.full_like(t, float(next_time)), x)
        weight = self.scale
        if self.scale_by == "posterior-variance":
            transition = (s_t**2 - (a_t / a_s) ** 2 * s_s**2).clamp_min(0.0)
            weight = self.scale * s_s**2 * transition / s_t**2
        moved = x
        for _ in range(self.n_guide_steps):
            moved = moved + weight * self.gradient(moved, t)
        state = x + (a_t / a_s) * (moved - x)
        return Prediction("eps", pred.eps, state, pred.alpha, pred.sigma, pred.variance_interp)
