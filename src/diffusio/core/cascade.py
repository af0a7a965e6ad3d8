"""Cascaded diffusion: noise-conditioning augmentation and the super-resolution model adapter.

A cascade (Ho et al. 2022, "Cascaded Diffusion Models for High Fidelity Image Generation",
JMLR; Saharia et al. 2022, Imagen, Sec. 2.4) samples a low-resolution image with a base model,
then a super-resolution diffusion model draws the high-resolution image conditioned on it, the
low-resolution image up-sampled to the target size and concatenated to x_t as extra input
channels. Training on clean low-resolution images and sampling on generated ones compounds the
base model's errors; *conditioning augmentation* corrupts the conditioning image during training
and tells the network how much. The Gaussian version used by Imagen is the forward process
itself::

    z_aug = alpha(s) z + sigma(s) e,   e ~ N(0, I),   s = aug_level in [0, t_max]

with ``s ~ U(0, s_max)`` per example in training; at sampling one fixed ``s`` (swept in the
paper's ablation, Imagen Sec. 2.4 and App. F) is applied once to the base model's sample and
the same value is told to the network. ``s = 0`` is no augmentation: the clean image, exactly
(for every process, VE included, whose sigma(0) is not 0).

* :func:`noise_augment` -- the corruption above; returns the noised image and the level.
* :func:`upsample` / :func:`downsample` -- Imagen's 'resize' (nearest or bilinear up-sampling)
  and the area average that makes a low-resolution training input from a high-resolution image.
* :class:`SuperResolutionModel` -- a :class:`~diffusio.core.model.DiffusionModel` adapter (in
  the style of k-diffusion's ``external.py`` wrappers): with ``cond={"low_res": z_aug,
  "aug_level": s}`` its net is called as ``net(x_t, t, concat=upsample(z_aug, (H, W)),
  aug_level=s, **rest)``, so every sampler, guidance and loss runs the super-resolution stage
  unchanged (a :class:`~diffusio.nets.UNet` with ``concat_channels=C_lo, level_conditioning=True``
  takes exactly those keywords).

Guidance scales. diffusio's :class:`~diffusio.core.steering.ClassifierFreeGuidance` with
``weight=w`` computes ``eps = (1 + w) eps(x, c) - w eps(x, null)``: Ho & Salimans 2021, eq. 6,
whose ``w = 0`` is the plain conditional model. Imagen (Sec. 2.2: ``eps = w eps(x, c) +
(1 - w) eps(x)``) and the guidance scale s of GLIDE / latent diffusion / DALL-E 2
(``eps(x) + s (eps(x, c) - eps(x))``) count from 1 instead: their ``w = 1`` (or ``s = 1``)
disables guidance. So a paper's scale ``s`` (Imagen's w) is diffusio's ``weight = s - 1``
(:func:`guidance_weight`), and diffusio's weight w is the scale ``s = 1 + w``; Imagen's sweep
``s in {1, 2, 3, 5, 7, 10}`` is ``weight in {0, 1, 2, 4, 6, 9}``. Dynamic thresholding
(Imagen Sec. 2.3) is :class:`~diffusio.core.steering.DynamicThreshold`, static clipping
:class:`~diffusio.core.steering.ClipX0`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.functional import avg_pool2d, interpolate

from .model import DiffusionModel
from .parameterization import Prediction
from .processes import Process, broadcast_like

__all__ = ["RESIZE_MODES", "SuperResolutionModel", "downsample", "guidance_weight",
           "noise_augment", "upsample"]  # fmt: skip

RESIZE_MODES = ("nearest", "bilinear")
_TORCH_MODES = {"nearest": "nearest-exact", "bilinear": "bilinear"}


def _size(size: int | tuple[int, int] | torch.Size) -> tuple[int, int]:
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if int(h) != h or int(w) != w or h < 1 or w < 1:
        raise ValueError(f"size must be positive integers (H, W), got {size!r}")
    return int(h), int(w)


def upsample(x: Tensor, size: int | tuple[int, int], mode: str = "nearest") -> Tensor:
    """Images (N, C, h, w) resized up to ``size`` (H, W) >= (h, w): ``nearest`` (by an integer
    factor, each pixel repeated) or ``bilinear`` (half-pixel centres, ``align_corners=False``)."""
    if mode not in RESIZE_MODES:
        raise ValueError(f"unknown resize mode {mode!r}; valid: {', '.join(RESIZE_MODES)}")
    if x.dim() != 4:
        raise ValueError(f"upsample expects images (N, C, h, w), got {tuple(x.shape)}")
    h, w = _size(size)
    if h < x.shape[2] or w < x.shape[3]:
        raise ValueError(f"upsample cannot shrink {tuple(x.shape[2:])} to {(h, w)}; use downsample")
    if (h, w) == tuple(x.shape[2:]):
        return x
    if mode == "bilinear":
        return interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    return interpolate(x, size=(h, w), mode=_TORCH_MODES[mode])


def downsample(x: Tensor, factor: int) -> Tensor:
    """The ``factor`` x ``factor`` block average of images (N, C, H, W) (H, W divisible by it):
    the low-resolution input of a cascade stage, e.g. 28 -> 14 for ``factor=2``."""
    if x.dim() != 4 or int(factor) != factor or factor < 1:
        raise ValueError(f"downsample needs images (N, C, H, W) and an integer factor >= 1, got "
                         f"{tuple(x.shape)} and {factor!r}")  # fmt: skip
    if x.shape[2] % factor or x.shape[3] % factor:
        raise ValueError(f"image size {tuple(x.shape[2:])} is not divisible by {factor}")
    return x if factor == 1 else avg_pool2d(x, int(factor))


def noise_augment(
    low_res: Tensor,
    level: Tensor | float | None,
    process: Process,
    generator: torch.Generator | None = None,
    *,
    max_level: float | None = None,
) -> tuple[Tensor, Tensor]:
    """Noise-conditioning augmentation: ``(alpha(s) low_res + sigma(s) e, s)`` per example.

    ``level``: the augmentation level s, a time of ``process`` -- a scalar or (N,) (sampling:
    one value of the sweep), or None (training: ``s ~ U(0, max_level)`` per example,
    ``max_level`` defaulting to ``process.t_max``). Rows with ``s = 0`` come back unchanged.
    The level is returned as (N,) in ``low_res``'s dtype; pass both to the network (see
    :class:`SuperResolutionModel`). The level is drawn before the noise, both from
    ``generator`` (the global RNG when None).
    """
    if low_res.dim() < 2:
        raise ValueError(f"low_res must have a batch dimension, got {tuple(low_res.shape)}")
    n, dtype, device = low_res.shape[0], low_res.dtype, low_res.device
    t_max = float(process.t_max)
    if level is None:
        top = t_max if max_level is None else float(max_level)
        if not 0.0 <= top <= t_max:
            raise ValueError(f"max_level must lie in [0, {t_max}], got {max_level!r}")
        level = top * torch.rand(n, generator=generator, dtype=dtype, device=device)
    else:
        if max_level is not None:
            raise ValueError("max_level is for drawn levels (level=None) only")
        level = torch.as_tensor(level, dtype=dtype, device=device)
        level = level.expand(n) if level.dim() == 0 else level
        if level.shape != (n,):
            raise ValueError(f"level must be a scalar or ({n},), got {tuple(level.shape)}")
        if not bool(((level >= 0) & (level <= t_max)).all()):
            raise ValueError(f"augmentation levels must lie in [0, t_max = {t_max}]")
    noise = torch.randn(low_res.shape, generator=generator, dtype=dtype, device=device)
    noised = process.marginal(low_res, level, noise).to(dtype)
    return torch.where(broadcast_like(level == 0, low_res), low_res, noised), level


def guidance_weight(scale: float) -> float:
    """diffusio's :class:`~diffusio.core.steering.ClassifierFreeGuidance` weight for a paper's
    guidance scale counted from 1 (Imagen's w, the s of GLIDE / LDM / DALL-E 2): ``scale - 1``
    (module docstring)."""
    if not math.isfinite(scale):
        raise ValueError(f"guidance scale must be finite, got {scale}")
    return float(scale) - 1.0


class SuperResolutionModel(DiffusionModel):
    """The super-resolution stage of a cascade as one model (module docstring).

    ``cond["low_res"]`` (N, C_lo, h, w), the (augmented) conditioning image, is up-sampled to
    x's size with ``mode`` and given to the net as ``concat``; ``cond["aug_level"]`` (a scalar
    or (N,); default 0, i.e. a clean low-resolution image) is given as ``aug_level``; every
    other entry passes through. Build the conditions with :meth:`condition`.
    """

    def __init__(self, net: nn.Module, process: Process, prediction: str = "eps",
                 variance_head: str | None = None, *, mode: str = "nearest") -> None:  # fmt: skip
        super().__init__(net, process, prediction, variance_head)
        if mode not in RESIZE_MODES:
            raise ValueError(f"unknown resize mode {mode!r}; valid: {', '.join(RESIZE_MODES)}")
        self.mode = mode

    def condition(self, low_res: Tensor, level: Tensor | float | None,
                  generator: torch.Generator | None = None, **options: Any) -> dict[str, Tensor]:  # fmt: skip
        """``{"low_res": z_aug, "aug_level": s}`` from :func:`noise_augment` under this model's
        process: ``level=None`` for training (drawn per example), a value for sampling."""
        noised, level = noise_augment(low_res, level, self.process, generator, **options)
        return {"low_res": noised, "aug_level": level}

    def _net_cond(self, x: Tensor, cond: dict[str, Any] | None) -> dict[str, Any]:
        rest = dict(cond or {})
        if "low_res" not in rest:
            raise ValueError("SuperResolutionModel needs cond['low_res'] (the low-resolution image)")
        low = torch.as_tensor(rest.pop("low_res")).to(x)
        if low.dim() != x.dim() or low.shape[0] != x.shape[0]:
            raise ValueError(f"low_res must be (N, C, h, w) with N = {x.shape[0]}, got "
                             f"{tuple(low.shape)}")  # fmt: skip
        level = torch.as_tensor(rest.pop("aug_level", 0.0), dtype=x.dtype, device=x.device)
        level = level.expand(x.shape[0]) if level.dim() == 0 else level
        return {**rest, "concat": upsample(low, x.shape[-2:], self.mode), "aug_level": level}

    def forward(self, x: Tensor, t: Tensor | float, **cond: Any) -> Tensor:
        return self.net(x, self._times(x, t), **self._net_cond(x, cond))

    def predict_with_coefficients(
        self, x: Tensor, t: Tensor, alpha: Tensor | float, sigma: Tensor | float,
        cond: dict[str, Any] | None = None,
    ) -> Prediction:  # fmt: skip
        return super().predict_with_coefficients(x, t, alpha, sigma, self._net_cond(x, cond))
