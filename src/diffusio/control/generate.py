"""The data recipes behind :func:`~diffusio.control.datasets.make_dataset` (see
``docs/control.md``). Each returns ``(arrays, details)``: D4RL-style arrays (``observations``,
``actions``, ``rewards``, ``terminals``, ``timeouts``, ``next_observations`` and a per-step
label array) and what the manifest records about the recipe. Every random draw comes from the
seed, so a seed gives bit-identical arrays (on one platform and library versions).
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from .scores import SKILL_CYCLE

__all__ = ["BEHAVIORS", "SKILL_NAMES", "lunarlander_mixed", "point2d_avoid", "point2d_skills",
           "pointmaze_stream", "pusht_expert"]

#: lunarlander-mixed's behaviours, episode ``i`` uses ``BEHAVIORS[i % 5]``: (policy, noise std).
BEHAVIORS = (("heuristic", 0.0), ("heuristic", 0.3), ("heuristic", 0.6), ("heuristic", 1.0),
             ("random", None))  # fmt: skip
#: point2d-skills' skills, episode ``i`` uses ``SKILL_NAMES[i % 4]``.
SKILL_NAMES = SKILL_CYCLE
SKILL_NOISE = 0.3
#: point2d-avoid's demonstrations: the detour script's action noise (std).
AVOID_NOISE = 0.1
#: point2d-avoid's detour point: this far outside the obstacle (the script's default 0.2 grazes
#: the disc on the way from the detour point to the goal; 0.4 leaves ~0.15 of clearance).
AVOID_MARGIN = 0.4


class _Recorder:
    """Transitions appended one at a time, turned into float32 / bool / int8 arrays."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.rows: dict[str, list[Any]] = {k: [] for k in (
            "observations", "actions", "rewards", "next_observations", "terminals", "timeouts",
            label)}  # fmt: skip

    def add(self, obs: Any, action: Any, reward: float, next_obs: Any, terminal: bool,
            timeout: bool, label: Any) -> None:  # fmt: skip
        for key, value in zip(self.rows, (obs, action, reward, next_obs, terminal, timeout, label),
                              strict=True):  # fmt: skip
            self.rows[key].append(value)

    def __len__(self) -> int:
        return len(self.rows["rewards"])

    def arrays(self) -> dict[str, np.ndarray]:
        out = {k: np.asarray(v, dtype=np.float32) for k, v in self.rows.items()
               if k not in ("terminals", "timeouts", self.label)}  # fmt: skip
        out["terminals"] = np.asarray(self.rows["terminals"], dtype=bool)
        out["timeouts"] = np.asarray(self.rows["timeouts"], dtype=bool)
        labels = np.asarray(self.rows[self.label])
        out[self.label] = labels.astype(np.float32 if labels.dtype.kind == "f" else np.int8)
        if len(self):
            out["timeouts"][-1] |= ~out["terminals"][-1]  # the data ends: close the last episode
        return out


def _bar(total: int, unit: str, desc: str, progress: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, unit=unit, desc=desc, disable=not progress, leave=False)


