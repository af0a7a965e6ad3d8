"""Decision Diffuser (diffusio.control.decision_diffuser): return-to-go labels and their [0, 1]
scale, padded episode windows, inverse dynamics on a known linear map, the composed
classifier-free guidance's arithmetic, and a tiny training of both kinds with policies that act
on one observation or a batch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from diffusio.control import decision_diffuser as dd
from diffusio.control.datasets import OfflineDataset
from diffusio.core.parameterization import Prediction


def _dataset(lengths, state_dim=3, action_dim=2, seed=0):
    rng = np.random.default_rng(seed)
    n = sum(lengths)
    obs = rng.normal(size=(n, state_dim)).astype(np.float32)
    nxt = np.roll(obs, -1, axis=0)
    terminals = np.zeros(n, bool)
    terminals[np.cumsum(lengths) - 1] = True
    arrays = {"observations": obs, "next_observations": nxt,
              "actions": rng.uniform(-1, 1, (n, action_dim)).astype(np.float32),
              "rewards": np.ones(n, np.float32), "terminals": terminals,
              "timeouts": np.zeros(n, bool)}  # fmt: skip
    return OfflineDataset("fake.npz", arrays, {})


def test_returns_to_go_and_their_scale():
    bounds = [(0, 3), (3, 5)]
    rtg = dd.returns_to_go([1.0, 2.0, 3.0, 10.0, 20.0], bounds, gamma=0.5)
    np.testing.assert_allclose(rtg, [1 + 0.5 * (2 + 0.5 * 3), 2 + 1.5, 3, 10 + 10, 20])
    scale = dd.ReturnScale.fit(rtg)
    z = scale(rtg)
    assert z.min() == 0.0 and z.max() == 1.0
    np.testing.assert_allclose(scale.inverse(z), rtg)
    with pytest.raises(ValueError, match="low < high"):
        dd.ReturnScale(1.0, 1.0)


def test_windows_start_at_every_step_and_repeat_the_final_state():
    ds = _dataset([4, 2])
    w, starts = dd.episode_windows(ds, horizon=3)
    assert w.shape == (6, 3, 3) and starts.tolist() == [0, 1, 2, 3, 4, 5]
    obs, nxt = ds["observations"], ds["next_observations"]
    np.testing.assert_array_equal(w[0], obs[0:3])
    np.testing.assert_array_equal(w[3], [obs[3], nxt[3], nxt[3]])  # the last state, repeated
    np.testing.assert_array_equal(w[5], [obs[5], nxt[5], nxt[5]])
    wa, _ = dd.episode_windows(ds, horizon=3, kind="cond-diffuser")
    assert wa.shape == (6, 3, 5)
    np.testing.assert_array_equal(wa[3, :, :2], [ds["actions"][3], [0, 0], [0, 0]])
    np.testing.assert_array_equal(wa[3, :, 2:], w[3])
    with pytest.raises(ValueError, match="unknown kind"):
        dd.episode_windows(ds, 3, kind="diffuser")


def test_inverse_dynamics_recovers_a_linear_map():
    rng = np.random.default_rng(1)
    s, s2 = rng.uniform(-1, 1, (2000, 3)), rng.uniform(-1, 1, (2000, 3))
    m = rng.normal(size=(6, 2)) / 3
    a = np.concatenate([s, s2], 1) @ m
    net, info = dd.train_inverse_dynamics(s, s2, a, steps=1500, hidden=(64, 64), lr=3e-3,
                                          batch_size=128)  # fmt: skip
    t, t2 = rng.uniform(-0.9, 0.9, (200, 3)), rng.uniform(-0.9, 0.9, (200, 3))
    with torch.no_grad():
        pred = net(torch.tensor(t, dtype=torch.float32), torch.tensor(t2, dtype=torch.float32))
    truth = np.concatenate([t, t2], 1) @ m
    rmse = float(np.sqrt(np.mean((pred.numpy() - truth) ** 2)))
    assert rmse < 0.03 * float(truth.std()) + 0.01, rmse
    assert info["train_mse"] < 1e-3


class _Ctx:
    """A stub sampling context: eps(x, c) = x * (1 + sum(c)), eps(x, null) = x."""

    nfe = 0
    cond: dict = {}

    def evaluate(self, x, t, **cond):
        self.nfe += 1
        c = cond["returns"]
        factor = torch.where(torch.isnan(c), 0.0, c).sum(1) + 1.0
        return Prediction("eps", x * factor.view(-1, 1, 1), x, 0.8, 0.6)


def test_composed_guidance_arithmetic():
    x = torch.randn(2, 4, 3)
    t = torch.full((2,), 0.5)
    ctx = _Ctx()
    uncond = Prediction("eps", x.clone(), x, 0.8, 0.6)  # the sampler's (null) prediction
    one = dd.RowwiseComposedGuidance([{"returns": torch.full((2, 1), 2.0)}], 1.0)
    # s = 1 with one condition is the conditional model: eps(x, y) = 3 x
    torch.testing.assert_close(one(uncond, t, ctx).eps, 3 * x)
    # eq. 9: eps_u + s sum_i (eps_i - eps_u) = x + 1.5 (2 x + 1 x), scale per row allowed
    two = dd.RowwiseComposedGuidance([{"returns": torch.full((2, 1), 2.0)},
                               {"returns": torch.full((2, 1), 1.0)}], torch.tensor([1.5, 0.0]))  # fmt: skip
    ctx.nfe = 0
    got = two(uncond, t, ctx).eps
    torch.testing.assert_close(got[0], x[0] * (1 + 1.5 * 3))
    torch.testing.assert_close(got[1], x[1])
    assert ctx.nfe == 2  # one batched call, counted per condition
    with pytest.raises(ValueError, match="at least one"):
        dd.RowwiseComposedGuidance([], 1.0)
    # with one scalar s it is the shared steering.ComposedGuidance with w_i = s
    from diffusio.core.steering import ComposedGuidance

    c1, c2 = {"returns": torch.full((2, 1), 2.0)}, {"returns": torch.full((2, 1), 0.5)}
    ctx.cond = {"returns": torch.full((2, 1), float("nan"))}
    shared = ComposedGuidance([(c1, 1.4), (c2, 1.4)])(uncond, t, ctx).eps
    torch.testing.assert_close(dd.RowwiseComposedGuidance([c1, c2], 1.4)(uncond, t, ctx).eps, shared)


@pytest.fixture(scope="module")
def skills_data(tmp_path_factory):
    pytest.importorskip("gymnasium")
    from diffusio.control.datasets import load_dataset, make_dataset

    out = tmp_path_factory.mktemp("dd-data") / "skills.npz"
    return load_dataset(make_dataset("point2d-skills", episodes=8, out=out, progress=False))


TINY = {"net_options": {"dim": 8, "dim_mults": [1, 2]}, "batch_size": 16,
        "process_options": {"num_steps": 5}, "log_every": 5}  # fmt: skip


def test_tiny_training_and_policies(skills_data, tmp_path):
    from diffusio.control.policies import load_policy

    run = tmp_path / "dd"
    _, info = dd.train_decision_diffuser(skills_data, run, condition="skills", horizon=4,
                                         steps=6, inverse_steps=20, progress=False, **TINY)  # fmt: skip
    assert info["skills"] == ["+x", "+y", "-x", "-y"] and info["cond_dim"] == 4
    assert (run / dd.DD_FILE).is_file() and (run / dd.INVERSE_FILE).is_file()
    policy = load_policy(run, skills=("+x", "+y"), guidance_scale=1.2, replan_every=2)
    assert policy.env == "point2d" and policy.kind == "decision-diffuser"
    policy.reset(3)
    a = policy.act(np.zeros(4))
    assert a.shape == (2,) and a.dtype == np.float32 and np.all(np.abs(a) <= 1.0)
    policy.reset(3)
    batch = policy.act(np.zeros((3, 4)))
    assert batch.shape == (3, 2) and len(policy.planning_seconds) == 2
    policy.act(np.zeros((3, 4)))  # the second step of the plan: no new plan
    assert len(policy.planning_seconds) == 2
    with pytest.raises(ValueError, match="name the skills"):
        load_policy(run, skills="+z")
    # a finished run is reused, not retrained
    _, again = dd.train_decision_diffuser(skills_data, run, condition="skills", horizon=4,
                                          steps=6, inverse_steps=20, progress=False, **TINY)  # fmt: skip
    assert again["inverse"] == info["inverse"]

    cond_run = tmp_path / "cond"
    dd.train_decision_diffuser(skills_data, cond_run, kind="cond-diffuser", condition="skills",
                               horizon=4, steps=6, progress=False, **TINY)  # fmt: skip
    cond = load_policy(cond_run, skills="+y", sampler="ddim", steps=3)
    assert cond.kind == "cond-diffuser" and cond.inverse is None
    result = dd.evaluate_batched(cond, "point2d", 3, seed=0, batch=2,
                                 env_options={"skill": "+y"})  # fmt: skip
    assert len(result["episodes"]) == 3 and all(r["steps"] == 20 for r in result["episodes"])
    assert math.isfinite(result["return_mean"]) and len(result["episodes"][0]["end"]) == 2


def test_return_model_plans_start_at_the_state(tmp_path):
    ds = _dataset([12, 10, 9], state_dim=4)
    ds.manifest["env"] = "point2d"
    _, info = dd.train_decision_diffuser(ds, tmp_path / "r", horizon=4, steps=4,
                                         inverse_steps=5, progress=False, **TINY)  # fmt: skip
    assert info["condition"] == "returns" and set(info["return_scale"]) == {"low", "high"}
    policy = dd.decision_diffuser_policy(tmp_path / "r", guidance_scale=[0.0, 1.2], target=1.0)
    state = np.array([[0.1, 0.2, 0.0, 0.0], [-0.3, 0.1, 0.0, 0.0]])
    plans = policy.planner.plan(state, policy.conditions, np.array([0.0, 1.2]), seed=0)
    assert plans.shape == (2, 4, 4)
    np.testing.assert_allclose(plans[:, 0], state, atol=1e-5)  # inpainted index 0
    with pytest.raises(ValueError, match="give target, not skills"):
        dd.decision_diffuser_policy(tmp_path / "r", skills="+x")


def test_window_coder_round_trips_both_frames():
    rng = np.random.default_rng(2)
    w = rng.normal(size=(50, 5, 3)).cumsum(1)
    for frame in dd.FRAMES:
        coder = dd.WindowCoder.fit(frame, w, 0)
        z = coder.encode(w)
        assert z.min() >= -1 - 1e-9 and z.max() <= 1 + 1e-9
        np.testing.assert_allclose(coder.decode(z, w[:, 0]), w, atol=1e-9)
        np.testing.assert_allclose(coder.first(w[:, 0], 5), z[:, 0], atol=1e-9)
        again = dd.WindowCoder.from_info({"kind": "decision-diffuser", "action_dim": 2,
                                          **coder.state_dict()})  # fmt: skip
        np.testing.assert_allclose(again.encode(w), z)
    rel = dd.WindowCoder.fit("relative", w, 0)
    # index 0 is the state itself (its range), later steps the change since it
    np.testing.assert_allclose(rel.window_limits.low[:3], w[:, 0].min(0))
    np.testing.assert_allclose(rel.window_limits.high[3:6], (w[:, 1] - w[:, 0]).max(0))
    with pytest.raises(ValueError, match="unknown frame"):
        dd.WindowCoder.fit("polar", w, 0)


@pytest.mark.parametrize("frame", dd.FRAMES)
def test_known_conditioning_trains_and_plans_from_the_clean_state(tmp_path, frame):
    ds = _dataset([12, 10, 9], state_dim=4)
    ds.manifest["env"] = "point2d"
    run = tmp_path / frame
    _, info = dd.train_decision_diffuser(ds, run, horizon=4, steps=3, inverse_steps=5,
                                         frame=frame, progress=False, **TINY)  # fmt: skip
    assert info["conditioning"] == "known" and info["frame"] == frame
    assert not info["state_condition"] and ("window_limits" in info) == (frame == "relative")
    policy = dd.decision_diffuser_policy(run, guidance_scale=1.2)
    assert policy.planner.known
    seen = []
    net = policy.planner.model.net
    hook = net.register_forward_pre_hook(lambda m, a, k: seen.append(k.get("known")),
                                         with_kwargs=True)  # fmt: skip
    state = np.array([[0.1, 0.2, 0.0, 0.0], [-0.3, 0.1, 0.0, 0.0]])
    plans = policy.planner.plan(state, policy.conditions, 1.2, seed=0)
    hook.remove()
    np.testing.assert_allclose(plans[:, 0], state, atol=1e-5)
    known = seen[0]
    assert known is not None and bool(torch.isfinite(known[:, 0]).all())
    assert bool(torch.isnan(known[:, 1:]).all())
    err = dd.plan_step_error(policy, state, state + 0.01, np.zeros((2, 2)), scale=1.2)
    assert err["rows"] == 2 and math.isfinite(err["ratio_median"])
    assert math.isfinite(err["action_rmse_planned"])


def test_known_entries_mask_the_first_state_out_of_the_loss():
    from diffusio.control.diffuser import KnownEntries
    from diffusio.data.batch import Batch

    x0 = torch.randn(3, 4, 5)
    out = KnownEntries(2, steps=(0,))(Batch(x0=x0, cond={}), torch.Generator())
    torch.testing.assert_close(out.cond["known"][:, 0, 2:], x0[:, 0, 2:])
    assert bool(torch.isnan(out.cond["known"][:, 0, :2]).all())
    assert bool(torch.isnan(out.cond["known"][:, 1:]).all())
    assert float(out.mask[:, 0, 2:].sum()) == 0 and float(out.mask[:, 1:].min()) == 1
