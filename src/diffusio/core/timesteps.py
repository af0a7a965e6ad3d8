"""Time distributions: which diffusion times a training batch is drawn at.

Every training objective in this library is an expectation over a *uniform* time,

    L = E_{t ~ U} [ l(t) ],

uniform over the interval ``[t_min, t_max]`` (Score SDE, Song et al. 2021, eq. 7) or over a
process's discrete grid (DDPM, Ho et al. 2020, Algorithm 1: ``t ~ Uniform({1, ..., T})``).
A time distribution may draw ``t`` from another distribution ``p`` as long as it returns the
importance weight ``w(t) = u(t) / p(t)``; then ``E_{t ~ p}[w(t) l(t)] = L`` exactly, so the weighted
estimate stays unbiased for the uniform-time objective while its variance can drop.

Time distributions (``make_time_distribution(name, process)``; not to be confused with the
generation samplers of :mod:`diffusio.core.samplers`):

* ``uniform``    :class:`UniformTime`: ``t ~ U[t_min, t_max]`` (Score SDE eq. 7), weights 1.
* ``discrete``   :class:`DiscreteTime`: ``t`` uniform over the grid times of
                 ``process.discrete()`` (DDPM Algorithm 1), weights 1.
* ``importance`` :class:`ImportanceTime`: improved DDPM's importance sampling (Nichol & Dhariwal
                 2021, Sec. 3.3, eq. 18): ``p_t ∝ sqrt(E[L_t^2])`` estimated from the last 10
                 losses seen for each time, uniform until every time has 10 of them, mixed with a
                 small uniform probability, weights ``1 / (T p_t)``. Over the process's grid by
                 default, or over equal-width bins of ``[t_min, t_max]`` (``num_bins=``).

All share one interface::

    t, weight = dist.sample(n, generator=None, device=None, dtype=None)   # both of shape (n,)
    dist.update(t, losses)   # per-example *unweighted* losses; a no-op unless adaptive

Older names, kept as aliases: ``TimeSampler`` (:class:`TimeDistribution`),
``make_time_sampler`` (:func:`make_time_distribution`), ``TIME_SAMPLERS``
(:data:`TIME_DISTRIBUTIONS`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from .processes import DiscreteSchedule, Process

__all__ = [
    "TimeDistribution",
    "UniformTime",
    "DiscreteTime",
    "ImportanceTime",
    "TIME_DISTRIBUTIONS",
    "make_time_distribution",
    # older names
    "TimeSampler",
    "TIME_SAMPLERS",
    "make_time_sampler",
]

TIME_DISTRIBUTIONS = ("uniform", "discrete", "importance")
TIME_SAMPLERS = TIME_DISTRIBUTIONS  # the older name


def _draw_device(generator: torch.Generator | None, device: torch.device | str | None):
    """Random numbers must be drawn on the generator's device; results move to ``device`` after."""
    if generator is not None:
        return generator.device
    return device


def _out(t: Tensor, device: torch.device | str | None, dtype: torch.dtype | None) -> Tensor:
    return t.to(device=device, dtype=dtype or torch.get_default_dtype())


