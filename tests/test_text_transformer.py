"""The text transformer: shapes, a causal mask that is really causal, a bidirectional one that
is not, equal parameter counts for both settings, and both losses train through it."""

from __future__ import annotations

import pytest
import torch

from diffusio.text import TextTransformer, ar_loss, count_parameters, masked_diffusion_loss

V, L = 11, 12


def make(causal: bool) -> TextTransformer:
    torch.manual_seed(0)
    return TextTransformer(V, L, d_model=32, n_layers=2, n_heads=4, causal=causal).eval()


def test_shapes_and_length_limit():
    net = make(False)
    ids = torch.randint(0, V, (3, L))
    assert net(ids).shape == (3, L, V)
    assert net(ids[:, :5]).shape == (3, 5, V)
    with pytest.raises(ValueError, match="exceeds max_length"):
        net(torch.zeros(1, L + 1, dtype=torch.int64))
    with pytest.raises(ValueError, match="divisible"):
        TextTransformer(V, L, d_model=30, n_heads=4)


def test_equal_parameter_counts():
    a, b = make(True), make(False)
    assert count_parameters(a) == count_parameters(b)
    assert [p.shape for p in a.parameters()] == [p.shape for p in b.parameters()]


def test_causal_logits_ignore_later_tokens():
    net = make(True)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, V, (4, L), generator=g)
    base = net(ids)
    for i in range(L - 1):
        changed = ids.clone()
        changed[:, i + 1 :] = torch.randint(0, V, (4, L - i - 1), generator=g)
        out = net(changed)
        torch.testing.assert_close(out[:, : i + 1], base[:, : i + 1], rtol=0, atol=1e-6)
        assert not torch.allclose(out[:, i + 1 :], base[:, i + 1 :])


def test_bidirectional_logits_see_later_tokens():
    net = make(False)
    ids = torch.randint(0, V, (4, L), generator=torch.Generator().manual_seed(2))
    changed = ids.clone()
    changed[:, -1] = (changed[:, -1] + 1) % V
    assert not torch.allclose(net(changed)[:, 0], net(ids)[:, 0])


@pytest.mark.parametrize("causal", [True, False])
def test_losses_backpropagate(causal):
    net = make(causal).train()
    x = torch.randint(0, V - 1, (8, L), generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(4)
    loss = ar_loss(net, x, V - 1) if causal else masked_diffusion_loss(net, x, V - 1, g)
    loss.backward()
    assert 1.0 < float(loss.detach()) < 10.0  # finite, near log(10) at initialisation
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
