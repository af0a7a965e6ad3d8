"""Datasets and normalisers.

* :class:`Batch`, :class:`TrainingSet`, :class:`RandomFlip`, :func:`drop_conditions` -- the
  batch contract (``x0``, a ``cond`` dict, a loss ``mask``; null values and transforms).
* :func:`register_dataset`, :func:`build_dataset`, :class:`DataRequest` -- datasets by name
  (the built-in ones in :mod:`diffusio.data.builtin`).

* :func:`sample_toy`, :data:`TOYS`, :func:`toy_entropy`, :func:`toy_mixture` -- FFJORD's 2-D
  toys (Grathwohl et al. 2019) with exact entropies / densities where known.
* :func:`load_array` -- samples (N, D) from ``.npy`` / ``.npz`` / ``.csv``.
* :class:`Standardizer` -- per-dimension standardisation and its log-Jacobian for NLLs.
* :mod:`diffusio.data.images` -- image files: MNIST IDX, CIFAR-10 batches (safe unpickling),
  ``.npz`` arrays, image folders, and :func:`~diffusio.data.images.to_model_range`.
* :func:`load_image_dataset`, :data:`IMAGE_DATASETS` -- built-in small image sets (``digits``
  8x8, ``mnist-5k`` 28x28) in [-1, 1] with a fixed stratified 80/20 train/test split;
  :func:`random_flip`, :func:`image_grid`, :func:`save_image_grid`.
"""

from . import builtin  # noqa: F401  (registers the built-in datasets)
from .batch import Batch, RandomFlip, TrainingSet, Transform, drop_conditions
from .datasets import (
    IMAGE_DATASETS,
    image_grid,
    load_image_dataset,
    random_flip,
    save_image_grid,
)
from .files import SUPPORTED_EXTENSIONS, load_array
from .normalize import Standardizer
from .registry import (
    DataRequest,
    build_dataset,
    dataset_entry,
    dataset_names,
    register_dataset,
    unregister_dataset,
)
from .toys import TOYS, sample_toy, toy_entropy, toy_mixture

__all__ = [
    "IMAGE_DATASETS",
    "Batch",
    "DataRequest",
    "RandomFlip",
    "TrainingSet",
    "Transform",
    "build_dataset",
    "dataset_entry",
    "dataset_names",
    "drop_conditions",
    "register_dataset",
    "unregister_dataset",
    "SUPPORTED_EXTENSIONS",
    "TOYS",
    "Standardizer",
    "image_grid",
    "load_array",
    "load_image_dataset",
    "random_flip",
    "sample_toy",
    "save_image_grid",
    "toy_entropy",
    "toy_mixture",
]
