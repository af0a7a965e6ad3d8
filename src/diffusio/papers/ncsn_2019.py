"""Song & Ermon 2019, "Generative Modeling by Estimating Gradients of the Data Distribution"
(NCSN; NeurIPS 2019, arXiv:1907.05600): the reproduction ``ncsn-2019``, on 2-D data.

The paper's Figure 3 with the exact score of ``1/5 N((-5,-5), I) + 4/5 N((5,5), I)`` from a
uniform start: plain Langevin keeps the initial split, annealed Langevin (Algorithm 1) recovers
the weights (the heavy mode's weight with its binomial se, :func:`diffusio.toy.scorer.weight_row`).
Ours: an NCSN (a TimeMLP for the RefineNet, DSM over the ladder, eq. 5-6) on that mixture and on a
2-D toy (SW and MMD^2 against fresh data and their noise floors). Steps as the reference code's
(:func:`diffusio.toy.sweep.langevin`). Every verdict comes from a rule registered below.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from torch import Tensor

from ..core.processes import make_process
from ..data.normalize import Standardizer
from ..data.toys import sample_toy
from ..metrics.stats import binomial_se
from ..oracle import GaussianMixture
from ..plotting import scatter_panels
from ..toy.data import frozen_split, max_pairwise_distance, standardized_mixture, uniform_box
from ..toy.figures import score_field_figure
from ..toy.score_error import score_errors, score_in_data_units
from ..toy.scorer import finite_rows, floor_scores, two_sample_metrics, weight_row
from ..toy.sweep import langevin
from ..train.config import TrainConfig
from .base import Reproduction
from .report import PaperNumber, Report, fmt
from .verdicts import FLOOR_PARTLY, NOT, PARTLY, REPRODUCED, SIGNIFICANCE, claim_rule

__all__ = ["REPRODUCTION", "NCSN2019", "Settings", "paper_mixture", "reproduce"]

PAPER_SAMPLES = 1280  # samples per sampler in the paper's Figure 3 (reference code)
METRIC_NAMES = {"sliced_wasserstein": "sw", "mmd": "mmd"}  # metrics.json key -> scorer key


@dataclass(frozen=True)
class Settings:
    """Mixture, box, ladder, T and plain step are the reference code's Figure 3 (the ladder ends
    at 0.05: our VE marginals convolve the data with N(0, sigma^2)); quick: smaller sizes."""

    means: tuple[tuple[float, float], ...] = ((5.0, 5.0), (-5.0, -5.0))
    weights: tuple[float, ...] = (0.8, 0.2)
    box: float = 8.0
    levels: int = 10
    sigma_max: float = 20.0
    sigma_min: float = 0.05
    steps_per_level: int = 100
    step_ratio: float = 0.2
    long_steps: tuple[int, ...] = (300, 1000, 3000)
    long_step_ratio: float = 0.1
    plain_step: float = 0.05
    plain_long_factor: int = 10
    n_exact: int = 5000
    n_train: int = 20_000
    prediction: str = "score"
    net_options: dict[str, Any] = field(default_factory=lambda: {
        "hidden": 128, "depth": 3, "embedding": "fourier"})  # fmt: skip
    batch_size: int = 256
    lr: float = 2e-3
    mixture_steps: int = 8000
    toy: str = "swissroll"
    toy_steps: int = 10_000
    toy_sigma_min: float = 0.01
    toy_ablation: tuple[str, ...] = ("eps",)
    n_learned: int = 2000
    mmd_bandwidth: float = 0.2
    null_draws: int = 8
    seed: int = 0

    @property
    def plain_steps(self) -> int:
        """Plain Langevin gets the annealed sampler's budget of score evaluations, L * T."""
        return self.levels * self.steps_per_level


# --------------------------------------------------------------------------- building blocks
def paper_mixture(s: Settings) -> GaussianMixture:
    """The paper's Figure-3 mixture: unit-variance modes with unequal weights."""
    return GaussianMixture([list(m) for m in s.means], [1.0] * len(s.means), list(s.weights))


