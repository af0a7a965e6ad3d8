"""The ddim-2021 reproduction: its claim rules on synthetic numbers (tolerances from the rules'
own arithmetic: 2 standard errors of a difference, binomial errors of agreements), reading
ddpm-2020's ancestral seeds, the recipe shared with ddpm-2020, and the shared smoke run's files
and metrics (DDIM inversion and slerp are tested in test_image_ddim)."""

from __future__ import annotations

import json
import math

import pytest

pytest.importorskip("sklearn")

from diffusio.papers import ddim_2021 as ddim  # noqa: E402
from diffusio.papers.base import get_reproduction  # noqa: E402
from diffusio.papers.runs import config_hash  # noqa: E402
from diffusio.papers.verdicts import NOT, PARTLY, REPRODUCED, VERDICTS  # noqa: E402

CLS = ddim.DDIM2021
NAN = math.nan


def test_eta0_beats_eta1_counts_clear_losses():
    rule, se = ddim.eta0_beats_eta1, math.sqrt(2) * 0.7  # two seed means with se 0.7 each
    assert rule(gains=[6.4, 3.0, 2.5], ses=[se] * 3) == REPRODUCED  # all beyond 2 se = 1.98
    assert rule(gains=[6.4, 1.5], ses=[se] * 2) == PARTLY  # one within the noise, no loss
    assert rule(gains=[6.4, -2.2, -1.75], ses=[se] * 3) == NOT  # eta = 1 clearly better twice
    assert rule(gains=[6.4, 3.0], ses=[se, NAN]) == PARTLY  # no spread: not a win
    assert rule(gains=[], ses=[]) == NOT


def test_within_targets_need_a_clear_margin_to_the_bound():
    # bound 1.1 x 10 = 11 with se 0.22; the difference's se sqrt(0.2^2 + 0.22^2) = 0.297
    ok = {"ses": [0.2], "reference": 10.0, "reference_se": 0.2, "target": 0.1}
    assert ddim.ddim_within(values=[10.3], **ok) == REPRODUCED  # 0.7 > 0.59
    assert ddim.ddim_within(values=[10.6], **ok) == NOT  # 0.4 < 0.59: within the noise
    assert ddim.ddim_within(values=[12.4], **ok) == NOT
    assert ddim.ddim_within(values=[10.0], **{**ok, "reference_se": NAN}) == NOT  # 1 seed
    two = {"ses": [0.2, 0.2], "reference": 10.0, "reference_se": 0.2, "target": 0.2}
    assert ddim.solver_within(values=[10.0, 10.5], **two) == REPRODUCED  # bound 12
    assert ddim.solver_within(values=[10.0, 11.9], **two) == PARTLY
    assert ddim.solver_within(values=[10.0, 13.0], **two) == NOT  # one clearly outside


def test_consistency_rule():
    n = 359
    assert ddim.consistency(det=[0.92, 0.97], sto=[0.11, 0.10], n=n) == REPRODUCED
    # 0.82 - 2 sqrt(0.82 * 0.18 / 359) = 0.779 < 0.8 at the first S
    assert ddim.consistency(det=[0.82, 0.97], sto=[0.11, 0.10], n=n) == PARTLY
    assert ddim.consistency(det=[0.95, 0.96], sto=[0.94, 0.95], n=n) == NOT  # no contrast
    assert ddim.consistency(det=[0.5, 0.6], sto=[0.1, 0.1], n=n) == NOT
    assert ddim.consistency(det=[], sto=[], n=n) == NOT  # no eta = 1 long run


def test_reconstruction_rule():
    se = [5e-4, 3e-4, 1e-4]
    assert ddim.reconstruction(mses=[0.02, 0.01, 0.005], ses=se) == REPRODUCED
    assert ddim.reconstruction(mses=[0.05, 0.03, 0.012], ses=se) == PARTLY  # not that small
    assert ddim.reconstruction(mses=[0.02, 0.025, 0.005], ses=se) == NOT  # a clear rise
    assert ddim.reconstruction(mses=[0.0100, 0.0099, 0.0098], ses=[5e-4] * 3) == NOT  # no fall
    assert ddim.reconstruction(mses=[0.01], ses=[1e-4]) == NOT


def test_borrowed_ancestral_only_from_the_same_network_and_grid():
    run_dir = "/cache/models/L_simple-d5604bda"
    dep = {"quick": False, "metrics": {"models": {"L_simple": {
        "ancestral_steps": 1000, "train": {"run_dir": "/other/place/L_simple-d5604bda"},
        "fid_ancestral": {"seeds": [0, 1000, 2000], "fids": [9.2, None, 10.1]}}}}}
    got = ddim.borrowed_ancestral(dep, run_dir, 1000)
    assert got["fids"] == [9.2, 10.1] and got["seeds"] == [0, 1000, 2000]  # None: a NaN
    assert ddim.borrowed_ancestral(dep, "/cache/models/L_simple-00000000", 1000) is None
    assert ddim.borrowed_ancestral(dep, run_dir, 250) is None
    assert ddim.borrowed_ancestral(None, run_dir, 1000) is None


