"""The batch contract between datasets and the trainer.

A training batch is a :class:`Batch`: clean data ``x0`` (N, ...), a ``cond`` dict of named
tensors with N rows each (class labels ``"y"``, observation windows, returns, masks, text
tokens, observed values, ...; passed to the network as ``net(x_t, t, **cond)``), and an optional
loss ``mask`` of ``x0``'s shape (1 = the element counts in the loss, 0 = it does not; see
:func:`diffusio.core.losses.diffusion_loss`).

A :class:`TrainingSet` is a materialized dataset that yields such batches: the rows of ``x0``,
``cond`` and ``mask``, the *null value* of each condition key (what condition dropout puts in
its place; for class labels the null class ``num_classes``), a sequence of random
:data:`Transform` s applied to every batch (augmentations such as :class:`RandomFlip`), and
``net_options`` the data decide (``num_classes``, a condition's width, ...).

:func:`drop_conditions` is classifier-free guidance's condition dropout, generalised to any key
(Ho & Salimans 2021, Alg. 1: each condition replaced by its null value with probability
``p_uncond``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

__all__ = ["Batch", "RandomFlip", "TrainingSet", "Transform", "drop_conditions"]


@dataclass
class Batch:
    """One training batch: ``x0`` (N, ...), ``cond`` (name -> (N, ...) tensor) and an optional
    loss ``mask`` of ``x0``'s shape (1 = counts)."""

    x0: Tensor
    cond: dict[str, Tensor] = field(default_factory=dict)
    mask: Tensor | None = None

    def replace(self, **changes: Any) -> Batch:
        return dataclasses.replace(self, **changes)


Transform = Callable[[Batch, torch.Generator], Batch]
"""A random batch transform (an augmentation): ``transform(batch, generator) -> batch``, drawing
its randomness from ``generator`` only (the trainer's checkpointed batch generator), so that a
resumed run replays it exactly."""


class RandomFlip:
    """Flip each image (N, C, H, W) of a batch left-right with probability 1/2, its loss mask
    with it (one ``torch.rand(N)`` draw on the generator). Only for data whose mirror images
    belong to the data (CIFAR-10, faces...), not for digits."""

    def __call__(self, batch: Batch, generator: torch.Generator) -> Batch:
        x = batch.x0
        if x.dim() < 2:
            raise ValueError(f"expected images (N, ..., W), got shape {tuple(x.shape)}")
        flip = torch.rand(x.shape[0], generator=generator, device=generator.device) < 0.5
        where = flip.to(x.device).view(-1, *([1] * (x.dim() - 1)))
        mask = batch.mask
        if mask is not None:
            mask = torch.where(where, mask.flip(-1), mask)
        return batch.replace(x0=torch.where(where, x.flip(-1), x), mask=mask)

    def __repr__(self) -> str:
        return "RandomFlip()"


def _rows(name: str, t: Tensor, n: int) -> Tensor:
    t = torch.as_tensor(t)
    if t.dim() < 1 or t.shape[0] != n:
        raise ValueError(f"{name} must have {n} rows (one per example), got {tuple(t.shape)}")
    return t


