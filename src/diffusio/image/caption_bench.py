"""One evaluation bench for every text-to-image model: prompts, attribute accuracy, FID, saturation.

Imagen (Saharia et al. 2022, Sec. 4.1-4.2), latent diffusion (Rombach et al. 2022) and DALL·E 2
(Ramesh et al. 2022) report FID and the CLIP score of samples for held-out captions. Here both
are measured on the captioned digits of :mod:`diffusio.image.captions`:

* **prompts** (:meth:`CaptionBench.prompts`): captions of the *test* split (digits no model was
  trained on), in the training vocabulary or the held-out paraphrase vocabulary ("bold",
  "italic", "upper left"...);
* **attribute accuracy** (the CLIP-score analogue that cannot be gamed): the
  :class:`~diffusio.image.judge.AttributeJudge` re-measures what each caption asked for --
  ``digit`` (its classifier), ``attributes`` (every other asked attribute, pooled over the
  (image, attribute) pairs), ``all`` (the fraction of images showing everything asked for);
* **FID** against the real test images of the same prompts (the ``mnist-5k`` feature
  classifier of :mod:`diffusio.metrics.fid` at the bench's canvas; comparable only within one
  bench), and ``floor``, the FID of a second real captioned set of the same size;
* **saturation**: the fraction of pixels at the range's ends (|x| >= 0.98), with that of the
  real images beside it (digits have a -1 background, so the real fraction is large too).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["SATURATED", "CaptionBench", "fid_bootstrap", "saturated_fraction"]

#: |x| at or above this counts as a saturated pixel.
SATURATED = 0.98


def saturated_fraction(x: Tensor) -> float:
    """Fraction of the pixels of ``x`` (in [-1, 1]) with |x| >= :data:`SATURATED`."""
    return float((x.abs() >= SATURATED).float().mean())


@dataclass
class CaptionBench:
    """The judge, the FID features and the real images a text-to-image model is compared to.
    Build it with :meth:`build`; every number of one bench is comparable with every other."""

    judge: Any
    features: Any
    source: str
    canvas: int
    attributes: tuple[str, ...]
    seed: int

    @classmethod
    def build(
        cls,
        source: str = "mnist-5k",
        canvas: int = 16,
        attributes: Sequence[str] = ("thickness", "slant"),
        *,
        seed: int = 0,
        judge_steps: int = 1200,
        judge_n: int = 4000,
    ) -> CaptionBench:
        """The bench for ``attributes`` of ``source`` at ``canvas``: the judge's thresholds
        calibrated on 2,000 training digits with every attribute varying (seed 0), its digit
        classifier trained for ``judge_steps`` on ``judge_n`` captioned training digits with
        ``attributes`` varying (seed ``seed + 2``), the FID feature classifier of ``source``
        at ``canvas`` (trained once and cached)."""
        from ..metrics.fid import load_classifier
        from .captions import make_captioned
        from .judge import AttributeJudge, train_judge_classifier

        calibration = make_captioned(source, 2000, seed=0, canvas=canvas)
        train = make_captioned(source, judge_n, seed=seed + 2, canvas=canvas,
                               attributes=tuple(attributes))  # fmt: skip
        classifier = train_judge_classifier(train.images, train.labels["digit"],
                                            steps=judge_steps, seed=seed)  # fmt: skip
        judge = AttributeJudge.calibrate(calibration, classifier)
        features = load_classifier(source, size=canvas)
        return cls(judge, features, source, int(canvas), tuple(attributes), int(seed))

    def prompts(self, n: int, vocabulary: str = "train", seed: int = 0) -> Any:
        """``n`` captioned *test* digits (:class:`~diffusio.image.captions.CaptionedSet`):
        their captions are the prompts, their images the FID reference."""
        from .captions import make_captioned

        return make_captioned(self.source, n, seed=1000 + seed, split="test",
                              attributes=self.attributes, vocabulary=vocabulary,
                              canvas=self.canvas)  # fmt: skip

    def _features(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            return torch.cat([self.features.features(b) for b in x.float().split(500)])

    def fid(self, samples: Tensor, reference: Tensor, bootstrap: int = 0,
            seed: int = 0) -> tuple[float, float]:  # fmt: skip
        """FID of ``samples`` against ``reference`` images (both (N, 1, C, C) in [-1, 1]) and
        its sampling error: the standard deviation of the FID over ``bootstrap`` resamplings
        (with replacement) of the samples (nan when ``bootstrap`` < 2)."""
        return fid_bootstrap(self._features(samples), self._features(reference), bootstrap, seed)

    def floor(self, prompts: Any) -> float:
        """The FID of a second real captioned test set (another seed, same size and vocabulary)
        against ``prompts``' images: what a perfect model would score, up to noise."""
        other = self.prompts(len(prompts), str(prompts.info["vocabulary"]), seed=1)
        return self.fid(other.images, prompts.images)[0]

    def evaluate(self, samples: Tensor, prompts: Any, bootstrap: int = 20) -> dict[str, Any]:
        """Scores of ``samples`` (N, 1, C, C) generated for ``prompts`` (row i for caption
        i): ``digit``, ``attributes`` (pooled non-digit accuracy), ``all``, each attribute's
        accuracy in ``per_attribute``, ``per_image`` (the fraction of each caption's asked
        attributes, the digit included, that its image shows), ``fid`` and ``fid_se``
        (bootstrap), ``saturated`` and ``saturated_real``."""
        from .captions import ATTRIBUTES

        x = samples.detach().cpu().float()
        if x.shape[0] != len(prompts):
            raise ValueError(f"got {x.shape[0]} samples for {len(prompts)} prompts")
        if not bool(torch.isfinite(x).all()):
            raise ValueError("the samples contain non-finite values")
        asked = {a: prompts.asked[a] for a in ATTRIBUTES}
        score = self.judge.score(x, asked)
        pred = self.judge.predict(x)
        hits, total = 0, 0
        per_hits, per_total = np.zeros(len(x)), np.zeros(len(x))
        for a in ATTRIBUTES:
            on = asked[a] >= 0
            hit = (pred[a] == asked[a]) & on
            per_hits += hit
            per_total += on
            if a != "digit":
                hits += int(hit.sum())
                total += int(on.sum())
        fid, fid_se = self.fid(x, prompts.images, bootstrap)
        return {
            "digit": score["accuracy"]["digit"], "attributes": hits / total if total else None,
            "all": score["all"], "per_attribute": score["accuracy"], "counts": score["counts"],
            "per_image": (per_hits / np.maximum(per_total, 1)).tolist(),
            "fid": fid, "fid_se": fid_se, "saturated": saturated_fraction(x),
            "saturated_real": saturated_fraction(prompts.images), "n": int(x.shape[0]),
        }  # fmt: skip

    def describe(self) -> dict[str, Any]:
        """The bench's identity (for metrics.json)."""
        acc = getattr(self.features, "test_accuracy", None)
        return {"source": self.source, "canvas": self.canvas, "attributes": list(self.attributes),
                "seed": self.seed, "feature_classifier_accuracy": acc}  # fmt: skip


def fid_bootstrap(samples: Tensor, reference: Tensor, bootstrap: int = 0,
                  seed: int = 0) -> tuple[float, float]:  # fmt: skip
    """The Fréchet distance between feature sets ``samples`` (N, D) and ``reference`` (M, D)
    and the standard deviation of it over ``bootstrap`` resamplings of the sample rows (the
    sampling noise of a FID at this N; nan when ``bootstrap`` < 2)."""
    from ..metrics.fid import feature_statistics, frechet_distance

    ref = feature_statistics(reference)
    fid = frechet_distance(*feature_statistics(samples), *ref)
    if bootstrap < 2:
        return fid, float("nan")
    rng = np.random.default_rng(int(seed))
    n = samples.shape[0]
    reps = [frechet_distance(*feature_statistics(samples[rng.integers(n, size=n)]), *ref)
            for _ in range(int(bootstrap))]  # fmt: skip
    return fid, float(np.std(reps, ddof=1))
