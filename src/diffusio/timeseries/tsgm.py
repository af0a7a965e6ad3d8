"""Latent score-based time-series generation: Lim et al.'s TSGM, and what it is compared with.

**Which TSGM.** This is the *model* of Lim, Kim, Park & Park, "Regular Time-series Generation
using SGM" (arXiv:2301.08518; extended as "TSGM: Regular and Irregular Time-series Generation
using Score-based Generative Models", arXiv:2511.21335), not Nikitin et al.'s TSGM library
(arXiv:2305.11567), a framework of generators and metrics. Layout here: TimeGAN's (Yoon et al.
2019), windows (N, L steps, D features) min-max scaled to [0, 1] (:func:`minmax_windows`).

The model (Lim et al., Sec. 3 and Algorithm 1):

* a GRU encoder ``h_t = e(h_{t-1}, x_t)`` and a decoder ``x_hat_t = d(h_t)``
  (:class:`GRUAutoencoder`), pre-trained with ``L_ed = E ||x_hat_{1:L} - x_{1:L}||^2``;
* a conditional score network ``M(s, h_t^s, h_{t-1})`` for the latent ``h_t`` diffused to time
  ``s`` given the previous clean latent (``h_0 = 0``; :class:`LatentScoreNet`), trained with the
  latent conditional denoising loss ``sum_t lambda(s) E ||M - grad log p(h_t^s | h_t)||^2``
  over all (t, window) pairs (their theorem: same minimiser as the intractable loss conditioned
  on the whole history), on the encoder's detached ``h_t``; with ``use_alt`` the encoder and
  decoder keep training on ``L_ed``, one step after each score step (the paper's ``use_alt``;
  the exact alternation schedule is our reading, the official code is not public);
* the VP or sub-VP SDE (Song et al. 2021, eq. 11 and 29; Lim et al. drop VE as worse), from
  diffusio's ``vp-linear`` and ``sub-vp`` processes with beta 0.1 to 20;
* recursive generation (:func:`generate_latents`): for t = 1..L, draw ``h_t`` by the reverse SDE
  (predictor-corrector by default) conditioned on ``h_{t-1}``, all n windows in one batch; then
  decode ``h_{1:L}``.

Comparisons with the same ``fit(windows, ...)`` / ``generate(n, ..., seed=...)`` interface:
:class:`DataDDPM` (a plain DDPM on whole flattened windows), :class:`GaussianBaseline` (one
multivariate Gaussian over the flattened window) and :class:`VARBaseline` (a least-squares
VAR(p) simulated forward with Gaussian innovations). Every ``generate`` returns a float64 CPU
tensor (n, L, D). :func:`save` / :func:`load` store any of them as ``model.safetensors`` (the
``state_dict``) plus ``generator.json`` (the class and constructor options).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from diffusio.core.losses import diffusion_loss
from diffusio.core.model import DiffusionModel
from diffusio.core.processes import make_process
from diffusio.core.samplers import SAMPLERS, sample
from diffusio.io import (
    apply_tensors,
    read_json,
    read_safetensors,
    write_json_atomic,
    write_safetensors,
)
from diffusio.nets.mlp import TimeMLP

__all__ = [
    "GENERATORS",
    "SDES",
    "DataDDPM",
    "GRUAutoencoder",
    "GaussianBaseline",
    "LatentScoreNet",
    "TSGM",
    "VARBaseline",
    "generate_latents",
    "load",
    "minmax_inverse",
    "minmax_windows",
    "save",
]

#: Lim et al.'s two SDEs -> diffusio process names (Score SDE eq. 11 and 29).
SDES = {"vp": "vp-linear", "sub-vp": "sub-vp"}
_SAMPLER_ALIASES = {"euler": "euler-maruyama"}
_TIMEGAN_EPS = 1e-7  # TimeGAN's MinMaxScaler: (x - min) / (max - min + 1e-7)


# -- data ----------------------------------------------------------------------------------------


def minmax_windows(
    values: Any, length: int = 24, stride: int = 1
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """TimeGAN's preprocessing (Yoon et al. 2019, ``real_data_loading``): per feature
    ``(x - min) / (max - min + 1e-7)`` with min and max over the whole series (NaN ignored),
    then windows of ``length`` steps every ``stride`` steps; a window holding any NaN is
    skipped. Not shuffled (TimeGAN shuffles afterwards).

    ``values``: (T, D), NaN = missing (an array, tensor or a
    :class:`~diffusio.timeseries.files.SeriesTable`). Returns float64 ``windows`` (N, L, D) and
    ``(min, max)``, each (D,), for :func:`minmax_inverse`."""
    if not isinstance(values, (np.ndarray, Tensor)):
        values = getattr(values, "values", values)
    x = np.asarray(values.detach().cpu() if isinstance(values, Tensor) else values, np.float64)
    if x.ndim != 2:
        raise ValueError(f"values must be 2-D (T steps, D features); got shape {x.shape}")
    if length < 1 or stride < 1:
        raise ValueError(f"window length and stride must be >= 1; got {length}, {stride}")
    if x.shape[0] < length:
        raise ValueError(
            f"the series has {x.shape[0]} steps, fewer than the window length {length}"
        )
    empty = np.isnan(x).all(0)
    if empty.any():
        raise ValueError(f"column {int(np.argmax(empty))} has no observed value")
    lo, hi = np.nanmin(x, 0), np.nanmax(x, 0)
    scaled = (x - lo) / (hi - lo + _TIMEGAN_EPS)
    starts = np.arange(0, x.shape[0] - length + 1, stride)
    windows = scaled[starts[:, None] + np.arange(length)]  # (N, L, D)
    windows = windows[~np.isnan(windows).any(axis=(1, 2))]
    if windows.shape[0] == 0:
        raise ValueError(f"every window of {length} steps holds a missing value")
    return torch.from_numpy(windows.copy()), (torch.from_numpy(lo), torch.from_numpy(hi))


def minmax_inverse(windows: Tensor, scale: tuple[Tensor, Tensor]) -> Tensor:
    """Undo :func:`minmax_windows`' scaling: back to the data's own units."""
    lo, hi = (torch.as_tensor(s, dtype=torch.float64) for s in scale)
    return windows.to(torch.float64) * (hi - lo + _TIMEGAN_EPS) + lo


def _check_windows(
    windows: Any, length: int | None = None, features: int | None = None, unit: bool = False
) -> Tensor:
    """Windows as a float64 tensor (N, L, D); a one-line ValueError for anything else."""
    x = torch.as_tensor(np.asarray(windows.detach().cpu() if isinstance(windows, Tensor)
                                   else windows, dtype=np.float64))
    if x.dim() != 3 or x.shape[0] < 1:
        raise ValueError(f"windows must have shape (N, L steps, D features); got {tuple(x.shape)}")
    expected = (length or x.shape[1], features or x.shape[2])
    if tuple(x.shape[1:]) != expected:
        raise ValueError(
            f"windows have shape {tuple(x.shape)}; this model expects (N, {expected[0]}, "
            f"{expected[1]}) (L steps, D features)"
        )
    finite = torch.isfinite(x).reshape(x.shape[0], -1).all(1)
    if not bool(finite.all()):
        raise ValueError(f"windows have non-finite values in window {int((~finite).nonzero()[0])}")
    if unit and (x.min() < -1e-6 or x.max() > 1 + 1e-6):
        raise ValueError(
            f"windows must be min-max scaled to [0, 1] (see minmax_windows); found values in "
            f"[{float(x.min()):.4g}, {float(x.max()):.4g}]"
        )
    return x


def _batches(
    x: Tensor, batch_size: int, generator: torch.Generator
) -> Callable[[], Tensor]:
    """A function drawing a batch of rows of ``x`` uniformly with replacement."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    return lambda: x[torch.randint(x.shape[0], (batch_size,), generator=generator)]


