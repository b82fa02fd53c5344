"""A deterministic demo dataset in the exact GeoLifeCLEF 2022 layout, with known truth.

The generator draws a small world whose species behave like real ones, so that every
stage of the workflow has something real to learn and measure:

* two regions (France and the conterminous US) with land masks, hidden smooth fields
  (elevation, temperature, precipitation, continentality, soil) from which the 27 rasters
  are derived as real bioclimatic and pedologic variables would be;
* observation sites spatially clustered around "cities", split train/val/test by spatial
  blocks, so that test lies in areas that train never saw, as in the real split;
* per observation, four 1 m patches rendered from a local land-cover mix (land cover
  depends on the environment), an altitude patch and RGB/near-infrared imagery;
* species whose presence depends on their environmental niche, the land cover of the
  patch, their geographic range and a Zipf-like abundance: a long tail, as in GLC.

Next to the dataset (not inside its layout) it writes the true probability of every
species for every val and test observation, so the Bayes-optimal top-30 error is known.
"""

import functools
import json
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
from rasterio.transform import from_origin
from scipy import ndimage
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from .atomic import atomic_path
from .environment import pixel_indices
from .layout import (
    CSV_SEPARATOR,
    ENV_VARIABLES,
    LANDCOVER_CODES,
    REGION_DIGIT,
    REGIONS,
    DatasetLayout,
)
from .patch_files import write_patch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoSpec:
    """Size and shape of a demo dataset. Same spec and seed, same bytes."""

    seed: int = 2022
    n_species: int = 500
    n_train: int = 15_000
    """Observations in the train subset (both regions)."""
    n_val: int = 1_000
    n_test: int = 1_000
    patch_size: int = 256
    raster_resolution: float = 0.05
    """Raster pixel size in degrees (the real bioclimatic rasters are 30 arcsec)."""
    n_clusters: int = 80
    """Sampling hot spots (towns, parks) around which observations cluster."""
    block_size: float = 0.5
    """Side in degrees of the spatial blocks that are assigned to train, val or test."""
    zipf_exponent: float = 0.5
    """Species abundance ~ rank ** -zipf_exponent: a long tail."""


DEMO_SCALES = {
    "tiny": DemoSpec(n_species=60, n_train=300, n_val=60, n_test=60, patch_size=64, n_clusters=12),
    "small": DemoSpec(),
    "large": DemoSpec(n_species=5_000, n_train=200_000, n_val=5_000, n_test=8_000, n_clusters=800),
}
"""Named presets: ``tiny`` for tests, ``small`` for the default demo, ``large`` to stress."""

REGION_BOUNDS = {
    # west, south, east, north of the raster extents, as the real rasters roughly cover
    "fr": (-5.5, 41.0, 10.0, 51.5),
    "us": (-125.0, 24.0, -66.5, 49.5),
}
REGION_SHARE = {"fr": 0.55, "us": 0.45}

ALIGNED_LANDCOVER = (
    "artificial",
    "cropland",
    "grassland",
    "broadleaf_forest",
    "conifer_forest",
    "shrubland",
    "wetland",
    "water",
    "bare",
)
"""The shared land-cover legend the demo draws patches from (``suggested_landcover``)."""

# Per aligned class: RGB colour and near-infrared reflectance of the imagery.
_CLASS_RGB = np.array(
    [
        [150, 145, 140],
        [200, 185, 120],
        [140, 170, 90],
        [60, 110, 50],
        [40, 80, 50],
        [150, 140, 90],
        [90, 120, 110],
        [40, 70, 110],
        [190, 180, 170],
    ],
    dtype=np.float32,
)
_CLASS_NIR = np.array([70, 140, 170, 210, 180, 130, 110, 20, 90], dtype=np.float32)

FLOAT_NODATA = np.float32(-3.4028234663852886e38)
INT_NODATA = -32768
TRUTH_FILE = "species_probabilities.npz"
SUMMARY_FILE = "summary.json"


# --------------------------------------------------------------------------------------
# Hidden fields and rasters
# --------------------------------------------------------------------------------------


