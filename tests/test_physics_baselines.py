"""The Burgers control baselines (diffusio.physics.baselines): the evaluation helper, the
adjoint oracle, the learned surrogate (SL), behaviour cloning and the PI controller. Solves use
the coarse time grid dt = 1e-3, 100 substeps (the same horizon T = 1, 10x fewer steps) where
the property does not depend on the grid; tolerances are stated with their margins."""

import pytest
import torch

from diffusio.physics.baselines import (
    adjoint_control,
    bc_control,
    evaluate_control,
    pid_control,
    rollout_pid,
    surrogate_control,
    train_bc,
    train_surrogate,
    tune_pid,
)
from diffusio.physics.burgers import SETTINGS, simulate
from diffusio.physics.burgers_data import make_burgers_data, sample_control, sample_initial

COARSE = {"dt": 1e-3, "substeps": 100}


def _problems(n: int, seed: int, setting: str = "fo-fc"):
    """``n`` reachable problems on the coarse grid: (u0, u_d, the control that reaches u_d)."""
    g = torch.Generator().manual_seed(seed)
    u0, f = sample_initial(n, g), sample_control(n, g, setting)
    return u0, simulate(u0, f, **COARSE)[:, -1], f


@pytest.fixture(scope="module")
def data():
    """200 training and 8 held-out samples of the official solver (fo-fc)."""
    return make_burgers_data(200, seed=0, progress=False), make_burgers_data(
        8, seed=1, progress=False)


def _zero(u0):
    return torch.zeros(u0.shape[0], 10, 128, dtype=torch.float64)


# --------------------------------------------------------------------------------------------
# evaluation


def test_evaluate_control_is_zero_on_the_datas_own_control_and_zeroes_uncontrolled_cells():
    u0, ud, f = _problems(3, seed=0)
    r = evaluate_control(u0, ud, f, "fo-fc", **COARSE)
    assert r["j_actual"].shape == (3,) and r["u_final"].shape == (3, 128)
    assert r["j_actual"].max() < 1e-20  # the same solve: identical floats, J = 0 exactly
    assert torch.allclose(r["energy"], (f**2).sum(dim=(1, 2)), rtol=1e-12, atol=0)
    # fo-pc: non-zero middle entries are dropped before simulating
    u0, ud, f = _problems(2, seed=1, setting="fo-pc")
    noisy = f + torch.randn(f.shape, generator=torch.Generator().manual_seed(0),
                            dtype=torch.float64)
    zeroed = noisy * SETTINGS["fo-pc"].controlled
    a = evaluate_control(u0, ud, noisy, "fo-pc", **COARSE)
    b = evaluate_control(u0, ud, zeroed, "fo-pc", **COARSE)
    assert torch.equal(a["j_actual"], b["j_actual"]) and torch.equal(a["energy"], b["energy"])
    # partial observation: J over the 64 outer cells only
    po = evaluate_control(u0, ud + 5.0 * ~SETTINGS["po-pc"].observed, zeroed, "po-pc", **COARSE)
    assert torch.equal(po["u_final"], b["u_final"]) and int(SETTINGS["po-pc"].observed.sum()) == 64
    assert torch.allclose(po["j_actual"], ((b["u_final"] - ud)[:, :32] ** 2).mean(-1) / 2
                          + ((b["u_final"] - ud)[:, 96:] ** 2).mean(-1) / 2, rtol=1e-12)


def test_shapes_and_settings_are_checked():
    u0, ud, f = _problems(2, seed=2)
    with pytest.raises(ValueError, match="u0 and u_target"):
        evaluate_control(u0[:, :64], ud, f)
    with pytest.raises(ValueError, match="f must have shape"):
        evaluate_control(u0, ud, f[:, :5])
    with pytest.raises(ValueError, match="unknown setting"):
        evaluate_control(u0, ud, f, "fo-xx")
    with pytest.raises(ValueError, match="iterations"):
        adjoint_control(u0, ud, iterations=0)


# --------------------------------------------------------------------------------------------
# adjoint oracle


def test_adjoint_control_nearly_reaches_reachable_targets_and_lam_lowers_the_energy():
    u0, ud, _ = _problems(3, seed=3)
    j0 = evaluate_control(u0, ud, _zero(u0), **COARSE)["j_actual"]
    res = adjoint_control(u0, ud, "fo-fc", iterations=25, **COARSE)
    r = evaluate_control(u0, ud, res.f, **COARSE)
    # measured 1e-6..1e-5 of J(0) after 25 evaluations; 5% leaves a > 1000x margin
    assert (r["j_actual"] < 0.05 * j0).all()
    assert res.j_history.shape[1] == 3 and torch.equal(res.j_history[0], j0)
    # the returned f is the best evaluated iterate, so its J is the history's minimum
    assert torch.allclose(r["j_actual"], res.j_history.min(dim=0).values, rtol=1e-9, atol=0)
    # for exact minimisers the energy is non-increasing in lam (compare the two objectives at
    # both solutions); measured 0.60-0.67x at lam = 0.1, so 0.9x is a 1.4x margin
    lam = adjoint_control(u0, ud, "fo-fc", lam=0.1, iterations=25, **COARSE)
    assert (evaluate_control(u0, ud, lam.f, **COARSE)["energy"] < 0.9 * r["energy"]).all()


def test_adjoint_control_partial_control_keeps_the_middle_exactly_zero():
    u0, ud, _ = _problems(2, seed=4, setting="po-pc")
    res = adjoint_control(u0, ud, "po-pc", iterations=6, **COARSE)
    assert res.f.dtype == torch.float64 and res.f.shape == (2, 10, 128)
    assert torch.equal(res.f[:, :, 32:96], torch.zeros(2, 10, 64, dtype=torch.float64))
    assert res.f[:, :, :32].abs().sum() > 0
    assert res.j_history[-1].mean() < res.j_history[0].mean()


