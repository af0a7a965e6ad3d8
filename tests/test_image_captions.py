"""Captioned digits: deterministic rendering with controlled attributes, template captions, the
held-out paraphrase vocabulary and caption parsing."""

import numpy as np
import pytest
import torch

from diffusio.image.captions import (
    HELDOUT_WORDS,
    TRAIN_WORDS,
    VALUES,
    make_captioned,
    parse_caption,
    render_digits,
    tokenize,
)
from diffusio.image.judge import ink_centroid, slant_angle, stroke_width


@pytest.fixture(scope="module")
def train_set():
    return make_captioned("digits", 300, seed=0)


@pytest.fixture(scope="module")
def heldout_set():
    return make_captioned("digits", 300, seed=1, split="test", vocabulary="heldout")


def test_shapes_labels_and_determinism(train_set):
    s = train_set
    assert s.images.shape == (300, 1, 16, 16) and len(s) == 300
    assert s.images.min() >= -1 and s.images.max() <= 1
    for a, values in VALUES.items():
        assert s.labels[a].dtype == np.int64 and s.labels[a].shape == (300,)
        assert set(np.unique(s.labels[a])) <= set(range(len(values)))
        assert ((s.asked[a] == -1) | (s.asked[a] == s.labels[a])).all()  # captions never lie
    assert (s.asked["digit"] == s.labels["digit"]).all()
    large = s.labels["size"] == VALUES["size"].index("large")
    assert (s.labels["position"][large] == 0).all()  # a large digit sits in the centre
    again = make_captioned("digits", 300, seed=0)
    assert torch.equal(again.images, s.images) and again.captions == s.captions
    other = make_captioned("digits", 300, seed=2)
    assert other.captions != s.captions


def test_every_caption_parses_to_what_it_asks(train_set, heldout_set):
    for s in (train_set, heldout_set):
        for i, caption in enumerate(s.captions):
            parsed = parse_caption(caption)
            assert parsed.unknown == () and parsed.conflicts == (), caption
            assert parsed.indices() == {a: int(s.asked[a][i]) for a in s.asked}, caption


def test_heldout_words_never_in_training_captions(train_set, heldout_set):
    assert HELDOUT_WORDS and not HELDOUT_WORDS & TRAIN_WORDS
    assert {"bold", "upper", "skinny", "italic", "center"} <= HELDOUT_WORDS
    train_tokens = {t for c in train_set.captions for t in tokenize(c)}
    assert train_tokens <= TRAIN_WORDS and not train_tokens & HELDOUT_WORDS
    for caption in heldout_set.captions:  # each paraphrase caption says something new
        assert set(tokenize(caption)) & HELDOUT_WORDS, caption
    assert all(tokenize(c)[0] in ("a", "an", "the") for c in train_set.captions)


def test_parse_caption_examples():
    p = parse_caption("A thick seven in the top-left!")
    assert p.attributes == {"digit": 7, "thickness": "thick", "slant": None,
                            "position": "top-left", "size": None}  # fmt: skip
    assert parse_caption("the digit 7").attributes["digit"] == 7
    p = parse_caption("a slanted 3 at the bottom right")
    assert (p.attributes["slant"], p.attributes["position"]) == ("right", "bottom-right")
    p = parse_caption("a bold italic 4 in the upper left corner")
    assert p.indices() == {"digit": 4, "thickness": 2, "slant": 2, "position": 1, "size": -1}
    p = parse_caption("a purple 2 slanted to the left, thin and thick")
    assert p.attributes["slant"] == "left" and p.attributes["thickness"] == "thin"
    assert p.unknown == ("purple", "and") and p.conflicts == ("thick",)
    assert parse_caption("").attributes == dict.fromkeys(VALUES)
    with pytest.raises(ValueError, match="string"):
        parse_caption(7)


def test_attribute_selection():
    plain = make_captioned("digits", 20, seed=0, attributes=())
    assert (plain.labels["thickness"] == 1).all() and (plain.labels["size"] == 1).all()
    assert all(parse_caption(c).indices()["slant"] == -1 for c in plain.captions)
    placed = make_captioned("digits", 20, seed=0, attributes=("position",), mention=1.0)
    assert (placed.labels["size"] == 0).all()
    assert (placed.asked["position"] == placed.labels["position"]).all()


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown attributes"):
        make_captioned("digits", 4, attributes=("colour",))
    with pytest.raises(ValueError, match="unknown source"):
        make_captioned("cifar", 4)
    with pytest.raises(ValueError, match="vocabulary"):
        make_captioned("digits", 4, vocabulary="test")
    with pytest.raises(ValueError, match="n must"):
        make_captioned("digits", 0)
    with pytest.raises(ValueError, match="rows each"):
        render_digits(torch.zeros(2, 1, 8, 8), [0.0], [0.1, 0.1], [10, 10], [[8, 8]] * 2)


def test_render_controls_each_attribute():
    """One digit rendered with a thin / normal / thick pen, sheared left / right, and placed at
    two centres: the measured stroke, slant and centroid follow the controls."""
    from diffusio.data.datasets import load_image_dataset

    x, _ = load_image_dataset("mnist-5k", "train")
    base = x[:1].repeat(5, 1, 1, 1)
    out = render_digits(base, shear=[0, 0, 0, -0.4, 0.4], stroke=[0.07, 0.13, 0.24, 0.13, 0.13],
                        height=[20] * 5, centre=[[13.5, 13.5]] * 5, canvas=28)  # fmt: skip
    w = stroke_width(out[:3])
    assert w[0] < w[1] < w[2]
    angles = slant_angle(out)
    assert abs(float(angles[1])) < 5 and float(angles[3]) < -15 and float(angles[4]) > 15
    small = render_digits(base[:2], [0, 0], [0.15, 0.15], [14, 14], [[6.75, 6.75], [20, 20]])
    c = ink_centroid(small)
    assert c[0].tolist() == pytest.approx([6.75, 6.75], abs=1.5)
    assert c[1].tolist() == pytest.approx([20, 20], abs=1.5)
