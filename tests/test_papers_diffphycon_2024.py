"""diffphycon-2024: what the controllers see under partial observation, the claim rules at
their edges, and the smoke run's report (the oracle never above zero control, every method
scored on the same problems)."""

import json

import torch

from diffusio.papers import diffphycon_2024 as dpc
from diffusio.papers.verdicts import NOT, PARTLY, REPRODUCED
from diffusio.physics.burgers import SETTINGS


def test_hide_zeroes_exactly_the_unobserved_middle_half():
    u = torch.randn(3, 11, 128)
    for name, st in SETTINGS.items():
        h = dpc.hide(u, name)
        assert torch.equal(h[..., st.observed], u[..., st.observed])
        assert torch.all(h[..., ~st.observed] == 0)
    assert int((~SETTINGS["po-fc"].observed).sum()) == 64  # cells 32..95


def test_beats_rule_needs_both_clear_wins_for_reproduced():
    rule = dpc.beats_sl_and_bc
    assert rule(sl=1.0, sl_se=0.1, bc=1.0, bc_se=0.1) == REPRODUCED
    assert rule(sl=1.0, sl_se=0.1, bc=0.05, bc_se=0.1) == PARTLY  # BC within the noise
    assert rule(sl=1.0, sl_se=0.1, bc=-1.0, bc_se=0.1) == NOT  # a clear loss to BC
    assert dpc.few_steps_suffice(ratio=1.25) == REPRODUCED and dpc.few_steps_suffice(ratio=2.5) == NOT


def test_smoke_report_scores_every_method_and_the_oracle_bounds_zero_control(smoke_run):
    out, metrics = smoke_run("diffphycon-2024")
    saved = json.loads((out / "metrics.json").read_text())
    j = saved["metrics"]["j_actual"]["po-fc"]
    assert set(j) == set(dpc.METHODS)
    assert all(v[0] >= 0 for v in j.values())
    # L-BFGS starts at f = 0 and keeps each problem's best iterate (lam = 0): never above zero
    assert j["adjoint"][0] <= j["zero"][0] + 1e-12
    text = (out / "report.md").read_text()
    assert "J_actual PO-FC" in text and "pareto.png" in text
    assert (out / "pareto.png").is_file()
