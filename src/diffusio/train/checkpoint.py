"""Atomic, pickle-free training checkpoints.

A checkpoint is a directory ``checkpoint-<step>`` inside a run directory::

    checkpoint-<step>/
        model.safetensors       the trained weights (module state_dict)
        ema.safetensors         the exponential moving average of the weights
        optimizer.safetensors   every optimizer state tensor, flattened to ``state.<i>.<name>``
        rng.safetensors         torch RNG states (global CPU/CUDA and dedicated generators), uint8
        state.json              step, optimizer scalars and param-group hyperparameters, scheduler,
                                time-sampler and Python/NumPy RNG states, anything else JSON
    latest                      text file naming the newest complete checkpoint

Nothing is ever pickled: tensors go to `safetensors <https://github.com/huggingface/safetensors>`_
files (written and verified by :mod:`diffusio.io`, re-exported here) and everything else to
JSON, so loading a checkpoint cannot execute code (``torch.load`` is never used). Every
safetensors file carries, in its header metadata, a SHA-256 digest of its tensors and the step
it belongs to; :func:`load_checkpoint` verifies both, so a truncated,
bit-flipped or misplaced file is reported by name instead of silently loaded.

Crash safety: a checkpoint is written into a temporary sibling directory, every file and the
directory are fsynced, and the directory is renamed to ``checkpoint-<step>`` (an atomic
operation on POSIX file systems); only then is ``latest`` replaced, by writing a temporary file
and ``os.replace``-ing it. A crash at any instant therefore leaves ``latest`` naming a complete
checkpoint (the previous one until the new pointer lands). Old checkpoints are pruned only after
the pointer moved, and by renaming them out of the way before deleting them.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..io import STEP_KEY as _STEP_KEY
from ..io import (
    apply_tensors,
    fsync_dir,
    read_json,
    read_safetensors,
    write_bytes_atomic,
    write_json_atomic,
    write_safetensors,
    write_synced,
)
from ..io import check_tensors as _check_tensors

__all__ = [
    "CHECKPOINT_FILES",
    "LATEST",
    "Checkpoint",
    "apply_tensors",
    "capture_global_rng",
    "checkpoint_name",
    "flatten_optimizer_state",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "read_json",
    "read_safetensors",
    "restore_global_rng",
    "save_checkpoint",
    "unflatten_optimizer_state",
    "write_bytes_atomic",
    "write_json_atomic",
    "write_safetensors",
]

FORMAT = "diffusio-checkpoint"
VERSION = 1
CHECKPOINT_FILES = (
    "model.safetensors",
    "ema.safetensors",
    "optimizer.safetensors",
    "rng.safetensors",
    "state.json",
)
LATEST = "latest"
_NAME = re.compile(r"^checkpoint-(\d+)$")


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=False, allow_nan=True) + "\n").encode("utf-8")


# --------------------------------------------------------------------------- optimizer state
def _jsonable(value: Any, where: str) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, where) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, where) for k, v in value.items()}
    if isinstance(value, Tensor) and value.numel() == 1:
        return value.item()
    raise TypeError(f"{where}: cannot store a {type(value).__name__} in JSON")


def flatten_optimizer_state(state_dict: Mapping[str, Any]) -> tuple[dict[str, Tensor], dict]:
    """Split a ``torch.optim`` state_dict into named tensors and JSON.

    Tensors of the per-parameter state become ``state.<param index>.<name>``; the JSON part holds
    the param groups (hyperparameters and parameter indices), the non-tensor per-parameter values,
    and the list of tensor names per parameter so that loading can check completeness.
    """
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    names: dict[str, list[str]] = {}
    for index, per_param in state_dict.get("state", {}).items():
        key = str(int(index))
        names[key], scalars[key] = [], {}
        for name, value in per_param.items():
            if isinstance(value, Tensor):
                tensors[f"state.{key}.{name}"] = value
                names[key].append(name)
            else:
                scalars[key][name] = _jsonable(value, f"optimizer state {key}.{name}")
    groups = [_jsonable(dict(g), "optimizer param_groups") for g in state_dict["param_groups"]]
    return tensors, {"param_groups": groups, "tensors": names, "scalars": scalars}


def unflatten_optimizer_state(
    tensors: Mapping[str, Tensor], meta: Mapping[str, Any], source: str = "optimizer"
) -> dict[str, Any]:
    """Inverse of :func:`flatten_optimizer_state` (lists in param groups become tuples, as
    ``betas`` is; ``params`` stays a list). ``source`` names the file in error messages."""
    try:
        state: dict[int, dict[str, Any]] = {}
        for key, names in meta["tensors"].items():
            per = state.setdefault(int(key), {})
            for name in names:
                full = f"state.{key}.{name}"
                if full not in tensors:
                    raise ValueError(f"{source}: missing tensor {full!r}")
                per[name] = tensors[full]
        for key, values in meta["scalars"].items():
            state.setdefault(int(key), {}).update(values)
        groups = []
        for g in meta["param_groups"]:
            g = {
                k: (tuple(v) if isinstance(v, list) and k != "params" else v) for k, v in g.items()
            }
            g["params"] = [int(i) for i in g["params"]]
            groups.append(g)
    except (KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{source}: malformed optimizer state ({err!r})") from None
    extra = set(tensors) - {f"state.{k}.{n}" for k, ns in meta["tensors"].items() for n in ns}
    if extra:
        raise ValueError(f"{source}: unexpected tensors {sorted(extra)[:5]}")
    return {"state": state, "param_groups": groups}


# --------------------------------------------------------------------------- RNG state
def capture_global_rng() -> tuple[dict[str, Any], dict[str, Tensor]]:
    """The global RNG states: Python and NumPy as JSON, torch CPU/CUDA as uint8 tensors."""
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state()
    json_part = {
        "python": [version, list(internal), gauss],
        "numpy": [
            np_state[0],
            np_state[1].tolist(),
            int(np_state[2]),
            int(np_state[3]),
            float(np_state[4]),
        ],
    }
    tensors = {"torch.cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch.cuda.{i}"] = s
    return json_part, tensors


def restore_global_rng(json_part: Mapping[str, Any], tensors: Mapping[str, Tensor]) -> None:
    """Restore states captured by :func:`capture_global_rng` (CUDA states only for the devices
    that exist)."""
    if "python" in json_part:
        version, internal, gauss = json_part["python"]
        random.setstate((int(version), tuple(int(v) for v in internal), gauss))
    if "numpy" in json_part:
        name, keys, pos, has_gauss, cached = json_part["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    if "torch.cpu" in tensors:
        torch.set_rng_state(tensors["torch.cpu"].to(torch.uint8))
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            if f"torch.cuda.{i}" in tensors:
                torch.cuda.set_rng_state(tensors[f"torch.cuda.{i}"].to(torch.uint8), i)


# --------------------------------------------------------------------------- checkpoints
def checkpoint_name(step: int) -> str:
    """``checkpoint-<step>``."""
    return f"checkpoint-{int(step)}"


def _step_of(path: Path) -> int | None:
    m = _NAME.match(path.name)
    return int(m.group(1)) if m else None


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Checkpoint directories of a run that have all their files, oldest step first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = []
    for p in run_dir.iterdir():
        step = _step_of(p)
        if step is not None and p.is_dir() and all((p / f).is_file() for f in CHECKPOINT_FILES):
            found.append((step, p))
    return [p for _, p in sorted(found)]


def _pointer_name(run_dir: Path) -> str | None:
    with contextlib.suppress(OSError, UnicodeDecodeError):
        return (run_dir / LATEST).read_text(encoding="utf-8").strip()
    return None


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The checkpoint ``latest`` names; without a pointer (a crash before the first one was
    written), the newest complete checkpoint directory; None if there is none.

    Raises FileNotFoundError when ``latest`` names a directory that does not exist and
    ValueError when the pointer is malformed.
    """
    run_dir = Path(run_dir)
    pointer = run_dir / LATEST
    if pointer.is_file():
        name = pointer.read_text(encoding="utf-8").strip()
        if _NAME.match(name) is None:
            raise ValueError(f"{pointer}: malformed pointer {name[:80]!r}")
        target = run_dir / name
        if not target.is_dir():
            raise FileNotFoundError(f"{pointer}: names {name}, which does not exist in {run_dir}")
        return target
    complete = list_checkpoints(run_dir)
    return complete[-1] if complete else None


