"""The KL-regularised autoencoder of latent diffusion (Rombach et al. 2022, Sec. 3.1 and App. G;
the official ``AutoencoderKL`` and ``LPIPSWithDiscriminator``), at MNIST scale.

Encoder: conv3x3, then per level ``num_res_blocks`` ResNet blocks (GroupNorm, SiLU, conv3x3,
twice, with a residual) and a stride-2 conv3x3 between levels, two middle blocks, GroupNorm,
SiLU, conv3x3 to ``2 C_z`` channels and the official 1x1 ``quant_conv``: the mean and
log-variance of a diagonal Gaussian posterior over a C_z-channel latent at downsampling factor
``f = 2^(levels - 1)`` in {1, 2, 4, 8}. The decoder mirrors it (``post_quant_conv``, middle
blocks, ``num_res_blocks + 1`` blocks per level, nearest x2 upsampling + conv3x3). The official
middle self-attention is left out (CPU scale). Sizes not divisible by f (28x28 at f = 8) are
padded by edge replication to the next multiple (28 -> 32, a 4x4 latent) and cropped back after
decoding: pass ``image_size``. (The paper's f = 7 analogue for 28x28 is f = 8 with this padding.)

Loss (the official ``LPIPSWithDiscriminator``, its learned output log-variance fixed at its
initial 0), per batch of N:

    L = sum_pixels(|x - x_hat| + w_p d_p(x, x_hat)) / N + w_kl KL / N + lambda_adv L_G,
    KL = sum_latent 1/2 (mu^2 + sigma^2 - 1 - log sigma^2)          (to N(0, I), per example)

``d_p`` is a perceptual distance from any ``feature_fn`` (LPIPS-style: features unit-normalised
over channels, squared differences averaged; train that network here on the data -- never use
the FID classifier, which the evaluation uses and would be gamed). The optional PatchGAN
discriminator (Isola et al. 2017; ``NLayerDiscriminator``) is trained with the hinge loss
``1/2 (E relu(1 - D(x)) + E relu(1 + D(x_hat)))`` from step ``disc_start`` on; the generator
term ``L_G = -E D(x_hat)`` has the official *adaptive* weight ``lambda_adv = disc_weight *
||grad_last L_rec|| / (||grad_last L_G|| + 1e-4)`` (gradients at the decoder's last layer,
clamped to [0, 1e4]) or, with ``adaptive=False``, the fixed ``disc_weight``.

:func:`train_autoencoder` trains, computes the latent scale factor (1 / std of the training
latents, :func:`diffusio.core.latent.latent_scale`) and writes ``autoencoder.safetensors`` and
``autoencoder.json`` atomically; a finished run with the same recipe is loaded instead.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.functional import interpolate, leaky_relu, pad, relu, silu

from .. import io as _io
from ..core.latent import LatentModel, latent_scale
from ..core.model import DiffusionModel
from ..core.vlb import normal_kl

__all__ = ["AutoencoderKL", "PatchDiscriminator", "kl_divergence", "load_autoencoder",
           "perceptual_distance", "psnr", "reconstruction_quality", "train_autoencoder"]  # fmt: skip

FACTORS = (1, 2, 4, 8)
_FORMAT = "diffusio-autoencoder-kl-1"
FeatureFn = Callable[[Tensor], Tensor | Sequence[Tensor]]


def _norm(ch: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(ch, groups), ch, eps=1e-6)


class _Block(nn.Module):
    """The official ``ResnetBlock`` without a time embedding."""

    def __init__(self, cin: int, cout: int, groups: int):
        super().__init__()
        self.norm1, self.conv1 = _norm(cin, groups), nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2, self.conv2 = _norm(cout, groups), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv2(silu(self.norm2(self.conv1(silu(self.norm1(x))))))
        return self.skip(x) + h


class _Up(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(interpolate(x, scale_factor=2.0, mode="nearest"))


def _sizes(image_size: int | Sequence[int] | None) -> tuple[int, int] | None:
    if image_size is None:
        return None
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    return int(h), int(w)


class AutoencoderKL(nn.Module):
    """``encode(x) -> z`` (C_z, H/f, W/f), ``decode(z) -> x``; images (N, C, H, W) in [-1, 1].

    ``channel_mult`` (default ``(1, 2, 2, 4)`` cut to ``log2 f + 1`` levels) times ``channels``
    gives each level's width. ``scale_factor`` (None until computed, then stored with the
    weights) is the latent scale of :func:`diffusio.core.latent.latent_scale`."""

    def __init__(self, in_channels: int = 1, f: int = 4, latent_channels: int = 4,
                 channels: int = 32, channel_mult: Sequence[int] | None = None,
                 num_res_blocks: int = 1, groups: int = 8,
                 image_size: int | Sequence[int] | None = None):  # fmt: skip
        super().__init__()
        if f not in FACTORS:
            raise ValueError(f"f must be one of {FACTORS}, got {f}")
        levels = int(math.log2(f)) + 1
        mult = tuple((1, 2, 2, 4)[:levels] if channel_mult is None else channel_mult)
        if len(mult) != levels:
            raise ValueError(f"channel_mult needs {levels} levels for f = {f}, got {mult}")
        self.options = {"in_channels": in_channels, "f": f, "latent_channels": latent_channels,
                        "channels": channels, "channel_mult": list(mult),
                        "num_res_blocks": num_res_blocks, "groups": groups,
                        "image_size": None if image_size is None else list(_sizes(image_size))}  # fmt: skip
        self.f, self.latent_channels, self.image_size = f, latent_channels, _sizes(image_size)
        self.scale_factor: float | None = None
        widths = [channels * m for m in mult]
        enc: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, padding=1)]
        cin = widths[0]
        for i, w in enumerate(widths):
            for _ in range(num_res_blocks):
                enc.append(_Block(cin, w, groups))
                cin = w
            if i < levels - 1:
                enc.append(nn.Conv2d(w, w, 3, stride=2, padding=1))
        enc += [_Block(cin, cin, groups), _Block(cin, cin, groups), _norm(cin, groups), nn.SiLU(),
                nn.Conv2d(cin, 2 * latent_channels, 3, padding=1),
                nn.Conv2d(2 * latent_channels, 2 * latent_channels, 1)]  # fmt: skip
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [nn.Conv2d(latent_channels, latent_channels, 1),
                                nn.Conv2d(latent_channels, cin, 3, padding=1),
                                _Block(cin, cin, groups), _Block(cin, cin, groups)]  # fmt: skip
        for i in reversed(range(levels)):
            for _ in range(num_res_blocks + 1):
                dec.append(_Block(cin, widths[i], groups))
                cin = widths[i]
            if i > 0:
                dec.append(_Up(cin))
        self.conv_out = nn.Conv2d(cin, in_channels, 3, padding=1)
        self.decoder = nn.Sequential(*dec, _norm(cin, groups), nn.SiLU(), self.conv_out)

    def _padded(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.options["in_channels"]:
            raise ValueError(f"expected images (N, {self.options['in_channels']}, H, W), got "
                             f"{tuple(x.shape)}")  # fmt: skip
        h, w = x.shape[-2:]
        if self.image_size is not None and (h, w) != self.image_size:
            raise ValueError(f"expected {self.image_size[0]}x{self.image_size[1]} images, got "
                             f"{h}x{w}")  # fmt: skip
        ph, pw = -h % self.f, -w % self.f
        if (ph or pw) and self.image_size is None:
            raise ValueError(f"{h}x{w} is not divisible by f = {self.f}: pass image_size=({h}, "
                             f"{w}) to pad by edge replication and crop after decoding")  # fmt: skip
        return pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x

    def encode_dist(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The posterior's mean and log-variance (clamped to [-30, 20], as the official
        ``DiagonalGaussianDistribution``)."""
        mean, logvar = self.encoder(self._padded(x)).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def encode(self, x: Tensor, sample: bool = False,
               generator: torch.Generator | None = None) -> Tensor:  # fmt: skip
        """The posterior mean, or with ``sample`` a draw ``mean + sigma eps``."""
        mean, logvar = self.encode_dist(x)
        if not sample:
            return mean
        eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        return mean + torch.exp(0.5 * logvar) * eps

    def decode(self, z: Tensor) -> Tensor:
        """Images from latents (cropped to ``image_size`` when the encoder padded)."""
        if z.dim() != 4 or z.shape[1] != self.latent_channels:
            raise ValueError(f"expected latents (N, {self.latent_channels}, h, w), got "
                             f"{tuple(z.shape)}")  # fmt: skip
        x = self.decoder(z)
        return x if self.image_size is None else x[..., : self.image_size[0], : self.image_size[1]]

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, ...]:
        """``(reconstruction of a posterior sample, mean, logvar)``."""
        mean, logvar = self.encode_dist(x)
        z = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=generator,
                                                           dtype=mean.dtype, device=mean.device)  # fmt: skip
        return self.decode(z), mean, logvar

    def latent_model(self, model: DiffusionModel) -> LatentModel:
        """``model`` (over scaled latents) with this autoencoder and its stored scale factor."""
        if self.scale_factor is None:
            raise ValueError("no scale factor yet: compute it with latent_scale(autoencoder, data)")
        return LatentModel(model, self, self.scale_factor)


