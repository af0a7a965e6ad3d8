"""Composable samplers on the exact oracle: explicit ``times=`` grids, step callbacks, per-frame
time tensors and the public single reverse step with its exact log-probability."""

from __future__ import annotations

import math

import pytest
import torch

from diffusio import ClipX0, Inpaint, make_process, sample
from diffusio.core.samplers import (
    SAMPLERS,
    X0Trace,
    gaussian_log_prob,
    grid_times,
    reverse_step,
    time_grid,
)

DT = torch.float64
N = 64

# (sampler, steps, options): every sampler, at a few steps, with its grid-shaping options.
CASES = [
    ("ddpm", 12, {}),
    ("ddpm", 12, {"kernel_variance": "beta"}),
    ("ddpm", 9, {"discrete": False}),
    ("ddim", 10, {}),
    ("ddim", 10, {"eta": 0.5, "spacing": "quadratic"}),
    ("ddim", 8, {"eta": 1.0, "discrete": False}),
    ("annealed-langevin", 4, {"n_steps_each": 3}),
    ("euler-maruyama", 10, {}),
    ("pc", 6, {}),
    ("pc", 6, {"predictor": "euler-maruyama", "spacing": "log-snr"}),
    ("ode-euler", 10, {"spacing": "karras"}),
    ("ode-heun", 6, {}),
    ("ode-rk45", None, {"rtol": 1e-4, "atol": 1e-4}),
    ("dpm-solver++", 10, {}),
    ("dpm-solver++", 16, {"denoise": True}),
]
GRID_OPTIONS = ("spacing", "discrete", "timesteps")


def _id(case):
    sampler, steps, options = case
    return f"{sampler}-{steps}" + "".join(f"-{k}={v}" for k, v in options.items())


def _grid_free(options):
    return {k: v for k, v in options.items() if k not in GRID_OPTIONS}


@pytest.fixture(scope="module")
def model(mixture):
    return mixture.model(make_process("vp-linear"))


# ----------------------------------------------------------------------------- explicit grids
def test_every_sampler_is_covered():
    assert {case[0] for case in CASES} == set(SAMPLERS)


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_explicit_grid_equals_the_internal_grid(model, case):
    """The grid a sampler builds, passed back as ``times=`` (list or tensor), gives the same
    samples bit for bit, the same NFE and the same step count."""
    sampler, steps, options = case
    x, stats = sample(model, (N, 2), sampler, steps, seed=3, return_stats=True, **options)
    grid = stats["times"]
    assert all(a > b for a, b in zip(grid, grid[1:], strict=False))
    for times in (grid, torch.tensor(grid, dtype=DT)):
        y, again = sample(
            model, (N, 2), sampler, seed=3, times=times, return_stats=True, **_grid_free(options)
        )
        assert torch.equal(x, y)
        assert again["nfe"] == stats["nfe"] and again["times"] == grid
        if steps is not None:
            assert again["steps"] == steps


def test_internal_grids_are_the_documented_builders(model):
    process = model.process
    _, stats = sample(model, (4, 2), "ddim", 10, seed=0, return_stats=True)
    assert stats["times"] == grid_times(process, 10)  # evaluation times: steps = len(times)
    _, stats = sample(model, (4, 2), "ode-heun", 10, seed=0, return_stats=True, spacing="log-snr")
    assert stats["times"] == time_grid(process, 10, "log-snr")  # ends: steps = len(times) - 1
    x, stats = sample(model, (4, 2), "ode-rk45", seed=0, return_stats=True, rtol=1e-8, atol=1e-8)
    assert stats["times"] == [process.t_max, process.t_min] and stats["steps"] is None
    # RK45 on an explicit grid integrates interval by interval: the same ODE solution
    via = sample(model, (4, 2), "ode-rk45", seed=0, times=[1.0, 0.5, 0.1, 1e-3], rtol=1e-8,
                 atol=1e-8)  # fmt: skip
    torch.testing.assert_close(via, x, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "sampler,steps,options",
    [("ddim", 20, {}), ("ode-euler", 20, {}), ("ode-heun", 10, {}), ("ddim", 20, {"eta": 0.0})],
)
def test_warm_start_from_a_chain_state_continues_the_chain(model, sampler, steps, options):
    """Replanning: a deterministic chain restarted from its own state at step k on the tail of
    its grid (``x_init`` + ``times=grid[k:]``) ends where the full chain ends."""
    states = {}
    x, stats = sample(
        model, (N, 2), sampler, steps, seed=4, return_stats=True,
        callback=lambda info: states.setdefault(info["i"], info["x"].clone()), **options,
    )  # fmt: skip
    k = 7
    tail = stats["times"][k:]
    y = sample(model, (N, 2), sampler, x_init=states[k], times=tail, **options)
    torch.testing.assert_close(y, x, rtol=0, atol=1e-12)


