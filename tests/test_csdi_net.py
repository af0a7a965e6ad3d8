"""CSDINet (Tashiro et al. 2021, CSDI Sec. 4 / App. E): shapes, exact invariances, parameter
count by hand formula, equivariance under feature permutation, gradients, and a short fit."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from diffusio.core.losses import diffusion_loss
from diffusio.core.model import DiffusionModel
from diffusio.core.processes import make_process
from diffusio.core.samplers import sample
from diffusio.nets.csdi import CSDINet, timestamp_embedding
from diffusio.nets.mlp import count_parameters
from diffusio.train.models import build_net

SMALL = dict(channels=16, layers=2, heads=4, ff_dim=16, diffusion_embedding_dim=16,
             time_embedding_dim=8, feature_embedding_dim=4, dropout=0.0)  # fmt: skip


def _batch(n=3, k=5, length=7, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, k, length, generator=g, dtype=dtype)
    x0 = torch.randn(n, k, length, generator=g, dtype=dtype)
    mask = (torch.rand(n, k, length, generator=g) < 0.5).to(dtype)
    return x, torch.rand(n, generator=g, dtype=dtype), mask * x0, mask


def _perturbed(net: CSDINet, seed=1) -> CSDINet:
    """The zero-initialised output layer replaced by random weights (else the output is 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        net.out.weight.copy_(torch.randn(net.out.weight.shape, generator=g))
        net.out.bias.fill_(0.1)
    return net


def _transformer_count(c: int, ff: int) -> int:
    """One post-norm TransformerEncoderLayer: in_proj (3C x C + 3C), out_proj, two feed-forward
    linears, two LayerNorms."""
    return (3 * c * c + 3 * c) + (c * c + c) + (c * ff + ff) + (ff * c + c) + 2 * 2 * c


def _formula(k, channels=64, layers=4, heads=8, ff_dim=64, diffusion_embedding_dim=128,
             time_embedding_dim=128, feature_embedding_dim=16, conditional=True,
             temporal=True, feature=True, **_) -> int:  # fmt: skip
    """Parameter count layer by layer (the official diff_models.py layout + embed_layer)."""
    c, e = channels, diffusion_embedding_dim
    side = time_embedding_dim + feature_embedding_dim + int(conditional)
    step_mlp = 2 * (e * e + e)
    inputs = (2 if conditional else 1) * c + c
    block = (e * c + c) + (side * 2 * c + 2 * c) + 2 * (c * 2 * c + 2 * c)
    block += (int(temporal) + int(feature)) * _transformer_count(c, ff_dim)
    output = (c * c + c) + (c + 1)
    return step_mlp + inputs + layers * block + output + k * feature_embedding_dim


def test_shape_and_zero_output_at_init():
    net = CSDINet(5, **SMALL)
    x, t, obs, mask = _batch()
    out = net(x, t, observed=obs, cond_mask=mask)
    assert out.shape == x.shape
    assert torch.equal(out, torch.zeros_like(out))


def test_parameter_count_matches_hand_formula():
    # The official model at K = 35 (diff_CSDI 413,505 + CSDI_base.embed_layer 35 x 16 = 560):
    # the same layer list evaluated by hand, independent of the module.
    assert _formula(35) == 413_505 + 560 == 414_065
    assert count_parameters(CSDINet(35)) == _formula(35)
    for opts in ({}, {"conditional": False}, {"temporal": False}, {"feature": False}):
        assert count_parameters(CSDINet(5, **SMALL, **opts)) == _formula(5, **SMALL, **opts)


def test_ablations_drop_one_transformer_layer_per_block():
    one = count_parameters(nn.TransformerEncoderLayer(16, 4, 16, activation="gelu"))
    assert one == _transformer_count(16, 16)
    full = count_parameters(CSDINet(5, **SMALL))
    assert full - count_parameters(CSDINet(5, **SMALL, temporal=False)) == SMALL["layers"] * one
    assert full - count_parameters(CSDINet(5, **SMALL, feature=False)) == SMALL["layers"] * one
    both = CSDINet(5, **SMALL, temporal=False, feature=False)
    assert full - count_parameters(both) == 2 * SMALL["layers"] * one


def test_conditioned_entries_of_x_t_are_ignored_exactly():
    net = _perturbed(CSDINet(5, **SMALL)).eval()
    x, t, obs, mask = _batch()
    changed = x + 100.0 * mask * torch.randn_like(x)  # only where cond_mask = 1
    with torch.no_grad():
        ref = net(x, t, observed=obs, cond_mask=mask)
        assert torch.equal(net(changed, t, observed=obs, cond_mask=mask), ref)
        # observed values outside the mask are dropped: any value there (even NaN) leaks nothing
        leaky = torch.where(mask > 0, obs, torch.nan)
        assert torch.equal(net(x, t, observed=leaky, cond_mask=mask), ref)
        target = x + (1 - mask) * torch.randn_like(x)  # the noisy targets do matter
        assert not torch.allclose(net(target, t, observed=obs, cond_mask=mask), ref)


def test_unconditional_ablation_sees_x_t_only():
    net = _perturbed(CSDINet(5, **SMALL, conditional=False)).eval()
    assert net.input.in_features == 1
    x, t, obs, mask = _batch()
    with torch.no_grad():
        ref = net(x, t)
        assert torch.equal(net(x, t, observed=obs, cond_mask=mask), ref)  # ignored
        assert not torch.allclose(net(x + mask, t), ref)


def test_feature_permutation_equivariance():
    # No positional encoding along K: permuting the features and the embedding rows together
    # permutes the output, up to float64 round-off.
    torch.manual_seed(0)
    net = _perturbed(CSDINet(5, **SMALL)).double().eval()
    x, t, obs, mask = _batch(dtype=torch.float64)
    perm = torch.tensor([3, 0, 4, 1, 2])
    other = CSDINet(5, **SMALL).double().eval()
    other.load_state_dict(net.state_dict())
    with torch.no_grad():
        other.feature_embed.weight.copy_(net.feature_embed.weight[perm])
        ref = net(x, t, observed=obs, cond_mask=mask)
        out = other(x[:, perm], t, observed=obs[:, perm], cond_mask=mask[:, perm])
    torch.testing.assert_close(out, ref[:, perm], rtol=0, atol=1e-10)


@pytest.mark.parametrize("k, length", [(5, 1), (1, 7), (1, 1)])
def test_length_one_dimensions_skip_their_transformer(k, length):
    net = _perturbed(CSDINet(k, **SMALL)).eval()
    x, t, obs, mask = _batch(k=k, length=length)
    skipped = {"temporal": False} if length == 1 else {"feature": False}
    bare = CSDINet(k, **SMALL, **skipped).eval()
    bare.load_state_dict(net.state_dict(), strict=False)  # the same weights minus one layer
    with torch.no_grad():
        out = net(x, t, observed=obs, cond_mask=mask)
        assert out.shape == (3, k, length) and torch.isfinite(out).all()
        assert torch.equal(bare(x, t, observed=obs, cond_mask=mask), out)


def test_bad_inputs_raise_value_error():
    net = CSDINet(5, **SMALL)
    x, t, obs, mask = _batch(k=4)
    with pytest.raises(ValueError, match=r"n_features=5"):
        net(x, t, observed=obs, cond_mask=mask)
    x, t, obs, mask = _batch()
    with pytest.raises(ValueError, match="cond_mask"):
        net(x, t, observed=obs)
    with pytest.raises(ValueError, match="timestamps"):
        net(x, t, observed=obs, cond_mask=mask, timestamps=torch.zeros(3, 6))
    with pytest.raises(ValueError, match="heads"):
        CSDINet(5, channels=10, heads=4)
    with pytest.raises(ValueError, match="step_embedding"):
        CSDINet(5, step_embedding="integer")


def test_embeddings_match_their_formulas():
    # Timestamps: sin at even, cos at odd indices, frequency 10000^(-2i/d) (CSDI's
    # time_embedding); steps: s = T t - 1 is the official integer step on the grid t = i / T.
    pos = torch.tensor([[0.0, 1.0, 5.0]], dtype=torch.float64)
    emb = timestamp_embedding(pos, 8)
    w = 10000.0 ** (-torch.arange(0, 8, 2, dtype=torch.float64) / 8)
    torch.testing.assert_close(emb[..., 0::2], torch.sin(pos[..., None] * w), rtol=0, atol=1e-15)
    torch.testing.assert_close(emb[..., 1::2], torch.cos(pos[..., None] * w), rtol=0, atol=1e-15)
    net = CSDINet(2, step_embedding="csdi")
    steps = torch.arange(50, dtype=torch.float64)
    freqs = 10.0 ** (torch.arange(64, dtype=torch.float64) / 63 * 4.0)
    table = torch.cat([torch.sin(steps[:, None] * freqs), torch.cos(steps[:, None] * freqs)], 1)
    got = net._steps((steps + 1) / 50, 50, steps)
    torch.testing.assert_close(got, table, rtol=0, atol=1e-9)  # |angle| <= 5e5: 1e-16 relative


def test_gradients_reach_every_parameter():
    net = _perturbed(CSDINet(5, **SMALL)).train()
    x, t, obs, mask = _batch()
    net(x, t, observed=obs, cond_mask=mask).square().sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_builds_from_a_json_config_and_samples_through_diffusio():
    options = json.loads(json.dumps({"n_features": 3, **SMALL, "step_embedding": "smooth"}))
    net = build_net("diffusio.nets.csdi.CSDINet", options)
    model = DiffusionModel(_perturbed(net).eval(), make_process("vp-quadratic"), "eps")
    x, _, obs, mask = _batch(k=3, length=6)
    for sampler, steps in (("ddpm", None), ("dpm-solver++", 10)):  # 50 grid steps; off-grid
        out = sample(model, x.shape, sampler=sampler, steps=steps, seed=0,
                     cond={"observed": obs, "cond_mask": mask})  # fmt: skip
        assert out.shape == x.shape and torch.isfinite(out).all()


def test_short_training_lowers_the_masked_eps_loss():
    # Through diffusio's own loss: vp-quadratic (CSDI's 50-step "quad" table), discrete times,
    # the loss mask = the held-out targets. Smooth series (sines with random phase) are
    # predictable from the conditioning values, so the eps-loss must fall well below its value
    # at init (exactly E[eps^2] over the targets, since the network outputs 0).
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    n, k, length = 32, 2, 8
    phase = 2 * math.pi * torch.rand(n, 1, 1, generator=g)
    x0 = torch.sin(torch.arange(length) / 2.0 + phase + torch.tensor([0.0, 1.0])[:, None])
    cond_mask = (torch.rand(n, k, length, generator=g) < 0.5).float()
    cond = {"observed": cond_mask * x0, "cond_mask": cond_mask}
    model = DiffusionModel(CSDINet(k, **SMALL), make_process("vp-quadratic"), "eps")

    def loss(seed=None):
        gen = None if seed is None else torch.Generator().manual_seed(seed)
        return diffusion_loss(model, x0, time_distribution="discrete", cond=cond,
                              mask=1 - cond_mask, generator=gen)  # fmt: skip

    with torch.no_grad():
        before = loss(123).item()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(120):
        opt.zero_grad()
        loss().backward()
        opt.step()
    with torch.no_grad():
        after = loss(123).item()
    assert after < 0.7 * before, (before, after)
