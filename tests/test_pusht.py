"""Push-T (diffusio.control.pusht; Chi et al. 2023, Diffusion Policy): the gymnasium API, seeding,
the coverage reward on known geometry, the PD-driven agent, pushing, the contact count, the
walls, rendering and the missing-extra message."""

import importlib
import math
import sys
import warnings

import numpy as np
import pytest

pytest.importorskip("gymnasium")
pytest.importorskip("pymunk")
pytest.importorskip("shapely")

import gymnasium  # noqa: E402

from diffusio.control.pusht import (  # noqa: E402
    ENV_IDS,
    GOAL_POSE,
    KEYPOINTS,
    T_AREA,
    PushTEnv,
    coverage,
    frame_strip,
    keypoints_world,
    register,
    t_polygon,
)

FAR_AGENT = (460.0, 60.0)  # well clear of the goal T and of the blocks placed below


def _env(state, **kw):
    env = PushTEnv(**kw)
    env.reset(options={"state": state})
    return env


# ----------------------------------------------------------------------- gymnasium API
@pytest.mark.parametrize("obs_type", ["keypoints", "state"])
def test_both_variants_pass_the_gymnasium_env_checker(obs_type):
    from gymnasium.utils.env_checker import check_env

    register()
    env = gymnasium.make(ENV_IDS[obs_type], render_mode="rgb_array")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the checker's advice on a non-normalised action box
        check_env(env.unwrapped)
    assert env.observation_space.shape == ({"keypoints": 20, "state": 5}[obs_type],)
    assert env.action_space.shape == (2,)
    assert (env.action_space.low == 0).all() and (env.action_space.high == 512).all()
    env.close()


def test_register_is_idempotent_and_registers_nothing_at_import():
    ids = register()
    assert ids == ("diffusio/PushT-v0", "diffusio/PushTState-v0") == register()
    env = gymnasium.make("diffusio/PushTState-v0")
    assert env.unwrapped.obs_type == "state" and env.spec.max_episode_steps is None
    env.close()


def test_bad_arguments_raise_one_line_errors():
    with pytest.raises(ValueError, match="unknown obs_type 'image'"):
        PushTEnv(obs_type="image")
    with pytest.raises(ValueError, match="unknown render_mode 'human'"):
        PushTEnv(render_mode="human")
    env = PushTEnv()
    with pytest.raises(RuntimeError, match="reset"):
        env.step([1.0, 2.0])
    with pytest.raises(ValueError, match="5 finite numbers"):
        env.reset(options={"state": [1.0, 2.0]})
    env.reset(seed=0)
    with pytest.raises(ValueError, match="2 finite numbers"):
        env.step([np.nan, 1.0])


def test_same_seed_same_actions_give_identical_rollouts_and_seeds_differ():
    actions = np.random.default_rng(3).uniform(0, 512, size=(15, 2))

    def rollout(seed):
        env = PushTEnv()
        obs, info = env.reset(seed=seed)
        out = [(obs, info)]
        for a in actions:
            obs, _, _, _, info = env.step(a)
            out.append((obs, info))
        return out

    first, again, other = rollout(7), rollout(7), rollout(8)
    for (o1, i1), (o2, i2) in zip(first, again, strict=True):
        np.testing.assert_array_equal(o1, o2)
        assert i1.keys() == i2.keys()
        for k in i1:
            np.testing.assert_array_equal(i1[k], i2[k])
    assert not np.array_equal(first[0][0], other[0][0])
    assert not np.array_equal(first[-1][0], other[-1][0])


def test_reset_samples_the_official_ranges():
    env = PushTEnv(obs_type="state")
    for seed in range(20):
        _, info = env.reset(seed=seed)
        ax, ay = info["agent_pos"]
        bx, by, angle = info["block_pose"]
        assert 50 <= ax <= 450 and 50 <= ay <= 450 and -np.pi <= angle < np.pi
        if (abs(np.array([ax - bx, ay - by])) > 130).any():  # the agent cannot have pushed it
            assert 100 <= bx <= 400 and 100 <= by <= 400


def test_observations_hold_the_state_and_keypoints():
    state = [100.0, 420.0, 300.0, 200.0, -0.5]
    obs_state = _env(state, obs_type="state")._obs()
    np.testing.assert_allclose(obs_state, [100, 420, 300, 200, 2 * np.pi - 0.5], atol=1e-9)
    env = _env(state)
    obs, info = env._obs(), env._info()
    assert obs.shape == (20,)
    np.testing.assert_allclose(obs[:18].reshape(9, 2), keypoints_world(state[2:]), atol=1e-9)
    np.testing.assert_allclose(obs[18:], [100, 420], atol=1e-9)
    np.testing.assert_allclose(info["block_pose"], state[2:], atol=1e-9)
    # the keypoints: the T's 8 corners and its area centroid (0, 285/7)
    assert KEYPOINTS.shape == (9, 2)
    centroid = t_polygon((0.0, 0.0, 0.0)).centroid
    np.testing.assert_allclose(KEYPOINTS[8], [centroid.x, centroid.y], atol=1e-9)
    assert KEYPOINTS[8, 1] == pytest.approx(285 / 7)


