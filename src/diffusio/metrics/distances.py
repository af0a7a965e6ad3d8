"""Two-sample distances between sample sets x (N, ...) and y (M, ...), in float64 on the CPU.

* :func:`sliced_wasserstein` -- sliced 2-Wasserstein distance (Rabin et al. 2011; Bonneel et
  al. 2015): ``SW_2(x, y) = (E_theta W_2^2(theta^T x, theta^T y))^(1/2)`` over directions theta
  uniform on the sphere, estimated with ``num_projections`` random directions; each 1-D W_2 is
  exact for the empirical measures (their quantile functions), so unequal sizes are handled.
* :func:`mmd` -- unbiased MMD^2 with a Gaussian kernel (Gretton et al. 2012, JMLR, eq. 3).
* :func:`energy_distance` -- ``2 E|X-Y| - E|X-X'| - E|Y-Y'|`` (Székely & Rizzo 2013), as an
  unbiased U-statistic.
* :func:`floor_draws` / :func:`noise_floors` -- metrics between independent pairs of exact sets
  of the samples' size (a :class:`~diffusio.metrics.stats.NoiseFloor` each): the level a perfect
  sampler reaches at that sample size. The one noise-floor computation of the toy evaluations.
* :func:`with_noise_floor` -- a metric next to its floor (single pair, or RMS over pairs).

Pairwise sums are computed in blocks of at most ``_BLOCK_ELEMENTS`` entries (2 MiB of float64),
so 10k x 10k samples need a few tens of MiB.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from .stats import NoiseFloor

__all__ = [
    "energy_distance", "floor_draws", "mmd", "noise_floors", "sliced_wasserstein",
    "with_noise_floor",
]  # fmt: skip

_BLOCK_ELEMENTS = 1 << 18


def _as_rows(x: Any, name: str) -> Tensor:
    x = torch.as_tensor(x).detach()
    if x.dim() < 1 or x.shape[0] < 1:
        raise ValueError(f"{name} must have shape (N, ...) with N >= 1, got {tuple(x.shape)}")
    return x.reshape(x.shape[0], -1).to("cpu", torch.float64)


def _pair(x: Any, y: Any) -> tuple[Tensor, Tensor]:
    x, y = _as_rows(x, "x"), _as_rows(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y have different dimensions: {x.shape[1]} vs {y.shape[1]}")
    return x, y


def _pairwise_sum(a: Tensor, b: Tensor, fn: Callable[[Tensor], Tensor]) -> float:
    """``sum_ij fn(|a_i - b_j|^2)`` in row blocks of at most ``_BLOCK_ELEMENTS`` entries.

    ``fn`` receives a fresh block of squared distances that it may overwrite in place."""
    rows = max(1, _BLOCK_ELEMENTS // max(b.shape[0], 1))
    a_sq, b_sq = (a * a).sum(1), (b * b).sum(1)
    total = 0.0
    for start in range(0, a.shape[0], rows):
        block = a[start : start + rows]
        # |a|^2 + |b|^2 - 2 a.b, built in one buffer
        sq = torch.addmm(b_sq[None, :], block, b.T, beta=1.0, alpha=-2.0)
        sq.add_(a_sq[start : start + rows, None]).clamp_(min=0.0)
        total += float(fn(sq).sum())
    return total


# ------------------------------------------------------------------ sliced Wasserstein
def _w2_squared_1d(xs: Tensor, ys: Tensor) -> Tensor:
    """Exact W_2^2 between the empirical measures of sorted columns xs (N, P) and ys (M, P).

    W_2^2 = int_0^1 (F_x^-1(u) - F_y^-1(u))^2 du; both quantile functions are steps, constant
    between consecutive breakpoints of {i/N} u {j/M}, so the integral is a finite sum.
    """
    n, m = xs.shape[0], ys.shape[0]
    if n == m:
        return ((xs - ys) ** 2).mean(0)
    f64 = torch.float64
    grid = [torch.arange(1, k + 1, dtype=f64) / k for k in (n, m)]
    u = torch.unique(torch.cat(grid))
    widths = torch.diff(u, prepend=u.new_zeros(1))
    mid = u - widths / 2
    ix = torch.clamp((mid * n).floor().long(), 0, n - 1)
    iy = torch.clamp((mid * m).floor().long(), 0, m - 1)
    return (widths[:, None] * (xs[ix] - ys[iy]) ** 2).sum(0)


def sliced_wasserstein(x: Any, y: Any, num_projections: int = 256, seed: int = 0) -> float:
    """Sliced 2-Wasserstein distance ``(mean_theta W_2^2(theta^T x, theta^T y))^(1/2)``
    (Rabin et al. 2011; Bonneel et al. 2015) over ``num_projections`` directions drawn uniformly
    on the sphere from ``seed``. Sizes may differ (exact 1-D quantile coupling)."""
    x, y = _pair(x, y)
    if num_projections < 1:
        raise ValueError(f"num_projections must be >= 1, got {num_projections}")
    gen = torch.Generator().manual_seed(int(seed))
    theta = torch.randn(x.shape[1], num_projections, generator=gen, dtype=torch.float64)
    theta = theta / theta.norm(dim=0, keepdim=True)
    cols = max(1, _BLOCK_ELEMENTS // max(x.shape[0], y.shape[0]))
    total = 0.0
    for start in range(0, num_projections, cols):
        th = theta[:, start : start + cols]
        xs = torch.sort(x @ th, dim=0).values
        ys = torch.sort(y @ th, dim=0).values
        total += float(_w2_squared_1d(xs, ys).sum())
    return math.sqrt(max(total / num_projections, 0.0))


# ------------------------------------------------------------------ MMD
def _bandwidths(bandwidth: float | Sequence[float]) -> list[float]:
    values = (
        [float(bandwidth)] if isinstance(bandwidth, (int, float)) else list(map(float, bandwidth))
    )
    if not values or any(not (h > 0 and math.isfinite(h)) for h in values):
        raise ValueError(f"bandwidth must be a positive float or a list of them, got {bandwidth!r}")
    return values


def mmd(x: Any, y: Any, bandwidth: float | Sequence[float]) -> float:
    """Unbiased MMD^2 (Gretton et al. 2012, eq. 3) with ``k(a, b) = sum_h exp(-|a-b|^2 / (2 h^2))``:

        1/(n(n-1)) sum_{i!=j} k(x_i, x_j) + 1/(m(m-1)) sum_{i!=j} k(y_i, y_j)
        - 2/(nm) sum_{i,j} k(x_i, y_j).

    Its expectation is the population MMD^2, so it is 0 on average (and may be negative) for
    identical distributions. Choose ``bandwidth`` at the scale of the data's modes (e.g. the
    within-mode std): much larger smooths the modes together, much smaller compares only
    near-duplicates. A list sums kernels over several scales. Needs n, m >= 2.
    """
    x, y = _pair(x, y)
    n, m = x.shape[0], y.shape[0]
    if n < 2 or m < 2:
        raise ValueError(f"unbiased MMD needs at least 2 samples on each side, got {n} and {m}")
    hs = _bandwidths(bandwidth)

    def kernel(sq: Tensor) -> Tensor:
        # exp(-700) ~ 1e-304 is 0 for these sums; clamping avoids libm's slow far tail.
        if len(hs) == 1:
            return sq.mul_(-0.5 / hs[0] ** 2).clamp_(min=-700.0).exp_()
        out = torch.zeros_like(sq)
        for h in hs:
            out.add_(torch.exp((sq * (-0.5 / h**2)).clamp_(min=-700.0)))
        return out

    # k(a, a) = len(hs) exactly; remove the diagonal analytically.
    kxx = (_pairwise_sum(x, x, kernel) - n * len(hs)) / (n * (n - 1))
    kyy = (_pairwise_sum(y, y, kernel) - m * len(hs)) / (m * (m - 1))
    kxy = _pairwise_sum(x, y, kernel) / (n * m)
    return kxx + kyy - 2.0 * kxy


# ------------------------------------------------------------------ energy distance
def energy_distance(x: Any, y: Any) -> float:
    """Energy distance ``2 E|X-Y| - E|X-X'| - E|Y-Y'|`` (Székely & Rizzo 2013, eq. 2.1),
    estimated without bias (within-sample means over i != j). Zero on average for identical
    distributions; for distinct ones it is the squared distance of their characteristic
    functions under a weight, and positive."""
    x, y = _pair(x, y)
    n, m = x.shape[0], y.shape[0]
    if n < 2 or m < 2:
        raise ValueError(f"energy distance needs at least 2 samples on each side, got {n}, {m}")
    exy = _pairwise_sum(x, y, torch.sqrt_) / (n * m)
    # The diagonal of |x_i - x_i| is 0 up to rounding of the expanded square (clamped at 0).
    exx = _pairwise_sum(x, x, torch.sqrt_) / (n * (n - 1))
    eyy = _pairwise_sum(y, y, torch.sqrt_) / (m * (m - 1))
    return 2.0 * exy - exx - eyy


# ------------------------------------------------------------------ noise floor
Reference = Callable[[int, int], Tensor]


def floor_draws(
    metrics: Mapping[str, Callable[[Tensor, Tensor], float]],
    reference: Reference,
    n: int,
    pairs: int = 1,
    seed: int = 0,
) -> dict[str, list[float]]:
    """Each metric between ``pairs`` independent pairs of exact sets of size ``n``:
    ``metric(reference(n, seed + 2k), reference(n, seed + 2k + 1))`` for k < ``pairs`` (every
    metric on the same pairs). This is what an exact sampler scores at that size."""
    if pairs < 1:
        raise ValueError(f"repeats must be >= 1, got {pairs}")
    draws: dict[str, list[float]] = {name: [] for name in metrics}
    for k in range(pairs):
        a, b = reference(n, seed + 2 * k), reference(n, seed + 2 * k + 1)
        for name, metric in metrics.items():
            draws[name].append(float(metric(a, b)))
    return draws


def noise_floors(
    metrics: Mapping[str, Callable[[Tensor, Tensor], float]],
    reference: Reference,
    n: int,
    pairs: int = 1,
    seed: int = 0,
) -> dict[str, NoiseFloor]:
    """:func:`floor_draws` as one :class:`~diffusio.metrics.stats.NoiseFloor` per metric (mean
    and sd over the pairs; sd 0 for one pair)."""
    draws = floor_draws(metrics, reference, n, pairs, seed)
    return {name: NoiseFloor.from_draws(values, n) for name, values in draws.items()}


def with_noise_floor(
    metric: Callable[..., float],
    samples: Any,
    reference_sampler: Reference,
    seed: int = 0,
    repeats: int = 1,
    **kw: Any,
) -> dict[str, float]:
    """``{"value": metric(samples, ref_0), "floor": ...}``.

    ``ref_k = reference_sampler(n, seed + k)`` are independent reference sets of the same size n
    as ``samples``: the floor is what an exact sampler scores at that size (:func:`floor_draws`
    from ``seed + 1``). With ``repeats=1`` it is ``metric(ref_1, ref_2)``; with more, the
    root-mean-square over ``repeats`` disjoint pairs -- the typical size of the metric between
    exact sets, a steadier floor (needed for the unbiased MMD^2, which scatters around 0 between
    exact sets). (Use seeds for ``samples`` outside ``seed .. seed + 2 repeats``.) ``kw`` goes
    to ``metric``.
    """
    samples = torch.as_tensor(samples)
    n = samples.shape[0]
    draws = floor_draws({"m": lambda a, b: metric(a, b, **kw)}, reference_sampler, n, repeats,
                        seed + 1)["m"]  # fmt: skip
    value = float(metric(samples, reference_sampler(n, seed), **kw))
    floor = draws[0] if repeats == 1 else math.sqrt(sum(d * d for d in draws) / repeats)
    return {"value": value, "floor": floor}
