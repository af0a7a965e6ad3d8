"""The oracle demo in its home (diffusio.toy.demo), and the demo module layout: the digits demo
is diffusio.demo."""

import json

from diffusio import demo
from diffusio.toy import demo as oracle_demo


def test_oracle_demo_runs_the_sweep(tmp_path, capsys):
    out = oracle_demo.run(tmp_path, seed=2, progress=False, n=200,
                          samplers=[("ddim", 10), ("dpm-solver++", 5)])  # fmt: skip
    assert [r["nfe"] for r in out["samplers"]] == [10, 5]
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["n"] == 200 and all(r["finite"] for r in saved["samplers"])
    assert "noise floor" in capsys.readouterr().out


def test_demo_module_layout():
    assert demo.PRESET == "digits-ddpm" and callable(demo.run)
    assert not hasattr(demo, "parse_samplers")  # the oracle demo's options live in diffusio.toy
