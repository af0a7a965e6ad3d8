"""The guided-diffusion-2021 reproduction (classifier guidance on digits): its claim rules on
synthetic numbers, the seeded settings and their statistics, its settings, and the smoke run's
report, metrics and figures."""

from __future__ import annotations

import json
import math

import pytest

from diffusio.image import scoring
from diffusio.papers import guided_diffusion_2021 as gd
from diffusio.papers.verdicts import MIN_SEEDS, NOT, REPRODUCED, RULES, VERDICTS

pytest.importorskip("sklearn")


def test_scale_rule_needs_consistency_a_clear_gain_and_an_inconsistent_scale_1():
    rule = gd.scale_one_not_enough
    assert rule(acc_one=0.84, se_one=0.019, acc_big=0.986, se_big=0.003) == REPRODUCED
    # the gain must exceed 2 se of the difference: se = hypot(0.03, 0.04) = 0.05
    assert rule(acc_one=0.81, se_one=0.03, acc_big=0.905, se_big=0.04) == NOT  # +0.095 < 2 se
    assert rule(acc_one=0.79, se_one=0.03, acc_big=0.902, se_big=0.04) == REPRODUCED  # 0.112
    assert rule(acc_one=0.92, se_one=0.01, acc_big=1.0, se_big=0.0) == NOT  # s = 1 consistent
    assert rule(acc_one=0.30, se_one=0.02, acc_big=0.85, se_big=0.01) == NOT  # never consistent
    assert rule(acc_one=0.5, se_one=math.nan, acc_big=1.0, se_big=0.0) == NOT  # unknown noise


def test_tradeoff_rule_needs_both_changes_clear():
    rule = gd.trades_recall_for_precision
    assert rule(precision_gain=0.03, precision_se=0.01, recall_drop=0.1, recall_se=0.02) == REPRODUCED
    # 2 se exactly is not beyond 2 se
    assert rule(precision_gain=0.02, precision_se=0.01, recall_drop=0.1, recall_se=0.02) == NOT
    assert rule(precision_gain=0.03, precision_se=0.01, recall_drop=0.03, recall_se=0.02) == NOT
    assert rule(precision_gain=-0.05, precision_se=0.01, recall_drop=0.3, recall_se=0.02) == NOT


def test_fid_rule_is_a_clear_win_or_nothing():
    # two seed means of 5 seeds with sd 3: se = sqrt(2) * 3 / sqrt(5) = 1.90, clear beyond 3.79
    se = math.sqrt(2) * 3 / math.sqrt(5)
    assert gd.improves_fid(fid_gain=3.9, se=se) == REPRODUCED
    assert gd.improves_fid(fid_gain=3.7, se=se) == NOT  # within the noise: not shown
    assert gd.improves_fid(fid_gain=-10.0, se=se) == NOT
    assert gd.improves_fid(fid_gain=10.0, se=math.nan) == NOT


def test_rules_are_registered_under_the_reproduction():
    names = {k for k in RULES if k.startswith("guided-diffusion-2021/")}
    assert names == {"guided-diffusion-2021/scale-1-not-enough",
                     "guided-diffusion-2021/trades-recall-for-precision",
                     "guided-diffusion-2021/guidance-improves-fid"}  # fmt: skip
    assert gd.improves_fid(fid_gain=1.0, se=0.1).rule == "guided-diffusion-2021/guidance-improves-fid"


def _row(value, seed, fid=10.0, accuracy=0.5, n=40):
    return {"value": value, "seed": seed, "fid": fid, "accuracy": accuracy, "precision": 0.8,
            "recall": 0.7, "n": n}  # fmt: skip


def test_seeded_setting_reuses_the_sweep_row_and_measures_the_rest():
    sweep = [_row(0.0, 1, fid=20.0), _row(2.0, 1, fid=12.0), _row(4.0, 1, fid=30.0)]
    calls = []

    def measure(value, seed):
        calls.append((value, seed))
        return _row(value, seed, fid=10.0 + seed / 1000)

    seeds = [1 + 1000 * k for k in range(MIN_SEEDS)]
    x = scoring.seeded_setting(measure, sweep, 0.0, seeds)
    assert calls == [(0.0, s) for s in seeds[1:]]  # the sweep's seed is not sampled again
    assert x["fid"] == pytest.approx([20.0, 11.001, 12.001, 13.001, 14.001]) and x["seeds"] == seeds
    assert x["n"] == 40 and set(x) == {"value", "seeds", "n", "fid", "accuracy", "precision",
                                       "recall"}  # fmt: skip
    json.dumps(x)
    assert gd.pick_scale(sweep) == 2.0  # lowest FID above 1
    assert gd.pick_scale([_row(0.0, 1), _row(1.0, 1)]) == 1.0  # none above 1: the largest


