"""Decision Diffuser (Ajay, Du, Gupta, Tenenbaum, Jaakkola & Agrawal 2023, "Is Conditional
Generative Modeling all you need for Decision-Making?", ICLR 2023) and its CondDiffuser ablation.

* **What is diffused.** A window of H future *states* ``(H, S)`` (the official
  ``GaussianInvDynDiffusion``), eps-prediction with the cosine schedule over a temporal U-Net
  (:class:`~diffusio.nets.temporal.TemporalUNet`), x0 clipped to [-1, 1] while sampling (all as
  the code). How the states are scaled (``frame``, :class:`WindowCoder`): ``"absolute"`` scales
  each dimension to [-1, 1] by its limits (the code uses a CDF normaliser); ``"relative"``
  keeps the current state at index 0 and replaces every later state by its change since it,
  ``s_k - s_0``, each (step, dimension) scaled to [-1, 1] by its own range. A one-step move is
  about 1 % of a state's range, and the inverse dynamics acts on exactly that move. Measured on
  held-out mixed-LunarLander transitions (median ||s_hat_1 - s_1|| / ||s_1 - s_0||, the
  decision-diffuser-2023 report's precision table): after 1500 training steps the earlier
  recipe (absolute, inpainting + state vector) 14.9, known + relative 5.3; after 6000 steps
  3.1 and 2.9 -- better, but the planned step is still mostly error at this scale (k steps
  ahead the ratio falls to about 1 at k = 4 - 8, the error growing too, so a multi-step
  inverse dynamics was not adopted). The decoded plan is in data units either way.
* **The current state** (``conditioning``). ``"known"`` (the default, the official
  ``apply_conditioning``): during training each window's clean first state is written into the
  U-Net's input at index 0 and left out of the loss (:class:`~diffusio.control.diffuser.
  KnownEntries` and the U-Net's ``cond["known"]``), and planning passes the same clean state
  (and imposes it after every step). ``"inpaint"``: only re-noised replacement inpainting at
  sampling time, which hides the state at high noise; the earlier recipe added the state as a
  vector condition through the embedding for that reason (``state_condition=True``, never
  dropped), which measured no better once the state is known (the precision table's runs).
* **Actions** come from an inverse-dynamics MLP ``a_t = f(s_t, s_{t+1})`` (:class:`InverseDynamics`:
  2 hidden ReLU layers, linear output; the code: 256 units, the paper: 512), trained on the same
  transitions *separately* (the code trains it jointly, loss = (diffusion + MSE) / 2; the two
  losses share no parameters, so only the optimiser's schedule differs).
* **Return conditioning with classifier-free guidance.** The label of a window is the discounted
  return-to-go from its first step (``gamma`` = 0.99, the code's ``discount``) to the episode end,
  scaled to [0, 1] by the dataset windows' minimum and maximum (:class:`ReturnScale`; the code
  divides by a per-task ``returns_scale``). It enters the U-Net through Decision Diffuser's
  returns MLP (``cond_dims={"returns": 1}``); with probability ``p_uncond`` = 0.25 a training
  label is replaced by the null (an all-NaN row: the net's learned null embedding, initialised to
  zero like the code's masked embedding). Sampling conditions on a high target (0.9, the code's
  ``test_ret``) with ``eps = eps(x, null) + s (eps(x, y) - eps(x, null))``: ``guidance_scale`` is
  the paper's ``s`` (1.2-1.8; diffusio's CFG weight is ``w = s - 1``, ``s = 1`` the plain
  conditional model, ``s = 0`` the unconditional one).
* **Skills and composition** (Sec. 3.2, eq. 9): a one-hot condition (``condition="skills"``) and
  ``eps = eps(x, null) + s sum_i (eps(x, y_i) - eps(x, null))`` over several conditions y_i
  (:class:`RowwiseComposedGuidance`: :class:`diffusio.core.steering.ComposedGuidance` with
  ``w_i = s``, plus a scale per row, so one batch can sweep s, and all conditions in one
  batched network call).
* **Low temperature** (App. C, Table A1): the code multiplies the reverse kernel's noise *std* by
  ``noise_scale`` = 0.5 and also the initial x_T. ``sampler`` is ``"ddpm"`` over all T steps.
* **CondDiffuser** (Table 2 / Table A2 ablation, ``kind="cond-diffuser"``): the same model over
  ``[action, state]`` windows ``(H, A + S)`` (actions first, as Diffuser), the same return CFG,
  executing the first diffused action: what inverse dynamics is compared with.

Execution (:class:`DecisionDiffuserPolicy`). The official evaluation replans at every
environment step and acts with ``f(x_hat[0], x_hat[1])``. Here a plan is made every
``replan_every`` = k steps; at step j after it (0 <= j < k) the action is ``f(s_t, x_hat[j + 1])``
with the *observed* s_t (closed loop on the state, open loop on the plan), or ``x_hat[j, :A]`` for
CondDiffuser; k = 1 is the paper's. The policy acts on one observation ``(S,)`` or a batch
``(N, S)`` (the rows planned together in one sampler call); :func:`evaluate_batched` runs many
episodes as one batch, with :func:`~diffusio.control.policies.evaluate`'s episode seeds and
output.

A run directory holds diffusio's trainer run of the diffusion model, ``inverse_dynamics.
safetensors`` (Decision Diffuser) and ``decision_diffuser.json`` (kind, env, sizes, limits,
return scale, condition), which :func:`~diffusio.control.policies.load_policy` reads.
"""

from __future__ import annotations

import copy
import inspect
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..core.model import DiffusionModel
from ..io import read_json, write_json_atomic
from .diffuser import DIFFUSER_DEFAULTS, KnownEntries, LimitsNormalizer
from .policies import evaluate_batched, rollout_batch  # the batched runner (re-exported)

