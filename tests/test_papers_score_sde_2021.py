"""The score-sde-2021 reproduction: its smoke run, its sampler plan and claim rules, and its
evaluation checked on the exact 8gaussians oracle."""

import math
from dataclasses import replace

import pytest

from diffusio.core.processes import make_process
from diffusio.data.toys import toy_entropy, toy_mixture
from diffusio.metrics.distances import noise_floors
from diffusio.papers import score_sde_2021 as sde
from diffusio.papers.verdicts import NOT, PARTLY, REPRODUCED
from diffusio.timeline import STATUSES, TIMELINE
from diffusio.toy.sweep import SamplerRun, sweep


def test_smoke_run_writes_report_metrics_and_figures(smoke_run):
    out, metrics = smoke_run("score-sde-2021")
    text = (out / "report.md").read_text()
    for heading in ("## Scale", "## Claims checked", "## Sample quality", "## Likelihood"):
        assert heading in text
    for figure in ("samples.png", "quality_vs_nfe.png", "trajectories.png"):
        assert (out / figure).stat().st_size > 0 and f"]({figure})" in text
    claims = {c["rule"]: c for c in metrics["claims"]}
    assert len(metrics["claims"]) == len(claims) == 6
    assert all(rule.startswith("score-sde-2021/") for rule in claims)
    assert not claims["score-sde-2021/ode-nll-near-entropy"]["main"]  # our own target
    assert claims["score-sde-2021/ode-tolerance-cuts-nfe"]["main"]
    assert "## Paper numbers quoted" in text and "3.60" in text
    m = metrics["metrics"]
    assert set(m["VP"]["samples"][0]) >= {"family", "nfe", "sw", "mmd", "chi2", "spread"}
    assert m["VE"]["config"]["process"] == "ve" and "nll_subvp_minus_vp" in m
    assert m["entropy"] == pytest.approx(toy_entropy("8gaussians"))
    (entry,) = [e for e in TIMELINE if e.reproduction == "score-sde-2021"]
    assert entry.paper_module == sde.__name__ and entry.has_reproduction()
    assert entry.status in STATUSES  # measured from the committed report, not assumed


def test_sampler_plan_pairs_p_and_pc():
    plan = sde.sampler_plan(replace(sde.Settings(), pc_steps=(50, 250), em_steps=(100,)))
    p = [r.steps for r in plan if r.family == "P"]
    pc = [r for r in plan if r.family == "PC"]
    assert p == [50, 100, 250, 500]  # N and 2N for every N
    assert [r.steps for r in pc] == [50, 250] and all(r.options["n_corrector"] == 1 for r in pc)
    assert all(r.options["n_corrector"] == 0 for r in plan if r.family == "P")
    assert {r.family for r in plan} == set(sde.FAMILIES)
    assert len({r.label for r in plan}) == len(plan)  # every run's samples kept apart


def test_rk45_runs_go_from_loosest_to_the_paper_tolerance():
    plan = sde.sampler_plan(replace(sde.Settings(), rk45_loose=(1e-3, 1e-1, 1e-5)))
    rk45 = [r for r in plan if r.family == "ODE RK45"]
    assert [r.options["rtol"] for r in rk45] == [1e-1, 1e-3, 1e-5]  # reference last, once
    assert all(r.steps is None and r.options["atol"] == r.options["rtol"] for r in rk45)
    assert rk45[-1].label == "ODE RK45 tol 1e-05" and plan[-1] is rk45[-1]


def test_exact_oracle_samples_are_at_the_noise_floor():
    oracle = toy_mixture("8gaussians").model(make_process("vp-linear"))
    n = 600
    ref = sde.reference(n, sde.REFERENCE_SEED)
    (row,), samples = sweep(oracle, [SamplerRun("ODE Heun", "ode-heun", 40)], n, sde.SAMPLE_SEED,
                            score=lambda x: sde.score_samples(x, ref))  # fmt: skip
    floors = noise_floors(sde.metrics(), sde.reference, n, 10, sde.FLOOR_SEED)
    assert row["nfe"] == 80 and samples["ODE Heun 40"].shape == (n, 2)
    for key, floor in floors.items():
        # within 3 floor sds (the shared "at the floor" rule of 2 sds flags ~2% of exact sets)
        assert floor.z(row[key]) < 3, (key, row[key], floor)
    assert 0.5 < floors["chi2"].mean < 2.0  # exact samples score about 1
    assert abs(row["spread"] - 1) < 0.05 and 0 < row["chi2_se"] < 1


def _run(chi2, se=0.1, **kw):
    return {"chi2": chi2, "chi2_se": se, **kw}


