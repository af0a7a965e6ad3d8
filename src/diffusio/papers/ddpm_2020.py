"""Ho, Jain & Abbeel 2020, "Denoising Diffusion Probabilistic Models" (NeurIPS 2020,
arXiv:2006.11239): the reproduction ``ddpm-2020``, on scikit-learn's 8x8 digits.

The paper's model: a fixed forward chain ``q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1},
beta_t I)`` with linear betas 1e-4 .. 0.02 over T = 1000 steps, a U-Net that predicts the noise,
and reverse kernels ``p(x_{t-1} | x_t) = N(mu_theta(x_t, t), sigma_t^2 I)`` with fixed
variances. Two training objectives (Sec. 3.4, Table 2):

* ``L_simple = E_{t, x0, eps} || eps - eps_theta(sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, t) ||^2``
  with t uniform on 1..T (Algorithm 1): a reweighted bound that down-weights the easy, small-t
  terms;
* the true variational bound ``L = L_T + sum_{t>1} L_{t-1} + L_0`` (eq. 5), with the
  discretized Gaussian decoder L_0 (eq. 13) on 8-bit data, here estimated per example as
  ``T L_t + L_T`` for one uniformly drawn t.

Checked here, with the same U-Net, data and budget for both objectives:

1. *Sample quality* (Table 2): L_simple gives better samples than the true bound (CIFAR-10 FID
   3.17 vs 13.22 with fixed isotropic Sigma). Digits-FID (:class:`~diffusio.metrics.fid.
   ImageEvaluator`, n = 359, the held-out split's size, next to its noise floor) of Algorithm 2
   (ancestral sampling, x0 clipped to [-1, 1], all T steps) and of DPM-Solver++ with 20 steps;
   the FID's own noise from several sampling seeds.
2. *Likelihood* (Table 2): the true bound gives a slightly better NLL bound (<= 3.70 vs <= 3.75
   bits/dim). Bits/dim of the full bound (all T terms, discretized decoder) on the test split,
   paired across the two models (same images, same noise).
3. *Memorisation*: FIDs at or below the floor can mean copies of the 1,438 training digits, so
   every sample's L2 distance to its nearest training image is compared with the same
   statistic for the held-out test digits.
4. *Progressive generation* (Sec. 4.3, Fig. 6): the prediction ``x0_hat(x_t)`` along one
   ancestral chain, recorded by :class:`X0Recorder` (a prediction modifier that changes
   nothing); "large-scale features appear first and details last" is measured as the
   classifier's agreement between ``x0_hat`` at time t and the final sample, next to their
   pixel distance.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from ..core.steering import X0Recorder
from ..core.vlb import time_indices
from ..data.datasets import load_image_dataset
from ..image.evaluate import vlb_bits_per_dim
from ..image.sampling import sample_images
from ..metrics.fid import ImageEvaluator
from ..metrics.likelihood import mean_and_stderr
from ..metrics.neighbours import memorisation, nearest_distances
from ..plotting import new_figure, plot_loss_curve, show_images
from ..train.config import TrainConfig, load_config
from ..train.trainer import read_metrics
from .report import Report, choose_settings, fmt, logger, reproduce_paper
from .runs import pick_device, train_or_load

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..core.model import DiffusionModel

__all__ = [
    "SETTINGS",
    "Settings",
    "digits_config",
    "reproduce",
]

NAME = "ddpm-2020"
TITLE = "Denoising Diffusion Probabilistic Models (Ho, Jain & Abbeel, 2020)"
REFERENCE = (
    "Jonathan Ho, Ajay Jain and Pieter Abbeel. *Denoising Diffusion Probabilistic Models.* "
    "NeurIPS 2020, arXiv:2006.11239 (DDPM)."
)

SIMPLE, VLB = "L_simple", "L_vlb"
#: The two objectives of the paper's Table 2 that we train: config overrides of the preset.
VARIANTS: dict[str, dict[str, Any]] = {
    SIMPLE: {},
    VLB: {"weighting": "vlb", "loss_options": {"decoder": "discretized"}},
}
#: Paper Table 2 (CIFAR-10, fixed isotropic Sigma): FID and NLL test bound in bits/dim.
PAPER_TABLE2 = {SIMPLE: (3.17, 3.75), VLB: (13.22, 3.70)}


@dataclass(frozen=True)
class Settings:
    """Every knob of the reproduction; ``quick`` and ``default`` differ only in sizes.

    ``preset`` is the training recipe (``digits-ddpm``: DDPM's linear schedule, T = 1000, eps
    prediction, discrete times, the 755k-parameter digits U-Net, batch 128, AdamW 1e-3 with
    warm-up and cosine decay, EMA 0.999), trained ``train_steps`` steps with each objective;
    ``net_options`` / ``batch_size`` replace the preset's (tests use a tiny U-Net). Samples:
    ``n_samples`` (359 = the test split, so the FID compares with the noise floor) by ancestral
    sampling over ``ancestral_steps`` grid steps (1000 = Algorithm 2 exactly; fewer = the same
    sampler on an evenly strided sub-grid) and by DPM-Solver++ with ``solver_steps``; the FID's
    seed-to-seed spread from ``fid_seeds`` seeds of the solver. ``bpd_n`` test images for the
    bound; ``frames`` recorded x0 predictions along the chain, ``progressive_rows`` chains shown.
    """

    preset: str = "digits-ddpm"
    train_steps: int = 4000
    net_options: dict[str, Any] | None = None
    batch_size: int | None = None
    n_samples: int = 359
    ancestral_steps: int = 1000
    solver_steps: int = 20
    fid_seeds: int = 3
    bpd_n: int = 359
    frames: int = 10
    progressive_rows: int = 8
    grid_n: int = 100
    seed: int = 0


SETTINGS: dict[str, Settings] = {
    "default": Settings(),
    "quick": Settings(train_steps=500, ancestral_steps=250, bpd_n=64),
}
"""Default: two trainings of 4,000 steps (about 8 minutes each at 8 steps/s on two free CPU
cores) plus 1000-step ancestral sampling and the full bound on 359 test digits per model (about
2 x 3-4 minutes): about 25 minutes. Quick: 500 steps each, a 250-step ancestral grid, the bound
on 64 test digits: about 4 minutes."""

# Verdict thresholds.
NOISE_SIGMAS = 2.0  # a difference is "clear" beyond this many FID (or bits/dim) std. errors
FLOOR_CLOSE = 1.25  # FID within this factor of the noise floor: "near the data"
FLOOR_PARTLY = 2.0  # ... within this factor: partly
COPY_RATIO = 0.5  # sample/test median nearest-train distance below this: copying
AGREE = 0.9  # class agreement with the final sample that counts as "decided"
MOSTLY = 0.5  # ... as "mostly decided" (partly reproduced); agreement at t = T must be below it
COARSE = 0.25  # ... while the x0 prediction is still this far (fraction of its start) from final
TEST_SIZE = 359


_log = logger(NAME)


# --------------------------------------------------------------------------- building blocks
def digits_config(
    preset: str,
    steps: int,
    net_options: dict[str, Any] | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    **overrides: Any,
) -> TrainConfig:
    """The preset trained ``steps`` steps (``overrides`` e.g. the objective). With no
    overrides this is the L_simple model ddim-2021 uses too: the same config, hence the same
    cache directory name (``models/L_simple-<hash>``) in either reproduction's ``out_dir``."""
    values: dict[str, Any] = {"steps": int(steps), "seed": int(seed), **overrides}
    if net_options is not None:
        values["net_options"] = dict(net_options)
    if batch_size is not None:
        values["batch_size"] = int(batch_size)
    label = overrides.get("weighting", "simple")
    values["description"] = f"{preset} ({'L_' + label})"
    return load_config(preset, **values)


