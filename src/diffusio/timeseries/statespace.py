"""Linear-Gaussian state-space models: the exact oracle of time-series imputation, and the
EM-fitted Kalman smoother baseline.

The model (one window of L steps, t = 0..L-1; the first observation is of the initial state,
as in pykalman)::

    x_0 ~ N(m0, P0),   x_{t+1} = A x_t + w_t,  w_t ~ N(0, Q),
    y_t = C x_t + v_t,  v_t ~ N(0, diag(R)),

with states x_t in R^D (``latent``) and observations y_t in R^K (``features``). Layout is CSDI's
(Tashiro et al. 2021, arXiv:2107.03502): a batch of windows ``y`` is (N, K, L) and ``observed``
a bool array of the same shape, True where a value is present. Each window is an independent
sequence that starts from (m0, P0). Unobserved entries of ``y`` are never read (they may be 0 or
NaN). Everything is numpy float64; torch tensors on the CPU are accepted and arrays returned.

* :func:`smooth` -- the Kalman filter (Kalman 1960) that uses only the observed entries of
  each step (the unobserved rows of C and R dropped; a step with nothing observed is a pure
  prediction), with square-root updates in the state space (Cholesky factors, symmetric PSD
  by construction), and the Rauch-Tung-Striebel (1965) smoother; it also gives the exact
  log-likelihood of the observed entries (the prediction-error decomposition).
* :func:`predictive` -- the exact posterior predictive distribution of every entry given the
  observed entries of its window: the oracle (exact CRPS, exact MAE of the posterior mean).
* :func:`predictive_samples` -- exact joint posterior samples of the missing entries (forward
  filtering, backward sampling; Carter & Kohn 1994, Fruehwirth-Schnatter 1994): the oracle of
  the energy score.
* :func:`fit_em` -- maximum likelihood by EM (Shumway & Stoffer 1982; with missing entries
  Shumway & Stoffer, *Time Series Analysis and Its Applications*, Sec. 6.4), pooled over the
  windows: the "EM-fitted Kalman smoother" baseline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from scipy.linalg import solve_discrete_lyapunov

__all__ = [
    "LinearGaussianSSM",
    "SmootherResult",
    "default_ssm",
    "fit_em",
    "log_likelihood",
    "predictive",
    "predictive_samples",
    "simulate",
    "smooth",
]

_LOG_2PI = math.log(2.0 * math.pi)


# -- the model ---------------------------------------------------------------------------------


def _spd_problem(name: str, m: np.ndarray) -> str | None:
    """Why ``m`` is not symmetric positive definite, or None."""
    scale = max(float(np.max(np.abs(m))), 1e-300)
    if not np.allclose(m, m.T, rtol=0.0, atol=1e-10 * scale):
        return f"{name} is not symmetric (max |{name} - {name}^T| = {np.max(np.abs(m - m.T)):.3g})"
    try:
        np.linalg.cholesky(0.5 * (m + m.T))
    except np.linalg.LinAlgError:
        return (
            f"{name} is not positive definite (smallest eigenvalue "
            f"{np.linalg.eigvalsh(0.5 * (m + m.T))[0]:.3g})"
        )
    return None


@dataclass(frozen=True, eq=False)
class LinearGaussianSSM:
    """A linear-Gaussian state-space model (see the module docstring for the equations).

    Attributes (float64, read-only after construction):

    * ``A`` (D, D) -- transition matrix;
    * ``Q`` (D, D) -- process-noise covariance, symmetric positive definite;
    * ``C`` (K, D) -- observation matrix;
    * ``R`` (K,) -- the observation-noise *variances*: the noise covariance is ``diag(R)``
      (diagonal, so that a missing entry can be dropped row by row), each > 0;
    * ``m0`` (D,) -- mean of the initial state x_0;
    * ``P0`` (D, D) -- covariance of x_0, symmetric positive definite.

    Construction converts the arrays and calls :meth:`validate`.
    """

    A: np.ndarray
    Q: np.ndarray
    C: np.ndarray
    R: np.ndarray
    m0: np.ndarray
    P0: np.ndarray

    def __post_init__(self) -> None:
        for name in ("A", "Q", "C", "R", "m0", "P0"):
            value = np.array(getattr(self, name), dtype=np.float64)  # a private copy
            value.setflags(write=False)
            object.__setattr__(self, name, value)
        self.validate()

    @property
    def latent(self) -> int:
        """D, the dimension of the state."""
        return int(self.A.shape[0])

    @property
    def features(self) -> int:
        """K, the dimension of an observation."""
        return int(self.C.shape[0])

    def validate(self) -> None:
        """Raise ``ValueError`` (one line) on inconsistent shapes, non-finite values, a
        covariance that is not symmetric positive definite or a non-positive noise variance."""
        A, Q, C, R, P0 = self.A, self.Q, self.C, self.R, self.P0
        if A.ndim != 2 or A.shape[0] != A.shape[1] or A.shape[0] < 1:
            raise ValueError(f"LinearGaussianSSM: A must be square (D, D); got shape {A.shape}")
        d = A.shape[0]
        if C.ndim != 2 or C.shape[1] != d or C.shape[0] < 1:
            raise ValueError(
                f"LinearGaussianSSM: C must be (K, D) with D = {d} (from A); got shape {C.shape}"
            )
        k = C.shape[0]
        expected = {"Q": (d, d), "R": (k,), "m0": (d,), "P0": (d, d)}
        for name, shape in expected.items():
            got = getattr(self, name).shape
            if got != shape:
                raise ValueError(
                    f"LinearGaussianSSM: {name} must have shape {shape} (D = {d}, K = {k}); "
                    f"got {got}"
                )
        for name in ("A", "Q", "C", "R", "m0", "P0"):
            if not np.all(np.isfinite(getattr(self, name))):
                raise ValueError(f"LinearGaussianSSM: {name} has non-finite entries")
        if np.any(R <= 0):
            k_bad = int(np.argmax(R <= 0))
            raise ValueError(
                f"LinearGaussianSSM: R holds the observation-noise variances and must be > 0; "
                f"R[{k_bad}] = {R[k_bad]:.3g}"
            )
        for name, m in (("Q", Q), ("P0", P0)):
            problem = _spd_problem(name, m)
            if problem is not None:
                raise ValueError(f"LinearGaussianSSM: {problem}")


def default_ssm(features: int = 8, latent: int = 4, seed: int = 0) -> LinearGaussianSSM:
    """A stable system with structure worth imputing, stationary from its first step.

    The state is a set of damped rotations (pairs of latents; one extra damped real mode when
    ``latent`` is odd) with spectral radius 0.95 for the slowest mode (down to 0.85 for the
    fastest) and periods drawn between 6 and 40 steps, driven by correlated process noise. C is
    dense and random, so features are correlated through the shared state; its rows are scaled
    so that every feature has stationary variance exactly 1, of which R = 0.1 is noise (a
    signal-to-noise ratio of 9). m0 = 0 and P0 solves the discrete Lyapunov equation
    P0 = A P0 A^T + Q, so every step of a window has the same distribution.
    """
    if features < 1 or latent < 1:
        raise ValueError(
            f"default_ssm needs features >= 1 and latent >= 1; got {features}, {latent}"
        )
    rng = np.random.default_rng(seed)
    n_modes = (latent + 1) // 2
    radii = np.linspace(0.95, 0.85, n_modes) if n_modes > 1 else np.array([0.95])
    periods = np.sort(rng.uniform(6.0, 40.0, size=n_modes))[::-1]  # slowest mode first
    A = np.zeros((latent, latent))
    for j in range(latent // 2):
        theta = 2.0 * math.pi / periods[j]
        c, s = math.cos(theta), math.sin(theta)
        A[2 * j : 2 * j + 2, 2 * j : 2 * j + 2] = radii[j] * np.array([[c, -s], [s, c]])
    if latent % 2:
        A[-1, -1] = radii[-1]
    B = rng.standard_normal((latent, latent)) / math.sqrt(latent)
    Q = 0.5 * np.eye(latent) + 0.5 * B @ B.T
    Q = Q * (1.0 - radii[0] ** 2)  # stationary state variances of order 1
    P0 = solve_discrete_lyapunov(A, Q)
    P0 = 0.5 * (P0 + P0.T)
    R = np.full(features, 0.1)
    C = rng.standard_normal((features, latent))
    signal = np.einsum("kd,de,ke->k", C, P0, C)
    C = C * np.sqrt((1.0 - R) / signal)[:, None]
    return LinearGaussianSSM(A=A, Q=Q, C=C, R=R, m0=np.zeros(latent), P0=P0)


# -- inputs ------------------------------------------------------------------------------------


def _rng(generator: np.random.Generator | int | None) -> np.random.Generator:
    if isinstance(generator, np.random.Generator):
        return generator
    return np.random.default_rng(generator)


def _as_array(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _windows(
    y: Any, observed: Any, features: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Check ``y`` (N, K, L) and ``observed`` and return them as float64 (unobserved entries
    set to 0) and bool."""
    y = _as_array(y)
    observed = _as_array(observed)
    if y.ndim != 3:
        raise ValueError(f"y must be (N windows, K features, L steps); got shape {y.shape}")
    if observed.shape != y.shape:
        raise ValueError(
            f"observed mask has shape {observed.shape} but y has shape {y.shape}; they must match"
        )
    if observed.dtype != np.bool_:
        if not np.all((observed == 0) | (observed == 1)):
            raise ValueError("observed mask must be boolean (or 0/1)")
        observed = observed.astype(bool)
    if features is not None and y.shape[1] != features:
        raise ValueError(f"y has {y.shape[1]} features but the model has K = {features}")
    if y.shape[2] < 1:
        raise ValueError(f"y has no steps (shape {y.shape})")
    y = np.asarray(y, dtype=np.float64)
    bad = observed & ~np.isfinite(y)
    if bad.any():
        n, k, t = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"y has a non-finite observed entry at window {n}, feature {k}, step {t}")
    return np.where(observed, y, 0.0), observed


