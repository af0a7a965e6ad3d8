"""The trainer: exact resume after a kill, crash-safe checkpoints, EMA, warm-up, clipping, logs."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from train_helpers import KilledError, kill_at

from diffusio.train import EMA, TrainConfig, Trainer, learning_rate, load_checkpoint, read_metrics
from diffusio.train.checkpoint import read_safetensors

TINY = {
    "data": "swissroll",
    "n_data": 2000,
    "net_options": {"hidden": 32, "depth": 2, "embed_dim": 16},
    "batch_size": 64,
    "warmup": 5,
    "log_every": 5,
    "ema_decay": 0.99,
    # a stateful time distribution: its history must be checkpointed too
    "time_distribution": "importance",
    "time_distribution_options": {"num_bins": 8, "history": 2},
}


def tiny(**changes) -> TrainConfig:
    return TrainConfig(**{**TINY, **changes})


def _weights(run: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {
        name: read_safetensors(run / name)[0] for name in ("model.safetensors", "ema.safetensors")
    }


def _assert_bit_identical(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    for name in wa:
        assert set(wa[name]) == set(wb[name])
        for key in wa[name]:
            assert torch.equal(wa[name][key], wb[name][key]), f"{name}:{key} differs"
    # the final checkpoints agree too (optimizer moments, RNG streams)
    ca, cb = load_checkpoint(a), load_checkpoint(b)
    assert ca.step == cb.step
    for key, value in ca.optimizer["state"].items():
        for name, t in value.items():
            assert torch.equal(t, cb.optimizer["state"][key][name]), f"optimizer {key}.{name}"
    assert set(ca.rng) == set(cb.rng)
    assert all(torch.equal(ca.rng[k], cb.rng[k]) for k in ca.rng)
    assert ca.state["time_sampler"] == cb.state["time_sampler"]




@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted 40-step run."""
    out = tmp_path_factory.mktemp("ref") / "run"
    Trainer(tiny(steps=40, save_every=15), out, progress=False).fit()
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    return out


def test_exact_resume_after_exception(reference: Path, tmp_path: Path) -> None:
    cfg = tiny(steps=40, save_every=15)
    out = tmp_path / "run"
    with pytest.raises(KilledError):
        Trainer(cfg, out, progress=False, callbacks=[kill_at(37)]).fit()
    assert load_checkpoint(out).step == 30
    summary = Trainer(cfg, out, progress=False).fit(resume=True)
    assert summary["step"] == 40
    _assert_bit_identical(reference, out)
    # the log was cut back to the checkpoint and continued: one line per logged step
    ref_steps = [r["step"] for r in read_metrics(reference / "metrics.jsonl")]
    steps = [r["step"] for r in read_metrics(out / "metrics.jsonl")]
    assert steps == ref_steps
    ref_loss = [r["loss"] for r in read_metrics(reference / "metrics.jsonl")]
    assert [r["loss"] for r in read_metrics(out / "metrics.jsonl")] == ref_loss


_KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    import torch
    torch.set_num_threads(1)
    from diffusio.train import TrainConfig, Trainer
    from diffusio.train import checkpoint

    config = TrainConfig(**{config})
    mode, out = sys.argv[1], sys.argv[2]

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def callback(trainer, step):
        if mode == "between" and step == 22:
            die()

    if mode == "saving":  # die inside the second checkpoint's write, before its rename
        real = os.rename
        def rename(src, dst):
            if os.path.basename(str(dst)) == "checkpoint-30":
                die()
            return real(src, dst)
        os.rename = rename

    Trainer(config, out, progress=False, callbacks=[callback]).fit()
    """
)


def test_exact_resume_after_sigkill(reference: Path, tmp_path: Path) -> None:
    """A real SIGKILL in the middle of writing the second checkpoint (its files written, its
    directory not yet renamed): the run resumes from the first one and ends bit-identical.
    (Set ``mode = "between"`` to kill at step 22 instead.)"""
    mode = "saving"
    config = {**TINY, "steps": 40, "save_every": 15}
    script = tmp_path / "train.py"
    script.write_text(_KILL_SCRIPT.replace("{config}", repr(config)))
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, str(script), mode, str(out)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == -9, proc.stderr
    assert load_checkpoint(out).step == 15
    if mode == "saving":
        assert any(p.name.startswith(".tmp-checkpoint-30") for p in out.iterdir())
    Trainer(tiny(steps=40, save_every=15), out, progress=False).fit(resume=True)
    _assert_bit_identical(reference, out)
    assert not any(p.name.startswith(".tmp") for p in out.iterdir())


def test_crash_while_checkpointing_keeps_last_good_one(
    reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """os.replace fails while the second checkpoint's pointer is written: `latest` still names
    the first checkpoint, which loads, and resuming ends bit-identical."""
    cfg = tiny(steps=40, save_every=15)
    out = tmp_path / "run"
    real_replace = os.replace

    def replace(src, dst):
        if Path(dst).name == "latest" and (out / "checkpoint-30").exists():
            raise OSError("simulated crash while updating latest")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="simulated crash"):
        Trainer(cfg, out, progress=False).fit()
    monkeypatch.undo()
    assert (out / "latest").read_text().strip() == "checkpoint-15"
    assert load_checkpoint(out).step == 15
    Trainer(cfg, out, progress=False).fit(resume=True)
    _assert_bit_identical(reference, out)


def test_resume_guards(reference: Path, tmp_path: Path) -> None:
    with pytest.raises(FileExistsError, match="pass resume=True"):
        Trainer(tiny(steps=40, save_every=15), reference, progress=False).fit()
    with pytest.raises(ValueError, match=r"config differs .* lr \(0\.001 -> 0\.01\)"):
        Trainer(tiny(steps=40, save_every=15, lr=1e-2), reference, progress=False).fit(resume=True)
    # resuming a finished run is a no-op that keeps its weights
    before = _weights(reference)
    summary = Trainer(tiny(steps=40, save_every=15), reference, progress=False).fit(resume=True)
    assert summary["step"] == 40
    after = _weights(reference)
    assert all(torch.equal(before[f][k], after[f][k]) for f in before for k in before[f])
    # resume=True without a checkpoint starts fresh
    summary = Trainer(tiny(steps=3), tmp_path / "new", progress=False).fit(resume=True)
    assert summary["step"] == 3


def test_a_run_written_under_the_older_config_names_resumes(tmp_path: Path) -> None:
    """Runs and checkpoints keep the older key names (``time_sampler``, ``variance``): a run
    started with them resumes under the new names, and the reverse."""
    old = {k: v for k, v in TINY.items() if not k.startswith("time_distribution")}
    old |= {"time_sampler": "importance", "time_sampler_options": {"num_bins": 8, "history": 2}}
    out = tmp_path / "run"
    with pytest.raises(KilledError):
        Trainer(
            TrainConfig(**old, steps=12, save_every=6), out, progress=False,
            callbacks=[kill_at(9)],
        ).fit()  # fmt: skip
    saved = json.loads((out / "config.json").read_text())["config"]
    assert saved["time_sampler"] == "importance" and saved["variance"] == "fixed"
    assert not {"time_distribution", "time_distribution_options", "variance_head"} & set(saved)
    assert load_checkpoint(out).state["time_sampler"]["name"] == "importance"
    trainer = Trainer(tiny(steps=12, save_every=6), out, progress=False)
    assert trainer.time_sampler is trainer.time_distribution
    assert trainer.fit(resume=True)["step"] == 12
    assert load_checkpoint(out).state["time_sampler"]["state"] is not None


def test_training_does_not_touch_global_rng_and_ignores_it(tmp_path: Path) -> None:
    torch.manual_seed(123)
    random.seed(5)
    np.random.seed(7)
    states = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy())
    Trainer(tiny(steps=6, save_every=0), tmp_path / "a", progress=False).fit()
    assert torch.equal(torch.get_rng_state(), states[0])
    assert random.getstate() == states[1]
    assert np.array_equal(np.random.get_state()[1], states[2])
    torch.manual_seed(999)  # a different global state gives the same run
    Trainer(tiny(steps=6, save_every=0), tmp_path / "b", progress=False).fit()
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(a[f][k], b[f][k]) for f in a for k in a[f])


def test_loss_decreases_and_files(tmp_path: Path) -> None:
    evals = []

    def eval_fn(trainer: Trainer, step: int) -> dict:
        evals.append(step)
        x = torch.randn(256, 2)  # eval randomness is private: training is unaffected
        return {"ema_mse_t05": float(trainer.ema.module.loss(x)), "note": "ok"}

    out = tmp_path / "run"
    cfg = tiny(steps=150, save_every=75, log_every=10, eval_every=50, lr=3e-3, warmup=10)
    summary = Trainer(cfg, out, progress=False, eval_fn=eval_fn).fit()
    records = read_metrics(out / "metrics.jsonl")
    train = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train] == list(range(10, 151, 10))
    assert set(train[0]) == {"kind", "step", "loss", "grad_norm", "lr", "steps_per_sec", "time"}
    first = np.mean([r["loss"] for r in train[:2]])
    last = np.mean([r["loss"] for r in train[-3:]])
    assert last < 0.75 * first, (first, last)
    assert summary["loss"] == train[-1]["loss"]
    assert evals == [50, 100, 150]
    eval_lines = [r for r in records if r["kind"] == "eval"]
    assert [r["step"] for r in eval_lines] == [50, 100, 150]
    assert eval_lines[0]["note"] == "ok" and math.isfinite(eval_lines[0]["ema_mse_t05"])
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert all(json.loads(line) for line in lines)  # one JSON object per line
    png = (out / "loss.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in sorted(out.glob("checkpoint-*"))] == ["checkpoint-150", "checkpoint-75"]
    assert {"config.json", "model.safetensors", "ema.safetensors", "latest"} <= {
        p.name for p in out.iterdir()
    }


def test_ema_math() -> None:
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(2.0)
    ema = EMA(model, decay=0.9, warmup=False)
    assert ema.module.weight.requires_grad is False
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)
    assert ema.module.weight.item() == pytest.approx(0.9 * 2.0 + 0.1 * 1.0)
    ema.update(model)
    assert ema.module.weight.item() == pytest.approx(0.9 * 1.9 + 0.1 * 1.0)
    assert ema.num_updates == 2
    # Song et al.'s warm-up: decay_n = min(decay, (1 + n) / (10 + n))
    model2 = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model2.weight.fill_(0.0)
    warm = EMA(model2, decay=0.9, warmup=True)
    expected = 0.0
    for n in range(1, 40):
        with torch.no_grad():
            model2.weight.fill_(float(n))
        d = min(0.9, (1 + n) / (10 + n))
        assert warm.current_decay() == pytest.approx(d)
        warm.update(model2)
        expected = d * expected + (1 - d) * n
        assert warm.module.weight.item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="decay"):
        EMA(model, decay=1.0)


def test_warmup_schedule(tmp_path: Path) -> None:
    lrs = [learning_rate(s, 1e-3, warmup=4) for s in range(1, 7)]
    assert lrs == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3])
    assert learning_rate(1, 1e-3, warmup=0) == 1e-3
    cos = [learning_rate(s, 1.0, warmup=2, decay="cosine", total=12) for s in (2, 7, 12)]
    assert cos == pytest.approx([1.0, 0.5, 0.0], abs=1e-12)
    out = tmp_path / "run"
    Trainer(tiny(steps=8, warmup=4, lr=1e-3, log_every=1, save_every=0), out, progress=False).fit()
    logged = [r["lr"] for r in read_metrics(out / "metrics.jsonl")]
    assert logged == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3])
    state = load_checkpoint(out).state["scheduler"]
    assert state["warmup"] == 4 and state["last_lr"] == pytest.approx(1e-3)


def _grad_norm(model: nn.Module) -> float:
    return float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()])))


def test_gradient_clipping(tmp_path: Path) -> None:
    clip = 1e-3
    trainer = Trainer(tiny(steps=2, grad_clip=clip), tmp_path / "a", progress=False)
    _, norm = trainer.train_step(1)
    assert float(norm) > 10 * clip  # the raw gradient was larger ...
    assert _grad_norm(trainer.model) == pytest.approx(clip, rel=1e-4)  # ... and was clipped
    unclipped = Trainer(tiny(steps=2, grad_clip=0.0), tmp_path / "b", progress=False)
    _, norm = unclipped.train_step(1)
    assert _grad_norm(unclipped.model) == pytest.approx(float(norm), rel=1e-5)


def test_cpu_mixed_precision_falls_back_to_fp32(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("CPU-only behaviour")
    with pytest.warns(UserWarning, match="needs a GPU"):
        trainer = Trainer(tiny(steps=1, mixed_precision="bf16"), tmp_path, progress=False)
    assert trainer.accelerator.mixed_precision == "no" and trainer.device.type == "cpu"
    assert trainer.model.dtype == torch.float32


def test_accelerator_state_allows_a_second_mixed_precision_in_one_process():
    """accelerate keeps one process-wide state and refuses a second precision; a reproduction
    that trains an fp32 and a bf16 model in one process must still work (found on a GPU)."""
    from diffusio.train.distributed import new_accelerator as _new_accelerator

    assert _new_accelerator("no", cpu=True).mixed_precision == "no"
    assert _new_accelerator("bf16", cpu=True).mixed_precision == "bf16"
    assert _new_accelerator("no", cpu=True).mixed_precision == "no"