def variant_config(settings: Settings, label: str) -> TrainConfig:
    s = settings
    return digits_config(
        s.preset, s.train_steps, s.net_options, s.batch_size, s.seed, **VARIANTS[label]
    )


def frame_indices(steps: int, frames: int) -> list[int]:
    """``frames`` evaluation indices spread evenly over a chain of ``steps`` evaluations
    (first and last included)."""
    frames = max(1, min(frames, steps))
    return sorted({round(float(k)) for k in np.linspace(0, steps - 1, frames)})


def progressive_stats(
    recorder: X0Recorder, final: Tensor, evaluator: ImageEvaluator, process: Any
) -> list[dict[str, Any]]:
    """Per recorded frame: the table time t (1..T), the classifier's agreement between the
    clamped ``x0_hat`` and the final sample, and their RMS pixel distance (absolute and as a
    fraction of the first frame's)."""
    final = final.to(torch.float32)
    labels = evaluator.predict(final)
    rows = []
    first = None
    for t, x0 in zip(recorder.times, recorder.x0, strict=True):
        n = x0.shape[0]
        x0 = x0.clamp(-1.0, 1.0)
        rms = float((x0 - final[:n]).pow(2).mean().sqrt())
        first = rms if first is None else first
        index = int(time_indices(process, torch.tensor([t], dtype=torch.float64))[0])
        rows.append(
            {
                "t": index + 1,
                "agreement": float((evaluator.predict(x0) == labels[:n]).double().mean()),
                "rms": rms,
                "rms_fraction": rms / first if first > 0 else float("nan"),
            }
        )
    return rows


