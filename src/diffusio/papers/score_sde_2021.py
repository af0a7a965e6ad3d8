"""Score SDE (Song, Sohl-Dickstein, Kingma, Kumar, Ermon & Poole, ICLR 2021, arXiv:2011.13456),
reproduced on the 2-D ``8gaussians`` toy.

The paper writes diffusion as a forward SDE (eq. 5)

    dx = f(x, t) dt + g(t) dw,

whose time reversal (eq. 6, Anderson 1982) needs only the score of the noised marginals,

    dx = [f(x, t) - g(t)^2 grad_x log p_t(x)] dt + g(t) dw-bar,

and whose *probability-flow ODE* (eq. 13) has the same marginals p_t:

    dx/dt = f(x, t) - 1/2 g(t)^2 grad_x log p_t(x).

Three forward SDEs are compared: VE (eq. 9, the continuous limit of SMLD/NCSN,
``dx = sqrt(d sigma^2/dt) dw``), VP (eq. 11, the limit of DDPM,
``dx = -1/2 beta(t) x dt + sqrt(beta(t)) dw``) and sub-VP (eq. 17, the VP drift with
``g(t)^2 = beta(t) (1 - exp(-2 int_0^t beta))``). A score model is trained per SDE by denoising
score matching (eq. 7) with ``lambda(t) = sigma(t)^2``: our eps-prediction MSE is exactly that
objective, since ``sigma^2 ||s_theta + eps / sigma||^2 = ||eps_theta - eps||^2``.

Samplers (:mod:`diffusio.core.samplers`): Euler--Maruyama on eq. 6; predictor--corrector
(Algorithm 1, with the VE/VP instances of Algorithms 2-3: a reverse-diffusion predictor, eq. 46,
and one Langevin corrector step at signal-to-noise ratio ``snr``); the probability-flow ODE by
Heun's method and by adaptive RK45. The likelihood is the ODE's instantaneous change of
variables (eq. 39-40, App. D.2) with the exact divergence, as 2-D allows.

What is measured (:func:`reproduce`): per SDE, sample quality against network evaluations (NFE)
for every sampler -- sliced Wasserstein, MMD and a per-mode chi-square against the exact
mixture, each next to its noise floor -- and the ODE negative log-likelihood against the data's
exact entropy, at several solver tolerances (NLL against NFE).
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..core.model import DiffusionModel
from ..core.oracle import GaussianMixture
from ..core.samplers import sample
from ..data.toys import sample_toy, toy_entropy, toy_mixture
from ..metrics import data_nll, mean_and_stderr, mmd, sliced_wasserstein
from ..plotting import new_figure, scatter_panels
from ..train.config import TrainConfig, build_model, load_config, load_data
from .report import Report, fmt
from .runs import train_or_load

__all__ = [
    "DEFAULT",
    "QUICK",
    "SDES",
    "Floor",
    "SamplerRun",
    "Settings",
    "evaluate_nll",
    "evaluate_samples",
    "noise_floors",
    "ode_nll",
    "record_trajectories",
    "reproduce",
    "sampler_plan",
    "sde_configs",
    "ve_sigma_max",
]


# --------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class Settings:
    """The scale of one run (``QUICK`` for ``--quick``, ``DEFAULT`` otherwise)."""

    steps: int  # training steps per SDE
    n_samples: int  # samples per sampler setting (and per exact reference set)
    n_nll: int  # held-out data points for the ODE NLL
    em_steps: tuple[int, ...]  # Euler-Maruyama steps
    pc_steps: tuple[int, ...]  # N: predictor-corrector at N, predictor alone at N and 2N
    heun_steps: tuple[int, ...]  # probability-flow ODE, Heun steps (2 NFE each)
    nll_tolerances: tuple[float, ...]  # rtol = atol of the likelihood's RK45 solve
    floor_pairs: int = 10  # exact sample-set pairs for each metric's noise floor
    snr: float = 0.16  # Langevin corrector signal-to-noise ratio (paper's CIFAR-10 VE value)
    rk45_tol: float = 1e-5  # rtol = atol of the RK45 sampler (the paper's)
    n_plot: int = 1000  # points per scatter panel
    n_paths: int = 16  # trajectories per panel
    path_steps: int = 200  # sampler steps of the trajectory figure
    n_data: int = 100_000  # training set size


QUICK = Settings(
    steps=1200,
    n_samples=800,
    n_nll=300,
    em_steps=(100, 250),
    pc_steps=(50,),
    heun_steps=(10, 25),
    nll_tolerances=(1e-3, 1e-5),
    n_plot=800,
)
DEFAULT = Settings(
    steps=8000,
    n_samples=2000,
    n_nll=1000,
    em_steps=(50, 200, 1000),
    pc_steps=(50, 250),
    heun_steps=(10, 25, 50),
    nll_tolerances=(1e-2, 1e-3, 1e-5),
)


NAME = "score-sde-2021"
TOY = "8gaussians"
PRESET = "toy-8gaussians"
MMD_BANDWIDTH = 0.35
"""MMD kernel width in data units: the std of each 8gaussians mode (0.5 / 1.414 = 0.354)."""
SAMPLE_SEED = 10  # prior and noise of every sampler run (common random numbers)
REFERENCE_SEED = 1  # the exact sample set model samples are compared with
FLOOR_SEED = 100  # exact sample-set pairs for the noise floor: seeds 100, 101, 102, ...
NLL_SEED = 7  # held-out data points for the ODE NLL
FLOOR_SDS = 3.0
"""A value is "at the floor" within FLOOR_SDS standard deviations of the floor's mean."""
SIGNIFICANCE = 2.0
"""Two samplers' chi2 differ when the gap exceeds SIGNIFICANCE combined bootstrap standard errors."""
BOOTSTRAP_DRAWS = 100
KL_GOOD, KL_FAIR = 0.05, 0.2
"""ODE NLL minus entropy (nats) for "reproduced" and "partly reproduced" likelihood claims."""
ODE_NFE_FRACTION = 0.25
"""The ODE "needs far fewer NFE" when it matches the longest SDE run with at most this share."""


