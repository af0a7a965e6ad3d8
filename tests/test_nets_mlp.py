"""TimeMLP and the time embeddings: shapes, exact formulas, conditioning, validation."""

import math

import pytest
import torch
from torch import nn

from diffusio import DiffusionModel, make_process
from diffusio.nets import FourierEmbedding, SinusoidalEmbedding, TimeMLP, count_parameters


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randomise_output(net: TimeMLP, seed: int = 0) -> None:
    """Give the zero-initialised last layer random weights so the output depends on inputs."""
    with torch.no_grad():
        net.output.weight.copy_(torch.randn(net.output.weight.shape, generator=_gen(seed)))


# ------------------------------------------------------------------ embeddings
@pytest.mark.parametrize("cls", [SinusoidalEmbedding, FourierEmbedding])
@pytest.mark.parametrize("dim", [2, 7, 64])
def test_embedding_shapes(cls, dim):
    t = torch.rand(5, generator=_gen())
    out = cls(dim)(t)
    assert out.shape == (5, dim)
    assert torch.isfinite(out).all()
    if dim % 2:  # odd widths are padded with one zero feature
        assert (out[:, -1] == 0).all()


def test_sinusoidal_matches_ddpm_formula():
    """DDPM's get_timestep_embedding of the integer-like step 1000 t (Ho et al. 2020, App. B)."""
    dim, t = 16, torch.tensor([0.0, 0.25, 1.0], dtype=torch.float64)
    out = SinusoidalEmbedding(dim)(t)
    assert out.dtype == torch.float64
    half = dim // 2
    freqs = torch.tensor([10000.0 ** (-k / (half - 1)) for k in range(half)], dtype=torch.float64)
    args = 1000 * t[:, None] * freqs[None]
    expected = torch.cat([torch.sin(args), torch.cos(args)], 1)
    torch.testing.assert_close(out, expected)
    assert (out[0, :half] == 0).all() and (out[0, half:] == 1).all()  # t = 0


def test_fourier_features_fixed_buffer_and_seed():
    emb = FourierEmbedding(4096, scale=16.0, seed=3)
    assert "W" in dict(emb.named_buffers()) and count_parameters(emb) == 0
    torch.testing.assert_close(emb.W, FourierEmbedding(4096, scale=16.0, seed=3).W)
    assert not torch.equal(emb.W, FourierEmbedding(4096, scale=16.0, seed=4).W)
    # W ~ N(0, 16^2) with 2048 draws: the sample std has relative standard error 1/sqrt(2*2048)
    # = 1.6%, so 5 standard errors is 8%.
    assert abs(emb.W.std().item() / 16.0 - 1) < 0.08
    t = torch.tensor([0.3])
    args = 2 * math.pi * 0.3 * emb.W
    torch.testing.assert_close(emb(t)[0], torch.cat([torch.sin(args), torch.cos(args)]))


def test_embedding_validation():
    with pytest.raises(ValueError, match="at least 2"):
        SinusoidalEmbedding(1)
    with pytest.raises(ValueError, match=r"shape \(N,\)"):
        FourierEmbedding(8)(torch.zeros(2, 3))


# ------------------------------------------------------------------ TimeMLP
def test_shapes_zero_initial_output_and_determinism():
    net = TimeMLP(3, hidden=32, depth=2)
    x, t = torch.randn(10, 3, generator=_gen()), torch.rand(10, generator=_gen(1))
    out = net(x, t)
    assert out.shape == x.shape
    assert (out == 0).all()  # zero-initialised last layer
    _randomise_output(net)
    out = net(x, t)
    assert out.abs().sum() > 0
    torch.testing.assert_close(net(x, t), out, rtol=0, atol=0)  # deterministic
    torch.testing.assert_close(net(x, 0.5), net(x, torch.full((10,), 0.5)))  # scalar t


@pytest.mark.parametrize("embedding", ["fourier", "sinusoidal"])
@pytest.mark.parametrize("activation", ["silu", "gelu", "relu", "tanh", "softplus"])
def test_time_dependence_and_gradients(embedding, activation):
    net = TimeMLP(2, hidden=16, depth=2, embedding=embedding, activation=activation, embed_dim=8)
    _randomise_output(net)
    x = torch.randn(4, 2, generator=_gen())
    a, b = net(x, torch.full((4,), 0.1)), net(x, torch.full((4,), 0.9))
    assert (a - b).abs().max() > 1e-4
    (a - b).pow(2).sum().backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert net.time_embed[1].weight.grad.abs().sum() > 0  # time path is trained


