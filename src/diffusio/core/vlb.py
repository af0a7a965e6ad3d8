"""The variational bound of a discrete diffusion chain, split into per-step KL terms.

Sohl-Dickstein et al. 2015 (eq. 14) and Ho et al. 2020 (eq. 5) bound the negative log-likelihood
of data x0 under a chain of Gaussian reverse kernels ``p(x_{i-1} | x_i)`` by

    -log p(x0) <= L_T + sum_{i>=1} L_i + L_0                                     (nats)
    L_T = KL(q(x_T | x0) || p(x_T))                      prior term (no parameters)
    L_i = KL(q(x_{i-1} | x_i, x0) || p(x_{i-1} | x_i))   one per step, Gaussian vs Gaussian
    L_0 = -log p(x0 | x_1)                               the decoder

over the process's discrete table (``process.discrete()``): index ``i`` (0 = least noise) is the
latent ``x_i = alphas[i] x0 + sigmas[i] eps``, whose predecessor is index ``i - 1`` or, for
``i = 0``, the data itself (alpha 1, sigma 0). For any process (VP or VE), with ``a = alpha_i /
alpha_{i-1}``:

    beta_i       = sigma_i^2 - a^2 sigma_{i-1}^2                 forward step variance
    beta-tilde_i = sigma_{i-1}^2 beta_i / sigma_i^2              posterior variance (DDPM eq. 7)
    mean-tilde_i = a sigma_{i-1}^2 / sigma_i^2 x_i + alpha_{i-1} beta_i / sigma_i^2 x0

A model's reverse kernel has the posterior's form with x0 replaced by its prediction (DDPM eq.
11), and a variance that is either fixed (beta-tilde; clipped to beta-tilde_1 at i = 0 as in
improved DDPM) or learned (a model with ``variance_head="learned"``): the network's raw output
``v`` in [-1, 1] (``Prediction.variance_interp``) interpolates the log
variance between the two extremes, ``log var = (v+1)/2 log beta + (1-v)/2 log beta-tilde``
(Nichol & Dhariwal 2021, eq. 15). A Gaussian reverse kernel with a learned mean *and* variance
trained on this bound is Sohl-Dickstein et al.'s original model.

The decoder is a Gaussian density (``decoder="gaussian"``, for continuous data) or DDPM's
discretized Gaussian (``decoder="discretized"``, Ho et al. 2020, eq. 13): for 8-bit images
scaled to [-1, 1] each pixel's probability is the Gaussian's mass on its bin of width 2/255
(the outermost bins extend to infinity), so the bound is on a discrete probability and
``total / (D ln 2)`` is the bits/dim DDPM reports (3.70 on CIFAR-10, Table 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .processes import broadcast_like

DECODERS = ("gaussian", "discretized")

__all__ = [
    "DECODERS",
    "StepCoefficients",
    "discretized_gaussian_nll",
    "learned_log_variance",
    "normal_kl",
    "gaussian_nll",
    "prior_kl",
    "quantize",
    "reverse_kernel",
    "step_coefficients",
    "step_loss",
    "time_indices",
    "vlb",
    "vlb_term",
]


def normal_kl(mean1: Tensor, logvar1: Tensor, mean2: Tensor, logvar2: Tensor) -> Tensor:
    """Elementwise KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) in nats."""
    return 0.5 * (
        logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2)
        - 1.0
    )  # fmt: skip


def gaussian_nll(x: Tensor, mean: Tensor, logvar: Tensor) -> Tensor:
    """Elementwise -log N(x; mean, e^logvar) in nats."""
    return 0.5 * (math.log(2 * math.pi) + logvar + (x - mean) ** 2 * torch.exp(-logvar))


def discretized_gaussian_nll(
    x: Tensor, mean: Tensor, logvar: Tensor, levels: int = 256
) -> Tensor:
    """Elementwise ``-log P(bin of x)`` in nats for x on a ``levels``-value grid in [-1, 1],
    under N(mean, e^logvar): the mass between the bin's edges ``x -+ 1 / (levels - 1)``, with the
    first and last bins open-ended (DDPM, Ho et al. 2020, eq. 13). Tail masses use log Phi
    (``torch.special.log_ndtr``) so extreme values stay finite."""
    half_bin = 1.0 / (levels - 1)
    inv_std = torch.exp(-0.5 * logvar)
    upper = (x - mean + half_bin) * inv_std
    lower = (x - mean - half_bin) * inv_std
    log_cdf_upper = torch.special.log_ndtr(upper)  # log P(z < upper), for the first bin
    log_sf_lower = torch.special.log_ndtr(-lower)  # log P(z > lower), for the last bin
    # mass between the edges, computed on the side of the mean where it is not a tiny difference
    # of two numbers near 1: Phi(u) - Phi(l) = Phi(-l) - Phi(-u)
    mid = torch.where(
        lower > 0,
        torch.special.ndtr(-lower) - torch.special.ndtr(-upper),
        torch.special.ndtr(upper) - torch.special.ndtr(lower),
    )
    log_mid = torch.log(mid.clamp_min(1e-12))
    edge = 1.0 - half_bin
    log_p = torch.where(x < -edge, log_cdf_upper, torch.where(x > edge, log_sf_lower, log_mid))
    return -log_p


def quantize(x: Tensor, levels: int = 256) -> Tensor:
    """Round data in [-1, 1] to the ``levels``-value grid the discretized decoder scores."""
    step = 2.0 / (levels - 1)
    return (torch.round((x.clamp(-1.0, 1.0) + 1.0) / step) * step - 1.0).to(x.dtype)


def learned_log_variance(v: Tensor, log_beta: Tensor, log_beta_tilde: Tensor) -> Tensor:
    """Improved DDPM's learned log variance (eq. 15) from the raw network output ``v``."""
    frac = (v + 1.0) / 2.0
    return frac * log_beta + (1.0 - frac) * log_beta_tilde


