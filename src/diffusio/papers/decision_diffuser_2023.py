"""Ajay, Du, Gupta, Tenenbaum, Jaakkola & Agrawal 2023, "Is Conditional Generative Modeling all
you need for Decision-Making?" (ICLR 2023, arXiv:2211.15657): the reproduction
``decision-diffuser-2023`` on mixed-quality LunarLander and the point2d skills.

Decision Diffuser (:mod:`diffusio.control.decision_diffuser`) diffuses windows of future states
conditioned on a normalised return by classifier-free guidance, writes the current state clean
into index 0 (the official ``apply_conditioning``) and acts through an inverse-dynamics MLP; the
plans' one-step precision is measured on held-out episodes against the earlier recipe.
Measured here, on ``lunarlander-mixed`` (the heuristic at action noise 0 / 0.3 / 0.6 / 1.0 and
random actions, in turn):

* DD at a sweep of guidance scales ``s`` (the paper's convention, ``eps_u + s (eps_c - eps_u)``;
  ``s = 0`` is the unconditional model) against BC, %BC (top 10 % of episodes) and CondDiffuser
  (the same model over ``[action, state]``, its first action executed), all on the same data and
  the same environment seeds;
* the composition of two skills (eq. 9) on point2d, trained on single-skill episodes only: the
  direction of the composed motion.

Every rollout batch runs all its episodes at once (:func:`~diffusio.control.decision_diffuser.
rollout_batch`); DD and CondDiffuser replan every ``replan_every`` steps (the paper: every step).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..io import json_hash
from ..metrics.stats import difference_se, mean_se
from .base import Reproduction, said
from .report import PaperNumber, Report
from .verdicts import NOT, REPRODUCED, SIGNIFICANCE, claim_rule, compare, shown, win_verdict

__all__ = ["REPRODUCTION", "DecisionDiffuser2023", "Settings", "composes", "reproduce",
           "target_met", "wins"]  # fmt: skip

#: The composed direction must lie within this many degrees of 45.
ANGLE_TOLERANCE = 15.0
_NOTES = ("../shared/notes/control.md Sec. 2 (read from the paper PDF that ships in the official "
          "repository); the stored copies searched here hold only the paper's opening")  # fmt: skip
_CODE = "anuragajay/decision-diffuser code/config/locomotion_config.py, models/diffusion.py"


# --------------------------------------------------------------------------- claim rules
@claim_rule("decision-diffuser-2023/wins", supports={"diff": 60.0, "se": 20.0},
            contradicts={"diff": 20.0, "se": 20.0})  # fmt: skip
def wins(diff: float, se: float) -> str:
    """A beats B by ``diff`` (mean return, se of the difference): clearly, else not shown."""
    return win_verdict(diff, se)


@claim_rule("decision-diffuser-2023/composes",
            supports=dict(angle=44.0, angle_se=2.0, along_x=0.3, x_se=0.02, along_y=0.3, y_se=0.02),
            contradicts=dict(angle=5.0, angle_se=2.0, along_x=0.5, x_se=0.02, along_y=0.0,
                             y_se=0.02))  # fmt: skip
def composes(angle: float, angle_se: float, along_x: float, x_se: float, along_y: float,
             y_se: float) -> str:  # fmt: skip
    """Composing "+x" and "+y" moves the point diagonally: clear progress along both axes and a
    mean direction within ANGLE_TOLERANCE degrees of 45, measured to within that tolerance (its
    se at most ANGLE_TOLERANCE: a direction this uncertain does not tell 45 from 0 or 90)."""
    both = compare(along_x, x_se) == 1 and compare(along_y, y_se) == 1
    precise = math.isfinite(angle_se) and angle_se <= ANGLE_TOLERANCE
    ok = both and precise and abs(angle - 45.0) <= ANGLE_TOLERANCE
    return REPRODUCED if ok else NOT


@claim_rule("decision-diffuser-2023/target",
            supports=dict(over_bc=80.0, bc_se=20.0, over_pbc=-10.0, pbc_se=20.0),
            contradicts=dict(over_bc=80.0, bc_se=20.0, over_pbc=-30.0, pbc_se=20.0))
def target_met(over_bc: float, bc_se: float, over_pbc: float, pbc_se: float) -> str:
    """Our issue's target: DD's mean return above BC's by more than 2 se of the difference, and
    not below %BC's by more than 1 se."""
    ok = compare(over_bc, bc_se) == 1 and over_pbc >= -float(pbc_se)
    return REPRODUCED if ok and math.isfinite(pbc_se) else NOT


