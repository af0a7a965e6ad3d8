"""Score SDE (Song, Sohl-Dickstein, Kingma, Kumar, Ermon & Poole, ICLR 2021, arXiv:2011.13456),
reproduced on the 2-D ``8gaussians`` toy.

The paper writes diffusion as a forward SDE ``dx = f(x, t) dt + g(t) dw`` (eq. 5), whose time
reversal (eq. 6) needs only the score of the noised marginals and whose *probability-flow ODE*
``dx/dt = f - 1/2 g^2 grad log p_t`` (eq. 13) has the same marginals. Three forward SDEs are
compared: VE (eq. 9, the limit of SMLD/NCSN), VP (eq. 11, the limit of DDPM) and sub-VP (eq.
17). A score model is trained per SDE by denoising score matching (eq. 7) with ``lambda(t) =
sigma(t)^2``: our eps-prediction MSE is exactly that objective.

Samplers (:mod:`diffusio.core.samplers`): Euler--Maruyama on eq. 6; predictor--corrector
(Algorithms 1-3: a reverse-diffusion predictor, eq. 46, and one Langevin corrector step at
signal-to-noise ratio ``snr``); the probability-flow ODE by Heun's method and by adaptive RK45.
Measured, per SDE: sample quality against NFE for every sampler (the toy sampler sweep,
:mod:`diffusio.toy.sweep`, scored by :mod:`diffusio.toy.scorer` against noise floors) and the
ODE likelihood against the data's exact entropy at several solver tolerances
(:mod:`diffusio.toy.likelihood`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..data.toys import sample_toy, toy_entropy, toy_mixture
from ..metrics.distances import noise_floors
from ..metrics.stats import NoiseFloor, difference_se, paired_difference
from ..plotting import scatter_panels
from ..toy.data import max_pairwise_distance
from ..toy.figures import quality_vs_nfe_figure, trajectory_figure
from ..toy.likelihood import nll_sweep
from ..toy.scorer import chi2_stderr, mode_chi2, mode_spread, quality, two_sample_metrics
from ..toy.sweep import SamplerRun, largest_per_family, sweep, trajectories
from ..train.config import TrainConfig, build_model, load_config, load_data
from .base import Reproduction
from .report import Report, fmt
from .verdicts import NOT, PARTLY, REPRODUCED, SIGNIFICANCE, at_floor, compare, tally_verdict

__all__ = ["REPRODUCTION", "SDES", "ScoreSDE2021", "reproduce", "sampler_plan", "sde_configs",
           "ve_sigma_max"]  # fmt: skip

TOY, PRESET = "8gaussians", "toy-8gaussians"
#: MMD kernel width in data units: the std of each 8gaussians mode (0.5 / 1.414 = 0.354).
MMD_BANDWIDTH = 0.35
SAMPLE_SEED = 10  # prior and noise of every sampler run (common random numbers)
REFERENCE_SEED = 1  # the exact sample set model samples are compared with
FLOOR_SEED = 100  # exact sample-set pairs for the noise floor: seeds 100, 101, 102, ...
NLL_SEED = 7  # held-out data points for the ODE NLL
#: ODE NLL minus entropy (nats) for "reproduced" and "partly reproduced" likelihood claims.
KL_GOOD, KL_FAIR = 0.05, 0.2
#: The ODE "needs far fewer NFE" when it matches the longest SDE run with at most this share.
ODE_NFE_FRACTION = 0.25
FAMILIES = ("EM", "P", "PC", "ODE Heun", "ODE RK45")
#: (label, process, equation) of the paper's three forward SDEs.
SDES = (("VP", "vp-linear", "eq. 11, beta 0.1 to 20"), ("sub-VP", "sub-vp", "eq. 17, beta 0.1 "
        "to 20"), ("VE", "ve", "eq. 9, sigma 0.01 to sigma_max"))  # fmt: skip


@dataclass(frozen=True)
class Settings:
    """The scale of one run."""

    steps: int = 8000  # training steps per SDE
    n_samples: int = 2000  # samples per sampler setting (and per exact reference set)
    n_nll: int = 1000  # held-out data points for the ODE NLL
    em_steps: tuple[int, ...] = (50, 200, 1000)  # Euler-Maruyama steps
    pc_steps: tuple[int, ...] = (50, 250)  # N: predictor-corrector at N, predictor at N and 2N
    heun_steps: tuple[int, ...] = (10, 25, 50)  # probability-flow ODE, Heun steps (2 NFE each)
    nll_tolerances: tuple[float, ...] = (1e-2, 1e-3, 1e-5)  # rtol = atol of the NLL's RK45
    floor_pairs: int = 10  # exact sample-set pairs for each metric's noise floor
    snr: float = 0.16  # Langevin corrector signal-to-noise ratio (paper's CIFAR-10 VE value)
    rk45_tol: float = 1e-5  # rtol = atol of the RK45 sampler (the paper's)
    n_plot: int = 1000  # points per scatter panel
    n_paths: int = 16  # trajectories per panel
    path_steps: int = 200  # sampler steps of the trajectory figure
    n_data: int = 100_000  # training set size


# --------------------------------------------------------------------------- setup
def ve_sigma_max(config: TrainConfig, n: int = 4000) -> tuple[float, float]:
    """(rounded-up, measured) largest pairwise distance of the standardized training data:
    the VE SDE's sigma_max (Song & Ermon 2020, technique 1), an integer for a stable config."""
    distance = max_pairwise_distance(load_data(config), n, standardize=True)
    return float(math.ceil(distance)), distance


