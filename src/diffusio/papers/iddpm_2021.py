"""Nichol & Dhariwal 2021, "Improved Denoising Diffusion Probabilistic Models" (ICML 2021,
arXiv:2102.09672): the reproduction ``iddpm-2021``, on scikit-learn's 8x8 digits.

The paper's changes to DDPM, each checked against the same U-Net and budget: the *cosine
schedule* (eq. 17, Fig. 5); *learned variances* ``exp(v log beta + (1 - v) log beta-tilde)``
trained by ``L_hybrid = L_simple + 0.001 L_vlb`` (eq. 15-16); *importance-sampled L_vlb* (eq. 18,
Fig. 6: ``p_t ~ sqrt(E[L_t^2])``, 10 losses per t); *fewer sampling steps* on a respaced grid
(Sec. 4, Fig. 8). Claims are judged by the rules registered below: bits/dim (the full bound
with DDPM's discretized decoder, :func:`diffusio.image.evaluate.vlb_bits_per_dim`) paired over
the same held-out digits; digits-FID (:class:`~diffusio.metrics.fid.ImageEvaluator`, n = 359,
the held-out split's own FID as the floor) as the mean over ``fid_seeds`` sampling seeds with
its standard error, per model and sampler; learning-curve noise by
:func:`~diffusio.image.analysis.curve_noise`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.processes import make_process
from ..data.datasets import load_image_dataset
from ..image.analysis import TINY_UNET, curve_noise, digits_recipe, loss_curve
from ..image.evaluate import vlb_bits_per_dim
from ..image.sampling import sample_images
from ..metrics.fid import ImageEvaluator
from ..metrics.stats import difference_se, mean_se, paired_difference
from ..plotting import image_panels, new_figure
from .base import Reproduction
from .report import PaperNumber, Report, fmt
from .verdicts import NOT, REPRODUCED, SIGNIFICANCE, claim_rule, compare, win_verdict

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["IDDPM2021", "REPRODUCTION", "Settings", "curve_noise_se", "reproduce"]

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
#: The three (model, sampling variance) rows of the few-steps comparison (Fig. 8).
STEP_ROWS = ((HYBRID, "learned"), (FIXED, "posterior"), (FIXED, "beta"))
#: Every (model, sampling variance) whose FID is measured (the table's rows).
FID_PLAN = ((LINEAR, "posterior"), (FIXED, "posterior"), (FIXED, "beta"), (HYBRID, "learned"),
            (UNIFORM, "learned"), (IMPORTANCE, "learned"))  # fmt: skip
BITS_DIMS = 64  # 8x8 digits: the bound's nats per image over 64 ln 2 -> bits/dim


# --------------------------------------------------------------------------- claim rules
def _not_worse(worse_by: float, se: float) -> str:
    """"Keeps its quality": the loss ``worse_by`` is not clearly positive (within the noise,
    :data:`~diffusio.papers.verdicts.SIGNIFICANCE` se of the difference); an unknown se
    shows nothing (not reproduced)."""
    return REPRODUCED if math.isfinite(se) and compare(-worse_by, se) != -1 else NOT


#: Numbers that support / contradict the two kinds of rule: a paired bits/dim gain, and a
#: seed-mean FID (``fid`` ± ``se``) against a reference (``fid_ref`` ± ``se_ref``).
_GAIN = {"supports": {"gain": 0.3, "se": 0.05}, "contradicts": {"gain": 0.02, "se": 0.05}}
_SAME = {"supports": {"fid": 11.0, "se": 0.6, "fid_ref": 10.5, "se_ref": 0.6},
         "contradicts": {"fid": 15.0, "se": 0.6, "fid_ref": 10.5, "se_ref": 0.6}}
_BEATS = {"supports": {"fid": 12.0, "se": 0.6, "fid_ref": 17.0, "se_ref": 0.6},
          "contradicts": {"fid": 12.0, "se": 0.6, "fid_ref": 12.5, "se_ref": 0.6}}


@claim_rule("iddpm-2021/cosine-better-bound", **_GAIN)
def cosine_better_bound(gain: float, se: float) -> str:
    """The cosine schedule's bound beats the linear one's at L_simple (Tables 1-2): the paired
    bits/dim gain (linear - cosine) is clearly positive."""
    return win_verdict(gain, se)


@claim_rule("iddpm-2021/hybrid-better-bound", **_GAIN)
def hybrid_better_bound(gain: float, se: float) -> str:
    """L_hybrid with learned variances beats L_simple's bound (Sec. 3.1, Tables 1-2): the paired
    bits/dim gain (simple - hybrid) is clearly positive."""
    return win_verdict(gain, se)


@claim_rule("iddpm-2021/importance-better-bound", **_GAIN)
def importance_better_bound(gain: float, se: float) -> str:
    """Importance-sampled L_vlb beats uniform L_vlb's bound (Fig. 6): the paired bits/dim gain
    (uniform - importance) is clearly positive."""
    return win_verdict(gain, se)


@claim_rule("iddpm-2021/importance-smoother",
            supports={"noise": 0.02, "se": 0.003, "noise_ref": 0.2, "se_ref": 0.03},
            contradicts={"noise": 0.19, "se": 0.03, "noise_ref": 0.2, "se_ref": 0.03})
def importance_smoother(noise: float, se: float, noise_ref: float, se_ref: float) -> str:
    """Importance sampling makes the L_vlb learning curve clearly less noisy than uniform
    sampling's (``noise_ref``; Fig. 6), by the se of the difference."""
    return win_verdict(noise_ref - noise, difference_se(se, se_ref))


