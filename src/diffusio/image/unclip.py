"""unCLIP (Ramesh et al. 2022, *Hierarchical Text-Conditional Image Generation with CLIP
Latents*) at MNIST scale: CLIP embeddings, the two priors, the decoder, image variations.

The generative stack is ``P(x | y) = P(x | z_i, y) P(z_i | y)`` (Sec. 2, eq. 1): a *prior*
draws a CLIP image embedding z_i for the caption y, a *decoder* draws the image given z_i (and
the caption). Here:

* :func:`clip_features` -- a trained :class:`~diffusio.nets.clip.CLIP`'s unit image and text
  embeddings and its text encoder's token states (what the prior and decoder read);
* :func:`train_prior` -- the diffusion prior of :mod:`diffusio.nets.unclip_prior` (x0
  prediction, text dropped 10%), or :func:`train_regression_prior`, the deterministic baseline,
  each a short AdamW loop over the (few thousand) embeddings with an EMA of the weights;
  :func:`sample_prior` draws the best of two (Sec. 2.1) and returns unit embeddings;
* :func:`decoder_training_set` -- the decoder's data under the batch contract: ``image_emb``
  dropped 10% and the caption (``text_tokens`` / ``text_mask``) 50%, each as a unit (App. C);
  the decoder itself is the :class:`~diffusio.nets.unclip_decoder.UnCLIPDecoder` trained by the
  common trainer (:func:`train_decoder`);
* :func:`save_unclip` / :func:`generate` -- a trained decoder run made a text-to-image run: its
  ``unclip.json`` and safetensors hold the CLIP (with its vocabulary) and the prior, so
  ``diffusio txt2img RUN "caption"`` draws prior embeddings and decodes them;
* :func:`decode` -- images from embeddings (and captions) with classifier-free guidance of
  paper scale s over all of the decoder's conditions; image *variations* are ``decode`` of a
  real image's own CLIP embedding with different seeds (Sec. 3.1).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..data.batch import TrainingSet

__all__ = ["UNCLIP_FILE", "clip_features", "decode", "decoder_training_set", "generate",
           "is_unclip_run", "sample_prior", "save_unclip", "train_decoder", "train_prior",
           "train_regression_prior"]  # fmt: skip

UNCLIP_FILE, UNCLIP_FORMAT = "unclip.json", "diffusio-unclip-1"

EMB_KEYS = ("image_emb",)
TEXT_KEYS = ("text_tokens", "text_mask")


@torch.no_grad()
def clip_features(clip: Any, images: Tensor | None, captions: Sequence[str],
                  batch: int = 512) -> dict[str, Tensor]:  # fmt: skip
    """``image_emb`` (N, d; None without images), ``text_emb`` (N, d), ``text_tokens``
    (N, L, w) zero past each caption and ``text_mask`` (N, L) float of a CLIP (eval mode)."""
    clip.eval()
    captions = list(captions)
    text, tokens = [], []
    for i in range(0, len(captions), batch):
        emb, enc = clip.encode_text_full(captions[i : i + batch])
        text.append(emb)
        tokens.append(enc)
    length = max(e.tokens.shape[1] for e in tokens)
    pad = lambda v: torch.nn.functional.pad(v, (0, 0, 0, length - v.shape[1]))  # noqa: E731
    out = {"text_emb": torch.cat(text).float(),
           "text_tokens": torch.cat([pad(e.tokens) for e in tokens]).float(),
           "text_mask": torch.cat([torch.nn.functional.pad(e.mask.float(), (0, length - e.mask.shape[1]))
                                   for e in tokens])}  # fmt: skip
    out["text_tokens"] = out["text_tokens"] * out["text_mask"][..., None]
    out["image_emb"] = None
    if images is not None:
        out["image_emb"] = torch.cat([clip.encode_image(b) for b in images.float().split(batch)])
    return out


def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters(), strict=True):
            e.lerp_(p, 1.0 - decay)


def train_prior(
    image_emb: Tensor, text_emb: Tensor, text_tokens: Tensor | None = None,
    text_mask: Tensor | None = None, *, steps: int = 2000, batch_size: int = 128,
    lr: float = 3e-4, ema_decay: float = 0.995, seed: int = 0, process: str = "vp-cosine",
    **prior_options: Any,
) -> Any:  # fmt: skip
    """The unCLIP diffusion prior (:class:`~diffusio.nets.unclip_prior.DiffusionPrior` with
    ``prior_options``) trained with :func:`~diffusio.nets.unclip_prior.prior_loss` on the
    prior-space image embeddings, text dropped 10% (:func:`~diffusio.nets.unclip_prior.
    drop_text`); AdamW, deterministic given ``seed`` (global RNG untouched). Returns the EMA
    x0-predicting :class:`~diffusio.core.model.DiffusionModel` in eval mode."""
    from ..core.model import DiffusionModel
    from ..core.processes import make_process
    from ..nets.unclip_prior import DiffusionPrior, drop_text, prior_loss, to_prior_space

    x0 = to_prior_space(image_emb.float())
    text_dim = None if text_tokens is None else int(text_tokens.shape[-1])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        net = DiffusionPrior(x0.shape[-1], text_dim, max_text_len=max(
            32, 0 if text_tokens is None else text_tokens.shape[1]), **prior_options)  # fmt: skip
    model = DiffusionModel(net, make_process(process), prediction="x0")
    ema = copy.deepcopy(model).requires_grad_(False)
    gen = torch.Generator().manual_seed(int(seed))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    for _ in range(int(steps)):
        idx = torch.randint(0, len(x0), (int(batch_size),), generator=gen)
        tokens = None if text_tokens is None else text_tokens[idx]
        mask = None if text_mask is None else text_mask[idx] > 0
        temb, tokens, mask = drop_text(text_emb[idx], tokens, mask, generator=gen)
        cond = {"text_emb": temb, "text_tokens": tokens, "text_mask": mask}
        loss = prior_loss(model, x0[idx], {k: v for k, v in cond.items() if v is not None}, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _ema_update(ema, model, ema_decay)
    return ema.eval()


def train_regression_prior(image_emb: Tensor, text_emb: Tensor, *, steps: int = 2000,
                           batch_size: int = 128, lr: float = 1e-3, seed: int = 0) -> Any:  # fmt: skip
    """The :class:`~diffusio.nets.unclip_prior.RegressionPrior` baseline trained with its MSE
    (AdamW, deterministic given ``seed``); eval mode."""
    from ..nets.unclip_prior import RegressionPrior

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        net = RegressionPrior(image_emb.shape[-1])
    gen = torch.Generator().manual_seed(int(seed))
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.01)
    for _ in range(int(steps)):
        idx = torch.randint(0, len(image_emb), (int(batch_size),), generator=gen)
        loss = net.loss(text_emb[idx], image_emb[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return net.eval().requires_grad_(False)


def sample_prior(prior: Any, text_emb: Tensor, text_tokens: Tensor | None = None,
                 text_mask: Tensor | None = None, *, candidates: int = 2, sampler: str = "ddim",
                 steps: int = 25, seed: int = 0) -> Tensor:  # fmt: skip
    """Unit image embeddings (N, d) for the captions' CLIP text features: the diffusion prior's
    best of ``candidates`` (Sec. 2.1), or a regression prior's prediction."""
    from ..nets.unclip_prior import RegressionPrior, from_prior_space, sample_best_of

    with torch.no_grad():
        if isinstance(prior, RegressionPrior):
            return from_prior_space(prior(text_emb))
        cond = {}
        if text_tokens is not None:
            cond = {"text_tokens": text_tokens, "text_mask": text_mask > 0}
        x = sample_best_of(prior, text_emb, candidates=candidates, sampler=sampler, steps=steps,
                           seed=seed, cond=cond)  # fmt: skip
    return from_prior_space(x)


