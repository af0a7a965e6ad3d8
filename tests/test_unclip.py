"""unCLIP's pieces (diffusio.image.unclip, nets.unclip_decoder): CLIP features are unit vectors
with masked tokens, the decoder's null conditions make no difference to a caption-free call, the
decoder's conditions drop as units at their rates, the priors train and sample unit embeddings,
and a tiny decoder trains through the common trainer and decodes (with guidance)."""

import pytest
import torch

from diffusio.image.captions import make_captioned
from diffusio.image.unclip import (
    clip_features,
    decode,
    decoder_training_set,
    sample_prior,
    train_decoder,
    train_prior,
    train_regression_prior,
)
from diffusio.nets.clip import train_clip
from diffusio.nets.unclip_decoder import UnCLIPDecoder

UNET = {"channels": 8, "channel_mults": [1, 2], "num_res_blocks": 1, "attention_resolutions": [4],
        "num_heads": 2, "groups": 4, "dropout": 0.0}  # fmt: skip


@pytest.fixture(scope="module")
def tiny():
    cset = make_captioned("digits", 96, 0, canvas=8)
    clip, _ = train_clip(cset.images, cset.captions, 5, batch_size=32, dim=16)
    return cset, clip, clip_features(clip, cset.images, cset.captions)


def test_clip_features(tiny):
    cset, _, f = tiny
    assert f["image_emb"].shape == (96, 16) and f["text_emb"].shape == (96, 16)
    torch.testing.assert_close(f["image_emb"].norm(dim=-1), torch.ones(96))
    torch.testing.assert_close(f["text_emb"].norm(dim=-1), torch.ones(96))
    assert f["text_tokens"].shape[:2] == f["text_mask"].shape
    assert bool((f["text_tokens"][f["text_mask"] == 0] == 0).all())


def test_decoder_net_nulls():
    torch.manual_seed(0)
    net = UnCLIPDecoder(1, 8, emb_dim=6, text_dim=5, context_dim=8, **UNET).eval()
    with torch.no_grad():  # move the zero-initialised output layers, so conditions show
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x, t = torch.randn(3, 1, 8, 8), torch.full((3,), 0.5)
    # a null (zero) embedding and a masked caption equal the call without them
    none = net(x, t)
    nulls = net(x, t, image_emb=torch.zeros(3, 6), text_tokens=torch.randn(3, 4, 5),
                text_mask=torch.zeros(3, 4))  # fmt: skip
    torch.testing.assert_close(nulls, none)
    assert not torch.allclose(net(x, t, image_emb=torch.randn(3, 6)), none)
    caption_only = UnCLIPDecoder(1, 8, text_dim=5, context_dim=8, **UNET)
    with pytest.raises(ValueError, match="reads no image embedding"):
        caption_only(x, t, image_emb=torch.randn(3, 6))
    with pytest.raises(ValueError, match="needs an image embedding"):
        UnCLIPDecoder(1, 8, **UNET)


def test_decoder_set_drops_each_condition_as_a_unit(tiny):
    cset, _, f = tiny
    data = decoder_training_set(cset.images, f["image_emb"], f["text_tokens"], f["text_mask"])
    assert data.net_options == {"emb_dim": 16, "text_dim": f["text_tokens"].shape[-1]}
    images = cset.images.repeat(20, 1, 1, 1)
    big = decoder_training_set(images, f["image_emb"].repeat(20, 1),
                               f["text_tokens"].repeat(20, 1, 1), f["text_mask"].repeat(20, 1))  # fmt: skip
    b = big.batch(torch.arange(len(images)), torch.Generator().manual_seed(0))
    emb_null = (b.cond["image_emb"] == 0).all(-1)
    text_null = (b.cond["text_mask"] == 0).all(-1)
    n = len(images)  # 1920 rows: 10% and 50% within 4 binomial sd
    assert abs(float(emb_null.float().mean()) - 0.1) < 4 * (0.09 / n) ** 0.5
    assert abs(float(text_null.float().mean()) - 0.5) < 4 * (0.25 / n) ** 0.5
    assert bool((b.cond["text_tokens"][text_null] == 0).all())


def test_priors_and_decoder(tiny, tmp_path):
    cset, _, f = tiny
    prior = train_prior(f["image_emb"], f["text_emb"], f["text_tokens"], f["text_mask"], steps=3,
                        batch_size=16, width=32, layers=1)  # fmt: skip
    z = sample_prior(prior, f["text_emb"][:5], f["text_tokens"][:5], f["text_mask"][:5], steps=3)
    assert z.shape == (5, 16)
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(5))
    reg = train_regression_prior(f["image_emb"], f["text_emb"], steps=3, batch_size=16)
    torch.testing.assert_close(sample_prior(reg, f["text_emb"][:5]).norm(dim=-1), torch.ones(5))
    data = decoder_training_set(cset.images, f["image_emb"], f["text_tokens"], f["text_mask"])
    model, summary = train_decoder(tmp_path / "dec", data, steps=3, batch_size=8,
                                   net_options={**UNET, "attention_resolutions": [4]},
                                   progress=False)  # fmt: skip
    assert summary["step"] == 3
    cond = {"image_emb": z, "text_tokens": f["text_tokens"][:5], "text_mask": f["text_mask"][:5]}
    x = decode(model, cond, guidance=3.0, steps=2)
    assert x.shape == (5, 1, 8, 8) and float(x.abs().max()) <= 1
    assert torch.equal(x, decode(model, cond, guidance=3.0, steps=2))