def pointmaze_stream(name: str, seed: int, steps: int | None, episodes: int | None,
                     noise: float = 0.0, progress: bool = True) -> tuple[dict, dict]:  # fmt: skip
    """D4RL's maze2d recipe (``scripts/generation/generate_maze2d_datasets.py``): one
    continuous stream; the waypoint controller drives to a goal (a random free cell's centre
    plus U(-0.25, 0.25) m per axis; D4RL: +-0.1 cells); when it reports ``solved`` or after
    ``max_episode_steps`` steps with that goal, the step is marked a timeout (an episode cut,
    not a terminal: the point mass never terminates) and a new goal is drawn; the point keeps
    moving from where it is. Stops after ``steps`` steps or ``episodes`` goals. Labels:
    ``goals`` (the goal of each step). Unlike D4RL's script, the observation after a goal
    switch is the real next state (D4RL repeated the previous one)."""
    from .controllers import WaypointController
    from .envs import make_env
    from .pointmaze import free_cells, grid_to_xy, set_goal

    env = make_env(name, include_goal=False)
    base, horizon = env.unwrapped, int(env.spec.max_episode_steps)
    env_seed, ctl_seed, goal_seed = (int(s >> 1) for s in
                                     np.random.SeedSequence(seed).generate_state(3))  # fmt: skip
    controller = WaypointController.from_env(env, noise=noise)
    cells, rng = free_cells(env), np.random.default_rng(goal_seed)

    def new_goal() -> np.ndarray:
        goal = grid_to_xy(env, cells[rng.integers(len(cells))]) + rng.uniform(-0.25, 0.25, 2)
        set_goal(env, goal)
        return goal

    obs, _ = env.reset(seed=env_seed)
    controller.reset(ctl_seed)
    goal, since, done_goals, rec = new_goal(), 0, 0, _Recorder("goals")
    limit = steps if steps is not None else np.inf
    bar = _bar(steps or episodes or 0, "step" if steps else "episode", name, progress)
    while len(rec) < limit and (episodes is None or done_goals < episodes):
        action = controller.act(obs, goal)
        cut = controller.solved or since >= horizon
        next_dict, reward, *_ = base.step(action)  # sparse: 1 within 0.45 m of this goal
        next_obs = next_dict["observation"]
        rec.add(obs, action, float(reward), next_obs, False, cut, goal)
        since += 1
        if cut:
            goal, since, done_goals = new_goal(), 0, done_goals + 1
        obs = next_obs
        if steps or cut:
            bar.update(1)
    bar.close()
    env.close()
    details = {"controller": {"name": "d4rl-waypoint", "noise": noise, "p_gain": 10.0,
                              "d_gain": -1.0, "solve_thresh": 0.1, "vel_thresh": 0.1,
                              "q_iterations": 50, "gamma": 0.99, "jitter": "-U(0, 0.2) per axis"},
               "max_episode_steps": horizon, "goals": int(done_goals)}  # fmt: skip
    return rec.arrays(), details


def _episodes(make_policy: Any, make_env_for: Any, seed: int, steps: int | None,
              episodes: int | None, rec: Any, desc: str, progress: bool) -> None:  # fmt: skip
    """Whole episodes ``i = 0, 1, ...`` (seeds :func:`~diffusio.control.scores.episode_seed`)
    until ``episodes`` episodes or at least ``steps`` steps; ``make_policy(i)`` gives the
    policy and the episode's label, or a callable read after the policy's reset (a label the
    reset draws)."""
    from .scores import episode_seed

    bar = _bar(steps or episodes or 0, "step" if steps else "episode", desc, progress)
    for i in itertools.count():
        if (episodes is not None and i >= episodes) or (steps is not None and len(rec) >= steps):
            break
        env, (policy, label) = make_env_for(i), make_policy(i)
        env_seed, policy_seed = episode_seed(seed, i)
        obs, _ = env.reset(seed=env_seed)
        policy.reset(policy_seed)
        label = label() if callable(label) else label
        done, before = False, len(rec)
        while not done:
            action = policy.act(obs)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
            rec.add(obs, action, reward, next_obs, terminated, truncated and not terminated, label)
            obs = next_obs
        bar.update(len(rec) - before if steps else 1)
    bar.close()


