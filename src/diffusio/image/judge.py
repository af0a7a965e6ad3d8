"""The attribute judge: caption-attribute accuracy of generated digit images, measured directly.

Imagen (Saharia et al. 2022), latent diffusion (Rombach et al. 2022) and DALL·E 2 (Ramesh et al.
2022) judge text-image agreement with the CLIP score, a *learned* metric that a model trained
against CLIP-like features can game. On the captioned digits of :mod:`diffusio.image.captions`
every attribute a caption asks for can instead be re-measured in the image:

* digit identity -- any classifier callable ``images -> logits`` (the noise-aware
  :class:`~diffusio.image.classifier.NoisyClassifier` at ``t = 0``, trained on the captioned
  training images by :func:`train_judge_classifier`);
* thickness -- the stroke width (:func:`stroke_width`: the short side of the rectangle with the
  ink's area and perimeter), per measured size (the renderer fixes each size's height);
* slant -- the shear of the ink's second moments (:func:`slant_angle`);
* position and size -- the ink's centroid (:func:`ink_centroid`) and bounding box
  (:func:`ink_bbox`).

Conventions: images are (N, 1, H, W) in [-1, 1] with ink = ``(x + 1) / 2``; coordinates are in
pixels with pixel ``(row i, column j)`` centred at ``(x, y) = (j, i)`` (y points down).
:class:`AttributeJudge` turns the measurements into attribute classes with thresholds
calibrated on a generated :class:`~diffusio.image.captions.CaptionedSet` and scores images
against the attributes captions asked for (:meth:`AttributeJudge.score`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "AttributeJudge", "crop_to_ink", "ink", "ink_bbox", "ink_centroid", "ink_moments", "measure",
    "slant_angle", "stroke_width", "train_judge_classifier",
]  # fmt: skip

Classifier = Callable[[Tensor], Tensor]


def _images(x: Tensor) -> Tensor:
    x = torch.as_tensor(x).detach().to("cpu", torch.float32)
    if x.dim() == 3:
        x = x.unsqueeze(1)
    if x.dim() != 4 or x.shape[1] != 1 or x.shape[0] < 1:
        raise ValueError(f"expected images (N, 1, H, W) with N >= 1, got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("images contain NaN or infinite values")
    return x


def ink(x: Tensor) -> Tensor:
    """Ink (N, H, W) in [0, 1] of images (N, 1, H, W) in [-1, 1]: ``clamp((x + 1) / 2, 0, 1)``."""
    return ((_images(x)[:, 0] + 1.0) / 2.0).clamp(0.0, 1.0).double()


def _grid(h: int, w: int) -> tuple[Tensor, Tensor]:
    ys = torch.arange(h, dtype=torch.float64).view(h, 1).expand(h, w)
    xs = torch.arange(w, dtype=torch.float64).view(1, w).expand(h, w)
    return xs, ys


def ink_centroid(x: Tensor) -> Tensor:
    """The ink's centre of mass (N, 2) as ``(x, y)`` pixel coordinates (column, row); the
    canvas centre ``((W - 1) / 2, (H - 1) / 2)`` for a blank image."""
    u = ink(x)
    xs, ys = _grid(*u.shape[1:])
    mass = u.sum(dim=(1, 2))
    safe = mass.clamp_min(1e-12)
    cx = (u * xs).sum(dim=(1, 2)) / safe
    cy = (u * ys).sum(dim=(1, 2)) / safe
    blank = mass <= 1e-12
    cx = torch.where(blank, torch.full_like(cx, (u.shape[2] - 1) / 2), cx)
    cy = torch.where(blank, torch.full_like(cy, (u.shape[1] - 1) / 2), cy)
    return torch.stack([cx, cy], dim=1)


def ink_moments(x: Tensor) -> Tensor:
    """Central second moments (N, 3) of the ink: ``(var_x, var_y, cov_xy)`` in pixels^2
    (zeros for a blank image)."""
    u = ink(x)
    xs, ys = _grid(*u.shape[1:])
    c = ink_centroid(x)
    mass = u.sum(dim=(1, 2)).clamp_min(1e-12)
    dx = xs - c[:, 0].view(-1, 1, 1)
    dy = ys - c[:, 1].view(-1, 1, 1)
    vxx = (u * dx * dx).sum(dim=(1, 2)) / mass
    vyy = (u * dy * dy).sum(dim=(1, 2)) / mass
    vxy = (u * dx * dy).sum(dim=(1, 2)) / mass
    return torch.stack([vxx, vyy, vxy], dim=1)


def ink_bbox(x: Tensor, threshold: float = 0.5) -> Tensor:
    """Bounding box (N, 4) ``(x0, y0, x1, y1)`` of the pixels whose ink exceeds ``threshold``
    (inclusive pixel indices, so width = x1 - x0 + 1); ``-1`` everywhere for an image with no
    such pixel."""
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must lie in [0, 1), got {threshold!r}")
    on = ink(x) > threshold
    rows, cols = on.any(dim=2), on.any(dim=1)  # (N, H), (N, W)
    out = torch.full((on.shape[0], 4), -1.0, dtype=torch.float64)
    for i in range(on.shape[0]):
        r, c = torch.nonzero(rows[i]).flatten(), torch.nonzero(cols[i]).flatten()
        if len(r):
            out[i] = torch.tensor([c[0], r[0], c[-1], r[-1]], dtype=torch.float64)
    return out


def slant_angle(x: Tensor) -> Tensor:
    """The slant (N,) in degrees, positive when the top of the ink leans right (italics).

    The shear of the ink's second moments -- the slope of the regression of x on y, the
    quantity MNIST deskewing removes: ``atan(-cov_xy / var_y)`` (y points down). A sheared
    vertical bar ``x = x0 - tan(a) (y - y0)`` gives exactly ``a``; 0 for a blank image.
    """
    m = ink_moments(x)
    k = -m[:, 2] / m[:, 1].clamp_min(1e-12)
    return torch.rad2deg(torch.atan(k))


def stroke_width(x: Tensor) -> Tensor:
    """The stroke width (N,) in pixels: the short side of the rectangle with the ink's area
    ``A`` (its mass) and perimeter ``P``, ``w = (P / 2 - sqrt(P^2 / 4 - 4 A)) / 2``.

    The perimeter is the isotropic total variation of the ink (the gradient at the centres of
    2x2 pixel cells, the image padded with blank pixels): by the coarea formula it is the mean
    perimeter of the ink's level sets, exact along straight edges of any direction. A w x L
    bar measures w (plus ~0.1 px from its corners); a ring of width w and radius R measures
    ``w + w^2 / (2 pi R)``; strokes under ~2 px read slightly wide. 0 for a blank image.
    """
    u = torch.nn.functional.pad(ink(x), (1, 1, 1, 1))
    dx = u[:, :, 1:] - u[:, :, :-1]
    dy = u[:, 1:, :] - u[:, :-1, :]
    gx = (dx[:, 1:, :] + dx[:, :-1, :]) / 2  # the gradient at the 2x2 cells' centres
    gy = (dy[:, :, 1:] + dy[:, :, :-1]) / 2
    perimeter = torch.sqrt(gx**2 + gy**2).sum(dim=(1, 2))
    area = u.sum(dim=(1, 2))
    half = perimeter / 2
    disc = (half * half - 4 * area).clamp_min(0.0)
    return ((half - torch.sqrt(disc)) / 2).float()


def measure(x: Tensor) -> dict[str, Tensor]:
    """Every measurement of images (N, 1, H, W): ``cx``, ``cy`` (centroid, px), ``height``,
    ``width`` (bounding box at ink > 0.25, px), ``stroke`` (px), ``relative_stroke`` (stroke /
    height), ``slant`` (degrees), ``mass`` (ink area, px^2)."""
    c = ink_centroid(x)
    box = ink_bbox(x, threshold=0.25)
    height = (box[:, 3] - box[:, 1] + 1).clamp_min(0.0)
    width = (box[:, 2] - box[:, 0] + 1).clamp_min(0.0)
    stroke = stroke_width(x).double()
    return {
        "cx": c[:, 0], "cy": c[:, 1], "height": height, "width": width, "stroke": stroke,
        "relative_stroke": stroke / height.clamp_min(1.0), "slant": slant_angle(x).double(),
        "mass": ink(x).sum(dim=(1, 2)),
    }  # fmt: skip


# --------------------------------------------------------------------------- the judge
def _cut(a: np.ndarray, b: np.ndarray) -> float:
    """The threshold t with the fewest errors ``(a > t) + (b <= t)`` (class a below b)."""
    v = np.concatenate([a, b])
    is_b = np.concatenate([np.zeros(len(a)), np.ones(len(b))])
    order = np.argsort(v, kind="stable")
    v, is_b = v[order], is_b[order]
    # errors with t between v[k-1] and v[k]: the b's among the first k + the a's after them
    errors = np.concatenate([[0], np.cumsum(is_b)]) + (len(a) - np.concatenate(
        [[0], np.cumsum(1 - is_b)]))  # fmt: skip
    best = np.flatnonzero(errors == errors.min())
    k = int(best[len(best) // 2])
    if k == 0:
        return float(v[0]) - 1e-6
    if k == len(v):
        return float(v[-1])
    return float((v[k - 1] + v[k]) / 2)


def _cuts(feature: np.ndarray, labels: np.ndarray, k: int, name: str) -> list[float]:
    groups = [feature[labels == c] for c in range(k)]
    if any(len(g) == 0 for g in groups):
        raise ValueError(f"calibration needs every {name} class; make a set where {name} varies")
    return [_cut(groups[c], groups[c + 1]) for c in range(k - 1)]


def _logits_to_labels(out: Tensor) -> np.ndarray:
    out = torch.as_tensor(out).detach().cpu()
    return (out.argmax(1) if out.dim() == 2 else out.reshape(-1)).long().numpy()


@dataclass
class AttributeJudge:
    """Measured attributes of digit images and caption-attribute accuracy.

    ``thresholds``: ``size`` (one cut on the ink height), ``thickness_small`` /
    ``thickness_large`` (two cuts on the stroke width in pixels, per measured size: the
    renderer holds each size's height fixed), ``slant``
    (two cuts in degrees); ``positions`` (5, 2): the mean centroid of each position class;
    ``classifier``: ``images -> logits (N, 10)`` or labels (N,), or None (the digit is then
    not judged). Build one with :meth:`calibrate`.
    """

    thresholds: dict[str, list[float]]
    positions: np.ndarray
    classifier: Classifier | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def calibrate(cls, data: Any = None, classifier: Classifier | None = None) -> AttributeJudge:
        """Fit the thresholds on a :class:`~diffusio.image.captions.CaptionedSet` whose
        attributes all vary (default: 2,000 mnist-5k training digits, seed 0): each cut is the
        one with the fewest errors between neighbouring classes of the true labels."""
        from .captions import VALUES, make_captioned

        data = make_captioned("mnist-5k", 2000, seed=0) if data is None else data
        m = {k: v.numpy() for k, v in measure(data.images).items()}
        lab = data.labels
        large = VALUES["size"].index("large")
        cuts = {"size": _cuts(m["height"], lab["size"], 2, "size")}
        is_large = m["height"] > cuts["size"][0]
        for part, pick in (("small", ~is_large), ("large", is_large)):
            sub = pick & (lab["size"] == (large if part == "large" else 1 - large))
            cuts[f"thickness_{part}"] = _cuts(
                m["stroke"][sub], lab["thickness"][sub], 3, "thickness"
            )
        cuts["slant"] = _cuts(m["slant"], lab["slant"], 3, "slant")
        xy = np.stack([m["cx"], m["cy"]], 1)
        if any((lab["position"] == p).sum() == 0 for p in range(5)):
            raise ValueError("calibration needs every position class; make a set where it varies")
        positions = np.stack([xy[lab["position"] == p].mean(0) for p in range(5)])
        info = {"canvas": int(data.images.shape[-1]), "calibration_n": len(data)}
        return cls(cuts, positions, classifier, info)

    def predict(self, x: Tensor) -> dict[str, np.ndarray]:
        """Attribute -> (N,) int64 labels (indices into ``captions.VALUES``) measured in images
        (N, 1, H, W) in [-1, 1]; ``digit`` only with a classifier."""
        x = _images(x)
        canvas = self.info.get("canvas")
        if canvas is not None and x.shape[-1] != canvas:
            raise ValueError(f"the judge was calibrated on {canvas}x{canvas} images, got "
                             f"{tuple(x.shape[-2:])}")  # fmt: skip
        m = {k: v.numpy() for k, v in measure(x).items()}
        is_large = m["height"] > self.thresholds["size"][0]
        thick = np.where(
            is_large,
            np.searchsorted(self.thresholds["thickness_large"], m["stroke"]),
            np.searchsorted(self.thresholds["thickness_small"], m["stroke"]),
        )
        xy = np.stack([m["cx"], m["cy"]], 1)
        dist = ((xy[:, None, :] - self.positions[None]) ** 2).sum(-1)
        out = {
            "thickness": thick, "slant": np.searchsorted(self.thresholds["slant"], m["slant"]),
            "position": dist.argmin(1), "size": is_large.astype(np.int64),
        }  # fmt: skip
        if self.classifier is not None:
            with torch.no_grad():
                out["digit"] = np.concatenate(
                    [_logits_to_labels(self.classifier(b)) for b in x.split(500)]
                )
        return {k: np.asarray(v, dtype=np.int64) for k, v in out.items()}

    def score(self, x: Tensor, asked: Any) -> dict[str, Any]:
        """Caption-attribute accuracy of images ``x`` (N, 1, H, W) against what captions
        asked for: ``asked`` is a caption string or :class:`~diffusio.image.captions.
        ParsedCaption` (the same for every image), a list of N of them, or a mapping attribute
        -> (N,) labels or one label / value name (-1 or None: not asked).

        Returns ``accuracy`` (attribute -> fraction of the images asked for it that show it,
        None where none asked), ``counts`` (how many were asked), ``all`` (fraction of images
        showing every attribute their caption asked for; with no classifier the digit is left
        out), ``correct`` ((N,) bool) and ``n``.
        """
        from .captions import ATTRIBUTES, VALUES, ParsedCaption, parse_caption, value_index

        x = _images(x)
        n = x.shape[0]
        asked = [asked] * n if isinstance(asked, (str, ParsedCaption)) else asked
        if isinstance(asked, Sequence):
            if len(asked) != n:
                raise ValueError(f"got {len(asked)} captions for {n} images")
            parsed = [parse_caption(a) if isinstance(a, str) else a for a in asked]
            table = {a: np.array([p.indices()[a] for p in parsed]) for a in ATTRIBUTES}
        elif isinstance(asked, Mapping):
            table = {}
            for a, v in asked.items():
                if a not in ATTRIBUTES:
                    raise ValueError(f"unknown attribute {a!r}; valid: {', '.join(ATTRIBUTES)}")
                if v is None:
                    v = -1
                elif isinstance(v, str):
                    v = value_index(a, v)
                v = np.asarray(v, dtype=np.int64).reshape(-1)
                v = np.full(n, v[0]) if len(v) == 1 else v
                if len(v) != n:
                    raise ValueError(f"asked[{a!r}] has {len(v)} rows for {n} images")
                if ((v < -1) | (v >= len(VALUES[a]))).any():
                    raise ValueError(f"asked[{a!r}] has labels outside -1..{len(VALUES[a]) - 1}")
                table[a] = v
        else:
            raise ValueError(f"asked must be captions or a mapping, got {type(asked).__name__}")
        pred = self.predict(x)
        correct, accuracy, counts = np.ones(n, dtype=bool), {}, {}
        for a in ATTRIBUTES:
            want = table.get(a, np.full(n, -1))
            on = want >= 0
            counts[a] = int(on.sum())
            if a not in pred or not on.any():
                accuracy[a] = None
                continue
            hit = pred[a] == want
            accuracy[a] = float(hit[on].mean())
            correct &= hit | ~on
        return {"accuracy": accuracy, "counts": counts, "all": float(correct.mean()),
                "correct": correct, "n": n}  # fmt: skip


def crop_to_ink(x: Tensor, size: int = 16, margin: float = 0.15) -> Tensor:
    """Each image (N, 1, H, W) cropped to a square around its ink's bounding box (at ink >
    0.25; side ``(1 + 2 margin) max(height, width)``, centred on the box) and resampled to
    ``size`` x ``size`` (bilinear): position and size removed, for the digit classifier."""
    x = _images(x)
    n, _, h, w = x.shape
    box = ink_bbox(x, threshold=0.25)
    blank = box[:, 0] < 0
    box[blank] = torch.tensor([0.0, 0.0, w - 1.0, h - 1.0], dtype=torch.float64)
    cx, cy = (box[:, 0] + box[:, 2]) / 2, (box[:, 1] + box[:, 3]) / 2
    side = torch.maximum(box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]) + 1
    side = side * (1 + 2 * margin)
    theta = torch.zeros(n, 2, 3, dtype=torch.float32)
    theta[:, 0, 0] = (side / w).float()
    theta[:, 1, 1] = (side / h).float()
    theta[:, 0, 2] = ((2 * cx + 1) / w - 1).float()
    theta[:, 1, 2] = ((2 * cy + 1) / h - 1).float()
    grid = torch.nn.functional.affine_grid(theta, [n, 1, size, size], align_corners=False)
    u = torch.nn.functional.grid_sample((x + 1) / 2, grid, align_corners=False)
    return u * 2 - 1


class _Clean(torch.nn.Module):
    """A :class:`~diffusio.image.classifier.NoisyClassifier` read at ``t = 0`` on
    :func:`crop_to_ink` crops: ``images -> logits``."""

    def __init__(self, net: torch.nn.Module, size: int):
        super().__init__()
        self.net, self.size = net, int(size)

    def forward(self, x: Tensor) -> Tensor:
        x = crop_to_ink(x, self.size)
        return self.net(x, torch.zeros(x.shape[0], dtype=x.dtype, device=x.device))


def train_judge_classifier(
    images: Tensor,
    digits: Tensor | np.ndarray,
    steps: int = 400,
    batch_size: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
    crop: int = 16,
    **options: Any,
) -> torch.nn.Module:
    """A clean digit classifier for the judge: the noise-aware
    :class:`~diffusio.image.classifier.NoisyClassifier` (default 16 channels, mults (1, 2),
    mean pooling; ``options`` override) trained by cross-entropy at ``t = 0`` on the
    :func:`crop_to_ink` crops (``crop`` x ``crop``) of ``images`` (N, 1, H, W) -- the captioned
    training images, so it sees every slant and thickness, while the crop removes position and
    size. AdamW with cosine decay; deterministic given ``seed`` (global RNG untouched).
    Returns ``images -> logits`` (cropping included) in eval mode."""
    from .classifier import NoisyClassifier

    x = _images(images)
    y = torch.as_tensor(np.asarray(digits)).long().reshape(-1)
    if len(y) != x.shape[0]:
        raise ValueError(f"got {len(y)} labels for {x.shape[0]} images")
    if int(steps) < 1 or int(batch_size) < 1:
        raise ValueError(f"steps and batch_size must be >= 1, got {steps}, {batch_size}")
    opts = {"in_channels": 1, "image_size": int(crop), "num_classes": 10,
            "channels": 16, "channel_mults": (1, 2), "pool": "mean", **options}  # fmt: skip
    gen = torch.Generator().manual_seed(int(seed))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = _Clean(NoisyClassifier(**opts), int(crop))
        crops = torch.cat([crop_to_ink(b, int(crop)) for b in x.split(1000)])
        zeros = torch.zeros(int(batch_size))
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda k: 0.5 * (1 + math.cos(math.pi * k / int(steps)))
        )
        model.train()
        for _ in range(int(steps)):
            idx = torch.randint(0, x.shape[0], (int(batch_size),), generator=gen)
            loss = torch.nn.functional.cross_entropy(model.net(crops[idx], zeros), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()
