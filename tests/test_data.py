"""FFJORD toys, file loading and the standardiser.

Statistical tolerances are 5 standard errors of the tested estimate (two-sided p < 1e-6 for a
normal estimate), with the standard error either derived from the distribution or estimated from
the same samples; seeds are fixed, so every test is deterministic.
"""

import json
import math

import numpy as np
import pytest
import torch

from diffusio.core.oracle import GaussianMixture
from diffusio.data import (
    TOYS,
    Standardizer,
    load_array,
    sample_toy,
    toy_entropy,
    toy_mixture,
)

Z = 5.0  # standard errors allowed


def _close(estimate: float, expected: float, se: float) -> None:
    assert abs(estimate - expected) < Z * se, f"{estimate} vs {expected} (se {se})"


# ------------------------------------------------------------------ toys: API
@pytest.mark.parametrize("name", TOYS)
def test_toy_shape_dtype_determinism(name):
    x = sample_toy(name, 1001, seed=7)
    assert x.shape == (1001, 2) and x.dtype == torch.float32 and torch.isfinite(x).all()
    assert torch.equal(x, sample_toy(name, 1001, seed=7))
    assert not torch.equal(x, sample_toy(name, 1001, seed=8))
    assert not torch.equal(sample_toy(name, 1001), sample_toy(name, 1001))  # fresh entropy
    assert sample_toy(name, 0, seed=0).shape == (0, 2)


def test_toy_errors_and_non_exact_toys():
    assert set(TOYS) == {"swissroll", "8gaussians", "moons", "checkerboard", "rings", "pinwheel"}
    with pytest.raises(ValueError, match="unknown toy 'spirals'; valid: swissroll, 8gaussians"):
        sample_toy("spirals", 10)
    with pytest.raises(ValueError, match="unknown toy"):
        toy_entropy("spirals")
    with pytest.raises(ValueError, match="non-negative integer"):
        sample_toy("moons", -1)
    for name in ("moons", "rings", "pinwheel"):
        assert toy_entropy(name) is None and toy_mixture(name) is None
    assert toy_mixture("checkerboard") is None


# ------------------------------------------------------------------ toys: definitions
def test_checkerboard_support_and_entropy():
    """Uniform on the 8 squares of side 2 in [-4, 4]^2 with floor(x/2) + floor(y/2) even:
    area 8 * 4 = 32, entropy log 32 exactly."""
    n = 16000
    x = sample_toy("checkerboard", n, seed=0).double()
    assert (x.abs() <= 4).all()
    cells = torch.floor(x / 2).long()  # cell indices in {-2, -1, 0, 1}^2
    assert ((cells.sum(1) % 2) == 0).all()
    keys = (cells[:, 0] + 2) * 4 + (cells[:, 1] + 2)
    counts = torch.bincount(keys, minlength=16)
    occupied = int((counts > 0).sum())
    assert occupied == 8 and occupied * 2.0**2 == 32.0  # support area
    assert toy_entropy("checkerboard") == math.log(32.0)
    # Uniformity over cells: Pearson chi-square with 7 degrees of freedom; P(chi2_7 > 30) ~ 1e-4.
    expected = n / 8
    chi2 = float(((counts[counts > 0] - expected) ** 2 / expected).sum())
    assert chi2 < 30.0
    # Uniform within cells: the offset from the cell's corner is U[0, 2)^2, mean 1, var 1/3.
    offset = x - 2 * cells
    for d in range(2):
        _close(float(offset[:, d].mean()), 1.0, math.sqrt(1 / 3 / n))


def test_eight_gaussians_modes_match_the_mixture():
    mix = toy_mixture("8gaussians")
    assert isinstance(mix, GaussianMixture) and mix.num_components == 8
    std = 0.5 / 1.414
    torch.testing.assert_close(mix.stds, torch.full((8, 2), std, dtype=torch.float64))
    torch.testing.assert_close(mix.means.norm(dim=1), torch.full((8,), 4 / 1.414).double())
    n = 16000
    x = sample_toy("8gaussians", n, seed=1)
    stats = mix.mode_stats(x)
    assert (stats["count"] > 0).all()  # all 8 modes present
    n_k = stats["count"]
    for k in range(8):
        # mean of n_k draws: se std / sqrt(n_k) per coordinate; std: se ~ std / sqrt(2 n_k)
        for d in range(2):
            _close(float(stats["mean"][k, d]), float(mix.means[k, d]), std / math.sqrt(n_k[k]))
            _close(float(stats["std"][k, d]), std, std / math.sqrt(2 * n_k[k]))
        _close(float(n_k[k]) / n, 1 / 8, math.sqrt(1 / 8 * 7 / 8 / n))
    # The oracle's chi-square per degree of freedom (40 of them) has mean 1 and sd ~0.22.
    assert mix.mode_discrepancy(x) < 1 + Z * math.sqrt(2 / 40)


