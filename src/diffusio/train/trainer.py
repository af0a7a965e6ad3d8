"""One training loop for every domain: AdamW, warm-up, clipping, EMA, checkpoints, exact resume.

``Trainer(config, out_dir).fit(resume=False)`` trains a :class:`~diffusio.core.model.DiffusionModel`
built from a :class:`~diffusio.train.config.TrainConfig` on a materialized training set with the
denoising loss of :func:`diffusio.core.losses.diffusion_loss` -- or a ready model passed as
``Trainer(..., model=...)`` with its own ``loss`` (e.g. :class:`diffusio.text.TextLM`). The data
come from the dataset registry as a :class:`~diffusio.data.batch.TrainingSet` under the batch
contract: each step draws rows (with replacement), applies the dataset's transforms
(augmentations), drops each condition key to its null value with the config's ``cond_dropout``
probabilities, and hands ``x0``, ``cond`` and the loss ``mask`` to the loss; the trainer knows
no kind of data.

* optimiser: AdamW, Adam with decoupled weight decay (Loshchilov & Hutter 2019, "Decoupled
  Weight Decay Regularization"), with a linear learning-rate warm-up (as in DDPM's released
  training code, Ho et al. 2020) and optionally a cosine decay;
* gradient-norm clipping (DDPM's ``grad_clip = 1``; Pascanu et al. 2013);
* an exponential moving average of the weights, evaluated instead of the raw weights (DDPM,
  Ho et al. 2020, App. B, decay 0.9999; Song & Ermon 2020, "Improved Techniques for Training
  Score-Based Generative Models", Sec. 3.5 / technique 5, decay 0.999), kept as its own module
  copy, with the ``min(decay, (1 + n) / (10 + n))`` warm-up of Song et al.'s Score SDE code;
* devices and mixed precision through ``accelerate.Accelerator`` (CPU when there is no GPU;
  fp16/bf16 on GPU only); the same loop runs on one or several processes, ``batch_size`` being
  the global batch split evenly across them (:mod:`diffusio.train.distributed`).

Exact resume: every source of randomness is owned by the run -- batches (rows, transforms,
condition dropout, in that order) are drawn with a dedicated CPU ``torch.Generator`` per rank,
diffusion times and noise with a second one on the training device, and the global
Python/NumPy/torch RNGs (for networks with dropout and the like) are seeded from ``config.seed``
at the start of ``fit`` -- and all of their states are checkpointed
with the weights, the EMA, the optimizer, the loss scaler and the time distribution's history. A run
killed at any moment and resumed from its last checkpoint therefore ends with bit-identical
weights to an uninterrupted run on the CPU, on one process or on N (every rank's generators
are checkpointed). ``fit`` leaves the caller's global RNG states as it found them.

Files in ``out_dir``: ``config.json`` (everything :func:`~diffusio.train.config.load_run` needs),
``model.safetensors`` and ``ema.safetensors`` (latest weights), ``checkpoint-<step>/`` and
``latest`` (see :mod:`diffusio.train.checkpoint`), ``metrics.jsonl`` (one JSON object per line,
flushed as written) and ``loss.png``.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import os
import random
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..core.model import DiffusionModel
from ..core.timesteps import TimeDistribution, make_time_distribution
from ..data.batch import Batch, TrainingSet, drop_conditions
from ..io import read_jsonl
from .checkpoint import (
    LATEST,
    capture_global_rng,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    read_json,
    restore_global_rng,
    save_checkpoint,
    write_bytes_atomic,
    write_json_atomic,
    write_safetensors,
)
from .config import TrainConfig, load_config
from .data import data_digest, load_training_set, num_classes
from .distributed import (
    check_launcher,
    distributed_info,
    new_accelerator,
    on_main,
    per_process_batch,
)
from .distributed import derived_seed as _derived_seed
from .models import model_from_spec, model_spec
from .runs import from_json, run_manifest, to_json

__all__ = [
    "EMA",
    "RESUMABLE_KEYS",
    "Trainer",
    "learning_rate",
    "prebuilt_spec",
    "read_metrics",
    "resolve_mixed_precision",
]

EvalFn = Callable[["Trainer", int], Mapping[str, Any]]
Callback = Callable[["Trainer", int], None]

RESUMABLE_KEYS = frozenset(
    {"steps", "log_every", "eval_every", "save_every", "keep", "description"}
)
"""Config keys that may differ between a run and its resumption (bookkeeping, and ``steps`` to
train longer); any other difference makes ``fit(resume=True)`` refuse."""


# --------------------------------------------------------------------------- building blocks
class EMA:
    """Exponential moving average of a module's parameters, kept as a separate module copy.

    After each optimizer step, ``ema <- d * ema + (1 - d) * theta`` for every parameter (buffers
    are copied), the weight averaging of DDPM (Ho et al. 2020, App. B) and of Song & Ermon 2020
    ("Improved Techniques for Training Score-Based Generative Models", technique 5). With
    ``warmup=True`` the decay of update ``n`` (1-based) is ``min(decay, (1 + n) / (10 + n))``, as
    in the Score SDE code's ``ExponentialMovingAverage(use_num_updates=True)``, so early
    averages do not remember the random initialisation for thousands of steps.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must lie in [0, 1), got {decay}")
        self.decay, self.warmup = float(decay), bool(warmup)
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.num_updates = 0

    def current_decay(self, n: int | None = None) -> float:
        """The decay used by update number ``n`` (default: the next one)."""
        n = self.num_updates + 1 if n is None else n
        if self.warmup:
            return min(self.decay, (1.0 + n) / (10.0 + n))
        return self.decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One EMA step towards ``model``'s current parameters."""
        d = self.current_decay()
        for ema_p, p in zip(self.module.parameters(), model.parameters(), strict=True):
            ema_p.mul_(d).add_(p.detach(), alpha=1.0 - d)
        for ema_b, b in zip(self.module.buffers(), model.buffers(), strict=True):
            ema_b.copy_(b)
        self.num_updates += 1

    def state_dict(self) -> dict[str, Tensor]:
        return self.module.state_dict()


