"""Masked (absorbing-state) discrete diffusion: schedules, forward masking, the SUBS
parameterization and the continuous-time bound.

Forward process (Austin et al. 2021, D3PM absorbing; Sahoo et al. 2024, MDLM eq. 2): each token
independently stays with probability ``alpha_t`` and becomes [MASK] otherwise, ``alpha_0 = 1``,
``alpha_1 = 0``: ``q(z_t | x) = Cat(alpha_t x + (1 - alpha_t) m)``.

SUBS parameterization (MDLM Sec. 3.2.3): the network's [MASK] logit is set to -inf (it never
predicts [MASK]) and unmasked positions copy ``z_t`` (log-probability 0), so only masked
positions carry loss.

Continuous-time bound (MDLM eq. 10-11; also Shi et al. 2024 MD4, Ou et al. 2024 RADD)::

    -log p(x) <= NELBO = int_0^1 w(t) E_{z_t}[ sum_{l: z_t^l = m} -log p_theta(x^l | z_t) ] dt,
    w(t) = -alpha'_t / (1 - alpha_t)   (1/t for alpha_t = 1 - t).

It depends on the schedule only through its endpoints (substitute ``u = 1 - alpha_t``), and with
exact conditionals it equals ``-log p(x)`` (see :func:`enumerated_bound`).

Networks here map ids ``z`` (B, L) int64 to logits (B, L, V), V counting the [MASK] id; they take
no time input (MDLM's ``time_conditioning=False``: the optimal denoiser is time-agnostic).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "BoundEstimate",
    "CosineSchedule",
    "LinearSchedule",
    "LogLinearSchedule",
    "MaskSchedule",
    "Network",
    "bound_estimate",
    "enumerated_bound",
    "forward_mask",
    "masked_diffusion_bound",
    "masked_diffusion_bound_by_count",
    "masked_diffusion_loss",
    "stratified_times",
    "subs_log_probs",
]

Network = Callable[[Tensor], Tensor]
"""``net(z) -> logits``: ids (B, L) int64 -> logits (B, L, V); no time input."""


class MaskSchedule:
    """``alpha(t)``: the probability that a token is still unmasked at time t in [0, 1]."""

    def alpha(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def dalpha(self, t: Tensor) -> Tensor:
        """``d alpha / dt`` (<= 0)."""
        raise NotImplementedError

    def weight(self, t: Tensor) -> Tensor:
        """The bound's weight ``-alpha'_t / (1 - alpha_t)`` (MDLM eq. 10)."""
        return -self.dalpha(t) / (1 - self.alpha(t))


@dataclass(frozen=True)
class LinearSchedule(MaskSchedule):
    """``alpha_t = 1 - t`` (weight ``1/t``)."""

    def alpha(self, t: Tensor) -> Tensor:
        return 1 - t

    def dalpha(self, t: Tensor) -> Tensor:
        return -torch.ones_like(t)

    def weight(self, t: Tensor) -> Tensor:
        return 1 / t


@dataclass(frozen=True)
class LogLinearSchedule(MaskSchedule):
    """MDLM's log-linear schedule: ``sigma(t) = -log(1 - (1 - eps) t)``, ``alpha_t = exp(-sigma)
    = 1 - (1 - eps) t`` (weight ``1/t`` exactly). ``alpha_1 = eps > 0``, so the bound over
    [0, 1] leaves out the interval of the linear schedule's ``[1 - eps, 1]`` (a term of order
    ``eps L log V``) -- MDLM's choice; use :class:`LinearSchedule` for the exact identity."""

    eps: float = 1e-3

    def alpha(self, t: Tensor) -> Tensor:
        return 1 - (1 - self.eps) * t

    def dalpha(self, t: Tensor) -> Tensor:
        return torch.full_like(t, -(1 - self.eps))

    def weight(self, t: Tensor) -> Tensor:
        return 1 / t


@dataclass(frozen=True)
class CosineSchedule(MaskSchedule):
    """``alpha_t = cos(pi t / 2)`` (weight ``(pi/2) sin / (1 - cos)``); the same bound as the
    linear schedule (schedule invariance), used to check it."""

    def alpha(self, t: Tensor) -> Tensor:
        return torch.cos(0.5 * math.pi * t)

    def dalpha(self, t: Tensor) -> Tensor:
        return -0.5 * math.pi * torch.sin(0.5 * math.pi * t)


