"""The files of each PA survey: its Sentinel-2 patch(es) and its two time-series cubes.

All three are rendered from the survey's local land-cover mix, as the 2022 demo's patches
(:func:`geolifeclef.demo.patches.smooth_patch_noise`): a class map drawn around the mix,
coloured by each class's reflectance; so they carry what species respond to. In the
archive's formats (GLC24-25-FORMAT §5, §6, checked against the real samples):

* GLC 2024: an RGB and a grayscale NIR baseline JPEG of 128 px (uint8: reflectance clipped
  at 10,000, scaled to [0, 1], gamma 1/2.5, x 255), libjpeg quality 90 and 4:2:0 as the real;
* GLC 2025: one 64 px GeoTIFF, 4 int16 bands of reflectance x 10^4 described ``red``,
  ``green``, ``blue``, ``nir``, nodata -1, LZW, strips of 16 rows, pixel-interleaved, in
  LAEA Europe without an EPSG code, centred on the survey on a 10 m grid (the georeference
  tags as GDAL writes them, the file by tifffile: :func:`_geotiff_tags`);
* Landsat cube [6, 4, 21] (band, quarter, year 2000-2020): integers 0-255 as floats,
  vegetation greener in spring and summer, snow in cold winters, a few cloudy NaN cells;
* bioclim cube [4, 19, 12]: :func:`~.climate.bioclim_cube`.

Cubes are ``torch.save``'d float32 tensors, whose zip record is named after the file, as
the real. Each survey renders from its own seed, so the files are the same whatever
process writes them; the work is spread over worker processes.
"""

import functools
import io
import logging
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import tifffile
import torch
from PIL import Image
from rasterio.io import MemoryFile
from rasterio.transform import from_origin
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from geolifeclef.demo.patches import ALIGNED_LANDCOVER, argmax_first_axis, smooth_patch_noise
from geolifeclef.demo.surveys.climate import bioclim_cube
from geolifeclef.demo.surveys.world import LAEA_EUROPE
from geolifeclef.survey_layout import SURVEY_ARCHIVES, SurveyLayout

log = logging.getLogger(__name__)

SENTINEL_BANDS = ("red", "green", "blue", "nir")
SENTINEL_NODATA = -1
SENTINEL_PIXEL_M = 10.0
JPEG_QUALITY = 90
"""The real GLC 2024 JPEGs' quantisation tables are libjpeg's at quality 90."""
LANDSAT_BANDS = ("red", "green", "blue", "nir", "swir1", "swir2")
LANDSAT_YEARS = tuple(range(2000, 2021))

# Per aligned land-cover class (ALIGNED_LANDCOVER order): Sentinel-2 reflectance x 10^4
# (red, green, blue, nir), Landsat values 0-255 (LANDSAT_BANDS), and the seasonal factor
# of the near-infrared per quarter (vegetation greens up in spring and summer).
_SENTINEL = np.array(
    [
        [1300, 1200, 1050, 2000],
        [800, 850, 550, 3000],
        [450, 750, 380, 3600],
        [300, 550, 280, 3900],
        [220, 400, 230, 2400],
        [650, 700, 480, 2600],
        [380, 520, 380, 1900],
        [250, 380, 450, 180],
        [1700, 1550, 1300, 2200],
    ],
    dtype=np.float32,
)
_LANDSAT = np.array(
    [
        [38, 36, 30, 52, 58, 48],
        [24, 26, 14, 68, 62, 38],
        [14, 19, 9, 78, 52, 26],
        [9, 14, 6, 84, 44, 19],
        [7, 10, 5, 54, 30, 14],
        [26, 27, 15, 56, 66, 42],
        [12, 16, 10, 44, 30, 15],
        [8, 10, 11, 6, 4, 3],
        [58, 55, 48, 68, 88, 72],
    ],
    dtype=np.float64,
)
_GREENING = np.array(
    [
        [1.0, 1.0, 1.0, 1.0],
        [0.75, 1.25, 0.95, 0.8],
        [0.8, 1.15, 1.1, 0.9],
        [0.7, 1.15, 1.2, 0.85],
        [0.92, 1.03, 1.05, 0.97],
        [0.9, 1.08, 1.05, 0.95],
        [0.85, 1.1, 1.1, 0.9],
        [1.0, 1.0, 1.0, 1.0],
        [1.0, 1.0, 1.0, 1.0],
    ]
)
assert len(_SENTINEL) == len(_LANDSAT) == len(_GREENING) == len(ALIGNED_LANDCOVER)


