"""The score-sde-2021 reproduction: its evaluation checked on the exact 8gaussians oracle, and a
tiny end-to-end run of ``reproduce``."""

import json
import math
from dataclasses import replace

import pytest
import torch

from diffusio.core.processes import make_process
from diffusio.core.samplers import sample
from diffusio.data.normalize import Standardizer
from diffusio.data.toys import toy_entropy, toy_mixture
from diffusio.papers import score_sde_2021 as sde
from diffusio.papers.report import VERDICTS
from diffusio.timeline import TIMELINE


@pytest.fixture(scope="module")
def oracle():
    """The exact 8gaussians density as a VP model (data units, no normalizer)."""
    return toy_mixture("8gaussians").model(make_process("vp-linear"))


TINY = sde.Settings(
    steps=20,
    n_samples=100,
    n_nll=8,
    em_steps=(5,),
    pc_steps=(3,),
    heun_steps=(3,),
    nll_tolerances=(1e-2,),
    floor_pairs=2,
    rk45_tol=1e-3,
    n_plot=100,
    n_paths=3,
    path_steps=4,
    n_data=1000,
)


def test_timeline_marks_the_entry_reproduced():
    (entry,) = [e for e in TIMELINE if e.reproduction == "score-sde-2021"]
    assert entry.paper_module == sde.__name__ and entry.status == "reproduced"


def test_sampler_plan_pairs_p_and_pc():
    plan = sde.sampler_plan(replace(TINY, pc_steps=(50, 250), em_steps=(100,)))
    p = [r.steps for r in plan if r.family == "P"]
    pc = [r for r in plan if r.family == "PC"]
    assert p == [50, 100, 250, 500]  # N and 2N for every N
    assert [r.steps for r in pc] == [50, 250] and all(r.options["n_corrector"] == 1 for r in pc)
    assert all(r.options["n_corrector"] == 0 for r in plan if r.family == "P")
    assert plan[-1].family == "ODE RK45" and plan[-1].steps is None
    assert {r.family for r in plan} == set(sde.FAMILIES)


def test_exact_oracle_samples_are_at_the_noise_floor(oracle):
    n = 600
    plan = [sde.SamplerRun("ODE Heun", "ode-heun", 40)]
    rows, samples = sde.evaluate_samples(oracle, None, plan, n)
    floors = sde.noise_floors(n, pairs=10)
    (row,) = rows
    assert row["nfe"] == 80 and samples["ODE Heun 40"].shape == (n, 2)
    for key in sde.METRICS:
        assert floors[key].at(row[key]), (key, row[key], floors[key])
    assert 0.5 < floors["chi2"].mean < 2.0  # exact samples score about 1
    assert abs(row["spread"] - 1) < 0.05 and 0 < row["chi2_se"] < 1


def test_pc_verdicts_count_only_differences_beyond_noise():
    def run(chi2, se=0.1):
        return {"chi2": chi2, "chi2_se": se}

    assert sde._compare(run(1.0), run(2.0)) == 1  # better by 1 > 2 * hypot(0.1, 0.1)
    assert sde._compare(run(2.0), run(1.0)) == -1
    assert sde._compare(run(1.0), run(1.2)) == 0  # within noise
    assert sde._verdict_from([1, 1]) == "reproduced"
    assert sde._verdict_from([1, 0]) == "partly reproduced"
    assert sde._verdict_from([0, 0]) == sde._verdict_from([1, -1]) == "not reproduced"


def test_exact_oracle_ode_nll_is_the_entropy(oracle):
    x = sde.reference(60, sde.NLL_SEED)
    rows, nats = sde.evaluate_nll(oracle, None, x, (1e-5, 1e-2))
    assert [r["tol"] for r in rows] == [1e-2, 1e-5]  # loose first; NFE grows as tol shrinks
    assert rows[0]["nfe"] < rows[1]["nfe"]
    tight = rows[1]
    # The paired KL of the exact model is ~0 (only the t_min smoothing remains)...
    assert abs(tight["kl"]) < 3 * tight["kl_se"] + 5e-3
    # ...and the NLL estimates the entropy within its Monte Carlo error.
    assert abs(tight["nll"] - toy_entropy("8gaussians")) < 3 * tight["nll_se"]
    assert nats.shape == (60,)


def test_ode_nll_undoes_the_normalization(oracle):
    """The same density trained on standardized data gives the same NLL in data units."""
    mix = toy_mixture("8gaussians")
    scale = torch.tensor([2.0, 1.5], dtype=torch.float64)  # log-Jacobian -log 3
    scaled = type(mix)(mix.means / scale, mix.stds / scale, mix.weights)
    model = scaled.model(make_process("vp-linear"))
    normalizer = Standardizer(torch.zeros(2), scale)
    x = sde.reference(10, 3)
    direct, _ = sde.ode_nll(oracle, None, x, 1e-6)
    via_norm, _ = sde.ode_nll(model, normalizer, x, 1e-6)
    # Equal up to the smoothing at t_min (sigma(t_min) = 0.01 in the model's units).
    assert torch.allclose(direct, via_norm, atol=1e-2)
    assert torch.allclose(direct, -mix.log_prob(x), atol=1e-2)


def test_trajectories_end_at_the_samples(oracle):
    times, states = sde.record_trajectories(oracle, None, "ode-heun", 6, 4, seed=5)
    assert times[0] == 1.0 and times[-1] == 0.0 and len(times) == states.shape[0] == 8
    assert states.shape[1:] == (4, 2)
    final = sample(oracle, (4, 2), "ode-heun", 6, seed=5)
    assert torch.allclose(states[-1], final)


def test_ve_sigma_max_follows_the_max_pairwise_distance_rule():
    configs = sde.sde_configs(TINY)
    assert set(configs) == {"VP", "sub-VP", "VE"}
    rounded, measured = sde.ve_sigma_max(configs["VE"])
    assert rounded == math.ceil(measured) and 3.0 < measured < 6.0
    assert configs["VE"].process_options["sigma_max"] == rounded
    assert configs["sub-VP"].process == "sub-vp" and configs["VP"].prediction == "eps"


def test_reproduce_tiny_writes_report_metrics_and_figures(tmp_path):
    out = sde.reproduce(tmp_path, quick=True, _settings=TINY)
    text = (tmp_path / "report.md").read_text()
    for heading in ("## Scale", "## Claims checked", "## Sample quality", "## Likelihood"):
        assert heading in text
    for figure in ("samples.png", "quality_vs_nfe.png", "trajectories.png"):
        assert (tmp_path / figure).stat().st_size > 0 and f"]({figure})" in text
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["name"] == "score-sde-2021" and saved["quick"] is True
    assert len(saved["claims"]) == 6 and all(c["verdict"] in VERDICTS for c in saved["claims"])
    metrics = saved["metrics"]
    assert set(metrics["VP"]["samples"][0]) >= {"family", "nfe", "sw", "mmd", "chi2", "spread"}
    assert metrics["VE"]["config"]["process"] == "ve" and "nll_subvp_minus_vp" in metrics
    assert out["metrics"]["entropy"] == pytest.approx(toy_entropy("8gaussians"))
    assert len(list((tmp_path / "models").iterdir())) == 3  # one cached run per SDE