@claim_rule("iddpm-2021/hybrid-keeps-fid", **_SAME)
def hybrid_keeps_fid(fid: float, se: float, fid_ref: float, se_ref: float) -> str:
    """L_hybrid's samples are no worse than L_simple's (``fid_ref``, its better fixed variance;
    Tables 1-2: FID roughly unchanged): not clearly above, by the se of the difference."""
    return _not_worse(fid - fid_ref, difference_se(se, se_ref))


@claim_rule("iddpm-2021/learned-keeps-fid-with-fewer-steps", **_SAME)
def learned_keeps_fid(fid: float, se: float, fid_ref: float, se_ref: float) -> str:
    """With learned variances, far fewer respaced steps keep the full chain's FID (``fid_ref``;
    abstract, Fig. 8): not clearly above it, by the se of the difference."""
    return _not_worse(fid - fid_ref, difference_se(se, se_ref))


@claim_rule("iddpm-2021/learned-beats-fixed-at-few-steps", **_BEATS)
def learned_beats_fixed(fid: float, se: float, fid_ref: float, se_ref: float) -> str:
    """With few steps, learned variances give clearly better samples than the better fixed
    variance (``fid_ref``; Fig. 8: fixed sigmas degrade more)."""
    return win_verdict(fid_ref - fid, difference_se(se, se_ref))


#: The bound claims: (claim, paper, worse model, better model, rule).
BOUND_CLAIMS = (
    ("the cosine schedule gives a better bound than the linear one (L_simple; Tables 1-2)",
     "Tables 1-2 (L_simple, T = 4000): NLL 3.77 -> 3.68 bits/dim on ImageNet 64x64, 3.37 -> "
     "3.26 on CIFAR-10", LINEAR, FIXED, cosine_better_bound),
    ("learned variances with L_hybrid give a better bound than L_simple with fixed variances "
     "(Sec. 3.1)", "Tables 1-2 (cosine): NLL 3.68 -> 3.62 (ImageNet 64x64), 3.26 -> 3.17 "
     "(CIFAR-10)", FIXED, HYBRID, hybrid_better_bound),
    ("importance-sampled L_vlb reaches a better bound than uniform L_vlb (Fig. 6)",
     "the importance-sampled L_vlb curve ends below the uniform one", UNIFORM, IMPORTANCE,
     importance_better_bound),
)  # fmt: skip


def _pm(value: float, se: float) -> str:
    return f"{fmt(value)} ± {fmt(se)}"


