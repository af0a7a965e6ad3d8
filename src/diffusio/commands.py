"""What ``diffusio train | sample | nll | reproduce`` do, as functions the CLI (and scripts) call.

Each function validates its input and raises ``ValueError`` / ``FileNotFoundError`` with one
clear line; the CLI prints that line and exits non-zero.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

__all__ = ["train", "sample_run", "nll_run", "reproduce", "load_eval_data", "eval_run"]

SAMPLE_FORMATS = (".npz", ".png")


def train(
    config: str,
    out: str | None = None,
    resume: bool = False,
    progress: bool = True,
    **overrides: Any,
) -> dict[str, Any]:
    """Train a preset or config file; ``overrides`` replace config fields (steps, seed, ...)."""
    from diffusio.train.config import load_config
    from diffusio.train.trainer import Trainer

    cfg = load_config(config, **{k: v for k, v in overrides.items() if v is not None})
    out_dir = Path(out) if out is not None else Path("runs") / Path(config).stem
    trainer = Trainer(cfg, out_dir, progress=progress)
    result = trainer.fit(resume=resume)
    print(f"trained {cfg.steps} steps; run in {out_dir}")
    return result


def _data_dim(model: Any) -> int:
    dim = getattr(model.net, "dim", None)
    if not isinstance(dim, int):
        raise ValueError("cannot tell the data dimension of this run's network (image runs: "
                         "use diffusio eval)")  # fmt: skip
    return dim


def sample_run(
    run_dir: str,
    n: int = 1000,
    sampler: str = "dpm-solver++",
    steps: int | None = None,
    seed: int | None = 0,
    out: str | None = None,
    progress: bool = True,
    label: int | None = None,
    guidance: float = 0.0,
) -> Path:
    """Sample a trained run and write ``.npz`` (array ``samples``: (N, D) vectors or (N, C, H,
    W) images, in the data's own units: images in [-1, 1]) or a ``.png`` (scatter plot or
    image grid). Class-conditional runs draw every class equally often, or only ``label``, with
    classifier-free guidance weight ``guidance``."""
    import numpy as np
    import torch

    from diffusio.core.samplers import sample
    from diffusio.image.evaluate import run_image_shape
    from diffusio.image.sampling import balanced_labels, sample_images
    from diffusio.plotting import atomic_path, save_figure, scatter_panels
    from diffusio.train.config import load_run

    if n < 1:
        raise ValueError(f"--n must be positive, got {n}")
    out_path = Path(out) if out is not None else Path(run_dir) / "samples.npz"
    if out_path.suffix.lower() not in SAMPLE_FORMATS:
        raise ValueError(
            f"unsupported output {out_path.name!r}; use one of {', '.join(SAMPLE_FORMATS)}"
        )
    model, _, normalizer = load_run(run_dir)
    shape = run_image_shape(run_dir)
    num_classes = getattr(model.net, "num_classes", None)
    if (label is not None or guidance) and not num_classes:
        raise ValueError("--label and --guidance need a class-conditional run")
    labels = None
    if num_classes:
        if label is not None and not 0 <= label < num_classes:
            raise ValueError(f"--label must be in 0..{num_classes - 1}, got {label}")
        labels = balanced_labels(n, num_classes) if label is None else torch.full((n,), label)
    images = len(shape) == 3
    with torch.no_grad():
        if images:
            x = sample_images(
                model, n, shape, sampler, steps, seed or 0, labels=labels,
                guidance_weight=guidance, progress=progress,
            )  # fmt: skip
        else:
            cond = {"y": labels} if labels is not None else None
            x = sample(model, (n, *shape), sampler, steps, seed=seed, cond=cond, progress=progress)
            if normalizer is not None:
                x = normalizer.inverse(x)
    x = x.detach().cpu()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if out_path.suffix.lower() == ".npz":
        arrays = {"samples": x.numpy()}
        if labels is not None:
            arrays["labels"] = labels.numpy()
        with atomic_path(out_path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    elif images:
        from diffusio.data.datasets import save_image_grid

        save_image_grid(x, out_path, nrow=10 if labels is not None else None)
    else:
        title = f"{Path(run_dir).name}: {sampler}" + (f", {steps} steps" if steps else "")
        save_figure(scatter_panels([(title, x)]), out_path)
    print(f"wrote {n} samples to {out_path}")
    return out_path


def eval_run(
    run_dir: str,
    n: int = 1000,
    sampler: str = "ddim",
    steps: int | None = 50,
    seed: int = 0,
    bpd_n: int = 200,
    ode_n: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Score an image run (:func:`diffusio.image.evaluate.evaluate_run`) and print the result."""
    from diffusio.image.evaluate import evaluate_run

    r = evaluate_run(
        run_dir, n=n, sampler=sampler, steps=steps, seed=seed, bpd_n=bpd_n, ode_n=ode_n,
        progress=progress,
    )  # fmt: skip
    if r.get("fid") is not None:
        print(
            f"FID {r['fid']:.3f} ({r['n']} samples, {sampler}"
            + (f" {steps} steps" if steps else "")
            + f"); noise floor {r['fid_floor']:.3f} (real held-out images, same n)"
        )
        hist = " ".join(f"{v:.2f}" for v in r["histogram"])
        print(f"class histogram {hist}; classifier confidence {r['confidence']:.3f}")
        if "accuracy" in r:
            print(f"accuracy of the intended class {r['accuracy']:.3f}")
        print(f"features: {r['feature_space']}")
    elif "note" in r:
        print(r["note"])
    for key, name in (("vlb_bits_per_dim", "bound (VLB)"), ("ode_bits_per_dim", "ODE")):
        if key in r:
            print(f"bits/dim, {name}: {r[key]:.4f} +/- {r[key + '_stderr']:.4f} "
                  f"({r['bits_per_dim_data']})")  # fmt: skip
    print(f"wrote {Path(run_dir) / 'eval.json'}")
    return r