def ncsn_config(s: Settings, data: str, steps: int, sigma_min: float, sigma_max: float,
                prediction: str | None = None) -> TrainConfig:  # fmt: skip
    """An NCSN: VE ladder of ``levels`` geometric sigmas, DSM with ``lambda(sigma) = sigma^2``
    (eq. 6), sigma uniform over the ladder, a TimeMLP, AdamW."""
    return TrainConfig(
        data=data, n_data=None, process="ve", process_options={
            "sigma_min": float(sigma_min), "sigma_max": float(sigma_max), "num_steps": s.levels},
        prediction=prediction or s.prediction, weighting="sigma2", time_distribution="discrete",
        net="mlp", net_options=dict(s.net_options), batch_size=s.batch_size, steps=steps,
        lr=s.lr, warmup=100, lr_decay="cosine", ema_decay=0.995, log_every=50, save_every=0,
        seed=s.seed, description=f"ncsn-2019 {data}",
    )  # fmt: skip


@dataclass
class Run:
    """One set of samples and how it was made (``evals``: score evaluations per sample)."""

    label: str
    score: str
    how: str
    evals: int
    samples: Tensor


def weight_rows(mixture: GaussianMixture, runs: list[Run]) -> list[dict[str, Any]]:
    """Per run: how it was made and the weight of the heavy mode with its standard error."""
    return [{"label": run.label, "score": run.score, "how": run.how, "evals": run.evals,
             **weight_row(mixture, run.samples)} for run in runs]  # fmt: skip


def row(rows: list[dict[str, Any]], label: str, score: str) -> dict[str, Any]:
    return next(r for r in rows if r["label"] == label and r["score"] == score)


def parameterization(prediction: str) -> str:
    names = {"score": "net outputs the score, as NCSN", "eps": "s = -net / sigma, as NCSNv2"}
    return names.get(prediction, f"net predicts {prediction}")


# --------------------------------------------------------------------------- claim rules
def recovered(w: float, se: float, truth: float) -> bool:
    """Weight ``w`` (binomial se ``se``) is not clearly (SIGNIFICANCE se) farther from ``truth``
    than the paper's Figure 3 could see: SIGNIFICANCE binomial se at its PAPER_SAMPLES."""
    tol = SIGNIFICANCE * binomial_se(truth, PAPER_SAMPLES)
    return math.isfinite(se) and abs(w - truth) - tol <= SIGNIFICANCE * se


_W, _L = {"w": 0.79, "se": 0.006, "truth": 0.8}, {"z_plain": -40.0}  # Figure 3's numbers
_T = {"sw_z": 0.5, "mmd_z": 1.0, "sw_ratio": 1.0, "diverged": 0}  # samples at the floor


@claim_rule("ncsn-2019/langevin-wrong-weights", supports={**_L, "z_long": -40.0},
            contradicts={**_L, "z_long": -1.5})  # fmt: skip
def langevin_wrong_weights(z_plain: float, z_long: float) -> str:
    """Plain Langevin with the exact score gets the weights wrong (Sec. 3.2.2, Fig. 3b): the
    weight's z = (w - truth) / binomial se beyond SIGNIFICANCE at both budgets."""
    return REPRODUCED if min(abs(z_plain), abs(z_long)) > SIGNIFICANCE else NOT


@claim_rule("ncsn-2019/annealed-recovers-weights", supports=_W, contradicts={**_W, "w": 0.7})
def annealed_recovers_weights(w: float, se: float, truth: float) -> str:
    """Annealed Langevin with the exact score recovers the weights (Fig. 3c): :func:`recovered`."""
    return REPRODUCED if recovered(w, se, truth) else NOT


@claim_rule("ncsn-2019/learned-score-weights", supports={**_W, **_L},
            contradicts={**_W, "z_plain": 1.0})  # fmt: skip
def learned_score_weights(w: float, se: float, truth: float, z_plain: float) -> str:
    """Ours: with a learned NCSN score annealed Langevin recovers the weights (:func:`recovered`)
    and plain Langevin is clearly off them (``|z_plain| > SIGNIFICANCE``)."""
    return REPRODUCED if recovered(w, se, truth) and abs(z_plain) > SIGNIFICANCE else NOT


