"""Baselines: the honest reference points every model is compared with.

Each returns :class:`~geolifeclef.predictions.Predictions` (probabilities of the top K
species per observation), the same format as any model, so they are evaluated, blended
and submitted the same way. All are fitted on the train subset only: val stays an honest
estimate of the test error.

* ``constant``: the 30 (K) species most observed in train, for every observation, scored by
  their train prior -- what a model must beat to have learned anything (0.935 on the real val).
* ``knn``: the species of the ``n_neighbors`` nearest train observations (great-circle
  distance), as vote shares smoothed towards the prior -- "what was seen nearby".
* ``random_forest``: the organizers' recipe by default, 16 trees of depth 10 on the 27
  environmental variables (here plus latitude and longitude) -- 0.804 on the real val with
  env only; its features and size are settings, so the 1st place's forest (32 trees of
  depth 12 on env, coordinates, country and patch statistics, on train + val) is one too.

With ``refit``, a baseline's test predictions come from train + val (``fitting_rows``); its
val predictions, and so its place on the leaderboard, stay those of the train-only fit.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.neighbors import BallTree
from tqdm import tqdm

from .errors import MAX_LISTED, InputDataError
from .layout import ENV_VARIABLES, region_digits
from .metrics import top_k
from .patch_stats import PATCH_STAT_GROUPS
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
# Which rows fit the model of each split
# --------------------------------------------------------------------------------------


def fitting_rows(
    train: pd.DataFrame, val: pd.DataFrame, refit: bool, splits=("val", "test")
) -> dict[str, pd.DataFrame]:
    """The observations that fit the model predicting each split: val always from train
    alone (an honest estimate of the test error); test from train, or from train + val
    with ``refit`` (more data for the submission, as the GLC 2022 winners did)."""
    both = pd.concat([train, val], ignore_index=True) if refit else train
    return {split: (train if split == "val" else both) for split in splits}


def predict_per_fit(
    fitting: dict[str, pd.DataFrame],
    queries: dict[str, pd.DataFrame],
    predict: Callable[[pd.DataFrame, dict[str, pd.DataFrame]], dict[str, Predictions]],
) -> dict[str, Predictions]:
    """Run ``predict(rows, queries)`` once per distinct set of fitting rows."""
    result: dict[str, Predictions] = {}
    for rows in {id(frame): frame for frame in fitting.values()}.values():
        wanted = {split: queries[split] for split in queries if fitting[split] is rows}
        result.update(predict(rows, wanted))
    return result


Predict = Callable[[pd.DataFrame, dict[str, pd.DataFrame], pd.DataFrame, int], dict]


def write_baseline_predictions(
    tables: dict[str, str | Path],
    species_table: str | Path,
    outputs: dict[str, str | Path],
    top_k: int,
    refit: bool,
    predict: Predict,
) -> None:
    """What every baseline's rule does: read the observation tables (``train`` and each
    predicted split) and the species table, fit on the rows ``fitting_rows`` gives each
    split (``predict(rows, queries, species, k)``), and write each split's predictions."""
    from .class_frequency import read_species_table
    from .observations import read_table
    from .predictions import table_k, write_split_predictions

    species = read_species_table(species_table)
    queries = {split: read_table(tables[split]) for split in outputs}
    fitting = fitting_rows(read_table(tables["train"]), queries["val"], refit, tuple(outputs))
    k = table_k(top_k, len(species))
    write_split_predictions(
        outputs,
        predict_per_fit(fitting, queries, lambda rows, wanted: predict(rows, wanted, species, k)),
        {split: frame["observation_id"].to_numpy() for split, frame in queries.items()},
        species["species_id"].to_numpy(),
    )


# --------------------------------------------------------------------------------------
# Random forest on tabular features
# --------------------------------------------------------------------------------------

FOREST_FEATURE_GROUPS = ("env", "coordinates", "country", *PATCH_STAT_GROUPS)
"""Feature groups a forest can use: the 27 env values, latitude and longitude, the country
(0 France, 1 US) and the patch statistics (``geolifeclef.patch_stats``)."""


@dataclass(frozen=True)
class ForestSettings:
    n_estimators: int = 16
    max_depth: int = 10
    features: tuple[str, ...] = ("env", "coordinates")
    """Feature groups, from FOREST_FEATURE_GROUPS (the organizers': env and coordinates)."""
    max_samples: float | None = None
    """Share of the train rows each tree is fitted on (None: as many as there are rows,
    drawn with replacement). Bounds the time of a fit; memory is bounded by the depth."""
    refit: bool = False
    """Test predictions from a forest refitted on train + val (val ones stay train-only)."""
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", tuple(self.features))
        unknown = set(self.features) - set(FOREST_FEATURE_GROUPS)
        if unknown or not self.features:
            raise ValueError(
                f"random_forest.features {list(self.features)}: choose from {FOREST_FEATURE_GROUPS}"
            )


