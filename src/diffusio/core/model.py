"""The model interface: any network plus a process and a prediction type.

``DiffusionModel(net, process, prediction)`` calls ``net(x_t, t, **cond)`` with continuous ``t``
of shape (N,) and answers eps / x0 / score / v at (x, t). Per-frame times (``t`` of x's leading
shape, e.g. (N, L) for a state (N, L, D) whose frames sit at different noise levels) reach the
network as they are, alpha and sigma broadcast over the trailing dimensions. A trained network
and the exact oracle (:mod:`diffusio.core.oracle`) are wrapped the same way, so every sampler
and the likelihood can be checked against closed-form answers.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .parameterization import Prediction, check_prediction
from .processes import Process, broadcast_like

__all__ = ["VARIANCE_HEADS", "VARIANCES", "DiffusionModel", "model_dtype"]


def model_dtype(module: nn.Module, default: torch.dtype | None = None) -> torch.dtype:
    """The floating dtype of a module's first parameter or buffer (``default`` if it has none)."""
    for tensor in (*module.parameters(), *module.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return default or torch.get_default_dtype()


def model_device(module: nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (CPU if it has none)."""
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


VARIANCE_HEADS = ("fixed", "learned")
"""What a network's output holds besides the prediction: nothing (``fixed``: the reverse kernel's
variance is chosen by the sampler) or the raw variance interpolation value (``learned``)."""
VARIANCES = VARIANCE_HEADS  # the older name


class DiffusionModel(nn.Module):
    """Wrap ``net(x_t, t, **cond)`` that predicts ``prediction`` (eps, x0, v or score) under
    ``process``.

    ``variance_head="learned"``: the network also outputs the reverse kernel's variance, as a
    second block of channels (dim 1) of the same size as x: its output has twice x's channels,
    the first half the prediction, the second the raw interpolation value
    ``Prediction.variance_interp`` (improved DDPM, Nichol & Dhariwal 2021, eq. 15; see
    :mod:`diffusio.core.vlb`). ``variance=`` is the older, deprecated spelling of
    ``variance_head=`` (and ``model.variance`` a read-only alias of ``model.variance_head``).
    """

    def __init__(
        self,
        net: nn.Module,
        process: Process,
        prediction: str = "eps",
        variance_head: str | None = None,
        *,
        variance: str | None = None,
    ):
        super().__init__()
        if not isinstance(process, Process):
            raise TypeError(f"process must be a diffusio Process, got {type(process).__name__}")
        if variance is not None:
            if variance_head is not None and variance_head != variance:
                raise ValueError(
                    f"variance is the older name of variance_head: got variance={variance!r} "
                    f"and variance_head={variance_head!r}"
                )
            variance_head = variance
        variance_head = "fixed" if variance_head is None else variance_head
        if variance_head not in VARIANCE_HEADS:
            raise ValueError(
                f"unknown variance head {variance_head!r}; valid: {', '.join(VARIANCE_HEADS)}"
            )
        self.net = net
        self.process = process
        self.prediction = check_prediction(prediction)
        self.variance_head = variance_head

    @property
    def variance(self) -> str:
        """The older name of :attr:`variance_head` (read-only)."""
        return self.variance_head

    @property
    def dtype(self) -> torch.dtype:
        return model_dtype(self.net)

    @property
    def device(self) -> torch.device:
        return model_device(self.net)

    def _times(self, x: Tensor, t: Tensor | float) -> Tensor:
        """``t`` as a tensor of shape (N,), or of x's leading shape for per-frame times (any
        tensor broadcastable to x.shape[:t.dim()])."""
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        if t.dim() == 0:
            return t.expand(x.shape[0])
        lead = tuple(x.shape[: t.dim()])
        if t.shape == lead:
            return t
        if t.dim() < x.dim() and all(a in (1, b) for a, b in zip(t.shape, lead, strict=True)):
            return t.expand(lead)
        raise ValueError(
            f"t must be a scalar, of shape ({x.shape[0]},) or broadcastable to the state's "
            f"leading dimensions (per-frame times), got {tuple(t.shape)} for a state of shape "
            f"{tuple(x.shape)}"
        )

    def forward(self, x: Tensor, t: Tensor | float, **cond: Any) -> Tensor:
        """The network's raw output."""
        return self.net(x, self._times(x, t), **cond)

    def predict(self, x: Tensor, t: Tensor | float, **cond: Any) -> Prediction:
        """The network's prediction at (x, t), convertible to any parameterization."""
        t = self._times(x, t)
        alpha = broadcast_like(self.process.alpha(t), x)
        sigma = broadcast_like(self.process.sigma(t), x)
        return self.predict_with_coefficients(x, t, alpha, sigma, cond)

    def predict_with_coefficients(
        self,
        x: Tensor,
        t: Tensor,
        alpha: Tensor | float,
        sigma: Tensor | float,
        cond: dict[str, Any] | None = None,
    ) -> Prediction:
        """:meth:`predict` with ``alpha(t)``, ``sigma(t)`` already known (samplers compute them
        once per grid); ``t`` has shape (N,), or x's leading shape for per-frame times."""
        out = self.net(x, t, **(cond or {}))
        variance_interp = None
        if self.variance_head == "learned":
            if out.dim() < 2 or out.shape[1] != 2 * x.shape[1]:
                raise ValueError(
                    f"a learned-variance network must return twice the input's channels (dim 1),"
                    f" got shape {tuple(out.shape)} for input {tuple(x.shape)}"
                )
            out, variance_interp = out.chunk(2, dim=1)
        if out.shape != x.shape:
            raise ValueError(
                f"network returned shape {tuple(out.shape)} for input {tuple(x.shape)}"
            )
        return Prediction(self.prediction, out, x, alpha, sigma, variance_interp)

    def eps(self, x: Tensor, t: Tensor | float, **cond: Any) -> Tensor:
        """Predicted noise."""
        return self.predict(x, t, **cond).eps

    def x0(self, x: Tensor, t: Tensor | float, **cond: Any) -> Tensor:
        """Predicted clean data (Tweedie's estimate E[x0 | x_t])."""
        return self.predict(x, t, **cond).x0

    def score(self, x: Tensor, t: Tensor | float, **cond: Any) -> Tensor:
        """Predicted score grad_x log p_t(x)."""
        return self.predict(x, t, **cond).score

    def v(self, x: Tensor, t: Tensor | float, **cond: Any) -> Tensor:
        """Predicted velocity v = alpha eps - sigma x0."""
        return self.predict(x, t, **cond).v

    def loss(self, x0: Tensor, **options: Any) -> Tensor:
        """Training loss on a batch of clean data; see :func:`diffusio.core.losses.diffusion_loss`."""
        from .losses import diffusion_loss

        return diffusion_loss(self, x0, **options)
