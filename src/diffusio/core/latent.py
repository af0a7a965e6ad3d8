"""Latent diffusion as a model adapter (Rombach et al. 2022, "High-Resolution Image Synthesis
with Latent Diffusion Models", Sec. 3-3.2).

An autoencoder ``encode(x) -> z``, ``decode(z) -> x`` moves the data to a lower-dimensional
latent space and a diffusion model is trained there. Its latents are multiplied by one scalar,

    z_s = scale * z,        scale = 1 / std(latents of the training data)

(the official code's ``scale_by_std``: ``1 / z.flatten().std()``; Stable Diffusion's 0.18215 is
that number for its own autoencoder), so that the diffusion model sees unit-variance data
whatever the autoencoder's latent scale: the signal-to-noise ratio of the forward process, and so
the schedule, keeps its meaning (Sec. 4.3.2). :func:`latent_scale` computes it from
data; it belongs to the autoencoder, is stored with it and never hard-coded.

:class:`LatentModel` *is* a :class:`~diffusio.core.model.DiffusionModel` over the scaled latents
(k-diffusion ``external.py`` style: it forwards every prediction to the wrapped model), so every
sampler (``sample(latent_model, latent_shape, ...)``), guidance and constraint hook and
:func:`~diffusio.core.likelihood.nll` run in latent space unchanged; :meth:`LatentModel.decode`
maps scaled latents to images, :meth:`LatentModel.encode` images to scaled latents, and
:meth:`LatentModel.sample_images` samples with any sampler and decodes.

What a likelihood means here: ``nll(latent_model, z_s)`` is ``-log p(z_s)`` of the *scaled*
latents in nats per example (divide by the latent dimension D for nats per latent dimension).
Since ``z_s = scale z`` elementwise, ``log p_z(z) = log p_s(scale z) + D log|scale|``.
:meth:`LatentModel.image_nll` reports either, and for a *linear* decoder ``x = A z + b``
(:class:`LinearAutoencoder`, A of full column rank) the exact density of x on the decoder's
image, the D-dimensional affine subspace ``A R^D + b`` of pixel space (density with respect to
its D-dimensional Lebesgue measure; the ordinary pixel density when A is square):

    log p_x(x) = log p_z(A^+ (x - b)) - 1/2 log det(A^T A).

For a nonlinear or stochastic autoencoder the latent number is not a pixel likelihood (that
would need the decoder's likelihood, a VAE bound); it is what it says, the density of the
encoder's latent of x.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from .model import DiffusionModel, model_dtype

__all__ = ["SPACES", "Autoencoder", "LatentModel", "LinearAutoencoder", "latent_scale"]

SPACES = ("scaled", "latent", "pixel")
"""What :meth:`LatentModel.image_nll` reports the density of."""


@runtime_checkable
class Autoencoder(Protocol):
    """``encode(x, **options) -> z`` (the posterior mean, or a sample) and ``decode(z) -> x``."""

    def encode(self, x: Tensor, **options: Any) -> Tensor: ...

    def decode(self, z: Tensor) -> Tensor: ...


def _check_autoencoder(autoencoder: Any) -> None:
    if not (callable(getattr(autoencoder, "encode", None))
            and callable(getattr(autoencoder, "decode", None))):  # fmt: skip
        raise TypeError(
            f"autoencoder must have encode(x) and decode(z) methods, got "
            f"{type(autoencoder).__name__}"
        )


def latent_scale(
    autoencoder: Autoencoder, data: Tensor, *, batch_size: int = 256, **encode_options: Any
) -> float:
    """``1 / std`` of every entry of the latents of ``data`` (Rombach et al. 2022, Sec. 4.3.2;
    the official ``scale_by_std``: ``1 / z.flatten().std()``).

    The std is the unbiased sample std (``torch.std``, correction 1) over all entries of all
    rows, about their mean, in float64, so ``scale * z`` has std exactly 1 (its mean is not
    moved). ``data`` is encoded in batches of ``batch_size`` without gradients;
    ``encode_options`` go to ``autoencoder.encode`` (e.g. ``sample=True``, as the official code,
    which scales by the std of posterior samples; the default encodes as the autoencoder does by
    default -- the mean for :class:`~diffusio.image.autoencoder.AutoencoderKL`).
    """
    _check_autoencoder(autoencoder)
    if not isinstance(data, Tensor) or data.dim() < 1 or data.shape[0] < 1:
        raise ValueError("data must be a tensor of shape (N, ...) with N >= 1")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    with torch.no_grad():
        z = torch.cat([autoencoder.encode(data[i : i + int(batch_size)], **encode_options)
                       .reshape(-1).to(torch.float64)
                       for i in range(0, data.shape[0], int(batch_size))])  # fmt: skip
    if z.numel() < 2:
        raise ValueError("need at least 2 latent entries to estimate a std")
    std = float(z.std())
    if not math.isfinite(std) or std <= 1e-12 * float(z.abs().max()):
        raise ValueError(f"the latents have std {std}: no scale factor (constant latents?)")
    return 1.0 / std


def _check_scale(scale: float) -> float:
    scale = float(scale)
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be finite and positive, got {scale}")
    return scale


class LatentModel(DiffusionModel):
    """A diffusion model over scaled latents ``z_s = scale * encode(x)``, with the autoencoder
    that maps them to images (Rombach et al. 2022, Sec. 3).

    Every prediction is the wrapped ``model``'s (which may itself be an adapter), so samplers,
    guidance and likelihood see a plain :class:`DiffusionModel`. Guidance and constraints act on
    the scaled latents; a pixel-space loss can use :meth:`decode` inside it (it keeps autograd).

    Args:
        model: the diffusion model over scaled latents.
        autoencoder: anything with ``encode(x, **options)`` and ``decode(z)`` (an
            :class:`Autoencoder`); registered as a submodule when it is an ``nn.Module``.
        scale: the latent scale factor (:func:`latent_scale`), finite and positive.
    """

    def __init__(self, model: DiffusionModel, autoencoder: Autoencoder, scale: float):
        if not isinstance(model, DiffusionModel):
            raise TypeError(f"model must be a DiffusionModel, got {type(model).__name__}")
        _check_autoencoder(autoencoder)
        super().__init__(model.net, model.process, model.prediction, model.variance_head)
        self.model, self.autoencoder, self.scale = model, autoencoder, _check_scale(scale)

    def predict_with_coefficients(self, x: Tensor, t: Tensor, alpha: Any, sigma: Any,
                                  cond: dict[str, Any] | None = None) -> Any:  # fmt: skip
        return self.model.predict_with_coefficients(x, t, alpha, sigma, cond)

    # ------------------------------------------------------------------ the autoencoder
    def _autoencoder_dtype(self) -> torch.dtype | None:
        ae = self.autoencoder
        if isinstance(ae, nn.Module) and next(ae.parameters(), None) is not None:
            return model_dtype(ae)
        return None

    def encode(self, x: Tensor, **options: Any) -> Tensor:
        """Scaled latents ``scale * autoencoder.encode(x, **options)`` of images ``x``, in the
        diffusion model's dtype (``x`` is cast to a module autoencoder's parameter dtype)."""
        dtype = self._autoencoder_dtype()
        z = self.autoencoder.encode(x if dtype is None else x.to(dtype), **options)
        return (self.scale * z).to(self.dtype)

    def decode(self, z: Tensor) -> Tensor:
        """Images ``autoencoder.decode(z / scale)`` of scaled latents ``z`` (cast to a module
        autoencoder's parameter dtype)."""
        dtype = self._autoencoder_dtype()
        z = z / self.scale
        return self.autoencoder.decode(z if dtype is None else z.to(dtype))

    def latent_shape(self, image_shape: Sequence[int]) -> tuple[int, ...]:
        """The shape (without batch) of the latent of one image of ``image_shape`` (without
        batch), found by encoding one blank image."""
        x = torch.zeros((1, *(int(s) for s in image_shape)), dtype=self.dtype, device=self.device)
        with torch.no_grad():
            return tuple(self.encode(x).shape[1:])

    def sample_images(
        self,
        shape: Sequence[int],
        sampler: str = "ddim",
        steps: int | None = None,
        seed: int | None = None,
        *,
        return_stats: bool = False,
        **options: Any,
    ) -> Tensor | tuple[Tensor, dict[str, Any]]:
        """Sample scaled latents of ``shape`` (batch first, e.g. ``(n, *latent_shape(...))``)
        with :func:`~diffusio.core.samplers.sample` (``sampler``, ``steps``, ``seed`` and every
        other option, guidance and constraints included, passed on) and decode them.

        Returns the images, or with ``return_stats`` ``(images, stats)``: the sampler's stats
        plus ``latents`` (the scaled latents before decoding)."""
        from .samplers import sample

        out = sample(self, shape, sampler, steps, seed, return_stats=True, **options)
        z, stats = out  # type: ignore[misc]
        with torch.no_grad():
            images = self.decode(z)
        return (images, {**stats, "latents": z}) if return_stats else images

    # ------------------------------------------------------------------ likelihood
    def image_nll(
        self,
        x: Tensor,
        space: str = "scaled",
        *,
        encode_options: dict[str, Any] | None = None,
        **options: Any,
    ) -> Tensor:
        """Negative log-likelihood in nats per example of images ``x`` through their latents.

        ``x`` is encoded with :meth:`encode` (``encode_options``) and the scaled latents go to
        :func:`~diffusio.core.likelihood.nll` (``options``: ``exact``, ``t_min``, ``rtol``, ...).
        ``space``: ``"scaled"``, ``-log p(z_s)``; ``"latent"``, ``-log p_z(z)`` =
        ``-log p(z_s) - D log(scale)`` (D latent entries); ``"pixel"``, for an autoencoder with
        a constant decoder Jacobian J (``decoder_log_det()`` = 1/2 log det(J^T J), e.g.
        :class:`LinearAutoencoder`), ``-log p_z(z) + 1/2 log det(J^T J)``: the density of x on
        the decoder's image (module docstring). Float64 tensor (N,)."""
        from .likelihood import nll

        if space not in SPACES:
            raise ValueError(f"unknown space {space!r}; valid: {', '.join(SPACES)}")
        log_det = getattr(self.autoencoder, "decoder_log_det", None)
        if space == "pixel" and not callable(log_det):
            raise ValueError(
                "space='pixel' needs a decoder with a constant Jacobian (decoder_log_det(), e.g. "
                f"LinearAutoencoder); {type(self.autoencoder).__name__} has none"
            )
        with torch.no_grad():
            z = self.encode(x, **(encode_options or {}))
        out = nll(self, z, **options)
        if space == "scaled":
            return out  # type: ignore[return-value]
        dims = math.prod(z.shape[1:])
        out = out - dims * math.log(self.scale)  # type: ignore[operator]
        if space == "pixel":
            out = out + float(log_det())  # type: ignore[misc]
        return out


class LinearAutoencoder(nn.Module):
    """The exact linear autoencoder ``decode(z) = A z + b``, ``encode(x) = A^+ (x - b)`` with
    A (D_x, D_z) of full column rank (``A^+`` its pseudo-inverse; exact inverse on the decoder's
    image, the orthogonal projection onto it elsewhere). Latents are flat (N, D_z); images
    (N, D_x), or (N, *image_shape) when ``image_shape`` is given. A Gaussian-mixture latent
    then gives a known pixel distribution (means ``A mu_k + b``, covariances ``A S_k A^T``),
    which is what the latent adapter is tested against."""

    def __init__(self, matrix: Tensor, offset: Tensor | None = None,
                 image_shape: Sequence[int] | None = None):  # fmt: skip
        super().__init__()
        A = torch.as_tensor(matrix, dtype=torch.float64)
        if A.dim() != 2 or A.shape[0] < A.shape[1]:
            raise ValueError(f"matrix must have shape (D_x, D_z) with D_x >= D_z, got "
                             f"{tuple(A.shape)}")  # fmt: skip
        if int(torch.linalg.matrix_rank(A)) < A.shape[1]:
            raise ValueError("matrix must have full column rank")
        b = torch.zeros(A.shape[0], dtype=torch.float64) if offset is None else offset
        b = torch.as_tensor(b, dtype=torch.float64)
        if b.shape != (A.shape[0],):
            raise ValueError(f"offset must have shape ({A.shape[0]},), got {tuple(b.shape)}")
        self.image_shape = (A.shape[0],) if image_shape is None else tuple(image_shape)
        if math.prod(self.image_shape) != A.shape[0]:
            raise ValueError(f"image_shape {self.image_shape} does not hold {A.shape[0]} values")
        self.register_buffer("matrix", A)
        self.register_buffer("offset", b)
        self.register_buffer("pinv", torch.linalg.pinv(A))

    def encode(self, x: Tensor, sample: bool = False) -> Tensor:
        """``A^+ (x - b)`` (deterministic: ``sample`` is accepted and ignored)."""
        flat = x.reshape(x.shape[0], -1)
        if flat.shape[1] != self.matrix.shape[0]:
            raise ValueError(f"expected images of {self.matrix.shape[0]} values, got "
                             f"{tuple(x.shape)}")  # fmt: skip
        return (flat - self.offset.to(flat)) @ self.pinv.to(flat).T

    def decode(self, z: Tensor) -> Tensor:
        """``A z + b`` reshaped to (N, *image_shape)."""
        flat = z.reshape(z.shape[0], -1)
        if flat.shape[1] != self.matrix.shape[1]:
            raise ValueError(f"expected latents of {self.matrix.shape[1]} values, got "
                             f"{tuple(z.shape)}")  # fmt: skip
        x = flat @ self.matrix.to(flat).T + self.offset.to(flat)
        return x.reshape(z.shape[0], *self.image_shape)

    def decoder_log_det(self) -> float:
        """``1/2 log det(A^T A)``: the log of the volume factor of the decoder (``log|det A|``
        for square A)."""
        return 0.5 * float(torch.logdet(self.matrix.T @ self.matrix))
