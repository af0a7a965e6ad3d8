"""The non-diffusion policies Diffusion Policy is compared with (Chi et al. 2023, Sec. 5,
Table 1), on the same observation windows and action chunks (:func:`~diffusio.control.
diffusion_policy.policy_windows`) and run by the same receding-horizon executor
(:class:`~diffusio.control.diffusion_policy.RecedingHorizon`):

* ``mse`` -- behaviour cloning by regression: an MLP maps the To observations to the Tp x A
  chunk, trained with the squared error. With ``To = Tp = Ta = 1`` it is single-step BC
  (Pomerleau 1989); with DP's horizons it is chunked BC. It predicts the conditional *mean*,
  so on bimodal demonstrations it averages the modes.
* ``gmm`` -- a mixture density network (Bishop 1994), the output head of the LSTM-GMM
  baseline of Mandlekar et al. 2021 (robomimic; without the LSTM): ``K`` diagonal Gaussians
  over the flattened chunk, their logits, means and log-stds from the MLP, trained by
  negative log-likelihood; acting samples a component, then the Gaussian.

Inputs and targets are scaled to [-1, 1] by the data limits (as Diffusion Policy's), hidden
layers 256 x 3 with Mish, AdamW 1e-3, an EMA of the weights (the trainer's
:class:`~diffusio.train.trainer.EMA`) that the policy runs. A run directory holds
``chunk_baseline.json`` (written last: a complete run), ``model.safetensors``,
``ema.safetensors`` and ``metrics.jsonl``; :func:`~diffusio.control.policies.load_policy`
reads it.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .diffusion_policy import RecedingHorizon, _check_horizons, chunk_training_data

__all__ = ["CB_FILE", "KINDS", "ChunkBaselinePolicy", "ChunkMLP", "chunk_baseline_policy",
           "gmm_nll", "train_chunk_baseline"]  # fmt: skip

CB_FORMAT, CB_VERSION, CB_FILE = "diffusio-chunk-baseline", 1, "chunk_baseline.json"
KINDS = {"mse": "MSE behaviour cloning of the chunk", "gmm": "Gaussian-mixture density policy"}
LOG_STD_RANGE = (-7.0, 2.0)


class ChunkMLP(nn.Module):
    """Observation window (N, To x O) -> ``mse``: chunk (N, Tp x A); ``gmm``: (N, K (1 + 2 D))
    = logits, means, log-stds of K components over the D = Tp x A chunk."""

    def __init__(self, in_dim: int, out_dim: int, kind: str = "mse", components: int = 5,
                 hidden: int = 256, depth: int = 3) -> None:  # fmt: skip
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"unknown baseline kind {kind!r}; valid: {', '.join(KINDS)}")
        self.kind, self.out_dim, self.components = kind, int(out_dim), int(components)
        width = self.out_dim if kind == "mse" else self.components * (1 + 2 * self.out_dim)
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [nn.Linear(in_dim if i == 0 else hidden, hidden), nn.Mish()]
        self.net = nn.Sequential(*layers, nn.Linear(hidden, width))

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(obs)

    def mixture(self, obs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(logits (N, K), means (N, K, D), log-stds (N, K, D))`` of the ``gmm`` head."""
        out, k, d = self.net(obs), self.components, self.out_dim
        logits, rest = out[:, :k], out[:, k:].view(-1, k, 2 * d)
        return logits, rest[..., :d], rest[..., d:].clamp(*LOG_STD_RANGE)


def gmm_nll(logits: Tensor, means: Tensor, log_stds: Tensor, target: Tensor) -> Tensor:
    """Mean negative log-likelihood of ``target`` (N, D) under the diagonal mixture:
    ``-log sum_k pi_k N(target; mu_k, diag(sigma_k^2))``."""
    z = (target[:, None, :] - means) / log_stds.exp()
    log_n = (-0.5 * z**2 - log_stds - 0.5 * math.log(2 * math.pi)).sum(-1)
    return -torch.logsumexp(torch.log_softmax(logits, -1) + log_n, dim=-1).mean()


