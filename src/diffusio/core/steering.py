"""Steering hooks shared by every sampler (DESIGN.md, "Two kinds of steering").

* **Prediction modifiers** (``guidance=[...]``) change what the model predicts at a step:
  ``modifier(pred, t, ctx) -> Prediction``. Shipped here: :class:`ClipX0` (DDPM's x0 clipping
  to the data range), :class:`DynamicThreshold` (Imagen, Saharia et al. 2022, Sec. 2.3),
  :class:`ClassifierFreeGuidance` (Ho & Salimans 2021; any null: a class label, or NaN rows for
  vector conditions), :class:`ComposedGuidance` (Decision Diffuser's composition of several
  conditions, Ajay et al. 2023, eq. 9) and :class:`ClassifierGuidance` (Dhariwal & Nichol 2021,
  Alg. 1 and 2). Loss guidance (DPS / LGD-MC) is
  :class:`diffusio.core.loss_guidance.LossGuidance` and Diffuser's value guidance
  :class:`diffusio.core.value_guidance.ValueGuidance`. Observers are not modifiers: they are a sampler's
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
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import Tensor

from .parameterization import Prediction

if TYPE_CHECKING:
    from .samplers.base import SamplingContext

__all__ = [
    "ClassifierFreeGuidance",
    "ClassifierGuidance",
    "ClipX0",
    "ComposedGuidance",
    "Constraint",
    "DynamicThreshold",
    "Guidance",
    "Inpaint",
    "null_condition",
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


Null = int | float | Tensor


def _as_null(null: Any) -> Null:
    """A null condition normalised: a tensor, an int (any integral number) or a float."""
    if isinstance(null, Tensor):
        return null
    if isinstance(null, numbers.Integral) and not isinstance(null, bool):
        return int(null)
    if isinstance(null, numbers.Real) and not isinstance(null, bool):
        return float(null)
    raise TypeError(f"a null condition must be an int label, a float or a tensor, got {null!r}")


def null_condition(value: Any, null: Null, x: Tensor) -> Tensor:
    """The null condition in the place of ``value`` (the condition it replaces; a scalar is one
    value for every example of the batch x).

    An int ``null`` is a class label: labels (N,) of it (long). A float (e.g. NaN, the null row
    of the temporal U-Net's vector conditions) fills ``value``'s shape, in ``value``'s floating
    dtype. A tensor is broadcast to ``value``'s shape. ``value=None`` (no condition to shape
    it after) takes an int null as labels (N,) and a tensor as it is.
    """
    null = _as_null(null)
    if isinstance(null, int):
        ref = _labels(0 if value is None else value, x)
        return torch.full_like(ref, null, dtype=torch.long)
    if value is None:
        if isinstance(null, Tensor):
            return null.to(x.device)
        raise ValueError("a float null condition needs the condition it replaces for its shape")
    c = torch.as_tensor(value, device=x.device)
    if c.dim() == 0:
        c = c.expand(x.shape[0])
    dtype = c.dtype if c.is_floating_point() else x.dtype
    if isinstance(null, Tensor):
        return null.to(device=x.device, dtype=dtype).expand(c.shape)
    return torch.full(c.shape, float(null), dtype=dtype, device=x.device)


class ClassifierFreeGuidance:
    """Classifier-free guidance (Ho & Salimans 2021, eq. 6):
    ``eps = (1 + w) eps(x, t, c) - w eps(x, t, null)``.

    The prediction it modifies is the conditional one (pass ``cond={key: c}`` to the sampler);
    the unconditional one costs one more counted network call with ``cond[key]`` replaced by
    the null (:func:`null_condition`): ``null_label`` is the network's null class (an int, e.g.
    ``net.num_classes``), or a float / tensor for a vector condition, e.g. ``float("nan")`` for
    the temporal U-Net, which reads an all-NaN row as its learned null. ``w = 0`` is the plain
    conditional model. A learned variance is taken from the conditional prediction.
    """

    def __init__(self, weight: float, null_label: Null, key: str = "y"):
        if not math.isfinite(weight):
            raise ValueError(f"guidance weight must be finite, got {weight}")
        self.weight, self.null_label, self.key = float(weight), _as_null(null_label), key

    def __call__(self, pred: Prediction, t: Tensor, ctx: SamplingContext) -> Prediction:
        if self.weight == 0:
            return pred
        if self.key not in ctx.cond:
            raise ValueError(f"classifier-free guidance needs cond[{self.key!r}] (the labels)")
        null = null_condition(ctx.cond[self.key], self.null_label, pred.x)
        uncond = ctx.evaluate(pred.x, t, **{**ctx.cond, self.key: null})
        w = self.weight
        return pred.with_eps((1 + w) * pred.eps - w * uncond.eps)


Conditions = (
    Mapping[str, tuple[Mapping[str, Any], float]] | Sequence[tuple[Mapping[str, Any], float]]
)


class ComposedGuidance:
    """Composed classifier-free guidance (Decision Diffuser, Ajay et al. 2023, eq. 9; Liu et al.
    2022's composable diffusion): ``eps = eps(x, null) + sum_i w_i (eps(x, c_i) - eps(x, null))``.

    ``conditions``: ``{name: (cond_i, w_i)}`` (or a sequence of ``(cond_i, w_i)``), each
    ``cond_i`` a dict of conditioning entries, e.g. ``{"y": 2}`` or ``{"returns": r}``.
    Decision Diffuser's eq. 9 uses one scale s for every condition: ``w_i = s``. One condition
    with ``w = 1 + w_cfg`` is :class:`ClassifierFreeGuidance` with weight ``w_cfg``; weights
    summing to 1 are a product of experts with no extra guidance. In scores the result is
    ``sum_i w_i grad log p_t(x | c_i) - (sum_i w_i - 1) grad log p_t(x)``.

    The unconditional prediction:

    * ``null=None``: the prediction the modifier receives, i.e. the sampler's own call; run the
      sampler with the null conditioning as its ``cond`` (or none, for a network whose omitted
      condition is its null). Each condition costs one counted call with
      ``{**cond, **cond_i}``: ``1 + k`` calls a step.
    * ``null={key: value}``: null values per key (:func:`null_condition`: an int class, a float
      such as NaN, a tensor), shaped after the conditions' entries of that key; the unconditional
      call uses ``{**cond, **null}`` (one more call, ``2 + k`` a step: the sampler's own is
      unused) and each condition ``{**cond, **null, **cond_i}``, so the keys a condition does
      not set stay null.

    A learned variance is taken from the received prediction.
    """

    def __init__(self, conditions: Conditions, null: Mapping[str, Null] | None = None):
        items = list(conditions.values() if isinstance(conditions, Mapping) else conditions)
        if not items:
            raise ValueError("ComposedGuidance needs at least one (cond, weight) condition")
        parsed: list[tuple[dict[str, Any], float]] = []
        for item in items:
            if not (isinstance(item, tuple | list) and len(item) == 2):
                raise ValueError(f"each condition is a (cond dict, weight) pair, got {item!r}")
            cond, weight = item
            if not isinstance(cond, Mapping):
                raise ValueError(f"a condition's cond must be a dict, got {type(cond).__name__}")
            if not math.isfinite(weight):
                raise ValueError(f"composed guidance weights must be finite, got {weight}")
            parsed.append((dict(cond), float(weight)))
        self.conditions = parsed
        self.names = list(conditions) if isinstance(conditions, Mapping) else None
        self.null = None if null is None else {k: _as_null(v) for k, v in null.items()}

    def _null(self, x: Tensor, cond: Mapping[str, Any]) -> dict[str, Any]:
        out = {}
        for key, value in (self.null or {}).items():
            refs = [c[key] for c, _ in self.conditions if key in c] + [cond.get(key)]
            out[key] = null_condition(next((r for r in refs if r is not None), None), value, x)
        return out

    def __call__(self, pred: Prediction, t: Tensor, ctx: SamplingContext) -> Prediction:
        x = pred.x
        base = dict(ctx.cond)
        if self.null is None:
            uncond = pred.eps
        else:
            base.update(self._null(x, ctx.cond))
            uncond = ctx.evaluate(x, t, **base).eps
        eps = uncond
        for cond, weight in self.conditions:
            if weight != 0:
                eps = eps + weight * (ctx.evaluate(x, t, **{**base, **cond}).eps - uncond)
        return pred.with_eps(eps)


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
