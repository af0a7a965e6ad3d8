"""The toy scorer: how close 2-D samples are to a known distribution, with its noise.

* Two-sample distances against fresh exact samples -- sliced Wasserstein and unbiased MMD^2
  (:mod:`diffusio.metrics.distances`) -- next to their noise floor (the same metric between
  exact sets of the samples' size, :func:`~diffusio.metrics.distances.noise_floors`);
* per-mode statistics against an exact :class:`~diffusio.oracle.GaussianMixture`: the weight of
  a mode with its binomial standard error (Song & Ermon 2019, Sec. 3.2.2, measure exactly
  this), the chi-square per dof of mode weights, means and spreads
  (:meth:`GaussianMixture.mode_discrepancy`, about 1 for exact samples) with a bootstrap
  standard error, its three parts (the weight part is the chi-square of the mode counts), and
  the spread of the modes;
* diverged samples (non-finite rows) and samples off every mode.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..metrics.distances import mmd, noise_floors, sliced_wasserstein, with_noise_floor
from ..metrics.stats import binomial_se
from ..oracle import GaussianMixture

__all__ = [
    "Metric", "chi2_stderr", "discrepancy_parts", "finite_rows", "floor_scores", "mode_chi2", "mode_spread",
    "mode_weight", "off_mode_fraction", "quality", "two_sample_metrics", "weight_row",
]  # fmt: skip

Metric = Callable[[Tensor, Tensor], float]


def two_sample_metrics(bandwidth: float, num_projections: int = 256) -> dict[str, Metric]:
    """``{"sw": sliced Wasserstein, "mmd": unbiased MMD^2 at ``bandwidth``}``, each
    ``metric(samples, exact)`` in data units, lower is better."""
    return {
        "sw": functools.partial(sliced_wasserstein, num_projections=num_projections),
        "mmd": functools.partial(mmd, bandwidth=bandwidth),
    }


def quality(x: Tensor, ref: Tensor, metrics: dict[str, Metric]) -> dict[str, float]:
    """Every metric of samples ``x`` against the exact set ``ref`` (float64)."""
    x, ref = x.to(torch.float64), ref.to(torch.float64)
    return {name: float(fn(x, ref)) for name, fn in metrics.items()}


def finite_rows(x: Tensor) -> tuple[Tensor, int]:
    """The samples with finite coordinates, and how many diverged (inf or nan)."""
    ok = torch.isfinite(x).all(dim=1)
    return x[ok], int((~ok).sum())


def mode_weight(mixture: GaussianMixture, x: Tensor, mode: int = 0) -> tuple[float, float]:
    """Fraction of the finite samples assigned to ``mode`` (most responsible component) and its
    binomial standard error (kept above ``1e-6 / sqrt(n)`` so a z-score stays finite)."""
    x, _ = finite_rows(x.to(torch.float64))
    if x.shape[0] == 0:
        return math.nan, math.nan
    p = float((mixture.assign(x) == mode).to(torch.float64).mean())
    return p, max(binomial_se(p, x.shape[0]), 1e-6 / math.sqrt(x.shape[0]))


def off_mode_fraction(mixture: GaussianMixture, x: Tensor, radius: float = 4.0) -> float:
    """Fraction of samples farther than ``radius`` mode standard deviations from every mode
    (diverged samples count as off-mode)."""
    x = x.to(torch.float64)
    dist = ((x[:, None, :] - mixture.means[None]) / mixture.stds[None]).norm(dim=-1)
    near = dist.min(dim=1).values <= radius  # False for nan
    return float((~near).to(torch.float64).mean())


def mode_chi2(mixture: GaussianMixture, x: Tensor) -> float:
    """Chi-square per dof of the per-mode weight, mean and spread (exact samples ~ 1)."""
    return mixture.mode_discrepancy(x.to(torch.float64))


def chi2_stderr(mixture: GaussianMixture, x: Tensor, draws: int = 100, seed: int = 0) -> float:
    """Bootstrap standard error of :func:`mode_chi2` (rows drawn with replacement): its sampling
    noise grows with its value, so the exact-sample floor's spread understates it."""
    gen = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    values = [mode_chi2(mixture, x[torch.randint(n, (n,), generator=gen)]) for _ in range(draws)]
    return float(torch.tensor(values, dtype=torch.float64).std())


def mode_spread(mixture: GaussianMixture, x: Tensor) -> float:
    """Mean within-mode std of samples over the exact one (1 = exact; above 1 = blurred
    modes, below 1 = over-sharpened)."""
    got, ref = mixture.mode_stats(x.to(torch.float64)), mixture.reference_stats()
    return float((got["std"] / ref["std"]).mean())


def discrepancy_parts(mixture: GaussianMixture, x: Tensor) -> dict[str, Any]:
    """:func:`mode_chi2` (``discrepancy``) and its three parts -- the chi-square per dof of the
    mode counts (``weight``), of the means and of the spreads -- plus ``std_ratio``
    (:func:`mode_spread`)."""
    ref, got, n = mixture.reference_stats(), mixture.mode_stats(x), float(x.shape[0])
    w, s2 = ref["weight"], ref["std"] ** 2
    n_k = (w * n).clamp_min(1.0)[:, None]
    parts = {
        "weight": ((got["weight"] - w) ** 2 / (w * (1 - w) / n).clamp_min(1e-12)).flatten(),
        "mean": ((got["mean"] - ref["mean"]) ** 2 / (s2 / n_k)).flatten(),
        "spread": ((got["std"] ** 2 - s2) ** 2 / (2 * s2**2 / n_k)).flatten(),
    }
    out: dict[str, Any] = {"discrepancy": float(torch.cat(list(parts.values())).mean())}
    out.update({k: float(v.mean()) for k, v in parts.items()})
    out["std_ratio"] = float((got["std"] / ref["std"]).mean())
    return out


def weight_row(mixture: GaussianMixture, x: Tensor, mode: int = 0) -> dict[str, Any]:
    """One row of a mode-weight table: the ``weight`` of ``mode`` with its standard error
    ``se``, ``z = (weight - true weight) / se``, the ``off_mode`` fraction and how many samples
    ``diverged``."""
    p, se = mode_weight(mixture, x, mode)
    return {"weight": p, "se": se, "z": (p - float(mixture.weights[mode])) / se,
            "off_mode": off_mode_fraction(mixture, x), "diverged": finite_rows(x)[1]}  # fmt: skip


def floor_scores(
    samples: Tensor,
    reference: Callable[[int, int], Tensor],
    metrics: dict[str, Metric],
    pairs: int,
    seed: int = 1000,
    floor_seed: int = 2000,
) -> dict[str, dict[str, float]]:
    """Per metric: ``value`` (samples against ``reference(n, seed)``), ``floor`` (one exact pair,
    :func:`~diffusio.metrics.distances.with_noise_floor`), and the noise floor over ``pairs``
    exact pairs from ``floor_seed`` -- ``null_mean``, ``null_std`` and ``z`` = (value - mean) /
    std, the :class:`~diffusio.metrics.stats.NoiseFloor` z-score."""
    null = noise_floors(metrics, reference, samples.shape[0], pairs, floor_seed)
    out = {}
    for name, metric in metrics.items():
        entry = with_noise_floor(metric, samples, reference, seed=seed)
        out[name] = {**entry, "null_mean": null[name].mean, "null_std": null[name].sd,
                     "z": null[name].z(entry["value"])}  # fmt: skip
    return out
