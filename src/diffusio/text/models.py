"""The two language models behind one interface: ``TextLM("mdlm", ...)`` (masked diffusion,
Sahoo et al. 2024) and ``TextLM("ar", ...)`` (GPT-style autoregressive), the same
:class:`~diffusio.text.transformer.TextTransformer` with the causal mask off or on, and the same
parameter count (the reserved id is [MASK] for one and BOS for the other).

``loss(x0, generator=..., mask=..., **ignored)`` follows the call the common trainer makes on a
diffusion model (``model.loss(x0, weighting=..., time_distribution=..., generator=..., cond=...,
mask=...)``; the Gaussian-only options are ignored, float ids are rounded), so a trainer that
accepts a ready model can train either one through the batch contract.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from .autoregressive import ar_loss, ar_nll
from .masked import (
    LinearSchedule,
    LogLinearSchedule,
    MaskSchedule,
    bound_estimate,
    masked_diffusion_loss,
)
from .samplers import SampleResult, ancestral_sample, ar_sample, one_token_sample
from .transformer import TextTransformer

__all__ = ["NLL", "TextLM"]

Kind = Literal["mdlm", "ar"]
Sampler = Literal["ancestral", "cached", "one-token"]
_SCHEDULES = {"linear": LinearSchedule, "loglinear": LogLinearSchedule}


@dataclass(frozen=True)
class NLL:
    """Per-sequence negative log-likelihood in nats (B,): exact (AR; stderr 0) or the masked
    diffusion bound with its Monte Carlo standard error."""

    nats: Tensor
    stderr: Tensor
    exact: bool

    def bits_per_token(self, length: int) -> dict[str, float]:
        """Mean bits per token over the blocks, ``stderr`` from the spread of the per-block
        values over blocks (it includes each block's Monte Carlo error; with one block, the
        Monte Carlo error alone) and ``stderr_mc``, the Monte Carlo error alone (0 if exact)."""
        scale = length * math.log(2)
        per = self.nats.double() / scale
        n = per.numel()
        mc = float(self.stderr.double().pow(2).sum().sqrt()) / scale / n
        spread = float(per.std() / math.sqrt(n)) if n > 1 else mc
        return {"bits": float(per.mean()), "stderr": spread, "stderr_mc": mc}


class TextLM(nn.Module):
    """A character language model: ``kind="mdlm"`` or ``"ar"``.

    Args:
        kind: masked diffusion (bidirectional, SUBS, continuous-time bound) or autoregressive.
        vocab_size: ids including the reserved one (``Vocabulary.size``); reserved = last id.
        length: the block length L.
        d_model, n_layers, n_heads, dropout: the transformer's.
        schedule: masked diffusion's ``"loglinear"`` (MDLM's, eps 1e-3; the default) or
            ``"linear"``; the training bound uses it, evaluation and sampling use the linear one
            (the continuous bound does not depend on the schedule between its endpoints).
        t_min: training times in [t_min, 1] (MDLM ``sampling_eps`` = 1e-3; 0 = the whole bound).
    """

    def __init__(
        self,
        kind: Kind,
        vocab_size: int,
        length: int,
        d_model: int = 128,
        n_layers: int = 4,
        n_heads: int = 4,
        dropout: float = 0.0,
        schedule: str = "loglinear",
        t_min: float = 1e-3,
    ):
        super().__init__()
        if kind not in ("mdlm", "ar"):
            raise ValueError(f"kind must be 'mdlm' or 'ar', got {kind!r}")
        if schedule not in _SCHEDULES:
            raise ValueError(f"schedule must be one of {sorted(_SCHEDULES)}, got {schedule!r}")
        self.kind, self.length, self.reserved_id = kind, length, vocab_size - 1
        self.config: dict[str, Any] = dict(
            kind=kind, vocab_size=vocab_size, length=length, d_model=d_model, n_layers=n_layers,
            n_heads=n_heads, dropout=dropout, schedule=schedule, t_min=t_min,
        )  # fmt: skip
        self.schedule: MaskSchedule = _SCHEDULES[schedule]()
        self.t_min = t_min
        self.net = TextTransformer(
            vocab_size, length, d_model, n_layers, n_heads, causal=kind == "ar", dropout=dropout
        )

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> TextLM:
        return cls(**config)

    def forward(self, ids: Tensor) -> Tensor:
        return self.net(ids)

    def _ids(self, x0: Tensor) -> Tensor:
        ids = x0.round().long() if x0.is_floating_point() else x0.long()
        if ids.dim() != 2 or ids.shape[1] != self.length:
            raise ValueError(f"expected ids (B, {self.length}), got {tuple(ids.shape)}")
        if bool(((ids < 0) | (ids >= self.reserved_id)).any()):
            raise ValueError(
                f"ids must lie in 0..{self.reserved_id - 1} (the reserved id excluded)"
            )
        return ids

    def loss(
        self,
        x0: Tensor,
        *,
        generator: torch.Generator | None = None,
        mask: Tensor | None = None,
        **ignored: Any,
    ) -> Tensor:
        """Training loss in nats per token: the masked-diffusion bound (stratified t over the
        batch) or next-token cross-entropy. ``mask`` (B, L): 1 = the token counts."""
        ids = self._ids(x0)
        if self.kind == "ar":
            return ar_loss(self.net, ids, self.reserved_id, mask)
        return masked_diffusion_loss(
            self.net, ids, self.reserved_id, generator, self.schedule, self.t_min, mask
        )

    @torch.no_grad()
    def nll(
        self,
        x0: Tensor,
        *,
        draws: int = 32,
        generator: torch.Generator | None = None,
        estimator: str = "count",
    ) -> NLL:
        """Per-block NLL (nats) with no outside context: exact for AR; for masked diffusion the
        full bound (linear schedule, no t_min) from ``draws`` stratified draws per block."""
        ids = self._ids(x0)
        if self.kind == "ar":
            nats = ar_nll(self.net, ids, self.reserved_id).double()
            return NLL(nats, torch.zeros_like(nats), True)
        est = bound_estimate(
            self.net, ids, self.reserved_id, draws, generator, LinearSchedule(), estimator
        )
        return NLL(est.nelbo, est.stderr, False)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        generator: torch.Generator,
        steps: int | None = None,
        sampler: Sampler = "cached",
        prompt: Tensor | None = None,
        temperature: float = 1.0,
    ) -> SampleResult:
        """``n`` sequences of length L. Masked diffusion: ``sampler`` "ancestral" / "cached"
        with ``steps`` (default L), or "one-token"; ``prompt`` (L,) ids with the reserved id at
        free positions (infilling). AR: left to right at ``temperature``; ``prompt`` a prefix."""
        device = next(self.parameters()).device
        if self.kind == "ar":
            return ar_sample(
                self.net, n, self.length, self.reserved_id, generator, temperature, prompt, device
            )
        if temperature != 1.0:
            raise ValueError("masked diffusion samples at temperature 1 only")
        if sampler == "one-token":
            return one_token_sample(
                self.net, n, self.length, self.reserved_id, generator, prompt, device
            )
        if sampler not in ("ancestral", "cached"):
            raise ValueError(
                f"sampler must be 'ancestral', 'cached' or 'one-token', got {sampler!r}"
            )
        return ancestral_sample(
            self.net, n, self.length, self.reserved_id, steps or self.length, generator,
            LinearSchedule(), cache=sampler == "cached", prompt=prompt, device=device,
        )  # fmt: skip
