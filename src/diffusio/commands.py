"""What the ``diffusio`` subcommands do, as plain functions the CLI (and scripts) call.

The CLI builds each subcommand's arguments from these signatures (type hints and defaults) and
the ``Args:`` sections (help), so an option is spelled once: here, or where a command is the
library function itself (``demo`` is :func:`diffusio.demo.run`). Each function validates
its input and raises ``ValueError`` / ``FileNotFoundError`` with one clear line; the CLI prints
that line and exits non-zero.

``sample`` and ``eval`` dispatch per *domain* (:func:`register_domain`): a run's domain is
recorded in its ``config.json`` or claimed from its data (``digits``, image files: ``image``);
other runs are ``vector`` runs (rows of numbers: the toys, array files).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from diffusio.demo import run as demo  # the `demo` command (standard library imports only)

__all__ = [
    "DOMAINS", "Domain", "demo", "eval_run", "generate_series", "impute", "list_presets",
    "list_timeline", "load_eval_data", "make_dataset", "nll_run", "oracle_demo", "rollout",
    "register_domain", "reproduce", "run_domain", "sample_run", "train",
]  # fmt: skip

SAMPLE_FORMATS = (".npz", ".png")
Status = Literal[
    "missing", "core-only", "no-report", "stale", "not-reproduced", "partly", "reproduced"
]


# ------------------------------------------------------------------------------- domains
@dataclass(frozen=True)
class Domain:
    """How ``diffusio sample`` / ``eval`` treat one kind of run.

    ``sample(model, n, shape, *, sampler, steps, seed, labels, guidance, normalizer, progress)``
    returns samples in the data's own units; ``save_png(x, path, labels=, title=)`` writes a
    picture of them; ``evaluate(run_dir, **options)`` scores a run and prints the result (None:
    no scorer yet); ``claims(manifest)`` says whether an unlabelled run (its ``config.json``)
    belongs to this domain.
    """

    name: str
    sample: Callable[..., Any]
    save_png: Callable[..., Any]
    evaluate: Callable[..., dict[str, Any]] | None = None
    claims: Callable[[Mapping[str, Any]], bool] | None = None


DOMAINS: dict[str, Domain] = {}
DEFAULT_DOMAIN = "vector"


def register_domain(
    name: str,
    *,
    sample: Callable[..., Any],
    save_png: Callable[..., Any],
    evaluate: Callable[..., dict[str, Any]] | None = None,
    claims: Callable[[Mapping[str, Any]], bool] | None = None,
) -> Domain:
    """Register (or replace) the domain ``name``; returns it."""
    domain = Domain(name, sample, save_png, evaluate, claims)
    DOMAINS[name] = domain
    return domain


def run_domain(run_dir: str | Path) -> Domain:
    """The domain of a run: ``config.json``'s ``domain`` (top level or in ``config``) if it
    records one, else the first registered domain claiming the run, else ``vector``."""
    from diffusio.io import read_json

    path = Path(run_dir)
    if not path.is_dir():
        raise FileNotFoundError(f"{run_dir}: run directory not found")
    manifest = read_json(path / "config.json")
    if not isinstance(manifest, Mapping):
        raise ValueError(f"{path / 'config.json'}: not a diffusio run config")
    config = manifest.get("config") or {}
    name = manifest.get("domain") or (config.get("domain") if isinstance(config, Mapping) else None)
    if name is None:
        claimed = (d.name for d in DOMAINS.values() if d.claims is not None and d.claims(manifest))
        name = next(claimed, DEFAULT_DOMAIN)
    if name not in DOMAINS:
        raise ValueError(f"{run_dir}: unknown domain {name!r}; registered: {', '.join(DOMAINS)}")
    return DOMAINS[name]


def _run_data(manifest: Mapping[str, Any]) -> str:
    config = manifest.get("config")
    return str(config.get("data", "")) if isinstance(config, Mapping) else ""


def _claims_images(manifest: Mapping[str, Any]) -> bool:
    from diffusio.data.datasets import IMAGE_DATASETS
    from diffusio.data.images import is_image_source

    data = _run_data(manifest)
    return bool(data) and (data in IMAGE_DATASETS or is_image_source(data))


def _sample_images(model: Any, n: int, shape: tuple[int, ...], *, sampler: str,
                   steps: int | None, seed: int | None, labels: Any, guidance: float,
                   normalizer: Any, progress: bool) -> Any:  # fmt: skip
    from diffusio.image.sampling import sample_images

    return sample_images(
        model, n, shape, sampler, steps, seed or 0, labels=labels, guidance_weight=guidance,
        progress=progress,
    )  # fmt: skip


def _save_image_png(x: Any, path: Path, *, labels: Any = None, title: str = "") -> None:
    from diffusio.data.datasets import save_image_grid

    save_image_grid(x, path, nrow=10 if labels is not None else None)


def _evaluate_images(run_dir: str, **options: Any) -> dict[str, Any]:
    from diffusio.image.evaluate import evaluate_run

    r = evaluate_run(run_dir, **options)
    sampler, steps = options.get("sampler"), options.get("steps")
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


def _sample_vectors(model: Any, n: int, shape: tuple[int, ...], *, sampler: str,
                    steps: int | None, seed: int | None, labels: Any, guidance: float,
                    normalizer: Any, progress: bool) -> Any:  # fmt: skip
    from diffusio.core.samplers import sample

    if guidance:
        raise ValueError("--guidance is implemented for image runs only")
    cond = {"y": labels} if labels is not None else None
    x = sample(model, (n, *shape), sampler, steps, seed=seed, cond=cond, progress=progress)
    return normalizer.inverse(x) if normalizer is not None else x


def _save_scatter_png(x: Any, path: Path, *, labels: Any = None, title: str = "") -> None:
    from diffusio.plotting import save_figure, scatter_panels

    save_figure(scatter_panels([(title, x)]), path)


register_domain(
    "image", sample=_sample_images, save_png=_save_image_png, evaluate=_evaluate_images,
    claims=_claims_images,
)  # fmt: skip
register_domain(DEFAULT_DOMAIN, sample=_sample_vectors, save_png=_save_scatter_png)


# ------------------------------------------------------------------------------ commands
def list_timeline(verbose: bool = False, status: Status | None = None) -> str:
    """Print the seed timeline: every paper with its module, reproduction and status.

    Args:
        verbose: show what exists for each entry
        status: show only entries with this status
    """
    from diffusio.timeline import TIMELINE, format_table

    table = format_table([e for e in TIMELINE if status is None or e.status == status],
                         notes=verbose)  # fmt: skip
    print(table)
    return table


def oracle_demo(
    out: str = "runs/oracle-demo",
    seed: int = 0,
    progress: bool = True,
    n: int = 4000,
    samplers: str | None = None,
) -> dict[str, Any]:
    """Sample the exact 8-Gaussian oracle with several samplers and score them.

    Args:
        out: output folder
        seed: random seed
        progress: show progress bars
        n: samples per sampler
        samplers: samplers and step counts, NAME:STEPS,... e.g. ddim:50,dpm-solver++:10
            (default: ddpm:1000,ddim:50,euler-maruyama:500,ode-heun:50,dpm-solver++:10)
    """
    from diffusio.toy.demo import run
    from diffusio.toy.sweep import parse_samplers

    parsed = parse_samplers(samplers) if samplers is not None else None
    return run(out, seed=seed, progress=progress, n=n, samplers=parsed)


def train(
    config: str | None = None,
    out: str | None = None,
    steps: int | None = None,
    seed: int | None = None,
    save_every: int | None = None,
    resume: bool = False,
    progress: bool = True,
    **overrides: Any,
) -> dict[str, Any]:
    """Train a model from a preset or a config file.

    Args:
        config: a preset name or a YAML/JSON config file
        out: run directory (default: runs/<config>)
        steps: override the number of training steps
        seed: override the seed
        save_every: checkpoint interval in steps
        resume: resume from the last checkpoint
        progress: show progress bars
        overrides: further config fields (scripts only)
    """
    from diffusio.train.config import load_config
    from diffusio.train.trainer import Trainer

    if config is None:
        raise ValueError("a config (preset name or file) is required; see --list-presets")
    fields = {"steps": steps, "seed": seed, "save_every": save_every, **overrides}
    cfg = load_config(config, **{k: v for k, v in fields.items() if v is not None})
    out_dir = Path(out) if out is not None else Path("runs") / Path(config).stem
    trainer = Trainer(cfg, out_dir, progress=progress)
    result = trainer.fit(resume=resume)
    if trainer.is_main:  # one line per run, not per process
        print(f"trained {cfg.steps} steps; run in {out_dir}")
    return result


def list_presets() -> list[str]:
    """Print the built-in training presets."""
    from diffusio.train.config import PRESETS

    lines = [f"{name:20s} data={p['data']}, steps={p['steps']}" for name, p in PRESETS.items()]
    print("\n".join(lines))
    return lines


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
    """Sample a trained run to ``.npz`` (array ``samples`` in the data's own units: (N, D)
    vectors, or (N, C, H, W) images in [-1, 1]) or ``.png`` (scatter plot or image grid).
    Class-conditional runs draw every class equally often, or only ``label``.

    Args:
        run_dir: a run directory written by train
        n: number of samples
        sampler: sampler name
        steps: sampler steps (default: the sampler's)
        seed: random seed
        out: output .npz (array 'samples') or .png (default: RUN_DIR/samples.npz)
        progress: show progress bars
        label: class to draw (class-conditional runs)
        guidance: classifier-free guidance weight w (class-conditional runs)
    """
    import numpy as np
    import torch

    from diffusio.image.evaluate import run_image_shape  # any run's example shape
    from diffusio.image.sampling import balanced_labels
    from diffusio.io import atomic_path
    from diffusio.train.config import load_run

    if n < 1:
        raise ValueError(f"--n must be positive, got {n}")
    out_path = Path(out) if out is not None else Path(run_dir) / "samples.npz"
    if out_path.suffix.lower() not in SAMPLE_FORMATS:
        raise ValueError(
            f"unsupported output {out_path.name!r}; use one of {', '.join(SAMPLE_FORMATS)}"
        )
    domain = run_domain(run_dir)
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
    with torch.no_grad():
        x = domain.sample(
            model, n, shape, sampler=sampler, steps=steps, seed=seed, labels=labels,
            guidance=guidance, normalizer=normalizer, progress=progress,
        )  # fmt: skip
    x = x.detach().cpu()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if out_path.suffix.lower() == ".npz":
        arrays = {"samples": x.numpy()}
        if labels is not None:
            arrays["labels"] = labels.numpy()
        with atomic_path(out_path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    else:
        title = f"{Path(run_dir).name}: {sampler}" + (f", {steps} steps" if steps else "")
        domain.save_png(x, out_path, labels=labels, title=title)
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
    """Score a run with its domain's scorer (image runs: FID next to its noise floor, class
    histogram, bits/dim) and print the result; also written to ``RUN_DIR/eval.json``.

    Args:
        run_dir: a run directory written by train
        n: samples to score
        sampler: sampler name
        steps: sampler steps
        seed: random seed
        bpd_n: held-out examples for bits/dim from the bound (0 skips)
        ode_n: held-out examples for bits/dim from the ODE (0 skips; slow)
        progress: show progress bars
    """
    domain = run_domain(run_dir)
    if domain.evaluate is None:
        raise ValueError(
            f"{run_dir}: no scorer for {domain.name} runs yet (`diffusio nll` measures their "
            "likelihood)"
        )
    return domain.evaluate(run_dir, n=n, sampler=sampler, steps=steps, seed=seed, bpd_n=bpd_n,
                           ode_n=ode_n, progress=progress)  # fmt: skip


def _data_dim(model: Any) -> int:
    dim = getattr(model.net, "dim", None)
    if not isinstance(dim, int):
        raise ValueError("cannot tell the data dimension of this run's network (image runs: "
                         "use diffusio eval)")  # fmt: skip
    return dim


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
    hutchinson: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Mean NLL of data under a trained run's probability-flow ODE, in the data's own units.

    A model trained on standardized data ``y = (x - m) / s`` has ``log p(x) = log p(y) - sum log s``
    (the Jacobian of the standardization), so the NLL is reported for x, not y.

    Args:
        run_dir: a run directory written by train
        data: a toy name (fresh samples) or a .npy/.npz/.csv file of rows
        n: rows to evaluate
        seed: random seed (toy samples and divergence probes)
        hutchinson: estimate the divergence (default: exact for small dimensions)
        progress: show progress bars
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
    nats = data_nll(
        model, x, normalizer, exact=False if hutchinson else None, seed=seed, progress=progress
    )
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


def reproduce(
    name: str,
    quick: bool = False,
    out: str | None = None,
    overrides: list[str] | None = None,
    show_settings: bool = False,
    progress: bool = True,
) -> Any:
    """Run a paper's reproduction into ``out`` and write its report.

    Args:
        name: a reproduction name from `diffusio list`
        quick: the few-minute version
        out: output folder (default: runs/NAME)
        overrides: override one setting, KEY=VALUE (repeatable; see --show-settings)
        show_settings: print the settings (with --quick: the quick ones) and exit
        progress: show progress bars
    """
    from diffusio.timeline import find_entry

    entry = find_entry(name)
    if not entry.has_reproduction():
        raise ValueError(
            f"no reproduction of {name!r} yet (status: {entry.status}); "
            "`diffusio list` shows what exists"
        )
    from diffusio.papers import base

    if show_settings:
        text = base.describe_settings(name, quick)
        print(text)
        return text
    return base.reproduce(name, out, quick, list(overrides or ()), progress)


def impute(
    data: str,
    out: str,
    run: str | None = None,
    samples: int = 100,
    sampler: str = "ddpm",
    steps: int | None = None,
    horizon: int = 0,
    window: int | None = None,
    train_steps: int | None = None,
    seed: int = 0,
    force: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Impute the missing values of a table of time series with CSDI (Tashiro et al. 2021) and
    write samples.npz, median.csv, q05.csv, q95.csv, imputation.png and imputation.json.

    Args:
        data: a .csv (rows = time steps, columns = features, empty or NaN = missing, an
            optional first time column) or an .npz (array 'values' (T, K))
        out: output folder (a model trained here goes into DIR/run)
        run: reuse this trained run (e.g. DIR/run of an earlier call) instead of training
        samples: imputations drawn per missing value
        sampler: sampler name (ddpm: the paper's ancestral sampler; ddim, dpm-solver++ take
            fewer steps)
        steps: sampler steps (default: the sampler's own; ddpm and ddim: all 50)
        horizon: also forecast this many steps past the end
        window: window length in steps (default 36, or the whole series when shorter, or
            the run's)
        train_steps: training steps (default 1000)
        seed: random seed (training and sampling)
        force: overwrite the outputs already in DIR (and retrain DIR/run if it no longer fits)
        progress: show progress bars
    """
    from diffusio.timeseries.impute import impute_file

    return impute_file(data, out, run=run, samples=samples, sampler=sampler, steps=steps,
                       horizon=horizon, window=window, train_steps=train_steps, seed=seed,
                       force=force, progress=progress)  # fmt: skip