def test_sdedit_partial_start_needs_x_init(mixture, model):
    process = model.process
    tail = grid_times(process, 50)[40:]  # from t = 0.18 down
    with pytest.raises(ValueError, match="pass x_init"):
        sample(model, (N, 2), "ddim", times=tail)
    x0 = mixture.sample(N, seed=1)
    t0 = torch.tensor(tail[0], dtype=DT)
    z = torch.randn(N, 2, dtype=DT, generator=torch.Generator().manual_seed(2))
    x_t = process.alpha(t0) * x0 + process.sigma(t0) * z
    x, stats = sample(model, (N, 2), "ddim", x_init=x_t, times=tail, return_stats=True)
    assert stats["nfe"] == 10 and stats["times"] == tail
    # SDEdit from a low noise level keeps each input in its mode (modes 6 apart, 0.5 wide)
    assert float((mixture.assign(x) == mixture.assign(x0)).double().mean()) > 0.9


def test_grids_are_validated_with_clear_errors(model):
    process = model.process
    with pytest.raises(
        ValueError, match=r"strictly decreasing; times\[1\] = 0.5, times\[2\] = 0.6"
    ):
        sample(model, (4, 2), "ode-euler", times=[1.0, 0.5, 0.6, 0.1])
    with pytest.raises(ValueError, match=r"must lie in \[0.000916.*got values from .* to 1.5"):
        sample(model, (4, 2), "ode-euler", times=[1.5, 0.5])
    with pytest.raises(ValueError, match="finite"):
        sample(model, (4, 2), "ode-euler", times=[1.0, float("nan")])
    with pytest.raises(ValueError, match="ode-heun needs at least 2 time"):
        sample(model, (4, 2), "ode-heun", times=[1.0])
    with pytest.raises(ValueError, match="times replaces steps and the grid options; got steps"):
        sample(model, (4, 2), "ddim", 10, times=[1.0, 0.5])
    with pytest.raises(ValueError, match="got spacing"):
        sample(model, (4, 2), "ddim", times=[1.0, 0.5], spacing="quadratic")
    with pytest.raises(ValueError, match="per-frame time tensors are supported by ddpm and ddim"):
        frames = [torch.tensor([[1.0, 1.0]]), torch.tensor([[0.5, 0.4]])]
        sample(model, (4, 2, 2), "euler-maruyama", times=frames)
    assert process.t_max == 1.0  # the oracle process these messages are about