class TimeDistribution:
    """Base class: ``sample(n) -> (t, weight)`` with ``E[weight f(t)]`` = the uniform-time mean."""

    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Draw ``n`` times and their importance weights, both of shape (n,)."""
        raise NotImplementedError

    def update(self, t: Tensor, losses: Tensor) -> None:
        """Record per-example (unweighted) losses at times ``t``; a no-op unless adaptive."""

    @staticmethod
    def _check_n(n: int) -> int:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"number of times must be a positive int, got {n!r}")
        return n


class UniformTime(TimeDistribution):
    """``t ~ U[t_min, t_max]``, the continuous-time objective of Score SDE (Song et al. 2021,
    eq. 7); every weight is 1."""

    def __init__(self, t_min: float = 0.0, t_max: float = 1.0):
        t_min, t_max = float(t_min), float(t_max)
        if not (math.isfinite(t_min) and math.isfinite(t_max) and t_min < t_max):
            raise ValueError(f"UniformTime needs finite t_min < t_max, got {t_min}, {t_max}")
        self.t_min, self.t_max = t_min, t_max

    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> tuple[Tensor, Tensor]:
        n = self._check_n(n)
        u = torch.rand(
            n, generator=generator, device=_draw_device(generator, device), dtype=torch.float64
        )
        t = _out(self.t_min + (self.t_max - self.t_min) * u, device, dtype)
        return t, torch.ones_like(t)

    def __repr__(self) -> str:
        return f"UniformTime(t_min={self.t_min}, t_max={self.t_max})"


def _grid(times: Tensor | DiscreteSchedule) -> Tensor:
    if isinstance(times, DiscreteSchedule):
        times = times.times
    times = torch.as_tensor(times, dtype=torch.float64).detach().cpu()
    if times.dim() != 1 or times.numel() == 0 or not torch.isfinite(times).all():
        raise ValueError("grid times must be a non-empty 1-D tensor of finite values")
    if times.numel() > 1 and not (times[1:] > times[:-1]).all():
        raise ValueError("grid times must be strictly increasing")
    return times


def _nearest_index(grid: Tensor, t: Tensor) -> Tensor:
    """Index of the grid time nearest to each t (grid sorted ascending, float64 on CPU)."""
    t = t.detach().to(device="cpu", dtype=torch.float64).reshape(-1)
    hi = torch.searchsorted(grid, t).clamp(max=grid.numel() - 1)
    lo = (hi - 1).clamp(min=0)
    closer_lo = (t - grid[lo]).abs() <= (grid[hi] - t).abs()
    return torch.where(closer_lo, lo, hi)


class DiscreteTime(TimeDistribution):
    """``t`` uniform over a process's grid times (DDPM, Ho et al. 2020, Algorithm 1:
    ``t ~ Uniform({1, ..., T})``); every weight is 1.

    ``schedule_times`` is a 1-D increasing tensor of times or a :class:`DiscreteSchedule`.
    """

    def __init__(self, schedule_times: Tensor | DiscreteSchedule):
        self.times = _grid(schedule_times)

    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> tuple[Tensor, Tensor]:
        n = self._check_n(n)
        gen_device = _draw_device(generator, device)
        idx = torch.randint(self.times.numel(), (n,), generator=generator, device=gen_device)
        t = _out(self.times.to(idx.device)[idx], device, dtype)
        return t, torch.ones_like(t)

    def __repr__(self) -> str:
        return f"DiscreteTime(T={self.times.numel()})"


class ImportanceTime(TimeDistribution):
    """Loss-aware importance sampling of improved DDPM (Nichol & Dhariwal 2021, Sec. 3.3).

    Eq. 18 samples ``t`` with ``p_t ∝ sqrt(E[L_t^2])`` and weights the loss by ``1 / (T p_t)``
    (the ratio of the uniform probability ``1/T`` to ``p_t``). ``E[L_t^2]`` is estimated from the
    last ``history`` (10) losses seen for each t; until every t has ``history`` values, ``t`` is
    uniform. As in iDDPM's ``LossSecondMomentResampler``, the probabilities are mixed with a
    uniform one, ``p <- (1 - uniform_prob) p + uniform_prob / T``, so no t is ever starved.

    ``bins`` is either a grid of times (a 1-D increasing tensor or a :class:`DiscreteSchedule`):
    ``t`` is then one of the grid times, as in iDDPM; or an int ``K``: ``[t_min, t_max]`` is
    split into K equal-width bins, a bin is drawn from ``p`` and ``t`` uniformly inside it, so the
    weights ``1 / (K p_k)`` keep the estimate unbiased for the continuous uniform objective.
    :meth:`update` maps each t to its nearest grid time or its bin.
    """

    def __init__(
        self,
        bins: int | Tensor | DiscreteSchedule,
        t_min: float = 0.0,
        t_max: float = 1.0,
        *,
        history: int = 10,
        uniform_prob: float = 0.001,
    ):
        if isinstance(bins, bool):
            raise ValueError("bins must be a positive int or a grid of times")
        if isinstance(bins, int):
            if bins < 1:
                raise ValueError(f"num_bins must be positive, got {bins}")
            t_min, t_max = float(t_min), float(t_max)
            if not (math.isfinite(t_min) and math.isfinite(t_max) and t_min < t_max):
                raise ValueError(f"ImportanceTime needs finite t_min < t_max, got {t_min}, {t_max}")
            self.grid: Tensor | None = None
            self.num_bins = bins
            self.t_min, self.t_max = t_min, t_max
        else:
            self.grid = _grid(bins)
            self.num_bins = self.grid.numel()
            self.t_min, self.t_max = float(self.grid[0]), float(self.grid[-1])
        if isinstance(history, bool) or not isinstance(history, int) or history < 1:
            raise ValueError(f"history must be a positive int, got {history!r}")
        if not 0.0 <= float(uniform_prob) <= 1.0:
            raise ValueError(f"uniform_prob must lie in [0, 1], got {uniform_prob}")
        self.history, self.uniform_prob = history, float(uniform_prob)
        self._losses = torch.zeros(self.num_bins, history, dtype=torch.float64)
        self._counts = torch.zeros(self.num_bins, dtype=torch.long)

    # ------------------------------------------------------------------ state
    @property
    def warmed_up(self) -> bool:
        """True once every bin holds ``history`` losses."""
        return bool((self._counts == self.history).all())

    def probabilities(self) -> Tensor:
        """Current sampling probabilities over the bins / grid times, (K,) float64."""
        K = self.num_bins
        if not self.warmed_up:
            return torch.full((K,), 1.0 / K, dtype=torch.float64)
        p = torch.sqrt((self._losses**2).mean(-1))
        total = p.sum()
        if not torch.isfinite(total) or total <= 0:
            return torch.full((K,), 1.0 / K, dtype=torch.float64)
        return (1.0 - self.uniform_prob) * p / total + self.uniform_prob / K

    def bin_index(self, t: Tensor) -> Tensor:
        """The bin (or nearest grid time) of each t, as a CPU long tensor."""
        if self.grid is not None:
            return _nearest_index(self.grid, t)
        t = t.detach().to(device="cpu", dtype=torch.float64).reshape(-1)
        frac = (t - self.t_min) / (self.t_max - self.t_min)
        return (frac * self.num_bins).floor().long().clamp(0, self.num_bins - 1)

    def state_dict(self) -> dict[str, Tensor]:
        """Loss history, for checkpoints."""
        return {"losses": self._losses.clone(), "counts": self._counts.clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore the loss history saved by :meth:`state_dict`."""
        losses = torch.as_tensor(state["losses"], dtype=torch.float64)
        counts = torch.as_tensor(state["counts"], dtype=torch.long)
        if losses.shape != self._losses.shape or counts.shape != self._counts.shape:
            raise ValueError(
                f"state has history of shape {tuple(losses.shape)}, "
                f"the time distribution expects {tuple(self._losses.shape)}"
            )
        self._losses, self._counts = losses.clone(), counts.clamp(0, self.history).clone()

    # ------------------------------------------------------------------ interface
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> tuple[Tensor, Tensor]:
        n = self._check_n(n)
        gen_device = _draw_device(generator, device)
        p = self.probabilities().to(gen_device)
        k = torch.multinomial(p, n, replacement=True, generator=generator)
        weight = 1.0 / (self.num_bins * p[k])
        if self.grid is not None:
            t = self.grid.to(k.device)[k]
        else:
            u = torch.rand(n, generator=generator, device=gen_device, dtype=torch.float64)
            width = (self.t_max - self.t_min) / self.num_bins
            t = self.t_min + (k.to(torch.float64) + u) * width
        return _out(t, device, dtype), _out(weight, device, dtype)

    def update(self, t: Tensor, losses: Tensor) -> None:
        """Append each loss to its bin's history, keeping the most recent ``history`` values."""
        losses = losses.detach().to(device="cpu", dtype=torch.float64).reshape(-1)
        bins = self.bin_index(t)
        if bins.numel() != losses.numel():
            raise ValueError(f"update got {bins.numel()} times but {losses.numel()} losses")
        keep = torch.isfinite(losses)
        bins, losses = bins[keep], losses[keep]
        H = self.history
        for b in torch.unique(bins).tolist():
            new = losses[bins == b]
            c = int(self._counts[b])
            merged = torch.cat([self._losses[b, :c], new])[-H:]
            self._losses[b, : merged.numel()] = merged
            self._counts[b] = merged.numel()

    def __repr__(self) -> str:
        where = "grid" if self.grid is not None else f"bins of [{self.t_min}, {self.t_max}]"
        return (
            f"ImportanceTime(K={self.num_bins} {where}, history={self.history}, "
            f"uniform_prob={self.uniform_prob})"
        )


