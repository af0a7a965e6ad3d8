"""Training losses: denoising score matching under the weightings of the main papers.

A batch of clean data ``x0`` is noised at times ``t`` drawn by a time distribution
(:mod:`diffusio.core.timesteps`): ``x_t = alpha(t) x0 + sigma(t) eps`` with ``eps ~ N(0, I)``,
and the model is asked for its prediction at ``(x_t, t)``. Because the conditional score of the
forward process is ``grad log q(x_t | x0) = -eps / sigma``, every weighting below is the
denoising score matching objective of Vincent (2011) / Score SDE (Song et al. 2021, eq. 7),

    E_t E_{x0, eps} [ lambda(t) || s_theta(x_t, t) + eps / sigma(t) ||^2 ],

for some weighting ``lambda(t)``; all of them are minimised by the exact score (the oracle
of :mod:`diffusio.core.oracle`), whatever the network's parameterization.

Weightings (per example; "mean" is over all non-batch dimensions):

* ``simple``     DDPM's L_simple (Ho et al. 2020, eq. 14), generalised: the mean squared error
                 between the network's native output and its own regression target:
                 eps -> ``eps``; x0 -> ``x0``; v -> ``v = alpha eps - sigma x0`` (Salimans & Ho
                 2022, Sec. 4); score -> ``mean ||sigma s_theta + eps||^2``, i.e. the score
                 regressed onto ``-eps / sigma`` with NCSN's ``sigma^2`` weighting.
* ``sigma2``     NCSN (Song & Ermon 2019, eq. 2, 5 and 6, ``lambda(sigma) = sigma^2``):
                 ``0.5 mean ||sigma s_theta + eps||^2`` = ``0.5 mean ||eps_theta - eps||^2``.
* ``likelihood`` likelihood weighting ``lambda(t) = g(t)^2`` (Song, Durkan, Murray & Ermon 2021,
                 "Maximum Likelihood Training of Score-Based Diffusion Models", Thm. 1):
                 ``0.5 g^2 SUM ||s_theta + eps / sigma||^2``
                 ``= 0.5 (g^2 / sigma^2) SUM ||eps_theta - eps||^2``, summed over dimensions:
                 the integrand (per unit time) of the continuous-time bound on the negative
                 log-likelihood in nats, up to a constant independent of theta. Multiply by
                 ``t_max - t_min`` for the integral itself.
* ``x0``         mean squared error in data space, ``mean ||x0_theta - x0||^2`` (the objective of
                 Diffuser, Janner et al. 2022, which predicts x0 directly).
* ``vlb``        the variational bound of the discrete chain (Sohl-Dickstein et al. 2015, eq. 14;
                 Ho et al. 2020, eq. 5; :mod:`diffusio.core.vlb`): ``T L_i + L_T`` in nats per
                 example for one table index i per example, an unbiased estimate of the whole
                 bound. It trains the mean *and* a learned variance (a model with
                 ``variance_head="learned"``) and needs times on the table (the ``discrete`` or
                 ``importance`` time distribution).
* ``hybrid``     improved DDPM's L_hybrid = L_simple + lambda L_vlb (Nichol & Dhariwal 2021,
                 Sec. 3.1, lambda = ``vlb_weight`` = 0.001), for a learned-variance model:
                 L_vlb is ``T L_i`` with a stop-gradient on the mean, so it trains only the
                 variance while L_simple trains the mean; per dimension and in bits, as in their
                 code, so that lambda keeps its meaning for any data size. Times on the table.

``decoder`` (``gaussian`` or ``discretized``, :mod:`diffusio.core.vlb`) chooses L_0 for ``vlb``
and ``hybrid``: the discretized Gaussian for 8-bit images in [-1, 1].

A loss ``mask`` of ``x0``'s shape (1 = counts) restricts every weighting but ``vlb`` / ``hybrid``
to the masked elements: per example the masked mean ``sum(m l) / sum(m)`` (masked sum for
``likelihood``), 0 for an all-zero mask, then the mean over the N examples (imputation and
inpainting objectives, e.g. CSDI's loss on the imputation targets only, Tashiro et al. 2021).

Each per-example loss is multiplied by the time distribution's importance weight, so the
returned mean is an unbiased estimate of the uniform-time objective, and the *unweighted*
per-example losses are handed to ``time_distribution.update`` (as improved DDPM's training loop
does for its loss-aware sampler, Nichol & Dhariwal 2021, Sec. 3.3).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from .parameterization import Prediction
from .processes import Process, broadcast_like
from .timesteps import TimeDistribution, UniformTime, make_time_distribution
from .vlb import (
    learned_log_variance,
    prior_kl,
    step_coefficients,
    step_loss,
    time_indices,
    vlb_term,
)

__all__ = ["WEIGHTINGS", "REDUCTIONS", "diffusion_loss"]

REDUCTIONS = ("mean", "sum", "none")


def _mean_flat(x: Tensor, mask: Tensor | None = None) -> Tensor:
    """Per-example mean over the non-batch dimensions; with ``mask`` the masked mean
    ``sum(m l) / sum(m)`` (0 for an example whose mask is all zero; entries where ``m = 0``
    never enter, so a NaN or inf there cannot leak into the loss or its gradient)."""
    if mask is None:
        return x.reshape(x.shape[0], -1).mean(1)
    m = mask.reshape(mask.shape[0], -1)
    total = m.sum(1)
    return _sum_flat(x, mask) / torch.where(total > 0, total, torch.ones_like(total))


def _sum_flat(x: Tensor, mask: Tensor | None = None) -> Tensor:
    """Per-example sum over the non-batch dimensions (of ``m l`` with a mask)."""
    if mask is None:
        return x.reshape(x.shape[0], -1).sum(1)
    m = mask.reshape(mask.shape[0], -1)
    flat = x.reshape(x.shape[0], -1)
    return (m * torch.where(m > 0, flat, torch.zeros_like(flat))).sum(1)


def _simple(
    pred: Prediction, x0: Tensor, eps: Tensor, t: Tensor, process: Process, mask: Tensor | None
) -> Tensor:
    if pred.kind == "eps":
        target = eps
    elif pred.kind == "x0":
        target = x0
    elif pred.kind == "v":
        target = pred.alpha * eps - pred.sigma * x0
    else:  # score: sigma * s_theta regressed onto -eps
        return _mean_flat((pred.sigma * pred.value + eps) ** 2, mask)
    return _mean_flat((pred.value - target) ** 2, mask)


def _sigma2(
    pred: Prediction, x0: Tensor, eps: Tensor, t: Tensor, process: Process, mask: Tensor | None
) -> Tensor:
    if pred.kind == "score":
        return 0.5 * _mean_flat((pred.sigma * pred.value + eps) ** 2, mask)
    return 0.5 * _mean_flat((pred.eps - eps) ** 2, mask)


def _likelihood(
    pred: Prediction, x0: Tensor, eps: Tensor, t: Tensor, process: Process, mask: Tensor | None
) -> Tensor:
    g2 = broadcast_like(process.g2(t).to(eps), eps)
    if pred.kind == "score":
        return 0.5 * _sum_flat(g2 * (pred.value + eps / pred.sigma) ** 2, mask)
    return 0.5 * _sum_flat(g2 / pred.sigma**2 * (pred.eps - eps) ** 2, mask)


def _x0(
    pred: Prediction, x0: Tensor, eps: Tensor, t: Tensor, process: Process, mask: Tensor | None
) -> Tensor:
    return _mean_flat((pred.x0 - x0) ** 2, mask)


_WEIGHTING_FNS: dict[str, Callable[..., Tensor]] = {
    "simple": _simple,
    "sigma2": _sigma2,
    "likelihood": _likelihood,
    "x0": _x0,
}
WEIGHTINGS = (*_WEIGHTING_FNS, "vlb", "hybrid")
_ON_TABLE = ("vlb", "hybrid")  # weightings defined on the process's discrete table


def _vlb_loss(
    model: Any, x0: Tensor, eps: Tensor, t: Tensor, cond: dict[str, Any], decoder: str
) -> Tensor:
    """``T L_i + L_T`` per example (nats), with ``i`` the table index of ``t``."""
    process = model.process
    index = time_indices(process, t)
    T = len(process.discrete())
    return T * vlb_term(model, x0, index, noise=eps, decoder=decoder, **cond) + prior_kl(
        process, x0
    )


def _hybrid_loss(
    model: Any,
    x0: Tensor,
    eps: Tensor,
    t: Tensor,
    cond: dict[str, Any],
    decoder: str,
    vlb_weight: float,
) -> Tensor:
    """``L_simple + lambda T L_i`` per example, ``L_i`` per dimension in bits with the mean's
    gradient stopped (improved DDPM Sec. 3.1); one network call."""
    if _variance_head(model) != "learned":
        raise ValueError(
            "the hybrid loss trains a learned variance: use a model with variance_head='learned'"
        )
    process = model.process
    index = time_indices(process, t)
    coefs = step_coefficients(process, index, x0)
    x = coefs.alpha * x0 + coefs.sigma * eps
    pred = model.predict(x, t, **cond)
    simple = _simple(pred, x0, eps, t, process, None)
    frozen_mean = coefs.posterior_mean(pred.x0.detach(), x)
    logvar = learned_log_variance(
        pred.variance_interp, torch.log(coefs.beta), coefs.log_beta_tilde_clipped
    )
    nats = step_loss(coefs, x0, x, index, frozen_mean, logvar, decoder)
    T = len(process.discrete())
    bits_per_dim = nats / (x0[0].numel() * math.log(2.0))
    return simple + vlb_weight * T * bits_per_dim


def _check_x0(x0: Tensor) -> Tensor:
    if not isinstance(x0, Tensor):
        raise TypeError(f"x0 must be a tensor, got {type(x0).__name__}")
    if x0.dim() < 1 or x0.shape[0] < 1:
        raise ValueError(f"x0 must have a non-empty batch dimension, got shape {tuple(x0.shape)}")
    if not x0.is_floating_point():
        raise TypeError(f"x0 must be floating point, got {x0.dtype}")
    finite = torch.isfinite(x0.detach().reshape(x0.shape[0], -1)).all(1)
    if not bool(finite.all()):
        bad = (~finite).nonzero().reshape(-1)
        raise ValueError(
            f"x0 has non-finite values in row {int(bad[0])} "
            f"({bad.numel()} of {x0.shape[0]} rows affected)"
        )
    return x0


def _check_cond(cond: Mapping[str, Any] | None, n: int) -> dict[str, Any]:
    if cond is None:
        return {}
    if not isinstance(cond, Mapping):
        raise TypeError(f"cond must be a mapping of keyword arguments, got {type(cond).__name__}")
    for key, value in cond.items():
        if isinstance(value, Tensor) and value.dim() >= 1 and value.shape[0] != n:
            raise ValueError(
                f"cond[{key!r}] has batch size {value.shape[0]}, x0 has {n} (shape "
                f"{tuple(value.shape)})"
            )
    return dict(cond)


def _check_mask(mask: Tensor | None, x0: Tensor, weighting: str) -> Tensor | None:
    if mask is None:
        return None
    if not isinstance(mask, Tensor):
        raise TypeError(f"mask must be a tensor, got {type(mask).__name__}")
    if weighting in _ON_TABLE:
        raise ValueError(f"a loss mask is not supported with the {weighting!r} weighting")
    try:
        mask = torch.broadcast_to(mask.to(device=x0.device, dtype=x0.dtype), x0.shape)
    except RuntimeError:
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not broadcast to x0 {tuple(x0.shape)}"
        ) from None
    if not bool((torch.isfinite(mask) & (mask >= 0)).all()):  # one host sync
        raise ValueError("mask entries must be finite and >= 0 (1 = counts, 0 = ignored)")
    return mask


def _variance_head(model: Any) -> str:
    """A model's variance head ("fixed" or "learned"; models without one count as fixed)."""
    return getattr(model, "variance_head", getattr(model, "variance", "fixed"))