def test_swissroll_entropy_and_density():
    from diffusio.data.toys import swissroll_log_prob

    H = toy_entropy("swissroll")
    assert abs(H - 2.66965) < 1e-4  # quadrature: grid steps 0.05 and 0.04 agree to 1e-10
    x = sample_toy("swissroll", 4000, seed=3).double()
    logp = swissroll_log_prob(x)
    _close(float(-logp.mean()), H, float(logp.std()) / math.sqrt(len(x)))
    # the s-integral has converged: four times the nodes changes log p by < 1e-4, a hundredth
    # of the Monte Carlo standard error the entropy check above allows
    assert torch.allclose(swissroll_log_prob(x[:200], nodes=16000), logp[:200], atol=1e-4)


def test_eight_gaussians_entropy():
    H = toy_entropy("8gaussians")
    s2 = (0.5 / 1.414) ** 2
    h_component = math.log(2 * math.pi * math.e * s2)  # entropy of one 2-D Gaussian
    # A mixture's entropy lies between its components' and that plus the weights' (log 8).
    assert h_component < H < h_component + math.log(8)
    # Slight overlap of neighbouring modes (6.1 std apart) costs ~0.006 nats: converged
    # quadrature gives 2.831880 (a 2M-sample Monte Carlo check gave 2.8319 +- 0.0007).
    assert abs(H - 2.831880) < 1e-5
    # Monte Carlo -E[log p] on the toy's own samples: se = sd(log p) / sqrt(n).
    x = sample_toy("8gaussians", 20000, seed=2).double()
    logp = toy_mixture("8gaussians").log_prob(x)
    _close(float(-logp.mean()), H, float(logp.std()) / math.sqrt(len(x)))