def make_time_distribution(name: str, process: Process, **options: Any) -> TimeDistribution:
    """Build a training time distribution for ``process`` by name.

    * ``uniform``    ``UniformTime(process.t_min, process.t_max)``
    * ``discrete``   ``DiscreteTime(process.discrete().times)``
    * ``importance`` ``ImportanceTime`` over ``process.discrete().times``, or, given
      ``num_bins=K``, over K equal bins of ``[process.t_min, process.t_max]``; other options
      (``history``, ``uniform_prob``) go to its constructor.
    """
    if name not in TIME_DISTRIBUTIONS:
        raise ValueError(
            f"unknown time distribution {name!r}; valid: {', '.join(TIME_DISTRIBUTIONS)}"
        )
    try:
        if name == "uniform":
            return UniformTime(process.t_min, process.t_max, **options)
        if name == "discrete":
            return DiscreteTime(process.discrete(), **options)
        num_bins = options.pop("num_bins", None)
        if num_bins is None:
            return ImportanceTime(process.discrete(), **options)
        return ImportanceTime(int(num_bins), process.t_min, process.t_max, **options)
    except TypeError as err:
        raise ValueError(f"bad options for time distribution {name!r}: {err}") from None


TimeSampler = TimeDistribution  # the older name
make_time_sampler = make_time_distribution  # the older name
