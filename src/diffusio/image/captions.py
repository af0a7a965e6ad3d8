"""Captioned digits with controlled attributes, for text-to-image at MNIST scale.

Latent diffusion (Rombach et al. 2022), DALL·E 2 (Ramesh et al. 2022) and Imagen (Saharia et
al. 2022) train on web captions and judge samples with a learned CLIP score. Here captions are
generated from attributes we control, so each one a caption asks for can be re-measured in a
sample (:mod:`diffusio.image.judge`): the ``digit`` (from ``digits`` or ``mnist-5k``);
``thickness`` thin / normal / thick (grey-scale erosion or dilation by max-pooling to a target
stroke width); ``slant`` left / upright / right (the digit deskewed by its second moments, as in
MNIST deskewing, then sheared); ``size`` small / large and ``position`` centre or a quadrant (a
large digit is always in the centre).

:func:`make_captioned` renders a :class:`CaptionedSet` (images, integer labels, captions, what
each caption asks for) deterministically from a seed, captions from templates with synonyms
("a thick seven in the top left", "the digit 7", "a small slanted 3 at the bottom right"). The
*held-out paraphrase* vocabulary (``vocabulary="heldout"``) uses words no training caption
contains ("bold", "upper left", "skinny", "italic", "center"...; :data:`TRAIN_WORDS`,
:data:`HELDOUT_WORDS`). :func:`parse_caption` reads a typed caption back into attributes.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional

__all__ = [
    "ATTRIBUTES", "CaptionedSet", "HELDOUT_WORDS", "ParsedCaption", "TRAIN_WORDS", "VALUES",
    "make_captioned", "parse_caption", "render_digits", "tokenize", "value_index",
]  # fmt: skip

ATTRIBUTES: tuple[str, ...] = ("digit", "thickness", "slant", "position", "size")
VALUES: dict[str, tuple] = {
    "digit": tuple(range(10)),
    "thickness": ("thin", "normal", "thick"),
    "slant": ("left", "upright", "right"),
    "position": ("centre", "top-left", "top-right", "bottom-left", "bottom-right"),
    "size": ("small", "large"),
}
DEFAULTS = {"thickness": "normal", "slant": "upright", "position": "centre", "size": "large"}
VOCABULARIES = ("train", "heldout")
# relative stroke width (stroke / digit height), tan(slant), digit height / canvas
STROKE = {"thin": 0.07, "normal": 0.13, "thick": 0.24}
SHEAR = {"left": -0.42, "upright": 0.0, "right": 0.42}
HEIGHT = {"small": 0.5, "large": 0.72}
SMALL_PEN = 1.3  # a small digit's pen is relatively wider: 7% of 14 px would be under a pixel

_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# attribute -> value -> split -> (adjectives before the digit, phrases after it)
_P = dict[str, dict[str, dict[str, tuple[tuple[str, ...], tuple[str, ...]]]]]
_PHRASES: _P = {
    "thickness": {
        "thin": {"train": (("thin", "light"), ()), "heldout": (("skinny", "slim"), ())},
        "normal": {"train": (("regular",), ()), "heldout": (("ordinary",), ())},
        "thick": {"train": (("thick", "heavy"), ()), "heldout": (("bold", "fat"), ())},
    },
    "slant": {
        "left": {"train": (("left-slanted",), ("slanted to the left", "tilted to the left")),
                 "heldout": (("left-leaning",), ("leaning to the left",))},
        "upright": {"train": (("upright", "straight"), ()), "heldout": (("vertical",), ())},
        "right": {"train": (("slanted", "right-slanted"), ("slanted to the right",
                                                           "tilted to the right")),
                  "heldout": (("italic", "right-leaning"), ("leaning to the right",))},
    },
    "position": {
        "centre": {"train": ((), ("in the centre", "in the middle")),
                   "heldout": ((), ("in the center", "centered"))},
        **{f"{v}-{h}": {"train": ((), (f"in the {v} {h}", f"at the {v} {h}")),
                        "heldout": ((), (f"in the {u} {h} corner", f"at the {u} {h}"))}
           for v, u in (("top", "upper"), ("bottom", "lower")) for h in ("left", "right")},
    },
    "size": {
        "small": {"train": (("small", "little"), ()), "heldout": (("tiny", "miniature"), ())},
        "large": {"train": (("large", "big"), ()), "heldout": (("huge", "giant"), ())},
    },
}  # fmt: skip
_FRAMES = {"train": ("a {}", "the {}", "an image of a {}"),
           "heldout": ("a {}", "a picture of a {}")}  # fmt: skip
_NOUNS = {"train": ("{w}", "{d}", "digit {d}", "digit {w}"),
          "heldout": ("number {d}", "numeral {d}")}  # fmt: skip
_FILLERS = frozenset(["a", "an", "the", "of", "in", "at", "image", "picture", "digit", "number",
                      "numeral"])  # fmt: skip


def tokenize(caption: str) -> list[str]:
    """Lower-cased words of ``caption``: hyphens split words, other punctuation is dropped."""
    if not isinstance(caption, str):
        raise ValueError(f"a caption must be a string, got {type(caption).__name__}")
    return re.sub(r"[^a-z0-9 ]", " ", caption.lower().replace("-", " ")).split()


def _split_words(split: str) -> frozenset[str]:
    texts = [f.format("") for f in _FRAMES[split]]
    texts += [n.format(w=w, d=d) for n in _NOUNS[split] for d, w in enumerate(_WORDS)]
    texts += [p for v in _PHRASES.values() for t in v.values() for part in t[split] for p in part]
    return frozenset(w for t in texts for w in tokenize(t))


TRAIN_WORDS: frozenset[str] = _split_words("train") | {"an"}
"""Every word a training caption can contain."""
HELDOUT_WORDS: frozenset[str] = _split_words("heldout") - TRAIN_WORDS
"""The paraphrase words: in held-out captions, never in a training caption."""

# token sequence -> (attribute, value), from both vocabularies, for parse_caption
_LEXICON: dict[tuple[str, ...], tuple[str, object]] = {}
for _attr, _values in _PHRASES.items():
    for _value, _table in _values.items():
        for _phrase in (p for split in VOCABULARIES for part in _table[split] for p in part):
            _tokens = tokenize(_phrase)
            while _tokens:  # "top left" as well as "in the top left"
                _LEXICON[tuple(_tokens)] = (_attr, _value)
                _tokens = _tokens[1:] if _tokens[0] in ("in", "at", "the") else []
for _d, _w in enumerate(_WORDS):
    _LEXICON[(_w,)] = _LEXICON[(str(_d),)] = ("digit", _d)
_LONGEST = max(len(k) for k in _LEXICON)


def value_index(attribute: str, value: object) -> int:
    """The integer label of ``value`` of ``attribute`` (its index in :data:`VALUES`)."""
    if attribute not in VALUES:
        raise ValueError(f"unknown attribute {attribute!r}; valid: {', '.join(ATTRIBUTES)}")
    value = int(value) if attribute == "digit" and str(value).isdigit() else value
    if value not in VALUES[attribute]:
        raise ValueError(f"unknown {attribute} {value!r}; valid: {VALUES[attribute]}")
    return VALUES[attribute].index(value)


@dataclass(frozen=True)
class ParsedCaption:
    """What a caption asks for: ``attributes`` (name -> value, None where unspecified; the
    digit as an int, the others as :data:`VALUES` names), ``unknown`` words the vocabulary
    lacks, and ``conflicts`` (phrases contradicting an earlier one, which is kept)."""

    attributes: dict[str, object]
    unknown: tuple[str, ...] = ()
    conflicts: tuple[str, ...] = ()

    def indices(self) -> dict[str, int]:
        """Attribute -> integer label, -1 where unspecified."""
        return {a: -1 if v is None else value_index(a, v) for a, v in self.attributes.items()}


def parse_caption(caption: str) -> ParsedCaption:
    """Read ``caption`` into the attributes it specifies (longest-phrase matching over both
    vocabularies): ``"a thick seven in the top left"`` -> digit 7, thickness thick, position
    top-left, slant and size None."""
    tokens = tokenize(caption)
    found: dict[str, object] = dict.fromkeys(ATTRIBUTES)
    unknown: list[str] = []
    conflicts: list[str] = []
    i = 0
    while i < len(tokens):
        for n in range(min(_LONGEST, len(tokens) - i), 0, -1):
            hit = _LEXICON.get(tuple(tokens[i : i + n]))
            if hit is not None:
                attr, value = hit
                if found[attr] is None:
                    found[attr] = value
                elif found[attr] != value:
                    conflicts.append(" ".join(tokens[i : i + n]))
                i += n
                break
        else:
            if tokens[i] not in _FILLERS:
                unknown.append(tokens[i])
            i += 1
    return ParsedCaption(found, tuple(unknown), tuple(conflicts))


# --------------------------------------------------------------------------- rendering
def _morph(u: Tensor, radius: int) -> Tensor:
    """Grey-scale dilation (radius > 0) or erosion (< 0) of ink (N, 1, H, W): |radius| steps
    alternating a 3x3 square and a 3x3 cross (an octagon, close to a disc)."""
    v = u if radius > 0 else -u
    for step in range(abs(radius)):
        pool = functional.max_pool2d
        v = pool(v, 3, 1, 1) if step % 2 == 0 else torch.maximum(
            pool(v, (1, 3), 1, (0, 1)), pool(v, (3, 1), 1, (1, 0)))  # fmt: skip
    return v if radius > 0 else -v


def _shear(u: Tensor, k: Tensor) -> Tensor:
    """Shift each row of ink u (N, 1, S, S) by ``k (y - cy)`` pixels about the ink centroid."""
    from .judge import ink_centroid

    cv = (2 * ink_centroid(u * 2 - 1)[:, 1].float() + 1) / u.shape[-1] - 1  # normalised y
    theta = torch.zeros(u.shape[0], 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, 0, 1], theta[:, 0, 2] = -k, k * cv
    grid = functional.affine_grid(theta, list(u.shape), align_corners=False)
    return functional.grid_sample(u, grid, align_corners=False)


def render_digits(
    base: Tensor, shear: Tensor | Sequence[float], stroke: Tensor | Sequence[float],
    height: Tensor | Sequence[float], centre: Tensor | Sequence[Sequence[float]],
    canvas: int = 28, work: int | None = None,
) -> Tensor:  # fmt: skip
    """Render digits ``base`` (N, 1, h, w) in [-1, 1] onto a ``canvas`` x ``canvas`` black
    canvas, in [-1, 1].

    Each digit is upsampled to a ``work`` x ``work`` grid (default 4 x canvas), deskewed and
    sheared so that ``tan(slant) = shear`` (positive: top to the right), eroded or dilated to a
    stroke width of ``stroke`` x its height, cropped to its ink, resized (antialiased) to
    ``height`` canvas pixels (its width capped at 1.3 x height) and placed with its box centred
    at ``centre`` (N, 2) = (x, y) canvas pixels.
    """
    from .judge import ink_bbox, ink_moments, stroke_width

    base = torch.as_tensor(base, dtype=torch.float32)
    if base.dim() != 4 or base.shape[1] != 1 or not torch.isfinite(base).all():
        raise ValueError(f"expected finite digits (N, 1, h, w), got {tuple(base.shape)}")
    n = base.shape[0]
    shear, stroke, height = (torch.as_tensor(v, dtype=torch.float32).reshape(-1) for v in
                             (shear, stroke, height))  # fmt: skip
    centre = torch.as_tensor(centre, dtype=torch.float32).reshape(-1, 2)
    if not all(len(v) == n for v in (shear, stroke, height, centre)):
        raise ValueError(f"shear, stroke, height and centre need {n} rows each")
    work = int(work or 4 * canvas)
    out = torch.zeros(n, 1, canvas, canvas)
    for lo in range(0, n, 256):
        sl = slice(lo, lo + 256)
        u = functional.interpolate((base[sl] + 1) / 2, size=(work, work), mode="bilinear",
                          align_corners=False).clamp(0, 1)  # fmt: skip
        m = ink_moments(u * 2 - 1)
        k0 = (m[:, 2] / m[:, 1].clamp_min(1e-9)).float()  # x on y: the digit's own shear
        u = _shear(u, -shear[sl] - k0).clamp(0, 1)
        s = stroke[sl]
        for _ in range(2):  # erosion thins a blob less than 2 px a step: a second round
            box = ink_bbox(u * 2 - 1)
            h0 = (box[:, 3] - box[:, 1] + 1).clamp_min(1.0).float()
            w0 = stroke_width(u * 2 - 1)
            # dilating by r widens the stroke and the height by 2 r: solve (w0 + 2r) = s (h0 + 2r)
            radius = torch.round((s * h0 - w0) / (2 * (1 - s))).clamp(-8, 12).int()
            for r in radius.unique().tolist():
                if r:
                    pick = radius == r
                    u[pick] = _morph(u[pick], r).clamp(0, 1)
            peak = u.amax(dim=(1, 2, 3), keepdim=True)
            u = torch.where(peak > 0.05, u / peak.clamp_min(0.05), u)  # eroded ink back to full
        box = ink_bbox(u * 2 - 1, threshold=0.1).long()
        for j in range(u.shape[0]):
            i = lo + j
            x0, y0, x1, y1 = box[j].tolist()
            if x0 < 0:
                continue
            crop = u[j : j + 1, :, y0 : y1 + 1, x0 : x1 + 1]
            f = min(float(height[i]) / crop.shape[2], 1.3 * float(height[i]) / crop.shape[3])
            oh, ow = (max(1, min(canvas, round(side * f))) for side in crop.shape[2:])
            small = functional.interpolate(crop, size=(oh, ow), mode="bilinear", antialias=True,
                                  align_corners=False)  # fmt: skip
            small = (small / small.amax().clamp_min(0.05)).clamp(0, 1)  # a thin pen is dark too
            top = min(max(round(float(centre[i, 1]) - (oh - 1) / 2), 0), canvas - oh)
            left = min(max(round(float(centre[i, 0]) - (ow - 1) / 2), 0), canvas - ow)
            out[i, :, top : top + oh, left : left + ow] = small[0]
    return out * 2 - 1


# --------------------------------------------------------------------------- captioned sets
@functools.cache
def _natural_stroke(source: str, split: str) -> np.ndarray:
    """Stroke width / height of each source digit, upsampled to 112 x 112 (read-only)."""
    from ..data.datasets import load_image_dataset
    from .judge import ink_bbox, stroke_width

    x, _ = load_image_dataset(source, split)
    out = []
    for b in x.split(500):
        u = functional.interpolate(b, size=(112, 112), mode="bilinear").clamp(-1, 1)
        box = ink_bbox(u)
        out.append((stroke_width(u) / (box[:, 3] - box[:, 1] + 1).clamp_min(1.0)).numpy())
    values = np.concatenate(out)
    values.flags.writeable = False
    return values


@dataclass
class CaptionedSet:
    """Rendered digits with their attributes and captions.

    ``images`` (N, 1, C, C) in [-1, 1]; ``labels`` attribute -> (N,) int64, the true attributes
    (indices into :data:`VALUES`); ``asked`` attribute -> (N,) int64, what each caption
    specifies (-1 where it leaves the attribute open; the digit is always specified);
    ``captions`` N strings; ``base_index`` (N,) rows of the source split that were rendered;
    ``info``: source, split, vocabulary, seed, canvas, the varying attributes, mention.
    """

    images: Tensor
    labels: dict[str, np.ndarray]
    asked: dict[str, np.ndarray]
    captions: list[str]
    base_index: np.ndarray
    info: dict[str, object] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.captions)


def _caption(rng: np.random.Generator, vocabulary: str, digit: int, say: dict[str, str]) -> str:
    pre: list[str] = []
    post: list[str] = []  # phrases before and after the digit
    for attr in ("size", "thickness", "slant", "position"):
        if attr in say:
            adj, phrases = _PHRASES[attr][say[attr]][vocabulary]
            options = [(p, True) for p in adj] + [(p, False) for p in phrases]
            phrase, before = options[rng.integers(len(options))]
            (pre if before else post).append(phrase)
    nouns = _NOUNS["train"] + (_NOUNS["heldout"] if vocabulary == "heldout" else ())
    noun = nouns[rng.integers(len(nouns))].format(w=_WORDS[digit], d=digit)
    text = " ".join([*pre, noun, *post])
    first = text.split()[0]
    article = "an" if (first[0] in "aeiou" and first != "one") or first == "8" else "a"
    frame = _FRAMES[vocabulary][rng.integers(len(_FRAMES[vocabulary]))]
    return frame.replace("a {}", f"{article} {{}}").format(text)


def make_captioned(
    source: str = "mnist-5k", n: int = 1000, seed: int = 0, *, split: str = "train",
    attributes: Sequence[str] = ("thickness", "slant", "position", "size"),
    vocabulary: str = "train", mention: float = 0.6, canvas: int | None = None,
) -> CaptionedSet:  # fmt: skip
    """``n`` captioned digits rendered from ``split`` of ``source`` (``digits`` or
    ``mnist-5k``), deterministic given ``seed``.

    ``attributes``: which of thickness / slant / position / size vary (uniformly; a large
    digit sits in the centre, so with both position and size a small digit takes one of the
    five positions); the others keep :data:`DEFAULTS`. Each varying attribute is mentioned in
    the caption with probability ``mention`` (the digit always is); with
    ``vocabulary="heldout"`` every phrase is a held-out paraphrase and at least one attribute is
    mentioned. ``canvas``: side length (default 28 for mnist-5k, 16 for digits). Source digits
    are taken in a seeded order, cycling when ``n`` exceeds the split.
    """
    from ..data.datasets import IMAGE_DATASETS, load_image_dataset

    bad = [a for a in attributes if a not in ATTRIBUTES[1:]]
    canvas = int(canvas or (28 if source == "mnist-5k" else 16))
    for fails, message in (
        (source not in IMAGE_DATASETS, f"unknown source {source!r}; valid: {IMAGE_DATASETS}"),
        (bool(bad), f"unknown attributes {bad}; valid: {', '.join(ATTRIBUTES[1:])}"),
        (vocabulary not in VOCABULARIES, f"unknown vocabulary {vocabulary!r}; valid: {VOCABULARIES}"),
        (isinstance(n, bool) or int(n) != n or n < 1, f"n must be an integer >= 1, got {n!r}"),
        (not 0.0 <= mention <= 1.0, f"mention must lie in [0, 1], got {mention!r}"),
        (canvas < 8, f"canvas must be >= 8, got {canvas}"),
    ):  # fmt: skip
        if fails:
            raise ValueError(message)
    n = int(n)
    x, y = load_image_dataset(source, split)
    rng = np.random.default_rng(int(seed))
    order = np.concatenate([rng.permutation(len(y)) for _ in range(-(-n // len(y)))])[:n]
    labels = {"digit": y.numpy()[order].astype(np.int64)}
    for a in ATTRIBUTES[1:]:
        fixed = np.full(n, VALUES[a].index(DEFAULTS[a]))
        labels[a] = rng.integers(len(VALUES[a]), size=n) if a in attributes else fixed
    if "position" in attributes and "size" not in attributes:
        labels["size"][:] = VALUES["size"].index("small")
    labels["position"][labels["size"] == VALUES["size"].index("large")] = 0  # large: centre
    # erosion breaks digits drawn with a thick pen into fragments: thin digits are drawn from
    # the thinner half of their class, normal ones from the thinner 85%
    natural = _natural_stroke(source, split)
    for t, q in ((0, 0.5), (1, 0.85)):  # thin, normal
        for d in range(10):
            in_class = np.flatnonzero(y.numpy() == d)
            ok = in_class[natural[in_class] <= np.quantile(natural[in_class], q)]
            swap = np.flatnonzero((labels["thickness"] == t) & (labels["digit"] == d))
            swap = swap[natural[order[swap]] > np.quantile(natural[in_class], q)]
            order[swap] = ok[rng.integers(len(ok), size=len(swap))]
    names = {a: np.array(VALUES[a], dtype=object)[labels[a]] for a in ATTRIBUTES[1:]}
    offsets = {"centre": (0, 0), "top-left": (-1, -1), "top-right": (1, -1),
               "bottom-left": (-1, 1), "bottom-right": (1, 1)}  # fmt: skip
    jitter = rng.uniform(-1, 1, size=(n, 5))
    shear = np.array([SHEAR[s] for s in names["slant"]]) * (1 + 0.2 * jitter[:, 0])
    shear += np.where(names["slant"] == "upright", 0.04 * jitter[:, 0], 0.0)
    stroke = np.array([STROKE[t] for t in names["thickness"]]) * (1 + 0.1 * jitter[:, 1])
    stroke *= np.where(names["size"] == "small", SMALL_PEN, 1.0)
    height = np.array([HEIGHT[s] for s in names["size"]]) * canvas * (1 + 0.06 * jitter[:, 2])
    centre = np.array([offsets[p] for p in names["position"]], dtype=np.float64) * canvas / 4
    centre += (canvas - 1) / 2 + 0.03 * canvas * jitter[:, 3:5]
    images = render_digits(x[torch.as_tensor(order)], shear, stroke, height, centre, canvas)
    asked = {a: np.full(n, -1, dtype=np.int64) for a in ATTRIBUTES}
    asked["digit"] = labels["digit"].copy()
    captions = []
    varying = [a for a in ("thickness", "slant", "position", "size") if a in attributes]
    for i in range(n):
        say = {a: names[a][i] for a in varying if rng.random() < mention}
        if vocabulary == "heldout" and not say and varying:
            say = {(a := varying[rng.integers(len(varying))]): names[a][i]}
        for a in say:
            asked[a][i] = labels[a][i]
        captions.append(_caption(rng, vocabulary, int(labels["digit"][i]), say))
    labels = {a: np.asarray(v, dtype=np.int64) for a, v in labels.items()}
    info = {"source": source, "split": split, "vocabulary": vocabulary, "seed": int(seed),
            "canvas": canvas, "attributes": list(varying), "mention": float(mention)}  # fmt: skip
    return CaptionedSet(images, labels, asked, captions, order.astype(np.int64), info)