def forward_mask(
    x0: Tensor, alpha: Tensor, mask_id: int, generator: torch.Generator | None = None
) -> Tensor:
    """A draw of ``z_t ~ q(z_t | x0)``: each token kept with probability ``alpha`` (one per row,
    shape (B,), or broadcastable to x0), else replaced by ``mask_id``."""
    a = torch.as_tensor(alpha, dtype=torch.float64, device=x0.device)
    if a.dim() == 1 and x0.dim() > 1:
        a = a.view(-1, *([1] * (x0.dim() - 1)))
    u = torch.rand(x0.shape, generator=generator, dtype=torch.float64, device=x0.device)
    return torch.where(u < a, x0, torch.full_like(x0, mask_id))


def subs_log_probs(logits: Tensor, z: Tensor, mask_id: int) -> Tensor:
    """SUBS (MDLM Sec. 3.2.3): log-softmax with the [MASK] logit at -inf; unmasked positions of
    ``z`` become the one-hot of ``z`` (log-prob 0 on it, -inf elsewhere)."""
    logits = logits.clone()
    logits[..., mask_id] = -math.inf
    logp = torch.log_softmax(logits, dim=-1)
    copy = torch.full_like(logp, -math.inf).scatter_(-1, z.unsqueeze(-1), 0.0)
    return torch.where((z != mask_id).unsqueeze(-1), copy, logp)


def stratified_times(
    n: int, generator: torch.Generator | None = None, t_min: float = 0.0, device=None
) -> Tensor:
    """Antithetic / stratified times (MDLM ``_sample_t``): ``t_i = ((u + i) / n)`` for one
    ``u ~ U[0, 1)``, i = 0..n-1 (one draw in each of n equal strata), mapped to
    ``[t_min, 1]``; float64, never exactly 0 when t_min = 0 (u = 0 is moved to the tiny 1e-12)."""
    u = torch.rand((), generator=generator, dtype=torch.float64, device=device)
    t = (u + torch.arange(n, dtype=torch.float64, device=device)) / n
    t = t.clamp_min(1e-12)
    return t_min + (1 - t_min) * t


def masked_diffusion_bound(
    net: Network,
    x0: Tensor,
    mask_id: int,
    t: Tensor,
    schedule: MaskSchedule | None = None,
    generator: torch.Generator | None = None,
    loss_mask: Tensor | None = None,
) -> Tensor:
    """One-sample estimate of the NELBO per sequence (B,) in nats, at times ``t`` (B,):
    ``w(t) * sum over masked positions of -log p_theta(x^l | z_t)`` with SUBS. Unbiased for the
    bound when ``t`` is uniform (or stratified) on [0, 1]. ``loss_mask`` (B, L), 1 = counts."""
    schedule = schedule or LinearSchedule()
    x0 = x0.long()
    t = torch.as_tensor(t, dtype=torch.float64, device=x0.device).reshape(-1)
    z = forward_mask(x0, schedule.alpha(t), mask_id, generator)
    logp = subs_log_probs(net(z), z, mask_id)
    nll = -logp.gather(-1, x0.unsqueeze(-1)).squeeze(-1)  # 0 where z is unmasked
    masked = z == mask_id
    nll = torch.where(masked, nll, torch.zeros_like(nll))
    if loss_mask is not None:
        nll = nll * loss_mask.to(nll.dtype)
    total = nll.sum(-1)
    weighted = schedule.weight(t).to(nll.dtype) * total
    return torch.where(masked.any(-1), weighted, torch.zeros_like(weighted))  # t = 0: nothing


def masked_diffusion_loss(
    net: Network,
    x0: Tensor,
    mask_id: int,
    generator: torch.Generator | None = None,
    schedule: MaskSchedule | None = None,
    t_min: float = 0.0,
    loss_mask: Tensor | None = None,
) -> Tensor:
    """The training loss: the bound per token (nats), averaged over the batch, with stratified
    times across the batch (MDLM's antithetic sampling). A plain function of a batch of ids
    (B, L), so any trainer can call it: ``masked_diffusion_loss(net, batch.x0, mask_id, g)``."""
    t = stratified_times(x0.shape[0], generator, t_min, device=x0.device)
    bound = masked_diffusion_bound(net, x0, mask_id, t, schedule, generator, loss_mask)
    tokens = x0[0].numel() if loss_mask is None else loss_mask.sum() / x0.shape[0]
    return bound.mean() / tokens