@dataclass
class SurveyFiles:
    """What the per-survey files are rendered from, one row per survey."""

    survey_id: np.ndarray
    split: np.ndarray
    mix: np.ndarray
    temperature: np.ndarray
    """Mean temperature (deg C): snow in the Landsat winter quarter of cold places."""
    normals: np.ndarray
    """(n, 4, 12) monthly normals (:func:`~.climate.monthly_normals`)."""
    laea: np.ndarray
    """(n, 2) easting, northing in LAEA Europe (the GeoTIFF's centre)."""
    seed: int
    anomalies: np.ndarray
    """(2, 19, 12) the years' weather, shared (:func:`~.climate.yearly_anomalies`)."""

    def __len__(self) -> int:
        return len(self.survey_id)

    def rows(self, start: int, stop: int) -> "SurveyFiles":
        shared = {"seed", "anomalies"}
        return SurveyFiles(
            **{
                f.name: getattr(self, f.name)
                if f.name in shared
                else getattr(self, f.name)[start:stop]
                for f in fields(self)
            }
        )


def sentinel_reflectance(mix: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """(4, size, size) float32 reflectance x 10^4 of a patch drawn around ``mix``."""
    n_classes = len(ALIGNED_LANDCOVER)
    coarse = max(3, size // 24)  # land-cover parcels of ~250 m
    scores = np.log(mix + 1e-4).astype(np.float32)[:, None, None] + 1.2 * smooth_patch_noise(
        rng, n_classes, coarse, size
    )
    classes = argmax_first_axis(scores)
    texture = smooth_patch_noise(rng, 1, 2 * coarse, size)[0]
    grain = rng.standard_normal((size, size)).astype(np.float32)
    reflectance = _SENTINEL[classes] * (1 + 0.08 * texture[..., None])
    reflectance += 40 * grain[..., None] * np.array([1, 1, 1, 3], dtype=np.float32)
    return np.clip(reflectance, 1, 10_000).transpose(2, 0, 1)


def landsat_cube(mix: np.ndarray, temperature: float, rng: np.random.Generator) -> np.ndarray:
    """(6, 4, 21) float32 Landsat cube: the mix's seasonal colours over 21 years."""
    base = mix @ _LANDSAT  # (6,)
    greening = mix @ _GREENING  # (4,)
    season = np.empty((6, 4))
    season[:3] = 1 + 0.6 * (1 - greening)  # visible: darker when greener
    season[3] = greening
    season[4:] = 1 + 0.3 * (1 - greening)
    snow = float(np.clip((3 - temperature) / 6, 0, 1))
    # Snow in the winter quarter: bright in the visible, dark in the short-wave infrared.
    season[:, 0] *= 1 + snow * np.array([2.0, 2.0, 2.0, 0.6, -0.4, -0.4])
    years = len(LANDSAT_YEARS)
    weather = 1 + rng.normal(0, 0.06, (1, 4, years)) + rng.normal(0, 0.03, (6, 4, years))
    cube = np.clip(np.round(base[:, None, None] * season[:, :, None] * weather), 0, 255)
    if rng.random() < 0.02:  # a quarter with no cloud-free pixel
        cube[:, rng.integers(4), rng.integers(years)] = np.nan
    return cube.astype(np.float32)


_JPEG_VALUE = np.round(255 * (np.arange(10_001) / 10_000) ** (1 / 2.5)).astype(np.uint8)
"""The GLC 2024 JPEGs' value of each integer reflectance x 10^4: clipped at 10,000, scaled
to [0, 1], gamma 1/2.5, x 255 (a table: 6 times faster than the power)."""


def _make_folder(folder: Path) -> None:
    """Create a patch folder if missing (a stat is cheaper than mkdir's FileExistsError, and
    10,000 patches share 100 x 100 folders)."""
    if not folder.is_dir():
        folder.mkdir(parents=True, exist_ok=True)


def _to_jpeg_values(reflectance: np.ndarray) -> np.ndarray:
    return _JPEG_VALUE[np.clip(np.round(reflectance), 0, 10_000).astype(np.intp)]


def _write_jpeg(path, array: np.ndarray) -> None:
    _make_folder(path.parent)
    Image.fromarray(np.ascontiguousarray(array)).save(
        path, format="JPEG", quality=JPEG_QUALITY, subsampling="4:2:0"
    )


_GEOTIFF_TAGS = {
    33550: "ModelPixelScale",
    34735: "GeoKeyDirectory",
    34736: "GeoDoubleParams",
    34737: "GeoAsciiParams",
    42112: "GDAL_METADATA (the band descriptions)",
    42113: "GDAL_NODATA",
}
_TIEPOINT = 33922


@functools.cache
def _geotiff_tags() -> tuple:
    """The tags GDAL writes for a GLC 2025 patch (its LAEA Europe georeference without an
    EPSG code, band descriptions, nodata), but the tie point: taken once from a file that
    rasterio writes in memory, then given to tifffile, which writes a patch in a tenth of
    GDAL's time (GDAL spends ~15 ms a file on the CRS)."""
    size = SURVEY_ARCHIVES[2025].patch_size
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": len(SENTINEL_BANDS),
        "dtype": "int16",
        "nodata": SENTINEL_NODATA,
        "crs": LAEA_EUROPE,
        "transform": from_origin(0, 0, SENTINEL_PIXEL_M, SENTINEL_PIXEL_M),
    }
    with MemoryFile() as memory:
        with memory.open(**profile) as dataset:
            dataset.write(np.zeros((len(SENTINEL_BANDS), size, size), np.int16))
            dataset.descriptions = SENTINEL_BANDS
        with tifffile.TiffFile(io.BytesIO(memory.read())) as tiff:
            tags = tiff.pages[0].tags
            return tuple(
                (code, int(tags[code].dtype), tags[code].count, tags[code].value, True)
                for code in _GEOTIFF_TAGS
            )


def _write_geotiff(path, patch: np.ndarray, easting: float, northing: float) -> None:
    """One GLC 2025 patch (bands, rows, columns), centred on the point on a 10 m grid: LZW,
    strips of 16 rows, pixel-interleaved, as the real files."""
    size = patch.shape[-1]
    half = size / 2 * SENTINEL_PIXEL_M
    west = round(easting / SENTINEL_PIXEL_M) * SENTINEL_PIXEL_M - half
    north = round(northing / SENTINEL_PIXEL_M) * SENTINEL_PIXEL_M + half
    tiepoint = (_TIEPOINT, 12, 6, (0.0, 0.0, 0.0, float(west), float(north), 0.0), True)
    _make_folder(path.parent)
    tifffile.imwrite(
        path,
        patch.transpose(1, 2, 0),
        photometric="minisblack",
        planarconfig="contig",
        compression="lzw",
        rowsperstrip=16,
        extratags=[*_geotiff_tags(), tiepoint],
        metadata=None,
        software=False,
        maxworkers=1,
    )


def _write_cube(path, array: np.ndarray) -> None:
    torch.save(torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)), path)


