"""Offline-RL baselines of the planning reproductions: behaviour cloning and its variants.

* ``bc`` -- behaviour cloning: an MLP policy ``a = pi(s)`` regressed (MSE) on every transition
  of a dataset (Pomerleau 1989; the BC baseline of D4RL, Fu et al. 2020).
* ``pbc`` -- %BC (Chen et al. 2021, *Decision Transformer*, Sec. 5.3): BC on the top
  ``fraction`` of the dataset's *episodes* ranked by return (Chen et al. rank timesteps by
  their episode's return; taking whole episodes is the same set up to the one cut episode).
* ``gcbc`` -- goal-conditioned BC with hindsight relabelling (Ghosh et al. 2019, *Learning to
  Reach Goals via Iterated Supervised Learning*; Emmons et al. 2021, *RvS: What is Essential
  for Offline RL via Supervised Learning?*): ``a = pi(s, g)``, where for every sampled
  transition ``t`` the goal ``g`` is the position ``(x, y)`` the data *reached* at a step
  ``j`` drawn uniformly from ``[t, min(t + horizon, end) - 1]`` of the same segment (the
  position after step ``j``: ``next_observations[j, :2]``). In a PointMaze stream a segment is
  the whole stream (the point moves on across goal switches); elsewhere it is the episode. At
  test time the goal is the environment's (the observation's ``[goal_x, goal_y]``).

The policy's input has the environment's observation layout (PointMaze, point2d:
``[x, y, vx, vy, goal_x, goal_y]``, so a PointMaze dataset's 4-D observations get its ``goals``
appended for BC and the relabelled goal for GCBC), standardised by the training inputs' mean and
standard deviation; the output is ``tanh`` scaled to the action limits. Hidden layers 256 x 2,
ReLU; Adam (AdamW without decay), batch 256, lr 1e-3; an EMA of the weights (the trainer's
:class:`~diffusio.train.trainer.EMA`) is what the policy runs by default.

diffusio's :class:`~diffusio.train.trainer.Trainer` trains diffusion models only (it builds a
``DiffusionModel`` from its config and calls its denoising loss), so the supervised loop lives
here, reusing the trainer's EMA, its seed derivation and :mod:`diffusio.io`'s verified
safetensors files. A run directory holds::

    bc.json            format "diffusio-bc": kind, env, sizes, input/action statistics, recipe
    model.safetensors  the final weights
    ema.safetensors    their EMA (the policy's default)
    metrics.jsonl      {"kind": "train", "step", "loss", ...} records (read_metrics reads them)

:func:`~diffusio.control.policies.load_policy` reads it and returns a :class:`BCPolicy`.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..io import read_json, read_safetensors, write_json_atomic, write_safetensors
from .datasets import OfflineDataset, episode_bounds

__all__ = [
    "BC_FILE",
    "BC_FORMAT",
    "BC_KINDS",
    "BCPolicy",
    "PolicyMLP",
    "bc_policy",
    "future_goals",
    "load_bc_run",
    "relabel_segments",
    "top_episodes",
    "train_bc",
]

BC_FORMAT, BC_VERSION, BC_FILE = "diffusio-bc", 1, "bc.json"
#: The baselines by kind.
BC_KINDS = {
    "bc": "behaviour cloning on every transition",
    "pbc": "%BC: behaviour cloning on the top fraction of episodes by return",
    "gcbc": "goal-conditioned BC with hindsight-relabelled future positions",
}
GOAL_SLICE = (4, 6)  # where [goal_x, goal_y] sits in a goal environment's observation


class PolicyMLP(nn.Module):
    """``a = low + (high - low) (tanh(f((s - mean) / std)) + 1) / 2`` with ``f`` an MLP (ReLU
    hidden layers). The statistics and limits are non-persistent buffers: the run's JSON holds
    them, the safetensors file only the weights."""

    def __init__(self, in_dim: int, out_dim: int, hidden: Sequence[int], *, mean: Any, std: Any,
                 low: Any, high: Any):  # fmt: skip
        super().__init__()
        layers: list[nn.Module] = []
        width = int(in_dim)
        for h in hidden:
            layers += [nn.Linear(width, int(h)), nn.ReLU()]
            width = int(h)
        layers.append(nn.Linear(width, int(out_dim)))
        self.net = nn.Sequential(*layers)
        for name, value, n in (("mean", mean, in_dim), ("std", std, in_dim), ("low", low, out_dim),
                               ("high", high, out_dim)):  # fmt: skip
            t = torch.as_tensor(np.asarray(value, dtype=np.float32).reshape(-1))
            if t.shape != (n,) or not torch.isfinite(t).all():
                raise ValueError(
                    f"PolicyMLP: {name} must be {n} finite values, got {tuple(t.shape)}"
                )
            self.register_buffer(name, t, persistent=False)
        if not (self.std > 0).all() or not (self.high > self.low).all():
            raise ValueError("PolicyMLP: std must be positive and high > low")

    def forward(self, x: Tensor) -> Tensor:
        z = self.net((x - self.mean) / self.std)
        return self.low + (self.high - self.low) * (torch.tanh(z) + 1.0) / 2.0


# --------------------------------------------------------------------------- data
def _load(dataset: Any, progress: bool) -> OfflineDataset:
    """An :class:`OfflineDataset` from itself, an ``.npz`` path or a dataset name."""
    from .datasets import DATASETS, load_dataset, make_dataset

    if isinstance(dataset, OfflineDataset):
        return dataset
    if isinstance(dataset, (str, os.PathLike)):
        if isinstance(dataset, str) and dataset in DATASETS and not Path(dataset).exists():
            return load_dataset(make_dataset(dataset, progress=progress))
        return load_dataset(dataset)
    raise TypeError(f"dataset must be an OfflineDataset, a .npz path or a dataset name, got "
                    f"{type(dataset).__name__}")  # fmt: skip


def top_episodes(dataset: OfflineDataset, fraction: float) -> list[tuple[int, int]]:
    """The ``(start, stop)`` of the ``ceil(fraction * episodes)`` episodes (at least one) of
    highest return, in dataset order; ties go to the earlier episode (%BC, Chen et al. 2021)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
    bounds, returns = dataset.episodes(), dataset.episode_returns()
    keep = max(1, math.ceil(fraction * len(bounds) - 1e-9))
    order = np.argsort(-returns, kind="stable")[:keep]
    return [bounds[i] for i in sorted(order)]


