"""The kNN baseline: the species of the nearest train observations (great-circle distance)."""

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.neighbors import BallTree
from tqdm import tqdm

from geolifeclef.baselines.fitting import species_columns
from geolifeclef.predictions.metrics import SCORE_CHUNK_ROWS, top_k
from geolifeclef.predictions.table import Predictions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KnnSettings:
    """``n_neighbors`` train observations vote; ``prior_weight`` pseudo-observations drawn
    from the train prior fill the rest of the K ids and keep scores probabilities."""

    n_neighbors: int = 100
    prior_weight: float = 1.0
    refit: bool = False
    """Test predictions from the neighbours among train + val (val ones: train only)."""


def _radians(frame: pd.DataFrame) -> np.ndarray:
    return np.radians(frame[["latitude", "longitude"]].to_numpy(dtype=np.float64))


class KnnModel:
    """The spatial kNN fitted on train: a ball tree of the train points and their species.

    score(s) = (neighbours of species s + prior_weight * prior(s)) / (n + prior_weight):
    the posterior mean of a Dirichlet around the prior, so it sums to 1 over species.
    """

    def __init__(self, train: pd.DataFrame, species: pd.DataFrame, settings: KnnSettings) -> None:
        self.n_neighbors = min(settings.n_neighbors, len(train))
        self.prior_weight = settings.prior_weight
        self.tree = BallTree(_radians(train), metric="haversine")
        self.train_columns = species_columns(species, train["species_id"].to_numpy())
        self.prior = species["prior"].to_numpy(dtype=np.float64)

    def probabilities(self, latitude: np.ndarray, longitude: np.ndarray) -> np.ndarray:
        """(n, species) probabilities at the points; column j is row j of the species table."""
        points = np.radians(np.stack([latitude, longitude], axis=1).astype(np.float64))
        width = len(self.prior)
        neighbours = self.tree.query(points, k=self.n_neighbors, return_distance=False)
        cells = np.arange(len(points))[:, None] * width + self.train_columns[neighbours]
        votes = np.bincount(cells.ravel(), minlength=len(points) * width)
        votes = votes.reshape(len(points), width)
        return (votes + self.prior_weight * self.prior) / (self.n_neighbors + self.prior_weight)


def knn_predictions(
    train: pd.DataFrame,
    queries: dict[str, pd.DataFrame],
    species: pd.DataFrame,
    k: int,
    settings: KnnSettings,
    chunk_rows: int = SCORE_CHUNK_ROWS,
) -> dict[str, Predictions]:
    """Spatial kNN species frequencies (``KnnModel``) for each query table."""
    model = KnnModel(train, species, settings)
    species_ids = species["species_id"].to_numpy()
    result = {}
    for name, frame in queries.items():
        latitude = frame["latitude"].to_numpy(dtype=np.float64)
        longitude = frame["longitude"].to_numpy(dtype=np.float64)
        ids, scores = [], []
        for start in tqdm(range(0, len(frame), chunk_rows), desc=f"knn {name}", mininterval=2):
            part = slice(start, start + chunk_rows)
            probabilities = model.probabilities(latitude[part], longitude[part])
            best_ids, best_scores = top_k(probabilities, k, species_ids)
            ids.append(best_ids)
            scores.append(best_scores)
        result[name] = Predictions(
            frame["observation_id"].to_numpy(),
            np.concatenate(ids) if ids else np.empty((0, k)),
            np.concatenate(scores) if scores else np.empty((0, k)),
        )
        log.info("knn: %s predicted with %d neighbours", name, model.n_neighbors)
    return result
