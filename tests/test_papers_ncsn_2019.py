"""The ncsn-2019 reproduction: the paper's Figure-3 argument with the exact score (weights
measured against binomial standard errors), its building blocks, and a tiny end-to-end run."""

import json
import math
from dataclasses import replace

import pytest
import torch

from diffusio.papers import ncsn_2019 as ncsn
from diffusio.papers.report import VERDICTS

TINY = replace(
    ncsn.SETTINGS["quick"],
    n_exact=300,
    steps_per_level=20,
    long_steps=(40,),
    plain_long_factor=2,
    n_train=2000,
    mixture_steps=30,
    toy_steps=30,
    toy_ablation=("eps",),
    n_learned=200,
    null_draws=3,
    net_options={"hidden": 32, "depth": 1, "embedding": "fourier"},
)


@pytest.fixture(scope="module")
def figure3() -> dict:
    """Figure 3 with the exact score: 1,500 samples from the same uniform start."""
    settings = replace(ncsn.SETTINGS["quick"], n_exact=1500, long_steps=(300,), plain_long_factor=1)
    return ncsn.exact_experiment(settings)


def _row(result: dict, label: str) -> dict:
    return next(r for r in result["rows"] if r["label"] == label and r["score"] != "learned")


def test_plain_langevin_keeps_the_initial_split(figure3):
    """Langevin with the exact score ends far from 0.8, at the split of its initialisation."""
    plain, init = _row(figure3, "Langevin"), _row(figure3, "initialisation")
    assert abs(plain["weight"] - 0.8) > 10 * plain["se"]
    assert abs(plain["weight"] - init["weight"]) < 4 * init["se"]
    assert plain["off_mode"] < 0.01  # the chains did reach the modes: a mixing failure


def test_annealed_langevin_recovers_the_weights(figure3):
    """Annealed Langevin with the exact score recovers 0.8 within 4 binomial standard errors;
    so do exact samples (the yardstick)."""
    for label in ("exact samples", "annealed Langevin", "annealed Langevin, T = 300"):
        row = _row(figure3, label)
        assert abs(row["weight"] - 0.8) < 4 * row["se"], (label, row["weight"], row["se"])
        assert row["diverged"] == 0


def test_mode_weight_and_diverged_samples():
    mixture = ncsn.paper_mixture(ncsn.SETTINGS["default"])
    x = mixture.sample(4000, seed=3)
    weight, se = ncsn.mode_weight(mixture, x)
    assert se == pytest.approx(math.sqrt(weight * (1 - weight) / 4000))
    assert abs(weight - 0.8) < 4 * se
    x[:10] = float("nan")
    finite, diverged = ncsn.finite_rows(x)
    assert diverged == 10 and finite.shape[0] == 3990
    assert ncsn.off_mode_fraction(mixture, x) >= 10 / 4000  # diverged counts as off-mode


def test_frozen_split_limits():
    """The heavy side's mass is 0.8 once the noised modes separate and 0.5 when they merge."""
    mixture = ncsn.paper_mixture(ncsn.SETTINGS["default"])
    assert ncsn.frozen_split(mixture, 0.05) == pytest.approx(0.8, abs=1e-6)
    assert ncsn.frozen_split(mixture, 1e4) == pytest.approx(0.5, abs=1e-3)
    masses = [ncsn.frozen_split(mixture, s) for s in (20.0, 5.0, 2.0)]
    assert masses == sorted(masses)


def test_uniform_box_and_ladder():
    x = ncsn.uniform_box(1000, 8.0, seed=0)
    assert x.shape == (1000, 2) and x.abs().max() <= 8.0
    assert torch.equal(x, ncsn.uniform_box(1000, 8.0, seed=0))
    sigmas = ncsn.ve_ladder(0.05, 20.0, 10).discrete().sigmas
    ratios = sigmas[1:] / sigmas[:-1]
    assert sigmas[0] == pytest.approx(0.05) and sigmas[-1] == pytest.approx(20.0)
    assert torch.allclose(ratios, ratios[0].expand_as(ratios))  # geometric


def test_settings_differ_only_in_size():
    quick, default = ncsn.SETTINGS["quick"], ncsn.SETTINGS["default"]
    for name in ("means", "weights", "box", "levels", "sigma_max", "sigma_min", "step_ratio"):
        assert getattr(quick, name) == getattr(default, name)
    assert default.steps_per_level == 100 and default.levels == 10  # NCSN's L and T
    assert quick.plain_steps == quick.levels * quick.steps_per_level


def test_verdicts():
    truth = 0.8
    close = {"weight": 0.79, "z": -1.5}
    biased = {"weight": 0.70, "z": -15.0}
    assert ncsn._annealed_verdict(close, close, truth) == "reproduced"
    assert ncsn._annealed_verdict(biased, close, truth) == "partly reproduced"
    assert ncsn._annealed_verdict(biased, biased, truth) == "not reproduced"
    metric = {"value": 0.1, "null_mean": 0.1, "null_std": 0.01, "z": 0.0}
    good = {"diverged": 0, "metrics": {"sliced_wasserstein": metric, "mmd": metric}}
    assert ncsn._toy_verdict(good) == "reproduced"
    bad_mmd = {**metric, "z": 20.0}
    partly = {"diverged": 0, "metrics": {"sliced_wasserstein": metric, "mmd": bad_mmd}}
    assert ncsn._toy_verdict(partly) == "partly reproduced"


def test_reproduce_writes_report_metrics_and_figures(tmp_path):
    """The whole pipeline at a tiny scale: every file is written and the claims are there."""
    metrics = ncsn.reproduce(tmp_path, quick=True, settings=TINY, progress=False)
    for name in ("fig3_exact_score.png", "fig3_learned_score.png", "score_field.png"):
        assert (tmp_path / name).stat().st_size > 1000
    assert (tmp_path / "toy_samples.png").stat().st_size > 1000
    report = (tmp_path / "report.md").read_text(encoding="utf-8")
    for heading in ("## Scale", "## Claims checked", "Figure 3", "## Samples on a 2-D toy"):
        assert heading in report
    saved = json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))
    assert saved["name"] == "ncsn-2019" and saved["quick"] is True
    assert len(saved["claims"]) == 4
    assert all(c["verdict"] in VERDICTS for c in saved["claims"])
    m = saved["metrics"]
    assert {r["label"] for r in m["exact.weights"]} >= {"Langevin", "annealed Langevin"}
    assert len(m["learned.score_errors"]) == TINY.levels
    assert "toy.score.sliced_wasserstein" in m and "toy.eps.mmd" in m
    assert metrics["metrics"].keys() == m.keys()
