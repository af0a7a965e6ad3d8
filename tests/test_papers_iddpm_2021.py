"""The iddpm-2021 reproduction: its verdict rules and recipes, and the shared smoke
run's files and metrics."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("sklearn")

from diffusio.papers import iddpm_2021  # noqa: E402
from diffusio.papers.verdicts import VERDICTS  # noqa: E402

CLS = iddpm_2021.IDDPM2021


def test_verdicts():
    assert iddpm_2021.fid_equal(12.0, 11.3) and not iddpm_2021.fid_equal(15.0, 11.3)
    assert iddpm_2021.few_steps_verdict(1.03, 1.52) == "reproduced"
    assert iddpm_2021.few_steps_verdict(1.03, 1.11) == "partly reproduced"  # both keep it
    assert iddpm_2021.few_steps_verdict(1.4, 1.52) == "not reproduced"


def test_recipes_keep_their_settings(tmp_path):
    repro = CLS(CLS.settings(True, CLS.SMOKE), tmp_path)
    config = repro.recipe(iddpm_2021.IMPORTANCE)
    assert config.time_sampler == "importance" and config.variance == "learned"
    assert config.process_options == {"num_steps": 50} and config.batch_size == 8
    assert CLS(CLS.settings(False), tmp_path).recipe(iddpm_2021.LINEAR).process_options != {
        "num_steps": 50}


def test_smoke_run_writes_report(smoke_run):
    out, metrics = smoke_run("iddpm-2021")
    for name in ("report.md", "metrics.json", "schedules.png", "vlb_curves.png",
                 "fewer_steps.png", "samples.png"):  # fmt: skip
        assert (out / name).is_file(), name
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["metrics"]["n"] == 12 and len(saved["claims"]) == 5
    assert all(c["verdict"] in VERDICTS for c in saved["claims"])
    models = saved["metrics"]["models"]
    assert set(models) == set(iddpm_2021.VARIANTS)
    assert all(m["bpd"] > 0 for m in models.values())
    assert set(models[iddpm_2021.FIXED]["fid"]) == {"posterior", "beta"}
    sched = metrics["metrics"]["schedules"]  # always the 1000-step tables
    # the linear schedule's tail is near-pure noise; the cosine one's is not (exact tables)
    assert sched["vp-linear"]["steps_below_1pct_signal"] > sched["vp-cosine"][
        "steps_below_1pct_signal"]
