"""DALL·E 2's diffusion prior (Ramesh et al. 2022, Sec. 2.1): shapes, the null condition, best
of two, the sqrt(d) scaling, and the sampling path checked against an exact oracle."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from diffusio.core.model import DiffusionModel
from diffusio.core.oracle import GaussianMixture
from diffusio.core.processes import make_process
from diffusio.core.samplers import sample
from diffusio.core.steering import ClassifierFreeGuidance
from diffusio.nets.unclip_prior import (
    DiffusionPrior,
    RegressionPrior,
    drop_text,
    from_prior_space,
    prior_loss,
    sample_best_of,
    select_best_of,
    to_prior_space,
)

D, TD = 8, 6


def _cond(n: int, seed: int = 0) -> dict[str, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    mask = torch.ones(n, 5, dtype=torch.bool)
    mask[0, 2:] = False
    return {
        "text_tokens": torch.randn(n, 5, TD, generator=gen) * mask[..., None],
        "text_mask": mask,
        "text_emb": from_prior_space(torch.randn(n, D, generator=gen)),
    }


def test_prior_shapes_and_padding_is_ignored():
    torch.manual_seed(0)
    net = DiffusionPrior(D, TD, width=32, layers=2)
    x, t, c = torch.randn(3, D), torch.rand(3), _cond(3)
    out = net(x, t, **c)
    assert out.shape == (3, D)
    # what sits at a padded position does not matter
    c2 = {**c, "text_tokens": c["text_tokens"].clone()}
    c2["text_tokens"][0, 3:] = 100.0
    torch.testing.assert_close(net(x, t, **c2), out)
    assert net(x, t).shape == (3, D)  # no text at all: the null
    full = DiffusionPrior(D, TD, width=32, causal=False)
    assert full(x, t, **c).shape == (3, D)


def test_null_condition_is_one_and_finite():
    torch.manual_seed(0)
    net = DiffusionPrior(D, TD, width=32)
    x, t, c = torch.randn(4, D), torch.rand(4), _cond(4)
    emb, tokens, mask = drop_text(c["text_emb"], c["text_tokens"], c["text_mask"], p=1.0)
    assert not mask.any() and (emb == 0).all() and (tokens == 0).all()
    nulled = net(x, t, text_tokens=tokens, text_mask=mask, text_emb=emb)
    assert torch.isfinite(nulled).all()
    # a zero text_emb alone (what ClassifierFreeGuidance writes) is the same null
    zero_emb = net(x, t, **{**c, "text_emb": torch.zeros(4, D)})
    torch.testing.assert_close(zero_emb, nulled)
    torch.testing.assert_close(net(x, t), nulled)
    kept = drop_text(c["text_emb"], c["text_tokens"], c["text_mask"], p=0.0)
    torch.testing.assert_close(kept[0], c["text_emb"])


def test_prior_plugs_into_sample_with_ddim_and_cfg():
    torch.manual_seed(0)
    process = make_process("vp-cosine")
    model = DiffusionModel(DiffusionPrior(D, TD, width=32), process, prediction="x0")
    c = _cond(4)
    loss = prior_loss(model, to_prior_space(torch.randn(4, D)), c, torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss)
    cfg = ClassifierFreeGuidance(3.0, null_label=0.0, key="text_emb")
    z = sample(model, (4, D), "ddim", steps=5, seed=0, cond=c, guidance=[cfg])
    assert z.shape == (4, D) and torch.isfinite(z).all()
    again = sample(model, (4, D), "ddim", steps=5, seed=0, cond=c, guidance=[cfg])
    torch.testing.assert_close(z, again)
    best = sample_best_of(model, c["text_emb"], steps=4, seed=1,
                          cond={k: c[k] for k in ("text_tokens", "text_mask")})  # fmt: skip
    assert best.shape == (4, D) and torch.isfinite(best).all()


def test_select_best_of_is_the_argmax():
    gen = torch.Generator().manual_seed(3)
    cands = torch.randn(50, 3, D, generator=gen, dtype=torch.float64)
    text = torch.randn(50, D, generator=gen, dtype=torch.float64)
    best = select_best_of(cands, text)
    dots = (cands * text[:, None]).sum(-1)
    for i in range(50):
        assert torch.equal(best[i], cands[i, int(dots[i].argmax())])


def test_prior_space_scaling_round_trip():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(10, 16, generator=gen, dtype=torch.float64) * 3
    x = to_prior_space(z)
    torch.testing.assert_close(x.norm(dim=1), torch.full((10,), 4.0, dtype=torch.float64))
    torch.testing.assert_close((x**2).mean(1), torch.ones(10, dtype=torch.float64))
    unit = from_prior_space(x)
    torch.testing.assert_close(unit, z / z.norm(dim=1, keepdim=True))
    torch.testing.assert_close(to_prior_space(unit), x)


class _OracleAsPrior(nn.Module):
    """The prior's interface over an exact class-conditional oracle: the class is read from the
    text embedding (+e_0 -> class 0, -e_0 -> class 1, zero -> the null, the whole mixture)."""

    def __init__(self, oracle: nn.Module, classes: int) -> None:
        super().__init__()
        self.oracle, self.classes = oracle, classes

    def forward(self, x, t, text_tokens=None, text_mask=None, text_emb=None):
        y = torch.where(text_emb[:, 0] > 0, 0, 1)
        y = torch.where((text_emb == 0).all(1), self.classes, y)
        return self.oracle(x, t, y)


def test_sampling_path_matches_an_exact_oracle_prior():
    """Image embeddings given the text: a two-component mixture in prior space whose component
    the caption names. The x0 path through DiffusionModel must give each caption its class,
    and the null (CFG's unconditional branch) the mixture weights."""
    process = make_process("vp-cosine")
    d = 4
    means = torch.zeros(2, d, dtype=torch.float64)
    means[0, 0], means[1, 0] = math.sqrt(d) * 0.9, -math.sqrt(d) * 0.9
    mix = GaussianMixture(means, [0.3, 0.3], [0.7, 0.3])
    oracle = mix.model(process, prediction="x0", conditional=True)
    model = DiffusionModel(_OracleAsPrior(oracle.net, 2), process, prediction="x0")
    n = 400
    e0 = torch.zeros(n, d, dtype=torch.float64)
    e0[:, 0] = 1.0
    text = torch.cat([e0[: n // 2], -e0[n // 2 :]])
    z = sample(model, (n, d), "ddim", steps=40, seed=0, cond={"text_emb": text})
    cls = mix.assign(z)
    assert (cls[: n // 2] == 0).all() and (cls[n // 2 :] == 1).all()
    best = sample_best_of(model, text, steps=40, seed=1)
    assert ((best * text).sum(1) > 0).all()
    null = sample(model, (2000, d), "ddim", steps=40, seed=2,
                  cond={"text_emb": torch.zeros(2000, d, dtype=torch.float64)})  # fmt: skip
    w0 = float((mix.assign(null) == 0).double().mean())
    assert abs(w0 - 0.7) < 4 * math.sqrt(0.7 * 0.3 / 2000), w0


def test_regression_prior_learns_a_mean():
    torch.manual_seed(0)
    reg = RegressionPrior(D, hidden=32)
    text = from_prior_space(torch.randn(64, D))
    target = torch.roll(text, 1, dims=1)
    opt = torch.optim.Adam(reg.parameters(), lr=1e-2)
    first = float(reg.loss(text, target).detach())
    for _ in range(100):
        loss = reg.loss(text, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.2 * first
    assert reg(text).shape == (64, D)
