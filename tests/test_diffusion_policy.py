"""Diffusion Policy: the FiLM backbones, the training windows, receding-horizon execution, the
chunk baselines, and sampling a bimodal chunk distribution with the exact oracle."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from diffusio.control.chunk_baselines import ChunkMLP, gmm_nll
from diffusio.control.diffusion_policy import DiffusionPolicy, RecedingHorizon, policy_windows
from diffusio.core.oracle import GaussianMixture
from diffusio.core.processes import make_process
from diffusio.nets.film import FiLMMLP, FiLMUNet1D


# --------------------------------------------------------------------------- backbones
def test_film_unet_shapes_and_conditioning():
    torch.manual_seed(0)
    net = FiLMUNet1D(2, 6, down_dims=(16, 32, 64), step_dim=16)
    x, t = torch.randn(3, 16, 2), torch.rand(3)
    obs = torch.randn(3, 6)
    out = net(x, t, obs=obs)
    assert out.shape == x.shape
    # the observation reaches the output (FiLM), and each row only sees its own condition
    other = obs.clone()
    other[0] += 1.0
    changed = net(x, t, obs=other)
    assert not torch.allclose(changed[0], out[0])
    torch.testing.assert_close(changed[1:], out[1:])


def test_film_unet_errors():
    net = FiLMUNet1D(2, 6, down_dims=(16, 32, 64), step_dim=16)
    with pytest.raises(ValueError, match="multiple of 4"):
        net(torch.randn(1, 10, 2), torch.rand(1), obs=torch.randn(1, 6))
    with pytest.raises(ValueError, match=r"obs must have shape \(1, 6\)"):
        net(torch.randn(1, 16, 2), torch.rand(1), obs=torch.randn(1, 5))
    with pytest.raises(ValueError, match="needs the observation"):
        net(torch.randn(1, 16, 2), torch.rand(1))


def test_film_mlp_shapes():
    net = FiLMMLP(3, 4, horizon=5, hidden=32, depth=2)
    assert net(torch.randn(2, 5, 3), torch.rand(2), obs=torch.randn(2, 4)).shape == (2, 5, 3)
    with pytest.raises(ValueError, match=r"x must be \(N, 5, 3\)"):
        net(torch.randn(2, 4, 3), torch.rand(2), obs=torch.randn(2, 4))


# --------------------------------------------------------------------------- windows
def test_policy_windows_pad_like_the_official_sampler():
    obs = np.arange(10, dtype=float)[:, None]  # one 1-D observation per step: its index
    act = 100 + np.arange(10, dtype=float)[:, None]
    bounds = [(0, 4), (4, 10)]
    To, Tp, Ta = 2, 4, 2
    o, a = policy_windows(obs, act, bounds, To, Tp, Ta)
    # starts s = a - (To - 1) .. b - Tp + Ta - 1: 4 + 6 windows... per episode L - Tp + Ta + To - 1
    assert len(o) == (4 - 4 + 2 + 1) + (6 - 4 + 2 + 1)
    # the first window of an episode repeats its first observation (pad_before = To - 1)
    np.testing.assert_array_equal(o[0, :, 0], [0, 0])
    np.testing.assert_array_equal(a[0, :, 0], [100, 100, 101, 102])
    # the last window of episode 1 runs past its end: the last action repeats (pad_after)
    np.testing.assert_array_equal(a[2, :, 0], [101, 102, 103, 103])
    # the second episode never sees the first one's steps
    np.testing.assert_array_equal(o[3, :, 0], [4, 4])


class _Scripted(RecedingHorizon):
    """A chunk policy whose chunk k is 100 k + index (for checking what is executed)."""

    def __init__(self, To: int, Tp: int, Ta: int):
        self.env, self.obs_horizon, self.pred_horizon, self.action_horizon = "point2d", To, Tp, Ta
        self.windows, self.planning_seconds = [], []
        self.reset(0)

    def plan(self, obs_windows):
        self.windows.append(np.asarray(obs_windows)[0, :, 0].copy())
        k = len(self.windows)
        return np.stack([100.0 * k + np.arange(self.pred_horizon)] * 2, -1)[None]


def test_receding_horizon_executes_ta_actions_from_to_minus_one_then_replans():
    policy = _Scripted(To=2, Tp=6, Ta=3)
    actions = [policy.act(np.full(4, float(i)))[0] for i in range(7)]
    # chunk 1 executes indices 1, 2, 3; chunk 2 (after Ta = 3 steps) again 1, 2, 3; ...
    assert actions == [101, 102, 103, 201, 202, 203, 301]
    # the first window repeats the first observation, later ones hold the last To steps
    np.testing.assert_array_equal(policy.windows[0], [0, 0])
    np.testing.assert_array_equal(policy.windows[1], [2, 3])
    policy.reset(1)
    policy.act(np.full(4, 9.0))
    np.testing.assert_array_equal(policy.windows[-1], [9, 9])


# --------------------------------------------------------------------------- baselines
def test_gmm_nll_matches_the_mixture_density():
    torch.manual_seed(0)
    logits, means = torch.randn(4, 3), torch.randn(4, 3, 2)
    log_stds, target = 0.3 * torch.randn(4, 3, 2), torch.randn(4, 2)
    expect = 0.0
    for i in range(4):
        mix = torch.distributions.MixtureSameFamily(
            torch.distributions.Categorical(logits=logits[i]),
            torch.distributions.Independent(torch.distributions.Normal(means[i], log_stds[i].exp()), 1),
        )
        expect -= float(mix.log_prob(target[i])) / 4
    assert float(gmm_nll(logits, means, log_stds, target)) == pytest.approx(expect, rel=1e-5)


def test_chunk_mlp_heads():
    mse, gmm = ChunkMLP(4, 6, "mse", hidden=8, depth=1), ChunkMLP(4, 6, "gmm", 3, hidden=8, depth=1)
    assert mse(torch.randn(2, 4)).shape == (2, 6)
    logits, means, log_stds = gmm.mixture(torch.randn(2, 4))
    assert logits.shape == (2, 3) and means.shape == log_stds.shape == (2, 3, 6)
    with pytest.raises(ValueError, match="unknown baseline kind"):
        ChunkMLP(4, 6, "lstm")


# --------------------------------------------------------------------------- exact oracle
class _IgnoresObs(nn.Module):
    """The oracle's exact network, called as a policy backbone (obs ignored)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.inner = net

    def forward(self, x, t, obs=None):
        return self.inner(x, t)


