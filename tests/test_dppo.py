"""DPPO (diffusio.control.dppo) and its PPO pieces (diffusio.control.ppo): exact answers first --
the per-step log-density against torch.distributions.Normal, the PPO surrogate's gradient
against finite differences of the exact expected return, GAE by hand, the clip schedule's
endpoints -- then exact resumption and the CLI on tiny runs."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from diffusio.control.diffuser import LimitsNormalizer
from diffusio.control.dppo import DPPOAgent, PPOConfig, clip_schedule, ppo_finetune
from diffusio.control.ppo import RunningRewardScaler, gae
from diffusio.core.model import DiffusionModel
from diffusio.core.processes import make_process
from diffusio.nets.film import FiLMMLP

INFO = {"obs_horizon": 1, "action_horizon": 4, "pred_horizon": 4, "action_dim": 2, "obs_dim": 8}


def _film_model(k=20, seed=0):
    torch.manual_seed(seed)
    return DiffusionModel(FiLMMLP(2, 8, 4, hidden=16, depth=1), make_process("vp-cosine",
                                                                             num_steps=k))


def test_step_log_prob_is_the_floored_normal_density():
    model = _film_model()
    agent = DPPOAgent(model, INFO, ft_steps=10)
    p = model.process
    g = torch.Generator().manual_seed(1)
    obs = torch.randn(5, 8, generator=g)
    for k in (0, 9, 18, 19):  # first, middle, last noisy step, the step to clean data
        x = 2.0 * torch.randn(5, 4, 2, generator=g)
        x_next = torch.randn(5, 4, 2, generator=g)
        t = agent.times[k]
        a_t, s_t = float(p.alpha(t)), float(p.sigma(t))
        with torch.no_grad():
            eps = model.net(x, torch.full((5,), t), obs=obs)
            x0 = ((x - s_t * eps) / a_t).clamp(-1, 1)
            if k + 1 < agent.K:
                s = agent.times[k + 1]
                a_s, s_s = float(p.alpha(s)), float(p.sigma(s))
                a_ts, var_ts = a_t / a_s, s_t**2 - (a_t / a_s) ** 2 * s_s**2
                mean = a_ts * s_s**2 / s_t**2 * x + a_s * var_ts / s_t**2 * x0
                std = max(math.sqrt(var_ts * s_s**2 / s_t**2), 0.1)
            else:
                mean, std = x0, 0.1
            want = torch.distributions.Normal(mean, std).log_prob(x_next)
            got = agent.step_log_prob(model, x, x_next, k, obs)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    # the early steps' table std is above the floor, the late ones' below it
    assert agent.step(model, x, 0, obs)[1] > 0.1 > agent.step(model, x, 18, obs)[1]


class _ConstEps(nn.Module):
    """eps(x, t) = theta: a chain whose steps are linear-Gaussian in x and theta."""

    def __init__(self, theta):
        super().__init__()
        self.theta = nn.Parameter(torch.tensor(float(theta)))

    def forward(self, x, t, obs=None):
        return self.theta * torch.ones_like(x)


def test_surrogate_gradient_at_ratio_one_is_the_policy_gradient():
    theta0, target = 0.3, 0.5
    model = DiffusionModel(_ConstEps(theta0), make_process("vp-quadratic", num_steps=6,
                                                           beta_end=0.3))
    info = {"obs_horizon": 1, "action_horizon": 1, "pred_horizon": 1, "action_dim": 1,
            "obs_dim": 1}
    # the last 2 of 6 steps fine-tuned; the frozen copy keeps theta0 for the first 4
    agent = DPPOAgent(model, info, ft_steps=2, gamma_denoise=1.0, x0_clip=False,
                      noise_clip=None, logprob_clip=None, action_clip=False)
    x = torch.zeros(1, 1, 1)
    obs = torch.zeros(1, 1)

    def coefficients():  # mean_k = c1 x + c0 theta, from the step itself (linear in both)
        out = []
        with torch.no_grad():
            for k in range(agent.K):
                model.net.theta.fill_(0.0)
                c1 = float(agent.step(model, x + 1, k, obs)[0])
                model.net.theta.fill_(1.0)
                c0 = float(agent.step(model, x, k, obs)[0])
                out.append((c1, c0, max(agent.step(model, x, k, obs)[1], 0.1)))
            model.net.theta.fill_(theta0)
        return out

    coef = coefficients()

    def expected_return(theta):  # exact: the chain keeps x Gaussian
        m, v = 0.0, 1.0
        for k, (c1, c0, std) in enumerate(coef):
            th = theta if k >= agent.K - agent.steps else theta0
            m, v = c1 * m + c0 * th, c1**2 * v + std**2
        return -((m - target) ** 2 + v)

    h = 1e-4
    fd = (expected_return(theta0 + h) - expected_return(theta0 - h)) / (2 * h)
    n = 400_000
    g = torch.Generator().manual_seed(0)
    o = torch.zeros(n, 1)
    a, chains = agent.sample(o, g)
    R = -(a.flatten() - target) ** 2
    assert float(R.mean()) == pytest.approx(expected_return(theta0), rel=0.01)
    lp = agent.log_probs(o, chains)  # (n, K')
    ratio = (lp - lp.detach()).exp()
    adv = (R - R.mean())[:, None] * agent.weights
    surrogate = (adv * ratio).mean()  # PPO's unclipped term, mean over (decision, step) pairs
    (grad,) = torch.autograd.grad(surrogate, model.net.theta, retain_graph=True)
    assert float(grad) * agent.steps == pytest.approx(fd, rel=0.03)
    # the clipped objective has the same gradient at ratio 1
    clipped = torch.min(adv * ratio, adv * ratio.clamp(1 - agent.clip, 1 + agent.clip)).mean()
    (grad_c,) = torch.autograd.grad(clipped, model.net.theta)
    assert float(grad_c) == pytest.approx(float(grad), rel=1e-6)


def test_gae_by_hand():
    gamma, lam = 0.9, 0.5
    r = torch.tensor([[1.0], [2.0], [3.0]])
    v = torch.tensor([[0.5], [1.0], [1.5]])
    v_next = torch.tensor([[1.0], [7.0], [2.0]])  # step 1 is cut by a time limit: V(final) = 7
    term = torch.tensor([[False], [False], [False]])
    done = torch.tensor([[False], [True], [False]])
    d0 = 1 + 0.9 * 1.0 - 0.5
    d1 = 2 + 0.9 * 7.0 - 1.0
    d2 = 3 + 0.9 * 2.0 - 1.5
    want = torch.tensor([[d0 + 0.45 * d1], [d1], [d2]])
    adv, ret = gae(r, v, v_next, term, done, gamma, lam)
    torch.testing.assert_close(adv, want)
    torch.testing.assert_close(ret, want + v)
    # a termination drops the bootstrap
    adv_t, _ = gae(r, v, v_next, torch.tensor([[False], [True], [False]]), done, gamma, lam)
    assert float(adv_t[1]) == pytest.approx(2 - 1.0)


def test_clip_schedule_endpoints_and_denoising_discount():
    c = clip_schedule(10, 0.01, 0.001, 3.0)
    assert float(c[0]) == pytest.approx(0.001) and float(c[-1]) == pytest.approx(0.01)
    assert bool((c[1:] > c[:-1]).all())
    u = 4 / 9
    assert float(c[4]) == pytest.approx(0.001 + 0.009 * math.expm1(3 * u) / math.expm1(3))
    assert clip_schedule(1, 0.01, 0.001).tolist() == [pytest.approx(0.01)]
    agent = DPPOAgent(_film_model(), INFO, ft_steps=10)
    assert float(agent.weights[-1]) == 1.0 and float(agent.weights[0]) == pytest.approx(0.99**9)


def test_running_reward_scaler_divides_by_the_return_std():
    sc = RunningRewardScaler(2, gamma=0.0)
    rew = np.array([[1.0, 3.0], [1.0, 3.0]])
    out = sc(rew, np.zeros((2, 2), bool))
    # gamma 0: the returns are the rewards; their variance (1) merged with the prior (1, 1e-4)
    assert out[0, 1] / out[0, 0] == pytest.approx(3.0)
    assert sc.mean == pytest.approx(2.0, rel=1e-3)


pytest.importorskip("Box2D")


def _norms():
    rng = np.random.default_rng(0)
    obs = rng.uniform(-2, 2, (100, 8))
    obs[:, 6:] = rng.integers(0, 2, (100, 2))
    return LimitsNormalizer.fit(obs), LimitsNormalizer.fit(rng.uniform(-1, 1, (100, 2)))


def test_kill_and_resume_gives_identical_weights(tmp_path):
    cfg = PPOConfig(iterations=2, n_envs=2, n_steps=6, minibatch=6, update_epochs=2)

    def run(out, stop_after=None):
        agent = DPPOAgent(_film_model(), INFO, ft_steps=2)
        critic, rows = ppo_finetune(agent, "lunarlander", _norms(), out, cfg, progress=False,
                                    stop_after=stop_after)
        return agent, critic, rows

    a, c, rows = run(tmp_path / "straight")
    run(tmp_path / "killed", stop_after=1)  # the process "dies" after one iteration
    b, d, rows_b = run(tmp_path / "killed")  # a fresh process resumes from the checkpoint
    for x, y in zip([*a.actor.parameters(), *c.parameters()],
                    [*b.actor.parameters(), *d.parameters()], strict=True):
        assert torch.equal(x, y)
    assert [r["iteration"] for r in rows_b] == [0, 1, 2]
    for r1, r2 in zip(rows, rows_b, strict=True):
        assert r1["env_steps"] == r2["env_steps"] and r1.get("approx_kl") == r2.get("approx_kl")


def test_finetune_cli_writes_runs_that_rollout_reads(tmp_path, capsys):
    from cli_helpers import run_command

    from diffusio.control.datasets import make_dataset
    from diffusio.control.dppo import pretrain_diffusion_policy
    from diffusio.control.policies import evaluate, load_policy
    from diffusio.control.ppo import GaussianPolicy, train_gaussian_policy

    data = make_dataset("lunarlander-heuristic", episodes=2, out=tmp_path / "d.npz",
                        progress=False)
    h = {"obs_horizon": 1, "pred_horizon": 4, "action_horizon": 4}
    pretrain_diffusion_policy(data, tmp_path / "dp", steps=3, batch_size=16, progress=False,
                              net_options={"hidden": 16, "depth": 1}, **h)
    train_gaussian_policy(data, tmp_path / "g", steps=3, hidden=16, depth=1, progress=False, **h)
    for name in ("dp", "g"):
        code, out, err = run_command(capsys, "finetune", tmp_path / name, "--iterations", 1,
                                     "--envs", 2, "--out", tmp_path / f"{name}-ft")
        assert code == 0, err
        assert "iterations" in out and (tmp_path / f"{name}-ft" / "metrics.jsonl").is_file()
        policy = load_policy(tmp_path / f"{name}-ft")
        assert policy.env == "lunarlander"
        assert evaluate(policy, "lunarlander", 1, 0)["episodes"][0]["steps"] > 0
    assert isinstance(load_policy(tmp_path / "g-ft"), GaussianPolicy)
