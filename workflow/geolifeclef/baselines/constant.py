"""The constant baseline: the K species most observed in train, for every observation."""

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from geolifeclef.baselines.fitting import load_fit, save_fit
from geolifeclef.predictions.table import Predictions
from geolifeclef.settings.families import ConstantSettings

log = logging.getLogger(__name__)

FORMAT = "geolifeclef-constant-1"
"""Format tag of a saved constant: every species' train prior and rank."""
_COLUMNS = {"species_id": np.int64, "prior": np.float64, "rank": np.int64}


def constant_predictions(species: pd.DataFrame, observation_ids: np.ndarray, k: int) -> Predictions:
    """The ``k`` most observed train species (ties: smaller id) for every observation."""
    best = species.sort_values("rank").head(k)
    n = len(observation_ids)
    return Predictions(
        observation_ids,
        np.broadcast_to(best["species_id"].to_numpy(), (n, k)),
        np.broadcast_to(best["prior"].to_numpy(), (n, k)),
    )


class ConstantModel:
    """The train priors of the species table (``species_id``, ``prior``, ``rank``)."""

    def __init__(self, species: pd.DataFrame):
        self.species = species[list(_COLUMNS)]

    def predict(self, rows: pd.DataFrame, k: int, chunk_rows: int = 0) -> Predictions:
        return constant_predictions(self.species, rows["observation_id"].to_numpy(), k)

    def probabilities_at(self, latitude, longitude, env) -> np.ndarray:
        """Every species' prior at every point."""
        return np.broadcast_to(self.species["prior"].to_numpy(), (len(latitude), len(self.species)))

    def save(self, path: str | Path) -> None:
        """The priors and ranks (``save_fit``)."""
        save_fit(path, FORMAT, {c: self.species[c].to_numpy(t) for c, t in _COLUMNS.items()})


def fit(rows, species: pd.DataFrame, settings: ConstantSettings, sources=None, n_jobs: int = 1):
    """Nothing to fit: the train counts are in the species table."""
    return ConstantModel(species)


def load(path: str | Path, species=None, sources=None, n_jobs: int = 1) -> ConstantModel:
    """The constant that ``ConstantModel.save`` wrote."""
    _, arrays = load_fit(path, FORMAT, "constant", "rerun predict_constant")
    return ConstantModel(pd.DataFrame({c: arrays[c] for c in _COLUMNS}))
