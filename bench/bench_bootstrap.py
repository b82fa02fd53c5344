"""The leaderboard's block bootstrap at GLC 2022's val size: vectorised (a draws x blocks
count matrix times per-block sums) against resampling the rows of drawn blocks in a loop.

    .venv/bin/python bench/bench_bootstrap.py [--rows 40080] [--draws 1000] [--models 12]

Points are spread over France and the conterminous US (1-degree cells, as the default
``evaluation.block_degrees``); each cell gets its own error rate, so errors are
correlated within cells. Both ways run on the same data in the same process; their
intervals differ only by Monte-Carlo noise (different random draws). Prints a JSON line.
"""

import argparse
import json
import time

import numpy as np

from geolifeclef.evaluation.bootstrap import (
    BlockBootstrap,
    interval,
    mean_interval,
    paired_differences,
    spatial_blocks,
)


def points(rows: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    in_france = rng.random(rows) < 0.4
    latitude = np.where(in_france, rng.uniform(42.3, 51.0, rows), rng.uniform(25.0, 49.0, rows))
    longitude = np.where(in_france, rng.uniform(-4.8, 8.2, rows), rng.uniform(-124, -67, rows))
    return latitude, longitude


def loop_interval(errors, of_row, n_blocks, settings, rng) -> tuple[float, float]:
    """The textbook way: per draw, pick blocks with replacement, gather their rows."""
    rows_of = np.split(np.argsort(of_row, kind="stable"), np.cumsum(np.bincount(of_row))[:-1])
    draws = np.empty(settings.draws)
    for d in range(settings.draws):
        chosen = rng.integers(0, n_blocks, n_blocks)
        draws[d] = errors[np.concatenate([rows_of[b] for b in chosen])].mean()
    return interval(draws, settings.confidence)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=40_080)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--models", type=int, default=12)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    settings = BlockBootstrap(draws=args.draws)
    latitude, longitude = points(args.rows, rng)

    start = time.perf_counter()
    blocks = spatial_blocks(latitude, longitude, settings.block_degrees)
    blocking_s = time.perf_counter() - start
    rate = rng.beta(2, 4, len(blocks.sizes))
    errors = (rng.random(args.rows) < rate[blocks.of_row]).astype(float)

    start = time.perf_counter()
    ours = mean_interval(blocks.sums(errors), blocks.sizes, settings)
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    loop = loop_interval(errors, blocks.of_row, len(blocks.sizes), settings, rng)
    loop_s = time.perf_counter() - start

    # The leaderboard's pairing: every model against the best on one count matrix.
    sums = {f"m{i}": blocks.sums(np.roll(errors, i)) for i in range(args.models)}
    start = time.perf_counter()
    paired_differences(sums, blocks.sizes.astype(float), "m0", settings)
    paired_s = time.perf_counter() - start

    print(
        json.dumps(
            {
                "rows": args.rows,
                "blocks": len(blocks.sizes),
                "draws": args.draws,
                "error": round(errors.mean(), 4),
                "blocking_s": round(blocking_s, 4),
                "vectorised_s": round(ours_s, 4),
                "vectorised_interval": [round(v, 4) for v in ours],
                "loop_s": round(loop_s, 3),
                "loop_interval": [round(v, 4) for v in loop],
                "paired_models": args.models,
                "paired_s": round(paired_s, 4),
            }
        )
    )


if __name__ == "__main__":
    main()