def _bar(steps: int, desc: str, progress: bool):
    from tqdm.auto import tqdm

    return tqdm(range(steps), desc=desc, disable=not progress, leave=False)


# -- the model -----------------------------------------------------------------------------------


class GRUAutoencoder(nn.Module):
    """Lim et al.'s encoder and decoder for regular series (Sec. 3.1): ``h_t = e(h_{t-1}, x_t)``
    is the GRU's state itself (top layer), in (-1, 1); the decoder is a GRU over ``h_{1:t}``
    (``decoder="gru"``, TimeGAN's recovery network) or a per-step MLP ``x_hat_t = d(h_t)``
    (``"mlp"``), with a sigmoid output for data in [0, 1]."""

    def __init__(self, features: int, latent_dim: int = 24, num_layers: int = 1,
                 decoder: str = "gru"):
        super().__init__()
        if decoder not in ("gru", "mlp"):
            raise ValueError(f"unknown decoder {decoder!r}; valid: gru, mlp")
        self.encoder = nn.GRU(features, latent_dim, num_layers, batch_first=True)
        self.decoder_kind = decoder
        if decoder == "gru":
            self.decoder = nn.GRU(latent_dim, latent_dim, num_layers, batch_first=True)
        else:
            self.decoder = nn.Sequential(nn.Linear(latent_dim, latent_dim), nn.SiLU())
        self.readout = nn.Linear(latent_dim, features)

    def encode(self, x: Tensor) -> Tensor:
        """(N, L, D) -> latents h_{1:L} (N, L, H), starting from h_0 = 0."""
        return self.encoder(x)[0]

    def decode(self, h: Tensor) -> Tensor:
        """(N, L, H) -> reconstructions (N, L, D) in (0, 1)."""
        z = self.decoder(h)[0] if self.decoder_kind == "gru" else self.decoder(h)
        return torch.sigmoid(self.readout(z))

    def loss(self, x: Tensor) -> Tensor:
        """L_ed (Algorithm 1): mean squared reconstruction error."""
        return (self.decode(self.encode(x)) - x).pow(2).mean()


