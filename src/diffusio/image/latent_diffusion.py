"""Latent diffusion at MNIST scale (Rombach et al. 2022, *High-Resolution Image Synthesis with
Latent Diffusion Models*, Sec. 3-4): the pieces its reproduction and ``diffusio txt2img`` share.

* :func:`encode_images` -- the scaled latents ``z_s = scale * E(x)`` (the posterior mean; the
  scale is the autoencoder's stored 1 / std of its training latents, Sec. 4.3.2 / App. G,
  :func:`~diffusio.core.latent.latent_scale`) a latent U-Net is trained on.
* :func:`class_token_training_set` -- class conditioning *through cross-attention* (the
  official ``ClassEmbedder`` gives the U-Net one context token per class, Sec. 3.3): ``cond``
  is ``context`` (N, 1, K), the one-hot class, whose key / value projections in every
  :class:`~diffusio.nets.spatial_transformer.SpatialTransformer` are the learned class
  embedding, and ``context_mask`` (N, 1); dropped as a unit with ``p_uncond`` (the null: no
  token) for classifier-free guidance.
* :class:`Snapshots` -- a trainer callback saving the EMA weights and the elapsed training time
  every ``every`` steps, for FID-against-training-time curves (Fig. 6-7's quality vs compute).
* :func:`step_flops` -- the FLOPs of one training step (forward + backward of the loss on one
  batch) counted by :class:`torch.utils.flop_counter.FlopCounterMode`, so pixel and latent
  models compare at equal counted compute as well as equal wall-clock.
* :func:`train_diffusion` / :func:`load_snapshot` -- train an image (or latent) U-Net of the
  ``digits-ddpm`` recipe through :class:`~diffusio.train.trainer.Trainer` with snapshots.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..data.batch import TrainingSet

__all__ = ["Snapshots", "class_token", "class_token_training_set", "encode_images",
           "load_snapshot", "sample_snapshot_job", "sampling_flops", "snapshot_times", "step_flops",
           "train_diffusion"]  # fmt: skip

SNAPSHOT_DIR = "snapshots"
CLASS_NULL = {"context": 0.0, "context_mask": 0.0}


def encode_images(autoencoder: Any, images: Tensor, batch: int = 256) -> Tensor:
    """Scaled latents ``autoencoder.scale_factor * autoencoder.encode(images)`` (posterior
    means), float32 on the CPU."""
    scale = getattr(autoencoder, "scale_factor", None)
    if scale is None:
        raise ValueError("the autoencoder has no scale factor: train it with train_autoencoder")
    with torch.no_grad():
        z = torch.cat([autoencoder.encode(b) for b in torch.as_tensor(images).float().split(batch)])
    return (float(scale) * z).float().cpu()


def class_token_training_set(x0: Tensor, labels: Tensor, num_classes: int = 10,
                             p_uncond: float = 0.1) -> TrainingSet:  # fmt: skip
    """x0 (images or scaled latents) with each row's class as one cross-attention token (module
    docstring); ``net_options`` ``{"context_dim": num_classes}``; ``labels`` the classes."""
    from .text2image import DropCaption

    y = torch.as_tensor(labels).long().reshape(-1)
    if len(y) != x0.shape[0] or bool(((y < 0) | (y >= num_classes)).any()):
        raise ValueError(f"need {x0.shape[0]} labels in 0..{num_classes - 1}")
    cond = {"context": torch.nn.functional.one_hot(y, num_classes).float()[:, None, :],
            "context_mask": torch.ones(len(y), 1)}  # fmt: skip
    keys = tuple(CLASS_NULL)
    return TrainingSet(torch.as_tensor(x0).float(), cond=cond, null=dict(CLASS_NULL), labels=y,
                       transforms=[DropCaption(p_uncond, keys)] if p_uncond > 0 else [],
                       net_options={"context_dim": int(num_classes)})  # fmt: skip


def class_token(labels: Tensor, num_classes: int = 10) -> dict[str, Tensor]:
    """The sampling condition of :func:`class_token_training_set` for ``labels``."""
    y = torch.as_tensor(labels).long().reshape(-1)
    return {"context": torch.nn.functional.one_hot(y, num_classes).float()[:, None, :],
            "context_mask": torch.ones(len(y), 1)}  # fmt: skip


class Snapshots:
    """Save ``ema.module``'s weights and the elapsed training seconds to
    ``out_dir/snapshots/step-<k>.safetensors`` after every ``every``-th step (atomic; a resumed
    run keeps the earlier ones, and its elapsed time continues from the checkpoint)."""

    def __init__(self, out_dir: str | os.PathLike, every: int) -> None:
        if int(every) < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.dir, self.every = Path(out_dir) / SNAPSHOT_DIR, int(every)

    def __call__(self, trainer: Any, step: int) -> None:
        from ..io import write_safetensors

        if step % self.every or not trainer.is_main:
            return
        seconds = trainer._elapsed_now()
        state = {k: v.detach().cpu() for k, v in trainer.ema.module.state_dict().items()}
        write_safetensors(self.dir / f"step-{step:07d}.safetensors", state,
                          {"step": str(step), "seconds": repr(float(seconds))})  # fmt: skip


def snapshot_times(run_dir: str | os.PathLike) -> list[tuple[int, float]]:
    """``(step, elapsed training seconds)`` of every snapshot of a run, by step."""
    from ..io import read_safetensors

    out = []
    for path in sorted((Path(run_dir) / SNAPSHOT_DIR).glob("step-*.safetensors")):
        _, meta = read_safetensors(path)
        out.append((int(meta["step"]), float(meta["seconds"])))
    return out


def load_snapshot(run_dir: str | os.PathLike, step: int) -> Any:
    """The run's model (CPU, eval) with the EMA weights of the snapshot at ``step``."""
    from ..io import apply_tensors, read_safetensors
    from ..train.runs import load_run

    model, _, _ = load_run(run_dir)
    path = Path(run_dir) / SNAPSHOT_DIR / f"step-{int(step):07d}.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no snapshot at step {step}")
    tensors, _ = read_safetensors(path)
    apply_tensors(model, tensors, path)
    return model.eval()


