"""SpatialTransformer (LDM's cross-attention block) and the U-Net's text / cascade conditioning:
identity at initialisation, padding invariance, the null caption, and a default U-Net that is
bit-identical to the one before these options existed."""

import pytest
import torch
from torch import nn

from diffusio import DiffusionModel, make_process
from diffusio.core.samplers import sample
from diffusio.core.steering import ClassifierFreeGuidance, ComposedGuidance
from diffusio.io import tensor_digest
from diffusio.nets import UNet, unet_preset
from diffusio.nets.spatial_transformer import SpatialTransformer, context_mask

TINY = {"in_channels": 1, "image_size": 8, "channels": 8, "channel_mults": (1, 2),
        "num_res_blocks": 1, "attention_resolutions": (8, 4), "num_heads": 2, "groups": 4}  # fmt: skip


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _build(cls, seed: int = 0, **options):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return cls(**options)


def _randomise_zero_init(net: nn.Module, seed: int = 1) -> None:
    """Random weights for every zero-initialised conv (as tests/test_nets_unet.py does)."""
    gen = _gen(seed)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.Conv2d) and not module.weight.any():
                module.weight.copy_(0.1 * torch.randn(module.weight.shape, generator=gen))
                module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=gen))


def _tokens(n: int, length: int, dim: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, length, dim, generator=_gen(seed))


def _block(**options) -> SpatialTransformer:
    options = {"channels": 8, "context_dim": 6, "heads": 2, "groups": 4, **options}
    return _build(SpatialTransformer, **options)


# ------------------------------------------------------------------ SpatialTransformer
def test_fresh_block_is_exactly_the_identity():
    block = _block(depth=2)
    x = torch.randn(3, 8, 4, 5, generator=_gen(1))
    out = block(x, _tokens(3, 4, 6), torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]]) > 0)
    assert torch.equal(out, x)
    assert torch.equal(block(x), x)


def test_padded_tokens_change_nothing():
    block = _block()
    _randomise_zero_init(block)
    x = torch.randn(2, 8, 4, 4, generator=_gen(1))
    ctx = _tokens(2, 3, 6)
    mask = torch.tensor([[True, True, True], [True, False, False]])
    base = block(x, ctx, mask)
    padded = torch.cat([ctx, 10 * _tokens(2, 5, 6, seed=2)], dim=1)  # garbage, not zeros
    pad_mask = torch.cat([mask, torch.zeros(2, 5, dtype=torch.bool)], dim=1)
    torch.testing.assert_close(block(x, padded, pad_mask), base, atol=1e-5, rtol=0)
    # the second row's two padded tokens of the original context were ignored too
    torch.testing.assert_close(block(x[1:], ctx[1:, :1]), base[1:], atol=1e-5, rtol=0)
    assert not torch.allclose(block(x, ctx), base, atol=1e-3)  # the mask matters


def test_null_caption_attends_to_nothing_without_nan():
    block = _block()
    _randomise_zero_init(block)
    x = torch.randn(2, 8, 4, 4, generator=_gen(1), requires_grad=True)
    ctx = _tokens(2, 3, 6)
    mask = torch.tensor([[True, True, False], [False, False, False]])
    out = block(x, ctx, mask)
    assert torch.isfinite(out).all()
    no_context = block(x)  # no cross-attention update at all
    torch.testing.assert_close(out[1], no_context[1], atol=0, rtol=0)
    assert not torch.allclose(out[0], no_context[0], atol=1e-3)  # a real caption does act
    out.sum().backward()
    assert torch.isfinite(x.grad).all()
    # a float mask (what null_condition writes for a 0.0 null) reads as bool
    torch.testing.assert_close(block(x, ctx, mask.double()), out, atol=0, rtol=0)


def test_rows_are_independent_and_context_matters():
    block = _block()
    _randomise_zero_init(block)
    x = torch.randn(3, 8, 4, 4, generator=_gen(1))
    ctx = _tokens(3, 4, 6)
    full = block(x, ctx)
    torch.testing.assert_close(block(x[1:2], ctx[1:2]), full[1:2], atol=1e-6, rtol=0)
    assert not torch.allclose(block(x, _tokens(3, 4, 6, seed=5)), full, atol=1e-3)


def test_block_validation():
    block = _block()
    x = torch.zeros(2, 8, 4, 4)
    with pytest.raises(ValueError, match="context must be"):
        block(x, torch.zeros(2, 3, 5))
    with pytest.raises(ValueError, match="mask must be"):
        block(x, torch.zeros(2, 3, 6), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="without a context"):
        block(x, None, torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="heads must be"):
        _block(heads=0)
    assert context_mask(torch.zeros(2, 3, 4), None).all()


