"""The built-in datasets, registered by name in :mod:`diffusio.data.registry`.

* the 2-D toys of :data:`~diffusio.data.toys.TOYS` (FFJORD's, Grathwohl et al. 2019):
  ``n_data`` samples (default 100,000) drawn with the run's seed, no labels;
* ``digits`` and ``mnist-5k`` (:mod:`diffusio.data.datasets`): (N, 1, H, W) in [-1, 1] with
  their labels; options ``split`` (train/test/all), ``size`` (resize) and ``flip`` (a
  :class:`~diffusio.data.batch.RandomFlip` batch transform);
* ``image-files`` claims what :func:`~diffusio.data.images.is_image_source` accepts (folders,
  ``.npz`` images, MNIST IDX, CIFAR-10 batches): options ``size`` and ``flip``;
* ``array-files`` claims ``.npy`` / ``.npz`` / ``.csv`` files of rows (N, D)
  (:func:`~diffusio.data.files.load_array`).

File and image sets keep their first ``n_data`` rows (None: all).
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from .batch import RandomFlip, TrainingSet
from .datasets import IMAGE_DATASETS, load_image_dataset
from .files import SUPPORTED_EXTENSIONS, load_array
from .images import is_image_source, load_images
from .registry import DataRequest, register_dataset
from .toys import TOYS, sample_toy

__all__ = ["IMAGE_OPTIONS", "register_builtin_datasets"]

IMAGE_OPTIONS = ("split", "size", "flip")


def _first(x: Tensor, labels: Tensor | None, n: int | None) -> tuple[Tensor, Tensor | None]:
    if n is not None:
        x = x[:n]
        labels = None if labels is None else labels[:n]
    return x.contiguous(), labels


def _images(x: Tensor, labels: Tensor | None, request: DataRequest) -> TrainingSet:
    x, labels = _first(x, labels, request.n_data)
    transforms = (RandomFlip(),) if request.options.get("flip") else ()
    return TrainingSet(x, labels=labels, transforms=transforms)


def _toy(request: DataRequest) -> TrainingSet:
    return TrainingSet(sample_toy(request.data, request.n_data or 100_000, seed=request.seed))


def _image_dataset(request: DataRequest) -> TrainingSet:
    options = request.options
    x, labels = load_image_dataset(
        request.data, split=options.get("split", "train"), size=options.get("size")
    )
    return _images(x, labels, request)


def _image_files(request: DataRequest) -> TrainingSet:
    x, labels = load_images(request.data, size=request.options.get("size"))
    return _images(x, labels, request)


def _array_file(request: DataRequest) -> TrainingSet:
    x, _ = _first(load_array(request.data), None, request.n_data)
    return TrainingSet(x)


def _is_array_file(data: str) -> bool:
    return Path(data).suffix.lower() in SUPPORTED_EXTENSIONS


def register_builtin_datasets() -> None:
    """(Re-)register the built-in datasets (idempotent)."""
    for name in TOYS:
        register_dataset(name, _toy, description="2-D toy", replace=True)
    for name in IMAGE_DATASETS:
        register_dataset(
            name, _image_dataset, options=IMAGE_OPTIONS, description="image dataset",
            replace=True,
        )  # fmt: skip
    register_dataset(
        "image-files", _image_files, options=("size", "flip"), claims=is_image_source,
        description="image folder, .npz images, MNIST IDX or CIFAR-10 batch", replace=True,
    )  # fmt: skip
    register_dataset(
        "array-files", _array_file, claims=_is_array_file,
        description=f"{'/'.join(SUPPORTED_EXTENSIONS)} file of rows", replace=True,
    )  # fmt: skip


register_builtin_datasets()
