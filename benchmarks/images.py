"""diffusio vs diffusers on digits: the same U-Net, the same recipe, the same clipping.

    .venv/bin/python benchmarks/images.py [--steps N] [--seeds 5] [--quick] [--ddpm1000]
                                          [--out benchmarks/results/images.json]

This compares *libraries*, not recipes. Three models train in one process, round-robin in turns
of ``--chunk`` steps (so that a shared machine's load hits all alike):

* ``diffusio``: the ``digits-ddpm`` preset (:mod:`diffusio.nets.unet` ``digits`` U-Net, L_simple
  on the discrete DDPM schedule, batch 128, AdamW 1e-3, 200 warm-up steps then cosine decay,
  gradient clipping at 1, EMA 0.999 with warm-up) through :class:`diffusio.train.trainer.Trainer`.
* ``diffusers (matched)``: a ``UNet2DModel`` built by :func:`matched_unet` from the preset's own
  network options (widths, residual blocks per level, GroupNorm groups, attention levels and
  heads, ADM scale-shift norm): the same parameter count, printed on both sides. Trained with
  the preset's recipe (:func:`recipe_of`, read from the config, not retyped) through diffusers'
  own API: ``DDPMScheduler.add_noise`` on integer timesteps, ``torch.optim.AdamW``,
  ``diffusers.optimization.get_cosine_schedule_with_warmup``, ``clip_grad_norm_`` and
  ``diffusers.training_utils.EMAModel`` (``use_ema_warmup=False``: decay
  ``min(0.999, (1 + n) / (10 + n))``, the rule diffusio's EMA warm-up uses).
* ``diffusers (example recipe)``: the same matched U-Net trained with the defaults of diffusers'
  ``examples/unconditional_image_generation/train_unconditional.py`` (batch 16, AdamW 1e-4 with
  betas 0.95/0.999 and weight decay 1e-6, 500 warm-up steps then cosine, EMA with warm-up
  inv_gamma 1, power 3/4, max decay 0.9999, clipping at 1). A recipe row, labelled as such.

Budget: the first two rows take the same ``--steps`` (default: the preset's) at the same batch,
so they see the same examples; the batch-16 row gets the same CPU time, its step count set from
the median step times of a short interleaved probe. Wall-clock budgets are not used: on a shared
machine the load changes several-fold within a minute, so a rate probed once does not hold.
Throughput at equal batch is the ratio of median step times over the whole (interleaved)
training, and of total training times.

Every model is then sampled by both libraries' 20-step solvers, each model wrapped for the other
library (:class:`TimestepNet`, :class:`ContinuousTimeNet`), with x0 clipped to [-1, 1] at every
step on both sides: diffusio's ``sample_images`` (``ClipX0``) and diffusers'
``thresholding=True`` with ``sample_max_value=1`` (the dynamic threshold is clamped to [1, 1], so
this *is* plain clipping, as diffusers' own comment says). FID: the digits-FID at n = 359 (the
held-out split; its floor is reported), mean and standard error over ``--seeds`` sampling seeds
(one training run per row: the spread is the sampler's, not the training's). ``--ddpm1000``
adds each library's own 1000-step ancestral sampler (one seed, labelled). Writes JSON.
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, environment  # noqa: E402

from diffusio.core.model import DiffusionModel  # noqa: E402
from diffusio.core.processes import make_process  # noqa: E402
from diffusio.core.samplers import time_grid  # noqa: E402
from diffusio.core.samplers.base import GRID_SPACINGS  # noqa: E402
from diffusio.data.datasets import load_image_dataset  # noqa: E402
from diffusio.image.sampling import sample_images  # noqa: E402
from diffusio.io import read_json, write_json_atomic  # noqa: E402
from diffusio.metrics.fid import ImageEvaluator  # noqa: E402
from diffusio.metrics.stats import (  # noqa: E402
    difference_se,
    mean_se,
    paired_difference,
    unpaired_difference,
)
from diffusio.nets import count_parameters  # noqa: E402
from diffusio.train.config import TrainConfig, load_config  # noqa: E402
from diffusio.train.trainer import Trainer  # noqa: E402

THREADS = 2
PRESET = "digits-ddpm"
T = 1000  # the preset's discrete schedule (vp-linear: linear betas 1e-4..0.02)

#: diffusers' unconditional-training example script, its argparse defaults.
EXAMPLE_RECIPE: dict[str, Any] = {
    "batch_size": 16, "lr": 1e-4, "betas": (0.95, 0.999), "weight_decay": 1e-6, "eps": 1e-8,
    "warmup": 500, "lr_decay": "cosine", "grad_clip": 1.0,
    "ema": {"decay": 0.9999, "use_ema_warmup": True, "inv_gamma": 1.0, "power": 0.75},
}  # fmt: skip


def recipe_of(config: TrainConfig) -> dict[str, Any]:
    """diffusio's optimiser recipe, read from its training config."""
    return {
        "batch_size": config.batch_size, "lr": config.lr, "betas": tuple(config.betas),
        "weight_decay": config.weight_decay, "eps": 1e-8, "warmup": config.warmup,
        "lr_decay": config.lr_decay, "grad_clip": config.grad_clip,
        # diffusers' EMAModel without its power-law warm-up uses (1 + n) / (10 + n), capped at
        # ``decay``: the rule of diffusio's ``ema_warmup=True``
        "ema": {"decay": config.ema_decay, "use_ema_warmup": False}
        if config.ema_warmup else {"decay": config.ema_decay, "min_decay": config.ema_decay},
    }  # fmt: skip


