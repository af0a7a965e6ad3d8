"""Sparse-sensor reconstruction of Burgers fields (Zhuang, Cheng & Duraisamy 2024, "Spatially-
Aware Diffusion Models with Cross-Attention for Global Field Reconstruction with Sparse
Observations", arXiv:2409.00230): a conditional diffusion model of a whole field u (128,) given
a set of (position, value) sensor readings, against interpolation and kriging.

* **Data**: one recorded frame of the DiffPhyCon Burgers solutions
  (:func:`~diffusio.physics.burgers_data.make_burgers_data`), :func:`burgers_fields`; shocks
  steepen as the two initial bumps collide, so the field is far from Gaussian.
* **Sensors** (:func:`sample_sensors`): ``m`` distinct cells per field, padded to a fixed
  ``m_max`` with a validity mask, optionally with Gaussian read-out noise; positions are the
  cell centres in (0, 1). The model sees a sensor set through cond tensors ``pos`` (N, M, 1),
  ``val`` (N, M, 1), ``valid`` (N, M) and ``noise`` (N, 1) (the read-out std).
* **Model** (:class:`FieldDenoiser`): the paper's condition encoding -- the noisy field, the
  Voronoi (nearest-sensor) interpolation of the readings and the sensor indicator, patch tokens
  -- with self-attention over the patches and cross-attention to the latents of a Perceiver
  encoder that reads the sensor set (:mod:`diffusio.nets.attention`). Trained through the
  common :class:`~diffusio.train.trainer.Trainer` with a fresh random sensor set per example and
  step (:class:`SensorTransform`); sampled by :func:`reconstruct`.
* **Baselines**: linear and cubic-spline interpolation (:func:`interpolate`) and kriging
  (:class:`Kriging`: scikit-learn's ``GaussianProcessRegressor``, kernel family and
  hyperparameters chosen by marginal likelihood on training fields; exact Gaussian predictive).
  Both get the boundary values u(0) = u(1) = 0 as two extra noise-free readings.
* **Scores** (:func:`score_samples`, :func:`score_gaussian`, :func:`score_point`): per field
  over the cells without a sensor -- RMSE of the point estimate, mean CRPS (fair ensemble CRPS
  of samples, the closed form for a Gaussian, |error| for a point), coverage of the central 90%
  interval (samples: an order-statistic band of exactly known coverage), and RMSE on the shock
  cells (the steepest 10% of the field).
* :class:`GaussianFieldOracle` -- the exact noised-posterior eps of a Gaussian prior given the
  sensors (a drop-in network): with it :func:`reconstruct` must return the kriging posterior.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..data.batch import Batch
from ..io import apply_tensors, read_safetensors, write_safetensors
from ..nets.attention import CrossAttention, FourierPositions, PerceiverEncoder
from ..nets.embeddings import SinusoidalEmbedding
from .burgers import N_CELLS, X

__all__ = [
    "FIELD_DEFAULTS", "SCALE", "FieldDenoiser", "GaussianFieldOracle", "Kriging",
    "SensorTransform", "band_rank", "burgers_fields", "exact_coverage", "field_config",
    "interpolate", "reconstruct", "regress", "sample_sensors", "score_gaussian", "score_point",
    "score_samples", "shock_cells", "train_field_model", "train_regressor", "voronoi",
]  # fmt: skip

SCALE = 0.5  #: the model sees u / SCALE (the fields' standard deviation is about 0.45)
Z90 = 1.6448536269514722  #: the 95% standard normal quantile (a central 90% interval)

#: The training recipe (overrides of the trainer's defaults).
FIELD_DEFAULTS: dict[str, Any] = {
    "process": "vp-cosine", "prediction": "v", "net": "field-denoiser",
    "net_options": {"width": 64, "latents": 16, "depth": 3, "heads": 4, "patch": 4},
    "normalize": False, "batch_size": 64, "lr": 1e-3, "warmup": 200, "lr_decay": "cosine",
    "ema_decay": 0.999, "grad_clip": 1.0, "save_every": 500, "log_every": 50,
    "data": "burgers-field", "n_data": None,
}  # fmt: skip


# --------------------------------------------------------------------------- data and sensors
def burgers_fields(n: int, seed: int, frame: int = 2) -> Tensor:
    """``n`` fields u(t = frame / 10) (n, 128), float64, solved from the official samplers."""
    from .burgers_data import make_burgers_data

    if not 0 <= frame <= 10:
        raise ValueError(f"frame must be one of the 11 recorded times 0..10, got {frame}")
    return torch.from_numpy(make_burgers_data(n, seed, progress=False)["u"][:, frame])


def sample_sensors(
    u: Tensor,
    m: int | Tensor,
    generator: torch.Generator,
    *,
    m_max: int | None = None,
    noise: float | Tensor = 0.0,
) -> dict[str, Tensor]:
    """A sensor set per field of ``u`` (N, 128): ``m`` distinct random cells (an int or (N,)
    counts), padded to ``m_max``; readings ``u + noise * N(0, 1)``. Returns ``pos`` (N, M, 1)
    cell centres, ``val`` (N, M, 1), ``valid`` (N, M) and ``noise`` (N, 1), all on ``u``'s
    device; every draw comes from ``generator``."""
    n, gd = u.shape[0], generator.device
    m = torch.as_tensor(m, device=gd).long().expand(n)
    m_max = int(m.max()) if m_max is None else int(m_max)
    if u.dim() != 2 or u.shape[1] != N_CELLS:
        raise ValueError(f"u must be (N, {N_CELLS}), got {tuple(u.shape)}")
    if int(m.min()) < 1 or int(m.max()) > min(m_max, N_CELLS):
        raise ValueError(
            f"sensor counts must lie in 1..{min(m_max, N_CELLS)}, got {m.tolist()[:4]}..."
        )
    idx = torch.rand(n, N_CELLS, generator=generator, device=gd).argsort(dim=1)[:, :m_max]
    eps = torch.randn(n, m_max, generator=generator, device=gd)
    idx, eps, m = idx.to(u.device), eps.to(u), m.to(u.device)
    sd = torch.as_tensor(noise, dtype=u.dtype, device=u.device).reshape(-1, 1).expand(n, 1)
    valid = torch.arange(m_max, device=u.device)[None] < m[:, None]
    val = torch.where(valid, u.gather(1, idx) + sd * eps, 0.0)
    pos = torch.where(valid, X.to(u)[idx], 0.0)
    return {"pos": pos[..., None], "val": val[..., None], "valid": valid, "noise": sd.clone()}


def scaled(sensors: dict[str, Tensor], factor: float) -> dict[str, Tensor]:
    """The sensor set with readings and noise std divided by ``factor`` (model units)."""
    return {**sensors, "val": sensors["val"] / factor, "noise": sensors["noise"] / factor}


def cells(sensors: dict[str, Tensor]) -> Tensor:
    """(N, M) cell index of every sensor (-1 where padded)."""
    idx = torch.round(sensors["pos"][..., 0] * (N_CELLS + 1)).long() - 1
    return torch.where(sensors["valid"], idx, -1)


def voronoi(pos: Tensor, val: Tensor, valid: Tensor, grid: Tensor) -> Tensor:
    """Nearest-sensor (1-D Voronoi) interpolation of readings at ``grid`` (G,): (N, G); 0 for
    a field without sensors."""
    dist = (grid.to(pos)[None, :, None] - pos[..., 0][:, None, :]).abs()
    dist = dist.masked_fill(~valid[:, None, :], float("inf"))
    near = dist.argmin(dim=2)
    out = val[..., 0].gather(1, near)
    return torch.where(valid.any(dim=1, keepdim=True), out, 0.0)


class SensorTransform:
    """A batch transform (the batch contract's augmentation) giving every example a fresh
    sensor set: ``m`` uniform in ``m_range``, read-out noise std drawn from ``noises``
    (physical units, divided by ``SCALE`` like the data), padded to ``m_range[1]``."""

    def __init__(self, m_range: tuple[int, int] = (4, 40), noises: tuple[float, ...] = (0.0,)):
        lo, hi = int(m_range[0]), int(m_range[1])
        if not 1 <= lo <= hi <= N_CELLS or not noises or min(noises) < 0:
            raise ValueError(f"need 1 <= m_range <= {N_CELLS} and noise stds >= 0, got "
                             f"{m_range} and {noises}")  # fmt: skip
        self.m_range, self.noises = (lo, hi), tuple(float(v) for v in noises)

    def __call__(self, batch: Batch, generator: torch.Generator) -> Batch:
        n, gd = batch.x0.shape[0], generator.device
        m = torch.randint(
            self.m_range[0], self.m_range[1] + 1, (n,), generator=generator, device=gd
        )
        pick = torch.randint(len(self.noises), (n,), generator=generator, device=gd)
        sd = torch.tensor(self.noises, device=gd)[pick] / SCALE
        cond = sample_sensors(batch.x0, m, generator, m_max=self.m_range[1], noise=sd.to(batch.x0))
        return batch.replace(cond={**batch.cond, **cond})

    def __repr__(self) -> str:
        return f"SensorTransform(m_range={self.m_range}, noises={self.noises})"


# --------------------------------------------------------------------------- the network
class FieldDenoiser(nn.Module):
    """``net(x_t, t, pos, val, valid, noise)`` (the eps or v of the config) for fields x (B, n_cells).

    Grid input: the noisy field, and with ``encoding`` the Voronoi interpolation of the
    readings and the sensor indicator (the paper's condition encoding, Sec. 3), cut into
    patches of ``patch`` cells, embedded with Fourier features of the patch centre and the time
    embedding. ``depth`` blocks of patch self-attention then cross-attention to the latents of a
    :class:`~diffusio.nets.attention.PerceiverEncoder` over the sensor tokens
    ``[Fourier(pos), val, noise]``; a linear head back to the cells.
    """

    def __init__(self, n_cells: int = N_CELLS, width: int = 64, latents: int = 16, depth: int = 3,
                 heads: int = 4, patch: int = 4, bands: int = 6, encoding: bool = True):  # fmt: skip
        super().__init__()
        if n_cells % patch:
            raise ValueError(f"patch {patch} must divide n_cells {n_cells}")
        self.n_cells, self.patch, self.encoding = int(n_cells), int(patch), bool(encoding)
        self.register_buffer(
            "grid", torch.arange(1, n_cells + 1) / (n_cells + 1.0), persistent=False
        )
        self.fourier = FourierPositions(bands)
        channels = 3 if encoding else 1
        self.embed = nn.Linear(channels * patch + self.fourier.out_dim(), width)
        self.time = nn.Sequential(SinusoidalEmbedding(width), nn.Linear(width, width), nn.SiLU(),
                                  nn.Linear(width, width))  # fmt: skip
        self.encoder = PerceiverEncoder(self.fourier.out_dim() + 2, width, latents, 1, heads)
        self.self_blocks = nn.ModuleList(CrossAttention(width, width, heads) for _ in range(depth))
        self.cross_blocks = nn.ModuleList(CrossAttention(width, width, heads) for _ in range(depth))
        self.head = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, patch))

    def forward(self, x: Tensor, t: Tensor, pos: Tensor, val: Tensor, valid: Tensor,
                noise: Tensor | None = None) -> Tensor:  # fmt: skip
        b = x.shape[0]
        if x.shape[1:] != (self.n_cells,):
            raise ValueError(f"x must be (B, {self.n_cells}), got {tuple(x.shape)}")
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device).reshape(-1).expand(b)
        noise = torch.zeros(b, 1, dtype=x.dtype, device=x.device) if noise is None else noise.to(x)
        temb = self.time(t)
        feats = [x]
        if self.encoding:
            near = voronoi(pos, val, valid, self.grid)
            idx = cells({"pos": pos, "valid": valid})  # padded slots write to a dropped extra cell
            hit = x.new_zeros(b, self.n_cells + 1).scatter_(1, torch.where(idx < 0, self.n_cells, idx),
                                                            1.0)[:, : self.n_cells]  # fmt: skip
            feats += [near, hit]
        g = torch.stack(feats, dim=-1).reshape(b, self.n_cells // self.patch, -1)
        centres = self.grid.to(x).reshape(-1, self.patch).mean(1)[:, None]
        h = (
            self.embed(torch.cat([g, self.fourier(centres).expand(b, -1, -1)], dim=-1))
            + temb[:, None]
        )
        tokens = torch.cat(
            [self.fourier(pos), val, noise[:, None].expand(-1, pos.shape[1], 1)], dim=-1
        )
        z = self.encoder(tokens, valid, bias=temb)
        for attend, read in zip(self.self_blocks, self.cross_blocks, strict=True):
            h = read(attend(h), z)
        return self.head(h).reshape(b, self.n_cells)


def _register() -> None:
    from ..train.models import NETS, register_net

    if NETS.get("field-denoiser") is not FieldDenoiser:
        register_net("field-denoiser", FieldDenoiser, replace=True)


_register()


def field_config(steps: int, **overrides: Any) -> Any:
    """The TrainConfig of a reconstruction model: :data:`FIELD_DEFAULTS` + ``steps``."""
    from ..train.config import TrainConfig

    values = {**FIELD_DEFAULTS, "steps": int(steps), "description": "field reconstruction"}
    values["net_options"] = {**values["net_options"], **overrides.pop("net_options", {})}
    return TrainConfig.from_dict({**values, **overrides})


def train_field_model(
    u: Tensor,
    out_dir: str | os.PathLike,
    *,
    steps: int,
    m_range: tuple[int, int] = (4, 40),
    noises: tuple[float, ...] = (0.0,),
    progress: bool = True,
    resume: bool = True,
    **overrides: Any,
) -> tuple[Any, dict[str, Any]]:
    """Train the conditional model on fields ``u`` (N, 128) with random sensor sets per step;
    returns the EMA model (CPU, eval) and the trainer's summary."""
    from ..data.batch import TrainingSet
    from ..train.trainer import Trainer

    data = TrainingSet(torch.as_tensor(u, dtype=torch.float32) / SCALE,
                       transforms=[SensorTransform(m_range, noises)])  # fmt: skip
    config = field_config(steps, **overrides)
    trainer = Trainer(config, out_dir, data=data, progress=progress)
    summary = trainer.fit(resume=resume)
    return trainer.ema.module.to("cpu").eval(), summary


@torch.no_grad()
def reconstruct(
    model: Any,
    sensors: dict[str, Tensor],
    n_samples: int,
    *,
    sampler: str = "dpm-solver++",
    steps: int = 20,
    seed: int = 0,
    batch: int = 2048,
    scale: float = SCALE,
) -> Tensor:
    """``n_samples`` reconstructions (S, N, 128) in physical units of the fields whose sensor
    sets are ``sensors`` (physical units), drawn in batches of about ``batch`` rows."""
    from ..core.samplers import sample

    cond = scaled(sensors, scale)
    n, dtype = cond["pos"].shape[0], next(iter(model.net.parameters()), torch.zeros(())).dtype
    dtype = dtype if dtype.is_floating_point else torch.float32
    per = max(1, batch // n_samples)
    out = []
    for i, start in enumerate(range(0, n, per)):
        rows = {k: v[start : start + per].to(dtype if v.is_floating_point() else v.dtype)
                for k, v in cond.items()}  # fmt: skip
        k = rows["pos"].shape[0]
        rep = {key: v.repeat_interleave(n_samples, dim=0) for key, v in rows.items()}
        x = sample(model, (k * n_samples, N_CELLS), sampler=sampler, steps=steps, seed=seed + i,
                   cond=rep)  # fmt: skip
        out.append(x.reshape(k, n_samples, N_CELLS).transpose(0, 1))
    return torch.cat(out, dim=1).double() * scale


# --------------------------------------------------------------------------- baselines
def _with_boundary(sensors: dict[str, Tensor], i: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted positions and readings of field ``i`` with u(0) = u(1) = 0 added."""
    ok = sensors["valid"][i].cpu().numpy()
    xs = np.concatenate([[0.0, 1.0], sensors["pos"][i, ok, 0].double().cpu().numpy()])
    ys = np.concatenate([[0.0, 0.0], sensors["val"][i, ok, 0].double().cpu().numpy()])
    order = np.argsort(xs)
    return xs[order], ys[order]


def interpolate(sensors: dict[str, Tensor], kind: str = "linear") -> Tensor:
    """Linear (``numpy.interp``) or natural cubic-spline (``scipy.interpolate.CubicSpline``)
    interpolation of every field's readings and the two boundary zeros: (N, 128)."""
    from scipy.interpolate import CubicSpline

    if kind not in ("linear", "cubic"):
        raise ValueError(f"kind must be 'linear' or 'cubic', got {kind!r}")
    grid, out = X.numpy(), []
    for i in range(sensors["pos"].shape[0]):
        xs, ys = _with_boundary(sensors, i)
        out.append(np.interp(grid, xs, ys) if kind == "linear" else CubicSpline(
            xs, ys, bc_type="natural")(grid))  # fmt: skip
    return torch.from_numpy(np.stack(out))


class Kriging:
    """Gaussian-process regression (simple kriging around the training mean field) with
    scikit-learn: :meth:`fit` picks the kernel family (RBF, Matern 3/2, Matern 5/2, rational
    quadratic -- a scale mixture of RBFs -- each times a constant plus a white nugget) and its
    hyperparameters (``restarts`` extra random starts) by the log marginal likelihood of
    ``n_fit`` training fields on the full grid (independent draws of one GP; sklearn sums the
    likelihood over the columns); :meth:`predict` conditions on each field's sensors (noise
    variance ``noise^2`` on top of the nugget, the boundary zeros exact) with the kernel fixed."""

    def __init__(self, n_fit: int = 256, seed: int = 0, restarts: int = 2):
        self.n_fit, self.seed, self.restarts = int(n_fit), int(seed), int(restarts)
        self.kernel_: Any = None

    def fit(self, u: Tensor) -> Kriging:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import (
            RBF,
            ConstantKernel,
            Matern,
            RationalQuadratic,
            WhiteKernel,
        )  # fmt: skip

        u = torch.as_tensor(u, dtype=torch.float64).cpu().numpy()
        self.mean_ = u.mean(0)
        rows = np.random.default_rng(self.seed).permutation(len(u))[: self.n_fit]
        resid, grid = (u[rows] - self.mean_).T, X.numpy()[:, None]
        fits = {}
        for name, base in (("rbf", RBF(0.1, (1e-3, 10.0))), ("matern32", Matern(0.1, (1e-3, 10.0), nu=1.5)),
                           ("matern52", Matern(0.1, (1e-3, 10.0), nu=2.5)),
                           ("rational-quadratic", RationalQuadratic(0.1, 1.0, (1e-3, 10.0)))):  # fmt: skip
            kernel = ConstantKernel(0.2, (1e-4, 1e2)) * base + WhiteKernel(1e-4, (1e-10, 1e-1))
            with warnings.catch_warnings():  # a nugget at its lower bound (smooth fields) is fine
                warnings.simplefilter("ignore", ConvergenceWarning)
                gp = GaussianProcessRegressor(kernel, alpha=1e-10, n_restarts_optimizer=self.restarts,
                                              random_state=self.seed)  # fmt: skip
                gp.fit(grid, resid)
            fits[name] = (gp.log_marginal_likelihood_value_, gp.kernel_)
        self.family_ = max(fits, key=lambda k: fits[k][0])
        self.lml_ = {k: float(v[0]) for k, v in fits.items()}
        self.kernel_ = fits[self.family_][1]
        return self

    def _mean_at(self, xs: np.ndarray) -> np.ndarray:
        return np.interp(xs, np.concatenate([[0.0], X.numpy(), [1.0]]),
                         np.concatenate([[0.0], self.mean_, [0.0]]))  # fmt: skip

    def predict(self, sensors: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Predictive mean and std (N, 128) of the field at every cell."""
        from sklearn.gaussian_process import GaussianProcessRegressor

        if self.kernel_ is None:
            raise ValueError("Kriging.predict before fit")
        grid, means, stds = X.numpy()[:, None], [], []
        for i in range(sensors["pos"].shape[0]):
            xs, ys = _with_boundary(sensors, i)
            sd = float(sensors["noise"][i, 0])
            alpha = np.where((xs == 0.0) | (xs == 1.0), 1e-10, sd * sd + 1e-10)
            gp = GaussianProcessRegressor(self.kernel_, alpha=alpha, optimizer=None)
            mu, std = gp.fit(xs[:, None], ys - self._mean_at(xs)).predict(grid, return_std=True)
            means.append(mu + self.mean_)
            stds.append(std)
        return torch.from_numpy(np.stack(means)), torch.from_numpy(np.stack(stds))


# --------------------------------------------------------------------------- scores
def unobserved(sensors: dict[str, Tensor]) -> Tensor:
    """(N, 128) True at the cells without a sensor (where every method is scored)."""
    idx = cells(sensors)
    hit = torch.zeros(idx.shape[0], N_CELLS + 1, dtype=torch.bool)
    hit.scatter_(1, torch.where(idx < 0, N_CELLS, idx).cpu(), True)
    return ~hit[:, :N_CELLS]


def shock_cells(u: Tensor, fraction: float = 0.1) -> Tensor:
    """(N, 128) True at each field's steepest ``fraction`` of cells (largest |du/dx|, central
    differences with the zero boundaries): where the field is least Gaussian."""
    pad = torch.nn.functional.pad(torch.as_tensor(u, dtype=torch.float64), (1, 1))
    grad = (pad[:, 2:] - pad[:, :-2]).abs()
    k = max(1, round(fraction * N_CELLS))
    return grad >= grad.topk(k, dim=1).values[:, -1:]


def _per_field(err: Tensor, crps: Tensor, inside: Tensor, mask: Tensor, shock: Tensor) -> dict:
    mean = lambda v, m: (torch.where(m, v, 0.0).sum(1) / m.sum(1)).numpy()  # noqa: E731
    both = mask & shock
    return {"rmse": np.sqrt(mean(err**2, mask)), "crps": mean(crps, mask),
            "cover": mean(inside.double(), mask), "shock_rmse": np.sqrt(mean(err**2, both))}  # fmt: skip


def band_rank(s: int) -> int:
    """The 1-based rank ``k`` of the band ``[X_(k), X_(s + 1 - k)]`` of ``s`` samples closest to
    a central 90% interval: ``k = max(1, round(0.05 (s + 1)))``."""
    return max(1, round(0.05 * (s + 1)))


def exact_coverage(s: int) -> float:
    """How often that band covers a fresh draw from the samples' own distribution (any
    continuous one): ``(s + 1 - 2k) / (s + 1)``, exactly 0.9 when ``s + 1`` is a multiple of 20."""
    return (s + 1 - 2 * band_rank(s)) / (s + 1)


def score_samples(samples: Tensor, u: Tensor, mask: Tensor, shock: Tensor) -> dict[str, np.ndarray]:
    """Per-field scores of samples (S, N, 128) of fields ``u`` over ``mask``: RMSE of the sample
    mean, the fair ensemble CRPS, coverage of the order-statistic band of :func:`band_rank`
    (calibrated samples cover :func:`exact_coverage`), RMSE on ``shock & mask``."""
    from ..metrics.probabilistic import crps_ensemble

    x, y = samples.double().cpu(), torch.as_tensor(u, dtype=torch.float64)
    k, xs = band_rank(x.shape[0]), torch.sort(x, dim=0).values
    lo, hi = xs[k - 1], xs[x.shape[0] - k]
    crps = crps_ensemble(x, y, fair=True) if x.shape[0] > 1 else (x[0] - y).abs()
    return _per_field(x.mean(0) - y, crps, (lo <= y) & (y <= hi), mask, shock)


def score_gaussian(mean: Tensor, std: Tensor, u: Tensor, mask: Tensor, shock: Tensor) -> dict:
    """:func:`score_samples` of a Gaussian predictive: its closed-form CRPS and exact 90% interval."""
    from ..metrics.probabilistic import crps_gaussian

    y = torch.as_tensor(u, dtype=torch.float64)
    return _per_field(
        mean - y, crps_gaussian(mean, std, y), (y - mean).abs() <= Z90 * std, mask, shock
    )


def score_point(pred: Tensor, u: Tensor, mask: Tensor, shock: Tensor) -> dict:
    """A point estimate: its CRPS is |error|; its interval has zero width (coverage 0)."""
    err = pred.double() - torch.as_tensor(u, dtype=torch.float64)
    return _per_field(err, err.abs(), err == 0, mask, shock)


# --------------------------------------------------------------------------- a Gaussian oracle
class GaussianFieldOracle(nn.Module):
    """The exact eps of a Gaussian prior field N(mean, cov) conditioned on each row's sensors,
    noised by ``process``: with the kriging posterior N(m, C), ``x_t ~ N(alpha m, alpha^2 C +
    sigma^2 I)`` and ``eps = sigma (alpha^2 C + sigma^2 I)^-1 (x_t - alpha m)``. Rows sharing a
    sensor set share one solve. Same call as :class:`FieldDenoiser` (model units)."""

    def __init__(self, mean: Tensor, cov: Tensor, process: Any):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float64))
        self.register_buffer("cov", torch.as_tensor(cov, dtype=torch.float64))
        self.process = process

    def posterior(self, idx: Tensor, val: Tensor, sd: float) -> tuple[Tensor, Tensor]:
        """Posterior mean and covariance given readings ``val`` at cells ``idx``."""
        k_oo = self.cov[idx][:, idx] + sd**2 * torch.eye(len(idx), dtype=torch.float64)
        k_go = self.cov[:, idx]
        gain = torch.linalg.solve(k_oo, k_go.T).T
        return self.mean + gain @ (val - self.mean[idx]), self.cov - gain @ k_go.T

    def forward(self, x: Tensor, t: Tensor, pos: Tensor, val: Tensor, valid: Tensor,
                noise: Tensor | None = None) -> Tensor:  # fmt: skip
        b, idx = x.shape[0], cells({"pos": pos, "valid": valid})
        t = torch.as_tensor(t, dtype=torch.float64).reshape(-1).expand(b)
        noise = torch.zeros(b, 1) if noise is None else noise
        keys = torch.cat([idx.double(), val[..., 0].double(), noise.double()], dim=1)
        uniq, inverse = torch.unique(keys, dim=0, return_inverse=True)
        out = torch.empty(b, x.shape[1], dtype=torch.float64)
        for j in range(len(uniq)):
            rows = (inverse == j).nonzero()[:, 0]
            ok = valid[rows[0]]
            m, c = self.posterior(
                idx[rows[0], ok], val[rows[0], ok, 0].double(), float(noise[rows[0], 0])
            )
            lam, vec = torch.linalg.eigh(c)  # (a^2 C + s^2 I)^-1 = V diag(1 / (a^2 l + s^2)) V^T
            a = self.process.alpha(t[rows]).double()[:, None]
            s = self.process.sigma(t[rows]).double()[:, None]
            coef = ((x[rows].double() - a * m) @ vec) / (a**2 * lam.clamp(min=0) + s**2)
            out[rows] = s * (coef @ vec.T)
        return out.to(x.dtype)


# --------------------------------------------------------------------------- a deterministic rival
def train_regressor(
    u: Tensor,
    path: str | os.PathLike,
    *,
    steps: int,
    m_range: tuple[int, int] = (4, 40),
    noises: tuple[float, ...] = (0.0,),
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    net_options: dict[str, Any] | None = None,
) -> FieldDenoiser:
    """The paper's deterministic rival (a network on the Voronoi encoding trained by MSE, its
    "VCNN" role): the same :class:`FieldDenoiser` fed x_t = 0 at t = 0, regressing u / SCALE
    with Adam (warm-up, cosine decay) on fresh sensor sets; the weights are kept at ``path``
    (a safetensors file: a finished run is loaded, not retrained)."""
    net = FieldDenoiser(**{**FIELD_DEFAULTS["net_options"], **(net_options or {})})
    path = os.fspath(path)
    if os.path.isfile(path):
        apply_tensors(net, read_safetensors(path)[0], path)
        return net.eval()
    torch.manual_seed(seed)
    g, tf = torch.Generator().manual_seed(seed), SensorTransform(m_range, noises)
    x0 = torch.as_tensor(u, dtype=torch.float32) / SCALE
    opt = torch.optim.AdamW(net.parameters(), lr=lr)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, (k + 1) / warm) * 0.5 * (
        1 + np.cos(np.pi * min(k, steps) / steps)))  # fmt: skip
    for _ in range(int(steps)):
        rows = torch.randint(len(x0), (batch_size,), generator=g)
        batch = tf(Batch(x0[rows]), g)
        zero = torch.zeros_like(batch.x0)
        loss = (net(zero, torch.zeros(batch_size), **batch.cond) - batch.x0).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
    write_safetensors(path, {k: v.contiguous() for k, v in net.state_dict().items()})  # atomic
    return net.eval()


@torch.no_grad()
def regress(net: FieldDenoiser, sensors: dict[str, Tensor]) -> Tensor:
    """The regressor's field estimate (N, 128) in physical units."""
    cond = {k: v.float() if v.is_floating_point() else v for k, v in scaled(sensors, SCALE).items()}
    n = cond["pos"].shape[0]
    return net(torch.zeros(n, N_CELLS), torch.zeros(n), **cond).double() * SCALE
