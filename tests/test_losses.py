"""Training losses and time distributions, checked against the exact Gaussian-mixture oracle.

Monte Carlo checks compare paired estimates (same seed: same t, noise and data) and use a
tolerance of a few standard errors of the paired differences.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from diffusio.core.losses import REDUCTIONS, WEIGHTINGS, diffusion_loss
from diffusio.core.model import DiffusionModel
from diffusio.core.oracle import GaussianMixture
from diffusio.core.processes import make_process
from diffusio.core.timesteps import (
    TIME_DISTRIBUTIONS,
    DiscreteTime,
    ImportanceTime,
    TimeDistribution,
    UniformTime,
    make_time_distribution,
)

Z = 4.5  # standard errors allowed for a check whose expectation is known exactly


def mixture() -> GaussianMixture:
    return GaussianMixture(
        means=[[-2.0, 0.0], [2.0, 1.0], [0.0, -2.0]],
        stds=[0.5, 0.3, 0.7],
        weights=[0.3, 0.3, 0.4],
    )


def assert_mean(values: torch.Tensor, expected: float, z: float = Z) -> None:
    values = values.detach().to(torch.float64)
    mean = float(values.mean())
    se = float(values.std()) / math.sqrt(values.numel())
    assert abs(mean - expected) <= z * se + 1e-12, (mean, expected, se)


def significantly_positive(values: torch.Tensor, z: float = 6.0) -> bool:
    values = values.detach().to(torch.float64)
    se = float(values.std()) / math.sqrt(values.numel())
    return float(values.mean()) > z * se


class Recorder(nn.Module):
    """Pass-through network that remembers every (x, t) it was called with."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x, t, **cond):
        self.calls.append((x.detach().clone(), t.detach().clone()))
        return self.net(x, t, **cond)


class Perturbed(nn.Module):
    """The wrapped network's output plus ``fn(x)``."""

    def __init__(self, net: nn.Module, fn):
        super().__init__()
        self.net, self.fn = net, fn

    def forward(self, x, t, **cond):
        return self.net(x, t, **cond) + self.fn(x)


def per_example(model, x0, seed, **options):
    gen = torch.Generator().manual_seed(seed)
    return diffusion_loss(model, x0, generator=gen, return_per_example=True, **options)


# --------------------------------------------------------------------------- oracle optimality
@pytest.mark.parametrize("kind", ["eps", "x0", "v", "score"])
def test_oracle_minimises_simple_loss(kind):
    process = make_process("vp-linear")
    mix = mixture()
    x0 = mix.sample(40_000, seed=0)
    oracle = mix.model(process, kind, dtype=torch.float64)
    rec = Recorder(oracle.net)
    base = per_example(DiffusionModel(rec, process, kind), x0, seed=1)
    sigma = process.sigma(rec.calls[0][1])
    c2 = sigma**2 if kind == "score" else torch.ones_like(sigma)  # d(target scale)^2
    for delta in (0.1, -0.1):
        shifted = DiffusionModel(Perturbed(oracle.net, lambda x, d=delta: d), process, kind)
        diff = per_example(shifted, x0, seed=1) - base
        assert significantly_positive(diff)
        # E[diff] = delta^2 E[c^2]: the cross term vanishes because the oracle is E[target | x_t].
        assert_mean(diff - delta**2 * c2, 0.0)


@pytest.mark.parametrize("weighting", [w for w in WEIGHTINGS if w != "hybrid"])
@pytest.mark.parametrize("process_name", ["vp-cosine", "ve"])
def test_oracle_minimises_every_weighting(weighting, process_name):
    process = make_process(process_name)
    mix = mixture()
    x0 = mix.sample(20_000, seed=2)
    oracle = mix.model(process, "eps", dtype=torch.float64)
    # Keep away from both ends, where the estimates are heavy-tailed: at alpha -> 0 an eps error
    # is a huge x0 error, and at sigma -> 0 the likelihood weight g^2 / sigma^2 ~ 1 / t explodes.
    times = UniformTime(0.05, 0.9 * process.t_max)
    if weighting == "vlb":  # the bound lives on the table: its times in the same window
        grid = process.discrete().times
        times = DiscreteTime(grid[(grid >= 0.05) & (grid <= 0.9 * process.t_max)])
    base = per_example(oracle, x0, seed=3, weighting=weighting, time_distribution=times)
    shifted = DiffusionModel(Perturbed(oracle.net, lambda x: 0.1 * torch.tanh(x)), process, "eps")
    diff = per_example(shifted, x0, seed=3, weighting=weighting, time_distribution=times)
    assert significantly_positive(diff - base, z=4.0)


