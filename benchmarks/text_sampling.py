"""Masked-diffusion text sampling cost: network calls and wall time of MDLM's ancestral sampler
with and without caching (Sahoo et al. 2024, ``ddpm_cache``), one token per call, and AR
sampling, on one trained model in one run.

    nice -n 19 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/text_sampling.py \\
        [--quick] [--out benchmarks/results/text_sampling.json]

The models are text-2020's equal-compute MDLM and AR (the shared model cache: a finished
``diffusio reproduce text-2020`` run is reused, else they are trained first; ``--quick`` uses
the quick run's models). For each number of steps T, the uncached and the cached sampler draw
the same batch from the same seed (the samples must be identical: checked), and the speed-up is
the ratio of their median times over ``repeats`` in this run. The AR sampler has no key/value
cache (each of its L calls runs the whole prefix), which the table says next to its time.
One torch thread.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, median, timed  # noqa: E402

from diffusio.io import write_json_atomic  # noqa: E402

THREADS = 1
SETTINGS = {
    "default": {"batch": 16, "repeats": 3, "multiples": (0.5, 1, 2, 4, 8)},
    "quick": {"batch": 8, "repeats": 2, "multiples": (1, 4)},
}


def timed_result(fn: Any, repeats: int) -> tuple[float, Any]:
    """Median seconds over ``repeats`` calls of ``fn`` (:func:`_common.timed`) and its result."""
    out: list[Any] = []
    seconds = median([timed(lambda: out.append(fn())) for _ in range(repeats)])
    return seconds, out[-1]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="benchmarks/results/text_sampling.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(THREADS)
    cfg = SETTINGS["quick" if args.quick else "default"]

    from diffusio.papers.text_2020 import Text2020
    from diffusio.text import Vocabulary, named_splits

    repro = Text2020(Text2020.settings(args.quick), tempfile.mkdtemp(), quick=args.quick)
    s = repro.s
    sp = named_splits(s.corpus)
    vocab = Vocabulary.from_text([sp.train, sp.validation, sp.test])
    models = {k: repro.model(k, sp.train, sp.validation, vocab, "full", s.steps, s.eval_every)[0]
              for k in ("mdlm", "ar")}  # fmt: skip
    L, n = s.length, cfg["batch"]

    def draw(kind: str, **options: Any) -> Any:
        return models[kind].sample(n, generator=torch.Generator().manual_seed(0), **options)

    rows = []
    for m in cfg["multiples"]:
        steps = max(1, int(m * L))
        t_plain, plain = timed_result(lambda st=steps: draw("mdlm", steps=st, sampler="ancestral"),
                               cfg["repeats"])  # fmt: skip
        t_cache, cached = timed_result(lambda st=steps: draw("mdlm", steps=st, sampler="cached"),
                                cfg["repeats"])  # fmt: skip
        rows.append({"steps": steps, "steps_per_length": m,
                     "calls_plain": float(plain.calls.double().mean()),
                     "calls_cached": float(cached.calls.double().mean()),
                     "seconds_plain": t_plain, "seconds_cached": t_cache,
                     "speedup": t_plain / t_cache,
                     "identical": bool(torch.equal(plain.tokens, cached.tokens))})  # fmt: skip
        print(f"T = {steps:4d}: calls {rows[-1]['calls_plain']:.0f} -> "
              f"{rows[-1]['calls_cached']:.1f}, {t_plain:.2f} s -> {t_cache:.2f} s "
              f"({rows[-1]['speedup']:.1f}x), identical {rows[-1]['identical']}")
    t_one, one = timed_result(lambda: draw("mdlm", sampler="one-token"), cfg["repeats"])
    t_ar, _ = timed_result(lambda: draw("ar"), cfg["repeats"])
    result = {
        "benchmark": "text_sampling", "environment": environment(THREADS), "settings": cfg,
        "length": L, "batch": n, "parameters": sum(p.numel() for p in models["ar"].parameters()),
        "cache": rows,
        "one_token": {"calls": float(one.calls.double().mean()), "seconds": t_one},
        "ar": {"calls": L, "seconds": t_ar, "note": "no key/value cache: call j runs j tokens"},
    }  # fmt: skip
    print(f"one token per call: {t_one:.2f} s ({L} calls); AR: {t_ar:.2f} s ({L} calls)")
    write_json_atomic(Path(args.out), result)
    return result


if __name__ == "__main__":
    main()
