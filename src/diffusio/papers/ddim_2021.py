"""Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models" (ICLR 2021, arXiv:2010.02502):
the reproduction ``ddim-2021``, on scikit-learn's 8x8 digits.

DDIM samples DDPM's network with non-Markovian processes indexed by eta (eq. 12, 16) on S of the
T = 1000 steps: eta = 1 is DDPM with the posterior variance, eta = 0 an Euler step of an ODE.
Checked on ``ddpm-2020``'s L_simple network (one cache entry), each verdict by a registered
claim rule: Table 1 (digits-FID, seed means ± se), our targets against the model's best long-run
sampler, consistency (Sec. 5.2), reconstruction (Table 2) and interpolation (Fig. 6).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..image.analysis import TINY_UNET, digits_recipe, digits_splits
from ..image.ddim import class_agreement, interpolate, reconstruction_errors
from ..image.sampling import sample_images
from ..metrics.fid import ImageEvaluator
from ..metrics.neighbours import memorisation
from ..metrics.stats import binomial_se, difference_se
from ..plotting import columns_figure, image_panels, new_figure
from . import verdicts
from .base import Reproduction
from .report import PaperNumber, Report, fmt
from .runs import pick_device
from .verdicts import MIN_SEEDS, NOT, PARTLY, REPRODUCED, SIGNIFICANCE, claim_rule, compare

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["DDIM2021", "REPRODUCTION", "Settings", "borrowed_ancestral", "consistency",
           "eta0_beats_eta1", "reconstruction", "reproduce", "within"]  # fmt: skip

SIMPLE, DDPM = "L_simple", "ddpm-2020"  # ddpm-2020's L_simple model: same label, same cache entry
#: Paper Table 1, CIFAR-10 FID by eta and S; SIGMA_HAT: DDPM with the larger variance, S = 1000.
PAPER_TABLE1 = {
    0.0: {10: 13.36, 20: 6.84, 50: 4.67, 100: 4.16, 1000: 4.04},
    0.5: {10: 16.66, 20: 8.35, 50: 5.25, 100: 4.46, 1000: 4.29},
    1.0: {10: 41.07, 20: 18.36, 50: 8.01, 100: 5.78, 1000: 4.73},
}
SIGMA_HAT = 3.17
#: Paper Table 2, CIFAR-10 reconstruction error (per-dimension MSE, [0, 1] scale), by S.
PAPER_TABLE2 = {10: 0.014, 20: 0.0065, 50: 0.0023, 100: 0.0009, 200: 0.0004}
_SEEN = "checked in the paper's text (ar5iv of arXiv:2010.02502), a stored copy found with search"
PAPER_NUMBERS = (
    *(PaperNumber(f"CIFAR-10 FID, eta = {eta:g}, S = 10/20/50/100/1000",
                  " / ".join(f"{v:g}" for v in row.values()), "Table 1", True, _SEEN)
      for eta, row in PAPER_TABLE1.items()),
    PaperNumber("CIFAR-10 FID, DDPM with sigma-hat (larger variance), S = 1000", "3.17",
                "Table 1", True, _SEEN + "; the paper's lowest 1000-step FID"),
    PaperNumber("CIFAR-10 reconstruction MSE, S = 10/20/50/100/200",
                " / ".join(f"{v:g}" for v in PAPER_TABLE2.values()), "Table 2", True, _SEEN),
    PaperNumber("sub-sequence selection on CIFAR-10", "quadratic, tau_i = floor(c i^2)",
                "App. D.2", True, _SEEN + " ('linear' for the other datasets)"),
    PaperNumber("CIFAR-10 network", "DDPM's pretrained checkpoint (35.7M parameters, 800k steps)",
                "App. D.1; DDPM App. B", True, _SEEN + "; the sizes from DDPM's App. B"),
)  # fmt: skip
DDIM_TARGET = 0.10  # issue: DDIM at the headline S within 10% of the best 1000-step FID
SOLVER_TARGET = 0.20  # issue: DPM-Solver++ with 10-20 steps within 20%
CONSISTENT = 0.8  # class agreement with the long-run sample that counts as consistent
RECON_SMALL = 0.01  # reconstruction MSE at the largest S below the paper's S = 10-20 level


@dataclass(frozen=True)
class Settings:
    """Every knob (quick and default differ in sizes): ddpm-2020's recipe (``preset``, ...);
    ``n_samples`` per (eta in ``etas``, S in ``steps``) over ``fid_seeds`` seeds for
    ``seeded_etas`` (else one), one seed at ``long_steps`` for ``long_etas``, DPM-Solver++ at
    ``solver_steps`` over ``fid_seeds``; the targets' DDIM S is ``headline_steps``."""

    preset: str = "digits-ddpm"
    train_steps: int = 4000
    net_options: dict[str, Any] | None = None
    batch_size: int | None = None
    n_samples: int = 359
    steps: tuple[int, ...] = (10, 20, 50, 100)
    long_steps: int = 1000
    etas: tuple[float, ...] = (0.0, 0.5, 1.0)
    seeded_etas: tuple[float, ...] = (0.0, 1.0)
    long_etas: tuple[float, ...] = (0.0, 1.0)
    solver_steps: tuple[int, ...] = (10, 20)
    headline_steps: int = 50
    fid_seeds: int = 5
    recon_steps: tuple[int, ...] = (10, 20, 50, 100, 200)
    recon_n: int = 359
    interp_rows: int = 6
    interp_cols: int = 9
    interp_steps: int = 50
    grid_rows: int = 8
    seed: int = 0


