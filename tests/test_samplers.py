"""Every sampler against the exact oracle: the distribution it reaches, its convergence order,
its NFE accounting, determinism, dtype and the steering hooks."""

import numpy as np
import pytest
import torch

from diffusio import SAMPLERS, ClipX0, DynamicThreshold, Inpaint, make_process, sample
from diffusio.core.samplers.base import SamplingContext

DT = torch.float64
N = 4000

# (sampler, steps, options) at generous step counts; every one must land within 2x the noise floor.
GENEROUS = [
    ("ddpm", 1000, {}),
    ("ddpm", 1000, {"kernel_variance": "beta"}),
    ("ddim", 500, {}),
    ("ddim", 1000, {"eta": 0.5}),
    ("annealed-langevin", 20, {"n_steps_each": 100}),
    ("euler-maruyama", 1000, {}),
    ("pc", 500, {}),
    ("pc", 500, {"predictor": "euler-maruyama"}),
    ("ode-euler", 500, {}),
    ("ode-heun", 100, {}),
    ("ode-rk45", None, {}),
    ("dpm-solver++", 50, {}),
]


@pytest.fixture(scope="module")
def noise_floor(mixture):
    """Mean discrepancy of exact samples of the same size: the metric's own noise."""
    return float(
        np.mean([mixture.mode_discrepancy(mixture.sample(N, seed=100 + s)) for s in range(8)])
    )


def _id(case):
    sampler, steps, options = case
    return f"{sampler}-{steps}" + "".join(f"-{k}={v}" for k, v in options.items())


def exact_prior(mixture, process, seed):
    """x_T from the exact noised mixture p_T, so a test measures the sampler alone.

    The N(0, prior_std^2) prior is an approximation of p_T: on VE with sigma_max = 50 the mixture's
    mean offset of ~1 shifts the per-mode weights a deterministic (ODE) sampler reaches by about one
    standard error (discrepancy ~2.2 instead of ~1.3); on VP, alpha(1) = 0.007 makes it negligible.
    """
    return mixture.marginal(process, process.t_max).sample(N, seed=seed)


@pytest.mark.parametrize("process_name", ["vp-linear", "ve"])
@pytest.mark.parametrize("case", GENEROUS, ids=_id)
def test_sampler_reaches_the_distribution(mixture, noise_floor, process_name, case):
    sampler, steps, options = case
    process = make_process(process_name)
    model = mixture.model(process)
    x_T = exact_prior(mixture, process, seed=0)
    x = sample(model, (N, 2), sampler, steps, seed=0, x_init=x_T, **options)
    assert x.shape == (N, 2) and x.dtype == DT
    assert mixture.mode_discrepancy(x) < 2 * noise_floor


@pytest.mark.parametrize("process_name", ["vp-cosine", "sub-vp", "vp-quadratic"])
@pytest.mark.parametrize(
    "case",
    [
        ("ddpm", 1000, {"discrete": False}),
        ("ddim", 500, {"discrete": False}),
        ("euler-maruyama", 1000, {}),
        ("ode-heun", 200, {}),
        ("dpm-solver++", 50, {}),
    ],
    ids=_id,
)
def test_samplers_work_on_every_process(mixture, noise_floor, process_name, case):
    """Continuous grids: vp-quadratic's own table has 50 entries with betas up to 0.5, too coarse
    for ancestral steps to be exact on a mixture (its discrepancy there is ~6)."""
    sampler, steps, options = case
    process = make_process(process_name)
    x = sample(mixture.model(process), (N, 2), sampler, steps, seed=1, **options)
    assert mixture.mode_discrepancy(x) < 2 * noise_floor


def test_too_few_steps_is_detected(mixture, noise_floor):
    """The metric is not vacuous: a 5-step Euler ODE is visibly off."""
    x = sample(mixture.model(make_process("vp-linear")), (N, 2), "ode-euler", 5, seed=0)
    assert mixture.mode_discrepancy(x) > 10 * noise_floor


