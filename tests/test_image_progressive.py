"""image.progressive: DDPM's progressive generation (Ho et al. 2020, Fig. 6) recorded by the
sampler callback, its statistics and figure (and plotting's column panels)."""

from __future__ import annotations

import torch

from diffusio.core.samplers import X0Trace, sample
from diffusio.image.analysis import TINY_UNET
from diffusio.image.progressive import frame_indices, progressive_figure, progressive_stats
from diffusio.plotting import columns_figure, image_panels
from diffusio.train.config import build_model, load_config


class _Evaluator:
    """A stand-in classifier: the class is the sign of the mean pixel."""

    def predict(self, x):
        return (x.reshape(len(x), -1).mean(1) > 0).long()


def test_frame_indices():
    assert frame_indices(6, 3) == [0, 2, 5]
    assert frame_indices(4, 10) == [0, 1, 2, 3]
    assert frame_indices(1000, 1) == [0]


def test_trace_records_without_changing_the_chain_and_stats():
    model = build_model(load_config("digits-ddpm", net_options=TINY_UNET)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    trace = X0Trace(frame_indices(6, 3), keep=2)
    plain = sample(model, (4, 1, 8, 8), "ddpm", 6, seed=1)
    recorded = sample(model, (4, 1, 8, 8), "ddpm", 6, seed=1, callback=trace)
    assert torch.equal(plain, recorded)
    assert len(trace.x0) == 3 and trace.x0[0].shape == (2, 1, 8, 8)
    assert trace.times == sorted(trace.times, reverse=True)
    assert torch.allclose(trace.x0[-1], recorded[:2])  # the last x0_hat is the sample
    rows = progressive_stats(trace, recorded.clamp(-1, 1), _Evaluator(), model.process)
    assert [row["t"] for row in rows][0] == 1000 and rows[-1]["t"] < rows[0]["t"]
    assert rows[0]["rms_fraction"] == 1.0 and rows[-1]["rms"] < 1e-6
    assert rows[-1]["agreement"] == 1.0
    assert progressive_figure(trace, rows, 2).get_axes()


def test_column_and_panel_figures():
    images = [torch.rand(3, 1, 8, 8) * 2 - 1 for _ in range(4)]
    fig = columns_figure(images, ["a", "b", "c", "d"], "columns")
    assert [t.get_text() for t in fig.get_axes()[0].get_xticklabels()] == ["a", "b", "c", "d"]
    assert len(image_panels([("x", images[0]), ("y", images[1])]).get_axes()) == 2
