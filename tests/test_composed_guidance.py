"""Composed classifier-free guidance (Decision Diffuser, Ajay et al. 2023, eq. 9) against the
class-conditional oracle, whose class-k model is component k and whose null class (K) is the
whole mixture. ``eps = eps(x, null) + sum_i w_i (eps(x, c_i) - eps(x, null))`` with
``eps = -sigma * score`` is, in scores,

    sum_i w_i grad log p_t(x | c_i) - (sum_i w_i - 1) grad log p_t(x),

computed here directly from the mixture's components (not through the model)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from diffusio.core.model import DiffusionModel
from diffusio.core.oracle import GaussianMixture
from diffusio.core.processes import make_process
from diffusio.core.samplers import SamplingContext, sample
from diffusio.core.steering import ClassifierFreeGuidance, ComposedGuidance, null_condition

MIX = GaussianMixture([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.5]], [0.5, 0.3, 0.6], [0.5, 0.3, 0.2])
NULL = MIX.num_components


def coefficients(process, t):
    tt = torch.tensor(t, dtype=torch.float64)
    return float(process.alpha(tt)), float(process.sigma(tt))


def points(n=40, seed=0):
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2


@pytest.mark.parametrize("t", [0.05, 0.3, 0.6, 0.9])
@pytest.mark.parametrize(("w0", "w2"), [(1.0, 1.0), (0.7, 0.3), (2.0, 1.5)])
def test_composition_of_two_classes_is_the_exact_combination_of_scores(t, w0, w2):
    process = make_process("vp-cosine")
    model = MIX.model(process, conditional=True)
    x = points()
    a, s = coefficients(process, t)
    exact = (
        w0 * MIX.component(0).noised_score(x, a, s)
        + w2 * MIX.component(2).noised_score(x, a, s)
        - (w0 + w2 - 1) * MIX.noised_score(x, a, s)
    )
    conditions = {"left": ({"y": 0}, w0), "bottom": ({"y": torch.full((40,), 2)}, w2)}
    # the sampler's own call is the unconditional one (y = the null class) ...
    ctx = SamplingContext(model, guidance=[ComposedGuidance(conditions)], cond={"y": NULL})
    got = ctx.predict(x, t).score
    assert ctx.nfe == 3
    torch.testing.assert_close(got, exact, rtol=1e-8, atol=1e-8)
    # ... or an explicit null (one more call), with no y given to the sampler
    ctx = SamplingContext(model, guidance=[ComposedGuidance(conditions, null={"y": NULL})])
    got = ctx.predict(x, t).score
    assert ctx.nfe == 4
    torch.testing.assert_close(got, exact, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("w", [0.0, 1.5, 4.0])
def test_one_condition_with_weight_one_plus_w_is_classifier_free_guidance(w):
    process = make_process("vp-linear")
    model = MIX.model(process, conditional=True)
    x, t = points(30, seed=1), 0.4
    y = torch.arange(30) % 3
    cfg = SamplingContext(model, guidance=[ClassifierFreeGuidance(w, NULL)], cond={"y": y})
    composed = ComposedGuidance([({"y": y}, 1 + w)], null={"y": NULL})
    ctx = SamplingContext(model, guidance=[composed], cond={"y": y})
    torch.testing.assert_close(ctx.predict(x, t).eps, cfg.predict(x, t).eps, rtol=1e-10, atol=1e-10)


def test_composed_guidance_in_a_sampler_draws_the_product_of_experts():
    """Weights summing to 1 with a single condition of weight 1 sample that class exactly:
    ComposedGuidance({k: 1}) on the null-class sampler is the class-k model."""
    process = make_process("vp-linear")
    model = MIX.model(process, conditional=True)
    guide = ComposedGuidance({"k": ({"y": 1}, 1.0)})
    out, stats = sample(model, (500, 2), "ddim", 20, seed=0, guidance=[guide], cond={"y": NULL},
                        return_stats=True)  # fmt: skip
    ref = sample(model, (500, 2), "ddim", 20, seed=0, cond={"y": 1})
    assert stats["nfe"] == 40
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-9)


class VectorNet(nn.Module):
    """A toy eps-net with a vector condition ``returns`` (N, 2) whose all-NaN rows are the null
    (the temporal U-Net's convention): eps = 0.1 x + (returns, or the null vector b)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("b", torch.tensor([0.3, -0.7], dtype=torch.float64))

    def forward(self, x, t, returns=None):
        if returns is None:
            returns = torch.full_like(x, float("nan"))
        null = torch.isnan(returns).all(-1, keepdim=True)
        return 0.1 * x + torch.where(null, self.b.expand_as(x), returns) * (1 + t[:, None])


def test_vector_conditions_with_a_nan_null():
    process = make_process("vp-linear")
    model = DiffusionModel(VectorNet(), process, "eps")
    x, t, w = points(6, seed=2), 0.5, 2.0
    r = torch.randn(6, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    cond_eps = model.eps(x, t, returns=r)
    null_eps = model.eps(x, t, returns=torch.full_like(r, float("nan")))
    expected = (1 + w) * cond_eps - w * null_eps
    for null in (float("nan"), torch.full((2,), float("nan"))):
        ctx = SamplingContext(
            model, guidance=[ClassifierFreeGuidance(w, null, key="returns")], cond={"returns": r}
        )
        torch.testing.assert_close(ctx.predict(x, t).eps, expected, rtol=1e-12, atol=1e-12)
    composed = ComposedGuidance({"r": ({"returns": r}, 1 + w)}, null={"returns": float("nan")})
    got = SamplingContext(model, guidance=[composed]).predict(x, t).eps
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_null_condition_shapes_and_errors():
    x = torch.zeros(4, 3, dtype=torch.float64)
    assert torch.equal(null_condition(torch.tensor([0, 1, 2, 0]), 3, x), torch.full((4,), 3))
    assert torch.equal(null_condition(1, 3, x), torch.full((4,), 3))
    nan = null_condition(torch.ones(4, 2), float("nan"), x)
    assert nan.shape == (4, 2) and bool(torch.isnan(nan).all())
    with pytest.raises(ValueError, match="shape"):
        null_condition(None, float("nan"), x)
    with pytest.raises(TypeError, match="null"):
        ClassifierFreeGuidance(1.0, "none")
    with pytest.raises(ValueError, match="at least one"):
        ComposedGuidance({})
    with pytest.raises(ValueError, match="pair"):
        ComposedGuidance([({"y": 0}, 1.0, 2.0)])
    with pytest.raises(ValueError, match="finite"):
        ComposedGuidance([({"y": 0}, float("inf"))])