@dataclass
class RegionGrid:
    """The raster grid of one region with the hidden fields the rasters derive from."""

    region: str
    transform: rasterio.Affine
    land: np.ndarray
    fields: dict[str, np.ndarray]
    """Hidden fields on the grid: elevation, temperature, precipitation, ..."""


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
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
    coast = 0.35 * _smooth_noise(rng, (height, width), 0.8 * scale)
    land = (u / 0.47) ** 2 + (v / 0.45) ** 2 + coast < 1.0
    land &= (u / 0.47) ** 2 + (v / 0.45) ** 2 < 1.15
    # Mountains: a few smooth ridges plus broad relief.
    relief = np.clip(_smooth_noise(rng, (height, width), 1.5 * scale), 0, None)
    ridges = np.clip(_smooth_noise(rng, (height, width), 0.6 * scale) - 0.8, 0, None)
    elevation = 150 + 500 * relief + 1800 * ridges
    latitude_term = -0.8 * (lat - (south + north) / 2)
    temperature = (
        12.0 + latitude_term - 0.0065 * elevation + 1.5 * _smooth_noise(rng, lat.shape, 2 * scale)
    )
    continentality = np.clip(
        (lon - west) / (east - west) * 1.2 + 0.3 * _smooth_noise(rng, lat.shape, 3 * scale), 0, 1.5
    )
    precipitation = np.clip(
        800
        + 300 * _smooth_noise(rng, lat.shape, 1.5 * scale)
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
        "seasonality_p": np.clip(0.5 + 0.3 * _smooth_noise(rng, lat.shape, 2 * scale), 0, 1),
        "soil_clay": np.clip(25 + 10 * _smooth_noise(rng, lat.shape, 0.7 * scale), 2, 60),
        "soil_ph": np.clip(
            65 + 10 * _smooth_noise(rng, lat.shape, 1.0 * scale) - 0.01 * precipitation, 40, 85
        ),
        "soil_organic": np.clip(
            20 + 15 * _smooth_noise(rng, lat.shape, 0.5 * scale) + 0.01 * elevation, 0, 200
        ),
    }
    return RegionGrid(region=region, transform=transform, land=land, fields=fields)


