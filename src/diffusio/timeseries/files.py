"""A user's time series as files: CSV and ``.npz``, read and written back.

A :class:`SeriesTable` holds ``values`` of shape (T steps, K features), float64 with NaN for a
missing value, the column names, and optionally the time column's raw strings (kept verbatim, so
a result written back carries the user's own timestamps). Rows are time steps in file order.

CSV (:func:`read_series_csv`): comma-separated, UTF-8 (a BOM is allowed), a header line with the
column names; an empty cell or ``NaN``/``nan``/``NA``/``N/A``/``null`` (any case) is missing.
``.npz`` (:func:`read_series_npz`): array ``values`` (T, K), optional ``columns`` (K,) strings,
optional ``time`` (T,) strings and ``time_name``; loaded with ``allow_pickle=False``, so a file
that needs unpickling is refused, never run.

Every bad input raises ``ValueError`` with one line naming the file and, where it applies, the
column, the line (the header is line 1) and the value; the CLI turns it into exit code 2.
"""

from __future__ import annotations

import csv
import io
import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_path, write_text_atomic

__all__ = [
    "MISSING_TOKENS",
    "TIME_NAMES",
    "SeriesTable",
    "read_series_csv",
    "read_series_npz",
    "write_series_csv",
    "write_series_npz",
]

#: Cells read as a missing value (compared after stripping blanks, case-insensitively).
MISSING_TOKENS = frozenset({"", "nan", "na", "n/a", "null"})

#: Header names that make ``time_column="auto"`` take the first column as time even when its
#: cells are numbers (compared case-insensitively).
TIME_NAMES = frozenset({"time", "date", "datetime", "timestamp", "time_hour", "ds"})


@dataclass
class SeriesTable:
    """A multivariate series: ``values`` (T, K) float64 with NaN = missing, ``columns`` (K
    names), ``time`` (T raw strings of the time column, or None) and ``time_name`` (its
    header, or None when there is no time column)."""

    values: np.ndarray
    columns: list[str]
    time: list[str] | None = None
    time_name: str | None = None

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values, dtype=np.float64)
        self.columns = [str(c) for c in self.columns]
        if self.values.ndim != 2:
            raise ValueError(f"values must be 2-D (T, K); got shape {self.values.shape}")
        n_steps, n_features = self.values.shape
        if len(self.columns) != n_features:
            raise ValueError(
                f"{len(self.columns)} column names for {n_features} features "
                f"(values shape {self.values.shape})"
            )
        if self.time is not None:
            self.time = [str(t) for t in self.time]
            if len(self.time) != n_steps:
                raise ValueError(f"{len(self.time)} time stamps for {n_steps} rows")
            if self.time_name is None:
                raise ValueError("a time column needs a name (time_name)")
        elif self.time_name is not None:
            raise ValueError(f"time_name {self.time_name!r} given without time stamps")

    @property
    def observed(self) -> np.ndarray:
        """(T, K) bool: True where a value is present."""
        return ~np.isnan(self.values)

    @property
    def shape(self) -> tuple[int, int]:
        """(T, K)."""
        return self.values.shape  # type: ignore[return-value]

    def with_values(self, values: Any) -> SeriesTable:
        """The same header and time column with other ``values`` of the same shape (T, K): how
        an imputation is written back in the user's layout."""
        values = np.asarray(values, dtype=np.float64)
        if values.shape != self.values.shape:
            raise ValueError(f"values of shape {values.shape} for a table of shape {self.shape}")
        return SeriesTable(values, list(self.columns), self.time, self.time_name)


# -- shared checks -----------------------------------------------------------------------------


def _check_table(source: str, values: np.ndarray, columns: list[str]) -> None:
    """The checks CSV and npz share: names present and unique, no infinity, no empty column."""
    seen: dict[str, int] = {}
    for k, name in enumerate(columns):
        if name in seen:
            raise ValueError(
                f"{source}: duplicate column name {name!r} (columns {seen[name] + 1} and {k + 1})"
            )
        seen[name] = k
    if values.shape[0] == 0:
        raise ValueError(f"{source}: no data rows")
    if values.shape[1] == 0:
        raise ValueError(f"{source}: no feature columns")
    bad = np.isinf(values)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{source}: infinite value in column {columns[col]!r} at row {row + 1}"
        )
    empty = np.isnan(values).all(axis=0)
    if empty.any():
        name = columns[int(np.argmax(empty))]
        raise ValueError(f"{source}: column {name!r} has no values (all missing)")


def _existing_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: file not found")
    if not path.is_file():
        raise ValueError(f"{path}: not a file")
    return path


def _numeric_text(cell: str) -> bool:
    """True for a cell that is a number (not a missing-value token)."""
    text = cell.strip()
    if text.lower() in MISSING_TOKENS:
        return False
    try:
        float(text)
    except ValueError:
        return False
    return True