def test_likelihood_weighting_is_score_matching_with_g2():
    process = make_process("vp-linear")
    mix = mixture()
    x0 = mix.sample(20_000, seed=4)
    oracle = mix.model(process, "score", dtype=torch.float64)
    rec = Recorder(oracle.net)
    base = per_example(DiffusionModel(rec, process, "score"), x0, seed=5, weighting="likelihood")
    x_t, t = rec.calls[0]
    alpha, sigma = process.alpha(t)[:, None], process.sigma(t)[:, None]
    g2 = process.g2(t)
    # Per example: 0.5 g^2 ||s_theta - grad log q(x_t | x0)||^2 summed over dimensions.
    cond_score = -(x_t - alpha * x0) / sigma**2
    expected = 0.5 * g2 * ((oracle.score(x_t, t) - cond_score) ** 2).sum(1)
    torch.testing.assert_close(base, expected, rtol=1e-9, atol=1e-9)

    # Up to a theta-independent constant it is 0.5 g^2 ||s_theta - grad log p_t||^2
    # (Song et al. 2021, Thm. 1): differences between two models match in expectation.
    def bump(x):
        return 0.3 * torch.sin(x)

    other = DiffusionModel(Perturbed(oracle.net, bump), process, "score")
    diff = per_example(other, x0, seed=5, weighting="likelihood") - base
    exact = 0.5 * g2 * (bump(x_t) ** 2).sum(1)
    assert significantly_positive(diff)
    assert_mean(diff - exact, 0.0)


def test_weighting_relations_and_reductions():
    process = make_process("vp-linear")
    mix = mixture()
    x0 = mix.sample(512, seed=6)
    eps_model = mix.model(process, "eps", dtype=torch.float64)
    eps_model = DiffusionModel(Perturbed(eps_model.net, torch.tanh), process, "eps")
    simple = per_example(eps_model, x0, seed=7)
    torch.testing.assert_close(per_example(eps_model, x0, seed=7, weighting="sigma2"), 0.5 * simple)

    rec = Recorder(eps_model.net)
    model = DiffusionModel(rec, process, "eps")
    got = per_example(model, x0, seed=7, weighting="x0")
    x_t, t = rec.calls[0]
    x0_pred = model.x0(x_t, t)
    torch.testing.assert_close(got, ((x0_pred - x0) ** 2).mean(1))

    gen = torch.Generator().manual_seed(7)
    mean = diffusion_loss(eps_model, x0, generator=gen)
    assert mean.shape == ()
    torch.testing.assert_close(mean, simple.mean())
    gen = torch.Generator().manual_seed(7)
    torch.testing.assert_close(
        diffusion_loss(eps_model, x0, generator=gen, reduce="sum"), simple.sum()
    )
    gen = torch.Generator().manual_seed(7)
    torch.testing.assert_close(eps_model.loss(x0, generator=gen, reduce="none"), simple)
    assert REDUCTIONS == ("mean", "sum", "none")


def test_loss_trains_a_network_on_images():
    class Scale(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.tensor(0.5))

        def forward(self, x, t, **cond):
            return self.w * x + cond["shift"][:, None, None, None]

    model = DiffusionModel(Scale(), make_process("vp-cosine"), "eps")
    x0 = torch.randn(8, 3, 4, 4)
    times = make_time_distribution("discrete", model.process)
    loss = model.loss(x0, time_distribution=times, cond={"shift": torch.zeros(8)})
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert model.net.w.grad is not None and torch.isfinite(model.net.w.grad)
    for weighting in WEIGHTINGS:
        if weighting != "hybrid":  # needs a learned variance: tested in test_vlb.py
            cond = {"shift": torch.zeros(8)}
            assert torch.isfinite(model.loss(x0, weighting=weighting, cond=cond))


