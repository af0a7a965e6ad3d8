"""Forward (noising) processes: ``x_t = alpha(t) x_0 + sigma(t) eps`` for continuous ``t`` in [0, 1].

Every process is defined by its marginal coefficients ``alpha(t)`` and ``sigma(t)``; the SDE
that has these marginals (Song et al. 2021, "Score-Based Generative Modeling through SDEs",
eq. 5) follows from them:

    dx = f(t) x dt + g(t) dw,   f(t) = d log alpha / dt,   g(t)^2 = d sigma^2/dt - 2 f(t) sigma^2.

Processes (``make_process(name)``):

* ``vp-linear``    DDPM (Ho et al. 2020, Sec. 4) / Score SDE VP: beta(t) = beta_min + t (beta_max - beta_min);
                   its discrete table is DDPM's ``betas = linspace(1e-4, 0.02, 1000)``.
* ``vp-cosine``    improved DDPM (Nichol & Dhariwal 2021, eq. 17): alpha_bar(t) = f(t)/f(0),
                   f(t) = cos^2(((t + s)/(1 + s)) pi/2), s = 0.008, betas clipped at 0.999.
* ``vp-quadratic`` CSDI (Tashiro et al. 2021, Sec. 4): betas = linspace(sqrt(b0), sqrt(b1), T)^2.
* ``sub-vp``       Score SDE (eq. 29): the VP drift with sigma(t) = 1 - alpha(t)^2.
* ``ve``           NCSN / SMLD (Song & Ermon 2019): alpha = 1, geometric sigmas
                   sigma(t) = sigma_min (sigma_max / sigma_min)^t (Score SDE eq. 30).

Each process also has a discrete grid (:class:`DiscreteSchedule`): the paper's table for
discrete-time algorithms. Every table entry is placed at the continuous time whose
``alpha``/``sigma`` equal it exactly, so a network queried at a grid time sees exactly the noise
level the table describes.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "DiscreteSchedule",
    "Process",
    "VPLinear",
    "VPCosine",
    "VPTable",
    "SubVP",
    "VE",
    "make_process",
    "PROCESSES",
    "broadcast_like",
]


def broadcast_like(coef: Tensor, x: Tensor) -> Tensor:
    """Reshape a per-example coefficient of shape (N,) or () so it broadcasts against x (N, ...)."""
    if coef.dim() == 0:
        return coef
    return coef.reshape(coef.shape + (1,) * (x.dim() - coef.dim()))


def _as_tensor(t: Tensor | float) -> Tensor:
    if isinstance(t, Tensor):
        return t
    return torch.tensor(t, dtype=torch.get_default_dtype())


@dataclass(frozen=True)
class DiscreteSchedule:
    """A process's discrete grid, index 0 = least noise, in float64.

    ``times[i]`` is the continuous time at which ``alpha(t) = alphas[i]`` and
    ``sigma(t) = sigmas[i]``; for VP tables ``alphas**2`` is DDPM's alpha-bar.
    """

    times: Tensor
    alphas: Tensor
    sigmas: Tensor

    def __len__(self) -> int:
        return self.times.numel()

    @property
    def alphas_cumprod(self) -> Tensor:
        """DDPM's alpha-bar_t (meaningful for VP processes, where alpha^2 + sigma^2 = 1)."""
        return self.alphas**2

    @property
    def betas(self) -> Tensor:
        """DDPM's beta_t = 1 - alpha-bar_t / alpha-bar_{t-1} (VP processes)."""
        abar = self.alphas_cumprod
        prev = torch.cat([abar.new_ones(1), abar[:-1]])
        return 1.0 - abar / prev


