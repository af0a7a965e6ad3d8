"""``diffusio generate-series`` end to end through ``diffusio.cli.main``: tiny generators saved
in tmp_path by ``save_generator`` (with the data's min-max scale and column names) and by
plain ``tsgm.save`` (no scale: model units), drawn to ``.npz`` and ``.csv``; shapes, finite
values, the units (checked against the scale by construction), reproducibility by seed, and
every bad input as exit code 2 with one line naming the problem."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from cli_helpers import one_line_error, run_command

from diffusio.cli import main
from diffusio.timeseries.generate import SERIES_FILE, load_run, save_generator
from diffusio.timeseries.tsgm import (
    TSGM,
    DataDDPM,
    GaussianBaseline,
    VARBaseline,
    minmax_inverse,
    minmax_windows,
    save,
)

COLUMNS = ["load", "temp", "price"]
LENGTH = 6


def _series(n: int = 80, seed: int = 0) -> np.ndarray:
    """Three features on very different scales: load ~ 1000 +- 50, temp ~ 20 +- 5, price ~ 0.1."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return np.stack([1000 + 50 * np.sin(0.3 * t) + rng.normal(0, 5, n),
                     20 + 5 * np.cos(0.2 * t) + rng.normal(0, 0.5, n),
                     0.1 + 0.01 * rng.normal(size=n)], axis=1)  # fmt: skip


@pytest.fixture(scope="module")
def data():
    values = _series()
    windows, scale = minmax_windows(values, length=LENGTH)
    return values, windows, scale


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data):
    """Every generator class, fitted briefly and saved with the scale; a TSGM without it."""
    _, windows, scale = data
    folder = tmp_path_factory.mktemp("runs")
    tiny = dict(hidden=16, depth=1, embed_dim=8)
    models = {
        "tsgm": TSGM(3, length=LENGTH, latent_dim=4, **tiny).fit(windows, steps_ae=2,
                                                                  steps_score=2, batch_size=8),
        "ddpm": DataDDPM(3, length=LENGTH, **tiny).fit(windows, steps=2, batch_size=8),
        "gauss": GaussianBaseline().fit(windows),
        "var": VARBaseline(p=1).fit(windows),
    }  # fmt: skip
    out = {}
    for name, model in models.items():
        sampling = {"sampler": "ddim", "steps": 3} if name in ("tsgm", "ddpm") else {}
        out[name] = save_generator(model, folder / name, scale=scale, columns=COLUMNS, **sampling)
    out["bare"] = save(models["tsgm"], folder / "bare")  # tsgm.save only: no series.json
    out["models"] = models
    return out


def _run(capsys, *args):
    return run_command(capsys, "generate-series", *args)


def _one_line_error(capsys, *args) -> str:
    return one_line_error(capsys, "generate-series", *args)


def _npz(path):
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


@pytest.mark.parametrize("name", ["tsgm", "ddpm", "gauss", "var"])
def test_npz_in_the_datas_units(runs, data, tmp_path, capsys, name):
    _, _, (lo, hi) = data
    out = tmp_path / f"{name}.npz"
    code, text, err = _run(capsys, runs[name], "--n", 7, "--out", out, "--seed", 3, "--no-progress")
    assert code == 0, err
    assert "wrote 7 windows of 6 steps x 3 features (the data's own units)" in text
    arrays = _npz(out)
    x = arrays["samples"]
    assert x.shape == (7, LENGTH, 3) and x.dtype == np.float64 and np.isfinite(x).all()
    assert list(arrays["columns"]) == COLUMNS and not bool(arrays["scaled"])
    # the same draw as the model's own generate, mapped back by the saved min and max
    options = {"sampler": "ddim", "steps": 3} if name in ("tsgm", "ddpm") else {}
    model = runs["models"][name]
    expected = minmax_inverse(model.generate(7, seed=3, **options), (lo, hi)).numpy()
    np.testing.assert_allclose(x, expected, rtol=1e-12, atol=1e-9)
    if name in ("tsgm", "ddpm"):  # sigmoid decoder / clamped DDPM: inside the data's range
        span = (hi - lo).numpy()
        assert (x >= lo.numpy() - 1e-9 * span).all() and (x <= hi.numpy() + 2e-7).all()


def test_csv_long_format(runs, tmp_path, capsys):
    out = tmp_path / "sub" / "windows.csv"  # the parent folder is created
    code, _, err = _run(capsys, runs["gauss"], "--n", 4, "--out", out, "--seed", 1)
    assert code == 0, err
    with open(out, newline="") as f:
        cells = list(csv.reader(f))
    assert cells[0] == ["window", "step", *COLUMNS] and len(cells) == 1 + 4 * LENGTH
    assert [(int(r[0]), int(r[1])) for r in cells[1:]] == [(i, t) for i in range(4)
                                                          for t in range(LENGTH)]  # fmt: skip
    values = np.array([[float(c) for c in r[2:]] for r in cells[1:]]).reshape(4, LENGTH, 3)
    npz = tmp_path / "same.npz"
    assert main(["generate-series", str(runs["gauss"]), "--n", "4", "--out", str(npz),
                 "--seed", "1"]) == 0  # fmt: skip
    np.testing.assert_array_equal(values, _npz(npz)["samples"])  # repr() round-trips exactly