# --------------------------------------------------------------------------- time distributions
def f(t: torch.Tensor) -> torch.Tensor:
    return torch.exp(3.0 * t) + 1.0 / (t + 0.05)


def uniform_mean(a: float, b: float) -> float:
    integral = (math.exp(3 * b) - math.exp(3 * a)) / 3 + math.log((b + 0.05) / (a + 0.05))
    return integral / (b - a)


def skewed(sampler: ImportanceTime) -> ImportanceTime:
    """Fill the sampler's history with losses that grow steeply with the bin index."""
    K = sampler.num_bins
    centers = torch.linspace(sampler.t_min, sampler.t_max, K, dtype=torch.float64)
    for _ in range(sampler.history):
        idx = torch.arange(K)
        t = centers if sampler.grid is None else sampler.grid
        sampler.update(t, (idx + 1.0) ** 2)
    assert sampler.warmed_up
    return sampler


def test_time_distributions_are_unbiased_for_the_uniform_objective():
    n = 200_000
    process = make_process("vp-quadratic")
    grid = process.discrete().times
    a, b = process.t_min, process.t_max
    cases = [
        (UniformTime(a, b), uniform_mean(a, b)),
        (make_time_distribution("uniform", process), uniform_mean(a, b)),
        (DiscreteTime(grid), float(f(grid).mean())),
        (skewed(ImportanceTime(grid)), float(f(grid).mean())),
        (skewed(ImportanceTime(16, a, b, uniform_prob=0.01)), uniform_mean(a, b)),
    ]
    for i, (sampler, truth) in enumerate(cases):
        gen = torch.Generator().manual_seed(10 + i)
        t, w = sampler.sample(n, generator=gen, dtype=torch.float64)
        assert t.shape == w.shape == (n,) and t.dtype == torch.float64
        assert float(t.min()) >= a - 1e-12 and float(t.max()) <= b + 1e-12
        assert_mean(w * f(t), truth)


def test_discrete_time_draws_grid_times_uniformly():
    grid = make_process("vp-quadratic").discrete().times
    t, w = DiscreteTime(grid).sample(50_000, generator=torch.Generator().manual_seed(0))
    assert t.dtype == torch.get_default_dtype() and torch.all(w == 1)
    idx = torch.argmin((t.double()[:, None] - grid[None]).abs(), 1)
    assert torch.allclose(t.double(), grid[idx], atol=1e-6)
    counts = torch.bincount(idx, minlength=grid.numel()).double()
    expected = 50_000 / grid.numel()
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < grid.numel() + 6 * math.sqrt(2 * grid.numel())


