"""dppo-2024: the claim rules and a smoke run of the reproduction, called directly, with the
contract test's checks on its report."""

import json

import pytest

pytest.importorskip("gymnasium")
pytest.importorskip("Box2D")

from diffusio.papers import dppo_2024 as dppo  # noqa: E402
from diffusio.papers.verdicts import NOT, REPRODUCED, RULES, VERDICTS, overall_status  # noqa: E402


def test_rules_can_pass_and_fail():
    for rule in (dppo.improves, dppo.stable, dppo.competitive):
        assert rule.name in RULES
        assert rule(**rule.supports) == REPRODUCED and rule(**rule.contradicts) == NOT
    assert dppo.improves(diff=15.0, se=10.0) == NOT  # within the noise is not an improvement
    assert dppo.competitive(diff=-15.0, se=10.0) == REPRODUCED


def test_smoke_run_writes_a_ruled_report(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFUSIO_CACHE", str(tmp_path / "cache"))
    cls = dppo.DPPO2024
    out = tmp_path / "report"
    metrics = cls.run(out, quick=True, settings=cls.settings(True, cls.SMOKE), progress=False)
    saved = json.loads((out / "metrics.json").read_text(), parse_constant=pytest.fail)
    assert saved["name"] == cls.NAME and saved["claims"] and saved["paper_numbers"]
    assert all(
        c["verdict"] in VERDICTS and c["rule"].startswith(cls.NAME + "/") for c in saved["claims"]
    )
    assert sum(c["main"] for c in saved["claims"]) == 3
    assert saved["status"] == overall_status(saved["claims"])
    assert set(saved["metrics"]["methods"]) >= {"DPPO", "Gaussian-PPO"}
    assert saved["metrics"]["settings"] == metrics["metrics"]["settings"]
    text = (out / "report.md").read_text()
    assert "## Claims checked" in text and "{s." not in text and "{r[" not in text
    assert (out / "returns.png").is_file() and (out / "avoid.png").is_file()
