"""Action-chunk backbones for policies: Diffusion Policy's FiLM-conditioned 1-D U-Net and a
small diffusion MLP for low-dimensional actions.

``FiLMUNet1D(action_dim, obs_dim)(x, t, obs=o)`` maps action chunks x (N, Tp, A) (prediction
horizon Tp, action dim A), times t (N,) in [0, 1] and a flat observation condition o
(N, obs_dim) -- the To observations of the window, concatenated -- to a tensor of x's shape.
After Chi et al. 2023 (*Diffusion Policy*, Sec. 3.2 and Fig. 3; the official
``diffusion_policy/model/diffusion/conditional_unet1d.py``), channels first (N, A, Tp)::

    c = concat(Linear(Mish(Linear(sinusoidal(1000 t)))), obs)    width step_dim + obs_dim
    ResBlock(h) = Conv1dBlock(scale(c) * Conv1dBlock(h) + bias(c)) + residual(h)   (FiLM)
    down, level i:  ResBlock(w_{i-1} -> w_i), ResBlock(w_i), kept as skip i, then
                    Conv1d(stride 2) unless i is the last level
    middle:         ResBlock(w_L), ResBlock(w_L)
    up, level i = L-1..1: ResBlock(concat(h, skip i) -> w_{i-1}), ResBlock, ConvTranspose1d(x2)
    out = Conv1d(Conv1dBlock(w_0)(h), A, 1)

with ``Conv1dBlock = Mish(GroupNorm(8, Conv1d(kernel 5)))`` (Diffuser's block,
:class:`~diffusio.nets.temporal.TemporalUNet`), ``(scale, bias) = Linear(Mish(c))`` per
channel (Perez et al. 2018, *FiLM*) and widths ``down_dims`` (official [256, 512, 1024]). As
in the official code the full-resolution skip is not used; Tp must be a multiple of
``2 ** (len(down_dims) - 1)``.

``FiLMMLP(action_dim, obs_dim, horizon)`` is the MLP denoiser of DPPO (Ren et al. 2025,
``model/diffusion/mlp_diffusion.py``): ``[flattened chunk, sinusoidal time features through an
MLP, obs]`` through residual Mish layers, for low-dimensional actions (LunarLander, point2d).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .embeddings import SinusoidalEmbedding
from .temporal import _Conv1dBlock

__all__ = ["FiLMMLP", "FiLMUNet1D"]


def _step_encoder(dim: int) -> nn.Sequential:
    """Diffusion Policy's ``diffusion_step_encoder``: sinusoidal features, Linear, Mish, Linear."""
    return nn.Sequential(SinusoidalEmbedding(dim), nn.Linear(dim, 4 * dim), nn.Mish(),
                         nn.Linear(4 * dim, dim))  # fmt: skip


def _check_obs(obs: Any, x: Tensor, width: int, name: str) -> Tensor:
    if obs is None:
        raise ValueError(f"{name} needs the observation condition obs=(N, {width})")
    obs = torch.as_tensor(obs, dtype=x.dtype, device=x.device)
    if obs.shape != (x.shape[0], width):
        raise ValueError(f"{name}: obs must have shape ({x.shape[0]}, {width}), got "
                         f"{tuple(obs.shape)}")  # fmt: skip
    return obs


class _FiLMBlock(nn.Module):
    """``ConditionalResidualBlock1D``: two conv blocks, per-channel FiLM of the first."""

    def __init__(self, in_ch: int, out_ch: int, cond_dim: int, kernel_size: int, groups: int):
        super().__init__()
        self.block1 = _Conv1dBlock(in_ch, out_ch, kernel_size, groups)
        self.block2 = _Conv1dBlock(out_ch, out_ch, kernel_size, groups)
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * out_ch))
        self.residual = nn.Conv1d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        scale, bias = self.film(c)[:, :, None].chunk(2, dim=1)
        return self.block2(scale * self.block1(x) + bias) + self.residual(x)


