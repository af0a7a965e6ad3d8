"""Offline datasets generated locally (D4RL's formats and recipes; Fu et al. 2020):
:func:`make_dataset` by name and seed, :func:`load_dataset` with validation, and
:func:`~diffusio.control.scores.normalized_score`.

=====================  ======================================================  ==============
name                   recipe (:mod:`~diffusio.control.generate`)              default size
=====================  ======================================================  ==============
``pointmaze-umaze``    one stream of random goals, D4RL's waypoint controller  100,000 steps
``pointmaze-medium``   (a timeout cuts an episode at each goal switch)         100,000 steps
``pointmaze-large``                                                            100,000 steps
``lunarlander-mixed``  the heuristic at action noise 0 / 0.3 / 0.6 / 1.0 and   250 episodes
                       random actions, in turn
``point2d-skills``     scripted skill episodes "+x", "+y", "-x", "-y"          400 episodes
``point2d-avoid``      the detour script, left or right of the obstacle by a   200 episodes
                       fair coin per episode (Diffusion Policy's bimodal task)
``pusht``              the automatic expert (MPC over push primitives on the   100 episodes
                       simulator, :mod:`~diffusio.control.pusht_expert`), to
                       success or 300 steps; keypoint observations
=====================  ======================================================  ==============

A dataset is ``FILE.npz`` (float32 ``observations``, ``actions``, ``rewards``,
``next_observations``; bool ``terminals``, ``timeouts``; one label array: ``goals``,
``behaviors``, ``skills``, ``sides`` or ``states`` (Push-T's 5-D state per step); loaded with
``allow_pickle=False``) and ``FILE.json``, its manifest (recipe, seed, size, versions, episode
returns, reference scores; for ``pusht`` also the expert's scores). An episode ends at a step
whose ``terminals`` or ``timeouts`` is set. Without ``out`` the files go to
``cache_root() / "datasets"`` (``$DIFFUSIO_CACHE``, else ``~/.cache/diffusio``), named by
(name, seed, size); an existing file with the same (name, seed, size) is reused.
"""

from __future__ import annotations

import os
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .scores import (
    EPISODE_SCORES,
    REFERENCE_PROTOCOL,
    REFERENCE_SCORES,
    has_reference,
    normalized_score,
    reference_key,
)

__all__ = [
    "DATASETS", "REQUIRED_ARRAYS", "OfflineDataset", "dataset_path", "episode_bounds",
    "load_dataset", "make_dataset", "normalized_score", "segment_at_goal", "summary_line",
]  # fmt: skip

FORMAT, VERSION = "diffusio-offline-dataset", 1
REQUIRED_ARRAYS = ("observations", "actions", "rewards", "terminals", "timeouts")


@dataclass(frozen=True)
class DatasetSpec:
    env: str
    unit: str  # the default size's unit: "steps" or "episodes"
    default: int
    label: str
    generate: Callable[..., tuple[dict, dict]]


def _maze(name: str) -> Callable[..., tuple[dict, dict]]:
    def generate(seed, steps, episodes, progress):
        from .generate import pointmaze_stream

        return pointmaze_stream(name, seed, steps, episodes, progress=progress)

    return generate


def _generator(fn_name: str) -> Callable[..., tuple[dict, dict]]:
    def generate(seed, steps, episodes, progress):
        from . import generate as g

        return getattr(g, fn_name)(seed, steps, episodes, progress=progress)

    return generate


DATASETS: dict[str, DatasetSpec] = {
    **{n: DatasetSpec(n, "steps", 100_000, "goals", _maze(n))
       for n in ("pointmaze-umaze", "pointmaze-medium", "pointmaze-large")},
    "lunarlander-mixed": DatasetSpec("lunarlander", "episodes", 250, "behaviors",
                                     _generator("lunarlander_mixed")),
    "point2d-skills": DatasetSpec("point2d", "episodes", 400, "skills", _generator("point2d_skills")),
    "point2d-avoid": DatasetSpec("point2d-avoid", "episodes", 200, "sides",
                                 _generator("point2d_avoid")),
    "pusht": DatasetSpec("pusht", "episodes", 100, "states", _generator("pusht_expert")),
    "lunarlander-heuristic": DatasetSpec("lunarlander", "episodes", 150, "behaviors",
                                         _generator("lunarlander_heuristic")),
}  # fmt: skip


def _spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    return DATASETS[name]


