"""Training: one loop for every domain (EMA, checkpoints, exact resume, accelerate), configs.

* :class:`Trainer` -- ``Trainer(config, out_dir).fit(resume=False)``.
* :class:`TrainConfig`, :func:`load_config`, :data:`PRESETS`, :func:`build_model`,
  :func:`load_run` -- configs, presets, model construction and loading a finished run.
* :func:`save_checkpoint`, :func:`load_checkpoint`, :func:`latest_checkpoint` -- atomic,
  pickle-free checkpoints (safetensors + JSON).
"""

from .checkpoint import (
    Checkpoint,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from .config import PRESETS, TrainConfig, build_model, load_config, load_run
from .trainer import EMA, Trainer, learning_rate, read_metrics

__all__ = [
    "EMA",
    "PRESETS",
    "Checkpoint",
    "TrainConfig",
    "Trainer",
    "build_model",
    "latest_checkpoint",
    "learning_rate",
    "list_checkpoints",
    "load_checkpoint",
    "load_config",
    "load_run",
    "read_metrics",
    "save_checkpoint",
]