# --------------------------------------------------------------------------- experiments
def train_variants(
    settings: Settings, out: Path, progress: bool
) -> dict[str, tuple[DiffusionModel, dict[str, Any]]]:
    trained = {}
    for label in VARIANTS:
        _log(f"training {label} ({settings.train_steps} steps)")
        model, _, summary = train_or_load(
            variant_config(settings, label), out, label, progress=progress
        )
        trained[label] = (model, summary)
    return trained


def evaluate_variant(
    model: DiffusionModel,
    settings: Settings,
    evaluator: ImageEvaluator,
    data: dict[str, Tensor],
    progress: bool,
) -> dict[str, Any]:
    """Ancestral and DPM-Solver++ samples with their FIDs, the memorisation check, the bound's
    bits/dim on the test split and the progressive-generation record."""
    s = settings
    shape = tuple(data["train"].shape[1:])
    recorder = X0Recorder(frame_indices(s.ancestral_steps, s.frames))
    start = time.perf_counter()
    ancestral = sample_images(
        model, s.n_samples, shape, "ddpm", s.ancestral_steps, s.seed, guidance=[recorder],
        progress=progress,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    solver = sample_images(
        model, s.n_samples, shape, "dpm-solver++", s.solver_steps, s.seed, progress=progress
    )
    result: dict[str, Any] = {
        "ancestral": ancestral,
        "solver": solver,
        "fid_ancestral": evaluator.fid(ancestral),
        "fid_solver": evaluator.fid(solver),
        "ancestral_seconds": seconds,
        "confidence_ancestral": evaluator.confidence(ancestral),
        "memorisation": memorisation(ancestral, data["train"], data["test_distances"]),
        "memorisation_solver": memorisation(solver, data["train"], data["test_distances"]),
        "recorder": recorder,
        "progressive": progressive_stats(recorder, ancestral, evaluator, model.process),
    }
    _log(f"  bits/dim of the bound on {min(s.bpd_n, len(data['test']))} test digits")
    bpd = vlb_bits_per_dim(model, data["test"][: s.bpd_n], seed=s.seed, progress=progress)
    result["bpd_per_image"] = bpd
    result["bpd"], result["bpd_se"] = mean_and_stderr(bpd)
    return result


def run_experiments(settings: Settings, out: Path, progress: bool) -> dict[str, Any]:
    s = settings
    device = pick_device()
    timings: dict[str, float] = {}
    start = time.perf_counter()
    trained = train_variants(s, out, progress)
    timings["training"] = round(time.perf_counter() - start, 1)
    evaluator = ImageEvaluator("digits")
    train, _ = load_image_dataset("digits", "train")
    test, _ = load_image_dataset("digits", "test")
    n = min(s.n_samples, evaluator.test_size)
    data = {"train": train, "test": test, "test_distances": nearest_distances(test, train)}
    results: dict[str, Any] = {}
    for label, (model, summary) in trained.items():
        _log(f"evaluating {label}")
        start = time.perf_counter()
        model = model.to(device)
        results[label] = evaluate_variant(model, s, evaluator, data, progress)
        results[label]["summary"] = summary
        results[label]["loss_curve"] = loss_curve(summary["run_dir"], label, train[0].numel())
        results[label]["params"] = sum(p.numel() for p in model.parameters())
        timings[f"evaluate {label}"] = round(time.perf_counter() - start, 1)
    _log("FID spread over sampling seeds")
    model = trained[SIMPLE][0]
    shape = tuple(train.shape[1:])

    def solver_samples(seed: int) -> Tensor:
        return sample_images(model, s.n_samples, shape, "dpm-solver++", s.solver_steps, seed)

    seeds = [s.seed + 1000 * k for k in range(max(s.fid_seeds, 1))]
    spread = evaluator.fid_spread(solver_samples, seeds, {s.seed: results[SIMPLE]["fid_solver"]})
    test_subset = test[:n]
    return {
        "models": results,
        "floor": evaluator.noise_floor(n),
        "n": s.n_samples,
        "spread": spread,
        "feature_space": evaluator.feature_space,
        "test_memorisation": memorisation(test_subset, train, data["test_distances"]),
        "test_confidence": evaluator.confidence(test_subset),
        "timings": timings,
        "device": str(device),
        "train_size": len(train),
    }


def loss_curve(run_dir: str | os.PathLike, label: str, dim: int) -> dict[str, list[float]]:
    """Logged training losses; the bound's (nats per image) converted to bits/dim."""
    records = [r for r in read_metrics(Path(run_dir) / "metrics.jsonl") if r.get("kind") == "train"]
    steps = [float(r["step"]) for r in records if "loss" in r]
    loss = [float(r["loss"]) for r in records if "loss" in r]
    if label == VLB:
        loss = [v / (dim * math.log(2.0)) for v in loss]
    return {"step": steps, "loss": loss}


# --------------------------------------------------------------------------- figures
def samples_figure(panels: Sequence[tuple[str, Tensor]], n: int) -> Figure:
    """Side-by-side grids of the first ``n`` images of each set."""
    fig = new_figure(3.4 * len(panels), 3.7)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, images) in zip(axes, panels, strict=True):
        shown = images[:n]
        show_images(ax, shown, math.ceil(math.sqrt(len(shown))), title)
    fig.tight_layout()
    return fig