__all__ = [
    "DD_DEFAULTS", "DD_FILE", "DD_FORMAT", "KINDS", "RowwiseComposedGuidance",
    "DecisionDiffuserPlanner", "DecisionDiffuserPolicy", "InverseDynamics", "ReturnScale",
    "CONDITIONING", "FRAMES", "WindowCoder", "decision_diffuser_config", "decision_diffuser_policy",
    "episode_windows", "evaluate_batched", "held_out_precision", "plan_step_error",
    "load_decision_diffuser_run", "returns_to_go", "rollout_batch", "train_decision_diffuser",
    "train_inverse_dynamics",
]  # fmt: skip

DD_FORMAT, DD_VERSION, DD_FILE = "diffusio-decision-diffuser", 1, "decision_diffuser.json"
INVERSE_FILE = "inverse_dynamics.safetensors"
#: The two models: states + inverse dynamics, or [action, state] windows.
KINDS = {
    "decision-diffuser": "states diffused, actions from inverse dynamics (Decision Diffuser)",
    "cond-diffuser": "[action, state] diffused, the first action executed (CondDiffuser)",
}
CONDITIONS = ("returns", "skills")

#: The recipe (``config/locomotion_config.py``) at CPU scale: the overrides of a TrainConfig.
DD_DEFAULTS: dict[str, Any] = {
    **DIFFUSER_DEFAULTS,  # the shared trajectory recipe (cosine, EMA 0.995, Adam 2e-4, ...)
    "process_options": {"num_steps": 20},  # the code: 200, the paper: 100
    "prediction": "eps",
    "net_options": {"dim": 32, "dim_mults": [1, 2]},  # the code: 128, (1, 4, 8)
    "batch_size": 64,  # the code: 32
    "data": "decision-diffuser-windows",  # a label: the windows come as a TrainingSet
    "log_every": 50,
}


# --------------------------------------------------------------------------- data
def returns_to_go(rewards: Any, bounds: Sequence[tuple[int, int]], gamma: float) -> np.ndarray:
    """Per step, the discounted return ``sum_{j >= t} gamma^(j - t) r_j`` to its episode's end."""
    r = np.asarray(rewards, dtype=np.float64)
    out = np.zeros_like(r)
    for a, b in bounds:
        acc = 0.0
        for t in range(b - 1, a - 1, -1):
            acc = r[t] + gamma * acc
            out[t] = acc
    return out


