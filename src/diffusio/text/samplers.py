"""Samplers for masked diffusion and the autoregressive baseline. Categorical draws are made in
float64 by inverse CDF (float32 categorical sampling lowers the effective temperature: Zheng et
al. 2024, on MDLM's float32 Gumbel sampler). Samplers keep no state between calls; all
randomness comes from the ``generator`` passed in.

* :func:`ancestral_sample` -- D3PM/MDLM ancestral sampling with T steps (MDLM ``ddpm``; Austin
  et al. 2021; Sahoo et al. 2024 Sec. 3.3): from t to s < t a masked position is revealed with
  probability ``(alpha_s - alpha_t) / (1 - alpha_t)`` by a draw from ``p_theta(x | z_t)``;
  revealed positions are kept. ``cache=True`` is MDLM's ``ddpm_cache``: the network is
  time-agnostic, so a sequence that changed nothing in a step reuses its previous prediction.
* :func:`one_token_sample` -- one masked position (uniformly chosen) revealed per network call:
  the any-order autoregressive sampler, exact for exact conditionals (cf. the first-hitting
  sampler, Zheng et al. 2024, which also reveals one token per call).
* :func:`ar_sample` -- left-to-right sampling of an AR model at a temperature (1 = the model).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .masked import LinearSchedule, MaskSchedule, Network, subs_log_probs

__all__ = [
    "SampleResult",
    "ancestral_sample",
    "ar_sample",
    "one_token_sample",
    "sample_categorical",
]


@dataclass(frozen=True)
class SampleResult:
    """Sampled ids (n, L), network evaluations per sequence (n,) and forward passes made."""

    tokens: Tensor
    calls: Tensor
    forward_passes: int


def sample_categorical(probs: Tensor, u: Tensor) -> Tensor:
    """Inverse-CDF draw from ``probs`` (..., V) (cast to float64) with uniforms ``u`` (...);
    never returns a zero-probability category."""
    p = probs.double()
    cdf = p.cumsum(-1)
    v = u.double().unsqueeze(-1) * cdf[..., -1:]
    idx = (cdf <= v).sum(-1)
    last = p.shape[-1] - 1 - (p.flip(-1) > 0).to(torch.int64).argmax(-1)
    return torch.minimum(idx, last)


def _start(
    n: int, length: int, mask_id: int, prompt: Tensor | None, device: torch.device | None
) -> Tensor:
    """All-[MASK] ids (n, L), or ``prompt`` ((L,) or (n, L); mask_id = free) repeated: infilling
    conditions by fixing the prompt's tokens, which the SUBS parameterization carries over."""
    if prompt is None:
        return torch.full((n, length), mask_id, dtype=torch.int64, device=device)
    p = torch.as_tensor(prompt, dtype=torch.int64, device=device)
    p = p.expand(n, -1) if p.dim() == 1 else p
    if p.shape != (n, length):
        raise ValueError(
            f"prompt must have shape ({length},) or ({n}, {length}), got {tuple(p.shape)}"
        )
    return p.clone()


def _probs(net: Network, z: Tensor, mask_id: int) -> Tensor:
    logits = net(z).double()
    return subs_log_probs(logits, z, mask_id).exp()


