"""ldm-2022: the claim rules' edges and the smoke run's report (the contract test checks the
rest): one autoencoder per f with its computed scale, FID curves with times and FLOPs for the
pixel and every latent model, the caption run sampled by ``diffusio txt2img``."""

import json

import numpy as np
import pytest

pytest.importorskip("tokenizers")

from diffusio.papers import ldm_2022 as ldm  # noqa: E402
from diffusio.papers.verdicts import NOT, PARTLY, REPRODUCED  # noqa: E402


def test_rule_edges():
    assert ldm.reconstruction_falls(outcomes=[1, 0]) == PARTLY
    assert ldm.latent_beats_pixel(gain=5.0, se=3.0) == NOT  # within 2 se is not a win
    assert ldm.faster_sampling(speedup=2.0) == REPRODUCED
    assert ldm.faster_sampling(speedup=1.9) == NOT
    ok = dict(digit=0.9, digit_se=0.02, attributes=0.8, attr_se=0.03, chance_digit=0.1,
              chance_attr=1 / 3)  # fmt: skip
    assert ldm.cross_attention(**ok) == REPRODUCED
    assert ldm.cross_attention(**{**ok, "attributes": 0.36}) == NOT


def test_smoke_report(smoke_run, capsys, tmp_path):
    from cli_helpers import run_command

    out, _ = smoke_run("ldm-2022")
    m = json.loads((out / "metrics.json").read_text())["metrics"]
    s = ldm.LDM2022.settings(True, ldm.LDM2022.SMOKE)
    assert sorted(m["autoencoders"]) == sorted(str(f) for f in s.factors)
    for f, a in m["autoencoders"].items():
        assert a["scale_factor"] > 0 and len(a["psnr_test"]) == s.n_eval
        assert a["latent_shape"][1] == s.canvas // int(f)
    assert set(m["curves"]) == {"pixel", *(f"latent f={f}" for f in s.factors)}
    for rows in m["curves"].values():
        assert len(rows) == s.snapshots and all(r["flops"] > 0 for r in rows)
        assert rows[0]["seconds"] <= rows[-1]["seconds"]
    assert (out / "fid-vs-compute.png").is_file()
    npz = tmp_path / "s.npz"
    code, _, err = run_command(capsys, "txt2img", m["runs"]["caption"], "the digit 3", "--n", 2,
                               "--steps", 2, "--out", npz)  # fmt: skip
    assert code == 0, err
    with np.load(npz) as f:
        assert f["samples"].shape == (2, 1, s.canvas, s.canvas)