def test_chi2_differences_count_beyond_two_se_of_the_difference():
    # se of the difference = hypot(0.1, 0.1) = 0.1414; clear beyond 2 of them = 0.2828
    assert sde.chi2_outcome(_run(1.0), _run(1.29)) == 1
    assert sde.chi2_outcome(_run(1.0), _run(1.28)) == 0
    assert sde.chi2_outcome(_run(1.29), _run(1.0)) == -1


def test_pc_rule_is_a_tally_of_clear_wins():
    rule = sde.PC_EQUAL_STEPS
    win, tie, loss = (_run(1.0), _run(2.0)), (_run(1.0), _run(1.2)), (_run(2.0), _run(1.0))
    for pairs, verdict in (([win, win], REPRODUCED), ([win, tie], PARTLY), ([tie, tie], NOT),
                           ([win, loss], NOT)):  # fmt: skip
        assert rule(pc=[a for a, _ in pairs], p=[b for _, b in pairs]) == verdict
    assert rule(pc=[win[0]], p=[win[1]]).rule == "score-sde-2021/pc-beats-p-at-equal-steps"


def test_every_sde_learns_means_at_the_floor_on_every_metric():
    floors = {"mmd": (0.0, 1e-4), "chi2": (1.0, 0.2)}
    at = {"mmd": 2e-4, "chi2": 1.4}  # exactly mean + 2 sd: still at the floor
    above = {"mmd": 2.1e-4, "chi2": 1.4}
    assert sde.every_sde_learns(runs=[at] * 3, floors=floors) == REPRODUCED
    assert sde.every_sde_learns(runs=[at, above, above], floors=floors) == PARTLY
    assert sde.every_sde_learns(runs=[above] * 3, floors=floors) == NOT


def test_likelihood_rules_judge_with_the_standard_error():
    # our target: KL + 2 se <= 0.05 reproduced, <= 0.2 partly; an unknown se fails
    assert sde.ode_nll_near_entropy(kl=[0.029, 0.01], kl_se=[0.01, 0.01]) == REPRODUCED
    assert sde.ode_nll_near_entropy(kl=[0.04, 0.01], kl_se=[0.01, 0.01]) == PARTLY
    assert sde.ode_nll_near_entropy(kl=[0.01], kl_se=[math.nan]) == NOT
    # sub-VP - VP: a win needs a difference beyond 2 se; within the noise is not shown
    assert sde.subvp_beats_vp(diff=-0.021, se=0.01) == REPRODUCED
    assert sde.subvp_beats_vp(diff=-0.019, se=0.01) == NOT
    assert sde.subvp_beats_vp(diff=0.05, se=0.01) == NOT


def test_nfe_rule_needs_over_ninety_percent_fewer_at_unchanged_quality():
    ref = _run(1.0, nfe=200)
    case = lambda *runs: {"ref": ref, "runs": list(runs)}  # noqa: E731
    rule = sde.fewer_nfe_same_quality
    assert rule(cases=[case(_run(1.2, nfe=19))]) == REPRODUCED  # 9.5% of the NFE, within noise
    assert rule(cases=[case(_run(1.0, nfe=20))]) == NOT  # exactly 90% fewer is not "over 90%"
    assert rule(cases=[case(_run(1.3, nfe=10))]) == NOT  # clearly worse (beyond 0.283)
    assert rule(cases=[case(_run(1.0, nfe=10)), case(_run(1.0, nfe=50))]) == PARTLY


def test_paper_numbers_quote_the_corrected_table_1_row():
    numbers = {p.quantity: p for p in sde.ScoreSDE2021.PAPER_NUMBERS}
    ve = numbers["FID, VE reverse diffusion P1000 / P2000 / PC1000"]
    assert ve.value == "4.79 / 4.74 / 3.60" and ve.source == "Table 1" and ve.verified
    assert numbers["NFE cut by a larger ODE tolerance, visual quality unchanged"].value == (
        "over 90%") and sde.NFE_CUT == 0.9


def test_ve_sigma_max_follows_the_max_pairwise_distance_rule():
    configs = sde.sde_configs(sde.Settings(steps=20, n_data=1000))
    assert set(configs) == {"VP", "sub-VP", "VE"}
    rounded, measured = sde.ve_sigma_max(configs["VE"])
    assert rounded == math.ceil(measured) and 3.0 < measured < 6.0
    assert configs["VE"].process_options["sigma_max"] == rounded
    assert configs["sub-VP"].process == "sub-vp" and configs["VP"].prediction == "eps"
