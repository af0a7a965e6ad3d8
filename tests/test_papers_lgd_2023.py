"""lgd-2023: the exact posterior by importance resampling against closed forms, the plan prior,
the claim rules and the smoke run (through the session's shared ``smoke_run``)."""

import json
import math

import pytest
import torch

from diffusio.oracle import GaussianMixture
from diffusio.papers import lgd_2023 as lgd
from diffusio.papers.verdicts import NOT, PARTLY, REPRODUCED, VERDICTS


def _quadratic(y, q):
    y = torch.as_tensor(y, dtype=torch.float64)
    return lambda x: ((x - y) ** 2).sum(-1) / (2 * q**2)


def test_gaussian_prior_quadratic_loss_gives_the_gaussian_posterior():
    # N(m, s^2 I) times exp(-|x - y|^2 / (2 q^2)) is N(mu, v I): v = 1 / (1/s^2 + 1/q^2),
    # mu = v (m / s^2 + y / q^2).
    m, s, y, q = torch.tensor([0.5, -1.0]), 1.2, torch.tensor([2.0, 1.0]), 0.8
    v = 1.0 / (1 / s**2 + 1 / q**2)
    mu = v * (m / s**2 + y / q**2)
    post = lgd.exact_posterior(GaussianMixture(m[None], s), _quadratic(y, q), 200_000, seed=3)
    x, w, ess = post["x"], post["w"], post["ess"]
    assert abs(float(w.sum()) - 1.0) < 1e-12 and 1_000 < ess < 200_000
    mean = (w[:, None] * x).sum(0)
    var = (w[:, None] * (x - mean) ** 2).sum(0)
    assert torch.all((mean - mu.double()).abs() < 5 * math.sqrt(v / ess))
    assert torch.all((var - v).abs() < 5 * v * math.sqrt(2 / ess))
    draws = lgd.resample(post, 20_000, seed=1)
    assert torch.all((draws.mean(0) - mu.double()).abs() < 5 * math.sqrt(v / 20_000 + v / ess))
    assert torch.equal(draws, lgd.resample(post, 20_000, seed=1))  # seeded


def test_mode_weights_match_the_closed_form_within_the_ess_tolerance():
    # each mode's posterior weight is w_k N(y; m_k, (s^2 + q^2) I) normalised
    means, s, weights, y, q = [[-2.0, 0.0], [2.0, 0.0]], 0.4, [0.7, 0.3], [1.0, 0.5], 1.0
    post = lgd.exact_posterior(GaussianMixture(means, s, weights), _quadratic(y, q), 200_000)
    d2 = ((torch.tensor(means) - torch.tensor(y)) ** 2).sum(-1).double()
    exact = torch.tensor(weights).double() * torch.exp(-d2 / (2 * (s**2 + q**2)))
    exact = exact / exact.sum()
    assert torch.all((post["mode_weights"] - exact).abs() < 5 * post["mode_se"] + 1e-3)
    assert torch.all(post["mode_se"] > 0)


def test_two_point_loss_is_non_convex_with_two_zeros():
    loss = lgd.two_point_loss(0.5)
    pts = torch.tensor(lgd.TARGETS, dtype=torch.float64)
    assert torch.allclose(loss(pts), torch.zeros(2, dtype=torch.float64))
    mid = loss(pts.mean(0, keepdim=True))
    assert float(mid) > 0 and loss(pts[None].expand(3, 2, 2)).shape == (3, 2)


def test_routes_pin_the_ends_and_score_collisions():
    routes = lgd.Routes(32)
    z = routes.prior.sample(50, seed=0)
    p = routes.decode(z)
    assert p.shape == (50, 32, 2)
    assert torch.allclose(p[:, 0], torch.tensor(lgd.START).double().expand(50, 2))
    assert torch.allclose(p[:, -1], torch.tensor(lgd.GOAL).double().expand(50, 2))
    straight = torch.zeros(1, 2 * lgd.N_BASIS, dtype=torch.float64)
    on_line, off_line = (0.0, 0.0, 0.2), (0.7, 0.0, 0.2)
    assert routes.score(straight, on_line)["collision"] == 1.0
    got = routes.score(straight, off_line)
    assert got["collision"] == 0.0 and got["success"] == 1.0 and got["w_straight"] == 1.0
    loss = routes.obstacle_loss(on_line, 10.0, 0.05)
    assert float(loss(straight)) > 0 and float(routes.obstacle_loss(off_line, 10.0, 0.05)(straight)) == 0


def test_claim_rules_tally_every_comparison():
    assert lgd.mc_beats_dps(gains=[0.1, 0.1, 0.1, 0.1], ses=[0.01] * 4) == REPRODUCED
    assert lgd.mc_beats_dps(gains=[0.1, 0.0, 0.1, 0.1], ses=[0.01] * 4) == PARTLY
    assert lgd.mc_beats_dps(gains=[0.1, -0.1, 0.1, 0.1], ses=[0.01] * 4) == NOT
    assert lgd.mc_beats_dps(gains=[0.1, 0.1], ses=[math.nan, math.nan]) == NOT  # too few seeds
    assert lgd.dps_biased(excess=0.01, se=0.01) == NOT  # within the noise
    assert lgd.obstacle_control(gains=[0.5, 0.0], ses=[0.01, 0.01]) == PARTLY


def test_smoke_run(smoke_run):
    out, _ = smoke_run("lgd-2023")
    for name in ("samples.png", "plans.png", "report.md", "metrics.json"):
        assert (out / name).stat().st_size > 1000
    report = (out / "report.md").read_text(encoding="utf-8")
    for heading in ("## Claims checked", "## Paper numbers quoted", "## Exact check",
                    "## Control", "## Notes"):  # fmt: skip
        assert heading in report
    saved = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert saved["name"] == "lgd-2023" and len(saved["claims"]) == 5
    assert [c["main"] for c in saved["claims"]] == [True, True, False, True, False]
    assert all(c["verdict"] in VERDICTS for c in saved["claims"])
    m = saved["metrics"]
    smoke = lgd.LGD2023.SMOKE
    labels = ["exact (resampled)", "prior (no loss)", "DPS"] + [f"LGD-MC n={n}" for n in smoke["n_mc"]]
    assert list(m["exact_check"]) == labels
    seeds = lgd.LGD2023.QUICK["seeds"]
    assert all(len(rows) == seeds for rows in m["exact_check"].values())
    assert all(len(rows) == seeds for rows in m["control"].values())
    assert sum(m["exact_mode_weights"]) == pytest.approx(1.0)
    assert all(0 <= r["collision"] <= 1 for rows in m["control"].values() for r in rows)
