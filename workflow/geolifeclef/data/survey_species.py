"""The species of a survey edition (GLC 2024 on): in how many surveys each species is present.

The survey editions' species table, ``results/class_frequency/species.parquet``, has the
columns every edition's has (``geolifeclef.data.class_frequency.SPECIES_COLUMNS``), counted
in surveys: ``train_count`` and ``val_count`` are the presence-absence surveys a species is
present in, ``prior`` its prevalence (``train_count`` / train surveys: the probability that
a train survey holds it; the priors sum to the mean richness, not to 1), ``rank`` and
``bucket`` as for GLC 2022; and ``po_count``, its presence-only occurrences. The species
listed are those of the PA surveys (train and val) and of the presence-only occurrences, so
that a model may rank any of them; a test survey's species outside them cannot be predicted.
"""

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from geolifeclef.atomic import atomic_path, write_text
from geolifeclef.data.class_frequency import (
    BUCKETS,
    BucketThresholds,
    gini,
    plot_rank_frequency,
)

log = logging.getLogger(__name__)

SURVEY_SPECIES_SCHEMA = pa.schema(
    [
        ("species_id", pa.int32()),
        ("train_count", pa.int64()),
        ("val_count", pa.int64()),
        ("po_count", pa.int64()),
        ("prior", pa.float64()),
        ("rank", pa.int64()),
        ("bucket", pa.string()),
    ]
)


def label_pairs(surveys: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(row position, species id) of every species present in every survey of ``surveys``
    (its ``species_ids`` lists), row-major."""
    lists = surveys["species_ids"]
    sizes = lists.map(len).to_numpy(dtype=np.int64)
    rows = np.repeat(np.arange(len(surveys)), sizes)
    species = np.concatenate([np.asarray(v, dtype=np.int64) for v in lists]) if len(lists) else []
    return rows, np.asarray(species, dtype=np.int64)


def survey_species_table(
    train: pd.DataFrame,
    val: pd.DataFrame,
    po: pd.DataFrame,
    thresholds: BucketThresholds,
) -> pd.DataFrame:
    """The species table (module docstring) of the train, val and presence-only tables."""
    train_species = label_pairs(train)[1]
    val_species = label_pairs(val)[1]
    po_species = po["species_id"].to_numpy(dtype=np.int64)
    species = np.unique(np.concatenate([train_species, val_species, po_species]))

    def counts(ids: np.ndarray) -> np.ndarray:
        return np.bincount(np.searchsorted(species, ids), minlength=len(species))

    table = pd.DataFrame({"species_id": species.astype(np.int32)})
    table["train_count"] = counts(train_species).astype(np.int64)
    table["val_count"] = counts(val_species).astype(np.int64)
    table["po_count"] = counts(po_species).astype(np.int64)
    table["prior"] = table["train_count"] / len(train) if len(train) else 0.0
    order = np.lexsort((species, -table["train_count"].to_numpy()))
    rank = np.empty(len(species), dtype=np.int64)
    rank[order] = np.arange(1, len(species) + 1)
    table["rank"] = rank
    table["bucket"] = thresholds.bucket(table["train_count"].to_numpy())
    return table


def survey_summary(table: pd.DataFrame, surveys: dict[str, pd.DataFrame], po: pd.DataFrame) -> dict:
    """The figures of ``summary.json``: surveys and richness per split, species counts."""
    train = table["train_count"].to_numpy()

    def richness(frame: pd.DataFrame) -> dict:
        sizes = frame["species_ids"].map(len).to_numpy()
        if not len(sizes) or not sizes.any():
            return {}
        return {
            "mean": float(sizes.mean()),
            "median": float(np.median(sizes)),
            "p05": float(np.quantile(sizes, 0.05)),
            "p95": float(np.quantile(sizes, 0.95)),
            "max": int(sizes.max()),
        }

    return {
        "n_surveys": {split: int(len(frame)) for split, frame in surveys.items()},
        "n_presence_only": int(len(po)),
        "richness": {split: richness(frame) for split, frame in surveys.items()},
        "n_species": {
            "listed": int(len(table)),
            "in_train": int((train > 0).sum()),
            "in_val": int((table["val_count"] > 0).sum()),
            "presence_only": int((table["po_count"] > 0).sum()),
            "presence_only_not_in_train": int(((table["po_count"] > 0) & (train == 0)).sum()),
        },
        "gini_train": gini(train),
        "buckets": {bucket: int((table["bucket"] == bucket).sum()) for bucket in BUCKETS},
    }


def write_survey_species_table(table: pd.DataFrame, path: str | Path) -> None:
    arrow = pa.Table.from_pandas(table, schema=SURVEY_SPECIES_SCHEMA, preserve_index=False)
    with atomic_path(path) as temporary:
        pq.write_table(arrow, temporary)


def analyze_survey_species(
    surveys: dict[str, pd.DataFrame],
    po: pd.DataFrame,
    thresholds: BucketThresholds,
    table_path: str | Path,
    summary_path: str | Path,
    plot_path: str | Path,
) -> dict:
    """Write the species table, its summary and the rank-frequency plot of a survey edition."""
    table = survey_species_table(surveys["train"], surveys["val"], po, thresholds)
    summary = survey_summary(table, surveys, po)
    write_survey_species_table(table, table_path)
    write_text(summary_path, json.dumps(summary, indent=2) + "\n")
    plot_rank_frequency(table, thresholds, Path(plot_path))
    log.info(
        "%d species (%d in train surveys), train richness %s, buckets %s",
        len(table),
        summary["n_species"]["in_train"],
        summary["richness"].get("train"),
        summary["buckets"],
    )
    return summary
