"""text-2020 (masked diffusion against an autoregressive transformer): the smoke run's report
holds what the issue asks for -- both likelihoods on the same blocks, validation curves for both
arms, the sampling-steps table with network calls next to entropy, caching identical with fewer
calls, infilling that keeps the given characters -- and the named splits it runs on."""

from __future__ import annotations

import math

import pytest

from diffusio.text import named_splits


@pytest.fixture(scope="module")
def smoke(smoke_run):
    return smoke_run("text-2020")


def test_report_sections_and_figures(smoke):
    out, _ = smoke
    text = (out / "report.md").read_text()
    for heading in ("## Likelihood", "## Samples", "## Infilling", "not tested here"):
        assert heading in text, heading
    assert (out / "curves.png").is_file() and (out / "steps.png").is_file()


def test_metrics_hold_both_models_on_the_same_blocks(smoke):
    _, metrics = smoke
    m = metrics["metrics"]
    (ar, ar_se), (md, md_se) = m["test_bits"]["ar"], m["test_bits"]["mdlm"]
    assert all(math.isfinite(v) and v > 0 for v in (ar, ar_se, md, md_se))
    assert m["gap"][0] == pytest.approx(md - ar, abs=1e-9)  # paired over the same blocks
    s = m["settings"]
    for arm, every, steps in (("runs", s["eval_every"], s["steps"]),
                              ("small", s["small_eval_every"], s["small_steps"])):  # fmt: skip
        for kind in ("ar", "mdlm"):
            curve = m["curves"][arm][kind]
            assert len(curve["bits"]) == steps // every and len(curve["epochs"]) == len(curve["bits"])


def test_sampling_steps_calls_and_caching(smoke):
    _, metrics = smoke
    m, s = metrics["metrics"], metrics["metrics"]["settings"]
    calls = m["calls"]
    assert calls["AR"] == s["length"] and calls["MDLM one-token"] == s["length"]
    for t in s["sample_steps"]:
        # caching: one call per step that reveals something, never more than L or T
        assert 1 <= calls[f"MDLM T={t}"] <= min(t, s["length"])
    c = m["cache"]
    assert c["identical"] and c["steps"] == 4 * s["length"]
    assert c["calls_plain"] == c["steps"] and c["calls_cached"] <= s["length"]
    for name in ("test text", "AR", f"MDLM T={s['sample_steps'][0]}"):
        assert set(m["samples"][name]) >= {"judge_bits", "char_entropy", "word_entropy",
                                           "vocabulary_share", "repetition"}  # fmt: skip


def test_named_splits_are_disjoint_and_cover_the_text():
    sp = named_splits("stdlib")
    from diffusio.text import stdlib_text

    assert sp.train + sp.validation + sp.test == stdlib_text()
    with pytest.raises(ValueError, match="unknown corpus 'nope'"):
        named_splits("nope")
