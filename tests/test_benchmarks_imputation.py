"""``benchmarks/imputation.py``: the quick run writes a complete JSON whose ratios are the
arithmetic of its own times and CRPS parts (timings themselves are not asserted: the machine is
noisy), and the CRPS helpers are exact identities of CSDI's metric."""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import imputation  # noqa: E402

from diffusio.core.samplers import SAMPLERS  # noqa: E402
from diffusio.metrics.probabilistic import crps_quantile  # noqa: E402

REL = 1e-12  # float64 round-off of a few sums and one division


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "imputation.json"
    assert imputation.main(["--quick", "--out", str(out)]) == 0
    return json.loads(out.read_text())


def _finite(obj, where="result"):
    if isinstance(obj, dict):
        for k, v in obj.items():
            _finite(v, f"{where}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _finite(v, f"{where}[{i}]")
    elif isinstance(obj, float):
        assert math.isfinite(obj), where


def test_quick_run_writes_every_key(result):
    assert result["benchmark"] == "imputation" and result["quick"] is True
    for key in ("environment", "settings", "setup", "model", "paths", "speedups", "oracle",
                "mean_baseline", "exact_denoiser", "summary", "seconds"):  # fmt: skip
        assert key in result, key
    assert set(result["paths"]) == set(imputation.PATHS)
    assert set(result["speedups"]) == set(imputation.SPEEDUPS)
    s = result["summary"]
    for key in ("seconds_per_window", "speedup", "crps", "crps_se", "crps_oracle_samples",
                "crps_oracle_exact_quantiles", "crps_mean_baseline", "crps_ratio_dpmpp10_vs_ddpm50",
                "crps_ratio_dpmpp10_vs_ddpm50_se", "exact_denoiser_crps", "targets"):  # fmt: skip
        assert key in s, key
    assert s["targets"]["crps_verdict"] in ("met", "not met", "within noise")
    _finite(result)  # the JSON was written strictly; no nan or inf anywhere either
    assert result["model"]["parameters"] > 0 and result["model"]["train_steps"] == 3


def test_paths_are_the_registry_samplers_with_their_nfe(result):
    for name, (sampler, steps, batched) in imputation.PATHS.items():
        assert sampler in SAMPLERS
        p = result["paths"][name]
        assert (p["sampler"], p["steps"], p["batched"]) == (sampler, steps, batched)
        assert p["nfe_per_chain"] == steps  # ddpm: one call per step; dpm-solver++(2M): too
    st = result["settings"]
    assert result["paths"]["loop_ddpm50"]["timed_windows"] == st["loop_windows"]
    assert result["paths"]["batched_ddpm50"]["timed_windows"] == st["test_windows"]


def test_times_and_speedups_are_consistent(result):
    st = result["settings"]
    for name, p in result["paths"].items():
        assert len(p["seconds_per_round"]) == st["repeats"]
        per = [t / p["timed_windows"] for t in p["seconds_per_round"]]
        assert p["seconds_per_window_per_round"] == pytest.approx(per, rel=REL)
        assert p["seconds_per_window"] == pytest.approx(statistics.median(per), rel=REL)
        assert result["summary"]["seconds_per_window"][name] == p["seconds_per_window"]
    for key, v in result["speedups"].items():
        slow, fast = result["paths"][v["slow"]], result["paths"][v["fast"]]
        assert v["ratio"] == pytest.approx(slow["seconds_per_window"] / fast["seconds_per_window"],
                                           rel=REL)  # fmt: skip
        rounds = [a / b for a, b in zip(slow["seconds_per_window_per_round"],
                                        fast["seconds_per_window_per_round"], strict=True)]  # fmt: skip
        assert v["per_round"] == pytest.approx(rounds, rel=REL)
        assert v["min_round"] == min(v["per_round"]) and v["max_round"] == max(v["per_round"])
        assert result["summary"]["speedup"][key] == v["ratio"]
    target = result["summary"]["targets"]
    ratio = result["speedups"]["batched_dpmpp10_vs_loop_ddpm50"]["ratio"]
    assert target["speedup_met"] == (ratio >= imputation.SPEEDUP_TARGET)


def test_crps_values_are_their_parts(result):
    s = result["summary"]
    for name, p in result["paths"].items():
        q = p["quality"]
        num, den = np.asarray(q["num"]), np.asarray(q["den"])
        assert len(num) == q["windows"] == p["timed_windows"]
        assert q["crps"] == pytest.approx(num.sum() / den.sum(), rel=REL)
        assert s["crps"][name] == q["crps"] and s["crps_se"][name] == q["se"]
    b = np.asarray(result["paths"]["batched_ddpm50"]["quality"]["num"])
    c = np.asarray(result["paths"]["batched_dpmpp10"]["quality"]["num"])
    assert s["crps_ratio_dpmpp10_vs_ddpm50"] == pytest.approx(c.sum() / b.sum(), rel=REL)
    # same windows, same denominators: the ratio of numerators is the ratio of the CRPS
    assert s["crps_ratio_dpmpp10_vs_ddpm50"] == pytest.approx(
        s["crps"]["batched_dpmpp10"] / s["crps"]["batched_ddpm50"], rel=1e-10)
    mean = result["mean_baseline"]
    assert s["crps_mean_baseline"] == pytest.approx(sum(mean["num"]) / sum(mean["den"]), rel=REL)
    oracle = result["oracle"]
    assert s["crps_oracle_samples"] == pytest.approx(
        sum(oracle["num"]) / sum(oracle["den"]), rel=REL)
    for name, ratio in s["crps_ratio_to_oracle"].items():
        assert ratio == pytest.approx(s["crps"][name] / s["crps_oracle_samples"], rel=1e-10)


def test_pooled_parts_reproduce_csdis_crps_and_the_ratio_se():
    gen = torch.Generator().manual_seed(0)
    y = torch.randn(5, 3, 7, generator=gen, dtype=torch.float64)
    targets = torch.rand(5, 3, 7, generator=gen) < 0.5
    samples = torch.randn(9, 5, 3, 7, generator=gen, dtype=torch.float64)
    num, den = imputation.crps_parts(samples, y, targets)
    assert num.sum() / den.sum() == pytest.approx(crps_quantile(samples, y, targets), rel=REL)
    r, se = imputation.ratio_se(num, den)
    resid = num - r * den
    expect = math.sqrt(sum(resid**2) / (5 * 4)) / den.mean()
    assert r == pytest.approx(num.sum() / den.sum(), rel=REL) and se == pytest.approx(expect)
    assert math.isnan(imputation.ratio_se(num[:1], den[:1])[1])


def test_exact_quantile_crps_is_crps_quantile_at_the_exact_quantiles():
    # With S = 21 sorted samples, the sample quantile at level k/20 is the k-th sample exactly
    # (position k/20 * 20 = k), so samples placed at the exact Gaussian quantiles make
    # crps_quantile equal the exact-quantile CRPS.
    gen = torch.Generator().manual_seed(1)
    mean = torch.randn(2, 2, 5, generator=gen, dtype=torch.float64)
    std = torch.rand(2, 2, 5, generator=gen, dtype=torch.float64) + 0.1
    y = torch.randn(2, 2, 5, generator=gen, dtype=torch.float64)
    targets = torch.rand(2, 2, 5, generator=gen) < 0.6
    levels = torch.arange(21, dtype=torch.float64) / 20
    z = torch.distributions.Normal(0.0, 1.0).icdf(levels.clamp(1e-3, 1 - 1e-3))
    samples = mean[None] + std[None] * z.reshape(-1, 1, 1, 1)
    got = imputation.exact_quantile_crps(mean, std, y, targets)
    assert got == pytest.approx(crps_quantile(samples, y, targets), rel=1e-12)


def test_verdict_needs_two_standard_errors():
    assert imputation.verdict(1.00, 0.01, 1.05) == "met"
    assert imputation.verdict(1.04, 0.01, 1.05) == "within noise"
    assert imputation.verdict(1.10, 0.01, 1.05) == "not met"
    assert imputation.verdict(1.04, math.nan, 1.05) == "met"


def test_the_loop_draws_one_chain_per_sample_and_keeps_the_observed(tmp_path):
    from diffusio.core.processes import make_process
    from diffusio.timeseries.csdi import GaussianWindowOracle, window_moments
    from diffusio.timeseries.statespace import default_ssm, simulate

    ssm = default_ssm(features=2, latent=2, seed=0)
    y = torch.as_tensor(simulate(ssm, 3, 6, 1))
    cond = torch.rand(3, 2, 6, generator=torch.Generator().manual_seed(2)) < 0.5
    mu, cov = window_moments(ssm, 6)
    model = GaussianWindowOracle(mu, cov, 2, 6, make_process("vp-quadratic")).model()
    out = imputation.loop_impute(model, y, cond, n_samples=3, loader_batch=2, steps=5)
    assert out.shape == (3, 3, 2, 6)
    assert torch.equal(out[:, cond], y[cond].expand(3, -1))
    assert not torch.equal(out[0][~cond], out[1][~cond])  # each sample its own chain
