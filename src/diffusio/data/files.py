"""Load a table of samples (N, D) from a local file: ``.npy``, ``.npz`` or ``.csv``.

Every failure is one exception with one clear message naming the file: FileNotFoundError for a
missing file; ValueError for an unsupported extension, an unreadable or corrupt file, a missing
or ambiguous ``.npz`` key, a non-numeric array, a shape other than (N, D), no rows, or a row with
NaN / Inf (rows are counted from 0).
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ["SUPPORTED_EXTENSIONS", "load_array"]

SUPPORTED_EXTENSIONS: tuple[str, ...] = (".npy", ".npz", ".csv")
_NPZ_DEFAULT_KEYS = ("samples", "data")
_READ_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile, UnicodeDecodeError)


def _read_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except _READ_ERRORS as err:
        raise ValueError(f"could not read {path}: {err}") from None


def _read_npz(path: Path, key: str | None) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.files)
            chosen = _npz_key(path, keys, key)
            return archive[chosen]
    except _KeyChoiceError:
        raise
    except _READ_ERRORS as err:
        raise ValueError(f"could not read {path}: {err}") from None


class _KeyChoiceError(ValueError):
    """No usable .npz member (kept apart from numpy's own ValueErrors, which get wrapped)."""


def _npz_key(path: Path, keys: list[str], key: str | None) -> str:
    """The member to load, else a :class:`_KeyChoiceError` naming the available ones."""
    if key is not None and key in keys:
        return key
    if key is None and len(keys) == 1:
        return keys[0]
    if key is None:
        chosen = next((k for k in _NPZ_DEFAULT_KEYS if k in keys), None)
        if chosen is not None:
            return chosen
    if not keys:
        message = f"{path} contains no arrays"
    elif key is not None:
        message = f"{path} has no array {key!r}; available: {', '.join(keys)}"
    else:
        message = (
            f"{path} holds several arrays ({', '.join(keys)}); pass key= to choose one "
            f"(the default is the only array, else one named {' or '.join(_NPZ_DEFAULT_KEYS)})"
        )
    raise _KeyChoiceError(message)


def _is_number(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def _read_csv(path: Path) -> np.ndarray:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"could not read {path}: {err}") from None
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        return np.zeros((0, 0))
    # A header is a first non-blank line with a field that is not a number.
    header = not all(_is_number(f.strip()) for f in lines[first].split(","))
    skip = first + int(header)
    if not any(line.strip() for line in lines[skip:]):
        return np.zeros((0, 0))
    try:
        return np.loadtxt(io.StringIO(text), delimiter=",", skiprows=skip, ndmin=2, dtype=float)
    except ValueError as err:
        raise ValueError(f"could not read {path}: {err}") from None


def load_array(path: str | os.PathLike, key: str | None = None) -> Tensor:
    """Samples from ``path`` as a float32 tensor (N, D).

    ``.npy``: the array. ``.npz``: the array ``key``, else the only array, else the one named
    ``samples`` or ``data``. ``.csv``: comma-separated numbers, one row per sample, with an
    optional header line (detected when a field of the first line is not a number).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_EXTENSIONS:
        raise ValueError(
            f"unsupported file type {suffix or '(none)'!r} for {path}; "
            f"supported: {', '.join(SUPPORTED_EXTENSIONS)}"
        )
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    if key is not None and suffix != ".npz":
        raise ValueError(f"key= applies to .npz files only, got key={key!r} for {path}")
    if suffix == ".npy":
        array = _read_npy(path)
    elif suffix == ".npz":
        array = _read_npz(path, key)
    else:
        array = _read_csv(path)
    return _validate(array, path)


def _validate(array: np.ndarray, path: Path) -> Tensor:
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_) or np.iscomplexobj(
        array
    ):
        raise ValueError(f"{path}: expected a real numeric array, got dtype {array.dtype}")
    if array.ndim != 2:
        raise ValueError(f"{path}: expected shape (N, D), got {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{path}: the array is empty (shape {array.shape})")
    with np.errstate(over="ignore"):
        values = np.ascontiguousarray(array, dtype=np.float32)
    for test, label in ((np.isnan, "NaN"), (np.isinf, "Inf")):
        bad = test(values).any(axis=1)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            extra = "" if label == "NaN" or np.isinf(array[row]).any() else " (beyond float32)"
            raise ValueError(f"{path}: row {row} contains {label}{extra}")
    return torch.from_numpy(values)