@dataclass(frozen=True)
class Settings:
    """Every knob. LunarLander: the dataset (``data_episodes`` episodes, seed ``data_seed``), the
    diffusion recipe (``horizon``, T = ``diffusion_steps``, U-Net ``net_dim`` x ``net_mults``,
    ``train_steps`` at ``batch_size``, ``p_uncond``, ``gamma``; how the current state is learnt,
    ``conditioning``, the state scaling ``frame`` and the vector ``state_condition``, see
    :mod:`~diffusio.control.decision_diffuser`), the inverse dynamics, the precision check
    (``precision_rows`` transitions of ``holdout_episodes`` episodes of seed data_seed + 1), sampling
    (``target`` return in [0, 1], ``noise_scale`` 0.5 = low temperature, ``sample_steps`` None =
    all T), the headline scale ``scale`` and the sweep ``scales`` (both the paper's s),
    ``replan_every``, ``episodes`` per setting, ``max_episode_steps`` (None: 1000, the task's);
    the baselines' steps and %BC's fraction. point2d: ``skills_*``."""

    dataset: str = "lunarlander-mixed"
    data_episodes: int = 250
    data_seed: int = 0
    horizon: int = 16
    diffusion_steps: int = 20
    net_dim: int = 32
    net_mults: tuple[int, ...] = (1, 2)
    train_steps: int = 6000
    batch_size: int = 64
    p_uncond: float = 0.25
    gamma: float = 0.99
    inverse_steps: int = 4000
    conditioning: str = "known"
    frame: str = "relative"
    state_condition: bool = False
    precision_rows: int = 256
    holdout_episodes: int = 25
    target: float = 0.9
    noise_scale: float = 0.5
    sample_steps: int | None = None
    scale: float = 1.2
    scales: tuple[float, ...] = (0.0, 1.0, 1.2, 1.6, 2.0)
    replan_every: int = 4
    episodes: int = 30
    max_episode_steps: int | None = None
    bc_steps: int = 4000
    pbc_fraction: float = 0.1
    skills_episodes: int = 400
    skills_horizon: int = 8
    skills_train_steps: int = 2000
    skills_scale: float = 1.2
    skills_eval_episodes: int = 20
    seed: int = 0


def recipe(s: Settings, kind: str) -> dict[str, Any]:
    """The keyword arguments of :func:`~diffusio.control.decision_diffuser.train_decision_diffuser`
    for LunarLander (``kind``: decision-diffuser or cond-diffuser)."""
    return dict(kind=kind, condition="returns", horizon=s.horizon, steps=s.train_steps,
                gamma=s.gamma, p_uncond=s.p_uncond, inverse_steps=s.inverse_steps,
                net_options={"dim": s.net_dim, "dim_mults": list(s.net_mults)},
                process_options={"num_steps": s.diffusion_steps}, batch_size=s.batch_size,
                conditioning=s.conditioning, frame=s.frame, state_condition=s.state_condition,
                seed=s.seed)  # fmt: skip


#: The recipe before the precision fixes: absolute states, the current state by re-noised
#: inpainting plus a vector condition (measured for the precision table only).
BEFORE = {"conditioning": "inpaint", "frame": "absolute", "state_condition": True}


