"""CL-DiffPhyCon (Wei, Feng et al. 2025, "CL-DiffPhyCon: Closed-loop Diffusion Control of Complex
Physical Systems", ICLR 2025, arXiv:2408.03124) on the 1-D Burgers task: closed-loop control by
an asynchronous denoising schedule over a window of physical steps.

* **Frames.** A window holds H = 10 frames (the env's episode); frame j at env step k is
  ``[u_{k+j}; f_{k+j}] / 10`` (the state at the start of interval k + j and its control, each
  128 cells: (N, H, 2, 128)). The reference trajectory conditions the model: ``cond["ref"]``
  (N, H, 128) holds u_ref at the end of each frame's interval. Frame 0's state is the observed
  one, a known entry (``cond["known"]``, NaN where unknown, written into the net's input and
  inpainted after every step, as :mod:`~diffusio.physics.diffphycon` does with u(0)); frames
  past the episode's end are known zeros (padding, outside the loss).
* **Levels.** With K denoising steps and m = K / H, level l in {0..K} (0 = clean) sits at time
  ``l / K`` of the process. The asynchronous schedule (the paper's Sec. 3, Fig. 1) keeps frame j
  at level (j + 1) m at the start of a physical step; one physical step runs m evaluations that
  take frame j to level j m, so frame 0 comes out clean, its control is executed, the window
  shifts by one, the observed state replaces frame 0's (closed loop) and a pure-noise frame
  (level K) is appended: K / H network evaluations per physical step.
* **One network, two schedules.** The paper trains a synchronous model (all frames at one
  level; it initialises the staircase) and an asynchronous one (frame j at t + j K / H). Here
  one :class:`CLModel` is trained on both (each row draws one of the two with probability 1/2),
  so the synchronous baselines and the closed loop share the network.
* **Initialisation** (the official ``anti_diagonal``): a synchronous chain from pure noise;
  frame j is taken from the chain's state at level (j + 1) m (K - m evaluations), then the first
  physical step's m evaluations.
* **Baselines**: replanning every h steps from pure noise with the synchronous schedule (K
  evaluations every h steps; h = H is open-loop DiffPhyCon: one plan for the episode, no
  feedback).

Each evaluation is the DDPM/DDIM posterior step (:func:`denoise_step`, equal to
:func:`diffusio.core.samplers.reverse_step` with per-frame times wherever no frame reaches
level 0; a frame reaching level 0 takes x0_hat). Tracking error: the paper's metric, the mean
over physical steps of the MSE between the controlled state and the reference state.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..core.model import DiffusionModel
from ..core.processes import broadcast_like, make_process
from ..nets.embeddings import SinusoidalEmbedding, write_known
from .burgers import N_CELLS, N_INTERVALS, NU, simulate
from .diffphycon import RESCALER

__all__ = [
    "HORIZON", "CLModel", "FrameNet", "WindowController", "denoise_step", "episode_plans",
    "level_times",
    "make_windows", "pack_trajectories", "reference", "run_episodes", "staircase_levels",
    "steps_per_physical_step", "sync_chain", "train_cl_model",
]  # fmt: skip

HORIZON = N_INTERVALS  #: frames in a window: the env's episode of 10 control intervals


# ---------------------------------------------------------------------------------- schedule
def _check_grid(K: int, H: int) -> int:
    if H < 1 or K < H or K % H:
        raise ValueError(f"K = {K} denoising steps must be a positive multiple of H = {H}")
    return K // H


def steps_per_physical_step(K: int, H: int, h: int | None = None) -> float:
    """Network evaluations per physical step: K / H asynchronously (``h`` None), K / h when
    replanning from noise every h steps."""
    m = _check_grid(K, H)
    return float(m) if h is None else K / h


def staircase_levels(K: int, H: int, i: int = 0) -> Tensor:
    """(H,) int64 levels of the frames before evaluation i (0 <= i <= m) of a physical step:
    (j + 1) m - i; i = m is the end of the step (frame j at j m, frame 0 clean)."""
    m = _check_grid(K, H)
    if not 0 <= i <= m:
        raise ValueError(f"evaluation index must be in [0, {m}], got {i}")
    return (torch.arange(1, H + 1) * m - i).to(torch.int64)


def level_times(levels: Tensor, K: int, process: Any) -> Tensor:
    """Process times of levels l >= 1 (``l / K``, clamped into the process's range), float64."""
    lo, hi = process.t_min, process.t_max
    return (levels.to(torch.float64) / K).clamp(lo, hi)


def denoise_step(
    model: DiffusionModel, x: Tensor, levels: Tensor, next_levels: Tensor, K: int, *,
    eta: float = 0.0, cond: dict[str, Any] | None = None, generator: torch.Generator | None = None,
    noise: Tensor | None = None,
) -> Tensor:  # fmt: skip
    """One evaluation with per-frame levels (x's leading shape, e.g. (N, H)): the posterior step
    ``x_s = a_s x0 + sqrt(s_s^2 - c^2) eps + c z``, ``c = eta sqrt(var_post)`` (DDIM eq. 12 and
    16, Song et al. 2021; eta = 1 is DDPM's ancestral step), a frame whose next level is 0 taking
    x0_hat (a_s = 1, s_s = 0). A frame may hold its level (next = current)."""
    if bool((next_levels > levels).any()) or bool((levels < 1).any()):
        raise ValueError("levels must be >= 1 and may not increase")
    p = model.process
    t = level_times(levels, K, p)
    pred = model.predict(x, t.to(x.dtype), **(cond or {}))
    clean = next_levels == 0
    s = level_times(next_levels.clamp_min(1), K, p)
    a_t, s_t = p.alpha(t), p.sigma(t)
    a_s = torch.where(clean, torch.ones_like(s), p.alpha(s))
    s_s = torch.where(clean, torch.zeros_like(s), p.sigma(s))
    var_post = (s_s**2 / s_t**2) * (s_t**2 - (a_t / a_s) ** 2 * s_s**2).clamp_min(0.0)
    c = eta * var_post.sqrt()
    c_eps = (s_s**2 - c**2).clamp_min(0.0).sqrt()
    a_s, c_eps, c = (broadcast_like(v, x).to(x.dtype) for v in (a_s, c_eps, c))
    out = a_s * pred.x0 + c_eps * pred.eps
    if eta > 0:
        z = noise if noise is not None else torch.randn(x.shape, generator=generator, dtype=x.dtype)
        out = out + c * z.to(x)
    return out


def _impose(x: Tensor, known: Tensor | None) -> Tensor:
    return x if known is None else torch.where(torch.isnan(known), x, known.to(x))


def sync_chain(
    model: DiffusionModel, x: Tensor, K: int, *, stop: int = 0, record: Sequence[int] = (),
    eta: float = 0.0, cond: dict[str, Any] | None = None, generator: torch.Generator | None = None,
) -> tuple[Tensor, dict[int, Tensor]]:  # fmt: skip
    """The synchronous chain: every frame from level K (x pure noise) down to ``stop`` (0 =
    clean) in K - stop evaluations; also returns the states at the ``record`` levels."""
    cond = dict(cond or {})
    known = cond.get("known")
    lead = x.shape[:2]
    x = _impose(x, known)
    states = {K: x} if K in record else {}
    for level in range(K, stop, -1):
        cur = torch.full(lead, level, dtype=torch.int64)
        x = _impose(denoise_step(model, x, cur, cur - 1, K, eta=eta, cond=cond,
                                 generator=generator), known)  # fmt: skip
        if level - 1 in record:
            states[level - 1] = x
    return x, states


# ---------------------------------------------------------------------------------- data
def pack_trajectories(u: Tensor, f: Tensor) -> Tensor:
    """Solved samples u (N, 11, 128), f (N, 10, 128) as rows (N, 21, 128) / 10 (u then f)."""
    u, f = torch.as_tensor(u), torch.as_tensor(f)
    if u.shape[1:] != (N_INTERVALS + 1, N_CELLS) or f.shape[1:] != (N_INTERVALS, N_CELLS):
        raise ValueError(f"expected u (N, 11, 128) and f (N, 10, 128), got {tuple(u.shape)} "
                         f"and {tuple(f.shape)}")  # fmt: skip
    return (torch.cat([u, f], dim=1) / RESCALER).to(torch.float32)


def make_windows(
    u: Tensor, f: Tensor, ref: Tensor, start: Tensor, H: int = HORIZON
) -> tuple[Tensor, Tensor, Tensor]:
    """Windows at env steps ``start`` (N,) of rescaled u (N, 11, 128), f (N, 10, 128) and the
    reference ref (N, 11, 128): ``(x0 (N, H, 2, 128), known, ref (N, H, 128))``; frame j is
    interval start + j (padding past the episode: known zeros), frame 0's u known."""
    n = u.shape[0]
    idx = start[:, None] + torch.arange(H)[None]  # (N, H)
    valid = idx < N_INTERVALS
    i = idx.clamp(max=N_INTERVALS - 1)
    rows = torch.arange(n)[:, None]
    x0 = torch.stack([u[rows, i], f[rows, i]], dim=2) * valid[..., None, None]
    r = ref[rows, i + 1] * valid[..., None]
    known = torch.full_like(x0, float("nan"))
    known[:, 0, 0] = x0[:, 0, 0]
    known[~valid] = 0.0
    return x0, known, r


# ---------------------------------------------------------------------------------- network
class FrameNet(nn.Module):
    """A small conv net over (frames, space) with one time per frame: input channels [u, f, ref,
    known-u, known-f] brought to half the spatial resolution (a stride-2 conv), residual blocks
    with a per-frame sinusoidal time embedding as FiLM, 3 x 3 convolutions mixing neighbouring
    frames and dilated along space (receptive field about +-34 cells, the advection range of
    one interval), and a transposed conv back to 128 cells."""

    def __init__(self, channels: int = 32, dilations: Sequence[int] = (1, 2, 4, 8, 1)):
        super().__init__()
        c = int(channels)
        self.dilations = tuple(int(d) for d in dilations)
        self.embed = SinusoidalEmbedding(c)
        width = 2 * c * len(self.dilations)
        self.time = nn.Sequential(nn.Linear(c, 2 * c), nn.SiLU(), nn.Linear(2 * c, width))
        self.inp = nn.Conv2d(5, c, (3, 4), stride=(1, 2), padding=(1, 1))
        self.norms = nn.ModuleList(nn.GroupNorm(8, c) for _ in self.dilations)
        self.convs = nn.ModuleList(
            nn.Conv2d(c, c, 3, padding=(1, d), dilation=(1, d)) for d in self.dilations
        )
        self.out = nn.ConvTranspose2d(c, 2, (1, 2), stride=(1, 2))
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor, t: Tensor, known: Tensor | None = None,
                ref: Tensor | None = None) -> Tensor:  # fmt: skip
        n, h = x.shape[:2]
        t = t.expand(n, h) if t.dim() == 2 else t[:, None].expand(n, h)
        mask = torch.zeros_like(x) if known is None else (~torch.isnan(known)).to(x)
        x = write_known(x, known, "FrameNet")
        ref = torch.zeros_like(x[:, :, 0]) if ref is None else ref.to(x)
        z = torch.cat([x, ref[:, :, None], mask], dim=2).permute(0, 2, 1, 3)  # (N, 5, H, 128)
        film = self.time(self.embed(t.reshape(-1).to(x))).reshape(n, h, len(self.dilations), 2, -1)
        film = film.permute(2, 3, 0, 4, 1)[..., None]  # (blocks, 2, N, C, H, 1)
        y = self.inp(z)
        for k, (norm, conv) in enumerate(zip(self.norms, self.convs, strict=True)):
            y = y + conv(torch.nn.functional.silu(norm(y) * (1 + film[k, 0]) + film[k, 1]))
        return self.out(y).permute(0, 2, 1, 3)


