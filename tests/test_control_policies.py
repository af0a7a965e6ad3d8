"""Diffuser's data, planner and maze policy (diffusio.control.diffuser), load_policy and the
rollout runner (diffusio.control.policies) and ``diffusio rollout``."""

import json

import numpy as np
import pytest
import torch

pytest.importorskip("gymnasium")
pytest.importorskip("gymnasium_robotics")

from cli_helpers import one_line_error, run_command  # noqa: E402

from diffusio.control.datasets import load_dataset, make_dataset  # noqa: E402
from diffusio.control.diffuser import (  # noqa: E402
    LimitsNormalizer,
    train_diffuser,
    trajectory_windows,
)
from diffusio.control.policies import evaluate, load_policy  # noqa: E402


def test_windows_are_actions_then_states_from_the_stream():
    obs = np.arange(20, dtype=np.float32).reshape(10, 2)
    act = -np.arange(10, dtype=np.float32).reshape(10, 1)
    w = trajectory_windows(obs, act, horizon=4, stride=3)
    assert w.shape == (3, 4, 3)
    np.testing.assert_array_equal(w[1, :, 0], -np.arange(3, 7))  # the action column first
    np.testing.assert_array_equal(w[1, :, 1:], obs[3:7])
    with pytest.raises(ValueError, match="horizon"):
        trajectory_windows(obs, act, horizon=11)
    with pytest.raises(ValueError, match="one length"):
        trajectory_windows(obs, act[:5], horizon=4)


def test_skipped_windows_take_every_skip_th_step_and_upsample_back():
    from diffusio.control.diffuser import upsample_plan

    obs = np.arange(20, dtype=np.float32).reshape(10, 2)
    act = -np.arange(10, dtype=np.float32).reshape(10, 1)
    w = trajectory_windows(obs, act, horizon=3, stride=1, skip=4)  # spans 9 steps
    assert w.shape == (2, 3, 3)
    np.testing.assert_array_equal(w[1, :, 1:], obs[[1, 5, 9]])
    fine = upsample_plan(w[0].astype(np.float64), 4)
    assert fine.shape == (9, 3)
    np.testing.assert_allclose(fine[:, 1:], obs[:9])  # the stream is linear in time
    with pytest.raises(ValueError, match="at skip 4"):
        trajectory_windows(obs, act, horizon=4, skip=4)


def test_limits_normalizer_maps_the_data_range_to_minus_one_one_and_back():
    x = np.array([[0.0, 5.0], [2.0, 5.0], [1.0, 5.0]])
    norm = LimitsNormalizer.fit(x)
    z = norm(x)
    np.testing.assert_allclose(z[:, 0], [-1.0, 1.0, 0.0])
    np.testing.assert_allclose(z[:, 1], -1.0)  # a constant dimension maps to -1, not NaN
    np.testing.assert_allclose(norm.inverse(z), x)


class _Straight:
    """Pushes toward the goal: a scripted policy for the runner."""

    planning_seconds = [0.0]

    def reset(self, seed):
        pass

    def act(self, obs):
        return np.clip(5.0 * (obs[4:6] - obs[:2]) - obs[2:4], -1, 1)


def test_the_runner_reports_returns_scores_and_success():
    result = evaluate(_Straight(), "point2d", episodes=3, seed=0)
    assert len(result["episodes"]) == 3
    row = result["episodes"][0]
    assert set(row) == {"return", "score", "success", "steps", "max_reward", "collision"}
    assert row["max_reward"] == 1.0 and row["collision"] is False  # point2d reports collisions
    returns = np.array([r["return"] for r in result["episodes"]])
    assert np.isclose(result["return_mean"], returns.mean())
    assert np.isclose(result["return_se"], returns.std(ddof=1) / np.sqrt(3))
    with pytest.raises(ValueError, match="episodes"):
        evaluate(_Straight(), "point2d", episodes=0)


class _BadAction(_Straight):
    def act(self, obs):
        return np.zeros(3)


def test_the_runner_names_a_wrong_action_shape():
    with pytest.raises(ValueError, match="action must be"):
        evaluate(_BadAction(), "point2d", episodes=1)


@pytest.fixture(scope="module")
def diffuser_run(tmp_path_factory):
    """A Diffuser trained for a few steps on a tiny U-Maze stream (a smoke test, not a
    planner that works)."""
    root = tmp_path_factory.mktemp("diffuser")
    data = load_dataset(make_dataset("pointmaze-umaze", steps=400, out=root / "u.npz",
                                     progress=False))  # fmt: skip
    run = root / "run"
    train_diffuser(data["observations"], data["actions"], run, horizon=16, steps=4,
                   env="pointmaze-umaze", stride=8, progress=False,
                   process_options={"num_steps": 8}, net_options={"dim": 8},
                   batch_size=8)  # fmt: skip
    return run


