"""What ``diffusio eval RUN_DIR`` measures for an image run.

* Sample quality: the Fréchet distance (Heusel et al. 2017) in the feature space of a small
  classifier diffusio trains on the dataset (:class:`~diffusio.metrics.fid.ImageEvaluator`; not
  Inception FID), next to its noise floor (the held-out test split scored the same way, at the
  same n), the class histogram of the samples and the classifier's mean confidence.
* Bits/dim from the variational bound: DDPM's discretized decoder on the 8-bit data (Ho et al.
  2020, eq. 5 and 13, Table 2); every one of the T terms is evaluated.
* Bits/dim from the probability-flow ODE (Song et al. 2021, eq. 39-40, App. D.2): the density
  of uniformly dequantized data, ``bpd = nll / (D ln 2) + log2(127.5)`` for 8-bit data in
  [-1, 1] (bins of width 2/255), an upper bound on the discrete bits/dim in expectation.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..core.likelihood import nll
from ..core.vlb import quantize, vlb
from .sampling import balanced_labels, sample_images

__all__ = ["evaluate_run", "ode_bits_per_dim", "run_image_shape", "vlb_bits_per_dim"]

LOG2_HALF_BINS = math.log2(127.5)  # -log2 of the 8-bit bin width 2/255, per dimension


def _batches(x: Tensor, batch_size: int) -> list[Tensor]:
    return list(x.split(batch_size))


def vlb_bits_per_dim(
    model: Any,
    x: Tensor,
    seed: int = 0,
    batch_size: int = 500,
    progress: bool = False,
    **cond: Any,
) -> Tensor:
    """Per-image bits/dim of the bound (all T terms plus the prior) with the discretized
    decoder, on ``x`` quantized to 8 bits."""
    gen = torch.Generator(device=model.device).manual_seed(seed)
    out = []
    for chunk in _batches(quantize(x), batch_size):
        chunk = chunk.to(model.device, model.dtype)
        total = vlb(model, chunk, generator=gen, progress=progress, decoder="discretized", **cond)
        out.append(total["total"].cpu())
    nats = torch.cat(out)
    return nats / (x[0].numel() * math.log(2.0))


def ode_bits_per_dim(
    model: Any,
    x: Tensor,
    seed: int = 0,
    batch_size: int = 250,
    progress: bool = False,
    **options: Any,
) -> Tensor:
    """Per-image bits/dim of the probability-flow ODE's density on uniformly dequantized 8-bit
    data (Hutchinson's divergence estimator, ``options`` go to :func:`diffusio.core.nll`)."""
    gen = torch.Generator().manual_seed(seed)
    xq = quantize(x)
    dequantized = xq + (torch.rand(xq.shape, generator=gen) * 2 - 1) / 255.0
    out = []
    for k, chunk in enumerate(_batches(dequantized, batch_size)):
        chunk = chunk.to(model.device, model.dtype)
        options.setdefault("rtol", 1e-4)
        options.setdefault("atol", 1e-4)
        nats = nll(model, chunk, exact=False, seed=seed + k, progress=progress, **options)
        out.append(nats.detach().cpu())
    return torch.cat(out) / (x[0].numel() * math.log(2.0)) + LOG2_HALF_BINS


def run_image_shape(run_dir: str | os.PathLike) -> tuple[int, ...]:
    """One training example's shape (C, H, W) as recorded in a run's ``config.json``."""
    from ..train.checkpoint import read_json

    manifest = read_json(Path(run_dir) / "config.json")
    try:
        shape = tuple(int(s) for s in manifest["data"]["shape"][1:])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{run_dir}: config.json does not record the data shape") from None
    return shape


def _mean_stderr(values: Tensor) -> tuple[float, float]:
    from ..metrics.likelihood import mean_and_stderr

    return mean_and_stderr(values)


def evaluate_run(
    run_dir: str | os.PathLike,
    n: int = 1000,
    sampler: str = "ddim",
    steps: int | None = 50,
    seed: int = 0,
    bpd_n: int = 200,
    ode_n: int = 0,
    progress: bool = True,
    write: bool = True,
) -> dict[str, Any]:
    """Sample ``n`` images and score them; bits/dim of ``bpd_n`` held-out images from the
    bound (0: skip) and of ``ode_n`` from the ODE (0: skip; slow). Returns the metrics, also
    written to ``RUN_DIR/eval.json`` when ``write``."""
    from ..data.datasets import IMAGE_DATASETS, load_image_dataset
    from ..metrics.fid import ImageEvaluator
    from ..train.config import load_dataset, load_run

    model, config, _ = load_run(run_dir)
    shape = run_image_shape(run_dir)
    if len(shape) != 3:
        raise ValueError(f"{run_dir}: not an image run (examples of shape {shape})")
    size = config.data_options.get("size")
    num_classes = getattr(model.net, "num_classes", None)
    result: dict[str, Any] = {"run": str(run_dir), "sampler": sampler, "steps": steps}
    if config.data in IMAGE_DATASETS and n:
        labels = balanced_labels(n, num_classes) if num_classes else None
        images = sample_images(
            model, n, shape, sampler, steps, seed, labels=labels, progress=progress
        )
        result.update(ImageEvaluator(config.data, size=size).evaluate(images, labels))
    elif n:  # no classifier for the user's own images
        result["fid"] = None
        result["note"] = f"sample metrics need a built-in dataset ({', '.join(IMAGE_DATASETS)})"
    if bpd_n or ode_n:
        if config.data in IMAGE_DATASETS:
            held_out, held_labels = load_image_dataset(config.data, "test", size=size)
        else:
            held_out, held_labels = load_dataset(config)
        cond = {"y": held_labels[:bpd_n].to(model.device)} if num_classes else {}
        if bpd_n:
            bpd = vlb_bits_per_dim(model, held_out[:bpd_n], seed=seed, progress=progress, **cond)
            result["vlb_bits_per_dim"], result["vlb_bits_per_dim_stderr"] = _mean_stderr(bpd)
        if ode_n:
            if num_classes:
                cond = {"cond": {"y": held_labels[:ode_n].to(model.device)}}
            bpd = ode_bits_per_dim(model, held_out[:ode_n], seed=seed, progress=progress, **cond)
            result["ode_bits_per_dim"], result["ode_bits_per_dim_stderr"] = _mean_stderr(bpd)
        result["bits_per_dim_data"] = f"{min(len(held_out), max(bpd_n, ode_n))} test images"
    if write:
        from ..io import write_json_atomic

        write_json_atomic(Path(run_dir) / "eval.json", json.loads(json.dumps(result)))
    return result