def matched_unet(config: TrainConfig):
    """A diffusers ``UNet2DModel`` with the architecture of the config's diffusio U-Net."""
    from diffusers import UNet2DModel

    from diffusio.nets.unet import UNet

    o = {**config.net_options}
    ours = UNet(in_channels=1, image_size=8, **o)  # the defaults the preset does not set
    widths = tuple(ours.channels * m for m in ours.channel_mults)
    sizes = [ours.image_size // 2**i for i in range(len(widths))]
    attn = [s in ours.attention_resolutions for s in sizes]
    head_dims = {w // ours.num_heads for w, a in zip(widths, attn, strict=True) if a}
    head_dims.add(widths[-1] // ours.num_heads)  # the middle block's attention
    if len(head_dims) != 1:
        raise ValueError("diffusers' attention_head_dim is one number: widths differ per level")
    groups = int(o.get("groups", 32))
    return UNet2DModel(
        sample_size=ours.image_size, in_channels=1, out_channels=1,
        layers_per_block=ours.num_res_blocks, block_out_channels=widths,
        down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attn),
        up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)),
        norm_num_groups=groups, attn_norm_num_groups=groups, attention_head_dim=head_dims.pop(),
        resnet_time_scale_shift="scale_shift" if ours.scale_shift else "default",
        dropout=float(o.get("dropout", 0.0)),
    )  # fmt: skip