class CLModel(DiffusionModel):
    """The window model (x0 prediction, vp-cosine) with its own training loss for the common
    trainer (``Trainer(..., model=...)``): rows are packed trajectories (:func:`pack_trajectories`),
    each batch row draws a window start and, with probability 1/2 each, one level for all frames
    (synchronous) or the staircase t_j = (s + j) / H, s ~ U(0, 1) (asynchronous)."""

    def __init__(self, channels: int = 32, horizon: int = HORIZON, prediction: str = "x0"):
        super().__init__(FrameNet(channels), make_process("vp-cosine"), prediction=prediction)
        self.horizon = int(horizon)
        self.config = {"channels": int(channels), "horizon": self.horizon, "prediction": prediction}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> CLModel:
        return cls(**config)

    def loss(
        self, x0: Tensor, *, generator: torch.Generator | None = None, **ignored: Any
    ) -> Tensor:
        """Masked x0 (or eps) regression on the unknown entries of a batch of windows."""
        n, H, dev = x0.shape[0], self.horizon, x0.device
        u, f = x0[:, : N_INTERVALS + 1], x0[:, N_INTERVALS + 1 :]
        start = torch.randint(N_INTERVALS, (n,), generator=generator, device=dev)
        w, known, ref = make_windows(u, f, u, start, H)
        r = torch.rand(n, 2, generator=generator, device=dev, dtype=torch.float64)
        stair = (r[:, 1:] + torch.arange(H, device=dev)) / H
        t = torch.where(r[:, :1] < 0.5, r[:, 1:].expand(n, H), stair)
        t = t.clamp(self.process.t_min, self.process.t_max)
        eps = torch.randn(w.shape, generator=generator, device=dev, dtype=w.dtype)
        a = broadcast_like(self.process.alpha(t), w).to(w)
        s = broadcast_like(self.process.sigma(t), w).to(w)
        xt = a * w + s * eps
        out = self.net(xt, t.to(w), known=known, ref=ref)
        target = w if self.prediction == "x0" else eps
        weight = torch.isnan(known).to(w)
        return ((out - target) ** 2 * weight).sum() / weight.sum().clamp_min(1.0)


