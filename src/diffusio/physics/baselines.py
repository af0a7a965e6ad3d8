"""Baselines for DiffPhyCon's 1-D Burgers control task (Wei et al. 2024, "DiffPhyCon: A
Generative Approach to Control Complex Physical Systems", NeurIPS 2024, arXiv:2407.06494).

A problem is an initial state ``u0`` (N, 128) and a target ``u_d`` (N, 128); a method returns a
control ``f`` (N, 10, 128), float64, exactly zero on uncontrolled cells, scored by
:func:`evaluate_control` in the true solver (J_actual over the observed cells, energy sum f^2).

* :func:`adjoint_control` -- the oracle: L-BFGS on f through the exact solver and its adjoint.
* :class:`Surrogate`, :func:`train_surrogate`, :func:`surrogate_control` -- SL (the paper's
  surrogate-model gradient method): a learned one-interval CNN model, the same L-BFGS on f.
* :class:`BehaviourCloning`, :func:`train_bc`, :func:`bc_control` -- BC (behaviour cloning):
  an open-loop MLP regression (u0, u_d) -> f.
* :func:`pid_control`, :func:`rollout_pid`, :func:`tune_pid` -- a fixed-gain PI controller.

Networks run in float32; controls are float64. ``nu``, ``dt``, ``substeps`` pass through to
:func:`~diffusio.physics.burgers.simulate` (``dt=1e-3, substeps=100``: the same T = 1 on a 10x
coarser, still stable, time grid, for fast tests).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from .burgers import DT, N_CELLS, N_INTERVALS, NU, SUBSTEPS, Setting, get_setting, simulate

__all__ = [
    "ControlResult", "BehaviourCloning", "PIDGains", "Surrogate", "adjoint_control",
    "bc_control", "evaluate_control", "pid_control", "rollout_pid", "surrogate_control",
    "train_bc", "train_surrogate", "tune_pid",
]  # fmt: skip

SCALE = 10.0  #: the networks' inputs and outputs are divided by this (a fixed rescaler)
#: :func:`tune_pid`'s default grid: proportional x integral gains (36 pairs). On 16 fo-fc
#: problems J is lowest at (10, 10); kp = 20 is already worse (the clip at f_max binds).
PID_GRID = ((0.0, 1.0, 2.0, 5.0, 10.0, 20.0), (0.0, 0.5, 1.0, 2.0, 5.0, 10.0))


def _problems(u0, u_target, f=None) -> tuple[torch.Tensor, ...]:
    u0 = torch.as_tensor(u0, dtype=torch.float64)
    ud = torch.as_tensor(u_target, dtype=torch.float64).to(u0.device)
    if u0.ndim != 2 or u0.shape[1] != N_CELLS or ud.shape != u0.shape:
        raise ValueError(f"u0 and u_target must both have shape (N, {N_CELLS}), got "
                         f"{tuple(u0.shape)} and {tuple(ud.shape)}")
    if f is None:
        return u0, ud
    f = torch.as_tensor(f, dtype=torch.float64).to(u0.device)
    if f.shape != (u0.shape[0], N_INTERVALS, N_CELLS):
        raise ValueError(f"f must have shape ({u0.shape[0]}, {N_INTERVALS}, {N_CELLS}), "
                         f"got {tuple(f.shape)}")
    return u0, ud, f


def _bar(progress: bool, total: int, desc: str, unit: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not progress)


def _masks(setting: str | Setting, device) -> tuple[torch.Tensor, torch.Tensor]:
    st = get_setting(setting)
    return st.observed.to(device), st.controlled.to(device)


def evaluate_control(
    u0, u_target, f, setting: str | Setting = "fo-fc", *, nu: float = NU, dt: float = DT,
    substeps: int = SUBSTEPS,
) -> dict[str, torch.Tensor]:
    """Score controls in the true solver, as the official evaluation does: ``f`` is zeroed on
    the uncontrolled cells, simulated from ``u0``; returns per sample ``j_actual`` (N,) = mean
    over the observed cells (all 128, or the 64 outer ones under PO) of (u(T) - u_d)^2,
    ``energy`` (N,) = sum over intervals and cells of f^2, and ``u_final`` (N, 128)."""
    u0, ud, f = _problems(u0, u_target, f)
    obs, ctrl = _masks(setting, u0.device)
    f = f * ctrl
    with torch.no_grad():
        uT = simulate(u0, f, nu=nu, dt=dt, substeps=substeps)[:, -1]
    j = ((uT - ud)[:, obs] ** 2).mean(dim=-1)
    return {"j_actual": j, "energy": (f**2).flatten(1).sum(dim=-1), "u_final": uT}



@dataclass(frozen=True)
class ControlResult:
    """``f`` (N, 10, 128) float64, per sample the best evaluated iterate by the objective;
    ``j_history`` (E, N): J (observed cells) of the model's final state at each of the E
    objective evaluations (E is about ``iterations``; the first is the initial guess)."""

    f: torch.Tensor
    j_history: torch.Tensor


def _lbfgs(
    final_state: Callable[[torch.Tensor], torch.Tensor], u0: torch.Tensor, ud: torch.Tensor,
    setting: str | Setting, lam: float, iterations: int, lr: float, progress: bool, desc: str,
) -> ControlResult:
    """Minimise sum_n [J_n + lam * mean_{k,x} f_n^2] with L-BFGS (strong Wolfe) over f on the
    controlled cells (zero start); ``final_state(f)`` is the model's u(T) (N, 128)."""
    if int(iterations) < 1:
        raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
    obs, ctrl = _masks(setting, u0.device)
    idx = ctrl.nonzero().squeeze(1)
    p = u0.new_zeros(u0.shape[0], N_INTERVALS, idx.numel(), requires_grad=True)
    opt = torch.optim.LBFGS([p], lr=lr, max_iter=int(iterations), max_eval=int(iterations),
                            tolerance_grad=0.0, tolerance_change=0.0,
                            line_search_fn="strong_wolfe")
    best_obj = torch.full((u0.shape[0],), math.inf, dtype=torch.float64, device=u0.device)
    best_p, history, bar = p.detach().clone(), [], _bar(progress, int(iterations), desc, "eval")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        f = p.new_zeros(p.shape[0], N_INTERVALS, N_CELLS).index_copy(2, idx, p)
        j = ((final_state(f) - ud)[:, obs] ** 2).mean(dim=-1)
        obj = j + lam * (f**2).flatten(1).mean(dim=-1)
        with torch.no_grad():
            better = obj.detach() < best_obj
            best_obj[better], best_p[better] = obj.detach()[better], p.detach()[better]
            history.append(j.detach().clone())
        bar.update(1)
        loss = obj.sum()
        if torch.isfinite(loss):
            loss.backward()
        return loss

    try:
        opt.step(closure)
    finally:
        bar.close()
    f = u0.new_zeros(u0.shape[0], N_INTERVALS, N_CELLS)
    f[:, :, idx] = best_p.to(f)
    return ControlResult(f, torch.stack(history).to(torch.float64))


