"""The toy (2-D) domain: the evaluation every toy reproduction, the oracle demo and the sampler
benchmark share.

* :mod:`~diffusio.toy.sweep` -- the sampler sweep: quality against NFE over samplers and step
  counts (:class:`SamplerRun`, :func:`sweep`), sampler paths (:func:`trajectories`);
* :mod:`~diffusio.toy.scorer` -- the toy scorer: SW / MMD^2 against exact samples with their
  noise floors (:func:`~diffusio.metrics.distances.noise_floors`), mode weights with standard
  errors, the mode chi-square with a bootstrap error, diverged and off-mode samples;
* :mod:`~diffusio.toy.score_error` -- a learned score against the exact oracle's;
* :mod:`~diffusio.toy.figures` -- their figures; :mod:`~diffusio.toy.demo` -- ``diffusio
  oracle-demo``.
"""

from ..metrics.distances import noise_floors
from .score_error import relative_score_error, score_errors, score_in_data_units
from .scorer import (
    chi2_stderr,
    discrepancy_parts,
    finite_rows,
    floor_scores,
    mode_chi2,
    mode_spread,
    mode_weight,
    off_mode_fraction,
    quality,
    two_sample_metrics,
    weight_row,
)
from .sweep import (
    SamplerRun,
    SweepResult,
    langevin,
    largest_per_family,
    run_sampler,
    sweep,
    trajectories,
)

__all__ = [
    "SamplerRun", "SweepResult", "chi2_stderr", "discrepancy_parts", "finite_rows",
    "floor_scores", "langevin",
    "largest_per_family", "mode_chi2", "mode_spread", "mode_weight", "noise_floors",
    "off_mode_fraction", "quality", "relative_score_error", "run_sampler", "score_errors",
    "score_in_data_units",
    "sweep", "trajectories", "two_sample_metrics", "weight_row",
]  # fmt: skip
