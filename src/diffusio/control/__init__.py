"""The planning and control domain: environments, scripted controllers and offline datasets
(D4RL-style, generated locally) for Diffuser, Decision Diffuser, loss guidance, Diffusion Policy
and DPPO.

* :mod:`~diffusio.control.envs` -- :func:`~diffusio.control.envs.make_env` by name
  (``pointmaze-umaze|medium|large``, ``lunarlander``, ``point2d``), PointMaze's observation
  flattening and :func:`~diffusio.control.envs.check_observation`;
* :mod:`~diffusio.control.pointmaze` -- PointMaze's flat-observation wrapper, D4RL's goal
  cells and the maze grid in cell coordinates;
* :mod:`~diffusio.control.point2d` -- our 2-D point mass with circular obstacles, goals and
  skills;
* :mod:`~diffusio.control.controllers` -- D4RL's maze2d waypoint controller, the LunarLander
  heuristic with action noise, a random policy and the point2d script;
* :mod:`~diffusio.control.scores` -- episode rollouts, the reference scores and D4RL's
  normalised score;
* :mod:`~diffusio.control.generate` -- the data recipes (D4RL's maze2d stream, mixed-quality
  LunarLander, point2d skills);
* :mod:`~diffusio.control.datasets` -- ``make_dataset`` / ``load_dataset`` (``.npz`` + JSON
  manifest, cached) and ``diffusio make-dataset``;
* :mod:`~diffusio.control.diffuser` -- Diffuser's data, planner and maze policy;
* :mod:`~diffusio.control.baselines` -- the offline-RL baselines BC, %BC and GCBC
  (:func:`~diffusio.control.baselines.train_bc`);
* :mod:`~diffusio.control.decision_diffuser` -- Decision Diffuser (states diffused with return
  or skill CFG, inverse dynamics) and CondDiffuser
  (:func:`~diffusio.control.decision_diffuser.train_decision_diffuser`), batched rollouts;
* :mod:`~diffusio.control.policies` -- :func:`~diffusio.control.policies.load_policy` for any
  trained run and the rollout runner :func:`~diffusio.control.policies.evaluate`.

The simulators need the ``control`` extra (``pip install 'diffusio[control]'``: gymnasium,
gymnasium-robotics, mujoco, box2d, pygame); they are imported inside functions, so importing
this package needs none of them. ``docs/control.md`` describes the environments, the data recipe
and the normalised score. Nothing is imported here: import the modules directly, or use the few
names below (``diffusio.control.load_policy``...), each imported on first use.
"""

from typing import Any

#: Names resolved lazily (PEP 562) -> the module that defines them.
_LAZY = {
    "load_policy": "policies", "evaluate": "policies", "train_bc": "baselines",
    "load_bc_run": "baselines", "BCPolicy": "baselines", "make_env": "envs",
    "make_dataset": "datasets", "load_dataset": "datasets",
    "train_decision_diffuser": "decision_diffuser", "DecisionDiffuserPolicy": "decision_diffuser",
    "evaluate_batched": "policies",
}  # fmt: skip
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
