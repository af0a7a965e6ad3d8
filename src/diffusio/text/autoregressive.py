"""The autoregressive baseline's exact likelihood: next-token cross-entropy with a BOS input
(GPT-style; Radford et al. 2019, Brown et al. 2020). The BOS id is the vocabulary's reserved id
(the same id is [MASK] for masked diffusion), and its logit is set to -inf, so a sequence's
probability sums to one over real tokens."""

from __future__ import annotations

import torch
from torch import Tensor

from .masked import Network

__all__ = ["ar_inputs", "ar_loss", "ar_nll"]


def ar_inputs(x0: Tensor, bos_id: int) -> Tensor:
    """``[BOS, x_1, ..., x_{L-1}]`` (B, L): the inputs whose logits predict ``x_1..x_L``."""
    x0 = x0.long()
    bos = torch.full_like(x0[:, :1], bos_id)
    return torch.cat([bos, x0[:, :-1]], 1)


def ar_nll(net: Network, x0: Tensor, bos_id: int, loss_mask: Tensor | None = None) -> Tensor:
    """Exact ``-log p(x)`` per sequence (B,) in nats (no outside context)."""
    x0 = x0.long()
    logits = net(ar_inputs(x0, bos_id)).clone()
    logits[..., bos_id] = -torch.inf
    nll = -torch.log_softmax(logits, -1).gather(-1, x0.unsqueeze(-1)).squeeze(-1)
    if loss_mask is not None:
        nll = nll * loss_mask.to(nll.dtype)
    return nll.sum(-1)


def ar_loss(net: Network, x0: Tensor, bos_id: int, loss_mask: Tensor | None = None) -> Tensor:
    """The training loss: mean next-token cross-entropy per token (nats)."""
    tokens = x0[0].numel() if loss_mask is None else loss_mask.sum() / x0.shape[0]
    return ar_nll(net, x0, bos_id, loss_mask).mean() / tokens
