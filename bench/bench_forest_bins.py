"""The random forest on features binned to quantile levels (``random_forest.bins``) against
the forest on the values themselves, side by side on the demo: fit time, val top-30 error
with its block-bootstrap interval, the paired difference, and the expected error under the
demo's true probabilities (free of the noise of one drawn label per row).

    .venv/bin/python bench/bench_forest_bins.py /tmp/forest-bins [--bins 255] [--seeds 0 1 2 3 4]

The demo is the README's (config/config.yaml): the workflow builds its observations, env
table and species table in the folder given (a few minutes the first time); the forests
take the config's settings, fitted in this process one after the other for each of
``--seeds`` (a forest's own seed moves the demo's val error by a few points: one pair of
forests says little). Writes ``results.json`` there.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from geolifeclef.baselines.forest import (
    ForestSettings,
    TabularSources,
    feature_matrix,
    fit_random_forest,
    forest_predictions,
)
from geolifeclef.data.class_frequency import read_species_table
from geolifeclef.data.observations import read_table
from geolifeclef.evaluation.bootstrap import BlockBootstrap, paired_differences
from geolifeclef.evaluation.scores import evaluate_model, val_misses
from geolifeclef.predictions.metrics import KAGGLE_K

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config" / "config.yaml"
INPUTS = [
    *(f"results/observations/{split}.parquet" for split in ("train", "val")),
    "results/environment/env_values.parquet",
    "results/class_frequency/species.parquet",
]
TRUTH = "resources/demo/truth/species_probabilities.npz"


def build_inputs(workdir: Path, cores: int) -> None:
    """The demo's tables, built by the workflow (nothing when they are there)."""
    snakemake = Path(sys.executable).with_name("snakemake")
    subprocess.run(
        [str(snakemake), "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
         "--configfile", str(CONFIG), "--cores", str(cores), *INPUTS],
        check=True,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--bins", type=int, default=255)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--jobs", type=int, default=2, help="trees fitted at once")
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    workdir = args.workdir.resolve()
    build_inputs(workdir, args.cores)
    train, val = (read_table(workdir / path) for path in INPUTS[:2])
    env_path = workdir / INPUTS[2]
    sources = TabularSources(pd.read_parquet(env_path), env_path)
    species = read_species_table(workdir / INPUTS[3])
    config = yaml.safe_load(CONFIG.read_text())["baselines"]["random_forest"]
    ways = {"values": None, f"{args.bins} bins": args.bins}
    features = feature_matrix(train, ForestSettings(**config).features, sources)
    labels = train["species_id"].to_numpy(dtype=np.int64)
    queries = feature_matrix(val, ForestSettings(**config).features, sources)
    rows = []
    for seed in args.seeds:
        for name, bins in ways.items():
            settings = ForestSettings(**{**config, "seed": seed, "bins": bins})
            start = time.perf_counter()
            forest = fit_random_forest(features, labels, settings, n_jobs=args.jobs)
            fit_s = time.perf_counter() - start
            predictions = forest_predictions(
                forest, queries, val["observation_id"].to_numpy(), species, KAGGLE_K
            )
            metrics = evaluate_model(name, "random_forest", predictions, val, species,
                                     workdir / TRUTH)  # fmt: skip
            blocks, missed = val_misses(predictions, val, BlockBootstrap())
            rows.append(
                {
                    "forest": name,
                    "seed": seed,
                    "fit_s": fit_s,
                    "val_top30_error": metrics["top30_error"],
                    "low": metrics["top30_error_low"],
                    "high": metrics["top30_error_high"],
                    "expected": metrics["expected_top30_error"]["model"],
                    "block_misses": blocks.sums(missed),
                    "block_sizes": blocks.sizes,
                }
            )
    frame = pd.DataFrame(rows)
    print(f"{len(train):,} train rows, {len(val):,} val rows, {len(species):,} species;")
    print(f"the config's forest ({config}), seeds {args.seeds}, {args.jobs} trees at a time")
    print()
    print("| forest | seed | fit s | val top-30 error [95 %] | expected top-30 error |")
    print("| --- | ---: | ---: | --- | ---: |")
    for r in frame.sort_values(["seed", "forest"]).itertuples():
        print(
            f"| {r.forest} | {r.seed} | {r.fit_s:.2f} | {r.val_top30_error:.3f} "
            f"[{r.low:.3f}, {r.high:.3f}] | {r.expected:.4f} |"
        )
    print()
    print("| forest | fit s, mean | val top-30 error, mean (sd over seeds) | expected, mean (sd) |")
    print("| --- | ---: | --- | --- |")
    summary = {}
    for name in ways:
        mine = frame[frame["forest"] == name]
        summary[name] = {
            "fit_s": mine["fit_s"].mean(),
            "val_top30_error": [mine["val_top30_error"].mean(), mine["val_top30_error"].std()],
            "expected": [mine["expected"].mean(), mine["expected"].std()],
        }
        print(
            f"| {name} | {mine['fit_s'].mean():.2f} | {mine['val_top30_error'].mean():.4f} "
            f"({mine['val_top30_error'].std():.4f}) | {mine['expected'].mean():.4f} "
            f"({mine['expected'].std():.4f}) |"
        )
    # The difference on the same val blocks, all seeds' forests pooled per way.
    pooled = {
        name: np.sum(frame.loc[frame["forest"] == name, "block_misses"].tolist(), axis=0)
        for name in ways
    }
    sizes = frame["block_sizes"].iloc[0] * len(args.seeds)
    difference = paired_differences(pooled, sizes, "values", BlockBootstrap())
    binned_name = list(ways)[1]
    point, low, high = difference[binned_name]
    by_seed = frame.pivot(index="seed", columns="forest", values="expected").pipe(
        lambda t: t[binned_name] - t["values"]
    )
    print()
    print(
        f"{binned_name} minus values, val top-30 error over all seeds' forests: {point:+.4f} "
        f"[{low:+.4f}, {high:+.4f}] (block bootstrap of val); expected error per seed: "
        + ", ".join(f"{d:+.4f}" for d in by_seed)
        + f"; fit time x{summary['values']['fit_s'] / summary[binned_name]['fit_s']:.1f} faster"
    )
    summary["difference"] = {"val_top30_error": [point, low, high], "expected": by_seed.tolist()}
    (workdir / "results.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
