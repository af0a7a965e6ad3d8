"""Training: one loop for every domain (EMA, checkpoints, exact resume, accelerate), configs.

Modules, one job each:

* :mod:`~diffusio.train.config` -- :class:`TrainConfig`, :data:`PRESETS`, :func:`load_config`
  (the older names below are re-exported from it too);
* :mod:`~diffusio.train.data` -- a config's data from the dataset registry
  (:func:`load_training_set`; :mod:`diffusio.data.registry` holds the registry itself);
* :mod:`~diffusio.train.models` -- networks and models from a config (:data:`NETS`,
  :func:`register_net`, :func:`build_model`, :func:`model_spec`);
* :mod:`~diffusio.train.runs` -- run manifests (``config.json``) and :func:`load_run`;
* :mod:`~diffusio.train.checkpoint` -- atomic, pickle-free checkpoints (safetensors + JSON);
* :mod:`~diffusio.train.distributed` -- one or N processes: global batch, rank-0 run ownership;
* :mod:`~diffusio.train.trainer` -- :class:`Trainer`: ``Trainer(config, out_dir).fit()``.
"""

from .checkpoint import (
    Checkpoint,
    checkpoint_name,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from .config import PRESETS, TrainConfig, load_config
from .data import load_training_set
from .models import NETS, build_model, register_net
from .runs import load_run
from .trainer import EMA, Trainer, learning_rate, read_metrics

__all__ = [
    "EMA",
    "NETS",
    "PRESETS",
    "Checkpoint",
    "TrainConfig",
    "Trainer",
    "build_model",
    "checkpoint_name",
    "latest_checkpoint",
    "learning_rate",
    "list_checkpoints",
    "load_checkpoint",
    "load_config",
    "load_run",
    "load_training_set",
    "read_metrics",
    "register_net",
    "save_checkpoint",
]
