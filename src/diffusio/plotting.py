"""Small plotting helpers shared by the demo and the reproductions' reports.

Figures are built on matplotlib's object API with the Agg canvas (no pyplot, no global state, no
display needed), and written atomically: to a temporary file in the destination folder, then
``os.replace``-d over the target, so a reader never sees a half-written file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

from .io import atomic_path, write_text_atomic

__all__ = [
    "atomic_path", "columns_figure", "image_panels", "new_figure",
    "plot_loss_curve", "save_figure", "scatter_panels", "show_columns", "show_images",
    "write_text_atomic",
]  # fmt: skip


def new_figure(width: float = 6.0, height: float = 4.0, dpi: int = 100) -> Figure:
    """A matplotlib Figure bound to the Agg canvas (independent of pyplot's backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def save_figure(
    fig: Figure, path: str | os.PathLike, dpi: int | None = None, **kwargs: Any
) -> Path:
    """Save ``fig`` to ``path`` atomically (format from the suffix, PNG by default)."""
    target = Path(path)
    fmt = target.suffix.lstrip(".").lower() or "png"
    with atomic_path(target, suffix=f".{fmt}") as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight", **kwargs)
    return target


def _as_xy(points: Any) -> Any:
    """(N, >=2) array-like (torch tensors included) -> (N, 2) float numpy array."""
    import numpy as np

    if hasattr(points, "detach"):
        points = points.detach().cpu().numpy()
    arr = np.asarray(points, dtype=float)
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise ValueError(f"scatter panels need (N, 2) points, got shape {arr.shape}")
    return arr[:, :2]


def scatter_panels(
    panels: Sequence[tuple[str, Any]],
    ncols: int | None = None,
    lim: float | None = None,
    size: float = 3.0,
    point_size: float = 1.5,
    alpha: float = 0.5,
    color: str = "C0",
    suptitle: str | None = None,
) -> Figure:
    """One square scatter panel per ``(title, points)`` pair, with shared axis limits.

    ``points`` is anything (N, 2)-shaped (numpy array, list, torch tensor). ``lim`` fixes the
    axes to ``[-lim, lim]``; by default it covers the 99.5% quantile of all absolute coordinates,
    so a few far-off samples do not squash the panels.
    """
    import numpy as np

    if not panels:
        raise ValueError("scatter_panels needs at least one panel")
    data = [(title, _as_xy(points)) for title, points in panels]
    n = len(data)
    ncols = max(1, min(ncols or n, n))
    nrows = -(-n // ncols)
    if lim is None:
        finite = np.concatenate([np.abs(xy[np.isfinite(xy).all(1)]).ravel() for _, xy in data])
        lim = float(np.quantile(finite, 0.995)) * 1.1 if finite.size else 1.0
        lim = lim if lim > 0 else 1.0
    fig = new_figure(size * ncols, size * nrows + (0.4 if suptitle else 0.0))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, (title, xy) in zip(axes.ravel(), data, strict=False):
        ax.scatter(xy[:, 0], xy[:, 1], s=point_size, alpha=alpha, color=color, linewidths=0)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[n:]:
        ax.set_axis_off()
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    fig.tight_layout()
    return fig


def show_images(ax: Any, images: Any, nrow: int, title: str) -> None:
    """Draw the grey-scale grid of ``images`` (N, 1, H, W) in [-1, 1] on a matplotlib axis,
    ``nrow`` per row, with ``title`` and no ticks."""
    from .data.datasets import image_grid

    ax.imshow(image_grid(images, nrow=nrow), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def show_columns(
    ax: Any, columns: Sequence[Any], labels: Sequence[str], title: str, rotation: float = 30
) -> None:
    """Draw image sets (N, 1, H, W) side by side as columns (row i shows image i of every set,
    e.g. the same x_T decoded with several step counts), a label under each column."""
    import torch

    n = min(len(c) for c in columns)
    stacked = torch.stack([c[:n] for c in columns], dim=1).reshape(-1, *columns[0].shape[1:])
    show_images(ax, stacked, len(columns), title)
    size = columns[0].shape[-1] + 1
    ax.set_xticks([1 + size * k + size / 2 for k in range(len(columns))])
    ax.set_xticklabels(list(labels), fontsize=7, rotation=rotation)


def columns_figure(columns: Sequence[Any], labels: Sequence[str], title: str) -> Figure:
    """A figure of one :func:`show_columns` panel."""
    n = min(len(c) for c in columns)
    fig = new_figure(1.2 + 0.7 * len(columns), 1.0 + 0.6 * n)
    show_columns(fig.subplots(), columns, labels, title)
    fig.tight_layout()
    return fig


def image_panels(
    panels: Sequence[tuple[str, Any]], nrow: int | None = None, width: float = 3.4,
    height: float = 3.7,
) -> Figure:  # fmt: skip
    """Side-by-side grids of image sets ``(title, images)``, ``nrow`` images per row (default
    the square root of each set's size, rounded up)."""
    import math

    fig = new_figure(width * len(panels), height)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, images) in zip(axes, panels, strict=True):
        show_images(ax, images, nrow or math.ceil(math.sqrt(len(images))), title)
    fig.tight_layout()
    return fig


def plot_loss_curve(ax: Any, steps: Any, loss: Any, label: str = "loss") -> None:
    """Draw logged training losses on ``ax``: the raw values, their moving average over a
    twentieth of the points (when that spans at least two), a log scale when all are positive,
    and a legend."""
    import numpy as np

    steps, loss = np.asarray(steps, dtype=float), np.asarray(loss, dtype=float)
    if not loss.size:
        return
    ax.plot(steps, loss, lw=0.8, alpha=0.5, color="C0", label=label)
    k = loss.size // 20
    if k >= 2:
        smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1 :], smooth, lw=1.6, color="C1", label=f"mean of {k}")
    if np.all(loss > 0):
        ax.set_yscale("log")
    ax.legend(fontsize=8)
