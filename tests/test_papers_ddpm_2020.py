"""The ddpm-2020 reproduction: its building blocks (the x0 recorder, the memorisation check,
the verdicts) and a tiny end-to-end run that writes every file."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

pytest.importorskip("sklearn")

from diffusio.core.samplers import sample  # noqa: E402
from diffusio.core.steering import X0Recorder  # noqa: E402
from diffusio.papers import ddpm_2020 as ddpm  # noqa: E402
from diffusio.papers.report import VERDICTS  # noqa: E402
from diffusio.train.config import build_model  # noqa: E402

TINY_NET = {"channels": 8, "channel_mults": [1, 2], "num_res_blocks": 1,
            "attention_resolutions": [4], "num_heads": 2, "groups": 4}  # fmt: skip
TINY = replace(
    ddpm.SETTINGS["quick"],
    train_steps=3,
    net_options=TINY_NET,
    batch_size=8,
    n_samples=12,
    ancestral_steps=8,
    solver_steps=3,
    fid_seeds=2,
    bpd_n=2,
    frames=4,
    progressive_rows=3,
    grid_n=9,
)


def test_recorder_records_without_changing_the_chain():
    """The recorder sees x0 at the chosen evaluations and leaves the samples bit-identical."""
    model = build_model(ddpm.variant_config(TINY, ddpm.SIMPLE)).eval()
    recorder = X0Recorder(ddpm.frame_indices(6, 3), keep=2)
    plain = sample(model, (4, 1, 8, 8), "ddpm", 6, seed=1)
    recorded = sample(model, (4, 1, 8, 8), "ddpm", 6, seed=1, guidance=[recorder])
    assert torch.equal(plain, recorded)
    assert recorder.steps == [0, 2, 5] and len(recorder.x0) == 3
    assert recorder.x0[0].shape == (2, 1, 8, 8) and recorder.xt[0].shape == (2, 1, 8, 8)
    assert recorder.times == sorted(recorder.times, reverse=True)
    assert torch.allclose(recorder.x0[-1], recorded[:2])  # the last x0_hat is the sample


def test_verdicts():
    assert ddpm.quality_verdict(5.0, 9.0, 1.0) == "reproduced"
    assert ddpm.quality_verdict(5.0, 6.0, 1.0) == "partly reproduced"
    assert ddpm.quality_verdict(6.0, 5.0, 1.0) == "not reproduced"
    assert ddpm.likelihood_verdict(0.05, 0.01) == "reproduced"
    assert ddpm.likelihood_verdict(-0.05, 0.01) == "not reproduced"
    assert ddpm.floor_verdict(9.0, 8.5, 1.0) == "reproduced"
    assert ddpm.floor_verdict(9.0, 8.5, 0.2) == "partly reproduced"  # near the floor by copying
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


def test_settings_differ_only_in_size():
    quick, default = ddpm.SETTINGS["quick"], ddpm.SETTINGS["default"]
    assert quick.preset == default.preset == "digits-ddpm"
    assert default.ancestral_steps == 1000 and default.n_samples == default.bpd_n == 359
    assert quick.n_samples == 359  # FIDs always at the test split's size
    config = ddpm.variant_config(default, ddpm.VLB)
    assert config.weighting == "vlb" and config.loss_options == {"decoder": "discretized"}
    assert config.time_sampler == "discrete" and config.variance == "fixed"


def test_reproduce_writes_report_metrics_and_figures(tmp_path, monkeypatch):
    """The whole pipeline at a tiny scale: every file is written with the expected keys."""
    monkeypatch.setenv("DIFFUSIO_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    metrics = ddpm.reproduce(out, quick=True, settings=TINY, progress=False)
    for name in ("samples.png", "progressive.png", "loss_curves.png"):
        assert (out / name).stat().st_size > 1000, name
    report = (out / "report.md").read_text(encoding="utf-8")
    for heading in ("## Scale", "## Claims checked", "## Sample quality and likelihood",
                    "## Memorisation check", "## Progressive generation"):  # fmt: skip
        assert heading in report
    saved = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert saved["name"] == "ddpm-2020" and saved["quick"] is True
    assert len(saved["claims"]) == 4
    assert all(c["verdict"] in VERDICTS for c in saved["claims"])
    m = saved["metrics"]
    assert set(m["models"]) == {ddpm.SIMPLE, ddpm.VLB}
    for res in m["models"].values():
        for key in ("fid_ancestral", "fid_solver", "bpd", "bpd_se", "memorisation",
                    "progressive", "train"):  # fmt: skip
            assert key in res
        assert res["bpd"] > 0 and res["bpd_n"] == TINY.bpd_n
        assert res["train"]["step"] == TINY.train_steps
        assert len(res["progressive"]) == TINY.frames
    assert m["n"] == TINY.n_samples and m["fid_floor"] > 0
    assert len(m["fid_seed_spread"]["fids"]) == TINY.fid_seeds
    assert metrics["metrics"].keys() == m.keys()
    assert sorted(p.name.split("-")[0] for p in (out / "models").iterdir()) == ["L_simple", "L_vlb"]
