"""Ho & Salimans 2021, "Classifier-Free Diffusion Guidance" (NeurIPS 2021 Workshop on Deep
Generative Models, arXiv:2207.12598): the reproduction ``cfg-2021`` on digits.

One network learns both the conditional and the unconditional model: during training each
label is replaced by a null token with probability ``p_uncond`` (Alg. 1), and sampling mixes
the two predictions (Alg. 2):

    eps_tilde(x_t, c) = (1 + w) eps(x_t, c) - w eps(x_t),

which is classifier guidance with the *implicit* classifier ``p(c | x_t) ~ p(x_t | c) / p(x_t)``
at scale ``1 + w`` (Sec. 3.2) -- exact for the oracle mixture, see ``tests/test_guidance.py``.
``w = 0`` is the plain conditional model. The paper's claim (Sec. 4, Tables 1-2 on ImageNet
64x64 and 128x128): the guidance weight trades IS for FID as classifier guidance does, without
any classifier.

Measured here: the ``digits-ddpm-cond`` U-Net (``p_uncond = 0.1``), trained through the shared
model cache (the same recipe as guided-diffusion-2021's conditional model, so the two share it),
a sweep of ``w`` scored by :class:`~diffusio.image.scoring.Scorer` (accuracy of an independent
clean classifier on the intended labels, our stand-in for IS; FID against its floor; precision /
recall), and three *seeded settings* (w = 0, the lowest-FID small w, the largest w) with
``fid_seeds`` seeds each, which the claims compare by seed means and the standard error of their
difference. The classifier-guidance numbers are read from ``guided-diffusion-2021``'s results
(declared in ``DEPENDS``, labelled "[from guided-diffusion-2021]" in the report); without them,
classifier guidance is measured here on this network's unconditional mode (null label).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from ..image import scoring
from ..image.analysis import TINY_UNET
from ..image.classifier import noisy_classifier
from ..image.figures import grids_figure, tradeoff_figure
from ..image.sampling import balanced_labels, image_config
from ..image.scoring import SWEEP_HEADER, Scorer, guidance_sweep, nearest, public_rows, sweep_table
from .base import Reproduction, said
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

__all__ = ["CFG2021", "REPRODUCTION", "Settings", "guided_curves", "matches_classifier_guidance",
           "pick_small", "reproduce", "small_w_improves_fid", "target", "trade_off"]  # fmt: skip

GUIDED = "guided-diffusion-2021"
#: The label of every number read from guided-diffusion-2021's results.
FROM = f"[from {GUIDED}]"
#: Our target's FID budget: the chosen w's FID at most this many times w = 0's.
TARGET_FID_RATIO = 1.5
_PAPER = "arXiv:2207.12598 full text (stored copy, code corpus; Table 1 also in the workshop copy)"


# --------------------------------------------------------------------------- claim rules
@claim_rule("cfg-2021/trade-off",
            supports=dict(accuracy_gain=0.02, accuracy_se=0.003, fid_rise=20.0, fid_se=2.0,
                          recall_drop=0.2, recall_se=0.02),
            contradicts=dict(accuracy_gain=0.02, accuracy_se=0.003, fid_rise=1.0, fid_se=2.0,
                             recall_drop=0.2, recall_se=0.02))  # fmt: skip
def trade_off(accuracy_gain: float, accuracy_se: float, fid_rise: float, fid_se: float,
              recall_drop: float, recall_se: float) -> str:  # fmt: skip
    """Table 1 / Sec. 4.1: as w grows IS rises (here: accuracy), FID worsens beyond a small w
    and the samples lose variety (here: recall). Reproduced: all three changes from w = 0 to the
    largest w clear (seed means, se of each difference)."""
    pairs = ((accuracy_gain, accuracy_se), (fid_rise, fid_se), (recall_drop, recall_se))
    return REPRODUCED if all(compare(d, se) == 1 for d, se in pairs) else NOT


@claim_rule("cfg-2021/small-w-improves-fid",
            supports={"fid_gain": 2.0, "se": 0.5}, contradicts={"fid_gain": 0.5, "se": 0.5})
def small_w_improves_fid(fid_gain: float, se: float) -> str:
    """Tables 1-2: the best FID is at a small w (64x64: 1.8 -> 1.55 at w = 0.1; 128x128:
    7.27 -> 2.43 at w = 0.3), clearly below w = 0's; within the noise is not shown."""
    return win_verdict(fid_gain, se)