# --------------------------------------------------------------------------- claim rules
@claim_rule("ddim-2021/eta0-beats-eta1", supports={"gains": [20.0, 5.0], "ses": [1.0, 1.0]},
            contradicts={"gains": [20.0, -3.0], "ses": [1.0, 1.0]})
def eta0_beats_eta1(gains: list[float], ses: list[float]) -> str:
    """eta = 0 lower FID than eta = 1 at each S (Table 1: at every S); ``gains`` = FID(eta=1) -
    FID(eta=0) with their se: all clear wins (reproduced), some and no clear loss (partly)."""
    return verdicts.tally_verdict([compare(g, se) for g, se in zip(gains, ses, strict=True)])


def within(values: list[float], ses: list[float], reference: float, reference_se: float,
           target: float) -> str:
    """Each value clearly below ``(1 + target)`` times the reference (beyond SIGNIFICANCE se of
    the difference, both sides' seed spreads): all (reproduced), some (partly), none (not)."""
    bound, bound_se = (1 + target) * reference, (1 + target) * reference_se
    return verdicts.tally_verdict([compare(bound - v, difference_se(se, bound_se))
                          for v, se in zip(values, ses, strict=True)])  # fmt: skip


_IN, _OUT = ({"values": [v], "ses": [0.2], "reference": 10.0, "reference_se": 0.2} for v in (10, 13))
ddim_within, solver_within = (
    claim_rule(name, supports={**_IN, "target": x}, contradicts={**_OUT, "target": x})(within)
    for name, x in (("ddim-2021/ddim-within-10pct", DDIM_TARGET),
                    ("ddim-2021/solver-within-20pct", SOLVER_TARGET)))  # fmt: skip


@claim_rule("ddim-2021/consistency", supports={"det": [0.92, 0.97], "sto": [0.1, 0.1], "n": 359},
            contradicts={"det": [0.3, 0.4], "sto": [0.1, 0.1], "n": 359})
def consistency(det: list[float], sto: list[float], n: int) -> str:
    """Same x_T, any S (Sec. 5.2, Fig. 5): eta = 0's digit matches the long run's clearly above
    CONSISTENT and above eta = 1's (binomial se) at each of the smallest S, or some (partly)."""
    def shown(a: float, b: float) -> bool:
        se_a, se_b = binomial_se(a, n), binomial_se(b, n)
        return a - SIGNIFICANCE * se_a > CONSISTENT and compare(a - b, difference_se(se_a, se_b)) > 0

    hits = [shown(a, b) for a, b in zip(det, sto, strict=True)]
    return REPRODUCED if hits and all(hits) else PARTLY if any(hits) else NOT


@claim_rule("ddim-2021/reconstruction",
            supports={"mses": [0.01, 0.004, 0.001], "ses": [5e-4, 3e-4, 1e-4]},
            contradicts={"mses": [0.01, 0.012, 0.011], "ses": [5e-4, 5e-4, 5e-4]})
