"""The toy sampler sweep: rows and samples per run, common random numbers, NAME:STEPS specs,
and sampler paths recorded by the step callback."""

import pytest
import torch

from diffusio.core.processes import make_process
from diffusio.core.samplers import sample
from diffusio.data.toys import toy_mixture
from diffusio.toy.sweep import (
    SamplerRun,
    check_samplers,
    largest_per_family,
    parse_samplers,
    sweep,
    trajectories,
)


@pytest.fixture(scope="module")
def oracle():
    return toy_mixture("8gaussians").model(make_process("vp-linear"))


def test_sweep_rows_match_direct_sampling(oracle):
    runs = [SamplerRun("DDIM", "ddim", 10), SamplerRun("Heun", "ode-heun", 5)]
    rows, samples = sweep(oracle, runs, 50, seed=3, score=lambda x: {"mean": float(x.mean())})
    assert [r["nfe"] for r in rows] == [10, 10] and all(r["finite"] for r in rows)
    assert set(samples) == {"DDIM 10", "Heun 5"}
    direct = sample(oracle, (50, 2), "ddim", 10, seed=3).double()
    assert torch.equal(samples["DDIM 10"], direct)
    assert rows[0]["mean"] == pytest.approx(float(direct.mean()))
    doubled, _ = sweep(oracle, runs[:1], 50, seed=3, to_data=lambda x: 2 * x)
    assert doubled[0]["nfe"] == 10


def test_largest_per_family_and_specs():
    runs = [SamplerRun("EM", "euler-maruyama", k) for k in (5, 50, 20)]
    runs.append(SamplerRun("RK45", "ode-rk45"))
    assert [r.label for r in largest_per_family(runs, ("RK45", "EM"))] == ["RK45", "EM 50"]
    assert parse_samplers("ddim:50, ode-heun:20") == [("ddim", 50), ("ode-heun", 20)]
    for spec in ["", "ddim", "ddim:0", "ddim:x", ":5"]:
        with pytest.raises(ValueError):
            parse_samplers(spec)
    assert check_samplers([("ddim", 5)]) == [SamplerRun("ddim", "ddim", 5)]
    with pytest.raises(ValueError, match="positive integer"):
        check_samplers([("ddim", 0)])


def test_trajectories_end_at_the_samples(oracle):
    times, states = trajectories(oracle, "ode-heun", 6, 4, seed=5)
    assert times[0] == pytest.approx(1.0) and times[-1] == 0.0
    assert len(times) == states.shape[0] and states.shape[1:] == (4, 2)
    final = sample(oracle, (4, 2), "ode-heun", 6, seed=5)
    assert torch.allclose(states[-1], final.double())
