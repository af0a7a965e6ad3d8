"""Ho, Jain & Abbeel 2020, "Denoising Diffusion Probabilistic Models" (NeurIPS 2020,
arXiv:2006.11239): the reproduction ``ddpm-2020``, on scikit-learn's 8x8 digits.

The paper's model: a fixed forward chain ``q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1},
beta_t I)`` with linear betas 1e-4 .. 0.02 over T = 1000 steps, a U-Net that predicts the noise,
and reverse kernels ``p(x_{t-1} | x_t) = N(mu_theta(x_t, t), sigma_t^2 I)`` with fixed
variances. Two training objectives (Sec. 3.4, Tables 1-2):

* ``L_simple = E_{t, x0, eps} || eps - eps_theta(sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, t) ||^2``
  with t uniform on 1..T (Algorithm 1): a reweighted bound that down-weights the easy, small-t
  terms;
* the true variational bound ``L = L_T + sum_{t>1} L_{t-1} + L_0`` (eq. 5), with the
  discretized Gaussian decoder L_0 (eq. 13) on 8-bit data, here estimated per example as
  ``T L_t + L_T`` for one uniformly drawn t.

Checked here with the same U-Net, data and budget for both objectives, each verdict by a
registered :func:`~diffusio.papers.verdicts.claim_rule`: L_simple gives better samples than the
bound (Tables 1-2: CIFAR-10 FID 3.17 vs 13.51; digits-FID at n = 359 as seed means with standard
errors, each sampler's and model's spread from its own seeds), the bound a slightly better NLL
(Table 1: <= 3.70 vs <= 3.75 bits/dim, paired over test digits), ancestral samples (Algorithm 2)
at the noise floor without copying the training digits, and progressive generation (Sec. 4.3,
Fig. 6): the class of ``x0_hat(x_t)`` (recorded by :class:`~diffusio.core.samplers.X0Trace`)
decided while its pixels are still far from the final sample.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core.samplers import X0Trace
from ..image.analysis import TINY_UNET, digits_recipe, digits_splits, loss_curve
from ..image.evaluate import vlb_bits_per_dim
from ..image.progressive import frame_indices, progressive_figure, progressive_stats
from ..image.sampling import sample_images
from ..metrics.fid import ImageEvaluator
from ..metrics.neighbours import memorisation
from ..metrics.stats import NoiseFloor, binomial_se, difference_se, mean_se, paired_difference
from ..plotting import image_panels, new_figure, plot_loss_curve
from . import verdicts
from .base import Reproduction
from .report import PaperNumber, Report, fmt
from .runs import pick_device
from .verdicts import MIN_SEEDS, NOT, PARTLY, REPRODUCED, SIGNIFICANCE, claim_rule, win_verdict

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["DDPM2020", "REPRODUCTION", "Settings", "coarse_peak", "progressive", "quality_at_floor",
           "reproduce", "simple_beats_vlb", "vlb_better_nll"]  # fmt: skip

SIMPLE, VLB = "L_simple", "L_vlb"
#: The two objectives of the paper's Tables 1-2 that we train: config overrides of the preset.
VARIANTS: dict[str, dict[str, Any]] = {
    SIMPLE: {},
    VLB: {"weighting": "vlb", "loss_options": {"decoder": "discretized"}},
}
#: Paper Table 1 (CIFAR-10; Table 2's eps-prediction rows give the same FIDs): FID and the NLL
#: test bound in bits/dim. L is the true bound with fixed isotropic Sigma.
PAPER = {SIMPLE: (3.17, 3.75), VLB: (13.51, 3.70)}
_SEEN = "checked in the paper's text (arXiv:2006.11239), a stored copy found with the search tool"
PAPER_NUMBERS = (
    PaperNumber("FID, L_simple (eps prediction)", "3.17", "Table 1; Table 2", True, _SEEN),
    PaperNumber("FID, true bound L, fixed isotropic Sigma, eps prediction", "13.51",
                "Table 1; Table 2", True,
                _SEEN + "; 13.22 is Table 2's mean-prediction (mu-tilde) row, not ours"),
    PaperNumber("NLL test bound, L / L_simple (bits/dim)", "<= 3.70 / <= 3.75", "Table 1", True,
                _SEEN + "; train: 3.69 / 3.72; Table 2 has no NLL column"),
    PaperNumber("Inception score, L_simple", "9.46 ± 0.11", "Table 1", True, _SEEN),
    PaperNumber("CIFAR-10 network; training", "35.7M parameters; 800k steps at batch 128, "
                "TPU v3-8", "App. B", True, _SEEN),
    PaperNumber("schedule", "T = 1000, betas linear 1e-4 .. 0.02", "Sec. 4; App. B", True, _SEEN),
    PaperNumber("FID sample size", "50,000 samples", "App. B", True, _SEEN),
)  # fmt: skip

COPY_RATIO = 0.5  # sample/test median nearest-train distance below this: copying
AGREE = 0.9  # class agreement with the final sample that counts as "decided"
MOSTLY = 0.5  # ... as "mostly decided" (partly reproduced); agreement at t = T must be below it
COARSE = 0.25  # ... while the x0 prediction is still this far (fraction of its start) from final
TEST_SIZE = 359


@dataclass(frozen=True)
class Settings:
    """Every knob of the reproduction; quick and default differ only in sizes.

    ``preset`` is the training recipe (``digits-ddpm``: DDPM's linear schedule, T = 1000, eps
    prediction, discrete times, the 755k-parameter digits U-Net, batch 128, AdamW 1e-3 with
    warm-up and cosine decay, EMA 0.999), trained ``train_steps`` steps with each objective;
    ``net_options`` / ``batch_size`` replace the preset's (tests use a tiny U-Net). Samples:
    ``n_samples`` (359 = the test split, so the FID compares with the noise floor) by ancestral
    sampling over ``ancestral_steps`` grid steps (1000 = Algorithm 2 exactly; fewer = the same
    sampler on an evenly strided sub-grid), ``ancestral_seeds`` seeds for the L_simple model and
    one for L_vlb (each seed costs T network evaluations of 359 images), and by DPM-Solver++
    with ``solver_steps``, ``fid_seeds`` seeds of each model. ``bpd_n`` test images for the
    bound; ``frames`` recorded x0 predictions along the chain, ``progressive_rows`` chains shown.
    """

    preset: str = "digits-ddpm"
    train_steps: int = 4000
    net_options: dict[str, Any] | None = None
    batch_size: int | None = None
    n_samples: int = 359
    ancestral_steps: int = 1000
    ancestral_seeds: int = 5
    solver_steps: int = 20
    fid_seeds: int = 5
    bpd_n: int = 359
    frames: int = 10
    progressive_rows: int = 8
    grid_n: int = 100
    seed: int = 0


# --------------------------------------------------------------------------- claim rules
@claim_rule("ddpm-2020/simple-beats-vlb",
            supports={"fid_simple": 11.0, "se_simple": 0.5, "fid_vlb": 16.0, "se_vlb": 0.5},
            contradicts={"fid_simple": 15.0, "se_simple": 0.5, "fid_vlb": 16.0, "se_vlb": 0.5})
def simple_beats_vlb(fid_simple: float, se_simple: float, fid_vlb: float, se_vlb: float) -> str:
    """L_simple gives clearly lower FID than the true bound (Tables 1-2: 3.17 vs 13.51): seed
    means, the difference beyond SIGNIFICANCE se of the difference; else not shown."""
    return win_verdict(fid_vlb - fid_simple, difference_se(se_simple, se_vlb))


@claim_rule("ddpm-2020/vlb-better-nll", supports={"gain": 0.4, "se": 0.01},
            contradicts={"gain": 0.01, "se": 0.01})
def vlb_better_nll(gain: float, se: float) -> str:
    """The true bound gives a lower NLL bound (Table 1: <= 3.70 vs <= 3.75 bits/dim): ``gain`` =
    bits/dim of L_simple minus L_vlb, paired over test digits, clearly positive."""
    return win_verdict(gain, se)


@claim_rule("ddpm-2020/quality-at-floor",
            supports={"fid": 9.0, "se": 0.3, "floor": 8.5, "copy_ratio": 0.95},
            contradicts={"fid": 20.0, "se": 0.3, "floor": 8.5, "copy_ratio": 0.95})
def quality_at_floor(fid: float, se: float, floor: float, copy_ratio: float) -> str:
    """Ancestral samples as good as held-out data (Table 1's state-of-the-art FID 3.17; here the
    noise floor): the seed mean plus SIGNIFICANCE se under the shared floor rule; at the floor
    only by copying (memorisation ratio < COPY_RATIO) is partly; no spread: not shown."""
    if not math.isfinite(se):
        return NOT
    verdict = verdicts.floor_verdict(fid + SIGNIFICANCE * se, NoiseFloor(floor))
    return PARTLY if verdict == REPRODUCED and copy_ratio < COPY_RATIO else verdict


@claim_rule("ddpm-2020/progressive", supports={"start": 0.1, "peak": 0.97, "n": 359},
            contradicts={"start": 0.1, "peak": 0.3, "n": 359})
def progressive(start: float, peak: float, n: int) -> str:
    """Large-scale features first (Sec. 4.3, Fig. 6): x0_hat's class agrees with the final
    sample's clearly below MOSTLY at t = T, and clearly above AGREE (reproduced) or MOSTLY
    (partly) at a frame still >= COARSE of its initial pixel distance from final (``peak``, nan
    if none); "clearly": beyond SIGNIFICANCE binomial se over the n chains."""
    if not math.isfinite(peak) or start + SIGNIFICANCE * binomial_se(start, n) >= MOSTLY:
        return NOT
    low = peak - SIGNIFICANCE * binomial_se(peak, n)
    return REPRODUCED if low > AGREE else PARTLY if low > MOSTLY else NOT


def coarse_peak(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Among the frames where x0_hat is still at least COARSE (fraction of its initial
    distance) away from the final sample, the one with the highest class agreement."""
    coarse = [row for row in rows[:-1] if row["rms_fraction"] >= COARSE]
    return max(coarse, key=lambda row: row["agreement"], default=None)


