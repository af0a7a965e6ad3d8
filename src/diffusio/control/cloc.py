"""Diffuse-CLoC (Huang et al. 2025, SIGGRAPH, arXiv:2503.11801) on ``diffusio/Clutter-v0``:
rolling inference, task-cost guidance, keyframe inpainting, the policies and their evaluation.

* Data (:func:`make_free_data`): obstacle-free goal reaching by a noisy scripted PD controller
  (random sub-goals, random gains, Ornstein-Uhlenbeck action noise), cached as ``.npz`` + JSON
  manifest under ``cache_root() / "datasets"``. States enter the model relative to the current
  position (:class:`Coder`), so the prior is translation invariant.
* Rolling inference (Sec. 4.3, :class:`Policy` ``inference="rolling"``): the H future frames
  ``(a_k, s_{k+1})`` sit on a staircase of noise levels, frame k at ``(k + 1) m`` (``K = H m``);
  each control step runs m denoising calls (every token one level down), pops the now clean
  frame 0, executes its action and appends a pure-noise frame at level K. ``"replan"`` denoises
  a whole new plan from level K every step (Diffuser's replanning; the rolling ablation).
* Guidance (Sec. 4.4, :class:`TaskCost`): the predicted clean states x0 of every noised state
  token move down the gradient of ``w_obs sum_k sum_o exp(-c (SDF_o(p_k) - r)) + w_goal sum_k
  (k / H) |p_k - goal|`` (the paper's static-obstacle cost; a waypoint cost weighted towards
  the end of the horizon), each token's step weighted by its x0's prior-posterior variance
  ``1 - alpha_bar_k`` (unit-variance data; so a far, noisy frame may move a lot and a near, almost
  clean one barely) and capped at ``max_step``; the shift is carried into the noisy token
  (``x_k += sqrt(alpha_bar_k) dx0``, so the posterior step keeps it) before DDPM's posterior
  step. Actions follow through the network, which conditions them on the guided states.
  Without the variance weight (a fixed step) rolling guidance failed here: a far frame's shift
  is lost at high noise, a near frame's is infeasible. Keyframes are imposed by inpainting (the
  known positions re-noised to each token's level after every step).
* Baselines: ``execute="track"`` runs a state-only planner's next state through an
  inverse-dynamics tracker that knows the exact physics (:func:`track`); the Diffuser-style
  model is the U-Net of :mod:`~diffusio.control.cloc_net` replanned every step.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .cloc_net import NetConfig, Schedule
from .clutter import AGENT_RADIUS, ClutterEnv

__all__ = ["Coder", "Policy", "TaskCost", "evaluate", "make_free_data", "sdf_torch",
           "staircase", "track", "windows"]  # fmt: skip

POS_SCALE, VEL_SCALE = 0.5, 0.5
FAR = (0.0, 100.0, 100.0, 1e-3, 1e-3)  # padding obstacle: never near


def make_free_data(
    seed: int, episodes: int, length: int = 100, cache: Path | None = None
) -> dict[str, np.ndarray]:
    """Obstacle-free episodes (states (E, T + 1, 4), actions (E, T, 2)) of the noisy scripted
    controller (see the module docstring), cached with a manifest."""
    from ..io import cache_root, write_json_atomic

    root = (cache or cache_root()) / "datasets"
    path = root / f"clutter-free-seed{seed}-{episodes}x{length}-v1.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    env, rng = ClutterEnv(n_obstacles=0, max_episode_steps=10**9), np.random.default_rng(seed)
    states = np.zeros((episodes, length + 1, 4))
    actions = np.zeros((episodes, length, 2))
    for e in range(episodes):
        p0, v0 = rng.uniform(-1.2, 1.2, 2), rng.uniform(-0.5, 0.5, 2)
        obs, _ = env.reset(seed=int(rng.integers(2**31)), options={"start": p0, "velocity": v0})
        noise, left, goal = np.zeros(2), 0, obs[:2]
        for t in range(length + 1):
            states[e, t] = obs[:4]
            if t == length:
                break
            if left <= 0 or np.linalg.norm(obs[:2] - goal) < 0.15:
                goal, left = rng.uniform(-1.2, 1.2, 2), int(rng.integers(15, 40))
                kp, kd = rng.uniform(1.5, 4.0), rng.uniform(0.5, 2.0)
            noise = 0.7 * noise + rng.normal(0.0, 0.3, 2)
            a = np.clip(kp * (goal - obs[:2]) - kd * obs[2:4] + noise, -1.0, 1.0)
            actions[e, t], left = a, left - 1
            obs, *_ = env.step(a)
    root.mkdir(parents=True, exist_ok=True)
    np.savez(path, states=states.astype(np.float32), actions=actions.astype(np.float32))
    write_json_atomic(path.with_suffix(".json"), {
        "format": "diffusio-clutter-free", "version": 1, "seed": seed, "episodes": episodes,
        "length": length, "env": "diffusio/Clutter-v0 (n_obstacles=0)", "physics": env.physics,
        "controller": "PD to random sub-goals in [-1.2, 1.2]^2, kp~U(1.5, 4), kd~U(0.5, 2), "
                      "OU noise (0.7, 0.3), new sub-goal within 0.15 m or after U(15, 40) steps",
        "created": time.strftime("%Y-%m-%d %H:%M:%S")})  # fmt: skip
    return make_free_data(seed, episodes, length, cache)


class Coder:
    """States ``[x, y, vx, vy]`` <-> model units: position relative to ``origin`` over
    ``POS_SCALE``, velocity over ``VEL_SCALE``; actions as they are ([-1, 1])."""

    scale = torch.tensor([POS_SCALE, POS_SCALE, VEL_SCALE, VEL_SCALE])

    def encode(self, s: Tensor, origin: Tensor) -> Tensor:
        rel = torch.cat([s[..., :2] - origin[:, None], s[..., 2:]], -1)
        return rel / self.scale

    def decode(self, z: Tensor, origin: Tensor) -> Tensor:
        s = z * self.scale
        return torch.cat([s[..., :2] + origin[:, None], s[..., 2:]], -1)


def windows(
    data: dict[str, np.ndarray], context: int, horizon: int
) -> tuple[np.ndarray, np.ndarray]:
    """Every window of an episode: states (W, C + H, 4) relative to the window's current state
    (index C - 1) in model units, actions (W, H, 2)."""
    s, a = data["states"], data["actions"]
    t0 = np.arange(context - 1, a.shape[1] - horizon + 1)
    idx = t0[:, None] + np.arange(-context + 1, horizon + 1)[None]
    ws = s[:, idx].reshape(-1, context + horizon, 4)
    wa = a[:, t0[:, None] + np.arange(horizon)[None]].reshape(-1, horizon, 2)
    z = Coder().encode(torch.as_tensor(ws), torch.as_tensor(ws[:, context - 1, :2]))
    return z.numpy().astype(np.float32), wa.astype(np.float32)


def sdf_torch(p: Tensor, obstacles: Tensor) -> Tensor:
    """Per-obstacle signed distances (N, T, n) of points p (N, T, 2) to obstacles (N, n, 5)
    (rows ``[kind, cx, cy, a, b]``, see :func:`~diffusio.control.clutter.sdf`)."""
    d = p[:, :, None] - obstacles[:, None, :, 1:3]
    disc = d.norm(dim=-1) - obstacles[:, None, :, 3]
    q = d.abs() - obstacles[:, None, :, 3:5]
    box = q.clamp(min=0).norm(dim=-1) + q.max(-1).values.clamp(max=0)
    return torch.where(obstacles[:, None, :, 0] > 0.5, box, disc)


class TaskCost:
    """Diffuse-CLoC's guidance costs on world positions p (N, T, 2): ``w_obs sum exp(-c
    (SDF - r))`` over tokens and obstacles (r the agent's radius) plus ``w_goal sum_k (k / T)
    |p_k - g|``; :meth:`guide` moves x0 down their gradient."""

    def __init__(self, obstacles: Tensor, goal: Tensor, w_obs: float, w_goal: float,
                 sharpness: float = 10.0, max_step: float = 1.0) -> None:  # fmt: skip
        self.obstacles, self.goal = obstacles, goal
        self.w_obs, self.w_goal, self.c, self.max_step = w_obs, w_goal, sharpness, max_step

    def __call__(self, p: Tensor) -> Tensor:
        ramp = torch.arange(1, p.shape[1] + 1, dtype=p.dtype) / p.shape[1]
        dist = ((p - self.goal[:, None]) ** 2).sum(-1).add(1e-6).sqrt()
        cost = self.w_goal * (ramp * dist).sum(-1)
        if self.w_obs:
            sd = sdf_torch(p, self.obstacles) - AGENT_RADIUS
            cost = cost + self.w_obs * torch.exp(-self.c * sd).sum((-1, -2))
        return cost

    def guide(self, x0: Tensor, origin: Tensor, weight: Tensor) -> Tensor:
        """x0 (N, T, 4) states in model units moved by ``-weight grad`` (``weight`` (N, T): the
        posterior variance of each token's x0, 0 for clean tokens), each step at most
        ``max_step`` long."""
        with torch.enable_grad():
            z = x0.detach().requires_grad_(True)
            p = Coder().decode(z, origin)[..., :2]
            (grad,) = torch.autograd.grad(self(p).sum(), z)
        step = grad * weight[..., None]
        norm = step.norm(dim=-1, keepdim=True).clamp(min=1e-12)
        return x0 - step * (self.max_step / norm).clamp(max=1.0)


def staircase(horizon: int, m: int) -> Tensor:
    """The rolling levels of the future frames before a control step: frame k at (k + 1) m."""
    return (torch.arange(horizon) + 1) * m


def track(s: np.ndarray, target: np.ndarray, physics: dict[str, float]) -> np.ndarray:
    """The kinematic planner's tracker: the force that lands on the planned next state under
    the simulator's own damped point-mass map -- MuJoCo's implicit damping per substep h,
    ``v <- r (v + h (gear / m) u)`` with ``r = 1 / (1 + h damping / m)``, then ``p <- p + h v``,
    composed over the control step into ``v' = A_v v + B_v u``, ``p' = p + A_p v + B_p u``:
    the mean of the controls that reach the planned velocity and the planned position, clipped
    to [-1, 1]."""
    h, n = physics["timestep"], int(physics["frame_skip"])
    r = 1.0 / (1.0 + h * physics["damping"] / physics["mass"])
    q = r * h * physics["gear"] / physics["mass"]
    a_v, b_v, a_p, b_p = 1.0, 0.0, 0.0, 0.0
    for _ in range(n):
        a_v, b_v = r * a_v, r * b_v + q
        a_p, b_p = a_p + h * a_v, b_p + h * b_v
    u_v = (target[:, 2:4] - a_v * s[:, 2:4]) / b_v
    u_p = (target[:, :2] - s[:, :2] - a_p * s[:, 2:4]) / b_p
    return np.clip(0.5 * (u_v + u_p), -1.0, 1.0)


class Policy:
    """A diffusion controller on Clutter-v0. ``inference``: ``"rolling"`` or ``"replan"``;
    ``execute``: ``"actions"`` (the diffused action) or ``"track"`` (:func:`track` on the
    planned next state). ``act_batch`` drives many layouts at once; ``reset(seed)`` / ``act``
    follow :func:`~diffusio.control.scores.rollout` on ``env`` (its obstacles read at reset)."""

    def __init__(
        self,
        net: Any,
        cfg: NetConfig,
        inference: str = "rolling",
        execute: str = "actions",
        w_obs: float = 4.0,
        w_goal: float = 4.0,
        sharpness: float = 10.0,
        max_step: float = 1.0,
        steps_per_frame: int = 2,
        physics: dict[str, float] | None = None,
        env: Any = None,
    ) -> None:
        if inference not in ("rolling", "replan") or execute not in ("actions", "track"):
            raise ValueError("inference is 'rolling' or 'replan', execute 'actions' or 'track'")
        if execute == "actions" and not cfg.actions:
            raise ValueError("a state-only planner needs execute='track'")
        if cfg.levels != cfg.horizon * steps_per_frame and inference == "rolling":
            raise ValueError(f"rolling needs levels = horizon * steps_per_frame, got {cfg.levels}")
        self.net, self.cfg, self.inference, self.execute = net, cfg, inference, execute
        self.w = (w_obs, w_goal, sharpness, max_step)
        self.m, self.env, self.sched = steps_per_frame, env, Schedule(cfg.levels)
        self.physics = physics or ClutterEnv(n_obstacles=0).physics
        self.keyframe: tuple[int, Tensor] | None = None
        self.begin([np.zeros((0, 5))])

    # ------------------------------------------------------------------ episodes
    def begin(self, obstacles: list[np.ndarray], seed: int = 0,
              keyframe: tuple[int, Any] | None = None) -> None:  # fmt: skip
        """Start len(obstacles) episodes; ``keyframe = (time, xy (N, 2))`` inpaints the
        position at that absolute step."""
        n_obs = max([len(o) for o in obstacles] + [1])
        pad = [
            np.concatenate([np.reshape(o, (-1, 5)), np.tile(FAR, (n_obs - len(o), 1))])
            for o in obstacles
        ]
        self.obstacles = torch.as_tensor(np.stack(pad), dtype=torch.float32)
        self.gen = torch.Generator().manual_seed(int(seed))
        self.buffer: list[Tensor] | None = None
        self.t, self.origin = 0, None
        self.keyframe = (
            None
            if keyframe is None
            else (int(keyframe[0]), torch.as_tensor(keyframe[1], dtype=torch.float32))
        )

    def reset(self, seed: int = 0) -> None:
        self.begin([self.env.unwrapped.obstacles], seed)

    def act(self, obs: Any) -> np.ndarray:
        return self.act_batch(np.asarray(obs, dtype=np.float64)[None])[0]

    # ------------------------------------------------------------------ sampling
    def _noise(self, n: int, h: int) -> list[Tensor]:
        xs = torch.randn(n, h, self.cfg.state_dim, generator=self.gen)
        xa = torch.randn(n, h, self.cfg.action_dim, generator=self.gen)
        return [xs, xa, torch.full((n, h), self.cfg.levels), torch.full((n, h), self.cfg.levels)]

    def denoise(
        self, ctx: Tensor, fut: list[Tensor], floor: Tensor, cost: TaskCost | None
    ) -> list[Tensor]:
        """One DDPM step of every future token above ``floor`` (levels -1), x0 guided by
        ``cost``; keyframes inpainted after it."""
        xs_f, xa, ls_f, la = fut
        c, n = self.cfg.context, ctx.shape[0]
        xs = torch.cat([ctx, xs_f], 1)
        ls = torch.cat([torch.zeros(n, c, dtype=torch.long), ls_f], 1)
        with torch.no_grad():
            x0s, x0a = self.net(
                xs, xa if self.cfg.actions else None, ls, la if self.cfg.actions else None
            )
        x0s = x0s[:, c:]
        if cost is not None:  # guide x0, and carry the shift into x_k: sqrt(ab_k) (x0' - x0)
            guided = cost.guide(x0s, self.origin, 1 - self.sched.alpha_bar[ls_f])
            xs_f = xs_f + self.sched.alpha_bar[ls_f].sqrt()[..., None] * (guided - x0s)
            x0s = guided
        self.last_x0 = x0s
        out = []
        for x, x0, lev in ((xs_f, x0s, ls_f), (xa, x0a, la)):
            if x0 is None:
                out.append(x)
                continue
            move = lev > floor
            mean = self.sched.c0[lev][..., None] * x0 + self.sched.ct[lev][..., None] * x
            z = torch.randn(x.shape, generator=self.gen)
            out.append(
                torch.where(move[..., None], mean + self.sched.var[lev][..., None].sqrt() * z, x)
            )
        new_ls, new_la = ls_f - (ls_f > floor).long(), la - (la > floor).long()
        xs_new = self._inpaint(out[0], new_ls)
        return [xs_new, out[1] if x0a is not None else xa, new_ls, new_la]

    def _inpaint(self, xs: Tensor, levels: Tensor) -> Tensor:
        if self.keyframe is None:
            return xs
        j = self.keyframe[0] - self.t  # s_j is future index j - 1
        if not 1 <= j <= self.cfg.horizon:
            return xs
        known = (self.keyframe[1] - self.origin) / POS_SCALE
        eps = torch.randn(known.shape, generator=self.gen)
        xs = xs.clone()
        xs[:, j - 1, :2] = self.sched.noise(known, levels[:, j - 1], eps)
        return xs

    def act_batch(self, obs: np.ndarray) -> np.ndarray:
        """Actions (N, 2) for observations (N, 6) of the N episodes of :meth:`begin`."""
        obs = np.asarray(obs, dtype=np.float64)
        if obs.ndim != 2 or obs.shape[1] != 6 or len(obs) != len(self.obstacles):
            raise ValueError(
                f"act_batch needs observations ({len(self.obstacles)}, 6), got {obs.shape}"
            )
        s = torch.as_tensor(obs[:, :4], dtype=torch.float32)
        new_origin = s[:, :2].clone()
        ctx = Coder().encode(s[:, None], new_origin)
        cost = TaskCost(self.obstacles, torch.as_tensor(obs[:, 4:6], dtype=torch.float32), *self.w)
        h, k, n = self.cfg.horizon, self.cfg.levels, len(obs)
        if self.inference == "replan" or self.buffer is None:
            self.origin, fut = new_origin, self._noise(n, h)
            target = (
                torch.zeros(h, dtype=torch.long)
                if self.inference == "replan"
                else staircase(h, self.m) - self.m
            )
            steps = k if self.inference == "replan" else k - self.m
        else:  # move the noisy plan to the new origin: x_k shifts by sqrt(ab_k) delta
            fut, delta = self.buffer, (new_origin - self.origin) / POS_SCALE
            ab = self.sched.alpha_bar[fut[2]].sqrt()[..., None]
            fut[0] = torch.cat([fut[0][..., :2] - ab * delta[:, None], fut[0][..., 2:]], -1)
            self.origin, target, steps = new_origin, staircase(h, self.m) - self.m, self.m
        if self.inference == "rolling" and self.buffer is None:  # fill: down to the staircase
            for _ in range(k - self.m):
                fut = self.denoise(ctx, fut, staircase(h, self.m), cost)
            steps = self.m
        for _ in range(steps):
            fut = self.denoise(ctx, fut, target, cost)
        plan = Coder().decode(fut[0][:, :1], self.origin)[:, 0].numpy()
        action = fut[1][:, 0].clamp(-1, 1).numpy()
        if self.inference == "rolling":  # pop frame 0, append pure noise at level K
            new = self._noise(n, 1)
            self.buffer = [torch.cat([f[:, 1:], g], 1) for f, g in zip(fut, new, strict=True)]
        self.t += 1
        self.last_plan = Coder().decode(fut[0], self.origin).numpy()
        return (
            track(obs[:, :4], plan, self.physics)
            if self.execute == "track"
            else action.astype(np.float64)
        )


def evaluate(policy: Policy, episodes: int, seed: int, n_obstacles: int = 8, max_steps: int = 80,
             keep_paths: int = 0, keyframe_time: int | None = None,
             inpaint: bool = True, key_fraction: float = 1.0) -> dict[str, Any]:  # fmt: skip
    """Run ``policy`` on ``episodes`` unseen layouts at once (layout i from
    :func:`~diffusio.control.scores.episode_seed` ``(seed, i)``): per-episode ``success``,
    ``collision``, ``steps``, the first ``keep_paths`` paths with their layouts, and with
    ``keyframe_time`` T ``key_error``, the distance at step T (or at the episode's end, if
    earlier) to the key ``start + key_fraction (goal - start)``, inpainted as the position at
    step T if ``inpaint``."""
    from .scores import episode_seed

    envs = [
        ClutterEnv(n_obstacles=n_obstacles, max_episode_steps=max_steps) for _ in range(episodes)
    ]
    obs = np.stack([e.reset(seed=episode_seed(seed, i)[0])[0] for i, e in enumerate(envs)])
    target = obs[:, :2] + key_fraction * (obs[:, 4:6] - obs[:, :2])
    key = None if keyframe_time is None or not inpaint else (keyframe_time, target)
    policy.begin([e.obstacles for e in envs], seed, keyframe=key)
    done = np.zeros(episodes, bool)
    success, collision = np.zeros(episodes, bool), np.zeros(episodes, bool)
    steps, key_error = np.zeros(episodes, int), np.full(episodes, np.nan)
    paths = [[o[:2].copy()] for o in obs[:keep_paths]]
    t0 = time.perf_counter()
    while not done.all():
        actions = policy.act_batch(obs)
        for i in np.flatnonzero(~done):
            obs[i], _, term, trunc, info = envs[i].step(actions[i])
            steps[i] += 1
            success[i], collision[i], done[i] = info["success"], info["collision"], term or trunc
            if i < keep_paths:
                paths[i].append(obs[i, :2].copy())
            if keyframe_time is not None and (
                steps[i] == keyframe_time or (done[i] and np.isnan(key_error[i]))
            ):
                key_error[i] = float(np.linalg.norm(obs[i, :2] - target[i]))
    return {"success": success.tolist(), "collision": collision.tolist(), "steps": steps.tolist(),
            "key_error": key_error.tolist(), "seconds": time.perf_counter() - t0,
            "paths": [np.asarray(p).tolist() for p in paths],
            "layouts": [{"obstacles": e.obstacles.tolist(), "goal": e.goal.tolist()}
                        for e in envs[:keep_paths]]}  # fmt: skip
