"""One policy interface for every trained planner: :func:`load_policy` and :func:`evaluate`.

A policy has ``reset(seed)`` and ``act(observation) -> action`` for the environment it was
trained on (any gymnasium user can call it in their own loop). :func:`evaluate` is the
runner (diffusion_policy's ``env_runner.run(policy) -> dict``): episodes seeded by
:func:`~diffusio.control.scores.episode_seed`, per-episode return, D4RL's normalised score,
success and steps, and the planning time per decision where the policy records it.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["POLICY_KINDS", "evaluate", "load_policy", "summarize"]

#: Run descriptions load_policy understands: the file it reads and the policy it builds.
POLICY_KINDS = {
    "diffuser.json": "Diffuser (maze: plan once, PD tracker; lander: value-guided replanning)",
    "bc.json": "a baseline of diffusio.control.baselines (BC, %BC, GCBC)",
    "decision_diffuser.json": "Decision Diffuser or CondDiffuser (return / skill CFG, replanning)",
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
    """The runner's output from per-episode rows (``return``, ``steps``, ``success``): each
    row's normalised score, the means with their standard errors and the success rate."""
    from .scores import normalized_score

    returns = np.array([r["return"] for r in rows])
    scores = np.asarray(normalized_score(env_name, returns)).reshape(-1)
    for row, score in zip(rows, scores, strict=True):
        row["score"] = float(score)
    r_mean, r_se = _mean_se(returns)
    s_mean, s_se = _mean_se(scores)
    return {
        "env": env_name, "seed": seed, "episodes": rows, "return_mean": r_mean,
        "return_se": r_se, "score_mean": s_mean, "score_se": s_se,
        "success_rate": float(np.mean([r["success"] for r in rows])),
        "seconds_per_decision": seconds_per_decision, "planning_seconds": planning_seconds,
    }  # fmt: skip


def evaluate(
    policy: Any,
    env_name: str,
    episodes: int,
    seed: int = 0,
    *,
    env_options: dict[str, Any] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Run ``episodes`` episodes of ``policy`` in ``env_name`` (each until terminated or
    truncated) and return ``{"episodes": [{"return", "score", "success", "steps"}, ...],
    "return_mean", "return_se", "score_mean", "score_se", "success_rate",
    "seconds_per_decision", "planning_seconds"}``; a bad observation from the environment or an
    action of the wrong shape raises one-line ValueErrors."""
    from tqdm.auto import tqdm

    from .envs import check_observation, make_env
    from .scores import episode_seed

    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    env = make_env(env_name, **dict(env_options or {}))
    shape = env.action_space.shape
    rows, decisions, seconds = [], 0, 0.0
    for i in tqdm(range(episodes), desc=f"rollout {env_name}", disable=not progress):
        env_seed, policy_seed = episode_seed(seed, i)
        obs, _ = env.reset(seed=env_seed)
        policy.reset(policy_seed)
        total, steps, success, done = 0.0, 0, False, False
        while not done:
            check_observation(env_name, obs)
            start = time.perf_counter()
            action = np.asarray(policy.act(obs), dtype=np.float32)
            seconds += time.perf_counter() - start
            decisions += 1
            if action.shape != shape or not np.all(np.isfinite(action)):
                raise ValueError(f"the policy's action must be {shape} finite values, got "
                                 f"{action.shape}")  # fmt: skip
            obs, reward, terminated, truncated, info = env.step(action)
            total, steps = total + float(reward), steps + 1
            success = success or bool(info.get("success", info.get("is_success", False)))
            done = terminated or truncated
        rows.append({"return": total, "steps": steps, "success": success})
    env.close()
    return summarize(env_name, seed, rows, seconds / max(decisions, 1),
                     list(getattr(policy, "planning_seconds", [])))
