"""Discrete-time samplers on a process's grid: DDPM ancestral sampling and DDIM.

Both step from state x_t (coefficients a_t, s_t) to an earlier grid time s (a_s, s_s) through
the forward posterior q(x_s | x_t, x0) with x0 and eps from the model. For any process,

    var_post = (s_s^2 / s_t^2) * (s_t^2 - (a_t/a_s)^2 s_s^2)            (DDPM eq. 7, generalized)
    x_s      = a_s x0 + sqrt(s_s^2 - c^2) eps + c z                       (DDIM eq. 12)

* ``ddim``: ``c = eta * sqrt(var_post)`` (Song, Meng & Ermon 2021, eq. 16); eta = 0 is the
  deterministic DDIM, eta = 1 is DDPM with the posterior variance.
* ``ddpm``: Ho et al. 2020, Algorithm 2. The mean is the posterior mean (the eta = 1 mean) and the
  reverse kernel's variance is ``kernel_variance="posterior"`` (beta-tilde), ``"beta"`` (beta_t,
  the larger choice, here ``s_t^2 - (a_t/a_s)^2 s_s^2``) or ``"learned"`` (the model's own, for a
  model with ``variance_head="learned"``). ``variance=`` is the older spelling of
  ``kernel_variance=``, still accepted.

``noise_scale`` (both samplers and :func:`reverse_step`; default 1) multiplies the std of the
injected noise, leaving the mean alone: sampling at a lower temperature, as Decision Diffuser's
code does with 0.5 (Ajay et al. 2023, their ``p_sample``). ``noise_scale=0`` walks the chain of
kernel means; a step's reported ``std`` is the scaled one (so :func:`gaussian_log_prob` is the
log-density of the kernel actually sampled).

``steps`` counts network evaluations: the last one maps the least-noisy grid state to clean data
(the final step of Algorithm 2, ``z = 0``). With ``discrete=True`` (default) the times are a
subsequence of the process's table (``timesteps=[...]`` picks table indices explicitly);
``discrete=False`` uses a continuous grid from t_max to t_min. An explicit ``times=`` grid lists
the evaluation times instead (``steps = len(times)``), as floats or as per-frame tensors (each
frame of the state on its own schedule; the coefficients above are then tensors).

Both samplers take their steps with :func:`reverse_step`'s step function; :func:`reverse_step`
is the public single step, returning the draw with its Gaussian mean and std, and
:func:`gaussian_log_prob` its exact log-density (the log-probability of a denoising chain).

:func:`ddim_encode` runs deterministic DDIM forward in time: clean data to the x_T that DDIM
decodes back to it (Song et al. 2021, Sec. 5.4).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import Tensor

from ..parameterization import Prediction
from ..processes import Process
from ..vlb import learned_log_variance
from .base import SamplingContext, TimeGrid, check_times, resolve_times, time_grid
from .callbacks import Callback, notify

if TYPE_CHECKING:
    from ..model import DiffusionModel

__all__ = [
    "KERNEL_VARIANCES",
    "ReverseStep",
    "ddim",
    "ddim_encode",
    "ddpm",
    "gaussian_log_prob",
    "grid_times",
    "reverse_step",
]


KERNEL_VARIANCES = ("posterior", "beta", "learned")
"""The reverse kernel variances of the ddpm sampler and :func:`reverse_step`."""


def _kernel_variance(kernel_variance: str | None, variance: str | None) -> str | None:
    """``kernel_variance``, or its older name ``variance`` (one of them, or both equal)."""
    if variance is None:
        return kernel_variance
    if kernel_variance is not None and kernel_variance != variance:
        raise ValueError(
            f"variance is the older name of kernel_variance: got variance={variance!r} and "
            f"kernel_variance={kernel_variance!r}"
        )
    return variance


def grid_times(
    ctx: SamplingContext | Process,
    steps: int | None,
    timesteps: Sequence[int] | None = None,
    discrete: bool = True,
    spacing: str = "time",
) -> list[float]:
    """Decreasing evaluation times for the discrete samplers (the clean target is implicit):
    the grid ``ddim``/``ddpm`` build from ``steps`` (``ctx`` a sampling context or a process)."""
    process = ctx if isinstance(ctx, Process) else ctx.process
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


def _sqrt(v: Any) -> Any:
    return torch.sqrt(v) if isinstance(v, Tensor) else math.sqrt(v)


def _positive(v: Any) -> Any:
    return v.clamp_min(0.0) if isinstance(v, Tensor) else max(v, 0.0)


def _posterior_variance(a_t: Any, s_t: Any, a_s: Any, s_s: Any) -> tuple[Any, Any]:
    """(var of q(x_s | x_t, x0), forward transition var s_t^2 - (a_t/a_s)^2 s_s^2); floats or
    per-frame tensors."""
    transition = _positive(s_t**2 - (a_t / a_s) ** 2 * s_s**2)
    return (s_s**2 / s_t**2) * transition, transition


class ReverseStep(NamedTuple):
    """One reverse step x_t -> x_s: the draw ``x_next = mean + std * z`` and its Gaussian
    ``mean`` and ``std`` (floats, or tensors broadcasting against x)."""

    x_next: Tensor
    mean: Tensor
    std: float | Tensor


Rule = Callable[[Any, Any, Any], tuple[Any, Any]]  # (var_post, transition, s_s) -> (c_eps, std)


def eta_rule(eta: float) -> Rule:
    """DDIM's step (Song et al. 2021, eq. 12 and 16): std = eta sqrt(var_post), and the eps
    coefficient of the mean is what keeps the marginal variance, sqrt(s_s^2 - std^2)."""
    if eta < 0:
        raise ValueError(f"eta must be non-negative, got {eta}")

    def rule(var_post: Any, transition: Any, s_s: Any) -> tuple[Any, Any]:
        c = eta * _sqrt(var_post)
        return _sqrt(_positive(s_s**2 - c**2)), c

    return rule


def ddpm_rule(kernel_variance: str) -> Rule:
    """DDPM's step (Ho et al. 2020, eq. 7 and Alg. 2): the posterior mean, std sqrt(var_post)
    ("posterior", beta-tilde), sqrt(transition) ("beta", beta_t), or the model's ("learned",
    improved DDPM eq. 15; the rule's std is then replaced by the learned one)."""
    if kernel_variance not in KERNEL_VARIANCES:
        raise ValueError(
            f"unknown ddpm kernel variance {kernel_variance!r}; valid: "
            f"{', '.join(KERNEL_VARIANCES)}"
        )

    def rule(var_post: Any, transition: Any, s_s: Any) -> tuple[Any, Any]:
        mean_std = _sqrt(_positive(s_s**2 - var_post))  # posterior mean's eps coefficient
        return mean_std, _sqrt(var_post if kernel_variance == "posterior" else transition)

    return rule