def sde_configs(settings: Settings) -> dict[str, TrainConfig]:
    """The toy preset (eps prediction = lambda(t) = sigma^2 weighting) with each SDE's process."""
    base = load_config(PRESET, steps=settings.steps, n_data=settings.n_data)
    configs = {}
    for label, process, _ in SDES:
        options = {"sigma_min": 0.01, "sigma_max": ve_sigma_max(base)[0]} if process == "ve" else {}
        configs[label] = base.replace(process=process, process_options=options,
                                      description=f"score-sde-2021 {label}")  # fmt: skip
    return configs


def sampler_plan(settings: Settings) -> list[SamplerRun]:
    """Euler--Maruyama; the reverse-diffusion predictor alone (P) at N and 2N steps and with one
    Langevin corrector (PC) at N (Table 1's P1000 / P2000 / PC1000); the probability-flow ODE by
    Heun and by adaptive RK45."""
    s = settings
    plan = [SamplerRun("EM", "euler-maruyama", k) for k in s.em_steps]
    p_steps = sorted({k for n in s.pc_steps for k in (n, 2 * n)})
    plan += [SamplerRun("P", "pc", k, {"n_corrector": 0}) for k in p_steps]
    plan += [SamplerRun("PC", "pc", k, {"n_corrector": 1, "snr": s.snr}) for k in s.pc_steps]
    plan += [SamplerRun("ODE Heun", "ode-heun", k) for k in s.heun_steps]
    plan.append(SamplerRun("ODE RK45", "ode-rk45", None, {"rtol": s.rk45_tol, "atol": s.rk45_tol}))
    return plan


def reference(n: int, seed: int) -> Tensor:
    """n exact toy samples (float64, data units)."""
    return sample_toy(TOY, n, seed=seed).to(torch.float64)


@functools.cache
def mixture() -> Any:
    """The toy's exact density (one instance, so its reference mode statistics are cached)."""
    return toy_mixture(TOY)


def metrics() -> dict[str, Any]:
    """``metric(samples, exact)``: SW, MMD^2 at the modes' scale, and the mode chi-square."""
    return {**two_sample_metrics(MMD_BANDWIDTH), "chi2": lambda x, y: mode_chi2(mixture(), x)}


def score_samples(x: Tensor, ref: Tensor) -> dict[str, float]:
    """Every metric against ``ref``, the chi-square's bootstrap error and the mode spread."""
    return {**quality(x, ref, metrics()), "chi2_se": chi2_stderr(mixture(), x),
            "spread": mode_spread(mixture(), x)}  # fmt: skip


def floor_level(floor: NoiseFloor) -> float:
    """The largest value still "at the floor"."""
    return floor.mean + SIGNIFICANCE * floor.sd


# --------------------------------------------------------------------------- row helpers
def _label(row: dict[str, Any]) -> str:
    return row["family"] if row["steps"] is None else f"{row['family']} {row['steps']}"


def _chi2(row: dict[str, Any]) -> str:
    return f"{fmt(row['chi2'])} +/- {fmt(row['chi2_se'])}"


