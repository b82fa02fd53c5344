"""Which species a model finds: per-species results on val, and the best and worst of each
frequency bucket.

For every species with val observations, ``species.parquet`` holds:

* ``val_count``: its val observations;
* ``top30_recall``: the share of them whose 30 predicted species include it;
* ``mean_rank``: the mean rank (1 = first) of the species in the model's list on those
  observations. Predictions store only the top K species of a row, so a species beyond
  them gets rank K + 1: a lower bound of its true rank (``beyond_k_share`` says how often
  that happened);
* ``auc``: how well the model's score for the species separates its val observations from
  the others (ROC AUC over every val observation, ties counted half). A row's score for a
  species outside its stored top K is taken as 0 (the predictions format's convention,
  which blends use too).
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from geolifeclef.atomic import atomic_path
from geolifeclef.data.class_frequency import BUCKETS
from geolifeclef.predictions.metrics import KAGGLE_K

RECALL = f"top{KAGGLE_K}_recall"
SPECIES_RESULT_SCHEMA = pa.schema(
    [
        ("species_id", pa.int64()),
        ("bucket", pa.string()),
        ("train_count", pa.int64()),
        ("val_count", pa.int64()),
        (RECALL, pa.float64()),
        ("mean_rank", pa.float64()),
        ("beyond_k_share", pa.float64()),
        ("auc", pa.float64()),
    ]
)
SHOWN_PER_BUCKET = 3
"""Best and worst species of each bucket that the leaderboard lists."""


def species_auc(
    species_ids: np.ndarray, scores: np.ndarray, labels: np.ndarray, species: np.ndarray
) -> np.ndarray:
    """ROC AUC of each of ``species`` (sorted, each a label of some row) from top-K lists:
    a species' score on a row is its listed score, 0 when not listed.

    By ranks (Mann-Whitney): per species, its nonzero scores are ranked among themselves
    (ties averaged) above the rows where it scores 0, so the work is O(n K log(n K)) for
    all species at once, never a dense (n x species) matrix.
    """
    n, k = species_ids.shape
    flat_species = species_ids.ravel()
    flat_scores = scores.ravel().astype(np.float64)
    flat_rows = np.repeat(np.arange(n), k)
    keep = (flat_scores > 0) & np.isin(flat_species, species)
    group = np.searchsorted(species, flat_species[keep])
    ranks = (
        pd.Series(flat_scores[keep]).groupby(group).rank(method="average").to_numpy()
        if keep.any()
        else np.empty(0)
    )
    listed = np.bincount(group, minlength=len(species))
    zeros = n - listed  # rows where the species scores 0: ranks 1..zeros
    positive = labels[flat_rows[keep]] == flat_species[keep]
    positives = np.bincount(np.searchsorted(species, labels), minlength=len(species)).astype(
        np.float64
    )
    listed_positives = np.bincount(group[positive], minlength=len(species))
    rank_sum = (
        np.bincount(
            group[positive],
            weights=ranks[positive] + zeros[group[positive]],
            minlength=len(species),
        )
        + (positives - listed_positives) * (zeros + 1) / 2
    )
    negatives = n - positives
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)
    return np.where(negatives > 0, auc, np.nan)


def species_results(
    species_ids: np.ndarray, scores: np.ndarray, labels: np.ndarray, species: pd.DataFrame
) -> pd.DataFrame:
    """One row per species of ``labels`` (see the module docstring), in species id order.

    ``species_ids``/``scores`` (n, K): the model's top-K lists of the n val observations,
    best first; ``labels`` (n,): their true species; ``species``: the class-frequency table
    (``species_id``, ``train_count``, ``bucket``; a species missing from it is ``tail``).
    """
    species_ids = np.asarray(species_ids, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    k = species_ids.shape[1]
    present, of_row, counts = np.unique(labels, return_inverse=True, return_counts=True)
    found = species_ids == labels[:, None]
    rank = np.where(found.any(axis=1), found.argmax(axis=1) + 1, k + 1)

    def share(values: np.ndarray) -> np.ndarray:
        return np.bincount(of_row, weights=values.astype(np.float64)) / counts

    table = species.set_index("species_id")
    return pd.DataFrame(
        {
            "species_id": present,
            "bucket": table["bucket"].reindex(present).fillna("tail").to_numpy(),
            "train_count": table["train_count"].reindex(present).fillna(0).to_numpy(np.int64),
            "val_count": counts,
            RECALL: share(found[:, :KAGGLE_K].any(axis=1)),
            "mean_rank": share(rank),
            "beyond_k_share": share(rank > k),
            "auc": species_auc(species_ids, scores, labels, present),
        }
    )


def write_species_results(frame: pd.DataFrame, path: str | Path) -> None:
    table = pa.Table.from_pandas(frame, schema=SPECIES_RESULT_SCHEMA, preserve_index=False)
    with atomic_path(path) as temporary:
        pq.write_table(table, temporary)


def best_and_worst(frame: pd.DataFrame, shown: int = SHOWN_PER_BUCKET) -> pd.DataFrame:
    """Per bucket, the ``shown`` species with the highest top-30 recall (ties: higher AUC,
    then more val observations) and the ``shown`` with the lowest, none listed twice."""
    parts = []
    for bucket in BUCKETS:
        ranked = frame[frame["bucket"] == bucket].sort_values(
            [RECALL, "auc", "val_count", "species_id"],
            ascending=[False, False, False, True],
            na_position="last",
        )
        best = ranked.head(shown)
        worst = ranked.iloc[len(best) :].tail(shown).iloc[::-1]
        parts += [best.assign(rank_in_bucket="best"), worst.assign(rank_in_bucket="worst")]
    columns = [
        "bucket",
        "rank_in_bucket",
        "species_id",
        "train_count",
        "val_count",
        RECALL,
        "mean_rank",
        "auc",
    ]
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.concat(parts, ignore_index=True)[columns]
