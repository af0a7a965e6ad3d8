"""One small transformer for both language models: token + learned position embeddings, pre-norm
blocks (LayerNorm -> multi-head self-attention, LayerNorm -> GELU MLP, residuals; GPT-2 style,
Radford et al. 2019), a final LayerNorm and a linear head over the vocabulary. Attention also
gets rotary embeddings of queries and keys (RoFormer, Su et al. 2021; MDLM's DiT uses them): a
bidirectional model has no other source of order than the position table, and with that table
initialised near zero it first learns a bag of characters (a unigram plateau, measured: ~4.8
bits/char for 400+ steps at width 128) before it learns where they are; rotary attention sees
relative offsets from the first step, the table keeps absolute positions (block edges).

``causal=True`` is the autoregressive model (the logits at position i see positions <= i only:
next-token prediction from ``[BOS, x_1, ...]``); ``causal=False`` is the masked-diffusion
denoiser (bidirectional, no time input, as MDLM's ``time_conditioning=False``; Sahoo et al.
2024). The flag changes only the attention mask, so both settings have the same parameters.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional

__all__ = ["TextTransformer", "count_parameters"]


def rotary_tables(n: int, head_dim: int, device: torch.device | None = None) -> tuple[Tensor, Tensor]:
    """cos / sin (n, head_dim) of RoPE: frequencies ``10000^(-2i / head_dim)`` (Su et al. 2021,
    eq. 34), each repeated for the two halves that :func:`rotate` pairs up."""
    inv = 10000.0 ** (-torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)
    angles = torch.arange(n, device=device, dtype=torch.float32)[:, None] * inv[None, :]
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate pairs (x_i, x_{i + d/2}) of the last axis by the position's angles."""
    half = x.shape[-1] // 2
    turned = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + turned * sin


class _Block(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads = n_heads
        self.dropout = dropout
        self.ln1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model)
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, causal: bool, cos: Tensor, sin: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        q, k, v = (h.view(b, n, self.n_heads, -1).transpose(1, 2) for h in (q, k, v))
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        p = self.dropout if self.training else 0.0
        a = functional.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=causal)
        x = x + self.drop(self.proj(a.transpose(1, 2).reshape(b, n, d)))
        return x + self.drop(self.mlp(self.ln2(x)))


class TextTransformer(nn.Module):
    """``forward(ids (B, n) int64) -> logits (B, n, vocab_size)``, n <= ``max_length``.

    Args:
        vocab_size: ids including the reserved [MASK]/BOS id (``Vocabulary.size``).
        max_length: the longest input (the block length L).
        d_model, n_layers, n_heads: width, depth, attention heads (d_model % n_heads == 0).
        causal: True = autoregressive (causal mask), False = masked diffusion (bidirectional).
        dropout: on attention weights and residual branches (0 by default).
    """

    def __init__(
        self,
        vocab_size: int,
        max_length: int,
        d_model: int = 128,
        n_layers: int = 4,
        n_heads: int = 4,
        causal: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
        if d_model % n_heads or (d_model // n_heads) % 2:
            raise ValueError(f"d_model {d_model} / n_heads {n_heads} must be an even head width")
        self.vocab_size, self.max_length, self.causal = vocab_size, max_length, causal
        self.head_dim = d_model // n_heads
        self.config = dict(
            vocab_size=vocab_size, max_length=max_length, d_model=d_model, n_layers=n_layers,
            n_heads=n_heads, causal=causal, dropout=dropout,
        )  # fmt: skip
        self.tok = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Embedding(max_length, d_model)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(_Block(d_model, n_heads, dropout) for _ in range(n_layers))
        self.ln = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)
        self.apply(self._init)
        for block in self.blocks:  # GPT-2: residual projections scaled by 1/sqrt(2 n_layers)
            for lin in (block.proj, block.mlp[2]):
                nn.init.normal_(lin.weight, std=0.02 / math.sqrt(2 * n_layers))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(self, ids: Tensor) -> Tensor:
        ids = ids.long()
        n = ids.shape[1]
        if n > self.max_length:
            raise ValueError(f"input of length {n} exceeds max_length {self.max_length}")
        cos, sin = rotary_tables(n, self.head_dim, ids.device)
        x = self.drop(self.tok(ids) + self.pos(torch.arange(n, device=ids.device)))
        for block in self.blocks:
            x = block(x, self.causal, cos, sin)
        return self.head(self.ln(x))


def count_parameters(module: nn.Module) -> int:
    """The number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