# ------------------------------------------------------------------------- geometry
def test_t_area_is_6300():
    assert T_AREA == 120 * 30 + 30 * 90 == 6300
    for pose in [(0.0, 0.0, 0.0), GOAL_POSE, (100.0, 300.0, 2.0)]:
        assert t_polygon(pose).area == pytest.approx(6300, abs=1e-9)


def test_coverage_on_known_geometry():
    gx, gy, ga = GOAL_POSE
    assert coverage(GOAL_POSE) == pytest.approx(1.0, abs=1e-9)
    # goal at angle 0 shifted 15 px along x: bar (120 - 15) * 30 + stem (30 - 15) * 90, and the
    # shifted stem stays below the bar (no cross terms): 4500 / 6300 = 5 / 7
    assert coverage((15.0, 0.0, 0.0), goal=(0.0, 0.0, 0.0)) == pytest.approx(5 / 7, abs=1e-9)
    # the real goal (angle pi/4): a 15 px shift along world x is (s, -s), s = 15 / sqrt 2, in
    # the T's frame: bar x bar (120 - s)(30 - s), stem x stem (30 - s)(90 - s), and the shifted
    # stem (x in [-15 + s, 15 + s], y in [30 - s, 120 - s]) covers 30 x s of the bar
    s = 15 / math.sqrt(2)
    expected = ((120 - s) * (30 - s) + (30 - s) * (90 - s) + 30 * s) / 6300
    assert coverage((gx + 15, gy, ga)) == pytest.approx(expected, abs=1e-9)
    assert coverage((gx - 15, gy, ga)) == pytest.approx(expected, abs=1e-9)
    # turned by pi about the pose origin, the T lies on the other side of the bar's top edge
    assert coverage((gx, gy, ga + np.pi)) < 1e-9
    # turned by pi/2: bar x bar 30 x 30, bar x stem 15 x 30, stem x bar 30 x 15 -> 1800 / 6300
    assert coverage((gx, gy, ga + np.pi / 2)) == pytest.approx(2 / 7, abs=1e-9)
    assert coverage((gx + 300, gy, ga)) == 0.0


def test_the_goal_pose_succeeds_at_once_and_reward_follows_coverage():
    env = _env([*FAR_AGENT, *GOAL_POSE])
    _, reward, terminated, truncated, info = env.step(FAR_AGENT)
    assert info["coverage"] == pytest.approx(1.0, abs=1e-9) and info["success"]
    assert reward == 1.0 and terminated and not truncated
    gx, gy, ga = GOAL_POSE
    env = _env([*FAR_AGENT, gx, gy, ga + np.pi / 2])
    _, reward, terminated, _, info = env.step(FAR_AGENT)
    assert reward == pytest.approx((2 / 7) / 0.95, abs=1e-9) and not terminated
    assert not info["success"]


def test_episodes_truncate_at_max_episode_steps():
    env = PushTEnv(max_episode_steps=3)
    env.reset(options={"state": [*FAR_AGENT, 200.0, 300.0, 0.0]})
    flags = [env.step(FAR_AGENT)[3] for _ in range(3)]
    assert flags == [False, False, True]
    assert PushTEnv().max_episode_steps == 300


# -------------------------------------------------------------------------- physics
def test_agent_at_its_target_stays_put():
    env = _env([200.0, 150.0, 300.0, 350.0, 0.3])
    for _ in range(5):
        _, _, _, _, info = env.step([200.0, 150.0])
        np.testing.assert_allclose(info["agent_pos"], [200, 150], atol=1e-9)
        np.testing.assert_allclose(info["agent_vel"], [0, 0], atol=1e-9)


def test_agent_approaches_a_target_monotonically_under_the_pd_law():
    env = _env([150.0, 100.0, 350.0, 350.0, 0.0])
    target = np.array([250.0, 100.0])
    dists = [100.0]
    for _ in range(8):
        _, _, _, _, info = env.step(target)
        dists.append(float(np.linalg.norm(info["agent_pos"] - target)))
    assert (np.diff(dists) < 0).all()
    assert dists[-1] < 5.0
    # the first env step against the PD law by hand (10 physics steps, nothing in the way)
    p, v = np.array([150.0, 100.0]), np.zeros(2)
    for _ in range(10):
        v = v + 0.01 * (100.0 * (target - p) - 20.0 * v)
        p = p + 0.01 * v
    env = _env([150.0, 100.0, 350.0, 350.0, 0.0])
    np.testing.assert_allclose(env.step(target)[4]["agent_pos"], p, atol=1e-9)


