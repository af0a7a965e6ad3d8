"""``diffusio/Clutter-v0``: a MuJoCo point mass with force limits crossing a cluttered arena
(Diffuse-CLoC's "forest" task at the scale of 2 CPU cores). Needs the ``control`` extra.

Physics: a sphere of mass ``mass`` on two slide joints with viscous ``damping``, driven by two
motors of gear ``gear`` whose controls are limited to [-1, 1] (the force limit), simulated by
MuJoCo (``implicitfast``, 0.01 s) for ``frame_skip`` substeps per control step (dt = 0.1 s):
``m dv/dt = gear u - damping v``, so the top speed is ``gear / damping`` = 1 m/s and the time
constant ``m / damping`` = 0.67 s (the point carries momentum: a sharp turn needs room).

Task: observation ``[x, y, vx, vy, goal_x, goal_y]``; the start is near x = -1, the goal near
x = +1 (|y| <= 0.6). The episode ends with reward +1 once within ``goal_radius`` of the goal
(``info["success"]``), with reward -1 at the first contact of the agent (radius
``AGENT_RADIUS``) with an obstacle (``info["collision"]``, checked at every MuJoCo substep), or
is truncated after ``max_episode_steps``. Obstacles are discs and axis-aligned boxes drawn at
reset from the seed (``n_obstacles``; one always sits on the start-goal segment) in
``[-0.7, 0.7] x [-0.9, 0.9]``, never within ``CLEARANCE`` of the start or goal, and redrawn
until a path exists on a 2 cm grid (:func:`free_path_exists`). ``n_obstacles=0`` is the
obstacle-free arena of the training data. Obstacles are rows ``[kind, cx, cy, a, b]``
(kind 0: a disc of radius a; kind 1: a box of half-sizes a, b) with the analytic signed
distance :func:`sdf`; ``reset(options={"obstacles": ..., "start": ..., "goal": ...})`` sets a
layout by hand.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np

__all__ = ["AGENT_RADIUS", "CLEARANCE", "ENV_ID", "ClutterEnv", "free_path_exists", "sdf"]

ENV_ID = "diffusio/Clutter-v0"
AGENT_RADIUS = 0.05
CLEARANCE = 0.2
BOUND = 10.0
_XML = """<mujoco model="clutter-point">
  <option timestep="{ts}" gravity="0 0 0" integrator="implicitfast"/>
  <worldbody><body name="agent">
    <joint name="x" type="slide" axis="1 0 0" damping="{damping}"/>
    <joint name="y" type="slide" axis="0 1 0" damping="{damping}"/>
    <geom type="sphere" size="{radius}" mass="{mass}" contype="0" conaffinity="0"/>
  </body></worldbody>
  <actuator>
    <motor joint="x" gear="{gear}" ctrlrange="-1 1" ctrllimited="true"/>
    <motor joint="y" gear="{gear}" ctrlrange="-1 1" ctrllimited="true"/>
  </actuator>