def test_class_conditioning_and_null_class():
    net = TimeMLP(2, hidden=16, depth=1, num_classes=3)
    _randomise_output(net)
    assert net.null_class == 3
    assert net.class_embed.num_embeddings == 4  # 3 classes + null
    x, t = torch.randn(6, 2, generator=_gen()), torch.rand(6, generator=_gen(1))
    null = net(x, t)  # y=None is the null class
    torch.testing.assert_close(null, net(x, t, y=torch.full((6,), 3)))
    torch.testing.assert_close(null, net(x, t, y=3))
    y0, y1 = net(x, t, y=torch.zeros(6, dtype=torch.long)), net(x, t, y=1)
    assert (y0 - y1).abs().max() > 1e-4 and (y0 - null).abs().max() > 1e-4
    mixed = net(x, t, y=torch.tensor([0, 1, 0, 1, 3, 3]))  # per-row labels
    torch.testing.assert_close(mixed[:2], torch.stack([y0[0], y1[1]]))
    with pytest.raises(ValueError, match=r"\[0, 3\]"):
        net(x, t, y=4)
    with pytest.raises(ValueError, match="integers"):
        net(x, t, y=torch.zeros(6))
    with pytest.raises(ValueError, match="unconditional"):
        TimeMLP(2, hidden=8, depth=1)(x, t, y=0)


def test_validation_messages():
    net = TimeMLP(2, hidden=8, depth=1)
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 2\), got \(4, 3\)"):
        net(torch.zeros(4, 3), torch.zeros(4))
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 2\), got \(4,\)"):
        net(torch.zeros(4), torch.zeros(4))
    with pytest.raises(ValueError, match=r"t must be a scalar or of shape \(4,\)"):
        net(torch.zeros(4, 2), torch.zeros(3))
    with pytest.raises(ValueError, match="unknown embedding 'rff'; valid: fourier, sinusoidal"):
        TimeMLP(2, embedding="rff")
    with pytest.raises(ValueError, match="unknown activation 'swish'; valid: gelu, relu, silu"):
        TimeMLP(2, activation="swish")
    with pytest.raises(ValueError, match="dim must be an integer >= 1"):
        TimeMLP(0)
    with pytest.raises(ValueError, match="num_classes"):
        TimeMLP(2, num_classes=0)


def test_count_parameters():
    net = TimeMLP(2, hidden=8, depth=2, embed_dim=4, num_classes=5)
    expected = sum(p.numel() for p in net.parameters())
    assert count_parameters(net) == expected
    lin = lambda i, o: i * o + o  # noqa: E731
    by_hand = (
        lin(4, 8) + lin(8, 8)  # time MLP
        + 6 * 8  # class embedding with the null row
        + lin(2, 8) + 2 * (lin(8, 8) + lin(8, 8)) + lin(8, 2)  # input, blocks, output
    )  # fmt: skip
    assert count_parameters(net) == by_hand
    frozen = nn.Linear(3, 3).requires_grad_(False)
    assert count_parameters(frozen) == 0


def test_in_diffusion_model_float64_and_loss():
    net = TimeMLP(2, hidden=16, depth=1, num_classes=2).double()
    model = DiffusionModel(net, make_process("vp-linear"), prediction="eps")
    x = torch.randn(8, 2, generator=_gen(), dtype=torch.float64)
    assert model.eps(x, 0.5).dtype == torch.float64
    assert model.eps(x, 0.5, y=torch.ones(8, dtype=torch.long)).shape == (8, 2)
    loss = model.loss(x, generator=_gen(2))
    loss.backward()
    assert torch.isfinite(loss) and net.output.weight.grad.abs().sum() > 0


def test_learns_a_time_dependent_target():
    """A few hundred Adam steps fit f(x, t) = x cos(2 pi t) + t: the time path carries
    information. The target's variance is about 0.6 per coordinate; 300 steps bring the MSE
    below 0.05 (typically ~0.005), a margin of 10x for initialisation luck."""
    with torch.random.fork_rng():  # the net's initialisation; global RNG state is restored
        torch.manual_seed(0)
        net = TimeMLP(2, hidden=64, depth=2)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    gen = _gen(5)
    for _ in range(300):
        x, t = torch.randn(128, 2, generator=gen), torch.rand(128, generator=gen)
        target = x * torch.cos(2 * math.pi * t)[:, None] + t[:, None]
        loss = (net(x, t) - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    x, t = torch.randn(512, 2, generator=gen), torch.rand(512, generator=gen)
    with torch.no_grad():
        mse = (net(x, t) - (x * torch.cos(2 * math.pi * t)[:, None] + t[:, None])).pow(2).mean()
    assert mse < 0.05
