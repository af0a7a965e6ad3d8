"""Trajectory backbones for planning: Diffuser's temporal U-Net and its value function.

``TemporalUNet(transition_dim)(x, t, **cond)`` maps trajectories x (N, H, D) -- horizon H,
transition dim D, e.g. ``[action, state]`` per step -- and times t (N,) in [0, 1] to a tensor
of x's shape; ``ValueNetwork(transition_dim)(x, t, **cond)`` maps them to a predicted return
(N,). Both follow Janner, Du, Tenenbaum & Levine 2022 ("Planning with Diffusion for Flexible
Behavior Synthesis", Sec. 3.1 and App. C; the official ``diffuser/models/temporal.py``), with
the return / skill conditioning of Ajay, Du, Gupta, Tenenbaum, Jaakkola & Agrawal 2023 ("Is
Conditional Generative Modeling all you need for Decision-Making?", Sec. 3 and App. B).
Internally channels-first: (N, D, H), convolutions along the horizon. Layout (d = ``dim``,
widths ``w_i = d * dim_mults[i]``, L = ``len(dim_mults)``)::

    emb = Linear(Mish(Linear(sinusoidal(1000 t))))                     width d (hidden 4 d)
          + sum_k cond_mlp_k(cond[k])   (or its learned null embedding)  Decision Diffuser
          [+ class_embedding(y)]
    down, level i = 0..L-1:  ResBlock(w_{i-1} -> w_i), ResBlock(w_i) (+ Attention), kept as
                             skip i; then Conv1d(w_i, w_i, 3, stride 2, padding 1) unless i = L-1
    middle:                  ResBlock(w_{L-1}), (Attention), ResBlock(w_{L-1})
    up, level i = L-2..0:    ResBlock(concat(h, skip i+1) -> w_i), ResBlock(w_i) (+ Attention),
                             then ConvTranspose1d(w_i, w_i, 4, stride 2, padding 1)
    out = Conv1d(Conv1dBlock(w_0 -> w_0)(h), D, 1)

    Conv1dBlock(h) = Mish(GroupNorm(8, Conv1d(h, kernel 5, padding 2)))
    ResBlock(h) = Conv1dBlock(Conv1dBlock(h) + Linear(Mish(emb))) + residual(h)
    Attention(h) = h + LinearAttention(ChannelLayerNorm(h))     (4 heads of width 32)

with ``residual`` a 1x1 conv where the width changes (else the identity) and ``w_{-1} = D``.
As in the official code, the skip kept at full resolution (level 0) is not used by the
up path: the up path has L - 1 levels, each concatenating the skip of the level below before
up-sampling, so the output of the last up-sampling (full resolution, width ``w_0``) goes
straight to the final block. The network is fully convolutional: any horizon H divisible by
``2**(L - 1)`` works (the up path must land on the skip lengths); others raise a ValueError.

Time. diffusio passes continuous t in [0, 1]; the embedding is DDPM's sinusoidal features of
``1000 t`` (:class:`~diffusio.nets.embeddings.SinusoidalEmbedding`, as :class:`~diffusio.nets.
unet.UNet`), where the official code embeds the integer step. Only one time per row (N,).

Vector conditions (Decision Diffuser's returns, skills, constraints). ``cond_dims`` declares
them, e.g. ``{"returns": 1}``; each goes through Decision Diffuser's returns MLP
``Linear(k, d), Mish, Linear(d, 4 d), Mish, Linear(4 d, d)`` and is *added* to the time
embedding (Decision Diffuser concatenates it; adding keeps the width d). A condition is given
as (N, k) (or (N,) when k = 1). Every declared key is required, unknown keys are errors.

Null condition (classifier-free guidance, Ho & Salimans 2021; Decision Diffuser Sec. 3.1). A
row whose condition is *all NaN* is the null condition: its embedding is a learned vector
(initialised to zero, Decision Diffuser's masked-out embedding), never the MLP of the NaNs.
So a dataset declares ``null={"returns": float("nan")}`` and
:func:`~diffusio.data.batch.drop_conditions` fills dropped rows with NaN; at sampling time the
unconditional call passes ``torch.full_like(returns, float("nan"))``. A partly-NaN row is an
error.

Known entries. ``cond["known"]`` of x's shape, NaN where unknown, replaces those entries of the
input by their clean values: the official Diffuser's ``apply_conditioning`` applied to the
network's input, which is how its model learns the start and goal it is conditioned on (train
with :class:`~diffusio.control.diffuser.KnownEntries`).

Class labels. With ``num_classes`` the key ``y`` (N,) int64 adds ``nn.Embedding(num_classes +
1, d)`` to the embedding; index ``num_classes`` is the null class and ``y`` omitted means the
null class for every row, as for every class-conditional net in diffusio.

:class:`ValueNetwork` is Diffuser's noise-conditional value function ``J(x_t, t)`` (Sec. 3.3,
guided sampling): the same embedding, down path and middle, then the mean over the horizon,
concatenated with the embedding, through ``Linear(w_{L-1} + d, w_{L-1} // 2), Mish,
Linear(., 1)``. The official ``ValueFunction`` instead adds two more halving ResBlocks and
flattens (its width depends on H); mean pooling makes it work for any horizon.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .embeddings import SinusoidalEmbedding, check_num_classes, class_labels, write_known
from .unet import _norm

__all__ = ["TemporalUNet", "ValueNetwork"]


class _Conv1dBlock(nn.Module):
    """``Mish(GroupNorm(Conv1d(x)))`` (Diffuser's ``Conv1dBlock``)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, groups: int):
        super().__init__()
        self.conv = nn.Conv1d(in_ch, out_ch, kernel_size, padding=kernel_size // 2)
        self.norm = _norm(out_ch, groups)
        self.act = nn.Mish()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.norm(self.conv(x)))


class _ResBlock(nn.Module):
    """Diffuser's ``ResidualTemporalBlock``: the embedding added after the first conv block."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, kernel_size: int, groups: int):
        super().__init__()
        self.block1 = _Conv1dBlock(in_ch, out_ch, kernel_size, groups)
        self.block2 = _Conv1dBlock(out_ch, out_ch, kernel_size, groups)
        self.emb = nn.Sequential(nn.Mish(), nn.Linear(emb_dim, out_ch))
        self.residual = nn.Conv1d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.block1(x) + self.emb(emb)[:, :, None]
        return self.block2(h) + self.residual(x)


class _LinearAttention(nn.Module):
    """``x + LinearAttention(LayerNorm(x))`` over the horizon (Diffuser's ``Residual(PreNorm(
    LinearAttention))``; linear attention of Shen et al. 2021 / Katharopoulos et al. 2020):
    softmax over positions for keys, the (head_dim x head_dim) context applied to queries."""

    def __init__(self, ch: int, heads: int = 4, head_dim: int = 32, eps: float = 1e-5):
        super().__init__()
        self.heads, self.head_dim, self.eps = heads, head_dim, eps
        self.g = nn.Parameter(torch.ones(1, ch, 1))
        self.b = nn.Parameter(torch.zeros(1, ch, 1))
        self.qkv = nn.Conv1d(ch, 3 * heads * head_dim, 1, bias=False)
        self.out = nn.Conv1d(heads * head_dim, ch, 1)

    def forward(self, x: Tensor) -> Tensor:
        var, mean = torch.var_mean(x, dim=1, unbiased=False, keepdim=True)
        h = (x - mean) / (var + self.eps).sqrt() * self.g + self.b
        n, _, length = x.shape
        q, k, v = self.qkv(h).reshape(n, 3, self.heads, self.head_dim, length).unbind(1)
        q = q * self.head_dim**-0.5
        k = k.softmax(dim=-1)
        context = torch.einsum("bhdn,bhen->bhde", k, v)
        out = torch.einsum("bhde,bhdn->bhen", context, q)
        return x + self.out(out.reshape(n, self.heads * self.head_dim, length))


def _cond_mlp(k: int, d: int) -> nn.Sequential:
    """Decision Diffuser's returns MLP (App. B): ``Linear(k, d), Mish, Linear(d, 4 d), Mish,
    Linear(4 d, d)``."""
    return nn.Sequential(
        nn.Linear(k, d), nn.Mish(), nn.Linear(d, 4 * d), nn.Mish(), nn.Linear(4 * d, d)
    )


def _check_int(label: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or int(value) != value:
        raise ValueError(f"{label} must be an integer >= {low}, got {value!r}")
    if value < low:
        raise ValueError(f"{label} must be an integer >= {low}, got {value!r}")
    return int(value)


class _TemporalEncoder(nn.Module):
    """What both networks share: the time / condition embedding, the down path, the middle."""

    def __init__(
        self,
        transition_dim: int,
        dim: int,
        dim_mults: Sequence[int],
        cond_dims: Mapping[str, int] | None,
        num_classes: int | None,
        attention: bool,
        kernel_size: int,
        groups: int,
    ):
        super().__init__()
        name = type(self).__name__
        self.transition_dim = _check_int(f"{name}: transition_dim", transition_dim, 1)
        self.dim = _check_int(f"{name}: dim", dim, 2)
        self.groups = _check_int(f"{name}: groups", groups, 1)
        self.kernel_size = _check_int(f"{name}: kernel_size", kernel_size, 1)
        if self.kernel_size % 2 == 0:
            raise ValueError(f"{name}: kernel_size must be odd (same padding), got {kernel_size}")
        if isinstance(dim_mults, (str, bytes)) or not isinstance(dim_mults, Sequence):
            raise ValueError(f"{name}: dim_mults must be a sequence of integers, got {dim_mults!r}")
        self.dim_mults = tuple(
            _check_int(f"{name}: dim_mults[{i}]", m, 1) for i, m in enumerate(dim_mults)
        )
        if not self.dim_mults:
            raise ValueError(f"{name}: dim_mults must name at least one level, got ()")
        cond_dims = dict(cond_dims or {})
        for key, k in cond_dims.items():
            if not isinstance(key, str) or not key.isidentifier():
                raise ValueError(f"{name}: condition names must be identifiers, got {key!r}")
            if key in ("x", "t", "y", "known"):
                raise ValueError(
                    f"{name}: condition name {key!r} is reserved (y is the class label: use "
                    "num_classes; known is the clean-entries input)"
                )
            _check_int(f"{name}: cond_dims[{key!r}]", k, 1)
        self.cond_dims = {k: int(v) for k, v in sorted(cond_dims.items())}
        self.num_classes = check_num_classes(num_classes)
        self.attention = bool(attention)

        d = self.dim
        self.time_embed = nn.Sequential(
            SinusoidalEmbedding(d), nn.Linear(d, 4 * d), nn.Mish(), nn.Linear(4 * d, d)
        )
        self.cond_embed = nn.ModuleDict({k: _cond_mlp(v, d) for k, v in self.cond_dims.items()})
        self.null_embed = nn.ParameterDict(
            {k: nn.Parameter(torch.zeros(d)) for k in self.cond_dims}
        )
        self.class_embed = (
            nn.Embedding(self.num_classes + 1, d) if self.num_classes is not None else None
        )

        widths = [d * m for m in self.dim_mults]
        self.widths = tuple(widths)
        self.down = nn.ModuleList()
        ch = self.transition_dim
        for i, w in enumerate(widths):
            level = nn.ModuleDict(
                {
                    "res1": _ResBlock(ch, w, d, self.kernel_size, self.groups),
                    "res2": _ResBlock(w, w, d, self.kernel_size, self.groups),
                }
            )
            if self.attention:
                level["attn"] = _LinearAttention(w)
            if i < len(widths) - 1:
                level["downsample"] = nn.Conv1d(w, w, 3, stride=2, padding=1)
            self.down.append(level)
            ch = w
        self.mid1 = _ResBlock(ch, ch, d, self.kernel_size, self.groups)
        self.mid_attn = _LinearAttention(ch) if self.attention else None
        self.mid2 = _ResBlock(ch, ch, d, self.kernel_size, self.groups)

    @property
    def null_class(self) -> int | None:
        """The label index meaning "no class" (``num_classes``), or None if unconditional."""
        return self.num_classes

    # ------------------------------------------------------------------ inputs
    def _check_input(self, x: Tensor) -> None:
        name = type(self).__name__
        if not isinstance(x, Tensor) or x.dim() != 3:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(
                f"{name} expected trajectories of shape (N, H, {self.transition_dim}) "
                f"(batch, horizon, transition dim), got {shape}"
            )
        if x.shape[2] != self.transition_dim:
            raise ValueError(
                f"{name} expected transition dim {self.transition_dim} (the last axis of "
                f"(N, H, D)), got input of shape {tuple(x.shape)}"
            )
        if x.shape[1] < 1:
            raise ValueError(f"{name} needs a horizon H >= 1, got input {tuple(x.shape)}")

    def _vector_condition(self, key: str, value: Any, x: Tensor) -> Tensor:
        n, k = x.shape[0], self.cond_dims[key]
        c = torch.as_tensor(value, device=x.device).to(x.dtype)
        if c.dim() == 1 and k == 1 and c.shape[0] == n:
            c = c[:, None]
        if c.shape != (n, k):
            want = f"({n}, {k})" + (f" or ({n},)" if k == 1 else "")
            raise ValueError(
                f"{type(self).__name__}: condition {key!r} must have shape {want}, got "
                f"{tuple(c.shape)}"
            )
        nan = torch.isnan(c)
        null = nan.all(dim=1)
        if bool((nan.any(dim=1) & ~null).any()):
            raise ValueError(
                f"{type(self).__name__}: condition {key!r} has rows that are partly NaN; a "
                "null row (classifier-free guidance) is all NaN"
            )
        e = self.cond_embed[key](torch.where(nan, torch.zeros_like(c), c))
        return torch.where(null[:, None], self.null_embed[key].to(e.dtype), e)

    def _embedding(self, x: Tensor, t: Tensor | float, cond: Mapping[str, Any]) -> Tensor:
        """``time_embed(t) + sum_k cond_embed_k(cond[k]) [+ class_embed(y)]`` (N, dim)."""
        name, n = type(self).__name__, x.shape[0]
        allowed = set(self.cond_dims) | ({"y"} if self.num_classes is not None else set())
        unknown = sorted(set(cond) - allowed)
        if unknown:
            raise ValueError(
                f"{name}: unknown condition keys {unknown}; this net takes "
                f"{sorted(allowed) or 'no conditions'}"
            )
        missing = sorted(set(self.cond_dims) - set(cond))
        if missing:
            raise ValueError(
                f"{name}: missing condition keys {missing} (declared in cond_dims); pass an "
                "all-NaN row for the null condition"
            )
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        if t.dim() == 0:
            t = t.expand(n)
        if t.shape != (n,):
            raise ValueError(f"{name}: t must be a scalar or of shape ({n},), got {tuple(t.shape)}")
        emb = self.time_embed(t)
        for key in self.cond_dims:
            emb = emb + self._vector_condition(key, cond[key], x)
        labels = class_labels(cond.get("y"), self.num_classes, n, x.device, name)
        if labels is not None:
            emb = emb + self.class_embed(labels)
        return emb

    def _encode(
        self, x: Tensor, t: Tensor | float, cond: Mapping[str, Any]
    ) -> tuple[Tensor, list[Tensor], Tensor]:
        """``(h, skips, emb)``: the middle's output (N, w_{L-1}, H / 2**(L-1)), the skip of
        every level (after its attention, before its down-sampling) and the embedding.

        ``cond["known"]`` (x's shape, NaN where unknown) overwrites x's entries with those clean
        values before anything else (Diffuser's ``apply_conditioning`` on the input)."""
        if "known" in cond:
            cond = dict(cond)
            x = write_known(x, cond.pop("known"), type(self).__name__)
        emb = self._embedding(x, t, cond)
        h = x.transpose(1, 2)  # (N, D, H): channels first
        skips = []
        for level in self.down:
            h = level["res2"](level["res1"](h, emb), emb)
            if "attn" in level:
                h = level["attn"](h)
            skips.append(h)
            if "downsample" in level:
                h = level["downsample"](h)
        h = self.mid1(h, emb)
        if self.mid_attn is not None:
            h = self.mid_attn(h)
        return self.mid2(h, emb), skips, emb

    def extra_repr(self) -> str:
        return (
            f"transition_dim={self.transition_dim}, dim={self.dim}, dim_mults={self.dim_mults}, "
            f"cond_dims={self.cond_dims}, num_classes={self.num_classes}, "
            f"attention={self.attention}"
        )


class TemporalUNet(_TemporalEncoder):
    """Diffuser's temporal U-Net ``net(x, t, **cond)`` for trajectories x (N, H, D); see the
    module docstring (Janner et al. 2022, App. C; Ajay et al. 2023 for the conditions).

    Args:
        transition_dim: D, the width of one transition (e.g. action dim + state dim).
        dim: base width d; level i has width ``d * dim_mults[i]``, the embedding width d.
        dim_mults: width multipliers, one per level (each level after the first halves the
            horizon): Diffuser's locomotion (1, 2, 4, 8), its maze2d (1, 4, 8).
        cond_dims: vector conditions ``{name: width}`` (Decision Diffuser's ``{"returns": 1}``),
            each required at call time; an all-NaN row is the null condition.
        num_classes: class labels ``y`` (``None``: none); index ``num_classes`` is the null class.
        attention: linear self-attention after each level's residual blocks and in the middle.
        kernel_size: the residual blocks' conv kernel (5: padding 2).
        groups: GroupNorm groups (8), lowered to the largest divisor of a width if needed.
    """

    def __init__(
        self,
        transition_dim: int,
        dim: int = 32,
        dim_mults: Sequence[int] = (1, 2, 4, 8),
        cond_dims: Mapping[str, int] | None = None,
        num_classes: int | None = None,
        attention: bool = False,
        kernel_size: int = 5,
        groups: int = 8,
    ):
        super().__init__(
            transition_dim, dim, dim_mults, cond_dims, num_classes, attention, kernel_size, groups
        )
        d, widths = self.dim, self.widths
        self.up = nn.ModuleList()
        ch = widths[-1]
        for i in reversed(range(len(widths) - 1)):
            w = widths[i]
            level = nn.ModuleDict(
                {
                    "res1": _ResBlock(ch + widths[i + 1], w, d, self.kernel_size, self.groups),
                    "res2": _ResBlock(w, w, d, self.kernel_size, self.groups),
                }
            )
            if self.attention:
                level["attn"] = _LinearAttention(w)
            level["upsample"] = nn.ConvTranspose1d(w, w, 4, stride=2, padding=1)
            self.up.append(level)
            ch = w
        self.final_block = _Conv1dBlock(ch, ch, self.kernel_size, self.groups)
        self.final_conv = nn.Conv1d(ch, self.transition_dim, 1)
        self.horizon_multiple = 2 ** (len(widths) - 1)

    def forward(self, x: Tensor, t: Tensor | float, **cond: Any) -> Tensor:
        self._check_input(x)
        horizon = x.shape[1]
        if horizon % self.horizon_multiple:
            raise ValueError(
                f"TemporalUNet: horizon H = {horizon} must be a multiple of "
                f"{self.horizon_multiple} (2**{len(self.widths) - 1} for "
                f"{len(self.widths)} levels, dim_mults={self.dim_mults})"
            )
        h, skips, emb = self._encode(x, t, cond)
        for level in self.up:
            h = torch.cat([h, skips.pop()], dim=1)
            h = level["res2"](level["res1"](h, emb), emb)
            if "attn" in level:
                h = level["attn"](h)
            h = level["upsample"](h)
        return self.final_conv(self.final_block(h)).transpose(1, 2)


class ValueNetwork(_TemporalEncoder):
    """Diffuser's noise-conditional value function ``J(x_t, t, **cond) -> (N,)`` (Janner et
    al. 2022, Sec. 3.3): :class:`TemporalUNet`'s embedding, down path and middle, mean-pooled
    over the horizon and concatenated with the embedding, then ``Linear, Mish, Linear`` to one
    number per trajectory. Any horizon H >= 1 works. The arguments are :class:`TemporalUNet`'s.
    """

    def __init__(
        self,
        transition_dim: int,
        dim: int = 32,
        dim_mults: Sequence[int] = (1, 2, 4, 8),
        cond_dims: Mapping[str, int] | None = None,
        num_classes: int | None = None,
        attention: bool = False,
        kernel_size: int = 5,
        groups: int = 8,
    ):
        super().__init__(
            transition_dim, dim, dim_mults, cond_dims, num_classes, attention, kernel_size, groups
        )
        width = self.widths[-1]
        hidden = max(width // 2, 1)
        self.head = nn.Sequential(
            nn.Linear(width + self.dim, hidden), nn.Mish(), nn.Linear(hidden, 1)
        )

    def forward(self, x: Tensor, t: Tensor | float, **cond: Any) -> Tensor:
        self._check_input(x)
        h, _, emb = self._encode(x, t, cond)
        return self.head(torch.cat([h.mean(dim=2), emb], dim=1)).squeeze(1)
