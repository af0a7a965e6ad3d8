"""The offline-RL baselines (diffusio.control.baselines): BC, %BC and GCBC trained, saved,
loaded by load_policy and rolled out; %BC's episode selection, GCBC's hindsight goals and BC's
regression checked exactly or against a known linear policy."""

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("gymnasium")
pytest.importorskip("gymnasium_robotics")

from diffusio.control.baselines import (  # noqa: E402
    BC_FILE,
    future_goals,
    relabel_segments,
    top_episodes,
    train_bc,
)
from diffusio.control.datasets import OfflineDataset, load_dataset, make_dataset  # noqa: E402
from diffusio.control.policies import evaluate, load_policy  # noqa: E402
from diffusio.io import read_safetensors  # noqa: E402

FAST = {"steps": 200, "batch_size": 64, "hidden": (32, 32), "progress": False}


def crafted(obs, actions, rewards, ends, env="point2d", **extra):
    """An in-memory dataset whose episodes end at the rows ``ends`` (timeouts)."""
    n = len(rewards)
    timeouts = np.zeros(n, dtype=bool)
    timeouts[np.asarray(ends) - 1] = True
    arrays = {"observations": np.asarray(obs, np.float32),
              "actions": np.asarray(actions, np.float32),
              "rewards": np.asarray(rewards, np.float32), "terminals": np.zeros(n, dtype=bool),
              "timeouts": timeouts, **extra}  # fmt: skip
    return OfflineDataset(Path("crafted.npz"), arrays, {"env": env})


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("baselines")
    return {
        "pointmaze-umaze": load_dataset(make_dataset("pointmaze-umaze", steps=600,
                                                     out=root / "u.npz", progress=False)),
        "lunarlander-mixed": load_dataset(make_dataset("lunarlander-mixed", episodes=5,
                                                       out=root / "l.npz", progress=False)),
    }  # fmt: skip


@pytest.mark.parametrize(("kind", "name"), [("bc", "lunarlander-mixed"),
                                            ("pbc", "lunarlander-mixed"),
                                            ("gcbc", "pointmaze-umaze")])  # fmt: skip
def test_each_kind_trains_loads_acts_and_rolls_out(kind, name, tiny, tmp_path):
    ds = tiny[name]
    run = train_bc(ds, tmp_path / kind, kind, **FAST)
    policy = load_policy(run)
    env = ds.manifest["env"]
    assert policy.env == env and policy.kind == kind
    obs = ds["observations"][:5]
    if env.startswith("pointmaze"):
        obs = np.concatenate([obs, ds["goals"][:5]], axis=1)
    one = policy.act(obs[0])
    assert one.shape == (2,) and one.dtype == np.float32
    batch = policy.act(obs)
    assert batch.shape == (5, 2) and np.all(np.abs(batch) <= 1.0)
    np.testing.assert_allclose(batch[0], one, rtol=1e-6)
    env_options = {"max_episode_steps": 50} if env == "lunarlander" else {}
    result = evaluate(policy, env, episodes=1, seed=0, env_options=env_options)
    assert len(result["episodes"]) == 1 and np.isfinite(result["score_mean"])
    if kind == "pbc":
        info = policy.info["dataset"]
        assert info["kept_episodes"] == 1 and info["episodes"] == 5


def test_training_is_deterministic_given_the_seed(tiny, tmp_path):
    ds = tiny["pointmaze-umaze"]
    runs = [train_bc(ds, tmp_path / f"r{i}", "gcbc", seed=s, **FAST)
            for i, s in enumerate((3, 3, 4))]  # fmt: skip
    weights = [read_safetensors(r / "ema.safetensors")[0] for r in runs]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not all(torch.equal(weights[0][k], weights[2][k]) for k in weights[0])
    with pytest.raises(FileExistsError, match="already holds"):
        train_bc(ds, runs[0], "gcbc", **FAST)


def _episodic(lengths, returns, action_of=None):
    """Episodes of the given lengths whose rewards sum to ``returns`` (last step)."""
    ends = np.cumsum(lengths)
    n = int(ends[-1])
    rewards = np.zeros(n)
    rewards[ends - 1] = returns
    episode = np.repeat(np.arange(len(lengths)), lengths)
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(n, 4))
    actions = np.zeros((n, 2)) if action_of is None else action_of(episode)
    return crafted(obs, actions, rewards, ends), ends


