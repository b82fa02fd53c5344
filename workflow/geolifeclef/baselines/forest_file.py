"""A fitted random forest as plain arrays: its trees' splits, its leaves' sparse class
distributions, how it routes rows and predicts, and its file.

scikit-learn keeps a float64 probability per class in every node: the 1st place's forest
(32 trees of depth 12, 17,037 species) weighs 32 x 8,191 x 17,037 x 8 B = 33 GiB, although
a depth-12 leaf holds a few hundred train rows, hence at most a few hundred species.
:class:`CompactForest` keeps each tree's split arrays and, per leaf, only its non-zero
classes (int32 class indices, float32 probabilities, CSR-like offsets): a few hundred MB.
Its probabilities are scikit-learn's ``predict_proba`` of the same trees to float32
precision (same routing, NaN included: ``missing_go_to_left``).

``predict_random_forest`` saves the forest it fitted, so that the species maps and the
point queries (``geolifeclef.maps.render``, ``geolifeclef.maps.query``) predict with the
very trees whose predictions are on the leaderboard, without fitting again. The file is
one ``.npz`` of plain arrays and a JSON header read with ``allow_pickle=False``: loading
runs no code (a pickle would run whatever a tampered file holds), and a file that is not
a consistent forest is refused with its name before any row is routed.
"""

import json
import zipfile
import zlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from scipy import sparse

from geolifeclef.atomic import atomic_path
from geolifeclef.errors import InputDataError

FORMAT = "geolifeclef-forest-2"
"""Format tag of the file; ``geolifeclef-forest-1`` held scikit-learn's dense node tables."""

LEAF = -1
"""``left`` and ``right`` of a leaf (scikit-learn's TREE_LEAF)."""

_ARRAYS = {
    "classes": np.int64,
    "tree_starts": np.int64,
    "left": np.int32,
    "right": np.int32,
    "feature": np.int32,
    "threshold": np.float64,
    "missing_left": np.bool_,
    "leaf_starts": np.int64,
    "leaf_classes": np.int32,
    "leaf_probabilities": np.float32,
}