@claim_rule("cfg-2021/matches-classifier-guidance",
            supports=dict(fid_excess=0.5, fid_se=1.0, accuracy_deficit=0.0, accuracy_se=0.01),
            contradicts=dict(fid_excess=5.0, fid_se=1.0, accuracy_deficit=0.0,
                             accuracy_se=0.01))  # fmt: skip
def matches_classifier_guidance(fid_excess: float, fid_se: float, accuracy_deficit: float,
                                accuracy_se: float) -> str:  # fmt: skip
    """Abstract / Sec. 4: a trade-off "similar to that obtained using classifier guidance".
    Reproduced: CFG's chosen setting is neither clearly worse in FID nor clearly less accurate
    than classifier guidance's best one (seed means); an unknown error fails."""
    if not (math.isfinite(fid_se) and math.isfinite(accuracy_se)):
        return NOT
    worse = compare(fid_excess, fid_se) == 1 or compare(accuracy_deficit, accuracy_se) == 1
    return NOT if worse else REPRODUCED


@claim_rule("cfg-2021/target-guidance-buys-accuracy",
            supports=dict(accuracy_gain=0.01, accuracy_se=0.003, fid_ratio=1.1),
            contradicts=dict(accuracy_gain=0.0, accuracy_se=0.003, fid_ratio=1.0))
def target(accuracy_gain: float, accuracy_se: float, fid_ratio: float) -> str:
    """Our acceptance target, not a paper claim: guidance at the chosen small w makes samples
    clearly more class-consistent than w = 0 (accuracy, seed means) at an FID at most
    TARGET_FID_RATIO times w = 0's. The w = 0 model itself cannot meet it (no gain)."""
    ok = fid_ratio <= TARGET_FID_RATIO and compare(accuracy_gain, accuracy_se) == 1
    return REPRODUCED if ok else NOT


