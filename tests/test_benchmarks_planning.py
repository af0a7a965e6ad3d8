"""``benchmarks/planning.py``: the quick run writes strict JSON with every way of planning, and
its speed-ups and paired score differences are the arithmetic of its own rows (timings
themselves are not asserted: the machine is noisy)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import planning  # noqa: E402


@pytest.fixture(scope="module")
def result(tmp_path_factory, _session_cache):
    out = tmp_path_factory.mktemp("bench") / "planning.json"
    assert planning.main(["--quick", "--out", str(out)]) == 0
    return json.loads(out.read_text())  # strict JSON: no NaN


def test_every_way_is_measured_on_the_same_episodes(result):
    assert set(result["ways"]) == set(planning.WAYS)
    n = result["settings"]["episodes"]
    for row in result["ways"].values():
        assert len(row["scores"]) == n and row["seconds_per_decision"] > 0
    assert result["ways"]["open-loop"]["plans"] == n  # one plan per episode


def test_ratios_are_the_rows_arithmetic(result):
    ref = result["ways"]["replan-ddpm"]
    for name, c in result["comparisons"].items():
        row = result["ways"][name]
        assert c["speedup_vs_replan_ddpm"] == pytest.approx(
            ref["seconds_per_decision"] / row["seconds_per_decision"], rel=1e-12)
        diff = np.array(row["scores"]) - np.array(ref["scores"])
        assert c["score_diff_vs_replan_ddpm"] == pytest.approx(diff.mean(), abs=1e-9)
        assert c["score_diff_se"] == pytest.approx(
            diff.std(ddof=1) / math.sqrt(len(diff)), abs=1e-9)


def test_a_run_that_is_not_a_diffuser_is_refused(tmp_path, capsys):
    assert planning.main(["--run", str(tmp_path), "--out", str(tmp_path / "x.json")]) == 2
    assert "not a Diffuser run" in capsys.readouterr().err