class DiffusersTrainer:
    """A ``UNet2DModel`` + ``DDPMScheduler`` trained one step at a time with diffusers' API."""

    def __init__(self, data: Tensor, net: nn.Module, recipe: dict[str, Any], total_steps: int,
                 seed: int = 0):  # fmt: skip
        from diffusers import DDPMScheduler
        from diffusers.optimization import (
            get_constant_schedule_with_warmup,
            get_cosine_schedule_with_warmup,
        )
        from diffusers.training_utils import EMAModel

        self.data, self.model, self.recipe = data, net, recipe
        self.scheduler = DDPMScheduler(num_train_timesteps=T, beta_schedule="linear")
        self.optimizer = torch.optim.AdamW(
            net.parameters(), lr=recipe["lr"], betas=recipe["betas"],
            weight_decay=recipe["weight_decay"], eps=recipe["eps"],
        )  # fmt: skip
        if recipe["lr_decay"] == "cosine":
            self.lr_schedule = get_cosine_schedule_with_warmup(
                self.optimizer, recipe["warmup"], total_steps
            )
        else:
            self.lr_schedule = get_constant_schedule_with_warmup(self.optimizer, recipe["warmup"])
        self.ema = EMAModel(net.parameters(), **recipe["ema"])
        self.generator = torch.Generator().manual_seed(seed)
        self.batch_size = int(recipe["batch_size"])

    def step(self) -> float:
        n = self.batch_size
        x0 = self.data[torch.randint(len(self.data), (n,), generator=self.generator)]
        noise = torch.randn(x0.shape, generator=self.generator)
        t = torch.randint(0, T, (n,), generator=self.generator)
        noisy = self.scheduler.add_noise(x0, noise, t)
        loss = nn.functional.mse_loss(self.model(noisy, t).sample, noise)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.recipe["grad_clip"] > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.recipe["grad_clip"])
        self.optimizer.step()
        self.lr_schedule.step()
        self.ema.step(self.model.parameters())
        return float(loss.detach())

    def ema_model(self) -> nn.Module:
        model = copy.deepcopy(self.model)
        self.ema.copy_to(model.parameters())
        return model.eval()


# ----------------------------------------------------------------------------- cross-wrapping
class TimestepNet(nn.Module):
    """A diffusio eps network as diffusers calls a UNet: ``net(x, integer timestep)``; timestep
    i is diffusio's table time ``times[i]`` (the same noise level)."""

    def __init__(self, model: DiffusionModel):
        super().__init__()
        self.net, self.times = model.net, model.process.discrete().times.float()

    def forward(self, x: Tensor, timestep: Tensor) -> Tensor:
        t = self.times[timestep.long().reshape(-1)].expand(x.shape[0])
        return self.net(x, t)


class ContinuousTimeNet(nn.Module):
    """A diffusers ``UNet2DModel`` as diffusio calls a network: ``net(x, t)`` with continuous t;
    t maps to the fractional timestep whose table time it is (linear interpolation)."""

    def __init__(self, unet: nn.Module, times: Tensor):
        super().__init__()
        self.unet, self.times = unet, times.double()
        self.in_channels, self.image_size = 1, 8

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        tt = t.double().reshape(-1).expand(x.shape[0])
        i = torch.searchsorted(self.times, tt).clamp(1, len(self.times) - 1)
        lo, hi = self.times[i - 1], self.times[i]
        frac = (i - 1).double() + (tt - lo) / (hi - lo)
        return self.unet(x, frac.clamp(0, len(self.times) - 1).to(x.dtype)).sample


def diffusers_sample(eps_net, n: int, scheduler_name: str, steps: int, seed: int,
                     timesteps: list[int] | None = None, **kwargs: Any) -> Tensor:  # fmt: skip
    """diffusers' canonical loop, x0 clipped to [-1, 1] at every step (``thresholding`` with
    ``sample_max_value=1`` for the multistep solvers, ``clip_sample`` for DDPM)."""
    import diffusers

    base = {"num_train_timesteps": T, "beta_schedule": "linear", "prediction_type": "epsilon"}
    cls = getattr(diffusers, scheduler_name)
    if scheduler_name == "DDPMScheduler":
        scheduler = cls(**base, clip_sample=True, clip_sample_range=1.0, **kwargs)
    else:
        scheduler = cls(**base, thresholding=True, sample_max_value=1.0, **kwargs)
    if timesteps is None:
        scheduler.set_timesteps(steps)
    else:
        scheduler.set_timesteps(timesteps=timesteps)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((n, 1, 8, 8), generator=gen) * scheduler.init_noise_sigma
    with torch.no_grad():
        for t in scheduler.timesteps:
            eps = eps_net(scheduler.scale_model_input(x, t), t.expand(n))
            eps = eps.sample if hasattr(eps, "sample") else eps
            extra = {"generator": gen} if scheduler_name == "DDPMScheduler" else {}
            x = scheduler.step(eps, t, x, **extra).prev_sample
    return x.clamp(-1, 1)


