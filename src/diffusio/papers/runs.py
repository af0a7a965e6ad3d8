"""The shared model cache: trained models keyed by their recipe's hash.

A *recipe* is a training config (a preset plus overrides, :class:`~diffusio.train.config.
TrainConfig`); :func:`config_hash` gives it a stable eight-digit name. :class:`ModelCache` trains
a recipe into ``<root>/<label>-<hash>`` (``root`` = ``$DIFFUSIO_CACHE/models``, else
``~/.cache/diffusio/models``) or reuses the finished run there, so two reproductions that train
the same recipe share one model (``ddim-2021`` samples ``ddpm-2020``'s L_simple network,
``cfg-2021`` guides ``guided-diffusion-2021``'s conditional one) without either reading the
other's folder. An interrupted training resumes exactly; the trainer's resume check compares the
config and the data digest before anything is reused.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..core.model import DiffusionModel
from ..io import cache_root, json_hash

__all__ = ["ModelCache", "cache_root", "config_hash", "logged_train_seconds", "pick_device"]


def config_hash(config: Any) -> str:
    """Eight hex digits identifying a training config (its JSON form)."""
    return json_hash(config.to_dict())


def logged_train_seconds(run_dir: str | os.PathLike) -> float:
    """A run's whole training time from its ``metrics.jsonl`` (the last logged ``time``; a
    resumed run's log continues the clock), 0 if nothing was logged."""
    from ..train.trainer import read_metrics

    times = [r["time"] for r in read_metrics(Path(run_dir) / "metrics.jsonl") if "time" in r]
    return float(max(times)) if times else 0.0


def pick_device() -> torch.device:
    """Where a reproduction samples and evaluates: the GPU when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class ModelCache:
    """Trained models under ``root`` (default ``cache_root() / "models"``), one run directory
    per recipe: ``<label>-<config hash>``."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else cache_root() / "models"

    def run_dir(self, config: Any, label: str) -> Path:
        return self.root / f"{label}-{config_hash(config)}"

    def train(
        self,
        config: Any,
        label: str,
        *,
        progress: bool = True,
        data: torch.Tensor | None = None,
    ) -> tuple[DiffusionModel, Any | None, dict[str, Any]]:
        """Train ``config`` (or finish / reuse its cached run): ``(ema_model, normalizer,
        summary)``. The EMA model is in eval mode on the CPU; ``normalizer`` maps its samples
        back to data units (None if the config does not normalize). ``summary`` is
        :meth:`Trainer.fit`'s plus ``run_dir`` and ``train_seconds`` (the run's whole training
        time, cached or not)."""
        from ..train.trainer import Trainer

        run_dir = self.run_dir(config, label)
        trainer = Trainer(config, run_dir, progress=progress, data=data)
        summary = trainer.fit(resume=True)
        model = trainer.ema.module.to("cpu").eval()
        summary["run_dir"] = str(run_dir)
        summary["train_seconds"] = logged_train_seconds(run_dir)
        return model, trainer.normalizer, summary
