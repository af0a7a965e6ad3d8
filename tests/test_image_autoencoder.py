"""The KL autoencoder (diffusio.image.autoencoder): shapes at every f, the KL term against the
closed form, PSNR, a short training run that must improve reconstructions, the stored scale
factor, the discriminator and perceptual paths, and bad inputs."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from diffusio.core.latent import LatentModel
from diffusio.core.oracle import GaussianMixture
from diffusio.core.processes import make_process
from diffusio.image.autoencoder import (
    AutoencoderKL,
    PatchDiscriminator,
    kl_divergence,
    load_autoencoder,
    perceptual_distance,
    psnr,
    train_autoencoder,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def blobs(n: int = 64, size: int = 16, seed: int = 0) -> torch.Tensor:
    """n tiny images in {-1, 1}: a disc of radius sqrt(12) at a random centre."""
    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size * 1.0), torch.arange(size * 1.0), indexing="ij")
    c = torch.rand(n, 2, generator=gen) * (size - 6) + 3
    disc = (yy - c[:, 0, None, None]) ** 2 + (xx - c[:, 1, None, None]) ** 2 < 12
    return disc.float()[:, None] * 2 - 1


TINY = {"f": 4, "batch_size": 16, "channels": 8, "latent_channels": 2, "lr": 2e-3}


@pytest.mark.parametrize("f", [1, 2, 4, 8])
def test_shapes_for_each_factor(f):
    ae = AutoencoderKL(1, f, latent_channels=3, channels=8)
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    z = ae.encode(x)
    assert z.shape == (2, 3, 16 // f, 16 // f) and ae.decode(z).shape == x.shape
    mean, logvar = ae.encode_dist(x)
    torch.testing.assert_close(mean, z)
    gen = torch.Generator().manual_seed(0)
    drawn = ae.encode(x, sample=True, generator=gen)
    eps = torch.randn(mean.shape, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(drawn, mean + torch.exp(0.5 * logvar) * eps)
    # 28x28 at every f: f = 8 pads by replication to 32 (a 4x4 latent) and crops back
    ae28 = AutoencoderKL(1, f, latent_channels=3, channels=8, image_size=28)
    x28 = torch.rand(2, 1, 28, 28) * 2 - 1
    z28 = ae28.encode(x28)
    assert z28.shape[-1] == math.ceil(28 / f) and ae28.decode(z28).shape == x28.shape


def test_kl_matches_the_closed_form():
    gen = torch.Generator().manual_seed(1)
    mean = torch.randn(5, 3, 4, 4, generator=gen, dtype=torch.float64)
    logvar = torch.randn(5, 3, 4, 4, generator=gen, dtype=torch.float64)
    ref = (
        torch.distributions.kl_divergence(
            torch.distributions.Normal(mean, torch.exp(0.5 * logvar)),
            torch.distributions.Normal(torch.zeros_like(mean), torch.ones_like(mean)),
        )
        .flatten(1)
        .sum(1)
    )
    torch.testing.assert_close(kl_divergence(mean, logvar), ref, rtol=1e-12, atol=1e-12)
    zero = torch.zeros(2, 4)
    assert (kl_divergence(zero, zero) == 0).all()  # the prior itself
    # one coordinate, mu = 1, sigma^2 = e: 1/2 (1 + e - 1 - 1) = (e - 1) / 2
    one = kl_divergence(torch.ones(1, 1), torch.ones(1, 1))
    assert float(one) == pytest.approx((math.e - 1) / 2, rel=1e-6)


def test_psnr():
    x = torch.zeros(2, 1, 4, 4)
    # MSE 0.04 over a range of 2: 10 log10(4 / 0.04) = 20 dB exactly
    torch.testing.assert_close(psnr(x, x + 0.2), torch.full((2,), 20.0, dtype=torch.float64))
    assert torch.isinf(psnr(x, x)).all()
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(x, x[:1])


def test_training_improves_round_trip_and_stores_the_scale(tmp_path):
    images = blobs()
    before = torch.get_rng_state()
    ae0, info0 = train_autoencoder(images, tmp_path / "untrained", steps=0, **TINY)
    ae, info = train_autoencoder(images, tmp_path / "run", steps=60, log_every=10, **TINY)
    assert torch.equal(torch.get_rng_state(), before)  # the global RNG is untouched
    # 60 steps on 64 tiny discs: ~4.6 dB (untrained) -> ~16.5 dB; ask for 6 dB of the gain
    assert info["psnr"] > info0["psnr"] + 6.0 and not info["resumed"]
    assert len(info["log"]) == 7 and info["log"][-1]["step"] == 59
    with torch.no_grad():
        z = ae.encode(images)
        assert float(psnr(ae.decode(z), images).mean()) == pytest.approx(info["psnr"], abs=1e-6)
    # the scale factor: 1 / std of the training latents (posterior means), stored and reloaded
    assert info["scale_factor"] == ae.scale_factor == pytest.approx(1 / float(z.double().std()))
    loaded, meta = load_autoencoder(tmp_path / "run")
    assert loaded.scale_factor == info["scale_factor"] == meta["scale_factor"]
    with torch.no_grad():
        torch.testing.assert_close(loaded.decode(z), ae.decode(z), rtol=0, atol=0)
    # a finished run is resumed (not retrained); another recipe in the same folder is refused
    again, info2 = train_autoencoder(images, tmp_path / "run", steps=60, log_every=10, **TINY)
    assert info2["resumed"] and info2["train_seconds"] == info["train_seconds"]
    with pytest.raises(ValueError, match="different autoencoder run"):
        train_autoencoder(images, tmp_path / "run", steps=61, **TINY)
    # the same seed trains the same weights
    twin, _ = train_autoencoder(images, tmp_path / "twin", steps=60, log_every=10, **TINY)
    for (name, a), b in zip(ae.state_dict().items(), twin.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    # the latent model: an oracle over scaled latents decodes to images; unit-std latents
    oracle = GaussianMixture(torch.zeros(1, 2 * 4 * 4), 1.0).model(
        make_process("vp-linear"), dtype=torch.float32
    )
    latent = loaded.latent_model(oracle)
    assert isinstance(latent, LatentModel) and latent.scale == loaded.scale_factor
    with torch.no_grad():
        assert float(latent.encode(images).double().std()) == pytest.approx(1.0, abs=1e-5)
    out = latent.sample_images((3, 2, 4, 4), "ddim", 5, seed=0)
    assert out.shape == (3, 1, 16, 16) and torch.isfinite(out).all()


def test_discriminator_and_perceptual_paths(tmp_path):
    images = blobs(32)
    disc = PatchDiscriminator(1, 8, layers=1)
    assert disc(images[:2]).shape == (2, 1, 2, 2)  # 16 -> 8 -> 4 -> 3 -> 2: patch logits
    assert PatchDiscriminator(1, 8, layers=1)(torch.zeros(2, 1, 28, 28)).shape == (2, 1, 5, 5)
    # the adaptive weight: switched on at disc_start, finite and non-negative
    _, info = train_autoencoder(images, tmp_path / "adv", steps=8, disc_start=4, log_every=1,
                                **TINY)  # fmt: skip
    log = info["log"]
    assert all("d_loss" not in r for r in log[:4]) and all("d_loss" in r for r in log[4:])
    assert all(math.isfinite(r["d_weight"]) and r["d_weight"] >= 0 for r in log[4:])
    _, fixed = train_autoencoder(images, tmp_path / "fixed", steps=6, disc_start=4,
                                 adaptive=False, disc_weight=0.3, log_every=1, **TINY)  # fmt: skip
    assert [r["d_weight"] for r in fixed["log"][4:]] == pytest.approx([0.3, 0.3])

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2))
    net.requires_grad_(False)

    def features(x):
        return [net[0](x), net(x)]

    assert (perceptual_distance(features, images, images) == 0).all()
    assert (perceptual_distance(features, images, -images) > 0).all()
    with pytest.raises(ValueError, match="feature_name"):
        train_autoencoder(images, tmp_path / "p", steps=2, feature_fn=features, **TINY)
    _, perc = train_autoencoder(images, tmp_path / "p", steps=2, feature_fn=features,
                                feature_name="random-conv", **TINY)  # fmt: skip
    assert perc["recipe"]["train"]["feature"] == "random-conv"


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="f must be one of"):
        AutoencoderKL(1, 3)
    with pytest.raises(ValueError, match="levels"):
        AutoencoderKL(1, 4, channel_mult=(1, 2))
    ae = AutoencoderKL(1, 8, channels=8)
    with pytest.raises(ValueError, match="not divisible"):
        ae.encode(torch.zeros(1, 1, 28, 28))
    with pytest.raises(ValueError, match="expected images"):
        ae.encode(torch.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match="expected 28x28"):
        AutoencoderKL(1, 8, channels=8, image_size=28).encode(torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match="expected latents"):
        ae.decode(torch.zeros(1, 3, 2, 2))
    with pytest.raises(ValueError, match="no scale factor"):
        ae.latent_model(GaussianMixture(torch.zeros(1, 8), 1.0).model(make_process("ve")))
    with pytest.raises(ValueError, match="N >= 2"):
        train_autoencoder(torch.zeros(1, 16, 16), tmp_path / "bad")
    with pytest.raises(FileNotFoundError):
        load_autoencoder(tmp_path / "missing")
