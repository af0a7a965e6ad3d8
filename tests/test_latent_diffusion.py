"""Latent diffusion's shared pieces (diffusio.image.latent_diffusion, image.perceptual) and the
latent text-to-image run: the class token is one-hot and dropped as a unit, snapshots record
steps and times and reload exactly, FLOPs are counted (and scale with the batch), the perceptual
net trains deterministically without touching the global RNG, and a caption model trained on an
autoencoder's latents samples decoded images through ``generate`` / ``diffusio txt2img``."""

import numpy as np
import pytest
import torch

from diffusio.data.batch import Batch
from diffusio.image.latent_diffusion import (
    Snapshots,
    class_token,
    class_token_training_set,
    encode_images,
    load_snapshot,
    sampling_flops,
    snapshot_times,
    step_flops,
    train_diffusion,
)
from diffusio.image.perceptual import PerceptualNet, train_perceptual

NET = {"channels": 8, "channel_mults": [1, 2], "num_res_blocks": 1, "attention_resolutions": [2],
       "num_heads": 2, "groups": 4, "dropout": 0.0}  # fmt: skip


def test_class_token_set_and_dropout():
    x0 = torch.randn(200, 2, 4, 4)
    y = torch.arange(200) % 10
    data = class_token_training_set(x0, y, p_uncond=0.5)
    assert data.net_options == {"context_dim": 10}
    ctx = data.cond["context"]
    assert ctx.shape == (200, 1, 10) and torch.equal(ctx.argmax(-1)[:, 0], y)
    assert torch.equal(class_token(y)["context"], ctx)
    batch = data.batch(torch.arange(200), torch.Generator().manual_seed(0))
    dropped = batch.cond["context_mask"][:, 0] == 0
    assert 60 < int(dropped.sum()) < 140  # p = 0.5 of 200
    assert torch.equal(batch.cond["context"][dropped], torch.zeros(int(dropped.sum()), 1, 10))
    kept = ~dropped
    assert torch.equal(batch.cond["context"][kept], ctx[kept])
    with pytest.raises(ValueError, match="labels in 0..9"):
        class_token_training_set(x0, y + 5)


def test_snapshots_flops_and_training(tmp_path):
    x0 = torch.randn(64, 1, 4, 4)
    data = class_token_training_set(x0, torch.arange(64) % 10)
    model, summary = train_diffusion(tmp_path / "run", data, steps=4, snapshot_every=2,
                                     net_options=NET, batch_size=8, progress=False)  # fmt: skip
    times = snapshot_times(tmp_path / "run")
    assert [s for s, _ in times] == [2, 4] and times[0][1] <= times[1][1]
    last = load_snapshot(tmp_path / "run", 4)
    for a, b in zip(last.state_dict().values(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # the last snapshot is the final EMA model
    with pytest.raises(FileNotFoundError, match="no snapshot at step 3"):
        load_snapshot(tmp_path / "run", 3)
    with pytest.raises(ValueError, match="every must be >= 1"):
        Snapshots(tmp_path, 0)
    small = step_flops(model.train(), Batch(x0[:4], cond=class_token(torch.zeros(4).long())))
    large = step_flops(model.train(), Batch(x0[:8], cond=class_token(torch.zeros(8).long())))
    assert small > 0 and large == pytest.approx(2 * small, rel=0.02)
    one = sampling_flops(model.eval(), (1, 1, 4, 4), class_token(torch.zeros(1).long()))
    assert 0 < one < small


def test_perceptual_net_is_deterministic():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(64, 1, 8, 8, generator=g) * 2 - 1, torch.arange(64) % 10
    before = torch.get_rng_state()
    a = train_perceptual(x, y, steps=3, batch_size=8, widths=(4, 8, 8))
    assert torch.equal(torch.get_rng_state(), before)
    b = train_perceptual(x, y, steps=3, batch_size=8, widths=(4, 8, 8))
    assert a.identity == b.identity and a.identity.startswith("perceptual-")
    feats = a.features(x[:2])
    assert [f.shape[1:] for f in feats] == [(4, 8, 8), (8, 4, 4), (8, 2, 2)]
    assert torch.equal(a(x[:2]), b(x[:2])) and not any(p.requires_grad for p in a.parameters())
    assert isinstance(a, PerceptualNet)
    with pytest.raises(ValueError, match="N labels"):
        train_perceptual(x, y[:3])


@pytest.mark.parametrize("f", [2])
def test_latent_caption_run(tmp_path, f, capsys):
    pytest.importorskip("tokenizers")
    from cli_helpers import run_command

    from diffusio.image.autoencoder import train_autoencoder
    from diffusio.image.captions import make_captioned
    from diffusio.image.text2image import generate, load_text2image, train_text2image

    cset = make_captioned("digits", 64, 0, canvas=8)
    ae, _ = train_autoencoder(cset.images, tmp_path / "ae", f=f, steps=3, channels=8,
                              latent_channels=2, batch_size=8)  # fmt: skip
    z = encode_images(ae, cset.images)
    assert z.shape == (64, 2, 4, 4) and float(z.std()) == pytest.approx(1.0, abs=1e-4)
    run = train_text2image(tmp_path / "t2i", source="digits", n=64, canvas=8, steps=2,
                           batch_size=8, autoencoder=tmp_path / "ae", progress=False,
                           net_options={"channels": 8, "attention_resolutions": [2]})  # fmt: skip
    assert run.info["latent_shape"] == [2, 4, 4] and run.info["image_shape"] == [1, 8, 8]
    assert run.info["sampling"]["threshold"] == "none"
    x = generate(run, "a thick seven", n=3, steps=2)
    assert x.shape == (3, 1, 8, 8) and float(x.abs().max()) <= 1
    with pytest.raises(ValueError, match="samples autoencoder latents"):
        generate(run, "a seven", n=1, steps=2, threshold="dynamic")
    npz = tmp_path / "s.npz"
    code, _, err = run_command(capsys, "txt2img", run.path, "a seven", "--n", 2, "--steps", 2,
                               "--out", npz)  # fmt: skip
    assert code == 0, err
    with np.load(npz) as data:
        assert data["samples"].shape == (2, 1, 8, 8)
    # the run refuses an autoencoder that is not the one it was trained on
    train_autoencoder(cset.images, tmp_path / "ae2", f=f, steps=4, channels=8,
                      latent_channels=2, batch_size=8)  # fmt: skip
    import json

    info_path = run.path / "text2image.json"
    info = json.loads(info_path.read_text())
    info["autoencoder"]["path"] = str(tmp_path / "ae2")
    info_path.write_text(json.dumps(info))
    with pytest.raises(ValueError, match="not the one it was trained on"):
        load_text2image(run.path)
