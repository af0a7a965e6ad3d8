"""Scripted controllers: D4RL's maze2d waypoint controller, the LunarLander heuristic with
Gaussian action noise, a uniform random policy and the point2d script.

Every controller has ``reset(seed)`` (a new episode, and its own ``numpy`` generator: the same
seed gives the same actions) and ``act(obs) -> action`` (a float64 array clipped to [-1, 1]).
Building one from an environment needs the ``control`` extra; acting does not.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np

__all__ = [
    "LunarLanderHeuristic", "Point2DController", "RandomPolicy", "WaypointController",
    "grid_waypoints",
]  # fmt: skip

# D4RL gridcraft's actions, in its order (argmax ties go to the first): NOOP, UP, DOWN, LEFT,
# RIGHT as (row, col) moves (D4RL's "x" is the row of the maze string, its "y" the column).
_MOVES = np.array([(0, 0), (0, -1), (0, 1), (-1, 0), (1, 0)])


def grid_waypoints(walls: np.ndarray, start: tuple[int, int], target: tuple[int, int],
                   rng: np.random.Generator, iterations: int = 50, gamma: float = 0.99,
                   max_steps: int = 100) -> np.ndarray:  # fmt: skip
    """D4RL's waypoints from cell ``start`` to cell ``target`` on the grid ``walls`` (True =
    wall): Q-iteration (``iterations`` sweeps, discount ``gamma``, reward 1 in the target cell,
    deterministic moves, a move into a wall stays), then a greedy rollout of at most
    ``max_steps`` cells; every waypoint but the last (the target's centre) is jittered by
    ``-U(0, 0.2)`` per coordinate. Returns (n, 2) continuous (row, col) coordinates."""
    rows, cols = walls.shape
    r, c = np.divmod(np.arange(rows * cols), cols)
    nr, nc = r[:, None] + _MOVES[:, 0], c[:, None] + _MOVES[:, 1]
    legal = (nr >= 0) & (nr < rows) & (nc >= 0) & (nc < cols)
    legal[legal] &= ~walls[nr[legal], nc[legal]]
    nxt = np.where(legal, nr * cols + nc, np.arange(rows * cols)[:, None])
    goal = target[0] * cols + target[1]
    reward = (np.arange(rows * cols) == goal).astype(np.float64)[:, None]
    q = np.zeros((rows * cols, len(_MOVES)))
    for _ in range(iterations):
        q = reward + gamma * q.max(axis=1)[nxt]
    s, points = start[0] * cols + start[1], []
    for _ in range(max_steps):
        s = int(nxt[s, int(np.argmax(q[s]))])
        point = np.array(divmod(s, cols), dtype=np.float64)
        if s != goal:
            point = point - rng.uniform(size=2) * 0.2
        points.append(point)
        if s == goal:
            break
    return np.array(points)


class WaypointController:
    """D4RL's ``WaypointController`` (``d4rl/pointmaze/waypoint_controller.py``) in PointMaze's
    centred metres: on a new goal cell, :func:`grid_waypoints` from the current cell; then the
    PD law ``a = p_gain (w - p) + d_gain v`` (10, -1), clipped to [-1, 1], towards the current
    waypoint ``w``, which advances when within ``solve_thresh`` (0.1 m) while the point moved
    less than ``vel_thresh`` (0.1 m) since the last call. ``solved`` (D4RL's ``done``) is True
    once within ``solve_thresh`` of the goal cell's centre; it then holds there. ``noise``:
    add N(0, noise^2) to the action and clip again (D4RL's ``--noisy`` uses 0.5).

    ``act(obs, goal=None)`` takes ``[x, y, vx, vy]`` plus the goal (``obs[4:6]`` or ``goal``).
    Build it with :meth:`from_env` (a PointMaze environment of :mod:`diffusio.control.envs`).
    """

    def __init__(self, walls: np.ndarray, to_grid: Any, to_xy: Any, noise: float = 0.0,
                 solve_thresh: float = 0.1, vel_thresh: float = 0.1, p_gain: float = 10.0,
                 d_gain: float = -1.0) -> None:  # fmt: skip
        self.walls, self.to_grid, self.to_xy = np.asarray(walls, bool), to_grid, to_xy
        self.noise, self.solve_thresh, self.vel_thresh = noise, solve_thresh, vel_thresh
        self.p_gain, self.d_gain = p_gain, d_gain
        self.reset(None)

    @classmethod
    def from_env(cls, env: Any, **kw: Any) -> WaypointController:
        from .pointmaze import grid_to_xy, maze_walls, xy_to_grid

        return cls(maze_walls(env), lambda xy: xy_to_grid(env, xy),
                   lambda rc: grid_to_xy(env, rc), **kw)  # fmt: skip

    def reset(self, seed: int | None = None) -> None:
        self.rng = np.random.default_rng(seed)
        self.target_cell: tuple[int, int] | None = None
        self.waypoints, self.index, self.solved = np.zeros((0, 2)), 0, False
        self.prev = np.zeros(2)

    def _cell(self, xy: np.ndarray) -> tuple[int, int]:
        rc = self.to_grid(xy)
        return int(round(float(rc[0]))), int(round(float(rc[1])))

    def act(self, obs: Any, goal: Any = None) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float64)
        pos, vel = obs[:2], obs[2:4]
        goal = obs[4:6] if goal is None else np.asarray(goal, dtype=np.float64)
        cell = self._cell(goal)
        if cell != self.target_cell:  # a new goal: plan from the current cell
            start = self._cell(pos)
            self.waypoints = self.to_xy(grid_waypoints(self.walls, start, cell, self.rng))
            self.target_cell, self.index = cell, 0
            self.prev = self.to_xy(np.array(start, dtype=np.float64))  # as D4RL: the start cell
            self.target = self.to_xy(np.array(cell, dtype=np.float64))
        moved = float(np.linalg.norm(self.prev - pos))
        unsolved = (
            np.linalg.norm(pos - self.target) >= self.solve_thresh or moved >= self.vel_thresh
        )
        waypoint = self.waypoints[self.index] if unsolved else self.target
        action = np.clip(self.p_gain * (waypoint - pos) + self.d_gain * vel, -1.0, 1.0)
        near = np.linalg.norm(pos - waypoint) < self.solve_thresh and moved < self.vel_thresh
        if unsolved and near and self.index < len(self.waypoints) - 1:
            self.index += 1
        self.prev, self.solved = pos.copy(), not unsolved
        if self.noise:
            action = np.clip(action + self.rng.normal(0.0, self.noise, size=2), -1.0, 1.0)
        return action


class LunarLanderHeuristic:
    """gymnasium's built-in LunarLander expert (``gymnasium.envs.box2d.lunar_lander.heuristic``,
    continuous actions) plus N(0, noise^2) per action entry, clipped to [-1, 1]."""

    def __init__(self, noise: float = 0.0) -> None:
        from gymnasium.envs.box2d.lunar_lander import heuristic

        self.noise, self._heuristic = float(noise), heuristic
        self._env = SimpleNamespace(unwrapped=SimpleNamespace(continuous=True))
        self.reset(None)

    def reset(self, seed: int | None = None) -> None:
        self.rng = np.random.default_rng(seed)

    def act(self, obs: Any) -> np.ndarray:
        action = np.asarray(self._heuristic(self._env, np.asarray(obs)), dtype=np.float64)
        if self.noise:
            action = action + self.rng.normal(0.0, self.noise, size=action.shape)
        return np.clip(action, -1.0, 1.0)


class RandomPolicy:
    """Uniform actions in [low, high]^dim from its own generator."""

    def __init__(self, dim: int = 2, low: float = -1.0, high: float = 1.0) -> None:
        self.dim, self.low, self.high = dim, low, high
        self.reset(None)

    def reset(self, seed: int | None = None) -> None:
        self.rng = np.random.default_rng(seed)

    def act(self, obs: Any) -> np.ndarray:
        return self.rng.uniform(self.low, self.high, size=self.dim)


class Point2DController:
    """The point2d script. Goal mode: a PD law ``a = gain (w - p) - damping v`` (clipped)
    towards the goal, via one detour point beside each obstacle the straight line crosses
    (``margin`` outside its circle, on the ``side`` "left" or "right" of the line, or a fair
    coin per episode for "random": Diffusion Policy's bimodal demonstrations); a detour point
    is done when within 0.1. Skill mode (``skill``): full force along the skill's direction.
    Both add N(0, noise^2) and clip."""

    def __init__(self, obstacles: Sequence[Sequence[float]] = (),
                 skill: str | Sequence[str] | None = None, side: str = "random",
                 noise: float = 0.0, gain: float = 8.0, damping: float = 1.0,
                 margin: float = 0.2) -> None:  # fmt: skip
        if side not in ("left", "right", "random"):
            raise ValueError(f"side must be 'left', 'right' or 'random', got {side!r}")
        self.obstacles = np.asarray(obstacles, dtype=np.float64).reshape(-1, 3)
        self.direction = None
        if skill is not None:
            from .point2d import skill_direction

            self.direction = skill_direction(skill)
        self.side, self.noise, self.gain, self.damping = side, noise, gain, damping
        self.margin = margin
        self.reset(None)

    @classmethod
    def from_env(cls, env: Any, **kw: Any) -> Point2DController:
        base = env.unwrapped
        return cls(obstacles=base.obstacles, skill=base.skill, **kw)

    def reset(self, seed: int | None = None) -> None:
        self.rng = np.random.default_rng(seed)
        sign = {"left": 1.0, "right": -1.0}.get(self.side)
        self.sign = sign if sign is not None else float(self.rng.choice([-1.0, 1.0]))
        self.detours: list[np.ndarray] | None = None

    def _plan(self, pos: np.ndarray, goal: np.ndarray) -> list[np.ndarray]:
        line = goal - pos
        length = float(np.linalg.norm(line)) or 1.0
        u = line / length
        normal = np.array([-u[1], u[0]]) * self.sign  # "left" of the line from pos to goal
        hits = []
        for cx, cy, r in self.obstacles:
            c = np.array([cx, cy])
            along = float((c - pos) @ u)
            if 0.0 < along < length and abs(float((c - pos) @ normal)) < r + self.margin:
                hits.append((along, c + (r + self.margin) * normal))
        return [p for _, p in sorted(hits, key=lambda h: h[0])]

    def act(self, obs: Any) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float64)
        if self.direction is not None:
            action = self.direction.copy()
        else:
            pos, vel, goal = obs[:2], obs[2:4], obs[4:6]
            if self.detours is None:
                self.detours = self._plan(pos, goal)
            while self.detours and np.linalg.norm(self.detours[0] - pos) < 0.1:
                self.detours.pop(0)
            target = self.detours[0] if self.detours else goal
            action = self.gain * (target - pos) - self.damping * vel
        if self.noise:
            action = action + self.rng.normal(0.0, self.noise, size=2)
        return np.clip(action, -1.0, 1.0)
