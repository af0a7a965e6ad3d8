"""DiffPhyCon on Burgers (Wei et al. 2024): the packed state, the known entries and loss masks
of each setting, prior reweighting as one net (exact on linear nets), and a tiny train + control
run that keeps the given entries."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from diffusio.physics.burgers import N_CELLS, SETTINGS
from diffusio.physics.burgers_data import make_burgers_data
from diffusio.physics.diffphycon import (
    FRAMES,
    SCALE,
    DiffPhyCon,
    ReweightedModel,
    known_entries,
    loss_mask,
    pack,
    train_diffphycon,
    unpack,
)


@pytest.fixture(scope="module")
def data():
    d = make_burgers_data(12, seed=3, setting="fo-pc", progress=False)
    return torch.as_tensor(d["u"]), torch.as_tensor(d["f"])


def test_pack_round_trip_and_padding(data):
    u, f = data
    x = pack(u, f)
    assert x.shape == (12, 2, FRAMES, N_CELLS) and x.dtype == torch.float32
    assert torch.all(x[:, 0, 11:] == 0) and torch.all(x[:, 1, 10:] == 0)
    u2, f2 = unpack(x.double())
    scale = max(u.abs().max(), f.abs().max()) / SCALE
    assert torch.allclose(u2, u, atol=1e-6 * SCALE * scale) and torch.allclose(f2, f, atol=1e-5)
    with pytest.raises(ValueError, match="expected u"):
        pack(u[:, :10], f)


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_known_entries_and_loss_masks_partition_the_state(setting):
    st = SETTINGS[setting]
    u0, ud = torch.randn(2, N_CELLS), torch.randn(2, N_CELLS)
    known = known_entries(u0, ud, setting)
    assert torch.allclose(known[:, 0, 0, st.observed], u0[:, st.observed] / SCALE)
    assert torch.allclose(known[:, 0, 10, st.observed], ud[:, st.observed] / SCALE)
    assert torch.all(known[:, 0, :11, ~st.observed] == 0)  # unobserved: held at zero
    assert torch.all(known[:, 1, :10, ~st.controlled] == 0)  # uncontrolled: no control
    assert torch.isnan(known[:, 1, :10, st.controlled]).all()
    mask = loss_mask(setting)
    free = torch.isnan(known[0])
    free[0, 11:], free[1, 10:] = False, False  # padding never counts
    assert torch.equal(mask.bool(), free)
    prior = loss_mask(setting, prior=True)
    assert prior[0].sum() == 0 and torch.equal(prior[1], mask[1])


class _Linear(nn.Module):
    def __init__(self, a: float):
        super().__init__()
        self.a = a

    def forward(self, x, t, known=None):
        return self.a * x + t.view(-1, 1, 1, 1)


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_reweighted_model_adds_gamma_minus_one_prior_eps_on_f(prediction):
    from diffusio.core.model import DiffusionModel
    from diffusio.core.processes import make_process

    x, t = torch.randn(3, 2, FRAMES, N_CELLS), torch.rand(3)
    process = make_process("vp-cosine")
    joint = DiffusionModel(_Linear(2.0), process, prediction=prediction)
    prior = DiffusionModel(_Linear(-0.5), process, prediction=prediction)
    assert torch.equal(ReweightedModel(joint, prior, 1.0).eps(x, t), joint.eps(x, t))
    eps = ReweightedModel(joint, prior, 2.5).eps(x, t)
    seen = x.clone()
    seen[:, 0, 1:10] = 0.0
    assert torch.allclose(eps[:, 0], joint.eps(x, t)[:, 0])
    # eps is prediction-independent on f's channel: seen == x there
    assert torch.allclose(eps[:, 1], joint.eps(x, t)[:, 1] + 1.5 * prior.eps(seen, t)[:, 1],
                          atol=1e-5)


def test_tiny_training_and_control_keep_the_given_entries(data, tmp_path):
    u, f = data
    tiny = {"net_options": {"channels": 8, "channel_mults": [1, 2], "num_heads": 1}}
    model, summary = train_diffphycon(u, f, "fo-pc", tmp_path / "joint", steps=4,
                                      progress=False, batch_size=4, **tiny)  # fmt: skip
    prior, _ = train_diffphycon(u, f, "fo-pc", tmp_path / "prior", steps=4, prior=True,
                                progress=False, batch_size=4, **tiny)  # fmt: skip
    assert summary["step"] == 4
    st = SETTINGS["fo-pc"]
    for kwargs in ({}, {"prior": prior, "gamma": 2.0}, {"guidance": 1.0, "lam": 0.1}):
        method = DiffPhyCon(model, "fo-pc", steps=3, **kwargs)
        x = method.sample(u[:2, 0], u[:2, -1])  # before control() zeroes anything itself
        assert torch.allclose(x[:, 0, 0], u[:2, 0].float() / SCALE)  # u(0) inpainted
        assert torch.allclose(x[:, 0, 10], u[:2, -1].float() / SCALE)  # u_d inpainted
        assert torch.all(x[:, 1, :10, ~st.controlled] == 0)  # no control off the quarters
        ctrl = method.control(u[:2, 0], u[:2, -1])
        assert ctrl.shape == (2, 10, N_CELLS) and ctrl.dtype == torch.float64
        assert torch.isfinite(ctrl).all() and torch.all(ctrl[:, :, ~st.controlled] == 0)
    with pytest.raises(ValueError, match="u0 and u_target must be"):
        DiffPhyCon(model, "fo-pc").control(u[:2, 0], u[:3, -1])
