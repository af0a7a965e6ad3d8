"""The ddpm-2020 reproduction: its claim rules on synthetic numbers (tolerances from the rules'
own arithmetic: 2 standard errors, sqrt(2) for a difference of two equal errors, the binomial
error of a class agreement), its recipes, and the shared smoke run's files and metrics (the x0
trace is tested in test_image_progressive)."""

from __future__ import annotations

import json
import math

import pytest

pytest.importorskip("sklearn")

from diffusio.metrics.stats import mean_se  # noqa: E402
from diffusio.papers import ddpm_2020 as ddpm  # noqa: E402
from diffusio.papers.verdicts import MIN_SEEDS, NOT, PARTLY, REPRODUCED, VERDICTS  # noqa: E402

CLS = ddpm.DDPM2020
NAN = math.nan


def smoke_settings():
    return CLS.settings(True, CLS.SMOKE)


def test_simple_beats_vlb_needs_the_difference_beyond_2_sqrt2_se():
    rule = ddpm.simple_beats_vlb
    # two se of 1: the difference's se is sqrt(2), a clear win needs more than 2 sqrt(2) = 2.83
    assert rule(fid_simple=10.0, se_simple=1.0, fid_vlb=12.9, se_vlb=1.0) == REPRODUCED
    assert rule(fid_simple=10.0, se_simple=1.0, fid_vlb=12.7, se_vlb=1.0) == NOT  # within noise
    assert rule(fid_simple=12.0, se_simple=1.0, fid_vlb=10.0, se_vlb=1.0) == NOT
    assert rule(fid_simple=10.0, se_simple=NAN, fid_vlb=20.0, se_vlb=1.0) == NOT  # no spread
    assert rule(fid_simple=10.0, se_simple=0.5, fid_vlb=12.9, se_vlb=1.0).rule == rule.name


def test_vlb_better_nll():
    rule = ddpm.vlb_better_nll
    assert rule(gain=0.39, se=0.008) == REPRODUCED
    assert rule(gain=0.015, se=0.008) == NOT  # under 2 se: not shown, never "partly"
    assert rule(gain=-0.1, se=0.008) == NOT


def test_quality_at_floor_uses_the_upper_end_of_the_seed_mean():
    rule, floor = ddpm.quality_at_floor, 8.44
    assert rule(fid=9.0, se=0.3, floor=floor, copy_ratio=0.95) == REPRODUCED  # 9.6 <= 1.25 x
    assert rule(fid=10.0, se=0.3, floor=floor, copy_ratio=0.95) == PARTLY  # 10.6 > 10.55
    assert rule(fid=9.0, se=0.3, floor=floor, copy_ratio=0.3) == PARTLY  # at the floor by copying
    assert rule(fid=17.0, se=0.3, floor=floor, copy_ratio=0.95) == NOT  # beyond 2 x the floor
    assert rule(fid=9.0, se=NAN, floor=floor, copy_ratio=0.95) == NOT  # fewer than MIN_SEEDS


def test_progressive_rule_and_peak():
    rule, n = ddpm.progressive, 359
    assert rule(start=0.1, peak=0.97, n=n) == REPRODUCED
    # 0.91 - 2 sqrt(0.91 * 0.09 / 359) = 0.880 < 0.9: not clearly decided
    assert rule(start=0.1, peak=0.91, n=n) == PARTLY
    assert rule(start=0.1, peak=0.52, n=n) == NOT  # 0.52 - 0.053 < 0.5
    assert rule(start=0.48, peak=0.97, n=n) == NOT  # 0.48 + 0.053 >= 0.5: decided from the start
    assert rule(start=0.1, peak=NAN, n=n) == NOT
    rows = [{"t": 1000, "agreement": 0.2, "rms_fraction": 1.0},
            {"t": 500, "agreement": 0.95, "rms_fraction": 0.5},
            {"t": 250, "agreement": 0.97, "rms_fraction": 0.1},
            {"t": 1, "agreement": 1.0, "rms_fraction": 0.0}]  # fmt: skip
    assert ddpm.coarse_peak(rows)["t"] == 500  # the last frame and the fine ones do not count
    assert ddpm.coarse_peak(rows[2:]) is None


