"""CL-DiffPhyCon on Burgers (diffusio.physics.cl_diffphycon): the staircase schedule and its
network-call counts, the per-frame posterior step against the platform's reverse_step, the
asynchronous chain's output law under an exact Gaussian denoiser (closed-form recursion), the
closed loop against open loop with an exact plan oracle, windows, training and bad input."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from diffusio.core.model import DiffusionModel
from diffusio.core.oracle import GaussianMixture, OracleNet
from diffusio.core.processes import make_process
from diffusio.core.samplers import reverse_step
from diffusio.physics import cl_diffphycon as cl
from diffusio.physics.burgers import N_CELLS, N_INTERVALS
from diffusio.physics.diffphycon import RESCALER

pytest.importorskip("gymnasium")
from diffusio.physics.env import BurgersControlEnv  # noqa: E402

PROCESS = make_process("vp-cosine")


def test_staircase_levels_and_costs():
    assert cl.staircase_levels(20, 10).tolist() == list(range(2, 21, 2))
    assert cl.staircase_levels(20, 10, 2).tolist() == list(range(0, 19, 2))  # frame 0 clean
    assert cl.staircase_levels(20, 10, 1).tolist() == list(range(1, 20, 2))
    assert cl.steps_per_physical_step(20, 10) == 2.0
    assert cl.steps_per_physical_step(20, 10, h=1) == 20.0
    assert cl.steps_per_physical_step(20, 10, h=5) == 4.0
    t = cl.level_times(torch.tensor([1, 10, 20]), 20, PROCESS)
    assert t.tolist() == pytest.approx([0.05, 0.5, PROCESS.t_max])
    for K, H in ((15, 10), (5, 10), (0, 1)):
        with pytest.raises(ValueError, match="multiple of H"):
            cl.staircase_levels(K, H)
    with pytest.raises(ValueError, match="evaluation index"):
        cl.staircase_levels(20, 10, 3)


class _Counting(nn.Module):
    """Wraps a net and counts its calls."""

    def __init__(self, net):
        super().__init__()
        self.net, self.calls = net, 0

    def forward(self, x, t, **cond):
        self.calls += 1
        return self.net(x, t, **cond)


def test_denoise_step_is_reverse_step_with_per_frame_times():
    mix = GaussianMixture([[0.5, -1.0, 2.0]], [[0.3, 1.0, 0.5]])
    model = DiffusionModel(OracleNet(mix, PROCESS, "x0"), PROCESS, "x0")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 4, 3, generator=g, dtype=torch.float64)
    levels = torch.tensor([3, 6, 9, 12]).expand(6, 4)
    z = torch.randn(x.shape, generator=g, dtype=torch.float64)
    for eta in (0.0, 1.0):
        ours = cl.denoise_step(model, x, levels, levels - 1, 12, eta=eta, noise=z)
        t, s = (cl.level_times(v, 12, PROCESS) for v in (levels, levels - 1))
        ref = reverse_step(model, x, t, s, eta=eta, noise=z).x_next
        torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    # a frame reaching level 0 takes x0_hat exactly; a held frame keeps its state
    nxt = torch.tensor([0, 6, 8, 11]).expand(6, 4)
    out = cl.denoise_step(model, x, levels, nxt, 12, eta=1.0, noise=z)
    x0 = model.predict(x, cl.level_times(levels, 12, PROCESS)).x0
    torch.testing.assert_close(out[:, 0], x0[:, 0], rtol=0, atol=1e-12)
    torch.testing.assert_close(out[:, 1], x[:, 1], rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="may not increase"):
        cl.denoise_step(model, x, levels, levels + 1, 12)


def _law(levels_path, mu, var, eta):
    """Mean and variance of x0 after the chain K -> 0 on a Gaussian N(mu, var) entry with the
    exact denoiser, from the prior N(0, 1): d_s = A d_t + c z with d = x - alpha mu (each step
    linear in x_t), an independent derivation of the step's law."""
    K = levels_path[0]
    a_t = float(PROCESS.alpha(cl.level_times(torch.tensor(K), K, PROCESS)))
    mean_d, var_d = -a_t * mu, 1.0  # x_K ~ N(0, 1): d_K = x_K - a_K mu
    for lv in levels_path[:-1]:
        t = cl.level_times(torch.tensor(lv), K, PROCESS)
        a_t, s_t = float(PROCESS.alpha(t)), float(PROCESS.sigma(t))
        k = a_t * var / (a_t**2 * var + s_t**2)
        if lv == 1:
            mean_d, var_d = k * mean_d, k**2 * var_d  # to clean: x0 = mu + k d
            return mu + mean_d, var_d
        s = cl.level_times(torch.tensor(lv - 1), K, PROCESS)
        a_s, s_s = float(PROCESS.alpha(s)), float(PROCESS.sigma(s))
        var_post = (s_s**2 / s_t**2) * max(s_t**2 - (a_t / a_s) ** 2 * s_s**2, 0.0)
        c = eta * math.sqrt(var_post)
        c_eps = math.sqrt(max(s_s**2 - c**2, 0.0))
        A = a_s * k + c_eps * (1 - a_t * k) / s_t
        mean_d, var_d = A * mean_d, A**2 * var_d + c**2
    raise AssertionError("the path must end at level 0")


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_asynchronous_chain_has_the_exact_gaussian_law(eta):
    mu, sd = torch.tensor([0.7, -0.4]), torch.tensor([0.5, 1.2])
    oracle = OracleNet(GaussianMixture(mu[None], sd[None]), PROCESS, "x0")
    model = DiffusionModel(oracle, PROCESS, "x0")
    n, K, H = 4000, 40, 4
    m = K // H
    g = torch.Generator().manual_seed(1)
    levels = cl.staircase_levels(K, H).tolist()
    x = torch.randn(n, H, 2, generator=g, dtype=torch.float64)
    _, st = cl.sync_chain(model, x, K, stop=m, record=levels, eta=eta, generator=g)
    x = torch.stack([st[lv][:, j] for j, lv in enumerate(levels)], dim=1)
    out = []
    for _ in range(6):  # physical steps: frame 0 comes out clean, shift, append noise
        for i in range(m):
            cur = cl.staircase_levels(K, H, i).expand(n, H)
            x = cl.denoise_step(model, x, cur, cur - 1, K, eta=eta, generator=g)
        out.append(x[:, 0])
        x = torch.cat([x[:, 1:], torch.randn(n, 1, 2, generator=g, dtype=torch.float64)], 1)
    for frame in out:  # every emitted frame went K -> 0 one level at a time
        for d in range(2):
            mean, var = _law(list(range(K, -1, -1)), float(mu[d]), float(sd[d] ** 2), eta)
            assert abs(var / float(sd[d] ** 2) - 1) < 0.15  # the 40-step deficit (falls as 1/K)
            tol_m, tol_v = 4 * math.sqrt(var / n), 4 * var * math.sqrt(2 / (n - 1))
            assert abs(float(frame[:, d].mean()) - mean) < tol_m
            assert abs(float(frame[:, d].var()) - var) < tol_v


