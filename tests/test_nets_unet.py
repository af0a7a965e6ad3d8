"""UNet: shapes, zero initial output, time/class conditioning, validation, gradients, presets."""

import pytest
import torch
from torch import nn

from diffusio import DiffusionModel, make_process
from diffusio.nets import UNET_PRESETS, UNet, count_parameters, unet_preset

# A tiny configuration (fast on one thread) with attention at both levels of an 8x8 input.
TINY = {
    "channels": 8,
    "channel_mults": (1, 2),
    "num_res_blocks": 1,
    "attention_resolutions": (8, 4),
    "num_heads": 2,
    "groups": 4,
}


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _unet(seed: int = 0, **options) -> UNet:
    with torch.random.fork_rng():  # the net's initialisation; global RNG state is restored
        torch.manual_seed(seed)
        return UNet(**options)


def _randomise_zero_init(net: nn.Module, seed: int = 0) -> None:
    """Give every zero-initialised conv (second conv of each block, attention projections, the
    output) random weights, so that every path of the network affects the output."""
    gen = _gen(seed)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.Conv2d) and not module.weight.any():
                module.weight.copy_(0.1 * torch.randn(module.weight.shape, generator=gen))
                module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=gen))


def _inputs(n: int, c: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = _gen(seed)
    return torch.randn(n, c, size, size, generator=gen), torch.rand(n, generator=gen)


# ------------------------------------------------------------------ shapes and initial output
@pytest.mark.parametrize(
    ("options", "size"),
    [
        ({"in_channels": 1, "image_size": 8, **TINY}, 8),
        ({"in_channels": 3, "out_channels": 6, "image_size": 8, **TINY}, 8),  # learned variance
        ({"in_channels": 1, "image_size": 8, "num_classes": 10, **TINY}, 8),
        ({"in_channels": 2, "image_size": 8, **TINY, "channel_mults": (1,),
          "attention_resolutions": (8,)}, 8),
        ({"in_channels": 1, "image_size": 28, **TINY, "channel_mults": (1, 2, 2),
          "attention_resolutions": (7,)}, 28),
        ({"in_channels": 1, "image_size": 8, **TINY, "scale_shift": False,
          "resample_with_conv": False, "embedding": "fourier", "dropout": 0.1}, 8),
        ({"in_channels": 1, "image_size": 8, **TINY, "num_res_blocks": 2,
          "attention_resolutions": ()}, 8),
        ({"in_channels": 1, "image_size": 8, **TINY}, 16),  # other sizes: divisible by 2
    ],
)  # fmt: skip
def test_shapes_and_zero_initial_output(options, size):
    net = _unet(**options)
    x, t = _inputs(3, options["in_channels"], size)
    out = net(x, t, y=torch.tensor([0, 1, 2])) if options.get("num_classes") else net(x, t)
    assert out.shape == (3, options.get("out_channels", options["in_channels"]), size, size)
    assert (out == 0).all()  # zero-initialised output conv
    assert net.in_channels == options["in_channels"]
    assert net.out_channels == options.get("out_channels", options["in_channels"])
    assert net.image_size == options["image_size"]
    assert net.num_classes == options.get("num_classes")


def test_rectangular_input_and_scalar_t():
    net = _unet(in_channels=1, image_size=8, **TINY)
    _randomise_zero_init(net)
    x = torch.randn(2, 1, 8, 12, generator=_gen())
    assert net(x, torch.full((2,), 0.3)).shape == (2, 1, 8, 12)
    torch.testing.assert_close(net(x, 0.3), net(x, torch.full((2,), 0.3)))


def test_structure_follows_ddpm():
    """num_res_blocks per level down (+ down-sampling), num_res_blocks + 1 up with the skips
    concatenated, attention where the feature map has the listed size and in the middle."""
    net = _unet(in_channels=1, image_size=8, **{**TINY, "attention_resolutions": (4,)})
    kinds = [type(m).__name__ for m in net.down]
    assert kinds == ["_Step", "_Downsample", "_Step"]
    assert [m.attn is not None for m in net.down if hasattr(m, "attn")] == [False, True]
    steps_up = [m for m in net.up if type(m).__name__ == "_Step"]
    assert len(steps_up) == 2 * 2 and sum(type(m).__name__ == "_Upsample" for m in net.up) == 1
    # input widths of the up blocks: h (16) + skips 16, 8 at 4 px; then 16 + 8, 8 + 8 at 8 px
    assert [m.res.conv1.in_channels for m in steps_up] == [32, 24, 24, 16]
    assert [m.attn is not None for m in steps_up] == [True, True, False, False]
    assert type(net.middle[1]).__name__ == "_Attention"


def test_groups_are_clipped_to_a_divisor():
    net = _unet(in_channels=1, image_size=8, channels=12, channel_mults=(1,), groups=8,
                attention_resolutions=(), num_heads=3)  # fmt: skip
    groups = {m.num_channels: m.num_groups for m in net.modules() if isinstance(m, nn.GroupNorm)}
    assert groups == {12: 6, 24: 8}  # 12 channels: 6 groups; the 24-wide concatenation: 8
    x, t = _inputs(2, 1, 8)
    assert net(x, t).shape == (2, 1, 8, 8)


# ------------------------------------------------------------------ conditioning
@pytest.mark.parametrize("scale_shift", [True, False])
def test_depends_on_t_and_y_and_null_class(scale_shift):
    net = _unet(in_channels=1, image_size=8, num_classes=3, scale_shift=scale_shift, **TINY)
    _randomise_zero_init(net)
    assert net.null_class == 3 and net.class_embed.num_embeddings == 4
    x, t = _inputs(4, 1, 8)
    null = net(x, t)  # y=None is the null class for every row
    torch.testing.assert_close(null, net(x, t, y=torch.full((4,), 3)), rtol=0, atol=0)
    torch.testing.assert_close(null, net(x, t, y=3), rtol=0, atol=0)
    assert (net(x, t, y=0) - null).abs().max() > 1e-3
    assert (net(x, t, y=0) - net(x, t, y=1)).abs().max() > 1e-3
    assert (net(x, torch.full((4,), 0.1)) - net(x, torch.full((4,), 0.9))).abs().max() > 1e-3
    mixed = net(x, t, y=torch.tensor([0, 1, 3, 3]))  # per-row labels
    torch.testing.assert_close(mixed[2:], null[2:])
    torch.testing.assert_close(mixed[:1], net(x, t, y=0)[:1])
    torch.testing.assert_close(net(x, t), net(x, t), rtol=0, atol=0)  # deterministic


def test_rows_are_independent():
    """No batch-mixing layer: one row's output does not change with the others."""
    net = _unet(in_channels=1, image_size=8, **TINY)
    _randomise_zero_init(net)
    x, t = _inputs(4, 1, 8)
    torch.testing.assert_close(net(x, t)[:2], net(x[:2], t[:2]), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ validation
def test_forward_validation_messages():
    net = _unet(in_channels=1, image_size=8, num_classes=3, **TINY)
    x, t = _inputs(4, 1, 8)
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 1, H, W\), got \(4, 3, 8"):
        net(torch.zeros(4, 3, 8, 8), t)
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 1, H, W\), got \(4, 64\)"):
        net(torch.zeros(4, 64), t)
    with pytest.raises(ValueError, match="must be divisible by 2 .*got 8x7"):
        net(torch.zeros(4, 1, 8, 7), t)
    with pytest.raises(ValueError, match=r"t must be a scalar or of shape \(4,\), got \(3,\)"):
        net(x, torch.zeros(3))
    with pytest.raises(ValueError, match=r"t must be a scalar or of shape \(4,\), got \(4, 1\)"):
        net(x, torch.zeros(4, 1))
    with pytest.raises(ValueError, match=r"class labels must lie in \[0, 3\].*\[0, 4\]"):
        net(x, t, y=torch.tensor([0, 1, 2, 4]))
    with pytest.raises(ValueError, match=r"\[0, 3\]"):
        net(x, t, y=-1)
    with pytest.raises(ValueError, match="integers"):
        net(x, t, y=torch.zeros(4))
    with pytest.raises(ValueError, match=r"y must have shape \(4,\)"):
        net(x, t, y=torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="unconditional"):
        _unet(in_channels=1, image_size=8, **TINY)(x, t, y=0)


def test_constructor_validation_messages():
    base = {"in_channels": 1, "image_size": 8, **TINY}
    cases = [
        ({"in_channels": 0}, "in_channels must be an integer >= 1"),
        ({"channel_mults": ()}, "channel_mults must name at least one level"),
        ({"channel_mults": (1, 0)}, r"channel_mults\[1\] must be an integer >= 1"),
        ({"num_res_blocks": 0}, "num_res_blocks must be an integer >= 1"),
        ({"image_size": 6, "channel_mults": (1, 2, 2)}, "image_size 6 must be divisible by 4"),
        ({"attention_resolutions": (16,)}, r"attention_resolutions \[16\].*valid: \[8, 4\]"),
        ({"num_heads": 3}, "num_heads 3 must divide the width of every attention level"),
        ({"num_classes": 0}, "num_classes must be a positive integer or None"),
        ({"dropout": 1.0}, r"dropout must lie in \[0, 1\)"),
        ({"embedding": "rff"}, "unknown embedding 'rff'; valid: fourier, sinusoidal"),
    ]
    for override, message in cases:
        with pytest.raises(ValueError, match=message):
            UNet(**{**base, **override})


# ------------------------------------------------------------------ gradients, determinism
def test_gradients_reach_every_parameter():
    net = _unet(in_channels=1, image_size=8, num_classes=3, **TINY)
    _randomise_zero_init(net)
    x, t = _inputs(4, 1, 8)
    net(x, t, y=torch.tensor([0, 1, 2, 3])).pow(2).sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_zero_init_still_trains_the_output_layer():
    """At initialisation only the output conv gets a gradient (the blocks start as identities),
    and one optimiser step makes the output nonzero."""
    net = _unet(in_channels=1, image_size=8, **TINY)
    x, t = _inputs(4, 1, 8)
    (net(x, t) - 1).pow(2).mean().backward()
    assert net.output.weight.grad.abs().sum() > 0
    torch.optim.SGD(net.parameters(), lr=0.1).step()
    assert net(x, t).abs().sum() > 0


def test_deterministic_construction():
    options = {"in_channels": 1, "image_size": 8, **TINY}
    a, b, c = _unet(3, **options), _unet(3, **options), _unet(4, **options)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


# ------------------------------------------------------------------ presets
def test_presets_build_and_copy():
    assert set(UNET_PRESETS) >= {"digits", "mnist", "cifar10"}
    options = unet_preset("digits", num_classes=10)
    assert options["num_classes"] == 10 and "num_classes" not in UNET_PRESETS["digits"]
    options["channels"] = 1
    assert UNET_PRESETS["digits"]["channels"] == 32  # a copy
    with pytest.raises(ValueError, match="unknown UNet preset 'svhn'; valid: cifar10, digits"):
        unet_preset("svhn")
    for name, count in [("digits", 755_009), ("mnist", 1_742_881)]:
        net = _unet(**unet_preset(name))
        assert count_parameters(net) == count  # as documented in the module docstring
        x, t = _inputs(2, net.in_channels, net.image_size)
        assert net(x, t).shape == x.shape


def test_cifar10_preset_matches_ddpm_parameter_count():
    """DDPM's CIFAR-10 model has 35.7M parameters (Ho et al. 2020, App. B)."""
    net = UNet(**unet_preset("cifar10"))
    count = count_parameters(net)
    assert count == 35_746_307
    assert abs(count / 35.7e6 - 1) < 0.01
    assert net.in_channels == 3 and net.image_size == 32 and not net.scale_shift


# ------------------------------------------------------------------ in use
def test_in_diffusion_model_float64_learned_variance():
    net = _unet(in_channels=1, out_channels=2, image_size=8, num_classes=2, **TINY).double()
    model = DiffusionModel(net, make_process("vp-linear"), prediction="eps", variance="learned")
    x = torch.randn(4, 1, 8, 8, generator=_gen(), dtype=torch.float64)
    prediction = model.predict(x, 0.5, y=torch.tensor([0, 1, 2, 0]))
    assert prediction.eps.dtype == torch.float64 and prediction.eps.shape == x.shape
    loss = DiffusionModel(_unet(in_channels=1, image_size=8, **TINY), make_process("vp-linear"))
    value = loss.loss(x.float(), generator=_gen(2))
    value.backward()
    assert torch.isfinite(value)


def test_overfits_one_batch():
    """50 Adam steps fit a fixed target for one batch of a digits-sized UNet: the loss (about 1
    at the zero initial output) drops by more than 10x (500-770x over five seeds)."""
    net = _unet(**unet_preset("digits", channels=16))
    x, t = _inputs(16, 1, 8)
    target = torch.randn(16, 1, 8, 8, generator=_gen(7))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(50):
        loss = (net(x, t) - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10, (losses[0], losses[-1])


def test_known_entries_are_written_into_the_input():
    """``known`` (NaN where unknown) replaces those input entries by clean values: the same
    output as the replaced input, and a shape mismatch is one clear error."""
    torch.manual_seed(0)
    net = UNet(2, image_size=8, **TINY).eval()
    for p in net.parameters():  # zero-initialised output layers would hide the input
        nn.init.normal_(p, std=0.1)
    x, t = torch.randn(3, 2, 8, 16), torch.rand(3)
    known = torch.full_like(x, float("nan"))
    known[:, 0, 0] = 1.5
    replaced = torch.where(torch.isnan(known), x, known)
    assert torch.allclose(net(x, t, known=known), net(replaced, t))
    assert not torch.allclose(net(x, t, known=known), net(x, t))
    with pytest.raises(ValueError, match="cond\\['known'\\] must have x's shape"):
        net(x, t, known=known[:, :1])