@pytest.mark.parametrize("sampler,steps", [("ddim", 10), ("dpm-solver++", 10), ("ddpm", None)])
def test_diffusion_policy_commits_to_one_mode_of_a_bimodal_chunk_distribution(sampler, steps):
    """Chunks of Tp = 8 2-D actions, all -0.5 ("left") or all +0.5 ("right") with std 0.05,
    50/50: the exact model's chunks each stay in one mode (no averaging, unlike the
    regression answer 0), and the two modes keep their weights (binomial, 4 sigma)."""
    Tp, A, n = 8, 2, 400
    mixture = GaussianMixture([[-0.5] * (Tp * A), [0.5] * (Tp * A)], [0.05, 0.05])
    process = make_process("vp-cosine", num_steps=100)
    oracle = mixture.model(process)
    oracle.net = _IgnoresObs(oracle.net)
    unit = {"low": [-1.0, -1.0], "high": [1.0, 1.0]}
    info = {"env": "point2d", "obs_horizon": 2, "pred_horizon": Tp, "action_horizon": 4,
            "obs_dim": 4, "action_dim": A, "obs_norm": {"low": [-1.0] * 4, "high": [1.0] * 4},
            "action_norm": unit, "sampler": sampler, "sampler_steps": steps}  # fmt: skip
    policy = DiffusionPolicy(oracle, info)
    chunks = policy.plan(np.zeros((n, 2, 4)))
    assert chunks.shape == (n, Tp, A)
    means = chunks.reshape(n, -1).mean(1)
    spread = chunks.reshape(n, -1).std(1)
    # each chunk sits in one mode: mean +-0.5 (the chunk mean of 16 N(0, 0.05^2): sd 0.0125)
    assert np.all(np.abs(np.abs(means) - 0.5) < 0.05)
    assert np.all(spread < 0.15)
    right = float((means > 0).mean())
    assert abs(right - 0.5) < 4 * math.sqrt(0.25 / n)


