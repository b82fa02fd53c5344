"""The GeoLifeCLEF 2024 and 2025 archive layouts: the one place that knows their file names.

Since 2023 the task is a set of plant species per presence-absence (PA) survey. The two
Kaggle archives hold the same kinds of files under names that differ from year to year and
from split to split; every reader and the demo generator ask this module where a file lives,
so that the demo and the real archives are read by the same code. The facts and their
sources are in ``GLC24-25-FORMAT.md`` (§2 to §7); the traps handled here:

* ``P0`` (zero) in the presence-only metadata's name; a copy saved as ``PO`` is found too;
* GLC 2025's ``Satelite`` with one "l"; ``Satellite`` is found too;
* GLC 2024's doubled folders (``TimeSeries-Cubes/TimeSeries-Cubes``,
  ``EnvironmentalRasters/EnvironmentalRasters``); one level is found too;
* Landsat cube files with hyphens for train and underscores for test (and a GLC 2024 train
  folder with underscores holding files with hyphens): a cube folder is listed once and its
  files matched by the survey id they end with (:data:`CUBE_FILE`), whatever the spelling;
* survey ids of fewer than four digits: 642 lives in ``42/6/642.jpeg``.

Paths are given in the archive's own spelling (what the demo writes); ``resolve`` picks the
first spelling of a path that exists in an unpacked copy.
"""

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SURVEY_SPLITS = ("train", "test")
"""The PA splits of the archives (val is carved from train by the workflow)."""

ARCHIVE_SPLITS = {"train": "train", "val": "train", "test": "test"}
"""The archive's split whose files hold each workflow split's surveys."""

N_LABEL_SLOTS = 11_255
"""Species ids of GLC 2024 and 2025 run from 0 to 11,254 (PO and PA together)."""

CUBE_SHAPES = {"landsat": (6, 4, 21), "bioclim": (4, 19, 12)}
"""The two time-series cubes per survey: Landsat (band, quarter, year 2000-2020) and
monthly bioclim (variable, year 2000-2018, month)."""

CUBE_FILE = re.compile(r"_(\d+)_cube\.pt$")
"""A cube file's name ends with ``_<surveyId>_cube.pt``, whatever comes before it."""

VALUE_FAMILIES = ("bioclimatic", "elevation", "human_footprint", "landcover", "soilgrids")
"""The pre-extracted values CSVs, one per family and split, keyed by ``surveyId``."""


@dataclass(frozen=True)
class SurveyArchiveNames:
    """How one year's Kaggle archive spells its files (``{split}`` is train or test)."""

    year: int
    prefix: str
    """``GLC24`` or ``GLC25``."""
    satellite: str
    """The Sentinel-2 patches: ``jpeg`` (RGB and NIR files, 128 px) or ``tiff`` (one
    4-band int16 file, 64 px)."""
    patch_size: int
    patch_folders: dict[str, str]
    """Folder of each split's patches, by band group (``rgb``/``nir``, or ``rgbn``)."""
    patch_modalities: dict[str, str]
    """The band group of each patch modality (``layout.SURVEY_PATCH_MODALITIES``)."""
    cube_folders: dict[str, str]
    """Folder of each cube kind, with ``{split}`` and ``{Split}`` (capitalised)."""
    cube_files: dict[str, str]
    """File name of each cube kind, with ``{split}`` and ``{id}``, train spelling."""
    values_folder: str
    values_subfolders: dict[str, str]
    """Subfolder of each values family under ``values_folder``."""

    def cube_name(self, kind: str, split: str, survey_id: int) -> str:
        name = self.cube_files[kind].format(split=split, id=int(survey_id))
        if kind == "landsat" and split == "test":  # the test files use underscores
            name = name.replace("landsat-time-series", "landsat_time_series")
        return name