@dataclass(frozen=True)
class TabularSources:
    """Where tabular features come from: the env table and, when a feature group needs it,
    the patch statistics of every observation (any split), each with its file for errors."""

    env: pd.DataFrame
    env_source: str | Path
    patch_stats: pd.DataFrame | None = None


def feature_names(groups: tuple[str, ...]) -> list[str]:
    names = {
        "env": list(ENV_VARIABLES),
        "coordinates": ["latitude", "longitude"],
        "country": ["country_us"],
        **{group: list(columns) for group, columns in PATCH_STAT_GROUPS.items()},
    }
    return [name for group in FOREST_FEATURE_GROUPS if group in groups for name in names[group]]


def check_env_table(env: pd.DataFrame, source: str | Path) -> None:
    """The extraction contract: observation_id + the 27 variables, one row per id."""
    missing = [c for c in ("observation_id", *ENV_VARIABLES) if c not in env.columns]
    if missing:
        raise InputDataError(source, f"missing column(s) {missing}", "rerun extract_env")
    if env["observation_id"].duplicated().any():
        repeated = env.loc[env["observation_id"].duplicated(), "observation_id"].iloc[0]
        raise InputDataError(source, f"observation_id {repeated} has several rows", "rerun it")


def _rows_of(table: pd.DataFrame, ids: np.ndarray, columns, source, rule: str) -> np.ndarray:
    values = table.set_index("observation_id")[list(columns)]
    absent = ~np.isin(ids, values.index.to_numpy())
    if absent.any():
        raise InputDataError(
            source,
            f"no row for {absent.sum()} observation(s), e.g. {ids[absent][:MAX_LISTED].tolist()}",
            f"rerun {rule} so that it covers every observation of train, val and test",
        )
    return values.loc[ids].to_numpy(dtype=np.float32)


def feature_matrix(
    observations: pd.DataFrame, groups: tuple[str, ...], sources: TabularSources
) -> np.ndarray:
    """(n, features) float32 features of ``observations`` in their row order, groups in
    FOREST_FEATURE_GROUPS order; NaN stays NaN (the forest routes missing values itself,
    e.g. points over the sea)."""
    ids = observations["observation_id"].to_numpy()
    parts = []
    for group in FOREST_FEATURE_GROUPS:
        if group not in groups:
            continue
        if group == "env":
            parts.append(
                _rows_of(sources.env, ids, ENV_VARIABLES, sources.env_source, "extract_env")
            )
        elif group == "coordinates":
            parts.append(observations[["latitude", "longitude"]].to_numpy(dtype=np.float32))
        elif group == "country":
            parts.append((region_digits(ids) == 2).astype(np.float32)[:, None])
        else:
            if sources.patch_stats is None:
                raise ValueError(f"feature group {group} needs the patch statistics tables")
            columns = PATCH_STAT_GROUPS[group]
            parts.append(_rows_of(sources.patch_stats, ids, columns, "patch_stats", "extraction"))
    return np.concatenate(parts, axis=1)


def fit_random_forest(
    features: np.ndarray, labels: np.ndarray, settings: ForestSettings, n_jobs: int = 1
) -> RandomForestClassifier:
    forest = RandomForestClassifier(
        n_estimators=settings.n_estimators,
        max_depth=settings.max_depth,
        max_samples=settings.max_samples,
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
    sources: TabularSources,
    species: pd.DataFrame,
    k: int,
    settings: ForestSettings,
    n_jobs: int = 1,
    chunk_rows: int = 2_000,
    forest_path: str | Path | None = None,
) -> dict[str, Predictions]:
    """Fit on ``train`` and predict each query table (name -> observations); save the fitted
    forest to ``forest_path`` when given (the maps and point queries load it)."""
    check_env_table(sources.env, sources.env_source)
    forest = fit_random_forest(
        feature_matrix(train, settings.features, sources),
        train["species_id"].to_numpy(dtype=np.int64),
        settings,
        n_jobs,
    )
    if forest_path is not None:
        from .forest_file import save_forest

        save_forest(forest, forest_path, feature_names(settings.features))
    return {
        name: forest_predictions(
            forest,
            feature_matrix(frame, settings.features, sources),
            frame["observation_id"].to_numpy(),
            species,
            k,
            chunk_rows,
        )
        for name, frame in queries.items()
    }
