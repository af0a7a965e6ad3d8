"""Huang, Truong, Zhang, Yu, Sleiman, Hodgins, Sreenath & Farshidian 2025, "Diffuse-CLoC:
Guided Diffusion for Physics-based Character Look-ahead Control" (SIGGRAPH 2025,
arXiv:2503.11801): the reproduction ``diffuse-cloc-2025`` on ``diffusio/Clutter-v0``.

One transformer diffuses states and actions jointly (:mod:`~diffusio.control.cloc_net`: the
paper's mask, states attending to all states and actions causally, per-token noise levels, x0
prediction), trained on obstacle-free goal reaching only; at test time it crosses layouts of
discs and boxes it never saw, steered by the obstacle cost ``sum exp(-c SDF)`` and a waypoint
cost on its predicted states, with rolling inference (:mod:`~diffusio.control.cloc`). Compared
on the same unseen layouts: a state-only planner with the same guidance and an exact-physics
tracker, a Diffuser-style joint U-Net replanned from noise every step, the full-attention
ablation, replanning instead of rolling (the rolling ablation) and no obstacle guidance. A
keyframe (the goal as the position at a given step) is imposed by inpainting in the free arena.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..io import json_hash
from ..metrics.stats import mean_se
from .base import Reproduction, said
from .report import PaperNumber, Report
from .verdicts import NOT, REPRODUCED, claim_rule, compare, shown, win_verdict

__all__ = ["REPRODUCTION", "DiffuseCLoC2025", "Settings", "not_worse", "reproduce", "wins"]

_WHERE = ("issue 17's summary of the paper; the stored copies of arXiv:2503.11801 searched here "
          "return only its abstract, so the table itself was not read")  # fmt: skip
#: method -> (net, inference, execute, obstacle guidance on)
METHODS: dict[str, tuple[str, str, str, bool]] = {
    "Diffuse-CLoC": ("cloc", "rolling", "actions", True),
    "kinematic planner + tracker": ("states", "rolling", "track", True),
    "Diffuser-style joint, replanned": ("unet", "replan", "actions", True),
    "full attention (mask ablation)": ("full", "rolling", "actions", True),
    "replan, no rolling (rolling ablation)": ("cloc", "replan", "actions", True),
    "no obstacle guidance": ("cloc", "rolling", "actions", False),
}


@claim_rule("diffuse-cloc-2025/wins", supports={"diff": 0.3, "se": 0.05},
            contradicts={"diff": 0.02, "se": 0.05})  # fmt: skip
def wins(diff: float, se: float) -> str:
    """A's success rate beats B's by ``diff`` (paired over layouts, ``se``): clearly, else not."""
    return win_verdict(diff, se)


@claim_rule("diffuse-cloc-2025/not-worse", supports={"diff": -0.02, "se": 0.05},
            contradicts={"diff": -0.3, "se": 0.05})  # fmt: skip
def not_worse(diff: float, se: float) -> str:
    """A is not clearly worse than B (``diff`` within the noise or better)."""
    return REPRODUCED if compare(diff, se) >= 0 else NOT


@dataclass(frozen=True)
class Settings:
    """Every knob of the default run; ``QUICK`` and ``SMOKE`` override some of them."""

    seed: int = 0
    data_episodes: int = 400
    data_length: int = 100
    horizon: int = 16
    steps_per_frame: int = 2
    d_model: int = 48
    n_layers: int = 3
    n_heads: int = 4
    train_steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-3
    layouts: int = 100
    n_obstacles: int = 8
    max_steps: int = 80
    w_obs: float = 4.0
    w_goal: float = 4.0
    sharpness: float = 10.0
    max_step: float = 1.0
    keyframe_time: int = 16
    key_fraction: float = 0.35
    keyframe_layouts: int = 50
    paths: int = 4


class DiffuseCLoC2025(Reproduction):
    NAME = "diffuse-cloc-2025"
    TITLE = ("Diffuse-CLoC: Guided Diffusion for Physics-based Character Look-ahead Control "
             "(Huang et al., 2025)")  # fmt: skip
    REFERENCE = ("Xiaoyu Huang, Takara Truong, Yunbo Zhang, Fangzhou Yu, Jean Pierre Sleiman, "
                 "Jessica Hodgins, Koushil Sreenath and Farbod Farshidian. SIGGRAPH 2025, "
                 "arXiv:2503.11801.")  # fmt: skip
    Settings = Settings
    QUICK = {"train_steps": 600, "data_episodes": 200, "layouts": 30, "keyframe_layouts": 20}
    SMOKE = {"train_steps": 4, "data_episodes": 3, "data_length": 12, "horizon": 4, "d_model": 16,
             "n_layers": 1, "n_heads": 2, "batch_size": 8, "layouts": 2, "max_steps": 4,
             "keyframe_time": 2, "keyframe_layouts": 2, "paths": 1}  # fmt: skip
    PAPER_NUMBERS = (
        PaperNumber("Forest success rate, Diffuse-CLoC", "96%", "results table", False,
                    _WHERE + "; alphaXiv's overview also quotes 96% in forest navigation"),
        PaperNumber("Jump success rate, Diffuse-CLoC", "71%", "results table", False, _WHERE),
        PaperNumber("Forest / Jump success, full attention instead of the mask", "58% / 53%",
                    "attention ablation", False, _WHERE),
        PaperNumber("success, Diffuser-style joint model", "0%", "baseline comparison", False, _WHERE),
    )  # fmt: skip

    # ------------------------------------------------------------------ experiments
    def _train(self, kind: str, data: dict[str, np.ndarray], tag: str) -> tuple[Any, Any]:
        from ..control.cloc import windows
        from ..control.cloc_net import NetConfig, train_net

        s = self.s
        cfg = NetConfig(net="unet" if kind == "unet" else "transformer",
                        mask="full" if kind == "full" else "cloc", actions=kind != "states",
                        horizon=s.horizon, levels=s.horizon * s.steps_per_frame, d_model=s.d_model,
                        n_layers=s.n_layers, n_heads=s.n_heads, steps=s.train_steps,
                        batch_size=s.batch_size, lr=s.lr, seed=s.seed, data=tag)  # fmt: skip
        run = self.cache.root / f"cloc-{kind}-{json_hash(dataclasses.asdict(cfg))}"
        self.log(f"training {kind} ({s.train_steps} steps) in {run}")
        ws, wa = windows(data, cfg.context, cfg.horizon)
        net = train_net(
            cfg, ws, wa, run, s.steps_per_frame, log=self.log if self.progress else None
        )
        return net, cfg

    def _policy(self, nets: dict, net: str, inference: str, execute: str, obstacles: bool) -> Any:
        from ..control.cloc import Policy

        s = self.s
        model, cfg = nets[net]
        return Policy(model, cfg, inference, execute, s.w_obs if obstacles else 0.0, s.w_goal,
                      s.sharpness, s.max_step, s.steps_per_frame)  # fmt: skip

    def run_experiments(self) -> dict[str, Any]:
        from ..control.cloc import evaluate, make_free_data

        s = self.s
        data = make_free_data(s.seed, s.data_episodes, s.data_length, self.cache.root.parent)
        tag = f"clutter-free-seed{s.seed}-{s.data_episodes}x{s.data_length}"
        self.lap("data")
        nets = {k: self._train(k, data, tag) for k in ("cloc", "full", "states", "unet")}
        self.lap("training")
        test_seed = s.seed + 1000  # layouts never used for anything else
        results = {}
        for name, (net, inference, execute, obstacles) in METHODS.items():
            pol = self._policy(nets, net, inference, execute, obstacles)
            results[name] = evaluate(pol, s.layouts, test_seed, s.n_obstacles, s.max_steps,
                                     keep_paths=s.paths if name in list(METHODS)[:3] else 0)  # fmt: skip
            self.log(f"{name}: success {np.mean(results[name]['success']):.2f}, collisions "
                     f"{np.mean(results[name]['collision']):.2f}")  # fmt: skip
            self.lap(f"eval: {name}")
        free = {}
        for name, inference, inpaint in (("inpainting, rolling", "rolling", True),
                                         ("inpainting, replanned every step", "replan", True),
                                         ("unconditioned (rolling)", "rolling", False)):  # fmt: skip
            pol = self._policy(nets, "cloc", inference, "actions", False)
            pol.w = (0.0, 0.0, s.sharpness, s.max_step)
            free[name] = evaluate(pol, s.keyframe_layouts, test_seed + 1, 0, s.keyframe_time,
                                  keyframe_time=s.keyframe_time, inpaint=inpaint,
                                  key_fraction=s.key_fraction)  # fmt: skip
        self.lap("keyframes")
        return {"methods": results, "free": free, "calls": {
            name: s.steps_per_frame if inf == "rolling" else s.horizon * s.steps_per_frame
            for name, (_, inf, _, _) in METHODS.items()}}  # fmt: skip

    # ------------------------------------------------------------------ claims
    @staticmethod
    def _rate(r: dict, key: str = "success") -> tuple[float, float]:
        return mean_se(np.asarray(r[key], float))

    def _paired(self, r: dict[str, Any], a: str, b: str) -> tuple[float, float]:
        m = r["methods"]
        return mean_se(np.asarray(m[a]["success"], float) - np.asarray(m[b]["success"], float))

    def add_claims(self, report: Report, r: dict[str, Any]) -> None:
        def line(name: str) -> str:
            p, se = self._rate(r["methods"][name])
            return f"{name} {p:.0%} ± {se:.0%}"

        for key, a, b, rule, main in (
            ("tracker", "Diffuse-CLoC", "kinematic planner + tracker", wins, True),
            ("diffuser", "Diffuse-CLoC", "Diffuser-style joint, replanned", wins, True),
            ("mask", "Diffuse-CLoC", "full attention (mask ablation)", wins, True),
            ("rolling", "Diffuse-CLoC", "replan, no rolling (rolling ablation)", not_worse, False),
            ("guidance", "Diffuse-CLoC", "no obstacle guidance", wins, False),
        ):  # fmt: skip
            d, se = self._paired(r, a, b)
            report.claim(*said(__name__, key), f"{line(a)} vs {line(b)} ({self.s.layouts} layouts)",
                         f"{d:+.0%} ± {se:.0%} (paired): {shown(d, se)}", rule(diff=d, se=se),
                         main=main)  # fmt: skip

    # ------------------------------------------------------------------ sections
    def add_sections(self, report: Report, r: dict[str, Any]) -> None:
        report.section("Success and collisions in unseen clutter", self.prose("results", r))
        if not self.quick:  # the reading is of the default run's numbers
            report.text(self.prose("reading", r))
        rows = []
        for name, x in r["methods"].items():
            (p, pse), (c, cse) = self._rate(x), self._rate(x, "collision")
            t = 1.0 - p - c
            rows.append([name, f"{p:.0%} ± {pse:.0%}", f"{c:.0%} ± {cse:.0%}", f"{t:.0%}",
                         f"{np.mean(x['steps']):.1f}", r["calls"][name], f"{x['seconds']:.0f}"])  # fmt: skip
        report.table(["method", "success", "collision", "timeout", "mean steps",
                      "network calls / step", "rollout seconds"], rows)  # fmt: skip
        report.figure(self.paths_figure(r), "paths.png",
                      "Unseen layouts (discs and boxes): paths of Diffuse-CLoC, the kinematic "
                      "planner + tracker and the Diffuser-style model from the start (circle) "
                      "to the goal (star); a cross marks a collision.")  # fmt: skip
        report.section("Keyframes by inpainting (free arena)", self.prose("keyframes", r))
        if not self.quick:
            report.text(self.prose("keyframe reading", r))
        krows = []
        for name, x in r["free"].items():
            e, ese = mean_se(np.asarray(x["key_error"], float))
            krows.append([name, f"{e:.3f} ± {ese:.3f}"])
        report.table(["conditioning", f"distance to the key at step {self.s.keyframe_time} (m)"],
                     krows)  # fmt: skip

    def paths_figure(self, r: dict[str, Any]) -> Any:
        import matplotlib.pyplot as plt
        from matplotlib.patches import Circle, Rectangle

        names = list(METHODS)[:3]
        n = len(r["methods"][names[0]]["paths"])
        fig, axes = plt.subplots(1, max(n, 1), figsize=(3.2 * max(n, 1), 3.2), squeeze=False)
        for i, ax in enumerate(axes[0][:n]):
            lay = r["methods"][names[0]]["layouts"][i]
            for k, cx, cy, a, b in lay["obstacles"]:
                ax.add_patch(Circle((cx, cy), a, color="0.6") if k < 0.5
                             else Rectangle((cx - a, cy - b), 2 * a, 2 * b, color="0.6"))  # fmt: skip
            for name, color in zip(names, ("C0", "C1", "C2"), strict=True):
                x = r["methods"][name]
                p = np.asarray(x["paths"][i])
                ax.plot(p[:, 0], p[:, 1], color=color, label=name if i == 0 else None)
                if x["collision"][i]:
                    ax.plot(*p[-1], "x", color=color, ms=9)
            ax.plot(*np.asarray(r["methods"][names[0]]["paths"][i])[0], "ko")
            ax.plot(*lay["goal"], "k*", ms=12)
            ax.set_xlim(-1.3, 1.3), ax.set_ylim(-1.3, 1.3), ax.set_aspect("equal")
        axes[0][0].legend(fontsize=6, loc="lower left")
        fig.tight_layout()
        return fig

    def text_values(self, r: dict[str, Any]) -> dict[str, Any]:
        s, m = self.s, r["methods"]
        short = dict(
            zip(("cloc", "tracker", "diffuser", "full", "replan", "noobs"), m, strict=True)
        )
        rate = {k: f"{np.mean(m[v]['success']):.0%}" for k, v in short.items()}
        coll = {k: f"{np.mean(m[v]['collision']):.0%}" for k, v in short.items()}
        secs = {k: f"{m[v]['seconds']:.0f}" for k, v in short.items()}
        keys = {k: f"{np.nanmean(np.asarray(x['key_error'], float)):.2f}" for k, x in
                zip(("roll", "replan", "free"), r["free"].values(), strict=True)}  # fmt: skip
        t, tau = s.keyframe_time * 0.1, 1.0 / 1.5  # the env's dt and m / damping
        reach = f"{t - tau * (1 - np.exp(-t / tau)):.2f}"  # v_max = 1 m/s from rest
        key_dist = f"{s.key_fraction * 2.0:.1f}"
        return {"levels": s.horizon * s.steps_per_frame, "lookahead": s.horizon * 0.1,
                "reach": reach, "key_dist": key_dist,
                "train_s": f"{self.stage_seconds.get('training', 0.0):.0f}",
                "rate": rate, "coll": coll, "secs": secs, "keys": keys,
                "calls_replan": s.horizon * s.steps_per_frame,
                "windows": s.data_episodes * (s.data_length - s.horizon + 1)}  # fmt: skip

    def record_metrics(self, r: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for name, x in r["methods"].items():
            (p, pse), (c, cse) = self._rate(x), self._rate(x, "collision")
            out[name] = {"success": p, "success_se": pse, "collision": c, "collision_se": cse,
                         "mean_steps": float(np.mean(x["steps"])), "seconds": x["seconds"]}  # fmt: skip
        keys = {k: mean_se(np.asarray(x["key_error"], float)) for k, x in r["free"].items()}
        return {
            "methods": out,
            "keyframes": {k: {"error": e, "se": se} for k, (e, se) in keys.items()},
        }


REPRODUCTION = DiffuseCLoC2025
reproduce = DiffuseCLoC2025.run