def episode_windows(
    dataset: Any, horizon: int, kind: str = "decision-diffuser", stride: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """``(windows, starts)``: a window from every ``stride``-th step of every episode, states
    ``(N, H, S)`` (``kind="cond-diffuser"``: ``[action, state]``, ``(N, H, A + S)``), and the
    dataset row of each window's first step. An episode's states are its observations and its
    last next observation; a window running past the end repeats that final state (zero
    actions), as if the episode's end were absorbing (the code pads with zeros instead)."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; valid: {', '.join(KINDS)}")
    if horizon < 2 or stride < 1:
        raise ValueError(f"horizon must be >= 2 and stride >= 1, got {horizon}, {stride}")
    obs = np.asarray(dataset["observations"], dtype=np.float32)
    nxt = np.asarray(dataset["next_observations"], dtype=np.float32)
    act = np.asarray(dataset["actions"], dtype=np.float32)
    windows, starts = [], []
    for a, b in dataset.episodes():
        states = np.concatenate([obs[a:b], nxt[b - 1 : b], np.repeat(nxt[b - 1 : b], horizon, 0)])
        steps = np.arange(0, b - a, stride)
        idx = steps[:, None] + np.arange(horizon)[None, :]
        w = states[idx]
        if kind == "cond-diffuser":
            actions = np.concatenate([act[a:b], np.zeros((horizon + 1, act.shape[1]), np.float32)])
            w = np.concatenate([actions[idx], w], axis=-1)
        windows.append(w)
        starts.append(a + steps)
    return np.concatenate(windows).astype(np.float32), np.concatenate(starts)


class ReturnScale:
    """Returns mapped linearly from [low, high] (the training windows' range) to [0, 1]."""

    def __init__(self, low: float, high: float):
        if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
            raise ValueError(f"ReturnScale needs finite low < high, got {low}, {high}")
        self.low, self.high = float(low), float(high)

    @classmethod
    def fit(cls, returns: Any) -> ReturnScale:
        r = np.asarray(returns, dtype=np.float64)
        return cls(float(r.min()), float(r.max()))

    def __call__(self, returns: Any) -> np.ndarray:
        return (np.asarray(returns, dtype=np.float64) - self.low) / (self.high - self.low)

    def inverse(self, z: Any) -> np.ndarray:
        return np.asarray(z, dtype=np.float64) * (self.high - self.low) + self.low

    def state_dict(self) -> dict[str, float]:
        return {"low": self.low, "high": self.high}


#: How the current state is learnt: ``known`` (the official ``apply_conditioning``: the clean
#: state written into the U-Net's input at index 0 and left out of the loss) or ``inpaint``
#: (nothing at training time; re-noised replacement inpainting only while sampling).
CONDITIONING = ("known", "inpaint")
#: What is diffused: ``absolute`` states (the official) or ``relative`` ones, s_k - s_0 scaled
#: per (step, dimension) (module docstring).
FRAMES = ("absolute", "relative")


class WindowCoder:
    """Windows ``(N, H, D)`` in data units <-> the diffusion model's units.

    ``absolute``: each dimension scaled to [-1, 1] by ``limits`` (the windows' per-dimension
    range). ``relative``: the first state kept, every later state replaced by its change since
    the first, ``s_k - s_0`` (k >= 1), and every (step, dimension) entry scaled to [-1, 1] by
    its own range (``window_limits``, over H * D entries): index 0 is the current state (known,
    written clean into the U-Net's input), the rest the planned motion at the scale of a k-step
    move; actions (CondDiffuser) are scaled per (step, dimension) too. ``limits`` also scale
    the states the inverse dynamics and the state condition see, in both frames."""

    def __init__(self, frame: str, limits: LimitsNormalizer, action_dim: int,
                 window_limits: LimitsNormalizer | None = None) -> None:  # fmt: skip
        if frame not in FRAMES:
            raise ValueError(f"unknown frame {frame!r}; valid: {', '.join(FRAMES)}")
        if frame == "relative" and window_limits is None:
            raise ValueError("the relative frame needs window_limits")
        self.frame, self.limits, self.action_dim = frame, limits, int(action_dim)
        self.window_limits = window_limits

    @classmethod
    def fit(cls, frame: str, windows: np.ndarray, action_dim: int) -> WindowCoder:
        limits = LimitsNormalizer.fit(windows)
        if frame != "relative":
            return cls(frame, limits, action_dim)
        d = cls._delta(windows, action_dim)
        return cls(frame, limits, action_dim, LimitsNormalizer.fit(d.reshape(len(d), -1)))

    @staticmethod
    def _delta(windows: np.ndarray, action_dim: int) -> np.ndarray:
        d = np.array(windows, dtype=np.float64)
        d[:, 1:, action_dim:] -= d[:, :1, action_dim:]
        return d

    @property
    def dim(self) -> int:
        return len(self.limits.low)

    def encode(self, windows: Any) -> np.ndarray:
        w = np.asarray(windows, dtype=np.float64)
        if self.frame == "absolute":
            return self.limits(w)
        d = self._delta(w, self.action_dim)
        return self.window_limits(d.reshape(len(d), -1)).reshape(d.shape)

    def decode(self, z: Any, first: Any) -> np.ndarray:
        """Data-unit windows from model units; ``first`` (N, S): each window's first state."""
        z = np.asarray(z, dtype=np.float64)
        if self.frame == "absolute":
            return self.limits.inverse(z)
        d = self.window_limits.inverse(z.reshape(len(z), -1)).reshape(z.shape)
        s0 = np.asarray(first, dtype=np.float64)
        d[:, 1:, self.action_dim :] += s0[:, None]
        d[:, 0, self.action_dim :] = s0
        return d

    def first(self, states: Any, horizon: int) -> np.ndarray:
        """The model-unit entries of index 0 ``(N, D)`` for windows starting at ``states``
        (its action entries meaningless)."""
        s = np.asarray(states, dtype=np.float64)
        w = np.zeros((len(s), horizon, self.dim))
        w[..., self.action_dim :] = s[:, None]
        return self.encode(w)[:, 0]

    def state_units(self, states: Any) -> np.ndarray:
        """States scaled by the state dimensions' limits (the inverse dynamics' units)."""
        return LimitsNormalizer(self.limits.low[self.action_dim :],
                                self.limits.high[self.action_dim :])(states)  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"frame": self.frame, "limits": self.limits.state_dict()}
        if self.window_limits is not None:
            out["window_limits"] = self.window_limits.state_dict()
        return out

    @classmethod
    def from_info(cls, info: Mapping[str, Any]) -> WindowCoder:
        lim = LimitsNormalizer(info["limits"]["low"], info["limits"]["high"])
        a = int(info["action_dim"]) if info["kind"] == "cond-diffuser" else 0
        wl = info.get("window_limits")
        wl = LimitsNormalizer(wl["low"], wl["high"]) if wl else None
        return cls(str(info.get("frame", "absolute")), lim, a, wl)


def _load(dataset: Any, progress: bool = False) -> Any:
    from .datasets import DATASETS, OfflineDataset, load_dataset, make_dataset

    if isinstance(dataset, OfflineDataset):
        return dataset
    if isinstance(dataset, str) and dataset in DATASETS and not Path(dataset).exists():
        return load_dataset(make_dataset(dataset, progress=progress))
    if isinstance(dataset, (str, os.PathLike)):
        return load_dataset(dataset)
    raise TypeError(f"dataset must be an OfflineDataset, a .npz path or a dataset name, got "
                    f"{type(dataset).__name__}")  # fmt: skip


def _labels(ds: Any, condition: str, starts: np.ndarray, gamma: float) -> tuple[np.ndarray, Any]:
    """The condition of each window ``(N, k)`` and the return scale (returns) or skill names."""
    if condition == "returns":
        rtg = returns_to_go(ds["rewards"], ds.episodes(), gamma)[starts]
        scale = ReturnScale.fit(rtg)
        return scale(rtg)[:, None].astype(np.float32), scale
    if "skills" not in ds.arrays:
        raise ValueError(f"{ds.path}: condition='skills' needs a 'skills' label array")
    names = list(ds.manifest.get("labels", {}).get("skills", [])) or sorted(
        {str(s) for s in np.unique(ds["skills"])}
    )
    skill = np.asarray(ds["skills"], dtype=np.int64)[starts]
    return np.eye(len(names), dtype=np.float32)[skill], names


# --------------------------------------------------------------------------- inverse dynamics
class InverseDynamics(nn.Module):
    """``a = f(s_t, s_{t+1})``: an MLP with ReLU hidden layers and a linear output (the code's
    ``inv_model``), on states in the diffusion model's normalised units; actions in data units.

    Its input is ``[s_t, s_{t+1}, (s_{t+1} - s_t) / delta_scale]`` (the code: ``[s_t, s_{t+1}]``):
    one step moves a state by a small fraction of its range, so the standardised difference is
    given explicitly (``delta_scale``: the training differences' standard deviation per
    dimension, a saved buffer); it is still a function of the pair only."""

    def __init__(self, state_dim: int, action_dim: int, hidden: Sequence[int] = (256, 256)):
        super().__init__()
        layers: list[nn.Module] = []
        width = 3 * int(state_dim)
        for h in hidden:
            layers += [nn.Linear(width, int(h)), nn.ReLU()]
            width = int(h)
        layers.append(nn.Linear(width, int(action_dim)))
        self.net = nn.Sequential(*layers)
        self.register_buffer("delta_scale", torch.ones(int(state_dim)))
        self.state_dim, self.action_dim = int(state_dim), int(action_dim)
        self.hidden = [int(h) for h in hidden]

    def forward(self, s: Tensor, s_next: Tensor) -> Tensor:
        delta = (s_next - s) / self.delta_scale
        return self.net(torch.cat([s, s_next, delta], dim=-1))


def train_inverse_dynamics(
    states: Any, next_states: Any, actions: Any, *, steps: int = 4000, batch_size: int = 256,
    lr: float = 1e-3, seed: int = 0, hidden: Sequence[int] = (256, 256),
) -> tuple[InverseDynamics, dict[str, Any]]:  # fmt: skip
    """Regress ``actions`` on ``[states, next_states]`` (MSE, Adam, ``steps`` minibatches);
    deterministic given ``seed``, the global RNG left as it was. Returns ``(net, info)``."""
    s = torch.as_tensor(np.asarray(states), dtype=torch.float32)
    s2 = torch.as_tensor(np.asarray(next_states), dtype=torch.float32)
    a = torch.as_tensor(np.asarray(actions), dtype=torch.float32)
    if not (s.dim() == s2.dim() == a.dim() == 2 and len(s) == len(s2) == len(a)) or s.shape != s2.shape:
        raise ValueError(f"states, next_states (N, S) and actions (N, A) needed; got "
                         f"{tuple(s.shape)}, {tuple(s2.shape)}, {tuple(a.shape)}")  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = InverseDynamics(s.shape[1], a.shape[1], hidden)
    spread = (s2 - s).std(0)
    net.delta_scale.copy_(torch.where(spread > 1e-8, spread, torch.ones_like(spread)))
    g = torch.Generator().manual_seed(seed + 1)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    start, losses = time.perf_counter(), []
    for _ in range(int(steps)):
        i = torch.randint(len(s), (batch_size,), generator=g)
        loss = torch.mean((net(s[i], s2[i]) - a[i]) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    with torch.no_grad():
        mse = float(torch.mean((net(s, s2) - a) ** 2))
    tail = float(np.mean(losses[-100:])) if losses else math.nan
    info = {"steps": int(steps), "batch_size": int(batch_size), "lr": lr, "seed": int(seed),
            "hidden": net.hidden, "final_loss": tail, "train_mse": mse,
            "seconds": round(time.perf_counter() - start, 3)}  # fmt: skip
    return net.eval(), info


# --------------------------------------------------------------------------- training
def decision_diffuser_config(
    steps: int, *, kind: str = "decision-diffuser", condition: str = "returns",
    horizon: int = 16, gamma: float = 0.99, p_uncond: float = 0.25, dataset: str = "",
    state_condition: bool = False, conditioning: str = "known", frame: str = "absolute",
    **overrides: Any,
) -> Any:  # fmt: skip
    """The TrainConfig of a run: :data:`DD_DEFAULTS` + ``steps`` + CFG dropout + overrides
    (``net_options`` merged); the recipe (kind, condition, horizon, gamma, the dataset's tag)
    goes into ``description``, so the shared model cache tells recipes apart."""
    from ..train.config import TrainConfig

    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; valid: {', '.join(KINDS)}")
    if condition not in CONDITIONS:
        raise ValueError(f"unknown condition {condition!r}; valid: {', '.join(CONDITIONS)}")
    if not 0.0 <= p_uncond < 1.0:
        raise ValueError(f"p_uncond must lie in [0, 1), got {p_uncond}")
    values = copy.deepcopy(DD_DEFAULTS)
    net_options = {**values["net_options"], **dict(overrides.pop("net_options", {}) or {})}
    process_options = {**values["process_options"],
                       **dict(overrides.pop("process_options", {}) or {})}  # fmt: skip
    if conditioning not in CONDITIONING:
        raise ValueError(f"unknown conditioning {conditioning!r}; valid: {', '.join(CONDITIONING)}")
    if frame not in FRAMES:
        raise ValueError(f"unknown frame {frame!r}; valid: {', '.join(FRAMES)}")
    description = (f"{kind} {condition}{'+state' if state_condition else ''} H={horizon} "
                   f"gamma={gamma:g} p_uncond={p_uncond:g} conditioning={conditioning} "
                   f"frame={frame} data={dataset}")  # fmt: skip
    values.update(steps=int(steps), net_options=net_options, process_options=process_options,
                  cond_dropout={condition: float(p_uncond)} if p_uncond > 0 else {},
                  description=description)  # fmt: skip
    values.update(overrides)
    return TrainConfig.from_dict(values)


def dataset_tag(ds: Any) -> str:
    """A short name of a dataset for the recipe: name, seed and size from its manifest."""
    m = ds.manifest
    if m.get("name"):
        return f"{m['name']}:seed{m.get('seed')}:{m.get('steps')}steps"
    return f"{Path(ds.path).name}:{len(ds)}steps"


def train_decision_diffuser(
    dataset: Any,
    out_dir: str | os.PathLike,
    *,
    kind: str = "decision-diffuser",
    condition: str = "returns",
    horizon: int = 16,
    steps: int = 4000,
    gamma: float = 0.99,
    p_uncond: float = 0.25,
    inverse_steps: int = 4000,
    inverse_hidden: Sequence[int] = (256, 256),
    state_condition: bool = False,
    conditioning: str = "known",
    frame: str = "absolute",
    env: str | None = None,
    progress: bool = True,
    **overrides: Any,
) -> tuple[DiffusionModel, dict[str, Any]]:
    """Train a Decision Diffuser (or CondDiffuser, ``kind``) on ``dataset`` (an
    :class:`~diffusio.control.datasets.OfflineDataset`, an ``.npz`` path or a dataset name) into
    ``out_dir`` with diffusio's trainer (a finished run there is reused, an interrupted one
    resumed), the inverse dynamics next to it, and write ``decision_diffuser.json``. ``condition``
    is ``"returns"`` (discounted return-to-go, scaled to [0, 1]) or ``"skills"`` (the dataset's
    skill labels, one-hot). ``conditioning``: ``"known"`` (the clean first state written into
    the U-Net's input and out of the loss, the official) or ``"inpaint"``; ``frame``:
    ``"absolute"`` or ``"relative"`` states (module docstring); ``state_condition``: the first
    state also enters the U-Net as a vector condition. ``overrides`` go to the TrainConfig
    (``seed``, ``batch_size``, ``net_options``, ``process_options={"num_steps": T}``...).
    Returns ``(EMA model, info)``."""
    from ..data.batch import TrainingSet
    from ..io import read_safetensors, write_safetensors
    from ..train.trainer import Trainer
    from .envs import ENV_NAMES

    ds = _load(dataset, progress)
    env = env or ds.manifest.get("env")
    if env not in ENV_NAMES:
        raise ValueError(f"name the environment (env=...; valid: {', '.join(ENV_NAMES)}); the "
                         f"dataset's manifest gives {env!r}")  # fmt: skip
    windows, starts = episode_windows(ds, horizon, kind)
    labels, extra = _labels(ds, condition, starts, gamma)
    config = decision_diffuser_config(steps, kind=kind, condition=condition, horizon=horizon,
                                      gamma=gamma, p_uncond=p_uncond, dataset=dataset_tag(ds),
                                      state_condition=state_condition, conditioning=conditioning,
                                      frame=frame, **overrides)  # fmt: skip
    k = labels.shape[1]
    a_dim, s_dim = int(ds["actions"].shape[1]), int(ds["observations"].shape[1])
    offset = a_dim if kind == "cond-diffuser" else 0
    coder = WindowCoder.fit(frame, windows, offset)
    normalizer = coder.limits
    x0 = torch.as_tensor(coder.encode(windows), dtype=torch.float32)
    cond, cond_dims = {condition: torch.as_tensor(labels)}, {condition: k}
    if state_condition:  # the first state, also as a vector condition (never dropped)
        first = coder.state_units(windows[:, 0, offset:])
        cond["state"], cond_dims["state"] = torch.as_tensor(first, dtype=torch.float32), s_dim
    transforms = [KnownEntries(offset, steps=(0,))] if conditioning == "known" else []
    data = TrainingSet(
        x0, cond=cond, null={condition: float("nan")}, transforms=transforms,
        net_options={"transition_dim": int(x0.shape[-1]), "cond_dims": cond_dims},
    )  # fmt: skip
    out = Path(out_dir)
    trainer = Trainer(config, out, data=data, progress=progress)
    summary = trainer.fit(resume=True)
    model = trainer.ema.module.to("cpu").eval()
    info: dict[str, Any] = {
        "format": DD_FORMAT, "version": DD_VERSION, "kind": kind, "env": env,
        "condition": condition, "cond_dim": int(k), "horizon": int(horizon),
        "state_condition": bool(state_condition), "conditioning": conditioning,
        **coder.state_dict(), "action_dim": a_dim, "state_dim": s_dim, "gamma": gamma, "p_uncond": p_uncond,
        "train_windows": len(windows),
        "dataset": {"path": str(ds.path), "tag": dataset_tag(ds)},
        "train": {"step": summary.get("step"), "loss": _final_loss(summary, out)},
        "action_low": np.asarray(ds["actions"]).min(0).astype(float).tolist(),
        "action_high": np.asarray(ds["actions"]).max(0).astype(float).tolist(),
    }  # fmt: skip
    if condition == "returns":
        info["return_scale"] = extra.state_dict()
    else:
        info["skills"] = extra
    if kind == "decision-diffuser" and trainer.is_main:
        inv_path = out / INVERSE_FILE
        recipe = {"steps": int(inverse_steps), "hidden": [int(h) for h in inverse_hidden],
                  "seed": int(config.seed)}  # fmt: skip
        old = read_json(out / DD_FILE) if (out / DD_FILE).is_file() else {}
        if inv_path.is_file() and old.get("inverse_recipe") == recipe:
            info["inverse"] = old["inverse"]
        else:
            lim = LimitsNormalizer(normalizer.low[-s_dim:], normalizer.high[-s_dim:])
            net, inv_info = train_inverse_dynamics(
                lim(ds["observations"]), lim(ds["next_observations"]), ds["actions"],
                steps=inverse_steps, hidden=inverse_hidden, seed=int(config.seed),
            )  # fmt: skip
            write_safetensors(inv_path, net.state_dict(), {"diffusio_step": str(inverse_steps)})
            info["inverse"] = inv_info
        info["inverse_recipe"] = recipe
        read_safetensors(inv_path)  # verified readable
    if trainer.is_main:
        write_json_atomic(out / DD_FILE, info)
    return model, info


def _final_loss(summary: Mapping[str, Any], out: Path) -> float | None:
    """The run's last logged training loss (a finished run that is reused reports none)."""
    loss = summary.get("loss")
    if loss is not None and math.isfinite(float(loss)):
        return float(loss)
    path = out / "metrics.jsonl"
    if not path.is_file():
        return loss
    import json

    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    losses = [r["loss"] for r in rows if r.get("kind") == "train" and "loss" in r]
    return float(losses[-1]) if losses else loss


def load_decision_diffuser_run(
    run_dir: str | os.PathLike,
) -> tuple[DiffusionModel, InverseDynamics | None, dict[str, Any]]:
    """``(model, inverse dynamics or None, info)`` of a run of :func:`train_decision_diffuser`."""
    from ..io import apply_tensors, read_safetensors
    from ..train.runs import load_run

    path = Path(run_dir) / DD_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: not a Decision Diffuser run (no {DD_FILE})")
    info = read_json(path)
    if not isinstance(info, dict) or info.get("format") != DD_FORMAT:
        raise ValueError(f"{path}: not a diffusio Decision Diffuser run description")
    model, _, _ = load_run(run_dir)
    inverse = None
    if info["kind"] == "decision-diffuser":
        inverse = InverseDynamics(info["state_dim"], info["action_dim"], info["inverse"]["hidden"])
        tensors, _ = read_safetensors(Path(run_dir) / INVERSE_FILE)
        apply_tensors(inverse, tensors, Path(run_dir) / INVERSE_FILE)
        inverse.eval()
    return model.eval(), inverse, info


# --------------------------------------------------------------------------- guidance
class RowwiseComposedGuidance:
    """Classifier-free guidance over one or several vector conditions (Decision Diffuser eq. 9):
    ``eps = eps(x, null) + s sum_i (eps(x, y_i) - eps(x, null))``, ``s`` per row allowed.

    The prediction it modifies is the *unconditional* one (the sampler's ``cond`` holds the
    null, an all-NaN row); the conditions ``y_i`` (each ``{key: (N, k)}``) are evaluated in one
    batched network call (counted once per condition in the NFE). ``s = 1`` with one condition
    is the plain conditional model, i.e. diffusio's CFG weight ``w = s - 1``."""

    def __init__(self, conditions: Sequence[Mapping[str, Tensor]], scale: float | Tensor):
        if not conditions:
            raise ValueError("ComposedGuidance needs at least one condition")
        self.conditions = [dict(c) for c in conditions]
        self.scale = scale

    def __call__(self, pred: Any, t: Tensor, ctx: Any) -> Any:
        x = pred.x
        k = len(self.conditions)
        cond = {key: torch.cat([torch.as_tensor(c[key]).to(x) for c in self.conditions])
                for key in self.conditions[0]}  # fmt: skip
        out = ctx.evaluate(x.repeat(k, *([1] * (x.dim() - 1))), t.repeat(k), **cond)
        ctx.nfe += k - 1
        eps_c = out.eps.reshape(k, *x.shape)
        scale = torch.as_tensor(self.scale, dtype=x.dtype, device=x.device)
        scale = scale.reshape(-1, *([1] * (x.dim() - 1))) if scale.dim() else scale
        return pred.with_eps(pred.eps + scale * (eps_c - pred.eps).sum(0))

    def __repr__(self) -> str:
        return f"RowwiseComposedGuidance({len(self.conditions)} conditions)"


def _native_noise_scale() -> bool:
    """Whether diffusio's ddpm sampler takes ``noise_scale`` (low temperature)."""
    from ..core.samplers import ancestral

    return "noise_scale" in inspect.signature(ancestral.ddpm).parameters


class DecisionDiffuserPlanner:
    """Plans ``(N, H, D)`` windows in data units from N current states, conditioned on one or
    several conditions with guidance scale ``s`` (the paper's; per row allowed).

    ``sampler``: ``"ddpm"`` (ancestral, the paper's; with ``noise_scale`` the low temperature:
    the kernel's std and x_T times it) or ``"ddim"`` (deterministic, ``noise_scale`` unused);
    ``steps``: network evaluations (default: all T)."""

    def __init__(self, model: DiffusionModel, coder: WindowCoder | LimitsNormalizer,
                 info: Mapping[str, Any], *, sampler: str = "ddpm", steps: int | None = None,
                 noise_scale: float = 0.5) -> None:  # fmt: skip
        if sampler not in ("ddpm", "ddim"):
            raise ValueError(f"sampler must be 'ddpm' or 'ddim', got {sampler!r}")
        if not 0.0 <= noise_scale <= 1.0:
            raise ValueError(f"noise_scale must lie in [0, 1], got {noise_scale}")
        if isinstance(coder, LimitsNormalizer):  # an absolute-frame model
            a = int(info["action_dim"]) if info["kind"] == "cond-diffuser" else 0
            coder = WindowCoder("absolute", coder, a)
        self.model, self.coder, self.info = model, coder, dict(info)
        self.normalizer = coder.limits
        self.known = str(info.get("conditioning", "inpaint")) == "known"
        self.horizon = int(info["horizon"])
        self.action_dim = int(info["action_dim"]) if info["kind"] == "cond-diffuser" else 0
        self.condition, self.cond_dim = str(info["condition"]), int(info["cond_dim"])
        self.sampler, self.steps, self.noise_scale = sampler, steps, float(noise_scale)

    def plan(self, states: Any, conditions: Sequence[Mapping[str, Any]],
             scale: float | Any = 1.2, seed: int | None = None) -> np.ndarray:  # fmt: skip
        """Plans from ``states`` (N, S): window index 0 is each state. ``conditions``: a list of
        ``{condition: value}`` (a value of width k, or (N, k) per row); ``[]`` or ``scale = 0``
        samples the unconditional model."""
        from ..core.steering import ClipX0, Inpaint

        s = np.asarray(states, dtype=np.float64)
        s = s[None] if s.ndim == 1 else s
        dim = len(self.normalizer.low)
        if s.ndim != 2 or s.shape[1] != dim - self.action_dim or not np.all(np.isfinite(s)):
            raise ValueError(f"states must be finite (N, {dim - self.action_dim}); got {s.shape}")
        n = len(s)
        known = torch.zeros((n, self.horizon, dim))
        known[:, 0] = torch.as_tensor(self.coder.first(s, self.horizon), dtype=torch.float32)
        mask = torch.zeros((n, self.horizon, dim), dtype=torch.bool)
        mask[:, 0, self.action_dim :] = True
        extra: dict[str, Tensor] = {}
        if self.known:  # the clean state in the U-Net's input, as in training
            extra["known"] = torch.where(mask, known, torch.full_like(known, float("nan")))
        if self.info.get("state_condition"):
            extra["state"] = torch.as_tensor(self.coder.state_units(s), dtype=torch.float32)
        conds = []
        for c in conditions:
            unknown = set(c) - {self.condition}
            if unknown:
                raise ValueError(f"this model is conditioned on {self.condition!r}, not "
                                 f"{sorted(unknown)}")  # fmt: skip
            v = torch.as_tensor(np.asarray(c[self.condition], dtype=np.float32))
            v = v.reshape(1, -1).expand(n, -1) if v.dim() <= 1 else v
            if v.shape != (n, self.cond_dim) or not bool(torch.isfinite(v).all()):
                raise ValueError(f"condition {self.condition!r} must be {self.cond_dim} finite "
                                 f"values (or ({n}, {self.cond_dim})); got {tuple(v.shape)}")  # fmt: skip
            conds.append({self.condition: v})
        null = {self.condition: torch.full((n, self.cond_dim), float("nan")), **extra}
        conds = [{**c, **extra} for c in conds]
        scale_t = torch.as_tensor(np.asarray(scale, dtype=np.float32))
        guided = bool(conds) and bool((scale_t != 0).any())
        guidance = [RowwiseComposedGuidance(conds, scale_t)] if guided else []
        x = self._sample((n, self.horizon, dim), null, [*guidance, ClipX0()],
                         Inpaint(known, mask), seed)  # fmt: skip
        return self.coder.decode(x.detach().cpu().numpy(), s)

    def _sample(self, shape: tuple[int, ...], cond: dict[str, Tensor], guidance: list[Any],
                inpaint: Any, seed: int | None) -> Tensor:  # fmt: skip
        from ..core.samplers import SamplingContext, grid_times, reverse_step, sample

        g = torch.Generator().manual_seed(int(seed) if seed is not None else 0)
        temp = self.noise_scale if self.sampler == "ddpm" else 1.0
        x_init = temp * torch.randn(shape, generator=g)
        kwargs = dict(guidance=guidance, constraints=[inpaint], cond=cond)
        if self.sampler == "ddim":
            return sample(self.model, shape, sampler="ddim", steps=self.steps, x_init=x_init,
                          seed=seed, eta=0.0, **kwargs)  # fmt: skip
        if _native_noise_scale():
            return sample(self.model, shape, sampler="ddpm", steps=self.steps, x_init=x_init,
                          seed=seed, noise_scale=temp, **kwargs)  # fmt: skip
        # low-temperature ancestral sampling step by step (diffusio's ddpm step, scaled z)
        ctx = SamplingContext(self.model, generator=g)
        grid = grid_times(self.model.process, self.steps)
        with torch.no_grad():
            x = inpaint(x_init, grid[0], ctx)
            for i, t in enumerate(grid):
                s_next = grid[i + 1] if i + 1 < len(grid) else None
                z = temp * torch.randn(shape, generator=g)
                x = reverse_step(self.model, x, t, s_next, kernel_variance="posterior", noise=z,
                                 cond=cond, guidance=guidance).x_next  # fmt: skip
                x = inpaint(x, s_next, ctx)
        return x


# --------------------------------------------------------------------------- the policy
class DecisionDiffuserPolicy:
    """Decision Diffuser (or CondDiffuser) acting in its environment: ``reset(seed)`` and
    ``act(observation) -> action`` for one observation ``(S,)`` or a batch ``(N, S)`` (planned
    together). Replans every ``replan_every`` steps (module docstring). The condition:
    ``target`` (a normalised return, default 0.9) for a return model, ``skills`` (one name or
    several, composed) for a skill model; ``guidance_scale`` is the paper's ``s`` (a number, or
    one per row of the batch)."""

    def __init__(self, planner: DecisionDiffuserPlanner, inverse: InverseDynamics | None,
                 info: Mapping[str, Any], *, replan_every: int = 1, target: float = 0.9,
                 skills: str | Sequence[str] | None = None,
                 guidance_scale: float | Sequence[float] = 1.2) -> None:  # fmt: skip
        if int(replan_every) < 1:
            raise ValueError(f"replan_every must be >= 1, got {replan_every}")
        self.planner, self.inverse, self.info = planner, inverse, dict(info)
        self.kind, self.env = str(info["kind"]), str(info["env"])
        if self.kind == "decision-diffuser" and inverse is None:
            raise ValueError("a Decision Diffuser policy needs its inverse dynamics")
        self.replan_every = int(replan_every)
        self.state_dim, self.action_dim = int(info["state_dim"]), int(info["action_dim"])
        self.low = np.asarray(info["action_low"], dtype=np.float32)
        self.high = np.asarray(info["action_high"], dtype=np.float32)
        lim = planner.normalizer
        self.state_norm = LimitsNormalizer(lim.low[-self.state_dim :], lim.high[-self.state_dim :])
        self.conditions = self._conditions(target, skills)
        self.guidance_scale = np.asarray(guidance_scale, dtype=np.float32)
        self.planning_seconds: list[float] = []
        self.reset(0)

    def _conditions(self, target: float, skills: Any) -> list[dict[str, Any]]:
        if self.info["condition"] == "returns":
            if skills is not None:
                raise ValueError("this model is return-conditioned: give target, not skills")
            return [{"returns": [float(target)]}]
        names = list(self.info["skills"])
        chosen = [skills] if isinstance(skills, str) else list(skills or [])
        bad = [s for s in chosen if s not in names]
        if bad or not chosen:
            raise ValueError(f"name the skills to condition on (valid: {', '.join(names)}); got "
                             f"{bad or chosen!r}")  # fmt: skip
        return [{"skills": np.eye(len(names))[names.index(s)]} for s in chosen]

    def reset(self, seed: int = 0) -> None:
        self.seed, self.step, self.plans = int(seed), 0, None
        self.rows = None if self.guidance_scale.ndim == 0 else np.arange(len(self.guidance_scale))

    def keep(self, rows: Any) -> None:
        """Keep only these rows of the batch (episodes that ended leave it)."""
        rows = np.asarray(rows, dtype=np.int64)
        if self.plans is not None:
            self.plans = self.plans[rows]
        if self.rows is not None:
            self.rows = self.rows[rows]

    def act(self, observation: Any) -> np.ndarray:
        from .envs import check_observation

        obs = check_observation(self.env, observation)
        single = obs.ndim == 1
        obs = obs.reshape(-1, obs.shape[-1])
        if obs.shape[1] != self.state_dim:
            raise ValueError(f"{self.env}: this policy takes observations of width "
                             f"{self.state_dim}, got {obs.shape}")  # fmt: skip
        j = self.step % self.replan_every
        if j == 0 or self.plans is None or len(self.plans) != len(obs):
            j = 0
            scale = self.guidance_scale if self.rows is None else self.guidance_scale[self.rows]
            if scale.ndim and len(scale) != len(obs):
                raise ValueError(f"guidance_scale has {len(scale)} rows, the batch {len(obs)}")
            start = time.perf_counter()
            seed = self.seed * 100_003 + self.step
            self.plans = self.planner.plan(obs, self.conditions, scale, seed)
            self.planning_seconds.append(time.perf_counter() - start)
        self.step += 1
        h = self.planner.horizon
        if self.kind == "cond-diffuser":
            action = self.plans[:, min(j, h - 1), : self.action_dim]
        else:
            target = self.plans[:, min(j + 1, h - 1), :]
            with torch.no_grad():
                s = torch.as_tensor(self.state_norm(obs), dtype=torch.float32)
                s2 = torch.as_tensor(self.state_norm(target), dtype=torch.float32)
                action = self.inverse(s, s2).numpy()
        action = np.clip(action, self.low, self.high).astype(np.float32)
        return action[0] if single else action


def decision_diffuser_policy(run_dir: str | os.PathLike, *, sampler: str = "ddpm",
                             steps: int | None = None, noise_scale: float = 0.5,
                             **options: Any) -> DecisionDiffuserPolicy:  # fmt: skip
    """The :class:`DecisionDiffuserPolicy` of a trained run (``options``: ``replan_every``,
    ``target``, ``skills``, ``guidance_scale``)."""
    model, inverse, info = load_decision_diffuser_run(run_dir)
    planner = DecisionDiffuserPlanner(model, WindowCoder.from_info(info), info, sampler=sampler,
                                      steps=steps, noise_scale=noise_scale)  # fmt: skip
    return DecisionDiffuserPolicy(planner, inverse, info, **options)


# --------------------------------------------------------------------------- batched rollouts
# --------------------------------------------------------------------------- diagnostics
def plan_step_error(policy: DecisionDiffuserPolicy, states: Any, next_states: Any,
                    actions: Any | None = None, *, scale: float = 1.2, seed: int = 0,
                    gap: int = 1) -> dict[str, Any]:  # fmt: skip
    """How exactly a policy's plans predict the next state, on transitions ``(s_t, s_{t+gap},
    a_t)`` it was not trained on: per row the error ``||s_hat_{t+gap} - s_{t+gap}||`` over the
    true move ``||s_{t+gap} - s_t||`` (states in the inverse dynamics' units, the limits
    scaled to [-1, 1]); ``ratio_median`` / ``ratio_mean`` over rows, the per-dimension rms
    error and true-move sd, and (Decision Diffuser, with ``actions``) the rms action error of
    the inverse dynamics on the planned next state against its error on the true one."""
    s0 = np.asarray(states, dtype=np.float64)
    s1 = np.asarray(next_states, dtype=np.float64)
    policy.reset(seed)
    plans = policy.planner.plan(s0, policy.conditions, scale, seed=seed)
    hat = plans[:, gap, policy.planner.action_dim :]
    norm = policy.state_norm
    z0, z1, zh = norm(s0), norm(s1), norm(hat)
    err = np.linalg.norm(zh - z1, axis=1)
    move = np.linalg.norm(z1 - z0, axis=1)
    ratio = err / np.maximum(move, 1e-8)
    out = {"rows": int(len(s0)), "gap": int(gap), "ratio_median": float(np.median(ratio)),
           "ratio_mean": float(np.mean(ratio)), "error_mean": float(err.mean()),
           "move_mean": float(move.mean()),
           "error_rms_per_dim": np.sqrt(((zh - z1) ** 2).mean(0)).tolist(),
           "move_sd_per_dim": (z1 - z0).std(0).tolist()}  # fmt: skip
    if actions is not None and policy.inverse is not None and gap == 1:
        a = np.asarray(actions, dtype=np.float64)
        with torch.no_grad():
            t0 = torch.as_tensor(z0, dtype=torch.float32)
            planned = policy.inverse(t0, torch.as_tensor(zh, dtype=torch.float32)).numpy()
            true = policy.inverse(t0, torch.as_tensor(z1, dtype=torch.float32)).numpy()
        out["action_rmse_planned"] = float(np.sqrt(((planned - a) ** 2).mean()))
        out["action_rmse_true_next"] = float(np.sqrt(((true - a) ** 2).mean()))
    return out


def held_out_precision(policy: DecisionDiffuserPolicy, ds: Any, scale: float, seed: int,
                       n: int) -> dict[str, Any]:  # fmt: skip
    """:func:`plan_step_error` on held-out episodes ``ds`` (generated with another seed): on
    ``n`` transitions of the noiseless heuristic (behaviour 0) and on ``n`` of every behaviour."""
    beh = np.asarray(ds.arrays.get("behaviors", np.zeros(len(ds))))
    rng = np.random.default_rng(seed)
    out = {}
    for name, rows in (("heuristic", np.flatnonzero(beh == 0)), ("all", np.arange(len(ds)))):
        pick = rng.choice(rows, min(n, len(rows)), replace=False)
        out[name] = plan_step_error(policy, ds["observations"][pick],
                                    ds["next_observations"][pick], ds["actions"][pick],
                                    scale=scale, seed=seed)  # fmt: skip
    return out
