"""The CSV files of a survey demo, in the archive's columns and cell forms.

GLC24-25-FORMAT §4 and §7: comma-separated, one header line; the PA train metadata in long
form (one row per survey and species, ``speciesId`` written as a float, a few duplicate
rows, a few empty or ``-inf`` areas and empty uncertainties), the PA test metadata one row
per survey without ``speciesId``, the P0 metadata one row per occurrence, the sample
submission, and the five values CSVs per split keyed by ``surveyId`` (with a few NaN and
infinite cells; in 2025 one file starts with an unnamed pandas index column).
"""

from pathlib import Path

import numpy as np
import pandas as pd

from geolifeclef.atomic import atomic_path
from geolifeclef.demo.patches import ALIGNED_LANDCOVER
from geolifeclef.demo.surveys.climate import BIO_COLUMNS, bioclim_variables, monthly_normals
from geolifeclef.demo.surveys.surveys import PresenceOnly, Surveys
from geolifeclef.demo.surveys.world import BIOGEOGRAPHIC_REGIONS, COUNTRIES
from geolifeclef.survey_layout import SurveyLayout

PA_COLUMNS = (
    "lon",
    "lat",
    "year",
    "geoUncertaintyInM",
    "areaInM2",
    "region",
    "country",
    "speciesId",
    "surveyId",
)
PO_COLUMNS = {
    2024: (
        "year",
        "month",
        "day",
        "lat",
        "lon",
        "geoUncertaintyInM",
        "taxonRank",
        "date",
        "dayOfYear",
        "speciesId",
        "surveyId",
    ),
}
PO_COLUMNS[2025] = ("publisher", *PO_COLUMNS[2024])
SUBMISSION_COLUMNS = ("surveyId", "predictions")
SAMPLE_SUBMISSION_K = 25
"""Species per row of the sample submission (the organizers' top-25)."""
DUPLICATE_ROW_SHARE = 0.003
"""Share of PA train rows written twice (readers deduplicate (survey, species) pairs)."""

ELEVATION_COLUMNS = ("Elevation",)
SOILGRID_COLUMNS = tuple(
    f"Soilgrid-{v}"
    for v in ("bdod", "cec", "cfvo", "clay", "nitrogen", "phh2o", "sand", "silt", "soc")
)
LANDCOVER_COLUMNS = tuple(f"LandCover-{i}" for i in range(1, 14))
HUMAN_FOOTPRINT_COLUMNS = {
    # GLC 2024: Venter et al.'s layers (16; the format doc names 8 of them, the rest are
    # the same family's); GLC 2025: the 22 OSM-derived classes.
    2024: tuple(
        f"HumanFootprint-{v}"
        for v in (
            "Built1994",
            "Built2009",
            "croplands1992",
            "croplands2005",
            "Lights1994",
            "Lights2009",
            "NavWater1994",
            "NavWater2009",
            "Pasture1993",
            "Pasture2009",
            "Popdensity1990",
            "Popdensity2010",
            "Railways",
            "Roads",
            "HFP1993",
            "HFP2009",
        )
    ),
    2025: tuple(
        f"HumanFootprint-{v}"
        for v in (
            "cemetery",
            "reservoir",
            "greenhouse",
            "farmland",
            "building-copernicus",
            "forest",
            "harbour",
            "building-residential",
            "building-commercial",
            "grass",
            "quarry",
            "road",
            "salt",
            "building-industrial",
            "vineyard",
            "military",
            "construction-site",
            "orchard",
            "meadow",
            "farmyard",
            "dump-site",
            "railway",
        )
    ),
}
INDEXED_VALUES_FILE = ("human_footprint", "train")
"""GLC 2025: the values file written with pandas' unnamed index column first."""

# MODIS MCD12Q1's classification layers (LandCover-1..8) for each aligned class: IGBP, UMD,
# LAI, BGC, PFT, LCCS1, LCCS2, LCCS3 codes (the 13 layers: these 8, three assessments, QC,
# land/water).
_MODIS_CODES = np.array(
    [
        [13, 13, 10, 8, 9, 1, 9, 1],  # artificial
        [12, 12, 3, 5, 7, 31, 36, 30],  # cropland
        [10, 10, 1, 6, 6, 31, 30, 30],  # grassland
        [4, 4, 6, 4, 4, 14, 10, 10],  # broadleaf forest
        [1, 1, 7, 1, 1, 11, 10, 10],  # conifer forest
        [7, 7, 2, 6, 5, 41, 40, 40],  # shrubland
        [11, 11, 1, 6, 6, 31, 30, 50],  # wetland
        [17, 0, 0, 0, 0, 3, 3, 3],  # water
        [16, 15, 9, 7, 11, 1, 1, 1],  # bare
    ]
)
_CLASS = {name: i for i, name in enumerate(ALIGNED_LANDCOVER)}


