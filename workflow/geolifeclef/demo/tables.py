"""The CSV files of the dataset: observations, environmental vectors and metadata.

They follow the real archive byte for byte in form: ``;``-separated, ``\\n`` line ends,
observation rows shuffled, and coordinates written as the real files write them (float32
digits in France, rounded decimals in the US). The metadata tables describe the demo's
species, variables and land-cover legends.
"""

from pathlib import Path

import numpy as np
import pandas as pd

from geolifeclef.atomic import atomic_path
from geolifeclef.demo.patches import ALIGNED_LANDCOVER
from geolifeclef.demo.sites import Sites
from geolifeclef.demo.spec import DemoSpec
from geolifeclef.layout import CSV_SEPARATOR, ENV_VARIABLES, LANDCOVER_CODES, REGIONS, DatasetLayout


def _format_coordinates(region: str, values: np.ndarray) -> list[str]:
    """France: float32 values with 15 significant digits; US: 5-6 decimals, as the real CSVs."""
    if region == "fr":
        return [f"{v:.15g}" for v in values.astype(np.float32).astype(np.float64)]
    return [repr(round(float(v), 6)) for v in values]


def _write_csv(path: Path, frame: pd.DataFrame) -> None:
    with atomic_path(path) as temporary:
        frame.to_csv(temporary, sep=CSV_SEPARATOR, index=False, lineterminator="\n")


def write_observations(
    layout: DatasetLayout,
    ids: np.ndarray,
    sites: Sites,
    species_id: np.ndarray,
    rng: np.random.Generator,
) -> None:
    """Write the train (train + val, labelled) and test observation CSVs of each region.
    ``sites``: their ``lonlat``, ``region_index`` and ``split`` (a ``Sites``, or the
    full-count generator's ``Observations``)."""
    for r, region in enumerate(REGIONS):
        for kind in ("train", "test"):
            mask = (sites.region_index == r) & (
                (sites.split == "test") if kind == "test" else (sites.split != "test")
            )
            # Rows shuffled, as in the archive.
            rows = rng.permutation(np.flatnonzero(mask))
            frame = pd.DataFrame(
                {
                    "observation_id": ids[rows],
                    "latitude": _format_coordinates(region, sites.lonlat[rows, 1]),
                    "longitude": _format_coordinates(region, sites.lonlat[rows, 0]),
                }
            )
            if kind == "train":
                frame["species_id"] = species_id[rows]
                frame["subset"] = sites.split[rows]
            path = layout.observations(region, kind)
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_csv(path, frame)


def write_environmental_vectors(
    layout: DatasetLayout, ids: np.ndarray, env_values: np.ndarray
) -> None:
    """Write the 27 raster values of every observation, sorted by observation id."""
    env_frame = pd.DataFrame(env_values, columns=list(ENV_VARIABLES))
    env_frame.insert(0, "observation_id", ids)
    env_frame = env_frame.sort_values("observation_id")
    layout.environmental_vectors.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(layout.environmental_vectors) as temporary:
        env_frame.to_csv(
            temporary, sep=CSV_SEPARATOR, index=False, float_format="%.9g", lineterminator="\n"
        )


def write_metadata(layout: DatasetLayout, spec: DemoSpec) -> None:
    """Write the species, variable and land-cover tables of the metadata folder."""
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