def adjoint_control(
    u0, u_target, setting: str | Setting = "fo-fc", lam: float = 0.0, iterations: int = 100,
    lr: float = 1.0, *, progress: bool = False, nu: float = NU, dt: float = DT,
    substeps: int = SUBSTEPS,
) -> ControlResult:
    """The oracle (a bound for any method using the true model, not a competitor): minimise
    J + lam * mean f^2 (J over the observed cells) over f on the controlled cells, through the
    exact solver and its discrete adjoint, from f = 0. L-BFGS with a strong-Wolfe line search,
    ``iterations`` = its budget of objective evaluations (one forward + adjoint solve each for
    the whole batch). L-BFGS, not Adam: the problem is a smooth least-squares fit; on 4
    problems and 100 evaluations L-BFGS reached J / J(zero control) = 2e-8..9e-8, Adam (lr
    0.05..0.5, cosine decay) 2e-5..1e-3. Samples are independent (the per-sample best iterate
    is kept) but share the line search. Not a baseline of Wei et al. 2024 (the official code's
    Burgers baselines are PID, SL, SAC, BC, BPPO): SL is this optimiser on a learned model."""
    u0, ud = _problems(u0, u_target)

    def final_state(f: torch.Tensor) -> torch.Tensor:
        return simulate(u0, f, nu=nu, dt=dt, substeps=substeps)[:, -1]

    return _lbfgs(final_state, u0, ud, setting, lam, iterations, lr, progress, "adjoint")


