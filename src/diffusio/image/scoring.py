"""Scoring guided image samples the way Dhariwal & Nichol 2021 (Sec. 4, Table 4) and Ho &
Salimans 2021 (Sec. 4) do, at the scale of a built-in dataset.

Everything is measured in the feature space of an *independent* classifier trained on clean
images (:class:`~diffusio.metrics.fid.ImageEvaluator`; it never sees noisy images and is not the
guide):

* :class:`Scorer` -- FID against the train split with its noise floor at the same n (the
  held-out test split scored the same way), accuracy on the target labels (our stand-in for
  the Inception score), confidence, class histogram, and the k-NN precision and recall of
  Kynkaanniemi et al. 2019 against the test split (whose own floor is the train split's first
  n images, :meth:`Scorer.pr_floor`);
* :func:`guidance_sweep` -- one guidance curve: samples and scores for each value of a
  classifier scale s (``kind="cg"``) or a classifier-free weight w (``kind="cfg"``);
* :func:`seed_spread` -- the FID of unguided samples over several sampling seeds: the sampling
  noise of one FID at this n;
* :func:`nearest`, :func:`public_rows`, :func:`sweep_table` / :data:`SWEEP_HEADER` -- reading
  and tabulating sweep rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from ..core.model import DiffusionModel
from ..metrics.neighbours import precision_recall
from ..metrics.stats import binomial_se, mean_se, unpaired_difference
from .sampling import sample_images

__all__ = [
    "SEEDED_METRICS", "SWEEP_HEADER", "Scorer", "finite_values", "guidance_sweep", "nearest", "pick_scale",
    "plus_minus", "public_rows", "seed_diff", "seed_spread", "seed_stat", "seeded_setting",
    "sweep_table",
]  # fmt: skip


class Scorer:
    """Sample metrics of ``dataset`` images in its clean classifier's feature space (see the
    module docstring); ``k`` is the precision / recall neighbourhood size."""

    def __init__(self, dataset: str = "digits", k: int = 3):
        from ..data.datasets import load_image_dataset
        from ..metrics.fid import ImageEvaluator

        self.evaluator = ImageEvaluator(dataset)
        self.k = int(k)
        x_test, _ = load_image_dataset(dataset, "test")
        x_train, _ = load_image_dataset(dataset, "train")
        self.real = self.features(x_test)
        self.test_size = len(x_test)
        self._train = self.features(x_train[: self.test_size])

    @torch.no_grad()
    def features(self, x: Tensor) -> Tensor:
        """The clean classifier's penultimate features of images ``x`` in [-1, 1] (clamped)."""
        x = torch.as_tensor(x).to("cpu", torch.float32).clamp(-1.0, 1.0)
        return torch.cat([self.evaluator.classifier.features(c) for c in x.split(1000)])

    def floor(self, n: int) -> float:
        """The FID noise floor at ``n`` samples (at most the test split's size)."""
        return self.evaluator.noise_floor(min(int(n), self.test_size))

    def pr_floor(self) -> tuple[float, float]:
        """Precision / recall of real train images against the test split (same n)."""
        return precision_recall(self.real, self._train, self.k)

    def score(self, samples: Tensor, labels: Tensor | None) -> dict[str, Any]:
        """``fid``, ``fid_floor``, ``n``, ``histogram``, ``confidence``, ``accuracy`` (with
        ``labels``), ``precision`` and ``recall`` of ``samples``."""
        outputs = self.evaluator.outputs(samples)  # one classifier pass for every metric
        out = self.evaluator.evaluate(samples, labels, outputs=outputs)
        out.pop("feature_space", None)
        p, r = precision_recall(self.real, outputs[0], self.k)
        out.update(precision=p, recall=r)
        return out