@dataclass
class StepCoefficients:
    """Per-example coefficients of step ``i -> i - 1`` (tensors broadcastable to x)."""

    alpha: Tensor  # alpha_i
    sigma: Tensor  # sigma_i
    alpha_prev: Tensor  # alpha_{i-1} (1 at i = 0)
    sigma_prev: Tensor  # sigma_{i-1} (0 at i = 0)
    beta: Tensor  # forward step variance beta_i
    beta_tilde: Tensor  # posterior variance (0 at i = 0)
    log_beta_tilde_clipped: Tensor  # log beta-tilde, with beta-tilde_1 used at i = 0

    def posterior_mean(self, x0: Tensor, x: Tensor) -> Tensor:
        """Mean of q(x_{i-1} | x_i, x0)."""
        a = self.alpha / self.alpha_prev
        s2 = self.sigma**2
        return a * self.sigma_prev**2 / s2 * x + self.alpha_prev * self.beta / s2 * x0


def time_indices(process: Any, t: Tensor) -> Tensor:
    """Table indices of times ``t`` that lie on ``process.discrete().times`` (ValueError if not)."""
    times = process.discrete().times.to(device=t.device)
    t64 = t.detach().to(torch.float64)
    idx = torch.searchsorted(times, t64).clamp(max=times.numel() - 1)
    lower = (idx - 1).clamp(min=0)
    idx = torch.where((times[lower] - t64).abs() < (times[idx] - t64).abs(), lower, idx)
    if not torch.allclose(times[idx], t64, rtol=0.0, atol=1e-6):
        raise ValueError(
            "the variational bound needs times on the process's discrete grid: use the "
            "'discrete' or 'importance' time distribution"
        )
    return idx


def step_coefficients(process: Any, index: Tensor, like: Tensor) -> StepCoefficients:
    """:class:`StepCoefficients` for table indices ``index`` (N,), shaped to broadcast with
    ``like`` (N, ...) and in its dtype."""
    table = process.discrete()
    alphas, sigmas = table.alphas.to(like.device), table.sigmas.to(like.device)
    # the whole table's step i -> i - 1, the data (alpha 1, sigma 0) preceding index 0
    alphas_prev = torch.cat([alphas.new_ones(1), alphas[:-1]])
    sigmas_prev = torch.cat([sigmas.new_zeros(1), sigmas[:-1]])
    betas = sigmas**2 - (alphas / alphas_prev) ** 2 * sigmas_prev**2
    tildes = sigmas_prev**2 * betas / sigmas**2
    # improved DDPM clips index 0's log beta-tilde (= log 0) to index 1's
    log_tildes = torch.log(torch.cat([tildes[1:2] if len(table) > 1 else betas[:1], tildes[1:]]))
    index = index.to(like.device)
    columns = (alphas, sigmas, alphas_prev, sigmas_prev, betas, tildes, log_tildes)
    return StepCoefficients(*(broadcast_like(c[index].to(like.dtype), like) for c in columns))