def test_importance_time_is_uniform_until_history_fills():
    K, H = 6, 10
    sampler = ImportanceTime(K, 0.0, 1.0, history=H, uniform_prob=0.001)
    centers = (torch.arange(K) + 0.5) / K
    for _ in range(H - 1):
        sampler.update(centers, torch.arange(1.0, K + 1) ** 2)
    sampler.update(centers[:-1], torch.ones(K - 1))  # last bin still one short
    assert not sampler.warmed_up
    uniform = torch.full((K,), 1 / K, dtype=torch.float64)
    torch.testing.assert_close(sampler.probabilities(), uniform)
    t, w = sampler.sample(1000, generator=torch.Generator().manual_seed(0))
    assert torch.all(w == 1)

    sampler.update(centers[-1:], torch.tensor([float(K) ** 2]))
    assert sampler.warmed_up
    rms = torch.sqrt((sampler.state_dict()["losses"] ** 2).mean(1))
    expected = 0.999 * rms / rms.sum() + 0.001 / K
    p = sampler.probabilities()
    torch.testing.assert_close(p, expected)
    assert torch.all(p[1:] > p[:-1])  # more mass on the high-loss bins
    t, w = sampler.sample(100_000, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    counts = torch.bincount(sampler.bin_index(t), minlength=K).double()
    assert torch.all(counts[1:] > counts[:-1])
    torch.testing.assert_close(w, 1.0 / (K * p[sampler.bin_index(t)]))

    # Only the last H losses of a bin count.
    sampler.update(torch.full((H,), centers[0].item()), torch.full((H,), 1000.0))
    assert int(sampler.probabilities().argmax()) == 0

    restored = ImportanceTime(K, 0.0, 1.0, history=H)
    restored.load_state_dict(sampler.state_dict())
    torch.testing.assert_close(restored.probabilities(), sampler.probabilities())


def test_importance_time_learns_from_training_losses():
    process = make_process("vp-quadratic")  # 50 grid times
    mix = mixture()
    oracle = mix.model(process, "eps", dtype=torch.float64)
    sampler = make_time_distribution("importance", process)
    assert sampler.num_bins == 50 and not sampler.warmed_up
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        loss = diffusion_loss(
            oracle,
            mix.sample(1000, seed=1),
            time_distribution=sampler,
            generator=gen,
            weighting="x0",
        )
        assert torch.isfinite(loss)
    assert sampler.warmed_up
    p = sampler.probabilities()
    # The x0 error of the exact denoiser grows with the noise level.
    assert float(p[-10:].sum()) > float(p[:10].sum())
    _, w = sampler.sample(100, generator=gen)
    assert not torch.allclose(w, torch.ones_like(w))


# --------------------------------------------------------------------------- errors
def test_errors():
    process = make_process("vp-linear")
    oracle = mixture().model(process)
    x0 = torch.zeros(5, 2, dtype=torch.float64)

    with pytest.raises(ValueError, match="valid: simple, sigma2, likelihood, x0"):
        diffusion_loss(oracle, x0, weighting="elbo")
    with pytest.raises(ValueError, match="unknown reduce"):
        diffusion_loss(oracle, x0, reduce="max")
    bad = x0.clone()
    bad[3, 1] = float("nan")
    bad[4, 0] = float("inf")
    with pytest.raises(ValueError, match="row 3"):
        diffusion_loss(oracle, bad)
    with pytest.raises(ValueError, match="batch size 4"):
        diffusion_loss(oracle, x0, cond={"y": torch.zeros(4)})
    with pytest.raises(ValueError, match="importance"):
        diffusion_loss(oracle, x0, time_distribution="importance")
    with pytest.raises(TypeError):
        diffusion_loss(oracle, torch.zeros(5, 2, dtype=torch.long))

    with pytest.raises(ValueError, match="valid: uniform, discrete, importance"):
        make_time_distribution("lognormal", process)
    assert TIME_DISTRIBUTIONS == ("uniform", "discrete", "importance")
    with pytest.raises(ValueError, match="bad options"):
        make_time_distribution("discrete", process, bins=3)
    with pytest.raises(ValueError):
        UniformTime(1.0, 0.0)
    with pytest.raises(ValueError):
        DiscreteTime(torch.tensor([0.5, 0.2]))
    with pytest.raises(ValueError):
        ImportanceTime(0)
    with pytest.raises(ValueError):
        UniformTime().sample(0)
    with pytest.raises(ValueError, match="3 times but 2 losses"):
        ImportanceTime(4).update(torch.rand(3), torch.rand(2))


def test_older_time_sampler_names_still_work():
    """``TimeSampler``, ``make_time_sampler``, ``TIME_SAMPLERS`` and ``diffusion_loss(
    time_sampler=)`` are the older names of the time distribution API (callers still use them)."""
    import diffusio
    from diffusio.core import timesteps

    assert timesteps.TimeSampler is TimeDistribution
    assert timesteps.make_time_sampler is make_time_distribution
    assert timesteps.TIME_SAMPLERS == TIME_DISTRIBUTIONS
    assert diffusio.make_time_sampler is diffusio.make_time_distribution is make_time_distribution
    assert isinstance(
        make_time_distribution("discrete", make_process("vp-linear")), TimeDistribution
    )

    process = make_process("vp-linear")
    oracle = mixture().model(process, dtype=torch.float64)
    x0 = mixture().sample(64, seed=0).double()
    times = DiscreteTime(process.discrete())
    new = per_example(oracle, x0, seed=1, time_distribution=times)
    old = per_example(oracle, x0, seed=1, time_sampler=times)
    assert torch.equal(new, old)
    assert torch.equal(per_example(oracle, x0, seed=1, time_sampler="discrete"), new)
    with pytest.raises(ValueError, match="older name"):
        diffusion_loss(oracle, x0, time_distribution=times, time_sampler=UniformTime())
