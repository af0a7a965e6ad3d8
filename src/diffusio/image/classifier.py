"""A noise-aware image classifier for classifier guidance (Dhariwal & Nichol 2021, Sec. 4.1).

Classifier guidance needs ``grad_x log p(y | x_t)`` at every noise level the sampler visits, so
the classifier is trained on *noisy* images: ``x_t = alpha(t) x0 + sigma(t) eps`` from the same
forward process as the diffusion model, at ``t`` drawn uniformly from the process's discrete
table, with the time as an input. Like ADM's classifier (the ``EncoderUNetModel`` of the
guided-diffusion code), :class:`NoisyClassifier` is the downsampling half of the U-Net --
residual blocks with the sinusoidal time embedding injected by adaptive group norm, strided
down-sampling, a middle block -- followed by attention pooling and a linear head::

    emb = SiLU(Linear(SiLU(Linear(sinusoidal(1000 t)))))                  width 4 c
    h = conv3x3(x); per level i: num_res_blocks x ResBlock(c * mult_i) (+ attention),
                    stride-2 conv3x3 between levels
    middle: ResBlock (+ attention if ``middle_attention``)
    logits = Linear(AttentionPool(SiLU(GroupNorm(h))))      (or the spatial mean, pool="mean")

The blocks are :mod:`diffusio.nets.unet`'s own. The attention pooling is ADM's (from CLIP): the
spatial mean is prepended as a query token, a learned position embedding is added, and one
multi-head attention layer's output at that token is the pooled feature.

* :class:`NoisyClassifier` -- ``classifier(x_t, t) -> logits``; ``t`` continuous in [0, 1].
* :func:`train_noisy_classifier` -- cross-entropy on noisy training images; deterministic
  given ``seed``, leaves the global RNG untouched.
* :func:`accuracy_by_noise` -- test accuracy against the noise level (falls to chance, 1 / K,
  as ``t -> 1``: nothing is left of the image).
* :func:`save_noisy_classifier` / :func:`load_noisy_classifier` -- safetensors with the
  constructor options in the metadata.
* :func:`noisy_classifier` -- the classifier for a diffusion model's process and data, trained
  once and cached by the hash of its recipe (``$DIFFUSIO_CACHE/models``, next to the models).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.functional import scaled_dot_product_attention, silu

from ..core.processes import Process
from ..io import cache_root, json_hash
from ..nets.mlp import EMBEDDINGS, _choice
from ..nets.unet import _Attention, _Downsample, _norm, _ResBlock, _Step

__all__ = [
    "NoisyClassifier",
    "accuracy_by_noise",
    "classifier_cache_path",
    "load_noisy_classifier",
    "noisy_classifier",
    "save_noisy_classifier",
    "train_noisy_classifier",
]

_FORMAT = "diffusio-noisy-classifier-v1"
POOLS = ("attention", "mean")


class _AttentionPool(nn.Module):
    """ADM's ``AttentionPool2d`` (after CLIP): the spatial mean attends over itself and every
    position (with a learned position embedding); its output is the pooled feature."""

    def __init__(self, ch: int, positions: int, num_heads: int, out_dim: int):
        super().__init__()
        self.num_heads = num_heads
        self.position = nn.Parameter(torch.randn(ch, positions + 1) / ch**0.5)
        self.qkv = nn.Conv1d(ch, 3 * ch, 1)
        self.proj = nn.Conv1d(ch, out_dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        n, c = x.shape[:2]
        h = x.reshape(n, c, -1)
        h = torch.cat([h.mean(dim=-1, keepdim=True), h], dim=-1)
        if h.shape[-1] != self.position.shape[-1]:
            raise ValueError(
                f"attention pooling was built for {self.position.shape[-1] - 1} positions, "
                f"got {h.shape[-1] - 1} (the classifier's image_size fixes the input size)"
            )
        h = h + self.position.to(h.dtype)
        qkv = self.qkv(h).reshape(n, 3, self.num_heads, c // self.num_heads, h.shape[-1])
        q, k, v = qkv.transpose(-1, -2).unbind(1)  # each (N, heads, L, head_dim)
        out = scaled_dot_product_attention(q[:, :, :1], k, v)  # only the mean token's query
        out = out.transpose(-1, -2).reshape(n, c, 1)
        return self.proj(out)[:, :, 0]


class NoisyClassifier(nn.Module):
    """``classifier(x_t, t) -> logits`` for images x_t (N, C, H, W) noised to time t (N,) or ().

    Args:
        in_channels: image channels.
        image_size: side length (fixes the attention pooling's positions).
        num_classes: number of classes K.
        channels: base width c; level i has width ``c * channel_mults[i]``, the embedding 4 c.
        channel_mults: one multiplier per resolution; each level after the first halves the size.
        num_res_blocks: residual blocks per level.
        attention_resolutions: feature-map sizes whose residual blocks get self-attention.
        middle_attention: self-attention in the middle block (as ADM's encoder).
        num_heads: attention heads (attention blocks and pooling).
        groups: GroupNorm groups (lowered to a divisor of each width).
        dropout: dropout inside the residual blocks.
        pool: ``"attention"`` (ADM) or ``"mean"`` (global average pooling).
        embedding: time embedding, ``"sinusoidal"`` (as the U-Net) or ``"fourier"``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 8,
        num_classes: int = 10,
        channels: int = 32,
        channel_mults: Sequence[int] = (1, 2),
        num_res_blocks: int = 1,
        attention_resolutions: Sequence[int] = (),
        middle_attention: bool = False,
        num_heads: int = 4,
        groups: int = 8,
        dropout: float = 0.0,
        pool: str = "attention",
        embedding: str = "sinusoidal",
    ):
        super().__init__()
        mults = tuple(int(m) for m in channel_mults)
        attn_res = tuple(int(r) for r in attention_resolutions)
        for label, value in (
            ("in_channels", in_channels), ("image_size", image_size),
            ("num_classes", num_classes), ("channels", channels),
            ("num_res_blocks", num_res_blocks), ("num_heads", num_heads), ("groups", groups),
        ):  # fmt: skip
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"{label} must be an integer >= 1, got {value!r}")
        if not mults or min(mults) < 1:
            raise ValueError(f"channel_mults must be positive integers, got {channel_mults!r}")
        if pool not in POOLS:
            raise ValueError(f"unknown pool {pool!r}; valid: {', '.join(POOLS)}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")
        factor = 2 ** (len(mults) - 1)
        if image_size % factor:
            raise ValueError(f"image_size {image_size} must be divisible by {factor}")
        width = channels * mults[-1]
        if width % num_heads:
            raise ValueError(f"num_heads {num_heads} must divide the last width {width}")
        self.options: dict[str, Any] = {
            "in_channels": int(in_channels), "image_size": int(image_size),
            "num_classes": int(num_classes), "channels": int(channels),
            "channel_mults": list(mults), "num_res_blocks": int(num_res_blocks),
            "attention_resolutions": list(attn_res), "middle_attention": bool(middle_attention),
            "num_heads": int(num_heads), "groups": int(groups), "dropout": float(dropout),
            "pool": pool, "embedding": str(embedding).lower(),
        }  # fmt: skip
        self.image_size, self.in_channels = int(image_size), int(in_channels)
        self.num_classes = int(num_classes)
        embed_cls = _choice("embedding", embedding, EMBEDDINGS)
        emb_dim = 4 * channels
        self.time_embed = nn.Sequential(
            embed_cls(channels), nn.Linear(channels, emb_dim), nn.SiLU(),
            nn.Linear(emb_dim, emb_dim),
        )  # fmt: skip
        self.input = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.down = nn.ModuleList()
        ch, size = channels, int(image_size)
        for i, mult in enumerate(mults):
            for _ in range(num_res_blocks):
                res = _ResBlock(ch, channels * mult, emb_dim, dropout, True, groups)
                ch = channels * mult
                attn = _Attention(ch, num_heads, groups) if size in attn_res else None
                self.down.append(_Step(res, attn))
            if i < len(mults) - 1:
                self.down.append(_Downsample(ch, True))
                size //= 2
        self.middle = _Step(
            _ResBlock(ch, ch, emb_dim, dropout, True, groups),
            _Attention(ch, num_heads, groups) if middle_attention else None,
        )
        self.out_norm = _norm(ch, groups)
        self.pool = _AttentionPool(ch, size * size, num_heads, ch) if pool == "attention" else None
        self.head = nn.Linear(ch, num_classes)

    def forward(self, x: Tensor, t: Tensor | float) -> Tensor:
        """Class logits (N, K) of noisy images ``x`` at times ``t`` (N,), a scalar, or ()."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected images (N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        emb = self.time_embed(t.to(x.dtype))
        h = self.input(x)
        for layer in self.down:
            h = layer(h, emb)
        h = self.middle(h, emb)
        h = silu(self.out_norm(h))
        pooled = h.mean(dim=(2, 3)) if self.pool is None else self.pool(h)
        return self.head(pooled)


# --------------------------------------------------------------------------- training
def _noisy_batch(
    process: Process, x0: Tensor, times: Tensor, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """``(x_t, t)``: each image noised to a time drawn uniformly from ``times``."""
    idx = torch.randint(0, len(times), (x0.shape[0],), generator=generator)
    t = times[idx].to(x0.dtype)
    eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    return process.marginal(x0, t, eps), t


def train_noisy_classifier(
    process: Process,
    x: Tensor,
    y: Tensor,
    steps: int = 2000,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    progress: bool = False,
    *,
    weight_decay: float = 0.05,
    warmup: int = 100,
    grad_clip: float = 1.0,
    log: list[dict[str, float]] | None = None,
    log_every: int = 50,
    **options: Any,
) -> NoisyClassifier:
    """Train a :class:`NoisyClassifier` (built from ``options``; ``in_channels``,
    ``image_size`` and ``num_classes`` default to the data's) by cross-entropy on
    ``x_t = process.marginal(x0, t, eps)`` with ``t`` uniform over ``process.discrete().times``
    (Dhariwal & Nichol 2021, Sec. 4.1).

    AdamW (``lr``, ``weight_decay``), linear warm-up for ``warmup`` steps then cosine decay,
    gradient clipping at ``grad_clip``; batches of ``batch_size`` drawn with replacement. One
    ``torch.Generator`` seeded with ``seed`` draws the batches, times and noise, and the weights
    are initialised (and dropout drawn) under a forked global RNG seeded with ``seed``: the result
    depends only on the arguments (on one machine and torch build), and the caller's global RNG
    is left as it was. ``log``, if given, receives ``{"step", "loss", "accuracy"}`` (means over
    ``log_every`` steps). Returns the model in eval mode on the CPU.
    """
    x = torch.as_tensor(x).detach().to("cpu", torch.float32)
    y = torch.as_tensor(y).detach().to("cpu").long().reshape(-1)
    if x.dim() != 4 or x.shape[0] != y.shape[0] or x.shape[0] < 1:
        raise ValueError(
            f"need images (N, C, H, W) and N labels, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    if int(steps) < 1 or int(batch_size) < 1:
        raise ValueError(f"steps and batch_size must be >= 1, got {steps}, {batch_size}")
    options.setdefault("in_channels", int(x.shape[1]))
    options.setdefault("image_size", int(x.shape[-1]))
    options.setdefault("num_classes", int(y.max()) + 1)
    times = process.discrete().times.to(torch.float32)
    steps = int(steps)
    gen = torch.Generator().manual_seed(int(seed))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc="noisy classifier", dynamic_ncols=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = NoisyClassifier(**options)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)

        def rate(k: int) -> float:
            if k < warmup:
                return (k + 1) / warmup
            return 0.5 * (1.0 + math.cos(math.pi * (k - warmup) / max(steps - warmup, 1)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, rate)
        model.train()
        loss_sum, correct, seen = 0.0, 0, 0
        for step in range(1, steps + 1):
            idx = torch.randint(0, x.shape[0], (int(batch_size),), generator=gen)
            xt, t = _noisy_batch(process, x[idx], times, gen)
            logits = model(xt, t)
            loss = nn.functional.cross_entropy(logits, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            opt.step()
            sched.step()
            loss_sum += float(loss.detach())
            correct += int((logits.argmax(1) == y[idx]).sum())
            seen += len(idx)
            if step % log_every == 0 or step == steps:
                n_steps = (step - 1) % log_every + 1
                record = {"step": step, "loss": loss_sum / n_steps, "accuracy": correct / seen}
                if log is not None:
                    log.append(record)
                if bar is not None:
                    bar.set_postfix(loss=f"{record['loss']:.3f}", acc=f"{record['accuracy']:.2f}")
                loss_sum, correct, seen = 0.0, 0, 0
            if bar is not None:
                bar.update()
    if bar is not None:
        bar.close()
    return model.eval()


@torch.no_grad()
def accuracy_by_noise(
    classifier: nn.Module,
    process: Process,
    x: Tensor,
    y: Tensor,
    indices: Sequence[int] | None = None,
    seed: int = 0,
    batch_size: int = 1000,
) -> list[dict[str, float]]:
    """Accuracy of ``classifier(x_t, t)`` on ``x`` noised to each of the process's discrete
    levels ``indices`` (default: 0, 100, 200, ..., and the last), with noise from a generator
    seeded with ``seed`` (the same noise at every level). Rows: ``index``, ``t``, ``alpha_bar``
    (``alpha(t)^2``), ``snr`` (``alpha^2 / sigma^2``) and ``accuracy``."""
    table = process.discrete()
    T = len(table)
    if indices is None:
        indices = sorted({*range(0, T, max(T // 10, 1)), T - 1})
    x = torch.as_tensor(x).detach().to("cpu", torch.float32)
    y = torch.as_tensor(y).detach().to("cpu").long().reshape(-1)
    eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(int(seed)))
    rows = []
    for i in indices:
        i = int(i)
        if not 0 <= i < T:
            raise ValueError(f"level {i} outside the grid 0..{T - 1}")
        t = torch.full((x.shape[0],), float(table.times[i]), dtype=torch.float32)
        xt = process.marginal(x, t, eps)
        pred = torch.cat(
            [classifier(a, b).argmax(1) for a, b in zip(xt.split(batch_size), t.split(batch_size),
                                                        strict=True)]
        )  # fmt: skip
        a, s = float(table.alphas[i]), float(table.sigmas[i])
        rows.append(
            {
                "index": i,
                "t": float(table.times[i]),
                "alpha_bar": a * a,
                "snr": a * a / (s * s),
                "accuracy": float((pred == y).double().mean()),
            }
        )
    return rows


# --------------------------------------------------------------------------- files
def save_noisy_classifier(
    model: NoisyClassifier, path: str | os.PathLike, metadata: dict[str, Any] | None = None
) -> Path:
    """Write the weights as safetensors (atomically) with the constructor options and
    ``metadata`` (JSON-able values) in the header."""
    from ..io import write_safetensors

    meta = {"format": _FORMAT, "options": json.dumps(model.options, sort_keys=True)}
    meta["metadata"] = json.dumps(metadata or {}, sort_keys=True)
    return write_safetensors(path, model.state_dict(), meta)


def load_noisy_classifier(path: str | os.PathLike) -> tuple[NoisyClassifier, dict[str, Any]]:
    """``(model in eval mode, metadata)`` from a :func:`save_noisy_classifier` file; a missing
    file raises FileNotFoundError, a corrupt or foreign one ValueError naming it."""
    from ..io import apply_tensors, read_safetensors

    tensors, meta = read_safetensors(path)
    if meta.get("format") != _FORMAT:
        raise ValueError(f"{path}: not a noisy classifier file ({_FORMAT})")
    try:
        options = json.loads(meta["options"])
        extra = json.loads(meta.get("metadata", "{}"))
    except (KeyError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: bad classifier metadata ({err})") from None
    model = NoisyClassifier(**options)
    apply_tensors(model, tensors, path)
    return model.eval(), extra


# --------------------------------------------------------------------------- the cache
def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def classifier_cache_path(
    recipe: dict[str, Any], cache_dir: str | os.PathLike | None = None
) -> Path:
    """``<cache>/models/noisy-classifier-<hash of recipe>.safetensors``; ``<cache>`` is
    ``cache_dir``, else ``$DIFFUSIO_CACHE``, else ``~/.cache/diffusio`` (the model cache's
    root)."""
    return cache_root(cache_dir) / "models" / f"noisy-classifier-{json_hash(recipe)}.safetensors"


def noisy_classifier(
    config: Any,
    process: Process,
    *,
    steps: int,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    options: dict[str, Any] | None = None,
    progress: bool = False,
    cache_dir: str | os.PathLike | None = None,
) -> tuple[NoisyClassifier, dict[str, Any]]:
    """The noise-aware classifier (Dhariwal & Nichol 2021, Sec. 4.1) for a diffusion model
    trained by ``config`` with ``process``: trained by :func:`train_noisy_classifier` on the
    train split of ``config.data``, or loaded from the cache (:func:`classifier_cache_path`)
    when the same recipe -- process and its options, data and its digest, steps, batch, lr,
    seed, network options -- was trained before. Returns ``(classifier, info)``: ``info`` has
    ``train_seconds`` and the training ``log`` (as first trained), ``path``, ``parameters`` and
    ``accuracy_by_noise`` on the test split."""
    from ..data.datasets import load_image_dataset
    from ..io import tensor_digest

    options = {k: _plain(v) for k, v in (options or {}).items()}
    x, y = load_image_dataset(config.data, "train")
    recipe = {
        "process": config.process, "process_options": process.options(), "data": config.data,
        "data_sha256": tensor_digest({"x": x, "y": y}), "steps": int(steps),
        "batch": int(batch_size), "lr": float(lr), "seed": int(seed), "options": options,
    }  # fmt: skip
    path = classifier_cache_path(recipe, cache_dir)
    info: dict[str, Any]
    if path.is_file():
        classifier, info = load_noisy_classifier(path)
    else:
        log: list[dict[str, float]] = []
        start = time.perf_counter()
        classifier = train_noisy_classifier(
            process, x, y, steps, batch_size, lr, seed, progress, log=log, **options
        )
        info = {"train_seconds": round(time.perf_counter() - start, 1), "log": log}
        save_noisy_classifier(classifier, path, {**info, "recipe": recipe})
    info = {k: v for k, v in info.items() if k != "recipe"}
    x_test, y_test = load_image_dataset(config.data, "test")
    info["path"] = str(path)
    info["parameters"] = sum(p.numel() for p in classifier.parameters())
    info["accuracy_by_noise"] = accuracy_by_noise(classifier, process, x_test, y_test)
    return classifier, info
