"""Datasets by name: a new domain registers its data here instead of editing the trainer.

``register_dataset(name, builder, options=(...))`` adds a dataset; a training config's ``data``
then names it and its ``data_options`` are checked against ``options``. A *builder* receives
a :class:`DataRequest` (the name, the options, ``n_data`` and the run's seed) and returns a
:class:`~diffusio.data.batch.TrainingSet` (rows of ``x0``, ``cond`` and ``mask``, each
condition's null value, batch transforms). An entry may also *claim* data it is not named for
(``claims=`` a predicate on the ``data`` string): the built-in file readers claim paths.

The built-in datasets (:mod:`diffusio.data.builtin`: the 2-D toys, ``digits``, ``mnist-5k``,
image files, array files) are registered when :mod:`diffusio.data` is imported.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .batch import TrainingSet

__all__ = [
    "DataRequest",
    "DatasetEntry",
    "build_dataset",
    "check_data_options",
    "dataset_entry",
    "dataset_names",
    "register_dataset",
    "unregister_dataset",
]


@dataclass(frozen=True)
class DataRequest:
    """What a builder is asked for: ``data`` (the config's name or path), its ``options``
    (``data_options``), ``n_data`` (rows wanted; None = all, or the dataset's default) and
    ``seed`` (the run's seed, for sampled datasets)."""

    data: str
    options: Mapping[str, Any] = field(default_factory=dict)
    n_data: int | None = None
    seed: int = 0


Builder = Callable[[DataRequest], TrainingSet]


@dataclass(frozen=True)
class DatasetEntry:
    """A registered dataset: its builder, the ``data_options`` it accepts, an optional
    ``claims(data) -> bool`` predicate for data not named ``name`` (paths), a description."""

    name: str
    builder: Builder
    options: tuple[str, ...] = ()
    claims: Callable[[str], bool] | None = None
    description: str = ""


_REGISTRY: dict[str, DatasetEntry] = {}


def register_dataset(
    name: str,
    builder: Builder,
    *,
    options: tuple[str, ...] | list[str] = (),
    claims: Callable[[str], bool] | None = None,
    description: str = "",
    replace: bool = False,
) -> DatasetEntry:
    """Register ``builder`` under ``name`` (a second registration of a name raises ValueError
    unless ``replace=True``); returns the entry."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"a dataset name must be a non-empty string, got {name!r}")
    if not callable(builder):
        raise TypeError(f"the builder of dataset {name!r} is not callable")
    if name in _REGISTRY and not replace:
        raise ValueError(f"dataset {name!r} is already registered (pass replace=True)")
    entry = DatasetEntry(name, builder, tuple(options), claims, description)
    _REGISTRY[name] = entry
    return entry


def unregister_dataset(name: str) -> None:
    """Remove a registered dataset (no error if it is not registered)."""
    _REGISTRY.pop(name, None)


def dataset_names() -> tuple[str, ...]:
    """The registered dataset names, in registration order."""
    return tuple(_REGISTRY)


def _find(data: str) -> DatasetEntry | None:
    if data in _REGISTRY:
        return _REGISTRY[data]
    for entry in _REGISTRY.values():
        if entry.claims is not None and entry.claims(data):
            return entry
    return None


def dataset_entry(data: str) -> DatasetEntry:
    """The entry named ``data``, else the first one that claims it; ValueError listing the
    registered names otherwise."""
    entry = _find(data)
    if entry is None:
        named = [e.name for e in _REGISTRY.values() if e.claims is None]
        claims = [f"{e.name} ({e.description})" for e in _REGISTRY.values() if e.claims]
        raise ValueError(
            f"unknown data {data!r}: not a registered dataset ({', '.join(named)}) and not "
            f"claimed by {', '.join(claims) or 'any file reader'}"
        )
    return entry


def check_data_options(data: str, options: Mapping[str, Any]) -> None:
    """Raise ValueError if ``options`` has keys ``data``'s dataset does not accept (no check
    when no registered dataset matches ``data``: loading reports that)."""
    entry = _find(data)
    if entry is None or not options:
        return
    unknown = sorted(set(options) - set(entry.options))
    if unknown:
        valid = ", ".join(entry.options) if entry.options else "none"
        raise ValueError(
            f"unknown data_options {', '.join(map(repr, unknown))} for dataset {entry.name!r} "
            f"({data!r}); valid: {valid}"
        )


def build_dataset(
    data: str,
    *,
    options: Mapping[str, Any] | None = None,
    n_data: int | None = None,
    seed: int = 0,
) -> TrainingSet:
    """Build the :class:`TrainingSet` that ``data`` names (options checked first)."""
    options = dict(options or {})
    entry = dataset_entry(data)
    check_data_options(data, options)
    out = entry.builder(DataRequest(data, options, n_data, seed))
    if not isinstance(out, TrainingSet):
        raise TypeError(
            f"the builder of dataset {entry.name!r} returned a {type(out).__name__}, "
            "not a TrainingSet"
        )
    return out
