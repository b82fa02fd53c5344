"""The hidden world of each region: land mask, smooth environmental fields and the 27 rasters.

A region is a raster grid over its :data:`~.spec.REGION_BOUNDS` on which smooth random
fields (elevation, temperature, precipitation, continentality, soil) are drawn. The 27
bioclimatic and pedologic rasters are derived from those fields, as real variables would
be, and written as GeoTIFFs with the nodata conventions of WorldClim and SoilGrids. The
hidden fields stay in memory: species respond to them, not to the rasters.
"""

from dataclasses import dataclass

import numpy as np
import rasterio
from rasterio.transform import from_origin
from scipy import ndimage

from geolifeclef.atomic import atomic_path
from geolifeclef.demo.spec import REGION_BOUNDS, DemoSpec
from geolifeclef.layout import ENV_VARIABLES, REGIONS, DatasetLayout

FLOAT_NODATA = np.float32(-3.4028234663852886e38)
INT_NODATA = -32768


@dataclass
class RegionGrid:
    """The raster grid of one region with the hidden fields the rasters derive from."""

    region: str
    transform: rasterio.Affine
    land: np.ndarray
    fields: dict[str, np.ndarray]
    """Hidden fields on the grid: elevation, temperature, precipitation, ..."""


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian random field with unit standard deviation and correlation length ``sigma`` px."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="reflect")
    return (field - field.mean()) / (field.std() + 1e-12)


def make_region_grid(region: str, spec: DemoSpec, rng: np.random.Generator) -> RegionGrid:
    """Draw the land mask and hidden environmental fields of one region."""
    west, south, east, north = REGION_BOUNDS[region]
    res = spec.raster_resolution
    width = int(round((east - west) / res))
    height = int(round((north - south) / res))
    transform = from_origin(west, north, res, res)
    rows, cols = np.mgrid[0:height, 0:width]
    lat = north - (rows + 0.5) * res
    lon = west + (cols + 0.5) * res
    u = (cols + 0.5) / width - 0.5
    v = (rows + 0.5) / height - 0.5
    scale = 1.0 / res  # pixels per degree
    coast = 0.35 * smooth_noise(rng, (height, width), 0.8 * scale)
    land = (u / 0.47) ** 2 + (v / 0.45) ** 2 + coast < 1.0
    land &= (u / 0.47) ** 2 + (v / 0.45) ** 2 < 1.15
    # Mountains: a few smooth ridges plus broad relief.
    relief = np.clip(smooth_noise(rng, (height, width), 1.5 * scale), 0, None)
    ridges = np.clip(smooth_noise(rng, (height, width), 0.6 * scale) - 0.8, 0, None)
    elevation = 150 + 500 * relief + 1800 * ridges
    latitude_term = -0.8 * (lat - (south + north) / 2)
    temperature = (
        12.0 + latitude_term - 0.0065 * elevation + 1.5 * smooth_noise(rng, lat.shape, 2 * scale)
    )
    continentality = np.clip(
        (lon - west) / (east - west) * 1.2 + 0.3 * smooth_noise(rng, lat.shape, 3 * scale), 0, 1.5
    )
    precipitation = np.clip(
        800
        + 300 * smooth_noise(rng, lat.shape, 1.5 * scale)
        - 250 * continentality
        + 0.4 * elevation,
        150,
        None,
    )
    fields = {
        "elevation": elevation,
        "temperature": temperature,
        "precipitation": precipitation,
        "continentality": continentality,
        "seasonality_p": np.clip(0.5 + 0.3 * smooth_noise(rng, lat.shape, 2 * scale), 0, 1),
        "soil_clay": np.clip(25 + 10 * smooth_noise(rng, lat.shape, 0.7 * scale), 2, 60),
        "soil_ph": np.clip(
            65 + 10 * smooth_noise(rng, lat.shape, 1.0 * scale) - 0.01 * precipitation, 40, 85
        ),
        "soil_organic": np.clip(
            20 + 15 * smooth_noise(rng, lat.shape, 0.5 * scale) + 0.01 * elevation, 0, 200
        ),
    }
    return RegionGrid(region=region, transform=transform, land=land, fields=fields)


