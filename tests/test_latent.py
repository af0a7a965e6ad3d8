"""The latent adapter (diffusio.core.latent) against an exact answer.

A linear autoencoder ``x = A z + b`` (A tall, of full column rank, not orthonormal) and a
Gaussian-mixture latent ``z ~ sum_k w_k N(mu_k, S_k)`` give a known pixel distribution: a mixture
of Gaussians with means ``A mu_k + b`` and covariances ``A S_k A^T``, degenerate (rank 2) in
3-D pixel space. The latent model is the exact oracle of the *scaled* mixture (means and stds
times the scale factor), so sampling through :class:`LatentModel` and decoding must land on the
pixel mixture up to sampling noise alone, and the probability-flow likelihood must equal the
closed-form densities up to ODE error.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from diffusio.core.latent import LatentModel, LinearAutoencoder, latent_scale
from diffusio.core.likelihood import nll
from diffusio.core.model import DiffusionModel
from diffusio.core.oracle import GaussianMixture
from diffusio.core.processes import make_process
from diffusio.core.samplers import sample
from diffusio.core.steering import ClassifierFreeGuidance

DT = torch.float64
N = 4000


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()  # tiny tensors: intra-op threads only add synchronisation
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# Unscaled latent mixture: modes >= 9 stds apart along every line joining them (hard assignment
# misplaces a fraction < 1e-5 of the samples), entries of std ~4, so the scale factor ~0.25.
MEANS = torch.tensor([[-4.0, 2.0], [3.0, 4.0], [1.0, -5.0]], dtype=DT)
STDS = torch.tensor([[0.6, 0.9], [0.8, 0.5], [0.5, 0.7]], dtype=DT)
WEIGHTS = torch.tensor([0.3, 0.3, 0.4], dtype=DT)
LATENT = GaussianMixture(MEANS, STDS, WEIGHTS)
A = torch.tensor([[1.0, 0.5], [0.2, -1.5], [0.7, 0.3]], dtype=DT)
B = torch.tensor([0.5, -1.0, 2.0], dtype=DT)


@pytest.fixture(scope="module")
def setup():
    ae = LinearAutoencoder(A, B)
    z = LATENT.sample(20_000, seed=0)
    x = ae.decode(z)
    scale = latent_scale(ae, x, batch_size=3000)
    scaled = GaussianMixture(MEANS * scale, STDS * scale, WEIGHTS)
    process = make_process("vp-linear")
    model = LatentModel(scaled.model(process), ae, scale)
    return {"ae": ae, "z": z, "x": x, "scale": scale, "scaled": scaled, "process": process,
            "model": model}  # fmt: skip


def test_scale_factor_is_one_over_latent_std(setup):
    ae, x, z, scale = setup["ae"], setup["x"], setup["z"], setup["scale"]
    # (b) exactly 1 / torch.std of every encoded entry (float64, same reduction order: batching
    # only concatenates), and 1 / std of the true latents up to the encoder's rounding (A^+ A = I
    # to ~1e-15 relative).
    assert scale == 1.0 / float(ae.encode(x).std())
    assert scale == pytest.approx(1.0 / float(z.std()), rel=1e-12)
    assert 0.2 < scale < 0.3  # far from 1: the scaling is not a no-op here
    scaled = setup["model"].encode(x)
    assert float(scaled.std()) == pytest.approx(1.0, abs=1e-14)
    # the sample option reaches encode (ignored by the deterministic linear encoder)
    assert latent_scale(ae, x, sample=True) == scale


# (sampler, steps) at test_samplers' generous step counts (each within 2x the noise floor there)
CASES = [("ddim", 500), ("dpm-solver++", 50), ("ddpm", 1000)]


@pytest.fixture(scope="module")
def noise_floor():
    return float(np.mean([LATENT.mode_discrepancy(LATENT.sample(N, seed=100 + s))
                          for s in range(8)]))  # fmt: skip


@pytest.mark.parametrize(("sampler", "steps"), CASES)
def test_decoded_samples_match_the_pixel_mixture(setup, noise_floor, sampler, steps):
    model, ae = setup["model"], setup["ae"]
    x, stats = model.sample_images((N, 2), sampler, steps, seed=1, return_stats=True)
    assert x.shape == (N, 3) and x.dtype == DT and stats["latents"].shape == (N, 2)
    # Decoded samples lie on the decoder's image, the plane A R^2 + b (float rounding only).
    assert (ae.decode(ae.encode(x)) - x).abs().max() < 1e-10
    z = ae.encode(x)
    # Latent space: per-mode weight, mean and spread within 2x the metric's own noise, as the
    # samplers' own oracle tests.
    assert LATENT.mode_discrepancy(z) < 2 * noise_floor
    # Pixel space, against the closed form: weights within 4 standard errors sqrt(w(1-w)/N);
    # per mode, each mean coordinate within 4 se sqrt(C_ii / n_k) of A mu_k + b and each
    # covariance entry within 4 se sqrt((C_ii C_jj + C_ij^2) / n_k) (Gaussian sample
    # covariance) of C = A S_k A^T; the covariance has rank 2 (smallest eigenvalue ~ 0).
    comp = LATENT.assign(z)
    for k in range(3):
        rows = x[comp == k]
        n_k = rows.shape[0]
        w = float(WEIGHTS[k])
        assert abs(n_k / N - w) < 4 * math.sqrt(w * (1 - w) / N)
        C = A @ torch.diag(STDS[k] ** 2) @ A.T
        d = torch.diag(C)
        mean_se = torch.sqrt(d / n_k)
        assert ((rows.mean(0) - (A @ MEANS[k] + B)).abs() < 4 * mean_se).all()
        cov = torch.cov(rows.T)
        cov_se = torch.sqrt((d[:, None] * d[None, :] + C**2) / n_k)
        assert ((cov - C).abs() < 4 * cov_se).all()
        eig = torch.linalg.eigvalsh(cov)
        assert eig[0] < 1e-10 * eig[-1] and eig[1] > 0.1


def test_sample_images_is_sample_then_decode(setup):
    """No new sampling path: the same seed gives the same latents as ``sample`` on the adapter,
    with conditioning and guidance passed through to the wrapped (conditional) model."""
    ae, scale, scaled, process = setup["ae"], setup["scale"], setup["scaled"], setup["process"]
    model = LatentModel(scaled.model(process, conditional=True), ae, scale)
    y = torch.full((200,), 2)
    options = {"cond": {"y": y}, "guidance": [ClassifierFreeGuidance(1.5, null_label=3)]}
    images = model.sample_images((200, 2), "ddim", 20, seed=3, **options)
    z = sample(model, (200, 2), "ddim", 20, seed=3, **options)
    torch.testing.assert_close(images, model.decode(z), rtol=0, atol=0)
    assert (LATENT.assign(ae.encode(images)) == 2).all()  # the class reached the oracle
    # decode undoes the scaling; encode applies it
    torch.testing.assert_close(model.decode(z), ae.decode(z / scale), rtol=0, atol=0)
    torch.testing.assert_close(model.encode(images), ae.encode(images) * scale)


def test_predictions_are_the_wrapped_adapters(setup):
    """A wrapped adapter (one overriding ``predict_with_coefficients``) keeps its behaviour."""
    inner = setup["scaled"].model(setup["process"])

    class Shifted(DiffusionModel):
        def predict_with_coefficients(self, x, t, alpha, sigma, cond=None):
            pred = inner.predict_with_coefficients(x, t, alpha, sigma, cond)
            return pred.with_eps(pred.eps + 0.25)

    shifted = Shifted(inner.net, inner.process, inner.prediction)
    model = LatentModel(shifted, setup["ae"], setup["scale"])
    x, t = torch.randn(5, 2, dtype=DT), torch.full((5,), 0.4, dtype=DT)
    torch.testing.assert_close(model.eps(x, t), inner.eps(x, t) + 0.25)
    assert model.process is inner.process and model.prediction == "eps" and model.dtype == DT
    assert model.latent_shape((3,)) == (2,)


def _subspace_log_prob(x: torch.Tensor, A: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Independent closed form: with A = U R (reduced QR), the coordinates u = U^T (x - b) of x
    in an orthonormal basis of the decoder's image are a Gaussian mixture N(R mu_k, R S_k R^T),
    and their density is the density of x on the plane (w.r.t. its 2-D Lebesgue measure)."""
    U, R = torch.linalg.qr(A)
    u = (x - b) @ U
    logs = [math.log(float(WEIGHTS[k])) + torch.distributions.MultivariateNormal(
        R @ MEANS[k], R @ torch.diag(STDS[k] ** 2) @ R.T).log_prob(u) for k in range(3)]  # fmt: skip
    return torch.logsumexp(torch.stack(logs, 1), 1)