def test_seed_statistics_are_means_with_standard_errors_and_skip_none():
    a = {"fid": [10.0, 12.0, 14.0, 16.0, 18.0]}
    b = {"fid": [20.0, 22.0, None, 24.0, 26.0, 28.0]}  # a NaN read back from strict JSON
    m, se = gd.seed_stat(a, "fid")
    assert m == 14.0 and se == pytest.approx(math.sqrt(10.0 / 5))  # sd^2 = 10, n = 5
    d, dse = gd.seed_diff(b, a, "fid")
    assert d == pytest.approx(10.0) and dse == pytest.approx(math.sqrt(2.0 + 10.0 / 5))
    assert gd.plus_minus("fid", a, b) == "14.0 ± 1.4 -> 24.0 ± 1.4"
    assert math.isnan(gd.seed_stat({"fid": [None]}, "fid")[0])
    assert gd.shown(5.0, 1.0) == "clear" and gd.shown(1.0, 1.0) == "not shown (within noise)"
    assert gd.shown(-5.0, 1.0) == "the opposite, clearly"
    assert gd.shown(5.0, math.nan) == "not shown (noise unknown)"


def test_settings_differ_only_in_size():
    quick, default = gd.GuidedDiffusion2021.settings(True), gd.GuidedDiffusion2021.settings()
    assert quick.preset == default.preset == "digits-ddpm"
    assert {m for _, _, m in quick.samplers} == {m for _, _, m in default.samplers}
    assert {"mean", "score"} == {m for _, _, m in default.samplers}  # Alg. 1 and Alg. 2
    assert quick.n_samples is None and default.n_samples is None  # the floor's n = 359
    assert 1.0 in quick.scales and 0.0 in quick.scales
    assert quick.fid_seeds == default.fid_seeds == MIN_SEEDS
    assert quick.conditional_steps == 0 and default.conditional_steps == 2400
    assert all(n.verified or n.note for n in gd.GuidedDiffusion2021.PAPER_NUMBERS)


def test_fewer_seeds_than_the_minimum_are_refused(tmp_path):
    settings = gd.GuidedDiffusion2021.settings(True, {**gd.GuidedDiffusion2021.SMOKE,
                                                      "fid_seeds": MIN_SEEDS - 1})  # fmt: skip
    with pytest.raises(ValueError, match="fid_seeds"):
        gd.GuidedDiffusion2021.run(tmp_path, settings=settings, progress=False)


def test_smoke_run_writes_report_metrics_and_figures(smoke_run):
    out, metrics = smoke_run("guided-diffusion-2021")
    smoke = gd.GuidedDiffusion2021.settings(True, gd.GuidedDiffusion2021.SMOKE)
    for name in ("tradeoff.png", "samples.png", "classifier_accuracy.png"):
        assert (out / name).stat().st_size > 1000
    report = (out / "report.md").read_text(encoding="utf-8")
    for heading in ("## Scale", "## Claims checked", "## Paper numbers quoted",
                    "## The noise-aware classifier", "## Guidance scale sweep", "## Notes"):  # fmt: skip
        assert heading in report
    assert "{" not in report.split("## Claims checked")[1].split("## Paper numbers")[0]
    saved = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert saved["name"] == "guided-diffusion-2021" and saved["quick"] is True
    # per sampler: scale, trade-off, FID; then the conditional model's FID
    assert len(saved["claims"]) == 3 * 2 + 1
    assert all(c["verdict"] in VERDICTS and c["main"] for c in saved["claims"])
    assert all(c["rule"].startswith("guided-diffusion-2021/") for c in saved["claims"])
    m = saved["metrics"]
    assert len(m["curves"]) == 2 and m["curves"].keys() == m["seeded"].keys()
    for name, rows in m["curves"].items():
        assert [r["value"] for r in rows] == list(smoke.scales)
        for r in rows:
            assert r["n"] == 40 and 0 <= r["accuracy"] <= 1 and r["fid"] > 0
            assert {"precision", "recall", "fid_floor", "confidence"} <= r.keys()
        unguided, guided = m["seeded"][name]["unguided"], m["seeded"][name]["guided"]
        assert unguided["value"] == 0.0 and guided["value"] == gd.pick_scale(rows)
        assert len(unguided["fid"]) == len(guided["fid"]) == MIN_SEEDS
        assert unguided["seeds"][0] == smoke.sample_seed  # the sweep's own set, reused
        assert smoke.sample_seed not in guided["seeds"]  # the chosen scale: fresh seeds only
        assert unguided["fid"][0] == rows[0]["fid"]
    cond = m["conditional"]
    assert [r["value"] for r in cond["rows"]] == list(smoke.conditional_scales)
    assert cond["seeded"]["guided"]["value"] == 2.0  # nearest the paper's scale 1 in (0, 2)
    assert len(m["clip_after_guidance"]) == 2
    assert len(m["classifier"]["accuracy_by_noise"]) == 11
    assert m["settings"]["train_steps"] == 20 and metrics["metrics"].keys() == m.keys()