</mujoco>"""


def sdf(points: Any, obstacles: Any) -> np.ndarray:
    """Signed distance (negative inside) of ``points`` (..., 2) to the union of ``obstacles``
    (n, 5) rows ``[kind, cx, cy, a, b]``: ``|p - c| - a`` for a disc, ``|max(q, 0)| +
    min(max(q_x, q_y), 0)`` with ``q = |p - c| - (a, b)`` for a box; +inf with no obstacles."""
    p = np.asarray(points, dtype=np.float64)[..., None, :]
    obs = np.asarray(obstacles, dtype=np.float64).reshape(-1, 5)
    if not len(obs):
        return np.full(p.shape[:-2], np.inf)
    d = p - obs[:, 1:3]
    disc = np.linalg.norm(d, axis=-1) - obs[:, 3]
    q = np.abs(d) - obs[:, 3:5]
    box = np.linalg.norm(np.maximum(q, 0.0), axis=-1) + np.minimum(q.max(axis=-1), 0.0)
    return np.where(obs[:, 0] > 0.5, box, disc).min(axis=-1)


def free_path_exists(start: Any, goal: Any, obstacles: Any, step: float = 0.02) -> bool:
    """Whether ``start`` and ``goal`` lie in one connected free region of the grid of spacing
    ``step`` over [-1.3, 1.3]^2 (free: signed distance above the agent's radius)."""
    from scipy import ndimage

    axis = np.arange(-1.3, 1.3 + step / 2, step)
    grid = np.stack(np.meshgrid(axis, axis, indexing="ij"), -1)
    labels, _ = ndimage.label(sdf(grid, obstacles) > AGENT_RADIUS)
    cell = [tuple(np.clip(np.rint((np.asarray(q) + 1.3) / step).astype(int), 0, len(axis) - 1))
            for q in (start, goal)]  # fmt: skip
    return bool(labels[cell[0]] and labels[cell[0]] == labels[cell[1]])


class ClutterEnv(gymnasium.Env):
    """The point mass in the cluttered arena (see the module docstring)."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, n_obstacles: int = 8, max_episode_steps: int = 80, goal_radius: float = 0.1,
                 mass: float = 1.0, damping: float = 1.5, gear: float = 1.5, frame_skip: int = 10,
                 timestep: float = 0.01) -> None:  # fmt: skip
        import mujoco

        if n_obstacles < 0 or max_episode_steps < 1 or goal_radius <= 0 or frame_skip < 1:
            raise ValueError("ClutterEnv needs n_obstacles >= 0, max_episode_steps >= 1, "
                             "goal_radius > 0 and frame_skip >= 1")  # fmt: skip
        self._mj = mujoco
        self.model = mujoco.MjModel.from_xml_string(
            _XML.format(ts=timestep, damping=damping, radius=AGENT_RADIUS, mass=mass, gear=gear)
        )
        self.data = mujoco.MjData(self.model)
        self.n_obstacles, self.max_episode_steps = int(n_obstacles), int(max_episode_steps)
        self.goal_radius, self.frame_skip = float(goal_radius), int(frame_skip)
        self.dt = timestep * frame_skip
        self.physics = {"mass": mass, "damping": damping, "gear": gear, "dt": self.dt,
                        "timestep": timestep, "frame_skip": frame_skip}  # fmt: skip
        high = np.array([BOUND, BOUND, 2 * gear / damping, 2 * gear / damping, BOUND, BOUND])
        self.observation_space = gymnasium.spaces.Box(-high, high, dtype=np.float64)
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.obstacles, self.goal, self.steps = np.zeros((0, 5)), np.zeros(2), 0

    def _layout(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rng = self.np_random
        for _ in range(200):
            start = np.array([rng.uniform(-1.1, -0.9), rng.uniform(-0.6, 0.6)])
            goal = np.array([rng.uniform(0.9, 1.1), rng.uniform(-0.6, 0.6)])
            rows = []
            while len(rows) < self.n_obstacles:
                if rows:
                    c = rng.uniform([-0.7, -0.9], [0.7, 0.9])
                else:  # the first obstacle blocks the straight line
                    c = start + rng.uniform(0.4, 0.6) * (goal - start) + rng.uniform(-0.05, 0.05, 2)
                row = ([0.0, *c, *[rng.uniform(0.1, 0.22)] * 2] if rng.random() < 0.5
                       else [1.0, *c, *rng.uniform(0.08, 0.2, 2)])  # fmt: skip
                if sdf(np.stack([start, goal]), row).min() > CLEARANCE:
                    rows.append(row)
            obstacles = np.asarray(rows, dtype=np.float64).reshape(-1, 5)
            if not len(obstacles) or free_path_exists(start, goal, obstacles):
                return start, goal, obstacles
        raise ValueError("no solvable layout in 200 draws: too many obstacles")

    def _obs(self) -> np.ndarray:
        return np.concatenate([self.data.qpos[:2], self.data.qvel[:2], self.goal]).astype(
            np.float64
        )

    def _info(self, collision: bool) -> dict[str, Any]:
        success = np.linalg.norm(self.data.qpos[:2] - self.goal) <= self.goal_radius
        return {"success": bool(success and not collision), "collision": bool(collision),
                "obstacles": self.obstacles.copy()}  # fmt: skip

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        start, goal, obstacles = self._layout()
        options = options or {}
        start = np.asarray(options.get("start", start), dtype=np.float64).reshape(2)
        self.goal = np.asarray(options.get("goal", goal), dtype=np.float64).reshape(2)
        self.obstacles = np.asarray(options.get("obstacles", obstacles), np.float64).reshape(-1, 5)
        self._mj.mj_resetData(self.model, self.data)
        self.data.qpos[:2] = start
        self.data.qvel[:2] = np.asarray(options.get("velocity", (0.0, 0.0)), dtype=np.float64)
        self.steps = 0
        return self._obs(), self._info(False)

    def step(self, action: Any):
        self.data.ctrl[:] = np.clip(np.asarray(action, dtype=np.float64).reshape(2), -1.0, 1.0)
        collision = False
        for _ in range(self.frame_skip):
            self._mj.mj_step(self.model, self.data)
            if len(self.obstacles) and sdf(self.data.qpos[:2], self.obstacles) < AGENT_RADIUS:
                collision = True
                break
        self.steps += 1
        info = self._info(collision)
        reward = -1.0 if collision else float(info["success"])
        terminated = collision or info["success"]
        truncated = not terminated and self.steps >= self.max_episode_steps
        return self._obs(), reward, terminated, truncated, info


def _register() -> None:
    if ENV_ID not in gymnasium.registry:
        gymnasium.register(ENV_ID, entry_point=ClutterEnv, max_episode_steps=None)


_register()