def progressive_figure(recorder: X0Recorder, rows_t: list[dict[str, Any]], n: int) -> Figure:
    """Paper Fig. 6: per chain (row), the state x_t (left) and the prediction x0_hat(x_t)
    (right) at the recorded times, t decreasing to the right."""
    frames = len(recorder.x0)
    n = min(n, recorder.x0[0].shape[0]) if frames else 0
    fig = new_figure(1.0 + 0.62 * 2 * frames, 1.2 + 0.55 * n)
    if not frames or not n:
        return fig
    axes = fig.subplots(1, 2, squeeze=False)[0]
    labels = [f"{r['t']}" for r in rows_t]
    for ax, name, seq in ((axes[0], "x_t", recorder.xt), (axes[1], "predicted x0", recorder.x0)):
        stacked = torch.stack([f[:n] for f in seq], dim=1).reshape(-1, *seq[0].shape[1:])
        show_images(ax, stacked, frames, f"{name} along the ancestral chain")
        size = seq[0].shape[-1] + 1
        ax.set_xticks([1 + size * k + size / 2 for k in range(frames)])
        ax.set_xticklabels(labels, fontsize=7)
        ax.set_xlabel("t", fontsize=8)
    fig.tight_layout()
    return fig


def loss_figure(results: dict[str, Any]) -> Figure:
    """Training curves of the two objectives (L_simple: MSE per dimension; L_vlb: bits/dim)."""
    fig = new_figure(10.0, 3.6)
    axes = fig.subplots(1, len(results), squeeze=False)[0]
    units = {SIMPLE: "L_simple (eps MSE per dimension)", VLB: "L_vlb estimate (bits/dim)"}
    for ax, (label, r) in zip(axes, results.items(), strict=True):
        plot_loss_curve(ax, r["loss_curve"]["step"], r["loss_curve"]["loss"], "logged mean")
        ax.set_xlabel("step")
        ax.set_ylabel(units.get(label, label), fontsize=8)
        ax.set_title(f"training with {label}", fontsize=9)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- verdicts