def raster_values(grid: RegionGrid, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The 27 variables on the grid, derived from the hidden fields (before nodata masking)."""
    f = grid.fields
    shape = grid.land.shape

    def jitter(scale: float) -> np.ndarray:
        return scale * _smooth_noise(rng, shape, 3.0)

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
    soil_holes = ~grid.land | (_smooth_noise(rng, grid.land.shape, 1.0) > 2.2)
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


# --------------------------------------------------------------------------------------
# Observation sites
# --------------------------------------------------------------------------------------


def sample_sites(
    grid: RegionGrid, n: dict[str, int], spec: DemoSpec, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Clustered sites on land, assigned to splits by spatial block.

    Returns ``{split: array of (lon, lat)}`` with ``n[split]`` sites each.
    """
    west, south, east, north = REGION_BOUNDS[grid.region]
    land_rows, land_cols = np.nonzero(grid.land)
    n_clusters = max(3, int(spec.n_clusters * REGION_SHARE[grid.region]))
    pick = rng.choice(len(land_rows), n_clusters, replace=False)
    centre_lon = west + (land_cols[pick] + 0.5) * spec.raster_resolution
    centre_lat = north - (land_rows[pick] + 0.5) * spec.raster_resolution
    weight = rng.lognormal(0, 1.0, n_clusters)
    weight /= weight.sum()
    spread = rng.uniform(0.05, 0.6, n_clusters)
    # Blocks of the split: a block's kind is a fixed draw from its index.
    n_block_cols = int(np.ceil((east - west) / spec.block_size))
    block_kind = rng.choice(
        3,
        size=n_block_cols * int(np.ceil((north - south) / spec.block_size)) + 1,
        p=[0.7, 0.12, 0.18],
    )
    split_code = {"train": 0, "val": 1, "test": 2}
    chosen: dict[str, list[np.ndarray]] = {split: [] for split in n}
    have = dict.fromkeys(n, 0)
    while any(have[s] < n[s] for s in n):
        batch = 4 * sum(n.values()) + 1000
        cluster = rng.choice(n_clusters, batch, p=weight)
        lon = centre_lon[cluster] + rng.standard_normal(batch) * spread[cluster]
        lat = centre_lat[cluster] + rng.standard_normal(batch) * spread[cluster] * 0.75
        row, col, inside = pixel_indices(grid.transform, lon, lat, *grid.land.shape)
        on_land = np.zeros(batch, dtype=bool)
        on_land[inside] = grid.land[row[inside], col[inside]]
        # A few coastal points fall in a sea pixel (NaN env values), as in the real data.
        near_coast = inside & ~on_land
        near_coast[near_coast] = ndimage.binary_dilation(grid.land)[
            row[near_coast], col[near_coast]
        ]
        keep = on_land | (near_coast & (rng.random(batch) < 0.05))
        block = np.floor((lat - south) / spec.block_size) * n_block_cols + np.floor(
            (lon - west) / spec.block_size
        )
        kind = block_kind[np.clip(block.astype(np.int64), 0, len(block_kind) - 1)]
        for split, code in split_code.items():
            if split not in n:
                continue
            selected = np.flatnonzero(keep & (kind == code))[: n[split] - have[split]]
            chosen[split].append(np.stack([lon[selected], lat[selected]], axis=1))
            have[split] += len(selected)
    return {split: np.concatenate(parts) for split, parts in chosen.items()}


# --------------------------------------------------------------------------------------
# Patches
# --------------------------------------------------------------------------------------


def landcover_mix(env: dict[str, np.ndarray], urban: np.ndarray) -> np.ndarray:
    """Expected land-cover mix (rows sum to 1) from the hidden environment at each site."""
    t, p, e = env["temperature"], env["precipitation"], env["elevation"]
    logits = np.stack(
        [
            2.5 * urban - 1.0,  # artificial
            0.15 * (t - 8) - e / 600,  # cropland
            0.3 + 0.0 * t,  # grassland
            (p - 800) / 400 - np.abs(t - 11) / 6,  # broadleaf forest
            (e - 800) / 500 - (t - 6) / 6,  # conifer forest
            (t - 14) / 3 - (p - 600) / 300,  # shrubland
            (p - 1100) / 300 - e / 400,  # wetland
            -1.5 + 0.0 * t,  # water
            (e - 2000) / 300,  # bare
        ],
        axis=1,
    )
    logits -= logits.max(axis=1, keepdims=True)
    mix = np.exp(logits)
    return mix / mix.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class PatchJob:
    """Everything needed to render and write the patches of one observation."""

    observation_id: int
    region: str
    mix: np.ndarray
    elevation: float
    seed: int


@functools.cache
def _upsampling_matrix(coarse: int, size: int) -> np.ndarray:
    """(size, coarse) matrix of linear interpolation weights from a coarse grid to pixels."""
    position = np.clip((np.arange(size) + 0.5) * coarse / size - 0.5, 0, coarse - 1)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, coarse - 1)
    weight = position - low
    matrix = np.zeros((size, coarse), dtype=np.float32)
    matrix[np.arange(size), low] += 1 - weight
    matrix[np.arange(size), high] += weight
    return matrix


def _smooth_patch_noise(
    rng: np.random.Generator, channels: int, coarse: int, size: int
) -> np.ndarray:
    """(channels, size, size) smooth noise: coarse Gaussian noise, bilinearly upsampled."""
    upsample = _upsampling_matrix(coarse, size)
    noise = rng.standard_normal((channels, coarse, coarse)).astype(np.float32)
    return upsample @ noise @ upsample.T


def _argmax_first_axis(scores: np.ndarray) -> np.ndarray:
    """``scores.argmax(axis=0)`` for a few large planes, without strided reads (5x faster)."""
    best = scores[0].copy()
    index = np.zeros(best.shape, dtype=np.intp)
    for channel in range(1, len(scores)):
        better = scores[channel] > best
        np.copyto(best, scores[channel], where=better)
        index[better] = channel
    return index


