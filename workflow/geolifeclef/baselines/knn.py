"""The kNN baseline: the species of the nearest train observations (great-circle distance).

For GLC 2022 each neighbour votes for its one species; for a survey edition each neighbouring
survey votes for every species present in it, and a species' score is its presence rate
among the neighbours, smoothed towards its prevalence: a marginal presence probability.
"""

import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from geolifeclef.baselines.fitting import label_columns, load_fit, save_fit
from geolifeclef.predictions.metrics import SCORE_CHUNK_ROWS, top_k
from geolifeclef.predictions.table import Predictions
from geolifeclef.settings.families import KnnSettings

log = logging.getLogger(__name__)

FORMAT = "geolifeclef-knn-1"
"""Format tag of a saved kNN: its train points and species (the ball tree is rebuilt)."""
_COLUMNS = {"latitude": np.float64, "longitude": np.float64, "species_id": np.int64}
_POINT_COLUMNS = ("latitude", "longitude")


def _radians(frame: pd.DataFrame) -> np.ndarray:
    return np.radians(frame[["latitude", "longitude"]].to_numpy(dtype=np.float64))


class KnnModel:
    """The spatial kNN fitted on train: a ball tree of the train points and their species.

    score(s) = (neighbours of species s + prior_weight * prior(s)) / (n + prior_weight):
    the posterior mean of a Dirichlet around the prior, so it sums to 1 over species (GLC
    2022); for surveys, the posterior mean of each species' presence (a Beta around its
    prevalence, the species table's prior there).
    """

    def __init__(self, train: pd.DataFrame, species: pd.DataFrame, settings: KnnSettings) -> None:
        # deferred: scikit-learn costs ~2 CPU s a process, and the Snakefile reads this
        # module's family record
        from sklearn.neighbors import BallTree

        labels = ["species_ids"] if "species_ids" in train else ["species_id"]
        self.train = train[[*_POINT_COLUMNS, *labels]]
        self.settings = settings
        self.species = species
        self.n_neighbors = min(settings.n_neighbors, len(train))
        self.prior_weight = settings.prior_weight
        self.tree = BallTree(_radians(train), metric="haversine")
        self.label_offsets, self.label_columns = label_columns(train, species)
        self.prior = species["prior"].to_numpy(dtype=np.float64)

    def probabilities(self, latitude: np.ndarray, longitude: np.ndarray) -> np.ndarray:
        """(n, species) probabilities at the points; column j is row j of the species table."""
        points = np.radians(np.stack([latitude, longitude], axis=1).astype(np.float64))
        width = len(self.prior)
        neighbours = self.tree.query(points, k=self.n_neighbors, return_distance=False)
        cells = self._cells(neighbours, width)
        votes = np.bincount(cells, minlength=len(points) * width)
        votes = votes.reshape(len(points), width)
        return (votes + self.prior_weight * self.prior) / (self.n_neighbors + self.prior_weight)

    def _cells(self, neighbours: np.ndarray, width: int) -> np.ndarray:
        """(query row x width + species column) of every label of every neighbour."""
        offsets, columns = self.label_offsets, self.label_columns
        query = np.arange(len(neighbours))[:, None]
        if len(columns) == len(offsets) - 1:  # one label a row: each neighbour's own
            return (query * width + columns[offsets[neighbours]]).ravel()
        starts, lengths = offsets[neighbours].ravel(), np.diff(offsets)[neighbours].ravel()
        firsts = np.repeat(np.cumsum(lengths) - lengths, lengths)
        at = np.repeat(starts, lengths) + np.arange(lengths.sum()) - firsts
        rows = np.repeat(np.broadcast_to(query, neighbours.shape).ravel(), lengths)
        return rows * width + columns[at]

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
        """The train points, their species (a survey's: its set) and the settings
        (``save_fit``)."""
        if "species_ids" in self.train:
            arrays = {c: self.train[c].to_numpy(np.float64) for c in _POINT_COLUMNS}
            arrays["label_offsets"] = self.label_offsets.astype(np.int64)
            ids = self.species["species_id"].to_numpy(np.int64)
            arrays["label_species"] = ids[self.label_columns]
        else:
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
    if "label_offsets" in arrays:  # surveys: each with its set of species
        train = pd.DataFrame({column: arrays[column] for column in _POINT_COLUMNS})
        offsets, species_ids = arrays["label_offsets"], arrays["label_species"]
        train["species_ids"] = [
            species_ids[a:b] for a, b in zip(offsets[:-1], offsets[1:], strict=True)
        ]
    else:
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