GLC2024 = SurveyArchiveNames(
    year=2024,
    prefix="GLC24",
    satellite="jpeg",
    patch_size=128,
    patch_folders={
        "rgb": "PA_{Split}_SatellitePatches_RGB/pa_{split}_patches_rgb",
        "nir": "PA_{Split}_SatellitePatches_NIR/pa_{split}_patches_nir",
    },
    patch_modalities={"s2_rgb": "rgb", "s2_nir": "nir"},
    cube_folders={
        "landsat": "TimeSeries-Cubes/TimeSeries-Cubes/GLC24-PA-{split}-landsat_time_series",
        "bioclim": "TimeSeries-Cubes/TimeSeries-Cubes/GLC24-PA-{split}-bioclimatic_monthly",
    },
    cube_files={
        "landsat": "GLC24-PA-{split}-landsat-time-series_{id}_cube.pt",
        "bioclim": "GLC24-PA-{split}-bioclimatic_monthly_{id}_cube.pt",
    },
    values_folder="EnvironmentalRasters/EnvironmentalRasters",
    values_subfolders={
        "bioclimatic": "Climate/Average 1981-2010",
        "elevation": "Elevation",
        "human_footprint": "Human Footprint",
        "landcover": "LandCover",
        "soilgrids": "SoilGrids",
    },
)
GLC2025 = SurveyArchiveNames(
    year=2025,
    prefix="GLC25",
    satellite="tiff",
    patch_size=64,
    patch_folders={"rgbn": "SatelitePatches/PA-{split}"},
    patch_modalities={"s2": "rgbn"},
    cube_folders={
        "landsat": "SateliteTimeSeries-Landsat/cubes/PA-{split}",
        "bioclim": "BioclimTimeSeries/cubes/PA-{split}",
    },
    cube_files={
        "landsat": "GLC25-PA-{split}-landsat-time-series_{id}_cube.pt",
        "bioclim": "GLC25-PA-{split}-bioclimatic_monthly_{id}_cube.pt",
    },
    values_folder="EnvironmentalValues",
    values_subfolders={
        "bioclimatic": "ClimateAverage_1981-2010",
        "elevation": "Elevation",
        "human_footprint": "HumanFootprint",
        "landcover": "LandCover",
        "soilgrids": "SoilGrids",
    },
)
SURVEY_ARCHIVES = {2024: GLC2024, 2025: GLC2025}

_ALTERNATIVE_SPELLINGS = (
    # (as the archive spells it, as a copy may spell it): tried in this order
    ("_P0_", "_PO_"),
    ("Satelite", "Satellite"),
    ("TimeSeries-Cubes/TimeSeries-Cubes", "TimeSeries-Cubes"),
    ("EnvironmentalRasters/EnvironmentalRasters", "EnvironmentalRasters"),
)


def resolve(path: Path) -> Path:
    """``path`` if it exists, else the first existing spelling of it that an unpacked copy
    may use (``PO`` for ``P0``, ``Satellite``, one level of a doubled folder); ``path``
    itself when none exists (the caller names it as missing)."""
    if path.exists():
        return path
    text = str(path)
    for written, alternative in _ALTERNATIVE_SPELLINGS:
        if written in text:
            candidate = Path(text.replace(written, alternative))
            if candidate.exists():
                return candidate
    return path


def archive_split(split: str) -> str:
    """The archive's split (train or test) whose folders hold ``split``'s surveys: val is
    carved from the archive's train."""
    if split not in ARCHIVE_SPLITS:
        raise ValueError(f"split {split!r}: choose from {sorted(ARCHIVE_SPLITS)}")
    return ARCHIVE_SPLITS[split]


def patch_subpath(survey_id: int, extension: str) -> Path:
    """``<last two digits>/<the two before>/<id>.<ext>``: 1322301 -> ``01/23/1322301``;
    an id of three digits has a one-character second folder (642 -> ``42/6/642``)."""
    return Path(_subpath(str(int(survey_id)), extension))


def _subpath(text: str, extension: str) -> str:
    return f"{text[-2:]}/{text[-4:-2]}/{text}.{extension}"