_UNVERIFIED_TABLE = (
    "not found in the paper's own text: search (pages/code corpora) reached only the paper's "
    "opening and abstract; two third-party transcriptions on GitHub (a Tables 1-2 summary in "
    "paper notes, a CIFAR-10 reproduction guide for Table 2) give these values"
)
PAPER_NUMBERS = (
    PaperNumber("diffusion steps T of the paper's models", "4000", "Sec. 3", True,
                "official code: openai/improved-diffusion README, --diffusion_steps 4000"),
    PaperNumber("paper's U-Nets and training lengths", "50M (CIFAR-10, 500K steps), 100M "
                "(ImageNet 64x64, 1.5M steps)", "official checkpoints", True,
                "openai/improved-diffusion README: cifar10_uncond_50M_500K.pt, "
                "imagenet64_uncond_100M_1500K.pt"),
    PaperNumber("L_hybrid weight lambda", "0.001", "eq. 16", True,
                "official code: terms['vb'] *= num_timesteps / 1000 (lambda T per-step term)"),
    PaperNumber("importance-sampling history per t", "10", "Sec. 3.3, eq. 18", True,
                "official code improved_diffusion/resample.py: history_per_term=10"),
    PaperNumber("NLL linear -> cosine, L_simple (bits/dim)", "3.77 -> 3.68 (ImageNet 64x64); "
                "3.37 -> 3.26 (CIFAR-10)", "Tables 1-2", False, _UNVERIFIED_TABLE),
    PaperNumber("NLL L_simple -> L_hybrid, cosine (bits/dim)", "3.68 -> 3.62 (ImageNet "
                "64x64); 3.26 -> 3.17 (CIFAR-10)", "Tables 1-2", False, _UNVERIFIED_TABLE),
    PaperNumber("FID L_simple -> L_hybrid, cosine", "27.0 -> 28.0 (ImageNet 64x64); 3.05 -> "
                "3.19 (CIFAR-10)", "Tables 1-2", False, _UNVERIFIED_TABLE),
    PaperNumber("few-step sampling with learned variances", "an order of magnitude fewer "
                "forward passes, negligible difference in sample quality", "abstract", True,
                "the paper's abstract (arXiv 2102.09672 on arxiv-vanity and ICML pages)"),
)  # fmt: skip


@dataclass(frozen=True)
class Settings:
    """Sizes only differ between quick and default. FIDs: every model at ``table_steps``, the
    Fig.-8 rows at ``few_steps``, learned variances at ``full_steps``; ``fid_seeds`` seeds each."""

    steps: int = 2000
    table_steps: int = 100
    few_steps: tuple[int, ...] = (25, 50)
    full_steps: int = 1000
    fid_seeds: int = 5
    n_samples: int = 359
    bpd_n: int = 100
    net_options: dict[str, Any] = field(default_factory=dict)  # {} = the preset's U-Net
    batch_size: int = 128
    timesteps: int = 1000  # T of both schedules (tests use fewer)
    seed: int = 0


