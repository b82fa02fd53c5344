"""Random forest memory, sklearn's dense forest against the workflow's compact one, side by
side on one synthetic set, and both extrapolated to the 1st place's recipe at full scale.

    .venv/bin/python bench/bench_forest_memory.py /tmp/forest/bench \
        [--rows 100000 --species 5000 --trees 8 --depth 12 --jobs 2 --queries 20000]

The set: ``--rows`` train rows of 80 float32 features (the recipe's count; 1 % NaN, as
over the sea) and labels from ``--species`` species, each living around its own centre
in feature space with Zipf abundances (the large demo preset: 213,000 observations,
5,000 species). Four child processes, each reporting its peak RSS (``ru_maxrss``):

* ``dense fit``: the old way, kept here only: one ``RandomForestClassifier`` fit with
  every tree's float64 per-class node table, saved as ``geolifeclef-forest-1`` (sklearn's
  node and value arrays, ``savez_compressed``);
* ``dense predict``: the old ``load_forest`` (arrays, then ``Tree.__setstate__``'s copy)
  and ``predict_proba`` of ``--queries`` rows in 2,000-row chunks, top 30;
* ``compact fit`` / ``compact predict``: ``fit_random_forest`` (trees grown ``--jobs``
  at a time, kept as sparse leaves), ``save_forest``, ``load_forest`` and
  ``forest_predictions``.

Both fits grow the same trees (same seed); the bench reports how many top-30 cells the
two ways share (float32 leaves may reorder near-ties). The extrapolation takes the
recipe's 32 trees of depth 12 on 1,627,475 train + val rows and 17,037 species: nodes per
tree 8,191 (a full tree: a depth-12 leaf holds ~400 rows), at most one leaf entry per
distinct bootstrap row (63.2 % of the rows).
"""

import argparse
import gc
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

FEATURES = 80
TOP_K = 30
CHUNK_ROWS = 2_000
FULL_ROWS, FULL_SPECIES, FULL_TREES, FULL_DEPTH = 1_587_395 + 40_080, 17_037, 32, 12


def synthetic_set(rows: int, species: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, 80) float32 features and species labels: each species lives around its own
    centre in the first 4 features; the others are noisy functions of those."""
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(seed)
    place = rng.random((rows, 4))
    centres = np.random.default_rng(1).random((species, 4))
    abundance = 1.0 / np.arange(1, species + 1) ** 0.8  # Zipf-like, species 0 commonest
    _, near = cKDTree(centres).query(place, k=40)
    weights = abundance[near]
    pick = (weights.cumsum(axis=1) / weights.sum(axis=1, keepdims=True)) > rng.random((rows, 1))
    labels = near[np.arange(rows), pick.argmax(axis=1)]
    mixing = np.random.default_rng(2).normal(size=(4, FEATURES - 4))
    others = np.sin(place @ mixing * 3) + 0.3 * rng.normal(size=(rows, FEATURES - 4))
    features = np.concatenate([place, others], axis=1).astype(np.float32)
    features[rng.random(features.shape) < 0.01] = np.nan
    return features, labels.astype(np.int64)


def _rss_gb() -> float:
    """Resident memory now (VmRSS), GB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def _peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


# --------------------------------------------------------------------------------------
# The old dense way (the workflow until the compact forest), kept for this comparison
# --------------------------------------------------------------------------------------


def dense_fit_and_save(features, labels, args, path: Path) -> tuple[object, dict]:
    from sklearn.ensemble import RandomForestClassifier

    forest = RandomForestClassifier(
        args.trees, max_depth=args.depth, random_state=0, n_jobs=args.jobs
    ).fit(features, labels)
    arrays = {"classes": forest.classes_}
    for i, tree in enumerate(forest.estimators_):
        state = tree.tree_.__getstate__()
        arrays[f"tree{i}.nodes"], arrays[f"tree{i}.values"] = state["nodes"], state["values"]
    np.savez_compressed(path, **arrays)
    return forest, {
        "classes_seen": len(forest.classes_),
        "nodes_per_tree": float(np.mean([e.tree_.node_count for e in forest.estimators_])),
        "forest_gb": sum(e.tree_.value.nbytes for e in forest.estimators_) / 2**30,
    }


