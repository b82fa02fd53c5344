"""The constant baseline: the K species most observed in train, for every observation."""

import logging

import numpy as np
import pandas as pd

from geolifeclef.predictions.table import Predictions

log = logging.getLogger(__name__)


def constant_predictions(species: pd.DataFrame, observation_ids: np.ndarray, k: int) -> Predictions:
    """The ``k`` most observed train species (ties: smaller id) for every observation."""
    best = species.sort_values("rank").head(k)
    n = len(observation_ids)
    return Predictions(
        observation_ids,
        np.broadcast_to(best["species_id"].to_numpy(), (n, k)),
        np.broadcast_to(best["prior"].to_numpy(), (n, k)),
    )