def guidance_sweep(
    model: DiffusionModel,
    scorer: Scorer,
    labels: Tensor,
    values: Sequence[float],
    *,
    kind: str,
    sampler: str,
    steps: int,
    seed: int,
    label: str,
    classifier: Callable[[Tensor, Tensor], Tensor] | None = None,
    mode: str = "score",
    model_labels: Tensor | None = None,
    guide_clipped: bool = True,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Samples (one per target label, same starting noise for every value) and their scores
    for each value of the classifier scale s (``kind="cg"``, Dhariwal & Nichol 2021, Alg. 1
    ``mode="mean"`` / Alg. 2 ``mode="score"``) or the classifier-free weight w (``kind="cfg"``,
    Ho & Salimans 2021, eq. 6). Rows carry ``curve`` (``label``), ``kind``, ``sampler``,
    ``steps``, ``mode``, ``value``, the :meth:`Scorer.score` metrics, ``seconds`` and
    ``samples`` (drop them with :func:`public_rows` before writing JSON). ``log`` gets one line
    per value."""
    import time

    if kind not in ("cg", "cfg"):
        raise ValueError(f"kind must be 'cg' or 'cfg', got {kind!r}")
    rows = []
    for v in values:
        start = time.perf_counter()
        extra: dict[str, Any] = (
            {"guidance_weight": v} if kind == "cfg"
            else {"classifier": classifier, "classifier_scale": v}
        )  # fmt: skip
        x = sample_images(
            model, len(labels), None, sampler, steps, seed, labels=labels,
            model_labels=model_labels, classifier_mode=mode, guide_clipped=guide_clipped,
            progress=progress, **extra,
        )  # fmt: skip
        seconds = time.perf_counter() - start
        metrics = scorer.score(x, labels)
        rows.append({
            "curve": label, "kind": kind, "sampler": sampler, "steps": steps, "mode": mode,
            "seed": seed, "value": float(v), **metrics, "seconds": round(seconds, 2), "samples": x,
        })  # fmt: skip
        if log is not None:
            log(
                f"  {label} {'w' if kind == 'cfg' else 's'} = {v:g}: FID {metrics['fid']:.2f} "
                f"(floor {metrics['fid_floor']:.2f}), accuracy {metrics['accuracy']:.3f}, "
                f"precision {metrics['precision']:.2f}, recall {metrics['recall']:.2f} "
                f"({seconds:.1f} s)"
            )
    return rows


def seed_spread(
    model: DiffusionModel,
    scorer: Scorer,
    labels: Tensor,
    seeds: Sequence[int],
    sampler: str,
    steps: int,
    model_labels: Tensor | None = None,
    sweep: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """FID of unguided samples over sampling ``seeds``: ``seeds``, ``fids``, their ``mean``
    and ``std`` (ddof 1; nan for one seed), the sampling noise of one FID at this n. The
    value-0 row of a :func:`guidance_sweep` of the same model and labels with the same sampler
    (``sweep``) is the unguided sample set of its seed: its FID is reused, not drawn again."""
    known = {int(r["seed"]): r["fid"] for r in sweep
             if r["value"] == 0 and r["sampler"] == sampler and r["steps"] == steps}
    return scorer.evaluator.fid_spread(
        lambda seed: sample_images(
            model, len(labels), None, sampler, steps, seed, labels=labels,
            model_labels=model_labels,
        ),
        seeds,
        known,
    )  # fmt: skip


def nearest(rows: Sequence[dict[str, Any]], value: float) -> dict[str, Any]:
    """The row whose guidance ``value`` is closest to ``value`` (the first on ties)."""
    return min(rows, key=lambda r: abs(r["value"] - value))


def public_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows without their sample tensors (for metrics.json)."""
    return [{k: v for k, v in r.items() if k != "samples"} for r in rows]


SWEEP_HEADER = [
    "curve", "value", "FID", "FID floor", "accuracy", "± se", "confidence", "precision",
    "recall", "seconds",
]  # fmt: skip


def sweep_table(rows: Sequence[dict[str, Any]]) -> list[list[Any]]:
    """Table rows under :data:`SWEEP_HEADER` (accuracy with its binomial standard error)."""
    return [
        [
            r["curve"], f"{r['value']:g}", r["fid"], r["fid_floor"], r["accuracy"],
            binomial_se(r["accuracy"], r["n"]), r["confidence"], r["precision"], r["recall"],
            r["seconds"],
        ]
        for r in rows
    ]  # fmt: skip

# --------------------------------------------------------------------------- seeded settings
#: The per-seed numbers a seeded setting keeps.
SEEDED_METRICS = ("fid", "accuracy", "precision", "recall")


def seeded_setting(measure: Callable[[float, int], dict[str, Any]], rows: Sequence[dict[str, Any]],
                   value: float, seeds: Sequence[int]) -> dict[str, Any]:  # fmt: skip
    """``measure(value, seed)`` (a scored row) at every seed, reusing the sweep ``rows``' row of
    that value and seed: ``value``, ``seeds``, ``n`` and per-seed :data:`SEEDED_METRICS` lists."""
    known = {int(r["seed"]): r for r in rows if r["value"] == value}
    got = [known.get(int(seed)) or measure(value, int(seed)) for seed in seeds]
    return {"value": float(value), "seeds": [int(x) for x in seeds], "n": got[0]["n"],
            **{k: [float(r[k]) for r in got] for k in SEEDED_METRICS}}  # fmt: skip


def finite_values(values: Any) -> list[float]:
    """Finite floats of ``values`` (None -- NaN in the strict-JSON results cache -- dropped)."""
    return [float(x) for x in values or () if x is not None and math.isfinite(float(x))]


def seed_stat(summary: dict[str, Any], key: str) -> tuple[float, float]:
    """Seed mean of ``summary[key]`` and its standard error (nan, nan without values)."""
    xs = finite_values(summary.get(key))
    return mean_se(xs) if xs else (math.nan, math.nan)


def seed_diff(a: dict[str, Any], b: dict[str, Any], key: str) -> tuple[float, float]:
    """``mean(a) - mean(b)`` of ``key`` and its standard error (each side's from its own seeds)."""
    xs, ys = finite_values(a.get(key)), finite_values(b.get(key))
    return unpaired_difference(xs, ys) if xs and ys else (math.nan, math.nan)


def plus_minus(key: str, *summaries: dict[str, Any], pct: bool = False) -> str:
    """``mean ± se`` of ``key`` for each seeded setting, joined by arrows (``pct``: percent)."""
    d = 1 if key == "fid" else 3
    return " -> ".join(f"{m:.1%} ± {se:.1%}" if pct else f"{m:.{d}f} ± {se:.{d}f}"
                       for m, se in (seed_stat(x, key) for x in summaries))  # fmt: skip


def pick_scale(rows: Sequence[dict[str, Any]]) -> float:
    """The scale above 1 with the lowest FID on the sweep's own seed (else the largest): the
    guided setting the claims measure again on fresh seeds."""
    big = [r for r in rows if r["value"] > 1.0] or list(rows[-1:])
    return float(min(big, key=lambda r: r["fid"])["value"])
