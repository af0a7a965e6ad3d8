"""Images from a trained model: batched, seeded, x0 clipped to the data range, optionally
class-conditional with classifier-free guidance or guided by a noise-aware classifier."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from ..core.model import DiffusionModel
from ..core.samplers import sample
from ..core.steering import ClassifierFreeGuidance, ClassifierGuidance, ClipX0

__all__ = ["balanced_labels", "sample_images"]


def balanced_labels(n: int, num_classes: int) -> Tensor:
    """``0, 1, ..., K-1, 0, 1, ...``: n labels, every class equally often (up to one)."""
    return torch.arange(n) % num_classes


def sample_images(
    model: DiffusionModel,
    n: int,
    shape: Sequence[int],
    sampler: str = "ddim",
    steps: int | None = 50,
    seed: int = 0,
    *,
    labels: Tensor | None = None,
    guidance_weight: float = 0.0,
    classifier: Callable[[Tensor, Tensor], Tensor] | None = None,
    classifier_scale: float = 0.0,
    classifier_mode: str = "score",
    guidance: Sequence[Any] = (),
    clip: bool = True,
    batch_size: int = 500,
    progress: bool = False,
    **options: Any,
) -> Tensor:
    """``n`` images of ``shape`` (C, H, W) in [-1, 1], drawn in batches of ``batch_size``
    (batch k seeded with ``seed + k``, so the result does not depend on the device's memory).

    ``clip`` clips the predicted x0 to [-1, 1] at every step (DDPM's sampler, Ho et al. 2020).
    ``labels`` (n,) condition a class-conditional model (``y``); ``guidance_weight`` w applies
    classifier-free guidance (Ho & Salimans 2021) with the network's null class;
    ``classifier(x_t, t) -> logits`` with ``classifier_scale`` s applies classifier guidance
    towards ``labels`` (Dhariwal & Nichol 2021; ``classifier_mode`` "score" or "mean", see
    :class:`~diffusio.core.steering.ClassifierGuidance`), on a conditional or unconditional
    model. ``guidance`` adds label-free prediction modifiers after those.
    """
    if n < 1:
        raise ValueError(f"the number of images must be positive, got {n}")
    num_classes = getattr(model.net, "num_classes", None)
    if labels is not None:
        labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
        if labels.shape[0] != n:
            raise ValueError(f"got {labels.shape[0]} labels for {n} images")
    if guidance_weight and (labels is None or num_classes is None):
        raise ValueError("classifier-free guidance needs labels and a class-conditional model")
    if classifier is not None and labels is None:
        raise ValueError("classifier guidance needs labels")
    out = []
    device = model.device
    bar = range(0, n, batch_size)
    for k, start in enumerate(bar):
        size = min(batch_size, n - start)
        cond: dict[str, Tensor] = {}
        modifiers: list[Any] = []
        if labels is not None:
            y = labels[start : start + size].to(device)
            if num_classes is not None:
                cond["y"] = y
            if guidance_weight:
                modifiers.append(ClassifierFreeGuidance(guidance_weight, num_classes))
            if classifier is not None and classifier_scale:
                modifiers.append(
                    ClassifierGuidance(classifier, y, classifier_scale, classifier_mode)
                )
        modifiers.extend(guidance)
        if clip:
            modifiers.append(ClipX0(-1.0, 1.0))
        x = sample(
            model, (size, *shape), sampler, steps, seed=seed + k, guidance=modifiers, cond=cond,
            progress=progress, **options,
        )  # fmt: skip
        out.append(x.clamp(-1.0, 1.0).cpu())
    return torch.cat(out)
