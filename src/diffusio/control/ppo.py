"""PPO pieces shared by DPPO (:mod:`~diffusio.control.dppo`) and its Gaussian baseline.

* :func:`gae` -- generalized advantage estimation (Schulman et al. 2016) over decisions, with
  the episode boundary (``done``) separate from termination, so a time-limit cut bootstraps.
* :class:`RunningRewardScaler` -- rewards divided by the running std of the discounted return
  (DPPO's ``reward_scale_running``).
* :func:`chunk_env` -- one environment stepped a chunk of Ta actions at a time (DPPO's
  ``multi_step`` wrapper): observation = the last To observations, reward = the sum of the
  executed steps' rewards, the chunk stops early when the episode ends.
* :func:`mlp`, :class:`GaussianChunkNet` -- the critic V(obs window) and the Gaussian policy
  of the baseline: an MLP giving the mean of a Tp-step action chunk and a learned,
  state-independent log-std, behaviour-cloned by Gaussian NLL (:func:`train_gaussian_policy`);
  :class:`GaussianAgent` is its PPO side (one Gaussian per decision), :class:`GaussianPolicy`
  the receding-horizon controller that :func:`~diffusio.control.policies.load_policy` returns
  for a run with ``gaussian_policy.json``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .diffusion_policy import RecedingHorizon

__all__ = [
    "GAUSSIAN_FILE", "GaussianAgent", "GaussianChunkNet", "GaussianPolicy",
    "RunningRewardScaler", "chunk_env", "gae", "gaussian_policy", "load_gaussian_run", "mlp",
    "train_gaussian_policy",
]  # fmt: skip

GAUSSIAN_FORMAT, GAUSSIAN_FILE = "diffusio-gaussian-policy", "gaussian_policy.json"


def gae(rewards: Tensor, values: Tensor, next_values: Tensor, terminated: Tensor, done: Tensor,
        gamma: float = 0.99, lam: float = 0.95) -> tuple[Tensor, Tensor]:  # fmt: skip
    """``(advantages, returns)`` (T, N) from per-decision ``rewards``, ``values`` V(s_t),
    ``next_values`` V(s_{t+1}) (of the final observation where an episode was cut),
    ``terminated`` (no bootstrap) and ``done`` (an episode boundary: terminated or truncated):
    ``delta_t = r_t + gamma (1 - term_t) V(s_{t+1}) - V(s_t)``,
    ``A_t = delta_t + gamma lam (1 - done_t) A_{t+1}``; returns = A + V."""
    adv = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[0])
    for t in range(len(rewards) - 1, -1, -1):
        delta = rewards[t] + gamma * (1 - terminated[t].float()) * next_values[t] - values[t]
        last = delta + gamma * lam * (1 - done[t].float()) * last
        adv[t] = last
    return adv, adv + values


class RunningRewardScaler:
    """Rewards divided by the running std of each environment's discounted return (its
    running mean and variance merged batch by batch, Chan et al.'s parallel update)."""

    def __init__(self, n_envs: int, gamma: float = 0.99, eps: float = 1e-8) -> None:
        self.gamma, self.eps = float(gamma), float(eps)
        self.ret = np.zeros(n_envs)
        self.mean, self.var, self.count = 0.0, 1.0, 1e-4

    def __call__(self, rewards: np.ndarray, dones: np.ndarray) -> np.ndarray:
        """Scale rewards (T, N) in time order, updating the statistics with each row."""
        out = np.empty_like(rewards, dtype=np.float64)
        rets = []
        for t in range(len(rewards)):
            self.ret = self.ret * self.gamma + rewards[t]
            rets.append(self.ret.copy())
            self.ret[dones[t]] = 0.0
        batch = np.concatenate(rets)
        b_mean, b_var, n = batch.mean(), batch.var(), len(batch)
        delta, total = b_mean - self.mean, self.count + n
        m2 = self.var * self.count + b_var * n + delta**2 * self.count * n / total
        self.mean, self.var, self.count = self.mean + delta * n / total, m2 / total, total
        out[:] = rewards / math.sqrt(self.var + self.eps)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"ret": self.ret.tolist(), "mean": self.mean, "var": self.var, "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ret = np.asarray(state["ret"], dtype=np.float64)
        self.mean, self.var, self.count = state["mean"], state["var"], state["count"]


