"""Image loaders on tiny files written in each format, including corrupt and hostile ones."""

from __future__ import annotations

import gzip
import pickle

import numpy as np
import pytest
import torch

from diffusio.data.images import (
    load_cifar_batch,
    load_idx,
    load_image_folder,
    load_npz_images,
    to_model_range,
)

RNG = np.random.default_rng(0)


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim])
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


@pytest.mark.parametrize("gz", [False, True])
def test_idx_images_and_labels(tmp_path, gz):
    images = RNG.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    labels = np.arange(5, dtype=np.uint8)
    for name, arr in (("images", images), ("labels", labels)):
        data = idx_bytes(arr)
        (tmp_path / name).write_bytes(gzip.compress(data) if gz else data)
    assert np.array_equal(load_idx(tmp_path / "images"), images)
    assert np.array_equal(load_idx(tmp_path / "labels"), labels)


def test_idx_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad-idx"
    bad.write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="bad-idx: not an IDX file"):
        load_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(idx_bytes(np.zeros((2, 3), np.uint8))[:-1])
    with pytest.raises(ValueError, match="short: IDX header says shape"):
        load_idx(short)
    with pytest.raises(FileNotFoundError, match="missing"):
        load_idx(tmp_path / "missing")


def test_cifar_batch_roundtrip_and_refuses_code(tmp_path):
    data = RNG.integers(0, 256, size=(4, 3072), dtype=np.uint8)
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": data, b"labels": [0, 1, 2, 3]}))
    images, labels = load_cifar_batch(path)
    assert images.shape == (4, 3, 32, 32) and labels.tolist() == [0, 1, 2, 3]
    assert np.array_equal(images.reshape(4, -1), data)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil_batch"
    evil.write_bytes(pickle.dumps({b"data": Evil(), b"labels": [0]}))
    with pytest.raises(ValueError, match="refusing to load builtins.print"):
        load_cifar_batch(evil)


def test_npz_layouts_labels_and_errors(tmp_path):
    nhwc = RNG.integers(0, 256, size=(3, 8, 8, 3), dtype=np.uint8)
    np.savez(tmp_path / "a.npz", x=nhwc, labels=np.array([0, 1, 2]))
    images, labels = load_npz_images(tmp_path / "a.npz")
    assert images.shape == (3, 3, 8, 8) and labels.tolist() == [0, 1, 2]
    np.savez(tmp_path / "b.npz", x=np.zeros((2, 5)))
    with pytest.raises(ValueError, match="b.npz: expected images"):
        load_npz_images(tmp_path / "b.npz")
    with pytest.raises(ValueError, match="no array 'y2'"):
        load_npz_images(tmp_path / "a.npz", key="y2")


def test_image_folder_with_classes(tmp_path):
    pytest.importorskip("PIL")
    from PIL import Image

    for c, name in enumerate(("cat", "dog")):
        (tmp_path / name).mkdir()
        for k in range(2):
            arr = np.full((6, 6, 3), 40 * (c + k), dtype=np.uint8)
            Image.fromarray(arr).save(tmp_path / name / f"{k}.png")
    images, labels, classes = load_image_folder(tmp_path)
    assert images.shape == (4, 3, 6, 6) and classes == ["cat", "dog"]
    assert labels.tolist() == [0, 0, 1, 1]
    small, _, _ = load_image_folder(tmp_path, size=4)
    assert small.shape == (4, 3, 4, 4)
    (tmp_path / "dog" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="broken.png: cannot read image"):
        load_image_folder(tmp_path)


def test_to_model_range():
    x = to_model_range(np.array([[0, 255]], dtype=np.uint8))
    assert torch.equal(x, torch.tensor([[-1.0, 1.0]]))
    with pytest.raises(ValueError, match="uint8"):
        to_model_range(np.zeros(3, dtype=np.float32))