@dataclass(frozen=True)
class CompactForest:
    """A single-output classification forest whose leaves keep their non-zero classes only.

    Node ids count over the whole forest: tree t's nodes are ``tree_starts[t]`` to
    ``tree_starts[t + 1] - 1``, its root the first. Leaf classes are indices into
    ``classes`` (the labels, e.g. species ids, as scikit-learn's ``classes_``).
    """

    classes: np.ndarray
    """(classes,) int64 label of each class index, sorted."""
    n_features: int
    tree_starts: np.ndarray
    """(trees + 1,) int64 first node id of each tree, then the number of nodes."""
    left: np.ndarray
    """(nodes,) int32 node id of the left child (x <= threshold), LEAF at a leaf."""
    right: np.ndarray
    """(nodes,) int32 node id of the right child, LEAF at a leaf."""
    feature: np.ndarray
    """(nodes,) int32 feature column a split reads (meaningless at a leaf)."""
    threshold: np.ndarray
    """(nodes,) float64 split threshold, compared with the float32 feature as sklearn does."""
    missing_left: np.ndarray
    """(nodes,) bool: a NaN feature goes left (scikit-learn's ``missing_go_to_left``)."""
    leaf_starts: np.ndarray
    """(nodes + 1,) int64 offsets of each node's entries in the two leaf arrays (none for a
    split)."""
    leaf_classes: np.ndarray
    """(entries,) int32 class index of each non-zero leaf probability."""
    leaf_probabilities: np.ndarray
    """(entries,) float32 probability of that class in that leaf."""

    @property
    def n_trees(self) -> int:
        return len(self.tree_starts) - 1

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, name).nbytes for name in _ARRAYS)

    def leaves(self, features: np.ndarray) -> np.ndarray:
        """(rows, trees) node id of the leaf each row reaches in each tree.

        Rows are compared as float32, as scikit-learn does: NaN follows ``missing_left``,
        otherwise ``x <= threshold`` goes left. All rows and trees descend one level per
        step, vectorised (as many steps as the deepest tree has levels).
        """
        features = np.asarray(features, dtype=np.float32)
        if features.ndim != 2 or features.shape[1] != self.n_features:
            raise ValueError(
                f"the forest reads {self.n_features} features, got an array of shape "
                f"{features.shape}"
            )
        rows = len(features)
        node = np.tile(self.tree_starts[:-1].astype(np.int32), rows)
        row = np.repeat(np.arange(rows), self.n_trees)
        active = np.flatnonzero(self.left[node] != LEAF)
        while len(active):
            at = node[active]
            values = features[row[active], self.feature[at]]
            go_left = np.where(
                np.isnan(values), self.missing_left[at], values <= self.threshold[at]
            )
            node[active] = np.where(go_left, self.left[at], self.right[at])
            active = active[self.left[node[active]] != LEAF]
        return node.reshape(rows, self.n_trees)

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """(rows, classes) float32 mean over the trees of the class probabilities of the
        leaf each row reaches; column j is class ``classes[j]`` (sklearn's
        ``predict_proba``). A sparse product: (rows x nodes, one per tree) @ leaf table."""
        leaves = self.leaves(features)
        rows = len(leaves)
        reached = sparse.csr_array(
            (
                np.ones(leaves.size, dtype=np.float32),
                leaves.reshape(-1),
                np.arange(0, leaves.size + 1, self.n_trees),
            ),
            shape=(rows, len(self.left)),
        )
        out = (reached @ self._leaf_table).toarray()
        out /= np.float32(self.n_trees)
        return out

    @cached_property
    def _leaf_table(self) -> sparse.csr_array:
        """(nodes, classes) leaf probabilities, sharing the leaf arrays' memory (int32
        offsets: scipy would otherwise copy the class indices to int64)."""
        if len(self.leaf_classes) > np.iinfo(np.int32).max:
            raise ValueError(f"{len(self.leaf_classes):,} leaf entries: over int32 offsets")
        return sparse.csr_array(
            (self.leaf_probabilities, self.leaf_classes, self.leaf_starts.astype(np.int32)),
            shape=(len(self.left), len(self.classes)),
        )

    @classmethod
    def from_trees(
        cls, classes: np.ndarray, n_features: int, trees: list[dict[str, np.ndarray]]
    ) -> "CompactForest":
        """Join trees given with their own node ids (0 = root; ``leaf_starts`` from 0)."""
        sizes = np.array([len(t["left"]) for t in trees], dtype=np.int64)
        tree_starts = np.concatenate([[0], np.cumsum(sizes)])
        entries = np.array([t["leaf_starts"][-1] for t in trees], dtype=np.int64)
        entry_starts = np.concatenate([[0], np.cumsum(entries)])

        def joined(name: str, shift: np.ndarray | None = None) -> np.ndarray:
            parts = [t[name] for t in trees]
            if shift is not None:
                parts = [
                    np.where(p == LEAF, LEAF, p + s) for p, s in zip(parts, shift[:-1], strict=True)
                ]
            return np.concatenate(parts).astype(_ARRAYS[name])

        leaf_starts = [
            t["leaf_starts"][:-1] + s for t, s in zip(trees, entry_starts[:-1], strict=True)
        ]
        return cls(
            classes=np.asarray(classes, dtype=np.int64),
            n_features=int(n_features),
            tree_starts=tree_starts,
            left=joined("left", tree_starts),
            right=joined("right", tree_starts),
            feature=joined("feature"),
            threshold=joined("threshold"),
            missing_left=joined("missing_left"),
            leaf_starts=np.concatenate([*leaf_starts, [entry_starts[-1]]]).astype(np.int64),
            leaf_classes=joined("leaf_classes"),
            leaf_probabilities=joined("leaf_probabilities"),
        )

    def problem(self) -> str | None:
        """What makes these arrays not a forest that ``leaves`` can route, or None.

        Every child has a larger id than its node within the same tree, so routing ends.
        """
        nodes = len(self.left)
        if self.n_trees < 1 or self.tree_starts[0] != 0 or self.tree_starts[-1] != nodes:
            return "its trees do not cover its nodes"
        if np.any(np.diff(self.tree_starts) < 1):
            return "a tree has no node"
        for name in ("right", "feature", "threshold", "missing_left"):
            if len(getattr(self, name)) != nodes:
                return f"{name} has {len(getattr(self, name))} values for {nodes} nodes"
        if len(self.leaf_starts) != nodes + 1 or self.leaf_starts[0] != 0:
            return "leaf offsets do not match the nodes"
        if np.any(np.diff(self.leaf_starts) < 0) or self.leaf_starts[-1] != len(self.leaf_classes):
            return "leaf offsets are not increasing up to the number of entries"
        if len(self.leaf_probabilities) != len(self.leaf_classes):
            return "leaf classes and probabilities differ in length"
        if len(self.leaf_classes) and (
            self.leaf_classes.min() < 0 or self.leaf_classes.max() >= len(self.classes)
        ):
            return "a leaf names a class index outside its classes"
        tree_end = np.repeat(self.tree_starts[1:], np.diff(self.tree_starts))
        ids = np.arange(nodes)
        split = self.left != LEAF
        for child in (self.left, self.right):
            if np.any((child[split] <= ids[split]) | (child[split] >= tree_end[split])):
                return "a child is not after its node in the same tree"
        if np.any(self.right[~split] != LEAF):
            return "a leaf has a right child"
        if np.any(split & ((self.feature < 0) | (self.feature >= self.n_features))):
            return f"a split reads a feature outside the {self.n_features} columns"
        if np.any(np.diff(self.leaf_starts)[split] != 0):
            return "a split holds class probabilities"
        return None


