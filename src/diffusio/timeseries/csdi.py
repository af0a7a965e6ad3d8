"""CSDI on the platform: self-supervised conditional training, batched imputation, and the exact
Gaussian-window oracle (Tashiro et al. 2021, "CSDI: Conditional Score-based Diffusion Models for
Probabilistic Time Series Imputation", arXiv:2107.03502).

Training (Sec. 3.3, Alg. 1). The rows of a :func:`training_set` are windows x0 (N, K, L) with
missing entries 0 and their *observed* mask carried as the loss mask of the batch contract. For
every batch the :class:`CSDITargets` transform draws, from the trainer's batch generator (so a
resumed run replays it exactly), the imputation targets among the observed entries
(:func:`~diffusio.timeseries.windows.target_mask`: random, historical, mix, forecast); the
network is conditioned on the rest, ``cond_mask = observed & ~targets``, through the two keys
:class:`~diffusio.nets.csdi.CSDINet` takes, ``observed = cond_mask * x0`` and ``cond_mask``, and
the eps-loss is taken on the targets only (the loss mask becomes ``targets``). No other key
reaches the network and no NaN enters it (missing entries are 0 and masked out).

The recipe (:func:`csdi_config`, :data:`CSDI_DEFAULTS`): the 50-step "quad" schedule
``beta = linspace(sqrt(1e-4), sqrt(0.5), 50)^2`` (diffusio's ``vp-quadratic``, the identical
table), eps prediction, times uniform over the 50 table steps (the official ``randint(0, 50)``),
batch 16, learning rate 1e-3 with weight decay 1e-6 as the official ``base.yaml``, no gradient
clipping, no warm-up. Three deviations, all the platform's and all overridable: AdamW
(decoupled decay; at 1e-6 practically Adam's L2); a cosine decay of the rate where the official
MultiStepLR multiplies it by 0.1 at 75% and 90% of training (the trainer has no milestone
schedule; both anneal the rate over the last quarter); an EMA of the weights (0.999 with
warm-up; the official code evaluates the last weights). The eps-loss is each window's mean over
its targets, then the batch mean (the batch contract); the official code pools the squared
errors of the whole batch before dividing by its number of targets.

Imputation (:func:`impute`): all S samples of many windows in large batches through
:func:`diffusio.core.samplers.sample` (the official code draws one sample at a time in a Python
loop), with any diffusio sampler: ancestral 50 steps as the paper, DDIM or DPM-Solver++ with
fewer. The observed entries are returned exactly. An unconditional network (the paper's
ablation) gets them imposed at every step by :class:`~diffusio.core.steering.Inpaint`
(replacement: re-noised to the current level). Even with an exact denoiser the samplers are not
exact on this short, coarse table: on the state-space windows of tests/test_csdi.py, which
computes their output distributions in closed form, ancestral-50 (posterior variance
beta-tilde) gives 0.85-0.88 of the exact posterior variances, DPM-Solver++ 1.03-1.12 at 10
steps and 1.000-1.003 at 50, and replacement with the exact unconditional model misplaces the
means by up to 0.6 posterior standard deviations.

The exact answer first (:class:`GaussianWindowOracle`): for windows ``y ~ N(mu, S)`` -- e.g. a
linear-Gaussian state-space model's window (:func:`window_moments`) -- the exact eps of the
noised targets given the conditioned entries is a Gaussian conditional in closed form at every
noise level, so :func:`impute` with this oracle samples the exact posterior up to the sampler's
discretisation (tests/test_csdi.py compares it with the Kalman/RTS smoother's predictive).
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..core.model import DiffusionModel
from ..core.processes import Process
from ..data.batch import Batch, TrainingSet
from ..io import read_json, write_json_atomic
from .windows import target_mask

__all__ = [
    "CSDI_DEFAULTS",
    "CSDI_FORMAT",
    "CSDI_STRATEGIES",
    "CSDITargets",
    "GaussianWindowOracle",
    "csdi_config",
    "impute",
    "load_csdi_run",
    "train_csdi",
    "training_set",
    "window_moments",
]

#: The training-target strategies of :class:`CSDITargets` (Sec. 3.3 and App. B.1).
CSDI_STRATEGIES = ("random", "historical", "mix", "forecast")

#: The ``format`` tag of the ``csdi.json`` file :func:`train_csdi` writes into a run directory.
CSDI_FORMAT = "diffusio-csdi"

#: Shared defaults of a CSDI training config (:func:`csdi_config` overrides them): the official
#: ``config/base.yaml`` on diffusio's trainer (module docstring for the two deviations).
CSDI_DEFAULTS: dict[str, Any] = {
    "data": "timeseries-windows",  # a label: the windows come as a TrainingSet
    "n_data": None,
    "normalize": False,  # windows arrive z-scored (timeseries.windows.Normalizer)
    "process": "vp-quadratic",
    "process_options": {"beta_start": 1e-4, "beta_end": 0.5, "num_steps": 50},
    "prediction": "eps",
    "weighting": "simple",  # mean squared eps error over the targets (the loss mask)
    "time_distribution": "discrete",  # uniform over the 50 table steps
    "net": "csdi",
    "batch_size": 16,
    "lr": 1e-3,
    "weight_decay": 1e-6,
    "warmup": 0,
    "lr_decay": "cosine",
    "grad_clip": 0.0,
    "ema_decay": 0.999,
    "ema_warmup": True,
    "log_every": 25,
    "save_every": 500,
    "keep": 2,
}


# -- the batch transform -----------------------------------------------------------------------


class CSDITargets:
    """CSDI's self-supervised training batch (Sec. 3.3, Alg. 1), a batch
    :data:`~diffusio.data.batch.Transform`.

    In: a batch whose loss mask is the *observed* mask (1 = present) of windows ``x0``
    (N, K, L; missing entries 0). Out: the same ``x0``, ``cond = {"observed": cond_mask * x0,
    "cond_mask": cond_mask}`` (CSDINet's two condition keys, plus the input batch's
    ``timestamps`` if it has them; any other key is dropped, so nothing else reaches the
    network) and the loss mask ``targets``, with
    ``targets`` drawn by ``strategy`` among the observed entries from the trainer's
    ``generator`` only and ``cond_mask = observed & ~targets``.

    Args:
        strategy: ``random`` (a ratio ~ U(0, 1) of each window's observed entries), ``historical``
            (another window's missing pattern), ``mix`` (either, 50/50), ``forecast`` (the
            observed entries of the last ``horizon`` steps).
        horizon: forecast steps (``forecast``, and ``forecast_fraction > 0``).
        pool_observed: (M, K, L) bool masks the historical strategy borrows patterns from (the
            training windows'; the official pm25 code's ``hist_mask``); None: another window of
            the same batch (the official healthcare code).
        forecast_fraction: the probability that a window gets forecast targets instead of the
            strategy's (trains one model for imputation and forecasting; 0 = never).
    """

    def __init__(
        self,
        strategy: str = "random",
        horizon: int | None = None,
        pool_observed: Tensor | None = None,
        forecast_fraction: float = 0.0,
    ):
        if strategy not in CSDI_STRATEGIES:
            raise ValueError(
                f"unknown CSDI target strategy {strategy!r}; one of {', '.join(CSDI_STRATEGIES)}"
            )
        if not 0.0 <= forecast_fraction <= 1.0:
            raise ValueError(f"forecast_fraction must lie in [0, 1]; got {forecast_fraction}")
        if (strategy == "forecast" or forecast_fraction > 0) and (horizon is None or horizon < 1):
            raise ValueError(f"forecast targets need a horizon >= 1; got {horizon}")
        if pool_observed is not None:
            pool_observed = torch.as_tensor(pool_observed).bool().cpu()
        self.strategy, self.horizon = strategy, horizon
        self.pool_observed, self.forecast_fraction = pool_observed, float(forecast_fraction)

    def targets(self, observed: Tensor, generator: torch.Generator) -> Tensor:
        """The (N, K, L) bool targets of one batch (a subset of ``observed``)."""
        if self.strategy == "forecast":
            return target_mask("forecast", observed, horizon=self.horizon)
        targets = target_mask(self.strategy, observed, generator,
                              pool_observed=self.pool_observed)  # fmt: skip
        if self.forecast_fraction > 0:
            device = generator.device
            coin = torch.rand(observed.shape[0], generator=generator, device=device)
            forecast = target_mask("forecast", observed, horizon=self.horizon)
            use = (coin < self.forecast_fraction).to(observed.device)[:, None, None]
            targets = torch.where(use, forecast, targets)
        return targets

    def __call__(self, batch: Batch, generator: torch.Generator) -> Batch:
        x0 = batch.x0
        if x0.dim() != 3:
            raise ValueError(f"CSDITargets expects windows (N, K, L); got {tuple(x0.shape)}")
        if batch.mask is None:
            raise ValueError("CSDITargets needs the observed mask as the batch's loss mask")
        observed = batch.mask > 0
        targets = self.targets(observed, generator)
        cond_mask = (observed & ~targets).to(x0.dtype)
        clean = torch.where(observed, x0, torch.zeros_like(x0))  # no NaN reaches the network
        cond = {"observed": cond_mask * clean, "cond_mask": cond_mask}
        if "timestamps" in batch.cond:  # the one other key CSDINet takes
            cond["timestamps"] = batch.cond["timestamps"]
        return batch.replace(x0=clean, cond=cond, mask=targets.to(x0.dtype))

    def __repr__(self) -> str:
        extra = f", horizon={self.horizon}" if self.horizon else ""
        if self.forecast_fraction:
            extra += f", forecast_fraction={self.forecast_fraction}"
        return f"CSDITargets({self.strategy!r}{extra})"


def _check_windows(windows: Any, observed: Any) -> tuple[Tensor, Tensor]:
    """Windows (N, K, L) float and a bool observed mask of the same shape; unobserved entries
    set to 0 (NaN allowed there), observed ones must be finite."""
    x = torch.as_tensor(windows)
    m = torch.as_tensor(observed)
    if x.dim() != 3 or m.shape != x.shape:
        raise ValueError(
            f"windows must be (N, K, L) with an observed mask of the same shape; got "
            f"{tuple(x.shape)} and {tuple(m.shape)}"
        )
    if m.dtype != torch.bool:
        m = m != 0
    x = x if x.is_floating_point() else x.to(torch.float64)
    if not bool(torch.isfinite(torch.where(m, x, 0.0)).all()):
        n, k, t = (int(i) for i in torch.nonzero(m & ~torch.isfinite(x))[0])
        raise ValueError(f"window {n}, feature {k}, step {t} is observed but not finite")
    return torch.where(m, x, 0.0), m


def training_set(
    windows: Any,
    observed: Any,
    strategy: str = "random",
    *,
    horizon: int | None = None,
    forecast_fraction: float = 0.0,
    historical_pool: bool = True,
) -> TrainingSet:
    """CSDI's training data under the batch contract: rows ``x0`` = the windows (float32,
    missing entries 0), loss mask = the observed mask, one :class:`CSDITargets` transform
    (``historical_pool``: the historical strategy borrows patterns from all training windows,
    else from the batch) and ``net_options = {"n_features": K}``."""
    x, m = _check_windows(windows, observed)
    pool = m if historical_pool and strategy in ("historical", "mix") else None
    transform = CSDITargets(strategy, horizon, pool, forecast_fraction)
    return TrainingSet(
        x.to(torch.float32), mask=m.to(torch.float32), transforms=[transform],
        net_options={"n_features": int(x.shape[1])},
    )  # fmt: skip


# -- the config and training -------------------------------------------------------------------


def csdi_config(
    n_features: int | None = None,
    *,
    steps: int,
    net_options: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> Any:
    """The :class:`~diffusio.train.config.TrainConfig` of a CSDI run: :data:`CSDI_DEFAULTS`
    with ``steps``, ``net_options`` (CSDINet's; ``n_features`` is filled in from the data when
    not given) and any other config field in ``overrides``."""
    from ..train.config import TrainConfig

    values = copy.deepcopy(CSDI_DEFAULTS)
    options = dict(net_options or {})
    if n_features is not None:
        options.setdefault("n_features", int(n_features))
    values.update(steps=int(steps), net_options=options, description="csdi")
    values.update(overrides)
    return TrainConfig.from_dict(values)


def train_csdi(
    windows: Any,
    observed: Any,
    out_dir: str | os.PathLike,
    *,
    steps: int,
    strategy: str = "random",
    horizon: int | None = None,
    forecast_fraction: float = 0.0,
    net_options: Mapping[str, Any] | None = None,
    seed: int = 0,
    progress: bool = True,
    resume: bool = False,
    metadata: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> tuple[DiffusionModel, dict[str, Any]]:
    """Train CSDI (Alg. 1) on windows (N, K, L) with their observed mask into ``out_dir``
    through diffusio's :class:`~diffusio.train.trainer.Trainer` (checkpoints, exact resume with
    ``resume=True``, EMA). ``net_options={"conditional": False}`` trains the unconditional
    ablation (same targets, the network sees x_t alone). ``overrides`` are config fields
    (:func:`csdi_config`). Also writes ``out_dir/csdi.json`` (window shape, strategy and
    ``metadata``, e.g. the normalizer; :func:`load_csdi_run` reads it back).

    Returns ``(model, summary)``: the EMA model in eval mode on the CPU and the trainer's
    summary (``step``, ``loss``, ``seconds``, ...)."""
    from ..train.trainer import Trainer

    data = training_set(windows, observed, strategy, horizon=horizon,
                        forecast_fraction=forecast_fraction)  # fmt: skip
    k, length = data.x0.shape[1:]
    config = csdi_config(k, steps=steps, net_options=net_options, seed=seed, **overrides)
    trainer = Trainer(config, out_dir, data=data, progress=progress)
    summary = trainer.fit(resume=resume)
    if trainer.is_main:
        info = {
            "format": CSDI_FORMAT, "version": 1, "n_features": int(k), "window": int(length),
            "strategy": strategy, "horizon": horizon, "forecast_fraction": forecast_fraction,
            "train_windows": len(data), **dict(metadata or {}),
        }  # fmt: skip
        write_json_atomic(Path(out_dir) / "csdi.json", info)
    return trainer.ema.module.to("cpu").eval(), summary


def load_csdi_run(run_dir: str | os.PathLike) -> tuple[DiffusionModel, dict[str, Any]]:
    """A trained CSDI run: ``(model, info)`` with the EMA model (eval, CPU) and the run's
    ``csdi.json`` (``n_features``, ``window``, ...; ``{}`` when the run has none, e.g. one
    trained by ``diffusio train``). ``ValueError`` (one line) when the directory is not a run
    or its network is not a CSDINet; ``FileNotFoundError`` when it does not exist."""
    from ..nets.csdi import CSDINet
    from ..train.runs import load_run

    model, _, _ = load_run(run_dir)
    if not isinstance(model.net, CSDINet):
        raise ValueError(
            f"{run_dir}: the run's network is {type(model.net).__name__}, not a CSDINet"
        )
    path = Path(run_dir) / "csdi.json"
    info: dict[str, Any] = {}
    if path.is_file():
        info = read_json(path)
        if not isinstance(info, dict) or info.get("format") != CSDI_FORMAT:
            raise ValueError(f"{path}: not a diffusio CSDI run description")
    info.setdefault("n_features", model.net.n_features)
    return model, info


# -- imputation --------------------------------------------------------------------------------


def _default_batch_size(k: int, length: int) -> int:
    """Rows per sampler call: about 65,536 tokens (K L per row), whatever the window."""
    return max(1, 65_536 // max(1, k * length))


def impute(
    model: DiffusionModel,
    windows: Any,
    cond_mask: Any,
    *,
    n_samples: int,
    sampler: str = "ddpm",
    steps: int | None = 50,
    batch_size: int | None = None,
    seed: int = 0,
    conditional: bool | None = None,
    progress: bool = False,
    **options: Any,
) -> Tensor:
    """``n_samples`` imputations of every window: (S, N, K, L) in ``windows``' dtype.

    ``windows`` (N, K, L), with ``cond_mask`` (N, K, L; 1 = condition on this entry, whose value
    is then returned exactly; entries outside it may hold anything, NaN included). The S x N
    rows (sample-major: row ``s N + n``) are drawn in batches of ``batch_size`` (default about
    65,536 tokens) with ``sampler`` and ``steps`` (:func:`diffusio.core.samplers.sample`;
    ``ddpm`` with 50 steps is the paper's ancestral sampler on the 50-step table, ``ddim`` /
    ``dpm-solver++`` take fewer; ``options`` go to the sampler). ``conditional`` (default: the
    network's ``conditional`` attribute, else True) feeds ``observed = cond_mask * windows`` and
    ``cond_mask`` to the network; otherwise the observed entries are imposed at every step by
    :class:`~diffusio.core.steering.Inpaint` (the paper's unconditional ablation).
    Reproducible: the same ``seed`` and ``batch_size`` give the same samples. ``progress``: a
    tqdm bar over the batches.
    """
    from tqdm.auto import tqdm

    from ..core.samplers import SAMPLERS, sample
    from ..core.steering import Inpaint

    if isinstance(n_samples, bool) or int(n_samples) != n_samples or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer; got {n_samples!r}")
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; valid: {', '.join(SAMPLERS)}")
    if steps is not None and steps < 1:
        raise ValueError(f"steps must be at least 1; got {steps}")
    x = torch.as_tensor(windows)
    x = x if x.is_floating_point() else x.to(torch.float64)
    mask = torch.as_tensor(cond_mask)
    if x.dim() != 3 or mask.shape != x.shape:
        raise ValueError(
            f"windows must be (N, K, L) with a cond_mask of the same shape; got "
            f"{tuple(x.shape)} and {tuple(mask.shape)}"
        )
    mask = mask != 0
    known = torch.where(mask, x, torch.zeros_like(x))
    if not bool(torch.isfinite(known).all()):
        raise ValueError("impute: a conditioned entry is NaN or infinite")
    if conditional is None:
        conditional = bool(getattr(model.net, "conditional", True))
    n, k, length = x.shape
    n_samples = int(n_samples)
    rows = n * n_samples
    size = _default_batch_size(k, length) if batch_size is None else int(batch_size)
    if size < 1:
        raise ValueError(f"batch_size must be positive; got {batch_size}")
    dtype, device = model.dtype, model.device
    known_m = known.to(device, dtype)
    mask_m = mask.to(device, dtype)
    n_batches = math.ceil(rows / size)
    seeds = torch.randint(2**62, (n_batches,), generator=torch.Generator().manual_seed(seed))
    sampler_steps = None if steps is None else int(steps)
    out = torch.empty((rows, k, length), dtype=dtype)
    was_training = model.training
    model.eval()
    try:
        for b in tqdm(range(n_batches), desc="imputing", disable=not progress, leave=False):
            lo, hi = b * size, min(rows, (b + 1) * size)
            index = torch.arange(lo, hi, device=device) % n  # sample-major rows
            obs, cm = known_m[index], mask_m[index]
            if conditional:
                kwargs: dict[str, Any] = {"cond": {"observed": obs * cm, "cond_mask": cm}}
            else:
                kwargs = {"constraints": [Inpaint(obs, cm)]}
            with torch.no_grad():
                draw = sample(model, (hi - lo, k, length), sampler, sampler_steps,
                              seed=int(seeds[b]), **kwargs, **options)  # fmt: skip
            out[lo:hi] = draw.detach().to("cpu", dtype)
    finally:
        model.train(was_training)
    out = out.reshape(n_samples, n, k, length).to(x.dtype)
    return torch.where(mask.to(out.device), known.to(out), out)


# -- the exact oracle --------------------------------------------------------------------------


def window_moments(ssm: Any, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean (K L,) and dense covariance (K L, K L) of one window of ``length`` steps of a
    :class:`~diffusio.timeseries.statespace.LinearGaussianSSM`, flattened feature-major (entry
    ``k L + l`` is feature k at step l, the order of ``x.reshape(N, K * L)``).

    With P_t = Cov(x_t) (P_0 = P0, P_{t+1} = A P_t A^T + Q) and mean m_t = A^t m0:
    Cov(x_t, x_s) = A^(t-s) P_s for t >= s, so Cov(y_t, y_s) = C A^(t-s) P_s C^T + [t = s] diag(R)
    and E[y_t] = C m_t. For a stationary model (P0 = A P0 A^T + Q, as
    :func:`~diffusio.timeseries.statespace.default_ssm`) this is C A^|t-s| P0 C^T + diag(R).
    """
    if length < 1:
        raise ValueError(f"length must be at least 1; got {length}")
    A, Q, C, R = ssm.A, ssm.Q, ssm.C, ssm.R
    k, d = C.shape
    means = [np.asarray(ssm.m0, dtype=np.float64)]
    covs = [np.asarray(ssm.P0, dtype=np.float64)]
    for _ in range(length - 1):
        means.append(A @ means[-1])
        covs.append(A @ covs[-1] @ A.T + Q)
    cross = np.empty((length, length, k, k))  # cross[t, s] = Cov(y_t, y_s)
    for s in range(length):
        block = covs[s]
        for t in range(s, length):
            cross[t, s] = C @ block @ C.T
            cross[s, t] = cross[t, s].T
            block = A @ block
        cross[s, s] = cross[s, s] + np.diag(R)
    cov = cross.transpose(2, 0, 3, 1).reshape(k * length, k * length)  # (k, t, j, s)
    mean = (np.stack(means) @ C.T).T.reshape(-1)  # (K, L) feature-major
    return mean, 0.5 * (cov + cov.T)


class GaussianWindowOracle(nn.Module):
    """The exact eps-network of windows ``y ~ N(mean, cov)`` (flattened feature-major, (K L,)
    and (K L, K L)) under ``process``, with CSDINet's call signature
    ``net(x_t, t, *, observed, cond_mask, timestamps=None)``.

    Conditional (CSDI's model): with the conditioned entries c (``cond_mask``) known, the
    targets u are y_u | y_c ~ N(m, Sigma), m = mu_u + S_uc S_cc^-1 (y_c - mu_c),
    Sigma = S_uu - S_uc S_cc^-1 S_cu, so x_u = a y_u + s eps_u ~ N(a m, a^2 Sigma + s^2 I) and
    E[eps_u | x_u, y_c] = s (a^2 Sigma + s^2 I)^-1 (x_u - a m) (Tweedie), with a, s = alpha(t),
    sigma(t). At a conditioned entry y is known, so eps_c = (x_c - a y_c) / s exactly (its x0
    estimate is y_c). ``conditional=False``: the unconditional eps
    s (a^2 S + s^2 I)^-1 (x - a mu) of the joint (the ablation's network, for Inpaint).

    Rows sharing a mask share one eigendecomposition of Sigma (cached), so S samples of a few
    windows cost one factorisation per window. Float64 throughout.
    """

    def __init__(
        self,
        mean: Any,
        cov: Any,
        n_features: int,
        length: int,
        process: Process,
        conditional: bool = True,
    ):
        super().__init__()
        mean = torch.as_tensor(mean, dtype=torch.float64).reshape(-1)
        cov = torch.as_tensor(cov, dtype=torch.float64)
        d = int(n_features) * int(length)
        if mean.shape != (d,) or cov.shape != (d, d):
            raise ValueError(
                f"mean {tuple(mean.shape)} and cov {tuple(cov.shape)} must be ({d},) and "
                f"({d}, {d}) for {n_features} features x {length} steps"
            )
        self.n_features, self.length = int(n_features), int(length)
        self.process, self.conditional = process, bool(conditional)
        self.mean, self.cov = mean, 0.5 * (cov + cov.T)
        self._factors: dict[bytes, tuple[Tensor, ...]] = {}
        self.register_buffer("_dtype_marker", torch.zeros((), dtype=torch.float64),
                             persistent=False)  # fmt: skip

    def _factor(self, c: Tensor) -> tuple[Tensor, ...]:
        """(u, cidx, gain, V, lam) of conditioning on the entries ``c`` (bool (D,))."""
        key = c.cpu().numpy().tobytes()
        if key not in self._factors:
            u, ci = torch.nonzero(~c)[:, 0], torch.nonzero(c)[:, 0]
            S = self.cov
            Suu, Suc, Scc = S[u][:, u], S[u][:, ci], S[ci][:, ci]
            if len(ci):
                chol = torch.linalg.cholesky(Scc)
                gain = torch.cholesky_solve(Suc.T, chol).T  # S_uc S_cc^-1
                sigma = Suu - gain @ Suc.T
            else:
                gain, sigma = Suc, Suu
            lam, V = torch.linalg.eigh(0.5 * (sigma + sigma.T))
            self._factors[key] = (u, ci, gain, V, lam.clamp_min(0.0))
        return self._factors[key]

    def forward(
        self, x: Tensor, t: Tensor, *, observed: Tensor | None = None,
        cond_mask: Tensor | None = None, timestamps: Tensor | None = None,
    ) -> Tensor:  # fmt: skip
        n = x.shape[0]
        if x.shape[1:] != (self.n_features, self.length):
            raise ValueError(f"oracle expects (N, {self.n_features}, {self.length}); got "
                             f"{tuple(x.shape)}")  # fmt: skip
        xf = x.reshape(n, -1).to(torch.float64)
        t = torch.as_tensor(t, dtype=torch.float64).expand(n)
        a_all, s_all = self.process.alpha(t), self.process.sigma(t)
        if self.conditional:
            if observed is None or cond_mask is None:
                raise ValueError("the conditional oracle needs observed and cond_mask")
            c_all = cond_mask.reshape(n, -1) != 0
            y_all = torch.where(c_all, observed.reshape(n, -1).to(torch.float64), 0.0)
        else:
            c_all = torch.zeros_like(xf, dtype=torch.bool)
            y_all = torch.zeros_like(xf)
        eps = torch.empty_like(xf)
        masks, inverse = torch.unique(c_all, dim=0, return_inverse=True)
        mu = self.mean.to(xf.device)
        for g in range(masks.shape[0]):
            rows = torch.nonzero(inverse == g)[:, 0]
            u, ci, gain, V, lam = (f.to(xf.device) for f in self._factor(masks[g]))
            a, s = a_all[rows][:, None], s_all[rows][:, None]
            y_c = y_all[rows][:, ci]
            m = mu[u] + (y_c - mu[ci]) @ gain.T  # (rows, d_u)
            z = (xf[rows][:, u] - a * m) @ V
            eps[rows[:, None], u] = (z * s / (a**2 * lam + s**2)) @ V.T
            eps[rows[:, None], ci] = (xf[rows][:, ci] - a * y_c) / s
        return eps.reshape(x.shape).to(x.dtype)

    def model(self) -> DiffusionModel:
        """This oracle as an eps-predicting :class:`~diffusio.core.model.DiffusionModel`."""
        return DiffusionModel(self, self.process, "eps")
