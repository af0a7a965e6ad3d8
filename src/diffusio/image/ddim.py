"""DDIM's deterministic map between images and latents (Song, Meng & Ermon 2021, Sec. 5.3-5.4).

With eta = 0 the DDIM update (eq. 12) is an Euler step of an ODE, so x_T -> x_0 is a
deterministic decoder and running the update forward in time
(:func:`~diffusio.core.samplers.ddim_encode`) an encoder:

* :func:`ddim_decode` -- x_T to images with S deterministic steps;
* :func:`reconstruction_errors` -- encode then decode held-out images at several S: the
  per-dimension MSE on the [0, 1] scale (Table 2) and the latents' statistics;
* :func:`class_agreement` -- sample consistency (Sec. 5.3, Fig. 5): how often samples from one
  x_T at a small S show the same digit as the long run's;
* :func:`slerp` / :func:`lerp` and :func:`interpolate` -- interpolation between two latents,
  decoded (Fig. 6).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..core.samplers import ddim_encode, sample
from ..core.steering import ClipX0
from ..metrics.stats import mean_se

__all__ = ["class_agreement", "ddim_decode", "interpolate", "lerp", "reconstruction_errors",
           "slerp"]  # fmt: skip


def ddim_decode(
    model: Any, x_T: Tensor, steps: int, *, clip: bool = False, progress: bool = False
) -> Tensor:
    """Decode ``x_T`` with deterministic DDIM (eta = 0) over ``steps`` evaluations; ``clip``
    clips x0_hat to [-1, 1] at every step (off for reconstructions: the encoder does not clip).
    Returns images clamped to [-1, 1] on the CPU."""
    x = sample(
        model, tuple(x_T.shape), "ddim", steps, x_init=x_T.to(model.device, model.dtype),
        guidance=[ClipX0(-1.0, 1.0)] if clip else [], eta=0.0, progress=progress,
    )  # fmt: skip
    return x.clamp(-1.0, 1.0).cpu()


def slerp(z0: Tensor, z1: Tensor, alpha: float) -> Tensor:
    """Spherical interpolation between ``z0`` and ``z1`` (per row), as DDIM's Fig. 6:
    ``sin((1 - a) theta) / sin(theta) z0 + sin(a theta) / sin(theta) z1``."""
    flat0, flat1 = z0.reshape(z0.shape[0], -1), z1.reshape(z1.shape[0], -1)
    cos = (flat0 * flat1).sum(1) / (flat0.norm(dim=1) * flat1.norm(dim=1))
    theta = torch.arccos(cos.clamp(-1.0, 1.0)).reshape(-1, *([1] * (z0.dim() - 1)))
    sin = torch.sin(theta).clamp_min(1e-8)
    return torch.sin((1 - alpha) * theta) / sin * z0 + torch.sin(alpha * theta) / sin * z1


def lerp(z0: Tensor, z1: Tensor, alpha: float) -> Tensor:
    """Linear interpolation ``(1 - a) z0 + a z1`` (shrinks the norm: off the prior's shell)."""
    return (1 - alpha) * z0 + alpha * z1


def reconstruction_errors(
    model: Any, x0: Tensor, steps: Sequence[int], keep: int = 8, progress: bool = False
) -> dict[str, Any]:
    """Encode ``x0`` (images in [-1, 1]) with :func:`ddim_encode` and decode with
    :func:`ddim_decode` on the same grid, for every S in ``steps``. Returns ``rows`` (per S:
    ``mse`` and ``mse_se``, mean and se over images of the per-dimension MSE on the [0, 1]
    scale, and the latents' ``latent_mean`` / ``latent_std``), ``shown`` (S -> the first
    ``keep`` latents and decodings) and ``originals`` (the first ``keep`` images)."""
    rows, shown = [], {}
    for S in steps:
        x_T = ddim_encode(model, x0, S, progress=progress)
        decoded = ddim_decode(model, x_T, S, progress=progress)
        per_image = ((decoded - x0) / 2).pow(2).reshape(len(x0), -1).mean(1)
        mse, se = mean_se(per_image.tolist())
        x_T = x_T.cpu().to(torch.float32)
        rows.append({"steps": S, "mse": mse, "mse_se": se, "latent_mean": float(x_T.mean()),
                     "latent_std": float(x_T.std())})  # fmt: skip
        shown[S] = (x_T[:keep], decoded[:keep])
    return {"rows": rows, "shown": shown, "originals": x0[:keep]}


def class_agreement(
    classes: Mapping[tuple[float, int], Tensor], etas: Sequence[float], steps: Sequence[int],
    long_steps: int, num_classes: int = 10,
) -> list[dict[str, Any]]:  # fmt: skip
    """``classes[(eta, S)]``: the predicted classes of samples drawn from the same x_T with
    ``S`` steps. Per eta with a long run (``long_steps``) and every S: the fraction of samples
    classified like the long run's, and ``chance``, the agreement of independent samples with
    the long run's class frequencies."""
    rows = []
    for eta in etas:
        ref = classes.get((eta, long_steps))
        if ref is None:
            continue
        freq = torch.bincount(ref, minlength=num_classes).double() / len(ref)
        for S in steps:
            if (eta, S) in classes:
                agree = float((classes[(eta, S)] == ref).double().mean())
                rows.append({"eta": eta, "steps": S, "agreement": agree,
                             "chance": float((freq**2).sum())})  # fmt: skip
    return rows


def interpolate(
    model: Any, z0: Tensor, z1: Tensor, points: int, steps: int,
    confidence: Callable[[Tensor], float], mixes: Mapping[str, Callable] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Per interpolation rule (default slerp and lerp): ``points`` latents from each row of
    ``z0`` to the row of ``z1``, decoded with DDIM (``steps``, x0 clipped): ``images`` (rows x
    points, flattened), ``norm_mid`` (mean latent norm at the midpoint) and
    ``confidence_inner`` (``confidence`` of the inner images); plus ``norm_ends``."""
    rows, shape = z0.shape[0], tuple(z0.shape[1:])
    alphas = np.linspace(0.0, 1.0, points)
    out: dict[str, Any] = {}
    for name, mix in (mixes or {"slerp": slerp, "linear": lerp}).items():
        z = torch.stack([mix(z0, z1, float(w)) for w in alphas], dim=1)  # rows, points, ...
        decoded = ddim_decode(model, z.reshape(-1, *shape), steps, clip=True)
        images = decoded.reshape(rows, points, *shape)
        middle = images[:, 1:-1].reshape(-1, *shape)
        out[name] = {
            "images": images.reshape(-1, *shape),
            "norm_mid": float(z[:, points // 2].reshape(rows, -1).norm(dim=1).mean()),
            "confidence_inner": confidence(middle) if len(middle) else float("nan"),
        }
    out["norm_ends"] = float(z0.reshape(rows, -1).norm(dim=1).mean())
    return out
