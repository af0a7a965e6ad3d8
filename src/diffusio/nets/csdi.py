"""CSDI's denoiser: transformers along time and features in DiffWave-style residual blocks.

``CSDINet(n_features)(x_t, t, observed=..., cond_mask=..., timestamps=None)`` maps noisy
windows x_t (N, K, L) -- K features, L time steps -- to the eps prediction (N, K, L), following
Tashiro et al. 2021 ("CSDI: Conditional Score-based Diffusion Models for Probabilistic Time
Series Imputation", arXiv:2107.03502, Sec. 4 and the appendix). Layout (C = ``channels``)::

    input  = [observed, (1 - cond_mask) x_t]  (conditional)  or  [x_t]  (unconditional)
    h      = ReLU(Conv1x1(input))                                                  width C
    e      = SiLU(Linear(SiLU(Linear(steps(t)))))                     diffusion step, width E
    side   = [sinusoid(timestamps) 128 | feature embedding 16 | cond_mask 1]  per (k, l)
    block  (x ``layers``):  y = h + Linear(e)
                            y = TransformerLayer over L for each (n, k)  (skipped if L == 1)
                            y = TransformerLayer over K for each (n, l)  (skipped if K == 1)
                            y = Conv1x1(y) + Conv1x1(side)                          width 2C
                            y = Conv1x1(sigmoid(y_gate) tanh(y_filter)) = [residual | skip]
                            h = (h + residual) / sqrt(2)
    out    = Conv1x1(ReLU(Conv1x1(sum(skips) / sqrt(layers))))   zero-initialised: 0 at init

A 1x1 convolution is a Kaiming-normal ``Linear`` on the channel-last tensor (N, K, L, C). The
transformer layers are torch's post-norm ``TransformerEncoderLayer`` (GELU, dropout 0.1: the
defaults the official code inherits; ``batch_first`` changes the memory layout, not the maths).
``conditional=False`` is the unconditional ablation (x_t alone, no mask in the side information,
as the official ``is_unconditional``); ``temporal``/``feature`` drop one transformer per block
(the Table 7 ablation).

Diffusion time. diffusio passes continuous t; a 50-step table puts step i = 1..T at t = i / T,
which the official code calls integer step ``s = i - 1``. The network embeds ``s = T t - 1``
(``num_steps`` = T) with 64 sin/cos pairs of frequencies w_j, j = 0..63:

* ``smooth`` (default): w_j = 10^(-4 j / 63) rad per step, DDPM's step embedding (Ho et al.
  2020, App. B) on the step count: adjacent steps one radian apart on the fastest pair, and a t
  between grid points (DPM-Solver++, DDIM) lands between its neighbouring steps.
* ``csdi``: w_j = 10^(4 j / 63), the official DiffWave-style table, exact at the grid times; its
  frequencies of up to 10^4 rad per step alias, so it means nothing off the grid: use it only
  with 50-step ancestral sampling on that grid.

Unlike the official code, the feature embedding ``nn.Embedding(K, 16)`` lives in the network (not
in ``CSDI_base``) and the last layer's bias is zeroed with its weight: the initial output is 0.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["STEP_EMBEDDINGS", "CSDINet", "timestamp_embedding"]

STEP_EMBEDDINGS = ("smooth", "csdi")


def _linear(n_in: int, n_out: int) -> nn.Linear:
    """A 1x1 convolution on channel-last features, Kaiming-normal as the official code."""
    layer = nn.Linear(n_in, n_out)
    nn.init.kaiming_normal_(layer.weight)
    return layer


def timestamp_embedding(timestamps: Tensor, dim: int) -> Tensor:
    """Transformer position encoding of timestamps (N, L) -> (N, L, dim) (Vaswani et al. 2017,
    Sec. 3.5; CSDI Sec. 4.3): sin at even, cos at odd indices, frequencies 10000^(-2i/dim)."""
    i = torch.arange(0, dim, 2, dtype=torch.float64, device=timestamps.device)
    args = timestamps.to(torch.float64)[..., None] * torch.pow(10000.0, -i / dim)
    out = torch.stack([torch.sin(args), torch.cos(args)], dim=-1).flatten(-2)
    return out.to(timestamps.dtype)


class CSDINet(nn.Module):
    """CSDI's eps-network ``net(x_t, t, *, observed, cond_mask, timestamps=None)``; see the
    module docstring. ``observed`` (the clean values, dropped outside ``cond_mask``: nothing
    there leaks, NaN included) and ``cond_mask`` (1 = conditioned on) have x_t's shape (N, K, L)
    and are required when ``conditional`` (the unconditional ablation ignores them);
    ``timestamps`` (N, L) or (L,) default to 0..L-1.

    Args:
        n_features: K, the number of features (rows of the feature embedding).
        channels, layers: residual width and number of residual blocks (paper: 64, 4).
        heads, ff_dim, dropout: of each transformer layer (8, 64, 0.1).
        diffusion_embedding_dim: width of the step table and its MLP (128).
        time_embedding_dim, feature_embedding_dim: side-information widths (128, 16).
        num_steps: T of the discrete schedule the step embedding counts in (50).
        step_embedding: ``smooth`` or ``csdi`` (see the module docstring).
        conditional: the two-channel conditional model (True) or the unconditional ablation.
        temporal, feature: keep the transformer along time / along features.
    """

    def __init__(
        self,
        n_features: int,
        channels: int = 64,
        layers: int = 4,
        heads: int = 8,
        ff_dim: int = 64,
        diffusion_embedding_dim: int = 128,
        time_embedding_dim: int = 128,
        feature_embedding_dim: int = 16,
        num_steps: int = 50,
        step_embedding: str = "smooth",
        conditional: bool = True,
        temporal: bool = True,
        feature: bool = True,
        dropout: float = 0.1,
    ):
        super().__init__()
        sizes = dict(n_features=n_features, channels=channels, layers=layers, heads=heads,
                     ff_dim=ff_dim, num_steps=num_steps,
                     feature_embedding_dim=feature_embedding_dim,
                     diffusion_embedding_dim=diffusion_embedding_dim,
                     time_embedding_dim=time_embedding_dim)  # fmt: skip
        for name, value in sizes.items():
            even = name in ("diffusion_embedding_dim", "time_embedding_dim")
            if int(value) != value or value < 1 + even or (even and value % 2):
                kind = "an even integer >= 2" if even else "a positive integer"
                raise ValueError(f"CSDINet: {name} must be {kind}, got {value!r}")
        if channels % heads:
            raise ValueError(f"CSDINet: heads ({heads}) must divide channels ({channels})")
        if step_embedding not in STEP_EMBEDDINGS:
            raise ValueError(f"CSDINet: step_embedding must be one of {STEP_EMBEDDINGS}, "
                             f"got {step_embedding!r}")  # fmt: skip
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"CSDINet: dropout must lie in [0, 1), got {dropout!r}")
        self.n_features, self.channels, self.num_steps = int(n_features), int(channels), num_steps
        self.time_embedding_dim, self.step_embedding = int(time_embedding_dim), step_embedding
        self.conditional, self.temporal = bool(conditional), bool(temporal)
        self.feature = bool(feature)
        self.diffusion_embedding_dim = E = int(diffusion_embedding_dim)
        C = self.channels
        self.step_mlp = nn.Sequential(nn.Linear(E, E), nn.SiLU(), nn.Linear(E, E), nn.SiLU())
        self.feature_embed = nn.Embedding(self.n_features, int(feature_embedding_dim))
        side_dim = self.time_embedding_dim + int(feature_embedding_dim) + int(self.conditional)
        self.input = _linear(2 if self.conditional else 1, C)
        self.blocks = nn.ModuleList(
            _Block(C, E, side_dim, int(heads), int(ff_dim), float(dropout), temporal, feature)
            for _ in range(int(layers))
        )
        self.out_hidden = _linear(C, C)
        self.out = nn.Linear(C, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def _steps(self, t: Tensor | float, n: int, like: Tensor) -> Tensor:
        """The sin/cos table of s = T t - 1 (N, E), computed in float64."""
        t = torch.as_tensor(t, device=like.device)
        t = t.expand(n) if t.dim() == 0 else t
        if t.shape != (n,):
            raise ValueError(f"CSDINet: t must be a scalar or of shape ({n},), got {list(t.shape)}")
        half = self.diffusion_embedding_dim // 2
        exponent = torch.arange(half, dtype=torch.float64, device=t.device) * 4 / max(half - 1, 1)
        freqs = 10.0 ** (exponent if self.step_embedding == "csdi" else -exponent)
        args = (self.num_steps * t.to(torch.float64) - 1.0)[:, None] * freqs
        return torch.cat([torch.sin(args), torch.cos(args)], dim=1).to(like.dtype)

    def _side(self, cond_mask: Tensor | None, timestamps: Tensor | None, x: Tensor) -> Tensor:
        """Side information (N, K, L, side_dim): time embedding, feature embedding, mask."""
        n, k, length = x.shape
        if timestamps is None:
            timestamps = torch.arange(length, dtype=x.dtype, device=x.device)
        timestamps = torch.as_tensor(timestamps, dtype=x.dtype, device=x.device)
        if timestamps.shape not in ((length,), (n, length)):
            raise ValueError(f"CSDINet: timestamps must have shape ({n}, {length}) or "
                             f"({length},), got {tuple(timestamps.shape)}")  # fmt: skip
        time = timestamp_embedding(timestamps.expand(n, length), self.time_embedding_dim)
        parts = [time[:, None].expand(n, k, length, -1),
                 self.feature_embed.weight[None, :, None].expand(n, k, length, -1)]  # fmt: skip
        if self.conditional:
            parts.append(cond_mask[..., None])
        return torch.cat(parts, dim=-1)

    def forward(
        self, x: Tensor, t: Tensor | float, *, observed: Tensor | None = None,
        cond_mask: Tensor | None = None, timestamps: Tensor | None = None,
    ) -> Tensor:  # fmt: skip
        if x.dim() != 3 or x.shape[1] != self.n_features:
            raise ValueError(f"CSDINet expected x_t of shape (N, {self.n_features}, L) "
                             f"(n_features={self.n_features}), got {tuple(x.shape)}")  # fmt: skip
        if self.conditional:
            for name, value in (("observed", observed), ("cond_mask", cond_mask)):
                if value is None or value.shape != x.shape:
                    got = "nothing" if value is None else f"shape {tuple(value.shape)}"
                    raise ValueError(f"CSDINet: {name} must have x_t's shape "
                                     f"{tuple(x.shape)}, got {got}")  # fmt: skip
            cond_mask = cond_mask.to(x.dtype)  # observed outside the mask (even NaN) is dropped
            observed = torch.where(cond_mask != 0, observed.to(x.dtype), 0.0)
            inputs = torch.stack([observed, (1 - cond_mask) * x], dim=-1)
        else:
            inputs = x[..., None]
        h = torch.relu(self.input(inputs))  # (N, K, L, C)
        e = self.step_mlp(self._steps(t, x.shape[0], x))
        side = self._side(cond_mask, timestamps, x)
        skips = 0
        for block in self.blocks:
            h, skip = block(h, e, side)
            skips = skips + skip
        h = torch.relu(self.out_hidden(skips / math.sqrt(len(self.blocks))))
        return self.out(h)[..., 0]

    def extra_repr(self) -> str:
        return (f"n_features={self.n_features}, channels={self.channels}, "
                f"layers={len(self.blocks)}, conditional={self.conditional}, "
                f"step_embedding={self.step_embedding!r}")  # fmt: skip


class _Block(nn.Module):
    """One residual block (CSDI Sec. 4; DiffWave's gated residual block, Kong et al. 2021)."""

    def __init__(self, C: int, E: int, side_dim: int, heads: int, ff: int, dropout: float,
                 temporal: bool, feature: bool):  # fmt: skip
        super().__init__()
        self.step = nn.Linear(E, C)
        self.side = _linear(side_dim, 2 * C)
        self.mid = _linear(C, 2 * C)
        self.output = _linear(C, 2 * C)

        def layer() -> nn.TransformerEncoderLayer:
            return nn.TransformerEncoderLayer(C, heads, ff, dropout, activation="gelu",
                                              batch_first=True)  # fmt: skip

        self.time_layer = layer() if temporal else None
        self.feature_layer = layer() if feature else None

    def forward(self, h: Tensor, e: Tensor, side: Tensor) -> tuple[Tensor, Tensor]:
        n, k, length, c = h.shape
        y = h + self.step(e)[:, None, None, :]
        if self.time_layer is not None and length > 1:  # sequences along L, one per (n, k)
            y = self.time_layer(y.reshape(n * k, length, c)).reshape(n, k, length, c)
        if self.feature_layer is not None and k > 1:  # sequences along K, one per (n, l)
            y = y.transpose(1, 2).reshape(n * length, k, c)
            y = self.feature_layer(y).reshape(n, length, k, c).transpose(1, 2)
        gate, filt = (self.mid(y) + self.side(side)).chunk(2, dim=-1)
        residual, skip = self.output(torch.sigmoid(gate) * torch.tanh(filt)).chunk(2, dim=-1)
        return (h + residual) / math.sqrt(2.0), skip