# -- Kalman filter and RTS smoother ------------------------------------------------------------


def _sym(m: np.ndarray) -> np.ndarray:
    return 0.5 * (m + np.swapaxes(m, -1, -2))


class _Filtered(NamedTuple):
    pred_means: np.ndarray  # (N, L, D): E[x_t | y_0..y_{t-1}]
    pred_covs: np.ndarray  # (N, L, D, D)
    means: np.ndarray  # (N, L, D): E[x_t | y_0..y_t]
    covs: np.ndarray  # (N, L, D, D)
    log_likelihood: np.ndarray  # (N,)


def _filter(ssm: LinearGaussianSSM, y: np.ndarray, observed: np.ndarray) -> _Filtered:
    """Kalman filter over all windows at once, each step using only its observed entries.

    With R diagonal, the update is done in the state space (D x D, never K x K) in square-root
    form: with the predicted covariance P = L L^T and the observed-row information
    Lam = C_o^T R_o^-1 C_o, let M = I + L^T Lam L = G G^T (Cholesky) and H = G^-1 L^T; then
    P_{t|t} = H^T H (symmetric PSD by construction, equal to the Joseph-form update) and
    m_{t|t} = m + H^T H C_o^T R_o^-1 (y_o - C_o m). The innovation density uses the matrix
    determinant lemma, log det(C_o P C_o^T + R_o) = log det R_o + log det M, and Woodbury,
    r^T S^-1 r = r^T R_o^-1 r - |H C_o^T R_o^-1 r|^2. A missing entry has weight 1/R = 0, so
    every window keeps the same array shapes; a step with nothing observed is a pure prediction.
    """
    n, k, length = y.shape
    d = ssm.latent
    A, Q, C, R = ssm.A, ssm.Q, ssm.C, ssm.R
    eye_d = np.eye(d)
    pred_means = np.empty((n, length, d))
    pred_covs = np.empty((n, length, d, d))
    means = np.empty((n, length, d))
    covs = np.empty((n, length, d, d))
    ll = np.zeros(n)
    log_r = np.log(R)
    m = np.broadcast_to(ssm.m0, (n, d)).copy()
    P = np.broadcast_to(ssm.P0, (n, d, d)).copy()
    for t in range(length):
        if t > 0:
            m = m @ A.T
            P = _sym(A @ P @ A.T + Q)
        pred_means[:, t], pred_covs[:, t] = m, P
        o = observed[:, :, t]  # (N, K)
        if o.any():
            w = o / R  # (N, K): 1/R_kk where observed, 0 where missing
            resid = np.where(o, y[:, :, t] - m @ C.T, 0.0)  # (N, K)
            lam = C.T @ (w[:, :, None] * C)  # (N, D, D)
            Lp = np.linalg.cholesky(P)
            M = _sym(eye_d + np.swapaxes(Lp, -1, -2) @ lam @ Lp)
            G = np.linalg.cholesky(M)
            H = np.linalg.solve(G, np.swapaxes(Lp, -1, -2))  # G^-1 L^T
            b = (w * resid) @ C  # (N, D): C_o^T R_o^-1 r
            hb = (H @ b[:, :, None])[:, :, 0]
            m = m + (np.swapaxes(H, -1, -2) @ hb[:, :, None])[:, :, 0]
            P = _sym(np.swapaxes(H, -1, -2) @ H)
            logdet = (o * log_r).sum(1) + 2.0 * np.log(np.diagonal(G, axis1=-2, axis2=-1)).sum(-1)
            quad = (w * resid**2).sum(1) - (hb**2).sum(1)
            ll -= 0.5 * (o.sum(1) * _LOG_2PI + logdet + quad)
        means[:, t], covs[:, t] = m, P
    return _Filtered(pred_means, pred_covs, means, covs, ll)


