"""diffusio samplers vs diffusers schedulers at equal NFE: solvers and grids apart, defaults
chosen on held-out problems.

    .venv/bin/python benchmarks/samplers.py [--quick] [--out benchmarks/results/samplers.json]

1. Accuracy. The model is the exact eps of a Gaussian mixture (``GaussianMixture.model``,
   float64) under ``vp-linear``, whose discrete table is diffusers' default linear betas
   (1e-4..0.02, T = 1000). A diffusers step at integer timestep i calls the same network at
   ``t = table.times[i]``, so both libraries see identical noise levels and identical prior
   draws (same seed, same ``randn``). The distance to the truth is the toy scorer's
   ``discrepancy_parts`` (``mode_discrepancy``: a chi-square per dof of per-mode weight / mean /
   spread; about 1 for exact samples), reported with its noise floor (exact samples of the same
   size and seeds). Every configuration is kept.

   * Two sets of problems. *Held-out* mixtures (:func:`heldout_mixtures`: 1, 2, 3 and 10
     dimensions, data scales from 0.6 to 8, skewed weights, narrow and wide modes) are where the
     configurations are *chosen*; the two *reported* 2-D mixtures (:func:`mixtures`) are where
     they are compared. Choosing a default on the problems it is then scored on is in-sample
     tuning; here the held-out choice of each library is scored on problems it never saw.
   * Solver and grid apart. Every row has a ``solver`` and a ``grid``. The same grid runs in
     both libraries (diffusers given diffusio's grids through
     ``DPMSolverMultistepScheduler.set_timesteps(timesteps=...)``; diffusio given diffusers'
     grids through ``times=``), so a difference on one grid is the solver's; one solver on
     different grids (each library's default, every built-in option) is the grid's.
   * diffusers' built-in options: ``DPMSolverMultistepScheduler`` (2M midpoint, 2M heun, 3M),
     ``UniPCMultistepScheduler`` (bh2, bh1, each of order 2 and 3), ``DEISMultistepScheduler``
     (order 2, 3), each on every ``timestep_spacing``, ``use_karras_sigmas``,
     ``use_exponential_sigmas``, ``use_beta_sigmas`` (and ``use_lu_lambdas`` for DPM), with both
     ``final_sigmas_type`` where the class has it; ``DDIMScheduler`` and ``DDPMScheduler`` on
     every spacing. diffusio: ``dpm-solver++`` on every ``spacing`` with and without the final
     denoise and ``lower_order_final``; ``ddim``, ``ddpm``, ``ode-heun``.
2. Overhead. A full sampling run minus the same number of raw network calls, per step, on a small
   MLP (float32) and on the oracle (float64), batch 256, one thread, interleaved repeats, medians.
3. JSON (atomic write) and a markdown summary on stdout.
"""

from __future__ import annotations

import argparse
import inspect
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import diffusers  # noqa: E402
from _common import environment, median, timed  # noqa: E402

from diffusio.core.model import DiffusionModel  # noqa: E402
from diffusio.core.oracle import GaussianMixture  # noqa: E402
from diffusio.core.processes import make_process  # noqa: E402
from diffusio.core.samplers import SAMPLERS, sample, time_grid  # noqa: E402
from diffusio.core.samplers.base import GRID_SPACINGS  # noqa: E402
from diffusio.io import write_json_atomic  # noqa: E402
from diffusio.metrics.stats import mean_se, paired_difference  # noqa: E402
from diffusio.toy.scorer import discrepancy_parts  # noqa: E402
from diffusio.toy.sweep import SamplerRun, run_sampler  # noqa: E402

THREADS = 1
DIFFUSERS_BASE = {
    "num_train_timesteps": 1000,
    "beta_start": 1e-4,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "prediction_type": "epsilon",
}
SPACINGS = ("linspace", "leading", "trailing")
SIGMA_GRIDS = {  # diffusers' sigma schedules (they ignore timestep_spacing)
    "karras": {"use_karras_sigmas": True},
    "exponential": {"use_exponential_sigmas": True},
    "beta": {"use_beta_sigmas": True},
    "lu": {"use_lu_lambdas": True},  # DPMSolverMultistep only
}
#: solver variants per multistep class; the first is the class default
VARIANTS: dict[str, dict[str, dict[str, Any]]] = {
    "DPMSolverMultistepScheduler": {
        "DPM++2M": {}, "DPM++2M-heun": {"solver_type": "heun"}, "DPM++3M": {"solver_order": 3},
    },
    "UniPCMultistepScheduler": {
        "UniPC-bh2": {}, "UniPC-bh1": {"solver_type": "bh1"},
        "UniPC-bh2-o3": {"solver_order": 3}, "UniPC-bh1-o3": {"solver_type": "bh1", "solver_order": 3},
    },
    "DEISMultistepScheduler": {"DEIS-2": {}, "DEIS-3": {"solver_order": 3}},
}  # fmt: skip
MULTISTEP = tuple(VARIANTS)
HAS_FINAL = ("DPMSolverMultistepScheduler", "UniPCMultistepScheduler")


# ----------------------------------------------------------------------------- problems
def mixtures() -> dict[str, GaussianMixture]:
    """The two reported problems."""
    angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    ring = torch.stack([4 * angles.cos(), 4 * angles.sin()], 1)
    return {
        # 8-gaussians ring, radius 4, std 0.35, weights 1:2:3:4:1:2:3:4
        "ring8": GaussianMixture(ring, 0.35, [1, 2, 3, 4, 1, 2, 3, 4]),
        # three unequal, anisotropic modes
        "three": GaussianMixture(
            [[-3.0, -1.0], [1.0, 2.5], [2.5, -2.0]],
            [[0.3, 0.3], [0.8, 0.5], [0.5, 1.0]],
            [0.55, 0.3, 0.15],
        ),
    }


#: held-out problems: name -> (dimension, modes, scale of the means, (min, max) per-axis std,
#: weights (None: log-normal draws), seed). None of them is a reported problem's dimension *and*
#: scale; they are generated, not hand-placed, from the seed.
HELDOUT_SPECS: dict[str, tuple[int, int, float, tuple[float, float], list[float] | None, int]] = {
    "1d-skewed": (1, 4, 3.0, (0.1, 0.5), [0.6, 0.25, 0.1, 0.05], 1),
    "2d-narrow": (2, 5, 0.6, (0.04, 0.1), None, 2),
    "2d-wide": (2, 5, 8.0, (0.8, 2.0), None, 3),
    "3d-six": (3, 6, 2.5, (0.2, 0.6), None, 4),
    "10d-four": (10, 4, 1.0, (0.2, 0.5), None, 5),
}


