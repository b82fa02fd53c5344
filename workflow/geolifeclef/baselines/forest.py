"""The random forest baseline on tabular features (env, coordinates, country, patch statistics)."""

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from geolifeclef.baselines.fitting import species_columns
from geolifeclef.baselines.forest_file import (
    LEAF,
    CompactForest,
    load_forest,
    save_forest,
    split_arrays,
)
from geolifeclef.errors import MAX_LISTED, InputDataError
from geolifeclef.layout import ENV_VARIABLES, region_digits
from geolifeclef.predictions.metrics import SCORE_CHUNK_ROWS, top_k
from geolifeclef.predictions.table import Predictions
from geolifeclef.settings.families import POINT_FEATURES, ForestSettings
from geolifeclef.settings.inputs import FOREST_FEATURE_GROUPS, PATCH_STAT_GROUPS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TabularSources:
    """Where tabular features come from: the env table and, when a feature group needs it,
    the patch statistics of every observation (any split), each with its file for errors.
    ``env_variables``: the env table's columns the ``env`` group reads (GLC 2022's 27,
    checked; a survey edition's: whatever its values tables hold, None)."""

    env: pd.DataFrame
    env_source: str | Path
    patch_stats: pd.DataFrame | None = None
    env_variables: tuple[str, ...] | None = ENV_VARIABLES

    @classmethod
    def read(
        cls,
        env: str | Path,
        patch_stats: list[str | Path] = (),
        env_variables: tuple[str, ...] | None = ENV_VARIABLES,
    ) -> "TabularSources":
        """The env table and the patch statistics tables of every split (when given)."""
        stats = [pd.read_parquet(path) for path in patch_stats]
        return cls(
            pd.read_parquet(env),
            env,
            pd.concat(stats, ignore_index=True) if stats else None,
            None if env_variables is None else tuple(env_variables),
        )

    @property
    def variables(self) -> tuple[str, ...]:
        """The env columns read, in order."""
        if self.env_variables is not None:
            return self.env_variables
        return tuple(c for c in self.env.columns if c != "observation_id")


def feature_names(groups: tuple[str, ...], env_variables=ENV_VARIABLES) -> list[str]:
    names = {
        "env": list(env_variables),
        "coordinates": ["latitude", "longitude"],
        "country": ["country_us"],
        **{group: list(columns) for group, columns in PATCH_STAT_GROUPS.items()},
    }
    return [name for group in FOREST_FEATURE_GROUPS if group in groups for name in names[group]]


