"""The image sampling path with guidance (``sample_images``: classifier-free and classifier
guidance, the clipping order of the guided-diffusion code), the noise-aware classifier cache,
the sweep-row helpers of ``image.scoring`` and the guidance figures -- on untrained tiny nets."""

from __future__ import annotations

import pytest
import torch

from diffusio.core.model import DiffusionModel
from diffusio.core.processes import make_process
from diffusio.image.analysis import TINY_UNET
from diffusio.image.classifier import NoisyClassifier, classifier_cache_path, noisy_classifier
from diffusio.image.figures import class_grid, classifier_figure, grids_figure, tradeoff_figure
from diffusio.image.sampling import image_config, image_shape, sample_images
from diffusio.image.scoring import SWEEP_HEADER, nearest, public_rows, sweep_table
from diffusio.nets.unet import UNet

TINY_CLASSIFIER = {"channels": 8, "num_heads": 2, "groups": 4}


def _model(num_classes: int | None = None, seed: int = 0) -> DiffusionModel:
    torch.manual_seed(seed)
    net = UNet(1, image_size=8, num_classes=num_classes, **TINY_UNET)
    for p in net.parameters():  # untrained nets output zeros through their zero-init convs
        torch.nn.init.normal_(p, std=0.05)
    return DiffusionModel(net.eval(), make_process("vp-linear"))


@pytest.fixture(scope="module")
def guide() -> NoisyClassifier:
    torch.manual_seed(1)
    return NoisyClassifier(**TINY_CLASSIFIER).eval()


def test_unguided_and_guided_paths_agree_and_validate(guide):
    model, cond = _model(), _model(num_classes=10)
    labels = torch.arange(12) % 10
    assert image_shape(model) == (1, 8, 8)
    plain = sample_images(model, 12, (1, 8, 8), "ddim", 4, seed=5)
    torch.testing.assert_close(sample_images(model, 12, None, "ddim", 4, seed=5, labels=labels),
                               plain)  # fmt: skip
    # the null label samples a conditional net unconditionally
    null = torch.full_like(labels, 10)
    a = sample_images(cond, 12, None, "ddim", 4, seed=5, labels=labels, model_labels=null)
    b = sample_images(cond, 12, None, "ddim", 4, seed=5, labels=null)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, sample_images(cond, 12, None, "ddim", 4, seed=5, labels=labels))
    with pytest.raises(ValueError, match="classifier-free"):
        sample_images(model, 12, None, steps=4, labels=labels, guidance_weight=1.0)
    with pytest.raises(ValueError, match="needs a classifier"):
        sample_images(model, 12, None, steps=4, labels=labels, classifier_scale=1.0)
    with pytest.raises(ValueError, match="model labels"):
        sample_images(cond, 12, None, steps=4, labels=labels, model_labels=null[:3])


@pytest.mark.parametrize(("mode", "sampler"), [("score", "ddim"), ("mean", "ddpm")])
def test_classifier_guidance_moves_samples_and_clipping_order_matters(guide, mode, sampler):
    model = _model()
    labels = torch.arange(12) % 10
    kw = {"labels": labels, "classifier": guide, "classifier_scale": 50.0, "classifier_mode": mode}
    plain = sample_images(model, 12, None, sampler, 4, seed=2, labels=labels)
    first = sample_images(model, 12, None, sampler, 4, seed=2, guide_clipped=True, **kw)
    after = sample_images(model, 12, None, sampler, 4, seed=2, **kw)
    assert not torch.allclose(first, plain) and not torch.allclose(first, after)
    assert first.abs().max() <= 1.0 and after.abs().max() <= 1.0


def test_noisy_classifier_is_cached_by_recipe(tmp_path):
    config = image_config("digits-ddpm", 20, net_options=TINY_UNET, batch_size=32)
    assert config.warmup == 2 and config.batch_size == 32
    assert image_config("digits-ddpm", 20, net_options=TINY_UNET, batch_size=32) == config
    process = make_process("vp-linear")
    kw = {"steps": 3, "batch_size": 16, "options": TINY_CLASSIFIER, "cache_dir": tmp_path}
    first, info = noisy_classifier(config, process, **kw)
    again, info2 = noisy_classifier(config, process, **kw)
    for name, tensor in first.state_dict().items():
        assert torch.equal(tensor, again.state_dict()[name])
    assert info["path"] == info2["path"] and info2["log"] == info["log"]
    assert info["path"].startswith(str(tmp_path / "models" / "noisy-classifier-"))
    assert len(info["accuracy_by_noise"]) == 11 and info["parameters"] > 0
    _, other = noisy_classifier(config, process, **{**kw, "steps": 4})
    assert other["path"] != info["path"]
    assert classifier_cache_path({"a": 1}, tmp_path) == classifier_cache_path({"a": 1}, tmp_path)


def _row(value, fid, curve="c"):
    return {"curve": curve, "value": value, "fid": fid, "fid_floor": 8.0, "accuracy": 0.5,
            "n": 40, "confidence": 0.9, "precision": 0.8, "recall": 0.7, "seconds": 1.0,
            "samples": torch.zeros(40, 1, 8, 8)}  # fmt: skip


def test_rows_tables_and_figures():
    rows = [_row(0.0, 20.0), _row(1.0, 15.0), _row(4.0, 30.0)]
    assert nearest(rows, 10.0)["value"] == 4.0 and nearest(rows, 0.9)["value"] == 1.0
    assert all("samples" not in r for r in public_rows(rows))
    table = sweep_table(rows)
    assert len(table[0]) == len(SWEEP_HEADER) and table[0][5] == pytest.approx(0.5 / 40**0.5)
    labels = torch.arange(40) % 10
    grid = class_grid(torch.rand(40, 1, 8, 8), labels, per_class=5)
    assert grid.shape == (50, 1, 8, 8) and (grid[4 * 5 + 4] == -1).all()  # 4 per class: a blank
    for fig in (
        tradeoff_figure({"a": rows, "b": [{**r, "symbol": "w"} for r in rows]}, 8.0),
        grids_figure([("x", rows[0]["samples"], labels)], 4),
        classifier_figure([{"t": 0.0, "accuracy": 0.9}, {"t": 1.0, "accuracy": 0.1}], 0.1),
    ):
        assert fig.axes  # fmt: skip
