"""Ramesh et al. 2022, "Hierarchical Text-Conditional Image Generation with CLIP Latents"
(DALL·E 2 / unCLIP, arXiv:2204.06125): the reproduction ``dalle2-2022``.

On captioned MNIST digits (:mod:`diffusio.image.captions`), with everything trained here
(:mod:`diffusio.image.unclip`): a tiny CLIP (zero-shot accuracy, retrieval recall), the
diffusion prior (best of two), a regression prior, and the unCLIP decoder (CLIP image embedding
into the time embedding and four context tokens, plus the caption's tokens; embedding dropped
10%, caption 50%). Measured:

* **the prior** (Sec. 5.1, Fig. 8-ish comparison of conditioning signals; Sec. 3): one decoder
  given the caption only, the caption + the text embedding in place of an image embedding ("no
  prior"), the caption + the regression prior's embedding, the caption + the diffusion prior's,
  judged by attribute accuracy, FID and a Fréchet distance in CLIP image-embedding space;
* **diversity** (Sec. 5.2, Fig. 9): per-caption diversity of unCLIP against a directly
  caption-conditioned decoder (the same U-Net, no embedding; GLIDE's role) across guidance
  scales, with FID beside it;
* **image variations** (Sec. 3.1): the decoder given a real image's own embedding.

Models train in ``workers`` processes (one thread each) into the model cache.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..io import json_hash
from ..metrics.stats import mean_se, paired_difference
from .base import Reproduction, said
from .report import PaperNumber, Report, fmt
from .verdicts import claim_rule, win_verdict

__all__ = ["DALLE22022", "REPRODUCTION", "Settings", "reproduce"]

ARMS = ("caption only", "no prior (text embedding)", "regression prior", "diffusion prior")


# --------------------------------------------------------------------------- claim rules
@claim_rule("dalle2-2022/prior-beats-text-embedding",
            supports={"gain": 0.1, "se": 0.02}, contradicts={"gain": 0.0, "se": 0.02})
def prior_beats_text(gain: float, se: float) -> str:
    """Sec. 5.1 / Fig. 8: conditioning the decoder on the prior's image embedding beats passing
    the text embedding in its place: attribute accuracy clearly higher (paired per caption)."""
    return win_verdict(gain, se)


@claim_rule("dalle2-2022/diversity-at-high-guidance",
            supports={"gain": 0.2, "se": 0.03}, contradicts={"gain": -0.1, "se": 0.03})
def diversity(gain: float, se: float) -> str:
    """Sec. 5.2, Fig. 9: at high guidance unCLIP's samples for one caption stay more diverse
    than those of a directly caption-conditioned decoder (paired over captions, clearly)."""
    return win_verdict(gain, se)


@claim_rule("dalle2-2022/diffusion-over-regression-prior",
            supports={"gain": 2.0, "se": 0.3}, contradicts={"gain": -1.0, "se": 0.3})
def diffusion_over_regression(gain: float, se: float) -> str:
    """Sec. 2.1 / 5.1 (the diffusion prior matches or beats the AR one; here the deterministic
    regression prior stands in for a prior that regresses to the mean): the diffusion prior's
    embeddings are clearly closer in distribution (Fréchet distance in CLIP space) to real
    image embeddings."""
    return win_verdict(gain, se)


# --------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class Settings:
    """Every knob of the default run; ``QUICK`` and ``SMOKE`` override some.

    ``n_train`` captioned ``source`` digits at ``canvas``; CLIP: ``clip_steps`` at
    ``clip_batch``, dimension ``clip_dim``; priors: ``prior_steps``; decoders: ``decoder_steps``
    at ``batch_size``, ``channels`` wide. Evaluation: ``n_eval`` test prompts, ``sampler`` with
    ``steps``, decoder guidance ``guidance`` for the prior comparison; the diversity sweep over
    ``scales`` with ``k`` samples for each of ``n_captions`` captions; ``variations`` images x 4."""

    source: str = "mnist-5k"
    canvas: int = 16
    attributes: tuple[str, ...] = ("thickness", "slant")
    n_train: int = 5000
    clip_steps: int = 1500
    clip_batch: int = 128
    clip_dim: int = 64
    prior_steps: int = 3000
    decoder_steps: int = 1200
    batch_size: int = 48
    channels: int = 32
    n_eval: int = 150
    sampler: str = "ddim"
    steps: int = 25
    guidance: float = 3.0
    scales: tuple[float, ...] = (1.0, 3.0, 8.0)
    n_captions: int = 40
    k: int = 5
    variations: int = 8
    judge_steps: int = 1200
    bootstrap: int = 20
    workers: int = 2
    seed: int = 0


def _decoder_job(out_dir: str, images: Any, cond: dict[str, Any], options: dict[str, Any]) -> float:
    """Train one decoder in a worker (one thread); returns its training seconds."""
    import torch

    from ..image.unclip import decoder_training_set, train_decoder
    from .runs import logged_train_seconds

    torch.set_num_threads(1)
    data = decoder_training_set(images, cond.get("image_emb"), cond.get("text_tokens"),
                                cond.get("text_mask"))  # fmt: skip
    train_decoder(out_dir, data, progress=False, save_every=500, **options)
    return logged_train_seconds(out_dir)


def _decode_job(run_dir: str, cond: dict[str, Any], guidance: float,
                options: dict[str, Any]) -> Any:  # fmt: skip
    """Decoded images of one decoder run (a worker job, one thread)."""
    import torch

    from ..image.unclip import decode
    from ..train.runs import load_run

    torch.set_num_threads(1)
    model, _, _ = load_run(run_dir)
    return decode(model, cond, guidance, **options)


class DALLE22022(Reproduction):
    NAME = "dalle2-2022"
    TITLE = "Hierarchical Text-Conditional Image Generation with CLIP Latents (Ramesh et al., 2022)"
    REFERENCE = ("Aditya Ramesh, Prafulla Dhariwal, Alex Nichol, Casey Chu and Mark Chen. "
                 "*Hierarchical Text-Conditional Image Generation with CLIP Latents.* "
                 "arXiv:2204.06125, 2022.")  # fmt: skip
    DEPENDS = ()
    Settings = Settings
    QUICK = {"n_train": 1000, "clip_steps": 200, "prior_steps": 300, "decoder_steps": 200,
             "batch_size": 32, "n_eval": 60, "steps": 12, "scales": (1.0, 5.0),
             "n_captions": 12, "k": 4, "judge_steps": 300, "bootstrap": 10}  # fmt: skip
    SMOKE = {"source": "digits", "canvas": 8, "n_train": 64, "clip_steps": 3, "prior_steps": 3,
             "decoder_steps": 3, "batch_size": 8, "channels": 8, "n_eval": 12, "steps": 2,
             "n_captions": 4, "k": 3, "variations": 2, "judge_steps": 5, "bootstrap": 3,
             "workers": 1, "clip_dim": 16}  # fmt: skip
    PAPER_NUMBERS = (
        PaperNumber("human preference for unCLIP's diversity over GLIDE", "70.5% ± 2.8%",
                    "Tab. 1", verified=False, note="the issue's summary; Tab. 1 not read here"),
        PaperNumber("zero-shot FID on MS-COCO (diffusion prior)", "10.39", "Tab. 2",
                    verified=False, note="not read in the paper here"),
        PaperNumber("decoder condition dropout", "embedding 10%, caption 50%", "App. C",
                    verified=False, note="the issue's summary"),
    )  # fmt: skip

    def _dir(self, label: str, recipe: Any) -> str:
        return str(self.cache.root / f"dalle2-{label}-{json_hash(recipe)}")

    # ------------------------------------------------------------------ experiments
    def run_experiments(self) -> dict[str, Any]:
        with self.worker_pool(self.s.workers) as pool:
            return self._experiments(pool)

    def _clip(self, cset: Any) -> Any:
        """Train (or reload) the CLIP of this run."""
        from ..io import apply_tensors, read_safetensors, write_safetensors
        from ..nets.clip import CLIP, train_clip

        s = self.s
        path = self._dir("clip", [s.clip_steps, s.clip_batch, s.clip_dim, s.seed, self.data_key()])
        file = path + ".safetensors"
        if os.path.isfile(file):
            clip = CLIP.from_captions(cset.captions, dim=s.clip_dim, channels=1)
            apply_tensors(clip, read_safetensors(file)[0], file)
            return clip.eval()
        clip, _ = train_clip(cset.images, cset.captions, s.clip_steps, batch_size=s.clip_batch,
                             seed=s.seed, dim=s.clip_dim)  # fmt: skip
        write_safetensors(file, clip.state_dict())
        return clip

    def data_key(self) -> list[Any]:
        s = self.s
        return [s.source, s.n_train, s.seed, s.canvas, list(s.attributes)]

    def _experiments(self, pool: Any) -> dict[str, Any]:
        from ..image.captions import make_captioned
        from ..image.unclip import clip_features, save_unclip, train_prior, train_regression_prior

        s = self.s
        cset = make_captioned(s.source, s.n_train, s.seed, canvas=s.canvas, attributes=s.attributes)
        clip = self._clip(cset)
        feats = clip_features(clip, cset.images, cset.captions)
        self.lap("CLIP")
        options = {"steps": s.decoder_steps, "batch_size": s.batch_size, "seed": s.seed,
                   "net_options": {"channels": s.channels}}  # fmt: skip
        text = {k: feats[k] for k in ("text_tokens", "text_mask")}
        conds = {"unclip": {"image_emb": feats["image_emb"], **text}, "direct": text}
        dirs = {a: self._dir(f"decoder-{a}", [options, self.data_key(), s.clip_steps, s.clip_dim])
                for a in conds}  # fmt: skip
        jobs = [(dirs[a], cset.images, conds[a], options) for a in conds]
        pending = [pool.submit(_decoder_job, *job) for job in jobs] if pool else None
        prior = train_prior(feats["image_emb"], feats["text_emb"], feats["text_tokens"],
                            feats["text_mask"], steps=s.prior_steps, seed=s.seed)  # fmt: skip
        regression = train_regression_prior(feats["image_emb"], feats["text_emb"],
                                            steps=s.prior_steps, seed=s.seed)  # fmt: skip
        self.lap("priors")
        seconds = [f.result() for f in pending] if pending else [_decoder_job(*j) for j in jobs]
        r: dict[str, Any] = {"runs": dirs, "train_seconds": dict(zip(conds, seconds, strict=True))}
        save_unclip(dirs["unclip"], clip, prior, {"guidance": s.guidance, "steps": s.steps})
        self.lap("decoders")
        self._pool = pool
        r.update(self.evaluate(clip, prior, regression, dirs))
        return r

    def _map(self, fn: Any, jobs: list[tuple]) -> list[Any]:
        return self.map_jobs(getattr(self, "_pool", None), fn, jobs)

    def evaluate(self, clip: Any, prior: Any, regression: Any, dirs: dict[str, str]) -> dict:
        import torch

        from ..image.caption_bench import CaptionBench
        from ..image.unclip import clip_features, decode, sample_prior
        from ..metrics.fid import feature_statistics, frechet_distance
        from ..nets.clip import retrieval_recall, zero_shot_accuracy
        from ..train.runs import load_run

        s = self.s
        bench = CaptionBench.build(s.source, s.canvas, s.attributes, seed=s.seed,
                                   judge_steps=s.judge_steps)  # fmt: skip
        prompts = bench.prompts(s.n_eval)
        f = clip_features(clip, prompts.images, prompts.captions)
        words = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
        out: dict[str, Any] = {"clip": {
            "zero_shot": zero_shot_accuracy(clip, prompts.images,
                                            torch.as_tensor(prompts.labels["digit"]),
                                            [f"a {w}" for w in words]),
            "recall_at_1": retrieval_recall(f["image_emb"], f["text_emb"], 1),
            "recall_at_5": retrieval_recall(f["image_emb"], f["text_emb"], 5)}}  # fmt: skip
        unclip, _, _ = load_run(dirs["unclip"])
        text = {"text_tokens": f["text_tokens"], "text_mask": f["text_mask"]}
        embs = {
            "no prior (text embedding)": f["text_emb"],
            "regression prior": sample_prior(regression, f["text_emb"]),
            "diffusion prior": sample_prior(prior, f["text_emb"], f["text_tokens"], f["text_mask"],
                                            sampler=s.sampler, steps=s.steps, seed=s.seed),
        }  # fmt: skip
        real = feature_statistics(f["image_emb"].double())
        options = {"sampler": s.sampler, "steps": s.steps, "seed": s.seed}
        conds = {}
        for arm in ARMS:
            if arm == "caption only":
                conds[arm] = {"image_emb": torch.zeros_like(f["image_emb"]), **text}
            else:
                conds[arm] = {"image_emb": embs[arm], **text}
        decoded = self._map(_decode_job, [(dirs["unclip"], conds[a], s.guidance, options)
                                          for a in ARMS])  # fmt: skip
        rows = {}
        for arm, x in zip(ARMS, decoded, strict=True):
            e = bench.evaluate(x, prompts, s.bootstrap)
            if arm in embs:
                z = embs[arm].double()
                e["embedding_fd"] = frechet_distance(*feature_statistics(z), *real)
                e["cosine"] = float((z * f["image_emb"].double()).sum(-1).mean())
                e["embedding_fd_se"] = self._fd_se(z, f["image_emb"].double())
            rows[arm] = e
        out["priors"] = rows
        self.lap("prior comparison")
        out["diversity"] = self.diversity(bench, dirs, prior, clip)
        self.lap("diversity sweep")
        var = prompts.images[: s.variations]
        emb = clip_features(clip, var, prompts.captions[: s.variations])["image_emb"]
        reps = emb.repeat_interleave(4, 0)
        blank = {"text_tokens": torch.zeros(len(reps), 1, f["text_tokens"].shape[-1]),
                 "text_mask": torch.zeros(len(reps), 1)}
        x = decode(unclip, {"image_emb": reps, **blank}, s.guidance, s.sampler, s.steps, s.seed)
        digit = bench.judge.predict(x)["digit"]
        same = digit == np.repeat(prompts.labels["digit"][: s.variations], 4)
        out["variations"] = {"sources": var.tolist(), "samples": x.tolist(),
                             "digit_kept": float(same.mean())}  # fmt: skip
        out["real"] = {k: v for k, v in bench.evaluate(prompts.images, prompts, 0).items()
                       if k != "per_image"}  # fmt: skip
        out["floor"] = bench.floor(prompts)
        out["bench"] = bench.describe()
        return out

    def _fd_se(self, z: Any, real: Any) -> float:
        """Bootstrap sd of the embedding Fréchet distance (resampling the generated rows)."""
        from ..image.caption_bench import fid_bootstrap

        return fid_bootstrap(z, real, self.s.bootstrap, self.s.seed)[1]

    def diversity(self, bench: Any, dirs: dict[str, str], prior: Any, clip: Any) -> list:
        """Per-caption diversity (mean pairwise distance of the FID features of the k samples
        of one caption, over the real images' mean distance) and FID, per scale and model."""
        import torch

        from ..image.unclip import clip_features, sample_prior

        s = self.s
        prompts = bench.prompts(s.n_captions, seed=2)
        caps = [c for c in prompts.captions for _ in range(s.k)]
        f = clip_features(clip, None, caps)
        text = {"text_tokens": f["text_tokens"], "text_mask": f["text_mask"]}
        reference = bench.prompts(len(caps), seed=3).images
        feats_ref = bench._features(reference)
        scale_ref = float(torch.cdist(feats_ref, feats_ref).mean())
        z = sample_prior(prior, f["text_emb"], f["text_tokens"], f["text_mask"],
                         sampler=s.sampler, steps=s.steps, seed=s.seed + 1)  # fmt: skip
        grid = [(g, name) for g in s.scales for name in ("unCLIP", "direct")]
        options = {"sampler": s.sampler, "steps": s.steps, "seed": s.seed + 1}
        jobs = [(dirs["unclip"], {"image_emb": z, **text}, g, options) if name == "unCLIP"
                else (dirs["direct"], dict(text), g, options) for g, name in grid]  # fmt: skip
        rows = []
        for (g, name), x in zip(grid, self._map(_decode_job, jobs), strict=True):
            feats = bench._features(x).reshape(s.n_captions, s.k, -1)
            per = [float(torch.cdist(c, c).sum() / (s.k * (s.k - 1))) / scale_ref for c in feats]
            fid, fid_se = bench.fid(x, reference, s.bootstrap)
            rows.append({"scale": g, "model": name, "diversity": float(np.mean(per)),
                         "per_caption": per, "fid": fid, "fid_se": fid_se})  # fmt: skip
        return rows

    # ------------------------------------------------------------------ claims
    def add_claims(self, report: Report, r: dict[str, Any]) -> None:
        mod, p = "dalle2_2022", r["priors"]
        gain, se = paired_difference(p["diffusion prior"]["per_image"],
                                     p["no prior (text embedding)"]["per_image"])  # fmt: skip
        claim, paper = said(mod, "prior")
        report.claim(claim, paper, f"{p['diffusion prior']['attributes']:.3f} vs "
                     f"{p['no prior (text embedding)']['attributes']:.3f} attributes "
                     f"(per-caption gain {gain:+.3f} ± {se:.3f})", fmt(gain),
                     prior_beats_text(gain=gain, se=se))  # fmt: skip
        top = max(self.s.scales)
        rows = {x["model"]: x for x in r["diversity"] if x["scale"] == top}
        d, dse = paired_difference(rows["unCLIP"]["per_caption"], rows["direct"]["per_caption"])
        claim, paper = said(mod, "diversity")
        report.claim(claim, paper, f"s = {top}: {rows['unCLIP']['diversity']:.3f} vs "
                     f"{rows['direct']['diversity']:.3f} (gain {d:+.3f} ± {dse:.3f}; FID "
                     f"{rows['unCLIP']['fid']:.1f} vs {rows['direct']['fid']:.1f})", fmt(d),
                     diversity(gain=d, se=dse))  # fmt: skip
        reg, dif = p["regression prior"], p["diffusion prior"]
        g = reg["embedding_fd"] - dif["embedding_fd"]
        gse = float(np.hypot(reg["embedding_fd_se"], dif["embedding_fd_se"]))
        claim, paper = said(mod, "regression")
        report.claim(claim, paper, f"Fréchet distance {dif['embedding_fd']:.3f} vs "
                     f"{reg['embedding_fd']:.3f} (cosine {dif['cosine']:.3f} vs "
                     f"{reg['cosine']:.3f})", fmt(g),
                     diffusion_over_regression(gain=g, se=gse))  # fmt: skip

    # ------------------------------------------------------------------ sections
    def add_sections(self, report: Report, r: dict[str, Any]) -> None:
        report.section("CLIP and the priors", self.prose("priors", r))
        rows = []
        for arm in ARMS:
            e = r["priors"][arm]
            rows.append([arm, fmt(e["attributes"]), fmt(e["digit"]), fmt(e["all"]),
                         f"{e['fid']:.2f} ± {e['fid_se']:.2f}",
                         fmt(e.get("embedding_fd")), fmt(e.get("cosine"))])  # fmt: skip
        rows.append(["real images", fmt(r["real"]["attributes"]), fmt(r["real"]["digit"]),
                     fmt(r["real"]["all"]), "0", "0", "1"])  # fmt: skip
        report.table(["decoder conditioned on", "attributes", "digit", "all asked", "FID",
                      "embedding FD", "cosine to true"], rows)  # fmt: skip
        report.section("Diversity against guidance", self.prose("diversity", r))
        report.table(["s", "model", "per-caption diversity", "FID"],
                     [[x["scale"], x["model"], fmt(x["diversity"]),
                       f"{x['fid']:.2f} ± {x['fid_se']:.2f}"] for x in r["diversity"]])  # fmt: skip
        report.figure(self.diversity_figure(r), "diversity.png",
                      "Per-caption diversity against FID as the guidance scale grows (labels: s), "
                      "unCLIP vs the directly caption-conditioned decoder.")  # fmt: skip
        report.section("Image variations", self.prose("variations", r))
        report.figure(self.variation_figure(r), "variations.png",
                      "Image variations: each row a test digit (left) and four decodings of its "
                      "CLIP image embedding (no caption).")  # fmt: skip

    def diversity_figure(self, r: dict[str, Any]) -> Any:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(4.6, 3.4))
        for name in ("unCLIP", "direct"):
            rows = [x for x in r["diversity"] if x["model"] == name]
            ax.plot([x["fid"] for x in rows], [x["diversity"] for x in rows], marker="o", label=name)
            for x in rows:
                ax.annotate(f"s={x['scale']:g}", (x["fid"], x["diversity"]), fontsize=6)
        ax.set_xlabel("FID (digit features)"), ax.set_ylabel("per-caption diversity")
        ax.legend(fontsize=7)
        fig.tight_layout()
        return fig

    def variation_figure(self, r: dict[str, Any]) -> Any:
        from ..image.figures import image_rows_figure

        src = np.asarray(r["variations"]["sources"])
        var = np.asarray(r["variations"]["samples"]).reshape(len(src), 4, *src.shape[1:])
        rows = {f"digit {i + 1}": np.concatenate([src[i : i + 1], var[i]]) for i in range(len(src))}
        return image_rows_figure(rows, ["source", "variations", "", "", ""])

    def text_values(self, r: dict[str, Any]) -> dict[str, Any]:
        c = r["clip"]
        return {"runs": r["runs"], "floor": f"{r['floor']:.2f}",
                "minutes": {k: f"{v / 60:.1f}" for k, v in r["train_seconds"].items()},
                "zero_shot": f"{c['zero_shot']:.3f}", "r1": f"{c['recall_at_1']:.3f}",
                "r5": f"{c['recall_at_5']:.3f}",
                "kept": f"{r['variations']['digit_kept']:.3f}"}  # fmt: skip

    def record_metrics(self, r: dict[str, Any]) -> dict[str, Any]:
        priors = {a: {k: v for k, v in e.items() if k != "per_image"} for a, e in r["priors"].items()}
        div = r["diversity"]
        return {"runs": r["runs"], "train_seconds": r["train_seconds"], "clip": r["clip"],
                "priors": priors, "diversity": div, "real": r["real"], "floor": r["floor"],
                "variations_digit_kept": r["variations"]["digit_kept"],
                "bench": r["bench"], "mean_diversity": {
                    name: mean_se([x["diversity"] for x in div if x["model"] == name])[0]
                    for name in ("unCLIP", "direct")}}  # fmt: skip


REPRODUCTION = DALLE22022
reproduce = DALLE22022.run
