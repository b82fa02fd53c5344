"""The random forest of a survey edition: trees grown on the survey's values, leaves that hold
each species' presence rate among the train surveys that reach them.

A survey has a set of species, so the forest is multi-label. scikit-learn grows a
multi-output tree at a cost that grows with the outputs (thousands of species), so the trees
are grown on a low-rank summary of the label sets instead -- their projection on the
``SPLIT_COMPONENTS`` leading singular vectors of the (surveys x species) presence matrix,
which keeps the species that co-occur together -- by ``RandomForestRegressor`` (its squared
error on the projection approximates the squared error on the presence vectors). Each leaf
then keeps the exact mean presence vector of every train survey that reaches it (all of
them, not only the tree's bootstrap draw), sparse: the forest's probability of a species at
a survey is the mean over trees of its presence rate in the survey's leaf, a marginal in
[0, 1]. The result is a ``CompactForest``, predicted, saved and loaded as GLC 2022's.
"""

import logging

import numpy as np
import pandas as pd
from scipy import sparse

from geolifeclef.baselines.fitting import label_matrix
from geolifeclef.baselines.forest_file import CompactForest, split_arrays
from geolifeclef.settings.families import ForestSettings

log = logging.getLogger(__name__)

SPLIT_COMPONENTS = 32
"""Dimensions of the label summary the trees split on."""


def label_summary(labels: sparse.csr_array, components: int, seed: int) -> np.ndarray:
    """(surveys, components) float32: the presence matrix projected on its leading singular
    vectors (deterministic for a seed)."""
    from sklearn.decomposition import TruncatedSVD  # deferred: ~2 CPU s to import

    n_components = max(1, min(components, labels.shape[1] - 1, labels.shape[0] - 1))
    svd = TruncatedSVD(n_components, algorithm="randomized", random_state=seed)
    return svd.fit_transform(labels).astype(np.float32)


def leaf_presence_tree(tree, leaves: np.ndarray, labels: sparse.csr_array) -> dict[str, np.ndarray]:
    """One fitted sklearn ``Tree`` as the arrays of ``CompactForest.from_trees``: its splits,
    and at each leaf the mean presence vector of the train surveys that reach it (``leaves``:
    the leaf node of each survey), non-zero species only."""
    n_nodes = len(tree.children_left)
    reached = sparse.csr_array(
        (np.ones(len(leaves), dtype=np.float64), (leaves, np.arange(len(leaves)))),
        shape=(n_nodes, len(leaves)),
    )
    counts = np.asarray(reached.sum(axis=1)).ravel()
    means = sparse.csr_array(sparse.diags(1.0 / np.maximum(counts, 1)) @ (reached @ labels))
    means.sort_indices()
    return {
        **split_arrays(tree),
        "leaf_starts": means.indptr.astype(np.int64),
        "leaf_classes": means.indices.astype(np.int32),
        "leaf_probabilities": means.data.astype(np.float32),
    }


def fit_multilabel_forest(
    features: np.ndarray,
    rows: pd.DataFrame,
    species: pd.DataFrame,
    settings: ForestSettings,
    n_jobs: int = 1,
) -> CompactForest:
    """The forest of ``settings`` (trees, depth, ``max_samples``, seed) on ``features`` of the
    train surveys ``rows`` (their ``species_ids``); its classes are the species table's ids."""
    from sklearn.ensemble import RandomForestRegressor  # deferred, as above

    labels = label_matrix(rows, species)
    target = label_summary(labels, SPLIT_COMPONENTS, settings.seed)
    forest = RandomForestRegressor(
        n_estimators=settings.n_estimators,
        max_depth=settings.max_depth,
        max_samples=settings.max_samples,
        random_state=settings.seed,
        n_jobs=n_jobs,
    )
    log.info(
        "fitting a multi-label %s on %d x %d features, %d species summarised in %d dimensions",
        forest,
        *features.shape,
        labels.shape[1],
        target.shape[1],
    )
    forest.fit(features, target)
    leaves = forest.apply(features)  # (surveys, trees): every train survey, every tree
    trees = [
        leaf_presence_tree(estimator.tree_, leaves[:, t], labels)
        for t, estimator in enumerate(forest.estimators_)
    ]
    return CompactForest.from_trees(species["species_id"].to_numpy(), features.shape[1], trees)
