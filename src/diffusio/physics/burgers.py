"""The controlled 1-D viscous Burgers' equation of DiffPhyCon (Wei et al. 2024), solved exactly
as the official data generator does, in batched, differentiable torch.

PDE and scheme
--------------
``u_t = -1/2 (u^2)_x + nu u_xx + f(x, t)`` on x in [0, 1], t in [0, 1], nu = 0.01, with zero
Dirichlet boundaries. The grid has 128 interior cells ``x_i = i dx``, i = 1..128, dx = 1/129
(``u_0 = u_129 = 0``). One explicit (forward) Euler step of size dt = 1e-4 with central
differences::

    u_i <- u_i + dt * ( -(u_{i+1}^2 - u_{i-1}^2) / (4 dx)
                        + nu (u_{i+1} - 2 u_i + u_{i-1}) / dx^2 + f_i )

The control ``f`` is piecewise constant in time over 10 equal intervals of ``substeps`` = 1000
steps each (T = 10 * 1000 * 1e-4 = 1), and ``u`` is recorded at the 11 interval ends
t = 0, 0.1, ..., 1. :func:`simulate` takes ``u0`` (N, 128) and ``f`` (N, K, 128) (K = 10 in the
task; any K >= 1 runs K intervals) and returns (N, K + 1, 128) with ``u[:, 0] = u0``.

Without autograd :func:`simulate` runs a fast in-place loop on a padded buffer. With autograd
(``u0`` or ``f`` requiring grad) ``backward`` gives the exact gradient of the discrete solution
(an adjoint oracle), by default through the hand-written discrete adjoint of the scheme
(``backward="adjoint"``: a few forward solves' time, a few dozen stored states per sample), or
through torch autograd of the same arithmetic done out of place (``backward="autograd"``:
slower, but twice differentiable). Every path gives the same forward floats (the same kernels
in the same order). The official generator runs in float32; arrays here default to float64.
On one CPU thread a float64 solve takes about 0.4 s for N = 100 and 2.5 s for N = 1000; a
gradient through the adjoint about 3 s for N = 100.

Settings and costs
------------------
:data:`SETTINGS` holds the four tasks' boolean masks over the 128 cells: partial control acts
only on x <= 1/4 and x >= 3/4 (cells 0..31 and 96..127, the official ``front_rear_quarter``);
partial observation hides the middle half, 1/4 < x < 3/4 (cells 32..95).
:func:`control_cost` is J_actual = mean over cells of (u(T) - u_d)^2, the paper's evaluation;
:func:`objective` adds ``lam`` times the mean over (interval, cell) of f^2 (uncontrolled
entries, which are zero, count in that mean). Both return one value per sample.

Samplers and data sets: :mod:`diffusio.physics.burgers_data`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = [
    "CONTROL_TIMES", "DT", "DX", "N_BUMPS", "N_CELLS", "N_INTERVALS", "N_TIMES", "NU",
    "RECORD_TIMES", "SETTINGS", "SUBSTEPS", "T_FINAL", "X", "Setting", "control_cost",
    "get_setting", "objective", "simulate", "step",
]  # fmt: skip

N_CELLS = 128  #: interior cells
DX = 1.0 / (N_CELLS + 1)  #: grid spacing, 1/129
N_INTERVALS = 10  #: control intervals (f is constant on each)
N_TIMES = N_INTERVALS + 1  #: recorded states, t = 0, 0.1, ..., 1
NU = 0.01  #: viscosity
DT = 1e-4  #: Euler step
SUBSTEPS = 1000  #: Euler steps per control interval
T_FINAL = N_INTERVALS * SUBSTEPS * DT  #: 1.0
N_BUMPS = 8  #: Gaussian bumps in a sampled control

#: The grid points x_i = i / 129, i = 1..128 (float64; do not modify in place).
X = torch.arange(1, N_CELLS + 1, dtype=torch.float64) * DX
#: The recording times t = 0, 0.1, ..., 1.
RECORD_TIMES = torch.arange(N_TIMES, dtype=torch.float64) * (SUBSTEPS * DT)
#: The times at which a sampled control is evaluated: k / 11, k = 1..10 (official generator).
CONTROL_TIMES = torch.arange(1, N_INTERVALS + 1, dtype=torch.float64) / (N_INTERVALS + 1)


def _grid() -> torch.Tensor:
    return torch.arange(1, N_CELLS + 1, dtype=torch.float64) * DX


# ----------------------------------------------------------------------------------------------
# settings


@dataclass(frozen=True)
class Setting:
    """One task setting: full or partial observation (``po``: the middle half of ``u``,
    1/4 < x < 3/4, unobserved) and full or partial control (``pc``: ``f`` acts only on
    x <= 1/4 and x >= 3/4). The masks are fresh boolean (128,) tensors on each access."""

    name: str
    partial_observation: bool
    partial_control: bool

    @property
    def observed(self) -> torch.Tensor:
        x = _grid()
        if not self.partial_observation:
            return torch.ones(N_CELLS, dtype=torch.bool)
        return ~((x > 0.25) & (x < 0.75))

    @property
    def controlled(self) -> torch.Tensor:
        x = _grid()
        if not self.partial_control:
            return torch.ones(N_CELLS, dtype=torch.bool)
        return (x <= 0.25) | (x >= 0.75)

    @property
    def amplitude_factor(self) -> float:
        """The sampled control's overall factor: 2, doubled under partial control."""
        return 4.0 if self.partial_control else 2.0


