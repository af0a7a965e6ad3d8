"""The 2015 reproduction at a tiny scale: its pieces work and its report holds the claims."""

from __future__ import annotations

import json

import torch

from diffusio.core.vlb import vlb
from diffusio.papers import sohl_dickstein_2015 as sd
from diffusio.timeline import find_entry


def test_reproduce_writes_a_report_with_measured_claims(tmp_path):
    tiny = sd.Settings(steps=30, hidden=32, depth=1, n_bound=64, n_samples=128)
    out = sd.reproduce(tmp_path, settings=tiny)
    text = (tmp_path / "report.md").read_text()
    assert "## Claims checked" in text and "6.45 bits" in text
    for name in ("figure1.png", "bound_terms.png", "samples.png", "metrics.json"):
        assert (tmp_path / name).stat().st_size > 0
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["metrics"]["entropy_nats"] == out["metrics"]["entropy_nats"]
    assert len(saved["claims"]) == 4
    assert len(saved["metrics"]["per_step_terms_nats"]) == sd.NUM_STEPS
    # a finished run is reused, not retrained
    again = sd.reproduce(tmp_path, settings=tiny)
    assert again["metrics"]["train_seconds"] == out["metrics"]["train_seconds"]
    assert find_entry("sohl-dickstein-2015").status == "reproduced"


def test_fixed_variance_wrapper_and_reverse_chain(tmp_path):
    from diffusio.papers.runs import train_or_load

    config = sd.make_config(sd.Settings(steps=5, hidden=16, depth=1))
    model, _, _ = train_or_load(config, tmp_path, "m", progress=False)
    x = torch.randn(8, 2)
    learned = vlb(model, x, generator=torch.Generator().manual_seed(0))["total"]
    fixed = vlb(sd.with_fixed_variance(model, -1.0), x, generator=torch.Generator().manual_seed(0))
    assert learned.shape == fixed["total"].shape == (8,)
    chain = sd.reverse_chain(model, 10, seed=0)
    assert len(chain) == sd.NUM_STEPS + 1 and chain[-1].shape == (10, 2)
