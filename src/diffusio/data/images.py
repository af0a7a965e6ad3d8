"""Image files a user points at: MNIST IDX, CIFAR-10 python batches, ``.npz`` arrays, folders.

Every loader returns ``uint8`` arrays of shape (N, C, H, W) (and labels where the format has
them); :func:`to_model_range` maps them to float tensors in [-1, 1], the range DDPM trains on
(Ho et al. 2020, Sec. 3.3). Bad files get one line naming the file and the problem.

CIFAR-10's python batches are pickles. They are read with an unpickler that accepts only the
handful of NumPy constructors such a batch contains and refuses anything else, so a tampered file
cannot run code.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "load_cifar_batch",
    "load_idx",
    "load_image_folder",
    "load_npz_images",
    "to_model_range",
]

_IDX_TYPES = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":  # gzip magic, whatever the suffix
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise ValueError(f"{path}: corrupt gzip data ({err})") from None
    return raw


def load_idx(path: str | os.PathLike) -> np.ndarray:
    """An MNIST IDX file (``train-images-idx3-ubyte[.gz]``, labels ``idx1``) as a NumPy array."""
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"{path}: IDX header says shape {shape} ({expected} bytes), file has "
            f"{len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).copy()


class _BatchUnpickler(pickle.Unpickler):
    """Accepts only what a CIFAR-10 batch holds: builtins and NumPy array reconstruction."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def load_cifar_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """A CIFAR-10 python batch (``data_batch_1`` ...): ``(images (N, 3, 32, 32) uint8, labels)``."""
    path = Path(path)
    raw = _read_bytes(path)
    try:
        batch = _BatchUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as err:  # UnpicklingError, EOFError, ... all mean a bad file
        raise ValueError(f"{path}: not a CIFAR-10 batch ({err})") from None
    if not isinstance(batch, dict):
        raise ValueError(f"{path}: not a CIFAR-10 batch (no dict inside)")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise ValueError(f"{path}: a CIFAR-10 batch needs 'data' and 'labels'")
    data = np.asarray(batch["data"], dtype=np.uint8)
    labels = np.asarray(batch["labels"], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{path}: expected data (N, 3072) and N labels, got {data.shape} and {labels.shape}"
        )
    return data.reshape(-1, 3, 32, 32), labels


def _as_nchw(images: np.ndarray, path: Path) -> np.ndarray:
    """(N, H, W) -> (N, 1, H, W); (N, H, W, C) with C in 1, 3, 4 -> (N, C, H, W); when both
    axes 1 and 3 could be channels, the smaller one is."""
    if images.ndim == 3:
        return images[:, None]
    if images.ndim == 4:
        first, last = images.shape[1], images.shape[-1]
        if last in (1, 3, 4) and (first not in (1, 3, 4) or last < first):
            return images.transpose(0, 3, 1, 2)  # channels last (the smaller of the two)
        if first in (1, 3, 4):
            return images
    raise ValueError(f"{path}: expected images (N, H, W[, C]) or (N, C, H, W), got {images.shape}")


def load_npz_images(
    path: str | os.PathLike, key: str | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Images from an ``.npz`` (array ``key``, default the only / first non-label array) and
    its ``labels`` array if present: ``(images (N, C, H, W), labels or None)``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.files)
            if key is None:
                candidates = [n for n in names if n not in ("labels", "y")]
                if not candidates:
                    raise ValueError(f"{path}: no image array in the archive")
                key = candidates[0]
            if key not in names:
                raise ValueError(f"{path}: no array {key!r}; arrays: {', '.join(names)}")
            images = archive[key]
            labels = next((archive[n] for n in ("labels", "y") if n in names), None)
    except (OSError, EOFError) as err:
        raise ValueError(f"{path}: not a readable .npz ({err})") from None
    images = _as_nchw(np.asarray(images), path)
    if labels is not None and len(labels) != len(images):
        raise ValueError(f"{path}: {len(images)} images but {len(labels)} labels")
    return images, labels


def load_image_folder(
    path: str | os.PathLike, size: int | None = None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images in ``path/<class>/*.png`` (or directly in ``path``), resized to ``size`` x
    ``size`` if given (else all must share one size), with Pillow. Returns ``(images (N, C, H,
    W) uint8, labels, class names)``; RGB unless every image is greyscale."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("image folders need Pillow: pip install pillow") from None
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: folder not found")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    groups = [(i, root / c) for i, c in enumerate(classes)] or [(0, root)]
    files = [
        (label, f) for label, d in groups for f in sorted(d.iterdir())
        if f.suffix.lower() in IMAGE_SUFFIXES
    ]  # fmt: skip
    if not files:
        raise ValueError(f"{root}: no images ({', '.join(IMAGE_SUFFIXES)})")
    pictures = []
    for _, f in files:
        try:
            with Image.open(f) as im:
                pictures.append(im.copy())
        except Exception as err:  # PIL raises several types for bad files
            raise ValueError(f"{f}: cannot read image ({err})") from None
    grey = all(p.mode in ("L", "1", "I", "I;16") for p in pictures)
    arrays = []
    for (_, f), p in zip(files, pictures, strict=True):
        p = p.convert("L" if grey else "RGB")
        if size is not None:
            p = p.resize((size, size), Image.BICUBIC)
        arr = np.asarray(p, dtype=np.uint8)
        if arrays and arr.shape != arrays[0].shape:
            raise ValueError(f"{f}: size {arr.shape} differs from {arrays[0].shape}; pass size")
        arrays.append(arr)
    images = _as_nchw(np.stack(arrays), root)
    labels = np.asarray([label for label, _ in files], dtype=np.int64)
    return images, labels, classes or [root.name]


def to_model_range(images: np.ndarray | Tensor) -> Tensor:
    """uint8 images in [0, 255] -> float32 tensor in [-1, 1] (``x / 127.5 - 1``)."""
    x = torch.as_tensor(np.asarray(images))
    if x.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images in [0, 255], got dtype {x.dtype}")
    return x.to(torch.float32) / 127.5 - 1.0
