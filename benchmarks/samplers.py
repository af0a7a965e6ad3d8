"""diffusio samplers vs diffusers schedulers, at equal NFE, in one run.

    .venv/bin/python benchmarks/samplers.py [--quick] [--out benchmarks/results/samplers.json]

1. Accuracy. The model is the exact eps of a 2-D Gaussian mixture (``GaussianMixture.model``,
   float64) under ``vp-linear``, whose discrete table is diffusers' default linear betas
   (1e-4..0.02, T = 1000). A diffusers step at integer timestep i calls the same network at
   ``t = table.times[i]``, so both libraries see identical noise levels and identical prior
   draws (same seed, same ``randn``). diffusio's samplers run through the toy sampler sweep
   (``diffusio.toy.sweep.run_sampler``); the distance to the truth is the toy scorer's
   ``discrepancy_parts`` (``mode_discrepancy``: a chi-square per dof of per-mode weight / mean /
   spread; about 1 for exact samples), reported with its noise floor (exact samples of the same
   size and seeds). Every configuration is kept.
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
from diffusio.core.samplers import SAMPLERS, sample  # noqa: E402
from diffusio.io import write_json_atomic  # noqa: E402
from diffusio.metrics.stats import mean_se  # noqa: E402
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
MULTISTEP = ("DPMSolverMultistepScheduler", "UniPCMultistepScheduler", "DEISMultistepScheduler")
SHORT = {
    "DDPMScheduler": "DDPM",
    "DDIMScheduler": "DDIM",
    "DPMSolverMultistepScheduler": "DPM++2M",
    "UniPCMultistepScheduler": "UniPC",
    "DEISMultistepScheduler": "DEIS",
}


# ----------------------------------------------------------------------------- problems
def mixtures() -> dict[str, GaussianMixture]:
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
def diffusers_configs() -> list[dict[str, Any]]:
    """Every diffusers configuration tried; ``default`` marks the class defaults (plus the
    overrides every run needs: linear betas, epsilon, no clipping / thresholding)."""
    cfgs: list[dict[str, Any]] = []

    def add(cls: str, kwargs: dict[str, Any], default: bool) -> None:
        shown = ", ".join(f"{k}={v}" for k, v in kwargs.items() if k not in ("clip_sample",))
        cfgs.append(
            {
                "lib": "diffusers",
                "family": SHORT[cls],
                "cls": cls,
                "kwargs": kwargs,
                "label": f"{SHORT[cls]}({shown})",
                "default": default,
            }
        )

    for cls in ("DDPMScheduler", "DDIMScheduler"):
        for sp in SPACINGS:
            add(cls, {"timestep_spacing": sp, "clip_sample": False}, sp == "leading")
    for cls in MULTISTEP:
        finals = ("zero", "sigma_min") if cls != "DEISMultistepScheduler" else (None,)
        extras: list[dict[str, Any]] = [{"use_karras_sigmas": True}]
        if cls == "DPMSolverMultistepScheduler":
            extras.append({"use_lu_lambdas": True})
        for final in finals:
            fin = {} if final is None else {"final_sigmas_type": final}
            for sp in SPACINGS:
                add(cls, {"timestep_spacing": sp, **fin}, sp == "linspace" and final != "sigma_min")
            for extra in extras:  # these sigma schedules ignore timestep_spacing
                add(cls, {**extra, **fin}, False)
    return cfgs


def _default(sampler: str, option: str) -> Any:
    """diffusio's own default for a sampler option, read from its signature."""
    return inspect.signature(SAMPLERS[sampler]).parameters[option].default


def diffusio_configs() -> list[dict[str, Any]]:
    """diffusio configurations; ``steps`` maps the NFE budget K to the ``steps`` argument."""
    cfgs: list[dict[str, Any]] = []

    def add(sampler, label, options, steps, default=False):
        cfgs.append(
            {
                "lib": "diffusio",
                "family": sampler,
                "sampler": sampler,
                "options": options,
                "steps": steps,
                "label": label,
                "default": default,
            }
        )

    for spacing in ("log-snr", "time", "quadratic"):
        for lof in (True, False):
            tag = "" if lof else ", lower_order_final=False"
            add(
                "dpm-solver++",
                f"dpm-solver++(steps=K, spacing={spacing}{tag})",
                {"spacing": spacing, "lower_order_final": lof, "denoise": False},
                "K",
                default=spacing == make_process("vp-linear").solver_spacing and lof,
            )
            add(
                "dpm-solver++",
                f"dpm-solver++(steps=K-1, denoise, spacing={spacing}{tag})",
                {"spacing": spacing, "lower_order_final": lof, "denoise": True},
                "K-1",
            )
    for spacing in ("time", "quadratic"):
        add(
            "ddim",
            f"ddim(discrete, spacing={spacing})",
            {"spacing": spacing},
            "K",
            spacing == _default("ddim", "spacing"),
        )
    for spacing in ("time", "log-snr", "quadratic"):
        add(
            "ddim",
            f"ddim(discrete=False, spacing={spacing})",
            {"discrete": False, "spacing": spacing},
            "K",
        )
    add("ddpm", "ddpm(discrete)", {}, "K", default=True)
    for spacing in ("time", "quadratic"):
        add("ode-heun", f"ode-heun(steps=K/2, spacing={spacing})", {"spacing": spacing}, "K/2")
    return cfgs


