"""The control environments and controllers (diffusio.control.envs, point2d, pointmaze,
controllers): names, gymnasium API compliance, PointMaze's flat observation and fixed goal,
D4RL's waypoint controller, the LunarLander heuristic and the point2d script."""

import numpy as np
import pytest

pytest.importorskip("gymnasium")
pytest.importorskip("gymnasium_robotics")

from diffusio.control.controllers import (  # noqa: E402
    LunarLanderHeuristic,
    Point2DController,
    RandomPolicy,
    WaypointController,
    grid_waypoints,
)
from diffusio.control.envs import ENV_NAMES, check_observation, make_env  # noqa: E402
from diffusio.control.scores import rollout  # noqa: E402


def test_unknown_environment_lists_the_valid_names():
    with pytest.raises(ValueError, match="unknown environment 'maze'.*pointmaze-umaze.*point2d"):
        make_env("maze")
    assert ENV_NAMES == (
        "pointmaze-umaze", "pointmaze-medium", "pointmaze-large", "lunarlander", "point2d",
        "point2d-avoid", "pusht", "pusht-state",
    )  # fmt: skip


@pytest.mark.parametrize(
    "kw",
    [{}, {"obstacles": [(0.0, 0.0, 0.3)], "random_goal": True, "random_start": True},
     {"skill": "+x"}, {"skill": ("+x", "+y")}],
)  # fmt: skip
def test_point2d_passes_the_gymnasium_env_checker(kw):
    from gymnasium.utils.env_checker import check_env

    env = make_env("point2d", **kw)
    check_env(env, skip_render_check=True)  # no render modes
    obs, _ = env.reset(seed=0)
    assert obs.shape == ((4,) if "skill" in kw else (6,))


def test_point2d_obstacles_walls_and_skill_reward():
    env = make_env("point2d", start=(0.0, -0.8), goal=(0.0, 0.8), obstacles=[(0.0, 0.0, 0.3)],
                   start_noise=0.0)  # fmt: skip
    env.reset(seed=0)
    collided = False
    for _ in range(60):  # push straight up into the obstacle
        obs, reward, terminated, truncated, info = env.step(np.array([0.0, 1.0]))
        assert np.linalg.norm(obs[:2]) >= 0.3 - 1e-9 and not terminated
        collided |= info["collision"]
        assert reward == (-1.0 if info["collision"] else 0.0)
    assert collided and abs(obs[1]) < 0.31  # stopped at the circle, not through it
    env = make_env("point2d", skill="+x")
    obs, _ = env.reset(seed=1)
    total, steps = 0.0, 0
    while True:
        obs, reward, terminated, truncated, _ = env.step(np.array([1.0, 0.0]))
        total, steps = total + reward, steps + 1
        assert abs(obs[0]) <= 1.0
        if terminated or truncated:
            break
    assert steps == 20 and 0.7 < total < 1.0  # progress along +x at up to 0.5 m/s
    with pytest.raises(ValueError, match="unknown skill"):
        make_env("point2d", skill="+z")


def test_pointmaze_observation_is_flat_with_d4rls_fixed_goal():
    env = make_env("pointmaze-umaze")
    centre = np.array([-1.0, 1.0])  # D4RL's goal cell (row 1, col 1) in centred metres
    for seed in range(3):
        obs, _ = env.reset(seed=seed)
        assert obs.shape == (6,) and obs.dtype == np.float64
        assert np.all(np.abs(obs[4:6] - centre) <= 0.25 + 1e-9)
        check_observation("pointmaze-umaze", obs)
    goals = {tuple(np.round(make_env("pointmaze-umaze", random_goal=True).reset(seed=s)[0][4:], 0))
             for s in range(12)}  # fmt: skip
    assert len(goals) > 1  # Multi2D: a new goal cell per reset
    obs, _ = make_env("pointmaze-medium", include_goal=False).reset(seed=0)
    assert obs.shape == (4,)
    with pytest.raises(ValueError, match="wall"):
        make_env("pointmaze-umaze", goal_cell=(2, 1))


def test_grid_waypoints_follow_the_maze_and_jitter_all_but_the_last():
    walls = np.array([[c == "#" for c in row] for row in ["#####", "#OOO#", "###O#", "#OOO#",
                                                           "#####"]])  # fmt: skip
    points = grid_waypoints(walls, (3, 1), (1, 1), np.random.default_rng(0))
    cells = [(3, 2), (3, 3), (2, 3), (1, 3), (1, 2), (1, 1)]
    assert len(points) == len(cells)
    np.testing.assert_array_equal(points[-1], [1.0, 1.0])
    jitter = np.array(cells[:-1]) - points[:-1]
    assert np.all((jitter >= 0) & (jitter <= 0.2))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_waypoint_controller_reaches_the_umaze_goal(seed):
    env = make_env("pointmaze-umaze")
    controller = WaypointController.from_env(env)
    obs, _ = env.reset(seed=seed)
    controller.reset(seed)
    for _ in range(env.spec.max_episode_steps):
        obs, _, _, _, info = env.step(controller.act(obs))
        if info["success"]:
            break
    assert info["success"]


def test_check_observation_names_the_problem():
    check_observation("lunarlander", np.zeros((5, 8)))  # a batch is fine
    with pytest.raises(ValueError, match=r"shape \(3,\), expected \(\.\.\., 8\)"):
        check_observation("lunarlander", [0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="NaN"):
        check_observation("point2d", [0.0, np.nan, 0.0, 0.0])
    with pytest.raises(ValueError, match="inf"):
        check_observation("pointmaze-large", [0.0, 0.0, np.inf, 0.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="unknown environment"):
        check_observation("cartpole", np.zeros(4))


def test_controllers_are_seeded_and_the_heuristic_lands():
    env = make_env("lunarlander")
    returns = rollout(env, LunarLanderHeuristic(), episodes=2, seed=0)
    assert np.all(returns > 200)
    noisy = LunarLanderHeuristic(noise=0.5)
    obs = np.zeros(8)
    noisy.reset(3)
    first = [noisy.act(obs) for _ in range(3)]
    noisy.reset(3)
    np.testing.assert_array_equal(first, [noisy.act(obs) for _ in range(3)])
    assert all(np.all(np.abs(a) <= 1) for a in first)
    policy = RandomPolicy()
    policy.reset(0)
    a = policy.act(None)
    policy.reset(0)
    np.testing.assert_array_equal(a, policy.act(None))


@pytest.mark.parametrize("side", ["left", "right"])
def test_the_point2d_script_goes_round_the_obstacle(side):
    env = make_env("point2d", obstacles=[(0.0, 0.0, 0.3)])
    controller = Point2DController.from_env(env, side=side)
    obs, _ = env.reset(seed=0)
    controller.reset(0)
    xs, collisions, successes = [], 0, 0
    for _ in range(100):
        obs, _, _, _, info = env.step(controller.act(obs))
        xs.append(obs[0])
        collisions += info["collision"]
        successes += info["success"]
    assert collisions == 0 and successes > 40
    # "left" of the upward line from the start is -x
    assert (min(xs) < -0.3) if side == "left" else (max(xs) > 0.3)
