"""diffusio's DDPM recipe vs diffusers' at an equal CPU-time training budget, on digits.

    .venv/bin/python benchmarks/images.py [--budget 240] [--quick] [--out FILE]

* diffusio: the ``digits-ddpm`` preset (U-Net of :mod:`diffusio.nets.unet`, L_simple on the
  discrete DDPM schedule, batch 128, AdamW 1e-3 with warm-up and cosine decay, EMA 0.999),
  trained with :class:`diffusio.train.trainer.Trainer` steps.
* diffusers: ``UNet2DModel`` + ``DDPMScheduler`` trained the way diffusers'
  ``examples/unconditional_image_generation/train_unconditional.py`` does by default: batch 16,
  AdamW lr 1e-4 (betas 0.95/0.999, weight decay 1e-6), 500 warm-up steps then cosine decay,
  EMA with warm-up (inv_gamma 1, power 3/4, max decay 0.9999), gradient clipping at 1, epsilon
  MSE on integer timesteps of the linear schedule (T = 1000); the U-Net's levels scaled to 8x8
  images (block_out_channels (32, 64), attention at the 4x4 level, 2 layers per block).

Both train in the same process, interleaved in chunks of ``--chunk`` seconds so that both see the
same machine load, for the same total wall-clock budget, each with the cosine schedule set to the
number of steps its measured speed allows. Then both are sampled (their own 1000-step ancestral
sampler, which the example uses for its evaluation images, and a fast solver each: diffusio's
DPM-Solver++ 20 steps, diffusers' ``DPMSolverMultistepScheduler`` 20 steps) and scored with the
digits-FID at n = 359 (the held-out split; its noise floor is reported). Writes JSON.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, environment  # noqa: E402

from diffusio.data.datasets import load_image_dataset  # noqa: E402
from diffusio.image.sampling import sample_images  # noqa: E402
from diffusio.io import write_json_atomic  # noqa: E402
from diffusio.metrics.fid import ImageEvaluator  # noqa: E402
from diffusio.nets import count_parameters  # noqa: E402
from diffusio.train.config import load_config  # noqa: E402
from diffusio.train.trainer import Trainer  # noqa: E402

THREADS = 2


class DiffusersRecipe:
    """diffusers' unconditional training example, one step at a time."""

    def __init__(self, data: torch.Tensor, total_steps: int, seed: int = 0):
        from diffusers import DDPMScheduler, UNet2DModel
        from diffusers.optimization import get_cosine_schedule_with_warmup
        from diffusers.training_utils import EMAModel

        torch.manual_seed(seed)
        self.data = data
        self.model = UNet2DModel(
            sample_size=8, in_channels=1, out_channels=1, layers_per_block=2,
            block_out_channels=(32, 64), down_block_types=("DownBlock2D", "AttnDownBlock2D"),
            up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        )  # fmt: skip
        self.scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=1e-4, betas=(0.95, 0.999), weight_decay=1e-6, eps=1e-8
        )
        self.lr_schedule = get_cosine_schedule_with_warmup(self.optimizer, 500, total_steps)
        self.ema = EMAModel(
            self.model.parameters(), decay=0.9999, use_ema_warmup=True, inv_gamma=1.0, power=0.75
        )
        self.generator = torch.Generator().manual_seed(seed)
        self.batch_size = 16

    def step(self) -> float:
        idx = torch.randint(len(self.data), (self.batch_size,), generator=self.generator)
        x0 = self.data[idx]
        noise = torch.randn(x0.shape, generator=self.generator)
        t = torch.randint(0, 1000, (self.batch_size,), generator=self.generator)
        noisy = self.scheduler.add_noise(x0, noise, t)
        loss = nn.functional.mse_loss(self.model(noisy, t).sample, noise)
        self.optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.lr_schedule.step()
        self.ema.step(self.model.parameters())
        return float(loss)

    @torch.no_grad()
    def sample(self, n: int, scheduler_name: str, steps: int, seed: int = 0) -> torch.Tensor:
        import diffusers

        model = copy.deepcopy(self.model)
        self.ema.copy_to(model.parameters())
        model.eval()
        cls = getattr(diffusers, scheduler_name)
        scheduler = cls.from_config(self.scheduler.config)
        scheduler.set_timesteps(steps)
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn((n, 1, 8, 8), generator=gen) * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            eps = model(scheduler.scale_model_input(x, t), t).sample
            kwargs = {"generator": gen} if scheduler_name == "DDPMScheduler" else {}
            x = scheduler.step(eps, t, x, **kwargs).prev_sample
        return x.clamp(-1, 1)


def measure_speed(step, seconds: float = 8.0, min_steps: int = 5) -> float:
    """Steps per second of ``step()`` over about ``seconds`` (after two warm-up steps)."""
    step()
    step()
    n, start = 0, time.perf_counter()
    while n < min_steps or time.perf_counter() - start < seconds:
        step()
        n += 1
    return n / (time.perf_counter() - start)


