"""Every registered claim rule can fail: on numbers that contradict its claim it returns
"not reproduced", on numbers that support it "reproduced" (issue 11: no claim whose verdict is
fixed in advance). The numbers are the ones each rule registers next to its function."""

import pytest

from diffusio.papers.base import PAPERS, get_reproduction
from diffusio.papers.verdicts import NOT, REPRODUCED, RULES, Verdict

for _name in PAPERS:  # importing the paper modules registers their rules
    get_reproduction(_name)


def test_every_paper_registers_rules():
    for name in PAPERS:
        assert any(key.startswith(name + "/") for key in RULES), f"{name} registers no rule"


@pytest.mark.parametrize("key", sorted(RULES))
def test_rule_fails_on_contradicting_numbers(key):
    rule = RULES[key]
    assert rule.contradicts, f"{key} registers no contradicting numbers"
    verdict = rule(**rule.contradicts)
    assert isinstance(verdict, Verdict) and verdict.rule == key
    assert verdict == NOT, f"{key} returned {verdict!r} on numbers that contradict its claim"


@pytest.mark.parametrize("key", sorted(RULES))
def test_rule_passes_on_supporting_numbers(key):
    rule = RULES[key]
    assert rule(**rule.supports) == REPRODUCED, f"{key} cannot pass on supporting numbers"


@pytest.mark.parametrize("name", PAPERS)
def test_paper_numbers_say_whether_verified(name):
    cls = get_reproduction(name)
    assert cls.PAPER_NUMBERS, f"{name} lists no paper numbers"
    for number in cls.PAPER_NUMBERS:
        assert number.quantity and number.value and number.source
        assert number.verified or number.note, f"{name}: say why {number.quantity} is unverified"