class Surrogate(nn.Module):
    """A learned one-interval model (u_t, f_t) -> u_{t+1}: a residual 1-D CNN over the 128 cells
    (channels-first Conv1d, kernel 5, dilations 1, 2, 4, ..., so ``layers`` = 4 sees +-30 cells,
    about the distance a front travels in one interval; zero padding = the zero walls; GELU;
    the last 1x1 layer starts at zero, so the untrained model is persistence). Inputs and the
    increment are rescaled by 1/10. Float32."""

    def __init__(self, hidden: int = 32, layers: int = 4) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        for i in range(int(layers)):
            d = 2**i
            mods += [nn.Conv1d(2 if i == 0 else hidden, hidden, 5, padding=2 * d, dilation=d),
                     nn.GELU()]
        self.net = nn.Sequential(*mods, nn.Conv1d(hidden, 1, 1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        self.losses: list[float] = []

    def forward(self, u: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        """``u``, ``f`` (N, 128) -> u one interval later (N, 128), in the parameters' dtype."""
        w = self.net[0].weight
        x = torch.stack([u, f], dim=1).to(w) / SCALE
        return u.to(w) + SCALE * self.net(x)[:, 0]

    def rollout(self, u0: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        """``u0`` (N, 128), ``f`` (N, K, 128) -> the predicted trajectory (N, K + 1, 128)."""
        states = [u0.to(self.net[0].weight)]
        for k in range(f.shape[1]):
            states.append(self(states[-1], f[:, k]))
        return torch.stack(states, dim=1)


def _train(model: nn.Module, loss_fn, n: int, steps: int, batch_size: int, lr: float,
           seed: int, progress: bool, desc: str) -> None:
    """Adam (cosine decay to 0) on minibatches of ``n`` examples, ``loss_fn(idx)``; the loss per
    step goes to ``model.losses``."""
    g = torch.Generator().manual_seed(int(seed))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, int(steps)))
    bar = _bar(progress, int(steps), desc, "step")
    model.train()
    for _ in range(int(steps)):
        idx = torch.randint(0, n, (min(int(batch_size), n),), generator=g)
        loss = loss_fn(idx)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        model.losses.append(loss.item())
        bar.update(1)
    bar.close()
    model.eval()


def _data(u, f) -> tuple[torch.Tensor, torch.Tensor]:
    u, f = torch.as_tensor(u, dtype=torch.float64), torch.as_tensor(f, dtype=torch.float64)
    n = u.shape[0]
    if u.shape != (n, N_INTERVALS + 1, N_CELLS) or f.shape != (n, N_INTERVALS, N_CELLS):
        raise ValueError(f"u and f must have shapes (n, {N_INTERVALS + 1}, {N_CELLS}) and "
                         f"(n, {N_INTERVALS}, {N_CELLS}), got {tuple(u.shape)}, {tuple(f.shape)}")
    return u, f


def train_surrogate(
    u, f, *, hidden: int = 32, layers: int = 4, steps: int = 2000, batch_size: int = 256,
    lr: float = 2e-3, seed: int = 0, progress: bool = False,
) -> Surrogate:
    """Fit a :class:`Surrogate` to the data's n * 10 transitions (u_k, f_k) -> u_{k+1} (``u``
    (n, 11, 128), ``f`` (n, 10, 128), e.g. :func:`make_burgers_data`) with MSE on the 1/10
    scale, Adam (``lr``, cosine decay over ``steps`` minibatches of ``batch_size``), seeded
    (the global RNG is left alone); per-step losses in ``.losses``. The defaults take about
    2.5 min on one CPU thread (1000 samples: one-interval MSE 7e-5 vs persistence 3e-2)."""
    u, f = _data(u, f)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = Surrogate(hidden, layers)
    ut, ft = u[:, :-1].reshape(-1, N_CELLS).float(), f.reshape(-1, N_CELLS).float()
    un = u[:, 1:].reshape(-1, N_CELLS).float()

    def loss_fn(i: torch.Tensor) -> torch.Tensor:
        return ((model(ut[i], ft[i]) - un[i]) / SCALE).pow(2).mean()

    _train(model, loss_fn, ut.shape[0], steps, batch_size, lr, seed, progress, "surrogate")
    return model


def surrogate_control(
    surrogate: Surrogate, u0, u_target, setting: str | Setting = "fo-fc", lam: float = 0.0,
    iterations: int = 100, lr: float = 1.0, *, progress: bool = False,
) -> ControlResult:
    """SL, the surrogate-model gradient method of Wei et al. 2024: the objective of
    :func:`adjoint_control` minimised by the same L-BFGS through the surrogate's 10-interval
    rollout (a float64 copy). The official SL uses an autoencoder-latent surrogate and
    L-BFGS (lr 0.1, 300 epochs); ours is the direct CNN of :class:`Surrogate`. ``j_history``
    is the surrogate's J; score ``f`` with :func:`evaluate_control`."""
    u0, ud = _problems(u0, u_target)
    model = copy.deepcopy(surrogate).double().to(u0.device).requires_grad_(False)

    def final_state(f: torch.Tensor) -> torch.Tensor:
        return model.rollout(u0, f)[:, -1]

    return _lbfgs(final_state, u0, ud, setting, lam, iterations, lr, progress, "surrogate")



class BehaviourCloning(nn.Module):
    """An MLP (u0, u_d) on the observed cells -> f on the controlled cells for all 10 intervals
    at once (open loop), inputs and outputs rescaled by 1/10; ``setting`` fixes the cells."""

    def __init__(self, setting: str | Setting = "fo-fc", hidden: int = 256, depth: int = 2):
        super().__init__()
        self.setting = get_setting(setting)
        n_in = 2 * int(self.setting.observed.sum())
        self.n_out = N_INTERVALS * int(self.setting.controlled.sum())
        dims = [n_in] + [int(hidden)] * int(depth)
        mods: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:], strict=True):
            mods += [nn.Linear(a, b), nn.GELU()]
        self.net = nn.Sequential(*mods, nn.Linear(dims[-1], self.n_out))
        self.losses: list[float] = []

    def forward(self, u0: torch.Tensor, u_target: torch.Tensor) -> torch.Tensor:
        """-> f on the controlled cells (N, 10, n_controlled), in the parameters' dtype."""
        obs = self.setting.observed.to(u0.device)
        x = torch.cat([u0[:, obs], u_target[:, obs]], dim=1).to(self.net[0].weight) / SCALE
        return SCALE * self.net(x).view(u0.shape[0], N_INTERVALS, -1)