def final_loss(losses: list[float], last: int = 200) -> float:
    """Mean eps-MSE of the last ``last`` training steps (both sides use the same loss)."""
    tail = losses[-last:]
    return float(np.mean(tail)) if tail else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=240.0, help="training seconds each")
    parser.add_argument("--chunk", type=float, default=15.0, help="interleaving chunk seconds")
    parser.add_argument("--quick", action="store_true", help="60 s each, fewer samples")
    parser.add_argument("--samples", type=int, default=0, help="images scored (default: 359)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "images.json"))
    args = parser.parse_args()
    budget = 60.0 if args.quick else args.budget
    torch.set_num_threads(THREADS)
    x_train, _ = load_image_dataset("digits", "train")
    evaluator = ImageEvaluator("digits")
    n = args.samples or evaluator.test_size

    # speed probes (thrown away) decide each side's step count for the budget
    config = load_config("digits-ddpm")
    probe = Trainer(config, Path("/nonexistent-unused"), progress=False)
    ours_rate = measure_speed(lambda: probe.train_step(1))
    theirs_rate = measure_speed(DiffusersRecipe(x_train, 10_000).step)
    ours_steps = max(50, int(ours_rate * budget))
    theirs_steps = max(50, int(theirs_rate * budget))

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(config.replace(steps=ours_steps), Path(tmp) / "run", progress=False)
        torch.manual_seed(config.seed)
        theirs = DiffusersRecipe(x_train, theirs_steps)
        done = {"ours": 0, "theirs": 0}
        spent = {"ours": 0.0, "theirs": 0.0}
        totals = {"ours": ours_steps, "theirs": theirs_steps}
        losses: dict[str, list[float]] = {"ours": [], "theirs": []}

        def ours_step() -> float:
            return float(trainer.train_step(done["ours"] + 1)[0])

        steps = {"ours": ours_step, "theirs": theirs.step}
        while any(done[k] < totals[k] for k in done):
            for key in ("ours", "theirs"):
                start = time.perf_counter()
                while done[key] < totals[key] and time.perf_counter() - start < args.chunk:
                    losses[key].append(steps[key]())
                    done[key] += 1
                spent[key] += time.perf_counter() - start
            print(f"ours {done['ours']}/{ours_steps}, theirs {done['theirs']}/{theirs_steps}",
                  flush=True)  # fmt: skip
        ours_model = trainer.ema.module.eval()

        results: dict[str, Any] = {}

        def score(name: str, fn, seeds: tuple[int, ...] = (0,)) -> None:
            fids, seconds = [], []
            for seed in seeds:
                start = time.perf_counter()
                x = fn(seed)
                seconds.append(time.perf_counter() - start)
                fids.append(evaluator.fid(x))
            entry = {"fid": float(np.mean(fids)), "fids": fids, "seeds": list(seeds),
                     "sample_seconds": float(np.mean(seconds))}  # fmt: skip
            if len(seeds) > 1:
                entry["fid_std"] = float(np.std(fids, ddof=1))
            results[name] = entry
            spread = f" +/- {entry['fid_std']:.2f}" if len(seeds) > 1 else ""
            print(f"{name}: FID {entry['fid']:.2f}{spread} ({entry['sample_seconds']:.1f} s)",
                  flush=True)  # fmt: skip

        shape = (1, 8, 8)
        seeds = (0, 1, 2)  # the FID's sampling noise at this n, for the fast samplers
        score("diffusio dpm-solver++ 20", lambda seed: sample_images(
            ours_model, n, shape, "dpm-solver++", 20, seed=seed), seeds)  # fmt: skip
        score("diffusers DPMSolverMultistep 20", lambda seed: theirs.sample(
            n, "DPMSolverMultistepScheduler", 20, seed=seed), seeds)  # fmt: skip
        score("diffusio ddpm 1000", lambda seed: sample_images(
            ours_model, n, shape, "ddpm", 1000, seed=seed))  # fmt: skip
        score("diffusers DDPMScheduler 1000", lambda seed: theirs.sample(
            n, "DDPMScheduler", 1000, seed=seed))  # fmt: skip

    report = {
        "environment": environment(THREADS),
        "budget_seconds_each": budget,
        "fid_floor": evaluator.noise_floor(min(n, evaluator.test_size)),
        "n_samples": n,
        "feature_space": evaluator.feature_space,
        "diffusio": {
            "params": count_parameters(trainer.model), "steps": ours_steps,
            "batch_size": config.batch_size, "train_seconds": spent["ours"],
            "train_samples_per_sec": ours_steps * config.batch_size / spent["ours"],
            "final_loss": final_loss(losses["ours"]),
        },
        "diffusers": {
            "params": count_parameters(theirs.model), "steps": theirs_steps, "batch_size": 16,
            "train_seconds": spent["theirs"],
            "train_samples_per_sec": theirs_steps * 16 / spent["theirs"],
            "final_loss": final_loss(losses["theirs"]),
            "version": __import__("diffusers").__version__,
        },
        "results": results,
    }
    ratio = results["diffusers DPMSolverMultistep 20"]["fid"] / results["diffusio dpm-solver++ 20"][
        "fid"
    ]
    report["fid_ratio_diffusers_over_diffusio_fast"] = ratio
    write_json_atomic(args.out, report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
