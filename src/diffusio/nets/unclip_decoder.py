"""DALL·E 2's decoder network (Ramesh et al. 2022, Sec. 2.1, "Decoder"): a U-Net conditioned on
a CLIP image embedding and, optionally, the caption.

The paper modifies GLIDE's U-Net "by projecting and adding CLIP embeddings to the existing
timestep embedding, and by projecting CLIP embeddings into four extra tokens of context that are
concatenated to the sequence of outputs from the GLIDE text encoder". :class:`UnCLIPDecoder`
does exactly that around :class:`~diffusio.nets.unet.UNet`:

* ``image_emb`` (N, d) -> ``pooled`` (the U-Net's pooled-vector input, added to the time
  embedding) and ``emb_tokens`` context tokens (a linear map to ``emb_tokens x context_dim``);
* ``text_tokens`` (N, L, text_dim) with ``text_mask`` (N, L) -> projected to ``context_dim``
  and appended to the context; the U-Net's cross-attention reads the whole sequence.

The null of each condition (classifier-free guidance; Ramesh et al. drop the embedding 10% and
the caption 50% of the time, App. C) is a zero row: a zero ``image_emb`` masks its tokens and
adds nothing to the time embedding, a zero ``text_mask`` masks the caption. With ``emb_dim``
None the decoder reads the caption only (the GLIDE-like direct caption-to-image baseline).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .unet import UNet

__all__ = ["UnCLIPDecoder"]


class UnCLIPDecoder(nn.Module):
    """``net(x, t, image_emb=None, text_tokens=None, text_mask=None)`` (module docstring);
    ``unet_options`` go to the :class:`UNet` (its ``context_dim`` and ``pooled_dim`` are set
    here)."""

    def __init__(self, in_channels: int, image_size: int, emb_dim: int | None = None,
                 text_dim: int | None = None, emb_tokens: int = 4, context_dim: int = 64,
                 **unet_options: Any) -> None:  # fmt: skip
        super().__init__()
        if emb_dim is None and text_dim is None:
            raise ValueError("the decoder needs an image embedding (emb_dim), a caption "
                             "(text_dim) or both")  # fmt: skip
        self.emb_dim, self.text_dim, self.emb_tokens = emb_dim, text_dim, int(emb_tokens)
        self.context_dim = int(context_dim)
        self.emb_proj = (nn.Linear(emb_dim, self.emb_tokens * self.context_dim)
                         if emb_dim is not None else None)  # fmt: skip
        self.text_proj = nn.Linear(text_dim, self.context_dim) if text_dim is not None else None
        self.unet = UNet(in_channels, image_size=image_size, context_dim=self.context_dim,
                         pooled_dim=emb_dim, **unet_options)  # fmt: skip

    def forward(self, x: Tensor, t: Tensor | float, image_emb: Tensor | None = None,
                text_tokens: Tensor | None = None, text_mask: Tensor | None = None) -> Tensor:  # fmt: skip
        n = x.shape[0]
        tokens, masks, pooled = [], [], None
        if self.emb_proj is not None:
            emb = x.new_zeros(n, self.emb_dim) if image_emb is None else image_emb.to(x.dtype)
            real = emb.abs().sum(-1) > 0
            tokens.append(self.emb_proj(emb).view(n, self.emb_tokens, self.context_dim))
            masks.append(real[:, None].expand(n, self.emb_tokens))
            pooled = emb
        elif image_emb is not None:
            raise ValueError("this decoder reads no image embedding (emb_dim is None)")
        if self.text_proj is not None and text_tokens is not None:
            mask = (torch.ones(text_tokens.shape[:2], dtype=torch.bool, device=x.device)
                    if text_mask is None else text_mask > 0)  # fmt: skip
            tokens.append(self.text_proj(text_tokens.to(x.dtype)) * mask[..., None])
            masks.append(mask)
        elif text_tokens is not None:
            raise ValueError("this decoder reads no caption (text_dim is None)")
        if not tokens:  # caption-only decoder, null caption
            tokens, masks = [x.new_zeros(n, 1, self.context_dim)], [x.new_zeros(n, 1).bool()]
        context, mask = torch.cat(tokens, 1), torch.cat(masks, 1)
        return self.unet(x, t, context=context, context_mask=mask, pooled=pooled)
