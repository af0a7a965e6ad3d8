"""TemporalUNet / ValueNetwork (Diffuser, Decision Diffuser): shapes, errors, parameter counts,
time and condition embeddings, the NaN null condition, registration, a tiny overfit."""

import pytest
import torch

from diffusio.data.batch import drop_conditions
from diffusio.nets import TemporalUNet, ValueNetwork, count_parameters
from diffusio.train.models import NETS, build_net

SMALL = {"dim": 8, "dim_mults": (1, 2)}


def _net(cls=TemporalUNet, seed: int = 0, **options):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return cls(**options)


def _inputs(n: int, h: int, d: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, h, d, generator=gen), torch.rand(n, generator=gen)


# ------------------------------------------------------------------ analytic parameter counts
def _conv_block(i: int, o: int, k: int = 5) -> int:  # Conv1d + GroupNorm
    return i * o * k + o + 2 * o


def _res_block(i: int, o: int, e: int) -> int:
    residual = i * o + o if i != o else 0
    return _conv_block(i, o) + _conv_block(o, o) + e * o + o + residual


def _attention(c: int, heads: int = 4, head_dim: int = 32) -> int:
    hidden = heads * head_dim
    return 2 * c + c * 3 * hidden + hidden * c + c


def _encoder_count(D, d, mults, cond_dims=None, num_classes=None, attention=False) -> int:
    widths = [d * m for m in mults]
    total = (d * 4 * d + 4 * d) + (4 * d * d + d)  # time MLP
    for k in (cond_dims or {}).values():  # Decision Diffuser's MLP + the null embedding
        total += (k * d + d) + (d * 4 * d + 4 * d) + (4 * d * d + d) + d
    if num_classes is not None:
        total += (num_classes + 1) * d
    ch = D
    for i, w in enumerate(widths):
        total += _res_block(ch, w, d) + _res_block(w, w, d)
        total += _attention(w) if attention else 0
        total += 3 * w * w + w if i < len(widths) - 1 else 0  # stride-2 Conv1d(3)
        ch = w
    total += 2 * _res_block(ch, ch, d) + (_attention(ch) if attention else 0)
    return total


def _unet_count(D, d, mults, **kw) -> int:
    widths = [d * m for m in mults]
    total = _encoder_count(D, d, mults, **kw)
    ch = widths[-1]
    for i in reversed(range(len(widths) - 1)):
        w = widths[i]
        total += _res_block(ch + widths[i + 1], w, d) + _res_block(w, w, d)
        total += _attention(w) if kw.get("attention") else 0
        total += 4 * w * w + w  # ConvTranspose1d(4)
        ch = w
    return total + _conv_block(ch, ch) + ch * D + D


