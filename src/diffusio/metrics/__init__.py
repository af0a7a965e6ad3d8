"""Sample-quality metrics: two-sample distances with their noise floor.

* :func:`sliced_wasserstein` (Rabin et al. 2011; Bonneel et al. 2015)
* :func:`mmd` (unbiased MMD^2, Gretton et al. 2012)
* :func:`energy_distance` (Székely & Rizzo 2013)
* :func:`with_noise_floor` -- a metric next to its value between exact sample sets.
"""

from .distances import energy_distance, mmd, sliced_wasserstein, with_noise_floor

__all__ = ["energy_distance", "mmd", "sliced_wasserstein", "with_noise_floor"]
