"""Fitted blend: the time of ``fit_weights`` at the archive's val size, before and after.

Synthetic members at the archive's scale (40,080 val rows, 17,037 species, 5 members,
top-100 lists): each row has a pool of species drawn from a Zipf law over the species;
every member ranks the pool by the row's true probabilities plus its own noise (so
their lists overlap as real members' do) and keeps its 100 best; the label is drawn from
the true probabilities. Both fits run in this one process, one after the other:

- **before**: the coordinate ascent that merges and re-sorts the members' lists for every
  trial (``table.blend``, as ``blend_fit`` did; a copy is kept here);
- **after**: ``blend_fit.fit_weights`` on ``CandidateScores`` built once (its build is
  timed apart).

Both must find the same weights (checked when the fit before runs whole). Run by hand::

    # both fits whole, at a tenth of the rows (~3 minutes on 2 cores)
    .venv/bin/python bench/bench_blend_fit.py /tmp/glc-bench-blend --rows 4008
    # the archive's val size: the fit before timed on its first 10 trials, extrapolated
    .venv/bin/python bench/bench_blend_fit.py /tmp/glc-bench-blend --before-trials 10
"""

import argparse
import json
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

from geolifeclef.predictions.blend_fit import CandidateScores, coordinate_ascent, fit_weights
from geolifeclef.predictions.metrics import KAGGLE_K, hits
from geolifeclef.predictions.table import Predictions, blend


def synthetic_members(
    rows: int, n_members: int, k: int, n_species: int, pool: int, seed: int
) -> tuple[list[Predictions], np.ndarray]:
    rng = np.random.default_rng(seed)
    zipf = 1.0 / np.arange(1, n_species + 1) ** 1.1
    species = np.stack(
        [rng.choice(n_species, pool, replace=False, p=zipf / zipf.sum()) for _ in range(rows)]
    )
    truth = rng.dirichlet(np.full(pool, 0.3), size=rows)
    chosen = (truth.cumsum(axis=1) < rng.random((rows, 1))).sum(axis=1)
    labels = species[np.arange(rows), np.minimum(chosen, pool - 1)]
    members = []
    for m in range(n_members):
        noisy = np.log(truth + 1e-9) + rng.normal(0, 0.8 + 0.4 * m, truth.shape)
        probabilities = np.exp(noisy - noisy.max(axis=1, keepdims=True))
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        best = np.argsort(-probabilities, axis=1)[:, :k]
        members.append(
            Predictions(
                np.arange(rows, dtype=np.int64) + 10_000_000,
                np.take_along_axis(species, best, axis=1),
                np.take_along_axis(probabilities, best, axis=1).astype(np.float32),
            )
        )
    return members, labels


def merged_error(members, weights, labels) -> float:
    """The trial before: blend the members' lists (merge, re-sort), then the top-30 hits."""
    used = [(m, w) for m, w in zip(members, weights, strict=True) if w > 0]
    k = max(m.k for m, _ in used)
    mixed = blend([m for m, _ in used], [w for _, w in used], k)
    return 1.0 - float(hits(mixed.species_ids, labels, KAGGLE_K).mean())


def merged_fit(members, labels, max_trials: int | None = None) -> tuple[np.ndarray, int]:
    """The fit before (the workflow's coordinate ascent over the merged-list error) and its
    number of trials; stopped after ``max_trials`` trials when given (to time a trial at
    full scale)."""
    trials = 0

    def error(weights):
        nonlocal trials
        trials += 1
        return merged_error(members, weights, labels)

    return coordinate_ascent(error, len(members), max_trials), trials


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="where results.json goes")
    parser.add_argument("--rows", type=int, default=40_080)
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--species", type=int, default=17_037)
    parser.add_argument("--pool", type=int, default=300, help="candidate species of a row")
    parser.add_argument(
        "--before-trials",
        type=int,
        help="stop the fit before after this many trials and extrapolate its time to the "
        "trials of the fit after (a full fit before takes ~30 min at 40,080 rows)",
    )
    args = parser.parse_args(argv)
    members, labels = synthetic_members(
        args.rows, args.members, args.k, args.species, args.pool, seed=0
    )

    started, cpu = time.perf_counter(), time.process_time()
    before, before_trials = merged_fit(members, labels, args.before_trials)
    before_s, before_cpu_s = time.perf_counter() - started, time.process_time() - cpu

    tracemalloc.start()
    started, cpu = time.perf_counter(), time.process_time()
    candidates = CandidateScores.build(members, labels)
    build_s = time.perf_counter() - started
    trials = 0
    error = candidates.error

    def counted(weights):
        nonlocal trials
        trials += 1
        return error(weights)

    object.__setattr__(candidates, "error", counted)  # count the trials (frozen dataclass)
    after = fit_weights(candidates)
    after_s, after_cpu_s = time.perf_counter() - started, time.process_time() - cpu
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    partial = before_trials < trials
    if partial:  # the time of the whole fit before, from the time of its first trials
        before_s *= trials / before_trials
        before_cpu_s *= trials / before_trials

    results = {
        "rows": args.rows,
        "members": args.members,
        "k": args.k,
        "candidates_per_row_max": int(candidates.species.shape[1]),
        "trials": trials,
        "before_trials_run": before_trials,
        "before_fit_s": round(before_s, 1),
        "before_fit_cpu_s": round(before_cpu_s, 1),
        "before_fit_extrapolated": partial,
        "after_fit_s": round(after_s, 1),
        "after_fit_cpu_s": round(after_cpu_s, 1),
        "after_build_s": round(build_s, 1),
        "after_peak_mb": round(peak / 2**20),
        "speed_up": round(before_s / after_s, 1),
        "speed_up_cpu": round(before_cpu_s / after_cpu_s, 1),
        "weights": after.round(4).tolist(),
        "same_weights": None if partial else bool(np.array_equal(before, after)),
        "top30_error": error(after),
    }
    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 1 if results["same_weights"] is False else 0


if __name__ == "__main__":
    sys.exit(main())