def train_cl_model(
    u: Tensor, f: Tensor, out_dir: str | os.PathLike, *, steps: int, channels: int = 32,
    batch_size: int = 32, lr: float = 1e-3, progress: bool = True, seed: int = 0,
) -> tuple[CLModel, dict[str, Any]]:  # fmt: skip
    """Train :class:`CLModel` on solved samples through the common trainer into ``out_dir``
    (resumed when it exists); returns the EMA model (CPU, eval) and the trainer's summary."""
    from ..data.batch import TrainingSet
    from ..train.config import TrainConfig
    from ..train.trainer import Trainer

    config = TrainConfig.from_dict({
        "data": "burgers", "n_data": None, "normalize": False, "steps": int(steps),
        "batch_size": int(batch_size), "lr": float(lr), "warmup": min(100, int(steps)),
        "ema_decay": 0.995, "grad_clip": 1.0, "save_every": 500, "log_every": 50,
        "seed": int(seed), "description": "cl-diffphycon window model",
    })  # fmt: skip
    model = CLModel(channels)
    trainer = Trainer(config, out_dir, data=TrainingSet(pack_trajectories(u, f)),
                      progress=progress, model=model)  # fmt: skip
    summary = trainer.fit(resume=True)
    return trainer.ema.module.to("cpu").eval(), summary