# ----------------------------------------------------------------------------- convergence order
ORDERS = [
    ("ode-euler", {}, [50, 100, 200, 400], 1.0),
    ("ddim", {"discrete": False}, [50, 100, 200, 400], 1.0),
    ("ode-heun", {}, [25, 50, 100, 200], 2.0),
    ("dpm-solver++", {"lower_order_final": False}, [40, 80, 160, 320], 2.0),
]


@pytest.mark.parametrize("process_name", ["vp-linear", "ve"])
@pytest.mark.parametrize("sampler,options,steps,order", ORDERS, ids=[o[0] for o in ORDERS])
def test_convergence_order(mixture, process_name, sampler, options, steps, order):
    """Fitted slope of log error vs log steps within 0.15 of the method's order.

    Error: the median over 400 trajectories of the distance to a tight RK45 solution from the same
    noise. The median, because a trajectory starting on the boundary between two modes may land in
    the other mode at any step count (a jump of the mode distance, not a discretization error).
    """
    process = make_process(process_name)
    model = mixture.model(process)
    x_T = process.prior_sample((400, 2), generator=torch.Generator().manual_seed(0), dtype=DT)
    denoise = sampler == "ddim"  # ddim's last evaluation returns x0; compare like with like
    ref = sample(model, (400, 2), "ode-rk45", x_init=x_T, rtol=1e-10, atol=1e-10, denoise=denoise)
    errors = [
        float(
            (sample(model, (400, 2), sampler, k, x_init=x_T, **options) - ref).norm(dim=1).median()
        )
        for k in steps
    ]
    slope = -np.polyfit(np.log(steps), np.log(errors), 1)[0]
    assert abs(slope - order) < 0.15, f"errors {errors}, slope {slope:.3f}"


# ----------------------------------------------------------------------------- exact identities
def test_ddim_with_eta_one_is_ddpm(mixture):
    """DDIM's eta = 1 is DDPM with the posterior variance (Song et al. 2021, Sec. 4.1)."""
    model = mixture.model(make_process("vp-linear"))
    a = sample(model, (64, 2), "ddpm", 100, seed=5)
    b = sample(model, (64, 2), "ddim", 100, seed=5, eta=1.0)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- bookkeeping
NFE = {
    ("ddpm", 10): 10,
    ("ddim", 10): 10,
    ("annealed-langevin", 3): 3 * 100 + 1,
    ("euler-maruyama", 10): 11,
    ("pc", 10): 10 * 2 + 1,
    ("ode-euler", 10): 10,
    ("ode-heun", 10): 20,
    ("dpm-solver++", 10): 10,
}


@pytest.mark.parametrize("sampler,steps", list(NFE), ids=[k[0] for k in NFE])
def test_nfe_and_determinism(mixture, sampler, steps):
    model = mixture.model(make_process("vp-linear"))
    x, stats = sample(model, (32, 2), sampler, steps, seed=7, return_stats=True)
    assert stats["nfe"] == NFE[(sampler, steps)]
    torch.testing.assert_close(sample(model, (32, 2), sampler, steps, seed=7), x, rtol=0, atol=0)
    if sampler not in ("ode-euler", "ode-heun", "dpm-solver++", "ddim"):  # stochastic samplers
        assert not torch.equal(sample(model, (32, 2), sampler, steps, seed=8), x)


