"""Attention backbones over sets: cross-attention, a Perceiver IO encoder/decoder and a gated
cross-channel attention block (pure torch).

* :class:`CrossAttention` -- a pre-norm transformer block in which queries ``x`` (B, Q, D)
  attend to a context set (B, M, C) with an optional validity mask (B, M): padded context
  tokens change nothing (Vaswani et al. 2017, Sec. 3.2; self-attention is ``context = x``).
* :class:`PerceiverEncoder` -- a learned latent array (L, D) reads any number of input tokens
  by cross-attention, then self-attends (Jaegle et al. 2021, "Perceiver", Sec. 2; Perceiver IO,
  Jaegle et al. 2022, Sec. 2): invariant to the order of the input set.
* :class:`PerceiverDecoder` -- output queries (B, Q, Dq) cross-attend to the latents and are
  mapped to outputs (Perceiver IO's decoder, Sec. 2): equivariant over the queries, so a
  field can be decoded at arbitrary positions.
* :class:`PerceiverIO` -- the two together: ``(tokens, valid, queries) -> (B, Q, out)``.
* :class:`CrossChannelAttention` -- attention across the channel axis of a multi-channel field
  at every position, added through a sigmoid gate (a gated residual in the style of gated
  attention units; the gate starts nearly closed so the block starts near the identity).
* :class:`FourierPositions` -- sin/cos features of positions in [0, 1]^d at octave frequencies
  (the Perceiver's Fourier position encoding, Sec. 3.1 of Jaegle et al. 2021).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional

__all__ = [
    "CrossAttention", "CrossChannelAttention", "FourierPositions", "PerceiverDecoder",
    "PerceiverEncoder", "PerceiverIO",
]  # fmt: skip


def _check_heads(dim: int, heads: int) -> None:
    if dim < 1 or heads < 1 or dim % heads:
        raise ValueError(f"dim {dim} must be a positive multiple of heads {heads}")


class FourierPositions(nn.Module):
    """``[x, sin(2^k pi x), cos(2^k pi x)]`` for k < ``bands`` of positions (..., d) in
    [0, 1]: (..., d (1 + 2 bands))."""

    def __init__(self, bands: int = 6):
        super().__init__()
        if bands < 0:
            raise ValueError(f"bands must be >= 0, got {bands}")
        self.bands = int(bands)
        self.register_buffer("freqs", math.pi * 2.0 ** torch.arange(self.bands), persistent=False)

    def out_dim(self, d: int = 1) -> int:
        return d * (1 + 2 * self.bands)

    def forward(self, x: Tensor) -> Tensor:
        angles = (x[..., None] * self.freqs.to(x)).flatten(-2)
        return torch.cat([x, torch.sin(angles), torch.cos(angles)], dim=-1)


class CrossAttention(nn.Module):
    """Pre-norm block: ``x + Attn(LN x, LN context)``, then ``+ MLP(LN x)``.

    ``x`` (B, Q, dim), ``context`` (B, M, context_dim) (default: ``x``, self-attention),
    ``valid`` (B, M) bool (True = a real token). A row with no valid token gets no attention
    update (only the MLP). The attention is ``scaled_dot_product_attention`` with ``heads``
    heads.
    """

    def __init__(
        self, dim: int, context_dim: int | None = None, heads: int = 4, mlp_ratio: int = 2
    ):
        super().__init__()
        _check_heads(dim, heads)
        context_dim = dim if context_dim is None else int(context_dim)
        self.heads = int(heads)
        self.norm_q, self.norm_kv = nn.LayerNorm(dim), nn.LayerNorm(context_dim)
        self.q, self.kv = nn.Linear(dim, dim), nn.Linear(context_dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, mlp_ratio * dim), nn.GELU(),
                                 nn.Linear(mlp_ratio * dim, dim))  # fmt: skip

    def _split(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        return x.reshape(b, n, self.heads, d // self.heads).transpose(1, 2)

    def forward(
        self, x: Tensor, context: Tensor | None = None, valid: Tensor | None = None
    ) -> Tensor:
        ctx = x if context is None else context
        if x.dim() != 3 or ctx.dim() != 3 or ctx.shape[0] != x.shape[0]:
            raise ValueError(f"x (B, Q, D) and context (B, M, C) expected, got {tuple(x.shape)} "
                             f"and {tuple(ctx.shape)}")  # fmt: skip
        q = self._split(self.q(self.norm_q(x)))
        k, v = (self._split(t) for t in self.kv(self.norm_kv(ctx)).chunk(2, dim=-1))
        mask, empty = None, None
        if valid is not None:
            if valid.shape != ctx.shape[:2]:
                raise ValueError(
                    f"valid must be (B, M) = {tuple(ctx.shape[:2])}, got {tuple(valid.shape)}"
                )
            valid = valid.bool()
            empty = ~valid.any(dim=1)  # rows without a token: attend to anything, then drop it
            mask = (valid | empty[:, None])[:, None, None, :]
        out = functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        out = self.proj(out.transpose(1, 2).reshape(x.shape))
        if empty is not None:
            out = out.masked_fill(empty[:, None, None], 0.0)
        x = x + out
        return x + self.mlp(x)


class PerceiverEncoder(nn.Module):
    """A latent array (``latents``, ``dim``) reads a token set (B, M, in_dim) with validity
    mask (B, M) by one cross-attention, then ``depth`` self-attention blocks: (B, latents, dim),
    invariant to permutations of the tokens."""

    def __init__(
        self, in_dim: int, dim: int = 64, latents: int = 16, depth: int = 1, heads: int = 4
    ):
        super().__init__()
        if latents < 1 or depth < 0:
            raise ValueError(f"need latents >= 1 and depth >= 0, got {latents} and {depth}")
        self.latents = nn.Parameter(torch.randn(latents, dim) * 0.02)
        self.embed = nn.Linear(in_dim, dim)
        self.read = CrossAttention(dim, dim, heads)
        self.blocks = nn.ModuleList(CrossAttention(dim, dim, heads) for _ in range(depth))

    def forward(
        self, tokens: Tensor, valid: Tensor | None = None, bias: Tensor | None = None
    ) -> Tensor:
        """``bias`` (B, dim), e.g. a time embedding, is added to every latent before reading."""
        z = self.latents.expand(tokens.shape[0], -1, -1)
        z = z if bias is None else z + bias[:, None]
        z = self.read(z, self.embed(tokens), valid)
        for block in self.blocks:
            z = block(z)
        return z


class PerceiverDecoder(nn.Module):
    """Queries (B, Q, query_dim) cross-attend to latents (B, L, dim) and are mapped to
    (B, Q, out_dim); each query's output depends on the latents and that query alone."""

    def __init__(self, query_dim: int, dim: int = 64, out_dim: int = 1, heads: int = 4):
        super().__init__()
        self.embed = nn.Linear(query_dim, dim)
        self.read = CrossAttention(dim, dim, heads)
        self.out = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, out_dim))

    def forward(self, queries: Tensor, latents: Tensor) -> Tensor:
        return self.out(self.read(self.embed(queries), latents))


