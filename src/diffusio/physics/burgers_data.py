"""Samples and data sets of DiffPhyCon's 1-D Burgers' task (Wei et al. 2024): initial states
and controls drawn as the official data generator draws them, solved by
:func:`diffusio.physics.burgers.simulate`, stored as ``.npz`` + a JSON manifest.

Sampling (the official ``make_data_varying_f``)
-----------------------------------------------
* Initial state: ``u0(x) = A1 exp(-(x - mu1)^2 / (2 s1^2)) + A2 exp(-(x - mu2)^2 / (2 s2^2))``,
  bare exponential bumps (peak = amplitude, *not* the normalised density), mu1 ~ U(0.2, 0.4),
  s1 ~ U(0.05, 0.15), A1 ~ U(0, 2), mu2 ~ U(0.6, 0.8), s2 ~ U(0.05, 0.15), A2 ~ U(-2, 0).
* Control: ``f(x, t) = c * sum_k a_k b_k exp(-(x - xc_k)^2 / (2 xs_k^2)) m(x)
  exp(-(t - tc_k)^2 / (2 ts_k^2))`` over 8 bumps, a_k ~ U(-1.5, 1.5), xc_k, tc_k ~ U(0, 1),
  xs_k, ts_k ~ 0.5 U(0.1, 0.4); b_0 = 1 and b_1..b_7 ~ Bernoulli(1/2) (the first bump always
  on). It is evaluated on the 128 cells and at the 10 control times ``CONTROL_TIMES`` =
  k / 11, k = 1..10 (the official ``linspace(1/11, 10/11, 10)``; not the interval midpoints),
  and held constant over interval k. Full control: mask m = 1 and c = 2. Partial control
  (``fo-pc``, ``po-pc``): m is the controlled cells' indicator and c = 4 (the official
  ``amp_compensate *= 2`` for ``front_rear_quarter``).

Data
----
:func:`make_burgers_data` draws ``n`` (u0, f) pairs from one seeded ``torch.Generator`` (all
initial-state parameters, then all control parameters: the result does not depend on the
chunk size) and solves them; :func:`save_burgers_dataset` writes ``FILE.npz`` (``u``, ``f``;
read with ``allow_pickle=False``) and ``FILE.json`` (the manifest, with the npz's sha256),
each atomically; :func:`load_burgers_dataset` checks both.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..io import atomic_path, file_sha256, write_json_atomic
from .burgers import (
    CONTROL_TIMES,
    DT,
    N_BUMPS,
    N_CELLS,
    N_INTERVALS,
    N_TIMES,
    NU,
    SUBSTEPS,
    Setting,
    X,
    get_setting,
    simulate,
)  # fmt: skip

__all__ = [
    "BurgersDataset", "load_burgers_dataset", "make_burgers_data", "sample_control",
    "sample_initial", "save_burgers_dataset",
]  # fmt: skip

# ----------------------------------------------------------------------------------------------
# samplers


def _uniform(g: torch.Generator | None, shape, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=g, dtype=torch.float64)


def _bump(x: torch.Tensor, centre: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
    """``exp(-(x - centre)^2 / (2 width^2))``, the bare exponential (peak 1)."""
    return torch.exp(-0.5 * ((x - centre) / width) ** 2)


def _initial_params(n: int, g: torch.Generator | None) -> dict[str, torch.Tensor]:
    return {
        "mu1": _uniform(g, (n,), 0.2, 0.4), "amp1": _uniform(g, (n,), 0.0, 2.0),
        "sig1": _uniform(g, (n,), 0.05, 0.15), "mu2": _uniform(g, (n,), 0.6, 0.8),
        "amp2": _uniform(g, (n,), -2.0, 0.0), "sig2": _uniform(g, (n,), 0.05, 0.15),
    }  # fmt: skip


def _initial_from(p: Mapping[str, torch.Tensor]) -> torch.Tensor:
    x = X[None]
    return (p["amp1"][:, None] * _bump(x, p["mu1"][:, None], p["sig1"][:, None])
            + p["amp2"][:, None] * _bump(x, p["mu2"][:, None], p["sig2"][:, None]))


def _control_params(n: int, g: torch.Generator | None) -> dict[str, torch.Tensor]:
    on = torch.randint(0, 2, (n, N_BUMPS), generator=g).bool()
    on[:, 0] = True
    return {
        "on": on, "amp": _uniform(g, (n, N_BUMPS), -1.5, 1.5),
        "x_centre": _uniform(g, (n, N_BUMPS), 0.0, 1.0),
        "x_width": 0.5 * _uniform(g, (n, N_BUMPS), 0.1, 0.4),
        "t_centre": _uniform(g, (n, N_BUMPS), 0.0, 1.0),
        "t_width": 0.5 * _uniform(g, (n, N_BUMPS), 0.1, 0.4),
    }  # fmt: skip


def _control_from(p: Mapping[str, torch.Tensor], setting: Setting, times: Any) -> torch.Tensor:
    t = CONTROL_TIMES if times is None else torch.as_tensor(times, dtype=torch.float64)
    space = _bump(X[None, None], p["x_centre"][..., None], p["x_width"][..., None])
    space = space * setting.controlled.to(torch.float64)
    time = _bump(t[None, None], p["t_centre"][..., None], p["t_width"][..., None])
    amp = setting.amplitude_factor * p["amp"] * p["on"].to(torch.float64)
    return torch.einsum("nb,nbt,nbx->ntx", amp, time, space)


def sample_initial(
    n: int, generator: torch.Generator | None = None, return_params: bool = False
) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``n`` initial states (n, 128), float64: two bare Gaussian bumps (module docstring).
    ``return_params`` also returns the draws (``mu1, amp1, sig1, mu2, amp2, sig2``, each (n,))."""
    p = _initial_params(int(n), generator)
    u0 = _initial_from(p)
    return (u0, p) if return_params else u0


