"""diffusio: the diffusion-model timeline, from Sohl-Dickstein 2015 to diffusion control, as one
PyTorch library.

The core API::

    import diffusio
    process = diffusio.make_process("vp-linear")
    model = diffusio.DiffusionModel(net, process, prediction="eps")
    x = diffusio.sample(model, (64, 2), sampler="dpm-solver++", steps=20, seed=0)
    nats = diffusio.nll(model, x)

and ``diffusio.oracle.GaussianMixture`` for exact answers without training.
"""

from . import oracle
from .core.likelihood import bits_per_dim, dequantize, discrete_bits_per_dim, nll
from .core.losses import diffusion_loss
from .core.model import DiffusionModel
from .core.parameterization import Prediction
from .core.processes import PROCESSES, Process, make_process
from .core.samplers import SAMPLERS, sample
from .core.steering import ClipX0, DynamicThreshold, Inpaint
from .core.timesteps import make_time_sampler

__version__ = "0.1.0"

__all__ = [
    "PROCESSES",
    "SAMPLERS",
    "ClipX0",
    "DiffusionModel",
    "DynamicThreshold",
    "Inpaint",
    "Prediction",
    "Process",
    "bits_per_dim",
    "dequantize",
    "diffusion_loss",
    "discrete_bits_per_dim",
    "make_process",
    "make_time_sampler",
    "nll",
    "oracle",
    "sample",
    "__version__",
]