# ---------------------------------------------------------------------------------- control
def reference(env: Any) -> np.ndarray:
    """The reference trajectory (11, 128) of a reset env: the nominal solver (nu = 0.01) from its
    u0 under its ``target_control``."""
    e = env.unwrapped
    if e.target_control is None:
        raise ValueError("the env has no target_control (reset without options['target'])")
    return simulate(e.u0[None], e.target_control[None], nu=NU)[0].numpy()


def episode_plans(seeds: Sequence[int], setting: str = "fo-fc") -> dict[str, np.ndarray]:
    """What the env draws at ``reset(seed)`` for each seed -- ``u0`` (E, 128), ``target``
    (E, 128), ``control`` (E, 10, 128) -- and the reference trajectories ``ref`` (E, 11, 128)
    in one batched solve; :func:`run_episodes` then resets with ``options`` (no solve)."""
    from .env import BurgersControlEnv

    env = BurgersControlEnv(setting)
    u0, target, control = [], [], []
    for seed in seeds:
        env.reset(seed=int(seed))
        u0.append(env.u0)
        target.append(env.target)
        control.append(env.target_control)
    u0, control = np.stack(u0), np.stack(control)
    ref = simulate(u0, control, nu=NU).numpy()
    return {"u0": u0, "target": np.stack(target), "control": control, "ref": ref}


