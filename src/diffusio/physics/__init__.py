"""Differentiable physics for diffusion control: the 1-D Burgers' equation of DiffPhyCon
(Wei et al. 2024, "DiffPhyCon: A Generative Approach to Control Complex Physical Systems",
NeurIPS 2024, arXiv:2407.06494).

* :mod:`~diffusio.physics.burgers` -- the exact batched, differentiable solver of the official
  data generator (:func:`~diffusio.physics.burgers.simulate`), the four task settings
  (``fo-fc``, ``fo-pc``, ``po-fc``, ``po-pc``) and the costs;
* :mod:`~diffusio.physics.burgers_data` -- initial states and controls sampled as the official
  generator does, and the ``.npz`` + JSON data sets;
* :mod:`~diffusio.physics.env` -- ``BurgersControlEnv``, a gymnasium environment for closed-loop
  control (needs the ``control`` extra: ``pip install 'diffusio[control]'``), and
  ``register()`` for ``diffusio/Burgers-v0``.

The solver's names are imported here; ``BurgersControlEnv`` and ``register`` are imported on
first use, so importing this package does not need gymnasium.
"""

from typing import Any

from .burgers import (
    CONTROL_TIMES,
    DT,
    DX,
    N_CELLS,
    N_INTERVALS,
    N_TIMES,
    NU,
    RECORD_TIMES,
    SETTINGS,
    SUBSTEPS,
    T_FINAL,
    Setting,
    X,
    control_cost,
    get_setting,
    objective,
    simulate,
    step,
)
from .burgers_data import (
    BurgersDataset,
    load_burgers_dataset,
    make_burgers_data,
    sample_control,
    sample_initial,
    save_burgers_dataset,
)

_LAZY = {"BurgersControlEnv": "env", "register": "env", "ENV_ID": "env"}

__all__ = [
    "CONTROL_TIMES", "DT", "DX", "ENV_ID", "N_CELLS", "N_INTERVALS", "N_TIMES", "NU",
    "RECORD_TIMES", "SETTINGS", "SUBSTEPS", "T_FINAL", "X", "BurgersControlEnv",
    "BurgersDataset", "Setting", "control_cost", "get_setting", "load_burgers_dataset",
    "make_burgers_data", "objective", "register", "sample_control", "sample_initial",
    "save_burgers_dataset", "simulate", "step",
]  # fmt: skip


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
