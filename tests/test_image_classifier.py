"""The noise-aware classifier of classifier guidance (Dhariwal & Nichol 2021, Sec. 4.1):
shapes, deterministic training that leaves the global RNG alone, a loss that falls on a fixed
noisy batch, accuracy that decays to chance with the noise, files, and use as a guide."""

from __future__ import annotations

import pytest
import torch

from diffusio.core.processes import make_process
from diffusio.core.steering import ClassifierGuidance
from diffusio.image.classifier import (
    NoisyClassifier,
    accuracy_by_noise,
    load_noisy_classifier,
    save_noisy_classifier,
    train_noisy_classifier,
)

pytest.importorskip("sklearn")

TINY = {"channels": 8, "num_heads": 2, "groups": 4}
PROCESS = make_process("vp-linear")


@pytest.fixture(scope="module")
def digits():
    from diffusio.data.datasets import load_image_dataset

    return load_image_dataset("digits", "train"), load_image_dataset("digits", "test")


@pytest.mark.parametrize("pool", ["attention", "mean"])
def test_shapes_and_time_inputs(pool):
    model = NoisyClassifier(num_classes=7, pool=pool, **TINY)
    x = torch.randn(5, 1, 8, 8)
    logits = model(x, torch.rand(5))
    assert logits.shape == (5, 7) and torch.isfinite(logits).all()
    same = model(x, torch.full((5,), 0.3))
    torch.testing.assert_close(model(x, 0.3), same)  # a scalar time is broadcast
    torch.testing.assert_close(model(x, torch.tensor(0.3)), same)
    with torch.no_grad():  # the blocks start as the identity (zero-initialised last convs)
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape))
    assert not torch.allclose(model(x, 0.9), model(x, 0.3))  # then the time matters
    wide = NoisyClassifier(in_channels=3, image_size=16, channel_mults=(1, 2, 2), **TINY)
    assert wide(torch.randn(2, 3, 16, 16), torch.rand(2)).shape == (2, 10)


def test_bad_options_and_inputs():
    with pytest.raises(ValueError, match="pool"):
        NoisyClassifier(pool="max")
    with pytest.raises(ValueError, match="divisible"):
        NoisyClassifier(image_size=6, channel_mults=(1, 2, 2))
    with pytest.raises(ValueError, match="channels"):
        NoisyClassifier(channels=0)
    with pytest.raises(ValueError, match="expected images"):
        NoisyClassifier(**TINY)(torch.randn(2, 3, 8, 8), 0.5)
    with pytest.raises(ValueError, match="labels"):
        train_noisy_classifier(PROCESS, torch.randn(4, 1, 8, 8), torch.zeros(3), steps=1)


def test_training_is_deterministic_and_leaves_the_global_rng(digits):
    (x, y), _ = digits
    state = torch.get_rng_state()
    a = train_noisy_classifier(PROCESS, x, y, steps=5, batch_size=16, seed=3, **TINY)
    assert torch.equal(torch.get_rng_state(), state)
    b = train_noisy_classifier(PROCESS, x, y, steps=5, batch_size=16, seed=3, **TINY)
    c = train_noisy_classifier(PROCESS, x, y, steps=5, batch_size=16, seed=4, **TINY)
    for name, tensor in a.state_dict().items():
        assert torch.equal(tensor, b.state_dict()[name]), name
    assert any(not torch.equal(t, c.state_dict()[k]) for k, t in a.state_dict().items())
    assert not a.training  # returned in eval mode
    assert a.num_classes == 10 and a.image_size == 8  # read from the data


def test_training_lowers_the_loss_on_a_fixed_noisy_batch(digits):
    (x, y), _ = digits
    gen = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(x), generator=gen)[:256]
    t = PROCESS.discrete().times[torch.randint(0, 300, (256,), generator=gen)].float()
    xt = PROCESS.marginal(x[idx], t, torch.randn(x[idx].shape, generator=gen))

    def loss(model: NoisyClassifier) -> float:
        with torch.no_grad():
            return float(torch.nn.functional.cross_entropy(model(xt, t), y[idx]))

    log: list[dict[str, float]] = []
    short = train_noisy_classifier(PROCESS, x, y, steps=1, batch_size=64, seed=0, **TINY)
    longer = train_noisy_classifier(
        PROCESS, x, y, steps=150, batch_size=64, lr=3e-3, seed=0, log=log, log_every=50, **TINY
    )
    assert loss(longer) < 0.8 * loss(short)
    assert [r["step"] for r in log] == [50, 100, 150]
    assert log[-1]["loss"] < log[0]["loss"]


def test_accuracy_falls_to_chance_with_the_noise(digits):
    (x, y), (x_test, y_test) = digits
    model = train_noisy_classifier(PROCESS, x, y, steps=250, batch_size=64, lr=3e-3, **TINY)
    rows = accuracy_by_noise(model, PROCESS, x_test, y_test)
    assert [r["index"] for r in rows] == [*range(0, 1000, 100), 999]
    alpha_bar = [r["alpha_bar"] for r in rows]
    assert alpha_bar == sorted(alpha_bar, reverse=True)
    assert rows[0]["accuracy"] > 0.5  # nearly clean digits are easy
    assert rows[-1]["accuracy"] < 0.25  # pure noise: chance is 0.1
    with pytest.raises(ValueError, match="outside"):
        accuracy_by_noise(model, PROCESS, x_test, y_test, indices=[1000])


def test_save_and_load_round_trip(tmp_path):
    model = NoisyClassifier(num_classes=4, pool="mean", **TINY).eval()
    path = save_noisy_classifier(model, tmp_path / "clf.safetensors", {"steps": 7})
    loaded, meta = load_noisy_classifier(path)
    assert meta == {"steps": 7} and loaded.options == model.options
    x = torch.randn(3, 1, 8, 8)
    torch.testing.assert_close(loaded(x, 0.2), model(x, 0.2))
    from diffusio.train.checkpoint import write_safetensors

    write_safetensors(tmp_path / "other.safetensors", {"w": torch.zeros(2)}, {"format": "x"})
    with pytest.raises(ValueError, match="not a noisy classifier"):
        load_noisy_classifier(tmp_path / "other.safetensors")


def test_the_classifier_guides_a_sampler():
    """Its gradient drives ClassifierGuidance: the right shape, finite, and nonzero."""
    model = NoisyClassifier(**TINY).eval()
    guide = ClassifierGuidance(model, torch.arange(6) % 10, 2.0)
    grad = guide.gradient(torch.randn(6, 1, 8, 8), torch.full((6,), 0.4))
    assert grad.shape == (6, 1, 8, 8) and torch.isfinite(grad).all() and grad.abs().sum() > 0