class Process(ABC):
    """A forward process with marginals ``q(x_t | x_0) = N(alpha(t) x_0, sigma(t)^2 I)``."""

    name: str = "process"
    t_min: float = 1e-3
    """Smallest time samplers integrate down to (Score SDE's epsilon)."""
    solver_spacing: str = "quadratic"
    """Default time grid of the few-step ODE solver (dpm-solver++): the spacing measured most
    accurate at 10-20 evaluations on exact 2-D mixture oracles for this process (see
    ``benchmarks/samplers.py``)."""

    # ----------------------------------------------------------------- to override
    @abstractmethod
    def log_alpha(self, t: Tensor) -> Tensor:
        """log alpha(t)."""

    @abstractmethod
    def sigma(self, t: Tensor) -> Tensor:
        """Noise standard deviation sigma(t)."""

    @abstractmethod
    def dlog_alpha_dt(self, t: Tensor) -> Tensor:
        """f(t) = d log alpha / dt: the SDE's linear drift coefficient."""

    @abstractmethod
    def dsigma2_dt(self, t: Tensor) -> Tensor:
        """d sigma(t)^2 / dt."""

    @abstractmethod
    def build_discrete(self) -> DiscreteSchedule:
        """Build the paper's discrete grid (called once; see :meth:`discrete`)."""

    def discrete(self) -> DiscreteSchedule:
        """The paper's discrete grid (built once: processes do not change after construction)."""
        cached = self.__dict__.get("_discrete")
        if cached is None:
            cached = self.__dict__["_discrete"] = self.build_discrete()
        return cached

    # ----------------------------------------------------------------- derived
    @property
    def t_max(self) -> float:
        """Largest time samplers start from (1, or the last grid time where alpha(1) = 0)."""
        return 1.0

    def alpha(self, t: Tensor | float) -> Tensor:
        """Signal scale alpha(t)."""
        return torch.exp(self.log_alpha(_as_tensor(t)))

    def g2(self, t: Tensor | float) -> Tensor:
        """Squared diffusion coefficient g(t)^2 = d sigma^2/dt - 2 f(t) sigma^2."""
        t = _as_tensor(t)
        return self.dsigma2_dt(t) - 2.0 * self.dlog_alpha_dt(t) * self.sigma(t) ** 2

    def sde_coefficients(self, t: float) -> tuple[float, float]:
        """(f(t), g(t)^2) as Python floats, computed in float64: the scalars a solver needs."""
        tt = torch.tensor(float(t), dtype=torch.float64)
        return float(self.dlog_alpha_dt(tt)), float(self.g2(tt))

    def diffusion(self, t: Tensor | float) -> Tensor:
        """Diffusion coefficient g(t) of the forward SDE."""
        return self.g2(t).clamp_min(0.0).sqrt()

    def drift(self, x: Tensor, t: Tensor | float) -> Tensor:
        """Forward SDE drift f(t) x."""
        return broadcast_like(self.dlog_alpha_dt(_as_tensor(t)), x) * x

    def log_snr(self, t: Tensor | float) -> Tensor:
        """lambda(t) = log(alpha^2 / sigma^2), decreasing in t."""
        t = _as_tensor(t)
        return 2.0 * (self.log_alpha(t) - torch.log(self.sigma(t)))

    def t_from_log_snr(self, lam: Tensor) -> Tensor:
        """Inverse of :meth:`log_snr` (bisection in float64; subclasses may override)."""
        lam = lam.to(torch.float64)
        lo = torch.zeros_like(lam)
        hi = torch.full_like(lam, self.t_max)
        for _ in range(64):
            mid = 0.5 * (lo + hi)
            above = self.log_snr(mid) > lam  # log-SNR decreases: target lies later
            lo = torch.where(above, mid, lo)
            hi = torch.where(above, hi, mid)
        return 0.5 * (lo + hi)

    def marginal(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """Sample x_t = alpha(t) x0 + sigma(t) noise (t of shape (N,) or scalar)."""
        return broadcast_like(self.alpha(t), x0) * x0 + broadcast_like(self.sigma(t), x0) * noise

    @property
    def prior_std(self) -> float:
        """Standard deviation of the Gaussian prior at t_max (computed once)."""
        if "_prior_std" not in self.__dict__:
            t = torch.tensor(self.t_max, dtype=torch.float64)
            self.__dict__["_prior_std"] = float(torch.sqrt(self.alpha(t) ** 2 + self.sigma(t) ** 2))
        return self.__dict__["_prior_std"]

    def prior_sample(
        self,
        shape: tuple[int, ...],
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Draw x_T ~ N(0, prior_std^2 I)."""
        z = torch.randn(shape, generator=generator, dtype=dtype, device=device)
        return self.prior_std * z

    def prior_log_prob(self, x: Tensor) -> Tensor:
        """log N(x; 0, prior_std^2 I), summed over all but the first dimension."""
        d = x[0].numel()
        s2 = self.prior_std**2
        sq = x.reshape(x.shape[0], -1).pow(2).sum(-1)
        return -0.5 * sq / s2 - 0.5 * d * math.log(2 * math.pi * s2)

    def options(self) -> dict[str, Any]:
        """Constructor options (for configs and ``repr``)."""
        return {}

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v}" for k, v in self.options().items())
        return f"{type(self).__name__}({opts})"


class VPLinear(Process):
    """Variance preserving with linear beta(t) (DDPM eq. 4 & Sec. 4; Score SDE eq. 11 and 32).

    ``alpha(t) = exp(-(beta_min t + (beta_max - beta_min) t^2 / 2) / 2)``, ``sigma^2 = 1 - alpha^2``.
    The discrete table has ``betas = linspace(beta_min/T, beta_max/T, T)`` (DDPM: 1e-4 to 0.02
    for T = 1000) and ``alpha-bar = cumprod(1 - betas)``.
    """

    name = "vp-linear"

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, num_steps: int = 1000):
        if not 0 < beta_min <= beta_max:
            raise ValueError(
                f"vp-linear needs 0 < beta_min <= beta_max, got {beta_min}, {beta_max}"
            )
        if int(num_steps) != num_steps or num_steps < 1 or beta_max / num_steps >= 1:
            raise ValueError(
                f"vp-linear's table has betas up to beta_max / num_steps = {beta_max}/{num_steps},"
                f" which must be < 1: use num_steps > {int(beta_max)} (or a smaller beta_max)"
            )
        self.beta_min, self.beta_max, self.num_steps = float(beta_min), float(beta_max), num_steps

    def options(self) -> dict[str, Any]:
        return {"beta_min": self.beta_min, "beta_max": self.beta_max, "num_steps": self.num_steps}

    def _integral(self, t: Tensor) -> Tensor:
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2

    def log_alpha(self, t: Tensor) -> Tensor:
        return -0.5 * self._integral(_as_tensor(t))

    def sigma(self, t: Tensor) -> Tensor:
        return torch.sqrt(-torch.expm1(-self._integral(_as_tensor(t))))

    def dlog_alpha_dt(self, t: Tensor) -> Tensor:
        return -0.5 * (self.beta_min + (self.beta_max - self.beta_min) * _as_tensor(t))

    def dsigma2_dt(self, t: Tensor) -> Tensor:
        t = _as_tensor(t)
        return -2.0 * self.dlog_alpha_dt(t) * torch.exp(-self._integral(t))

    def _t_from_integral(self, c: Tensor) -> Tensor:
        slope = self.beta_max - self.beta_min
        if slope == 0:
            return c / self.beta_min
        return (torch.sqrt(self.beta_min**2 + 2 * slope * c) - self.beta_min) / slope

    def t_from_log_snr(self, lam: Tensor) -> Tensor:
        # lambda = -log(e^I - 1)  =>  I = log1p(e^-lambda)
        return self._t_from_integral(torch.nn.functional.softplus(-lam.to(torch.float64)))

    def build_discrete(self) -> DiscreteSchedule:
        T = self.num_steps
        betas = torch.linspace(self.beta_min / T, self.beta_max / T, T, dtype=torch.float64)
        return _vp_schedule_from_betas(betas, self._t_from_integral)


def _vp_schedule_from_betas(betas: Tensor, t_from_integral) -> DiscreteSchedule:
    """VP table from betas, each entry at the time where int_0^t beta = -log alpha-bar."""
    log_abar = torch.cumsum(torch.log1p(-betas), 0)
    times = t_from_integral(-log_abar)
    return DiscreteSchedule(
        times=times, alphas=torch.exp(0.5 * log_abar), sigmas=torch.sqrt(-torch.expm1(log_abar))
    )


class VPTable(Process):
    """A VP process defined by a beta table: beta(t) is piecewise constant between grid times
    i/T so that alpha-bar at t = (i+1)/T equals cumprod(1 - betas)[i] exactly.

    Used for CSDI's quadratic schedule (Tashiro et al. 2021, Sec. 4; T = 50, 1e-4 to 0.5).
    """

    name = "vp-table"

    def __init__(self, betas: Tensor, name: str | None = None, opts: dict | None = None):
        betas = torch.as_tensor(betas, dtype=torch.float64)
        if betas.dim() != 1 or not ((betas > 0) & (betas < 1)).all():
            raise ValueError("a VP beta table must be 1-D with entries in (0, 1)")
        self.betas = betas
        self.num_steps = betas.numel()
        # Integral I(t) = -log alpha-bar(t), piecewise linear through the knots.
        self._knots = torch.cat([betas.new_zeros(1), -torch.cumsum(torch.log1p(-betas), 0)])
        self._rates = -torch.log1p(-betas) * self.num_steps  # beta(t) on each segment
        if name is not None:
            self.name = name
        self._opts = opts or {}

    def options(self) -> dict[str, Any]:
        return dict(self._opts)

    def _segment(self, t: Tensor) -> tuple[Tensor, Tensor]:
        T = self.num_steps
        idx = torch.clamp((t.detach().to(torch.float64) * T).floor().long(), 0, T - 1)
        return idx, t - idx.to(t.dtype) / T

    def _integral(self, t: Tensor) -> Tensor:
        t = _as_tensor(t)
        idx, frac = self._segment(t)
        return self._knots.to(t)[idx] + self._rates.to(t)[idx] * frac

    def log_alpha(self, t: Tensor) -> Tensor:
        return -0.5 * self._integral(t)

    def sigma(self, t: Tensor) -> Tensor:
        return torch.sqrt(-torch.expm1(-self._integral(t)))

    def dlog_alpha_dt(self, t: Tensor) -> Tensor:
        t = _as_tensor(t)
        return -0.5 * self._rates.to(t)[self._segment(t)[0]]

    def dsigma2_dt(self, t: Tensor) -> Tensor:
        t = _as_tensor(t)
        return -2.0 * self.dlog_alpha_dt(t) * torch.exp(-self._integral(t))

    def build_discrete(self) -> DiscreteSchedule:
        T = self.num_steps
        times = torch.arange(1, T + 1, dtype=torch.float64) / T
        log_abar = -self._knots[1:]
        return DiscreteSchedule(
            times=times, alphas=torch.exp(0.5 * log_abar), sigmas=torch.sqrt(-torch.expm1(log_abar))
        )


class VPCosine(Process):
    """Cosine schedule of improved DDPM (Nichol & Dhariwal 2021, eq. 17).

    ``alpha-bar(t) = f(t)/f(0)``, ``f(t) = cos^2(((t + s)/(1 + s)) pi/2)``. The discrete table
    uses ``beta_i = min(1 - alpha-bar(i/T)/alpha-bar((i-1)/T), max_beta)``. Because alpha(1) = 0,
    continuous samplers start at the last grid time (``t_max``) instead of 1.
    """

    name = "vp-cosine"
    solver_spacing = "time"  # log-SNR wastes steps where alpha ~ 0; quadratic is 4x worse at 10

    def __init__(self, s: float = 0.008, num_steps: int = 1000, max_beta: float = 0.999):
        self.s, self.num_steps, self.max_beta = float(s), num_steps, float(max_beta)
        self._half_pi = math.pi / 2
        self._log_f0 = 2 * math.log(math.cos(self.s / (1 + self.s) * self._half_pi))

    def options(self) -> dict[str, Any]:
        return {"s": self.s, "num_steps": self.num_steps, "max_beta": self.max_beta}

    def _angle(self, t: Tensor) -> Tensor:
        return (_as_tensor(t) + self.s) / (1 + self.s) * self._half_pi

    def log_alpha(self, t: Tensor) -> Tensor:
        # clamp: in float32 cos(pi/2) rounds slightly negative; alpha(1) = 0 exactly
        return torch.log(torch.cos(self._angle(t)).clamp_min(0.0)) - 0.5 * self._log_f0

    def sigma(self, t: Tensor) -> Tensor:
        return torch.sqrt((-torch.expm1(2 * self.log_alpha(t))).clamp_min(0.0))

    def dlog_alpha_dt(self, t: Tensor) -> Tensor:
        return -torch.tan(self._angle(t)) * self._half_pi / (1 + self.s)

    def dsigma2_dt(self, t: Tensor) -> Tensor:
        t = _as_tensor(t)
        return -2.0 * self.dlog_alpha_dt(t) * torch.exp(2 * self.log_alpha(t))

    def _t_from_log_alpha(self, log_alpha: Tensor) -> Tensor:
        angle = torch.acos(torch.exp(log_alpha + 0.5 * self._log_f0).clamp(max=1.0))
        return angle / self._half_pi * (1 + self.s) - self.s

    def t_from_log_snr(self, lam: Tensor) -> Tensor:
        # alpha^2 = sigmoid(lambda) for VP processes
        return self._t_from_log_alpha(0.5 * torch.nn.functional.logsigmoid(lam.to(torch.float64)))

    @property
    def t_max(self) -> float:
        return float(self.discrete().times[-1])

    def build_discrete(self) -> DiscreteSchedule:
        T = self.num_steps
        grid = torch.arange(T + 1, dtype=torch.float64) / T
        abar = torch.exp(2 * self.log_alpha(grid))
        betas = torch.clamp(1 - abar[1:] / abar[:-1], max=self.max_beta)
        log_abar = torch.cumsum(torch.log1p(-betas), 0)
        return DiscreteSchedule(
            times=self._t_from_log_alpha(0.5 * log_abar),
            alphas=torch.exp(0.5 * log_abar),
            sigmas=torch.sqrt(-torch.expm1(log_abar)),
        )


class SubVP(VPLinear):
    """Sub-VP SDE (Score SDE eq. 29): VP drift, ``sigma(t) = 1 - alpha(t)^2``,
    ``g(t)^2 = beta(t) (1 - exp(-2 int_0^t beta))``. Its grid is uniform in t."""

    name = "sub-vp"

    def sigma(self, t: Tensor) -> Tensor:
        return -torch.expm1(-self._integral(_as_tensor(t)))

    def dsigma2_dt(self, t: Tensor) -> Tensor:
        t = _as_tensor(t)
        # d/dt (1 - e^{-I})^2 = 2 (1 - e^{-I}) e^{-I} beta(t)
        e = torch.exp(-self._integral(t))
        return 2 * (1 - e) * e * (-2 * self.dlog_alpha_dt(t))

    def t_from_log_snr(self, lam: Tensor) -> Tensor:
        return Process.t_from_log_snr(self, lam)

    def build_discrete(self) -> DiscreteSchedule:
        times = torch.arange(1, self.num_steps + 1, dtype=torch.float64) / self.num_steps
        return DiscreteSchedule(times=times, alphas=self.alpha(times), sigmas=self.sigma(times))


class VE(Process):
    """Variance exploding (NCSN, Song & Ermon 2019; Score SDE eq. 9 and 30).

    ``alpha = 1``, ``sigma(t) = sigma_min (sigma_max/sigma_min)^t``; the grid is NCSN's
    geometric ladder of ``num_steps`` levels between sigma_min and sigma_max.
    """

    name = "ve"
    t_min = 0.0
    solver_spacing = "log-snr"  # = uniform t here (geometric sigmas); quadratic crowds low noise

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, num_steps: int = 1000):
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"ve needs 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.sigma_min, self.sigma_max, self.num_steps = (
            float(sigma_min),
            float(sigma_max),
            num_steps,
        )
        self._log_ratio = math.log(self.sigma_max / self.sigma_min)

    def options(self) -> dict[str, Any]:
        return {
            "sigma_min": self.sigma_min,
            "sigma_max": self.sigma_max,
            "num_steps": self.num_steps,
        }

    def log_alpha(self, t: Tensor) -> Tensor:
        return 0.0 * _as_tensor(t)

    def sigma(self, t: Tensor) -> Tensor:
        return self.sigma_min * torch.exp(self._log_ratio * _as_tensor(t))

    def dlog_alpha_dt(self, t: Tensor) -> Tensor:
        return torch.zeros_like(_as_tensor(t))

    def dsigma2_dt(self, t: Tensor) -> Tensor:
        return 2 * self._log_ratio * self.sigma(t) ** 2

    def t_from_log_snr(self, lam: Tensor) -> Tensor:
        return (-0.5 * lam.to(torch.float64) - math.log(self.sigma_min)) / self._log_ratio

    @property
    def prior_std(self) -> float:
        return self.sigma_max

    def build_discrete(self) -> DiscreteSchedule:
        times = torch.linspace(0, 1, self.num_steps, dtype=torch.float64)
        return DiscreteSchedule(
            times=times, alphas=torch.ones_like(times), sigmas=self.sigma(times)
        )


def _vp_quadratic(beta_start: float = 1e-4, beta_end: float = 0.5, num_steps: int = 50) -> VPTable:
    betas = torch.linspace(beta_start**0.5, beta_end**0.5, num_steps, dtype=torch.float64) ** 2
    opts = {"beta_start": beta_start, "beta_end": beta_end, "num_steps": num_steps}
    return VPTable(betas, name="vp-quadratic", opts=opts)


def _vp_reciprocal(num_steps: int = 40, step1_beta: float = 1e-3) -> VPTable:
    """Sohl-Dickstein et al. 2015's schedule: ``beta_t = 1 / (T - (t - 1)(T - 2)/(T - 1))``,
    i.e. 1/T rising to 1/2 (each step removes about the same share of the *remaining* signal, so
    alpha-bar_T ~ 1/T), with ``step1_beta`` added to beta_1 (their code's floor on the first
    step's variance). T = 40 for their swiss roll."""
    if int(num_steps) != num_steps or num_steps < 2:
        raise ValueError(f"vp-reciprocal needs num_steps >= 2, got {num_steps!r}")
    betas = 1.0 / torch.linspace(float(num_steps), 2.0, int(num_steps), dtype=torch.float64)
    betas[0] += step1_beta
    opts = {"num_steps": num_steps, "step1_beta": step1_beta}
    return VPTable(betas, name="vp-reciprocal", opts=opts)


PROCESSES = {
    "vp-linear": VPLinear,
    "vp-cosine": VPCosine,
    "vp-quadratic": _vp_quadratic,
    "vp-reciprocal": _vp_reciprocal,
    "sub-vp": SubVP,
    "ve": VE,
}


def make_process(name: str, **options: Any) -> Process:
    """Build a forward process by name (``vp-linear``, ``vp-cosine``, ``vp-quadratic``,
    ``vp-reciprocal``, ``sub-vp``, ``ve``); ``options`` go to its constructor."""
    if name not in PROCESSES:
        raise ValueError(f"unknown process {name!r}; valid: {', '.join(PROCESSES)}")
    try:
        return PROCESSES[name](**options)
    except TypeError as err:
        raise ValueError(f"bad options for process {name!r}: {err}") from None