def _steps(rule: str, nfe: int) -> int:
    return {"K": nfe, "K-1": nfe - 1, "K/2": nfe // 2}[rule]


def make_scheduler(cfg: dict[str, Any]):
    kwargs = {**DIFFUSERS_BASE, **cfg["kwargs"]}
    if cfg["cls"] != "DEISMultistepScheduler":
        kwargs["thresholding"] = False
    return getattr(diffusers, cfg["cls"])(**kwargs)


# ----------------------------------------------------------------------------- running
def diffusers_sample(
    scheduler,
    net: nn.Module,
    times: Tensor,
    shape: tuple[int, ...],
    steps: int,
    seed: int,
    dtype: torch.dtype,
) -> tuple[Tensor, int]:
    """The canonical diffusers loop; ``times[i]`` is diffusio's continuous time of timestep i."""
    scheduler.set_timesteps(steps)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen, dtype=dtype) * scheduler.init_noise_sigma
    stochastic = isinstance(scheduler, diffusers.DDPMScheduler)
    nfe = 0
    for ts in scheduler.timesteps:
        eps = net(x, times[int(ts)].expand(shape[0]))
        nfe += 1
        if stochastic:
            x = scheduler.step(eps, ts, x, generator=gen).prev_sample
        else:
            x = scheduler.step(eps, ts, x).prev_sample
    return x, nfe


def _aggregate(per_seed: list[dict[str, float]]) -> dict[str, Any]:
    vals = [p["discrepancy"] for p in per_seed]
    mean, se = mean_se(vals)
    keys = ("weight", "mean", "spread", "std_ratio")
    return {
        "discrepancy": mean,
        "discrepancy_se": se if len(vals) > 1 else 0.0,
        "per_seed": [round(v, 4) for v in vals],
        "parts": {k: mean_se([p[k] for p in per_seed])[0] for k in keys},
    }


def accuracy(args, log: Callable[[str], None]) -> dict[str, Any]:
    process = make_process("vp-linear")
    times = process.discrete().times  # float64
    dcfgs, ocfgs = diffusers_configs(), diffusio_configs()
    out: dict[str, Any] = {}
    for mname, mix in mixtures().items():
        if args.quick and mname != "ring8":
            continue
        model = mix.model(process, dtype=torch.float64)
        net = model.net
        shape = (args.n, mix.dim)
        mix.reference_stats()
        floor = [discrepancy_parts(mix, mix.sample(args.n, seed=10_000 + s)) for s in args.seeds]
        res: dict[str, Any] = {"noise_floor": _aggregate(floor), "nfe": {}}
        log(f"[{mname}] noise floor {res['noise_floor']['discrepancy']:.2f}")
        budgets = list(args.nfes) + ([1000] if args.ddpm1000 else [])
        for nfe in budgets:
            rows: list[dict[str, Any]] = []
            start = time.perf_counter()
            for cfg in dcfgs:
                if nfe == 1000 and cfg["family"] != "DDPM":
                    continue
                if nfe == 1000 and cfg["kwargs"]["timestep_spacing"] != "leading":
                    continue  # every spacing is the full table at 1000 steps
                sched = make_scheduler(cfg)
                per_seed = []
                for seed in args.seeds:
                    x, used = diffusers_sample(sched, net, times, shape, nfe, seed, torch.float64)
                    assert used == nfe, (cfg["label"], used, nfe)
                    per_seed.append(discrepancy_parts(mix, x))
                rows.append({**_public(cfg), "nfe": nfe, **_aggregate(per_seed)})
            for cfg in ocfgs:
                if nfe == 1000 and cfg["family"] != "ddpm":
                    continue
                steps = _steps(cfg["steps"], nfe)
                run = SamplerRun(cfg["family"], cfg["sampler"], steps, cfg["options"])
                per_seed = []
                for seed in args.seeds:  # the toy sampler sweep, one seed at a time
                    res_run = run_sampler(model, run, args.n, seed, dim=mix.dim)
                    used = res_run.nfe
                    per_seed.append(discrepancy_parts(mix, res_run.samples))
                row = {**_public(cfg), "nfe": nfe, "steps": steps, **_aggregate(per_seed)}
                if used != nfe:  # e.g. ddim's quadratic table indices collide and are merged
                    row["nfe_actual"] = used
                rows.append(row)
            res["nfe"][str(nfe)] = {"configs": rows, "summary": _summarise(rows, res)}
            log(f"[{mname}] NFE {nfe}: {len(rows)} configs in {time.perf_counter() - start:.1f}s")
        res["consistency"] = _ddim_consistency(mix, model, times, shape)
        out[mname] = res
    return out


