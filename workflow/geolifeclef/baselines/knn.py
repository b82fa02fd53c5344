"""The kNN baseline: the species of the nearest train observations (great-circle distance)."""

import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from geolifeclef.baselines.fitting import load_fit, save_fit, species_columns
from geolifeclef.predictions.metrics import SCORE_CHUNK_ROWS, top_k
from geolifeclef.predictions.table import Predictions
from geolifeclef.settings.families import KnnSettings

log = logging.getLogger(__name__)

FORMAT = "geolifeclef-knn-1"
"""Format tag of a saved kNN: its train points and species (the ball tree is rebuilt)."""
_COLUMNS = {"latitude": np.float64, "longitude": np.float64, "species_id": np.int64}


def _radians(frame: pd.DataFrame) -> np.ndarray:
    return np.radians(frame[["latitude", "longitude"]].to_numpy(dtype=np.float64))


class KnnModel:
    """The spatial kNN fitted on train: a ball tree of the train points and their species.

    score(s) = (neighbours of species s + prior_weight * prior(s)) / (n + prior_weight):
    the posterior mean of a Dirichlet around the prior, so it sums to 1 over species.
    """

    def __init__(self, train: pd.DataFrame, species: pd.DataFrame, settings: KnnSettings) -> None:
        # deferred: scikit-learn costs ~2 CPU s a process, and the Snakefile reads this
        # module's family record
        from sklearn.neighbors import BallTree

        self.train = train[list(_COLUMNS)]
        self.settings = settings
        self.species = species
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

    def probabilities_at(self, latitude, longitude, env) -> np.ndarray:
        """As ``probabilities``: a map's point model (the env values are not read)."""
        return self.probabilities(latitude, longitude)

    def predict(self, rows: pd.DataFrame, k: int, chunk_rows: int = SCORE_CHUNK_ROWS):
        """The top ``k`` species of observation ``rows`` (``observation_id``, ``latitude``,
        ``longitude``), ``chunk_rows`` at a time."""
        species_ids = self.species["species_id"].to_numpy()
        latitude = rows["latitude"].to_numpy(dtype=np.float64)
        longitude = rows["longitude"].to_numpy(dtype=np.float64)
        ids, scores = [], []
        for start in tqdm(range(0, len(rows), chunk_rows), desc="knn", mininterval=2):
            part = slice(start, start + chunk_rows)
            best_ids, best_scores = top_k(
                self.probabilities(latitude[part], longitude[part]), k, species_ids
            )
            ids.append(best_ids)
            scores.append(best_scores)
        return Predictions(
            rows["observation_id"].to_numpy(),
            np.concatenate(ids) if ids else np.empty((0, k)),
            np.concatenate(scores) if scores else np.empty((0, k)),
        )

    def save(self, path: str | Path) -> None:
        """The train points, their species and the settings (``save_fit``)."""
        arrays = {c: self.train[c].to_numpy(t) for c, t in _COLUMNS.items()}
        save_fit(path, FORMAT, arrays, settings=asdict(self.settings))


def fit(
    rows: pd.DataFrame, species: pd.DataFrame, settings: KnnSettings, sources=None, n_jobs: int = 1
):
    """The kNN of train ``rows``: a ball tree of their points (``sources``, ``n_jobs``: unused)."""
    return KnnModel(rows, species, settings)


def load(path: str | Path, species: pd.DataFrame, sources=None, n_jobs: int = 1) -> KnnModel:
    """The kNN that ``KnnModel.save`` wrote (its ball tree rebuilt: seconds)."""
    header, arrays = load_fit(path, FORMAT, "kNN", "rerun predict_knn")
    train = pd.DataFrame({column: arrays[column] for column in _COLUMNS})
    return KnnModel(train, species, KnnSettings(**header["settings"]))


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
    result = {name: model.predict(frame, k, chunk_rows) for name, frame in queries.items()}
    log.info("knn: %s predicted with %d neighbours", list(queries), model.n_neighbors)
    return result