def diffusio_grid_timesteps(steps: int, spacing: str | None = None) -> list[int]:
    """diffusio's dpm-solver++ grid as diffusers timesteps: the ``steps`` evaluation times of
    ``time_grid`` (its last point is the end, not an evaluation) mapped to the nearest table
    index (diffusers' ``set_timesteps(timesteps=...)`` takes integers)."""
    process = make_process("vp-linear")
    table = process.discrete().times.double()
    grid = time_grid(process, steps, spacing or process.solver_spacing)[:-1]
    idx = [int((table - t).abs().argmin()) for t in grid]
    if len(set(idx)) != len(idx):
        raise ValueError(f"grid collapses to repeated timesteps: {idx}")
    return idx


def heldout_choices(path: Path) -> dict[str, dict[str, Any]]:
    """The configurations ``benchmarks/samplers.py`` chose on its held-out mixtures (read from
    its JSON; empty if it has not been run): diffusers' best built-in multistep configuration and
    diffusio's best dpm-solver++ option set, to be scored on images the same way."""
    try:
        data = read_json(path)
        held = data["accuracy"]["heldout"]
    except (FileNotFoundError, KeyError, ValueError):
        return {}
    first = next(iter(held["results"].values()))
    rows = {r["label"]: r for r in next(iter(first["nfe"].values()))["configs"]}
    out = {}
    for key in ("diffusers_any_builtin_multistep", "diffusio_any_dpm_option"):
        label = held["choice"][key]["chosen"]
        if label in rows:
            out[key] = rows[label]
    return out


# ----------------------------------------------------------------------------- timing
def median_step_seconds(steps: dict[str, Any], rounds: int = 30) -> dict[str, float]:
    """Median seconds of one ``step()`` of each, interleaved one step at a time over ``rounds``
    (after two warm-ups): a load spike of a shared machine hits every row of a round alike."""
    times: dict[str, list[float]] = {k: [] for k in steps}
    for fn in steps.values():
        fn()
        fn()
    for _ in range(rounds):
        for key, fn in steps.items():
            start = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - start)
    return {k: float(np.median(v)) for k, v in times.items()}


def final_loss(losses: list[float], last: int = 200) -> float:
    """Mean eps-MSE of the last ``last`` training steps (every row uses the same loss)."""
    tail = losses[-last:]
    return float(np.mean(tail)) if tail else float("nan")