class IDDPM2021(Reproduction):
    """Five trainings of 2,000 steps (quick: 250), then the bound and seeded FIDs of each."""

    NAME = "iddpm-2021"
    TITLE = "Improved Denoising Diffusion Probabilistic Models (Nichol & Dhariwal, 2021)"
    REFERENCE = (
        "Alex Nichol and Prafulla Dhariwal. *Improved Denoising Diffusion Probabilistic "
        "Models.* ICML 2021, arXiv:2102.09672."
    )
    Settings = Settings
    QUICK = {"steps": 250, "table_steps": 50, "few_steps": (25,), "full_steps": 250,
             "n_samples": 200, "bpd_n": 24}  # fmt: skip
    SMOKE = {"steps": 4, "table_steps": 3, "few_steps": (2,), "full_steps": 5, "fid_seeds": 2,
             "n_samples": 12, "bpd_n": 3, "net_options": TINY_UNET, "batch_size": 8,
             "timesteps": 50}  # fmt: skip
    PAPER_NUMBERS = PAPER_NUMBERS

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
        seeds = [s.seed + 1000 * k for k in range(s.fid_seeds)]
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
            self.log(f"bits/dim of {label}")
            bpd = vlb_bits_per_dim(model, x_test[: s.bpd_n], seed=s.seed, progress=self.progress)
            rows[label]["bpd_images"] = bpd.tolist()
            rows[label]["bpd"], rows[label]["bpd_se"] = mean_se(rows[label]["bpd_images"])
            curve = loss_curve(rows[label]["run_dir"], BITS_DIMS)
            rows[label]["curve"] = (np.asarray(curve["step"]), np.asarray(curve["loss"]))
            rows[label]["fid"] = {v: {} for key, v in FID_PLAN if key == label}
        self.lap("bits/dim")
        for label, variance in FID_PLAN:
            fids = rows[label]["fid"][variance]
            ks = [s.table_steps] + [k for k in (*s.few_steps, s.full_steps) if (label, variance)
                                    in STEP_ROWS and (k != s.full_steps or variance == "learned")]
            for k in dict.fromkeys(ks):
                self.log(f"  FID of {label} / {variance}, K = {k}, {len(seeds)} seeds")
                values = []
                for seed in seeds:
                    x = sample_images(models[label], n, shape, "ddpm", k, seed=seed,
                                      variance=variance, progress=self.progress)  # fmt: skip
                    values.append(evaluator.fid(x))
                    if k == s.table_steps and seed == seeds[0] and label not in grids:
                        grids[label] = x[:64]
                mean, se = mean_se(values)
                fids[k] = {"seeds": seeds, "fids": values, "mean": mean, "se": se}
        self.lap("FIDs")
        return {"rows": rows, "fid_floor": evaluator.noise_floor(n), "n": n, "grids": grids,
                "schedules": schedule_stats()}  # fmt: skip

    # ------------------------------------------------------------------ claims
    def add_claims(self, report: Report, r: dict[str, Any]) -> None:
        s, rows = self.s, r["rows"]
        k_tab, k_few, k_full = s.table_steps, min(s.few_steps), s.full_steps
        for claim, paper, worse, better, rule in BOUND_CLAIMS:
            w, b = rows[worse], rows[better]
            g, se = paired_difference(w["bpd_images"], b["bpd_images"])
            report.claim(claim, paper, f"bits/dim {worse} {_pm(w['bpd'], w['bpd_se'])}, {better} "
                         f"{_pm(b['bpd'], b['bpd_se'])}", _win_gap(g, se, f"{better} better by",
                         f" bits/dim (paired over {s.bpd_n} test digits)"), rule(gain=g, se=se))
        (noise_u, se_u), (noise_i, se_i) = (curve_noise_se(rows[k]["curve"][1])
                                            for k in (UNIFORM, IMPORTANCE))  # fmt: skip
        report.claim(
            "importance sampling makes the L_vlb learning curve less noisy (Fig. 6)",
            "the importance-sampled L_vlb curve is much smoother than the uniform one",
            f"curve noise (log-spread of the curve's second half): importance "
            f"{_pm(noise_i, se_i)}, uniform {_pm(noise_u, se_u)}",
            _win_gap(noise_u - noise_i, difference_se(se_u, se_i), "less noisy by"),
            importance_smoother(noise=noise_i, se=se_i, noise_ref=noise_u, se_ref=se_u))

        def fid(label: str, variance: str, k: int) -> dict[str, Any]:
            return rows[label]["fid"][variance][k]

        def best_fixed(k: int) -> tuple[str, str, int]:  # the better of the fixed variances
            return FIXED, min(("posterior", "beta"), key=lambda v: fid(FIXED, v, k)["mean"]), k

        for claim, paper, a, b, rule in (
            ("L_hybrid's samples are no worse than L_simple's (Tables 1-2)",
             "FID 27.0 -> 28.0 (ImageNet 64x64), 3.05 -> 3.19 (CIFAR-10): roughly unchanged",
             (HYBRID, "learned", k_tab), best_fixed(k_tab), hybrid_keeps_fid),
            (f"learned variances keep their sample quality with {k_full // k_tab}x fewer "
             f"sampling steps (abstract, Fig. 8)", "an order of magnitude fewer forward passes "
             "with a negligible difference in sample quality",
             (HYBRID, "learned", k_tab), (HYBRID, "learned", k_full), learned_keeps_fid),
            (f"with few steps (K = {k_few}) learned variances beat fixed ones (Fig. 8)",
             "fixed-variance L_simple models lose much more quality with few sampling steps",
             (HYBRID, "learned", k_few), best_fixed(k_few), learned_beats_fixed),
        ):  # fmt: skip
            fa, fb = fid(*a), fid(*b)
            na, nb = ("{1}, K = {2}".format(*key) for key in (a, b))
            gap = (_win_gap(fb["mean"] - fa["mean"], difference_se(fa["se"], fb["se"]),
                            f"{na} better than {nb} by", " FID") if rule is learned_beats_fixed
                   else _fid_gap(fa, fb, f"{na} minus {nb}:"))  # fmt: skip
            sa, sb = (_pm(f["mean"], f["se"]) for f in (fa, fb))
            ra, rb = ("{} / {}, K = {}".format(*key) for key in (a, b))
            report.claim(claim, paper, f"digits-FID ({s.fid_seeds} seeds): {ra} {sa}; {rb} {sb}", gap,
                         rule(fid=fa["mean"], se=fa["se"], fid_ref=fb["mean"], se_ref=fb["se"]))

    # ------------------------------------------------------------------ sections
    def add_sections(self, report: Report, r: dict[str, Any]) -> None:
        s, rows, sched = self.s, r["rows"], r["schedules"]
        report.section("Schedule, objective and time sampler (Table 1 at our scale)")
        body = []
        for label, variance in FID_PLAN:
            f, row = rows[label]["fid"][variance][s.table_steps], rows[label]
            body.append([label, variance, fmt(row["bpd"]), fmt(row["bpd_se"]), fmt(f["mean"]),
                         fmt(f["se"]), fmt(row["train_seconds"], 3)])  # fmt: skip
        report.table(["model", "sampling variance", "bits/dim (bound)", "s.e.",
                      f"digits-FID, K = {s.table_steps}", f"s.e. ({s.fid_seeds} seeds)",
                      "train s"], body)  # fmt: skip
        report.text(f"Noise floor of the FID at n = {r['n']}: {fmt(r['fid_floor'])}.")
        report.section("Fewer sampling steps (Fig. 8 at our scale)")
        ks = sorted({s.table_steps, *s.few_steps, s.full_steps})
        body = [[f"{label} / {variance}"] + [
            (f"{fmt(f['mean'])} ± {fmt(f['se'])}" if (f := rows[label]["fid"][variance].get(k))
             else "-") for k in ks] for label, variance in STEP_ROWS]  # fmt: skip
        report.table(["model / variance"] + [f"K={k}" for k in ks], body)
        report.section("The two schedules (Fig. 5)")
        report.table(["schedule", "steps with sqrt(alpha-bar) < 1% (of 1000)", "alpha-bar at T/2"],
                     [[k, v["steps_below_1pct_signal"], v["alpha_bar_at_half"]]
                      for k, v in sched.items()])  # fmt: skip
        report.section("Figures")
        report.figure(schedule_figure(sched), "schedules.png",
                      "alpha-bar of DDPM's linear and iDDPM's cosine schedule (T = 1000).")
        report.figure(curves_figure(rows), "vlb_curves.png",
                      "L_vlb training curves with uniform and importance-sampled times.")
        report.figure(steps_figure(rows, r["fid_floor"]), "fewer_steps.png",
                      "digits-FID (seed mean ± s.e.) vs respaced ancestral steps, learned vs "
                      "fixed variances.")  # fmt: skip
        report.figure(image_panels(list(r["grids"].items()), nrow=8, width=2.3, height=2.8),
                      "samples.png", f"Samples of each model (ancestral, K = {s.table_steps}, "
                      "first seed).")  # fmt: skip

    def text_values(self, r: dict[str, Any]) -> dict[str, Any]:
        net = ("the digits-ddpm U-Net (755k parameters)" if not self.s.net_options
               else "a tiny U-Net")  # fmt: skip
        return {"net": net, "floor": fmt(r["fid_floor"]), "significance": SIGNIFICANCE,
                "few": ", ".join(map(str, self.s.few_steps))}

    def record_metrics(self, r: dict[str, Any]) -> dict[str, Any]:
        drop = ("run_dir", "curve", "bpd_images")
        return {"fid_floor": r["fid_floor"], "n": r["n"],
                "models": {k: {kk: vv for kk, vv in v.items() if kk not in drop}
                           for k, v in r["rows"].items()},
                "schedules": {k: {kk: vv for kk, vv in v.items() if kk != "alpha_bar"}
                              for k, v in r["schedules"].items()}}  # fmt: skip