def _clean_stale(run_dir: Path) -> None:
    """Remove temporary and trash directories a crash may have left behind."""
    for p in run_dir.iterdir():
        if p.name.startswith((".tmp-checkpoint-", ".trash-checkpoint-")) and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)


def _remove_dir(path: Path) -> None:
    """Take ``path`` out of the checkpoint namespace atomically (rename), then delete it."""
    trash = path.with_name(f".trash-{path.name}-{os.getpid()}")
    os.rename(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def _state_dict(obj: nn.Module | Mapping[str, Tensor]) -> Mapping[str, Tensor]:
    return obj.state_dict() if isinstance(obj, nn.Module) else obj


def save_checkpoint(
    run_dir: str | os.PathLike,
    step: int,
    *,
    model: nn.Module | Mapping[str, Tensor],
    ema: nn.Module | Mapping[str, Tensor],
    optimizer: torch.optim.Optimizer | Mapping[str, Any],
    rng: Mapping[str, Tensor] | None = None,
    state: Mapping[str, Any] | None = None,
    keep: int | None = 3,
) -> Path:
    """Write ``run_dir/checkpoint-<step>`` atomically, point ``latest`` at it and prune.

    Args:
        model, ema: modules or state_dicts.
        optimizer: an optimizer or its state_dict (flattened by :func:`flatten_optimizer_state`).
        rng: uint8 RNG-state tensors (e.g. from :func:`capture_global_rng` and generators'
            ``get_state()``), saved to ``rng.safetensors``.
        state: JSON-serializable training state (scheduler, time sampler, Python/NumPy RNG...);
            stored in ``state.json`` next to ``step`` and the optimizer's JSON part.
        keep: how many checkpoints to keep (the newest ones); None or 0 keeps all.

    Returns:
        The checkpoint directory.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    step = int(step)
    _clean_stale(run_dir)
    final = run_dir / checkpoint_name(step)
    if final.exists() and _pointer_name(run_dir) == final.name:
        raise ValueError(f"{final} is the latest checkpoint; refusing to overwrite it")
    tmp = run_dir / f".tmp-{final.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    opt_sd = optimizer.state_dict() if hasattr(optimizer, "state_dict") else optimizer
    opt_tensors, opt_meta = flatten_optimizer_state(opt_sd)
    meta = {_STEP_KEY: str(step)}
    try:
        for name, tensors in (
            ("model.safetensors", _state_dict(model)),
            ("ema.safetensors", _state_dict(ema)),
            ("optimizer.safetensors", opt_tensors),
            ("rng.safetensors", dict(rng or {})),
        ):
            write_safetensors(tmp / name, tensors, meta, atomic=False)
        body = {
            "format": FORMAT,
            "version": VERSION,
            "step": step,
            "optimizer": opt_meta,
            **{k: v for k, v in (state or {}).items() if k not in ("format", "version", "step")},
        }
        write_synced(tmp / "state.json", _json_bytes(body))
        fsync_dir(tmp)
        if final.exists():  # a checkpoint of this step from an interrupted earlier attempt
            _remove_dir(final)
        os.rename(tmp, final)
        fsync_dir(run_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    write_bytes_atomic(run_dir / LATEST, f"{final.name}\n".encode())
    if keep:
        _prune(run_dir, keep, protect=final)
    return final


def _prune(run_dir: Path, keep: int, protect: Path) -> None:
    steps = sorted(
        (s, p) for p in run_dir.iterdir() if (s := _step_of(p)) is not None and p.is_dir()
    )
    for _, path in steps[: max(0, len(steps) - keep)]:
        if path != protect:
            _remove_dir(path)


@dataclass
class Checkpoint:
    """A loaded, verified checkpoint: tensors on CPU and the JSON state."""

    path: Path
    step: int
    model: dict[str, Tensor]
    ema: dict[str, Tensor]
    optimizer: dict[str, Any]
    rng: dict[str, Tensor]
    state: dict[str, Any] = field(default_factory=dict)

    def file(self, name: str) -> Path:
        return self.path / name

    def load_into(
        self,
        model: nn.Module | None = None,
        ema: nn.Module | None = None,
        optimizer: torch.optim.Optimizer | None = None,
    ) -> None:
        """Load the weights and optimizer state into existing objects, checking names and shapes
        first (a mismatch raises ValueError naming the file, before anything is modified)."""
        if model is not None:
            _check_tensors(model, self.model, self.file("model.safetensors"))
        if ema is not None:
            _check_tensors(ema, self.ema, self.file("ema.safetensors"))
        if optimizer is not None:
            _check_optimizer(optimizer, self.optimizer, self.file("optimizer.safetensors"))
        if model is not None:
            apply_tensors(model, self.model, self.file("model.safetensors"))
        if ema is not None:
            apply_tensors(ema, self.ema, self.file("ema.safetensors"))
        if optimizer is not None:
            optimizer.load_state_dict(self.optimizer)


def _check_optimizer(
    optimizer: torch.optim.Optimizer, state_dict: Mapping[str, Any], source: Path
) -> None:
    params = [p for g in optimizer.param_groups for p in g["params"]]
    groups = state_dict["param_groups"]
    if len(groups) != len(optimizer.param_groups) or sum(len(g["params"]) for g in groups) != len(
        params
    ):
        raise ValueError(
            f"{source}: optimizer has {len(optimizer.param_groups)} group(s) of {len(params)} "
            f"parameters, checkpoint has {len(groups)} group(s) of "
            f"{sum(len(g['params']) for g in groups)}"
        )
    index: dict[int, Tensor] = {}
    for g_saved, g in zip(groups, optimizer.param_groups, strict=True):
        if len(g_saved["params"]) != len(g["params"]):
            raise ValueError(
                f"{source}: a parameter group has {len(g_saved['params'])} parameters in the "
                f"checkpoint, {len(g['params'])} in the optimizer"
            )
        index.update(zip(g_saved["params"], g["params"], strict=True))
    for i, per in state_dict["state"].items():
        if i not in index:
            raise ValueError(f"{source}: state for unknown parameter index {i}")
        for name, t in per.items():
            if isinstance(t, Tensor) and t.dim() > 0 and t.shape != index[i].shape:
                raise ValueError(
                    f"{source}: shape mismatch for state.{i}.{name}: file has {tuple(t.shape)}, "
                    f"parameter has {tuple(index[i].shape)}"
                )


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Load and verify a checkpoint directory (or a run directory: then the one ``latest``
    names).

    Every file is checked: a missing one raises FileNotFoundError naming it; a corrupt one
    (unparsable JSON or safetensors header, digest mismatch, file from another step, missing
    keys, model and EMA of different shapes, incomplete optimizer state) raises ValueError
    naming it. Never unpickles anything.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: checkpoint directory not found")
    if _step_of(path) is None:
        found = latest_checkpoint(path)
        if found is None:
            raise FileNotFoundError(f"{path}: no checkpoint-<step> directory and no 'latest'")
        path = found
    state_file = path / "state.json"
    state = read_json(state_file)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{state_file}: not a diffusio checkpoint state (format {FORMAT!r})")
    if state.get("version") != VERSION:
        raise ValueError(f"{state_file}: unsupported version {state.get('version')!r}")
    step = state.get("step")
    if not isinstance(step, int) or step < 0:
        raise ValueError(f"{state_file}: missing or invalid 'step'")
    if "optimizer" not in state or not isinstance(state["optimizer"], dict):
        raise ValueError(f"{state_file}: missing 'optimizer' section")
    dir_step = _step_of(path)
    if dir_step != step:
        raise ValueError(f"{state_file}: records step {step} but lies in {path.name}")

    model, _ = read_safetensors(path / "model.safetensors", step=step)
    ema, _ = read_safetensors(path / "ema.safetensors", step=step)
    opt_tensors, _ = read_safetensors(path / "optimizer.safetensors", step=step)
    rng, _ = read_safetensors(path / "rng.safetensors", step=step)
    if set(model) != set(ema) or any(model[k].shape != ema[k].shape for k in model):
        raise ValueError(
            f"{path / 'ema.safetensors'}: tensor names or shapes differ from model.safetensors"
        )
    optimizer = unflatten_optimizer_state(
        opt_tensors, state["optimizer"], source=str(path / "optimizer.safetensors")
    )
    return Checkpoint(path, step, model, ema, optimizer, rng, state)
