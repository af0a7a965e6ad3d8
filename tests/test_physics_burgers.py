"""The DiffPhyCon Burgers solver, samplers, settings, data sets and control environment
(diffusio.physics): the solver against an independent numpy loop of the same scheme, first-order
convergence in time, the discrete diffusion eigenvalue, finite-difference gradients, the
samplers' distributions, the masks, the data files' checks and the gymnasium environment."""

import importlib
import json
import math
import sys

import numpy as np
import pytest
import torch

from diffusio.io import file_sha256
from diffusio.physics import burgers as burgers_module
from diffusio.physics.burgers import DX, N_CELLS, SETTINGS, control_cost, objective, simulate, step
from diffusio.physics.burgers_data import (
    load_burgers_dataset,
    make_burgers_data,
    sample_control,
    sample_initial,
    save_burgers_dataset,
)


def _pairs(n: int, seed: int, setting: str = "fo-fc"):
    g = torch.Generator().manual_seed(seed)
    return sample_initial(n, g), sample_control(n, g, setting)


def _reference(u0: np.ndarray, f: np.ndarray, nu: float, dt: float, substeps: int):
    """The scheme written independently: numpy, float64, explicit index slicing on an array
    that carries the two zero boundary values."""
    n, k_intervals, m = f.shape
    u = np.zeros((n, m + 2))
    u[:, 1:-1] = u0
    out = [u0.copy()]
    for k in range(k_intervals):
        for _ in range(substeps):
            left, mid, right = u[:, 0:m], u[:, 1 : m + 1], u[:, 2 : m + 2]
            flux = (right**2 - left**2) / (4 * DX)
            diffusion = nu * (right - 2 * mid + left) / DX**2
            new = np.zeros_like(u)
            new[:, 1 : m + 1] = mid + dt * (-flux + diffusion + f[:, k])
            u = new
        out.append(u[:, 1 : m + 1].copy())
    return np.stack(out, axis=1)


# --------------------------------------------------------------------------------------------
# solver


def test_simulate_matches_an_independent_numpy_loop_over_the_full_horizon():
    u0, f = _pairs(3, seed=0)
    ref = _reference(u0.numpy(), f.numpy(), nu=0.01, dt=1e-4, substeps=1000)
    u = simulate(u0, f)
    assert u.shape == (3, 11, N_CELLS) and u.dtype == torch.float64
    assert torch.equal(u[:, 0], u0)
    assert np.abs(u.numpy() - ref).max() < 1e-10
    # numpy inputs give float64 tensors; float32 tensors keep their dtype
    assert torch.equal(simulate(u0.numpy(), f.numpy()), u)
    assert simulate(u0[:1].float(), f[:1, :1].float(), substeps=10).dtype == torch.float32


def test_step_is_one_euler_step_of_the_scheme():
    u0, f = _pairs(2, seed=1)
    ref = _reference(u0.numpy(), f[:, :1].numpy(), nu=0.02, dt=1e-4, substeps=1)[:, 1]
    assert np.abs(step(u0, f[:, 0], nu=0.02).numpy() - ref).max() < 1e-14
    assert torch.allclose(simulate(u0, f[:, :1], substeps=1)[:, 1], step(u0, f[:, 0]),
                          rtol=0, atol=1e-15)


def test_first_order_convergence_in_time():
    """Forward Euler is first order in dt: with u(dt) = u* + C dt + O(dt^2), halving dt halves
    the error. The reference is Richardson-extrapolated, 2 u(dt/8) - u(dt/4), one interval
    (T = 0.1, f constant), on two sampled (smooth) pairs."""
    u0, f = _pairs(2, seed=2)
    f1 = f[:, :1]

    def final(dt):
        return simulate(u0, f1, dt=dt, substeps=round(0.1 / dt))[:, -1]

    ref = 2 * final(2.5e-5) - final(5e-5)
    errs = [(final(dt) - ref).abs().max().item() for dt in (2e-4, 1e-4, 5e-5)]
    assert errs[0] > 1e-6  # the time error is visible above round-off
    for coarse, fine in zip(errs, errs[1:], strict=False):
        assert 1.6 <= coarse / fine <= 2.4, errs