# ------------------------------------------------------------------ the default U-Net is unchanged
# Digests of the initial state_dict (seed 0) and float64 outputs (zero-init convs randomised with
# seed 1) recorded from the U-Net before the text / cascade options existed (commit 0732514).
BEFORE = {
    "tiny": ("f356a7cf8b5bd9f31951158064c55c36fc57e58c7b1ff7e296ae15c559477926", 147, 49665,
             70.40187520418473, 86.43007836732082,
             [-0.19680910376154598, -0.23647415861405913, 0.476978089666992, 0.5508125089419967]),
    "mnist": ("803596d59da8e437babd0fc592b7497cdaaa532a3ab1f3550b91cb0f47c436b4", 244, 1742881,
              919.789514457205, 1703.1998546143263,
              [0.24521696540555707, 0.01741979530618549, 0.5122578143956075, -0.3320652049337618]),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(BEFORE))
def test_default_unet_is_bit_identical_to_before(name):
    options = {**TINY, "num_classes": 10} if name == "tiny" else unet_preset("mnist")
    digest, n_keys, n_params, total, abs_total, first = BEFORE[name]
    net = _build(UNet, **options)
    state = net.state_dict()
    assert (tensor_digest(state), len(state)) == (digest, n_keys)  # names, shapes and values
    assert sum(p.numel() for p in net.parameters()) == n_params
    gen = _gen(1)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.Conv2d) and not module.weight.any():
                module.weight.copy_(0.1 * torch.randn(module.weight.shape, generator=gen))
                module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=gen))
    net = net.double()
    s = options["image_size"]
    x = torch.randn(3, 1, s, s, generator=gen, dtype=torch.float64)
    t = torch.rand(3, generator=gen, dtype=torch.float64)
    cond = {"y": torch.tensor([0, 3, 10])} if name == "tiny" else {}
    with torch.no_grad():
        out = net(x, t, **cond)
    assert out.sum().item() == pytest.approx(total, rel=1e-9)
    assert out.abs().sum().item() == pytest.approx(abs_total, rel=1e-9)
    assert out.flatten()[:4].tolist() == pytest.approx(first, rel=1e-9, abs=1e-12)


# ------------------------------------------------------------------ text conditioning in the U-Net
TEXT = {**TINY, "context_dim": 6, "pooled_dim": 5}


def _text_unet(seed: int = 0, **extra) -> UNet:
    net = _build(UNet, seed, **{**TEXT, **extra})
    _randomise_zero_init(net)
    return net


def _batch(n: int = 3, seed: int = 0):
    gen = _gen(seed)
    x, t = torch.randn(n, 1, 8, 8, generator=gen), torch.rand(n, generator=gen)
    ctx, pooled = torch.randn(n, 4, 6, generator=gen), torch.randn(n, 5, generator=gen)
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]][:n]) > 0
    return x, t, ctx, mask, pooled


def test_text_unet_structure_and_zero_initial_output():
    net = _build(UNet, **TEXT, transformer_depth=2)
    blocks = [m for m in net.modules() if isinstance(m, SpatialTransformer)]
    # attention at 8 and 4 px: one after each of the 1 + 2 (down, up) steps per level, + middle
    assert len(blocks) == 2 * (1 + 2) + 1 and all(len(b.blocks) == 2 for b in blocks)
    x, t, ctx, mask, pooled = _batch()
    assert torch.equal(net(x, t, context=ctx, context_mask=mask, pooled=pooled), torch.zeros_like(x))
    # the default U-Net's parameters are a subset, with the same names and shapes
    plain = {k: v.shape for k, v in _build(UNet, **TINY).state_dict().items()}
    text = {k: v.shape for k, v in net.state_dict().items()}
    renamed = {k.replace("middle.2.", "middle.3."): v for k, v in plain.items()}  # after xattn
    assert all(text[k] == v for k, v in renamed.items())