def test_seed_mean_has_no_spread_below_min_seeds():
    from diffusio.papers.verdicts import seed_mean

    values = [10.0, 11.0, 12.0, 9.0, 10.5]
    assert seed_mean(values) == mean_se(values)
    mean, se = seed_mean(values[: MIN_SEEDS - 1])
    assert mean == pytest.approx(mean_se(values[: MIN_SEEDS - 1])[0]) and math.isnan(se)


def test_paper_numbers_are_the_checked_ones():
    numbers = {p.quantity: p for p in CLS.PAPER_NUMBERS}
    bound = numbers["FID, true bound L, fixed isotropic Sigma, eps prediction"]
    assert bound.value == "13.51" and bound.verified  # 13.22 is the mean-prediction row
    assert ddpm.PAPER[ddpm.VLB] == (13.51, 3.70) and ddpm.PAPER[ddpm.SIMPLE] == (3.17, 3.75)
    assert numbers["NLL test bound, L / L_simple (bits/dim)"].source == "Table 1"
    assert all(p.verified for p in CLS.PAPER_NUMBERS)


def test_settings_differ_only_in_size(tmp_path):
    quick, default = CLS.settings(True), CLS.settings(False)
    assert quick.preset == default.preset == "digits-ddpm"
    assert default.ancestral_steps == 1000 and default.n_samples == default.bpd_n == 359
    assert quick.n_samples == 359  # FIDs always at the test split's size
    for s in (quick, default):  # every spread a verdict uses comes from MIN_SEEDS seeds
        assert s.ancestral_seeds >= MIN_SEEDS and s.fid_seeds >= MIN_SEEDS
    config = CLS(default, tmp_path).recipe(ddpm.VLB)
    assert config.weighting == "vlb" and config.loss_options == {"decoder": "discretized"}
    assert config.time_sampler == "discrete" and config.variance == "fixed"


def test_smoke_run_writes_report_metrics_and_figures(smoke_run):
    out, metrics = smoke_run("ddpm-2020")
    tiny = smoke_settings()
    for name in ("samples.png", "progressive.png", "loss_curves.png"):
        assert (out / name).stat().st_size > 1000, name
    report = (out / "report.md").read_text(encoding="utf-8")
    for heading in ("## Scale", "## Claims checked", "## Paper numbers quoted",
                    "## Sample quality and likelihood", "## Memorisation check",
                    "## Progressive generation", "## Notes"):  # fmt: skip
        assert heading in report
    saved = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert len(saved["claims"]) == 4 and all(c["main"] for c in saved["claims"])
    assert all(c["verdict"] in VERDICTS and c["rule"].startswith("ddpm-2020/")
               for c in saved["claims"])  # fmt: skip
    m = saved["metrics"]
    assert set(m["models"]) == {ddpm.SIMPLE, ddpm.VLB}
    for label, res in m["models"].items():
        for key in ("fid_ancestral", "fid_solver", "bpd", "bpd_se", "memorisation",
                    "progressive", "train"):  # fmt: skip
            assert key in res
        assert len(res["fid_solver"]["fids"]) == tiny.fid_seeds
        assert len(res["fid_ancestral"]["fids"]) == (tiny.ancestral_seeds
                                                     if label == ddpm.SIMPLE else 1)  # fmt: skip
        assert res["fid_solver"]["se"] is None  # fewer than MIN_SEEDS seeds: no spread (JSON null)
        assert res["bpd"] > 0 and res["bpd_n"] == tiny.bpd_n
        assert res["train"]["step"] == tiny.train_steps
        assert len(res["progressive"]) == tiny.frames
    assert m["n"] == tiny.n_samples and m["fid_floor"] > 0
    assert {"training", "evaluate L_simple", "evaluate L_vlb"} <= set(m["stage_seconds"])
    assert metrics["metrics"].keys() == m.keys()
    run_dirs = {res["train"]["run_dir"].rsplit("/", 1)[-1].split("-")[0]
                for res in m["models"].values()}  # fmt: skip
    assert run_dirs == {"L_simple", "L_vlb"}