@dataclass(frozen=True)
class SDE:
    """One forward SDE of the paper: a label, the process name and the equation it is."""

    label: str
    process: str
    equation: str


SDES: tuple[SDE, ...] = (
    SDE("VP", "vp-linear", "eq. 11, beta 0.1 to 20"),
    SDE("sub-VP", "sub-vp", "eq. 17, beta 0.1 to 20"),
    SDE("VE", "ve", "eq. 9, sigma 0.01 to sigma_max"),
)


# --------------------------------------------------------------------------- training
def ve_sigma_max(config: TrainConfig, n: int = 4000) -> tuple[float, float]:
    """(rounded-up, measured) maximum pairwise distance of the standardized training data.

    Song & Ermon (2020, technique 1), used for the paper's VE SDE: ``sigma_max`` should be as
    large as the largest distance between training points, so the prior covers the data. The
    distance is measured on the first ``n`` standardized training rows and rounded up to an
    integer (a stable config, hence a stable cache key).
    """
    x = load_data(config).to(torch.float64)
    y = (x - x.mean(0)) / x.std(0, unbiased=False)
    distance = float(torch.cdist(y[:n], y[:n]).max())
    return float(math.ceil(distance)), distance


def sde_configs(settings: Settings) -> dict[str, TrainConfig]:
    """The toy preset (eps prediction = lambda(t) = sigma^2 weighting) with each SDE's process."""
    base = load_config(PRESET, steps=settings.steps, n_data=settings.n_data)
    configs = {}
    for sde in SDES:
        options: dict[str, Any] = {}
        if sde.process == "ve":
            options = {"sigma_min": 0.01, "sigma_max": ve_sigma_max(base)[0]}
        configs[sde.label] = base.replace(
            process=sde.process, process_options=options, description=f"{NAME} {sde.label}"
        )
    return configs


@dataclass
class Trained:
    """A trained model with its data normalizer and training summary."""

    model: DiffusionModel
    normalizer: Any
    summary: dict[str, Any]
    config: TrainConfig


def train_all(configs: dict[str, TrainConfig], out_dir: str | os.PathLike) -> dict[str, Trained]:
    """Train (or reuse the cached runs of) every SDE's config."""
    trained = {}
    for label, config in configs.items():
        slug = label.lower().replace("-", "")
        model, normalizer, summary = train_or_load(config, out_dir, slug, progress=True)
        trained[label] = Trained(model, normalizer, summary, config)
    return trained


# --------------------------------------------------------------------------- sample quality
def reference(n: int, seed: int) -> Tensor:
    """n exact toy samples (float64, data units)."""
    return sample_toy(TOY, n, seed=seed).to(torch.float64)


@functools.cache
def _mixture() -> GaussianMixture:
    """The toy's exact density (one instance, so its reference mode statistics are cached)."""
    return toy_mixture(TOY)


def _chi2(x: Tensor) -> float:
    """Per-mode chi-square per degree of freedom against the exact mixture (exact ~ 1)."""
    return _mixture().mode_discrepancy(x)


METRICS: dict[str, Callable[[Tensor, Tensor], float]] = {
    "sw": lambda x, y: sliced_wasserstein(x, y),
    "mmd": lambda x, y: mmd(x, y, MMD_BANDWIDTH),
    "chi2": lambda x, y: _chi2(x),
}
"""Sample-quality metrics ``metric(samples, exact_reference)`` in data units; lower is better."""


def quality(x: Tensor, ref: Tensor) -> dict[str, float]:
    """Every metric of samples x (data units) against an exact reference set."""
    x = x.to(torch.float64)
    return {name: float(fn(x, ref)) for name, fn in METRICS.items()}


def mode_spread(x: Tensor) -> float:
    """Mean within-mode std of samples x over the exact one (1 = exact; above 1 = blurred
    modes, below 1 = over-sharpened)."""
    mix = _mixture()
    got, ref = mix.mode_stats(x.to(torch.float64)), mix.reference_stats()
    return float((got["std"] / ref["std"]).mean())


def chi2_stderr(x: Tensor, draws: int = BOOTSTRAP_DRAWS, seed: int = 0) -> float:
    """Bootstrap standard error of the mode chi-square of samples x (rows drawn with
    replacement): its sampling noise grows with its value, so the exact-sample floor's spread
    understates it for imperfect samples."""
    gen = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    values = [_chi2(x[torch.randint(n, (n,), generator=gen)]) for _ in range(draws)]
    return float(torch.tensor(values, dtype=torch.float64).std())


@dataclass(frozen=True)
class Floor:
    """A metric between exact sample sets of the size being evaluated: mean and std."""

    mean: float
    sd: float

    def level(self) -> float:
        """The largest value still counted as "at the floor"."""
        return self.mean + FLOOR_SDS * self.sd

    def at(self, value: float) -> bool:
        return value <= self.level()