def reconstruction(mses: list[float], ses: list[float]) -> str:
    """Encode and decode with the eta = 0 ODE (Sec. 5.4, Table 2): the error falls clearly, rises
    clearly nowhere, ends clearly below RECON_SMALL (else partly)."""
    diff = [compare(a - b, difference_se(sa, sb))
            for a, b, sa, sb in zip(mses, mses[1:], ses, ses[1:], strict=False)]  # fmt: skip
    if len(mses) < 2 or -1 in diff or compare(mses[0] - mses[-1],
                                              difference_se(ses[0], ses[-1])) < 1:  # fmt: skip
        return NOT
    return REPRODUCED if mses[-1] + SIGNIFICANCE * ses[-1] < RECON_SMALL else PARTLY


def borrowed_ancestral(dep: dict | None, run_dir: str, steps: int) -> dict[str, Any] | None:
    """The L_simple model's ancestral FIDs over seeds in ddpm-2020's metrics ``dep``, when they
    are of this very network (the same cached run) at ``steps`` steps; else None."""
    res = ((dep or {}).get("metrics") or {}).get("models", {}).get(SIMPLE) or {}
    anc, same = res.get("fid_ancestral"), Path(str((res.get("train") or {}).get("run_dir")))
    if not isinstance(anc, dict) or res.get("ancestral_steps") != steps or same.name != Path(
            str(run_dir)).name:  # fmt: skip
        return None
    fids = [f for f in anc.get("fids", []) if f is not None]  # None: a NaN in strict JSON
    return {"fids": fids, "seeds": anc.get("seeds"), "quick": dep.get("quick")} if fids else None


def _pm(row: dict[str, Any] | None) -> str:
    """``mean ± se`` of a row of FIDs over seeds, or the mean and its number of seeds."""
    if row is None:
        return "-"
    n = len(row["fids"])
    if math.isfinite(row["se"]):
        return f"{row['fid']:.2f} ± {row['se']:.2f}"
    return f"{row['fid']:.2f} ({n} seed{'s' if n > 1 else ''})"