# --------------------------------------------------------------------------- runs and the CLI
@pytest.fixture(scope="module")
def avoid_runs(tmp_path_factory):
    """A 4-step Diffusion Policy and MSE / GMM baselines on 3 point2d-avoid episodes."""
    pytest.importorskip("gymnasium")
    from diffusio.control.chunk_baselines import train_chunk_baseline
    from diffusio.control.datasets import make_dataset
    from diffusio.control.diffusion_policy import train_diffusion_policy

    root = tmp_path_factory.mktemp("dp")
    data = make_dataset("point2d-avoid", episodes=3, out=root / "avoid.npz", progress=False)
    train_diffusion_policy(data, root / "dp", steps=4, batch_size=8, progress=False,
                           net_options={"down_dims": [8, 16, 32], "step_dim": 8})  # fmt: skip
    runs = {"dp": root / "dp"}
    for kind in ("mse", "gmm"):
        runs[kind] = train_chunk_baseline(data, root / kind, kind, steps=4, batch_size=8,
                                          hidden=16, progress=False)  # fmt: skip
    return runs


def test_load_policy_and_rollout_on_every_kind(avoid_runs, capsys, tmp_path):
    from cli_helpers import run_command

    from diffusio.control.policies import evaluate_batched, load_policy

    for run in avoid_runs.values():
        policy = load_policy(run)
        assert policy.env == "point2d-avoid"
        r = evaluate_batched(policy, "point2d-avoid", 2, seed=0, batch=2)
        assert len(r["episodes"]) == 2 and all(e["steps"] == 50 for e in r["episodes"])
        assert set(r["episodes"][0]) >= {"collision", "max_reward", "score"}
    out = tmp_path / "r.json"
    code, stdout, err = run_command(capsys, "rollout", avoid_runs["dp"], "--episodes", 1,
                                    "--sampler", "ddpm", "--steps", 5, "--out", out,
                                    "--no-progress")  # fmt: skip
    assert code == 0, err
    assert "point2d-avoid: return" in stdout and "collisions" in stdout
    # 50 steps, Ta = 8: ceil(50 / 8) = 7 plans
    assert len(json.loads(out.read_text())["planning_seconds"]) == 7


def test_a_finished_baseline_run_is_reused_and_another_recipe_refused(avoid_runs):
    from diffusio.control.chunk_baselines import train_chunk_baseline

    run = avoid_runs["mse"]
    data = run.parent / "avoid.npz"
    assert train_chunk_baseline(data, run, "mse", steps=4, batch_size=8, hidden=16,
                                progress=False) == run  # fmt: skip
    with pytest.raises(FileExistsError, match="another recipe"):
        train_chunk_baseline(data, run, "mse", steps=5, batch_size=8, hidden=16, progress=False)


def test_point2d_avoid_demonstrations_pass_on_both_sides_with_clearance(tmp_path):
    pytest.importorskip("gymnasium")
    from diffusio.control.datasets import load_dataset, make_dataset
    from diffusio.control.envs import AVOID_OBSTACLE, make_env

    env = make_env("point2d-avoid")
    np.testing.assert_array_equal(env.obstacles, [AVOID_OBSTACLE])
    assert env.max_episode_steps == 50
    ds = load_dataset(make_dataset("point2d-avoid", episodes=20, out=tmp_path / "a.npz",
                                   progress=False))  # fmt: skip
    pos = ds["observations"][:, :2].reshape(20, 50, 2)
    sides = ds["sides"].reshape(20, 50)
    assert (sides == sides[:, :1]).all()  # one side per episode
    assert set(np.unique(sides)) == {-1, 1}
    # the side label is where the path goes: +1 left (x < 0) of the line to the goal
    beside = np.abs(pos[..., 1]) < AVOID_OBSTACLE[2]
    mean_x = np.array([p[b, 0].mean() for p, b in zip(pos, beside, strict=True)])
    np.testing.assert_array_equal(np.sign(mean_x), -sides[:, 0])
    # clearance: never within 0.1 of the disc, and every demonstration reaches the goal
    assert np.linalg.norm(pos, axis=-1).min() > AVOID_OBSTACLE[2] + 0.1
    assert (ds["rewards"].reshape(20, 50) > 0).any(1).all()


def test_run_descriptions_are_checked(tmp_path):
    from diffusio.control.diffusion_policy import load_diffusion_policy_run

    with pytest.raises(FileNotFoundError, match="not a Diffusion Policy run"):
        load_diffusion_policy_run(tmp_path)
    (tmp_path / "diffusion_policy.json").write_text('{"format": "something-else"}')
    with pytest.raises(ValueError, match="not a diffusio Diffusion Policy run description"):
        load_diffusion_policy_run(tmp_path)
    (tmp_path / "diffusion_policy.json").write_text("{not json")
    with pytest.raises(ValueError, match="corrupt JSON"):
        load_diffusion_policy_run(tmp_path)
