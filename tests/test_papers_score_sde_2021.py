"""The score-sde-2021 reproduction: its smoke run, its sampler plan and claim rules, and its
evaluation checked on the exact 8gaussians oracle."""

import math
from dataclasses import replace

import pytest

from diffusio.core.processes import make_process
from diffusio.data.toys import toy_entropy, toy_mixture
from diffusio.metrics.distances import noise_floors
from diffusio.papers import score_sde_2021 as sde
from diffusio.timeline import TIMELINE
from diffusio.toy.sweep import SamplerRun, sweep


def test_smoke_run_writes_report_metrics_and_figures(smoke_run):
    out, metrics = smoke_run("score-sde-2021")
    text = (out / "report.md").read_text()
    for heading in ("## Scale", "## Claims checked", "## Sample quality", "## Likelihood"):
        assert heading in text
    for figure in ("samples.png", "quality_vs_nfe.png", "trajectories.png"):
        assert (out / figure).stat().st_size > 0 and f"]({figure})" in text
    assert len(metrics["claims"]) == 6
    m = metrics["metrics"]
    assert set(m["VP"]["samples"][0]) >= {"family", "nfe", "sw", "mmd", "chi2", "spread"}
    assert m["VE"]["config"]["process"] == "ve" and "nll_subvp_minus_vp" in m
    assert m["entropy"] == pytest.approx(toy_entropy("8gaussians"))
    (entry,) = [e for e in TIMELINE if e.reproduction == "score-sde-2021"]
    assert entry.paper_module == sde.__name__ and entry.status == "reproduced"


def test_sampler_plan_pairs_p_and_pc():
    plan = sde.sampler_plan(replace(sde.Settings(), pc_steps=(50, 250), em_steps=(100,)))
    p = [r.steps for r in plan if r.family == "P"]
    pc = [r for r in plan if r.family == "PC"]
    assert p == [50, 100, 250, 500]  # N and 2N for every N
    assert [r.steps for r in pc] == [50, 250] and all(r.options["n_corrector"] == 1 for r in pc)
    assert all(r.options["n_corrector"] == 0 for r in plan if r.family == "P")
    assert plan[-1].family == "ODE RK45" and plan[-1].steps is None
    assert {r.family for r in plan} == set(sde.FAMILIES)


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


def test_pc_comparisons_count_only_differences_beyond_noise():
    def run(chi2, se=0.1):
        return {"chi2": chi2, "chi2_se": se}

    assert sde.chi2_better(run(1.0), run(2.0)) == 1  # better by 1 > 2 * hypot(0.1, 0.1)
    assert sde.chi2_better(run(2.0), run(1.0)) == -1
    assert sde.chi2_better(run(1.0), run(1.2)) == 0  # within noise
    rows = {"VP": [{"family": "PC", "steps": 3, **run(1.0)}, {"family": "P", "steps": 3,
                   **run(2.0)}, {"family": "P", "steps": 6, **run(1.1)}]}  # fmt: skip
    assert sde.pc_comparisons(rows, (3,), doubled=False)[0] == [1]
    assert sde.pc_comparisons(rows, (3,), doubled=True)[0] == [0]


def test_ve_sigma_max_follows_the_max_pairwise_distance_rule():
    configs = sde.sde_configs(sde.Settings(steps=20, n_data=1000))
    assert set(configs) == {"VP", "sub-VP", "VE"}
    rounded, measured = sde.ve_sigma_max(configs["VE"])
    assert rounded == math.ceil(measured) and 3.0 < measured < 6.0
    assert configs["VE"].process_options["sigma_max"] == rounded
    assert configs["sub-VP"].process == "sub-vp" and configs["VP"].prediction == "eps"