def load_eval_data(data: str, n: int, seed: int) -> tuple[Any, str, float | None]:
    """Evaluation data: a toy name (fresh samples, seeded) or a file. Returns (x, label, entropy)."""
    from diffusio.data.files import load_array
    from diffusio.data.toys import TOYS, sample_toy, toy_entropy

    if data in TOYS:
        return sample_toy(data, n, seed=seed), f"{n} fresh {data} samples", toy_entropy(data)
    path = Path(data)
    if not path.suffix:
        raise ValueError(f"unknown data {data!r}: not a toy ({', '.join(TOYS)}) nor a file path")
    x = load_array(path)
    return x[:n], f"{min(n, x.shape[0])} rows of {path}", None


def nll_run(
    run_dir: str,
    data: str,
    n: int = 1000,
    seed: int = 1,
    exact: bool | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Mean NLL of data under a trained run's probability-flow ODE, in the data's own units.

    A model trained on standardized data ``y = (x - m) / s`` has ``log p(x) = log p(y) - sum log s``
    (the Jacobian of the standardization), so the NLL is reported for x, not y.
    """
    import torch

    from diffusio.core.likelihood import bits_per_dim
    from diffusio.metrics.likelihood import data_nll, mean_and_stderr
    from diffusio.train.config import load_run

    model, _, normalizer = load_run(run_dir)
    dim = _data_dim(model)
    x, label, entropy = load_eval_data(data, n, seed)
    if x.shape[1] != dim:
        raise ValueError(f"data has {x.shape[1]} columns, the model was trained on {dim}")
    nats = data_nll(model, x, normalizer, exact=exact, seed=seed, progress=progress)
    mean, stderr = mean_and_stderr(nats)
    result = {
        "nll_nats": mean,
        "stderr": stderr,
        "bits_per_dim": float(bits_per_dim(torch.tensor(mean), dim)),
        "data": label,
        "entropy": entropy,
    }
    line = f"{mean:.4f} nats (+/- {stderr:.4f}; {result['bits_per_dim']:.4f} bits/dim) on {label}"
    if entropy is not None:
        line += f"; the data's entropy, the best possible, is {entropy:.4f} nats"
    print(line)
    return result


def reproduce(name: str, quick: bool = False, out: str | None = None) -> Any:
    """Run a paper's reproduction (``diffusio.papers.<name>.reproduce``)."""
    from diffusio.timeline import find_entry

    entry = find_entry(name)
    if entry.status != "reproduced":
        raise ValueError(
            f"no reproduction of {name!r} yet (status: {entry.status}); "
            "`diffusio list` shows what exists"
        )
    module = importlib.import_module(f"diffusio.papers.{name.replace('-', '_')}")
    out_dir = Path(out) if out is not None else Path("runs") / name
    return module.reproduce(out_dir=out_dir, quick=quick)
