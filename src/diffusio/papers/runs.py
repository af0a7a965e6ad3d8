"""Training (or reusing) the models a reproduction needs.

:func:`train_or_load` trains a :class:`~diffusio.train.config.TrainConfig` into
``out_dir/models/<label>-<hash>``, where the hash is the config's: running a reproduction again
reuses a finished run (and resumes an interrupted one exactly), while a changed config gets a
fresh directory instead of clashing with the old one. A finished run of the same config in a
sibling reproduction's folder (``out_dir/../*/models/*-<hash>``: ``ddim-2021`` trains exactly
``ddpm-2020``'s L_simple model) is copied instead of trained again; the trainer's resume check
still compares the config and the data digest before anything is used.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from ..core.model import DiffusionModel
from ..train.checkpoint import checkpoint_name, latest_checkpoint
from ..train.config import TrainConfig
from ..train.trainer import Trainer

__all__ = ["config_hash", "finished_sibling", "pick_device", "train_or_load"]


def config_hash(config: TrainConfig) -> str:
    """Eight hex digits identifying ``config`` (its JSON form)."""
    text = json.dumps(config.to_dict(), sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


def pick_device() -> torch.device:
    """Where a reproduction samples and evaluates: the GPU when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def train_or_load(
    config: TrainConfig,
    out_dir: str | os.PathLike,
    label: str,
    *,
    progress: bool = True,
    data: torch.Tensor | None = None,
) -> tuple[DiffusionModel, Any | None, dict[str, Any]]:
    """Train ``config`` (or finish / reuse its cached run); return ``(ema_model, normalizer,
    summary)``.

    The EMA model is in eval mode on the CPU; ``normalizer`` maps its samples back to data
    units (``None`` if the config does not normalize). ``summary`` is :meth:`Trainer.fit`'s
    plus ``run_dir`` and ``train_seconds`` (the run's total training time, cached or not).
    """
    run_dir = Path(out_dir) / "models" / f"{label}-{config_hash(config)}"
    if not run_dir.exists():
        sibling = finished_sibling(config, out_dir)
        if sibling is not None:
            print(f"reusing the finished run {sibling} (same config) for {run_dir}", flush=True)
            partial = run_dir.with_name(run_dir.name + ".copying")
            shutil.rmtree(partial, ignore_errors=True)
            shutil.copytree(sibling, partial)
            partial.rename(run_dir)
    trainer = Trainer(config, run_dir, progress=progress, data=data)
    summary = trainer.fit(resume=True)
    model = trainer.ema.module.to("cpu").eval()
    summary["run_dir"] = str(run_dir)
    summary["train_seconds"] = _train_seconds(trainer)
    return model, trainer.normalizer, summary


def finished_sibling(config: TrainConfig, out_dir: str | os.PathLike) -> Path | None:
    """A finished training run of ``config`` (same hash, final checkpoint at ``config.steps``)
    under another reproduction's ``models/`` next to ``out_dir``, or None."""
    out = Path(out_dir).resolve()
    final = checkpoint_name(config.steps)
    for candidate in sorted(out.parent.glob(f"*/models/*-{config_hash(config)}")):
        if candidate.parent.parent == out or not candidate.is_dir():
            continue
        try:
            latest = latest_checkpoint(candidate)
        except (OSError, ValueError):
            continue
        if latest is not None and latest.name == final:
            return candidate
    return None


def _train_seconds(trainer: Trainer) -> float:
    """Training wall time of the whole run from its metrics log (all sessions)."""
    from ..train.trainer import read_metrics

    times = [r["time"] for r in read_metrics(trainer.metrics_path) if "time" in r]
    return float(max(times)) if times else 0.0
