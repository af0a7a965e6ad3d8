"""Diffuse-CLoC's pieces against closed forms: the attention mask, the rolling schedule, the
signed distances, the guidance gradient, the tracker's inverse dynamics, keyframe inpainting,
and the rolling sampler's output law under a Gaussian oracle denoiser; the environment through
gymnasium's checker and the project's ``rollout``."""

import math

import numpy as np
import pytest
import torch

pytest.importorskip("mujoco")

from diffusio.control.cloc import Coder, Policy, TaskCost, sdf_torch, staircase, track, windows  # noqa: E402
from diffusio.control.cloc_net import CLoCNet, NetConfig, Schedule, attention_mask, token_layout  # noqa: E402
from diffusio.control.clutter import ENV_ID, ClutterEnv, free_path_exists, sdf  # noqa: E402


def test_attention_mask_pattern():
    # tokens s0, a0, s1, a1, s2: states see every state, actions the past states and actions
    expected = torch.tensor([
        [1, 0, 1, 0, 1],
        [1, 1, 0, 0, 0],
        [1, 0, 1, 0, 1],
        [1, 1, 1, 1, 0],
        [1, 0, 1, 0, 1],
    ], dtype=torch.bool)  # fmt: skip
    assert torch.equal(attention_mask(1, 2, "cloc"), expected)
    assert attention_mask(1, 2, "full").all()
    kind, time = token_layout(2, 2)
    assert kind.tolist() == [0, 0, 1, 0, 1, 0] and time.tolist() == [-1, 0, 0, 1, 1, 2]
    assert attention_mask(1, 3, "cloc", actions=False).all()  # state-only: all states
    with pytest.raises(ValueError, match="unknown attention mask"):
        attention_mask(1, 2, "causal")


def test_masked_action_ignores_the_future_but_full_attention_does_not():
    torch.manual_seed(0)
    xs, xa = torch.randn(1, 5, 4), torch.randn(1, 4, 2)
    ls, la = torch.randint(1, 8, (1, 5)), torch.randint(1, 8, (1, 4))
    ls[:, 0] = 0
    later_a, later_s = xa.clone(), xs.clone()
    later_a[:, 1:] += 1.0  # every later action a_1..a_3
    later_s[:, 1:] += 1.0  # every future state s_1..s_4
    for mask, layers in (("cloc", 1), ("cloc", 2), ("full", 2)):
        cfg = NetConfig(mask=mask, horizon=4, levels=8, d_model=16, n_layers=layers, n_heads=2)
        net = CLoCNet(cfg)
        a0 = net(xs, xa, ls, la)[1][:, 0]
        blind_a = torch.allclose(a0, net(xs, later_a, ls, la)[1][:, 0])
        blind_s = torch.allclose(a0, net(later_s, xa, ls, la)[1][:, 0])
        # a_0 never sees later actions under the mask; the future states reach it only from
        # the second layer on, through s_0's representation (states attend to all states)
        assert blind_a == (mask == "cloc")
        assert blind_s == (mask == "cloc" and layers == 1)
        assert torch.equal(net(xs, xa, ls, la)[0][:, 0], xs[:, 0])  # the context passes through


def test_schedule_posterior_closed_form():
    sch = Schedule(8)
    ab = sch.alpha_bar.double()
    assert ab[0] == 1 and torch.all(ab[1:] < ab[:-1])
    for k in range(1, 9):
        beta = 1 - ab[k] / ab[k - 1]
        assert math.isclose(
            sch.var[k], beta * (1 - ab[k - 1]) / (1 - ab[k]), rel_tol=1e-5, abs_tol=1e-7
        )
        # the posterior mean is exact for x_k built from x_0 without noise: c0 x0 + ct sqrt(ab) x0
        assert math.isclose(sch.c0[k] + sch.ct[k] * ab[k].sqrt(), ab[k - 1].sqrt(), rel_tol=1e-5)
    assert sch.var[1] == 0 and math.isclose(sch.c0[1], 1.0, rel_tol=1e-6)


