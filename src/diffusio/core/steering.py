"""Steering hooks shared by every sampler (DESIGN.md, "Two kinds of steering").

* **Prediction modifiers** (``guidance=[...]``) change what the model predicts at a step:
  ``modifier(pred, t, ctx) -> Prediction``. Shipped here: :class:`ClipX0` (DDPM's x0 clipping
  to the data range), :class:`DynamicThreshold` (Imagen, Saharia et al. 2022, Sec. 2.3),
  :class:`ClassifierFreeGuidance` (Ho & Salimans 2021) and :class:`ClassifierGuidance`
  (Dhariwal & Nichol 2021, Alg. 1 and 2). Observers are not modifiers: they are a sampler's
  ``callback`` (e.g. :class:`diffusio.core.samplers.X0Trace`).
* **State constraints** (``constraints=[...]``) overwrite part of the state after a step:
  ``constraint(x, t, ctx) -> x`` where ``t`` is the new state's time, or ``None`` once the
  sample is clean. Shipped here: :class:`Inpaint`, replacement inpainting (Song et al. 2021,
  Score SDE App. I.2): known entries are re-noised to the current level, ``alpha(t) x + sigma(t) z``.

With per-frame times (ddpm, ddim), ``t`` is a tensor of the state's leading shape, e.g. (N, L).

``ctx`` is the :class:`~diffusio.core.samplers.base.SamplingContext` of the running sampler; a
modifier that needs more network calls (classifier-free guidance) makes them through
``ctx.evaluate`` so they are counted in the NFE.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import torch
from torch import Tensor

from .parameterization import Prediction

if TYPE_CHECKING:
    from .samplers.base import SamplingContext

__all__ = [
    "ClassifierFreeGuidance",
    "ClassifierGuidance",
    "ClipX0",
    "Constraint",
    "DynamicThreshold",
    "Guidance",
    "Inpaint",
]


class Guidance(Protocol):
    """Modifies a prediction at time ``t`` (a tensor of shape (N,), or (N, L) per frame)."""

    def __call__(self, pred: Prediction, t: Tensor, ctx: SamplingContext) -> Prediction: ...


class Constraint(Protocol):
    """Overwrites part of the state ``x`` now at time ``t`` (``None`` = clean data; a tensor for
    per-frame times)."""

    def __call__(self, x: Tensor, t: float | Tensor | None, ctx: SamplingContext) -> Tensor: ...


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


def _labels(y: Tensor | int, x: Tensor) -> Tensor:
    y = torch.as_tensor(y, dtype=torch.long, device=x.device)
    return y.expand(x.shape[0]) if y.dim() == 0 else y


class ClassifierFreeGuidance:
    """Classifier-free guidance (Ho & Salimans 2021, eq. 6):
    ``eps = (1 + w) eps(x, t, y) - w eps(x, t, null)``.

    The prediction it modifies is the conditional one (pass ``cond={"y": labels}`` to the
    sampler); the unconditional one costs one more counted network call with ``y`` set to
    ``null_label`` (the network's null class, e.g. ``net.num_classes``). ``w = 0`` is the plain
    conditional model. A learned variance is taken from the conditional prediction.
    """

    def __init__(self, weight: float, null_label: int, key: str = "y"):
        if not math.isfinite(weight):
            raise ValueError(f"guidance weight must be finite, got {weight}")
        self.weight, self.null_label, self.key = float(weight), int(null_label), key

    def __call__(self, pred: Prediction, t: Tensor, ctx: SamplingContext) -> Prediction:
        if self.weight == 0:
            return pred
        if self.key not in ctx.cond:
            raise ValueError(f"classifier-free guidance needs cond[{self.key!r}] (the labels)")
        null = torch.full_like(_labels(ctx.cond[self.key], pred.x), self.null_label)
        uncond = ctx.evaluate(pred.x, t, **{**ctx.cond, self.key: null})
        w = self.weight
        return pred.with_eps((1 + w) * pred.eps - w * uncond.eps)


class ClassifierGuidance:
    """Classifier guidance (Dhariwal & Nichol 2021, Sec. 4) with a noise-aware classifier
    ``classifier(x_t, t) -> logits`` and target labels ``y``: ``g = grad_x log p(y | x_t, t)``.

    * ``mode="score"`` (their Alg. 2, for DDIM, and every other sampler): the score is shifted
      by ``scale * g``, i.e. ``eps <- eps - sigma(t) * scale * g``.
    * ``mode="mean"`` (their Alg. 1, ancestral sampling): the reverse kernel's mean is shifted by
      ``scale * Sigma * g`` with Sigma the step's posterior variance; the discrete samplers tell
      the modifier the step's target time (``ctx.next_time``), and the shift is made through x0,
      whose coefficient in the posterior mean is known. Without a next time (continuous
      samplers) it falls back to the score shift. It needs one time per step (no per-frame
      times).

    With per-frame times the classifier returns logits of shape (N, L, K) and ``labels`` (N,)
    apply to every frame.
    """

    MODES = ("score", "mean")

    def __init__(
        self,
        classifier: Callable[[Tensor, Tensor], Tensor],
        labels: Tensor | int,
        scale: float,
        mode: str = "score",
    ):
        if mode not in self.MODES:
            raise ValueError(f"unknown classifier guidance mode {mode!r}; valid: score, mean")
        if not math.isfinite(scale):
            raise ValueError(f"guidance scale must be finite, got {scale}")
        self.classifier, self.labels, self.scale, self.mode = classifier, labels, scale, mode

    def gradient(self, x: Tensor, t: Tensor) -> Tensor:
        """``grad_x log p(y | x, t)`` for every example."""
        y = _labels(self.labels, x)
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            logits = self.classifier(x_in, t)
            if logits.dtype in (torch.float16, torch.bfloat16):
                logits = logits.float()
            log_p = torch.log_softmax(logits, dim=-1)
            y = y.reshape(y.shape + (1,) * (log_p.dim() - 1 - y.dim())).expand(log_p.shape[:-1])
            chosen = log_p.gather(-1, y[..., None]).sum()
            (grad,) = torch.autograd.grad(chosen, x_in)
        return grad.to(x.dtype)

    def __call__(self, pred: Prediction, t: Tensor, ctx: SamplingContext) -> Prediction:
        if self.scale == 0:
            return pred
        grad = self.gradient(pred.x, t)
        next_time = getattr(ctx, "next_time", None)
        if self.mode == "mean" and (t.dim() > 1 or isinstance(next_time, Tensor)):
            raise ValueError("classifier guidance mode='mean' needs one time per step")
        if self.mode == "mean" and next_time is not None:
            a_t, s_t = ctx.coefficients(float(t[0]))
            a_s, s_s = ctx.coefficients(next_time)
            transition = s_t**2 - (a_t / a_s) ** 2 * s_s**2
            variance = s_s**2 * transition / s_t**2
            x0_coefficient = a_s * transition / s_t**2  # of x0 in the posterior mean
            return pred.with_x0(pred.x0 + self.scale * variance / x0_coefficient * grad)
        return pred.with_eps(pred.eps - pred.sigma * self.scale * grad)


class Inpaint:
    """Replacement inpainting: where ``mask`` is true the state is set to the known data noised
    to the current level (``alpha(t) known + sigma(t) z``), and to ``known`` itself at the end.

    ``known`` and ``mask`` broadcast against the sample shape.
    """

    def __init__(self, known: Tensor, mask: Tensor):
        if not torch.isfinite(torch.where(mask.bool(), known, 0.0)).all():  # only known entries
            raise ValueError("Inpaint: the known values contain NaN or Inf")
        self.known, self.mask = known, mask.bool()

    def __call__(self, x: Tensor, t: float | Tensor | None, ctx: SamplingContext) -> Tensor:
        known = self.known.to(x).expand_as(x)
        mask = self.mask.to(x.device).expand_as(x)
        if t is None:
            return torch.where(mask, known, x)
        a, s = ctx.coefficients_like(t, x) if isinstance(t, Tensor) else ctx.coefficients(t)
        noised = a * known + s * ctx.noise_like(x)
        return torch.where(mask, noised, x)
