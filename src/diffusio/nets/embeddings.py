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

__all__ = [
    "ClassConditional", "FourierEmbedding", "SinusoidalEmbedding", "check_num_classes",
    "class_labels", "time_embedding", "write_known",
]  # fmt: skip


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


class _SinCosEmbedding(nn.Module):
    """``[sin(a), cos(a)]`` of the angles ``a = self._angles(t)`` (N, dim // 2), padded to
    ``dim``: what both embeddings share."""

    def __init__(self, dim: int):
        super().__init__()
        if dim < 2:
            raise ValueError(f"embedding dim must be at least 2, got {dim}")
        self.dim = int(dim)

    def _angles(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, t: Tensor) -> Tensor:
        args = self._angles(_check_times(t))
        return _pad(torch.cat([torch.sin(args), torch.cos(args)], dim=1), self.dim)


class SinusoidalEmbedding(_SinCosEmbedding):
    """DDPM's sinusoidal step embedding of ``1000 t`` (Ho et al. 2020, Sec. 4 / App. B;
    Vaswani et al. 2017, Sec. 3.5). (N,) -> (N, dim)."""

    def __init__(self, dim: int, max_period: float = 10000.0):
        super().__init__(dim)
        if max_period <= 1:
            raise ValueError(f"max_period must exceed 1, got {max_period}")
        self.max_period = float(max_period)

    def _angles(self, t: Tensor) -> Tensor:
        half = self.dim // 2
        # Frequencies in float64 (cheap, and exact for float64 inputs), then t's dtype.
        exponent = torch.arange(half, dtype=torch.float64, device=t.device) / max(half - 1, 1)
        freqs = torch.exp(-math.log(self.max_period) * exponent).to(t.dtype)
        return (1000.0 * t)[:, None] * freqs[None, :]

    def extra_repr(self) -> str:
        return f"dim={self.dim}, max_period={self.max_period:g}"


class FourierEmbedding(_SinCosEmbedding):
    """Gaussian Fourier features ``[sin(2 pi W t), cos(2 pi W t)]``, ``W ~ N(0, scale^2)`` fixed
    (Tancik et al. 2020; Song et al. 2021, Score SDE App. C.1). (N,) -> (N, dim).

    ``W`` is drawn from its own generator seeded with ``seed`` (the global RNG is untouched) and
    registered as a buffer, so it is saved with the model and never trained.
    """

    def __init__(self, dim: int, scale: float = 16.0, seed: int = 0):
        super().__init__(dim)
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        self.scale = float(scale)
        gen = torch.Generator().manual_seed(int(seed))
        W = torch.randn(self.dim // 2, generator=gen, dtype=torch.float64) * self.scale
        self.register_buffer("W", W.to(torch.get_default_dtype()))

    def _angles(self, t: Tensor) -> Tensor:
        return 2 * math.pi * t[:, None] * self.W.to(t)[None, :]

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


def write_known(x: Tensor, known: Tensor | None, name: str) -> Tensor:
    """``x`` with the entries of ``known`` that are not NaN written in: a net's input
    conditioning on clean known values (Diffuser's ``apply_conditioning`` on the network input;
    DiffPhyCon's inpainted initial and target states). ``known`` must have x's shape."""
    if known is None:
        return x
    known = torch.as_tensor(known).to(x)
    if known.shape != x.shape:
        raise ValueError(f"{name}: cond['known'] must have x's shape {tuple(x.shape)}, "
                         f"got {tuple(known.shape)}")  # fmt: skip
    return torch.where(torch.isnan(known), x, known)


def check_num_classes(num_classes: int | None) -> int | None:
    """``num_classes`` as an int (a positive integer) or None (unconditional)."""
    if num_classes is not None and (int(num_classes) != num_classes or num_classes < 1):
        raise ValueError(f"num_classes must be a positive integer or None, got {num_classes!r}")
    return None if num_classes is None else int(num_classes)


def time_embedding(
    embedding: nn.Module, width: int, activation: type[nn.Module] = nn.SiLU
) -> nn.Sequential:
    """``Linear(act(Linear(embedding(t))))``: the raw time features (``embedding.dim`` wide)
    lifted to ``width`` by a two-layer MLP, as DDPM lifts its step embedding (Ho et al. 2020,
    App. B)."""
    return nn.Sequential(
        embedding, nn.Linear(embedding.dim, width), activation(), nn.Linear(width, width)
    )


class ClassConditional:
    """The time and class conditioning of a network ``net(x, t, y=None)`` (a mixin for an
    :class:`~torch.nn.Module`): :meth:`_init_conditioning` adds the modules ``time_embed`` and
    ``class_embed`` (``nn.Embedding(num_classes + 1, width)``, its last row the null class; None
    when unconditional), :meth:`_conditioning` returns ``time_embed(t) [+ class_embed(y)]``."""

    num_classes: int | None
    time_embed: nn.Module
    class_embed: nn.Embedding | None

    def _init_conditioning(
        self,
        embedding: nn.Module,
        width: int,
        activation: type[nn.Module] = nn.SiLU,
        num_classes: int | None = None,
    ) -> None:
        self.num_classes = check_num_classes(num_classes)
        self.time_embed = time_embedding(embedding, width, activation)
        self.class_embed = (
            nn.Embedding(self.num_classes + 1, width) if self.num_classes is not None else None
        )

    @property
    def null_class(self) -> int | None:
        """The label index meaning "no class" (``num_classes``), or None if unconditional."""
        return self.num_classes

    def _conditioning(self, x: Tensor, t: Tensor | float, y: Tensor | int | None) -> Tensor:
        """``time_embed(t) [+ class_embed(y)]`` (N, width) for a batch ``x`` of N rows: ``t`` a
        scalar or (N,), ``y`` as :func:`class_labels` takes it."""
        n = x.shape[0]
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        if t.dim() == 0:
            t = t.expand(n)
        if t.shape != (n,):
            raise ValueError(f"t must be a scalar or of shape ({n},), got {tuple(t.shape)}")
        c = self.time_embed(t)
        labels = class_labels(y, self.num_classes, n, x.device, type(self).__name__)
        if labels is not None:
            c = c + self.class_embed(labels)
        return c