def _fid_gap(a: dict[str, Any], b: dict[str, Any], name: str) -> str:
    """``a`` against ``b`` (seed means and ses): the difference, its se and what it shows."""
    d, se = a["mean"] - b["mean"], difference_se(a["se"], b["se"])
    if not math.isfinite(se):
        return f"{name} {d:+.2f} FID; no seed spread, nothing shown"
    clear = "clearly worse" if compare(-d, se) == -1 else "within the noise"
    return f"{name} {d:+.2f} ± {se:.2f} FID ({clear}: {SIGNIFICANCE:g} se = {SIGNIFICANCE * se:.2f})"


def _win_gap(d: float, se: float, name: str, unit: str = "") -> str:
    """A claimed win by ``d`` (se ``se``): the number, and 'not shown' when it is not clear."""
    outcome = compare(d, se) if math.isfinite(d) and math.isfinite(se) else None
    shown = {1: "", 0: "; not shown (within noise)", -1: "; the opposite holds"}.get(
        outcome, "; not shown (no estimate)")
    return f"{name} {fmt(d)} ± {fmt(se)}{unit}{shown}"


# --------------------------------------------------------------------------- measurements
def curve_noise_se(loss: Any) -> tuple[float, float]:
    """:func:`~diffusio.image.analysis.curve_noise` of a learning curve and its standard error
    as the sample sd of the ``m`` points of the curve's second half, ``noise / sqrt(2 (m - 1))``
    (normal theory)."""
    noise = curve_noise(loss)
    m = len(loss) - len(loss) // 2
    return noise, noise / math.sqrt(2 * (m - 1)) if m > 1 else math.nan


