"""The oracle itself: exact scores, conversions between parameterizations, a sensitive metric."""

import pytest
import torch

from diffusio import DiffusionModel, make_process
from diffusio.core.parameterization import Prediction
from diffusio.oracle import GaussianMixture

DT = torch.float64


@pytest.mark.parametrize("name", ["vp-linear", "ve", "sub-vp"])
def test_score_matches_finite_differences(mixture, name):
    process = make_process(name)
    x = mixture.sample(64, seed=0) * 1.3
    t = torch.full((64,), 0.2, dtype=DT)
    a, s = process.alpha(t), process.sigma(t)
    x = a[:, None] * x + s[:, None] * torch.randn(
        64, 2, dtype=DT, generator=torch.Generator().manual_seed(1)
    )
    score = mixture.model(process).score(x, t)
    h = 1e-5  # central differences: truncation O(h^2) ~ 1e-10, rounding O(eps/h) ~ 1e-11
    fd = torch.stack(
        [
            (mixture.noised_log_prob(x + h * e, a, s) - mixture.noised_log_prob(x - h * e, a, s))
            / (2 * h)
            for e in torch.eye(2, dtype=DT)
        ],
        dim=1,
    )
    rel = (score - fd).norm(dim=1) / fd.norm(dim=1).clamp_min(1e-3)
    assert float(rel.max()) < 1e-6


@pytest.mark.parametrize("kind", ["eps", "x0", "v", "score"])
def test_every_parameterization_gives_the_same_model(mixture, kind):
    process = make_process("vp-cosine")
    x = torch.randn(32, 2, dtype=DT, generator=torch.Generator().manual_seed(2))
    t = torch.linspace(0.05, 0.95, 32, dtype=DT)
    reference = mixture.model(process, "eps")
    model = mixture.model(process, kind)
    for attr in ("eps", "x0", "v", "score"):
        torch.testing.assert_close(
            getattr(model, attr)(x, t), getattr(reference, attr)(x, t), rtol=1e-10, atol=1e-10
        )


def test_prediction_conversions_round_trip():
    gen = torch.Generator().manual_seed(3)
    x, value = torch.randn(2, 8, 5, dtype=DT, generator=gen)
    alpha, sigma = torch.rand(2, 8, 1, dtype=DT, generator=gen) + 0.1
    for kind in ("eps", "x0", "v", "score"):
        pred = Prediction(kind, value, x, alpha, sigma)
        # x = alpha x0 + sigma eps holds for every conversion
        torch.testing.assert_close(alpha * pred.x0 + sigma * pred.eps, x, rtol=1e-12, atol=1e-12)
        for other in ("eps", "x0", "v", "score"):
            back = Prediction(other, pred.get(other), x, alpha, sigma).get(kind)
            torch.testing.assert_close(back, value, rtol=1e-12, atol=1e-12)


def test_score_model_is_exact_at_zero_noise(mixture):
    model = mixture.model(make_process("vp-linear"), "score")
    x = mixture.sample(16, seed=4)
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(mixture.log_prob(xr).sum(), xr)
    torch.testing.assert_close(model.score(x, 0.0), grad, rtol=1e-10, atol=1e-12)


def test_mode_discrepancy_detects_modes_20_percent_too_wide(mixture):
    exact = [mixture.mode_discrepancy(mixture.sample(4000, seed=s)) for s in range(5)]
    wide = GaussianMixture(mixture.means, mixture.stds * 1.2, mixture.weights)
    shifted = GaussianMixture(mixture.means, mixture.stds, [0.45, 0.35, 0.2])
    floor = sum(exact) / len(exact)
    assert 0.5 < floor < 2.0  # a chi-square per degree of freedom: about 1 for exact samples
    assert mixture.mode_discrepancy(wide.sample(4000, seed=9)) > 20 * floor
    assert mixture.mode_discrepancy(shifted.sample(4000, seed=9)) > 5 * floor


def test_oracle_validates_input():
    with pytest.raises(ValueError, match="means"):
        GaussianMixture([0.0, 1.0], [1.0])
    with pytest.raises(ValueError, match="stds"):
        GaussianMixture([[0.0], [1.0]], [1.0, -1.0])
    mix = GaussianMixture([[0.0, 0.0]], [1.0])
    with pytest.raises(ValueError, match="dimension 2"):
        mix.log_prob(torch.zeros(3, 5, dtype=DT))
    with pytest.raises(TypeError, match="Process"):
        DiffusionModel(torch.nn.Identity(), "vp-linear")


def test_fused_combination_equals_the_definition():
    gen = torch.Generator().manual_seed(5)
    x, value = torch.randn(2, 16, 3, dtype=DT, generator=gen)
    for kind in ("eps", "x0", "v", "score"):
        for alpha, sigma in ((0.8, 0.6), (0.3, 0.95)):
            pred = Prediction(kind, value, x, alpha, sigma)
            expected = 0.7 * pred.x0 + -0.2 * pred.eps
            torch.testing.assert_close(pred.combine(0.7, -0.2), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["eps", "x0", "v", "score"])
def test_per_frame_times_treat_each_frame_as_an_independent_draw(mixture, kind):
    """Times of shape (N, L) for a state (N, L, D): alpha and sigma broadcast over D, and each
    frame's prediction is the one-frame prediction at its own time."""
    process = make_process("vp-linear")
    model = mixture.model(process, kind)
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(16, 3, 2, dtype=DT, generator=gen) * 2
    t = torch.rand(16, 3, dtype=DT, generator=gen) * 0.9 + 0.05
    pred = model.predict(x, t)
    assert pred.alpha.shape == (16, 3, 1)
    for frame in range(3):
        alone = model.predict(x[:, frame], t[:, frame])
        for attr in ("eps", "x0", "v", "score"):
            torch.testing.assert_close(
                getattr(pred, attr)[:, frame], getattr(alone, attr), rtol=1e-12, atol=1e-12
            )
    # times broadcast over the batch: (1, L) is every row at the same per-frame times
    shared = model.predict(x, t[:1])
    torch.testing.assert_close(shared.eps[5], model.predict(x, t[:1].expand(16, 3)).eps[5])
    with pytest.raises(ValueError, match=r"broadcastable to the state's leading dimensions"):
        model.predict(x, torch.zeros(16, 2, dtype=DT))


def test_per_frame_times_in_the_conditional_oracle_and_classifier(mixture):
    process = make_process("vp-cosine")
    model = mixture.model(process, conditional=True)
    classifier = mixture.classifier(process)
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(12, 2, 2, dtype=DT, generator=gen) * 2
    t = torch.rand(12, 2, dtype=DT, generator=gen) * 0.9 + 0.05
    y = torch.arange(12) % 4  # 3 is the null class: the whole mixture
    eps, logits = model.eps(x, t, y=y), classifier(x, t)
    assert logits.shape == (12, 2, 3)
    for frame in range(2):
        torch.testing.assert_close(eps[:, frame], model.eps(x[:, frame], t[:, frame], y=y))
        torch.testing.assert_close(logits[:, frame], classifier(x[:, frame], t[:, frame]))