class Recorder(torch.nn.Module):
    """A denoiser predicting zeros that records the future levels of every call."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, xs, xa, ls, la):
        self.calls.append((ls[0, 1:].clone(), la[0].clone()))
        return torch.cat([xs[:, :1], torch.zeros_like(xs[:, 1:])], 1), torch.zeros_like(xa)


def test_rolling_schedule_levels():
    h, m = 4, 2
    cfg = NetConfig(horizon=h, levels=h * m)
    rec = Recorder()
    pol = Policy(rec, cfg, w_obs=0.0, w_goal=0.0, steps_per_frame=m)
    pol.begin([np.zeros((0, 5))])
    obs = np.zeros((1, 6))
    pol.act_batch(obs)
    stair = staircase(h, m)
    assert stair.tolist() == [2, 4, 6, 8]
    fill = h * m - m  # from pure noise (level K) down to the staircase, then m steps
    assert len(rec.calls) == fill + m and torch.all(rec.calls[0][0] == h * m)
    assert torch.equal(rec.calls[fill][0], stair) and torch.equal(rec.calls[fill][1], stair)
    for _ in range(3):
        rec.calls.clear()
        pol.act_batch(obs)
        assert len(rec.calls) == m  # m network calls per control step
        for j, (ls, la) in enumerate(rec.calls):
            assert torch.equal(ls, stair - j) and torch.equal(la, stair - j)
        assert pol.buffer[2][0].tolist() == [2, 4, 6, 8]  # popped frame 0, appended level K


class Oracle(torch.nn.Module):
    """E[x0 | x_k] for tokens i.i.d. N(mu, sd^2) in every coordinate (per-token levels)."""

    def __init__(self, sch, mu, sd):
        super().__init__()
        self.ab, self.mu, self.v = sch.alpha_bar, mu, sd**2

    def post(self, x, lev):
        ab = self.ab[lev][..., None]
        return self.mu + ab.sqrt() * self.v / (ab * self.v + 1 - ab) * (x - ab.sqrt() * self.mu)

    def forward(self, xs, xa, ls, la):
        return torch.cat([xs[:, :1], self.post(xs, ls)[:, 1:]], 1), self.post(xa, la)


def test_rolling_sampler_law_under_a_gaussian_oracle():
    h, m, n, mu, sd = 4, 2, 4000, 0.2, 0.2
    cfg = NetConfig(horizon=h, levels=h * m)
    sch = Schedule(h * m)
    pol = Policy(Oracle(sch, mu, sd), cfg, w_obs=0.0, w_goal=0.0, steps_per_frame=m)
    pol.begin([np.zeros((0, 5))] * n, seed=1)
    obs = np.zeros((n, 6))
    acts = np.concatenate([pol.act_batch(obs) for _ in range(4)])  # 4 popped frames per row
    # every popped token ran x_K ~ N(0, 1) through K posterior steps with the oracle x0:
    # x_{k-1} = c0 (mu + g (x_k - sqrt(ab) mu)) + ct x_k + sqrt(var) z, g the oracle's gain
    mean, var = 0.0, 1.0
    ab = sch.alpha_bar.double()
    for k in range(h * m, 0, -1):
        g = ab[k].sqrt() * sd**2 / (ab[k] * sd**2 + 1 - ab[k])
        a = float(sch.c0[k] * g + sch.ct[k])
        mean = float(sch.c0[k] * (mu - g * ab[k].sqrt() * mu)) + a * mean
        var = a * a * var + float(sch.var[k])
    count = acts.size
    assert abs(acts.mean() - mean) < 4 * math.sqrt(var / count)
    assert abs(acts.var() - var) < 4 * var * math.sqrt(2 / count)
    # the mean is the data's; the reverse with the posterior variance under-disperses at K = 8
    assert abs(mean - mu) < 1e-4 and var < sd**2


def test_keyframe_inpainting_is_exact_at_level_zero():
    h, m = 4, 2
    cfg = NetConfig(horizon=h, levels=h * m)
    oracle = Oracle(Schedule(h * m), 0.0, 0.5)
    pol = Policy(oracle, cfg, inference="replan", w_obs=0.0, w_goal=0.0, steps_per_frame=m)
    key = np.array([[0.3, -0.2], [0.1, 0.4]])
    pol.begin([np.zeros((0, 5))] * 2, keyframe=(3, key))
    obs = np.zeros((2, 6))
    obs[:, 0] = 0.05
    pol.act_batch(obs)  # t = 0: s_3 is future index 2, clean after a full replan
    np.testing.assert_allclose(pol.last_plan[:, 2, :2], key, atol=1e-6)
    rolling = Policy(oracle, cfg, w_obs=0.0, w_goal=0.0, steps_per_frame=m)
    rolling.begin([np.zeros((0, 5))] * 2, keyframe=(1, key))
    rolling.act_batch(obs)  # the popped frame's state s_1 is the keyframe
    np.testing.assert_allclose(rolling.last_plan[:, 0, :2], key, atol=1e-6)


def test_sdf_discs_and_boxes_closed_forms():
    disc = [0.0, 0.0, 0.0, 0.5, 0.5]
    box = [1.0, 0.0, 0.0, 0.5, 0.25]
    pts = np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0], [0.4, 0.0], [0.0, 0.3]])
    np.testing.assert_allclose(sdf(pts, disc), [0.5, -0.5, math.sqrt(2) - 0.5, -0.1, -0.2])
    np.testing.assert_allclose(sdf(pts, box), [0.5, -0.25, math.hypot(0.5, 0.75), -0.1, 0.05])
    both = np.array([disc, [1.0, 2.0, 0.0, 0.5, 0.25]])
    np.testing.assert_allclose(
        sdf(pts, both), np.minimum(sdf(pts, disc), sdf(pts - [2.0, 0.0], box))
    )
    assert np.isinf(sdf(pts, np.zeros((0, 5)))).all()
    t = sdf_torch(torch.as_tensor(pts)[None], torch.as_tensor(both)[None])
    np.testing.assert_allclose(t.min(-1).values[0].numpy(), sdf(pts, both), atol=1e-12)
    wall = np.array([[1.0, 0.0, 0.0, 0.06, 1.5]])  # a wall across the arena: no free path
    assert not free_path_exists([-1.0, 0.0], [1.0, 0.0], wall)
    assert free_path_exists([-1.0, 0.0], [1.0, 0.0], [[0.0, 0.0, 0.0, 0.3, 0.3]])


def test_guidance_gradient_matches_finite_differences():
    g = torch.Generator().manual_seed(0)
    obstacles = torch.tensor(
        [[[0.0, 0.3, 0.1, 0.2, 0.2], [1.0, -0.2, 0.4, 0.1, 0.3]]], dtype=torch.float64
    )
    cost = TaskCost(obstacles, torch.tensor([[1.0, -0.5]], dtype=torch.float64), 0.7, 0.3,
                    sharpness=5.0, max_step=1e9)  # fmt: skip
    x0 = torch.randn(1, 3, 4, generator=g, dtype=torch.float64) * 0.5
    origin = torch.tensor([[0.1, 0.0]], dtype=torch.float64)
    active = torch.tensor([[True, True, False]])
    grad = x0 - cost.guide(x0, origin, active.double())

    def f(z):
        return float(cost(Coder().decode(z, origin)[..., :2]).sum())

    fd = torch.zeros_like(x0)
    for idx in np.ndindex(*x0.shape):
        e = torch.zeros_like(x0)
        e[idx] = 1e-6
        fd[idx] = (f(x0 + e) - f(x0 - e)) / 2e-6
    fd[:, 2] = 0.0  # inactive tokens are not moved
    np.testing.assert_allclose(grad.numpy(), fd.numpy(), atol=1e-6)
    assert torch.all(grad[..., 2:] == 0)  # the cost acts on positions only
    capped = x0 - TaskCost(obstacles, cost.goal, 0.7, 0.3, 5.0, max_step=0.01).guide(
        x0, origin, active.double()
    )
    assert torch.all(capped.norm(dim=-1) <= 0.01 + 1e-12)
    half = x0 - cost.guide(x0, origin, 0.5 * active.double())  # weighted by the x0 variance
    np.testing.assert_allclose(half.numpy(), 0.5 * fd.numpy(), atol=1e-6)


def test_tracker_inverts_the_simulated_physics():
    env = ClutterEnv(n_obstacles=0)
    rng = np.random.default_rng(0)
    for _ in range(5):
        obs, _ = env.reset(seed=1, options={"velocity": rng.uniform(-0.8, 0.8, 2)})
        u = rng.uniform(-0.9, 0.9, 2)
        nxt, *_ = env.step(u)
        np.testing.assert_allclose(
            track(obs[None, :4], nxt[None, :4], env.physics)[0], u, atol=1e-6
        )


def test_env_checker_rollout_and_windows():
    import gymnasium
    from gymnasium.utils.env_checker import check_env

    from diffusio.control.scores import rollout

    env = gymnasium.make(ENV_ID, n_obstacles=4, max_episode_steps=6)
    check_env(env.unwrapped, skip_render_check=True)
    obs, info = env.reset(seed=3)
    assert obs.shape == (6,) and info["obstacles"].shape == (4, 5)
    assert sdf(obs[:2], info["obstacles"]) > 0.2 and sdf(obs[4:], info["obstacles"]) > 0.2
    cfg = NetConfig(horizon=4, levels=8, d_model=16, n_layers=1, n_heads=2)
    pol = Policy(CLoCNet(cfg).eval(), cfg, env=env, steps_per_frame=2)
    returns = rollout(env, pol, episodes=2, seed=0)
    assert returns.shape == (2,) and np.all(returns >= -1) and np.all(returns <= 1)
    blocked = ClutterEnv(n_obstacles=0)
    blocked.reset(seed=0, options={"start": [0.0, 0.0], "obstacles": [[0.0, 0.2, 0.0, 0.1, 0.1]]})
    for _ in range(20):
        _, r, term, _, info = blocked.step([1.0, 0.0])
        if term:
            break
    assert term and info["collision"] and r == -1.0
    data = {"states": np.cumsum(np.ones((2, 9, 4)), 1), "actions": np.zeros((2, 8, 2))}
    ws, wa = windows(data, 1, 4)
    assert ws.shape == (10, 5, 4) and wa.shape == (10, 4, 2)
    np.testing.assert_allclose(ws[:, 0, :2], 0.0)  # positions relative to the current state
    with pytest.raises(ValueError, match="n_obstacles"):
        ClutterEnv(n_obstacles=-1)
