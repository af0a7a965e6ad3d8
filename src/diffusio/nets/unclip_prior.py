"""DALL·E 2's diffusion prior (Ramesh et al. 2022, "Hierarchical Text-Conditional Image
Generation with CLIP Latents", Sec. 2.1 and App. C) and a regression-prior baseline.

The prior models p(z_i | y): the CLIP image embedding ``z_i`` given the caption ``y``. A
decoder-only transformer reads the sequence (Sec. 2.1, "Diffusion prior")::

    [text tokens (projected), text embedding z_t, time embedding, noised z_i, final query]

and its output at the final token predicts the *clean* embedding directly, trained with
``E ||f(z_i^(t), t, y) - z_i||^2`` (Sec. 2.1, the x0-prediction loss), so the network is a
``net(x, t, text_tokens=..., text_mask=..., text_emb=...)`` for
``DiffusionModel(net, process, prediction="x0")`` and every diffusio sampler draws embeddings.
Attention is causal as in the paper's decoder-only transformer (and the official
``dalle2-pytorch``'s ``causal=True``); ``causal=False`` gives a full transformer.

**Scaling.** CLIP embeddings are unit vectors; their entries are ~``1/sqrt(d)``, far smaller
than the unit-variance noise. As in ``dalle2-pytorch`` (``image_embed_scale = d ** 0.5``), the
prior works on ``x = sqrt(d) * z / ||z||`` (:func:`to_prior_space`), whose entries have unit
mean square; :func:`from_prior_space` maps samples back to unit vectors.

**Null condition (classifier-free guidance).** Text is dropped for 10% of the training rows
(App. C). The one null is a row whose ``text_emb`` is all zero: the network then also masks all
its text tokens, so ``ClassifierFreeGuidance(w, null_label=0.0, key="text_emb")`` (which zeros
``text_emb``) gives the unconditional prediction; :func:`drop_text` writes the same null into
training batches. **Best of two.** At sampling the paper draws two embeddings and keeps the one
with the larger dot product with the text embedding (:func:`select_best_of`, Sec. 2.1).

:class:`RegressionPrior` is the deterministic baseline that maps the text embedding straight to
the image embedding with an MLP and MSE (what a "cosine to the true embedding" metric rewards:
it regresses to the conditional mean).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional

from ..core.model import DiffusionModel
from ..core.processes import Process, broadcast_like
from .embeddings import SinusoidalEmbedding, time_embedding

__all__ = [
    "DiffusionPrior", "RegressionPrior", "TEXT_DROPOUT", "drop_text", "from_prior_space",
    "prior_loss", "sample_best_of", "select_best_of", "to_prior_space",
]  # fmt: skip

TEXT_DROPOUT = 0.1  #: the fraction of training rows whose text is dropped (App. C)


def to_prior_space(emb: Tensor) -> Tensor:
    """``sqrt(d) * emb / ||emb||`` over the last dimension: unit-mean-square entries."""
    return functional.normalize(emb, dim=-1) * math.sqrt(emb.shape[-1])


def from_prior_space(x: Tensor) -> Tensor:
    """A prior-space sample back to a unit CLIP embedding (``x / ||x||``)."""
    return functional.normalize(x, dim=-1)


def is_null(text_emb: Tensor) -> Tensor:
    """(N,) bool: the rows whose ``text_emb`` is all zero (the null condition)."""
    return (text_emb == 0).all(dim=-1)


def drop_text(
    text_emb: Tensor, text_tokens: Tensor | None = None, text_mask: Tensor | None = None,
    p: float = TEXT_DROPOUT, generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor | None, Tensor | None]:  # fmt: skip
    """Replace the text of a random ``p`` of the rows by the null (zero ``text_emb``, zero
    tokens, all-False mask), for classifier-free guidance training (Ho & Salimans 2021)."""
    drop = torch.rand(len(text_emb), generator=generator, device=text_emb.device) < p
    keep = (~drop).to(text_emb.dtype)
    text_emb = text_emb * keep[:, None]
    if text_tokens is not None:
        text_tokens = text_tokens * keep[:, None, None]
    if text_mask is not None:
        text_mask = text_mask & ~drop[:, None]
    return text_emb, text_tokens, text_mask


class DiffusionPrior(nn.Module):
    """The unCLIP diffusion prior: a transformer over [text tokens, text embedding, time, noised
    image embedding, query] whose output at the query predicts the clean image embedding.

    Args:
        emb_dim: CLIP's embedding dimension d (of ``x`` and ``text_emb``).
        text_dim: width of the text tokens (None: the prior reads no tokens).
        width, layers, heads: of the pre-LayerNorm transformer.
        max_text_len: the most text tokens (learned positions).
        causal: causal attention as in the paper's decoder-only transformer (each position also
            attends to itself, so a fully masked caption never leaves a row without keys).
    """

    def __init__(
        self, emb_dim: int, text_dim: int | None = None, *, width: int = 128, layers: int = 2,
        heads: int = 4, max_text_len: int = 32, causal: bool = True,
    ) -> None:  # fmt: skip
        super().__init__()
        self.emb_dim, self.text_dim, self.width = int(emb_dim), text_dim, int(width)
        self.max_text_len, self.causal = int(max_text_len), bool(causal)
        self.token_proj = nn.Linear(text_dim, width) if text_dim is not None else None
        self.text_emb_proj = nn.Linear(emb_dim, width)
        self.x_proj = nn.Linear(emb_dim, width)
        self.time_embed = time_embedding(SinusoidalEmbedding(width), width)
        self.query = nn.Parameter(torch.randn(width) * 0.02)
        # learned positions: text tokens first, then the four fixed slots
        self.positions = nn.Parameter(torch.randn(max_text_len + 4, width) * 0.02)
        layer = nn.TransformerEncoderLayer(
            width, heads, 4 * width, 0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, emb_dim)

    def _attention_mask(self, keys: Tensor) -> Tensor:
        """(N * heads, S, S) additive mask: -inf where a query may not attend to a key."""
        n, s = keys.shape
        allowed = keys[:, None, :].expand(n, s, s)
        if self.causal:
            allowed = allowed & torch.ones(s, s, dtype=torch.bool, device=keys.device).tril()
        allowed = allowed | torch.eye(s, dtype=torch.bool, device=keys.device)
        heads = self.transformer.layers[0].self_attn.num_heads
        mask = torch.zeros(n, s, s, device=keys.device).masked_fill(~allowed, float("-inf"))
        return mask.repeat_interleave(heads, dim=0)

    def forward(
        self, x: Tensor, t: Tensor, text_tokens: Tensor | None = None,
        text_mask: Tensor | None = None, text_emb: Tensor | None = None,
    ) -> Tensor:  # fmt: skip
        """``x`` (N, d) noised prior-space embeddings, ``t`` (N,) -> predicted clean (N, d).
        ``text_emb`` None counts as the null; a row with zero ``text_emb`` masks its tokens."""
        n = x.shape[0]
        if text_emb is None:
            text_emb = x.new_zeros(n, self.emb_dim)
        text_emb = text_emb.to(x.dtype).expand(n, self.emb_dim)
        null = is_null(text_emb)
        parts = [
            self.text_emb_proj(text_emb), self.time_embed(t.expand(n)), self.x_proj(x),
            self.query.to(x.dtype).expand(n, -1),
        ]  # fmt: skip
        fixed = torch.stack(parts, dim=1)
        if text_tokens is not None and self.token_proj is not None and text_tokens.shape[1] > 0:
            length = text_tokens.shape[1]
            if length > self.max_text_len:
                raise ValueError(f"{length} text tokens exceed max_text_len={self.max_text_len}")
            mask = (
                torch.ones(n, length, dtype=torch.bool, device=x.device)
                if text_mask is None else text_mask.to(torch.bool).expand(n, length)
            )  # fmt: skip
            mask = mask & ~null[:, None]
            tokens = self.token_proj(text_tokens.to(x.dtype)) * mask[..., None]
            seq = torch.cat([tokens, fixed], dim=1)
            pos = torch.cat([self.positions[:length], self.positions[-4:]])
            keys = torch.cat([mask, torch.ones(n, 4, dtype=torch.bool, device=x.device)], 1)
        else:
            seq, pos = fixed, self.positions[-4:]
            keys = torch.ones(n, 4, dtype=torch.bool, device=x.device)
        h = self.transformer(seq + pos.to(x.dtype), mask=self._attention_mask(keys).to(x.dtype))
        return self.out(self.norm(h[:, -1]))


def prior_loss(
    model: DiffusionModel, x0: Tensor, cond: dict[str, Any] | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:  # fmt: skip
    """Ramesh et al. 2022, Sec. 2.1: ``E_t ||f(z^(t), t, y) - z||^2`` with ``t ~ U[t_min,
    t_max]``, ``z^(t) = alpha(t) z + sigma(t) eps``; ``x0`` in prior space, the model an
    x0-predicting :class:`DiffusionModel`."""
    process: Process = model.process
    n = x0.shape[0]
    u = torch.rand(n, generator=generator, dtype=x0.dtype, device=x0.device)
    t = process.t_min + (process.t_max - process.t_min) * u
    eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
    xt = broadcast_like(process.alpha(t), x0) * x0 + broadcast_like(process.sigma(t), x0) * eps
    pred = model.predict(xt, t, **(cond or {}))
    return functional.mse_loss(pred.x0, x0)


def select_best_of(candidates: Tensor, text_emb: Tensor) -> Tensor:
    """``candidates`` (N, k, d), ``text_emb`` (N, d) -> (N, d): per row the candidate with the
    largest dot product with the text embedding (Ramesh et al. 2022, Sec. 2.1: k = 2)."""
    if candidates.dim() != 3 or text_emb.shape != (candidates.shape[0], candidates.shape[2]):
        raise ValueError(f"candidates (N, k, d) and text_emb (N, d); got "
                         f"{tuple(candidates.shape)} and {tuple(text_emb.shape)}")  # fmt: skip
    best = torch.einsum("nkd,nd->nk", candidates, text_emb.to(candidates.dtype)).argmax(1)
    return candidates[torch.arange(len(candidates), device=candidates.device), best]


def sample_best_of(
    model: DiffusionModel, text_emb: Tensor, *, candidates: int = 2, sampler: str = "ddim",
    steps: int | None = None, seed: int | None = None, cond: dict[str, Any] | None = None,
    **options: Any,
) -> Tensor:  # fmt: skip
    """Draw ``candidates`` prior-space embeddings per row of ``text_emb`` (N, d) with
    :func:`~diffusio.core.samplers.sample` (``cond``: further conditions such as the text
    tokens, with N rows; ``options``: guidance, sampler options) and keep the best of each
    (:func:`select_best_of`). Returns prior-space embeddings (N, d)."""
    from ..core.samplers import sample

    n, d, k = text_emb.shape[0], text_emb.shape[-1], int(candidates)
    rep = {key: v.repeat_interleave(k, 0) if isinstance(v, Tensor) else v
           for key, v in {**(cond or {}), "text_emb": text_emb}.items()}  # fmt: skip
    draws = sample(model, (n * k, d), sampler, steps, seed, cond=rep, **options)
    return select_best_of(draws.reshape(n, k, d), text_emb)


class RegressionPrior(nn.Module):
    """The regression baseline: an MLP from the text embedding to the prior-space image
    embedding, trained with MSE (``loss``); deterministic, so it predicts the conditional mean."""

    def __init__(self, emb_dim: int, hidden: int = 256, layers: int = 2) -> None:
        super().__init__()
        dims = [emb_dim] + [hidden] * layers
        blocks: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:], strict=True):
            blocks += [nn.Linear(a, b), nn.SiLU()]
        self.net = nn.Sequential(*blocks, nn.Linear(dims[-1], emb_dim))

    def forward(self, text_emb: Tensor) -> Tensor:
        return self.net(text_emb)

    def loss(self, text_emb: Tensor, image_emb: Tensor) -> Tensor:
        """MSE to ``image_emb`` taken to prior space (:func:`to_prior_space`)."""
        return functional.mse_loss(self(text_emb), to_prior_space(image_emb))
