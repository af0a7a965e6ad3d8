"""``diffusio demo``: DDPM on scikit-learn's handwritten digits, trained in a few minutes on a
laptop CPU, sampled with a fast solver and scored.

Trains the ``digits-ddpm`` preset (a small U-Net, L_simple, Ho et al. 2020, Alg. 1) into an
ordinary run directory (so ``diffusio sample DIR`` and ``diffusio eval DIR`` work on it, and a
second ``make demo`` reuses or resumes it), then draws images with DPM-Solver++ (Lu et al. 2022)
and writes:

* ``samples.png`` -- a grid of generated digits next to real held-out digits;
* ``loss.png`` -- the training loss curve (written by the trainer);
* ``demo.json`` -- the digits-FID of the samples and its noise floor (real held-out digits
  scored the same way), class histogram, confidence and timings.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

__all__ = ["PRESET", "run"]

PRESET = "digits-ddpm"


def run(
    out: str | Path = "runs/demo",
    seed: int = 0,
    steps: int | None = None,
    sampler: str = "dpm-solver++",
    sampler_steps: int = 20,
    progress: bool = True,
) -> dict[str, Any]:
    """Train the digits demo (or resume / reuse it), sample and score it.

    Trains into ``out``, samples it, writes the figures and metrics; returns the metrics. This
    is the ``diffusio demo`` command: its options are these parameters.

    Args:
        out: run directory
        seed: random seed
        steps: training steps (default: the preset's)
        sampler: sampler for the images
        sampler_steps: sampler steps
        progress: show progress bars
    """
    import torch

    from .data.datasets import load_image_dataset
    from .image.sampling import sample_images
    from .io import write_json_atomic
    from .metrics.fid import ImageEvaluator
    from .train.config import load_config, load_run
    from .train.trainer import Trainer

    out = Path(out)
    overrides: dict[str, Any] = {"seed": seed, "description": "demo: DDPM on digits"}
    if steps is not None:
        overrides["steps"] = steps
    config = load_config(PRESET, **overrides)
    start = time.perf_counter()
    summary = Trainer(config, out, progress=progress).fit(resume=True)
    train_seconds = time.perf_counter() - start

    model, config, _ = load_run(out)
    real, _ = load_image_dataset(config.data, "test")
    n = len(real)  # the FID noise floor is measured at this n: score as many samples
    start = time.perf_counter()
    with torch.no_grad():
        images = sample_images(
            model, n, tuple(real.shape[1:]), sampler, sampler_steps, seed, progress=progress
        )
    sample_seconds = time.perf_counter() - start
    evaluator = ImageEvaluator(config.data)
    metrics = evaluator.evaluate(images)

    grid_path = out / "samples.png"
    _side_by_side(images[:100], real[:100], grid_path)
    result = {
        "preset": PRESET,
        "train_steps": config.steps,
        "train_seconds_this_call": round(train_seconds, 1),
        "final_loss": summary["loss"],
        "sampler": sampler,
        "sampler_steps": sampler_steps,
        "sample_seconds": round(sample_seconds, 2),
        **metrics,
    }
    write_json_atomic(out / "demo.json", json.loads(json.dumps(result)))
    print(
        f"digits-FID {metrics['fid']:.2f} for {n} samples ({sampler}, {sampler_steps} steps); "
        f"real held-out digits score {metrics['fid_floor']:.2f} (the noise floor). Classifier "
        f"confidence {metrics['confidence']:.2f}."
    )
    print(f"wrote {grid_path}, {out / 'loss.png'} and {out / 'demo.json'}")
    print(f"more: diffusio sample {out} --n 64 --out digits.png ; diffusio eval {out}")
    return result


def _side_by_side(samples: Any, real: Any, path: Path) -> None:
    """One figure: generated digits (left) and real held-out digits (right)."""
    from .data.datasets import image_grid
    from .plotting import new_figure, save_figure

    fig = new_figure(8.0, 4.3)
    for ax, (title, x) in zip(
        fig.subplots(1, 2), [("generated (DDPM, digits)", samples), ("real (held out)", real)],
        strict=True,
    ):
        ax.imshow(image_grid(x, nrow=10), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    fig.tight_layout()
    save_figure(fig, path)
