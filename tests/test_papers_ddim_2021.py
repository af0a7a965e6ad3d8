"""The ddim-2021 reproduction: DDIM inversion, slerp, the verdicts, and a tiny end-to-end run
that writes every file."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch

pytest.importorskip("sklearn")

from diffusio.core.samplers import ddim_encode  # noqa: E402
from diffusio.papers import ddim_2021 as ddim  # noqa: E402
from diffusio.papers import ddpm_2020  # noqa: E402
from diffusio.papers.report import VERDICTS  # noqa: E402
from diffusio.train.config import build_model, load_config  # noqa: E402

TINY_NET = {"channels": 8, "channel_mults": [1, 2], "num_res_blocks": 1,
            "attention_resolutions": [4], "num_heads": 2, "groups": 4}  # fmt: skip
TINY = replace(
    ddim.SETTINGS["quick"],
    train_steps=3,
    net_options=TINY_NET,
    batch_size=8,
    n_samples=12,
    steps=(2, 4),
    long_steps=8,
    etas=(0.0, 1.0),
    long_etas=(0.0, 1.0),
    solver_steps=(3,),
    headline_steps=4,
    fid_seeds=2,
    recon_steps=(3, 6),
    recon_n=4,
    interp_rows=2,
    interp_cols=3,
    interp_steps=3,
    grid_rows=3,
)


def test_encode_then_decode_inverts_with_many_steps():
    """With an untrained net (eps = 0: x0_hat = x / alpha) the DDIM ODE is exactly invertible;
    with a random net the round trip's error shrinks as S grows."""
    config = load_config("digits-ddpm", net_options=TINY_NET)
    model = build_model(config).eval()  # zero-initialised output: eps_theta = 0
    x0 = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    x_T = ddim_encode(model, x0, 10)
    assert torch.allclose(ddim.ddim_decode(model, x_T, 10), x0, atol=1e-5)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    errors = [
        float((ddim.ddim_decode(model, ddim_encode(model, x0, S), S) - x0).pow(2).mean())
        for S in (5, 50)
    ]
    assert errors[1] < errors[0]


def test_slerp_keeps_the_norm_and_the_ends():
    gen = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(4, 1, 8, 8, generator=gen), torch.randn(4, 1, 8, 8, generator=gen)
    assert torch.allclose(ddim.slerp(z0, z1, 0.0), z0, atol=1e-5)
    assert torch.allclose(ddim.slerp(z0, z1, 1.0), z1, atol=1e-5)
    mid = ddim.slerp(z0, z1, 0.5).reshape(4, -1).norm(dim=1)
    ends = (z0.reshape(4, -1).norm(dim=1) + z1.reshape(4, -1).norm(dim=1)) / 2
    assert torch.allclose(mid, ends, rtol=0.15)  # ~ the ends' norm; a lerp would shrink it
    assert float((0.5 * z0 + 0.5 * z1).reshape(4, -1).norm(dim=1).mean()) < 0.85 * float(
        ends.mean()
    )


def test_verdicts():
    assert ddim.within(10.5, 10.0, 0.10, 1.0) == "reproduced"
    assert ddim.within(11.5, 10.0, 0.10, 1.0) == "partly reproduced"
    assert ddim.within(14.0, 10.0, 0.10, 1.0) == "not reproduced"
    assert ddim.within(9.0, 10.0, 0.10, math.nan) == "reproduced"
    assert ddim.few_steps_verdict([20.0, 8.0, 1.0], 1.0) == "reproduced"
    assert ddim.few_steps_verdict([1.0, 0.5], 1.0) == "partly reproduced"
    assert ddim.few_steps_verdict([-1.0], 1.0) == "not reproduced"
    rows = [
        {"steps": S, "mse": v, "mse_se": 1e-4} for S, v in ((10, 0.02), (20, 0.01), (50, 0.005))
    ]
    assert ddim.recon_verdict(rows) == "reproduced"
    assert ddim.recon_verdict(rows[::-1]) == "not reproduced"


def test_same_config_as_ddpm_2020():
    """ddim-2021's model is ddpm-2020's L_simple model: the same config, so the same cache."""
    from diffusio.papers.runs import config_hash

    for kind in ("quick", "default"):
        s, d = ddim.SETTINGS[kind], ddpm_2020.SETTINGS[kind]
        a = ddpm_2020.digits_config(s.preset, s.train_steps, s.net_options, s.batch_size, s.seed)
        b = ddpm_2020.variant_config(d, ddpm_2020.SIMPLE)
        assert config_hash(a) == config_hash(b)
    assert ddim.SETTINGS["default"].steps + (1000,) == (10, 20, 50, 100, 1000)


def test_reproduce_writes_report_metrics_and_figures(tmp_path, monkeypatch):
    """The whole pipeline at a tiny scale: every file is written with the expected keys."""
    monkeypatch.setenv("DIFFUSIO_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    metrics = ddim.reproduce(out, quick=True, settings=TINY, progress=False)
    for name in ("fid_vs_steps.png", "consistency.png", "reconstruction.png",
                 "interpolation.png"):  # fmt: skip
        assert (out / name).stat().st_size > 1000, name
    report = (out / "report.md").read_text(encoding="utf-8")
    for heading in ("## Scale", "## Claims checked", "## Sample quality against steps",
                    "## Sample consistency", "## Reconstruction", "## Interpolation"):  # fmt: skip
        assert heading in report
    saved = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert saved["name"] == "ddim-2021" and saved["quick"] is True
    assert len(saved["claims"]) == 5
    assert all(c["verdict"] in VERDICTS for c in saved["claims"])
    m = saved["metrics"]
    runs = {(row["eta"], row["steps"]) for row in m["ddim"]}
    assert runs == {(0.0, 2), (0.0, 4), (0.0, 8), (1.0, 2), (1.0, 4), (1.0, 8)}
    assert all(row["fid"] >= 0 for row in m["ddim"])
    assert [row["steps"] for row in m["dpm_solver"]] == [3]
    assert [row["steps"] for row in m["reconstruction"]] == [3, 6]
    assert all(row["mse"] >= 0 for row in m["reconstruction"])
    assert {(row["eta"], row["steps"]) for row in m["consistency"]} == {
        (0.0, 2), (0.0, 4), (1.0, 2), (1.0, 4)
    }  # fmt: skip
    assert len(m["fid_seed_spread"]["fids"]) == TINY.fid_seeds
    assert m["n"] == TINY.n_samples and m["train"]["step"] == TINY.train_steps
    assert "slerp.confidence_inner" in m["interpolation"]
    assert metrics["metrics"].keys() == m.keys()