def check_noise_scale(noise_scale: float) -> float:
    """``noise_scale`` as a float, validated: finite and non-negative."""
    noise_scale = float(noise_scale)
    if not (math.isfinite(noise_scale) and noise_scale >= 0):
        raise ValueError(f"noise_scale must be finite and non-negative, got {noise_scale}")
    return noise_scale


def _step(
    ctx: SamplingContext,
    x: Tensor,
    t: float | Tensor,
    s: float | Tensor | None,
    rule: Rule,
    learned: bool = False,
    noise: Tensor | None = None,
    noise_scale: float = 1.0,
) -> tuple[ReverseStep, Prediction]:
    """The one DDPM/DDIM step of every sampler of this family and of :func:`reverse_step`:
    x_s = a_s x0 + c_eps eps + std z through the posterior q(x_s | x_t, x0) (module docstring);
    ``s = None`` is the step to clean data (x0, std 0). ``noise`` replaces the drawn z;
    ``noise_scale`` multiplies std (not the mean's coefficients)."""
    ctx.next_time = s
    pred = ctx.predict(x, t)
    if s is None:
        return ReverseStep(pred.x0, pred.x0, 0.0), pred
    if isinstance(t, Tensor) or isinstance(s, Tensor):
        if learned:
            raise ValueError(
                "kernel_variance='learned' takes one time per step, not per-frame times"
            )
        t_ = t if isinstance(t, Tensor) else torch.full_like(s, t)
        s_ = s if isinstance(s, Tensor) else torch.full_like(t_, s)
        (a_t, s_t), (a_s, s_s) = ctx.coefficients_like(t_, x), ctx.coefficients_like(s_, x)
    else:
        (a_t, s_t), (a_s, s_s) = ctx.coefficients(t), ctx.coefficients(s)
    var_post, transition = _posterior_variance(a_t, s_t, a_s, s_s)
    mean_std, std = rule(var_post, transition, s_s)
    if learned:
        logvar = learned_log_variance(
            pred.variance_interp, math.log(transition), math.log(max(var_post, 1e-300))
        )
        std = torch.exp(0.5 * logvar)
    if noise_scale != 1.0:
        std = std * noise_scale
    mean = pred.combine(a_s, mean_std)
    draw = learned or (bool((std > 0).any()) if isinstance(std, Tensor) else std > 0)
    if not draw:
        return ReverseStep(mean, mean, std), pred
    z = ctx.noise_like(x) if noise is None else noise.to(x)
    return ReverseStep(mean + std * z, mean, std), pred