def kl_divergence(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) per example, summed over the latent (closed form for
    diagonal Gaussians: 1/2 sum(mu^2 + sigma^2 - 1 - log sigma^2); Kingma & Welling 2014, App. B)."""
    zero = torch.zeros_like(mean)
    return normal_kl(mean, logvar, zero, zero).flatten(1).sum(1)


def perceptual_distance(feature_fn: FeatureFn, x: Tensor, y: Tensor) -> Tensor:
    """LPIPS-style distance (Zhang et al. 2018, eq. 1, with unit weights) per example: for each
    feature map of ``feature_fn``, unit-normalised over channels, the squared difference averaged
    over channels and positions; summed over maps."""
    fx, fy = feature_fn(x), feature_fn(y)
    fx, fy = ([fx], [fy]) if isinstance(fx, Tensor) else (list(fx), list(fy))
    total = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    for a, b in zip(fx, fy, strict=True):
        if a.dim() == 2:
            a, b = a[:, :, None], b[:, :, None]
        a = a / (a.norm(dim=1, keepdim=True) + 1e-10)
        b = b / (b.norm(dim=1, keepdim=True) + 1e-10)
        total = total + ((a - b) ** 2).flatten(1).mean(1)
    return total


def psnr(x: Tensor, y: Tensor, data_range: float = 2.0) -> Tensor:
    """Peak signal-to-noise ratio per image, ``10 log10(range^2 / MSE)`` in dB (range 2 for
    images in [-1, 1]; inf for a perfect reconstruction)."""
    if x.shape != y.shape:
        raise ValueError(f"shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")
    mse = ((x.double() - y.double()) ** 2).flatten(1).mean(1)
    return 10.0 * torch.log10(data_range**2 / mse)


class PatchDiscriminator(nn.Module):
    """PatchGAN (pix2pix's ``NLayerDiscriminator``): conv4x4/2 + LeakyReLU(0.2), ``layers``
    conv4x4/2 + BatchNorm + LeakyReLU, conv4x4/1 + BatchNorm + LeakyReLU, conv4x4/1 -> one logit
    per patch."""

    def __init__(self, in_channels: int = 1, channels: int = 32, layers: int = 1):
        super().__init__()
        mods: list[nn.Module] = [nn.Conv2d(in_channels, channels, 4, 2, 1)]
        ch = channels
        for i in range(layers + 1):
            out = channels * min(2 ** (i + 1), 8)
            mods += [nn.Conv2d(ch, out, 4, 2 if i < layers else 1, 1, bias=False),
                     nn.BatchNorm2d(out)]  # fmt: skip
            ch = out
        self.body = nn.ModuleList(mods)
        self.head = nn.Conv2d(ch, 1, 4, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = leaky_relu(self.body[0](x), 0.2)
        for conv, norm in zip(self.body[1::2], self.body[2::2], strict=True):
            h = leaky_relu(norm(conv(h)), 0.2)
        return self.head(h)


def _adaptive_weight(rec: Tensor, gen: Tensor, last: Tensor, weight: float) -> Tensor:
    (g_rec,) = torch.autograd.grad(rec, last, retain_graph=True)
    (g_gen,) = torch.autograd.grad(gen, last, retain_graph=True)
    return (g_rec.norm() / (g_gen.norm() + 1e-4)).clamp(0.0, 1e4).detach() * weight


def _loss(ae: AutoencoderKL, x: Tensor, gen: torch.Generator, hp: dict[str, Any],
          feature_fn: FeatureFn | None, disc: PatchDiscriminator | None,
          adversarial: bool) -> tuple[Tensor, dict[str, float]]:  # fmt: skip
    recon, mean, logvar = ae(x, generator=gen)
    rec = (x - recon).abs()
    if feature_fn is not None and hp["perceptual_weight"] > 0:
        p = perceptual_distance(feature_fn, x, recon)
        rec = rec + hp["perceptual_weight"] * p.reshape(-1, 1, 1, 1)
    rec = rec.sum() / x.shape[0]
    kl = kl_divergence(mean, logvar).mean()
    loss = rec + hp["kl_weight"] * kl
    parts = {"rec": float(rec.detach()), "kl": float(kl.detach())}
    if disc is not None and adversarial:
        g = -disc(recon).mean()
        w = (_adaptive_weight(rec, g, ae.conv_out.weight, hp["disc_weight"]) if hp["adaptive"]
             else torch.tensor(hp["disc_weight"]))  # fmt: skip
        loss = loss + w * g
        parts.update(g=float(g.detach()), d_weight=float(w))
    return loss, {"loss": float(loss.detach()), **parts}


def _paths(out_dir: str | os.PathLike) -> tuple[Path, Path]:
    out = Path(out_dir)
    return out / "autoencoder.safetensors", out / "autoencoder.json"


def load_autoencoder(out_dir: str | os.PathLike) -> tuple[AutoencoderKL, dict[str, Any]]:
    """``(autoencoder in eval mode with its scale_factor, info)`` from a finished
    :func:`train_autoencoder` directory; FileNotFoundError if unfinished, ValueError if corrupt."""
    weights, meta_path = _paths(out_dir)
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path}: no finished autoencoder run")
    info = _io.read_json(meta_path)
    tensors, meta = _io.read_safetensors(weights)
    if meta.get("format") != _FORMAT or info.get("format") != _FORMAT:
        raise ValueError(f"{out_dir}: not an autoencoder run ({_FORMAT})")
    ae = AutoencoderKL(**info["options"])
    _io.apply_tensors(ae, tensors, weights)
    ae.scale_factor = float(info["scale_factor"])
    return ae.eval(), info


def train_autoencoder(
    images: Tensor,
    out_dir: str | os.PathLike,
    f: int = 4,
    steps: int = 2000,
    *,
    batch_size: int = 32,
    lr: float = 5e-4,
    seed: int = 0,
    latent_channels: int = 4,
    channels: int = 32,
    num_res_blocks: int = 1,
    kl_weight: float = 1e-6,
    perceptual_weight: float = 1.0,
    feature_fn: FeatureFn | None = None,
    feature_name: str | None = None,
    disc_start: int | None = None,
    disc_weight: float = 0.5,
    adaptive: bool = True,
    disc_layers: int = 1,
    log_every: int = 50,
) -> tuple[AutoencoderKL, dict[str, Any]]:
    """Train an :class:`AutoencoderKL` on ``images`` (N, C, H, W) in [-1, 1] with the loss of
    the module docstring (Adam, betas (0.5, 0.9), as the official configs), compute its scale
    factor on ``images`` and write ``out_dir/autoencoder.{safetensors,json}`` atomically (the
    JSON last: it marks the run finished). A finished run with the same recipe (data digest,
    options, hyper-parameters, ``feature_name`` naming the perceptual network) is loaded and
    returned with ``info["resumed"] = True``; a different one in ``out_dir`` raises ValueError.

    ``disc_start``: the step the PatchGAN is switched on (None: never). Deterministic given
    ``seed``; the global RNG is untouched. Returns ``(autoencoder in eval mode, info)`` with
    ``scale_factor``, ``psnr`` (mean dB on ``images``), ``log`` and ``train_seconds``."""
    if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[0] < 2:
        raise ValueError("images must be a tensor (N, C, H, W) with N >= 2")
    if int(steps) < 0 or int(batch_size) < 1:
        raise ValueError(f"steps must be >= 0 and batch_size >= 1, got {steps}, {batch_size}")
    if feature_fn is not None and perceptual_weight > 0 and not feature_name:
        raise ValueError("name the perceptual network (feature_name=...): it is part of the recipe")
    images = images.detach().float()
    h, w = images.shape[-2:]
    size = (h, w) if h % f or w % f else None
    options = {"in_channels": images.shape[1], "f": f, "latent_channels": latent_channels,
               "channels": channels, "num_res_blocks": num_res_blocks, "image_size": size}  # fmt: skip
    hp = {"steps": int(steps), "batch_size": int(batch_size), "lr": lr, "seed": seed,
          "kl_weight": kl_weight, "perceptual_weight": perceptual_weight if feature_fn else 0.0,
          "feature": feature_name if feature_fn else None, "disc_start": disc_start,
          "disc_weight": disc_weight, "adaptive": adaptive, "disc_layers": disc_layers}  # fmt: skip
    recipe = {"data_sha256": _io.tensor_digest({"x": images}), "options": options, "train": hp}
    weights, meta_path = _paths(out_dir)
    if meta_path.is_file():
        done = _io.read_json(meta_path)
        if done.get("recipe_hash") != _io.json_hash(recipe):
            raise ValueError(f"{out_dir} holds a different autoencoder run: use another out_dir")
        ae, info = load_autoencoder(out_dir)
        return ae, {**info, "resumed": True}
    with torch.random.fork_rng(devices=[]):  # seeded initialisation, global RNG untouched
        torch.manual_seed(seed)
        ae = AutoencoderKL(**options)
        disc = (PatchDiscriminator(images.shape[1], channels, disc_layers)
                if disc_start is not None else None)  # fmt: skip
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(ae.parameters(), lr=lr, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(disc.parameters(), lr=lr, betas=(0.5, 0.9)) if disc else None
    log: list[dict[str, float]] = []
    start = time.perf_counter()
    ae.train()
    for step in range(int(steps)):
        x = images[torch.randint(0, images.shape[0], (int(batch_size),), generator=gen)]
        adversarial = disc is not None and step >= int(disc_start)  # type: ignore[arg-type]
        loss, parts = _loss(ae, x, gen, hp, feature_fn, disc, adversarial)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if adversarial and disc is not None and opt_d is not None:
            with torch.no_grad():
                fake = ae(x, generator=gen)[0]
            d_loss = 0.5 * (relu(1.0 - disc(x)).mean() + relu(1.0 + disc(fake)).mean())
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            parts["d_loss"] = float(d_loss.detach())
        if step % log_every == 0 or step == int(steps) - 1:
            log.append({"step": step, **{k: round(v, 6) for k, v in parts.items()}})
    ae.eval()
    scale = latent_scale(ae, images)
    ae.scale_factor = scale
    with torch.no_grad():
        quality = float(psnr(torch.cat([ae.decode(ae.encode(images[i : i + 256]))
                                        for i in range(0, len(images), 256)]), images).mean())  # fmt: skip
    info = {"format": _FORMAT, "options": ae.options, "scale_factor": scale, "psnr": quality,
            "train_seconds": round(time.perf_counter() - start, 2), "log": log,
            "recipe": recipe, "recipe_hash": _io.json_hash(recipe)}  # fmt: skip
    meta = {"format": _FORMAT, "scale_factor": repr(scale)}
    _io.write_safetensors(weights, ae.state_dict(), meta)
    _io.write_json_atomic(meta_path, info)
    return ae, {**info, "resumed": False}


def reconstruction_quality(ae: AutoencoderKL, images: Tensor, bench: Any,
                           bootstrap: int = 0) -> dict[str, Any]:  # fmt: skip
    """Reconstructions of ``images`` (clamped to [-1, 1]) scored against them: per-image
    ``psnr_test`` (dB), ``rfid`` and its bootstrap error ``rfid_se`` in ``bench``'s FID features
    (a :class:`~diffusio.image.caption_bench.CaptionBench`), and the ``latent_shape``."""
    with torch.no_grad():
        z = ae.encode(images)
        rec = ae.decode(z).clamp(-1, 1)
    fid, se = bench.fid(rec, images, bootstrap)
    return {"psnr_test": psnr(rec, images).tolist(), "rfid": fid, "rfid_se": se,
            "latent_shape": list(z.shape[1:])}