@claim_rule("ncsn-2019/toy-samples", supports=_T, contradicts={**_T, "sw_z": 30.0, "sw_ratio": 3.0})
def toy_samples(sw_z: float, mmd_z: float, sw_ratio: float, diverged: int) -> str:
    """Ours: NCSN samples at both metrics' noise floor (within SIGNIFICANCE floor sds) with none
    diverged; partly when sliced W is within FLOOR_PARTLY times its floor's mean; else not."""
    if diverged == 0 and sw_z <= SIGNIFICANCE and mmd_z <= SIGNIFICANCE:
        return REPRODUCED
    return PARTLY if sw_ratio <= FLOOR_PARTLY else NOT


def _w(r: dict[str, Any]) -> str:
    return f"{r['weight']:.3f} ± {r['se']:.3f}"


def _gap(r: dict[str, Any], truth: float, tol: float | None = None) -> str:
    bound = "" if tol is None else f"; bound for recovery ±{tol + SIGNIFICANCE * r['se']:.3f}"
    return f"{r['weight'] - truth:+.3f} ({r['z']:+.1f} se{bound})"


WEIGHT_HEADER = ["samples", "score", "sampler settings", "score evals / sample", "weight of 0.8 "
                 "mode", "std. error", "(w - 0.8) / se", "off-mode fraction", "diverged"]
WEIGHT_KEYS = ("label", "score", "how", "evals", "weight", "se", "z", "off_mode", "diverged")


def weights_figure(result: dict[str, Any], n: int, box: float, title: str) -> Any:
    """The paper's Figure 3: a scatter panel per run (the first ``n``), titled with its weight."""
    panels = [(f"{run.label}{f' ({run.score} score)' if run.score != '-' else ''}\n"
               f"w(0.8 mode) = {r['weight']:.3f} ± {r['se']:.3f}", run.samples)
              for run, r in zip(result["runs"][:n], result["rows"][:n], strict=True)]  # fmt: skip
    return scatter_panels(panels, ncols=min(len(panels), 3), lim=box + 0.5, suptitle=title)


_CODE = "official code (ermongroup/ncsn): "
PAPER_NUMBERS = tuple(PaperNumber(*row) for row in (
    ("inception score, CIFAR-10", "8.87", "abstract", True, "the paper's abstract (NeurIPS pages)"),
    ("FID, CIFAR-10", "25.32", "Sec. 1, Table 1", False, "the paper's text past the abstract not "
     "reached by search; paperswithcode and a page quoting its Sec. 1 give 25.32"),
    ("noise ladder and training", "L = 10, geometric sigma 1 -> 0.01; lambda(sigma) = sigma^2; "
     "Adam, lr 1e-3, batch 128, 200k steps", "experiments", True, _CODE + "configs/anneal.yml"),
    ("annealed Langevin (Algorithm 1)", "T = 100 per level, eps = 2e-5, alpha_i = eps sigma_i^2 "
     "/ sigma_L^2", "experiments", True, _CODE + "runners/anneal_runner.py"),
    ("Figure 3", "1/5 N((-5,-5), I) + 4/5 N((5,5), I); 1280 samples from U[-8, 8]^2; sigma 20 "
     "-> 1 (10 levels), 100 steps each, lr 0.1", "Sec. 3.2.2, Fig. 3", True,
     _CODE + "models/gmm.py GMMDistAnneal, runners/toy_runner.py annealed_sampling_exp"),
))  # fmt: skip