def dense_load_and_predict(features, path, species_ids, jobs) -> tuple[np.ndarray, dict]:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.tree import DecisionTreeClassifier
    from sklearn.tree._tree import Tree

    from geolifeclef.baselines.fitting import species_columns
    from geolifeclef.predictions.metrics import top_k

    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    classes = arrays["classes"]
    n_classes = np.array([len(classes)], dtype=np.intp)
    estimators = []
    for i in range(sum(key.endswith(".nodes") for key in arrays)):
        tree = Tree(FEATURES, n_classes, 1)
        nodes = arrays[f"tree{i}.nodes"]
        depth = 0  # not used by predict_proba
        tree.__setstate__(
            {
                "max_depth": depth,
                "node_count": len(nodes),
                "nodes": nodes,
                "values": arrays[f"tree{i}.values"],
            }
        )
        estimator = DecisionTreeClassifier()
        estimator.classes_ = np.arange(len(classes), dtype=np.float64)
        estimator.n_classes_, estimator.n_outputs_ = np.intp(len(classes)), 1
        estimator.n_features_in_, estimator.tree_ = FEATURES, tree
        estimators.append(estimator)
    forest = RandomForestClassifier(n_jobs=jobs)
    forest.estimator_, forest.estimators_ = DecisionTreeClassifier(), estimators
    forest.classes_, forest.n_classes_ = classes, len(classes)
    forest.n_outputs_, forest.n_features_in_ = 1, FEATURES
    loaded = _rss_gb()
    columns = species_columns(_species_table(species_ids), classes)
    best = []
    for start in range(0, len(features), CHUNK_ROWS):
        chunk = features[start : start + CHUNK_ROWS]
        full = np.zeros((len(chunk), len(species_ids)))
        full[:, columns] = forest.predict_proba(chunk)
        best.append(top_k(full, TOP_K, species_ids)[0])
    return np.concatenate(best), {"rss_after_load_gb": loaded}


# --------------------------------------------------------------------------------------
# The workflow's compact way
# --------------------------------------------------------------------------------------


def compact_fit_and_save(features, labels, args, path: Path) -> tuple[object, dict]:
    from geolifeclef.baselines.forest import ForestSettings, fit_random_forest
    from geolifeclef.baselines.forest_file import save_forest

    settings = ForestSettings(args.trees, args.depth, features=("env",), seed=0)
    forest = fit_random_forest(features, labels, settings, n_jobs=args.jobs)
    save_forest(forest, path, [f"f{i}" for i in range(FEATURES)])
    # Distinct rows of each tree's bootstrap: at most one leaf entry each.
    entries = np.diff(forest.leaf_starts[forest.tree_starts])
    return forest, {
        "classes_seen": len(forest.classes),
        "nodes_per_tree": float(np.mean(np.diff(forest.tree_starts))),
        "forest_gb": forest.nbytes / 2**30,
        "entries_per_tree": float(entries.mean()),
        "entries_per_bootstrap_row": float(entries.mean() / (0.632 * len(features))),
    }


def compact_load_and_predict(features, path, species_ids, jobs) -> tuple[np.ndarray, dict]:
    from geolifeclef.baselines.forest import forest_predictions
    from geolifeclef.baselines.forest_file import load_forest

    forest, _ = load_forest(path)
    loaded = _rss_gb()
    species = _species_table(species_ids)
    ids = np.arange(len(features))
    best = forest_predictions(forest, features, ids, species, TOP_K, CHUNK_ROWS, jobs)
    return best.species_ids, {"rss_after_load_gb": loaded}


def _species_table(species_ids):
    import pandas as pd

    return pd.DataFrame({"species_id": species_ids})


# --------------------------------------------------------------------------------------


