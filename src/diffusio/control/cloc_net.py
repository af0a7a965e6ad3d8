"""Diffuse-CLoC's network and training (Huang et al. 2025, arXiv:2503.11801, Sec. 4): a small
decoder-only transformer over separate state and action tokens with per-token noise levels,
x0 prediction, and its attention mask; Diffuser's temporal U-Net as the joint baseline.

Token order (``C`` context states, horizon ``H``): ``s_{-C+1} .. s_0`` (clean, observed), then
``a_0, s_1, a_1, s_2, ..., a_{H-1}, s_H`` -- the paper's ``[a_t, s_{t+1}, ..., a_{t+H-1},
s_{t+H}]`` conditioned on the observation history. The mask (:func:`attention_mask`, ``"cloc"``):
a state token attends to **every state token** (past and future: planning), never to actions;
an action token ``a_j`` attends to the states ``s_i, i <= j`` and the actions ``a_i, i <= j``
(causal: it reads the current state, whose representation already carries the whole plan,
but no future token). ``"full"`` (the ablation): every token attends to every token.

A discrete cosine schedule of ``K`` levels (:class:`Schedule`); every token has its own level
(0 = clean). Training (:func:`train_net`) mixes three patterns per window, a third each:
independent uniform levels for every state and every action token (the paper's independent
state / action noise), the rolling staircase of inference, and one level for all tokens.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..io import atomic_path
from ..nets.embeddings import SinusoidalEmbedding

__all__ = ["MASKS", "CLoCNet", "NetConfig", "Schedule", "UNetDenoiser", "attention_mask",
           "build_net", "token_layout", "train_levels", "train_net"]  # fmt: skip

MASKS = ("cloc", "full")


class Schedule:
    """The discrete table of the project's ``vp-cosine`` process with K steps (improved DDPM's
    cosine ``alpha_bar``, Nichol & Dhariwal 2021) as levels ``0..K`` (``alpha_bar_0 = 1``),
    and the posterior ``q(x_{k-1} | x_k, x_0) = N(c0_k x_0 + ct_k x_k, var_k)`` (Ho et al.
    2020, eq. 7) indexed by level."""

    def __init__(self, levels: int):
        from ..core.processes import make_process

        if levels < 1:
            raise ValueError(f"the schedule needs at least 1 level, got {levels}")
        self.K = int(levels)
        table = make_process("vp-cosine", num_steps=self.K).discrete()
        beta = table.betas.numpy()
        ab = np.concatenate([[1.0], table.alphas_cumprod.numpy()])
        self.alpha_bar = torch.tensor(ab, dtype=torch.float32)
        prev, cur = ab[:-1], ab[1:]
        c0 = np.sqrt(prev) * beta / (1 - cur)
        ct = np.sqrt(1 - beta) * (1 - prev) / (1 - cur)
        var = beta * (1 - prev) / (1 - cur)
        pad = lambda v: torch.tensor(np.concatenate([[0.0], v]), dtype=torch.float32)  # noqa: E731
        self.c0, self.ct, self.var = pad(c0), pad(ct), pad(var)  # index k: the step k -> k-1
        self.c0[0], self.ct[0] = 1.0, 0.0  # level 0 stays where it is (x_0 replaced by itself)

    def noise(self, x0: Tensor, levels: Tensor, eps: Tensor) -> Tensor:
        """``x_k = sqrt(ab_k) x0 + sqrt(1 - ab_k) eps`` per token (levels of x0's leading dims)."""
        ab = self.alpha_bar[levels][..., None]
        return ab.sqrt() * x0 + (1 - ab).sqrt() * eps


def token_layout(context: int, horizon: int, actions: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``(kind, time)`` of every token in order: kind 0 = state, 1 = action; states
    ``s_{-C+1}..s_0`` then ``a_0, s_1, ..., a_{H-1}, s_H`` (no actions: ``s_1..s_H``)."""
    kind = [0] * context
    time = list(range(-context + 1, 1))
    for j in range(horizon):
        if actions:
            kind.append(1)
            time.append(j)
        kind.append(0)
        time.append(j + 1)
    return np.array(kind), np.array(time)


def attention_mask(context: int, horizon: int, kind: str = "cloc", actions: bool = True) -> Tensor:
    """``allowed[q, k]``: whether token ``q`` attends to token ``k`` (see the module docstring)."""
    if kind not in MASKS:
        raise ValueError(f"unknown attention mask {kind!r}; valid: {', '.join(MASKS)}")
    kinds, times = (torch.as_tensor(v) for v in token_layout(context, horizon, actions))
    if kind == "full":
        return torch.ones(len(kinds), len(kinds), dtype=torch.bool)
    qs, ks = kinds[:, None], kinds[None, :]
    state_q = (qs == 0) & (ks == 0)
    action_q = (qs == 1) & (times[None, :] <= times[:, None])
    return state_q | action_q


@dataclass(frozen=True)
class NetConfig:
    """One denoiser and its training (every field enters the cache key)."""

    net: str = "transformer"  # or "unet" (Diffuser-style: [a_k, s_k] frames, one level)
    mask: str = "cloc"
    actions: bool = True  # False: the state-only (kinematic) planner
    context: int = 1
    horizon: int = 16
    levels: int = 32
    state_dim: int = 4
    action_dim: int = 2
    d_model: int = 64
    n_layers: int = 3
    n_heads: int = 4
    steps: int = 3000
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0
    data: str = ""  # the training data's tag


class CLoCNet(nn.Module):
    """The state-action transformer: ``net(xs, xa, ls, la) -> (x0_states, x0_actions)`` with
    states (N, C + H, Ds), actions (N, H, Da) and their integer levels (N, C + H), (N, H)."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.cfg, d = cfg, cfg.d_model
        kind, _ = token_layout(cfg.context, cfg.horizon, cfg.actions)
        self.register_buffer("is_action", torch.as_tensor(kind == 1), persistent=False)
        self.register_buffer("blocked", ~attention_mask(cfg.context, cfg.horizon, cfg.mask,
                                                        cfg.actions), persistent=False)  # fmt: skip
        self.s_in, self.s_out = nn.Linear(cfg.state_dim, d), nn.Linear(d, cfg.state_dim)
        if cfg.actions:
            self.a_in, self.a_out = nn.Linear(cfg.action_dim, d), nn.Linear(d, cfg.action_dim)
        self.pos = nn.Parameter(torch.randn(len(kind), d) * 0.02)
        self.level = nn.Sequential(
            SinusoidalEmbedding(d), nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d)
        )
        layer = nn.TransformerEncoderLayer(d, cfg.n_heads, 4 * d, dropout=0.0, batch_first=True,
                                           norm_first=True)  # fmt: skip
        self.body = nn.TransformerEncoder(layer, cfg.n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)

    def forward(
        self, xs: Tensor, xa: Tensor | None, ls: Tensor, la: Tensor | None
    ) -> tuple[Tensor, Tensor | None]:
        n, c, a = xs.shape[0], self.cfg.context, self.cfg.actions
        tok = xs.new_zeros(n, len(self.is_action), self.cfg.d_model)
        lev = ls.new_zeros(n, len(self.is_action))
        tok[:, ~self.is_action] = self.s_in(xs)
        lev[:, ~self.is_action] = ls
        if a:
            tok[:, self.is_action] = self.a_in(xa)
            lev[:, self.is_action] = la
        emb = self.level((lev.float() / self.cfg.levels).reshape(-1)).reshape(tok.shape)
        h = self.norm(self.body(tok + emb + self.pos, mask=self.blocked))
        x0s = self.s_out(h[:, ~self.is_action])
        x0s = torch.cat([xs[:, :c], x0s[:, c:]], 1)  # the context is given
        return x0s, (self.a_out(h[:, self.is_action]) if a else None)


class UNetDenoiser(nn.Module):
    """Diffuser's representation (Janner et al. 2022): frames ``[a_k, s_k]``, k = 0..H-1,
    through the temporal U-Net at one level per trajectory; ``s_0`` is given (Diffuser's
    known start). ``s_H`` is not modelled (returned as it came in)."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        from ..nets.temporal import TemporalUNet

        if cfg.context != 1 or not cfg.actions:
            raise ValueError("the Diffuser-style U-Net needs context=1 and actions=True")
        self.cfg = cfg
        self.unet = TemporalUNet(cfg.state_dim + cfg.action_dim, dim=cfg.d_model // 2,
                                 dim_mults=(1, 2, 4))  # fmt: skip

    def forward(self, xs: Tensor, xa: Tensor, ls: Tensor, la: Tensor) -> tuple[Tensor, Tensor]:
        h, da = self.cfg.horizon, self.cfg.action_dim
        x = torch.cat([xa, xs[:, :h]], -1)
        out = self.unet(x, la[:, 0].float() / self.cfg.levels)
        x0s = torch.cat([xs[:, :1], out[:, 1:, da:], xs[:, h:]], 1)
        return x0s, out[..., :da]


def build_net(cfg: NetConfig) -> nn.Module:
    if cfg.net not in ("transformer", "unet"):
        raise ValueError(f"unknown net {cfg.net!r}; valid: transformer, unet")
    torch.manual_seed(cfg.seed)
    return CLoCNet(cfg) if cfg.net == "transformer" else UNetDenoiser(cfg)


def train_levels(
    cfg: NetConfig, n: int, gen: torch.Generator, steps_per_frame: int = 2
) -> tuple[Tensor, Tensor]:
    """Training levels ``(ls (n, C + H), la (n, H))`` (see the module docstring); the U-Net
    gets one level per row. Frame k (``a_k``, ``s_{k+1}``) of the staircase is at ``k m + u``,
    u uniform in 1..m, clipped to K."""
    c, h, k = cfg.context, cfg.horizon, cfg.levels
    one = torch.randint(1, k + 1, (n, 1), generator=gen)
    if cfg.net == "unet":
        return torch.cat([torch.zeros(n, c, dtype=torch.long), one.expand(n, h)], 1), one.expand(
            n, h
        )
    mode = torch.randint(0, 3, (n, 1), generator=gen)
    ind_s = torch.randint(1, k + 1, (n, h), generator=gen)
    ind_a = torch.randint(1, k + 1, (n, h), generator=gen)
    u = torch.randint(1, steps_per_frame + 1, (n, 1), generator=gen)
    stair = (torch.arange(h)[None] * steps_per_frame + u).clamp(max=k)
    fut_s = torch.where(mode == 0, ind_s, torch.where(mode == 1, stair, one.expand(n, h)))
    fut_a = torch.where(mode == 0, ind_a, torch.where(mode == 1, stair, one.expand(n, h)))
    return torch.cat([torch.zeros(n, c, dtype=torch.long), fut_s], 1), fut_a


def train_net(cfg: NetConfig, states: np.ndarray, actions: np.ndarray, out_dir: str | Path,
              steps_per_frame: int = 2, log: Any = None) -> nn.Module:  # fmt: skip
    """Train ``cfg`` on normalised windows (states (W, C + H, Ds), actions (W, H, Da)) with the
    x0 loss on every noised token, AdamW and an EMA (0.995); checkpoints in ``out_dir`` every
    500 steps so an interrupted run resumes. Returns the EMA net in eval mode."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "checkpoint.pt"
    net = build_net(cfg)
    ema = build_net(cfg)
    ema.load_state_dict(net.state_dict())
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(cfg.seed)
    step = 0
    if ckpt.is_file():
        state = torch.load(ckpt, weights_only=True)  # tensors, numbers and the config: no pickle
        if state["config"] != asdict(cfg):
            raise ValueError(f"{ckpt} holds another config; delete it to retrain")
        net.load_state_dict(state["net"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        gen.set_state(state["gen"])
        step = state["step"]
    sched = Schedule(cfg.levels)
    xs_all, xa_all = (
        torch.as_tensor(states, dtype=torch.float32),
        torch.as_tensor(actions, dtype=torch.float32),
    )

    def lr_at(i: int) -> float:  # 200 warm-up steps, then cosine decay
        return cfg.lr * min(1.0, (i + 1) / 200) * 0.5 * (1 + math.cos(math.pi * i / cfg.steps))

    net.train()
    while step < cfg.steps:
        idx = torch.randint(0, len(xs_all), (cfg.batch_size,), generator=gen)
        xs, xa = xs_all[idx], xa_all[idx]
        ls, la = train_levels(cfg, cfg.batch_size, gen, steps_per_frame)
        ns = sched.noise(xs, ls, torch.randn(xs.shape, generator=gen))
        na = sched.noise(xa, la, torch.randn(xa.shape, generator=gen))
        p_s, p_a = net(ns, na if cfg.actions else None, ls, la if cfg.actions else None)
        w_s = (ls > 0).float()[..., None]
        loss = ((p_s - xs) ** 2 * w_s).sum() / (w_s.sum() * xs.shape[-1])
        if cfg.actions:
            loss = loss + ((p_a - xa) ** 2).mean()
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), net.parameters(), strict=True):
                pe.lerp_(p, 0.005)
        step += 1
        if log is not None and step % 500 == 0:
            log(
                f"{cfg.net}/{cfg.mask}/{'sa' if cfg.actions else 's'} step {step}: loss {loss.item():.4f}"
            )
        if step % 500 == 0 or step == cfg.steps:
            with atomic_path(ckpt) as tmp:  # a killed run keeps the previous checkpoint
                torch.save({"config": asdict(cfg), "net": net.state_dict(), "ema": ema.state_dict(),
                            "opt": opt.state_dict(), "gen": gen.get_state(), "step": step,
                            "loss": loss.item()}, tmp)  # fmt: skip
    return ema.eval()
