"""The Kneser-Ney judge and the sample statistics: exact hand-computed probabilities,
normalisation, a Markov chain whose entropy rate is known in closed form, determinism, clear
errors, and the entropy / vocabulary / repetition statistics on strings small enough to count."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from diffusio.text.judge import (
    KneserNeyJudge,
    char_entropy,
    repetition_rate,
    sample_statistics,
    vocabulary_share,
    word_entropy,
    word_set,
)

TRAIN = "first citizen: before we proceed any further, hear me speak.\nall: speak, speak.\n" * 3


def test_distributions_are_normalised_and_match_log2_probs():
    for order, discount in [(1, None), (3, None), (4, 0.7)]:
        judge = KneserNeyJudge.fit(TRAIN, order=order, discount=discount)
        assert judge.size == len(judge.alphabet) + 1 == len(judge.distribution(""))
        # seen, unseen ("zq"), empty, containing an unknown character ("X", "é")
        for context in ["", "s", "spe", "hear me", "zqzq", "Xspe", "sp\u00e9", "a"]:
            dist = judge.distribution(context)
            assert abs(dist.sum() - 1.0) < 1e-12 and (dist > 0).all()
        text = "hear me, speak X\u00e9 all further!"
        log2p = judge.log2_probs(text)
        ids = [judge.alphabet.find(c) if c in judge.alphabet else judge.unknown for c in text]
        expected = [np.log2(judge.distribution(text[:i])[k]) for i, k in enumerate(ids)]
        np.testing.assert_allclose(log2p, expected, rtol=0, atol=1e-12)
        assert judge.bits_per_char(text) == pytest.approx(-np.mean(log2p), abs=1e-12)


def test_hand_computed_bigram_probabilities():
    judge = KneserNeyJudge.fit("abab", order=2, discount=0.5)
    assert judge.alphabet == "ab" and judge.size == 3 and judge.discounts == (0.5, 0.5)
    # Level 1 (continuation unigram): bigram types {ab, ba} -> N1+(.a) = N1+(.b) = 1, total 2,
    # 2 types, so gamma = 0.5 * 2 / 2 = 0.5 onto the uniform 1/3:
    p1_a = p1_b = (1 - 0.5) / 2 + 0.5 * (1 / 3)  # 5/12
    p1_unk = 0.5 * (1 / 3)  # 1/6
    # Level 2 (raw counts): c(ab) = 2, c(ba) = 1; context a: total 2, 1 type -> gamma 0.25;
    # context b: total 1, 1 type -> gamma 0.5.
    p_b_given_a = (2 - 0.5) / 2 + 0.25 * p1_b  # 41/48
    p_a_given_a = 0.25 * p1_a  # 5/48
    p_b_given_b = 0.5 * p1_b  # 5/24
    p_a_given_b = (1 - 0.5) / 1 + 0.5 * p1_a  # 17/24
    p_unk_given_b = 0.5 * p1_unk  # 1/12
    assert p1_a + p1_b + p1_unk == pytest.approx(1, abs=1e-15)
    np.testing.assert_allclose(judge.distribution(""), [p1_a, p1_b, p1_unk], rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        judge.distribution("ba"), [p_a_given_a, p_b_given_a, 0.25 * p1_unk], rtol=0, atol=1e-12
    )
    # first character: empty context (no padding); "z" is unknown and an unseen context
    cases = {
        "abba": [p1_a, p_b_given_a, p_b_given_b, p_a_given_b],
        "abz": [p1_a, p_b_given_a, p_unk_given_b],
        "zb": [p1_unk, p1_b],
    }
    for text, probs in cases.items():
        np.testing.assert_allclose(2.0 ** judge.log2_probs(text), probs, rtol=0, atol=1e-12)
    assert judge.unknown_count("abz") == 1 and judge.unknown_count("zbzX") == 3


def test_estimated_discounts_from_count_of_counts():
    # "abab": level 2 raw counts {ab: 2, ba: 1} -> n1 = n2 = 1 -> D = 1/3; level 1 continuation
    # counts {a: 1, b: 1} -> n1 = 2, n2 = 0 -> D = 1 (all mass to the uniform).
    judge = KneserNeyJudge.fit("abab", order=2)
    assert judge.discounts == (1.0, pytest.approx(1 / 3, abs=1e-15))
    np.testing.assert_allclose(judge.distribution(""), [1 / 3] * 3, rtol=0, atol=1e-12)
    # "aaaa": level 2 counts {aa: 3} have no singleton -> fallback 0.5; level 1 {a: 1} -> D = 1
    assert KneserNeyJudge.fit("aaaa", order=2).discounts == (1.0, 0.5)


def _reference_prob(train: str, order: int, context: str, w: str) -> float:
    """Interpolated KN straight from the definitions, with dictionaries (slow, tiny texts)."""
    grams = [Counter(train[i : i + n] for i in range(len(train) - n + 1)) for n in range(order + 2)]
    levels = {order: grams[order]}
    for n in range(1, order):  # continuation counts N1+(. g) over the distinct (n+1)-grams
        levels[n] = Counter(g[1:] for g in grams[n + 1])
    size = len(set(train)) + 1

    def prob(n: int) -> float:
        if n == 0:
            return 1 / size
        lower = prob(n - 1)
        if len(context) < n - 1:
            return lower
        h = context[len(context) - n + 1 :]
        counts = levels[n]
        followers = [c for g, c in counts.items() if g[:-1] == h]
        if not followers:
            return lower
        n1 = sum(c == 1 for c in counts.values())
        n2 = sum(c == 2 for c in counts.values())
        D = n1 / (n1 + 2 * n2) if n1 else 0.5
        total = sum(followers)
        return max(counts.get(h + w, 0) - D, 0) / total + D * len(followers) / total * lower

    return prob(order)


def test_matches_a_dictionary_reference_with_estimated_discounts():
    train = "the quick brown fox jumps over the lazy dog; the dog sleeps. the end, the fox."
    text = "the lazy fox sleeps, the quick dog! Xthe"
    for order in (1, 2, 3, 4):
        judge = KneserNeyJudge.fit(train, order=order)
        expected = [np.log2(_reference_prob(train, order, text[:i], c)) for i, c in enumerate(text)]
        np.testing.assert_allclose(judge.log2_probs(text), expected, rtol=0, atol=1e-12)


def _markov_chain(P: np.ndarray, n: int, seed: int) -> np.ndarray:
    u = np.random.default_rng(seed).random(n).tolist()
    cum, state, out = np.cumsum(P, axis=1).tolist(), 0, []
    for x in u:
        row = cum[state]
        state = 0 if x < row[0] else (1 if x < row[1] else 2)
        out.append(state)
    return np.array(out)


def test_bigram_judge_approaches_the_entropy_rate_of_a_markov_chain():
    P = np.array([[0.7, 0.2, 0.1], [0.25, 0.5, 0.25], [0.1, 0.3, 0.6]])
    eigvals, eigvecs = np.linalg.eig(P.T)
    pi = np.real(eigvecs[:, np.argmin(np.abs(eigvals - 1))])
    pi /= pi.sum()
    rate = float(np.sum(pi * -np.sum(P * np.log2(P), axis=1)))  # sum_i pi_i H(P_i), ~1.311
    train = "".join("abc"[s] for s in _markov_chain(P, 200_000, seed=1))
    fresh_ids = _markov_chain(P, 200_000, seed=2)
    fresh = "".join("abc"[s] for s in fresh_ids)
    judge = KneserNeyJudge.fit(train, order=2)
    bits = judge.bits_per_char(fresh)
    true_loss = float(np.mean(-np.log2(P[fresh_ids[:-1], fresh_ids[1:]])))
    # (1) Judge vs the true model on the same fresh text: only the estimation error of 9 bigram
    # probabilities from ~66k counts per context (KL ~ 6 free parameters / (2 n ln 2) ~ 2e-5
    # bits), the discount (D = 0.5 moves <= 1.5 / 66k ~ 2e-5 of each context's mass) and the
    # first character (scored by the unigram, ~1 bit / 200k). All << 1e-3.
    assert abs(bits - true_loss) < 1e-3
    # (2) The true log-loss vs the entropy rate is sampling noise only: its long-run sd is ~0.9
    # bits/char (batch means on 2M characters of this chain; 0.82 without the autocorrelation),
    # so the s.e. of the mean over 200k characters is 0.9 / sqrt(2e5) ~ 0.002 and 0.01 is ~5 s.e.
    assert abs(bits - rate) < 0.01


def test_determinism_and_clear_errors():
    a, b = KneserNeyJudge.fit(TRAIN, order=5), KneserNeyJudge.fit(TRAIN, order=5)
    text = "speak, citizen, hear me X"
    assert np.array_equal(a.log2_probs(text), b.log2_probs(text))
    assert np.array_equal(a.distribution("spea"), b.distribution("spea"))
    assert a.discounts == b.discounts and a.unknown_count(text) == 1  # only "X"
    with pytest.raises(ValueError, match="training text is empty"):
        KneserNeyJudge.fit("")
    with pytest.raises(ValueError, match="order must be >= 1"):
        KneserNeyJudge.fit("abc", order=0)
    with pytest.raises(ValueError, match="discount must be in"):
        KneserNeyJudge.fit("abc", discount=0.0)
    with pytest.raises(ValueError, match="too high"):
        KneserNeyJudge.fit("abcdefghij", order=20)
    with pytest.raises(ValueError, match="text to score is empty"):
        a.bits_per_char("")
    # a training text shorter than the order still gives proper distributions
    short = KneserNeyJudge.fit("ab", order=4)
    assert abs(short.distribution("abab").sum() - 1) < 1e-12
    assert np.isfinite(short.log2_probs("abba")).all()


def test_entropies():
    assert char_entropy("aabb") == 1.0 and char_entropy("abcd") == 2.0
    assert char_entropy("aaaa") == 0.0 and char_entropy("") == 0.0
    # "to be or not to be": to x2, be x2, or, not -> -(2 * 1/3 log2 1/3 + 2 * 1/6 log2 1/6)
    # = (2/3) log2 3 + (1/3) log2 6 = log2 3 + 1/3
    assert word_entropy("To be, or not to be") == pytest.approx(math.log2(3) + 1 / 3, abs=1e-12)
    assert word_entropy("'tis 'Tis TIS'") == 0.0  # apostrophes stripped, lower-cased
    assert word_entropy("") == 0.0 and word_entropy("... 123 ''") == 0.0


def test_vocabulary_share_and_word_set():
    vocab = word_set("To be, or not to be: that is the question. 'Tis nobler")
    assert vocab == {"to", "be", "or", "not", "that", "is", "the", "question", "tis", "nobler"}
    assert vocabulary_share("to be or xyzzy", vocab) == 0.75
    assert vocabulary_share("Be, NOT!", vocab) == 1.0
    assert math.isnan(vocabulary_share("!!! 42", vocab))


def test_repetition_rate():
    # "abc" * 100 with n = 8: 293 8-grams, 3 distinct -> 290 seen before
    assert repetition_rate("abc" * 100) == pytest.approx(1 - 3 / 293, abs=1e-15)
    assert repetition_rate("abcdefghijklmnopqrstuvwxyz") == 0.0
    assert repetition_rate("abab", n=2) == pytest.approx(1 / 3, abs=1e-15)  # ab, ba, ab
    assert math.isnan(repetition_rate("abcdefgh")) and math.isnan(repetition_rate(""))
    with pytest.raises(ValueError, match="n must be >= 1"):
        repetition_rate("abc", n=0)


def test_sample_statistics():
    judge = KneserNeyJudge.fit(TRAIN, order=3)
    samples = ["hear me speak, all.", "speak " * 10, ""]
    stats = sample_statistics(samples, judge, word_set(TRAIN))
    keys = {"judge_bits", "char_entropy", "word_entropy", "vocabulary_share", "repetition"}
    assert set(stats) == keys and all(len(v) == 3 for v in stats.values())
    assert stats["judge_bits"][0] == judge.bits_per_char(samples[0])
    assert math.isnan(stats["judge_bits"][2])
    assert stats["vocabulary_share"][:2] == [1.0, 1.0] and stats["word_entropy"][1] == 0.0
    assert stats["repetition"][1] > 0.8 and stats["char_entropy"][0] == char_entropy(samples[0])
