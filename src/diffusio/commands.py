"""What ``diffusio train | sample | nll | reproduce`` do, as functions the CLI (and scripts) call.

Each function validates its input and raises ``ValueError`` / ``FileNotFoundError`` with one
clear line; the CLI prints that line and exits non-zero.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

__all__ = ["train", "sample_run", "nll_run", "reproduce", "load_eval_data"]

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
        raise ValueError("cannot tell the data dimension of this run's network")
    return dim


def sample_run(
    run_dir: str,
    n: int = 1000,
    sampler: str = "dpm-solver++",
    steps: int | None = None,
    seed: int | None = 0,
    out: str | None = None,
    progress: bool = True,
) -> Path:
    """Sample a trained run and write ``.npz`` (array ``samples``, data units) or a ``.png``."""
    import numpy as np
    import torch

    from diffusio.core.samplers import sample
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
    with torch.no_grad():
        x = sample(model, (n, _data_dim(model)), sampler, steps, seed=seed, progress=progress)
        if normalizer is not None:
            x = normalizer.inverse(x)
    x = x.detach().cpu()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if out_path.suffix.lower() == ".npz":
        with atomic_path(out_path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, samples=x.numpy())
    else:
        title = f"{Path(run_dir).name}: {sampler}" + (f", {steps} steps" if steps else "")
        save_figure(scatter_panels([(title, x)]), out_path)
    print(f"wrote {n} samples to {out_path}")
    return out_path


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
