"""Chi, Xu, Feng, Cousineau, Du, Burchfiel, Tedrake & Song 2023, "Diffusion Policy: Visuomotor
Policy Learning via Action Diffusion" (RSS 2023, arXiv:2303.04137): the reproduction
``diffusion-policy-2023``.

Two tasks, each with demonstrations generated here (:mod:`~diffusio.control.datasets`):
``point2d-avoid``, the bimodal task (pass one obstacle on the left or the right, 50/50), and
Push-T with keypoint observations, demonstrated by the sampling-based expert of
:mod:`~diffusio.control.pusht_expert`. On both: Diffusion Policy (the FiLM 1-D U-Net,
To / Tp / Ta, receding horizon; :mod:`~diffusio.control.diffusion_policy`), the same model
without action chunking (Ta = 1), MSE behaviour cloning single-step and chunked and a
single-step Gaussian-mixture policy (:mod:`~diffusio.control.chunk_baselines`), all on the same
windows and evaluated on the same seeded episodes (:func:`~diffusio.control.policies.
evaluate_batched`). Push-T is scored the paper's way: the maximum over the episode of
clip(coverage / 0.95, 0, 1), with success (coverage > 0.95) and final coverage next to it.
Inference latency per chunk: DDPM with 100 steps against DDIM and DPM-Solver++ with 10.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..io import json_hash
from ..metrics.stats import binomial_se, difference_se, paired_difference
from .base import Reproduction, said
from .report import PaperNumber, Report
from .verdicts import NOT, PARTLY, REPRODUCED, claim_rule, compare, shown, win_verdict

__all__ = ["REPRODUCTION", "DiffusionPolicy2023", "Settings", "fast_and_equal", "multimodal",
           "reproduce", "wins"]  # fmt: skip

_WHERE = ("issue 16's summary of the paper (Table 1 and Sec. 5); the stored copies of "
          "arXiv:2303.04137 searched here did not return the table itself")  # fmt: skip
#: method -> (model key, action horizon override)
METHODS: dict[str, tuple[str, int | None]] = {
    "Diffusion Policy": ("dp", None),
    "Diffusion Policy, Ta = 1": ("dp", 1),
    "MSE-BC, chunked": ("mse", None),
    "MSE-BC, single step": ("mse1", None),
    "GMM, single step": ("gmm1", None),
}
SAMPLERS = (("DDPM-100", "ddpm", 100), ("DDIM-10", "ddim", 10), ("DPM-Solver++-10", "dpm-solver++", 10))


@claim_rule("diffusion-policy-2023/wins", supports={"diff": 0.3, "se": 0.05},
            contradicts={"diff": 0.02, "se": 0.05})  # fmt: skip
def wins(diff: float, se: float) -> str:
    """A beats B by ``diff`` (paired over the same episodes, ``se``): clearly, else not shown."""
    return win_verdict(diff, se)


@claim_rule("diffusion-policy-2023/multimodal", supports={"success": 0.95, "se": 0.02, "min_mode": 0.45},
            contradicts={"success": 0.4, "se": 0.05, "min_mode": 0.0})  # fmt: skip
def multimodal(success: float, se: float, min_mode: float) -> str:
    """Success at least 0.9 (not clearly below it) and both modes used (each >= 30% of the
    episodes): both (reproduced), one of them (partly), neither (not)."""
    ok = [compare(success - 0.9, se) >= 0, min_mode >= 0.3]
    return REPRODUCED if all(ok) else PARTLY if any(ok) else NOT


@claim_rule("diffusion-policy-2023/fast-and-equal", supports={"diff": 0.0, "se": 0.03, "speedup": 9.0},
            contradicts={"diff": -0.3, "se": 0.03, "speedup": 1.0})  # fmt: skip
def fast_and_equal(diff: float, se: float, speedup: float) -> str:
    """The few-step sampler's score is not clearly below DDPM-100's (``diff`` within the noise
    or better) and it is at least 5x faster per chunk: both, one, or neither."""
    ok = [compare(diff, se) >= 0, speedup >= 5.0]
    return REPRODUCED if all(ok) else PARTLY if any(ok) else NOT


@dataclass(frozen=True)
class Settings:
    """Every knob of the default run; ``QUICK`` and ``SMOKE`` override some of them."""

    seed: int = 0
    obs_horizon: int = 2
    pred_horizon: int = 16
    action_horizon: int = 8
    down_dims: tuple[int, ...] = (32, 64, 128)
    step_dim: int = 32
    batch_size: int = 128
    avoid_episodes: int = 200
    avoid_steps: int = 2000
    avoid_eval: int = 100
    pusht_episodes: int = 100
    pusht_steps: int = 5000
    pusht_eval: int = 50
    pusht_max_steps: int = 300
    baseline_steps: int = 3000
    latency_plans: int = 20
    strip_every: int = 30


class DiffusionPolicy2023(Reproduction):
    NAME = "diffusion-policy-2023"
    TITLE = "Diffusion Policy: Visuomotor Policy Learning via Action Diffusion (Chi et al., 2023)"
    REFERENCE = ("Cheng Chi, Zhenjia Xu, Siyuan Feng, Eric Cousineau, Yilun Du, Benjamin "
                 "Burchfiel, Russ Tedrake and Shuran Song. RSS 2023, arXiv:2303.04137.")  # fmt: skip
    Settings = Settings
    QUICK = {"avoid_episodes": 100, "avoid_steps": 700, "avoid_eval": 40, "pusht_episodes": 10,
             "pusht_steps": 600, "pusht_eval": 10, "baseline_steps": 600, "latency_plans": 5}  # fmt: skip
    SMOKE = {"avoid_episodes": 4, "avoid_steps": 4, "avoid_eval": 4, "pusht_episodes": 1,
             "pusht_steps": 4, "pusht_eval": 2, "pusht_max_steps": 16, "baseline_steps": 4,
             "latency_plans": 1, "batch_size": 8, "down_dims": (8, 16, 32), "step_dim": 8,
             "strip_every": 8}  # fmt: skip
    PAPER_NUMBERS = (
        PaperNumber("Push-T (state), Diffusion Policy CNN, max / mean of the last 10 checkpoints",
                    "0.95 / 0.91", "Table 1", False, _WHERE),
        PaperNumber("Push-T (state), LSTM-GMM / IBC / BET", "0.67/0.61, 0.90/0.84, 0.79/0.70",
                    "Table 1", False, _WHERE),
        PaperNumber("Push-T (image) official weights re-evaluated by LeRobot: average max "
                    "overlap / success over 500 episodes", "0.957 / 64.2%",
                    "huggingface.co/lerobot/diffusion_pusht model card", True,
                    "the score is not a success rate: the same episodes succeed 64% of the time"),
        PaperNumber("horizons To / Tp / Ta; DDPM training steps; DDIM inference steps",
                    "2 / 16 / 8; 100; 10 (8-10)", "Sec. 4 / App. A", False, _WHERE),
    )  # fmt: skip

    # ------------------------------------------------------------------ experiments
    def _run(self, label: str, key: Any) -> Any:
        from ..control.diffusion_policy import DP_DEFAULTS

        return self.cache.root / f"{label}-{json_hash([key, DP_DEFAULTS])}"

    def _models(self, data: Any, task: str) -> dict[str, Any]:
        from ..control.chunk_baselines import chunk_baseline_policy, train_chunk_baseline
        from ..control.diffusion_policy import train_diffusion_policy

        s = self.s
        tag = f"{data.manifest.get('name')}-seed{s.seed}-{len(data)}"
        H = {"obs_horizon": s.obs_horizon, "pred_horizon": s.pred_horizon,
             "action_horizon": s.action_horizon}  # fmt: skip
        steps = s.avoid_steps if task == "avoid" else s.pusht_steps
        rec = {**H, "steps": steps, "batch_size": s.batch_size, "seed": s.seed,
               "net_options": {"down_dims": list(s.down_dims), "step_dim": s.step_dim}}  # fmt: skip
        run = self._run(f"dp-{task}", {**rec, "data": tag})
        self.log(f"training Diffusion Policy on {task} ({steps} steps) in {run}")
        model, info = train_diffusion_policy(data, run, progress=self.progress, **rec)
        out = {"dp": (model, info, str(run))}
        one = {"obs_horizon": 1, "pred_horizon": 1, "action_horizon": 1}
        for key, kind, h in (("mse", "mse", H), ("mse1", "mse", one), ("gmm1", "gmm", one)):
            brec = {**h, "steps": s.baseline_steps, "seed": s.seed}
            brun = self._run(f"cb-{task}-{key}", {**brec, "kind": kind, "data": tag})
            train_chunk_baseline(data, brun, kind, progress=self.progress, **brec)
            out[key] = chunk_baseline_policy(brun)
        return out

    def _policy(self, models: dict[str, Any], key: str, ta: int | None, **options: Any) -> Any:
        from ..control.diffusion_policy import DiffusionPolicy

        if key != "dp":
            return models[key]
        model, info, _ = models["dp"]
        return DiffusionPolicy(model, info, action_horizon=ta, **options)

    def _evaluate(self, models: dict, env: str, episodes: int, env_options: dict) -> dict:
        from ..control.policies import evaluate_batched

        out = {}
        for name, (key, ta) in METHODS.items():
            r = evaluate_batched(self._policy(models, key, ta), env, episodes, self.s.seed + 1000,
                                 batch=episodes, env_options=env_options,
                                 keep_observations=env == "point2d-avoid")  # fmt: skip
            out[name] = r
            self.log(f"{env} {name}: score {r['score_mean']:.3f}, success {r['success_rate']:.2f}")
        return out

    def run_experiments(self) -> dict[str, Any]:
        from ..control.datasets import load_dataset, make_dataset

        s, root = self.s, self.cache.root.parent
        avoid = load_dataset(make_dataset("point2d-avoid", seed=s.seed, episodes=s.avoid_episodes,
                                          cache_dir=root, progress=self.progress))  # fmt: skip
        pusht = load_dataset(make_dataset("pusht", seed=s.seed, episodes=s.pusht_episodes,
                                          cache_dir=root, progress=self.progress))  # fmt: skip
        self.lap("data")
        m_avoid, m_pusht = self._models(avoid, "avoid"), self._models(pusht, "pusht")
        self.lap("training")
        r_avoid = self._evaluate(m_avoid, "point2d-avoid", s.avoid_eval, {})
        for r in r_avoid.values():
            r["modes"] = modes([e.pop("observations") for e in r["episodes"]])
        self.lap("eval: point2d-avoid")
        options = {"max_episode_steps": s.pusht_max_steps}
        r_pusht = self._evaluate(m_pusht, "pusht", s.pusht_eval, options)
        self.lap("eval: pusht")
        samplers = self._samplers(m_pusht, options, r_pusht["Diffusion Policy"])
        return {"avoid": r_avoid, "pusht": r_pusht, "samplers": samplers,
                "strip": self._strip(m_pusht, options),
                "expert": {k: pusht.manifest.get(k) for k in
                           ("score_mean", "success_rate", "final_coverage_mean")},
                "dp_runs": {"point2d-avoid": m_avoid["dp"][2], "pusht": m_pusht["dp"][2]}}  # fmt: skip

    def _samplers(self, models: dict, options: dict, main: dict) -> dict[str, Any]:
        """Per-chunk latency (one environment, batch 1) and the Push-T score of each sampler
        (``main``, the main evaluation, for the run's own sampler: the same policy)."""
        import time

        from ..control.policies import evaluate_batched

        s, out, info = self.s, {}, models["dp"][1]
        window = np.zeros((1, s.obs_horizon, models["dp"][1]["obs_dim"])) + 256.0
        for label, sampler, steps in SAMPLERS:
            pol = self._policy(models, "dp", None, sampler=sampler, steps=steps)
            pol.plan(window)  # warm-up
            t0 = time.perf_counter()
            for _ in range(s.latency_plans):
                pol.plan(window)
            latency = (time.perf_counter() - t0) / s.latency_plans
            if (sampler, steps) == (info["sampler"], info["sampler_steps"]):
                r = main
            else:
                r = evaluate_batched(pol, "pusht", s.pusht_eval, s.seed + 1000, batch=s.pusht_eval,
                                     env_options=options)  # fmt: skip
            out[label] = {"latency": latency, "result": r}
            self.log(f"{label}: {latency * 1e3:.1f} ms per chunk")
        self.lap("samplers")
        return out

    def _strip(self, models: dict, options: dict) -> list[Any]:
        from ..control.policies import evaluate

        r = evaluate(self._policy(models, "dp", None), "pusht", 1, self.s.seed + 1000,
                     env_options={**options, "render_mode": "rgb_array", "render_size": 96},
                     frames=self.s.strip_every)  # fmt: skip
        return [np.asarray(f) for f in r["frames"]]

    # ------------------------------------------------------------------ claims
    def _score(self, r: dict, name: str, key: str = "score") -> np.ndarray:
        return np.asarray([e[key] for e in r[name]["episodes"]], float)

    def _diff(self, r: dict, a: str, b: str, key: str = "score") -> tuple[float, float]:
        return paired_difference(self._score(r, a, key), self._score(r, b, key))

    def _best_mse(self, r: dict) -> str:
        return max(("MSE-BC, chunked", "MSE-BC, single step"), key=lambda n: r[n]["score_mean"])

    def add_claims(self, report: Report, r: dict[str, Any]) -> None:
        a, p = r["avoid"], r["pusht"]
        dp = a["Diffusion Policy"]
        succ, se = dp["score_mean"], dp["score_se"]
        m = dp["modes"]
        report.claim(*said(__name__, "multimodal"),
                     f"success without collision {succ:.0%} ± {se:.0%}; left {m['left']:.0%}, "
                     f"right {m['right']:.0%} ({self.s.avoid_eval} episodes)",
                     f"{succ - 0.9:+.0%} vs 90%", multimodal(success=succ, se=se,
                                                            min_mode=min(m["left"], m["right"])))  # fmt: skip
        for key, res, ref in (("averages", a, self._best_mse(a)), ("pusht", p, self._best_mse(p))):
            d, dse = self._diff(res, "Diffusion Policy", ref)
            mine = res["Diffusion Policy"]["score_mean"]
            report.claim(*said(__name__, key),
                         f"Diffusion Policy {mine:.3f} vs {ref} {res[ref]['score_mean']:.3f}",
                         f"{d:+.3f} ± {dse:.3f} (paired): {shown(d, dse)}", wins(diff=d, se=dse))  # fmt: skip
        sm = r["samplers"]
        ddpm = sm["DDPM-100"]
        ddim, dpm = sm["DDIM-10"], sm["DPM-Solver++-10"]

        def scores(x: dict) -> list[float]:
            return [e["score"] for e in x["result"]["episodes"]]

        d, dse = paired_difference(scores(ddim), scores(ddpm))
        d2, se2 = paired_difference(scores(dpm), scores(ddpm))
        speed = ddpm["latency"] / ddim["latency"]
        report.claim(*said(__name__, "inference"),
                     f"DDIM-10 {ddim['result']['score_mean']:.3f} vs DDPM-100 "
                     f"{ddpm['result']['score_mean']:.3f}; {speed:.1f}x faster per chunk "
                     f"(DPM-Solver++-10: {dpm['result']['score_mean']:.3f}, "
                     f"{ddpm['latency'] / dpm['latency']:.1f}x faster, {d2:+.3f} ± {se2:.3f})",
                     f"{d:+.3f} ± {dse:.3f}", fast_and_equal(diff=d, se=dse, speedup=speed))  # fmt: skip
        p8, p1 = dp["modes"]["switch"], a["Diffusion Policy, Ta = 1"]["modes"]["switch"]
        n = self.s.avoid_eval
        s1, sse = p8 - p1, difference_se(binomial_se(p8, n), binomial_se(p1, n))
        report.claim(*said(__name__, "chunking"),
                     f"mid-episode mode switches: Ta = {self.s.action_horizon} {p8:.0%}, "
                     f"Ta = 1 {p1:.0%}",
                     f"{s1:+.0%} ± {sse:.0%}", wins(diff=-s1, se=sse), main=False)  # fmt: skip

    # ------------------------------------------------------------------ sections
    def add_sections(self, report: Report, r: dict[str, Any]) -> None:
        report.section("The bimodal task (point2d-avoid)", self.prose("avoid", r))
        rows = []
        for name, x in r["avoid"].items():
            m = x["modes"]
            rows.append([name, f"{x['score_mean']:.0%} ± {x['score_se']:.0%}",
                         f"{x['success_rate']:.0%}", f"{x['collision_rate']:.0%}",
                         f"{m['left']:.0%} / {m['right']:.0%}", f"{m['switch']:.0%}"])  # fmt: skip
        report.table(["policy", "success without collision", "reached goal", "collided",
                      "left / right", "mode switches"], rows)  # fmt: skip
        report.section("Push-T", self.prose("pusht", r))
        rows = [[f"expert (the demonstrator, {self.s.pusht_episodes} episodes)",
                 _f(r["expert"]["score_mean"]), _pct(r["expert"]["success_rate"]),
                 _f(r["expert"]["final_coverage_mean"])]]  # fmt: skip
        for name, x in r["pusht"].items():
            rows.append([name, f"{x['score_mean']:.3f} ± {x['score_se']:.3f}",
                         f"{x['success_rate']:.0%}", f"{x['final_coverage_mean']:.3f}"])  # fmt: skip
        report.table(["policy", "Push-T score (mean max reward)", "success (coverage > 0.95)",
                      "final coverage"], rows)  # fmt: skip
        if not self.quick:  # the reading is of the default run's numbers
            report.text(self.prose("reading", r))
        if r["strip"]:
            from ..control.pusht import frame_strip

            path = frame_strip(r["strip"], report.out_dir / "pusht_rollout.png")
            report.text(f"![A Diffusion Policy rollout on Push-T, every {self.s.strip_every} steps]"
                        f"({path.name})\n\n*A Diffusion Policy rollout on Push-T (first evaluation "
                        f"episode), one frame every {self.s.strip_every} control steps: goal in "
                        "green, block grey, agent blue, red cross the action target.*")  # fmt: skip
        report.section("Inference: samplers and latency", self.prose("samplers", r))
        rows = []
        for label, x in r["samplers"].items():
            res = x["result"]
            rows.append([label, f"{x['latency'] * 1e3:.1f}", f"{res['score_mean']:.3f} ± "
                         f"{res['score_se']:.3f}", f"{res['success_rate']:.0%}"])  # fmt: skip
        report.table(["sampler", "ms per chunk (batch 1)", "Push-T score", "success"], rows)
        report.figure(self.paths_figure(r), "avoid_paths.png",
                      "point2d-avoid: the evaluation episodes of each policy from the start "
                      "(bottom) to the goal (top, star) past the obstacle (grey).")  # fmt: skip

    def paths_figure(self, r: dict[str, Any]) -> Any:
        import matplotlib.pyplot as plt
        from matplotlib.patches import Circle

        from ..control.envs import AVOID_OBSTACLE

        names = list(METHODS)
        fig, axes = plt.subplots(1, len(names), figsize=(2.6 * len(names), 2.8), squeeze=False)
        for ax, name in zip(axes[0], names, strict=True):
            ax.add_patch(Circle(AVOID_OBSTACLE[:2], AVOID_OBSTACLE[2], color="0.7"))
            for path in r["avoid"][name]["modes"]["paths"]:
                p = np.asarray(path)
                ax.plot(p[:, 0], p[:, 1], lw=0.6, alpha=0.6)
            ax.plot(0, 0.8, "k*", ms=10)
            ax.set_xlim(-1, 1), ax.set_ylim(-1, 1), ax.set_aspect("equal")
            ax.set_title(name, fontsize=8)
        fig.tight_layout()
        return fig

    def text_values(self, r: dict[str, Any]) -> dict[str, Any]:
        a, p = r["avoid"], r["pusht"]
        short = dict(zip(("dp", "dp1", "mse", "mse1", "gmm1"), METHODS, strict=True))
        return {"av": {k: f"{a[v]['score_mean']:.0%}" for k, v in short.items()},
                "sw": {k: f"{a[v]['modes']['switch']:.0%}" for k, v in short.items()},
                "pt": {k: f"{p[v]['score_mean']:.3f}" for k, v in short.items()},
                "ps": {k: f"{p[v]['success_rate']:.0%}" for k, v in short.items()},
                "expert": _f(r["expert"]["score_mean"]),
                "lat": {k: f"{x['latency'] * 1e3:.0f}" for k, x in r["samplers"].items()},
                "smp": {k: f"{x['result']['score_mean']:.3f}"
                        for k, x in r["samplers"].items()},
                "fc": {k: f"{p[v]['final_coverage_mean']:.2f}" for k, v in short.items()},
                "train_s": f"{self.stage_seconds.get('training', 0.0):.0f}"}  # fmt: skip

    def record_metrics(self, r: dict[str, Any]) -> dict[str, Any]:
        def brief(x: dict) -> dict:
            keys = ("score_mean", "score_se", "success_rate", "collision_rate", "final_coverage_mean")
            return {k: x[k] for k in keys if k in x}

        return {"avoid": {n: {**brief(x), **{k: v for k, v in x["modes"].items() if k != "paths"}}
                          for n, x in r["avoid"].items()},
                "pusht": {n: brief(x) for n, x in r["pusht"].items()}, "expert": r["expert"],
                "samplers": {k: {"latency_s": x["latency"], **brief(x["result"])}
                             for k, x in r["samplers"].items()},
                "runs": r["dp_runs"]}  # fmt: skip


def modes(observations: list[Any], band: float = 0.35, margin: float = 0.05) -> dict[str, Any]:
    """Which side of the obstacle each point2d-avoid episode took: the sign of x while the point
    is level with the obstacle (|y| < ``band``); ``switch`` when both sides appear there with
    |x| > ``margin``. Returns the fractions ``left``, ``right``, ``switch`` and the ``paths``."""
    left = right = switch = 0
    paths = []
    for obs in observations:
        o = np.asarray(obs, float)[:, :2]
        paths.append(o.tolist())
        x = o[np.abs(o[:, 1]) < band, 0]
        left += bool(len(x)) and x.mean() < 0
        right += bool(len(x)) and x.mean() > 0
        switch += bool((x < -margin).any() and (x > margin).any())
    n = max(len(observations), 1)
    return {"left": left / n, "right": right / n, "switch": switch / n, "paths": paths}


def _f(v: Any) -> str:
    return "n/a" if v is None else f"{float(v):.3f}"


def _pct(v: Any) -> str:
    return "n/a" if v is None else f"{float(v):.0%}"


REPRODUCTION = DiffusionPolicy2023
reproduce = DiffusionPolicy2023.run
