"""The fairness of the diffusers benchmarks (``benchmarks/images.py``, ``benchmarks/samplers.py``):
matched networks and recipes, the same clipping, the same grids, held-out problems that are not
the reported ones. Needs diffusers (the ``bench`` extra); skipped without it."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("diffusers")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import images  # noqa: E402
import samplers  # noqa: E402

from diffusio.core.processes import make_process  # noqa: E402
from diffusio.core.samplers import sample  # noqa: E402
from diffusio.nets import count_parameters  # noqa: E402
from diffusio.train.config import load_config  # noqa: E402


@pytest.fixture(scope="module")
def config():
    return load_config(images.PRESET)


def test_matched_unet_has_diffusios_parameter_count(config):
    from diffusio.nets.unet import UNet

    ours = UNet(in_channels=1, image_size=8, **config.net_options)
    theirs = images.matched_unet(config)
    assert count_parameters(theirs) == count_parameters(ours)
    assert theirs.config.layers_per_block == config.net_options["num_res_blocks"]
    assert theirs.config.norm_num_groups == config.net_options["groups"]


def test_recipe_is_read_from_the_config(config):
    r = images.recipe_of(config)
    assert (r["batch_size"], r["lr"], r["warmup"], r["grad_clip"]) == (
        config.batch_size, config.lr, config.warmup, config.grad_clip)  # fmt: skip
    assert r["ema"]["decay"] == config.ema_decay
    assert images.EXAMPLE_RECIPE["batch_size"] != r["batch_size"]  # the recipe row differs


def test_ema_warmup_rules_agree(config):
    """diffusers' EMAModel without its power warm-up follows diffusio's (1 + n) / (10 + n)."""
    from diffusers.training_utils import EMAModel

    ema = EMAModel(torch.nn.Linear(2, 2).parameters(), **images.recipe_of(config)["ema"])
    for n in (10, 100, 5000):  # diffusers' step n uses n - 1 (its first update copies)
        assert ema.get_decay(n + 1) == pytest.approx(min(config.ema_decay, (1 + n) / (10 + n)))


def test_thresholding_at_max_value_one_is_plain_clipping():
    from diffusers import DPMSolverMultistepScheduler, UniPCMultistepScheduler

    x = 3 * torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    for cls in (DPMSolverMultistepScheduler, UniPCMultistepScheduler):
        sched = cls(thresholding=True, sample_max_value=1.0)
        assert torch.equal(sched._threshold_sample(x.clone()), x.clamp(-1, 1))


def test_cross_wrapped_nets_call_the_same_noise_level(config):
    process = make_process(config.process)
    times = process.discrete().times
    unet = images.matched_unet(config).eval()
    wrapped = images.ContinuousTimeNet(unet, times)
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for i in (0, 417, 999):
            direct = unet(x, torch.tensor([i, i])).sample
            via = wrapped(x, times[i].float().expand(2))
            assert torch.allclose(direct, via, atol=1e-5)


def test_diffusers_on_diffusios_grid_is_diffusios_solver():
    """Given diffusio's grid, DPMSolverMultistep and diffusio's dpm-solver++ take the same steps:
    the samples agree to diffusers' float32 arithmetic."""
    from diffusers import DPMSolverMultistepScheduler

    mix = samplers.mixtures()["three"]
    model = mix.model(make_process("vp-linear"), dtype=torch.float64)
    table = model.process.discrete().times
    ts = samplers.diffusio_grid_timesteps("quadratic", 10)
    assert len(set(ts)) == 10
    sched = DPMSolverMultistepScheduler(**samplers.DIFFUSERS_BASE, final_sigmas_type="sigma_min")
    x_d, nfe = samplers.diffusers_sample(sched, model.net, table, (256, 2), 10, 0, torch.float64, ts)
    times = samplers.foreign_times(("diffusio", "quadratic"), 10)
    x_o = sample(model, (256, 2), "dpm-solver++", times=times, seed=0)
    assert nfe == 10 and float((x_d - x_o).abs().max()) < 1e-3


def test_diffusers_default_grid_as_diffusio_times():
    """diffusers' default DPM++2M (final sigma zero) = diffusio's dpm-solver++ on the same times
    ending in a denoise."""
    from diffusers import DPMSolverMultistepScheduler

    mix = samplers.mixtures()["ring8"]
    model = mix.model(make_process("vp-linear"), dtype=torch.float64)
    table = model.process.discrete().times
    sched = DPMSolverMultistepScheduler(**samplers.DIFFUSERS_BASE)
    x_d, _ = samplers.diffusers_sample(sched, model.net, table, (256, 2), 10, 0, torch.float64)
    times = samplers.foreign_times(("diffusers", "linspace/zero"), 10)
    x_o, stats = sample(model, (256, 2), "dpm-solver++", times=times, seed=0, denoise=True,
                        lower_order_final=False, return_stats=True)  # fmt: skip
    assert stats["nfe"] == 10 and float((x_d - x_o).abs().max()) < 1e-3


def test_heldout_problems_are_not_the_reported_ones():
    reported = samplers.mixtures()
    for name, mix in samplers.heldout_mixtures().items():
        for rep in reported.values():
            same_shape = mix.means.shape == rep.means.shape
            assert not (same_shape and torch.allclose(mix.means, rep.means)), name
    dims = {m.dim for m in samplers.heldout_mixtures().values()}
    assert len(dims) >= 3  # other dimensions than the reported 2-D ones


def test_the_search_space_has_the_options_the_audit_missed():
    labels = {c["label"] for c in samplers.diffusers_configs()}
    for needed in ("UniPC-bh2(exponential/zero)", "UniPC-bh1(linspace/zero)",
                   "UniPC-bh2-o3(karras/zero)", "DPM++3M(linspace/zero)",
                   "DPM++2M(timesteps=diffusio quadratic)"):  # fmt: skip
        assert needed in labels


def _fake(label_scores: dict[str, list[float]], floor: float = 1.0):
    rows = [{"label": k, "lib": "diffusio", "sampler": "dpm-solver++", "solver": "dpm-solver++",
             "grid": k, "builtin": True, "default": k == "time", "discrepancy": None}
            for k in label_scores]  # fmt: skip
    problems = {}
    for p in range(len(next(iter(label_scores.values())))):
        prow = [{**r, "discrepancy": label_scores[r["label"]][p]} for r in rows]
        problems[f"p{p}"] = {"noise_floor": {"discrepancy": floor}, "nfe": {"10": {"configs": prow}}}
    return problems


def test_selection_is_by_geometric_mean_and_reports_the_default():
    # "time" wins one problem by a lot but loses the others; "quadratic" is best overall
    problems = _fake({"time": [1.0, 9.0, 9.0], "quadratic": [2.0, 2.0, 2.0], "log-snr": [3, 3, 3]})
    choice = samplers.select_heldout(problems, ["10"])
    c = choice["diffusio_default_grid"]
    assert c["chosen"] == "quadratic" and c["n_candidates"] == 3
    assert c["score"] == pytest.approx(2.0)
    assert choice["diffusio_current_default"]["label"] == "time"
    assert not choice["diffusio_current_default"]["is_heldout_choice"]
    scores = samplers.geometric_scores(problems, lambda r: True, ["10"])
    assert scores["time"] == pytest.approx(math.exp((math.log(9) * 2) / 3))
