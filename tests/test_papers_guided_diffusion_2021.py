"""The guided-diffusion-2021 reproduction (classifier guidance on digits): its verdict rules on
synthetic sweeps, its settings, and the smoke run's report, metrics and figures."""

from __future__ import annotations

import json

import pytest

from diffusio.papers import guided_diffusion_2021 as gd
from diffusio.papers.verdicts import NOT, PARTLY, REPRODUCED, VERDICTS

pytest.importorskip("sklearn")


def _row(value, accuracy, fid=10.0, precision=0.8, recall=0.8, n=400):
    return {"value": value, "accuracy": accuracy, "fid": fid, "precision": precision,
            "recall": recall, "n": n}  # fmt: skip


def test_verdicts_on_synthetic_sweeps():
    consistent = [_row(0, 0.1), _row(1, 0.6), _row(4, 0.97)]
    assert gd.consistency_verdict(consistent)[0] == REPRODUCED
    already = [_row(0, 0.1), _row(1, 0.95), _row(4, 0.99)]
    assert gd.consistency_verdict(already)[0] == PARTLY
    flat = [_row(0, 0.1), _row(1, 0.3), _row(4, 0.31)]
    assert gd.consistency_verdict(flat)[0] == NOT
    tradeoff = [_row(0, 0.1, precision=0.8, recall=0.8), _row(4, 0.9, precision=0.9, recall=0.5)]
    no_tradeoff = [_row(0, 0.1, recall=0.5), _row(4, 0.9, recall=0.6)]
    assert gd.tradeoff_verdict([tradeoff, tradeoff]) == REPRODUCED
    assert gd.tradeoff_verdict([tradeoff, no_tradeoff]) == PARTLY
    assert gd.tradeoff_verdict([no_tradeoff]) == NOT


def test_fid_verdict_counts_differences_beyond_the_seed_noise():
    # s = 1 -> s = 10 (nearest 8) by 5 FID: clear at std 2 (2 x 2 = 4), not at std 3
    curve = [_row(0, 0.1, fid=20.0), _row(1, 0.5, fid=18.0), _row(8, 0.9, fid=13.0)]
    assert gd.fid_verdict([curve, curve], 2.0) == REPRODUCED
    assert gd.fid_verdict([curve], 3.0) == PARTLY  # but 7 below the unguided FID: partly
    assert gd.fid_verdict([curve], 4.0) == NOT
    assert gd.fid_verdict([curve], float("nan")) == NOT  # unknown noise: nothing is clear
    flat = [_row(0, 0.1, fid=20.0), _row(1, 0.5, fid=18.0), _row(8, 0.9, fid=30.0)]
    assert gd.fid_verdict([curve, flat], 2.0) == PARTLY


def test_settings_differ_only_in_size():
    quick, default = gd.GuidedDiffusion2021.settings(True), gd.GuidedDiffusion2021.settings()
    assert quick.preset == default.preset == "digits-ddpm"
    assert {m for _, _, m in quick.samplers} == {m for _, _, m in default.samplers}
    assert {"mean", "score"} == {m for _, _, m in default.samplers}  # Alg. 1 and Alg. 2
    assert quick.n_samples is None and default.n_samples is None  # the floor's n = 359
    assert 1.0 in quick.scales and 0.0 in quick.scales
    assert quick.conditional_steps == 0 and default.conditional_steps == 2400


def test_smoke_run_writes_report_metrics_and_figures(smoke_run):
    out, metrics = smoke_run("guided-diffusion-2021")
    smoke = gd.GuidedDiffusion2021.settings(True, gd.GuidedDiffusion2021.SMOKE)
    for name in ("tradeoff.png", "samples.png", "classifier_accuracy.png"):
        assert (out / name).stat().st_size > 1000
    report = (out / "report.md").read_text(encoding="utf-8")
    for heading in ("## Scale", "## Claims checked", "## The noise-aware classifier",
                    "## Guidance scale sweep", "## Notes"):  # fmt: skip
        assert heading in report
    saved = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert saved["name"] == "guided-diffusion-2021" and saved["quick"] is True
    assert len(saved["claims"]) == 2 + 2 + 1  # per sampler, trade-off, FID, conditional
    assert all(c["verdict"] in VERDICTS for c in saved["claims"])
    m = saved["metrics"]
    assert len(m["curves"]) == 2
    for rows in m["curves"].values():
        assert [r["value"] for r in rows] == list(smoke.scales)
        for r in rows:
            assert r["n"] == 40 and 0 <= r["accuracy"] <= 1 and r["fid"] > 0
            assert {"precision", "recall", "fid_floor", "confidence"} <= r.keys()
    assert [r["value"] for r in m["conditional"]["rows"]] == list(smoke.conditional_scales)
    assert len(m["fid_seed_spread"]["fids"]) == 2 and len(m["clip_after_guidance"]) == 2
    assert len(m["classifier"]["accuracy_by_noise"]) == 11
    assert m["settings"]["train_steps"] == 20 and metrics["metrics"].keys() == m.keys()
