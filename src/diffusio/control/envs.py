"""The control environments by name: :func:`make_env` and :func:`check_observation`.

=====================  =====================================================================
name                   environment
=====================  =====================================================================
``pointmaze-umaze``    gymnasium-robotics ``PointMaze_UMaze-v3`` (D4RL maze2d-umaze layout,
                       300 steps), flattened by :class:`~diffusio.control.pointmaze.FlatPointMaze`
``pointmaze-medium``   ``PointMaze_Medium-v3`` (maze2d-medium, 600 steps)
``pointmaze-large``    ``PointMaze_Large-v3`` (maze2d-large, 800 steps)
``lunarlander``        gymnasium ``LunarLanderContinuous-v3`` (8-D state, 2-D action, 1000 steps)
``point2d``            :class:`~diffusio.control.point2d.Point2DEnv`, our 2-D point mass
``point2d-avoid``      point2d with one obstacle on the straight line from start to goal: the
                       multimodal task of Diffusion Policy (pass it on the left or the right)
``pusht``              :class:`~diffusio.control.pusht.PushTEnv`, keypoint observations (20-D)
``pusht-state``        Push-T with state observations ``[agent x, y, block x, y, angle]``
=====================  =====================================================================

PointMaze is single-task by default, as D4RL's maze2d: the goal is D4RL's goal cell (``G`` in
D4RL's maze strings; :data:`~diffusio.control.pointmaze.D4RL_GOAL_CELLS`) plus PointMaze's
uniform +-0.25 m jitter, and the start is a random other cell. ``random_goal=True`` draws a new
goal cell every reset instead (Diffuser's "Multi2D"). The observation is the flat vector
``[x, y, vx, vy, goal_x, goal_y]`` (``include_goal=False``: ``[x, y, vx, vy]``) in PointMaze's
centred metres. The sparse reward is 1 within 0.45 m of the goal (D4RL: 0.5) and the task
continues after reaching it, so a return counts the steps spent at the goal.

The simulators need the ``control`` extra; they are imported when an environment is made.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["ENV_NAMES", "OBSERVATION_DIMS", "POINTMAZE_IDS", "check_observation", "make_env",
           "observation_batch"]

#: PointMaze names -> gymnasium-robotics ids.
POINTMAZE_IDS = {
    "pointmaze-umaze": "PointMaze_UMaze-v3",
    "pointmaze-medium": "PointMaze_Medium-v3",
    "pointmaze-large": "PointMaze_Large-v3",
}
LUNARLANDER_ID = "LunarLanderContinuous-v3"
ENV_NAMES = (*POINTMAZE_IDS, "lunarlander", "point2d", "point2d-avoid", "pusht", "pusht-state")
#: point2d-avoid: the obstacle (cx, cy, radius) between the start (0, -0.8) and the goal (0, 0.8).
AVOID_OBSTACLE = (0.0, 0.0, 0.35)

#: The observation widths each environment produces (the last axis), and what they hold.
OBSERVATION_DIMS: dict[str, tuple[tuple[int, ...], str]] = {
    **{
        name: ((4, 6), "[x, y, vx, vy] or [x, y, vx, vy, goal_x, goal_y]") for name in POINTMAZE_IDS
    },
    "lunarlander": ((8,), "[x, y, vx, vy, angle, angular velocity, left leg, right leg]"),
    "point2d": ((4, 6), "[x, y, vx, vy] or [x, y, vx, vy, goal_x, goal_y]"),
    "point2d-avoid": ((6,), "[x, y, vx, vy, goal_x, goal_y]"),
    "pusht": ((20,), "the T's 9 keypoints (x, y each) then the agent's x, y, in pixels"),
    "pusht-state": ((5,), "[agent x, agent y, block x, block y, block angle]"),
}


def _check_name(name: str) -> str:
    if name not in ENV_NAMES:
        raise ValueError(f"unknown environment {name!r}; valid names: {', '.join(ENV_NAMES)}")
    return name


def make_env(name: str, **kw: Any) -> Any:
    """A new ``gymnasium.Env`` by name (see the module docstring for the names).

    PointMaze options: ``random_goal`` (default False: D4RL's fixed goal), ``goal_cell``
    (another fixed (row, col) goal), ``include_goal`` (default True); the rest (``maze_map``,
    ``max_episode_steps``, ``reward_type``, ``continuing_task``, ``render_mode``...) go to
    ``gymnasium.make``. ``lunarlander`` passes ``kw`` to ``gymnasium.make``; ``point2d`` and
    ``point2d-avoid`` to :class:`~diffusio.control.point2d.Point2DEnv` (``point2d-avoid`` with
    :data:`AVOID_OBSTACLE` unless ``obstacles`` is given, 50 steps); ``pusht`` and
    ``pusht-state`` to :class:`~diffusio.control.pusht.PushTEnv`. An unknown name raises
    ValueError listing the valid ones.
    """
    _check_name(name)
    if name in POINTMAZE_IDS:
        from .pointmaze import make_pointmaze

        return make_pointmaze(POINTMAZE_IDS[name], **kw)
    if name == "lunarlander":
        import gymnasium

        return gymnasium.make(LUNARLANDER_ID, **kw)
    if name in ("pusht", "pusht-state"):
        from .pusht import PushTEnv

        return PushTEnv(obs_type="keypoints" if name == "pusht" else "state", **kw)
    from .point2d import Point2DEnv

    if name == "point2d-avoid":
        kw.setdefault("obstacles", (AVOID_OBSTACLE,))
        kw.setdefault("max_episode_steps", 50)  # the script reaches the goal in ~35 steps
    return Point2DEnv(**kw)


def check_observation(env_name: str, obs: Any) -> np.ndarray:
    """``obs`` as a float array after checking it fits ``env_name``: its last axis is one of
    the environment's observation widths (a batch ``(..., D)`` is fine) and every entry is
    finite. Raises one ValueError saying what is wrong (policies call this on their input)."""
    _check_name(env_name)
    dims, layout = OBSERVATION_DIMS[env_name]
    try:
        arr = np.asarray(obs, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{env_name}: observation is not an array of numbers ({err})") from None
    if arr.ndim == 0 or arr.shape[-1] not in dims:
        widths = " or ".join(f"(..., {d})" for d in dims)
        raise ValueError(
            f"{env_name}: observation has shape {arr.shape}, expected {widths}: {layout}"
        )
    bad = ~np.isfinite(arr)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        kind = "NaN" if np.isnan(arr[where]) else "inf"
        raise ValueError(f"{env_name}: observation contains {kind} (first at index {where})")
    return arr


def observation_batch(env_name: str, obs: Any, width: int) -> tuple[np.ndarray, bool]:
    """``(batch (B, width), single)``: a checked observation or batch of observations
    (:func:`check_observation`) as rows of the width a policy was trained on, and whether one
    observation (not a batch) came in, for policies that act on both."""
    arr = check_observation(env_name, obs)
    single = arr.ndim == 1
    arr = arr.reshape(-1, arr.shape[-1])
    if arr.shape[1] != width:
        raise ValueError(f"{env_name}: this policy takes observations of width {width}, got "
                         f"{arr.shape}")  # fmt: skip
    return arr, single
