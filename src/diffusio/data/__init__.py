"""Datasets and normalisers.

* :func:`sample_toy`, :data:`TOYS`, :func:`toy_entropy`, :func:`toy_mixture` -- FFJORD's 2-D
  toys (Grathwohl et al. 2019) with exact entropies / densities where known.
* :func:`load_array` -- samples (N, D) from ``.npy`` / ``.npz`` / ``.csv``.
* :class:`Standardizer` -- per-dimension standardisation and its log-Jacobian for NLLs.
* :mod:`diffusio.data.images` -- image files: MNIST IDX, CIFAR-10 batches (safe unpickling),
  ``.npz`` arrays, image folders, and :func:`~diffusio.data.images.to_model_range`.
"""

from .files import SUPPORTED_EXTENSIONS, load_array
from .normalize import Standardizer
from .toys import TOYS, sample_toy, toy_entropy, toy_mixture

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "TOYS",
    "Standardizer",
    "load_array",
    "sample_toy",
    "toy_entropy",
    "toy_mixture",
]
