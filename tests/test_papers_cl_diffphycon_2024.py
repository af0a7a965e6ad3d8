"""The cl-diffphycon-2024 reproduction (not yet in PAPERS, so run directly): its claim rules on
synthetic numbers, the settings, and a smoke run through the reproduction contract."""

from __future__ import annotations

import json
import math

import pytest

from diffusio.papers import cl_diffphycon_2024 as clp
from diffusio.papers.base import settings_from_dict, settings_to_dict
from diffusio.papers.verdicts import NOT, PARTLY, REPRODUCED, RULES, VERDICTS, overall_status

pytest.importorskip("gymnasium")

CL = clp.CLDiffPhyCon2024


def test_no_worse_rule_allows_one_standard_error():
    assert clp.no_worse(diff=-2.0, se=1.0) == REPRODUCED  # better
    assert clp.no_worse(diff=0.9, se=1.0) == REPRODUCED
    assert clp.no_worse(diff=1.5, se=1.0) == PARTLY  # within the shared 2-se noise margin
    assert clp.no_worse(diff=2.5, se=1.0) == NOT
    assert clp.no_worse(diff=0.0, se=math.nan) == NOT


def test_open_loop_rule_needs_a_clear_win_and_cost_rule_needs_h_times():
    assert clp.beats_open_loop(gain=2.5, se=1.0) == REPRODUCED
    assert clp.beats_open_loop(gain=1.9, se=1.0) == NOT  # within the noise: not shown
    assert clp.beats_open_loop(gain=-3.0, se=1.0) == NOT
    assert clp.cheaper(ratio=10.0, horizon=10) == REPRODUCED
    assert clp.cheaper(ratio=5.3, horizon=10) == PARTLY
    assert clp.cheaper(ratio=1.0, horizon=10) == NOT


def test_settings_round_trip_and_fit_the_task():
    for quick in (False, True):
        s = CL.settings(quick)
        assert settings_from_dict(CL.Settings, json.loads(json.dumps(settings_to_dict(s)))) == s
        assert s.K % 10 == 0 and 1 in s.replan_every  # h = 1 is the claim's baseline
    smoke = CL.settings(True, CL.SMOKE)
    assert smoke.K % 10 == 0 and smoke.episodes >= 2
    assert all(n.verified or n.note for n in CL.PAPER_NUMBERS)


def test_smoke_run_writes_a_judged_report(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFUSIO_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "report"
    metrics = CL.run(out, quick=True, overrides=CL.SMOKE, progress=False)
    saved = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert saved["name"] == "cl-diffphycon-2024" and saved["claims"]
    assert all(c["verdict"] in VERDICTS for c in saved["claims"])
    assert all(c["rule"] in RULES and c["rule"].startswith("cl-diffphycon-2024/")
               for c in saved["claims"])  # fmt: skip
    assert [c["main"] for c in saved["claims"]] == [True] * 5 + [False]
    assert saved["status"] == overall_status(saved["claims"])
    assert saved["paper_numbers"]
    m = saved["metrics"]
    assert set(m["tracking"]) == {"none", "state noise", "viscosity"}
    none = m["tracking"]["none"]
    assert set(none) == {"CL-DiffPhyCon", "replan h=1", "open loop (h=10)"}
    K = CL.SMOKE["K"]
    assert none["replan h=1"]["nfe_per_step"] == K
    assert none["open loop (h=10)"]["nfe_per_step"] == K / 10
    assert none["CL-DiffPhyCon"]["nfe_per_step"] == (K + 9 * K // 10) / 10
    assert m["settings"] == metrics["metrics"]["settings"]
    text = (out / "report.md").read_text(encoding="utf-8")
    assert "## Claims checked" in text and "{s." not in text and "{r[" not in text
    assert (out / "tracking.png").is_file()
