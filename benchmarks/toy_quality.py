"""Sample quality of the toy-8gaussians preset against the noise floor (the issue's 2x target).

Trains the preset (or reuses a finished run in ``--run``), then, for each sampler, draws
``--draws`` independent sample sets of ``--n`` points and scores each with the unbiased MMD^2 at
the modes' scale (bandwidth 0.354 = 0.5 / 1.414) against its own fresh reference set. Because the
unbiased MMD^2 scatters around 0 between exact sets, both the model's value and the floor are
root-mean-squares over independent draws: an exact sampler scores a ratio of about 1. Writes
``benchmarks/results/toy_quality.json``.

    .venv/bin/python benchmarks/toy_quality.py [--run runs/toy-8gaussians] [--steps N]
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from _common import ROOT, environment

from diffusio.data.toys import sample_toy  # noqa: E402
from diffusio.io import write_json_atomic  # noqa: E402
from diffusio.metrics import floor_draws, mmd  # noqa: E402
from diffusio.toy.sweep import SamplerRun, run_sampler  # noqa: E402
from diffusio.train.config import load_config, load_run  # noqa: E402
from diffusio.train.trainer import Trainer  # noqa: E402

BANDWIDTH = 0.5 / 1.414
SAMPLERS = (("ode-heun", 50), ("dpm-solver++", 20))


def rms(values: list[float]) -> float:
    return math.sqrt(sum(v * v for v in values) / len(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/toy-8gaussians", help="run directory")
    parser.add_argument("--steps", type=int, default=None, help="override the preset's steps")
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--draws", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)

    overrides = {"steps": args.steps} if args.steps else {}
    config = load_config("toy-8gaussians", **overrides)
    t0 = time.perf_counter()
    Trainer(config, args.run).fit(resume=True)
    train_seconds = time.perf_counter() - t0
    model, _, normalizer = load_run(args.run)

    def reference(n: int, seed: int) -> torch.Tensor:
        return sample_toy("8gaussians", n, seed=seed)

    def metric(a: torch.Tensor, b: torch.Tensor) -> float:
        return mmd(a, b, bandwidth=BANDWIDTH)

    # the noise floor: exact pairs (seeds 1000 + 2k, 1001 + 2k), the library's one floor code
    floor = rms(floor_draws({"mmd": metric}, reference, args.n, args.draws, seed=1000)["mmd"])
    results = {}
    for name, steps in SAMPLERS:
        values = []
        for k in range(args.draws):  # one toy-sweep run per draw
            x = run_sampler(model, SamplerRun(name, name, steps), args.n, k,
                            to_data=normalizer.inverse).samples
            values.append(metric(x, reference(args.n, 500 + k)))
        results[f"{name}:{steps}"] = {"rms": rms(values), "ratio": rms(values) / floor}
        print(f"{name} {steps}: MMD^2 rms {rms(values):.3g} = {rms(values) / floor:.2f}x floor")
    out = {
        "environment": environment(1),
        "config_steps": config.steps,
        "train_seconds_this_call": train_seconds,
        "n": args.n,
        "draws": args.draws,
        "bandwidth": BANDWIDTH,
        "floor_rms": floor,
        "samplers": results,
    }
    path = write_json_atomic(ROOT / "benchmarks" / "results" / "toy_quality.json", out)
    print(f"floor {floor:.3g}; wrote {path}")


if __name__ == "__main__":
    main()
