"""Species distribution maps: a model evaluated on a regular grid over a region.

The grid (:class:`MapGrid`) has ``resolution``-degree cells over the union of the extents
of the region's 27 rasters, north-up in EPSG:4326. A cell is *land* when at least one
raster has a value at its centre (the sea and the land beyond the rasters are nodata). The
env values of the cell centres are read from the rasters exactly as for observations
(``env_table.extract_environment``: pixel containing the point), then a
:class:`~geolifeclef.maps.point_models.PointModel` gives every species' probability there.

:func:`render_maps` goes through the grid one band of ``TILE`` rows at a time (the
GeoTIFF tile height, so every compressed tile is written once) and predicts the land cells
of a band ``chunk_cells`` at a time (``MapSettings.chunk_mb`` of probabilities), keeping
only the mapped species' columns and the richness: memory is a band of the grid plus one
chunk, whatever the grid and the number of species (never a dense cells x species array).

Outputs of a (model, region), in one folder: ``species_<id>.tif`` (the predicted
probability of that species, float32, tiled, deflate-compressed, ``NODATA`` off land) for
each mapped species, and ``richness.tif``: the *effective number of species*, the inverse
Simpson index 1 / sum_s p_s^2 of the predicted distribution. A model predicts which
species one observation at a place is, not which species live there, so a count of
"present" species would need a threshold that means something different for every model's
calibration; the inverse Simpson number is the number of equally likely species that
would give the same chance that two observations are of one species. It ignores the
long tail of tiny probabilities (which a softmax never sets to 0, and a forest often
does), so models of any kind are comparable, and the demo's truth has one too.
"""

import contextlib
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window
from tqdm import tqdm

from geolifeclef.data.class_frequency import BUCKETS
from geolifeclef.data.env_table import extract_environment
from geolifeclef.data.rasters import open_raster
from geolifeclef.errors import InputDataError
from geolifeclef.layout import ENV_VARIABLES, DatasetLayout
from geolifeclef.maps.point_models import PointModel
from geolifeclef.settings.maps import MapSettings

log = logging.getLogger(__name__)

NODATA = -9999.0
"""Value of the map GeoTIFFs off land (probabilities and richness are never negative)."""
TILE = 256
"""Side of the GeoTIFF tiles, and rows of the grid predicted per band."""
RICHNESS = "richness"


def species_file(species_id: int) -> str:
    """Name (without extension) of a species' map in a map folder."""
    return f"species_{int(species_id)}"


def species_of_file(name: str) -> int | None:
    """The species id of a map named by ``species_file``; None for the richness map."""
    return int(name.split("_", 1)[1]) if name.startswith("species_") else None


# --------------------------------------------------------------------------------------
# The grid
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MapGrid:
    """A north-up grid of ``resolution``-degree cells whose top-left corner is (west, north)."""

    region: str
    west: float
    north: float
    resolution: float
    width: int
    height: int

    @property
    def transform(self) -> rasterio.Affine:
        return from_origin(self.west, self.north, self.resolution, self.resolution)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) of the whole grid."""
        east = self.west + self.width * self.resolution
        return self.west, self.north - self.height * self.resolution, east, self.north

    @property
    def cells(self) -> int:
        return self.width * self.height

    def centres(self, row_start: int, row_stop: int) -> tuple[np.ndarray, np.ndarray]:
        """(latitude, longitude) of the centres of rows ``row_start:row_stop``, row-major."""
        rows, cols = np.mgrid[row_start:row_stop, 0 : self.width]
        latitude = self.north - (rows.ravel() + 0.5) * self.resolution
        longitude = self.west + (cols.ravel() + 0.5) * self.resolution
        return latitude, longitude


def region_bounds(layout: DatasetLayout, region: str) -> tuple[float, float, float, float]:
    """(west, south, east, north): the union of the extents of the region's 27 rasters."""
    boxes = []
    for variable in ENV_VARIABLES:
        with open_raster(layout.raster(variable, region)) as dataset:
            boxes.append(tuple(dataset.bounds))
    west, south, east, north = np.array(boxes).T
    return float(west.min()), float(south.min()), float(east.max()), float(north.max())


