"""The attribute judge: exact measurements on images of known geometry, and recovery of the
attributes of rendered captioned digits."""

import math

import numpy as np
import pytest
import torch

from diffusio.image.captions import make_captioned
from diffusio.image.judge import (
    AttributeJudge,
    crop_to_ink,
    ink_bbox,
    ink_centroid,
    measure,
    slant_angle,
    stroke_width,
    train_judge_classifier,
)


def _image(ink: torch.Tensor) -> torch.Tensor:
    return (ink * 2 - 1)[None, None]


def _supersampled(inside, n: int = 28, s: int = 8) -> torch.Tensor:
    """An anti-aliased shape: the fraction of each pixel's s x s sub-samples ``inside(X, Y)``
    (pixel (i, j) centred at (x, y) = (j, i))."""
    g = (torch.arange(n * s, dtype=torch.float64) + 0.5) / s - 0.5
    Y, X = torch.meshgrid(g, g, indexing="ij")
    return inside(X, Y).double().view(n, s, n, s).mean((1, 3)).float()


def test_centroid_and_bbox_of_rectangles():
    u = torch.zeros(28, 28)
    u[3:9, 10:21] = 1.0  # rows 3..8, columns 10..20
    c = ink_centroid(_image(u))[0]
    assert c.tolist() == pytest.approx([15.0, 5.5], abs=1e-9)
    assert ink_bbox(_image(u))[0].tolist() == [10, 3, 20, 8]
    # an anti-aliased disc centred off the grid: within half a pixel, symmetric shape
    disc = _supersampled(lambda X, Y: (X - 7.3) ** 2 + (Y - 19.6) ** 2 < 16)
    assert ink_centroid(_image(disc))[0].tolist() == pytest.approx([7.3, 19.6], abs=0.05)
    blank = -torch.ones(2, 1, 28, 28)
    assert ink_centroid(blank).tolist() == [[13.5, 13.5]] * 2
    assert ink_bbox(blank).tolist() == [[-1] * 4] * 2
    assert measure(blank)["stroke"].tolist() == [0.0, 0.0]


@pytest.mark.parametrize("angle", [-30.0, -12.0, 0.0, 8.0, 25.0])
@pytest.mark.parametrize("width", [2.0, 4.0])
def test_slant_and_width_of_sheared_bars(angle, width):
    """A bar sheared to ``angle`` (top to the right for positive angles), horizontal width
    ``width``: the slant is the construction angle to within 0.5 degree, the stroke width the
    perpendicular width ``width cos(angle)`` to within a quarter pixel."""
    k = math.tan(math.radians(angle))
    bar = _supersampled(lambda X, Y: ((X - 13.5 + k * (Y - 13.5)).abs() < width / 2)
                        & ((Y - 13.5).abs() < 9))  # fmt: skip
    assert float(slant_angle(_image(bar))) == pytest.approx(angle, abs=0.5)
    assert float(stroke_width(_image(bar))) == pytest.approx(
        width * math.cos(math.radians(angle)), abs=0.25
    )


@pytest.mark.parametrize("width", [1, 2, 3, 5])
def test_stroke_width_of_axis_aligned_bars_and_rings(width):
    u = torch.zeros(28, 28)
    u[4:24, 10 : 10 + width] = 1.0
    assert float(stroke_width(_image(u))) == pytest.approx(width, abs=0.05 * width + 0.05)
    assert float(stroke_width(_image(u.T.contiguous()))) == pytest.approx(
        float(stroke_width(_image(u))), abs=1e-5
    )  # no direction is preferred
    if width >= 2:  # a ring of radius R: the equivalent rectangle's side w + w^2 / (2 pi R)
        ring = _supersampled(lambda X, Y: (((X - 13.5) ** 2 + (Y - 13.5) ** 2).sqrt() - 9).abs()
                             < width / 2)  # fmt: skip
        expected = width + width**2 / (2 * math.pi * 9)
        assert float(stroke_width(_image(ring))) == pytest.approx(expected, abs=0.15)


