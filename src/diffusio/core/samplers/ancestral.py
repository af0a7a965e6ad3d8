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

:func:`ddim_encode` runs deterministic DDIM forward in time: clean data to the x_T that DDIM
decodes back to it (Song et al. 2021, Sec. 5.4).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ..vlb import learned_log_variance
from .base import SamplingContext, time_grid

if TYPE_CHECKING:
    from ..model import DiffusionModel

__all__ = ["ddim", "ddim_encode", "ddpm", "grid_times"]


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


@torch.no_grad()
def ddim_encode(
    model: DiffusionModel,
    x0: Tensor,
    steps: int,
    *,
    cond: dict[str, Any] | None = None,
    progress: bool = False,
) -> Tensor:
    """Encode clean data ``x0`` to x_T by running DDIM's deterministic (eta = 0) update forward
    in time (Song et al. 2021, Sec. 4.3 and 5.4: the reverse of the ODE's Euler steps) on the
    grid that ``sample(model, ..., "ddim", steps)`` decodes on, with ``steps`` network
    evaluations.

    With grid times t_0 < t_1 < ... < t_{S-1} = t_max: ``x_{t_0} = a_0 x0 + s_0 eps(x0, t_0)``
    (x0 stands in for x_{t_0}, off by s_0 ~ 0.01 at DDPM's t = 1), then
    ``x_{t_{i+1}} = a_{i+1} x0_hat(x_{t_i}) + s_{i+1} eps(x_{t_i}, t_i)``: each decoding step
    ``t_{i+1} -> t_i`` inverted with the model's prediction at the state it lands on, which
    DDIM's decoder evaluates at ``t_{i+1}`` instead. The error of that swap shrinks with the
    step size, hence Table 2's falling reconstruction error.
    """
    ctx = SamplingContext(model, cond=dict(cond or {}), progress=progress)
    times = grid_times(ctx, steps)[::-1]  # increasing
    ctx.precompute(times)
    x = x0.to(model.device, model.dtype)
    a0, s0 = ctx.coefficients(times[0])
    x = a0 * x + s0 * ctx.evaluate(x, times[0], **ctx.cond).eps
    for i in ctx.steps(len(times) - 1, desc="encoding"):
        pred = ctx.evaluate(x, times[i], **ctx.cond)
        x = pred.combine(*ctx.coefficients(times[i + 1]))
    return x