def heldout_mixtures() -> dict[str, GaussianMixture]:
    """The held-out problems of :data:`HELDOUT_SPECS`: means drawn N(0, scale^2) per axis
    (redrawn until every pair is 3 of the larger stds apart), anisotropic stds uniform in the
    range, weights as given or log-normal (sd 0.8)."""
    out = {}
    for name, (dim, k, scale, (lo, hi), weights, seed) in HELDOUT_SPECS.items():
        gen = torch.Generator().manual_seed(1000 + seed)
        stds = lo + (hi - lo) * torch.rand(k, dim, generator=gen, dtype=torch.float64)
        for _ in range(1000):
            means = scale * torch.randn(k, dim, generator=gen, dtype=torch.float64)
            d = torch.cdist(means, means) + torch.eye(k, dtype=torch.float64) * 1e9
            if bool((d > 3 * hi).all()):
                break
        w = weights if weights is not None else torch.exp(
            0.8 * torch.randn(k, generator=gen, dtype=torch.float64))
        out[name] = GaussianMixture(means, stds, w)
    return out


class TimeMLP(nn.Module):
    """x (N, 2) and t (N,) -> eps (N, 2): 3 hidden layers of 128, SiLU, random init."""

    def __init__(self, dim: int = 2, hidden: int = 128, depth: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(dim + 1, hidden), nn.SiLU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(hidden, hidden), nn.SiLU()]
        layers.append(nn.Linear(hidden, dim))
        self.body = nn.Sequential(*layers)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return self.body(torch.cat([x, t[:, None].to(x.dtype)], dim=1))


# ----------------------------------------------------------------------------- configurations
def _cfg(lib: str, solver: str, grid: str, label: str, default: bool, builtin: bool,
         **extra: Any) -> dict[str, Any]:  # fmt: skip
    return {"lib": lib, "solver": solver, "grid": grid, "label": label, "default": default,
            "builtin": builtin, **extra}  # fmt: skip


def diffusers_configs() -> list[dict[str, Any]]:
    """Every diffusers configuration: the built-in options (``builtin``) and DPM-Solver++ on
    diffusio's grids (``timesteps_from``: a diffusio spacing). ``default`` marks the class
    defaults (plus the overrides every run needs: linear betas, epsilon, no clipping)."""
    cfgs: list[dict[str, Any]] = []
    for cls, short in (("DDPMScheduler", "DDPM"), ("DDIMScheduler", "DDIM")):
        for sp in SPACINGS:  # both classes default to "leading"
            kwargs = {"timestep_spacing": sp, "clip_sample": False}
            cfgs.append(_cfg("diffusers", short, sp, f"{short}({sp})", sp == "leading", True,
                             cls=cls, kwargs=kwargs))  # fmt: skip
    for cls, variants in VARIANTS.items():
        finals = ("zero", "sigma_min") if cls in HAS_FINAL else (None,)
        grids: dict[str, dict[str, Any]] = {sp: {"timestep_spacing": sp} for sp in SPACINGS}
        grids.update({k: v for k, v in SIGMA_GRIDS.items()
                      if k != "lu" or cls == "DPMSolverMultistepScheduler"})  # fmt: skip
        for vi, (solver, vkw) in enumerate(variants.items()):
            for gname, gkw in grids.items():
                for final in finals:
                    fkw = {} if final is None else {"final_sigmas_type": final}
                    grid = gname if final is None else f"{gname}/{final}"
                    default = vi == 0 and gname == "linspace" and final in (None, "zero")
                    cfgs.append(_cfg("diffusers", solver, grid, f"{solver}({grid})", default, True,
                                     cls=cls, kwargs={**vkw, **gkw, **fkw}))  # fmt: skip
    cls = "DPMSolverMultistepScheduler"
    for solver, vkw in VARIANTS[cls].items():  # diffusio's grids, passed in as timesteps
        for sp in GRID_SPACINGS:
            grid = f"diffusio:{sp}@table"
            cfgs.append(_cfg("diffusers", solver, grid, f"{solver}(timesteps=diffusio {sp})",
                             False, False, cls=cls, timesteps_from=sp,
                             kwargs={**vkw, "final_sigmas_type": "sigma_min"}))  # fmt: skip
    return cfgs


def _default(sampler: str, option: str) -> Any:
    """diffusio's own default for a sampler option, read from its signature."""
    return inspect.signature(SAMPLERS[sampler]).parameters[option].default


#: diffusers grids that diffusio also runs (through ``times=``): what solver comparisons use
FOREIGN_GRIDS = ("linspace/zero", "exponential/zero", "linspace/sigma_min", "exponential/sigma_min")


def diffusio_configs() -> list[dict[str, Any]]:
    """diffusio configurations; ``steps`` maps the NFE budget K to the ``steps`` argument."""
    solver_spacing = make_process("vp-linear").solver_spacing
    lof_default = _default("dpm-solver++", "lower_order_final")
    cfgs: list[dict[str, Any]] = []

    def add(sampler, solver, grid, label, options, steps, default=False, builtin=True, **extra):
        cfgs.append(_cfg("diffusio", solver, grid, label, default, builtin, sampler=sampler,
                         options=options, steps=steps, **extra))  # fmt: skip

    for spacing in GRID_SPACINGS:
        for lof in (True, False):
            solver = "dpm-solver++" if lof == lof_default else f"dpm-solver++(lof={lof})"
            tag = "" if lof == lof_default else f", lower_order_final={lof}"
            add("dpm-solver++", solver, spacing, f"dpm-solver++(spacing={spacing}{tag})",
                {"spacing": spacing, "lower_order_final": lof, "denoise": False}, "K",
                default=spacing == solver_spacing and lof == lof_default)  # fmt: skip
            add("dpm-solver++", solver, f"{spacing}/denoise",
                f"dpm-solver++(K-1 steps + denoise, spacing={spacing}{tag})",
                {"spacing": spacing, "lower_order_final": lof, "denoise": True}, "K-1")
    for spacing in GRID_SPACINGS:  # diffusio's grid as diffusers runs it (table-rounded)
        add("dpm-solver++", "dpm-solver++", f"diffusio:{spacing}@table",
            f"dpm-solver++(times=diffusio {spacing} rounded to the table)",
            {"lower_order_final": True}, None, builtin=False, times_from=("diffusio", spacing))
    for grid in FOREIGN_GRIDS:  # diffusers' grids; a zero final sigma = a final denoise
        zero = grid.endswith("/zero")
        add("dpm-solver++", "dpm-solver++", grid, f"dpm-solver++(times=diffusers {grid})",
            {"lower_order_final": not zero, "denoise": zero}, None, builtin=False,
            times_from=("diffusers", grid))  # fmt: skip
    for spacing in ("time", "quadratic"):
        add("ddim", "ddim", f"table:{spacing}", f"ddim(discrete, spacing={spacing})",
            {"spacing": spacing}, "K", spacing == _default("ddim", "spacing"))
    for spacing in ("time", "log-snr", "quadratic"):
        add("ddim", "ddim(continuous)", spacing, f"ddim(discrete=False, spacing={spacing})",
            {"discrete": False, "spacing": spacing}, "K")
    add("ddpm", "ddpm", "table", "ddpm(discrete)", {}, "K", default=True)
    for spacing in ("time", "quadratic"):
        add("ode-heun", "ode-heun", spacing, f"ode-heun(steps=K/2, spacing={spacing})",
            {"spacing": spacing}, "K/2")
    return cfgs