def _size(name: str, steps: int | None, episodes: int | None) -> tuple[str, int]:
    if steps is not None and episodes is not None:
        raise ValueError("give a size in steps or in episodes (--steps or --episodes), not both")
    spec = _spec(name)
    unit, n = ("steps", steps) if steps is not None else ("episodes", episodes)
    if n is None:
        unit, n = spec.unit, spec.default
    if n < 1:
        raise ValueError(f"the dataset size must be positive, got {unit}={n}")
    return unit, int(n)


def dataset_path(name: str, seed: int = 0, steps: int | None = None, episodes: int | None = None,
                 cache_dir: str | os.PathLike | None = None) -> Path:  # fmt: skip
    """Where :func:`make_dataset` caches (name, seed, size) without ``out``."""
    from diffusio.io import cache_root

    unit, n = _size(name, steps, episodes)
    return cache_root(cache_dir) / "datasets" / f"{name}-seed{seed}-{n}{unit}-v{VERSION}.npz"


def episode_bounds(terminals: np.ndarray, timeouts: np.ndarray) -> list[tuple[int, int]]:
    """``(start, stop)`` of each episode: one ends at every step with a terminal or timeout
    (a trailing unfinished one is included)."""
    ends = np.flatnonzero(np.asarray(terminals) | np.asarray(timeouts)) + 1
    n = len(terminals)
    if not len(ends) or ends[-1] != n:
        ends = np.append(ends, n) if n else ends
    starts = np.concatenate([[0], ends[:-1]])
    return [(int(a), int(b)) for a, b in zip(starts, ends, strict=True)]


def segment_at_goal(
    observations: np.ndarray, goal: np.ndarray, threshold: float = 0.5
) -> np.ndarray:
    """Diffuser's alternative cut (``maze2d_set_terminals``): a timeout at step t when the
    point is within ``threshold`` of one fixed ``goal`` at t and not at t + 1."""
    at_goal = (
        np.linalg.norm(np.asarray(observations)[:, :2] - np.asarray(goal), axis=-1) < threshold
    )
    timeouts = np.zeros(len(at_goal), dtype=bool)
    timeouts[:-1] = at_goal[:-1] & ~at_goal[1:]
    return timeouts


@dataclass
class OfflineDataset:
    """A loaded dataset: ``arrays`` by name (``ds["observations"]``), its ``manifest`` (empty
    when the file has none) and its ``path``."""

    path: Path
    arrays: dict[str, np.ndarray]
    manifest: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> np.ndarray:
        return self.arrays[key]

    def __len__(self) -> int:
        return len(self.arrays["rewards"])

    def episodes(self) -> list[tuple[int, int]]:
        return episode_bounds(self.arrays["terminals"], self.arrays["timeouts"])

    def episode_returns(self) -> np.ndarray:
        rewards = self.arrays["rewards"].astype(np.float64)
        return np.array([rewards[a:b].sum() for a, b in self.episodes()])


