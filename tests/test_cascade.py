"""Cascade pieces: noise-conditioning augmentation (exact moments), resizing, the
super-resolution adapter (adds no path: oracle samples are unchanged) and guidance scales."""

import math

import pytest
import torch
from torch import nn

from diffusio import make_process
from diffusio.core.cascade import (
    SuperResolutionModel,
    downsample,
    guidance_weight,
    noise_augment,
    upsample,
)
from diffusio.core.model import DiffusionModel
from diffusio.core.oracle import GaussianMixture
from diffusio.core.samplers import sample
from diffusio.core.steering import ClassifierFreeGuidance, DynamicThreshold
from diffusio.nets import UNet


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _image(n: int = 4, c: int = 1, size: int = 3, seed: int = 0) -> torch.Tensor:
    return 2 * torch.rand(n, c, size, size, generator=_gen(seed), dtype=torch.float64) - 1


# ------------------------------------------------------------------ noise augmentation
@pytest.mark.parametrize("name", ["vp-cosine", "vp-linear", "ve"])
def test_level_zero_is_the_identity(name):
    process = make_process(name)
    x = _image()
    out, level = noise_augment(x, 0.0, process, _gen())
    assert torch.equal(out, x) and torch.equal(level, torch.zeros(4, dtype=x.dtype))
    mixed, _ = noise_augment(x, torch.tensor([0.0, 0.5, 0.0, 0.9]), process, _gen())
    assert torch.equal(mixed[[0, 2]], x[[0, 2]]) and not torch.equal(mixed[1], x[1])


def _check_moments(z: torch.Tensor, x: torch.Tensor, alpha: float, sigma: float) -> None:
    """Per pixel: the sample mean within 5 standard errors of alpha x, the sample variance
    within 5 standard errors of sigma^2 (Gaussian: se(var) = sigma^2 sqrt(2 / (n - 1)))."""
    n = z.shape[0]
    mean, var = z.mean(0), z.var(0)
    assert ((mean - alpha * x).abs() <= 5 * sigma / math.sqrt(n)).all()
    assert ((var - sigma**2).abs() <= 5 * sigma**2 * math.sqrt(2 / (n - 1))).all()


@pytest.mark.parametrize(("name", "levels"), [("vp-cosine", (0.4,)), ("vp-linear", (0.2, 0.7)),
                                              ("ve", (0.3, 0.6))])  # fmt: skip
def test_noised_moments_match_alpha_and_sigma(name, levels):
    process = make_process(name)
    n = 20_000
    pixel = _image(1)[0]  # one image (1, 3, 3), repeated n times per level
    level = torch.tensor(levels, dtype=torch.float64).repeat(n)  # per-example levels
    x = pixel.expand(len(levels) * n, *pixel.shape)
    z, got = noise_augment(x, level, process, _gen(1))
    assert torch.equal(got, level)
    for i, s in enumerate(levels):
        tt = torch.tensor(s, dtype=torch.float64)
        alpha, sigma = float(process.alpha(tt)), float(process.sigma(tt))
        _check_moments(z[i :: len(levels)], pixel, alpha, sigma)


def test_training_levels_are_uniform_and_the_noise_is_standard():
    process = make_process("vp-cosine")
    n, top = 40_000, 0.8
    x = _image(n, seed=2)
    z, level = noise_augment(x, None, process, _gen(3), max_level=top)
    assert level.shape == (n,) and level.min() >= 0 and level.max() <= top
    assert abs(level.mean().item() - top / 2) <= 5 * top / math.sqrt(12 * n)
    assert abs(level.var().item() - top**2 / 12) <= 5 * top**2 / math.sqrt(180 * n)
    a = process.alpha(level).reshape(-1, 1, 1, 1)
    s = process.sigma(level).reshape(-1, 1, 1, 1)
    e = ((z - a * x) / s).flatten()  # the standard normal noise recovered
    assert abs(e.mean().item()) <= 5 / math.sqrt(e.numel())
    assert abs(e.var().item() - 1) <= 5 * math.sqrt(2 / e.numel())
    # the same generator seed gives the same augmentation; default max_level is t_max
    again, _ = noise_augment(x, None, process, _gen(3), max_level=top)
    assert torch.equal(again, z)
    assert noise_augment(x, None, process, _gen(3))[1].max() <= process.t_max


def test_noise_augment_validation():
    process = make_process("vp-cosine")
    x = _image()
    with pytest.raises(ValueError, match="must lie in"):
        noise_augment(x, 1.5 * process.t_max, process)
    with pytest.raises(ValueError, match="scalar or"):
        noise_augment(x, torch.zeros(3), process)
    with pytest.raises(ValueError, match="max_level is for drawn"):
        noise_augment(x, 0.1, process, max_level=0.5)


# ------------------------------------------------------------------ resizing
def test_upsample_and_downsample():
    x = _image(2, 3, 4)
    nearest = upsample(x, 8)
    assert torch.equal(nearest, x.repeat_interleave(2, 2).repeat_interleave(2, 3))
    assert torch.equal(downsample(nearest, 2), x)
    assert torch.equal(upsample(x, (12, 8), "nearest"), x.repeat_interleave(3, 2).repeat_interleave(2, 3))
    const = torch.full((1, 1, 7, 7), 0.3, dtype=torch.float64)
    torch.testing.assert_close(upsample(const, 28, "bilinear"), torch.full((1, 1, 28, 28), 0.3,
                                                                           dtype=torch.float64))  # fmt: skip
    assert upsample(x, 4) is x
    with pytest.raises(ValueError, match="cannot shrink"):
        upsample(x, 2)
    with pytest.raises(ValueError, match="unknown resize mode"):
        upsample(x, 8, "bicubic")
    with pytest.raises(ValueError, match="not divisible"):
        downsample(x, 3)


