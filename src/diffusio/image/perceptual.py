"""A perceptual feature network trained here, for the autoencoder's LPIPS-style loss.

Latent diffusion's autoencoder (Rombach et al. 2022, App. G) adds LPIPS (Zhang et al. 2018) to
the L1 reconstruction loss: distances between unit-normalised feature maps of a pretrained
VGG-16. At MNIST scale no pretrained network ships offline, and the FID feature classifier of
:mod:`diffusio.metrics.fid` must not be used: the evaluation measures in its features, and a
decoder trained against them would game the metric. :class:`PerceptualNet` is a separate small
VGG-style CNN (three conv blocks, max-pooling between them, global pooling, a linear head)
trained here by digit classification on the training images; its ``features(x)`` are the three
blocks' activations, which :func:`~diffusio.image.autoencoder.perceptual_distance` compares.
:func:`train_perceptual` is deterministic given its seed and leaves the global RNG untouched;
:meth:`PerceptualNet.identity` names the recipe (it is part of an autoencoder's recipe).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.functional import cross_entropy, max_pool2d

__all__ = ["PerceptualNet", "train_perceptual"]


class PerceptualNet(nn.Module):
    """Three blocks (conv3x3, GroupNorm, SiLU, twice) of ``widths`` channels, 2x2 max-pooling
    between them; ``features(x)`` returns each block's output, ``forward`` the class logits."""

    def __init__(self, in_channels: int = 1, widths: tuple[int, ...] = (16, 32, 64),
                 num_classes: int = 10) -> None:  # fmt: skip
        super().__init__()
        blocks, cin = [], in_channels
        for w in widths:
            blocks.append(nn.Sequential(
                nn.Conv2d(cin, w, 3, padding=1), nn.GroupNorm(4, w), nn.SiLU(),
                nn.Conv2d(w, w, 3, padding=1), nn.GroupNorm(4, w), nn.SiLU(),
            ))  # fmt: skip
            cin = w
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Linear(cin, num_classes)
        self.recipe: dict[str, Any] = {"in_channels": in_channels, "widths": list(widths)}

    def features(self, x: Tensor) -> list[Tensor]:
        out = []
        for i, block in enumerate(self.blocks):
            x = block(x if i == 0 else max_pool2d(x, 2))
            out.append(x)
        return out

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x)[-1].mean(dim=(2, 3)))

    @property
    def identity(self) -> str:
        """A name for this network's recipe (architecture and training)."""
        from ..io import json_hash

        return f"perceptual-{json_hash(self.recipe)}"


def train_perceptual(
    images: Tensor, labels: Tensor, steps: int = 600, batch_size: int = 64, lr: float = 2e-3,
    seed: int = 0, **options: Any,
) -> PerceptualNet:  # fmt: skip
    """A :class:`PerceptualNet` (``options``: its constructor's) trained by cross-entropy on
    ``images`` (N, C, H, W) in [-1, 1] and digit ``labels`` (N,): AdamW, cosine decay, frozen
    and in eval mode afterwards. ``net.recipe`` records the data digest and the settings."""
    from ..io import tensor_digest

    x = torch.as_tensor(images, dtype=torch.float32)
    y = torch.as_tensor(labels).long().reshape(-1)
    if x.dim() != 4 or len(y) != x.shape[0]:
        raise ValueError(f"need images (N, C, H, W) and N labels, got {tuple(x.shape)} and {len(y)}")
    if int(steps) < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    gen = torch.Generator().manual_seed(int(seed))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        net = PerceptualNet(x.shape[1], **options)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: 0.5 * (1 + math.cos(math.pi * k / int(steps)))
    )
    net.train()
    for _ in range(int(steps)):
        idx = torch.randint(0, x.shape[0], (int(batch_size),), generator=gen)
        loss = cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    net.recipe.update({"data_sha256": tensor_digest({"x": x, "y": y}), "steps": int(steps),
                       "batch_size": int(batch_size), "lr": lr, "seed": int(seed)})  # fmt: skip
    return net.eval().requires_grad_(False)
