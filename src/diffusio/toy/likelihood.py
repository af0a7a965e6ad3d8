"""Probability-flow ODE likelihoods of a toy model against the data's exact density.

Song et al. 2021 (Score SDE, eq. 39-40, App. D.2) compute ``-log p(x)`` by the ODE's
instantaneous change of variables; in 2-D the divergence is exact. Where the data's density is
known (a :class:`~diffusio.oracle.GaussianMixture`), ``mean(NLL(x) + log p(x))`` over the same
points is a paired estimate of KL(data || model), far less noisy than NLL minus the entropy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

from ..metrics.likelihood import data_nll
from ..metrics.stats import mean_se

__all__ = ["nll_sweep", "ode_nll"]


def ode_nll(model: Any, normalizer: Any | None, x: Tensor, tol: float) -> tuple[Tensor, int]:
    """Per-row ODE NLL (nats, data units; exact divergence) of ``x`` by RK45 at
    ``rtol = atol = tol``, and the solve's NFE."""
    nats, stats = data_nll(model, x, normalizer, exact=True, seed=0, rtol=tol, atol=tol,
                           return_stats=True)  # fmt: skip
    return nats.detach().cpu(), int(stats["nfe"])


def nll_sweep(
    model: Any, normalizer: Any | None, x: Tensor, tolerances: Sequence[float], log_p: Tensor
) -> tuple[list[dict[str, Any]], Tensor]:
    """The ODE NLL of ``x`` at each tolerance, loosest first: rows of ``tol``, ``nfe``, ``nll``
    and ``nll_se`` (mean and standard error), ``kl`` and ``kl_se`` (the paired
    ``mean(NLL + log_p)``; 0 for an exact model); plus the per-row NLL at the tightest one."""
    if not tolerances:
        raise ValueError("need at least one tolerance")
    rows, tightest = [], x.new_empty(0)
    for tol in sorted(tolerances, reverse=True):
        nats, nfe = ode_nll(model, normalizer, x, tol)
        nll, nll_se = mean_se(nats.tolist())
        kl, kl_se = mean_se((nats.double() + log_p.double().cpu()).tolist())
        rows.append({"tol": tol, "nfe": nfe, "nll": nll, "nll_se": nll_se, "kl": kl,
                     "kl_se": kl_se})  # fmt: skip
        tightest = nats
    return rows, tightest