def sample_control(
    n: int, generator: torch.Generator | None = None, setting: str | Setting = "fo-fc",
    times: Any = None, return_params: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``n`` controls (n, 10, 128), float64: 8 space-time Gaussian bumps (module docstring),
    evaluated at ``times`` (default :data:`CONTROL_TIMES`, the official k / 11; pass e.g. the
    interval midpoints to change it). Partial-control settings zero the uncontrolled cells and
    double the amplitude, as the official generator. ``return_params`` also returns the draws
    (``on`` bool, ``amp``, ``x_centre``, ``x_width``, ``t_centre``, ``t_width``, each (n, 8))."""
    p = _control_params(int(n), generator)
    f = _control_from(p, get_setting(setting), times)
    return (f, p) if return_params else f


# ----------------------------------------------------------------------------------------------
# data sets

FORMAT, VERSION = "diffusio-burgers-dataset", 1


def make_burgers_data(
    n: int, seed: int, setting: str | Setting = "fo-fc", *, chunk: int = 256,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """``n`` solved samples: ``{"u": (n, 11, 128), "f": (n, 10, 128)}`` float64 arrays, from
    ``torch.Generator().manual_seed(seed)``: the same draws as ``sample_initial(n, g)`` then
    ``sample_control(n, g, setting)``, solved in chunks of ``chunk`` (a tqdm bar over the
    chunks when there are several and ``progress``)."""
    if int(n) < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    n, st = int(n), get_setting(setting)
    g = torch.Generator().manual_seed(int(seed))
    p0, pf = _initial_params(n, g), _control_params(n, g)
    u = np.empty((n, N_TIMES, N_CELLS))
    f = np.empty((n, N_INTERVALS, N_CELLS))
    starts = range(0, n, max(1, int(chunk)))
    if progress and len(starts) > 1:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=f"burgers {st.name}", unit="chunk")
    for s in starts:
        sl = slice(s, min(n, s + int(chunk)))
        u0 = _initial_from({k: v[sl] for k, v in p0.items()})
        fk = _control_from({k: v[sl] for k, v in pf.items()}, st, None)
        u[sl] = simulate(u0, fk).numpy()
        f[sl] = fk.numpy()
    return {"u": u, "f": f}


def _paths(path: str | os.PathLike) -> tuple[Path, Path]:
    p = Path(path)
    if p.suffix == ".json":
        p = p.with_suffix(".npz")
    elif p.suffix != ".npz":
        p = p.with_name(p.name + ".npz")
    return p, p.with_suffix(".json")


@dataclass(frozen=True)
class BurgersDataset:
    """A loaded data set: ``u`` (n, 11, 128), ``f`` (n, 10, 128) and the manifest."""

    u: np.ndarray
    f: np.ndarray
    manifest: dict[str, Any] = field(repr=False)

    @property
    def setting(self) -> Setting:
        return get_setting(self.manifest["setting"])

    def __len__(self) -> int:
        return int(self.u.shape[0])


def save_burgers_dataset(
    path: str | os.PathLike, n: int, seed: int, setting: str | Setting = "fo-fc", *,
    dtype: str = "float64", progress: bool = True,
) -> Path:
    """Generate :func:`make_burgers_data` and write ``PATH.npz`` (``u``, ``f`` in ``dtype``) and
    ``PATH.json`` (the manifest: name, setting, n, seed, shapes, dtype, nu, dt, substeps,
    control times, sha256 of the npz), each atomically (a temporary sibling, then
    ``os.replace``). A path without ``.npz`` gets it appended. Returns the npz path."""
    if dtype not in ("float64", "float32"):
        raise ValueError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
    npz, js = _paths(path)
    npz.parent.mkdir(parents=True, exist_ok=True)
    st = get_setting(setting)
    data = {k: v.astype(dtype) for k, v in make_burgers_data(n, seed, st, progress=progress).items()}
    with atomic_path(npz) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **data)
    manifest = {
        "format": FORMAT, "version": VERSION, "name": f"burgers-{st.name}", "setting": st.name,
        "n": int(n), "seed": int(seed), "shapes": {k: list(v.shape) for k, v in data.items()},
        "dtype": dtype, "nu": NU, "dt": DT, "substeps": SUBSTEPS, "n_cells": N_CELLS,
        "control_times": "k/11, k=1..10", "npz": npz.name, "sha256": file_sha256(npz),
        "torch": torch.__version__, "numpy": np.__version__,
    }  # fmt: skip
    write_json_atomic(js, manifest, indent=2, strict=True)
    return npz


def load_burgers_dataset(path: str | os.PathLike) -> BurgersDataset:
    """Read a data set written by :func:`save_burgers_dataset` (``PATH.npz`` or ``PATH.json``),
    checking the manifest, the npz's sha256, the arrays' shapes and their finiteness."""
    npz, js = _paths(path)
    for p in (npz, js):
        if not p.is_file():
            raise FileNotFoundError(f"{p} not found (write it with save_burgers_dataset)")
    try:
        manifest = json.loads(js.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{js}: unreadable manifest ({e})") from e
    need = ("format", "setting", "n", "shapes", "sha256")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or any(
        k not in manifest for k in need
    ):
        raise ValueError(f"{js}: not a {FORMAT} manifest (needs {', '.join(need)})")
    get_setting(manifest["setting"])
    digest = file_sha256(npz)
    if digest != manifest["sha256"]:
        raise ValueError(f"{npz}: sha256 checksum mismatch (file {digest[:12]}..., "
                         f"manifest {str(manifest['sha256'])[:12]}...): the file is corrupted")
    with np.load(npz, allow_pickle=False) as z:
        arrays = {k: z[k] for k in ("u", "f") if k in z.files}
    if set(arrays) != {"u", "f"}:
        raise ValueError(f"{npz}: missing arrays {sorted({'u', 'f'} - set(arrays))}")
    n = int(manifest["n"])
    expected = {"u": [n, N_TIMES, N_CELLS], "f": [n, N_INTERVALS, N_CELLS]}
    for k, arr in arrays.items():
        if list(arr.shape) != expected[k] or manifest["shapes"].get(k) != expected[k]:
            raise ValueError(f"{npz}: array {k!r} has shape {list(arr.shape)}, manifest says "
                             f"{manifest['shapes'].get(k)}, expected {expected[k]}")
        if not np.isfinite(arr).all():
            raise ValueError(f"{npz}: array {k!r} contains non-finite values")
    return BurgersDataset(arrays["u"], arrays["f"], manifest)
