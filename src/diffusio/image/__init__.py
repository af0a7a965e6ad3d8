"""The image domain: sampling, scoring and evaluating image models, and the classifiers
guidance needs.

* :func:`sample_images` -- images from a trained model: plain, class-conditional,
  classifier-free guided (Ho & Salimans 2021) and classifier guided (Dhariwal & Nichol 2021);
  :func:`image_config` -- the image presets' training recipe with small-run overrides.
* :func:`noisy_classifier` -- the noise-aware classifier of a diffusion model's process,
  trained once and cached by its recipe (:mod:`diffusio.image.classifier`).
* :class:`Scorer`, :func:`guidance_sweep`, :func:`seed_spread` -- FID with its noise floor,
  accuracy of an independent clean classifier, precision / recall, guidance sweeps and the
  FID's seed noise (:mod:`diffusio.image.scoring`); the figures are in
  :mod:`diffusio.image.figures`.
* :func:`evaluate_run` / :func:`vlb_bits_per_dim` / :func:`ode_bits_per_dim` -- what
  ``diffusio eval RUN_DIR`` prints: classifier-feature FID with its noise floor, class histogram,
  confidence, and bits/dim from the variational bound and from the probability-flow ODE.
"""

from .classifier import NoisyClassifier, noisy_classifier
from .evaluate import evaluate_run, ode_bits_per_dim, vlb_bits_per_dim
from .sampling import balanced_labels, image_config, image_shape, sample_images
from .scoring import Scorer, guidance_sweep, seed_spread

__all__ = [
    "NoisyClassifier", "Scorer", "balanced_labels", "evaluate_run", "guidance_sweep",
    "image_config", "image_shape", "noisy_classifier", "ode_bits_per_dim", "sample_images",
    "seed_spread", "vlb_bits_per_dim",
]  # fmt: skip