# ----------------------------------------------------------------------------- callbacks
@pytest.mark.parametrize("case", CASES, ids=_id)
def test_callback_sees_every_step_and_changes_nothing(model, case):
    sampler, steps, options = case
    seen = []
    x, stats = sample(
        model, (N, 2), sampler, steps, seed=5, return_stats=True, callback=seen.append, **options
    )
    assert torch.equal(x, sample(model, (N, 2), sampler, steps, seed=5, **options))
    assert [info["i"] for info in seen] == list(range(len(seen)))
    for info in seen:
        assert info["x"].shape == (N, 2) and info["x0"].shape == (N, 2)
        assert isinstance(info["t"], float)
    if sampler == "ode-rk45":
        assert len(seen) == stats["nfe"]  # one call per evaluation of the adaptive solver
        return
    extra = int(options.get("denoise", sampler in ("annealed-langevin", "euler-maruyama", "pc")))
    per_level = options.get("n_steps_each", 1)
    assert len(seen) == stats["steps"] * per_level + extra
    if extra or sampler in ("ddpm", "ddim"):  # the last prediction is the sample
        assert torch.equal(seen[-1]["x0"], x)


@pytest.mark.parametrize("sampler,options", [("ddpm", {}), ("ddim", {"eta": 0.3})])
def test_ancestral_callback_reports_the_gaussian_step(model, sampler, options):
    seen = []
    sample(model, (N, 2), sampler, 8, seed=6, callback=seen.append, **options)
    for now, nxt in zip(seen, seen[1:], strict=False):
        assert torch.equal(now["x_next"], nxt["x"])  # no constraints: the draw is the next state
        z = (now["x_next"] - now["mean"]) / now["std"]
        assert float(z.std()) == pytest.approx(1.0, abs=0.25)
    assert seen[-1]["std"] == 0.0 and seen[-1]["t_next"] is None
    assert torch.equal(seen[-1]["mean"], seen[-1]["x0"])


def test_x0_trace_records_the_chosen_steps(model):
    """X0Trace keeps, at the chosen evaluation indices, the time, the state and the guided x0
    prediction (after ClipX0: what the sampler used) of the callback's info, first ``keep`` rows."""
    steps = [0, 4, 9]
    seen: list[dict] = []
    trace = X0Trace(steps, keep=5)
    a = sample(model, (N, 2), "ddpm", 10, seed=7, guidance=[ClipX0(-2.0, 2.0)],
               callback=lambda info: seen.append(info))  # fmt: skip
    b = sample(model, (N, 2), "ddpm", 10, seed=7, guidance=[ClipX0(-2.0, 2.0)], callback=trace)
    assert torch.equal(a, b)
    assert trace.steps == steps and trace.times == [float(seen[k]["t"]) for k in steps]
    assert len(trace.x0) == 3 and trace.x0[0].shape == (5, 2)
    for k, t_x0, t_xt in zip(steps, trace.x0, trace.xt, strict=True):
        assert torch.equal(seen[k]["x0"][:5].float(), t_x0)
        assert torch.equal(seen[k]["x"][:5].float(), t_xt)
        assert float(t_x0.abs().max()) <= 2.0
    assert torch.equal(trace.x0[-1], b[:5].float())  # the last x0 is the sample
    # a second chain (the next batch) is not recorded
    sample(model, (N, 2), "ddpm", 10, seed=8, callback=trace)
    assert len(trace.x0) == 3
    every = X0Trace()
    sample(model, (N, 2), "ddim", 6, seed=0, callback=every)
    assert len(every.x0) == 6 and every.times == sorted(every.times, reverse=True)


# ----------------------------------------------------------------------------- per-frame times
def _frame_grids(process):
    """Frame 0 follows ddim's 10-step table grid from t_max; frame 1 a continuous grid from 0.6
    that holds its level for one step (a pyramid-schedule frame waiting its turn)."""
    a = grid_times(process, 10)
    b = time_grid(process, 8, t_max=0.6)
    b_held = b[:3] + [b[2]] + b[3:]  # 10 entries, frame 1 waits at step 2 -> 3
    per_frame = [torch.tensor([[ta, tb]], dtype=DT) for ta, tb in zip(a, b_held, strict=True)]
    return a, b, b_held, per_frame


