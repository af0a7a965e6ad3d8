"""Score SDE (Song, Sohl-Dickstein, Kingma, Kumar, Ermon & Poole, ICLR 2021, arXiv:2011.13456),
reproduced on the 2-D ``8gaussians`` toy.

Diffusion as a forward SDE (eq. 5) whose time reversal (eq. 6) needs only the score of the
noised marginals, and whose *probability-flow ODE* (eq. 13) has the same marginals. Three forward
SDEs: VE (eq. 9, the limit of SMLD), VP (eq. 11, of DDPM) and sub-VP (eq. 12); one score model
per SDE, trained by denoising score matching (eq. 7) with ``lambda(t) = sigma(t)^2`` (our
eps-prediction MSE). Samplers (:mod:`diffusio.core.samplers`): Euler--Maruyama on eq. 6;
predictor--corrector (Algorithms 1-3: reverse-diffusion predictor, one Langevin corrector step
at ``snr``); the probability-flow ODE by Heun and by adaptive RK45 at the paper's tolerance and
looser ones (Fig. 3). Measured per SDE: sample quality against NFE (:mod:`diffusio.toy.sweep`,
scored by :mod:`diffusio.toy.scorer` against noise floors) and the ODE likelihood against the
data's exact entropy (:mod:`diffusio.toy.likelihood`). Each verdict comes from a rule registered
below with :func:`~diffusio.papers.verdicts.claim_rule`.
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
from . import verdicts
from .base import Reproduction
from .report import PaperNumber, Report, fmt
from .verdicts import SIGNIFICANCE, at_floor, claim_rule, compare, tally_verdict, win_verdict

__all__ = ["REPRODUCTION", "SDES", "ScoreSDE2021", "reproduce", "sampler_plan", "sde_configs",
           "ve_sigma_max"]  # fmt: skip

TOY, PRESET = "8gaussians", "toy-8gaussians"
#: MMD kernel width in data units: the std of each 8gaussians mode (0.5 / 1.414 = 0.354).
MMD_BANDWIDTH = 0.35
SAMPLE_SEED = 10  # prior and noise of every sampler run (common random numbers)
REFERENCE_SEED = 1  # the exact sample set model samples are compared with
FLOOR_SEED = 100  # exact sample-set pairs for the noise floor: seeds 100, 101, 102, ...
NLL_SEED = 7  # held-out data points for the ODE NLL
#: Our likelihood target (not the paper's): the ODE NLL's KL from the data, nats (see the rule).
KL_GOOD, KL_FAIR = 0.05, 0.2
#: Song et al. 2021, Sec. 4.3: a larger ODE error tolerance reduces the NFE "by over 90%".
NFE_CUT = 0.9
FAMILIES = ("EM", "P", "PC", "ODE Heun", "ODE RK45")
#: (label, process, equation) of the paper's three forward SDEs.
SDES = (("VP", "vp-linear", "eq. 11, beta 0.1 to 20"), ("sub-VP", "sub-vp", "eq. 12, beta 0.1 "
        "to 20"), ("VE", "ve", "eq. 9, sigma 0.01 to sigma_max"))  # fmt: skip
_SEEN = ("read in the ar5iv text of arXiv:2011.13456 (search index, code corpus, file id "
         "56372338934); Tables 1-3 also match a second transcription (id 56380550610)")


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
    rk45_tol: float = 1e-5  # rtol = atol of the RK45 sampler (the paper's): the reference
    rk45_loose: tuple[float, ...] = (1e-1, 1e-2, 1e-3)  # looser RK45 tolerances (Fig. 3)
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


class ToleranceRun(SamplerRun):
    """An adaptive RK45 run, labelled by its tolerance (rtol = atol)."""

    @property
    def label(self) -> str:
        return f"{self.family} tol {self.options['rtol']:g}"


def sampler_plan(settings: Settings) -> list[SamplerRun]:
    """Euler--Maruyama; the reverse-diffusion predictor alone (P) at N and 2N steps and with one
    Langevin corrector (PC) at N (Table 1's P1000 / P2000 / PC1000); the probability-flow ODE by
    Heun and by adaptive RK45, loosest tolerance first and the paper's (the reference) last."""
    s = settings
    plan = [SamplerRun("EM", "euler-maruyama", k) for k in s.em_steps]
    p_steps = sorted({k for n in s.pc_steps for k in (n, 2 * n)})
    plan += [SamplerRun("P", "pc", k, {"n_corrector": 0}) for k in p_steps]
    plan += [SamplerRun("PC", "pc", k, {"n_corrector": 1, "snr": s.snr}) for k in s.pc_steps]
    plan += [SamplerRun("ODE Heun", "ode-heun", k) for k in s.heun_steps]
    tols = sorted(set(s.rk45_loose) - {s.rk45_tol})[::-1] + [s.rk45_tol]
    plan += [ToleranceRun("ODE RK45", "ode-rk45", None, {"rtol": t, "atol": t}) for t in tols]
    return plan


def reference(n: int, seed: int) -> Tensor:
    """n exact toy samples (float64, data units)."""
    return sample_toy(TOY, n, seed=seed).to(torch.float64)


mixture = functools.cache(lambda: toy_mixture(TOY))  # one instance: mode statistics cached


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


# --------------------------------------------------------------------------- claim rules
def chi2_outcome(a: dict[str, Any], b: dict[str, Any]) -> int:
    """+1 / 0 / -1: run a's chi2 clearly below run b's, within the noise, clearly above (each
    run's bootstrap error combined: the se of the difference)."""
    return compare(b["chi2"] - a["chi2"], difference_se(a["chi2_se"], b["chi2_se"]))


_RUN, _BAD = {"chi2": 1.0, "chi2_se": 0.2}, {"chi2": 4.0, "chi2_se": 0.4}
_FLOORS = {"sw": (0.1, 0.03), "mmd": (0.0, 2e-4), "chi2": (1.0, 0.17)}


@claim_rule("score-sde-2021/every-sde-learns-the-data",
            supports={"runs": [{"sw": 0.12, "mmd": 1e-4, "chi2": 1.1}] * 3, "floors": _FLOORS},
            contradicts={"runs": [{"sw": 0.3, "mmd": 0.002, "chi2": 6.0}] * 3, "floors": _FLOORS})
def every_sde_learns(runs: list[dict[str, float]], floors: dict[str, tuple[float, float]]) -> str:
    """Each SDE's longest EM run at the exact-sample floor (``at_floor``; floors as (mean, sd))
    on every metric: all SDEs (reproduced), some (partly), none (not). Song et al., Table 3."""
    return tally_verdict([int(all(at_floor(x[k], NoiseFloor(*floors[k])) for k in floors))
                          for x in runs])  # fmt: skip


def pc_beats_p(pc: list[dict[str, float]], p: list[dict[str, float]]) -> str:
    """Pairs (PC, predictor alone): PC's chi2 clearly lower in every pair (reproduced), in some
    and never clearly higher (partly), else not (within the noise is no win). Table 1."""
    return tally_verdict([chi2_outcome(a, b) for a, b in zip(pc, p, strict=True)])


PC_EQUAL_STEPS, PC_EQUAL_NFE = (
    claim_rule(f"score-sde-2021/pc-beats-p-at-equal-{key}", supports={"pc": [_RUN] * 2,
               "p": [_BAD] * 2}, contradicts={"pc": [_BAD] * 2, "p": [_RUN] * 2})(pc_beats_p)
    for key in ("steps", "nfe"))  # fmt: skip


@claim_rule("score-sde-2021/ode-nll-near-entropy", supports={"kl": [0.02] * 3, "kl_se": [0.005] * 3},
            contradicts={"kl": [0.3] * 3, "kl_se": [0.01] * 3})
def ode_nll_near_entropy(kl: list[float], kl_se: list[float]) -> str:
    """Our target: every SDE's ODE NLL - entropy (its KL, paired) clearly below KL_GOOD (KL +
    SIGNIFICANCE se; an unknown se fails), partly below KL_FAIR."""
    worst = max(k + SIGNIFICANCE * (s if math.isfinite(s) else math.inf)
                for k, s in zip(kl, kl_se, strict=True))  # fmt: skip
    return verdicts.threshold_verdict(worst, KL_GOOD, KL_FAIR)


@claim_rule("score-sde-2021/subvp-beats-vp-nll", supports={"diff": -0.05, "se": 0.01},
            contradicts={"diff": -0.005, "se": 0.01})
def subvp_beats_vp(diff: float, se: float) -> str:
    """NLL(sub-VP) - NLL(VP), paired over the same points, clearly negative (Table 2)."""
    return win_verdict(-diff, se)


@claim_rule("score-sde-2021/ode-tolerance-cuts-nfe",
            supports={"cases": [{"ref": {"nfe": 200, **_RUN}, "runs": [{"nfe": 14, **_RUN}]}]},
            contradicts={"cases": [{"ref": {"nfe": 200, **_RUN},
                                    "runs": [{"nfe": 14, **_BAD}, {"nfe": 40, **_RUN}]}]})
def fewer_nfe_same_quality(cases: list[dict[str, Any]]) -> str:
    """Per case (SDE) a ``ref`` run and looser ``runs``: some run with over NFE_CUT fewer NFE
    and a chi2 not clearly worse (beyond SIGNIFICANCE se of the difference), in every case
    (reproduced), some (partly), none (not). Song et al. 2021, Sec. 4.3 / Fig. 3."""
    return tally_verdict([int(any(
        run["nfe"] < (1 - NFE_CUT) * case["ref"]["nfe"] and chi2_outcome(run, case["ref"]) >= 0
        for run in case["runs"])) for case in cases])  # fmt: skip


# --------------------------------------------------------------------------- row helpers
def _label(row: dict[str, Any]) -> str:
    if row.get("tol") is not None:
        return f"{row['family']} tol {row['tol']:g}"
    return row["family"] if row["steps"] is None else f"{row['family']} {row['steps']}"


def _chi2(row: dict[str, Any]) -> str:
    return f"{fmt(row['chi2'])} +/- {fmt(row['chi2_se'])}"


def _row(rows: list[dict[str, Any]], family: str, steps: int | None) -> dict[str, Any] | None:
    return next((r for r in rows if r["family"] == family and r["steps"] == steps), None)


def _longest_em(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return max((r for r in rows if r["family"] == "EM"), key=lambda r: r["nfe"])


# --------------------------------------------------------------------------- the reproduction
class ScoreSDE2021(Reproduction):
    NAME = "score-sde-2021"
    TITLE = ("Score-Based Generative Modeling through Stochastic Differential Equations "
             "(Song, Sohl-Dickstein, Kingma, Kumar, Ermon, Poole)")  # fmt: skip
    REFERENCE = "ICLR 2021 (oral), arXiv:2011.13456"
    Settings = Settings
    QUICK = {"steps": 1200, "n_samples": 800, "n_nll": 300, "em_steps": (100, 250),
             "pc_steps": (50,), "heun_steps": (10, 25), "nll_tolerances": (1e-3, 1e-5),
             "rk45_loose": (1e-1, 1e-3), "n_plot": 800}  # fmt: skip
    SMOKE = {"steps": 20, "n_samples": 100, "n_nll": 8, "em_steps": (5,), "pc_steps": (3,),
             "heun_steps": (3,), "nll_tolerances": (1e-2,), "floor_pairs": 2, "rk45_tol": 1e-3,
             "rk45_loose": (1e-1,), "n_plot": 100, "n_paths": 3, "path_steps": 4,
             "n_data": 1000}  # fmt: skip
    PAPER_NUMBERS = tuple(PaperNumber(*row, verified=True, note=_SEEN) for row in (
        ("FID, NCSN++ cont. deep (VE) / DDPM++ cont. deep (VP, sub-VP)", "2.20 / 2.41, 2.41",
         "Table 3"), ("IS, NCSN++ cont. (deep, VE)", "9.89", "Table 3"),
        ("FID, VE reverse diffusion P1000 / P2000 / PC1000", "4.79 / 4.74 / 3.60", "Table 1"),
        ("FID, VP reverse diffusion P1000 / P2000 / PC1000", "3.21 / 3.19 / 3.18", "Table 1"),
        ("NLL bits/dim VP vs sub-VP: DDPM cont. / DDPM++ cont. / DDPM++ cont. deep",
         "3.21 vs 3.05 / 3.16 vs 3.02 / 3.13 vs 2.99", "Table 2"),
        ("NFE cut by a larger ODE tolerance, visual quality unchanged", "over 90%", "Sec. 4.3"),
        ("VP / sub-VP beta_min, beta_max", "0.1, 20", "App. C"), ("VE sigma_min", "0.01", "App. C"),
        ("corrector snr r, VE reverse-diffusion PC1000", "0.16", "App. G Table 5, App. H.1"),
        ("RK45 rtol = atol (likelihoods, ODE samples)", "1e-5", "App. D.2, D.4"),
        ("training iterations (architecture exploration)", "1.3M", "App. H.1"),
    ))  # fmt: skip

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
            for run, row in zip(plan, rows[label], strict=True):
                row["tol"] = run.options["rtol"] if isinstance(run, ToleranceRun) else None
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
        subvp = paired_difference(nats["sub-VP"].tolist(), nats["VP"].tolist())
        return {"trained": trained, "rows": rows, "samples": samples, "nll": nll_rows,
                "paths": paths, "floors": floors, "entropy": float(toy_entropy(TOY)),
                "subvp": subvp, "sigma_max": ve_sigma_max(configs["VP"]),
                "config": configs["VP"]}  # fmt: skip

    # ------------------------------------------------------------------ claims
    def add_claims(self, report: Report, r: dict[str, Any]) -> None:
        rows, floors, s, sig = r["rows"], r["floors"], self.s, f"{SIGNIFICANCE:g}"
        # (1) every SDE learns the data: its longest EM run (fixed in advance) at the floor
        ems = {label: _longest_em(v) for label, v in rows.items()}
        at = [label for label, em in ems.items() if all(at_floor(em[k], floors[k]) for k in floors)]
        report.claim(
            "VE, VP and sub-VP SDEs all learn the data", "Table 3: all three SDEs give "
            "state-of-the-art CIFAR-10 samples (FID 2.20 VE, 2.41 VP and sub-VP; deep models)",
            "; ".join(f"{label} ({_label(em)}): SW {fmt(em['sw'])}, MMD {fmt(em['mmd'])}, chi2 "
                      f"{_chi2(em)}" for label, em in ems.items()),
            f"at the floor (below mean + {sig} sd: " + ", ".join(
                f"{k} {fmt(floor_level(f))}" for k, f in floors.items())
            + f") on every metric: {', '.join(at) or 'none'} of {len(rows)} SDEs",
            every_sde_learns(runs=[{k: em[k] for k in floors} for em in ems.values()],
                             floors={k: (f.mean, f.sd) for k, f in floors.items()}),
        )  # fmt: skip
        # (2) PC beats the predictor alone, at equal predictor steps (P N) and equal NFE (P 2N)
        for k, rule, claim, vs in ((1, PC_EQUAL_STEPS, "at equal predictor steps", "P1000 FID "
                                    "3.60 vs 4.79 (VE), 3.18 vs 3.21 (VP)"),
                                   (2, PC_EQUAL_NFE, "at equal NFE (PC N vs P 2N)", "P2000 FID "
                                    "3.60 vs 4.74 (VE), 3.18 vs 3.19 (VP)")):  # fmt: skip
            pairs = [(label, n, _row(v, "PC", n), _row(v, "P", k * n))
                     for label, v in rows.items() for n in s.pc_steps]  # fmt: skip
            pairs = [x for x in pairs if x[2] is not None and x[3] is not None]
            outcomes = [chi2_outcome(pc, p) for *_, pc, p in pairs]
            report.claim(
                f"PC sampling beats the predictor alone {claim}",
                f"Table 1, reverse diffusion: PC1000 vs {vs}",
                f"mode chi2, PC(N) vs P({k if k > 1 else ''}N): " + "; ".join(
                    f"{label} N={n}: {_chi2(pc)} vs {_chi2(p)}" for label, n, pc, p in pairs),
                f"PC clearly better in {outcomes.count(1)}, clearly worse in {outcomes.count(-1)}, "
                f"not shown (within noise) in {outcomes.count(0)} of {len(outcomes)} pairs (beyond "
                f"{sig} se of the difference, from each run's bootstrap)",
                rule(pc=[x[2] for x in pairs], p=[x[3] for x in pairs]),
            )  # fmt: skip
        # (3a) our target: the ODE's likelihoods are close to the best possible (the entropy)
        best = {label: min(v, key=lambda row: row["tol"]) for label, v in r["nll"].items()}
        report.claim(
            "The probability-flow ODE's exact likelihood is near the data's entropy",
            "exact likelihoods through eq. 13 (Sec. 4.3); CIFAR-10 2.99 bits/dim (Table 2)",
            "ODE NLL " + "; ".join(f"{label} {fmt(b['nll'])} +/- {fmt(b['nll_se'])} nats (NFE "
                                   f"{b['nfe']})" for label, b in best.items())
            + f"; entropy of the data {fmt(r['entropy'])} nats",
            "NLL - entropy (paired KL estimate): " + "; ".join(
                f"{label} {b['kl']:+.3f} +/- {b['kl_se']:.3f}" for label, b in best.items())
            + f" nats; our target: KL + {sig} se below {KL_GOOD} (partly: {KL_FAIR})",
            ode_nll_near_entropy(kl=[b["kl"] for b in best.values()],
                                 kl_se=[b["kl_se"] for b in best.values()]), main=False,
        )  # fmt: skip
        # (3b) sub-VP gives better likelihoods than VP (paired over the same points)
        mean, se = r["subvp"]
        report.claim(
            "sub-VP gives better likelihoods than VP", "Table 2: sub-VP below VP for every "
            "architecture: 3.05 vs 3.21, 3.02 vs 3.16, 2.99 vs 3.13 bits/dim",
            f"NLL(sub-VP) - NLL(VP) on the same {s.n_nll} points: {mean:+.4f} +/- {se:.4f} nats",
            {1: "sub-VP clearly lower (better)", -1: "VP clearly lower (better)"}.get(
                compare(-mean, se), f"not shown (within noise: below {sig} se)"),
            subvp_beats_vp(diff=mean, se=se),
        )  # fmt: skip
        # (4) a larger ODE tolerance: over 90% fewer NFE than at the paper's 1e-5, same quality
        rk45 = [[x for x in v if x.get("tol") is not None] for v in rows.values()]
        refs = [next(x for x in runs if x["tol"] == s.rk45_tol) for runs in rk45]
        report.claim(
            "A larger ODE solver tolerance cuts the NFE by over 90% without losing sample quality",
            "Sec. 4.3 / Fig. 3: \"the number of function evaluations can be reduced by over 90% "
            "without affecting the visual quality of samples\"",
            "RK45: " + "; ".join(f"{label}: " + ", ".join(
                f"tol {x['tol']:g} NFE {x['nfe']} ({x['nfe'] / ref['nfe']:.0%}), chi2 {_chi2(x)}"
                for x in runs) for label, runs, ref in zip(rows, rk45, refs, strict=True)),
            f"needed per SDE: a looser run under {1 - NFE_CUT:.0%} of the NFE at rtol = atol = "
            f"{s.rk45_tol:g} whose chi2 is not clearly worse (beyond {sig} se of the difference)",
            fewer_nfe_same_quality(cases=[{"ref": ref, "runs": [x for x in runs if x is not ref]}
                                          for runs, ref in zip(rk45, refs, strict=True)]),
        )  # fmt: skip

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
        report.section("Likelihood by the probability-flow ODE", self.prose("likelihood", r))
        report.table(
            ["SDE", "rtol = atol", "NFE", "NLL (nats)", "+/- se", "NLL - entropy", "KL (paired)",
             "+/- se"],
            [[label, x["tol"], x["nfe"], x["nll"], x["nll_se"], x["nll"] - r["entropy"], x["kl"],
              x["kl_se"]] for label, v in r["nll"].items() for x in v],
        )  # fmt: skip
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
            "loose": ", ".join(f"{t:g}" for t in sorted(set(s.rk45_loose) - {s.rk45_tol})[::-1]),
            "reduced": f" This is a reduced run ({s.steps} steps instead of {default}): its "
                       "verdicts describe that scale only." if s.steps < default else "",
        }  # fmt: skip


REPRODUCTION = ScoreSDE2021
reproduce = ScoreSDE2021.run
