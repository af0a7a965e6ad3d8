"""Helpers shared by the benchmark scripts: environment record, timing, atomic JSON output."""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT / "src"))


def environment(threads: int) -> dict[str, Any]:
    """Versions and machine facts that a timing depends on."""
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": threads,
    }
    try:
        import diffusers

        env["diffusers"] = diffusers.__version__
    except ImportError:  # pragma: no cover - the benchmark needs it, but record the fact
        env["diffusers"] = None
    try:
        import diffusio

        env["diffusio"] = getattr(diffusio, "__version__", "unknown")
    except ImportError:  # pragma: no cover
        env["diffusio"] = None
    return env


def timed(fn: Callable[[], Any]) -> float:
    """Wall-clock seconds of one call."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median(values: list[float]) -> float:
    return float(statistics.median(values))
