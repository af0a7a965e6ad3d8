"""The automatic Push-T expert (diffusio.control.pusht_expert) and the ``pusht`` dataset recipe:
determinism, an easy start solved within a small budget, exact planning on the simulator, the
recipe's arrays and manifest."""

import numpy as np
import pytest

pytest.importorskip("gymnasium")
pytest.importorskip("pymunk")
pytest.importorskip("shapely")

import gymnasium  # noqa: E402

from diffusio.control.pusht import ENV_IDS, GOAL_POSE, PushTEnv, keypoints_world, register  # noqa: E402
from diffusio.control.pusht_expert import PushTExpert, pose_error  # noqa: E402

EASY = [150.0, 150.0, 266.0, 250.0, np.pi / 4 + 0.15]  # 10 px and 0.15 rad off the goal


def _actions(env, seed, policy_seed, n):
    expert = PushTExpert(env)
    obs, _ = env.reset(seed=seed)
    expert.reset(policy_seed)
    out = []
    for _ in range(n):
        action = expert.act(obs)
        out.append(action)
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            break
    return np.array(out)


def test_the_expert_is_deterministic_and_works_through_wrappers():
    first = _actions(PushTEnv(), 3, 7, 40)
    register()
    wrapped = gymnasium.make(ENV_IDS["keypoints"])  # the expert reads env.unwrapped
    np.testing.assert_array_equal(first, _actions(wrapped, 3, 7, 40))
    assert first.shape == (40, 2) and ((first >= 0) & (first <= 512)).all()
    assert not np.array_equal(first, _actions(PushTEnv(), 3, 8, 40))  # its own seed matters


def test_the_expert_solves_an_easy_start_within_100_steps():
    env = PushTEnv()
    obs, info = env.reset(options={"state": EASY})
    assert info["coverage"] < 0.7
    expert = PushTExpert(env)
    expert.reset(0)
    for _ in range(100):
        obs, reward, terminated, truncated, info = env.step(expert.act(obs))
        if terminated:
            break
    assert terminated and info["coverage"] > 0.95 and reward == 1.0


def test_the_plan_is_replayed_exactly_and_a_disturbance_makes_it_replan():
    env = PushTEnv()
    obs, _ = env.reset(seed=5)
    expert = PushTExpert(env)
    expert.reset(0)
    env.step(expert.act(obs))
    planned = list(expert.queue)
    _, predicted = expert._rollout(expert._state(), planned, 0, stop=len(planned))
    for action in planned:  # the queued actions are what act() hands out
        np.testing.assert_array_equal(expert.act(obs), np.clip(action, 0, 512))
        info = env.step(action)[4]
    assert expert.plans == 1 and len(planned) > 0
    # the expert's copy of the simulator predicts the env (pymunk's warm start aside)
    np.testing.assert_allclose(info["agent_pos"], predicted[0], atol=1e-9)
    np.testing.assert_allclose(info["block_pose"], [*predicted[2], predicted[3]], atol=1e-2)
    env.step([256.0, 256.0])  # a step the expert did not choose
    expert.queue.append(np.zeros(2))  # stale: must not be used
    expert.act(obs)
    assert expert.plans == 2


def test_pose_error_is_zero_at_the_goal_and_grows_with_offsets():
    assert pose_error(*GOAL_POSE) == pytest.approx(0.0, abs=1e-9)
    x, y, a = GOAL_POSE
    assert pose_error(x + 3.0, y - 4.0, a) == pytest.approx(5.0)
    assert pose_error(x, y, a + 0.2) > pose_error(x, y, a + 0.1) > 0


def test_the_recipe_records_keypoints_states_and_the_expert_scores():
    from diffusio.control.generate import pusht_expert

    arrays, details = pusht_expert(0, None, 2, progress=False)
    n = len(arrays["rewards"])
    assert arrays["observations"].shape == (n, 20) == arrays["next_observations"].shape
    assert arrays["actions"].shape == (n, 2) and arrays["states"].shape == (n, 5)
    for key in ("observations", "actions", "rewards", "next_observations", "states"):
        assert arrays[key].dtype == np.float32, key
    assert arrays["terminals"].dtype == bool and arrays["timeouts"].dtype == bool
    ends = np.flatnonzero(arrays["terminals"] | arrays["timeouts"])
    assert len(ends) == 2 and ends[-1] == n - 1
    assert not (arrays["terminals"] & arrays["timeouts"]).any()
    # the states give the keypoint observations back
    s = arrays["states"].astype(np.float64)
    kp = np.stack([keypoints_world(row[2:]).ravel() for row in s])
    np.testing.assert_allclose(arrays["observations"][:, :18], kp, atol=1e-2)
    np.testing.assert_allclose(arrays["observations"][:, 18:], s[:, :2], atol=1e-3)
    assert ((s[:, 4] >= 0) & (s[:, 4] < 2 * np.pi + 1e-4)).all()
    assert len(details["scores"]) == 2
    assert details["score_mean"] == pytest.approx(np.mean(details["scores"]))
    assert details["success_rate"] == np.mean(arrays["terminals"][ends])
    assert 0.0 <= details["final_coverage_mean"] <= 1.0
    # the episode score is the max reward of the episode
    starts = np.concatenate([[0], ends[:-1] + 1])
    maxima = [arrays["rewards"][a:b + 1].max() for a, b in zip(starts, ends, strict=True)]
    np.testing.assert_allclose(details["scores"], maxima, atol=1e-6)


def test_make_dataset_pusht_writes_the_manifest_and_summary(tmp_path):
    from diffusio.control.datasets import load_dataset, make_dataset, summary_line

    path = make_dataset("pusht", seed=0, episodes=1, out=tmp_path / "p.npz", progress=False)
    ds = load_dataset(path)
    m = ds.manifest
    assert m["env"] == "pusht" and m["labels_array"] == "states" and m["episodes"] == 1
    assert {"score_mean", "success_rate", "final_coverage_mean", "scores"} <= m.keys()
    assert "pymunk" in m["versions"] and ds["states"].shape == (len(ds), 5)
    assert "demonstrator score" in summary_line(path)