def learning_rate(
    step: int, lr: float, warmup: int = 0, decay: str = "none", total: int | None = None
) -> float:
    """Learning rate of optimizer step ``step`` (1-based): ``lr * step / warmup`` during the
    linear warm-up, then ``lr`` (``decay="none"``) or a cosine decay reaching 0 at ``total``."""
    if warmup > 0 and step <= warmup:
        return lr * step / warmup
    if decay == "cosine" and total is not None and total > warmup:
        progress = min(1.0, (step - warmup) / (total - warmup))
        return lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    return lr


def resolve_mixed_precision(requested: str, device_type: str | None = None) -> str:
    """The mixed-precision mode to use: ``requested`` on a GPU, ``"no"`` on the CPU (with a
    warning if something else was asked for)."""
    if requested not in ("no", "fp16", "bf16"):
        raise ValueError(f"unknown mixed_precision {requested!r}; valid: no, fp16, bf16")
    device_type = device_type or ("cuda" if torch.cuda.is_available() else "cpu")
    if device_type == "cpu" and requested != "no":
        warnings.warn(
            f"mixed_precision={requested!r} needs a GPU; training in fp32 on the CPU",
            stacklevel=2,
        )
        return "no"
    return requested


class _LossModule(nn.Module):
    """``forward(x0, **options) = model.loss(x0, **options)``: the loss goes through a module's
    forward so that a DistributedDataParallel wrapper synchronises the gradients and
    accelerate's autocast covers the whole loss."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x0: Tensor, **options: Any) -> Tensor:
        return self.model.loss(x0, **options)


@contextlib.contextmanager
def _private_rng(device: torch.device) -> Iterator[None]:
    """Restore the global Python, NumPy and torch (CPU and CUDA) RNG states on exit."""
    devices = [device] if device.type == "cuda" else []
    py, npy = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(npy)


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file (a torn last line from a crash is skipped);
    :func:`diffusio.io.read_jsonl`, for the layers below ``train``."""
    return read_jsonl(path)


