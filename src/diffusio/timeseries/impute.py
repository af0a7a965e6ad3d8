"""What ``diffusio impute`` does: give it a table of series with holes, get imputations with
uncertainty back (CSDI, Tashiro et al. 2021, arXiv:2107.03502).

:func:`impute_file` reads a CSV (rows = time steps, columns = features, an empty cell or NaN =
missing, an optional time column) or an ``.npz`` (:mod:`~diffusio.timeseries.files`), z-scores
every feature with a :class:`~diffusio.timeseries.windows.Normalizer` fitted on its observed
entries, cuts training windows with a stride smaller than the window, trains a CSDI model on the
observed entries into ``OUT/run`` (:func:`~diffusio.timeseries.csdi.train_csdi`, "mix" targets as
the paper's air-quality model, plus forecast targets when a horizon is asked for) or reuses a
trained run, imputes windows that cover every step (overlapping by half a window; each step is
taken from the window where it sits farthest from an edge,
:func:`~diffusio.timeseries.windows.stitch_windows`), and writes into ``OUT``:

* ``samples.npz`` -- ``samples`` (S, T, K) in the data's own units, ``observed_mask`` (T, K),
  ``columns`` and, with a time column, ``time``;
* ``median.csv``, ``q05.csv``, ``q95.csv`` -- the per-entry sample quantiles with the input's
  header and time column; observed entries are the values read, unchanged;
* ``imputation.png`` -- a few series with their 5-95% bands and the observed points;
* ``imputation.json`` -- the settings, the data's shape and missing fraction, the model, and the
  seconds each stage took.

``horizon`` H appends H rows past the end and forecasts them. Their time cells continue a
regularly spaced numeric or date/time column (the same format); otherwise they are left empty,
and ``imputation.json`` says so.

Every bad input raises ``ValueError`` with one line (the CLI's exit code 2).
"""

from __future__ import annotations

import inspect
import math
import os
import shutil
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_path, write_json_atomic
from .files import SeriesTable, read_series_csv, read_series_npz, write_series_csv

__all__ = [
    "DEFAULT_WINDOW",
    "IMPUTE_FORMAT",
    "NET_SIZES",
    "OUTPUTS",
    "SMALL_DATA",
    "extend_time",
    "impute_file",
    "read_table",
]

IMPUTE_FORMAT = "diffusio-impute"
#: What ``impute_file`` writes into its output folder (besides the ``run`` it trains).
OUTPUTS = ("samples.npz", "median.csv", "q05.csv", "q95.csv", "imputation.png",
           "imputation.json")  # fmt: skip
#: The window length when none is given (CSDI's air-quality windows), or the whole series when
#: it is shorter.
DEFAULT_WINDOW = 36
#: Network sizes: ``paper`` is CSDINet's defaults (Tashiro et al.: 4 blocks of 64 channels,
#: 8 heads; 414k parameters at 35 features); ``small`` (57k parameters at 4 features) is used for
#: series with fewer than :data:`SMALL_DATA` observed entries, where the paper's network would
#: cost minutes of CPU per run and has far more weights than the data have values.
NET_SIZES: dict[str, dict[str, int]] = {
    "small": {"channels": 32, "layers": 2, "heads": 4, "ff_dim": 32,
              "diffusion_embedding_dim": 64, "time_embedding_dim": 64,
              "feature_embedding_dim": 8},
    "paper": {},
}  # fmt: skip
SMALL_DATA = 100_000
_TRAIN_ENTRIES = 5_000_000  # training windows beyond this many entries get a coarser stride
_LEVELS = (0.05, 0.5, 0.95)


# -- reading -----------------------------------------------------------------------------------


def read_table(path: str | os.PathLike) -> SeriesTable:
    """A user's series by file type: ``.csv`` (:func:`read_series_csv`, the first column is the
    time column when it holds dates or is named like one) or ``.npz``
    (:func:`read_series_npz`); ``ValueError`` for anything else."""
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return read_series_csv(path)
    if suffix == ".npz":
        return read_series_npz(path)
    raise ValueError(f"{path}: DATA must be a .csv or .npz file (got {suffix or 'no suffix'!r})")


# -- the time column past the end --------------------------------------------------------------

_FORMATS = ("%Y-%m-%d", "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S",
            "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y/%m/%d", "%Y/%m/%d %H:%M:%S", "%d.%m.%Y",
            "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S%z")  # fmt: skip


