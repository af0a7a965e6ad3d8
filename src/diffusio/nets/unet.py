"""A time-conditioned U-Net for images, in the DDPM / improved-DDPM / ADM line.

``UNet(in_channels)(x, t, y=None)`` maps x (N, C, H, W), t (N,) in [0, 1] (and optional class
labels y) to a tensor (N, out_channels, H, W), the interface
:class:`~diffusio.core.model.DiffusionModel` calls.

The encoder-decoder with skip connections is Ronneberger et al. 2015 ("U-Net: Convolutional
Networks for Biomedical Image Segmentation"); the diffusion version follows DDPM (Ho et al.
2020, App. B): a Wide-ResNet backbone with two residual blocks per resolution, GroupNorm,
the sinusoidal step embedding added into every residual block, and self-attention at the
16x16 resolution and in the middle. Improved DDPM (Nichol & Dhariwal 2021) and ADM (Dhariwal &
Nichol 2021, Sec. 3) add multi-head attention, the adaptive group norm ``scale_shift`` and a
class embedding added to the time embedding; index ``num_classes`` of the class table is the
*null* class of classifier-free guidance (Ho & Salimans 2021): ``y=None`` means the null class
for every row. Layout (L = ``len(channel_mults)``, c = ``channels``, e = 4 c)::

    emb = SiLU(Linear(SiLU(Linear(sinusoidal(1000 t)))) [+ class_embedding(y)])   width e
    h = conv3x3(x)                                                                width c
    down, level i = 0..L-1:  num_res_blocks x [ResBlock(width c * mult_i) (+ Attention)],
                             then a stride-2 conv3x3 (or 2x2 average pooling) unless i = L-1;
                             h after the first conv and after every step is kept as a skip
    middle:                  ResBlock, Attention, ResBlock
    up, level i = L-1..0:    (num_res_blocks + 1) x [ResBlock(concat(h, skip)) (+ Attention)],
                             then nearest x2 up-sampling + conv3x3 unless i = 0
    out = conv3x3(SiLU(GroupNorm(h)))          zero-initialised: the initial output is exactly 0

    ResBlock(h) = skip(h) + conv3x3(Dropout(SiLU(inject(conv3x3(SiLU(GroupNorm(h))), emb))))
    Attention(h) = h + proj(MultiHeadAttention(qkv(GroupNorm(h))))     qkv, proj: 1x1 convs

``inject`` is DDPM's ``GroupNorm(h + Linear(emb))`` (``scale_shift=False``) or ADM's adaptive
group norm ``GroupNorm(h) * (1 + scale) + shift`` with ``(scale, shift) = Linear(emb)``
(``scale_shift=True``). The second conv3x3 of every ResBlock and the attention projection are
zero-initialised too, so every block starts as the identity (as in ADM); ``skip`` is a 1x1 conv
where the width changes, else the identity. Attention (``scaled_dot_product_attention``, heads
of width ``C / num_heads``) follows the residual blocks of every level whose feature-map size
``image_size // 2**i`` is in ``attention_resolutions``, and always sits in the middle.

Text and cascade conditioning (all optional; with none of them the network, its parameters
and its outputs are exactly those above):

* ``context_dim``: latent diffusion's cross-attention (Rombach et al. 2022, Sec. 3.3): a
  :class:`~diffusio.nets.spatial_transformer.SpatialTransformer` (``transformer_depth``
  blocks) after every self-attention (attention levels and the middle), reading
  ``net(x, t, context=tokens, context_mask=mask)``, tokens (N, L, context_dim) and mask (N, L)
  as :class:`~diffusio.nets.text_encoders.TextEncoding` holds them. No context, or a row whose
  mask is all False, is the null caption: the blocks leave h unchanged. For classifier-free
  guidance on the caption, null the mask: ``ClassifierFreeGuidance(w, 0.0, key="context_mask")``.
* ``pooled_dim``: Imagen's pooled text embedding (Saharia et al. 2022, Sec. 2.1 and App. F):
  ``emb += Linear(SiLU(Linear(pooled)))``, ``net(..., pooled=p)`` with p (N, pooled_dim).
  A guidance null that drops the pooled vector too names both keys
  (:class:`~diffusio.core.steering.ComposedGuidance` with ``null={"context_mask": 0.0,
  "pooled": 0.0}``: a zero pooled vector, which is what mean pooling gives an empty caption).
* ``concat_channels``: channels concatenated to x before the first conv (LDM's concat
  conditioning; the cascade's up-sampled low-resolution image, :mod:`diffusio.core.cascade`),
  ``net(..., concat=c)`` with c (N, concat_channels, H, W).
* ``level_conditioning``: the noise-augmentation level of ``concat`` (the conditioning
  augmentation of Ho et al. 2022, "Cascaded Diffusion Models"; Imagen Sec. 2.4), embedded as t
  is and added to the time embedding: ``net(..., aug_level=level)``.

Presets (:data:`UNET_PRESETS`, :func:`unet_preset`; trainable parameters by
:func:`~diffusio.nets.mlp.count_parameters`):

* ``digits`` -- 8x8, 1 channel (scikit-learn's digits): c = 32, mults (1, 2), one residual
  block per level, attention at 4 px, 4 heads, 8 groups: 755,009 parameters; forward +
  backward of a batch of 128 takes about 0.1 s on 2 CPU cores.
* ``mnist`` -- 28x28, 1 channel (28 -> 14 -> 7): c = 32, mults (1, 2, 2), attention at 7 px,
  2 residual blocks, 4 heads, 8 groups: 1,742,881 parameters.
* ``cifar10`` -- DDPM's CIFAR-10 net (Ho et al. 2020, App. B): 32x32, 3 channels, c = 128,
  mults (1, 2, 2, 2), 2 residual blocks, one-head attention at 16 px, dropout 0.1, additive
  embedding: 35,746,307 parameters (the paper reports 35.7M).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.functional import interpolate, scaled_dot_product_attention, silu

from .embeddings import ClassConditional, check_num_classes, time_embedding, write_known
from .mlp import EMBEDDINGS, _choice
from .spatial_transformer import SpatialTransformer, context_mask

__all__ = ["UNET_PRESETS", "UNet", "unet_preset"]

UNET_PRESETS: dict[str, dict[str, Any]] = {
    "digits": {
        "in_channels": 1,
        "image_size": 8,
        "channels": 32,
        "channel_mults": (1, 2),
        "num_res_blocks": 1,
        "attention_resolutions": (4,),
        "num_heads": 4,
        "groups": 8,
    },
    "mnist": {
        "in_channels": 1,
        "image_size": 28,
        "channels": 32,
        "channel_mults": (1, 2, 2),
        "num_res_blocks": 2,
        "attention_resolutions": (7,),
        "num_heads": 4,
        "groups": 8,
    },
    "cifar10": {
        "in_channels": 3,
        "image_size": 32,
        "channels": 128,
        "channel_mults": (1, 2, 2, 2),
        "num_res_blocks": 2,
        "attention_resolutions": (16,),
        "num_heads": 1,
        "dropout": 0.1,
        "scale_shift": False,
        "groups": 32,
    },
}


def unet_preset(name: str, **overrides: Any) -> dict[str, Any]:
    """A copy of the :data:`UNET_PRESETS` options ``name``, updated with ``overrides``:
    ``UNet(**unet_preset("mnist", num_classes=10))``."""
    if name not in UNET_PRESETS:
        raise ValueError(f"unknown UNet preset {name!r}; valid: {', '.join(sorted(UNET_PRESETS))}")
    return {**UNET_PRESETS[name], **overrides}


def _norm(num_channels: int, groups: int) -> nn.GroupNorm:
    """GroupNorm with the largest group count <= ``groups`` that divides ``num_channels``."""
    g = max(d for d in range(1, min(groups, num_channels) + 1) if num_channels % d == 0)
    return nn.GroupNorm(g, num_channels)


_Context = tuple[Tensor, Tensor] | None  # (context tokens (N, L, D), mask (N, L) bool) or none


def _zero(module: nn.Conv2d) -> nn.Conv2d:
    nn.init.zeros_(module.weight)
    nn.init.zeros_(module.bias)
    return module


class _ResBlock(nn.Module):
    """Wide-ResNet block with the embedding added (DDPM) or as adaptive group norm (ADM)."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        emb_dim: int,
        dropout: float,
        scale_shift: bool,
        groups: int,
    ):
        super().__init__()
        self.scale_shift = scale_shift
        self.norm1 = _norm(in_ch, groups)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * out_ch if scale_shift else out_ch)
        self.norm2 = _norm(out_ch, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = _zero(nn.Conv2d(out_ch, out_ch, 3, padding=1))
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(silu(self.norm1(x)))
        e = self.emb(emb)[:, :, None, None]
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = self.norm2(h) * (1 + scale) + shift
        else:
            h = self.norm2(h + e)
        h = self.conv2(self.dropout(silu(h)))
        return self.skip(x) + h


class _Attention(nn.Module):
    """Multi-head self-attention over the H W positions, residual, zero-initialised output."""

    def __init__(self, ch: int, num_heads: int, groups: int):
        super().__init__()
        self.num_heads = num_heads
        self.norm = _norm(ch, groups)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = _zero(nn.Conv2d(ch, ch, 1))

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        n, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(n, 3, self.num_heads, c // self.num_heads, h * w)
        q, k, v = qkv.transpose(-1, -2).unbind(1)  # each (N, heads, HW, head_dim)
        out = scaled_dot_product_attention(q, k, v)
        out = out.transpose(-1, -2).reshape(n, c, h, w)
        return x + self.proj(out)


class _Step(nn.Module):
    """One residual block, optionally followed by attention (and then, with text conditioning,
    by a :class:`~diffusio.nets.spatial_transformer.SpatialTransformer`)."""

    def __init__(
        self, res: _ResBlock, attn: _Attention | None, xattn: SpatialTransformer | None = None
    ):
        super().__init__()
        self.res, self.attn, self.xattn = res, attn, xattn  # None adds no state_dict keys

    def forward(self, x: Tensor, emb: Tensor, ctx: _Context = None) -> Tensor:
        x = self.res(x, emb)
        x = x if self.attn is None else self.attn(x)
        return x if self.xattn is None else self.xattn(x, *(ctx or (None, None)))


class _Downsample(nn.Module):
    def __init__(self, ch: int, with_conv: bool):
        super().__init__()
        self.op = nn.Conv2d(ch, ch, 3, stride=2, padding=1) if with_conv else nn.AvgPool2d(2)

    def forward(self, x: Tensor, emb: Tensor | None = None, ctx: _Context = None) -> Tensor:
        return self.op(x)


class _Upsample(nn.Module):
    def __init__(self, ch: int, with_conv: bool):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1) if with_conv else None

    def forward(self, x: Tensor, emb: Tensor | None = None, ctx: _Context = None) -> Tensor:
        x = interpolate(x, scale_factor=2.0, mode="nearest")
        return x if self.conv is None else self.conv(x)


class UNet(ClassConditional, nn.Module):
    """U-Net ``net(x, t, y=None)`` for images x of shape (N, C, H, W); see the module docstring.

    Args:
        in_channels: image channels C.
        out_channels: output channels (default C; 2 C for a learned-variance model).
        image_size: the nominal side length; decides which levels get attention. Inputs of
            other sizes are accepted if H and W are divisible by ``2**(len(channel_mults)-1)``
            (the attention stays at the levels chosen from ``image_size``).
        channels: base width c; level i has width ``c * channel_mults[i]``, the embedding 4 c.
        channel_mults: width multipliers, one per resolution (each level after the first
            halves the feature-map size).
        num_res_blocks: residual blocks per level on the way down (one more on the way up).
        attention_resolutions: feature-map sizes (pixels, in terms of ``image_size``) whose
            residual blocks are followed by self-attention; the middle always has one.
        num_heads: attention heads (each level width with attention must be divisible by it).
        dropout: dropout rate inside the residual blocks.
        num_classes: number of classes for conditioning (``None``: unconditional). Index
            ``num_classes`` is the null class.
        scale_shift: ADM's adaptive group norm (True) or DDPM's additive embedding (False).
        groups: GroupNorm groups, lowered to the largest divisor of each width if needed.
        embedding: time embedding, ``sinusoidal`` (DDPM) or ``fourier``.
        resample_with_conv: strided conv3x3 down / conv3x3 after nearest up-sampling (True) or
            average pooling / plain nearest up-sampling (False).
        context_dim: token width of the cross-attention context (None: no cross-attention).
        transformer_depth: transformer blocks per SpatialTransformer.
        pooled_dim: width of a pooled vector added to the time embedding (None: none).
        concat_channels: channels of ``concat`` appended to the input (0: none).
        level_conditioning: embed the augmentation level ``aug_level`` into the time embedding.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        image_size: int = 32,
        channels: int = 64,
        channel_mults: Sequence[int] = (1, 2, 2),
        num_res_blocks: int = 2,
        attention_resolutions: Sequence[int] = (16,),
        num_heads: int = 4,
        dropout: float = 0.0,
        num_classes: int | None = None,
        scale_shift: bool = True,
        groups: int = 32,
        embedding: str = "sinusoidal",
        resample_with_conv: bool = True,
        context_dim: int | None = None,
        transformer_depth: int = 1,
        pooled_dim: int | None = None,
        concat_channels: int = 0,
        level_conditioning: bool = False,
    ):
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        mults = tuple(channel_mults)
        attn_res = tuple(attention_resolutions)
        checks = (
            ("in_channels", in_channels, 1),
            ("out_channels", out_channels, 1),
            ("image_size", image_size, 1),
            ("channels", channels, 1),
            ("num_res_blocks", num_res_blocks, 1),
            ("num_heads", num_heads, 1),
            ("groups", groups, 1),
            ("transformer_depth", transformer_depth, 1),
            ("concat_channels", concat_channels, 0),
            *((name, v, 1) for name, v in (("context_dim", context_dim),
                                           ("pooled_dim", pooled_dim)) if v is not None),
            *((f"channel_mults[{i}]", m, 1) for i, m in enumerate(mults)),
            *((f"attention_resolutions[{i}]", r, 1) for i, r in enumerate(attn_res)),
        )
        for label, value, low in checks:
            if isinstance(value, bool) or int(value) != value or value < low:
                raise ValueError(f"{label} must be an integer >= {low}, got {value!r}")
        if not mults:
            raise ValueError("channel_mults must name at least one level, got ()")
        check_num_classes(num_classes)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")
        factor = 2 ** (len(mults) - 1)
        if image_size % factor:
            raise ValueError(
                f"image_size {image_size} must be divisible by {factor} "
                f"(2**(len(channel_mults) - 1) for {len(mults)} levels)"
            )
        sizes = [image_size // 2**i for i in range(len(mults))]
        missing = sorted(set(attn_res) - set(sizes))
        if missing:
            raise ValueError(
                f"attention_resolutions {missing} are not feature-map sizes of this UNet; "
                f"valid: {sizes} (image_size {image_size}, {len(mults)} levels)"
            )
        widths = {channels * mults[-1]}  # the middle block's attention
        widths |= {channels * m for m, s in zip(mults, sizes, strict=True) if s in attn_res}
        if any(w % num_heads for w in widths):
            raise ValueError(
                f"num_heads {num_heads} must divide the width of every attention level, got "
                f"widths {sorted(set(widths))}"
            )
        embed_cls = _choice("embedding", embedding, EMBEDDINGS)

        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.image_size, self.channels = int(image_size), int(channels)
        self.channel_mults, self.attention_resolutions = mults, attn_res
        self.num_res_blocks, self.num_heads = int(num_res_blocks), int(num_heads)
        self.scale_shift, self.embedding_name = bool(scale_shift), str(embedding).lower()
        self._divisor = factor

        emb_dim = 4 * channels
        self._init_conditioning(embed_cls(channels), emb_dim, nn.SiLU, num_classes)

        def xattn(ch: int) -> SpatialTransformer | None:
            if context_dim is None:
                return None
            return SpatialTransformer(ch, context_dim, num_heads, depth=transformer_depth,
                                      dropout=dropout, groups=groups)  # fmt: skip

        def step(cin: int, cout: int, size: int) -> _Step:
            res = _ResBlock(cin, cout, emb_dim, dropout, self.scale_shift, groups)
            if size not in attn_res:
                return _Step(res, None)
            return _Step(res, _Attention(cout, num_heads, groups), xattn(cout))

        self.input = nn.Conv2d(in_channels + concat_channels, channels, 3, padding=1)
        self.down = nn.ModuleList()
        skips, ch = [channels], channels
        for i, (mult, size) in enumerate(zip(mults, sizes, strict=True)):
            for _ in range(num_res_blocks):
                self.down.append(step(ch, channels * mult, size))
                ch = channels * mult
                skips.append(ch)
            if i < len(mults) - 1:
                self.down.append(_Downsample(ch, resample_with_conv))
                skips.append(ch)
        self.middle = nn.ModuleList(
            [
                _ResBlock(ch, ch, emb_dim, dropout, self.scale_shift, groups),
                _Attention(ch, num_heads, groups),
                *([] if context_dim is None else [xattn(ch)]),
                _ResBlock(ch, ch, emb_dim, dropout, self.scale_shift, groups),
            ]
        )
        self.up = nn.ModuleList()  # every _Step takes a skip; _Upsample does not
        for i in reversed(range(len(mults))):
            for _ in range(num_res_blocks + 1):
                self.up.append(step(ch + skips.pop(), channels * mults[i], sizes[i]))
                ch = channels * mults[i]
            if i > 0:
                self.up.append(_Upsample(ch, resample_with_conv))
        self.out_norm = _norm(ch, groups)
        self.output = _zero(nn.Conv2d(ch, self.out_channels, 3, padding=1))

        # Text / cascade conditioning, built last (none of it exists with the defaults).
        self.context_dim = None if context_dim is None else int(context_dim)
        self.pooled_dim = None if pooled_dim is None else int(pooled_dim)
        self.concat_channels, self.level_conditioning = int(concat_channels), bool(level_conditioning)
        self.pooled_embed = None if pooled_dim is None else nn.Sequential(
            nn.Linear(pooled_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )  # fmt: skip
        self.level_embed = (
            time_embedding(embed_cls(channels), emb_dim, nn.SiLU) if level_conditioning else None
        )

    def forward(
        self, x: Tensor, t: Tensor | float, y: Tensor | int | None = None,
        known: Tensor | None = None, *, context: Tensor | None = None,
        context_mask: Tensor | None = None, pooled: Tensor | None = None,
        concat: Tensor | None = None, aug_level: Tensor | float | None = None,
    ) -> Tensor:
        """``known`` (x's shape, NaN where unknown): clean values written into the input
        first (conditioning on known entries, e.g. DiffPhyCon's initial and target states).

        With the matching constructor options: ``context`` (N, L, context_dim) tokens and
        ``context_mask`` (N, L; True / non-zero = a real token; default all real) for the
        cross-attention (``context=None`` or an all-False row: the null caption, no update);
        ``pooled`` (N, pooled_dim), projected and added to the time embedding; ``concat``
        (N, concat_channels, H, W) concatenated to x before the first conv; ``aug_level`` (a
        scalar or (N,), a time of the process) the noise-augmentation level of ``concat``,
        embedded like t and added to the time embedding (Imagen's cascade)."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"UNet expected input of shape (N, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        _, _, height, width = x.shape
        if height % self._divisor or width % self._divisor:
            raise ValueError(
                f"UNet input height and width must be divisible by {self._divisor} "
                f"({len(self.channel_mults)} levels), got {height}x{width}"
            )
        x = write_known(x, known, "UNet")
        # shared by every block's projection (DDPM's temb_proj(swish(temb)))
        emb = self._conditioning(x, t, y)
        emb, x_in, ctx = self._extra_conditioning(emb, x, context, context_mask, pooled, concat,
                                                  aug_level)  # fmt: skip
        emb = silu(emb)

        h = self.input(x_in)
        hs = [h]
        for module in self.down:
            h = module(h, emb, ctx)
            hs.append(h)
        for module in self.middle:
            if isinstance(module, SpatialTransformer):
                h = module(h, *(ctx or (None, None)))
            else:
                h = module(h, emb)
        for module in self.up:
            if isinstance(module, _Step):
                h = torch.cat([h, hs.pop()], dim=1)
            h = module(h, emb, ctx)
        return self.output(silu(self.out_norm(h)))

    def _extra_conditioning(
        self, emb: Tensor, x: Tensor, context: Tensor | None, mask: Tensor | None,
        pooled: Tensor | None, concat: Tensor | None, aug_level: Tensor | float | None,
    ) -> tuple[Tensor, Tensor, _Context]:
        """The time embedding plus the pooled vector and the level embedding, the input with
        ``concat`` appended, and the cross-attention context (each checked)."""
        n, _, height, width = x.shape
        given = {"context": context, "context_mask": mask, "pooled": pooled, "concat": concat,
                 "aug_level": aug_level}  # fmt: skip
        enabled = {"context": self.context_dim is not None, "context_mask": self.context_dim
                   is not None, "pooled": self.pooled_dim is not None,
                   "concat": self.concat_channels > 0, "aug_level": self.level_conditioning}  # fmt: skip
        for key, value in given.items():
            if value is not None and not enabled[key]:
                raise ValueError(f"this UNet takes no {key} (see its constructor options)")
        ctx: _Context = None
        if context is not None:
            if context.dim() != 3 or context.shape[0] != n or context.shape[2] != self.context_dim:
                raise ValueError(f"context must be (N, L, {self.context_dim}) with N = {n}, "
                                 f"got {tuple(context.shape)}")  # fmt: skip
            ctx = (context.to(x.dtype), context_mask(context, mask))
        elif mask is not None:
            raise ValueError("UNet got a context_mask without a context")
        if self.pooled_embed is not None and pooled is not None:
            if pooled.shape != (n, self.pooled_dim):
                raise ValueError(f"pooled must be (N, {self.pooled_dim}) = ({n}, "
                                 f"{self.pooled_dim}), got {tuple(pooled.shape)}")  # fmt: skip
            emb = emb + self.pooled_embed(pooled.to(emb.dtype))
        if self.level_embed is not None:
            if aug_level is None:
                raise ValueError("this UNet is told the augmentation level: pass aug_level")
            level = torch.as_tensor(aug_level, dtype=x.dtype, device=x.device)
            level = level.expand(n) if level.dim() == 0 else level
            if level.shape != (n,):
                raise ValueError(f"aug_level must be a scalar or ({n},), got {tuple(level.shape)}")
            emb = emb + self.level_embed(level)
        if self.concat_channels:
            if concat is None or concat.shape != (n, self.concat_channels, height, width):
                got = None if concat is None else tuple(concat.shape)
                raise ValueError(f"concat must be (N, {self.concat_channels}, H, W) = "
                                 f"{(n, self.concat_channels, height, width)}, got {got}")  # fmt: skip
            x = torch.cat([x, concat.to(x)], dim=1)
        return emb, x, ctx

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
            f"image_size={self.image_size}, channels={self.channels}, "
            f"channel_mults={self.channel_mults}, num_res_blocks={self.num_res_blocks}, "
            f"attention_resolutions={self.attention_resolutions}, num_heads={self.num_heads}, "
            f"num_classes={self.num_classes}, scale_shift={self.scale_shift}"
            + "".join(f", {k}={v}" for k, v in (("context_dim", self.context_dim),
                      ("pooled_dim", self.pooled_dim), ("concat_channels", self.concat_channels),
                      ("level_conditioning", self.level_conditioning)) if v)
        )  # fmt: skip