def relabel_segments(dataset: OfflineDataset, within: str) -> np.ndarray:
    """For every row, the (exclusive) end of the segment its relabelled goals come from:
    ``"episode"`` (cut at terminals and timeouts) or ``"stream"`` (cut at terminals only)."""
    if within not in ("episode", "stream"):
        raise ValueError(f"goal_within must be 'episode', 'stream' or 'auto', got {within!r}")
    terminals = dataset["terminals"]
    timeouts = dataset["timeouts"] if within == "episode" else np.zeros_like(terminals)
    ends = np.empty(len(terminals), dtype=np.int64)
    for a, b in episode_bounds(terminals, timeouts):
        ends[a:b] = b
    return ends


def _achieved(dataset: OfflineDataset, ends: np.ndarray) -> np.ndarray:
    """The position (x, y) after each step: ``next_observations[:, :2]``, else the next row's
    observation inside the segment (the segment's last row: its own)."""
    if "next_observations" in dataset.arrays:
        return np.asarray(dataset["next_observations"][:, :2], dtype=np.float32)
    obs = dataset["observations"]
    nxt = np.minimum(np.arange(len(obs)) + 1, ends - 1)
    return np.asarray(obs[nxt, :2], dtype=np.float32)


def future_goals(rows: Tensor, ends: Tensor, achieved: Tensor, horizon: int,
                 generator: torch.Generator) -> tuple[Tensor, Tensor]:  # fmt: skip
    """Hindsight goals (Ghosh et al. 2019): for each row ``t``, ``j ~ U{t, ..., min(t + horizon,
    end_t) - 1}`` and the goal ``achieved[j]``. Returns ``(goals, j)``."""
    span = torch.clamp(torch.minimum(ends[rows] - rows, torch.full_like(rows, horizon)), min=1)
    u = torch.rand(rows.shape, generator=generator, dtype=torch.float64)
    j = rows + torch.minimum((u * span).long(), span - 1)
    return achieved[j], j