def _scalar(value: Any) -> Any:
    if isinstance(value, Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): _scalar(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scalar(v) for v in value]
    return str(value)


def prebuilt_spec(model: nn.Module) -> dict[str, Any]:
    """What a run records for a ready model: its class path and JSON-able ``config`` (the
    class's ``from_config(config)`` rebuilds it)."""
    config = getattr(model, "config", None)
    cls = type(model)
    if not isinstance(config, Mapping) or not callable(getattr(cls, "from_config", None)):
        raise TypeError(
            f"a ready model needs a dict 'config' and a class-level 'from_config'; "
            f"{cls.__qualname__} lacks them"
        )
    if not callable(getattr(model, "loss", None)):
        raise TypeError(f"a ready model needs a 'loss' method; {cls.__qualname__} lacks one")
    return {"prebuilt": f"{cls.__module__}.{cls.__qualname__}", "config": to_json(dict(config))}


# --------------------------------------------------------------------------- trainer
class Trainer:
    """Train a diffusion model described by a :class:`TrainConfig` into ``out_dir``.

    Args:
        config: a :class:`TrainConfig`, or a preset name / config file for
            :func:`~diffusio.train.config.load_config`.
        out_dir: the run directory.
        eval_fn: ``eval_fn(trainer, step) -> dict`` called every ``config.eval_every`` steps and
            at the end; its results are logged to ``metrics.jsonl`` (``"kind": "eval"``) and shown
            on the progress bar. It runs with the global RNGs forked, so it cannot perturb
            training; use ``trainer.ema.module`` (or ``trainer.model``) and ``trainer.normalizer``.
        callbacks: ``callback(trainer, step)`` called after every step (after that step's
            checkpoint, if any); an exception stops training.
        progress: show a tqdm progress bar (loss and steps/s).
        data: a training set to use instead of ``config.data`` (the config then only names
            it): a tensor (N, ...) or a :class:`~diffusio.data.batch.TrainingSet` (with
            conditions, null values, a loss mask, transforms); a resumed run must get the same
            data (their digest is checked).
        accelerator: an ``accelerate.Accelerator`` to use instead of a new one.
        model: a ready model to train instead of the one ``config`` describes (e.g. a
            :class:`diffusio.text.TextLM`): it needs ``loss(x0, generator=..., cond=...,
            mask=..., **config.loss_options)`` returning the scalar batch loss, a JSON-able
            ``config`` dict and a class-level ``from_config(config)`` rebuilding it (recorded in
            ``config.json`` as ``model = {"prebuilt": class path, "config": ...}``); the config's
            model, normalizer and time distribution are then not used (``normalizer`` and
            ``time_distribution`` are None), the rest (optimizer, EMA, checkpoints, exact
            resume, metrics) is the same. A resumed run must get the same model config.

    Attributes: ``model`` (the trained :class:`DiffusionModel`, unwrapped), ``ema`` (:class:`EMA`;
    ``ema.module`` is the averaged model), ``optimizer``, ``time_distribution`` (the training
    times; ``time_sampler`` is its older name), ``normalizer``,
    ``training_set`` (the :class:`TrainingSet` on the device, x0 normalized, class labels as
    ``cond["y"]`` for a class-conditional run), ``data`` (its x0), ``cond_dropout`` (rates per
    key), ``batch_size`` (this process's share of ``config.batch_size``), ``step``,
    ``accelerator``.
    """

    def __init__(
        self,
        config: TrainConfig | str | os.PathLike,
        out_dir: str | os.PathLike,
        *,
        eval_fn: EvalFn | None = None,
        callbacks: Sequence[Callback] = (),
        progress: bool = True,
        data: Tensor | TrainingSet | None = None,
        accelerator: Any | None = None,
        model: nn.Module | None = None,
    ):
        if not isinstance(config, TrainConfig):
            config = load_config(config)
        self.config = config
        self.out_dir = Path(out_dir)
        self.eval_fn = eval_fn
        self.callbacks = list(callbacks)
        self.progress = progress
        if accelerator is None:
            cpu = not torch.cuda.is_available()
            mp = resolve_mixed_precision(config.mixed_precision, "cpu" if cpu else "cuda")
            accelerator = new_accelerator(mp, cpu)
        self.accelerator = accelerator
        self.device: torch.device = accelerator.device
        check_launcher(accelerator)

        if data is None:
            dataset = load_training_set(config)
        elif isinstance(data, TrainingSet):
            dataset = data
        else:
            dataset = TrainingSet(torch.as_tensor(data).to(torch.float32))
        if config.class_conditional and dataset.labels is None:
            raise ValueError(
                "a class-conditional run needs labelled data (from config.data, or a "
                "TrainingSet with labels)"
            )
        self.batch_size = per_process_batch(config.batch_size, accelerator.num_processes)
        raw = dataset.x0
        self.data_info = {
            "source": config.data if data is None else "tensor",
            "shape": list(raw.shape),
            "sha256": data_digest(*dataset.tensors()),
        }
        self.normalizer = None
        if config.normalize and model is None:
            if raw.dim() > 2:
                raise ValueError(
                    "normalize standardizes each coordinate of vector data; images are used in "
                    "[-1, 1]: set normalize: false"
                )
            from ..data.normalize import Standardizer

            self.normalizer = Standardizer.fit(raw)
            raw = self.normalizer.transform(raw)
        cond, null = dict(dataset.cond), dict(dataset.null)
        self.labels = None
        self.num_classes = None
        if config.class_conditional:
            self.num_classes = num_classes(dataset.labels)
            cond["y"], null["y"] = dataset.labels, self.num_classes
        dataset = dataclasses.replace(dataset, x0=raw, cond=cond, null=null)
        self.training_set = dataset.to(self.device)
        self.data = self.training_set.x0
        if config.class_conditional:
            self.labels = self.training_set.cond["y"]
        self.cond_dropout = config.condition_dropout()
        for key in self.cond_dropout:
            if key not in cond or key not in null:
                raise ValueError(
                    f"cond_dropout names {key!r}, but the data have "
                    + (f"no null value for it (null values: {sorted(null)})" if key in cond
                       else f"no such condition (conditions: {sorted(cond)})")
                )  # fmt: skip

        self.prebuilt = model is not None
        self.time_distribution: TimeDistribution | None = None
        if model is not None:
            self.spec = prebuilt_spec(model)
        else:
            self.spec = model_spec(
                config,
                shape=tuple(raw.shape[1:]),
                classes=self.num_classes,
                data_options=dataset.net_options,
            )
            model = model_from_spec(self.spec, seed=config.seed)
            self.time_distribution = make_time_distribution(
                config.time_distribution, model.process, **dict(config.time_distribution_options)
            )
        optimizer = torch.optim.AdamW(
            model.parameters(),
            lr=config.lr,
            betas=tuple(config.betas),
            weight_decay=config.weight_decay,
        )
        self._raw_optimizer = optimizer
        self._loss_module, self.optimizer = accelerator.prepare(_LossModule(model), optimizer)
        self.model: DiffusionModel = model  # moved to the device in place by prepare
        self.ema = EMA(model, config.ema_decay, warmup=config.ema_warmup)
        self.batch_generator = torch.Generator(device="cpu")
        self.noise_generator = torch.Generator(device=self.device)
        self.step = 0
        self._elapsed = 0.0
        self._seed_generators()

    # ------------------------------------------------------------------ helpers
    @property
    def is_main(self) -> bool:
        return bool(self.accelerator.is_main_process)

    @property
    def metrics_path(self) -> Path:
        return self.out_dir / "metrics.jsonl"

    @property
    def time_sampler(self) -> TimeDistribution | None:
        """The older name of :attr:`time_distribution`."""
        return self.time_distribution

    def _seed_generators(self) -> None:
        rank = self.accelerator.process_index
        self.batch_generator.manual_seed(_derived_seed(self.config.seed, "batch", rank))
        self.noise_generator.manual_seed(_derived_seed(self.config.seed, "noise", rank))

    def lr_at(self, step: int) -> float:
        """Learning rate of optimizer step ``step`` (1-based)."""
        c = self.config
        return learning_rate(step, c.lr, c.warmup, c.lr_decay, c.steps)

    def next_batch(self) -> Batch:
        """This process's next training :class:`Batch`: ``self.batch_size`` rows drawn with
        replacement by the batch generator, then the dataset's transforms (e.g. random flips),
        then condition dropout (each ``cond_dropout`` key replaced by its null value with its
        probability, Ho & Salimans 2021, Alg. 1) -- all from the batch generator, in this
        order."""
        n = self.data.shape[0]
        idx = torch.randint(n, (self.batch_size,), generator=self.batch_generator)
        batch = self.training_set.batch(idx, self.batch_generator)
        if self.cond_dropout:
            cond = drop_conditions(
                batch.cond, self.cond_dropout, self.training_set.null, self.batch_generator
            )
            batch = batch.replace(cond=cond)
        return batch

    def sample_batch(self) -> tuple[Tensor, dict[str, Tensor]]:
        """``(x0, cond)`` of :meth:`next_batch` (the older interface; it drops the mask)."""
        batch = self.next_batch()
        return batch.x0, batch.cond

    def train_step(self, step: int) -> tuple[Tensor, Tensor]:
        """One optimizer step (1-based ``step``); returns the (detached) loss and the gradient
        norm before clipping. Gradients stay in ``.grad`` until the next step."""
        c = self.config
        lr = self.lr_at(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batch = self.next_batch()
        self.optimizer.zero_grad(set_to_none=True)
        gaussian = {} if self.prebuilt else {
            "weighting": c.weighting, "time_distribution": self.time_distribution
        }  # fmt: skip
        loss = self._loss_module(
            batch.x0,
            **gaussian,
            generator=self.noise_generator,
            cond=batch.cond,
            mask=batch.mask,
            **c.loss_options,
        )
        self.accelerator.backward(loss)
        max_norm = c.grad_clip if c.grad_clip > 0 else float("inf")
        grad_norm = self.accelerator.clip_grad_norm_(self.model.parameters(), max_norm)
        self.optimizer.step()
        if not self.accelerator.optimizer_step_was_skipped:
            self.ema.update(self.model)
        self.step = step
        return loss.detach(), torch.as_tensor(grad_norm).detach()

    # ------------------------------------------------------------------ state
    def _generator_states(self) -> dict[str, Tensor]:
        states = {
            "generator.batch": self.batch_generator.get_state(),
            "generator.noise": self.noise_generator.get_state(),
        }
        acc = self.accelerator
        if acc.num_processes > 1:  # every rank's generators, so each resumes its own stream
            for name in list(states):
                local = states[name].to(acc.device)[None]
                gathered = acc.gather(local).cpu()
                for r in range(gathered.shape[0]):
                    states[f"{name}.rank{r}"] = gathered[r].clone()
        return states

    def _training_state(self) -> tuple[dict[str, Any], dict[str, Tensor]]:
        rng_json, rng_tensors = capture_global_rng()
        sampler_state = None
        if callable(getattr(self.time_distribution, "state_dict", None)):
            sampler_state = to_json(self.time_distribution.state_dict())
        scaler = self.accelerator.scaler
        state = {
            "scheduler": {
                "kind": "linear-warmup",
                "decay": self.config.lr_decay,
                "base_lr": self.config.lr,
                "warmup": self.config.warmup,
                "total": self.config.steps,
                "last_lr": self.lr_at(self.step),
            },
            # the checkpoint key keeps its older name, so checkpoints written before resume
            "time_sampler": {"name": self.config.time_distribution, "state": sampler_state},
            "ema": {
                "decay": self.ema.decay,
                "warmup": self.ema.warmup,
                "num_updates": self.ema.num_updates,
            },
            "scaler": None if scaler is None else _scalar(scaler.state_dict()),
            "rng": rng_json,
            "elapsed": self._elapsed_now(),
            "num_processes": self.accelerator.num_processes,
            "global_batch_size": self.config.batch_size,
            "per_process_batch_size": self.batch_size,
            "config": self.config.to_dict(),
        }
        return state, {**rng_tensors, **self._generator_states()}

    def _restore(self, path: Path) -> None:
        ckpt = load_checkpoint(path)
        ckpt.load_into(model=self.model, ema=self.ema.module, optimizer=self._raw_optimizer)
        state, rng = ckpt.state, ckpt.rng
        source = ckpt.file("state.json")
        saved_n = state.get("num_processes", 1)
        if saved_n != self.accelerator.num_processes and self.is_main:
            warnings.warn(
                f"{path} was written by {saved_n} process(es), resuming on "
                f"{self.accelerator.num_processes}: the run continues the same objective but not "
                "the same random batches",
                stacklevel=3,
            )
        try:
            self.ema.num_updates = int(state["ema"]["num_updates"])
            rank = self.accelerator.process_index
            for name, gen in (
                ("generator.batch", self.batch_generator),
                ("generator.noise", self.noise_generator),
            ):
                key = f"{name}.rank{rank}" if f"{name}.rank{rank}" in rng else name
                if key in rng and (rank == 0 or key != name):
                    gen.set_state(rng[key])
                else:  # a rank the checkpoint does not know: a fresh, step-dependent stream
                    gen.manual_seed(_derived_seed(self.config.seed + ckpt.step, name, rank))
            sampler_state = state["time_sampler"]["state"]
            if sampler_state is not None:
                self.time_distribution.load_state_dict(from_json(sampler_state))
            if self.accelerator.scaler is not None and state.get("scaler"):
                self.accelerator.scaler.load_state_dict(state["scaler"])
            restore_global_rng(state["rng"], rng)
            self._elapsed_before = float(state.get("elapsed", 0.0))
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise ValueError(f"{source}: bad training state ({err!r})") from None
        self.step = ckpt.step

    def _elapsed_now(self) -> float:
        return self._elapsed_before + (time.perf_counter() - self._t0)

    # ------------------------------------------------------------------ files
    def _manifest(self) -> dict[str, Any]:
        info = distributed_info(self.accelerator, self.config.batch_size, self.config.lr)
        return run_manifest(self.config, self.spec, self.normalizer, self.data_info, info)

    def _check_resumable(self) -> None:
        cfg_file = self.out_dir / "config.json"
        manifest = read_json(cfg_file)
        try:
            saved = manifest["config"]
            saved_digest = manifest["data"]["sha256"]
        except (KeyError, TypeError):
            raise ValueError(f"{cfg_file}: not a diffusio run config") from None
        current = self.config.to_dict()
        # keys added to TrainConfig after the run was written count as their defaults; both
        # sides in canonical form (the saved one read back through TrainConfig where it can be)
        saved = {**TrainConfig.from_dict({}).to_dict(), **saved}
        with contextlib.suppress(ValueError, TypeError):
            saved = TrainConfig.from_dict(saved).to_dict()
        differ = sorted(
            k for k in set(saved) | set(current) if k not in RESUMABLE_KEYS
            and saved.get(k) != current.get(k)
        )  # fmt: skip
        if differ:
            raise ValueError(
                f"cannot resume {self.out_dir}: the config differs from the run's config.json in "
                + ", ".join(f"{k} ({saved.get(k)!r} -> {current.get(k)!r})" for k in differ)
            )
        if self.prebuilt and manifest.get("model") != to_json(self.spec):
            raise ValueError(
                f"cannot resume {self.out_dir}: the model differs from the run's config.json "
                f"({manifest.get('model')!r} -> {self.spec!r})"
            )
        if saved_digest != self.data_info["sha256"]:
            raise ValueError(
                f"cannot resume {self.out_dir}: the training data differ from the run's"
            )

    def _start(self, resume: bool) -> Path | None:
        """Prepare ``out_dir``; return the checkpoint to resume from (None: fresh start).

        Rank 0 alone inspects, validates and creates the directory and picks the checkpoint;
        every other rank waits for its decision and receives it, or the same error
        (:func:`~diffusio.train.distributed.on_main`)."""

        def decide() -> str | None:
            out = self.out_dir
            has_run = (out / "config.json").exists() or (out / LATEST).exists()
            has_run = has_run or bool(list_checkpoints(out))
            if not resume and has_run:
                raise FileExistsError(
                    f"{out} already holds a run; pass resume=True to continue it, or use "
                    "another directory"
                )
            ckpt = latest_checkpoint(out) if resume else None
            if ckpt is not None:
                self._check_resumable()
            out.mkdir(parents=True, exist_ok=True)
            write_json_atomic(out / "config.json", self._manifest())
            if ckpt is None:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(self.metrics_path)
            return None if ckpt is None else str(ckpt)

        found = on_main(self.accelerator, decide)
        return None if found is None else Path(found)

    def _truncate_metrics(self, step: int) -> None:
        """Drop metric lines written after ``step`` by an interrupted run (and torn lines)."""
        kept = [r for r in read_metrics(self.metrics_path) if int(r.get("step", 0)) <= step]
        text = "".join(json.dumps(r) + "\n" for r in kept)
        write_bytes_atomic(self.metrics_path, text.encode("utf-8"))

    def _log(self, record: Mapping[str, Any]) -> None:
        if self._metrics_file is not None:
            self._metrics_file.write(json.dumps(_scalar(dict(record))) + "\n")
            self._metrics_file.flush()

    def _save(self, checkpoint: bool = True) -> None:
        """Checkpoint (unless ``checkpoint=False``), run-level weights and the loss plot."""
        acc = self.accelerator
        if checkpoint:
            state, rng = self._training_state()  # collective on several processes
        if self.is_main and checkpoint:
            save_checkpoint(
                self.out_dir,
                self.step,
                model=self.model,
                ema=self.ema.module,
                optimizer=self._raw_optimizer,
                rng=rng,
                state=state,
                keep=self.config.keep or None,
            )
        if self.is_main:
            meta = {"diffusio_step": str(self.step)}
            write_safetensors(self.out_dir / "model.safetensors", self.model.state_dict(), meta)
            write_safetensors(self.out_dir / "ema.safetensors", self.ema.state_dict(), meta)
            self.plot()
        acc.wait_for_everyone()

    def plot(self) -> Path | None:
        """Write ``loss.png`` from ``metrics.jsonl`` (atomically); None if nothing is logged."""
        from ..plotting import new_figure, plot_loss_curve, save_figure

        records = read_metrics(self.metrics_path)
        train = [r for r in records if r.get("kind") == "train" and "loss" in r]
        if not train:
            return None
        evals = [r for r in records if r.get("kind") == "eval"]
        keys = sorted(
            {k for r in evals for k, v in r.items() if k not in ("kind", "step", "time")
             and isinstance(v, (int, float)) and not isinstance(v, bool)}
        )  # fmt: skip
        fig = new_figure(6.0 + 4.0 * bool(keys), 3.6)
        axes = fig.subplots(1, 1 + bool(keys), squeeze=False)[0]
        ax = axes[0]
        plot_loss_curve(ax, [r["step"] for r in train], [r["loss"] for r in train])
        ax.set_xlabel("step")
        ax.set_ylabel("loss" if self.prebuilt else f"{self.config.weighting} loss")
        ax.set_title(self.config.description or self.config.data, fontsize=9)
        ax.grid(alpha=0.3)
        if keys:
            ax2 = axes[1]
            for i, key in enumerate(keys[:8]):
                pts = [(r["step"], r[key]) for r in evals if isinstance(r.get(key), (int, float))]
                xs, ys = zip(*pts, strict=True)
                ax2.plot(xs, ys, marker="o", ms=3, color=f"C{i}", label=key)
            ax2.set_xlabel("step")
            ax2.set_title("evaluation", fontsize=9)
            ax2.legend(fontsize=8)
            ax2.grid(alpha=0.3)
        fig.tight_layout()
        return save_figure(fig, self.out_dir / "loss.png")

    def _evaluate(self, step: int, bar: Any) -> None:
        if self.eval_fn is None:
            return
        with _private_rng(self.device):
            results = self.eval_fn(self, step)
        results = _scalar(dict(results or {}))
        self._log({"kind": "eval", "step": step, **results})
        if results:
            bar.write(
                f"step {step}: "
                + ", ".join(
                    f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in results.items()
                )
            )

    # ------------------------------------------------------------------ the loop
    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train to ``config.steps``; with ``resume=True`` continue from the run's latest
        checkpoint (or start fresh if it has none).

        Returns a summary: ``step``, ``loss`` (mean of the last logged interval), ``seconds``
        (this call), ``steps_per_sec``, ``out_dir``.
        """
        from tqdm.auto import tqdm

        c = self.config
        self._elapsed_before, self._t0 = 0.0, time.perf_counter()
        ckpt = self._start(resume)
        self._metrics_file = None
        last_loss = float("nan")
        with _private_rng(self.device):
            if ckpt is None:
                random.seed(c.seed)
                np.random.seed(c.seed % 2**32)
                torch.manual_seed(c.seed)
                self._seed_generators()
                self.step = 0
            else:
                self._restore(ckpt)
                if self.is_main:
                    self._truncate_metrics(self.step)
            start = self.step
            if self.is_main:
                self._metrics_file = open(self.metrics_path, "a", encoding="utf-8")  # noqa: SIM115
            bar = tqdm(
                total=c.steps,
                initial=start,
                disable=not (self.progress and self.is_main),
                dynamic_ncols=True,
                desc=c.description or c.data,
            )
            try:
                loss_sum = torch.zeros((), device=self.device)
                norm_sum = torch.zeros((), device=self.device)
                n_acc, t_log, step_log = 0, time.perf_counter(), start
                for step in range(start + 1, c.steps + 1):
                    loss, grad_norm = self.train_step(step)
                    loss_sum += loss.float()
                    norm_sum += grad_norm.float().to(self.device)
                    n_acc += 1
                    bar.update(1)
                    if step % c.log_every == 0 or step == c.steps:
                        now = time.perf_counter()
                        rate = (step - step_log) / max(now - t_log, 1e-9)
                        last_loss = float(self.accelerator.reduce(loss_sum, "mean")) / n_acc
                        record = {
                            "kind": "train",
                            "step": step,
                            "loss": last_loss,
                            "grad_norm": float(norm_sum) / n_acc,
                            "lr": self.lr_at(step),
                            "steps_per_sec": rate,
                            "time": self._elapsed_now(),
                        }
                        self._log(record)
                        bar.set_postfix(loss=f"{last_loss:.4f}", steps_s=f"{rate:.1f}")
                        if not math.isfinite(last_loss):
                            raise FloatingPointError(
                                f"the training loss became {last_loss} at step {step}; the "
                                f"last good checkpoint is {latest_checkpoint(self.out_dir)}"
                            )
                        loss_sum.zero_()
                        norm_sum.zero_()
                        n_acc, t_log, step_log = 0, now, step
                    if (c.eval_every and step % c.eval_every == 0) or step == c.steps:
                        self._evaluate(step, bar)
                    if (c.save_every and step % c.save_every == 0) or step == c.steps:
                        self._save()
                    for callback in self.callbacks:
                        callback(self, step)
                if start >= c.steps:  # nothing left to train: make sure the run files exist
                    self._save(checkpoint=False)
            finally:
                bar.close()
                if self._metrics_file is not None:
                    self._metrics_file.close()
                    self._metrics_file = None
        seconds = time.perf_counter() - self._t0
        return {
            "step": self.step,
            "loss": last_loss,
            "seconds": seconds,
            "steps_per_sec": (self.step - start) / max(seconds, 1e-9),
            "out_dir": str(self.out_dir),
        }
