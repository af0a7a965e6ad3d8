"""The guided-diffusion-2021 reproduction (classifier guidance on digits): its building blocks
(guided sampling, precision / recall, verdicts) and a tiny end-to-end run."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from diffusio.papers import guided_diffusion_2021 as gd
from diffusio.papers.report import VERDICTS

pytest.importorskip("sklearn")

TINY_NET = {
    "channels": 8, "channel_mults": [1, 2], "num_res_blocks": 1, "attention_resolutions": [4],
    "num_heads": 2, "groups": 4,
}  # fmt: skip
TINY_CLASSIFIER = {"channels": 8, "num_heads": 2, "groups": 4}
TINY = replace(
    gd.SETTINGS["quick"],
    train_steps=20,
    net_options=TINY_NET,
    batch_size=32,
    classifier_steps=20,
    classifier_options=TINY_CLASSIFIER,
    scales=(0.0, 1.0, 4.0),
    samplers=(("ddim", 4, "score"), ("ddpm", 4, "mean")),
    n_samples=40,
    fid_seeds=2,
    conditional_steps=10,
    conditional_scales=(0.0, 2.0),
)


def _row(value, accuracy, fid=10.0, precision=0.8, recall=0.8, n=400):
    return {"value": value, "accuracy": accuracy, "fid": fid, "precision": precision,
            "recall": recall, "n": n}  # fmt: skip


def test_verdicts_on_synthetic_sweeps():
    consistent = [_row(0, 0.1), _row(1, 0.6), _row(4, 0.97)]
    assert gd.consistency_verdict(consistent)[0] == "reproduced"
    already = [_row(0, 0.1), _row(1, 0.95), _row(4, 0.99)]
    assert gd.consistency_verdict(already)[0] == "partly reproduced"
    flat = [_row(0, 0.1), _row(1, 0.3), _row(4, 0.31)]
    assert gd.consistency_verdict(flat)[0] == "not reproduced"
    tradeoff = [_row(0, 0.1, precision=0.8, recall=0.8), _row(4, 0.9, precision=0.9, recall=0.5)]
    no_tradeoff = [_row(0, 0.1, recall=0.5), _row(4, 0.9, recall=0.6)]
    assert gd.tradeoff_verdict([tradeoff, tradeoff]) == "reproduced"
    assert gd.tradeoff_verdict([tradeoff, no_tradeoff]) == "partly reproduced"
    assert gd.tradeoff_verdict([no_tradeoff]) == "not reproduced"
    assert gd.nearest(consistent, 10.0)["value"] == 4


def test_settings_differ_only_in_size():
    quick, default = gd.SETTINGS["quick"], gd.SETTINGS["default"]
    assert quick.preset == default.preset == "digits-ddpm"
    assert {m for _, _, m in quick.samplers} == {m for _, _, m in default.samplers}
    assert {"mean", "score"} == {m for _, _, m in default.samplers}  # Alg. 1 and Alg. 2
    assert quick.n_samples is None and default.n_samples is None  # the floor's n = 359
    assert 1.0 in quick.scales and 0.0 in quick.scales


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from diffusio.papers.runs import train_or_load

    out = tmp_path_factory.mktemp("gd-model")
    config = gd.diffusion_config(TINY, "digits-ddpm", 20)
    model, _, _ = train_or_load(config, out, "ddpm", progress=False)
    return model, config, out


def test_guided_samples_without_guidance_match_sample_images(tiny_model):
    from diffusio.image.sampling import sample_images

    model, _, _ = tiny_model
    labels = torch.arange(12) % 10
    plain = sample_images(model, 12, (1, 8, 8), "ddim", 4, seed=5)
    guided = gd.guided_samples(model, labels, sampler="ddim", steps=4, seed=5)
    torch.testing.assert_close(guided, plain)
    with pytest.raises(ValueError, match="classifier-free"):
        gd.guided_samples(model, labels, steps=4, cfg_weight=1.0)
    with pytest.raises(ValueError, match="needs a classifier"):
        gd.guided_samples(model, labels, steps=4, scale=1.0)


def test_noisy_classifier_is_cached_and_guides(tiny_model):
    model, config, out = tiny_model
    first, info = gd.noisy_classifier(config, model, TINY, out, progress=False)
    again, info2 = gd.noisy_classifier(config, model, TINY, out, progress=False)
    for name, tensor in first.state_dict().items():
        assert torch.equal(tensor, again.state_dict()[name])
    assert info["path"] == info2["path"] and info2["log"] == info["log"]
    assert len(info["accuracy_by_noise"]) == 11
    labels = torch.arange(12) % 10
    for mode, sampler in (("score", "ddim"), ("mean", "ddpm")):
        plain = gd.guided_samples(model, labels, sampler=sampler, steps=4, seed=2)
        guided = gd.guided_samples(
            model, labels, sampler=sampler, steps=4, seed=2, classifier=first, scale=50.0,
            mode=mode,
        )  # fmt: skip
        assert guided.shape == plain.shape and not torch.allclose(guided, plain)
        assert guided.abs().max() <= 1.0


def test_reproduce_writes_report_metrics_and_figures(tmp_path):
    """The whole pipeline at a tiny scale: every file is written and the claims are there."""
    metrics = gd.reproduce(tmp_path, quick=True, settings=TINY, progress=False)
    for name in ("tradeoff.png", "samples.png", "classifier_accuracy.png"):
        assert (tmp_path / name).stat().st_size > 1000
    report = (tmp_path / "report.md").read_text(encoding="utf-8")
    for heading in ("## Scale", "## Claims checked", "## The noise-aware classifier",
                    "## Guidance scale sweep", "## Notes"):  # fmt: skip
        assert heading in report
    saved = json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))
    assert saved["name"] == "guided-diffusion-2021" and saved["quick"] is True
    assert len(saved["claims"]) == 2 + 2 + 1  # per sampler, trade-off, FID, conditional
    assert all(c["verdict"] in VERDICTS for c in saved["claims"])
    m = saved["metrics"]
    assert len(m["curves"]) == 2
    for rows in m["curves"].values():
        assert [r["value"] for r in rows] == list(TINY.scales)
        for r in rows:
            assert r["n"] == 40 and 0 <= r["accuracy"] <= 1 and r["fid"] > 0
            assert {"precision", "recall", "fid_floor", "confidence"} <= r.keys()
    assert [r["value"] for r in m["conditional"]["rows"]] == list(TINY.conditional_scales)
    assert len(m["fid_seed_spread"]["fids"]) == 2
    assert len(m["classifier"]["accuracy_by_noise"]) == 11
    assert metrics["metrics"].keys() == m.keys()
    assert (tmp_path / "models").is_dir()
