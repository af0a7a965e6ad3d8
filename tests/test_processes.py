"""Forward processes against the papers' definitions (exact up to float64 rounding)."""

import math

import pytest
import torch

from diffusio import PROCESSES, make_process

DT = torch.float64
TOL = 1e-12  # float64 rounding of O(1) quantities after ~1000 multiplications


def test_ddpm_linear_table_is_exact():
    table = make_process("vp-linear").discrete()
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=DT)  # Ho et al. 2020, Sec. 4
    torch.testing.assert_close(table.betas, betas, rtol=0, atol=TOL)
    torch.testing.assert_close(table.alphas_cumprod, torch.cumprod(1 - betas, 0), rtol=0, atol=TOL)


def test_cosine_table_is_exact():
    # Nichol & Dhariwal 2021, eq. 17, with betas clipped at 0.999
    T, s = 1000, 0.008
    f = torch.cos((torch.arange(T + 1, dtype=DT) / T + s) / (1 + s) * math.pi / 2) ** 2
    betas = torch.clamp(1 - f[1:] / f[:-1], max=0.999)
    table = make_process("vp-cosine").discrete()
    torch.testing.assert_close(table.betas, betas, rtol=0, atol=TOL)
    torch.testing.assert_close(table.alphas_cumprod, torch.cumprod(1 - betas, 0), rtol=0, atol=TOL)
    assert table.betas[-1] == pytest.approx(0.999)  # the clipped end


def test_csdi_quadratic_table_is_exact():
    betas = torch.linspace(1e-4**0.5, 0.5**0.5, 50, dtype=DT) ** 2  # Tashiro et al. 2021
    table = make_process("vp-quadratic").discrete()
    torch.testing.assert_close(table.betas, betas, rtol=0, atol=TOL)


def test_sohl_dickstein_reciprocal_table_is_exact():
    betas = 1.0 / torch.linspace(40.0, 2.0, 40, dtype=DT)  # their code's beta_baseline
    betas[0] += 1e-3  # step1_beta
    table = make_process("vp-reciprocal").discrete()
    torch.testing.assert_close(table.betas, betas, rtol=0, atol=TOL)
    assert 0.02 < float(table.alphas_cumprod[-1]) < 0.03  # about 1/T of the signal variance left
    with pytest.raises(ValueError, match="num_steps >= 2"):
        make_process("vp-reciprocal", num_steps=1)


def test_ve_ladder_is_geometric():
    table = make_process("ve", sigma_min=0.01, sigma_max=1.0, num_steps=10).discrete()
    expected = torch.exp(torch.linspace(math.log(0.01), 0.0, 10, dtype=DT))  # NCSN, Sec. 4.2
    torch.testing.assert_close(table.sigmas, expected, rtol=1e-13, atol=0)


@pytest.mark.parametrize("name", list(PROCESSES))
def test_grid_entries_sit_at_their_continuous_times(name):
    process = make_process(name)
    table = process.discrete()
    torch.testing.assert_close(process.alpha(table.times), table.alphas, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(process.sigma(table.times), table.sigmas, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", list(PROCESSES))
def test_derivatives_match_autograd(name):
    process = make_process(name)
    t = torch.linspace(0.013, 0.97, 11, dtype=DT, requires_grad=True)
    (dlog_alpha,) = torch.autograd.grad(process.log_alpha(t).sum(), t)
    (dsigma2,) = torch.autograd.grad((process.sigma(t) ** 2).sum(), t)
    torch.testing.assert_close(
        process.dlog_alpha_dt(t.detach()), dlog_alpha, rtol=1e-10, atol=1e-12
    )
    torch.testing.assert_close(process.dsigma2_dt(t.detach()), dsigma2, rtol=1e-10, atol=1e-12)


def test_sde_coefficients_match_score_sde():
    # Song et al. 2021, eqs. 9, 11 and 29: g^2 for VE, VP and sub-VP in closed form
    t = torch.linspace(0.0, 1.0, 17, dtype=DT)
    beta = 0.1 + t * (20.0 - 0.1)
    integral = 0.1 * t + 0.5 * (20.0 - 0.1) * t**2
    torch.testing.assert_close(make_process("vp-linear").g2(t), beta, rtol=1e-12, atol=1e-12)
    sub = beta * (1 - torch.exp(-2 * integral))
    torch.testing.assert_close(make_process("sub-vp").g2(t), sub, rtol=1e-12, atol=1e-12)
    ve = make_process("ve", sigma_min=0.01, sigma_max=50.0)
    sig = 0.01 * (50 / 0.01) ** t
    torch.testing.assert_close(ve.g2(t), sig**2 * 2 * math.log(50 / 0.01), rtol=1e-12, atol=0)
    vp = make_process("vp-linear")
    torch.testing.assert_close(vp.drift(torch.ones(17, 1, dtype=DT), t), (-0.5 * beta)[:, None])


@pytest.mark.parametrize("name", list(PROCESSES))
def test_log_snr_inverse(name):
    process = make_process(name)
    t = torch.linspace(0.02, 0.95 * process.t_max, 9, dtype=DT)
    back = process.t_from_log_snr(process.log_snr(t))
    torch.testing.assert_close(back, t, rtol=0, atol=1e-9)


def test_vp_marginal_variance_is_preserved():
    for name in ("vp-linear", "vp-cosine", "vp-quadratic"):
        process = make_process(name)
        t = torch.linspace(0.0, process.t_max, 33, dtype=DT)
        total = process.alpha(t) ** 2 + process.sigma(t) ** 2
        torch.testing.assert_close(total, torch.ones_like(t), rtol=0, atol=1e-12)


def test_prior_sampling_and_log_density():
    process = make_process("ve", sigma_max=5.0)
    x = process.prior_sample((20_000, 3), generator=torch.Generator().manual_seed(0), dtype=DT)
    # sample std within 4 standard errors (std of a sample std ~ s / sqrt(2n))
    assert abs(float(x.std()) - 5.0) < 4 * 5.0 / math.sqrt(2 * x.numel())
    z = torch.zeros(1, 3, dtype=DT)
    expected = -1.5 * math.log(2 * math.pi * 25.0)
    assert float(process.prior_log_prob(z)) == pytest.approx(expected, rel=1e-12)


def test_unknown_process_lists_valid_names():
    with pytest.raises(ValueError, match="vp-linear.*ve"):
        make_process("vp-lineer")
    with pytest.raises(ValueError, match="bad options"):
        make_process("ve", beta_max=3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cosine_end_is_finite_in_every_dtype(dtype):
    process = make_process("vp-cosine")
    t = torch.tensor([0.0, 1.0], dtype=dtype)
    eps = torch.finfo(dtype).eps
    alpha, sigma = process.alpha(t), process.sigma(t)
    assert torch.isfinite(alpha).all() and torch.isfinite(sigma).all()
    assert float(alpha[1]) <= 4 * eps and float(sigma[1]) == pytest.approx(1.0, abs=4 * eps)
    # sigma(0) = sqrt(1 - alpha(0)^2) is the square root of a rounding error: at most sqrt(4 eps)
    assert float(sigma[0]) <= math.sqrt(4 * eps)
