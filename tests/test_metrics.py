"""Two-sample distances: exact values where they are known, unbiasedness, symmetry, chunking,
noise floors.

Statistical tolerances are 5 standard errors of the tested estimate (p < 1e-6 for a normal
estimate); the standard error is derived from the math or estimated from independent replicates.
"""

import math

import numpy as np
import pytest
import torch

import diffusio.metrics.distances as distances
from diffusio.data import sample_toy, toy_mixture
from diffusio.metrics import energy_distance, mmd, sliced_wasserstein, with_noise_floor

Z = 5.0  # standard errors allowed


def _normal(n: int, d: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    x[:, 0] += shift
    return x


def _replicates(fn, count: int) -> tuple[float, float]:
    """Mean and standard error of ``fn(seed)`` over ``count`` independent seeds."""
    values = np.array([fn(seed) for seed in range(count)])
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(count))


# ------------------------------------------------------------------ sliced Wasserstein
def test_sliced_wasserstein_exact_cases():
    x = _normal(300, 2, 0)
    assert sliced_wasserstein(x, x) == 0.0
    y = _normal(300, 2, 1)
    assert sliced_wasserstein(x, y) == pytest.approx(sliced_wasserstein(y, x), rel=1e-12)
    # 1-D: every direction is +-1, and W2 between a sample and its translate is the shift.
    x1 = _normal(100, 1, 2)
    assert sliced_wasserstein(x1, x1 + 0.7) == pytest.approx(0.7, rel=1e-12)
    # Unequal sizes, by hand: x = {0, 1, 2}, y = {0, 3}. On the breakpoints 1/3, 1/2, 2/3, 1
    # the quantile gaps are 0, 1, -2, -1, so W2^2 = 0/3 + 1/6 + 4/6 + 1/3 = 7/6.
    a, b = torch.tensor([[0.0], [1.0], [2.0]]), torch.tensor([[0.0], [3.0]])
    assert sliced_wasserstein(a, b) == pytest.approx(math.sqrt(7 / 6), rel=1e-12)
    assert sliced_wasserstein(b, a) == pytest.approx(math.sqrt(7 / 6), rel=1e-12)


def test_sliced_wasserstein_unequal_sizes_are_exact():
    """Repeating a sample set leaves its empirical measure unchanged, so the distance too."""
    x, y = _normal(200, 3, 3), _normal(150, 3, 4)
    assert sliced_wasserstein(x, torch.cat([x, x])) == pytest.approx(0.0, abs=1e-12)
    assert sliced_wasserstein(x, torch.cat([y, y])) == pytest.approx(
        sliced_wasserstein(x, y), rel=1e-10
    )
    same_size = sliced_wasserstein(torch.cat([x, x, x]), torch.cat([y, y, y, y]))
    assert same_size == pytest.approx(sliced_wasserstein(x, y), rel=1e-10)


def test_sliced_wasserstein_of_a_translate():
    """y = x + delta: each projection's W2^2 is (theta . delta)^2, whose mean over uniform
    directions in 2-D is |delta|^2 E[cos^2] = |delta|^2 / 2; cos^2 has variance 1/8, so with
    P directions the estimate of SW^2 / |delta|^2 has standard error sqrt(1 / (8 P))."""
    P, delta = 4096, 1.5
    x = _normal(500, 2, 5)
    sw = sliced_wasserstein(x, x + torch.tensor([delta, 0.0]), num_projections=P, seed=1)
    assert abs(sw**2 / delta**2 - 0.5) < Z * math.sqrt(1 / (8 * P))
    # the seed picks the directions: deterministic given the seed
    y = _normal(500, 2, 6)
    assert sliced_wasserstein(x, y, seed=3) == sliced_wasserstein(x, y, seed=3)


# ------------------------------------------------------------------ MMD
def _mmd_gaussian(h: float, d: int, shift: float) -> float:
    """Population MMD^2 between N(0, I) and N(shift e1, I) for the kernel exp(-|.|^2 / 2h^2):
    E k(X, X') = (h^2 / (h^2 + 2))^(d/2), E k(X, Y) = that * exp(-shift^2 / (2 (h^2 + 2)))."""
    c = (h * h / (h * h + 2)) ** (d / 2)
    return 2 * c * (1 - math.exp(-(shift**2) / (2 * (h * h + 2))))


