"""The toy scorer on exact samples: mode weights with binomial errors, diverged and off-mode
samples, the mode chi-square and its parts, the noise floors, and the score error of an exact
model (zero) against a perturbed one."""

import math

import pytest
import torch

from diffusio.core.processes import make_process
from diffusio.data.toys import toy_mixture
from diffusio.metrics.distances import noise_floors, with_noise_floor
from diffusio.oracle import GaussianMixture
from diffusio.toy.data import max_pairwise_distance, standardized_mixture, uniform_box
from diffusio.toy.score_error import relative_score_error, score_errors
from diffusio.toy.scorer import (
    chi2_stderr,
    discrepancy_parts,
    finite_rows,
    floor_scores,
    mode_chi2,
    mode_weight,
    off_mode_fraction,
    two_sample_metrics,
    weight_row,
)


@pytest.fixture(scope="module")
def two_modes() -> GaussianMixture:
    return GaussianMixture([[5.0, 5.0], [-5.0, -5.0]], [1.0, 1.0], [0.8, 0.2])


def test_mode_weight_and_diverged_samples(two_modes):
    x = two_modes.sample(4000, seed=3)
    weight, se = mode_weight(two_modes, x)
    assert se == pytest.approx(math.sqrt(weight * (1 - weight) / 4000))
    assert abs(weight - 0.8) < 4 * se
    x[:10] = float("nan")
    finite, diverged = finite_rows(x)
    assert diverged == 10 and finite.shape[0] == 3990
    assert off_mode_fraction(two_modes, x) >= 10 / 4000  # diverged counts as off-mode
    row = weight_row(two_modes, x)
    assert row["diverged"] == 10 and row["z"] == pytest.approx((row["weight"] - 0.8) / row["se"])


def test_mode_chi2_parts_and_bootstrap():
    mix = toy_mixture("8gaussians")
    x = mix.sample(2000, seed=1)
    parts = discrepancy_parts(mix, x)
    assert parts["discrepancy"] == pytest.approx(mode_chi2(mix, x))
    assert 0.3 < parts["weight"] < 3 and abs(parts["std_ratio"] - 1) < 0.05
    assert 0 < chi2_stderr(mix, x, draws=20) < 1
    wide = discrepancy_parts(mix, x * 1.2)  # blurred and displaced modes
    assert wide["discrepancy"] > 10 * parts["discrepancy"]


def test_noise_floors_are_one_computation():
    mix = toy_mixture("8gaussians")

    def ref(n, seed):
        return mix.sample(n, seed=seed)

    metrics = two_sample_metrics(0.35, num_projections=32)
    floors = noise_floors(metrics, ref, 300, pairs=4, seed=50)
    assert set(floors) == {"sw", "mmd"} and all(f.n == 300 and f.sd > 0 for f in floors.values())
    single = with_noise_floor(metrics["sw"], ref(300, 1), ref, seed=49)
    assert single["floor"] == pytest.approx(metrics["sw"](ref(300, 50), ref(300, 51)))
    scores = floor_scores(ref(300, 2), ref, metrics, pairs=4, seed=49, floor_seed=50)
    assert scores["sw"]["null_mean"] == pytest.approx(floors["sw"].mean)
    assert scores["sw"]["z"] == pytest.approx(floors["sw"].z(scores["sw"]["value"]))
    shifted = floor_scores(ref(300, 2) + 1.0, ref, metrics, pairs=4, seed=49, floor_seed=50)
    assert shifted["mmd"]["z"] > 10 and shifted["sw"]["z"] > 10


def test_score_error_of_the_exact_score_is_zero(two_modes):
    ladder = make_process("ve", sigma_min=0.05, sigma_max=20.0, num_steps=10)
    exact = two_modes.model(ladder, prediction="score")
    other = GaussianMixture([[5.0, 5.0], [-5.0, -5.0]], [1.0, 1.0], [0.5, 0.5])
    x0 = two_modes.sample(200, seed=0)
    box = uniform_box(200, 8.0, seed=1)
    assert relative_score_error(exact, exact, x0, 0.5) == 0.0
    rows = score_errors(other.model(ladder, prediction="score"), exact, x0, box, seed=0)
    assert len(rows) == 10 and all(r["data"] >= 0 and r["box"] >= 0 for r in rows)
    assert max(r["box"] for r in rows) > 0.01


def test_toy_data_helpers(two_modes):
    box = uniform_box(1000, 8.0, seed=0)
    assert box.shape == (1000, 2) and box.abs().max() <= 8.0
    assert torch.equal(box, uniform_box(1000, 8.0, seed=0))
    pts = torch.tensor([[0.0, 0.0], [3.0, 4.0], [1.0, 1.0]])
    assert max_pairwise_distance(pts) == pytest.approx(5.0)

    class Norm:
        mean, std = torch.tensor([1.0, 1.0]), torch.tensor([2.0, 2.0])

    seen = standardized_mixture(two_modes, Norm())
    assert torch.allclose(seen.means[0], torch.tensor([2.0, 2.0], dtype=seen.means.dtype))
