"""Ren, Lidard, Ankile, Simeonov, Agrawal, Majumdar, Burchfiel, Dai & Simchowitz 2025,
"Diffusion Policy Policy Optimization" (ICLR 2025, arXiv:2409.00588): the reproduction
``dppo-2024`` on LunarLanderContinuous.

A film-mlp Diffusion Policy (To = 1, Tp = Ta = 4, K = 20 DDPM steps) and a Gaussian MLP chunk
policy are behaviour-cloned from the same noisy-heuristic demonstrations for the same number of
steps; each is then fine-tuned with PPO through one loop (:mod:`~diffusio.control.dppo`): DPPO
over the last K' = 10 denoising steps, Gaussian-PPO over the one Gaussian. Several fine-tuning
seeds from the same pretrained models; the return of every iteration is the mean of each
environment's first episode with the policy being trained (stochastic, as in the paper).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..metrics.stats import mean_se, paired_difference
from .base import Reproduction, said, settings_hash
from .report import PaperNumber, Report
from .verdicts import NOT, PARTLY, REPRODUCED, claim_rule, compare, shown, win_verdict

__all__ = ["REPRODUCTION", "DPPO2024", "Settings", "competitive", "improves", "reproduce",
           "stable"]  # fmt: skip

_WHERE = "DPPO's official configs (irom-lab/dppo, cfg/gym/finetune/hopper-v2), read here"


@claim_rule("dppo-2024/improves", supports={"diff": 60.0, "se": 10.0},
            contradicts={"diff": 5.0, "se": 10.0})  # fmt: skip
def improves(diff: float, se: float) -> str:
    """Fine-tuning raises the return by ``diff`` over the pretrained start: clearly, else not."""
    return win_verdict(diff, se)


@claim_rule("dppo-2024/stable", supports={"collapsed": 0, "seeds": 3},
            contradicts={"collapsed": 2, "seeds": 3})  # fmt: skip
def stable(collapsed: int, seeds: int) -> str:
    """No fine-tuning seed ends clearly below its own start (all, one, more)."""
    if collapsed == 0 and seeds > 0:
        return REPRODUCED
    return PARTLY if collapsed == 1 and seeds > 2 else NOT


@claim_rule("dppo-2024/competitive", supports={"diff": -5.0, "se": 10.0},
            contradicts={"diff": -80.0, "se": 10.0})  # fmt: skip
def competitive(diff: float, se: float) -> str:
    """DPPO's final return minus the other's is not clearly negative (competitive)."""
    return REPRODUCED if compare(diff, se) >= 0 else NOT


@dataclass(frozen=True)
class Settings:
    """Every knob of the default run; ``QUICK`` and ``SMOKE`` override some of them."""

    seed: int = 0
    seeds: int = 3
    data_episodes: int = 150
    obs_horizon: int = 1
    pred_horizon: int = 4
    action_horizon: int = 4
    denoising_steps: int = 20
    ft_steps: int = 10
    hidden: int = 256
    depth: int = 3
    pretrain_steps: int = 3000
    batch_size: int = 256
    iterations: int = 30
    eval_episodes: int = 50
    n_envs: int = 8
    n_steps: int = 250
    update_epochs: int = 5
    minibatch: int = 500
    last: int = 3
    avoid: bool = True
    avoid_episodes: int = 200
    avoid_steps: int = 1500


class DPPO2024(Reproduction):
    NAME = "dppo-2024"
    TITLE = "Diffusion Policy Policy Optimization (Ren et al., 2025)"
    REFERENCE = ("Allen Z. Ren, Justin Lidard, Lars L. Ankile, Anthony Simeonov, Pulkit Agrawal, "
                 "Anirudha Majumdar, Benjamin Burchfiel, Hongkai Dai and Max Simchowitz. "
                 "ICLR 2025, arXiv:2409.00588.")  # fmt: skip
    Settings = Settings
    QUICK = {"seeds": 2, "pretrain_steps": 1500, "iterations": 4, "n_envs": 6, "n_steps": 200,
             "avoid_steps": 600, "avoid_episodes": 100, "eval_episodes": 10}  # fmt: skip
    SMOKE = {"seeds": 2, "data_episodes": 4, "pretrain_steps": 5, "hidden": 32, "depth": 1,
             "iterations": 1, "n_envs": 2, "n_steps": 8, "minibatch": 8, "last": 1,
             "denoising_steps": 4, "ft_steps": 2, "avoid_episodes": 4, "avoid_steps": 5,
             "eval_episodes": 2}  # fmt: skip
    PAPER_NUMBERS = (
        PaperNumber("denoising steps K / fine-tuned K'", "20 / 10", "Gym configs", True, _WHERE),
        PaperNumber("exploration / log-prob std floor", "0.1 / 0.1", "Gym configs", True, _WHERE),
        PaperNumber("noise clip", "3", "Gym configs", True, _WHERE),
        PaperNumber("gamma, GAE lambda, gamma_denoise", "0.99, 0.95, 0.99", "Gym configs", True,
                    _WHERE),
        PaperNumber("clip ratio (last step) / base", "0.01 / 0.001 (Hopper: 0.01 / 0.01)",
                    "PPODiffusion defaults, Gym configs", True, _WHERE),
        PaperNumber("Gaussian-PPO clip ratio", "0.1", "ppo_gaussian_mlp.yaml", True, _WHERE),
    )  # fmt: skip

    # ------------------------------------------------------------------ experiments
    def _pretrain(self, env: str, dataset: str, episodes: int, steps: int) -> tuple[Any, Any]:
        from ..control.datasets import make_dataset
        from ..control.diffusion_policy import DP_DEFAULTS, NET_DEFAULTS
        from ..control.dppo import pretrain_diffusion_policy
        from ..control.ppo import train_gaussian_policy
        from ..io import json_hash

        s = self.s
        data = make_dataset(dataset, seed=s.seed, episodes=episodes, progress=False)
        h = dict(obs_horizon=s.obs_horizon, pred_horizon=s.pred_horizon,
                 action_horizon=s.action_horizon)  # fmt: skip
        key = json_hash({**h, "data": str(data), "steps": steps, "hidden": s.hidden,
                         "depth": s.depth, "K": s.denoising_steps, "bs": s.batch_size,
                         "defaults": [DP_DEFAULTS, NET_DEFAULTS["film-mlp"]]})  # fmt: skip
        dp_run = self.cache.root / f"dppo-dp-{dataset}-{key}"
        g_run = self.cache.root / f"dppo-gauss-{dataset}-{key}"
        self.log(f"pretraining on {dataset} ({steps} steps) in {dp_run}")
        pretrain_diffusion_policy(
            data, dp_run, steps=steps, net_options={"hidden": s.hidden, "depth": s.depth},
            process_options={"num_steps": s.denoising_steps}, batch_size=s.batch_size,
            seed=s.seed, progress=self.progress, save_every=max(steps, 1), **h)  # fmt: skip
        train_gaussian_policy(data, g_run, steps=steps, batch_size=s.batch_size, hidden=s.hidden,
                              depth=s.depth, seed=s.seed, progress=self.progress, **h)  # fmt: skip
        return dp_run, g_run

    def run_experiments(self) -> dict[str, Any]:
        from ..control.dppo import finetune
        from ..io import read_jsonl

        s = self.s
        dp_run, g_run = self._pretrain("lunarlander", "lunarlander-heuristic", s.data_episodes,
                                       s.pretrain_steps)  # fmt: skip
        self.lap("pretraining")
        runs = self.cache.root / f"dppo-finetune-{settings_hash(s)}"  # resumable, off the report
        curves: dict[str, list] = {"DPPO": [], "Gaussian-PPO": []}
        evals: dict[str, Any] = {"pretrained": {}, "DPPO": [], "Gaussian-PPO": []}
        opts = dict(n_steps=s.n_steps, update_epochs=s.update_epochs, minibatch=s.minibatch)
        for name, run in (("DPPO", dp_run), ("Gaussian-PPO", g_run)):
            evals["pretrained"][name] = self._held_out(run)
            for k in range(s.seeds):
                out = runs / f"{name.lower()}-seed{k}"
                finetune(run, "lunarlander", s.iterations, out, seed=s.seed + k, envs=s.n_envs,
                         progress=self.progress, ft_steps=s.ft_steps, **opts)  # fmt: skip
                curves[name].append(read_jsonl(out / "metrics.jsonl"))
                evals[name].append(self._held_out(out))
                self.log(f"{name} seed {k}: held-out return {np.mean(evals['pretrained'][name]):.1f}"
                         f" -> {np.mean(evals[name][-1]):.1f}")  # fmt: skip
            self.lap(f"fine-tuning {name}")
        r: dict[str, Any] = {"curves": curves, "evals": evals}
        if s.avoid:
            r["avoid"] = self._avoid()
            self.lap("avoid exploration")
        return r

    def _held_out(self, run: Any) -> list[float]:
        """The returns of ``eval_episodes`` seeded LunarLander episodes of a run's policy
        (``load_policy``: the run's own sampler), the same episodes for every run."""
        from ..control.policies import evaluate_batched, load_policy

        n = self.s.eval_episodes
        r = evaluate_batched(load_policy(run), "lunarlander", n, self.s.seed + 2000, batch=n)
        return [e["return"] for e in r["episodes"]]

    def _avoid(self) -> dict[str, Any]:
        """First-iteration (pretrained, exploring) trajectories on point2d-avoid."""
        import torch

        from ..control.diffusion_policy import load_diffusion_policy_run
        from ..control.dppo import DPPOAgent, _seeds, _vector_env, rollout
        from ..control.ppo import GaussianAgent, load_gaussian_run, mlp

        s = self.s
        dp_run, g_run = self._pretrain("point2d-avoid", "point2d-avoid", s.avoid_episodes,
                                       s.avoid_steps)  # fmt: skip
        model, info = load_diffusion_policy_run(dp_run)
        net, ginfo = load_gaussian_run(g_run)
        from ..control.diffuser import LimitsNormalizer

        out = {}
        for name, agent, inf in (("DPPO", DPPOAgent(model, info, s.ft_steps), info),
                                 ("Gaussian-PPO", GaussianAgent(net, 1, s.action_horizon), ginfo)):
            norms = (LimitsNormalizer(**inf["obs_norm"]), LimitsNormalizer(**inf["action_norm"]))
            envs = _vector_env("point2d-avoid", 16, agent.to, agent.ta)
            seeds, g = _seeds(s.seed, 0, 16)
            b = rollout(agent, mlp(agent.obs_width, 1, 8, 1), envs, norms,
                        math.ceil(50 / agent.ta), seeds, torch.Generator().manual_seed(g),
                        keep_windows=True)  # fmt: skip
            envs.close()
            xy = b["windows"][:, :, -1, :2]  # (T, N, 2) positions at each decision
            out[name] = {"paths": np.transpose(xy, (1, 0, 2)).tolist(),
                         "returns": b["first_returns"]}  # fmt: skip
        return out

    # ------------------------------------------------------------------ numbers
    @staticmethod
    def _ms(values: Any) -> tuple[float, float]:
        xs = np.asarray(values, float)
        return mean_se(xs) if len(xs) else (math.nan, math.nan)

    def _summary(self, rows: list[dict[str, Any]]) -> dict[str, float]:
        s = self.s
        start = np.asarray(rows[0]["returns"], float)
        end = np.concatenate([np.asarray(r["returns"], float) for r in rows[-s.last:]])
        (m0, se0), (m1, se1) = self._ms(start), self._ms(end)
        d, se = m1 - m0, math.hypot(se0, se1)
        return {"start": m0, "end": m1, "diff": d, "se": se,
                "collapsed": bool(compare(d, se) < 0)}  # fmt: skip

    def _method(self, r: dict[str, Any], name: str) -> dict[str, Any]:
        per = [self._summary(rows) for rows in r["curves"][name]]
        diffs = np.array([p["diff"] for p in per])
        ses = np.array([p["se"] for p in per])
        seed_se = float(diffs.std(ddof=1) / math.sqrt(len(diffs))) if len(diffs) > 1 else math.nan
        episode_se = float(math.sqrt(np.sum(ses**2)) / len(ses))
        return {"per_seed": per, "diff": float(diffs.mean()),
                "se": max(seed_se, episode_se),
                "end": float(np.mean([p["end"] for p in per])),
                "end_se": float(math.sqrt(sum(self._ms(np.concatenate(
                    [np.asarray(x["returns"], float) for x in rows[-self.s.last:]]))[1] ** 2
                    for rows in r["curves"][name])) / len(per)),
                "start": float(np.mean([p["start"] for p in per])),
                "collapsed": int(sum(p["collapsed"] for p in per))}  # fmt: skip

    def _held(self, r: dict[str, Any], name: str) -> dict[str, Any]:
        """Held-out evaluation of ``name``: per seed the paired change over the same episodes
        (fine-tuned minus pretrained), its mean over seeds with the larger of the seed spread
        and the pooled episode error, and how many seeds end clearly below the start."""
        base = np.asarray(r["evals"]["pretrained"][name], float)
        per = [paired_difference(np.asarray(x, float), base) for x in r["evals"][name]]
        diffs, ses = np.array([d for d, _ in per]), np.array([e for _, e in per])
        seed_se = float(diffs.std(ddof=1) / math.sqrt(len(diffs))) if len(diffs) > 1 else math.nan
        pooled = float(math.sqrt(np.sum(ses**2)) / len(ses))
        return {"start": float(base.mean()), "start_se": mean_se(base)[1],
                "end": float(np.mean([np.mean(x) for x in r["evals"][name]])),
                "per_seed": [(float(d), float(e)) for d, e in per], "diff": float(diffs.mean()),
                "se": max(seed_se, pooled) if math.isfinite(seed_se) else pooled,
                "collapsed": int(sum(compare(d, e) < 0 for d, e in per))}  # fmt: skip

    def add_claims(self, report: Report, r: dict[str, Any]) -> None:
        d, g = self._held(r, "DPPO"), self._held(r, "Gaussian-PPO")
        n, e = self.s.seeds, self.s.eval_episodes
        report.claim(*said(__name__, "improves"),
                     f"DPPO held-out return {d['start']:.1f} -> {d['end']:.1f} ({n} seeds x {e} "
                     "episodes, paired)",
                     f"{d['diff']:+.1f} ± {d['se']:.1f}: {shown(d['diff'], d['se'])}",
                     improves(diff=d["diff"], se=d["se"]))  # fmt: skip
        report.claim(*said(__name__, "stable"),
                     f"DPPO: {d['collapsed']} of {n} seeds clearly below their start",
                     "per-seed changes " + ", ".join(f"{x:+.0f} ± {y:.0f}" for x, y in d["per_seed"]),
                     stable(collapsed=d["collapsed"], seeds=n))  # fmt: skip
        pairs = [paired_difference(np.asarray(a, float), np.asarray(b, float))
                 for a, b in zip(r["evals"]["DPPO"], r["evals"]["Gaussian-PPO"], strict=True)]
        diff = float(np.mean([x for x, _ in pairs]))
        se = float(math.sqrt(sum(y**2 for _, y in pairs)) / len(pairs))
        if len(pairs) > 1:
            se = max(se, float(np.std([x for x, _ in pairs], ddof=1) / math.sqrt(len(pairs))))
        report.claim(*said(__name__, "competitive"),
                     f"fine-tuned held-out return DPPO {d['end']:.1f} vs Gaussian-PPO {g['end']:.1f}",
                     f"{diff:+.1f} ± {se:.1f}: {shown(diff, se)}",
                     competitive(diff=diff, se=se))  # fmt: skip
        report.claim(*said(__name__, "gaussian"),
                     f"Gaussian-PPO held-out {g['start']:.1f} -> {g['end']:.1f}; {g['collapsed']} "
                     f"of {n} seeds clearly below their start",
                     "per-seed changes " + ", ".join(f"{x:+.0f} ± {y:.0f}" for x, y in g["per_seed"]),
                     stable(collapsed=g["collapsed"], seeds=n), main=False)  # fmt: skip

    # ------------------------------------------------------------------ sections
    def add_sections(self, report: Report, r: dict[str, Any]) -> None:
        report.section("Return against environment steps", self.prose("results", r))
        rows = []
        for name in r["curves"]:
            m = self._method(r, name)
            for k, p in enumerate(m["per_seed"]):
                rows.append([name, k, f"{p['start']:.1f}", f"{p['end']:.1f}",
                             f"{p['diff']:+.1f} ± {p['se']:.1f}",
                             "yes" if p["collapsed"] else "no"])  # fmt: skip
        report.table(["method", "seed", "iteration 0 (pretrained)",
                      f"last {self.s.last} iterations", "change", "clearly below start"], rows)  # fmt: skip
        report.figure(self.curve_figure(r), "returns.png",
                      "Return of the policy being fine-tuned (mean of each environment's first "
                      "episode per iteration) against environment steps; thin lines are seeds, "
                      "the dashed line the pretrained level (iteration 0, all seeds).")  # fmt: skip
        if "avoid" in r:
            report.section("Exploration on point2d-avoid", self.prose("avoid", r))
            report.figure(self.avoid_figure(r), "avoid.png",
                          "point2d-avoid, first-iteration trajectories (16 environments) of the "
                          "pretrained policies exploring as PPO would sample them: the diffusion "
                          "policy (DPPO) and the Gaussian MLP (Gaussian-PPO); the obstacle in "
                          "grey, start at the bottom, goal at the top.")  # fmt: skip

    def curve_figure(self, r: dict[str, Any]) -> Any:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        starts = []
        for name, color in (("DPPO", "C0"), ("Gaussian-PPO", "C1")):
            curves = r["curves"][name]
            for rows in curves:
                xs = [row["env_steps"] for row in rows]
                ys = [row["return"] if row["return"] is not None else np.nan for row in rows]
                ax.plot(xs, ys, color=color, alpha=0.35, lw=1)
                starts.append(ys[0])
            n = min(len(c) for c in curves)
            xs = [np.mean([c[i]["env_steps"] for c in curves]) for i in range(n)]
            ys = [np.nanmean([c[i]["return"] if c[i]["return"] is not None else np.nan
                              for c in curves]) for i in range(n)]  # fmt: skip
            ax.plot(xs, ys, color=color, lw=2, label=name)
        ax.axhline(np.nanmean(starts[: len(r["curves"]["DPPO"])]), color="k", ls="--", lw=1,
                   label="pretrained DP (it. 0)")  # fmt: skip
        ax.set_xlabel("environment steps")
        ax.set_ylabel("episode return")
        ax.legend(fontsize=7)
        fig.tight_layout()
        return fig

    def avoid_figure(self, r: dict[str, Any]) -> Any:
        import matplotlib.pyplot as plt
        from matplotlib.patches import Circle

        from ..control.envs import AVOID_OBSTACLE

        fig, axes = plt.subplots(1, 2, figsize=(6.4, 3.4))
        for ax, name in zip(axes, ("DPPO", "Gaussian-PPO"), strict=True):
            ax.add_patch(Circle(AVOID_OBSTACLE[:2], AVOID_OBSTACLE[2], color="0.7"))
            for p in r["avoid"][name]["paths"]:
                p = np.asarray(p)
                ax.plot(p[:, 0], p[:, 1], lw=1)
            ax.plot(0, -0.8, "ko"), ax.plot(0, 0.8, "k*", ms=10)
            ax.set_xlim(-1.1, 1.1), ax.set_ylim(-1.1, 1.1), ax.set_aspect("equal")
            ax.set_title(name, fontsize=9)
        fig.tight_layout()
        return fig

    def text_values(self, r: dict[str, Any]) -> dict[str, Any]:
        d, g = self._method(r, "DPPO"), self._method(r, "Gaussian-PPO")
        steps = r["curves"]["DPPO"][0][-1]["env_steps"]
        hd, hg = self._held(r, "DPPO"), self._held(r, "Gaussian-PPO")
        out = {"d": {k: f"{v:.1f}" for k, v in d.items() if isinstance(v, float)},
               "g": {k: f"{v:.1f}" for k, v in g.items() if isinstance(v, float)},
               "hd": {k: f"{v:.1f}" for k, v in hd.items() if isinstance(v, float)},
               "hg": {k: f"{v:.1f}" for k, v in hg.items() if isinstance(v, float)},
               "env_steps": steps, "decisions": self.s.n_envs * self.s.n_steps,
               "pretrain_s": f"{self.stage_seconds.get('pretraining', 0.0):.0f}"}  # fmt: skip
        if "avoid" in r:
            sides = {}
            for name, x in r["avoid"].items():
                xs = [np.asarray(p)[:, 0] for p in x["paths"]]
                left = sum(float(np.min(p)) < -0.2 for p in xs)
                right = sum(float(np.max(p)) > 0.2 for p in xs)
                sides[name] = f"{left} left / {right} right of {len(xs)}"
            out["sides"] = sides
        else:
            out["sides"] = {"DPPO": "-", "Gaussian-PPO": "-"}
        return out

    def record_metrics(self, r: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for name in r["curves"]:
            m = self._method(r, name)
            out[name] = {**{k: v for k, v in m.items() if k != "per_seed"},
                         "per_seed": m["per_seed"],
                         "curves": [[{"env_steps": x["env_steps"], "return": x["return"]}
                                     for x in rows] for rows in r["curves"][name]]}  # fmt: skip
            out[name]["held_out"] = self._held(r, name)
            out[name]["held_out_returns"] = r["evals"][name]
        extra = {"pretrained_held_out_returns": r["evals"]["pretrained"]}
        if "avoid" in r:
            out["avoid_returns"] = {k: v["returns"] for k, v in r["avoid"].items()}
        return {"methods": out, **extra}


REPRODUCTION = DPPO2024
reproduce = DPPO2024.run