class _PlanOracle(nn.Module):
    """An exact x0 predictor: the window of each episode's reference plan [u_ref; f*] / 10,
    its start read from the number of padding frames (known f)."""

    def __init__(self, refs, controls):
        super().__init__()
        self.refs = torch.as_tensor(refs, dtype=torch.float32) / RESCALER
        self.f = torch.as_tensor(controls, dtype=torch.float32) / RESCALER
        self.register_buffer("marker", torch.zeros(()))

    def forward(self, x, t, known=None, ref=None):
        H = x.shape[1]
        out = torch.zeros_like(x)
        pads = (~torch.isnan(known[:, :, 1, 0])).sum(1)
        for row in range(x.shape[0]):
            k = int(pads[row])
            out[row, : H - k, 0] = self.refs[row, k:N_INTERVALS]
            out[row, : H - k, 1] = self.f[row, k:]
        return out


def test_closed_loop_reproduces_open_loop_with_an_exact_model():
    env = BurgersControlEnv()  # no disturbance
    env.reset(seed=10)
    net = _Counting(_PlanOracle(cl.reference(env)[None], env.unwrapped.target_control[None]))
    model = DiffusionModel(net, PROCESS, "x0")
    results = {}
    for name, mode in (("cl", "async"), ("open", "replan")):
        net.calls = 0
        ctrl = cl.WindowController(model, K=10, mode=mode, every=10)
        results[name] = r = cl.run_episodes(ctrl, [env], [10])
        assert sum(r["nfe"]) == net.calls  # the counts are the network's real calls
        assert np.all(r["tracking"] < 1e-10) and np.all(r["j_actual"] < 1e-10)
    assert results["cl"]["nfe"] == [10] + [1] * 9  # K at the first step (init), then K / H
    assert results["open"]["nfe"] == [10] + [0] * 9
    np.testing.assert_allclose(results["cl"]["per_step"], results["open"]["per_step"], atol=1e-12)


