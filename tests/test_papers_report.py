"""The shared reproduction report and the train-or-reuse helper."""

import json

import pytest
import torch

from diffusio.papers.report import Report, fmt, markdown_table
from diffusio.papers.runs import ModelCache, config_hash
from diffusio.plotting import new_figure
from diffusio.train.config import load_config


def test_fmt_and_table():
    assert fmt(3) == "3"
    assert fmt(2.83188) == "2.83"
    assert fmt(0.12345) == "0.123"
    assert fmt(1.5e-5) == "1.50e-05"
    table = markdown_table(["a", "b"], [[1, 0.5]])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| 1 | 0.500 |"]
    with pytest.raises(ValueError, match="2 cells"):
        markdown_table(["a"], [[1, 2]])


def test_report_writes_markdown_metrics_and_figures(tmp_path):
    report = Report("toy-2000", "A paper", "Someone 2000", tmp_path, quick=True, scale="Tiny.")
    report.claim("x works", "x = 1", "x = 1.01", "+0.01", "reproduced")
    with pytest.raises(ValueError, match="verdict"):
        report.claim("y", "1", "2", "1", "maybe")
    report.section("Results", "Some text.")
    report.table(["k", "v"], [["nll", 2.5]])
    fig = new_figure()
    fig.subplots().plot([0, 1])
    report.figure(fig, "line.png", "A line")
    report.metrics["nll"] = 2.5
    out = report.write()
    text = (tmp_path / "report.md").read_text()
    assert "# A paper" in text and "| x works | x = 1 | x = 1.01 | +0.01 | reproduced |" in text
    assert "![A line](line.png)" in text and "--quick" in text
    assert (tmp_path / "line.png").stat().st_size > 0
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["metrics"] == {"nll": 2.5} and saved["quick"] is True
    assert saved["claims"][0]["verdict"] == "reproduced" and out["name"] == "toy-2000"


def test_model_cache_reuses_a_finished_run(tmp_path):
    config = load_config("toy-8gaussians", steps=20, n_data=256, batch_size=64, save_every=0)
    model, normalizer, summary = ModelCache(tmp_path).train(config, "eg", progress=False)
    assert summary["step"] == 20 and normalizer is not None
    assert summary["run_dir"].endswith(f"eg-{config_hash(config)}")
    again, _, summary2 = ModelCache(tmp_path).train(config, "eg", progress=False)
    assert summary2["steps_per_sec"] == 0.0  # nothing trained the second time
    for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    other = config.replace(steps=10)
    assert config_hash(other) != config_hash(config)


def test_model_cache_shares_one_model_between_reproductions(tmp_path):
    """Two reproductions training the same recipe get one cached model (no sibling folders)."""
    config = load_config("toy-8gaussians", steps=20, n_data=256, batch_size=64, save_every=0)
    cache = ModelCache(tmp_path / "models")
    model, _, _ = cache.train(config, "x", progress=False)
    again, _, summary = ModelCache(tmp_path / "models").train(config, "x", progress=False)
    assert summary["steps_per_sec"] == 0.0  # reused, not trained
    for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    # a longer recipe is another cache entry
    assert cache.run_dir(config.replace(steps=30), "x") != cache.run_dir(config, "x")
