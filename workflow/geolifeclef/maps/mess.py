"""Where a map extrapolates: the multivariate environmental similarity surface (MESS).

MESS (Elith, Kearney & Phillips 2010, Methods Ecol. Evol. 1:330; dismo's ``mess``) of a
point against reference points: for each variable, with f the percentage of reference
values below the point's value p, min/max the reference range,

* f = 0: 100 (p - min) / (max - min)  (negative: below every reference value)
* 0 < f <= 50: 2 f;  50 <= f < 100: 2 (100 - f)
* f = 100: 100 (max - p) / (max - min)  (negative: above every reference value)

and the point's MESS is the smallest of these over the variables: negative where at
least one variable lies outside the range the model was trained on (the model
extrapolates there), up to 100 at the median of every variable.

One MESS map per region (``results/mess/{region}.tif``), against the env values of the
region's train observations over the 27 env variables, on the grid of the maps
(``maps.resolution``): it depends on the training data and the variables, not on the
model, and every mappable model that reads env values reads all 27 (a model that reads
coordinates only, e.g. ``knn``, does not extrapolate in env: its hatching says where the
conditions are unlike the training data all the same). Variables a cell has no value for
(NaN) are left out of its minimum.
"""

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
from rasterio.windows import Window

from geolifeclef.atomic import atomic_path
from geolifeclef.data.env_table import extract_environment
from geolifeclef.layout import ENV_VARIABLES, DatasetLayout
from geolifeclef.maps.render import NODATA, TILE, MapGrid, geotiff_profile
from geolifeclef.settings.maps import MessSettings

log = logging.getLogger(__name__)


class MessReference:
    """The sorted reference values of each variable (NaN dropped), to score points."""

    def __init__(self, reference: np.ndarray, names: list[str] | None = None) -> None:
        reference = np.asarray(reference, dtype=np.float64)
        self.names = names or [f"variable {i}" for i in range(reference.shape[1])]
        self.sorted = [np.sort(c[~np.isnan(c)]) for c in reference.T]
        empty = [n for n, c in zip(self.names, self.sorted, strict=True) if not len(c)]
        if empty:
            raise ValueError(f"MESS: no reference value of {', '.join(empty)}")

    def similarity(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(MESS (m,), index of the most dissimilar variable (m,), -1 where a point has no
        value) of points (m, variables)."""
        points = np.asarray(points, dtype=np.float64)
        scores = np.full(points.shape, np.inf)
        for j, values in enumerate(self.sorted):
            p = points[:, j]
            low, high = values[0], values[-1]
            span = high - low if high > low else 1.0
            f = 100.0 * np.searchsorted(values, p, side="left") / len(values)
            # At the minimum itself f = 0 and 2 f = 0: on the edge, not beyond it.
            s = np.where(f <= 50, 2 * f, 2 * (100 - f))
            s = np.where(p < low, 100 * (p - low) / span, s)
            s = np.where(p > high, 100 * (high - p) / span, s)
            scores[:, j] = np.where(np.isnan(p), np.inf, s)
        least = np.argmin(scores, axis=1)
        mess = scores[np.arange(len(points)), least]
        none = ~np.isfinite(mess)
        mess[none] = np.nan
        least[none] = -1
        return mess, least


def mess(reference: np.ndarray, points: np.ndarray) -> np.ndarray:
    """MESS of each point (m, v) against the reference values (n, v) (module docstring)."""
    return MessReference(reference).similarity(points)[0]


def train_reference(
    train: pd.DataFrame, env: pd.DataFrame, region: str, settings: MessSettings
) -> MessReference:
    """The env values of the region's train observations (the env table's rows of them)."""
    ids = train.loc[train["region"] == region, "observation_id"]
    values = env.set_index("observation_id").loc[ids, list(ENV_VARIABLES)].to_numpy(np.float64)
    columns = settings.columns
    return MessReference(values[:, columns], [ENV_VARIABLES[c] for c in columns])


def render_mess(
    reference: MessReference,
    columns: list[int],
    layout: DatasetLayout,
    grid: MapGrid,
    path: str | Path,
    workers: int = 1,
) -> dict:
    """Write the MESS of each land cell of ``grid`` (``NODATA`` off land) to ``path``,
    band by band; returns the share of land cells below 0 and, per variable, how many of
    them it is the most dissimilar of."""
    land_total = negative = 0
    blame = np.zeros(len(columns), dtype=np.int64)
    with (
        atomic_path(path) as temporary,
        rasterio.open(temporary, "w", **geotiff_profile(grid)) as out,
    ):
        for row in range(0, grid.height, TILE):
            rows = min(TILE, grid.height - row)
            latitude, longitude = grid.centres(row, row + rows)
            env, _ = extract_environment(
                layout, longitude, latitude, workers=workers, progress=False
            )
            land = ~np.isnan(env).all(axis=1)
            band = np.full(len(latitude), NODATA, dtype=np.float32)
            values, least = reference.similarity(env[land][:, columns])
            band[land] = np.nan_to_num(values, nan=NODATA)
            window = Window(0, row, grid.width, rows)
            out.write(band.reshape(rows, grid.width), 1, window=window)
            land_total += int(land.sum())
            below = values < 0
            negative += int(below.sum())
            blame += np.bincount(least[below], minlength=len(columns))
    summary = {
        "region": grid.region,
        "land_cells": land_total,
        "negative_share": negative / land_total if land_total else float("nan"),
        "most_dissimilar_where_negative": {
            reference.names[j]: int(n) for j, n in enumerate(blame) if n
        },
    }
    log.info(
        "MESS %s: %d land cells, %.1f%% outside the training conditions",
        grid.region,
        land_total,
        100 * summary["negative_share"],
    )
    return summary


def mess_path(results_dir: str | Path, region: str) -> Path:
    """Where the workflow keeps a region's MESS map (rule ``map_mess``)."""
    return Path(results_dir) / "mess" / f"{region}.tif"


def mess_at(path: str | Path, latitude: np.ndarray, longitude: np.ndarray) -> np.ndarray:
    """The MESS map's value at each point (its cell); NaN off land or off the map."""
    with rasterio.open(path) as dataset:
        rows, cols = rasterio.transform.rowcol(dataset.transform, longitude, latitude)
        rows, cols = np.asarray(rows), np.asarray(cols)
        inside = (rows >= 0) & (rows < dataset.height) & (cols >= 0) & (cols < dataset.width)
        values = np.full(len(rows), np.nan)
        data = dataset.read(1)
        values[inside] = data[rows[inside], cols[inside]]
    values[values == NODATA] = np.nan
    return values
