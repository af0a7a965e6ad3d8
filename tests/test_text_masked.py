"""Oracle tests of masked diffusion before any training (Sahoo et al. 2024 MDLM; Austin et al.
2021 D3PM; Ou et al. 2024): a known joint p(x) over sequences of length 3 on 3 symbols (an
explicit table) and, as the "network", its EXACT conditionals p(x^l | visible tokens).

(a) The continuous-time bound equals -log p(x) for every x. With alpha_t = 1 - t a mask set M
    of size k has probability t^k (1-t)^(L-k), so the t-integral is a Beta function and the bound
    is a finite sum (``enumerated_bound``): sum_M B(k, L-k+1) sum_{l in M} -log p(x^l | x_{~M})
    = the any-order AR expectation, each order's chain rule = -log p(x). The only error is float64
    round-off on ~30 terms of size <= 10: tolerance 1e-12. Under a cosine schedule the integrand
    is evaluated exactly for each t and integrated by adaptive quadrature (tolerance 1e-10):
    the schedule invariance. The Monte Carlo bounds (stratified t, or a stratified number of
    masked positions) are unbiased: within 4 standard errors.
(b) Ancestral sampling with many steps (T = 1000; simultaneous reveals, the only error, have
    probability ~3/T) and the one-token-per-step sampler reproduce the joint: chi-square with 26
    degrees of freedom on 20,000 samples, threshold its 0.999 quantile (p-value 1e-3).
(c) One step reveals every token from p(x^l | all masked): the product of the marginals (the
    same chi-square), which the joint itself fails.
(d) Caching gives bit-identical samples to the uncached sampler with the same generator, with
    at most L (< T/2) network calls per sequence at T = 4L.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from scipy import integrate, stats

from diffusio.text import (
    CosineSchedule,
    LinearSchedule,
    TextTransformer,
    ancestral_sample,
    ar_nll,
    ar_sample,
    bound_estimate,
    enumerated_bound,
    masked_diffusion_bound,
    masked_diffusion_bound_by_count,
    masked_diffusion_loss,
    one_token_sample,
    sample_categorical,
    stratified_times,
)

L, V = 3, 3  # sequence length, real symbols; id 3 is [MASK] (and BOS for the AR oracle)
MASK = V
# An explicit joint over {0,1,2}^3 (row-major x1 x2 x3), strongly dependent, normalised below.
WEIGHTS = [
    30, 2, 1,   3, 12, 1,   1, 1, 6,
    2, 9, 1,    1, 25, 3,   4, 1, 2,
    1, 1, 8,    2, 3, 1,    5, 2, 20,
]  # fmt: skip
JOINT = torch.tensor(WEIGHTS, dtype=torch.float64).reshape(V, V, V)
JOINT = JOINT / JOINT.sum()
ALL_X = torch.tensor(list(itertools.product(range(V), repeat=L)), dtype=torch.int64)
CHI2_999 = stats.chi2.ppf(0.999, V**L - 1)


class ExactConditionals:
    """``net(z) -> log p(x^l | visible tokens of z)`` at masked positions (logits (B, L, V+1);
    the [MASK] column and unmasked positions are arbitrary: SUBS overrides them). A table over
    all (V+1)^L inputs, computed by summing the joint."""

    def __init__(self, joint: torch.Tensor):
        states = list(itertools.product(range(V + 1), repeat=L))
        table = torch.zeros(len(states), L, V + 1, dtype=torch.float64)
        for s, z in enumerate(states):
            keep = torch.ones_like(joint, dtype=torch.bool)
            for i, zi in enumerate(z):
                if zi != MASK:
                    idx = [slice(None)] * L
                    idx[i] = [j for j in range(V) if j != zi]
                    keep[tuple(idx)] = False
            p = joint * keep
            for i in range(L):
                marg = p.sum(dim=[d for d in range(L) if d != i])
                table[s, i, :V] = (marg / marg.sum()).log()
        self.table = table
        self.base = torch.tensor([(V + 1) ** (L - 1 - i) for i in range(L)])
        self.calls = 0

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.table[(z * self.base).sum(-1)]


class ExactAR:
    """The AR oracle: inputs ``[BOS, x_1..x_j]`` -> logits whose position j gives
    log p(x_{j+1} | x_1..x_j) (the masked oracle at the state 'x_1..x_j visible, rest masked')."""

    def __init__(self, cond: ExactConditionals):
        self.cond = cond

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        b, n = inputs.shape
        out = torch.zeros(b, n, V + 1, dtype=torch.float64)
        prefix = inputs[:, 1:]
        for j in range(n):
            z = torch.full((b, L), MASK, dtype=torch.int64)
            z[:, :j] = prefix[:, :j]
            out[:, j] = self.cond(z)[:, j]
        return out


@pytest.fixture(scope="module")
def net() -> ExactConditionals:
    return ExactConditionals(JOINT)


def neg_log_p(x: torch.Tensor) -> torch.Tensor:
    return -JOINT[x[:, 0], x[:, 1], x[:, 2]].log()


def chi_square(samples: torch.Tensor, probs: torch.Tensor) -> float:
    cells = (samples * torch.tensor([V * V, V, 1])).sum(-1)
    counts = torch.bincount(cells, minlength=V**L).double()
    expected = samples.shape[0] * probs.reshape(-1)
    return float(((counts - expected) ** 2 / expected).sum())


def test_the_oracle_is_a_distribution(net):
    assert float(JOINT.sum()) == pytest.approx(1.0, abs=1e-15)
    logp = net(torch.full((1, L), MASK))[0, :, :V]  # all masked: the marginals
    for i in range(L):
        marg = JOINT.sum(dim=[d for d in range(L) if d != i])
        torch.testing.assert_close(logp[i].exp(), marg, rtol=0, atol=1e-15)


def test_bound_equals_minus_log_likelihood_for_every_sequence(net):
    bound = enumerated_bound(net, ALL_X, MASK)
    torch.testing.assert_close(bound, neg_log_p(ALL_X), rtol=0, atol=1e-12)


def _exact_integrand(net, x: torch.Tensor, schedule, t: float) -> float:
    """w(t) E_{z_t}[sum over masked -log p(x^l | z_t)], the expectation by enumerating masks."""
    tt = torch.tensor(t, dtype=torch.float64)
    a, w = float(schedule.alpha(tt)), float(schedule.weight(tt))
    total = 0.0
    for m in itertools.product([0, 1], repeat=L):
        k = sum(m)
        if k == 0:
            continue
        z = torch.where(torch.tensor(m, dtype=torch.bool), MASK, x).unsqueeze(0)
        logp = net(z)[0]
        nll = -sum(float(logp[i, x[i]]) for i in range(L) if m[i])
        total += (1 - a) ** k * a ** (L - k) * nll
    return w * total


@pytest.mark.parametrize("schedule", [LinearSchedule(), CosineSchedule()], ids=["linear", "cosine"])
def test_bound_is_schedule_invariant_by_quadrature(net, schedule):
    for x in ALL_X[[0, 4, 13, 26]]:
        value, err = integrate.quad(
            lambda t, x=x: _exact_integrand(net, x, schedule, t), 0, 1, epsabs=1e-12, limit=200
        )
        assert err < 1e-10
        assert value == pytest.approx(float(neg_log_p(x[None])[0]), abs=1e-10)


@pytest.mark.parametrize("estimator", ["time", "count"])
def test_monte_carlo_bound_is_unbiased_within_four_standard_errors(net, estimator):
    g = torch.Generator().manual_seed(0)
    est = bound_estimate(net, ALL_X, MASK, draws=2000, generator=g, estimator=estimator)
    z = (est.nelbo - neg_log_p(ALL_X)) / est.stderr
    assert est.nelbo.shape == est.stderr.shape == (V**L,)
    assert bool((z.abs() < 4).all()), z
    # mean over all sequences under p: the expected bound is the entropy H(p) (tighter test)
    w = JOINT.reshape(-1)
    entropy = float((w * neg_log_p(ALL_X)).sum())
    se = float(((w * est.stderr) ** 2).sum().sqrt())
    assert abs(float((w * est.nelbo).sum()) - entropy) < 4 * se


def test_count_estimator_has_the_smaller_standard_error(net):
    kw = dict(draws=500, generator=torch.Generator().manual_seed(9))
    by_time = bound_estimate(net, ALL_X, MASK, estimator="time", **kw)
    by_count = bound_estimate(net, ALL_X, MASK, estimator="count", **kw)
    assert float(by_count.stderr.mean()) < 0.5 * float(by_time.stderr.mean())
    with pytest.raises(ValueError, match="k must lie"):
        masked_diffusion_bound_by_count(net, ALL_X, MASK, torch.zeros(V**L))


def test_loss_and_stratified_times():
    g = torch.Generator().manual_seed(1)
    t = stratified_times(8, g)
    assert t.dtype == torch.float64 and bool(((t > 0) & (t <= 1)).all())
    strata = torch.floor(t * 8).long()
    assert strata.tolist() == list(range(8))  # one time in each stratum
    net = ExactConditionals(JOINT)
    x = ALL_X.repeat(10, 1)
    loss = masked_diffusion_loss(net, x, MASK, g)
    assert loss.ndim == 0 and math.isfinite(float(loss))
    nothing_masked = masked_diffusion_bound(net, x, MASK, torch.zeros(x.shape[0]), None, g)
    assert bool((nothing_masked == 0).all())


def test_many_step_ancestral_sampling_reproduces_the_joint(net):
    g = torch.Generator().manual_seed(2)
    out = ancestral_sample(net, 20_000, L, MASK, steps=1000, generator=g, cache=True)
    assert bool((out.tokens != MASK).all())
    assert chi_square(out.tokens, JOINT) < CHI2_999


def test_one_token_per_step_sampling_reproduces_the_joint(net):
    g = torch.Generator().manual_seed(3)
    out = one_token_sample(net, 20_000, L, MASK, generator=g)
    assert bool((out.calls == L).all()) and out.forward_passes == L
    assert chi_square(out.tokens, JOINT) < CHI2_999


def test_one_step_gives_the_product_of_marginals(net):
    g = torch.Generator().manual_seed(4)
    out = ancestral_sample(net, 20_000, L, MASK, steps=1, generator=g)
    margs = [JOINT.sum(dim=[d for d in range(L) if d != i]) for i in range(L)]
    product = torch.einsum("i,j,k->ijk", *margs)
    assert chi_square(out.tokens, product) < CHI2_999
    assert chi_square(out.tokens, JOINT) > 10 * CHI2_999  # the joint is far from it


def test_caching_is_bit_identical_with_fewer_calls(net):
    steps = 4 * L
    plain = ancestral_sample(net, 2000, L, MASK, steps, torch.Generator().manual_seed(5))
    cached = ancestral_sample(
        net, 2000, L, MASK, steps, torch.Generator().manual_seed(5), cache=True
    )
    assert torch.equal(plain.tokens, cached.tokens)
    assert bool((plain.calls == steps).all())
    assert int(cached.calls.max()) <= L and 2 * int(cached.calls.max()) <= steps


def test_caching_is_bit_identical_for_a_transformer():
    torch.manual_seed(0)
    model = TextTransformer(V + 1, 8, d_model=16, n_layers=1, n_heads=2).eval()
    kw = dict(n=16, length=8, mask_id=MASK, steps=32)
    plain = ancestral_sample(model, generator=torch.Generator().manual_seed(6), **kw)
    cached = ancestral_sample(model, generator=torch.Generator().manual_seed(6), cache=True, **kw)
    assert torch.equal(plain.tokens, cached.tokens)
    assert int(cached.calls.max()) <= 8 < 32


def test_prompted_sampling_keeps_the_prompt(net):
    prompt = torch.tensor([2, MASK, MASK])
    out = ancestral_sample(net, 5000, L, MASK, 64, torch.Generator().manual_seed(7), prompt=prompt)
    assert bool((out.tokens[:, 0] == 2).all())
    cond = JOINT[2] / JOINT[2].sum()  # p(x2, x3 | x1 = 2)
    cells = out.tokens[:, 1] * V + out.tokens[:, 2]
    counts = torch.bincount(cells, minlength=V * V).double()
    chi = float(((counts - 5000 * cond.reshape(-1)) ** 2 / (5000 * cond.reshape(-1))).sum())
    assert chi < stats.chi2.ppf(0.999, V * V - 1)


def test_autoregressive_oracle_nll_is_exact_and_sampling_matches(net):
    ar = ExactAR(net)
    torch.testing.assert_close(ar_nll(ar, ALL_X, MASK), neg_log_p(ALL_X), rtol=0, atol=1e-12)
    out = ar_sample(ar, 20_000, L, MASK, torch.Generator().manual_seed(8))
    assert out.forward_passes == L
    assert chi_square(out.tokens, JOINT) < CHI2_999


def test_categorical_draws_never_pick_zero_probability():
    probs = torch.tensor([[0.0, 0.5, 0.0, 0.5, 0.0]]).expand(5, -1)
    u = torch.tensor([0.0, 0.25, 0.5, 1 - 2**-53, 0.9999999999999999])
    idx = sample_categorical(probs, u)
    assert set(idx.tolist()) <= {1, 3}