def test_long_references_lowest_first():
    rows = [{"eta": 0.0, "steps": 1000, "fids": [13.3]}, {"eta": 1.0, "steps": 1000, "fids": [9.2]}]
    refs = ddim.long_references({"ddim": rows}, None, 1000)
    assert [ref["name"] for ref in refs] == ["ancestral (DDIM eta = 1)", "DDIM eta = 0"]
    assert math.isnan(refs[0]["se"])  # one seed: no spread
    borrowed = {"fids": [10.0, 10.5, 9.5, 10.2, 9.8]}
    refs = ddim.long_references({"ddim": rows}, borrowed, 1000)
    assert refs[0]["name"].endswith("[from ddpm-2020]") and refs[0]["se"] > 0


def test_paper_numbers_are_the_checked_ones():
    assert ddim.PAPER_TABLE1[1.0][1000] == 4.73  # not 3.73: eta = 0 wins at every S in the paper
    assert all(ddim.PAPER_TABLE1[0.0][S] < ddim.PAPER_TABLE1[1.0][S] for S in ddim.PAPER_TABLE1[0.0])
    selection = next(p for p in CLS.PAPER_NUMBERS if "selection" in p.quantity)
    assert selection.value.startswith("quadratic") and selection.verified
    assert all(p.verified for p in CLS.PAPER_NUMBERS)


def test_same_recipe_as_ddpm_2020(tmp_path):
    """ddim-2021's model is ddpm-2020's L_simple model: the same config, so the same cache
    entry, without either module importing the other; its long run is ddpm-2020's ancestral
    grid, so ddpm-2020's seeds can serve as the reference."""
    ddpm = get_reproduction("ddpm-2020")
    assert CLS.DEPENDS == ("ddpm-2020",)
    for quick in (False, True):
        a = CLS(CLS.settings(quick), tmp_path).recipe()
        b = ddpm(ddpm.settings(quick), tmp_path).recipe("L_simple")
        assert config_hash(a) == config_hash(b)
        assert CLS.settings(quick).long_steps == ddpm.settings(quick).ancestral_steps
    a = CLS(CLS.settings(True, CLS.SMOKE), tmp_path).recipe()
    b = ddpm(ddpm.settings(True, ddpm.SMOKE), tmp_path).recipe("L_simple")
    assert config_hash(a) == config_hash(b)  # the smoke runs share one model too
    assert CLS.settings(False).steps + (1000,) == (10, 20, 50, 100, 1000)
    assert CLS.settings(False).fid_seeds >= 5


def test_smoke_run_writes_report_metrics_and_figures(smoke_run):
    out, metrics = smoke_run("ddim-2021")
    tiny = CLS.settings(True, CLS.SMOKE)
    for name in ("fid_vs_steps.png", "consistency.png", "reconstruction.png",
                 "interpolation.png"):  # fmt: skip
        assert (out / name).stat().st_size > 1000, name
    report = (out / "report.md").read_text(encoding="utf-8")
    for heading in ("## Scale", "## Claims checked", "## Paper numbers quoted",
                    "## Sample quality against steps", "## Sample consistency",
                    "## Reconstruction", "## Interpolation"):  # fmt: skip
        assert heading in report
    saved = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert len(saved["claims"]) == 5
    assert all(c["verdict"] in VERDICTS and c["rule"].startswith("ddim-2021/")
               for c in saved["claims"])  # fmt: skip
    assert [c["main"] for c in saved["claims"]] == [True, False, False, True, True]
    m = saved["metrics"]
    runs = {(row["eta"], row["steps"]): len(row["fids"]) for row in m["ddim"]}
    assert runs == {(0.0, 2): 2, (0.0, 4): 2, (0.0, 8): 1, (1.0, 2): 2, (1.0, 4): 2, (1.0, 8): 1}
    assert all(row["fid"] >= 0 for row in m["ddim"])
    assert [(row["steps"], len(row["fids"])) for row in m["dpm_solver"]] == [(3, tiny.fid_seeds)]
    assert [row["steps"] for row in m["reconstruction"]] == [3, 6]
    assert all(row["mse"] >= 0 for row in m["reconstruction"])
    assert {(row["eta"], row["steps"]) for row in m["consistency"]} == {
        (0.0, 2), (0.0, 4), (1.0, 2), (1.0, 4)
    }  # fmt: skip
    assert {ref["name"] for ref in m["references"]} == {"ancestral (DDIM eta = 1)", "DDIM eta = 0"}
    assert m["n"] == tiny.n_samples and m["train"]["step"] == tiny.train_steps
    assert "slerp.confidence_inner" in m["interpolation"]
    assert metrics["metrics"].keys() == m.keys()