def decoder_training_set(images: Tensor, image_emb: Tensor | None, text_tokens: Tensor | None,
                         text_mask: Tensor | None, p_emb: float = 0.1,
                         p_text: float = 0.5) -> TrainingSet:  # fmt: skip
    """The decoder's training set (module docstring); ``image_emb`` None: a caption-only
    decoder, ``text_tokens`` None: an embedding-only one. ``net_options``: ``emb_dim`` and
    ``text_dim`` of the :class:`~diffusio.nets.unclip_decoder.UnCLIPDecoder`."""
    from .text2image import DropCaption

    cond, null, transforms, options = {}, {}, [], {"emb_dim": None, "text_dim": None}
    if image_emb is not None:
        cond["image_emb"], null["image_emb"] = image_emb.float(), 0.0
        options["emb_dim"] = int(image_emb.shape[-1])
        if p_emb > 0:
            transforms.append(DropCaption(p_emb, EMB_KEYS))
    if text_tokens is not None:
        cond.update(text_tokens=text_tokens.float(), text_mask=text_mask.float())
        null.update(text_tokens=0.0, text_mask=0.0)
        options["text_dim"] = int(text_tokens.shape[-1])
        if p_text > 0:
            transforms.append(DropCaption(p_text, TEXT_KEYS))
    if not cond:
        raise ValueError("the decoder needs image embeddings, captions or both")
    return TrainingSet(torch.as_tensor(images).float(), cond=cond, null=null,
                       transforms=transforms, net_options=options)  # fmt: skip


