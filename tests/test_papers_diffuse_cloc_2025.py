"""diffuse-cloc-2025: the claim rules and a smoke run of the reproduction, called directly (it is
not in PAPERS yet), with the contract test's checks on its report."""

import dataclasses
import json

import pytest

pytest.importorskip("mujoco")

from diffusio.papers import diffuse_cloc_2025 as cloc  # noqa: E402
from diffusio.papers.base import parse_overrides, settings_from_dict, settings_to_dict  # noqa: E402
from diffusio.papers.verdicts import NOT, REPRODUCED, RULES, VERDICTS, overall_status  # noqa: E402


def test_rules_can_pass_and_fail():
    for rule in (cloc.wins, cloc.not_worse):
        assert rule.name in RULES
        assert rule(**rule.supports) == REPRODUCED and rule(**rule.contradicts) == NOT
    assert cloc.wins(diff=0.05, se=0.05) == NOT  # within the noise is not a win
    assert cloc.not_worse(diff=-0.05, se=0.05) == REPRODUCED


def test_settings_round_trip():
    cls = cloc.DiffuseCLoC2025
    for quick in (False, True):
        s = cls.settings(quick)
        assert settings_from_dict(cls.Settings, json.loads(json.dumps(settings_to_dict(s)))) == s
    assert set(cls.QUICK) | set(cls.SMOKE) <= {f.name for f in dataclasses.fields(cls.Settings)}
    with pytest.raises(ValueError, match="unknown setting"):
        parse_overrides(cls.Settings, ["no_such_key=1"])


def test_smoke_run_writes_a_ruled_report(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFUSIO_CACHE", str(tmp_path / "cache"))
    cls = cloc.DiffuseCLoC2025
    out = tmp_path / "report"
    metrics = cls.run(out, quick=True, settings=cls.settings(True, cls.SMOKE), progress=False)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["name"] == cls.NAME and saved["claims"] and saved["paper_numbers"]
    assert all(
        c["verdict"] in VERDICTS and c["rule"].startswith(cls.NAME + "/") for c in saved["claims"]
    )
    assert sum(c["main"] for c in saved["claims"]) == 3
    assert saved["status"] == overall_status(saved["claims"])
    assert set(saved["metrics"]["methods"]) == set(cloc.METHODS)
    for m in saved["metrics"]["methods"].values():
        assert 0 <= m["success"] <= 1 and 0 <= m["collision"] <= 1 - m["success"] + 1e-9
    assert saved["metrics"]["settings"] == metrics["metrics"]["settings"]
    text = (out / "report.md").read_text()
    assert "## Claims checked" in text and "{s." not in text and "{r[" not in text
    assert (out / "paths.png").is_file()
    # a rerun reuses the trained models from the cache (the checkpoints are complete)
    runs = list((tmp_path / "cache" / "models").glob("cloc-*/checkpoint.pt"))
    assert len(runs) == 4