def train_chunk_baseline(
    dataset: Any, out_dir: str | os.PathLike, kind: str = "mse", *, obs_horizon: int = 2,
    pred_horizon: int = 16, action_horizon: int = 8, steps: int = 3000, batch_size: int = 256,
    lr: float = 1e-3, components: int = 5, hidden: int = 256, depth: int = 3,
    ema_decay: float = 0.999, seed: int = 0, env: str | None = None, progress: bool = True,
    log_every: int = 100,
) -> Path:  # fmt: skip
    """Train a baseline of :data:`KINDS` into ``out_dir`` (a complete run with the same recipe
    is reused; another recipe there is an error) and return the run directory."""
    from tqdm.auto import tqdm

    from ..io import read_json, write_json_atomic, write_safetensors
    from ..train.trainer import EMA
    from .baselines import _load

    _check_horizons(obs_horizon, pred_horizon, action_horizon)
    if kind not in KINDS:
        raise ValueError(f"unknown baseline kind {kind!r}; valid: {', '.join(KINDS)}")
    ds = _load(dataset, progress)
    recipe = {"kind": kind, "obs_horizon": obs_horizon, "pred_horizon": pred_horizon,
              "action_horizon": action_horizon, "steps": steps, "batch_size": batch_size,
              "lr": lr, "components": components, "hidden": hidden, "depth": depth,
              "ema_decay": ema_decay, "seed": seed, "dataset": str(ds.path)}  # fmt: skip
    out = Path(out_dir)
    if (out / CB_FILE).is_file():
        if read_json(out / CB_FILE).get("recipe") == recipe:
            return out
        raise FileExistsError(f"{out} holds a baseline run of another recipe; use another directory")
    data = chunk_training_data(ds, obs_horizon, pred_horizon, action_horizon, env, progress)
    x, y = data.cond, data.chunks.flatten(1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = ChunkMLP(x.shape[1], y.shape[1], kind, components, hidden, depth)
    ema, optimizer = EMA(net, ema_decay), torch.optim.AdamW(net.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed + 1)
    out.mkdir(parents=True, exist_ok=True)
    start, total, count, last = time.perf_counter(), 0.0, 0, math.nan
    with open(out / "metrics.jsonl", "w", encoding="utf-8") as log, tqdm(
        total=steps, desc=f"{kind} baseline", disable=not progress, dynamic_ncols=True
    ) as bar:  # fmt: skip
        for step in range(1, steps + 1):
            idx = torch.randint(len(x), (batch_size,), generator=generator)
            if kind == "mse":
                loss = torch.mean((net(x[idx]) - y[idx]) ** 2)
            else:
                loss = gmm_nll(*net.mixture(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            ema.update(net)
            total, count = total + float(loss.detach()), count + 1
            bar.update(1)
            if step % log_every == 0 or step == steps:
                last, total, count = total / count, 0.0, 0
                if not math.isfinite(last):
                    raise FloatingPointError(f"the {kind} loss became {last} at step {step}")
                log.write(json.dumps({"kind": "train", "step": step, "loss": last,
                                      "time": time.perf_counter() - start}) + "\n")  # fmt: skip
                bar.set_postfix(loss=f"{last:.4f}")
    meta = {"diffusio_step": str(steps)}
    write_safetensors(out / "model.safetensors", net.state_dict(), meta)
    write_safetensors(out / "ema.safetensors", ema.state_dict(), meta)
    info = {
        "format": CB_FORMAT, "version": CB_VERSION, "env": data.env, "recipe": recipe,
        "obs_horizon": obs_horizon, "pred_horizon": pred_horizon, "action_horizon": action_horizon,
        "obs_dim": data.obs_dim, "action_dim": data.action_dim,
        "obs_norm": data.obs_norm.state_dict(), "action_norm": data.action_norm.state_dict(),
        "final_loss": last, "seconds": round(time.perf_counter() - start, 3),
    }  # fmt: skip
    write_json_atomic(out / CB_FILE, info, strict=True)
    return out


class ChunkBaselinePolicy(RecedingHorizon):
    """A baseline of :func:`train_chunk_baseline` under receding horizon: ``mse`` plans the
    regressed chunk, ``gmm`` samples one (a component by its weight, then its Gaussian) from
    the policy's generator. ``action_horizon`` overrides the run's Ta."""

    def __init__(self, net: ChunkMLP, info: dict[str, Any], action_horizon: int | None = None):
        self.net = net.eval()
        self._setup(info, action_horizon)

    @torch.no_grad()
    def plan(self, obs_windows: Any) -> np.ndarray:
        x = self._condition(obs_windows)
        if self.net.kind == "mse":
            y = self.net(x)
        else:
            logits, means, log_stds = self.net.mixture(x)
            k = torch.multinomial(logits.softmax(-1), 1, generator=self.generator)[:, 0]
            rows = torch.arange(len(x))
            noise = torch.randn(means[rows, k].shape, generator=self.generator)
            y = means[rows, k] + log_stds[rows, k].exp() * noise
        y = y.clamp(-1, 1).double().numpy().reshape(len(x), self.pred_horizon, -1)
        return self.action_norm.inverse(y)


def chunk_baseline_policy(run_dir: str | os.PathLike, weights: str = "ema",
                          action_horizon: int | None = None) -> ChunkBaselinePolicy:  # fmt: skip
    """The :class:`ChunkBaselinePolicy` of a run (``weights``: ``"ema"`` or ``"model"``)."""
    from ..io import apply_tensors, read_run_description, read_safetensors

    run = Path(run_dir)
    if weights not in ("ema", "model"):
        raise ValueError(f"weights must be 'ema' or 'model', got {weights!r}")
    info = read_run_description(run, CB_FILE, CB_FORMAT, "chunk-baseline")
    rec = info["recipe"]
    net = ChunkMLP(info["obs_horizon"] * info["obs_dim"], info["pred_horizon"] * info["action_dim"],
                   rec["kind"], rec["components"], rec["hidden"], rec["depth"])  # fmt: skip
    path = run / f"{weights}.safetensors"
    tensors, _ = read_safetensors(path)
    apply_tensors(net, tensors, path)
    return ChunkBaselinePolicy(net, info, action_horizon)