def test_pbc_keeps_exactly_the_top_fraction_of_episodes(tmp_path):
    lengths = [3, 5, 2, 7, 4, 6, 3, 5, 2, 8, 4, 3, 6, 5, 2, 7, 3, 4, 5, 6]
    returns = np.array([5, 1, 9, 3, 9, 0, 2, 8, 4, 7, 6, 1, 3, 2, 10, 5, 0, 4, 6, 2], float)
    top = {14, 2, 4}  # returns 10, 9, 9: the top 10% is 2 episodes, the tie goes to episode 2
    def action_of(episode):  # +0.5 in the two top episodes, -0.5 elsewhere
        return np.where(np.isin(episode, [14, 2])[:, None], 0.5, -0.5) * np.ones((1, 2))

    ds, ends = _episodic(lengths, returns, action_of)
    starts = np.concatenate([[0], ends[:-1]])
    bounds = [(int(starts[i]), int(ends[i])) for i in range(len(lengths))]
    assert top_episodes(ds, 0.1) == [bounds[2], bounds[14]]
    assert top_episodes(ds, 0.15) == [bounds[i] for i in sorted(top)]
    assert top_episodes(ds, 0.01) == [bounds[14]]  # at least one
    assert len(top_episodes(ds, 1.0)) == 20
    with pytest.raises(ValueError, match="fraction"):
        top_episodes(ds, 0.0)
    run = train_bc(ds, tmp_path / "pbc", "pbc", fraction=0.1, steps=300, batch_size=32,
                   hidden=(32, 32), progress=False)  # fmt: skip
    policy = load_policy(run)
    kept = policy.info["dataset"]
    assert kept["kept_episodes"] == 2 and kept["kept_transitions"] == lengths[2] + lengths[14]
    assert kept["min_kept_return"] == 9.0
    # every kept action is +0.5 (all others -0.5): the clone only saw the top episodes
    assert np.all(policy.act(ds["observations"]) > 0.3)


def test_gcbc_goals_are_future_positions_of_the_same_episode():
    lengths = [40, 7, 1, 25]
    ends = np.cumsum(lengths)
    n = int(ends[-1])
    obs = np.zeros((n, 6))
    obs[:, 0] = np.arange(n)  # x names the row: achieved positions are unique
    nxt = obs.copy()
    nxt[:, 0] += 0.5
    nxt[:, 1] = np.arange(n) * 2.0
    ds = crafted(obs, np.zeros((n, 2)), np.zeros(n), ends,
                 next_observations=nxt.astype(np.float32))
    ep_end = relabel_segments(ds, "episode")
    stream_end = relabel_segments(ds, "stream")
    np.testing.assert_array_equal(ep_end, np.repeat(ends, lengths))
    assert np.all(stream_end == n)
    achieved = torch.as_tensor(nxt[:, :2], dtype=torch.float32)
    horizon = 10
    rows = torch.arange(n).repeat(200)
    gen = torch.Generator().manual_seed(0)
    goals, j = future_goals(rows, torch.as_tensor(ep_end), achieved, horizon, gen)
    np.testing.assert_array_equal(goals.numpy(), nxt[j.numpy(), :2])
    r, jj = rows.numpy(), j.numpy()
    assert np.all(jj >= r) and np.all(jj < np.minimum(r + horizon, ep_end[r]))  # same episode
    # uniform over the window: every allowed offset occurs
    for t in (0, 35, 40, 47, 50):
        seen = set(jj[r == t] - t)
        assert seen == set(range(min(horizon, ep_end[t] - t))), t
    goals, j = future_goals(rows, torch.as_tensor(stream_end), achieved, horizon, gen)
    assert np.any(j.numpy()[r == 38] >= 40)  # the stream crosses the episode cut
    with pytest.raises(ValueError, match="goal_within"):
        relabel_segments(ds, "trajectory")


def test_bc_recovers_a_linear_policy(tmp_path):
    rng = np.random.default_rng(1)
    k = np.array([[0.3, -0.2, 0.1, 0.0], [0.0, 0.15, -0.25, 0.2]])
    s = rng.normal(size=(4000, 4))
    ds = crafted(s, s @ k.T, np.zeros(len(s)), [len(s)])
    run = train_bc(ds, tmp_path / "lin", "bc", steps=400, batch_size=256, lr=3e-3,
                   hidden=(64, 64), progress=False)  # fmt: skip
    policy = load_policy(run)
    probe = rng.normal(size=(2000, 4))
    fitted, *_ = np.linalg.lstsq(probe, policy.act(probe).astype(np.float64), rcond=None)
    np.testing.assert_allclose(fitted.T, k, atol=0.02)


def test_bad_observations_and_runs_raise_clear_errors(tiny, tmp_path):
    run = train_bc(tiny["pointmaze-umaze"], tmp_path / "bc", "bc", **FAST)
    policy = load_policy(run)
    with pytest.raises(ValueError, match=r"observation has shape \(5,\)"):
        policy.act(np.zeros(5))
    with pytest.raises(ValueError, match="contains NaN"):
        policy.act(np.array([0.0, np.nan, 0, 0, 0, 0]))
    with pytest.raises(ValueError, match="takes observations of width 6"):
        policy.act(np.zeros(4))
    with pytest.raises(ValueError, match="only the option weights"):
        load_policy(run, sampler="ddim")
    assert np.all(np.isfinite(load_policy(run, weights="model").act(np.zeros(6))))
    with pytest.raises(ValueError, match="gcbc needs a goal environment"):
        train_bc(tiny["lunarlander-mixed"], tmp_path / "g", "gcbc", **FAST)
    with pytest.raises(ValueError, match="unknown baseline kind"):
        train_bc(tiny["lunarlander-mixed"], tmp_path / "k", "cql", **FAST)
    (run / BC_FILE).write_text('{"format": "diffusio-bc", "kind": "bc"}')
    with pytest.raises(ValueError, match="bad baseline run description"):
        load_policy(run)
    (run / BC_FILE).write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="not a diffusio baseline run"):
        load_policy(run)
