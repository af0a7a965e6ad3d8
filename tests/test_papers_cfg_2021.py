"""The cfg-2021 reproduction (classifier-free guidance on digits): the choice of the best w, the
classifier-guidance curve from a sibling guided-diffusion-2021 run or measured in place, and
tiny end-to-end runs."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from diffusio.papers import cfg_2021 as cfg
from diffusio.papers.report import VERDICTS

pytest.importorskip("sklearn")

TINY_NET = {
    "channels": 8, "channel_mults": [1, 2], "num_res_blocks": 1, "attention_resolutions": [4],
    "num_heads": 2, "groups": 4,
}  # fmt: skip
TINY = replace(
    cfg.SETTINGS["quick"],
    train_steps=20,
    net_options=TINY_NET,
    batch_size=32,
    classifier_steps=20,
    classifier_options={"channels": 8, "num_heads": 2, "groups": 4},
    weights=(0.0, 0.5, 2.0),
    cg_scales=(0.0, 2.0),
    sampler_steps=4,
    n_samples=40,
    fid_seeds=2,
    grid_weights=(0.0, 2.0),
)


def _row(value, accuracy, fid):
    return {"value": value, "accuracy": accuracy, "fid": fid, "n": 359}


def test_best_weight_respects_the_fid_budget():
    rows = [_row(0, 0.9, 10.0), _row(0.5, 0.96, 12.0), _row(1, 0.99, 14.9), _row(4, 1.0, 40.0)]
    assert cfg.best_weight(rows)["value"] == 1  # w = 4 is more accurate but 4x the FID
    tie = [_row(0, 0.9, 10.0), _row(0.5, 0.99, 13.0), _row(1, 0.99, 12.0)]
    assert cfg.best_weight(tie)["value"] == 1  # equal accuracy: the lower FID
    assert cfg.best_at_accuracy(rows, 0.95)["value"] == 0.5
    assert cfg.best_at_accuracy(rows, 1.01) is None


def test_settings_and_config():
    quick, default = cfg.SETTINGS["quick"], cfg.SETTINGS["default"]
    assert quick.preset == default.preset == "digits-ddpm-cond"
    assert quick.p_uncond == default.p_uncond == 0.1  # the paper's best is 0.1 or 0.2
    assert quick.weights[0] == 0.0 and default.weights[0] == 0.0  # w = 0: the unguided model
    config = cfg.cfg_config(replace(TINY, p_uncond=0.2))
    assert config.class_conditional and config.class_dropout == 0.2
    with pytest.raises(ValueError, match="p_uncond"):
        cfg.reproduce("unused", settings=replace(TINY, p_uncond=0.0), progress=False)


def _check_run(out, source: str) -> dict:
    for name in ("tradeoff.png", "samples.png", "report.md", "metrics.json"):
        assert (out / name).stat().st_size > 1000
    report = (out / "report.md").read_text(encoding="utf-8")
    for heading in ("## Scale", "## Claims checked", "## Guidance weight sweep",
                    "## Classifier-free vs classifier guidance", "## Notes"):  # fmt: skip
        assert heading in report
    saved = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert saved["name"] == "cfg-2021"
    assert len(saved["claims"]) == 4
    assert all(c["verdict"] in VERDICTS for c in saved["claims"])
    m = saved["metrics"]
    assert [r["value"] for r in m["cfg"]] == list(TINY.weights)
    assert all(r["n"] == 40 and r["kind"] == "cfg" for r in m["cfg"])
    assert m["best_w"]["w"] in TINY.weights and isinstance(m["best_w"]["target_met"], bool)
    assert m["classifier_guidance"]["source"] == source
    return m


def test_reproduce_measures_classifier_guidance_without_a_sibling(tmp_path):
    out = tmp_path / "cfg-2021"
    cfg.reproduce(out, quick=True, settings=TINY, progress=False)
    m = _check_run(out, "measured here")
    rows = m["classifier_guidance"]["rows"]
    assert [r["value"] for r in rows] == list(TINY.cg_scales)
    assert all(r["kind"] == "cg" for r in rows)


def test_reproduce_reads_the_sibling_guided_diffusion_run(tmp_path):
    sibling = tmp_path / "guided-diffusion-2021"
    sibling.mkdir()
    rows = [
        {"value": s, "fid": 20.0 + s, "accuracy": min(0.2 * s + 0.1, 1.0), "precision": 0.8,
         "recall": 0.8 - 0.05 * s, "n": 40, "fid_floor": 9.0, "curve": "Alg. 2"}
        for s in (0.0, 1.0, 4.0)
    ]  # fmt: skip
    saved = {"quick": True, "metrics": {"curves": {"Alg. 2": rows}, "fid_floor": 9.0}}
    (sibling / "metrics.json").write_text(json.dumps(saved), encoding="utf-8")
    out = tmp_path / "cfg-2021"
    cfg.reproduce(out, quick=True, settings=TINY, progress=False)
    m = _check_run(out, "../guided-diffusion-2021/metrics.json")
    assert "Alg. 2 (guided-diffusion-2021)" in json.dumps(json.loads(
        (out / "metrics.json").read_text(encoding="utf-8"))["claims"])  # fmt: skip
    assert not (out / "models" / "noisy-classifier").exists()
    assert not any(p.name.startswith("noisy-classifier") for p in (out / "models").iterdir())
    assert m["fid_floor"] > 0


def test_sibling_curves_need_the_same_sample_count(tmp_path):
    sibling = tmp_path / "guided-diffusion-2021"
    sibling.mkdir()
    rows = [{"value": 0.0, "fid": 20.0, "accuracy": 0.1, "precision": 0.8, "recall": 0.8, "n": 359}]
    saved = {"quick": False, "metrics": {"curves": {"Alg. 1": rows}, "fid_floor": 8.4}}
    (sibling / "metrics.json").write_text(json.dumps(saved), encoding="utf-8")
    out = tmp_path / "cfg-2021"
    assert cfg.sibling_curves(out, 359)["curves"] == {"Alg. 1": rows}
    assert cfg.sibling_curves(out, 40) is None
    (sibling / "metrics.json").write_text("{not json", encoding="utf-8")
    assert cfg.sibling_curves(out, 359) is None
    assert cfg.sibling_curves(tmp_path / "elsewhere" / "cfg-2021", 359) is None