def _value_count(D, d, mults, **kw) -> int:
    w = d * mults[-1]
    return _encoder_count(D, d, mults, **kw) + (w + d) * (w // 2) + w // 2 + (w // 2 + 1)


@pytest.mark.parametrize("mults", [(1, 2, 4, 8), (1, 4, 8)])
def test_parameter_count_matches_the_layers(mults):
    net, value = TemporalUNet(6, 32, mults), ValueNetwork(6, 32, mults)
    print(f"TemporalUNet(D=6, dim=32, {mults}): {count_parameters(net):,} parameters")
    print(f"ValueNetwork(D=6, dim=32, {mults}): {count_parameters(value):,} parameters")
    assert count_parameters(net) == _unet_count(6, 32, mults)
    assert count_parameters(value) == _value_count(6, 32, mults)
    assert count_parameters(TemporalUNet(6, 32, mults)) == count_parameters(net)


def test_parameter_count_with_conditions_and_attention():
    opts = {"cond_dims": {"returns": 1, "skill": 3}, "num_classes": 4, "attention": True}
    assert count_parameters(TemporalUNet(5, 16, (1, 2), **opts)) == _unet_count(
        5, 16, (1, 2), **opts
    )
    assert count_parameters(ValueNetwork(5, 16, (1, 2), **opts)) == _value_count(
        5, 16, (1, 2), **opts
    )


# ------------------------------------------------------------------ shapes
@pytest.mark.parametrize(
    ("mults", "horizons"),
    [((1,), (1, 3, 7)), ((1, 2), (2, 6, 10)), ((1, 2, 4), (4, 12, 32)), ((1, 4, 8), (4, 8))],
)
def test_output_shapes(mults, horizons):
    net = _net(transition_dim=3, dim=8, dim_mults=mults)
    value = _net(ValueNetwork, transition_dim=3, dim=8, dim_mults=mults)
    for h in horizons:
        x, t = _inputs(2, h, 3)
        assert net(x, t).shape == (2, h, 3)
        assert value(x, t).shape == (2,)
    # the value net has no skips: any horizon works
    assert value(*_inputs(2, 5, 3)).shape == (2,)


def test_attention_and_scalar_time():
    net = _net(transition_dim=4, attention=True, **SMALL)
    x, _ = _inputs(3, 8, 4)
    out = net(x, 0.5)
    assert out.shape == (3, 8, 4) and torch.isfinite(out).all()
    assert torch.equal(out, net(x, torch.full((3,), 0.5)))


# ------------------------------------------------------------------ errors
def test_bad_horizon_names_h_and_the_multiple():
    net = _net(transition_dim=3, dim=8, dim_mults=(1, 2, 4))
    with pytest.raises(ValueError, match=r"H = 6 must be a multiple of 4"):
        net(*_inputs(1, 6, 3))


@pytest.mark.parametrize(
    ("shape", "match"),
    [((2, 8, 4), "transition dim 3"), ((2, 8), r"shape \(N, H, 3\)"), ((1, 2, 8, 3), "(N, H, 3)")],
)
def test_bad_input_shape(shape, match):
    for cls in (TemporalUNet, ValueNetwork):
        with pytest.raises(ValueError, match=match):
            _net(cls, transition_dim=3, **SMALL)(torch.zeros(shape), torch.zeros(shape[0]))


def test_bad_time_shape():
    with pytest.raises(ValueError, match="t must be"):
        _net(transition_dim=3, **SMALL)(torch.zeros(2, 4, 3), torch.zeros(2, 4))


def test_condition_key_errors():
    net = _net(transition_dim=3, cond_dims={"returns": 1}, **SMALL)
    x, t = _inputs(2, 4, 3)
    with pytest.raises(ValueError, match=r"missing condition keys \['returns'\]"):
        net(x, t)
    with pytest.raises(ValueError, match=r"unknown condition keys \['goal'\]"):
        net(x, t, returns=torch.ones(2, 1), goal=torch.ones(2, 2))
    with pytest.raises(ValueError, match=r"unknown condition keys \['returns'\]"):
        _net(transition_dim=3, **SMALL)(x, t, returns=torch.ones(2, 1))
    with pytest.raises(ValueError, match=r"must have shape \(2, 1\) or \(2,\)"):
        net(x, t, returns=torch.ones(2, 2))
    with pytest.raises(ValueError, match="partly NaN"):
        _net(transition_dim=3, cond_dims={"skill": 2}, **SMALL)(
            x, t, skill=torch.tensor([[0.0, float("nan")], [1.0, 2.0]])
        )
    with pytest.raises(ValueError, match=r"unknown condition keys \['y'\]"):  # no num_classes
        _net(transition_dim=3, **SMALL)(x, t, y=torch.zeros(2, dtype=torch.long))


@pytest.mark.parametrize(
    "options",
    [
        {"transition_dim": 0},
        {"transition_dim": 3, "dim_mults": ()},
        {"transition_dim": 3, "dim_mults": (1, 0)},
        {"transition_dim": 3, "dim": 1.5},
        {"transition_dim": 3, "kernel_size": 4},
        {"transition_dim": 3, "cond_dims": {"returns": 0}},
        {"transition_dim": 3, "cond_dims": {"y": 1}},
        {"transition_dim": 3, "num_classes": 0},
    ],
)
def test_bad_constructor_options(options):
    with pytest.raises(ValueError):
        TemporalUNet(**options)


# ------------------------------------------------------------------ time and conditions
def test_time_changes_the_output():
    for cls in (TemporalUNet, ValueNetwork):
        net = _net(cls, transition_dim=3, **SMALL)
        x, _ = _inputs(2, 4, 3)
        a, b = net(x, torch.full((2,), 0.1)), net(x, torch.full((2,), 0.9))
        assert (a - b).abs().max() > 1e-4


def test_vector_condition_changes_the_output_and_accepts_flat_rows():
    net = _net(transition_dim=3, cond_dims={"returns": 1}, **SMALL)
    x, t = _inputs(2, 4, 3)
    a = net(x, t, returns=torch.zeros(2, 1))
    assert (a - net(x, t, returns=torch.ones(2, 1))).abs().max() > 1e-4
    assert torch.equal(a, net(x, t, returns=torch.zeros(2)))


def test_null_condition_is_a_learned_embedding_zero_at_init():
    net = _net(transition_dim=3, cond_dims={"returns": 1, "skill": 2}, **SMALL)
    x, t = _inputs(2, 4, 3)
    nan = float("nan")
    returns = torch.tensor([[0.7], [nan]])
    skill = torch.tensor([[0.1, -0.2], [nan, nan]])
    out = net(x, t, returns=returns, skill=skill)
    assert torch.isfinite(out).all()
    # at initialisation the null embedding is 0: the null row equals the unconditional embedding
    emb = net._embedding(x, t, {"returns": returns, "skill": skill})
    assert torch.allclose(emb[1], net.time_embed(t)[1])
    # the null row differs from a conditioned row and is independent of anything else
    other = net(x, t, returns=torch.tensor([[0.7], [0.0]]), skill=skill)
    assert (out[1] - other[1]).abs().max() > 1e-5
    assert torch.equal(out[0], other[0])
    # the null embedding is learned, and no NaN reaches any gradient
    net(x, t, returns=returns, skill=skill).square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), name
    assert net.null_embed["returns"].grad.abs().sum() > 0