def chunk_env(env: Any, obs_horizon: int, action_horizon: int) -> Any:
    """``env`` stepped one action chunk (Ta, A) at a time (module docstring): observations are
    (To, O) windows; ``info["env_steps"]`` counts the steps a chunk took."""
    import gymnasium

    class _Chunk(gymnasium.Wrapper):
        def __init__(self, env: Any) -> None:
            super().__init__(env)
            self.to, self.ta = int(obs_horizon), int(action_horizon)
            o, a = env.observation_space, env.action_space
            self.observation_space = gymnasium.spaces.Box(
                np.repeat(o.low[None], self.to, 0).astype(np.float64),
                np.repeat(o.high[None], self.to, 0).astype(np.float64), dtype=np.float64)  # fmt: skip
            self.action_space = gymnasium.spaces.Box(
                np.repeat(a.low[None], self.ta, 0), np.repeat(a.high[None], self.ta, 0),
                dtype=np.float32)  # fmt: skip

        def _window(self) -> np.ndarray:
            return np.stack(self.history).astype(np.float64)

        def reset(self, **kw: Any) -> tuple[np.ndarray, dict]:
            obs, info = self.env.reset(**kw)
            self.history = [np.asarray(obs, dtype=np.float64)] * self.to
            return self._window(), info

        def step(self, chunk: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
            total, terminated, truncated, info, n = 0.0, False, False, {}, 0
            for action in np.asarray(chunk, dtype=np.float32)[: self.ta]:
                obs, r, terminated, truncated, info = self.env.step(action)
                total, n = total + float(r), n + 1
                self.history = self.history[1:] + [np.asarray(obs, dtype=np.float64)]
                if terminated or truncated:
                    break
            return self._window(), total, bool(terminated), bool(truncated), {
                **info, "env_steps": n}  # fmt: skip

    return _Chunk(env)


def mlp(inp: int, out: int, hidden: int = 256, depth: int = 3) -> nn.Module:
    """``depth`` Mish layers of width ``hidden`` and a linear head (the critic's shape)."""
    layers, width = [], inp
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.Mish()]
        width = hidden
    return nn.Sequential(*layers, nn.Linear(width, out))


class GaussianChunkNet(nn.Module):
    """mean (N, Tp, A) = MLP(obs (N, To*O)); a learned log-std per chunk entry."""

    def __init__(self, obs_dim: int, action_dim: int, horizon: int, hidden: int = 256,
                 depth: int = 3, init_std: float = 0.3) -> None:  # fmt: skip
        super().__init__()
        self.obs_dim, self.action_dim, self.horizon = int(obs_dim), int(action_dim), int(horizon)
        self.net = mlp(self.obs_dim, self.action_dim * self.horizon, hidden, depth)
        self.log_std = nn.Parameter(torch.full((self.horizon, self.action_dim), math.log(init_std)))

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(obs).view(-1, self.horizon, self.action_dim)


