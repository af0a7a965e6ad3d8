"""Attention backbones: shapes, permutation invariance / equivariance over the set axis, padded
tokens changing nothing, the gate, bad input."""

import pytest
import torch

from diffusio.nets.attention import (
    CrossAttention,
    CrossChannelAttention,
    FourierPositions,
    PerceiverDecoder,
    PerceiverEncoder,
    PerceiverIO,
)

TOL = 1e-10  # float64: permutations only reorder sums


def _set(b: int = 3, m: int = 7, d: int = 5, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, m, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_cross_attention_shapes_and_query_equivariance():
    block = CrossAttention(8, 5, heads=2).double()
    x, ctx = _set(3, 4, 8, 1), _set(3, 7, 5, 2)
    out = block(x, ctx)
    assert out.shape == (3, 4, 8)
    perm = torch.randperm(4, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(block(x[:, perm], ctx), out[:, perm], atol=TOL)
    perm = torch.randperm(7, generator=torch.Generator().manual_seed(4))
    assert torch.allclose(block(x, ctx[:, perm]), out, atol=TOL)  # context is a set


def test_padded_context_changes_nothing_and_empty_rows_are_finite():
    block = CrossAttention(8, 5, heads=2).double()
    x, ctx = _set(2, 4, 8, 1), _set(2, 7, 5, 2)
    valid = torch.ones(2, 7, dtype=torch.bool)
    padded = torch.cat([ctx, 1e3 * _set(2, 3, 5, 9)], dim=1)  # garbage in the padding
    mask = torch.cat([valid, torch.zeros(2, 3, dtype=torch.bool)], dim=1)
    assert torch.allclose(block(x, padded, mask), block(x, ctx, valid), atol=TOL)
    empty = torch.zeros(2, 10, dtype=torch.bool)
    out = block(x, padded, empty)
    assert torch.isfinite(out).all()
    assert torch.allclose(out, x + block.mlp(x), atol=TOL)  # no attention update, MLP only


def test_perceiver_encoder_is_invariant_and_decoder_equivariant():
    enc = PerceiverEncoder(5, dim=8, latents=4, depth=2, heads=2).double()
    dec = PerceiverDecoder(3, dim=8, out_dim=2, heads=2).double()
    tokens, valid = (
        _set(2, 9, 5, 1),
        torch.rand(2, 9, generator=torch.Generator().manual_seed(0)) > 0.3,
    )
    z = enc(tokens, valid)
    assert z.shape == (2, 4, 8)
    perm = torch.randperm(9, generator=torch.Generator().manual_seed(5))
    assert torch.allclose(enc(tokens[:, perm], valid[:, perm]), z, atol=TOL)
    q = _set(2, 6, 3, 7)
    out = dec(q, z)
    assert out.shape == (2, 6, 2)
    qp = torch.randperm(6, generator=torch.Generator().manual_seed(6))
    assert torch.allclose(dec(q[:, qp], z), out[:, qp], atol=TOL)
    assert torch.allclose(dec(q[:, :2], z), out[:, :2], atol=TOL)  # each query on its own


def test_perceiver_io_reads_any_number_of_tokens():
    net = PerceiverIO(pos_dim=1, value_dim=1, out_dim=1, dim=16, latents=4, heads=2).double()
    queries = torch.linspace(0, 1, 11, dtype=torch.float64).reshape(1, 11, 1)
    for m in (1, 5, 40):
        pos, val = (
            torch.rand(1, m, 1, dtype=torch.float64),
            torch.randn(1, m, 1, dtype=torch.float64),
        )
        assert net(pos, val, None, queries).shape == (1, 11, 1)
    pos, val = torch.rand(1, 5, 1, dtype=torch.float64), torch.randn(1, 5, 1, dtype=torch.float64)
    valid = torch.tensor([[True, True, True, False, False]])
    assert torch.allclose(net(pos, val, valid, queries), net(pos[:, :3], val[:, :3], None, queries),
                          atol=TOL)  # fmt: skip


def test_fourier_positions():
    f = FourierPositions(3)
    x = torch.tensor([[0.25]])
    out = f(x)
    assert out.shape == (1, f.out_dim(1)) == (1, 7)
    assert torch.allclose(
        out[0, 1:4], torch.sin(torch.pi * torch.tensor([0.25, 0.5, 1.0])), atol=1e-6
    )


def test_cross_channel_attention_equivariance_and_closed_gate():
    block = CrossChannelAttention(8, heads=2).double()
    x = torch.randn(2, 3, 5, 8, dtype=torch.float64)
    out = block(x)
    assert out.shape == x.shape
    perm = torch.tensor([2, 0, 1])
    assert torch.allclose(block(x[:, perm]), out[:, perm], atol=TOL)
    # positions do not interact: changing one position leaves the others unchanged
    y = x.clone()
    y[:, :, 0] += 1.0
    assert torch.allclose(block(y)[:, :, 1:], out[:, :, 1:], atol=TOL)
    torch.nn.init.constant_(block.gate.bias, -1e4)  # a closed gate: the identity
    assert torch.allclose(block(x), x, atol=TOL)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="multiple of heads"):
        CrossAttention(6, heads=4)
    block = CrossAttention(8, heads=2)
    with pytest.raises(ValueError, match="valid must be"):
        block(torch.randn(1, 2, 8), torch.randn(1, 3, 8), torch.ones(1, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"\(B, C, N, dim\)"):
        CrossChannelAttention(8, heads=2)(torch.randn(2, 3, 8))
