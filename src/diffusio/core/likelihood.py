"""Exact log-likelihood through the probability-flow ODE, and bits-per-dimension conversions.

Every forward process ``dx = f(t) x dt + g(t) dw`` has a deterministic twin with the same
marginals p_t, the probability-flow ODE (Song et al. 2021, "Score-Based Generative Modeling
through SDEs", eq. 13):

    dx/dt = F(x, t) = f(t) x - 1/2 g(t)^2 grad_x log p_t(x).

Along a solution x(t) the instantaneous change of variables (Chen et al. 2018, "Neural ODEs",
Thm. 1; Grathwohl et al. 2019, FFJORD, eq. 2) gives d log p_t(x(t))/dt = -div F(x(t), t), so
integrating from t_min up to t_max (Score SDE, Sec. 4.3 and App. D.2, eq. 39-40)

    log p_{t_min}(x) = log p_T(x(T)) + int_{t_min}^{t_max} div F(x(t), t) dt,

with the prior p_T taken as the process's Gaussian ``N(0, prior_std^2 I)``. The divergence
splits into an exact linear part and the score's:

    div F = f(t) D - 1/2 g(t)^2 div score(x, t)        (D = dimensions per example).

``div score`` is computed exactly (one backward pass per dimension; low dimension only) or with
Hutchinson's unbiased estimator ``E_v[v^T J v] = tr J`` (Hutchinson 1989; FFJORD, Sec. 3.1) with
Rademacher or Gaussian probes v drawn once per call and held fixed along the trajectory, so the
estimate is the exact integral of a fixed quadratic form (FFJORD's "noise fixed per solve").

The augmented state ``[x, delta_logp]`` is integrated in float64 with SciPy's adaptive RK45
(Dormand & Prince 1980), as in the Score SDE reference implementation; the network is evaluated
in its own dtype.

Units: :func:`nll` answers in nats per example of the data the model sees. :func:`bits_per_dim`
converts to bits per dimension with the Jacobian of any data rescaling, and
:func:`discrete_bits_per_dim` gives the standard upper bound for 8-bit-style discrete data scaled
to [-1, 1] and dequantized with uniform noise (:func:`dequantize`; Theis et al. 2016; Ho et al.
2020, Sec. 4; Song et al. 2021, App. D.2).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from scipy.integrate import solve_ivp
from torch import Tensor

__all__ = ["nll", "bits_per_dim", "discrete_bits_per_dim", "dequantize"]

PROBES = ("rademacher", "gaussian")


def _check_finite(x: Tensor) -> None:
    flat = x.flatten(1) if x.dim() > 1 else x[:, None]
    bad = ~torch.isfinite(flat).all(dim=1)
    if bad.any():
        rows = bad.nonzero().flatten().tolist()
        more = f" (and {len(rows) - 1} more rows)" if len(rows) > 1 else ""
        raise ValueError(f"x contains NaN or Inf in row {rows[0]}{more}")


def _model_device(model: Any) -> torch.device:
    device = getattr(model, "device", None)
    return torch.device(device) if device is not None else torch.device("cpu")


def nll(
    model: Any,
    x: Tensor,
    exact: bool = True,
    *,
    t_min: float | None = None,
    t_max: float | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    num_probes: int = 1,
    probe: str = "rademacher",
    seed: int | None = None,
    prior_log_prob: Callable[[Tensor], Tensor] | None = None,
    cond: dict[str, Any] | None = None,
    progress: bool = False,
    return_stats: bool = False,
) -> Tensor | tuple[Tensor, dict[str, Any]]:
    """Negative log-likelihood in nats of each row of ``x`` under the probability-flow ODE.

    Integrates ``dx/dt = f(t) x - 1/2 g(t)^2 score(x, t)`` together with
    ``d delta/dt = div F`` from ``t_min`` to ``t_max`` (Score SDE eq. 39-40) and returns
    ``-(prior_log_prob(x_T) + delta)``, i.e. ``-log p_{t_min}(x)`` for a model whose score is
    exact. With a process whose ``sigma(t_min) > 0`` this is the likelihood of the data slightly
    smoothed by ``N(0, sigma(t_min)^2)``; a score-predicting model may be integrated from a time
    where sigma = 0.

    Args:
        model: a :class:`~diffusio.core.model.DiffusionModel` (anything with ``predict``,
            ``process`` and ``dtype``); put it in ``eval()`` mode first.
        x: data of shape (N, ...), in the units the model was trained on.
        exact: exact divergence (one backward pass per dimension per evaluation: low-dimensional
            data only) or, if False, Hutchinson's estimator with ``num_probes`` probes.
        t_min, t_max: integration interval (default the process's ``t_min`` and ``t_max``).
        rtol, atol: RK45 tolerances; SciPy measures the error as an RMS over the whole batch,
            so rows share one step-size sequence.
        num_probes, probe, seed: Hutchinson probes (``"rademacher"`` or ``"gaussian"``), drawn
            once per call from a CPU generator seeded with ``seed`` and fixed along the path.
        prior_log_prob: ``x_T -> log p_T(x_T)`` per row (float64 input of x's shape); default
            ``model.process.prior_log_prob``.
        cond: keyword arguments for the network (per-row tensors must have N rows).
        progress: show a tqdm bar over t.
        return_stats: also return a dict with ``nfe`` (network evaluations), ``t_min``,
            ``t_max``, ``x_T`` (the latent code), ``prior_log_prob`` and ``delta_logp`` (rows).

    Returns:
        float64 tensor (N,) on the model's device (and the stats dict if ``return_stats``).
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a tensor, got {type(x).__name__}")
    if x.dim() < 1:
        raise ValueError("x must have shape (N, ...) with a batch dimension")
    _check_finite(x)
    process = model.process
    t0 = float(process.t_min if t_min is None else t_min)
    t1 = float(process.t_max if t_max is None else t_max)
    if not (math.isfinite(t0) and math.isfinite(t1)):
        raise ValueError(f"t_min and t_max must be finite, got {t0}, {t1}")
    if t0 >= t1:
        raise ValueError(f"t_min must be smaller than t_max, got t_min={t0}, t_max={t1}")
    if t0 < 0:
        raise ValueError(f"t_min must be >= 0, got {t0}")
    if rtol <= 0 or atol <= 0:
        raise ValueError(f"rtol and atol must be positive, got {rtol}, {atol}")
    if not exact:
        if probe not in PROBES:
            raise ValueError(f"unknown probe {probe!r}; valid: {', '.join(PROBES)}")
        if int(num_probes) < 1:
            raise ValueError(f"num_probes must be >= 1, got {num_probes}")
    prior = process.prior_log_prob if prior_log_prob is None else prior_log_prob
    cond = dict(cond or {})

    device = _model_device(model)
    dtype = model.dtype
    shape = tuple(x.shape)
    N = shape[0]
    D = int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else 1
    nx = N * D
    if N == 0:
        empty = torch.zeros(0, dtype=torch.float64, device=device)
        if not return_stats:
            return empty
        stats0 = {"nfe": 0, "t_min": t0, "t_max": t1, "x_T": x.to(device, torch.float64)}
        return empty, {**stats0, "prior_log_prob": empty, "delta_logp": empty}

    probes: Tensor | None = None
    if not exact:
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        size = (int(num_probes), N, D)
        if probe == "rademacher":
            probes = torch.randint(0, 2, size, generator=gen, dtype=torch.float64) * 2.0 - 1.0
        else:
            probes = torch.randn(size, generator=gen, dtype=torch.float64)
        probes = probes.to(device=device, dtype=dtype)

    nfe = 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=t1 - t0, desc="nll", unit="t", bar_format="{l_bar}{bar}| {elapsed}{postfix}"
        )

    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        nonlocal nfe
        nfe += 1
        f, g2 = process.sde_coefficients(t)
        # Outside any caller's inference_mode / no_grad: the divergence needs autograd in x.
        with torch.inference_mode(False), torch.enable_grad():
            xt = torch.from_numpy(y[:nx].reshape(shape)).to(device=device, dtype=dtype)
            xt.requires_grad_(True)
            score = model.predict(xt, t, **cond).score
            if not torch.isfinite(score).all():
                raise FloatingPointError(_nonfinite_message(model, t))
            div_score = _divergence(score, xt, probes)
        drift = f * xt.detach() - 0.5 * g2 * score.detach()
        div = f * D - 0.5 * g2 * div_score
        out = np.empty_like(y)
        out[:nx] = drift.reshape(-1).to(device="cpu", dtype=torch.float64).numpy()
        out[nx:] = div.to(device="cpu", dtype=torch.float64).numpy()
        if bar is not None:  # stage times are not monotone: show the furthest one reached
            bar.set_postfix_str(f"t={t:.4f} nfe={nfe}", refresh=False)
            bar.update(max(t - t0 - bar.n, 0.0))
        return out

    y0 = np.concatenate(
        [x.detach().to(device="cpu", dtype=torch.float64).reshape(-1).numpy(), np.zeros(N)]
    )
    try:
        sol = solve_ivp(rhs, (t0, t1), y0, method="RK45", rtol=rtol, atol=atol, t_eval=[t1])
    finally:
        if bar is not None:
            bar.close()
    if not sol.success:
        raise RuntimeError(f"probability-flow ODE solve failed: {sol.message}")
    y1 = torch.from_numpy(np.ascontiguousarray(sol.y[:, -1]))
    x_T = y1[:nx].reshape(shape).to(device)
    delta = y1[nx:].to(device)
    log_prior = torch.as_tensor(prior(x_T), dtype=torch.float64, device=device).reshape(-1)
    if log_prior.shape != (N,):
        raise ValueError(f"prior_log_prob must return shape ({N},), got {tuple(log_prior.shape)}")
    out = -(log_prior + delta)
    if not return_stats:
        return out
    stats = {
        "nfe": nfe,
        "t_min": t0,
        "t_max": t1,
        "x_T": x_T,
        "prior_log_prob": log_prior,
        "delta_logp": delta,
    }
    return out, stats


def _nonfinite_message(model: Any, t: float) -> str:
    sigma = float(model.process.sigma(torch.tensor(t, dtype=torch.float64)))
    msg = f"the model's score is not finite at t={t:.6g} (sigma={sigma:.3g})"
    if sigma == 0 and getattr(model, "prediction", "score") != "score":
        msg += (
            f"; a model predicting {model.prediction!r} has no score where sigma = 0: raise "
            "t_min or use prediction='score'"
        )
    return msg


def _divergence(score: Tensor, x: Tensor, probes: Tensor | None) -> Tensor:
    """Per-row div_x score (rows independent), exact or by Hutchinson with ``probes`` (K, N, D)."""
    N = x.shape[0]
    flat = score.reshape(N, -1)
    D = flat.shape[1]
    if probes is None:
        div = torch.zeros(N, dtype=x.dtype, device=x.device)
        for i in range(D):
            (grad,) = torch.autograd.grad(
                flat[:, i].sum(), x, retain_graph=i < D - 1, allow_unused=True
            )
            if grad is not None:
                div = div + grad.reshape(N, D)[:, i]
        return div.detach()
    K = probes.shape[0]
    est = torch.zeros(N, dtype=x.dtype, device=x.device)
    for k in range(K):
        v = probes[k]
        (vjp,) = torch.autograd.grad((flat * v).sum(), x, retain_graph=k < K - 1, allow_unused=True)
        if vjp is not None:
            est = est + (vjp.reshape(N, D) * v).sum(1)
    return (est / K).detach()


# --------------------------------------------------------------------------- units


def bits_per_dim(
    nll_nats: Tensor | float, num_dims: int, log_jacobian: Tensor | float = 0.0
) -> Tensor | float:
    """Bits per dimension of the *data* from an NLL in nats of what the model sees.

    If the model sees ``y = T(x)`` (for instance ``y = x / s``) then
    ``log p_x(x) = log p_y(y) + log |det dy/dx|``, so with ``log_jacobian = log |det dy/dx|`` per
    example

        bpd = (nll_nats - log_jacobian) / (num_dims * ln 2).

    For ``y = x / s`` elementwise, ``log_jacobian = -num_dims * log(s)``; the default 0 reports
    the model's own units.
    """
    if num_dims <= 0:
        raise ValueError(f"num_dims must be positive, got {num_dims}")
    return (nll_nats - log_jacobian) / (num_dims * math.log(2.0))


def discrete_bits_per_dim(
    nll_scaled: Tensor | float, num_dims: int, levels: int = 256
) -> Tensor | float:
    """Upper bound on the bits per dimension of integer data in {0..levels-1}.

    For data mapped to [-1, 1] by :func:`dequantize`, ``y = 2 (k + u) / levels - 1`` with
    ``u ~ U[0, 1)^D``. The density of ``v = k + u`` is ``p_v(v) = p_y(y) (2 / levels)^D`` and
    the discrete model ``P(k) = int_{[0,1)^D} p_v(k + u) du`` satisfies, by Jensen,

        -log P(k) <= E_u[-log p_v(k + u)] = E_u[-log p_y(y)] + D log(levels / 2)

    (Theis et al. 2016, Sec. 3.1; Ho et al. 2020, Sec. 4; Song et al. 2021, App. D.2). So with
    ``nll_scaled = -log p_y(y)`` in nats per example (averaged over dequantization noise),

        bpd = (nll_scaled + D log(levels / 2)) / (D ln 2).

    A model uniform on [-1, 1]^D gets exactly log2(levels) bits (8 for 256 levels).
    """
    if levels < 2:
        raise ValueError(f"levels must be >= 2, got {levels}")
    return bits_per_dim(nll_scaled, num_dims, log_jacobian=num_dims * math.log(2.0 / levels))


def dequantize(
    x_int: Tensor,
    levels: int = 256,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """Map integers in {0..levels-1} to [-1, 1] with uniform noise: ``(k + u) / levels * 2 - 1``.

    ``u ~ U[0, 1)`` elementwise (drawn on ``x_int``'s device with ``generator``); ``dtype``
    defaults to torch's default float dtype (1.0 itself only by rounding at u -> 1). Inverse:
    ``floor((y + 1) levels / 2) = k``.
    """
    if levels < 2:
        raise ValueError(f"levels must be >= 2, got {levels}")
    x_int = torch.as_tensor(x_int)
    if x_int.is_floating_point() and not torch.equal(x_int, x_int.floor()):
        raise ValueError("dequantize expects integer values")
    if x_int.numel() and (x_int.min() < 0 or x_int.max() > levels - 1):
        raise ValueError(
            f"dequantize expects values in [0, {levels - 1}], got range "
            f"[{x_int.min().item()}, {x_int.max().item()}]"
        )
    dtype = dtype or torch.get_default_dtype()
    u = torch.rand(x_int.shape, generator=generator, dtype=dtype, device=x_int.device)
    return (x_int.to(dtype) + u) / levels * 2.0 - 1.0
