"""The reproduction contract, checked for every registered paper: settings round-trip, the
quick and smoke overrides are valid settings, ``--set`` validation, and a smoke run writes a
report whose claims all carry a verdict and a metrics.json with the settings."""

import dataclasses
import json

import pytest

from diffusio.papers.base import (
    PAPERS,
    get_reproduction,
    parse_overrides,
    settings_from_dict,
    settings_to_dict,
)
from diffusio.papers.verdicts import RULES, VERDICTS, overall_status


def _no_nan(token):
    raise AssertionError(f"metrics.json holds {token}, which is not JSON")


@pytest.mark.parametrize("name", PAPERS)
def test_settings_round_trip_and_overrides(name):
    cls = get_reproduction(name)
    assert name == cls.NAME and cls.TITLE and cls.REFERENCE
    for quick in (False, True):
        s = cls.settings(quick)
        assert settings_from_dict(cls.Settings, json.loads(json.dumps(settings_to_dict(s)))) == s
    smoke = cls.settings(True, cls.SMOKE)
    assert isinstance(smoke, cls.Settings)
    assert set(cls.QUICK) <= {f.name for f in dataclasses.fields(cls.Settings)}
    for dep in cls.DEPENDS:
        assert dep in PAPERS and dep != name
    with pytest.raises(ValueError, match="unknown setting 'no_such_key'"):
        parse_overrides(cls.Settings, ["no_such_key=1"])


@pytest.mark.parametrize("name", PAPERS)
def test_smoke_run_writes_report_with_verdicts(name, smoke_run):
    out, metrics = smoke_run(name)
    assert (out / "report.md").is_file()
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["name"] == name and saved["claims"]
    assert all(c["verdict"] in VERDICTS for c in saved["claims"])
    # every verdict came from a rule registered for this paper (so the rule test covers it)
    unruled = [c["claim"] for c in saved["claims"] if c["rule"] not in RULES]
    assert not unruled, f"claims judged without a registered rule: {unruled}"
    assert all(c["rule"].startswith(name + "/") for c in saved["claims"])
    assert any(c["main"] for c in saved["claims"]), "a report needs at least one main claim"
    assert saved["status"] == overall_status(saved["claims"])
    assert saved["paper_numbers"], "a report lists the paper numbers it quotes"
    json.loads((out / "metrics.json").read_text(), parse_constant=_no_nan)  # strict JSON
    assert saved["metrics"]["settings"] == metrics["metrics"]["settings"]
    text = (out / "report.md").read_text()
    assert "## Claims checked" in text
    assert "{s." not in text and "{r[" not in text  # every placeholder of the prose filled


def test_set_overrides_are_typed_and_validated():
    cls = get_reproduction(PAPERS[0])
    fields = {f.name: f for f in dataclasses.fields(cls.Settings)}
    key = next(k for k, f in fields.items() if f.type in ("int", int))
    assert parse_overrides(cls.Settings, [f"{key}=7"]) == {key: 7}
    with pytest.raises(ValueError, match=f"setting '{key}' expects int"):
        parse_overrides(cls.Settings, [f"{key}=seven"])
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(cls.Settings, ["novalue"])
