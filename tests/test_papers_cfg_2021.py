"""The cfg-2021 reproduction (classifier-free guidance on digits): the choice of the best w,
the shared conditional recipe, the classifier-guidance curve from guided-diffusion-2021's
cached results or measured in place, and the smoke run."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from diffusio.io import write_json_atomic
from diffusio.papers import cfg_2021 as cfg
from diffusio.papers import guided_diffusion_2021 as gd
from diffusio.papers.base import results_path
from diffusio.papers.runs import config_hash
from diffusio.papers.verdicts import VERDICTS

pytest.importorskip("sklearn")

CFG = cfg.CFG2021


def _row(value, accuracy, fid):
    return {"value": value, "accuracy": accuracy, "fid": fid, "n": 359}


def test_best_weight_respects_the_fid_budget():
    rows = [_row(0, 0.9, 10.0), _row(0.5, 0.96, 12.0), _row(1, 0.99, 14.9), _row(4, 1.0, 40.0)]
    assert cfg.best_weight(rows)["value"] == 1  # w = 4 is more accurate but 4x the FID
    tie = [_row(0, 0.9, 10.0), _row(0.5, 0.99, 13.0), _row(1, 0.99, 12.0)]
    assert cfg.best_weight(tie)["value"] == 1  # equal accuracy: the lower FID
    assert cfg.best_at_accuracy(rows, 0.95)["value"] == 0.5
    assert cfg.best_at_accuracy(rows, 1.01) is None


def test_settings_and_the_shared_conditional_recipe():
    quick, default = CFG.settings(True), CFG.settings()
    assert quick.preset == default.preset == "digits-ddpm-cond"
    assert quick.p_uncond == default.p_uncond == 0.1  # the paper's best is 0.1 or 0.2
    assert quick.weights[0] == 0.0 and default.weights[0] == 0.0  # w = 0: the unguided model
    assert CFG.DEPENDS == ("guided-diffusion-2021",)
    config = cfg.config(replace(default, p_uncond=0.2))
    assert config.class_conditional and config.class_dropout == 0.2
    # the default runs train one conditional model for both papers (one model-cache entry)
    guided = gd.GuidedDiffusion2021(gd.GuidedDiffusion2021.settings(), "unused")
    shared = guided.config("digits-ddpm-cond", guided.s.conditional_steps)
    assert config_hash(cfg.config(default)) == config_hash(shared)


def test_guided_curves_need_the_same_sample_count():
    rows = [{"value": 0.0, "fid": 20.0, "accuracy": 0.1, "n": 359}]
    saved = {"quick": False, "metrics": {"curves": {"Alg. 1": rows}, "fid_floor": 8.4}}
    assert cfg.guided_curves(saved, 359) == {"quick": False, "curves": {"Alg. 1": rows},
                                             "floor": 8.4}  # fmt: skip
    assert cfg.guided_curves(saved, 40) is None
    assert cfg.guided_curves(None, 359) is None
    assert cfg.guided_curves({"metrics": {}}, 359) is None


def _check(out) -> dict:
    for name in ("tradeoff.png", "samples.png", "report.md", "metrics.json"):
        assert (out / name).stat().st_size > 1000
    report = (out / "report.md").read_text(encoding="utf-8")
    for heading in ("## Scale", "## Claims checked", "## Guidance weight sweep",
                    "## Classifier-free vs classifier guidance", "## Notes"):  # fmt: skip
        assert heading in report
    saved = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert saved["name"] == "cfg-2021" and len(saved["claims"]) == 4
    assert all(c["verdict"] in VERDICTS for c in saved["claims"])
    m = saved["metrics"]
    weights = list(CFG.SMOKE["weights"])
    assert [r["value"] for r in m["cfg"]] == weights
    assert all(r["n"] == 40 and r["kind"] == "cfg" for r in m["cfg"])
    assert m["best_w"]["w"] in weights and isinstance(m["best_w"]["target_met"], bool)
    return saved


def test_smoke_run_measures_classifier_guidance_without_guided_results(smoke_run):
    out, _ = smoke_run("cfg-2021")
    m = _check(out)["metrics"]
    assert m["classifier_guidance"]["source"] == "measured here"
    rows = m["classifier_guidance"]["rows"]
    assert [r["value"] for r in rows] == list(CFG.SMOKE["cg_scales"])
    assert all(r["kind"] == "cg" for r in rows)


def test_reads_guided_diffusion_results_from_the_results_cache(smoke_run, tmp_path):
    smoke_run("cfg-2021")  # the session's smoke run measures here, whatever runs first
    rows = [
        {"value": s, "fid": 20.0 + s, "accuracy": min(0.2 * s + 0.1, 1.0), "precision": 0.8,
         "recall": 0.8 - 0.05 * s, "n": 40, "fid_floor": 9.0, "curve": "Alg. 2"}
        for s in (0.0, 1.0, 4.0)
    ]  # fmt: skip
    path = results_path("guided-diffusion-2021", gd.GuidedDiffusion2021.settings(True))
    write_json_atomic(path, {"quick": True, "metrics": {"curves": {"Alg. 2": rows},
                                                        "fid_floor": 9.0}})  # fmt: skip
    try:
        CFG.run(tmp_path, quick=True, settings=CFG.settings(True, CFG.SMOKE), progress=False)
    finally:
        path.unlink()
    saved = _check(tmp_path)
    assert saved["metrics"]["classifier_guidance"] == {"source": "guided-diffusion-2021",
                                                       "quick": True}  # fmt: skip
    assert "Alg. 2 (guided-diffusion-2021)" in json.dumps(saved["claims"])
    report = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "read from the results cache" in report and "was measured here" not in report


def test_p_uncond_must_be_a_probability(tmp_path):
    with pytest.raises(ValueError, match="p_uncond"):
        CFG.run(tmp_path, settings=replace(CFG.settings(True, CFG.SMOKE), p_uncond=0.0),
                progress=False)  # fmt: skip