def test_a_trained_diffuser_plans_through_its_start_and_goal(diffuser_run):
    policy = load_policy(diffuser_run)
    assert policy.env == "pointmaze-umaze"
    start, goal = np.array([0.5, -0.5, 0.1, 0.0]), np.array([-1.0, 1.0, 0.0, 0.0])
    plans = policy.planner.plan({0: start, 15: goal}, n=2, seed=0)
    assert plans.shape == (2, 16, 6)
    np.testing.assert_allclose(plans[:, 0, 2:], np.broadcast_to(start, (2, 4)), atol=1e-5)
    np.testing.assert_allclose(plans[:, -1, 2:], np.broadcast_to(goal, (2, 4)), atol=1e-5)
    with pytest.raises(ValueError, match="finite state"):
        policy.planner.plan({0: np.array([np.nan, 0, 0, 0])})
    with pytest.raises(ValueError, match="6 finite values"):
        policy.act(np.zeros(4))


def test_replanning_warm_starts_from_the_shifted_plan(diffuser_run):
    """Every ``replan_every`` steps a new plan starts at the current state; a warm start runs
    only the grid's last ``warm_steps`` evaluations (the NFE counts them) from the old plan."""
    from diffusio.core.samplers import sample

    policy = load_policy(diffuser_run, replan_every=3, warm_steps=2)
    policy.reset(0)
    obs = np.array([0.5, -0.5, 0.0, 0.0, -1.0, 1.0])
    for _ in range(7):
        policy.act(obs)
    assert len(policy.planning_seconds) == 3  # steps 0, 3 and 6
    np.testing.assert_allclose(policy.plan[0, 2:], obs[:4], atol=1e-5)
    planner, calls = policy.planner, []
    original = sample

    def counting(*args, **kw):
        out, stats = original(*args, **kw, return_stats=True)
        calls.append(stats["nfe"])
        return out

    import diffusio.core.samplers as samplers

    samplers.sample, saved = counting, samplers.sample
    try:
        planner.plan({0: obs[:4]}, seed=0, warm_start=policy.plan, warm_steps=2)
        planner.plan({0: obs[:4]}, seed=0)
    finally:
        samplers.sample = saved
    assert calls == [2, 8]  # the warm tail vs the whole T = 8 chain
    with pytest.raises(ValueError, match="warm_steps must be in"):
        planner.plan({0: obs[:4]}, warm_start=policy.plan, warm_steps=9)
    with pytest.raises(ValueError, match="warm_steps needs replan_every"):
        load_policy(diffuser_run, warm_steps=2)


def test_known_entries_condition_the_first_and_last_states():
    from diffusio.control.diffuser import KnownEntries
    from diffusio.data.batch import Batch

    x0 = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)  # A = 1, S = 2
    out = KnownEntries(action_dim=1)(Batch(x0), torch.Generator())
    known, mask = out.cond["known"], out.mask
    for step in (0, 3):
        torch.testing.assert_close(known[:, step, 1:], x0[:, step, 1:])
        assert (mask[:, step, 1:] == 0).all()
    assert torch.isnan(known[:, 1:3]).all() and torch.isnan(known[:, :, 0]).all()
    assert (mask[:, 1:3] == 1).all() and (mask[:, :, 0] == 1).all()


def test_a_warm_start_is_renoised_with_its_own_noise():
    """The re-noising draw must not be the sampler's first draw from the same seed (that would
    correlate the warm start's noise with the first reverse step's)."""
    from diffusio.control.diffuser import renoise
    from diffusio.core.processes import make_process

    process = make_process("vp-cosine")
    x0 = torch.zeros(2, 8, 3)
    x = renoise(process, x0, 0.5, seed=7)
    z = x / process.sigma(torch.tensor(0.5, dtype=torch.float64)).item()
    sampler_first = torch.randn(x0.shape, generator=torch.Generator().manual_seed(7))
    assert not torch.allclose(z, sampler_first)
    torch.testing.assert_close(renoise(process, x0, 0.5, seed=7), x)  # seeded: reproducible


def test_rollout_command_writes_every_episode(diffuser_run, tmp_path, capsys):
    out = tmp_path / "r.json"
    code, stdout, err = run_command(capsys, "rollout", diffuser_run, "--episodes", 1, "--out",
                                    out, "--sampler", "ddim", "--steps", 4, "--no-progress")  # fmt: skip
    assert code == 0, err
    assert "pointmaze-umaze: return" in stdout and "ms per decision" in stdout
    result = json.loads(out.read_text())
    assert len(result["episodes"]) == 1 and result["episodes"][0]["steps"] == 300
    assert len(result["planning_seconds"]) == 1  # plans once per episode


def test_rollout_errors_are_one_line(tmp_path, capsys):
    assert "run directory not found" in one_line_error(capsys, "rollout", tmp_path / "none")
    assert "not a policy run" in one_line_error(capsys, "rollout", tmp_path)


def test_the_batched_runner_matches_the_sequential_one_for_a_deterministic_policy():
    from diffusio.control.policies import evaluate_batched

    class _Batched(_Straight):
        def act(self, obs):
            obs = np.asarray(obs)
            return np.clip(5.0 * (obs[..., 4:6] - obs[..., :2]) - obs[..., 2:4], -1, 1)

    one = evaluate(_Batched(), "point2d", episodes=3, seed=0)
    many = evaluate_batched(_Batched(), "point2d", 3, seed=0, batch=2)
    for a, b in zip(one["episodes"], many["episodes"], strict=True):
        assert a["return"] == pytest.approx(b["return"]) and a["steps"] == b["steps"]
        assert a["collision"] == b["collision"] and a["max_reward"] == b["max_reward"]