def _steps(rule: str | None, nfe: int) -> int | None:
    return None if rule is None else {"K": nfe, "K-1": nfe - 1, "K/2": nfe // 2}[rule]


def make_scheduler(cfg: dict[str, Any]):
    kwargs = {**DIFFUSERS_BASE, "thresholding": False, **cfg["kwargs"]}
    return getattr(diffusers, cfg["cls"])(**kwargs)


def diffusio_grid_timesteps(spacing: str, nfe: int) -> list[int]:
    """diffusio's ``spacing`` grid of ``nfe`` steps as diffusers timesteps: the ``nfe``
    evaluation times (the grid's last point is its end, not an evaluation) at the nearest table
    index (``set_timesteps(timesteps=...)`` takes integers). With ``final_sigmas_type=
    "sigma_min"`` the run ends at the table's first time, next to diffusio's t_min."""
    process = make_process("vp-linear")
    table = process.discrete().times
    grid = time_grid(process, nfe, spacing)[:-1]
    idx = [int((table - t).abs().argmin()) for t in grid]
    if len(set(idx)) != len(idx):
        raise ValueError(f"diffusio's {spacing} grid at {nfe} steps repeats table entries")
    return idx


def foreign_times(source: tuple[str, str], nfe: int) -> list[float]:
    """A grid of the other library as diffusio ``times=`` for an ``nfe``-evaluation run."""
    process = make_process("vp-linear")
    table = process.discrete().times
    lib, name = source
    if lib == "diffusio":  # what diffusers runs when given diffusio's grid
        return [float(table[i]) for i in diffusio_grid_timesteps(name, nfe)] + [float(table[0])]
    gname, final = name.split("/")
    gkw = SIGMA_GRIDS.get(gname, {"timestep_spacing": gname})
    sched = make_scheduler({"cls": "DPMSolverMultistepScheduler",
                            "kwargs": {**gkw, "final_sigmas_type": final}})  # fmt: skip
    sched.set_timesteps(nfe)
    sigmas = sched.sigmas.double()  # noise levels sigma / alpha, nfe + 1 of them (last: final)
    lam = -2 * torch.log(sigmas[:nfe])
    times = [float(t) for t in process.t_from_log_snr(lam)]
    if final == "sigma_min":
        times.append(float(table[0]))  # nfe steps ending at the table's first time
    # final "zero": these nfe times with denoise=True (nfe - 1 steps and the denoise)
    return times


# ----------------------------------------------------------------------------- running
def diffusers_sample(
    scheduler,
    net: nn.Module,
    times: Tensor | list[Tensor],
    shape: tuple[int, ...],
    steps: int,
    seed: int,
    dtype: torch.dtype,
    timesteps: list[int] | None = None,
) -> tuple[Tensor, int]:
    """The canonical diffusers loop; ``times[i]`` is diffusio's continuous time of timestep i
    (the network gets the integer timestep diffusers hands a UNet)."""
    if timesteps is None:
        scheduler.set_timesteps(steps)
    else:
        scheduler.set_timesteps(timesteps=timesteps)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen, dtype=dtype) * scheduler.init_noise_sigma
    stochastic = isinstance(scheduler, diffusers.DDPMScheduler)
    nfe = 0
    for ts in scheduler.timesteps:
        t = times[int(ts)]  # a table (1-D) or, for timing, per-timestep vectors built up front
        eps = net(x, t if t.dim() else t.expand(shape[0]))
        nfe += 1
        if stochastic:
            x = scheduler.step(eps, ts, x, generator=gen).prev_sample
        else:
            x = scheduler.step(eps, ts, x).prev_sample
    return x, nfe


def _aggregate(per_seed: list[dict[str, float] | None]) -> dict[str, Any]:
    """Mean and standard error over seeds; a seed whose samples are not all finite makes the
    row ``diverged`` (discrepancy None: JSON has no infinity)."""
    if any(p is None for p in per_seed):
        return {"discrepancy": None, "discrepancy_se": None, "diverged": True,
                "per_seed": [None if p is None else round(p["discrepancy"], 4) for p in per_seed]}
    vals = [p["discrepancy"] for p in per_seed]
    mean, se = mean_se(vals)
    keys = ("weight", "mean", "spread", "std_ratio")
    return {
        "discrepancy": mean,
        "discrepancy_se": se if len(vals) > 1 else 0.0,
        "per_seed": [round(v, 4) for v in vals],
        "parts": {k: mean_se([p[k] for p in per_seed])[0] for k in keys},
    }


def _score(mix: GaussianMixture, x: Tensor) -> dict[str, float] | None:
    return discrepancy_parts(mix, x) if bool(torch.isfinite(x).all()) else None


def run_config(cfg: dict[str, Any], mix: GaussianMixture, model: DiffusionModel, nfe: int,
               seeds: list[int], n: int) -> dict[str, Any]:  # fmt: skip
    """One configuration at one NFE over the seeds: the row (NFE checked)."""
    shape = (n, mix.dim)
    per_seed: list[dict[str, float] | None] = []
    row: dict[str, Any] = {k: v for k, v in cfg.items() if k not in ("steps",)}
    row["nfe"] = nfe
    if cfg["lib"] == "diffusers":
        times = model.process.discrete().times
        src = cfg.get("timesteps_from")
        ts = None if src is None else diffusio_grid_timesteps(src, nfe)
        sched = make_scheduler(cfg)
        for seed in seeds:
            x, used = diffusers_sample(sched, model.net, times, shape, nfe, seed, torch.float64, ts)
            if used != nfe:
                raise AssertionError((cfg["label"], used, nfe))
            per_seed.append(_score(mix, x))
        if ts is not None:
            row["timesteps"] = ts
    else:
        options = dict(cfg["options"])
        steps = _steps(cfg["steps"], nfe)
        if "times_from" in cfg:
            options["times"] = foreign_times(cfg["times_from"], nfe)
        used = nfe
        for seed in seeds:
            res = run_sampler(model, SamplerRun(cfg["solver"], cfg["sampler"], steps, options),
                              n, seed, dim=mix.dim)  # fmt: skip
            used = res.nfe
            per_seed.append(_score(mix, res.samples))
        if steps is not None:
            row["steps"] = steps
        if used != nfe:  # e.g. ddim's quadratic table indices collide and are merged
            row["nfe_actual"] = used
    row.update(_aggregate(per_seed))
    return row