def test_measurements_reject_bad_input():
    with pytest.raises(ValueError, match="expected images"):
        ink_centroid(torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match="NaN"):
        stroke_width(torch.full((1, 1, 8, 8), float("nan")))
    with pytest.raises(ValueError, match="threshold"):
        ink_bbox(torch.zeros(1, 1, 8, 8), threshold=1.5)


@pytest.fixture(scope="module")
def judged():
    calibration = make_captioned("mnist-5k", 600, seed=0)
    test = make_captioned("mnist-5k", 300, seed=5, split="test", vocabulary="heldout")
    return AttributeJudge.calibrate(calibration), calibration, test


def test_judge_recovers_rendered_attributes(judged):
    judge, _, test = judged
    pred = judge.predict(test.images)
    accuracy = {a: float((pred[a] == test.labels[a]).mean()) for a in pred}
    assert "digit" not in pred  # no classifier, no digit judgement
    assert accuracy["position"] >= 0.95 and accuracy["size"] >= 0.95
    assert accuracy["thickness"] >= 0.9 and accuracy["slant"] >= 0.9


def test_score_against_captions(judged):
    judge, _, test = judged
    digits = torch.as_tensor(test.labels["digit"])
    oracle = AttributeJudge(judge.thresholds, judge.positions, lambda x: digits[: len(x)],
                            judge.info)  # fmt: skip
    by_mapping = oracle.score(test.images, test.asked)
    by_text = oracle.score(test.images, test.captions)
    assert by_mapping["accuracy"] == by_text["accuracy"]
    assert by_mapping["accuracy"]["digit"] == 1.0
    assert by_mapping["counts"]["digit"] == len(test)
    assert by_mapping["all"] >= 0.9 and by_mapping["correct"].shape == (len(test),)
    # one caption for every image: the share of images that happen to match it
    one = judge.score(test.images[:50], "a small thick digit in the top left")
    assert one["counts"]["position"] == 50 and one["accuracy"]["digit"] is None
    want = (test.labels["position"][:50] == 1) & (test.labels["size"][:50] == 0)
    assert one["accuracy"]["position"] == pytest.approx(
        float((judge.predict(test.images[:50])["position"] == 1).mean()))  # fmt: skip
    assert want.mean() <= 0.5
    with pytest.raises(ValueError, match="unknown attribute"):
        judge.score(test.images, {"colour": 1})
    with pytest.raises(ValueError, match="captions for"):
        judge.score(test.images, ["a 7"] * 3)
    with pytest.raises(ValueError, match="calibrated on"):
        judge.predict(torch.zeros(2, 1, 16, 16))


def test_calibration_needs_varying_attributes():
    fixed = make_captioned("digits", 40, seed=0, attributes=("thickness",))
    with pytest.raises(ValueError, match="size varies"):
        AttributeJudge.calibrate(fixed)


def test_judge_classifier_learns_digits(judged):
    _, calibration, test = judged
    x = crop_to_ink(test.images[:4])
    assert x.shape == (4, 1, 16, 16) and x.min() >= -1 and x.max() <= 1
    clf = train_judge_classifier(calibration.images, calibration.labels["digit"], steps=120)
    with torch.no_grad():
        acc = float((clf(test.images).argmax(1).numpy() == test.labels["digit"]).mean())
    assert acc >= 0.5  # 120 steps on 600 images; the judge's defaults reach ~96%
    again = train_judge_classifier(calibration.images[:64], calibration.labels["digit"][:64],
                                   steps=3)  # fmt: skip
    twice = train_judge_classifier(calibration.images[:64], calibration.labels["digit"][:64],
                                   steps=3)  # fmt: skip
    with torch.no_grad():
        assert torch.equal(again(test.images[:8]), twice(test.images[:8]))
    with pytest.raises(ValueError, match="labels for"):
        train_judge_classifier(calibration.images[:4], np.zeros(3))
