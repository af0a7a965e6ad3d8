"""One policy interface for every trained planner: :func:`load_policy` and :func:`evaluate`.

A policy has ``reset(seed)`` and ``act(observation) -> action`` for the environment it was
trained on (any gymnasium user can call it in their own loop). :func:`evaluate` is the
runner (diffusion_policy's ``env_runner.run(policy) -> dict``): episodes seeded by
:func:`~diffusio.control.scores.episode_seed`, per-episode return, D4RL's normalised score,
success and steps, and the planning time per decision where the policy records it.
:func:`evaluate_batched` runs the same protocol with many episodes stepped together
(:func:`rollout_batch`), for policies that act on a batch of observations.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["POLICY_KINDS", "evaluate", "evaluate_batched", "load_policy", "rollout_batch",
           "summarize"]

#: Run descriptions load_policy understands: the file it reads and the policy it builds.
POLICY_KINDS = {
    "diffuser.json": "Diffuser (maze: plan once, PD tracker; lander: value-guided replanning)",
    "bc.json": "a baseline of diffusio.control.baselines (BC, %BC, GCBC)",
    "decision_diffuser.json": "Decision Diffuser or CondDiffuser (return / skill CFG, replanning)",
    "diffusion_policy.json": "Diffusion Policy (action chunks, receding horizon)",
    "chunk_baseline.json": "an MSE or Gaussian-mixture chunk policy (Diffusion Policy's baselines)",
    "gaussian_policy.json": "a Gaussian chunk policy (DPPO's Gaussian-PPO baseline)",
}


def load_policy(run_dir: str | os.PathLike, **options: Any) -> Any:
    """The policy of a trained run directory (``options`` go to its constructor, e.g.
    ``execute="actions"`` or ``sampler="ddim", steps=16`` for Diffuser; ``weights="model"``
    for a baseline, which takes no other option; ``target=0.9, guidance_scale=1.2,
    replan_every=1`` or ``skills=("+x", "+y")`` for Decision Diffuser). The policy's ``env``
    attribute names the environment it was trained on."""
    run = Path(run_dir)
    if not run.is_dir():
        raise FileNotFoundError(f"{run}: run directory not found")
    if (run / "diffuser.json").is_file():
        from .diffuser import load_diffuser_run, maze_policy

        _, info = load_diffuser_run(run)
        if info.get("kind") == "diffuser-lander":  # value-guided receding horizon
            from .value_planning import value_guided_policy

            return value_guided_policy(run, **options)
        policy = maze_policy(run, **options)
        policy.env = info["env"]
        return policy
    if (run / "bc.json").is_file():
        from .baselines import bc_policy

        unknown = sorted(set(options) - {"weights"})
        if unknown:
            raise ValueError(f"{run}: a baseline policy takes only the option weights "
                             f"('ema' or 'model'), not {', '.join(unknown)}")  # fmt: skip
        return bc_policy(run, **options)
    if (run / "decision_diffuser.json").is_file():
        from .decision_diffuser import decision_diffuser_policy

        return decision_diffuser_policy(run, **options)
    if (run / "diffusion_policy.json").is_file():
        from .diffusion_policy import diffusion_policy

        return diffusion_policy(run, **options)
    if (run / "chunk_baseline.json").is_file():
        from .chunk_baselines import chunk_baseline_policy

        return chunk_baseline_policy(run, **options)
    if (run / "gaussian_policy.json").is_file():  # a Gaussian chunk policy (control.ppo)
        from .ppo import gaussian_policy

        return gaussian_policy(run, **options)
    raise ValueError(
        f"{run}: not a policy run (none of {', '.join(POLICY_KINDS)} found); train one with a "
        "planning reproduction"
    )


def _mean_se(values: np.ndarray) -> tuple[float, float]:
    if len(values) == 0:
        return math.nan, math.nan
    se = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else math.nan
    return float(values.mean()), se


def summarize(env_name: str, seed: int, rows: list[dict[str, Any]], seconds_per_decision: float,
              planning_seconds: list[float]) -> dict[str, Any]:  # fmt: skip
    """The runner's output from per-episode rows (``return``, ``steps``, ``success``, and
    ``max_reward`` / ``collision`` where the score needs them): each row's score
    (:func:`~diffusio.control.scores.episode_score`: D4RL's normalised return, or the
    environment's own rule, e.g. the Push-T score), the means with their standard errors and the
    success rate (plus the mean final coverage where the environment reports one)."""
    from .scores import episode_score

    for row in rows:
        row["score"] = episode_score(env_name, row)
    r_mean, r_se = _mean_se(np.array([r["return"] for r in rows]))
    s_mean, s_se = _mean_se(np.array([r["score"] for r in rows]))
    out = {
        "env": env_name, "seed": seed, "episodes": rows, "return_mean": r_mean,
        "return_se": r_se, "score_mean": s_mean, "score_se": s_se,
        "success_rate": float(np.mean([r["success"] for r in rows])),
        "seconds_per_decision": seconds_per_decision, "planning_seconds": planning_seconds,
    }  # fmt: skip
    if rows and "final_coverage" in rows[0]:
        out["final_coverage_mean"], out["final_coverage_se"] = _mean_se(
            np.array([r["final_coverage"] for r in rows]))
    if rows and "collision" in rows[0]:
        out["collision_rate"] = float(np.mean([r["collision"] for r in rows]))
    return out


def evaluate(
    policy: Any,
    env_name: str,
    episodes: int,
    seed: int = 0,
    *,
    env_options: dict[str, Any] | None = None,
    progress: bool = False,
    keep_observations: bool = False,
    frames: int = 0,
) -> dict[str, Any]:
    """Run ``episodes`` episodes of ``policy`` in ``env_name`` (each until terminated or
    truncated) and return ``{"episodes": [{"return", "score", "success", "steps",
    "max_reward", ...}, ...], "return_mean", "return_se", "score_mean", "score_se",
    "success_rate", "seconds_per_decision", "planning_seconds"}``. Episodes also record
    ``collision`` (any step's ``info["collision"]``) and ``final_coverage`` where the
    environment reports them (then the summary has ``collision_rate`` and
    ``final_coverage_mean``); ``keep_observations`` adds each episode's observations (a list of
    lists); ``frames`` > 0 renders the first episode every ``frames`` steps into
    ``result["frames"]`` (the environment needs ``render_mode="rgb_array"`` in
    ``env_options``). A bad observation from the environment or an action of the wrong shape
    raises one-line ValueErrors."""
    from tqdm.auto import tqdm

    from .envs import check_observation, make_env
    from .scores import episode_seed

    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    env = make_env(env_name, **dict(env_options or {}))
    shape = env.action_space.shape
    rows, decisions, seconds, images = [], 0, 0.0, []
    for i in tqdm(range(episodes), desc=f"rollout {env_name}", disable=not progress):
        env_seed, policy_seed = episode_seed(seed, i)
        obs, info = env.reset(seed=env_seed)
        policy.reset(policy_seed)
        total, steps, success, done = 0.0, 0, False, False
        best, collision = -math.inf, False
        seen = [np.asarray(obs).tolist()] if keep_observations else []
        while not done:
            if frames and i == 0 and steps % frames == 0:
                images.append(env.render())
            check_observation(env_name, obs)
            start = time.perf_counter()
            action = np.asarray(policy.act(obs), dtype=np.float32)
            seconds += time.perf_counter() - start
            decisions += 1
            if action.shape != shape or not np.all(np.isfinite(action)):
                raise ValueError(f"the policy's action must be {shape} finite values, got "
                                 f"{action.shape}")  # fmt: skip
            obs, reward, terminated, truncated, info = env.step(action)
            total, steps, best = total + float(reward), steps + 1, max(best, float(reward))
            success = success or bool(info.get("success", info.get("is_success", False)))
            collision = collision or bool(info.get("collision", False))
            done = terminated or truncated
            if keep_observations:
                seen.append(np.asarray(obs).tolist())
        row = {"return": total, "steps": steps, "success": success, "max_reward": best}
        if "collision" in info:
            row["collision"] = collision
        if "coverage" in info:
            row["final_coverage"] = float(info["coverage"])
        if keep_observations:
            row["observations"] = seen
        rows.append(row)
    if frames:
        images.append(env.render())
    env.close()
    out = summarize(env_name, seed, rows, seconds / max(decisions, 1),
                    list(getattr(policy, "planning_seconds", [])))
    if frames:
        out["frames"] = images
    return out


def rollout_batch(policy: Any, env_name: str, env_seeds: Sequence[int], policy_seed: int = 0, *,
                  env_options: Mapping[str, Any] | None = None,
                  keep_observations: bool = False) -> list[dict[str, Any]]:  # fmt: skip
    """Run one episode per env seed, all at once: the policy acts on the batch (B, O) of the
    episodes still running (``policy.keep(rows)`` is told which remain, when it has it).
    Returns per episode :func:`evaluate`'s row (``return``, ``steps``, ``success``,
    ``max_reward``, and ``collision`` / ``final_coverage`` where the environment reports them)
    plus ``start`` / ``end``, the first two observation entries at reset and at the last step
    (a point's position); ``keep_observations`` adds each episode's observations."""
    from .envs import check_observation, make_env

    envs = [make_env(env_name, **dict(env_options or {})) for _ in env_seeds]
    obs = [env.reset(seed=int(s))[0] for env, s in zip(envs, env_seeds, strict=True)]
    rows = [{"return": 0.0, "steps": 0, "success": False, "max_reward": -math.inf,
             "start": np.asarray(o, dtype=np.float64)[:2].tolist()} for o in obs]  # fmt: skip
    seen = [[np.asarray(o).tolist()] if keep_observations else [] for o in obs]
    policy.reset(int(policy_seed))
    alive = list(range(len(envs)))
    shape = envs[0].action_space.shape
    while alive:
        batch = np.stack([check_observation(env_name, obs[i]) for i in alive])
        actions = np.asarray(policy.act(batch), dtype=np.float32).reshape(len(alive), *shape)
        if not np.all(np.isfinite(actions)):
            raise ValueError("the policy returned non-finite actions")
        still = []
        for r, i in enumerate(alive):
            obs[i], reward, terminated, truncated, info = envs[i].step(actions[r])
            row = rows[i]
            row["return"] += float(reward)
            row["steps"] += 1
            row["max_reward"] = max(row["max_reward"], float(reward))
            row["success"] = row["success"] or bool(info.get("success", False))
            if "collision" in info:
                row["collision"] = row.get("collision", False) or bool(info["collision"])
            if "coverage" in info:
                row["final_coverage"] = float(info["coverage"])
            if keep_observations:
                seen[i].append(np.asarray(obs[i]).tolist())
            if terminated or truncated:
                row["end"] = np.asarray(obs[i], dtype=np.float64)[:2].tolist()
            else:
                still.append(r)
        if len(still) < len(alive) and hasattr(policy, "keep") and still:
            policy.keep(still)
        alive = [alive[r] for r in still]
    for env in envs:
        env.close()
    if keep_observations:
        for row, o in zip(rows, seen, strict=True):
            row["observations"] = o
    return rows


def evaluate_batched(policy: Any, env_name: str, episodes: int, seed: int = 0, *, batch: int = 64,
                     env_options: Mapping[str, Any] | None = None,
                     keep_observations: bool = False) -> dict[str, Any]:  # fmt: skip
    """:func:`evaluate`'s protocol and output (the environment seeds of
    :func:`~diffusio.control.scores.episode_seed`, per-episode return, score, success, steps;
    ``seconds_per_decision`` per *batched* decision) with up to ``batch`` episodes run at once
    through :func:`rollout_batch`; each batch's policy seed is its first episode's."""
    from .scores import episode_seed

    if episodes < 1 or batch < 1:
        raise ValueError(f"episodes and batch must be >= 1, got {episodes}, {batch}")
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    before = len(getattr(policy, "planning_seconds", []))
    for first in range(0, episodes, batch):
        ids = range(first, min(first + batch, episodes))
        seeds = [episode_seed(seed, i)[0] for i in ids]
        rows += rollout_batch(policy, env_name, seeds, episode_seed(seed, first)[1],
                              env_options=env_options, keep_observations=keep_observations)
    seconds = time.perf_counter() - start
    decisions = max(1, sum(max(r["steps"] for r in rows[i : i + batch])
                           for i in range(0, len(rows), batch)))  # fmt: skip
    out = summarize(env_name, seed, rows, seconds / decisions,
                    list(getattr(policy, "planning_seconds", []))[before:])
    return {**out, "seconds": seconds}