class GaussianAgent:
    """PPO's side of the Gaussian baseline: one Gaussian per decision (``steps = 1``), std =
    exp(log_std) clipped to [``min_std``, ``max_std``], noise clipped to +-``noise_clip``,
    actions clipped to [-1, 1]; the log-probability of a decision is the mean over the executed
    entries (Ta x A) of the per-entry Gaussian log-densities (DPPO's reduction)."""

    def __init__(self, net: GaussianChunkNet, obs_horizon: int, action_horizon: int,
                 clip: float = 0.1, min_std: float = 0.1, max_std: float = 1.0,
                 noise_clip: float = 3.0) -> None:  # fmt: skip
        self.actor, self.to, self.ta = net, int(obs_horizon), int(action_horizon)
        self.obs_width = net.obs_dim
        self.steps, self.clip = 1, torch.tensor([float(clip)])
        self.weights = torch.ones(1)
        self.min_std, self.max_std, self.noise_clip = min_std, max_std, noise_clip

    def std(self) -> Tensor:
        return self.actor.log_std.exp().clamp(self.min_std, self.max_std)

    @torch.no_grad()
    def sample(self, obs: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        mean = self.actor(obs)
        z = torch.randn(mean.shape, generator=generator).clamp(-self.noise_clip, self.noise_clip)
        x = (mean + self.std() * z).clamp(-1, 1)
        return x, x

    def log_probs(self, obs: Tensor, chains: Tensor) -> Tensor:
        sl = slice(self.to - 1, self.to - 1 + self.ta)
        lp = torch.distributions.Normal(self.actor(obs)[:, sl], self.std()[sl]).log_prob(
            chains[:, sl])  # fmt: skip
        return lp.mean(dim=(1, 2))[:, None]


def train_gaussian_policy(dataset: Any, out_dir: str | os.PathLike, *, obs_horizon: int = 1,
                          pred_horizon: int = 4, action_horizon: int = 4, steps: int = 5000,
                          batch_size: int = 256, lr: float = 1e-3, hidden: int = 256,
                          depth: int = 3, seed: int = 0, env: str | None = None,
                          progress: bool = True) -> tuple[GaussianChunkNet, dict[str, Any]]:  # fmt: skip
    """Behaviour-clone a :class:`GaussianChunkNet` on the Diffusion Policy windows of
    ``dataset`` (same normalisers and horizons) by Gaussian NLL for ``steps`` Adam steps
    (cosine decay); writes ``model.safetensors`` and ``gaussian_policy.json`` in ``out_dir``
    (a finished run there is reused)."""
    from tqdm.auto import tqdm

    from ..io import read_json, write_json_atomic, write_safetensors
    from .diffusion_policy import chunk_training_data

    out = Path(out_dir)
    if (out / GAUSSIAN_FILE).is_file():
        return load_gaussian_run(out)
    data = chunk_training_data(dataset, obs_horizon, pred_horizon, action_horizon, env, progress)
    x, c = data.chunks, data.cond
    with torch.random.fork_rng(devices=[]):  # seeded initial weights; the caller's RNG untouched
        torch.manual_seed(seed)
        net = GaussianChunkNet(c.shape[1], data.action_dim, pred_horizon, hidden, depth)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
    g = torch.Generator().manual_seed(seed)
    for _ in tqdm(range(steps), desc="gaussian bc", disable=not progress, leave=False):
        idx = torch.randint(0, len(x), (batch_size,), generator=g)
        nll = -torch.distributions.Normal(net(c[idx]), net.log_std.exp()).log_prob(x[idx])
        opt.zero_grad()
        nll.mean().backward()
        opt.step()
        sched.step()
    info = {
        "format": GAUSSIAN_FORMAT, "env": data.env, "obs_horizon": obs_horizon,
        "pred_horizon": pred_horizon, "action_horizon": action_horizon,
        "obs_dim": data.obs_dim, "action_dim": data.action_dim, "hidden": hidden,
        "depth": depth, "obs_norm": data.obs_norm.state_dict(),
        "action_norm": data.action_norm.state_dict(),
        "train": {"steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed,
                  "dataset": str(data.ds.path), "windows": len(x)},
    }  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    write_safetensors(out / "model.safetensors", net.state_dict())
    write_json_atomic(out / GAUSSIAN_FILE, info, strict=True)
    return net.eval(), read_json(out / GAUSSIAN_FILE)


def load_gaussian_run(run_dir: str | os.PathLike) -> tuple[GaussianChunkNet, dict[str, Any]]:
    """``(net, info)`` of a run of :func:`train_gaussian_policy` (or its PPO fine-tuning)."""
    from ..io import read_run_description, read_safetensors

    info = read_run_description(run_dir, GAUSSIAN_FILE, GAUSSIAN_FORMAT, "Gaussian policy")
    net = GaussianChunkNet(info["obs_dim"] * info["obs_horizon"], info["action_dim"],
                           info["pred_horizon"], info["hidden"], info["depth"])  # fmt: skip
    tensors, _ = read_safetensors(Path(run_dir) / "model.safetensors")
    net.load_state_dict(tensors)
    return net.eval(), info


class GaussianPolicy(RecedingHorizon):
    """The Gaussian chunk policy as a receding-horizon controller (``stochastic``: sample with
    the clipped std as during PPO; else the mean)."""

    def __init__(self, net: GaussianChunkNet, info: dict[str, Any], stochastic: bool = True,
                 min_std: float = 0.1) -> None:  # fmt: skip
        self.net, self.stochastic = net, bool(stochastic)
        self._setup(info)
        self.agent = GaussianAgent(net, self.obs_horizon, self.action_horizon, min_std=min_std)

    @torch.no_grad()
    def plan(self, obs_windows: Any) -> np.ndarray:
        obs = self._condition(obs_windows)
        x = self.agent.sample(obs, self.generator)[0] if self.stochastic else self.net(obs)
        return self.action_norm.inverse(x.clamp(-1, 1).double().numpy())


def gaussian_policy(run_dir: str | os.PathLike, **options: Any) -> GaussianPolicy:
    """The :class:`GaussianPolicy` of a run (``stochastic``, ``min_std``)."""
    net, info = load_gaussian_run(run_dir)
    return GaussianPolicy(net, info, **options)