def _se(se: float) -> str:
    return f" ± {fmt(se)}" if math.isfinite(se) else " (no spread)"


def _pm(fids: dict[str, Any]) -> str:
    n = len(fids["fids"])
    if math.isfinite(fids["se"]):
        return f"{fids['mean']:.2f} ± {fids['se']:.2f} ({n} seeds)"
    return f"{fids['mean']:.2f} ({n} seed{'s' if n > 1 else ''}, no spread)"


class DDPM2020(Reproduction):
    """Default: two 4,000-step trainings (about 10 minutes each on two CPU cores), six 1000-step
    ancestral sample sets (about 2 minutes each) and the full bound on 359 test digits per model:
    about 38 minutes. Quick: 500 steps each, a 250-step ancestral grid, the bound on 64 digits."""

    NAME = "ddpm-2020"
    TITLE = "Denoising Diffusion Probabilistic Models (Ho, Jain & Abbeel, 2020)"
    REFERENCE = (
        "Jonathan Ho, Ajay Jain and Pieter Abbeel. *Denoising Diffusion Probabilistic Models.* "
        "NeurIPS 2020, arXiv:2006.11239 (DDPM)."
    )
    Settings = Settings
    PAPER_NUMBERS = PAPER_NUMBERS
    QUICK = {"train_steps": 500, "ancestral_steps": 250, "bpd_n": 64}
    SMOKE = {"train_steps": 3, "net_options": TINY_UNET, "batch_size": 8, "n_samples": 12,
             "ancestral_steps": 8, "ancestral_seeds": 2, "solver_steps": 3, "fid_seeds": 2,
             "bpd_n": 2, "frames": 4, "progressive_rows": 3, "grid_n": 9}  # fmt: skip

    def recipe(self, label: str) -> Any:
        """The training config of objective ``label`` (L_simple: the one ddim-2021 reuses)."""
        s = self.s
        return digits_recipe(s.preset, s.train_steps, s.net_options, s.batch_size, s.seed,
                             **VARIANTS[label])  # fmt: skip

    # ------------------------------------------------------------------ experiments
    def run_experiments(self) -> dict[str, Any]:
        s = self.s
        trained = {}
        for label in VARIANTS:
            self.log(f"training {label} ({s.train_steps} steps)")
            trained[label] = self.train(self.recipe(label), label)
        self.lap("training")
        device = pick_device()
        evaluator = ImageEvaluator("digits")
        data = digits_splits()
        n = min(s.n_samples, evaluator.test_size)
        seeds = [s.seed + 1000 * k for k in range(max(s.fid_seeds, s.ancestral_seeds, 1))]
        models: dict[str, Any] = {}
        for label, (model, _, summary) in trained.items():
            self.log(f"evaluating {label}")
            model = model.to(device)
            ancestral = seeds[: max(s.ancestral_seeds, 1)] if label == SIMPLE else seeds[:1]
            res = self.evaluate(model, evaluator, data, ancestral, seeds[: max(s.fid_seeds, 1)])
            res["summary"] = summary
            dims = data["train"][0].numel() if label == VLB else None
            res["loss_curve"] = loss_curve(summary["run_dir"], dims)
            res["params"] = sum(p.numel() for p in model.parameters())
            models[label] = res
            self.lap(f"evaluate {label}")
        test = data["test"][:n]
        return {"models": models, "floor": evaluator.noise_floor(n), "n": s.n_samples,
                "feature_space": evaluator.feature_space,
                "test_memorisation": memorisation(test, data["train"], data["test_distances"]),
                "test_confidence": evaluator.confidence(test), "device": str(device),
                "train_size": len(data["train"])}  # fmt: skip

    def sample_fids(self, model: Any, evaluator: ImageEvaluator, shape: tuple, sampler: str,
                    steps: int, seeds: list[int], **options: Any) -> tuple[Any, dict, float]:
        """The first seed's samples, the FIDs of every seed's (with
        :func:`~diffusio.papers.verdicts.seed_mean`) and the seconds per seed."""
        fids, first, start = [], None, time.perf_counter()
        for k, seed in enumerate(seeds):
            x = sample_images(model, self.s.n_samples, shape, sampler, steps, seed,
                              progress=self.progress, **(options if k == 0 else {}))  # fmt: skip
            fids.append(evaluator.fid(x))
            first = x if first is None else first
        mean, se = verdicts.seed_mean(fids)
        seconds = (time.perf_counter() - start) / len(seeds)
        return first, {"seeds": list(seeds), "fids": fids, "mean": mean, "se": se}, seconds

    def evaluate(self, model: Any, evaluator: ImageEvaluator, data: dict,
                 ancestral_seeds: list[int], solver_seeds: list[int]) -> dict[str, Any]:
        """Ancestral (the first seed recording x0 along the chain) and DPM-Solver++ samples with
        their FIDs over seeds, the memorisation check, and the bound's bits/dim on the test
        split."""
        s, shape = self.s, tuple(data["train"].shape[1:])
        trace = X0Trace(frame_indices(s.ancestral_steps, s.frames))
        ancestral, fid_a, seconds = self.sample_fids(model, evaluator, shape, "ddpm",
                                                     s.ancestral_steps, ancestral_seeds,
                                                     callback=trace)  # fmt: skip
        solver, fid_s, _ = self.sample_fids(model, evaluator, shape, "dpm-solver++",
                                            s.solver_steps, solver_seeds)  # fmt: skip
        train, test_d = data["train"], data["test_distances"]
        self.log(f"  bits/dim of the bound on {min(s.bpd_n, len(data['test']))} test digits")
        bpd = vlb_bits_per_dim(model, data["test"][: s.bpd_n], seed=s.seed,
                               progress=self.progress)  # fmt: skip
        bpd_mean, bpd_se = mean_se(bpd.tolist())
        return {"ancestral": ancestral, "solver": solver, "fid_ancestral": fid_a,
                "fid_solver": fid_s, "ancestral_seconds": seconds,
                "confidence_ancestral": evaluator.confidence(ancestral),
                "memorisation": memorisation(ancestral, train, test_d),
                "memorisation_solver": memorisation(solver, train, test_d), "trace": trace,
                "progressive": progressive_stats(trace, ancestral, evaluator, model.process),
                "bpd_per_image": bpd, "bpd": bpd_mean, "bpd_se": bpd_se}  # fmt: skip

    # ------------------------------------------------------------------ claims
    def add_claims(self, report: Report, r: dict[str, Any]) -> None:
        s, m, floor = self.s, r["models"], r["floor"]
        simple, vlb = m[SIMPLE], m[VLB]
        ss, sv = simple["fid_solver"], vlb["fid_solver"]
        aa, av = simple["fid_ancestral"], vlb["fid_ancestral"]
        diff_se = difference_se(ss["se"], sv["se"])
        report.claim(
            "Training on L_simple gives better samples than training on the true variational bound",
            f"Tables 1-2 (CIFAR-10, eps prediction): FID {PAPER[SIMPLE][0]:.2f} (L_simple) vs "
            f"{PAPER[VLB][0]:.2f} (L, fixed isotropic Sigma), ancestral sampling",
            f"digits-FID, DPM-Solver++ {s.solver_steps}: {_pm(ss)} vs {_pm(sv)}; ancestral: "
            f"{_pm(aa)} vs {_pm(av)} (floor {floor:.2f})",
            f"L_vlb - L_simple = {sv['mean'] - ss['mean']:+.2f}{_se(diff_se)} (DPM-Solver++, "
            f"the sampler with a seed spread for both models; judged at {SIGNIFICANCE:g} se); "
            f"ancestral {av['mean'] - aa['mean']:+.2f} (not judged)",
            simple_beats_vlb(fid_simple=ss["mean"], se_simple=ss["se"], fid_vlb=sv["mean"],
                             se_vlb=sv["se"]),
        )  # fmt: skip
        d_mean, d_se = paired_difference(simple["bpd_per_image"].tolist(),
                                         vlb["bpd_per_image"].tolist())  # fmt: skip
        report.claim(
            "The true bound gives a slightly better likelihood bound than L_simple",
            f"Table 1: NLL test bound <= {PAPER[VLB][1]:.2f} (L) vs <= {PAPER[SIMPLE][1]:.2f} "
            "bits/dim (L_simple)",
            f"{vlb['bpd']:.3f} ± {vlb['bpd_se']:.3f} (L_vlb) vs {simple['bpd']:.3f} ± "
            f"{simple['bpd_se']:.3f} (L_simple) bits/dim on {len(simple['bpd_per_image'])} test "
            "digits",
            f"L_simple - L_vlb = {d_mean:+.3f} ± {d_se:.3f} bits/dim (paired); paper: "
            f"{PAPER[SIMPLE][1] - PAPER[VLB][1]:+.2f}",
            vlb_better_nll(gain=d_mean, se=d_se),
        )  # fmt: skip
        mem = simple["memorisation"]
        report.claim(
            "Ancestral sampling (Algorithm 2) of the L_simple model gives high-quality samples",
            f"Table 1: FID {PAPER[SIMPLE][0]:.2f} on CIFAR-10 (state of the art then), Inception "
            "score 9.46",
            f"digits-FID {_pm(aa)} vs noise floor {floor:.2f}; median nearest-training-image "
            f"distance {mem['median']:.2f} vs {mem['test_median']:.2f} for test digits (first seed)",
            f"(mean + {SIGNIFICANCE:g} se) / floor = "
            + (f"{(aa['mean'] + SIGNIFICANCE * aa['se']) / floor:.2f}" if math.isfinite(aa["se"])
               else "unknown (no spread)") + f"; memorisation ratio "
            f"{mem['ratio']:.2f} (1 = like held-out data, < {COPY_RATIO} = copying)",
            quality_at_floor(fid=aa["mean"], se=aa["se"], floor=floor, copy_ratio=mem["ratio"]),
        )  # fmt: skip
        rows = simple["progressive"]
        peak = coarse_peak(rows)
        shown = [rows[0], rows[len(rows) // 2]] + ([peak] if peak else [])
        shown = sorted({row["t"]: row for row in shown}.values(), key=lambda row: -row["t"])
        peak_text = (
            f"highest agreement while x0_hat is still >= {COARSE:.0%} of its initial pixel "
            f"distance from the final sample: {peak['agreement']:.2f} ± "
            f"{binomial_se(peak['agreement'], r['n']):.2f} (t = {peak['t']}, "
            f"{peak['rms_fraction']:.0%}); 'decided' means clearly above {AGREE}, 'mostly' "
            f"clearly above {MOSTLY}" if peak else "no frame is that far from final"
        )  # fmt: skip
        report.claim(
            "Progressive generation: large-scale features appear first, details last",
            "Sec. 4.3, Fig. 6 (x0 predictions along the reverse process, CIFAR-10 and CelebA-HQ)",
            "class agreement of x0_hat(x_t) with the final sample: "
            + ", ".join(f"{row['agreement']:.2f} at t = {row['t']}" for row in shown),
            peak_text,
            progressive(start=rows[0]["agreement"], n=r["n"],
                        peak=peak["agreement"] if peak else math.nan),
        )  # fmt: skip

    # ------------------------------------------------------------------ sections
    def add_sections(self, report: Report, r: dict[str, Any]) -> None:
        s, m, floor = self.s, r["models"], r["floor"]
        report.section("Sample quality and likelihood (Tables 1-2)", self.prose("quality", r))
        report.table(
            ["objective", f"FID ancestral ({s.ancestral_steps} steps)",
             f"FID DPM-Solver++ {s.solver_steps}", "noise floor", "bits/dim (bound)", "± se",
             "confidence", "final train loss", "train s"],
            [[label, _pm(res["fid_ancestral"]), _pm(res["fid_solver"]), floor, res["bpd"],
              res["bpd_se"], res["confidence_ancestral"], res["summary"].get("loss"),
              res["summary"].get("train_seconds")] for label, res in m.items()],
        )  # fmt: skip
        report.text("Paper, Table 1 (CIFAR-10): " + "; ".join(
            f"{k}: FID {v[0]:.2f}, NLL <= {v[1]:.2f} bits/dim" for k, v in PAPER.items())
            + ". Table 2's other rows (learned Sigma, mean prediction) are not run here.")
        panels = [(f"{label}, ancestral", res["ancestral"][: s.grid_n]) for label, res in m.items()]
        panels.append((f"{SIMPLE}, DPM-Solver++ {s.solver_steps}", m[SIMPLE]["solver"][: s.grid_n]))
        report.figure(image_panels(panels), "samples.png",
                      f"The first {s.grid_n} samples of the first seed: ancestral sampling of "
                      "each model, and DPM-Solver++ of the L_simple model.")  # fmt: skip
        report.figure(loss_figure(m), "loss_curves.png",
                      "Training losses: L_simple (eps MSE per dimension) and the one-term "
                      "estimate of the true bound T L_t + L_T, in bits/dim (noisy: the terms "
                      "differ by orders of magnitude).")  # fmt: skip
        report.section("Memorisation check", self.prose("memorisation", r))
        mem_rows = [["test digits (held out)", *_mem_cells(r["test_memorisation"])]]
        for label, res in m.items():
            mem_rows.append([f"{label}, ancestral", *_mem_cells(res["memorisation"])])
            mem_rows.append([f"{label}, DPM-Solver++", *_mem_cells(res["memorisation_solver"])])
        report.table(["images (first seed)", "median distance", "ratio to test",
                      "5th percentile", "fraction below test 5th pct."], mem_rows)  # fmt: skip
        report.section("Progressive generation (Fig. 6)", self.prose("progressive", r))
        rows = m[SIMPLE]["progressive"]
        report.table(["t", "class agreement with final", "± se", "RMS distance to final",
                      "fraction of first"],
                     [[row["t"], row["agreement"], binomial_se(row["agreement"], r["n"]),
                       row["rms"], row["rms_fraction"]] for row in rows])  # fmt: skip
        report.figure(progressive_figure(m[SIMPLE]["trace"], rows, s.progressive_rows),
                      "progressive.png",
                      "Progressive generation (cf. the paper's Fig. 6): x_t (left) and the "
                      "predicted x0 (right, clipped to [-1, 1] as the sampler uses it) along "
                      "ancestral chains, t decreasing to the right.")  # fmt: skip

    def text_values(self, r: dict[str, Any]) -> dict[str, Any]:
        s, m = self.s, r["models"]
        steps_text = (
            "all T = 1000 steps (Algorithm 2 exactly)" if s.ancestral_steps == 1000 else
            f"{s.ancestral_steps} steps evenly strided over T = 1000 (Algorithm 2's update on a "
            "sub-grid, the posterior variance of each stride)"
        )  # fmt: skip
        seeds = "; ".join(
            f"{label} {name}: " + ", ".join(f"{v:.2f}" for v in m[label][key]["fids"])
            for label in m for key, name in (("fid_ancestral", "ancestral"),
                                             ("fid_solver", "DPM-Solver++"))
        )  # fmt: skip
        return {"params": m[SIMPLE]["params"], "steps_text": steps_text, "test_size": TEST_SIZE,
                "batch": s.batch_size or 128, "bpd_n": min(s.bpd_n, TEST_SIZE),
                "floor_n": min(s.n_samples, TEST_SIZE), "seed_fids": seeds,
                "seeds": m[SIMPLE]["fid_ancestral"]["seeds"], "min_seeds": MIN_SEEDS,
                "anc_seconds": m[SIMPLE]["ancestral_seconds"],
                "frames": len(m[SIMPLE]["progressive"]), "significance": SIGNIFICANCE}  # fmt: skip

    def record_metrics(self, r: dict[str, Any]) -> dict[str, Any]:
        s = self.s
        keep = ("fid_ancestral", "fid_solver", "ancestral_seconds", "bpd", "bpd_se",
                "memorisation", "memorisation_solver", "progressive", "params")  # fmt: skip
        models = {
            label: {**{k: res[k] for k in keep}, "ancestral_steps": s.ancestral_steps,
                    "solver_steps": s.solver_steps, "confidence": res["confidence_ancestral"],
                    "bpd_n": int(res["bpd_per_image"].numel()),
                    "train": {k: res["summary"].get(k)
                              for k in ("step", "loss", "train_seconds", "run_dir")}}
            for label, res in r["models"].items()
        }  # fmt: skip
        return {"n": r["n"], "fid_floor": r["floor"], "test_memorisation": r["test_memorisation"],
                "device": r["device"], "models": models,
                "paper_table1": {k: {"fid": v[0], "nll_bpd": v[1]} for k, v in PAPER.items()}}


# --------------------------------------------------------------------------- figures
def loss_figure(results: dict[str, Any]) -> Figure:
    """Training curves of the two objectives (L_simple: MSE per dimension; L_vlb: bits/dim)."""
    fig = new_figure(10.0, 3.6)
    units = {SIMPLE: "L_simple (eps MSE per dimension)", VLB: "L_vlb estimate (bits/dim)"}
    for ax, (label, res) in zip(fig.subplots(1, len(results), squeeze=False)[0],
                                results.items(), strict=True):  # fmt: skip
        plot_loss_curve(ax, res["loss_curve"]["step"], res["loss_curve"]["loss"], "logged mean")
        ax.set_xlabel("step")
        ax.set_ylabel(units.get(label, label), fontsize=8)
        ax.set_title(f"training with {label}", fontsize=9)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _mem_cells(mem: dict[str, float]) -> list[float]:
    return [mem["median"], mem["ratio"], mem["p5"], mem["below_test_p5"]]


REPRODUCTION = DDPM2020
reproduce = DDPM2020.run