def _frame_start(mixture, process, seed=0):
    """x_init (N, 2, 2): frame 0 from the prior, frame 1 the mixture noised to t = 0.6."""
    gen = torch.Generator().manual_seed(seed)
    prior = process.prior_sample((N, 2), generator=gen, dtype=DT)
    t = torch.tensor(0.6, dtype=DT)
    noised = process.alpha(t) * mixture.sample(N, seed=seed + 1) + process.sigma(t) * torch.randn(
        N, 2, generator=gen, dtype=DT
    )
    return torch.stack([prior, noised], dim=1)


def test_per_frame_ddim_equals_separate_runs(mixture, model):
    """Deterministic DDIM on a 2-frame state, each frame on its own grid, equals two separate
    runs (the oracle treats frames as independent draws); a held frame stays where it is."""
    process = model.process
    a, b, _, per_frame = _frame_grids(process)
    x_init = _frame_start(mixture, process)
    x, stats = sample(model, (N, 2, 2), "ddim", x_init=x_init, times=per_frame, return_stats=True)
    assert stats["nfe"] == 10 and stats["steps"] == 10 and stats["times"][0].shape == (N, 2)
    frame0 = sample(model, (N, 2), "ddim", x_init=x_init[:, 0], times=a)
    frame1 = sample(model, (N, 2), "ddim", x_init=x_init[:, 1], times=b)
    torch.testing.assert_close(x[:, 0], frame0, rtol=0, atol=1e-12)
    torch.testing.assert_close(x[:, 1], frame1, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "sampler,options,step_options",
    [
        ("ddim", {"eta": 0.7}, {"eta": 0.7}),
        ("ddpm", {}, {"kernel_variance": "posterior"}),
        ("ddpm", {"kernel_variance": "beta"}, {"kernel_variance": "beta"}),
    ],
)
def test_per_frame_stochastic_chains_equal_separate_runs(
    mixture, model, sampler, options, step_options
):
    """With noise: the per-frame sampler equals the chain of reverse steps drawing from the same
    generator, and that chain's frames equal separate chains fed the same per-frame noise."""
    process = model.process
    a, b, b_held, per_frame = _frame_grids(process)
    x_init = _frame_start(mixture, process, seed=3)
    x = sample(model, (N, 2, 2), sampler, seed=11, x_init=x_init, times=per_frame, **options)

    gen = torch.Generator().manual_seed(11)
    chain, noises = x_init, []
    for i, t in enumerate(per_frame):
        s = per_frame[i + 1] if i + 1 < len(per_frame) else None
        z = torch.randn(chain.shape, generator=gen, dtype=DT) if s is not None else None
        noises.append(z)
        chain = reverse_step(model, chain, t, s, noise=z, **step_options).x_next
    assert torch.equal(chain, x)

    def separate(frame: int, grid: list[float], skip: int | None) -> torch.Tensor:
        y = x_init[:, frame]
        steps = [(i, t) for i, t in enumerate(grid)]
        for k, t in steps:
            s = grid[k + 1] if k + 1 < len(grid) else None
            i = k if skip is None or k < skip else k + 1  # the held step of frame 1 is skipped
            z = None if s is None else noises[i][:, frame]
            y = reverse_step(model, y, t, s, noise=z, **step_options).x_next
        return y

    torch.testing.assert_close(x[:, 0], separate(0, a, None), rtol=0, atol=1e-12)
    torch.testing.assert_close(x[:, 1], separate(1, b, 2), rtol=0, atol=1e-12)


