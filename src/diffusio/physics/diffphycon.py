"""DiffPhyCon (Wei et al. 2024, "DiffPhyCon: A Generative Approach to Control Complex Physical
Systems", NeurIPS 2024, arXiv:2407.06494) on the 1-D Burgers task: one diffusion model of the
whole trajectory and its control, conditioned by inpainting.

The state is the official layout: ``x = [u; f]`` as a 2-channel (time x space) image
(N, 2, 16, 128), u's 11 recorded frames and f's 10 intervals each zero-padded to 16 rows (the
U-Net halves the time axis twice); the official also divides by a ``rescaler`` 10, which we do
not (:data:`SCALE`).

* **Conditioning** (the official ``set_condition``): the initial state u(0) and the target
  u(T) = u_d are known entries. In training the network gets them clean in its input
  (``cond["known"]``, NaN elsewhere; the U-Net writes them in) and they are left out of the
  loss; at sampling they are given the same way and inpainted into the state
  (:class:`~diffusio.core.steering.Inpaint`). Partial control adds f = 0 on the uncontrolled
  cells as known entries; partial observation zeroes u on the unobserved middle half in the
  data, keeps it out of the loss and holds it at zero while sampling (the official
  ``train_on_partially_observed`` / ``set_unobserved_to_zero_during_sampling``). The padded
  rows are left out of the loss (the official trains on them; they carry no information).
* **Objective guidance**: J = mean (u(T) - u_d)^2 + lam * mean f^2 on the denoiser's x0_hat,
  through :class:`~diffusio.core.loss_guidance.LossGuidance` (DPS: the gradient w.r.t. x_t
  through the network; the official takes it w.r.t. x0_hat and adds it to eps). The released
  inference script runs with both weights at 0: inpainting u_d alone steers it.
* **Prior reweighting** (the paper's ``gamma``): ``eps = eps_joint + (gamma - 1) eps_prior``
  on f's channel, with ``eps_prior`` a second model that sees only u(0), u(T) and f (u's
  intermediate frames zeroed in its input, its loss on f only): :class:`ReweightedModel`, an
  adapter onto the one model interface. gamma = 1 is DiffPhyCon-lite. (The official also
  multiplies the prior term by a time schedule; here it is constant.)

* **Parameterisation** (:data:`DIFFPHYCON_DEFAULTS`): the official predicts eps; here the
  network predicts v (Salimans & Ho 2022). Near t = 1 the cosine schedule's alpha is ~0.016
  and an eps-model's x0_hat = (x - sigma eps) / alpha multiplies its eps error by 1 / alpha:
  at our training budget (minutes, 2% of the paper's data) that gave x0_hat errors ten times
  the data's scale and diverging samples; a v-model's x0_hat = alpha x - sigma v does not.

Evaluation puts the generated control into the true solver from u(0):
:func:`diffusio.physics.baselines.evaluate_control`.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import Tensor

from ..core.model import DiffusionModel
from .burgers import N_CELLS, N_INTERVALS, N_TIMES, get_setting

__all__ = [
    "FRAMES", "RESCALER", "SCALE", "DiffPhyCon", "ReweightedModel", "diffphycon_config", "known_entries",
    "loss_mask", "pack", "train_diffphycon", "unpack",
]  # fmt: skip

RESCALER = 10.0  #: the official data scale: its models see u / 10 and f / 10
#: The joint model's data scale here: it sees u / SCALE and f / SCALE. Divided by the official
#: 10, u has a standard deviation of about 0.05 against unit noise, and at our training budget
#: an eps-model of so faint a signal gave useless x0_hat at high noise (its 50-step samples
#: diverged); in physical units the standard deviations are about 0.5 (u) and 0.7 (f).
SCALE = 1.0
#: Per channel (u, f), the bound x0_hat is clipped to while sampling, in physical units: above
#: every value of the data (|u| <= 2.1, |f| <= 6.8 under full and 13.2 under partial control).
X0_BOUND = (3.0, 15.0)
FRAMES = 16  #: the time axis padded from 11 (u) and 10 (f) rows
U, F = 0, 1  #: channels

#: The training recipe (a short override of the trainer's defaults; score_sde-style).
DIFFPHYCON_DEFAULTS: dict[str, Any] = {
    "process": "vp-cosine", "prediction": "v", "net": "unet",
    "net_options": {"in_channels": 2, "image_size": FRAMES, "channels": 32,
                    "channel_mults": [1, 2, 4], "num_res_blocks": 1, "attention_resolutions": [],
                    "num_heads": 1},
    "normalize": False, "batch_size": 16, "lr": 2e-4, "warmup": 100, "ema_decay": 0.995,
    "grad_clip": 1.0, "save_every": 1000, "log_every": 25, "data": "burgers", "n_data": None,
}  # fmt: skip


def pack(u: Tensor, f: Tensor) -> Tensor:
    """``[u; f] / SCALE`` as (N, 2, 16, 128): u (N, 11, 128) and f (N, 10, 128), zero-padded."""
    u, f = torch.as_tensor(u), torch.as_tensor(f)
    if u.shape[1:] != (N_TIMES, N_CELLS) or f.shape[1:] != (N_INTERVALS, N_CELLS):
        raise ValueError(f"expected u (N, {N_TIMES}, {N_CELLS}) and f (N, {N_INTERVALS}, "
                         f"{N_CELLS}), got {tuple(u.shape)} and {tuple(f.shape)}")  # fmt: skip
    x = torch.zeros(u.shape[0], 2, FRAMES, N_CELLS, dtype=torch.float32)
    x[:, U, :N_TIMES], x[:, F, :N_INTERVALS] = u / SCALE, f / SCALE
    return x


def unpack(x: Tensor) -> tuple[Tensor, Tensor]:
    """``(u (N, 11, 128), f (N, 10, 128))`` in physical units from a packed state."""
    return x[:, U, :N_TIMES] * SCALE, x[:, F, :N_INTERVALS] * SCALE


def _hidden(setting: str) -> Tensor:
    """(128,) bool: u's cells the setting does not observe."""
    return ~get_setting(setting).observed


