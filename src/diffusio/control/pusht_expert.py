"""An automatic expert for Push-T (Chi et al. 2023, *Diffusion Policy: Visuomotor Policy
Learning via Action Diffusion*, RSS 2023, arXiv 2303.04137), whose demonstrations came from a
human; with none at hand, :class:`PushTExpert` plans on the simulator itself.

Method: sampling-based model-predictive control over *push primitives*. A primitive, in the T's
local frame, is a contact point on the outline (sampled along the perimeter, 1 px apart), a
push direction (the inward normal turned by a tilt drawn in [-0.6, 0.6] rad) and a push speed
(px per env step). Its actions: an approach route to the approach point (the disk's centre
touching the face at the contact, backed off 8 px along the push): straight when that segment
keeps the disk off the T, else out along a ray from a point of the T's kernel to a contour
around the block, along it and in again, at most 22 px per step; then up to 10 push targets
advancing along the push direction. A plan simulates 40 primitives (the last one executed,
continued from where the agent is when it is still on that push line, and 39 drawn) from the
simulator's state (the block pose and velocities and the agent's position and velocity, loaded
into a freshly built copy of the env's pymunk space: it follows the env to ~1e-3 px, pymunk's
contact warm start being the only difference; ``Space.copy()``, tried, did not reproduce the
env's trajectories) and scores every push step by the *keypoint error* (the RMS distance of the
T's 9 keypoints to the goal's, in closed form ``sqrt(|dc|^2 + 2(1-cos da) S)`` (dc: the
keypoints' centroid's offset, da: the angle's, S: the keypoints' spread)), plus, within 30 px
of the goal, the task's own measure ``60(1-e/30)(1-coverage)`` for a keypoint error e, plus
0.05 per env step. The best prefix (its actions up to its best step) is executed open loop,
then the expert re-plans. Fine phase: the push speed is ``clip(0.3e,1,20)`` px / step, drawn at
1, 1/2 or 1/4 of it, so pushes shrink near the goal. When no primitive improves the score (a
local minimum: every single push that turns the T also shifts it), a depth-2 search runs: 16
drawn first pushes of a drawn length, each followed by the best of 16 second primitives; the
best pair is queued. All draws come from the generator that :meth:`PushTExpert.reset` seeds, so
a seed and the env's seed give the same actions.

Measured (env seed and expert seed ``episode_seed(0, i)``, episodes i = 0..19, one core)::

    python -m diffusio.control.pusht_expert --episodes 20

Push-T score (mean over episodes of the max reward) 1.000, success rate (coverage > 0.95 at
some step) 20/20 = 1.00, mean final coverage 0.957 (episodes end at success), 137 steps and
1.9 s per episode. ``diffusio make-dataset pusht --out FILE --episodes 100`` (seed 0): score
1.000, success 100/100, mean final coverage 0.955, 14,155 steps, 207 s on one core (2.1 s per
episode).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .pusht import (
    AGENT_COLLISION,
    AGENT_RADIUS,
    BLOCK_COLLISION,
    CONTROL_HZ,
    GOAL_POSE,
    K_P,
    K_V,
    KEYPOINTS,
    SIM_HZ,
    T_OUTLINE,
    PushTEnv,
    coverage,
)

try:  # the simulator's inner loop through pymunk's own cffi calls (5x faster, same numbers)
    import pymunk
    from pymunk._chipmunk import lib as _lib
except ImportError as e:  # pragma: no cover - PushTEnv needs pymunk already
    raise ImportError("diffusio.control.pusht_expert needs pymunk 7") from e

_get_position, _set_velocity, _space_step = (_lib.cpBodyGetPosition, _lib.cpBodySetVelocity,
                                             _lib.cpSpaceStep)  # fmt: skip

__all__ = ["MEASURED", "PushTExpert", "evaluate"]

#: The expert on 20 episodes (``python -m diffusio.control.pusht_expert --episodes 20``).
MEASURED = {"episodes": 20, "score_mean": 1.0, "success_rate": 1.0,
            "final_coverage_mean": 0.957, "steps_mean": 137.0, "seconds_per_episode": 1.9}  # fmt: skip

_KBAR = KEYPOINTS.mean(axis=0)
_KSPREAD = float(((KEYPOINTS - _KBAR) ** 2).sum(axis=1).mean())
_KERNEL = np.array([0.0, 30.0])  # sees the whole T (the T is star-shaped about it)
_MARGIN, _ROUTE_STEP, _MAX_PUSH = 8.0, 22.0, 10
_FINE, _FINE_WEIGHT = 30.0, 60.0  # the coverage term's reach (px of error) and weight
_SUBSTEPS, _DT = SIM_HZ // CONTROL_HZ, 1.0 / SIM_HZ


def _rot(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]])


def pose_error(x: float, y: float, angle: float, goal=GOAL_POSE) -> float:
    """The RMS distance (pixels) of the T's 9 keypoints at ``(x, y, angle)`` to the goal's."""
    c, s = math.cos(angle), math.sin(angle)
    cg, sg = math.cos(goal[2]), math.sin(goal[2])
    dx = x + c * _KBAR[0] - s * _KBAR[1] - (goal[0] + cg * _KBAR[0] - sg * _KBAR[1])
    dy = y + s * _KBAR[0] + c * _KBAR[1] - (goal[1] + sg * _KBAR[0] + cg * _KBAR[1])
    return math.sqrt(dx * dx + dy * dy + 2.0 * (1.0 - math.cos(angle - goal[2])) * _KSPREAD)


def _library() -> tuple[np.ndarray, np.ndarray]:
    """Contact points along the T's perimeter (local frame, 1 px apart), their outward normals."""
    points, normals = [], []
    for a, b in zip(T_OUTLINE, np.roll(T_OUTLINE, -1, axis=0), strict=True):
        d = b - a
        length = float(np.hypot(*d))
        n = np.array([d[1], -d[0]]) / length  # outward for this outline's orientation
        for t in np.arange(0.5, length, 1.0):
            points.append(a + d * t / length)
            normals.append(n)
    return np.array(points), np.array(normals)