class LatentScoreNet(nn.Module):
    """The conditional score network ``M(s, h_t^s, h_{t-1})`` as ``net(x, t, *, prev)``.

    Lim et al. use a small 1-D U-Net over the input ``[h_t^s || h_{t-1}]`` with an embedding of
    s. We keep their conditioning (the previous latent concatenated to the noisy one) but use
    diffusio's residual :class:`~diffusio.nets.mlp.TimeMLP` on the 2H-vector instead of a U-Net:
    the latent is a GRU state whose coordinates have no order, so the U-Net's local convolutions
    along it encode no real structure, and at our latent sizes (8-96) an MLP with the time
    features added to every layer is the smaller and equally expressive choice. Zero-initialised
    output, so the initial eps prediction is exactly 0."""

    def __init__(self, dim: int, hidden: int = 256, depth: int = 3, embed_dim: int = 64):
        super().__init__()
        self.dim = int(dim)
        self.mlp = TimeMLP(2 * self.dim, hidden=hidden, depth=depth, embed_dim=embed_dim,
                           out_dim=self.dim)

    def forward(self, x: Tensor, t: Tensor, *, prev: Tensor) -> Tensor:
        if prev.shape != x.shape:
            raise ValueError(f"prev has shape {tuple(prev.shape)}, the latent {tuple(x.shape)}")
        return self.mlp(torch.cat([x, prev], dim=1), t)


