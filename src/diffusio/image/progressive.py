"""Progressive generation (Ho et al. 2020, Sec. 4.3, Fig. 6): the prediction
``x0_hat(x_t) = (x_t - sqrt(1 - abar_t) eps_theta) / sqrt(abar_t)`` along a reverse chain.

Record it with the sampler callback :class:`~diffusio.core.samplers.X0Trace` at the step
indices of :func:`frame_indices`; :func:`progressive_stats` measures when the digit is decided
(a classifier's agreement between ``x0_hat`` at time t and the final sample) next to how far
the prediction still is from final in pixels; :func:`progressive_figure` draws the chains.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from ..core.vlb import time_indices
from ..plotting import new_figure, show_columns

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["frame_indices", "progressive_figure", "progressive_stats"]


def frame_indices(steps: int, frames: int) -> list[int]:
    """``frames`` step indices spread evenly over a chain of ``steps`` evaluations (first and
    last included)."""
    frames = max(1, min(frames, steps))
    return sorted({round(float(k)) for k in np.linspace(0, steps - 1, frames)})


def progressive_stats(trace: Any, final: Tensor, evaluator: Any, process: Any) -> list[dict]:
    """Per recorded frame of ``trace`` (an :class:`~diffusio.core.samplers.X0Trace`): the table
    time t (1..T), the ``evaluator``'s class agreement between the clamped ``x0_hat`` and the
    ``final`` samples, and their RMS pixel distance (absolute and as a fraction of the first
    frame's)."""
    final = final.to(torch.float32)
    labels = evaluator.predict(final)
    rows: list[dict[str, Any]] = []
    first = None
    for t, x0 in zip(trace.times, trace.x0, strict=True):
        n = x0.shape[0]
        x0 = x0.clamp(-1.0, 1.0)
        rms = float((x0 - final[:n]).pow(2).mean().sqrt())
        first = rms if first is None else first
        index = int(time_indices(process, torch.tensor([float(t)], dtype=torch.float64))[0])
        rows.append({
            "t": index + 1,
            "agreement": float((evaluator.predict(x0) == labels[:n]).double().mean()),
            "rms": rms,
            "rms_fraction": rms / first if first > 0 else float("nan"),
        })  # fmt: skip
    return rows


def progressive_figure(trace: Any, rows: list[dict[str, Any]], n: int) -> Figure:
    """Fig. 6: per chain (row), the state x_t (left) and the prediction x0_hat(x_t) (right) at
    the recorded times, t decreasing to the right."""
    frames = len(trace.x0)
    n = min(n, trace.x0[0].shape[0]) if frames else 0
    fig = new_figure(1.0 + 0.62 * 2 * frames, 1.2 + 0.55 * n)
    if not frames or not n:
        return fig
    labels = [str(row["t"]) for row in rows]
    for ax, name, seq in zip(fig.subplots(1, 2, squeeze=False)[0], ("x_t", "predicted x0"),
                             (trace.xt, trace.x0), strict=True):  # fmt: skip
        show_columns(ax, [f[:n] for f in seq], labels, f"{name} along the ancestral chain", 0)
        ax.set_xlabel("t", fontsize=8)
    fig.tight_layout()
    return fig