class DDIM2021(Reproduction):
    """Default: ddpm-2020's model, about 4,000 sampling evaluations of 359 images and the
    reconstructions: about 12 minutes. Quick: 500 steps, eta in {0, 1}, S <= 50, 250 long."""

    NAME = "ddim-2021"
    TITLE = "Denoising Diffusion Implicit Models (Song, Meng & Ermon, 2021)"
    REFERENCE = ("Jiaming Song, Chenlin Meng and Stefano Ermon. *Denoising Diffusion Implicit "
                 "Models.* ICLR 2021, arXiv:2010.02502 (DDIM).")
    DEPENDS = (DDPM,)
    Settings = Settings
    PAPER_NUMBERS = PAPER_NUMBERS
    QUICK = {"train_steps": 500, "etas": (0.0, 1.0), "steps": (10, 20, 50), "long_steps": 250,
             "recon_steps": (10, 20, 50, 100), "recon_n": 64}  # fmt: skip
    SMOKE = {"train_steps": 3, "net_options": TINY_UNET, "batch_size": 8, "n_samples": 12,
             "steps": (2, 4), "long_steps": 8, "solver_steps": (3,), "headline_steps": 4,
             "fid_seeds": 2, "recon_steps": (3, 6), "recon_n": 4, "interp_rows": 2,
             "interp_cols": 3, "interp_steps": 3, "grid_rows": 3}  # fmt: skip

    def recipe(self) -> Any:
        """ddpm-2020's L_simple recipe at these settings (the same config, the same cache)."""
        s = self.s
        return digits_recipe(s.preset, s.train_steps, s.net_options, s.batch_size, s.seed)

    # ------------------------------------------------------------------ experiments
    def run_experiments(self) -> dict[str, Any]:
        s = self.s
        self.log(f"training {SIMPLE} ({s.train_steps} steps, the model of {DDPM})")
        model, _, summary = self.train(self.recipe(), SIMPLE)
        model = model.to(device := pick_device())
        self.lap("training")
        evaluator, data = ImageEvaluator("digits"), digits_splits()
        shape, n = tuple(data["train"].shape[1:]), min(s.n_samples, evaluator.test_size)
        sampled = self.run_sampling(model, evaluator, data)
        self.lap("sampling")
        recon = reconstruction_errors(model, data["test"][: s.recon_n], s.recon_steps,
                                      s.grid_rows, self.progress)  # fmt: skip
        self.lap("reconstruction")
        gen = torch.Generator().manual_seed(s.seed + 77)
        z0, z1 = (torch.randn((s.interp_rows, *shape), generator=gen) for _ in range(2))
        interp = interpolate(model, z0, z1, s.interp_cols, s.interp_steps, evaluator.confidence)
        self.lap("interpolation")
        borrowed = borrowed_ancestral(self.dependency_results(DDPM), summary["run_dir"],
                                      s.long_steps)  # fmt: skip
        return {**sampled, "recon": recon, "interp": interp, "floor": evaluator.noise_floor(n),
                "consistency": class_agreement(sampled["classes"], s.long_etas, s.steps,
                                               s.long_steps),
                "test_memorisation": memorisation(data["test"][:n], data["train"],
                                                  data["test_distances"]),
                "feature_space": evaluator.feature_space, "summary": summary, "borrowed": borrowed,
                "refs": long_references(sampled, borrowed, s.long_steps), "device": str(device),
                "params": sum(p.numel() for p in model.parameters()),
                "train_size": len(data["train"])}  # fmt: skip

    def run_sampling(self, model: Any, evaluator: ImageEvaluator, data: dict) -> dict[str, Any]:
        """Every DDIM and DPM-Solver++ run: FIDs by seed with their mean and se, the first seed's
        confidence, classes (the consistency table) and first ``grid_rows`` images."""
        s, shape = self.s, tuple(data["train"].shape[1:])
        ddim_rows, solver_rows, images, classes = [], [], {}, {}
        plan = [("ddim", eta, S, s.fid_seeds if eta in s.seeded_etas else 1)
                for eta in s.etas for S in s.steps]  # fmt: skip
        plan += [("ddim", eta, s.long_steps, 1) for eta in s.long_etas if s.long_steps not in s.steps]
        for sampler, eta, S, n_seeds in plan + [("dpm-solver++", None, S, s.fid_seeds)
                                                for S in s.solver_steps]:  # fmt: skip
            seeds = [s.seed + 1000 * k for k in range(max(n_seeds, 1))]
            self.log(f"  {sampler} eta = {eta}, S = {S}, {len(seeds)} seed(s)")
            options, start = {} if eta is None else {"eta": eta}, time.perf_counter()
            xs = [sample_images(model, s.n_samples, shape, sampler, S, seed, progress=self.progress,
                                **options) for seed in seeds]  # fmt: skip
            fids, first = [evaluator.fid(x) for x in xs], xs[0]
            mean, se = verdicts.seed_mean(fids)
            row = {"steps": S, "seeds": seeds, "fids": fids, "fid": mean, "se": se,
                   "seconds": (time.perf_counter() - start) / len(seeds),
                   "confidence": evaluator.confidence(first)}  # fmt: skip
            if eta is None:
                solver_rows.append(row)
                images[f"dpm-solver++ {S}"] = first[: s.grid_rows]
                continue
            ddim_rows.append({"eta": eta, **row})
            if eta == 0.0 and S in (s.headline_steps, s.long_steps):
                ddim_rows[-1]["memorisation"] = memorisation(first, data["train"],
                                                             data["test_distances"])
            classes[(eta, S)] = evaluator.predict(first)
            images.update({S: first[: s.grid_rows]} if eta == 0.0 else {})
        return {"ddim": ddim_rows, "solver": solver_rows, "images": images, "classes": classes}

    # ------------------------------------------------------------------ claims
    def add_claims(self, report: Report, r: dict[str, Any]) -> None:
        s, p, refs = self.s, PAPER_TABLE1, r["refs"]
        if d := r["borrowed"]:
            report.borrow(DDPM, f"{s.long_steps}-step ancestral FIDs of this network, {len(d['fids'])} seeds")
        pairs = [(S, _row(r, 0.0, S), _row(r, 1.0, S)) for S in s.steps]
        pairs = [(S, a, b, b["fid"] - a["fid"], difference_se(a["se"], b["se"]))
                 for S, a, b in pairs if a is not None and b is not None]  # fmt: skip
        long = "; ".join(f"S={s.long_steps}: {ref['text']}" for ref in refs)
        report.claim(
            "DDIM (eta = 0) gives better samples than DDPM's eta = 1 with the same number of steps",
            "Table 1 (CIFAR-10), eta=0 vs eta=1, lower at every S: "
            + ", ".join(f"S={S}: {p[0.0][S]} vs {p[1.0][S]}" for S in p[0.0]),
            f"digits-FID eta=0 vs eta=1 (mean ± se, {s.fid_seeds} seeds each): " + ", ".join(
                f"S={S}: {_pm(a)} vs {_pm(b)}" for S, a, b, _, _ in pairs) + f"; {long} (not judged)",
            "eta=1 - eta=0: " + ", ".join(f"S={S}: {g:+.2f} ± {fmt(se)} ({_WORDS[compare(g, se)]})"
                                         if math.isfinite(se) else f"S={S}: {g:+.2f} (no spread)"
                                         for S, _, _, g, se in pairs),
            eta0_beats_eta1(gains=[q[3] for q in pairs], ses=[q[4] for q in pairs]),
        )  # fmt: skip
        head, best = _row(r, 0.0, s.headline_steps), refs[0] if refs else None
        targets = [(f"DDIM (eta = 0) with {s.headline_steps} steps", [head] if head else [],
                    DDIM_TARGET, ddim_within,
                    f"Table 1 (CIFAR-10): {p[0.0][50]} at S=50 vs {p[0.0][1000]} for eta=0 at "
                    f"S=1000 ({p[0.0][50] / p[0.0][1000] - 1:+.0%}; the better of eta = 0, 1 there) "
                    f"and {SIGMA_HAT} for DDPM with sigma-hat ({p[0.0][50] / SIGMA_HAT - 1:+.0%}; "
                    "the paper's lowest 1000-step FID)"),
                   (f"DPM-Solver++ with {'/'.join(str(row['steps']) for row in r['solver'])} steps",
                    r["solver"], SOLVER_TARGET, solver_within,
                    "not in the paper (DPM-Solver++: Lu et al. 2022); Table 1 needs S=100 for DDIM "
                    f"to come within {p[0.0][100] / p[0.0][1000] - 1:.0%} of eta=0's S=1000")]
        for what, rows, target, rule, paper in [q for q in targets if q[1] and best]:
            report.claim(
                f"{what} within {target:.0%} of the model's best {s.long_steps}-step FID (target "
                "of our issue)", paper,
                ", ".join(f"S={row['steps']}: {_pm(row)}" for row in rows)
                + f"; reference (the lowest {s.long_steps}-step FID with a seed spread): {best['text']}",
                "; ".join(f"vs {ref['name']}: " + ", ".join(
                    f"{row['fid'] / ref['fid'] - 1:+.0%}" for row in rows) for ref in refs)
                + ("" if math.isfinite(best["se"]) else "; no seed spread of the reference: "
                   "not shown"),
                rule(values=[row["fid"] for row in rows], ses=[row["se"] for row in rows],
                     reference=best["fid"], reference_se=best["se"], target=target), main=False,
            )  # fmt: skip
        rows = r["consistency"]
        agree = {(row["eta"], row["steps"]): row["agreement"] for row in rows}
        few = [S for S in s.steps if (0.0, S) in agree and (1.0, S) in agree][:2]
        report.claim(
            "DDIM samples from the same x_T keep their high-level features across S (consistency)",
            "Sec. 5.2, Fig. 5: S=10 .. 1000 from one x_T look alike (qualitative); not so for DDPM",
            f"class agreement with the S={s.long_steps} sample from the same x_T (first seed): "
            + ", ".join(f"eta={row['eta']:g} S={row['steps']} {row['agreement']:.2f}" for row in rows),
            (f"chance {rows[0]['chance']:.2f}; " if rows else "") + f"consistent: clearly above "
            f"{CONSISTENT} and eta = 1's at S = " + ("/".join(map(str, few)) or "- (no eta = 1)"),
            consistency(det=[agree[(0.0, S)] for S in few], sto=[agree[(1.0, S)] for S in few],
                        n=s.n_samples),
        )  # fmt: skip
        recon = r["recon"]["rows"]
        report.claim(
            "DDIM encodes and decodes deterministically; the reconstruction error falls with S",
            "Table 2 (CIFAR-10): " + ", ".join(f"S={k}: {v}" for k, v in PAPER_TABLE2.items()),
            ", ".join(f"S={row['steps']}: {row['mse']:.2g} ± {row['mse_se']:.1g}" for row in recon),
            f"per-dimension MSE on the [0, 1] scale, {min(s.recon_n, 359)} test digits; small: "
            f"clearly below {RECON_SMALL} at the largest S",
            reconstruction(mses=[row["mse"] for row in recon], ses=[row["mse_se"] for row in recon]),
        )  # fmt: skip

    # ------------------------------------------------------------------ sections
    def add_sections(self, report: Report, r: dict[str, Any]) -> None:
        s = self.s
        report.section("Sample quality against steps (Table 1)", self.prose("quality", r))
        cols = sorted({*s.steps, *(row["steps"] for row in r["solver"]), s.long_steps})
        solver = {row["steps"]: row for row in r["solver"]}
        rows = [[f"DDIM eta = {eta:g}"] + [_pm(_row(r, eta, S)) for S in cols] for eta in s.etas]
        rows.append(["DPM-Solver++"] + [_pm(solver.get(S)) for S in cols])
        rows += [[ref["name"]] + ["-"] * (len(cols) - 1) + [_pm(ref)] for ref in r["refs"]
                 if "from" in ref["name"]]  # fmt: skip
        rows += [[f"paper (CIFAR-10), eta = {eta:g}"] + [_paper(paper.get(S)) for S in cols]
                 for eta, paper in PAPER_TABLE1.items()]  # fmt: skip
        report.table(["sampler"] + [f"S = {S}" for S in cols], rows)
        report.figure(fid_figure(r, s), "fid_vs_steps.png",
                      "Digits-FID against the steps (bars: ± 1 se over seeds).")
        mem = [(f"DDIM eta = 0, S = {row['steps']}", row["memorisation"]) for row in r["ddim"]
               if "memorisation" in row]  # fmt: skip
        report.table(["images (first seed)", "median nearest-training distance", "ratio to test",
                      "below the test digits' 5th pct."], [[k, *(m[q] for q in ("median", "ratio",
                      "below_test_p5"))] for k, m in [("test digits", r["test_memorisation"]), *mem]])
        report.section("Sample consistency (Sec. 5.2, Fig. 5)", self.prose("consistency", r))
        report.table(["eta", "S", "agreement with the long run", "± se", "chance"], [
            [f"{q['eta']:g}", q["steps"], q["agreement"], binomial_se(q["agreement"], s.n_samples),
             q["chance"]] for q in r["consistency"]])  # fmt: skip
        images = dict(sorted(r["images"].items(), key=lambda kv: isinstance(kv[0], str)))
        labels = [f"S={k}" if isinstance(k, int) else k.replace("dpm-solver++ ", "DPM++ ")
                  for k in images]  # fmt: skip
        report.figure(columns_figure(list(images.values()), labels,
                                     "same x_T, DDIM (eta = 0) with S steps"),
                      "consistency.png", "The same x_T decoded by DDIM (eta = 0) with S steps, "
                      "and by DPM-Solver++ (cf. Fig. 5).")  # fmt: skip
        report.section("Reconstruction from x_T (Sec. 5.4, Table 2)", self.prose("reconstruction", r))
        report.table(["S", "MSE ([0, 1] scale)", "± se", "paper (CIFAR-10)", "x_T mean", "x_T std"],
                     [[q["steps"], q["mse"], q["mse_se"], _paper(PAPER_TABLE2.get(q["steps"])),
                       q["latent_mean"], q["latent_std"]] for q in r["recon"]["rows"]])
        shown = r["recon"]["shown"]
        report.figure(columns_figure([r["recon"]["originals"]] + [v[1] for v in shown.values()],
                                     ["original"] + [f"S={S}" for S in shown],
                                     "DDIM encode -> decode"),
                      "reconstruction.png", "Test digits and their DDIM reconstructions "
                      "through x_T at each S.")  # fmt: skip
        report.section("Interpolation in x_T (Fig. 6)", self.prose("interpolation", r))
        report.figure(image_panels([(f"{k} interpolation of x_T", r["interp"][k]["images"])
                                    for k in ("slerp", "linear")], nrow=s.interp_cols,
                                   width=0.6 + 0.5 * s.interp_cols, height=1.0 + 0.5 * s.interp_rows),
                      "interpolation.png", "Interpolation between two x_T decoded with DDIM: "
                      "spherical (left, as the paper) and linear (right).")  # fmt: skip

    def text_values(self, r: dict[str, Any]) -> dict[str, Any]:
        s, b = self.s, r["borrowed"]
        return {"recon_n": min(s.recon_n, 359), "batch": s.batch_size or 128,
                "floor_n": min(s.n_samples, 359), "significance": SIGNIFICANCE,
                "min_seeds": MIN_SEEDS, "seeds": [s.seed + 1000 * k for k in range(s.fid_seeds)],
                "seeded": ", ".join(f"{eta:g}" for eta in s.seeded_etas), "max_s": max(s.steps),
                "source": f"the seeds {b['seeds']} of ddpm-2020's run, FIDs " + ", ".join(
                    f"{v:.2f}" for v in b["fids"]) + " [from ddpm-2020]" if b else "not in "
                "ddpm-2020's results (run it first, same cache): this run's one eta = 1 seed"}

    def record_metrics(self, r: dict[str, Any]) -> dict[str, Any]:
        i = r["interp"]
        return {"n": self.s.n_samples, "fid_floor": r["floor"], "ddim": r["ddim"],
                "dpm_solver": r["solver"], "consistency": r["consistency"],
                "reconstruction": r["recon"]["rows"], "ancestral_from_ddpm": r["borrowed"],
                "references": [{k: v for k, v in ref.items() if k != "text"} for ref in r["refs"]],
                "interpolation": {"norm_ends": i["norm_ends"], **{f"{k}.{q}": i[k][q] for k in
                                  ("slerp", "linear") for q in ("norm_mid", "confidence_inner")}},
                "test_memorisation": r["test_memorisation"], "params": r["params"],
                "train": {k: r["summary"].get(k) for k in ("step", "loss", "train_seconds", "run_dir")},
                "device": r["device"], "paper_table1": {str(k): v for k, v in PAPER_TABLE1.items()},
                "paper_table2": PAPER_TABLE2}  # fmt: skip


