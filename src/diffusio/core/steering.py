"""Steering hooks shared by every sampler (DESIGN.md, "Two kinds of steering").

* **Prediction modifiers** (``guidance=[...]``) change what the model predicts at a step:
  ``modifier(pred, t, ctx) -> Prediction``. Shipped here: :class:`ClipX0` (DDPM's x0 clipping
  to the data range) and :class:`DynamicThreshold` (Imagen, Saharia et al. 2022, Sec. 2.3).
* **State constraints** (``constraints=[...]``) overwrite part of the state after a step:
  ``constraint(x, t, ctx) -> x`` where ``t`` is the new state's time, or ``None`` once the
  sample is clean. Shipped here: :class:`Inpaint`, replacement inpainting (Song et al. 2021,
  Score SDE App. I.2): known entries are re-noised to the current level, ``alpha(t) x + sigma(t) z``.

``ctx`` is the :class:`~diffusio.core.samplers.base.SamplingContext` of the running sampler; a
modifier that needs more network calls (classifier-free guidance) makes them through
``ctx.evaluate`` so they are counted in the NFE.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import torch
from torch import Tensor

from .parameterization import Prediction

if TYPE_CHECKING:
    from .samplers.base import SamplingContext

__all__ = ["Guidance", "Constraint", "ClipX0", "DynamicThreshold", "Inpaint"]


class Guidance(Protocol):
    """Modifies a prediction at time ``t`` (a tensor of shape (N,))."""

    def __call__(self, pred: Prediction, t: Tensor, ctx: SamplingContext) -> Prediction: ...


class Constraint(Protocol):
    """Overwrites part of the state ``x`` now at time ``t`` (``None`` = clean data)."""

    def __call__(self, x: Tensor, t: float | None, ctx: SamplingContext) -> Tensor: ...


class ClipX0:
    """Clip the predicted x0 to ``[low, high]`` and recompute eps from it (DDPM's sampler)."""

    def __init__(self, low: float = -1.0, high: float = 1.0):
        if low >= high:
            raise ValueError(f"ClipX0 needs low < high, got {low}, {high}")
        self.low, self.high = low, high

    def __call__(self, pred: Prediction, t: Tensor, ctx: SamplingContext) -> Prediction:
        return pred.with_x0(pred.x0.clamp(self.low, self.high))


class DynamicThreshold:
    """Imagen's dynamic thresholding (Saharia et al. 2022, Sec. 2.3).

    Per sample, ``s`` is the ``percentile`` quantile of ``|x0|``, at least 1 (and at most
    ``max_threshold``); x0 is clipped to ``[-s, s]`` and divided by ``s``.
    """

    def __init__(self, percentile: float = 0.995, max_threshold: float | None = None):
        if not 0.0 < percentile <= 1.0:
            raise ValueError(f"percentile must be in (0, 1], got {percentile}")
        self.percentile, self.max_threshold = percentile, max_threshold

    def __call__(self, pred: Prediction, t: Tensor, ctx: SamplingContext) -> Prediction:
        x0 = pred.x0
        flat = x0.reshape(x0.shape[0], -1).abs()
        s = torch.quantile(flat, self.percentile, dim=1).clamp_min(1.0)
        if self.max_threshold is not None:
            s = s.clamp_max(self.max_threshold)
        s = s.reshape(-1, *([1] * (x0.dim() - 1)))
        return pred.with_x0(torch.maximum(torch.minimum(x0, s), -s) / s)


class Inpaint:
    """Replacement inpainting: where ``mask`` is true the state is set to the known data noised
    to the current level (``alpha(t) known + sigma(t) z``), and to ``known`` itself at the end.

    ``known`` and ``mask`` broadcast against the sample shape.
    """

    def __init__(self, known: Tensor, mask: Tensor):
        if not torch.isfinite(torch.where(mask.bool(), known, 0.0)).all():  # only known entries
            raise ValueError("Inpaint: the known values contain NaN or Inf")
        self.known, self.mask = known, mask.bool()

    def __call__(self, x: Tensor, t: float | None, ctx: SamplingContext) -> Tensor:
        known = self.known.to(x).expand_as(x)
        mask = self.mask.to(x.device).expand_as(x)
        if t is None:
            return torch.where(mask, known, x)
        a, s = ctx.coefficients(t)
        noised = a * known + s * ctx.noise_like(x)
        return torch.where(mask, noised, x)