def test_episode_plans_replay_the_same_disturbed_episodes():
    env = BurgersControlEnv(state_noise=0.05)
    plans = cl.episode_plans([3])
    env.reset(seed=3)
    np.testing.assert_allclose(plans["ref"][0], cl.reference(env), rtol=0, atol=0)
    net = _PlanOracle(plans["ref"], plans["control"])
    model = DiffusionModel(net, PROCESS, "x0")
    runs = [cl.run_episodes(cl.WindowController(model, K=10, mode="replan", every=10), [env], [3], p)
            for p in (None, plans)]  # fmt: skip
    np.testing.assert_array_equal(runs[0]["per_step"], runs[1]["per_step"])
    assert runs[0]["tracking"][0] > 1e-4  # the state noise is there (open loop cannot undo it)


def test_replanning_costs_k_every_h_steps():
    net = _Counting(_Zero())
    model = DiffusionModel(net, PROCESS, "x0")
    for h, expected in ((1, [20] * 10), (2, [20, 0] * 5), (5, [20, 0, 0, 0, 0] * 2)):
        ctrl = cl.WindowController(model, K=20, mode="replan", every=h)
        ctrl.reset(np.zeros((3, N_INTERVALS + 1, N_CELLS)))
        net.calls = 0
        for k in range(N_INTERVALS):
            assert ctrl.act(np.ones((3, N_CELLS)), k).shape == (3, N_CELLS)
        assert ctrl.nfe == expected and net.calls == sum(expected)
        assert np.mean(ctrl.nfe) == cl.steps_per_physical_step(20, 10, h)


class _Zero(nn.Module):
    def forward(self, x, t, **cond):
        return torch.zeros_like(x)


def test_windows_pad_the_episode_end():
    u = torch.randn(2, N_INTERVALS + 1, N_CELLS)
    f = torch.randn(2, N_INTERVALS, N_CELLS)
    x0, known, ref = cl.make_windows(u, f, u, torch.tensor([0, 7]), 10)
    assert x0.shape == known.shape == (2, 10, 2, N_CELLS) and ref.shape == (2, 10, N_CELLS)
    torch.testing.assert_close(x0[1, :3, 0], u[1, 7:10])
    torch.testing.assert_close(x0[1, :3, 1], f[1, 7:10])
    torch.testing.assert_close(ref[1, :3], u[1, 8:11])
    torch.testing.assert_close(known[1, 0, 0], u[1, 7])
    assert torch.isnan(known[1, 1:3]).all() and torch.isnan(known[:, 0, 1]).all()
    assert (known[1, 3:] == 0).all() and (x0[1, 3:] == 0).all() and (ref[1, 3:] == 0).all()
    assert torch.isnan(known[0, 1:]).all()


def test_model_trains_through_the_common_trainer_and_resumes(tmp_path):
    g = torch.Generator().manual_seed(0)
    u, f = torch.randn(4, 11, N_CELLS, generator=g), torch.randn(4, 10, N_CELLS, generator=g)
    model, summary = cl.train_cl_model(u, f, tmp_path / "run", steps=2, channels=8, progress=False)
    again, _ = cl.train_cl_model(u, f, tmp_path / "run", steps=2, channels=8, progress=False)
    for a, b in zip(model.parameters(), again.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    x = torch.randn(3, 10, 2, N_CELLS)
    out = model.net(x, torch.rand(3, 10))
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert math.isfinite(float(model.loss(cl.pack_trajectories(u, f), generator=g)))


def test_bad_input_raises_one_line_errors():
    model = DiffusionModel(nn.Identity(), PROCESS, "x0")
    with pytest.raises(ValueError, match="unknown mode"):
        cl.WindowController(model, mode="sometimes")
    with pytest.raises(ValueError, match="every must be"):
        cl.WindowController(model, mode="replan", every=11)
    with pytest.raises(ValueError, match="multiple of H"):
        cl.WindowController(model, K=25)
    with pytest.raises(ValueError, match="expected u"):
        cl.pack_trajectories(torch.zeros(2, 10, N_CELLS), torch.zeros(2, 10, N_CELLS))
