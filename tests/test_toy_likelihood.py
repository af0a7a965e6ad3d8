"""The toy ODE likelihood on the exact 8gaussians oracle: the NLL is the entropy, the paired KL
is ~0, and the normalization is undone."""

import torch

from diffusio.core.processes import make_process
from diffusio.data.normalize import Standardizer
from diffusio.data.toys import sample_toy, toy_entropy, toy_mixture
from diffusio.toy.likelihood import nll_sweep, ode_nll


def test_exact_oracle_ode_nll_is_the_entropy():
    mix = toy_mixture("8gaussians")
    oracle = mix.model(make_process("vp-linear"))
    x = sample_toy("8gaussians", 60, seed=7).double()
    rows, nats = nll_sweep(oracle, None, x, (1e-5, 1e-2), mix.log_prob(x))
    assert [r["tol"] for r in rows] == [1e-2, 1e-5]  # loose first; NFE grows as tol shrinks
    assert rows[0]["nfe"] < rows[1]["nfe"]
    tight = rows[1]
    # The paired KL of the exact model is ~0 (only the t_min smoothing remains)...
    assert abs(tight["kl"]) < 3 * tight["kl_se"] + 5e-3
    # ...and the NLL estimates the entropy within its Monte Carlo error.
    assert abs(tight["nll"] - toy_entropy("8gaussians")) < 3 * tight["nll_se"]
    assert nats.shape == (60,)


def test_ode_nll_undoes_the_normalization():
    """The same density trained on standardized data gives the same NLL in data units."""
    mix = toy_mixture("8gaussians")
    scale = torch.tensor([2.0, 1.5], dtype=torch.float64)  # log-Jacobian -log 3
    scaled = type(mix)(mix.means / scale, mix.stds / scale, mix.weights)
    normalizer = Standardizer(torch.zeros(2), scale)
    x = sample_toy("8gaussians", 10, seed=3).double()
    direct, _ = ode_nll(mix.model(make_process("vp-linear")), None, x, 1e-6)
    via_norm, _ = ode_nll(scaled.model(make_process("vp-linear")), normalizer, x, 1e-6)
    # Equal up to the smoothing at t_min (sigma(t_min) = 0.01 in the model's units).
    assert torch.allclose(direct, via_norm, atol=1e-2)
    assert torch.allclose(direct, -mix.log_prob(x), atol=1e-2)
