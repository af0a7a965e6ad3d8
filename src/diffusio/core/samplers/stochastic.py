"""Score-based stochastic samplers: annealed Langevin dynamics (NCSN), the reverse SDE by
Euler–Maruyama, and predictor–corrector sampling (Score SDE).

* ``annealed-langevin`` — Song & Ermon 2019, Algorithm 1: for noise levels sigma_1 > ... > sigma_L,
  ``n_steps_each`` Langevin steps ``x <- x + a_i score + sqrt(2 a_i) z`` with
  ``a_i = step_size * sigma_i^2 / sigma_L^2``.
* ``euler-maruyama`` — the reverse-time SDE (Song et al. 2021, eq. 6)
  ``dx = [f(t) x - g(t)^2 score] dt + g(t) dw`` integrated backwards from t_max to t_min.
* ``pc`` — Song et al. 2021, Algorithms 2–3: per step, ``n_corrector`` Langevin corrector steps
  with step size ``2 r_a (snr ||z|| / ||score||)^2`` (r_a = alpha ratio squared, 1 for VE), then a
  predictor: ``reverse-diffusion`` (eq. 46, the discretized reverse SDE) or ``euler-maruyama``.

These samplers end, by default, with one denoising evaluation at t_min that returns E[x0 | x]
(Tweedie's formula; the "noise removal" step of the Score SDE code): ``denoise=False`` skips it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..parameterization import Prediction
from .base import SamplingContext, TimeGrid, resolve_times, sde_grid, time_grid
from .callbacks import Callback, notify

__all__ = ["annealed_langevin", "euler_maruyama", "predictor_corrector"]


def _mean_norm(v: Tensor) -> Tensor:
    return v.reshape(v.shape[0], -1).norm(dim=1).mean()


def annealed_langevin(
    ctx: SamplingContext,
    x: Tensor,
    steps: int = 10,
    n_steps_each: int = 100,
    step_size: float | None = None,
    spacing: str = "log-snr",
    denoise: bool = True,
    times: TimeGrid | None = None,
    callback: Callback | None = None,
) -> Tensor:
    """Annealed Langevin dynamics over ``steps`` noise levels (Song & Ermon 2019, Alg. 1).

    ``step_size`` is epsilon, the step at the smallest level; by default ``0.2 sigma_L^2``
    (NCSN's 2e-5 at sigma_L = 0.01 is 0.2 sigma_L^2). Levels are uniform in log-SNR: NCSN's
    geometric sigma ladder on the VE process. ``times``: the levels' times (``steps =
    len(times)``). The callback sees every Langevin update (``i`` counts them; ``level``).
    """
    process = ctx.process

    def build() -> list[float]:
        return time_grid(process, steps - 1, spacing) if steps > 1 else [process.t_min]

    times = resolve_times(ctx, x, times, build, name="annealed-langevin", intervals=False)
    sigmas = [ctx.coefficients(t)[1] for t in times]
    sigma_last = sigmas[-1]
    if sigma_last <= 0:
        raise ValueError("annealed-langevin needs sigma(t_min) > 0")
    eps = 0.2 * sigma_last**2 if step_size is None else float(step_size)
    total = len(times) * n_steps_each
    bar = iter(ctx.steps(total, desc="langevin"))
    i = 0
    for level, (t, sigma) in enumerate(zip(times, sigmas, strict=True)):
        a = eps * sigma**2 / sigma_last**2
        for _ in range(n_steps_each):
            next(bar, None)
            pred = ctx.predict(x, t)
            notify(callback, i=i, level=level, t=t, t_next=t, x=x, pred=pred)
            x = x + a * pred.score + math.sqrt(2 * a) * ctx.noise_like(x)
            x = ctx.constrain(x, t)
            i += 1
    return ctx.finish(x, times[-1], denoise, callback, i)


def _euler_maruyama_step(
    ctx: SamplingContext, x: Tensor, t: float, t_next: float
) -> tuple[Tensor, Prediction]:
    f, g2 = ctx.sde_coefficients(t)
    dt = t_next - t  # negative: time runs backwards
    pred = ctx.predict(x, t)
    return x + (f * x - g2 * pred.score) * dt + math.sqrt(g2 * -dt) * ctx.noise_like(x), pred


def euler_maruyama(
    ctx: SamplingContext,
    x: Tensor,
    steps: int = 1000,
    spacing: str = "time",
    denoise: bool = True,
    times: TimeGrid | None = None,
    callback: Callback | None = None,
) -> Tensor:
    """Euler–Maruyama on the reverse SDE (Song et al. 2021, eq. 6); ``times``: the grid's
    ``steps + 1`` ends."""
    times = sde_grid(ctx, x, times, steps, spacing, "euler-maruyama")
    for i in ctx.steps(len(times) - 1, desc="euler-maruyama"):
        t, t_next = times[i], times[i + 1]
        x_next, pred = _euler_maruyama_step(ctx, x, t, t_next)
        notify(callback, i=i, t=t, t_next=t_next, x=x, pred=pred)
        x = ctx.constrain(x_next, t_next)
    return ctx.finish(x, times[-1], denoise, callback, len(times) - 1)


PREDICTORS = ("reverse-diffusion", "euler-maruyama", "none")


def predictor_corrector(
    ctx: SamplingContext,
    x: Tensor,
    steps: int = 1000,
    predictor: str = "reverse-diffusion",
    n_corrector: int = 1,
    snr: float = 0.16,
    spacing: str = "time",
    denoise: bool = True,
    times: TimeGrid | None = None,
    callback: Callback | None = None,
) -> Tensor:
    """Predictor–corrector sampling (Song et al. 2021, Algorithms 2 and 3); ``times``: the
    grid's ``steps + 1`` ends. The callback's ``x``, ``x0`` are those of the step's last
    evaluation (the predictor's; x0 is None for a step without one).

    As in the reference code, the corrector's step size uses norms averaged over the batch: in
    low dimension a single sample's score norm can be near zero, and a per-sample step explodes.
    """
    if predictor not in PREDICTORS:
        raise ValueError(f"unknown predictor {predictor!r}; valid: {', '.join(PREDICTORS)}")
    times = sde_grid(ctx, x, times, steps, spacing, "pc")
    for i in ctx.steps(len(times) - 1, desc="pc"):
        t, t_next = times[i], times[i + 1]
        (a_t, s_t), (a_s, s_s) = ctx.coefficients(t), ctx.coefficients(t_next)
        ratio = a_t / a_s  # forward one-step scale, sqrt(1 - beta_i) for VP
        pred = None
        for _ in range(n_corrector):
            pred = ctx.predict(x, t)
            z = ctx.noise_like(x)
            score = pred.score
            step = 2 * ratio**2 * (snr * _mean_norm(z) / _mean_norm(score).clamp_min(1e-30)) ** 2
            x = x + step * score + torch.sqrt(2 * step) * z
            x = ctx.constrain(x, t)
        if predictor == "reverse-diffusion":
            # discretized forward step x_t = ratio x_s + G z  =>  reverse: x_s = x_t - f + G^2 score
            g2 = max(s_t**2 - ratio**2 * s_s**2, 0.0)
            pred = ctx.predict(x, t)
            x = x - (ratio - 1) * x + g2 * pred.score + math.sqrt(g2) * ctx.noise_like(x)
        elif predictor == "euler-maruyama":
            x, pred = _euler_maruyama_step(ctx, x, t, t_next)
        if pred is None:  # no evaluation this step (predictor "none", no corrector)
            notify(callback, i=i, t=t, t_next=t_next, x=x, x0=None)
        else:
            notify(callback, i=i, t=t, t_next=t_next, x=pred.x, pred=pred)
        x = ctx.constrain(x, t_next)
    return ctx.finish(x, times[-1], denoise, callback, len(times) - 1)