def lunarlander_mixed(seed: int, steps: int | None, episodes: int | None,
                      progress: bool = True) -> tuple[dict, dict]:  # fmt: skip
    """Mixed-quality LunarLanderContinuous-v3: episode ``i`` runs ``BEHAVIORS[i % 5]`` (the
    heuristic with N(0, sigma^2) action noise, sigma in {0, 0.3, 0.6, 1.0}, or uniform random
    actions) until it lands, crashes (``terminals``) or reaches 1000 steps (``timeouts``).
    Labels: ``behaviors`` (index into ``BEHAVIORS``)."""
    from .controllers import LunarLanderHeuristic, RandomPolicy
    from .envs import make_env

    env = make_env("lunarlander")
    policies = [LunarLanderHeuristic(n) if kind == "heuristic" else RandomPolicy()
                for kind, n in BEHAVIORS]  # fmt: skip
    rec = _Recorder("behaviors")
    _episodes(lambda i: (policies[i % len(BEHAVIORS)], i % len(BEHAVIORS)), lambda i: env, seed,
              steps, episodes, rec, "lunarlander-mixed", progress)  # fmt: skip
    env.close()
    names = [f"heuristic+N(0,{n}^2)" if kind == "heuristic" else "random" for kind, n in BEHAVIORS]
    return rec.arrays(), {
        "controller": {"name": "lunarlander-heuristic-mixed", "behaviors": names},
        "labels": {"behaviors": names},
    }


def point2d_skills(seed: int, steps: int | None, episodes: int | None,
                   progress: bool = True) -> tuple[dict, dict]:  # fmt: skip
    """point2d skill episodes: episode ``i`` runs skill ``SKILL_NAMES[i % 4]`` (20 steps from
    near the origin, full force along the skill's direction plus N(0, 0.3^2)). Labels:
    ``skills`` (index into ``SKILL_NAMES``)."""
    from .controllers import Point2DController
    from .envs import make_env

    envs = [make_env("point2d", skill=s) for s in SKILL_NAMES]
    policies = [Point2DController(skill=s, noise=SKILL_NOISE) for s in SKILL_NAMES]
    rec, k = _Recorder("skills"), len(SKILL_NAMES)
    _episodes(lambda i: (policies[i % k], i % k), lambda i: envs[i % k], seed, steps, episodes,
              rec, "point2d-skills", progress)  # fmt: skip
    return rec.arrays(), {
        "controller": {"name": "point2d-skill-script", "noise": SKILL_NOISE},
        "labels": {"skills": list(SKILL_NAMES)},
    }


def point2d_avoid(seed: int, steps: int | None, episodes: int | None,
                  progress: bool = True) -> tuple[dict, dict]:  # fmt: skip
    """Diffusion Policy's bimodal demonstrations (Chi et al. 2023, Sec. 4 / Fig. 3) on
    ``point2d-avoid``: the detour script passes the obstacle on a side drawn by a fair coin
    per episode (from the episode's policy seed), with N(0, 0.1^2) action noise and the detour
    point :data:`AVOID_MARGIN` outside the disc, for the episode's 50 steps (it reaches the
    goal in ~33 and holds there). Labels: ``sides`` (+1 left of the line to the goal, i.e.
    x < 0; -1 right)."""
    from .controllers import Point2DController
    from .envs import make_env

    env = make_env("point2d-avoid")
    script = Point2DController.from_env(env, side="random", noise=AVOID_NOISE, margin=AVOID_MARGIN)
    rec = _Recorder("sides")
    _episodes(lambda i: (script, lambda: int(script.sign)), lambda i: env, seed, steps, episodes,
              rec, "point2d-avoid", progress)  # fmt: skip
    env.close()
    return rec.arrays(), {
        "controller": {"name": "point2d-detour-script", "noise": AVOID_NOISE, "side": "random",
                       "margin": script.margin},
        "labels": {"sides": {"1": "left (x < 0)", "-1": "right (x > 0)"}},
    }


