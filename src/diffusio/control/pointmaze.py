"""PointMaze (gymnasium-robotics ``PointMaze_*-v3``) flattened to vectors, with D4RL's goals
and the maze grid in the controller's coordinates. Importing this module needs the ``control``
extra (gymnasium, gymnasium-robotics, mujoco).

Coordinates: PointMaze places cell (row i, column j) of ``maze_map`` at the centred metres
``x = (j + 0.5) s - W s / 2``, ``y = H s / 2 - (i + 0.5) s`` (``s`` = ``maze_size_scaling``, 1
for PointMaze; ``H x W`` cells). D4RL's maze2d used the cell indices themselves as positions
(cell centres at integers); :func:`xy_to_grid` / :func:`grid_to_xy` convert between the two.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import gymnasium
import numpy as np

__all__ = [
    "D4RL_GOAL_CELLS", "FlatPointMaze", "free_cells", "grid_to_xy", "make_pointmaze",
    "maze_walls", "register", "set_goal", "xy_to_grid",
]  # fmt: skip

#: D4RL maze2d's single-task goal cell (row, col): the ``G`` of its maze strings.
D4RL_GOAL_CELLS = {
    "PointMaze_UMaze-v3": (1, 1),
    "PointMaze_Medium-v3": (6, 6),
    "PointMaze_Large-v3": (7, 9),
}


def register() -> None:
    """Register gymnasium-robotics' environments (silencing the unrelated Adroit notice it
    prints to stderr on import)."""
    with contextlib.redirect_stderr(io.StringIO()):
        import gymnasium_robotics
    gymnasium.register_envs(gymnasium_robotics)


def maze_walls(env: Any) -> np.ndarray:
    """The maze as a boolean (rows, cols) array, True on wall cells."""
    return np.array([[cell == 1 for cell in row] for row in env.unwrapped.maze.maze_map])


def free_cells(env: Any) -> np.ndarray:
    """The (row, col) of every non-wall cell, in row-major order, shape (n, 2)."""
    return np.argwhere(~maze_walls(env))


def xy_to_grid(env: Any, xy: np.ndarray) -> np.ndarray:
    """Centred metres (..., 2) -> continuous (row, col) cell coordinates (centres at integers)."""
    maze, xy = env.unwrapped.maze, np.asarray(xy, dtype=np.float64)
    s = maze.maze_size_scaling
    row = (maze.y_map_center - xy[..., 1]) / s - 0.5
    col = (xy[..., 0] + maze.x_map_center) / s - 0.5
    return np.stack([row, col], axis=-1)


def grid_to_xy(env: Any, rc: np.ndarray) -> np.ndarray:
    """Continuous (row, col) cell coordinates (..., 2) -> centred metres."""
    maze, rc = env.unwrapped.maze, np.asarray(rc, dtype=np.float64)
    s = maze.maze_size_scaling
    x = (rc[..., 1] + 0.5) * s - maze.x_map_center
    y = maze.y_map_center - (rc[..., 0] + 0.5) * s
    return np.stack([x, y], axis=-1)


def set_goal(env: Any, goal_xy: np.ndarray) -> None:
    """Move the goal of a running PointMaze episode (the reward follows it), as D4RL's
    ``env.set_target``."""
    base = env.unwrapped
    base.goal = np.asarray(goal_xy, dtype=np.float64).copy()
    base.update_target_site_pos()


class FlatPointMaze(gymnasium.ObservationWrapper):
    """PointMaze with a flat observation ``[x, y, vx, vy, goal_x, goal_y]`` (float64; without
    the goal when ``include_goal=False``) instead of its dict, and a fixed goal cell when
    ``goal_cell`` is given: every reset then passes ``options={"goal_cell": goal_cell}`` (a
    caller's own ``goal_cell`` option wins), so the goal is that cell's centre plus PointMaze's
    uniform +-0.25 m jitter and the start a random other cell. ``goal_cell=None`` keeps
    PointMaze's random goal per reset."""

    def __init__(self, env: Any, goal_cell: tuple[int, int] | None = None,
                 include_goal: bool = True) -> None:  # fmt: skip
        super().__init__(env)
        walls = maze_walls(env)
        if goal_cell is not None:
            r, c = (int(v) for v in goal_cell)
            if not (0 <= r < walls.shape[0] and 0 <= c < walls.shape[1]) or walls[r, c]:
                raise ValueError(f"goal cell {(r, c)} is a wall or outside the {walls.shape} maze")
            goal_cell = (r, c)
        self.goal_cell, self.include_goal = goal_cell, include_goal
        dim = 6 if include_goal else 4
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (dim,), np.float64)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        options = dict(options or {})
        if self.goal_cell is not None and options.get("goal_cell") is None:
            options["goal_cell"] = np.array(self.goal_cell)
        return super().reset(seed=seed, options=options)

    def observation(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        state = np.asarray(observation["observation"], dtype=np.float64)
        if not self.include_goal:
            return state.copy()
        return np.concatenate([state, np.asarray(observation["desired_goal"], np.float64)])


def make_pointmaze(env_id: str, random_goal: bool = False, goal_cell: tuple[int, int] | None = None,
                   include_goal: bool = True, **kw: Any) -> FlatPointMaze:  # fmt: skip
    """``gymnasium.make(env_id, **kw)`` wrapped in :class:`FlatPointMaze`: D4RL's goal cell
    (or ``goal_cell``) unless ``random_goal``."""
    if random_goal and goal_cell is not None:
        raise ValueError("give either random_goal=True or a goal_cell, not both")
    register()
    env = gymnasium.make(env_id, **kw)
    default = not random_goal and goal_cell is None
    if default:
        goal_cell = D4RL_GOAL_CELLS.get(env_id)
    try:
        return FlatPointMaze(env, goal_cell=goal_cell, include_goal=include_goal)
    except ValueError as err:
        if not default:
            raise
        raise ValueError(f"{err} (D4RL's goal cell; pass goal_cell=(row, col) or "
                         "random_goal=True)") from None  # fmt: skip
