"""Value-guided receding-horizon planning (diffusio.control.value_planning): the value targets
are the discounted returns-to-go of each window's first step, the trained value run round-trips
through safetensors, and the policy executes the plan its value ranks first."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("gymnasium")

from diffusio.control.datasets import OfflineDataset  # noqa: E402
from diffusio.control.diffuser import train_on_windows  # noqa: E402
from diffusio.control.value_planning import (  # noqa: E402
    load_value_run,
    train_value,
    value_guided_policy,
    value_windows,
)


def _dataset(lengths, state_dim=8, action_dim=2, seed=0):
    rng = np.random.default_rng(seed)
    n = sum(lengths)
    obs = rng.normal(size=(n, state_dim)).astype(np.float32)
    terminals = np.zeros(n, bool)
    terminals[np.cumsum(lengths) - 1] = True
    arrays = {"observations": obs, "next_observations": np.roll(obs, -1, 0),
              "actions": rng.uniform(-1, 1, (n, action_dim)).astype(np.float32),
              "rewards": np.arange(n, dtype=np.float32), "terminals": terminals,
              "timeouts": np.zeros(n, bool)}  # fmt: skip
    return OfflineDataset("fake.npz", arrays, {})


def test_value_targets_are_discounted_returns_to_go_of_the_window_start():
    ds = _dataset([5, 4])
    windows, returns = value_windows(ds, horizon=3, discount=0.5)
    assert windows.shape == (9, 3, 10)
    r = ds["rewards"].astype(np.float64)
    # first window of episode 2 starts at row 5: 5 + 0.5 * 6 + 0.25 * 7 + 0.125 * 8
    assert returns[5] == pytest.approx(r[5] + 0.5 * r[6] + 0.25 * r[7] + 0.125 * r[8])
    assert returns[4] == pytest.approx(r[4])  # the last step of episode 1


@pytest.fixture(scope="module")
def lander_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("lander")
    ds = _dataset([20, 20])
    windows, returns = value_windows(ds, horizon=8)
    run = root / "run"
    train_on_windows(windows, 2, run, steps=2, env="lunarlander", known_steps=(0,),
                     kind="diffuser-lander", progress=False, batch_size=4,
                     process_options={"num_steps": 4}, net_options={"dim": 8, "dim_mults": [1, 2]})
    train_value(windows, returns, run, root / "value", steps=3, dim=8, dim_mults=(1, 2),
                progress=False)
    return run, root / "value"


def test_the_value_run_round_trips(lander_run):
    run, value_dir = lander_run
    net, info = load_value_run(value_dir)
    assert info["transition_dim"] == 10 and np.isfinite(info["mean"])
    x = torch.randn(3, 8, 10)
    assert net(x, torch.rand(3)).shape == (3,)
    with pytest.raises(FileNotFoundError, match="not a value run"):
        load_value_run(run)


def test_the_policy_executes_the_plan_its_value_ranks_first(lander_run):
    run, value_dir = lander_run
    policy = value_guided_policy(run, value_dir, scale=0.0, n_samples=4, replan_every=3)
    seen = []

    def value(x, t):  # prefers plans whose first action's first entry is largest
        seen.append(x.detach().clone())
        return x[:, 0, 0]

    policy.value = value
    obs = np.zeros((2, 8), dtype=np.float32)
    policy.reset(0)
    a = policy.act(obs)
    assert a.shape == (2, 2) and a.dtype == np.float32
    candidates = policy.norm.inverse(seen[-1].numpy()).reshape(2, 4, 8, 10)  # the ranking call
    best = candidates[np.arange(2), candidates[:, :, 0, 0].argmax(axis=1)]
    np.testing.assert_allclose(policy.plans, best, atol=1e-5)
    np.testing.assert_allclose(a, np.clip(best[:, 0, :2], -1, 1), atol=1e-5)
    policy.act(obs)
    policy.act(obs)
    assert len(policy.planning_seconds) == 1  # replans every 3 steps
    policy.act(obs)
    assert len(policy.planning_seconds) == 2
    with pytest.raises(ValueError, match="lunarlander"):
        policy.act(np.zeros((2, 5), dtype=np.float32))