def generate_latents(
    model: DiffusionModel,
    n: int,
    length: int,
    dim: int,
    sampler: str = "pc",
    steps: int | None = 100,
    seed: int = 0,
    clip: tuple[float, float] | None = None,
    progress: bool = False,
    **options: Any,
) -> Tensor:
    """Lim et al.'s recursive sampling: for t = 1..length draw ``h_t`` (n, dim) with diffusio's
    ``sampler`` from ``model`` conditioned on ``cond={"prev": h_{t-1}}`` (``h_0 = 0``), all n
    windows in one batch per step; ``clip`` clamps each ``h_t`` (the encoder's range) before it
    conditions the next. Step t uses a seed drawn from ``seed``, so the result is reproducible.
    ``options`` go to the sampler (e.g. ``snr``, ``n_corrector`` for ``pc``). Returns
    (n, length, dim) in the model's dtype."""
    sampler = _SAMPLER_ALIASES.get(sampler, sampler)
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; valid: euler, {', '.join(SAMPLERS)}")
    if n < 1 or length < 1:
        raise ValueError(f"need n >= 1 and length >= 1; got n={n}, length={length}")
    seeds = torch.randint(2**62, (length,), generator=torch.Generator().manual_seed(int(seed)))
    if steps is not None:
        options["steps"] = int(steps)
    prev = torch.zeros((n, dim), dtype=model.dtype, device=model.device)
    latents = []
    for t in _bar(length, "tsgm steps", progress):
        h = sample(model, (n, dim), sampler, seed=int(seeds[t]), cond={"prev": prev}, **options)
        if clip is not None:
            h = h.clamp(*clip)
        latents.append(h)
        prev = h
    return torch.stack(latents, dim=1)


class _Saveable:
    """Constructor options kept for :func:`save` / :func:`load`."""

    _options: dict[str, Any]

    def options(self) -> dict[str, Any]:
        """The constructor options (JSON-ready)."""
        return dict(self._options)


