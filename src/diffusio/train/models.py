"""Building networks and diffusion models from a training config.

:data:`NETS` names the networks a config may use (``net(x, t, **cond)``); a domain adds its own
with :func:`register_net`. :func:`model_spec` resolves a config into the complete model
description a run's ``config.json`` stores (process and options, prediction, variance head, network
class and every constructor option, including those the data decide: ``dim`` or
``in_channels`` / ``image_size``, ``num_classes``, the doubled output width of a learned
variance, and the dataset's own :attr:`~diffusio.data.batch.TrainingSet.net_options`);
:func:`model_from_spec` builds the untrained model from that description alone.
"""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..core.model import DiffusionModel
from ..core.processes import make_process

if TYPE_CHECKING:
    from .config import TrainConfig

__all__ = [
    "NETS",
    "build_model",
    "build_net",
    "is_known_net",
    "model_from_spec",
    "model_spec",
    "net_path",
    "register_net",
]

NETS: dict[str, str | type[nn.Module]] = {
    "mlp": "diffusio.nets.mlp.TimeMLP",
    "unet": "diffusio.nets.unet.UNet",
    "csdi": "diffusio.nets.csdi.CSDINet",
    "temporal-unet": "diffusio.nets.temporal.TemporalUNet",
    "temporal-value": "diffusio.nets.temporal.ValueNetwork",
    "film-unet1d": "diffusio.nets.film.FiLMUNet1D",
    "film-mlp": "diffusio.nets.film.FiLMMLP",
    "unclip-decoder": "diffusio.nets.unclip_decoder.UnCLIPDecoder",
}
"""Network names a config may use -> import path under ``diffusio.nets.`` or a registered class
(:func:`register_net`). A run's ``config.json`` may also name any class under
``diffusio.nets.`` by its full path; nothing else is ever imported from a config."""


def register_net(name: str, cls: type[nn.Module], *, replace: bool = False) -> None:
    """Make ``cls`` (an ``nn.Module`` class called as ``net(x, t, **cond)``) available to
    configs as ``net: name``. A run that uses it loads only where it is registered again."""
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise TypeError(f"net {name!r} must be an nn.Module class, got {cls!r}")
    if name in NETS and not replace and NETS[name] is not cls:
        raise ValueError(f"net {name!r} is already registered (pass replace=True)")
    NETS[name] = cls


def is_known_net(name: str) -> bool:
    """A registered name or a class path under ``diffusio.nets.``."""
    return name in NETS or str(name).startswith("diffusio.nets.")


def net_path(name: str) -> str:
    """The class path a run records for net ``name``."""
    target = NETS.get(name, name)
    if isinstance(target, type):
        return f"{target.__module__}.{target.__qualname__}"
    return target


def _net_class(name: str) -> type[nn.Module]:
    target = NETS.get(name, name)
    if isinstance(target, type):
        return target
    if not target.startswith("diffusio.nets."):
        raise ValueError(f"unknown net {name!r}; valid: {', '.join(NETS)}")
    module_name, _, cls_name = target.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), cls_name)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"cannot import net {target!r}: {err}") from None
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ValueError(f"net {target!r} is not an nn.Module class")
    return cls


def build_net(name: str, options: Mapping[str, Any]) -> nn.Module:
    """Instantiate a network by name (:data:`NETS`) or ``diffusio.nets.`` class path."""
    cls = _net_class(name)
    try:
        return cls(**options)
    except TypeError as err:
        raise ValueError(f"bad options for net {name!r}: {err}") from None


def _from_data(config: TrainConfig) -> tuple[tuple[int, ...], int | None, dict[str, Any]]:
    from .data import load_training_set, num_classes

    data = load_training_set(config)
    classes = num_classes(data.labels) if config.class_conditional else None
    return tuple(data.x0.shape[1:]), classes, dict(data.net_options)


def _net_options(
    config: TrainConfig,
    shape: tuple[int, ...] | None,
    classes: int | None = None,
    data_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``net_options`` with what the data decide filled in (unless set): ``transition_dim``
    (sequences (H, D): D; such a net's ``dim`` is its width) or ``dim`` (vectors; the
    product of the example shape) or ``in_channels`` and ``image_size`` (images), ``num_classes``
    for a class-conditional model, the dataset's ``net_options`` the network takes, and twice
    the output width (``out_dim`` / ``out_channels``) for a learned-variance model. The data
    are loaded only when a shape or class count the network needs is not given (the dataset's
    options then come with them; the trainer always passes all three)."""
    options = dict(config.net_options)
    parameters = inspect.signature(_net_class(config.net)).parameters
    wanted = {"transition_dim", "in_channels", "image_size", "num_classes"} & set(parameters)
    if "transition_dim" not in parameters and "dim" in parameters:
        wanted.add("dim")
    if any(k not in options for k in wanted) and (shape is None or (
            config.class_conditional and classes is None)):  # fmt: skip
        shape, classes, data_options = _from_data(config)
    for key, value in (data_options or {}).items():
        if key in parameters and key not in options:
            options[key] = value
    if "transition_dim" in parameters and "transition_dim" not in options:
        options["transition_dim"] = int(shape[-1])  # sequences (N, H, D): D
    elif "dim" in parameters and "dim" not in options:  # a sequence net's dim is its width
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
    if config.variance_head == "learned":
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
    data_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The resolved model description stored in a run's ``config.json``: process name and
    options, prediction, variance head (under the key ``variance``, as runs have always stored
    it), network name, class path and complete constructor options. ``shape``
    (one example's shape; or ``dim`` for vectors), ``classes`` and the dataset's network options
    ``data_options`` are read from the data when the network needs them and they are not
    given."""
    if shape is None and dim is not None:
        shape = (int(dim),)
    process = make_process(config.process, **config.process_options)
    return {
        "process": {"name": config.process, "options": process.options()},
        "prediction": config.prediction,
        "variance": config.variance_head,  # the serialized key keeps its older name
        "net": {
            "name": config.net,
            "class": net_path(config.net),
            "options": _net_options(config, shape, classes, data_options),
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
        net,
        process,
        spec.get("prediction", "eps"),
        variance_head=spec.get("variance", "fixed"),  # the serialized key keeps its older name
    )


def build_model(config: TrainConfig, dim: int | None = None) -> DiffusionModel:
    """The untrained :class:`~diffusio.core.model.DiffusionModel` a config describes; weights
    are initialised from ``config.seed`` (the global RNG is left untouched). ``dim`` is the data
    dimension (read from the data when neither it nor ``net_options['dim']`` is given)."""
    return model_from_spec(model_spec(config, dim), seed=config.seed)
