"""The cfg-2021 reproduction (classifier-free guidance on digits): its claim rules on synthetic
numbers, the choice of the small w, the shared conditional recipe, the classifier-guidance
numbers from guided-diffusion-2021's cached results (labelled as borrowed) or measured in place,
and the smoke run."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

from diffusio.io import write_json_atomic
from diffusio.papers import cfg_2021 as cfg
from diffusio.papers import guided_diffusion_2021 as gd
from diffusio.papers.base import results_path
from diffusio.papers.runs import config_hash
from diffusio.papers.verdicts import MIN_SEEDS, NOT, REPRODUCED, VERDICTS

pytest.importorskip("sklearn")

CFG = cfg.CFG2021


def _row(value, accuracy, fid):
    return {"value": value, "accuracy": accuracy, "fid": fid, "n": 359}


def test_trade_off_needs_all_three_changes_clear():
    clear = dict(accuracy_gain=0.015, accuracy_se=0.003, fid_rise=25.0, fid_se=2.0,
                 recall_drop=0.2, recall_se=0.02)  # fmt: skip
    assert cfg.trade_off(**clear) == REPRODUCED
    # each change alone within 2 se of its difference sinks the claim
    assert cfg.trade_off(**{**clear, "accuracy_gain": 0.006}) == NOT
    assert cfg.trade_off(**{**clear, "fid_rise": 4.0}) == NOT
    assert cfg.trade_off(**{**clear, "recall_drop": -0.1}) == NOT
    assert cfg.trade_off(**{**clear, "fid_se": math.nan}) == NOT


def test_small_w_rule_and_the_target_that_w0_cannot_meet():
    # 5 seeds a side with sd 1.5: se of the difference sqrt(2) * 1.5 / sqrt(5) = 0.95
    se = math.sqrt(2) * 1.5 / math.sqrt(5)
    assert cfg.small_w_improves_fid(fid_gain=2.0, se=se) == REPRODUCED
    assert cfg.small_w_improves_fid(fid_gain=1.8, se=se) == NOT  # within the noise: not shown
    assert cfg.target(accuracy_gain=0.01, accuracy_se=0.003, fid_ratio=1.4) == REPRODUCED
    assert cfg.target(accuracy_gain=0.0, accuracy_se=0.0, fid_ratio=1.0) == NOT  # w = 0 itself
    assert cfg.target(accuracy_gain=0.005, accuracy_se=0.003, fid_ratio=1.0) == NOT
    assert cfg.target(accuracy_gain=0.05, accuracy_se=0.003, fid_ratio=1.6) == NOT  # budget


def test_matching_classifier_guidance_fails_when_clearly_worse_or_unknown():
    rule = cfg.matches_classifier_guidance
    assert rule(fid_excess=1.5, fid_se=1.0, accuracy_deficit=0.0, accuracy_se=0.01) == REPRODUCED
    assert rule(fid_excess=-5.0, fid_se=1.0, accuracy_deficit=-0.1, accuracy_se=0.01) == REPRODUCED
    assert rule(fid_excess=2.1, fid_se=1.0, accuracy_deficit=0.0, accuracy_se=0.01) == NOT
    assert rule(fid_excess=0.0, fid_se=1.0, accuracy_deficit=0.03, accuracy_se=0.01) == NOT
    assert rule(fid_excess=0.0, fid_se=math.nan, accuracy_deficit=0.0, accuracy_se=0.01) == NOT


def test_the_small_w_is_chosen_in_0_1_on_the_sweep():
    rows = [_row(0, 0.9, 10.0), _row(0.5, 0.96, 9.0), _row(1, 0.99, 8.5), _row(4, 1.0, 7.0)]
    assert cfg.pick_small(rows) == 1  # w = 4 has a lower FID but is not small
    assert cfg.pick_small([_row(0, 0.9, 10.0), _row(2, 1.0, 20.0)]) == 2  # none in (0, 1]


def test_settings_and_the_shared_conditional_recipe():
    quick, default = CFG.settings(True), CFG.settings()
    assert quick.preset == default.preset == "digits-ddpm-cond"
    assert quick.p_uncond == default.p_uncond == 0.1  # the paper's best is 0.1 or 0.2
    assert quick.weights[0] == 0.0 and default.weights[0] == 0.0  # w = 0: the unguided model
    assert quick.fid_seeds == default.fid_seeds == MIN_SEEDS
    assert CFG.DEPENDS == ("guided-diffusion-2021",)
    config = cfg.config(replace(default, p_uncond=0.2))
    assert config.class_conditional and config.class_dropout == 0.2
    # the default runs train one conditional model for both papers (one model-cache entry)
    guided = gd.GuidedDiffusion2021(gd.GuidedDiffusion2021.settings(), "unused")
    shared = guided.config("digits-ddpm-cond", guided.s.conditional_steps)
    assert config_hash(cfg.config(default)) == config_hash(shared)


def _seeded(value, fid):
    return {"value": value, "seeds": [1, 1001], "n": 359, "fid": [fid, fid + 1.0],
            "accuracy": [0.99, 0.98], "precision": [0.9, 0.9], "recall": [0.8, 0.8]}


def test_guided_curves_need_the_same_sample_count_and_seeded_settings():
    rows = [{"value": 0.0, "fid": 20.0, "accuracy": 0.1, "n": 359}]
    seeded = {"unguided": _seeded(0.0, 20.0), "guided": _seeded(2.0, 12.0)}
    saved = {"quick": False, "metrics": {"curves": {"Alg. 1": rows}, "fid_floor": 8.4,
                                         "seeded": {"Alg. 1": seeded}}}  # fmt: skip
    expected = {"quick": False, "curves": {"Alg. 1": rows}, "floor": 8.4,
                "seeded": {"Alg. 1": seeded["guided"]}}  # fmt: skip
    assert cfg.guided_curves(saved, 359) == expected
    assert cfg.guided_curves(saved, 40) is None
    assert cfg.guided_curves(None, 359) is None
    assert cfg.guided_curves({"metrics": {}}, 359) is None
    old = {"quick": False, "metrics": {"curves": {"Alg. 1": rows}, "fid_floor": 8.4}}
    assert cfg.guided_curves(old, 359) is None  # results from before the seeded settings
    # the results cache is strict JSON: a NaN reads back as None, and becomes nan here
    nan_row = [{"value": 0.0, "fid": None, "accuracy": 0.1, "n": 359}]
    got = cfg.guided_curves({**saved, "metrics": {**saved["metrics"],
                                                  "curves": {"Alg. 1": nan_row}}}, 359)  # fmt: skip
    assert math.isnan(got["curves"]["Alg. 1"][0]["fid"])
    assert cfg.guided_curves({**saved, "metrics": {**saved["metrics"], "fid_floor": None}},
                             359) is None  # fmt: skip


def _check(out) -> dict:
    for name in ("tradeoff.png", "samples.png", "report.md", "metrics.json"):
        assert (out / name).stat().st_size > 1000
    report = (out / "report.md").read_text(encoding="utf-8")
    for heading in ("## Scale", "## Claims checked", "## Paper numbers quoted",
                    "## Guidance weight sweep", "## Classifier-free vs classifier guidance",
                    "## Notes"):  # fmt: skip
        assert heading in report
    assert "*(ours)*" in report  # the target is ours, not the paper's
    saved = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert saved["name"] == "cfg-2021" and len(saved["claims"]) == 4
    assert all(c["verdict"] in VERDICTS for c in saved["claims"])
    assert [c["main"] for c in saved["claims"]] == [True, True, True, False]
    assert saved["claims"][-1]["rule"] == "cfg-2021/target-guidance-buys-accuracy"
    m = saved["metrics"]
    weights = list(CFG.SMOKE["weights"])
    assert [r["value"] for r in m["cfg"]] == weights
    assert all(r["n"] == 40 and r["kind"] == "cfg" for r in m["cfg"])
    assert {k: m["seeded"][k]["value"] for k in ("w0", "small", "top")} == {
        "w0": 0.0, "small": 0.5, "top": 2.0}
    assert all(len(x["fid"]) == MIN_SEEDS for x in m["seeded"].values())
    assert 1 not in m["seeded"]["small"]["seeds"]  # chosen on the sweep's seed: fresh seeds
    assert m["target"]["w"] == 0.5 and isinstance(m["target"]["met"], bool)
    return saved


def test_smoke_run_measures_classifier_guidance_without_guided_results(smoke_run):
    out, _ = smoke_run("cfg-2021")
    saved = _check(out)
    m = saved["metrics"]
    assert m["classifier_guidance"]["source"] == "measured here" and not saved["borrowed"]
    rows = m["classifier_guidance"]["rows"]
    assert [r["value"] for r in rows] == list(CFG.SMOKE["cg_scales"])
    assert all(r["kind"] == "cg" for r in rows)
    assert len(m["classifier_guidance"]["seeded"]["fid"]) == MIN_SEEDS
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "[from" not in report and "Every number below was measured by this run;" in report


def test_reads_guided_diffusion_results_from_the_results_cache(smoke_run, tmp_path):
    smoke_run("cfg-2021")  # the session's smoke run measures here, whatever runs first
    rows = [
        {"value": s, "fid": 20.0 + s, "accuracy": min(0.2 * s + 0.1, 1.0), "precision": 0.8,
         "recall": 0.8 - 0.05 * s, "n": 40, "fid_floor": 9.0, "curve": "Alg. 2"}
        for s in (0.0, 1.0, 4.0)
    ]  # fmt: skip
    rows[1]["fid"] = None  # a NaN written by the strict-JSON cache
    seeded = {"unguided": {**_seeded(0.0, 20.0), "n": 40},
              "guided": {**_seeded(4.0, 24.0), "n": 40, "fid": [24.0, None, 25.0]}}  # fmt: skip
    path = results_path("guided-diffusion-2021", gd.GuidedDiffusion2021.settings(True))
    write_json_atomic(path, {"quick": True, "metrics": {"curves": {"Alg. 2": rows},
                                                        "fid_floor": 9.0,
                                                        "seeded": {"Alg. 2": seeded}}})  # fmt: skip
    try:
        CFG.run(tmp_path, quick=True, settings=CFG.settings(True, CFG.SMOKE), progress=False)
    finally:
        path.unlink()
    saved = _check(tmp_path)
    assert saved["metrics"]["classifier_guidance"] == {
        "source": "guided-diffusion-2021", "quick": True,
        "compared_with": "Alg. 2 [from guided-diffusion-2021]"}  # fmt: skip
    assert "Alg. 2 [from guided-diffusion-2021]" in json.dumps(saved["claims"])
    assert "guided-diffusion-2021" in saved["borrowed"]
    report = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "read from the results cache" in report and "was measured here" not in report
    assert "except those labelled [from NAME]" in report  # the header says what is borrowed


def test_p_uncond_must_be_a_probability(tmp_path):
    with pytest.raises(ValueError, match="p_uncond"):
        CFG.run(tmp_path, settings=replace(CFG.settings(True, CFG.SMOKE), p_uncond=0.0),
                progress=False)  # fmt: skip
