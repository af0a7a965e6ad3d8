"""The ddim-2021 reproduction: the verdicts, the recipe shared with ddpm-2020, and the shared
smoke run's files and metrics (DDIM inversion and slerp are tested in test_image_ddim)."""

from __future__ import annotations

import json
import math

import pytest

pytest.importorskip("sklearn")

from diffusio.papers import ddim_2021 as ddim  # noqa: E402
from diffusio.papers.base import get_reproduction  # noqa: E402
from diffusio.papers.runs import config_hash  # noqa: E402
from diffusio.papers.verdicts import VERDICTS  # noqa: E402

CLS = ddim.DDIM2021


def test_verdicts():
    assert ddim.within(10.5, 10.0, 0.10, 1.0) == "reproduced"
    assert ddim.within(11.5, 10.0, 0.10, 1.0) == "partly reproduced"
    assert ddim.within(14.0, 10.0, 0.10, 1.0) == "not reproduced"
    assert ddim.within(9.0, 10.0, 0.10, math.nan) == "reproduced"
    assert ddim.within(11.5, 10.0, 0.10, math.nan) == "not reproduced"  # no band without spread
    assert ddim.few_steps_verdict([20.0, 8.0, 1.0], 1.0) == "reproduced"
    assert ddim.few_steps_verdict([1.0, 0.5], 1.0) == "partly reproduced"
    assert ddim.few_steps_verdict([20.0, 8.0], math.nan) == "partly reproduced"  # unknown noise
    assert ddim.few_steps_verdict([-1.0], 1.0) == "not reproduced"
    rows = [{"steps": S, "mse": v, "mse_se": 1e-4} for S, v in ((10, 0.02), (20, 0.01),
                                                               (50, 0.005))]  # fmt: skip
    assert ddim.recon_verdict(rows) == "reproduced"
    assert ddim.recon_verdict(rows[::-1]) == "not reproduced"
    cons = [{"eta": 0.0, "steps": 2, "agreement": 0.9}, {"eta": 0.0, "steps": 4, "agreement": 0.85},
            {"eta": 1.0, "steps": 2, "agreement": 0.3}, {"eta": 1.0, "steps": 4, "agreement": 0.4}]
    assert ddim.consistency_verdict(cons) == "reproduced"
    cons[0]["agreement"] = 0.5
    assert ddim.consistency_verdict(cons) == "partly reproduced"


def test_same_recipe_as_ddpm_2020(tmp_path):
    """ddim-2021's model is ddpm-2020's L_simple model: the same config, so the same cache
    entry, without either module importing the other."""
    ddpm = get_reproduction("ddpm-2020")
    assert CLS.DEPENDS == ("ddpm-2020",)
    for quick in (False, True):
        a = CLS(CLS.settings(quick), tmp_path).recipe()
        b = ddpm(ddpm.settings(quick), tmp_path).recipe("L_simple")
        assert config_hash(a) == config_hash(b)
    a = CLS(CLS.settings(True, CLS.SMOKE), tmp_path).recipe()
    b = ddpm(ddpm.settings(True, ddpm.SMOKE), tmp_path).recipe("L_simple")
    assert config_hash(a) == config_hash(b)  # the smoke runs share one model too
    assert CLS.settings(False).steps + (1000,) == (10, 20, 50, 100, 1000)


def test_smoke_run_writes_report_metrics_and_figures(smoke_run):
    out, metrics = smoke_run("ddim-2021")
    tiny = CLS.settings(True, CLS.SMOKE)
    for name in ("fid_vs_steps.png", "consistency.png", "reconstruction.png",
                 "interpolation.png"):  # fmt: skip
        assert (out / name).stat().st_size > 1000, name
    report = (out / "report.md").read_text(encoding="utf-8")
    for heading in ("## Scale", "## Claims checked", "## Sample quality against steps",
                    "## Sample consistency", "## Reconstruction", "## Interpolation"):  # fmt: skip
        assert heading in report
    saved = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert len(saved["claims"]) == 5
    assert all(c["verdict"] in VERDICTS for c in saved["claims"])
    m = saved["metrics"]
    runs = {(row["eta"], row["steps"]) for row in m["ddim"]}
    assert runs == {(0.0, 2), (0.0, 4), (0.0, 8), (1.0, 2), (1.0, 4), (1.0, 8)}
    assert all(row["fid"] >= 0 for row in m["ddim"])
    assert [row["steps"] for row in m["dpm_solver"]] == [3]
    assert [row["steps"] for row in m["reconstruction"]] == [3, 6]
    assert all(row["mse"] >= 0 for row in m["reconstruction"])
    assert {(row["eta"], row["steps"]) for row in m["consistency"]} == {
        (0.0, 2), (0.0, 4), (1.0, 2), (1.0, 4)
    }  # fmt: skip
    assert len(m["fid_seed_spread"]["fids"]) == tiny.fid_seeds
    assert m["n"] == tiny.n_samples and m["train"]["step"] == tiny.train_steps
    assert "slerp.confidence_inner" in m["interpolation"]
    assert metrics["metrics"].keys() == m.keys()
