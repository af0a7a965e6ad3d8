"""Dhariwal & Nichol 2021, "Diffusion Models Beat GANs on Image Synthesis" (NeurIPS 2021,
arXiv:2105.05233): the reproduction ``guided-diffusion-2021``, classifier guidance on digits.

Classifier guidance (Sec. 4) steers a diffusion model with the gradient of a classifier
``p_phi(y | x_t, t)`` trained on noisy images (:func:`~diffusio.image.classifier.noisy_classifier`);
Alg. 1 (ancestral) shifts the reverse mean, ``N(mu + s Sigma grad log p_phi(y | x_t), Sigma)``;
Alg. 2 (DDIM) the noise, ``eps - sqrt(1 - alpha_bar_t) s grad log p_phi(y | x_t)``; both with a
*gradient scale* ``s`` (Sec. 4.3) that trades diversity for fidelity. Both are
:class:`~diffusio.core.steering.ClassifierGuidance` (modes ``"mean"`` and ``"score"``), applied
after DDPM's x0 clipping as in the paper's code (``sample_images(..., guide_clipped=True)``).

Measured on scikit-learn's 8x8 digits: an unconditional DDPM (``digits-ddpm``), a noise-aware
classifier and a sweep of ``s`` with both algorithms, each scored by
:class:`~diffusio.image.scoring.Scorer` (accuracy of an independent clean classifier on the
target labels, FID against its noise floor, k-NN precision and recall: Table 4's fidelity and
diversity metrics). The claims compare *seeded settings* (:func:`seeded_setting`, at least
MIN_SEEDS seeds each) by seed means and the standard error of their difference. Sampling,
scoring and figures live in :mod:`diffusio.image`; the prose in ``text/guided_diffusion_2021.md``.
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
    SEEDED_METRICS as METRICS,
)
from ..image.scoring import (
    SWEEP_HEADER,
    Scorer,
    finite_values,
    guidance_sweep,
    nearest,
    pick_scale,
    plus_minus,
    public_rows,
    seed_diff,
    seed_stat,
    seeded_setting,
    sweep_table,
)
from ..metrics.stats import binomial_se, difference_se
from .base import Reproduction, paper_text, said
from .report import PaperNumber, Report
from .verdicts import (
    MIN_SEEDS,
    NOT,
    REPRODUCED,
    SIGNIFICANCE,
    claim_rule,
    compare,
    shown,
    win_verdict,
)

__all__ = [
    "GuidedDiffusion2021", "REPRODUCTION", "Settings", "improves_fid", "reproduce",
    "scale_one_not_enough", "trades_recall_for_precision",
]  # fmt: skip

#: "Class-consistent": the clean classifier's accuracy at least this (Sec. 4.3's "nearly 100%").
CONSISTENT = 0.9
_PAPER = "arXiv:2105.05233 full text (stored PDF-text and ar5iv copies, code corpus)"


# --------------------------------------------------------------------------- claim rules
@claim_rule("guided-diffusion-2021/scale-1-not-enough",
            supports={"acc_one": 0.6, "se_one": 0.026, "acc_big": 0.98, "se_big": 0.003},
            contradicts={"acc_one": 0.95, "se_one": 0.011, "acc_big": 0.99, "se_big": 0.003})
def scale_one_not_enough(acc_one: float, se_one: float, acc_big: float, se_big: float) -> str:
    """Sec. 4.3 / Fig. 3: at scale 1 the samples do not match their class; scaled up they do
    (the guide's probabilities "nearly 100%"). Reproduced: the larger scale is class-consistent
    (accuracy >= CONSISTENT), scale 1 is not, and the gain is clear (se of the difference)."""
    if not acc_big >= CONSISTENT > acc_one:
        return NOT
    return win_verdict(acc_big - acc_one, difference_se(se_one, se_big))


@claim_rule("guided-diffusion-2021/trades-recall-for-precision",
            supports=dict(precision_gain=0.05, precision_se=0.01, recall_drop=0.2, recall_se=0.02),
            contradicts=dict(precision_gain=0.01, precision_se=0.01, recall_drop=0.2,
                             recall_se=0.02))  # fmt: skip
def trades_recall_for_precision(precision_gain: float, precision_se: float, recall_drop: float,
                                recall_se: float) -> str:  # fmt: skip
    """Table 4 / Fig. 4: guidance raises precision (fidelity) and lowers recall (diversity).
    Reproduced: both changes clear (seed means, se of each difference)."""
    up = compare(precision_gain, precision_se) == 1
    return REPRODUCED if up and compare(recall_drop, recall_se) == 1 else NOT


@claim_rule("guided-diffusion-2021/guidance-improves-fid",
            supports={"fid_gain": 10.0, "se": 2.0}, contradicts={"fid_gain": 3.0, "se": 2.0})
def improves_fid(fid_gain: float, se: float) -> str:
    """Table 4: guidance clearly lowers the unguided FID (unconditional model 26.21 -> 12.00 at
    scale 10, conditional 10.94 -> 4.59 at scale 1); a gain within the noise is not shown."""
    return win_verdict(fid_gain, se)


@dataclass(frozen=True)
class Settings:
    """Every knob of the reproduction; quick and default differ only in sizes.

    ``samplers``: ``(sampler, steps, guidance mode)``; Alg. 1 is ``("ddpm", T, "mean")`` and
    Alg. 2 ``("ddim", T, "score")``. ``n_samples`` (None: the test split's size, 359, the n of
    the FID noise floor) samples per setting, labels ``0..9`` repeated. ``net_options`` /
    ``batch_size`` replace the preset's. ``fid_seeds`` (>= MIN_SEEDS) seeds per seeded setting:
    unguided, and the lowest-FID scale above 1 (chosen on the sweep's seed, measured on fresh
    ones). ``clip_ablation`` repeats ``grid_scale`` clipping x0 after the guidance.
    ``conditional_steps > 0`` also guides ``digits-ddpm-cond`` (Table 4; scale 1 seeded).
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
    fid_seeds: int = MIN_SEEDS
    conditional_steps: int = 2400
    conditional_scales: tuple[float, ...] = (0.0, 1.0, 2.0, 4.0)
    pr_k: int = 3
    seed: int = 0
    sample_seed: int = 1


def _algorithm(mode: str) -> str:
    return "Alg. 1 (mean shift)" if mode == "mean" else "Alg. 2 (eps shift)"


def _short(row: dict[str, Any]) -> str:
    return f"Alg. {1 if row['mode'] == 'mean' else 2}, {row['sampler']} {row['steps']} steps"


def _seed_row(curve: str, x: dict[str, Any]) -> list[Any]:
    fids = ", ".join(f"{f:.1f}" for f in finite_values(x["fid"]))
    return [curve, f"{x['value']:g}", len(x["seeds"]), fids,
            *(plus_minus(k, x) for k in METRICS)]  # fmt: skip


# --------------------------------------------------------------------------- the reproduction
class GuidedDiffusion2021(Reproduction):
    NAME = "guided-diffusion-2021"
    TITLE = "Diffusion Models Beat GANs on Image Synthesis (Dhariwal & Nichol, 2021)"
    REFERENCE = (
        "Prafulla Dhariwal and Alex Nichol. *Diffusion Models Beat GANs on Image Synthesis.* "
        "NeurIPS 2021, arXiv:2105.05233 (classifier guidance: Sec. 4, Algorithms 1 and 2)."
    )
    Settings = Settings
    #: About 5 minutes on 2 free CPU cores (the default: about 25).
    QUICK = {
        "train_steps": 900, "classifier_steps": 1200,
        "classifier_options": {"channels": 16, "channel_mults": [1, 2], "pool": "attention"},
        "scales": (0.0, 0.5, 1.0, 2.0, 4.0, 8.0),
        "samplers": (("ddim", 25, "score"), ("ddpm", 50, "mean")), "conditional_steps": 0,
    }  # fmt: skip
    SMOKE = {
        "train_steps": 20, "batch_size": 32, "classifier_steps": 20,
        "net_options": TINY_UNET,
        "classifier_options": {"channels": 8, "num_heads": 2, "groups": 4},
        "scales": (0.0, 1.0, 4.0), "samplers": (("ddim", 4, "score"), ("ddpm", 4, "mean")),
        "n_samples": 40, "conditional_steps": 10, "conditional_scales": (0.0, 2.0),
    }  # fmt: skip
    PAPER_NUMBERS = tuple(PaperNumber(q, v, where, True, _PAPER) for q, v, where in (
        ("FID, unconditional ImageNet 256, scale 1.0 / 10.0", "33.0 / 12.0", "Fig. 3 caption"),
        ("guide's target-class probability, scale 1 / scaled up", "around 50% / nearly 100%",
         "Sec. 4.3"),
        ("FID, unconditional: unguided / s = 1 / s = 10", "26.21 / 33.03 / 12.00", "Table 4"),
        ("precision, recall, unconditional: unguided -> s = 10", "0.61 -> 0.76, 0.63 -> 0.44",
         "Table 4"),
        ("FID (precision), conditional: unguided -> s = 1", "10.94 (0.69) -> 4.59 (0.82)",
         "Table 4"),
        ("sampling steps on ImageNet", "250 (25 with DDIM)", "Table 5 caption"),
    ))  # fmt: skip

    @property
    def samplers(self) -> list[tuple[str, int, str]]:
        """``s.samplers`` with integer step counts (``--set`` may parse them as strings)."""
        return [(str(a), int(k), str(m)) for a, k, m in self.s.samplers]

    def config(self, preset: str, steps: int) -> Any:
        """The training recipe of ``preset`` (shared through the model cache with cfg-2021)."""
        return image_config(preset, steps, net_options=self.s.net_options,
                            batch_size=self.s.batch_size)  # fmt: skip

    def sweep(self, model: Any, values: Sequence[float], sampler: str, steps: int, mode: str,
              label: str, seed: int | None = None, **options: Any) -> list[dict[str, Any]]:
        """One classifier-guidance curve over the scales ``values`` (default seed: the sweep's)."""
        return guidance_sweep(
            model, self.scorer, self.labels, values, kind="cg", sampler=sampler, steps=steps,
            seed=self.s.sample_seed if seed is None else seed, label=label,
            classifier=self.classifier, mode=mode, progress=self.progress, log=self.log, **options,
        )  # fmt: skip

    def seeded(self, model: Any, rows: list[dict[str, Any]], guided: float, fresh: bool,
               *curve: Any) -> dict[str, Any]:  # fmt: skip
        """Unguided and scale ``guided`` of the curve (sampler, steps, mode, label) over
        ``fid_seeds`` seeds; ``fresh``: the guided one not on the sweep's seed (chosen on it)."""
        def measure(value: float, seed: int) -> dict[str, Any]:
            return self.sweep(model, [value], *curve, seed=seed)[0]

        k = self.s.fid_seeds  # seeds[0] is the sweep's own
        seeds = [self.s.sample_seed + 1000 * i for i in range(k + 1)]
        return {"unguided": seeded_setting(measure, rows, 0.0, seeds[:k]),
                "guided": seeded_setting(measure, rows, guided, seeds[int(fresh):][:k])}

    def run_experiments(self) -> dict[str, Any]:
        s = self.s
        if s.fid_seeds < MIN_SEEDS:
            raise ValueError(f"fid_seeds must be at least {MIN_SEEDS}, got {s.fid_seeds}")
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
        self.scorer = Scorer("digits", s.pr_k)
        self.lap("evaluator")
        n = s.n_samples or self.scorer.test_size
        self.labels = balanced_labels(n, 10)
        curves: dict[str, list[dict[str, Any]]] = {}
        seeded: dict[str, dict[str, Any]] = {}
        for sampler, steps, mode in self.samplers:
            label = f"{_algorithm(mode)}: {sampler} {steps} steps"
            self.log(f"sweeping the classifier scale, {label}")
            curves[label] = rows = self.sweep(model, s.scales, sampler, steps, mode, label)
            self.lap(f"sweep {sampler}")
            self.log(f"{s.fid_seeds} seeds of s = 0 and s = {pick_scale(rows):g}, {label}")
            seeded[label] = self.seeded(model, rows, pick_scale(rows), True, sampler, steps, mode,
                                        label)  # fmt: skip
            self.lap(f"seeds {sampler}")
        ablation: list[dict[str, Any]] = []
        if s.clip_ablation:
            self.log("clipping after the guidance instead of before")
            for (label, rows), (sampler, steps, mode) in zip(curves.items(), self.samplers,
                                                             strict=True):  # fmt: skip
                ablation += self.sweep(model, [nearest(rows, s.grid_scale)["value"]], sampler,
                                       steps, mode, label, guide_clipped=False)  # fmt: skip
            self.lap("clip ablation")
        conditional = None
        if s.conditional_steps > 0:
            self.log("training the class-conditional DDPM")
            cond_model, _, cond_summary = self.train(self.config("digits-ddpm-cond",
                                                                 s.conditional_steps), "ddpm-cond")
            self.lap("conditional model")
            sampler, steps, mode = next((x for x in self.samplers if x[2] == "score"),
                                        self.samplers[0])  # fmt: skip
            label = f"conditional model + {_algorithm(mode)}: {sampler} {steps} steps"
            self.log(f"sweeping the classifier scale, {label}")
            rows = self.sweep(cond_model, s.conditional_scales, sampler, steps, mode, label)
            one = nearest([x for x in rows if x["value"] > 0] or rows, 1.0)["value"]  # Table 4
            cond_seeded = self.seeded(cond_model, rows, one, False, sampler, steps, mode, label)
            conditional = {"summary": cond_summary, "rows": rows, "label": label,
                           "seeded": cond_seeded}  # fmt: skip
            self.lap("sweep conditional")
        return {
            "model": model, "summary": summary, "classifier": clf, "curves": curves,
            "seeded": seeded, "clip_ablation": ablation, "conditional": conditional,
            "labels": self.labels, "n": n, "floor": self.scorer.floor(n),
            "pr_floor": self.scorer.pr_floor(), "k": self.scorer.k,
            "test_size": self.scorer.test_size,
        }  # fmt: skip

    # ------------------------------------------------------------------ claims
    def add_claims(self, report: Report, r: dict[str, Any]) -> None:
        k, floor = self.s.fid_seeds, r["floor"]
        for name, rows in r["curves"].items():
            one, (u, g) = nearest(rows, 1.0), r["seeded"][name].values()
            se_one = binomial_se(one["accuracy"], one["n"])
            acc, se = seed_stat(g, "accuracy")
            gain, gain_se = acc - one["accuracy"], difference_se(se_one, se)
            report.claim(
                *said(__name__, "scale", name),
                f"s = {one['value']:g}: accuracy {one['accuracy']:.1%} ± {se_one:.1%} (binomial, "
                f"{one['n']} samples); s = {g['value']:g}: {plus_minus('accuracy', g, pct=True)} "
                f"({k} fresh seeds)",
                f"consistent: accuracy >= {CONSISTENT:.0%}; gain {gain:+.1%} ± {gain_se:.1%}, "
                f"{shown(gain, gain_se)}; 10 digit classes",
                scale_one_not_enough(acc_one=one["accuracy"], se_one=se_one, acc_big=acc,
                                     se_big=se),  # fmt: skip
            )
            dp, sp = seed_diff(g, u, "precision")
            dr, sr = seed_diff(u, g, "recall")
            report.claim(
                *said(__name__, "trade-off", name),
                f"s = 0 -> {g['value']:g} ({k} seeds each): precision "
                f"{plus_minus('precision', u, g)}, recall {plus_minus('recall', u, g)}",
                f"precision {dp:+.3f} ± {sp:.3f}, {shown(dp, sp)}; recall {-dr:+.3f} ± "
                f"{sr:.3f}, {shown(dr, sr)}; k = {r['k']}; real train vs test images: "
                f"{r['pr_floor'][0]:.2f} / {r['pr_floor'][1]:.2f}",
                trades_recall_for_precision(precision_gain=dp, precision_se=sp, recall_drop=dr,
                                            recall_se=sr),  # fmt: skip
            )
            d, se = seed_diff(u, g, "fid")
            report.claim(
                *said(__name__, "fid", name),
                f"unguided -> s = {g['value']:g} (lowest FID above 1 on the sweep's seed; {k} "
                f"fresh seeds): FID {plus_minus('fid', u, g)}",
                f"FID {-d:+.2f} ± {se:.2f}, {shown(d, se)}; noise floor {floor:.2f} (unguided "
                f"{seed_stat(u, 'fid')[0] / floor:.2f}x, guided "
                f"{seed_stat(g, 'fid')[0] / floor:.2f}x)",
                improves_fid(fid_gain=d, se=se),
            )
        cond = r["conditional"]
        if cond is not None:
            u, g = cond["seeded"]["unguided"], cond["seeded"]["guided"]
            d, se = seed_diff(u, g, "fid")
            report.claim(
                *said(__name__, "conditional fid", cond["label"]),
                f"{k} seeds each: unguided FID {plus_minus('fid', u)}, accuracy "
                f"{plus_minus('accuracy', u, pct=True)}; s = {g['value']:g}: FID "
                f"{plus_minus('fid', g)}, accuracy {plus_minus('accuracy', g, pct=True)}",
                f"FID {-d:+.2f} ± {se:.2f}, {shown(d, se)}; noise floor {floor:.2f}",
                improves_fid(fid_gain=d, se=se),
            )

    # ------------------------------------------------------------------ sections
    def add_sections(self, report: Report, r: dict[str, Any]) -> None:
        s = self.s
        accuracy = r["classifier"]["accuracy_by_noise"]
        report.section("The noise-aware classifier (Sec. 4.1)", self.prose("classifier", r))
        report.table(["table index", "t", "alpha_bar", "SNR", "accuracy"],
                     [[a["index"], a["t"], a["alpha_bar"], a["snr"], a["accuracy"]]
                      for a in accuracy])  # fmt: skip
        report.figure(classifier_figure(accuracy, 0.1), "classifier_accuracy.png",
                      "Noise-aware classifier: test accuracy against the diffusion time.")
        report.section("Guidance scale sweep (Alg. 1 and Alg. 2)", self.prose("sweep", r))
        curves = dict(r["curves"])
        seeded = dict(r["seeded"])
        if r["conditional"] is not None:
            curves[r["conditional"]["label"]] = r["conditional"]["rows"]
            seeded[r["conditional"]["label"]] = r["conditional"]["seeded"]
        report.table(SWEEP_HEADER, sweep_table([x for rows in curves.values() for x in rows]))
        report.text(self.prose("seeds", r))
        report.table(["curve", "s", "seeds", "FID per seed", *(f"{k} mean ± se" for k in METRICS)],
                     [_seed_row(name, x) for name, pair in seeded.items() for x in pair.values()])
        if r["clip_ablation"]:
            report.text(self.prose("clipping", r))
            keys, orders = ("FID", "accuracy", "recall"), ("clip, then guide", "guide, then clip")
            pairs = [(nearest(r["curves"][a["curve"]], a["value"]), a) for a in r["clip_ablation"]]
            report.table(["curve", "s"] + [f"{k} ({o})" for k in keys for o in orders],
                         [[a["curve"], f"{a['value']:g}"]
                          + [x[k.lower()] for k in keys for x in (b, a)] for b, a in pairs])
        report.figure(tradeoff_figure(curves, r["floor"], "s", "Classifier guidance on digits"),
                      "tradeoff.png", "Accuracy against FID (left) and precision against recall "
                      "(right) as the classifier scale s varies (the sweep's seed).")  # fmt: skip
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
        n_note = (" (the test split's size, the n of the FID noise floor)" if r["n"] ==
                  r["test_size"] else " (the FID noise floor is measured at the same n)")
        return {
            "params": sum(p.numel() for p in r["model"].parameters()),
            "clf_params": r["classifier"]["parameters"],
            "clf_seconds": r["classifier"].get("train_seconds", 0),
            "samplers": ", ".join(f"{_algorithm(m)} with {a} in {k} steps"
                                  for a, k, m in self.samplers),
            "scales": ", ".join(f"{v:g}" for v in s.scales),
            "conditional": (" " + cond) if cond else "",
            "n_note": n_note,
            "significance": SIGNIFICANCE,
            "clf_last": r["classifier"]["accuracy_by_noise"][-1]["accuracy"],
            "chance": "; ".join(f"{name}: {rows[0]['accuracy']:.1%}"
                                for name, rows in r["curves"].items() if rows[0]["value"] == 0),
        }  # fmt: skip

    def record_metrics(self, r: dict[str, Any]) -> dict[str, Any]:
        def train(summary: dict[str, Any]) -> dict[str, Any]:
            return {k: summary.get(k) for k in ("step", "loss", "train_seconds")}

        m = {
            "train": train(r["summary"]),
            "classifier": {k: v for k, v in r["classifier"].items() if k != "path"},
            "n_samples": r["n"], "fid_floor": r["floor"],
            "pr_floor": {"precision": r["pr_floor"][0], "recall": r["pr_floor"][1]},
            "curves": {name: public_rows(rows) for name, rows in r["curves"].items()},
            "seeded": r["seeded"], "clip_after_guidance": public_rows(r["clip_ablation"]),
        }  # fmt: skip
        if (cond := r["conditional"]) is not None:
            m["conditional"] = {"label": cond["label"], "train": train(cond["summary"]),
                                "rows": public_rows(cond["rows"]), "seeded": cond["seeded"]}
        return m


REPRODUCTION = GuidedDiffusion2021
reproduce = GuidedDiffusion2021.run
