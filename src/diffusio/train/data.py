"""A training config's data: the registered dataset it names, checked for the run.

:func:`load_training_set` builds the :class:`~diffusio.data.batch.TrainingSet` named by
``config.data`` through the dataset registry (:mod:`diffusio.data.registry`); the trainer never
dispatches on the kind of data. :func:`load_dataset` / :func:`load_data` are the older
``(x, labels)`` / ``x`` views of it.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ..data.batch import TrainingSet
from ..data.registry import build_dataset

if TYPE_CHECKING:
    from .config import TrainConfig

__all__ = ["data_digest", "load_data", "load_dataset", "load_training_set", "num_classes"]


def load_training_set(config: TrainConfig) -> TrainingSet:
    """The :class:`TrainingSet` ``config.data`` names (with ``data_options``, ``n_data`` and
    ``seed``); a class-conditional config needs a dataset with labels."""
    data = build_dataset(
        config.data, options=config.data_options, n_data=config.n_data, seed=config.seed
    )
    if config.class_conditional and data.labels is None:
        raise ValueError(f"class_conditional needs labels, and {config.data!r} has none")
    return data


def load_dataset(config: TrainConfig) -> tuple[Tensor, Tensor | None]:
    """The training set as ``(x, labels)``: x float32 (N, ...), labels int64 (N,) or None
    (see :func:`load_training_set`)."""
    data = load_training_set(config)
    return data.x0.contiguous(), data.labels


def load_data(config: TrainConfig) -> Tensor:
    """The training set's x (see :func:`load_training_set`)."""
    return load_dataset(config)[0]


def num_classes(labels: Tensor) -> int:
    """The number of classes of integer labels 0..K-1 (K = max + 1)."""
    if labels.dtype.is_floating_point or labels.numel() == 0 or int(labels.min()) < 0:
        raise ValueError("class labels must be non-negative integers")
    return int(labels.max()) + 1


def data_digest(*tensors: Tensor) -> str:
    """SHA-256 of tensors' shapes, dtypes and bytes (to check a resumed run sees the same data)."""
    h = hashlib.sha256()
    for x in tensors:
        x = x.detach().to("cpu").contiguous()
        h.update(f"{tuple(x.shape)}|{x.dtype}|".encode())
        h.update(x.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