def long_references(r: dict[str, Any], borrowed: dict | None, steps: int) -> list[dict]:
    """The model's long-run samplers as FID references: ancestral sampling (ddpm-2020's seeds
    when borrowed, else this run's eta = 1) and DDIM eta = 0; those with a seed spread first
    (a target can be judged only against one), each group by lowest seed mean."""
    anc, det = _row(r, 1.0, steps), _row(r, 0.0, steps)
    refs = ([{"name": f"ancestral (Algorithm 2) [from {DDPM}]", "fids": borrowed["fids"]}]
            if borrowed else [{"name": "ancestral (DDIM eta = 1)", "fids": anc["fids"]}]
            if anc else []) + ([{"name": "DDIM eta = 0", "fids": det["fids"]}] if det else [])
    for ref in refs:
        ref["fid"], ref["se"] = verdicts.seed_mean(ref["fids"])
        ref["text"] = f"{ref['name']} {_pm(ref)}"
    return sorted(refs, key=lambda ref: (not math.isfinite(ref["se"]), ref["fid"]))


# --------------------------------------------------------------------------- figure, helpers
def fid_figure(r: dict[str, Any], s: Settings) -> Figure:
    """FID against S for every eta (log x, ± 1 se), DPM-Solver++ points and the noise floor."""
    fig = new_figure(6.4, 4.2)
    ax = fig.subplots()
    series = [(f"DDIM eta = {eta:g}", [row for row in r["ddim"] if row["eta"] == eta], "o", "-")
              for eta in s.etas] + [("DPM-Solver++", r["solver"], "s", "--")]  # fmt: skip
    for k, (label, rows, marker, ls) in enumerate(series):
        rows = sorted(rows, key=lambda row: row["steps"])
        ax.errorbar([row["steps"] for row in rows], [row["fid"] for row in rows],
                    [0.0 if math.isnan(row["se"]) else row["se"] for row in rows],
                    marker=marker, ls=ls, color=f"C{k}", capsize=3, label=label)  # fmt: skip
    ax.axhline(r["floor"], color="0.4", ls=":", label="noise floor (test split)")
    ax.set(xscale="log", xlabel="sampling steps S (network evaluations)",
           ylabel=f"digits-FID (n = {s.n_samples})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


_WORDS = {1: "eta=0 better", 0: "within noise", -1: "eta=1 better"}


def _row(r: dict[str, Any], eta: float, steps: int) -> dict[str, Any] | None:
    return next((row for row in r["ddim"] if (row["eta"], row["steps"]) == (eta, steps)), None)


def _paper(value: float | None) -> str:  # a paper number as printed (no rounding)
    return "-" if value is None else f"{value:g}"


REPRODUCTION = DDIM2021
reproduce = DDIM2021.run