# --------------------------------------------------------------------------------------------
# SL surrogate


def test_surrogate_beats_persistence_and_its_control_beats_zero_control(data):
    train, test = data
    """Measured with these settings: one-interval MSE ~0.05x persistence's, SL's true J ~0.04x
    zero control's (mean over 8 problems); the checks ask only for < 1x (20x margins). With
    half the training steps the surrogate is still poor and SL's J can exceed zero control's:
    the optimiser exploits model error, which is why this is an honest, weak check."""
    train, test = data
    s = train_surrogate(train["u"], train["f"], hidden=16, layers=4, steps=300, batch_size=128)
    assert s.losses[-1] < s.losses[0]
    u, f = torch.from_numpy(test["u"]), torch.from_numpy(test["f"])
    with torch.no_grad():
        pred = s(u[:, :-1].reshape(-1, 128), f.reshape(-1, 128)).double()
    nxt, cur = u[:, 1:].reshape(-1, 128), u[:, :-1].reshape(-1, 128)
    assert ((pred - nxt) ** 2).mean() < ((cur - nxt) ** 2).mean()
    u0, ud = u[:, 0], u[:, -1]
    res = surrogate_control(s, u0, ud, "fo-fc", lam=1e-3, iterations=30)
    assert res.f.shape == (8, 10, 128) and res.f.dtype == torch.float64
    j_sl = evaluate_control(u0, ud, res.f)["j_actual"].mean()
    assert j_sl < evaluate_control(u0, ud, _zero(u0))["j_actual"].mean()


# --------------------------------------------------------------------------------------------
# behaviour cloning


def test_bc_training_loss_decreases_and_its_controls_respect_the_setting(data):
    train, test = data
    bc = train_bc(train["u"][:64], train["f"][:64], "po-pc", hidden=32, steps=60, batch_size=32)
    assert sum(bc.losses[-10:]) / 10 < 0.5 * sum(bc.losses[:10]) / 10
    u0, ud = test["u"][:, 0], test["u"][:, -1]
    f = bc_control(bc, u0, ud, "po-pc")
    assert f.shape == (8, 10, 128) and f.dtype == torch.float64
    assert torch.equal(f[:, :, 32:96], torch.zeros(8, 10, 64, dtype=torch.float64))
    # partial observation: the model never sees the hidden cells
    hidden = torch.from_numpy(ud).clone()
    hidden[:, 32:96] += 3.0
    assert torch.equal(bc_control(bc, u0, hidden), f)
    with pytest.raises(ValueError, match="trained for"):
        bc_control(bc, u0, ud, "fo-fc")


# --------------------------------------------------------------------------------------------
# PI control


def test_pid_with_zero_gains_is_zero_control_exactly():
    u0, ud, _ = _problems(3, seed=5)
    f, u = rollout_pid(u0, ud, "fo-fc", 0.0, 0.0, **COARSE)
    assert torch.equal(f, _zero(u0))
    assert torch.equal(u, simulate(u0, _zero(u0), **COARSE))
    # state noise: reproducible from the generator, and it changes the trajectory
    noisy = [rollout_pid(u0, ud, "fo-fc", 2.0, 1.0, state_noise=0.01, **COARSE,
                         generator=torch.Generator().manual_seed(3))[1] for _ in range(2)]
    assert torch.equal(noisy[0], noisy[1]) and not torch.equal(noisy[0], u)


def test_tuned_pid_beats_zero_control_and_clips():
    u0, ud, _ = _problems(6, seed=6)
    gains = tune_pid(u0[:4], ud[:4], "fo-fc", grid=((0.0, 2.0, 5.0), (0.0, 0.5)), **COARSE)
    assert len(gains.scores) == 6 and gains.scores[(gains.kp, gains.ki)] == min(
        gains.scores.values())
    assert gains.scores[(gains.kp, gains.ki)] < gains.scores[(0.0, 0.0)]
    f, _ = rollout_pid(u0[4:], ud[4:], "fo-fc", gains.kp, gains.ki, **COARSE)
    assert (evaluate_control(u0[4:], ud[4:], f, **COARSE)["j_actual"].mean()
            < evaluate_control(u0[4:], ud[4:], _zero(u0[4:]), **COARSE)["j_actual"].mean())
    big, _ = rollout_pid(u0, ud, "fo-fc", 1e3, 1e3, f_max=0.5, **COARSE)
    assert big.abs().max() == 0.5  # the clip binds at these gains


def test_pid_ignores_unobserved_errors_and_uncontrolled_cells():
    u0, ud, _ = _problems(2, seed=7)
    integral = torch.zeros_like(u0)
    f, i = pid_control(u0, ud, integral, "po-pc", 2.0, 1.0)
    perturbed = ud.clone()
    perturbed[:, 32:96] += 1.0
    f2, i2 = pid_control(u0, perturbed, integral, "po-pc", 2.0, 1.0)
    assert torch.equal(f, f2) and torch.equal(i, i2)
    assert torch.equal(f[:, 32:96], torch.zeros(2, 64, dtype=torch.float64))
    e = (ud - u0)[:, :32]
    assert torch.allclose(f[:, :32], (3.0 * e).clamp(-10, 10), rtol=1e-15, atol=0)
    # the rollout's first interval is the same law
    fr, _ = rollout_pid(u0, perturbed, "po-pc", 2.0, 1.0, **COARSE)
    assert torch.equal(fr[:, 0], f)