@dataclass
class TrainingSet:
    """A materialized training set under the batch contract (module docstring).

    Args:
        x0: the examples (N, ...), float.
        cond: condition tensors, each with N rows; all of them reach the network.
        mask: loss mask of ``x0``'s shape (or broadcastable per row), 1 = counts; None: all count.
        null: each condition key's null value (a scalar or a tensor of one row's shape), used by
            :func:`drop_conditions`; keys without one cannot be dropped.
        transforms: random batch transforms applied in order after the rows are drawn.
        labels: class labels (N,) int64 where the source has them; they reach the network as
            ``cond["y"]`` only when a run asks for it (``class_conditional``).
        net_options: network constructor options the data decide (filled in where the network
            takes them and the config leaves them unset).
    """

    x0: Tensor
    cond: dict[str, Tensor] = field(default_factory=dict)
    mask: Tensor | None = None
    null: dict[str, Any] = field(default_factory=dict)
    transforms: Sequence[Transform] = ()
    labels: Tensor | None = None
    net_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        x = torch.as_tensor(self.x0)
        if x.dim() < 2 or x.shape[0] < 1:
            raise ValueError(f"training data must have shape (N, ...), got {tuple(x.shape)}")
        self.x0 = x.to(torch.float32) if not x.is_floating_point() else x
        n = x.shape[0]
        self.cond = {str(k): _rows(f"cond[{k!r}]", v, n) for k, v in dict(self.cond).items()}
        if self.mask is not None:
            mask = _rows("mask", self.mask, n).to(self.x0.dtype)
            try:
                torch.broadcast_shapes(mask.shape, x.shape)
            except RuntimeError:
                raise ValueError(
                    f"mask of shape {tuple(mask.shape)} does not broadcast to x0 {tuple(x.shape)}"
                ) from None
            if not bool((torch.isfinite(mask) & (mask >= 0)).all()):  # once, not every step
                raise ValueError("mask entries must be finite and >= 0 (1 = counts, 0 = ignored)")
            self.mask = mask
        if self.labels is not None:
            self.labels = _rows("labels", self.labels, n).to(torch.int64)
        unknown = sorted(set(self.null) - set(self.cond) - {"y"})
        if unknown:
            raise ValueError(f"null values for unknown condition keys {unknown}")
        self.transforms = tuple(self.transforms)

    def __len__(self) -> int:
        return int(self.x0.shape[0])

    def tensors(self) -> list[Tensor]:
        """Every data tensor (x0, cond in key order, mask, labels), for digests."""
        out = [self.x0, *(self.cond[k] for k in sorted(self.cond))]
        return out + [t for t in (self.mask, self.labels) if t is not None]

    def to(self, device: torch.device | str) -> TrainingSet:
        """A copy whose tensors live on ``device``."""
        move = {k: v.to(device) for k, v in self.cond.items()}
        return dataclasses.replace(
            self,
            x0=self.x0.to(device),
            cond=move,
            mask=None if self.mask is None else self.mask.to(device),
            labels=None if self.labels is None else self.labels.to(device),
        )

    def batch(self, index: Tensor, generator: torch.Generator) -> Batch:
        """The rows ``index`` as a :class:`Batch`, through the transforms (which draw from
        ``generator``)."""
        i = index.to(self.x0.device)
        mask = None
        if self.mask is not None:
            mask = torch.broadcast_to(self.mask[i], (i.shape[0], *self.x0.shape[1:]))
        out = Batch(self.x0[i], {k: v[i.to(v.device)] for k, v in self.cond.items()}, mask)
        for transform in self.transforms:
            out = transform(out, generator)
        return out


def drop_conditions(
    cond: Mapping[str, Tensor],
    rates: Mapping[str, float],
    null: Mapping[str, Any],
    generator: torch.Generator,
) -> dict[str, Tensor]:
    """Condition dropout: each row's ``cond[key]`` is replaced by ``null[key]`` with probability
    ``rates[key]``, independently per key and row (keys in sorted order, one ``torch.rand(N)``
    draw on ``generator`` per key with a positive rate)."""
    out = dict(cond)
    for key in sorted(rates):
        p = float(rates[key])
        if p <= 0:
            continue
        if key not in cond:
            raise ValueError(f"cond_dropout names {key!r}, which is not a condition of the batch")
        if key not in null:
            raise ValueError(f"condition {key!r} declares no null value, so it cannot be dropped")
        value = cond[key]
        n = value.shape[0]
        drop = torch.rand(n, generator=generator, device=generator.device) < p
        fill = torch.as_tensor(null[key], dtype=value.dtype, device=value.device)
        fill = fill.expand(value.shape[1:]) if fill.dim() else fill
        where = drop.to(value.device).view(-1, *([1] * (value.dim() - 1)))
        out[key] = torch.where(where, fill, value)
    return out
