"""Training configurations, presets, model construction and run loading.

A :class:`TrainConfig` says everything a training run needs: the data (a toy name or a file),
the five parts of a diffusion model (process, network, prediction, loss weighting and time
sampler) and the optimisation settings. ``load_config`` reads one from a built-in preset
(:data:`PRESETS`), a YAML or JSON file (which may name a ``preset`` to start from), and keyword
overrides.

A run directory holds ``config.json`` (written by the trainer; see :func:`run_manifest`), which
records, besides the config, the *resolved* model -- process name and options, prediction, network
class and all of its constructor options, and the data normalizer's state -- so
:func:`load_run` rebuilds the trained model from the directory alone, without the script that
trained it, reading the weights from safetensors files only.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import importlib
import inspect
import json
import math
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..core.losses import WEIGHTINGS
from ..core.model import VARIANCES, DiffusionModel
from ..core.parameterization import PREDICTIONS
from ..core.processes import PROCESSES, make_process
from ..core.timesteps import TIME_SAMPLERS
from .checkpoint import apply_tensors, read_json, read_safetensors

__all__ = [
    "MIXED_PRECISION",
    "NETS",
    "PRESETS",
    "RUN_FORMAT",
    "TrainConfig",
    "build_model",
    "build_net",
    "data_digest",
    "from_json",
    "load_config",
    "load_data",
    "load_dataset",
    "num_classes",
    "load_run",
    "model_spec",
    "model_from_spec",
    "run_manifest",
    "to_json",
]

MIXED_PRECISION = ("no", "fp16", "bf16")
DATA_OPTIONS = ("split", "size", "flip")
RUN_FORMAT = "diffusio-run"

NETS: dict[str, str] = {
    "mlp": "diffusio.nets.mlp.TimeMLP",
    "unet": "diffusio.nets.unet.UNet",
}
"""Network names a config may use -> import path of the class (``net(x, t, **cond)``).
A run's ``config.json`` may also name any class under ``diffusio.nets.`` by its full path."""