def render_patches(job: PatchJob, size: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Render the four patches of one observation; also return its aligned class shares.

    Deterministic from ``job.seed``: the same patches whatever process renders them.
    """
    rng = np.random.default_rng(job.seed)
    n_classes = len(ALIGNED_LANDCOVER)
    coarse = max(2, size // 32)
    # A local draw around the expected mix, so that patches vary beyond the rasters.
    local_mix = rng.dirichlet(job.mix * 6 + 0.05)
    noise = _smooth_patch_noise(rng, n_classes, coarse, size)
    scores = np.log(local_mix + 1e-4).astype(np.float32)[:, None, None] + 1.2 * noise
    aligned = _argmax_first_axis(scores)
    shares = np.bincount(aligned.ravel(), minlength=n_classes) / aligned.size
    codes = np.asarray(LANDCOVER_CODES[job.region])
    # Aligned class c -> the first region code whose suggested class is c (see _write_metadata).
    landcover = codes[-(-aligned * len(codes) // n_classes)].astype(np.uint8)
    relief = _smooth_patch_noise(rng, 1, 4, size)[0]
    altitude = np.round(job.elevation + 8 * relief)
    texture = _smooth_patch_noise(rng, 1, 2 * coarse, size)[0]
    grain = rng.standard_normal((size, size, 1)).astype(np.float32)
    rgb = _CLASS_RGB[aligned] * (1 + 0.08 * texture[..., None]) + 3 * grain
    nir = _CLASS_NIR[aligned] * (1 + 0.08 * texture) + 3 * grain[..., 0]
    patches = {
        "rgb": np.clip(rgb, 0, 255).astype(np.uint8),
        "near_ir": np.clip(nir, 0, 255).astype(np.uint8),
        "altitude": np.clip(altitude, -400, 5000).astype(np.int16),
        "landcover": landcover,
    }
    return patches, shares


def _write_patch_chunk(args: tuple[Path, list[PatchJob], int]) -> np.ndarray:
    root, jobs, size = args
    with threadpool_limits(1):  # one BLAS thread per worker: the workers fill the cores
        return _write_patches(root, jobs, size)


def _write_patches(root: Path, jobs: list[PatchJob], size: int) -> np.ndarray:
    layout = DatasetLayout(root)
    shares = np.empty((len(jobs), len(ALIGNED_LANDCOVER)), dtype=np.float64)
    for i, job in enumerate(jobs):
        patches, shares[i] = render_patches(job, size)
        for modality, array in patches.items():
            write_patch(layout.patch(job.observation_id, modality), modality, array)
    return shares


def write_all_patches(root: Path, jobs: list[PatchJob], size: int, workers: int) -> np.ndarray:
    """Render and write every observation's patches in parallel; return class shares."""
    chunk = 200
    chunks = [(root, jobs[i : i + chunk], size) for i in range(0, len(jobs), chunk)]
    results = []
    with tqdm(total=len(jobs), desc="demo patches", unit="obs", mininterval=2) as bar:
        if workers <= 1:
            for args in chunks:
                results.append(_write_patch_chunk(args))
                bar.update(len(args[1]))
        else:
            with ProcessPoolExecutor(workers) as pool:
                for args, shares in zip(chunks, pool.map(_write_patch_chunk, chunks), strict=True):
                    results.append(shares)
                    bar.update(len(args[1]))
    return np.concatenate(results) if results else np.empty((0, len(ALIGNED_LANDCOVER)))


# --------------------------------------------------------------------------------------
# Species
# --------------------------------------------------------------------------------------

NICHE_FIELDS = (
    "temperature",
    "precipitation",
    "elevation",
    "continentality",
    "soil_ph",
    "soil_clay",
)
_NICHE_SCALE = {
    "temperature": (10.0, 5.0),
    "precipitation": (800.0, 300.0),
    "elevation": (600.0, 600.0),
    "continentality": (0.6, 0.35),
    "soil_ph": (58.0, 10.0),
    "soil_clay": (25.0, 10.0),
}


def niche_features(env: dict[str, np.ndarray]) -> np.ndarray:
    """Standardised hidden environment (n, len(NICHE_FIELDS)) that species respond to."""
    return np.stack(
        [(env[k] - _NICHE_SCALE[k][0]) / _NICHE_SCALE[k][1] for k in NICHE_FIELDS], axis=1
    )


@dataclass
class SpeciesModel:
    """The hidden truth: how likely each species is to be the one observed at a site."""

    abundance: np.ndarray  # (S,)
    region_mask: np.ndarray  # (2, S) 1 where the species lives in fr / us
    niche_mean: np.ndarray  # (S, F)
    niche_precision: np.ndarray  # (S, F), 0 where the species ignores a variable
    landcover_affinity: np.ndarray  # (S, C)
    range_centre: np.ndarray  # (S, 2) lon, lat
    range_radius: np.ndarray  # (S,) degrees

    def probabilities(
        self, region_index: np.ndarray, features: np.ndarray, shares: np.ndarray, lonlat: np.ndarray
    ) -> np.ndarray:
        """P(species | site), (n, S), rows summing to 1."""
        z = features[:, None, :] - self.niche_mean[None]
        log_p = -0.5 * np.einsum("nsf,sf->ns", z**2, self.niche_precision)
        log_p += np.log(
            shares @ self.landcover_affinity.T * self.landcover_affinity.shape[1] + 1e-3
        )
        d2 = ((lonlat[:, None, :] - self.range_centre[None]) ** 2).sum(-1)
        log_p += -0.5 * d2 / self.range_radius[None] ** 2
        log_p += np.log(self.abundance)[None]
        log_p[self.region_mask[region_index] == 0] = -np.inf
        log_p -= log_p.max(axis=1, keepdims=True)
        p = np.exp(log_p)
        return p / p.sum(axis=1, keepdims=True)


def draw_species(
    spec: DemoSpec,
    site_features: dict[str, tuple[np.ndarray, np.ndarray]],
    rng: np.random.Generator,
) -> SpeciesModel:
    """Draw species niches around real sites, so that every species can occur somewhere."""
    s = spec.n_species
    ranks = rng.permutation(s) + 1
    abundance = ranks.astype(np.float64) ** -spec.zipf_exponent
    home = rng.choice(3, s, p=[0.5, 0.42, 0.08])  # fr, us, both
    region_mask = np.stack([(home == 0) | (home == 2), (home == 1) | (home == 2)]).astype(np.int8)
    n_features = len(NICHE_FIELDS)
    niche_mean = np.empty((s, n_features))
    range_centre = np.empty((s, 2))
    for i in range(s):
        region = REGIONS[home[i] % 2] if home[i] < 2 else REGIONS[rng.integers(2)]
        features, lonlat = site_features[region]
        j = rng.integers(len(features))
        niche_mean[i] = features[j] + rng.normal(0, 0.3, n_features)
        range_centre[i] = lonlat[j]
    niche_precision = np.zeros((s, n_features))
    for i in range(s):
        used = rng.choice(n_features, 3, replace=False)
        niche_precision[i, used] = 1.0 / rng.uniform(1.0, 2.5, 3) ** 2
    affinity = rng.dirichlet(np.full(len(ALIGNED_LANDCOVER), 0.6), s)
    radius = np.where(home == 1, rng.uniform(1.5, 6, s), rng.uniform(0.75, 3, s))
    return SpeciesModel(
        abundance, region_mask, niche_mean, niche_precision, affinity, range_centre, radius
    )


# --------------------------------------------------------------------------------------
# The whole dataset
# --------------------------------------------------------------------------------------


def _format_coordinates(region: str, values: np.ndarray) -> list[str]:
    """France: float32 values with 15 significant digits; US: 5-6 decimals, as the real CSVs."""
    if region == "fr":
        return [f"{v:.15g}" for v in values.astype(np.float32).astype(np.float64)]
    return [repr(round(float(v), 6)) for v in values]


def _write_csv(path: Path, frame: pd.DataFrame) -> None:
    with atomic_path(path) as temporary:
        frame.to_csv(temporary, sep=CSV_SEPARATOR, index=False, lineterminator="\n")


def _write_metadata(layout: DatasetLayout, spec: DemoSpec) -> None:
    species = pd.DataFrame(
        {
            "species_id": np.arange(spec.n_species),
            "GBIF_species_id": 2_000_000 + np.arange(spec.n_species) * 7,
            "GBIF_species_name": [f"Demo species {i:05d}" for i in range(spec.n_species)],
            "GBIF_kingdom_name": np.where(
                np.arange(spec.n_species) % 4 == 0, "Animalia", "Plantae"
            ),
        }
    )
    layout.species_details.parent.mkdir(parents=True, exist_ok=True)
    _write_csv(layout.species_details, species)
    _write_csv(
        layout.environmental_variables,
        pd.DataFrame(
            {
                "name": list(ENV_VARIABLES),
                "description": [f"demo {v}" for v in ENV_VARIABLES],
                "unit": [
                    "degC*1" if v.startswith("bio_") else "soilgrids units" for v in ENV_VARIABLES
                ],
            }
        ),
    )
    rows = []
    for region in REGIONS:
        codes = LANDCOVER_CODES[region]
        for code in codes:
            aligned = (codes.index(code) * len(ALIGNED_LANDCOVER)) // len(codes)
            rows.append((code, f"{region} class {code}", aligned, ALIGNED_LANDCOVER[aligned]))
    alignment = pd.DataFrame(
        rows,
        columns=[
            "landcover_code",
            "original_landcover",
            "suggested_landcover_code",
            "suggested_landcover_label",
        ],
    )
    _write_csv(
        layout.landcover_original_labels, alignment[["landcover_code", "original_landcover"]]
    )
    _write_csv(layout.landcover_suggested_alignment, alignment)


def generate_demo_dataset(root: Path, truth_dir: Path, spec: DemoSpec, workers: int = 1) -> dict:
    """Write a demo dataset under ``root`` and its truth under ``truth_dir``; return the summary."""
    root, truth_dir = Path(root), Path(truth_dir)
    layout = DatasetLayout(root)
    rng = np.random.default_rng(spec.seed)
    grids, site_lonlat, site_env, site_split, site_region = {}, [], [], [], []
    env_rows = []
    region_n = {}
    for region in REGIONS:
        share = REGION_SHARE[region]
        region_n[region] = {
            "train": int(round(spec.n_train * share)),
            "val": int(round(spec.n_val * share)),
            "test": int(round(spec.n_test * share)),
        }
    for region in REGIONS:
        region_n[region] = {k: max(1, v) for k, v in region_n[region].items()}
    for region_index, region in enumerate(REGIONS):
        grid = make_region_grid(region, spec, rng)
        grids[region] = grid
        written = write_rasters(layout, grid, raster_values(grid, rng))
        sites = sample_sites(grid, region_n[region], spec, rng)
        for split, lonlat in sites.items():
            row, col, _ = pixel_indices(
                grid.transform, lonlat[:, 0], lonlat[:, 1], *grid.land.shape
            )
            site_lonlat.append(lonlat)
            site_env.append({k: v[row, col] for k, v in grid.fields.items()})
            site_split.append(np.full(len(lonlat), split))
            site_region.append(np.full(len(lonlat), region_index))
            values = np.stack(
                [written[v][row, col].astype(np.float32) for v in ENV_VARIABLES], axis=1
            )
            values[(values == FLOAT_NODATA) | (values == INT_NODATA)] = np.nan
            env_rows.append(values)
    lonlat = np.concatenate(site_lonlat)
    env = {k: np.concatenate([e[k] for e in site_env]) for k in site_env[0]}
    split = np.concatenate(site_split)
    region_index = np.concatenate(site_region)
    env_values = np.concatenate(env_rows)
    n = len(lonlat)
    # Unique 8-digit ids, region digit first, in random order.
    ids = np.empty(n, dtype=np.int64)
    for r, region in enumerate(REGIONS):
        mask = region_index == r
        ids[mask] = REGION_DIGIT[region] * 10**7 + rng.choice(10**7, mask.sum(), replace=False)
    # Urban pull: how close a site is to a sampling hot spot (towns attract observers).
    urban = np.clip(rng.normal(0.3, 0.3, n), 0, 1)
    mix = landcover_mix(env, urban)
    jobs = [
        PatchJob(
            int(ids[i]),
            REGIONS[region_index[i]],
            mix[i],
            float(env["elevation"][i]),
            spec.seed * 100_003 + int(ids[i]),
        )
        for i in range(n)
    ]
    log.info("writing %d x 4 patches of %d px with %d workers", n, spec.patch_size, workers)
    shares = write_all_patches(root, jobs, spec.patch_size, workers)
    # Species and labels.
    features = niche_features(env)
    site_features = {
        region: (features[region_index == r], lonlat[region_index == r])
        for r, region in enumerate(REGIONS)
    }
    species = draw_species(spec, site_features, rng)
    species_id = np.empty(n, dtype=np.int64)
    truth_rows = np.flatnonzero(split != "train")
    truth = np.empty((len(truth_rows), spec.n_species), dtype=np.float32)
    truth_position = {row: k for k, row in enumerate(truth_rows)}
    chunk = max(1, 4_000_000 // spec.n_species)
    for start in range(0, n, chunk):
        rows = np.arange(start, min(n, start + chunk))
        p = species.probabilities(region_index[rows], features[rows], shares[rows], lonlat[rows])
        cumulative = p.cumsum(axis=1)
        draws = rng.random(len(rows))[:, None]
        species_id[rows] = np.minimum((cumulative < draws).sum(axis=1), spec.n_species - 1)
        for k, row in enumerate(rows):
            if row in truth_position:
                truth[truth_position[row]] = p[k]
    # Observation CSVs, region by region, rows shuffled as in the archive.
    for r, region in enumerate(REGIONS):
        for kind in ("train", "test"):
            mask = (region_index == r) & (
                (split == "test") if kind == "test" else (split != "test")
            )
            rows = rng.permutation(np.flatnonzero(mask))
            frame = pd.DataFrame(
                {
                    "observation_id": ids[rows],
                    "latitude": _format_coordinates(region, lonlat[rows, 1]),
                    "longitude": _format_coordinates(region, lonlat[rows, 0]),
                }
            )
            if kind == "train":
                frame["species_id"] = species_id[rows]
                frame["subset"] = split[rows]
            path = layout.observations(region, kind)
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_csv(path, frame)
    _write_metadata(layout, spec)
    env_frame = pd.DataFrame(env_values, columns=list(ENV_VARIABLES))
    env_frame.insert(0, "observation_id", ids)
    env_frame = env_frame.sort_values("observation_id")
    layout.environmental_vectors.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(layout.environmental_vectors) as temporary:
        env_frame.to_csv(
            temporary, sep=CSV_SEPARATOR, index=False, float_format="%.9g", lineterminator="\n"
        )
    summary = summarize_truth(ids, split, species_id, truth_rows, truth, spec)
    truth_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(truth_dir / TRUTH_FILE) as temporary, open(temporary, "wb") as handle:
        np.savez(
            handle,
            observation_id=ids[truth_rows],
            subset=split[truth_rows],
            probabilities=truth,
        )
    with atomic_path(truth_dir / SUMMARY_FILE) as temporary:
        temporary.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def summarize_truth(ids, split, species_id, truth_rows, truth, spec: DemoSpec) -> dict:
    """Bayes-optimal and constant-predictor top-30 errors of the drawn dataset."""
    from .metrics import expected_top_k_error, top_k, top_k_error

    k = 30
    train_counts = np.bincount(species_id[split == "train"], minlength=spec.n_species)
    most_frequent = top_k(train_counts[None, :], k)[0][0]
    summary: dict = {
        "spec": asdict(spec),
        "n_observations": {s: int((split == s).sum()) for s in ("train", "val", "test")},
    }
    for subset in ("val", "test"):
        rows = np.flatnonzero(split[truth_rows] == subset)
        p = truth[rows]
        bayes_sets = top_k(p, k)[0]
        labels = species_id[truth_rows[rows]]
        constant_sets = np.broadcast_to(most_frequent, (len(rows), k))
        summary[subset] = {
            "bayes_top30_error_expected": expected_top_k_error(p, bayes_sets),
            "bayes_top30_error_sampled": top_k_error(bayes_sets, labels),
            "constant_top30_error_expected": expected_top_k_error(p, constant_sets),
            "constant_top30_error_sampled": top_k_error(constant_sets, labels),
        }
    return summary


def spec_for(scale: str, **overrides) -> DemoSpec:
    """The preset ``scale`` with the given fields replaced (None values ignored)."""
    if scale not in DEMO_SCALES:
        raise ValueError(f"unknown demo scale {scale!r}; choose one of {sorted(DEMO_SCALES)}")
    return replace(DEMO_SCALES[scale], **{k: v for k, v in overrides.items() if v is not None})


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)))
