"""Value-guided receding-horizon planning: Diffuser for reward maximisation (Janner et al. 2022,
Sec. 3.3 and 5.2; the official ``main`` branch: ``ValueDataset``, ``ValueFunction``,
``n_step_guided_p_sample``, ``GuidedPolicy``).

* The trajectory model is Diffuser over ``[action, state]`` windows cut inside episodes
  (:func:`~diffusio.control.decision_diffuser.episode_windows`), conditioned on the current
  state at step 0 (:func:`~diffusio.control.diffuser.train_on_windows` with ``known_steps=(0,)``).
* The value network (:class:`~diffusio.nets.temporal.ValueNetwork`) is trained on *noised*
  windows to predict the discounted return-to-go from the window's first step (the official
  ``ValueDataset``: ``discount`` 0.99 over the rest of the episode), standardised.
* Planning: ``n_samples`` plans from the current state, each reverse step moved ``n_guide_steps``
  times along ``scale * Var_post * grad J`` (:class:`~diffusio.core.value_guidance.
  ValueGuidance`), the plans sorted by their value and the best one's first action executed
  (``replan_every`` > 1 executes that many of its actions before replanning: the CPU budget).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..io import read_json, write_json_atomic

__all__ = ["VALUE_FORMAT", "ValueGuidedPolicy", "load_value_run", "train_value",
           "value_guided_policy", "value_windows"]  # fmt: skip

VALUE_FORMAT = "diffusio-value"


def value_windows(dataset: Any, horizon: int, discount: float = 0.99,
                  stride: int = 1) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """``(windows, returns)``: ``[action, state]`` windows (N, H, A + S) inside every episode
    and the discounted return-to-go from each window's first step (N,)."""
    from .decision_diffuser import episode_windows, returns_to_go

    windows, starts = episode_windows(dataset, horizon, kind="cond-diffuser", stride=stride)
    rtg = returns_to_go(dataset["rewards"], dataset.episodes(), discount)
    return windows, rtg[starts].astype(np.float64)


