"""Push-T (Chi et al. 2023, *Diffusion Policy: Visuomotor Policy Learning via Action
Diffusion*, RSS 2023, arXiv 2303.04137) as a gymnasium environment, after the official
``diffusion_policy/env/pusht/pusht_env.py`` (``PushTEnv``) and ``pusht_keypoints_env.py``.
Importing this module needs gymnasium, pymunk 7 and shapely 2 (the ``control`` extra); nothing
is registered at import: :func:`register` adds ``diffusio/PushT-v0`` (keypoints) and
``diffusio/PushTState-v0`` (state).

Coordinates are the official's pixels: x right, y *down* (pymunk's space drawn straight onto
the 512 x 512 image), angles in radians. A pose ``(x, y, angle)`` places the T's local frame:
``world = (x, y) + R(angle) local``; the origin is the middle of the bar's top edge.

* **Physics** (pymunk, 100 Hz, 10 physics steps per env step): gravity 0 and ``damping = 0``,
  as the official. Damping 0 means every dynamic body loses its whole velocity at each physics
  step (pymunk scales velocities by ``damping ** dt``), so the block is quasi-static: it moves
  only while pushed and stops at once (it does not slide; one pressed into a wall creeps out
  of it for a few steps, pymunk's overlap correction). No shape has friction: the
  official's ``body.friction = 1`` sets a plain attribute on the Body, which pymunk ignores, and
  pymunk's shape default is 0. The agent is a kinematic disk (radius 15) whose velocity follows
  the PD law ``v += dt (k_p (a - p) - k_v v)``, k_p = 100, k_v = 20. Walls: four static
  segments (5 -> 506, radius 2). They stop the block; pymunk never collides a kinematic body
  with a static one, so they do not stop the agent (as in the official). The agent stays in
  the workspace because the action is clipped to [0, 512]^2 and this discrete PD law never
  overshoots (its impulse response is non-negative): from rest in the box, the centre stays in.
* **T block**: a 120 x 30 bar (local y in [0, 30]) above a 30 x 90 stem (y in [30, 120]),
  area 6300, mass 1. As the official: centre of gravity ``(0, 45)`` (the plain mean of the two
  boxes' centroids, not the area-weighted (0, 285/7)), moment ``2 x`` the bar's moment about
  the local origin (the official passes the bar's vertices for both boxes).
* **Reward**: coverage = area(T at the pose and T at the goal (256, 256, pi/4)) / 6300, with
  shapely; reward ``clip(coverage / 0.95, 0, 1)``; ``terminated`` when coverage > 0.95. The
  episode is truncated after ``max_episode_steps`` (300) by the env's own counter (no
  TimeLimit wrapper, so ``spec.max_episode_steps`` is None).
* **Observations** (float64). ``"state"``: ``[agent x, y, block x, y, angle mod 2 pi]`` (the
  official ``PushTEnv``). ``"keypoints"``: the 9 :data:`KEYPOINTS` of the T in world pixels
  (x, y each), then the agent's x, y: 20 numbers. The official samples its 9 keypoints by
  farthest-point sampling of the rendered mask (seed 0) and appends an all-ones visibility
  mask; ours are the T's 8 outline corners and its area centroid, and carry no mask.
* **reset**: agent uniform in [50, 450]^2, block in [100, 400]^2, angle in [-pi, pi) from the
  env's ``np_random`` (the official draws integer positions and, by a slip, a normal angle from
  a legacy ``RandomState``); ``options={"state": [ax, ay, bx, by, angle]}`` sets a state.
  Either way one physics step then runs, as the official, which moves nothing unless the
  agent overlaps the block or the block a wall (the block is then pushed out).
* ``info``: ``coverage``, ``success`` (coverage > 0.95), ``block_pose`` (x, y, raw angle),
  ``agent_pos``, ``agent_vel`` and ``n_contacts``: the agent-block contact points summed over
  the step's physics steps, divided by their number (10) and rounded up, as the official
  (``ceil(n_contact_points / n_steps)``). The official counted them in a ``post_solve``
  handler from ``space.add_collision_handler(0, 0)``, which pymunk 7 removed; ours is
  ``space.on_collision(AGENT_COLLISION, BLOCK_COLLISION, post_solve=...)`` on the shapes'
  own collision types, so a block touching a wall does not count (the official's (0, 0)
  matched every pair). After ``reset`` it counts the one settling physics step.
* **Render**: ``render_mode="rgb_array"`` rasterises (numpy + shapely, no window) the walls,
  the goal T (light green), the block, the agent and a red cross at the last action target.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

try:
    import gymnasium
    import pymunk
    import shapely
except ImportError as e:  # pragma: no cover - exercised by a test that hides pymunk
    raise ImportError(
        f"diffusio.control.pusht needs gymnasium, pymunk and shapely ({e.name!r} is missing): "
        "pip install 'diffusio[control]'"
    ) from e

__all__ = [
    "ENV_IDS", "GOAL_POSE", "KEYPOINTS", "OBS_TYPES", "T_AREA", "T_OUTLINE", "PushTEnv",
    "coverage", "frame_strip", "keypoints_world", "register", "t_polygon",
]  # fmt: skip

WINDOW = 512.0
GOAL_POSE = (256.0, 256.0, np.pi / 4)
SUCCESS_THRESHOLD = 0.95
SIM_HZ, CONTROL_HZ = 100, 10
K_P, K_V = 100.0, 20.0
AGENT_RADIUS = 15.0
BAR = ((-60.0, 0.0), (60.0, 0.0), (60.0, 30.0), (-60.0, 30.0))
STEM = ((-15.0, 30.0), (15.0, 30.0), (15.0, 120.0), (-15.0, 120.0))
#: The T's outline in its local frame (8 corners, bar first), area 6300.
T_OUTLINE = np.array([(-60, 0), (60, 0), (60, 30), (15, 30), (15, 120), (-15, 120),
                      (-15, 30), (-60, 30)], dtype=np.float64)  # fmt: skip
T_AREA = 120.0 * 30.0 + 30.0 * 90.0
BLOCK_COG = (0.0, 45.0)
#: The 9 keypoints in the T's local frame: the 8 outline corners, then the area centroid.
KEYPOINTS = np.vstack([T_OUTLINE, [(0.0, (3600 * 15 + 2700 * 75) / T_AREA)]])
KEYPOINT_REACH = float(np.linalg.norm(KEYPOINTS, axis=1).max())
WALLS = (((5, 506), (5, 5)), ((5, 5), (506, 5)), ((506, 5), (506, 506)), ((5, 506), (506, 506)))
WALL_RADIUS = 2.0
#: The shapes' pymunk collision types (the contact count's handler matches the pair).
AGENT_COLLISION, BLOCK_COLLISION = 1, 2
OBS_TYPES = ("keypoints", "state")
ENV_IDS = {"keypoints": "diffusio/PushT-v0", "state": "diffusio/PushTState-v0"}
COLOURS = {"background": (255, 255, 255), "wall": (211, 211, 211), "goal": (144, 238, 144),
           "block": (119, 136, 153), "agent": (65, 105, 225), "action": (255, 0, 0)}  # fmt: skip


def _to_world(local: np.ndarray, pose: Sequence[float]) -> np.ndarray:
    x, y, angle = (float(v) for v in pose)
    c, s = np.cos(angle), np.sin(angle)
    return local @ np.array([[c, s], [-s, c]]) + (x, y)


def t_polygon(pose: Sequence[float]) -> shapely.Polygon:
    """The T at ``pose = (x, y, angle)`` as a shapely polygon (world pixels)."""
    return shapely.Polygon(_to_world(T_OUTLINE, pose))


def coverage(pose: Sequence[float], goal: Sequence[float] = GOAL_POSE) -> float:
    """area(T at ``pose`` and T at ``goal``) / area(T), in [0, 1]."""
    return float(t_polygon(pose).intersection(t_polygon(goal)).area / T_AREA)


def keypoints_world(pose: Sequence[float]) -> np.ndarray:
    """The (9, 2) :data:`KEYPOINTS` of the T at ``pose`` in world pixels."""
    return _to_world(KEYPOINTS, pose)


def frame_strip(frames: Sequence[np.ndarray], path: str | os.PathLike, gap: int = 2) -> Path:
    """Save ``frames`` ((H, W, 3) uint8 each, same size) side by side, ``gap`` white pixels
    apart, as one PNG at ``path``; returns the path."""
    from matplotlib import image  # writes through Pillow: no figure, no backend

    frames = [np.asarray(f) for f in frames]
    if not frames or any(f.ndim != 3 or f.shape != frames[0].shape for f in frames):
        raise ValueError("frame_strip needs one or more (H, W, 3) frames of the same shape")
    spacer = np.full((frames[0].shape[0], gap, 3), 255, dtype=np.uint8)
    parts = [p for f in frames for p in (spacer, f.astype(np.uint8))][1:]
    path = Path(path)
    image.imsave(path, np.concatenate(parts, axis=1), format="png")
    return path


class PushTEnv(gymnasium.Env):
    """Push-T (see the module docstring). ``obs_type`` is ``"keypoints"`` (20-D) or
    ``"state"`` (5-D); ``render_size`` is the square image side of ``render()``."""

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": CONTROL_HZ}

    def __init__(
        self,
        obs_type: str = "keypoints",
        render_mode: str | None = None,
        render_size: int = 96,
        max_episode_steps: int = 300,
        render_action: bool = True,
    ) -> None:
        if obs_type not in OBS_TYPES:
            raise ValueError(f"unknown obs_type {obs_type!r}; valid: {', '.join(OBS_TYPES)}")
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"unknown render_mode {render_mode!r}; valid: None, 'rgb_array'")
        if int(render_size) < 8 or int(max_episode_steps) < 1:
            raise ValueError("render_size must be >= 8 and max_episode_steps >= 1")
        self.obs_type, self.render_mode = obs_type, render_mode
        self.render_size, self.max_episode_steps = int(render_size), int(max_episode_steps)
        self.render_action = bool(render_action)
        if obs_type == "state":
            low, high = np.zeros(5), np.array([WINDOW] * 4 + [2 * np.pi])
        else:  # keypoints reach KEYPOINT_REACH beyond the block's origin, kept in the walls
            low = np.array([-KEYPOINT_REACH] * 18 + [0.0, 0.0])
            high = np.array([WINDOW + KEYPOINT_REACH] * 18 + [WINDOW, WINDOW])
        self.observation_space = gymnasium.spaces.Box(low, high, dtype=np.float64)
        self.action_space = gymnasium.spaces.Box(0.0, WINDOW, (2,), dtype=np.float64)
        self.space: pymunk.Space | None = None
        self.latest_action: np.ndarray | None = None
        self.steps = 0

    # ------------------------------------------------------------------------- physics
    def _setup(self) -> None:
        space = pymunk.Space()
        space.gravity, space.damping = (0.0, 0.0), 0.0
        space.add(*[pymunk.Segment(space.static_body, a, b, WALL_RADIUS) for a, b in WALLS])
        self.agent = pymunk.Body(body_type=pymunk.Body.KINEMATIC)
        disk = pymunk.Circle(self.agent, AGENT_RADIUS)
        self.block = pymunk.Body(1.0, 2 * pymunk.moment_for_poly(1.0, BAR))
        bar, stem = pymunk.Poly(self.block, BAR), pymunk.Poly(self.block, STEM)
        disk.collision_type = AGENT_COLLISION
        bar.collision_type = stem.collision_type = BLOCK_COLLISION
        space.add(self.agent, disk, self.block, bar, stem)
        self.block.center_of_gravity = BLOCK_COG
        self.n_contact_points = 0
        space.on_collision(AGENT_COLLISION, BLOCK_COLLISION, post_solve=self._count_contacts)
        self.space = space

    def _count_contacts(self, arbiter: pymunk.Arbiter, space: pymunk.Space, data: Any) -> None:
        self.n_contact_points += len(arbiter.contact_point_set.points)

    def _set_state(self, state: np.ndarray) -> None:
        self.agent.position = (float(state[0]), float(state[1]))
        self.block.angle = float(state[4])  # the angle turns about the CoG: set it first
        self.block.position = (float(state[2]), float(state[3]))
        self.space.step(1.0 / SIM_HZ)

    def block_pose(self) -> np.ndarray:
        """The block's pose ``(x, y, angle)`` (origin and raw angle)."""
        return np.array([*self.block.position, self.block.angle], dtype=np.float64)

    def _obs(self) -> np.ndarray:
        agent = np.array(self.agent.position, dtype=np.float64)
        pose = self.block_pose()
        if self.obs_type == "state":
            return np.array([*agent, pose[0], pose[1], pose[2] % (2 * np.pi)])
        return np.concatenate([keypoints_world(pose).ravel(), agent])

    def _info(self) -> dict[str, Any]:
        cov = coverage(self.block_pose())
        return {"coverage": cov, "success": bool(cov > SUCCESS_THRESHOLD),
                "block_pose": self.block_pose(), "agent_pos": np.array(self.agent.position),
                "agent_vel": np.array(self.agent.velocity),
                "n_contacts": math.ceil(self.n_contact_points / (SIM_HZ // CONTROL_HZ))}  # fmt: skip

    # ---------------------------------------------------------------------- gymnasium
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._setup()
        state = (options or {}).get("state")
        if state is None:
            rng = self.np_random
            state = np.array([*rng.uniform(50, 450, 2), *rng.uniform(100, 400, 2),
                              rng.uniform(-np.pi, np.pi)])  # fmt: skip
        else:
            state = np.asarray(state, dtype=np.float64)
            if state.shape != (5,) or not np.isfinite(state).all():
                raise ValueError(f"options['state'] must be 5 finite numbers [ax, ay, bx, by, "
                                 f"angle], got {options['state']!r}")  # fmt: skip
        self._set_state(state)
        self.steps, self.latest_action = 0, None
        return self._obs(), self._info()

    def step(self, action: Any):
        if self.space is None:
            raise RuntimeError("call reset() before step()")
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (2,) or not np.isfinite(a).all():
            raise ValueError(f"the action must be 2 finite numbers (x, y), got {action!r}")
        a = np.clip(a, 0.0, WINDOW)
        self.latest_action, target, dt = a, pymunk.Vec2d(*a), 1.0 / SIM_HZ
        self.n_contact_points = 0
        for _ in range(SIM_HZ // CONTROL_HZ):
            accel = K_P * (target - self.agent.position) - K_V * self.agent.velocity
            self.agent.velocity += accel * dt
            self.space.step(dt)
        self.steps += 1
        info = self._info()
        reward = float(np.clip(info["coverage"] / SUCCESS_THRESHOLD, 0.0, 1.0))
        truncated = self.steps >= self.max_episode_steps
        return self._obs(), reward, info["success"], truncated, info

    # ------------------------------------------------------------------------- render
    def render(self) -> np.ndarray | None:
        """An (render_size, render_size, 3) uint8 image when ``render_mode="rgb_array"``."""
        if self.render_mode != "rgb_array":
            return None
        if self.space is None:
            raise RuntimeError("call reset() before render()")
        n = self.render_size
        centres = (np.arange(n) + 0.5) * WINDOW / n
        x, y = np.meshgrid(centres, centres)  # rows are y (down), columns x
        img = np.empty((n, n, 3), dtype=np.uint8)
        img[:] = COLOURS["background"]
        lo, hi = WALLS[0][1][0] + WALL_RADIUS, WALLS[2][0][0] - WALL_RADIUS
        img[(x < lo) | (x > hi) | (y < lo) | (y > hi)] = COLOURS["wall"]
        img[shapely.contains_xy(t_polygon(GOAL_POSE), x, y)] = COLOURS["goal"]
        img[shapely.contains_xy(t_polygon(self.block_pose()), x, y)] = COLOURS["block"]
        ax, ay = self.agent.position
        img[(x - ax) ** 2 + (y - ay) ** 2 <= AGENT_RADIUS**2] = COLOURS["agent"]
        if self.render_action and self.latest_action is not None:
            tx, ty = self.latest_action
            half, width = 4.0 * WINDOW / 96, 0.5 * WINDOW / n
            horizontal = (np.abs(x - tx) <= half) & (np.abs(y - ty) <= width)
            vertical = (np.abs(y - ty) <= half) & (np.abs(x - tx) <= width)
            img[horizontal | vertical] = COLOURS["action"]
        return img

    def close(self) -> None:
        self.space = None


def register() -> tuple[str, str]:
    """Register ``diffusio/PushT-v0`` (keypoints) and ``diffusio/PushTState-v0`` (state) with
    gymnasium (other :class:`PushTEnv` kwargs pass through ``gymnasium.make``); idempotent.
    Returns the two ids."""
    for obs_type, env_id in ENV_IDS.items():
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, entry_point="diffusio.control.pusht:PushTEnv",
                               kwargs={"obs_type": obs_type})  # fmt: skip
    return ENV_IDS["keypoints"], ENV_IDS["state"]
