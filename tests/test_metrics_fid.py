"""Fréchet distance against closed forms; the digits feature classifier (accuracy, cache,
determinism) and the evaluator (noise floor far below noise and one-class sets)."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

pytest.importorskip("sklearn")

from diffusio.data.datasets import load_image_dataset  # noqa: E402
from diffusio.metrics import fid  # noqa: E402
from diffusio.metrics.fid import (  # noqa: E402
    FeatureClassifier,
    ImageEvaluator,
    classifier_path,
    feature_statistics,
    frechet_distance,
    load_classifier,
    train_classifier,
)

RNG = np.random.default_rng(0)


def random_spd(d: int, rank: int | None = None) -> np.ndarray:
    a = RNG.standard_normal((d, rank or d))
    return a @ a.T / d + (0 if rank else 0.1 * np.eye(d))


# ------------------------------------------------------------------ Fréchet distance
def test_identical_gaussians_give_zero():
    mu, cov = RNG.standard_normal(6), random_spd(6)
    assert frechet_distance(mu, cov, mu, cov) == pytest.approx(0.0, abs=1e-8)


def test_one_dimensional_closed_form():
    m1, s1, m2, s2 = 0.3, 1.7, -1.2, 0.4
    expected = (m1 - m2) ** 2 + (s1 - s2) ** 2
    assert frechet_distance(m1, s1**2, m2, s2**2) == pytest.approx(expected, rel=1e-10)
    assert frechet_distance([m1], [[s1**2]], [m2], [[s2**2]]) == pytest.approx(expected, rel=1e-10)


def test_diagonal_closed_form():
    a, b = RNG.uniform(0.1, 3.0, 5), RNG.uniform(0.1, 3.0, 5)
    mu1, mu2 = RNG.standard_normal(5), RNG.standard_normal(5)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    value = frechet_distance(mu1, np.diag(a), mu2, np.diag(b))
    assert value == pytest.approx(expected, rel=1e-10)


def test_full_covariances_match_the_symmetric_form():
    """Tr (S1 S2)^(1/2) = Tr (S1^(1/2) S2 S1^(1/2))^(1/2), computed by eigendecompositions."""
    s1, s2 = random_spd(8), random_spd(8)
    w, v = np.linalg.eigh(s1)
    root1 = v @ np.diag(np.sqrt(w)) @ v.T
    inner = np.linalg.eigvalsh(root1 @ s2 @ root1)
    expected = np.trace(s1) + np.trace(s2) - 2 * np.sum(np.sqrt(np.clip(inner, 0, None)))
    zero = np.zeros(8)
    assert frechet_distance(zero, s1, zero, s2) == pytest.approx(expected, rel=1e-8)


def test_singular_covariances_and_errors():
    s1, s2 = random_spd(10, rank=3), random_spd(10, rank=4)  # fewer samples than dimensions
    value = frechet_distance(np.zeros(10), s1, np.ones(10), s2)
    assert np.isfinite(value) and value >= 10.0  # at least the mean term
    with pytest.raises(ValueError, match="expected means"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="finite"):
        frechet_distance(np.zeros(2), np.eye(2) * np.nan, np.zeros(2), np.eye(2))


def test_feature_statistics():
    f = RNG.standard_normal((50, 4))
    mu, cov = feature_statistics(torch.from_numpy(f).float())
    assert mu.dtype == np.float64 and cov.shape == (4, 4)
    assert np.allclose(mu, f.mean(0), atol=1e-6)
    assert np.allclose(cov, np.cov(f, rowvar=False), atol=1e-6)
    with pytest.raises(ValueError, match="N >= 2"):
        feature_statistics(np.zeros((1, 4)))


# ------------------------------------------------------------------ classifier and cache
@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """Train the digits classifier once for the module; record time and global-RNG state."""
    root = tmp_path_factory.mktemp("cache")
    state = torch.get_rng_state()
    start = time.perf_counter()
    model = load_classifier("digits", cache_dir=root)
    seconds = time.perf_counter() - start
    return {"root": root, "model": model, "seconds": seconds, "rng_kept": torch.equal(
        state, torch.get_rng_state())}  # fmt: skip


@pytest.fixture(scope="module")
def evaluator(cache):
    return ImageEvaluator("digits", cache_dir=cache["root"])


def test_classifier_accuracy_and_global_rng(cache):
    model = cache["model"]
    assert isinstance(model, FeatureClassifier) and not model.training
    assert model.test_accuracy >= 0.97
    assert cache["rng_kept"]
    x, _ = load_image_dataset("digits", "test")
    assert model.features(x[:5]).shape == (5, 64) and model(x[:5]).shape == (5, 10)
    with pytest.raises(ValueError, match=r"expected images \(N, 1, 8, 8\)"):
        model(torch.zeros(2, 1, 16, 16))


def test_classifier_cache_is_fast_and_identical(cache):
    path = classifier_path("digits", None, 0, cache["root"])
    assert path.name == "digits-8-0-v1.safetensors" and path.is_file()
    start = time.perf_counter()
    again = load_classifier("digits", size=8, cache_dir=cache["root"])
    assert time.perf_counter() - start < 2.0
    assert again.test_accuracy == cache["model"].test_accuracy
    for name, t in cache["model"].state_dict().items():
        assert torch.equal(t, again.state_dict()[name]), name


def test_corrupt_cache_is_retrained_with_a_warning(tmp_path, monkeypatch):
    def quick(dataset, size=None, seed=0, epochs=None, progress=False):
        model = train_classifier(dataset, size, seed, epochs=1)
        model.test_accuracy = 0.5
        return model

    monkeypatch.setattr(fid, "train_classifier", quick)
    path = classifier_path("digits", cache_dir=tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a safetensors file")
    with pytest.warns(RuntimeWarning, match="corrupt safetensors file.*retraining"):
        model = load_classifier("digits", cache_dir=tmp_path)
    assert model.test_accuracy == 0.5
    assert load_classifier("digits", cache_dir=tmp_path).test_accuracy == 0.5  # rewritten
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # flip a weight bit: the digest catches it
    path.write_bytes(bytes(data))
    with pytest.warns(RuntimeWarning, match="digest mismatch"):
        load_classifier("digits", cache_dir=tmp_path)


def test_training_is_deterministic():
    threads = torch.get_num_threads()
    a = train_classifier("digits", epochs=1)
    assert torch.get_num_threads() == threads  # trains on one thread, then restores
    b = train_classifier("digits", epochs=1)
    for name, t in a.state_dict().items():
        assert torch.equal(t, b.state_dict()[name]), name
    c = train_classifier("digits", seed=1, epochs=1)
    assert not torch.equal(a.head.weight, c.head.weight)


# ------------------------------------------------------------------ evaluator
def test_noise_floor_is_far_below_noise_and_one_class(evaluator):
    x_train, y_train = load_image_dataset("digits", "train")
    n = evaluator.test_size
    assert n == 359
    floor = evaluator.noise_floor()
    g = torch.Generator().manual_seed(0)
    noise = torch.rand(n, 1, 8, 8, generator=g) * 2 - 1
    one_class = x_train[y_train == 3]
    assert floor < 20.0
    assert evaluator.fid(noise) > 20 * floor
    assert evaluator.fid(one_class) > 20 * floor
    assert evaluator.noise_floor(100) > floor  # fewer samples, higher floor
    assert evaluator.class_histogram(one_class)[3] > 0.9


def test_evaluate_report(evaluator):
    x, y = load_image_dataset("digits", "test")
    report = evaluator.evaluate(x[:200], y[:200])
    assert report["fid_floor"] == evaluator.noise_floor(200) and report["n"] == 200
    assert report["fid"] == pytest.approx(report["fid_floor"])  # test images are the floor set
    assert len(report["histogram"]) == 10 and sum(report["histogram"]) == pytest.approx(1.0)
    assert report["accuracy"] >= 0.95 and report["confidence"] > 0.9
    assert "not Inception" in report["feature_space"]
    assert evaluator.accuracy(x, y) == pytest.approx(evaluator.classifier.test_accuracy)
    big = torch.cat([x, x])
    assert evaluator.evaluate(big)["fid_floor"] == evaluator.noise_floor()  # capped at 359
    assert "accuracy" not in evaluator.evaluate(big)


def test_evaluator_errors(evaluator):
    with pytest.raises(ValueError, match=r"samples must have shape \(N, 1, 8, 8\)"):
        evaluator.fid(torch.zeros(10, 8, 8))
    with pytest.raises(ValueError, match="NaN"):
        evaluator.fid(torch.full((10, 1, 8, 8), float("nan")))
    with pytest.raises(ValueError, match=r"n must be in 2\.\.359"):
        evaluator.noise_floor(1000)
    with pytest.raises(ValueError, match="3 labels for 2 samples"):
        evaluator.accuracy(torch.zeros(2, 1, 8, 8), torch.zeros(3))


def test_predict_and_fid_spread(evaluator):
    x, y = load_image_dataset("digits", "test")
    pred = evaluator.predict(x)
    assert pred.shape == (359,)
    assert float((pred == y).double().mean()) == pytest.approx(evaluator.accuracy(x, y))
    g = torch.Generator().manual_seed(0)
    subsets = {seed: x[torch.randperm(359, generator=g)[:200]] for seed in (1, 2, 3)}
    spread = evaluator.fid_spread(lambda seed: subsets[seed], [1, 2, 3], known={1: 99.0})
    assert spread["fids"][0] == 99.0  # a known FID is not measured again
    assert spread["fids"][1:] == [evaluator.fid(subsets[2]), evaluator.fid(subsets[3])]
    assert spread["mean"] == pytest.approx(sum(spread["fids"]) / 3)
    assert spread["std"] > 0
    assert math.isnan(evaluator.fid_spread(lambda seed: subsets[seed], [2])["std"])