def _inputs(dataset: OfflineDataset, env: str, kind: str) -> np.ndarray:
    """The policy's input per row in ``env``'s observation layout."""
    from .envs import OBSERVATION_DIMS

    obs = np.asarray(dataset["observations"], dtype=np.float32)
    dims, layout = OBSERVATION_DIMS[env]
    width = obs.shape[1]
    if kind == "gcbc":
        if 6 not in dims or width not in (4, 6):
            raise ValueError(f"gcbc needs a goal environment (observation [x, y, vx, vy, goal_x, "
                             f"goal_y]); {env} has {layout}")  # fmt: skip
        return obs if width == 6 else np.concatenate([obs, np.zeros((len(obs), 2), np.float32)], 1)
    goals = dataset.arrays.get("goals")
    if width == 4 and 6 in dims and goals is not None and goals.ndim == 2 and goals.shape[1] == 2:
        return np.concatenate([obs, goals.astype(np.float32)], axis=1)  # the commanded goal
    if width not in dims:
        raise ValueError(f"the dataset's observations have width {width}; {env} observations are "
                         f"{layout}")  # fmt: skip
    return obs


def _action_limits(env: str, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The environment's action box (the data's range where the simulator is missing)."""
    try:
        from .envs import make_env

        e = make_env(env)
        low, high = (np.asarray(v, dtype=np.float64) for v in (e.action_space.low,
                                                               e.action_space.high))  # fmt: skip
        e.close()
    except ImportError:
        low, high = actions.min(0).astype(np.float64), actions.max(0).astype(np.float64)
        high = np.where(high > low, high, low + 1.0)
    if low.shape != (actions.shape[1],):
        raise ValueError(f"the dataset's actions have width {actions.shape[1]}; {env}'s action "
                         f"space is {low.shape}")  # fmt: skip
    return low, high


# --------------------------------------------------------------------------- training
def train_bc(
    dataset: Any,
    out_dir: str | os.PathLike,
    kind: str = "bc",
    *,
    steps: int = 10_000,
    batch_size: int = 256,
    lr: float = 1e-3,
    seed: int = 0,
    fraction: float = 0.1,
    horizon: int = 256,
    goal_within: str = "auto",
    hidden: Sequence[int] = (256, 256),
    ema_decay: float = 0.999,
    env: str | None = None,
    log_every: int = 100,
    progress: bool = True,
) -> Path:
    """Train a ``kind`` baseline (``bc``, ``pbc``, ``gcbc``: see the module docstring) on
    ``dataset`` (an :class:`OfflineDataset`, an ``.npz`` path or a
    :data:`~diffusio.control.datasets.DATASETS` name) into the new directory ``out_dir`` and
    return it. ``env`` defaults to the manifest's; ``fraction`` is %BC's; ``horizon`` and
    ``goal_within`` (``"episode"``, ``"stream"``, ``"auto"``: stream for PointMaze) are GCBC's.
    Deterministic given ``seed`` (on one platform and thread count); the global RNGs are left as
    they were."""
    from tqdm.auto import tqdm

    from ..train.distributed import derived_seed
    from ..train.trainer import EMA
    from .envs import ENV_NAMES

    if kind not in BC_KINDS:
        raise ValueError(f"unknown baseline kind {kind!r}; valid: {', '.join(BC_KINDS)}")
    for name, value in (("steps", steps), ("batch_size", batch_size), ("horizon", horizon),
                        ("log_every", log_every)):  # fmt: skip
        if int(value) < 1:
            raise ValueError(f"{name} must be positive, got {value}")
    ds = _load(dataset, progress)
    env = env or ds.manifest.get("env")
    if env not in ENV_NAMES:
        raise ValueError(f"name the environment (env=...; valid: {', '.join(ENV_NAMES)}); the "
                         f"dataset's manifest gives {env!r}")  # fmt: skip
    out = Path(out_dir)
    if (out / BC_FILE).exists():
        raise FileExistsError(f"{out} already holds a baseline run; use another directory")

    inputs = _inputs(ds, env, kind)
    actions = np.asarray(ds["actions"], dtype=np.float32)
    n = len(actions)
    rows = np.arange(n)
    selection: dict[str, Any] = {"episodes": len(ds.episodes()), "transitions": n}
    if kind == "pbc":
        chosen = top_episodes(ds, fraction)
        rows = np.concatenate([np.arange(a, b) for a, b in chosen])
        returns = [float(ds["rewards"][a:b].astype(np.float64).sum()) for a, b in chosen]
        selection.update(fraction=fraction, kept_episodes=len(chosen), kept_transitions=len(rows),
                         min_kept_return=min(returns))  # fmt: skip
    within = goal_within
    if kind == "gcbc":
        within = ("stream" if env.startswith("pointmaze") else "episode") if within == "auto" \
            else within  # fmt: skip
        ends = relabel_segments(ds, within)
        achieved = _achieved(ds, ends)
        stats_inputs = inputs.copy()
        stats_inputs[:, GOAL_SLICE[0] : GOAL_SLICE[1]] = achieved
    else:
        stats_inputs = inputs[rows]
    mean = stats_inputs.astype(np.float64).mean(0)
    std = stats_inputs.astype(np.float64).std(0)
    std = np.where(std > 1e-6, std, 1.0)
    low, high = _action_limits(env, actions)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derived_seed(seed, "init", 0))
        net = PolicyMLP(inputs.shape[1], actions.shape[1], hidden, mean=mean, std=std, low=low,
                        high=high)  # fmt: skip
    ema = EMA(net, ema_decay, warmup=True)
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(derived_seed(seed, "batch", 0))
    x_all, y_all = torch.from_numpy(inputs), torch.from_numpy(actions)
    rows_t = torch.from_numpy(rows.astype(np.int64))
    if kind == "gcbc":
        ends_t, achieved_t = torch.from_numpy(ends), torch.from_numpy(achieved)
    out.mkdir(parents=True, exist_ok=True)
    metrics = out / "metrics.jsonl"
    start = time.perf_counter()
    loss_sum, count, last = 0.0, 0, float("nan")
    with open(metrics, "w", encoding="utf-8") as log, tqdm(
        total=steps, desc=f"{kind} {env}", disable=not progress, dynamic_ncols=True
    ) as bar:  # fmt: skip
        t_log = start
        for step in range(1, steps + 1):
            idx = rows_t[torch.randint(len(rows_t), (batch_size,), generator=generator)]
            x = x_all[idx]
            if kind == "gcbc":
                x = x.clone()
                x[:, GOAL_SLICE[0]:GOAL_SLICE[1]] = future_goals(idx, ends_t, achieved_t, horizon,
                                                                 generator)[0]  # fmt: skip
            loss = torch.mean((net(x) - y_all[idx]) ** 2)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            ema.update(net)
            loss_sum, count = loss_sum + float(loss.detach()), count + 1
            bar.update(1)
            if step % log_every == 0 or step == steps:
                now = time.perf_counter()
                last = loss_sum / count
                if not math.isfinite(last):
                    raise FloatingPointError(f"the BC loss became {last} at step {step}")
                log.write(json.dumps({"kind": "train", "step": step, "loss": last, "lr": lr,
                                      "steps_per_sec": count / max(now - t_log, 1e-9),
                                      "time": now - start}) + "\n")  # fmt: skip
                log.flush()
                bar.set_postfix(loss=f"{last:.4f}")
                loss_sum, count, t_log = 0.0, 0, now
    meta = {"diffusio_step": str(steps)}
    write_safetensors(out / "model.safetensors", net.state_dict(), meta)
    write_safetensors(out / "ema.safetensors", ema.state_dict(), meta)
    info = {
        "format": BC_FORMAT, "version": BC_VERSION, "kind": kind, "env": env,
        "obs_dim": int(inputs.shape[1]), "action_dim": int(actions.shape[1]),
        "hidden": [int(h) for h in hidden], "activation": "relu", "head": "tanh",
        "input_mean": mean.tolist(), "input_std": std.tolist(),
        "action_low": low.tolist(), "action_high": high.tolist(),
        "goal_slice": list(GOAL_SLICE) if kind == "gcbc" else None,
        "train": {"steps": int(steps), "batch_size": int(batch_size), "lr": lr, "seed": int(seed),
                  "optimizer": "adamw(weight_decay=0)", "loss": "mse", "ema_decay": ema_decay,
                  "final_loss": last, "seconds": round(time.perf_counter() - start, 3),
                  **({"horizon": int(horizon), "goal_within": within} if kind == "gcbc" else {})},
        "dataset": {"path": str(ds.path), "name": ds.manifest.get("name"),
                    "seed": ds.manifest.get("seed"), **selection},
    }  # fmt: skip
    write_json_atomic(out / BC_FILE, info)  # written last: its presence marks a complete run
    return out


# --------------------------------------------------------------------------- loading
def load_bc_run(run_dir: str | os.PathLike, weights: str = "ema") -> tuple[PolicyMLP, dict]:
    """``(network, info)`` of a run written by :func:`train_bc` with its ``weights``
    (``"ema"`` or ``"model"``), read from safetensors (nothing is unpickled)."""
    from ..io import apply_tensors

    run = Path(run_dir)
    path = run / BC_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{run}: not a baseline run (no {BC_FILE})")
    if weights not in ("ema", "model"):
        raise ValueError(f"weights must be 'ema' or 'model', got {weights!r}")
    info = read_json(path)
    if not isinstance(info, dict) or info.get("format") != BC_FORMAT:
        raise ValueError(f"{path}: not a diffusio baseline run description")
    try:
        if info["kind"] not in BC_KINDS:
            raise ValueError(f"unknown kind {info['kind']!r}")
        net = PolicyMLP(int(info["obs_dim"]), int(info["action_dim"]), info["hidden"],
                        mean=info["input_mean"], std=info["input_std"], low=info["action_low"],
                        high=info["action_high"])  # fmt: skip
        info["env"] = str(info["env"])
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: bad baseline run description ({err})") from None
    tensors, _ = read_safetensors(run / f"{weights}.safetensors")
    apply_tensors(net, tensors, run / f"{weights}.safetensors")
    return net.eval(), info


class BCPolicy:
    """A trained baseline: ``reset(seed)`` (nothing to reset: the policy is deterministic) and
    ``act(observation) -> action`` (NumPy in and out; a batch ``(..., D)`` gives ``(..., A)``).
    The observation is checked by :func:`~diffusio.control.envs.check_observation` and must
    have the width the policy was trained on. For GCBC the observation's ``[goal_x, goal_y]`` is
    the goal."""

    def __init__(self, net: PolicyMLP, info: dict[str, Any]):
        self.net, self.info = net, info
        self.env, self.kind = info["env"], info["kind"]
        self.obs_dim, self.action_dim = int(info["obs_dim"]), int(info["action_dim"])
        self.low = np.asarray(info["action_low"], dtype=np.float32)
        self.high = np.asarray(info["action_high"], dtype=np.float32)

    def reset(self, seed: int = 0) -> None:
        pass

    def act(self, observation: Any) -> np.ndarray:
        from .envs import OBSERVATION_DIMS, check_observation

        obs = check_observation(self.env, observation)
        if obs.shape[-1] != self.obs_dim:
            raise ValueError(
                f"{self.env}: this {self.kind} policy takes observations of width {self.obs_dim} "
                f"({OBSERVATION_DIMS[self.env][1]}); got shape {obs.shape}"
            )
        x = torch.as_tensor(obs.reshape(-1, self.obs_dim), dtype=torch.float32)
        with torch.no_grad():
            a = self.net(x).numpy()
        a = np.clip(a, self.low, self.high).astype(np.float32)
        return a.reshape(*obs.shape[:-1], self.action_dim)


def bc_policy(run_dir: str | os.PathLike, weights: str = "ema") -> BCPolicy:
    """The :class:`BCPolicy` of a run written by :func:`train_bc`."""
    return BCPolicy(*load_bc_run(run_dir, weights))
