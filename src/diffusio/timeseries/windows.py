"""Windows of a series, their z-scoring, and CSDI's target masks.

Layout (CSDI's): a batch of windows is (N windows, K features, L steps); ``observed`` is a bool
tensor of the same shape, True where a value is present. Windows are torch float64 with missing
entries set to 0 (CSDI's ``observed_data``), so no NaN leaves this module.

Target masks (Tashiro et al. 2021, arXiv:2107.03502, Sec. 3.3 and 4.1): in self-supervised
training some *observed* entries are held out as imputation targets; the model is conditioned on
the rest, ``cond_mask = observed & ~targets``, and the loss is taken on ``targets``. Every mask
function here returns ``targets``, a bool (N, K, L) subset of ``observed``, and is deterministic
given its ``torch.Generator`` (None: torch's global generator). Written from the paper and the
description of the official code's ``get_randmask`` / ``get_hist_mask`` (not copied):

* :func:`random_targets` -- per window a ratio r ~ U(0, 1); round(r * n_observed) observed
  entries, chosen uniformly, become targets (the official code ranks random scores);
* :func:`historical_targets` -- another window's missing pattern: targets = observed & ~other;
* :func:`mix_targets` -- per window, random or historical with probability 1/2 each;
* :func:`forecast_targets` -- the observed entries of the last ``horizon`` steps (the "test"
  pattern of CSDI's forecasting);
* :func:`block_targets` -- per feature a gap of consecutive steps (sensor outages);
* :func:`hide_at_rate` -- evaluation at a fixed missing rate: per window exactly
  floor(rate * n_observed) observed entries, chosen uniformly, are hidden (the official
  healthcare protocol hides ``int(n_observed * rate)`` per patient; one window plays one
  patient here).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "TARGET_STRATEGIES",
    "Normalizer",
    "block_targets",
    "condition_mask",
    "forecast_targets",
    "hide_at_rate",
    "historical_targets",
    "make_windows",
    "mix_targets",
    "random_targets",
    "stitch_windows",
    "target_mask",
    "window_starts",
]

#: The strategies :func:`target_mask` knows by name.
TARGET_STRATEGIES = ("random", "historical", "mix", "forecast", "block")


# -- windows -----------------------------------------------------------------------------------


def window_starts(n_steps: int, length: int, stride: int | None = None) -> list[int]:
    """First steps of the windows of ``length`` over ``n_steps`` steps every ``stride`` steps
    (default ``length``: non-overlapping); when the stride does not reach the end exactly, one
    more window is aligned to the end, so every step is in some window."""
    if length < 1:
        raise ValueError(f"window length must be at least 1; got {length}")
    stride = length if stride is None else stride
    if stride < 1:
        raise ValueError(f"window stride must be at least 1; got {stride}")
    if n_steps < length:
        raise ValueError(f"the series has {n_steps} steps, fewer than the window length {length}")
    starts = list(range(0, n_steps - length + 1, stride))
    if starts[-1] + length < n_steps:
        starts.append(n_steps - length)
    return starts


def make_windows(values: Any, length: int, stride: int | None = None) -> tuple[Tensor, Tensor]:
    """Cut a series ``values`` (T, K), NaN = missing (an array, a tensor or anything with a
    ``values`` attribute such as a :class:`~diffusio.timeseries.files.SeriesTable`), into
    windows of ``length`` steps every ``stride`` steps (:func:`window_starts`; the last window
    is aligned to the end).

    Returns ``(windows, observed)``, both (N, K, L): windows float64 with missing entries 0,
    observed bool. ``ValueError`` when T < length (both numbers named) or values is not 2-D.
    """
    if not isinstance(values, (np.ndarray, Tensor)):
        values = getattr(values, "values", values)  # a SeriesTable or a DataFrame
    if isinstance(values, Tensor):
        x = values.detach().to("cpu", torch.float64)
    else:
        x = torch.as_tensor(np.asarray(values, dtype=np.float64))
    if x.ndim != 2:
        raise ValueError(f"values must be 2-D (T steps, K features); got shape {tuple(x.shape)}")
    starts = window_starts(x.shape[0], length, stride)
    index = torch.tensor(starts)[:, None] + torch.arange(length)  # (N, L)
    windows = x[index].transpose(1, 2).contiguous()  # (N, L, K) -> (N, K, L)
    observed = ~torch.isnan(windows)
    return torch.where(observed, windows, 0.0), observed


def stitch_windows(windows: Tensor, starts: Sequence[int], n_steps: int) -> Tensor:
    """Put windows (..., N, K, L) back on the series' time axis: (..., K, T). A step covered
    by several windows is taken from the one where it sits farthest from an edge (most context
    on both sides), so each output step is one window's value, never an average (a stitched
    sample stays a sample within each window). ``ValueError`` if a step is in no window."""
    if windows.ndim < 3 or windows.shape[-3] != len(starts):
        raise ValueError(
            f"windows of shape {tuple(windows.shape)} for {len(starts)} window starts"
        )
    length = windows.shape[-1]
    out = windows.new_zeros((*windows.shape[:-3], windows.shape[-2], n_steps))
    best = torch.full((n_steps,), -1, dtype=torch.long)
    steps = torch.arange(length)
    margin = torch.minimum(steps, length - 1 - steps)
    for n, s in enumerate(starts):
        if s < 0 or s + length > n_steps:
            raise ValueError(
                f"window {n} (steps {s}..{s + length - 1}) is outside 0..{n_steps - 1}"
            )
        better = margin > best[s : s + length]
        idx = steps[better] + s
        best[idx] = margin[better]
        out[..., idx] = windows.select(-3, n)[..., steps[better]]
    if (best < 0).any():
        missing = int(torch.nonzero(best < 0)[0])
        raise ValueError(f"step {missing} is in no window")
    return out


# -- normalisation -----------------------------------------------------------------------------


@dataclass
class Normalizer:
    """Per-feature z-scoring, ``z = (x - mean) / std`` along the feature axis (-2 of
    (..., K, L)). :meth:`fit` uses the observed entries of the training windows only (an entry
    in several overlapping windows counts once per window); ``std`` is the population standard
    deviation (ddof 0); a constant feature (std below 1e-10 of max(1, |mean|)) gets std 1, as
    scikit-learn's StandardScaler does, so it maps to 0 instead of blowing up."""

    mean: Tensor
    std: Tensor

    def __post_init__(self) -> None:
        self.mean = torch.as_tensor(self.mean, dtype=torch.float64).reshape(-1)
        self.std = torch.as_tensor(self.std, dtype=torch.float64).reshape(-1)
        if self.mean.shape != self.std.shape:
            raise ValueError(f"{len(self.mean)} means for {len(self.std)} stds")
        if not (torch.isfinite(self.mean).all() and (self.std > 0).all()):
            raise ValueError("a Normalizer needs finite means and positive stds")

    @classmethod
    def fit(cls, windows: Any, observed: Any) -> Normalizer:
        """Fit on training windows (..., K, L) and their observed mask (same shape)."""
        x = torch.as_tensor(windows, dtype=torch.float64)
        m = torch.as_tensor(observed)
        if x.ndim < 2 or x.shape != m.shape or m.dtype != torch.bool:
            raise ValueError(
                f"Normalizer.fit needs windows (..., K, L) and a bool observed mask of the same "
                f"shape; got {tuple(x.shape)} and {tuple(m.shape)} {m.dtype}"
            )
        k = x.shape[-2]
        x = x.transpose(-2, -1).reshape(-1, k)  # (entries, K)
        m = m.transpose(-2, -1).reshape(-1, k)
        count = m.sum(0)
        if (count == 0).any():
            j = int(torch.nonzero(count == 0)[0])
            raise ValueError(f"feature {j} (of {k}) has no observed training entries")
        x = torch.where(m, x, 0.0)
        mean = x.sum(0) / count
        var = (torch.where(m, x - mean, 0.0) ** 2).sum(0) / count
        std = var.sqrt()
        constant = std <= 1e-10 * torch.clamp(mean.abs(), min=1.0)
        return cls(mean, torch.where(constant, 1.0, std))

    def _shape(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.ndim < 2 or x.shape[-2] != len(self.mean):
            raise ValueError(
                f"expected (..., {len(self.mean)}, L) (features on axis -2); got {tuple(x.shape)}"
            )
        dtype = x.dtype if x.is_floating_point() else torch.float64
        return (
            self.mean.to(x.device, dtype)[:, None],
            self.std.to(x.device, dtype)[:, None],
        )

    def transform(self, x: Any, observed: Any | None = None) -> Tensor:
        """``(x - mean) / std``; with ``observed``, unobserved entries are set to 0 (the mean)."""
        x = torch.as_tensor(x)
        mean, std = self._shape(x)
        z = (x - mean) / std
        if observed is not None:
            z = torch.where(torch.as_tensor(observed, device=z.device), z, 0.0)
        return z

    def inverse(self, z: Any) -> Tensor:
        """Back to the data's units: ``z * std + mean``."""
        z = torch.as_tensor(z)
        mean, std = self._shape(z)
        return z * std + mean

    def state_dict(self) -> dict[str, list[float]]:
        """Plain lists, ready for JSON."""
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_state(cls, state: dict[str, Sequence[float]]) -> Normalizer:
        """The inverse of :meth:`state_dict`."""
        try:
            return cls(state["mean"], state["std"])
        except KeyError as err:
            raise ValueError(f"a Normalizer state needs 'mean' and 'std'; missing {err}") from None


# -- target masks ------------------------------------------------------------------------------


def _check_mask(mask: Any, name: str = "observed") -> Tensor:
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool or mask.ndim != 3:
        shape = tuple(mask.shape) if hasattr(mask, "shape") else type(mask).__name__
        dtype = getattr(mask, "dtype", None)
        raise ValueError(
            f"{name} must be a bool torch tensor (N windows, K features, L steps); "
            f"got {shape} {dtype}"
        )
    return mask


def _uniform(shape: tuple[int, ...], generator: torch.Generator | None, like: Tensor) -> Tensor:
    """U(0, 1) float64 draws from ``generator`` (on its device), moved next to ``like``."""
    device = generator.device if generator is not None else like.device
    return torch.rand(shape, generator=generator, dtype=torch.float64, device=device).to(
        like.device
    )


def _choose(observed: Tensor, counts: Tensor, generator: torch.Generator | None) -> Tensor:
    """Per window, exactly ``counts[n]`` of its observed entries, uniformly at random (rank
    random scores; unobserved entries score -1 and rank last)."""
    n = observed.shape[0]
    flat = observed.reshape(n, -1)
    scores = torch.where(flat, _uniform(tuple(flat.shape), generator, flat), -1.0)
    order = scores.argsort(dim=1, descending=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(flat.shape[1], device=flat.device).expand_as(order))
    return ((ranks < counts.to(flat.device)[:, None]) & flat).reshape(observed.shape)


def random_targets(observed: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """CSDI's random strategy: per window r ~ U(0, 1) and round(r * n_observed) of its
    observed entries (uniformly chosen) become targets; E[fraction] = 1/2."""
    observed = _check_mask(observed)
    n_obs = observed.reshape(observed.shape[0], -1).sum(1).to(torch.float64)
    ratio = _uniform((observed.shape[0],), generator, n_obs)
    return _choose(observed, torch.round(ratio * n_obs).long(), generator)


def historical_targets(
    observed: Tensor, pool_observed: Tensor | None = None, generator: torch.Generator | None = None
) -> Tensor:
    """CSDI's historical strategy: a window borrows the missing pattern of a window drawn
    uniformly from ``pool_observed`` (M, K, L) and its entries missing there become targets:
    ``observed & ~pool_observed[j]``. Without a pool, the pattern is another window of the same
    batch (never the window itself when N > 1), in the spirit of the official healthcare code
    (which takes the previous window in the batch)."""
    observed = _check_mask(observed)
    n = observed.shape[0]
    if pool_observed is None:
        if n < 2:
            return torch.zeros_like(observed)
        shift = 1 + (_uniform((n,), generator, observed) * (n - 1)).long().clamp(max=n - 2)
        other = observed[(torch.arange(n, device=observed.device) + shift) % n]
    else:
        pool = _check_mask(pool_observed, "pool_observed")
        if pool.shape[1:] != observed.shape[1:] or pool.shape[0] == 0:
            raise ValueError(
                f"pool_observed {tuple(pool.shape)} must be (M >= 1, K, L) with the K, L of "
                f"observed {tuple(observed.shape)}"
            )
        pick = (_uniform((n,), generator, pool) * pool.shape[0]).long().clamp(
            max=pool.shape[0] - 1
        )
        other = pool[pick].to(observed.device)
    return observed & ~other


def mix_targets(
    observed: Tensor, pool_observed: Tensor | None = None, generator: torch.Generator | None = None
) -> Tensor:
    """CSDI's mix strategy: per window, :func:`random_targets` or :func:`historical_targets`
    with probability 1/2 each (the paper's air-quality default)."""
    observed = _check_mask(observed)
    coin = _uniform((observed.shape[0],), generator, observed) < 0.5
    rand = random_targets(observed, generator)
    hist = historical_targets(observed, pool_observed, generator)
    return torch.where(coin[:, None, None], rand, hist)


def forecast_targets(observed: Tensor, horizon: int) -> Tensor:
    """The observed entries of the last ``horizon`` steps (1 <= horizon < L): the model sees
    the first L - horizon steps and forecasts the rest (CSDI's forecasting "test" pattern)."""
    observed = _check_mask(observed)
    length = observed.shape[-1]
    if not 1 <= horizon < length:
        raise ValueError(
            f"forecast horizon must be in 1..{length - 1} for windows of {length} steps; "
            f"got {horizon}"
        )
    targets = torch.zeros_like(observed)
    targets[..., length - horizon :] = observed[..., length - horizon :]
    return targets


def block_targets(
    observed: Tensor,
    generator: torch.Generator | None = None,
    gap_lengths: int | tuple[int, int] | None = None,
    probability: float = 1.0,
) -> Tensor:
    """Gaps of consecutive steps: each (window, feature) gets, with ``probability``, one gap
    whose length is drawn uniformly from ``gap_lengths`` (an int, or (lo, hi) inclusive;
    default (1, L // 2)) and whose start is uniform over the positions where it fits; the
    observed entries in the gap become targets (an outage of one sensor)."""
    observed = _check_mask(observed)
    n, k, length = observed.shape
    if gap_lengths is None:
        gap_lengths = (1, max(1, length // 2))
    lo, hi = (gap_lengths, gap_lengths) if isinstance(gap_lengths, int) else gap_lengths
    if not 1 <= lo <= hi <= length:
        raise ValueError(
            f"gap lengths must satisfy 1 <= lo <= hi <= L = {length}; got {gap_lengths}"
        )
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"probability must be in [0, 1]; got {probability}")
    u = _uniform((3, n, k), generator, observed)
    gap = lo + (u[0] * (hi - lo + 1)).long().clamp(max=hi - lo)
    start = (u[1] * (length - gap + 1)).long().clamp(max=length - gap)
    steps = torch.arange(length, device=observed.device)
    inside = (steps >= start[..., None]) & (steps < (start + gap)[..., None])
    return inside & (u[2] < probability)[..., None] & observed


def hide_at_rate(observed: Tensor, rate: float, generator: torch.Generator | None = None) -> Tensor:
    """Evaluation targets at a fixed missing rate: per window exactly floor(rate * n_observed)
    observed entries, chosen uniformly, are hidden (the official healthcare protocol's
    ``int(n_observed * rate)`` per patient; a 1e-9 guard keeps e.g. 0.29 * 100 at 29, where
    the float product is 28.999...)."""
    observed = _check_mask(observed)
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"missing rate must be in [0, 1]; got {rate}")
    n_obs = observed.reshape(observed.shape[0], -1).sum(1)
    counts = torch.tensor(
        [math.floor(rate * int(c) + 1e-9) for c in n_obs.tolist()], dtype=torch.long
    )
    return _choose(observed, counts, generator)


def condition_mask(observed: Tensor, targets: Tensor) -> Tensor:
    """``observed & ~targets``: the entries the model is conditioned on. ``ValueError`` when
    ``targets`` is not a subset of ``observed`` or the shapes differ."""
    observed, targets = _check_mask(observed), _check_mask(targets, "targets")
    if targets.shape != observed.shape:
        raise ValueError(f"targets {tuple(targets.shape)} vs observed {tuple(observed.shape)}")
    if (targets & ~observed).any():
        raise ValueError("targets include entries that are not observed")
    return observed & ~targets


def target_mask(
    strategy: str,
    observed: Tensor,
    generator: torch.Generator | None = None,
    *,
    pool_observed: Tensor | None = None,
    horizon: int | None = None,
    gap_lengths: int | tuple[int, int] | None = None,
) -> Tensor:
    """The training targets of a strategy by name (:data:`TARGET_STRATEGIES`; ``"test"`` is
    accepted for ``"forecast"``, the official code's name)."""
    if strategy == "random":
        return random_targets(observed, generator)
    if strategy == "historical":
        return historical_targets(observed, pool_observed, generator)
    if strategy == "mix":
        return mix_targets(observed, pool_observed, generator)
    if strategy in ("forecast", "test"):
        if horizon is None:
            raise ValueError("the forecast strategy needs a horizon")
        return forecast_targets(observed, horizon)
    if strategy == "block":
        return block_targets(observed, generator, gap_lengths)
    raise ValueError(f"unknown target strategy {strategy!r}; one of {', '.join(TARGET_STRATEGIES)}")