@pytest.mark.parametrize("shift", [0.0, 1.0])
def test_mmd_is_unbiased(shift):
    h, d, n, reps = 1.0, 2, 100, 40

    def one(seed: int) -> float:
        return mmd(_normal(n, d, 2 * seed), _normal(n, d, 2 * seed + 1, shift), h)

    mean, se = _replicates(one, reps)
    exact = _mmd_gaussian(h, d, shift)
    assert abs(mean - exact) < Z * se, (mean, exact, se)
    if shift == 0.0:
        # The biased (V-statistic) estimator adds (1 - E k(X, X')) / n per within-sample term,
        # i.e. 2 (1 - c) / n = 0.0133 here: the test above would catch it.
        v_bias = 2 * (1 - h * h / (h * h + 2)) / n
        assert v_bias > 2 * Z * se


def test_mmd_matches_brute_force_with_chunking(monkeypatch):
    x, y = _normal(37, 3, 7), _normal(23, 3, 8, shift=0.5)
    hs = [0.5, 2.0]

    def brute(h: float) -> float:
        k = lambda a, b: torch.exp(-(torch.cdist(a, b) ** 2) / (2 * h * h))  # noqa: E731
        kxx, kyy = k(x, x), k(y, y)
        n, m = len(x), len(y)
        return float(
            (kxx.sum() - kxx.diag().sum()) / (n * (n - 1))
            + (kyy.sum() - kyy.diag().sum()) / (m * (m - 1))
            - 2 * k(x, y).mean()
        )

    expected = brute(hs[0]) + brute(hs[1])
    assert mmd(x, y, hs) == pytest.approx(expected, rel=1e-10, abs=1e-13)
    monkeypatch.setattr(distances, "_BLOCK_ELEMENTS", 7)  # blocks of a single row
    assert mmd(x, y, hs) == pytest.approx(expected, rel=1e-10, abs=1e-13)
    assert mmd(x, y, 0.5) == pytest.approx(brute(0.5), rel=1e-10, abs=1e-13)
    assert mmd(y, x, hs) == pytest.approx(expected, rel=1e-10, abs=1e-13)  # symmetric


def test_mmd_validation_and_inputs():
    x = _normal(10, 2, 0)
    with pytest.raises(ValueError, match="bandwidth must be a positive float"):
        mmd(x, x, 0.0)
    with pytest.raises(ValueError, match="bandwidth"):
        mmd(x, x, [])
    with pytest.raises(ValueError, match="at least 2 samples"):
        mmd(x[:1], x, 1.0)
    with pytest.raises(ValueError, match="different dimensions: 2 vs 3"):
        mmd(x, _normal(10, 3, 1), 1.0)
    # numpy inputs and (N, ...) shapes are flattened to (N, D)
    imgs = np.random.default_rng(0).normal(size=(6, 2, 2))
    assert mmd(imgs, imgs.reshape(6, 4), 1.0) == pytest.approx(
        mmd(imgs.reshape(6, 4), imgs.reshape(6, 4), 1.0)
    )


def test_mmd_ten_thousand_squared():
    """10k x 10k in blocks: the 8gaussians toy against its exact oracle at the mode scale."""
    x = sample_toy("8gaussians", 10_000, seed=0)
    y = toy_mixture("8gaussians").sample(10_000, seed=1)
    value = mmd(x, y, 0.35)
    # unbiased MMD^2 of identical laws at n = 10k has sd ~ 1e-4 (see the floor below)
    assert abs(value) < 1e-3
    # A shift of 0.5: per mode, 2 c (1 - exp(-0.5^2 / (2 (h^2 + 2 s^2)))) / 8 = 0.023 with
    # c = h^2 / (h^2 + 2 s^2) = 0.33 (s = 0.354, h = 0.35); modes barely interact.
    shifted = mmd(x, y + torch.tensor([0.5, 0.0], dtype=y.dtype), 0.35)
    assert 0.018 < shifted < 0.028


# ------------------------------------------------------------------ energy distance
def _energy_gaussian_1d(shift: float) -> float:
    """2 E|X - Y| - E|X - X'| - E|Y - Y'| for N(0, 1) vs N(shift, 1): differences are
    N(mu, 2) with E|N(mu, 2)| = (2 / sqrt(pi)) exp(-mu^2 / 4) + mu (1 - 2 Phi(-mu / sqrt(2)))."""

    def abs_mean(mu: float) -> float:
        phi = 0.5 * math.erfc(mu / 2)  # Phi(-mu / sqrt 2)
        return 2 / math.sqrt(math.pi) * math.exp(-(mu**2) / 4) + mu * (1 - 2 * phi)

    return 2 * abs_mean(shift) - 2 * abs_mean(0.0)