def noise_floors(n: int, pairs: int) -> dict[str, Floor]:
    """Each metric between ``pairs`` independent pairs of exact sample sets of size n: what an
    exact sampler scores (as :func:`diffusio.metrics.with_noise_floor`, repeated for a spread)."""
    values: dict[str, list[float]] = {name: [] for name in METRICS}
    for k in range(pairs):
        a = reference(n, FLOOR_SEED + 2 * k)
        b = reference(n, FLOOR_SEED + 2 * k + 1)
        for name, value in quality(a, b).items():
            values[name].append(value)
    floors = {}
    for name, vals in values.items():
        v = torch.tensor(vals, dtype=torch.float64)
        floors[name] = Floor(float(v.mean()), float(v.std()) if pairs > 1 else 0.0)
    return floors


@dataclass(frozen=True)
class SamplerRun:
    """One sampler setting: a family (EM, P, PC, ODE Heun, ODE RK45), steps and options."""

    family: str
    sampler: str
    steps: int | None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.family if self.steps is None else f"{self.family} {self.steps}"


FAMILIES = ("EM", "P", "PC", "ODE Heun", "ODE RK45")


def sampler_plan(settings: Settings) -> list[SamplerRun]:
    """Every sampler setting: Euler--Maruyama; the reverse-diffusion predictor alone (P) at N and
    2N steps and with one Langevin corrector (PC) at N steps (paper Table 1's P1000 / P2000 /
    PC1000); the probability-flow ODE by Heun and by adaptive RK45."""
    plan = [SamplerRun("EM", "euler-maruyama", s) for s in settings.em_steps]
    p_steps = sorted({s for n in settings.pc_steps for s in (n, 2 * n)})
    plan += [SamplerRun("P", "pc", s, {"n_corrector": 0}) for s in p_steps]
    plan += [
        SamplerRun("PC", "pc", s, {"n_corrector": 1, "snr": settings.snr})
        for s in settings.pc_steps
    ]
    plan += [SamplerRun("ODE Heun", "ode-heun", s) for s in settings.heun_steps]
    tol = settings.rk45_tol
    plan.append(SamplerRun("ODE RK45", "ode-rk45", None, {"rtol": tol, "atol": tol}))
    return plan


def _to_data(x: Tensor, normalizer: Any | None) -> Tensor:
    x = x.detach().to(torch.float64)
    return normalizer.inverse(x) if normalizer is not None else x


def evaluate_samples(
    model: DiffusionModel,
    normalizer: Any | None,
    plan: Sequence[SamplerRun],
    n: int,
    seed: int = SAMPLE_SEED,
) -> tuple[list[dict[str, Any]], dict[str, Tensor]]:
    """Run every sampler of ``plan`` for n samples; return one row per run (family, steps, nfe,
    seconds and every metric against the exact reference) and the samples in data units."""
    ref = reference(n, REFERENCE_SEED)
    rows, samples = [], {}
    for run in plan:
        x, stats = sample(
            model, (n, 2), run.sampler, run.steps, seed=seed, return_stats=True, **run.options
        )
        x = _to_data(x, normalizer)
        samples[run.label] = x
        row = {
            "family": run.family,
            "steps": run.steps,
            "nfe": int(stats["nfe"]),
            **quality(x, ref),
        }
        row["chi2_se"], row["spread"] = chi2_stderr(x), mode_spread(x)
        rows.append({**row, "seconds": round(float(stats["seconds"]), 2)})
    return rows, samples


# --------------------------------------------------------------------------- likelihood
def ode_nll(
    model: DiffusionModel, normalizer: Any | None, x: Tensor, tol: float
) -> tuple[Tensor, int]:
    """Per-row probability-flow ODE NLL (eq. 39-40, exact divergence) of data x in data units,
    solved by RK45 at ``rtol = atol = tol``, and the solve's NFE."""
    nats, stats = data_nll(
        model, x, normalizer, exact=True, seed=0, rtol=tol, atol=tol, return_stats=True
    )
    return nats.detach().cpu(), int(stats["nfe"])


def evaluate_nll(
    model: DiffusionModel, normalizer: Any | None, x: Tensor, tolerances: Sequence[float]
) -> tuple[list[dict[str, Any]], Tensor]:
    """ODE NLL of data x at each tolerance: one row per tolerance with NFE, the NLL's mean and
    standard error, and ``kl`` = mean(NLL(x) + log p(x)), the paired estimate of
    KL(data || model) (0 for an exact model); plus the per-row NLL at the tightest tolerance."""
    log_p = _mixture().log_prob(x.to(torch.float64))
    rows, tightest = [], None
    for tol in sorted(tolerances, reverse=True):
        nats, nfe = ode_nll(model, normalizer, x, tol)
        mean, se = mean_and_stderr(nats)
        kl, kl_se = mean_and_stderr(nats + log_p)
        rows.append({"tol": tol, "nfe": nfe, "nll": mean, "nll_se": se, "kl": kl, "kl_se": kl_se})
        tightest = nats
    return rows, tightest


