"""Diffuser (Janner, Du, Tenenbaum & Levine 2022): planning by inpainting trajectories.

A trajectory of horizon H is the array (H, A + S) of transitions ``[action, state]`` (actions
first, as the official code). The model is an x0-predicting diffusion model with the cosine
schedule over a temporal U-Net (:class:`~diffusio.nets.temporal.TemporalUNet`); the data are
scaled per dimension to [-1, 1] by their limits (the official ``LimitsNormalizer``) and the
sampler clips x0 to that range (``clip_denoised``). Conditioning is inpainting only
(Sec. 3.2, "goal-conditioned RL as inpainting"): the start state at step 0 and, in a maze, the
goal position with zero velocity at step H - 1, imposed after every reverse step by
:class:`~diffusio.core.steering.Inpaint`.

How the model learns its conditions (``conditioning``). ``"known"`` (the default, the
official code's): during training each window's first and last states are written clean into
the network's input (``apply_conditioning`` on x_t; here :class:`KnownEntries` and the temporal
U-Net's ``cond["known"]``) and left out of the loss, and at sampling time the same clean values
are passed and imposed after every step. ``"inpaint"``: no training-time conditioning, the
start and goal only imposed by replacement inpainting (re-noised to the current level, Song et
al. 2021 App. I.2), so one unconditional model serves every mask; in a U-Maze probe (128
consecutive states, width 16, 3,000 steps, 20 episodes) it scored 2.7 +/- 2.6 (40% success)
against 11.9 +/- 5.2 (55%) with the known entries.

Execution in a maze (``plan_maze2d.py``): plan once, open loop, then track the planned *states*
with ``a = (s*_{k+1}.xy - s_k.xy) + (s*_{k+1}.v - s_k.v)``, aiming at the last planned state
after the plan ends. ``execute="actions"`` runs the diffused actions instead (the ablation of
Diffusion Forcing's Table 1, where it collapses to 6.3 / 13.5 / 6.3).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.model import DiffusionModel
from ..io import read_json, write_json_atomic

__all__ = [
    "CONDITIONING",
    "DIFFUSER_DEFAULTS",
    "DIFFUSER_FORMAT",
    "DiffuserPlanner",
    "KnownEntries",
    "LimitsNormalizer",
    "MazePolicy",
    "diffuser_config",
    "load_diffuser_run",
    "maze_policy",
    "renoise",
    "train_diffuser",
    "train_on_windows",
    "trajectory_windows",
    "upsample_plan",
]

DIFFUSER_FORMAT = "diffusio-diffuser"

#: The maze2d recipe (``config/maze2d.py``) at CPU scale: the overrides of a TrainConfig.
DIFFUSER_DEFAULTS: dict[str, Any] = {
    "process": "vp-cosine",
    "process_options": {"num_steps": 64},
    "prediction": "x0",
    "time_distribution": "discrete",
    "net": "temporal-unet",
    "net_options": {"dim": 32, "dim_mults": [1, 4, 8]},
    "normalize": False,  # the limits normalizer is applied here, not by the trainer
    "batch_size": 32,
    "lr": 2e-4,
    "warmup": 0,
    "ema_decay": 0.995,
    "ema_warmup": False,
    "grad_clip": 0.0,
    "save_every": 1000,
    "data": "trajectory-windows",  # a label: the windows come as a TrainingSet
    "n_data": None,
    "log_every": 25,
    "keep": 2,
}


class LimitsNormalizer:
    """Each dimension mapped linearly from [min, max] of the data to [-1, 1]."""

    def __init__(self, low: Any, high: Any):
        self.low = np.asarray(low, dtype=np.float64)
        self.high = np.asarray(high, dtype=np.float64)
        if self.low.shape != self.high.shape or not np.all(np.isfinite(self.low)):
            raise ValueError("LimitsNormalizer needs finite limits of one shape")
        self.span = np.where(self.high > self.low, self.high - self.low, 1.0)

    @classmethod
    def fit(cls, x: np.ndarray) -> LimitsNormalizer:
        flat = np.asarray(x, dtype=np.float64).reshape(-1, np.shape(x)[-1])
        return cls(flat.min(0), flat.max(0))

    def __call__(self, x: Any) -> np.ndarray:
        return 2.0 * (np.asarray(x, dtype=np.float64) - self.low) / self.span - 1.0

    def inverse(self, z: Any) -> np.ndarray:
        return (np.asarray(z, dtype=np.float64) + 1.0) / 2.0 * self.span + self.low

    def state_dict(self) -> dict[str, list[float]]:
        return {"low": self.low.tolist(), "high": self.high.tolist()}


def trajectory_windows(
    observations: np.ndarray, actions: np.ndarray, horizon: int, stride: int = 1,
    skip: int = 1,
) -> np.ndarray:
    """Windows (N, H, A + S) of ``[action, state]`` from one continuous stream: H transitions
    ``skip`` steps apart (``skip`` = 1: consecutive), window starts ``stride`` steps apart.

    The maze data are one stream (the point mass moves on across goal switches), so windows
    may span an episode cut; the official code instead keeps windows inside the episodes that
    ``maze2d_set_terminals`` cuts where the agent leaves a goal."""
    obs, act = np.asarray(observations), np.asarray(actions)
    if obs.ndim != 2 or act.ndim != 2 or len(obs) != len(act):
        raise ValueError(
            f"observations (T, S) and actions (T, A) of one length needed; got {obs.shape}, "
            f"{act.shape}"
        )
    if skip < 1:
        raise ValueError(f"skip must be >= 1, got {skip}")
    span = (horizon - 1) * skip + 1
    if horizon < 2 or span > len(obs):
        raise ValueError(f"horizon must be in [2, {(len(obs) - 1) // skip + 1}] (the stream's "
                         f"length at skip {skip}), got {horizon}")  # fmt: skip
    transitions = np.concatenate([act, obs], axis=1)
    starts = np.arange(0, len(obs) - span + 1, stride)
    return np.stack([transitions[s : s + span : skip] for s in starts]).astype(np.float32)


def upsample_plan(plan: np.ndarray, skip: int) -> np.ndarray:
    """A plan of H transitions ``skip`` steps apart (H, D) linearly interpolated to every step:
    ((H - 1) skip + 1, D)."""
    if skip == 1:
        return plan
    coarse = np.arange(len(plan)) * skip
    fine = np.arange(coarse[-1] + 1)
    return np.stack([np.interp(fine, coarse, plan[:, d]) for d in range(plan.shape[1])], axis=1)


class KnownEntries:
    """The official Diffuser's training-time conditioning (``apply_conditioning`` on the noised
    input, ``GoalDataset``'s ``{0: first state, H - 1: last state}``) as a batch transform:
    ``cond["known"]`` holds each window's clean states at ``steps`` (NaN elsewhere), which the
    temporal U-Net writes into its input, and the loss mask drops those entries (the official
    code overwrites them in the prediction too, so they never count). Deterministic."""

    def __init__(self, action_dim: int, steps: tuple[int, ...] = (0, -1)):
        self.action_dim, self.steps = int(action_dim), tuple(int(s) for s in steps)

    def __call__(self, batch: Any, generator: torch.Generator) -> Any:
        x0 = batch.x0
        known = torch.full_like(x0, float("nan"))
        mask = torch.ones_like(x0) if batch.mask is None else batch.mask.clone()
        for step in self.steps:
            known[:, step, self.action_dim :] = x0[:, step, self.action_dim :]
            mask[:, step, self.action_dim :] = 0.0
        return batch.replace(cond={**batch.cond, "known": known}, mask=mask)

    def __repr__(self) -> str:
        return f"KnownEntries(action_dim={self.action_dim}, steps={self.steps})"


#: How a Diffuser learns its start and goal: ``known`` (the official: clean entries written
#: into the input while training and sampling) or ``inpaint`` (no training-time conditioning;
#: replacement inpainting alone at sampling time).
CONDITIONING = ("known", "inpaint")


def diffuser_config(steps: int, **overrides: Any) -> Any:
    """The TrainConfig of a Diffuser run: :data:`DIFFUSER_DEFAULTS` + ``steps`` + overrides
    (``net_options`` are merged into the defaults')."""
    from ..train.config import TrainConfig

    values = copy.deepcopy(DIFFUSER_DEFAULTS)
    net_options = {**values["net_options"], **dict(overrides.pop("net_options", {}) or {})}
    values.update(steps=int(steps), net_options=net_options, description="diffuser")
    values.update(overrides)
    return TrainConfig.from_dict(values)


def train_diffuser(
    observations: np.ndarray,
    actions: np.ndarray,
    out_dir: str | os.PathLike,
    *,
    horizon: int,
    steps: int,
    env: str,
    stride: int = 1,
    skip: int = 1,
    conditioning: str = "known",
    progress: bool = True,
    resume: bool = False,
    **overrides: Any,
) -> tuple[DiffusionModel, dict[str, Any]]:
    """Train Diffuser on windows of the stream into ``out_dir`` with diffusio's trainer and
    write ``out_dir/diffuser.json`` (env, horizon, action/state dims, the limits), which
    :func:`~diffusio.control.policies.load_policy` reads. Returns ``(EMA model, summary)``."""
    windows = trajectory_windows(observations, actions, horizon, stride, skip)
    return train_on_windows(windows, int(np.shape(actions)[1]), out_dir, steps=steps, env=env,
                            known_steps=(0, -1), conditioning=conditioning, progress=progress,
                            resume=resume, info={"skip": int(skip)}, **overrides)  # fmt: skip


def train_on_windows(
    windows: np.ndarray,
    action_dim: int,
    out_dir: str | os.PathLike,
    *,
    steps: int,
    env: str,
    known_steps: tuple[int, ...] = (0, -1),
    conditioning: str = "known",
    kind: str = "diffuser-maze",
    info: Mapping[str, Any] | None = None,
    progress: bool = True,
    resume: bool = False,
    **overrides: Any,
) -> tuple[DiffusionModel, dict[str, Any]]:
    """:func:`train_diffuser` on given ``[action, state]`` windows (N, H, A + S), e.g. cut
    inside episodes; ``known_steps`` are the steps whose states the model is conditioned on
    (the maze: start and goal; receding-horizon control: the current state only)."""
    from ..data.batch import TrainingSet
    from ..train.trainer import Trainer

    if conditioning not in CONDITIONING:
        raise ValueError(f"unknown conditioning {conditioning!r}; valid: known, inpaint")
    windows = np.asarray(windows, dtype=np.float32)
    if windows.ndim != 3 or not 0 <= action_dim < windows.shape[-1]:
        raise ValueError(f"windows must be (N, H, A + S) with A = {action_dim} < A + S, got "
                         f"{windows.shape}")  # fmt: skip
    normalizer = LimitsNormalizer.fit(windows)
    x0 = torch.as_tensor(normalizer(windows), dtype=torch.float32)
    config = diffuser_config(steps, **overrides)
    transforms = [KnownEntries(action_dim, known_steps)] if conditioning == "known" else []
    data = TrainingSet(x0, transforms=transforms, net_options={"transition_dim": int(x0.shape[-1])})
    trainer = Trainer(config, out_dir, data=data, progress=progress)
    summary = trainer.fit(resume=resume)
    if trainer.is_main:
        description = {
            "format": DIFFUSER_FORMAT, "version": 1, "kind": kind, "env": env,
            "horizon": int(windows.shape[1]), "action_dim": int(action_dim),
            "state_dim": int(windows.shape[-1] - action_dim), "limits": normalizer.state_dict(),
            "train_windows": len(windows), "conditioning": conditioning, "skip": 1,
            **dict(info or {}),
        }  # fmt: skip
        write_json_atomic(Path(out_dir) / "diffuser.json", description)
    return trainer.ema.module.to("cpu").eval(), summary


def load_diffuser_run(run_dir: str | os.PathLike) -> tuple[DiffusionModel, dict[str, Any]]:
    """``(model, info)`` of a run written by :func:`train_diffuser` (one-line ValueError when
    the directory is not one)."""
    from ..train.runs import load_run

    path = Path(run_dir) / "diffuser.json"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: not a Diffuser run (no diffuser.json)")
    info = read_json(path)
    if not isinstance(info, dict) or info.get("format") != DIFFUSER_FORMAT:
        raise ValueError(f"{path}: not a diffusio Diffuser run description")
    model, _, _ = load_run(run_dir)
    return model, info


class DiffuserPlanner:
    """Plans (H, A + S) trajectories in data units by inpainting ``{step: state}`` entries.

    ``sampler``/``steps`` are any of :func:`diffusio.core.samplers.sample`'s (the paper: ddpm
    over all T steps); ``steering`` adds modifiers (e.g. value or loss guidance)."""

    def __init__(
        self,
        model: DiffusionModel,
        normalizer: LimitsNormalizer,
        horizon: int,
        action_dim: int,
        *,
        sampler: str = "ddpm",
        steps: int | None = None,
        steering: tuple[Any, ...] = (),
        conditioning: str = "inpaint",
        skip: int = 1,
    ):
        self.skip = int(skip)
        if conditioning not in CONDITIONING:
            raise ValueError(f"unknown conditioning {conditioning!r}; valid: known, inpaint")
        self.conditioning = conditioning
        self.model, self.normalizer = model, normalizer
        self.horizon, self.action_dim = int(horizon), int(action_dim)
        self.sampler, self.steps, self.steering = sampler, steps, tuple(steering)

    def plan(
        self,
        conditions: Mapping[int, Any],
        n: int = 1,
        seed: int | None = None,
        *,
        warm_start: Any = None,
        warm_steps: int | None = None,
    ) -> np.ndarray:
        """``n`` plans (n, H, A + S) whose states at the given steps are the given states.

        ``warm_start`` (H, A + S) in data units, e.g. the previous plan shifted by the steps
        executed since: it is noised to the time of the last ``warm_steps`` evaluations of the
        sampler's grid and only those are run (SDEdit's partial chain, Meng et al. 2022, through
        ``times=``); ddpm and ddim only."""
        from ..core.samplers import grid_times, sample
        from ..core.steering import ClipX0, Inpaint

        dim = len(self.normalizer.low)
        known = np.zeros((self.horizon, dim))
        mask = np.zeros((self.horizon, dim), dtype=bool)
        for step, state in conditions.items():
            state = np.asarray(state, dtype=np.float64)
            if state.shape != (dim - self.action_dim,) or not np.all(np.isfinite(state)):
                raise ValueError(
                    f"a planning condition must be a finite state of {dim - self.action_dim} "
                    f"values; got shape {state.shape}"
                )
            known[step, self.action_dim :] = state
            mask[step, self.action_dim :] = True
        known = torch.as_tensor(self.normalizer(known), dtype=torch.float32)
        inpaint = Inpaint(known, torch.as_tensor(mask))
        shape, steps, times, x_init = (n, self.horizon, dim), self.steps, None, None
        cond = {}
        if self.conditioning == "known":
            nan = torch.full_like(known, float("nan"))
            cond["known"] = torch.where(torch.as_tensor(mask), known, nan).expand(shape)
        if warm_start is not None:
            if self.sampler not in ("ddpm", "ddim"):
                raise ValueError(f"warm starts need the ddpm or ddim sampler, not {self.sampler!r}")
            grid = grid_times(self.model.process, self.steps)
            if warm_steps is None or not 1 <= warm_steps <= len(grid):
                raise ValueError(f"warm_steps must be in [1, {len(grid)}], got {warm_steps}")
            times, steps = grid[len(grid) - warm_steps :], None
            z = torch.as_tensor(self.normalizer(np.asarray(warm_start)), dtype=torch.float32)
            if tuple(z.shape) != shape[1:]:
                raise ValueError(f"warm_start must be {shape[1:]}, got {tuple(z.shape)}")
            x_init = renoise(self.model.process, z.expand(shape), times[0], seed)
        x = sample(
            self.model, shape, sampler=self.sampler, steps=steps, seed=seed, times=times,
            x_init=x_init, guidance=[*self.steering, ClipX0()], constraints=[inpaint], cond=cond,
        )  # fmt: skip
        return self.normalizer.inverse(x.detach().cpu().numpy())


def renoise(process: Any, x0: torch.Tensor, t: float, seed: int | None) -> torch.Tensor:
    """``alpha(t) x0 + sigma(t) z``: a warm start's state at time ``t``. ``z`` comes from its own
    stream derived from ``seed`` (``SeedSequence([seed, 1])``), not the sampler's, whose first
    step would otherwise draw the same numbers and correlate the two noises; unseeded without
    a seed."""
    g = None
    if seed is not None:
        g = torch.Generator().manual_seed(int(np.random.SeedSequence([int(seed), 1]).generate_state(1)[0]))
    tt = torch.tensor(t, dtype=torch.float64)
    a, s = float(process.alpha(tt)), float(process.sigma(tt))
    return a * x0 + s * torch.randn(x0.shape, generator=g, dtype=x0.dtype)


class MazePolicy:
    """Diffuser in a PointMaze: plan from the first observation ``[x, y, vx, vy, gx, gy]`` to
    the goal (zero velocity), then follow the plan with the PD tracker, or run the diffused
    actions (``execute="actions"``). ``reset(seed)`` and ``act(obs) -> action``.

    The paper plans once (``replan_every=None``). With ``replan_every=k`` it replans every k
    steps from the current state, keeping the first plan's arrival time (the goal is imposed at
    the step it is due and after it); with ``warm_steps`` too, each new plan starts from the
    previous one shifted by k steps and re-noised (:meth:`DiffuserPlanner.plan`'s warm start)."""

    EXECUTE = ("states", "actions")

    def __init__(self, planner: DiffuserPlanner, execute: str = "states",
                 replan_every: int | None = None, warm_steps: int | None = None):  # fmt: skip
        if execute not in self.EXECUTE:
            raise ValueError(f"unknown execute {execute!r}; valid: states, actions")
        if replan_every is not None and replan_every < 1:
            raise ValueError(f"replan_every must be >= 1, got {replan_every}")
        if warm_steps is not None and replan_every is None:
            raise ValueError("warm_steps needs replan_every (a warm start reuses the last plan)")
        self.planner, self.execute = planner, execute
        self.replan_every, self.warm_steps = replan_every, warm_steps
        if warm_steps is not None and replan_every % planner.skip:
            raise ValueError(f"a warm start needs replan_every to be a multiple of the plan's "
                             f"skip {planner.skip}, got {replan_every}")  # fmt: skip
        self.plan: np.ndarray | None = None  # at every step
        self.coarse: np.ndarray | None = None  # as planned (every skip-th step)
        self.step, self.seed, self.k = 0, 0, 0
        self.planning_seconds: list[float] = []

    def reset(self, seed: int = 0) -> None:
        self.plan, self.coarse, self.step, self.seed, self.k = None, None, 0, int(seed), 0

    def _replan(self, state: np.ndarray, goal: np.ndarray) -> None:
        import time

        start = time.perf_counter()
        # the arrival time of the first plan stays: the goal (zero velocity) at the step it is
        # due and at every later step, so a replan does not push the arrival back by k steps
        h, skip = self.planner.horizon, self.planner.skip
        due = max(h - 1 - self.step // skip, 1)
        conditions = {0: state, **dict.fromkeys(range(due, h), np.concatenate([goal, [0.0, 0.0]]))}
        warm = None
        if self.coarse is not None and self.warm_steps is not None:
            shift = min(self.k // self.planner.skip, len(self.coarse) - 1)
            warm = np.concatenate([self.coarse[shift:], np.repeat(self.coarse[-1:], shift, 0)])
        seed = self.seed + self.step
        self.coarse = self.planner.plan(conditions, seed=seed, warm_start=warm,
                                        warm_steps=self.warm_steps if warm is not None else None)[0]
        self.plan, self.k = upsample_plan(self.coarse, self.planner.skip), 0
        self.planning_seconds.append(time.perf_counter() - start)

    def act(self, observation: Any) -> np.ndarray:
        obs = np.asarray(observation, dtype=np.float64)
        if obs.shape != (6,) or not np.all(np.isfinite(obs)):
            raise ValueError(
                f"a maze observation is 6 finite values [x, y, vx, vy, gx, gy]; got {obs.shape}"
            )
        state, goal = obs[:4], obs[4:]
        due = self.replan_every is not None and self.k >= self.replan_every
        if self.plan is None or due:
            self._replan(state, goal)
        a_dim, k = self.planner.action_dim, self.k
        self.step, self.k = self.step + 1, self.k + 1
        if self.execute == "actions":
            action = self.plan[min(k, len(self.plan) - 1), :a_dim]
        else:
            target = self.plan[min(k + 1, len(self.plan) - 1), a_dim:]
            action = (target[:2] - state[:2]) + (target[2:4] - state[2:4])
        return np.clip(action, -1.0, 1.0).astype(np.float32)


def maze_policy(run_dir: str | os.PathLike, execute: str = "states",
                replan_every: int | None = None, warm_steps: int | None = None,
                **planner: Any) -> MazePolicy:  # fmt: skip
    """The :class:`MazePolicy` of a trained Diffuser run (``planner`` options: ``sampler``,
    ``steps``, ``steering``)."""
    model, info = load_diffuser_run(run_dir)
    limits = info["limits"]
    normalizer = LimitsNormalizer(limits["low"], limits["high"])
    planner.setdefault("conditioning", info.get("conditioning", "inpaint"))
    planner.setdefault("skip", info.get("skip", 1))
    plan = DiffuserPlanner(model, normalizer, info["horizon"], info["action_dim"], **planner)
    return MazePolicy(plan, execute, replan_every, warm_steps)