def check_env_table(
    env: pd.DataFrame, source: str | Path, variables: tuple[str, ...] = ENV_VARIABLES
) -> None:
    """The extraction contract: observation_id + the variables, one row per id."""
    missing = [c for c in ("observation_id", *variables) if c not in env.columns]
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
    observations: pd.DataFrame,
    groups: tuple[str, ...],
    sources: TabularSources,
    env_variables: tuple[str, ...] | None = None,
) -> np.ndarray:
    """(n, features) float32 features of ``observations`` in their row order, groups in
    FOREST_FEATURE_GROUPS order; NaN stays NaN (the forest routes missing values itself,
    e.g. points over the sea). ``env_variables``: the env columns (default: the sources')."""
    ids = observations["observation_id"].to_numpy()
    parts = []
    for group in FOREST_FEATURE_GROUPS:
        if group not in groups:
            continue
        if group == "env":
            parts.append(
                _rows_of(
                    sources.env,
                    ids,
                    env_variables or sources.variables,
                    sources.env_source,
                    "extract_env",
                )
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


def bin_edges(features: np.ndarray, levels: int) -> list[np.ndarray]:
    """Per feature column, the upper edges of ``levels`` quantile bins of its values (float32,
    ascending, distinct, each a value of the column, the last its maximum; NaN ignored)."""
    edges = []
    shares = np.linspace(0, 1, levels + 1)[1:]
    for column in features.T:
        present = column[~np.isnan(column)]
        if not len(present):
            edges.append(np.empty(0, dtype=np.float32))
            continue
        found = np.quantile(present, shares, method="inverted_cdf")
        edges.append(np.unique(found.astype(np.float32)))
    return edges


def binned(features: np.ndarray, edges: list[np.ndarray]) -> np.ndarray:
    """``features`` with each value replaced by the upper edge of its bin (the smallest edge
    at or above it; above the last edge, the last); NaN stays NaN."""
    out = np.array(features, dtype=np.float32, copy=True)
    for j, column_edges in enumerate(edges):
        if not len(column_edges):
            continue
        column = out[:, j]
        present = ~np.isnan(column)
        at = np.searchsorted(column_edges, column[present], side="left")
        column[present] = column_edges[np.minimum(at, len(column_edges) - 1)]
    return out


def _thresholds_on_edges(tree, edges: list[np.ndarray]) -> np.ndarray:
    """A tree fitted on ``binned`` features, its thresholds moved down to the bin edge below
    them. sklearn puts a threshold halfway between two neighbouring edges (the values it
    saw); at the lower edge, the binned rows split alike, and a raw value, which lies in
    the same bin as its binned value, goes the same way: the forest predicts on raw
    features exactly what it predicts on binned ones."""
    threshold = tree.threshold.astype(np.float64)
    # An infinite threshold splits the missing values from the rest: it stays.
    for node in np.flatnonzero((tree.children_left != LEAF) & np.isfinite(threshold)):
        column_edges = edges[tree.feature[node]]
        below = np.searchsorted(column_edges, threshold[node], side="right") - 1
        threshold[node] = column_edges[max(below, 0)]
    return threshold


def compact_tree(tree, edges: list[np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """One fitted sklearn ``Tree`` as the arrays of ``CompactForest.from_trees``: its splits,
    and for each leaf the classes of non-zero probability (``tree.value``: per node, the
    class shares of its weighted train rows, what ``predict_proba`` returns at a leaf).
    ``edges``: the tree was fitted on features binned on them (``binned``)."""
    left = tree.children_left
    leaves = np.flatnonzero(left == LEAF)
    value = tree.value  # (nodes, 1, classes) float64, a view of the tree's memory
    leaf_row, leaf_class = np.nonzero(value[leaves, 0, :])
    counts = np.zeros(len(left), dtype=np.int64)
    counts[leaves] = np.bincount(leaf_row, minlength=len(leaves))
    # Copies (astype copies): a view of the tree's arrays would keep the whole Tree, and
    # so its dense table, alive as long as the compact tree.
    return {
        **split_arrays(tree, None if edges is None else _thresholds_on_edges(tree, edges)),
        "leaf_starts": np.concatenate([[0], np.cumsum(counts)]),
        "leaf_classes": leaf_class.astype(np.int32),
        "leaf_probabilities": value[leaves[leaf_row], 0, leaf_class].astype(np.float32),
    }


def fit_random_forest(
    features: np.ndarray, labels: np.ndarray, settings: ForestSettings, n_jobs: int = 1
) -> CompactForest:
    """The forest sklearn's ``RandomForestClassifier(n_estimators, max_depth, max_samples,
    random_state=seed)`` fits, tree for tree, kept as a ``CompactForest``.

    Memory: sklearn holds a float64 probability per class in every node of a tree it
    grows (up to 16,376 node slots at depth 12: 2.1 GiB with 17,037 classes). Trees are
    therefore grown ``n_jobs`` at a time (``warm_start``, ``n_estimators`` growing by
    ``n_jobs``), and after each batch converted and their sklearn trees freed: the peak
    is ``n_jobs`` growing trees, not the whole dense forest. Seeding: sklearn's own; with
    ``warm_start`` it draws the seeds of the trees already grown before those of the new
    ones, so tree i is the same as in one fit of all the trees (whatever ``n_jobs``).
    """
    # deferred: scikit-learn costs ~2 CPU s a process; the maps and queries of a saved
    # forest never fit one
    from sklearn.ensemble import RandomForestClassifier

    forest = RandomForestClassifier(
        n_estimators=settings.n_estimators,
        max_depth=settings.max_depth,
        max_samples=settings.max_samples,
        random_state=settings.seed,
        n_jobs=n_jobs,
        warm_start=True,
    )
    edges = None
    if settings.bins is not None:
        edges = bin_edges(features, settings.bins)
        features = binned(features, edges)
    log.info("fitting %s on %d x %d features", forest, *features.shape)
    batch = max(1, n_jobs)
    trees = []
    for grown in range(0, settings.n_estimators, batch):
        forest.set_params(n_estimators=min(settings.n_estimators, grown + batch))
        forest.fit(features, labels)
        for estimator in forest.estimators_[grown:]:
            trees.append(compact_tree(estimator.tree_, edges))
            # Drops sklearn's dense leaf table; the estimator itself stays, as warm_start
            # counts the trees grown to draw the next seeds.
            del estimator.tree_
        log.info("%d of %d trees grown", len(trees), settings.n_estimators)
    return CompactForest.from_trees(forest.classes_, features.shape[1], trees)


def forest_probabilities(
    forest: CompactForest, features: np.ndarray, species: pd.DataFrame, n_jobs: int = 1
) -> np.ndarray:
    """(n, species) float32 class probabilities; column j is row j of the species table.

    The forest's column j is species ``forest.classes[j]``, not species j: columns are
    placed at the species' position in the species table, unseen species get 0. Rows are
    split in ``n_jobs`` blocks predicted in threads (scipy's sparse product frees the GIL).
    """
    full = np.zeros((len(features), len(species)), dtype=np.float32)
    columns = species_columns(species, forest.classes)
    bounds = np.linspace(0, len(features), max(1, min(n_jobs, len(features))) + 1, dtype=int)

    def fill(start: int, stop: int) -> None:
        full[start:stop, columns] = forest.probabilities(features[start:stop])

    with ThreadPoolExecutor(len(bounds) - 1) as pool:
        list(pool.map(fill, bounds[:-1], bounds[1:]))
    return full


def forest_predictions(
    forest: CompactForest,
    features: np.ndarray,
    observation_ids: np.ndarray,
    species: pd.DataFrame,
    k: int,
    chunk_rows: int = SCORE_CHUNK_ROWS,
    n_jobs: int = 1,
) -> Predictions:
    """Top-k of the forest's class probabilities (``forest_probabilities``), chunk by chunk."""
    species_ids = species["species_id"].to_numpy()
    ids, scores = [], []
    for start in tqdm(range(0, len(features), chunk_rows), desc="forest", mininterval=2):
        chunk = features[start : start + chunk_rows]
        full = forest_probabilities(forest, chunk, species, n_jobs)
        best_ids, best_scores = top_k(full, k, species_ids)
        ids.append(best_ids)
        scores.append(best_scores)
    return Predictions(
        observation_ids,
        np.concatenate(ids) if ids else np.empty((0, k)),
        np.concatenate(scores) if scores else np.empty((0, k)),
    )


class ForestModel:
    """A fitted forest (``CompactForest``) on feature ``groups``, reading the features of
    observations from ``sources`` (None: points only, ``probabilities_at``)."""

    def __init__(
        self,
        forest: CompactForest,
        groups,
        species,
        sources=None,
        n_jobs: int = 1,
        env_variables: tuple[str, ...] = ENV_VARIABLES,
    ):
        self.forest = forest
        self.groups = tuple(groups)
        self.species = species
        self.sources = sources
        self.n_jobs = n_jobs
        self.env_variables = tuple(env_variables)

    def predict(self, rows: pd.DataFrame, k: int, chunk_rows: int = SCORE_CHUNK_ROWS):
        """The top ``k`` species of observation ``rows``, their features read from the sources."""
        return forest_predictions(
            self.forest,
            feature_matrix(rows, self.groups, self.sources, self.env_variables),
            rows["observation_id"].to_numpy(),
            self.species,
            k,
            chunk_rows,
            self.n_jobs,
        )

    def probabilities_at(self, latitude, longitude, env) -> np.ndarray:
        """(n, species) probabilities at points given their (n, 27) env values (a map)."""
        extra = set(self.groups) - set(POINT_FEATURES)
        if extra:
            raise ValueError(
                f"the forest reads {sorted(extra)}, known only at observations: "
                f"a forest on {' and/or '.join(POINT_FEATURES)} can be mapped"
            )
        # deferred: rasterio, for the map jobs only
        from geolifeclef.data.rasters import point_ids

        ids = point_ids(longitude)
        points = pd.DataFrame({"observation_id": ids, "latitude": latitude, "longitude": longitude})
        values = pd.DataFrame(np.asarray(env, dtype=np.float32), columns=list(ENV_VARIABLES))
        values.insert(0, "observation_id", ids)
        features = feature_matrix(points, self.groups, TabularSources(values, "the map's points"))
        return forest_probabilities(self.forest, features, self.species, self.n_jobs)

    def save(self, path: str | Path) -> None:
        save_forest(self.forest, path, feature_names(self.groups, self.env_variables))


def fit(rows, species, settings: ForestSettings, sources: TabularSources, n_jobs: int = 1):
    """The forest of ``settings`` fitted on train ``rows``, features from ``sources``: a
    classifier of each observation's species (GLC 2022), or, for surveys with their sets of
    species (``species_ids``), a multi-label forest whose leaves hold each species'
    presence rate (``geolifeclef.baselines.forest_sets``)."""
    variables = sources.variables
    check_env_table(sources.env, sources.env_source, variables)
    features = feature_matrix(rows, settings.features, sources)
    if "species_ids" in rows:
        # deferred: a module of its own for the multi-label forest
        from geolifeclef.baselines.forest_sets import fit_multilabel_forest

        forest = fit_multilabel_forest(features, rows, species, settings, n_jobs)
    else:
        forest = fit_random_forest(
            features, rows["species_id"].to_numpy(dtype=np.int64), settings, n_jobs
        )
    return ForestModel(forest, settings.features, species, sources, n_jobs, variables)


def _env_variables_of(names: list[str]) -> tuple[str, ...]:
    """The env variables among a saved forest's feature names: what no other group names."""
    others = {n for g in FOREST_FEATURE_GROUPS if g != "env" for n in feature_names((g,))}
    return tuple(n for n in names if n not in others)


def load(path, species, sources: TabularSources | None = None, n_jobs: int = 1) -> ForestModel:
    """The forest that ``ForestModel.save`` wrote, its feature groups read from its names."""
    forest, names = load_forest(path)
    variables = _env_variables_of(names) or ENV_VARIABLES
    groups = [g for g in FOREST_FEATURE_GROUPS if set(feature_names((g,), variables)) <= set(names)]
    if feature_names(tuple(groups), variables) != names:
        raise InputDataError(
            path, f"features {names} are no feature groups", "rerun predict_random_forest"
        )
    return ForestModel(forest, groups, species, sources, n_jobs, variables)


def random_forest_predictions(
    train: pd.DataFrame,
    queries: dict[str, pd.DataFrame],
    sources: TabularSources,
    species: pd.DataFrame,
    k: int,
    settings: ForestSettings,
    n_jobs: int = 1,
    chunk_rows: int = SCORE_CHUNK_ROWS,
    forest_path: str | Path | None = None,
) -> dict[str, Predictions]:
    """Fit on ``train`` and predict each query table (name -> observations); save the fitted
    forest to ``forest_path`` when given (the maps and point queries load it)."""
    model = fit(train, species, settings, sources, n_jobs)
    if forest_path is not None:
        model.save(forest_path)
    return {name: model.predict(frame, k, chunk_rows) for name, frame in queries.items()}