class PerceiverIO(nn.Module):
    """Perceiver IO over (position, value) tokens: positions (B, M, d) in [0, 1], values
    (B, M, c) and validity (B, M) are encoded into latents, which are decoded at query
    positions (B, Q, d): (B, Q, out_dim)."""

    def __init__(self, pos_dim: int = 1, value_dim: int = 1, out_dim: int = 1, dim: int = 64,
                 latents: int = 16, depth: int = 1, heads: int = 4, bands: int = 6):  # fmt: skip
        super().__init__()
        self.fourier = FourierPositions(bands)
        p = self.fourier.out_dim(pos_dim)
        self.encoder = PerceiverEncoder(p + value_dim, dim, latents, depth, heads)
        self.decoder = PerceiverDecoder(p, dim, out_dim, heads)

    def encode(self, pos: Tensor, values: Tensor, valid: Tensor | None = None) -> Tensor:
        return self.encoder(torch.cat([self.fourier(pos), values], dim=-1), valid)

    def forward(self, pos: Tensor, values: Tensor, valid: Tensor | None, queries: Tensor) -> Tensor:
        return self.decoder(self.fourier(queries), self.encode(pos, values, valid))


class CrossChannelAttention(nn.Module):
    """Gated attention across channels: ``x`` (B, C, N, dim), C channels (fields, variables)
    with ``dim`` features at each of N positions; at every position the C channel tokens
    self-attend and the update enters through ``sigmoid(gate(x))`` elementwise. Equivariant
    to permutations of the channels; the gate's bias starts at ``gate_bias`` (nearly closed)."""

    def __init__(self, dim: int, heads: int = 4, gate_bias: float = -2.0):
        super().__init__()
        self.attn = CrossAttention(dim, dim, heads)
        self.gate = nn.Linear(dim, dim)
        nn.init.zeros_(self.gate.weight)
        nn.init.constant_(self.gate.bias, gate_bias)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"x must be (B, C, N, dim), got {tuple(x.shape)}")
        b, c, n, d = x.shape
        tokens = x.permute(0, 2, 1, 3).reshape(b * n, c, d)
        update = (self.attn(tokens) - tokens).reshape(b, n, c, d).permute(0, 2, 1, 3)
        return x + torch.sigmoid(self.gate(x)) * update
