"""Probability-flow ODE samplers (Song et al. 2021, eq. 13):

    dx/dt = f(t) x - (1/2) g(t)^2 score(x, t)

integrated from t_max down to t_min with Euler (first order), Heun (second order; Karras et al.
2022, Algorithm 1) or scipy's adaptive RK45 (Dormand–Prince, ``rtol``/``atol``). Deterministic:
the map from prior noise to sample is the one the likelihood (:mod:`diffusio.core.likelihood`)
inverts. ``denoise=True`` adds a final E[x0 | x] evaluation at t_min.

``times`` replaces the ``steps``/``spacing`` grid: its ``steps + 1`` ends (Euler, Heun); for
RK45, the times the adaptive integration passes through (default ``[t_max, t_min]``: one
interval), integrating each interval on its own.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..parameterization import Prediction
from .base import SamplingContext, TimeGrid, resolve_times, sde_grid
from .callbacks import Callback, notify

__all__ = ["ode_euler", "ode_heun", "ode_rk45", "probability_flow"]


def _flow(ctx: SamplingContext, x: Tensor, t: float) -> tuple[Tensor, Prediction]:
    """The probability-flow velocity at (x, t) and the guided prediction it came from."""
    f, g2 = ctx.sde_coefficients(t)
    pred = ctx.predict(x, t)
    return f * x - 0.5 * g2 * pred.score, pred


def probability_flow(ctx: SamplingContext, x: Tensor, t: float) -> Tensor:
    """The probability-flow ODE's velocity dx/dt at (x, t), from the guided prediction."""
    return _flow(ctx, x, t)[0]


def ode_euler(
    ctx: SamplingContext,
    x: Tensor,
    steps: int = 100,
    spacing: str = "time",
    denoise: bool = False,
    times: TimeGrid | None = None,
    callback: Callback | None = None,
) -> Tensor:
    """Explicit Euler on the probability-flow ODE (one evaluation per step)."""
    times = sde_grid(ctx, x, times, steps, spacing, "ode-euler")
    for i in ctx.steps(len(times) - 1, desc="ode-euler"):
        t, t_next = times[i], times[i + 1]
        v, pred = _flow(ctx, x, t)
        notify(callback, i=i, t=t, t_next=t_next, x=x, pred=pred)
        x = ctx.constrain(x + (t_next - t) * v, t_next)
    return ctx.finish(x, times[-1], denoise, callback, len(times) - 1)


def ode_heun(
    ctx: SamplingContext,
    x: Tensor,
    steps: int = 50,
    spacing: str = "time",
    denoise: bool = False,
    times: TimeGrid | None = None,
    callback: Callback | None = None,
) -> Tensor:
    """Heun's second-order method (two evaluations per step; the callback gets the first's x0)."""
    times = sde_grid(ctx, x, times, steps, spacing, "ode-heun")
    for i in ctx.steps(len(times) - 1, desc="ode-heun"):
        t, t_next = times[i], times[i + 1]
        h = t_next - t
        d1, pred = _flow(ctx, x, t)
        notify(callback, i=i, t=t, t_next=t_next, x=x, pred=pred)
        d2 = probability_flow(ctx, x + h * d1, t_next)
        x = ctx.constrain(x + 0.5 * h * (d1 + d2), t_next)
    return ctx.finish(x, times[-1], denoise, callback, len(times) - 1)


def ode_rk45(
    ctx: SamplingContext,
    x: Tensor,
    steps: int | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    denoise: bool = False,
    times: TimeGrid | None = None,
    callback: Callback | None = None,
) -> Tensor:
    """Adaptive Dormand–Prince RK45 via ``scipy.integrate.solve_ivp`` (``steps`` is ignored).

    A step of this solver is one network evaluation (trial stages included): the callback is
    called at each, ``i`` counting them."""
    from scipy.integrate import solve_ivp

    if ctx.constraints:
        raise ValueError(
            "ode-rk45 takes adaptive steps and cannot apply state constraints; "
            "use ode-heun or dpm-solver++"
        )
    process = ctx.process
    shape, dtype, device = x.shape, x.dtype, x.device
    times = resolve_times(
        ctx, x, times, lambda: [process.t_max, process.t_min], name="ode-rk45", intervals=True
    )
    ctx.grid_steps = None  # adaptive
    calls = 0

    def velocity(t: float, y: np.ndarray) -> np.ndarray:
        nonlocal calls
        state = torch.from_numpy(y).reshape(shape).to(dtype=dtype, device=device)
        with torch.no_grad():
            v, pred = _flow(ctx, state, float(t))
        notify(callback, i=calls, t=float(t), t_next=None, x=state, pred=pred)
        calls += 1
        return v.reshape(-1).to(torch.float64).cpu().numpy()

    y = x.reshape(-1).to(torch.float64).cpu().numpy()
    for t, t_next in zip(times, times[1:], strict=False):
        sol = solve_ivp(velocity, (t, t_next), y, method="RK45", rtol=rtol, atol=atol)
        if not sol.success:
            raise RuntimeError(f"ode-rk45 failed: {sol.message}")
        y = sol.y[:, -1]
    x = torch.from_numpy(y).reshape(shape).to(dtype=dtype, device=device)
    return ctx.finish(x, times[-1], denoise, callback, calls)
