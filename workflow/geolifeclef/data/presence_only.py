"""The presence-only occurrences of a survey edition as a table to pre-train on.

Each PO ``surveyId`` (one or a few occurrences at one point) becomes a row whose species
present are its occurrences' (every other species counted absent, as GeoPlant's PO
pre-training does), with the values of the nearest presence-absence survey: the Kaggle
archives hold no predictors for the PO points (GLC24-25-FORMAT §3), and a survey a few
kilometres away shares their climate, soil and elevation. Points farther than
``max_distance_km`` from every survey are left out, and so are species that no survey
lists (they are no output column of the models).

Writes two tables beside the workflow's others (``write_presence_only``): the PO surveys
in a survey table's columns (``observation_id``, ``latitude``, ``longitude``,
``species_ids``), and their values in the env table's columns. PO and PA ids are keys of
their own sources only (the format doc's trap): the PO table's ids are never joined with
a PA table.
"""

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from geolifeclef.atomic import atomic_path
from geolifeclef.data.coordinates import unit_sphere

log = logging.getLogger(__name__)

EARTH_RADIUS_KM = 6371.0


@dataclass(frozen=True)
class PresenceOnlyTables:
    """The PO rows to pre-train on and their borrowed values."""

    surveys: pd.DataFrame
    """``observation_id`` (the PO surveyId), ``latitude``, ``longitude``, ``species_ids``
    (sorted int32 lists), ``nearest_km`` (distance to the survey whose values it has)."""
    env: pd.DataFrame
    """``observation_id`` then the env table's value columns, row for row with ``surveys``."""
    dropped_far: int
    """PO surveys farther than the limit from every presence-absence survey."""
    dropped_species: int
    """PO (survey, species) pairs of a species that no presence-absence survey lists."""


def presence_only_tables(
    po: pd.DataFrame,
    surveys: pd.DataFrame,
    env: pd.DataFrame,
    species_ids: np.ndarray,
    max_distance_km: float,
) -> PresenceOnlyTables:
    """The PO pairs ``po`` (``results/observations/po.parquet``: one row per survey and
    species) grouped by survey, each with the values (``env``, the env table) of its
    nearest survey of ``surveys`` (the PA surveys of every split: ``observation_id``,
    ``latitude``, ``longitude``), keeping ``species_ids`` only (the species table's)."""
    known = np.isin(po["species_id"].to_numpy(), species_ids)
    pairs = po.loc[known].sort_values(["observation_id", "species_id"], kind="stable")
    grouped = pairs.groupby("observation_id", sort=True)
    points = grouped[["latitude", "longitude"]].first()
    species = grouped["species_id"].agg(lambda s: s.to_numpy(np.int32))
    located = surveys.drop_duplicates("observation_id").merge(
        env, on="observation_id", how="inner", validate="one_to_one"
    )
    if located.empty or points.empty:
        return _tables(points, species, located, env, np.zeros(0, np.int64), np.zeros(0), 0, 0)
    tree = cKDTree(unit_sphere(located["latitude"].to_numpy(), located["longitude"].to_numpy()))
    chord, nearest = tree.query(
        unit_sphere(points["latitude"].to_numpy(), points["longitude"].to_numpy())
    )
    distance_km = 2 * EARTH_RADIUS_KM * np.arcsin(np.clip(chord / 2, 0, 1))
    near = distance_km <= max_distance_km
    return _tables(
        points[near],
        species[near],
        located,
        env,
        nearest[near],
        distance_km[near],
        int((~near).sum()),
        int((~known).sum()),
    )


def _tables(points, species, located, env, nearest, distance_km, far, unknown):
    columns = [c for c in env.columns if c != "observation_id"]
    ids = points.index.to_numpy(np.int64)
    surveys = pd.DataFrame(
        {
            "observation_id": ids,
            "latitude": points["latitude"].to_numpy(np.float64),
            "longitude": points["longitude"].to_numpy(np.float64),
            "species_ids": list(species.to_numpy()) if len(species) else [],
            "nearest_km": np.asarray(distance_km, dtype=np.float32),
        }
    )
    values = located[columns].to_numpy()[np.asarray(nearest, dtype=np.int64)]
    borrowed = pd.DataFrame(values, columns=columns).astype(env[columns].dtypes.to_dict())
    borrowed.insert(0, "observation_id", ids)
    return PresenceOnlyTables(surveys, borrowed, far, unknown)


def write_presence_only(tables: PresenceOnlyTables, surveys_path: Path, env_path: Path) -> None:
    """Both tables as Parquet, each written whole or not at all."""
    for frame, path in ((tables.surveys, surveys_path), (tables.env, env_path)):
        with atomic_path(path) as temporary:
            frame.to_parquet(temporary, index=False)
    log.info(
        "%d presence-only surveys (%d species pairs) -> %s; %d farther than the limit from "
        "every survey and %d pairs of species no survey lists left out; median distance to "
        "the survey lending its values %.1f km",
        len(tables.surveys),
        int(sum(len(s) for s in tables.surveys["species_ids"])),
        surveys_path,
        tables.dropped_far,
        tables.dropped_species,
        float(np.median(tables.surveys["nearest_km"])) if len(tables.surveys) else float("nan"),
    )
