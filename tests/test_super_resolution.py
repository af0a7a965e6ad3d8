"""The cascade's super-resolution stage (diffusio.image.super_resolution): the augmentation
transform is exactly the forward process at the drawn level (and the identity without
augmentation), it draws from the generator it is given (exact resume), and a tiny model trains
through the common trainer and up-samples."""

import pytest
import torch

from diffusio.core.cascade import downsample, upsample
from diffusio.core.processes import make_process
from diffusio.data.batch import Batch
from diffusio.image.super_resolution import (
    AugmentLowRes,
    super_resolution_training_set,
    super_resolve,
    train_super_resolution,
)


def _batch(n=6, size=8):
    g = torch.Generator().manual_seed(0)
    hi = torch.rand(n, 1, size, size, generator=g) * 2 - 1
    return Batch(hi, cond={"low_res": downsample(hi, 2)})


def test_no_augmentation_is_the_clean_upsampled_input():
    b = _batch()
    out = AugmentLowRes(8, 0.0)(b, torch.Generator().manual_seed(1))
    assert set(out.cond) == {"concat", "aug_level"}
    assert torch.equal(out.cond["concat"], upsample(b.cond["low_res"], 8))
    assert torch.equal(out.cond["aug_level"], torch.zeros(6))


def test_augmentation_is_the_forward_process_at_the_drawn_level():
    b = _batch()
    aug = AugmentLowRes(8, 0.5)
    out = aug(b, torch.Generator().manual_seed(3))
    level = out.cond["aug_level"]
    assert level.shape == (6,) and bool(((level >= 0) & (level <= 0.5)).all())
    # redraw: level first (U(0, 0.5)), then the noise, from the same generator
    g = torch.Generator().manual_seed(3)
    s = 0.5 * torch.rand(6, generator=g)
    e = torch.randn(b.cond["low_res"].shape, generator=g)
    process = make_process("vp-linear")
    expect = process.marginal(b.cond["low_res"], s, e)
    assert torch.allclose(level, s)
    assert torch.allclose(out.cond["concat"], upsample(expect, 8), atol=1e-6)
    again = aug(b, torch.Generator().manual_seed(3))
    assert torch.equal(again.cond["concat"], out.cond["concat"])  # the generator decides


def test_validation():
    with pytest.raises(ValueError, match="max_level must lie in"):
        AugmentLowRes(8, 2.0)
    with pytest.raises(ValueError, match="unknown resize mode"):
        AugmentLowRes(8, 0.1, mode="cubic")
    with pytest.raises(ValueError, match="divisible by 2"):
        super_resolution_training_set(torch.zeros(2, 1, 7, 7), 2, 0.1)


def test_training_set_and_tiny_model(tmp_path):
    hi = _batch(16).x0
    data = super_resolution_training_set(hi, 2, 0.3)
    assert data.net_options == {"concat_channels": 1, "level_conditioning": True}
    assert data.cond["low_res"].shape == (16, 1, 4, 4)
    model, summary = train_super_resolution(
        tmp_path / "sr", hi, steps=3, batch_size=4, progress=False, save_every=100,
        net_options={"channels": 8, "channel_mults": [1, 2]},
    )  # fmt: skip
    assert summary["step"] == 3 and (tmp_path / "sr" / "ema.safetensors").is_file()
    low = downsample(hi[:3], 2)
    x = super_resolve(model, low, 8, level=0.2, steps=3, seed=1)
    assert x.shape == (3, 1, 8, 8) and float(x.abs().max()) <= 1.0
    assert torch.equal(x, super_resolve(model, low, 8, level=0.2, steps=3, seed=1))