def test_agent_pushes_the_block_and_a_far_agent_leaves_it_unchanged():
    start = [200.0, 300.0, 0.0]  # bar y in [300, 330], x in [140, 260]
    env = PushTEnv()
    _, info = env.reset(options={"state": [*FAR_AGENT, *start]})
    before = info["block_pose"].copy()
    np.testing.assert_allclose(before, start, atol=1e-9)
    for _ in range(10):
        info = env.step([400.0, 100.0])[4]
    assert np.linalg.norm(info["agent_pos"] - FAR_AGENT) > 50  # it moved, far from the block
    np.testing.assert_array_equal(info["block_pose"], before)  # exactly unchanged
    # drive the agent from the left into the bar's left end (x = 140): the block is pushed
    # right and turned (the push is off its centre of gravity)
    env = _env([100.0, 315.0, *start])
    for _ in range(12):
        info = env.step([180.0, 315.0])[4]
    assert info["block_pose"][0] > start[0] + 40 and info["block_pose"][2] > 0.1
    # damping 0: once the agent backs off, the block stops dead (no sliding)
    pose = env.step([100.0, 315.0])[4]["block_pose"]
    for _ in range(3):
        np.testing.assert_array_equal(env.step([100.0, 315.0])[4]["block_pose"], pose)


def test_n_contacts_counts_agent_block_contacts_only():
    start = [200.0, 300.0, 0.0]  # bar y in [300, 330], x in [140, 260]
    env = PushTEnv()
    _, info = env.reset(options={"state": [*FAR_AGENT, *start]})
    assert info["n_contacts"] == 0
    for _ in range(5):  # free space: no contact
        assert env.step([400.0, 100.0])[4]["n_contacts"] == 0
    env = _env([100.0, 315.0, *start])  # driven into the bar's left end
    counts = [env.step([180.0, 315.0])[4]["n_contacts"] for _ in range(8)]
    assert counts[0] == 0 and max(counts) > 0 and all(isinstance(c, int) for c in counts)
    for _ in range(3):  # backed off: no contact again
        info = env.step([60.0, 315.0])[4]
    assert info["n_contacts"] == 0
    # a block pressed into a wall touches it, which is not an agent-block contact
    env = _env([*FAR_AGENT, 40.0, 300.0, 0.0])  # bar x in [-20, 100]: into the left wall
    info = env.step(FAR_AGENT)[4]
    assert info["block_pose"][0] > 45.0 and info["n_contacts"] == 0  # pushed out by the wall


def test_the_agent_stays_in_the_workspace_and_the_walls_stop_the_block():
    env = _env([60.0, 60.0, 300.0, 300.0, 0.0])
    for _ in range(30):
        info = env.step([-100.0, -100.0])[4]  # clipped to the box: target (0, 0)
        x, y = info["agent_pos"]
        assert 0.0 <= x <= 512.0 and 0.0 <= y <= 512.0  # the centre, so the disk is within r
    np.testing.assert_allclose(info["agent_pos"], [0, 0], atol=1.0)
    # the walls stop the block: pushed left against the wall (inner edge x = 5 + 2), the T
    # stays inside it (up to pymunk's 0.1 px collision slop) and turns out of the way
    env = _env([250.0, 315.0, 100.0, 300.0, 0.0])  # bar x in [40, 160]
    for _ in range(20):
        info = env.step([120.0, 315.0])[4]
    assert t_polygon(info["block_pose"]).bounds[0] > 7.0 - 0.5
    assert info["block_pose"][0] < 100.0 - 30 and abs(info["block_pose"][2]) > 0.1


# --------------------------------------------------------------------------- render
def test_render_draws_the_scene_and_frame_strip_writes_a_png(tmp_path):
    assert PushTEnv().render() is None  # headless by default
    env = PushTEnv(render_mode="rgb_array", render_size=128)
    env.reset(options={"state": [100.0, 420.0, 300.0, 150.0, 0.0]})
    env.step([100.0, 420.0])
    frames = [env.render()]
    frames.append(env.render())
    img = frames[0]
    assert img.shape == (128, 128, 3) and img.dtype == np.uint8
    colours = {tuple(c) for c in img.reshape(-1, 3)}
    assert {(211, 211, 211), (144, 238, 144), (119, 136, 153), (65, 105, 225),
            (255, 0, 0)} <= colours  # fmt: skip
    assert tuple(img[0, 0]) == (211, 211, 211)  # the wall
    # 4 world px per pixel: pixel (row 107, col 27) is (110, 430), 14.1 px from the agent's
    # centre (100, 420) and clear of the red cross drawn at the target (100, 420)
    assert tuple(img[107, 27]) == (65, 105, 225)
    path = frame_strip(frames, tmp_path / "strip.png")
    from matplotlib import image

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert image.imread(path).shape[:2] == (128, 2 * 128 + 2)
    with pytest.raises(ValueError, match="frames"):
        frame_strip([], tmp_path / "empty.png")


def test_missing_pymunk_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pymunk", None)
    monkeypatch.delitem(sys.modules, "diffusio.control.pusht", raising=False)
    with pytest.raises(ImportError, match=r"'pymunk'.*pip install 'diffusio\[control\]'"):
        importlib.import_module("diffusio.control.pusht")
