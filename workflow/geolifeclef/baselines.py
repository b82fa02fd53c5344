"""Baselines: the honest reference points every model is compared with.

Each returns :class:`~geolifeclef.predictions.Predictions` (probabilities of the top K
species per observation), the same format as any model, so they are evaluated, blended
and submitted the same way. All are fitted on the train subset only: val stays an honest
estimate of the test error.

* ``constant``: the 30 (K) species most observed in train, for every observation, scored by
  their train prior -- what a model must beat to have learned anything (0.935 on the real val).
* ``knn``: the species of the ``n_neighbors`` nearest train observations (great-circle
  distance), as vote shares smoothed towards the prior -- "what was seen nearby".
* ``random_forest``: the organizers' recipe, 16 trees of depth 10 on the 27 environmental
  variables (here plus latitude and longitude) -- 0.804 on the real val with env only.
"""

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.neighbors import BallTree
from tqdm import tqdm

from .errors import MAX_LISTED, InputDataError
from .layout import ENV_VARIABLES
from .metrics import top_k
from .predictions import Predictions

log = logging.getLogger(__name__)


def species_columns(species: pd.DataFrame, labels: np.ndarray) -> np.ndarray:
    """Column index (position in the species table) of each species id in ``labels``."""
    listed = species["species_id"].to_numpy(dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    position = np.minimum(np.searchsorted(listed, labels), len(listed) - 1)
    if (listed[position] != labels).any():
        raise ValueError(f"species {labels[listed[position] != labels][0]} is not listed")
    return position


# --------------------------------------------------------------------------------------
# Constant
# --------------------------------------------------------------------------------------


def constant_predictions(species: pd.DataFrame, observation_ids: np.ndarray, k: int) -> Predictions:
    """The ``k`` most observed train species (ties: smaller id) for every observation."""
    best = species.sort_values("rank").head(k)
    n = len(observation_ids)
    return Predictions(
        observation_ids,
        np.broadcast_to(best["species_id"].to_numpy(), (n, k)),
        np.broadcast_to(best["prior"].to_numpy(), (n, k)),
    )


# --------------------------------------------------------------------------------------
# Spatial k nearest neighbours
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KnnSettings:
    """``n_neighbors`` train observations vote; ``prior_weight`` pseudo-observations drawn
    from the train prior fill the rest of the K ids and keep scores probabilities."""

    n_neighbors: int = 100
    prior_weight: float = 1.0


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
    chunk_rows: int = 2_000,
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


# --------------------------------------------------------------------------------------
# Random forest on environmental variables
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ForestSettings:
    n_estimators: int = 16
    max_depth: int = 10
    use_coordinates: bool = True
    seed: int = 0


def feature_names(use_coordinates: bool) -> list[str]:
    return list(ENV_VARIABLES) + (["latitude", "longitude"] if use_coordinates else [])


def check_env_table(env: pd.DataFrame, source: str | Path) -> None:
    """The extraction contract: observation_id + the 27 variables, one row per id."""
    missing = [c for c in ("observation_id", *ENV_VARIABLES) if c not in env.columns]
    if missing:
        raise InputDataError(source, f"missing column(s) {missing}", "rerun extract_env")
    if env["observation_id"].duplicated().any():
        repeated = env.loc[env["observation_id"].duplicated(), "observation_id"].iloc[0]
        raise InputDataError(source, f"observation_id {repeated} has several rows", "rerun it")


def feature_matrix(
    observations: pd.DataFrame, env: pd.DataFrame, use_coordinates: bool, source: str | Path
) -> np.ndarray:
    """(n, 27 [+2]) float32 features of ``observations`` in their row order; NaN stays NaN
    (the forest routes missing values itself, e.g. points over the sea)."""
    values = env.set_index("observation_id")[list(ENV_VARIABLES)]
    ids = observations["observation_id"].to_numpy()
    absent = ~np.isin(ids, values.index.to_numpy())
    if absent.any():
        raise InputDataError(
            source,
            f"no environmental values for {absent.sum()} observation(s), e.g. "
            f"{ids[absent][:MAX_LISTED].tolist()}",
            "rerun extract_env so that it covers every observation of train, val and test",
        )
    features = values.loc[ids].to_numpy(dtype=np.float32)
    if use_coordinates:
        coordinates = observations[["latitude", "longitude"]].to_numpy(dtype=np.float32)
        features = np.concatenate([features, coordinates], axis=1)
    return features


def fit_random_forest(
    features: np.ndarray, labels: np.ndarray, settings: ForestSettings, n_jobs: int = 1
) -> RandomForestClassifier:
    forest = RandomForestClassifier(
        n_estimators=settings.n_estimators,
        max_depth=settings.max_depth,
        random_state=settings.seed,
        n_jobs=n_jobs,
    )
    log.info("fitting %s on %d x %d features", forest, *features.shape)
    return forest.fit(features, labels)


def forest_probabilities(
    forest: RandomForestClassifier, features: np.ndarray, species: pd.DataFrame
) -> np.ndarray:
    """(n, species) class probabilities; column j is row j of the species table.

    The forest's column j is species ``forest.classes_[j]``, not species j: columns are
    placed at the species' position in the species table, unseen species get 0.
    """
    full = np.zeros((len(features), len(species)), dtype=np.float64)
    full[:, species_columns(species, forest.classes_)] = forest.predict_proba(features)
    return full


def forest_predictions(
    forest: RandomForestClassifier,
    features: np.ndarray,
    observation_ids: np.ndarray,
    species: pd.DataFrame,
    k: int,
    chunk_rows: int = 2_000,
) -> Predictions:
    """Top-k of the forest's class probabilities (``forest_probabilities``), chunk by chunk."""
    species_ids = species["species_id"].to_numpy()
    ids, scores = [], []
    for start in tqdm(range(0, len(features), chunk_rows), desc="forest", mininterval=2):
        full = forest_probabilities(forest, features[start : start + chunk_rows], species)
        best_ids, best_scores = top_k(full, k, species_ids)
        ids.append(best_ids)
        scores.append(best_scores)
    return Predictions(
        observation_ids,
        np.concatenate(ids) if ids else np.empty((0, k)),
        np.concatenate(scores) if scores else np.empty((0, k)),
    )


def random_forest_predictions(
    train: pd.DataFrame,
    queries: dict[str, pd.DataFrame],
    env: pd.DataFrame,
    env_source: str | Path,
    species: pd.DataFrame,
    k: int,
    settings: ForestSettings,
    n_jobs: int = 1,
    chunk_rows: int = 2_000,
    forest_path: str | Path | None = None,
) -> dict[str, Predictions]:
    """Fit on train, predict each query table (name -> observations); save the fitted
    forest to ``forest_path`` when given (the maps and point queries load it)."""
    check_env_table(env, env_source)
    use = settings.use_coordinates
    forest = fit_random_forest(
        feature_matrix(train, env, use, env_source),
        train["species_id"].to_numpy(dtype=np.int64),
        settings,
        n_jobs,
    )
    if forest_path is not None:
        from .forest_file import save_forest

        save_forest(forest, forest_path, feature_names(use))
    return {
        name: forest_predictions(
            forest,
            feature_matrix(frame, env, use, env_source),
            frame["observation_id"].to_numpy(),
            species,
            k,
            chunk_rows,
        )
        for name, frame in queries.items()
    }