def step_flops(model: Any, batch: Any, generator_seed: int = 0) -> int:
    """FLOPs of one training step of ``model`` on ``batch`` (a :class:`~diffusio.data.batch.
    Batch`): the forward and backward pass of the simple eps loss, counted by
    :class:`~torch.utils.flop_counter.FlopCounterMode` (matmuls and convolutions)."""
    import copy

    from torch.utils.flop_counter import FlopCounterMode

    from ..core.losses import diffusion_loss

    model = copy.deepcopy(model).train().requires_grad_(True)  # an EMA copy may be frozen
    gen = torch.Generator().manual_seed(int(generator_seed))
    counter = FlopCounterMode(display=False)
    with counter:
        loss = diffusion_loss(model, batch.x0, cond=batch.cond, generator=gen)
        loss.backward()
    return int(counter.get_total_flops())


def sampling_flops(model: Any, shape: tuple[int, ...], cond: dict[str, Tensor] | None) -> int:
    """FLOPs of one network evaluation on a batch of ``shape`` (one sampler step)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(shape)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x, torch.full((shape[0],), 0.5), **dict(cond or {}))
    return int(counter.get_total_flops())


def train_diffusion(
    out_dir: str | os.PathLike, data: TrainingSet, *, steps: int, snapshot_every: int,
    net_options: dict[str, Any] | None = None, seed: int = 0, progress: bool = True,
    **overrides: Any,
) -> tuple[Any, dict[str, Any]]:  # fmt: skip
    """Train the ``digits-ddpm`` recipe (``net_options`` replacing the U-Net's) on ``data``
    into ``out_dir`` with :class:`Snapshots` every ``snapshot_every`` steps (a finished run is
    reused, an interrupted one resumed); ``overrides`` go to the TrainConfig. Returns
    ``(ema_model, summary)``."""
    from ..train.trainer import Trainer
    from .sampling import image_config

    description = f"diffusion on {tuple(data.x0.shape[1:])} n={len(data.x0)} seed={seed}"
    config = image_config("digits-ddpm", steps, net_options=dict(net_options or {}),
                          description=description, seed=seed, **overrides)  # fmt: skip
    trainer = Trainer(config, out_dir, data=data, progress=progress,
                      callbacks=[Snapshots(out_dir, snapshot_every)])  # fmt: skip
    summary = trainer.fit(resume=True)
    return trainer.ema.module.to("cpu").eval(), summary


def sample_snapshot_job(run_dir: str, ae_dir: str | None, step: int, labels: list[int],
                        options: dict[str, Any]) -> tuple[Tensor, float]:  # fmt: skip
    """Class-conditional samples of the snapshot at ``step`` of a class-token run (decoded by
    the autoencoder in ``ae_dir`` for a latent run), clamped to [-1, 1], and the seconds the
    sampling took; one torch thread -- a picklable job for a worker process. ``options``:
    ``image_shape`` and :func:`~diffusio.core.samplers.sample`'s ``sampler``, ``steps``,
    ``seed``."""
    import time

    from ..core.latent import LatentModel
    from ..core.samplers import sample
    from .autoencoder import load_autoencoder

    torch.set_num_threads(1)
    options = dict(options)
    model = load_snapshot(run_dir, step)
    shape = tuple(options.pop("image_shape"))
    if ae_dir is not None:
        ae = load_autoencoder(ae_dir)[0]
        model = LatentModel(model, ae, float(ae.scale_factor))
        shape = model.latent_shape(shape)
    start = time.perf_counter()
    with torch.no_grad():
        x = sample(model, (len(labels), *shape), cond=class_token(torch.tensor(labels)), **options)
        if ae_dir is not None:
            x = model.decode(x)
    return x.clamp(-1, 1).cpu(), time.perf_counter() - start