def _rts(ssm: LinearGaussianSSM, f: _Filtered) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rauch-Tung-Striebel smoother: smoothed means (N, L, D), covariances (N, L, D, D) and the
    smoother gains J_t = P_{t|t} A^T P_{t+1|t}^-1, (N, L-1, D, D)."""
    n, length, d = f.means.shape
    A = ssm.A
    means = f.means.copy()
    covs = f.covs.copy()
    gains = np.empty((n, max(length - 1, 0), d, d))
    for t in range(length - 2, -1, -1):
        # J^T = P_{t+1|t}^-1 A P_{t|t} (both covariances symmetric)
        J = np.swapaxes(np.linalg.solve(f.pred_covs[:, t + 1], A @ f.covs[:, t]), -1, -2)
        gains[:, t] = J
        step = means[:, t + 1] - f.pred_means[:, t + 1]
        means[:, t] = f.means[:, t] + np.einsum("nde,ne->nd", J, step)
        covs[:, t] = _sym(
            f.covs[:, t] + J @ (covs[:, t + 1] - f.pred_covs[:, t + 1]) @ np.swapaxes(J, -1, -2)
        )
    return means, covs, gains


class SmootherResult(NamedTuple):
    """The output of :func:`smooth` (a tuple: ``means, covs, log_likelihood = smooth(...)``)."""

    means: np.ndarray
    """(N, D, L): E[x_t | all observed entries of the window]."""
    covs: np.ndarray
    """(N, D, D, L): Cov[x_t | all observed entries of the window]."""
    log_likelihood: np.ndarray
    """(N,): log p(observed entries of the window), exact."""


def smooth(ssm: LinearGaussianSSM, y: Any, observed: Any) -> SmootherResult:
    """Kalman filter + Rauch-Tung-Striebel (1965) smoother of windows ``y`` (N, K, L) with the
    bool mask ``observed`` (N, K, L). Each step uses only its observed entries; a step with
    none is a pure prediction. The log-likelihood is the exact marginal density of the observed
    entries (prediction-error decomposition). See :class:`SmootherResult` for the shapes."""
    y, observed = _windows(y, observed, ssm.features)
    f = _filter(ssm, y, observed)
    means, covs, _ = _rts(ssm, f)
    return SmootherResult(
        np.ascontiguousarray(means.transpose(0, 2, 1)),
        np.ascontiguousarray(covs.transpose(0, 2, 3, 1)),
        f.log_likelihood,
    )


def log_likelihood(ssm: LinearGaussianSSM, y: Any, observed: Any) -> np.ndarray:
    """The exact log-likelihood (N,) of the observed entries of each window (filter only)."""
    y, observed = _windows(y, observed, ssm.features)
    return _filter(ssm, y, observed).log_likelihood


# -- the oracle --------------------------------------------------------------------------------


def predictive(ssm: LinearGaussianSSM, y: Any, observed: Any) -> tuple[np.ndarray, np.ndarray]:
    """The exact posterior predictive of every entry y[n, k, t] given all observed entries of
    window n: Gaussian with ``mean = C m_{t|L}`` and ``var = diag(C P_{t|L} C^T) + R`` for an
    unobserved entry; an observed entry is returned as its value with variance 0. Both (N, K, L).

    This is the oracle of imputation under a known model: each missing value's exact marginal
    predictive distribution, so the Gaussian CRPS of (mean, var) is the smallest expected CRPS
    any forecaster can achieve for that entry (CRPS is strictly proper, Gneiting & Raftery
    2007), and the mean is the minimum-MSE imputation (the median, equal to it, minimises MAE).
    """
    y, observed = _windows(y, observed, ssm.features)
    f = _filter(ssm, y, observed)
    means, covs, _ = _rts(ssm, f)
    C = ssm.C
    mean = (means @ C.T).transpose(0, 2, 1)  # (N, K, L)
    var = np.einsum("kd,nlde,ke->nkl", C, covs, C) + ssm.R[None, :, None]
    return np.where(observed, y, mean), np.where(observed, 0.0, var)


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    """A square root L (L L^T = m) of a batch of symmetric PSD matrices (eigenvalues clipped at
    0 against round-off)."""
    w, v = np.linalg.eigh(_sym(m))
    return v * np.sqrt(np.clip(w, 0.0, None))[..., None, :]


def predictive_samples(
    ssm: LinearGaussianSSM,
    y: Any,
    observed: Any,
    n_samples: int,
    generator: np.random.Generator | int | None = None,
) -> np.ndarray:
    """Exact joint posterior samples (S, N, K, L) of every window given its observed entries.

    Forward filtering, backward sampling of the latent path (Carter & Kohn 1994; Fruehwirth-
    Schnatter 1994): x_{L-1} ~ N(m_{L-1|L-1}, P_{L-1|L-1}), then
    x_t | x_{t+1} ~ N(m_{t|t} + J_t (x_{t+1} - m_{t+1|t}), P_{t|t} - J_t P_{t+1|t} J_t^T), and a
    missing entry is y = C x + v with fresh noise v ~ N(0, R); observed entries are returned
    exactly. The samples of one window are jointly distributed as its posterior, which is what
    the energy score (Gneiting & Raftery 2007) of the oracle needs. ``generator``: a numpy
    Generator, a seed, or None (fresh entropy).
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be at least 1; got {n_samples}")
    y, observed = _windows(y, observed, ssm.features)
    rng = _rng(generator)
    f = _filter(ssm, y, observed)
    n, length, d = f.means.shape
    A = ssm.A
    x = np.empty((n_samples, n, length, d))
    root = _sqrt_psd(f.covs[:, -1])  # (N, D, D)
    noise = rng.standard_normal((n_samples, n, d))
    x[:, :, -1] = f.means[:, -1] + np.einsum("nde,sne->snd", root, noise)
    for t in range(length - 2, -1, -1):
        J = np.swapaxes(np.linalg.solve(f.pred_covs[:, t + 1], A @ f.covs[:, t]), -1, -2)
        cov = f.covs[:, t] - J @ f.pred_covs[:, t + 1] @ np.swapaxes(J, -1, -2)
        root = _sqrt_psd(cov)
        mean = f.means[:, t] + np.einsum("nde,sne->snd", J, x[:, :, t + 1] - f.pred_means[:, t + 1])
        noise = rng.standard_normal((n_samples, n, d))
        x[:, :, t] = mean + np.einsum("nde,sne->snd", root, noise)
    obs_noise = rng.standard_normal((n_samples, n, ssm.features, length))
    obs_noise *= np.sqrt(ssm.R)[:, None]
    samples = np.swapaxes(x @ ssm.C.T, -1, -2) + obs_noise  # (S, N, K, L)
    return np.where(observed, y, samples)