# --------------------------------------------------------------------------- trajectories
class _Recorder:
    """A state constraint (:mod:`diffusio.core.steering`) that records (t, x) and changes
    nothing: the sampler's path, without touching the sampler."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.states: list[Tensor] = []

    def __call__(self, x: Tensor, t: float | None, ctx: Any) -> Tensor:
        self.times.append(0.0 if t is None else float(t))
        self.states.append(x.detach().clone())
        return x


def record_trajectories(
    model: DiffusionModel, normalizer: Any | None, sampler: str, steps: int, n: int, seed: int
) -> tuple[list[float], Tensor]:
    """Times and states (T, n, 2), in data units, of n paths of ``sampler``."""
    recorder = _Recorder()
    sample(model, (n, 2), sampler, steps, seed=seed, constraints=[recorder])
    states = torch.stack([_to_data(s, normalizer) for s in recorder.states])
    return recorder.times, states


# --------------------------------------------------------------------------- figures
def _figure_runs(plan: Sequence[SamplerRun]) -> list[SamplerRun]:
    """The run with the most steps of each sampler family, in family order."""
    last: dict[str, SamplerRun] = {}
    for run in plan:
        if run.family not in last or (run.steps or 0) >= (last[run.family].steps or 0):
            last[run.family] = run
    return [last[f] for f in FAMILIES if f in last]


def _samples_figure(
    samples: dict[str, dict[str, Tensor]], plan: Sequence[SamplerRun], n: int
) -> Any:
    """Rows: SDEs; columns: exact data, then the largest setting of each sampler family."""
    runs = _figure_runs(plan)
    panels = []
    for label, by_run in samples.items():
        panels.append((f"{label}: exact data", reference(n, REFERENCE_SEED)))
        panels += [(f"{label}: {r.label}", by_run[r.label][:n]) for r in runs]
    return scatter_panels(panels, ncols=len(runs) + 1, lim=4.2, size=2.4, point_size=1.5)


def _log_axis(axis: Any, set_scale: Callable[[str], None]) -> None:
    """A log-scaled axis labelled with plain numbers at 1, 2 and 5 times each power of ten."""
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    set_scale("log")
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(ScalarFormatter())
    axis.set_minor_formatter(NullFormatter())


def _quality_figure(rows: dict[str, list[dict[str, Any]]], floors: dict[str, Floor]) -> Any:
    """Quality (rows: MMD, chi-square) against NFE (log x) per SDE, floor as a band."""
    metrics = (("mmd", f"MMD$^2$ (bandwidth {MMD_BANDWIDTH})"), ("chi2", "mode $\\chi^2$/dof"))
    fig = new_figure(4.2 * len(rows), 3.2 * len(metrics))
    axes = fig.subplots(len(metrics), len(rows), squeeze=False)
    for j, (label, sde_rows) in enumerate(rows.items()):
        for i, (key, name) in enumerate(metrics):
            ax = axes[i, j]
            floor = floors[key]
            ax.axhspan(floor.mean - floor.sd, floor.mean + floor.sd, color="0.85", label="floor")
            ax.axhline(floor.level(), color="0.5", lw=0.8, ls="--")
            for k, family in enumerate(FAMILIES):
                pts = sorted((r["nfe"], r[key]) for r in sde_rows if r["family"] == family)
                if pts:
                    xs, ys = zip(*pts, strict=True)
                    ax.plot(xs, ys, marker="o", ms=4, color=f"C{k}", label=family)
            _log_axis(ax.xaxis, ax.set_xscale)
            if key == "chi2":
                _log_axis(ax.yaxis, ax.set_yscale)
            ax.set_title(f"{label}: {name}", fontsize=9)
            ax.set_xlabel("network evaluations (NFE)", fontsize=8)
            ax.tick_params(labelsize=7)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def _trajectory_figure(paths: dict[str, dict[str, tuple[list[float], Tensor]]]) -> Any:
    """First coordinate against t: reverse SDE (EM) and probability-flow ODE per SDE."""
    fig = new_figure(8.0, 2.4 * len(paths))
    axes = fig.subplots(len(paths), 2, squeeze=False)
    for i, (label, by_sampler) in enumerate(paths.items()):
        for j, (name, (times, states)) in enumerate(by_sampler.items()):
            ax = axes[i, j]
            ax.plot(times, states[:, :, 0].numpy(), lw=0.7, alpha=0.8)
            ax.set_xlim(1.0, 0.0)
            ax.set_ylim(-8, 8)
            ax.set_title(f"{label}: {name}", fontsize=9)
            ax.set_xlabel("t (reverse time)", fontsize=8)
            ax.set_ylabel("$x_1$", fontsize=8)
            ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- claims
def _label(row: dict[str, Any]) -> str:
    """A result row's sampler as text: family and steps."""
    return row["family"] if row["steps"] is None else f"{row['family']} {row['steps']}"


def _chi2_text(row: dict[str, Any]) -> str:
    return f"{fmt(row['chi2'])} +/- {fmt(row['chi2_se'])}"


def _row(rows: list[dict[str, Any]], family: str, steps: int | None) -> dict[str, Any] | None:
    return next((r for r in rows if r["family"] == family and r["steps"] == steps), None)


def _longest(rows: list[dict[str, Any]], family: str) -> dict[str, Any]:
    """The run of ``family`` with the most network evaluations."""
    return max((r for r in rows if r["family"] == family), key=lambda r: r["nfe"])