def test_per_frame_times_with_guidance_and_constraints(mixture):
    """ClipX0 and Inpaint take per-frame times; classifier guidance's 'mean' mode refuses them."""
    from diffusio.core.steering import ClassifierGuidance

    process = make_process("vp-linear")
    model = mixture.model(process)
    _, _, _, per_frame = _frame_grids(process)
    x_init = _frame_start(mixture, process)
    known = torch.tensor([1.0, 0.0], dtype=DT)
    mask = torch.tensor([True, False])
    x = sample(
        model, (N, 2, 2), "ddim", x_init=x_init, times=per_frame,
        guidance=[ClipX0(-4.0, 4.0)], constraints=[Inpaint(known, mask)],
    )  # fmt: skip
    assert torch.equal(x[..., 0], torch.ones(N, 2, dtype=DT)) and float(x.abs().max()) <= 4.0
    guide = ClassifierGuidance(mixture.classifier(process), torch.zeros(N, dtype=torch.long), 1.0)
    sample(model, (N, 2, 2), "ddim", x_init=x_init, times=per_frame, guidance=[guide])
    guide.mode = "mean"
    with pytest.raises(ValueError, match="mode='mean' needs one time per step"):
        sample(model, (N, 2, 2), "ddpm", x_init=x_init, times=per_frame, guidance=[guide])


def test_per_frame_grids_are_validated(model):
    up = [torch.tensor([[1.0, 0.5]]), torch.tensor([[0.5, 0.6]])]
    with pytest.raises(ValueError, match="must not increase in any frame"):
        sample(model, (4, 2, 2), "ddim", x_init=torch.zeros(4, 2, 2, dtype=DT), times=up)
    still = [torch.tensor([[1.0, 0.5]]), torch.tensor([[1.0, 0.5]])]
    with pytest.raises(ValueError, match="must decrease in some frame"):
        sample(model, (4, 2, 2), "ddim", x_init=torch.zeros(4, 2, 2, dtype=DT), times=still)
    wrong = [torch.ones(3, 2), torch.ones(3, 2) / 2]
    with pytest.raises(ValueError, match=r"times\[0\] has shape \(3, 2\), not broadcastable"):
        sample(model, (4, 2, 2), "ddim", times=wrong)


# ----------------------------------------------------------------------------- the single step
def test_reverse_step_is_ddpm_posterior_and_its_log_prob_is_exact(mixture, model):
    """At consecutive table times the step is DDPM's posterior q(x_{t-1} | x_t, x0) (Ho et al.
    2020, eq. 6-7) with the predicted x0, and gaussian_log_prob is its exact density."""
    process = model.process
    table = process.discrete()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(N, 2, dtype=DT, generator=gen)
    for i in (999, 500, 10, 1):
        t, s = float(table.times[i]), float(table.times[i - 1])
        abar_t, abar_s = table.alphas_cumprod[i], table.alphas_cumprod[i - 1]
        beta = table.betas[i]
        x0 = model.x0(x, t)
        mean = (abar_s.sqrt() * beta / (1 - abar_t)) * x0 + (
            (1 - beta).sqrt() * (1 - abar_s) / (1 - abar_t)
        ) * x
        std = torch.sqrt((1 - abar_s) / (1 - abar_t) * beta)
        step = reverse_step(model, x, t, s, generator=gen)
        torch.testing.assert_close(step.mean, mean, rtol=1e-10, atol=1e-10)
        assert step.std == pytest.approx(float(std), rel=1e-10)
        direct = torch.distributions.Normal(mean, std).log_prob(step.x_next).sum(-1)
        torch.testing.assert_close(
            gaussian_log_prob(step.x_next, step.mean, step.std), direct, rtol=1e-10, atol=1e-10
        )
        x = step.x_next


