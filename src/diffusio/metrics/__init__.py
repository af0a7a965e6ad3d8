"""Sample-quality metrics: two-sample distances with their noise floor.

* :func:`sliced_wasserstein` (Rabin et al. 2011; Bonneel et al. 2015)
* :func:`mmd` (unbiased MMD^2, Gretton et al. 2012)
* :func:`energy_distance` (Székely & Rizzo 2013)
* :func:`with_noise_floor` -- a metric next to its value between exact sample sets.
* :func:`data_nll` -- probability-flow ODE NLL in the data's own units (normalization undone).
"""

from .distances import energy_distance, mmd, sliced_wasserstein, with_noise_floor
from .likelihood import data_nll, mean_and_stderr

__all__ = [
    "data_nll",
    "energy_distance",
    "mean_and_stderr",
    "mmd",
    "sliced_wasserstein",
    "with_noise_floor",
]
