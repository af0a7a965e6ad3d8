"""Probability-flow ODE samplers (Song et al. 2021, eq. 13):

    dx/dt = f(t) x - (1/2) g(t)^2 score(x, t)

integrated from t_max down to t_min with Euler (first order), Heun (second order; Karras et al.
2022, Algorithm 1) or scipy's adaptive RK45 (Dormand–Prince, ``rtol``/``atol``). Deterministic:
the map from prior noise to sample is the one the likelihood (:mod:`diffusio.core.likelihood`)
inverts. ``denoise=True`` adds a final E[x0 | x] evaluation at t_min.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .base import SamplingContext, time_grid

__all__ = ["ode_euler", "ode_heun", "ode_rk45", "probability_flow"]


def probability_flow(ctx: SamplingContext, x: Tensor, t: float) -> Tensor:
    """The probability-flow ODE's velocity dx/dt at (x, t), from the guided prediction."""
    f, g2 = ctx.sde_coefficients(t)
    return f * x - 0.5 * g2 * ctx.predict(x, t).score


def ode_euler(
    ctx: SamplingContext, x: Tensor, steps: int = 100, spacing: str = "time", denoise: bool = False
) -> Tensor:
    """Explicit Euler on the probability-flow ODE (one evaluation per step)."""
    times = time_grid(ctx.process, steps, spacing)
    ctx.precompute(times)
    ctx.precompute(times, sde=True)
    for i in ctx.steps(steps, desc="ode-euler"):
        t, t_next = times[i], times[i + 1]
        x = ctx.constrain(x + (t_next - t) * probability_flow(ctx, x, t), t_next)
    return ctx.finish(x, times[-1], denoise)


def ode_heun(
    ctx: SamplingContext, x: Tensor, steps: int = 50, spacing: str = "time", denoise: bool = False
) -> Tensor:
    """Heun's second-order method (two evaluations per step)."""
    times = time_grid(ctx.process, steps, spacing)
    ctx.precompute(times)
    ctx.precompute(times, sde=True)
    for i in ctx.steps(steps, desc="ode-heun"):
        t, t_next = times[i], times[i + 1]
        h = t_next - t
        d1 = probability_flow(ctx, x, t)
        d2 = probability_flow(ctx, x + h * d1, t_next)
        x = ctx.constrain(x + 0.5 * h * (d1 + d2), t_next)
    return ctx.finish(x, times[-1], denoise)


def ode_rk45(
    ctx: SamplingContext,
    x: Tensor,
    steps: int | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    denoise: bool = False,
) -> Tensor:
    """Adaptive Dormand–Prince RK45 via ``scipy.integrate.solve_ivp`` (``steps`` is ignored)."""
    from scipy.integrate import solve_ivp

    if ctx.constraints:
        raise ValueError(
            "ode-rk45 takes adaptive steps and cannot apply state constraints; "
            "use ode-heun or dpm-solver++"
        )
    process = ctx.process
    shape, dtype, device = x.shape, x.dtype, x.device

    def velocity(t: float, y: np.ndarray) -> np.ndarray:
        state = torch.from_numpy(y).reshape(shape).to(dtype=dtype, device=device)
        with torch.no_grad():
            v = probability_flow(ctx, state, float(t))
        return v.reshape(-1).to(torch.float64).cpu().numpy()

    y0 = x.reshape(-1).to(torch.float64).cpu().numpy()
    sol = solve_ivp(
        velocity, (process.t_max, process.t_min), y0, method="RK45", rtol=rtol, atol=atol
    )
    if not sol.success:
        raise RuntimeError(f"ode-rk45 failed: {sol.message}")
    x = torch.from_numpy(sol.y[:, -1]).reshape(shape).to(dtype=dtype, device=device)
    return ctx.finish(x, process.t_min, denoise)