def _contour(n: int = 360, pad: float = AGENT_RADIUS + 14.0, window: int = 12) -> np.ndarray:
    """``r[k]``: the route's distance from :data:`_KERNEL` at angle ``2 pi k / n`` (local
    frame): where the ray leaves the T grown by ``pad``, the largest within +-``window``."""
    import shapely

    grown = shapely.Polygon(T_OUTLINE).buffer(pad)
    phi = 2 * np.pi * np.arange(n) / n
    r = np.empty(n)
    for k, p in enumerate(phi):
        ray = shapely.LineString([_KERNEL, _KERNEL + 400 * np.array([np.cos(p), np.sin(p)])])
        r[k] = float(shapely.length(ray.intersection(grown)))
    return np.max([np.roll(r, j) for j in range(-window, window + 1)], axis=0)


class PushTExpert:
    """The Push-T expert (see the module docstring). ``env``: a :class:`PushTEnv` or a wrapper
    of one; the expert plans on its ``unwrapped`` simulator's state, read at each plan (``obs``
    is not used). ``n_candidates`` primitives per plan; when none helps, ``pair_first`` first
    pushes times ``pair_second`` second ones; ``step_cost`` px of score per env step.
    A plan's actions are replayed open loop while the env's step counter advances one per
    :meth:`act` (the simulation is exact); anything else (a reset, a step taken elsewhere)
    makes it re-plan."""

    def __init__(self, env: Any, n_candidates: int = 40, step_cost: float = 0.05,
                 pair_first: int = 16, pair_second: int = 16) -> None:  # fmt: skip
        self.env = env
        self.n_candidates, self.step_cost = int(n_candidates), float(step_cost)
        self.pair_first, self.pair_second = int(pair_first), int(pair_second)
        self._points, self._normals = _library()
        self._contour = _contour()
        import shapely

        # the agent's centre may not cross this (the T grown by just under the agent's radius)
        self._keepout = shapely.Polygon(T_OUTLINE).buffer(AGENT_RADIUS - 1.0)
        shapely.prepare(self._keepout)
        self._sim = PushTEnv(obs_type="state")
        self.reset()

    @property
    def base(self) -> PushTEnv:
        return getattr(self.env, "unwrapped", self.env)

    def reset(self, seed: int | None = None) -> None:
        """A new episode: the candidates' generator from ``seed``; forget the plan."""
        self.rng = np.random.default_rng(seed)
        self.queue: list[np.ndarray] = []
        self.last: tuple[int, float, float] | None = None
        self._next_step: int | None = None
        self.plans = self.stuck = 0

    # ------------------------------------------------------------------------ state
    def _state(self) -> tuple:
        b = self.base
        if b.space is None:
            raise RuntimeError("reset the environment before asking the expert to act")
        return (tuple(b.agent.position), tuple(b.agent.velocity), tuple(b.block.position),
                float(b.block.angle), tuple(b.block.velocity), float(b.block.angular_velocity))

    def _load(self, state: tuple) -> None:
        sim = self._sim
        sim._setup()  # the env's own space; without the contact counter's Python callback
        sim.space.on_collision(AGENT_COLLISION, BLOCK_COLLISION, post_solve=pymunk.empty_callback)
        (ap, av, bp, ba, bv, bw) = state
        sim.agent.position, sim.agent.velocity = ap, av
        sim.block.angle = ba
        sim.block.position = bp
        sim.block.velocity, sim.block.angular_velocity = bv, bw

    def _cost(self, x: float, y: float, angle: float) -> float:
        err = pose_error(x, y, angle)
        if err < _FINE:
            err += _FINE_WEIGHT * (1.0 - err / _FINE) * (1.0 - coverage((x, y, angle)))
        return err

    # ------------------------------------------------------------------------ routes
    def _route(self, p_local: np.ndarray, a_local: np.ndarray) -> list[np.ndarray]:
        """Waypoints (local frame) from the agent at ``p_local`` to the approach point."""
        import shapely

        seg = shapely.LineString([p_local, a_local])
        if not self._keepout.intersects(seg):
            n = max(1, math.ceil(float(np.hypot(*(a_local - p_local))) / _ROUTE_STEP))
            return [p_local + (a_local - p_local) * (k / n) for k in range(1, n + 1)]
        m = len(self._contour)

        def ang(v):
            return math.atan2(v[1] - _KERNEL[1], v[0] - _KERNEL[0])

        def at(phi):
            r = self._contour[int(round(phi / (2 * np.pi) * m)) % m]
            return _KERNEL + r * np.array([math.cos(phi), math.sin(phi)])

        p0, p1 = ang(p_local), ang(a_local)
        d = (p1 - p0 + np.pi) % (2 * np.pi) - np.pi
        out, ways = at(p0), []
        dist = float(np.hypot(*(out - p_local)))
        if float(np.hypot(*(p_local - _KERNEL))) < float(np.hypot(*(out - _KERNEL))):
            n = max(1, math.ceil(dist / _ROUTE_STEP))
            ways += [p_local + (out - p_local) * (k / n) for k in range(1, n + 1)]
        n = max(1, math.ceil(abs(d) * float(self._contour.max()) / _ROUTE_STEP))
        ways += [at(p0 + d * k / n) for k in range(1, n + 1)]
        last = ways[-1]
        n = max(1, math.ceil(float(np.hypot(*(a_local - last))) / _ROUTE_STEP))
        ways += [last + (a_local - last) * (k / n) for k in range(1, n + 1)]
        return ways

    # ---------------------------------------------------------------------- planning
    def _candidate(self, pick: tuple, state: tuple) -> tuple[list[np.ndarray], int] | None:
        """(world actions, index of the first push action) of primitive ``pick`` from
        ``state``, or None when its approach point would overlap the T."""
        index, tilt, speed = pick
        (ax, ay), _, (bx, by), angle = state[:4]
        rot, origin = _rot(angle), np.array([bx, by])
        p_local = rot.T @ (np.array([ax, ay]) - origin)
        c, n = self._points[index], self._normals[index]
        u = _rot(tilt) @ -n
        start = c + n * AGENT_RADIUS - u * _MARGIN
        rel = p_local - start
        along = float(rel @ u)
        if abs(float(rel @ np.array([-u[1], u[0]]))) < 3.0 and along > -2.0 * _MARGIN:
            ways, base = [], start + u * along  # already on this push line: keep pushing
        else:
            if self._keepout.intersects(_point(start)):
                return None
            ways, base = self._route(p_local, start), start
        local = ways + [base + u * (speed * (k + 1)) for k in range(_MAX_PUSH)]
        return [origin + rot @ w for w in local], len(ways)

    def _rollout(self, state: tuple, actions: list[np.ndarray], first_push: int,
                 stop: int | None = None) -> tuple:  # fmt: skip
        """Simulate ``actions`` from ``state``: (best score over the push steps, its index);
        with ``stop``, exactly ``actions[:stop]`` and (score at the end, the end state)."""
        self._load(state)
        ab, sp = self._sim.agent._body, self._sim.space._space
        block = self._sim.block
        (vx, vy), best, best_k, rising = state[1], math.inf, len(actions) - 1, 0
        for k, (tx, ty) in enumerate(actions if stop is None else actions[:stop]):
            tx, ty = min(max(float(tx), 0.0), 512.0), min(max(float(ty), 0.0), 512.0)
            for _ in range(_SUBSTEPS):  # PushTEnv.step's PD law, through pymunk's C calls
                p = _get_position(ab)
                vx = vx + (K_P * (tx - p.x) - K_V * vx) * _DT
                vy = vy + (K_P * (ty - p.y) - K_V * vy) * _DT
                _set_velocity(ab, (vx, vy))
                _space_step(sp, _DT)
            if k < first_push or stop is not None:
                continue
            (bx, by), angle = block.position, block.angle
            score = self._cost(bx, by, angle) + self.step_cost * (k + 1)
            if score < best:
                best, best_k, rising = score, k, 0
            else:
                rising += 1
                if rising >= 3:
                    break
        if stop is not None:
            (bx, by), angle = block.position, block.angle
            end = (tuple(self._sim.agent.position), (vx, vy), (bx, by), angle,
                   tuple(block.velocity), float(block.angular_velocity))  # fmt: skip
            return self._cost(bx, by, angle) + self.step_cost * stop, end
        return best, best_k

    def _sample(self, err: float, n: int) -> list[tuple]:
        top = float(np.clip(0.3 * err, 1.0, 20.0))
        rng = self.rng
        return [(int(rng.integers(len(self._points))), float(rng.uniform(-0.6, 0.6)),
                 top * float(rng.choice([1.0, 0.5, 0.25]))) for _ in range(n)]  # fmt: skip

    def _search(self, state: tuple, picks: list[tuple]) -> tuple:
        """The best of ``picks`` from ``state``: (score, pick, its actions up to its best)."""
        best = (math.inf, None, None)
        for pick in picks:
            cand = self._candidate(pick, state)
            if cand is None:
                continue
            score, k = self._rollout(state, *cand)
            if score < best[0]:
                best = (score, pick, cand[0][: k + 1])
        return best

    def _plan(self) -> list[np.ndarray]:
        state = self._state()
        (bx, by), angle = state[2], state[3]
        now, err = self._cost(bx, by, angle), pose_error(bx, by, angle)
        picks = ([self.last] if self.last is not None else []) + self._sample(
            err, self.n_candidates - (self.last is not None))
        score, pick, actions = self._search(state, picks)
        self.plans += 1
        if score < now - 0.02 * self.step_cost or actions is None:
            self.last = pick
            return actions or [np.array(state[0])]
        # stuck: no single push helps; search pairs (a push of a set length, then the best
        # continuation of a few) and queue the best pair
        self.stuck += 1
        best = (math.inf, None)
        for first in self._sample(err, self.pair_first):
            cand = self._candidate(first, state)
            if cand is None:
                continue
            length = cand[1] + int(self.rng.integers(1, _MAX_PUSH + 1))
            _, mid = self._rollout(state, cand[0], cand[1], stop=length)
            (mbx, mby), mangle = mid[2], mid[3]
            score2, pick2, second = self._search(mid, self._sample(
                pose_error(mbx, mby, mangle), self.pair_second))
            if second is not None and score2 + self.step_cost * length < best[0]:
                best = (score2 + self.step_cost * length, cand[0][:length] + second, pick2)
        if best[1] is None or best[0] >= score:
            self.last = pick
            return actions
        self.last = best[2]
        return best[1]

    def act(self, obs: Any = None) -> np.ndarray:
        """The next action (the agent's target position, pixels), re-planning when the last
        plan's actions are spent."""
        if self.base.steps != self._next_step:
            self.queue = []
        if not self.queue:
            self.queue = self._plan()
        self._next_step = self.base.steps + 1
        return np.clip(self.queue.pop(0), 0.0, 512.0)


