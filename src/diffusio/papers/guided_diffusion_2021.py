"""Dhariwal & Nichol 2021, "Diffusion Models Beat GANs on Image Synthesis" (NeurIPS 2021,
arXiv:2105.05233): the reproduction ``guided-diffusion-2021``, classifier guidance on digits.

Classifier guidance (Sec. 4) steers a diffusion model with the gradient of a classifier
``p_phi(y | x_t, t)`` trained on noisy images (Sec. 4.1,
:func:`~diffusio.image.classifier.noisy_classifier`):

* Algorithm 1 (ancestral sampling): the reverse kernel's mean is shifted,
  ``x_{t-1} ~ N(mu + s Sigma grad_x log p_phi(y | x_t), Sigma)``;
* Algorithm 2 (DDIM, "score-based conditioning"): the noise prediction is shifted,
  ``eps_hat = eps_theta(x_t) - sqrt(1 - alpha_bar_t) s grad_x log p_phi(y | x_t)``;

both with a *gradient scale* ``s`` (Sec. 4.3) that trades diversity for fidelity. Both are
:class:`~diffusio.core.steering.ClassifierGuidance` (modes ``"mean"`` and ``"score"``), applied
after DDPM's x0 clipping as in the paper's code (``sample_images(..., guide_clipped=True)``).

Measured on scikit-learn's 8x8 digits: an unconditional DDPM (``digits-ddpm``), a noise-aware
classifier and a sweep of ``s`` with both algorithms, each scored by
:class:`~diffusio.image.scoring.Scorer` (accuracy of an independent clean classifier on the
target labels, FID against its noise floor, k-NN precision and recall: Table 4's fidelity and
diversity metrics). Sampling, scoring, the classifier cache and the figures live in
:mod:`diffusio.image`; the prose in ``papers/text/guided_diffusion_2021.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..image.analysis import TINY_UNET
from ..image.classifier import noisy_classifier
from ..image.figures import classifier_figure, grids_figure, tradeoff_figure
from ..image.sampling import balanced_labels, image_config
from ..image.scoring import (
    SWEEP_HEADER,
    Scorer,
    guidance_sweep,
    nearest,
    public_rows,
    seed_spread,
    sweep_table,
)
from ..metrics.stats import NoiseFloor, binomial_se, difference_se
from .base import Reproduction, paper_text
from .report import Report, fmt
from .verdicts import NOT, PARTLY, REPRODUCED, SIGNIFICANCE, compare, floor_verdict, tally_verdict

__all__ = [
    "GuidedDiffusion2021", "REPRODUCTION", "Settings", "consistency_verdict", "fid_verdict",
    "reproduce", "tradeoff_verdict",
]  # fmt: skip

DATASET = "digits"
#: "Class-consistent samples": the independent classifier's accuracy at least this.
CONSISTENT = 0.9


@dataclass(frozen=True)
class Settings:
    """Every knob of the reproduction; quick and default differ only in sizes.

    ``samplers``: ``(sampler, steps, guidance mode)``; Alg. 1 is ``("ddpm", T, "mean")`` and
    Alg. 2 ``("ddim", T, "score")``. ``n_samples`` (None: the test split's size, 359, the n of
    the FID noise floor) samples per setting, labels ``0..9`` repeated. ``net_options`` /
    ``batch_size`` replace the preset's (the smoke run uses a tiny U-Net). ``fid_seeds`` repeats
    the unguided run of the first sampler with that many sampling seeds (the FID's sampling
    noise). ``clip_ablation`` repeats ``grid_scale`` with the x0 clipping after the guidance.
    ``conditional_steps > 0`` also trains the class-conditional ``digits-ddpm-cond`` model and
    guides it (the paper's best models combine both, Table 4).
    """

    preset: str = "digits-ddpm"
    train_steps: int = 2400
    net_options: dict[str, Any] | None = None
    batch_size: int | None = None
    classifier_steps: int = 3000
    classifier_options: dict[str, Any] = field(
        default_factory=lambda: {"channels": 32, "channel_mults": [1, 2], "pool": "attention"}
    )
    classifier_batch: int = 128
    classifier_lr: float = 1e-3
    scales: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
    samplers: tuple[tuple[Any, ...], ...] = (("ddim", 50, "score"), ("ddpm", 250, "mean"))
    grid_scale: float = 4.0
    clip_ablation: bool = True
    n_samples: int | None = None
    fid_seeds: int = 3
    conditional_steps: int = 2400
    conditional_scales: tuple[float, ...] = (0.0, 1.0, 2.0, 4.0)
    pr_k: int = 3
    seed: int = 0
    sample_seed: int = 1


def _algorithm(mode: str) -> str:
    return "Alg. 1 (mean shift)" if mode == "mean" else "Alg. 2 (eps shift)"


def _short(row: dict[str, Any]) -> str:
    alg = "Alg. 1" if row["mode"] == "mean" else "Alg. 2"
    return f"{alg}, {row['sampler']} {row['steps']} steps"


def _row_text(r: dict[str, Any], symbol: str = "s") -> str:
    return (
        f"{symbol} = {r['value']:g}: accuracy {r['accuracy']:.1%}, FID {r['fid']:.1f}, "
        f"precision {r['precision']:.2f}, recall {r['recall']:.2f}"
    )


# --------------------------------------------------------------------------- verdicts
def consistency_verdict(rows: list[dict[str, Any]]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Does a scale above 1 give class-consistent samples (accuracy >= :data:`CONSISTENT`)
    that scale 1 does not? Reproduced: the best scale above 1 is consistent, clearly more
    accurate than s = 1 (binomial se of the difference) and s = 1 is not; partly: consistent or
    clearly more accurate. Returns (verdict, the scale-1 row, the best row with scale > 1)."""
    one = nearest(rows, 1.0)
    best = max([r for r in rows if r["value"] > 1.0] or [rows[-1]], key=lambda r: r["accuracy"])
    se = difference_se(binomial_se(one["accuracy"], one["n"]),
                       binomial_se(best["accuracy"], best["n"]))  # fmt: skip
    gain = compare(best["accuracy"] - one["accuracy"], se) == 1
    if best["accuracy"] >= CONSISTENT and gain and one["accuracy"] < CONSISTENT:
        return REPRODUCED, one, best
    return (PARTLY if best["accuracy"] >= CONSISTENT or gain else NOT), one, best


def tradeoff_verdict(curves: Sequence[list[dict[str, Any]]]) -> str:
    """Fidelity (precision) not down and diversity (recall) down from the unguided to the most
    guided setting: on every curve (reproduced), some (partly) or none."""
    return tally_verdict([
        int(end["recall"] < start["recall"] and end["precision"] >= start["precision"])
        for start, end in ((rows[0], rows[-1]) for rows in curves)
    ])  # fmt: skip


def fid_verdict(curves: Sequence[list[dict[str, Any]]], std: float) -> str:
    """Guidance improves the unguided FID: the paper's comparison, scale 10 (our nearest)
    clearly below scale 1 on every curve (reproduced); on some, or the best guided scale
    clearly below s = 0 on some (partly). "Clearly": by more than SIGNIFICANCE times the
    unguided FID's seed std."""
    large = [nearest(rows, 10.0)["value"] > 1.0 and
             compare(nearest(rows, 1.0)["fid"] - nearest(rows, 10.0)["fid"], std) == 1
             for rows in curves]  # fmt: skip
    improved = [_improves(rows, std) for rows in curves]
    if all(large):
        return REPRODUCED
    return PARTLY if any(large) or any(improved) else NOT


def _improves(rows: list[dict[str, Any]], std: float) -> bool:
    """Whether the lowest-FID row is guided and clearly below the unguided (first) row."""
    best = min(rows, key=lambda r: r["fid"])
    return best["value"] > 0 and compare(rows[0]["fid"] - best["fid"], std) == 1


# --------------------------------------------------------------------------- the reproduction
class GuidedDiffusion2021(Reproduction):
    NAME = "guided-diffusion-2021"
    TITLE = "Diffusion Models Beat GANs on Image Synthesis (Dhariwal & Nichol, 2021)"
    REFERENCE = (
        "Prafulla Dhariwal and Alex Nichol. *Diffusion Models Beat GANs on Image Synthesis.* "
        "NeurIPS 2021, arXiv:2105.05233 (classifier guidance: Sec. 4, Algorithms 1 and 2)."
    )
    Settings = Settings
    #: About 4 minutes on 2 free CPU cores (the default: about 20).
    QUICK = {
        "train_steps": 900, "classifier_steps": 1200,
        "classifier_options": {"channels": 16, "channel_mults": [1, 2], "pool": "attention"},
        "scales": (0.0, 0.5, 1.0, 2.0, 4.0, 8.0),
        "samplers": (("ddim", 25, "score"), ("ddpm", 50, "mean")),
        "fid_seeds": 2, "conditional_steps": 0,
    }  # fmt: skip
    SMOKE = {
        "train_steps": 20, "batch_size": 32, "classifier_steps": 20,
        "net_options": TINY_UNET,
        "classifier_options": {"channels": 8, "num_heads": 2, "groups": 4},
        "scales": (0.0, 1.0, 4.0), "samplers": (("ddim", 4, "score"), ("ddpm", 4, "mean")),
        "n_samples": 40, "fid_seeds": 2, "conditional_steps": 10,
        "conditional_scales": (0.0, 2.0),
    }  # fmt: skip

    @property
    def samplers(self) -> list[tuple[str, int, str]]:
        """``s.samplers`` with integer step counts (``--set`` may parse them as strings)."""
        return [(str(a), int(k), str(m)) for a, k, m in self.s.samplers]

    def config(self, preset: str, steps: int) -> Any:
        """The training recipe of ``preset`` (shared through the model cache with cfg-2021)."""
        s = self.s
        return image_config(preset, steps, net_options=s.net_options, batch_size=s.batch_size)

    def sweep(self, model: Any, values: Sequence[float], sampler: str, steps: int, mode: str,
              label: str, **options: Any) -> list[dict[str, Any]]:  # fmt: skip
        """One classifier-guidance curve over the scales ``values``."""
        return guidance_sweep(
            model, self.scorer, self.labels, values, kind="cg", sampler=sampler, steps=steps,
            seed=self.s.sample_seed, label=label, classifier=self.classifier, mode=mode,
            progress=self.progress, log=self.log, **options,
        )  # fmt: skip

    def run_experiments(self) -> dict[str, Any]:
        s = self.s
        self.log("training the unconditional DDPM")
        config = self.config(s.preset, s.train_steps)
        model, _, summary = self.train(config, "ddpm")
        self.lap("diffusion model")
        self.log("training the noise-aware classifier")
        self.classifier, clf = noisy_classifier(
            config, model.process, steps=s.classifier_steps, batch_size=s.classifier_batch,
            lr=s.classifier_lr, seed=s.seed, options=s.classifier_options, progress=self.progress,
        )  # fmt: skip
        self.lap("noisy classifier")
        self.scorer = Scorer(DATASET, s.pr_k)
        self.lap("evaluator")
        n = s.n_samples or self.scorer.test_size
        self.labels = balanced_labels(n, 10)
        curves: dict[str, list[dict[str, Any]]] = {}
        for sampler, steps, mode in self.samplers:
            label = f"{_algorithm(mode)}: {sampler} {steps} steps"
            self.log(f"sweeping the classifier scale, {label}")
            curves[label] = self.sweep(model, s.scales, sampler, steps, mode, label)
            self.lap(f"sweep {sampler}")
        seeds = [s.sample_seed + 1000 * k for k in range(max(s.fid_seeds, 1))]
        first = next(iter(curves.values()))  # swept with samplers[0]
        spread = seed_spread(model, self.scorer, self.labels, seeds, *self.samplers[0][:2],
                             sweep=first)  # fmt: skip
        self.lap("FID seed spread")
        ablation: list[dict[str, Any]] = []
        if s.clip_ablation:
            self.log("clipping after the guidance instead of before")
            for (sampler, steps, mode), (label, rows) in zip(
                self.samplers, curves.items(), strict=True
            ):
                ablation += self.sweep(model, [nearest(rows, s.grid_scale)["value"]], sampler,
                                       steps, mode, label, guide_clipped=False)  # fmt: skip
            self.lap("clip ablation")
        conditional = None
        if s.conditional_steps > 0:
            self.log("training the class-conditional DDPM")
            cond_model, _, cond_summary = self.train(
                self.config("digits-ddpm-cond", s.conditional_steps), "ddpm-cond"
            )
            self.lap("conditional model")
            ddim = [x for x in self.samplers if x[2] == "score"] or self.samplers
            sampler, steps, mode = ddim[0]
            label = f"conditional model + {_algorithm(mode)}: {sampler} {steps} steps"
            self.log(f"sweeping the classifier scale, {label}")
            rows = self.sweep(cond_model, s.conditional_scales, sampler, steps, mode, label)
            conditional = {"summary": cond_summary, "rows": rows, "label": label}
            self.lap("sweep conditional")
        return {
            "model": model, "summary": summary, "classifier": clf, "curves": curves,
            "spread": spread, "clip_ablation": ablation, "conditional": conditional,
            "labels": self.labels, "n": n, "floor": self.scorer.floor(n),
            "pr_floor": self.scorer.pr_floor(), "k": self.scorer.k,
            "test_size": self.scorer.test_size,
        }  # fmt: skip

    # ------------------------------------------------------------------ claims
    def add_claims(self, report: Report, r: dict[str, Any]) -> None:
        curves = list(r["curves"].items())
        spread = r["spread"]
        for name, rows in curves:
            verdict, one, best = consistency_verdict(rows)
            report.claim(
                f"Classifier guidance, {name}: scale 1 is not enough for class-consistent "
                "samples, a larger scale is (Sec. 4.3)",
                "unconditional ImageNet 256x256 model: scale 1 gives samples that do not look "
                "like the class (FID 33.0), scale 10 class-consistent ones (FID 12.0) (Fig. 3)",
                f"{_row_text(one)}; best above 1: {_row_text(best)}",
                f"accuracy {best['accuracy'] - one['accuracy']:+.1%} from s = 1 to s = "
                f"{best['value']:g}; 10 classes of 8x8 digits, not 1,000 ImageNet classes",
                verdict,
            )
        report.claim(
            "Guidance trades diversity for fidelity: as the scale grows, precision (and IS) "
            "rise and recall falls",
            "Fig. 4-5 and Table 4: precision up, recall down with the gradient scale",
            "; ".join(
                f"{name}: precision {rows[0]['precision']:.2f} -> {rows[-1]['precision']:.2f}, "
                f"recall {rows[0]['recall']:.2f} -> {rows[-1]['recall']:.2f} (s = "
                f"{rows[0]['value']:g} -> {rows[-1]['value']:g})"
                for name, rows in curves
            ),
            f"k-NN precision/recall (k = {r['k']}) in the 64-d clean-classifier feature space "
            f"on {r['n']} samples; real train vs test images: precision "
            f"{r['pr_floor'][0]:.2f}, recall {r['pr_floor'][1]:.2f}",
            tradeoff_verdict([rows for _, rows in curves]),
        )

        def fids(rows: list[dict[str, Any]]) -> str:
            one, ten = nearest(rows, 1.0), nearest(rows, 10.0)
            best = min(rows, key=lambda x: x["fid"])
            return (f"FID {rows[0]['fid']:.1f} unguided, {one['fid']:.1f} at s = "
                    f"{one['value']:g}, {ten['fid']:.1f} at s = {ten['value']:g}; best "
                    f"{best['fid']:.1f} at s = {best['value']:g}")  # fmt: skip

        at_floor = all(floor_verdict(rows[0]["fid"], NoiseFloor(r["floor"])) == REPRODUCED
                       for _, rows in curves)  # fmt: skip
        report.claim(
            "With a large enough scale, classifier guidance improves the unconditional model's FID",
            "ImageNet 256x256, unconditional model: FID 33.0 at scale 1 -> 12.0 at scale 10 "
            "(Fig. 3 / Table 4)",
            "; ".join(f"{name}: {fids(rows)}" for name, rows in curves),
            f"noise floor {r['floor']:.2f}; unguided FID over {len(spread['seeds'])} sampling "
            f"seeds {spread['mean']:.2f} ± {spread['std']:.2f} (differences within "
            f"{SIGNIFICANCE:g} times that count as noise). "
            + self.prose("at floor" if at_floor else "off floor", r),
            fid_verdict([rows for _, rows in curves], spread["std"]),
        )
        cond = r["conditional"]
        if cond is not None:
            rows = cond["rows"]
            base, best = rows[0], min(rows, key=lambda x: x["fid"])
            report.claim(
                "Guiding a class-conditional model as well improves its FID and accuracy",
                "ImageNet 256x256 conditional model: guidance at scale 1 improves FID, IS and "
                "precision (Table 4)",
                f"unguided: {_row_text(base)}; best FID: {_row_text(best)}",
                f"FID {best['fid'] - base['fid']:+.2f} (sampling noise ± {spread['std']:.2f})",
                REPRODUCED if _improves(rows, spread["std"]) else NOT,
            )

    # ------------------------------------------------------------------ sections
    def add_sections(self, report: Report, r: dict[str, Any]) -> None:
        s = self.s
        accuracy = r["classifier"]["accuracy_by_noise"]
        report.section("The noise-aware classifier (Sec. 4.1)", self.prose("classifier", r))
        report.table(["table index", "t", "alpha_bar", "SNR", "accuracy"],
                     [[a["index"], a["t"], a["alpha_bar"], a["snr"], a["accuracy"]]
                      for a in accuracy])  # fmt: skip
        report.figure(
            classifier_figure(accuracy, 0.1),
            "classifier_accuracy.png",
            "Noise-aware classifier: test accuracy against the diffusion time.",
        )
        report.section("Guidance scale sweep (Alg. 1 and Alg. 2)", self.prose("sweep", r))
        curves = dict(r["curves"])
        if r["conditional"] is not None:
            curves[r["conditional"]["label"]] = r["conditional"]["rows"]
        report.table(SWEEP_HEADER, sweep_table([x for rows in curves.values() for x in rows]))
        spread = r["spread"]
        report.text(
            f"Sampling noise of one FID: unguided {s.samplers[0][0]} samples with "
            f"{len(spread['seeds'])} seeds score {', '.join(fmt(f) for f in spread['fids'])} "
            f"(mean {spread['mean']:.2f}, std {spread['std']:.2f})."
        )
        if r["clip_ablation"]:
            report.text(self.prose("clipping", r))
            table = []
            for a in r["clip_ablation"]:
                b = nearest(r["curves"][a["curve"]], a["value"])
                table.append([a["curve"], f"{a['value']:g}", b["fid"], a["fid"], b["accuracy"],
                              a["accuracy"], b["recall"], a["recall"]])  # fmt: skip
            report.table(
                ["curve", "s", "FID (clip, then guide)", "FID (guide, then clip)",
                 "accuracy (clip, then guide)", "accuracy (guide, then clip)",
                 "recall (clip, then guide)", "recall (guide, then clip)"], table,
            )  # fmt: skip
        report.figure(
            tradeoff_figure(curves, r["floor"], "s", "Classifier guidance on digits"),
            "tradeoff.png",
            "Accuracy against FID (left) and precision against recall (right) as the "
            "classifier scale s varies, for both sampling algorithms.",
        )
        labels = r["labels"]
        first = next(iter(r["curves"].values()))
        panels = [(f"unguided (s = 0)\n{_short(first[0])}", first[0]["samples"], labels)]
        for rows in r["curves"].values():
            x = nearest(rows, s.grid_scale)
            panels.append((f"s = {x['value']:g}\n{_short(x)}", x["samples"], labels))
        report.figure(
            grids_figure(panels, max(1, min(8, len(labels) // 10))), "samples.png",
            f"Samples, row c guided towards digit c (unguided: the same starting noise; its "
            f"rows are only the label order). Scale s = {nearest(first, s.grid_scale)['value']:g}.",
        )  # fmt: skip

    def text_values(self, r: dict[str, Any]) -> dict[str, Any]:
        s = self.s
        cond = paper_text(__name__, "conditional").format(s=s) if s.conditional_steps else ""
        n_note = (" (the test split's size, the n of the FID noise floor)"
                  if r["n"] == r["test_size"]
                  else f" (the FID noise floor is measured at the same n, {r['n']})")  # fmt: skip
        return {
            "params": sum(p.numel() for p in r["model"].parameters()),
            "clf_params": r["classifier"]["parameters"],
            "clf_seconds": r["classifier"].get("train_seconds", 0),
            "samplers": ", ".join(
                f"{_algorithm(m)} with {name} in {k} steps" for name, k, m in self.samplers
            ),  # fmt: skip
            "scales": ", ".join(f"{v:g}" for v in s.scales),
            "conditional": (" " + cond) if cond else "",
            "n_note": n_note,
            "significance": SIGNIFICANCE,
        }

    def record_metrics(self, r: dict[str, Any]) -> dict[str, Any]:
        def train(summary: dict[str, Any]) -> dict[str, Any]:
            return {k: summary.get(k) for k in ("step", "loss", "train_seconds")}

        m = {
            "train": train(r["summary"]),
            "classifier": {k: v for k, v in r["classifier"].items() if k != "path"},
            "n_samples": r["n"], "fid_floor": r["floor"],
            "pr_floor": {"precision": r["pr_floor"][0], "recall": r["pr_floor"][1]},
            "fid_seed_spread": r["spread"],
            "curves": {name: public_rows(rows) for name, rows in r["curves"].items()},
            "clip_after_guidance": public_rows(r["clip_ablation"]),
        }  # fmt: skip
        if r["conditional"] is not None:
            cond = r["conditional"]
            m["conditional"] = {"label": cond["label"], "train": train(cond["summary"]),
                                "rows": public_rows(cond["rows"])}  # fmt: skip
        return m


REPRODUCTION = GuidedDiffusion2021
reproduce = GuidedDiffusion2021.run
