"""The tsgm-2023 reproduction: its verdict rules at their edges, the data preparation (the
held-out blocks never overlap a training window, sines' identity scale, the min-max scale maps
MSFT windows back to prices, the weather gaps filled forward), and one smoke run whose saved
generators ``diffusio generate-series`` turns into windows in the data's units."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from diffusio.cli import main
from diffusio.papers import tsgm_2023 as paper
from diffusio.papers.verdicts import NOT, PARTLY, REPRODUCED, RULES
from diffusio.timeseries.tsgm import minmax_inverse

S = paper.Settings()


# ----------------------------------------------------------------------------- rules
def test_sines_rule_edges():
    ok = {"bound": 0.05, "control": 0.4, "control_min": 0.2}
    assert paper.sines_disc(mean=0.02, se=0.01, **ok) == REPRODUCED  # 0.02 + 2 * 0.01 <= 0.05
    assert paper.sines_disc(mean=0.04, se=0.01, **ok) == PARTLY  # below, within the noise
    assert paper.sines_disc(mean=0.02, se=math.nan, **ok) == PARTLY  # spread unknown
    assert paper.sines_disc(mean=0.06, se=0.001, **ok) == NOT
    # a classifier that fails the control says nothing, however small the score
    assert paper.sines_disc(mean=0.0, se=0.001, **{**ok, "control": 0.1}) == NOT


def test_comparison_rules():
    assert paper.beats_classical(gaps=[0.1, 0.1], ses=[0.02, 0.02]) == REPRODUCED
    assert paper.beats_classical(gaps=[0.1, 0.01], ses=[0.02, 0.02]) == PARTLY
    assert paper.beats_classical(gaps=[0.1, -0.1], ses=[0.02, 0.02]) == NOT
    assert paper.beats_classical(gaps=[0.1, 0.1], ses=[math.nan, 0.02]) == PARTLY
    assert paper.latent_beats_data(gap=0.05, se=0.02) == REPRODUCED
    assert paper.latent_beats_data(gap=0.03, se=0.02) == NOT  # within 2 se: not a win
    band = {"real": 0.1, "tolerance": 0.1}  # a band of 0.01 above the real data's score
    assert paper.predictive_near_real(gap=0.004, se=0.002, **band) == REPRODUCED
    assert paper.predictive_near_real(gap=0.008, se=0.002, **band) == PARTLY
    assert paper.predictive_near_real(gap=0.02, se=0.002, **band) == NOT
    assert all(k in RULES for k in ("tsgm-2023/sines-disc", "tsgm-2023/beats-classical",
                                    "tsgm-2023/latent-beats-data",
                                    "tsgm-2023/predictive-near-real"))  # fmt: skip


def test_every_rule_can_pass_and_fail():
    rules = [r for name, r in RULES.items() if name.startswith("tsgm-2023/")]
    assert len(rules) == 4
    for rule in rules:
        assert rule(**rule.supports) == REPRODUCED and rule(**rule.contradicts) == NOT


# ----------------------------------------------------------------------------- data
def test_held_out_blocks_never_overlap_training_windows():
    train, held = paper._blocks_split(5000, S)
    rows = lambda starts: set((starts[:, None] + np.arange(S.length)).ravel().tolist())  # noqa: E731
    assert rows(train).isdisjoint(rows(held))
    # every window lies inside one side; only windows straddling a boundary are dropped
    blocks = 5000 // S.held_block + 1
    boundaries = 2 * (blocks // S.held_every)  # two per held-out block
    assert len(train) + len(held) >= 5000 - S.length + 1 - boundaries * (S.length - 1)
    assert 0.5 / S.held_every < len(held) / (len(train) + len(held)) < 1.5 / S.held_every


def test_fill_forward_then_back():
    x = np.array([[np.nan, 1.0], [2.0, np.nan], [np.nan, np.nan], [5.0, 4.0]])
    np.testing.assert_array_equal(paper._fill(x), [[2, 1], [2, 1], [2, 1], [5, 4]])
    assert np.isnan(x[0, 0])  # the input is not changed


def test_sines_scale_is_the_identity():
    data = paper.load_dataset("sines", paper.Settings(n_sines=50, n_eval=20))
    x = data["train"]
    assert x.shape == (50, 24, 5) and data["held"].shape == (20, 24, 5)
    torch.testing.assert_close(minmax_inverse(x, data["scale"]), x, rtol=0, atol=1e-15)


def test_stocks_windows_map_back_to_prices():
    pytest.importorskip("pmdarima")
    from diffusio.timeseries.sources import msft_series

    data = paper.load_dataset("stocks", S)
    values = msft_series().values
    train, held = paper._blocks_split(len(values), S)
    assert data["train"].shape == (len(train), 24, 5) and data["columns"][-1] == "Volume"
    back = minmax_inverse(data["train"][:50], data["scale"]).numpy()
    expected = values[train[:50, None] + np.arange(24)]
    assert (np.abs(back - expected) <= 1e-12 * np.abs(values).max(0)).all()  # float64 rounding
    assert float(data["train"].min()) >= 0 and float(data["train"].max()) <= 1


# ----------------------------------------------------------------------------- smoke run
@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    cls = paper.REPRODUCTION
    out = tmp_path_factory.mktemp("tsgm-2023")
    metrics = cls.run(out, quick=True, settings=cls.settings(True, cls.SMOKE), progress=False)
    return out, metrics


def test_smoke_report_and_rules(smoke):
    out, metrics = smoke
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["claims"] and all(c["rule"].startswith("tsgm-2023/") for c in saved["claims"])
    assert any(c["main"] for c in saved["claims"])
    rows = {k.split(".", 1)[1] for k in saved["metrics"] if k.startswith("sines.")}
    assert rows == {"real", "control", *paper.MODELS}
    vp = saved["metrics"]["sines.tsgm-vp"]
    assert len(vp["disc_seeds"]) == paper.REPRODUCTION.settings(True).metric_seeds
    assert all(0 <= d <= 0.5 for d in vp["disc_seeds"]) and vp["pred"] > 0
    assert (out / "pca_sines.png").read_bytes()[:4] == b"\x89PNG"
    assert "{s." not in (out / "report.md").read_text()


def test_saved_generators_feed_generate_series(smoke, tmp_path, capsys):
    out, _ = smoke
    for model in paper.MODELS:
        target = tmp_path / f"{model}.npz"
        code = main(["generate-series", str(out / "models" / f"sines-{model}"), "--n", "6",
                     "--out", str(target), "--no-progress"])  # fmt: skip
        assert code == 0, capsys.readouterr().err
        with np.load(target) as f:
            x, columns, scaled = f["samples"], list(f["columns"]), bool(f["scaled"])
        assert x.shape == (6, 24, 5) and np.isfinite(x).all() and not scaled
        assert columns == [f"sine{k}" for k in range(5)]
        if model in ("tsgm-vp", "tsgm-subvp", "ddpm"):  # inside the sines' [0, 1] range
            assert (x >= 0).all() and (x <= 1).all()
    capsys.readouterr()