def train_bc(
    u, f, setting: str | Setting = "fo-fc", *, hidden: int = 256, depth: int = 2,
    steps: int = 2000, batch_size: int = 256, lr: float = 1e-3, seed: int = 0,
    progress: bool = False,
) -> BehaviourCloning:
    """BC (behaviour cloning, Wei et al. 2024): regress the data's control on its (u[:, 0],
    u[:, -1]) pairs with MSE (on the 1/10 scale), Adam with cosine decay. The paper's BC clones
    the data's actions with a closed-loop policy network; ours is open loop (one shot of all
    10 intervals from the initial state and the target)."""
    u, f = _data(u, f)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = BehaviourCloning(setting, hidden, depth)
    ctrl = model.setting.controlled
    u0, ud, fc = u[:, 0].float(), u[:, -1].float(), f[:, :, ctrl].float()

    def loss_fn(i: torch.Tensor) -> torch.Tensor:
        return ((model(u0[i], ud[i]) - fc[i]) / SCALE).pow(2).mean()

    _train(model, loss_fn, u.shape[0], steps, batch_size, lr, seed, progress, "bc")
    return model


def bc_control(
    model: BehaviourCloning, u0, u_target, setting: str | Setting | None = None,
) -> torch.Tensor:
    """The model's open-loop control (N, 10, 128) float64, zero on uncontrolled cells."""
    u0, ud = _problems(u0, u_target)
    if setting is not None and get_setting(setting).name != model.setting.name:
        raise ValueError(f"model was trained for {model.setting.name!r}, not "
                         f"{get_setting(setting).name!r}")
    with torch.no_grad():
        fc = model(u0, ud).to(torch.float64)
    f = u0.new_zeros(u0.shape[0], N_INTERVALS, N_CELLS)
    f[:, :, model.setting.controlled.to(u0.device)] = fc
    return f



