"""GPU paths of the image recipe: device placement, mixed precision, throughput, guidance.

Trains the ``digits-ddpm`` preset on the GPU (when there is one) in fp32 and in bf16 mixed
precision, samples each run on the device with DPM-Solver++ and DDIM, scores the samples with
the digits-FID, trains a short class-conditional run and samples it with classifier-free
guidance on the device. Also, with ``--steps-sweep``, the digits-FID reached after several
training budgets (each a full run with its own cosine schedule), to choose the CPU demo's
budget. Writes ``benchmarks/results/gpu_paths.json``.

    python benchmarks/gpu_paths.py [--steps 2000] [--steps-sweep 500,1000,2000,4000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from _common import ROOT, environment

from diffusio.image.sampling import balanced_labels, sample_images
from diffusio.metrics.fid import ImageEvaluator
from diffusio.train.config import load_config
from diffusio.train.trainer import Trainer


def train(preset: str, out: Path, **overrides) -> tuple[Trainer, dict]:
    trainer = Trainer(load_config(preset, **overrides), out, progress=False)
    summary = trainer.fit()
    return trainer, summary


def score(trainer: Trainer, evaluator: ImageEvaluator, sampler: str, steps: int, **kw) -> dict:
    model = trainer.ema.module.eval()
    n = evaluator.test_size
    start = time.perf_counter()
    x = sample_images(model, n, (1, 8, 8), sampler, steps, seed=0, **kw)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    result = evaluator.evaluate(x, kw.get("labels"))
    return {"sampler": sampler, "steps": steps, "sample_seconds": seconds,
            "device": str(model.device), **{k: result[k] for k in ("fid", "fid_floor")},
            **({"accuracy": result["accuracy"]} if "accuracy" in result else {})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--steps-sweep", default="")
    parser.add_argument("--only-sweep", action="store_true", help="skip the precision/CFG part")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gpu_paths.json"))
    args = parser.parse_args()
    evaluator = ImageEvaluator("digits")
    report: dict = {"environment": environment(torch.get_num_threads()),
                    "cuda": torch.cuda.is_available(),
                    "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}
    with tempfile.TemporaryDirectory() as tmp:
        for precision in () if args.only_sweep else ("no", "bf16"):
            trainer, summary = train("digits-ddpm", Path(tmp) / precision, steps=args.steps,
                                     mixed_precision=precision)
            report[f"train_{precision}"] = {
                "steps": args.steps, "steps_per_sec": summary["steps_per_sec"],
                "loss": summary["loss"], "param_device": str(trainer.model.device),
                "ema_device": str(trainer.ema.module.device),
                "samples": [score(trainer, evaluator, "dpm-solver++", 20),
                            score(trainer, evaluator, "ddim", 50)],
            }
            print(json.dumps(report[f"train_{precision}"]), flush=True)
        if not args.only_sweep:
            trainer, summary = train("digits-ddpm-cond", Path(tmp) / "cond", steps=args.steps)
            labels = balanced_labels(evaluator.test_size, 10)
            report["cfg"] = [
                score(trainer, evaluator, "ddim", 50, labels=labels, guidance_weight=w)
                for w in (0.0, 1.0, 3.0)
            ]
            print(json.dumps(report["cfg"]), flush=True)
        sweep = [int(s) for s in args.steps_sweep.split(",") if s]
        report["sweep"] = []
        for steps in sweep:
            trainer, summary = train("digits-ddpm", Path(tmp) / f"s{steps}", steps=steps)
            row = {"train_steps": steps, "train_seconds": summary["seconds"],
                   "samples": [score(trainer, evaluator, "dpm-solver++", 20),
                               score(trainer, evaluator, "ddpm", 1000)]}
            report["sweep"].append(row)
            print(json.dumps(row), flush=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