def test_gaussian_log_prob_matches_a_direct_density_for_tensor_std():
    gen = torch.Generator().manual_seed(1)
    x, mean = torch.randn(2, 8, 3, 4, dtype=DT, generator=gen)
    std = torch.rand(8, 3, 1, dtype=DT, generator=gen) + 0.1
    direct = torch.distributions.Normal(mean, std.expand_as(mean)).log_prob(x)
    torch.testing.assert_close(gaussian_log_prob(x, mean, std), direct.sum((1, 2)), rtol=1e-12,
                               atol=1e-12)  # fmt: skip
    torch.testing.assert_close(
        gaussian_log_prob(x, mean, std, batch_dims=2), direct.sum(2), rtol=1e-12, atol=1e-12
    )
    expected = -0.5 * ((x - mean) / 0.3) ** 2 - math.log(0.3) - 0.5 * math.log(2 * math.pi)
    torch.testing.assert_close(gaussian_log_prob(x, mean, 0.3), expected.sum((1, 2)))
    with pytest.raises(ValueError, match="std > 0"):
        gaussian_log_prob(x, mean, 0.0)


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_chained_reverse_steps_reproduce_the_ddim_sampler(model, eta):
    process = model.process
    expected = sample(model, (N, 2), "ddim", 10, seed=9, eta=eta)
    gen = torch.Generator().manual_seed(9)
    x = process.prior_sample((N, 2), generator=gen, dtype=DT)
    grid = grid_times(process, 10)
    log_p = torch.zeros(N, dtype=DT)
    for i, t in enumerate(grid):
        s = grid[i + 1] if i + 1 < len(grid) else None
        step = reverse_step(model, x, t, s, eta=eta, generator=gen)
        if eta > 0 and s is not None:
            log_p = log_p + gaussian_log_prob(step.x_next, step.mean, step.std)
        if eta == 0 or s is None:
            assert step.std == 0.0 and torch.equal(step.x_next, step.mean)
        x = step.x_next
    assert torch.equal(x, expected)
    if eta == 0:  # a deterministic chain has no density to accumulate
        assert not bool(log_p.any())
    else:  # one Gaussian term per stochastic step, every one a real density value
        assert bool(torch.isfinite(log_p).all()) and bool((log_p != 0).all())


def test_chained_reverse_steps_reproduce_the_ddpm_sampler(model):
    expected = sample(model, (N, 2), "ddpm", 10, seed=2)
    gen = torch.Generator().manual_seed(2)
    x = model.process.prior_sample((N, 2), generator=gen, dtype=DT)
    grid = grid_times(model.process, 10)
    for i, t in enumerate(grid):
        s = grid[i + 1] if i + 1 < len(grid) else None
        x = reverse_step(model, x, t, s, kernel_variance="posterior", generator=gen).x_next
    assert torch.equal(x, expected)


def test_reverse_step_log_prob_is_differentiable_in_the_network():
    """Policy-gradient fine-tuning (DPPO) differentiates the chain's log-probability with
    respect to the network: reverse_step keeps the graph."""
    from diffusio import DiffusionModel
    from diffusio.nets.mlp import TimeMLP

    torch.manual_seed(0)
    net = TimeMLP(2, hidden=16, depth=1).double()
    model = DiffusionModel(net, make_process("vp-linear"))
    x = torch.randn(8, 2, dtype=DT)
    with torch.no_grad():
        step = reverse_step(model, x, 0.5, 0.4, eta=1.0)
    assert not step.mean.requires_grad
    again = reverse_step(model, x, 0.5, 0.4, eta=1.0)
    gaussian_log_prob(step.x_next, again.mean, again.std).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    with pytest.raises(ValueError, match="strictly decreasing"):
        reverse_step(model, x, 0.4, 0.5)


def test_per_example_and_float32_time_tensors(model):
    """A grid of (N,) tensors puts each example on its own schedule (here all on one: equal to
    the float grid); float32 tensors, whose rounding pushes the table's smallest time 0.00091648
    out of bounds, are clamped back."""
    grid = grid_times(model.process, 6)
    a = sample(model, (N, 2), "ddim", seed=1, eta=0.5, times=grid)
    b = sample(
        model, (N, 2), "ddim", seed=1, eta=0.5, times=[torch.full((N,), t, dtype=DT) for t in grid]
    )
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    rounded = [torch.full((1, 2), t, dtype=torch.float32) for t in grid]
    x, stats = sample(model, (N, 2, 2), "ddim", seed=1, times=rounded, return_stats=True)
    assert float(stats["times"][-1].min()) == grid[-1] and torch.isfinite(x).all()