def write_one_survey(layout: SurveyLayout, files: SurveyFiles, i: int) -> None:
    """Render and write the patch(es) and both cubes of survey ``i`` of ``files``."""
    survey_id, split = int(files.survey_id[i]), str(files.split[i])
    # One generator per file kind: a survey's cubes are the same in both layouts.
    rng, landsat_rng, bioclim_rng = (
        np.random.default_rng([files.seed, survey_id, kind]) for kind in range(3)
    )
    size = layout.names.patch_size
    reflectance = sentinel_reflectance(files.mix[i], size, rng)
    if layout.names.satellite == "jpeg":
        values = _to_jpeg_values(reflectance)
        _write_jpeg(layout.patch(split, "rgb", survey_id), values[:3].transpose(1, 2, 0))
        _write_jpeg(layout.patch(split, "nir", survey_id), values[3])
    else:
        patch = np.round(reflectance).astype(np.int16)
        if rng.random() < 0.01:  # the edge of a scene: a strip without data
            patch[:, :, size - 1 - rng.integers(size // 4) :] = SENTINEL_NODATA
        _write_geotiff(layout.patch(split, "rgbn", survey_id), patch, *files.laea[i])
    _write_cube(
        layout.cube("landsat", split, survey_id),
        landsat_cube(files.mix[i], float(files.temperature[i]), landsat_rng),
    )
    _write_cube(
        layout.cube("bioclim", split, survey_id),
        bioclim_cube(files.normals[i], files.anomalies, bioclim_rng),
    )


def _write_chunk(args: tuple[SurveyLayout, SurveyFiles]) -> int:
    layout, files = args
    with threadpool_limits(1):  # one BLAS thread per worker: the workers fill the cores
        torch.set_num_threads(1)
        for i in range(len(files)):
            write_one_survey(layout, files, i)
    return len(files)


def write_survey_files(layout: SurveyLayout, files: SurveyFiles, workers: int) -> None:
    """Render and write every survey's patch(es) and cubes, in ``workers`` processes."""
    log.info("writing the patches and cubes of %d surveys with %d workers", len(files), workers)
    for split in sorted(set(files.split.tolist())):
        for kind in ("landsat", "bioclim"):
            layout.cube_folder(kind, split).mkdir(parents=True, exist_ok=True)
    chunk = 250
    chunks = [(layout, files.rows(i, i + chunk)) for i in range(0, len(files), chunk)]
    with tqdm(total=len(files), desc="survey files", unit="survey", mininterval=2) as bar:
        if workers <= 1:
            for args in chunks:
                bar.update(_write_chunk(args))
        else:
            with ProcessPoolExecutor(workers) as pool:
                for done in pool.map(_write_chunk, chunks):
                    bar.update(done)
