"""A fitted random forest on disk, loaded without running code.

``predict_random_forest`` saves the forest it fitted, so that the species maps and the
point queries (``geolifeclef.maps.render``, ``geolifeclef.maps.query``) predict with the very trees
whose predictions are on the leaderboard, without fitting again (hours at full scale).

A pickle (joblib, ``pickle``) would run whatever code a tampered file holds when it is
loaded; like the torch checkpoints (``weights_only=True``), this file holds plain arrays
and JSON only: ``.npz`` read with ``allow_pickle=False``. Each tree is scikit-learn's own
node table and leaf values (``Tree.__getstate__``), rebuilt into the same estimator, so
``predict_proba`` is scikit-learn's, bit for bit.
"""

import json
from pathlib import Path

import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.tree import DecisionTreeClassifier
from sklearn.tree._tree import Tree

from geolifeclef.atomic import atomic_path
from geolifeclef.errors import InputDataError

FORMAT = "geolifeclef-forest-1"


def _json_params(estimator) -> dict:
    """Constructor parameters that are plain values (the sub-estimator template is not)."""
    params = estimator.get_params(deep=False)
    return {k: v for k, v in params.items() if v is None or isinstance(v, str | int | float)}


def save_forest(forest: RandomForestClassifier, path: str | Path, feature_names: list[str]) -> None:
    """Write a fitted single-output forest and the names of its feature columns."""
    if forest.n_outputs_ != 1:
        raise ValueError("only single-output forests are saved")
    trees = []
    arrays: dict[str, np.ndarray] = {"classes": np.asarray(forest.classes_)}
    for i, tree in enumerate(forest.estimators_):
        state = tree.tree_.__getstate__()
        arrays[f"tree{i}.nodes"] = state["nodes"]
        arrays[f"tree{i}.values"] = state["values"]
        trees.append(
            {
                "params": _json_params(tree),
                "max_depth": int(state["max_depth"]),
                "node_count": int(state["node_count"]),
                "max_features": int(tree.max_features_),
            }
        )
    meta = {
        "format": FORMAT,
        "params": _json_params(forest),
        "n_features": int(forest.n_features_in_),
        "feature_names": list(feature_names),
        "trees": trees,
    }
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        np.savez_compressed(handle, **arrays)


def load_forest(path: str | Path) -> tuple[RandomForestClassifier, list[str]]:
    """The forest written by ``save_forest`` and its feature names (no code is run)."""
    path = Path(path)
    if not path.exists():
        raise InputDataError(path, "saved forest is missing", "rerun predict_random_forest")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        meta = json.loads(arrays["meta"].tobytes())
    except (OSError, ValueError, KeyError) as error:
        raise InputDataError(
            path, f"not a saved forest ({error})", "rerun predict_random_forest"
        ) from None
    if meta.get("format") != FORMAT:
        raise InputDataError(path, f"unknown format {meta.get('format')!r}", "rerun it")
    classes = arrays["classes"]
    n_classes = np.array([len(classes)], dtype=np.intp)
    estimators = []
    for i, entry in enumerate(meta["trees"]):
        tree = Tree(meta["n_features"], n_classes, 1)
        tree.__setstate__(
            {
                "max_depth": entry["max_depth"],
                "node_count": entry["node_count"],
                "nodes": arrays[f"tree{i}.nodes"],
                "values": arrays[f"tree{i}.values"],
            }
        )
        estimator = DecisionTreeClassifier(**entry["params"])
        # The sub-trees of a forest are fitted on the class indices, not the labels.
        estimator.classes_ = np.arange(len(classes), dtype=np.float64)
        estimator.n_classes_ = np.intp(len(classes))
        estimator.n_outputs_ = 1
        estimator.n_features_in_ = meta["n_features"]
        estimator.max_features_ = entry["max_features"]
        estimator.tree_ = tree
        estimators.append(estimator)
    forest = RandomForestClassifier(**meta["params"])
    forest.estimator_ = DecisionTreeClassifier()
    forest.estimators_ = estimators
    forest.classes_ = classes
    forest.n_classes_ = len(classes)
    forest.n_outputs_ = 1
    forest.n_features_in_ = meta["n_features"]
    return forest, meta["feature_names"]