@pytest.mark.parametrize("shift", [0.0, 1.0])
def test_energy_distance_is_unbiased(shift):
    n, reps = 150, 30

    def one(seed: int) -> float:
        return energy_distance(_normal(n, 1, 2 * seed), _normal(n, 1, 2 * seed + 1, shift))

    mean, se = _replicates(one, reps)
    assert abs(mean - _energy_gaussian_1d(shift)) < Z * se


def test_energy_distance_brute_force_symmetry_and_chunking(monkeypatch):
    x, y = _normal(31, 2, 9), _normal(17, 2, 10, shift=1.0)
    n, m = len(x), len(y)
    expected = float(
        2 * torch.cdist(x, y).mean()
        - torch.cdist(x, x).sum() / (n * (n - 1))
        - torch.cdist(y, y).sum() / (m * (m - 1))
    )
    assert energy_distance(x, y) == pytest.approx(expected, rel=1e-7)
    monkeypatch.setattr(distances, "_BLOCK_ELEMENTS", 5)
    assert energy_distance(x, y) == pytest.approx(expected, rel=1e-7)
    assert energy_distance(y, x) == pytest.approx(expected, rel=1e-7)
    with pytest.raises(ValueError, match="at least 2 samples"):
        energy_distance(x[:1], y)


# ------------------------------------------------------------------ noise floor
def _eight_gaussians_reference(n: int, seed: int) -> torch.Tensor:
    return toy_mixture("8gaussians").sample(n, seed=seed)


def test_with_noise_floor_definition():
    n, ref = 300, _eight_gaussians_reference
    x = sample_toy("8gaussians", n, seed=100)
    out = with_noise_floor(sliced_wasserstein, x, ref, seed=7, num_projections=16)
    assert set(out) == {"value", "floor"}
    assert out["value"] == sliced_wasserstein(x, ref(n, 7), num_projections=16)
    assert out["floor"] == sliced_wasserstein(ref(n, 8), ref(n, 9), num_projections=16)


def test_noise_floor_separates_exact_from_shifted_samples():
    """For exact samples, value and floor are exchangeable (each compares two independent exact
    sets of size n), so value > floor is a fair coin: over 20 replicates the count is
    Binomial(20, 1/2), inside [3, 17] with probability 0.997. A shift of 1.5 along x moves SW
    to about sqrt(1.5^2 / 2) = 1.06, against floors of ~0.15 at n = 1000 (8 well-separated
    modes: SW is dominated by mode-weight noise and shrinks only like n^(-1/4))."""
    n, reps, ref = 1000, 20, _eight_gaussians_reference
    shift = torch.tensor([1.5, 0.0])
    above, ratios = 0, []
    for i in range(reps):
        x = sample_toy("8gaussians", n, seed=i)
        exact = with_noise_floor(sliced_wasserstein, x, ref, seed=1000 + 3 * i, num_projections=64)
        above += exact["value"] > exact["floor"]
        bad = with_noise_floor(
            sliced_wasserstein, x + shift, ref, seed=1000 + 3 * i, num_projections=64
        )
        ratios.append(bad["value"] / bad["floor"])
    assert 3 <= above <= 17
    assert min(ratios) > 3
    # Unbiased MMD^2 and energy distance: exact samples score ~0 (sd ~1e-3 and ~4e-3 at this
    # n); shifted ones ~0.07 (MMD at the mode scale 0.35) and ~0.6: more than 10 noise levels.
    x = sample_toy("8gaussians", n, seed=99)
    for metric, kw in ((mmd, {"bandwidth": 0.35}), (energy_distance, {})):
        exact = with_noise_floor(metric, x, ref, **kw)
        bad = with_noise_floor(metric, x + shift, ref, **kw)
        noise = max(abs(exact["value"]), abs(exact["floor"]), abs(bad["floor"]))
        assert bad["value"] > 10 * noise, (metric.__name__, bad, exact)


def test_noise_floor_with_repeats_is_a_steady_typical_size():
    def ref(n, seed):
        return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))

    exact = ref(500, 99)
    out = with_noise_floor(mmd, exact, ref, seed=0, repeats=8, bandwidth=0.5)
    assert out["floor"] > 0  # an RMS, unlike a single unbiased MMD^2 draw (which can be < 0)
    assert abs(out["value"]) < 4 * out["floor"]  # exact samples sit at the floor
    shifted = with_noise_floor(mmd, exact + 0.3, ref, seed=0, repeats=8, bandwidth=0.5)
    assert shifted["value"] > 10 * shifted["floor"]
    with pytest.raises(ValueError, match="repeats"):
        with_noise_floor(mmd, exact, ref, repeats=0, bandwidth=0.5)