def quality_verdict(fid_simple: float, fid_vlb: float, sigma: float) -> str:
    """L_simple better than L_vlb: clearly (beyond the FID noise), within the noise, or not."""
    diff = fid_vlb - fid_simple
    if diff > NOISE_SIGMAS * _finite(sigma):
        return "reproduced"
    return "partly reproduced" if diff > 0 else "not reproduced"


def likelihood_verdict(diff: float, se: float) -> str:
    """``diff`` = bits/dim of L_simple minus L_vlb (paired): the bound better by more than
    its noise, better within the noise, or not better."""
    if diff > NOISE_SIGMAS * _finite(se):
        return "reproduced"
    return "partly reproduced" if diff > 0 else "not reproduced"


def floor_verdict(fid: float, floor: float, ratio: float) -> str:
    """Sample quality near the data (FID within FLOOR_CLOSE x the floor) without copying."""
    if fid <= FLOOR_CLOSE * floor and ratio >= COPY_RATIO:
        return "reproduced"
    if fid <= FLOOR_PARTLY * floor:
        return "partly reproduced"
    return "not reproduced"


def coarse_peak(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Among the frames where x0_hat is still at least COARSE (fraction of its initial
    distance) away from the final sample, the one with the highest class agreement."""
    coarse = [row for row in rows[:-1] if row["rms_fraction"] >= COARSE]
    return max(coarse, key=lambda row: row["agreement"], default=None)


def progressive_verdict(rows: list[dict[str, Any]]) -> str:
    """Coarse content (the digit) decided while the x0 prediction is still far from final:
    agreement starts low (< MOSTLY at t = T) and reaches AGREE (reproduced) or MOSTLY (partly)
    at a frame that is still at least COARSE of the way from final in pixels."""
    peak = coarse_peak(rows)
    if peak is None or len(rows) < 3 or rows[0]["agreement"] >= MOSTLY:
        return "not reproduced"
    if peak["agreement"] >= AGREE:
        return "reproduced"
    return "partly reproduced" if peak["agreement"] >= MOSTLY else "not reproduced"


def _finite(value: float) -> float:
    return value if math.isfinite(value) else 0.0


# --------------------------------------------------------------------------- report
def scale_text(s: Settings, r: dict[str, Any]) -> str:
    params = r["models"][SIMPLE]["params"]
    steps = (
        "all T = 1000 steps (Algorithm 2 exactly)"
        if s.ancestral_steps == 1000
        else (
            f"{s.ancestral_steps} steps evenly strided over T = 1000 (Algorithm 2's update on a "
            "sub-grid, the posterior variance of each stride)"
        )
    )
    return (
        "**Paper:** CIFAR-10 32x32 (50k training images), a 35.7M-parameter U-Net, 800k steps "
        "at batch 128 (TPU v3-8), linear betas 1e-4 .. 0.02, T = 1000, FID of 50k samples "
        "(Inception features) and the NLL bound in bits/dim on the test set.\n\n"
        f"**Here:** scikit-learn's 8x8 digits ({r['train_size']:,} training images, "
        f"{TEST_SIZE} held out), the `{s.preset}` recipe: the same schedule, eps prediction, "
        f"a {params:,}-parameter U-Net, {s.train_steps:,} steps at batch "
        f"{s.batch_size or 128} per objective (one network trained with L_simple, one with the "
        "true bound, discretized decoder, fixed variance beta-tilde); "
        f"{s.n_samples} samples per sampler, ancestral sampling over {steps}, x0 clipped to "
        f"[-1, 1]; the bound on {min(s.bpd_n, TEST_SIZE)} test digits. FID is the Frechet "
        f"distance in the features of a small digit classifier ({r['feature_space']}), so only "
        "its ratio to the noise floor means anything, never its value next to CIFAR-10's. "
        f"Sampling and the bound ran on: {r['device']}."
    )


def add_claims(report: Report, s: Settings, r: dict[str, Any]) -> None:
    m = r["models"]
    simple, vlb = m[SIMPLE], m[VLB]
    sigma, floor = r["spread"]["std"], r["floor"]
    paper = PAPER_TABLE2
    report.claim(
        "Training on L_simple gives better samples than training on the true variational bound",
        f"Table 2: FID {paper[SIMPLE][0]:.2f} (L_simple) vs {paper[VLB][0]:.2f} (L, fixed "
        "isotropic Sigma)",
        f"digits-FID, ancestral: {simple['fid_ancestral']:.2f} vs {vlb['fid_ancestral']:.2f}; "
        f"DPM-Solver++ {s.solver_steps}: {simple['fid_solver']:.2f} vs {vlb['fid_solver']:.2f} "
        f"(floor {floor:.2f})",
        f"L_vlb - L_simple = {vlb['fid_ancestral'] - simple['fid_ancestral']:+.2f} (ancestral); "
        f"seed-to-seed FID std {fmt(sigma)}",
        quality_verdict(simple["fid_ancestral"], vlb["fid_ancestral"], sigma),
    )
    diff = simple["bpd_per_image"] - vlb["bpd_per_image"]
    d_mean, d_se = mean_and_stderr(diff)
    report.claim(
        "The true bound gives a slightly better likelihood bound than L_simple",
        f"Table 2: NLL <= {paper[VLB][1]:.2f} (L) vs <= {paper[SIMPLE][1]:.2f} bits/dim (L_simple)",
        f"{vlb['bpd']:.3f} ± {vlb['bpd_se']:.3f} (L_vlb) vs {simple['bpd']:.3f} ± "
        f"{simple['bpd_se']:.3f} (L_simple) bits/dim on {len(diff)} test digits",
        f"L_simple - L_vlb = {d_mean:+.3f} ± {d_se:.3f} bits/dim (paired); paper: +0.05",
        likelihood_verdict(d_mean, d_se),
    )
    mem = simple["memorisation"]
    report.claim(
        "Ancestral sampling (Algorithm 2) of the L_simple model gives high-quality samples",
        f"FID {paper[SIMPLE][0]:.2f} on CIFAR-10 (state of the art then), Inception score 9.46",
        f"digits-FID {simple['fid_ancestral']:.2f} vs noise floor {floor:.2f}; median "
        f"nearest-training-image distance {mem['median']:.2f} vs {mem['test_median']:.2f} for "
        "test digits",
        f"{simple['fid_ancestral'] / floor:.2f} x the floor; memorisation ratio "
        f"{mem['ratio']:.2f} (1 = like held-out data, < {COPY_RATIO} = copying)",
        floor_verdict(simple["fid_ancestral"], floor, mem["ratio"]),
    )
    rows = simple["progressive"]
    peak = coarse_peak(rows)
    shown = [rows[0], rows[len(rows) // 2]] + ([peak] if peak else [])
    shown = sorted({row["t"]: row for row in shown}.values(), key=lambda row: -row["t"])
    peak_text = (
        f"highest agreement while x0_hat is still >= {COARSE:.0%} of its initial pixel distance "
        f"from the final sample: {peak['agreement']:.2f} (t = {peak['t']}, "
        f"{peak['rms_fraction']:.0%}); 'decided' means >= {AGREE}"
        if peak
        else "no frame is that far from final"
    )
    report.claim(
        "Progressive generation: large-scale features appear first, details last",
        "Sec. 4.3, Fig. 6 (x0 predictions along the reverse process, CIFAR-10 and CelebA-HQ)",
        "class agreement of x0_hat(x_t) with the final sample: "
        + ", ".join(f"{row['agreement']:.2f} at t = {row['t']}" for row in shown),
        peak_text,
        progressive_verdict(rows),
    )


def add_sections(report: Report, s: Settings, r: dict[str, Any]) -> None:
    m = r["models"]
    floor, spread = r["floor"], r["spread"]
    report.section(
        "Sample quality and likelihood (Table 2)",
        f"Digits-FID of {s.n_samples} samples against the training set; the noise floor is the "
        f"FID of the {min(s.n_samples, TEST_SIZE)} held-out test digits, what a perfect model "
        f"scores at this n. FID noise: DPM-Solver++ {s.solver_steps} on the L_simple model "
        f"with seeds {spread['seeds']} gave {', '.join(f'{v:.2f}' for v in spread['fids'])} "
        f"(std {fmt(spread['std'])}). Bits/dim: the full bound (all 1000 terms and the prior, "
        "discretized decoder) on 8-bit-quantized test digits, mean ± standard error over "
        "images. 'Confidence' is the feature classifier's mean top probability (test digits: "
        f"{r['test_confidence']:.3f}).",
    )
    header = ["objective", f"FID ancestral ({s.ancestral_steps} steps)",
              f"FID DPM-Solver++ {s.solver_steps}", "noise floor", "bits/dim (bound)", "± se",
              "confidence", "final train loss", "train s"]  # fmt: skip
    rows = []
    for label, res in m.items():
        rows.append([
            label, res["fid_ancestral"], res["fid_solver"], floor, res["bpd"], res["bpd_se"],
            res["confidence_ancestral"], res["summary"].get("loss"),
            res["summary"].get("train_seconds"),
        ])  # fmt: skip
    report.table(header, rows)
    report.text(
        "Paper, Table 2 (CIFAR-10): "
        + "; ".join(
            f"{k}: FID {v[0]:.2f}, NLL <= {v[1]:.2f} bits/dim" for k, v in PAPER_TABLE2.items()
        )
        + ". The paper's other rows (learned diagonal Sigma, mean prediction) are not run here."
    )
    report.figure(
        samples_figure(
            [(f"{label}, ancestral", res["ancestral"]) for label, res in m.items()]
            + [(f"{SIMPLE}, DPM-Solver++ {s.solver_steps}", m[SIMPLE]["solver"])],
            s.grid_n,
        ),
        "samples.png",
        f"The first {s.grid_n} samples: ancestral sampling of each model, and DPM-Solver++ "
        "of the L_simple model (same seed).",
    )
    report.figure(
        loss_figure(m),
        "loss_curves.png",
        "Training losses: L_simple (eps MSE per dimension) and the one-term estimate of the "
        "true bound T L_t + L_T, in bits/dim (noisy: the terms differ by orders of magnitude).",
    )
    report.section(
        "Memorisation check",
        "Each image's L2 distance (pixels in [-1, 1], 64 dimensions) to its nearest training "
        "digit. Held-out test digits show what a model that generalises gives; a model that "
        "copies its training set has much smaller distances (ratio of medians well below 1) and "
        "many samples below the test digits' 5th percentile (about 5% expected).",
    )
    mem_rows = [["test digits (held out)", *_mem_cells(r["test_memorisation"])]]
    for label, res in m.items():
        mem_rows.append([f"{label}, ancestral", *_mem_cells(res["memorisation"])])
        mem_rows.append([f"{label}, DPM-Solver++", *_mem_cells(res["memorisation_solver"])])
    report.table(
        ["images", "median distance", "ratio to test", "5th percentile",
         "fraction below test 5th pct."],
        mem_rows,
    )  # fmt: skip
    report.section(
        "Progressive generation (Fig. 6)",
        f"One ancestral chain per sample of the L_simple model; at {len(m[SIMPLE]['progressive'])}"
        " times the state x_t and the model's prediction x0_hat(x_t) = (x_t - sqrt(1 - abar_t) "
        "eps_theta) / sqrt(abar_t) were recorded (a prediction modifier that changes nothing). "
        "Agreement: fraction of the chains whose clamped x0_hat is classified as the same digit "
        "as the final sample; RMS: pixel distance between the two.",
    )
    report.table(
        ["t", "class agreement with final", "RMS distance to final", "fraction of first"],
        [[row["t"], row["agreement"], row["rms"], row["rms_fraction"]]
         for row in m[SIMPLE]["progressive"]],
    )  # fmt: skip
    report.figure(
        progressive_figure(m[SIMPLE]["recorder"], m[SIMPLE]["progressive"], s.progressive_rows),
        "progressive.png",
        "Progressive generation (cf. the paper's Fig. 6): x_t (left) and the predicted x0 "
        "(right, unclipped) along ancestral chains, t decreasing to the right.",
    )


def _mem_cells(mem: dict[str, float]) -> list[float]:
    return [mem["median"], mem["ratio"], mem["p5"], mem["below_test_p5"]]


def record_metrics(report: Report, s: Settings, r: dict[str, Any]) -> None:
    out = report.metrics
    out["n"] = r["n"]
    out["fid_floor"] = r["floor"]
    out["fid_seed_spread"] = r["spread"]
    out["test_memorisation"] = r["test_memorisation"]
    out["device"] = r["device"]
    out.update(settings=asdict(s), stage_seconds=r["timings"])
    models = {}
    for label, res in r["models"].items():
        models[label] = {
            "fid_ancestral": res["fid_ancestral"],
            "fid_solver": res["fid_solver"],
            "ancestral_steps": s.ancestral_steps,
            "solver_steps": s.solver_steps,
            "ancestral_seconds": res["ancestral_seconds"],
            "confidence": res["confidence_ancestral"],
            "bpd": res["bpd"],
            "bpd_se": res["bpd_se"],
            "bpd_n": int(res["bpd_per_image"].numel()),
            "memorisation": res["memorisation"],
            "memorisation_solver": res["memorisation_solver"],
            "progressive": res["progressive"],
            "params": res["params"],
            "train": {k: res["summary"].get(k) for k in ("step", "loss", "train_seconds",
                                                          "run_dir")},
        }  # fmt: skip
    out["models"] = models
    out["paper_table2"] = {k: {"fid": v[0], "nll_bpd": v[1]} for k, v in PAPER_TABLE2.items()}


NOTES = """
* **Objectives.** L_simple is the eps-MSE with t uniform on the table (Algorithm 1); the true
  bound is trained through its unbiased one-term estimate T L_t + L_T (uniform t, no importance
  sampling, as the paper), with L_0 the discretized Gaussian decoder and the reverse variance
  fixed to beta-tilde (clipped at t = 1), i.e. the paper's "fixed isotropic Sigma" row.
* **Samplers.** Algorithm 2 is `sample_images(..., "ddpm")`: posterior mean with the predicted
  x0 clipped to [-1, 1] at every step (as the reference code does) and the posterior variance
  beta-tilde; its last step returns the predicted x0 (z = 0). DPM-Solver++ (Lu et al. 2022) is a
  later ODE solver (the demo's sampler), shown for its cost: 20 evaluations instead of 1000; the
  table says how much of the ancestral sampler's quality it keeps on these models.
* **FID at n = 359.** The Frechet distance is biased upwards at small n, so every FID here uses
  n = 359, the size of the held-out split whose own FID is the floor. Differences smaller than
  about twice the seed-to-seed std are noise.
* **Bits/dim.** The digits have 17 grey levels, quantized here onto the 256 8-bit bins; the
  numbers are bounds on a discrete probability, comparable between the two models, not with
  CIFAR-10's.
"""


def reproduce(
    out_dir: str | os.PathLike = Path("runs") / NAME,
    quick: bool = False,
    *,
    settings: Settings | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Reproduce Ho et al. 2020 (DDPM, NeurIPS 2020, arXiv:2006.11239) on 8x8 digits.

    Trains the ``digits-ddpm`` U-Net with L_simple (Algorithm 1) and, as Table 2's ablation,
    on the true variational bound (discretized decoder, fixed variance); measures the digits-FID
    (n = 359, next to its noise floor and seed-to-seed spread) of ancestral sampling
    (Algorithm 2) and of DPM-Solver++, bits/dim of the bound on the test split, a memorisation
    check, and the progressive generation of Fig. 6.

    Args:
        out_dir: where ``report.md``, ``metrics.json``, the figures and the cached training runs
            (``models/``) go.
        quick: the few-minute version (fewer training steps, a strided ancestral grid, the
            bound on fewer test digits).
        settings: replaces the quick/default :data:`SETTINGS` (tests use tiny ones).
        progress: show progress bars.

    Returns:
        The metrics written to ``metrics.json`` (with the run info and the claims).
    """
    s = choose_settings(SETTINGS, quick, settings)
    return reproduce_paper(sys.modules[__name__], s, out_dir, quick, progress)
