"""Figures of the toy evaluations: quality against NFE, sampler paths, score directions, the
forward/reverse snapshots of a 2-D diffusion and the per-step terms of a variational bound."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from ..metrics.stats import NoiseFloor
from ..plotting import new_figure

__all__ = [
    "bound_terms_figure", "quality_vs_nfe_figure", "score_field_figure", "snapshots_figure",
    "trajectory_figure",
]  # fmt: skip


def _log_axis(axis: Any, set_scale: Callable[[str], None]) -> None:
    """A log-scaled axis labelled with plain numbers at 1, 2 and 5 times each power of ten."""
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    set_scale("log")
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(ScalarFormatter())
    axis.set_minor_formatter(NullFormatter())


def quality_vs_nfe_figure(
    rows: Mapping[str, Sequence[Mapping[str, Any]]],
    floors: Mapping[str, NoiseFloor],
    metrics: Sequence[tuple[str, str]],
    families: Sequence[str],
    floor_level: Callable[[NoiseFloor], float],
    log_y: Sequence[str] = (),
) -> Any:
    """Sweep rows per model (columns) and metric (rows: ``(key, title)``) against NFE (log x),
    one line per sampler family; the floor as a grey band (mean +/- sd) and its "at the floor"
    level dashed."""
    fig = new_figure(4.2 * len(rows), 3.2 * len(metrics))
    axes = fig.subplots(len(metrics), len(rows), squeeze=False)
    for j, (label, model_rows) in enumerate(rows.items()):
        for i, (key, name) in enumerate(metrics):
            ax, floor = axes[i, j], floors[key]
            ax.axhspan(floor.mean - floor.sd, floor.mean + floor.sd, color="0.85", label="floor")
            ax.axhline(floor_level(floor), color="0.5", lw=0.8, ls="--")
            for k, family in enumerate(families):
                pts = sorted((r["nfe"], r[key]) for r in model_rows if r["family"] == family)
                if pts:
                    xs, ys = zip(*pts, strict=True)
                    ax.plot(xs, ys, marker="o", ms=4, color=f"C{k}", label=family)
            _log_axis(ax.xaxis, ax.set_xscale)
            if key in log_y:
                _log_axis(ax.yaxis, ax.set_yscale)
            ax.set_title(f"{label}: {name}", fontsize=9)
            ax.set_xlabel("network evaluations (NFE)", fontsize=8)
            ax.tick_params(labelsize=7)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def trajectory_figure(paths: Mapping[str, Mapping[str, tuple[list[float], Tensor]]]) -> Any:
    """First coordinate against t of each model's (rows) sampler paths (columns)."""
    ncols = max(len(v) for v in paths.values())
    fig = new_figure(4.0 * ncols, 2.4 * len(paths))
    axes = fig.subplots(len(paths), ncols, squeeze=False)
    for i, (label, by_sampler) in enumerate(paths.items()):
        for j, (name, (times, states)) in enumerate(by_sampler.items()):
            ax = axes[i, j]
            ax.plot(times, states[:, :, 0].numpy(), lw=0.7, alpha=0.8)
            ax.set_xlim(max(times), 0.0)
            ax.set_ylim(-8, 8)
            ax.set_title(f"{label}: {name}", fontsize=9)
            ax.set_xlabel("t (reverse time)", fontsize=8)
            ax.set_ylabel("$x_1$", fontsize=8)
            ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


def score_field_figure(
    fields: Mapping[str, Callable[[Tensor, float], Tensor]],
    levels: Sequence[tuple[float, str]],
    box: float,
    background: Tensor,
) -> Any:
    """Unit arrows of each score field (rows; ``field(points, t)`` in data units) at the times
    of ``levels`` (columns: ``(t, title)``) on a 17 x 17 grid over ``[-box, box]^2``, over
    ``background`` points (grey)."""
    xs = torch.linspace(-box, box, 17, dtype=torch.float64)
    gx, gy = torch.meshgrid(xs, xs, indexing="xy")
    points = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)
    data = background.numpy()
    fig = new_figure(3.2 * len(levels), 3.3 * len(fields))
    axes = fig.subplots(len(fields), len(levels), squeeze=False)
    for row, (name, field) in enumerate(fields.items()):
        for col, (t, title) in enumerate(levels):
            with torch.no_grad():
                score = field(points, t).to(torch.float64)
            unit = score / score.norm(dim=1, keepdim=True).clamp_min(1e-300)
            ax = axes[row, col]
            ax.scatter(data[:, 0], data[:, 1], s=1.0, color="0.7", linewidths=0)
            ax.quiver(points[:, 0].numpy(), points[:, 1].numpy(), unit[:, 0].numpy(),
                      unit[:, 1].numpy(), angles="xy", scale_units="xy", scale=1.6,
                      width=0.005)  # fmt: skip
            ax.set_xlim(-box - 0.5, box + 0.5)
            ax.set_ylim(-box - 0.5, box + 0.5)
            ax.set_aspect("equal")
            ax.set_title(f"{name} score, {title}", fontsize=9)
            ax.tick_params(labelsize=7)
    fig.suptitle("Score directions (unit arrows) at three noise levels", fontsize=11)
    fig.tight_layout()
    return fig


def snapshots_figure(
    columns: Sequence[tuple[str, Tensor, Tensor, Tensor]],
    grid: Tensor,
    title: str,
    lim: float = 3.0,
) -> Any:
    """Sohl-Dickstein et al. 2015, Figure 1: per column ``(label, forward samples, reverse
    samples, drift at grid)`` the forward q (top), the learned reverse p (middle) and the
    reverse drift f_mu(x, t) - x as arrows (bottom)."""
    fig = new_figure(3.0 * len(columns), 9.0)
    axes = fig.subplots(3, len(columns), squeeze=False)
    g = grid.cpu().numpy()
    for col, (label, forward, reverse, drift) in enumerate(columns):
        for row, (points, name) in enumerate(((forward, "q"), (reverse, "p"))):
            pts = points[:2000].cpu().numpy()
            axes[row, col].scatter(pts[:, 0], pts[:, 1], s=1.0, alpha=0.4, linewidths=0,
                                   color=f"C{row}")  # fmt: skip
            axes[row, col].set_title(f"{name}(x), {label}", fontsize=9)
        d = drift.cpu().numpy()
        axes[2, col].quiver(g[:, 0], g[:, 1], d[:, 0], d[:, 1], angles="xy", color="C3",
                            width=0.004)  # fmt: skip
        axes[2, col].set_title(f"drift f_mu(x, t) - x, {label}", fontsize=9)
    for ax in axes.ravel():
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.tick_params(labelsize=6)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def bound_terms_figure(terms: Mapping[str, tuple[Sequence[float], float]]) -> Any:
    """Per-step mean terms of a variational bound (nats), one line per model
    (``label: (terms, total)``), symlog y (Sohl-Dickstein et al. 2015, eq. 14)."""
    fig = new_figure(7.0, 4.0)
    ax = fig.subplots()
    for label, (values, total) in terms.items():
        ax.plot(range(len(values)), values, marker=".", label=f"{label}: {total:.3f} nats")
    ax.axhline(0.0, color="k", lw=0.5)
    ax.set_yscale("symlog", linthresh=0.01)
    ax.set_xlabel("step t (0 = the decoder -log p(x0 | x1))")
    ax.set_ylabel("mean term of the bound (nats)")
    ax.set_title("The bound split into per-step KL terms (eq. 14)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
