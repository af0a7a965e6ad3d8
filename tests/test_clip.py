"""The tiny CLIP (Radford et al. 2021): symmetric InfoNCE, recall@k, zero-shot, training."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional

from diffusio.image.captions import make_captioned
from diffusio.nets.clip import (
    CLIP,
    LOGIT_SCALE_INIT,
    LOGIT_SCALE_MAX,
    clip_loss,
    retrieval_recall,
    train_clip,
    zero_shot_accuracy,
)


def test_clip_loss_matches_direct_cross_entropy_both_ways():
    gen = torch.Generator().manual_seed(0)
    img = functional.normalize(torch.randn(7, 5, generator=gen, dtype=torch.float64), dim=1)
    txt = functional.normalize(torch.randn(7, 5, generator=gen, dtype=torch.float64), dim=1)
    s = 3.7
    logits = s * img @ txt.T
    # row i: -log softmax(logits[i])[i]; column j: -log softmax(logits[:, j])[j]
    rows = -(logits.diag() - torch.logsumexp(logits, dim=1)).mean()
    cols = -(logits.diag() - torch.logsumexp(logits, dim=0)).mean()
    torch.testing.assert_close(clip_loss(img, txt, s), (rows + cols) / 2, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n,s", [(2, 1.0), (5, 4.0), (8, 14.285)])
def test_clip_loss_of_aligned_orthonormal_embeddings(n, s):
    q, _ = torch.linalg.qr(
        torch.randn(n, n, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
    )
    expected = math.log(1 + (n - 1) * math.exp(-s))
    assert float(clip_loss(q, q, s)) == pytest.approx(expected, rel=1e-12)


def test_retrieval_recall_constructed_case():
    # text j is image j rotated; image 0's match ranks 1st, image 1's 2nd, image 2's 3rd
    img = torch.eye(3)
    txt = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.4, 0.0], [0.6, 0.3, 0.2]])
    # sims rows: img0 -> [1, .5, .6] (match rank 1); img1 -> [0, .4, .3] (rank 1);
    # img2 -> [0, 0, .2] (rank 1)
    assert retrieval_recall(img, txt, 1) == 1.0
    # text->image: txt1 -> [.5, .4, 0] (match img1 rank 2); txt2 -> [.6, .3, .2] (rank 3)
    assert retrieval_recall(img, txt, 1, "text_to_image") == pytest.approx(1 / 3)
    assert retrieval_recall(img, txt, 2, "text_to_image") == pytest.approx(2 / 3)
    assert retrieval_recall(img, txt, 3, "text_to_image") == 1.0
    with pytest.raises(ValueError, match="direction"):
        retrieval_recall(img, txt, 1, "sideways")


def test_logit_scale_initialised_and_clipped():
    model = CLIP.from_captions(["a seven", "a one"], dim=8)
    assert float(model.logit_scale.detach()) == pytest.approx(LOGIT_SCALE_INIT)
    assert float(model.scale().detach()) == pytest.approx(1 / 0.07)
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
    assert float(model.scale().detach()) == LOGIT_SCALE_MAX


def test_embeddings_are_unit_and_shaped():
    model = CLIP.from_captions(["a seven", "a thick one"], dim=16)
    img = model.encode_image(torch.zeros(3, 1, 16, 16).uniform_(-1, 1))
    txt = model.encode_text(["a seven", "a thick one", "an unknown word"])
    assert img.shape == txt.shape == (3, 16)
    torch.testing.assert_close(img.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(txt.norm(dim=1), torch.ones(3))


def test_training_lowers_the_loss_and_is_deterministic():
    torch.set_num_threads(1)
    data = make_captioned("digits", 64, seed=0, attributes=())
    kwargs = dict(batch_size=32, lr=3e-3, seed=1, dim=32)
    model, losses = train_clip(data.images, data.captions, 30, **kwargs)
    _, again = train_clip(data.images, data.captions, 3, **kwargs)
    assert again == losses[:3]
    untrained, none = train_clip(data.images, data.captions, 0, **kwargs)
    assert none == []
    with torch.no_grad():
        before = float(untrained(data.images, data.captions))
        final = float(model(data.images, data.captions))
    assert final < before - 0.3, (before, final)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
    acc = zero_shot_accuracy(model, data.images, data.labels["digit"],
                             [f"the digit {d}" for d in range(10)])  # fmt: skip
    assert 0.0 <= acc <= 1.0