def floor_of(mix: GaussianMixture, n: int, seeds: list[int]) -> dict[str, Any]:
    """The noise floor: exact samples of the same size and seeds."""
    return _aggregate([discrepancy_parts(mix, mix.sample(n, seed=10_000 + s)) for s in seeds])


def run_problem(
    mix: GaussianMixture,
    cfgs: list[dict[str, Any]],
    nfes: list[int],
    seeds: list[int],
    n: int,
    log: Callable[[str], None],
    tag: str,
    keep: Callable[[dict[str, Any], int], bool] | None = None,
) -> dict[str, Any]:
    """Every configuration ``keep(cfg, nfe)`` allows at every NFE; 1000 NFE is DDPM only, on
    the first two seeds (every spacing is the full table there)."""
    process = make_process("vp-linear")
    model = mix.model(process, dtype=torch.float64)
    mix.reference_stats()
    res: dict[str, Any] = {"noise_floor": floor_of(mix, n, seeds), "nfe": {}}
    for nfe in nfes:
        start = time.perf_counter()
        rows = []
        for cfg in cfgs:
            if nfe == 1000:
                ddpm = cfg["solver"] == "ddpm" or cfg["solver"] == "DDPM" and cfg["default"]
                if ddpm:
                    rows.append(run_config(cfg, mix, model, nfe, seeds[:2], n))
            elif keep is None or keep(cfg, nfe):
                rows.append(run_config(cfg, mix, model, nfe, seeds, n))
        res["nfe"][str(nfe)] = {"configs": rows}
        log(f"[{tag}] NFE {nfe}: {len(rows)} configs in {time.perf_counter() - start:.1f}s")
    return res


# ----------------------------------------------------------------------------- summaries
def _rows(res: dict[str, Any], nfe: str) -> list[dict[str, Any]]:
    return res["nfe"][nfe]["configs"]


def _brief(r: dict[str, Any] | None) -> dict[str, Any] | None:
    if r is None:
        return None
    out = {"label": r["label"], "discrepancy": r["discrepancy"], "se": r["discrepancy_se"]}
    if "nfe_actual" in r:
        out["nfe_actual"] = r["nfe_actual"]
    return out


def _best(rows: list[dict[str, Any]], pred: Callable[[dict[str, Any]], bool]):
    chosen = [r for r in rows if pred(r) and r["discrepancy"] is not None]
    return _brief(min(chosen, key=lambda r: r["discrepancy"])) if chosen else None


def _by_label(rows: list[dict[str, Any]], label: str) -> dict[str, Any] | None:
    return _brief(next((r for r in rows if r["label"] == label), None))


def is_diffusio_dpm(r: dict[str, Any]) -> bool:
    return r["lib"] == "diffusio" and r["sampler"] == "dpm-solver++" and r["builtin"]


def is_diffusers_multistep(r: dict[str, Any]) -> bool:
    return r["lib"] == "diffusers" and r["cls"] in MULTISTEP and r["builtin"]


#: the held-out choices: which configurations compete for each
CANDIDATES: dict[str, Callable[[dict[str, Any]], bool]] = {
    # diffusio's default grid: dpm-solver++ with its other options at their defaults
    "diffusio_default_grid": lambda r: is_diffusio_dpm(r) and r["solver"] == "dpm-solver++"
    and r["grid"] in GRID_SPACINGS,
    "diffusio_any_dpm_option": is_diffusio_dpm,
    "diffusers_DPM++2M_grid": lambda r: is_diffusers_multistep(r) and r["solver"] == "DPM++2M",
    "diffusers_any_builtin_multistep": is_diffusers_multistep,
}


def geometric_scores(problems: dict[str, Any], pred: Callable[[dict[str, Any]], bool],
                     nfes: list[str]) -> dict[str, float | None]:  # fmt: skip
    """label -> geometric mean over problems and NFEs of discrepancy / noise floor (None if
    the configuration diverged anywhere); the ranking a held-out choice is made by."""
    logs: dict[str, list[float]] = {}
    bad: set[str] = set()
    for res in problems.values():
        floor = res["noise_floor"]["discrepancy"]
        for nfe in nfes:
            for r in _rows(res, nfe):
                if not pred(r):
                    continue
                if r["discrepancy"] is None:
                    bad.add(r["label"])
                else:
                    logs.setdefault(r["label"], []).append(math.log(r["discrepancy"] / floor))
    expected = len(problems) * len(nfes)
    out: dict[str, float | None] = {}
    for label in sorted(set(logs) | bad):
        vals = logs.get(label, [])
        ok = label not in bad and len(vals) == expected
        out[label] = math.exp(sum(vals) / len(vals)) if ok else None
    return dict(sorted(out.items(), key=lambda kv: math.inf if kv[1] is None else kv[1]))


def select_heldout(heldout: dict[str, Any], nfes: list[str]) -> dict[str, Any]:
    """Each candidate set's winner on the held-out problems, with the full ranking."""
    out: dict[str, Any] = {}
    for name, pred in CANDIDATES.items():
        scores = geometric_scores(heldout, pred, nfes)
        chosen = next(iter(scores), None)
        out[name] = {"chosen": chosen, "score": scores.get(chosen), "n_candidates": len(scores),
                     "ranking": scores}  # fmt: skip
    default = next(r["label"] for r in _rows(next(iter(heldout.values())), nfes[0])
                   if r["lib"] == "diffusio" and r["default"] and r["sampler"] == "dpm-solver++")
    grid_rank = out["diffusio_default_grid"]["ranking"]
    out["diffusio_current_default"] = {
        "label": default,
        "score": grid_rank.get(default),
        "rank": list(grid_rank).index(default) + 1 if default in grid_rank else None,
        "is_heldout_choice": default == out["diffusio_default_grid"]["chosen"],
    }
    # the same choice made at each NFE alone (a default serves every NFE; this shows whether
    # one NFE's winner differs)
    out["by_nfe"] = {}
    for nfe in nfes:
        per: dict[str, Any] = {}
        for name, pred in CANDIDATES.items():
            scores = geometric_scores(heldout, pred, [nfe])
            chosen = next(iter(scores), None)
            per[name] = {"chosen": chosen, "score": scores.get(chosen),
                         "top5": dict(list(scores.items())[:5])}  # fmt: skip
        per["diffusio_current_default_score"] = geometric_scores(
            heldout, CANDIDATES["diffusio_default_grid"], [nfe]).get(default)
        out["by_nfe"][nfe] = per
    return out