def test_zero_state_without_control_stays_exactly_zero():
    u = simulate(torch.zeros(2, N_CELLS, dtype=torch.float64),
                 torch.zeros(2, 10, N_CELLS, dtype=torch.float64))
    assert torch.count_nonzero(u) == 0


def test_a_sine_mode_decays_at_the_discrete_laplacian_eigenvalue_rate():
    """The discrete Dirichlet Laplacian has eigenvectors v_i = sin(pi i dx) (zero at i = 0 and
    i = 129 since 129 dx = 1): v_{i+1} - 2 v_i + v_{i-1} = (2 cos(pi dx) - 2) v_i
    = -4 sin^2(pi dx / 2) v_i. So one Euler step of u_t = nu u_xx multiplies the mode by
    r = 1 - 4 nu dt / dx^2 sin^2(pi dx / 2), and s steps by r^s. A tiny amplitude (1e-8) makes the
    flux term u u_x relatively ~1e-8, far under the tolerance."""
    nu, dt, amp = 0.01, 1e-4, 1e-8
    x = torch.arange(1, N_CELLS + 1, dtype=torch.float64) * DX
    v = torch.sin(math.pi * x / (129 * DX))
    u = simulate(amp * v[None], torch.zeros(1, 10, N_CELLS, dtype=torch.float64), nu=nu, dt=dt)
    r = 1 - 4 * nu * dt / DX**2 * math.sin(math.pi * DX / 2) ** 2
    for k in range(11):
        expected = amp * r ** (1000 * k) * v
        assert torch.allclose(u[0, k], expected, rtol=1e-6, atol=0), k
    assert r**10_000 < 0.91  # the mode really decayed (exp(-nu pi^2) ~ 0.906)


def test_autograd_gradient_matches_central_finite_differences():
    """The same scheme with 50 substeps per interval (T = 0.05) keeps the check fast; float64,
    a batch of 2, the objective's gradient with respect to f and to u0 at the coordinates with
    the largest gradients and one random coordinate."""
    u0, f = _pairs(2, seed=3)
    target = _pairs(2, seed=4)[0] * 0.5
    lam = 0.1

    def loss(u0_, f_):
        return objective(simulate(u0_, f_, substeps=50), f_, target, lam).sum()

    fg, ug = f.clone().requires_grad_(True), u0.clone().requires_grad_(True)
    loss(ug, fg).backward()
    for x, grad, h in ((f, fg.grad, 1e-3), (u0, ug.grad, 1e-4)):
        flat = grad.flatten()
        idx = [*torch.topk(flat.abs(), 2).indices.tolist(), 137]
        for i in idx:
            e = torch.zeros_like(x).flatten()
            e[i] = h
            e = e.view_as(x)
            args_p, args_m = ((u0, x + e), (u0, x - e)) if x is f else ((x + e, f), (x - e, f))
            fd = (loss(*args_p) - loss(*args_m)).item() / (2 * h)
            assert abs(fd - flat[i].item()) <= 1e-5 * abs(flat[i].item()) + 1e-13, (i, fd)


