"""What ``diffusio generate-series`` does: draw new windows of time series from a saved
generator, in the data's own units.

A *run* is a folder written by :func:`diffusio.timeseries.tsgm.save` (any of
:data:`~diffusio.timeseries.tsgm.GENERATORS`: Lim et al.'s latent :class:`~.tsgm.TSGM`, the
data-space :class:`~.tsgm.DataDDPM`, :class:`~.tsgm.GaussianBaseline`, :class:`~.tsgm.VARBaseline`).
:func:`~.tsgm.save` keeps the model only (``model.safetensors`` and ``generator.json``), not
the min-max scale of the data it was trained on; :func:`save_generator` adds ``series.json``
next to them with what a user needs to get real units back:

* ``columns`` -- the feature names, D of them;
* ``min`` / ``max`` -- :func:`~.tsgm.minmax_windows`' per-feature scale, undone by
  :func:`~.tsgm.minmax_inverse` (absent: the windows stay in the model's [0, 1] units);
* ``sampler`` / ``steps`` -- how the run was sampled where it was evaluated (the defaults of
  :func:`generate_file`; the classical baselines take none).

:func:`generate_file` draws N windows (N, L, D) and writes ``.npz`` (array ``samples`` and,
when known, ``columns``; ``scaled`` says whether the values are still min-max scaled) or
``.csv`` (long format: ``window,step,<feature names>``, one row per window and step). Every
bad input raises ``ValueError`` with one line (the CLI's exit code 2).
"""

from __future__ import annotations

import csv
import io
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_path, read_json, write_json_atomic, write_text_atomic

__all__ = ["FORMATS", "SERIES_FILE", "generate_file", "load_run", "save_generator"]

#: Output formats of :func:`generate_file`.
FORMATS = (".npz", ".csv")
#: The sidecar :func:`save_generator` writes next to :func:`~.tsgm.save`'s files.
SERIES_FILE = "series.json"
SERIES_FORMAT = "diffusio-series"
_NEURAL = ("TSGM", "DataDDPM")  # the generators that take a sampler


def save_generator(
    generator: Any,
    path_dir: str | os.PathLike,
    *,
    scale: tuple[Any, Any] | None = None,
    columns: Sequence[str] | None = None,
    sampler: str | None = None,
    steps: int | None = None,
    info: dict[str, Any] | None = None,
) -> Path:
    """:func:`~.tsgm.save` ``generator`` into ``path_dir`` and write ``series.json`` with the
    data's ``scale`` (``(min, max)`` of :func:`~.tsgm.minmax_windows`), its ``columns``, the
    ``sampler`` and ``steps`` to draw with, and free-form ``info`` (JSON-ready). Returns the
    folder."""
    from . import tsgm

    folder = tsgm.save(generator, path_dir)
    features = _features(generator)
    record: dict[str, Any] = {"format": SERIES_FORMAT, "class": type(generator).__name__,
                              "features": features}  # fmt: skip
    if columns is not None:
        names = [str(c) for c in columns]
        if len(names) != features:
            raise ValueError(f"{len(names)} column names for a generator of {features} features")
        record["columns"] = names
    if scale is not None:
        lo, hi = (np.asarray(s.detach().cpu() if hasattr(s, "detach") else s,
                             dtype=np.float64).reshape(-1) for s in scale)  # fmt: skip
        if lo.shape != (features,) or hi.shape != (features,):
            raise ValueError(f"scale needs {features} minima and maxima; got {lo.size}, {hi.size}")
        record["min"], record["max"] = lo.tolist(), hi.tolist()
    if sampler is not None:
        record["sampler"] = str(sampler)
    if steps is not None:
        record["steps"] = int(steps)
    if info:
        record["info"] = info
    write_json_atomic(folder / SERIES_FILE, record, strict=True)
    return folder


def _features(generator: Any) -> int:
    features = getattr(generator, "features", None)
    return int(features) if features is not None else int(generator.shape[1])


def _length(generator: Any) -> int:
    length = getattr(generator, "length", None)
    return int(length) if length is not None else int(generator.shape[0])


