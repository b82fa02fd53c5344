"""The GeoLifeCLEF 2022 dataset layout: the one place that knows file names and formats.

Everything that reads or writes the archive (the demo generator, the ingest step, the
raster extraction, the patch cache) asks this module where a file lives and what it holds,
so the demo dataset and the real Kaggle archive are read by the same code.
See ``GLC22-FORMAT.md`` for the facts behind these constants.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

REGIONS = ("fr", "us")
"""Region codes as they appear in observation file names."""

REGION_DIGIT = {"fr": 1, "us": 2}
"""First digit of an 8-digit observation id for each region."""

RASTER_REGION = {"fr": "FR", "us": "USA"}
"""Region suffix of the raster file names."""

FR_LONGITUDE_THRESHOLD = -10.0
"""The reference extractor reads the FR raster when longitude > -10, the USA one otherwise."""

OBSERVATION_ID_DIGITS = 8
N_SPECIES = 17_037
"""Species ids of the real archive run from 0 to 17,036."""

CSV_SEPARATOR = ";"
TRAIN_COLUMNS = ("observation_id", "latitude", "longitude", "species_id", "subset")
TEST_COLUMNS = ("observation_id", "latitude", "longitude")
SUBSETS = ("train", "val")
SPLITS = ("train", "val", "test")

BIOCLIMATIC_VARIABLES = tuple(f"bio_{i}" for i in range(1, 20))
PEDOLOGIC_VARIABLES = (
    "bdticm",
    "bldfie",
    "cecsol",
    "clyppt",
    "orcdrc",
    "phihox",
    "sltppt",
    "sndppt",
)
ENV_VARIABLES = BIOCLIMATIC_VARIABLES + PEDOLOGIC_VARIABLES
"""The 27 raster variables, in the column order of ``environmental_vectors.csv``."""


@dataclass(frozen=True)
class Modality:
    """One patch modality of an archive: the one record that the file reader and writer,
    the decoders, the stores, the normalisation, the schema test and the demo read (the
    GLC 2022 patches here, and the Sentinel-2 patches of the survey editions)."""

    name: str
    suffix: str
    """File-name suffix after ``<id>_`` (2022); the survey editions' extension after
    ``<id>.`` (their paths are ``geolifeclef.survey_layout``'s)."""
    file_dtype: np.dtype
    """Dtype (with byte order) of the real files' pixels."""
    channels: int
    codec: str
    """``jpeg`` (baseline JPEG) or ``tiff`` (2022: deflate; 2025: LZW, bands interleaved)."""
    continuous: bool
    """A quantity (normalised by mean and std) rather than categories (land cover)."""
    jpeg_colorspace: tuple[str, str] | None = None
    """(simplejpeg colour space, PIL mode) of a JPEG modality."""
    nodata: int | None = None
    """The files' value for a pixel without data, kept as it is in the stores (bit-exact
    with the files); averaged out of a resized block (``patches.geometry``)."""

    @property
    def array_dtype(self) -> np.dtype:
        """Dtype of its decoded pixels in arrays and caches: the file's, little-endian."""
        return self.file_dtype.newbyteorder("<")


PATCH_MODALITIES = {
    modality.name: modality
    for modality in (
        Modality("rgb", "rgb.jpg", np.dtype(np.uint8), 3, "jpeg", True, ("RGB", "RGB")),
        Modality("near_ir", "near_ir.jpg", np.dtype(np.uint8), 1, "jpeg", True, ("GRAY", "L")),
        Modality("altitude", "altitude.tif", np.dtype(">i2"), 1, "tiff", True),
        Modality("landcover", "landcover.tif", np.dtype("<u1"), 1, "tiff", False),
    )
}
"""Patch modalities, in the order of the archive: rgb, near_ir, altitude, landcover."""
MODALITIES = tuple(PATCH_MODALITIES)
SURVEY_PATCH_MODALITIES = {
    modality.name: modality
    for modality in (
        # GLC 2024: two JPEGs per survey, 128 px
        Modality("s2_rgb", "jpeg", np.dtype(np.uint8), 3, "jpeg", True, ("RGB", "RGB")),
        Modality("s2_nir", "jpeg", np.dtype(np.uint8), 1, "jpeg", True, ("GRAY", "L")),
        # GLC 2025: one GeoTIFF per survey, 64 px, red, green, blue, nir; reflectance x 10^4
        Modality("s2", "tiff", np.dtype("<i2"), 4, "tiff", True, nodata=-1),
    )
}
"""The Sentinel-2 patches of the GLC 2024 and 2025 surveys (``GLC24-25-FORMAT.md`` §5);
where each archive keeps them is ``geolifeclef.survey_layout``'s."""
ALL_PATCH_MODALITIES = {**PATCH_MODALITIES, **SURVEY_PATCH_MODALITIES}
"""Every edition's patch modalities by name: what the stores, decoders and file reader
look up (``PATCH_MODALITIES`` and ``MODALITIES`` stay 2022's)."""
CONTINUOUS_MODALITIES = tuple(m.name for m in ALL_PATCH_MODALITIES.values() if m.continuous)
"""The patch modalities of reflectance or altitude, standardised per channel (every
edition's: land cover is codes)."""
REFLECTANCE_MODALITIES = ("rgb", "near_ir", *SURVEY_PATCH_MODALITIES)
"""The satellite images of every edition: what a brightness augmentation scales."""
PATCH_SIZE = 256
LANDCOVER_CODES = {"fr": tuple(range(1, 18)), "us": tuple(range(20, 33))}
"""Land-cover codes used in each region's patches; 0 means missing."""
N_LANDCOVER_CODES = 34


def region_of_id(observation_id: int) -> str:
    """Region code of an observation id, from its first digit."""
    digit = int(observation_id) // 10 ** (OBSERVATION_ID_DIGITS - 1)
    for region, expected in REGION_DIGIT.items():
        if digit == expected:
            return region
    raise ValueError(f"observation id {observation_id} starts with {digit}, not 1 (fr) or 2 (us)")


def region_digits(observation_ids: np.ndarray) -> np.ndarray:
    """First digit of each 8-digit observation id (vectorised)."""
    return np.asarray(observation_ids, dtype=np.int64) // 10 ** (OBSERVATION_ID_DIGITS - 1)


def _patch_file(folder: str, observation_id: str, modality: str) -> str:
    """``<folder>/44/14/10171444_rgb.jpg``: the archive's patch files, by the id's last four
    digits."""
    text, suffix = observation_id, PATCH_MODALITIES[modality].suffix
    return f"{folder}/{text[-2:]}/{text[-4:-2]}/{text}_{suffix}"


@dataclass(frozen=True)
class DatasetLayout:
    """Paths of every file of an unpacked GLC 2022 archive under ``root``."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    root_hint = "the one holding observations/, metadata/ and rasters/"
    """How a user recognises the archive's folder (in messages)."""

    def observations(self, region: str, split: str) -> Path:
        """``observations/observations_{fr,us}_{train,test}.csv`` (train holds val too)."""
        kind = "test" if split == "test" else "train"
        return self.root / "observations" / f"observations_{region}_{kind}.csv"

    def observation_files(self) -> list[Path]:
        return [self.observations(r, s) for r in REGIONS for s in ("train", "test")]

    @property
    def species_details(self) -> Path:
        return self.root / "metadata" / "species_details.csv"

    @property
    def environmental_variables(self) -> Path:
        return self.root / "metadata" / "environmental_variables.csv"

    @property
    def landcover_original_labels(self) -> Path:
        return self.root / "metadata" / "landcover_original_labels.csv"

    @property
    def landcover_suggested_alignment(self) -> Path:
        return self.root / "metadata" / "landcover_suggested_alignment.csv"

    @property
    def environmental_vectors(self) -> Path:
        return self.root / "pre-extracted" / "environmental_vectors.csv"

    def raster(self, variable: str, region: str) -> Path:
        """``rasters/<var>/<var>_{FR,USA}.tif``."""
        return self.root / "rasters" / variable / f"{variable}_{RASTER_REGION[region]}.tif"

    def raster_files(self) -> list[Path]:
        return [self.raster(v, r) for v in ENV_VARIABLES for r in REGIONS]

    def patch_folder(self, region: str) -> Path:
        return self.root / f"patches-{region}"

    def patch(self, observation_id: int, modality: str) -> Path:
        """Patch file of one observation: ``patches-fr/44/14/10171444_rgb.jpg``."""
        folder = str(self.patch_folder(region_of_id(observation_id)))
        return Path(_patch_file(folder, str(int(observation_id)), modality))

    def patch_paths(self, observation_ids, modality: str) -> list[str]:
        """``patch`` of many observations, as strings: a million in about a second, where
        a Path each takes several (the change check stats every patch file the caches
        read, settings.archive.patch_file_states)."""
        ids = np.asarray(observation_ids, dtype=np.int64)
        folders = {REGION_DIGIT[r]: str(self.patch_folder(r)) for r in REGIONS}
        paths = []
        for digit, text in zip(region_digits(ids).tolist(), ids.astype(str).tolist(), strict=True):
            if digit not in folders:
                region_of_id(int(text))  # raises, naming the id
            paths.append(_patch_file(folders[digit], text, modality))
        return paths