def test_discrete_adjoint_matches_torch_autograd():
    """The hand-written adjoint (default) against autograd through the out-of-place loop, with
    a loss on every recorded state, 3 intervals of 73 substeps (two replay segments, the second
    short)."""
    u0, f = _pairs(2, seed=6)
    f = f[:, :3]
    target = _pairs(2, seed=7)[0]
    w = torch.randn(2, 4, N_CELLS, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    grads = {}
    for mode in ("adjoint", "autograd"):
        ug, fg = u0.clone().requires_grad_(True), f.clone().requires_grad_(True)
        u = simulate(ug, fg, substeps=73, backward=mode)
        ((u * w).sum() + objective(u, fg, target, 0.1).sum()).backward()
        grads[mode] = (ug.grad, fg.grad)
    for adj, ref in zip(grads["adjoint"], grads["autograd"], strict=True):
        assert (adj - ref).abs().max() <= 1e-12 * ref.abs().max()
    # only one input requiring grad
    fg = f.clone().requires_grad_(True)
    simulate(u0, fg, substeps=73)[:, -1].sum().backward()
    assert fg.grad.shape == f.shape and bool(torch.isfinite(fg.grad).all())


def test_autograd_path_gives_the_same_floats_as_the_fast_path():
    u0, f = _pairs(2, seed=5)
    fast = simulate(u0, f, substeps=100)
    for mode in ("adjoint", "autograd"):
        slow = simulate(u0, f.clone().requires_grad_(True), substeps=100, backward=mode)
        assert torch.equal(fast, slow.detach()), mode


@pytest.mark.parametrize(
    ("u0_shape", "f_shape", "match"),
    [((3, 127), (3, 10, 128), r"u0 must have shape"),
     ((3, 128), (3, 10, 127), r"f must have shape"),
     ((3, 128), (2, 10, 128), r"f must have shape"),
     ((128,), (1, 10, 128), r"u0 must have shape")],
)
def test_simulate_rejects_bad_shapes(u0_shape, f_shape, match):
    with pytest.raises(ValueError, match=match):
        simulate(torch.zeros(u0_shape, dtype=torch.float64), torch.zeros(f_shape))


def test_simulate_rejects_nan_and_unstable_steps():
    u0, f = torch.zeros(1, N_CELLS), torch.zeros(1, 10, N_CELLS)
    u0[0, 5] = float("nan")
    with pytest.raises(ValueError, match="u0 contains NaN"):
        simulate(u0, f)
    f[0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="f contains NaN"):
        simulate(torch.zeros(1, N_CELLS), f)
    with pytest.raises(ValueError, match="unstable"):
        simulate(torch.zeros(1, N_CELLS), torch.zeros(1, 10, N_CELLS), dt=1e-2)
    with pytest.raises(ValueError, match="substeps"):
        simulate(torch.zeros(1, N_CELLS), torch.zeros(1, 10, N_CELLS), substeps=0)
    with pytest.raises(ValueError, match="backward must be"):
        simulate(torch.zeros(1, N_CELLS), torch.zeros(1, 10, N_CELLS), backward="fd")


def test_costs_are_per_sample_means():
    u = torch.zeros(2, 11, N_CELLS, dtype=torch.float64)
    u[:, -1] = 1.0
    target = torch.zeros(2, N_CELLS, dtype=torch.float64)
    f = torch.full((2, 10, N_CELLS), 2.0, dtype=torch.float64)
    assert torch.equal(control_cost(u, target), torch.ones(2, dtype=torch.float64))
    assert torch.equal(control_cost(u[:, -1], target[0]), torch.ones(2, dtype=torch.float64))
    assert torch.allclose(objective(u, f, target, 0.5), torch.full((2,), 3.0, dtype=torch.float64))
    mask = SETTINGS["po-fc"].observed
    u2 = u.clone()
    u2[:, -1, ~mask] = 0.0
    assert torch.equal(control_cost(u2, target, mask=mask), torch.ones(2, dtype=torch.float64))


# --------------------------------------------------------------------------------------------
# samplers


def test_samplers_shapes_dtypes_and_seeding():
    a0, af = _pairs(5, seed=7)
    b0, bf = _pairs(5, seed=7)
    c0, _ = _pairs(5, seed=8)
    assert a0.shape == (5, N_CELLS) and af.shape == (5, 10, N_CELLS)
    assert a0.dtype == af.dtype == torch.float64
    assert torch.equal(a0, b0) and torch.equal(af, bf)
    assert not torch.equal(a0, c0)


def test_initial_state_parameters_and_bump_peaks():
    n = 2000
    u0, p = sample_initial(n, torch.Generator().manual_seed(9), return_params=True)
    for name, lo, hi in (("mu1", 0.2, 0.4), ("sig1", 0.05, 0.15), ("amp1", 0.0, 2.0),
                         ("mu2", 0.6, 0.8), ("sig2", 0.05, 0.15), ("amp2", -2.0, 0.0)):
        v = p[name]
        assert v.min() >= lo and v.max() <= hi, name
        assert v.min() < lo + 0.02 * (hi - lo) and v.max() > hi - 0.02 * (hi - lo), name
    # bare exponential bumps: the positive bump peaks at A1 (the negative one only lowers it),
    # the negative one bottoms at A2; the peak sits on the grid point nearest mu1 up to dx
    assert (u0.max(dim=1).values <= p["amp1"] + 1e-12).all()
    assert (u0.min(dim=1).values >= p["amp2"] - 1e-12).all()
    x = torch.arange(1, N_CELLS + 1, dtype=torch.float64) * DX
    g1 = torch.exp(-0.5 * ((x - p["mu1"][:, None]) / p["sig1"][:, None]) ** 2)
    g2 = torch.exp(-0.5 * ((x - p["mu2"][:, None]) / p["sig2"][:, None]) ** 2)
    assert torch.allclose(u0, p["amp1"][:, None] * g1 + p["amp2"][:, None] * g2,
                          rtol=0, atol=1e-14)
    assert (g1.max(dim=1).values > math.exp(-0.5 * (DX / 2 / 0.05) ** 2) - 1e-12).all()


def test_control_matches_the_official_formula_and_bump_switching_rate():
    n = 2000
    g = torch.Generator().manual_seed(10)
    f, p = sample_control(n, g, return_params=True)
    assert f.shape == (n, 10, N_CELLS)
    assert bool(p["on"][:, 0].all())
    rate, trials = p["on"][:, 1:].double().mean().item(), 7 * n
    assert abs(rate - 0.5) < 5 * math.sqrt(0.25 / trials)  # 5 binomial standard deviations
    for name, lo, hi in (("amp", -1.5, 1.5), ("x_centre", 0, 1), ("t_centre", 0, 1),
                         ("x_width", 0.05, 0.2), ("t_width", 0.05, 0.2)):
        assert p[name].min() >= lo and p[name].max() <= hi, name
    assert (f.abs().flatten(1).max(1).values <= 2 * (p["amp"].abs() * p["on"]).sum(1)).all()
    # one sample, bump by bump: f = 2 sum a b exp(space) exp(time), time at k / 11
    i = 3
    x = np.arange(1, N_CELLS + 1) / 129
    expected = np.zeros((10, N_CELLS))
    for b in range(8):
        if not p["on"][i, b]:
            continue
        for k in range(10):
            t = (k + 1) / 11
            expected[k] += (2 * p["amp"][i, b].item()
                            * np.exp(-((x - p["x_centre"][i, b].item()) ** 2)
                                     / (2 * p["x_width"][i, b].item() ** 2))
                            * math.exp(-((t - p["t_centre"][i, b].item()) ** 2)
                                       / (2 * p["t_width"][i, b].item() ** 2)))
    assert np.abs(f[i].numpy() - expected).max() < 1e-12


def test_partial_control_sampler_masks_and_doubles():
    full = sample_control(50, torch.Generator().manual_seed(11), "fo-fc")
    part = sample_control(50, torch.Generator().manual_seed(11), "po-pc")
    ctrl = SETTINGS["po-pc"].controlled
    assert torch.count_nonzero(part[:, :, ~ctrl]) == 0
    assert torch.allclose(part[:, :, ctrl], 2 * full[:, :, ctrl], rtol=1e-15, atol=0)


# --------------------------------------------------------------------------------------------
# settings


def test_setting_masks():
    x = torch.arange(1, N_CELLS + 1, dtype=torch.float64) / 129
    full = torch.ones(N_CELLS, dtype=torch.bool)
    edges = (x <= 0.25) | (x >= 0.75)
    middle = (x > 0.25) & (x < 0.75)
    assert set(SETTINGS) == {"fo-fc", "fo-pc", "po-fc", "po-pc"}
    for name, s in SETTINGS.items():
        assert s.observed.dtype == torch.bool and s.observed.shape == (N_CELLS,)
        assert torch.equal(s.controlled, edges if name.endswith("pc") else full)
        assert torch.equal(s.observed, ~middle if name.startswith("po") else full)
    assert int(edges.sum()) == 64 and int(middle.sum()) == 64
    # the official front_rear_quarter indices: cells 0..31 and 96..127
    assert torch.equal(torch.nonzero(edges).flatten(),
                       torch.cat([torch.arange(0, 32), torch.arange(96, 128)]))
    m = SETTINGS["fo-pc"].controlled
    m[:] = False  # a fresh copy each time: the setting is unchanged
    assert int(SETTINGS["fo-pc"].controlled.sum()) == 64
    with pytest.raises(ValueError, match="unknown setting"):
        burgers_module.get_setting("fo-xx")


# --------------------------------------------------------------------------------------------
# data sets


def test_make_burgers_data_is_the_samplers_then_the_solver_and_chunk_independent():
    data = make_burgers_data(6, seed=12, chunk=4, progress=False)  # chunks of 4 and 2
    assert data["u"].shape == (6, 11, N_CELLS) and data["f"].shape == (6, 10, N_CELLS)
    u0, f = _pairs(6, seed=12)  # one batch
    assert np.array_equal(data["f"], f.numpy())
    assert np.array_equal(data["u"], simulate(u0, f).numpy())


def test_dataset_round_trip_and_checks(tmp_path):
    path = save_burgers_dataset(tmp_path / "burgers", n=4, seed=13, setting="fo-pc",
                                progress=False)
    assert path.name == "burgers.npz" and (tmp_path / "burgers.json").is_file()
    assert not list(tmp_path.glob("*.tmp"))
    ds = load_burgers_dataset(path)
    ref = make_burgers_data(4, seed=13, setting="fo-pc", progress=False)
    assert np.array_equal(ds.u, ref["u"]) and np.array_equal(ds.f, ref["f"])
    assert len(ds) == 4 and ds.setting.name == "fo-pc"
    manifest = json.loads((tmp_path / "burgers.json").read_text())
    assert manifest["name"] == "burgers-fo-pc" and manifest["seed"] == 13
    assert manifest["shapes"] == {"u": [4, 11, 128], "f": [4, 10, 128]}
    assert manifest["nu"] == 0.01 and manifest["dt"] == 1e-4
    assert load_burgers_dataset(tmp_path / "burgers.json").manifest == manifest

    # a wrong shape in the manifest
    bad = dict(manifest, shapes={"u": [4, 10, 128], "f": [4, 10, 128]})
    (tmp_path / "burgers.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="shape"):
        load_burgers_dataset(path)
    (tmp_path / "burgers.json").write_text(json.dumps(manifest))

    # one flipped byte in the npz
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="checksum"):
        load_burgers_dataset(path)

    (tmp_path / "burgers.json").write_text("{not json")
    with pytest.raises(ValueError, match="manifest"):
        load_burgers_dataset(path)
    with pytest.raises(FileNotFoundError):
        load_burgers_dataset(tmp_path / "missing.npz")


def test_dataset_rejects_non_finite_values(tmp_path):
    path = save_burgers_dataset(tmp_path / "d.npz", n=2, seed=14, progress=False)
    with np.load(path, allow_pickle=False) as z:
        u, f = z["u"].copy(), z["f"]
    u[0, 3, 7] = np.nan
    with open(path, "wb") as fh:
        np.savez(fh, u=u, f=f)
    manifest = json.loads((tmp_path / "d.json").read_text())
    manifest["sha256"] = file_sha256(path)
    (tmp_path / "d.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="non-finite"):
        load_burgers_dataset(path)


# --------------------------------------------------------------------------------------------
# environment

gymnasium = pytest.importorskip("gymnasium")


def _episode(env, seed, actions=None, options=None, steps=10):
    obs, info = env.reset(seed=seed, options=options)
    rewards = []
    for k in range(steps):
        a = np.zeros(env.action_space.shape, np.float32) if actions is None else actions(env, k)
        obs, r, terminated, truncated, info = env.step(a)
        rewards.append(r)
        assert terminated == (k == 9) and not truncated
    return obs, rewards, info


@pytest.mark.filterwarnings("ignore:.*symmetric and normalized")
def test_env_passes_the_gymnasium_checker():
    from gymnasium.utils.env_checker import check_env

    from diffusio.physics.env import BurgersControlEnv

    check_env(BurgersControlEnv("po-pc", state_noise=0.01), skip_render_check=True)


def test_env_observation_action_and_reward_layout():
    from diffusio.physics.env import BurgersControlEnv

    env = BurgersControlEnv("po-pc")
    assert env.observation_space.shape == (65,) and env.action_space.shape == (64,)
    obs, info = env.reset(seed=0)
    assert obs.dtype == np.float32
    assert np.array_equal(obs[:-1], info["u"][env.observed].astype(np.float32))
    assert obs[-1] == 0.0 and np.array_equal(info["u"], env.u0)
    obs, rewards, info = _episode(env, seed=0)
    assert rewards[:9] == [0.0] * 9 and obs[-1] == 1.0
    assert rewards[9] == -info["j_actual"]
    assert info["j_actual"] == pytest.approx(np.mean((info["u"] - info["target"]) ** 2))
    with pytest.raises(RuntimeError, match="episode is over"):
        env.step(np.zeros(64, np.float32))
    with pytest.raises(ValueError, match="action must have shape"):
        env.reset(seed=0)
        env.step(np.zeros(128, np.float32))
    wide = BurgersControlEnv("fo-fc", include_target=True)
    obs, info = wide.reset(seed=1)
    assert obs.shape == (128 + 1 + 128,) and np.allclose(obs[129:], info["target"], atol=1e-6)


def test_env_is_deterministic_under_a_seed():
    from diffusio.physics.env import BurgersControlEnv

    rng = np.random.default_rng(0)
    acts = rng.uniform(-1, 1, (10, 128)).astype(np.float32)
    runs = [_episode(BurgersControlEnv(state_noise=0.01), 21, lambda e, k: acts[k], steps=3)
            for _ in range(2)]
    assert np.array_equal(runs[0][0], runs[1][0]) and runs[0][1] == runs[1][1]
    assert np.array_equal(runs[0][2]["u"], runs[1][2]["u"])
    other = BurgersControlEnv().reset(seed=22)[1]
    assert not np.array_equal(other["target"], runs[0][2]["target"])


@pytest.mark.parametrize("setting", ["fo-fc", "po-pc"])
def test_env_target_control_reaches_the_target(setting):
    """The target is the nominal solver's final state under ``target_control`` from the same
    u0: replaying that control reaches it (reward 0 up to round-off; in fact exactly)."""
    from diffusio.physics.env import BurgersControlEnv

    env = BurgersControlEnv(setting)

    def replay(e, k):
        return e.unwrapped.target_control[k][e.controlled].astype(np.float32)

    _, rewards, info = _episode(env, seed=23, actions=replay)
    assert abs(rewards[-1]) <= 1e-12 and info["j_actual"] <= 1e-12
    assert np.count_nonzero(env.target_control[:, ~env.controlled]) == 0
    u0, tc = torch.from_numpy(env.u0)[None], torch.from_numpy(env.target_control)[None]
    assert np.array_equal(simulate(u0, tc)[0, -1].numpy(), info["target"])


def test_env_zero_action_is_the_uncontrolled_solver():
    from diffusio.physics.env import BurgersControlEnv

    env = BurgersControlEnv("fo-pc")
    _, _, info = _episode(env, seed=24)
    free = simulate(torch.from_numpy(env.u0)[None], torch.zeros(1, 10, N_CELLS))[0, -1]
    assert np.abs(info["u"] - free.numpy()).max() <= 1e-12


def test_env_disturbances_change_the_trajectory():
    from diffusio.physics.env import BurgersControlEnv

    base = _episode(BurgersControlEnv(), seed=25, steps=2)[2]
    noisy = _episode(BurgersControlEnv(state_noise=0.01), seed=25, steps=2)[2]
    shifted = _episode(BurgersControlEnv(nu=0.02), seed=25, steps=2)[2]
    assert np.array_equal(base["target"], noisy["target"])
    assert np.array_equal(base["target"], shifted["target"])  # the target uses the nominal nu
    assert np.abs(noisy["u"] - base["u"]).max() > 1e-3
    assert np.abs(shifted["u"] - base["u"]).max() > 1e-3


def test_env_reset_options_and_registration():
    from diffusio.physics.env import ENV_ID, BurgersControlEnv, register

    u0, f = _pairs(1, seed=26)
    target = simulate(u0, f)[0, -1].numpy()
    env = BurgersControlEnv()
    _, info = env.reset(seed=0, options={"u0": u0[0].numpy(), "target": target})
    assert np.array_equal(info["u"], u0[0].numpy()) and np.array_equal(info["target"], target)
    assert env.target_control is None
    _, info = env.reset(seed=0, options={"u0": u0[0].numpy()})  # target reachable from it
    tc = torch.from_numpy(env.target_control)[None]
    assert np.array_equal(simulate(u0, tc)[0, -1].numpy(), info["target"])
    with pytest.raises(ValueError, match="unknown reset options"):
        env.reset(seed=0, options={"goal": 1})

    assert register() == ENV_ID == register()  # idempotent
    made = gymnasium.make(ENV_ID, setting="po-fc")
    assert made.observation_space.shape == (65,) and made.action_space.shape == (128,)
    made.close()


def test_env_module_names_the_extra_when_gymnasium_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "gymnasium", None)
    monkeypatch.delitem(sys.modules, "diffusio.physics.env", raising=False)
    with pytest.raises(ImportError, match=r"pip install 'diffusio\[control\]'"):
        importlib.import_module("diffusio.physics.env")
    # the package itself and the solver need no gymnasium (re-imported fresh; monkeypatch puts
    # the original modules back afterwards)
    import diffusio

    monkeypatch.setattr(diffusio, "physics", diffusio.physics)
    monkeypatch.delitem(sys.modules, "diffusio.physics", raising=False)
    monkeypatch.delitem(sys.modules, "diffusio.physics.burgers", raising=False)
    assert hasattr(importlib.import_module("diffusio.physics"), "simulate")


def test_make_dataset_command_writes_burgers_data(tmp_path, capsys):
    from diffusio.cli import main

    out = tmp_path / "b.npz"
    assert main(["make-dataset", "burgers-fo-pc", "--out", str(out), "--episodes", "3",
                 "--seed", "2", "--no-progress"]) == 0  # fmt: skip
    assert "3 solved Burgers samples (fo-pc, seed 2)" in capsys.readouterr().out
    data = load_burgers_dataset(out)
    assert data.u.shape == (3, 11, 128) and data.manifest["setting"] == "fo-pc"
    assert main(["make-dataset", "burgers-xx", "--out", str(out)]) == 2
    assert main(["make-dataset", "burgers-fo-fc", "--out", str(out), "--steps", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "unknown dataset 'burgers-xx'" in err[0] and "--episodes" in err[1]


def test_env_runs_through_the_shared_rollout_runner():
    # control.scores.rollout drives any (reset(seed), act(obs)) policy; with zero actions the
    # return is -J_actual of the uncontrolled solver from the episode's u0 to its target
    from diffusio.control.scores import episode_seed, rollout
    from diffusio.physics.env import BurgersControlEnv

    class Zero:
        def reset(self, seed):
            pass

        def act(self, obs):
            return np.zeros(64, np.float32)

    env = BurgersControlEnv("fo-pc")
    returns = rollout(env, Zero(), episodes=2, seed=5)
    for i, ret in enumerate(returns):
        _, info = env.reset(seed=episode_seed(5, i)[0])
        u0 = torch.as_tensor(info["u"])[None]
        final = simulate(u0, torch.zeros(1, 10, 128))[0, -1].numpy()
        assert ret == pytest.approx(-np.mean((final - info["target"]) ** 2), rel=1e-9, abs=1e-12)
