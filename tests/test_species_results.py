"""Per-species results: recall, rank and AUC by hand and against scikit-learn."""

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import roc_auc_score

from geolifeclef.evaluation.species_results import (
    SPECIES_RESULT_SCHEMA,
    best_and_worst,
    species_results,
    write_species_results,
)

SPECIES = pd.DataFrame(
    {
        "species_id": [0, 1, 2, 3],
        "train_count": [500, 50, 5, 1],
        "bucket": ["head", "medium", "tail", "tail"],
    }
)


def test_recall_rank_and_auc_by_hand():
    # Three observations, top-2 lists. Species 0 is the label of rows 0 and 1, species 2
    # of row 2 (species 1 and 3 have no val observation: no row for them).
    ids = np.array([[0, 1], [1, 2], [2, 0]])
    scores = np.array([[0.6, 0.3], [0.5, 0.4], [0.7, 0.2]])
    labels = np.array([0, 0, 2])
    frame = species_results(ids, scores, labels, SPECIES).set_index("species_id")
    assert frame.index.tolist() == [0, 2]
    assert frame["val_count"].tolist() == [2, 1]
    assert frame["bucket"].tolist() == ["head", "tail"]
    # Species 0: first on row 0, not listed on row 1 -> rank K + 1 = 3 there.
    assert frame.loc[0, "top30_recall"] == 0.5
    assert frame.loc[0, "mean_rank"] == (1 + 3) / 2
    assert frame.loc[0, "beyond_k_share"] == 0.5
    # Its scores: 0.6 and 0 (not listed) on its rows, 0.2 on row 2: of the two
    # (positive, negative) pairs one is ordered right (0.6 > 0.2), one wrong (0 < 0.2).
    assert frame.loc[0, "auc"] == 0.5
    # Species 2: 0.7 on its row, 0.4 and 0 elsewhere: perfectly separated.
    assert frame.loc[2, ["top30_recall", "mean_rank", "auc"]].tolist() == [1.0, 1.0, 1.0]


def test_auc_is_scikit_learns_on_the_dense_scores_with_zero_outside_the_list():
    rng = np.random.default_rng(1)
    n, n_species, k = 400, 30, 8
    labels = rng.integers(0, n_species, n)
    dense = rng.random((n, n_species))
    dense[np.arange(n), labels] += 0.3
    dense = np.round(dense, 1)  # many ties, within and outside the lists
    ids = np.argsort(-dense, axis=1, kind="stable")[:, :k]
    scores = np.take_along_axis(dense, ids, axis=1)
    table = pd.DataFrame(
        {"species_id": np.arange(n_species), "train_count": 10, "bucket": "medium"}
    )
    frame = species_results(ids, scores, labels, table)
    sparse = np.zeros((n, n_species))
    np.put_along_axis(sparse, ids, scores, axis=1)
    for row in frame.itertuples():
        expected = roc_auc_score(labels == row.species_id, sparse[:, row.species_id])
        assert row.auc == pytest.approx(expected, abs=1e-12)
        rows = labels == row.species_id
        assert row.top30_recall == (ids[rows] == row.species_id).any(axis=1).mean()


def test_a_species_seen_in_every_row_has_no_auc():
    frame = species_results(np.array([[0, 1]]), np.array([[0.9, 0.1]]), np.array([0]), SPECIES)
    assert np.isnan(frame["auc"].iloc[0])


def test_best_and_worst_per_bucket_and_the_file(tmp_path):
    frame = pd.DataFrame(
        {
            "species_id": np.arange(8),
            "bucket": ["tail"] * 7 + ["head"],
            "train_count": 3,
            "val_count": 2,
            "top30_recall": [0.0, 1.0, 0.5, 1.0, 0.5, 0.0, 1.0, 1.0],
            "mean_rank": 10.0,
            "beyond_k_share": 0.0,
            "auc": [0.2, 0.9, 0.6, 0.95, 0.7, 0.1, 0.8, 0.5],
        }
    )
    extremes = best_and_worst(frame, shown=3)
    tail = extremes[extremes["bucket"] == "tail"]
    assert tail[tail["rank_in_bucket"] == "best"]["species_id"].tolist() == [3, 1, 6]
    assert tail[tail["rank_in_bucket"] == "worst"]["species_id"].tolist() == [5, 0, 2]
    head = extremes[extremes["bucket"] == "head"]
    assert head["species_id"].tolist() == [7]  # listed once, as best
    write_species_results(frame, tmp_path / "species.parquet")
    assert pq.read_schema(tmp_path / "species.parquet").names == SPECIES_RESULT_SCHEMA.names