def _numeric_stamps(stamps: Sequence[str]) -> list[float] | None:
    try:
        return [float(s) for s in stamps]
    except ValueError:
        return None


def _decimals(text: str) -> int:
    text = text.strip().lower()
    if "e" in text:
        return -1  # scientific notation: no fixed number of places
    return len(text.split(".")[1]) if "." in text else 0


def extend_time(stamps: Sequence[str], n: int) -> tuple[list[str] | None, str]:
    """``n`` time stamps continuing ``stamps``, and how (or why not).

    A numeric column with one constant step (to 1e-9 of it) continues with that step, printed
    with the input's number of decimals; a date/time column in one of the common ISO-like
    formats whose every cell round-trips through that format, with one constant step,
    continues in the same format. Otherwise ``(None, reason)``: the caller leaves those cells
    empty."""
    if n == 0:
        return [], "no rows appended"
    if len(stamps) < 2:
        return None, "a time column needs at least two rows to show its spacing"
    numbers = _numeric_stamps(stamps)
    if numbers is not None:
        steps = np.diff(np.asarray(numbers))
        step = float(steps[0])
        if step == 0 or not np.all(np.abs(steps - step) <= 1e-9 * abs(step)):
            return None, "the numeric time column is not regularly spaced"
        places = {_decimals(s) for s in stamps}
        last = numbers[-1]
        values = [last + (i + 1) * step for i in range(n)]
        if -1 in places:
            out = [repr(v) for v in values]
        else:
            d = max(places)
            out = [f"{v:.{d}f}" for v in values]
        return out, f"continued the numeric time column with step {step:g}"
    for fmt in _FORMATS:
        try:
            parsed = [datetime.strptime(s, fmt) for s in stamps]
        except ValueError:
            continue
        if any(p.strftime(fmt) != s for p, s in zip(parsed, stamps, strict=True)):
            continue
        deltas = {b - a for a, b in zip(parsed, parsed[1:], strict=False)}
        if len(deltas) != 1 or next(iter(deltas)).total_seconds() <= 0:
            return None, f"the time column (format {fmt}) is not regularly spaced"
        step = next(iter(deltas))
        out = [(parsed[-1] + (i + 1) * step).strftime(fmt) for i in range(n)]
        return out, f"continued the time column (format {fmt}) with step {step}"
    return None, "the time column is neither numbers nor dates in a known format"


# -- settings ----------------------------------------------------------------------------------


def _check_settings(samples: int, sampler: str, steps: int | None, horizon: int,
                    window: int | None, train_steps: int | None) -> None:  # fmt: skip
    from ..core.samplers import SAMPLERS
    from .csdi import CSDI_DEFAULTS

    def positive(name: str, value: Any, least: int = 1) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"--{name} must be an integer >= {least}; got {value!r}")

    positive("samples", samples)
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; valid: {', '.join(SAMPLERS)}")
    if steps is not None:
        positive("steps", steps)
        table = CSDI_DEFAULTS["process_options"]["num_steps"]
        if sampler in ("ddpm", "ddim") and steps > table:
            raise ValueError(
                f"--steps {steps}: the {sampler} sampler walks CSDI's {table}-step table, so at "
                f"most {table}"
            )
    positive("horizon", horizon, 0)
    if window is not None:
        positive("window", window, 2)
    if train_steps is not None:
        positive("train-steps", train_steps)


def _sampler_steps(sampler: str, steps: int | None) -> int:
    """The steps a sampler takes by default (ddpm / ddim: the whole 50-step table)."""
    from ..core.samplers import SAMPLERS

    if steps is not None:
        return steps
    default = inspect.signature(SAMPLERS[sampler]).parameters["steps"].default
    return 50 if default is None else int(default)


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    present = [name for name in OUTPUTS if (out / name).exists()]
    if present and not force:
        raise ValueError(
            f"{out} already holds outputs ({', '.join(present)}); pass --force to overwrite "
            "them, or choose another --out"
        )


def _net_size(observed_entries: int) -> tuple[str, str]:
    if observed_entries < SMALL_DATA:
        return "small", (
            f"{observed_entries} observed entries < {SMALL_DATA}: the small network "
            "(2 blocks of 32 channels) instead of the paper's 4 x 64"
        )
    return "paper", f"{observed_entries} observed entries >= {SMALL_DATA}: the paper's network"


