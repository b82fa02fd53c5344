"""A survey's climate as the archive's files give it: monthly normals, the bioclimatic
monthly cube's years, and the 19 bioclimatic variables, in CHELSA-like integer units.

Both come from the same hidden fields (annual mean temperature, continentality, precipitation,
summer drought), so the values CSVs and the cubes agree, as the real ones do: the normals
are the 12 months of precipitation (mm x 100), mean, maximum and minimum temperature
(K x 10), in the cube's variable order pr, tas, tasmax, tasmin (GLC24-25-FORMAT §6).
"""

import numpy as np

CUBE_VARIABLES = ("pr", "tas", "tasmax", "tasmin")
BIOCLIM_YEARS = tuple(range(2000, 2019))
"""The bioclim cube's years (19)."""
BIO_COLUMNS = tuple(f"Bio{i}" for i in range(1, 20))


def monthly_normals(env: dict[str, np.ndarray]) -> np.ndarray:
    """(n, 4, 12) normals in the cube's units: pr (mm x 100), tas, tasmax, tasmin (K x 10).

    January is the coldest month and July the warmest, by half a range that grows with
    continentality; summer-dry places get their rain in winter, continental ones in summer.
    """
    month = np.arange(12)[None, :]
    wave = np.cos(2 * np.pi * month / 12)  # +1 in January, -1 in July
    temperature = env["temperature"][:, None]
    continentality = env["continentality"][:, None]
    half_range = 4 + 9 * continentality
    tas = temperature - half_range * wave
    diurnal = (6 + 4 * continentality + 3 * env["seasonality_p"][:, None]) * (1 - 0.25 * wave)
    winter_wet = np.clip(1.4 * (env["seasonality_p"][:, None] - 0.35), -0.6, 0.9)
    monthly = env["precipitation"][:, None] / 12
    pr = np.maximum(monthly * (1 + winter_wet * wave), 0.03 * monthly)
    kelvin = 273.15
    return np.stack(
        [
            100 * pr,
            10 * (tas + kelvin),
            10 * (tas + diurnal / 2 + kelvin),
            10 * (tas - diurnal / 2 + kelvin),
        ],
        axis=1,
    )


def _kelvin10(celsius: np.ndarray) -> np.ndarray:
    return 10 * (celsius + 273.15)


def _quarters(monthly: np.ndarray, reduce) -> np.ndarray:
    """(n, 12) rolling three-month windows (wrapping over the year end) of ``monthly``."""
    rolled = np.stack([np.roll(monthly, -k, axis=1) for k in range(3)], axis=0)
    return reduce(rolled, axis=0)


def bioclim_variables(normals: np.ndarray) -> np.ndarray:
    """(n, 19) Bio1..Bio19 from the normals (the WorldClim definitions), as CHELSA writes
    them: temperatures in K x 10, temperature ranges x 10, precipitation in mm x 10,
    percentages as percent; rounded to integers."""
    pr = normals[:, 0] / 100  # mm
    tas, tasmax, tasmin = (normals[:, k] / 10 - 273.15 for k in (1, 2, 3))  # deg C
    quarter_pr = _quarters(pr, np.sum)
    quarter_tas = _quarters(tas, np.mean)
    rows = np.arange(len(pr))

    def quarter_tas_where(index: np.ndarray) -> np.ndarray:
        return quarter_tas[rows, index]

    bio2 = (tasmax - tasmin).mean(axis=1)
    bio5, bio6 = tasmax.max(axis=1), tasmin.min(axis=1)
    bio7 = bio5 - bio6
    bio = np.stack(
        [
            _kelvin10(tas.mean(axis=1)),
            10 * bio2,
            100 * bio2 / np.maximum(bio7, 1e-6),
            100 * tas.std(axis=1),
            _kelvin10(bio5),
            _kelvin10(bio6),
            10 * bio7,
            _kelvin10(quarter_tas_where(quarter_pr.argmax(axis=1))),
            _kelvin10(quarter_tas_where(quarter_pr.argmin(axis=1))),
            _kelvin10(quarter_tas.max(axis=1)),
            _kelvin10(quarter_tas.min(axis=1)),
            10 * pr.sum(axis=1),
            10 * pr.max(axis=1),
            10 * pr.min(axis=1),
            100 * pr.std(axis=1) / np.maximum(pr.mean(axis=1), 1e-6),
            10 * quarter_pr.max(axis=1),
            10 * quarter_pr.min(axis=1),
            10 * quarter_pr[rows, quarter_tas.argmax(axis=1)],
            10 * quarter_pr[rows, quarter_tas.argmin(axis=1)],
        ],
        axis=1,
    )
    return np.round(bio)


def yearly_anomalies(rng: np.random.Generator) -> np.ndarray:
    """(2, 19, 12) the weather of each month of 2000-2018, shared by every survey (it was
    the same year everywhere): a temperature anomaly in K x 10 with a warming trend, and a
    precipitation factor."""
    years = len(BIOCLIM_YEARS)
    trend = 0.3 * (np.arange(years) - years / 2)[:, None]  # 0.03 K a year
    temperature = trend + rng.normal(0, 12, (years, 12))
    precipitation = rng.lognormal(-0.08, 0.4, (years, 12))
    return np.stack([temperature, precipitation])


def bioclim_cube(normals: np.ndarray, anomalies: np.ndarray, rng: np.random.Generator):
    """(4, 19, 12) float32 cube of one survey: its normals with the years' weather and a
    little local noise, rounded to integers as CHELSA's."""
    local = rng.normal(0, 3, anomalies.shape[1:])
    temperature_shift = (anomalies[0] + local)[None]
    cube = np.empty((4, *anomalies.shape[1:]))
    cube[0] = normals[0][None] * anomalies[1] * rng.lognormal(0, 0.1, anomalies.shape[1:])
    cube[1:] = normals[1:, None, :] + temperature_shift
    return np.round(cube).astype(np.float32)