def pusht_expert(seed: int, steps: int | None, episodes: int | None,
                 progress: bool = True) -> tuple[dict, dict]:  # fmt: skip
    """Push-T demonstrations (Chi et al. 2023; theirs were a human's) from the automatic
    expert :class:`~diffusio.control.pusht_expert.PushTExpert` (sampling-based MPC over push
    primitives on a copy of the simulator): episode ``i`` starts from the env seeded
    ``episode_seed(seed, i)[0]`` with the expert reset to ``[1]`` and runs until the T covers
    the goal (coverage > 0.95: ``terminals``) or 300 steps (``timeouts``). Observations are the
    20-D keypoints (``pusht``). Labels: ``states``, the 5-D state ``[agent x, y, block x, y,
    angle mod 2 pi]`` at each step (``pusht-state``'s observation), from which either
    observation type follows. ``details`` has the expert's per-episode ``scores`` (max reward),
    ``score_mean``, ``success_rate`` and ``final_coverage_mean``."""
    from .envs import make_env
    from .pusht_expert import PushTExpert
    from .scores import episode_seed

    env = make_env("pusht")
    expert, rec = PushTExpert(env), _Recorder("states")
    scores, successes, finals = [], [], []
    bar = _bar(steps or episodes or 0, "step" if steps else "episode", "pusht", progress)
    for i in itertools.count():
        if (episodes is not None and i >= episodes) or (steps is not None and len(rec) >= steps):
            break
        env_seed, policy_seed = episode_seed(seed, i)
        obs, info = env.reset(seed=env_seed)
        expert.reset(policy_seed)
        done, before, best = False, len(rec), 0.0
        while not done:
            (ax, ay), (bx, by, angle) = info["agent_pos"], info["block_pose"]
            state = (ax, ay, bx, by, angle % (2 * np.pi))
            action = expert.act(obs)
            next_obs, reward, terminated, truncated, info = env.step(action)
            done, best = terminated or truncated, max(best, float(reward))
            rec.add(obs, action, reward, next_obs, terminated, truncated and not terminated,
                    state)  # fmt: skip
            obs = next_obs
        scores.append(best)
        successes.append(bool(terminated))
        finals.append(float(info["coverage"]))
        bar.update(len(rec) - before if steps else 1)
    bar.close()
    env.close()
    return rec.arrays(), {
        "controller": {"name": "pusht-push-primitive-mpc", "n_candidates": expert.n_candidates,
                       "pair_first": expert.pair_first, "pair_second": expert.pair_second,
                       "step_cost": expert.step_cost},
        "labels": {"states": ["agent x", "agent y", "block x", "block y",
                              "block angle mod 2 pi"]},
        "score_mean": float(np.mean(scores)), "success_rate": float(np.mean(successes)),
        "final_coverage_mean": float(np.mean(finals)), "scores": scores,
    }  # fmt: skip


#: lunarlander-heuristic's action noise stds: episode ``i`` uses ``HEURISTIC_NOISES[i % 3]``.
HEURISTIC_NOISES = (0.3, 0.6, 0.9)


def lunarlander_heuristic(seed: int, steps: int | None, episodes: int | None,
                          progress: bool = True) -> tuple[dict, dict]:  # fmt: skip
    """Noisy-heuristic LunarLanderContinuous-v3 demonstrations (DPPO's pre-training data at
    CPU scale): episode ``i`` runs the heuristic with N(0, sigma^2) action noise, sigma =
    ``HEURISTIC_NOISES[i % 3]``, until it lands, crashes or reaches 1000 steps. Labels:
    ``behaviors`` (the index into ``HEURISTIC_NOISES``)."""
    from .controllers import LunarLanderHeuristic
    from .envs import make_env
    env = make_env("lunarlander")
    policies = [LunarLanderHeuristic(n) for n in HEURISTIC_NOISES]
    rec = _Recorder("behaviors")
    _episodes(lambda i: (policies[i % len(policies)], i % len(policies)), lambda i: env, seed,
              steps, episodes, rec, "lunarlander-heuristic", progress)  # fmt: skip
    env.close()
    names = [f"heuristic+N(0,{n}^2)" for n in HEURISTIC_NOISES]
    return rec.arrays(), {
        "controller": {"name": "lunarlander-heuristic-noisy", "behaviors": names},
        "labels": {"behaviors": names},
    }