def _posterior_run(
    ctx: SamplingContext,
    x: Tensor,
    times: list[Any],
    rule: Rule,
    learned: bool = False,
    callback: Callback | None = None,
    noise_scale: float = 1.0,
) -> Tensor:
    """Walk x down ``times`` with :func:`_step`, the last step to clean data."""
    if not isinstance(times[0], Tensor):
        ctx.precompute(times)
    for i in ctx.steps(len(times), desc="sampling"):
        t, s = times[i], times[i + 1] if i + 1 < len(times) else None
        step, pred = _step(ctx, x, t, s, rule, learned, noise_scale=noise_scale)
        if callback is not None:
            notify(callback, i=i, t=t, t_next=s, x=x, pred=pred, **step._asdict())
        if s is None:
            return step.x_next
        x = ctx.constrain(step.x_next, s)
    return x


def ddim(
    ctx: SamplingContext,
    x: Tensor,
    steps: int | None = 50,
    eta: float = 0.0,
    timesteps: Sequence[int] | None = None,
    discrete: bool = True,
    spacing: str = "time",
    times: TimeGrid | None = None,
    callback: Callback | None = None,
    noise_scale: float = 1.0,
) -> Tensor:
    """DDIM (Song, Meng & Ermon 2021, eq. 12 and 16); ``eta`` scales the stochasticity.

    ``times``: the evaluation times (``steps = len(times)``; floats or per-frame tensors),
    replacing ``steps``/``timesteps``/``discrete``/``spacing``; the last maps to clean data.
    ``noise_scale`` multiplies the injected noise's std (low temperature; module docstring)."""
    rule = eta_rule(eta)
    noise_scale = check_noise_scale(noise_scale)
    times = resolve_times(
        ctx, x, times, lambda: grid_times(ctx, steps, timesteps, discrete, spacing),
        name="ddim", intervals=False, per_frame=True,
    )  # fmt: skip
    return _posterior_run(ctx, x, times, rule, callback=callback, noise_scale=noise_scale)