def test_context_pooled_and_null_caption_in_the_unet():
    net = _text_unet()
    x, t, ctx, mask, pooled = _batch()
    out = net(x, t, context=ctx, context_mask=mask, pooled=pooled)
    assert not torch.allclose(out, net(x, t, context=ctx * 2, context_mask=mask, pooled=pooled))
    assert not torch.allclose(out, net(x, t, context=ctx, context_mask=mask, pooled=pooled * 2))
    # padding invariance through the whole network
    pad_ctx = torch.cat([ctx, torch.randn(3, 3, 6, generator=_gen(7))], dim=1)
    pad_mask = torch.cat([mask, torch.zeros(3, 3, dtype=torch.bool)], dim=1)
    torch.testing.assert_close(net(x, t, context=pad_ctx, context_mask=pad_mask, pooled=pooled),
                               out, atol=1e-5, rtol=0)  # fmt: skip
    # an all-False mask row is exactly the no-context output for that row, and finite
    null = torch.zeros_like(mask)
    nulled = net(x, t, context=ctx, context_mask=null, pooled=pooled)
    assert torch.isfinite(nulled).all()
    torch.testing.assert_close(nulled, net(x, t, pooled=pooled), atol=0, rtol=0)


def test_classifier_free_guidance_on_the_caption_samples():
    model = DiffusionModel(_text_unet(), make_process("vp-cosine"))
    x, _, ctx, mask, pooled = _batch()
    cond = {"context": ctx, "context_mask": mask, "pooled": pooled}
    cfg = ClassifierFreeGuidance(2.0, 0.0, key="context_mask")
    both = ComposedGuidance([({"context_mask": mask, "pooled": pooled}, 3.0)],
                            null={"context_mask": 0.0, "pooled": 0.0})  # fmt: skip
    for guidance in ([], [cfg], [both]):
        out = sample(model, x.shape, "ddim", steps=3, seed=0, cond=cond, guidance=guidance)
        assert out.shape == x.shape and torch.isfinite(out).all()


def test_concat_and_level_conditioning():
    net = _build(UNet, **TINY, concat_channels=2, level_conditioning=True)
    _randomise_zero_init(net)
    x, t = _batch()[:2]
    low = torch.randn(3, 2, 8, 8, generator=_gen(3))
    out = net(x, t, concat=low, aug_level=0.3)
    assert out.shape == x.shape
    assert not torch.allclose(out, net(x, t, concat=low * 0, aug_level=0.3))
    assert not torch.allclose(out, net(x, t, concat=low, aug_level=0.7))
    torch.testing.assert_close(net(x, t, concat=low, aug_level=torch.full((3,), 0.3)), out)
    with pytest.raises(ValueError, match="concat must be"):
        net(x, t, aug_level=0.3)
    with pytest.raises(ValueError, match="pass aug_level"):
        net(x, t, concat=low)


def test_options_a_unet_does_not_take_are_refused():
    x, t, ctx, mask, pooled = _batch()
    plain = _build(UNet, **TINY)
    for key, value in (("context", ctx), ("pooled", pooled), ("concat", x), ("aug_level", 0.1)):
        with pytest.raises(ValueError, match=f"takes no {key}"):
            plain(x, t, **{key: value})
    net = _build(UNet, **TEXT)
    with pytest.raises(ValueError, match="context must be"):
        net(x, t, context=ctx[..., :5])
    with pytest.raises(ValueError, match="pooled must be"):
        net(x, t, pooled=pooled[:, :4])
    with pytest.raises(ValueError, match="without a context"):
        net(x, t, context_mask=mask)
    with pytest.raises(ValueError, match="context_dim must be"):
        UNet(**TINY, context_dim=0)


def test_gradients_reach_every_new_parameter():
    net = _text_unet(concat_channels=1, level_conditioning=True)
    x, t, ctx, mask, pooled = _batch()
    out = net(x, t, context=ctx, context_mask=mask, pooled=pooled, concat=x, aug_level=t)
    out.square().sum().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.any()]
    assert missing == []


def test_a_text_encoding_conditions_the_unet_and_the_empty_caption_is_the_null():
    from diffusio.nets.text_encoders import ScratchTextEncoder

    encoder = _build(ScratchTextEncoder.from_captions, captions=["a thick seven", "a thin two"],
                     dim=16, heads=2)  # fmt: skip
    net = _text_unet(context_dim=16, pooled_dim=16)
    text = encoder.encode(["a thick seven", "", "a thin two in the top left"])  # unknown words ok
    x, t = _batch()[:2]
    out = net(x, t, context=text.tokens, context_mask=text.mask, pooled=text.pooled)
    out.square().sum().backward()  # trained jointly: gradients reach the encoder
    assert encoder.token_embedding.weight.grad.any()
    # the empty caption (mask all False, pooled 0) is exactly the null of both keys
    null = net(x[1:2], t[1:2], pooled=torch.zeros(1, 16))
    torch.testing.assert_close(out[1:2], null, atol=1e-5, rtol=0)  # batch 3 vs batch 1
