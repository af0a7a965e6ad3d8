"""Images from a trained model: batched, seeded, x0 clipped to the data range, optionally
class-conditional with classifier-free guidance and/or guided by a noise-aware classifier.

:func:`sample_images` is the one image sampling path: plain, class-conditional,
classifier-free guided (Ho & Salimans 2021, eq. 6) and classifier guided (Dhariwal & Nichol
2021, Alg. 1 and 2), alone or combined. :func:`image_config` is the training recipe of the
image presets with the small-run overrides the reproductions use.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from ..core.model import DiffusionModel
from ..core.samplers import sample
from ..core.steering import ClassifierFreeGuidance, ClassifierGuidance, ClipX0

__all__ = ["balanced_labels", "image_config", "image_shape", "sample_images"]


def balanced_labels(n: int, num_classes: int) -> Tensor:
    """``0, 1, ..., K-1, 0, 1, ...``: n labels, every class equally often (up to one)."""
    return torch.arange(n) % num_classes


def image_shape(model: DiffusionModel) -> tuple[int, int, int]:
    """``(C, H, W)`` of the images an image network (U-Net) draws."""
    net = model.net
    return (int(net.in_channels), int(net.image_size), int(net.image_size))


def image_config(
    preset: str,
    steps: int,
    *,
    net_options: dict[str, Any] | None = None,
    batch_size: int | None = None,
    description: str | None = None,
    **extra: Any,
) -> Any:
    """The training config of the image ``preset`` at ``steps`` with the network options and
    batch size replaced when given, a warm-up of a tenth of the run below 500 steps, and
    ``extra`` config keys. The same arguments give the same config (the same model-cache
    entry), so two reproductions training one recipe share the model."""
    from ..train.config import load_config

    overrides: dict[str, Any] = {"steps": int(steps), "description": description or preset}
    if net_options is not None:
        overrides["net_options"] = dict(net_options)
    if batch_size is not None:
        overrides["batch_size"] = int(batch_size)
    if steps < 500:
        overrides["warmup"] = max(1, int(steps) // 10)
    return load_config(preset, **{**overrides, **extra})


def sample_images(
    model: DiffusionModel,
    n: int,
    shape: Sequence[int] | None = None,
    sampler: str = "ddim",
    steps: int | None = 50,
    seed: int = 0,
    *,
    labels: Tensor | None = None,
    model_labels: Tensor | None = None,
    guidance_weight: float = 0.0,
    classifier: Callable[[Tensor, Tensor], Tensor] | None = None,
    classifier_scale: float = 0.0,
    classifier_mode: str = "score",
    guide_clipped: bool = False,
    guidance: Sequence[Any] = (),
    clip: bool = True,
    batch_size: int = 500,
    progress: bool = False,
    **options: Any,
) -> Tensor:
    """``n`` images of ``shape`` (C, H, W; default :func:`image_shape`) in [-1, 1], drawn in
    batches of ``batch_size`` (batch k seeded with ``seed + k``, so the result does not depend
    on the device's memory).

    ``labels`` (n,) are the target classes. A class-conditional network is conditioned on
    ``model_labels`` (default ``labels``; pass the null class ``net.num_classes`` to sample it
    unconditionally); an unconditional one on nothing. At every step, in this order:
    classifier-free guidance with weight ``guidance_weight`` w (Ho & Salimans 2021, eq. 6:
    ``(1 + w) eps(x, c) - w eps(x)``), classifier guidance towards ``labels`` by
    ``classifier(x_t, t) -> logits`` with scale ``classifier_scale`` s (Dhariwal & Nichol 2021;
    ``classifier_mode`` "score" = Alg. 2, "mean" = Alg. 1, see
    :class:`~diffusio.core.steering.ClassifierGuidance`), the label-free modifiers
    ``guidance``, then DDPM's x0 clipping to [-1, 1] when ``clip`` (Ho et al. 2020).
    ``guide_clipped=True`` clips *before* the classifier guidance instead, the order of the
    guided-diffusion code (``condition_mean`` / ``condition_score`` act on the clipped
    prediction, so the guidance shift itself is not clipped).
    """
    if n < 1:
        raise ValueError(f"the number of images must be positive, got {n}")
    shape = tuple(shape) if shape is not None else image_shape(model)
    num_classes = getattr(model.net, "num_classes", None)
    if labels is not None:
        labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
        if labels.shape[0] != n:
            raise ValueError(f"got {labels.shape[0]} labels for {n} images")
    if model_labels is None:
        model_labels = labels
    elif num_classes is not None:
        model_labels = torch.as_tensor(model_labels, dtype=torch.long).reshape(-1)
        if model_labels.shape[0] != n:
            raise ValueError(f"got {model_labels.shape[0]} model labels for {n} images")
    if guidance_weight and (model_labels is None or num_classes is None):
        raise ValueError("classifier-free guidance needs labels and a class-conditional model")
    if classifier_scale and classifier is None:
        raise ValueError("classifier guidance needs a classifier")
    if classifier is not None and labels is None:
        raise ValueError("classifier guidance needs labels")
    out = []
    device = model.device
    for k, start in enumerate(range(0, n, batch_size)):
        size = min(batch_size, n - start)
        cond: dict[str, Tensor] = {}
        modifiers: list[Any] = []
        if model_labels is not None and num_classes is not None:
            cond["y"] = model_labels[start : start + size].to(device)
        if guidance_weight:
            modifiers.append(ClassifierFreeGuidance(guidance_weight, num_classes))
        if clip and guide_clipped:
            modifiers.append(ClipX0(-1.0, 1.0))
        if classifier is not None and classifier_scale:
            y = labels[start : start + size].to(device)
            modifiers.append(ClassifierGuidance(classifier, y, classifier_scale, classifier_mode))
        modifiers.extend(guidance)
        if clip and not guide_clipped:
            modifiers.append(ClipX0(-1.0, 1.0))
        x = sample(
            model, (size, *shape), sampler, steps, seed=seed + k, guidance=modifiers, cond=cond,
            progress=progress, **options,
        )  # fmt: skip
        out.append(x.clamp(-1.0, 1.0).cpu())
    return torch.cat(out)
