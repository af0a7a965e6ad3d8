"""The dataset registry: built-ins registered by name, file readers by claim, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from diffusio.data import (
    DataRequest,
    TrainingSet,
    build_dataset,
    dataset_entry,
    dataset_names,
    register_dataset,
    unregister_dataset,
)
from diffusio.data.toys import TOYS, sample_toy


def test_builtins_are_registered() -> None:
    names = dataset_names()
    assert set(TOYS) <= set(names) and {"digits", "mnist-5k"} <= set(names)
    toy = build_dataset("moons", n_data=100, seed=3)
    assert torch.equal(toy.x0, sample_toy("moons", 100, seed=3)) and toy.labels is None


def test_files_are_claimed_by_their_readers(tmp_path: Path) -> None:
    arr = np.arange(12, dtype=np.float32).reshape(6, 2)
    np.save(tmp_path / "rows.npy", arr)
    assert dataset_entry(str(tmp_path / "rows.npy")).name == "array-files"
    data = build_dataset(str(tmp_path / "rows.npy"), n_data=4)
    assert torch.equal(data.x0, torch.from_numpy(arr[:4]))
    images = np.zeros((3, 4, 4, 1), dtype=np.uint8)
    np.savez(tmp_path / "im.npz", images=images)
    assert dataset_entry(str(tmp_path / "im.npz")).name == "image-files"
    flipped = build_dataset(str(tmp_path / "im.npz"), options={"flip": True})
    assert flipped.x0.shape == (3, 1, 4, 4) and len(flipped.transforms) == 1


def test_registration_errors() -> None:
    def builder(request: DataRequest) -> TrainingSet:
        return TrainingSet(torch.zeros(request.n_data or 5, 3))

    register_dataset("test-zeros", builder, options=("level",))
    try:
        with pytest.raises(ValueError, match="already registered"):
            register_dataset("test-zeros", builder)
        with pytest.raises(ValueError, match="valid: level"):
            build_dataset("test-zeros", options={"levle": 1})
        assert build_dataset("test-zeros", options={"level": 1}).x0.shape == (5, 3)
        register_dataset("test-zeros", lambda r: torch.zeros(3, 2), replace=True)
        with pytest.raises(TypeError, match="not a TrainingSet"):
            build_dataset("test-zeros")
    finally:
        unregister_dataset("test-zeros")
    with pytest.raises(ValueError, match="not a registered dataset"):
        build_dataset("test-zeros")


def test_training_set_checks_rows_and_null_keys() -> None:
    with pytest.raises(ValueError, match="rows"):
        TrainingSet(torch.zeros(4, 2), cond={"obs": torch.zeros(3, 1)})
    with pytest.raises(ValueError, match="does not broadcast"):
        TrainingSet(torch.zeros(4, 2), mask=torch.ones(4, 3))
    with pytest.raises(ValueError, match="unknown condition keys"):
        TrainingSet(torch.zeros(4, 2), null={"text": 0})