def known_entries(u0: Tensor, u_target: Tensor, setting: str) -> Tensor:
    """(N, 2, 16, 128) packed known values, NaN where unknown: u(0) and u(T) (zero on the
    unobserved cells under partial observation, as every frame there), and f = 0 on the
    uncontrolled cells under partial control."""
    st = get_setting(setting)
    n = u0.shape[0]
    known = torch.full((n, 2, FRAMES, N_CELLS), float("nan"))
    known[:, U, 0], known[:, U, N_TIMES - 1] = u0 / SCALE, u_target / SCALE
    known[:, U, :N_TIMES, _hidden(setting)] = 0.0
    known[:, F, :N_INTERVALS, ~st.controlled] = 0.0
    return known


def loss_mask(setting: str, prior: bool = False) -> Tensor:
    """(2, 16, 128) 1 where the loss counts: the frames that are neither known nor padding (and
    for the prior model, f's channel only)."""
    mask = torch.zeros(2, FRAMES, N_CELLS)
    mask[U, 1 : N_TIMES - 1] = 0.0 if prior else 1.0
    mask[F, :N_INTERVALS] = 1.0
    known = known_entries(torch.zeros(1, N_CELLS), torch.zeros(1, N_CELLS), setting)[0]
    return torch.where(torch.isnan(known), mask, torch.zeros_like(mask))


def diffphycon_config(steps: int, **overrides: Any) -> Any:
    """The TrainConfig of a DiffPhyCon model: :data:`DIFFPHYCON_DEFAULTS` + ``steps``."""
    from ..train.config import TrainConfig

    values = {**DIFFPHYCON_DEFAULTS, "steps": int(steps), "description": "diffphycon"}
    values["net_options"] = {**values["net_options"], **overrides.pop("net_options", {})}
    return TrainConfig.from_dict({**values, **overrides})


def train_diffphycon(
    u: Tensor, f: Tensor, setting: str, out_dir: str | os.PathLike, *, steps: int,
    prior: bool = False, progress: bool = True, resume: bool = True, **overrides: Any,
) -> tuple[Any, dict[str, Any]]:
    """Train the joint model (or, ``prior=True``, the reweighting prior: u's intermediate frames
    zeroed, loss on f only) on solved samples u (N, 11, 128), f (N, 10, 128) for ``setting``;
    returns the EMA model (CPU, eval) and the trainer's summary."""
    from ..data.batch import TrainingSet
    from ..train.trainer import Trainer

    x0 = pack(u, f)
    x0[:, U, :N_TIMES, _hidden(setting)] = 0.0  # partial observation: the data never see it
    if prior:
        x0[:, U, 1 : N_TIMES - 1] = 0.0
    known = known_entries(x0[:, U, 0] * SCALE, x0[:, U, N_TIMES - 1] * SCALE, setting)
    mask = loss_mask(setting, prior).expand_as(x0)
    data = TrainingSet(x0, cond={"known": known}, mask=mask)
    label = "diffphycon-prior" if prior else "diffphycon"
    config = diffphycon_config(steps, description=f"{label} {setting}", **overrides)
    trainer = Trainer(config, out_dir, data=data, progress=progress)
    summary = trainer.fit(resume=resume)
    return trainer.ema.module.to("cpu").eval(), summary


class ReweightedModel(DiffusionModel):
    """Prior reweighting as one model (an adapter onto the one model interface, k-diffusion
    ``external.py`` style): on f's channel ``eps = eps_joint(x) + (gamma - 1) eps_prior(x with
    u's intermediate frames zeroed)``, combined in eps whatever the two models predict (eps is
    the score up to -sigma, so this is the paper's reweighted score); u's channel is the joint
    model's. Both models must share the process. gamma = 1: the joint model itself."""

    def __init__(self, joint: DiffusionModel, prior: DiffusionModel, gamma: float):
        super().__init__(joint.net, joint.process, prediction=joint.prediction)
        self.joint, self.prior, self.gamma = joint, prior, float(gamma)

    def predict_with_coefficients(self, x: Tensor, t: Tensor, alpha: Any, sigma: Any,
                                  cond: dict[str, Any] | None = None) -> Any:  # fmt: skip
        pred = self.joint.predict_with_coefficients(x, t, alpha, sigma, cond)
        if self.gamma == 1.0:
            return pred
        seen = x.clone()
        seen[:, U, 1 : N_TIMES - 1] = 0.0
        extra = self.prior.predict_with_coefficients(seen, t, alpha, sigma, cond).eps
        eps = pred.eps.clone()
        eps[:, F] = eps[:, F] + (self.gamma - 1.0) * extra[:, F]
        return pred.with_eps(eps)