def child(args: argparse.Namespace) -> dict:
    """One measurement (``args.child``: ``{dense,compact} {fit,predict}``) in this process."""
    way, step = args.child.split()
    folder = Path(args.folder)
    path = folder / f"{way}.npz"
    baseline = _rss_gb()
    started = time.perf_counter()
    if step == "fit":
        features, labels = synthetic_set(args.rows, args.species, seed=0)
        fit = dense_fit_and_save if way == "dense" else compact_fit_and_save
        forest, result = fit(features, labels, args, path)
        del features, labels
        gc.collect()
        result["rss_after_fit_gb"] = _rss_gb()  # the fitted forest, without the train set
        del forest
        result["file_gb"] = path.stat().st_size / 2**30
    else:
        features, _ = synthetic_set(args.queries, args.species, seed=1)
        predict = dense_load_and_predict if way == "dense" else compact_load_and_predict
        best, result = predict(features, path, np.arange(args.species), args.jobs)
        np.save(folder / f"{way}-top{TOP_K}.npy", best)
    result.update(
        seconds=time.perf_counter() - started, peak_rss_gb=_peak_gb(), start_rss_gb=baseline
    )
    return result


def extrapolate(runs: dict, threads: int) -> dict:
    """The recipe at full scale (GB) from the measured sizes, ``threads`` trees at once."""
    nodes = 2 ** (FULL_DEPTH + 1) - 1
    per_node = 4 + 4 + 4 + 8 + 1 + 8  # left, right, feature, threshold, NaN side, offset
    bound = 0.632 * FULL_ROWS  # leaf entries per tree: one per distinct bootstrap row
    measured = runs["compact fit"]["entries_per_bootstrap_row"] * bound
    compact = FULL_TREES * (bound * (4 + 4) + nodes * per_node) / 2**30
    features = FULL_ROWS * FEATURES * 4 / 2**30
    # sklearn's builder grows its node table by doubling from 2,047 slots: 16,376 at
    # depth 12, each with a float64 per species, for each tree being grown.
    growing = 16_376 * FULL_SPECIES * 8 / 2**30
    # Python, numpy, sklearn, scipy: what the compact fit's process holds besides its forest.
    baseline = runs["compact fit"]["rss_after_fit_gb"] - runs["compact fit"]["forest_gb"]
    return {
        "dense_forest_gb": FULL_TREES * nodes * FULL_SPECIES * 8 / 2**30,
        "compact_forest_gb_bound": compact,
        "compact_forest_gb_measured_share": FULL_TREES
        * (measured * (4 + 4) + nodes * per_node)
        / 2**30,
        "process_gb": baseline,
        "feature_matrix_gb": features,
        "growing_tree_gb": growing,
        "threads": threads,
        "compact_fit_peak_gb": baseline + features + compact + threads * growing,
        "compact_rss_after_fit_gb": baseline + features + compact,
        "dense_fit_peak_gb": baseline + features + FULL_TREES * nodes * FULL_SPECIES * 8 / 2**30,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--species", type=int, default=5_000)
    parser.add_argument("--trees", type=int, default=8)
    parser.add_argument("--depth", type=int, default=12)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--queries", type=int, default=20_000)
    parser.add_argument("--full-threads", type=int, default=8, help="the rule's threads")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0
    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    settings = [f"--{key}={getattr(args, key)}" for key in ("rows", "species", "trees", "depth")]
    settings += [f"--jobs={args.jobs}", f"--queries={args.queries}"]
    runs = {}
    for name in ("dense fit", "compact fit", "dense predict", "compact predict"):
        command = [sys.executable, __file__, str(folder), *settings, "--child", name]
        out = subprocess.run(command, capture_output=True, text=True)
        if out.returncode:
            sys.exit(f"{name} failed:\n{out.stderr[-3000:]}")
        runs[name] = json.loads(out.stdout.strip().splitlines()[-1])
        print(name, runs[name], file=sys.stderr)
    dense, compact = (np.load(folder / f"{way}-top{TOP_K}.npy") for way in ("dense", "compact"))
    result = {
        "settings": {k: v for k, v in vars(args).items() if k != "child"},
        "runs": runs,
        # float32 against float64 sums may swap near-equal species: share of equal cells.
        "same_top30_share": float((dense == compact).mean()),
        "same_top1_share": float((dense[:, 0] == compact[:, 0]).mean()),
        "full_scale": extrapolate(runs, args.full_threads),
    }
    (folder / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
