"""Sample-quality metrics for character language models.

A *judge* is fit on training text only and scores samples (:class:`KneserNeyJudge`). Its
bits/char can be gamed by low-entropy samples (a loop of one frequent word scores well), so it
is always reported next to the samples' own statistics: :func:`char_entropy`,
:func:`word_entropy`, :func:`vocabulary_share` and :func:`repetition_rate`
(:func:`sample_statistics` computes all of them per sample).
"""

from __future__ import annotations

import math
import re
from collections import Counter

import numpy as np

__all__ = [
    "KneserNeyJudge",
    "char_entropy",
    "repetition_rate",
    "sample_statistics",
    "vocabulary_share",
    "word_entropy",
    "word_set",
]

_NEVER = np.iinfo(np.int64).max  # sentinel closing every sorted table: above any n-gram code


def _code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)


def _run_starts(sorted_codes: np.ndarray) -> np.ndarray:
    """Indices where a new value starts in a sorted array."""
    keep = np.ones(len(sorted_codes), dtype=bool)
    keep[1:] = sorted_codes[1:] != sorted_codes[:-1]
    return np.flatnonzero(keep)


def _lookup(table: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``codes`` in the sorted, non-empty ``table`` and whether each is present."""
    idx = np.minimum(np.searchsorted(table, codes), len(table) - 1)
    return idx, table[idx] == codes


class KneserNeyJudge:
    """Interpolated Kneser-Ney character n-gram model (Kneser & Ney 1995; Chen & Goodman 1999,
    "An empirical study of smoothing techniques for language modeling", Computer Speech and
    Language 13, section "Kneser-Ney smoothing", interpolated form).

    For a level n with context h (n-1 characters) and next character w::

        p_n(w | h) = max(c_n(h w) - D_n, 0) / c_n(h) + gamma_n(h) p_{n-1}(w | h'),
        gamma_n(h) = D_n N1+(h .) / c_n(h)

    where h' drops the oldest character of h, c_n is the raw count at the highest level and the
    continuation count N1+(. h w) (distinct preceding characters) below it, c_n(h) = sum_w c_n(h w)
    and N1+(h .) the number of w with c_n(h w) > 0. An unseen context (c_n(h) = 0) backs off
    fully; level 0 is uniform over the alphabet plus unknown, so every probability is > 0.
    ``discount=None`` uses D_n = n1 / (n1 + 2 n2) from level n's count-of-counts (Ney, Essen &
    Kneser 1994), or 0.5 when n1 = 0. A position with fewer than order-1 preceding characters
    uses the level its context length allows (no padding).

    ``alphabet`` holds the training characters sorted by code point; probability vectors have
    ``size = len(alphabet) + 1`` entries, in alphabet order then the unknown symbol (index
    ``unknown``). N-grams are coded as int64 numbers in base ``size + 1`` (digits are ids + 1).
    """

    def __init__(self, alphabet: str, order: int, discounts: tuple[float, ...], tables: list):
        self.alphabet = alphabet
        self.order = order
        self.discounts = discounts  # D_1 .. D_order
        self.size = len(alphabet) + 1
        self.unknown = len(alphabet)
        self._base = self.size + 1
        self._points = np.append(_code_points(alphabet), _NEVER)
        self._tables = tables  # per level: (gram codes, counts, context codes, totals, types)

    @classmethod
    def fit(cls, text: str, order: int = 5, discount: float | None = None) -> KneserNeyJudge:
        """Count the n-grams of ``text`` (orders 1..``order``) and estimate the discounts."""
        if not text:
            raise ValueError("KneserNeyJudge.fit: training text is empty")
        if order < 1:
            raise ValueError(f"KneserNeyJudge.fit: order must be >= 1, got {order}")
        if discount is not None and not 0.0 < discount <= 1.0:
            raise ValueError(f"KneserNeyJudge.fit: discount must be in (0, 1], got {discount}")
        points = np.unique(_code_points(text))
        alphabet = "".join(map(chr, points.tolist()))
        base = len(alphabet) + 2
        if base**order >= 2**63:
            raise ValueError(f"KneserNeyJudge.fit: order {order} too high for {base - 2} chars")
        digits = np.searchsorted(points, _code_points(text)) + 1
        top = np.zeros(max(len(digits) - order + 1, 0), dtype=np.int64)  # codes of the order-grams
        for k in range(order):
            top = top * base + digits[k : k + len(top)]
        tail = sum(int(d) * base**i for i, d in enumerate(digits[::-1][:order].tolist()))
        types, raw = np.unique(top, return_counts=True)  # distinct n-grams, from n = order down
        levels: dict[int, tuple[np.ndarray, np.ndarray]] = {order: (types, raw)}
        for n in range(order - 1, 0, -1):
            suffix_codes, cont = np.unique(types % base**n, return_counts=True)  # N1+(. h w)
            levels[n] = (suffix_codes, cont)
            if n > 1:  # distinct n-grams: prefixes of the (n+1)-grams, plus the last n-gram
                prefixes = types // base
                types = prefixes[_run_starts(prefixes)]
                last, at = tail % base**n, int(np.searchsorted(types, tail % base**n))
                if n <= len(digits) and (at == len(types) or types[at] != last):
                    types = np.insert(types, at, last)
        tables, discounts = [], []
        for n in range(1, order + 1):
            codes, counts = levels[n]
            n1, n2 = int(np.sum(counts == 1)), int(np.sum(counts == 2))
            estimate = n1 / (n1 + 2 * n2) if n1 > 0 else 0.5  # 0.5 when there is no singleton
            discounts.append(estimate if discount is None else float(discount))
            contexts = codes // base
            starts = _run_starts(contexts)
            totals = np.add.reduceat(counts, starts) if len(starts) else counts[:0]
            n_types = np.diff(np.append(starts, len(contexts)))
            pad = [(codes, _NEVER), (counts, 0), (contexts[starts], _NEVER), (totals, 1)]
            tables.append(tuple(np.append(a, v) for a, v in [*pad, (n_types, 0)]))
        return cls(alphabet, order, tuple(discounts), tables)

    def _ids(self, text: str) -> np.ndarray:
        idx, found = _lookup(self._points, _code_points(text))
        return np.where(found, idx, self.unknown)

    def unknown_count(self, text: str) -> int:
        """Number of characters of ``text`` not seen in training (scored as unknown)."""
        return int(np.sum(self._ids(text) == self.unknown))

    def _probs(self, contexts: list[np.ndarray], valid: list[np.ndarray], w: np.ndarray):
        """Interpolated probabilities of ids ``w`` given per-level context codes."""
        p = np.full(np.shape(w), 1.0 / self.size)
        for n in range(1, self.order + 1):
            codes, counts, ctx_codes, totals, n_types = self._tables[n - 1]
            D = self.discounts[n - 1]
            h = contexts[n - 1]
            gi, gfound = _lookup(codes, h * self._base + w + 1)
            hi, hfound = _lookup(ctx_codes, h)
            hfound = hfound & valid[n - 1]
            c = np.where(gfound, counts[gi], 0)
            total = np.where(hfound, totals[hi], 1)
            gamma = np.where(hfound, D * n_types[hi] / total, 1.0)
            p = np.where(hfound, np.maximum(c - D, 0.0) / total, 0.0) + gamma * p
        return p

    def log2_probs(self, text: str) -> np.ndarray:
        """log2 p(x_i | x_<i) for each character, conditioned within ``text`` only."""
        if not text:
            raise ValueError("KneserNeyJudge.log2_probs: text to score is empty")
        ids = self._ids(text)
        L = len(ids)
        contexts, valid = [np.zeros(L, dtype=np.int64)], [np.ones(L, dtype=bool)]
        for k in range(1, self.order):  # context of the k characters before position i
            code = contexts[-1].copy()
            code[k:] += (ids[:-k] + 1) * self._base ** (k - 1) if k < L else 0
            contexts.append(code)
            valid.append(np.arange(L) >= k)
        return np.log2(self._probs(contexts, valid, ids))

    def bits_per_char(self, text: str) -> float:
        """Mean negative log2 probability per character of ``text``."""
        return float(-np.mean(self.log2_probs(text)))

    def distribution(self, context: str) -> np.ndarray:
        """Next-character distribution (``size`` entries, alphabet order then unknown)."""
        ids = self._ids(context).tolist()
        contexts, valid = [], []
        for k in range(self.order):  # level k + 1 conditions on the last k characters
            tail = ids[max(len(ids) - k, 0) :] if k else []
            code = sum((d + 1) * self._base ** (k - 1 - i) for i, d in enumerate(tail))
            contexts.append(np.array(code, dtype=np.int64))
            valid.append(np.array(k <= len(ids)))
        return self._probs(contexts, valid, np.arange(self.size))


def _words(text: str) -> list[str]:
    stripped = (w.strip("'") for w in re.findall(r"[a-z']+", text.lower()))
    return [w for w in stripped if w]


def _entropy(counts: Counter) -> float:
    total = sum(counts.values())
    return float(-sum(c / total * math.log2(c / total) for c in counts.values())) if total else 0.0


def char_entropy(text: str) -> float:
    """Entropy (bits) of the sample's own character unigram distribution; 0.0 for ``""``."""
    return _entropy(Counter(text))


def word_entropy(text: str) -> float:
    """Entropy (bits) of the sample's word distribution; 0.0 when it has no words.

    Words are runs of ``[a-z']`` in the lower-cased text, outer apostrophes stripped."""
    return _entropy(Counter(_words(text)))


def word_set(text: str) -> set[str]:
    """The vocabulary (set of words, same tokenisation) of a training text."""
    return set(_words(text))


def vocabulary_share(text: str, vocabulary: set[str]) -> float:
    """Share of the sample's word tokens found in ``vocabulary``; nan when it has no words."""
    words = _words(text)
    if not words:
        return float("nan")
    return sum(w in vocabulary for w in words) / len(words)


def repetition_rate(text: str, n: int = 8) -> float:
    """Share of the character n-grams of ``text`` already seen earlier in ``text``.

    Equals 1 - distinct / total; nan when ``len(text) < n + 1``."""
    if n < 1:
        raise ValueError(f"repetition_rate: n must be >= 1, got {n}")
    total = len(text) - n + 1
    if total < 2:
        return float("nan")
    return 1.0 - len({text[i : i + n] for i in range(total)}) / total


def sample_statistics(
    samples: list[str], judge: KneserNeyJudge, vocabulary: set[str]
) -> dict[str, list[float]]:
    """Per-sample judge bits/char (nan for an empty sample) and the sample statistics."""
    return {
        "judge_bits": [judge.bits_per_char(s) if s else float("nan") for s in samples],
        "char_entropy": [char_entropy(s) for s in samples],
        "word_entropy": [word_entropy(s) for s in samples],
        "vocabulary_share": [vocabulary_share(s, vocabulary) for s in samples],
        "repetition": [repetition_rate(s) for s in samples],
    }
