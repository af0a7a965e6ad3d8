"""Quality of synthetic time series: a metric suite in the spirit of Nikitin et al.'s TSGM
framework (arXiv:2305.11567: similarity, downstream use, privacy), with TimeGAN's two scores
(Yoon et al. 2019, NeurIPS, the official ``metrics/discriminative_metrics.py`` and
``metrics/predictive_metrics.py``) written from their description.

Windows are (N, L, D) -- TimeGAN's layout, features last -- min-max scaled to [0, 1]; real and
synthetic sets may have different N. Every function takes numpy arrays or torch tensors.

* :func:`discriminative_score` -- |accuracy - 0.5| of a post-hoc GRU classifier real vs fake,
  with the accuracy's binomial standard error (:class:`DiscriminativeScore`);
* :func:`predictive_score` -- train on synthetic, test on real: one-step MAE of a GRU
  (:class:`PredictiveScore`);
* :func:`mmd_windows` -- unbiased MMD^2 of flattened windows, median-heuristic Gaussian kernel
  (:func:`median_bandwidth`);
* :func:`reference_scores` -- any score between two random halves of the real set: the
  real-vs-real row (noise floor) every report needs;
* :func:`autocorrelation` / :func:`autocorrelation_gap`, :func:`spectral_entropy` /
  :func:`spectral_entropy_gap`, :func:`marginal_gap` -- temporal and marginal statistics;
* :func:`memorisation` -- nearest-training-window distances of fakes against held-out reals;
* :func:`embed` / :func:`embedding_figure` -- PCA or t-SNE scatter of real and fake windows.

Each bad input (not (N, L, D), NaN or inf, L < 2, different (L, D)) is one ``ValueError``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..metrics.distances import mmd
from ..metrics.neighbours import memorisation as _memorisation
from ..metrics.neighbours import nearest_distances
from ..plotting import new_figure, save_figure
from ..threads import torch_threads

__all__ = [
    "DiscriminativeScore",
    "PredictiveScore",
    "autocorrelation",
    "autocorrelation_gap",
    "discriminative_score",
    "embed",
    "embedding_figure",
    "marginal_gap",
    "median_bandwidth",
    "memorisation",
    "mmd_windows",
    "predictive_score",
    "reference_scores",
    "spectral_entropy",
    "spectral_entropy_gap",
]


# ------------------------------------------------------------------ input checks
def _windows(x: Any, name: str, min_length: int = 2, min_count: int = 1) -> np.ndarray:
    """``x`` as float64 numpy windows (N, L, D), or one ``ValueError`` naming the problem."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be numeric windows (N, L, D): {err}") from None
    if arr.ndim != 3:
        raise ValueError(f"{name} must be windows of shape (N, L, D), got shape {arr.shape}")
    n, length, _ = arr.shape
    if n < min_count:
        raise ValueError(f"{name} needs at least {min_count} windows, got {n}")
    if length < min_length:
        raise ValueError(f"{name} windows need at least {min_length} steps, got L = {length}")
    if arr.shape[2] < 1:
        raise ValueError(f"{name} windows need at least one feature, got shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        i, t, d = (int(v) for v in np.argwhere(bad)[0])
        raise ValueError(f"{name} has {int(bad.sum())} NaN or infinite values "
                         f"(first at window {i}, step {t}, feature {d})")  # fmt: skip
    return arr


def _pair(real: Any, fake: Any, min_length: int = 2, min_count: int = 1,
          names: tuple[str, str] = ("real", "fake")) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    a = _windows(real, names[0], min_length, min_count)
    b = _windows(fake, names[1], min_length, min_count)
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"{names[0]} and {names[1]} windows differ in shape: (L, D) = "
                         f"{a.shape[1:]} vs {b.shape[1:]}")  # fmt: skip
    return a, b


def _hidden(hidden: int | None, features: int) -> int:
    """TimeGAN's ``hidden_dim = int(dim / 2)``, at least 1 (it would be 0 for one feature)."""
    h = max(features // 2, 1) if hidden is None else int(hidden)
    if h < 1:
        raise ValueError(f"hidden must be >= 1, got {hidden}")
    return h


def _check_training(iterations: int, batch_size: int) -> None:
    if iterations < 0 or batch_size < 1:
        raise ValueError(f"need iterations >= 0 and batch_size >= 1, got {iterations} and "
                         f"{batch_size}")  # fmt: skip


def _steps(iterations: int, progress: bool, desc: str) -> Iterable[int]:
    steps: Iterable[int] = range(iterations)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc=desc, leave=False)
    return steps


