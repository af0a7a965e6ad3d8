"""Backbones: ``net(x_t, t, **cond) -> tensor of x_t's shape`` with continuous t in [0, 1].

* :class:`TimeMLP` -- residual MLP for low-dimensional data (toys, small vectors).
* :class:`UNet` -- the DDPM / ADM image U-Net (Ho et al. 2020, App. B; Dhariwal & Nichol 2021),
  with named option sets :data:`UNET_PRESETS` / :func:`unet_preset`.
* :class:`TemporalUNet`, :class:`ValueNetwork` -- Diffuser's temporal U-Net over trajectories
  (N, H, D) and its noise-conditional value function (Janner et al. 2022), with Decision
  Diffuser's return / skill conditions (Ajay et al. 2023).
* :class:`SinusoidalEmbedding`, :class:`FourierEmbedding` -- time embeddings (DDPM App. B;
  Tancik et al. 2020 / Score SDE App. C.1).
"""

from .embeddings import FourierEmbedding, SinusoidalEmbedding
from .mlp import ACTIVATIONS, EMBEDDINGS, TimeMLP, count_parameters
from .temporal import TemporalUNet, ValueNetwork
from .unet import UNET_PRESETS, UNet, unet_preset

__all__ = [
    "ACTIVATIONS",
    "EMBEDDINGS",
    "FourierEmbedding",
    "SinusoidalEmbedding",
    "UNET_PRESETS",
    "TemporalUNet",
    "TimeMLP",
    "UNet",
    "ValueNetwork",
    "count_parameters",
    "unet_preset",
]