class FiLMUNet1D(nn.Module):
    """Diffusion Policy's conditional 1-D U-Net ``net(x, t, obs=...)`` (module docstring).

    Args:
        action_dim: A, the width of one action.
        obs_dim: the flat observation condition's width (To x observation width).
        down_dims: the level widths (official 256, 512, 1024).
        step_dim: the diffusion-step embedding width (official 256).
        kernel_size: conv kernel (5), groups: GroupNorm groups (8).
    """

    def __init__(self, action_dim: int, obs_dim: int, down_dims: Sequence[int] = (256, 512, 1024),
                 step_dim: int = 256, kernel_size: int = 5, groups: int = 8):  # fmt: skip
        super().__init__()
        if int(action_dim) < 1 or int(obs_dim) < 0 or not down_dims:
            raise ValueError("FiLMUNet1D needs action_dim >= 1, obs_dim >= 0 and some down_dims")
        self.action_dim, self.obs_dim = int(action_dim), int(obs_dim)
        self.down_dims = tuple(int(w) for w in down_dims)
        self.step = _step_encoder(int(step_dim))
        c, k, g = int(step_dim) + self.obs_dim, int(kernel_size), int(groups)
        widths = (self.action_dim, *self.down_dims)
        self.down = nn.ModuleList()
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            last = i == len(self.down_dims) - 1
            self.down.append(nn.ModuleList([
                _FiLMBlock(a, b, c, k, g), _FiLMBlock(b, b, c, k, g),
                nn.Identity() if last else nn.Conv1d(b, b, 3, stride=2, padding=1)]))  # fmt: skip
        mid = self.down_dims[-1]
        self.mid = nn.ModuleList([_FiLMBlock(mid, mid, c, k, g), _FiLMBlock(mid, mid, c, k, g)])
        self.up = nn.ModuleList()
        for a, b in reversed(list(zip(self.down_dims[:-1], self.down_dims[1:], strict=True))):
            self.up.append(nn.ModuleList([
                _FiLMBlock(2 * b, a, c, k, g), _FiLMBlock(a, a, c, k, g),
                nn.ConvTranspose1d(a, a, 4, stride=2, padding=1)]))  # fmt: skip
        first = self.down_dims[0]
        self.out = nn.Sequential(_Conv1dBlock(first, first, k, g), nn.Conv1d(first, action_dim, 1))
        self.horizon_multiple = 2 ** (len(self.down_dims) - 1)

    def forward(self, x: Tensor, t: Tensor, obs: Tensor | None = None) -> Tensor:
        if x.dim() != 3 or x.shape[-1] != self.action_dim:
            raise ValueError(f"FiLMUNet1D: x must be (N, Tp, {self.action_dim}), got "
                             f"{tuple(x.shape)}")  # fmt: skip
        if x.shape[1] % self.horizon_multiple:
            raise ValueError(f"FiLMUNet1D: the horizon Tp = {x.shape[1]} must be a multiple of "
                             f"{self.horizon_multiple} for {len(self.down_dims)} levels")  # fmt: skip
        c = torch.cat([self.step(t.reshape(-1)), _check_obs(obs, x, self.obs_dim, "FiLMUNet1D")], 1)
        h, skips = x.transpose(1, 2), []
        for block1, block2, down in self.down:
            h = block2(block1(h, c), c)
            skips.append(h)
            h = down(h)
        for block in self.mid:
            h = block(h, c)
        for block1, block2, up in self.up:
            h = up(block2(block1(torch.cat([h, skips.pop()], dim=1), c), c))
        return self.out(h).transpose(1, 2)


class FiLMMLP(nn.Module):
    """DPPO's diffusion MLP ``net(x, t, obs=...)`` for chunks x (N, Tp, A): the flattened chunk,
    the time embedding (``step_dim``) and obs concatenated, then ``depth`` residual blocks of
    ``Mish(Linear)`` at width ``hidden`` and a linear head (module docstring)."""

    def __init__(self, action_dim: int, obs_dim: int, horizon: int, hidden: int = 256,
                 depth: int = 3, step_dim: int = 16):  # fmt: skip
        super().__init__()
        if min(int(action_dim), int(horizon), int(hidden), int(depth)) < 1 or int(obs_dim) < 0:
            raise ValueError("FiLMMLP needs positive action_dim, horizon, hidden, depth")
        self.action_dim, self.obs_dim, self.horizon = int(action_dim), int(obs_dim), int(horizon)
        self.step = _step_encoder(int(step_dim))
        width = self.action_dim * self.horizon
        self.inp = nn.Linear(width + int(step_dim) + self.obs_dim, hidden)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Mish(), nn.Linear(hidden, hidden)) for _ in range(int(depth))
        )
        self.head = nn.Sequential(nn.Mish(), nn.Linear(hidden, width))

    def forward(self, x: Tensor, t: Tensor, obs: Tensor | None = None) -> Tensor:
        shape = (self.horizon, self.action_dim)
        if x.dim() != 3 or tuple(x.shape[1:]) != shape:
            raise ValueError(f"FiLMMLP: x must be (N, {shape[0]}, {shape[1]}), got "
                             f"{tuple(x.shape)}")  # fmt: skip
        obs = _check_obs(obs, x, self.obs_dim, "FiLMMLP")
        h = self.inp(torch.cat([x.flatten(1), self.step(t.reshape(-1)), obs], dim=1))
        for block in self.blocks:
            h = h + block(h)
        return self.head(h).view_as(x)
