"""Shared test settings: one intra-op thread (small tensors on 2 cores run faster and with
less jitter that way) and the mixtures the exact tests use."""

import sys

import pytest
import torch

from diffusio.oracle import GaussianMixture

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def mixture() -> GaussianMixture:
    """Three well-separated 2-D modes with unequal weights and one anisotropic mode."""
    return GaussianMixture(
        means=[[-3.0, 0.0], [3.0, 0.0], [0.0, 4.0]],
        stds=[[0.5, 0.5], [0.4, 0.7], [0.6, 0.6]],
        weights=[0.5, 0.3, 0.2],
    )


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    """accelerate keeps process-wide singletons; reset them after any test that used it."""
    yield
    if "accelerate.state" in sys.modules:
        from accelerate.state import AcceleratorState, GradientState

        AcceleratorState._reset_state(True)
        GradientState._reset_state()


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory):
    """One diffusio cache (the FID classifiers) for the whole session, outside the user's
    ~/.cache: the digits classifier trains once per test session."""
    import os

    previous = os.environ.get("DIFFUSIO_CACHE")
    os.environ["DIFFUSIO_CACHE"] = str(tmp_path_factory.mktemp("diffusio-cache"))
    yield
    if previous is None:
        os.environ.pop("DIFFUSIO_CACHE", None)
    else:
        os.environ["DIFFUSIO_CACHE"] = previous


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory, _session_cache):
    """``smoke_run(name) -> (out_dir, metrics)``: the registered reproduction ``name`` run once
    per session with its ``SMOKE`` settings (quick + tiny overrides), shared by the contract
    test and the paper's own tests."""
    from diffusio.papers.base import get_reproduction

    done: dict = {}

    def run(name: str):
        if name not in done:
            cls = get_reproduction(name)
            settings = cls.settings(True, cls.SMOKE)
            out = tmp_path_factory.mktemp(name)
            metrics = cls.run(out, quick=True, settings=settings, progress=False)
            done[name] = (out, metrics)
        return done[name]

    return run