def _point(xy: np.ndarray):
    import shapely

    return shapely.Point(float(xy[0]), float(xy[1]))


def evaluate(episodes: int = 20, seed: int = 0, n_candidates: int = 40,
             progress: bool = False) -> dict[str, Any]:  # fmt: skip
    """Run the expert on ``episodes`` Push-T episodes (seeds ``episode_seed(seed, i)``):
    score (mean of each episode's max reward), success rate, mean final coverage, timing."""
    import time

    from .scores import episode_seed

    env = PushTEnv()
    expert = PushTExpert(env, n_candidates=n_candidates)
    scores, successes, finals, steps = [], [], [], []
    start = time.perf_counter()
    for i in range(episodes):
        env_seed, policy_seed = episode_seed(seed, i)
        obs, info = env.reset(seed=env_seed)
        expert.reset(policy_seed)
        best, done, n = 0.0, False, 0
        while not done:
            obs, reward, terminated, truncated, info = env.step(expert.act(obs))
            best, done, n = max(best, reward), terminated or truncated, n + 1
        scores.append(best)
        successes.append(bool(terminated))
        finals.append(info["coverage"])
        steps.append(n)
        if progress:
            print(f"episode {i}: score {best:.3f} final coverage {info['coverage']:.3f} "
                  f"steps {n} ({time.perf_counter() - start:.1f} s)", flush=True)  # fmt: skip
    seconds = time.perf_counter() - start
    return {"episodes": episodes, "score_mean": float(np.mean(scores)),
            "success_rate": float(np.mean(successes)),
            "final_coverage_mean": float(np.mean(finals)),
            "seconds_per_episode": seconds / episodes, "steps_mean": float(np.mean(steps)),
            "scores": [float(s) for s in scores]}  # fmt: skip


if __name__ == "__main__":  # pragma: no cover
    import argparse
    import json

    parser = argparse.ArgumentParser(description="measure the Push-T expert")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--candidates", type=int, default=40)
    args = parser.parse_args()
    print(json.dumps(evaluate(args.episodes, args.seed, args.candidates, progress=True)))
