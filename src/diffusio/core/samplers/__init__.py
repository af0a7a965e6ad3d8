"""One entry point for every sampler: ``sample(model, shape, sampler=..., steps=...)``.

=====================  ==================================================  ====================
name                   method                                              NFE
=====================  ==================================================  ====================
``ddpm``               ancestral sampling (Ho et al. 2020, Alg. 2)          steps
``ddim``               DDIM, ``eta`` (Song, Meng & Ermon 2021, eq. 12)      steps
``annealed-langevin``  NCSN (Song & Ermon 2019, Alg. 1)                     steps * n_steps_each
``euler-maruyama``     reverse SDE (Song et al. 2021, eq. 6)                steps
``pc``                 predictor-corrector (Song et al. 2021, Alg. 2-3)     steps * (1 + n_corrector)
``ode-euler``          probability-flow ODE, Euler (eq. 13)                 steps
``ode-heun``           probability-flow ODE, Heun                           2 * steps
``ode-rk45``           probability-flow ODE, adaptive RK45 (scipy)          adaptive
``dpm-solver++``       DPM-Solver++(2M) (Lu et al. 2022, Alg. 2)            steps
=====================  ==================================================  ====================

Samplers whose last state is still noisy (SDE/Langevin) add one denoising evaluation by default
(``denoise=True``); the ODE samplers do not. ``return_stats=True`` reports the exact ``nfe``
and the grid used (``times``). :func:`ddim_encode` inverts deterministic DDIM (data to latent
noise).

Composable pieces (the samplers hold no state between calls):

* ``times=``: an explicit decreasing grid, e.g. a tail of a sampler's own grid to start part-way
  from ``x_init`` (SDEdit, warm-started replanning). What ``steps`` becomes: ddpm, ddim: the
  evaluation times, ``steps = len(times)`` (the last evaluation maps to clean data);
  annealed-langevin: the noise levels, ``steps = len(times)``; euler-maruyama, pc, ode-euler,
  ode-heun, dpm-solver++: the ends of ``steps = len(times) - 1`` steps; ode-rk45: the times the
  adaptive integration passes through. For ddpm and ddim the grid may be per-frame time tensors
  (state (N, L, D), times (N, L) per step: frames at different noise levels).
* ``callback=``: called once per step with a dict (``i``, ``t``, ``x``, ``x0``, ...; see
  :mod:`~diffusio.core.samplers.callbacks`); :class:`X0Trace` records x0 along a chain.
* :func:`reverse_step`: the DDPM/DDIM family's single step, with its Gaussian mean and std;
  :func:`gaussian_log_prob` gives its exact log-probability.
* ``noise_scale=`` (ddpm, ddim, :func:`reverse_step`; default 1): multiplies the std of the
  injected noise, keeping the kernel mean (low-temperature sampling; Decision Diffuser, Ajay et
  al. 2023, samples with 0.5). ``noise_scale=0`` walks the chain of kernel means.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from ..model import DiffusionModel
from .ancestral import (
    ReverseStep,
    ddim,
    ddim_encode,
    ddpm,
    gaussian_log_prob,
    grid_times,
    reverse_step,
)
from .base import SamplingContext, TimeGrid, check_times, first_time, time_bounds, time_grid
from .callbacks import Callback, X0Trace
from .dpm_solver import dpm_solver_pp
from .ode import ode_euler, ode_heun, ode_rk45
from .stochastic import annealed_langevin, euler_maruyama, predictor_corrector

__all__ = [
    "SAMPLERS",
    "Callback",
    "ReverseStep",
    "SamplingContext",
    "TimeGrid",
    "X0Trace",
    "check_times",
    "ddim_encode",
    "gaussian_log_prob",
    "grid_times",
    "reverse_step",
    "sample",
    "time_bounds",
    "time_grid",
]

SAMPLERS: dict[str, Callable[..., Tensor]] = {
    "ddpm": ddpm,
    "ddim": ddim,
    "annealed-langevin": annealed_langevin,
    "euler-maruyama": euler_maruyama,
    "pc": predictor_corrector,
    "ode-euler": ode_euler,
    "ode-heun": ode_heun,
    "ode-rk45": ode_rk45,
    "dpm-solver++": dpm_solver_pp,
}


@functools.cache
def _signature(fn: Callable[..., Tensor]) -> dict[str, Any]:
    """A sampler's options and their defaults (cached: called on every ``sample``)."""
    params = inspect.signature(fn).parameters
    return {k: p.default for k, p in params.items() if k not in ("ctx", "x")}