def reverse_kernel(
    model: Any, x: Tensor, index: Tensor, coefs: StepCoefficients | None = None, **cond: Any
) -> tuple[Tensor, Tensor, Any]:
    """Mean and log variance of the model's ``p(x_{i-1} | x_i)`` at table indices ``index``
    (and the :class:`~diffusio.core.parameterization.Prediction` they came from).

    The mean is the posterior mean with x0 predicted (DDPM eq. 11); the variance is learned
    (eq. 15 of improved DDPM, from ``Prediction.variance_interp``) if the model has
    ``variance_head="learned"``, else beta-tilde.
    """
    coefs = coefs or step_coefficients(model.process, index, x)
    t = model.process.discrete().times.to(device=x.device, dtype=x.dtype)[index.to(x.device)]
    pred = model.predict(x, t, **cond)
    mean = coefs.posterior_mean(pred.x0, x)
    if pred.variance_interp is not None:
        logvar = learned_log_variance(
            pred.variance_interp, torch.log(coefs.beta), coefs.log_beta_tilde_clipped
        )
    else:
        logvar = coefs.log_beta_tilde_clipped.expand_as(x)
    return mean, logvar, pred


def _sum_flat(x: Tensor) -> Tensor:
    return x.reshape(x.shape[0], -1).sum(1)


def step_loss(
    coefs: StepCoefficients,
    x0: Tensor,
    x: Tensor,
    index: Tensor,
    mean: Tensor,
    logvar: Tensor,
    decoder: str = "gaussian",
) -> Tensor:
    """``L_i`` per example in nats for a reverse kernel N(mean, e^logvar) at state x = x_i:
    the KL to the posterior q(x_{i-1} | x_i, x0) for ``index >= 1``, the decoder's
    ``-log p(x0 | x_1)`` for ``index == 0``."""
    if decoder not in DECODERS:
        raise ValueError(f"unknown decoder {decoder!r}; valid: {', '.join(DECODERS)}")
    first = broadcast_like(index.to(x0.device) == 0, x0)
    true_mean = coefs.posterior_mean(x0, x)
    # log beta-tilde (finite at index 0 too, where the decoder term replaces the KL)
    kl = normal_kl(true_mean, coefs.log_beta_tilde_clipped.expand_as(x0), mean, logvar)
    if decoder == "gaussian":
        nll = gaussian_nll(x0, mean, logvar)
    else:
        nll = discretized_gaussian_nll(x0, mean, logvar)
    return _sum_flat(torch.where(first, nll, kl))


def vlb_term(
    model: Any,
    x0: Tensor,
    index: Tensor,
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
    decoder: str = "gaussian",
    **cond: Any,
) -> Tensor:
    """One term of the bound per example, in nats: ``L_i`` (a KL) for ``index >= 1`` and the
    decoder's ``L_0 = -log p(x0 | x_1)`` for ``index == 0``; ``x_i`` is drawn from q(x_i | x0)
    with ``noise`` (default: fresh standard normal noise from ``generator``)."""
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
    coefs = step_coefficients(model.process, index, x0)
    x = coefs.alpha * x0 + coefs.sigma * noise
    mean, logvar, _ = reverse_kernel(model, x, index, coefs, **cond)
    return step_loss(coefs, x0, x, index, mean, logvar, decoder)


def prior_kl(process: Any, x0: Tensor) -> Tensor:
    """``L_T = KL(q(x_T | x0) || N(0, prior_std^2 I))`` per example in nats, at the table's last
    index."""
    table = process.discrete()
    alpha, sigma = float(table.alphas[-1]), float(table.sigmas[-1])
    mean = alpha * x0
    logvar = torch.full_like(x0, 2 * math.log(sigma))
    prior_logvar = torch.full_like(x0, 2 * math.log(process.prior_std))
    return _sum_flat(normal_kl(mean, logvar, torch.zeros_like(x0), prior_logvar))


def vlb(
    model: Any,
    x0: Tensor,
    generator: torch.Generator | None = None,
    progress: bool = False,
    decoder: str = "gaussian",
    **cond: Any,
) -> dict[str, Tensor]:
    """The whole bound for each row of ``x0``, every step evaluated (one network call per step).

    Returns ``{"total": (N,), "terms": (N, T) [L_0, L_1, ..., L_{T-1}], "prior": (N,)}`` in nats;
    ``total`` is an upper bound on ``-log p(x0)`` under the model's chain (a Monte Carlo estimate:
    each ``x_i`` is one draw from q(x_i | x0)). ``decoder="discretized"`` scores 8-bit data
    (use :func:`quantize` first) and makes the bound one on a discrete probability.
    """
    from tqdm.auto import tqdm

    T = len(model.process.discrete())
    terms = []
    with torch.no_grad():
        for i in tqdm(range(T), desc="vlb", disable=not progress, leave=False):
            index = torch.full((x0.shape[0],), i, dtype=torch.long, device=x0.device)
            terms.append(vlb_term(model, x0, index, generator=generator, decoder=decoder, **cond))
        stacked = torch.stack(terms, dim=1)
        prior = prior_kl(model.process, x0)
    return {"total": stacked.sum(1) + prior, "terms": stacked, "prior": prior}
