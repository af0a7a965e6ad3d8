"""FFJORD's 2-D toy distributions (Grathwohl et al. 2019, ``lib/toy_data.py`` of the FFJORD
code), the standard density-estimation toys later reused by diffusion papers.

Definitions, exactly as in FFJORD's ``inf_train_gen`` (U = uniform(0, 1), Z = standard normal):

``swissroll``
    scikit-learn ``make_swiss_roll(noise=1.0)``, columns [0, 2], divided by 5:
    ``s = 1.5 pi (1 + 2U)``, ``x = (s cos s + Z1, s sin s + Z2) / 5``.
``8gaussians``
    centres ``4 (cos a, sin a)``, ``a = k pi / 4``; a point is ``0.5 Z + centre`` (uniform
    centre), then everything is divided by 1.414: a uniform mixture of 8 isotropic Gaussians
    with std ``0.5 / 1.414`` and centres ``4 u_k / 1.414`` (see :func:`toy_mixture`).
``moons``
    scikit-learn ``make_moons(noise=0.1)`` then ``x * 2 + [-1, -0.2]``. make_moons puts
    ``n // 2`` points on the upper arc ``(cos s, sin s)`` and the rest on the lower arc
    ``(1 - cos s, 0.5 - sin s)``, with ``s`` an even grid on [0, pi] (``linspace``, endpoints
    included), shuffles, and adds ``0.1 Z`` noise.
``checkerboard``
    ``x1 = 4U - 2``, ``x2_ = U' - 2 B`` (B a fair bit), ``x2 = x2_ + (floor(x1) mod 2)``, times
    2: uniform on the 8 squares of side 2 in [-4, 4]^2 where ``floor(x1/2) + floor(x2/2)`` is
    even; area 32, so the differential entropy is ``log 32`` exactly.
``rings``
    four concentric circles of radii 1, 0.75, 0.5, 0.25 (times 3), each with n/4 points on an
    even angular grid (``endpoint=False``; the innermost gets the remainder), shuffled, plus
    ``0.08 Z`` noise.
``pinwheel``
    5 arms: ``f = (0.3 Z1 + 1, 0.1 Z2)`` rotated by ``2 pi k / 5 + 0.25 exp(f1)``, times 2,
    shuffled. (FFJORD returns ``5 (n // 5)`` rows; here arm labels cycle so exactly n rows
    come back, with arm sizes differing by at most one.)

The generators use numpy directly (no scikit-learn), so they match FFJORD in distribution, not
bit for bit. Samples are float32 tensors of shape (n, 2), deterministic given ``seed``.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import Tensor

from ..core.oracle import GaussianMixture

__all__ = ["TOYS", "sample_toy", "swissroll_log_prob", "toy_entropy", "toy_mixture"]

TOYS: tuple[str, ...] = ("swissroll", "8gaussians", "moons", "checkerboard", "rings", "pinwheel")

# 8gaussians constants, exactly as in FFJORD (1.414, not sqrt(2)).
_EIGHT_SCALE, _EIGHT_STD, _EIGHT_DIV = 4.0, 0.5, 1.414


def _check_name(name: str) -> str:
    if name not in TOYS:
        raise ValueError(f"unknown toy {name!r}; valid: {', '.join(TOYS)}")
    return name


def _eight_centres() -> np.ndarray:
    s = 1.0 / np.sqrt(2)
    units = [(1, 0), (-1, 0), (0, 1), (0, -1), (s, s), (s, -s), (-s, s), (-s, -s)]
    return _EIGHT_SCALE * np.asarray(units, dtype=np.float64)


def _swissroll(rng: np.random.Generator, n: int) -> np.ndarray:
    s = 1.5 * np.pi * (1 + 2 * rng.random(n))
    noise = rng.standard_normal((n, 2))
    return (np.stack([s * np.cos(s), s * np.sin(s)], axis=1) + 1.0 * noise) / 5


def _eight_gaussians(rng: np.random.Generator, n: int) -> np.ndarray:
    points = rng.standard_normal((n, 2)) * _EIGHT_STD
    idx = rng.integers(0, 8, size=n)
    return (points + _eight_centres()[idx]) / _EIGHT_DIV


def _moons(rng: np.random.Generator, n: int) -> np.ndarray:
    n_out = n // 2
    n_in = n - n_out
    s_out, s_in = np.linspace(0, np.pi, n_out), np.linspace(0, np.pi, n_in)
    outer = np.stack([np.cos(s_out), np.sin(s_out)], axis=1)
    inner = np.stack([1 - np.cos(s_in), 1 - np.sin(s_in) - 0.5], axis=1)
    x = np.concatenate([outer, inner])[rng.permutation(n)]
    x = x + rng.normal(scale=0.1, size=x.shape)
    return x * 2 + np.array([-1.0, -0.2])


def _checkerboard(rng: np.random.Generator, n: int) -> np.ndarray:
    x1 = rng.random(n) * 4 - 2
    x2_ = rng.random(n) - rng.integers(0, 2, size=n) * 2
    x2 = x2_ + (np.floor(x1) % 2)
    return np.stack([x1, x2], axis=1) * 2


def _rings(rng: np.random.Generator, n: int) -> np.ndarray:
    n4 = n3 = n2 = n // 4
    n1 = n - n4 - n3 - n2
    parts = []
    for count, radius in ((n4, 1.0), (n3, 0.75), (n2, 0.5), (n1, 0.25)):
        angle = np.linspace(0, 2 * np.pi, count, endpoint=False)
        parts.append(radius * np.stack([np.cos(angle), np.sin(angle)], axis=1))
    x = np.concatenate(parts) * 3.0
    x = x[rng.permutation(n)]
    return x + rng.normal(scale=0.08, size=x.shape)


def _pinwheel(rng: np.random.Generator, n: int) -> np.ndarray:
    radial_std, tangential_std, num_arms, rate = 0.3, 0.1, 5, 0.25
    rads = np.linspace(0, 2 * np.pi, num_arms, endpoint=False)
    features = rng.standard_normal((n, 2)) * np.array([radial_std, tangential_std])
    features[:, 0] += 1.0
    labels = np.arange(n) % num_arms
    angles = rads[labels] + rate * np.exp(features[:, 0])
    c, s = np.cos(angles), np.sin(angles)
    # FFJORD: rotations = [[c, -s], [s, c]] per row, out = features @ rotation (row vector).
    out = np.stack(
        [features[:, 0] * c + features[:, 1] * s, -features[:, 0] * s + features[:, 1] * c], 1
    )
    return 2 * out[rng.permutation(n)]


_GENERATORS = {
    "swissroll": _swissroll,
    "8gaussians": _eight_gaussians,
    "moons": _moons,
    "checkerboard": _checkerboard,
    "rings": _rings,
    "pinwheel": _pinwheel,
}


def sample_toy(name: str, n: int, seed: int | None = None) -> Tensor:
    """n samples (float32, shape (n, 2)) of FFJORD's toy ``name`` (Grathwohl et al. 2019);
    deterministic given ``seed`` (``None``: fresh entropy). Valid names: :data:`TOYS`."""
    _check_name(name)
    if int(n) != n or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    rng = np.random.default_rng(seed)
    x = _GENERATORS[name](rng, int(n))
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).reshape(int(n), 2)


def toy_mixture(name: str) -> GaussianMixture | None:
    """The exact density of a toy as a :class:`GaussianMixture` (``8gaussians`` only: 8 equal
    components, std ``0.5/1.414``, centres ``4 u_k / 1.414``); ``None`` for the others."""
    _check_name(name)
    if name != "8gaussians":
        return None
    means = torch.as_tensor(_eight_centres() / _EIGHT_DIV, dtype=torch.float64)
    return GaussianMixture(means, _EIGHT_STD / _EIGHT_DIV)


@functools.cache
def _eight_gaussians_entropy() -> float:
    """-E[log p] of the 8gaussians mixture by the trapezoidal rule on a uniform grid.

    The integrand ``-p log p`` is smooth and decays like a Gaussian, so the trapezoidal rule
    converges geometrically in the step h (the error is the aliasing of its Fourier transform,
    ~exp(-2 pi^2 std^2 / h^2)): h = 0.02 = std / 17.7 is exact to float64 resolution (h = 0.05
    and h = 0.01 agree to 1e-15). The box ``[-L, L]^2``, ``L = 4 / 1.414 + 10 std``, leaves out
    mass below exp(-50).
    """
    mix = toy_mixture("8gaussians")
    std = _EIGHT_STD / _EIGHT_DIV
    half = _EIGHT_SCALE / _EIGHT_DIV + 10 * std
    h = 0.02
    m = int(math.ceil(half / h))
    axis = torch.arange(-m, m + 1, dtype=torch.float64) * h
    total = 0.0
    for row in axis.split(64):  # chunks of rows keep memory small
        xx = torch.stack(torch.meshgrid(row, axis, indexing="ij"), -1).reshape(-1, 2)
        logp = mix.log_prob(xx)
        total += float(-(logp.exp() * logp).sum())
    return total * h * h


def swissroll_log_prob(x: Tensor, nodes: int = 4000) -> Tensor:
    """Exact log-density of the swiss roll toy: the curve ``s (cos s, sin s) / 5``, s uniform on
    [1.5 pi, 4.5 pi], smoothed by N(0, 0.2^2 I); the integral over s by the trapezoidal rule on
    ``nodes`` points (node spacing 0.0024, a 20th of the noise over the curve's fastest speed)."""
    x = torch.as_tensor(x, dtype=torch.float64)
    s = torch.linspace(1.5 * math.pi, 4.5 * math.pi, nodes, dtype=torch.float64)
    w = torch.full((nodes,), 1.0 / (nodes - 1), dtype=torch.float64)
    w[0] = w[-1] = 0.5 / (nodes - 1)  # trapezoid weights of the uniform density on s
    curve = torch.stack([s * torch.cos(s), s * torch.sin(s)], 1) / 5
    var = 0.2**2
    out = []
    for chunk in x.split(2048):
        sq = torch.cdist(chunk, curve).pow(2)
        log_k = -0.5 * sq / var - math.log(2 * math.pi * var)
        out.append(torch.logsumexp(log_k + torch.log(w), dim=1))
    return torch.cat(out)


@functools.cache
def _swissroll_entropy() -> float:
    """-E[log p] of the swiss roll by the trapezoidal rule on a grid of step 0.05 = std / 4
    (aliasing error ~exp(-2 pi^2 16), negligible) over the box the curve plus 10 std covers."""
    h, half = 0.05, 4.5 * math.pi / 5 + 2.0
    m = int(math.ceil(half / h))
    axis = torch.arange(-m, m + 1, dtype=torch.float64) * h
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    logp = swissroll_log_prob(grid)
    return float(-(logp.exp() * logp).sum()) * h * h


def toy_entropy(name: str) -> float | None:
    """Differential entropy in nats where it is known exactly, else ``None``.

    * ``checkerboard``: uniform on area 32, so ``log 32``.
    * ``8gaussians``: ``-E[log p]`` of the exact mixture by numerical integration (about 2.835
      nats; just below ``log 8 + log(2 pi e s^2)`` = 2.838 because neighbouring modes overlap
      slightly).
    * ``swissroll``: ``-E[log p]`` by numerical integration of :func:`swissroll_log_prob`.
    """
    _check_name(name)
    if name == "checkerboard":
        return math.log(32.0)
    if name == "swissroll":
        return _swissroll_entropy()
    if name == "8gaussians":
        return _eight_gaussians_entropy()
    return None
