"""The batch contract: x0, a cond dict with null values, a loss mask, transforms, a registry.

Labels reach the network through ``cond``; condition dropout happens at its configured rate and
puts each key's null value in place; the loss mask matches a hand computation, ignores what it
masks (values and gradients) and never turns an all-zero row into NaN; a toy dataset registered
by name with a condition and a mask trains through the Trainer and resumes bit-identically.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from diffusio.core.losses import diffusion_loss
from diffusio.core.model import DiffusionModel
from diffusio.core.processes import make_process
from diffusio.core.timesteps import UniformTime
from diffusio.data import (
    Batch,
    DataRequest,
    RandomFlip,
    TrainingSet,
    register_dataset,
    unregister_dataset,
)
from diffusio.data.datasets import random_flip
from diffusio.train import Trainer
from diffusio.train.config import TrainConfig, load_config, load_run
from diffusio.train.models import NETS, register_net

N, D = 512, 6


class CondNet(nn.Module):
    """A small MLP ``net(x, t, y=None, **cond)`` taking any float conditions (concatenated, in
    key order, ``cond_dim`` wide) and optional class labels (with a null class)."""

    def __init__(self, dim: int, cond_dim: int = 0, num_classes: int | None = None,
                 hidden: int = 32):  # fmt: skip
        super().__init__()
        self.dim, self.cond_dim, self.num_classes = dim, cond_dim, num_classes
        self.label = None if num_classes is None else nn.Embedding(num_classes + 1, hidden)
        self.inp = nn.Linear(dim + cond_dim + 1, hidden)
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, dim))  # fmt: skip
        self.seen: dict[str, Tensor] = {}

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None, **cond: Tensor) -> Tensor:
        self.seen = {k: v.detach().clone() for k, v in cond.items()}
        if y is not None:
            self.seen["y"] = y.detach().clone()
        parts = [x, t.reshape(-1, 1).expand(x.shape[0], 1)]
        parts += [cond[k].reshape(x.shape[0], -1).to(x) for k in sorted(cond)]
        h = self.inp(torch.cat(parts, 1))
        if self.label is not None:
            labels = torch.full((x.shape[0],), self.num_classes) if y is None else y
            h = h + self.label(labels.to(x.device))
        return self.out(h)


@pytest.fixture(autouse=True)
def _registered():
    register_net("test-cond-net", CondNet, replace=True)
    register_dataset("test-windows", _windows, options=("observed",), replace=True)
    yield
    unregister_dataset("test-windows")
    NETS.pop("test-cond-net", None)


def _windows(request: DataRequest) -> TrainingSet:
    """Rows of D values; the first ``observed`` are given as the condition ``obs`` and masked
    out of the loss (imputation: the model learns the rest given them); labels = row parity
    of a seeded draw; ``returns`` a float condition whose null value is 0."""
    k = int(request.options.get("observed", 2))
    g = torch.Generator().manual_seed(request.seed)
    n = request.n_data or N
    labels = torch.randint(3, (n,), generator=g)
    x = torch.randn(n, D, generator=g) + labels[:, None].float()
    mask = torch.ones(n, D)
    mask[:, :k] = 0.0
    returns = torch.rand(n, 1, generator=g) + 1.0  # in [1, 2): never the null value 0
    return TrainingSet(
        x, cond={"obs": x[:, :k].clone(), "returns": returns}, mask=mask,
        null={"obs": 0.0, "returns": 0.0}, labels=labels, net_options={"cond_dim": k + 1},
    )  # fmt: skip


def _config(**changes) -> TrainConfig:
    values = {
        "data": "test-windows", "n_data": N, "normalize": False, "net": "test-cond-net",
        "net_options": {"hidden": 16}, "batch_size": 64, "steps": 12, "warmup": 3,
        "log_every": 4, "save_every": 6, "lr": 3e-3, "ema_decay": 0.9,
    }  # fmt: skip
    return TrainConfig(**{**values, **changes})


# --------------------------------------------------------------------------- config
def test_class_dropout_is_cond_dropout_y() -> None:
    cfg = load_config("digits-ddpm-cond")
    assert cfg.class_dropout == 0.1 and cfg.cond_dropout == {}
    assert cfg.condition_dropout() == {"y": 0.1}
    # presets that do not use the new key keep their JSON form (and so their recipe hash)
    assert "cond_dropout" not in cfg.to_dict()
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    both = cfg.replace(class_dropout=0.0, cond_dropout={"y": 0.2, "returns": 0.25})
    assert both.condition_dropout() == {"returns": 0.25, "y": 0.2}
    assert TrainConfig.from_dict(both.to_dict()) == both
    with pytest.raises(ValueError, match="not both"):
        cfg.replace(cond_dropout={"y": 0.2})
    with pytest.raises(ValueError, match=r"cond_dropout\['returns'\]"):
        TrainConfig(cond_dropout={"returns": 1.5})


def test_unknown_data_options_name_the_dataset() -> None:
    with pytest.raises(ValueError, match="unknown data_options 'sise' for dataset 'digits'"):
        load_config("digits-ddpm", data_options={"sise": 16})
    with pytest.raises(ValueError, match="for dataset 'moons'"):
        load_config("toy-moons", data_options={"size": 16})
    _config(data_options={"observed": 3})  # a registered dataset's own option


# --------------------------------------------------------------------------- conditions
def test_labels_and_conditions_reach_the_net_through_cond(tmp_path: Path) -> None:
    trainer = Trainer(_config(class_conditional=True), tmp_path, progress=False)
    net = trainer.model.net
    assert net.num_classes == 3 and net.cond_dim == 3  # filled from labels / net_options
    seen: dict = {}

    def spy(module: nn.Module, args: tuple, kwargs: dict) -> None:
        seen.update(x0=args[0].clone(), cond={k: v.clone() for k, v in kwargs["cond"].items()},
                    mask=kwargs["mask"].clone())  # fmt: skip

    trainer._loss_module.register_forward_pre_hook(spy, with_kwargs=True)
    trainer.train_step(1)
    assert set(net.seen) == {"y", "obs", "returns"}
    for key in ("y", "obs", "returns"):
        assert torch.equal(net.seen[key], seen["cond"][key])
    # the rows agree: the labels and observations belong to the drawn examples
    rows = [int((trainer.data == row).all(1).nonzero()[0]) for row in seen["x0"]]
    assert torch.equal(seen["cond"]["y"], trainer.labels[rows])
    assert torch.equal(seen["cond"]["obs"], seen["x0"][:, :2])
    assert torch.equal(seen["mask"], trainer.training_set.mask[rows])


def test_cond_dropout_frequency_and_null_values(tmp_path: Path) -> None:
    cfg = _config(class_conditional=True, class_dropout=0.5, cond_dropout={"returns": 0.25},
                  batch_size=4000)  # fmt: skip
    trainer = Trainer(cfg, tmp_path, progress=False)
    assert trainer.cond_dropout == {"returns": 0.25, "y": 0.5}
    batch = trainer.next_batch()
    null_y = batch.cond["y"] == 3  # the null class is num_classes
    null_r = (batch.cond["returns"] == 0.0).all(1)
    # binomial(4000, p): 4 standard deviations are 0.032 (p = 1/2) and 0.027 (p = 1/4)
    assert abs(float(null_y.double().mean()) - 0.5) < 0.032
    assert abs(float(null_r.double().mean()) - 0.25) < 0.028
    assert bool((batch.cond["y"][~null_y] < 3).all())
    assert bool((batch.cond["returns"][~null_r] >= 1.0).all())
    # "obs" is not dropped; the two keys drop independently (P(both) ~ 1/8)
    assert torch.equal(batch.cond["obs"], batch.x0[:, :2])
    assert abs(float((null_y & null_r).double().mean()) - 0.125) < 0.021
    with pytest.raises(ValueError, match="no such condition"):
        Trainer(_config(cond_dropout={"text": 0.1}), tmp_path / "x", progress=False)


def test_flip_is_a_transform_on_the_batch_generator_stream() -> None:
    x = torch.randn(16, 1, 4, 4)
    mask = (torch.arange(4) < 1).float().expand(16, 1, 4, 4)
    data = TrainingSet(x, mask=mask, transforms=[RandomFlip()])
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    idx = torch.randint(16, (8,), generator=g1)
    batch = data.batch(idx, g1)
    assert torch.equal(torch.randint(16, (8,), generator=g2), idx)
    expected = random_flip(x[idx], g2)  # the trainer's former flip: same draws, same result
    assert torch.equal(batch.x0, expected)
    flipped = ~torch.isclose(batch.x0, x[idx]).all(-1).all(-1).all(-1)
    assert torch.equal(batch.mask[flipped], mask[idx][flipped].flip(-1))
    assert torch.equal(batch.mask[~flipped], mask[idx][~flipped])
    assert torch.equal(g1.get_state(), g2.get_state())


# --------------------------------------------------------------------------- the loss mask
class Elementwise(nn.Module):
    """eps_theta = a * x_t + b, one (a, b) per coordinate; NaN where ``poison`` is set."""

    def __init__(self, dim: int):
        super().__init__()
        self.a = nn.Parameter(torch.linspace(0.5, 1.5, dim))
        self.b = nn.Parameter(torch.linspace(-0.2, 0.2, dim))
        self.poison: Tensor | None = None

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        out = self.a * x + self.b
        if self.poison is not None:
            out = torch.where(self.poison, torch.full_like(out, float("nan")), out)
        return out


def _model() -> DiffusionModel:
    return DiffusionModel(Elementwise(D), make_process("vp-linear"), "eps")


def _hand_loss(model: DiffusionModel, x0: Tensor, mask: Tensor, seed: int) -> Tensor:
    """sum(m l) / sum(m) per example (0 for an empty mask), then the mean over the batch."""
    g = torch.Generator().manual_seed(seed)
    process = model.process
    t, _ = UniformTime(process.t_min, process.t_max).sample(x0.shape[0], generator=g)
    eps = torch.randn(x0.shape, generator=g)
    x_t = process.marginal(x0, t, eps)
    err = (model.net(x_t, t) - eps) ** 2
    per = []
    for i in range(x0.shape[0]):
        m = mask[i]
        per.append((m * err[i]).sum() / m.sum() if m.sum() > 0 else torch.zeros(()))
    return torch.stack(per).mean()


def _loss(model: DiffusionModel, x0: Tensor, mask: Tensor | None, seed: int, **kw) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return diffusion_loss(model, x0, generator=g, mask=mask, **kw)


def test_masked_loss_matches_a_hand_computation() -> None:
    torch.manual_seed(0)
    model = _model()
    x0 = torch.randn(8, D)
    mask = (torch.rand(8, D) < 0.6).float()
    mask[3] = 0.0  # an example with nothing to learn from
    mask[5] = 1.0
    loss = _loss(model, x0, mask, seed=1)
    hand = _hand_loss(model, x0, mask, seed=1)
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss, hand, rtol=1e-6, atol=0)
    per = _loss(model, x0, mask, seed=1, reduce="none")
    assert per[3] == 0.0 and torch.isfinite(per).all()
    # an all-ones mask is the unmasked loss, exactly
    ones = _loss(model, x0, torch.ones(8, D), seed=1)
    torch.testing.assert_close(ones, _loss(model, x0, None, seed=1), rtol=1e-6, atol=0)
    # an all-zero mask: loss 0, gradients 0, no NaN
    zero = _loss(model, x0, torch.zeros(8, D), seed=1)
    zero.backward()
    assert zero == 0.0 and all(torch.equal(p.grad, torch.zeros_like(p)) for p in
                               model.parameters())  # fmt: skip


def test_masked_entries_affect_neither_loss_nor_gradients() -> None:
    torch.manual_seed(0)
    model = _model()
    x0 = torch.randn(8, D)
    mask = torch.ones(8, D)
    mask[:, :2] = 0.0  # coordinates 0 and 1 never count
    loss = _loss(model, x0, mask, seed=2)
    loss.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    assert all(torch.equal(g[:2], torch.zeros(2)) for g in grads)
    assert all(bool((g[2:] != 0).all()) for g in grads)
    # the network's output at masked entries is irrelevant, even NaN
    model.zero_grad()
    model.net.poison = (mask == 0)
    poisoned = _loss(model, x0, mask, seed=2)
    poisoned.backward()
    assert torch.equal(poisoned, loss)
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads, strict=True))
    # so is the data there: the network is elementwise, x0 enters only where it counts
    x1 = x0.clone()
    x1[:, :2] = 1e6
    model.net.poison = None
    assert torch.equal(_loss(model, x1, mask, seed=2), loss.detach())


def test_mask_checks_and_the_likelihood_sum() -> None:
    model = _model()
    x0 = torch.randn(4, D)
    with pytest.raises(ValueError, match="does not broadcast"):
        _loss(model, x0, torch.ones(4, D + 1), seed=0)
    with pytest.raises(ValueError, match=">= 0"):
        _loss(model, x0, -torch.ones(4, D), seed=0)
    with pytest.raises(ValueError, match="finite"):
        _loss(model, x0, torch.full((4, D), float("nan")), seed=0)
    with pytest.raises(ValueError, match="finite and >= 0"):  # a dataset's mask, checked once
        TrainingSet(x0, mask=torch.tensor([1.0, -1.0, 1.0, 1.0])[:, None])
    with pytest.raises(ValueError, match="not supported"):
        _loss(model, x0, torch.ones(4, D), seed=0, weighting="vlb")
    # likelihood weighting sums over dimensions: the masked sum of the kept dimensions
    half = torch.ones(4, D)
    half[:, D // 2:] = 0.0
    kept = _loss(model, x0, half, seed=0, weighting="likelihood", reduce="none")
    rest = _loss(model, x0, 1 - half, seed=0, weighting="likelihood", reduce="none")
    full = _loss(model, x0, None, seed=0, weighting="likelihood", reduce="none")
    torch.testing.assert_close(kept + rest, full)
    # a per-row mask broadcasts over the coordinates
    rows = torch.tensor([1.0, 0.0, 1.0, 1.0])[:, None]
    per = _loss(model, x0, rows, seed=0, reduce="none")
    assert per[1] == 0.0
    torch.testing.assert_close(per[[0, 2, 3]], _loss(model, x0, None, seed=0, reduce="none")[
        [0, 2, 3]])  # fmt: skip


# --------------------------------------------------------------------------- end to end
def test_registered_dataset_with_cond_and_mask_trains_and_resumes(tmp_path: Path) -> None:
    cfg = _config(class_conditional=True, cond_dropout={"returns": 0.2}, class_dropout=0.1)
    full = Trainer(cfg, tmp_path / "full", progress=False)
    summary = full.fit()
    assert summary["step"] == 12 and summary["loss"] == summary["loss"]  # finite, not NaN
    part = Trainer(cfg.replace(steps=6), tmp_path / "part", progress=False)
    part.fit()
    resumed = Trainer(cfg, tmp_path / "part", progress=False)
    resumed.fit(resume=True)
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values(),
                    strict=True):  # fmt: skip
        assert torch.equal(a, b)
    model, loaded, _ = load_run(tmp_path / "full")
    assert isinstance(model.net, CondNet) and model.net.cond_dim == 3
    assert loaded.condition_dropout() == {"returns": 0.2, "y": 0.1}


def test_a_training_set_can_be_passed_directly(tmp_path: Path) -> None:
    data = _windows(DataRequest("test-windows", {"observed": 1}, 256, 0))
    trainer = Trainer(_config(steps=4, save_every=0), tmp_path, progress=False, data=data)
    trainer.fit()
    batch = trainer.next_batch()
    assert isinstance(batch, Batch) and batch.mask is not None
    assert torch.equal(batch.mask[:, 0], torch.zeros(64)) and trainer.model.net.cond_dim == 2
