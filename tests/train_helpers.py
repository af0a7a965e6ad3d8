"""Shared by the training tests: a trainer callback that kills a run at a given step (an
interruption, for exact-resume checks)."""

from __future__ import annotations

from typing import Any


class KilledError(Exception):
    pass


def kill_at(step: int) -> Any:
    """A trainer callback raising :class:`KilledError` once the run reaches ``step``."""

    def callback(trainer: Any, s: int) -> None:
        if s == step:
            raise KilledError(f"killed at step {s}")

    return callback