def map_grid(layout: DatasetLayout, region: str, resolution: float) -> MapGrid:
    """The grid of ``resolution``-degree cells covering the region's rasters."""
    if not resolution > 0:
        raise ValueError(f"maps.resolution must be positive, got {resolution}")
    west, south, east, north = region_bounds(layout, region)
    # A tolerance so that an extent that is a whole number of cells gets no extra column.
    width = max(1, math.ceil((east - west) / resolution - 1e-6))
    height = max(1, math.ceil((north - south) / resolution - 1e-6))
    return MapGrid(region, west, north, resolution, width, height)


# --------------------------------------------------------------------------------------
# Which species
# --------------------------------------------------------------------------------------


def choose_species(species: pd.DataFrame, region: str, settings: MapSettings) -> list[int]:
    """The species to map in ``region``: ``settings.species`` when given, else, for each
    frequency bucket, ``per_bucket`` species of those with train observations in the region,
    evenly spread over their ranks (e.g. at the 25th and 75th percentile for 2)."""
    if settings.species is not None:
        unknown = sorted(set(settings.species) - set(species["species_id"].tolist()))
        if unknown:
            raise ValueError(
                f"maps.species: {unknown} are not in metadata/species_details.csv; "
                "list species ids of the dataset"
            )
        return list(settings.species)
    count = f"train_{region}"
    chosen = []
    for bucket in BUCKETS:
        candidates = species[(species["bucket"] == bucket) & (species[count] > 0)]
        candidates = candidates.sort_values([count, "species_id"], ascending=[False, True])
        n = min(settings.per_bucket, len(candidates))
        positions = ((np.arange(n) + 0.5) * len(candidates) / max(n, 1)).astype(int)
        chosen += candidates["species_id"].iloc[positions].astype(int).tolist()
    return chosen


# --------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------


def geotiff_profile(grid: MapGrid) -> dict:
    """float32, EPSG:4326, tiled, deflate with the floating-point predictor, NODATA."""
    return {
        "driver": "GTiff",
        "dtype": "float32",
        "count": 1,
        "width": grid.width,
        "height": grid.height,
        "crs": "EPSG:4326",
        "transform": grid.transform,
        "nodata": NODATA,
        "tiled": True,
        "blockxsize": TILE,
        "blockysize": TILE,
        "compress": "deflate",
        "predictor": 3,
    }


def inverse_simpson(probabilities: np.ndarray) -> np.ndarray:
    """Effective number of species 1 / sum_s p_s^2 of each row (see the module docstring)."""
    p = np.asarray(probabilities, dtype=np.float64)
    return 1.0 / np.einsum("ij,ij->i", p, p)


@dataclass(frozen=True)
class RenderSummary:
    cells: int
    land_cells: int
    seconds: float

    @property
    def cells_per_second(self) -> float:
        return self.land_cells / self.seconds if self.seconds > 0 else float("nan")


def render_maps(
    model: PointModel,
    layout: DatasetLayout,
    grid: MapGrid,
    columns: dict[str, int],
    folder: str | Path,
    chunk_cells: int = 2000,
    workers: int = 1,
    progress: bool = True,
) -> RenderSummary:
    """Write the maps of ``model`` on ``grid`` into the existing ``folder``: ``<name>.tif``
    holding column ``columns[name]`` of the model's probabilities for each name, and
    ``richness.tif``. Env values are read from ``layout``'s rasters. (The caller makes the
    folder appear atomically, see ``maps.report.map_region``.)"""
    if chunk_cells < 1:
        raise ValueError(f"chunk_cells must be >= 1, got {chunk_cells}")
    names = [*columns, RICHNESS]
    profile = geotiff_profile(grid)
    started = time.perf_counter()
    land_total = 0
    with contextlib.ExitStack() as stack:
        files = {
            name: stack.enter_context(rasterio.open(Path(folder) / f"{name}.tif", "w", **profile))
            for name in names
        }
        bar = stack.enter_context(
            tqdm(total=grid.cells, unit="cell", desc=f"map {grid.region}", disable=not progress)
        )
        for row in range(0, grid.height, TILE):
            rows = min(TILE, grid.height - row)
            latitude, longitude = grid.centres(row, row + rows)
            env, _ = extract_environment(
                layout, longitude, latitude, workers=workers, progress=False
            )
            land = np.flatnonzero(~np.isnan(env).all(axis=1))
            band = {name: np.full(len(latitude), NODATA, dtype=np.float32) for name in names}
            for start in range(0, len(land), chunk_cells):
                cells = land[start : start + chunk_cells]
                p = model.probabilities(latitude[cells], longitude[cells], env[cells])
                if not np.isfinite(p).all():
                    raise ValueError(
                        f"{model.name} gives non-finite probabilities at "
                        f"{int((~np.isfinite(p)).any(axis=1).sum())} land cells of {grid.region}"
                    )
                for name, column in columns.items():
                    band[name][cells] = p[:, column]
                band[RICHNESS][cells] = inverse_simpson(p)
            for name, values in band.items():
                files[name].write(
                    values.reshape(rows, grid.width), 1, window=Window(0, row, grid.width, rows)
                )
            land_total += len(land)
            bar.update(len(latitude))
    summary = RenderSummary(grid.cells, land_total, time.perf_counter() - started)
    log.info(
        "%s on %s: %d x %d cells, %d on land, %.1f s (%.0f land cells/s)",
        model.name,
        grid.region,
        grid.width,
        grid.height,
        land_total,
        summary.seconds,
        summary.cells_per_second,
    )
    return summary