# -- simulation --------------------------------------------------------------------------------


def simulate(
    ssm: LinearGaussianSSM,
    n: int,
    length: int,
    generator: np.random.Generator | int | None = None,
) -> np.ndarray:
    """``n`` independent complete windows (n, K, length) of the model, each starting from
    x_0 ~ N(m0, P0) (missingness is applied elsewhere). ``generator``: a numpy Generator, a
    seed, or None."""
    if n < 1 or length < 1:
        raise ValueError(f"simulate needs n >= 1 and length >= 1; got n = {n}, length = {length}")
    rng = _rng(generator)
    d, k = ssm.latent, ssm.features
    q_root = np.linalg.cholesky(ssm.Q)
    x = ssm.m0 + rng.standard_normal((n, d)) @ np.linalg.cholesky(ssm.P0).T
    out = np.empty((n, k, length))
    for t in range(length):
        if t > 0:
            x = x @ ssm.A.T + rng.standard_normal((n, d)) @ q_root.T
        out[:, :, t] = x @ ssm.C.T + rng.standard_normal((n, k)) * np.sqrt(ssm.R)
    return out


# -- EM ----------------------------------------------------------------------------------------


def _initial_model(
    y: np.ndarray, observed: np.ndarray, latent: int, rng: np.random.Generator
) -> LinearGaussianSSM:
    """A starting point for EM: C from the principal directions of the (uncentred, pairwise
    observed) second moments of the features, states by ridge projection of each step, A and Q
    by least squares on those states; ``rng`` adds a small random part to C (and fills the
    columns beyond the rank)."""
    n, k, length = y.shape
    o = observed.astype(np.float64)
    flat_y = (y * o).transpose(0, 2, 1).reshape(-1, k)
    flat_o = o.transpose(0, 2, 1).reshape(-1, k)
    moment = (flat_y.T @ flat_y) / np.maximum(flat_o.T @ flat_o, 1.0)
    moment = _sym(moment)
    scale = float(np.mean(np.diag(moment))) or 1.0
    w, v = np.linalg.eigh(moment)
    w, v = w[::-1], v[:, ::-1]
    C = np.zeros((k, latent))
    r = min(latent, k)
    C[:, :r] = v[:, :r] * np.sqrt(np.clip(w[:r], 1e-3 * scale, None))
    C += 0.05 * math.sqrt(scale) * rng.standard_normal((k, latent))
    R = np.maximum(np.diag(moment) - np.einsum("kd,kd->k", C, C), 0.05 * np.diag(moment))
    R = np.maximum(R, 1e-6 * scale)
    # states: posterior mean under a N(0, I) prior, one step at a time
    Ci = C / R[:, None]
    prec = np.einsum("sk,kd,ke->sde", flat_o, Ci, C) + np.eye(latent)
    rhs = flat_y @ Ci
    xs = np.linalg.solve(prec, rhs[:, :, None])[:, :, 0].reshape(n, length, latent)
    x0, x1 = xs[:, :-1].reshape(-1, latent), xs[:, 1:].reshape(-1, latent)
    A = np.linalg.solve(x0.T @ x0 + 1e-6 * len(x0) * np.eye(latent), x0.T @ x1).T
    radius = float(np.max(np.abs(np.linalg.eigvals(A))))
    if radius > 0.98:
        A *= 0.98 / radius
    resid = x1 - x0 @ A.T
    Q = _sym(resid.T @ resid / len(resid)) + 1e-2 * np.eye(latent)
    m0 = xs[:, 0].mean(0)
    return LinearGaussianSSM(A=A, Q=Q, C=C, R=R, m0=m0, P0=np.eye(latent))


