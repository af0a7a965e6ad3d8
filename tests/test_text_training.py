"""TextLM (masked diffusion, Sahoo et al. 2024; autoregressive) through the common trainer's
ready-model hook: it trains, resumes bit-identically after an interruption, and reloads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from train_helpers import KilledError, kill_at

from diffusio.io import read_json, read_safetensors
from diffusio.text import TextLM, Vocabulary, stdlib_text
from diffusio.text.runs import training_windows
from diffusio.train import TrainConfig, Trainer
from diffusio.train.checkpoint import load_checkpoint
from diffusio.train.trainer import read_metrics

LENGTH = 16




@pytest.fixture(scope="module")
def corpus() -> tuple[Vocabulary, torch.Tensor]:
    text = stdlib_text(4000)
    vocab = Vocabulary.from_text(text)
    return vocab, training_windows(vocab.encode(text), LENGTH).float()


def _model(kind: str, vocab: Vocabulary, seed: int = 0) -> TextLM:
    torch.manual_seed(seed)
    return TextLM(kind, vocab.size, LENGTH, d_model=32, n_layers=1, n_heads=2, dropout=0.1)


def _config(steps: int = 12) -> TrainConfig:
    return TrainConfig(data="text", normalize=False, n_data=None, batch_size=8, steps=steps,
                       warmup=2, net_options={}, save_every=5, log_every=1, seed=3,
                       ema_decay=0.9)  # fmt: skip


def _weights(run: Path, name: str) -> dict[str, torch.Tensor]:
    return read_safetensors(run / name)[0]


@pytest.mark.parametrize("kind", ["mdlm", "ar"])
def test_trainer_trains_a_ready_text_model_and_resumes_exactly(kind, corpus, tmp_path):
    vocab, data = corpus
    ref, out = tmp_path / "ref", tmp_path / "run"
    summary = Trainer(_config(), ref, data=data, model=_model(kind, vocab), progress=False).fit()
    assert summary["step"] == 12
    losses = [r["loss"] for r in read_metrics(ref / "metrics.jsonl") if r["kind"] == "train"]
    assert len(losses) == 12 and all(0 < v < 10 for v in losses)
    manifest = read_json(ref / "config.json")
    assert manifest["model"]["prebuilt"] == "diffusio.text.models.TextLM"
    assert manifest["model"]["config"]["kind"] == kind

    with pytest.raises(KilledError):
        Trainer(_config(), out, data=data, model=_model(kind, vocab), progress=False,
                callbacks=[kill_at(8)]).fit()  # fmt: skip
    assert load_checkpoint(out).step == 5
    # a fresh (differently initialised) model object: the checkpoint supplies every weight
    trainer = Trainer(_config(), out, data=data, model=_model(kind, vocab, seed=9), progress=False)
    assert trainer.time_distribution is None and trainer.normalizer is None
    trainer.fit(resume=True)
    for name in ("model.safetensors", "ema.safetensors"):
        a, b = _weights(ref, name), _weights(out, name)
        assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a), name
    ref_log = [(r["step"], r["loss"]) for r in read_metrics(ref / "metrics.jsonl")]
    assert [(r["step"], r["loss"]) for r in read_metrics(out / "metrics.jsonl")] == ref_log

    # the run reloads from its files alone
    back = TextLM.from_config(manifest["model"]["config"])
    back.load_state_dict(_weights(ref, "ema.safetensors"))
    x = data[:4].long()
    assert torch.isfinite(back.eval().nll(x, draws=2, generator=torch.Generator()).nats).all()


def test_resuming_with_another_model_is_refused(corpus, tmp_path):
    vocab, data = corpus
    out = tmp_path / "run"
    Trainer(_config(steps=5), out, data=data, model=_model("ar", vocab), progress=False).fit()
    with pytest.raises(ValueError, match="the model differs"):
        Trainer(_config(steps=8), out, data=data, model=_model("mdlm", vocab),
                progress=False).fit(resume=True)  # fmt: skip


def test_a_ready_model_needs_config_and_from_config(corpus, tmp_path):
    _, data = corpus
    with pytest.raises(TypeError, match="from_config"):
        Trainer(_config(), tmp_path, data=data, model=torch.nn.Linear(2, 2), progress=False)
