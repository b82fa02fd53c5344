"""The compact random forest: the trees sklearn fits, predicting as sklearn does, saved and
loaded as plain arrays, and refused with the file's name when it is not a forest."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier

from geolifeclef.baselines.forest import (
    ForestSettings,
    bin_edges,
    binned,
    compact_tree,
    fit_random_forest,
    forest_probabilities,
)
from geolifeclef.baselines.forest_file import FORMAT, CompactForest, load_forest, save_forest
from geolifeclef.errors import InputDataError

SPECIES = pd.DataFrame({"species_id": np.arange(200)})
"""Species 0-199; the train rows use multiples of 3 only, so most columns are unseen."""


def _rows(rng, n: int) -> np.ndarray:
    features = rng.normal(size=(n, 5)).astype(np.float32)
    features[::7, 2] = np.nan  # missing in training: sklearn learns where NaN goes
    return features


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    features = _rows(rng, 2_000)
    # Labels that depend on the features, so that leaves are not all alike.
    labels = (np.digitize(features[:, 0], [-1, 0, 1]) * 10 + rng.integers(0, 10, 2_000)) * 3
    queries = _rows(rng, 500)
    queries[::5, 1] = np.nan  # never missing in training: sklearn's default child
    queries[::11, 2] = np.nan
    return features, labels, queries


SETTINGS = ForestSettings(n_estimators=5, max_depth=7, seed=3)


@pytest.fixture(scope="module")
def fitted(data):
    features, labels, _ = data
    # Two trees at a time: batches of 2, 2 and 1 trees.
    return fit_random_forest(features, labels, SETTINGS, n_jobs=2)


def _arrays(forest: CompactForest) -> dict[str, np.ndarray]:
    names = ("classes", "tree_starts", "left", "right", "feature", "threshold", "missing_left")
    names += ("leaf_starts", "leaf_classes", "leaf_probabilities")
    return {name: getattr(forest, name) for name in names}


def test_the_compact_forest_is_sklearns_forest_and_predicts_as_it(data, fitted):
    features, labels, queries = data
    sklearn = RandomForestClassifier(5, max_depth=7, random_state=3).fit(features, labels)
    # The same trees: every row reaches the same leaf (node ids count over the forest).
    assert np.array_equal(fitted.leaves(queries) - fitted.tree_starts[:-1], sklearn.apply(queries))
    expected = np.zeros((len(queries), len(SPECIES)))
    expected[:, sklearn.classes_] = sklearn.predict_proba(queries)  # species s in column s
    result = forest_probabilities(fitted, queries, SPECIES)
    assert result.dtype == np.float32
    np.testing.assert_allclose(result, expected, rtol=1e-6, atol=0)
    unseen = np.setdiff1d(np.arange(200), labels)
    assert len(unseen) > 100 and not result[:, unseen].any()
    np.testing.assert_allclose(result.sum(axis=1), 1, rtol=1e-5)
    # Rows predicted in threads, by blocks: the same values.
    assert np.array_equal(forest_probabilities(fitted, queries, SPECIES, n_jobs=3), result)
    # The leaves keep their non-zero classes only.
    dense = sum(e.tree_.value[e.tree_.children_left == -1].size for e in sklearn.estimators_)
    assert len(fitted.leaf_classes) < dense / 5


def test_a_forest_on_binned_features_predicts_raw_rows_as_their_bins(data):
    """``bins``: sklearn fits on each feature binned to quantile levels; the compact forest,
    its thresholds moved to the bin edges, routes a raw row (val, test, a map cell: values
    never seen, beyond the train range, NaN) to the leaf its binned row reaches in sklearn's
    forest fitted on the binned features."""
    features, labels, queries = data
    queries = np.concatenate([queries, queries * 3])  # beyond the train range too
    settings = ForestSettings(n_estimators=4, max_depth=7, bins=8, seed=3)
    compact = fit_random_forest(features, labels, settings, n_jobs=2)
    edges = bin_edges(features, 8)
    assert [len(e) for e in edges] == [8] * 5
    assert all(e[-1] == np.nanmax(column) for e, column in zip(edges, features.T, strict=True))
    on_bins = binned(features, edges)
    assert all(len(np.unique(c[~np.isnan(c)])) == 8 for c in on_bins.T)
    assert np.isnan(on_bins[::7, 2]).all()
    sklearn = RandomForestClassifier(4, max_depth=7, random_state=3).fit(on_bins, labels)
    leaves = compact.leaves(queries) - compact.tree_starts[:-1]
    assert np.array_equal(leaves, sklearn.apply(binned(queries, edges)))
    # The thresholds are moved: the raw rows do not all route as sklearn's own thresholds
    # would send them, and so the test above is not met by chance.
    assert not np.array_equal(leaves, sklearn.apply(queries))
    expected = np.zeros((len(queries), len(SPECIES)))
    expected[:, sklearn.classes_] = sklearn.predict_proba(binned(queries, edges))
    result = forest_probabilities(compact, queries, SPECIES)
    np.testing.assert_allclose(result, expected, rtol=1e-6, atol=0)


def test_a_compact_tree_keeps_nothing_of_sklearns_tree(data):
    # A view of the tree's arrays would keep the Tree, and its dense (nodes, classes)
    # table, alive: the batches would free nothing.
    features, labels, _ = data
    tree = RandomForestClassifier(1, max_depth=5, random_state=0).fit(features, labels)
    tree = tree.estimators_[0].tree_
    sklearn = [tree.children_left, tree.children_right, tree.feature, tree.threshold]
    sklearn += [tree.missing_go_to_left, tree.value]
    for name, array in compact_tree(tree).items():
        assert not any(np.shares_memory(array, other) for other in sklearn), name


def test_a_fit_is_determined_by_its_seed(data, fitted):
    features, labels, _ = data
    again = fit_random_forest(features, labels, SETTINGS, n_jobs=1)  # other batches
    for name, array in _arrays(fitted).items():
        assert np.array_equal(array, _arrays(again)[name]), name
    other = fit_random_forest(features, labels, ForestSettings(5, 7, seed=4), n_jobs=2)
    assert not np.array_equal(other.threshold, fitted.threshold)


def test_a_saved_forest_loads_as_it_was(data, fitted, tmp_path):
    _, _, queries = data
    path = tmp_path / "forest.npz"
    save_forest(fitted, path, list("abcde"))
    loaded, names = load_forest(path)
    assert names == list("abcde")
    assert loaded.n_features == 5 and loaded.n_trees == 5
    for name, array in _arrays(fitted).items():
        saved = _arrays(loaded)[name]
        assert saved.dtype == array.dtype and np.array_equal(saved, array), name
    assert np.array_equal(loaded.probabilities(queries), fitted.probabilities(queries))
    with np.load(path, allow_pickle=False) as stored:
        assert all(stored[key].dtype != object for key in stored.files)  # no pickled code
    assert [p.name for p in tmp_path.iterdir()] == ["forest.npz"]
    with pytest.raises(ValueError, match="4 feature names for 5 features"):
        save_forest(fitted, tmp_path / "other.npz", list("abcd"))
    assert not (tmp_path / "other.npz").exists()


def _rewrite(source, target, **changes) -> None:
    """``source``'s arrays with some replaced (None: dropped), written to ``target``."""
    with np.load(source, allow_pickle=False) as stored:
        arrays = {key: stored[key] for key in stored.files}
    for key, value in changes.items():
        if value is None:
            del arrays[key]
        else:
            arrays[key] = value
    np.savez(target, **arrays)