def _number(cell: str) -> float | None:
    """The float a cell holds, NaN for a missing cell, None when it is not a number."""
    text = cell.strip()
    if text.lower() in MISSING_TOKENS:
        return math.nan
    try:
        return float(text)
    except ValueError:
        return None


# -- CSV ---------------------------------------------------------------------------------------


def _is_time_column(name: str, cells: list[str]) -> bool:
    """``auto``: the first column is time when its header is empty (the unnamed index pandas
    writes) or a usual time name, or when most of its present cells are not numbers (dates,
    timestamps). A mostly numeric first column stays a feature, so one bad cell in it is
    reported as a bad value, not taken for a time axis."""
    if not name.strip() or name.strip().lower() in TIME_NAMES:
        return True
    present = [c for c in cells if c.strip().lower() not in MISSING_TOKENS]
    if not present:
        return False
    non_numeric = sum(_number(c) is None for c in present)
    return 2 * non_numeric > len(present)


def read_series_csv(path: str | os.PathLike, time_column: str | None = "auto") -> SeriesTable:
    """Read a CSV of time series: rows = time steps, columns = features, a header line.

    ``time_column``: ``"auto"`` takes the first column as the time column when its header is
    empty or one of :data:`TIME_NAMES`, or its cells are mostly not numbers; ``None`` reads
    every column as a feature; a name picks that column (anywhere; it is written back first).
    The time column's cells are kept verbatim and must not be empty; column names are stripped
    of surrounding blanks. Only commas separate cells.

    Raises ``ValueError`` naming the file and the problem: file not found, empty file, no data
    rows, a header that is all numbers (no header), an unnamed or duplicate column name, a
    ragged row (its line and both cell counts), a non-number (column, line, value), an
    infinite value, an all-missing column, an unknown or empty time column.
    """
    path = _existing_file(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    if not text.strip():
        raise ValueError(f"{path}: empty file")
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[list[str]] = []
    lines: list[int] = []
    try:
        header = next(reader)
        while not header:  # leading blank lines
            header = next(reader)
        for row in reader:
            if not row:  # a blank line
                continue
            rows.append(row)
            lines.append(reader.line_num)
    except csv.Error as err:
        raise ValueError(f"{path}, line {reader.line_num}: malformed CSV ({err})") from None
    names = [h.strip() for h in header]
    if all(_numeric_text(h) for h in header):
        raise ValueError(
            f"{path}: the first line {','.join(header)[:60]!r} is numbers, not a header; "
            "add a header line with the column names"
        )
    for row, line in zip(rows, lines, strict=True):
        if len(row) != len(names):
            raise ValueError(
                f"{path}, line {line}: {len(row)} cells, but the header has {len(names)} columns"
            )
    if not rows:
        raise ValueError(f"{path}: no data rows below the header")

    time_index: int | None
    if time_column is None:
        time_index = None
    elif time_column == "auto":
        time_index = 0 if _is_time_column(names[0], [r[0] for r in rows]) else None
    else:
        if time_column not in names:
            raise ValueError(
                f"{path}: no time column {time_column!r} (columns: {', '.join(names)})"
            )
        time_index = names.index(time_column)

    seen: dict[str, int] = {}
    for k, name in enumerate(names):
        if not name and k != time_index:
            raise ValueError(f"{path}: column {k + 1} has no name in the header")
        if name in seen:
            raise ValueError(
                f"{path}: duplicate column name {name!r} (columns {seen[name] + 1} and {k + 1})"
            )
        seen[name] = k
    feature_idx = [k for k in range(len(names)) if k != time_index]
    columns = [names[k] for k in feature_idx]
    if not columns:
        raise ValueError(f"{path}: no feature columns besides the time column")
    values = np.empty((len(rows), len(columns)), dtype=np.float64)
    for j, k in enumerate(feature_idx):
        for i, row in enumerate(rows):
            x = _number(row[k])
            if x is None:
                raise ValueError(
                    f"{path}, line {lines[i]}: column {names[k]!r} has a non-number "
                    f"{row[k].strip()[:40]!r} (the first in that column)"
                )
            if math.isinf(x):
                raise ValueError(
                    f"{path}, line {lines[i]}: column {names[k]!r} has an infinite value "
                    f"{row[k].strip()!r}"
                )
            values[i, j] = x
    time: list[str] | None = None
    if time_index is not None:
        time = [row[time_index] for row in rows]
        for i, stamp in enumerate(time):
            if not stamp.strip():
                raise ValueError(
                    f"{path}, line {lines[i]}: the time column {names[time_index]!r} is empty"
                )
    _check_table(str(path), values, columns)
    return SeriesTable(
        values, columns, time, None if time_index is None else names[time_index]
    )


def _format(x: float) -> str:
    """A float as the shortest text that reads back to the same float; NaN as an empty cell;
    whole numbers without a trailing ``.0`` (``67`` for 67.0)."""
    if math.isnan(x):
        return ""
    text = repr(float(x))
    return text[:-2] if text.endswith(".0") else text


def _as_table(table: Any) -> SeriesTable:
    if isinstance(table, SeriesTable):
        return table
    values = np.asarray(table, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"values must be 2-D (T, K); got shape {values.shape}")
    return SeriesTable(values, [f"x{k}" for k in range(values.shape[1])])


def write_series_csv(path: str | os.PathLike, table: SeriesTable | Any) -> Path:
    """Write a table as CSV (atomically: a temporary sibling, then ``os.replace``): the time
    column first (its header and strings verbatim) when there is one, then the feature columns;
    NaN as an empty cell, numbers as the shortest text that reads back to the same float, so
    :func:`read_series_csv` returns the same table. ``table`` is a :class:`SeriesTable` or a
    (T, K) array (columns ``x0..``). Overwrites ``path``; refusing to is the caller's job."""
    table = _as_table(table)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    lead = [table.time_name] if table.time is not None else []
    writer.writerow([*lead, *table.columns])
    for i, row in enumerate(table.values):
        stamp = [table.time[i]] if table.time is not None else []
        writer.writerow([*stamp, *(_format(x) for x in row)])
    return write_text_atomic(path, buf.getvalue())


# -- npz ---------------------------------------------------------------------------------------


def _strings(source: str, key: str, array: np.ndarray, length: int) -> list[str]:
    if array.dtype.kind not in "US" or array.ndim != 1 or len(array) != length:
        raise ValueError(
            f"{source}: array {key!r} must be {length} strings (1-D); got dtype {array.dtype} "
            f"shape {array.shape}"
        )
    return [a.decode("utf-8") if isinstance(a, bytes) else str(a) for a in array.tolist()]


def read_series_npz(path: str | os.PathLike) -> SeriesTable:
    """Read a ``.npz`` of time series: array ``values`` (T, K), real numbers with NaN =
    missing; optional ``columns`` (K,) strings (default ``x0..x{K-1}``), ``time`` (T,) strings
    and ``time_name`` (a 0-d string; default ``"time"``). Loaded with ``allow_pickle=False``:
    an object array (which needs unpickling) is refused. ``ValueError`` for a missing file, a
    file that is not an npz archive, a missing ``values``, wrong shapes or dtypes, infinite
    values, an all-missing column or duplicate names."""
    path = _existing_file(path)
    source = str(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{source}: not a readable .npz archive ({err})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(
            f"{source}: a single .npy array, not an .npz archive; "
            "save with numpy.savez(path, values=...)"
        )
    with archive:
        keys = list(archive.files)
        if "values" not in keys:
            raise ValueError(f"{source}: no array 'values' (arrays: {', '.join(keys) or 'none'})")

        def load(key: str) -> np.ndarray:
            try:
                return archive[key]
            except ValueError as err:  # object arrays need pickle
                raise ValueError(
                    f"{source}: array {key!r} is an object array, which would need unpickling "
                    f"(refused; {err})"
                ) from None

        raw = load("values")
        if raw.dtype.kind not in "biuf":
            raise ValueError(f"{source}: 'values' must hold real numbers; got dtype {raw.dtype}")
        if raw.ndim != 2:
            raise ValueError(f"{source}: 'values' must be 2-D (T, K); got shape {raw.shape}")
        values = raw.astype(np.float64)
        n_steps, n_features = values.shape
        if "columns" in keys:
            columns = _strings(source, "columns", load("columns"), n_features)
        else:
            columns = [f"x{k}" for k in range(n_features)]
        time = time_name = None
        if "time" in keys:
            time = _strings(source, "time", load("time"), n_steps)
            time_name = "time"
            if "time_name" in keys:
                name = load("time_name")
                if name.dtype.kind not in "US" or name.ndim != 0:
                    raise ValueError(f"{source}: 'time_name' must be one string")
                time_name = str(name.item())
    _check_table(source, values, columns)
    return SeriesTable(values, columns, time, time_name)


def write_series_npz(path: str | os.PathLike, table: SeriesTable | Any) -> Path:
    """Write a table as ``.npz`` (atomically; plain arrays, no pickles): ``values``,
    ``columns`` and, with a time column, ``time`` and ``time_name``; read back by
    :func:`read_series_npz`."""
    table = _as_table(table)
    arrays: dict[str, np.ndarray] = {
        "values": table.values, "columns": np.asarray(table.columns, dtype=np.str_),
    }
    if table.time is not None:
        arrays["time"] = np.asarray(table.time, dtype=np.str_)
        arrays["time_name"] = np.asarray(table.time_name, dtype=np.str_)
    with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    return Path(path)
