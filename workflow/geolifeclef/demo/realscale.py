"""A GLC 2022 environment at real scale, for the benchmarks and the full-count rehearsal:
54 rasters and 1.66 M points.

The demo generator (geolifeclef.demo) draws rasters in memory at one coarse resolution;
here the rasters have the real resolutions and are written block by block, so that any
machine can produce them:

* bioclimatic bio_1 .. bio_19: 30 arc-seconds (1/120 degree), float32, nodata -3.4e38;
* pedologic bdticm .. sndppt: 7.5 arc-seconds (1/480 degree, SoilGrids' "250 m"), int16,
  nodata -32768;

over the demo's extents of France (-5.5..10 E, 41..51.5 N) and the conterminous US
(-125..-66.5 E, 24..49.5 N): the US pedologic rasters are 28,080 x 12,240 pixels. Values
are smooth fields with pixel noise (so that LZW compresses them about as it does real
data), the sea is nodata. Files are LZW-compressed GeoTIFFs in GDAL's default layout
(strips) or tiled.

The points: 1,663,896 observations (the archive's count), 41 % in France as in the
archive, on land but for ~2 % near the coast (NaN values), written as the workflow's
observation tables (train/val/test Parquet with observation_id, latitude, longitude).
"""

import functools
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from geolifeclef.demo.spec import REGION_BOUNDS
from geolifeclef.demo.world import FLOAT_NODATA, INT_NODATA
from geolifeclef.layout import BIOCLIMATIC_VARIABLES, ENV_VARIABLES, REGION_DIGIT, DatasetLayout

BIO_RESOLUTION = 1 / 120
SOIL_RESOLUTION = 1 / 480
N_POINTS = 1_663_896
FR_SHARE = 0.41
"""France's share of the archive's observations (US train + val: 956,231 of 1,627,475)."""
ROWS_PER_WRITE = 512


def grid_of(variable: str, region: str, coarsening: int = 1) -> tuple[rasterio.Affine, int, int]:
    """(transform, height, width) of a variable's raster in a region; ``coarsening``
    multiplies the pixel size (tests: the same files, kilobytes instead of gigabytes)."""
    west, south, east, north = REGION_BOUNDS[region]
    res = BIO_RESOLUTION if variable in BIOCLIMATIC_VARIABLES else SOIL_RESOLUTION
    res *= coarsening
    width, height = int(round((east - west) / res)), int(round((north - south) / res))
    return from_origin(west, north, res, res), height, width