def _claim_quality(report: Report, rows: dict[str, list], floors: dict[str, Floor]) -> None:
    """(1) Every SDE learns the data: its longest reverse-SDE run (Euler--Maruyama, fixed in
    advance rather than the best of many noisy runs) is at the noise floor."""
    parts, at_all, at_sharp = [], 0, 0
    for label, sde_rows in rows.items():
        em = _longest(sde_rows, "EM")
        ok = {k: floors[k].at(em[k]) for k in METRICS}
        at_all += all(ok.values())
        at_sharp += ok["mmd"] and ok["chi2"]
        parts.append(
            f"{label} ({_label(em)}): SW {fmt(em['sw'])}, MMD {fmt(em['mmd'])}, "
            f"chi2 {_chi2_text(em)}"
        )
    n = len(rows)
    verdict = (
        "reproduced"
        if at_all == n
        else "partly reproduced"
        if at_sharp == n or at_all > 0
        else "not reproduced"
    )
    report.claim(
        "VE, VP and sub-VP SDEs all learn the data",
        "CIFAR-10: all three give state-of-the-art samples; best FID 2.20 (VE, NCSN++ cont. "
        "deep, PC sampler)",
        "; ".join(parts),
        f"floor levels (mean + {FLOOR_SDS:g} sd): SW {fmt(floors['sw'].level())}, MMD "
        f"{fmt(floors['mmd'].level())}, chi2 {fmt(floors['chi2'].level())}; {at_all}/{n} SDEs "
        f"at the floor on all three metrics, {at_sharp}/{n} on MMD and chi2",
        verdict,
    )


def _compare(a: dict[str, Any], b: dict[str, Any]) -> int:
    """+1 if run a's chi2 is lower (better) than run b's by more than SIGNIFICANCE combined
    standard errors, -1 if higher by as much, 0 if the difference is within noise."""
    margin = SIGNIFICANCE * math.hypot(a["chi2_se"], b["chi2_se"])
    if a["chi2"] < b["chi2"] - margin:
        return 1
    return -1 if a["chi2"] > b["chi2"] + margin else 0


def _pc_comparisons(
    rows: dict[str, list], settings: Settings, doubled: bool
) -> tuple[list[int], list[str]]:
    """PC at N steps against P at N (or 2N) steps, on chi-square, for every SDE and N."""
    outcomes, parts = [], []
    for label, sde_rows in rows.items():
        for n in settings.pc_steps:
            pc, p = _row(sde_rows, "PC", n), _row(sde_rows, "P", 2 * n if doubled else n)
            if pc is None or p is None:
                continue
            outcomes.append(_compare(pc, p))
            parts.append(f"{label} N={n}: {_chi2_text(pc)} vs {_chi2_text(p)}")
    return outcomes, parts


def _verdict_from(outcomes: list[int]) -> str:
    if outcomes and all(o == 1 for o in outcomes):
        return "reproduced"
    if any(o == 1 for o in outcomes) and not any(o == -1 for o in outcomes):
        return "partly reproduced"
    return "not reproduced"


def _outcome_text(outcomes: list[int]) -> str:
    wins, losses = outcomes.count(1), outcomes.count(-1)
    return (
        f"PC better in {wins}, worse in {losses}, within noise in "
        f"{len(outcomes) - wins - losses} of {len(outcomes)} comparisons (a difference counts "
        f"beyond {SIGNIFICANCE:g} combined bootstrap standard errors)"
    )


def _claim_pc(report: Report, rows: dict[str, list], settings: Settings) -> None:
    """(2) PC beats the predictor alone at equal predictor steps, and at equal NFE."""
    outcomes, parts = _pc_comparisons(rows, settings, doubled=False)
    report.claim(
        "PC sampling beats the predictor alone at equal predictor steps",
        "Table 1: reverse-diffusion PC1000 vs P1000, FID 3.21 vs 4.79 (VE/SMLD); smaller "
        "gains for VP/DDPM",
        "mode chi2, PC(N) vs P(N): " + "; ".join(parts),
        _outcome_text(outcomes),
        _verdict_from(outcomes),
    )
    outcomes, parts = _pc_comparisons(rows, settings, doubled=True)
    report.claim(
        "PC beats the predictor alone at equal NFE (PC N vs P 2N)",
        "Table 1: PC1000 beats P2000 (VE reverse diffusion: FID 3.21 vs 4.74)",
        "mode chi2, PC(N) vs P(2N): " + "; ".join(parts),
        _outcome_text(outcomes),
        _verdict_from(outcomes),
    )


def _claim_nll(report: Report, nll_rows: dict[str, list], entropy: float) -> None:
    """(3a) The probability-flow ODE gives likelihoods close to the best possible (entropy)."""
    best = {label: min(r, key=lambda row: row["tol"]) for label, r in nll_rows.items()}
    kls = [b["kl"] for b in best.values()]
    worst = max(kls)
    verdict = (
        "reproduced"
        if worst <= KL_GOOD
        else "partly reproduced"
        if min(kls) <= KL_FAIR
        else "not reproduced"
    )
    measured = "; ".join(
        f"{label} {fmt(b['nll'])} +/- {fmt(b['nll_se'])} nats (NFE {b['nfe']})"
        for label, b in best.items()
    )
    gaps = "; ".join(f"{label} {b['kl']:+.3f} +/- {b['kl_se']:.3f}" for label, b in best.items())
    report.claim(
        "The probability-flow ODE gives exact, near-optimal likelihoods",
        "CIFAR-10: 2.99 bits/dim (deep sub-VP), a record for the time",
        f"ODE NLL {measured}; entropy of the data {fmt(entropy)} nats",
        f"NLL - entropy (paired KL estimate): {gaps} nats; thresholds {KL_GOOD} / {KL_FAIR}",
        verdict,
    )