@torch.no_grad()
def ancestral_sample(
    net: Network,
    n: int,
    length: int,
    mask_id: int,
    steps: int,
    generator: torch.Generator,
    schedule: MaskSchedule | None = None,
    cache: bool = False,
    prompt: Tensor | None = None,
    device: torch.device | None = None,
) -> SampleResult:
    """Ancestral sampling on the grid ``t_i = i / steps`` from t = 1 to 0. Every step draws two
    float64 uniforms per position (reveal, token) whether or not the network is called, so
    ``cache=True`` gives bit-identical samples to ``cache=False`` for a network whose output
    for a sequence does not depend on the other rows of the batch (the rows that changed are
    re-evaluated as a smaller batch). With ``alpha_0 = 1`` the last step reveals every remaining position."""
    if steps < 1:
        raise ValueError("steps must be >= 1")
    schedule = schedule or LinearSchedule()
    z = _start(n, length, mask_id, prompt, device)
    calls = torch.zeros(n, dtype=torch.int64)
    passes = 0
    probs: Tensor | None = None
    stale = torch.ones(n, dtype=torch.bool, device=z.device)
    grid = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    for i in range(steps):
        a_t, a_s = schedule.alpha(grid[i]), schedule.alpha(grid[i + 1])
        p_reveal = float((a_s - a_t) / (1 - a_t))
        u_reveal = torch.rand(z.shape, generator=generator, dtype=torch.float64, device=z.device)
        u_token = torch.rand(z.shape, generator=generator, dtype=torch.float64, device=z.device)
        masked = z == mask_id
        if not cache or probs is None:
            probs = _probs(net, z, mask_id)
            calls += 1
            passes += 1
        else:
            rows = (stale & masked.any(-1)).nonzero().squeeze(-1)
            if rows.numel():
                probs = probs.clone()
                probs[rows] = _probs(net, z[rows], mask_id)
                calls[rows.cpu()] += 1
                passes += 1
        reveal = masked & (u_reveal < p_reveal)
        z = torch.where(reveal, sample_categorical(probs, u_token), z)
        stale = reveal.any(-1)
    return SampleResult(z, calls, passes)


@torch.no_grad()
def one_token_sample(
    net: Network,
    n: int,
    length: int,
    mask_id: int,
    generator: torch.Generator,
    prompt: Tensor | None = None,
    device: torch.device | None = None,
) -> SampleResult:
    """Reveal one uniformly chosen masked position per sequence and network call, drawn from
    ``p_theta(x^l | z)``, until none is left (L calls for an unprompted sequence)."""
    z = _start(n, length, mask_id, prompt, device)
    calls = torch.zeros(n, dtype=torch.int64)
    passes = 0
    while True:
        masked = z == mask_id
        rows = masked.any(-1).nonzero().squeeze(-1)
        if rows.numel() == 0:
            break
        score = torch.rand(z.shape, generator=generator, dtype=torch.float64, device=z.device)
        u_token = torch.rand(n, generator=generator, dtype=torch.float64, device=z.device)
        zr, mr = z[rows], masked[rows]
        pos = torch.where(mr, score[rows], -1.0).argmax(-1)
        probs = _probs(net, zr, mask_id)
        p = probs[torch.arange(rows.numel(), device=z.device), pos]
        zr[torch.arange(rows.numel(), device=z.device), pos] = sample_categorical(p, u_token[rows])
        z[rows] = zr
        calls[rows.cpu()] += 1
        passes += 1
    return SampleResult(z, calls, passes)


@torch.no_grad()
def ar_sample(
    net: Network,
    n: int,
    length: int,
    bos_id: int,
    generator: torch.Generator,
    temperature: float = 1.0,
    prompt: Tensor | None = None,
    device: torch.device | None = None,
) -> SampleResult:
    """Left-to-right sampling of a causal network (inputs ``[BOS, x_1, ..., x_{j}]``, the logits
    at the last position give ``x_{j+1}``; the BOS logit is never drawn), at ``temperature``
    (1 = the model's own distribution, no annealing). ``prompt`` (P,) ids: a fixed prefix."""
    if temperature <= 0:
        raise ValueError("temperature must be > 0")
    x = torch.full((n, 1), bos_id, dtype=torch.int64, device=device)
    if prompt is not None:
        p = torch.as_tensor(prompt, dtype=torch.int64, device=x.device).reshape(1, -1)
        if p.shape[1] > length:
            raise ValueError(f"prompt of {p.shape[1]} tokens is longer than length {length}")
        x = torch.cat([x, p.expand(n, -1)], 1)
    calls = torch.zeros(n, dtype=torch.int64)
    passes = 0
    while x.shape[1] < length + 1:
        logits = net(x)[:, -1].double()
        logits[:, bos_id] = -torch.inf
        probs = torch.softmax(logits / temperature, -1)
        u = torch.rand(n, generator=generator, dtype=torch.float64, device=x.device)
        x = torch.cat([x, sample_categorical(probs, u).unsqueeze(1)], 1)
        calls += 1
        passes += 1
    return SampleResult(x[:, 1:], calls, passes)