def _write_csv(path: Path, frame: pd.DataFrame, index: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        frame.to_csv(temporary, index=index, lineterminator="\n")


def _coordinates(values: np.ndarray) -> np.ndarray:
    return np.round(values, 5)


def write_pa_metadata(
    layout: SurveyLayout,
    surveys: Surveys,
    ids: np.ndarray,
    presences: np.ndarray,
    species_ids: np.ndarray,
    rng: np.random.Generator,
) -> tuple[dict[str, np.ndarray], int]:
    """Write the PA train (long) and test metadata; return each split's surveys (indices
    into ``surveys``) in the order their rows first appear (train shuffled, test by
    ascending id), and the number of train rows."""
    order = {}
    train = rng.permutation(np.flatnonzero(surveys.split == "train"))
    survey_rows, species_columns = [], []
    for row in train:
        present = rng.permutation(np.flatnonzero(presences[row]))
        survey_rows.append(np.full(len(present), row))
        species_columns.append(present)
    rows, columns = np.concatenate(survey_rows), np.concatenate(species_columns)
    n_duplicates = int(round(DUPLICATE_ROW_SHARE * len(rows)))
    written = np.sort(
        np.concatenate([np.arange(len(rows)), rng.choice(len(rows), n_duplicates, replace=False)]),
        kind="stable",
    )
    rows, columns = rows[written], columns[written]
    frame = _survey_columns(surveys, rows, ids)
    frame.insert(7, "speciesId", species_ids[columns].astype(np.float64))
    _write_csv(layout.pa_metadata("train"), frame[list(PA_COLUMNS)])
    order["train"] = train
    test = np.flatnonzero(surveys.split == "test")
    test = test[np.argsort(ids[test], kind="stable")]
    test_columns = [c for c in PA_COLUMNS if c != "speciesId"]
    _write_csv(layout.pa_metadata("test"), _survey_columns(surveys, test, ids)[test_columns])
    order["test"] = test
    return order, len(frame)


def _survey_columns(surveys: Surveys, rows: np.ndarray, ids: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "lon": _coordinates(surveys.lonlat[rows, 0]),
            "lat": _coordinates(surveys.lonlat[rows, 1]),
            "year": surveys.year[rows],
            "geoUncertaintyInM": surveys.geo_uncertainty_m[rows],
            "areaInM2": surveys.area_written[rows],
            "region": np.asarray(BIOGEOGRAPHIC_REGIONS)[surveys.region[rows]],
            "country": np.asarray(COUNTRIES)[surveys.country[rows]],
            "surveyId": ids[rows],
        }
    )


def write_po_metadata(
    layout: SurveyLayout, po: PresenceOnly, species: list[np.ndarray], year: int
) -> int:
    """Write the P0 metadata, one row per occurrence; return the number of rows."""
    counts = np.array([len(s) for s in species], dtype=np.int64)
    rows = np.repeat(np.arange(len(counts)), counts)
    day = po.day_of_year[rows]
    known = day > 0
    dates = pd.to_datetime(po.year[rows].astype(str), format="%Y") + pd.to_timedelta(
        np.where(known, day - 1, 0), unit="D"
    )
    month = np.where(known, dates.month, np.nan)
    day_of_month = np.where(known, dates.day, np.nan)
    taxon_rank = np.where(
        np.arange(len(rows)) % 23 == 0,
        "SUBSPECIES",
        np.where(np.arange(len(rows)) % 97 == 0, "VARIETY", "SPECIES"),
    )
    frame = pd.DataFrame(
        {
            "publisher": po.publisher[rows],
            "year": po.year[rows],
            "month": month,
            "day": day_of_month,
            "lat": _coordinates(po.lonlat[rows, 1]),
            "lon": _coordinates(po.lonlat[rows, 0]),
            "geoUncertaintyInM": po.geo_uncertainty_m[rows],
            "taxonRank": taxon_rank,
            "date": np.where(known, dates.strftime("%Y-%m-%d"), ""),
            "dayOfYear": pd.array(np.where(known, day, 0), dtype="Int64"),
            "speciesId": np.concatenate(species).astype(np.float64),
            "surveyId": po.survey_id[rows],
        }
    )
    frame.loc[~known, "dayOfYear"] = pd.NA
    _write_csv(layout.po_metadata, frame[list(PO_COLUMNS[year])])
    return len(frame)


def write_sample_submission(layout: SurveyLayout, test_ids: np.ndarray, species: np.ndarray):
    """The sample submission: the same species list (space-separated) for every test survey,
    in the test metadata's order."""
    text = " ".join(str(int(s)) for s in species)
    _write_csv(
        layout.sample_submission,
        pd.DataFrame({"surveyId": test_ids, "predictions": np.full(len(test_ids), text)}),
    )