def train_value(
    windows: np.ndarray, returns: np.ndarray, model_dir: str | os.PathLike,
    out_dir: str | os.PathLike, *, steps: int = 2000, batch_size: int = 64, lr: float = 2e-4,
    dim: int = 16, dim_mults: tuple[int, ...] = (1, 2, 4), seed: int = 0, progress: bool = True,
) -> Path:  # fmt: skip
    """Train the noise-conditional value J(x_t, t) on windows noised by the process of the
    Diffuser run ``model_dir`` (scaled by its limits): MSE to the standardised returns, times
    uniform on (0, 1]. Writes ``value.json`` (last) and ``value.safetensors`` to ``out_dir``."""
    from tqdm.auto import tqdm

    from ..io import write_safetensors
    from ..nets.temporal import ValueNetwork
    from .diffuser import LimitsNormalizer, load_diffuser_run

    model, info = load_diffuser_run(model_dir)
    norm = LimitsNormalizer(info["limits"]["low"], info["limits"]["high"])
    x0 = torch.as_tensor(norm(windows), dtype=torch.float32)
    y = np.asarray(returns, dtype=np.float64)
    if len(y) != len(x0) or not np.all(np.isfinite(y)):
        raise ValueError(f"need one finite return per window: {len(y)} for {len(x0)}")
    mean, std = float(y.mean()), float(y.std() or 1.0)
    target = torch.as_tensor((y - mean) / std, dtype=torch.float32)
    g = torch.Generator().manual_seed(int(seed))
    torch.manual_seed(int(seed))
    net = ValueNetwork(transition_dim=x0.shape[-1], dim=dim, dim_mults=dim_mults)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    process, losses = model.process, []
    for _ in tqdm(range(steps), desc="value network", disable=not progress):
        idx = torch.randint(len(x0), (batch_size,), generator=g)
        t = torch.rand(batch_size, generator=g, dtype=torch.float64).clamp_min(1e-3)
        a, s = process.alpha(t).float()[:, None, None], process.sigma(t).float()[:, None, None]
        x_t = a * x0[idx] + s * torch.randn(x0[idx].shape, generator=g)
        loss = (net(x_t, t.float()) - target[idx]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_safetensors(out / "value.safetensors", net.state_dict(), {"format": VALUE_FORMAT})
    write_json_atomic(out / "value.json", {
        "format": VALUE_FORMAT, "version": 1, "model": str(model_dir), "mean": mean, "std": std,
        "dim": dim, "dim_mults": list(dim_mults), "transition_dim": int(x0.shape[-1]),
        "steps": steps, "final_loss": float(np.mean(losses[-50:])) if losses else math.nan,
    })  # fmt: skip
    return out


def load_value_run(value_dir: str | os.PathLike) -> tuple[Any, dict[str, Any]]:
    """``(value net, info)`` of a run written by :func:`train_value`."""
    from ..io import read_safetensors
    from ..nets.temporal import ValueNetwork

    path = Path(value_dir) / "value.json"
    if not path.is_file():
        raise FileNotFoundError(f"{value_dir}: not a value run (no value.json)")
    info = read_json(path)
    if not isinstance(info, dict) or info.get("format") != VALUE_FORMAT:
        raise ValueError(f"{path}: not a diffusio value run description")
    net = ValueNetwork(transition_dim=info["transition_dim"], dim=info["dim"],
                       dim_mults=tuple(info["dim_mults"]))  # fmt: skip
    tensors, _ = read_safetensors(Path(value_dir) / "value.safetensors")
    net.load_state_dict(tensors)
    return net.eval(), info


class ValueGuidedPolicy:
    """Receding-horizon control with a value-guided Diffuser (module docstring): ``act`` takes
    one observation or a batch (rows = episodes) and returns actions of the same leading shape;
    ``keep(rows)`` drops finished episodes (the batched runner's protocol)."""

    def __init__(self, model: Any, info: dict[str, Any], value: Any, *, scale: float = 0.1,
                 n_samples: int = 16, n_guide_steps: int = 2, t_stopgrad: int = 2,
                 replan_every: int = 1, sampler: str = "ddpm", steps: int | None = None):  # fmt: skip
        from .diffuser import LimitsNormalizer

        if n_samples < 1 or replan_every < 1:
            raise ValueError(f"n_samples and replan_every must be >= 1, got {n_samples}, "
                             f"{replan_every}")  # fmt: skip
        self.model, self.info, self.value = model, info, value
        self.norm = LimitsNormalizer(info["limits"]["low"], info["limits"]["high"])
        self.env, self.horizon = info["env"], int(info["horizon"])
        self.a_dim, self.s_dim = int(info["action_dim"]), int(info["state_dim"])
        self.scale, self.n, self.n_guide_steps = float(scale), int(n_samples), int(n_guide_steps)
        table = model.process.discrete().times
        self.t_stopgrad = float(table[min(int(t_stopgrad), len(table) - 1)]) if t_stopgrad else 0.0
        self.replan_every, self.sampler, self.steps = int(replan_every), sampler, steps
        self.planning_seconds: list[float] = []
        self.reset(0)

    def reset(self, seed: int = 0) -> None:
        self.seed, self.step, self.plans = int(seed), 0, None

    def keep(self, rows: Any) -> None:
        if self.plans is not None:
            self.plans = self.plans[np.asarray(rows, dtype=np.int64)]

    def _value(self, x: Tensor, t: Tensor) -> Tensor:
        return self.value(x, t)

    def plan(self, states: np.ndarray, seed: int) -> np.ndarray:
        """The best of ``n_samples`` guided plans (B, H, A + S) in data units per state (B, S)."""
        from ..core.samplers import sample
        from ..core.steering import ClipX0, Inpaint
        from ..core.value_guidance import ValueGuidance

        b, d = len(states), self.a_dim + self.s_dim
        known = np.zeros((b, self.horizon, d))
        known[:, 0, self.a_dim :] = states
        known = torch.as_tensor(self.norm(known), dtype=torch.float32)
        mask = torch.zeros(b, self.horizon, d, dtype=torch.bool)
        mask[:, 0, self.a_dim :] = True
        known, mask = known.repeat_interleave(self.n, 0), mask.repeat_interleave(self.n, 0)
        cond = {"known": torch.where(mask, known, torch.full_like(known, float("nan")))}
        guidance: list[Any] = [ClipX0()]
        if self.scale:
            guidance.append(ValueGuidance(self._value, self.scale, self.n_guide_steps,
                                          t_stopgrad=self.t_stopgrad))  # fmt: skip
        x = sample(self.model, (b * self.n, self.horizon, d), sampler=self.sampler,
                   steps=self.steps, seed=seed, guidance=guidance,
                   constraints=[Inpaint(known, mask)], cond=cond)  # fmt: skip
        with torch.no_grad():
            v = self.value(x, torch.zeros(len(x))).reshape(b, self.n)
        best = v.argmax(dim=1) + torch.arange(b) * self.n
        return self.norm.inverse(x[best].numpy())

    def act(self, observation: Any) -> np.ndarray:
        from .envs import observation_batch

        obs, single = observation_batch(self.env, observation, self.s_dim)
        j = self.step % self.replan_every
        if j == 0 or self.plans is None or len(self.plans) != len(obs):
            j, start = 0, time.perf_counter()
            self.plans = self.plan(obs, self.seed * 100_003 + self.step)
            self.planning_seconds.append(time.perf_counter() - start)
        self.step += 1
        action = self.plans[:, min(j, self.horizon - 1), : self.a_dim]
        action = np.clip(action, -1.0, 1.0).astype(np.float32)
        return action[0] if single else action


def value_guided_policy(run_dir: str | os.PathLike, value_dir: str | os.PathLike | None = None,
                        **options: Any) -> ValueGuidedPolicy:  # fmt: skip
    """The :class:`ValueGuidedPolicy` of a Diffuser run and its value run (default
    ``run_dir/value``); ``options`` go to the policy (``scale=0`` is unguided)."""
    from .diffuser import load_diffuser_run

    model, info = load_diffuser_run(run_dir)
    value, _ = load_value_run(Path(run_dir) / "value" if value_dir is None else value_dir)
    return ValueGuidedPolicy(model, info, value, **options)
