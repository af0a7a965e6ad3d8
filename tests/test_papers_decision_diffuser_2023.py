"""The decision-diffuser-2023 reproduction: its claim rules on synthetic numbers (a win within
the noise is not shown; the composed direction must be diagonal with progress on both axes; the
target needs both halves), the settings, and the smoke run's report."""

from __future__ import annotations

import json
import math

import pytest

from diffusio.papers import decision_diffuser_2023 as ddp
from diffusio.papers.verdicts import NOT, REPRODUCED, VERDICTS

pytest.importorskip("gymnasium")

DD = ddp.DecisionDiffuser2023


def test_win_rule_needs_two_standard_errors():
    assert ddp.wins(diff=50.0, se=20.0) == REPRODUCED
    assert ddp.wins(diff=39.0, se=20.0) == NOT  # within the noise: not shown
    assert ddp.wins(diff=-80.0, se=20.0) == NOT
    assert ddp.wins(diff=80.0, se=math.nan) == NOT


def test_composition_rule_wants_the_diagonal_and_both_axes():
    good = dict(angle=47.0, angle_se=3.0, along_x=0.3, x_se=0.02, along_y=0.32, y_se=0.02)
    assert ddp.composes(**good) == REPRODUCED
    assert ddp.composes(**{**good, "angle": 65.0}) == NOT  # outside the tolerance
    assert ddp.composes(**{**good, "along_x": 0.01}) == NOT  # one skill only
    assert ddp.composes(**{**good, "angle_se": math.nan}) == NOT
    assert ddp.composes(**{**good, "angle_se": 26.0}) == NOT  # too uncertain to tell 45 from 0


def test_target_needs_bc_beaten_and_pbc_matched():
    assert ddp.target_met(over_bc=60.0, bc_se=20.0, over_pbc=-15.0, pbc_se=20.0) == REPRODUCED
    assert ddp.target_met(over_bc=30.0, bc_se=20.0, over_pbc=10.0, pbc_se=20.0) == NOT
    assert ddp.target_met(over_bc=60.0, bc_se=20.0, over_pbc=-25.0, pbc_se=20.0) == NOT


def test_settings_follow_the_paper_where_the_cpu_allows():
    default, quick = DD.settings(), DD.settings(True)
    assert default.p_uncond == 0.25 and default.noise_scale == 0.5 and default.target == 0.9
    assert default.scale in default.scales and quick.scale in quick.scales
    assert 0.0 in default.scales  # the unconditional model is measured
    assert default.max_episode_steps is None  # the task's 1000 steps
    recipe = ddp.recipe(default, "cond-diffuser")
    assert recipe["kind"] == "cond-diffuser" and recipe["p_uncond"] == 0.25


def test_smoke_run(smoke_run):
    out, _ = smoke_run("decision-diffuser-2023")
    saved = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert [c["main"] for c in saved["claims"]] == [True, True, True, True, False]
    assert all(c["verdict"] in VERDICTS for c in saved["claims"])
    m = saved["metrics"]
    assert [x["scale"] for x in m["sweep"]] == list(DD.SMOKE["scales"])
    assert set(m["methods"]) == {"CondDiffuser", "BC", "%BC (10%)"}
    assert all(x["episodes"] == DD.SMOKE["episodes"] for x in m["methods"].values())
    assert set(m["composition"]) == {"info", "+x", "+y", "+x & +y"}
    report = (out / "report.md").read_text(encoding="utf-8")
    for heading in ("## Claims checked", "## LunarLander: Decision Diffuser against the baselines",
                    "## Composition of skills (point2d)", "## Notes"):  # fmt: skip
        assert heading in report
    assert (out / "guidance.png").stat().st_size > 1000
