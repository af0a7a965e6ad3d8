"""A gymnasium environment for closed-loop control of the 1-D Burgers' equation (the DiffPhyCon
task; :mod:`diffusio.physics.burgers`). Importing this module needs gymnasium (the ``control``
extra); nothing is registered at import: call :func:`register` for ``diffusio/Burgers-v0``.

* One step = one control interval (1000 Euler steps, 0.1 time units); an episode is 10 steps
  (t = 0 -> 1) and then terminates.
* Observation (float32): ``u`` at the current time on the setting's observed cells, then the
  normalised time ``k / 10`` (k steps taken); with ``include_target=True`` the full target
  ``u_d`` (128) is appended. The u bounds (+-``OBS_BOUND``) are nominal; the state is not
  clipped.
* Action (float32 Box, +-``action_bound``, default 10): ``f`` on the controlled cells for this
  interval (zero on the others); actions are clipped to the bounds.
* Reward: 0 on steps 1..9; on the final step ``-J_actual = -mean_x (u(T) - u_d)^2`` over all
  128 cells (whatever is observed). ``info`` holds ``u`` (the full state, float64), ``target``,
  ``step`` and, on the final step, ``j_actual``.
* ``reset(seed=...)`` draws, from one torch generator seeded by the env's ``np_random``, an
  initial state ``u0`` and a control (the data set's sampler for this setting, rounded to
  float32 and clipped to the action bounds, so it is a valid action sequence); the target
  ``u_d`` is the final state of the nominal solver (nu = 0.01, no noise) under that control, so
  it is reachable, and the control is kept as ``target_control`` (10, 128). ``options`` may
  pass ``u0`` and ``target`` (128,) instead (``target_control`` is then None).
* Disturbances: ``state_noise`` adds N(0, state_noise^2) to every interior cell of ``u`` after
  each step (drawn from ``np_random``); ``nu`` sets the viscosity of the true dynamics (the
  target always comes from the nominal nu = 0.01), a model mismatch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

try:
    import gymnasium
    from gymnasium import spaces
except ImportError as e:  # pragma: no cover - exercised by a test that hides gymnasium
    raise ImportError(
        "diffusio.physics.env needs gymnasium: pip install 'diffusio[control]'"
    ) from e

from .burgers import (
    N_CELLS,
    N_INTERVALS,
    NU,
    SUBSTEPS,
    control_cost,
    get_setting,
    simulate,
)
from .burgers_data import sample_control, sample_initial

__all__ = ["ENV_ID", "OBS_BOUND", "BurgersControlEnv", "register"]

ENV_ID = "diffusio/Burgers-v0"
OBS_BOUND = 100.0


class BurgersControlEnv(gymnasium.Env):
    """Closed-loop Burgers control (see the module docstring)."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self, setting: str = "fo-fc", state_noise: float = 0.0, nu: float = NU,
        action_bound: float = 10.0, include_target: bool = False,
    ) -> None:
        self.setting = get_setting(setting)
        if not (np.isfinite(state_noise) and state_noise >= 0):
            raise ValueError(f"state_noise must be a non-negative float, got {state_noise!r}")
        if not (np.isfinite(nu) and nu >= 0):
            raise ValueError(f"nu must be a non-negative float, got {nu!r}")
        if not (np.isfinite(action_bound) and action_bound > 0):
            raise ValueError(f"action_bound must be a positive float, got {action_bound!r}")
        self.state_noise, self.nu = float(state_noise), float(nu)
        self.action_bound, self.include_target = float(action_bound), bool(include_target)
        self.max_steps = N_INTERVALS
        self.observed = self.setting.observed.numpy()
        self.controlled = self.setting.controlled.numpy()
        n_obs, n_ctrl = int(self.observed.sum()), int(self.controlled.sum())
        extra = N_CELLS if self.include_target else 0
        low = np.full(n_obs + 1 + extra, -OBS_BOUND, dtype=np.float32)
        high = np.full(n_obs + 1 + extra, OBS_BOUND, dtype=np.float32)
        low[n_obs], high[n_obs] = 0.0, 1.0
        self.observation_space = spaces.Box(low, high, dtype=np.float32)
        self.action_space = spaces.Box(-self.action_bound, self.action_bound, (n_ctrl,),
                                       dtype=np.float32)
        self.u: np.ndarray | None = None
        self.target: np.ndarray | None = None
        self.target_control: np.ndarray | None = None
        self.u0: np.ndarray | None = None
        self.k = 0

    # ------------------------------------------------------------------------------------------

    def _obs(self) -> np.ndarray:
        parts = [self.u[self.observed], [self.k / self.max_steps]]
        if self.include_target:
            parts.append(self.target)
        return np.concatenate(parts).astype(np.float32)

    def _info(self) -> dict[str, Any]:
        return {"u": self.u.copy(), "target": self.target.copy(), "step": self.k}

    @staticmethod
    def _state(x: Any, name: str) -> np.ndarray:
        a = np.asarray(x, dtype=np.float64)
        if a.shape != (N_CELLS,) or not np.isfinite(a).all():
            raise ValueError(f"options[{name!r}] must be a finite array of shape ({N_CELLS},), "
                             f"got shape {a.shape}")
        return a.copy()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = dict(options or {})
        g = torch.Generator().manual_seed(int(self.np_random.integers(2**62)))
        u0 = sample_initial(1, g)
        control = sample_control(1, g, self.setting)
        control = control.to(torch.float32).to(torch.float64)
        control = control.clamp(-self.action_bound, self.action_bound)
        if "u0" in options:  # the draws above still happen: the stream does not depend on it
            u0 = torch.from_numpy(self._state(options.pop("u0"), "u0"))[None]
        if "target" in options:
            self.target = self._state(options.pop("target"), "target")
            self.target_control = None
        else:
            self.target = simulate(u0, control, nu=NU)[0, -1].numpy()
            self.target_control = control[0].numpy()
        if options:
            raise ValueError(f"unknown reset options {sorted(options)}; valid: u0, target")
        self.u0 = u0[0].numpy().copy()
        self.u = self.u0.copy()
        self.k = 0
        return self._obs(), self._info()

    def step(self, action: Any):
        if self.u is None:
            raise RuntimeError("call reset() before step()")
        if self.k >= self.max_steps:
            raise RuntimeError("the episode is over (10 steps): call reset()")
        a = np.asarray(action, dtype=np.float64)
        if a.shape != self.action_space.shape:
            raise ValueError(f"action must have shape {self.action_space.shape}, got {a.shape}")
        if not np.isfinite(a).all():
            raise ValueError("action contains NaN or infinite values")
        f = np.zeros((1, 1, N_CELLS))
        f[0, 0, self.controlled] = np.clip(a, -self.action_bound, self.action_bound)
        u = simulate(self.u[None], f, nu=self.nu, substeps=SUBSTEPS)[0, -1].numpy()
        if self.state_noise > 0:
            u = u + self.state_noise * self.np_random.standard_normal(N_CELLS)
        self.u = u
        self.k += 1
        terminated = self.k >= self.max_steps
        info = self._info()
        reward = 0.0
        if terminated:
            j = float(control_cost(self.u[None], self.target[None])[0])
            info["j_actual"] = j
            reward = -j
        return self._obs(), reward, terminated, False, info


def register() -> str:
    """Register ``diffusio/Burgers-v0`` (kwargs of :class:`BurgersControlEnv` pass through
    ``gymnasium.make``); idempotent. Returns the id."""
    if ENV_ID not in gymnasium.registry:
        gymnasium.register(id=ENV_ID, entry_point="diffusio.physics.env:BurgersControlEnv")
    return ENV_ID