def _train_stride(n_steps: int, k: int, length: int) -> int:
    """Stride 1 (every start, as the official air-quality training) while the windows hold at
    most 5 million entries; coarser beyond, but never more than half a window."""
    entries = (n_steps - length + 1) * k * length
    return max(1, min(max(1, length // 2), math.ceil(entries / _TRAIN_ENTRIES)))


# -- the model ---------------------------------------------------------------------------------


def _reuse(run: str, k: int, window: int | None, columns: list[str]) -> dict[str, Any]:
    """Load ``run`` and check it fits the data: same feature count, same window (when given)."""
    from .csdi import load_csdi_run

    try:
        model, info = load_csdi_run(run)
    except FileNotFoundError as err:
        raise ValueError(f"--run {run}: {err}") from None
    if int(info["n_features"]) != k:
        raise ValueError(
            f"--run {run} was trained on {info['n_features']} features, but DATA has {k} "
            "columns; train a new model (leave out --run)"
        )
    run_window = info.get("window")
    if run_window is not None and window is not None and int(run_window) != window:
        raise ValueError(
            f"--run {run} was trained on windows of {run_window} steps, but --window is "
            f"{window}; leave out --window or train a new model"
        )
    notes = []
    if run_window is None and window is None:
        notes.append("the run records no window length; used the default window")
    run_columns = info.get("columns")
    if run_columns is not None and list(run_columns) != columns:
        notes.append("the run was trained on columns with other names: " + ", ".join(run_columns))
    return {"model": model, "info": info, "window": run_window or window, "notes": notes}


def _train(z: np.ndarray, out: Path, *, length: int, horizon: int, train_steps: int,
           seed: int, force: bool, progress: bool, metadata: dict[str, Any]
           ) -> dict[str, Any]:  # fmt: skip
    """Train (or finish, or reuse an identical) CSDI run in ``out/run`` on the z-scored series
    ``z`` (T, K), NaN = missing."""
    from .csdi import train_csdi
    from .windows import make_windows

    n_steps, k = z.shape
    stride = _train_stride(n_steps, k, length)
    windows, observed = make_windows(z, length, stride)
    size, reason = _net_size(int(np.isfinite(z).sum()))
    net_options = dict(NET_SIZES[size])
    strategy = "mix"
    run_dir = out / "run"
    kwargs = dict(steps=train_steps, strategy=strategy, horizon=horizon or None,
                  forecast_fraction=0.5 if horizon else 0.0, net_options=net_options,
                  seed=seed, progress=progress, resume=True, metadata=metadata)  # fmt: skip
    try:
        model, summary = train_csdi(windows, observed, run_dir, **kwargs)
    except ValueError as err:
        if not str(err).startswith("cannot resume"):
            raise
        if not force:
            raise ValueError(
                f"{run_dir} holds a run trained on other data or settings; pass --force to "
                "retrain it, or choose another --out"
            ) from None
        shutil.rmtree(run_dir)
        model, summary = train_csdi(windows, observed, run_dir, **kwargs)
    return {
        "model": model,
        "record": {
            "run_dir": str(run_dir), "reused": False, "trained_steps": int(summary["step"]),
            "final_loss": _finite(summary.get("loss")), "net_size": size,
            "net_size_reason": reason, "net_options": _net_record(model),
            "parameters": _parameters(model.net), "strategy": strategy,
            "forecast_fraction": 0.5 if horizon else 0.0, "train_windows": int(len(windows)),
            "train_stride": stride,
        },
    }  # fmt: skip


def _net_record(model: Any) -> dict[str, Any]:
    net = model.net
    keys = ("n_features", "channels", "num_steps", "conditional", "step_embedding",
            "time_embedding_dim", "diffusion_embedding_dim")  # fmt: skip
    out = {key: getattr(net, key) for key in keys if hasattr(net, key)}
    out["layers"] = len(getattr(net, "blocks", ()))
    return out


def _parameters(net: Any) -> int:
    return int(sum(p.numel() for p in net.parameters()))


def _finite(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


# -- the figure --------------------------------------------------------------------------------


def _figure(path: Path, table: SeriesTable, quantiles: np.ndarray, observed: np.ndarray,
            n_rows: int, title: str) -> None:  # fmt: skip
    """Up to four series (those with the most missing entries, in column order) with their
    median, 5-95% band and observed points; a dashed line where the forecast begins."""
    from ..plotting import new_figure, save_figure

    missing = (~observed).sum(0)
    order = sorted(range(len(table.columns)), key=lambda j: (-int(missing[j]), j))[:4]
    order.sort()
    fig = new_figure(9.0, 2.0 + 1.7 * len(order))
    axes = fig.subplots(len(order), 1, squeeze=False, sharex=True)[:, 0]
    steps = np.arange(quantiles.shape[1])
    for ax, j in zip(axes, order, strict=True):
        ax.fill_between(steps, quantiles[0, :, j], quantiles[2, :, j], color="C0", alpha=0.3,
                        linewidth=0, label="5-95%")  # fmt: skip
        ax.plot(steps, quantiles[1, :, j], color="C0", linewidth=1.0, label="median")
        seen = observed[:, j]
        ax.plot(steps[seen], table.values[seen, j], ".", color="k", markersize=2.5,
                label="observed")  # fmt: skip
        if quantiles.shape[1] > n_rows:
            ax.axvline(n_rows - 0.5, color="C3", linestyle="--", linewidth=0.8)
        ax.set_ylabel(table.columns[j], fontsize=8)
        ax.set_title(f"{table.columns[j]}: {int(missing[j])} missing", fontsize=8, loc="left")
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=7, loc="upper right", ncol=3)
    forecast = "; dashed line: the forecast starts" if quantiles.shape[1] > n_rows else ""
    axes[-1].set_xlabel(f"row (time step){forecast}", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


# -- the command -------------------------------------------------------------------------------


def impute_file(
    data: str | os.PathLike,
    out: str | os.PathLike,
    *,
    run: str | None = None,
    samples: int = 100,
    sampler: str = "ddpm",
    steps: int | None = None,
    horizon: int = 0,
    window: int | None = None,
    train_steps: int | None = None,
    seed: int = 0,
    force: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Impute (and with ``horizon`` forecast) the series in ``data`` into the folder ``out``
    (module docstring for what is written). ``train_steps`` defaults to 1000; ``window`` to
    :data:`DEFAULT_WINDOW` steps (or the series' length when shorter, or a reused run's).
    Returns the content of ``imputation.json``."""
    import torch

    from ..metrics.probabilistic import sample_quantiles
    from .csdi import impute
    from .windows import Normalizer, make_windows, stitch_windows, window_starts

    t_start = time.perf_counter()
    seconds: dict[str, float] = {}
    _check_settings(samples, sampler, steps, horizon, window, train_steps)
    out = Path(out)
    table = read_table(data)
    n_rows, k = table.shape
    if n_rows < 2:
        raise ValueError(f"{data}: {n_rows} data row; imputation needs at least 2")
    _check_out(out, force)
    seconds["read"] = time.perf_counter() - t_start
    notes: list[str] = []

    # the model: reuse a run, or train one on this series
    t0 = time.perf_counter()
    reused = _reuse(run, k, window, table.columns) if run is not None else None
    length = window if window is not None else (reused or {}).get("window")
    if length is None:
        length = min(DEFAULT_WINDOW, n_rows)
    length = int(length)
    if length > n_rows:
        whose = f"--run {run}'s" if run is not None and window is None else "the"
        raise ValueError(
            f"{data}: {n_rows} rows, fewer than {whose} window length {length}; "
            + (f"pass a --window of at most {n_rows}" if run is None else "train a new model")
        )
    if horizon >= length:
        raise ValueError(
            f"--horizon {horizon} must be smaller than the window length {length} (the model "
            "needs past steps in the window to forecast from); pass a larger --window"
        )
    if reused is not None and reused["info"].get("normalizer") is not None:
        normalizer = Normalizer.from_state(reused["info"]["normalizer"])
        fitted_on = f"the run's training data ({run})"
    else:
        values = torch.as_tensor(table.values.T[None])  # (1, K, T)
        normalizer = Normalizer.fit(torch.nan_to_num(values), ~torch.isnan(values))
        fitted_on = f"the observed entries of {data}"
        if reused is not None:
            notes.append("the run records no normalizer; fitted one on DATA")
    z = normalizer.transform(torch.as_tensor(table.values.T)).numpy().T  # (T, K), NaN kept
    out.mkdir(parents=True, exist_ok=True)
    if reused is None:
        trained = _train(
            z, out, length=length, horizon=horizon, train_steps=train_steps or 1000, seed=seed,
            force=force, progress=progress,
            metadata={"normalizer": normalizer.state_dict(), "columns": table.columns,
                      "source": str(data)},
        )  # fmt: skip
        model, model_record = trained["model"], trained["record"]
    else:
        model = reused["model"]
        notes += reused["notes"]
        if train_steps is not None:
            notes.append("--train-steps is ignored with --run")
        model_record = {
            "run_dir": str(run), "reused": True, "net_options": _net_record(model),
            "parameters": _parameters(model.net),
            "strategy": reused["info"].get("strategy"),
        }  # fmt: skip
    seconds["train"] = time.perf_counter() - t0

    # imputation windows over the series and the appended horizon
    t0 = time.perf_counter()
    total = n_rows + horizon
    z_ext = np.concatenate([z, np.full((horizon, k), np.nan)]) if horizon else z
    stride = max(1, length // 2)
    starts = window_starts(total, length, stride)
    windows, observed = make_windows(z_ext, length, stride)
    draws = impute(model, windows, observed, n_samples=samples, sampler=sampler, steps=steps,
                   seed=seed, progress=progress)  # fmt: skip
    series = stitch_windows(draws, starts, total)  # (S, K, T')
    x = normalizer.inverse(series).numpy().transpose(0, 2, 1)  # (S, T', K), data units
    values_ext = np.concatenate([table.values, np.full((horizon, k), np.nan)])
    seen = ~np.isnan(values_ext)
    x[:, seen] = values_ext[seen]  # exactly as read
    quantiles = sample_quantiles(torch.as_tensor(x), _LEVELS).numpy()  # (3, T', K)
    quantiles[:, seen] = values_ext[seen]
    seconds["impute"] = time.perf_counter() - t0

    # outputs
    t0 = time.perf_counter()
    time_record: dict[str, Any] = {"rows": horizon}
    stamps = table.time
    if table.time is not None and horizon:
        extra, how = extend_time(table.time, horizon)
        time_record.update(time_extended=extra is not None, note=how)
        if extra is None:
            extra = [""] * horizon
            notes.append(f"the {horizon} forecast rows have empty time cells: {how}")
        stamps = [*table.time, *extra]
    elif horizon:
        time_record.update(time_extended=False, note="DATA has no time column")

    def result(values: np.ndarray) -> SeriesTable:
        return SeriesTable(values, table.columns, stamps, table.time_name)

    arrays = {"samples": x, "observed_mask": seen,
              "columns": np.asarray(table.columns, dtype=np.str_)}  # fmt: skip
    if stamps is not None:
        arrays["time"] = np.asarray(stamps, dtype=np.str_)
    with atomic_path(out / "samples.npz", suffix=".npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    for name, q in zip(("q05.csv", "median.csv", "q95.csv"), quantiles, strict=True):
        write_series_csv(out / name, result(q))
    missing = int((~table.observed).sum())
    title = (f"{Path(data).name}: {samples} samples, {sampler}"
             + (f", forecast {horizon} steps" if horizon else ""))  # fmt: skip
    _figure(out / "imputation.png", result(values_ext), quantiles, seen, n_rows, title)
    seconds["write"] = time.perf_counter() - t0
    seconds["total"] = time.perf_counter() - t_start

    record = {
        "format": IMPUTE_FORMAT,
        "version": 1,
        "data": {
            "path": str(data), "rows": n_rows, "features": k, "columns": table.columns,
            "time_column": table.time_name, "missing_entries": missing,
            "missing_fraction": missing / (n_rows * k),
            "missing_by_column": {c: int(m) for c, m in
                                  zip(table.columns, (~table.observed).sum(0), strict=True)},
        },  # fmt: skip
        "settings": {
            "samples": samples, "sampler": sampler, "steps": _sampler_steps(sampler, steps),
            "horizon": horizon, "window": length, "train_steps": train_steps or 1000,
            "seed": seed, "run": run, "force": force,
        },  # fmt: skip
        "model": model_record,
        "normalizer": {**normalizer.state_dict(), "fitted_on": fitted_on},
        "imputation": {
            "windows": len(starts), "stride": stride, "rows_out": total,
            "stitching": "each step from the window where it sits farthest from an edge",
            "quantiles": list(_LEVELS), "observed": "returned exactly as read",
        },  # fmt: skip
        "horizon": time_record,
        "outputs": list(OUTPUTS),
        "seconds": {key: round(value, 3) for key, value in seconds.items()},
        "notes": notes,
    }
    write_json_atomic(out / "imputation.json", record, strict=True)
    print(f"imputed {missing} missing entries of {data} ({n_rows} rows x {k} columns)"
          + (f" and forecast {horizon} rows" if horizon else "")
          + f" with {samples} samples in {seconds['total']:.0f} s; outputs in {out}")  # fmt: skip
    return record
