"""``diffusio.oracle``: the exact Gaussian-mixture oracle (see :mod:`diffusio.core.oracle`)."""

from .core.oracle import GaussianMixture, OracleNet

__all__ = ["GaussianMixture", "OracleNet"]
