"""Shared machinery of the samplers: the sampling context (guided, counted network calls,
constraints, seeded noise) and time grids."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..model import DiffusionModel
from ..parameterization import Prediction
from ..processes import Process

__all__ = ["SamplingContext", "time_grid", "GRID_SPACINGS"]

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
    next_time: float | None = None  # a discrete sampler's step target (None: not known)
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

    def predict(self, x: Tensor, t: float) -> Prediction:
        """The guided prediction at (x, t): the model's output passed through every modifier."""
        pred = self.evaluate(x, t, **self.cond)
        if self.guidance:
            t_vec = torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device)
            for modifier in self.guidance:
                pred = modifier(pred, t_vec, self)
        return pred

    def finish(self, x: Tensor, t: float, denoise: bool) -> Tensor:
        """The sampler's output: E[x0 | x] at time t (one more evaluation) if ``denoise``, else x."""
        return self.predict(x, t).x0 if denoise else x

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
