"""The super-resolution stage of a cascade, trained and sampled through the common machinery.

Imagen (Saharia et al. 2022, Sec. 2.4) and Cascaded Diffusion Models (Ho et al. 2022, Sec. 3)
train a super-resolution diffusion model on (low-resolution, high-resolution) pairs of real
images; at sampling the low-resolution input is a *base model's sample*, whose errors the
super-resolution model was never shown. Noise-conditioning augmentation
(:func:`~diffusio.core.cascade.noise_augment`) corrupts the low-resolution input with the forward
process at a level s drawn per example, s ~ U(0, s_max), and tells the network s; at sampling
one s is used for the whole batch (swept; Imagen App. F).

* :class:`AugmentLowRes` -- the training-set transform: ``cond["low_res"]`` becomes the net's
  ``concat`` (the augmented image up-sampled to the target size) and ``aug_level``, drawn from
  the trainer's checkpointed batch generator (exact resume holds). ``max_level = 0`` trains the
  same network on clean inputs (level 0 always): the "without augmentation" arm.
* :func:`super_resolution_training_set` -- the pairs of a captioned set: x0 the canvas-C images,
  ``low_res`` their area average at C / factor (:func:`~diffusio.core.cascade.downsample`).
* :func:`train_super_resolution` -- train one through :class:`~diffusio.train.trainer.Trainer`.
* :func:`super_resolve` -- sample the high-resolution image of low-resolution images with any
  sampler, at one augmentation level.

The net is the :class:`~diffusio.nets.UNet` with ``concat_channels`` and ``level_conditioning``
(the level enters the time embedding), a plain :class:`~diffusio.core.model.DiffusionModel`
whose conditions are these two keywords: no new sampling path.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..data.batch import Batch, TrainingSet

__all__ = ["AugmentLowRes", "super_resolution_training_set", "super_resolve", "super_resolve_job",
           "train_super_resolution"]


class AugmentLowRes:
    """Noise-conditioning augmentation as a batch transform (module docstring): ``low_res``
    (N, C, h, w) -> ``concat`` (N, C, H, W) and ``aug_level`` (N,), the level s drawn from
    U(0, ``max_level``) under the process ``process`` (a name and its options, as a config
    names it) or fixed at 0 when ``max_level`` is 0."""

    def __init__(self, size: int, max_level: float, process: str = "vp-linear",
                 process_options: dict[str, Any] | None = None, mode: str = "nearest") -> None:  # fmt: skip
        from ..core.cascade import RESIZE_MODES
        from ..core.processes import make_process

        self.process = make_process(process, **dict(process_options or {}))
        if not 0.0 <= float(max_level) <= float(self.process.t_max):
            raise ValueError(f"max_level must lie in [0, {self.process.t_max}], got {max_level!r}")
        if mode not in RESIZE_MODES:
            raise ValueError(f"unknown resize mode {mode!r}; valid: {', '.join(RESIZE_MODES)}")
        self.size, self.max_level, self.mode = int(size), float(max_level), mode
        self._spec = (process, dict(process_options or {}))

    def __call__(self, batch: Batch, generator: torch.Generator) -> Batch:
        from ..core.cascade import noise_augment, upsample

        cond = dict(batch.cond)
        low = cond.pop("low_res")
        if self.max_level > 0:
            noised, level = noise_augment(low, None, self.process, generator,
                                          max_level=self.max_level)  # fmt: skip
        else:
            noised, level = low, torch.zeros(low.shape[0], dtype=low.dtype, device=low.device)
        cond["concat"] = upsample(noised, self.size, self.mode)
        cond["aug_level"] = level
        return batch.replace(cond=cond)

    def __repr__(self) -> str:
        name, options = self._spec
        return (f"AugmentLowRes(size={self.size}, max_level={self.max_level}, process={name!r}, "
                f"process_options={options}, mode={self.mode!r})")  # fmt: skip


def super_resolution_training_set(
    images: Tensor, factor: int, max_level: float, process: str = "vp-linear",
    process_options: dict[str, Any] | None = None, mode: str = "nearest",
) -> TrainingSet:  # fmt: skip
    """(low, high) pairs of ``images`` (N, C, H, W) in [-1, 1]: x0 the images, ``low_res`` their
    ``factor``-times area average, augmented by :class:`AugmentLowRes` (``max_level`` 0: never);
    ``net_options`` ``{"concat_channels": C, "level_conditioning": True}``."""
    from ..core.cascade import downsample

    x = torch.as_tensor(images, dtype=torch.float32)
    if x.dim() != 4 or x.shape[-1] % int(factor) or x.shape[-2] % int(factor):
        raise ValueError(f"images must be (N, C, H, W) with H, W divisible by {factor}, "
                         f"got {tuple(x.shape)}")  # fmt: skip
    aug = AugmentLowRes(x.shape[-1], max_level, process, process_options, mode)
    return TrainingSet(x, cond={"low_res": downsample(x, int(factor))}, transforms=[aug],
                       net_options={"concat_channels": int(x.shape[1]),
                                    "level_conditioning": True})  # fmt: skip


def super_resolve(
    model: Any, low_res: Tensor, size: int, level: float = 0.0, sampler: str = "ddpm",
    steps: int | None = 100, seed: int = 0, mode: str = "nearest", clip: bool = True,
    **options: Any,
) -> Tensor:  # fmt: skip
    """High-resolution samples (N, C, size, size) of ``low_res`` (N, C, h, w) from a model
    trained on :func:`super_resolution_training_set`: the input augmented once at ``level``
    (the same s told to the network; 0 = the clean input), then ``sampler`` with x0 clipped to
    [-1, 1] at every step (``clip``); clamped to [-1, 1]. The default is the ancestral sampler:
    on the small super-resolution U-Nets trained here the deterministic DDIM / DPM-Solver++
    paths drifted off the data for about one input in four (noise-filled outputs), ancestral
    sampling with 100 steps did not."""
    from ..core.cascade import noise_augment, upsample
    from ..core.samplers import sample

    low = torch.as_tensor(low_res, dtype=torch.float32)
    gen = torch.Generator().manual_seed(int(seed) + 7919)
    noised, lev = noise_augment(low, float(level), model.process, gen)
    cond = {"concat": upsample(noised, int(size), mode), "aug_level": lev}
    shape = (low.shape[0], low.shape[1], int(size), int(size))
    from ..core.steering import ClipX0

    guidance = [*options.pop("guidance", []), *([ClipX0(-1.0, 1.0)] if clip else [])]
    with torch.no_grad():
        x = sample(model, shape, sampler, steps, seed=int(seed), cond=cond, guidance=guidance,
                   **options)  # fmt: skip
    return x.detach().cpu().float().clamp(-1.0, 1.0)


def train_super_resolution(
    out_dir: Any, images: Tensor, *, factor: int = 2, max_level: float = 0.5, steps: int = 1000,
    net_options: dict[str, Any] | None = None, seed: int = 0, progress: bool = True,
    **overrides: Any,
) -> tuple[Any, dict[str, Any]]:  # fmt: skip
    """Train the super-resolution U-Net (the ``digits-ddpm`` preset's process and loss; default
    16 channels, mults (1, 2, 2), no attention) on :func:`super_resolution_training_set` of
    ``images`` into ``out_dir`` (a finished run is reused, an interrupted one resumed);
    ``overrides`` go to the TrainConfig. Returns ``(ema_model, summary)``."""
    from ..train.trainer import Trainer
    from .sampling import image_config

    options = {"channels": 16, "channel_mults": [1, 2, 2], "num_res_blocks": 1,
               "attention_resolutions": [], "groups": 8, "dropout": 0.0,
               **dict(net_options or {})}  # fmt: skip
    description = (f"super-resolution x{factor} max_level={max_level} n={len(images)} "
                   f"seed={seed}")  # fmt: skip
    config = image_config("digits-ddpm", steps, net_options=options, description=description,
                          seed=seed, **overrides)  # fmt: skip
    data = super_resolution_training_set(images, factor, max_level, config.process,
                                         dict(config.process_options))  # fmt: skip
    trainer = Trainer(config, out_dir, data=data, progress=progress)
    summary = trainer.fit(resume=True)
    return trainer.ema.module.to("cpu").eval(), summary


def super_resolve_job(run_dir: str, low: Tensor, size: int, level: float,
                      options: dict[str, Any]) -> Tensor:  # fmt: skip
    """:func:`super_resolve` with the run in ``run_dir`` on one torch thread: a picklable job
    for a worker process (``options``: super_resolve's)."""
    from ..train.runs import load_run

    torch.set_num_threads(1)
    model, _, _ = load_run(run_dir)
    return super_resolve(model, low, size, level, **options)
