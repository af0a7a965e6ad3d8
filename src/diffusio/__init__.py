"""diffusio: the diffusion-model timeline, from Sohl-Dickstein 2015 to diffusion control, as one
PyTorch library.

The core API::

    import diffusio
    process = diffusio.make_process("vp-linear")        # or diffusio.VPCosine(), diffusio.VE()
    model = diffusio.DiffusionModel(net, process, prediction="eps")
    x = diffusio.sample(model, (64, 2), sampler="dpm-solver++", steps=20, seed=0)
    nats = diffusio.nll(model, x)

steered with ``guidance=[diffusio.ClassifierFreeGuidance(...)]`` or
``constraints=[diffusio.Inpaint(...)]``, inverted with ``diffusio.ddim_encode``, stepped one
reverse transition at a time (with its Gaussian mean and std) by ``diffusio.reverse_step``, and
``diffusio.oracle.GaussianMixture`` for exact answers without training.

The names are imported on first use (PEP 562), so ``import diffusio`` (and the ``diffusio``
command line's ``list`` and ``--help``) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name -> the module defining it.
_EXPORTS: dict[str, str] = {
    "bits_per_dim": "diffusio.core.likelihood",
    "dequantize": "diffusio.core.likelihood",
    "discrete_bits_per_dim": "diffusio.core.likelihood",
    "nll": "diffusio.core.likelihood",
    "diffusion_loss": "diffusio.core.losses",
    "DiffusionModel": "diffusio.core.model",
    "Prediction": "diffusio.core.parameterization",
    "PROCESSES": "diffusio.core.processes",
    "Process": "diffusio.core.processes",
    "SubVP": "diffusio.core.processes",
    "VE": "diffusio.core.processes",
    "VPCosine": "diffusio.core.processes",
    "VPLinear": "diffusio.core.processes",
    "VPTable": "diffusio.core.processes",
    "make_process": "diffusio.core.processes",
    "SAMPLERS": "diffusio.core.samplers",
    "ddim_encode": "diffusio.core.samplers",
    "reverse_step": "diffusio.core.samplers",
    "sample": "diffusio.core.samplers",
    "ClassifierFreeGuidance": "diffusio.core.steering",
    "ClassifierGuidance": "diffusio.core.steering",
    "ClipX0": "diffusio.core.steering",
    "DynamicThreshold": "diffusio.core.steering",
    "Inpaint": "diffusio.core.steering",
    "make_time_distribution": "diffusio.core.timesteps",
    "make_time_sampler": "diffusio.core.timesteps",  # the older name of make_time_distribution
}

__all__ = [
    "ClassifierFreeGuidance",
    "ClassifierGuidance",
    "ClipX0",
    "DiffusionModel",
    "DynamicThreshold",
    "Inpaint",
    "PROCESSES",
    "Prediction",
    "Process",
    "SAMPLERS",
    "SubVP",
    "VE",
    "VPCosine",
    "VPLinear",
    "VPTable",
    "bits_per_dim",
    "ddim_encode",
    "dequantize",
    "diffusion_loss",
    "discrete_bits_per_dim",
    "make_process",
    "make_time_distribution",
    "make_time_sampler",
    "nll",
    "oracle",
    "reverse_step",
    "sample",
    "__version__",
]

if TYPE_CHECKING:  # what the lazy names are, for type checkers and IDEs
    from . import oracle
    from .core.likelihood import bits_per_dim, dequantize, discrete_bits_per_dim, nll
    from .core.losses import diffusion_loss
    from .core.model import DiffusionModel
    from .core.parameterization import Prediction
    from .core.processes import (
        PROCESSES,
        VE,
        Process,
        SubVP,
        VPCosine,
        VPLinear,
        VPTable,
        make_process,
    )
    from .core.samplers import SAMPLERS, ddim_encode, reverse_step, sample
    from .core.steering import (
        ClassifierFreeGuidance,
        ClassifierGuidance,
        ClipX0,
        DynamicThreshold,
        Inpaint,
    )
    from .core.timesteps import make_time_distribution, make_time_sampler


def __getattr__(name: str) -> Any:
    """Import an exported name (or a subpackage such as ``diffusio.oracle``) on first use."""
    module = _EXPORTS.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
    elif not name.startswith("_"):
        try:
            value = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