@dataclass(frozen=True)
class Settings:
    """Every knob of the reproduction; quick and default differ only in sizes.

    ``weights``: the weights w swept with ``sampler`` in ``sampler_steps`` steps (two network
    evaluations per step once w != 0). ``n_samples`` (None: the test split's size, 359, the n of
    the FID floor). ``fid_seeds`` (>= MIN_SEEDS) seeds per seeded setting: w = 0, the largest w,
    and the lowest-FID w in (0, 1] (chosen on the sweep's seed, measured on fresh ones).
    ``p_uncond``: the training label dropout. ``use_sibling``: compare with guided-diffusion-2021's
    results (at the same n) when cached; otherwise classifier guidance is measured here with
    ``classifier_*`` and ``cg_scales``. ``net_options`` / ``batch_size`` replace the preset's.
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
    fid_seeds: int = MIN_SEEDS
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


def _numbers(row: dict[str, Any]) -> dict[str, Any]:
    """A row read from the strict-JSON results cache, with its None (NaN) values as nan."""
    return {k: math.nan if v is None else v for k, v in row.items()}


def guided_curves(saved: dict[str, Any] | None, n: int) -> dict[str, Any] | None:
    """The classifier-guidance curves, FID floor and seeded settings of guided-diffusion-2021's
    metrics ``saved`` (None values read as nan), or None without them or when its FIDs were
    measured at another sample count than ``n`` (FIDs compare only at equal n)."""
    try:
        m = saved["metrics"]  # type: ignore[index]
        curves = {name: [_numbers(r) for r in rows] for name, rows in m["curves"].items()}
        seeded = {name: m["seeded"][name]["guided"] for name in curves}
        floor = float(m["fid_floor"])
    except (AttributeError, KeyError, TypeError, ValueError):
        return None
    if any(r.get("n") != n for rows in curves.values() for r in rows):
        return None
    quick = saved.get("quick")  # type: ignore[union-attr]
    return {"quick": quick, "curves": curves, "floor": floor, "seeded": seeded}


def pick_small(rows: list[dict[str, Any]]) -> float:
    """The weight in (0, 1] with the lowest FID on the sweep's seed (else the smallest w > 0):
    the small w the claims measure again on fresh seeds."""
    small = [r for r in rows if 0 < r["value"] <= 1.0] or [r for r in rows if r["value"] > 0]
    return float(min(small or rows, key=lambda r: r["fid"])["value"])


class CFG2021(Reproduction):
    NAME = "cfg-2021"
    TITLE = "Classifier-Free Diffusion Guidance (Ho & Salimans, 2021)"
    REFERENCE = (
        "Jonathan Ho and Tim Salimans. *Classifier-Free Diffusion Guidance.* NeurIPS 2021 "
        "Workshop on Deep Generative Models and Downstream Applications, arXiv:2207.12598."
    )
    DEPENDS = (GUIDED,)
    Settings = Settings
    #: About 5 minutes on 2 free CPU cores (the default: 4-5 with the conditional model cached).
    QUICK = {
        "train_steps": 1000, "sampler_steps": 25, "classifier_steps": 1200,
        "classifier_options": {"channels": 16, "channel_mults": [1, 2], "pool": "attention"},
        "cg_scales": (0.0, 1.0, 4.0, 8.0),
    }  # fmt: skip
    SMOKE = {
        "train_steps": 20, "batch_size": 32, "classifier_steps": 20,
        "net_options": TINY_UNET,
        "classifier_options": {"channels": 8, "num_heads": 2, "groups": 4},
        "weights": (0.0, 0.5, 2.0), "cg_scales": (0.0, 2.0), "sampler_steps": 4,
        "n_samples": 40, "grid_weights": (0.0, 2.0),
    }  # fmt: skip
    PAPER_NUMBERS = tuple(PaperNumber(q, v, where, True, _PAPER) for q, v, where in (
        ("FID / IS, ImageNet 64x64, p_uncond = 0.1: w = 0 -> w = 4",
         "1.8 / 53.71 -> 26.22 / 260.2", "Table 1"),
        ("best FID, 64x64, p_uncond = 0.1", "1.55 at w = 0.1 (w = 0: 1.8)", "Table 1"),
        ("FID, 128x128, T = 256: w = 0 -> best", "7.27 -> 2.43 at w = 0.3", "Table 2"),
        ("FID of classifier-guided ADM-G, 128x128", "2.97", "Table 2"),
        ("p_uncond trained; w swept", "0.1, 0.2, 0.5; 0 to 4 by 0.1", "Sec. 4.1-4.2"),
        ("sampling steps T (128x128)", "128, 256, 1024", "Sec. 4.3, Table 2"),
        ("samples per FID and IS", "50000", "Sec. 4.1"),
    ))  # fmt: skip

    def run_experiments(self) -> dict[str, Any]:
        s = self.s
        if not 0.0 < s.p_uncond < 1.0:
            raise ValueError(f"p_uncond must lie in (0, 1), got {s.p_uncond}")
        if s.fid_seeds < MIN_SEEDS:
            raise ValueError(f"fid_seeds must be at least {MIN_SEEDS}, got {s.fid_seeds}")
        self.log(f"training the class-conditional DDPM (p_uncond = {s.p_uncond:g})")
        model, _, summary = self.train(config(s), "ddpm-cond")
        self.lap("diffusion model")
        scorer = Scorer("digits", s.pr_k)
        self.lap("evaluator")
        n = s.n_samples or scorer.test_size
        labels = balanced_labels(n, 10)
        sweep = {"sampler": s.sampler, "steps": s.sampler_steps, "seed": s.sample_seed,
                 "progress": self.progress, "log": self.log}  # fmt: skip
        label = f"classifier-free guidance: {s.sampler} {s.sampler_steps} steps"
        self.log(f"sweeping the guidance weight, {label}")
        rows = guidance_sweep(model, scorer, labels, s.weights, kind="cfg", label=label, **sweep)
        self.lap("sweep w")
        k = s.fid_seeds
        seeds = [s.sample_seed + 1000 * i for i in range(k + 1)]  # seeds[0]: the sweep's

        def measure(value: float, seed: int, kind: str = "cfg", curve: str = label,
                    **extra: Any) -> dict[str, Any]:  # fmt: skip
            return guidance_sweep(model, scorer, labels, [value], kind=kind, label=curve,
                                  **{**sweep, "seed": seed, **extra})[0]  # fmt: skip

        small, top = pick_small(rows), rows[-1]["value"]
        self.log(f"{k} seeds of w = 0, {small:g} and {top:g}")
        seeded = {"w0": scoring.seeded_setting(measure, rows, 0.0, seeds[:k]),
                  "small": scoring.seeded_setting(measure, rows, small, seeds[1:]),
                  "top": scoring.seeded_setting(measure, rows, top, seeds[:k])}  # fmt: skip
        self.lap("seeds w")
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
            cg = {"classifier": classifier, "mode": "score",
                  "model_labels": torch.full_like(labels, int(model.net.num_classes))}  # fmt: skip
            cg_rows = guidance_sweep(model, scorer, labels, s.cg_scales, kind="cg",
                                     label=cg_label, **cg, **sweep)  # fmt: skip
            best = scoring.seeded_setting(lambda v, seed: measure(v, seed, "cg", cg_label, **cg),
                                  cg_rows, scoring.pick_scale(cg_rows), seeds[1:])  # fmt: skip
            here = {"label": cg_label, "rows": cg_rows, "classifier": info, "seeded": best}
            self.lap("classifier guidance")
        else:
            self.log(f"classifier-guidance curves from the {GUIDED} results")
        return {
            "model": model, "summary": summary, "label": label, "rows": rows,
            "seeded": seeded, "sibling": sibling, "here": here, "labels": labels, "n": n,
            "floor": scorer.floor(n), "pr_floor": scorer.pr_floor(),
        }  # fmt: skip

    @staticmethod
    def cg_curves(r: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        """The classifier-guidance curves to compare with (guided-diffusion-2021's or here)."""
        if r["sibling"] is not None:
            return {f"{name} {FROM}": rows for name, rows in r["sibling"]["curves"].items()}
        return {r["here"]["label"]: r["here"]["rows"]}

    @staticmethod
    def cg_best(r: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Classifier guidance's seeded setting with the lowest mean FID, and its curve."""
        if r["sibling"] is None:
            return r["here"]["label"], r["here"]["seeded"]
        mean = {name: scoring.seed_stat(x, "fid")[0] for name, x in r["sibling"]["seeded"].items()}
        name = min(mean, key=lambda x: mean[x] if math.isfinite(mean[x]) else math.inf)
        return f"{name} {FROM}", r["sibling"]["seeded"][name]

    # ------------------------------------------------------------------ claims
    def add_claims(self, report: Report, r: dict[str, Any]) -> None:
        w0, sm, top = r["seeded"]["w0"], r["seeded"]["small"], r["seeded"]["top"]
        k, floor = self.s.fid_seeds, r["floor"]
        da, sa = scoring.seed_diff(top, w0, "accuracy")
        df, sf = scoring.seed_diff(top, w0, "fid")
        dr, sr = scoring.seed_diff(w0, top, "recall")
        report.claim(
            *said(__name__, "trade-off"),
            f"w = 0 -> {top['value']:g} ({k} seeds each): accuracy "
            f"{scoring.plus_minus('accuracy', w0, top, pct=True)}, FID {scoring.plus_minus('fid', w0, top)}, "
            f"recall {scoring.plus_minus('recall', w0, top)} (precision "
            f"{scoring.plus_minus('precision', w0, top)})",
            f"accuracy {da:+.1%} ± {sa:.1%}, {shown(da, sa)}; FID {df:+.1f} ± {sf:.1f}, "
            f"{shown(df, sf)}; recall {-dr:+.3f} ± {sr:.3f}, {shown(dr, sr)}; the accuracy "
            "of an independent clean classifier stands in for IS (8x8 digits have no "
            "Inception features)",
            trade_off(accuracy_gain=da, accuracy_se=sa, fid_rise=df, fid_se=sf, recall_drop=dr,
                      recall_se=sr),  # fmt: skip
        )
        d, se = scoring.seed_diff(w0, sm, "fid")
        report.claim(
            *said(__name__, "small w"),
            f"w = 0 -> {sm['value']:g} (lowest FID in (0, 1] on the sweep's seed; {k} fresh "
            f"seeds): FID {scoring.plus_minus('fid', w0, sm)}",
            f"FID {-d:+.2f} ± {se:.2f}, {shown(d, se)}; noise floor {floor:.2f}, w = 0 at "
            f"{scoring.seed_stat(w0, 'fid')[0] / floor:.2f}x it",
            small_w_improves_fid(fid_gain=d, se=se),
        )
        name, cg = self.cg_best(r)
        fe, fse = scoring.seed_diff(sm, cg, "fid")
        ad, ase = scoring.seed_diff(cg, sm, "accuracy")
        sib, run = r["sibling"], "quick" if (r["sibling"] or {}).get("quick") else "default"
        if sib is not None:
            report.borrow(GUIDED, "the classifier-guidance curves, their FID floor and the seeded "
                          f"FIDs of their chosen scales (its {run} run)")  # fmt: skip
        source = (f"read from the {GUIDED} {run} run's results (another, unconditional network)"
                  if sib is not None else "measured here on the same network's unconditional mode")
        verdict = matches_classifier_guidance(fid_excess=fe, fid_se=fse, accuracy_deficit=ad,
                                              accuracy_se=ase)  # fmt: skip
        report.claim(
            *said(__name__, "matches classifier guidance"),
            f"CFG w = {sm['value']:g}: FID {scoring.plus_minus('fid', sm)}, accuracy "
            f"{scoring.plus_minus('accuracy', sm, pct=True)}; classifier guidance {name}, s = "
            f"{cg['value']:g}: FID {scoring.plus_minus('fid', cg)}, accuracy "
            f"{scoring.plus_minus('accuracy', cg, pct=True)} (its lowest-FID scale above 1, "
            f"{len(cg['seeds'])} fresh seeds)",
            f"CFG - CG: FID {fe:+.2f} ± {fse:.2f}, accuracy {-ad:+.1%} ± {ase:.1%} ("
            + ("similar: neither clearly worse" if verdict == REPRODUCED else
               "not shown: clearly worse, or the noise unknown")
            + f"); the classifier-guidance numbers are {source}; each CFG step costs two "
            "network evaluations",
            verdict,
        )
        ga, gse = scoring.seed_diff(sm, w0, "accuracy")
        ratio = scoring.seed_stat(sm, "fid")[0] / scoring.seed_stat(w0, "fid")[0]
        report.claim(
            *said(__name__, "target"),
            f"w = 0 -> {sm['value']:g} ({k} seeds each): accuracy "
            f"{scoring.plus_minus('accuracy', w0, sm, pct=True)}, FID {scoring.plus_minus('fid', w0, sm)} "
            f"({ratio:.2f}x)",
            f"accuracy {ga:+.1%} ± {gse:.1%}, {shown(ga, gse)}; FID ratio {ratio:.2f} (budget "
            f"{TARGET_FID_RATIO:g})",
            target(accuracy_gain=ga, accuracy_se=gse, fid_ratio=ratio),
            main=False,
        )

    # ------------------------------------------------------------------ sections
    def add_sections(self, report: Report, r: dict[str, Any]) -> None:
        s, rows = self.s, r["rows"]
        report.section("Guidance weight sweep", self.prose("sweep", r))
        report.table(SWEEP_HEADER, sweep_table(rows))
        report.text(self.prose("seeds", r))
        seeded = [(r["label"], x) for x in r["seeded"].values()]
        if r["here"] is not None:
            seeded.append((r["here"]["label"], r["here"]["seeded"]))
        else:
            seeded += [(f"{name} {FROM}", x) for name, x in r["sibling"]["seeded"].items()]
        report.table(
            ["curve", "value", "seeds", "FID per seed", "FID", "accuracy", "precision", "recall"],
            [[name, f"{x['value']:g}", len(x["seeds"]),
              ", ".join(f"{f:.1f}" for f in x["fid"] if f is not None),
              *(scoring.plus_minus(key, x) for key in ("fid", "accuracy", "precision", "recall"))]
             for name, x in seeded],
        )  # fmt: skip
        finite = {name: [x for x in cg if math.isfinite(x["fid"])]
                  for name, cg in self.cg_curves(r).items()}  # fmt: skip
        curves = {r["label"]: [{**x, "symbol": "w"} for x in rows], **finite}
        source = "from guided-diffusion" if r["sibling"] is not None else "measured here"
        report.section("Classifier-free vs classifier guidance", self.prose(source, r))
        if r["sibling"] is None:
            report.table(SWEEP_HEADER, sweep_table(r["here"]["rows"]))
        report.figure(
            tradeoff_figure(curves, r["floor"], "s", "Guidance on digits"),
            "tradeoff.png",
            "Accuracy against FID (left) and precision against recall (right): classifier-free "
            "guidance as w varies, classifier guidance as s varies (the sweeps' seed"
            + (f"; the classifier-guidance curves {FROM}" if r["sibling"] is not None else "")
            + ").",
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
        here, sibling = r["here"], r["sibling"]
        return {
            "params": sum(p.numel() for p in r["model"].parameters()),
            "weights": ", ".join(f"{w:g}" for w in self.s.weights),
            "cg_scales": ", ".join(f"{v:g}" for v in self.s.cg_scales),
            "clf_params": here["classifier"]["parameters"] if here else 0,
            "guided_run": ("quick" if sibling["quick"] else "default") if sibling else "",
            "guided_floor": sibling["floor"] if sibling else float("nan"),
            "from_guided": FROM,
            "significance": SIGNIFICANCE,
        }

    def record_metrics(self, r: dict[str, Any]) -> dict[str, Any]:
        w0, sm = r["seeded"]["w0"], r["seeded"]["small"]
        name, cg = self.cg_best(r)
        ga, gse = scoring.seed_diff(sm, w0, "accuracy")
        ratio = scoring.seed_stat(sm, "fid")[0] / scoring.seed_stat(w0, "fid")[0]
        m: dict[str, Any] = {
            "train": {k: r["summary"].get(k) for k in ("step", "loss", "train_seconds")},
            "n_samples": r["n"], "fid_floor": r["floor"],
            "pr_floor": {"precision": r["pr_floor"][0], "recall": r["pr_floor"][1]},
            "cfg": public_rows(r["rows"]), "seeded": r["seeded"],
            "target": {"w": sm["value"], "accuracy_gain": ga, "accuracy_gain_se": gse,
                       "fid_ratio": ratio, "met": target(accuracy_gain=ga, accuracy_se=gse,
                                                         fid_ratio=ratio) == REPRODUCED},
        }  # fmt: skip
        if r["sibling"] is not None:
            m["classifier_guidance"] = {"source": GUIDED, "quick": r["sibling"]["quick"],
                                        "compared_with": name}  # fmt: skip
        else:
            here = r["here"]
            m["classifier_guidance"] = {
                "source": "measured here", "label": here["label"],
                "classifier": {k: v for k, v in here["classifier"].items() if k != "path"},
                "rows": public_rows(here["rows"]), "seeded": here["seeded"],
            }  # fmt: skip
        self.log(f"target at w = {sm['value']:g}: accuracy {ga:+.1%} ± {gse:.1%}, FID "
                 f"{ratio:.2f}x w = 0")  # fmt: skip
        return m


REPRODUCTION = CFG2021
reproduce = CFG2021.run
