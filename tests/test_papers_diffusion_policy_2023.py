"""diffusion-policy-2023: the claim rules, the mode classifier and a smoke run of the
reproduction, with the contract test's checks on its report."""

import dataclasses
import json

import numpy as np
import pytest

pytest.importorskip("pymunk")
pytest.importorskip("shapely")

from diffusio.papers import diffusion_policy_2023 as dp  # noqa: E402
from diffusio.papers.base import parse_overrides, settings_from_dict, settings_to_dict  # noqa: E402
from diffusio.papers.verdicts import NOT, PARTLY, REPRODUCED, RULES, VERDICTS, overall_status  # noqa: E402


def test_rules_can_pass_and_fail():
    for rule in (dp.wins, dp.multimodal, dp.fast_and_equal):
        assert rule.name in RULES
        assert rule(**rule.supports) == REPRODUCED and rule(**rule.contradicts) == NOT
    assert dp.wins(diff=0.05, se=0.05) == NOT  # within the noise is not a win
    assert dp.multimodal(success=0.95, se=0.02, min_mode=0.1) == PARTLY  # one mode only
    assert dp.multimodal(success=0.85, se=0.03, min_mode=0.4) == REPRODUCED  # within 2 se of 0.9
    assert dp.fast_and_equal(diff=-0.01, se=0.02, speedup=3.0) == PARTLY


def test_modes_reads_the_side_and_switches():
    y = np.linspace(-0.8, 0.8, 17)
    left = np.stack([-0.5 * np.cos(y * 2), y], 1)
    right = left * [-1, 1]
    switch = np.stack([np.where(y < 0, -0.3, 0.3), y], 1)
    m = dp.modes([left, right, right, switch])
    # the switching episode still has a side (the mean x beside the obstacle: right here)
    assert m["left"] == 0.25 and m["right"] == 0.75 and m["switch"] == 0.25
    assert len(m["paths"]) == 4


def test_settings_round_trip():
    cls = dp.DiffusionPolicy2023
    for quick in (False, True):
        s = cls.settings(quick)
        assert settings_from_dict(cls.Settings, json.loads(json.dumps(settings_to_dict(s)))) == s
    assert set(cls.QUICK) | set(cls.SMOKE) <= {f.name for f in dataclasses.fields(cls.Settings)}
    with pytest.raises(ValueError, match="unknown setting"):
        parse_overrides(cls.Settings, ["no_such_key=1"])


def test_smoke_run_writes_a_ruled_report(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFUSIO_CACHE", str(tmp_path / "cache"))
    cls = dp.DiffusionPolicy2023
    out = tmp_path / "report"
    metrics = cls.run(out, quick=True, settings=cls.settings(True, cls.SMOKE), progress=False)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["name"] == cls.NAME and saved["claims"] and saved["paper_numbers"]
    assert all(
        c["verdict"] in VERDICTS and c["rule"].startswith(cls.NAME + "/") for c in saved["claims"]
    )
    assert sum(c["main"] for c in saved["claims"]) == 4
    assert saved["status"] == overall_status(saved["claims"])
    assert set(saved["metrics"]["avoid"]) == set(dp.METHODS) == set(saved["metrics"]["pusht"])
    for m in saved["metrics"]["pusht"].values():
        assert 0 <= m["score_mean"] <= 1 and 0 <= m["success_rate"] <= 1
    assert saved["metrics"]["settings"] == metrics["metrics"]["settings"]
    text = (out / "report.md").read_text()
    assert "## Claims checked" in text and "{s." not in text and "{r[" not in text
    assert (out / "avoid_paths.png").is_file() and (out / "pusht_rollout.png").is_file()