@dataclass(frozen=True)
class SurveyLayout:
    """Paths of every file of an unpacked GLC 2024 or 2025 Kaggle archive under ``root``,
    in the archive's spelling (``resolve`` finds a copy's)."""

    root: Path
    names: SurveyArchiveNames

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    def _path(self, relative: str) -> Path:
        return self.root / relative

    @property
    def root_hint(self) -> str:
        """How a user recognises the archive's folder (in messages)."""
        return f"the one holding {self.pa_metadata('train').name}"

    # -- metadata ------------------------------------------------------------------------
    def pa_metadata(self, split: str) -> Path:
        """``GLC2x_PA_metadata_{train,test}.csv``: one row per (survey, species) in train,
        one per survey (no ``speciesId``) in test."""
        return self._path(f"{self.names.prefix}_PA_metadata_{split}.csv")

    @property
    def po_metadata(self) -> Path:
        """``GLC2x_P0_metadata_train.csv`` (a zero): one row per presence-only occurrence."""
        return self._path(f"{self.names.prefix}_P0_metadata_train.csv")

    @property
    def sample_submission(self) -> Path:
        return self._path(f"{self.names.prefix}_SAMPLE_SUBMISSION.csv")

    def metadata_files(self) -> list[Path]:
        """What every target starts from: the PA metadata of both splits."""
        return [self.pa_metadata(split) for split in SURVEY_SPLITS]

    # -- Sentinel-2 patches --------------------------------------------------------------
    def patch_folder(self, split: str, bands: str) -> Path:
        """The folder of one split's patches of band group ``bands`` (``rgb``, ``nir`` for
        GLC 2024; ``rgbn`` for GLC 2025)."""
        template = self.names.patch_folders[bands]
        return self._path(template.format(split=split, Split=split.capitalize()))

    def patch_folders(self, split: str) -> list[Path]:
        return [self.patch_folder(split, bands) for bands in self.names.patch_folders]

    def patch(self, split: str, bands: str, survey_id: int) -> Path:
        """One survey's patch file: ``.../01/23/1322301.jpeg`` or ``.../98/79/1027998.tiff``."""
        return self.patch_folder(split, bands) / patch_subpath(survey_id, self.names.satellite)

    def patch_files(self, split: str) -> "SurveyPatchFiles":
        """The patch files of workflow split ``split`` (train, val or test) by modality,
        in the folders of this copy (``resolve``): what the patch stores read."""
        source = archive_split(split)
        folders = {
            modality: resolve(self.patch_folder(source, bands))
            for modality, bands in self.names.patch_modalities.items()
        }
        return SurveyPatchFiles(self.root, folders, self.names.satellite)

    # -- time-series cubes ---------------------------------------------------------------
    def cube_folder(self, kind: str, split: str) -> Path:
        """The flat folder of one split's ``landsat`` or ``bioclim`` cubes."""
        template = self.names.cube_folders[kind]
        return self._path(template.format(split=split, Split=split.capitalize()))

    def cube(self, kind: str, split: str, survey_id: int) -> Path:
        """One survey's cube in the archive's spelling (readers match files by
        :data:`CUBE_FILE` instead: the spelling varies)."""
        return self.cube_folder(kind, split) / self.names.cube_name(kind, split, survey_id)

    # -- pre-extracted values ------------------------------------------------------------
    def values(self, family: str, split: str) -> Path:
        """The values CSV of one family (:data:`VALUE_FAMILIES`) and PA split."""
        folder = self._path(self.names.values_folder) / self.names.values_subfolders[family]
        return folder / f"{self.names.prefix}-PA-{split}-{family}.csv"

    def values_files(self, split: str) -> list[Path]:
        return [self.values(family, split) for family in VALUE_FAMILIES]

    # -- what the workflow reads, by part ------------------------------------------------
    def archive_parts(self) -> dict[str, list[Path]]:
        """What the workflow may read, by part (as ``settings.archive.archive_inputs`` for
        GLC 2022), each path as an unpacked copy spells it: the PA metadata
        (``observations``: every target starts from it), the values CSVs (``values``), the
        cube folders (``cubes``) and the Sentinel-2 folders (``patches``). The presence-only
        file is optional (:attr:`po_metadata`): the ingest reads it when it is there."""
        parts = {
            "observations": self.metadata_files(),
            "values": [path for split in SURVEY_SPLITS for path in self.values_files(split)],
            "cubes": [
                self.cube_folder(kind, split) for split in SURVEY_SPLITS for kind in CUBE_SHAPES
            ],
            "patches": [folder for split in SURVEY_SPLITS for folder in self.patch_folders(split)],
        }
        return {part: [resolve(path) for path in paths] for part, paths in parts.items()}


@dataclass(frozen=True)
class SurveyPatchFiles:
    """The Sentinel-2 patch files of one split, by modality name: ``patch(observation_id,
    modality)`` as ``layout.DatasetLayout`` has it for 2022, so that the patch stores
    (``geolifeclef.patches.cache``) build either edition's cache."""

    root: Path
    folders: dict[str, Path]
    """Modality -> the folder of its files (as found in this copy)."""
    extension: str

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.folders)

    def patch(self, observation_id: int, modality: str) -> Path:
        """``<folder>/<last two digits>/<the two before>/<id>.<extension>``."""
        return self._folder(modality) / patch_subpath(observation_id, self.extension)

    def patch_paths(self, observation_ids, modality: str) -> list[str]:
        """``patch`` of many surveys, as strings (the change check stats every patch file a
        cache reads: settings.archive.patch_file_states)."""
        folder = str(self._folder(modality))
        texts = np.asarray(observation_ids, dtype=np.int64).astype(str).tolist()
        return [f"{folder}/{_subpath(text, self.extension)}" for text in texts]

    def _folder(self, modality: str) -> Path:
        if modality not in self.folders:
            raise ValueError(f"patch modality {modality!r}: this archive has {list(self.folders)}")
        return self.folders[modality]