def raster_values(grid: RegionGrid, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The 27 variables on the grid, derived from the hidden fields (before nodata masking)."""
    f = grid.fields
    shape = grid.land.shape

    def jitter(scale: float) -> np.ndarray:
        return scale * smooth_noise(rng, shape, 3.0)

    t, p, c, s = f["temperature"], f["precipitation"], f["continentality"], f["seasonality_p"]
    bio7 = 18 + 14 * c + jitter(0.5)
    bio2 = 7 + 4 * c + jitter(0.3)
    bio13 = p / 12 * (1 + 0.8 * s)
    bio14 = np.clip(p / 12 * (1 - 0.8 * s), 0, None)
    values = {
        "bio_1": t,
        "bio_2": bio2,
        "bio_3": 100 * bio2 / bio7,
        "bio_4": 450 + 320 * c + jitter(10),
        "bio_5": t + 0.55 * bio7 + jitter(0.3),
        "bio_6": t - 0.45 * bio7 + jitter(0.3),
        "bio_7": bio7,
        "bio_8": t + 4 * (s - 0.5) + jitter(0.5),
        "bio_9": t - 4 * (s - 0.5) + jitter(0.5),
        "bio_10": t + 0.33 * bio7,
        "bio_11": t - 0.33 * bio7,
        "bio_12": p,
        "bio_13": bio13,
        "bio_14": bio14,
        "bio_15": 15 + 60 * s + jitter(2),
        "bio_16": 2.8 * bio13,
        "bio_17": 3.2 * bio14,
        "bio_18": p * (0.3 - 0.15 * s) + jitter(5),
        "bio_19": p * (0.2 + 0.15 * s) + jitter(5),
        "bdticm": 2000 + 15000 * np.clip(1 - f["elevation"] / 3000, 0, 1) + jitter(300),
        "bldfie": 1400 - 3 * f["soil_organic"] + jitter(30),
        "cecsol": 5 + 0.6 * f["soil_clay"] + 0.1 * f["soil_organic"] + jitter(1),
        "clyppt": f["soil_clay"],
        "orcdrc": f["soil_organic"],
        "phihox": f["soil_ph"],
        "sltppt": 30 + 0.2 * f["soil_clay"] + jitter(3),
    }
    values["sndppt"] = np.clip(100 - values["clyppt"] - values["sltppt"], 0, 100)
    return values


def write_rasters(
    layout: DatasetLayout, grid: RegionGrid, values: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Write the 27 GeoTIFFs of a region; return the arrays as written (nodata applied).

    Bioclimatic rasters are float32, pedologic ones int16, as WorldClim and SoilGrids.
    Sea is nodata everywhere; the pedologic rasters also have holes (urban, water) where
    SoilGrids gives no value.
    """
    rng = np.random.default_rng(REGIONS.index(grid.region))  # soil holes only
    soil_holes = ~grid.land | (smooth_noise(rng, grid.land.shape, 1.0) > 2.2)
    written = {}
    for variable in ENV_VARIABLES:
        is_soil = not variable.startswith("bio_")
        if is_soil:
            array = np.round(values[variable]).astype(np.int16)
            array[soil_holes] = INT_NODATA
            nodata = INT_NODATA
        else:
            array = values[variable].astype(np.float32)
            array[~grid.land] = FLOAT_NODATA
            nodata = float(FLOAT_NODATA)
        path = layout.raster(variable, grid.region)
        path.parent.mkdir(parents=True, exist_ok=True)
        profile = {
            "driver": "GTiff",
            "height": array.shape[0],
            "width": array.shape[1],
            "count": 1,
            "dtype": array.dtype,
            "crs": "EPSG:4326",
            "transform": grid.transform,
            "nodata": nodata,
            "compress": "lzw",
            "tiled": True,
            "blockxsize": 256,
            "blockysize": 256,
        }
        with atomic_path(path) as temporary, rasterio.open(temporary, "w", **profile) as dataset:
            dataset.write(array, 1)
        written[variable] = array
    return written
