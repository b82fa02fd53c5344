"""The region prior: the species most observed in train in the observation's region.

France and the US share few species, so the constant's one list, drawn mostly from the
region with more observations, wastes most of its 30 guesses on the other one. Here each
region has its own list: score(s | region) = (train observations of s in the region +
``prior_weight`` x the global train prior of s) / (the region's train observations +
``prior_weight``), a probability over species, smoothed towards the constant. The region
of an observation is its id's first digit; at a map point, the region whose rasters the
point is read from (``geolifeclef.data.rasters.point_ids``): the same rule.

For a survey edition the regions are the surveys' biogeographic regions (their ``region``),
and a species' score is its presence rate among the region's train surveys, smoothed towards
its prevalence: (surveys of the region holding s + ``prior_weight`` x prevalence of s) /
(surveys of the region + ``prior_weight``). A region no train survey lies in gets the
prevalences.
"""

from pathlib import Path

import numpy as np
import pandas as pd

from geolifeclef.baselines.fitting import label_matrix, load_fit, save_fit, species_columns
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
    """(regions, species) probabilities, a row per region digit of ``DIGITS`` (or, for
    surveys, per name of ``regions``, then a last row for any other region); column j is
    row j of the species table."""

    def __init__(
        self, probabilities: np.ndarray, species: pd.DataFrame, regions: np.ndarray | None = None
    ) -> None:
        self.probabilities = np.asarray(probabilities, dtype=np.float64)
        self.species = species
        self.regions = None if regions is None else np.asarray(regions, dtype=str)
        # Each region's species, best first (the rows of a prediction are these, cut at k).
        width = self.probabilities.shape[1]
        self.best, self.scores = top_k(self.probabilities, width, species["species_id"].to_numpy())

    def predict(self, rows: pd.DataFrame, k: int, chunk_rows: int = 0) -> Predictions:
        """Each row's region's top ``k`` species."""
        ids = rows["observation_id"].to_numpy(np.int64)
        region = self._rows_of(rows)
        return Predictions(ids, self.best[region, :k], self.scores[region, :k])

    def _rows_of(self, rows: pd.DataFrame) -> np.ndarray:
        """The probability table's row of each observation (or survey)."""
        if self.regions is None:
            return np.searchsorted(DIGITS, region_digits(rows["observation_id"].to_numpy(np.int64)))
        names = rows["region"].to_numpy(dtype=str)
        at = np.minimum(np.searchsorted(self.regions, names), len(self.regions) - 1)
        return np.where(self.regions[at] == names, at, len(self.regions))

    def probabilities_at(self, latitude, longitude, env) -> np.ndarray:
        """Every species' probability at points (their region: ``point_ids``)."""
        # deferred: rasterio, for the map jobs only
        from geolifeclef.data.rasters import point_ids

        return self.probabilities[np.searchsorted(DIGITS, region_digits(point_ids(longitude)))]

    def save(self, path: str | Path) -> None:
        """The probability table, and the surveys' region names (``save_fit``)."""
        arrays = {"probabilities": self.probabilities}
        if self.regions is not None:
            arrays["regions"] = self.regions
        save_fit(path, FORMAT, arrays)


def fit(rows, species: pd.DataFrame, settings: RegionPriorSettings, sources=None, n_jobs=1):
    """Count the species of train ``rows`` per region, smoothed towards the global prior."""
    if "species_ids" in rows:
        return _fit_surveys(rows, species, settings)
    columns = species_columns(species, rows["species_id"].to_numpy())
    region = np.searchsorted(DIGITS, region_digits(rows["observation_id"].to_numpy(np.int64)))
    counts = np.zeros((len(DIGITS), len(species)))
    np.add.at(counts, (region, columns), 1.0)
    prior = species["prior"].to_numpy(np.float64)
    smoothed = counts + settings.prior_weight * prior
    return RegionPriorModel(smoothed / smoothed.sum(axis=1, keepdims=True), species)


def _fit_surveys(rows, species: pd.DataFrame, settings: RegionPriorSettings) -> RegionPriorModel:
    """Each region's presence rates (module docstring), and the prevalences for the others."""
    regions, of_row = np.unique(rows["region"].to_numpy(dtype=str), return_inverse=True)
    surveys = np.bincount(of_row, minlength=len(regions)).astype(np.float64)
    labels = label_matrix(rows, species)
    counts = np.zeros((len(regions), len(species)))
    for region in range(len(regions)):
        counts[region] = labels[of_row == region].sum(axis=0)
    prior = species["prior"].to_numpy(np.float64)
    weight = settings.prior_weight
    probabilities = (counts + weight * prior) / (surveys[:, None] + weight)
    return RegionPriorModel(np.vstack([probabilities, prior]), species, regions)


def load(path: str | Path, species: pd.DataFrame, sources=None, n_jobs=1) -> RegionPriorModel:
    """The region prior that ``RegionPriorModel.save`` wrote."""
    fix = "rerun its predict job"
    _, arrays = load_fit(path, FORMAT, "region prior", fix)
    table, regions = arrays.get("probabilities"), arrays.get("regions")
    rows = len(DIGITS) if regions is None else len(regions) + 1
    if table is None or table.shape != (rows, len(species)):
        raise InputDataError(path, f"not a saved region prior ({FORMAT})", fix)
    return RegionPriorModel(table, species, regions)
