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

GRID_SPACINGS = ("time", "log-snr", "quadratic")


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

    @property
    def process(self) -> Process:
        return self.model.process

    def evaluate(self, x: Tensor, t: float | Tensor, **cond: Any) -> Prediction:
        """One counted network evaluation at (x, t) with the given conditioning (no guidance)."""
        self.nfe += 1
        return self.model.predict(x, self._time_vector(x, t), **cond)

    def predict(self, x: Tensor, t: float | Tensor) -> Prediction:
        """The guided prediction at (x, t): the model's output passed through every modifier."""
        t_vec = self._time_vector(x, t)
        pred = self.evaluate(x, t_vec, **self.cond)
        for modifier in self.guidance:
            pred = modifier(pred, t_vec, self)
        return pred

    def constrain(self, x: Tensor, t: float | None) -> Tensor:
        """Apply every state constraint to x, now at time t (None: clean data)."""
        for constraint in self.constraints:
            x = constraint(x, t, self)
        return x

    def noise_like(self, x: Tensor) -> Tensor:
        """Standard normal noise from the sampler's generator."""
        return torch.randn(x.shape, generator=self.generator, dtype=x.dtype, device=x.device)

    def coefficients(self, t: float) -> tuple[float, float]:
        """(alpha(t), sigma(t)) as Python floats, computed in float64."""
        tt = torch.tensor(t, dtype=torch.float64)
        return float(self.process.alpha(tt)), float(self.process.sigma(tt))

    def steps(self, n: int, desc: str) -> Iterable[int]:
        """range(n), with a progress bar when enabled."""
        return tqdm(range(n), desc=desc, disable=not self.progress, leave=False)

    @staticmethod
    def _time_vector(x: Tensor, t: float | Tensor) -> Tensor:
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        return t.expand(x.shape[0]) if t.dim() == 0 else t


def time_grid(
    process: Process,
    steps: int,
    spacing: str = "time",
    t_max: float | None = None,
    t_min: float | None = None,
) -> list[float]:
    """``steps + 1`` decreasing times from t_max to t_min.

    ``time``: uniform in t; ``quadratic``: uniform in sqrt(t) (DDIM's quadratic selection);
    ``log-snr``: uniform in lambda = log(alpha^2/sigma^2) (DPM-Solver, Lu et al. 2022, Sec. 3.3).
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
    elif spacing == "log-snr":
        if lo == 0.0 and math.isinf(float(process.log_snr(torch.tensor(0.0, dtype=torch.float64)))):
            raise ValueError("log-snr spacing needs t_min > 0 for this process")
        lam = process.log_snr(torch.tensor([hi, lo], dtype=torch.float64))
        grid = process.t_from_log_snr(torch.linspace(float(lam[0]), float(lam[1]), steps + 1))
        grid[0], grid[-1] = hi, lo
    else:
        raise ValueError(f"unknown grid spacing {spacing!r}; valid: {', '.join(GRID_SPACINGS)}")
    return [float(t) for t in grid]
