"""Datasets and normalisers.

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

from .datasets import (
    IMAGE_DATASETS,
    image_grid,
    load_image_dataset,
    random_flip,
    save_image_grid,
)
from .files import SUPPORTED_EXTENSIONS, load_array
from .normalize import Standardizer
from .toys import TOYS, sample_toy, toy_entropy, toy_mixture

__all__ = [
    "IMAGE_DATASETS",
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