def paired_difference(a: Tensor, b: Tensor) -> tuple[float, float]:
    """Mean and standard error of a - b over the same data points."""
    return mean_and_stderr(a - b)


def _claim_subvp(report: Report, diff: tuple[float, float] | None) -> None:
    """(3b) sub-VP gives better likelihoods than VP."""
    if diff is None:
        return
    mean, se = diff
    verdict = "reproduced" if mean < -2 * se else "not reproduced"
    direction = (
        "sub-VP lower (better)"
        if mean < -2 * se
        else "VP lower (better)"
        if mean > 2 * se
        else "no difference beyond 2 standard errors"
    )
    report.claim(
        "sub-VP gives better likelihoods than VP",
        "Table 2: sub-VP below VP for every architecture, e.g. DDPM++ cont. deep 2.99 vs "
        "3.13 bits/dim",
        f"NLL(sub-VP) - NLL(VP) on the same points: {mean:+.4f} +/- {se:.4f} nats",
        direction,
        verdict,
    )


def _as_good(a: dict[str, Any], b: dict[str, Any], floors: dict[str, Floor]) -> bool:
    """Run a is as good as run b: its chi2 exceeds b's by at most one combined standard error
    and its MMD b's by at most one floor sd -- or the metric is at the floor anyway."""
    chi2_ok = a["chi2"] <= b["chi2"] + math.hypot(a["chi2_se"], b["chi2_se"])
    mmd = floors["mmd"]
    mmd_ok = a["mmd"] <= b["mmd"] + mmd.sd or mmd.at(a["mmd"])
    return (chi2_ok or floors["chi2"].at(a["chi2"])) and mmd_ok


