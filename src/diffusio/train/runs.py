"""Run directories: the manifest a run writes (``config.json``) and :func:`load_run`.

A run directory holds ``config.json`` (see :func:`run_manifest`), which records, besides the
config, the *resolved* model -- process name and options, prediction, network class and all of
its constructor options, and the data normalizer's state -- the data's digest and how the run
was distributed (processes, global and per-process batch, learning rate), so :func:`load_run`
rebuilds the trained model from the directory alone, without the script that trained it,
reading the weights from safetensors files only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..core.model import DiffusionModel
from ..io import apply_tensors, read_json, read_safetensors
from .config import TrainConfig
from .models import model_from_spec

__all__ = ["RUN_FORMAT", "from_json", "load_run", "run_manifest", "to_json"]

RUN_FORMAT = "diffusio-run"


def run_manifest(
    config: TrainConfig,
    spec: Mapping[str, Any],
    normalizer: Any | None,
    data_info: Mapping[str, Any],
    distributed: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The content of a run's ``config.json``; ``distributed`` (``num_processes``,
    ``global_batch_size``, ``per_process_batch_size``, ``lr``) where the trainer knows it."""
    manifest = {
        "format": RUN_FORMAT,
        "version": 1,
        "config": config.to_dict(),
        "model": dict(spec),
        "normalizer": None if normalizer is None else to_json(normalizer.state_dict()),
        "data": dict(data_info),
    }
    if distributed is not None:
        manifest["distributed"] = dict(distributed)
    return manifest


def to_json(value: Any) -> Any:
    """Tensors / arrays inside nested containers -> tagged JSON (see :func:`from_json`)."""
    if isinstance(value, Tensor):
        return {"__tensor__": str(value.dtype).removeprefix("torch."), "data": value.tolist()}
    if hasattr(value, "tolist") and hasattr(value, "dtype"):  # numpy
        return {"__array__": str(value.dtype), "data": value.tolist()}
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value


def from_json(value: Any) -> Any:
    """Inverse of :func:`to_json`."""
    if isinstance(value, Mapping):
        if "__tensor__" in value:
            return torch.tensor(value["data"], dtype=getattr(torch, value["__tensor__"]))
        if "__array__" in value:
            import numpy as np

            return np.asarray(value["data"], dtype=value["__array__"])
        return {k: from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json(v) for v in value]
    return value


def load_run(
    run_dir: str | os.PathLike, ema: bool = True
) -> tuple[DiffusionModel, TrainConfig, Any | None]:
    """Rebuild a trained model from a run directory written by the trainer.

    Reads ``config.json`` and ``ema.safetensors`` (``ema=False``: ``model.safetensors``); never
    unpickles. Returns ``(model, config, normalizer)``, the model in eval mode on the CPU and the
    normalizer (a :class:`diffusio.data.normalize.Standardizer`, or None if the data was not
    normalized): samples come out in normalized units, ``normalizer.inverse(x)`` maps them back.
    A missing directory or file raises FileNotFoundError, a corrupt one ValueError, naming it.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: run directory not found")
    cfg_file = run_dir / "config.json"
    manifest = read_json(cfg_file)
    if not isinstance(manifest, dict) or manifest.get("format") != RUN_FORMAT:
        raise ValueError(f"{cfg_file}: not a diffusio run config (format {RUN_FORMAT!r})")
    try:
        config = TrainConfig.from_dict(manifest["config"])
        spec = manifest["model"]
        model = model_from_spec(spec)
    except (KeyError, TypeError) as err:
        raise ValueError(f"{cfg_file}: incomplete run config ({err!r})") from None
    except ValueError as err:
        raise ValueError(f"{cfg_file}: {err}") from None
    weights = run_dir / ("ema.safetensors" if ema else "model.safetensors")
    tensors, _ = read_safetensors(weights)
    apply_tensors(model, tensors, weights)
    normalizer = None
    if manifest.get("normalizer") is not None:
        from ..data.normalize import Standardizer

        try:
            normalizer = Standardizer.from_state_dict(from_json(manifest["normalizer"]))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{cfg_file}: bad normalizer state ({err})") from None
    return model.eval(), config, normalizer
