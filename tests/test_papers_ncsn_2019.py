"""The ncsn-2019 reproduction: the paper's Figure-3 argument with the exact score (weights
measured against binomial standard errors), its verdict rules, and its smoke run."""

import math

import pytest
import torch

from diffusio.metrics.stats import binomial_se
from diffusio.papers import ncsn_2019 as ncsn
from diffusio.papers.base import get_reproduction
from diffusio.papers.verdicts import NOT, PARTLY, REPRODUCED, SIGNIFICANCE
from diffusio.toy.data import frozen_split


@pytest.fixture(scope="module")
def figure3(tmp_path_factory) -> dict:
    """Figure 3 with the exact score: 1,500 samples from the same uniform start."""
    cls = get_reproduction("ncsn-2019")
    settings = cls.settings(True, {"n_exact": 1500, "long_steps": (300,), "plain_long_factor": 1})
    return cls(settings, tmp_path_factory.mktemp("ncsn"), progress=False).exact_experiment()


def _row(result: dict, label: str) -> dict:
    return next(r for r in result["rows"] if r["label"] == label and r["score"] != "learned")


def test_plain_langevin_keeps_the_initial_split(figure3):
    """Langevin with the exact score ends far from 0.8, at the split of its initialisation."""
    plain, init = _row(figure3, "Langevin"), _row(figure3, "initialisation")
    assert abs(plain["weight"] - 0.8) > 10 * plain["se"]
    assert ncsn.langevin_wrong_weights(z_plain=plain["z"], z_long=plain["z"]) == REPRODUCED
    assert abs(plain["weight"] - init["weight"]) < 4 * init["se"]
    assert plain["off_mode"] < 0.01  # the chains did reach the modes: a mixing failure


def test_annealed_langevin_recovers_the_weights(figure3):
    """Annealed Langevin with the exact score recovers 0.8 within 4 binomial standard errors;
    so do exact samples (the yardstick)."""
    for label in ("exact samples", "annealed Langevin", "annealed Langevin, T = 300"):
        row = _row(figure3, label)
        assert abs(row["weight"] - 0.8) < 4 * row["se"], (label, row["weight"], row["se"])
        assert row["diverged"] == 0
        assert ncsn.annealed_recovers_weights(w=row["weight"], se=row["se"], truth=0.8) == REPRODUCED
    assert [sigma for sigma, _ in figure3["frozen"]][0] == pytest.approx(20.0)


def test_frozen_split_limits():
    """The heavy side's mass is 0.8 once the noised modes separate and 0.5 when they merge."""
    mixture = ncsn.paper_mixture(ncsn.Settings())
    assert frozen_split(mixture, 0.05) == pytest.approx(0.8, abs=1e-6)
    assert frozen_split(mixture, 1e4) == pytest.approx(0.5, abs=1e-3)
    masses = [frozen_split(mixture, s) for s in (20.0, 5.0, 2.0)]
    assert masses == sorted(masses)


def test_settings_differ_only_in_size():
    cls = get_reproduction("ncsn-2019")
    quick, default = cls.settings(True), cls.settings(False)
    for name in ("means", "weights", "box", "levels", "sigma_max", "sigma_min", "step_ratio"):
        assert getattr(quick, name) == getattr(default, name)
    assert default.steps_per_level == 100 and default.levels == 10  # NCSN's L and T
    assert quick.plain_steps == quick.levels * quick.steps_per_level


def test_weight_rules():
    """'Wrong' = beyond SIGNIFICANCE binomial se of 0.8 at both budgets; 'recovered' = not
    clearly (2 se) farther from 0.8 than 2 binomial se at the paper's 1,280 samples."""
    assert ncsn.langevin_wrong_weights(z_plain=-42.0, z_long=-40.0) == REPRODUCED
    assert ncsn.langevin_wrong_weights(z_plain=-42.0, z_long=-1.9) == NOT  # one budget at 0.8
    tol = SIGNIFICANCE * binomial_se(0.8, ncsn.PAPER_SAMPLES)  # 0.0224
    se = 0.006
    edge = tol + SIGNIFICANCE * se
    rec = ncsn.annealed_recovers_weights
    assert rec(w=0.8 - 0.95 * edge, se=se, truth=0.8) == REPRODUCED
    assert rec(w=0.8 + 0.95 * edge, se=se, truth=0.8) == REPRODUCED
    assert rec(w=0.8 - 1.05 * edge, se=se, truth=0.8) == NOT
    assert rec(w=0.8, se=math.nan, truth=0.8) == NOT  # an unknown error shows nothing
    learned = ncsn.learned_score_weights
    assert learned(w=0.81, se=0.009, truth=0.8, z_plain=-22.0) == REPRODUCED
    assert learned(w=0.81, se=0.009, truth=0.8, z_plain=1.0) == NOT  # plain Langevin also right
    assert learned(w=0.70, se=0.009, truth=0.8, z_plain=-22.0) == NOT


def test_toy_rule_passes_partly_and_fails():
    toy = ncsn.toy_samples
    assert toy(sw_z=-0.2, mmd_z=1.9, sw_ratio=0.94, diverged=0) == REPRODUCED
    assert toy(sw_z=-0.2, mmd_z=1.9, sw_ratio=0.94, diverged=1) == PARTLY  # near, not at, the data
    assert toy(sw_z=2.5, mmd_z=0.0, sw_ratio=1.2, diverged=0) == PARTLY  # beyond 2 floor sds
    assert toy(sw_z=30.0, mmd_z=40.0, sw_ratio=2.5, diverged=0) == NOT
    assert toy(sw_z=math.nan, mmd_z=math.nan, sw_ratio=math.nan, diverged=0) == NOT


def test_smoke_run_writes_report_metrics_and_figures(smoke_run):
    """The whole pipeline at a tiny scale: every file is written and the claims are there."""
    out, metrics = smoke_run("ncsn-2019")
    for name in ("fig3_exact_score.png", "fig3_learned_score.png", "score_field.png",
                 "toy_samples.png"):  # fmt: skip
        assert (out / name).stat().st_size > 1000
    report = (out / "report.md").read_text(encoding="utf-8")
    for heading in ("## Scale", "## Claims checked", "Figure 3", "## Samples on a 2-D toy"):
        assert heading in report
    assert len(metrics["claims"]) == 4
    assert [c["main"] for c in metrics["claims"]] == [True, True, False, False]  # ours: no count
    assert all(c["rule"].startswith("ncsn-2019/") for c in metrics["claims"])
    m = metrics["metrics"]
    assert {r["label"] for r in m["exact.weights"]} >= {"Langevin", "annealed Langevin"}
    assert len(m["learned.score_errors"]) == ncsn.Settings().levels
    assert "toy.score.sliced_wasserstein" in m and "toy.eps.mmd" in m
    assert set(m["toy.score.mmd"]) == {"value", "floor", "null_mean", "null_std", "z"}
    assert torch.isfinite(torch.tensor(m["toy.score.mmd"]["z"]))