def _ode_match(
    sde_rows: list[dict[str, Any]], floors: dict[str, Floor]
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The longest EM run and the cheapest ODE run as good as it (None if there is none)."""
    em = _longest(sde_rows, "EM")
    good = [r for r in sde_rows if r["family"].startswith("ODE") and _as_good(r, em, floors)]
    return em, min(good, key=lambda r: r["nfe"]) if good else None


def _claim_ode_nfe(report: Report, rows: dict[str, list], floors: dict[str, Floor]) -> None:
    """(4) The probability-flow ODE reaches the SDE samplers' quality with far fewer NFE."""
    parts, fewer = [], 0
    for label, sde_rows in rows.items():
        em, ode = _ode_match(sde_rows, floors)
        if ode is None:
            parts.append(f"{label}: no ODE run matches EM {em['steps']}")
            continue
        share = ode["nfe"] / em["nfe"]
        fewer += share <= ODE_NFE_FRACTION
        parts.append(
            f"{label}: {_label(ode)} (NFE {ode['nfe']}, chi2 {_chi2_text(ode)}) vs "
            f"EM {em['steps']} (NFE {em['nfe']}, chi2 {_chi2_text(em)})"
        )
    n = len(rows)
    verdict = "reproduced" if fewer == n else "partly reproduced" if fewer else "not reproduced"
    rk45 = [r["nfe"] for sde_rows in rows.values() for r in sde_rows if r["family"] == "ODE RK45"]
    report.claim(
        "The probability-flow ODE needs far fewer NFE than SDE samplers",
        "Fig. 3 / Sec. 4.3: adaptive RK45 cuts NFE by over 90% at equal visual quality",
        "; ".join(parts) + f"; RK45 NFE {', '.join(map(str, rk45))}",
        f"{fewer}/{n} SDEs matched with at most {ODE_NFE_FRACTION:.0%} of the EM NFE (matched: "
        "chi2 within one combined standard error, MMD within one floor sd, or at the floor)",
        verdict,
    )


# --------------------------------------------------------------------------- report text
def _parameters(config: TrainConfig) -> int:
    """Parameter count of the network a config builds (2-D data)."""
    return sum(p.numel() for p in build_model(config, dim=2).parameters())


def _scale_text(settings: Settings, config: TrainConfig, sigma_max: tuple[float, float]) -> str:
    net = config.net_options
    quick = (
        f" This is a reduced run ({settings.steps} steps instead of {DEFAULT.steps}): its "
        "models are undertrained, so its verdicts describe that scale only."
        if settings.steps < DEFAULT.steps
        else ""
    )
    return (
        "**Paper:** CIFAR-10 (32x32x3), CelebA-HQ and LSUN with NCSN++ / DDPM++ U-Nets of "
        "tens of millions of parameters trained for about 1.3M iterations; FID 2.20 and IS "
        "9.89 (VE, NCSN++ cont. deep), NLL 2.99 bits/dim (sub-VP, DDPM++ cont. deep). "
        f"**Here:** the 2-D `{TOY}` toy (8 Gaussian modes, exact density known), standardized; "
        f"a residual TimeMLP (hidden {net['hidden']}, depth {net['depth']}, "
        f"{_parameters(config) / 1e6:.2f}M parameters) per SDE, {settings.steps} AdamW steps "
        f"at batch {config.batch_size} (lr {config.lr:g}, cosine decay, EMA {config.ema_decay}) on "
        f"{settings.n_data} training points, on a CPU. VE uses sigma_min = 0.01 and "
        f"sigma_max = {sigma_max[0]:g} (the paper's rule: the largest pairwise distance of the "
        f"standardized data, measured {sigma_max[1]:.2f}); VP and sub-VP use beta from 0.1 to "
        f"20 as in the paper. Sample quality from {settings.n_samples} samples per setting "
        "instead of FID from 50k; NLL in nats per 2-D point on "
        f"{settings.n_nll} held-out points instead of bits/dim on the test set.{quick}"
    )


def _setup_text(settings: Settings, floors: dict[str, Floor]) -> str:
    return (
        "Each model predicts eps and is trained on the mean squared error of eps, which is "
        "denoising score matching (eq. 7) with the paper's weighting lambda(t) = sigma(t)^2. "
        "Samplers: **EM** = Euler-Maruyama on the reverse SDE (eq. 6); **P** = the "
        "reverse-diffusion predictor alone (eq. 46); **PC** = the same predictor with one "
        f"Langevin corrector step per step (Algorithms 1-3, snr = {settings.snr}), NFE counting "
        "corrector evaluations; **ODE Heun** / **ODE RK45** = the probability-flow ODE (eq. 13) "
        f"with Heun's method or adaptive RK45 (rtol = atol = {settings.rk45_tol:g}). The SDE "
        "samplers end with one denoising evaluation (Tweedie), counted in the NFE. All runs "
        f"share one seed. Metrics in data units against {settings.n_samples} exact samples: "
        f"sliced Wasserstein (**SW**), unbiased MMD^2 with a Gaussian kernel of bandwidth "
        f"{MMD_BANDWIDTH} (the modes' std), and the per-mode **chi2**/dof of the mode weights, "
        "means and spreads against the exact mixture (about 1 for exact samples; it is the "
        "sharpest of the three). The noise floor is each metric between two exact sample sets "
        f"of the same size, over {settings.floor_pairs} pairs: SW "
        f"{fmt(floors['sw'].mean)} +/- {fmt(floors['sw'].sd)}, MMD {fmt(floors['mmd'].mean)} "
        f"+/- {fmt(floors['mmd'].sd)}, chi2 {fmt(floors['chi2'].mean)} +/- "
        f"{fmt(floors['chi2'].sd)}. A value is *at the floor* below mean + {FLOOR_SDS:g} sd. "
        "The chi2 of imperfect samples is noisier than the floor's (its variance grows with its "
        f"value), so each run's chi2 carries a bootstrap standard error ({BOOTSTRAP_DRAWS} "
        "resamples); two samplers differ when their chi2 values differ by more than "
        f"{SIGNIFICANCE:g} combined standard errors. SW is the weakest of the three at these "
        "sample sizes (its floor is wide) and serves as a coarse check only."
    )


def _quality_rows(sde_rows: list[dict[str, Any]], floors: dict[str, Floor]) -> list[list]:
    table = [
        [_label(r), r["nfe"], r["sw"], r["mmd"], _chi2_text(r), r["spread"], r["seconds"]]
        for r in sde_rows
    ]
    f = floors
    floor = [f"{fmt(f[k].mean)} +/- {fmt(f[k].sd)}" for k in ("sw", "mmd", "chi2")]
    table.append(["exact samples (floor)", "-", *floor, "1", "-"])
    return table


QUALITY_HEADER = ["sampler", "NFE", "SW", "MMD^2", "chi2/dof", "mode spread", "seconds"]


def _pc_table(rows: dict[str, list], settings: Settings) -> list[list]:
    table = []
    for label, sde_rows in rows.items():
        for n in settings.pc_steps:
            runs = [_row(sde_rows, "P", n), _row(sde_rows, "P", 2 * n), _row(sde_rows, "PC", n)]
            if any(r is None for r in runs):
                continue
            p, p2, pc = runs
            chi2 = [_chi2_text(r) for r in (p, p2, pc)]
            table.append([label, n, *chi2, p["mmd"], p2["mmd"], pc["mmd"]])
    return table


PC_HEADER = [
    "SDE", "N", "chi2 P(N)", "chi2 P(2N)", "chi2 PC(N)", "MMD P(N)", "MMD P(2N)", "MMD PC(N)",
]  # fmt: skip


def _nll_table(nll_rows: dict[str, list], entropy: float) -> list[list]:
    return [
        [label, r["tol"], r["nfe"], r["nll"], r["nll_se"], r["nll"] - entropy, r["kl"], r["kl_se"]]
        for label, rows in nll_rows.items()
        for r in rows
    ]


NLL_HEADER = [
    "SDE", "rtol = atol", "NFE", "NLL (nats)", "+/- se", "NLL - entropy", "KL (paired)", "+/- se",
]  # fmt: skip


# --------------------------------------------------------------------------- driver
def _evaluate_all(
    trained: dict[str, Trained], settings: Settings
) -> tuple[dict[str, list], dict[str, dict[str, Tensor]], dict[str, list], dict[str, Tensor]]:
    plan = sampler_plan(settings)
    x_nll = reference(settings.n_nll, NLL_SEED)
    rows, samples, nll_rows, nats = {}, {}, {}, {}
    for label, t in trained.items():
        rows[label], samples[label] = evaluate_samples(
            t.model, t.normalizer, plan, settings.n_samples
        )
        nll_rows[label], nats[label] = evaluate_nll(
            t.model, t.normalizer, x_nll, settings.nll_tolerances
        )
    return rows, samples, nll_rows, nats


def _paths(trained: dict[str, Trained], settings: Settings) -> dict[str, dict[str, Any]]:
    paths = {}
    for label, t in trained.items():
        args = (t.model, t.normalizer)
        n, steps = settings.n_paths, settings.path_steps
        paths[label] = {
            "reverse SDE (EM)": record_trajectories(*args, "euler-maruyama", steps, n, seed=3),
            "probability-flow ODE (Heun)": record_trajectories(*args, "ode-heun", steps, n, seed=3),
        }
    return paths


def _record_metrics(
    report: Report,
    trained: dict[str, Trained],
    rows: dict[str, list],
    nll_rows: dict[str, list],
    floors: dict[str, Floor],
    entropy: float,
    subvp_diff: tuple[float, float] | None,
) -> None:
    m = report.metrics
    m["entropy"] = entropy
    m["floors"] = {k: {"mean": f.mean, "sd": f.sd} for k, f in floors.items()}
    for label, t in trained.items():
        m[label] = {
            "config": t.config.to_dict(),
            "train_seconds": t.summary.get("train_seconds"),
            "final_loss": t.summary.get("loss"),
            "samples": rows[label],
            "nll": nll_rows[label],
        }
    if subvp_diff is not None:
        m["nll_subvp_minus_vp"] = {"mean": subvp_diff[0], "se": subvp_diff[1]}


def reproduce(
    out_dir: str | os.PathLike, quick: bool = False, _settings: Settings | None = None
) -> dict[str, Any]:
    """Train VP, sub-VP and VE score models on the toy, sample them with every sampler, compute
    ODE likelihoods, and write ``report.md``, figures and ``metrics.json`` to ``out_dir``.

    ``_settings`` overrides the scale (tests use a tiny one). Returns the metrics written.
    """
    settings = _settings or (QUICK if quick else DEFAULT)
    configs = sde_configs(settings)
    sigma_max = ve_sigma_max(configs["VP"])
    report = Report(
        NAME,
        "Score-Based Generative Modeling through Stochastic Differential Equations "
        "(Song, Sohl-Dickstein, Kingma, Kumar, Ermon, Poole)",
        "ICLR 2021 (oral), arXiv:2011.13456",
        out_dir,
        quick,
        _scale_text(settings, configs["VP"], sigma_max),
    )
    trained = train_all(configs, out_dir)
    rows, samples, nll_rows, nats = _evaluate_all(trained, settings)
    floors = noise_floors(settings.n_samples, settings.floor_pairs)
    entropy = float(toy_entropy(TOY))
    subvp_diff = (
        paired_difference(nats["sub-VP"], nats["VP"]) if {"sub-VP", "VP"} <= set(nats) else None
    )

    _claim_quality(report, rows, floors)
    _claim_pc(report, rows, settings)
    _claim_nll(report, nll_rows, entropy)
    _claim_subvp(report, subvp_diff)
    _claim_ode_nfe(report, rows, floors)

    report.section("Setup", _setup_text(settings, floors))
    report.table(
        ["SDE", "process", "options", "steps", "final loss", "train seconds"],
        [
            [
                label,
                f"{t.config.process} ({next(s.equation for s in SDES if s.label == label)})",
                ", ".join(f"{k}={v}" for k, v in t.config.process_options.items()) or "defaults",
                t.summary.get("step"),
                t.summary.get("loss"),
                t.summary.get("train_seconds"),
            ]
            for label, t in trained.items()
        ],
    )
    report.section(
        "Sample quality against network evaluations",
        "Lower is better for SW, MMD^2 and chi2; the last row of each table is the "
        "exact-sample floor (mean +/- sd over pairs). *Mode spread* is the samples' mean "
        "within-mode std over the exact one (1 is exact, above 1 blurred modes).",
    )
    for label, sde_rows in rows.items():
        report.text(f"**{label} SDE**")
        report.table(QUALITY_HEADER, _quality_rows(sde_rows, floors))
    report.figure(
        _quality_figure(rows, floors),
        "quality_vs_nfe.png",
        "Sample quality against NFE (log scale). Grey band: the exact-sample floor (mean +/- "
        f"sd); dashed: mean + {FLOOR_SDS:g} sd.",
    )
    report.figure(
        _samples_figure(samples, sampler_plan(settings), settings.n_plot),
        "samples.png",
        "Samples per SDE (rows): exact data, then the largest setting of each sampler.",
    )
    report.section(
        "Predictor against predictor-corrector (paper Table 1)",
        "The reverse-diffusion predictor alone at N and 2N steps (P), and with one Langevin "
        "corrector per step (PC, NFE 2N).",
    )
    report.table(PC_HEADER, _pc_table(rows, settings))
    report.section(
        "Likelihood by the probability-flow ODE",
        f"Exact entropy of the data: {entropy:.4f} nats. KL (paired) = mean(NLL(x) + log p(x)) "
        "over the same points, the model's KL divergence from the data, far less noisy than "
        "NLL - entropy. The NFE of the adaptive solve falls with the tolerance; each NFE is one "
        "score evaluation plus its exact divergence.",
    )
    report.table(NLL_HEADER, _nll_table(nll_rows, entropy))
    if subvp_diff is not None:
        report.text(
            f"Paired NLL difference sub-VP - VP on the same {settings.n_nll} points: "
            f"{subvp_diff[0]:+.4f} +/- {subvp_diff[1]:.4f} nats."
        )
    report.figure(
        _trajectory_figure(_paths(trained, settings)),
        "trajectories.png",
        "First coordinate of the same prior draws along the reverse SDE (noisy paths) and the "
        "probability-flow ODE (smooth, deterministic paths), from t = 1 to 0.",
    )
    _record_metrics(report, trained, rows, nll_rows, floors, entropy, subvp_diff)
    return report.write()
