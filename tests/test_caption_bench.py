"""The text-to-image evaluation bench (diffusio.image.caption_bench): exact pieces (saturation,
the Fréchet distance of a set to itself, the bootstrap's spread) and a tiny bench on real digits,
whose own test images score the judge's ceiling and FID 0 against themselves."""

import math

import numpy as np
import pytest
import torch

from diffusio.image.caption_bench import CaptionBench, fid_bootstrap, saturated_fraction


def test_saturated_fraction_is_exact():
    x = torch.tensor([[-1.0, -0.98, -0.5, 0.0], [0.97, 0.981, 1.0, 0.2]])
    assert saturated_fraction(x) == pytest.approx(4 / 8)


def test_fid_bootstrap_of_a_set_to_itself():
    g = torch.Generator().manual_seed(0)
    f = torch.randn(400, 6, generator=g, dtype=torch.float64)
    fid, se = fid_bootstrap(f, f)
    assert fid == pytest.approx(0.0, abs=1e-8) and math.isnan(se)
    shifted, se = fid_bootstrap(f + 1.0, f, bootstrap=8)
    # a mean shift of 1 in each of 6 dimensions adds |d mu|^2 = 6 and leaves the covariance
    assert shifted == pytest.approx(6.0, rel=1e-6)
    # bootstrap spread of the squared mean shift: ~ 2 |d mu| sqrt(tr(S) / n) = 2 sqrt(6 * 6 / 400)
    assert 0.3 < se < 1.2


@pytest.fixture(scope="module")
def bench():
    return CaptionBench.build("digits", 16, ("thickness", "slant"), judge_steps=60, judge_n=400)


def test_real_images_score_the_ceiling(bench):
    prompts = bench.prompts(120)
    assert prompts.info["split"] == "test" and len(prompts) == 120
    real = bench.evaluate(prompts.images, prompts, bootstrap=3)
    assert real["fid"] == pytest.approx(0.0, abs=1e-6)
    assert real["n"] == 120 and len(real["per_image"]) == 120
    assert real["attributes"] > 0.6 and real["digit"] > 0.3  # a briefly trained judge
    assert 0.0 <= real["saturated"] <= 1.0 and real["saturated"] == real["saturated_real"]
    per = np.asarray(real["per_image"])
    assert ((per >= 0) & (per <= 1)).all()
    assert bench.floor(prompts) > 0
    noise = torch.rand(120, 1, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    assert bench.evaluate(noise, prompts, bootstrap=0)["fid"] > 10 * bench.floor(prompts)
    heldout = bench.prompts(20, "heldout")
    assert heldout.info["vocabulary"] == "heldout"


def test_bad_samples_are_named(bench):
    prompts = bench.prompts(10)
    with pytest.raises(ValueError, match="got 9 samples for 10 prompts"):
        bench.evaluate(prompts.images[:9], prompts)
    bad = prompts.images.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        bench.evaluate(bad, prompts)
