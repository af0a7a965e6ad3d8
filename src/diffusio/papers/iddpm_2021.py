"""Nichol & Dhariwal 2021, "Improved Denoising Diffusion Probabilistic Models" (ICML 2021,
arXiv:2102.09672): the reproduction ``iddpm-2021``, on scikit-learn's 8x8 digits.

The paper's changes to DDPM, each checked against the same U-Net and budget:

1. *Cosine schedule* (eq. 17): ``alpha_bar(t) = f(t) / f(0)``, ``f(t) = cos^2((t/T + s) / (1 + s)
   pi/2)``, which destroys information more gradually than DDPM's linear betas, whose last
   steps are almost pure noise (their Fig. 3, 5). We plot both alpha-bar curves, count the
   steps whose signal is below 1% of the data's, and compare L_simple models trained on each.
2. *Learned variance and the hybrid loss* (eq. 15-16): the network outputs v, the reverse
   variance is ``exp(v log beta + (1 - v) log beta-tilde)``, trained by ``L_simple + 0.001
   L_vlb`` with a stop-gradient on the mean (Sec. 3.1). Claim: a better bound (bits/dim) than
   L_simple with fixed variance, at similar sample quality.
3. *Importance-sampled L_vlb* (eq. 18, Fig. 6): the bound's terms differ by orders of magnitude,
   so uniform time sampling makes L_vlb noisy; sampling t with probability proportional to
   sqrt(E[L_t^2]) (history of 10 per t) smooths it. We train L_vlb both ways and compare the
   learning curves' noise (:func:`~diffusio.image.analysis.curve_noise`) and the final bound.
4. *Fewer sampling steps* (Sec. 4, Fig. 8): with learned variances, ancestral sampling on a
   respaced grid of K << T steps loses little quality; fixed variances (beta-tilde or beta) lose
   more. Digits-FID at K in {25, 50, 100, 1000}.

Sample quality is the digits-FID of :class:`~diffusio.metrics.fid.ImageEvaluator` at n = 359
(the held-out split, whose own FID is the noise floor); bits/dim are the full bound with DDPM's
discretized decoder on held-out digits (:func:`diffusio.image.evaluate.vlb_bits_per_dim`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.processes import make_process
from ..data.datasets import load_image_dataset
from ..image.analysis import TINY_UNET, curve_noise, digits_recipe, loss_curve
from ..image.evaluate import vlb_bits_per_dim
from ..image.sampling import sample_images
from ..metrics.fid import ImageEvaluator
from ..metrics.stats import NoiseFloor, difference_se, mean_se
from ..plotting import image_panels, new_figure
from .base import Reproduction
from .report import Report, fmt
from .verdicts import FLOOR_RATIO, NOT, PARTLY, REPRODUCED, SIGNIFICANCE, compare, floor_verdict

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["IDDPM2021", "REPRODUCTION", "Settings", "few_steps_verdict", "fid_equal",
           "reproduce"]  # fmt: skip

_LEARNED = {"variance": "learned", "loss_options": {"decoder": "discretized"}}
#: label -> overrides of the ``digits-ddpm`` preset (all five share net, data, optimiser).
VARIANTS: dict[str, dict[str, Any]] = {
    "linear, L_simple": {},
    "cosine, L_simple": {"process": "vp-cosine"},
    "cosine, L_hybrid": {"process": "vp-cosine", "weighting": "hybrid", **_LEARNED},
    "cosine, L_vlb uniform": {"process": "vp-cosine", "weighting": "vlb", **_LEARNED},
    "cosine, L_vlb importance": {
        "process": "vp-cosine", "weighting": "vlb", "time_distribution": "importance", **_LEARNED,
    },
}  # fmt: skip
LINEAR, FIXED, HYBRID = "linear, L_simple", "cosine, L_simple", "cosine, L_hybrid"
UNIFORM, IMPORTANCE = "cosine, L_vlb uniform", "cosine, L_vlb importance"
BITS_DIMS = 64  # 8x8 digits: the bound's nats per image over 64 ln 2 -> bits/dim


@dataclass(frozen=True)
class Settings:
    """Knobs of the reproduction; quick and default differ in sizes only."""

    steps: int = 2000
    sampling_steps: tuple[int, ...] = (25, 50, 100, 1000)
    n_samples: int = 359
    bpd_n: int = 100
    net_options: dict[str, Any] = field(default_factory=dict)  # {} = the preset's U-Net
    batch_size: int = 128
    timesteps: int = 1000  # T of both schedules (tests use fewer)
    seed: int = 0


class IDDPM2021(Reproduction):
    """Default: five trainings of 2,000 steps (about 4 minutes each on 2 cores) plus sampling
    and the bound, about 30-45 minutes; quick: about 5 minutes."""

    NAME = "iddpm-2021"
    TITLE = "Improved Denoising Diffusion Probabilistic Models (Nichol & Dhariwal, 2021)"
    REFERENCE = (
        "Alex Nichol and Prafulla Dhariwal. *Improved Denoising Diffusion Probabilistic "
        "Models.* ICML 2021, arXiv:2102.09672."
    )
    Settings = Settings
    QUICK = {"steps": 250, "sampling_steps": (25, 100), "bpd_n": 24}
    SMOKE = {"steps": 4, "sampling_steps": (2, 3), "n_samples": 12, "bpd_n": 3,
             "net_options": TINY_UNET, "batch_size": 8, "timesteps": 50}  # fmt: skip

    def recipe(self, label: str) -> Any:
        """The training config of variant ``label``."""
        s = self.s
        extra: dict[str, Any] = {**VARIANTS[label], "description": f"iddpm: {label}"}
        if s.timesteps != 1000:
            extra["process_options"] = {"num_steps": s.timesteps}
        return digits_recipe("digits-ddpm", s.steps, s.net_options or None, s.batch_size,
                             s.seed, **extra)  # fmt: skip

    def run_experiments(self) -> dict[str, Any]:
        s = self.s
        evaluator = ImageEvaluator("digits")
        x_test, _ = load_image_dataset("digits", "test")
        n = min(s.n_samples, evaluator.test_size)
        models, rows = {}, {}
        for label in VARIANTS:
            self.log(f"training {label}")
            model, _, summary = self.train(self.recipe(label),
                                           label.replace(", ", "-").replace(" ", "-"))
            models[label] = model
            rows[label] = {"run_dir": summary["run_dir"], "train_seconds": summary["train_seconds"]}
        self.lap("training")
        shape, grids = tuple(x_test.shape[1:]), {}
        for label, model in models.items():
            self.log(f"bits/dim and samples of {label}")
            bpd = vlb_bits_per_dim(model, x_test[: s.bpd_n], seed=s.seed, progress=self.progress)
            rows[label]["bpd"], rows[label]["bpd_se"] = mean_se(bpd.tolist())
            variances = ["learned"] if model.variance_head == "learned" else ["posterior"]
            if label == FIXED:
                variances.append("beta")
            ks = s.sampling_steps if label in (FIXED, HYBRID) else (max(s.sampling_steps),)
            fids: dict[str, dict[int, float]] = {}
            for variance in variances:
                fids[variance] = {}
                for k in ks:
                    x = sample_images(model, n, shape, "ddpm", k, seed=s.seed, variance=variance,
                                      progress=self.progress)  # fmt: skip
                    fids[variance][k] = evaluator.fid(x)
                    if k == max(ks) and variance == variances[0]:
                        grids[label] = x[:64]
            rows[label]["fid"] = fids
            curve = loss_curve(rows[label]["run_dir"], BITS_DIMS)
            rows[label]["curve"] = (np.asarray(curve["step"]), np.asarray(curve["loss"]))
        self.lap("evaluation")
        return {"rows": rows, "fid_floor": evaluator.noise_floor(n), "n": n, "grids": grids,
                "schedules": schedule_stats()}  # fmt: skip

    # ------------------------------------------------------------------ claims
    def add_claims(self, report: Report, r: dict[str, Any]) -> None:
        rows, sched = r["rows"], r["schedules"]
        lin, cos = sched["vp-linear"], sched["vp-cosine"]
        report.claim(
            "the linear schedule wastes its last steps on near-pure noise; cosine does not "
            "(Fig. 5)",
            "qualitative: linear alpha-bar is ~0 well before T",
            f"steps with sqrt(alpha-bar) < 1%: linear {lin['steps_below_1pct_signal']} of 1000, "
            f"cosine {cos['steps_below_1pct_signal']}",
            "exact property of the two tables",
            REPRODUCED if lin["steps_below_1pct_signal"] > cos["steps_below_1pct_signal"] else NOT,
        )
        f_lin, f_cos = _final_fid(rows[LINEAR]), _final_fid(rows[FIXED])
        b_lin, b_cos = rows[LINEAR]["bpd"], rows[FIXED]["bpd"]
        report.claim(
            "the cosine schedule improves log-likelihood (Table 1: L_simple, linear vs cosine)",
            "better NLL with cosine on ImageNet 64x64",
            f"bits/dim linear {fmt(b_lin)} vs cosine {fmt(b_cos)}; FID {fmt(f_lin)} vs "
            f"{fmt(f_cos)}",
            f"{fmt(b_lin - b_cos)} bits/dim in favour of cosine" if b_cos < b_lin
            else f"cosine worse by {fmt(b_cos - b_lin)} bits/dim",
            REPRODUCED if b_cos < b_lin else NOT,
        )  # fmt: skip
        b_h, se_h, se_f = rows[HYBRID]["bpd"], rows[HYBRID]["bpd_se"], rows[FIXED]["bpd_se"]
        f_h = _final_fid(rows[HYBRID])
        gain = b_cos - b_h
        significant = compare(gain, difference_se(se_h, se_f)) == 1
        close = fid_equal(f_h, f_cos)
        report.claim(
            "learned variances with L_hybrid give a better bound than fixed variances, at "
            "similar sample quality (Sec. 3.1, Table 1)",
            "NLL improves markedly with L_hybrid; FID roughly unchanged",
            f"bits/dim {fmt(b_h)} +/- {fmt(se_h)} (hybrid) vs {fmt(b_cos)} +/- {fmt(se_f)} "
            f"(simple); FID {fmt(f_h)} vs {fmt(f_cos)}",
            f"{fmt(gain)} bits/dim better, FID ratio {fmt(f_h / f_cos)}",
            REPRODUCED if significant and close else (PARTLY if significant or close else NOT),
        )
        noise_u, noise_i = (curve_noise(rows[k]["curve"][1]) for k in (UNIFORM, IMPORTANCE))
        b_u, b_i = rows[UNIFORM]["bpd"], rows[IMPORTANCE]["bpd"]
        se_ui = difference_se(rows[UNIFORM]["bpd_se"], rows[IMPORTANCE]["bpd_se"])
        smoother, better = noise_i < noise_u, compare(b_u - b_i, se_ui) == 1
        report.claim(
            "importance sampling makes L_vlb much less noisy and reaches a better bound (Fig. 6)",
            "smoother learning curve, lower final L_vlb than uniform sampling",
            f"curve noise {fmt(noise_i)} vs {fmt(noise_u)} (log-spread); bits/dim {fmt(b_i)} vs "
            f"{fmt(b_u)}",
            f"noise x{fmt(noise_i / noise_u if noise_u else float('nan'))}, bound "
            f"{fmt(b_u - b_i)} +/- {fmt(se_ui)} bits/dim lower",
            REPRODUCED if smoother and better else (PARTLY if smoother or better else NOT),
        )
        learned, fixed = rows[HYBRID]["fid"]["learned"], rows[FIXED]["fid"]["posterior"]
        beta = rows[FIXED]["fid"]["beta"]
        ks = sorted(learned)
        k_small, k_full = ks[0], ks[-1]
        rel_l = learned[k_small] / learned[k_full]
        rel_f = min(fixed[k_small] / fixed[k_full], beta[k_small] / beta[k_full])
        report.claim(
            f"learned variances keep quality with few sampling steps ({k_small} of {k_full}; "
            "Fig. 8)",
            "near-full FID with 50-100 steps when sigmas are learned; fixed sigmas degrade more",
            f"FID at K={k_small} / K={k_full}: learned {fmt(learned[k_small])} / "
            f"{fmt(learned[k_full])}, fixed beta-tilde {fmt(fixed[k_small])} / "
            f"{fmt(fixed[k_full])}, fixed beta {fmt(beta[k_small])} / {fmt(beta[k_full])}",
            f"degradation learned x{fmt(rel_l)} vs best fixed x{fmt(rel_f)} (changes under "
            f"{FLOOR_RATIO - 1:.0%} count as equal FIDs at n = {r['n']})",
            few_steps_verdict(rel_l, rel_f),
        )

    # ------------------------------------------------------------------ sections
    def add_sections(self, report: Report, r: dict[str, Any]) -> None:
        s, rows = self.s, r["rows"]
        report.section("Schedule, objective and time sampler (Table 1 at our scale)")
        body = []
        for label, row in rows.items():
            first_var = next(iter(row["fid"]))
            fids = row["fid"][first_var]
            body.append([label, first_var, fmt(row["bpd"]), fmt(row["bpd_se"]),
                         fmt(fids[max(fids)]), max(fids), fmt(row["train_seconds"], 3)])  # fmt: skip
        report.table(["model", "sampling variance", "bits/dim (bound)", "s.e.", "digits-FID",
                      "ancestral steps", "train s"], body)  # fmt: skip
        report.text(f"Noise floor of the FID at n = {r['n']}: {fmt(r['fid_floor'])}.")
        report.section("Fewer sampling steps (Fig. 8 at our scale)")
        body = []
        for label, variance in ((HYBRID, "learned"), (FIXED, "posterior"), (FIXED, "beta")):
            fids = rows[label]["fid"][variance]
            body.append([f"{label} / {variance}"] + [fmt(fids.get(k, float("nan")))
                                                     for k in s.sampling_steps])  # fmt: skip
        report.table(["model / variance"] + [f"K={k}" for k in s.sampling_steps], body)
        report.section("Figures")
        report.figure(schedule_figure(r["schedules"]), "schedules.png",
                      "alpha-bar of DDPM's linear and iDDPM's cosine schedule (T = 1000).")
        report.figure(curves_figure(rows), "vlb_curves.png",
                      "L_vlb training curves with uniform and importance-sampled times.")
        report.figure(steps_figure(rows, r["fid_floor"]), "fewer_steps.png",
                      "digits-FID vs respaced ancestral steps, learned vs fixed variances.")
        report.figure(image_panels(list(r["grids"].items()), nrow=8, width=2.3, height=2.8),
                      "samples.png", "Samples of each model (ancestral, most steps).")

    def text_values(self, r: dict[str, Any]) -> dict[str, Any]:
        net = ("the digits-ddpm U-Net (755k parameters)" if not self.s.net_options
               else "a tiny U-Net")  # fmt: skip
        return {"net": net, "floor": fmt(r["fid_floor"]), "tolerance": FLOOR_RATIO - 1,
                "significance": SIGNIFICANCE}  # fmt: skip

    def record_metrics(self, r: dict[str, Any]) -> dict[str, Any]:
        return {"fid_floor": r["fid_floor"], "n": r["n"],
                "models": {k: {kk: vv for kk, vv in v.items() if kk not in ("run_dir", "curve")}
                           for k, v in r["rows"].items()},
                "schedules": {k: {kk: vv for kk, vv in v.items() if kk != "alpha_bar"}
                              for k, v in r["schedules"].items()}}  # fmt: skip


# --------------------------------------------------------------------------- measurements
def schedule_stats() -> dict[str, Any]:
    """alpha-bar of both 1000-step schedules and how many steps carry almost no signal."""
    out: dict[str, Any] = {}
    for name in ("vp-linear", "vp-cosine"):
        alpha_bar = (make_process(name).discrete().alphas ** 2).numpy()
        out[name] = {"alpha_bar": alpha_bar,
                     "steps_below_1pct_signal": int((np.sqrt(alpha_bar) < 0.01).sum()),
                     "alpha_bar_at_half": float(alpha_bar[len(alpha_bar) // 2])}  # fmt: skip
    return out


def _final_fid(row: dict[str, Any]) -> float:
    first = next(iter(row["fid"].values()))
    return first[max(first)]


def fid_equal(fid: float, reference: float) -> bool:
    """``fid`` is no worse than ``reference`` (same n) by the shared rule for a value against a
    reference of unknown spread: at most :data:`FLOOR_RATIO` times it (a lower FID counts)."""
    return floor_verdict(fid, NoiseFloor(reference)) == REPRODUCED


def few_steps_verdict(rel_learned: float, rel_fixed: float) -> str:
    """FID(K small) / FID(K full) of learned and of the best fixed variances: learned keeps
    its FID (:func:`fid_equal`) and fixed does not (reproduced), both keep it (partly: neither
    degrades beyond the FID's noise at this scale), or learned degrades (not)."""
    keeps_l, keeps_f = fid_equal(rel_learned, 1.0), fid_equal(rel_fixed, 1.0)
    if keeps_l:
        return PARTLY if keeps_f else REPRODUCED
    return NOT


# --------------------------------------------------------------------------- figures
def _axes(ax: Any, xlabel: str, ylabel: str, title: str, logx: bool = False) -> None:
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")


def schedule_figure(schedules: dict[str, Any]) -> Figure:
    fig = new_figure(5.5, 3.6)
    ax = fig.subplots()
    for name, color in (("vp-linear", "C0"), ("vp-cosine", "C1")):
        a = schedules[name]["alpha_bar"]
        ax.plot(np.arange(1, len(a) + 1) / len(a), a, color=color, label=name)
    _axes(ax, "diffusion step t / T", "alpha-bar (signal variance)",
          "linear vs cosine schedule (iDDPM Fig. 5)")
    fig.tight_layout()
    return fig


def curves_figure(rows: dict[str, Any]) -> Figure:
    """The two L_vlb runs' learning curves (the hybrid loss is not the bound)."""
    fig = new_figure(6.0, 3.8)
    ax = fig.subplots()
    for label, color in ((UNIFORM, "C0"), (IMPORTANCE, "C3")):
        ax.plot(*rows[label]["curve"], color=color, lw=0.9, label=label)
    ax.set_yscale("log")
    _axes(ax, "training step", "L_vlb estimate (bits/dim)", "L_vlb learning curves (iDDPM Fig. 6)")
    fig.tight_layout()
    return fig


def steps_figure(rows: dict[str, Any], floor: float) -> Figure:
    fig = new_figure(5.8, 3.8)
    ax = fig.subplots()
    for label, variance, color, name in ((HYBRID, "learned", "C2", "learned sigma (L_hybrid)"),
                                         (FIXED, "posterior", "C0", "fixed beta-tilde (L_simple)"),
                                         (FIXED, "beta", "C1", "fixed beta (L_simple)")):  # fmt: skip
        fids = rows[label]["fid"].get(variance, {})
        ks = sorted(fids)
        ax.plot(ks, [fids[k] for k in ks], marker="o", color=color, label=name)
    ax.axhline(floor, color="grey", ls="--", lw=1, label="noise floor")
    ax.set_yscale("log")
    _axes(ax, "ancestral sampling steps K (respaced)", "digits-FID",
          "fewer sampling steps (iDDPM Fig. 8)", logx=True)
    fig.tight_layout()
    return fig


REPRODUCTION = IDDPM2021
reproduce = IDDPM2021.run