def survey_values(surveys: Surveys, year: int, rng: np.random.Generator) -> dict[str, pd.DataFrame]:
    """The five values families of the surveys (one row each, in their order), derived
    from the hidden fields and land-cover mix at each survey, before any cell is lost."""
    n = len(surveys)
    env, mix = surveys.env, surveys.mix

    def noise(scale: float) -> np.ndarray:
        return rng.normal(0, scale, n)

    clay = env["soil_clay"]
    organic = env["soil_organic"]
    silt = 10 * (30 + 0.2 * clay) + noise(20)
    soil = {
        "bdod": 135 - 0.5 * organic + noise(5),
        "cec": 60 + 5 * clay + 1.2 * organic + noise(15),
        "cfvo": 40 + 0.08 * env["elevation"] + noise(20),
        "clay": 10 * clay,
        "nitrogen": 80 + 9 * organic + noise(30),
        "phh2o": env["soil_ph"],
        "sand": 1000 - 10 * clay - silt,
        "silt": silt,
        "soc": 10 * organic + noise(20),
    }
    dominant = mix.argmax(axis=1)
    # Three assessment layers: the classifier's confidence, high where one class dominates.
    confidence = np.clip(100 * mix.max(axis=1)[:, None] + rng.normal(0, 8, (n, 3)), 0, 100)
    landcover = np.concatenate(
        [
            _MODIS_CODES[dominant],
            np.round(confidence),
            (rng.random(n) < 0.05)[:, None].astype(float),
            np.where(dominant == _CLASS["water"], 1, 2)[:, None],
        ],
        axis=1,
    )
    return {
        "bioclimatic": pd.DataFrame(
            bioclim_variables(monthly_normals(env)), columns=list(BIO_COLUMNS)
        ),
        "elevation": pd.DataFrame({"Elevation": np.round(env["elevation"] + noise(15))}),
        "human_footprint": _human_footprint(surveys, year, rng),
        "landcover": pd.DataFrame(landcover, columns=list(LANDCOVER_COLUMNS)),
        "soilgrids": pd.DataFrame(
            {f"Soilgrid-{k}": np.round(np.clip(v, 0, None)) for k, v in soil.items()}
        ),
    }


def _human_footprint(surveys: Surveys, year: int, rng: np.random.Generator) -> pd.DataFrame:
    n = len(surveys)
    human, mix = surveys.env["human"], surveys.mix
    share = {name: mix[:, i] for name, i in _CLASS.items()}
    forest = share["broadleaf_forest"] + share["conifer_forest"]
    if year == 2024:  # Venter et al.'s pressure scores
        built, crops, lights = 10 * share["artificial"], 7 * share["cropland"], 10 * human
        pasture, population = 4 * share["grassland"], np.clip(12 * human - 1, 0, 10)
        water = 4 * np.exp(-surveys.env["continentality"] * 4)
        roads = np.clip(8 * human + rng.normal(0, 1, n), 0, 8)
        rails = np.where(rng.random(n) < human, 8.0, 0.0)
        total = built + crops + lights + pasture + population + water + roads + rails
        # Two years of each layer, the earlier a little lower, in the columns' order.
        layers = [built * 0.8, built, crops, crops * 1.05, lights * 0.8, lights, water, water]
        layers += [pasture, pasture, population * 0.9, population, rails, roads]
        layers += [total * 0.9, total]
        values = np.round(np.clip(np.stack(layers, axis=1), 0, 50), 3)
    else:  # shares of OSM classes around the survey
        sparse = rng.random((n, 22)) < 0.04
        values = np.where(sparse, rng.uniform(0, 0.1, (n, 22)), 0.0)
        columns = [c.removeprefix("HumanFootprint-") for c in HUMAN_FOOTPRINT_COLUMNS[2025]]
        dense = {
            "farmland": share["cropland"],
            "building-copernicus": share["artificial"] * human,
            "forest": forest,
            "building-residential": share["artificial"] * human * 0.6,
            "grass": share["grassland"] * 0.5,
            "road": np.clip(human * 0.3 + rng.normal(0, 0.02, n), 0, 1),
            "meadow": share["grassland"] * 0.5,
            "vineyard": share["shrubland"] * surveys.env["seasonality_p"] * 0.3,
        }
        for name, value in dense.items():
            values[:, columns.index(name)] = value
        values = np.round(np.clip(values, 0, 1), 4)
    return pd.DataFrame(values, columns=list(HUMAN_FOOTPRINT_COLUMNS[year]))


def write_values(
    layout: SurveyLayout,
    split: str,
    ids: np.ndarray,
    values: dict[str, pd.DataFrame],
    rng: np.random.Generator,
) -> None:
    """Write the five values CSVs of a split (rows in ``ids``' order), after losing a few
    cells: NaN where a raster had no value, an infinity or two where its extraction
    overflowed, as the real files have."""
    # The human footprint's columns differ between the years: its cells are lost last, so
    # that the other families' train files are the same in both layouts.
    for family in sorted(values, key=lambda name: name == "human_footprint"):
        frame = values[family]
        frame = frame.astype(np.float64)
        cells = frame.to_numpy(copy=True)
        cells[rng.random(cells.shape) < 0.003] = np.nan
        for sign in (1, -1):
            if cells.size and rng.random() < 0.7:
                cells[rng.integers(cells.shape[0]), rng.integers(cells.shape[1])] = sign * np.inf
        written = pd.DataFrame(cells, columns=frame.columns)
        written.insert(0, "surveyId", ids)
        indexed = layout.names.year == 2025 and (family, split) == INDEXED_VALUES_FILE
        _write_csv(layout.values(family, split), written, index=indexed)
