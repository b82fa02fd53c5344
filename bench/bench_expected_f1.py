"""Expected F1 and set selection at the GLC 2024 archive's sizes, and the quadrature's error
against the exact expectation.

    .venv/bin/python bench/bench_expected_f1.py [--rows 4716] [--species 11255] [--val-rows 9000]

Synthetic probabilities as the demo's truth holds them (float32, (rows, species)): each
row's species get logistic(normal(0, 2.5) + offset), the offset set so that the row's
expected richness is drawn in 5-40. A model's candidates are the top K of the truth
perturbed on the logit scale (normal, sd 1) with its perturbed probabilities; true sets
are drawn from the truth. Timed, in this process, one after the other (wall and CPU
seconds, peak memory by tracemalloc):

- ``f1.bayes_optimal`` on the dense truth (rows x species): the Bayes limit of the test score;
- ``f1.expected_f1`` of the models' top-25 sets under the dense truth (the leaderboard's
  expected F1 of a model's sets);
- ``f1.expected_f1_of_prefixes`` on a model's K = 100 and K = 250 candidates (the
  ``expected_f1`` rule's work);
- ``set_rules.choose_set_rule`` on ``--val-rows`` val rows, K = 100 (three rules, two folds);
- ``f1.score_sets`` of 15,000 top-25 sets (the val rows' repeated) against their true sets.

Accuracy: ``f1.expected_f1_of_prefixes`` of every prefix (k = 1..300) of rows of 300 species
against ``f1.exact_expected_f1`` (the exact distributions), with the automatic node count and
with fixed ones; and ``f1.expected_f1`` of top-30 sets over the dense truth's width against
the exact one. Prints a JSON object.
"""

import argparse
import json
import time
import tracemalloc

import numpy as np

from geolifeclef.predictions import f1
from geolifeclef.predictions.blend_fit import spatial_folds
from geolifeclef.predictions.set_rules import choose_set_rule

FIXED_NODES = (16, 24, 32, 48, 64, 96)


def truth_probabilities(rng, rows: int, species: int, chunk: int = 256) -> np.ndarray:
    """(rows, species) float32, each row's sum (expected richness) drawn in 5-40."""
    out = np.empty((rows, species), dtype=np.float32)
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        target = rng.uniform(5, 40, (n, 1))
        score = rng.normal(0.0, 2.5, (n, species))
        below, above = np.full((n, 1), -40.0), np.full((n, 1), 40.0)
        for _ in range(40):
            middle = (below + above) / 2
            over = (1 / (1 + np.exp(-(score + middle)))).sum(axis=1, keepdims=True) > target
            above, below = np.where(over, middle, above), np.where(over, below, middle)
        out[start : start + n] = 1 / (1 + np.exp(-(score + middle)))
    return out


def model_candidates(rng, truth: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """A model's top-K ids and probabilities: the truth perturbed on the logit scale."""
    ids = np.empty((len(truth), k), dtype=np.int64)
    scores = np.empty((len(truth), k), dtype=np.float32)
    for start in range(0, len(truth), 512):
        p = truth[start : start + 512].astype(np.float64).clip(1e-12, 1 - 1e-12)
        believed = 1 / (1 + np.exp(-(np.log(p / (1 - p)) + rng.normal(0, 1, p.shape))))
        top = np.argsort(-believed, axis=1, kind="stable")[:, :k]
        ids[start : start + 512] = top
        scores[start : start + 512] = np.take_along_axis(believed, top, axis=1)
    return ids, scores


def timed(call):
    """(result, {wall_s, cpu_s, peak_mb})."""
    tracemalloc.start()
    wall, cpu = time.perf_counter(), time.process_time()
    result = call()
    figures = {
        "wall_s": round(time.perf_counter() - wall, 2),
        "cpu_s": round(time.process_time() - cpu, 2),
        "peak_mb": round(tracemalloc.get_traced_memory()[1] / 2**20),
    }
    tracemalloc.stop()
    return result, figures


def accuracy(rng) -> dict:
    p = truth_probabilities(rng, 20, 300).astype(np.float64)
    order = np.argsort(-p, axis=1)
    ordered = np.take_along_axis(p, order, axis=1)
    exact = np.zeros((len(p), 301))
    for size in range(1, 301):
        exact[:, size] = f1.exact_expected_f1(p, list(order[:, :size]))
    errors = {"auto": float(np.abs(f1.expected_f1_of_prefixes(ordered) - exact).max())}
    for nodes in FIXED_NODES:
        got = f1.expected_f1_of_prefixes(ordered, nodes=nodes)
        errors[str(nodes)] = float(np.abs(got - exact).max())
    wide = truth_probabilities(rng, 8, 11_255).astype(np.float64)
    top30 = list(np.argsort(-wide, axis=1)[:, :30])
    dense_error = np.abs(f1.expected_f1(wide, top30) - f1.exact_expected_f1(wide, top30)).max()
    return {
        "prefixes_300_species_max_abs_error": errors,
        "auto_nodes_300": f1.quadrature_nodes(300, float(p.sum(axis=1).max())),
        "dense_top30_max_abs_error": float(dense_error),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4_716)
    parser.add_argument("--species", type=int, default=11_255)
    parser.add_argument("--val-rows", type=int, default=9_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    results: dict = {"rows": args.rows, "species": args.species, "val_rows": args.val_rows}

    truth = truth_probabilities(rng, args.rows, args.species)
    species_ids = np.arange(args.species)
    (sets, best), results["bayes_optimal"] = timed(lambda: f1.bayes_optimal(truth, species_ids))
    results["bayes_expected_f1"] = round(float(best.mean()), 4)
    results["bayes_mean_size"] = round(float(np.diff(sets[0]).mean()), 2)

    ids, scores = model_candidates(rng, truth, 250)
    top25 = list(ids[:, :25])
    expected, results["expected_f1_top25_dense"] = timed(lambda: f1.expected_f1(truth, top25))
    results["model_top25_expected_f1"] = round(float(expected.mean()), 4)
    for k in (100, 250):
        _, results[f"prefixes_k{k}"] = timed(lambda k=k: f1.expected_f1_of_prefixes(scores[:, :k]))

    val_truth = truth_probabilities(rng, args.val_rows, args.species)
    present = [
        np.flatnonzero(rng.random(args.species) < row) for row in val_truth.astype(np.float64)
    ]
    val_ids, val_scores = model_candidates(rng, val_truth, 100)
    folds = spatial_folds(rng.uniform(42, 51, args.val_rows), rng.uniform(-5, 8, args.val_rows))
    (rule, report), results["choose_set_rule_k100"] = timed(
        lambda: choose_set_rule(val_ids, val_scores, present, folds)
    )
    predicted = [row[:25] for row in val_ids]
    rows, copies = 15_000, -(-15_000 // args.val_rows)  # GLC 2025's test: 14,784 surveys
    _, results["score_sets_15000"] = timed(
        lambda: f1.score_sets((predicted * copies)[:rows], (present * copies)[:rows])
    )
    results["choice"] = {
        "chosen": report["chosen"],
        "cross_fitted_f1": {n: r["cross_fitted_f1"] for n, r in report["rules"].items()},
    }
    results["accuracy"] = accuracy(rng)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
