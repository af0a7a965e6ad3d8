"""What a network predicts, and exact conversions between eps, x0, v and the score.

With ``x = alpha x0 + sigma eps`` (any process):

* eps   -> x0 = (x - sigma eps) / alpha                     (DDPM eq. 15)
* score = -eps / sigma                                      (Vincent 2011; Score SDE eq. 7)
* v     = alpha eps - sigma x0                              (Salimans & Ho 2022, Sec. 4)
  -> x0 = (alpha x - sigma v) / (alpha^2 + sigma^2),  eps = (sigma x + alpha v) / (alpha^2 + sigma^2)

:class:`Prediction` holds one network output in its native form and converts lazily, so a
score-predicting model stays exact where sigma = 0 and an eps-predicting one where alpha = 0.
"""

from __future__ import annotations

from functools import cached_property

import torch
from torch import Tensor

__all__ = ["PREDICTIONS", "Prediction", "check_prediction"]

PREDICTIONS = ("eps", "x0", "v", "score")


def check_prediction(kind: str) -> str:
    """Validate a prediction name."""
    if kind not in PREDICTIONS:
        raise ValueError(f"unknown prediction {kind!r}; valid: {', '.join(PREDICTIONS)}")
    return kind


class Prediction:
    """A model's output at state ``x`` with coefficients ``alpha``, ``sigma`` (tensors broadcastable
    to x, or Python floats when every example shares one time).

    Attributes ``eps``, ``x0``, ``score`` and ``v`` are exact conversions of the native value.
    Guidance builds modified predictions with :meth:`with_eps` / :meth:`with_x0`, which keep
    ``variance_interp``: the raw variance output of a model with ``variance_head="learned"``,
    the value improved DDPM interpolates between log beta and log beta-tilde (its ``v``, Nichol
    & Dhariwal 2021, eq. 15; not v-prediction), or None. ``variance`` is its older, read-only
    name.
    """

    def __init__(
        self,
        kind: str,
        value: Tensor,
        x: Tensor,
        alpha: Tensor | float,
        sigma: Tensor | float,
        variance_interp: Tensor | None = None,
    ):
        self.kind = check_prediction(kind)
        self.value, self.x, self.alpha, self.sigma = value, x, alpha, sigma
        self.variance_interp = variance_interp
        self.__dict__[kind] = value  # seed the cache with the native form

    @property
    def variance(self) -> Tensor | None:
        """The older name of :attr:`variance_interp` (read-only)."""
        return self.variance_interp

    @cached_property
    def eps(self) -> Tensor:
        a, s, x = self.alpha, self.sigma, self.x
        if self.kind == "x0":
            return (x - a * self.value) / s
        if self.kind == "v":
            return (s * x + a * self.value) / (a * a + s * s)
        return -s * self.value  # score

    @cached_property
    def x0(self) -> Tensor:
        a, s, x = self.alpha, self.sigma, self.x
        if self.kind == "eps":
            return (x - s * self.value) / a
        if self.kind == "v":
            return (a * x - s * self.value) / (a * a + s * s)
        return (x + s * s * self.value) / a  # score

    @cached_property
    def score(self) -> Tensor:
        return -self.eps / self.sigma

    @cached_property
    def v(self) -> Tensor:
        return self.alpha * self.eps - self.sigma * self.x0

    def combine(self, c_x0: float, c_eps: float) -> Tensor:
        """``c_x0 * x0 + c_eps * eps`` (the form of every DDPM/DDIM step), fused into two tensor
        operations from the native value when both coefficients and alpha, sigma are floats."""
        a, s = self.alpha, self.sigma
        if isinstance(a, float) and isinstance(s, float) and self.kind in ("eps", "x0"):
            if self.kind == "eps":  # x0 = (x - s eps) / a
                return torch.add(self.x.mul(c_x0 / a), self.value, alpha=c_eps - c_x0 * s / a)
            if s > 0:  # eps = (x - a x0) / s
                return torch.add(self.x.mul(c_eps / s), self.value, alpha=c_x0 - c_eps * a / s)
        return c_x0 * self.x0 + c_eps * self.eps

    def get(self, kind: str) -> Tensor:
        """The prediction in the named parameterization."""
        return getattr(self, check_prediction(kind))

    def with_eps(self, eps: Tensor) -> Prediction:
        """A prediction of the same state with a new eps."""
        return Prediction("eps", eps, self.x, self.alpha, self.sigma, self.variance_interp)

    def with_x0(self, x0: Tensor) -> Prediction:
        """A prediction of the same state with a new x0."""
        return Prediction("x0", x0, self.x, self.alpha, self.sigma, self.variance_interp)

    def with_score(self, score: Tensor) -> Prediction:
        """A prediction of the same state with a new score."""
        return Prediction("score", score, self.x, self.alpha, self.sigma, self.variance_interp)
