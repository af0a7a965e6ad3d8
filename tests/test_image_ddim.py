"""image.ddim: DDIM's deterministic decoder, its inversion, the interpolation rules and the
consistency / reconstruction measurements (Song, Meng & Ermon 2021, Sec. 5.3-5.4)."""

from __future__ import annotations

import torch

from diffusio.core.samplers import ddim_encode
from diffusio.image.analysis import TINY_UNET
from diffusio.image.ddim import (
    class_agreement,
    ddim_decode,
    interpolate,
    lerp,
    reconstruction_errors,
    slerp,
)
from diffusio.train.config import build_model, load_config


def _model():
    """An untrained digits U-Net: its output layer is zero, so eps_theta = 0."""
    return build_model(load_config("digits-ddpm", net_options=TINY_UNET)).eval()


def _x0():
    return torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_encode_then_decode_inverts_with_many_steps():
    """With eps = 0 (x0_hat = x / alpha) the DDIM ODE is exactly invertible; with a random net
    the round trip's error shrinks as S grows."""
    model, x0 = _model(), _x0()
    assert torch.allclose(ddim_decode(model, ddim_encode(model, x0, 10), 10), x0, atol=1e-5)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    errors = [float((ddim_decode(model, ddim_encode(model, x0, S), S) - x0).pow(2).mean())
              for S in (5, 50)]  # fmt: skip
    assert errors[1] < errors[0]


def test_reconstruction_errors_rows_and_shown():
    out = reconstruction_errors(_model(), _x0(), (3, 6), keep=2)
    assert [row["steps"] for row in out["rows"]] == [3, 6]
    assert all(row["mse"] < 1e-9 and row["latent_std"] > 0 for row in out["rows"])  # exact
    assert set(out["shown"]) == {3, 6} and out["shown"][3][1].shape == (2, 1, 8, 8)
    assert out["originals"].shape == (2, 1, 8, 8)


def test_slerp_keeps_the_norm_and_the_ends():
    gen = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(4, 1, 8, 8, generator=gen), torch.randn(4, 1, 8, 8, generator=gen)
    assert torch.allclose(slerp(z0, z1, 0.0), z0, atol=1e-5)
    assert torch.allclose(slerp(z0, z1, 1.0), z1, atol=1e-5)
    mid = slerp(z0, z1, 0.5).reshape(4, -1).norm(dim=1)
    ends = (z0.reshape(4, -1).norm(dim=1) + z1.reshape(4, -1).norm(dim=1)) / 2
    assert torch.allclose(mid, ends, rtol=0.15)  # ~ the ends' norm; a lerp would shrink it
    assert float(lerp(z0, z1, 0.5).reshape(4, -1).norm(dim=1).mean()) < 0.85 * float(ends.mean())


def test_interpolate_decodes_every_point():
    gen = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(2, 1, 8, 8, generator=gen), torch.randn(2, 1, 8, 8, generator=gen)
    out = interpolate(_model(), z0, z1, 3, 2, confidence=lambda x: float(len(x)))
    for name in ("slerp", "linear"):
        assert out[name]["images"].shape == (6, 1, 8, 8)
        assert out[name]["confidence_inner"] == 2.0  # the middle point of two rows
    assert out["linear"]["norm_mid"] < out["slerp"]["norm_mid"]
    assert out["norm_ends"] > 0


def test_class_agreement():
    ref = torch.tensor([0, 1, 1, 2])
    classes = {(0.0, 8): ref, (0.0, 2): torch.tensor([0, 1, 2, 2]), (1.0, 2): ref}
    rows = class_agreement(classes, (0.0, 1.0), (2,), 8)  # eta = 1 has no long run
    assert rows == [{"eta": 0.0, "steps": 2, "agreement": 0.75, "chance": 0.375}]