def _meta(**values) -> np.ndarray:
    meta = {"format": FORMAT, "n_features": 5, "feature_names": list("abcde"), **values}
    return np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)


def test_a_file_that_is_not_a_forest_is_refused_with_its_name(fitted, tmp_path):
    good = tmp_path / "good.npz"
    save_forest(fitted, good, list("abcde"))
    bad = tmp_path / "bad.npz"
    looping = fitted.left.copy()
    looping[0] = 0  # the root its own child: routing would never end
    cases = {
        "text": lambda: bad.write_text("observation_id,species_id\n1,2\n"),
        "truncated": lambda: bad.write_bytes(good.read_bytes()[:1000]),
        "other arrays": lambda: np.savez(bad, weights=np.ones(3)),
        "old format": lambda: _rewrite(good, bad, meta=_meta(format="geolifeclef-forest-1")),
        "no threshold": lambda: _rewrite(good, bad, threshold=None),
        "float classes": lambda: _rewrite(good, bad, leaf_classes=fitted.leaf_classes * 1.0),
        "names": lambda: _rewrite(good, bad, meta=_meta(feature_names=["a"])),
        "loop": lambda: _rewrite(good, bad, left=looping),
        "class": lambda: _rewrite(good, bad, leaf_classes=fitted.leaf_classes + 10_000),
        "feature": lambda: _rewrite(good, bad, feature=fitted.feature + 5),
    }
    problems = {
        "text": "not a saved forest",
        "truncated": "not a saved forest",
        "other arrays": "not a saved forest",
        "old format": "format 'geolifeclef-forest-1' is not 'geolifeclef-forest-2'",
        "no threshold": "not a saved forest",
        "float classes": "wrong type",
        "names": "feature names do not match",
        "loop": "a child is not after its node",
        "class": "a class index outside its classes",
        "feature": "a feature outside the 5 columns",
    }
    for case, write in cases.items():
        write()
        with pytest.raises(InputDataError, match="rerun predict_random_forest") as caught:
            load_forest(bad)
        assert str(caught.value).startswith(f"{bad}: "), case
        assert problems[case] in str(caught.value), case
    with pytest.raises(InputDataError, match="missing"):
        load_forest(tmp_path / "absent.npz")
    assert load_forest(good)[1] == list("abcde")


def test_forest_settings_refuse_what_sklearn_cannot_fit():
    assert ForestSettings(features=["env"]).features == ("env",)
    for wrong, message in [
        ({"features": ("env", "satellite")}, "choose from"),
        ({"features": ()}, "choose from"),
        ({"n_estimators": 0}, "n_estimators 0: at least 1"),
        ({"max_depth": 0}, "max_depth 0: at least 1"),
        ({"max_samples": 1.5}, r"max_samples 1.5: a share in \(0, 1\]"),
        ({"bins": 1}, "bins 1: at least 2"),
    ]:
        with pytest.raises(ValueError, match=message):
            ForestSettings(**wrong)
