"""Checkpoints: round trips, atomicity under crashes, pruning and corrupt-file errors."""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from diffusio.train import checkpoint as ck


def _setup(seed: int = 0) -> tuple[nn.Module, nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 5), nn.SiLU(), nn.Linear(5, 2))
    ema = nn.Sequential(nn.Linear(3, 5), nn.SiLU(), nn.Linear(5, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.8, 0.95), weight_decay=0.1)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(4, 3)).pow(2).mean().backward()
        opt.step()
    return model, ema, opt


def _save(run: Path, step: int, model, ema, opt, keep: int | None = 3) -> Path:
    return ck.save_checkpoint(
        run,
        step,
        model=model,
        ema=ema,
        optimizer=opt,
        rng={"torch.cpu": torch.get_rng_state(), "gen": torch.Generator().get_state()},
        state={"scheduler": {"lr": 0.5}, "time_sampler": {"state": None}},
        keep=keep,
    )


def _equal_dicts(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    model, ema, opt = _setup()
    _save(tmp_path, 10, model, ema, opt)
    return tmp_path


def test_layout_and_round_trip(run_dir: Path) -> None:
    path = run_dir / "checkpoint-10"
    assert sorted(p.name for p in path.iterdir()) == sorted(ck.CHECKPOINT_FILES)
    assert (run_dir / "latest").read_text().strip() == "checkpoint-10"
    model, ema, opt = _setup()
    loaded = ck.load_checkpoint(run_dir)  # a run directory follows `latest`
    assert loaded.path == path and loaded.step == 10
    assert _equal_dicts(loaded.model, model.state_dict())
    assert loaded.state["scheduler"] == {"lr": 0.5}
    assert loaded.rng["gen"].dtype == torch.uint8

    fresh, fresh_ema, fresh_opt = _setup(seed=1)
    loaded.load_into(model=fresh, ema=fresh_ema, optimizer=fresh_opt)
    assert _equal_dicts(fresh.state_dict(), model.state_dict())
    assert _equal_dicts(fresh_ema.state_dict(), ema.state_dict())
    a, b = opt.state_dict(), fresh_opt.state_dict()
    assert a["param_groups"] == b["param_groups"]  # betas come back as a tuple
    assert isinstance(b["param_groups"][0]["betas"], tuple)
    for i in a["state"]:
        assert _equal_dicts(a["state"][i], b["state"][i])


def test_optimizer_flattening_is_json_and_tensors_only() -> None:
    _, _, opt = _setup()
    tensors, meta = ck.flatten_optimizer_state(opt.state_dict())
    json.dumps(meta)  # no tensors left in the JSON part
    assert all(k.startswith("state.") for k in tensors)
    assert {"state.0.exp_avg", "state.0.exp_avg_sq", "state.0.step"} <= set(tensors)
    back = ck.unflatten_optimizer_state(tensors, meta)
    assert back["param_groups"][0]["betas"] == (0.8, 0.95)
    with pytest.raises(ValueError, match="missing tensor 'state.1.exp_avg'"):
        ck.unflatten_optimizer_state(
            {k: v for k, v in tensors.items() if k != "state.1.exp_avg"}, meta, "opt.st"
        )


def test_never_unpickles(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pickle

    def forbidden(*args, **kwargs):
        raise AssertionError("pickle/torch.load must not be used")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    model, ema, opt = _setup()
    _save(run_dir, 20, model, ema, opt)
    assert ck.load_checkpoint(run_dir).step == 20


def test_keep_last_k_and_pointer(tmp_path: Path) -> None:
    model, ema, opt = _setup()
    for step in (1, 2, 3, 4, 5):
        _save(tmp_path, step, model, ema, opt, keep=2)
    assert [p.name for p in ck.list_checkpoints(tmp_path)] == ["checkpoint-4", "checkpoint-5"]
    assert ck.latest_checkpoint(tmp_path) == tmp_path / "checkpoint-5"
    for step in (6, 7):
        _save(tmp_path, step, model, ema, opt, keep=None)
    assert len(ck.list_checkpoints(tmp_path)) == 4
    with pytest.raises(ValueError, match="refusing to overwrite"):
        _save(tmp_path, 7, model, ema, opt)


def test_crash_before_pointer_update_keeps_previous(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """os.replace (the pointer update) fails: the new directory may exist, `latest` still names
    the previous checkpoint, which loads."""
    model, ema, opt = _setup(seed=3)

    def boom(*args, **kwargs):
        raise OSError("simulated crash in os.replace")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="simulated crash"):
        _save(run_dir, 20, model, ema, opt)
    monkeypatch.undo()
    assert (run_dir / "latest").read_text().strip() == "checkpoint-10"
    assert ck.latest_checkpoint(run_dir) == run_dir / "checkpoint-10"
    assert ck.load_checkpoint(run_dir).step == 10
    # the next save goes through and moves the pointer
    _save(run_dir, 30, model, ema, opt)
    assert ck.load_checkpoint(run_dir).step == 30


def test_crash_during_directory_rename_keeps_previous(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, ema, opt = _setup(seed=3)
    calls = []
    real_rename = os.rename

    def boom(src, dst):
        calls.append((src, dst))
        raise OSError("simulated crash in os.rename")

    monkeypatch.setattr(os, "rename", boom)
    with pytest.raises(OSError, match="simulated crash"):
        _save(run_dir, 20, model, ema, opt)
    monkeypatch.setattr(os, "rename", real_rename)
    assert calls and Path(calls[0][1]).name == "checkpoint-20"
    assert not (run_dir / "checkpoint-20").exists()
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".tmp")]
    assert ck.load_checkpoint(run_dir).step == 10


def test_crash_mid_write_leaves_only_a_stale_temp_dir(run_dir: Path) -> None:
    """A process killed while writing leaves a half-written temporary sibling: it is ignored by
    readers and removed by the next save."""
    stale = run_dir / ".tmp-checkpoint-20-99999"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"\x00\x01half")
    assert ck.latest_checkpoint(run_dir) == run_dir / "checkpoint-10"
    assert [p.name for p in ck.list_checkpoints(run_dir)] == ["checkpoint-10"]
    model, ema, opt = _setup()
    _save(run_dir, 20, model, ema, opt)
    assert not stale.exists()


