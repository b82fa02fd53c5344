"""The truth next to the dataset: every species' probability at val and test, and a summary.

The truth file holds the true probabilities the labels were drawn from, so the
Bayes-optimal top-30 error is known; the summary records it (expected and as sampled)
beside that of the constant most-frequent-species predictor, as the bounds any model
trained on the demo should fall between.
"""

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..metrics import expected_top_k_error, top_k, top_k_error
from .spec import DemoSpec

TRUTH_FILE = "species_probabilities.npz"
SUMMARY_FILE = "summary.json"


def summarize_truth(ids, split, species_id, truth_rows, truth, spec: DemoSpec) -> dict:
    """Bayes-optimal and constant-predictor top-30 errors of the drawn dataset."""
    k = 30
    train_counts = np.bincount(species_id[split == "train"], minlength=spec.n_species)
    most_frequent = top_k(train_counts[None, :], k)[0][0]
    summary: dict = {
        "spec": asdict(spec),
        "n_observations": {s: int((split == s).sum()) for s in ("train", "val", "test")},
    }
    for subset in ("val", "test"):
        rows = np.flatnonzero(split[truth_rows] == subset)
        p = truth[rows]
        bayes_sets = top_k(p, k)[0]
        labels = species_id[truth_rows[rows]]
        constant_sets = np.broadcast_to(most_frequent, (len(rows), k))
        summary[subset] = {
            "bayes_top30_error_expected": expected_top_k_error(p, bayes_sets),
            "bayes_top30_error_sampled": top_k_error(bayes_sets, labels),
            "constant_top30_error_expected": expected_top_k_error(p, constant_sets),
            "constant_top30_error_sampled": top_k_error(constant_sets, labels),
        }
    return summary


def write_truth(
    truth_dir: Path,
    ids: np.ndarray,
    split: np.ndarray,
    species_id: np.ndarray,
    truth_rows: np.ndarray,
    truth: np.ndarray,
    spec: DemoSpec,
) -> dict:
    """Write the truth file and the summary under ``truth_dir``; return the summary."""
    summary = summarize_truth(ids, split, species_id, truth_rows, truth, spec)
    truth_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(truth_dir / TRUTH_FILE) as temporary, open(temporary, "wb") as handle:
        np.savez(
            handle,
            observation_id=ids[truth_rows],
            subset=split[truth_rows],
            probabilities=truth,
        )
    with atomic_path(truth_dir / SUMMARY_FILE) as temporary:
        temporary.write_text(json.dumps(summary, indent=2) + "\n")
    return summary