def _resolve_time_distribution(
    dist: TimeDistribution | str | None, process: Process
) -> TimeDistribution:
    if dist is None:
        return UniformTime(process.t_min, process.t_max)
    if isinstance(dist, str):
        if dist == "importance":
            raise ValueError(
                "the 'importance' time distribution keeps a loss history across batches: build "
                "it once with make_time_distribution('importance', process) and pass the instance"
            )
        return make_time_distribution(dist, process)
    if not callable(getattr(dist, "sample", None)):
        raise TypeError(f"time_distribution must be a TimeDistribution, got {type(dist).__name__}")
    return dist


def _randn_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    device = generator.device if generator is not None else x.device
    z = torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype)
    return z.to(x.device)


def diffusion_loss(
    model: Any,
    x0: Tensor,
    *,
    weighting: str = "simple",
    time_distribution: TimeDistribution | str | None = None,
    cond: Mapping[str, Any] | None = None,
    generator: torch.Generator | None = None,
    reduce: str = "mean",
    return_per_example: bool = False,
    decoder: str = "gaussian",
    vlb_weight: float = 0.001,
    mask: Tensor | None = None,
    time_sampler: TimeDistribution | str | None = None,
) -> Tensor:
    """Denoising training loss of ``model`` (a :class:`~diffusio.core.model.DiffusionModel`) on
    a batch of clean data ``x0`` of shape (N, ...).

    Args:
        weighting: ``simple``, ``sigma2``, ``likelihood``, ``x0`` or ``vlb`` (module docstring).
        time_distribution: the training times, a
            :class:`~diffusio.core.timesteps.TimeDistribution` or the name of a stateless one
            (``uniform``, ``discrete``); default ``UniformTime(process.t_min, process.t_max)``
            (``discrete`` for ``vlb`` and ``hybrid``).
            Its ``update`` receives the unweighted per-example losses.
        cond: keyword arguments for the network (``model.predict(x_t, t, **cond)``); tensors
            with a batch dimension must have N rows.
        generator: source of randomness for t and the noise (drawn in that order).
        reduce: batch reduction of the weighted per-example losses: ``mean``, ``sum`` or
            ``none`` (the (N,) vector).
        return_per_example: return the weighted per-example losses (N,), like ``reduce="none"``.
        decoder: L_0 of ``vlb`` / ``hybrid``: ``gaussian`` or ``discretized`` (8-bit images).
        vlb_weight: lambda of ``hybrid`` (improved DDPM: 0.001).
        mask: a loss mask broadcastable to ``x0`` (1 = the element counts, 0 = ignored;
            non-negative weights in general). Each example's loss is its masked mean
            ``sum(m l) / sum(m)`` over the elements (a masked sum for ``likelihood``, which sums
            over dimensions); an example whose mask is all zero contributes 0, and the batch
            mean still divides by N (so every example weighs the same whatever its count, and
            data-parallel ranks with equal batch sizes average to the global batch's loss).
            Not supported by ``vlb`` / ``hybrid``.
        time_sampler: the older name of ``time_distribution`` (give one of them).

    Returns:
        A scalar (or an (N,) vector) that is differentiable with respect to the model.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {weighting!r}; valid: {', '.join(WEIGHTINGS)}")
    if reduce not in REDUCTIONS:
        raise ValueError(f"unknown reduce {reduce!r}; valid: {', '.join(REDUCTIONS)}")
    process = model.process
    x0 = _check_x0(x0)
    n = x0.shape[0]
    kwargs = _check_cond(cond, n)
    mask = _check_mask(mask, x0, weighting)
    if time_sampler is not None:
        if time_distribution is not None and time_distribution is not time_sampler:
            raise ValueError(
                "time_sampler is the older name of time_distribution: give one of them"
            )
        time_distribution = time_sampler
    if time_distribution is None and weighting in _ON_TABLE:
        time_distribution = "discrete"  # the bound is defined on the table
    if weighting in _ON_TABLE and not vlb_weight >= 0:
        raise ValueError(f"vlb_weight must be >= 0, got {vlb_weight!r}")
    times = _resolve_time_distribution(time_distribution, process)

    t, weight = times.sample(n, generator=generator, device=x0.device, dtype=x0.dtype)
    if t.shape != (n,) or weight.shape != (n,):
        raise ValueError(
            f"time distribution returned t {tuple(t.shape)} and weights {tuple(weight.shape)}, "
            f"expected ({n},)"
        )
    eps = _randn_like(x0, generator)
    if weighting == "vlb":
        per_example = _vlb_loss(model, x0, eps, t, kwargs, decoder)
    elif weighting == "hybrid":
        per_example = _hybrid_loss(model, x0, eps, t, kwargs, decoder, vlb_weight)
    else:
        x_t = process.marginal(x0, t, eps)
        pred = model.predict(x_t, t, **kwargs)
        per_example = _WEIGHTING_FNS[weighting](pred, x0, eps, t, process, mask)
    times.update(t.detach(), per_example.detach())
    weighted = per_example * weight.to(per_example)
    if return_per_example or reduce == "none":
        return weighted
    return weighted.mean() if reduce == "mean" else weighted.sum()