def load_run(run: str | os.PathLike) -> tuple[Any, dict[str, Any]]:
    """The generator saved in ``run`` and its ``series.json`` record (``{}`` when the run has
    none); ``ValueError`` with one line for a missing folder or one that holds no generator."""
    from . import tsgm

    folder = Path(run)
    if not folder.exists():
        raise ValueError(f"no run directory at {folder}")
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a directory (RUN is a folder written by tsgm.save)")
    if not (folder / "generator.json").is_file() or not (folder / "model.safetensors").is_file():
        raise ValueError(f"{folder} is not a saved time-series generator (no generator.json and "
                         "model.safetensors; write one with diffusio.timeseries.tsgm.save)")
    try:
        generator = tsgm.load(folder)
    except FileNotFoundError as err:
        raise ValueError(f"{folder}: {err}") from None
    record: dict[str, Any] = {}
    if (folder / SERIES_FILE).is_file():
        record = read_json(folder / SERIES_FILE)
        if not isinstance(record, dict) or record.get("format") != SERIES_FORMAT:
            raise ValueError(f"{folder / SERIES_FILE}: not a {SERIES_FORMAT} record")
        _check_record(record, _features(generator), folder / SERIES_FILE)
    return generator, record


def _check_record(record: dict[str, Any], features: int, source: Path) -> None:
    for key in ("columns", "min", "max"):
        value = record.get(key)
        if value is not None and (not isinstance(value, list) or len(value) != features):
            raise ValueError(f"{source}: {key!r} must list {features} values, one per feature")
    if ("min" in record) != ("max" in record):
        raise ValueError(f"{source}: needs both 'min' and 'max' (or neither)")
    for key in ("min", "max"):
        if key in record and not all(isinstance(v, (int, float)) and math.isfinite(v)
                                     for v in record[key]):  # fmt: skip
            raise ValueError(f"{source}: {key!r} must be finite numbers")


def _check_output(out: str | os.PathLike, force: bool) -> Path:
    path = Path(out)
    if path.suffix.lower() not in FORMATS:
        raise ValueError(f"unsupported output {path.name!r}; use one of {', '.join(FORMATS)}")
    if path.is_dir():
        raise ValueError(f"{path} is a directory; --out names a {' or '.join(FORMATS)} file")
    if path.exists() and not force:
        raise ValueError(f"{path} already exists; pass --force to overwrite it")
    return path


def _csv_text(samples: np.ndarray, columns: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["window", "step", *columns])
    for i, window in enumerate(samples):
        for t, row in enumerate(window):
            writer.writerow([i, t, *(repr(float(v)) for v in row)])
    return buf.getvalue()


def generate_file(
    run: str | os.PathLike,
    n: int,
    out: str | os.PathLike,
    *,
    seed: int = 0,
    sampler: str | None = None,
    steps: int | None = None,
    force: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Draw ``n`` windows from the generator saved in ``run`` and write them to ``out``
    (module docstring), in the data's own units when the run's ``series.json`` keeps the
    min-max scale. ``sampler`` / ``steps`` (the neural generators only) default to the ones in
    ``series.json``, else the generator's own. The same ``seed`` gives the same windows.
    Returns a summary (path, shape, units, columns, seconds)."""
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"--n must be a positive number of windows, got {n}")
    if steps is not None and steps < 1:
        raise ValueError(f"--steps must be positive, got {steps}")
    path = _check_output(out, force)
    generator, record = load_run(run)
    name = type(generator).__name__
    options: dict[str, Any] = {"seed": int(seed)}
    if name in _NEURAL:
        options["sampler"] = sampler or record.get("sampler") or ("pc" if name == "TSGM" else "ddpm")
        chosen = steps if steps is not None else record.get("steps")
        if chosen is not None:
            options["steps"] = int(chosen)
        options["progress"] = progress
    elif sampler is not None or steps is not None:
        raise ValueError(f"a {name} draws its windows directly; --sampler and --steps do not apply")
    start = time.perf_counter()
    import torch

    from .tsgm import minmax_inverse

    with torch.no_grad():
        x = generator.generate(int(n), **options)
    scaled = "min" not in record
    if not scaled:
        lo, hi = (torch.tensor(record[k], dtype=torch.float64) for k in ("min", "max"))
        x = minmax_inverse(x, (lo, hi))
    samples = x.detach().cpu().numpy().astype(np.float64)
    if not np.isfinite(samples).all():
        raise ValueError(f"{run}: the generator produced non-finite values (a broken model)")
    features = samples.shape[2]
    columns = record.get("columns") or [f"x{k}" for k in range(features)]
    seconds = time.perf_counter() - start
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".npz":
        arrays: dict[str, Any] = {"samples": samples, "scaled": np.array(scaled)}
        if record.get("columns"):
            arrays["columns"] = np.array(record["columns"], dtype=str)
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(tmp, **arrays)
    else:
        write_text_atomic(path, _csv_text(samples, columns))
    return {"path": str(path), "generator": name, "shape": list(samples.shape),
            "units": "min-max scaled [0, 1]" if scaled else "the data's own",
            "columns": columns, "options": {k: v for k, v in options.items() if k != "progress"},
            "length": _length(generator), "seconds": round(seconds, 3)}  # fmt: skip