def _clip_x0(pred: Any, t: Tensor, ctx: Any) -> Any:
    """A guidance modifier: x0_hat clipped per channel to +-:data:`X0_BOUND` / SCALE."""
    bound = torch.tensor(X0_BOUND, dtype=pred.x0.dtype, device=pred.x0.device) / SCALE
    bound = bound.view(1, 2, 1, 1)
    return pred.with_x0(torch.maximum(torch.minimum(pred.x0, bound), -bound))


class DiffPhyCon:
    """Control by sampling: ``control(u0, u_target) -> f`` (N, 10, 128) in physical units.

    Args:
        model: the joint :class:`~diffusio.core.model.DiffusionModel` (eps prediction).
        setting: ``fo-fc``, ``fo-pc``, ``po-fc`` or ``po-pc``.
        prior: the reweighting prior's model (same process) and ``gamma``; None = lite.
        guidance: J-guidance scale (0: none, the released script's choice) and ``lam``, the
            energy weight inside J.
        sampler, steps: any of :func:`diffusio.core.samplers.sample`'s (the paper: ddpm, 1000).
        f_max: an actuator bound the control is clipped to (default 20: above every control
            of the data, which stay within +-6.8 (full) and +-13.2 (partial control); keeps an
            untrained model's controls from driving the explicit scheme unstable); None: none.
        clip: x0_hat is clipped per channel to +-``X0_BOUND`` at every step (DDPM's
            ``clip_denoised``): near t = 1 the cosine schedule's alpha is ~0 and x0_hat =
            (x - sigma eps) / alpha amplifies any eps error; False: no clipping.
    """

    def __init__(
        self, model: Any, setting: str, *, prior: Any = None, gamma: float = 1.0,
        guidance: float = 0.0, lam: float = 0.0, sampler: str = "ddim", steps: int | None = 50,
        f_max: float | None = 20.0, clip: bool = True,
    ):
        get_setting(setting)
        if prior is not None and gamma != 1.0:
            model = ReweightedModel(model, prior, gamma)
        self.model, self.setting = model, setting
        self.guidance, self.lam, self.sampler, self.steps = guidance, lam, sampler, steps
        self.f_max, self.clip = f_max, bool(clip)

    def objective(self, x0: Tensor, u_target: Tensor) -> Tensor:
        """Per-sample J of a packed x0: mean (u(T) - u_d)^2 over the observed cells + lam *
        mean f^2, in the model's (rescaled) units."""
        seen = get_setting(self.setting).observed
        u_t = x0[:, U, N_TIMES - 1, seen]
        gap = (u_t - u_target[:, seen].to(x0) / SCALE).pow(2).mean(-1)
        return gap + self.lam * x0[:, F, :N_INTERVALS].pow(2).mean((-1, -2))

    def control(self, u0: Tensor, u_target: Tensor, seed: int | None = 0) -> Tensor:
        """The control f (N, 10, 128), float64, exactly 0 on the uncontrolled cells and within
        +-``f_max``."""
        f = unpack(self.sample(u0, u_target, seed).double())[1]
        if self.f_max is not None:
            f = f.clamp(-self.f_max, self.f_max)
        f[:, :, ~get_setting(self.setting).controlled] = 0.0
        return f

    @torch.no_grad()
    def sample(self, u0: Tensor, u_target: Tensor, seed: int | None = 0) -> Tensor:
        """The packed sample (N, 2, 16, 128) with u(0), u_d and the setting's zeros inpainted."""
        from ..core.loss_guidance import LossGuidance
        from ..core.samplers import sample
        from ..core.steering import Inpaint

        u0 = torch.as_tensor(u0, dtype=torch.float32)
        u_target = torch.as_tensor(u_target, dtype=torch.float32)
        if u0.shape != u_target.shape or u0.dim() != 2 or u0.shape[1] != N_CELLS:
            raise ValueError(f"u0 and u_target must be (N, {N_CELLS}), got {tuple(u0.shape)} "
                             f"and {tuple(u_target.shape)}")  # fmt: skip
        known = known_entries(u0, u_target, self.setting)
        mask = ~torch.isnan(known)
        guidance = []
        if self.guidance:
            guidance.append(LossGuidance(lambda x0: self.objective(x0, u_target), self.guidance,
                                         radius=0.0))  # DPS: the gradient of J(x0_hat)
        if self.clip:
            guidance.append(_clip_x0)
        return sample(self.model, tuple(known.shape), sampler=self.sampler, steps=self.steps,
                      seed=seed, guidance=guidance, cond={"known": known},
                      constraints=[Inpaint(torch.nan_to_num(known), mask)])  # fmt: skip

