"""Backbones: ``net(x_t, t, **cond) -> tensor of x_t's shape`` with continuous t in [0, 1].

* :class:`TimeMLP` -- residual MLP for low-dimensional data (toys, small vectors).
* :class:`SinusoidalEmbedding`, :class:`FourierEmbedding` -- time embeddings (DDPM App. B;
  Tancik et al. 2020 / Score SDE App. C.1).
"""

from .embeddings import FourierEmbedding, SinusoidalEmbedding
from .mlp import ACTIVATIONS, EMBEDDINGS, TimeMLP, count_parameters

__all__ = [
    "ACTIVATIONS",
    "EMBEDDINGS",
    "FourierEmbedding",
    "SinusoidalEmbedding",
    "TimeMLP",
    "count_parameters",
]