def load_dataset(path: str | os.PathLike) -> OfflineDataset:
    """Read and validate ``FILE.npz`` (and ``FILE.json`` when present). A missing file raises
    FileNotFoundError; a corrupt or pickled npz, a missing array (:data:`REQUIRED_ARRAYS` and
    those the manifest lists), a NaN or inf, a wrong rank or mismatched lengths raise one
    ValueError naming the file."""
    from diffusio.io import read_json

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: dataset file not found")
    manifest_path = path.with_suffix(".json")
    manifest = read_json(manifest_path) if manifest_path.is_file() else {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except ValueError as err:
        if "allow_pickle" in str(err):
            raise ValueError(f"{path}: holds pickled object arrays, which are refused") from None
        raise ValueError(f"{path}: corrupt .npz file ({err})") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as err:
        raise ValueError(f"{path}: corrupt .npz file ({err})") from None
    expected = [*REQUIRED_ARRAYS, *manifest.get("arrays", {})] if isinstance(manifest, dict) \
        else list(REQUIRED_ARRAYS)  # fmt: skip
    missing = [k for k in dict.fromkeys(expected) if k not in arrays]
    if missing:
        raise ValueError(f"{path}: missing arrays {', '.join(missing)} (has {', '.join(arrays)})")
    for key, ndim in (("observations", 2), ("actions", 2), ("rewards", 1), ("terminals", 1),
                      ("timeouts", 1)):  # fmt: skip
        if arrays[key].ndim != ndim:
            raise ValueError(f"{path}: array {key!r} has shape {arrays[key].shape}, expected "
                             f"{ndim}-D")  # fmt: skip
    lengths = {k: len(v) for k, v in arrays.items() if v.ndim}
    if len(set(lengths.values())) > 1:
        described = ", ".join(f"{k} {n}" for k, n in lengths.items())
        raise ValueError(f"{path}: arrays have different lengths ({described})")
    for key, value in arrays.items():
        if value.dtype.kind in "fc" and not np.isfinite(value).all():
            row = int(np.argwhere(~np.isfinite(value))[0][0])
            raise ValueError(f"{path}: array {key!r} contains NaN or inf (first at row {row})")
    return OfflineDataset(path, arrays, manifest if isinstance(manifest, dict) else {})


def _versions(env: str) -> dict[str, str]:
    from importlib import metadata

    import diffusio

    names = ["gymnasium", "numpy"] + (["gymnasium-robotics", "mujoco"] if env.startswith(
        "pointmaze") else ["box2d"] if env == "lunarlander" else ["pymunk", "shapely"]
        if env.startswith("pusht") else [])  # fmt: skip
    out = {"diffusio": diffusio.__version__}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "unknown"
    return out


def _reusable(path: Path, key: dict[str, Any]) -> bool:
    try:
        ds = load_dataset(path)
    except (ValueError, FileNotFoundError):
        return False
    return all(ds.manifest.get(k) == v for k, v in key.items())


def make_dataset(name: str, seed: int = 0, steps: int | None = None, episodes: int | None = None,
                 out: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
                 progress: bool = True, force: bool = False) -> Path:  # fmt: skip
    """Generate dataset ``name`` (see the module docstring) deterministically from ``seed``
    and return the ``.npz`` path. Size: ``steps`` (PointMaze: exactly; episodic datasets:
    whole episodes until at least that many) or ``episodes`` (PointMaze: goals reached or timed
    out), else the dataset's default. Writes to ``out`` (a ``.npz`` path; the manifest goes
    next to it as ``.json``) or into the cache; an existing file with the same (name, seed,
    size) is returned as it is unless ``force``."""
    from diffusio.io import atomic_path, write_json_atomic

    spec = _spec(name)
    unit, n = _size(name, steps, episodes)
    path = Path(out) if out is not None else dataset_path(name, seed, steps, episodes, cache_dir)
    if path.suffix != ".npz":
        raise ValueError(f"{path}: the dataset file must end in .npz")
    key = {"format": FORMAT, "version": VERSION, "name": name, "seed": seed, "size": {unit: n}}
    if not force and _reusable(path, key):
        return path
    start = time.perf_counter()
    arrays, details = spec.generate(seed, n if unit == "steps" else None,
                                    n if unit == "episodes" else None, progress)  # fmt: skip
    seconds = time.perf_counter() - start
    bounds = episode_bounds(arrays["terminals"], arrays["timeouts"])
    returns = np.array([arrays["rewards"][a:b].astype(np.float64).sum() for a, b in bounds])
    if has_reference(name):
        ref = reference_key(name)
        low, high = REFERENCE_SCORES[ref]
        reference = {"key": ref, "random": low, "controller": high, **REFERENCE_PROTOCOL,
                     "normalized": "100 (R - random) / (controller - random)"}  # fmt: skip
    else:  # scored by its own per-episode rule (scores.EPISODE_SCORES)
        reference = {"episode_score": EPISODE_SCORES[spec.env]}
    manifest = {
        **key, "env": spec.env, "steps": len(arrays["rewards"]), "episodes": len(bounds),
        "labels_array": spec.label, **details,
        "arrays": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in arrays.items()},
        "return_mean": float(returns.mean()), "return_std": float(returns.std()),
        "return_min": float(returns.min()), "return_max": float(returns.max()),
        "reference_scores": reference,
        "versions": _versions(spec.env), "generation_seconds": round(seconds, 3),
    }  # fmt: skip
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    write_json_atomic(path.with_suffix(".json"), manifest, strict=True)
    return path


def summary_line(path: str | os.PathLike) -> str:
    """One line about a dataset written by :func:`make_dataset` (read from its manifest)."""
    from diffusio.io import read_json

    m = read_json(Path(path).with_suffix(".json"))
    ref = m["reference_scores"]
    head = (f"{m['name']} (seed {m['seed']}): {m['episodes']} episodes, {m['steps']} steps, "
            f"return mean {m['return_mean']:.2f}")  # fmt: skip
    if "random" not in ref:  # a per-episode score (and the demonstrator's, when recorded)
        own = f", demonstrator score {m['score_mean']:.3f}" if "score_mean" in m else ""
        return f"{head}{own}; scored by: {ref['episode_score']}; file {path}"
    return (f"{head}; reference scores random {ref['random']:.2f}, controller "
            f"{ref['controller']:.2f}; file {path}")  # fmt: skip
