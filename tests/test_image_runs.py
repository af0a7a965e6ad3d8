"""Image runs end to end on scikit-learn's digits with a tiny U-Net: training (unconditional,
class-conditional with label dropout, learned variance with the hybrid loss), exact resume,
``diffusio sample`` (.npz of shape (N, C, H, W) in [-1, 1], and .png grids) and
``diffusio eval`` (digits-FID with its floor, bits/dim from the bound and the ODE)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from diffusio import cli
from diffusio.train.config import load_config, load_dataset, load_run
from diffusio.train.trainer import Trainer

pytest.importorskip("sklearn")

TINY = {
    "channels": 8,
    "channel_mults": [1, 2],
    "num_res_blocks": 1,
    "attention_resolutions": [4],
    "num_heads": 2,
    "groups": 4,
}


def tiny(preset="digits-ddpm", **overrides):
    values = {"net_options": TINY, "steps": 6, "batch_size": 16, "save_every": 3, "log_every": 2}
    return load_config(preset, **{**values, **overrides})


def test_digits_preset_data_and_model_shapes():
    config = load_config("digits-ddpm")
    x, y = load_dataset(config)
    assert x.shape[1:] == (1, 8, 8) and x.min() >= -1 and x.max() <= 1
    assert y is not None and len(y) == len(x)
    with pytest.raises(ValueError, match="normalize"):
        Trainer(tiny(normalize=True), "unused", progress=False)
    with pytest.raises(ValueError, match="data_options"):
        load_config("toy-moons", data_options={"size": 16})
        load_dataset(load_config("toy-moons", data_options={"size": 16}))
    with pytest.raises(ValueError, match="unknown data_options"):
        load_config("digits-ddpm", data_options={"sise": 16})


def test_resize_option_changes_the_network_size():
    config = tiny(data_options={"size": 16})
    x, _ = load_dataset(config)
    assert x.shape[1:] == (1, 16, 16)


@pytest.mark.parametrize(
    "preset,extra",
    [("digits-ddpm", {}), ("digits-ddpm-cond", {}), ("digits-iddpm", {}),
     ("digits-ddpm", {"data_options": {"flip": True}})],
)  # fmt: skip
def test_image_training_resumes_exactly(tmp_path, preset, extra):
    config = tiny(preset, **extra)
    full = Trainer(config, tmp_path / "full", progress=False)
    full.fit()
    part = Trainer(config.replace(steps=3), tmp_path / "part", progress=False)
    part.fit()
    resumed = Trainer(config, tmp_path / "part", progress=False)
    resumed.fit(resume=True)
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values(),
                    strict=True):  # fmt: skip
        assert torch.equal(a, b)
    model, cfg, normalizer = load_run(tmp_path / "full")
    assert normalizer is None
    if cfg.class_conditional:
        assert model.net.num_classes == 10
    if cfg.variance == "learned":
        assert model.net.out_channels == 2


def test_class_dropout_replaces_labels_with_the_null_class(tmp_path):
    trainer = Trainer(tiny("digits-ddpm-cond", class_dropout=0.5, batch_size=4000), tmp_path,
                      progress=False)  # fmt: skip
    _, cond = trainer.sample_batch()
    null = (cond["y"] == 10).double().mean()
    # binomial(4000, 0.5): 4 standard deviations are 0.032
    assert abs(float(null) - 0.5) < 0.032


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "digits"
    Trainer(tiny("digits-ddpm-cond", steps=4), out, progress=False).fit()
    return out


def test_sample_cli_writes_images(trained_run, tmp_path):
    npz = tmp_path / "s.npz"
    argv = ["sample", str(trained_run), "--n", "12", "--sampler", "ddim", "--steps", "3",
            "--out", str(npz), "--no-progress", "--label", "3", "--guidance", "1.5"]  # fmt: skip
    assert cli.main(argv) == 0
    with np.load(npz) as f:
        x, labels = f["samples"], f["labels"]
    assert x.shape == (12, 1, 8, 8) and x.min() >= -1 and x.max() <= 1
    assert (labels == 3).all()
    png = tmp_path / "s.png"
    argv = ["sample", str(trained_run), "--n", "10", "--steps", "3", "--out", str(png),
            "--no-progress"]  # fmt: skip
    assert cli.main(argv) == 0 and png.stat().st_size > 100
    assert cli.main(["sample", str(trained_run), "--label", "10", "--no-progress"]) == 2


def test_eval_cli_scores_the_run(trained_run, capsys):
    argv = ["eval", str(trained_run), "--n", "40", "--steps", "3", "--bpd-n", "4",
            "--ode-n", "2", "--no-progress"]  # fmt: skip
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "FID" in out and "bits/dim, bound" in out and "bits/dim, ODE" in out
    result = json.loads((trained_run / "eval.json").read_text())
    assert result["n"] == 40 and result["fid"] > result["fid_floor"] > 0
    # an untrained net is far from the data: more than the 8 bits/dim of uniform noise
    assert result["vlb_bits_per_dim"] > 0 and result["ode_bits_per_dim"] > 0
    assert len(result["histogram"]) == 10 and "accuracy" in result
