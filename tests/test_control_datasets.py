"""Offline control datasets (diffusio.control.datasets, generate, scores): determinism, the
manifest, D4RL's episode cuts, caching, the loader's errors, the normalised score and
``diffusio make-dataset``."""

import json

import numpy as np
import pytest

pytest.importorskip("gymnasium")
pytest.importorskip("gymnasium_robotics")

from cli_helpers import one_line_error, run_command  # noqa: E402

from diffusio.control.datasets import (  # noqa: E402
    DATASETS,
    dataset_path,
    load_dataset,
    make_dataset,
    segment_at_goal,
)
from diffusio.control.scores import (  # noqa: E402
    REFERENCE_SCORES,
    measure_reference_scores,
    normalized_score,
)

TINY = {"pointmaze-umaze": {"steps": 600}, "lunarlander-mixed": {"episodes": 5},
        "point2d-skills": {"episodes": 8}}  # fmt: skip


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Each dataset of TINY generated once (seed 0)."""
    root = tmp_path_factory.mktemp("datasets")
    return {name: make_dataset(name, seed=0, out=root / f"{name}.npz", progress=False, **size)
            for name, size in TINY.items()}  # fmt: skip


@pytest.mark.parametrize("name", list(TINY))
def test_a_seed_gives_bit_identical_arrays(name, tiny, tmp_path):
    first = load_dataset(tiny[name])
    again = load_dataset(make_dataset(name, seed=0, out=tmp_path / "a.npz", progress=False,
                                      **TINY[name]))  # fmt: skip
    assert first.arrays.keys() == again.arrays.keys()
    for key in first.arrays:
        np.testing.assert_array_equal(first[key], again[key], err_msg=key)
    other = load_dataset(make_dataset(name, seed=1, out=tmp_path / "b.npz", progress=False,
                                      **TINY[name]))  # fmt: skip
    assert not np.array_equal(first["actions"][:100], other["actions"][:100])


def test_the_manifest_records_the_recipe(tiny):
    ds = load_dataset(tiny["lunarlander-mixed"])
    m = ds.manifest
    for key in ("name", "env", "seed", "size", "steps", "episodes", "controller", "arrays",
                "versions", "reference_scores", "return_mean", "generation_seconds"):  # fmt: skip
        assert key in m, key
    assert m["name"] == "lunarlander-mixed" and m["env"] == "lunarlander" and m["seed"] == 0
    assert m["size"] == {"episodes": 5} and m["episodes"] == 5 and m["steps"] == len(ds)
    assert {"gymnasium", "box2d", "diffusio"} <= set(m["versions"])
    assert m["reference_scores"]["random"] == REFERENCE_SCORES["lunarlander"][0]
    assert m["reference_scores"]["controller"] == REFERENCE_SCORES["lunarlander"][1]
    assert m["labels"]["behaviors"][-1] == "random"
    # episode i runs behaviour i % 5; each episode ends in a terminal or a timeout
    starts = [a for a, _ in ds.episodes()]
    np.testing.assert_array_equal(ds["behaviors"][starts], np.arange(5))
    assert np.isclose(ds.episode_returns().mean(), m["return_mean"])
    assert ds["observations"].dtype == np.float32 and ds["terminals"].dtype == bool


def test_pointmaze_episodes_are_cut_at_each_goal_switch(tiny):
    ds = load_dataset(tiny["pointmaze-umaze"])
    assert len(ds) == 600 and ds.manifest["size"] == {"steps": 600}
    assert not ds["terminals"].any() and ds["timeouts"][-1]
    bounds = ds.episodes()
    assert len(bounds) > 3
    for a, b in bounds:
        assert (ds["goals"][a:b] == ds["goals"][a]).all()  # one goal per episode
        assert b - a <= ds.manifest["max_episode_steps"] + 1
    cuts = np.flatnonzero(ds["timeouts"][:-1])
    assert (ds["goals"][cuts] != ds["goals"][cuts + 1]).any(axis=1).all()
    # the stream is continuous: the next observation is the next row's observation
    np.testing.assert_array_equal(ds["next_observations"][:-1], ds["observations"][1:])


def test_point2d_skill_episodes_are_labelled(tiny):
    ds = load_dataset(tiny["point2d-skills"])
    assert ds.manifest["labels"]["skills"] == ["+x", "+y", "-x", "-y"]
    for i, (a, b) in enumerate(ds.episodes()):
        assert b - a == 20 and (ds["skills"][a:b] == i % 4).all()
        moved = ds["observations"][b - 1, :2] - ds["observations"][a, :2]
        assert np.argmax(np.abs(moved)) == (i % 4) % 2  # +x/-x move along x, +y/-y along y


def test_the_cache_reuses_a_dataset_of_the_same_seed_and_size(tmp_path):
    path = make_dataset("point2d-skills", seed=3, episodes=4, cache_dir=tmp_path, progress=False)
    assert path == dataset_path("point2d-skills", 3, episodes=4, cache_dir=tmp_path)
    assert path.parent == tmp_path / "datasets" and path.with_suffix(".json").is_file()
    stamp = path.stat().st_mtime_ns
    assert make_dataset("point2d-skills", seed=3, episodes=4, cache_dir=tmp_path) == path
    assert path.stat().st_mtime_ns == stamp
    make_dataset("point2d-skills", seed=3, episodes=4, cache_dir=tmp_path, progress=False,
                 force=True)  # fmt: skip
    assert path.stat().st_mtime_ns != stamp
    assert make_dataset("point2d-skills", seed=3, episodes=5, cache_dir=tmp_path,
                        progress=False) != path  # fmt: skip


def _write(path, **arrays):
    np.savez(path, **arrays)
    return path


def test_the_loader_refuses_bad_files(tmp_path):
    n = 4
    good = {"observations": np.zeros((n, 4), np.float32), "actions": np.zeros((n, 2), np.float32),
            "rewards": np.zeros(n, np.float32), "terminals": np.zeros(n, bool),
            "timeouts": np.ones(n, bool)}  # fmt: skip
    assert len(load_dataset(_write(tmp_path / "ok.npz", **good))) == n
    with pytest.raises(FileNotFoundError, match="not found"):
        load_dataset(tmp_path / "missing.npz")
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04 not a zip file")
    with pytest.raises(ValueError, match="corrupt .npz"):
        load_dataset(tmp_path / "corrupt.npz")
    with pytest.raises(ValueError, match="missing arrays timeouts"):
        load_dataset(_write(tmp_path / "m.npz", **{k: v for k, v in good.items()
                                                   if k != "timeouts"}))  # fmt: skip
    bad = dict(good, observations=np.full((n, 4), np.nan, np.float32))
    with pytest.raises(ValueError, match="'observations' contains NaN or inf"):
        load_dataset(_write(tmp_path / "nan.npz", **bad))
    with pytest.raises(ValueError, match="different lengths"):
        load_dataset(_write(tmp_path / "len.npz", **dict(good, actions=np.zeros((3, 2)))))
    with pytest.raises(ValueError, match="pickled"):
        load_dataset(_write(tmp_path / "obj.npz", **dict(good, rewards=np.array([{}] * n))))
    with pytest.raises(ValueError, match="expected 2-D"):
        load_dataset(_write(tmp_path / "rank.npz", **dict(good, observations=np.zeros(n))))
    (tmp_path / "listed.json").write_text(json.dumps({"arrays": {"goals": {}}}))
    with pytest.raises(ValueError, match="missing arrays goals"):
        load_dataset(_write(tmp_path / "listed.npz", **good))


def test_the_normalised_score_is_100_for_the_controller_and_0_for_random():
    for key, (low, high) in REFERENCE_SCORES.items():
        assert normalized_score(key, high) == pytest.approx(100.0)
        assert normalized_score(key, low) == pytest.approx(0.0, abs=1e-12)
        assert high > low
    np.testing.assert_allclose(
        normalized_score("lunarlander-mixed", [REFERENCE_SCORES["lunarlander"][1]] * 2), 100.0
    )
    with pytest.raises(ValueError, match="no reference scores"):
        normalized_score("hopper", 1.0)


@pytest.mark.parametrize("name", ["point2d", "point2d-skills", "lunarlander"])
def test_the_reference_scores_are_reproduced(name):
    measured = measure_reference_scores(name)
    assert (measured["random"], measured["controller"]) == REFERENCE_SCORES[name]


def test_the_maze_controller_beats_random_on_a_few_episodes():
    measured = measure_reference_scores("pointmaze-umaze", episodes=4)
    assert normalized_score("pointmaze-umaze", measured["controller"]) > 60
    assert normalized_score("pointmaze-umaze", measured["random"]) < 30


def test_segment_at_goal_is_diffusers_rule():
    xy = np.array([[0.0, 0.0], [0.1, 0.0], [2.0, 0.0], [0.0, 0.0], [3.0, 0.0]])
    np.testing.assert_array_equal(segment_at_goal(xy, [0.0, 0.0]), [0, 1, 0, 1, 0])


def test_make_dataset_cli_end_to_end(capsys, tmp_path):
    out = tmp_path / "skills.npz"
    code, stdout, _ = run_command(capsys, "make-dataset", "point2d-skills", "--out", out,
                                  "--episodes", 8, "--seed", 2, "--no-progress")  # fmt: skip
    assert code == 0
    lines = stdout.strip().splitlines()
    assert len(lines) == 1 and "8 episodes, 160 steps" in lines[0] and str(out) in lines[0]
    assert "reference scores random" in lines[0]
    assert load_dataset(out).manifest["seed"] == 2
    line = one_line_error(capsys, "make-dataset", "hopper-medium", "--out", out)
    assert "unknown dataset 'hopper-medium'" in line and all(n in line for n in DATASETS)
    line = one_line_error(capsys, "make-dataset", "point2d-skills", "--out", out,
                          "--steps", 5, "--episodes", 5)  # fmt: skip
    assert "not both" in line
    assert "must end in .npz" in one_line_error(
        capsys, "make-dataset", "point2d-skills", "--out", tmp_path / "x.csv"
    )


def test_the_make_dataset_command_passes_exactly_its_functions_parameters():
    import argparse
    import inspect

    from diffusio import cli, commands

    (command,) = [c for c in cli.COMMANDS if c.name == "make-dataset"]
    parser = argparse.ArgumentParser()
    command.configure(parser)
    dests = {a.dest for a in parser._actions} - {"help"}
    assert dests == set(inspect.signature(commands.make_dataset).parameters)
    assert all(a.help for a in parser._actions)
