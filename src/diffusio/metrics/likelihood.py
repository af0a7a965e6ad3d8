"""Likelihood of data in its own units under a model trained on normalized data.

A model trained on standardized data ``y = (x - m) / s`` has ``log p(x) = log p(y) - sum log s``
(the change-of-variables formula with the standardization's Jacobian), so the NLL of ``x`` is the
probability-flow ODE's NLL of ``y`` (Song et al. 2021, eq. 39-40; :func:`diffusio.core.nll`)
minus ``sum log s``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..core.likelihood import nll
from .stats import mean_se

__all__ = ["data_nll", "mean_and_stderr"]


def data_nll(
    model: Any,
    x: Tensor,
    normalizer: Any | None = None,
    exact: bool | None = None,
    seed: int | None = 0,
    progress: bool = False,
    **options: Any,
) -> Tensor | tuple[Tensor, dict[str, Any]]:
    """Per-row NLL in nats of data ``x`` (data units, shape (N, D)) under ``model``.

    ``normalizer`` is the run's :class:`~diffusio.data.normalize.Standardizer` (or None);
    ``exact`` defaults to the exact divergence for D <= 16 and Hutchinson's estimator above.
    ``options`` go to :func:`diffusio.core.nll` (tolerances, t_min, ...; with
    ``return_stats=True`` the result is ``(nats, stats)``, stats holding the solver's NFE).
    """
    x = torch.as_tensor(x)
    dim = int(x[0].numel())
    y = normalizer.transform(x) if normalizer is not None else x
    exact = dim <= 16 if exact is None else exact
    out = nll(model, y.to(model.dtype), exact=exact, seed=seed, progress=progress, **options)
    nats, stats = out if options.get("return_stats") else (out, None)
    if normalizer is not None:
        nats = nats - normalizer.log_det_jacobian()
    return nats if stats is None else (nats, stats)


def mean_and_stderr(values: Tensor) -> tuple[float, float]:
    """Mean and its standard error (NaN for a single value) of a tensor's entries:
    :func:`diffusio.metrics.stats.mean_se`, the one implementation."""
    return mean_se(torch.as_tensor(values, dtype=torch.float64).flatten().tolist())