def _row(rows: list[dict[str, Any]], family: str, steps: int | None) -> dict[str, Any] | None:
    return next((r for r in rows if r["family"] == family and r["steps"] == steps), None)


def _longest(rows: list[dict[str, Any]], family: str) -> dict[str, Any]:
    return max((r for r in rows if r["family"] == family), key=lambda r: r["nfe"])


def chi2_better(a: dict[str, Any], b: dict[str, Any]) -> int:
    """+1 / 0 / -1: run a's chi2 clearly below run b's, within the noise, clearly above
    (:func:`~diffusio.papers.verdicts.compare` with the combined bootstrap errors)."""
    return compare(b["chi2"] - a["chi2"], difference_se(a["chi2_se"], b["chi2_se"]))


def as_good(a: dict[str, Any], b: dict[str, Any], floors: dict[str, NoiseFloor]) -> bool:
    """Run a is as good as run b: chi2 above b's by at most one combined standard error and
    MMD above b's by at most one floor sd -- or at the floor anyway."""
    chi2_ok = a["chi2"] <= b["chi2"] + difference_se(a["chi2_se"], b["chi2_se"])
    mmd_ok = a["mmd"] <= b["mmd"] + floors["mmd"].sd or at_floor(a["mmd"], floors["mmd"])
    return (chi2_ok or at_floor(a["chi2"], floors["chi2"])) and mmd_ok


def pc_comparisons(rows: dict[str, list], pc_steps: tuple[int, ...], doubled: bool
                   ) -> tuple[list[int], list[str]]:  # fmt: skip
    """PC at N steps against P at N (or 2N) steps, on chi2, for every SDE and N."""
    outcomes, parts = [], []
    for label, sde_rows in rows.items():
        for n in pc_steps:
            pc, p = _row(sde_rows, "PC", n), _row(sde_rows, "P", 2 * n if doubled else n)
            if pc is not None and p is not None:
                outcomes.append(chi2_better(pc, p))
                parts.append(f"{label} N={n}: {_chi2(pc)} vs {_chi2(p)}")
    return outcomes, parts


