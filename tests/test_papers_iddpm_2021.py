"""The iddpm-2021 reproduction runs end to end at a tiny scale and writes its report."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("sklearn")

from diffusio.papers import iddpm_2021  # noqa: E402

TINY_NET = {"channels": 8, "channel_mults": [1, 2], "num_res_blocks": 1,
            "attention_resolutions": [4], "num_heads": 2, "groups": 4}  # fmt: skip


def test_tiny_reproduction_writes_report(tmp_path):
    settings = iddpm_2021.Settings(steps=4, sampling_steps=(2, 3), n_samples=12, bpd_n=3,
                                   net_options=TINY_NET, batch_size=8, timesteps=50)  # fmt: skip
    metrics = iddpm_2021.reproduce(tmp_path / "out", settings=settings, progress=False)
    out = tmp_path / "out"
    for name in ("report.md", "metrics.json", "schedules.png", "vlb_curves.png",
                 "fewer_steps.png", "samples.png"):  # fmt: skip
        assert (out / name).is_file(), name
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["metrics"]["n"] == 12 and len(saved["claims"]) == 5
    models = saved["metrics"]["models"]
    assert set(models) == set(iddpm_2021.VARIANTS)
    assert all(m["bpd"] > 0 for m in models.values())
    assert set(models[iddpm_2021.FIXED]["fid"]) == {"posterior", "beta"}
    sched = metrics["metrics"]["schedules"]  # always the 1000-step tables
    # the linear schedule's tail is near-pure noise; the cosine one's is not (exact tables)
    assert sched["vp-linear"]["steps_below_1pct_signal"] > sched["vp-cosine"][
        "steps_below_1pct_signal"]