@dataclass
class TrainConfig:
    """Everything a training run needs.

    Data: ``data`` is a toy name (:data:`diffusio.data.toys.TOYS`), an image dataset shipped
    by a package (:data:`diffusio.data.datasets.IMAGE_DATASETS`: ``digits``, ``mnist-5k``), a
    path to an ``.npy``, ``.npz`` or ``.csv`` file of shape (N, D), or image files (a folder, an
    ``.npz`` of (N, C, H, W) or (N, H, W, C) images, an MNIST IDX file, a CIFAR-10 python batch);
    ``data_options`` (images: ``split`` train/test/all, ``size`` to resize to, ``flip`` for
    random horizontal flips); ``n_data`` rows are used (toys: sampled with ``seed``; otherwise
    the first ``n_data``, ``None`` = all); ``normalize`` standardizes each coordinate (the
    statistics are saved with the run; images are used in [-1, 1] instead).
    ``class_conditional`` feeds the dataset's labels to the network as ``y`` (the number of
    classes is filled into ``net_options``), each replaced by the null class with probability
    ``class_dropout`` (classifier-free guidance's p_uncond, Ho & Salimans 2021, Alg. 1).

    Model: ``process`` / ``process_options`` (:func:`~diffusio.core.processes.make_process`),
    ``prediction`` (eps, x0, v, score), ``variance`` (``fixed``, or ``learned``: the network
    also outputs the reverse kernel's variance, see :mod:`diffusio.core.vlb`; its output width
    ``out_dim`` is filled in as twice the data's), ``weighting`` (loss weighting, see
    :mod:`diffusio.core.losses`) and ``loss_options`` (e.g. ``vlb_weight``, ``decoder``),
    ``time_sampler`` / ``time_sampler_options``
    (:func:`~diffusio.core.timesteps.make_time_sampler`), ``net`` (a name in :data:`NETS`) and
    ``net_options`` (constructor options; the data's dimension or channels and image size are
    filled in).

    Optimisation: AdamW (``lr``, ``weight_decay``, ``betas``), linear warm-up over ``warmup``
    steps then ``lr_decay`` (``none`` or ``cosine`` to 0 at ``steps``), gradient-norm clipping at
    ``grad_clip`` (0: off), EMA with ``ema_decay`` (``ema_warmup``: Song et al.'s
    ``min(decay, (1 + n) / (10 + n))``), ``batch_size`` per process, ``steps`` optimizer steps.

    Bookkeeping: ``log_every`` (metrics.jsonl lines), ``eval_every`` (0: only at the end),
    ``save_every`` (checkpoints; 0: only at the end), ``keep`` (checkpoints kept; 0: all),
    ``seed``, ``mixed_precision`` (``no``, ``fp16``, ``bf16``; GPU only -- CPU always trains in fp32).
    """

    data: str = "swissroll"
    data_options: dict[str, Any] = field(default_factory=dict)
    n_data: int | None = 100_000
    normalize: bool = True
    class_conditional: bool = False
    class_dropout: float = 0.0
    process: str = "vp-linear"
    process_options: dict[str, Any] = field(default_factory=dict)
    prediction: str = "eps"
    variance: str = "fixed"
    weighting: str = "simple"
    loss_options: dict[str, Any] = field(default_factory=dict)
    time_sampler: str = "uniform"
    time_sampler_options: dict[str, Any] = field(default_factory=dict)
    net: str = "mlp"
    net_options: dict[str, Any] = field(default_factory=lambda: {"hidden": 256, "depth": 3})
    batch_size: int = 512
    steps: int = 10_000
    lr: float = 1e-3
    warmup: int = 500
    lr_decay: str = "none"
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    ema_warmup: bool = True
    log_every: int = 10
    eval_every: int = 0
    save_every: int = 1000
    keep: int = 3
    seed: int = 0
    mixed_precision: str = "no"
    description: str = ""

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ (de)serialisation
    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Build from a mapping; unknown keys raise ValueError listing the valid ones."""
        if not isinstance(values, Mapping):
            raise ValueError(f"a config must be a mapping, got {type(values).__name__}")
        unknown = sorted(set(values) - set(cls.field_names()))
        if unknown:
            raise ValueError(
                f"unknown config key(s) {', '.join(map(repr, unknown))}; valid: "
                f"{', '.join(cls.field_names())}"
            )
        hints = typing.get_type_hints(cls)
        return cls(**{k: _coerce(k, v, hints[k]) for k, v in values.items()})

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict (tuples become lists)."""
        return json.loads(json.dumps(asdict(self)))

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (validated)."""
        return TrainConfig.from_dict({**asdict(self), **changes})

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise ValueError on an invalid setting."""

        def choice(name: str, valid: Any) -> None:
            if getattr(self, name) not in valid:
                raise ValueError(
                    f"unknown {name} {getattr(self, name)!r}; valid: {', '.join(valid)}"
                )

        choice("process", PROCESSES)
        choice("prediction", PREDICTIONS)
        choice("variance", VARIANCES)
        choice("weighting", WEIGHTINGS)
        choice("time_sampler", TIME_SAMPLERS)
        choice("mixed_precision", MIXED_PRECISION)
        choice("lr_decay", ("none", "cosine"))
        if self.net not in NETS and not str(self.net).startswith("diffusio.nets."):
            raise ValueError(
                f"unknown net {self.net!r}; valid: {', '.join(NETS)} "
                "(or a class path under diffusio.nets.)"
            )
        positive = ("batch_size", "steps", "lr", "log_every")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        for name in ("warmup", "weight_decay", "grad_clip", "eval_every", "save_every", "keep"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.n_data is not None and self.n_data < 1:
            raise ValueError(f"n_data must be positive or None, got {self.n_data!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must lie in [0, 1), got {self.ema_decay!r}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        if not 0.0 <= self.class_dropout < 1.0:
            raise ValueError(f"class_dropout must lie in [0, 1), got {self.class_dropout!r}")
        if self.class_dropout > 0 and not self.class_conditional:
            raise ValueError("class_dropout needs class_conditional: true")
        names = ("data_options", "loss_options", "process_options", "time_sampler_options",
                 "net_options")  # fmt: skip
        for name in names:
            if not isinstance(getattr(self, name), dict):
                raise ValueError(f"{name} must be a mapping, got {getattr(self, name)!r}")
        if not isinstance(self.data, str) or not self.data:
            raise ValueError(f"data must be a toy name or a file path, got {self.data!r}")
        unknown = sorted(set(self.data_options) - set(DATA_OPTIONS))
        if unknown:
            raise ValueError(
                f"unknown data_options {', '.join(map(repr, unknown))}; valid: "
                f"{', '.join(DATA_OPTIONS)}"
            )


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """Convert YAML/JSON values to the field's type (e.g. ``"1e-3"`` -> 1e-3, list -> tuple)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    optional = origin in (typing.Union, types.UnionType) and type(None) in args
    if optional:
        if value is None:
            return None
        hint = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    try:
        if hint is bool:
            if isinstance(value, bool):
                return value
            raise TypeError
        if hint is int:
            if isinstance(value, bool):
                raise TypeError
            if isinstance(value, float) and value.is_integer():
                return int(value)
            if isinstance(value, int):
                return value
            if isinstance(value, str):
                f = float(value)
                if f.is_integer():
                    return int(f)
            raise TypeError
        if hint is float:
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if hint is str:
            if isinstance(value, str):
                return value
            raise TypeError
        if origin is tuple:
            return tuple(float(v) for v in value)
        if origin is dict:
            if isinstance(value, Mapping):
                return copy.deepcopy(dict(value))
            raise TypeError
    except (TypeError, ValueError):
        raise ValueError(f"config key {name!r}: expected {hint}, got {value!r}") from None
    return value


# --------------------------------------------------------------------------- presets
_TOY = {
    "n_data": 100_000,
    "normalize": True,
    "process": "vp-linear",
    "prediction": "eps",
    "weighting": "simple",
    "time_sampler": "uniform",
    "net": "mlp",
    "net_options": {"hidden": 256, "depth": 3, "embedding": "fourier"},
    "batch_size": 512,
    "lr": 2e-3,
    "warmup": 200,
    "lr_decay": "cosine",
    "weight_decay": 0.0,
    "grad_clip": 1.0,
    "ema_decay": 0.999,
    "log_every": 25,
    "save_every": 1000,
    "seed": 0,
}

PRESETS: dict[str, dict[str, Any]] = {
    "toy-swissroll": {**_TOY, "data": "swissroll", "steps": 16_000},
    "toy-8gaussians": {**_TOY, "data": "8gaussians", "steps": 24_000},
    "toy-moons": {**_TOY, "data": "moons", "steps": 10_000},
    "toy-checkerboard": {
        **_TOY,
        "data": "checkerboard",
        "steps": 20_000,
        "net_options": {"hidden": 256, "depth": 4, "embedding": "fourier"},
    },
    "toy-pinwheel": {**_TOY, "data": "pinwheel", "steps": 12_000},
}
"""Built-in configs: 2-D toys with a vp-linear process, eps prediction, a residual TimeMLP
(hidden 256, depth 3; 4 for the checkerboard's sharp edges), batch 512, AdamW at 2e-3 with a
200-step warm-up and a cosine decay (which measured clearly better than a constant rate at equal
steps), EMA 0.999. Measured on two CPU cores: about 16-24 s per 1000 steps (more when the cores
are shared), so 3-9 minutes per preset. toy-8gaussians trains 24,000 steps: at 12,000 its NLL is
as good (2.821 vs 2.808 nats) but its samples' MMD^2 at the modes' scale is 2.1-2.5x the noise
floor, at 24,000 1.6-2.1x (``benchmarks/toy_quality.py``). (``rings`` is left out: at this
scale the MLP does not resolve its thin rings.)"""


# Image presets: scikit-learn's 8x8 digits in [-1, 1] with a small U-Net
# (:data:`diffusio.nets.unet.UNET_PRESETS` ``digits``: 32 channels, mults (1, 2), one residual block
# per level, 4-head attention at 4x4; 755k parameters), DDPM's linear schedule with T = 1000, eps
# prediction and L_simple on discrete times (Ho et al. 2020, Alg. 1), batch 128, AdamW 1e-3 with
# warm-up and cosine decay, EMA 0.999. ``digits-ddpm`` trains 2,000 steps (about 4 minutes on two
# CPU cores, 8-9 steps/s): digits-FID 10.5 with DPM-Solver++ 20 steps against a noise floor of
# 8.4 (``diffusio demo``). ``-cond`` adds class labels with 10% label dropout (classifier-free
# guidance); ``digits-iddpm`` the cosine schedule, learned variance and hybrid loss.
_DIGITS = {
    "data": "digits",
    "n_data": None,
    "normalize": False,
    "process": "vp-linear",
    "prediction": "eps",
    "weighting": "simple",
    "time_sampler": "discrete",
    "net": "unet",
    "net_options": {
        "channels": 32,
        "channel_mults": [1, 2],
        "num_res_blocks": 1,
        "attention_resolutions": [4],
        "num_heads": 4,
        "groups": 8,
        "dropout": 0.0,
    },
    "batch_size": 128,
    "lr": 1e-3,
    "warmup": 200,
    "lr_decay": "cosine",
    "grad_clip": 1.0,
    "ema_decay": 0.999,
    "log_every": 25,
    "save_every": 500,
    "seed": 0,
}

PRESETS.update(
    {
        "digits-ddpm": {**_DIGITS, "steps": 2000},
        "digits-ddpm-cond": {
            **_DIGITS, "steps": 3000, "class_conditional": True, "class_dropout": 0.1,
        },
        "digits-iddpm": {
            **_DIGITS, "steps": 3000, "process": "vp-cosine", "variance": "learned",
            "weighting": "hybrid", "loss_options": {"decoder": "discretized"},
        },
    }
)  # fmt: skip


def _read_config_file(path: Path) -> dict[str, Any]:
    suffix = path.suffix.lower()
    text = path.read_text(encoding="utf-8")
    try:
        if suffix in (".yaml", ".yml"):
            import yaml

            values = yaml.safe_load(text)
        elif suffix == ".json":
            values = json.loads(text)
        else:
            raise ValueError(f"{path}: config files must be .yaml, .yml or .json")
    except (json.JSONDecodeError, ImportError) as err:
        raise ValueError(f"{path}: cannot read config ({err})") from None
    except Exception as err:  # yaml.YAMLError and friends
        if isinstance(err, ValueError) and str(path) in str(err):
            raise
        raise ValueError(f"{path}: cannot read config ({err})") from None
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: a config file must hold a mapping, got {type(values).__name__}")
    return values


def load_config(name_or_path: str | os.PathLike, **overrides: Any) -> TrainConfig:
    """A :class:`TrainConfig` from a preset name, or a YAML/JSON file, plus ``overrides``.

    A file may contain ``preset: <name>`` to start from that preset and override some keys.
    Unknown presets, files and keys raise ValueError listing the valid ones.
    """
    key = str(name_or_path)
    if key in PRESETS:
        values: dict[str, Any] = copy.deepcopy(PRESETS[key])
        values.setdefault("description", f"preset {key}")
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise ValueError(
                f"unknown config {key!r}: not a preset and not a file; presets: "
                f"{', '.join(PRESETS)}"
            )
        values = _read_config_file(path)
        base = values.pop("preset", None)
        if base is not None:
            if base not in PRESETS:
                raise ValueError(f"{path}: unknown preset {base!r}; valid: {', '.join(PRESETS)}")
            values = {**copy.deepcopy(PRESETS[base]), **values}
    values.update(overrides)
    return TrainConfig.from_dict(values)


# --------------------------------------------------------------------------- data
def load_dataset(config: TrainConfig) -> tuple[Tensor, Tensor | None]:
    """The training set ``(x, labels)``: x float32 (N, ...) and labels int64 (N,) or None.

    Toys: ``n_data`` samples (seeded with ``config.seed``), no labels. Image datasets
    (``digits``, ``mnist-5k``) and image files: (N, C, H, W) in [-1, 1] with their labels where
    the source has them. Other files: the rows of an ``.npy``/``.npz``/``.csv`` file read by
    :func:`diffusio.data.files.load_array`. Errors name the file or the valid choices.
    """
    from ..data.datasets import IMAGE_DATASETS, load_image_dataset
    from ..data.files import SUPPORTED_EXTENSIONS, load_array
    from ..data.images import is_image_source, load_images
    from ..data.toys import TOYS, sample_toy

    options = config.data_options
    labels: Tensor | None = None
    image = config.data in IMAGE_DATASETS or is_image_source(config.data)
    if not image and options:
        raise ValueError(f"data_options apply to image data, not to {config.data!r}")
    if config.data in TOYS:
        return sample_toy(config.data, config.n_data or 100_000, seed=config.seed), None
    if config.data in IMAGE_DATASETS:
        x, labels = load_image_dataset(
            config.data, split=options.get("split", "train"), size=options.get("size")
        )
    elif image:
        if "split" in options:
            raise ValueError("data_options split applies to the built-in image datasets only")
        x, labels = load_images(config.data, size=options.get("size"))
    elif Path(config.data).suffix.lower() in SUPPORTED_EXTENSIONS:
        x = load_array(config.data)
    else:
        raise ValueError(
            f"unknown data {config.data!r}: not a toy ({', '.join(TOYS)}), not an image dataset "
            f"({', '.join(IMAGE_DATASETS)}) and not a {'/'.join(SUPPORTED_EXTENSIONS)} file or "
            "image folder"
        )
    if config.n_data is not None:
        x = x[: config.n_data]
        labels = None if labels is None else labels[: config.n_data]
    if config.class_conditional and labels is None:
        raise ValueError(f"class_conditional needs labels, and {config.data!r} has none")
    return x.contiguous(), labels


def load_data(config: TrainConfig) -> Tensor:
    """The training set's x (see :func:`load_dataset`)."""
    return load_dataset(config)[0]


def num_classes(labels: Tensor) -> int:
    """The number of classes of integer labels 0..K-1 (K = max + 1)."""
    if labels.dtype.is_floating_point or labels.numel() == 0 or int(labels.min()) < 0:
        raise ValueError("class labels must be non-negative integers")
    return int(labels.max()) + 1


def data_digest(*tensors: Tensor) -> str:
    """SHA-256 of tensors' shapes, dtypes and bytes (to check a resumed run sees the same data)."""
    h = hashlib.sha256()
    for x in tensors:
        x = x.detach().to("cpu").contiguous()
        h.update(f"{tuple(x.shape)}|{x.dtype}|".encode())
        h.update(x.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------- models
def _net_class(name: str) -> type[nn.Module]:
    path = NETS.get(name, name)
    if not path.startswith("diffusio.nets."):
        raise ValueError(f"unknown net {name!r}; valid: {', '.join(NETS)}")
    module_name, _, cls_name = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), cls_name)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"cannot import net {path!r}: {err}") from None
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ValueError(f"net {path!r} is not an nn.Module class")
    return cls


def build_net(name: str, options: Mapping[str, Any]) -> nn.Module:
    """Instantiate a network by name (:data:`NETS`) or ``diffusio.nets.`` class path."""
    cls = _net_class(name)
    try:
        return cls(**options)
    except TypeError as err:
        raise ValueError(f"bad options for net {name!r}: {err}") from None


def _data_shape(config: TrainConfig) -> tuple[tuple[int, ...], int | None]:
    x, labels = load_dataset(config)
    classes = num_classes(labels) if config.class_conditional and labels is not None else None
    return tuple(x.shape[1:]), classes


def _net_options(
    config: TrainConfig, shape: tuple[int, ...] | None, classes: int | None = None
) -> dict[str, Any]:
    """``net_options`` with what the data decide filled in (unless set): ``dim`` (vectors; the
    product of the example shape) or ``in_channels`` and ``image_size`` (images), ``num_classes``
    for a class-conditional model, and twice the output width (``out_dim`` / ``out_channels``)
    for a learned-variance model."""
    options = dict(config.net_options)
    parameters = inspect.signature(_net_class(config.net)).parameters
    wanted = {"dim", "in_channels", "image_size", "num_classes"} & set(parameters)
    if any(k not in options for k in wanted) and (shape is None or (
            config.class_conditional and classes is None)):  # fmt: skip
        shape, classes = _data_shape(config)
    if "dim" in parameters and "dim" not in options:
        options["dim"] = int(math.prod(shape))
    if "in_channels" in parameters and "in_channels" not in options:
        if len(shape) != 3:
            raise ValueError(f"net {config.net!r} needs images (C, H, W), the data are {shape}")
        options["in_channels"] = int(shape[0])
    if "image_size" in parameters and "image_size" not in options:
        options["image_size"] = int(shape[-1])
    if config.class_conditional and "num_classes" not in options:
        if "num_classes" not in parameters:
            raise ValueError(f"net {config.net!r} takes no class labels (num_classes)")
        options["num_classes"] = int(classes)
    if config.variance == "learned":
        width = {"out_dim": "dim", "out_channels": "in_channels"}
        key = next((k for k in width if k in parameters), None)
        if key is None:
            raise ValueError(
                f"net {config.net!r} cannot output a learned variance (no out_dim/out_channels)"
            )
        options.setdefault(key, 2 * int(options[width[key]]))
    return options


def model_spec(
    config: TrainConfig,
    dim: int | None = None,
    *,
    shape: tuple[int, ...] | None = None,
    classes: int | None = None,
) -> dict[str, Any]:
    """The resolved model description stored in a run's ``config.json``: process name and
    options, prediction, network name, class path and complete constructor options. ``shape``
    (one example's shape; or ``dim`` for vectors) and ``classes`` are read from the data when
    the network needs them and they are not given."""
    if shape is None and dim is not None:
        shape = (int(dim),)
    process = make_process(config.process, **config.process_options)
    return {
        "process": {"name": config.process, "options": process.options()},
        "prediction": config.prediction,
        "variance": config.variance,
        "net": {
            "name": config.net,
            "class": NETS.get(config.net, config.net),
            "options": _net_options(config, shape, classes),
        },
    }


def model_from_spec(spec: Mapping[str, Any], seed: int | None = None) -> DiffusionModel:
    """Build the (untrained) model a :func:`model_spec` describes; with ``seed`` the weights are
    initialised from that seed without touching the global RNG."""
    net_spec = spec["net"]
    name = net_spec.get("name", net_spec["class"])
    if name not in NETS:
        name = net_spec["class"]
    process = make_process(spec["process"]["name"], **spec["process"].get("options", {}))
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        net = build_net(name, net_spec.get("options", {}))
    return DiffusionModel(
        net, process, spec.get("prediction", "eps"), spec.get("variance", "fixed")
    )


def build_model(config: TrainConfig, dim: int | None = None) -> DiffusionModel:
    """The untrained :class:`~diffusio.core.model.DiffusionModel` a config describes; weights
    are initialised from ``config.seed`` (the global RNG is left untouched). ``dim`` is the data
    dimension (read from the data when neither it nor ``net_options['dim']`` is given)."""
    return model_from_spec(model_spec(config, dim), seed=config.seed)


def run_manifest(
    config: TrainConfig,
    spec: Mapping[str, Any],
    normalizer: Any | None,
    data_info: Mapping[str, Any],
) -> dict[str, Any]:
    """The content of a run's ``config.json``."""
    return {
        "format": RUN_FORMAT,
        "version": 1,
        "config": config.to_dict(),
        "model": dict(spec),
        "normalizer": None if normalizer is None else _to_json(normalizer.state_dict()),
        "data": dict(data_info),
    }


def _to_json(value: Any) -> Any:
    if isinstance(value, Tensor):
        return {"__tensor__": str(value.dtype).removeprefix("torch."), "data": value.tolist()}
    if hasattr(value, "tolist") and hasattr(value, "dtype"):  # numpy
        return {"__array__": str(value.dtype), "data": value.tolist()}
    if isinstance(value, Mapping):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    return value


def _from_json(value: Any) -> Any:
    if isinstance(value, Mapping):
        if "__tensor__" in value:
            return torch.tensor(value["data"], dtype=getattr(torch, value["__tensor__"]))
        if "__array__" in value:
            import numpy as np

            return np.asarray(value["data"], dtype=value["__array__"])
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def to_json(value: Any) -> Any:
    """Tensors / arrays inside nested containers -> tagged JSON (see :func:`from_json`)."""
    return _to_json(value)


def from_json(value: Any) -> Any:
    """Inverse of :func:`to_json`."""
    return _from_json(value)


def load_run(
    run_dir: str | os.PathLike, ema: bool = True
) -> tuple[DiffusionModel, TrainConfig, Any | None]:
    """Rebuild a trained model from a run directory written by the trainer.

    Reads ``config.json`` and ``ema.safetensors`` (``ema=False``: ``model.safetensors``); never
    unpickles. Returns ``(model, config, normalizer)``, the model in eval mode on the CPU and the
    normalizer (a :class:`diffusio.data.normalize.Standardizer`, or None if the data was not
    normalized): samples come out in normalized units, ``normalizer.inverse(x)`` maps them back.
    A missing directory or file raises FileNotFoundError, a corrupt one ValueError, naming it.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: run directory not found")
    cfg_file = run_dir / "config.json"
    manifest = read_json(cfg_file)
    if not isinstance(manifest, dict) or manifest.get("format") != RUN_FORMAT:
        raise ValueError(f"{cfg_file}: not a diffusio run config (format {RUN_FORMAT!r})")
    try:
        config = TrainConfig.from_dict(manifest["config"])
        spec = manifest["model"]
        model = model_from_spec(spec)
    except (KeyError, TypeError) as err:
        raise ValueError(f"{cfg_file}: incomplete run config ({err!r})") from None
    except ValueError as err:
        raise ValueError(f"{cfg_file}: {err}") from None
    weights = run_dir / ("ema.safetensors" if ema else "model.safetensors")
    tensors, _ = read_safetensors(weights)
    apply_tensors(model, tensors, weights)
    normalizer = None
    if manifest.get("normalizer") is not None:
        from ..data.normalize import Standardizer

        try:
            normalizer = Standardizer.from_state_dict(_from_json(manifest["normalizer"]))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{cfg_file}: bad normalizer state ({err})") from None
    return model.eval(), config, normalizer
