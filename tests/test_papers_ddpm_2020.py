"""The ddpm-2020 reproduction: its verdicts and recipes, and the shared smoke run's files and
metrics (the x0 trace is tested in test_image_progressive)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("sklearn")

from diffusio.metrics.stats import NoiseFloor  # noqa: E402
from diffusio.papers import ddpm_2020 as ddpm  # noqa: E402
from diffusio.papers.verdicts import VERDICTS, win_verdict  # noqa: E402

CLS = ddpm.DDPM2020


def smoke_settings():
    return CLS.settings(True, CLS.SMOKE)


def test_verdicts():
    assert win_verdict(9.0 - 5.0, 1.0) == "reproduced"  # L_vlb FID - L_simple FID
    assert win_verdict(6.0 - 5.0, 1.0) == "partly reproduced"
    assert win_verdict(5.0 - 6.0, 1.0) == "not reproduced"
    floor = NoiseFloor(8.5, n=359)
    assert ddpm.quality_claim_verdict(9.0, floor, 1.0) == "reproduced"
    assert ddpm.quality_claim_verdict(9.0, floor, 0.2) == "partly reproduced"  # by copying
    assert ddpm.quality_claim_verdict(16.0, floor, 1.0) == "partly reproduced"
    assert ddpm.quality_claim_verdict(18.0, floor, 1.0) == "not reproduced"
    rows = [{"t": 1000, "agreement": 0.2, "rms_fraction": 1.0},
            {"t": 500, "agreement": 0.95, "rms_fraction": 0.5},
            {"t": 250, "agreement": 0.97, "rms_fraction": 0.1},
            {"t": 1, "agreement": 1.0, "rms_fraction": 0.0}]  # fmt: skip
    assert ddpm.coarse_peak(rows)["t"] == 500  # the last frame and the fine ones do not count
    assert ddpm.progressive_verdict(rows) == "reproduced"
    rows[1]["agreement"] = 0.6
    assert ddpm.progressive_verdict(rows) == "partly reproduced"
    rows[0]["agreement"] = 0.7  # decided from the start: nothing progressive to see
    assert ddpm.progressive_verdict(rows) == "not reproduced"


def test_settings_differ_only_in_size(tmp_path):
    quick, default = CLS.settings(True), CLS.settings(False)
    assert quick.preset == default.preset == "digits-ddpm"
    assert default.ancestral_steps == 1000 and default.n_samples == default.bpd_n == 359
    assert quick.n_samples == 359  # FIDs always at the test split's size
    config = CLS(default, tmp_path).recipe(ddpm.VLB)
    assert config.weighting == "vlb" and config.loss_options == {"decoder": "discretized"}
    assert config.time_sampler == "discrete" and config.variance == "fixed"


def test_smoke_run_writes_report_metrics_and_figures(smoke_run):
    out, metrics = smoke_run("ddpm-2020")
    tiny = smoke_settings()
    for name in ("samples.png", "progressive.png", "loss_curves.png"):
        assert (out / name).stat().st_size > 1000, name
    report = (out / "report.md").read_text(encoding="utf-8")
    for heading in ("## Scale", "## Claims checked", "## Sample quality and likelihood",
                    "## Memorisation check", "## Progressive generation", "## Notes"):  # fmt: skip
        assert heading in report
    saved = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert len(saved["claims"]) == 4
    assert all(c["verdict"] in VERDICTS for c in saved["claims"])
    m = saved["metrics"]
    assert set(m["models"]) == {ddpm.SIMPLE, ddpm.VLB}
    for res in m["models"].values():
        for key in ("fid_ancestral", "fid_solver", "bpd", "bpd_se", "memorisation",
                    "progressive", "train"):  # fmt: skip
            assert key in res
        assert res["bpd"] > 0 and res["bpd_n"] == tiny.bpd_n
        assert res["train"]["step"] == tiny.train_steps
        assert len(res["progressive"]) == tiny.frames
    assert m["n"] == tiny.n_samples and m["fid_floor"] > 0
    assert len(m["fid_seed_spread"]["fids"]) == tiny.fid_seeds
    assert {"training", "evaluate L_simple", "evaluate L_vlb"} <= set(m["stage_seconds"])
    assert metrics["metrics"].keys() == m.keys()
    run_dirs = {res["train"]["run_dir"].rsplit("/", 1)[-1].split("-")[0]
                for res in m["models"].values()}  # fmt: skip
    assert run_dirs == {"L_simple", "L_vlb"}
