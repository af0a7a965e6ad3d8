"""The 2015 reproduction: its smoke run holds the claims, and its pieces work."""

from __future__ import annotations

import torch

from diffusio.core.vlb import vlb
from diffusio.papers import sohl_dickstein_2015 as sd
from diffusio.papers.runs import ModelCache
from diffusio.timeline import find_entry


def test_smoke_run_writes_a_report_with_measured_claims(smoke_run):
    out, metrics = smoke_run("sohl-dickstein-2015")
    text = (out / "report.md").read_text()
    assert "## Claims checked" in text and "6.45 bits" in text and "## Figure 1" in text
    for name in ("figure1.png", "bound_terms.png", "samples.png", "metrics.json"):
        assert (out / name).stat().st_size > 0
    m = metrics["metrics"]
    assert len(metrics["claims"]) == 4
    assert len(m["per_step_terms_nats"]) == sd.NUM_STEPS
    assert {"bound_nats", "entropy_nats", "K_minus_Lnull_bits", "mmd2", "ablation"} <= set(m)
    assert find_entry("sohl-dickstein-2015").status == "reproduced"


def test_fixed_variance_wrapper_and_reverse_chain(tmp_path):
    config = sd.make_config(sd.Settings(steps=5, hidden=16, depth=1))
    model, _, _ = ModelCache(tmp_path).train(config, "m", progress=False)
    x = torch.randn(8, 2)
    learned = vlb(model, x, generator=torch.Generator().manual_seed(0))["total"]
    fixed = vlb(sd.with_fixed_variance(model, -1.0), x, generator=torch.Generator().manual_seed(0))
    assert learned.shape == fixed["total"].shape == (8,)
    chain = sd.reverse_chain(model, 10, seed=0)
    assert len(chain) == sd.NUM_STEPS + 1 and chain[-1].shape == (10, 2)