def _public(cfg: dict[str, Any]) -> dict[str, Any]:
    keep = ("lib", "family", "label", "default", "kwargs", "options", "sampler", "cls")
    return {k: cfg[k] for k in keep if k in cfg}


def _best(rows: list[dict[str, Any]], pred: Callable[[dict[str, Any]], bool]):
    chosen = [r for r in rows if pred(r)]
    if not chosen:
        return None
    r = min(chosen, key=lambda r: r["discrepancy"])
    best = {"label": r["label"], "discrepancy": r["discrepancy"], "se": r["discrepancy_se"]}
    if "nfe_actual" in r:
        best["nfe_actual"] = r["nfe_actual"]
    return best


def _summarise(rows: list[dict[str, Any]], res: dict[str, Any]) -> dict[str, Any]:
    def is_(lib, fam=None, default=None):
        def pred(r):
            return (
                r["lib"] == lib
                and (fam is None or r["family"] in ((fam,) if isinstance(fam, str) else fam))
                and (default is None or r["default"] == default)
            )

        return pred

    multistep = tuple(SHORT[c] for c in MULTISTEP)
    s = {
        "noise_floor": res["noise_floor"]["discrepancy"],
        "diffusio_dpm_default": _best(rows, is_("diffusio", "dpm-solver++", True)),
        "diffusio_dpm_best": _best(rows, is_("diffusio", "dpm-solver++")),
        "diffusio_best_any": _best(rows, is_("diffusio")),
        "diffusio_ddim_default": _best(rows, is_("diffusio", "ddim", True)),
        "diffusio_ddpm": _best(rows, is_("diffusio", "ddpm")),
        "diffusers_dpm_default": _best(rows, is_("diffusers", "DPM++2M", True)),
        "diffusers_multistep_best_default_config": _best(rows, is_("diffusers", multistep, True)),
        "diffusers_multistep_best": _best(rows, is_("diffusers", multistep)),
        "diffusers_ddim_default": _best(rows, is_("diffusers", "DDIM", True)),
        "diffusers_ddim_best": _best(rows, is_("diffusers", "DDIM")),
        "diffusers_ddpm_best": _best(rows, is_("diffusers", "DDPM")),
    }
    for fam in multistep:
        s[f"diffusers_{fam}_default"] = _best(rows, is_("diffusers", fam, True))
        s[f"diffusers_{fam}_best"] = _best(rows, is_("diffusers", fam))
    ours, theirs = s["diffusio_dpm_default"], s["diffusers_multistep_best"]
    if ours and theirs:
        fl = s["noise_floor"]
        s["ratio_diffusio_default_to_diffusers_best"] = ours["discrepancy"] / theirs["discrepancy"]
        s["excess_ratio_diffusio_default_to_diffusers_best"] = max(
            ours["discrepancy"] - fl, 1e-9
        ) / max(theirs["discrepancy"] - fl, 1e-9)
    # the same algorithm in both libraries (time-uniform DPM++2M down to the least-noisy table
    # entry): these two numbers should agree, which validates the harness
    twins = {
        "diffusio": "dpm-solver++(steps=K, spacing=time)",
        "diffusers": "DPM++2M(timestep_spacing=linspace, final_sigmas_type=sigma_min)",
    }
    s["cross_check_same_algorithm"] = {
        f"{lib} {label}": r["discrepancy"]
        for lib, label in twins.items()
        for r in rows
        if r["label"] == label
    }
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
    for label, sch in scheds.items():
        runs[label] = lambda sch=sch: diffusers_sample(sch, net, times, shape, K, 0, dtype)
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
    s = f"{entry['discrepancy']:.2f}"
    return f"{s} `{entry['label']}`" if with_label else s


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "Accuracy: mode_discrepancy (mean over seeds; exact samples ~1; lower is better)",
        "",
        "| mixture | NFE | floor | diffusio dpm++ default | diffusio dpm++ best "
        "| diffusers DPM++2M default | diffusers best multistep | diffusio ddim | diffusers DDIM |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for mname, res in result.get("accuracy", {}).items():
        for nfe, block in res["nfe"].items():
            s = block["summary"]
            if nfe == "1000":
                lines.append(
                    f"| {mname} | 1000 (DDPM) | {s['noise_floor']:.2f} | "
                    f"diffusio ddpm {_fmt(s['diffusio_ddpm'])} | | | "
                    f"diffusers DDPM {_fmt(s['diffusers_ddpm_best'])} | | |"
                )
                continue
            lines.append(
                f"| {mname} | {nfe} | {s['noise_floor']:.2f} | {_fmt(s['diffusio_dpm_default'])} "
                f"| {_fmt(s['diffusio_dpm_best'], True)} | {_fmt(s['diffusers_dpm_default'])} "
                f"| {_fmt(s['diffusers_multistep_best'], True)} "
                f"| {_fmt(s['diffusio_ddim_default'])} | {_fmt(s['diffusers_ddim_best'], True)} |"
            )
    lines += [
        "",
        "Cross-check, same algorithm in both libraries (time-uniform DPM++2M to t_min):",
        "",
    ]
    for mname, res in result.get("accuracy", {}).items():
        for nfe, block in res["nfe"].items():
            cc = block["summary"].get("cross_check_same_algorithm")
            if cc:
                vals = " vs ".join(f"{v:.2f}" for v in cc.values())
                lines.append(f"- {mname}, NFE {nfe}: diffusio vs diffusers {vals}")
        dd = res.get("consistency", {}).get("max_abs_diff")
        if dd is not None:
            lines.append(f"- {mname}: DDIM on identical timesteps, max |difference| {dd:.1e}")
    lines += [
        "",
        "Overhead per step (us, median; run time minus raw network time, divided by steps)",
        "",
    ]
    ov = result.get("overhead", {})
    if ov:
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
    for mname, res in result.get("accuracy", {}).items():
        block = res["nfe"].get("10")
        if block:
            b = block["summary"]
            s[f"{mname}_nfe10_diffusio_dpm_default"] = b["diffusio_dpm_default"]["discrepancy"]
            s[f"{mname}_nfe10_diffusers_best_multistep"] = b["diffusers_multistep_best"][
                "discrepancy"
            ]
            s[f"{mname}_nfe10_diffusers_best_multistep_config"] = b["diffusers_multistep_best"][
                "label"
            ]
            s[f"{mname}_nfe10_ratio_diffusio_default_to_diffusers_best"] = b[
                "ratio_diffusio_default_to_diffusers_best"
            ]
            s[f"{mname}_nfe10_diffusio_best_dpm_config"] = b["diffusio_dpm_best"]["label"]
            s[f"{mname}_nfe10_diffusio_best_dpm"] = b["diffusio_dpm_best"]["discrepancy"]
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
    ap.add_argument("--quick", action="store_true", help="small run (< 1 minute)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "samplers.json"))
    ap.add_argument("--skip-accuracy", action="store_true")
    ap.add_argument("--skip-overhead", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(THREADS)
    if args.quick:
        args.n, args.seeds, args.nfes, args.ddpm1000 = 4000, [0, 1], [10, 20], False
        args.repeats, args.overhead_steps, args.batch = 15, [10, 50], 256
    else:
        args.n, args.seeds, args.nfes, args.ddpm1000 = 4000, [0, 1, 2, 3, 4], [10, 20, 50], True
        args.repeats, args.overhead_steps, args.batch = 61, [10, 20, 50], 256

    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:6.1f}s] {msg}", file=sys.stderr, flush=True)

    result: dict[str, Any] = {
        "benchmark": "samplers",
        "quick": args.quick,
        "environment": environment(THREADS),
        "setup": {
            "process": "vp-linear (table = diffusers linear betas 1e-4..0.02, T=1000)",
            "diffusers_base_config": DIFFUSERS_BASE,
            "diffusers_overrides": "clip_sample=False (DDPM/DDIM), thresholding=False",
            "diffusers_time_map": "diffusers timestep i -> network at t = table.times[i]",
            "accuracy": {
                "model": "exact eps of the mixture (float64)",
                "n": args.n,
                "seeds": args.seeds,
                "metric": "GaussianMixture.mode_discrepancy (chi-square per dof, exact ~ 1)",
                "nfe": args.nfes + ([1000] if args.ddpm1000 else []),
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
    write_json_atomic(args.out, result)
    print(markdown(result))
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