def _land_terms(region: str, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The land mask's score as a sum of six products of a term of longitude and a term of
    latitude: ``(terms of lon, terms of lat)``, each ``(6, *shape)``. Separable, so that a
    raster's grid takes its terms per column and per row and one small matrix product
    (sin(23u + 3v) and cos(17v - 5u) expanded), instead of the trigonometry per pixel."""
    west, south, east, north = REGION_BOUNDS[region]
    u = (lon - west) / (east - west) - 0.5
    v = (north - lat) / (north - south) - 0.5
    of_lon = [(u / 0.47) ** 2, np.ones_like(u), 0.08 * np.sin(23 * u), 0.08 * np.cos(23 * u)]
    of_lat = [np.ones_like(v), (v / 0.45) ** 2, np.cos(3 * v), np.sin(3 * v)]
    of_lon += [0.06 * np.cos(5 * u), 0.06 * np.sin(5 * u)]
    of_lat += [np.cos(17 * v), np.sin(17 * v)]
    return np.stack(of_lon), np.stack(of_lat)


def land_mask(region: str, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """An irregular ellipse of land in the region's box; the rest is sea."""
    of_lon, of_lat = _land_terms(region, np.asarray(lon), np.asarray(lat))
    return (of_lon * of_lat).sum(axis=0) < 1.0


def _field_terms(k: int, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The smooth field of variable number ``k`` as three products of a term of longitude
    and a term of latitude (as ``_land_terms``)."""
    of_lon = [np.sin(0.7 * k + lon * (0.3 + 0.05 * k)), np.ones_like(lon)]
    of_lat = [np.ones_like(lat), np.cos(lat * (0.4 + 0.03 * k) - k)]
    of_lon.append(0.5 * np.sin(2.1 * lon + 0.2 * k))
    of_lat.append(np.cos(1.7 * lat))
    return np.stack(of_lon), np.stack(of_lat)


def _on_grid(terms: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """(rows, columns) sum of products of terms taken per column (lon) and per row (lat)."""
    of_lon, of_lat = terms
    return of_lat.T @ of_lon


def field_block(
    variable: str, region: str, rows: slice, rng: np.random.Generator, coarsening: int = 1
) -> np.ndarray:
    """Values of a variable's raster for a block of rows (before nodata)."""
    transform, _, width = grid_of(variable, region, coarsening)
    k = ENV_VARIABLES.index(variable) + 1
    lon = transform.c + (np.arange(width) + 0.5) * transform.a
    lat = transform.f + (np.arange(rows.start, rows.stop) + 0.5) * transform.e
    smooth = _on_grid(_field_terms(k, lon, lat))
    land = _on_grid(_land_terms(region, lon, lat)) < 1.0
    if variable in BIOCLIMATIC_VARIABLES:
        noise = rng.standard_normal(smooth.shape, dtype=np.float32) * 0.05
        values = (10 * k + 5 * smooth + noise).astype(np.float32)
        values[~land] = FLOAT_NODATA
    else:
        noise = rng.integers(-2, 3, smooth.shape)
        values = np.round(100 * k + 40 * smooth + noise).astype(np.int16)
        values[~land] = INT_NODATA
    return values


def _write_raster(
    layout: DatasetLayout, variable: str, region: str, tiled: bool, coarsening: int
) -> None:
    """One raster, written block by block to a partial file renamed when complete."""
    path = layout.raster(variable, region)
    transform, height, width = grid_of(variable, region, coarsening)
    is_bio = variable in BIOCLIMATIC_VARIABLES
    profile = {
        "driver": "GTiff",
        "height": height,
        "width": width,
        "count": 1,
        "dtype": "float32" if is_bio else "int16",
        "nodata": float(FLOAT_NODATA) if is_bio else int(INT_NODATA),
        "crs": "EPSG:4326",
        "transform": transform,
        "compress": "lzw",
        "BIGTIFF": "IF_SAFER",
    }
    if tiled:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.tif")
    rng = np.random.default_rng(ENV_VARIABLES.index(variable))
    # One BLAS thread: the grid products are small, and the rasters fill the cores.
    with threadpool_limits(1), rasterio.open(partial, "w", **profile) as dataset:
        for start in range(0, height, ROWS_PER_WRITE):
            rows = slice(start, min(height, start + ROWS_PER_WRITE))
            block = field_block(variable, region, rows, rng, coarsening)
            dataset.write(block, 1, window=Window(0, start, width, block.shape[0]))
    partial.rename(path)


def write_rasters(
    root: Path, tiled: bool = False, progress: bool = True, coarsening: int = 1, workers: int = 1
) -> DatasetLayout:
    """Write the 54 rasters under ``root`` in the archive's layout (skips existing ones),
    ``workers`` rasters at a time in processes, the largest first."""
    layout = DatasetLayout(root)
    jobs = [(v, r) for r in ("fr", "us") for v in ENV_VARIABLES if not layout.raster(v, r).exists()]
    jobs.sort(key=lambda job: -np.prod(grid_of(*job, coarsening)[1:]))
    write = functools.partial(_write_raster, layout, tiled=tiled, coarsening=coarsening)
    with tqdm(total=len(jobs), desc="rasters", disable=not progress) as bar:
        if workers <= 1 or len(jobs) <= 1:
            for job in jobs:
                write(*job)
                bar.update()
        else:
            with ProcessPoolExecutor(workers) as pool:
                for _ in pool.map(write, *zip(*jobs, strict=True)):
                    bar.update()
    return layout


def write_points(folder: Path, n: int = N_POINTS, seed: int = 0) -> list[Path]:
    """Observation tables of ``n`` points (train 95 %, val 2.5 %, test 2.5 %)."""
    rng = np.random.default_rng(seed)
    parts = []
    for region, share in (("fr", FR_SHARE), ("us", 1 - FR_SHARE)):
        wanted = int(round(n * share)) if region == "fr" else n - len(parts[0])
        west, south, east, north = REGION_BOUNDS[region]
        chosen = []
        have = 0
        while have < wanted:
            lon = rng.uniform(west, east, 2 * wanted)
            lat = rng.uniform(south, north, 2 * wanted)
            keep = land_mask(region, lon, lat) | (rng.random(2 * wanted) < 0.02)
            chosen.append(np.stack([lon[keep], lat[keep]], axis=1))
            have += keep.sum()
        lonlat = np.concatenate(chosen)[:wanted]
        ids = REGION_DIGIT[region] * 10**7 + rng.choice(10**7, wanted, replace=False)
        parts.append(
            pd.DataFrame(
                {"observation_id": ids, "latitude": lonlat[:, 1], "longitude": lonlat[:, 0]}
            )
        )
    points = pd.concat(parts, ignore_index=True).sample(frac=1.0, random_state=seed)
    split = rng.choice(["train", "val", "test"], len(points), p=[0.95, 0.025, 0.025])
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in ("train", "val", "test"):
        path = folder / f"{name}.parquet"
        points[split == name].sort_values("observation_id").to_parquet(path, index=False)
        paths.append(path)
    return paths
