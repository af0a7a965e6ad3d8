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
(``denoise=True``); the ODE samplers do not. ``return_stats=True`` reports the exact ``nfe``.
:func:`ddim_encode` inverts deterministic DDIM (data to latent noise).
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
from .ancestral import ddim, ddim_encode, ddpm
from .base import SamplingContext, time_grid
from .dpm_solver import dpm_solver_pp
from .ode import ode_euler, ode_heun, ode_rk45
from .stochastic import annealed_langevin, euler_maruyama, predictor_corrector

__all__ = ["SAMPLERS", "SamplingContext", "ddim_encode", "sample", "time_grid"]

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


def _check_options(name: str, fn: Callable[..., Tensor], options: dict[str, Any]) -> None:
    valid = [p for p in _signature(fn) if p != "steps"]
    unknown = [k for k in options if k not in valid]
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
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    progress: bool = False,
    return_stats: bool = False,
    **options: Any,
) -> Tensor | tuple[Tensor, dict[str, Any]]:
    """Draw samples of ``shape`` (batch first) from ``model`` with the named sampler.

    ``steps`` defaults to the sampler's own default. ``seed`` fixes the prior draw and every
    noise draw (same seed, same samples). ``x_init`` replaces the prior draw. ``guidance`` and
    ``constraints`` are steering hooks (:mod:`diffusio.core.steering`). Extra ``options`` go to
    the sampler (e.g. ``eta`` for ddim, ``snr`` for pc); unknown options raise ValueError.
    Samples keep the model's dtype (float64 works). With ``return_stats`` also returns
    ``{"nfe", "sampler", "steps", "seconds"}``.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; valid: {', '.join(SAMPLERS)}")
    if not isinstance(model, DiffusionModel):
        raise TypeError(f"model must be a DiffusionModel, got {type(model).__name__}")
    fn = SAMPLERS[sampler]
    _check_options(sampler, fn, options)
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
    x = ctx.constrain(x, process.t_max)
    start = time.perf_counter()
    with torch.no_grad():
        out = fn(ctx, x, **options)
        out = ctx.constrain(out, None)  # the final state counts as clean data
    if not return_stats:
        return out
    used = options.get("steps", _signature(fn)["steps"])
    stats = {
        "nfe": ctx.nfe,
        "sampler": sampler,
        "steps": used,
        "seconds": time.perf_counter() - start,
    }
    return out, stats