def generate_series(
    run: str,
    n: int,
    out: str,
    seed: int = 0,
    sampler: str | None = None,
    steps: int | None = None,
    force: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Draw new windows of time series from a saved generator (Lim et al.'s latent TSGM, the
    data-space DDPM, or the Gaussian / VAR baselines) and write them in the data's own units.

    Args:
        run: a folder written by diffusio.timeseries.tsgm.save (e.g. models/sines-tsgm-vp
            in the output of diffusio reproduce tsgm-2023)
        n: number of windows to draw
        out: output .npz (array 'samples' (N, L, D), 'columns') or .csv (long format: window,
            step, one column per feature)
        seed: random seed (the same seed gives the same windows)
        sampler: sampler of the neural generators (default: the run's own)
        steps: sampler steps (default: the run's own)
        force: overwrite FILE if it exists
        progress: show progress bars
    """
    from diffusio.timeseries.generate import generate_file

    summary = generate_file(run, n, out, seed=seed, sampler=sampler, steps=steps, force=force,
                            progress=progress)  # fmt: skip
    n_, length, features = summary["shape"]
    print(
        f"wrote {n_} windows of {length} steps x {features} features ({summary['units']} "
        f"units) from a {summary['generator']} to {summary['path']}"
    )
    return summary


def make_dataset(
    name: str,
    out: str,
    seed: int = 0,
    steps: int | None = None,
    episodes: int | None = None,
    progress: bool = True,
) -> str:
    """Generate an offline control dataset (D4RL-style arrays in FILE.npz, its manifest in
    FILE.json) and print a one-line summary; FILE is reused when it already holds the same
    (name, seed, size). The burgers-* datasets are DiffPhyCon's solved Burgers samples (u at
    11 times, the control f over 10 intervals; Wei et al. 2024) for one observation/control
    setting.

    Args:
        name: pointmaze-umaze, pointmaze-medium, pointmaze-large, lunarlander-mixed, point2d-skills,
            point2d-avoid, pusht, or burgers-fo-fc, burgers-fo-pc, burgers-po-fc, burgers-po-pc
        out: output .npz file
        seed: random seed (the same seed gives the same arrays)
        steps: size in steps (default: the dataset's own size; not for burgers-*)
        episodes: size in episodes (PointMaze: goals; burgers-*: solved samples, default
            1000; not with --steps)
        progress: show progress bars
    """
    if name.startswith("burgers-"):
        return _make_burgers(name, out, seed, steps, episodes, progress)
    from diffusio.control.datasets import make_dataset as make
    from diffusio.control.datasets import summary_line

    path = make(name, seed=seed, steps=steps, episodes=episodes, out=out, progress=progress)
    line = summary_line(path)
    print(line)
    return line


def _make_burgers(name: str, out: str, seed: int, steps: int | None, episodes: int | None,
                  progress: bool) -> str:  # fmt: skip
    from diffusio.physics.burgers import SETTINGS
    from diffusio.physics.burgers_data import load_burgers_dataset, save_burgers_dataset

    setting = name.removeprefix("burgers-")
    if setting not in SETTINGS:
        raise ValueError(f"unknown dataset {name!r}; burgers settings: "
                         + ", ".join(f"burgers-{k}" for k in SETTINGS))  # fmt: skip
    if steps is not None:
        raise ValueError("burgers-* datasets are sized by --episodes (solved samples), not --steps")
    n = 1000 if episodes is None else episodes
    if n < 1:
        raise ValueError(f"--episodes must be >= 1, got {n}")
    data = load_burgers_dataset(save_burgers_dataset(out, n, seed, setting, progress=progress))
    m = data.manifest
    line = (f"{m['npz']}: {m['n']} solved Burgers samples ({m['setting']}, seed {m['seed']}): "
            f"u {tuple(data.u.shape)}, f {tuple(data.f.shape)}, |u| <= {abs(data.u).max():.2f}")  # fmt: skip
    print(line)
    return line


def rollout(
    run: str,
    env: str | None = None,
    episodes: int = 10,
    seed: int = 0,
    out: str | None = None,
    sampler: str | None = None,
    steps: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run a trained policy (diffusio.control.load_policy) for N episodes and print its mean
    return and score with their standard errors (D4RL's normalised score, or the environment's
    own, e.g. the Push-T score), the success rate and the planning time per decision; --out
    writes every episode's return, score, success and steps as JSON.

    Args:
        run: the trained run directory
        env: environment name (default: the one the run was trained on)
        episodes: number of episodes
        seed: episode seeds derive from it
        out: JSON file for the per-episode results
        sampler: planning sampler (default: the run's; e.g. ddim, dpm-solver++)
        steps: planning sampler steps
        progress: show a progress bar
    """
    from diffusio.control.policies import evaluate, load_policy
    from diffusio.io import write_json_atomic

    options = {k: v for k, v in (("sampler", sampler), ("steps", steps)) if v is not None}
    policy = load_policy(run, **options)
    name = env or policy.env
    result = evaluate(policy, name, episodes, seed, progress=progress)
    if out is not None:
        write_json_atomic(out, {"run": str(run), **result})
    from diffusio.control.scores import EPISODE_SCORES

    digits = 3 if name in EPISODE_SCORES else 1  # a [0, 1] score (e.g. Push-T's) or D4RL's 0-100
    extra = ""
    if "final_coverage_mean" in result:
        extra += f", final coverage {result['final_coverage_mean']:.3f}"
    if "collision_rate" in result:
        extra += f", collisions {result['collision_rate']:.0%}"
    print(f"{name}: return {result['return_mean']:.2f} +/- {result['return_se']:.2f}, score "
          f"{result['score_mean']:.{digits}f} +/- {result['score_se']:.{digits}f}, success "
          f"{result['success_rate']:.0%}{extra} over {episodes} episodes; "
          f"{result['seconds_per_decision'] * 1e3:.1f} ms per decision"
          + (f"; wrote {out}" if out else ""))  # fmt: skip
    return result


def finetune(
    run: str,
    env: str | None = None,
    iterations: int = 20,
    out: str | None = None,
    seed: int = 0,
    envs: int = 8,
    progress: bool = True,
) -> dict[str, Any]:
    """Fine-tune a trained policy run online with PPO (diffusio.control.dppo.finetune): DPPO
    over the last 10 denoising steps for a Diffusion Policy run, Gaussian-PPO for a Gaussian
    policy run. Writes a policy run that `diffusio rollout` reads, metrics.jsonl (one line per
    iteration: return, approx-KL...) and a checkpoint after every iteration (rerunning resumes).

    Args:
        run: the pretrained run directory
        env: environment name (default: the one the run was trained on)
        iterations: PPO iterations
        out: output run directory (default: RUN-finetuned)
        seed: environment and sampling seeds derive from it
        envs: parallel environments
        progress: show a progress bar
    """
    from diffusio.control.dppo import finetune as run_finetune

    summary = run_finetune(run, env, iterations, out, seed, envs, progress=progress)
    print(f"{summary['env']}: return {summary['return_start']} -> {summary['return_end']} after "
          f"{summary['iterations']} iterations ({summary['env_steps']} env steps); wrote "
          f"{summary['run']}")  # fmt: skip
    return summary


def txt2img(
    run: str,
    caption: str,
    out: str,
    n: int = 16,
    guidance: float | None = None,
    sampler: str | None = None,
    steps: int | None = None,
    seed: int = 0,
    threshold: str | None = None,
    progress: bool = True,
) -> Path:
    """Draw images for one or more captions from a text-to-image run (diffusio.image.text2image:
    a frozen MiniLM or scratch text encoder, cross-attention and a pooled embedding, Imagen-style;
    Saharia et al. 2022; in pixels or, for a latent run, an autoencoder's latents, Rombach et
    al. 2022; or an unCLIP run of diffusio.image.unclip, Ramesh et al. 2022: prior then decoder)
    with classifier-free guidance and thresholding, and write them to FILE.

    Args:
        run: a run directory written by diffusio.image.text2image.train_text2image (or an
            unCLIP decoder run with its unclip.json)
        caption: the caption, e.g. "a thick seven in the top left"; several separated by "|"
            ("a seven | a two") are cycled over the images
        out: output .png (image grid) or .npz (array 'samples' (N, C, H, W) in [-1, 1] and
            'captions')
        n: number of images
        guidance: classifier-free guidance scale s as in the papers (1 = none; default: the
            run's)
        sampler: sampler name (default: the run's)
        steps: sampler steps (default: the run's for its sampler)
        seed: random seed (the same seed gives the same images)
        threshold: dynamic (Imagen's), static (clip x0 to [-1, 1]) or none (default: the run's)
        progress: show a progress bar
    """
    import numpy as np

    from diffusio.image.text2image import generate, load_text2image
    from diffusio.io import atomic_path

    out_path = Path(out)
    if out_path.suffix.lower() not in (".png", ".npz"):
        raise ValueError(f"unsupported output {out_path.name!r}; use .png or .npz")
    captions = [c.strip() for c in caption.split("|")]
    if not all(captions):
        raise ValueError(f"empty caption in {caption!r}; give one or more captions separated by |")
    if n < 1:
        raise ValueError(f"--n must be positive, got {n}")
    from diffusio.image import unclip

    if unclip.is_unclip_run(run):  # DALL-E 2's prior + decoder
        x = unclip.generate(run, captions, n, guidance, sampler, steps, seed, threshold=threshold)
    else:
        x = generate(load_text2image(run), captions, n, guidance, sampler, steps, seed, threshold,
                     progress=progress)  # fmt: skip
    if out_path.suffix.lower() == ".npz":
        rows = np.array([captions[i % len(captions)] for i in range(n)])
        with atomic_path(out_path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, samples=x.numpy(), captions=rows)
    else:
        from diffusio.data.datasets import save_image_grid

        save_image_grid(x, out_path)
    print(f"wrote {n} images ({', '.join(map(repr, captions))}) to {out_path}")
    return out_path
