"""``point2d``: a 2-D point mass in the square [-1, 1]^2 with optional circular obstacles, in
two task modes. Importing this module needs gymnasium (the ``control`` extra).

Dynamics (dt = 0.1 s): the action ``a`` in [-1, 1]^2 is a force; ``v <- v + dt (accel a - drag
v)``, ``p <- p + dt v``, so the top speed is ``accel / drag`` = 0.5 m/s, reached with time
constant ``1 / drag`` = 0.25 s. The walls of the square stop the point (that velocity component
is zeroed); an obstacle pushes it back onto its circle and removes the inward velocity, and the
step is a *collision* (``info["collision"]``, reward minus ``collision_penalty``).

* **Goal mode** (default): observation ``[x, y, vx, vy, goal_x, goal_y]``; reward 1 per step
  within ``goal_radius`` of the goal (the task continues, as PointMaze's), so a return counts
  the steps at the goal; 100 steps. The start and the goal are fixed (``start`` plus
  +-``start_noise`` jitter) or random (``random_start`` / ``random_goal``: uniform in
  [-0.8, 0.8]^2 outside the obstacles).
* **Skill mode** (``skill="+x"``, or several names, composed by summing their directions):
  observation ``[x, y, vx, vy]``; reward = progress along the skill's unit direction
  ``d . (p' - p)``; start near the origin; 20 steps. Skills ``+x``, ``-x``, ``+y``, ``-y``
  (Decision Diffuser's composition check: train on ``+x`` and ``+y``, compose, expect 45 deg).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium
import numpy as np

__all__ = ["SKILLS", "Point2DEnv", "skill_direction"]

#: Skill name -> unit direction.
SKILLS = {"+x": (1.0, 0.0), "-x": (-1.0, 0.0), "+y": (0.0, 1.0), "-y": (0.0, -1.0)}
BOUND = 1.0
SPAWN = 0.8


def skill_direction(skill: str | Sequence[str]) -> np.ndarray:
    """The unit direction of a skill name or of several composed (their normalised sum)."""
    names = [skill] if isinstance(skill, str) else list(skill)
    unknown = [s for s in names if s not in SKILLS]
    if unknown or not names:
        raise ValueError(f"unknown skill {unknown or names!r}; valid skills: {', '.join(SKILLS)}")
    d = np.sum([SKILLS[s] for s in names], axis=0)
    norm = float(np.linalg.norm(d))
    if norm == 0.0:
        raise ValueError(f"the skills {names} cancel out (no direction)")
    return d / norm


class Point2DEnv(gymnasium.Env):
    """The 2-D point mass (see the module docstring). ``obstacles`` is a sequence of circles
    ``(cx, cy, radius)``."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        goal: Sequence[float] = (0.0, 0.8),
        start: Sequence[float] = (0.0, -0.8),
        obstacles: Sequence[Sequence[float]] = (),
        skill: str | Sequence[str] | None = None,
        random_goal: bool = False,
        random_start: bool = False,
        max_episode_steps: int | None = None,
        goal_radius: float = 0.1,
        collision_penalty: float = 1.0,
        start_noise: float = 0.05,
        dt: float = 0.1,
        accel: float = 2.0,
        drag: float = 4.0,
    ) -> None:
        self.obstacles = np.asarray(obstacles, dtype=np.float64).reshape(-1, 3)
        if (self.obstacles[:, 2] <= 0).any():
            raise ValueError("obstacle radii must be positive")
        self.skill = skill
        self.direction = None if skill is None else skill_direction(skill)
        self.fixed_goal = np.asarray(goal, dtype=np.float64).reshape(2)
        self.fixed_start = np.zeros(2) if skill is not None else np.asarray(start, np.float64)
        if (np.abs(self.fixed_goal) > BOUND).any() or (np.abs(self.fixed_start) > BOUND).any():
            raise ValueError(f"goal and start must lie in [-{BOUND}, {BOUND}]^2")
        self.random_goal, self.random_start = random_goal, random_start
        default_steps = 20 if skill is not None else 100
        self.max_episode_steps = int(max_episode_steps or default_steps)
        self.goal_radius, self.collision_penalty = goal_radius, collision_penalty
        self.start_noise, self.dt, self.accel, self.drag = start_noise, dt, accel, drag
        # |v| <= sqrt(2) accel / drag holds when dt drag <= 1 (each step mixes v with a)
        vmax = np.sqrt(2.0) * accel / drag if 0 < dt * drag <= 1 else np.inf
        high = np.array([BOUND, BOUND, vmax, vmax] + ([] if skill is not None else [BOUND] * 2))
        self.observation_space = gymnasium.spaces.Box(-high, high, dtype=np.float64)
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.pos, self.vel = np.zeros(2), np.zeros(2)
        self.goal = None if skill is not None else self.fixed_goal.copy()
        self.steps = 0

    # ------------------------------------------------------------------------- helpers
    def _free_point(self, margin: float) -> np.ndarray:
        for _ in range(1000):
            p = self.np_random.uniform(-SPAWN, SPAWN, size=2)
            if not self._inside(p, margin):
                return p
        raise ValueError("no free point in the arena: the obstacles cover it")

    def _inside(self, p: np.ndarray, margin: float = 0.0) -> bool:
        d = np.linalg.norm(self.obstacles[:, :2] - p, axis=1)
        return bool((d < self.obstacles[:, 2] + margin).any())

    def _obs(self) -> np.ndarray:
        parts = [self.pos, self.vel] + ([] if self.goal is None else [self.goal])
        return np.concatenate(parts).astype(np.float64)

    def _info(self, collision: bool) -> dict[str, Any]:
        success = self.goal is not None and np.linalg.norm(self.pos - self.goal) <= self.goal_radius
        return {"success": bool(success), "collision": collision,
                "goal": None if self.goal is None else self.goal.copy(), "skill": self.skill}  # fmt: skip

    # ---------------------------------------------------------------------- gymnasium
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if self.goal is not None:
            self.goal = (
                self._free_point(self.goal_radius) if self.random_goal else self.fixed_goal.copy()
            )
        if self.random_start and self.skill is None:
            self.pos = self._free_point(0.05)
        else:
            jitter = self.np_random.uniform(-self.start_noise, self.start_noise, size=2)
            self.pos = self.fixed_start + jitter
        self.vel, self.steps = np.zeros(2), 0
        return self._obs(), self._info(False)

    def step(self, action: Any):
        a = np.clip(np.asarray(action, dtype=np.float64).reshape(2), -1.0, 1.0)
        before = self.pos.copy()
        self.vel = self.vel + self.dt * (self.accel * a - self.drag * self.vel)
        self.pos = self.pos + self.dt * self.vel
        collision = False
        for cx, cy, r in self.obstacles:
            offset = self.pos - (cx, cy)
            dist = float(np.linalg.norm(offset))
            if dist < r:
                n = offset / dist if dist > 0 else np.array([1.0, 0.0])
                self.pos = np.array([cx, cy]) + r * n
                self.vel = self.vel - min(0.0, float(self.vel @ n)) * n
                collision = True
        for k in range(2):  # the walls of the square
            if abs(self.pos[k]) > BOUND:
                self.pos[k], self.vel[k] = np.clip(self.pos[k], -BOUND, BOUND), 0.0
        self.steps += 1
        if self.direction is not None:
            reward = float(self.direction @ (self.pos - before))
        else:
            reward = float(np.linalg.norm(self.pos - self.goal) <= self.goal_radius)
        reward -= self.collision_penalty * collision
        truncated = self.steps >= self.max_episode_steps
        return self._obs(), reward, False, truncated, self._info(collision)
