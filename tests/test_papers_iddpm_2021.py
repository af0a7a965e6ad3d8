"""The iddpm-2021 reproduction: its claim rules on synthetic numbers (tolerances from the
measured noise, the shared 2-se rule), its recipes, and the shared smoke run's files and
metrics."""

from __future__ import annotations

import json
import math

import pytest

pytest.importorskip("sklearn")

from diffusio.metrics.stats import difference_se  # noqa: E402
from diffusio.papers import iddpm_2021 as iddpm  # noqa: E402
from diffusio.papers.verdicts import NOT, REPRODUCED, SIGNIFICANCE, VERDICTS  # noqa: E402

CLS = iddpm.IDDPM2021


def test_bound_rules_need_a_clear_paired_gain():
    for rule in (iddpm.cosine_better_bound, iddpm.hybrid_better_bound,
                 iddpm.importance_better_bound):  # fmt: skip
        assert rule(gain=0.3, se=0.05) == REPRODUCED
        assert rule(gain=0.09, se=0.05) == NOT  # right direction, within 2 se: not shown
        assert rule(gain=-0.3, se=0.05) == NOT
        assert rule(gain=0.3, se=math.nan) == NOT  # unknown noise shows nothing


def test_fid_tolerance_is_the_seed_noise():
    """'No worse' passes up to SIGNIFICANCE se of the difference (both seed spreads) and fails
    beyond it; with one seed (se unknown) it cannot pass."""
    se, se_ref = 0.6, 0.8
    edge = SIGNIFICANCE * difference_se(se, se_ref)  # = 2.0 FID
    for rule in (iddpm.hybrid_keeps_fid, iddpm.learned_keeps_fid):
        assert rule(fid=10.0 + 0.95 * edge, se=se, fid_ref=10.0, se_ref=se_ref) == REPRODUCED
        assert rule(fid=10.0 + 1.05 * edge, se=se, fid_ref=10.0, se_ref=se_ref) == NOT
        assert rule(fid=5.0, se=se, fid_ref=10.0, se_ref=se_ref) == REPRODUCED  # better is fine
        assert rule(fid=10.0, se=math.nan, fid_ref=10.0, se_ref=se_ref) == NOT
    # the old 10% tolerance would have failed 11.3 vs 10.0; the seed noise does not
    assert iddpm.hybrid_keeps_fid(fid=11.3, se=0.7, fid_ref=10.0, se_ref=0.7) == REPRODUCED


def test_learned_beats_fixed_needs_a_clear_win():
    edge = SIGNIFICANCE * difference_se(0.6, 0.6)
    beats = iddpm.learned_beats_fixed
    assert beats(fid=12.0, se=0.6, fid_ref=12.0 + 1.05 * edge, se_ref=0.6) == REPRODUCED
    assert beats(fid=12.0, se=0.6, fid_ref=12.0 + 0.95 * edge, se_ref=0.6) == NOT
    assert beats(fid=15.0, se=0.6, fid_ref=12.0, se_ref=0.6) == NOT


def test_curve_noise_rule_and_its_error():
    assert iddpm.importance_smoother(noise=0.02, se=0.003, noise_ref=0.2, se_ref=0.03) == REPRODUCED
    assert iddpm.importance_smoother(noise=0.18, se=0.03, noise_ref=0.2, se_ref=0.03) == NOT
    curve = [1.0, 1.1] * 20  # 40 points: the second half has m = 20
    noise, se = iddpm.curve_noise_se(curve)
    assert noise > 0 and se == pytest.approx(noise / math.sqrt(2 * 19))


def test_recipes_keep_their_settings(tmp_path):
    repro = CLS(CLS.settings(True, CLS.SMOKE), tmp_path)
    config = repro.recipe(iddpm.IMPORTANCE)
    assert config.time_sampler == "importance" and config.variance == "learned"
    assert config.process_options == {"num_steps": 50} and config.batch_size == 8
    assert CLS(CLS.settings(False), tmp_path).recipe(iddpm.LINEAR).process_options != {
        "num_steps": 50}
    default = CLS.settings(False)
    assert default.fid_seeds >= 5 and default.full_steps == default.timesteps
    assert default.full_steps // default.table_steps == 10  # "an order of magnitude fewer"


def test_smoke_run_writes_report(smoke_run):
    out, metrics = smoke_run("iddpm-2021")
    for name in ("report.md", "metrics.json", "schedules.png", "vlb_curves.png",
                 "fewer_steps.png", "samples.png"):  # fmt: skip
        assert (out / name).is_file(), name
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["metrics"]["n"] == 12 and len(saved["claims"]) == 7
    assert all(c["verdict"] in VERDICTS for c in saved["claims"])
    assert all(c["rule"].startswith("iddpm-2021/") for c in saved["claims"])
    models = saved["metrics"]["models"]
    assert set(models) == set(iddpm.VARIANTS)
    assert all(m["bpd"] > 0 and "bpd_images" not in m for m in models.values())
    assert set(models[iddpm.FIXED]["fid"]) == {"posterior", "beta"}
    s = CLS.settings(True, CLS.SMOKE)
    learned = models[iddpm.HYBRID]["fid"]["learned"]
    assert set(learned) == {str(k) for k in (s.table_steps, *s.few_steps, s.full_steps)}
    assert len(learned[str(s.table_steps)]["fids"]) == s.fid_seeds
    assert set(models[iddpm.LINEAR]["fid"]["posterior"]) == {str(s.table_steps)}
    sched = metrics["metrics"]["schedules"]  # always the 1000-step tables
    assert sched["vp-linear"]["steps_below_1pct_signal"] > sched["vp-cosine"][
        "steps_below_1pct_signal"]
