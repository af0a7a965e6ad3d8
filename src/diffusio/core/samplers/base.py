"""Shared machinery of the samplers: the sampling context (guided, counted network calls,
constraints, seeded noise), time grids and the grid preamble every sampler starts with.

:func:`resolve_times` is that preamble: a sampler's explicit ``times=`` grid (validated by
:func:`check_times`) or, without one, the grid the sampler builds from its ``steps`` and
``spacing`` options. A grid is a decreasing sequence of floats, or, for the samplers that
support it (ddpm, ddim), a sequence of per-frame time tensors broadcastable to the state's
leading dimensions: state (N, L, D) with times (N, L) puts every frame at its own noise level
(asynchronous and rolling schedules).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..model import DiffusionModel
from ..parameterization import Prediction
from ..processes import Process, broadcast_like
from .callbacks import Callback, notify

__all__ = [
    "GRID_SPACINGS",
    "SamplingContext",
    "TimeGrid",
    "check_times",
    "resolve_times",
    "time_bounds",
    "time_grid",
]

TimeGrid = Sequence[float] | Tensor | Sequence[Tensor]
"""An explicit grid: decreasing floats (or a 1-D tensor), or per-frame time tensors (one per
step; a tensor of dimension >= 2 is read as its rows)."""

GRID_SPACINGS = ("time", "log-snr", "quadratic", "karras")


@dataclass
class SamplingContext:
    """What a sampler needs besides the state: the model, steering hooks, noise and counters."""

    model: DiffusionModel
    guidance: Sequence[Any] = ()
    constraints: Sequence[Any] = ()
    cond: dict[str, Any] = field(default_factory=dict)
    generator: torch.Generator | None = None
    progress: bool = False
    nfe: int = 0
    next_time: float | Tensor | None = None  # a discrete sampler's step target (None: unknown)
    grid: list[Any] | None = None  # the grid the running sampler walks (set by resolve_times)
    grid_steps: int | None = None  # the sampler's ``steps`` on that grid
    _coefficients: dict[float, tuple[float, float]] = field(default_factory=dict, repr=False)
    _sde_coefficients: dict[float, tuple[float, float]] = field(default_factory=dict, repr=False)

    @property
    def process(self) -> Process:
        return self.model.process

    def evaluate(self, x: Tensor, t: float | Tensor, **cond: Any) -> Prediction:
        """One counted network evaluation at (x, t) with the given conditioning (no guidance).

        ``t`` is a Python float (one time for the batch: its coefficients come from the cache)
        or a tensor of per-example times.
        """
        self.nfe += 1
        if isinstance(t, Tensor):
            return self.model.predict(x, t, **cond)
        alpha, sigma = self.coefficients(t)
        t_vec = torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device)
        return self.model.predict_with_coefficients(x, t_vec, alpha, sigma, cond)

    def predict(self, x: Tensor, t: float | Tensor) -> Prediction:
        """The guided prediction at (x, t): the model's output passed through every modifier
        (``t`` a float, or a tensor of per-example or per-frame times)."""
        pred = self.evaluate(x, t, **self.cond)
        if self.guidance:
            if isinstance(t, Tensor):
                t_vec = t.to(x.dtype)
            else:
                t_vec = torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device)
            for modifier in self.guidance:
                pred = modifier(pred, t_vec, self)
        return pred

    def finish(
        self, x: Tensor, t: float, denoise: bool, callback: Callback | None = None, i: int = 0
    ) -> Tensor:
        """The sampler's output: E[x0 | x] at time t (one more evaluation, reported to the
        callback as step ``i``) if ``denoise``, else x."""
        if not denoise:
            return x
        x0 = self.predict(x, t).x0
        notify(callback, i=i, t=t, t_next=None, x=x, x0=x0)
        return x0

    def constrain(self, x: Tensor, t: float | None) -> Tensor:
        """Apply every state constraint to x, now at time t (None: clean data)."""
        for constraint in self.constraints:
            x = constraint(x, t, self)
        return x

    def noise_like(self, x: Tensor) -> Tensor:
        """Standard normal noise from the sampler's generator."""
        return torch.randn(x.shape, generator=self.generator, dtype=x.dtype, device=x.device)

    def precompute(self, times: Sequence[float], sde: bool = False) -> None:
        """Compute alpha, sigma (and, with ``sde``, f and g^2) at every time in one vectorised
        float64 call."""
        cache = self._sde_coefficients if sde else self._coefficients
        missing = [t for t in times if t not in cache]
        if not missing:
            return
        tt = torch.tensor(missing, dtype=torch.float64)
        p = self.process
        columns = (p.dlog_alpha_dt(tt), p.g2(tt)) if sde else (p.alpha(tt), p.sigma(tt))
        rows = torch.stack([c.expand_as(tt) for c in columns], dim=1).tolist()
        cache.update(zip(missing, map(tuple, rows), strict=True))

    def coefficients_like(self, t: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        """(alpha(t), sigma(t)) of per-frame times ``t`` (computed in float64), shaped to
        broadcast against x and in x's dtype."""
        tt = t.to(torch.float64)
        a, s = self.process.alpha(tt), self.process.sigma(tt)
        return broadcast_like(a, x).to(x.dtype), broadcast_like(s, x).to(x.dtype)

    def coefficients(self, t: float) -> tuple[float, float]:
        """(alpha(t), sigma(t)) as Python floats (cached)."""
        if t not in self._coefficients:
            self.precompute([t])
        return self._coefficients[t]

    def sde_coefficients(self, t: float) -> tuple[float, float]:
        """(f(t), g(t)^2) of the forward SDE as Python floats (cached)."""
        if t not in self._sde_coefficients:
            self.precompute([t], sde=True)
        return self._sde_coefficients[t]

    def steps(self, n: int, desc: str) -> Iterable[int]:
        """range(n), with a progress bar when enabled."""
        return tqdm(range(n), desc=desc, disable=not self.progress, leave=False)


def time_grid(
    process: Process,
    steps: int,
    spacing: str = "time",
    t_max: float | None = None,
    t_min: float | None = None,
) -> list[float]:
    """``steps + 1`` decreasing times from t_max to t_min.

    ``time``: uniform in t; ``quadratic``: uniform in sqrt(t) (DDIM's quadratic selection);
    ``log-snr``: uniform in lambda = log(alpha^2/sigma^2) (DPM-Solver, Lu et al. 2022, Sec. 3.3);
    ``karras``: uniform in s^(1/rho), rho = 7, for the noise level s = sigma/alpha (EDM, Karras et
    al. 2022, eq. 5): the same noise levels for every process.
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    hi = process.t_max if t_max is None else float(t_max)
    lo = process.t_min if t_min is None else float(t_min)
    if not 0.0 <= lo < hi:
        raise ValueError(f"need 0 <= t_min < t_max, got t_min={lo}, t_max={hi}")
    if spacing == "time":
        grid = torch.linspace(hi, lo, steps + 1, dtype=torch.float64)
    elif spacing == "quadratic":
        grid = torch.linspace(math.sqrt(hi), math.sqrt(lo), steps + 1, dtype=torch.float64) ** 2
    elif spacing in ("log-snr", "karras"):
        lam = process.log_snr(torch.tensor([hi, lo], dtype=torch.float64))
        if math.isinf(float(lam[1])):
            raise ValueError(f"{spacing} spacing needs sigma(t_min) > 0 for this process")
        if spacing == "log-snr":
            levels = torch.linspace(float(lam[0]), float(lam[1]), steps + 1, dtype=torch.float64)
        else:  # noise level s = exp(-lambda / 2), uniform in s^(1/7)
            s_hi, s_lo = torch.exp(-0.5 * lam) ** (1 / 7)
            s = torch.linspace(float(s_hi), float(s_lo), steps + 1, dtype=torch.float64) ** 7
            levels = -2 * torch.log(s)
        grid = process.t_from_log_snr(levels)
    else:
        raise ValueError(f"unknown grid spacing {spacing!r}; valid: {', '.join(GRID_SPACINGS)}")
    grid[0], grid[-1] = hi, lo  # exact ends, whatever the rounding of the transform
    return [float(t) for t in grid]


def time_bounds(process: Process) -> tuple[float, float]:
    """The interval a grid's times must lie in: [t_min, t_max] widened to the process's discrete
    table (vp-linear's table runs from 0.00092 to 1.0034)."""
    table = process.discrete().times
    return min(process.t_min, float(table[0])), max(process.t_max, float(table[-1]))


_SLACK = 1e-6  # how far outside the bounds a time may be rounded (float32 grids) and clamped


def _is_per_frame(times: TimeGrid) -> bool:
    if isinstance(times, Tensor):
        if times.dim() == 0:
            raise ValueError("times must be a sequence of times, got a scalar tensor")
        return times.dim() >= 2
    return any(isinstance(t, Tensor) and t.dim() >= 1 for t in times)


def check_times(
    process: Process,
    times: TimeGrid,
    x: Tensor | None = None,
    *,
    name: str = "this sampler",
    per_frame: bool = False,
    min_len: int = 1,
) -> list[float] | list[Tensor]:
    """Validate an explicit grid: at least ``min_len`` finite times inside :func:`time_bounds`
    (within 1e-6: an end rounded to float32 is clamped), strictly decreasing; per-frame tensors
    (only with ``per_frame``) must broadcast to x's leading dimensions and decrease per frame (a
    frame may hold its level for a step; some frame must move). Returns floats, or per-frame
    float64 tensors on x's device, expanded to the leading dimensions."""
    lo, hi = time_bounds(process)
    if _is_per_frame(times):
        if not per_frame:
            raise ValueError(
                f"{name} takes one time per step (a sequence of floats); per-frame time tensors "
                "are supported by ddpm and ddim"
            )
        if x is None:
            raise ValueError("per-frame times need the state to check their shape against")
        grid: list[Any] = _frame_grid(times, x)
        stack = torch.stack(grid)
        first, worst = float(stack.max()), float(stack.min())
        if not bool(torch.isfinite(stack).all()):
            raise ValueError("times must be finite")
    else:
        values = times.tolist() if isinstance(times, Tensor) else times
        grid = [float(t) for t in values]
        if not all(math.isfinite(t) for t in grid):
            raise ValueError(f"times must be finite, got {grid}")
        first, worst = max(grid, default=hi), min(grid, default=lo)
    if len(grid) < min_len:
        raise ValueError(f"{name} needs at least {min_len} time(s) in times, got {len(grid)}")
    if first > hi + _SLACK or worst < lo - _SLACK:
        raise ValueError(
            f"times must lie in [{lo:g}, {hi:g}] for the {process.name} process; "
            f"got values from {worst:g} to {first:g}"
        )
    if first > hi or worst < lo:  # float32 rounding of an end: clamp it back
        grid = [t.clamp(lo, hi) if isinstance(t, Tensor) else min(max(t, lo), hi) for t in grid]
    for i in range(len(grid) - 1):
        t, s = grid[i], grid[i + 1]
        if isinstance(t, Tensor):
            if bool((s > t).any()) or not bool((s < t).any()):
                raise ValueError(
                    f"per-frame times must not increase in any frame and must decrease in some "
                    f"frame at every step; step {i} -> {i + 1} does not"
                )
        elif not s < t:
            raise ValueError(
                f"times must be strictly decreasing; times[{i}] = {t:g}, times[{i + 1}] = {s:g}"
            )
    return grid


def _frame_grid(times: TimeGrid, x: Tensor) -> list[Tensor]:
    rows = list(times.unbind(0)) if isinstance(times, Tensor) else list(times)
    tensors = [torch.as_tensor(t, dtype=torch.float64, device=x.device) for t in rows]
    k = max(t.dim() for t in tensors)
    if k > x.dim():
        raise ValueError(f"per-frame times of dimension {k} for a state of shape {tuple(x.shape)}")
    lead = tuple(x.shape[:k])
    out = []
    for i, t in enumerate(tensors):
        try:
            out.append(t.reshape(t.shape + (1,) * (k - t.dim())).expand(lead))
        except RuntimeError:
            raise ValueError(
                f"times[{i}] has shape {tuple(t.shape)}, not broadcastable to the state's "
                f"leading dimensions {lead}"
            ) from None
    return out


def resolve_times(
    ctx: SamplingContext,
    x: Tensor,
    times: TimeGrid | None,
    build: Callable[[], list[float]],
    *,
    name: str,
    intervals: bool,
    per_frame: bool = False,
) -> list[Any]:
    """The grid preamble of every sampler: ``times`` validated (:func:`check_times`) if given,
    else ``build()``, the sampler's own grid from its ``steps``/``spacing`` options. With
    ``intervals`` the grid's entries are the ends of ``len(times) - 1`` steps, else each entry
    is one step (an evaluation time). Records the grid and the step count on ``ctx``."""
    if times is None:
        grid: list[Any] = build()
    else:
        grid = check_times(
            ctx.process, times, x, name=name, per_frame=per_frame, min_len=1 + int(intervals)
        )
    ctx.grid, ctx.grid_steps = grid, len(grid) - int(intervals)
    return grid


def sde_grid(
    ctx: SamplingContext,
    x: Tensor,
    times: TimeGrid | None,
    steps: int,
    spacing: str,
    name: str,
) -> list[float]:
    """The preamble of the continuous-time SDE/ODE samplers: the ``steps + 1`` step ends
    (``times`` validated, or :func:`time_grid` with ``spacing``) with alpha, sigma, f and g^2
    precomputed at every one."""
    grid = resolve_times(
        ctx, x, times, lambda: time_grid(ctx.process, steps, spacing), name=name, intervals=True
    )
    ctx.precompute(grid)
    ctx.precompute(grid, sde=True)
    return grid


def first_time(times: TimeGrid) -> float:
    """The smallest time of a grid's first step (its start, for the x_init rule)."""
    first = times[0]
    return float(first.min()) if isinstance(first, Tensor) else float(first)