@pytest.mark.parametrize("sampler", list(SAMPLERS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_samples_keep_the_model_dtype(mixture, sampler, dtype):
    model = mixture.model(make_process("vp-linear"), dtype=dtype)
    steps = None if sampler == "ode-rk45" else 4
    x = sample(model, (8, 2), sampler, steps, seed=0)
    assert x.dtype == dtype and torch.isfinite(x).all()


def test_unknown_names_and_options_are_clear(mixture):
    model = mixture.model(make_process("vp-linear"))
    with pytest.raises(ValueError, match="unknown sampler 'dddim'; valid: ddpm, ddim"):
        sample(model, (4, 2), "dddim")
    with pytest.raises(ValueError, match="no option.*etta.*valid:.*eta"):
        sample(model, (4, 2), "ddim", 5, etta=0.5)
    with pytest.raises(ValueError, match="between 1 and the grid size 1000"):
        sample(model, (4, 2), "ddim", 5000)
    with pytest.raises(ValueError, match="constraints"):
        sample(
            model,
            (4, 2),
            "ode-rk45",
            constraints=[Inpaint(torch.zeros(2), torch.tensor([True, False]))],
        )
    with pytest.raises(ValueError, match="x_init has shape"):
        sample(model, (4, 2), "ddim", 5, x_init=torch.zeros(3, 2))


# ----------------------------------------------------------------------------- steering
def test_inpainting_keeps_known_entries(mixture):
    model = mixture.model(make_process("vp-linear"))
    known = torch.tensor([3.0, 0.0], dtype=DT)
    mask = torch.tensor([True, False])
    for sampler in ("ddpm", "ddim", "euler-maruyama", "ode-heun", "dpm-solver++"):
        x = sample(model, (500, 2), sampler, 50, seed=0, constraints=[Inpaint(known, mask)])
        assert torch.equal(x[:, 0], torch.full((500,), 3.0, dtype=DT)), sampler
    # Replacement inpainting only approximates the conditional p(x_2 | x_1 = 3) (a deterministic
    # solver leaves some samples in the wrong mode); only the known entries are guaranteed.


def test_x0_clipping_and_dynamic_thresholding_bound_the_prediction(mixture):
    model = mixture.model(make_process("vp-linear"))
    x = sample(model, (256, 2), "ddim", 20, seed=0, guidance=[ClipX0(-1.0, 1.0)])
    assert float(x.abs().max()) <= 1.0 + 1e-12
    seen = []

    def spy(pred, t, ctx: SamplingContext):
        seen.append(float(pred.x0.abs().max()))
        return pred

    sample(model, (256, 2), "ddim", 20, seed=0, guidance=[DynamicThreshold(0.9), spy])
    assert max(seen) <= 1.0 + 1e-12  # thresholded x0 lies in [-1, 1] after dividing by s


def test_dynamic_threshold_matches_imagen_definition():
    from diffusio.core.parameterization import Prediction

    x0 = torch.tensor([[0.5, -3.0, 2.0, 0.1], [0.2, 0.3, -0.4, 0.1]], dtype=DT)
    pred = Prediction(
        "x0", x0, torch.zeros_like(x0), torch.ones(2, 1, dtype=DT), torch.ones(2, 1, dtype=DT)
    )
    out = DynamicThreshold(percentile=1.0)(pred, torch.zeros(2), None).x0
    # row 0: s = max|x0| = 3 -> x0 / 3; row 1: s = max(0.4, 1) = 1 -> unchanged
    torch.testing.assert_close(out[0], x0[0] / 3.0)
    torch.testing.assert_close(out[1], x0[1])


@pytest.mark.parametrize("process_name", ["vp-linear", "vp-cosine", "vp-quadratic", "sub-vp", "ve"])
def test_time_grids_are_decreasing_with_exact_ends(process_name):
    from diffusio.core.samplers.base import GRID_SPACINGS, time_grid

    process = make_process(process_name)
    for spacing in GRID_SPACINGS:
        grid = time_grid(process, 12, spacing)
        assert len(grid) == 13 and grid[0] == process.t_max and grid[-1] == process.t_min
        assert all(a > b for a, b in zip(grid, grid[1:], strict=False)), spacing
    with pytest.raises(ValueError, match="unknown grid spacing 'linear'; valid: time"):
        time_grid(process, 12, "linear")


def test_inpaint_rejects_non_finite_known_entries_only():
    known = torch.tensor([1.0, float("nan")])
    Inpaint(known, torch.tensor([True, False]))  # NaN where nothing is known: fine
    Inpaint(known[:1], torch.tensor([[True], [False]]))  # mask broadcasting to more dims
    with pytest.raises(ValueError, match="NaN or Inf"):
        Inpaint(known, torch.tensor([False, True]))