class _GRUHead(nn.Module):
    """A 1-layer GRU followed by a linear map to one output (TimeGAN's post-hoc networks)."""

    def __init__(self, inputs: int, hidden: int) -> None:
        super().__init__()
        self.gru = nn.GRU(inputs, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def last(self, x: torch.Tensor) -> torch.Tensor:
        """The logit of the last hidden state, (N,)."""
        _, h = self.gru(x)
        return self.head(h[-1]).squeeze(-1)

    def every(self, x: torch.Tensor) -> torch.Tensor:
        """A logit at every step, (N, L)."""
        out, _ = self.gru(x)
        return self.head(out).squeeze(-1)


@contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Model initialisation from ``seed`` without touching the global RNG, and one intra-op
    thread on the CPU (these networks are tiny; extra threads only spin, see ``threads``)."""
    cuda = [device.index or 0] if device.type == "cuda" else []
    with ExitStack() as stack:
        if device.type == "cpu":
            stack.enter_context(torch_threads(1))
        stack.enter_context(torch.random.fork_rng(devices=cuda))
        torch.manual_seed(int(seed))
        yield


def _batches(rng: np.random.Generator, n: int, batch_size: int) -> np.ndarray:
    """``batch_size`` distinct indices of ``n`` (all of them when n is smaller), as TimeGAN's
    ``batch_generator`` (a fresh random subset every iteration)."""
    return rng.choice(n, size=min(batch_size, n), replace=False)


# ------------------------------------------------------------------ discriminative score
@dataclass(frozen=True)
class DiscriminativeScore:
    """TimeGAN's discriminative score ``|accuracy - 0.5|`` with what a report needs to judge it.

    ``accuracy`` is the balanced accuracy on the held-out 20% (the mean of the accuracies on
    real and on fake windows; TimeGAN's plain accuracy when the two test splits are equal, and
    0.5 on average for indistinguishable sets whatever their sizes). ``se`` is its binomial
    standard error given the trained classifier, ``0.5 sqrt(a_r (1 - a_r) / n_real + a_f (1 -
    a_f) / n_fake)``; ``z = score / se`` says whether the score differs from 0 (``|acc - 0.5|``
    of an indistinguishable pair is about ``0.8 se`` on average). ``float(s)`` is the score."""

    score: float
    accuracy: float
    se: float
    real_accuracy: float
    fake_accuracy: float
    n_real: int
    n_fake: int

    @property
    def z(self) -> float:
        """``score / se`` (inf for a nonzero score with se = 0, 0 for a zero score)."""
        if self.se > 0:
            return self.score / self.se
        return 0.0 if self.score == 0 else math.inf

    def __float__(self) -> float:
        return float(self.score)


def _split(rng: np.random.Generator, n: int, train_rate: float = 0.8) -> tuple[np.ndarray, ...]:
    """TimeGAN's ``train_test_divide``: a random permutation, the first int(0.8 n) to train."""
    idx = rng.permutation(n)
    cut = int(n * train_rate)
    return idx[:cut], idx[cut:]


def discriminative_score(
    real: Any,
    fake: Any,
    *,
    hidden: int | None = None,
    iterations: int = 2000,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> DiscriminativeScore:
    """TimeGAN's discriminative score (Yoon et al. 2019, ``metrics/discriminative_metrics.py``):
    a post-hoc classifier -- a 1-layer GRU (``hidden`` units, TimeGAN's int(D/2), at least 1)
    and a linear head on its last hidden state -- is trained with Adam (``lr``, TimeGAN's
    default 1e-3) for ``iterations`` steps on the sum of the mean logistic losses of a batch
    of real (label 1) and a batch of fake (label 0) windows, ``batch_size`` of each, drawn from
    80% of each set; it is then scored on the other 20% of each, and the result is
    ``|accuracy - 0.5|`` (0 = indistinguishable, 0.5 = told apart perfectly) with its standard
    error (:class:`DiscriminativeScore`). Deterministic given ``seed``. Each set needs at least
    2 windows (one to train, one to test)."""
    x_real, x_fake = _pair(real, fake, min_count=2)
    _check_training(iterations, batch_size)
    dev = torch.device(device)
    rng = np.random.default_rng(seed)
    (tr_r, te_r), (tr_f, te_f) = _split(rng, len(x_real)), _split(rng, len(x_fake))
    as_t = lambda a: torch.as_tensor(a, dtype=torch.float32, device=dev)  # noqa: E731
    train_r, train_f = as_t(x_real[tr_r]), as_t(x_fake[tr_f])
    with _seeded(seed, dev):
        net = _GRUHead(x_real.shape[2], _hidden(hidden, x_real.shape[2])).to(dev)
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        bce = nn.BCEWithLogitsLoss()
        for _ in _steps(iterations, progress, "discriminative score"):
            xr = train_r[torch.as_tensor(_batches(rng, len(tr_r), batch_size), device=dev)]
            xf = train_f[torch.as_tensor(_batches(rng, len(tr_f), batch_size), device=dev)]
            lr_, lf = net.last(xr), net.last(xf)
            loss = bce(lr_, torch.ones_like(lr_)) + bce(lf, torch.zeros_like(lf))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():
            logit_r = torch.cat([net.last(b) for b in as_t(x_real[te_r]).split(4096)])
            logit_f = torch.cat([net.last(b) for b in as_t(x_fake[te_f]).split(4096)])
    # TimeGAN predicts "real" when sigmoid(logit) > 0.5, i.e. logit > 0.
    a_r = float((logit_r > 0).double().mean())
    a_f = float((logit_f <= 0).double().mean())
    n_r, n_f = len(te_r), len(te_f)
    accuracy = 0.5 * (a_r + a_f)
    se = 0.5 * math.sqrt(a_r * (1 - a_r) / n_r + a_f * (1 - a_f) / n_f)
    return DiscriminativeScore(abs(accuracy - 0.5), accuracy, se, a_r, a_f, n_r, n_f)


# ------------------------------------------------------------------ predictive score
@dataclass(frozen=True)
class PredictiveScore:
    """TSTR one-step MAE on the real windows (``score``), with ``se`` = the standard error of
    the mean over the ``n`` real windows of their per-window MAE, given the trained
    predictor (for a difference between two generators scored on the same real set, pair the
    windows instead). ``float(s)`` is the score."""

    score: float
    se: float
    n: int

    def __float__(self) -> float:
        return float(self.score)


def _predictive_io(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """TimeGAN's inputs ``x[:, :-1, :D-1]`` and targets ``x[:, 1:, D-1]``; with one feature,
    the feature is both (plain one-step-ahead prediction of the series from its past)."""
    d = x.shape[2]
    inputs = x[:, :-1, : max(d - 1, 1)]
    return inputs, x[:, 1:, d - 1]


def predictive_score(
    real: Any,
    fake: Any,
    *,
    hidden: int | None = None,
    iterations: int = 5000,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> PredictiveScore:
    """TimeGAN's predictive score (Yoon et al. 2019, ``metrics/predictive_metrics.py``), train
    on synthetic, test on real: a 1-layer GRU (``hidden`` units, TimeGAN's int(D/2), at least 1)
    with a linear map and a sigmoid at every step reads ``x[:, :-1, :D-1]`` and predicts
    ``x[:, 1:, D-1]``, the next value of the last feature from the other features' past; it is
    trained on ``fake`` with the L1 loss and Adam (``lr``, TimeGAN's default 1e-3) for
    ``iterations`` batches of ``batch_size`` windows, and the score is its mean absolute error
    on every ``real`` window (lower is better; compare with the real-vs-real row). With one
    feature (D = 1) the feature is both input and target: plain one-step-ahead prediction. The
    sigmoid assumes data in [0, 1]. Deterministic given ``seed``."""
    x_real, x_fake = _pair(real, fake)
    _check_training(iterations, batch_size)
    dev = torch.device(device)
    rng = np.random.default_rng(seed)
    fake_t = torch.as_tensor(x_fake, dtype=torch.float32, device=dev)
    with _seeded(seed, dev):
        d = x_real.shape[2]
        net = _GRUHead(max(d - 1, 1), _hidden(hidden, d)).to(dev)
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        for _ in _steps(iterations, progress, "predictive score"):
            inputs, target = _predictive_io(
                fake_t[torch.as_tensor(_batches(rng, len(x_fake), batch_size), device=dev)])
            loss = (torch.sigmoid(net.every(inputs)) - target).abs().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():
            errors = []
            for b in torch.as_tensor(x_real, dtype=torch.float32, device=dev).split(4096):
                inputs, target = _predictive_io(b)
                errors.append((torch.sigmoid(net.every(inputs)) - target).abs().mean(1))
    per_window = torch.cat(errors).double().cpu().numpy()
    n = per_window.size
    se = float(per_window.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    return PredictiveScore(float(per_window.mean()), se, n)


# ------------------------------------------------------------------ MMD and reference rows
def median_bandwidth(real: Any, fake: Any, *, max_points: int = 2000, seed: int = 0) -> float:
    """The median heuristic (as in Gretton et al. 2012's experiments): the median distance
    between distinct windows (flattened) of the pooled sample; a pool larger than
    ``max_points`` is subsampled at random (from ``seed``) first."""
    a, b = _pair(real, fake)
    pool = np.concatenate([a.reshape(len(a), -1), b.reshape(len(b), -1)])
    if len(pool) > max_points:
        pool = pool[np.random.default_rng(seed).choice(len(pool), max_points, replace=False)]
    if len(pool) < 2:
        raise ValueError("the median heuristic needs at least 2 windows in all")
    p = torch.as_tensor(pool)
    dist = torch.cdist(p, p)
    i, j = torch.triu_indices(len(p), len(p), offset=1)
    h = float(np.median(dist[i, j].numpy()))
    if not h > 0:
        raise ValueError("the median distance between windows is 0 (most windows are equal); "
                         "pass a bandwidth")  # fmt: skip
    return h


def mmd_windows(real: Any, fake: Any, bandwidth: float | str = "median", *,
                max_points: int = 2000, seed: int = 0) -> float:  # fmt: skip
    """Unbiased MMD^2 (Gretton et al. 2012, JMLR, eq. 3) between the flattened windows (L D
    values each) with the Gaussian kernel ``exp(-|a - b|^2 / (2 h^2))``, h = ``bandwidth`` or,
    for ``"median"``, :func:`median_bandwidth` of the pooled sample (Nikitin et al.'s MMD
    metric, but unbiased and with the median heuristic instead of a fixed length scale 1).
    0 on average for identical distributions (it may be negative); needs 2 windows a side.
    Computed by :func:`diffusio.metrics.mmd`."""
    a, b = _pair(real, fake, min_count=2)
    if isinstance(bandwidth, str):
        if bandwidth != "median":
            raise ValueError(f"bandwidth must be a positive number or 'median', got {bandwidth!r}")
        h = median_bandwidth(a, b, max_points=max_points, seed=seed)
    else:
        h = float(bandwidth)
    return mmd(a.reshape(len(a), -1), b.reshape(len(b), -1), h)


def reference_scores(real: Any, fn: Callable[[np.ndarray, np.ndarray], Any], *, seed: int = 0,
                     repeats: int = 1) -> list[Any]:  # fmt: skip
    """The real-vs-real row of a report: ``fn(A, B)`` for ``repeats`` random splits of the real
    windows into two disjoint halves A, B of ``N // 2`` each (split k from ``seed + k``), e.g.
    ``reference_scores(real, lambda a, b: discriminative_score(a, b, iterations=500))``. It is
    what a perfect generator scores -- at half the sample size, so slightly worse than at full
    size for the sample-size-dependent scores (the discriminative score's se grows by about
    sqrt 2)."""
    x = _windows(real, "real", min_count=2)
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    half = len(x) // 2
    out = []
    for k in range(repeats):
        idx = np.random.default_rng(seed + k).permutation(len(x))
        out.append(fn(x[idx[:half]], x[idx[half : 2 * half]]))
    return out


# ------------------------------------------------------------------ temporal statistics
def _max_lag(max_lag: int | None, length: int) -> int:
    lag = max(length // 2, 1) if max_lag is None else int(max_lag)
    if not 1 <= lag <= length - 1:
        raise ValueError(f"max_lag must lie in 1..L-1 = 1..{length - 1}, got {max_lag}")
    return lag


def autocorrelation(windows: Any, max_lag: int | None = None) -> np.ndarray:
    """Per-feature autocorrelation function at lags 0..``max_lag`` (default L // 2), (lags, D):

        r_k = [mean over windows and t <= L-1-k of (x_t - m)(x_{t+k} - m)] / [mean of (x_t - m)^2]

    with m the feature's mean over the whole set -- the ratio of the window-averaged lag-k and
    lag-0 autocovariances (Box & Jenkins' estimator, pooled over windows; per-window ratios are
    unstable for short windows and biased by each window's own mean). For a stationary AR(1)
    with coefficient a it estimates a^k. A constant feature has r_k = 0 for k >= 1."""
    x = _windows(windows, "windows")
    length = x.shape[1]
    lag = _max_lag(max_lag, length)
    c = x - x.mean(axis=(0, 1))
    c0 = (c * c).mean(axis=(0, 1))
    scale = np.maximum(np.abs(x).max(axis=(0, 1)), 1.0)
    constant = c0 <= (1e-12 * scale) ** 2
    r = np.zeros((lag + 1, x.shape[2]))
    for k in range(lag + 1):
        ck = (c[:, : length - k] * c[:, k:]).mean(axis=(0, 1))
        r[k] = np.where(constant, 0.0, ck / np.where(constant, 1.0, c0))
    r[0] = 1.0
    return r


def autocorrelation_gap(real: Any, fake: Any, max_lag: int | None = None) -> float:
    """Mean over lags 1..``max_lag`` (default L // 2) and features of |r_k(real) - r_k(fake)|,
    the :func:`autocorrelation` of each set (a temporal-dependence check in the spirit of
    Nikitin et al.'s autocorrelation statistics). 0 for identical sets."""
    a, b = _pair(real, fake)
    lag = _max_lag(max_lag, a.shape[1])
    return float(np.abs(autocorrelation(a, lag)[1:] - autocorrelation(b, lag)[1:]).mean())


def spectral_entropy(windows: Any) -> np.ndarray:
    """Normalised spectral entropy of every window and feature, (N, D), in [0, 1]: the Shannon
    entropy of the periodogram normalised to a distribution over frequency (Inouye et al.
    1991; the quantity behind Nikitin et al.'s EntropyMetric), divided by its maximum log M:

        P_f = |sum_t (x_t - mean x) e^{-2 pi i f t / L}|^2,  f = 1..M = floor(L / 2),
        H = -sum_f p_f log p_f / log M,  p_f = P_f / sum P.

    The zero-frequency bin is dropped (it is 0 after removing the mean), so a flat spectrum
    scores 1 (white noise has equal expected power in every bin) and a sinusoid at a Fourier
    frequency 0. A constant window scores 0. Needs L >= 4 (two frequencies)."""
    x = _windows(windows, "windows", min_length=4)
    c = x - x.mean(axis=1, keepdims=True)
    power = np.abs(np.fft.rfft(c, axis=1)[:, 1:]) ** 2  # (N, M, D)
    total = power.sum(axis=1, keepdims=True)
    energy = (x * x).sum(axis=1, keepdims=True)
    flat = total <= 1e-20 * np.maximum(energy, 1e-300)
    p = power / np.where(flat, 1.0, total)
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    h = -plogp.sum(axis=1) / math.log(power.shape[1])
    return np.where(flat[:, 0], 0.0, np.clip(h, 0.0, 1.0))


def spectral_entropy_gap(real: Any, fake: Any) -> float:
    """Mean over features of |mean spectral entropy (real) - mean spectral entropy (fake)|, the
    means over windows of :func:`spectral_entropy` (Nikitin et al.'s EntropyMetric, compared
    between the sets). 0 for identical sets."""
    a, b = _pair(real, fake, min_length=4)
    return float(np.abs(spectral_entropy(a).mean(0) - spectral_entropy(b).mean(0)).mean())


def marginal_gap(real: Any, fake: Any) -> float:
    """Mean over features of the 1-D Wasserstein-1 distance between the feature's values (all
    windows and steps pooled) in the two sets: the area between their empirical CDFs
    (``scipy.stats.wasserstein_distance``; sizes may differ). A shift of every value by c
    scores |c|; 0 for identical sets."""
    from scipy.stats import wasserstein_distance

    a, b = _pair(real, fake)
    d = a.shape[2]
    return float(np.mean([wasserstein_distance(a[..., k].ravel(), b[..., k].ravel())
                          for k in range(d)]))  # fmt: skip


# ------------------------------------------------------------------ privacy
def memorisation(fake: Any, train: Any, held_out: Any) -> dict[str, float]:
    """Does the generator copy its training windows? For each fake window the Euclidean
    distance (flattened) to its nearest training window, against the same distance of
    held-out real windows (never trained on): the medians and their ``ratio`` (about 1 for a
    generator that generalises, well below 1 for one that copies), and ``below_test_p5``, the
    fraction of fakes closer to a training window than 95% of the held-out windows are (about
    0.05 without copying) -- :func:`diffusio.metrics.memorisation`, the check behind DDPM's
    "not memorising" claim, and a distance-based cousin of Nikitin et al.'s privacy metric."""
    tr = _windows(train, "train")
    f, _ = _pair(fake, tr, names=("fake", "train"))
    h, _ = _pair(held_out, tr, names=("held_out", "train"))
    tr_t = torch.as_tensor(tr)
    test_d = nearest_distances(torch.as_tensor(h), tr_t)
    return _memorisation(torch.as_tensor(f), tr_t, test_d)


# ------------------------------------------------------------------ embedding figure
def _subsample(x: np.ndarray, max_points: int, rng: np.random.Generator) -> np.ndarray:
    if len(x) <= max_points:
        return x
    return x[np.sort(rng.choice(len(x), max_points, replace=False))]


def embed(real: Any, fake: Any, method: str = "pca", *, max_points: int = 1000,
          seed: int = 0) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """2-D coordinates (n_real, 2), (n_fake, 2) of the flattened windows, each set subsampled
    to at most ``max_points`` (from ``seed``). ``"pca"``: the real windows' first two principal
    axes (numpy SVD of the centred real windows), both sets projected on them; ``"tsne"``:
    scikit-learn's t-SNE (van der Maaten & Hinton 2008) of the pooled windows, PCA-initialised.
    TimeGAN's plots (Yoon et al. 2019, Fig. 3) use the same two methods, on each window's mean
    over features rather than on the whole window."""
    a, b = _pair(real, fake, min_count=2)
    if max_points < 2:
        raise ValueError(f"max_points must be >= 2, got {max_points}")
    rng = np.random.default_rng(seed)
    a = _subsample(a, max_points, rng).reshape(-1, a.shape[1] * a.shape[2])
    b = _subsample(b, max_points, rng).reshape(-1, a.shape[1])
    if method == "pca":
        mean = a.mean(0)
        _, _, vt = np.linalg.svd(a - mean, full_matrices=False)
        axes = vt[:2].T
        if axes.shape[1] < 2:  # one flattened dimension: the second coordinate is 0
            axes = np.pad(axes, ((0, 0), (0, 2 - axes.shape[1])))
        return (a - mean) @ axes, (b - mean) @ axes
    if method == "tsne":
        from sklearn.manifold import TSNE

        pool = np.concatenate([a, b])
        perplexity = float(min(30.0, (len(pool) - 1) / 3))
        xy = TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(pool)
        return xy[: len(a)], xy[len(a) :]
    raise ValueError(f"method must be 'pca' or 'tsne', got {method!r}")


def embedding_figure(real: Any, fake: Any, path: str | os.PathLike, method: str = "pca", *,
                     max_points: int = 1000, seed: int = 0, title: str | None = None,
                     labels: tuple[str, str] = ("real", "synthetic")) -> Path:  # fmt: skip
    """A scatter of :func:`embed`'s coordinates, real and synthetic in two colours (the
    qualitative check of TimeGAN and of Nikitin et al.'s visualisations), written atomically
    to ``path`` (PNG unless the suffix says otherwise) by :func:`diffusio.plotting.save_figure`.
    Returns the path."""
    xa, xb = embed(real, fake, method, max_points=max_points, seed=seed)
    fig = new_figure(4.5, 4.2)
    ax = fig.subplots()
    ax.scatter(xa[:, 0], xa[:, 1], s=4, alpha=0.4, color="C0", linewidths=0, label=labels[0])
    ax.scatter(xb[:, 0], xb[:, 1], s=4, alpha=0.4, color="C3", linewidths=0, label=labels[1])
    ax.set_title(title or f"{method.upper() if method == 'pca' else 't-SNE'} of the windows",
                 fontsize=10)  # fmt: skip
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=8, markerscale=3)
    fig.tight_layout()
    return save_figure(fig, path)