def _floor_spd(m: np.ndarray, rel: float = 1e-10) -> np.ndarray:
    """Symmetrise and lift eigenvalues below ``rel`` times the largest (keeps an M-step
    covariance positive definite when the data make it degenerate; never binds otherwise)."""
    m = _sym(m)
    w, v = np.linalg.eigh(m)
    floor = rel * max(float(w[-1]), 1e-300)
    if w[0] >= floor:
        return m
    return _sym((v * np.maximum(w, floor)) @ v.T)


def _em_step(
    ssm: LinearGaussianSSM, y: np.ndarray, observed: np.ndarray
) -> tuple[LinearGaussianSSM, float]:
    """One EM iteration: the E-step under ``ssm`` (its log-likelihood is returned) and the
    exact M-step (Shumway & Stoffer 1982; missing entries: their book, Sec. 6.4)."""
    n, k, length = y.shape
    d = ssm.latent
    f = _filter(ssm, y, observed)
    ms, Ps, J = _rts(ssm, f)
    Exx = Ps + ms[..., :, None] * ms[..., None, :]  # (N, L, D, D): E[x_t x_t^T | Y]
    # E[x_{t+1} x_t^T | Y] = P_{t+1|L} J_t^T + m_{t+1|L} m_{t|L}^T (de Jong 1989)
    Ex1x0 = Ps[:, 1:] @ np.swapaxes(J, -1, -2) + ms[:, 1:, :, None] * ms[:, :-1, None, :]
    S00 = Exx[:, :-1].sum((0, 1))
    S11 = Exx[:, 1:].sum((0, 1))
    S10 = Ex1x0.sum((0, 1))
    A = np.linalg.solve(S00, S10.T).T  # S10 S00^-1
    Q = _floor_spd((S11 - A @ S10.T) / (n * (length - 1)))
    m0 = ms[:, 0].mean(0)
    dev = ms[:, 0] - m0
    P0 = _floor_spd(Ps[:, 0].mean(0) + dev.T @ dev / n)
    # C and R row by row over the observed entries only (R diagonal decouples the rows)
    o = observed.transpose(0, 2, 1).reshape(-1, k).astype(np.float64)  # (N L, K)
    yy = y.transpose(0, 2, 1).reshape(-1, k)
    mflat = ms.reshape(-1, d)
    count = o.sum(0)  # (K,)
    num = (o * yy).T @ mflat  # (K, D): sum_t o y m^T
    den = (o.T @ Exx.reshape(-1, d * d)).reshape(k, d, d)  # (K, D, D): sum_t o E[x x^T]
    ysq = (o * yy * yy).sum(0)
    C = ssm.C.copy()
    R = ssm.R.copy()
    seen = count > 0
    C[seen] = np.linalg.solve(den[seen], num[seen][:, :, None])[:, :, 0]
    fit = ysq - 2.0 * np.einsum("kd,kd->k", C, num) + np.einsum("kd,kde,ke->k", C, den, C)
    R[seen] = fit[seen] / count[seen]
    R = np.maximum(R, 1e-10 * max(float(np.max(ysq / np.maximum(count, 1.0))), 1e-300))
    new = LinearGaussianSSM(A=A, Q=Q, C=C, R=R, m0=m0, P0=P0)
    return new, float(f.log_likelihood.sum())


