"""Discrete-time samplers on a process's grid: DDPM ancestral sampling and DDIM.

Both step from state x_t (coefficients a_t, s_t) to an earlier grid time s (a_s, s_s) through
the forward posterior q(x_s | x_t, x0) with x0 and eps from the model. For any process,

    var_post = (s_s^2 / s_t^2) * (s_t^2 - (a_t/a_s)^2 s_s^2)            (DDPM eq. 7, generalized)
    x_s      = a_s x0 + sqrt(s_s^2 - c^2) eps + c z                       (DDIM eq. 12)

* ``ddim``: ``c = eta * sqrt(var_post)`` (Song, Meng & Ermon 2021, eq. 16); eta = 0 is the
  deterministic DDIM, eta = 1 is DDPM with the posterior variance.
* ``ddpm``: Ho et al. 2020, Algorithm 2. The mean is the posterior mean (the eta = 1 mean) and the
  variance is ``variance="posterior"`` (beta-tilde) or ``variance="beta"`` (beta_t, the larger
  choice, here ``s_t^2 - (a_t/a_s)^2 s_s^2``).

``steps`` counts network evaluations: the last one maps the least-noisy grid state to clean data
(the final step of Algorithm 2, ``z = 0``). With ``discrete=True`` (default) the times are a
subsequence of the process's table (``timesteps=[...]`` picks table indices explicitly);
``discrete=False`` uses a continuous grid from t_max to t_min.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ..vlb import learned_log_variance
from .base import SamplingContext, time_grid

__all__ = ["ddim", "ddpm", "grid_times"]


def grid_times(
    ctx: SamplingContext,
    steps: int | None,
    timesteps: Sequence[int] | None = None,
    discrete: bool = True,
    spacing: str = "time",
) -> list[float]:
    """Decreasing evaluation times for the discrete samplers (the clean target is implicit)."""
    process = ctx.process
    if not discrete:
        if steps is None:
            raise ValueError("steps is required with discrete=False")
        return time_grid(process, steps - 1, spacing) if steps > 1 else [process.t_max]
    table = process.discrete()
    T = len(table)
    if timesteps is None:
        steps = T if steps is None else steps
        if not 1 <= steps <= T:
            raise ValueError(f"steps must be between 1 and the grid size {T}, got {steps}")
        if spacing == "quadratic":
            idx = torch.linspace(0, math.sqrt(T - 1), steps, dtype=torch.float64) ** 2
        else:
            idx = torch.linspace(0, T - 1, steps, dtype=torch.float64)
        timesteps = _distinct_indices([round(float(i)) for i in idx], T)
    bad = [i for i in timesteps if not 0 <= int(i) < T]
    if bad:
        raise ValueError(f"timesteps {bad} outside the grid 0..{T - 1}")
    chosen = sorted({int(i) for i in timesteps}, reverse=True)
    return [float(table.times[i]) for i in chosen]


def _distinct_indices(indices: list[int], size: int) -> list[int]:
    """Make rounded, increasing grid indices distinct (so ``steps`` means ``steps`` evaluations)
    by pushing collisions forward, then back from the end of the grid."""
    out: list[int] = []
    for i in indices:
        out.append(max(i, out[-1] + 1) if out else max(i, 0))
    for k in range(len(out) - 1, -1, -1):
        out[k] = min(out[k], size - 1 - (len(out) - 1 - k))
    return out


def _posterior_variance(a_t: float, s_t: float, a_s: float, s_s: float) -> tuple[float, float]:
    """(var of q(x_s | x_t, x0), forward transition var s_t^2 - (a_t/a_s)^2 s_s^2)."""
    transition = max(s_t**2 - (a_t / a_s) ** 2 * s_s**2, 0.0)
    return (s_s**2 / s_t**2) * transition, transition


def _posterior_run(
    ctx: SamplingContext, x: Tensor, times: list[float], noise_std, learned: bool = False
) -> Tensor:
    """Walk x down ``times`` (then to clean data); ``noise_std(var_post, transition)`` gives c,
    or, with ``learned``, the model's learned variance does (improved DDPM eq. 15)."""
    ctx.precompute(times)
    coefs = [ctx.coefficients(t) for t in times]
    for i in ctx.steps(len(times), desc="sampling"):
        ctx.next_time = times[i + 1] if i + 1 < len(times) else None
        pred = ctx.predict(x, times[i])
        if i == len(times) - 1:
            return pred.x0
        (a_t, s_t), (a_s, s_s) = coefs[i], coefs[i + 1]
        var_post, transition = _posterior_variance(a_t, s_t, a_s, s_s)
        mean_std, c = noise_std(var_post, transition, s_s)
        if learned:
            logvar = learned_log_variance(
                pred.variance, math.log(transition), math.log(max(var_post, 1e-300))
            )
            c = torch.exp(0.5 * logvar)
        x = pred.combine(a_s, mean_std)
        if learned or c > 0:
            x = x + c * ctx.noise_like(x)
        x = ctx.constrain(x, times[i + 1])
    return x


def ddim(
    ctx: SamplingContext,
    x: Tensor,
    steps: int | None = 50,
    eta: float = 0.0,
    timesteps: Sequence[int] | None = None,
    discrete: bool = True,
    spacing: str = "time",
) -> Tensor:
    """DDIM (Song, Meng & Ermon 2021, eq. 12 and 16); ``eta`` scales the stochasticity."""
    if eta < 0:
        raise ValueError(f"eta must be non-negative, got {eta}")

    def noise_std(var_post: float, transition: float, s_s: float) -> tuple[float, float]:
        c = eta * math.sqrt(var_post)
        return math.sqrt(max(s_s**2 - c**2, 0.0)), c

    return _posterior_run(ctx, x, grid_times(ctx, steps, timesteps, discrete, spacing), noise_std)


def ddpm(
    ctx: SamplingContext,
    x: Tensor,
    steps: int | None = None,
    variance: str | None = None,
    timesteps: Sequence[int] | None = None,
    discrete: bool = True,
    spacing: str = "time",
) -> Tensor:
    """Ancestral sampling (Ho et al. 2020, Algorithm 2); ``variance`` is "posterior", "beta" or
    "learned" (the model's own, improved DDPM eq. 15; the default for a learned-variance model)."""
    if variance is None:
        variance = "learned" if ctx.model.variance == "learned" else "posterior"
    if variance not in ("posterior", "beta", "learned"):
        raise ValueError(f"unknown ddpm variance {variance!r}; valid: posterior, beta, learned")
    if variance == "learned" and ctx.model.variance != "learned":
        raise ValueError("variance='learned' needs a model trained with variance='learned'")

    def noise_std(var_post: float, transition: float, s_s: float) -> tuple[float, float]:
        mean_std = math.sqrt(max(s_s**2 - var_post, 0.0))  # posterior mean's eps coefficient
        return mean_std, math.sqrt(var_post if variance == "posterior" else transition)

    times = grid_times(ctx, steps, timesteps, discrete, spacing)
    return _posterior_run(ctx, x, times, noise_std, learned=variance == "learned")
