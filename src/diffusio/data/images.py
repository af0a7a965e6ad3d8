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
    "is_image_source",
    "load_cifar_batch",
    "load_idx",
    "load_image_folder",
    "load_images",
    "load_npz_images",
    "resize_images",
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


def resize_images(x: Tensor, size: int) -> Tensor:
    """Float images (N, C, H, W) in [-1, 1] resized to ``size`` x ``size`` (bilinear, with
    antialiasing when shrinking), clamped back to [-1, 1]."""
    if int(size) != size or size < 1:
        raise ValueError(f"image size must be a positive integer, got {size!r}")
    if x.dim() != 4:
        raise ValueError(f"expected images (N, C, H, W), got shape {tuple(x.shape)}")
    if tuple(x.shape[-2:]) == (size, size):
        return x
    shrink = size < min(x.shape[-2:])
    out = torch.nn.functional.interpolate(
        x, size=(int(size), int(size)), mode="bilinear", align_corners=False, antialias=shrink
    )
    return out.clamp(-1.0, 1.0)


def is_image_source(path: str | os.PathLike) -> bool:
    """Whether ``path`` names image files :func:`load_images` reads: a folder, an IDX file
    (``*-idx3-ubyte[.gz]``), a CIFAR-10 batch (``data_batch_*``, ``test_batch``) or an ``.npz``
    holding a 3-D or 4-D array."""
    path = Path(path)
    name = path.name.lower()
    if path.is_dir() or "idx3-ubyte" in name or name.startswith(("data_batch", "test_batch")):
        return True
    if path.suffix.lower() == ".npz" and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as archive:
                return any(archive[k].ndim in (3, 4) for k in archive.files)
        except (OSError, ValueError, EOFError):
            return False
    return False


def load_images(path: str | os.PathLike, size: int | None = None) -> tuple[Tensor, Tensor | None]:
    """Any image source :func:`is_image_source` accepts as ``(x, labels)``: x float32 (N, C, H,
    W) in [-1, 1] (resized to ``size`` if given), labels int64 (N,) or None. An IDX image file
    takes its labels from the sibling ``*-idx1-ubyte[.gz]`` file when there is one."""
    path = Path(path)
    name = path.name.lower()
    labels: np.ndarray | None
    if path.is_dir():
        images, labels, _ = load_image_folder(path, size)
    elif "idx3-ubyte" in name:
        images = _as_nchw(load_idx(path), path)
        sibling = path.with_name(path.name.replace("images-idx3", "labels-idx1"))
        labels = load_idx(sibling) if sibling != path and sibling.is_file() else None
    elif name.startswith(("data_batch", "test_batch")):
        images, labels = load_cifar_batch(path)
    elif path.suffix.lower() == ".npz":
        images, labels = load_npz_images(path)
    else:
        raise ValueError(f"{path}: not an image source (folder, .npz, IDX or CIFAR-10 batch)")
    if images.dtype == np.uint8:
        x = to_model_range(images)
    else:
        x = torch.as_tensor(np.asarray(images, dtype=np.float32))
        if not torch.isfinite(x).all() or x.min() < -1.0 or x.max() > 1.0:
            raise ValueError(f"{path}: float images must be finite and lie in [-1, 1]")
    if size is not None:
        x = resize_images(x, size)
    y = None if labels is None else torch.as_tensor(np.asarray(labels, dtype=np.int64))
    return x.contiguous(), y
