"""image.analysis: the shared digits recipe, the loss-curve reader and the curve noise."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from diffusio.image.analysis import TINY_UNET, curve_noise, digits_recipe, loss_curve
from diffusio.papers.runs import config_hash


def test_digits_recipe_is_stable_and_takes_overrides():
    a = digits_recipe("digits-ddpm", 500)
    assert config_hash(a) == config_hash(digits_recipe("digits-ddpm", 500, None, None, 0))
    assert a.steps == 500 and a.seed == 0 and a.description == "digits-ddpm (L_simple)"
    b = digits_recipe("digits-ddpm", 500, TINY_UNET, 8, weighting="vlb")
    assert b.weighting == "vlb" and b.batch_size == 8 and b.description == "digits-ddpm (L_vlb)"
    assert config_hash(a) != config_hash(b)
    assert digits_recipe("digits-ddpm", 5, description="mine").description == "mine"


def test_loss_curve_reads_train_records_and_converts_to_bits(tmp_path):
    records = [{"kind": "train", "step": 1, "loss": 64 * math.log(2.0)},
               {"kind": "eval", "step": 1, "loss": 9.0}, {"kind": "train", "step": 2}]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n{")
    assert loss_curve(tmp_path) == {"step": [1.0], "loss": [64 * math.log(2.0)]}
    assert loss_curve(tmp_path, 64)["loss"] == [pytest.approx(1.0)]
    assert loss_curve(tmp_path / "missing") == {"step": [], "loss": []}


def test_curve_noise_is_scale_free_and_sees_noise():
    rng = np.random.default_rng(0)
    smooth = np.linspace(2.0, 1.0, 200)
    noisy = smooth * np.exp(0.3 * rng.standard_normal(200))
    assert curve_noise(smooth) < 0.01 < 0.1 < curve_noise(noisy)
    assert curve_noise(10 * noisy) == pytest.approx(curve_noise(noisy))
    assert math.isnan(curve_noise([1.0, 2.0]))
