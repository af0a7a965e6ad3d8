"""Per-dimension standardisation ``y = (x - mean) / std`` and its effect on likelihoods.

A model trained on standardised data reports an NLL in normalised units. By the change of
variables ``p_x(x) = p_y(y) |det dy/dx|`` with ``log |det dy/dx| = -sum_d log std_d``,

    nll_data = nll_norm - log|det dy/dx| = nll_norm + sum_d log std_d,

:meth:`Standardizer.log_det_jacobian` returns ``log|det dy/dx|`` per example, so
``nll_data = nll_norm - standardizer.log_det_jacobian()`` (nats per example).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

__all__ = ["Standardizer"]


class _fit:  # noqa: N801 - a descriptor used as a method name
    """``Standardizer.fit(x)`` builds a new fitted standardiser; ``s.fit(x)`` fits ``s`` in place
    (and returns it), so both spellings work."""

    def __get__(self, obj: Standardizer | None, cls: type[Standardizer]):
        def fit(x: Tensor, eps: float = 1e-8) -> Standardizer:
            target = cls() if obj is None else obj
            return target._fit(x, eps)

        fit.__doc__ = Standardizer._fit.__doc__
        return fit


class Standardizer:
    """Per-dimension standardiser over the first (sample) axis; statistics kept in float64.

    ``Standardizer.fit(x)`` (or ``Standardizer().fit(x)``) estimates ``mean`` and ``std``
    (population std, floored at ``eps`` so constant columns map to 0 instead of NaN) over axis 0
    of x (N, ...). ``transform``/``inverse`` cast to the input's dtype and device.
    """

    fit = _fit()

    def __init__(self, mean: Any = None, std: Any = None):
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std, or neither")
        self.mean: Tensor | None = None
        self.std: Tensor | None = None
        if mean is not None:
            mean = torch.as_tensor(mean, dtype=torch.float64)
            std = torch.as_tensor(std, dtype=torch.float64)
            if mean.shape != std.shape:
                raise ValueError(f"mean {tuple(mean.shape)} and std {tuple(std.shape)} differ")
            if not (std > 0).all() or not torch.isfinite(std).all():
                raise ValueError("std must be positive and finite")
            self.mean, self.std = mean, std

    def _fit(self, x: Tensor, eps: float = 1e-8) -> Standardizer:
        """Estimate per-dimension mean and std of x (N, ...) over axis 0; returns the fitted
        standardiser."""
        x = torch.as_tensor(x).detach().to("cpu", torch.float64)
        if x.dim() < 2 or x.shape[0] < 1:
            raise ValueError(f"expected x of shape (N, D) with N >= 1, got {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise ValueError("x contains NaN or Inf")
        self.mean = x.mean(0)
        self.std = x.std(0, unbiased=False).clamp_min(eps)
        return self

    @property
    def fitted(self) -> bool:
        return self.mean is not None

    def _stats(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.mean is None or self.std is None:
            raise RuntimeError("Standardizer is not fitted; call fit(x) first")
        if tuple(x.shape[1:]) != tuple(self.mean.shape):
            raise ValueError(
                f"expected shape (N, {', '.join(map(str, self.mean.shape))}), got {tuple(x.shape)}"
            )
        return self.mean.to(x), self.std.to(x)

    def transform(self, x: Tensor) -> Tensor:
        """``(x - mean) / std``."""
        mean, std = self._stats(x)
        return (x - mean) / std

    def inverse(self, y: Tensor) -> Tensor:
        """``y * std + mean``."""
        mean, std = self._stats(y)
        return y * std + mean

    def log_det_jacobian(self, rows: int | Tensor | None = None) -> float | Tensor:
        """``log|det dy/dx| = -sum log std`` per example: a float, or a float64 tensor of shape
        (rows,) when ``rows`` (a count, or a batch whose first axis is counted) is given.

        ``nll_data = nll_norm - log_det_jacobian()``."""
        if self.std is None:
            raise RuntimeError("Standardizer is not fitted; call fit(x) first")
        value = -float(torch.log(self.std).sum())
        if rows is None:
            return value
        n = rows.shape[0] if isinstance(rows, Tensor) else int(rows)
        return torch.full((n,), value, dtype=torch.float64)

    def state_dict(self) -> dict[str, list]:
        """``{"mean": [...], "std": [...]}`` as plain (nested) lists of floats: JSON-able."""
        if self.mean is None or self.std is None:
            raise RuntimeError("Standardizer is not fitted; call fit(x) first")
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> Standardizer:
        """Inverse of :meth:`state_dict`."""
        missing = {"mean", "std"} - set(state)
        if missing:
            raise ValueError(f"state is missing {', '.join(sorted(missing))}")
        return cls(state["mean"], state["std"])

    def __repr__(self) -> str:
        if self.mean is None:
            return "Standardizer(unfitted)"
        return f"Standardizer(shape={tuple(self.mean.shape)})"