def _stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    r = [x["return"] for x in rows]
    mean, se = mean_se(r)
    return {"return": mean, "se": se, "episodes": len(r), "steps": float(np.mean([x["steps"] for x in rows])),
            "landed": float(np.mean([x["return"] >= 200 for x in rows])), "returns": r}  # fmt: skip


def _angle(rows: list[dict[str, Any]]) -> dict[str, Any]:
    d = np.array([np.subtract(x["end"], x["start"]) for x in rows])
    angles = np.degrees(np.arctan2(d[:, 1], d[:, 0]))
    return {"dx": mean_se(d[:, 0]), "dy": mean_se(d[:, 1]), "angle": mean_se(angles)}


class DecisionDiffuser2023(Reproduction):
    NAME = "decision-diffuser-2023"
    TITLE = ("Is Conditional Generative Modeling all you need for Decision-Making? (Ajay, Du, "
             "Gupta, Tenenbaum, Jaakkola & Agrawal, 2023)")  # fmt: skip
    REFERENCE = ("Anurag Ajay, Yilun Du, Abhi Gupta, Joshua B. Tenenbaum, Tommi Jaakkola and "
                 "Pulkit Agrawal. *Is Conditional Generative Modeling all you need for "
                 "Decision-Making?* ICLR 2023, arXiv:2211.15657.")  # fmt: skip
    Settings = Settings
    #: Under 5 minutes on 2 free cores.
    QUICK = {"train_steps": 1500, "inverse_steps": 2000, "bc_steps": 1500, "episodes": 10,
             "scales": (0.0, 1.2, 1.8), "replan_every": 8, "sample_steps": 10,
             "skills_train_steps": 600, "skills_eval_episodes": 8}  # fmt: skip
    SMOKE = {"data_episodes": 10, "train_steps": 4, "inverse_steps": 4, "bc_steps": 4,
             "episodes": 2, "scales": (0.0, 1.2), "net_dim": 8, "batch_size": 16,
             "diffusion_steps": 4, "sample_steps": None, "horizon": 4, "max_episode_steps": 12,
             "skills_episodes": 8, "skills_horizon": 4, "skills_train_steps": 4,
             "skills_eval_episodes": 2, "precision_rows": 8, "holdout_episodes": 2}  # fmt: skip
    PAPER_NUMBERS = (
        *(PaperNumber(q, v, where, False, _NOTES) for q, v, where in (
            ("D4RL locomotion average: DD / Diffuser / BC", "81.8 / 75.3 / 51.9", "Table 1"),
            ("Block Push, torque control: DD / CondDiffuser / BC", "84.7 / 71.8 / 55.2",
             "Table A2"),
            ("Block Push, position control: DD / CondDiffuser / BC", "87.8 / 87.3 / 57.3",
             "Table A2"),
            ("Hopper-medium: DD / CondDiffuser / Diffuser", "79.3 / 66.3 / 58.5", "Table 2"),
            ("bound + pace composition: % pace / % bound", "38.5 / 60.1", "Figure 7"),
            ("low temperature alpha = 0 / 0.5 / 1 (hopper-medium-expert)",
             "104.3 / 111.8 / 107.1", "Table A1"),
            ("guidance scale s per task", "1.2 - 1.8", "App. C"),
        )),
        *(PaperNumber(q, v, _CODE, True, "read in the official code (stored copy)") for q, v in (
            ("condition dropout / guidance w / test return", "0.25 / 1.2 / 0.9"),
            ("CFG: eps_uncond + w (eps_cond - eps_uncond)", "w = condition_guidance_w"),
            ("low temperature: noise std and x_T times", "0.5"),
            ("diffusion steps / horizon / discount", "200 / 100 / 0.99"),
            ("U-Net dim, mults; inverse dynamics hidden", "128, (1, 4, 8); 2 x 256 ReLU"),
        )),
    )  # fmt: skip

    # ------------------------------------------------------------------ experiments
    def _run_dir(self, label: str, key: Any) -> Path:
        return self.cache.root / f"{label}-{json_hash(key)}"

    def run_experiments(self) -> dict[str, Any]:
        from ..control import decision_diffuser as dd
        from ..control.baselines import bc_policy, train_bc
        from ..control.datasets import load_dataset, make_dataset
        from ..control.scores import episode_seed

        s = self.s
        if s.scale not in s.scales:
            raise ValueError(f"the headline scale {s.scale} must be one of scales {s.scales}")
        ds = load_dataset(make_dataset(s.dataset, seed=s.data_seed, episodes=s.data_episodes,
                                       progress=self.progress))  # fmt: skip
        tag = dd.dataset_tag(ds)
        self.lap("dataset")
        runs: dict[str, Any] = {}
        for kind in ("decision-diffuser", "cond-diffuser"):
            rec = recipe(s, kind)
            run = self._run_dir(kind, {**rec, "data": tag})
            self.log(f"training {kind} ({s.train_steps} steps) in {run}")
            _, runs[kind] = dd.train_decision_diffuser(ds, run, progress=self.progress, **rec)
            runs[kind]["run_dir"] = str(run)
            self.lap(kind)
        bcs = {}
        for kind in ("bc", "pbc"):
            key = {"kind": kind, "steps": s.bc_steps, "fraction": s.pbc_fraction, "data": tag,
                   "seed": s.seed}  # fmt: skip
            run = self._run_dir(kind, key)
            if not (run / "bc.json").is_file():
                train_bc(ds, run, kind, steps=s.bc_steps, fraction=s.pbc_fraction, seed=s.seed,
                         progress=self.progress)  # fmt: skip
            bcs[kind] = bc_policy(run)
        self.lap("baselines")

        env = {"max_episode_steps": s.max_episode_steps} if s.max_episode_steps else None
        seeds = [episode_seed(s.seed, i)[0] for i in range(s.episodes)]
        opts = dict(sampler="ddpm", steps=s.sample_steps, noise_scale=s.noise_scale,
                    replan_every=s.replan_every, target=s.target)  # fmt: skip
        n = s.episodes
        self.log(f"DD at s = {', '.join(f'{x:g}' for x in s.scales)}: {n} episodes each, in one batch")
        policy = dd.decision_diffuser_policy(runs["decision-diffuser"]["run_dir"],
                                             guidance_scale=np.repeat(s.scales, n), **opts)  # fmt: skip
        rows = dd.rollout_batch(policy, "lunarlander", seeds * len(s.scales), s.seed,
                                env_options=env)  # fmt: skip
        sweep = [{"scale": float(x), **_stats(rows[i * n:(i + 1) * n])} for i, x in enumerate(s.scales)]
        dd_plans = len(policy.planning_seconds)
        dd_seconds = float(np.mean(policy.planning_seconds))
        self.lap("rollouts: DD sweep")
        cond = dd.decision_diffuser_policy(runs["cond-diffuser"]["run_dir"],
                                           guidance_scale=s.scale, **opts)  # fmt: skip
        methods = {"CondDiffuser": _stats(dd.rollout_batch(cond, "lunarlander", seeds, s.seed,
                                                           env_options=env))}  # fmt: skip
        for kind, label in (("bc", "BC"), ("pbc", f"%BC ({s.pbc_fraction:.0%})")):
            methods[label] = _stats(dd.rollout_batch(bcs[kind], "lunarlander", seeds, s.seed,
                                                     env_options=env))  # fmt: skip
        self.lap("rollouts: baselines")
        held = load_dataset(make_dataset(s.dataset, seed=s.data_seed + 1,
                                         episodes=s.holdout_episodes, progress=self.progress))  # fmt: skip
        precision = {"after": dd.held_out_precision(policy, held, s.scale, s.seed, s.precision_rows)}
        before = {**recipe(s, "decision-diffuser"), **BEFORE}
        run = self._run_dir("dd-before", {**before, "data": tag})
        self.log(f"training the earlier recipe {BEFORE} for the precision table, in {run}")
        dd.train_decision_diffuser(ds, run, progress=self.progress, **before)
        old = dd.decision_diffuser_policy(run, guidance_scale=s.scale, **opts)
        precision["before"] = dd.held_out_precision(old, held, s.scale, s.seed, s.precision_rows)
        self.lap("plan precision")

        comp = self.composition(dd, make_dataset, load_dataset, episode_seed)
        self.lap("composition")
        returns = ds.episode_returns()
        return {"runs": runs, "sweep": sweep, "methods": methods, "composition": comp,
                "data": {"episodes": len(returns), "steps": len(ds), "return_mean": float(returns.mean()),
                         "return_top10": float(np.sort(returns)[-max(1, len(returns) // 10):].mean())},
                "precision": precision, "timing": {"plans": dd_plans, "plan_seconds": dd_seconds,
                           "rows": n * len(s.scales)}}  # fmt: skip

    def composition(self, dd: Any, make_dataset: Any, load_dataset: Any, episode_seed: Any) -> dict:
        """Train a skill-conditioned DD on point2d's single-skill episodes and roll out +x, +y
        and their composition from the same starts."""
        s = self.s
        ds = load_dataset(make_dataset("point2d-skills", seed=s.data_seed,
                                       episodes=s.skills_episodes, progress=self.progress))  # fmt: skip
        rec = dict(kind="decision-diffuser", condition="skills", horizon=s.skills_horizon,
                   steps=s.skills_train_steps, p_uncond=s.p_uncond, inverse_steps=s.inverse_steps,
                   net_options={"dim": s.net_dim, "dim_mults": [1, 2]},
                   process_options={"num_steps": s.diffusion_steps}, batch_size=s.batch_size,
                   seed=s.seed)  # fmt: skip
        run = self._run_dir("dd-skills", {**rec, "data": dd.dataset_tag(ds)})
        self.log(f"training the skill model ({s.skills_train_steps} steps)")
        _, info = dd.train_decision_diffuser(ds, run, progress=self.progress, **rec)
        m = s.skills_eval_episodes
        seeds = [episode_seed(s.seed, i)[0] for i in range(m)]
        out = {"info": {k: info[k] for k in ("skills", "horizon", "train")}}
        for label, skills in (("+x", ("+x",)), ("+y", ("+y",)), ("+x & +y", ("+x", "+y"))):
            policy = dd.decision_diffuser_policy(run, skills=skills, guidance_scale=s.skills_scale,
                                                 noise_scale=s.noise_scale)  # fmt: skip
            rows = dd.rollout_batch(policy, "point2d", seeds, s.seed,
                                    env_options={"skill": list(skills)})  # fmt: skip
            out[label] = {**_angle(rows), "return": mean_se([r["return"] for r in rows])}
        return out

    # ------------------------------------------------------------------ claims
    def _dd(self, r: dict[str, Any], scale: float) -> dict[str, Any]:
        return next(x for x in r["sweep"] if x["scale"] == scale)

    def add_claims(self, report: Report, r: dict[str, Any]) -> None:
        s, m = self.s, r["methods"]
        ours = self._dd(r, s.scale)
        pbc = m[f"%BC ({s.pbc_fraction:.0%})"]

        def vs(a: dict, b: dict) -> tuple[float, float]:
            return a["return"] - b["return"], difference_se(a["se"], b["se"])

        def line(name: str, x: dict) -> str:
            return f"{name} {x['return']:.1f} ± {x['se']:.1f}"

        for key, other, label in (("beats bc", m["BC"], "BC"),
                                  ("inverse dynamics", m["CondDiffuser"], "CondDiffuser"),
                                  ("guidance", self._dd(r, 0.0) if 0.0 in s.scales else None,
                                   "s = 0 (unconditional)")):  # fmt: skip
            if other is None:
                continue
            d, se = vs(ours, other)
            report.claim(*said(__name__, key),
                         f"{line(f'DD (s = {s.scale:g})', ours)} vs {line(label, other)} "
                         f"({s.episodes} episodes each, the same seeds)",
                         f"{d:+.1f} ± {se:.1f}: {shown(d, se)}", wins(diff=d, se=se))  # fmt: skip
        c = r["composition"]["+x & +y"]
        (ang, ang_se), (dx, dx_se), (dy, dy_se) = c["angle"], c["dx"], c["dy"]
        report.claim(*said(__name__, "composition"),
                     f"composed +x & +y: direction {ang:.1f}° ± {ang_se:.1f}°, displacement "
                     f"({dx:.2f} ± {dx_se:.2f}, {dy:.2f} ± {dy_se:.2f}); +x alone "
                     f"{r['composition']['+x']['angle'][0]:.1f}°, +y alone "
                     f"{r['composition']['+y']['angle'][0]:.1f}°",
                     f"{ang - 45:+.1f}° ± {ang_se:.1f}° from the diagonal (tolerance ±{ANGLE_TOLERANCE:g}°, "
                     f"se at most {ANGLE_TOLERANCE:g}°)",
                     composes(angle=ang, angle_se=ang_se, along_x=dx, x_se=dx_se, along_y=dy,
                              y_se=dy_se))  # fmt: skip
        d_bc, se_bc = vs(ours, m["BC"])
        d_pbc, se_pbc = vs(ours, pbc)
        report.claim(*said(__name__, "target"),
                     f"{line('DD', ours)}, {line('BC', m['BC'])}, {line('%BC', pbc)}",
                     f"over BC {d_bc:+.1f} ± {se_bc:.1f} (needs > {SIGNIFICANCE:g} se); over %BC "
                     f"{d_pbc:+.1f} ± {se_pbc:.1f} (needs >= -1 se)",
                     target_met(over_bc=d_bc, bc_se=se_bc, over_pbc=d_pbc, pbc_se=se_pbc),
                     main=False)  # fmt: skip

    # ------------------------------------------------------------------ sections
    def add_sections(self, report: Report, r: dict[str, Any]) -> None:
        from ..control.scores import normalized_score

        s = self.s

        def row(name: str, x: dict) -> list[Any]:
            return [name, f"{x['return']:.1f} ± {x['se']:.1f}",
                    f"{normalized_score('lunarlander', x['return']):.1f}", f"{x['landed']:.0%}",
                    f"{x['steps']:.0f}"]  # fmt: skip

        report.section("LunarLander: Decision Diffuser against the baselines", self.prose("lunarlander", r))
        header = ["method", "return", "normalised score", "return >= 200", "mean steps"]
        rows = [row(f"DD, s = {x['scale']:g}" + (" (headline)" if x["scale"] == s.scale else ""), x)
                for x in r["sweep"]]  # fmt: skip
        rows += [row(name, x) for name, x in r["methods"].items()]
        report.table(header, rows)
        p = r["precision"]
        report.text(self.prose("precision", r))
        head = ["recipe", "transitions", "median ||s_hat_1 - s_1|| / ||s_1 - s_0||",
                "mean ||s_hat_1 - s_1||", "mean ||s_1 - s_0||", "action rmse: f(s_0, s_hat_1)",
                "action rmse: f(s_0, s_1)"]  # fmt: skip
        names = {"before": "before: absolute, inpainting + state vector",
                 "after": f"now: {s.frame}, {s.conditioning}"
                          + (" + state vector" if s.state_condition else "")}  # fmt: skip
        report.table(head, [[names[k], f"{w} ({v[w]['rows']})", f"{v[w]['ratio_median']:.2f}",
                             f"{v[w]['error_mean']:.4f}", f"{v[w]['move_mean']:.4f}",
                             f"{v[w]['action_rmse_planned']:.3f}",
                             f"{v[w]['action_rmse_true_next']:.3f}"]
                            for k, v in p.items() for w in ("heuristic", "all")])  # fmt: skip
        dims = range(len(p["after"]["heuristic"]["move_sd_per_dim"]))
        report.table(["heuristic transitions", *[f"s[{i}]" for i in dims]],
                     [[f"rms error of planned s_1 ({k})",
                       *[f"{x:.4f}" for x in v["heuristic"]["error_rms_per_dim"]]]
                      for k, v in p.items()]
                     + [["sd of the true step s_1 - s_0",
                         *[f"{x:.4f}" for x in p["after"]["heuristic"]["move_sd_per_dim"]]]])  # fmt: skip
        report.figure(self.sweep_figure(r), "guidance.png",
                      "Mean return (± se over episodes) of Decision Diffuser against the guidance "
                      "scale s (s = 0: unconditional; s = 1: conditional, no guidance), with the "
                      "baselines as horizontal lines.")  # fmt: skip
        report.section("Composition of skills (point2d)", self.prose("composition", r))
        comp = r["composition"]
        report.table(["condition", "direction (deg)", "dx", "dy", "return"],
                     [[k, f"{v['angle'][0]:.1f} ± {v['angle'][1]:.1f}",
                       f"{v['dx'][0]:.3f} ± {v['dx'][1]:.3f}", f"{v['dy'][0]:.3f} ± {v['dy'][1]:.3f}",
                       f"{v['return'][0]:.3f}"] for k, v in comp.items() if k != "info"])  # fmt: skip

    def sweep_figure(self, r: dict[str, Any]) -> Any:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        xs = [x["scale"] for x in r["sweep"]]
        ax.errorbar(xs, [x["return"] for x in r["sweep"]],
                    yerr=[2 * (x["se"] if math.isfinite(x["se"]) else 0) for x in r["sweep"]],
                    marker="o", capsize=3, label="Decision Diffuser")  # fmt: skip
        for (name, x), color in zip(r["methods"].items(), ("C1", "C2", "C3"), strict=False):
            ax.axhline(x["return"], color=color, linestyle="--", label=name)
        ax.set_xlabel("guidance scale s (paper's convention)")
        ax.set_ylabel("mean return (± 2 se)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        return fig

    def text_values(self, r: dict[str, Any]) -> dict[str, Any]:
        run = r["runs"]["decision-diffuser"]
        t = r["timing"]
        return {"dd_loss": run["train"]["loss"], "inv_mse": run["inverse"]["train_mse"],
                "windows": run["train_windows"], "plans": t["plans"],
                "plan_seconds": t["plan_seconds"], "rows": t["rows"],
                "cap": s_cap(self.s), "ratio": r["precision"]["after"]["heuristic"]["ratio_median"],
                "ratio_before": r["precision"]["before"]["heuristic"]["ratio_median"],
                "w_headline": self.s.scale - 1.0,
                "skills_scale_w": self.s.skills_scale - 1.0, "significance": SIGNIFICANCE}  # fmt: skip

    def record_metrics(self, r: dict[str, Any]) -> dict[str, Any]:
        return {"sweep": r["sweep"], "methods": r["methods"], "composition": r["composition"],
                "data": r["data"], "timing": r["timing"], "precision": r["precision"],
                "train": {k: {"loss": v["train"]["loss"], "inverse": v.get("inverse")}
                          for k, v in r["runs"].items()}}  # fmt: skip


def s_cap(s: Settings) -> str:
    """How long an episode may run (the task's 1000 steps unless capped)."""
    return ("1000 steps (the task's)" if s.max_episode_steps is None
            else f"{s.max_episode_steps} steps (capped: not the task's 1000)")  # fmt: skip


REPRODUCTION = DecisionDiffuser2023
reproduce = DecisionDiffuser2023.run
