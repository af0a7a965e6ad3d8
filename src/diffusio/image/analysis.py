"""Shared pieces of the digits experiments (the DDPM family on scikit-learn's 8x8 digits).

* :func:`digits_recipe` -- a training recipe (preset + overrides) for a digits reproduction.
  The same arguments give the same config, hence the same model-cache entry: ``ddim-2021``
  samples the L_simple network of ``ddpm-2020`` (Ho et al. 2020, Algorithm 1) by asking for the
  same recipe, without either reproduction importing the other.
* :func:`digits_splits` -- the train and test images with the test digits' nearest-training-
  image distances (the reference of :func:`~diffusio.metrics.neighbours.memorisation`).
* :data:`TINY_UNET` -- the tiny U-Net of the smoke runs and tests.
* :func:`loss_curve` -- a training run's logged losses, optionally in bits/dim (the one reader
  of both ddpm-2020's loss figure and iddpm-2021's learning curves).
* :func:`curve_noise` -- how noisy a learning curve is (Nichol & Dhariwal 2021, Fig. 6: the
  importance-sampled L_vlb is much smoother than the uniformly sampled one).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import Tensor

if TYPE_CHECKING:
    from ..train.config import TrainConfig

__all__ = ["TINY_UNET", "curve_noise", "digits_recipe", "digits_splits", "loss_curve"]

#: A 48k-parameter digits U-Net: the ``net_options`` of the reproductions' smoke runs.
TINY_UNET: dict[str, Any] = {"channels": 8, "channel_mults": [1, 2], "num_res_blocks": 1,
                             "attention_resolutions": [4], "num_heads": 2, "groups": 4}  # fmt: skip


def digits_recipe(
    preset: str,
    steps: int,
    net_options: dict[str, Any] | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    **overrides: Any,
) -> TrainConfig:
    """``preset`` trained ``steps`` steps with ``seed``; ``net_options`` / ``batch_size`` replace
    the preset's when given, ``overrides`` are further config keys (e.g. the objective:
    ``weighting="vlb"``). The description names the objective (``"digits-ddpm (L_simple)"``)
    unless ``overrides`` gives one. With no overrides this is DDPM's L_simple model."""
    from ..train.config import load_config

    label = overrides.get("weighting", "simple")
    values: dict[str, Any] = {"steps": int(steps), "seed": int(seed),
                              "description": f"{preset} (L_{label})", **overrides}  # fmt: skip
    if net_options is not None:
        values["net_options"] = dict(net_options)
    if batch_size is not None:
        values["batch_size"] = int(batch_size)
    return load_config(preset, **values)


def digits_splits() -> dict[str, Tensor]:
    """``{"train", "test", "test_distances"}``: the digits splits in [-1, 1] and each test
    digit's L2 distance to its nearest training digit."""
    from ..data.datasets import load_image_dataset
    from ..metrics.neighbours import nearest_distances

    train, _ = load_image_dataset("digits", "train")
    test, _ = load_image_dataset("digits", "test")
    return {"train": train, "test": test, "test_distances": nearest_distances(test, train)}


def loss_curve(run_dir: str | os.PathLike, bits_dims: int | None = None) -> dict[str, list[float]]:
    """The logged training losses of a run (the train records of its ``metrics.jsonl``):
    ``{"step", "loss"}``. With ``bits_dims`` the losses, nats per example (the variational
    bound, Ho et al. 2020 eq. 5), are converted to bits per dimension:
    ``loss / (bits_dims ln 2)``."""
    from ..train.trainer import read_metrics

    records = [r for r in read_metrics(Path(run_dir) / "metrics.jsonl")
               if r.get("kind") == "train" and "loss" in r]  # fmt: skip
    scale = 1.0 / (bits_dims * math.log(2.0)) if bits_dims else 1.0
    return {"step": [float(r["step"]) for r in records],
            "loss": [float(r["loss"]) * scale for r in records]}  # fmt: skip


def curve_noise(loss: Sequence[float] | np.ndarray, window: int = 5) -> float:
    """Spread of a learning curve's second half: the std of the log-ratios of its values to a
    running median over ``2 window + 1`` points (nan for fewer than 5 points or non-positive
    values). Scale-free, so curves in different units compare."""
    values = np.asarray(loss, dtype=float)
    tail = values[len(values) // 2 :]
    if tail.size < 5 or np.any(tail <= 0):
        return float("nan")
    k = window
    med = np.array([np.median(tail[max(0, i - k) : i + k + 1]) for i in range(tail.size)])
    return float(np.std(np.log(tail / med)))
