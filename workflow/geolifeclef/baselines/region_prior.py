"""The region prior: the species most observed in train in the observation's region.

France and the US share few species, so the constant's one list, drawn mostly from the
region with more observations, wastes most of its 30 guesses on the other one. Here each
region has its own list: score(s | region) = (train observations of s in the region +
``prior_weight`` x the global train prior of s) / (the region's train observations +
``prior_weight``), a probability over species, smoothed towards the constant. The region
of an observation is its id's first digit; at a map point, the region whose rasters the
point is read from (``geolifeclef.data.rasters.point_ids``): the same rule.
"""

from pathlib import Path

import numpy as np
import pandas as pd

from geolifeclef.baselines.fitting import load_fit, save_fit, species_columns
from geolifeclef.errors import InputDataError
from geolifeclef.layout import REGION_DIGIT, region_digits
from geolifeclef.predictions.metrics import top_k
from geolifeclef.predictions.table import Predictions
from geolifeclef.settings.families import RegionPriorSettings

FORMAT = "geolifeclef-region-prior-1"
"""Format tag of a saved region prior: each region's probability of every species."""
DIGITS = np.array(sorted(REGION_DIGIT.values()), dtype=np.int64)
"""The regions' id digits, the rows of the probability table."""


class RegionPriorModel:
    """(regions, species) probabilities, a row per region digit of ``DIGITS``; column j is
    row j of the species table."""

    def __init__(self, probabilities: np.ndarray, species: pd.DataFrame) -> None:
        self.probabilities = np.asarray(probabilities, dtype=np.float64)
        self.species = species
        # Each region's species, best first (the rows of a prediction are these, cut at k).
        width = self.probabilities.shape[1]
        self.best, self.scores = top_k(self.probabilities, width, species["species_id"].to_numpy())

    def predict(self, rows: pd.DataFrame, k: int, chunk_rows: int = 0) -> Predictions:
        """Each row's region's top ``k`` species."""
        ids = rows["observation_id"].to_numpy(np.int64)
        region = np.searchsorted(DIGITS, region_digits(ids))
        return Predictions(ids, self.best[region, :k], self.scores[region, :k])

    def probabilities_at(self, latitude, longitude, env) -> np.ndarray:
        """Every species' probability at points (their region: ``point_ids``)."""
        # deferred: rasterio, for the map jobs only
        from geolifeclef.data.rasters import point_ids

        return self.probabilities[np.searchsorted(DIGITS, region_digits(point_ids(longitude)))]

    def save(self, path: str | Path) -> None:
        """The probability table (``save_fit``)."""
        save_fit(path, FORMAT, {"probabilities": self.probabilities})


def fit(rows, species: pd.DataFrame, settings: RegionPriorSettings, sources=None, n_jobs=1):
    """Count the species of train ``rows`` per region, smoothed towards the global prior."""
    columns = species_columns(species, rows["species_id"].to_numpy())
    region = np.searchsorted(DIGITS, region_digits(rows["observation_id"].to_numpy(np.int64)))
    counts = np.zeros((len(DIGITS), len(species)))
    np.add.at(counts, (region, columns), 1.0)
    prior = species["prior"].to_numpy(np.float64)
    smoothed = counts + settings.prior_weight * prior
    return RegionPriorModel(smoothed / smoothed.sum(axis=1, keepdims=True), species)


def load(path: str | Path, species: pd.DataFrame, sources=None, n_jobs=1) -> RegionPriorModel:
    """The region prior that ``RegionPriorModel.save`` wrote."""
    fix = "rerun its predict job"
    _, arrays = load_fit(path, FORMAT, "region prior", fix)
    table = arrays.get("probabilities")
    if table is None or table.shape != (len(DIGITS), len(species)):
        raise InputDataError(path, f"not a saved region prior ({FORMAT})", fix)
    return RegionPriorModel(table, species)