def fit_em(
    y: Any,
    observed: Any,
    latent: int,
    iterations: int,
    seed: int = 0,
    init: LinearGaussianSSM | None = None,
) -> tuple[LinearGaussianSSM, list[float]]:
    """Maximum-likelihood fit of every parameter (A, Q, C, R diagonal, m0, P0) by EM
    (Shumway & Stoffer 1982) to windows ``y`` (N, K, L) with missing entries (``observed``),
    the windows pooled as independent sequences of one model that each start from (m0, P0).

    E-step: the Kalman/RTS smoother (:func:`smooth`) with the lag-one covariances
    P_{t+1,t|L} = P_{t+1|L} J_t^T. M-step, exact: A = S10 S00^-1, Q = (S11 - A S10^T) / (N (L-1));
    m0, P0 from the smoothed initial states; each row of C and each R_kk by least squares over
    the steps where feature k is observed (Shumway & Stoffer's book, Sec. 6.4).

    Returns ``(model, log_likelihoods)``: ``log_likelihoods[i]`` is the total log-likelihood of
    the observed entries under the i-th model (0: the initial one), ``iterations + 1`` values,
    non-decreasing up to round-off (a covariance floor at 1e-10 of its scale, there only
    against degenerate data, is the one exception). ``init`` replaces the default start (PCA of
    the features, least squares for the dynamics, randomised by ``seed``).
    """
    y, observed = _windows(y, observed)
    n, k, length = y.shape
    if latent < 1:
        raise ValueError(f"latent must be at least 1; got {latent}")
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0; got {iterations}")
    if length < 2:
        raise ValueError(f"EM needs windows of at least 2 steps; got L = {length}")
    never = ~observed.any(axis=(0, 2))
    if never.any():
        raise ValueError(f"feature {int(np.argmax(never))} has no observed entry in any window")
    if init is None:
        model = _initial_model(y, observed, latent, np.random.default_rng(seed))
    else:
        if init.latent != latent or init.features != k:
            raise ValueError(
                f"init has D = {init.latent}, K = {init.features}; expected D = {latent}, K = {k}"
            )
        model = init
    history: list[float] = []
    for _ in range(iterations):
        model, ll = _em_step(model, y, observed)
        history.append(ll)
    history.append(float(_filter(model, y, observed).log_likelihood.sum()))
    return model, history