# ----------------------------------------------------------------------------- report
def markdown(report: dict[str, Any]) -> str:
    """The result tables (what benchmarks/README.md quotes)."""
    models, results, h = report["models"], report["results"], report["headline"]

    def fid(e: dict[str, Any]) -> str:
        return f"{e['fid']:.1f}" + ("" if e["fid_se"] is None else f" ± {e['fid_se']:.1f}")

    lines = [
        f"FID floor {report['fid_floor']:.2f} at n = {report['n_samples']}; sampling seeds "
        f"{report['sampling_seeds']}; {report['budget']}",
        "",
        "| model | parameters | steps x batch | median s/step | samples/s | final loss |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in models.items():
        lines.append(f"| {name} | {m['params']:,} | {m['steps']:,} x {m['batch_size']} | "
                     f"{m['median_step_seconds']:.3f} | {m['train_samples_per_sec']:.0f} | "
                     f"{m['final_loss']:.4f} |")  # fmt: skip
    samplers = list(dict.fromkeys(k for r in results.values() for k in r))
    lines += ["", "| sampler (20 NFE unless named) | " + " | ".join(results) + " |",
              "|---|" + "---|" * len(results)]  # fmt: skip
    for sname in samplers:
        cells = [fid(results[m][sname]) if sname in results[m] else "" for m in results]
        lines.append(f"| {sname} | " + " | ".join(cells) + " |")
    lines += ["", "Comparisons (paired over seeds: difference ± se, ratio):", ""]
    for key, block in h.items():
        if key == "training_seeds":
            cells = "; ".join(
                f"{lib} {m:.1f} ± {se:.1f} (" + ", ".join(f"{v:.1f}" for v in block["fids"][lib])
                + ")" for lib, (m, se) in ((k[:-8], v) for k, v in block.items()
                                           if k.endswith("_mean_se")))  # fmt: skip
            lines.append(f"- training seeds: {cells}; difference {block['difference']:+.1f} ± "
                         f"{block['difference_se']:.1f}")  # fmt: skip
            continue
        if key == "throughput_equal_batch":
            lines.append(f"- {key}: median {block['ratio_median']:.3f}, total "
                         f"{block['ratio_total']:.3f} (diffusio faster if > 1)")  # fmt: skip
            continue
        parts = {k: v for k, v in block.items() if isinstance(v, dict)} or {"": block}
        for sub, v in parts.items():
            lines.append(f"- {key}{' ' + sub if sub else ''}: {v['difference']:+.1f} ± "
                         f"{v['difference_se']:.1f}, ratio {v['ratio']:.2f}")  # fmt: skip
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=0,
                        help="training steps at batch 128 (default: the preset's)")
    parser.add_argument("--chunk", type=int, default=25, help="steps per round-robin turn")
    parser.add_argument("--seeds", type=int, default=5, help="sampling seeds per FID")
    parser.add_argument("--train-seeds", type=int, default=1,
                        help="training runs of the two equal-recipe rows (each ~1/3 of the time)")
    parser.add_argument("--quick", action="store_true", help="300 steps, 3 seeds")
    parser.add_argument("--ddpm1000", action="store_true",
                        help="also 1000-step ancestral sampling (one seed; ~2 min per model)")
    parser.add_argument("--samples", type=int, default=0, help="images scored (default: 359)")
    parser.add_argument("--heldout-from", default=str(ROOT / "benchmarks" / "results" / "samplers.json"),
                        help="samplers.py JSON whose held-out choices are also scored")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "images.json"))
    args = parser.parse_args(argv)
    seeds = tuple(range(3 if args.quick else args.seeds))
    torch.set_num_threads(THREADS)
    t_start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:6.0f}s] {msg}", flush=True)

    x_train, _ = load_image_dataset("digits", "train")
    evaluator = ImageEvaluator("digits")
    n = args.samples or evaluator.test_size
    config = load_config(PRESET)
    process = make_process(config.process)
    table_times = process.discrete().times
    n_steps = 300 if args.quick else (args.steps or config.steps)
    recipes = {"diffusers (matched)": recipe_of(config), "diffusers (example recipe)": EXAMPLE_RECIPE}

    # the budget: ``steps`` optimizer steps at batch 128 for diffusio and the matched diffusers
    # row (the same examples seen); the batch-16 recipe row gets the same CPU time, from the
    # ratio of median step times of an interleaved probe (thrown away)
    probe_ours = Trainer(config, Path("/nonexistent-unused"), progress=False)
    probes = {"diffusio": lambda: probe_ours.train_step(1)}
    for name, recipe in recipes.items():
        torch.manual_seed(0)
        probes[name] = DiffusersTrainer(x_train, matched_unet(config), recipe, 10_000).step
    probe = median_step_seconds(probes, rounds=10 if args.quick else 30)
    del probes
    matched, example = "diffusers (matched)", "diffusers (example recipe)"
    totals = {"diffusio": n_steps, matched: n_steps,
              example: round(n_steps * probe[matched] / probe[example])}  # fmt: skip
    extra = [f" [training seed {k}]" for k in range(1, args.train_seeds)]
    for tag in extra:  # more training runs of the two equal-recipe rows
        totals["diffusio" + tag] = totals[matched + tag] = n_steps
    log("probe median ms/step: " + ", ".join(f"{k} {1e3 * v:.0f}" for k, v in probe.items()))

    def seed_of(name: str) -> int:
        return config.seed + (int(name.split()[-1][:-1]) if name.endswith("]") else 0)

    with tempfile.TemporaryDirectory() as tmp:
        ours: dict[str, Trainer] = {}
        theirs: dict[str, DiffusersTrainer] = {}
        for name in totals:
            if name.startswith("diffusio"):
                cfg = config.replace(steps=totals[name], seed=seed_of(name))
                ours[name] = Trainer(cfg, Path(tmp) / f"run{len(ours)}", progress=False)
            else:
                torch.manual_seed(seed_of(name))
                recipe = recipes[example if name == example else matched]
                theirs[name] = DiffusersTrainer(x_train, matched_unet(config), recipe,
                                                totals[name], seed=seed_of(name))  # fmt: skip
        done = {k: 0 for k in totals}
        step_times: dict[str, list[float]] = {k: [] for k in totals}
        losses: dict[str, list[float]] = {k: [] for k in totals}

        def ours_step(name: str) -> float:
            return float(ours[name].train_step(done[name] + 1)[0])

        steps = {k: (lambda k=k: ours_step(k)) if k in ours else theirs[k].step for k in totals}
        turns = max(1, n_steps // args.chunk)  # round-robin turns, each row's share per turn
        for turn in range(1, turns + 1):
            for key, fn in steps.items():
                target = round(totals[key] * turn / turns)
                while done[key] < target:
                    start = time.perf_counter()
                    losses[key].append(fn())
                    step_times[key].append(time.perf_counter() - start)
                    done[key] += 1
            if turn % max(1, turns // 10) == 0 or turn == turns:
                log(", ".join(f"{k} {done[k]}/{totals[k]}" for k in done))
        params = {k: count_parameters(v.model) for k, v in ours.items()}
        params.update({k: count_parameters(v.model) for k, v in theirs.items()})
        batch = {**{k: v.config.batch_size for k, v in ours.items()},
                 **{k: v.batch_size for k, v in theirs.items()}}  # fmt: skip
        ema_ours = {k: v.ema.module.eval() for k, v in ours.items()}
    spent = {k: float(sum(v)) for k, v in step_times.items()}
    med = {k: float(np.median(v)) for k, v in step_times.items()}
    log("parameters: " + ", ".join(f"{k} {v:,}" for k, v in params.items()))

    # every model in both libraries' calling conventions
    as_diffusio: dict[str, DiffusionModel] = dict(ema_ours)
    as_diffusers: dict[str, nn.Module] = {k: TimestepNet(v).eval() for k, v in ema_ours.items()}
    for name, tr in theirs.items():
        unet = tr.ema_model()
        as_diffusers[name] = unet
        as_diffusio[name] = DiffusionModel(ContinuousTimeNet(unet, table_times), process, "eps")

    default_spacing = process.solver_spacing
    ours_grid = diffusio_grid_timesteps(20)
    shape = (1, 8, 8)
    samplers: dict[str, Any] = {
        "diffusio dpm-solver++ 20": lambda m, s: sample_images(
            as_diffusio[m], n, shape, "dpm-solver++", 20, seed=s),
        "diffusers DPMSolverMultistep 20": lambda m, s: diffusers_sample(
            as_diffusers[m], n, "DPMSolverMultistepScheduler", 20, s),
        "diffusers DPMSolverMultistep 20, diffusio's grid": lambda m, s: diffusers_sample(
            as_diffusers[m], n, "DPMSolverMultistepScheduler", 20, s, timesteps=ours_grid,
            final_sigmas_type="sigma_min"),
        "diffusers UniPC 20, exponential sigmas": lambda m, s: diffusers_sample(
            as_diffusers[m], n, "UniPCMultistepScheduler", 20, s, use_exponential_sigmas=True),
    }  # fmt: skip
    choices = heldout_choices(Path(args.heldout_from))
    theirs_choice = choices.get("diffusers_any_builtin_multistep")
    if theirs_choice is not None:
        samplers[f"diffusers held-out choice 20: {theirs_choice['label']}"] = (
            lambda m, s, c=theirs_choice: diffusers_sample(
                as_diffusers[m], n, c["cls"], 20, s, **c["kwargs"]))  # fmt: skip
    ours_choice = choices.get("diffusio_any_dpm_option")
    if ours_choice is not None and not ours_choice["default"]:
        opts = dict(ours_choice["options"])
        k = 19 if opts.get("denoise") else 20  # 20 network evaluations either way
        samplers[f"diffusio held-out choice 20: {ours_choice['label']}"] = (
            lambda m, s, o=opts, k=k: sample_images(
                as_diffusio[m], n, shape, "dpm-solver++", k, seed=s, **o))  # fmt: skip
    for spacing in GRID_SPACINGS:
        if spacing != default_spacing:
            samplers[f"diffusio dpm-solver++ 20, spacing={spacing}"] = (
                lambda m, s, sp=spacing: sample_images(
                    as_diffusio[m], n, shape, "dpm-solver++", 20, seed=s, spacing=sp)
            )  # fmt: skip
    pair = ["diffusio dpm-solver++ 20", "diffusers DPMSolverMultistep 20"]
    plan = {  # the example-recipe model and the extra training runs need the headline pair only
        "diffusio": list(samplers),
        "diffusers (matched)": list(samplers),
        "diffusers (example recipe)": list(pair),
        **{name: list(pair) for tag in extra for name in ("diffusio" + tag, matched + tag)},
    }  # fmt: skip
    if args.ddpm1000:
        samplers["diffusio ddpm 1000 (one seed)"] = lambda m, s: sample_images(
            as_diffusio[m], n, shape, "ddpm", 1000, seed=s)  # fmt: skip
        samplers["diffusers DDPMScheduler 1000 (one seed)"] = lambda m, s: diffusers_sample(
            as_diffusers[m], n, "DDPMScheduler", 1000, s)  # fmt: skip
        plan["diffusio"].append("diffusio ddpm 1000 (one seed)")
        plan["diffusers (matched)"].append("diffusers DDPMScheduler 1000 (one seed)")

    results: dict[str, dict[str, Any]] = {}
    for model_name, names in plan.items():
        results[model_name] = {}
        for sname in names:
            use = (0,) if "one seed" in sname else seeds
            fids, secs = [], []
            for seed in use:
                start = time.perf_counter()
                x = samplers[sname](model_name, seed)
                secs.append(time.perf_counter() - start)
                fids.append(float(evaluator.fid(x)))
            mean, se = mean_se(fids)
            results[model_name][sname] = {
                "fid": mean, "fid_se": None if math.isnan(se) else se, "fids": fids,
                "seeds": list(use), "sample_seconds": float(np.mean(secs)),
            }  # fmt: skip
            spread = "" if math.isnan(se) else f" +/- {se:.2f}"
            log(f"{model_name} | {sname}: FID {mean:.2f}{spread} ({np.mean(secs):.1f} s)")

    def cell(model: str, sname: str) -> dict[str, Any]:
        return results[model][sname]

    def compare(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float]:
        """b - a and b / a. Both used the same seeds, i.e. the same prior draws (diffusio's
        sampler and the diffusers loop draw ``randn`` from the same seeded generator), so the
        difference's error is the paired one; the unpaired one is given too."""
        diff, se = paired_difference(b["fids"], a["fids"])
        return {"difference": diff, "difference_se": se,
                "difference_se_unpaired": difference_se(a["fid_se"], b["fid_se"]),
                "ratio": b["fid"] / a["fid"]}  # fmt: skip

    if extra:  # the spread between training runs: each run's FID is its seed mean
        runs = {lib: [cell(lib + tag, sname)["fid"] for tag in ["", *extra]]
                for lib, sname in (("diffusio", pair[0]), (matched, pair[1]))}  # fmt: skip
        diff, dse = unpaired_difference(runs[matched], runs["diffusio"])
        training_seeds = {
            "what": "each library's own model and fast sampler, one FID (mean over the sampling "
            "seeds) per training run; mean ± se over training runs",
            "fids": runs, **{f"{lib}_mean_se": mean_se(v) for lib, v in runs.items()},
            "difference": diff, "difference_se": dse,
        }  # fmt: skip
    ours_fast = cell("diffusio", "diffusio dpm-solver++ 20")
    theirs_fast = cell("diffusers (matched)", "diffusers DPMSolverMultistep 20")
    headline = {
        "end_to_end_fast": {
            "what": "FID, each library's model and own DPM-Solver++ 20 (diffusers minus diffusio)",
            "diffusio": ours_fast["fid"], "diffusio_se": ours_fast["fid_se"],
            "diffusers_matched": theirs_fast["fid"], "diffusers_matched_se": theirs_fast["fid_se"],
            **compare(ours_fast, theirs_fast),
        },
        "models_same_sampler": {
            "what": "diffusers-trained minus diffusio-trained model, both with diffusio's sampler",
            **compare(ours_fast, cell("diffusers (matched)", "diffusio dpm-solver++ 20")),
        },
        "samplers_same_model": {
            "what": "diffusers' DPMSolverMultistep 20 minus diffusio's dpm-solver++ 20, per model",
            **{m: compare(cell(m, "diffusio dpm-solver++ 20"),
                          cell(m, "diffusers DPMSolverMultistep 20"))
               for m in ("diffusio", "diffusers (matched)")},
        },
        "solver_same_grid": {
            "what": "diffusers' DPMSolverMultistep on diffusio's grid minus diffusio's, per model",
            **{m: compare(cell(m, "diffusio dpm-solver++ 20"),
                          cell(m, "diffusers DPMSolverMultistep 20, diffusio's grid"))
               for m in ("diffusio", "diffusers (matched)")},
        },
        **({"training_seeds": training_seeds} if extra else {}),
        "throughput_equal_batch": {
            "what": "training samples/s at batch 128, diffusio over diffusers (matched): "
            "median step times (interleaved) and total training times",
            "ratio_median": med["diffusers (matched)"] / med["diffusio"],
            "ratio_total": spent["diffusers (matched)"] / spent["diffusio"],
        },
    }  # fmt: skip
    report = {
        "benchmark": "images",
        "quick": args.quick,
        "environment": environment(THREADS),
        "command": "benchmarks/images.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "budget": f"{n_steps} steps at batch 128 (diffusio, diffusers matched); the "
        "example-recipe row: the same CPU time by the probe's median step times",
        "probe_median_step_seconds": probe,
        "fid_floor": evaluator.noise_floor(min(n, evaluator.test_size)),
        "n_samples": n,
        "sampling_seeds": list(seeds),
        "feature_space": evaluator.feature_space,
        "clipping": "x0 clipped to [-1, 1] at every step on both sides: diffusio ClipX0; "
        "diffusers thresholding=True, sample_max_value=1 (threshold clamped to [1, 1] = plain "
        "clipping); DDPMScheduler clip_sample=True",
        "diffusio_default_spacing": default_spacing,
        "diffusio_grid_as_timesteps_20": ours_grid,
        "heldout_choices_from": args.heldout_from if choices else None,
        "models": {
            k: {
                "params": params[k], "steps": totals[k], "batch_size": batch[k],
                "train_seconds": spent[k], "median_step_seconds": med[k],
                "train_samples_per_sec": totals[k] * batch[k] / spent[k],
                "train_samples_per_sec_at_median": batch[k] / med[k],
                "final_loss": final_loss(losses[k]),
                "training_seed": seed_of(k),
                "recipe": f"diffusio {PRESET} preset (Trainer)" if k.startswith("diffusio")
                else dict(recipes[example if k == example else matched]),
            }
            for k in totals
        },
        "results": results,
        "headline": headline,
        "seconds": time.perf_counter() - t_start,
    }  # fmt: skip
    write_json_atomic(args.out, report, strict=True)
    print(markdown(report))
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
