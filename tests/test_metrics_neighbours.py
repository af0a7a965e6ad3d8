"""Nearest-neighbour sample checks: memorisation and improved precision / recall."""

from __future__ import annotations

import pytest
import torch

from diffusio.metrics.neighbours import memorisation, nearest_distances, precision_recall


def test_memorisation_flags_copies():
    gen = torch.Generator().manual_seed(0)
    train = torch.rand(200, 1, 8, 8, generator=gen) * 2 - 1
    test = torch.rand(50, 1, 8, 8, generator=gen) * 2 - 1
    d_test = nearest_distances(test, train)
    fresh = memorisation(torch.rand(50, 1, 8, 8, generator=gen) * 2 - 1, train, d_test)
    copies = memorisation(train[:50] + 0.01, train, d_test)
    assert 0.8 < fresh["ratio"] < 1.25
    assert copies["ratio"] < 0.05 and copies["below_test_p5"] == 1.0
    assert nearest_distances(train[:3], train).abs().max() == 0


def test_precision_recall_limits():
    gen = torch.Generator().manual_seed(0)
    real = torch.randn(200, 4, generator=gen)
    assert precision_recall(real, real.clone()) == (1.0, 1.0)
    far = torch.randn(200, 4, generator=gen) + 100.0
    assert precision_recall(real, far) == (0.0, 0.0)
    # a collapsed fake set (every point on one real point) is precise but not diverse
    collapsed = real[:1].repeat(200, 1) + 1e-6 * torch.randn(200, 4, generator=gen)
    precision, recall = precision_recall(real, collapsed)
    assert precision == 1.0 and recall < 0.1
    with pytest.raises(ValueError, match="more than"):
        precision_recall(real[:3], real[:3])
