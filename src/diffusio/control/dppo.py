"""DPPO (Ren et al. 2025, *Diffusion Policy Policy Optimization*, ICLR 2025, arXiv 2409.00588):
PPO over the denoising steps of a pretrained Diffusion Policy, and the finetune loop.

* **The two-level MDP** (Sec. 4.1): at each decision the policy runs a K-step DDPM chain
  x^K -> ... -> x^0 conditioned on the observation window; every step is a Gaussian
  ``N(mu(x^k, k, obs), sigma_k^2)`` with an exact log-density
  (:func:`~diffusio.core.samplers.reverse_step` + x0 clipped to [-1, 1]), and the reward comes
  only at the clean step. PPO's samples are (decision, denoising step) pairs.
* **Only the last K' of K steps are fine-tuned** (Sec. 5.2; 10 of 20); the first K - K' are
  taken by a frozen copy of the pretrained network.
* **Floors** (App. C): the sampling std is clipped below at 0.1 (exploration), the
  log-probability std at 0.1, the noise at +-3; the final step to clean data (std 0 on the
  table) gets the floor std and its output is clipped to [-1, 1]. Per-entry log-densities are
  clipped to [-5, 2] and averaged over the executed entries (Ta x A), as the official code.
* **PPO**: GAE (gamma 0.99, lambda 0.95) over decisions with the decision reward = the sum of
  its Ta environment rewards, scaled by a running std; the advantage of denoising step i
  (0 = first fine-tuned) is multiplied by ``gamma_denoise^(K' - i - 1)`` (0.99); the clip ratio
  is interpolated exponentially over i from ``clip_base`` to ``clip`` (:func:`clip_schedule`);
  a state-value critic V(obs window).

:func:`ppo_finetune` is one loop for both agents (:class:`DPPOAgent` and the Gaussian baseline
:class:`~diffusio.control.ppo.GaussianAgent`): each iteration resets ``n_envs`` vector
environments with seeds from (seed, iteration) and takes ``n_steps`` chunk decisions in each,
so an iteration depends only on the weights, the optimiser and the reward scaler, which the
atomic checkpoint after every iteration holds: killing and resuming gives identical weights.
The reported return of an iteration is the mean over the first episode of every environment
(episodes that start later in the iteration would over-count short ones).
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .diffuser import LimitsNormalizer
from .diffusion_policy import RecedingHorizon
from .ppo import RunningRewardScaler, chunk_env, gae, mlp

__all__ = ["AgentPolicy", "DPPOAgent", "PPOConfig", "clip_schedule", "dppo_policy", "finetune",
           "ppo_finetune", "pretrain_diffusion_policy"]  # fmt: skip


def clip_schedule(steps: int, clip: float, base: float, rate: float = 3.0) -> Tensor:
    """DPPO's clip ratio per fine-tuned denoising step i = 0 .. K'-1 (i = K'-1 the step to clean
    data): ``base + (clip - base) (exp(rate u) - 1) / (exp(rate) - 1)``, u = i / (K' - 1)."""
    if steps == 1:
        return torch.tensor([float(clip)])
    u = torch.arange(steps, dtype=torch.float64) / (steps - 1)
    return (base + (clip - base) * torch.expm1(rate * u) / math.expm1(rate)).float()


class DPPOAgent:
    """The diffusion policy as PPO's actor (module docstring): ``actor`` (trained) and ``base``
    (the frozen pretrained copy) share the model's K-step DDPM grid."""

    def __init__(self, model: Any, info: dict[str, Any], ft_steps: int = 10,
                 clip: float = 0.01, clip_base: float = 1e-3, clip_rate: float = 3.0,
                 gamma_denoise: float = 0.99, min_std: float = 0.1, min_logprob_std: float = 0.1,
                 noise_clip: float | None = 3.0, x0_clip: bool = True, action_clip: bool = True,
                 logprob_clip: tuple[float, float] | None = (-5.0, 2.0)) -> None:  # fmt: skip
        from ..core.samplers import grid_times

        self.actor, self.to, self.ta = model, int(info["obs_horizon"]), int(info["action_horizon"])
        self.shape = (int(info["pred_horizon"]), int(info["action_dim"]))
        self.obs_width = int(info["obs_dim"]) * self.to
        self.base = copy.deepcopy(model).requires_grad_(False).eval()
        self.times = grid_times(model.process, None)
        self.K, self.steps = len(self.times), int(ft_steps)
        if not 1 <= self.steps <= self.K:
            raise ValueError(f"ft_steps must be in 1..{self.K}, got {ft_steps}")
        self.clip = clip_schedule(self.steps, clip, clip_base, clip_rate)
        self.weights = torch.tensor([gamma_denoise ** (self.steps - i - 1)
                                     for i in range(self.steps)])  # fmt: skip
        self.min_std, self.min_logprob_std, self.noise_clip = min_std, min_logprob_std, noise_clip
        self.x0_clip, self.logprob_clip, self.action_clip = x0_clip, logprob_clip, action_clip

    def step(self, model: Any, x: Tensor, k: int, obs: Tensor) -> tuple[Tensor, float]:
        """The Gaussian ``(mean, table std)`` of denoising step ``k`` (0 = from pure noise)."""
        from ..core.samplers import reverse_step
        from ..core.steering import ClipX0

        t, s = self.times[k], self.times[k + 1] if k + 1 < self.K else None
        out = reverse_step(model, x, t, s, eta=1.0, noise=torch.zeros_like(x),
                           cond={"obs": obs}, guidance=[ClipX0()] if self.x0_clip else ())  # fmt: skip
        return out.mean, float(out.std)

    def step_log_prob(self, model: Any, x: Tensor, x_next: Tensor, k: int, obs: Tensor) -> Tensor:
        """Per-entry log N(x_next; mean_k(x), max(std_k, log-prob floor)^2) (no reduction)."""
        from ..core.samplers import gaussian_log_prob

        mean, std = self.step(model, x, k, obs)
        return gaussian_log_prob(x_next, mean, max(std, self.min_logprob_std), x.dim())

    @torch.no_grad()
    def sample(self, obs: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``(actions (N, Tp, A), chain (N, K'+1, Tp, A))``: the chain's last K'+1 states."""
        x = torch.randn((len(obs), *self.shape), generator=generator)
        states = [x]
        for k in range(self.K):
            mean, std = self.step(self.base if k < self.K - self.steps else self.actor, x, k, obs)
            z = torch.randn(x.shape, generator=generator)
            if self.noise_clip is not None:
                z = z.clamp(-self.noise_clip, self.noise_clip)
            x = mean + max(std, self.min_std) * z
            if k == self.K - 1 and self.action_clip:
                x = x.clamp(-1, 1)
            states.append(x)
        return x, torch.stack(states[self.K - self.steps:], dim=1)

    def log_probs(self, obs: Tensor, chains: Tensor) -> Tensor:
        """(N, K') reduced log-probabilities of the recorded fine-tuned steps under the actor."""
        sl, out = slice(self.to - 1, self.to - 1 + self.ta), []
        for j in range(self.steps):
            k = self.K - self.steps + j
            lp = self.step_log_prob(self.actor, chains[:, j], chains[:, j + 1], k, obs)[:, sl]
            if self.logprob_clip is not None:
                lp = lp.clamp(*self.logprob_clip)
            out.append(lp.mean(dim=(1, 2)))
        return torch.stack(out, dim=1)


@dataclass(frozen=True)
class PPOConfig:
    """The loop's knobs (DPPO's Gym recipe where it has one, at CPU scale)."""

    iterations: int = 20
    n_envs: int = 8
    n_steps: int = 250  # decisions per environment per iteration (x Ta env steps)
    gamma: float = 0.99
    gae_lambda: float = 0.95
    update_epochs: int = 5
    minibatch: int = 500  # decisions per gradient step
    actor_lr: float = 1e-4
    critic_lr: float = 1e-3
    vf_coef: float = 0.5
    max_grad_norm: float = 1.0
    target_kl: float | None = 1.0
    critic_warmup: int = 0  # first iterations that train only the critic
    reward_scale: bool = True
    critic_hidden: int = 256
    seed: int = 0


def pretrain_diffusion_policy(dataset: Any, out_dir: str | os.PathLike, **kw: Any) -> Any:
    """:func:`~diffusio.control.diffusion_policy.train_diffusion_policy` with DPPO's defaults
    (``film-mlp``, K = 20 table steps, DDPM sampling)."""
    from . import diffusion_policy as dp

    kw = {"net": "film-mlp", "process_options": {"num_steps": 20}, "sampler": "ddpm",
          "sampler_steps": kw.get("process_options", {}).get("num_steps", 20), **kw}  # fmt: skip
    return dp.train_diffusion_policy(dataset, out_dir, **kw)


def _vector_env(env_name: str, n: int, to: int, ta: int) -> Any:
    import gymnasium

    from .envs import make_env

    fns = [lambda: chunk_env(make_env(env_name), to, ta) for _ in range(n)]
    return gymnasium.vector.SyncVectorEnv(
        fns, autoreset_mode=gymnasium.vector.AutoresetMode.SAME_STEP)


def rollout(agent: Any, critic: nn.Module, envs: Any, norms: tuple[Any, Any], n_steps: int,
            seeds: list[int], generator: torch.Generator, keep_windows: bool = False
            ) -> dict[str, Any]:  # fmt: skip
    """``n_steps`` chunk decisions in every environment of ``envs`` (reset with ``seeds``):
    the PPO buffer (obs, chains, values, next values, rewards, terminated, done) and the
    returns of every episode and of each environment's first one."""
    obs_norm, act_norm = norms
    n, (to, ta) = len(seeds), (agent.to, agent.ta)

    def normed(w: np.ndarray) -> Tensor:
        return torch.as_tensor(obs_norm(w).reshape(len(w), -1), dtype=torch.float32)

    windows, _ = envs.reset(seed=seeds)
    buf: dict[str, list] = {k: [] for k in ("obs", "chains", "values", "next_values", "rewards",
                                            "terminated", "done", "windows")}  # fmt: skip
    ep_ret, first, episodes, firsts, env_steps = np.zeros(n), np.ones(n, bool), [], {}, 0
    for _ in range(n_steps):
        obs = normed(windows)
        x, chains = agent.sample(obs, generator)
        chunk = act_norm.inverse(x[:, to - 1:to - 1 + ta].double().numpy()).astype(np.float32)
        nxt, reward, term, trunc, info = envs.step(chunk)
        done = term | trunc
        boot = nxt.copy()
        if done.any() and "final_obs" in info:
            for i in np.flatnonzero(done):
                boot[i] = info["final_obs"][i]
        with torch.no_grad():
            v, v_next = critic(obs).squeeze(-1), critic(normed(boot)).squeeze(-1)
        for key, val in (("obs", obs), ("chains", chains), ("values", v), ("next_values", v_next),
                         ("rewards", reward), ("terminated", term), ("done", done)):  # fmt: skip
            buf[key].append(val)
        if keep_windows:
            buf["windows"].append(windows)
        env_steps += int(np.sum(info.get("env_steps", np.full(n, ta))))
        ep_ret += reward
        for i in np.flatnonzero(done):
            episodes.append(float(ep_ret[i]))
            if first[i]:
                firsts[i], first[i] = float(ep_ret[i]), False
            ep_ret[i] = 0.0
        windows = nxt
    out = {k: torch.stack(v) if torch.is_tensor(v[0]) else np.stack(v)
           for k, v in buf.items() if v}  # fmt: skip
    out.update(episodes=episodes, first_returns=[firsts[i] for i in sorted(firsts)],
               env_steps=env_steps)
    return out


def _ppo_update(agent: Any, critic: nn.Module, opt: torch.optim.Optimizer, b: dict[str, Any],
                adv: Tensor, ret: Tensor, cfg: PPOConfig, g: torch.Generator,
                actor_on: bool) -> dict[str, float]:  # fmt: skip
    obs, chains = b["obs"].flatten(0, 1), b["chains"].flatten(0, 1)
    adv, ret = adv.flatten(), ret.flatten()
    with torch.no_grad():
        old = torch.cat([agent.log_probs(obs[i:i + 2048], chains[i:i + 2048])
                         for i in range(0, len(obs), 2048)])  # fmt: skip
    params = [p for group in opt.param_groups for p in group["params"]]
    stats: dict[str, list[float]] = {"approx_kl": [], "clipfrac": [], "v_loss": [], "pg_loss": []}
    for _ in range(cfg.update_epochs):
        perm = torch.randperm(len(obs), generator=g)
        for i in range(0, len(obs), cfg.minibatch):
            mb = perm[i:i + cfg.minibatch]
            v_loss = 0.5 * (critic(obs[mb]).squeeze(-1) - ret[mb]).pow(2).mean()
            loss = cfg.vf_coef * v_loss
            if actor_on:
                a = adv[mb]
                a = (a - a.mean()) / (a.std() + 1e-8) if len(a) > 1 else a
                a = a[:, None] * agent.weights
                logratio = agent.log_probs(obs[mb], chains[mb]) - old[mb]
                ratio = logratio.exp()
                clip = agent.clip
                pg = torch.max(-a * ratio, -a * ratio.clamp(1 - clip, 1 + clip)).mean()
                loss = loss + pg
                with torch.no_grad():
                    stats["approx_kl"].append(float(((ratio - 1) - logratio).mean()))
                    stats["clipfrac"].append(float(((ratio - 1).abs() > clip).float().mean()))
                    stats["pg_loss"].append(float(pg))
            stats["v_loss"].append(float(v_loss.detach()))
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            opt.step()
        if actor_on and cfg.target_kl is not None and stats["approx_kl"][-1] > cfg.target_kl:
            break
    return {k: float(np.mean(v)) if v else 0.0 for k, v in stats.items()}


def _seeds(seed: int, iteration: int, n: int) -> tuple[list[int], int]:
    state = np.random.SeedSequence([int(seed), int(iteration)]).generate_state(n + 1)
    return [int(s >> 1) for s in state[:n]], int(state[n])


def ppo_finetune(agent: Any, env_name: str, norms: tuple[Any, Any], out_dir: str | os.PathLike,
                 cfg: PPOConfig, progress: bool = True, stop_after: int | None = None
                 ) -> tuple[nn.Module, list[dict[str, Any]]]:  # fmt: skip
    """Run PPO on ``agent`` (module docstring) for ``cfg.iterations`` iterations, resuming from
    ``out_dir/finetune`` if a checkpoint is there; ``metrics.jsonl`` gets one line per
    iteration (iteration 0 = the rollouts before the first update). ``stop_after`` ends the
    process early after that many iterations (a test's stand-in for a kill). Returns
    ``(critic, metrics)``."""
    from tqdm.auto import tqdm

    from ..io import read_jsonl, write_text_atomic
    from ..train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    critic = mlp(agent.obs_width, 1, cfg.critic_hidden, 3)
    modules = nn.ModuleDict({"actor": agent.actor, "critic": critic})
    opt = torch.optim.Adam([{"params": [p for p in agent.actor.parameters()], "lr": cfg.actor_lr},
                            {"params": list(critic.parameters()), "lr": cfg.critic_lr}])  # fmt: skip
    scaler, start, env_steps = RunningRewardScaler(cfg.n_envs, cfg.gamma), 0, 0
    ckdir, mpath = out / "finetune", out / "metrics.jsonl"
    if latest_checkpoint(ckdir) is not None:
        ck = load_checkpoint(ckdir)
        ck.load_into(model=modules, optimizer=opt)
        scaler.load_state_dict(ck.state["scaler"])
        start, env_steps = ck.state["iteration"] + 1, ck.state["env_steps"]
    rows = [r for r in read_jsonl(mpath) if r["iteration"] < start] if mpath.is_file() else []
    write_text_atomic(mpath, "".join(json.dumps(r) + "\n" for r in rows))
    envs = _vector_env(env_name, cfg.n_envs, agent.to, agent.ta)
    bar = tqdm(range(start, cfg.iterations + 1), desc=f"finetune {env_name}", disable=not progress,
               initial=start, total=cfg.iterations + 1)  # fmt: skip
    for it in bar:
        t0 = time.perf_counter()
        seeds, gseed = _seeds(cfg.seed, it, cfg.n_envs)
        g = torch.Generator().manual_seed(gseed)
        b = rollout(agent, critic, envs, norms, cfg.n_steps, seeds, g)
        env_steps += b["env_steps"]
        row = {"iteration": it, "env_steps": env_steps,
               "return": float(np.mean(b["first_returns"])) if b["first_returns"] else None,
               "returns": b["first_returns"], "episodes": len(b["episodes"]),
               "return_all": float(np.mean(b["episodes"])) if b["episodes"] else None}  # fmt: skip
        if it < cfg.iterations:  # the last iteration only measures
            rewards = b["rewards"]
            if cfg.reward_scale:
                rewards = scaler(rewards, b["done"])
            adv, ret = gae(torch.as_tensor(rewards, dtype=torch.float32), b["values"],
                           b["next_values"], torch.as_tensor(b["terminated"]),
                           torch.as_tensor(b["done"]), cfg.gamma, cfg.gae_lambda)  # fmt: skip
            row.update(_ppo_update(agent, critic, opt, b, adv, ret, cfg, g,
                                   actor_on=it >= cfg.critic_warmup))  # fmt: skip
            save_checkpoint(ckdir, it, model=modules, ema=modules, optimizer=opt, keep=2,
                            state={"iteration": it, "env_steps": env_steps,
                                   "scaler": scaler.state_dict(), "config": asdict(cfg)})  # fmt: skip
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
        with open(mpath, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        bar.set_postfix(ret=f"{row['return'] or float('nan'):.1f}",
                        kl=f"{row.get('approx_kl', 0.0):.1e}")  # fmt: skip
        if stop_after is not None and it + 1 - start >= stop_after:
            break
    envs.close()
    return critic, rows


def _write_dppo_run(out: Path, pre_run: Path, agent: DPPOAgent, info: dict[str, Any],
                    cfg: PPOConfig, rows: list[dict[str, Any]]) -> None:  # fmt: skip
    from ..io import write_json_atomic, write_safetensors

    shutil.copyfile(pre_run / "config.json", out / "config.json")
    state = {k: v.detach().contiguous() for k, v in agent.actor.state_dict().items()}
    for name in ("ema.safetensors", "model.safetensors"):
        write_safetensors(out / name, state)
    write_safetensors(out / "base.safetensors", agent.base.state_dict())
    info = {**info, "sampler": "ddpm", "sampler_steps": agent.K, "dppo": {
        "pretrained": str(pre_run), "ft_steps": agent.steps, "denoising_steps": agent.K,
        "min_std": agent.min_std, "config": asdict(cfg), "iterations": len(rows) - 1,
        "base_weights": "base.safetensors",
        "note": "load_policy samples DDPM with the fine-tuned net at every step; dppo_policy "
                "reproduces the fine-tuning sampler (frozen first steps, std floors)"}}  # fmt: skip
    write_json_atomic(out / "diffusion_policy.json", info, strict=True)


def finetune(run: str | os.PathLike, env: str | None = None, iterations: int = 20,
             out: str | os.PathLike | None = None, seed: int = 0, envs: int = 8,
             progress: bool = True, ft_steps: int = 10, **options: Any) -> dict[str, Any]:
    """PPO fine-tuning of a trained policy run: DPPO for a Diffusion Policy run, Gaussian-PPO
    for a Gaussian policy run (:func:`~diffusio.control.ppo.train_gaussian_policy`). Writes a
    run (default ``RUN-finetuned``) that ``load_policy`` reads, ``metrics.jsonl`` and
    resumable checkpoints. ``options`` go to :class:`PPOConfig`. Returns the summary."""
    from ..io import write_json_atomic, write_safetensors
    from .ppo import GAUSSIAN_FILE, GaussianAgent, load_gaussian_run

    pre = Path(run)
    dest = Path(out) if out is not None else pre.with_name(pre.name + "-finetuned")
    cfg = PPOConfig(iterations=iterations, n_envs=envs, seed=seed, **options)
    if (pre / GAUSSIAN_FILE).is_file():
        net, info = load_gaussian_run(pre)
        agent: Any = GaussianAgent(net.train(), info["obs_horizon"], info["action_horizon"])
    else:
        from .diffusion_policy import load_diffusion_policy_run

        model, info = load_diffusion_policy_run(pre)
        agent = DPPOAgent(model, info, ft_steps)
    env = env or info["env"]
    norms = (LimitsNormalizer(**info["obs_norm"]), LimitsNormalizer(**info["action_norm"]))
    critic, rows = ppo_finetune(agent, env, norms, dest, cfg, progress)
    if isinstance(agent, GaussianAgent):
        write_safetensors(dest / "model.safetensors", agent.actor.state_dict())
        write_json_atomic(dest / GAUSSIAN_FILE, {**info, "ppo": asdict(cfg)}, strict=True)
    else:
        _write_dppo_run(dest, pre, agent, info, cfg, rows)
    write_safetensors(dest / "critic.safetensors", critic.state_dict())
    returns = [r["return"] for r in rows if r["return"] is not None]
    return {"run": str(dest), "env": env, "iterations": len(rows) - 1,
            "env_steps": rows[-1]["env_steps"] if rows else 0,
            "return_start": returns[0] if returns else None,
            "return_end": returns[-1] if returns else None}  # fmt: skip


class AgentPolicy(RecedingHorizon):
    """A PPO agent's sampler (:class:`DPPOAgent` or the Gaussian one) as a receding-horizon
    controller: what the fine-tuning rollouts execute, for :func:`~diffusio.control.policies.
    evaluate`."""

    def __init__(self, agent: Any, info: dict[str, Any]) -> None:
        self.agent = agent
        self._setup(info)

    @torch.no_grad()
    def plan(self, obs_windows: Any) -> np.ndarray:
        obs = self._condition(obs_windows)
        return self.action_norm.inverse(self.agent.sample(obs, self.generator)[0].double().numpy())


def dppo_policy(run_dir: str | os.PathLike) -> AgentPolicy:
    """The fine-tuning-time controller of a DPPO run: the chain with the frozen first K - K'
    steps (``base.safetensors``), the fine-tuned rest and the std floors."""
    from ..io import read_safetensors
    from .diffusion_policy import load_diffusion_policy_run

    model, info = load_diffusion_policy_run(run_dir)
    agent = DPPOAgent(model, info, info["dppo"]["ft_steps"])
    agent.base.load_state_dict(read_safetensors(Path(run_dir) / "base.safetensors")[0])
    return AgentPolicy(agent, info)
