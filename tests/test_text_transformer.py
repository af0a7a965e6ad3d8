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
    with pytest.raises(ValueError, match="even head width"):
        TextTransformer(V, L, d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="even head width"):
        TextTransformer(V, L, d_model=12, n_heads=4)  # head width 3: RoPE pairs need even


def test_rotary_attention_sees_relative_positions():
    """RoPE (Su et al. 2021): a query-key score depends on the positions only through their
    offset, so shifting both by the same amount leaves it unchanged (to float32 rounding)."""
    from diffusio.text.transformer import rotary_tables, rotate

    torch.manual_seed(1)
    q, k = torch.randn(8), torch.randn(8)
    cos, sin = rotary_tables(20, 8)

    def score(i: int, j: int) -> float:
        return float(rotate(q, cos[i], sin[i]) @ rotate(k, cos[j], sin[j]))

    assert score(3, 7) == pytest.approx(score(10, 14), abs=1e-5)
    assert score(3, 7) != pytest.approx(score(3, 8), abs=1e-3)
    assert torch.allclose(rotate(q, cos[0], sin[0]), q)  # position 0: no rotation


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


def test_text_lm_both_kinds_same_size_and_interface():
    from diffusio.text import TextLM, Vocabulary, stdlib_text

    text = stdlib_text(4000)
    vocab = Vocabulary.from_text(text)
    x = vocab.encode(text)[: 16 * 8].reshape(8, 16)
    models = {
        k: TextLM(k, vocab.size, 16, d_model=32, n_layers=1, n_heads=2) for k in ("mdlm", "ar")
    }
    assert count_parameters(models["mdlm"]) == count_parameters(models["ar"])
    g = torch.Generator().manual_seed(0)
    for kind, model in models.items():
        # the trainer's call: float ids, Gaussian-only options ignored, a loss mask
        loss = model.loss(
            x.float(), weighting="eps", time_distribution=None, generator=g, cond={},
            mask=torch.ones(8, 16),
        )  # fmt: skip
        assert loss.ndim == 0 and float(loss.detach()) > 0
        model.eval()
        nll = model.nll(x, draws=4, generator=g)
        assert nll.exact == (kind == "ar") and nll.nats.shape == (8,)
        bits = nll.bits_per_token(16)
        assert 0 < bits["bits"] < 20 and bits["stderr"] > 0
        assert (bits["stderr_mc"] == 0) == (kind == "ar")
        out = model.sample(3, generator=g, steps=32)
        assert out.tokens.shape == (3, 16) and bool((out.tokens < vocab.mask_id).all())
        assert len(vocab.decode(out.tokens[0])) == 16
    prompt = x[0].clone()
    prompt[4:12] = vocab.mask_id  # infill the middle
    filled = models["mdlm"].sample(2, generator=g, steps=8, prompt=prompt)
    assert torch.equal(filled.tokens[:, :4], x[0, :4].expand(2, -1))
    assert torch.equal(filled.tokens[:, 12:], x[0, 12:].expand(2, -1))
    prefixed = models["ar"].sample(2, generator=g, prompt=x[0, :5])
    assert torch.equal(prefixed.tokens[:, :5], x[0, :5].expand(2, -1))
    with pytest.raises(ValueError, match="reserved id excluded"):
        models["ar"].loss(torch.full((2, 16), vocab.mask_id))
    with pytest.raises(ValueError, match="kind must be"):
        TextLM("gpt", vocab.size, 16)


@pytest.mark.parametrize("kind", ["mdlm", "ar"])
def test_a_few_steps_of_training_lower_the_loss(kind):
    """A tiny sanity run (60 Adam steps on one repeated 8-character block)."""
    from diffusio.text import TextLM

    torch.manual_seed(0)
    x = torch.tensor([[0, 1, 2, 3, 4, 5, 6, 7]]).repeat(16, 1)
    model = TextLM(kind, 9, 8, d_model=32, n_layers=1, n_heads=2, t_min=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    model.eval()
    before = float(model.nll(x, draws=8, generator=g).nats.mean())
    model.train()
    for _ in range(60):
        opt.zero_grad()
        model.loss(x, generator=g).backward()
        opt.step()
    model.eval()
    after = float(model.nll(x, draws=8, generator=g).nats.mean())
    assert after < 0.5 * before
