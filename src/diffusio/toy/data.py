"""Toy-data helpers the 2-D reproductions share: a uniform start box and the data's diameter.

* :func:`uniform_box` -- points uniform in ``[-h, h]^2``, NCSN's sampler initialisation (Song &
  Ermon 2019, Sec. 3.2.2 and Appendix B);
* :func:`max_pairwise_distance` -- the largest distance between two data points, Song & Ermon
  2020's technique 1 for the top noise level (``sigma_1`` / the VE SDE's ``sigma_max``, used by
  Song et al. 2021) so that the prior covers the data;
* :func:`standardized_mixture` -- the exact density of standardized data;
* :func:`frozen_split` -- where annealed Langevin decides two modes' weights (closed form).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..oracle import GaussianMixture

__all__ = ["frozen_split", "max_pairwise_distance", "standardized_mixture", "uniform_box"]


def uniform_box(n: int, half_width: float, seed: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """``n`` points uniform in ``[-half_width, half_width]^2`` (deterministic given ``seed``)."""
    gen = torch.Generator().manual_seed(seed)
    return (2 * torch.rand(n, 2, generator=gen, dtype=torch.float64) - 1).mul(half_width).to(dtype)


def max_pairwise_distance(x: Tensor, n: int = 3000, standardize: bool = False) -> float:
    """Largest distance between two of the first ``n`` rows of ``x`` (after per-coordinate
    standardization over all rows when ``standardize``, population std)."""
    x = x.to(torch.float64)
    if standardize:
        x = (x - x.mean(0)) / x.std(0, unbiased=False)
    sub = x[:n]
    return float(torch.cdist(sub, sub).max())


def standardized_mixture(mixture: GaussianMixture, normalizer: Any) -> GaussianMixture:
    """``mixture`` seen through a per-coordinate standardizer (``mean``, ``std``): the exact
    distribution of the normalized data a model trains on."""
    mean, std = normalizer.mean, normalizer.std
    return GaussianMixture((mixture.means - mean) / std, mixture.stds / std, mixture.weights)


def frozen_split(mixture: GaussianMixture, sigma: float) -> float:
    """For two equal isotropic modes noised to ``sigma``: the mass on the first mode's side of
    their midpoint -- the weight annealed Langevin ends with if the split between the modes
    froze at that level (Song & Ermon 2019, Sec. 3.2.2)."""
    half = float((mixture.means[0] - mixture.means[1]).norm()) / 2
    spread = math.sqrt(float(mixture.stds[0, 0]) ** 2 + sigma**2)
    inside = 0.5 * (1 + math.erf(half / spread / math.sqrt(2)))
    w = mixture.weights
    return float(w[0] * inside + w[1] * (1 - inside))