# ------------------------------------------------------------------ the adapter adds no path
class _IgnoresLowRes(nn.Module):
    """The oracle's exact prediction, which ignores the conditioning; records what it got."""

    def __init__(self, oracle: nn.Module):
        super().__init__()
        self.oracle, self.calls = oracle, []

    def forward(self, x, t, concat, aug_level):
        self.calls.append((concat, aug_level))
        return self.oracle(x, t)


@pytest.mark.parametrize("sampler", ["ddim", "ddpm", "euler-maruyama", "dpm-solver++", "ode-heun"])
def test_oracle_samples_are_unchanged_through_the_adapter(sampler):
    process = make_process("vp-cosine")
    gen = _gen(4)
    mixture = GaussianMixture(torch.randn(3, 16, generator=gen, dtype=torch.float64), [0.3, 0.5, 0.2])
    direct = mixture.model(process)
    net = _IgnoresLowRes(direct.net)
    adapter = SuperResolutionModel(net, process, mode="bilinear")
    low = _image(6, 1, 2, seed=5)
    cond = adapter.condition(low, 0.25, _gen(6))
    shape = (6, 1, 4, 4)
    a, sa = sample(adapter, shape, sampler, steps=8, seed=7, cond=cond, return_stats=True,
                   guidance=[DynamicThreshold()])  # fmt: skip
    b, sb = sample(direct, shape, sampler, steps=8, seed=7, return_stats=True,
                   guidance=[DynamicThreshold()])  # fmt: skip
    assert torch.equal(a, b) and sa["nfe"] == sb["nfe"] == len(net.calls)
    concat, level = net.calls[0]
    assert torch.equal(concat, upsample(cond["low_res"], 4, "bilinear"))
    assert torch.equal(level, torch.full((6,), 0.25, dtype=torch.float64))


def test_adapter_trains_and_samples_a_unet():
    process = make_process("vp-cosine")
    torch.manual_seed(0)
    net = UNet(1, image_size=8, channels=8, channel_mults=(1, 2), num_res_blocks=1,
               attention_resolutions=(4,), num_heads=2, groups=4, concat_channels=1,
               level_conditioning=True)  # fmt: skip
    with torch.no_grad():  # every path open (the zero-initialised convs block gradients)
        for module in net.modules():
            if isinstance(module, nn.Conv2d) and not module.weight.any():
                nn.init.normal_(module.weight, std=0.1)
    model = SuperResolutionModel(net, process)
    x0 = _image(4, 1, 8).float()
    low = downsample(x0, 2)
    loss = model.loss(x0, cond=model.condition(low, None, _gen(8)), generator=_gen(9))
    loss.backward()
    assert torch.isfinite(loss) and net.input.weight.grad[:, 1].abs().sum() > 0  # concat channel
    assert net.level_embed[1].weight.grad.any()  # the level reached the network
    with torch.no_grad():  # the low-res input changes the samples
        cond = model.condition(low, 0.1, _gen(10))
        out = sample(model, x0.shape, "ddim", steps=4, seed=0, cond=cond)
        other = sample(model, x0.shape, "ddim", steps=4, seed=0, cond={**cond, "low_res": -low})
    assert torch.isfinite(out).all() and not torch.allclose(out, other)
    with pytest.raises(ValueError, match="low_res"):
        model(x0, 0.5)


# ------------------------------------------------------------------ guidance scales
class _ImagenGuided(nn.Module):
    """Imagen's guided eps, Sec. 2.2: ``w eps(x, c) + (1 - w) eps(x)``."""

    def __init__(self, oracle: nn.Module, w: float, null: int):
        super().__init__()
        self.oracle, self.w, self.null = oracle, w, null

    def forward(self, x, t, y):
        return self.w * self.oracle(x, t, y) + (1 - self.w) * self.oracle(x, t, self.null)


@pytest.mark.parametrize("scale", [1.0, 3.0, 7.5])
def test_imagen_scale_is_one_plus_diffusio_weight(scale):
    assert guidance_weight(scale) == scale - 1
    process = make_process("vp-cosine")
    mixture = GaussianMixture([[-1.0, 0.0], [1.0, 0.5]], [0.3, 0.4])
    cond_model = mixture.model(process, conditional=True)
    imagen = DiffusionModel(_ImagenGuided(cond_model.net, scale, 2), process)
    cfg = ClassifierFreeGuidance(guidance_weight(scale), null_label=2)
    y = torch.tensor([0, 1, 0, 1])
    ours = sample(cond_model, (4, 2), "ddim", steps=6, seed=1, cond={"y": y}, guidance=[cfg])
    theirs = sample(imagen, (4, 2), "ddim", steps=6, seed=1, cond={"y": y})
    torch.testing.assert_close(ours, theirs, atol=1e-10, rtol=0)
    with pytest.raises(ValueError, match="finite"):
        guidance_weight(float("inf"))
