"""Sohl-Dickstein, Weiss, Maheswaranathan & Ganguli 2015, "Deep Unsupervised Learning using
Nonequilibrium Thermodynamics" (ICML 2015, arXiv:1503.03585): the original diffusion model.

A forward Gaussian diffusion ``q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I)`` (eq. 2,
their schedule ``vp-reciprocal``, T = 40 on the swiss roll) turns the data into N(0, I); a learned
reverse process ``p(x_{t-1} | x_t) = N(f_mu(x_t, t), f_Sigma(x_t, t))`` (eq. 5) with a learned mean
*and* covariance undoes it. Training maximises the bound of eq. 14, the log-likelihood split into
one KL divergence per step. In diffusio this model is a :class:`~diffusio.core.model.DiffusionModel`
with ``variance="learned"`` trained with the ``vlb`` weighting (:mod:`diffusio.core.vlb`), whose
bound is the exact form of eq. 14: the last reverse step is a learned Gaussian decoder and the
prior term a KL, so it bounds -log p(x0) for any forward schedule.

``reproduce`` trains it on the swiss roll, draws the paper's Figure 1 (forward and reverse
snapshots and the drift field), and measures the bound in nats next to the swiss roll's exact
entropy (:func:`diffusio.data.toys.toy_entropy`), plus an ablation of the learned covariance.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..core.model import DiffusionModel
from ..core.vlb import reverse_kernel, vlb
from ..data.toys import sample_toy, toy_entropy
from ..metrics import mmd, sliced_wasserstein, with_noise_floor
from ..plotting import new_figure, scatter_panels
from ..threads import torch_threads
from ..train.config import TrainConfig, load_config
from .report import Report
from .runs import train_or_load

__all__ = ["DEFAULT", "QUICK", "Settings", "make_config", "reproduce", "reverse_chain"]

NAME = "sohl-dickstein-2015"
TITLE = (
    "Deep Unsupervised Learning using Nonequilibrium Thermodynamics "
    "(Sohl-Dickstein, Weiss, Maheswaranathan & Ganguli 2015)"
)
REFERENCE = "ICML 2015, arXiv:1503.03585. Reproduced: Figure 1 and the swiss-roll row of Table 1."
#: Table 1, swiss roll: the bound K on the log-likelihood and its gain over an isotropic
#: Gaussian, K - L_null, in bits (data scaled to unit variance).
PAPER_K_BITS, PAPER_GAIN_BITS = 2.35, 6.45
NUM_STEPS = 40  # T for the swiss roll (paper, Appendix D.1.1)
#: MMD bandwidth in data units: the swiss roll's noise standard deviation.
BANDWIDTH = 0.2


@dataclass(frozen=True)
class Settings:
    """Scale of a run: training steps, network size and evaluation sample sizes."""

    steps: int
    hidden: int = 256
    depth: int = 3
    n_bound: int = 2000  # held-out points for the bound
    n_samples: int = 4000  # samples for the metrics and figures
    seed: int = 0


QUICK = Settings(steps=2500, n_bound=1000, n_samples=2000)
DEFAULT = Settings(steps=20_000, n_bound=4000, n_samples=5000)


def make_config(settings: Settings) -> TrainConfig:
    """The swiss-roll run: vp-reciprocal (T = 40), learned variance, trained on the bound."""
    return load_config(
        "toy-swissroll",
        steps=settings.steps,
        process="vp-reciprocal",
        process_options={"num_steps": NUM_STEPS},
        variance="learned",
        weighting="vlb",
        time_sampler="discrete",
        net_options={"hidden": settings.hidden, "depth": settings.depth},
        save_every=max(settings.steps // 4, 1),
        seed=settings.seed,
        description=NAME,
    )


# ---------------------------------------------------------------------------- the model's parts
@torch.no_grad()
def reverse_chain(model: DiffusionModel, n: int, seed: int) -> list[Tensor]:
    """Ancestral samples of the learned reverse process (eq. 5), every state kept:
    ``[x_T, x_{T-1}, ..., x_0]`` (x_T from the N(0, I) prior; the last step draws from the
    learned Gaussian decoder p(x_0 | x_1), so x_0 is a sample of the model's density)."""
    gen = torch.Generator().manual_seed(seed)
    T = len(model.process.discrete())
    x = torch.randn(n, model.net.dim, generator=gen, dtype=model.dtype)
    states = [x]
    for i in range(T - 1, -1, -1):
        index = torch.full((n,), i, dtype=torch.long)
        mean, logvar, _ = reverse_kernel(model, x, index)
        x = mean + torch.exp(0.5 * logvar) * torch.randn(x.shape, generator=gen, dtype=x.dtype)
        states.append(x)
    return states


class _FixedVariance(nn.Module):
    """The trained network with its variance output replaced by a constant ``v``: -1 is the
    posterior variance beta-tilde, +1 the forward beta (the two fixed choices of DDPM)."""

    def __init__(self, net: nn.Module, v: float):
        super().__init__()
        self.inner, self.v = net, v

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        out = self.inner(x, t)
        mean_part = out[:, : x.shape[1]]
        return torch.cat([mean_part, torch.full_like(mean_part, self.v)], dim=1)


def with_fixed_variance(model: DiffusionModel, v: float) -> DiffusionModel:
    """``model`` with its learned variance replaced by a fixed one (see :class:`_FixedVariance`)."""
    return DiffusionModel(
        _FixedVariance(model.net, v), model.process, model.prediction, variance="learned"
    )


def bound_nats(model: DiffusionModel, normalizer: Any, x: Tensor, seed: int) -> dict[str, Any]:
    """The bound on -log p(x) in nats of the *data* (the standardization's Jacobian added back):
    per-row totals, the mean per-step terms [L_0, ..., L_{T-1}] and the prior term L_T."""
    y = normalizer.transform(x).to(model.dtype)
    out = vlb(model, y, generator=torch.Generator().manual_seed(seed))
    total = out["total"] - normalizer.log_det_jacobian()
    n = total.numel()
    return {
        "mean": float(total.mean()),
        "stderr": float(total.std()) / math.sqrt(n),
        "terms": out["terms"].mean(0).tolist(),
        "prior": float(out["prior"].mean()),
        "normalized_mean": float(out["total"].mean()),
    }


@torch.no_grad()
def drift(model: DiffusionModel, grid: Tensor, index: int) -> Tensor:
    """The reverse drift ``f_mu(x, t) - x`` at table index ``index`` (Figure 1, bottom row)."""
    mean, _, _ = reverse_kernel(model, grid, torch.full((grid.shape[0],), index))
    return mean - grid


# ---------------------------------------------------------------------------- figures
def figure_one(
    model: DiffusionModel, normalizer: Any, data: Tensor, chain: list[Tensor], seed: int
) -> Any:
    """Figure 1 of the paper: q at t = 0, T/2, T (top), the learned p at the same times
    (middle), and the drift f_mu(x_t, t) - x_t (bottom), in normalized coordinates."""
    table = model.process.discrete()
    T = len(table)
    y = normalizer.transform(data).to(model.dtype)
    gen = torch.Generator().manual_seed(seed)
    columns = [(0, "t = 0"), (T // 2, f"t = T/2 = {T // 2}"), (T, f"t = T = {T}")]
    fig = new_figure(9.0, 9.0)
    axes = fig.subplots(3, 3)
    lim = 3.0
    axis = torch.linspace(-2.0, 2.0, 19, dtype=model.dtype)  # where the data are
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), -1).reshape(-1, 2)
    for col, (t, label) in enumerate(columns):
        if t == 0:
            forward = y
        else:
            a, s = float(table.alphas[t - 1]), float(table.sigmas[t - 1])
            forward = a * y + s * torch.randn(y.shape, generator=gen, dtype=y.dtype)
        reverse = chain[T - t]
        for row, (points, name) in enumerate(((forward, "q"), (reverse, "p"))):
            ax = axes[row, col]
            pts = points[:2000].cpu().numpy()
            ax.scatter(pts[:, 0], pts[:, 1], s=1.0, alpha=0.4, linewidths=0, color=f"C{row}")
            ax.set_title(f"{name}(x), {label}", fontsize=9)
        ax = axes[2, col]
        index = max(t - 1, 0)  # the step that leaves x_t
        d = drift(model, grid, index).cpu().numpy()
        g = grid.cpu().numpy()
        ax.quiver(g[:, 0], g[:, 1], d[:, 0], d[:, 1], angles="xy", color="C3", width=0.004)
        ax.set_title(f"drift f_mu(x, t) - x, {label}", fontsize=9)
    for ax in axes.ravel():
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.tick_params(labelsize=6)
    fig.suptitle("Swiss roll: forward diffusion q, learned reverse p, and its drift", fontsize=11)
    fig.tight_layout()
    return fig


def figure_terms(ablation: dict[str, dict[str, Any]]) -> Any:
    """Per-step terms of the bound (nats) for learned and fixed reverse variances."""
    fig = new_figure(7.0, 4.0)
    ax = fig.subplots()
    for label, result in ablation.items():
        terms = result["terms"]
        ax.plot(range(len(terms)), terms, marker=".", label=f"{label}: {result['mean']:.3f} nats")
    ax.axhline(0.0, color="k", lw=0.5)
    ax.set_yscale("symlog", linthresh=0.01)
    ax.set_xlabel("step t (0 = the decoder -log p(x0 | x1))")
    ax.set_ylabel("mean term of the bound (nats)")
    ax.set_title("The bound split into per-step KL terms (eq. 14)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------- the reproduction
def _verdict(ratio: float, good: float, fair: float) -> str:
    if ratio <= good:
        return "reproduced"
    return "partly reproduced" if ratio <= fair else "not reproduced"


def reproduce(
    out_dir: str | os.PathLike, quick: bool = False, settings: Settings | None = None
) -> dict[str, Any]:
    """Train the 2015 model on the swiss roll and write the report (see the module docstring).

    ``settings`` overrides the scale (tests use a tiny one); by default :data:`QUICK` or
    :data:`DEFAULT`.
    """
    settings = settings or (QUICK if quick else DEFAULT)
    with torch_threads(1):  # 2-D work: one thread is faster (diffusio.threads)
        return _reproduce(out_dir, quick, settings)


def _reproduce(out_dir: str | os.PathLike, quick: bool, settings: Settings) -> dict[str, Any]:
    seed = settings.seed
    report = Report(NAME, TITLE, REFERENCE, out_dir, quick, scale=_scale_text(settings))
    config = make_config(settings)
    print(f"[{NAME}] training the learned-covariance reverse process ({settings.steps} steps)")
    model, normalizer, summary = train_or_load(config, out_dir, "swissroll")
    model = model.double()
    held_out = sample_toy("swissroll", settings.n_bound, seed=seed + 101)
    entropy = float(toy_entropy("swissroll"))

    print(f"[{NAME}] the bound on {settings.n_bound} held-out points, three reverse variances")
    ablation = {
        "learned covariance": bound_nats(model, normalizer, held_out, seed + 1),
        "fixed beta-tilde (v = -1)": bound_nats(
            with_fixed_variance(model, -1.0), normalizer, held_out, seed + 1
        ),
        "fixed beta (v = +1)": bound_nats(
            with_fixed_variance(model, 1.0), normalizer, held_out, seed + 1
        ),
    }
    learned = ablation["learned covariance"]

    print(f"[{NAME}] sampling {settings.n_samples} points through the learned reverse chain")
    chain = reverse_chain(model, settings.n_samples, seed + 2)
    samples = normalizer.inverse(chain[-1].float())

    def reference(n: int, s: int) -> Tensor:
        return sample_toy("swissroll", n, seed=seed + 1000 + s)

    sw = with_noise_floor(sliced_wasserstein, samples, reference, seed=seed)
    md = with_noise_floor(mmd, samples, reference, seed=seed, repeats=5, bandwidth=BANDWIDTH)

    # Table 1's units: bits, on data scaled to unit variance; L_null = isotropic unit Gaussian.
    dim = 2
    null_nll = 0.5 * dim * (1 + math.log(2 * math.pi))
    k_bits = -learned["normalized_mean"] / math.log(2)
    gain_bits = (null_nll - learned["normalized_mean"]) / math.log(2)
    best_k_bits = -(entropy + normalizer.log_det_jacobian()) / math.log(2)
    gap = learned["mean"] - entropy

    report.metrics.update(
        {
            "settings": asdict(settings),
            "train_seconds": summary["train_seconds"],
            "entropy_nats": entropy,
            "bound_nats": learned["mean"],
            "bound_stderr": learned["stderr"],
            "bound_gap_nats": gap,
            "K_bits_normalized": k_bits,
            "K_minus_Lnull_bits": gain_bits,
            "best_possible_K_bits": best_k_bits,
            "prior_term_nats": learned["prior"],
            "ablation": {
                k: {"mean": v["mean"], "stderr": v["stderr"]} for k, v in ablation.items()
            },
            "per_step_terms_nats": learned["terms"],
            "sliced_wasserstein": sw,
            "mmd2": md,
            "mmd_bandwidth": BANDWIDTH,
        }
    )
    tightening = ablation["fixed beta-tilde (v = -1)"]["mean"] - learned["mean"]
    best_gain_bits = best_k_bits + null_nll / math.log(2)
    report.claim(
        "a bound K on the swiss roll's log-likelihood far above an isotropic Gaussian's "
        "(Table 1; data at unit variance)",
        f"K = {PAPER_K_BITS} bits; K - L_null = {PAPER_GAIN_BITS} bits",
        f"K = {k_bits:.2f} bits; K - L_null = {gain_bits:.2f} bits, of at most "
        f"{best_gain_bits:.2f} possible on our data (its exact entropy)",
        f"{gain_bits / best_gain_bits:.0%} of our ceiling. Not comparable in absolute terms: "
        f"K = {PAPER_K_BITS} bits implies an entropy <= {-PAPER_K_BITS * math.log(2):.2f} nats "
        "for the paper's standardized roll, far thinner than FFJORD's (noise 0.2), whose best "
        f"K is {best_k_bits:.2f} bits",
        _verdict(1.0 - gain_bits / best_gain_bits, 0.1, 0.3),
    )
    report.claim(
        "the bound is close to the true -log-likelihood",
        "not measured (no entropy given)",
        f"{learned['mean']:.3f} +/- {learned['stderr']:.3f} nats vs entropy {entropy:.4f}",
        f"{gap:+.3f} nats (a valid bound is >= the entropy up to Monte Carlo error)",
        _verdict(gap, 0.15, 0.4),
    )
    report.claim(
        "learning the reverse covariance, not only the mean (eq. 5)",
        "both mean and covariance are learned",
        f"learned covariance tightens the bound by {tightening:.3f} nats over fixed beta-tilde",
        "-",
        "reproduced" if tightening > 2 * learned["stderr"] else "partly reproduced",
    )
    mmd_ratio = md["value"] / md["floor"]
    report.claim(
        "40 small Gaussian steps reverse the diffusion: samples match the data (Figure 1)",
        "visual (Figure 1)",
        f"MMD^2 {md['value']:.2e} vs its noise floor {md['floor']:.2e} (bandwidth {BANDWIDTH}); "
        f"sliced W {sw['value']:.4f} (floor {sw['floor']:.4f})",
        f"MMD^2 {mmd_ratio:.1f}x its floor",
        _verdict(mmd_ratio, 2.0, 5.0),
    )

    report.section(
        "Figure 1",
        "Top: the forward diffusion q(x^(t)) of the swiss roll at t = 0, T/2, T. Middle: the "
        "learned reverse process p(x^(t)) at the same times, sampled from N(0, I) at t = T. "
        "Bottom: its drift f_mu(x^(t), t) - x^(t). Coordinates are the standardized data.",
    )
    report.figure(
        figure_one(model, normalizer, reference(2000, 7), chain, seed + 3),
        "figure1.png",
        "Forward and learned reverse trajectories on the swiss roll, and the reverse drift",
    )
    report.section(
        "The bound in nats",
        f"Held-out swiss-roll points: {settings.n_bound}; the bound is one Monte Carlo draw of "
        "every x_t per point, with the standardization's log-Jacobian added back so it is in "
        "nats of the data. The swiss roll's entropy (the best any model can do) is computed "
        "exactly by quadrature (`diffusio.data.toys.toy_entropy`).",
    )
    report.table(
        ["reverse variance", "bound (nats)", "+/- s.e.", "gap to entropy", "prior term L_T"],
        [[k, v["mean"], v["stderr"], v["mean"] - entropy, v["prior"]] for k, v in ablation.items()],
    )
    report.figure(figure_terms(ablation), "bound_terms.png", "Per-step terms of the bound")
    report.section("Samples", "Model samples (40 learned Gaussian steps) next to fresh data.")
    report.figure(
        scatter_panels([("data", reference(settings.n_samples, 9)), ("model", samples)]),
        "samples.png",
        "Swiss roll: data and samples of the learned reverse process",
    )
    report.table(
        ["metric", "model vs data", "noise floor (data vs data; MMD: RMS of 5 pairs)"],
        [
            ["sliced Wasserstein", sw["value"], sw["floor"]],
            [f"MMD^2 (bandwidth {BANDWIDTH})", md["value"], md["floor"]],
        ],
    )
    result = report.write()
    print(f"[{NAME}] wrote {report.out_dir / 'report.md'}")
    return result


def _scale_text(settings: Settings) -> str:
    return (
        "Paper: the swiss roll with T = 40 steps, reverse mean and covariance from a radial-basis "
        "network, the forward schedule partly learned; images (MNIST, CIFAR-10, bark, dead leaves) "
        "with a multi-scale convolutional network. Here: the FFJORD swiss roll (2-D, noise 0.2, "
        f"standardized), T = {NUM_STEPS} with the paper's baseline schedule fixed "
        "(`vp-reciprocal`), a residual MLP "
        f"(hidden {settings.hidden}, depth {settings.depth}) outputting the mean (as an eps "
        "prediction) and the variance (interpolated between beta and beta-tilde, improved DDPM's "
        f"form), trained on the bound for {settings.steps} AdamW steps of batch 512."
    )
