"""Figures of guided image sampling: the fidelity/diversity trade-off (Dhariwal & Nichol 2021,
Fig. 4-5; Ho & Salimans 2021, Fig. 4), class-ordered sample grids, and the noise-aware
classifier's accuracy against the diffusion time (Sec. 4.1).

* :func:`tradeoff_figure` -- accuracy against FID and precision against recall, one line per
  guidance curve (rows of :func:`~diffusio.image.scoring.guidance_sweep`);
* :func:`class_grid` / :func:`grids_figure` -- samples with target label c in row c;
* :func:`classifier_figure` -- test accuracy of the noise-aware classifier on x_t against t.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ..plotting import new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["class_grid", "classifier_figure", "grids_figure", "tradeoff_figure"]


def tradeoff_figure(
    curves: dict[str, list[dict[str, Any]]], floor: float, symbol: str = "s", title: str = ""
) -> Figure:
    """Left: accuracy of the independent classifier against FID, one line per curve, each
    point annotated with its guidance value (the FID noise floor dashed). Right: precision
    against recall. Rows need ``value``, ``fid``, ``accuracy``, ``precision``, ``recall``; a
    curve's rows may carry ``symbol`` (default ``symbol``)."""
    from matplotlib.ticker import ScalarFormatter

    fig = new_figure(11.0, 4.4)
    ax1, ax2 = fig.subplots(1, 2)
    markers = "osD^vP*X"
    for i, (name, rows) in enumerate(curves.items()):
        marker = markers[i % len(markers)]
        fid = [r["fid"] for r in rows]
        acc = [r["accuracy"] for r in rows]
        line = ax1.plot(fid, acc, marker=marker, label=name, ms=5)[0]
        color = line.get_color()
        sym = rows[0].get("symbol", symbol) if rows else symbol
        ax2.plot([r["recall"] for r in rows], [r["precision"] for r in rows], marker=marker,
                 label=name, ms=5, color=color)  # fmt: skip
        for r in rows:
            ax1.annotate(f"{sym}={r['value']:g}", (r["fid"], r["accuracy"]), fontsize=7,
                         xytext=(3, 3), textcoords="offset points", color=color)  # fmt: skip
            ax2.annotate(f"{r['value']:g}", (r["recall"], r["precision"]), fontsize=7,
                         xytext=(3, 3), textcoords="offset points", color=color)  # fmt: skip
    ax1.axvline(floor, color="0.5", ls="--", lw=1, label=f"FID noise floor ({floor:.2f})")
    ax1.set_xlabel("FID (lower: closer to the data)")
    ax1.set_ylabel("accuracy of the clean classifier on the target labels")
    ax1.set_xscale("log")
    ax1.xaxis.set_major_formatter(ScalarFormatter())
    ax1.xaxis.set_minor_formatter(ScalarFormatter())
    ax1.tick_params(axis="x", which="minor", labelsize=7)
    ax2.set_xlabel("recall (diversity)")
    ax2.set_ylabel("precision (fidelity)")
    for ax in (ax1, ax2):
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def class_grid(samples: Tensor, labels: Tensor, per_class: int = 8) -> Tensor:
    """Up to ``per_class`` samples of each label, label c in row c (missing cells blank)."""
    labels = torch.as_tensor(labels)
    cells = []
    for c in range(int(labels.max()) + 1):
        chosen = samples[labels == c][:per_class]
        blank = -torch.ones(per_class - len(chosen), *samples.shape[1:])
        cells.append(torch.cat([chosen, blank]))
    return torch.cat(cells)


def grids_figure(panels: Sequence[tuple[str, Tensor, Tensor]], per_class: int = 8) -> Figure:
    """One image grid per panel ``(title, samples, target labels)``: a row per class."""
    from ..data.datasets import image_grid

    fig = new_figure(2.6 * len(panels) + 0.4, 3.4)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, x, y) in zip(axes, panels, strict=True):
        grid = image_grid(class_grid(x, y, per_class), nrow=per_class)
        ax.imshow(grid, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    return fig


def classifier_figure(rows: Sequence[dict[str, float]], chance: float) -> Figure:
    """Test accuracy of a noise-aware classifier (rows of
    :func:`~diffusio.image.classifier.accuracy_by_noise`) against the diffusion time, with the
    chance level ``chance`` dashed."""
    fig = new_figure(5.0, 3.4)
    ax = fig.subplots()
    ax.plot([r["t"] for r in rows], [r["accuracy"] for r in rows], marker="o", ms=4)
    ax.axhline(chance, color="0.5", ls="--", lw=1, label=f"chance ({chance:.0%})")
    ax.set_xlabel("diffusion time t (0: clean, 1: pure noise)")
    ax.set_ylabel("test accuracy on x_t")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def image_rows_figure(rows: dict[str, Any], titles: Sequence[str] = (), size: float = 0.9) -> Figure:
    """A grid of single-channel images in [-1, 1]: one row per entry of ``rows`` (label ->
    (K, 1, H, W) images), the label on the left, ``titles`` over the first row's columns."""
    import matplotlib.pyplot as plt
    import numpy as np

    arrays = {k: np.asarray(v) for k, v in rows.items()}
    cols = max(len(v) for v in arrays.values())
    fig, axes = plt.subplots(len(arrays), cols, figsize=(size * cols + 0.6, size * len(arrays)),
                             squeeze=False)  # fmt: skip
    for i, (label, images) in enumerate(arrays.items()):
        for j in range(cols):
            ax = axes[i, j]
            ax.set_xticks([]), ax.set_yticks([])
            if j < len(images):
                ax.imshow(images[j][0], cmap="gray", vmin=-1, vmax=1)
            if i == 0 and j < len(titles):
                ax.set_title(titles[j], fontsize=5)
        axes[i, 0].set_ylabel(label, fontsize=6)
    fig.tight_layout()
    return fig


def curves_figure(groups: dict[str, Sequence[dict[str, Any]]], panels: Sequence[dict[str, Any]],
                  width: float = 7.2) -> Figure:  # fmt: skip
    """Side-by-side panels of one curve per group (label -> rows of numbers). Each panel is
    ``{"x": key, "y": key, "err": key or None, "xlabel": ..., "ylabel": ..., "xlog": bool,
    "ylog": bool}``; with ``err`` the curve has error bars. The legend is on the first panel."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(width, 3.0), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        for label, rows in groups.items():
            xs, ys = [r[panel["x"]] for r in rows], [r[panel["y"]] for r in rows]
            errs = [r[panel["err"]] for r in rows] if panel.get("err") else None
            ax.errorbar(xs, ys, errs, marker="o", label=label, capsize=2)
        ax.set_xlabel(panel.get("xlabel", panel["x"])), ax.set_ylabel(panel.get("ylabel", panel["y"]))
        ax.set_xscale("log" if panel.get("xlog") else "linear")
        ax.set_yscale("log" if panel.get("ylog") else "linear")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig
