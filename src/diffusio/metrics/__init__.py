"""Sample-quality metrics: two-sample distances with their noise floor.

* :func:`sliced_wasserstein` (Rabin et al. 2011; Bonneel et al. 2015)
* :func:`mmd` (unbiased MMD^2, Gretton et al. 2012)
* :func:`energy_distance` (Székely & Rizzo 2013)
* :func:`noise_floors` / :func:`with_noise_floor` -- metrics between exact sample sets (the
  noise floor, :class:`~diffusio.metrics.stats.NoiseFloor`).
* :func:`frechet_distance` and :class:`ImageEvaluator` -- FID (Heusel et al. 2017) in the
  feature space of a small classifier diffusio trains and caches (not Inception), with its
  noise floor, class histogram and confidence.
* :func:`nearest_distances`, :func:`memorisation`, :func:`precision_recall` -- nearest-neighbour
  checks of samples (copying; improved precision and recall).
* :func:`data_nll` -- probability-flow ODE NLL in the data's own units (normalization undone).
* Probabilistic forecasts (:mod:`~diffusio.metrics.probabilistic`): :func:`crps_ensemble` (exact
  and fair), :func:`crps_gaussian`, CSDI's :func:`crps_quantile` and :func:`crps_sum_quantile`,
  :func:`energy_score`, :func:`interval_coverage`, :func:`median_errors` (Gneiting & Raftery 2007;
  Tashiro et al. 2021).
"""

from .distances import (
    energy_distance,
    floor_draws,
    mmd,
    noise_floors,
    sliced_wasserstein,
    with_noise_floor,
)
from .fid import (
    FeatureClassifier,
    ImageEvaluator,
    feature_statistics,
    frechet_distance,
    load_classifier,
    train_classifier,
)
from .likelihood import data_nll, mean_and_stderr
from .neighbours import memorisation, nearest_distances, precision_recall
from .probabilistic import (
    CSDI_LEVELS,
    crps_ensemble,
    crps_gaussian,
    crps_quantile,
    crps_sum_quantile,
    energy_score,
    interval_coverage,
    median_errors,
    sample_quantiles,
)

__all__ = [
    "CSDI_LEVELS",
    "FeatureClassifier",
    "ImageEvaluator",
    "crps_ensemble",
    "crps_gaussian",
    "crps_quantile",
    "crps_sum_quantile",
    "data_nll",
    "energy_score",
    "energy_distance",
    "feature_statistics",
    "floor_draws",
    "frechet_distance",
    "interval_coverage",
    "load_classifier",
    "mean_and_stderr",
    "median_errors",
    "memorisation",
    "mmd",
    "nearest_distances",
    "noise_floors",
    "precision_recall",
    "sample_quantiles",
    "sliced_wasserstein",
    "train_classifier",
    "with_noise_floor",
]
