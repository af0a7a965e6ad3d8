"""A tiny CLIP (Radford et al. 2021) trained here on captioned digits, for unCLIP at MNIST scale.

CLIP learns an image encoder and a text encoder whose L2-normalised ``d``-dimensional
embeddings agree for matching (image, caption) pairs. For a batch of N pairs the logits are
``L = s * I T^T`` (``I``, ``T`` the (N, d) unit embeddings, ``s = exp(logit_scale)`` a learned
temperature) and the loss is the symmetric InfoNCE (Radford et al. 2021, Fig. 3 pseudocode;
van den Oord et al. 2018)::

    loss = (CE(L, arange(N)) + CE(L^T, arange(N))) / 2

``logit_scale`` is a log-scale parameter initialised to ``log(1 / 0.07)`` and the scale is
clipped at 100 "to prevent scaling the logits by more than 100" (Radford et al. 2021,
Sec. 2.5). For perfectly aligned orthonormal embeddings at scale ``s`` the loss is
``log(1 + (N - 1) exp(-s))`` exactly (the diagonal logit is ``s``, the others 0).

* :class:`ImageEncoder` -- a small CNN for (N, C, H, W) images in [-1, 1].
* :class:`CLIP` -- the two encoders and their projections; the text side takes any module
  ``text_encoder(captions) -> TextEncoding`` and projects its ``pooled`` vector (by default a
  :class:`~diffusio.nets.text_encoders.ScratchTextEncoder` built from the captions).
* :func:`clip_loss`, :func:`zero_shot_accuracy`, :func:`retrieval_recall`, :func:`train_clip`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional

from .text_encoders import ScratchTextEncoder, TextEncoding

__all__ = [
    "CLIP", "ImageEncoder", "LOGIT_SCALE_INIT", "LOGIT_SCALE_MAX", "clip_loss", "retrieval_recall",
    "train_clip", "zero_shot_accuracy",
]  # fmt: skip

LOGIT_SCALE_INIT = math.log(1 / 0.07)  #: CLIP's initial temperature, log(1 / 0.07)
LOGIT_SCALE_MAX = 100.0  #: the largest logit scale exp(logit_scale) (Radford et al. 2021, 2.5)


class ImageEncoder(nn.Module):
    """A small CNN: three 3x3 conv blocks (GroupNorm, SiLU; the last two of stride 2), global
    average pooling and a linear map to ``dim`` (not normalised). (N, C, H, W) -> (N, dim)."""

    def __init__(self, channels: int = 1, width: int = 32, dim: int = 64) -> None:
        super().__init__()
        w = int(width)
        layers: list[nn.Module] = []
        for c_in, c_out, stride in ((channels, w, 1), (w, 2 * w, 2), (2 * w, 2 * w, 2)):
            layers += [nn.Conv2d(c_in, c_out, 3, stride, 1), nn.GroupNorm(8, c_out), nn.SiLU()]
        self.features = nn.Sequential(*layers)
        self.out = nn.Linear(2 * w, dim)
        self.dim = int(dim)

    def forward(self, images: Tensor) -> Tensor:
        return self.out(self.features(images).mean(dim=(2, 3)))


class CLIP(nn.Module):
    """Image and text encoders projected to a shared ``dim``-dimensional unit sphere, with a
    learned log temperature (Radford et al. 2021, Sec. 2.4-2.5).

    Args:
        text_encoder: any module with ``text_encoder(captions) -> TextEncoding``; its ``pooled``
            vector (``text_dim`` wide; default ``text_encoder.dim``) goes through a linear
            projection (CLIP's ``W_t``).
        dim: the joint embedding dimension.
        channels, width: of the :class:`ImageEncoder`.
    """

    def __init__(
        self,
        text_encoder: nn.Module,
        *,
        dim: int = 64,
        text_dim: int | None = None,
        channels: int = 1,
        width: int = 32,
    ) -> None:
        super().__init__()
        text_dim = int(text_dim if text_dim is not None else text_encoder.dim)
        self.dim = int(dim)
        self.image_encoder = ImageEncoder(channels, width, dim)
        self.text_encoder = text_encoder
        self.text_projection = nn.Linear(text_dim, dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(LOGIT_SCALE_INIT))

    @classmethod
    def from_captions(
        cls, captions: Sequence[str], *, text_width: int = 64, text_layers: int = 1, **options
    ) -> CLIP:
        """A CLIP whose text encoder is a :class:`ScratchTextEncoder` over the captions' words."""
        encoder = ScratchTextEncoder.from_captions(captions, dim=text_width, layers=text_layers)
        return cls(encoder, **options)

    def scale(self) -> Tensor:
        """``exp(logit_scale)`` clipped at :data:`LOGIT_SCALE_MAX` (differentiable below it)."""
        return self.logit_scale.exp().clamp(max=LOGIT_SCALE_MAX)

    def encode_image(self, images: Tensor) -> Tensor:
        """Unit image embeddings (N, dim)."""
        return functional.normalize(self.image_encoder(images), dim=-1)

    def encode_text_full(self, captions: Sequence[str]) -> tuple[Tensor, TextEncoding]:
        """Unit text embeddings (N, dim) and the text encoder's own :class:`TextEncoding` (its
        token states are what the unCLIP prior reads as text tokens)."""
        enc = self.text_encoder(list(captions))
        return functional.normalize(self.text_projection(enc.pooled), dim=-1), enc

    def encode_text(self, captions: Sequence[str]) -> Tensor:
        """Unit text embeddings (N, dim)."""
        return self.encode_text_full(captions)[0]

    def forward(self, images: Tensor, captions: Sequence[str]) -> Tensor:
        """The symmetric InfoNCE loss of the batch of pairs (:func:`clip_loss`)."""
        return clip_loss(self.encode_image(images), self.encode_text(captions), self.scale())


def clip_loss(image_emb: Tensor, text_emb: Tensor, logit_scale: Tensor | float) -> Tensor:
    """Symmetric InfoNCE of N matching pairs (Radford et al. 2021, Fig. 3):
    ``(CE(s I T^T, arange N) + CE(s T I^T, arange N)) / 2``.

    ``image_emb``, ``text_emb`` (N, d) are used as given (pass unit vectors); ``logit_scale``
    is the multiplier ``s`` itself (``CLIP.scale()``, i.e. already exponentiated and clipped).
    """
    if image_emb.shape != text_emb.shape or image_emb.dim() != 2:
        raise ValueError(f"embeddings must both be (N, d), got {tuple(image_emb.shape)} and "
                         f"{tuple(text_emb.shape)}")  # fmt: skip
    logits = logit_scale * image_emb @ text_emb.T
    target = torch.arange(len(logits), device=logits.device)
    return 0.5 * (functional.cross_entropy(logits, target)
                  + functional.cross_entropy(logits.T, target))  # fmt: skip


def retrieval_recall(image_emb: Tensor, text_emb: Tensor, k: int = 1,
                     direction: str = "image_to_text") -> float:  # fmt: skip
    """Recall@k: the fraction of queries whose match (the same row of the other side) is among
    the ``k`` most similar (dot product) candidates. ``direction``: ``image_to_text`` (images
    query captions) or ``text_to_image``. Ties are broken by ``torch.topk``."""
    if direction not in ("image_to_text", "text_to_image"):
        raise ValueError(f"unknown direction {direction!r}; valid: image_to_text, text_to_image")
    sim = image_emb @ text_emb.T
    if direction == "text_to_image":
        sim = sim.T
    k = min(int(k), sim.shape[1])
    top = sim.topk(k, dim=1).indices
    hit = (top == torch.arange(len(sim), device=sim.device)[:, None]).any(1)
    return float(hit.float().mean())


@torch.no_grad()
def zero_shot_accuracy(
    model: CLIP, images: Tensor, labels: Tensor, class_captions: Sequence[str],
    batch_size: int = 256,
) -> float:  # fmt: skip
    """Zero-shot classification (Radford et al. 2021, Sec. 3.1.4): each image takes the class
    whose caption (``class_captions[c]``, e.g. "a seven") has the most similar text embedding;
    returns the fraction equal to ``labels``."""
    was = model.training
    model.eval()
    try:
        text = model.encode_text(class_captions)
        preds = [
            (model.encode_image(images[i : i + batch_size]) @ text.T).argmax(1)
            for i in range(0, len(images), batch_size)
        ]
    finally:
        model.train(was)
    labels = torch.as_tensor(labels, device=text.device).long()
    return float((torch.cat(preds) == labels).float().mean())


def train_clip(
    images: Tensor,
    captions: Sequence[str],
    steps: int,
    *,
    model: CLIP | None = None,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    seed: int = 0,
    dim: int = 64,
) -> tuple[CLIP, list[float]]:
    """Train a CLIP on (image, caption) pairs with AdamW for ``steps`` minibatches drawn without
    replacement per epoch. Deterministic given ``seed`` (the initialisation of a new model and
    the batch order use their own seeded RNG; the global RNG is left as it was).
    Returns the model (in eval mode) and the loss of every step."""
    captions = list(captions)
    if len(captions) != len(images):
        raise ValueError(f"{len(images)} images but {len(captions)} captions")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        if model is None:
            model = CLIP.from_captions(captions, dim=dim, channels=images.shape[1])
    gen = torch.Generator().manual_seed(int(seed) + 1)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    n, b = len(captions), min(int(batch_size), len(captions))
    losses: list[float] = []
    order = torch.randperm(n, generator=gen)
    pos = 0
    model.train()
    for _ in range(int(steps)):
        if pos + b > n:
            order, pos = torch.randperm(n, generator=gen), 0
        idx = order[pos : pos + b]
        pos += b
        loss = model(images[idx], [captions[i] for i in idx.tolist()])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    model.eval()
    return model, losses