# --------------------------------------------------------------------------- the reproduction
class ScoreSDE2021(Reproduction):
    NAME = "score-sde-2021"
    TITLE = ("Score-Based Generative Modeling through Stochastic Differential Equations "
             "(Song, Sohl-Dickstein, Kingma, Kumar, Ermon, Poole)")  # fmt: skip
    REFERENCE = "ICLR 2021 (oral), arXiv:2011.13456"
    Settings = Settings
    QUICK = {"steps": 1200, "n_samples": 800, "n_nll": 300, "em_steps": (100, 250),
             "pc_steps": (50,), "heun_steps": (10, 25), "nll_tolerances": (1e-3, 1e-5),
             "n_plot": 800}  # fmt: skip
    SMOKE = {"steps": 20, "n_samples": 100, "n_nll": 8, "em_steps": (5,), "pc_steps": (3,),
             "heun_steps": (3,), "nll_tolerances": (1e-2,), "floor_pairs": 2, "rk45_tol": 1e-3,
             "n_plot": 100, "n_paths": 3, "path_steps": 4, "n_data": 1000}  # fmt: skip

    def run_experiments(self) -> dict[str, Any]:
        s = self.s
        configs = sde_configs(s)
        plan, ref = sampler_plan(s), reference(s.n_samples, REFERENCE_SEED)
        x_nll = reference(s.n_nll, NLL_SEED)
        log_p = mixture().log_prob(x_nll)
        trained, rows, samples, nll_rows, nats, paths = {}, {}, {}, {}, {}, {}
        for label, config in configs.items():
            model, normalizer, summary = self.train(config, label.lower().replace("-", ""))
            self.lap(f"training {label}")
            trained[label] = {"config": config, "summary": summary}
            rows[label], samples[label] = sweep(
                model, plan, s.n_samples, SAMPLE_SEED, to_data=normalizer.inverse,
                score=lambda x: score_samples(x, ref))  # fmt: skip
            nll_rows[label], nats[label] = nll_sweep(model, normalizer, x_nll,
                                                     s.nll_tolerances, log_p)  # fmt: skip
            paths[label] = {
                name: trajectories(model, sampler, s.path_steps, s.n_paths, 3, normalizer.inverse)
                for name, sampler in (("reverse SDE (EM)", "euler-maruyama"),
                                      ("probability-flow ODE (Heun)", "ode-heun"))
            }  # fmt: skip
            self.lap(f"evaluation {label}")
        floors = noise_floors(metrics(), reference, s.n_samples, s.floor_pairs, FLOOR_SEED)
        self.lap("noise floors")
        subvp = (paired_difference(nats["sub-VP"].tolist(), nats["VP"].tolist())
                 if {"sub-VP", "VP"} <= set(nats) else None)  # fmt: skip
        return {"trained": trained, "rows": rows, "samples": samples, "nll": nll_rows,
                "paths": paths, "floors": floors, "entropy": float(toy_entropy(TOY)),
                "subvp": subvp, "sigma_max": ve_sigma_max(configs["VP"]),
                "config": configs["VP"]}  # fmt: skip

    # ------------------------------------------------------------------ claims
    def add_claims(self, report: Report, r: dict[str, Any]) -> None:
        rows, floors = r["rows"], r["floors"]
        n = len(rows)
        # (1) every SDE learns the data: its longest EM run (fixed in advance) at the floor
        parts, at_all, at_sharp = [], 0, 0
        for label, sde_rows in rows.items():
            em = _longest(sde_rows, "EM")
            ok = {k: at_floor(em[k], floors[k]) for k in floors}
            at_all += all(ok.values())
            at_sharp += ok["mmd"] and ok["chi2"]
            parts.append(f"{label} ({_label(em)}): SW {fmt(em['sw'])}, MMD {fmt(em['mmd'])}, "
                         f"chi2 {_chi2(em)}")  # fmt: skip
        report.claim(
            "VE, VP and sub-VP SDEs all learn the data",
            "CIFAR-10: all three give state-of-the-art samples; best FID 2.20 (VE, NCSN++ cont. "
            "deep, PC sampler)",
            "; ".join(parts),
            f"floor levels (mean + {SIGNIFICANCE:g} sd): "
            + ", ".join(f"{k} {fmt(floor_level(floors[k.lower()]))}" for k in ("SW", "MMD"))
            + f", chi2 {fmt(floor_level(floors['chi2']))}"
            + f"; {at_all}/{n} SDEs at the floor on all three metrics, {at_sharp}/{n} on MMD "
            "and chi2",
            REPRODUCED if at_all == n else PARTLY if at_sharp == n or at_all else NOT,
        )
        # (2) PC beats the predictor alone, at equal predictor steps and at equal NFE
        for doubled, claim, paper in (
            (False, "PC sampling beats the predictor alone at equal predictor steps",
             "Table 1: reverse-diffusion PC1000 vs P1000, FID 3.21 vs 4.79 (VE/SMLD); smaller "
             "gains for VP/DDPM"),
            (True, "PC beats the predictor alone at equal NFE (PC N vs P 2N)",
             "Table 1: PC1000 beats P2000 (VE reverse diffusion: FID 3.21 vs 4.74)"),
        ):  # fmt: skip
            outcomes, parts = pc_comparisons(rows, self.s.pc_steps, doubled)
            wins, losses = outcomes.count(1), outcomes.count(-1)
            report.claim(
                claim, paper,
                f"mode chi2, PC(N) vs P({'2N' if doubled else 'N'}): " + "; ".join(parts),
                f"PC better in {wins}, worse in {losses}, within noise in "
                f"{len(outcomes) - wins - losses} of {len(outcomes)} comparisons (a difference "
                f"counts beyond {SIGNIFICANCE:g} combined bootstrap standard errors)",
                tally_verdict(outcomes),
            )  # fmt: skip
        # (3a) the ODE's likelihoods are close to the best possible (the entropy)
        best = {label: min(v, key=lambda row: row["tol"]) for label, v in r["nll"].items()}
        kls = [b["kl"] for b in best.values()]
        report.claim(
            "The probability-flow ODE gives exact, near-optimal likelihoods",
            "CIFAR-10: 2.99 bits/dim (deep sub-VP), a record for the time",
            "ODE NLL " + "; ".join(f"{label} {fmt(b['nll'])} +/- {fmt(b['nll_se'])} nats (NFE "
                                   f"{b['nfe']})" for label, b in best.items())
            + f"; entropy of the data {fmt(r['entropy'])} nats",
            "NLL - entropy (paired KL estimate): "
            + "; ".join(f"{label} {b['kl']:+.3f} +/- {b['kl_se']:.3f}" for label, b in best.items())
            + f" nats; thresholds {KL_GOOD} / {KL_FAIR}",
            REPRODUCED if max(kls) <= KL_GOOD else PARTLY if min(kls) <= KL_FAIR else NOT,
        )  # fmt: skip
        # (3b) sub-VP gives better likelihoods than VP (paired over the same points)
        if r["subvp"] is not None:
            mean, se = r["subvp"]
            outcome = compare(-mean, se)
            report.claim(
                "sub-VP gives better likelihoods than VP",
                "Table 2: sub-VP below VP for every architecture, e.g. DDPM++ cont. deep 2.99 vs "
                "3.13 bits/dim",
                f"NLL(sub-VP) - NLL(VP) on the same points: {mean:+.4f} +/- {se:.4f} nats",
                {1: "sub-VP lower (better)", -1: "VP lower (better)"}.get(
                    outcome, f"no difference beyond {SIGNIFICANCE:g} standard errors"),
                REPRODUCED if outcome == 1 else NOT,
            )  # fmt: skip
        # (4) the ODE reaches the longest EM run's quality with far fewer NFE
        parts, fewer = [], 0
        for label, sde_rows in rows.items():
            em = _longest(sde_rows, "EM")
            good = [x for x in sde_rows if x["family"].startswith("ODE") and as_good(x, em, floors)]
            if not good:
                parts.append(f"{label}: no ODE run matches EM {em['steps']}")
                continue
            ode = min(good, key=lambda x: x["nfe"])
            fewer += ode["nfe"] / em["nfe"] <= ODE_NFE_FRACTION
            parts.append(f"{label}: {_label(ode)} (NFE {ode['nfe']}, chi2 {_chi2(ode)}) vs EM "
                         f"{em['steps']} (NFE {em['nfe']}, chi2 {_chi2(em)})")  # fmt: skip
        rk45 = [x["nfe"] for v in rows.values() for x in v if x["family"] == "ODE RK45"]
        report.claim(
            "The probability-flow ODE needs far fewer NFE than SDE samplers",
            "Fig. 3 / Sec. 4.3: adaptive RK45 cuts NFE by over 90% at equal visual quality",
            "; ".join(parts) + f"; RK45 NFE {', '.join(map(str, rk45))}",
            f"{fewer}/{n} SDEs matched with at most {ODE_NFE_FRACTION:.0%} of the EM NFE "
            "(matched: chi2 within one combined standard error, MMD within one floor sd, or at "
            "the floor)",
            REPRODUCED if fewer == n else PARTLY if fewer else NOT,
        )

    # ------------------------------------------------------------------ sections
    def add_sections(self, report: Report, r: dict[str, Any]) -> None:
        s, rows, floors = self.s, r["rows"], r["floors"]
        report.section("Setup", self.prose("setup", r))
        equations = {label: eq for label, _, eq in SDES}
        report.table(
            ["SDE", "process", "options", "steps", "final loss", "train seconds"],
            [[label, f"{t['config'].process} ({equations[label]})",
              ", ".join(f"{k}={v}" for k, v in t["config"].process_options.items()) or "defaults",
              t["summary"].get("step"), t["summary"].get("loss"), t["summary"].get("train_seconds")]
             for label, t in r["trained"].items()],
        )  # fmt: skip
        report.section("Sample quality against network evaluations", self.prose("quality", r))
        floor_row = [f"{fmt(floors[k].mean)} +/- {fmt(floors[k].sd)}" for k in ("sw", "mmd", "chi2")]
        for label, sde_rows in rows.items():
            report.text(f"**{label} SDE**")
            report.table(
                ["sampler", "NFE", "SW", "MMD^2", "chi2/dof", "mode spread", "seconds"],
                [[_label(x), x["nfe"], x["sw"], x["mmd"], _chi2(x), x["spread"], x["seconds"]]
                 for x in sde_rows] + [["exact samples (floor)", "-", *floor_row, "1", "-"]],
            )  # fmt: skip
        report.figure(
            quality_vs_nfe_figure(rows, floors, (("mmd", f"MMD$^2$ (bandwidth {MMD_BANDWIDTH})"),
                                                 ("chi2", "mode $\\chi^2$/dof")),
                                  FAMILIES, floor_level, log_y=("chi2",)),
            "quality_vs_nfe.png",
            "Sample quality against NFE (log scale). Grey band: the exact-sample floor (mean +/- "
            f"sd); dashed: mean + {SIGNIFICANCE:g} sd.",
        )  # fmt: skip
        shown = largest_per_family(sampler_plan(s), FAMILIES)
        panels = []
        for label, by_run in r["samples"].items():
            panels.append((f"{label}: exact data", reference(s.n_plot, REFERENCE_SEED)))
            panels += [(f"{label}: {run.label}", by_run[run.label][: s.n_plot]) for run in shown]
        report.figure(
            scatter_panels(panels, ncols=len(shown) + 1, lim=4.2, size=2.4, point_size=1.5),
            "samples.png",
            "Samples per SDE (rows): exact data, then the largest setting of each sampler.",
        )
        report.section("Predictor against predictor-corrector (paper Table 1)",
                       self.prose("predictor-corrector", r))  # fmt: skip
        table = []
        for label, sde_rows in rows.items():
            for n in s.pc_steps:
                runs = [_row(sde_rows, "P", n), _row(sde_rows, "P", 2 * n), _row(sde_rows, "PC", n)]
                if all(x is not None for x in runs):
                    table.append([label, n, *(_chi2(x) for x in runs), *(x["mmd"] for x in runs)])
        report.table(["SDE", "N", "chi2 P(N)", "chi2 P(2N)", "chi2 PC(N)", "MMD P(N)",
                      "MMD P(2N)", "MMD PC(N)"], table)  # fmt: skip
        report.section("Likelihood by the probability-flow ODE", self.prose("likelihood", r))
        report.table(
            ["SDE", "rtol = atol", "NFE", "NLL (nats)", "+/- se", "NLL - entropy", "KL (paired)",
             "+/- se"],
            [[label, x["tol"], x["nfe"], x["nll"], x["nll_se"], x["nll"] - r["entropy"], x["kl"],
              x["kl_se"]] for label, v in r["nll"].items() for x in v],
        )  # fmt: skip
        if r["subvp"] is not None:
            report.text(f"Paired NLL difference sub-VP - VP on the same {s.n_nll} points: "
                        f"{r['subvp'][0]:+.4f} +/- {r['subvp'][1]:.4f} nats.")  # fmt: skip
        report.figure(
            trajectory_figure(r["paths"]),
            "trajectories.png",
            "First coordinate of the same prior draws along the reverse SDE (noisy paths) and the "
            "probability-flow ODE (smooth, deterministic paths), from t = 1 to 0.",
        )

    def record_metrics(self, r: dict[str, Any]) -> dict[str, Any]:
        m: dict[str, Any] = {"entropy": r["entropy"],
                             "floors": {k: f.to_dict() for k, f in r["floors"].items()}}
        for label, t in r["trained"].items():
            m[label] = {"config": t["config"].to_dict(),
                        "train_seconds": t["summary"].get("train_seconds"),
                        "final_loss": t["summary"].get("loss"), "samples": r["rows"][label],
                        "nll": r["nll"][label]}  # fmt: skip
        if r["subvp"] is not None:
            m["nll_subvp_minus_vp"] = {"mean": r["subvp"][0], "se": r["subvp"][1]}
        return m

    def text_values(self, r: dict[str, Any]) -> dict[str, Any]:
        config, s = r["config"], self.s
        default = Settings().steps
        return {
            "toy": TOY, "net": config.net_options, "config": config,
            "params": sum(p.numel() for p in build_model(config, dim=2).parameters()) / 1e6,
            "sigma_max": r["sigma_max"][0], "sigma_measured": r["sigma_max"][1],
            "floors": {k: f"{fmt(f.mean)} +/- {fmt(f.sd)}" for k, f in r["floors"].items()},
            "significance": f"{SIGNIFICANCE:g}", "bandwidth": MMD_BANDWIDTH,
            "reduced": (f" This is a reduced run ({s.steps} steps instead of {default}): its "
                        "models are undertrained, so its verdicts describe that scale only.")
            if s.steps < default else "",
        }  # fmt: skip


REPRODUCTION = ScoreSDE2021
reproduce = ScoreSDE2021.run