def test_moons_moments():
    """Points = every point of the two make_moons arcs (shuffled) + N(0, 0.1^2), mapped by
    x * 2 + [-1, -0.2]: the sample mean is the arcs' mean (exact) plus the noise's mean."""
    n = 10000
    x = sample_toy("moons", n, seed=3).double()
    s_out = np.linspace(0, np.pi, n // 2)
    s_in = np.linspace(0, np.pi, n - n // 2)
    arcs = np.concatenate(
        [
            np.stack([np.cos(s_out), np.sin(s_out)], 1),
            np.stack([1 - np.cos(s_in), 0.5 - np.sin(s_in)], 1),
        ]
    )
    arcs = arcs * 2 + np.array([-1.0, -0.2])
    for d in range(2):
        _close(float(x[:, d].mean()), float(arcs[:, d].mean()), 0.2 / math.sqrt(n))
        # variance: arcs' variance + 0.2^2; se of the noise part ~ 0.04 sqrt(2/n) plus the
        # cross term 2 cov(arcs, noise) with se 2 sd(arcs) 0.2 / sqrt(n).
        se = 0.04 * math.sqrt(2 / n) + 2 * arcs[:, d].std() * 0.2 / math.sqrt(n)
        _close(float(x[:, d].var()), float(arcs[:, d].var()) + 0.04, se)
    assert abs(float(x[:, 0].mean())) < 0.02 and abs(float(x[:, 1].mean()) - 0.3) < 0.02


def test_swissroll_moments():
    """x = (s cos s + Z1, s sin s + Z2) / 5 with s ~ U[1.5 pi, 4.5 pi]:
    E x = (2, 2 / (3 pi)) / 5 (integrating s cos s, s sin s), E|x|^2 = (E s^2 + 2) / 25 with
    E s^2 = (1.5 pi)^2 (1 + 2 + 4/3)."""
    n = 10000
    x = sample_toy("swissroll", n, seed=4).double()
    _close(float(x[:, 0].mean()), 2 / 5, float(x[:, 0].std()) / math.sqrt(n))
    _close(float(x[:, 1].mean()), 2 / (3 * math.pi) / 5, float(x[:, 1].std()) / math.sqrt(n))
    sq = (x**2).sum(1)
    expected = ((1.5 * math.pi) ** 2 * 13 / 3 + 2) / 25
    _close(float(sq.mean()), expected, float(sq.std()) / math.sqrt(n))


def test_rings_radii_and_counts():
    """Four circles of radii 3, 2.25, 1.5, 0.75 with n/4 points each (the innermost gets the
    remainder) and N(0, 0.08^2) noise; rings are 0.75 = 9.4 noise std apart, so assigning a
    point to the nearest radius is practically never wrong."""
    n = 4002
    x = sample_toy("rings", n, seed=5).double()
    r = x.norm(dim=1)
    radii = torch.tensor([3.0, 2.25, 1.5, 0.75], dtype=torch.float64)
    ring = (r[:, None] - radii[None]).abs().argmin(1)
    assert torch.bincount(ring, minlength=4).tolist() == [1000, 1000, 1000, 1002]
    resid = r - radii[ring]
    # radial noise ~ N(0, 0.08^2) (curvature bias <= 0.08^2 / (2 * 0.75) = 0.004)
    _close(float(resid.mean()), 0.0, 0.08 / math.sqrt(n) + 0.004 / Z)
    _close(float(resid.std()), 0.08, 0.08 / math.sqrt(2 * n))


def test_pinwheel_moments():
    """Rotations keep norms: |x|^2 = 4 |f|^2 with f = (1 + 0.3 Z1, 0.1 Z2), so
    E|x|^2 = 4 (1 + 0.09 + 0.01) = 4.4; five arms at 72 degrees make the mean 0."""
    n = 10001  # not a multiple of 5: still n rows
    x = sample_toy("pinwheel", n, seed=6).double()
    sq = (x**2).sum(1)
    _close(float(sq.mean()), 4.4, float(sq.std()) / math.sqrt(n))
    for d in range(2):
        _close(float(x[:, d].mean()), 0.0, float(x[:, d].std()) / math.sqrt(n))
    # Five arms: angles cluster around 5 directions; a 72-degree rotation maps the histogram of
    # angles onto itself (each bin count within 5 sd of its rotated twin).
    angle = torch.atan2(x[:, 1], x[:, 0]) % (2 * math.pi)
    hist = torch.histc(angle, bins=40, min=0, max=2 * math.pi)
    rolled = torch.roll(hist, 8)
    assert ((hist - rolled).abs() <= Z * torch.sqrt(hist + rolled + 1)).all()
    assert hist.max() > 3 * hist.min() + 1  # not uniform in angle


# ------------------------------------------------------------------ files
def test_load_npy_npz_csv_round_trip(tmp_path):
    a = np.arange(12, dtype=np.float64).reshape(6, 2) / 7
    np.save(tmp_path / "a.npy", a)
    np.savez(tmp_path / "one.npz", whatever=a)
    np.savez(tmp_path / "many.npz", samples=a, labels=np.arange(6)[:, None])
    np.savez(tmp_path / "data.npz", data=a, extra=np.zeros(3))
    np.savetxt(tmp_path / "plain.csv", a, delimiter=",")
    np.savetxt(tmp_path / "head.csv", a, delimiter=",", header="x,y", comments="")
    (tmp_path / "col.csv").write_text("v\n1\n2\n3\n")
    expected = torch.from_numpy(a.astype(np.float32))
    for name in ("a.npy", "one.npz", "many.npz", "data.npz", "plain.csv", "head.csv"):
        out = load_array(tmp_path / name)
        assert out.dtype == torch.float32 and torch.equal(out, expected), name
    labels = load_array(str(tmp_path / "many.npz"), key="labels")  # str paths work too
    assert labels.tolist() == [[float(i)] for i in range(6)]
    assert load_array(tmp_path / "col.csv").tolist() == [[1.0], [2.0], [3.0]]


def test_load_npz_key_selection(tmp_path):
    np.savez(tmp_path / "two.npz", a=np.zeros((2, 2)), b=np.ones((3, 2)))
    assert load_array(tmp_path / "two.npz", key="b").shape == (3, 2)
    with pytest.raises(ValueError, match=r"several arrays \(a, b\); pass key="):
        load_array(tmp_path / "two.npz")
    with pytest.raises(ValueError, match=r"has no array 'c'; available: a, b"):
        load_array(tmp_path / "two.npz", key="c")
    np.savez(tmp_path / "empty.npz")
    with pytest.raises(ValueError, match="contains no arrays"):
        load_array(tmp_path / "empty.npz")
    np.save(tmp_path / "a.npy", np.zeros((2, 2)))
    with pytest.raises(ValueError, match="key= applies to .npz files only"):
        load_array(tmp_path / "a.npy", key="a")


def test_load_errors(tmp_path):
    missing = tmp_path / "nope.npy"
    with pytest.raises(FileNotFoundError, match="nope.npy"):
        load_array(missing)
    (tmp_path / "x.txt").write_text("1,2\n")
    with pytest.raises(ValueError, match=r"unsupported file type '.txt'.*supported: .npy, .npz"):
        load_array(tmp_path / "x.txt")
    np.save(tmp_path / "vec.npy", np.zeros(5))
    with pytest.raises(ValueError, match=r"expected shape \(N, D\), got \(5,\)"):
        load_array(tmp_path / "vec.npy")
    np.save(tmp_path / "cube.npy", np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match=r"expected shape \(N, D\), got \(2, 2, 2\)"):
        load_array(tmp_path / "cube.npy")
    bad = np.ones((4, 2))
    bad[2, 1] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(ValueError, match="row 2 contains NaN"):
        load_array(tmp_path / "nan.npy")
    bad[2, 1], bad[3, 0] = 1.0, -np.inf
    np.save(tmp_path / "inf.npy", bad)
    with pytest.raises(ValueError, match="row 3 contains Inf"):
        load_array(tmp_path / "inf.npy")
    np.save(tmp_path / "big.npy", np.array([[1.0], [1e300]]))
    with pytest.raises(ValueError, match=r"row 1 contains Inf \(beyond float32\)"):
        load_array(tmp_path / "big.npy")
    (tmp_path / "nan.csv").write_text("1,2\n3,nan\n")
    with pytest.raises(ValueError, match="row 1 contains NaN"):
        load_array(tmp_path / "nan.csv")
    np.save(tmp_path / "empty.npy", np.zeros((0, 2)))
    with pytest.raises(ValueError, match=r"empty \(shape \(0, 2\)\)"):
        load_array(tmp_path / "empty.npy")
    (tmp_path / "empty.csv").write_text("x,y\n")
    with pytest.raises(ValueError, match="empty"):
        load_array(tmp_path / "empty.csv")
    np.save(tmp_path / "str.npy", np.array([["a", "b"]]))
    with pytest.raises(ValueError, match="expected a real numeric array"):
        load_array(tmp_path / "str.npy")


@pytest.mark.parametrize(
    "name, content",
    [
        ("corrupt.npy", b"\x93NUMPY garbage that is not a header"),
        ("corrupt.npz", b"PK\x03\x04 not really a zip archive"),
        ("text.npy", b"hello"),
        ("corrupt.csv", b"1,2\n3,abc\n"),
        ("ragged.csv", b"1,2\n3\n"),
        ("binary.csv", b"\xff\xfe\x00\x01"),
    ],
)
def test_load_corrupt_files(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match=f"could not read {path}: ") as info:
        load_array(path)
    assert "\n" not in str(info.value).split(": ", 1)[0]  # one clear message


def test_load_object_array_is_refused(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([[1, None]], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="could not read .*obj.npy"):
        load_array(tmp_path / "obj.npy")


# ------------------------------------------------------------------ standardiser
def test_standardizer_round_trip_and_state():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(500, 3, generator=gen) * torch.tensor([0.5, 2.0, 10.0]) + 3.0
    for s in (Standardizer.fit(x), Standardizer().fit(x)):  # both spellings
        y = s.transform(x)
        torch.testing.assert_close(y.mean(0), torch.zeros(3), atol=1e-5, rtol=0)
        torch.testing.assert_close(y.std(0, unbiased=False), torch.ones(3), atol=1e-5, rtol=0)
        torch.testing.assert_close(s.inverse(y), x, atol=1e-5, rtol=1e-6)
        assert y.dtype == x.dtype
    state = json.loads(json.dumps(s.state_dict()))
    assert isinstance(state["mean"], list) and isinstance(state["std"][0], float)
    t = Standardizer.from_state_dict(state)
    torch.testing.assert_close(t.transform(x), s.transform(x))
    assert t.log_det_jacobian() == s.log_det_jacobian()


def test_standardizer_log_det_converts_nll():
    """NLL of N(mu, diag s^2) data = NLL of the standardised data under N(0, I) - log|det|."""
    mu = torch.tensor([1.0, -2.0], dtype=torch.float64)
    sd = torch.tensor([0.3, 4.0], dtype=torch.float64)
    s = Standardizer(mu, sd)
    assert s.log_det_jacobian() == pytest.approx(-math.log(0.3) - math.log(4.0))
    x = torch.tensor([[1.2, 0.0], [0.5, -9.0]], dtype=torch.float64)
    y = s.transform(x)
    nll_norm = 0.5 * (y**2).sum(1) + math.log(2 * math.pi)
    nll_data = nll_norm - s.log_det_jacobian(x)
    exact = -torch.distributions.Normal(mu, sd).log_prob(x).sum(1)
    torch.testing.assert_close(nll_data, exact)
    assert s.log_det_jacobian(5).shape == (5,)


def test_standardizer_errors_and_constant_column():
    with pytest.raises(RuntimeError, match="not fitted"):
        Standardizer().transform(torch.zeros(2, 2))
    x = torch.tensor([[1.0, 5.0], [2.0, 5.0], [3.0, 5.0]])
    s = Standardizer.fit(x)
    assert torch.isfinite(s.transform(x)).all() and (s.transform(x)[:, 1] == 0).all()
    with pytest.raises(ValueError, match=r"expected shape \(N, 2\), got \(3, 3\)"):
        s.transform(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="NaN"):
        Standardizer.fit(torch.tensor([[float("nan")]]))
    with pytest.raises(ValueError, match="missing"):
        Standardizer.from_state_dict({"mean": [0.0]})