def shared_grids(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """grid -> {"lib solver": discrepancy} for every grid both libraries ran: the solver
    comparison (same grid, different solvers)."""
    libs: dict[str, set[str]] = {}
    for r in rows:
        libs.setdefault(r["grid"], set()).add(r["lib"])
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        if len(libs[r["grid"]]) == 2 and r["sampler" if r["lib"] == "diffusio" else "cls"] in (
            "dpm-solver++", *MULTISTEP):
            out.setdefault(r["grid"], {})[f"{r['lib']} {r['solver']}"] = r["discrepancy"]
    return out


def grid_comparison(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """solver -> {grid: discrepancy} for diffusio's dpm-solver++ and diffusers' DPM++2M: one
    solver on every grid it ran (the grid comparison)."""
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        if (r["lib"], r["solver"]) in (("diffusio", "dpm-solver++"), ("diffusers", "DPM++2M")):
            out.setdefault(f"{r['lib']} {r['solver']}", {})[r["grid"]] = r["discrepancy"]
    return out


def summarise(res: dict[str, Any], nfe: str, choice: dict[str, Any] | None) -> dict[str, Any]:
    rows = _rows(res, nfe)
    s: dict[str, Any] = {
        "noise_floor": res["noise_floor"]["discrepancy"],
        "diffusio_default": _best(rows, lambda r: is_diffusio_dpm(r) and r["default"]),
        "diffusers_DPM++2M_default": _best(
            rows, lambda r: is_diffusers_multistep(r) and r["solver"] == "DPM++2M" and r["default"]),
        "diffusers_defaults": {r["solver"]: _brief(r) for r in rows
                               if is_diffusers_multistep(r) and r["default"]},
        "in_sample_best_diffusio_dpm": _best(rows, is_diffusio_dpm),
        "in_sample_best_diffusio_any": _best(rows, lambda r: r["lib"] == "diffusio"),
        "in_sample_best_diffusers_multistep": _best(rows, is_diffusers_multistep),
        "in_sample_best_diffusers_any": _best(rows, lambda r: r["lib"] == "diffusers"),
        "diffusio_ddim_default": _best(rows, lambda r: r["sampler" if r["lib"] == "diffusio"
                                       else "cls"] == "ddim" and r["default"]),
        "diffusers_ddim_default": _best(rows, lambda r: r["lib"] == "diffusers"
                                        and r["solver"] == "DDIM" and r["default"]),
        "diffusio_ddpm": _best(rows, lambda r: r["lib"] == "diffusio" and r["solver"] == "ddpm"),
        "diffusers_ddpm_default": _best(rows, lambda r: r["lib"] == "diffusers"
                                        and r["solver"] == "DDPM" and r["default"]),
        "solver_same_grid": shared_grids(rows),
        "grid_same_solver": grid_comparison(rows),
    }  # fmt: skip
    if choice:
        s["heldout_choice"] = {name: _by_label(rows, c["chosen"]) for name, c in choice.items()
                               if name in CANDIDATES}  # fmt: skip
        # diffusers' held-out choice minus diffusio's, paired over seeds (same prior draws)
        by = {r["label"]: r for r in rows}
        a = by.get(choice["diffusio_any_dpm_option"]["chosen"])
        b = by.get(choice["diffusers_any_builtin_multistep"]["chosen"])
        if a and b and a["discrepancy"] is not None and b["discrepancy"] is not None:
            d, se = paired_difference(b["per_seed"], a["per_seed"])
            s["heldout_choice_difference"] = {
                "what": "diffusers' held-out choice minus diffusio's (paired over seeds)",
                "difference": d, "se": se}  # fmt: skip
    # the same algorithm in both libraries (time-uniform DPM++2M down to the least-noisy table
    # entry): these two numbers should agree, which validates the harness
    twins = ("dpm-solver++(spacing=time)", "DPM++2M(linspace/sigma_min)")
    s["cross_check_same_algorithm"] = {t: r["discrepancy"] for t in twins for r in rows
                                       if r["label"] == t}  # fmt: skip
    return s


def _ddim_consistency(mix, model, times, shape) -> dict[str, Any]:
    """diffusers DDIM ('leading', 10 steps: timesteps 900..0) and diffusio ddim on the same
    table indices take the same steps: their outputs must agree to float32 rounding."""
    cfg = {"cls": "DDIMScheduler", "kwargs": {"timestep_spacing": "leading", "clip_sample": False}}
    x_d, _ = diffusers_sample(make_scheduler(cfg), model.net, times, shape, 10, 0, torch.float64)
    x_o = sample(model, shape, "ddim", timesteps=list(range(0, 1000, 100)), seed=0)
    return {
        "what": "max |diffusers DDIM(leading, 10) - diffusio ddim(timesteps=0,100..900)|",
        "max_abs_diff": float((x_d - x_o).abs().max()),
    }


def accuracy(args, log: Callable[[str], None]) -> dict[str, Any]:
    process = make_process("vp-linear")
    times = process.discrete().times  # float64
    cfgs = diffusers_configs() + diffusio_configs()
    candidates = [c for c in cfgs if c["lib"] == "diffusio" and c["sampler"] == "dpm-solver++"
                  or c["lib"] == "diffusers" and c["cls"] in MULTISTEP]  # fmt: skip
    heldout: dict[str, Any] = {}
    held = heldout_mixtures()
    for name, mix in held.items():
        if args.quick and name not in ("1d-skewed", "10d-four"):
            continue
        heldout[name] = run_problem(mix, candidates, args.heldout_nfes, args.heldout_seeds,
                                    args.n, log, f"held-out {name}")  # fmt: skip
    nfes = [str(k) for k in args.heldout_nfes]
    choice = select_heldout(heldout, nfes)
    for res in heldout.values():
        for nfe in nfes:
            res["nfe"][nfe]["summary"] = summarise(res, nfe, None)
    heldout_solver = {}
    for grid in sorted({g for res in heldout.values() for nfe in nfes
                        for g in summarise(res, nfe, None)["solver_same_grid"]}):  # fmt: skip
        heldout_solver[grid] = geometric_scores(
            heldout, lambda r, g=grid: r["grid"] == g and (is_diffusio_dpm(r) or r["lib"] ==
            "diffusio" and not r["builtin"] and r["sampler"] == "dpm-solver++"
            or r["lib"] == "diffusers" and r["cls"] in MULTISTEP), nfes)  # fmt: skip
    for name, c in choice.items():
        if name in CANDIDATES:
            log(f"held-out choice {name}: {c['chosen']} (score {c['score']:.2f}, "
                f"{c['n_candidates']} candidates)")
    chosen = {c["chosen"] for name, c in choice.items() if name in CANDIDATES and c["chosen"]}
    twins = ("dpm-solver++(spacing=time)", "DPM++2M(linspace/sigma_min)")

    def keep(cfg: dict[str, Any], nfe: int) -> bool:
        """Every configuration up to 20 NFE; beyond, a short list: each class's default, each
        diffusio spacing, the held-out choices and the cross-check pair."""
        if nfe <= 20:
            return True
        if cfg["label"] in chosen or cfg["label"] in twins or cfg["default"]:
            return True
        return cfg["lib"] == "diffusio" and cfg["solver"] == "dpm-solver++" and cfg["builtin"] \
            and cfg["grid"] in GRID_SPACINGS

    reported: dict[str, Any] = {}
    budgets = list(args.nfes) + ([1000] if args.ddpm1000 else [])
    for mname, mix in mixtures().items():
        if args.quick and mname != "ring8":
            continue
        res = run_problem(mix, cfgs, budgets, args.seeds, args.n, log, mname, keep)
        for nfe in res["nfe"]:
            res["nfe"][nfe]["summary"] = summarise(res, nfe, choice)
        model = mix.model(process, dtype=torch.float64)
        res["consistency"] = _ddim_consistency(mix, model, times, (args.n, mix.dim))
        reported[mname] = res
    n_cfg = {
        "diffusers_builtin": sum(c["lib"] == "diffusers" and c["builtin"] for c in cfgs),
        "diffusers_builtin_multistep": sum(is_diffusers_multistep({**c, "builtin": c["builtin"]})
                                           for c in cfgs if c["lib"] == "diffusers"),
        "diffusers_on_diffusio_grids": sum(c["lib"] == "diffusers" and not c["builtin"]
                                           for c in cfgs),
        "diffusio_builtin": sum(c["lib"] == "diffusio" and c["builtin"] for c in cfgs),
        "diffusio_dpm_options": sum(c["lib"] == "diffusio" and c["builtin"]
                                    and c["sampler"] == "dpm-solver++" for c in cfgs),
        "diffusio_on_foreign_grids": sum(c["lib"] == "diffusio" and not c["builtin"]
                                         for c in cfgs),
        "total_reported": len(cfgs),
        "total_heldout": len(candidates),
    }  # fmt: skip
    return {
        "heldout": {
            "problems": {k: {"spec": dict(zip(("dim", "modes", "scale", "std_range",
                                                "weights", "seed"), HELDOUT_SPECS[k], strict=True)),
                             "noise_floor": v["noise_floor"]["discrepancy"]}
                         for k, v in heldout.items()},
            "nfe": args.heldout_nfes,
            "seeds": args.heldout_seeds,
            "selection": "geometric mean over the held-out problems and NFEs of discrepancy / "
            "noise floor; a configuration that diverged anywhere is out",
            "choice": choice,
            "solver_same_grid": heldout_solver,
            "results": heldout,
        },
        "reported": reported,
        "n_configurations": n_cfg,
    }

# ----------------------------------------------------------------------------- overhead
def overhead(args, log: Callable[[str], None]) -> dict[str, Any]:
    process = make_process("vp-linear")
    table_times = process.discrete().times
    torch.manual_seed(0)
    nets = {
        "mlp-f32": DiffusionModel(TimeMLP().float(), process, "eps"),
        "oracle-f64": mixtures()["ring8"].model(process, dtype=torch.float64),
    }
    batch = args.batch
    out: dict[str, Any] = {}
    for name, model in nets.items():
        times = table_times.to(model.dtype)
        shape = (batch, 2)
        scheds = {
            "diffusers DDIM": make_scheduler(
                {"cls": "DDIMScheduler", "kwargs": {"clip_sample": False}}
            ),
            "diffusers DPM++2M": make_scheduler(
                {"cls": "DPMSolverMultistepScheduler", "kwargs": {}}
            ),
            "diffusers UniPC": make_scheduler({"cls": "UniPCMultistepScheduler", "kwargs": {}}),
        }
        res_net: dict[str, Any] = {}
        for K in args.overhead_steps:
            runs = _overhead_runs(model, times, shape, K, scheds)
            names = list(runs)
            samples: dict[str, list[float]] = {k: [] for k in names}
            with torch.no_grad():
                for _ in range(3):  # warm-up
                    for k in names:
                        runs[k]()
                for r in range(args.repeats):  # interleaved, rotating order
                    for j in range(len(names)):
                        k = names[(r + j) % len(names)]
                        samples[k].append(timed(runs[k]))
            raw_s = median(samples["raw network"])
            row: dict[str, Any] = {
                "raw_network_ms": raw_s * 1e3,
                "raw_network_us_per_call": raw_s / K * 1e6,
            }
            for k in names[1:]:
                run_s = median(samples[k])
                # paired within each round (raw and run timed milliseconds apart), so slow
                # drifts of a shared machine cancel; the median over rounds is the estimate
                paired = [a - b for a, b in zip(samples[k], samples["raw network"], strict=True)]
                row[k] = {
                    "run_ms": run_s * 1e3,
                    "run_ms_iqr": _iqr(samples[k]) * 1e3,
                    "overhead_us_per_step": median(paired) / K * 1e6,
                    "overhead_us_per_step_iqr": _iqr(paired) / K * 1e6,
                    "overhead_us_per_step_unpaired": (run_s - raw_s) / K * 1e6,
                }
            res_net[str(K)] = row
            log(
                f"[overhead {name} K={K}] raw {raw_s / K * 1e6:.0f} us/call; "
                + "; ".join(f"{k} {row[k]['overhead_us_per_step']:.0f}" for k in names[1:])
            )
        out[name] = {"by_steps": res_net, "fit": _fit(res_net, names[1:])}
    return out


def _overhead_runs(
    model: DiffusionModel, times: Tensor, shape: tuple[int, int], K: int, scheds: dict[str, Any]
) -> dict[str, Callable[[], Any]]:
    """The timed callables: K raw network calls, then each sampler's full K-NFE run."""
    net, dtype = model.net, model.dtype
    x_fixed = torch.randn(shape, dtype=dtype)
    t_vecs = [times[round(float(i))].expand(shape[0]) for i in torch.linspace(999, 0, K)]

    def raw() -> None:
        for t in t_vecs:
            net(x_fixed, t)

    runs: dict[str, Callable[[], Any]] = {
        "raw network": raw,
        "diffusio ddim": lambda: sample(model, shape, "ddim", steps=K, seed=0),
        "diffusio dpm-solver++": lambda: sample(model, shape, "dpm-solver++", steps=K, seed=0),
    }
    # the time vectors the network gets, built before timing (as raw() has them): the harness's
    # own indexing is not charged to diffusers
    t_table = [times[i].expand(shape[0]) for i in range(len(times))]
    for label, sch in scheds.items():
        runs[label] = lambda sch=sch: diffusers_sample(sch, net, t_table, shape, K, 0, dtype)
    return runs


def _iqr(values: list[float]) -> float:
    v = sorted(values)
    return v[(3 * len(v)) // 4] - v[len(v) // 4]


def _fit(res: dict[str, Any], labels: list[str]) -> dict[str, Any]:
    """Least-squares overhead(K) = fixed + K * per_step over the step counts measured."""
    ks = [int(k) for k in res]
    fit = {}
    for label in labels:
        ys = [res[str(k)][label]["overhead_us_per_step"] * k for k in ks]  # total overhead, us
        if len(ks) < 2:
            fit[label] = {"per_step_us": ys[0] / ks[0], "fixed_us": 0.0}
            continue
        km, ym = sum(ks) / len(ks), sum(ys) / len(ys)
        slope = sum((k - km) * (y - ym) for k, y in zip(ks, ys, strict=True)) / sum(
            (k - km) ** 2 for k in ks
        )
        fit[label] = {"per_step_us": slope, "fixed_us": ym - slope * km}
    return fit




# ----------------------------------------------------------------------------- report
def _fmt(entry: dict[str, Any] | None, with_label: bool = False) -> str:
    if entry is None:
        return "-"
    if entry.get("discrepancy") is None:
        return "diverged"
    s = f"{entry['discrepancy']:.2f}"
    if entry.get("se"):
        s += f" ± {entry['se']:.2f}"
    return f"{s} `{entry['label']}`" if with_label else s


def _diff(s: dict[str, Any]) -> str:
    d = s.get("heldout_choice_difference")
    return "-" if d is None else f"{d['difference']:+.2f} ± {d['se']:.2f}"


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def markdown(result: dict[str, Any]) -> str:
    acc = result.get("accuracy", {})
    lines: list[str] = []
    if acc:
        held = acc["heldout"]
        ch = held["choice"]
        cur = ch["diffusio_current_default"]
        lines += [
            "Held-out choice (geometric mean of discrepancy / floor over "
            f"{len(held['problems'])} held-out problems x NFE {held['nfe']}; lower is better)",
            "",
            "| candidate set | candidates | chosen | score | runner-up |",
            "|---|---|---|---|---|",
        ]
        for name in CANDIDATES:
            c = ch[name]
            rank = list(c["ranking"].items())
            runner = f"`{rank[1][0]}` {_num(rank[1][1])}" if len(rank) > 1 else "-"
            lines.append(f"| {name} | {c['n_candidates']} | `{c['chosen']}` | "
                         f"{_num(c['score'])} | {runner} |")  # fmt: skip
        lines += ["", f"diffusio's current default `{cur['label']}`: score {_num(cur['score'])}, "
                  f"rank {cur['rank']} of {ch['diffusio_default_grid']['n_candidates']}"
                  + (" (the held-out choice)" if cur["is_heldout_choice"] else
                     " (NOT the held-out choice)"), ""]  # fmt: skip
        lines += ["Held-out choice at each NFE alone:", ""]
        for nfe, per in ch.get("by_nfe", {}).items():
            cells = "; ".join(f"{name}: `{per[name]['chosen']}` {_num(per[name]['score'])}"
                              for name in CANDIDATES)  # fmt: skip
            lines.append(f"- NFE {nfe}: {cells}; diffusio's current default "
                         f"{_num(per['diffusio_current_default_score'])}")  # fmt: skip
        lines += ["", "Held-out, same grid in both libraries (geometric-mean score per solver):",
                  ""]  # fmt: skip
        for grid, scores in held["solver_same_grid"].items():
            cells = ", ".join(f"`{k}` {_num(v)}" for k, v in scores.items())
            lines.append(f"- {grid}: {cells}")
        lines += [
            "",
            "Reported problems: mode_discrepancy (mean ± se over seeds; exact samples ~1)",
            "",
            "| mixture | NFE | floor | diffusio default | diffusio held-out choice "
            "| diffusers DPM++2M default | diffusers held-out choice "
            "| diffusers best in-sample | diffusio best in-sample | choices: diffusers - diffusio |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for mname, res in acc["reported"].items():
            for nfe, block in res["nfe"].items():
                s = block["summary"]
                if nfe == "1000":
                    lines.append(
                        f"| {mname} | 1000 (DDPM) | {s['noise_floor']:.2f} | "
                        f"diffusio ddpm {_fmt(s['diffusio_ddpm'])} | | "
                        f"diffusers DDPM {_fmt(s['diffusers_ddpm_default'])} | | | |")
                    continue
                hc = s.get("heldout_choice", {})
                lines.append(
                    f"| {mname} | {nfe} | {s['noise_floor']:.2f} | {_fmt(s['diffusio_default'])} "
                    f"| {_fmt(hc.get('diffusio_any_dpm_option'), True)} "
                    f"| {_fmt(s['diffusers_DPM++2M_default'])} "
                    f"| {_fmt(hc.get('diffusers_any_builtin_multistep'), True)} "
                    f"| {_fmt(s['in_sample_best_diffusers_multistep'], True)} "
                    f"| {_fmt(s['in_sample_best_diffusio_dpm'], True)} | {_diff(s)} |")
        lines += ["", "Solver comparison, the same grid in both libraries (reported problems):",
                  ""]  # fmt: skip
        for mname, res in acc["reported"].items():
            for nfe, block in res["nfe"].items():
                for grid, vals in block["summary"]["solver_same_grid"].items():
                    cells = ", ".join(f"{k} {_num(v)}" for k, v in vals.items())
                    lines.append(f"- {mname}, NFE {nfe}, grid {grid}: {cells}")
        lines += ["", "Grid comparison, one solver on every grid (reported problems):", ""]
        for mname, res in acc["reported"].items():
            for nfe, block in res["nfe"].items():
                for solver, vals in block["summary"]["grid_same_solver"].items():
                    cells = ", ".join(f"{k} {_num(v)}" for k, v in vals.items())
                    lines.append(f"- {mname}, NFE {nfe}, {solver}: {cells}")
        lines += ["", "Cross-checks (same algorithm in both libraries):", ""]
        for mname, res in acc["reported"].items():
            for nfe, block in res["nfe"].items():
                cc = block["summary"].get("cross_check_same_algorithm")
                if cc and len(cc) == 2:
                    vals = " vs ".join(f"{v:.2f}" for v in cc.values())
                    lines.append(f"- {mname}, NFE {nfe}: diffusio vs diffusers {vals}")
            dd = res.get("consistency", {}).get("max_abs_diff")
            if dd is not None:
                lines.append(f"- {mname}: DDIM on identical timesteps, max |difference| {dd:.1e}")
        lines += ["", f"Configurations: {acc['n_configurations']}"]
    ov = result.get("overhead", {})
    if ov:
        lines += ["", "Overhead per step (us, median; run time minus raw network time, / steps)",
                  ""]  # fmt: skip
        first = next(iter(ov.values()))
        labels = list(first["fit"])
        lines.append("| network | K | raw net us/call | " + " | ".join(labels) + " |")
        lines.append("|---|---|---|" + "---|" * len(labels))
        for name, block in ov.items():
            for K, row in block["by_steps"].items():
                cells = " | ".join(f"{row[k]['overhead_us_per_step']:.0f}" for k in labels)
                lines.append(f"| {name} | {K} | {row['raw_network_us_per_call']:.0f} | {cells} |")
            cells = " | ".join(f"{block['fit'][k]['per_step_us']:.0f}" for k in labels)
            lines.append(f"| {name} | slope | | {cells} |")
    summ = result.get("summary", {})
    if summ:
        lines += ["", "Summary", ""]
        for k, v in summ.items():
            lines.append(f"- {k}: {v:.3g}" if isinstance(v, float) else f"- {k}: {v}")
    return "\n".join(lines)


def headline(result: dict[str, Any]) -> dict[str, Any]:
    s: dict[str, Any] = {}
    acc = result.get("accuracy")
    if acc:
        ch = acc["heldout"]["choice"]
        s["heldout_choice_diffusio_grid"] = ch["diffusio_default_grid"]["chosen"]
        s["heldout_choice_diffusio_any"] = ch["diffusio_any_dpm_option"]["chosen"]
        s["heldout_choice_diffusers_any"] = ch["diffusers_any_builtin_multistep"]["chosen"]
        s["diffusio_current_default_is_heldout_choice"] = ch["diffusio_current_default"][
            "is_heldout_choice"]
        for mname, res in acc["reported"].items():
            for nfe in ("10", "20"):
                b = res["nfe"].get(nfe, {}).get("summary")
                if not b:
                    continue
                hc = b.get("heldout_choice", {})
                pairs = {
                    "diffusio_default": b["diffusio_default"],
                    "diffusio_heldout_choice": hc.get("diffusio_any_dpm_option"),
                    "diffusers_DPM++2M_default": b["diffusers_DPM++2M_default"],
                    "diffusers_heldout_choice": hc.get("diffusers_any_builtin_multistep"),
                    "diffusers_in_sample_best": b["in_sample_best_diffusers_multistep"],
                }
                for key, entry in pairs.items():
                    if entry is not None:
                        s[f"{mname}_nfe{nfe}_{key}"] = entry["discrepancy"]
    for name, block in result.get("overhead", {}).items():
        K = "20" if "20" in block["by_steps"] else next(iter(block["by_steps"]))
        row, fit = block["by_steps"][K], block["fit"]
        for ours, theirs in (
            ("diffusio ddim", "diffusers DDIM"),
            ("diffusio dpm-solver++", "diffusers DPM++2M"),
        ):
            a, b = row[ours]["overhead_us_per_step"], row[theirs]["overhead_us_per_step"]
            s[f"{name}_K{K}_overhead_us_per_step_{ours.replace(' ', '_')}"] = a
            s[f"{name}_K{K}_overhead_us_per_step_{theirs.replace(' ', '_')}"] = b
            pair = f"{ours.split()[1]}_vs_{theirs.split()[1]}"
            s[f"{name}_K{K}_overhead_ratio_{pair}"] = a / b
            s[f"{name}_slope_overhead_ratio_{pair}"] = (
                fit[ours]["per_step_us"] / fit[theirs]["per_step_us"]
            )
    return s


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small run (a few minutes)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "samplers.json"))
    ap.add_argument("--skip-accuracy", action="store_true")
    ap.add_argument("--skip-overhead", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(THREADS)
    args.n = 4000
    if args.quick:
        args.seeds, args.nfes, args.ddpm1000 = [0, 1], [10], False
        args.heldout_seeds, args.heldout_nfes = [0], [10]
        args.repeats, args.overhead_steps, args.batch = 15, [10, 50], 256
    else:
        args.seeds, args.nfes, args.ddpm1000 = [0, 1, 2, 3, 4], [10, 20, 50], True
        args.heldout_seeds, args.heldout_nfes = [0, 1], [10, 20]
        args.repeats, args.overhead_steps, args.batch = 61, [10, 20, 50], 256

    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:6.1f}s] {msg}", file=sys.stderr, flush=True)

    result: dict[str, Any] = {
        "benchmark": "samplers",
        "quick": args.quick,
        "command": "benchmarks/samplers.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "environment": environment(THREADS),
        "setup": {
            "process": "vp-linear (table = diffusers linear betas 1e-4..0.02, T=1000)",
            "diffusers_base_config": DIFFUSERS_BASE,
            "diffusers_overrides": "clip_sample=False (DDPM/DDIM), thresholding=False",
            "diffusers_time_map": "diffusers timestep i -> network at t = table.times[i]",
            "diffusio_default_spacing": make_process("vp-linear").solver_spacing,
            "accuracy": {
                "model": "exact eps of the mixture (float64)",
                "n": args.n,
                "seeds": args.seeds,
                "heldout_seeds": args.heldout_seeds,
                "metric": "GaussianMixture.mode_discrepancy (chi-square per dof, exact ~ 1)",
                "nfe": args.nfes + ([1000] if args.ddpm1000 else []),
                "heldout_nfe": args.heldout_nfes,
                "note": "diffusers DPM/UniPC/DEIS steps upcast the state to float32 internally",
            },
            "overhead": {
                "batch": args.batch,
                "steps": args.overhead_steps,
                "repeats": args.repeats,
                "threads": THREADS,
                "method": "median over rounds of (run - raw network calls of the same "
                "round) / steps; runs interleaved in rotating order; diffusers scheduler "
                "built once, set_timesteps timed; slope = least-squares per-step cost over K",
            },
        },
    }
    if not args.skip_accuracy:
        result["accuracy"] = accuracy(args, log)
    if not args.skip_overhead:
        result["overhead"] = overhead(args, log)
    result["summary"] = headline(result)
    result["seconds"] = time.perf_counter() - t0
    write_json_atomic(args.out, result, strict=True)
    print(markdown(result))
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
