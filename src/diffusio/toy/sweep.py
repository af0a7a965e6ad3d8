"""The toy sampler sweep: quality against network evaluations over samplers and step counts.

One :class:`SamplerRun` names a sampler setting (a family label, the registered sampler, its
steps and options); :func:`sweep` draws ``n`` samples with each setting from one seed (common
random numbers: every run starts from the same prior draw) and scores them with a caller's
``score(x) -> dict``. Song et al. 2021 (Score SDE, Fig. 3 / Table 1) compare samplers this way
at equal NFE; the oracle demo (:mod:`diffusio.toy.demo`) and ``benchmarks/samplers.py`` run the
same sweep on an exact model, where any excess over the noise floor is discretisation error.

:func:`trajectories` records the states a sampler walks through (a step ``callback``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..core.model import DiffusionModel
from ..core.samplers import sample

__all__ = [
    "SamplerRun", "SweepResult", "check_samplers", "langevin", "largest_per_family",
    "parse_samplers",
    "run_sampler", "sweep", "trajectories",
]  # fmt: skip

Score = Callable[[Tensor], Mapping[str, Any]]
ToData = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class SamplerRun:
    """One sampler setting: ``family`` (a label such as "EM" or "PC"), the registered
    ``sampler``, its ``steps`` (None: the sampler's default, e.g. adaptive RK45) and extra
    ``options`` for :func:`~diffusio.core.samplers.sample`."""

    family: str
    sampler: str
    steps: int | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.family if self.steps is None else f"{self.family} {self.steps}"


@dataclass
class SweepResult:
    """The samples of one run (in data units, float64), its NFE and wall seconds."""

    run: SamplerRun
    samples: Tensor
    nfe: int
    seconds: float

    @property
    def finite(self) -> bool:
        return bool(torch.isfinite(self.samples).all())


def run_sampler(
    model: DiffusionModel,
    run: SamplerRun,
    n: int,
    seed: int,
    *,
    dim: int = 2,
    to_data: ToData | None = None,
    progress: bool = False,
) -> SweepResult:
    """Draw ``n`` samples of dimension ``dim`` with ``run`` from ``seed`` (no gradients), mapped
    by ``to_data`` (e.g. a normalizer's inverse) and returned as float64 on the CPU."""
    with torch.no_grad():
        x, stats = sample(model, (n, dim), run.sampler, run.steps, seed=seed, progress=progress,
                          return_stats=True, **dict(run.options))  # fmt: skip
    x = x.detach().to("cpu", torch.float64)
    if to_data is not None:
        x = to_data(x).to(torch.float64)
    return SweepResult(run, x, int(stats["nfe"]), float(stats["seconds"]))


def sweep(
    model: DiffusionModel,
    runs: Sequence[SamplerRun],
    n: int,
    seed: int = 0,
    *,
    dim: int = 2,
    score: Score | None = None,
    to_data: ToData | None = None,
    progress: bool = False,
) -> tuple[list[dict[str, Any]], dict[str, Tensor]]:
    """Every run of ``runs`` for ``n`` samples from ``seed``: one row per run (``family``,
    ``sampler``, ``steps``, ``nfe``, ``seconds``, ``finite`` -- whether every sample is finite --
    and what ``score(samples)`` returns) and the samples by :attr:`SamplerRun.label`."""
    rows, samples = [], {}
    for run in runs:
        res = run_sampler(model, run, n, seed, dim=dim, to_data=to_data, progress=progress)
        samples[run.label] = res.samples
        row: dict[str, Any] = {"family": run.family, "sampler": run.sampler, "steps": run.steps,
                               "nfe": res.nfe, "finite": res.finite}  # fmt: skip
        if score is not None:
            row.update(score(res.samples))
        row["seconds"] = round(res.seconds, 3)
        rows.append(row)
    return rows, samples


def langevin(
    model: DiffusionModel,
    x_init: Tensor,
    levels: int,
    n_steps_each: int,
    seed: int,
    *,
    step_size: float | None = None,
    ratio: float | None = None,
) -> Tensor:
    """Annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1) from ``x_init`` over the
    model's ``levels``-level ladder (``levels=1``: plain Langevin at the smallest sigma) with
    ``n_steps_each`` steps per level and no final denoising (NCSN has none), in ``x_init``'s
    dtype. The step is ``step_size`` (``eps``, so ``a_i = eps sigma_i^2 / sigma_L^2``), or
    ``ratio * sigma_L^2`` (so ``a_i = ratio * sigma_i^2``)."""
    if (step_size is None) == (ratio is None):
        raise ValueError("give exactly one of step_size and ratio")
    if ratio is not None:
        t_min = torch.tensor(model.process.t_min, dtype=torch.float64)
        step_size = ratio * float(model.process.sigma(t_min)) ** 2
    run = SamplerRun("annealed-langevin", "annealed-langevin", levels, {
        "x_init": x_init, "n_steps_each": n_steps_each, "step_size": step_size, "denoise": False})
    return run_sampler(model, run, x_init.shape[0], seed, dim=x_init.shape[1]).samples.to(
        x_init.dtype)


def largest_per_family(runs: Sequence[SamplerRun], families: Sequence[str]) -> list[SamplerRun]:
    """The run with the most steps of each family, in the order of ``families``."""
    last: dict[str, SamplerRun] = {}
    for run in runs:
        if run.family not in last or (run.steps or 0) >= (last[run.family].steps or 0):
            last[run.family] = run
    return [last[f] for f in families if f in last]


def trajectories(
    model: DiffusionModel,
    sampler: str,
    steps: int,
    n: int,
    seed: int,
    to_data: ToData | None = None,
    dim: int = 2,
) -> tuple[list[float], Tensor]:
    """Times and states ``(len(times), n, D)`` of ``n`` paths of ``sampler``: the state at
    every step's time (from the step callback) and the returned sample at t = 0."""
    times: list[float] = []
    states: list[Tensor] = []

    def record(info: dict[str, Any]) -> None:
        times.append(float(info["t"]))
        states.append(info["x"].detach().to("cpu", torch.float64).clone())

    with torch.no_grad():
        final = sample(model, (n, dim), sampler, steps, seed=seed, callback=record)
    times.append(0.0)
    states.append(final.detach().to("cpu", torch.float64))
    path = torch.stack(states)
    if to_data is not None:
        path = torch.stack([to_data(s).to(torch.float64) for s in path])
    return times, path


# --------------------------------------------------------------------------- NAME:STEPS specs
def parse_samplers(spec: str) -> list[tuple[str, int]]:
    """Parse ``"ddim:50,ode-heun:20"`` into ``[("ddim", 50), ("ode-heun", 20)]``."""
    pairs = []
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, steps = item.rpartition(":")
        if not sep or not name or not steps.strip().isdigit() or int(steps) <= 0:
            raise ValueError(
                f"bad sampler spec {item!r}: expected NAME:STEPS with STEPS a positive integer, "
                "e.g. ddim:50"
            )
        pairs.append((name.strip(), int(steps)))
    if not pairs:
        raise ValueError("no samplers given: expected NAME:STEPS[,NAME:STEPS...]")
    return pairs


def check_samplers(samplers: Sequence[Any]) -> list[SamplerRun]:
    """``(name, steps)`` pairs (or :class:`SamplerRun`) as runs; bad entries raise ValueError."""
    checked = []
    for item in samplers:
        if isinstance(item, SamplerRun):
            checked.append(item)
            continue
        try:
            name, steps = item
        except (TypeError, ValueError):
            raise ValueError(f"samplers must be (name, steps) pairs, got {item!r}") from None
        if not isinstance(name, str) or not name:
            raise ValueError(f"sampler name must be a non-empty string, got {name!r}")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0:
            raise ValueError(
                f"steps for sampler {name!r} must be a positive integer, got {steps!r}"
            )
        checked.append(SamplerRun(name, name, steps))
    if not checked:
        raise ValueError("no samplers given")
    return checked