def train_decoder(out_dir: str | os.PathLike, data: TrainingSet, *, steps: int,
                  net_options: dict[str, Any] | None = None, seed: int = 0,
                  progress: bool = True, **overrides: Any) -> tuple[Any, dict[str, Any]]:  # fmt: skip
    """Train the :class:`~diffusio.nets.unclip_decoder.UnCLIPDecoder` (the ``digits-ddpm``
    recipe, ``net_options`` for its U-Net) on ``data`` through the common trainer into
    ``out_dir`` (finished runs reused, interrupted ones resumed). Returns (ema_model, summary)."""
    from ..train.trainer import Trainer
    from .sampling import image_config

    options = {"channels": 32, "channel_mults": [1, 2], "num_res_blocks": 1,
               "attention_resolutions": [data.x0.shape[-1] // 2], "num_heads": 4, "groups": 8,
               "dropout": 0.0, **dict(net_options or {})}  # fmt: skip
    config = image_config("digits-ddpm", steps, net_options=options, seed=seed,
                          description=f"unclip decoder {sorted(data.cond)} seed={seed}",
                          net="unclip-decoder", **overrides)  # fmt: skip
    trainer = Trainer(config, out_dir, data=data, progress=progress)
    summary = trainer.fit(resume=True)
    return trainer.ema.module.to("cpu").eval(), summary


def decode(model: Any, cond: dict[str, Tensor], guidance: float = 1.0, sampler: str = "ddim",
           steps: int = 25, seed: int = 0, threshold: str = "static") -> Tensor:  # fmt: skip
    """Images (N, C, H, W) in [-1, 1] from the decoder ``model`` given ``cond`` (``image_emb``
    and / or ``text_tokens`` / ``text_mask``, N rows), with classifier-free guidance of paper
    scale ``guidance`` s over all conditions together (``eps(null) + s (eps(c) - eps(null))``)
    and x0 ``threshold`` ``"static"`` (clip to [-1, 1]; the default: on digits, whose
    background is saturated by nature, Imagen's dynamic thresholding greys the images --
    measured in imagen-2022), ``"dynamic"`` or ``"none"``."""
    from ..core.samplers import sample
    from ..core.steering import ClipX0, ComposedGuidance, DynamicThreshold

    n = next(iter(cond.values())).shape[0]
    modes = {"static": [ClipX0(-1.0, 1.0)], "dynamic": [DynamicThreshold(0.995)], "none": []}
    if threshold not in modes:
        raise ValueError(f"unknown threshold {threshold!r}; valid: {', '.join(modes)}")
    modifiers: list[Any] = list(modes[threshold])
    sampler_cond = cond
    if guidance != 1.0:
        sampler_cond = {k: torch.zeros_like(v) for k, v in cond.items()}
        modifiers.insert(0, ComposedGuidance([(cond, float(guidance))]))
    size = model.net.unet.image_size if hasattr(model.net, "unet") else None
    channels = model.net.unet.in_channels
    with torch.no_grad():
        x = sample(model, (n, channels, size, size), sampler, steps, seed=int(seed),
                   guidance=modifiers, cond=sampler_cond)  # fmt: skip
    return x.detach().cpu().float().clamp(-1.0, 1.0)


def save_unclip(run_dir: str | os.PathLike, clip: Any, prior: Any,
                sampling: dict[str, Any] | None = None) -> None:  # fmt: skip
    """Write the CLIP and the diffusion ``prior`` next to a trained decoder run (``clip.
    safetensors``, ``prior.safetensors``, then ``unclip.json`` last, atomically)."""
    from pathlib import Path

    from ..io import write_json_atomic, write_safetensors

    path = Path(run_dir)
    enc, net = clip.text_encoder, prior.net
    info = {"format": UNCLIP_FORMAT,
            "clip": {"vocab": list(enc.vocab), "text_width": int(enc.dim),
                     "text_layers": len(enc.layers.layers), "dim": int(clip.dim),
                     "channels": int(clip.image_encoder.features[0].in_channels),
                     "width": int(clip.image_encoder.features[0].out_channels)},
            "prior": {"emb_dim": net.emb_dim, "text_dim": net.text_dim, "width": net.width,
                      "layers": len(net.transformer.layers), "max_text_len": net.max_text_len,
                      "process": prior.process.name},
            "sampling": {"guidance": 3.0, "sampler": "ddim", "steps": 25, "threshold": "static",
                         **dict(sampling or {})}}  # fmt: skip
    write_safetensors(path / "clip.safetensors", clip.state_dict())
    write_safetensors(path / "prior.safetensors", net.state_dict())
    write_json_atomic(path / UNCLIP_FILE, info)


def is_unclip_run(run_dir: str | os.PathLike) -> bool:
    """Whether ``run_dir`` holds an unCLIP text-to-image run (:func:`save_unclip`)."""
    from pathlib import Path

    return (Path(run_dir) / UNCLIP_FILE).is_file()


def load_unclip(run_dir: str | os.PathLike) -> tuple[Any, Any, Any, dict[str, Any]]:
    """``(decoder, clip, prior, info)`` of an unCLIP run (errors name the file)."""
    from pathlib import Path

    from ..core.model import DiffusionModel
    from ..core.processes import make_process
    from ..io import apply_tensors, read_json, read_safetensors
    from ..nets.clip import CLIP
    from ..nets.text_encoders import ScratchTextEncoder
    from ..nets.unclip_prior import DiffusionPrior
    from ..train.runs import load_run

    path = Path(run_dir)
    info = read_json(path / UNCLIP_FILE)
    if not isinstance(info, dict) or info.get("format") != UNCLIP_FORMAT:
        raise ValueError(f"{path / UNCLIP_FILE}: not a diffusio unCLIP run ({UNCLIP_FORMAT!r})")
    c, p = info["clip"], info["prior"]
    encoder = ScratchTextEncoder(c["vocab"], dim=c["text_width"], layers=c["text_layers"])
    clip = CLIP(encoder, dim=c["dim"], channels=c["channels"], width=c["width"])
    apply_tensors(clip, read_safetensors(path / "clip.safetensors")[0], path / "clip.safetensors")
    net = DiffusionPrior(p["emb_dim"], p["text_dim"], width=p["width"], layers=p["layers"],
                         max_text_len=p["max_text_len"])  # fmt: skip
    apply_tensors(net, read_safetensors(path / "prior.safetensors")[0], path / "prior.safetensors")
    prior = DiffusionModel(net.eval().requires_grad_(False), make_process(p["process"]), "x0")
    decoder, _, _ = load_run(path)
    return decoder, clip.eval().requires_grad_(False), prior, info


def generate(run_dir: str | os.PathLike, captions: Sequence[str], n: int = 16,
             guidance: float | None = None, sampler: str | None = None, steps: int | None = None,
             seed: int = 0, unknown: str = "warn", threshold: str | None = None) -> Tensor:  # fmt: skip
    """``n`` images for ``captions`` (cycled) from an unCLIP run: the prior's best-of-two image
    embedding for each, then the decoder with the caption, guidance scale s (default the run's)
    and dynamic thresholding. Words CLIP's text encoder never saw are named in a warning
    (``unknown="warn"``) or a ValueError (``"error"``); ``threshold`` as :func:`decode`'s
    (default: the run's)."""
    import warnings

    decoder, clip, prior, info = load_unclip(run_dir)
    captions = [captions] if isinstance(captions, str) else list(captions)
    if not captions or int(n) < 1:
        raise ValueError("give at least one caption and n >= 1")
    words = clip.text_encoder.unknown_words(captions)
    if words and unknown != "ignore":
        message = f"CLIP's text encoder has never seen the words {words} (read as [UNK])"
        if unknown == "error":
            raise ValueError(message)
        warnings.warn(message, stacklevel=2)
    d = info["sampling"]
    rows = [captions[i % len(captions)] for i in range(int(n))]
    f = clip_features(clip, None, rows)
    sampler, steps = sampler or d["sampler"], int(steps or d["steps"])
    z = sample_prior(prior, f["text_emb"], f["text_tokens"], f["text_mask"], sampler=sampler,
                     steps=steps, seed=seed)  # fmt: skip
    cond = {"image_emb": z, "text_tokens": f["text_tokens"], "text_mask": f["text_mask"]}
    scale = float(d["guidance"] if guidance is None else guidance)
    return decode(decoder, cond, scale, sampler, steps, seed, threshold or d.get("threshold", "static"))
