"""Configs, presets, model construction and loading a finished run."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from diffusio.core.model import DiffusionModel
from diffusio.data.toys import TOYS
from diffusio.nets.mlp import TimeMLP
from diffusio.train import PRESETS, TrainConfig, Trainer, build_model, load_config, load_run
from diffusio.train.config import load_data, model_from_spec, model_spec

TINY = {
    "data": "moons",
    "n_data": 1000,
    "net_options": {"hidden": 16, "depth": 1, "embed_dim": 8},
    "batch_size": 32,
    "steps": 12,
    "warmup": 2,
    "save_every": 6,
    "log_every": 4,
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "run"
    trainer = Trainer(TrainConfig(**TINY), out, progress=False)
    trainer.fit()
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    return out


def test_presets_are_valid_and_cover_the_toys() -> None:
    assert {"toy-swissroll", "toy-8gaussians", "toy-moons", "toy-checkerboard"} <= set(PRESETS)
    for name in PRESETS:
        cfg = load_config(name)
        if name.startswith("digits-"):  # image presets: U-Net on [-1, 1] images
            assert cfg.net == "unet" and not cfg.normalize and cfg.data == "digits"
            continue
        assert cfg.data in TOYS and cfg.process == "vp-linear" and cfg.prediction == "eps"
        assert cfg.net == "mlp" and cfg.net_options["hidden"] >= 256
        assert 1e-3 <= cfg.lr <= 2e-3 and cfg.warmup > 0 and cfg.ema_decay == 0.999
        assert cfg.batch_size == 512 and cfg.normalize
    assert load_config("toy-moons", steps=7).steps == 7


def test_unknown_preset_key_and_value_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="toy-swissroll.*toy-8gaussians"):
        load_config("toy-nonsense")
    with pytest.raises(ValueError, match=r"unknown config key\(s\) 'learning_rate'.*valid: data"):
        TrainConfig.from_dict({"learning_rate": 1.0})
    with pytest.raises(ValueError, match="unknown mixed_precision 'fp8'"):
        TrainConfig(mixed_precision="fp8")
    with pytest.raises(ValueError, match="unknown process 'vp'; valid: vp-linear"):
        TrainConfig(process="vp")
    with pytest.raises(ValueError, match="batch_size must be positive"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="ema_decay must lie in"):
        TrainConfig(ema_decay=1.0)
    with pytest.raises(ValueError, match="config key 'steps': expected"):
        TrainConfig.from_dict({"steps": "many"})
    with pytest.raises(ValueError, match="unknown net 'unet9'"):
        TrainConfig(net="unet9")


def test_yaml_and_json_files(tmp_path: Path) -> None:
    yml = tmp_path / "run.yaml"
    yml.write_text("preset: toy-checkerboard\nlr: 1e-3\nsteps: 1200\nbetas: [0.9, 0.99]\n")
    cfg = load_config(yml)
    assert cfg.data == "checkerboard" and cfg.lr == 1e-3 and cfg.steps == 1200
    assert (
        cfg.betas == (0.9, 0.99) and cfg.net_options == PRESETS["toy-checkerboard"]["net_options"]
    )
    js = tmp_path / "run.json"
    js.write_text(json.dumps({"data": "rings", "n_data": None, "normalize": False}))
    cfg = load_config(js, seed=3)
    assert cfg.data == "rings" and cfg.n_data is None and not cfg.normalize and cfg.seed == 3
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: moons\nweird: 1\n")
    with pytest.raises(ValueError, match="weird"):
        load_config(bad)
    broken = tmp_path / "broken.json"
    broken.write_text("{nope")
    with pytest.raises(ValueError, match="broken.json: cannot read config"):
        load_config(broken)
    base = tmp_path / "base.yaml"
    base.write_text("preset: toy-nothing\n")
    with pytest.raises(ValueError, match="unknown preset 'toy-nothing'"):
        load_config(base)
    # round trip through a dict
    again = TrainConfig.from_dict(cfg.to_dict())
    assert again == cfg


# The pre-rename serialized form of ``load_config("digits-iddpm")`` (a run's config.json
# "config"), and the config hashes of presets measured before the rename: trained models are
# cached under these hashes, so the rename must not change them.
OLD_IDDPM_JSON = (
    '{"batch_size": 128, "betas": [0.9, 0.999], "class_conditional": false, "class_dropout": '
    '0.0, "data": "digits", "data_options": {}, "description": "preset digits-iddpm", '
    '"ema_decay": 0.999, "ema_warmup": true, "eval_every": 0, "grad_clip": 1.0, "keep": 3, '
    '"log_every": 25, "loss_options": {"decoder": "discretized"}, "lr": 0.001, "lr_decay": '
    '"cosine", "mixed_precision": "no", "n_data": null, "net": "unet", "net_options": '
    '{"attention_resolutions": [4], "channel_mults": [1, 2], "channels": 32, "dropout": 0.0, '
    '"groups": 8, "num_heads": 4, "num_res_blocks": 1}, "normalize": false, "prediction": '
    '"eps", "process": "vp-cosine", "process_options": {}, "save_every": 500, "seed": 0, '
    '"steps": 3000, "time_sampler": "discrete", "time_sampler_options": {}, "variance": '
    '"learned", "warmup": 200, "weight_decay": 0.0, "weighting": "hybrid"}'
)
HASHES_BEFORE_RENAME = {
    "digits-ddpm": "4a8c1017",
    "digits-ddpm-cond": "7692ed8c",
    "digits-iddpm": "cfda76b8",
    "toy-8gaussians": "4e4ec29f",
    "toy-checkerboard": "8daf9989",
    "toy-moons": "24655c3f",
    "toy-pinwheel": "1f67db41",
    "toy-swissroll": "3c466f83",
}


def test_renamed_fields_keep_the_serialized_keys_and_the_config_hashes(tmp_path: Path) -> None:
    """``variance_head``, ``time_distribution`` and ``time_distribution_options`` are the
    fields; the serialized form keeps the older keys, so hashes and old runs stay valid."""
    from diffusio.papers.runs import config_hash

    assert config_hash(load_config("digits-ddpm")) == "4a8c1017"
    assert {name: config_hash(load_config(name)) for name in PRESETS} == HASHES_BEFORE_RENAME
    cfg = load_config("digits-iddpm")
    assert cfg.variance_head == "learned" and cfg.time_distribution == "discrete"
    assert json.dumps(cfg.to_dict(), sort_keys=True) == OLD_IDDPM_JSON
    serialized = set(cfg.to_dict())
    assert {"variance", "time_sampler", "time_sampler_options"} <= serialized
    assert not {"variance_head", "time_distribution", "time_distribution_options"} & serialized

    # an old config.json (older keys) reads back as the same config, with the same hash
    old = TrainConfig.from_dict(json.loads(OLD_IDDPM_JSON))
    assert old == cfg and config_hash(old) == HASHES_BEFORE_RENAME["digits-iddpm"]
    path = tmp_path / "config.json"
    path.write_text(OLD_IDDPM_JSON)
    assert load_config(path) == cfg
    yml = tmp_path / "old.yaml"
    yml.write_text("preset: toy-moons\nvariance: learned\ntime_sampler: importance\n"
                   "time_sampler_options: {num_bins: 8}\n")  # fmt: skip
    from_file = load_config(yml)
    assert from_file.variance_head == "learned" and from_file.time_distribution == "importance"
    assert from_file.time_distribution_options == {"num_bins": 8}

    # the older names work everywhere a config is built, and as attributes
    new = load_config("toy-moons", variance_head="learned", time_distribution="discrete",
                      time_distribution_options={})  # fmt: skip
    assert load_config("toy-moons", variance="learned", time_sampler="discrete") == new
    assert TrainConfig(variance="learned", time_sampler="discrete") == TrainConfig(
        variance_head="learned", time_distribution="discrete"
    )
    assert load_config("toy-moons").replace(variance="learned", time_sampler="discrete") == new
    assert new.variance == "learned" and new.time_sampler == "discrete"
    assert new.time_sampler_options == {}
    new.time_sampler = "uniform"
    assert new.time_distribution == "uniform"
    assert load_config("digits-ddpm", time_sampler="discrete") == load_config("digits-ddpm")
    with pytest.raises(ValueError, match="'time_sampler' is the older name"):
        load_config("toy-moons", time_sampler="uniform", time_distribution="discrete")
    with pytest.raises(ValueError, match="unknown variance_head 'guess'"):
        load_config("toy-moons", variance="guess")


def test_build_model_is_seeded_and_leaves_global_rng_alone() -> None:
    cfg = TrainConfig(**TINY)
    state = torch.get_rng_state()
    a, b = build_model(cfg), build_model(cfg)
    assert torch.equal(torch.get_rng_state(), state)
    assert isinstance(a, DiffusionModel) and isinstance(a.net, TimeMLP)
    assert a.net.dim == 2 and a.net.hidden == 16 and a.process.name == "vp-linear"
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    c = build_model(cfg.replace(seed=1))
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters(), strict=True))
    spec = model_spec(cfg, dim=2)
    json.dumps(spec)
    assert spec["net"]["class"] == "diffusio.nets.mlp.TimeMLP"
    assert spec["process"]["options"]["beta_max"] == 20.0
    with pytest.raises(ValueError, match="unknown net"):
        model_from_spec({**spec, "net": {"name": "os.system", "class": "os.system"}})


def test_data_sources(tmp_path: Path) -> None:
    x = load_data(TrainConfig(data="8gaussians", n_data=50, seed=4))
    assert x.shape == (50, 2) and x.dtype == torch.float32
    assert torch.equal(x, load_data(TrainConfig(data="8gaussians", n_data=50, seed=4)))
    arr = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    np.save(tmp_path / "d.npy", arr)
    x = load_data(TrainConfig(data=str(tmp_path / "d.npy"), n_data=30))
    assert torch.equal(x, torch.from_numpy(arr[:30]))
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        load_data(TrainConfig(data=str(tmp_path / "missing.csv")))
    with pytest.raises(ValueError, match="not a registered dataset"):
        load_data(TrainConfig(data="imagenet"))
    assert build_model(TrainConfig(data=str(tmp_path / "d.npy"))).net.dim == 3


def test_run_dir_contents_and_load_run(run_dir: Path) -> None:
    manifest = json.loads((run_dir / "config.json").read_text())
    assert manifest["model"]["process"] == {
        "name": "vp-linear",
        "options": {"beta_min": 0.1, "beta_max": 20.0, "num_steps": 1000},
    }
    assert manifest["model"]["net"]["options"]["dim"] == 2
    assert set(manifest["normalizer"]) == {"mean", "std"}
    assert manifest["config"] == TrainConfig(**TINY).to_dict()  # the older key names
    assert manifest["model"]["variance"] == "fixed"
    model, cfg, normalizer = load_run(run_dir)
    assert cfg == TrainConfig(**TINY) and not model.training
    assert model.variance_head == "fixed"
    x = torch.randn(5, 2)
    t = torch.full((5,), 0.5)
    trainer_ema = load_run(run_dir, ema=True)[0]
    raw = load_run(run_dir, ema=False)[0]
    assert torch.equal(model(x, t), trainer_ema(x, t))
    assert not torch.equal(model(x, t), raw(x, t))
    data = load_data(cfg)
    assert torch.allclose(normalizer.inverse(normalizer.transform(data)), data, atol=1e-5)
    assert abs(float(normalizer.transform(data).mean())) < 1e-5


def _copy(run_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(run_dir, dst)
    return dst


def test_load_run_errors_name_the_file(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no-such-run"):
        load_run(tmp_path / "no-such-run")
    run = _copy(run_dir, tmp_path)
    (run / "ema.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"ema\.safetensors"):
        load_run(run)
    load_run(run, ema=False)  # the raw weights are still there

    data = bytearray((run / "model.safetensors").read_bytes())
    (run / "model.safetensors").write_bytes(bytes(data[:-5]))
    with pytest.raises(ValueError, match=r"model\.safetensors: corrupt"):
        load_run(run, ema=False)

    shutil.rmtree(run)
    run = _copy(run_dir, tmp_path)
    manifest = json.loads((run / "config.json").read_text())
    manifest["model"]["net"]["options"]["hidden"] = 8
    (run / "config.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"ema\.safetensors: shape mismatch"):
        load_run(run)
    (run / "config.json").write_text("{")
    with pytest.raises(ValueError, match=r"config\.json: corrupt JSON"):
        load_run(run)
    (run / "config.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match=r"config\.json: not a diffusio run"):
        load_run(run)
    (run / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        load_run(run)


def test_global_rng_untouched_by_construction() -> None:
    states = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state())
    build_model(TrainConfig(**TINY))
    load_data(TrainConfig(**TINY))
    assert random.getstate() == states[0]
    assert np.array_equal(np.random.get_state()[1], states[1])
    assert torch.equal(torch.get_rng_state(), states[2])