def ddpm(
    ctx: SamplingContext,
    x: Tensor,
    steps: int | None = None,
    kernel_variance: str | None = None,
    timesteps: Sequence[int] | None = None,
    discrete: bool = True,
    spacing: str = "time",
    times: TimeGrid | None = None,
    callback: Callback | None = None,
    variance: str | None = None,
    noise_scale: float = 1.0,
) -> Tensor:
    """Ancestral sampling (Ho et al. 2020, Algorithm 2); ``kernel_variance``, the reverse
    kernel's variance, is "posterior", "beta" or "learned" (the model's own, improved DDPM
    eq. 15; the default for a model with ``variance_head="learned"``). ``variance`` is its older
    name. ``noise_scale`` multiplies the injected noise's std (low temperature; Decision
    Diffuser samples with 0.5).

    ``times``: the evaluation times, as for :func:`ddim`."""
    noise_scale = check_noise_scale(noise_scale)
    kernel_variance = _kernel_variance(kernel_variance, variance)
    if kernel_variance is None:
        kernel_variance = "learned" if ctx.model.variance_head == "learned" else "posterior"
    rule = ddpm_rule(kernel_variance)
    if kernel_variance == "learned" and ctx.model.variance_head != "learned":
        raise ValueError(
            "kernel_variance='learned' needs a model trained with variance_head='learned'"
        )
    times = resolve_times(
        ctx, x, times, lambda: grid_times(ctx, steps, timesteps, discrete, spacing),
        name="ddpm", intervals=False, per_frame=True,
    )  # fmt: skip
    learned = kernel_variance == "learned"
    return _posterior_run(ctx, x, times, rule, learned, callback, noise_scale)


def reverse_step(
    model: DiffusionModel,
    x: Tensor,
    t: float | Tensor,
    s: float | Tensor | None,
    *,
    eta: float = 1.0,
    kernel_variance: str | None = None,
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
    cond: dict[str, Any] | None = None,
    guidance: Sequence[Any] = (),
    variance: str | None = None,
    noise_scale: float = 1.0,
) -> ReverseStep:
    """One DDPM/DDIM reverse step from x at time t to time s (None: to clean data), the step
    the ddim and ddpm samplers take: ``x_next = mean + std * z`` (Song et al. 2021, eq. 12).

    ``eta = 1``: DDPM's posterior variance (eq. 16); ``eta = 0``: deterministic DDIM (std 0).
    ``kernel_variance`` ("posterior", "beta", "learned") takes the ddpm sampler's step instead
    (eta is then unused; ``variance`` is its older name). ``t``, ``s`` are floats or per-frame
    tensors (broadcastable to x's leading dimensions). ``noise`` is z (else drawn from
    ``generator``). With :func:`gaussian_log_prob` this gives the exact log-probability of a
    denoising chain. ``noise_scale`` multiplies the step's std (low temperature), not its mean.
    """
    noise_scale = check_noise_scale(noise_scale)
    kernel_variance = _kernel_variance(kernel_variance, variance)
    rule = eta_rule(eta) if kernel_variance is None else ddpm_rule(kernel_variance)
    if kernel_variance == "learned" and model.variance_head != "learned":
        raise ValueError(
            "kernel_variance='learned' needs a model trained with variance_head='learned'"
        )
    ctx = SamplingContext(
        model, guidance=list(guidance), cond=dict(cond or {}), generator=generator
    )
    grid = check_times(model.process, [t] if s is None else [t, s], x, name="reverse_step",
                       per_frame=True)  # fmt: skip
    t, s = grid[0], (None if s is None else grid[1])
    return _step(ctx, x, t, s, rule, kernel_variance == "learned", noise, noise_scale)[0]


def gaussian_log_prob(x: Tensor, mean: Tensor, std: float | Tensor, batch_dims: int = 1) -> Tensor:
    """log N(x; mean, std^2 I) summed over all but the first ``batch_dims`` dimensions: the
    exact log-probability of one reverse step (:func:`reverse_step`); the sum over a chain's
    steps is the chain's, the policy likelihood of DPPO (Ren et al. 2024). ``std`` (a float or
    a tensor broadcasting against x) must be positive. Differentiable in ``mean`` and ``std``."""
    std = torch.as_tensor(std, dtype=x.dtype, device=x.device)
    if not bool((std > 0).all()):
        raise ValueError("gaussian_log_prob needs std > 0 (a deterministic step has no density)")
    z = (x - mean) / std
    log_p = (-0.5 * z**2 - torch.log(std) - 0.5 * math.log(2 * math.pi)).expand(x.shape)
    dims = tuple(range(batch_dims, x.dim()))
    return log_p.sum(dim=dims) if dims else log_p  # (sum over dim=() would reduce everything)


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