class TSGM(_Saveable, nn.Module):
    """Lim et al.'s latent conditional score model (module docstring).

    Args:
        features: D; length: L, the window length (TimeGAN: 24).
        latent_dim: H, the GRU width (TimeGAN's default hidden size 24).
        num_layers: GRU layers of the encoder and decoder; decoder: ``gru`` or ``mlp``.
        hidden, depth, embed_dim: the score network's :class:`~diffusio.nets.mlp.TimeMLP`.
        sde: ``vp`` or ``sub-vp``; beta_min, beta_max: its linear beta(s) (Score SDE: 0.1, 20).
        use_alt: keep training the encoder/decoder on L_ed during stage 2 (one step per score
            step); the score targets are always the current encoder's latents, detached.
        seed: the parameters' initialisation.

    The score loss is diffusio's ``simple`` eps-MSE, i.e. denoising score matching with
    lambda(s) = sigma(s)^2 (Song et al. 2021's weighting for VP and sub-VP).
    """

    def __init__(
        self,
        features: int,
        length: int = 24,
        latent_dim: int = 24,
        num_layers: int = 1,
        decoder: str = "gru",
        hidden: int = 256,
        depth: int = 3,
        embed_dim: int = 64,
        sde: str = "vp",
        beta_min: float = 0.1,
        beta_max: float = 20.0,
        use_alt: bool = False,
        seed: int = 0,
    ):
        super().__init__()
        if sde not in SDES:
            raise ValueError(f"unknown sde {sde!r}; valid: {', '.join(SDES)}")
        for label, value in (("features", features), ("length", length),
                             ("latent_dim", latent_dim)):
            if int(value) != value or value < 1:
                raise ValueError(f"{label} must be an integer >= 1; got {value!r}")
        self._options = dict(
            features=int(features), length=int(length), latent_dim=int(latent_dim),
            num_layers=int(num_layers), decoder=decoder, hidden=int(hidden), depth=int(depth),
            embed_dim=int(embed_dim), sde=sde, beta_min=float(beta_min),
            beta_max=float(beta_max), use_alt=bool(use_alt), seed=int(seed),
        )  # fmt: skip
        self.features, self.length, self.latent_dim = int(features), int(length), int(latent_dim)
        self.use_alt = bool(use_alt)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            self.autoencoder = GRUAutoencoder(features, latent_dim, num_layers, decoder)
            net = LatentScoreNet(latent_dim, hidden, depth, embed_dim)
        process = make_process(SDES[sde], beta_min=beta_min, beta_max=beta_max)
        self.model = DiffusionModel(net, process, prediction="eps")
        # steps trained (autoencoder, score); (0, 0) = not fitted. Saved with the parameters.
        self.register_buffer("trained_steps", torch.zeros(2, dtype=torch.int64))
        self.history: dict[str, list[float]] = {"ae": [], "score": []}

    def _pairs(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The (h_t, h_{t-1}) pairs of a batch of windows, flattened: (N L, H) each."""
        with torch.no_grad():
            h = self.autoencoder.encode(x)
        prev = torch.cat([torch.zeros_like(h[:, :1]), h[:, :-1]], dim=1)
        return h.reshape(-1, self.latent_dim), prev.reshape(-1, self.latent_dim)

    def _score_loss(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        h, prev = self._pairs(x)
        return diffusion_loss(self.model, h, cond={"prev": prev}, generator=generator)

    def losses(self, windows: Any, seed: int = 0) -> dict[str, float]:
        """L_ed and the latent score loss on ``windows`` (noise and times from ``seed``)."""
        x = _check_windows(windows, self.length, self.features, unit=True).to(self._dtype())
        with torch.no_grad():
            ae = float(self.autoencoder.loss(x))
            score = float(self._score_loss(x, torch.Generator().manual_seed(int(seed))))
        return {"ae": ae, "score": score}

    def _dtype(self) -> torch.dtype:
        return self.model.dtype

    def fit(
        self,
        windows: Any,
        steps_ae: int = 500,
        steps_score: int = 1000,
        batch_size: int = 128,
        lr: float = 1e-3,
        seed: int = 0,
        progress: bool = False,
    ) -> TSGM:
        """Algorithm 1: ``steps_ae`` Adam steps on L_ed, then ``steps_score`` on the latent
        score loss (plus an L_ed step after each with ``use_alt``). ``windows`` (N, L, D) in
        [0, 1]; batches of ``batch_size`` windows (each gives L pairs). Losses per step go to
        ``self.history``. Returns self."""
        x = _check_windows(windows, self.length, self.features, unit=True).to(self._dtype())
        g = torch.Generator().manual_seed(int(seed))
        draw = _batches(x, batch_size, g)
        ae_opt = torch.optim.Adam(self.autoencoder.parameters(), lr=lr)
        score_opt = torch.optim.Adam(self.model.parameters(), lr=lr)

        def ae_step() -> None:
            loss = self.autoencoder.loss(draw())
            ae_opt.zero_grad(set_to_none=True)
            loss.backward()
            ae_opt.step()
            self.history["ae"].append(loss.item())

        self.train()
        for _ in _bar(steps_ae, "tsgm autoencoder", progress):
            ae_step()
        for _ in _bar(steps_score, "tsgm score", progress):
            loss = self._score_loss(draw(), g)
            score_opt.zero_grad(set_to_none=True)
            loss.backward()
            score_opt.step()
            self.history["score"].append(loss.item())
            if self.use_alt:
                ae_step()
        self.eval()
        alt = steps_score if self.use_alt else 0
        self.trained_steps += torch.tensor([steps_ae + alt, steps_score])
        return self

    @torch.no_grad()
    def generate(
        self,
        n: int,
        sampler: str = "pc",
        steps: int | None = 100,
        seed: int = 0,
        progress: bool = False,
        **options: Any,
    ) -> Tensor:
        """``n`` windows (n, L, D), float64: latents by :func:`generate_latents` (each clamped
        to the encoder's range (-1, 1)), then decoded. ``sampler``: any of diffusio's
        (``pc``, ``euler`` = ``euler-maruyama``, ``ode-heun``, ``dpm-solver++``, ...)."""
        if int(self.trained_steps[1]) == 0:
            raise RuntimeError("TSGM.generate before fit: train (or load) the model first")
        h = generate_latents(self.model, n, self.length, self.latent_dim, sampler, steps, seed,
                             clip=(-1.0, 1.0), progress=progress, **options)
        return self.autoencoder.decode(h).to("cpu", torch.float64)


# -- comparisons ---------------------------------------------------------------------------------


class DataDDPM(_Saveable, nn.Module):
    """A plain DDPM on whole windows (Ho et al. 2020): the L*D window flattened, mapped to
    [-1, 1], diffusio's :class:`~diffusio.nets.mlp.TimeMLP` predicting eps under ``process``
    (default ``vp-linear``, DDPM's 1000-step table), trained with L_simple and sampled with any
    diffusio sampler (default ancestral ``ddpm`` on the full table); samples clamped to [0, 1].
    The data-space comparison of Lim et al.'s latent model."""

    def __init__(
        self,
        features: int,
        length: int = 24,
        hidden: int = 256,
        depth: int = 3,
        embed_dim: int = 64,
        process: str = "vp-linear",
        seed: int = 0,
    ):
        super().__init__()
        self._options = dict(features=int(features), length=int(length), hidden=int(hidden),
                             depth=int(depth), embed_dim=int(embed_dim), process=process,
                             seed=int(seed))
        self.features, self.length = int(features), int(length)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            net = TimeMLP(self.length * self.features, hidden=hidden, depth=depth,
                          embed_dim=embed_dim)
        self.model = DiffusionModel(net, make_process(process), prediction="eps")
        self.register_buffer("trained_steps", torch.zeros((), dtype=torch.int64))
        self.history: dict[str, list[float]] = {"score": []}

    def _flat(self, windows: Any) -> Tensor:
        x = _check_windows(windows, self.length, self.features, unit=True)
        return (2 * x - 1).reshape(x.shape[0], -1).to(self.model.dtype)

    def losses(self, windows: Any, seed: int = 0) -> dict[str, float]:
        """L_simple on ``windows`` (noise and times from ``seed``)."""
        with torch.no_grad():
            g = torch.Generator().manual_seed(int(seed))
            return {"score": float(diffusion_loss(self.model, self._flat(windows), generator=g))}

    def fit(
        self,
        windows: Any,
        steps: int = 1000,
        batch_size: int = 128,
        lr: float = 1e-3,
        seed: int = 0,
        progress: bool = False,
    ) -> DataDDPM:
        """``steps`` Adam steps of L_simple on batches of ``batch_size`` windows; returns self."""
        x = self._flat(windows)
        g = torch.Generator().manual_seed(int(seed))
        draw = _batches(x, batch_size, g)
        opt = torch.optim.Adam(self.model.parameters(), lr=lr)
        self.train()
        for _ in _bar(steps, "data ddpm", progress):
            loss = diffusion_loss(self.model, draw(), generator=g)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            self.history["score"].append(loss.item())
        self.eval()
        self.trained_steps += steps
        return self

    @torch.no_grad()
    def generate(
        self, n: int, sampler: str = "ddpm", steps: int | None = None, seed: int = 0,
        progress: bool = False, **options: Any,
    ) -> Tensor:
        """``n`` windows (n, L, D), float64, in [0, 1]."""
        if int(self.trained_steps) == 0:
            raise RuntimeError("DataDDPM.generate before fit: train (or load) the model first")
        sampler = _SAMPLER_ALIASES.get(sampler, sampler)
        x = sample(self.model, (n, self.length * self.features), sampler, steps=steps, seed=seed,
                   progress=progress, **options)
        x = ((x + 1) / 2).clamp(0, 1)
        return x.reshape(n, self.length, self.features).to("cpu", torch.float64)


def _psd_factor(cov: Tensor) -> Tensor:
    """F with F F^T = cov for a symmetric PSD matrix (eigenvalues below 0 from round-off set
    to 0), so a singular covariance, e.g. of sines windows, still samples."""
    vals, vecs = torch.linalg.eigh(0.5 * (cov + cov.T))
    return vecs * vals.clamp_min(0).sqrt()


def _normal(n: int, dim: int, seed: int) -> Tensor:
    return torch.randn((n, dim), generator=torch.Generator().manual_seed(int(seed)),
                       dtype=torch.float64)


class _Classical(_Saveable):
    """Shared state handling of the two classical baselines (float64 tensors)."""

    _keys: tuple[str, ...] = ()

    def __init__(self) -> None:
        self._state: dict[str, Tensor] = {}

    def state_dict(self) -> dict[str, Tensor]:
        if not self._state:
            raise RuntimeError(f"{type(self).__name__}: fit before saving")
        return {k: v.clone() for k, v in self._state.items()}

    def load_state_dict(self, tensors: dict[str, Tensor]) -> None:
        if set(tensors) != set(self._keys):
            raise ValueError(f"{type(self).__name__}: expected tensors {sorted(self._keys)}, "
                             f"got {sorted(tensors)}")
        self._state = {k: v.clone() for k, v in tensors.items()}

    def _fitted(self) -> dict[str, Tensor]:
        if not self._state:
            raise RuntimeError(f"{type(self).__name__}.generate before fit")
        return self._state

    @property
    def shape(self) -> tuple[int, int]:
        """(L, D) of the windows it was fitted on."""
        length, features = self._fitted()["shape"].tolist()
        return int(length), int(features)


class GaussianBaseline(_Classical):
    """One multivariate Gaussian over the flattened window (L*D): the sample mean and the
    unbiased sample covariance of the training windows; samples ``mu + F z`` with F F^T the
    covariance. Values are not clipped to [0, 1]."""

    _keys = ("mean", "factor", "shape")

    def __init__(self) -> None:
        super().__init__()
        self._options = {}

    @property
    def mean(self) -> Tensor:
        return self._fitted()["mean"]

    @property
    def cov(self) -> Tensor:
        f = self._fitted()["factor"]
        return f @ f.T

    def fit(self, windows: Any, **_: Any) -> GaussianBaseline:
        """Fit on ``windows`` (N >= 2, L, D); training options of the neural models are
        ignored. Returns self."""
        x = _check_windows(windows)
        if x.shape[0] < 2:
            raise ValueError("GaussianBaseline needs at least 2 windows for a covariance")
        flat = x.reshape(x.shape[0], -1)
        cov = torch.cov(flat.T).reshape(flat.shape[1], flat.shape[1])
        self._state = {"mean": flat.mean(0), "factor": _psd_factor(cov),
                       "shape": torch.tensor(x.shape[1:], dtype=torch.int64)}
        return self

    def generate(self, n: int, seed: int = 0, **_: Any) -> Tensor:
        """``n`` windows (n, L, D), float64."""
        s = self._fitted()
        flat = s["mean"] + _normal(n, s["mean"].numel(), seed) @ s["factor"].T
        return flat.reshape(n, *self.shape)


class VARBaseline(_Classical):
    """A VAR(p) ``x_t = c + sum_k A_k x_{t-k} + e_t``, ``e_t ~ N(0, Q)`` (Lutkepohl 2005,
    Sec. 3.2): c and A by least squares over every (t, window) pair of the training windows
    (no pair crosses a window boundary), Q the residual covariance with the degrees of freedom
    corrected (divided by M - 1 - p D for M pairs). Generation starts each window from a draw of
    a Gaussian fitted to the training windows' first p steps (mean and covariance of their p*D
    values) and simulates forward with Gaussian innovations. Values are not clipped."""

    _keys = ("intercept", "coef", "noise_factor", "start_mean", "start_factor", "shape")

    def __init__(self, p: int = 1) -> None:
        super().__init__()
        if int(p) != p or p < 1:
            raise ValueError(f"VAR order p must be an integer >= 1; got {p!r}")
        self.p = int(p)
        self._options = {"p": self.p}

    @property
    def intercept(self) -> Tensor:
        """c, (D,)."""
        return self._fitted()["intercept"]

    @property
    def coef(self) -> Tensor:
        """A_1..A_p stacked, (p, D, D): ``coef[k - 1] = A_k``."""
        return self._fitted()["coef"]

    @property
    def noise_cov(self) -> Tensor:
        """Q, (D, D)."""
        f = self._fitted()["noise_factor"]
        return f @ f.T

    def fit(self, windows: Any, **_: Any) -> VARBaseline:
        """Fit on ``windows`` (N, L > p, D); training options of the neural models are ignored.
        Returns self."""
        x = _check_windows(windows)
        n, length, d = x.shape
        p = self.p
        if length <= p:
            raise ValueError(f"a VAR({p}) needs windows longer than {p} steps; got {length}")
        lags = [x[:, p - k : length - k] for k in range(1, p + 1)]  # x_{t-k}, (N, L-p, D)
        design = torch.cat([torch.ones_like(x[:, p:, :1]), *lags], dim=2).reshape(-1, 1 + p * d)
        target = x[:, p:].reshape(-1, d)
        m = design.shape[0]
        if m <= 1 + p * d:
            raise ValueError(f"a VAR({p}) on {d} features needs more than {1 + p * d} (t, window) "
                             f"pairs; got {m}")
        beta = torch.linalg.lstsq(design, target, driver="gelsd").solution  # (1 + pD, D)
        resid = target - design @ beta
        noise = resid.T @ resid / (m - 1 - p * d)
        start = x[:, :p].reshape(n, -1)
        start_cov = torch.cov(start.T).reshape(p * d, p * d) if n > 1 else start.new_zeros(
            (p * d, p * d))
        self._state = {
            "intercept": beta[0],
            "coef": beta[1:].T.reshape(d, p, d).permute(1, 0, 2).contiguous(),
            "noise_factor": _psd_factor(noise),
            "start_mean": start.mean(0),
            "start_factor": _psd_factor(start_cov),
            "shape": torch.tensor([length, d], dtype=torch.int64),
        }
        return self

    def generate(self, n: int, seed: int = 0, **_: Any) -> Tensor:
        """``n`` windows (n, L, D), float64, simulated forward from the start distribution."""
        s = self._fitted()
        length, d = self.shape
        p = self.p
        z = _normal(n, p * d + (length - p) * d, seed)
        start = s["start_mean"] + z[:, : p * d] @ s["start_factor"].T
        steps = list(start.reshape(n, p, d).unbind(1))
        innovations = (z[:, p * d :].reshape(n, length - p, d) @ s["noise_factor"].T).unbind(1)
        for e in innovations:
            x_t = s["intercept"] + e
            for k in range(1, p + 1):
                x_t = x_t + steps[-k] @ s["coef"][k - 1].T
            steps.append(x_t)
        return torch.stack(steps, dim=1)


# -- save and load -------------------------------------------------------------------------------

#: The classes :func:`load` knows, by the name :func:`save` writes.
GENERATORS: dict[str, type] = {
    "TSGM": TSGM, "DataDDPM": DataDDPM, "GaussianBaseline": GaussianBaseline,
    "VARBaseline": VARBaseline,
}  # fmt: skip
_TENSORS, _CONFIG = "model.safetensors", "generator.json"


def save(generator: Any, path_dir: str | os.PathLike) -> Path:
    """Write ``generator`` (any of :data:`GENERATORS`) into the folder ``path_dir``:
    ``model.safetensors`` (its ``state_dict``, digest-checked) and ``generator.json``
    (``{"class", "options"}``), each atomically. Returns the folder."""
    name = type(generator).__name__
    if GENERATORS.get(name) is not type(generator):
        raise ValueError(f"cannot save a {name}; valid: {', '.join(GENERATORS)}")
    folder = Path(path_dir)
    folder.mkdir(parents=True, exist_ok=True)
    write_safetensors(folder / _TENSORS, generator.state_dict(), metadata={"class": name})
    write_json_atomic(folder / _CONFIG, {"class": name, "options": generator.options()},
                      strict=True)
    return folder


def load(path_dir: str | os.PathLike) -> Any:
    """Rebuild what :func:`save` wrote in ``path_dir`` (names and shapes checked)."""
    folder = Path(path_dir)
    config = read_json(folder / _CONFIG)
    name = config.get("class") if isinstance(config, dict) else None
    if name not in GENERATORS or not isinstance(config.get("options"), dict):
        raise ValueError(f"{folder / _CONFIG}: not a saved generator (class {name!r}; valid: "
                         f"{', '.join(GENERATORS)})")
    try:
        generator = GENERATORS[name](**config["options"])
    except TypeError as err:
        raise ValueError(f"{folder / _CONFIG}: bad options for {name} ({err})") from None
    tensors, _ = read_safetensors(folder / _TENSORS)
    if isinstance(generator, nn.Module):
        apply_tensors(generator, tensors, folder / _TENSORS)
        generator.eval()
    else:
        generator.load_state_dict(tensors)
    return generator