def schedule_stats() -> dict[str, Any]:
    """alpha-bar of both 1000-step schedules and how many steps carry almost no signal."""
    out: dict[str, Any] = {}
    for name in ("vp-linear", "vp-cosine"):
        alpha_bar = (make_process(name).discrete().alphas ** 2).numpy()
        out[name] = {"alpha_bar": alpha_bar,
                     "steps_below_1pct_signal": int((np.sqrt(alpha_bar) < 0.01).sum()),
                     "alpha_bar_at_half": float(alpha_bar[len(alpha_bar) // 2])}  # fmt: skip
    return out


# --------------------------------------------------------------------------- figures
def _finish(fig: Figure, ax: Any, xlabel: str, ylabel: str, title: str) -> Figure:
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


def schedule_figure(schedules: dict[str, Any]) -> Figure:
    fig = new_figure(5.5, 3.6)
    ax = fig.subplots()
    for name, color in (("vp-linear", "C0"), ("vp-cosine", "C1")):
        a = schedules[name]["alpha_bar"]
        ax.plot(np.arange(1, len(a) + 1) / len(a), a, color=color, label=name)
    return _finish(fig, ax, "diffusion step t / T", "alpha-bar (signal variance)",
                   "linear vs cosine schedule (iDDPM Fig. 5)")


def curves_figure(rows: dict[str, Any]) -> Figure:
    """The two L_vlb runs' learning curves (the hybrid loss is not the bound)."""
    fig = new_figure(6.0, 3.8)
    ax = fig.subplots()
    for label, color in ((UNIFORM, "C0"), (IMPORTANCE, "C3")):
        ax.plot(*rows[label]["curve"], color=color, lw=0.9, label=label)
    ax.set_yscale("log")
    return _finish(fig, ax, "training step", "L_vlb estimate (bits/dim)",
                   "L_vlb learning curves (iDDPM Fig. 6)")


def steps_figure(rows: dict[str, Any], floor: float) -> Figure:
    """FID (seed mean, bars 2 se) against respaced steps for the three Fig.-8 rows."""
    fig = new_figure(5.8, 3.8)
    ax = fig.subplots()
    names = {"learned": "learned sigma (L_hybrid)", "posterior": "fixed beta-tilde (L_simple)",
             "beta": "fixed beta (L_simple)"}  # fmt: skip
    for (label, variance), color in zip(STEP_ROWS, ("C2", "C0", "C1"), strict=True):
        f = rows[label]["fid"][variance]
        ks = sorted(f)
        ax.errorbar(ks, [f[k]["mean"] for k in ks], [SIGNIFICANCE * np.nan_to_num(f[k]["se"])
                    for k in ks], marker="o", color=color, capsize=3, label=names[variance])
    ax.axhline(floor, color="grey", ls="--", lw=1, label="noise floor")
    ax.set_xscale("log")
    return _finish(fig, ax, "ancestral sampling steps K (respaced)",
                   "digits-FID (bars: 2 s.e.)", "fewer sampling steps (iDDPM Fig. 8)")


REPRODUCTION = IDDPM2021
reproduce = IDDPM2021.run
