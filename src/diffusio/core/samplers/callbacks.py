"""Step callbacks (k-diffusion style): ``callback(info)`` is called once per sampler step with a
dict holding at least ``i`` (step index), ``t`` (the step's time: a float, or a per-frame tensor),
``x`` (the state the step's prediction was made at) and ``x0`` (the guided prediction of the
clean data there); the DDPM/DDIM family adds the step's Gaussian ``mean``, ``std`` and the draw
``x_next`` (before constraints), and every grid sampler ``t_next`` (None: the step to clean data).

A callback observes; it must not change the tensors it is given. :class:`X0Trace` records the x0
predictions along a chain (DDPM's progressive generation, Ho et al. 2020, Fig. 6).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["Callback", "X0Trace", "notify"]

Callback = Callable[[dict[str, Any]], None]


def notify(callback: Callback | None, pred: Any = None, **info: Any) -> None:
    """Call ``callback(info)`` if there is a callback, with ``x0`` taken from the prediction
    ``pred`` if given (converted only then)."""
    if callback is None:
        return
    if pred is not None:
        info["x0"] = pred.x0
    callback(info)


class X0Trace:
    """A callback that records ``x0`` (the guided prediction) and the state ``x`` at chosen step
    indices of the first chain it sees (Ho et al. 2020, Fig. 6).

    ``steps``: step indices (0 = the first, at the start of the grid; None: every step); only
    the first ``keep`` rows are stored (None: all). A chain ends when the step index stops
    increasing, so when a caller samples several batches only the first batch is recorded.
    Attributes ``times``, ``x0`` and ``xt`` hold float32 copies on the CPU.
    """

    def __init__(self, steps: Sequence[int] | None = None, keep: int | None = None):
        self.steps = None if steps is None else sorted({int(k) for k in steps})
        self.keep = keep
        self.times: list[float | Tensor] = []
        self.x0: list[Tensor] = []
        self.xt: list[Tensor] = []
        self._last = -1
        self._done = False

    def __call__(self, info: dict[str, Any]) -> None:
        i = int(info["i"])
        if i <= self._last:
            self._done = True  # a second chain
        self._last = i
        if self._done or (self.steps is not None and i not in self.steps):
            return
        rows = slice(None) if self.keep is None else slice(0, self.keep)
        t = info["t"]
        self.times.append(t.detach().cpu().clone() if isinstance(t, Tensor) else float(t))
        self.x0.append(info["x0"][rows].detach().to("cpu", torch.float32).clone())
        self.xt.append(info["x"][rows].detach().to("cpu", torch.float32).clone())
