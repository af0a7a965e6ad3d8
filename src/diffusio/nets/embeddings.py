"""Time embeddings: continuous ``t`` of shape (N,) to features of shape (N, dim).

* :class:`SinusoidalEmbedding` -- the Transformer position encoding (Vaswani et al. 2017, Sec.
  3.5) as DDPM uses it for the diffusion step (Ho et al. 2020, Sec. 4 and App. B,
  ``get_timestep_embedding``): ``[sin(s w_k), cos(s w_k)]`` with ``w_k = max_period^(-k/(h-1))``,
  ``k = 0..h-1``, ``h = dim // 2``. ``s = 1000 t`` so that ``t`` in [0, 1] covers the same range
  as DDPM's integer steps 0..999.
* :class:`FourierEmbedding` -- Gaussian random Fourier features (Tancik et al. 2020, "Fourier
  Features Let Networks Learn High Frequency Functions"), as the Score SDE code uses them for
  the noise level (Song et al. 2021, App. C.1, ``GaussianFourierProjection``):
  ``[sin(2 pi W t), cos(2 pi W t)]`` with fixed ``W ~ N(0, scale^2)`` stored as a buffer.

An odd ``dim`` is padded with one zero feature (as DDPM does).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["FourierEmbedding", "SinusoidalEmbedding", "class_labels"]


def _check_times(t: Tensor) -> Tensor:
    if t.dim() == 0:
        t = t.reshape(1)
    if t.dim() != 1:
        raise ValueError(f"t must have shape (N,), got {tuple(t.shape)}")
    return t if t.is_floating_point() else t.to(torch.get_default_dtype())


def _pad(features: Tensor, dim: int) -> Tensor:
    if features.shape[1] < dim:
        features = nn.functional.pad(features, (0, dim - features.shape[1]))
    return features


class SinusoidalEmbedding(nn.Module):
    """DDPM's sinusoidal step embedding of ``1000 t`` (Ho et al. 2020, Sec. 4 / App. B;
    Vaswani et al. 2017, Sec. 3.5). (N,) -> (N, dim)."""

    def __init__(self, dim: int, max_period: float = 10000.0):
        super().__init__()
        if dim < 2:
            raise ValueError(f"embedding dim must be at least 2, got {dim}")
        if max_period <= 1:
            raise ValueError(f"max_period must exceed 1, got {max_period}")
        self.dim, self.max_period = int(dim), float(max_period)

    def forward(self, t: Tensor) -> Tensor:
        t = _check_times(t)
        half = self.dim // 2
        # Frequencies in float64 (cheap, and exact for float64 inputs), then t's dtype.
        exponent = torch.arange(half, dtype=torch.float64, device=t.device) / max(half - 1, 1)
        freqs = torch.exp(-math.log(self.max_period) * exponent).to(t.dtype)
        args = (1000.0 * t)[:, None] * freqs[None, :]
        return _pad(torch.cat([torch.sin(args), torch.cos(args)], dim=1), self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, max_period={self.max_period:g}"


class FourierEmbedding(nn.Module):
    """Gaussian Fourier features ``[sin(2 pi W t), cos(2 pi W t)]``, ``W ~ N(0, scale^2)`` fixed
    (Tancik et al. 2020; Song et al. 2021, Score SDE App. C.1). (N,) -> (N, dim).

    ``W`` is drawn from its own generator seeded with ``seed`` (the global RNG is untouched) and
    registered as a buffer, so it is saved with the model and never trained.
    """

    def __init__(self, dim: int, scale: float = 16.0, seed: int = 0):
        super().__init__()
        if dim < 2:
            raise ValueError(f"embedding dim must be at least 2, got {dim}")
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        self.dim, self.scale = int(dim), float(scale)
        gen = torch.Generator().manual_seed(int(seed))
        W = torch.randn(self.dim // 2, generator=gen, dtype=torch.float64) * self.scale
        self.register_buffer("W", W.to(torch.get_default_dtype()))

    def forward(self, t: Tensor) -> Tensor:
        t = _check_times(t)
        args = 2 * math.pi * t[:, None] * self.W.to(t)[None, :]
        return _pad(torch.cat([torch.sin(args), torch.cos(args)], dim=1), self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, scale={self.scale:g}"


def class_labels(
    y: Tensor | int | None, num_classes: int | None, n: int, device: torch.device, owner: str
) -> Tensor | None:
    """Validated class labels (n,) for a network with ``num_classes`` classes plus the null
    class ``num_classes`` (classifier-free guidance, Ho & Salimans 2021): ``y=None`` means the
    null class for every row, a scalar is broadcast; None for an unconditional network (which
    must get no ``y``). ``owner`` names the network in error messages."""
    if num_classes is None:
        if y is not None:
            raise ValueError(f"this {owner} is unconditional (num_classes=None) but got y")
        return None
    if y is None:
        return torch.full((n,), num_classes, dtype=torch.long, device=device)
    y = torch.as_tensor(y, device=device)
    if y.is_floating_point() or y.is_complex():
        raise ValueError(f"class labels y must be integers, got dtype {y.dtype}")
    y = y.long()
    if y.dim() == 0:
        y = y.expand(n)
    if y.shape != (n,):
        raise ValueError(f"y must have shape ({n},) or be a scalar, got {tuple(y.shape)}")
    if y.numel() and (y.min() < 0 or y.max() > num_classes):
        raise ValueError(
            f"class labels must lie in [0, {num_classes}] ({num_classes} is the null class), "
            f"got range [{int(y.min())}, {int(y.max())}]"
        )
    return y
