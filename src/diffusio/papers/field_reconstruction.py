"""Zhuang, Cheng & Duraisamy 2024, "Spatially-Aware Diffusion Models with Cross-Attention for
Global Field Reconstruction with Sparse Observations" (arXiv:2409.00230): ``field-reconstruction``.

Burgers fields from sparse sensors: the conditional diffusion model of
:mod:`diffusio.physics.fields` (Voronoi condition encoding + cross-attention to a Perceiver
encoder of the sensor set) against linear and cubic interpolation, kriging (sklearn GP,
hyperparameters by marginal likelihood) and the same network trained deterministically (the
paper's deterministic rival), at several sensor counts, with and without read-out noise; per-field
RMSE, CRPS, 90% coverage and shock-cell RMSE with paired standard errors over test fields.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..io import json_hash
from ..metrics.stats import mean_se, paired_difference
from ..physics import fields as fr
from ..plotting import new_figure
from .base import Reproduction, said
from .report import PaperNumber, Report, fmt
from .verdicts import SIGNIFICANCE, claim_rule, compare, tally_verdict

__all__ = ["REPRODUCTION", "FieldReconstruction", "Settings", "reproduce"]

NET = {"width": 64, "latents": 16, "depth": 3, "heads": 4, "patch": 4}
METHODS = ("diffusion", "kriging", "linear", "cubic", "regressor")
KEYS = ("rmse", "crps", "cover", "shock_rmse")
PROBABILISTIC = ("diffusion", "kriging")


@dataclass(frozen=True)
class Settings:
    """Fields u(t = frame / 10); the model trains on ``m_range`` sensors with read-out noise
    drawn from ``noises``; every test field is scored at each count in ``sensors`` and each
    noise in ``noises`` (the same sensor sets for every method)."""

    n_train: int = 2000
    n_test: int = 48
    frame: int = 2
    sensors: tuple[int, ...] = (8, 16, 32)
    m_range: tuple[int, int] = (4, 40)
    noises: tuple[float, ...] = (0.0, 0.05)
    net_options: dict[str, Any] = field(default_factory=lambda: dict(NET))
    train_steps: int = 3500
    batch_size: int = 64
    lr: float = 1e-3
    regressor_steps: int = 1200
    n_samples: int = 39
    sampler: tuple[str, int] = ("dpm-solver++", 20)
    kriging_fit: int = 256
    seed: int = 0


# --------------------------------------------------------------------------- claim rules
def _tally(margins: list[float], ses: list[float]) -> str:
    """Each margin (how far the claimed winner is ahead) clear (+1), within the noise (0) or
    against (-1): all clear wins, some and no loss (partly), else not."""
    return tally_verdict([compare(m, se) for m, se in zip(margins, ses, strict=True)])


def _bounded(values: list[float], ses: list[float], bounds: list[float]) -> str:
    """Each value at most its bound (+1), above it within the noise (0) or clearly above (-1)."""
    return tally_verdict([1 if v <= b else (0 if v - SIGNIFICANCE * se <= b else -1)
                          for v, se, b in zip(values, ses, bounds, strict=True)])  # fmt: skip


_WIN = {"margins": [0.02, 0.03, 0.01], "ses": [0.003] * 3}
_LOSE = {"margins": [-0.02, 0.0, 0.001], "ses": [0.003] * 3}
TALLY = {key: claim_rule(f"field-reconstruction/{key}", supports=_WIN, contradicts=_LOSE)(_tally)
         for key in ("interpolation", "kriging", "shocks", "noisy", "noiseless")}  # fmt: skip
COVERAGE = claim_rule("field-reconstruction/coverage",
                      supports={"values": [-0.01, -0.02], "ses": [0.01] * 2, "bounds": [0.0] * 2},
                      contradicts={"values": [0.2, 0.15], "ses": [0.01] * 2, "bounds": [0.0] * 2},
                      )(_bounded)  # fmt: skip

PAPER_NUMBERS = tuple(PaperNumber(*row) for row in (
    ("under noisy observations, diffusion with cross-attention and the condition encoding vs "
     "other methods", "generally outperforms them", "abstract", True,
     "arXiv:2409.00230 abstract (html via the search tool)"),
    ("with noiseless data, the deterministic (Voronoi-interpolation CNN) method vs diffusion",
     "the deterministic method excels", "abstract", True, "arXiv:2409.00230 abstract"),
    ("condition encoding", "sparse observations + Voronoi-interpolated field + sensor positions",
     "abstract / Sec. 3", True, "abstract; the section itself was not read"),
    ("per-dataset errors (Darcy flow, shallow water, ... tables)", "not quoted", "Sec. 4", False,
     "the tables were not reached by the search tool; no number is quoted from them"),
))  # fmt: skip


class FieldReconstruction(Reproduction):
    NAME = "field-reconstruction"
    TITLE = ("Spatially-Aware Diffusion Models with Cross-Attention for Global Field "
             "Reconstruction with Sparse Observations (Zhuang, Cheng & Duraisamy, 2024)")  # fmt: skip
    REFERENCE = ("Yilin Zhuang, Sibo Cheng and Karthik Duraisamy. *Spatially-Aware Diffusion "
                 "Models with Cross-Attention for Global Field Reconstruction with Sparse "
                 "Observations.* arXiv:2409.00230, 2024.")  # fmt: skip
    Settings = Settings
    QUICK = {"n_train": 1000, "n_test": 24, "sensors": (8, 32), "train_steps": 600,
             "regressor_steps": 300, "n_samples": 19, "kriging_fit": 128}  # fmt: skip
    SMOKE = {"n_train": 32, "n_test": 3, "sensors": (8,), "train_steps": 4, "regressor_steps": 2,
             "n_samples": 4, "sampler": ("dpm-solver++", 2), "kriging_fit": 16, "batch_size": 8,
             "net_options": {"width": 16, "latents": 4, "depth": 1, "heads": 2, "patch": 8}}  # fmt: skip
    PAPER_NUMBERS = PAPER_NUMBERS

    # ------------------------------------------------------------------ experiments
    def run_experiments(self) -> dict[str, Any]:
        from ..data.batch import TrainingSet

        s = self.s
        u, ut = (
            fr.burgers_fields(s.n_train, s.seed, s.frame),
            fr.burgers_fields(s.n_test, s.seed + 1, s.frame),
        )
        self.lap("solving the Burgers fields")
        data = {"frame": s.frame, "n_train": s.n_train, "seed": s.seed, "m_range": list(s.m_range),
                "noises": list(s.noises)}  # fmt: skip
        config = fr.field_config(s.train_steps, batch_size=s.batch_size, lr=s.lr, seed=s.seed,
                                 net_options=dict(s.net_options),
                                 description=f"field-reconstruction {json_hash(data)}")  # fmt: skip
        train = TrainingSet(
            u.float() / fr.SCALE, transforms=[fr.SensorTransform(s.m_range, s.noises)]
        )
        model, _, summary = self.train(config, "field-recon", data=train)
        self.lap("training the diffusion model")
        recipe = {
            **data,
            "steps": s.regressor_steps,
            "net": s.net_options,
            "lr": s.lr,
            "batch": s.batch_size,
        }
        regressor = fr.train_regressor(
            u, self.cache.root / f"field-regressor-{json_hash(recipe)}.safetensors", steps=s.regressor_steps,
            m_range=s.m_range, noises=s.noises, batch_size=s.batch_size, lr=s.lr, seed=s.seed,
            net_options=dict(s.net_options))  # fmt: skip
        self.lap("training the deterministic regressor")
        krig = fr.Kriging(s.kriging_fit, s.seed).fit(u)
        self.lap("fitting the kriging kernel")
        shock, res = fr.shock_cells(ut), {}
        for i, (m, noise) in enumerate((m, v) for v in s.noises for m in s.sensors):
            sensors = fr.sample_sensors(ut, m, torch.Generator().manual_seed(s.seed + 100 + i),
                                        m_max=max(s.m_range[1], m), noise=noise)  # fmt: skip
            mask, start = fr.unobserved(sensors), time.perf_counter()
            draws = fr.reconstruct(model, sensors, s.n_samples, sampler=s.sampler[0], steps=s.sampler[1],
                                   seed=s.seed + 1000 * i)  # fmt: skip
            seconds = time.perf_counter() - start
            mean, std = krig.predict(sensors)
            res[(m, noise)] = {
                "diffusion": fr.score_samples(draws, ut, mask, shock),
                "kriging": fr.score_gaussian(mean, std, ut, mask, shock),
                "linear": fr.score_point(fr.interpolate(sensors, "linear"), ut, mask, shock),
                "cubic": fr.score_point(fr.interpolate(sensors, "cubic"), ut, mask, shock),
                "regressor": fr.score_point(fr.regress(regressor, sensors), ut, mask, shock),
                "seconds": seconds,
                "sensors": sensors,
                "draws": draws[:, :2],
                "krig": (mean[:2], std[:2]),
            }
            self.lap(f"{m} sensors, noise {noise:g}")
        return {"res": res, "u": ut, "summary": summary, "kriging": krig,
                "params": sum(p.numel() for p in model.parameters())}  # fmt: skip

    # ------------------------------------------------------------------ claims
    def _versus(self, r: dict, winner: str, rivals: tuple[str, ...], key: str = "rmse",
                factor: float = 1.0, noises: Any = None) -> tuple[str, str, list, list]:  # fmt: skip
        """``factor * rival - winner`` of a per-field score at every condition (paired)."""
        rows, ms, ses = [], [], []
        for (m, noise), res in r["res"].items():
            if noises is not None and noise not in noises:
                continue
            for rival in rivals:
                ok = np.isfinite(res[winner][key]) & np.isfinite(res[rival][key])
                d, se = paired_difference(factor * res[rival][key][ok], res[winner][key][ok])
                ms.append(d)
                ses.append(se)
                rows.append(f"M={m}, noise {noise:g}: {winner} {np.mean(res[winner][key][ok]):.4f} vs "
                            f"{rival} {np.mean(res[rival][key][ok]):.4f}")  # fmt: skip
        gap = "margins " + ", ".join(f"{d:+.4f} ± {e:.4f}" for d, e in zip(ms, ses, strict=True))
        return "; ".join(rows), gap, ms, ses

    def add_claims(self, report: Report, r: dict[str, Any]) -> None:
        s = self.s
        specs = [("interpolation", "diffusion", ("linear", "cubic"), "rmse", 1.0, None, False),
                 ("kriging", "diffusion", ("kriging",), "rmse", 1.2, None, False),
                 ("shocks", "diffusion", ("kriging",), "shock_rmse", 1.0, None, False)]  # fmt: skip
        noisy = tuple(v for v in s.noises if v > 0)
        if noisy:
            specs.append(("noisy", "diffusion", ("regressor",), "rmse", 1.0, noisy, True))
        if 0.0 in s.noises:
            specs.append(("noiseless", "regressor", ("diffusion",), "rmse", 1.0, (0.0,), True))
        for key, winner, rivals, stat, factor, noises, main in specs:
            got, gap, ms, ses = self._versus(r, winner, rivals, stat, factor, noises)
            report.claim(*said(__name__, key), got, gap, TALLY[key](margins=ms, ses=ses), main=main)
        want, values, errs, text = fr.exact_coverage(s.n_samples), [], [], []
        for (m, noise), res in r["res"].items():
            c, e = mean_se(res["diffusion"]["cover"])
            values.append(abs(c - want) - 0.05)
            errs.append(e)
            text.append(
                f"M={m}, noise {noise:g}: {c:.3f} ± {e:.3f} (kriging {np.mean(res['kriging']['cover']):.3f})"
            )
        report.claim(*said(__name__, "coverage"), "; ".join(text) + f"; exact samples: {want:.3f}",
                     "distance beyond ±0.05 of it: " + ", ".join(f"{v:+.3f}" for v in values),
                     COVERAGE(values=values, ses=errs, bounds=[0.0] * len(values)), main=False)  # fmt: skip

    # ------------------------------------------------------------------ sections
    def add_sections(self, report: Report, r: dict[str, Any]) -> None:
        report.section("Scores by sensor count and noise", self.prose("scores", r))
        rows = []
        for (m, noise), res in r["res"].items():
            for name in METHODS:
                cells = [mean_se(res[name][k]) for k in KEYS]
                shown = [f"{a:.4f} ± {b:.4f}" for a, b in cells]
                rows.append([m, f"{noise:g}", name, *shown[:2], shown[2] if name in PROBABILISTIC else "-",
                             shown[3]])  # fmt: skip
        report.table(
            ["sensors", "noise", "method", "RMSE", "CRPS", "90% coverage", "shock RMSE"], rows
        )
        report.figure(
            figure(r),
            "reconstructions.png",
            "A test field (grey), its sensors (black), the "
            "diffusion samples' median and central 90% band (blue), kriging's mean and 90% interval "
            "(orange) and linear interpolation (green dashes), at the fewest and most sensors.",
        )

    def record_metrics(self, r: dict[str, Any]) -> dict[str, Any]:
        out = {f"M={m},noise={noise:g}": {n: {k: mean_se(res[n][k])[0] for k in KEYS} for n in METHODS}
               | {"diffusion_seconds": res["seconds"]} for (m, noise), res in r["res"].items()}  # fmt: skip
        k = r["kriging"]
        return {"scores": out, "kriging": {"family": k.family_, "kernel": str(k.kernel_), "lml": k.lml_},
                "train_loss": r["summary"].get("loss"), "train_seconds": r["summary"].get("train_seconds"),
                "params": r["params"]}  # fmt: skip

    def text_values(self, r: dict[str, Any]) -> dict[str, Any]:
        return {"params": f"{r['params']:,}", "loss": fmt(r["summary"].get("loss")),
                "family": r["kriging"].family_, "kernel": str(r["kriging"].kernel_),
                "coverage": f"{fr.exact_coverage(self.s.n_samples):.3f}",
                "rank": fr.band_rank(self.s.n_samples)}  # fmt: skip


def figure(r: dict[str, Any], row: int = 0) -> Any:
    """The first test field at the fewest and the most sensors (the first noise level)."""
    from ..metrics.probabilistic import sample_quantiles
    from ..physics.burgers import X

    keys = list(r["res"])
    picks = [keys[0], keys[len({m for m, _ in keys}) - 1]] if len(keys) > 1 else keys
    fig, x = new_figure(10, 2.6 * len(picks)), X.numpy()
    for j, key in enumerate(picks):
        res, ax = r["res"][key], fig.add_subplot(len(picks), 1, j + 1)
        draws = torch.sort(res["draws"][:, row].double(), dim=0).values
        k, med = fr.band_rank(len(draws)), sample_quantiles(draws, (0.5,))[0]
        lo, hi = draws[k - 1], draws[len(draws) - k]  # the scored band (fr.score_samples)
        mean, std = (v[row].numpy() for v in res["krig"])
        ax.fill_between(x, lo, hi, color="tab:blue", alpha=0.25, label="diffusion 90% band")
        ax.plot(x, med, color="tab:blue", lw=1, label="diffusion median")
        ax.fill_between(x, mean - fr.Z90 * std, mean + fr.Z90 * std, color="tab:orange", alpha=0.2,
                        label="kriging 90%")  # fmt: skip
        ax.plot(x, mean, color="tab:orange", lw=1, label="kriging mean")
        ax.plot(x, fr.interpolate({k: v[row : row + 1] for k, v in res["sensors"].items()})[0], "--",
                color="tab:green", lw=1, label="linear")  # fmt: skip
        ax.plot(x, r["u"][row].numpy(), color="0.3", lw=1.2, label="truth")
        ok = res["sensors"]["valid"][row]
        ax.plot(
            res["sensors"]["pos"][row, ok, 0],
            res["sensors"]["val"][row, ok, 0],
            "k.",
            label="sensors",
        )
        ax.set_ylabel(f"u, M = {key[0]}, noise {key[1]:g}")
    ax.set_xlabel("x")
    ax.legend(fontsize=7, ncol=4, loc="lower right")
    return fig


REPRODUCTION = FieldReconstruction
reproduce = FieldReconstruction.run
