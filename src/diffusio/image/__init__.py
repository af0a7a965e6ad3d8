"""The image domain: sampling and evaluating image runs, and the classifiers guidance needs.

* :func:`sample_images` -- images from a trained (optionally class-conditional, guided) model.
* :func:`evaluate_run` / :func:`vlb_bits_per_dim` / :func:`ode_bits_per_dim` -- what
  ``diffusio eval RUN_DIR`` prints: classifier-feature FID with its noise floor, class histogram,
  confidence, and bits/dim from the variational bound and from the probability-flow ODE.
"""

from .evaluate import evaluate_run, ode_bits_per_dim, vlb_bits_per_dim
from .sampling import sample_images

__all__ = ["evaluate_run", "ode_bits_per_dim", "sample_images", "vlb_bits_per_dim"]