class WindowController:
    """Acts on a batch of episodes in lockstep: ``reset(refs (E, 11, 128))``, then
    ``act(states (E, 128), k) -> f (E, 128)`` at env step k.

    ``mode="async"``: CL-DiffPhyCon (staircase initialisation, K / H evaluations per step, the
    observed state written into frame 0 after every step). ``mode="replan"`` with ``every=h``: a
    fresh synchronous plan from pure noise every h steps conditioned on the observed state
    (h = H: open loop). ``nfe`` lists the network evaluations spent at each step."""

    def __init__(self, model: DiffusionModel, K: int = 20, *, mode: str = "async",
                 every: int = 1, eta: float = 0.0, seed: int = 0, H: int = HORIZON):  # fmt: skip
        if mode not in ("async", "replan"):
            raise ValueError(f"unknown mode {mode!r}; valid: async, replan")
        if not 1 <= every <= H:
            raise ValueError(f"every must be in [1, {H}], got {every}")
        self.m = _check_grid(K, H)
        self.model, self.K, self.H, self.mode, self.every, self.eta = model, K, H, mode, every, eta
        self.seed = int(seed)

    def reset(self, refs: Any) -> None:
        self.ref = torch.as_tensor(np.asarray(refs), dtype=torch.float32) / RESCALER
        self.gen = torch.Generator().manual_seed(self.seed)
        self.x: Tensor | None = None
        self.plan: Tensor | None = None
        self.nfe: list[int] = []

    def _cond(self, state: Tensor, k: int) -> dict[str, Tensor]:
        n = state.shape[0]
        start = torch.full((n,), k, dtype=torch.int64)
        zeros = torch.zeros(n, N_INTERVALS + 1, N_CELLS)
        zeros[:, k] = state
        _, known, ref = make_windows(zeros, zeros[:, :N_INTERVALS], self.ref, start, self.H)
        return {"known": known, "ref": ref}

    def _noise(self, n: int) -> Tensor:
        return torch.randn(n, self.H, 2, N_CELLS, generator=self.gen)

    def act(self, states: Any, k: int) -> np.ndarray:
        state = torch.as_tensor(np.asarray(states), dtype=torch.float32) / RESCALER
        n, K, m, H = state.shape[0], self.K, self.m, self.H
        cond = self._cond(state, k)
        kw = {"eta": self.eta, "generator": self.gen}
        if self.mode == "replan":
            if k % self.every == 0:
                self.plan, _ = sync_chain(self.model, self._noise(n), K, cond=cond, **kw)
                self.nfe.append(K)
                self.offset = k
            else:
                self.nfe.append(0)
            return (self.plan[:, k - self.offset, 1] * RESCALER).double().numpy()
        if self.x is None:  # the staircase from one synchronous chain (frame j at (j + 1) m)
            levels = [int(v) for v in staircase_levels(K, H)]
            noise = self._noise(n)
            _, st = sync_chain(self.model, noise, K, stop=m, record=levels, cond=cond, **kw)
            self.x = torch.stack([st[lv][:, j] for j, lv in enumerate(levels)], dim=1)
            spent = K - m
        else:  # shift by one frame, append pure noise, the observed state in frame 0
            self.x = torch.cat([self.x[:, 1:], self._noise(n)[:, :1]], dim=1)
            spent = 0
        self.x = _impose(self.x, cond["known"])
        for i in range(m):
            cur = staircase_levels(K, H, i).expand(n, H)
            self.x = _impose(denoise_step(self.model, self.x, cur, cur - 1, K, cond=cond, **kw),
                             cond["known"])  # fmt: skip
        self.nfe.append(spent + m)
        return (self.x[:, 0, 1] * RESCALER).double().numpy()


def run_episodes(
    controller: WindowController, envs: Sequence[Any], seeds: Sequence[int],
    plans: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Roll ``controller`` through the gymnasium envs (one episode each, reset with ``seeds``;
    with ``plans`` from :func:`episode_plans` the same episodes without re-solving the targets):
    per episode the tracking error (mean over the 10 steps of mean_x (u_k - u_ref,k)^2, the
    paper's metric), the final J_actual and the network evaluations per step."""
    if plans is None:
        obs = [env.reset(seed=int(s))[0] for env, s in zip(envs, seeds, strict=True)]
        refs = np.stack([reference(env) for env in envs])
    else:
        refs = plans["ref"]
        obs = [env.reset(seed=int(s), options={"u0": plans["u0"][i], "target": plans["target"][i]})[0]
               for i, (env, s) in enumerate(zip(envs, seeds, strict=True))]  # fmt: skip
    controller.reset(refs)
    n_obs = envs[0].unwrapped.observed.sum()
    errors, j_final = np.zeros((len(envs), N_INTERVALS)), np.zeros(len(envs))
    for k in range(N_INTERVALS):
        states = np.stack([o[:n_obs] for o in obs])
        actions = controller.act(states, k)
        for i, env in enumerate(envs):
            ctrl = env.unwrapped.controlled
            obs[i], _, done, _, info = env.step(actions[i][ctrl].astype(np.float32))
            errors[i, k] = float(np.mean((info["u"] - refs[i, k + 1]) ** 2))
            if done:
                j_final[i] = info["j_actual"]
    return {"tracking": errors.mean(1), "per_step": errors, "j_actual": j_final,
            "nfe": list(controller.nfe), "nfe_per_step": float(np.mean(controller.nfe))}  # fmt: skip
