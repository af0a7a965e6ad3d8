"""Ho & Salimans 2021, "Classifier-Free Diffusion Guidance" (NeurIPS 2021 Workshop on Deep
Generative Models, arXiv:2207.12598): the reproduction ``cfg-2021`` on digits.

One network learns both the conditional and the unconditional model: during training each
label is replaced by a null token with probability ``p_uncond`` (Alg. 1), and sampling mixes
the two predictions (eq. 6, Alg. 2):

    eps_tilde(x_t, c) = (1 + w) eps(x_t, c) - w eps(x_t),

which is classifier guidance with the *implicit* classifier ``p(c | x_t) ~ p(x_t | c) / p(x_t)``
at scale ``1 + w`` (Sec. 3.2) -- exact for the oracle mixture, see ``tests/test_guidance.py``.
``w = 0`` is the plain conditional model. The paper's claim (Sec. 4, Table 1, Fig. 4 on
ImageNet 64x64): the guidance weight trades sample quality for diversity exactly as classifier
guidance does -- a small ``w`` gives the best FID, a larger ``w`` a higher Inception score and
precision at the cost of FID and recall -- without any classifier.

Measured here: the ``digits-ddpm-cond`` U-Net (``p_uncond = 0.1``, the paper's best is 0.1 or
0.2), a sweep of ``w``, and per ``w`` the accuracy of an independent clean classifier on the
intended labels (our stand-in for IS), digits-FID against its noise floor, and precision /
recall. The classifier-guidance curve of ``guided-diffusion-2021`` is drawn on the same axes:
read from its ``metrics.json`` in a sibling output directory when there is one, else measured
here by guiding this same network's unconditional mode (null label) with a noise-aware
classifier.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..image.sampling import balanced_labels
from . import guided_diffusion_2021 as gd
from .report import Report, choose_settings, fmt, logger, reproduce_paper
from .runs import train_or_load

__all__ = ["SETTINGS", "Settings", "reproduce"]

NAME = "cfg-2021"
TITLE = "Classifier-Free Diffusion Guidance (Ho & Salimans, 2021)"
REFERENCE = (
    "Jonathan Ho and Tim Salimans. *Classifier-Free Diffusion Guidance.* NeurIPS 2021 "
    "Workshop on Deep Generative Models and Downstream Applications, arXiv:2207.12598."
)
SIBLING = gd.NAME

# The target: at its best w, accuracy above TARGET_ACCURACY with an FID at most
# TARGET_FID_RATIO times the unguided (w = 0) model's.
TARGET_ACCURACY = 0.95
TARGET_FID_RATIO = 1.5


@dataclass(frozen=True)
class Settings:
    """Every knob of the reproduction; ``quick`` and ``default`` differ only in sizes.

    ``weights``: the guidance weights w swept with ``sampler`` in ``sampler_steps`` steps
    (each step costs two network evaluations once w != 0). ``n_samples`` (None: the test
    split's size, 359, the n of the FID noise floor). ``fid_seeds``: unguided runs with that
    many sampling seeds, for the FID's sampling noise. ``p_uncond`` is the label dropout of
    training (the preset's 0.1). The classifier-guidance fallback (no sibling metrics) uses
    ``classifier_*`` and ``cg_scales`` with the same sampler. ``net_options`` / ``batch_size``
    replace the preset's (tests use a tiny U-Net). ``use_sibling``: read the sibling
    guided-diffusion-2021 run's curve when its metrics.json exists.
    """

    preset: str = "digits-ddpm-cond"
    train_steps: int = 2400
    p_uncond: float = 0.1
    net_options: dict[str, Any] | None = None
    batch_size: int | None = None
    weights: tuple[float, ...] = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0)
    sampler: str = "ddim"
    sampler_steps: int = 50
    n_samples: int | None = None
    fid_seeds: int = 3
    grid_weights: tuple[float, ...] = (0.0, 1.0, 4.0)
    use_sibling: bool = True
    classifier_steps: int = 3000
    classifier_options: dict[str, Any] = field(
        default_factory=lambda: {"channels": 32, "channel_mults": (1, 2), "pool": "attention"}
    )
    classifier_batch: int = 128
    classifier_lr: float = 1e-3
    cg_scales: tuple[float, ...] = (0.0, 1.0, 2.0, 4.0, 8.0)
    pr_k: int = 3
    seed: int = 0
    sample_seed: int = 1


SETTINGS: dict[str, Settings] = {
    "default": Settings(),
    "quick": Settings(
        train_steps=1000,
        sampler_steps=25,
        fid_seeds=2,
        classifier_steps=1200,
        classifier_options={"channels": 16, "channel_mults": (1, 2), "pool": "attention"},
        cg_scales=(0.0, 1.0, 4.0, 8.0),
    ),
}
"""Default: about 10-12 minutes on 2 free CPU cores (2,400 training steps, seven weights with
DDIM 50); quick: about 4 minutes."""


_log = logger(NAME)


def cfg_config(settings: Settings) -> Any:
    """The ``digits-ddpm-cond`` config at the settings' steps and label dropout."""
    return gd.diffusion_config(
        _gd_settings(settings), settings.preset, settings.train_steps,
        class_dropout=float(settings.p_uncond),
    )  # fmt: skip


def _gd_settings(settings: Settings) -> gd.Settings:
    """The guided-diffusion settings the shared helpers read (U-Net and classifier recipe)."""
    s = settings
    return gd.Settings(
        net_options=s.net_options,
        batch_size=s.batch_size,
        classifier_steps=s.classifier_steps,
        classifier_options=dict(s.classifier_options),
        classifier_batch=s.classifier_batch,
        classifier_lr=s.classifier_lr,
        pr_k=s.pr_k,
        seed=s.seed,
        sample_seed=s.sample_seed,
    )


def sibling_curves(out: Path, n: int) -> dict[str, Any] | None:
    """The classifier-guidance curves of a guided-diffusion-2021 run in ``out``'s sibling
    directory (``out/../guided-diffusion-2021/metrics.json``), or None if there is none or its
    FIDs were measured at another sample count than ``n`` (FIDs compare only at equal n)."""
    path = out.resolve().parent / SIBLING / "metrics.json"
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        curves = saved["metrics"]["curves"]
        floor = saved["metrics"]["fid_floor"]
    except (OSError, ValueError, KeyError, TypeError):
        _log(f"ignoring unreadable {path}")
        return None
    if any(r.get("n") != n for rows in curves.values() for r in rows):
        _log(f"ignoring {path}: its FIDs were measured at another n than {n}")
        return None
    shown = Path("..") / SIBLING / "metrics.json"  # relative to this run: reports stay portable
    return {"path": shown.as_posix(), "quick": saved.get("quick"), "curves": curves, "floor": floor}


def classifier_guidance_here(
    settings: Settings, config: Any, model: Any, scorer: gd.Scorer, labels: torch.Tensor,
    out: Path, progress: bool,
) -> dict[str, Any]:  # fmt: skip
    """Classifier guidance of this network's unconditional mode (null label for every sample)
    with a noise-aware classifier, over ``cg_scales`` with the CFG sweep's sampler."""
    s = settings
    classifier, info = gd.noisy_classifier(config, model, _gd_settings(s), out, progress)
    null = torch.full_like(labels, int(model.net.num_classes))
    label = f"classifier guidance, same net's null label: {s.sampler} {s.sampler_steps} steps"
    rows = gd.sweep(
        model, scorer, labels, s.cg_scales, kind="cg", sampler=s.sampler,
        steps=s.sampler_steps, seed=s.sample_seed, label=label, classifier=classifier,
        mode="score", model_labels=null, progress=progress, log=_log,
    )  # fmt: skip
    return {"label": label, "rows": rows, "classifier": info}


def run_experiments(settings: Settings, out: Path, progress: bool) -> dict[str, Any]:
    s = settings
    clock = gd.Stages(_log)
    _log(f"training the class-conditional DDPM (p_uncond = {s.p_uncond:g})")
    config = cfg_config(s)
    model, _, summary = train_or_load(config, out, "ddpm-cond", progress=progress)
    clock.lap("diffusion model")
    scorer = gd.Scorer(gd.DATASET, s.pr_k)
    clock.lap("evaluator")
    n = s.n_samples or scorer.test_size
    labels = balanced_labels(n, 10)
    label = f"classifier-free guidance: {s.sampler} {s.sampler_steps} steps"
    _log(f"sweeping the guidance weight, {label}")
    rows = gd.sweep(
        model, scorer, labels, s.weights, kind="cfg", sampler=s.sampler,
        steps=s.sampler_steps, seed=s.sample_seed, label=label, progress=progress, log=_log,
    )  # fmt: skip
    clock.lap("sweep w")
    seeds = [s.sample_seed + 1000 * k for k in range(max(s.fid_seeds, 1))]
    spread = gd.seed_spread(model, scorer, labels, seeds, s.sampler, s.sampler_steps)
    clock.lap("FID seed spread")
    sibling = sibling_curves(out, n) if s.use_sibling else None
    here = None
    if sibling is None:
        _log("no guided-diffusion-2021 metrics next to this run: classifier guidance here")
        here = classifier_guidance_here(s, config, model, scorer, labels, out, progress)
        clock.lap("classifier guidance")
    else:
        _log(f"classifier-guidance curves from {sibling['path']}")
    return {
        "model": model,
        "config": config,
        "summary": summary,
        "label": label,
        "rows": rows,
        "spread": spread,
        "sibling": sibling,
        "here": here,
        "labels": labels,
        "n": n,
        "floor": scorer.evaluator.noise_floor(min(n, scorer.test_size)),
        "pr_floor": scorer.pr_floor(),
        "scorer": scorer,
        "stage_seconds": clock.seconds,
    }


# --------------------------------------------------------------------------- verdicts
def best_weight(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's "best w": the highest accuracy among the weights whose FID is at most
    TARGET_FID_RATIO times the unguided model's (ties: the lower FID)."""
    base = rows[0]
    allowed = [r for r in rows if r["fid"] <= TARGET_FID_RATIO * base["fid"]] or [base]
    return max(allowed, key=lambda r: (r["accuracy"], -r["fid"]))


def cg_curves(result: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The classifier-guidance curves to compare with (sibling run or measured here)."""
    if result["sibling"] is not None:
        return {f"{name} (guided-diffusion-2021)": rows
                for name, rows in result["sibling"]["curves"].items()}  # fmt: skip
    here = result["here"]
    return {here["label"]: here["rows"]}


def best_at_accuracy(rows: list[dict[str, Any]], level: float) -> dict[str, Any] | None:
    """The lowest-FID row with accuracy at least ``level`` (None if no row reaches it)."""
    ok = [r for r in rows if r["accuracy"] >= level]
    return min(ok, key=lambda r: r["fid"]) if ok else None


def add_claims(report: Report, settings: Settings, result: dict[str, Any]) -> None:
    rows, spread = result["rows"], result["spread"]
    base, top = rows[0], rows[-1]
    noise = 2 * spread["std"]
    small = [r for r in rows if 0 < r["value"] <= 1.0]
    best_small = min(small, key=lambda r: r["fid"]) if small else None
    # 1. trade-off: accuracy / precision up, recall down, FID up at large w
    up = top["accuracy"] > base["accuracy"] and top["precision"] >= base["precision"]
    down = top["recall"] < base["recall"]
    worse = top["fid"] > base["fid"] + noise
    hits = sum([up, down, worse])
    report.claim(
        "The guidance weight trades diversity for fidelity: as w grows, sample quality "
        "(IS; here accuracy and precision) rises while FID and diversity (here recall) worsen",
        "ImageNet 64x64 and 128x128 (Sec. 4, Fig. 4): IS rises steadily with w while FID "
        "worsens beyond a small w; samples visibly lose diversity at large w",
        f"w = {base['value']:g} -> {top['value']:g}: accuracy {base['accuracy']:.1%} -> "
        f"{top['accuracy']:.1%}, precision {base['precision']:.2f} -> {top['precision']:.2f}, "
        f"recall {base['recall']:.2f} -> {top['recall']:.2f}, FID {base['fid']:.1f} -> "
        f"{top['fid']:.1f}",
        "accuracy of an independent clean classifier stands in for IS (8x8 digits have no "
        f"Inception features); FID sampling noise ± {spread['std']:.2f} (std over "
        f"{len(spread['seeds'])} seeds)",
        "reproduced" if hits == 3 else ("partly reproduced" if hits else "not reproduced"),
    )
    # 2. small w improves FID
    if best_small is not None:
        gain = base["fid"] - best_small["fid"]
        verdict = (
            "reproduced" if gain > noise
            else "partly reproduced" if best_small["fid"] <= base["fid"] + noise
            else "not reproduced"
        )  # fmt: skip
        report.claim(
            "A small guidance weight improves FID over the unguided conditional model",
            "ImageNet 64x64: the best FID is at a small w (well below 1), better than w = 0 "
            "(Sec. 4)",
            f"w = 0: FID {base['fid']:.2f}; best with 0 < w <= 1: FID {best_small['fid']:.2f} "
            f"at w = {best_small['value']:g} (noise floor {result['floor']:.2f})",
            f"FID {-gain:+.2f} against a sampling noise of ± {spread['std']:.2f}; the w = 0 "
            f"model is at {base['fid'] / result['floor']:.2f}x the floor",
            verdict,
        )
    # 3. the target
    best = best_weight(rows)
    ratio = best["fid"] / base["fid"]
    met = best["accuracy"] > TARGET_ACCURACY and ratio <= TARGET_FID_RATIO
    report.claim(
        f"Target of our issue: at its best w, accuracy > {TARGET_ACCURACY:.0%} with FID at most "
        f"{TARGET_FID_RATIO:g}x the w = 0 model's",
        "(not a paper number: our acceptance test for the digits scale)",
        f"best w = {best['value']:g}: accuracy {best['accuracy']:.1%} ± "
        f"{gd.binomial_se(best['accuracy'], best['n']):.1%}, FID {best['fid']:.2f} = "
        f"{ratio:.2f}x the w = 0 FID {base['fid']:.2f}",
        f"w = 0 accuracy {base['accuracy']:.1%}",
        "reproduced"
        if met
        else ("partly reproduced" if best["accuracy"] > base["accuracy"] else "not reproduced"),
    )
    # 4. CFG matches classifier guidance without a classifier
    curves = cg_curves(result)
    level = TARGET_ACCURACY
    cfg_best = best_at_accuracy(rows, level)
    cg_best = {name: best_at_accuracy(r, level) for name, r in curves.items()}
    reached = {k: v for k, v in cg_best.items() if v is not None}
    if cfg_best is None:
        verdict = "not reproduced"
    elif not reached or cfg_best["fid"] <= min(v["fid"] for v in reached.values()) + noise:
        verdict = "reproduced"
    else:
        verdict = "partly reproduced"

    def describe(r: dict[str, Any] | None, symbol: str) -> str:
        if r is None:
            return f"never reaches {level:.0%}"
        return f"FID {r['fid']:.1f} at {symbol} = {r['value']:g} (accuracy {r['accuracy']:.1%})"

    report.claim(
        "Classifier-free guidance attains the fidelity/diversity trade-off of classifier "
        "guidance without a classifier",
        "Sec. 4-5: a trade-off like classifier guidance's (Dhariwal & Nichol 2021), from a "
        "single network with p_uncond = 0.1 or 0.2",
        f"lowest FID with accuracy >= {level:.0%}: CFG {describe(cfg_best, 'w')}; "
        + "; ".join(f"{name}: {describe(r, 's')}" for name, r in cg_best.items()),
        "classifier-guidance curve "
        + (f"read from {result['sibling']['path']} (another unconditional network)"
           if result["sibling"] is not None
           else "measured here on the same network's unconditional mode")
        + "; each CFG step costs two network evaluations",
        verdict,
    )  # fmt: skip


# --------------------------------------------------------------------------- report
def scale_text(settings: Settings, result: dict[str, Any]) -> str:
    s = settings
    params = sum(p.numel() for p in result["model"].parameters())
    summary = result["summary"]
    return (
        "**Paper:** ADM-style U-Nets on ImageNet 64x64 and 128x128 (1,000 classes), "
        "p_uncond in {0.1, 0.2, 0.5}, w from 0 to 4, ancestral sampling with hundreds of steps; "
        "FID and Inception score on 50k samples.\n\n"
        f"**Here:** scikit-learn's 8x8 digits (1,438 training images, 10 classes). The "
        f"`{s.preset}` U-Net ({params:,} parameters, class embedding with a null class) "
        f"trained for {summary['step']} steps ({summary['train_seconds']:.0f} s) with "
        f"p_uncond = {s.p_uncond:g}; {s.sampler} sampling in {s.sampler_steps} steps (two "
        f"network evaluations per step when w != 0) at w in "
        f"{{{', '.join(f'{w:g}' for w in s.weights)}}}, {result['n']} samples each (labels "
        "0..9 in turn, the same starting noise for every w). Metrics are in the feature space "
        "of an independent classifier trained on clean digits (not Inception, not comparable "
        "with published numbers); its accuracy on the intended labels stands in for the "
        "Inception score."
    )


def add_sections(report: Report, settings: Settings, result: dict[str, Any]) -> None:
    s = settings
    rows = result["rows"]
    report.section(
        "Guidance weight sweep",
        "eps_tilde = (1 + w) eps(x, c) - w eps(x, null) at every step, then DDPM's x0 clipping. "
        "Accuracy: the independent clean classifier's agreement with the intended label. FID "
        "against the train split, its floor the held-out test split at the same n. Precision "
        f"and recall: k-NN manifolds (Kynkaenniemi et al. 2019, k = {s.pr_k}) against the test "
        f"split (real train images: precision {result['pr_floor'][0]:.2f}, recall "
        f"{result['pr_floor'][1]:.2f}).",
    )
    report.table(gd.SWEEP_HEADER, gd.sweep_table(rows))
    spread = result["spread"]
    report.text(
        f"Sampling noise of one FID: unguided samples with {len(spread['seeds'])} seeds score "
        f"{', '.join(fmt(f) for f in spread['fids'])} (mean {spread['mean']:.2f}, std "
        f"{spread['std']:.2f})."
    )
    curves = {result["label"]: [{**r, "symbol": "w"} for r in rows]}
    curves.update(cg_curves(result))
    if result["sibling"] is not None:
        sib = result["sibling"]
        run = "quick" if sib["quick"] else "default"
        source = (
            f"The classifier-guidance curves come from the guided-diffusion-2021 {run} run "
            f"(`{sib['path']}`): an unconditional DDPM guided by a noise-aware classifier "
            f"(its FID floor {sib['floor']:.2f} at the same n)."
        )
    else:
        here = result["here"]
        info = here["classifier"]
        source = (
            "No guided-diffusion-2021 metrics were found next to this run, so classifier "
            "guidance was measured here: this same network sampled unconditionally (null "
            f"label), guided by a noise-aware classifier ({info['parameters']:,} parameters, "
            f"{s.classifier_steps} steps) with Alg. 2 (eps shift), scales "
            f"{', '.join(f'{v:g}' for v in s.cg_scales)}."
        )
    report.section("Classifier-free vs classifier guidance", source)
    if result["sibling"] is None:
        report.table(gd.SWEEP_HEADER, gd.sweep_table(result["here"]["rows"]))
    report.figure(
        gd.tradeoff_figure(curves, result["floor"], "s", "Guidance on digits"),
        "tradeoff.png",
        "Accuracy against FID (left) and precision against recall (right): classifier-free "
        "guidance as w varies, classifier guidance as s varies.",
    )
    labels = result["labels"]
    panels = []
    for w in s.grid_weights:
        r = gd.nearest(rows, w)
        panels.append((f"w = {r['value']:g}", r["samples"], labels))
    report.figure(
        gd.grids_figure(panels, max(1, min(8, len(labels) // 10))), "samples.png",
        "Classifier-free guidance: row c is conditioned on digit c; same starting noise for "
        "every w.",
    )  # fmt: skip


NOTES = """
* **Equivalence with classifier guidance.** eps(x, c) - eps(x) = -sigma grad log p(c | x_t)
  for the implicit classifier p(c | x_t) = p(x_t | c) p(c) / p(x_t), so CFG with weight w is
  classifier guidance of the *conditional* model with scale w, or of the unconditional model
  with scale 1 + w (Sec. 3.2). With exact scores the two are identical
  (`tests/test_guidance.py`); with learned ones they differ by how well one network learned
  both modes versus how good a separate noisy classifier's gradients are.
* **Accuracy instead of IS.** Inception features of 8x8 digits are meaningless; the
  independent clean classifier's accuracy on the intended label measures the same thing IS
  rewards (confident, class-consistent samples), and precision/recall measure fidelity and
  diversity directly.
* **Cost.** With w != 0 every step evaluates the network twice (conditional and null label),
  so CFG at T steps costs 2T evaluations; classifier guidance costs one U-Net evaluation plus a
  classifier forward and backward pass per step.
"""


def record_metrics(report: Report, settings: Settings, result: dict[str, Any]) -> None:
    m = report.metrics
    m["train"] = {k: result["summary"].get(k) for k in ("step", "loss", "train_seconds")}
    m["n_samples"] = result["n"]
    m["fid_floor"] = result["floor"]
    m["pr_floor"] = {"precision": result["pr_floor"][0], "recall": result["pr_floor"][1]}
    m["fid_seed_spread"] = result["spread"]
    m["cfg"] = gd.public_rows(result["rows"])
    best = best_weight(result["rows"])
    m["best_w"] = {
        "w": best["value"],
        "accuracy": best["accuracy"],
        "fid": best["fid"],
        "fid_ratio": best["fid"] / result["rows"][0]["fid"],
        "target_met": bool(
            best["accuracy"] > TARGET_ACCURACY
            and best["fid"] <= TARGET_FID_RATIO * result["rows"][0]["fid"]
        ),
    }
    if result["sibling"] is not None:
        m["classifier_guidance"] = {"source": result["sibling"]["path"]}
    else:
        here = result["here"]
        info = {k: v for k, v in here["classifier"].items() if k != "path"}
        m["classifier_guidance"] = {
            "source": "measured here",
            "label": here["label"],
            "classifier": info,
            "rows": gd.public_rows(here["rows"]),
        }
    m["stage_seconds"] = result["stage_seconds"]
    m["settings"] = asdict(settings)
    _log(
        f"best w = {best['value']:g}: accuracy {best['accuracy']:.1%}, FID {best['fid']:.2f} "
        f"({m['best_w']['fid_ratio']:.2f}x w = 0)"
    )


def reproduce(
    out_dir: str | os.PathLike = Path("runs") / NAME,
    quick: bool = False,
    *,
    settings: Settings | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Reproduce Ho & Salimans's classifier-free guidance (arXiv:2207.12598) on digits.

    Trains (or reuses, under ``out_dir/models``) the class-conditional ``digits-ddpm-cond``
    U-Net with label dropout ``p_uncond``, sweeps the guidance weight w, scores every w with
    an independent clean classifier (accuracy on the intended labels, digits-FID with its
    noise floor, precision and recall), compares with classifier guidance (the sibling
    ``guided-diffusion-2021`` run's curves, or a sweep measured here), and writes
    ``report.md``, ``metrics.json``, ``tradeoff.png`` and ``samples.png``.

    Args:
        out_dir: output directory (with the cached models under ``models/``).
        quick: the few-minute version.
        settings: replaces the quick/default :data:`SETTINGS` (tests use tiny ones).
        progress: show progress bars.

    Returns:
        The metrics written to ``metrics.json`` (with the run info and the claims).
    """
    s = choose_settings(SETTINGS, quick, settings)
    if not 0.0 < s.p_uncond < 1.0:
        raise ValueError(f"p_uncond must lie in (0, 1), got {s.p_uncond}")
    return reproduce_paper(sys.modules[__name__], s, out_dir, quick, progress)