def pid_control(
    u, u_target, integral, setting: str | Setting, kp, ki, f_max: float = 10.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One interval of the PI law: with e = (u_d - u) on the observed cells (0 elsewhere) and
    I = ``integral`` + e, f = clip(kp e + ki I, -f_max, f_max) on the controlled cells (0
    elsewhere). ``u``, ``u_target``, ``integral`` (N, 128); ``kp``, ``ki`` floats or (N,).
    Returns (f (N, 128), I). The official PID baseline of Wei et al. 2024 learns per-cell
    gains with a CNN; this is a simpler fixed-gain PI controller."""
    obs, ctrl = _masks(setting, u.device)
    kp = torch.as_tensor(kp, dtype=u.dtype, device=u.device).reshape(-1, 1)
    ki = torch.as_tensor(ki, dtype=u.dtype, device=u.device).reshape(-1, 1)
    e = (u_target - u) * obs
    integral = integral + e
    f = (kp * e + ki * integral).clamp(-float(f_max), float(f_max)) * ctrl
    return f, integral


def rollout_pid(
    u0, u_target, setting: str | Setting, kp, ki, f_max: float = 10.0, nu: float = NU,
    state_noise: float = 0.0, generator: torch.Generator | None = None, *, dt: float = DT,
    substeps: int = SUBSTEPS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-loop PI control in the true solver (viscosity ``nu``), interval by interval:
    f_k = :func:`pid_control` of the state u_k, then u_{k+1} = simulate(u_k, f_k) plus
    N(0, state_noise^2) on every cell (as :class:`~diffusio.physics.env.BurgersControlEnv`).
    Returns f (N, 10, 128) and the trajectory u (N, 11, 128)."""
    u0, ud = _problems(u0, u_target)
    if not (math.isfinite(state_noise) and state_noise >= 0):
        raise ValueError(f"state_noise must be a non-negative float, got {state_noise!r}")
    u, integral, fs, us = u0, torch.zeros_like(u0), [], [u0]
    for _ in range(N_INTERVALS):
        fk, integral = pid_control(u, ud, integral, setting, kp, ki, f_max)
        u = simulate(u, fk[:, None], nu=nu, dt=dt, substeps=substeps)[:, -1]
        if state_noise > 0:
            u = u + state_noise * torch.randn(u.shape, generator=generator, dtype=u.dtype).to(u)
        fs.append(fk)
        us.append(u)
    return torch.stack(fs, dim=1), torch.stack(us, dim=1)


class PIDGains(NamedTuple):
    """The chosen gains and the criterion of every grid pair, ``{(kp, ki): mean cost}``."""

    kp: float
    ki: float
    scores: dict[tuple[float, float], float]


def tune_pid(
    u0, u_target, setting: str | Setting = "fo-fc",
    grid: tuple[Sequence[float], Sequence[float]] = PID_GRID, f_max: float = 10.0,
    lam: float = 0.0, *, nu: float = NU, dt: float = DT, substeps: int = SUBSTEPS,
) -> PIDGains:
    """Choose (kp, ki) on ``grid`` = (kp values, ki values) (default :data:`PID_GRID`) by the
    mean over the training problems of J_actual (observed cells) + ``lam`` * mean_{k,x} f^2,
    all pairs in one batched rollout; ties go to the first pair. With lam = 0 the winner buys
    its low J with a large energy (about 20x the data's controls on fo-fc)."""
    u0, ud = _problems(u0, u_target)
    pairs = [(float(a), float(b)) for a in grid[0] for b in grid[1]]
    if not pairs:
        raise ValueError("grid must give at least one (kp, ki) pair")
    n = u0.shape[0]
    kp = torch.tensor([a for a, _ in pairs], dtype=torch.float64).repeat_interleave(n)
    ki = torch.tensor([b for _, b in pairs], dtype=torch.float64).repeat_interleave(n)
    big_u0, big_ud = u0.repeat(len(pairs), 1), ud.repeat(len(pairs), 1)
    f, u = rollout_pid(big_u0, big_ud, setting, kp, ki, f_max, nu, dt=dt, substeps=substeps)
    obs, _ = _masks(setting, u0.device)
    cost = ((u[:, -1] - big_ud)[:, obs] ** 2).mean(-1) + lam * (f**2).flatten(1).mean(-1)
    means = cost.view(len(pairs), n).mean(dim=1)
    scores = {p: float(m) for p, m in zip(pairs, means, strict=True)}
    best = pairs[int(torch.argmin(means))]
    return PIDGains(best[0], best[1], scores)
