"""field-reconstruction (not yet in PAPERS): its smoke run through the contract's checks, the
finite-sample coverage of exact samples, and the claim rules' boundaries."""

import json

import numpy as np
import pytest

from diffusio.papers import field_reconstruction as paper
from diffusio.papers.base import settings_from_dict, settings_to_dict
from diffusio.papers.verdicts import NOT, PARTLY, REPRODUCED, RULES, VERDICTS, overall_status

CLS = paper.FieldReconstruction


def test_settings_round_trip():
    for quick in (False, True):
        s = CLS.settings(quick)
        assert settings_from_dict(CLS.Settings, json.loads(json.dumps(settings_to_dict(s)))) == s
    assert isinstance(CLS.settings(True, CLS.SMOKE), CLS.Settings)


def test_exact_coverage_of_sample_bands():
    """The order-statistic band of S exact samples covers a fresh draw (b - a) / (S + 1) of the
    time, whatever the distribution: 0.9 at S = 19 and 39; checked on Gaussian and exponential
    draws through score_samples (binomial tolerance)."""
    import torch

    from diffusio.physics import fields as fr

    assert fr.exact_coverage(19) == fr.exact_coverage(39) == 0.9
    assert fr.band_rank(4) == 1 and fr.exact_coverage(4) == 0.6
    g = torch.Generator().manual_seed(0)
    for s in (19, 32):
        for draw in (torch.randn, lambda *a, **k: torch.rand(*a, **k).log().neg()):
            x, y = draw(s, 100, 128, generator=g), draw(100, 128, generator=g)
            mask = torch.ones(100, 128, dtype=torch.bool)
            cover = fr.score_samples(x, y, mask, mask)["cover"].mean()
            assert abs(cover - fr.exact_coverage(s)) < 4 * np.sqrt(0.1 / 12800)


def test_rules_pass_and_fail():
    assert paper.TALLY["kriging"](margins=[0.01, 0.02], ses=[0.001, 0.001]) == REPRODUCED
    assert paper.TALLY["kriging"](margins=[0.01, 0.0], ses=[0.001, 0.001]) == PARTLY
    assert paper.TALLY["kriging"](margins=[0.01, -0.01], ses=[0.001, 0.001]) == NOT
    assert paper.COVERAGE(values=[-0.01], ses=[0.01], bounds=[0.0]) == REPRODUCED
    assert paper.COVERAGE(values=[-0.01, 0.01], ses=[0.01] * 2, bounds=[0.0] * 2) == PARTLY
    assert paper.COVERAGE(values=[-0.01, 0.1], ses=[0.01] * 2, bounds=[0.0] * 2) == NOT


def test_smoke_run(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFUSIO_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    metrics = CLS.run(out, quick=True, settings=CLS.settings(True, CLS.SMOKE), progress=False)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["name"] == CLS.NAME and saved["claims"]
    assert all(c["verdict"] in VERDICTS and c["rule"] in RULES for c in saved["claims"])
    assert all(c["rule"].startswith(CLS.NAME + "/") for c in saved["claims"])
    assert any(c["main"] for c in saved["claims"]) and saved["paper_numbers"]
    assert saved["status"] == overall_status(saved["claims"])
    text = (out / "report.md").read_text()
    assert "## Claims checked" in text and "{s." not in text and "{r[" not in text
    assert (out / "reconstructions.png").is_file()
    assert saved["metrics"]["settings"] == metrics["metrics"]["settings"]
    again = CLS.run(
        tmp_path / "again", quick=True, settings=CLS.settings(True, CLS.SMOKE), progress=False
    )

    def drop(m):
        return {k: {n: v for n, v in c.items() if n != "diffusion_seconds"} for k, c in m.items()}

    assert drop(again["metrics"]["scores"]) == drop(metrics["metrics"]["scores"])  # cached models
    with pytest.raises(ValueError, match="unknown setting"):
        CLS.settings(True, ["no_such_key=1"])
