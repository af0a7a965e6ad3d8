"""Latent diffusion's cross-attention block for image feature maps: ``SpatialTransformer``.

Rombach et al. 2022 ("High-Resolution Image Synthesis with Latent Diffusion Models", Sec. 3.3)
condition the U-Net on a token sequence ``tau_theta(y)`` (N, L, D_ctx) -- a caption's text-encoder
states -- by cross-attention, ``Attention(Q, K, V) = softmax(Q K^T / sqrt(d)) V`` with
``Q = W_Q phi(z_t)``, ``K = W_K tau(y)``, ``V = W_V tau(y)`` (their eq. 2 and 3, ``phi(z_t)``
the flattened feature map). The block follows the official ``ldm/modules/attention.py``::

    h = proj_in(GroupNorm(x))                 1x1 conv, C -> inner = heads * head_dim
    h = h reshaped to (N, H W, inner)
    depth x [ h = h + SelfAttn(LN h)           (BasicTransformerBlock: attn1)
              h = h + CrossAttn(LN h, context, mask)                 (attn2)
              h = h + GEGLU-FeedForward(LN h) ]                      (ff)
    out = x + proj_out(h reshaped to (N, inner, H, W))   proj_out zero-initialised

so a freshly built block is exactly the identity. GEGLU is Shazeer 2020 ("GLU Variants Improve
Transformer", eq. 6 with GELU): ``(x W + b) * GELU(x V + c)``, inner width ``4 inner``.

Context conventions (those of :class:`~diffusio.nets.text_encoders.TextEncoding`): ``context``
(N, L, D_ctx) and ``mask`` (N, L), True (or non-zero) = a real token. Padded tokens receive no
attention weight, so appending padding changes nothing. A row whose mask is all False -- the
null caption of classifier-free guidance -- attends to nothing: its cross-attention update is
exactly zero (no NaN from a softmax over an empty set); ``context=None`` is that for every row.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.functional import gelu, scaled_dot_product_attention

__all__ = ["GEGLU", "BasicTransformerBlock", "FeedForward", "MaskedAttention",
           "SpatialTransformer", "context_mask"]  # fmt: skip


def group_norm(num_channels: int, groups: int = 32, eps: float = 1e-6) -> nn.GroupNorm:
    """GroupNorm with the largest group count <= ``groups`` dividing ``num_channels`` (LDM's
    ``Normalize`` is ``GroupNorm(32, C, eps=1e-6)``)."""
    g = max(d for d in range(1, min(groups, num_channels) + 1) if num_channels % d == 0)
    return nn.GroupNorm(g, num_channels, eps=eps)


def context_mask(context: Tensor, mask: Tensor | None) -> Tensor:
    """``mask`` as a bool (N, L) tensor (non-zero = a real token; all True when None), checked
    against ``context`` (N, L, D). A float mask (e.g. the zeros that
    :func:`~diffusio.core.steering.null_condition` writes for a null of 0.0) is read as bool."""
    if context.dim() != 3:
        raise ValueError(f"context must be (N, L, D) tokens, got shape {tuple(context.shape)}")
    if mask is None:
        return torch.ones(context.shape[:2], dtype=torch.bool, device=context.device)
    mask = mask.to(context.device)
    if mask.shape != context.shape[:2]:
        raise ValueError(f"context mask must be (N, L) = {tuple(context.shape[:2])}, got "
                         f"{tuple(mask.shape)}")  # fmt: skip
    return mask if mask.dtype == torch.bool else mask != 0


class MaskedAttention(nn.Module):
    """Multi-head attention of queries (N, Q, dim) to a context (N, L, context_dim) (itself when
    None) with a key padding mask (N, L); LDM's ``CrossAttention``: bias-free q, k, v
    projections, ``to_out`` a Linear + Dropout. Rows without a valid key get a zero output."""

    def __init__(self, dim: int, context_dim: int | None = None, heads: int = 8,
                 head_dim: int = 64, dropout: float = 0.0):  # fmt: skip
        super().__init__()
        inner, context_dim = heads * head_dim, dim if context_dim is None else context_dim
        self.heads = int(heads)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(dropout))

    def _split(self, x: Tensor) -> Tensor:
        n, length, d = x.shape
        return x.reshape(n, length, self.heads, d // self.heads).transpose(1, 2)

    def forward(self, x: Tensor, context: Tensor | None = None,
                mask: Tensor | None = None) -> Tensor:  # fmt: skip
        ctx = x if context is None else context
        q, k, v = self._split(self.to_q(x)), self._split(self.to_k(ctx)), self._split(self.to_v(ctx))
        attn_mask, empty = None, None
        if mask is not None:
            empty = ~mask.any(dim=1)  # (N,): attend to every key (finite), then zero the update
            attn_mask = (mask | empty[:, None])[:, None, None, :]
        out = scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        out = self.to_out(out.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1))
        return out if empty is None else out.masked_fill(empty[:, None, None], 0.0)


class GEGLU(nn.Module):
    """``(x W + b) * GELU(x V + c)`` (Shazeer 2020), one Linear to twice ``dim_out``."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, 2 * dim_out)

    def forward(self, x: Tensor) -> Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * gelu(gate)