@pytest.mark.parametrize("square", [False, True])
def test_nll_through_the_adapter_is_exact(setup, square):
    # (c) As test_likelihood's exact case: score prediction integrated from sigma = 0 with the
    # exact noised prior at t_max, RK45 at rtol = atol = 1e-8, so only integration error
    # remains (~1e-6; the scaled latents have unit std and modes at |scale mu_k| <= 1.4, the
    # same O(1) regime as there): 1e-4 is >= 30x the worst plausible error.
    scale, scaled, process = setup["scale"], setup["scaled"], setup["process"]
    matrix = A[:2] if square else A  # square: [[1, 0.5], [0.2, -1.5]], det -1.6
    offset = B[:2] if square else B
    ae = LinearAutoencoder(matrix, offset)
    model = LatentModel(scaled.model(process, prediction="score"), ae, scale)
    z = LATENT.sample(16, seed=5)
    x = ae.decode(z)
    options = {"t_min": 0.0, "rtol": 1e-8, "atol": 1e-8,
               "prior_log_prob": scaled.marginal(process, process.t_max).log_prob}  # fmt: skip
    z_s = model.encode(x)
    got = nll(model, z_s, **options)  # the ordinary nll on the adapter: scaled latents
    assert (got + scaled.log_prob(z_s)).abs().max() < 1e-4
    by_space = {s: model.image_nll(x, s, **options) for s in ("scaled", "latent", "pixel")}
    torch.testing.assert_close(by_space["scaled"], got, rtol=0, atol=1e-12)
    # latent: + D log(scale) = 2 log(0.25..) ~ -2.8 nats, exactly (a constant shift)
    shift = 2 * math.log(scale)
    torch.testing.assert_close(by_space["latent"], got - shift, rtol=0, atol=1e-12)
    assert (by_space["latent"] + LATENT.log_prob(z)).abs().max() < 1e-4
    # pixel: + 1/2 log det(A^T A), against the independent closed form on the plane (square A:
    # the ordinary 2-D pixel density, log|det A|)
    log_det = ae.decoder_log_det()
    assert abs(log_det) > 0.1  # the change of variables is not a no-op
    torch.testing.assert_close(by_space["pixel"], by_space["latent"] + log_det, rtol=0, atol=1e-12)
    assert (by_space["pixel"] + _subspace_log_prob(x, matrix, offset)).abs().max() < 1e-4
    if square:  # and the plain pixel mixture N(A mu_k + b, A S_k A^T), with no basis change
        pixel = GaussianMixture(MEANS @ matrix.T + offset, 1.0, WEIGHTS)  # means only
        logs = [math.log(float(WEIGHTS[k])) + torch.distributions.MultivariateNormal(
            pixel.means[k], matrix @ torch.diag(STDS[k] ** 2) @ matrix.T).log_prob(x)
            for k in range(3)]  # fmt: skip
        assert (by_space["pixel"] + torch.logsumexp(torch.stack(logs, 1), 1)).abs().max() < 1e-4


