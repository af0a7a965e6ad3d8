"""Nearest-neighbour metrics of generated samples in pixel or feature space.

* :func:`nearest_distances` -- each sample's distance to its nearest reference row.
* :func:`memorisation` -- do samples sit closer to training images than held-out images do?
  (the check behind DDPM's "not memorising" claim, Ho et al. 2020, Sec. 4.3).
* :func:`precision_recall` -- improved precision and recall (Kynkäänniemi et al. 2019).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["memorisation", "nearest_distances", "precision_recall"]


def nearest_distances(x: Tensor, reference: Tensor, batch: int = 1024) -> Tensor:
    """For each row of ``x`` (N, ...), the L2 distance to its nearest row of ``reference``."""
    ref = reference.reshape(reference.shape[0], -1).to(torch.float64)
    flat = x.reshape(x.shape[0], -1).to(torch.float64)
    return torch.cat([torch.cdist(chunk, ref).min(dim=1).values for chunk in flat.split(batch)])


def memorisation(samples: Tensor, train: Tensor, test_distances: Tensor) -> dict[str, float]:
    """Nearest-training-image distances of ``samples`` against those of held-out test images
    (``test_distances``, from :func:`nearest_distances`): medians, their ratio (about 1 for a
    model that generalises, much below 1 for one that copies), and the fraction of samples closer
    to a training image than 95% of the test images are (about 0.05 without copying)."""
    d = nearest_distances(samples, train)
    p5 = float(torch.quantile(test_distances, 0.05))
    median, test_median = float(d.median()), float(test_distances.median())
    return {
        "median": median,
        "test_median": test_median,
        "ratio": median / max(test_median, 1e-12),
        "p5": float(torch.quantile(d, 0.05)),
        "test_p5": p5,
        "below_test_p5": float((d < p5).double().mean()),
    }


def precision_recall(real: Tensor, fake: Tensor, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019, NeurIPS, eq. 1-2) of feature
    sets ``fake`` (M, D) against ``real`` (N, D): each set's manifold is the union of balls
    around its points with radius the distance to the k-th nearest neighbour in the same set;
    precision is the fraction of fake points inside the real manifold (fidelity), recall the
    fraction of real points inside the fake manifold (diversity)."""
    real = torch.as_tensor(real, dtype=torch.float64)
    fake = torch.as_tensor(fake, dtype=torch.float64)
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"precision/recall with k = {k} needs more than {k} points per set")

    def radii(x: Tensor) -> Tensor:
        return torch.cdist(x, x).kthvalue(k + 1, dim=1).values  # k-th neighbour besides itself

    d = torch.cdist(fake, real)  # (M, N)
    precision = (d <= radii(real)[None, :]).any(dim=1).double().mean()
    recall = (d <= radii(fake)[:, None]).any(dim=0).double().mean()
    return float(precision), float(recall)