class FeedForward(nn.Sequential):
    """LDM's ``FeedForward(glu=True)``: GEGLU to ``mult * dim``, Dropout, Linear back to dim."""

    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.0):
        super().__init__(GEGLU(dim, mult * dim), nn.Dropout(dropout), nn.Linear(mult * dim, dim))


class BasicTransformerBlock(nn.Module):
    """Pre-LayerNorm self-attention, cross-attention and GEGLU feed-forward, each residual."""

    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: int,
                 dropout: float = 0.0):  # fmt: skip
        super().__init__()
        self.attn1 = MaskedAttention(dim, None, heads, head_dim, dropout)
        self.attn2 = MaskedAttention(dim, context_dim, heads, head_dim, dropout)
        self.ff = FeedForward(dim, dropout=dropout)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(self, x: Tensor, context: Tensor | None = None,
                mask: Tensor | None = None) -> Tensor:  # fmt: skip
        x = x + self.attn1(self.norm1(x))
        if context is not None:  # no context: the null caption for every row, a zero update
            x = x + self.attn2(self.norm2(x), context, mask)
        return x + self.ff(self.norm3(x))


class SpatialTransformer(nn.Module):
    """LDM's ``SpatialTransformer`` (module docstring): ``block(x, context, mask)`` for feature
    maps x (N, C, H, W), tokens ``context`` (N, L, context_dim), ``mask`` (N, L).

    Args:
        channels: C.
        context_dim: the tokens' width D_ctx.
        heads, head_dim: attention heads and their width (inner width ``heads * head_dim``;
            default ``channels // heads``, which must then divide evenly).
        depth: transformer blocks.
        dropout: inside the attention outputs and the feed-forward.
        groups: GroupNorm groups (lowered to a divisor of C).
    """

    def __init__(self, channels: int, context_dim: int, heads: int = 4,
                 head_dim: int | None = None, depth: int = 1, dropout: float = 0.0,
                 groups: int = 32):  # fmt: skip
        super().__init__()
        if head_dim is None:
            head_dim = channels // heads if heads >= 1 and channels % heads == 0 else 0
        for label, value in (("channels", channels), ("context_dim", context_dim),
                             ("heads", heads), ("head_dim", head_dim), ("depth", depth)):  # fmt: skip
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"SpatialTransformer {label} must be an integer >= 1, got {value!r}")
        inner = heads * head_dim
        self.channels, self.context_dim = int(channels), int(context_dim)
        self.norm = group_norm(channels, groups)
        self.proj_in = nn.Conv2d(channels, inner, 1)
        self.blocks = nn.ModuleList(
            BasicTransformerBlock(inner, heads, head_dim, context_dim, dropout) for _ in range(depth)
        )
        self.proj_out = nn.Conv2d(inner, channels, 1)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: Tensor, context: Tensor | None = None,
                mask: Tensor | None = None) -> Tensor:  # fmt: skip
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"SpatialTransformer expected (N, {self.channels}, H, W), got "
                             f"{tuple(x.shape)}")  # fmt: skip
        if context is not None:
            if context.dim() != 3 or context.shape[0] != x.shape[0] or \
                    context.shape[2] != self.context_dim:  # fmt: skip
                raise ValueError(f"context must be (N, L, {self.context_dim}) with N = "
                                 f"{x.shape[0]}, got {tuple(context.shape)}")  # fmt: skip
            mask = context_mask(context, mask)
            context = context.to(x.dtype)
        elif mask is not None:
            raise ValueError("SpatialTransformer got a context mask without a context")
        n, c, height, width = x.shape
        h = self.proj_in(self.norm(x))
        h = h.flatten(2).transpose(1, 2)  # (N, H W, inner)
        for block in self.blocks:
            h = block(h, context, mask)
        h = h.transpose(1, 2).reshape(n, -1, height, width)
        return x + self.proj_out(h)