def test_drop_conditions_with_nan_null():
    """The batch contract: a dataset declares ``null={"returns": nan}``; dropped rows are NaN
    and reach the learned null embedding."""
    net = _net(transition_dim=3, cond_dims={"returns": 1}, **SMALL)
    returns = torch.arange(8, dtype=torch.float32)[:, None]
    gen = torch.Generator().manual_seed(0)
    dropped = drop_conditions(
        {"returns": returns}, {"returns": 0.5}, {"returns": float("nan")}, gen
    )
    null_rows = torch.isnan(dropped["returns"]).all(1)
    assert 0 < int(null_rows.sum()) < 8
    x, t = _inputs(8, 4, 3)
    out = net(x, t, **dropped)
    assert torch.isfinite(out).all()
    all_null = net(x, t, returns=torch.full_like(returns, float("nan")))
    assert torch.allclose(out[null_rows], all_null[null_rows])


def test_class_labels_with_null_class():
    net = _net(transition_dim=3, num_classes=3, **SMALL)
    x, t = _inputs(2, 4, 3)
    assert net.null_class == 3
    y0 = net(x, t, y=torch.zeros(2, dtype=torch.long))
    assert (y0 - net(x, t, y=torch.ones(2, dtype=torch.long))).abs().max() > 1e-5
    assert torch.equal(net(x, t), net(x, t, y=torch.full((2,), 3)))  # omitted = null class
    with pytest.raises(ValueError, match="class labels"):
        net(x, t, y=torch.full((2,), 4))


def test_value_network_conditions():
    value = _net(ValueNetwork, transition_dim=3, cond_dims={"returns": 1}, **SMALL)
    x, t = _inputs(2, 5, 3)
    a = value(x, t, returns=torch.zeros(2, 1))
    assert a.shape == (2,)
    assert (a - value(x, t, returns=torch.ones(2, 1))).abs().max() > 1e-6
    with pytest.raises(ValueError, match="missing condition keys"):
        value(x, t)


# ------------------------------------------------------------------ registry
def test_registered_by_name():
    assert NETS["temporal-unet"] == "diffusio.nets.temporal.TemporalUNet"
    assert NETS["temporal-value"] == "diffusio.nets.temporal.ValueNetwork"
    net = build_net("temporal-unet", {"transition_dim": 6, "dim": 8, "dim_mults": [1, 4, 8]})
    assert isinstance(net, TemporalUNet) and net.dim_mults == (1, 4, 8)
    value = build_net("temporal-value", {"transition_dim": 6, "cond_dims": {"returns": 1}})
    assert isinstance(value, ValueNetwork) and value.cond_dims == {"returns": 1}


# ------------------------------------------------------------------ overfit
def test_overfits_four_trajectories():
    """x0 regression on 4 fixed (noisy input, time, target) triples: the loss falls > 20x in
    120 Adam steps (about 50x measured; ~2 s on one thread)."""
    torch.manual_seed(0)
    net = TemporalUNet(3, dim=8, dim_mults=(1, 2))
    gen = torch.Generator().manual_seed(1)
    x0 = torch.randn(4, 8, 3, generator=gen)
    t = torch.rand(4, generator=gen)
    xt = x0 * (1 - t)[:, None, None] + t[:, None, None] * torch.randn(4, 8, 3, generator=gen)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(120):
        loss = (net(xt, t) - x0).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 20


def test_the_trainer_fills_in_the_transition_dim_and_keeps_the_width():
    """A sequence net's ``dim`` is its base width, not the data's size; the data decide
    ``transition_dim`` (the last axis)."""
    from diffusio.train.config import TrainConfig
    from diffusio.train.models import _net_options

    config = TrainConfig.from_dict({"net": "temporal-unet", "net_options": {}, "data": "x"})
    options = _net_options(config, (8, 6))
    assert options == {"transition_dim": 6}


def test_known_entries_replace_the_input():
    """cond["known"] writes its non-NaN entries into the input: the output no longer depends
    on x there, and an all-NaN known is the plain call."""
    torch.manual_seed(0)
    net = TemporalUNet(transition_dim=3, dim=8, dim_mults=(1, 2)).eval()
    x, t = torch.randn(2, 8, 3), torch.rand(2)
    known = torch.full_like(x, float("nan"))
    known[:, 0, 1:] = torch.tensor([0.5, -0.5])
    y = x.clone()
    y[:, 0, 1:] = 7.0  # changed only where known
    torch.testing.assert_close(net(x, t, known=known), net(y, t, known=known))
    torch.testing.assert_close(net(x, t, known=torch.full_like(x, float("nan"))), net(x, t))
    with pytest.raises(ValueError, match="cond\\['known'\\] must have x's shape"):
        net(x, t, known=known[:, :4])
    with pytest.raises(ValueError, match="reserved"):
        TemporalUNet(transition_dim=3, dim=8, dim_mults=(1, 2), cond_dims={"known": 2})
