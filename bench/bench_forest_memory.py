"""Random forest memory: peak RSS of the workflow's forest on the large demo preset, and
its extrapolation to the real archive (1.66 M observations x 17,037 species).

    .venv/bin/python bench/bench_forest_memory.py /tmp/glc-forest [--trees 32 --depth 12]

It generates the ``large`` demo (213,000 observations, 5,000 species; 16 px patches, which
changes nothing for the forest but the time to write them), runs the workflow's own
ingest, env table, patch caches and patch statistics, then fits ``fit_random_forest`` with
the 1st place's settings (32 trees of depth 12 on all feature groups) in a child process
and reports its peak RSS, the size of the fitted forest's leaf tables and the nodes per
tree. sklearn keeps a float64 probability per class in every node, so the forest weighs
about trees x nodes x classes x 8 bytes; the extrapolation takes nodes per tree at full
scale from the measured growth with the number of train rows, capped by the depth.
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path


def fit_and_measure(folder: Path, trees: int, depth: int, rows: int) -> dict:
    """Fit the 1st place's forest on the first ``rows`` train rows (run in a child process,
    so that its peak RSS is the forest's)."""
    import numpy as np
    import pandas as pd

    from geolifeclef.baselines.forest import (
        FOREST_FEATURE_GROUPS,
        ForestSettings,
        TabularSources,
        feature_matrix,
        fit_random_forest,
    )

    train = pd.read_parquet(folder / "observations" / "train.parquet").head(rows)
    stats = pd.read_parquet(folder / "patch_stats" / "train.parquet")
    sources = TabularSources(pd.read_parquet(folder / "env.parquet"), "env", stats)
    settings = ForestSettings(n_estimators=trees, max_depth=depth, features=FOREST_FEATURE_GROUPS)
    features = feature_matrix(train, settings.features, sources)
    start = time.perf_counter()
    labels = train["species_id"].to_numpy(np.int64)
    forest = fit_random_forest(features, labels, settings, n_jobs=2)
    nodes = [e.tree_.node_count for e in forest.estimators_]
    return {
        "rows": len(train),
        "features": features.shape[1],
        "classes": len(forest.classes_),
        "fit_seconds": time.perf_counter() - start,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "leaf_tables_gb": sum(e.tree_.value.nbytes for e in forest.estimators_) / 2**30,
        "nodes_per_tree": float(np.mean(nodes)),
    }


def prepare(folder: Path, workers: int) -> None:
    from geolifeclef.data.env_table import build_env_table
    from geolifeclef.data.observations import ingest_observations
    from geolifeclef.demo import generate_demo_dataset
    from geolifeclef.demo.spec import spec_for
    from geolifeclef.layout import DatasetLayout
    from geolifeclef.patches.cache import build_patch_cache
    from geolifeclef.patches.stats import compute_patch_stats
    from geolifeclef.patches.store import CacheSpec

    if not (folder / "truth" / "summary.json").exists():
        spec = spec_for("large", patch_size=16)
        generate_demo_dataset(folder / "glc22", folder / "truth", spec, workers=workers)
    layout = DatasetLayout(folder / "glc22")
    tables = {s: folder / "observations" / f"{s}.parquet" for s in ("train", "val", "test")}
    ingest_observations(layout, tables)
    build_env_table(layout, list(tables.values()), folder / "env.parquet", workers=workers)
    import pandas as pd

    train = pd.read_parquet(tables["train"])
    build_patch_cache(layout, train, folder / "cache", CacheSpec(16, "crop"), workers=workers)
    compute_patch_stats(folder / "cache", folder / "patch_stats" / "train.parquet")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder")
    parser.add_argument("--trees", type=int, default=32)
    parser.add_argument("--depth", type=int, default=12)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--child-rows", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    folder = Path(args.folder)
    if args.child_rows:
        print(json.dumps(fit_and_measure(folder, args.trees, args.depth, args.child_rows)))
        return 0
    started = time.perf_counter()
    prepare(folder, args.workers)
    print(f"data ready in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    runs = []
    n_train = len(__import__("pandas").read_parquet(folder / "observations" / "train.parquet"))
    for rows in (n_train // 4, n_train // 2, n_train):  # nodes per tree against rows
        command = [sys.executable, __file__, str(folder), "--child-rows", str(rows)]
        command += ["--trees", str(args.trees), "--depth", str(args.depth)]
        out = subprocess.run(command, capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(runs[-1], file=sys.stderr)
    full_rows, full_classes = 1_587_395 + 40_080, 17_037
    last, first = runs[-1], runs[0]
    growth = (last["nodes_per_tree"] - first["nodes_per_tree"]) / max(
        1, last["rows"] - first["rows"]
    )
    nodes = min(
        2 ** (args.depth + 1) - 1, last["nodes_per_tree"] + growth * (full_rows - last["rows"])
    )
    leaf_gb = args.trees * nodes * full_classes * 8 / 2**30
    result = {
        "runs": runs,
        "extrapolated": {
            "rows": full_rows,
            "classes": full_classes,
            "nodes_per_tree": nodes,
            "leaf_tables_gb": leaf_gb,
            "full_trees_gb": args.trees * (2 ** (args.depth + 1) - 1) * full_classes * 8 / 2**30,
        },
        "self_peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }
    (folder / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