def masked_diffusion_bound_by_count(
    net: Network,
    x0: Tensor,
    mask_id: int,
    k: Tensor,
    generator: torch.Generator | None = None,
) -> Tensor:
    """One-sample estimate of the same NELBO (B,) with ``k`` (B,) masked positions (a uniform
    subset of that size): ``(L / k) sum_{l in M} -log p_theta(x^l | x_{not M})``, unbiased for
    ``k`` uniform on {1..L}. Integrating t out of the time form, ``NELBO = sum_k (1/k)
    E_{|M|=k}[...]`` (the Beta integral of :func:`enumerated_bound`; Ou et al. 2024's any-order
    form), for any schedule with ``alpha_0 = 1, alpha_1 = 0``. Its weights are bounded by L,
    whereas the time form's ``1/t`` has a variance that grows like ``log(1/t_min)``."""
    x0 = x0.long()
    b, length = x0.shape
    k = torch.as_tensor(k, device=x0.device).reshape(-1).long()
    if bool(((k < 1) | (k > length)).any()):
        raise ValueError(f"k must lie in 1..{length}")
    score = torch.rand(x0.shape, generator=generator, dtype=torch.float64, device=x0.device)
    rank = score.argsort(-1).argsort(-1)  # a uniform random order of the positions
    masked = rank < k.unsqueeze(-1)
    z = torch.where(masked, torch.full_like(x0, mask_id), x0)
    logp = subs_log_probs(net(z), z, mask_id)
    nll = -logp.gather(-1, x0.unsqueeze(-1)).squeeze(-1)
    nll = torch.where(masked, nll, torch.zeros_like(nll))
    return (length / k).to(nll.dtype) * nll.sum(-1)


@dataclass(frozen=True)
class BoundEstimate:
    """The NELBO per sequence (nats): its mean over K stratified draws, a standard error and the
    draws (B, K)."""

    nelbo: Tensor
    stderr: Tensor
    draws: Tensor


@torch.no_grad()
def bound_estimate(
    net: Network,
    x0: Tensor,
    mask_id: int,
    draws: int = 32,
    generator: torch.Generator | None = None,
    schedule: MaskSchedule | None = None,
    estimator: str = "time",
) -> BoundEstimate:
    """The NELBO of each sequence of ``x0`` (B, L) from ``draws`` stratified draws per sequence.

    ``estimator="time"``: one time in each of K strata of [0, 1] (a fresh u per sequence),
    :func:`masked_diffusion_bound`. ``estimator="count"``: the number of masked positions
    stratified over {1..L} (``k_j = 1 + floor(L (u + j) / K)``), :func:`masked_diffusion_bound_by_count`
    -- the same bound, bounded weights (recommended for reporting). The standard error is
    ``std(draws) / sqrt(K)``, the i.i.d. formula, which is conservative for stratified draws
    (stratification only lowers the variance of the mean). Bits/char = nelbo / (L ln 2)."""
    if draws < 2:
        raise ValueError("draws must be >= 2 for a standard error")
    if estimator not in ("time", "count"):
        raise ValueError(f"estimator must be 'time' or 'count', got {estimator!r}")
    x0 = x0.long()
    b, length = x0.shape
    t = torch.stack([stratified_times(draws, generator, device=x0.device) for _ in range(b)], 1)
    rows = []
    for j in range(draws):
        if estimator == "time":
            rows.append(masked_diffusion_bound(net, x0, mask_id, t[j], schedule, generator))
        else:
            k = (1 + torch.floor(length * t[j])).clamp(1, length)
            rows.append(masked_diffusion_bound_by_count(net, x0, mask_id, k, generator))
    out = torch.stack([r.double() for r in rows], 1)
    return BoundEstimate(out.mean(1), out.std(1) / math.sqrt(draws), out)


@torch.no_grad()
def enumerated_bound(net: Network, x0: Tensor, mask_id: int) -> Tensor:
    """The continuous-time NELBO (B,) computed exactly, for short sequences (2^L network calls).

    For ``alpha_t = 1 - t`` a set M of k masked positions has probability ``t^k (1-t)^(L-k)``,
    so ``NELBO = sum_M B(k, L-k+1) sum_{l in M} -log p(x^l | x_{not M})`` with the Beta integral
    ``int_0^1 t^(k-1) (1-t)^(L-k) dt = (k-1)! (L-k)! / L!``. That is the any-order
    autoregressive expectation over uniformly random orders (Ou et al. 2024), each order's
    chain rule being ``-log p(x)`` exactly when the conditionals are exact."""
    x0 = x0.long()
    b, length = x0.shape
    total = torch.zeros(b, dtype=torch.float64, device=x0.device)
    for k in range(1, length + 1):
        beta = math.factorial(k - 1) * math.factorial(length - k) / math.factorial(length)
        for subset in itertools.combinations(range(length), k):
            z = x0.clone()
            z[:, list(subset)] = mask_id
            logp = subs_log_probs(net(z), z, mask_id).double()
            nll = -logp.gather(-1, x0.unsqueeze(-1)).squeeze(-1)
            total += beta * nll[:, list(subset)].sum(-1)
    return total
