"""Diffuser's planning cost: wall time per decision and the score each way of planning reaches,
in one run on one trained model and the same episodes.

    nice -n 19 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/planning.py \\
        [--quick] [--run RUN] [--out benchmarks/results/planning.json]

The model is diffuser-2022's default PointMaze U-Maze Diffuser (H = 128, T = 64, width 32,
multipliers (1, 2, 4), 4,000 steps on 100,000 steps of data; the shared model cache, so a
finished ``diffusio reproduce diffuser-2022`` run is reused, else it is trained first), or any
Diffuser run given with ``--run``. The ways of planning (:data:`WAYS`):

* ``open-loop`` -- the paper's Maze2D protocol: one plan by the full ancestral chain, then the
  PD tracker (``plan_maze2d.py``).
* ``replan-ddpm`` -- a new full-chain plan every ``replan_every`` steps from the current state.
* ``replan-ddim`` / ``replan-dpm`` -- the same with DDIM (eta 0) or DPM-Solver++(2M) at fewer
  steps.
* ``replan-warm`` -- every ``replan_every`` steps, the previous plan shifted by the steps done
  and re-noised to the time of the ancestral grid's last ``warm_steps`` evaluations, which are
  the only ones run (:meth:`~diffusio.control.diffuser.DiffuserPlanner.plan`'s warm start,
  ``times=``).

Every way meets the same episodes (:func:`~diffusio.control.scores.episode_seed`), so score
differences are paired over episodes (mean and its standard error). Seconds per decision are
the policy's ``act`` time (planning included, the simulator excluded) averaged over all
decisions; the speed-up of warm starts is the ratio of two such means measured in this run.
One torch thread.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment  # noqa: E402

from diffusio.io import write_json_atomic  # noqa: E402
from diffusio.metrics.stats import mean_se  # noqa: E402

THREADS = 1
#: name -> (sampler, steps or None = all T, replan every, warm steps)
WAYS: dict[str, tuple[str, int | None, int | None, int | None]] = {
    "open-loop": ("ddpm", None, None, None),
    "replan-ddpm": ("ddpm", None, 16, None),
    "replan-ddim": ("ddim", 16, 16, None),
    "replan-dpm": ("dpm-solver++", 10, 16, None),
    "replan-warm": ("ddpm", None, 16, 16),
}
SETTINGS = {
    "default": {"episodes": 20, "maze": "umaze", "seed": 0},
    "quick": {"episodes": 2, "maze": "umaze", "seed": 0},
}


def default_run(quick: bool, log: Any) -> Path:
    """diffuser-2022's U-Maze model (its default run's, or its smoke-size one with --quick),
    from the shared model cache, trained if missing."""
    from diffusio.papers.diffuser_2022 import Diffuser2022

    cls = Diffuser2022
    settings = cls.settings(overrides=cls.SMOKE if quick else {})
    repro = cls(settings, Path("/tmp") / "planning-benchmark", progress=not quick)
    maze, horizon = settings.mazes[0], settings.horizons[0]
    log(f"model: diffuser-2022's {maze} Diffuser, H = {horizon} (trained if not cached)")
    run, _ = repro._train_diffuser(maze, horizon, repro._dataset(maze))
    return Path(run)


def ways_for(quick: bool) -> dict[str, tuple[str, int | None, int | None, int | None]]:
    if not quick:
        return WAYS
    small = {"replan-ddim": ("ddim", 2, 4, None), "replan-dpm": ("dpm-solver++", 2, 4, None),
             "replan-ddpm": ("ddpm", None, 4, None), "replan-warm": ("ddpm", None, 4, 2)}
    return {**WAYS, **small}


def run(run_dir: Path, settings: dict[str, Any], quick: bool, log: Any) -> dict[str, Any]:
    from diffusio.control.policies import evaluate, load_policy

    env = f"pointmaze-{settings['maze']}"
    rows: dict[str, Any] = {}
    for name, (sampler, steps, every, warm) in ways_for(quick).items():
        policy = load_policy(run_dir, sampler=sampler, steps=steps, replan_every=every,
                             warm_steps=warm)  # fmt: skip
        start = time.perf_counter()
        r = evaluate(policy, env, settings["episodes"], seed=settings["seed"])
        scores = [e["score"] for e in r["episodes"]]
        m, se = mean_se(scores)
        rows[name] = {
            "sampler": sampler, "steps": steps, "replan_every": every, "warm_steps": warm,
            "seconds_per_decision": r["seconds_per_decision"],
            "seconds_per_plan": float(np.mean(r["planning_seconds"])),
            "plans": len(r["planning_seconds"]), "score": m, "score_se": se,
            "success": r["success_rate"], "scores": scores,
            "wall_seconds": time.perf_counter() - start,
        }  # fmt: skip
        log(f"{name}: {r['seconds_per_decision'] * 1e3:.2f} ms/decision, score {m:.1f} +/- {se:.1f}")
    comparisons = {}
    for name in rows:
        if name == "replan-ddpm":
            continue
        diff = np.array(rows[name]["scores"]) - np.array(rows["replan-ddpm"]["scores"])
        d, d_se = mean_se(diff.tolist())
        comparisons[name] = {
            "speedup_vs_replan_ddpm": rows["replan-ddpm"]["seconds_per_decision"]
            / rows[name]["seconds_per_decision"],
            "score_diff_vs_replan_ddpm": d, "score_diff_se": d_se,
            "equal_score_within_1se": bool(math.isfinite(d_se) and abs(d) <= d_se),
        }  # fmt: skip
    return {"ways": rows, "comparisons": comparisons}


def markdown(result: dict[str, Any]) -> str:
    lines = ["| way | sampler, steps | replan every | s / decision | s / plan | score | "
             "success | speed-up vs full replanning | score diff (paired) |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, row in result["ways"].items():
        c = result["comparisons"].get(name)
        speed = f"{c['speedup_vs_replan_ddpm']:.2f}x" if c else "1 (reference)"
        diff = f"{c['score_diff_vs_replan_ddpm']:+.1f} +/- {c['score_diff_se']:.1f}" if c else ""
        steps = "all T" if row["steps"] is None else row["steps"]
        warm = f", warm tail {row['warm_steps']}" if row["warm_steps"] else ""
        lines.append(
            f"| {name} | {row['sampler']} {steps}{warm} | {row['replan_every'] or 'never'} | "
            f"{row['seconds_per_decision'] * 1e3:.2f} ms | {row['seconds_per_plan']:.3f} | "
            f"{row['score']:.1f} +/- {row['score_se']:.1f} | {row['success']:.0%} | {speed} | "
            f"{diff} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny settings (seconds; for the test)")
    ap.add_argument("--run", default=None, help="a trained Diffuser run (default: diffuser-2022's)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "planning.json"))
    ap.add_argument("--episodes", type=int, default=None, help="episodes per way")
    args = ap.parse_args(argv)
    torch.set_num_threads(THREADS)
    settings = dict(SETTINGS["quick" if args.quick else "default"])
    if args.episodes is not None:
        if args.episodes < 2:
            ap.error(f"--episodes must be at least 2 (a standard error); got {args.episodes}")
        settings["episodes"] = args.episodes
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:6.1f}s] {msg}", file=sys.stderr, flush=True)

    run_dir = Path(args.run) if args.run else default_run(args.quick, log)
    if not (run_dir / "diffuser.json").is_file():
        print(f"error: {run_dir}: not a Diffuser run (no diffuser.json)", file=sys.stderr)
        return 2
    result: dict[str, Any] = {
        "benchmark": "planning", "quick": args.quick,
        "command": "benchmarks/planning.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "environment": environment(THREADS), "settings": settings, "run": str(run_dir),
        "setup": {
            "env": f"pointmaze-{settings['maze']} (fixed goal), the same episodes for every way",
            "timing": "policy.act seconds (planning included, simulator excluded) averaged "
                      "over all decisions of all episodes; one thread",
            "score": "D4RL-normalised score per episode; differences paired over episodes",
        },
    }  # fmt: skip
    result.update(run(run_dir, settings, args.quick, log))
    result["seconds"] = time.perf_counter() - t0
    write_json_atomic(args.out, result, strict=True)
    print(markdown(result))
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
