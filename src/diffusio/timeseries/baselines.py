"""The imputation baselines of CSDI's comparison (Tashiro et al. 2021, arXiv:2107.03502, Sec. 6),
all behind one interface so that every method is scored by the same code.

An :class:`Imputer` is fitted on z-scored training windows ``(N, K, L)`` (missing entries 0) with
their bool ``observed`` mask, and draws ``samples (S, N, K, L)`` of new windows given a bool
``cond_mask``: entries with ``cond_mask`` True are returned exactly equal to ``windows``, the
others are draws from the method's predictive distribution (a deterministic method returns S
identical copies of its point estimate). Values outside ``cond_mask`` are never read, NaN
included; samples have the dtype and device of ``windows``.

* :class:`MeanImputer` -- per feature N(mean_k, std_k^2) of the observed training entries.
* :class:`InterpolationImputer` -- linear interpolation in time between the conditioned
  entries, with Gaussian noise whose scale is calibrated on held-out observed training entries
  as a function of the distance to the nearest conditioned entry.
* :class:`KalmanImputer` -- a linear-Gaussian state-space model fitted by EM (Shumway & Stoffer
  1982) and its exact joint posterior samples (Kalman filter, Rauch-Tung-Striebel 1965 smoother,
  forward filtering / backward sampling); :class:`OracleImputer` -- the same with the true
  system (simulated state-space data only): the exact posterior, a floor no method beats in
  expectation.
* :class:`DeterministicImputer` -- CSDI's backbone (:class:`~diffusio.nets.csdi.CSDINet`)
  trained to regress the targets with MSE: the "same network, deterministic" control.

The four classical baselines also give their Gaussian marginals, ``predictive(windows,
cond_mask) -> (mean, std)``, for a closed-form CRPS (:func:`~diffusio.metrics.probabilistic.
crps_gaussian`). Bad input raises a one-line ``ValueError``; sampling before ``fit`` raises
``RuntimeError``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from diffusio.nets.csdi import CSDINet
from diffusio.timeseries.statespace import (
    LinearGaussianSSM,
    fit_em,
    predictive,
    predictive_samples,
)
from diffusio.timeseries.windows import Normalizer, random_targets

__all__ = [
    "DeterministicImputer",
    "Imputer",
    "InterpolationImputer",
    "KalmanImputer",
    "MeanImputer",
    "OracleImputer",
    "check_windows",
    "linear_interpolation",
]


@runtime_checkable
class Imputer(Protocol):
    """What the scoring code needs of an imputation method.

    ``fit(windows, observed)`` learns from training windows (N, K, L), z-scored, missing entries
    0, with the bool mask of the observed entries, and returns the imputer;
    ``sample(windows, cond_mask, n_samples, generator)`` returns (S, N, K, L): the entries where
    ``cond_mask`` is True exactly as in ``windows``, the others drawn from the method's
    predictive distribution given those entries (S identical copies for a deterministic
    method), reproducibly for a given ``torch.Generator`` (None: torch's global generator).
    ``name`` labels the method in tables.
    """

    name: str

    def fit(self, windows: Tensor, observed: Tensor) -> Imputer: ...

    def sample(
        self,
        windows: Tensor,
        cond_mask: Tensor,
        n_samples: int,
        generator: torch.Generator | None = None,
    ) -> Tensor: ...


# -- input checks ------------------------------------------------------------------------------


def _describe(x: Any) -> str:
    shape = tuple(x.shape) if hasattr(x, "shape") else None
    return f"{type(x).__name__} {shape} {getattr(x, 'dtype', '')}".strip()


def check_windows(
    windows: Any, mask: Any, name: str = "cond_mask", within: Tensor | None = None
) -> None:
    """``ValueError`` (one line) unless ``windows`` is a floating torch tensor (N, K, L) and
    ``mask`` a bool tensor of its shape, ``windows`` is finite where ``mask`` is True, and (with
    ``within``, e.g. the observed mask) ``mask`` is a subset of ``within``."""
    if not isinstance(windows, Tensor) or windows.ndim != 3 or not windows.is_floating_point():
        raise ValueError(
            f"windows must be a float torch tensor (N windows, K features, L steps); "
            f"got {_describe(windows)}"
        )
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        raise ValueError(f"{name} must be a bool torch tensor; got {_describe(mask)}")
    if mask.shape != windows.shape:
        raise ValueError(
            f"{name} has shape {tuple(mask.shape)} but windows has {tuple(windows.shape)}"
        )
    bad = mask & ~torch.isfinite(windows)
    if bool(bad.any()):
        n, k, t = (int(i) for i in torch.nonzero(bad)[0])
        raise ValueError(f"windows has a non-finite value where {name} is True: window {n}, "
                         f"feature {k}, step {t}")  # fmt: skip
    if within is not None:
        if within.shape != mask.shape:
            raise ValueError(f"{name} {tuple(mask.shape)} vs {tuple(within.shape)}")
        outside = mask & ~within.to(torch.bool)
        if bool(outside.any()):
            n, k, t = (int(i) for i in torch.nonzero(outside)[0])
            raise ValueError(f"{name} includes an unobserved entry: window {n}, feature {k}, "
                             f"step {t}")  # fmt: skip


def _check_fit(windows: Any, observed: Any) -> Tensor:
    """The training windows with every unobserved entry set to 0."""
    check_windows(windows, observed, "observed")
    never = ~observed.any(dim=(0, 2))
    if bool(never.any()):
        raise ValueError(f"feature {int(torch.nonzero(never)[0])} has no observed training entry")
    return torch.where(observed, windows, 0.0)


def _check_sample(windows: Any, cond_mask: Any, n_samples: Any, features: int | None) -> None:
    if features is None:
        raise RuntimeError("the imputer is not fitted: call fit(windows, observed) first")
    check_windows(windows, cond_mask)
    if windows.shape[1] != features:
        raise ValueError(f"windows have {windows.shape[1]} features; the imputer was fitted on "
                         f"{features}")  # fmt: skip
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)):
        raise ValueError(f"n_samples must be an integer; got {n_samples!r}")
    if n_samples < 1:
        raise ValueError(f"n_samples must be at least 1; got {n_samples}")


def _finish(draws: Tensor, windows: Tensor, cond_mask: Tensor) -> Tensor:
    """Samples in the windows' dtype and device with the conditioned entries copied exactly."""
    draws = draws.to(windows.device, windows.dtype)
    return torch.where(cond_mask, windows, draws)


def _normal(shape: tuple[int, ...], generator: torch.Generator | None) -> Tensor:
    return torch.randn(shape, generator=generator, dtype=torch.float64)


def _numpy_seed(generator: torch.Generator | None) -> int:
    """A seed for numpy's generator, drawn from the torch generator (reproducible with it)."""
    return int(torch.randint(0, 2**62, (1,), generator=generator))


# -- per-feature mean --------------------------------------------------------------------------


class MeanImputer:
    """Per-feature Gaussian N(mean_k, std_k^2), the mean and (population, ddof 0) standard
    deviation of feature k's observed training entries; the simplest probabilistic reference
    (CSDI's "mean imputation" with its spread). Entries are independent: no use is made of the
    window's own values."""

    name = "mean"

    def __init__(self) -> None:
        self.mean: Tensor | None = None  # (K,) float64
        self.std: Tensor | None = None

    def fit(self, windows: Tensor, observed: Tensor) -> MeanImputer:
        x = _check_fit(windows, observed).to(torch.float64)
        count = observed.sum(dim=(0, 2))
        self.mean = x.sum(dim=(0, 2)) / count
        dev = torch.where(observed, x - self.mean[:, None], 0.0)
        self.std = (dev.square().sum(dim=(0, 2)) / count).sqrt()
        return self

    @property
    def _features(self) -> int | None:
        return None if self.mean is None else len(self.mean)

    def predictive(self, windows: Tensor, cond_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Gaussian marginals (mean, std), each (N, K, L) float64; std 0 on conditioned entries."""
        _check_sample(windows, cond_mask, 1, self._features)
        mean = self.mean[:, None].expand(windows.shape).to(windows.device)
        std = self.std[:, None].expand(windows.shape).to(windows.device)
        return torch.where(cond_mask, windows.double(), mean), torch.where(cond_mask, 0.0, std)

    def sample(self, windows: Tensor, cond_mask: Tensor, n_samples: int,
               generator: torch.Generator | None = None) -> Tensor:  # fmt: skip
        _check_sample(windows, cond_mask, n_samples, self._features)
        noise = _normal((n_samples, *windows.shape), generator)
        draws = self.mean[:, None] + self.std[:, None] * noise
        return _finish(draws, windows, cond_mask)


# -- linear interpolation ----------------------------------------------------------------------


def linear_interpolation(
    windows: Tensor, cond_mask: Tensor, fill: Tensor | float = 0.0
) -> tuple[Tensor, Tensor, Tensor]:
    """Per window and feature, linear interpolation in time between the conditioned entries,
    constant extrapolation before the first and after the last (``np.interp``'s rule), and
    ``fill`` (a scalar or one value per feature, (K,)) where the row has no conditioned entry.

    Returns ``(values, distance, two_sided)``, each (N, K, L): the interpolated values (float64,
    the windows' own values on conditioned entries), the distance in steps to the nearest
    conditioned entry of the row (long; 0 on conditioned entries, L on a row with none), and
    whether a conditioned entry lies on both sides (interpolation rather than extrapolation).
    """
    check_windows(windows, cond_mask)
    n, k, length = windows.shape
    x = torch.where(cond_mask, windows, 0.0).to(torch.float64)
    t = torch.arange(length, device=x.device).expand(n, k, length)
    prev = torch.where(cond_mask, t, -1).cummax(dim=-1).values
    nxt = torch.where(cond_mask, t, length).flip(-1).cummin(dim=-1).values.flip(-1)
    has_prev, has_next = prev >= 0, nxt < length
    v_prev = x.gather(-1, prev.clamp(min=0))
    v_next = x.gather(-1, nxt.clamp(max=length - 1))
    frac = (t - prev).to(torch.float64) / (nxt - prev).clamp(min=1)
    fill = torch.as_tensor(fill, dtype=torch.float64, device=x.device)
    fill = fill[:, None].expand(n, k, length) if fill.ndim == 1 else fill.expand(n, k, length)
    values = torch.where(has_next, v_next, fill)
    values = torch.where(has_prev, v_prev, values)
    values = torch.where(has_prev & has_next, v_prev + frac * (v_next - v_prev), values)
    far = torch.full_like(t, length)
    distance = torch.minimum(torch.where(has_prev, t - prev, far),
                             torch.where(has_next, nxt - t, far))  # fmt: skip
    return torch.where(cond_mask, x, values), distance, has_prev & has_next


def _bin_variances(count: np.ndarray, sq: np.ndarray, min_count: int) -> np.ndarray | None:
    """Per distance d = 0..D, the mean square of the residuals of its bin; bins are runs of
    consecutive distances from d = 1 up, each closed once it holds ``min_count`` residuals; the
    remainder at the largest distances joins the last bin. None when there is no residual."""
    total = count[1:].sum()
    if total == 0:
        return None
    out = np.zeros(len(count))
    bins: list[list[int]] = []
    run: list[int] = []
    for d in range(1, len(count)):
        run.append(d)
        if count[run].sum() >= min_count:
            bins.append(run)
            run = []
    if run:
        if bins:
            bins[-1].extend(run)
        else:
            bins.append(run)
    for b in bins:  # every bin holds a residual: only the last can fall short of min_count
        out[b] = sq[b].sum() / count[b].sum()
    return out


class InterpolationImputer:
    """Linear interpolation in time (:func:`linear_interpolation`; the feature's training mean
    on a row with no conditioned entry) plus independent Gaussian noise whose scale grows with
    the distance to the nearest conditioned entry, calibrated on held-out *observed* entries.

    Calibration (``fit``): ``rounds`` times, CSDI's random target mask (per window a fraction
    U(0, 1) of its observed entries, :func:`~diffusio.timeseries.windows.random_targets`) is
    hidden from the training windows, the rest interpolated, and the residuals at the hidden
    entries are tabulated per feature k, regime (interpolated between two conditioned entries,
    or extrapolated before the first / after the last one) and distance d = 1..L-1 in steps to
    the nearest conditioned entry. Consecutive distances
    are pooled into bins from d = 1 up until each holds ``min_count`` residuals (the rest of the
    tail joins the last bin), and the predictive std at (k, regime, d) is the root mean square
    residual of its bin (a second moment about 0, not about the residuals' mean, so a
    systematic interpolation error widens the band too). A (feature, regime) with no residual
    takes the table pooled over features; a row with no conditioned entry gets the feature's
    marginal N(mean, std^2), i.e. :class:`MeanImputer`. Distances beyond the training windows'
    L use the last bin.

    The noise is independent across entries: the marginals are calibrated, the joint is not
    (its energy score is not meant to be competitive).
    """

    name = "interpolation"

    def __init__(self, min_count: int = 200, rounds: int = 1, seed: int = 0) -> None:
        if min_count < 1 or rounds < 1:
            raise ValueError(f"min_count and rounds must be >= 1; got {min_count}, {rounds}")
        self.min_count, self.rounds, self.seed = int(min_count), int(rounds), int(seed)
        self.marginal = MeanImputer()
        self.std_table: Tensor | None = None  # (K, 2, L): [feature, two-sided?, distance]
        self.counts: Tensor | None = None  # residuals behind each (k, regime, d)

    def fit(self, windows: Tensor, observed: Tensor) -> InterpolationImputer:
        self.marginal.fit(windows, observed)
        x = torch.where(observed, windows, 0.0).to(torch.float64)
        n, k, length = x.shape
        generator = torch.Generator().manual_seed(self.seed)
        count = np.zeros((k, 2, length))
        sq = np.zeros((k, 2, length))
        feature = torch.arange(k)[None, :, None].expand(n, k, length)
        for _ in range(self.rounds):
            hidden = random_targets(observed.cpu(), generator).to(x.device)
            values, dist, two = linear_interpolation(x, observed & ~hidden, self.marginal.mean)
            use = hidden & (dist < length)  # rows with a conditioned entry left
            index = ((feature.to(x.device) * 2 + two.long()) * length + dist)[use].cpu()
            resid = (values - x)[use].cpu()
            size = k * 2 * length
            count += torch.bincount(index, minlength=size).reshape(k, 2, length).numpy()
            sq += torch.bincount(index, resid.square(), minlength=size).reshape(k, 2, length).numpy()
        table = np.zeros((k, 2, length))
        for r in (0, 1):
            pooled = _bin_variances(count[:, r].sum(0), sq[:, r].sum(0), self.min_count)
            for j in range(k):
                var = _bin_variances(count[j, r], sq[j, r], self.min_count)
                var = pooled if var is None else var
                table[j, r] = float(self.marginal.std[j]) ** 2 if var is None else var
        table[:, :, 0] = 0.0
        self.std_table = torch.as_tensor(np.sqrt(table))
        self.counts = torch.as_tensor(count)
        return self

    def predictive(self, windows: Tensor, cond_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Gaussian marginals (mean, std), each (N, K, L) float64; std 0 on conditioned entries."""
        features = None if self.std_table is None else self.std_table.shape[0]
        _check_sample(windows, cond_mask, 1, features)
        mean, dist, two = linear_interpolation(windows, cond_mask, self.marginal.mean)
        n, k, length = windows.shape
        table = self.std_table.to(windows.device)
        d = dist.clamp(max=table.shape[-1] - 1)
        feature = torch.arange(k, device=windows.device)[None, :, None].expand(n, k, length)
        std = table[feature, two.long(), d]
        marginal = self.marginal.std.to(windows.device)[None, :, None].expand(n, k, length)
        std = torch.where(dist >= length, marginal, std)
        return mean, torch.where(cond_mask, 0.0, std)

    def sample(self, windows: Tensor, cond_mask: Tensor, n_samples: int,
               generator: torch.Generator | None = None) -> Tensor:  # fmt: skip
        features = None if self.std_table is None else self.std_table.shape[0]
        _check_sample(windows, cond_mask, n_samples, features)
        mean, std = self.predictive(windows, cond_mask)
        noise = _normal((n_samples, *windows.shape), generator).to(mean.device)
        return _finish(mean + std * noise, windows, cond_mask)


# -- state-space models ------------------------------------------------------------------------


class OracleImputer:
    """Exact joint posterior samples of a *known* linear-Gaussian state-space model given the
    conditioned entries (forward filtering, backward sampling:
    :func:`~diffusio.timeseries.statespace.predictive_samples`): the oracle of simulated
    state-space data. ``normalizer``: the z-scoring applied to the windows, undone before the
    model is used and redone on the samples (the model lives in the data's own units);
    None when the windows are in the model's units. ``fit`` only checks the windows."""

    name = "oracle"

    def __init__(self, ssm: LinearGaussianSSM, normalizer: Normalizer | None = None) -> None:
        if not isinstance(ssm, LinearGaussianSSM):
            raise ValueError(f"ssm must be a LinearGaussianSSM; got {type(ssm).__name__}")
        if normalizer is not None and len(normalizer.mean) != ssm.features:
            raise ValueError(f"the normalizer has {len(normalizer.mean)} features, the model "
                             f"{ssm.features}")  # fmt: skip
        self.ssm: LinearGaussianSSM | None = ssm
        self.normalizer = normalizer

    @property
    def _features(self) -> int | None:
        return None if self.ssm is None else self.ssm.features

    def fit(self, windows: Tensor, observed: Tensor) -> OracleImputer:
        _check_fit(windows, observed)
        if windows.shape[1] != self.ssm.features:
            raise ValueError(f"windows have {windows.shape[1]} features; the model has "
                             f"{self.ssm.features}")  # fmt: skip
        return self

    def _raw(self, windows: Tensor, cond_mask: Tensor) -> np.ndarray:
        x = torch.where(cond_mask, windows, 0.0).detach().cpu().to(torch.float64)
        if self.normalizer is not None:
            x = self.normalizer.inverse(x)
        return x.numpy()

    def predictive(self, windows: Tensor, cond_mask: Tensor) -> tuple[Tensor, Tensor]:
        """The exact Gaussian marginals (mean, std), each (N, K, L) float64 on the CPU (std 0 on
        conditioned entries): :func:`~diffusio.timeseries.statespace.predictive`."""
        _check_sample(windows, cond_mask, 1, self._features)
        mean, var = predictive(self.ssm, self._raw(windows, cond_mask), cond_mask.cpu().numpy())
        mean, std = torch.as_tensor(mean), torch.as_tensor(np.sqrt(var))
        if self.normalizer is not None:
            mean, std = self.normalizer.transform(mean), std / self.normalizer.std[:, None]
        cond = cond_mask.cpu()
        return torch.where(cond, windows.cpu().double(), mean), torch.where(cond, 0.0, std)

    def sample(self, windows: Tensor, cond_mask: Tensor, n_samples: int,
               generator: torch.Generator | None = None) -> Tensor:  # fmt: skip
        _check_sample(windows, cond_mask, n_samples, self._features)
        rng = np.random.default_rng(_numpy_seed(generator))
        draws = predictive_samples(self.ssm, self._raw(windows, cond_mask),
                                   cond_mask.cpu().numpy(), n_samples, rng)  # fmt: skip
        draws = torch.as_tensor(draws)
        if self.normalizer is not None:
            draws = self.normalizer.transform(draws)
        return _finish(draws, windows, cond_mask)


class KalmanImputer(OracleImputer):
    """The classical, strong baseline: a linear-Gaussian state-space model with ``latent``
    states, every parameter (A, Q, C, diagonal R, m0, P0) fitted by ``iterations`` of EM on the
    observed training entries (Shumway & Stoffer 1982; :func:`~diffusio.timeseries.statespace.
    fit_em`, started from PCA with ``seed``), then the exact joint posterior of the fitted
    model, as :class:`OracleImputer`. ``log_likelihoods`` records EM's progress."""

    name = "kalman-em"

    def __init__(self, latent: int = 4, iterations: int = 50, seed: int = 0) -> None:
        if latent < 1 or iterations < 0:
            raise ValueError(f"latent must be >= 1 and iterations >= 0; got {latent}, "
                             f"{iterations}")  # fmt: skip
        self.latent, self.iterations, self.seed = int(latent), int(iterations), int(seed)
        self.ssm = None
        self.normalizer = None
        self.log_likelihoods: list[float] = []

    def fit(self, windows: Tensor, observed: Tensor) -> KalmanImputer:
        x = _check_fit(windows, observed).detach().cpu().to(torch.float64).numpy()
        self.ssm, self.log_likelihoods = fit_em(x, observed.cpu().numpy(), self.latent,
                                                self.iterations, seed=self.seed)  # fmt: skip
        return self


# -- the deterministic backbone ----------------------------------------------------------------


class DeterministicImputer:
    """CSDI's network trained deterministically: the "same backbone, MSE" control.

    The conditional :class:`~diffusio.nets.csdi.CSDINet` (``net_options`` passed on; the
    paper's sizes by default) gets the conditioning values and mask as in CSDI, its x_t channel
    set to 0 and a fixed diffusion time t = 1 (the last, pure-noise step of the 50-step table:
    with no x_t to read, the network is in the situation of the noisiest step, where the
    conditioning is all it has; the step embedding is then a constant the biases absorb). Its
    output is read as the imputed values themselves, trained by MSE on the targets only, with
    CSDI's self-supervised random targets (:func:`~diffusio.timeseries.windows.random_targets`:
    per window a fraction U(0, 1) of the observed entries held out), AdamW (``lr``,
    ``weight_decay``) on batches of ``batch_size`` windows (epochs of a random permutation), the
    learning rate times 0.1 at the fractions ``lr_milestones`` of ``steps`` (CSDI's recipe,
    75% and 90%). Deterministic given ``seed`` (initialisation, batches, targets and dropout;
    the global RNG state is restored afterwards). ``losses`` holds each step's batch loss.
    Sampling returns S identical copies of the point estimate (the network in eval mode).
    """

    name = "deterministic"
    time = 1.0  # the fixed diffusion time fed to the step embedding

    def __init__(
        self,
        steps: int = 2000,
        batch_size: int = 16,
        lr: float = 1e-3,
        weight_decay: float = 1e-6,
        net_options: dict[str, Any] | None = None,
        seed: int = 0,
        progress: bool = False,
        lr_milestones: Sequence[float] = (0.75, 0.9),
        device: str | torch.device = "cpu",
    ) -> None:
        if steps < 1 or batch_size < 1 or not lr > 0:
            raise ValueError(f"need steps >= 1, batch_size >= 1 and lr > 0; got {steps}, "
                             f"{batch_size}, {lr}")  # fmt: skip
        self.steps, self.batch_size, self.lr = int(steps), int(batch_size), float(lr)
        self.weight_decay, self.seed, self.progress = float(weight_decay), int(seed), progress
        self.net_options = dict(net_options or {})
        self.net_options.setdefault("conditional", True)
        if not self.net_options["conditional"]:
            raise ValueError("DeterministicImputer needs the conditional network")
        self.lr_milestones = tuple(lr_milestones)
        self.device = torch.device(device)
        self.net: CSDINet | None = None
        self.losses: list[float] = []

    def _predict(self, x: Tensor, cond: Tensor) -> Tensor:
        t = torch.full((x.shape[0],), self.time, dtype=x.dtype, device=x.device)
        return self.net(torch.zeros_like(x), t, observed=x, cond_mask=cond)

    def _steps(self) -> Iterable[int]:
        if not self.progress:
            return range(self.steps)
        from tqdm.auto import tqdm

        return tqdm(range(self.steps), desc=f"{self.name} imputer", leave=False)

    def fit(self, windows: Tensor, observed: Tensor) -> DeterministicImputer:
        x = _check_fit(windows, observed).detach().to(self.device, torch.float32)
        observed = observed.to(self.device)
        n = x.shape[0]
        batch = min(self.batch_size, n)
        generator = torch.Generator().manual_seed(self.seed)
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed)  # initialisation and dropout
            self.net = CSDINet(x.shape[1], **self.net_options).to(self.device)
            self.net.train()
            opt = torch.optim.AdamW(self.net.parameters(), lr=self.lr,
                                    weight_decay=self.weight_decay)  # fmt: skip
            marks = sorted(max(1, int(m * self.steps)) for m in self.lr_milestones)
            schedule = torch.optim.lr_scheduler.MultiStepLR(opt, marks, gamma=0.1)
            order, pos = torch.randperm(n, generator=generator), 0
            self.losses = []
            for _ in self._steps():
                if pos + batch > n:
                    order, pos = torch.randperm(n, generator=generator), 0
                idx = order[pos : pos + batch].to(self.device)
                pos += batch
                xb, ob = x[idx], observed[idx]
                targets = random_targets(ob.cpu(), generator).to(self.device)
                pred = self._predict(xb, ob & ~targets)
                w = targets.to(pred.dtype)
                loss = ((pred - xb).square() * w).sum() / w.sum().clamp(min=1.0)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                schedule.step()
                self.losses.append(float(loss.detach()))
        self.net.eval()
        return self

    @torch.no_grad()
    def predict(self, windows: Tensor, cond_mask: Tensor, chunk: int = 256) -> Tensor:
        """The point estimate (N, K, L) in the windows' dtype and device (conditioned entries
        exact), computed in chunks of ``chunk`` windows."""
        _check_sample(windows, cond_mask, 1, None if self.net is None else self.net.n_features)
        x = torch.where(cond_mask, windows, 0.0).to(self.device, torch.float32)
        cond = cond_mask.to(self.device)
        self.net.eval()
        parts = [self._predict(x[i : i + chunk], cond[i : i + chunk])
                 for i in range(0, x.shape[0], chunk)]  # fmt: skip
        return _finish(torch.cat(parts), windows, cond_mask)

    def sample(self, windows: Tensor, cond_mask: Tensor, n_samples: int,
               generator: torch.Generator | None = None) -> Tensor:  # fmt: skip
        _check_sample(windows, cond_mask, n_samples,
                      None if self.net is None else self.net.n_features)  # fmt: skip
        point = self.predict(windows, cond_mask)
        return point.unsqueeze(0).expand(n_samples, *point.shape).clone()