def test_bad_inputs(setup):
    ae, scale, inner = setup["ae"], setup["scale"], setup["model"].model
    with pytest.raises(TypeError, match="DiffusionModel"):
        LatentModel(lambda x, t: x, ae, scale)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="encode"):
        LatentModel(inner, object(), scale)  # type: ignore[arg-type]
    for bad in (0.0, -0.2, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="scale"):
            LatentModel(inner, ae, bad)
    with pytest.raises(ValueError, match="constant"):
        latent_scale(ae, ae.decode(torch.ones(10, 2, dtype=DT)))
    with pytest.raises(ValueError, match="N >= 1"):
        latent_scale(ae, torch.zeros(0, 3, dtype=DT))
    model = setup["model"]
    with pytest.raises(ValueError, match="unknown space"):
        model.image_nll(setup["x"][:2], "bits")

    class Nonlinear:
        def encode(self, x):
            return x[:, :2]

        def decode(self, z):
            return torch.cat([z, z[:, :1] ** 2], 1)

    with pytest.raises(ValueError, match="constant Jacobian"):
        LatentModel(inner, Nonlinear(), scale).image_nll(setup["x"][:2], "pixel")
    with pytest.raises(ValueError, match="full column rank"):
        LinearAutoencoder(torch.tensor([[1.0, 2.0], [2.0, 4.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="D_x >= D_z"):
        LinearAutoencoder(torch.ones(1, 2))
    with pytest.raises(ValueError, match="latents of 2"):
        ae.decode(torch.zeros(4, 3, dtype=DT))
