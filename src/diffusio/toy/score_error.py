"""The error of a learned score against the exact one (:class:`diffusio.oracle.GaussianMixture`).

Song & Ermon 2019 (Sec. 3.2.1) argue that score matching learns the score only where the data
has mass; with an exact oracle this is measured directly: the relative L2 error
``sqrt(E|s_theta(x, t) - s(x, t)|^2 / E|s(x, t)|^2)`` over points of one's choice (samples of
the noised data, or a box where the data has almost no mass), at every noise level of a ladder.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..core.model import DiffusionModel

__all__ = ["relative_score_error", "score_errors", "score_in_data_units"]


def relative_score_error(
    model: DiffusionModel, oracle: DiffusionModel, x: Tensor, t: float
) -> float:
    """``sqrt(E|s_model - s_oracle|^2 / E|s_oracle|^2)`` at the points ``x`` and time ``t``
    (the model in its own dtype, the oracle in float64)."""
    with torch.no_grad():
        learned = model.predict(x.to(model.dtype), t).score.to(torch.float64)
        exact = oracle.predict(x.to(torch.float64), t).score
    return float(((learned - exact).pow(2).sum(1).mean() / exact.pow(2).sum(1).mean()).sqrt())


def score_errors(
    model: DiffusionModel, oracle: DiffusionModel, x0: Tensor, box: Tensor, seed: int
) -> list[dict[str, float]]:
    """Per level of the model's discrete ladder: ``sigma``, the relative error on samples of the
    noised data ``x0 + sigma z`` (``data``) and on the fixed points ``box`` (``box``)."""
    sched = model.process.discrete()
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for t, sigma in zip(sched.times.tolist(), sched.sigmas.tolist(), strict=True):
        noisy = x0 + sigma * torch.randn(x0.shape, generator=gen, dtype=x0.dtype)
        rows.append({"sigma": sigma, "data": relative_score_error(model, oracle, noisy, t),
                     "box": relative_score_error(model, oracle, box, t)})  # fmt: skip
    return rows


def score_in_data_units(model: DiffusionModel, normalizer: Any) -> Callable[[Tensor, float], Tensor]:
    """``score(points, t)`` of a model trained on standardized data, at data-unit ``points``
    and in data units (the chain rule divides by the standardizer's ``std``)."""

    def score(points: Tensor, t: float) -> Tensor:
        x = normalizer.transform(points).to(model.dtype)
        with torch.no_grad():
            return model.predict(x, t).score.to(torch.float64) / normalizer.std

    return score
