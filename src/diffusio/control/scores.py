"""Episode rollouts, the reference scores and D4RL's normalised score (Fu et al. 2020):
``100 (R - R_random) / (R_controller - R_random)``, so the scripted controller scores 100 and a
uniform random policy 0.

D4RL's own maze2d references (REF_MIN 23.85 / 13.13 / 6.7, REF_MAX 161.86 / 277.39 / 273.99) are
not reusable: PointMaze's success radius is 0.45 m (D4RL 0.5), its start excludes the goal cell
and its coordinates differ. :data:`REFERENCE_SCORES` are measured on *our* environments by
:func:`measure_reference_scores` with the protocol of :data:`REFERENCE_PROTOCOL`: the
environment's default task from ``make_env(name)`` (PointMaze: D4RL's fixed goal, a random
start, 300 / 600 / 800 steps, sparse reward; LunarLander: until it lands, crashes or 1000
steps; point2d: its default goal task; point2d skills: 20-step episodes cycling through the
four skills), 100 episodes, episode ``i`` seeded by :func:`episode_seed` ``(0, i)``; the
controller is the noiseless script of :mod:`~diffusio.control.controllers`, the random policy
uniform on [-1, 1]^2.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "EPISODE_SCORES", "REFERENCE_PROTOCOL", "REFERENCE_SCORES", "episode_score", "episode_seed",
    "has_reference", "make_controller", "measure_reference_scores", "normalized_score",
    "reference_key", "rollout",
]  # fmt: skip

REFERENCE_PROTOCOL = {"episodes": 100, "seed": 0}
#: (R_random, R_controller): mean returns measured by measure_reference_scores(key, 100, 0)
#: (gymnasium 1.4.0, gymnasium-robotics 1.4.2, mujoco 4.0.0, box2d 2.3.10).
REFERENCE_SCORES: dict[str, tuple[float, float]] = {
    "pointmaze-umaze": (12.0, 208.24),
    "pointmaze-medium": (9.01, 414.93),
    "pointmaze-large": (3.35, 533.45),
    "lunarlander": (-229.4542486068206, 280.9361317709609),
    "point2d": (0.0, 68.88),  # a random policy never reaches the goal in 100 steps
    "point2d-skills": (0.0, 0.9250027421188303),  # random: exactly 0, see measure_reference_scores
}
#: Dataset names whose references are another key's.
_ALIASES = {"lunarlander-mixed": "lunarlander", "lunarlander-heuristic": "lunarlander"}
SKILL_CYCLE = ("+x", "+y", "-x", "-y")
#: Environments scored per episode by their paper's own rule instead of a normalised return
#: (the runner's ``score``): the rule's text. A row is one episode of
#: :func:`~diffusio.control.policies.evaluate` (``max_reward``, ``success``, ``collision``...).
EPISODE_SCORES = {
    "pusht": "Push-T score (Chi et al. 2023): the maximum over the episode of the reward "
             "clip(coverage / 0.95, 0, 1), in [0, 1]; not a success rate",
    "pusht-state": "Push-T score, as pusht",
    "point2d-avoid": "1 when the goal was reached with no collision in the episode, else 0",
}  # fmt: skip


def has_reference(name: str) -> bool:
    """Whether ``name`` (environment or dataset) has D4RL-style :data:`REFERENCE_SCORES`."""
    return _ALIASES.get(name, name) in REFERENCE_SCORES


def episode_score(env_name: str, row: dict[str, Any]) -> float:
    """The score of one episode ``row`` on ``env_name``: the :data:`EPISODE_SCORES` rule, else
    D4RL's :func:`normalized_score` of its return."""
    if env_name in ("pusht", "pusht-state"):
        return float(row["max_reward"])
    if env_name == "point2d-avoid":
        return float(bool(row["success"]) and not bool(row["collision"]))
    return float(normalized_score(env_name, row["return"]))


def reference_key(name: str) -> str:
    """The :data:`REFERENCE_SCORES` key of an environment or dataset name."""
    key = _ALIASES.get(name, name)
    if key not in REFERENCE_SCORES:
        valid = sorted({*REFERENCE_SCORES, *_ALIASES})
        raise ValueError(f"no reference scores for {name!r}; valid names: {', '.join(valid)}")
    return key


def normalized_score(name: str, value: Any) -> Any:
    """D4RL's normalised score of a return (or an array of returns) on ``name``:
    ``100 (R - R_random) / (R_controller - R_random)`` with :data:`REFERENCE_SCORES`."""
    low, high = REFERENCE_SCORES[reference_key(name)]
    score = 100.0 * (np.asarray(value, dtype=np.float64) - low) / (high - low)
    return float(score) if score.ndim == 0 else score


def episode_seed(seed: int, episode: int) -> tuple[int, int]:
    """The (environment, policy) integer seeds of episode ``episode`` of a run seeded
    ``seed``: ``SeedSequence([seed, episode])``, so runs of different seeds or lengths never
    share episodes and a longer run starts with the shorter one's episodes."""
    env_seed, policy_seed = np.random.SeedSequence([seed, episode]).generate_state(2) >> 1
    return int(env_seed), int(policy_seed)


def rollout(env: Any, policy: Any, episodes: int, seed: int = 0) -> np.ndarray:
    """The returns of ``episodes`` episodes of ``policy`` (``reset(seed)``, ``act(obs)``) in
    ``env``, each run until terminated or truncated."""
    returns = np.zeros(episodes)
    for i in range(episodes):
        env_seed, policy_seed = episode_seed(seed, i)
        obs, _ = env.reset(seed=env_seed)
        policy.reset(policy_seed)
        done = False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy.act(obs))
            returns[i] += float(reward)
            done = terminated or truncated
    return returns


def make_controller(env_name: str, env: Any, noise: float = 0.0) -> Any:
    """The scripted controller of an environment of :func:`~diffusio.control.envs.make_env`."""
    from .controllers import LunarLanderHeuristic, Point2DController, WaypointController

    if env_name.startswith("pointmaze-"):
        return WaypointController.from_env(env, noise=noise)
    if env_name == "lunarlander":
        return LunarLanderHeuristic(noise=noise)
    if env_name == "point2d":
        return Point2DController.from_env(env, noise=noise)
    raise ValueError(f"no controller for {env_name!r}")


def measure_reference_scores(name: str, episodes: int = 100, seed: int = 0) -> dict[str, float]:
    """Measure ``{"random": R_random, "controller": R_controller}`` (mean returns) on ``name``
    (a :data:`REFERENCE_SCORES` key) with the protocol of the module docstring."""
    from .controllers import Point2DController, RandomPolicy
    from .envs import make_env

    key = reference_key(name)
    if key == "point2d-skills":
        # each skill in turn on the same episode seeds, so the random policy's progress along
        # +x cancels its progress along -x (and +y, -y) exactly: its expected value, 0
        per_skill = -(-episodes // len(SKILL_CYCLE))
        out = {"random": 0.0, "controller": 0.0}
        for skill in SKILL_CYCLE:
            env = make_env("point2d", skill=skill)
            for label, policy in (("random", RandomPolicy()),
                                  ("controller", Point2DController(skill=skill))):  # fmt: skip
                out[label] += float(rollout(env, policy, per_skill, seed).mean())
        return {label: total / len(SKILL_CYCLE) for label, total in out.items()}
    env = make_env(key)
    random = rollout(env, RandomPolicy(), episodes, seed)
    controller = rollout(env, make_controller(key, env), episodes, seed)
    env.close()
    return {"random": float(random.mean()), "controller": float(controller.mean())}