#: The four DiffPhyCon Burgers settings.
SETTINGS: dict[str, Setting] = {
    "fo-fc": Setting("fo-fc", False, False),
    "fo-pc": Setting("fo-pc", False, True),
    "po-fc": Setting("po-fc", True, False),
    "po-pc": Setting("po-pc", True, True),
}


def get_setting(setting: str | Setting) -> Setting:
    """A :class:`Setting` by name (or passed through)."""
    if isinstance(setting, Setting):
        return setting
    if setting not in SETTINGS:
        raise ValueError(f"unknown setting {setting!r}; valid settings: {', '.join(SETTINGS)}")
    return SETTINGS[setting]


# ----------------------------------------------------------------------------------------------
# solver


def _as_tensor(x: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x if x.is_floating_point() else x.to(torch.float64)
    return torch.as_tensor(np.asarray(x, dtype=np.float64))


def _coefficients(nu: float, dt: float) -> tuple[float, float]:
    """``a = nu dt / dx^2`` (diffusion) and ``b = dt / (4 dx)`` (flux)."""
    return nu * dt / DX**2, dt / (4.0 * DX)


def _check_scheme(nu: float, dt: float, substeps: int) -> None:
    if not (isinstance(substeps, int | np.integer) and substeps >= 1):
        raise ValueError(f"substeps must be a positive integer, got {substeps!r}")
    if not (math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be positive and finite, got {dt!r}")
    if not (math.isfinite(nu) and nu >= 0):
        raise ValueError(f"nu must be non-negative and finite, got {nu!r}")
    if nu * dt / DX**2 > 0.5:
        raise ValueError(f"unstable explicit scheme: nu dt / dx^2 = {nu * dt / DX**2:.3g} > 1/2")


def _update(u: torch.Tensor, up: torch.Tensor, fdt: torch.Tensor, a: float, b: float):
    """One Euler step out of place, ``up`` = ``u`` padded with the zero boundary values:
    ``(1 - 2a) u + a (u_{i+1} + u_{i-1}) - b (u_{i+1}^2 - u_{i-1}^2) + dt f``, in the same kernel
    order as the in-place loop of :func:`_run_inplace` (so both give the same floats)."""
    sq = torch.mul(up, up)
    g = torch.mul(torch.sub(sq[:, 2:], sq[:, :-2]), -b)
    g = torch.add(g, up[:, 2:], alpha=a)
    g = torch.add(g, up[:, :-2], alpha=a)
    g = torch.add(g, fdt)
    return torch.add(torch.mul(u, 1.0 - 2.0 * a), g)


def step(u: torch.Tensor, f: torch.Tensor, nu: float = NU, dt: float = DT) -> torch.Tensor:
    """One explicit Euler step of the scheme (module docstring): ``u`` (N, 128), ``f`` (N, 128)
    or (128,) -> (N, 128). Differentiable, out of place."""
    a, b = _coefficients(nu, dt)
    return _update(u, torch.nn.functional.pad(u, (1, 1)), f * dt, a, b)


def _run_interval(u: torch.Tensor, fdt: torch.Tensor, a: float, b: float, n: int):
    for _ in range(n):
        u = _update(u, torch.nn.functional.pad(u, (1, 1)), fdt, a, b)
    return u


class _Buffers:
    """Work space for the in-place loops: ``up`` (N, 130) holds the state with its two zero
    boundary values, ``u`` is its interior view."""

    def __init__(self, u0: torch.Tensor) -> None:
        self.up = u0.new_zeros(u0.shape[0], N_CELLS + 2)
        self.up[:, 1:-1] = u0
        self.u = self.up[:, 1:-1]
        self.sq = torch.empty_like(self.up)
        self.g = torch.empty_like(u0)
        self.d = torch.empty_like(u0)


def _advance(w: _Buffers, fk: torch.Tensor, a: float, b: float, n: int, store=None) -> None:
    """``n`` Euler steps of ``w.u`` in place (the arithmetic of :func:`_update`); ``store[j]``
    <- the state before step j when given."""
    up, u, sq, g = w.up, w.u, w.sq, w.g
    for j in range(n):
        if store is not None:
            store[j].copy_(u)
        torch.mul(up, up, out=sq)
        torch.sub(sq[:, 2:], sq[:, :-2], out=g)
        g.mul_(-b)
        g.add_(up[:, 2:], alpha=a).add_(up[:, :-2], alpha=a)
        g.add_(fk)
        u.mul_(1.0 - 2.0 * a).add_(g)


def _run_inplace(u0: torch.Tensor, fdt: torch.Tensor, a: float, b: float, n: int, out):
    """The no-autograd loop; ``out[:, k + 1]`` <- the state after interval k."""
    w = _Buffers(u0)
    for k in range(fdt.shape[1]):
        _advance(w, fdt[:, k].contiguous(), a, b, n)
        out[:, k + 1] = w.u


#: Steps between the states kept while an interval is replayed for the adjoint.
_SEGMENT = 50


class _Simulate(torch.autograd.Function):
    """The solver with its discrete adjoint. Forward: the in-place loop, keeping only the
    interval-end states (the output). Backward, interval by interval from the last: replay the
    interval keeping every ``_SEGMENT``-th state, then per segment (last first) replay it keeping
    every state and run the adjoint step back through it. With ``u' = (1 - 2a) u + a (u_{i+1} +
    u_{i-1}) - b (u_{i+1}^2 - u_{i-1}^2) + dt f`` and ``l = dL/du'`` (zero at the boundaries),
    ``dL/du_i = (1 - 2a) l_i + a (l_{i+1} + l_{i-1}) + 2 b u_i (l_{i+1} - l_{i-1})`` and
    ``dL/df_k = dt * sum of l`` over interval k's steps. Memory: about (segments per interval +
    ``_SEGMENT``) states per sample."""

    @staticmethod
    def forward(ctx, u0, f, a, b, dt, n):
        fdt = f * dt
        out = u0.new_empty(u0.shape[0], f.shape[1] + 1, N_CELLS)
        out[:, 0] = u0
        _run_inplace(u0, fdt, a, b, n, out)
        ctx.save_for_backward(out, fdt)
        ctx.coef = (a, b, dt, n)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gout):
        out, fdt = ctx.saved_tensors
        a, b, dt, n = ctx.coef
        N, K = out.shape[0], fdt.shape[1]
        lp = out.new_zeros(N, N_CELLS + 2)  # the adjoint state with zero boundary values
        lam, d, g = lp[:, 1:-1], torch.empty_like(out[:, 0]), torch.empty_like(out[:, 0])
        lam.copy_(gout[:, K])
        gf = torch.zeros_like(fdt)
        starts = list(range(0, n, _SEGMENT))
        marks = out.new_empty(len(starts), N, N_CELLS)
        states = out.new_empty(min(n, _SEGMENT), N, N_CELLS)
        for k in reversed(range(K)):
            fk = fdt[:, k].contiguous()
            w = _Buffers(out[:, k])
            for i, s in enumerate(starts):
                marks[i].copy_(w.u)
                _advance(w, fk, a, b, min(_SEGMENT, n - s))
            acc = gf[:, k]
            for i in reversed(range(len(starts))):
                m = min(_SEGMENT, n - starts[i])
                w = _Buffers(marks[i])
                _advance(w, fk, a, b, m, store=states)
                for j in reversed(range(m)):
                    acc.add_(lam)
                    torch.sub(lp[:, 2:], lp[:, :-2], out=d)
                    d.mul_(states[j]).mul_(2.0 * b)
                    torch.add(lp[:, 2:], lp[:, :-2], out=g)
                    g.mul_(a).add_(d)
                    lam.mul_(1.0 - 2.0 * a).add_(g)
            lam.add_(gout[:, k])
        gu0 = lam.clone() if ctx.needs_input_grad[0] else None
        gfk = gf.mul_(dt) if ctx.needs_input_grad[1] else None
        return gu0, gfk, None, None, None, None


def simulate(
    u0: Any, f: Any, nu: float = NU, dt: float = DT, substeps: int = SUBSTEPS,
    backward: str = "adjoint",
) -> torch.Tensor:
    """Solve the controlled Burgers' equation (module docstring) for a batch.

    ``u0`` (N, 128) and ``f`` (N, K, 128) (K = 10 in the task), tensors or arrays: arrays become
    float64, tensors keep their floating dtype (two different dtypes promote; the device is
    ``u0``'s). ``f[:, k]`` acts during steps ``k * substeps .. (k + 1) * substeps - 1``. Returns
    ``u`` (N, K + 1, 128) at the interval ends, ``u[:, 0] = u0``. Deterministic.

    Differentiable with respect to ``u0`` and ``f``, with exact discrete gradients, two ways:
    ``backward="adjoint"`` (default) runs the hand-written discrete adjoint of the scheme
    (:class:`_Simulate`; about 4 forward solves, memory ~70 states per sample; first order only),
    ``backward="autograd"`` differentiates the out-of-place loop with torch autograd (a reference
    that supports higher-order derivatives; about 10x slower and one stored state per Euler step,
    ~1 GB for N = 100 over the full horizon). Without autograd both are the same fast in-place
    loop, and all paths give the same forward floats.
    """
    u0, f = _as_tensor(u0), _as_tensor(f)
    if u0.ndim != 2 or u0.shape[1] != N_CELLS:
        raise ValueError(f"u0 must have shape (N, {N_CELLS}), got {tuple(u0.shape)}")
    if f.ndim != 3 or f.shape[0] != u0.shape[0] or f.shape[2] != N_CELLS or f.shape[1] < 1:
        raise ValueError(
            f"f must have shape (N, K, {N_CELLS}) with N = {u0.shape[0]} and K >= 1, "
            f"got {tuple(f.shape)}"
        )
    if f.device != u0.device:
        raise ValueError(f"u0 is on {u0.device} but f is on {f.device}")
    if backward not in ("adjoint", "autograd"):
        raise ValueError(f"backward must be 'adjoint' or 'autograd', got {backward!r}")
    _check_scheme(float(nu), float(dt), substeps)
    if not bool(torch.isfinite(u0).all()):
        raise ValueError("u0 contains NaN or infinite values")
    if not bool(torch.isfinite(f).all()):
        raise ValueError("f contains NaN or infinite values")
    dtype = torch.promote_types(u0.dtype, f.dtype)
    u0, f = u0.to(dtype), f.to(dtype)
    a, b = _coefficients(float(nu), float(dt))
    grad = torch.is_grad_enabled() and (u0.requires_grad or f.requires_grad)
    if not grad:
        with torch.no_grad():
            out = u0.new_empty(u0.shape[0], f.shape[1] + 1, N_CELLS)
            out[:, 0] = u0
            _run_inplace(u0, f * dt, a, b, int(substeps), out)
        return out
    if backward == "adjoint":
        return _Simulate.apply(u0, f, a, b, float(dt), int(substeps))
    fdt = f * dt
    states, u = [u0], u0
    for k in range(f.shape[1]):
        u = _run_interval(u, fdt[:, k], a, b, int(substeps))
        states.append(u)
    return torch.stack(states, dim=1)


# ----------------------------------------------------------------------------------------------
# costs


def _final(u: torch.Tensor) -> torch.Tensor:
    if u.ndim == 3:
        return u[:, -1]
    if u.ndim == 2:
        return u
    raise ValueError(f"u must be a trajectory (N, T, {N_CELLS}) or states (N, {N_CELLS}), "
                     f"got shape {tuple(u.shape)}")


def control_cost(u: Any, u_target: Any, mask: Any = None) -> torch.Tensor:
    """J_actual: the mean over cells of ``(u(T) - u_d)^2``, one value per sample (N,). ``u`` is
    a trajectory (N, T, 128) (its last state is used) or final states (N, 128); ``u_target``
    (N, 128) or (128,); ``mask`` (128,) bool restricts the mean to some cells."""
    uT, ud = _final(_as_tensor(u)), _as_tensor(u_target)
    err = (uT - ud.to(uT)) ** 2
    if mask is not None:
        err = err[:, torch.as_tensor(mask, dtype=torch.bool, device=err.device)]
    return err.mean(dim=-1)


def objective(u: Any, f: Any, u_target: Any, lam: float) -> torch.Tensor:
    """``mean_x (u(T) - u_d)^2 + lam * mean_{k,x} f^2`` per sample (N,): the control cost plus
    ``lam`` times the control energy, averaged over all (interval, cell) entries of ``f``
    (N, K, 128)."""
    f = _as_tensor(f)
    return control_cost(u, u_target) + lam * (f**2).flatten(1).mean(dim=-1)