# --------------------------------------------------------------------------- the reproduction
class NCSN2019(Reproduction):
    NAME = "ncsn-2019"
    TITLE = "Generative Modeling by Estimating Gradients of the Data Distribution (Song & Ermon, 2019)"
    REFERENCE = ("Yang Song and Stefano Ermon. *Generative Modeling by Estimating Gradients of "
                 "the Data Distribution.* NeurIPS 2019, arXiv:1907.05600 (NCSN).")  # fmt: skip
    Settings = Settings
    QUICK = {"n_exact": 2000, "long_steps": (300, 1000), "plain_long_factor": 3,
             "mixture_steps": 3000, "toy_steps": 4000, "toy_ablation": (), "n_learned": 1000}
    SMOKE = {"n_exact": 300, "steps_per_level": 20, "long_steps": (40,), "plain_long_factor": 2,
             "n_train": 2000, "mixture_steps": 30, "toy_steps": 30, "toy_ablation": ("eps",),
             "n_learned": 200, "null_draws": 3}  # fmt: skip
    PAPER_NUMBERS = PAPER_NUMBERS

    def run_experiments(self) -> dict[str, Any]:
        exact = self.exact_experiment()
        self.lap("exact-score samplers")
        learned = self.learned_experiment()
        self.lap("NCSN on the mixture")
        toy = self.toy_experiment()
        self.lap(f"NCSN on the {self.s.toy}")
        return {"exact": exact, "learned": learned, "toy": toy}

    def exact_experiment(self) -> dict[str, Any]:
        """Figure 3: exact samples, plain and annealed Langevin with the exact score."""
        s = self.s
        mix = paper_mixture(s)
        ladder = make_process("ve", sigma_min=s.sigma_min, sigma_max=s.sigma_max, num_steps=s.levels)
        model = mix.model(ladder, prediction="score")
        x0 = uniform_box(s.n_exact, s.box, seed=s.seed + 1)
        long_plain, T = s.plain_steps * s.plain_long_factor, s.steps_per_level
        runs = [
            Run("exact samples", "-", "i.i.d. from p", 0, mix.sample(s.n_exact, seed=s.seed + 2)),
            Run("initialisation", "-", f"U[-{s.box:g}, {s.box:g}]^2", 0, x0),
            Run("Langevin", "exact", f"{s.plain_steps} steps, a = {s.plain_step:g}",
                s.plain_steps, langevin(model, x0, 1, s.plain_steps, s.seed + 3, step_size=s.plain_step)),
            Run(f"Langevin, {s.plain_long_factor}x steps", "exact",
                f"{long_plain} steps, a = {s.plain_step:g}", long_plain,
                langevin(model, x0, 1, long_plain, s.seed + 4, step_size=s.plain_step)),
            Run("annealed Langevin", "exact",
                f"L = {s.levels}, T = {T}, eps = {s.step_ratio:g} sigma_L^2", s.levels * T,
                langevin(model, x0, s.levels, T, s.seed + 5, ratio=s.step_ratio)),
        ]  # fmt: skip
        for k, T_long in enumerate(s.long_steps):
            self.log(f"  annealed Langevin with T = {T_long} steps per level")
            runs.append(Run(f"annealed Langevin, T = {T_long}", "exact",
                            f"L = {s.levels}, T = {T_long}, eps = {s.long_step_ratio:g} sigma_L^2",
                            s.levels * T_long, langevin(model, x0, s.levels, T_long, s.seed + 6 + k,
                                                        ratio=s.long_step_ratio)))
        frozen = [(sg, frozen_split(mix, sg)) for sg in ladder.discrete().sigmas.flip(0).tolist()]
        return {"runs": runs, "rows": weight_rows(mix, runs), "frozen": frozen}  # fmt: skip

    def learned_experiment(self) -> dict[str, Any]:
        """Figure 3 with an NCSN's score (ladder: the exact one over the data's scale), the exact
        score through the same sampler, and the learned score's error per level."""
        s = self.s
        mix = paper_mixture(s)
        data = mix.sample(s.n_train, seed=s.seed).to(torch.float32)
        scale = float(Standardizer.fit(data).std.pow(2).mean().sqrt())  # one length scale
        config = ncsn_config(s, "mixture-0.8-0.2", s.mixture_steps, s.sigma_min / scale, s.sigma_max / scale)
        model, normalizer, summary = self.train(config, "mixture", data=data)
        oracle = standardized_mixture(mix, normalizer).model(model.process, prediction="score")
        xn = normalizer.transform(uniform_box(s.n_learned, s.box, seed=s.seed + 11).float())
        T = s.steps_per_level
        how = f"L = {s.levels}, T = {T}, eps = {s.step_ratio:g} sigma_L^2"

        def back(x: Tensor) -> Tensor:
            return normalizer.inverse(x.to(torch.float32)).to(torch.float64)

        self.log("  sampling with the learned and the exact score")
        runs = [
            Run("training data", "-", f"{s.n_learned} of {s.n_train} samples", 0, data[: s.n_learned]),
            Run("Langevin", "learned", f"{s.plain_steps} steps, a = {s.plain_step:g}",
                s.plain_steps, back(langevin(model, xn, 1, s.plain_steps, s.seed + 12,
                                             step_size=s.plain_step / scale**2))),
            Run("annealed Langevin", "learned", how, s.levels * T,
                back(langevin(model, xn, s.levels, T, s.seed + 13, ratio=s.step_ratio))),
            Run("annealed Langevin", "exact", how, s.levels * T,
                back(langevin(oracle, xn.double(), s.levels, T, s.seed + 13, ratio=s.step_ratio))),
        ]  # fmt: skip
        fresh = normalizer.transform(mix.sample(4000, seed=s.seed + 14).float()).double()
        box = normalizer.transform(uniform_box(4000, s.box, seed=s.seed + 15).float()).double()
        errors = score_errors(model, oracle, fresh, box, s.seed)
        return {"mixture": mix, "model": model, "oracle": oracle, "normalizer": normalizer,
                "summary": summary, "runs": runs, "rows": weight_rows(mix, runs),
                "errors": errors, "sigmas_data": [e["sigma"] * scale for e in errors]}  # fmt: skip

    def toy_experiment(self) -> dict[str, Any]:
        """NCSNs on the 2-D toy (then ``toy_ablation``), sampled from uniform noise."""
        s = self.s
        data = sample_toy(s.toy, s.n_train, seed=s.seed)
        normalized = Standardizer.fit(data).transform(data)
        sigma_max = round(max_pairwise_distance(normalized), 1)
        half_width = math.ceil(float(normalized.abs().max()) * 2) / 2
        metrics, reference = two_sample_metrics(s.mmd_bandwidth), partial(sample_toy, s.toy)
        variants = []
        for prediction in (s.prediction, *s.toy_ablation):
            self.log(f"  {s.toy}: network predicts {prediction}")
            config = ncsn_config(s, s.toy, s.toy_steps, s.toy_sigma_min, sigma_max, prediction)
            label = s.toy if prediction == s.prediction else f"{s.toy}-{prediction}"
            model, normalizer, summary = self.train(config, label, data=data)
            x_init = uniform_box(s.n_learned, half_width, seed=s.seed + 21, dtype=model.dtype)
            x = langevin(model, x_init, s.levels, s.steps_per_level, s.seed + 22, ratio=s.step_ratio)
            samples, diverged = finite_rows(normalizer.inverse(x))
            found = floor_scores(samples, reference, metrics, s.null_draws)
            scores = {name: found[key] for name, key in METRIC_NAMES.items()}
            variants.append({"prediction": prediction, "summary": summary, "sigma_max": sigma_max,
                             "half_width": half_width, "samples": samples, "diverged": diverged,
                             "metrics": scores})
        return {"variants": variants, "reference": reference(s.n_learned, 1000)}

    # ------------------------------------------------------------------ claims
    def add_claims(self, report: Report, r: dict[str, Any]) -> None:
        s, rows, l_rows = self.s, r["exact"]["rows"], r["learned"]["rows"]
        truth, tol = float(s.weights[0]), SIGNIFICANCE * binomial_se(s.weights[0], PAPER_SAMPLES)
        init, plain = row(rows, "initialisation", "-"), row(rows, "Langevin", "exact")
        plain_long = row(rows, f"Langevin, {s.plain_long_factor}x steps", "exact")
        ann, ann_long = (row(rows, label, "exact") for label in
                         ("annealed Langevin", f"annealed Langevin, T = {s.long_steps[-1]}"))  # fmt: skip
        report.claim(
            "Langevin dynamics with the exact score gets the relative weights of the modes wrong",
            "Fig. 3(b): visibly wrong weights for the 0.8/0.2 mixture",
            f"w = {_w(plain)} ({plain['evals']} steps), {_w(plain_long)} ({plain_long['evals']} "
            f"steps); the uniform start puts {init['weight']:.3f} on the heavy mode's side",
            f"{_gap(plain, truth)}; {_gap(plain_long, truth)} with {s.plain_long_factor}x steps",
            langevin_wrong_weights(z_plain=plain["z"], z_long=plain_long["z"]))
        report.claim(
            "Annealed Langevin dynamics with the exact score recovers the weights",
            f"Fig. 3(c): weights recovered faithfully ({PAPER_SAMPLES} samples: ±{tol:.3f} at 2 se)",
            f"w = {_w(ann)} (T = {s.steps_per_level}, the paper's budget); {_w(ann_long)} (T = "
            f"{s.long_steps[-1]}, eps = {s.long_step_ratio:g} sigma_L^2)",
            f"{_gap(ann, truth, tol)} at the paper's budget; {_gap(ann_long, truth)} with more steps",
            annealed_recovers_weights(w=ann["weight"], se=ann["se"], truth=truth))
        l_plain, l_ann = row(l_rows, "Langevin", "learned"), row(l_rows, "annealed Langevin", "learned")
        o_ann = row(l_rows, "annealed Langevin", "exact")
        report.claim(
            "An NCSN (scores learned by DSM over a geometric sigma ladder, eq. 6) sampled by "
            "annealed Langevin recovers the weights; Langevin with its score does not",
            "the NCSN recipe (Sec. 3-4); Figure 3 uses exact scores only",
            f"annealed w = {_w(l_ann)} (exact score, same sampler: {_w(o_ann)}); plain {_w(l_plain)}",
            f"annealed {_gap(l_ann, truth, tol)}; plain {_gap(l_plain, truth)}",
            learned_score_weights(w=l_ann["weight"], se=l_ann["se"], truth=truth,
                                  z_plain=l_plain["z"]), main=False)  # fmt: skip
        main = r["toy"]["variants"][0]
        sw, dm = (main["metrics"][k] for k in METRIC_NAMES)
        ratio = sw["value"] / sw["null_mean"]
        report.claim(
            "NCSN with annealed Langevin samples the data distribution (2-D stand-in)",
            "samples comparable to GANs (CIFAR-10: Inception 8.87, FID 25.32)",
            f"{s.toy}, {s.n_learned} samples: sliced W2 {sw['value']:.4f} (exact: "
            f"{sw['null_mean']:.4f} ± {sw['null_std']:.4f}), MMD^2 {dm['value']:.2e} (exact: "
            f"{dm['null_mean']:.1e} ± {dm['null_std']:.1e}); {main['diverged']} diverged",
            f"SW z = {sw['z']:.1f} ({ratio:.2f}x the floor), MMD z = {dm['z']:.1f}; at the floor:"
            f" z <= {SIGNIFICANCE:g} and none diverged; 2-D data, not images",
            toy_samples(sw_z=sw["z"], mmd_z=dm["z"], sw_ratio=ratio, diverged=main["diverged"]),
            main=False)

    # ------------------------------------------------------------------ sections
    def add_sections(self, report: Report, r: dict[str, Any]) -> None:
        s, exact, learned, toy = self.s, r["exact"], r["learned"], r["toy"]
        report.section("Exact score: Langevin vs annealed Langevin (Figure 3)",
                       self.prose("exact score", r))  # fmt: skip
        report.table(WEIGHT_HEADER, [[x[k] for k in WEIGHT_KEYS] for x in exact["rows"]])
        report.text(self.prose("frozen split", r))
        report.table(["sigma", "heavy-mode side mass if frozen at sigma"],
                     [[sigma, mass] for sigma, mass in exact["frozen"]])  # fmt: skip
        report.figure(weights_figure(exact, 5, s.box, "Exact score (cf. the paper's Figure 3)"),
                      "fig3_exact_score.png", "Figure 3 redone: exact samples, the uniform start, "
                      "plain Langevin (twice), annealed Langevin at the paper's budget.")
        report.section("Learned score: an NCSN trained by denoising score matching",
                       self.prose("learned score", r))  # fmt: skip
        report.table(WEIGHT_HEADER, [[x[k] for k in WEIGHT_KEYS] for x in learned["rows"]])
        report.text(self.prose("score error", r))
        report.table(["sigma (data units)", "rel. error on p_sigma", "rel. error on the box"],
                     [[sg, e["data"], e["box"]] for sg, e in
                      zip(learned["sigmas_data"], learned["errors"], strict=True)])  # fmt: skip
        report.figure(weights_figure(learned, 3, s.box, "Learned NCSN score (same mixture)"),
                      "fig3_learned_score.png", "Training data, plain Langevin and annealed "
                      "Langevin with the learned score.")  # fmt: skip
        report.figure(self.score_field(learned), "score_field.png",
                      "Directions of the exact and the learned score at the largest, a middle "
                      "and the smallest noise level.")  # fmt: skip
        report.section(f"Samples on a 2-D toy ({s.toy})", self.prose("toy", r))
        report.table(["network", "train seconds", "final loss", "metric", "NCSN vs data", "floor",
                      "null mean", "null std", "z", "diverged"], [
            [parameterization(v["prediction"]), v["summary"]["train_seconds"], v["summary"].get("loss"),
             "sliced W2" if name == "sliced_wasserstein" else f"MMD^2, h = {s.mmd_bandwidth}",
             m["value"], m["floor"], m["null_mean"], m["null_std"], m["z"], v["diverged"]]
            for v in toy["variants"] for name, m in v["metrics"].items()])  # fmt: skip
        panels = [(f"{s.toy}: fresh data", toy["reference"])] + [
            (f"NCSN ({parameterization(v['prediction'])})", v["samples"]) for v in toy["variants"]]
        report.figure(scatter_panels(panels, ncols=len(panels)), "toy_samples.png",
                      f"{s.toy}: fresh data and NCSN samples.")  # fmt: skip

    def score_field(self, learned: dict[str, Any]) -> Any:  # exact and learned, data units
        sched, norm = learned["model"].process.discrete(), learned["normalizer"]
        levels = [(float(sched.times[i]), f"sigma = {learned['sigmas_data'][i]:.3g}")
                  for i in (len(sched) - 1, len(sched) // 2, 0)]  # fmt: skip
        fields = {"exact": score_in_data_units(learned["oracle"], norm),
                  "learned": score_in_data_units(learned["model"], norm)}  # fmt: skip
        return score_field_figure(fields, levels, self.s.box,
                                  learned["mixture"].sample(600, seed=self.s.seed + 31))

    # ------------------------------------------------------------------ metrics and text
    def record_metrics(self, r: dict[str, Any]) -> dict[str, Any]:
        exact, learned = r["exact"], r["learned"]

        def summary(x: dict[str, Any]) -> dict[str, Any]:
            return {k: x[k] for k in ("step", "loss", "train_seconds", "run_dir") if k in x}

        m: dict[str, Any] = {
            "exact.weights": exact["rows"],
            "exact.frozen_split": [{"sigma": sg, "mass": w} for sg, w in exact["frozen"]],
            "learned.weights": learned["rows"],
            "learned.score_errors": [{"sigma_data": sd, **e} for sd, e in
                                     zip(learned["sigmas_data"], learned["errors"], strict=True)],
            "learned.train": summary(learned["summary"]),
        }  # fmt: skip
        for v in r["toy"]["variants"]:
            key = f"toy.{v['prediction']}"
            m.update({f"{key}.train": summary(v["summary"]), f"{key}.sigma_max": v["sigma_max"],
                      f"{key}.diverged": v["diverged"], **{f"{key}.{name}": value for name,
                      value in v["metrics"].items()}})  # fmt: skip
        return m

    def text_values(self, r: dict[str, Any]) -> dict[str, Any]:
        s, main, summary = self.s, r["toy"]["variants"][0], r["learned"]["summary"]
        return {
            "params": f"{sum(p.numel() for p in r['learned']['model'].parameters()):,}",
            "toy_sigma_max": f"{main['sigma_max']:g}", "half_width": f"{main['half_width']:g}",
            "ablation": "".join(f", and again with {parameterization(p)}" for p in s.toy_ablation),
            "train_steps": summary["step"], "train_seconds": f"{summary['train_seconds']:.0f}",
            "final_loss": fmt(summary.get("loss")), "n_train": f"{s.n_train:,}",
            "net": ", ".join(f"{k} {v}" for k, v in s.net_options.items()), "paper_samples":
            f"{PAPER_SAMPLES:,}", "significance": SIGNIFICANCE,
        }  # fmt: skip


REPRODUCTION = NCSN2019
reproduce = NCSN2019.run