def test_without_pointer_newest_complete_checkpoint_is_used(run_dir: Path) -> None:
    model, ema, opt = _setup()
    _save(run_dir, 20, model, ema, opt)
    (run_dir / "latest").unlink()
    (run_dir / "checkpoint-30").mkdir()  # incomplete: ignored
    assert ck.latest_checkpoint(run_dir) == run_dir / "checkpoint-20"
    assert ck.latest_checkpoint(run_dir / "nothing-here") is None


@pytest.mark.parametrize("name", ck.CHECKPOINT_FILES)
def test_missing_file_is_named(run_dir: Path, name: str) -> None:
    (run_dir / "checkpoint-10" / name).unlink()
    with pytest.raises(FileNotFoundError, match=name.replace(".", r"\.")):
        ck.load_checkpoint(run_dir / "checkpoint-10")


@pytest.mark.parametrize(
    "name", ["model.safetensors", "ema.safetensors", "optimizer.safetensors", "rng.safetensors"]
)
@pytest.mark.parametrize("damage", ["truncate", "flip", "header"])
def test_corrupt_safetensors_is_named(run_dir: Path, name: str, damage: str) -> None:
    path = run_dir / "checkpoint-10" / name
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) - 7]
    elif damage == "flip":
        data[-3] ^= 0xFF  # a bit flip in the tensor data: caught by the digest
    else:
        data[8:12] = b"\xff\xfe{["
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=f"{name.replace('.', r'.')}.*corrupt"):
        ck.load_checkpoint(path.parent)


def test_corrupt_state_json_is_named(run_dir: Path) -> None:
    path = run_dir / "checkpoint-10" / "state.json"
    path.write_text(path.read_text()[:-40])
    with pytest.raises(ValueError, match=r"state\.json: corrupt JSON"):
        ck.load_checkpoint(path.parent)
    path.write_text(json.dumps({"format": "diffusio-checkpoint", "version": 1}))
    with pytest.raises(ValueError, match=r"state\.json: missing or invalid 'step'"):
        ck.load_checkpoint(path.parent)


def test_file_from_another_step_is_rejected(run_dir: Path) -> None:
    model, ema, opt = _setup()
    _save(run_dir, 20, model, ema, opt)
    shutil.copy(run_dir / "checkpoint-10/ema.safetensors", run_dir / "checkpoint-20")
    with pytest.raises(ValueError, match=r"ema\.safetensors: belongs to step '10'"):
        ck.load_checkpoint(run_dir / "checkpoint-20")


def test_shape_mismatch_is_named(run_dir: Path) -> None:
    loaded = ck.load_checkpoint(run_dir)
    other = nn.Sequential(nn.Linear(3, 6), nn.SiLU(), nn.Linear(6, 2))
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(ValueError, match=r"model\.safetensors: shape mismatch for '0\.weight'"):
        loaded.load_into(model=other)
    assert _equal_dicts(before, other.state_dict())  # nothing was modified
    renamed = nn.Sequential(nn.Linear(3, 5), nn.Linear(5, 2))
    with pytest.raises(ValueError, match=r"ema\.safetensors: tensor names do not match"):
        loaded.load_into(ema=renamed)
    opt = torch.optim.AdamW(nn.Linear(3, 5).parameters())
    with pytest.raises(ValueError, match=r"optimizer\.safetensors"):
        loaded.load_into(optimizer=opt)


def test_bad_pointer_is_named(run_dir: Path) -> None:
    (run_dir / "latest").write_text("checkpoint-999\n")
    with pytest.raises(FileNotFoundError, match="latest: names checkpoint-999"):
        ck.load_checkpoint(run_dir)
    (run_dir / "latest").write_text("../../etc\n")
    with pytest.raises(ValueError, match="latest: malformed pointer"):
        ck.latest_checkpoint(run_dir)


def test_global_rng_capture_and_restore() -> None:
    saved = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    try:
        json_part, tensors = ck.capture_global_rng()
        json.loads(json.dumps(json_part))
        a = (random.random(), float(np.random.rand()), float(torch.rand(())))
        ck.restore_global_rng(json.loads(json.dumps(json_part)), tensors)
        b = (random.random(), float(np.random.rand()), float(torch.rand(())))
        assert a == b
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
        torch.set_rng_state(saved[2])


def test_safetensors_helpers(tmp_path: Path) -> None:
    base = torch.arange(6.0)
    tensors = {"a": base, "b": base, "half": torch.ones(3, dtype=torch.bfloat16), "s": base[0]}
    path = ck.write_safetensors(tmp_path / "x.safetensors", tensors, {"note": "hi"})
    back, meta = ck.read_safetensors(path)
    assert meta["note"] == "hi"
    assert all(torch.equal(back[k], tensors[k]) for k in tensors)
    back["a"].add_(1.0)  # loaded tensors own writable memory
    assert not torch.equal(back["a"], back["b"])
    with pytest.raises(FileNotFoundError, match="y.safetensors"):
        ck.read_safetensors(tmp_path / "y.safetensors")
