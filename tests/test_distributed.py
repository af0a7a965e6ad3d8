"""Training on two CPU processes (torchrun, gloo): the run completes, records two processes,
refuses an occupied directory on every rank without hanging, and the run resumed on two processes
from its step-10 checkpoint ends bit-identical to the uninterrupted run."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from diffusio.io import read_safetensors
from diffusio.train.distributed import check_launcher, derived_seed, per_process_batch

pytest.importorskip("accelerate")


def test_per_process_batch_and_seeds() -> None:
    assert per_process_batch(512, 1) == 512 and per_process_batch(512, 2) == 256
    with pytest.raises(ValueError, match="divide evenly"):
        per_process_batch(510, 4)
    seeds = {derived_seed(0, name, rank) for name in ("batch", "noise") for rank in range(4)}
    assert len(seeds) == 8 and all(0 <= s < 2**63 for s in seeds)


def test_accelerate_cpu_launch_is_flagged(monkeypatch: pytest.MonkeyPatch) -> None:
    """``accelerate launch --cpu --num_processes 2`` starts one process (it sets only
    ACCELERATE_USE_CPU, no WORLD_SIZE): the trainer says so instead of training silently."""

    class One:
        num_processes = 1

    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.warns(UserWarning, match="runs ONE process"):
        check_launcher(One())
    monkeypatch.delenv("ACCELERATE_USE_CPU")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_launcher(One())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
        "-m", "diffusio", "train", "toy-moons", *args,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("DIFFUSIO_CACHE", None)
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=150)


def _check(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return {f"{name}:{k}": v for name in ("model.safetensors", "ema.safetensors")
            for k, v in read_safetensors(run / name)[0].items()}  # fmt: skip


def test_two_processes_train_and_resume_exactly(tmp_path: Path) -> None:
    full, part = tmp_path / "full", tmp_path / "part"
    _check(_torchrun("--steps", "20", "--save-every", "10", "--out", str(full), cwd=tmp_path))
    manifest = json.loads((full / "config.json").read_text())
    assert manifest["distributed"]["num_processes"] == 2
    assert manifest["distributed"]["global_batch_size"] == 512
    assert manifest["distributed"]["per_process_batch_size"] == 256
    state = json.loads((full / "checkpoint-20" / "state.json").read_text())
    assert state["num_processes"] == 2 and state["step"] == 20
    ranks = {k for k in read_safetensors(full / "checkpoint-20" / "rng.safetensors")[0]
             if k.startswith("generator.batch.rank")}  # fmt: skip
    assert ranks == {"generator.batch.rank0", "generator.batch.rank1"}

    # every rank refuses an occupied run directory (and none waits forever in a barrier)
    refused = _torchrun("--steps", "20", "--out", str(full), cwd=tmp_path)
    assert refused.returncode != 0 and "already holds a run" in refused.stderr

    # the same run killed after its step-10 checkpoint, resumed on two processes
    shutil.copytree(full, part)
    shutil.rmtree(part / "checkpoint-20")
    for name in ("model.safetensors", "ema.safetensors"):  # the resumed run must write these
        (part / name).unlink()
    (part / "latest").write_text("checkpoint-10\n", encoding="utf-8")
    _check(_torchrun("--steps", "20", "--out", str(part), "--resume", cwd=tmp_path))
    assert json.loads((part / "checkpoint-20" / "state.json").read_text())["step"] == 20
    a, b = _weights(full), _weights(part)
    assert set(a) == set(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key
