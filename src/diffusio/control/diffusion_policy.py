"""Diffusion Policy (Chi et al. 2023, *Diffusion Policy: Visuomotor Policy Learning via Action
Diffusion*, RSS 2023, arXiv 2303.04137): an action chunk diffused conditionally on a window of
observations, executed with receding horizon.

* **Data** (:func:`policy_windows`, the official ``SequenceSampler``): for every step of every
  episode a window of Tp steps starting ``To - 1`` steps before it; its first To observations
  are the condition, its Tp actions the chunk x0 (N, Tp, A). Windows that run off the episode
  repeat its first observation / last action (``pad_before = To - 1``, ``pad_after = Ta - 1``).
  Observations and actions are scaled to [-1, 1] per dimension by their data limits (the
  official low-dim normaliser), stored with the run.
* **Training**: the batch contract -- x0 the normalised chunk, ``cond = {"obs": (N, To x O)}``
  -- through diffusio's :class:`~diffusio.train.trainer.Trainer`: eps-prediction, the
  squared-cosine schedule with 100 steps (``vp-cosine``), AdamW with warm-up and cosine
  decay, an EMA of the weights (Sec. 3.2, App. A; lr 1e-3 here, see :data:`DP_DEFAULTS`). The backbone is
  :class:`~diffusio.nets.film.FiLMUNet1D` (``film-unet1d``) or the small
  :class:`~diffusio.nets.film.FiLMMLP` (``film-mlp``).
* **Inference** (:class:`DiffusionPolicy`, Sec. 3.1, Fig. 3): at a replanning step the last To
  observations give a chunk of Tp actions (any diffusio sampler: ``ddpm`` 100 steps, ``ddim``
  or ``dpm-solver++`` with ~10, x0 clipped to [-1, 1] as the official's ``clip_sample``); the
  Ta actions from index ``To - 1`` (the action of the current step onwards) are executed, then
  it replans. ``action_horizon = 1`` is Diffusion Policy without action chunking.

Deviations from the official recipe: the EMA is the trainer's (decay with the Score SDE
warm-up ``min(d, (1 + n) / (10 + n))``), not the official's power-0.75 schedule; the step
embedding is of the continuous time ``1000 t`` (the official embeds the integer step).

A run directory is an ordinary trainer run plus ``diffusion_policy.json`` (format, horizons,
normalisers, environment, sampler defaults); :func:`~diffusio.control.policies.load_policy`
reads it.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .diffuser import LimitsNormalizer

__all__ = [
    "DP_DEFAULTS", "DP_FILE", "NET_DEFAULTS", "DiffusionPolicy", "RecedingHorizon", "diffusion_policy",
    "ChunkData", "chunk_training_data", "load_diffusion_policy_run", "policy_config",
    "policy_windows", "train_diffusion_policy",
]  # fmt: skip

DP_FORMAT, DP_VERSION, DP_FILE = "diffusio-diffusion-policy", 1, "diffusion_policy.json"

#: The official low-dim recipe at CPU scale: overrides of a TrainConfig. The official trains
#: with lr 1e-4 for thousands of epochs; at a few thousand CPU steps 1e-3 (warm-up 200) is what
#: converges (point2d-avoid, 2000 steps, the U-Net below: 100% success without collision at
#: 1e-3, 45-55% at 1e-4).
DP_DEFAULTS: dict[str, Any] = {
    "process": "vp-cosine", "process_options": {"num_steps": 100}, "prediction": "eps",
    "time_distribution": "discrete", "net": "film-unet1d", "normalize": False,
    "batch_size": 256, "lr": 1e-3, "weight_decay": 1e-6, "warmup": 200, "lr_decay": "cosine",
    "betas": (0.95, 0.999), "ema_decay": 0.999, "save_every": 1000, "log_every": 50,
}  # fmt: skip
#: Each backbone's default widths (merged under a run's ``net_options``).
NET_DEFAULTS: dict[str, dict[str, Any]] = {
    "film-unet1d": {"down_dims": [64, 128, 256], "step_dim": 64},
    "film-mlp": {"hidden": 256, "depth": 3, "step_dim": 16},
}


def policy_windows(
    observations: np.ndarray, actions: np.ndarray, bounds: list[tuple[int, int]],
    obs_horizon: int, pred_horizon: int, action_horizon: int,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """``(obs windows (N, To, O), action chunks (N, Tp, A))``: one window per start
    ``s = a - (To - 1) .. b - Tp + (Ta - 1)`` of each episode ``[a, b)`` (module docstring),
    indices clamped to the episode (edge padding)."""
    obs_w, act_w = [], []
    for a, b in bounds:
        for s in range(a - (obs_horizon - 1), b - pred_horizon + action_horizon):
            idx = np.clip(np.arange(s, s + pred_horizon), a, b - 1)
            obs_w.append(observations[idx[:obs_horizon]])
            act_w.append(actions[idx])
    if not obs_w:
        raise ValueError("no training windows: the episodes are empty")
    return np.stack(obs_w), np.stack(act_w)


@dataclass(frozen=True)
class ChunkData:
    """A dataset as chunk-policy training rows: ``chunks`` (N, Tp, A) and the flat observation
    condition ``cond`` (N, To x O), both float32 in [-1, 1] by the data limits ``obs_norm`` /
    ``action_norm``; ``ds`` the source (its ``manifest``, ``path``) and ``env`` its environment."""

    ds: Any
    env: str | None
    chunks: torch.Tensor
    cond: torch.Tensor
    obs_norm: LimitsNormalizer
    action_norm: LimitsNormalizer
    obs_dim: int
    action_dim: int


def chunk_training_data(dataset: Any, obs_horizon: int, pred_horizon: int, action_horizon: int,
                        env: str | None = None, progress: bool = True) -> ChunkData:  # fmt: skip
    """The :class:`ChunkData` of ``dataset`` (an :class:`~diffusio.control.datasets.
    OfflineDataset`, an ``.npz`` path or a dataset name): :func:`policy_windows` over its
    episodes, scaled by the limits of all its observations and actions. What Diffusion Policy,
    its chunk baselines and the Gaussian policy all train on."""
    from .baselines import _load
    from .datasets import episode_bounds

    _check_horizons(obs_horizon, pred_horizon, action_horizon)
    ds = _load(dataset, progress)
    obs, act = np.asarray(ds["observations"]), np.asarray(ds["actions"])
    bounds = episode_bounds(ds["terminals"], ds["timeouts"])
    obs_w, act_w = policy_windows(obs, act, bounds, obs_horizon, pred_horizon, action_horizon)
    obs_norm, act_norm = LimitsNormalizer.fit(obs), LimitsNormalizer.fit(act)
    return ChunkData(
        ds, env or ds.manifest.get("env"), torch.as_tensor(act_norm(act_w), dtype=torch.float32),
        torch.as_tensor(obs_norm(obs_w).reshape(len(obs_w), -1), dtype=torch.float32),
        obs_norm, act_norm, int(obs.shape[1]), int(act.shape[1]),
    )  # fmt: skip


def _check_horizons(obs_horizon: int, pred_horizon: int, action_horizon: int) -> None:
    if not (obs_horizon >= 1 and action_horizon >= 1
            and pred_horizon >= obs_horizon - 1 + action_horizon):  # fmt: skip
        raise ValueError(
            f"horizons need To >= 1, Ta >= 1 and Tp >= To - 1 + Ta; got To={obs_horizon}, "
            f"Tp={pred_horizon}, Ta={action_horizon}"
        )


def policy_config(steps: int, description: str = "", **overrides: Any) -> Any:
    """The TrainConfig: :data:`DP_DEFAULTS` + ``steps`` + ``overrides``; ``net_options`` are
    the backbone's :data:`NET_DEFAULTS` updated by the overrides', ``process_options`` merged."""
    from ..train.config import TrainConfig

    values = copy.deepcopy(DP_DEFAULTS)
    net = overrides.get("net", values["net"])
    values["net_options"] = {**NET_DEFAULTS.get(net, {}),
                             **dict(overrides.pop("net_options", {}) or {})}  # fmt: skip
    values["process_options"] = {**values["process_options"],
                                 **dict(overrides.pop("process_options", {}) or {})}  # fmt: skip
    values.update(steps=int(steps), description=description, **overrides)
    return TrainConfig.from_dict(values)


def train_diffusion_policy(
    dataset: Any,
    out_dir: str | os.PathLike,
    *,
    obs_horizon: int = 2,
    pred_horizon: int = 16,
    action_horizon: int = 8,
    steps: int = 5000,
    env: str | None = None,
    sampler: str = "ddim",
    sampler_steps: int = 10,
    progress: bool = True,
    **overrides: Any,
) -> tuple[Any, dict[str, Any]]:
    """Train a Diffusion Policy on ``dataset`` (an :class:`~diffusio.control.datasets.
    OfflineDataset`, an ``.npz`` path or a dataset name) into ``out_dir`` with diffusio's
    trainer (a finished run there is reused, an interrupted one resumed) and write
    ``diffusion_policy.json``. ``overrides`` go to the TrainConfig (``net``, ``net_options``,
    ``batch_size``, ``seed``...). Returns ``(EMA model, info)``."""
    from ..data.batch import TrainingSet
    from ..io import write_json_atomic
    from ..train.trainer import Trainer
    from .envs import ENV_NAMES

    rows = chunk_training_data(dataset, obs_horizon, pred_horizon, action_horizon, env, progress)
    ds, env, x0, cond = rows.ds, rows.env, rows.chunks, rows.cond
    if env not in ENV_NAMES:
        raise ValueError(f"name the environment (env=...; valid: {', '.join(ENV_NAMES)}); the "
                         f"dataset's manifest gives {env!r}")  # fmt: skip
    net = overrides.get("net", DP_DEFAULTS["net"])
    net_options = {"action_dim": rows.action_dim, "obs_dim": int(cond.shape[1])}
    if net == "film-mlp":
        net_options["horizon"] = int(pred_horizon)
    tag = ds.manifest.get("name") or Path(ds.path).name
    description = (f"diffusion-policy To={obs_horizon} Tp={pred_horizon} Ta={action_horizon} "
                   f"data={tag}:seed{ds.manifest.get('seed')}:{len(ds)}steps")  # fmt: skip
    config = policy_config(steps, description, **overrides)
    data = TrainingSet(x0, cond={"obs": cond}, net_options=net_options)
    trainer = Trainer(config, Path(out_dir), data=data, progress=progress)
    summary = trainer.fit(resume=True)
    model = trainer.ema.module.to("cpu").eval()
    info = {
        "format": DP_FORMAT, "version": DP_VERSION, "env": env, "obs_horizon": int(obs_horizon),
        "pred_horizon": int(pred_horizon), "action_horizon": int(action_horizon),
        "obs_dim": rows.obs_dim, "action_dim": rows.action_dim,
        "obs_norm": rows.obs_norm.state_dict(), "action_norm": rows.action_norm.state_dict(),
        "sampler": sampler, "sampler_steps": int(sampler_steps), "train_windows": len(x0),
        "dataset": {"path": str(ds.path), "name": ds.manifest.get("name"),
                    "seed": ds.manifest.get("seed")},
        "train": {"step": summary.get("step"), "seconds": summary.get("seconds")},
    }  # fmt: skip
    if trainer.is_main:
        write_json_atomic(Path(out_dir) / DP_FILE, info, strict=True)
    return model, info


def load_diffusion_policy_run(run_dir: str | os.PathLike) -> tuple[Any, dict[str, Any]]:
    """``(EMA model, info)`` of a run of :func:`train_diffusion_policy`."""
    from ..io import read_run_description
    from ..train.runs import load_run

    info = read_run_description(run_dir, DP_FILE, DP_FORMAT, "Diffusion Policy")
    model, _, _ = load_run(run_dir)
    return model.eval(), info


class RecedingHorizon:
    """Receding-horizon execution of any chunk policy (Chi et al. 2023, Fig. 3): ``reset(seed)``
    and ``act(obs)`` for one environment, keeping the last To observations and a queue of Ta
    actions; a subclass provides :meth:`plan`, obs windows (B, To, O) to action chunks
    (B, Tp, A), both in environment units. ``planning_seconds`` records each plan's time."""

    env: str
    obs_horizon: int
    pred_horizon: int
    action_horizon: int

    def plan(self, obs_windows: Any) -> np.ndarray:
        raise NotImplementedError

    def _setup(self, info: dict[str, Any], action_horizon: int | None = None) -> None:
        """Environment, horizons and normalisers from a run's ``info`` (``action_horizon``
        overrides Ta), then :meth:`reset`."""
        self.info, self.env = info, info["env"]
        self.obs_horizon, self.pred_horizon = int(info["obs_horizon"]), int(info["pred_horizon"])
        self.action_horizon = int(action_horizon or info["action_horizon"])
        _check_horizons(self.obs_horizon, self.pred_horizon, self.action_horizon)
        self.obs_norm = LimitsNormalizer(**info["obs_norm"])
        self.action_norm = LimitsNormalizer(**info["action_norm"])
        self.planning_seconds: list[float] = []
        self.reset(None)

    def _condition(self, obs_windows: Any, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Checked obs windows (B, To, O) in env units as the flat normalised condition."""
        w = np.asarray(obs_windows, dtype=np.float64)
        obs_dim = self.info["obs_dim"]
        if w.ndim != 3 or w.shape[1:] != (self.obs_horizon, obs_dim):
            raise ValueError(f"obs windows must be (B, {self.obs_horizon}, {obs_dim}), got "
                             f"{w.shape}")  # fmt: skip
        return torch.as_tensor(self.obs_norm(w).reshape(len(w), -1), dtype=dtype)

    def reset(self, seed: int | None = None) -> None:
        self.generator = torch.Generator().manual_seed(int(seed) if seed is not None else 0)
        self.history: list[np.ndarray] = []  # the last To observations, each (B, O)
        self.queue: list[np.ndarray] = []  # the actions still to execute, each (B, A)

    def act(self, obs: Any) -> np.ndarray:
        """The next action for one observation (O,), or actions (B, A) for a batch (B, O) of
        environments stepped together (they replan together; :meth:`keep` drops finished
        ones)."""
        from .envs import check_observation

        o = check_observation(self.env, obs)
        single, o = o.ndim == 1, o.reshape(-1, o.shape[-1])
        if not self.history or len(self.history[0]) != len(o):
            self.history, self.queue = [o] * self.obs_horizon, []
        self.history = self.history[1:] + [o]
        if not self.queue:
            start = time.perf_counter()
            chunk = self.plan(np.stack(self.history, axis=1))
            self.planning_seconds.append(time.perf_counter() - start)
            first = self.obs_horizon - 1
            self.queue = [chunk[:, j] for j in range(first, first + self.action_horizon)]
        action = self.queue.pop(0).astype(np.float32)
        return action[0] if single else action

    def keep(self, rows: Any) -> None:
        """Keep only the batch rows ``rows`` (the environments still running)."""
        self.history = [h[rows] for h in self.history]
        self.queue = [q[rows] for q in self.queue]


class DiffusionPolicy(RecedingHorizon):
    """Diffusion Policy's receding-horizon controller (module docstring): :meth:`plan` samples
    chunks with the run's sampler (or ``sampler``/``steps``), ``action_horizon`` overrides Ta,
    ``clip`` clips x0 to [-1, 1] (the official ``clip_sample``)."""

    def __init__(self, model: Any, info: dict[str, Any], *, sampler: str | None = None,
                 steps: int | None = None, action_horizon: int | None = None,
                 clip: bool = True) -> None:  # fmt: skip
        from ..core.samplers import SAMPLERS

        self.model, self.clip = model, bool(clip)
        self.sampler = sampler or info.get("sampler", "ddim")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}; valid: {', '.join(SAMPLERS)}")
        self.steps = steps if steps is not None else info.get("sampler_steps")
        if self.sampler == "ddpm" and steps is None:
            self.steps = None  # every step of the table
        self._setup(info, action_horizon)

    @torch.no_grad()
    def plan(self, obs_windows: Any) -> np.ndarray:
        """Action chunks (B, Tp, A) for observation windows (B, To, O), both in env units."""
        from ..core.samplers import sample
        from ..core.steering import ClipX0

        cond = self._condition(obs_windows, self.model.dtype)
        seed = int(torch.randint(0, 2**62, (1,), generator=self.generator))
        x = sample(self.model, (len(cond), self.pred_horizon, self.info["action_dim"]), self.sampler,
                   self.steps, seed, cond={"obs": cond},
                   guidance=[ClipX0()] if self.clip else ())  # fmt: skip
        return self.action_norm.inverse(x.clamp(-1, 1).double().numpy())


def diffusion_policy(run_dir: str | os.PathLike, **options: Any) -> DiffusionPolicy:
    """The :class:`DiffusionPolicy` of a run (``sampler``, ``steps``, ``action_horizon``,
    ``clip`` override the run's defaults)."""
    model, info = load_diffusion_policy_run(run_dir)
    return DiffusionPolicy(model, info, **options)