# --------------------------------------------------------------------------------------
# Comparing maps
# --------------------------------------------------------------------------------------


def read_map(path: str | Path, max_side: int | None = None) -> tuple[np.ma.MaskedArray, tuple]:
    """A map GeoTIFF as a masked array (masked off land) and its (west, south, east, north),
    decimated (nearest cell) to at most ``max_side`` cells a side when given."""
    with rasterio.open(path) as dataset:
        shape = (dataset.height, dataset.width)
        if max_side is not None and max(shape) > max_side:
            factor = max(shape) / max_side
            shape = (max(1, round(shape[0] / factor)), max(1, round(shape[1] / factor)))
        data = dataset.read(1, masked=True, out_shape=shape)
        return data, tuple(dataset.bounds)


def map_correlation(predicted: str | Path, truth: str | Path) -> float:
    """Pearson correlation of two maps of the same grid over the cells both have,
    streamed band by band (bounded memory); NaN when either map is constant there."""
    sums = np.zeros(6)  # n, x, y, xx, yy, xy
    with rasterio.open(predicted) as a, rasterio.open(truth) as b:
        if (a.transform, a.shape) != (b.transform, b.shape):
            raise InputDataError(
                truth,
                f"grid {b.shape} {tuple(b.transform)[:6]} differs from {predicted}'s "
                f"{a.shape} {tuple(a.transform)[:6]}",
                "map both on the same maps.resolution (rerun both rules)",
            )
        for row in range(0, a.height, TILE):
            window = Window(0, row, a.width, min(TILE, a.height - row))
            x = a.read(1, window=window, masked=True)
            y = b.read(1, window=window, masked=True)
            both = ~(np.ma.getmaskarray(x) | np.ma.getmaskarray(y))
            x, y = x.data[both].astype(np.float64), y.data[both].astype(np.float64)
            sums += [len(x), x.sum(), y.sum(), (x * x).sum(), (y * y).sum(), (x * y).sum()]
    n, sx, sy, sxx, syy, sxy = sums
    if n < 2:
        return float("nan")
    cov = sxy - sx * sy / n
    var_x, var_y = sxx - sx * sx / n, syy - sy * sy / n
    if var_x <= 1e-12 * max(sxx, 1e-300) or var_y <= 1e-12 * max(syy, 1e-300):
        return float("nan")
    return float(cov / math.sqrt(var_x * var_y))


def map_correlations(
    predicted: str | Path, truth: str | Path, names: Sequence[str]
) -> dict[str, float]:
    """``map_correlation`` of each named map of two map folders."""
    missing = [n for n in names if not (Path(truth) / f"{n}.tif").exists()]
    if missing:
        raise InputDataError(
            truth, f"no true map for {missing}", "rerun map_demo_truth (snakemake maps)"
        )
    return {
        n: map_correlation(Path(predicted) / f"{n}.tif", Path(truth) / f"{n}.tif") for n in names
    }