def test_seed_and_force(runs, tmp_path, capsys):
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    for path, seed in ((a, 5), (b, 5)):
        assert _run(capsys, runs["var"], "--n", 3, "--out", path, "--seed", seed)[0] == 0
    np.testing.assert_array_equal(_npz(a)["samples"], _npz(b)["samples"])
    line = _one_line_error(capsys, runs["var"], "--n", 3, "--out", a, "--seed", 6)
    assert "already exists" in line and "--force" in line
    np.testing.assert_array_equal(_npz(a)["samples"], _npz(b)["samples"])  # untouched
    assert _run(capsys, runs["var"], "--n", 3, "--out", a, "--seed", 6, "--force")[0] == 0
    assert not np.array_equal(_npz(a)["samples"], _npz(b)["samples"])


def test_run_without_scale_stays_in_model_units(runs, tmp_path, capsys):
    out = tmp_path / "bare.npz"
    code, text, _ = _run(capsys, runs["bare"], "--n", 5, "--out", out, "--steps", 2)
    assert code == 0 and "min-max scaled [0, 1] units" in text
    arrays = _npz(out)
    assert bool(arrays["scaled"]) and "columns" not in arrays
    x = arrays["samples"]
    assert x.shape == (5, LENGTH, 3) and (x >= 0).all() and (x <= 1).all()
    generator, record = load_run(runs["bare"])
    assert isinstance(generator, TSGM) and record == {}


def test_errors(runs, tmp_path, capsys):
    out = tmp_path / "x.npz"
    assert "no run directory at" in _one_line_error(capsys, tmp_path / "nope", "--n", 2,
                                                    "--out", out)  # fmt: skip
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "not a saved time-series generator" in _one_line_error(capsys, empty, "--n", 2,
                                                                  "--out", out)  # fmt: skip
    not_dir = tmp_path / "file.txt"
    not_dir.write_text("x")
    assert "is not a directory" in _one_line_error(capsys, not_dir, "--n", 2, "--out", out)
    for n in (0, -3):
        assert "--n must be a positive" in _one_line_error(capsys, runs["gauss"], "--n", n,
                                                           "--out", out)  # fmt: skip
    line = _one_line_error(capsys, runs["gauss"], "--n", 2, "--out", tmp_path / "x.txt")
    assert "unsupported output 'x.txt'" in line and ".npz, .csv" in line
    line = _one_line_error(capsys, runs["gauss"], "--n", 2, "--out", out, "--steps", 4)
    assert "--sampler and --steps do not apply" in line
    assert "--steps must be positive" in _one_line_error(capsys, runs["tsgm"], "--n", 2,
                                                         "--out", out, "--steps", 0)  # fmt: skip
    assert not out.exists()
    # a corrupt sidecar and a generator.json naming no known class
    broken = tmp_path / "broken"
    save(runs["models"]["gauss"], broken)
    (broken / SERIES_FILE).write_text('{"format": "diffusio-series", "min": [0], "max": [1]}')
    assert "must list 3 values" in _one_line_error(capsys, broken, "--n", 2, "--out", out)
    (broken / "generator.json").write_text('{"class": "os.system", "options": {}}')
    assert "not a saved generator" in _one_line_error(capsys, broken, "--n", 2, "--out", out)
    # argparse's own usage errors (a missing --n, a non-integer) are exit code 2 as well
    assert main(["generate-series", str(runs["gauss"]), "--out", str(out)]) == 2
    assert main(["generate-series", str(runs["gauss"]), "--n", "two", "--out", str(out)]) == 2
    capsys.readouterr()


def test_save_generator_checks_what_it_records(runs, data, tmp_path):
    _, _, scale = data
    model = runs["models"]["gauss"]
    with pytest.raises(ValueError, match="2 column names for a generator of 3 features"):
        save_generator(model, tmp_path / "a", columns=["a", "b"])
    with pytest.raises(ValueError, match="scale needs 3 minima"):
        save_generator(model, tmp_path / "b", scale=(torch.zeros(2), torch.ones(2)))
    _, record = load_run(save_generator(model, tmp_path / "c", scale=scale, info={"data": "x"}))
    assert record["min"] == scale[0].tolist() and record["info"] == {"data": "x"}
    assert "columns" not in record and record["class"] == "GaussianBaseline"