_GRID_OPTIONS = ("spacing", "discrete", "timesteps")  # what an explicit ``times`` replaces


_OLD_OPTIONS = ("variance",)  # older names still accepted (ddpm: variance -> kernel_variance)


def _check_options(name: str, fn: Callable[..., Tensor], options: dict[str, Any]) -> None:
    accepted = [p for p in _signature(fn) if p not in ("steps", "times", "callback")]
    valid = [p for p in accepted if p not in _OLD_OPTIONS]
    unknown = [k for k in options if k not in accepted]
    if unknown:
        raise ValueError(
            f"sampler {name!r} has no option(s) {', '.join(unknown)}; "
            f"valid: {', '.join(valid) or 'none'}"
        )


def sample(
    model: DiffusionModel,
    shape: Sequence[int],
    sampler: str = "ddim",
    steps: int | None = None,
    seed: int | None = None,
    *,
    guidance: Sequence[Any] = (),
    constraints: Sequence[Any] = (),
    cond: dict[str, Any] | None = None,
    x_init: Tensor | None = None,
    times: TimeGrid | None = None,
    callback: Callback | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    progress: bool = False,
    return_stats: bool = False,
    **options: Any,
) -> Tensor | tuple[Tensor, dict[str, Any]]:
    """Draw samples of ``shape`` (batch first) from ``model`` with the named sampler.

    ``steps`` defaults to the sampler's own default. ``seed`` fixes the prior draw and every
    noise draw (same seed, same samples). ``x_init`` replaces the prior draw. ``times`` is an
    explicit grid replacing ``steps`` and the grid options (module docstring); a grid starting
    below t_max needs ``x_init`` (the state at ``times[0]``). ``callback(info)`` is called once
    per step. ``guidance`` and ``constraints`` are steering hooks
    (:mod:`diffusio.core.steering`). Extra ``options`` go to the sampler (e.g. ``eta`` for ddim,
    ``kernel_variance`` for ddpm, ``snr`` for pc); unknown options raise ValueError. Samples
    keep the model's dtype (float64 works). With ``return_stats`` also returns ``{"nfe",
    "sampler", "steps", "seconds", "times"}`` (``times``: the grid the sampler walked).
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; valid: {', '.join(SAMPLERS)}")
    if not isinstance(model, DiffusionModel):
        raise TypeError(f"model must be a DiffusionModel, got {type(model).__name__}")
    fn = SAMPLERS[sampler]
    _check_options(sampler, fn, options)
    if times is not None:
        clash = ["steps"] * (steps is not None) + [k for k in _GRID_OPTIONS if k in options]
        if clash:
            raise ValueError(f"times replaces steps and the grid options; got {', '.join(clash)}")
    if steps is not None:
        options["steps"] = int(steps)
    dtype = dtype or model.dtype
    device = torch.device(device) if device is not None else model.device
    generator = None
    if seed is not None:
        generator = torch.Generator(device=device).manual_seed(int(seed))
    ctx = SamplingContext(
        model,
        guidance=list(guidance),
        constraints=list(constraints),
        cond=dict(cond or {}),
        generator=generator,
        progress=progress,
    )
    process = model.process
    shape = tuple(int(s) for s in shape)
    if x_init is None:
        x = process.prior_sample(shape, generator=generator, dtype=dtype, device=device)
    else:
        if tuple(x_init.shape) != shape:
            raise ValueError(f"x_init has shape {tuple(x_init.shape)}, expected {shape}")
        x = x_init.to(dtype=dtype, device=device)
    if times is not None:
        times = check_times(process, times, x, name=sampler, per_frame=True)
        if x_init is None and first_time(times) < process.t_max:
            raise ValueError(
                f"times start at {first_time(times):g} < t_max = {process.t_max:g}: pass "
                "x_init, the state at times[0] (the prior draw is the state at t_max)"
            )
    x = ctx.constrain(x, process.t_max if times is None else times[0])
    start = time.perf_counter()
    with torch.no_grad():
        out = fn(ctx, x, times=times, callback=callback, **options)
        out = ctx.constrain(out, None)  # the final state counts as clean data
    if not return_stats:
        return out
    used = ctx.grid_steps if times is not None else options.get("steps", _signature(fn)["steps"])
    stats = {
        "nfe": ctx.nfe,
        "sampler": sampler,
        "steps": used,
        "seconds": time.perf_counter() - start,
        "times": ctx.grid,
    }
    return out, stats
