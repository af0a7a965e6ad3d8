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
guidance does, without any classifier.

Measured here: the ``digits-ddpm-cond`` U-Net (``p_uncond = 0.1``), trained through the shared
model cache (the same recipe as guided-diffusion-2021's conditional model, so the two share it),
a sweep of ``w`` scored by :class:`~diffusio.image.scoring.Scorer` (accuracy of an independent
clean classifier on the intended labels, our stand-in for IS; FID against its floor; precision /
recall). The classifier-guidance curve of ``guided-diffusion-2021`` (declared in ``DEPENDS``,
read from the results cache) is drawn on the same axes; without it, classifier guidance is
measured here on this network's unconditional mode (null label) with a noise-aware classifier.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ..image.analysis import TINY_UNET
from ..image.classifier import noisy_classifier
from ..image.figures import grids_figure, tradeoff_figure
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
from ..metrics.stats import binomial_se
from .base import Reproduction
from .report import Report, fmt
from .verdicts import NOT, PARTLY, REPRODUCED, SIGNIFICANCE, compare, noise_margin

__all__ = ["CFG2021", "REPRODUCTION", "Settings", "best_at_accuracy", "best_weight",
           "guided_curves", "reproduce"]  # fmt: skip

GUIDED = "guided-diffusion-2021"
DATASET = "digits"
# The target: at its best w, accuracy above TARGET_ACCURACY with an FID at most
# TARGET_FID_RATIO times the unguided (w = 0) model's.
TARGET_ACCURACY = 0.95
TARGET_FID_RATIO = 1.5


@dataclass(frozen=True)
class Settings:
    """Every knob of the reproduction; quick and default differ only in sizes.

    ``weights``: the guidance weights w swept with ``sampler`` in ``sampler_steps`` steps
    (two network evaluations per step once w != 0). ``n_samples`` (None: the test split's
    size, 359, the n of the FID noise floor). ``fid_seeds``: unguided runs with that many
    sampling seeds, for the FID's sampling noise. ``p_uncond`` is the label dropout of
    training (the preset's 0.1). ``use_sibling``: compare with guided-diffusion-2021's
    classifier-guidance curves when its results (at the same n) are in the results cache;
    otherwise classifier guidance is measured here with ``classifier_*`` and ``cg_scales``.
    ``net_options`` / ``batch_size`` replace the preset's (the smoke run uses a tiny U-Net).
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
        default_factory=lambda: {"channels": 32, "channel_mults": [1, 2], "pool": "attention"}
    )
    classifier_batch: int = 128
    classifier_lr: float = 1e-3
    cg_scales: tuple[float, ...] = (0.0, 1.0, 2.0, 4.0, 8.0)
    pr_k: int = 3
    seed: int = 0
    sample_seed: int = 1


def config(s: Settings) -> Any:
    """The ``digits-ddpm-cond`` recipe at the settings' steps and label dropout (the same
    config, hence the same cached model, as guided-diffusion-2021's conditional model)."""
    return image_config(s.preset, s.train_steps, net_options=s.net_options,
                        batch_size=s.batch_size, class_dropout=float(s.p_uncond))  # fmt: skip


def guided_curves(saved: dict[str, Any] | None, n: int) -> dict[str, Any] | None:
    """The classifier-guidance curves and FID floor of guided-diffusion-2021's metrics
    ``saved``, or None without them or when its FIDs were measured at another sample count
    than ``n`` (FIDs compare only at equal n)."""
    try:
        curves = saved["metrics"]["curves"]  # type: ignore[index]
        floor = float(saved["metrics"]["fid_floor"])  # type: ignore[index]
    except (KeyError, TypeError, ValueError):
        return None
    if any(r.get("n") != n for rows in curves.values() for r in rows):
        return None
    return {"quick": saved.get("quick"), "curves": curves, "floor": floor}  # type: ignore[union-attr]


def best_weight(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's "best w": the highest accuracy among the weights whose FID is at most
    TARGET_FID_RATIO times the unguided model's (ties: the lower FID)."""
    base = rows[0]
    allowed = [r for r in rows if r["fid"] <= TARGET_FID_RATIO * base["fid"]] or [base]
    return max(allowed, key=lambda r: (r["accuracy"], -r["fid"]))


def best_at_accuracy(rows: list[dict[str, Any]], level: float) -> dict[str, Any] | None:
    """The lowest-FID row with accuracy at least ``level`` (None if no row reaches it)."""
    ok = [r for r in rows if r["accuracy"] >= level]
    return min(ok, key=lambda r: r["fid"]) if ok else None


def _tally(hits: int) -> str:
    return REPRODUCED if hits == 3 else (PARTLY if hits else NOT)


class CFG2021(Reproduction):
    NAME = "cfg-2021"
    TITLE = "Classifier-Free Diffusion Guidance (Ho & Salimans, 2021)"
    REFERENCE = (
        "Jonathan Ho and Tim Salimans. *Classifier-Free Diffusion Guidance.* NeurIPS 2021 "
        "Workshop on Deep Generative Models and Downstream Applications, arXiv:2207.12598."
    )
    DEPENDS = (GUIDED,)
    Settings = Settings
    #: About 4 minutes on 2 free CPU cores (the default: 10-12).
    QUICK = {
        "train_steps": 1000, "sampler_steps": 25, "fid_seeds": 2, "classifier_steps": 1200,
        "classifier_options": {"channels": 16, "channel_mults": [1, 2], "pool": "attention"},
        "cg_scales": (0.0, 1.0, 4.0, 8.0),
    }  # fmt: skip
    SMOKE = {
        "train_steps": 20, "batch_size": 32, "classifier_steps": 20,
        "net_options": TINY_UNET,
        "classifier_options": {"channels": 8, "num_heads": 2, "groups": 4},
        "weights": (0.0, 0.5, 2.0), "cg_scales": (0.0, 2.0), "sampler_steps": 4,
        "n_samples": 40, "fid_seeds": 2, "grid_weights": (0.0, 2.0),
    }  # fmt: skip

    def run_experiments(self) -> dict[str, Any]:
        s = self.s
        if not 0.0 < s.p_uncond < 1.0:
            raise ValueError(f"p_uncond must lie in (0, 1), got {s.p_uncond}")
        self.log(f"training the class-conditional DDPM (p_uncond = {s.p_uncond:g})")
        model, _, summary = self.train(config(s), "ddpm-cond")
        self.lap("diffusion model")
        scorer = Scorer(DATASET, s.pr_k)
        self.lap("evaluator")
        n = s.n_samples or scorer.test_size
        labels = balanced_labels(n, 10)
        sweep = {"sampler": s.sampler, "steps": s.sampler_steps, "seed": s.sample_seed,
                 "progress": self.progress, "log": self.log}  # fmt: skip
        label = f"classifier-free guidance: {s.sampler} {s.sampler_steps} steps"
        self.log(f"sweeping the guidance weight, {label}")
        rows = guidance_sweep(model, scorer, labels, s.weights, kind="cfg", label=label, **sweep)
        self.lap("sweep w")
        seeds = [s.sample_seed + 1000 * k for k in range(max(s.fid_seeds, 1))]
        spread = seed_spread(model, scorer, labels, seeds, s.sampler, s.sampler_steps, sweep=rows)
        self.lap("FID seed spread")
        sibling = guided_curves(self.dependency_results(GUIDED), n) if s.use_sibling else None
        here = None
        if sibling is None:
            self.log(f"no {GUIDED} results at n = {n}: classifier guidance measured here")
            classifier, info = noisy_classifier(
                config(s), model.process, steps=s.classifier_steps, batch_size=s.classifier_batch,
                lr=s.classifier_lr, seed=s.seed, options=s.classifier_options,
                progress=self.progress,
            )  # fmt: skip
            cg_label = (f"classifier guidance, same net's null label: {s.sampler} "
                        f"{s.sampler_steps} steps")  # fmt: skip
            null = torch.full_like(labels, int(model.net.num_classes))
            cg_rows = guidance_sweep(
                model, scorer, labels, s.cg_scales, kind="cg", label=cg_label,
                classifier=classifier, mode="score", model_labels=null, **sweep,
            )  # fmt: skip
            here = {"label": cg_label, "rows": cg_rows, "classifier": info}
            self.lap("classifier guidance")
        else:
            self.log(f"classifier-guidance curves from the {GUIDED} results")
        return {
            "model": model, "summary": summary, "label": label, "rows": rows, "spread": spread,
            "sibling": sibling, "here": here, "labels": labels, "n": n,
            "floor": scorer.floor(n), "pr_floor": scorer.pr_floor(),
        }  # fmt: skip

    @staticmethod
    def cg_curves(r: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        """The classifier-guidance curves to compare with (guided-diffusion-2021's or here)."""
        if r["sibling"] is not None:
            return {f"{name} ({GUIDED})": rows for name, rows in r["sibling"]["curves"].items()}
        return {r["here"]["label"]: r["here"]["rows"]}

    # ------------------------------------------------------------------ claims
    def add_claims(self, report: Report, r: dict[str, Any]) -> None:
        rows, spread = r["rows"], r["spread"]
        base, top = rows[0], rows[-1]
        std = spread["std"]
        # 1. trade-off: accuracy / precision up, recall down, FID clearly up at large w
        up = top["accuracy"] > base["accuracy"] and top["precision"] >= base["precision"]
        down = top["recall"] < base["recall"]
        worse = compare(top["fid"] - base["fid"], std) == 1
        report.claim(
            "The guidance weight trades diversity for fidelity: as w grows, sample quality "
            "(IS; here accuracy and precision) rises while FID and diversity (here recall) worsen",
            "ImageNet 64x64 and 128x128 (Sec. 4, Fig. 4): IS rises steadily with w while FID "
            "worsens beyond a small w; samples visibly lose diversity at large w",
            f"w = {base['value']:g} -> {top['value']:g}: accuracy {base['accuracy']:.1%} -> "
            f"{top['accuracy']:.1%}, precision {base['precision']:.2f} -> "
            f"{top['precision']:.2f}, recall {base['recall']:.2f} -> {top['recall']:.2f}, FID "
            f"{base['fid']:.1f} -> {top['fid']:.1f}",
            "accuracy of an independent clean classifier stands in for IS (8x8 digits have no "
            f"Inception features); FID sampling noise ± {std:.2f} (std over "
            f"{len(spread['seeds'])} seeds)",
            _tally(sum([up, down, worse])),
        )
        # 2. a small w improves FID (clearly: reproduced; not clearly worse: partly; an
        # unknown noise (one seed): nothing is clear, and not worse only when not worse at all)
        small = [x for x in rows if 0 < x["value"] <= 1.0]
        if small:
            best_small = min(small, key=lambda x: x["fid"])
            gain = base["fid"] - best_small["fid"]
            verdict = (REPRODUCED if compare(gain, std) == 1
                       else PARTLY if -gain <= noise_margin(std) else NOT)  # fmt: skip
            report.claim(
                "A small guidance weight improves FID over the unguided conditional model",
                "ImageNet 64x64: the best FID is at a small w (well below 1), better than w = 0 "
                "(Sec. 4)",
                f"w = 0: FID {base['fid']:.2f}; best with 0 < w <= 1: FID "
                f"{best_small['fid']:.2f} at w = {best_small['value']:g} (noise floor "
                f"{r['floor']:.2f})",
                f"FID {-gain:+.2f} against a sampling noise of ± {std:.2f}; the w = 0 model is "
                f"at {base['fid'] / r['floor']:.2f}x the floor",
                verdict,
            )
        # 3. the target
        best = best_weight(rows)
        ratio = best["fid"] / base["fid"]
        met = best["accuracy"] > TARGET_ACCURACY and ratio <= TARGET_FID_RATIO
        report.claim(
            f"Target of our issue: at its best w, accuracy > {TARGET_ACCURACY:.0%} with FID at "
            f"most {TARGET_FID_RATIO:g}x the w = 0 model's",
            "(not a paper number: our acceptance test for the digits scale)",
            f"best w = {best['value']:g}: accuracy {best['accuracy']:.1%} ± "
            f"{binomial_se(best['accuracy'], best['n']):.1%}, FID {best['fid']:.2f} = "
            f"{ratio:.2f}x the w = 0 FID {base['fid']:.2f}",
            f"w = 0 accuracy {base['accuracy']:.1%}",
            REPRODUCED if met else (PARTLY if best["accuracy"] > base["accuracy"] else NOT),
        )
        # 4. CFG matches classifier guidance without a classifier
        level = TARGET_ACCURACY
        cfg_best = best_at_accuracy(rows, level)
        cg_best = {name: best_at_accuracy(x, level) for name, x in self.cg_curves(r).items()}
        reached = [v["fid"] for v in cg_best.values() if v is not None]
        if cfg_best is None:
            verdict = NOT
        elif not reached or cfg_best["fid"] <= min(reached) + noise_margin(std):
            verdict = REPRODUCED
        else:
            verdict = PARTLY

        def describe(x: dict[str, Any] | None, symbol: str) -> str:
            if x is None:
                return f"never reaches {level:.0%}"
            return f"FID {x['fid']:.1f} at {symbol} = {x['value']:g} (accuracy {x['accuracy']:.1%})"

        source = (f"read from the {GUIDED} {'quick' if r['sibling']['quick'] else 'default'} "
                  "run's results (another unconditional network)" if r["sibling"] is not None
                  else "measured here on the same network's unconditional mode")  # fmt: skip
        report.claim(
            "Classifier-free guidance attains the fidelity/diversity trade-off of classifier "
            "guidance without a classifier",
            "Sec. 4-5: a trade-off like classifier guidance's (Dhariwal & Nichol 2021), from a "
            "single network with p_uncond = 0.1 or 0.2",
            f"lowest FID with accuracy >= {level:.0%}: CFG {describe(cfg_best, 'w')}; "
            + "; ".join(f"{name}: {describe(x, 's')}" for name, x in cg_best.items()),
            f"classifier-guidance curve {source}; each CFG step costs two network evaluations",
            verdict,
        )

    # ------------------------------------------------------------------ sections
    def add_sections(self, report: Report, r: dict[str, Any]) -> None:
        s, rows, spread = self.s, r["rows"], r["spread"]
        report.section("Guidance weight sweep", self.prose("sweep", r))
        report.table(SWEEP_HEADER, sweep_table(rows))
        report.text(
            f"Sampling noise of one FID: unguided samples with {len(spread['seeds'])} seeds "
            f"score {', '.join(fmt(f) for f in spread['fids'])} (mean {spread['mean']:.2f}, "
            f"std {spread['std']:.2f})."
        )
        curves = {r["label"]: [{**x, "symbol": "w"} for x in rows], **self.cg_curves(r)}
        source = "from guided-diffusion" if r["sibling"] is not None else "measured here"
        report.section("Classifier-free vs classifier guidance", self.prose(source, r))
        if r["sibling"] is None:
            report.table(SWEEP_HEADER, sweep_table(r["here"]["rows"]))
        report.figure(
            tradeoff_figure(curves, r["floor"], "s", "Guidance on digits"),
            "tradeoff.png",
            "Accuracy against FID (left) and precision against recall (right): classifier-free "
            "guidance as w varies, classifier guidance as s varies.",
        )
        labels = r["labels"]
        panels = [(f"w = {x['value']:g}", x["samples"], labels)
                  for x in (nearest(rows, w) for w in s.grid_weights)]  # fmt: skip
        report.figure(
            grids_figure(panels, max(1, min(8, len(labels) // 10))),
            "samples.png",
            "Classifier-free guidance: row c is conditioned on digit c; same starting noise for "
            "every w.",
        )

    def text_values(self, r: dict[str, Any]) -> dict[str, Any]:
        here = r["here"]
        sibling = r["sibling"]
        return {
            "params": sum(p.numel() for p in r["model"].parameters()),
            "weights": ", ".join(f"{w:g}" for w in self.s.weights),
            "cg_scales": ", ".join(f"{v:g}" for v in self.s.cg_scales),
            "clf_params": here["classifier"]["parameters"] if here else 0,
            "guided_run": ("quick" if sibling["quick"] else "default") if sibling else "",
            "guided_floor": sibling["floor"] if sibling else float("nan"),
            "significance": SIGNIFICANCE,
        }

    def record_metrics(self, r: dict[str, Any]) -> dict[str, Any]:
        rows = r["rows"]
        best = best_weight(rows)
        m: dict[str, Any] = {
            "train": {k: r["summary"].get(k) for k in ("step", "loss", "train_seconds")},
            "n_samples": r["n"], "fid_floor": r["floor"],
            "pr_floor": {"precision": r["pr_floor"][0], "recall": r["pr_floor"][1]},
            "fid_seed_spread": r["spread"], "cfg": public_rows(rows),
            "best_w": {
                "w": best["value"], "accuracy": best["accuracy"], "fid": best["fid"],
                "fid_ratio": best["fid"] / rows[0]["fid"],
                "target_met": bool(best["accuracy"] > TARGET_ACCURACY
                                   and best["fid"] <= TARGET_FID_RATIO * rows[0]["fid"]),
            },
        }  # fmt: skip
        if r["sibling"] is not None:
            m["classifier_guidance"] = {"source": GUIDED, "quick": r["sibling"]["quick"]}
        else:
            here = r["here"]
            m["classifier_guidance"] = {
                "source": "measured here", "label": here["label"],
                "classifier": {k: v for k, v in here["classifier"].items() if k != "path"},
                "rows": public_rows(here["rows"]),
            }  # fmt: skip
        self.log(f"best w = {best['value']:g}: accuracy {best['accuracy']:.1%}, FID "
                 f"{best['fid']:.2f} ({m['best_w']['fid_ratio']:.2f}x w = 0)")  # fmt: skip
        return m


REPRODUCTION = CFG2021
reproduce = CFG2021.run