def split_arrays(tree, threshold: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The split arrays of one fitted sklearn ``Tree`` as ``CompactForest.from_trees`` takes
    them (copies: a view would keep the whole ``Tree`` alive); ``threshold``: in place of the
    tree's own."""
    return {
        "left": tree.children_left.astype(np.int32),
        "right": tree.children_right.astype(np.int32),
        "feature": tree.feature.astype(np.int32),
        "threshold": tree.threshold.astype(np.float64) if threshold is None else threshold,
        "missing_left": tree.missing_go_to_left.astype(bool),
    }


def save_forest(forest: CompactForest, path: str | Path, feature_names: list[str]) -> None:
    """Write the forest and the names of its feature columns (atomically)."""
    if len(feature_names) != forest.n_features:
        raise ValueError(f"{len(feature_names)} feature names for {forest.n_features} features")
    meta = {
        "format": FORMAT,
        "n_features": forest.n_features,
        "feature_names": list(feature_names),
    }
    arrays = {name: getattr(forest, name) for name in _ARRAYS}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        np.savez_compressed(handle, **arrays)


def load_forest(path: str | Path) -> tuple[CompactForest, list[str]]:
    """The forest written by ``save_forest`` and its feature names (no code is run)."""
    path = Path(path)
    fix = "rerun predict_random_forest (snakemake --forcerun predict_random_forest)"
    if not path.exists():
        raise InputDataError(path, "saved forest is missing", fix)
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(data["meta"].tobytes())
            if meta.get("format") != FORMAT:
                raise InputDataError(
                    path, f"format {meta.get('format')!r} is not {FORMAT!r}", fix
                ) from None
            arrays = {name: data[name] for name in _ARRAYS}
        wrong = [n for n, dtype in _ARRAYS.items() if arrays[n].dtype != dtype]
        if wrong or any(a.ndim != 1 for a in arrays.values()):
            raise ValueError(f"arrays {wrong or list(arrays)} have the wrong type or shape")
        forest = CompactForest(n_features=int(meta["n_features"]), **arrays)
        names = [str(name) for name in meta["feature_names"]]
    except InputDataError:
        raise
    except (
        OSError,
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        EOFError,
        zipfile.BadZipFile,
        zlib.error,
    ) as error:
        raise InputDataError(path, f"not a saved forest ({error})", fix) from None
    problem = forest.problem() or (
        None if len(names) == forest.n_features else "feature names do not match the features"
    )
    if problem:
        raise InputDataError(path, f"not a consistent forest: {problem}", fix)
    return forest, names
